//! A JSON body checked once and read lazily.
//!
//! A webhook rule usually reads two or three values out of a payload of several kilobytes
//! (GitHub's push is 7 KB and more), and the summary a dozen more. Building a whole
//! `serde_json::Value` for that allocated every key and string and then freed them again: a
//! third of the intake's CPU in the profile. Here the body is validated in one pass that
//! allocates nothing but the list of top-level members, and values are read from the text on
//! demand; a value that is read is turned into a `Value` then, and only that value.
//!
//! [`check`] accepts exactly what `serde_json::from_slice::<Value>` accepts, nesting limit
//! included (the differential tests and the `json_payload` fuzz target hold it to that), so
//! reading the text lazily never meets a document serde_json would have refused.

use serde_json::Value;
use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

/// Deepest nesting of objects and lists accepted: serde_json's recursion limit of 128 lets
/// through 127 levels, and the answer must not depend on which parser read the body.
pub const MAX_DEPTH: usize = 127;

/// Why a text is not JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// What was wrong.
    pub what: &'static str,
    /// Byte offset of the problem.
    pub at: usize,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for JsonError {}

/// One member of an object: the spans of its key (quotes included) and of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The key token, quotes included, so escapes can still be decoded.
    pub key: Range<usize>,
    /// The value's text, without surrounding blanks.
    pub value: Range<usize>,
    /// When the value is an object and was indexed too: its members, in [`Index::nested`].
    pub children: Range<usize>,
}

/// The members of a top-level object and of the objects directly inside it: where webhook
/// payloads keep what rules and summaries read (`ref`, `repository.full_name`,
/// `head_commit.id`), found without scanning the same text again for each lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// The top-level members, in text order.
    pub top: Vec<Member>,
    /// The members of the objects among them, each object's run contiguous.
    pub nested: Vec<Member>,
}

/// A checked document: where its one value is, and its index when it is an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doc {
    /// The value's span in the text.
    pub value: Range<usize>,
    /// The members, when the value is an object.
    pub index: Option<Index>,
}

impl Doc {
    /// The document's value as a node over `text`, the text it was checked from.
    pub fn node<'a>(&'a self, text: &'a [u8]) -> Node<'a> {
        match &self.index {
            Some(i) => i.node(text),
            None => Node::Text(&text[self.value.clone()]),
        }
    }
}

impl Index {
    /// The indexed object as a node over `text`, the text it was checked from.
    pub fn node<'a>(&'a self, text: &'a [u8]) -> Node<'a> {
        Node::Indexed(text, &self.top, &self.nested)
    }
}

/// Checks that `text` is one JSON value with optional blanks around it, at most [`MAX_DEPTH`]
/// deep, and indexes it two levels down when it is an object.
pub fn check(text: &[u8]) -> Result<Doc, JsonError> {
    check_depth(text, MAX_DEPTH)
}

/// [`check`] with a lower nesting limit, for text that will be embedded `MAX_DEPTH - max_depth`
/// levels deep in a document of its own.
pub fn check_depth(text: &[u8], max_depth: usize) -> Result<Doc, JsonError> {
    let max_depth = max_depth.min(MAX_DEPTH);
    if let Err(e) = std::str::from_utf8(text) {
        return Err(JsonError { what: "invalid UTF-8", at: e.valid_up_to() });
    }
    let mut s = Scanner { b: text, i: 0 };
    s.blanks();
    let start = s.i;
    // Sized for a typical webhook body (about one nested member per 64 bytes): growing these
    // one reallocation at a time showed in the intake profile.
    let (mut top, mut nested) = (Vec::with_capacity(32), Vec::with_capacity((text.len() / 64).min(1024)));
    let is_object = s.peek() == Some(b'{');
    if is_object {
        s.object(max_depth, Some(&mut top), Some(&mut nested))?;
    } else {
        s.value(max_depth)?;
    }
    let end = s.i;
    s.blanks();
    if s.i != text.len() {
        return Err(s.error("trailing characters"));
    }
    Ok(Doc { value: start..end, index: is_object.then_some(Index { top, nested }) })
}

/// A pass over JSON text; `i` is the next byte to read.
struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

/// Bytes that end a run of plain string content: the quote, the backslash, control characters.
static STRING_STOP: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 0x20 {
        t[c] = true;
        c += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Eight copies of a byte.
const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

/// The high bit of each byte of `v` that is zero, exact for the lowest such byte (a borrow
/// can only mark bytes above a true one, and only the lowest is ever used).
const fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(splat(1)) & !v & splat(0x80)
}

impl Scanner<'_> {
    /// Skips plain string content eight bytes at a time: strings are most of a webhook body,
    /// and a byte loop over them was a fifth of the intake's CPU.
    fn plain(&mut self) {
        let b = self.b;
        let mut i = self.i;
        while let Some(chunk) = b.get(i..i + 8) {
            let v = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            // Quote, backslash, or a byte below 0x20 (bytes from 0x80 up never match: !v clears them).
            let stop = zero_bytes(v ^ splat(b'"'))
                | zero_bytes(v ^ splat(b'\\'))
                | (v.wrapping_sub(splat(0x20)) & !v & splat(0x80));
            if stop != 0 {
                self.i = i + (stop.trailing_zeros() / 8) as usize;
                return;
            }
            i += 8;
        }
        while i < b.len() && !STRING_STOP[usize::from(b[i])] {
            i += 1;
        }
        self.i = i;
    }

    fn error(&self, what: &'static str) -> JsonError {
        JsonError { what, at: self.i }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn blanks(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'{') => self.object(depth, None, None),
            Some(b'[') => self.list(depth),
            Some(b'"') => self.string(),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("unexpected end of input")),
        }
    }

    fn enter(&mut self, depth: usize) -> Result<usize, JsonError> {
        if depth == 0 {
            return Err(self.error("nested too deeply"));
        }
        self.i += 1;
        self.blanks();
        Ok(depth - 1)
    }

    /// An object; its members go to `members` when given, and with `nested` the members of
    /// each member that is an object go there.
    fn object(
        &mut self,
        depth: usize,
        mut members: Option<&mut Vec<Member>>,
        mut nested: Option<&mut Vec<Member>>,
    ) -> Result<(), JsonError> {
        let depth = self.enter(depth)?;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.error(if self.peek().is_none() {
                    "unexpected end of input"
                } else {
                    "expected a key"
                }));
            }
            let key_start = self.i;
            self.string()?;
            let key = key_start..self.i;
            self.blanks();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':'"));
            }
            self.i += 1;
            self.blanks();
            let value_start = self.i;
            let mut children = 0..0;
            match (nested.as_deref_mut(), self.peek()) {
                (Some(pool), Some(b'{')) => {
                    let from = pool.len();
                    self.object(depth, Some(pool), None)?;
                    children = from..pool.len();
                }
                _ => self.value(depth)?,
            }
            if let Some(m) = members.as_deref_mut() {
                m.push(Member { key, value: value_start..self.i, children });
            }
            if !self.another(b'}', "expected ',' or '}'")? {
                return Ok(());
            }
        }
    }

    /// After a member or an item: a comma (true: another one follows) or `close` (false).
    fn another(&mut self, close: u8, expected: &'static str) -> Result<bool, JsonError> {
        self.blanks();
        match self.peek() {
            Some(b',') => {
                self.i += 1;
                self.blanks();
                Ok(true)
            }
            Some(c) if c == close => {
                self.i += 1;
                Ok(false)
            }
            Some(_) => Err(self.error(expected)),
            None => Err(self.error("unexpected end of input")),
        }
    }

    fn list(&mut self, depth: usize) -> Result<(), JsonError> {
        let depth = self.enter(depth)?;
        if self.peek() == Some(b']') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.value(depth)?;
            if !self.another(b']', "expected ',' or ']'")? {
                return Ok(());
            }
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), JsonError> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.error("invalid literal"))
        }
    }

    /// A string token, from its opening quote; escapes are checked as serde_json checks them
    /// for a Rust `String`: surrogate escapes must come in pairs.
    fn string(&mut self) -> Result<(), JsonError> {
        self.i += 1;
        loop {
            self.plain();
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            self.i += 1;
                            let n = self.hex4()?;
                            if (0xDC00..=0xDFFF).contains(&n) {
                                return Err(self.error("lone surrogate in escape"));
                            }
                            if (0xD800..=0xDBFF).contains(&n) {
                                if !self.b[self.i..].starts_with(b"\\u") {
                                    return Err(self.error("lone surrogate in escape"));
                                }
                                self.i += 2;
                                if !(0xDC00..=0xDFFF).contains(&self.hex4()?) {
                                    return Err(self.error("lone surrogate in escape"));
                                }
                            }
                        }
                        Some(_) => return Err(self.error("invalid escape")),
                        None => return Err(self.error("unexpected end of input")),
                    }
                }
                Some(_) => return Err(self.error("control character in string")),
                None => return Err(self.error("unexpected end of input")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut n = 0;
        for _ in 0..4 {
            let d =
                self.peek().and_then(|b| char::from(b).to_digit(16)).ok_or_else(|| self.error("invalid \\u escape"))?;
            n = n * 16 + d;
            self.i += 1;
        }
        Ok(n)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.peek() {
            self.i += 1;
        }
        self.i - start
    }

    /// RFC 8259 numbers; like serde_json, one too large for an `f64` is refused.
    fn number(&mut self) -> Result<(), JsonError> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.i += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.error("invalid number"));
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.error("invalid number")),
        }
        let mut float = false;
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
            float = true;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("invalid number"));
            }
            float = true;
        }
        // Integers up to 19 digits fit an i64 or u64; anything else becomes an f64 in serde_json,
        // which refuses one that overflows to infinity.
        let text = &self.b[start..self.i];
        if float || text.len() > 19 {
            let finite = std::str::from_utf8(text).ok().and_then(|t| t.parse::<f64>().ok()).is_some_and(f64::is_finite);
            if !finite {
                return Err(JsonError { what: "number out of range", at: start });
            }
        }
        Ok(())
    }
}

/// Calls `f(key, value)` for each member of the object `text` (or `f(None, value)` for each item
/// of a list), in order, until `f` returns false. `text` must be checked JSON.
fn for_each_child<'a>(text: &'a [u8], mut f: impl FnMut(Option<&'a [u8]>, &'a [u8]) -> bool) {
    let mut s = Scanner { b: text, i: 0 };
    let is_object = match s.peek() {
        Some(b'{') => true,
        Some(b'[') => false,
        _ => return,
    };
    s.i += 1;
    loop {
        s.blanks();
        let key = if is_object {
            if s.peek() != Some(b'"') {
                return;
            }
            let k = s.i;
            if s.string().is_err() {
                return;
            }
            let key = &text[k..s.i];
            s.blanks();
            s.i += 1; // ':'
            s.blanks();
            Some(key)
        } else {
            None
        };
        let v = s.i;
        // Checked text: the depth was bounded by `check`, so no limit is needed here.
        if s.value(usize::MAX).is_err() {
            return;
        }
        if !f(key, &text[v..s.i]) {
            return;
        }
        s.blanks();
        if s.peek() != Some(b',') {
            return;
        }
        s.i += 1;
    }
}

/// Whether the key token `raw` (quotes included) spells `key`.
fn key_is(raw: &[u8], key: &str) -> bool {
    let inner = &raw[1..raw.len() - 1];
    if !inner.contains(&b'\\') {
        return inner == key.as_bytes();
    }
    serde_json::from_slice::<String>(raw).is_ok_and(|k| k == key)
}

/// A value of a payload, parsed (form bodies, edited payloads) or still text.
#[derive(Debug, Clone, Copy)]
pub enum Node<'a> {
    /// An already parsed value.
    Parsed(&'a Value),
    /// The text of one checked JSON value.
    Text(&'a [u8]),
    /// A checked object whose members are already listed (spans into the text given), with
    /// the pool its members' own members are in.
    Indexed(&'a [u8], &'a [Member], &'a [Member]),
}

impl<'a> Node<'a> {
    /// The member `key` of an object (the last one, when a key repeats, as serde_json and Go do).
    pub fn get(self, key: &str) -> Option<Node<'a>> {
        match self {
            Node::Parsed(v) => v.as_object()?.get(key).map(Node::Parsed),
            Node::Indexed(text, members, pool) => {
                members.iter().rev().find(|m| key_is(&text[m.key.clone()], key)).map(|m| match m.children.is_empty() {
                    true => Node::Text(&text[m.value.clone()]),
                    false => Node::Indexed(text, &pool[m.children.clone()], &[]),
                })
            }
            Node::Text(text) => {
                let mut found = None;
                for_each_child(text, |k, v| {
                    if k.is_some_and(|k| key_is(k, key)) {
                        found = Some(v);
                    }
                    true
                });
                found.map(Node::Text)
            }
        }
    }

    /// Item `i` of a list.
    pub fn at(self, i: usize) -> Option<Node<'a>> {
        match self {
            Node::Parsed(v) => v.as_array()?.get(i).map(Node::Parsed),
            Node::Indexed(..) => None,
            Node::Text(text) => {
                let (mut n, mut found) = (0, None);
                for_each_child(text, |k, v| {
                    if k.is_none() && n == i {
                        found = Some(v);
                    }
                    n += 1;
                    found.is_none()
                });
                found.map(Node::Text)
            }
        }
    }

    /// The items of a list; empty for anything else.
    pub fn items(self) -> Vec<Node<'a>> {
        match self {
            Node::Parsed(Value::Array(items)) => items.iter().map(Node::Parsed).collect(),
            Node::Text(text) if text.first() == Some(&b'[') => {
                let mut items = Vec::new();
                for_each_child(text, |_, v| {
                    items.push(Node::Text(v));
                    true
                });
                items
            }
            _ => Vec::new(),
        }
    }

    /// Whether this is an object.
    pub fn is_object(self) -> bool {
        match self {
            Node::Parsed(v) => v.is_object(),
            Node::Indexed(..) => true,
            Node::Text(text) => text.first() == Some(&b'{'),
        }
    }

    /// Whether this is a list.
    pub fn is_array(self) -> bool {
        match self {
            Node::Parsed(v) => v.is_array(),
            Node::Indexed(..) => false,
            Node::Text(text) => text.first() == Some(&b'['),
        }
    }

    /// The string this is, escapes decoded.
    pub fn as_str(self) -> Option<Cow<'a, str>> {
        match self {
            Node::Parsed(v) => v.as_str().map(Cow::Borrowed),
            Node::Text(text) if text.first() == Some(&b'"') => {
                let inner = &text[1..text.len() - 1];
                if inner.contains(&b'\\') {
                    serde_json::from_slice::<String>(text).ok().map(Cow::Owned)
                } else {
                    std::str::from_utf8(inner).ok().map(Cow::Borrowed)
                }
            }
            _ => None,
        }
    }

    /// This value parsed.
    pub fn to_value(self) -> Cow<'a, Value> {
        match self {
            Node::Parsed(v) => Cow::Borrowed(v),
            // Checked text parses; `check` refuses everything serde_json would.
            Node::Text(text) => Cow::Owned(serde_json::from_slice(text).unwrap_or(Value::Null)),
            Node::Indexed(text, members, _) => {
                let mut map = serde_json::Map::new();
                for m in members {
                    let key = serde_json::from_slice::<String>(&text[m.key.clone()]).unwrap_or_default();
                    map.insert(key, serde_json::from_slice(&text[m.value.clone()]).unwrap_or(Value::Null));
                }
                Cow::Owned(Value::Object(map))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn accepts_like_serde(text: &[u8]) {
        let ours = check(text);
        let theirs = serde_json::from_slice::<Value>(text);
        assert_eq!(
            ours.is_ok(),
            theirs.is_ok(),
            "{:?}: ours {ours:?}, serde_json {theirs:?}",
            String::from_utf8_lossy(text)
        );
    }

    #[test]
    fn agrees_with_serde_json_on_edge_cases() {
        let cases: &[&[u8]] = &[
            b"{}",
            b"[]",
            b" {\"a\" : [1, 2.5, -0, 1e3, 1E-3, true, false, null, \"x\"]} ",
            b"",
            b" ",
            b"{",
            b"}",
            b"[1,]",
            b"{\"a\":1,}",
            b"{,}",
            b"[,1]",
            b"01",
            b"-",
            b"-01",
            b"1.",
            b".5",
            b"1e",
            b"1e+",
            b"+1",
            b"1e400",
            b"-1e400",
            b"1e-400",
            b"0e999999",
            b"123456789012345678901234567890",
            &[b'9'; 400],
            b"\"\\ud800\"",
            b"\"\\udc00\"",
            b"\"\\ud800\\udc00\"",
            b"\"\\ud800\\u0041\"",
            b"\"\\ud800x\"",
            b"\"\\u00e9\"",
            b"\"\\u00G9\"",
            b"\"\\x\"",
            b"\"a\tb\"",
            b"\"a\x7fb\"",
            b"\"\xc3\xa9\"",
            b"\"\xff\"",
            b"\xef\xbb\xbf{}",
            b"tru",
            b"truex",
            b"nul",
            b"null null",
            b"{\"a\" 1}",
            b"{1:2}",
            b"[1 2]",
            b"{\"a\":1}\x00",
            b"\x0c{}",
            b"{\"a\":\"\\/\\b\\f\\n\\r\\t\\\"\\\\\"}",
            b"[[[[]]]]",
            b"\"unterminated",
            b"{\"a\":",
            b"[1",
            b"-0.0e-0",
            b"1.5e308",
            b"1.8e308",
            b"18446744073709551616",
            b"-9223372036854775809",
        ];
        for c in cases {
            accepts_like_serde(c);
        }
    }

    #[test]
    fn string_scan_stops_at_every_offset() {
        for len in 0..24 {
            for stop in ["\"", "\\n", "\t", "\u{1f}", "\u{0}"] {
                for filler in ["a", "\u{e9}", "\u{7f}", "\u{1F600}"] {
                    let text = format!("[\"{}{stop}x\"]", filler.repeat(len));
                    accepts_like_serde(text.as_bytes());
                }
            }
        }
    }

    #[test]
    fn depth_limit_matches_serde_json() {
        let nest = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        for n in [1, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, MAX_DEPTH + 2] {
            accepts_like_serde(nest(n).as_bytes());
        }
        assert!(check(nest(MAX_DEPTH).as_bytes()).is_ok());
        let deep = "[".repeat(1_000_000);
        assert_eq!(check(deep.as_bytes()).unwrap_err().what, "nested too deeply");
    }

    #[test]
    fn lazy_reads_match_parsed_reads() {
        let text = br#" {"a": {"b": [1, {"c": "d\u00e9"}], "b": [2, {"c": "last"}]}, "e\u0078": "esc", "n": 1.50,
            "s": "plain", "l": [], "o": {}, "z": null} "#;
        let parsed: Value = serde_json::from_slice(text).unwrap();
        let doc = check(text).unwrap();
        let lazy = doc.node(text);
        assert!(matches!(lazy.get("a").unwrap(), Node::Indexed(..)), "second level indexed");
        let eager = Node::Parsed(&parsed);
        for node in [lazy, eager] {
            assert_eq!(
                node.get("a").unwrap().get("b").unwrap().at(1).unwrap().get("c").unwrap().as_str().unwrap(),
                "last"
            );
            assert_eq!(node.get("ex").unwrap().as_str().unwrap(), "esc");
            assert_eq!(node.get("n").unwrap().to_value().into_owned(), json!(1.5));
            assert_eq!(node.get("s").unwrap().as_str().unwrap(), "plain");
            assert!(node.get("l").unwrap().is_array() && node.get("l").unwrap().items().is_empty());
            assert!(node.get("o").unwrap().is_object() && !node.get("o").unwrap().is_array());
            assert_eq!(node.get("z").unwrap().to_value().into_owned(), Value::Null);
            assert!(node.get("missing").is_none() && node.get("s").unwrap().get("x").is_none());
            assert!(node.at(0).is_none() && node.get("a").unwrap().get("b").unwrap().at(2).is_none());
            assert_eq!(node.get("a").unwrap().get("b").unwrap().items().len(), 2);
            assert_eq!(node.to_value().into_owned(), parsed);
        }
    }

    /// A JSON-ish text: mostly valid documents, sometimes cut or with a byte changed.
    fn jsonish() -> impl Strategy<Value = Vec<u8>> {
        let leaf = prop_oneof![
            Just(json!(null)),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
            "[a-z\\\\\"\u{e9}\u{1F600}\n]{0,8}".prop_map(Value::from),
        ];
        let value = leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::from),
                prop::collection::vec(("[a-c.]{0,3}", inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        });
        (value, any::<prop::sample::Index>(), any::<u8>(), 0..4u8).prop_map(|(v, at, byte, mangle)| {
            let mut text = if mangle == 3 { serde_json::to_vec_pretty(&v) } else { serde_json::to_vec(&v) }.unwrap();
            if !text.is_empty() {
                let i = at.index(text.len());
                match mangle {
                    0 => text.truncate(i),
                    1 => text[i] = byte,
                    _ => {}
                }
            }
            text
        })
    }

    proptest! {
        #[test]
        fn accepts_exactly_what_serde_json_accepts(text in jsonish()) {
            accepts_like_serde(&text);
        }

        #[test]
        fn every_lookup_matches_serde_json(text in jsonish(), key in "[a-c.]{0,3}", i in 0..4usize) {
            if let (Ok(doc), Ok(parsed)) = (check(&text), serde_json::from_slice::<Value>(&text)) {
                let node = doc.node(&text);
                prop_assert_eq!(node.to_value().into_owned(), parsed.clone());
                let got = node.get(&key).map(|n| n.to_value().into_owned());
                prop_assert_eq!(got, parsed.get(&key).cloned());
                let got = node.at(i).map(|n| n.to_value().into_owned());
                prop_assert_eq!(got, parsed.get(i).cloned());
                for (n, want) in node.items().into_iter().zip(parsed.as_array().into_iter().flatten()) {
                    prop_assert_eq!(n.to_value().into_owned(), want.clone());
                    prop_assert_eq!(n.as_str().map(Cow::into_owned), want.as_str().map(str::to_string));
                }
            }
        }
    }
}
