//! RESP2, the Redis serialization protocol, as pure functions over bytes: commands out
//! ([`encode_command`]) and replies in ([`parse`]). No sockets, clocks or globals.
//!
//! ```text
//! reply   = simple / error / integer / bulk / array
//! simple  = "+" text CRLF            error = "-" text CRLF         (text: no CR, no LF)
//! integer = ":" ["-"] digits CRLF    (an i64; no "+", no leading zero, no "-0")
//! bulk    = "$" length CRLF payload CRLF   /  "$-1" CRLF        (nil)
//! array   = "*" count CRLF *reply          /  "*-1" CRLF        (nil)
//! ```
//!
//! A server is not trusted to be sane: every length is checked against [`Limits`] as soon as
//! its header is read, before anything is allocated for it, nesting is bounded, and no input
//! makes the parser panic. The caller re-parses from the start of its buffer when more bytes
//! arrive, so [`Parsed::Need`] says how many bytes in total to wait for: a large bulk string is
//! parsed once when all of it is there, not once per read.

/// One RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+OK`: a status line.
    Simple(String),
    /// `-ERR …`: an error reply (the whole line, its first word being the error's kind).
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$3 abc`, or `$-1` (`None`): a binary-safe string.
    Bulk(Option<Vec<u8>>),
    /// `*2 …`, or `*-1` (`None`).
    Array(Option<Vec<Value>>),
}

impl Value {
    /// The bytes of a bulk string or a status line.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bulk(Some(b)) => Some(b),
            Value::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// An integer reply, or a bulk string or status line holding a decimal integer (Redis
    /// answers some commands' numbers as strings, e.g. `XINFO` fields or `CONFIG GET`).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bulk(Some(b)) => parse_int(b),
            Value::Simple(s) => parse_int(s.as_bytes()),
            _ => None,
        }
    }

    /// The elements of a (non-nil) array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(Some(v)) => Some(v),
            _ => None,
        }
    }

    /// The elements of a (non-nil) array, taken.
    pub fn into_array(self) -> Option<Vec<Value>> {
        match self {
            Value::Array(Some(v)) => Some(v),
            _ => None,
        }
    }

    /// Whether this is the nil bulk string or the nil array.
    pub fn is_nil(&self) -> bool {
        matches!(self, Value::Bulk(None) | Value::Array(None))
    }

    /// The message of an error reply.
    pub fn error(&self) -> Option<&str> {
        match self {
            Value::Error(m) => Some(m),
            _ => None,
        }
    }
}

/// Appends one command (an array of bulk strings) to `out`.
pub fn encode_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.push(b'*');
    push_decimal(out, args.len());
    out.extend_from_slice(b"\r\n");
    for a in args {
        out.push(b'$');
        push_decimal(out, a.len());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes `n` in decimal without a temporary `String` (commands are encoded on the hot path).
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Bounds on what a reply may be (a server we do not control must not make us allocate without limit).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of one bulk string, status line or error line.
    pub max_bulk: usize,
    /// Elements of one array.
    pub max_elements: usize,
    /// Arrays nested in one another: 1 allows an array of scalars, 0 no array at all.
    pub max_depth: usize,
}

impl Default for Limits {
    /// Room for what hookcast asks Redis for (an `XREAD` reply nests three arrays deep); the
    /// event loop's caller sets `max_bulk` from its own largest event.
    fn default() -> Limits {
        Limits { max_bulk: 64 << 20, max_elements: 1 << 20, max_depth: 8 }
    }
}

/// What parsing found.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A whole reply and the bytes it took.
    Done(Value, usize),
    /// at least this many bytes (total, > buf.len()) are needed
    Need(usize),
}

/// Why bytes are not a reply: the link is out of step with the server and must be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not RESP2.
    Protocol(&'static str),
    /// Beyond a [`Limits`] bound.
    TooLarge(&'static str),
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseError::Protocol(why) => write!(f, "RESP protocol error: {why}"),
            ParseError::TooLarge(what) => write!(f, "RESP reply too large: {what}"),
        }
    }
}

impl std::error::Error for ParseError {}

/// Parses one reply from the start of `buf`.
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
    Ok(match value(buf, 0, 0, limits)? {
        Step::Done(v, end) => Parsed::Done(v, end),
        Step::Need(n) => Parsed::Need(n),
    })
}

/// A step of the parse, positions absolute in the caller's buffer.
enum Step<T> {
    Done(T, usize),
    Need(usize),
}

/// Longest length or count header (`-1`, or digits of a `usize`) before its CRLF: a header
/// longer than this is garbage, whatever the limits.
const MAX_HEADER: usize = 20;

/// Elements reserved up front for an array: its count is untrusted until the elements arrive.
const RESERVE_ELEMENTS: usize = 64;

/// The reply starting at `at`, inside `depth` arrays.
fn value(buf: &[u8], at: usize, depth: usize, limits: &Limits) -> Result<Step<Value>, ParseError> {
    let Some(&kind) = buf.get(at) else { return Ok(Step::Need(at + 1)) };
    let start = at + 1;
    match kind {
        b'+' | b'-' => {
            let (line, end) = match line(buf, start, limits.max_bulk, ParseError::TooLarge("status or error line"))? {
                Step::Done(l, e) => (l, e),
                Step::Need(n) => return Ok(Step::Need(n)),
            };
            let text = String::from_utf8_lossy(line).into_owned();
            Ok(Step::Done(if kind == b'+' { Value::Simple(text) } else { Value::Error(text) }, end))
        }
        b':' => match line(buf, start, MAX_HEADER, ParseError::Protocol("integer too long"))? {
            Step::Done(l, end) => match parse_int(l) {
                Some(i) => Ok(Step::Done(Value::Int(i), end)),
                None => Err(ParseError::Protocol("not an integer")),
            },
            Step::Need(n) => Ok(Step::Need(n)),
        },
        b'$' => {
            let (len, payload) = match length(buf, start, limits.max_bulk, "bulk string")? {
                Step::Done(Some(n), e) => (n, e),
                Step::Done(None, e) => return Ok(Step::Done(Value::Bulk(None), e)),
                Step::Need(n) => return Ok(Step::Need(n)),
            };
            // `len` is at most `max_bulk`, so this only overflows for absurd limits.
            let end =
                payload.checked_add(len).and_then(|e| e.checked_add(2)).ok_or(ParseError::TooLarge("bulk string"))?;
            if buf.len() < end {
                return Ok(Step::Need(end));
            }
            if &buf[end - 2..end] != b"\r\n" {
                return Err(ParseError::Protocol("bulk string not followed by CRLF"));
            }
            Ok(Step::Done(Value::Bulk(Some(buf[payload..end - 2].to_vec())), end))
        }
        b'*' => {
            let (count, mut pos) = match length(buf, start, limits.max_elements, "array")? {
                Step::Done(Some(n), e) => (n, e),
                Step::Done(None, e) => return Ok(Step::Done(Value::Array(None), e)),
                Step::Need(n) => return Ok(Step::Need(n)),
            };
            if depth >= limits.max_depth {
                return Err(ParseError::TooLarge("arrays nested too deep"));
            }
            let mut items = Vec::with_capacity(count.min(RESERVE_ELEMENTS));
            for _ in 0..count {
                match value(buf, pos, depth + 1, limits)? {
                    Step::Done(v, e) => {
                        items.push(v);
                        pos = e;
                    }
                    Step::Need(n) => return Ok(Step::Need(n)),
                }
            }
            Ok(Step::Done(Value::Array(Some(items)), pos))
        }
        _ => Err(ParseError::Protocol("unknown reply type")),
    }
}

/// The line starting at `at` (without its CRLF) and the position after the CRLF. A line with
/// more than `max` bytes fails with `too_long`, as soon as that many bytes lack a line end.
fn line(buf: &[u8], at: usize, max: usize, too_long: ParseError) -> Result<Step<&[u8]>, ParseError> {
    let rest = buf.get(at..).unwrap_or_default();
    // CR and LF never occur inside a line, so the first of either must be its end.
    match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
        Some(i) if i > max => Err(too_long),
        Some(i) if rest[i] == b'\n' => Err(ParseError::Protocol("line ends with LF without CR")),
        Some(i) => match rest.get(i + 1) {
            None => Ok(Step::Need(buf.len() + 1)),
            Some(b'\n') => Ok(Step::Done(&rest[..i], at + i + 2)),
            Some(_) => Err(ParseError::Protocol("CR not followed by LF")),
        },
        None if rest.len() > max => Err(too_long),
        None => Ok(Step::Need(buf.len() + 1)),
    }
}

/// A bulk string's length or an array's count at `at`: `None` for `-1` (nil).
fn length(buf: &[u8], at: usize, max: usize, what: &'static str) -> Result<Step<Option<usize>>, ParseError> {
    let (digits, end) = match line(buf, at, MAX_HEADER, ParseError::Protocol("length too long"))? {
        Step::Done(l, e) => (l, e),
        Step::Need(n) => return Ok(Step::Need(n)),
    };
    if digits == b"-1" {
        return Ok(Step::Done(None, end));
    }
    if digits.first() == Some(&b'-') {
        return Err(ParseError::Protocol("negative length"));
    }
    match parse_int(digits) {
        Some(n) if usize::try_from(n).is_ok_and(|n| n <= max) => Ok(Step::Done(Some(n as usize), end)),
        Some(_) => Err(ParseError::TooLarge(what)),
        // Digits that overflow an i64 are a length too, and too large for any limit.
        None if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) && digits[0] != b'0' => {
            Err(ParseError::TooLarge(what))
        }
        None => Err(ParseError::Protocol("length is not a number")),
    }
}

/// A decimal i64 as RESP writes one: an optional `-`, digits, no leading zero, no `-0`.
fn parse_int(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let canonical = match digits {
        [] => false,
        [b'0'] => !neg,
        [first, ..] => *first != b'0',
    };
    if !canonical {
        return None;
    }
    let mut acc: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        // Accumulated on its own side of zero, so i64::MIN parses.
        acc = acc.checked_mul(10)?;
        acc = if neg { acc.checked_sub(d)? } else { acc.checked_add(d)? };
    }
    Some(acc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const L: Limits = Limits { max_bulk: 1 << 16, max_elements: 1 << 10, max_depth: 8 };

    /// Encodes a reply as a server would: the test's inverse of [`parse`].
    fn encode_reply(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Simple(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            Value::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            Value::Int(i) => out.extend_from_slice(format!(":{i}\r\n").as_bytes()),
            Value::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            Value::Bulk(Some(b)) => {
                out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
                out.extend_from_slice(b);
                out.extend_from_slice(b"\r\n");
            }
            Value::Array(None) => out.extend_from_slice(b"*-1\r\n"),
            Value::Array(Some(items)) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for i in items {
                    encode_reply(i, out);
                }
            }
        }
    }

    fn encoded(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_reply(v, &mut out);
        out
    }

    fn done(buf: &[u8]) -> (Value, usize) {
        match parse(buf, &L) {
            Ok(Parsed::Done(v, n)) => (v, n),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn need(buf: &[u8]) -> usize {
        match parse(buf, &L) {
            Ok(Parsed::Need(n)) => n,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn error(buf: &[u8], limits: &Limits) -> ParseError {
        match parse(buf, limits) {
            Err(e) => e,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn bulk(b: &[u8]) -> Value {
        Value::Bulk(Some(b.to_vec()))
    }

    #[test]
    fn command_encoding_is_an_array_of_bulk_strings() {
        let mut out = Vec::new();
        encode_command(&mut out, &[b"SET", b"key", b"va\r\nl"]);
        encode_command(&mut out, &[b"PING"]);
        encode_command(&mut out, &[b"X", b""]);
        assert_eq!(
            out,
            b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n*1\r\n$4\r\nPING\r\n*2\r\n$1\r\nX\r\n$0\r\n\r\n"
        );
        let mut out = Vec::new();
        encode_command(&mut out, &[&[b'a'; 1234][..]]);
        assert!(out.starts_with(b"*1\r\n$1234\r\naaa"));
        assert_eq!(out.len(), 4 + 7 + 1234 + 2);
    }

    #[test]
    fn each_type_parses() {
        assert_eq!(done(b"+OK\r\n"), (Value::Simple("OK".into()), 5));
        assert_eq!(done(b"+\r\n"), (Value::Simple(String::new()), 3));
        assert_eq!(done(b"-NOSCRIPT No matching script\r\n+OK\r\n").0.error(), Some("NOSCRIPT No matching script"));
        assert_eq!(done(b":0\r\n"), (Value::Int(0), 4));
        assert_eq!(done(b":-42\r\n").0, Value::Int(-42));
        assert_eq!(done(b":9223372036854775807\r\n").0, Value::Int(i64::MAX));
        assert_eq!(done(b":-9223372036854775808\r\n").0, Value::Int(i64::MIN));
        assert_eq!(done(b"$5\r\nhe\r\no\r\n"), (bulk(b"he\r\no"), 11));
        assert_eq!(done(b"$0\r\n\r\n"), (bulk(b""), 6));
        assert_eq!(done(b"$-1\r\n"), (Value::Bulk(None), 5));
        assert_eq!(done(b"*-1\r\n"), (Value::Array(None), 5));
        assert_eq!(done(b"*0\r\n"), (Value::Array(Some(vec![])), 4));
        // Extra bytes after the reply are the next reply's.
        assert_eq!(done(b":1\r\n:2\r\n"), (Value::Int(1), 4));
    }

    #[test]
    fn nested_arrays_parse() {
        // The shape of an XREAD reply: [[stream, [[id, [field, value]]]]].
        let buf = b"*1\r\n*2\r\n$6\r\nstream\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nd\r\n$2\r\nhi\r\n";
        let (v, n) = done(buf);
        assert_eq!(n, buf.len());
        let stream = &v.as_array().unwrap()[0];
        assert_eq!(stream.as_array().unwrap()[0].as_bytes(), Some(&b"stream"[..]));
        let entry = &stream.as_array().unwrap()[1].as_array().unwrap()[0];
        assert_eq!(entry.as_array().unwrap()[0], bulk(b"1-0"));
        assert_eq!(entry.as_array().unwrap()[1], Value::Array(Some(vec![bulk(b"d"), bulk(b"hi")])));
        let mixed = b"*5\r\n:1\r\n$-1\r\n*-1\r\n-ERR x\r\n+y\r\n";
        assert_eq!(
            done(mixed).0,
            Value::Array(Some(vec![
                Value::Int(1),
                Value::Bulk(None),
                Value::Array(None),
                Value::Error("ERR x".into()),
                Value::Simple("y".into()),
            ]))
        );
    }

    #[test]
    fn accessors() {
        assert_eq!(bulk(b"17").as_int(), Some(17));
        assert_eq!(Value::Simple("-3".into()).as_int(), Some(-3));
        assert_eq!(bulk(b"1.5").as_int(), None);
        assert_eq!(bulk(b"007").as_int(), None);
        assert_eq!(Value::Int(5).as_bytes(), None);
        assert_eq!(Value::Simple("OK".into()).as_bytes(), Some(&b"OK"[..]));
        assert!(Value::Bulk(None).is_nil() && Value::Array(None).is_nil() && !bulk(b"").is_nil());
        assert_eq!(Value::Array(None).as_array(), None);
        assert_eq!(Value::Array(Some(vec![Value::Int(1)])).into_array(), Some(vec![Value::Int(1)]));
        assert_eq!(bulk(b"x").into_array(), None);
        assert_eq!(Value::Simple("ERR".into()).error(), None);
    }

    #[test]
    fn need_says_how_many_bytes_to_wait_for() {
        assert_eq!(need(b""), 1);
        // A partial line: one more byte at least.
        assert_eq!(need(b"+OK"), 4);
        assert_eq!(need(b"+OK\r"), 5);
        assert_eq!(need(b":12"), 4);
        assert_eq!(need(b"$"), 2);
        assert_eq!(need(b"$10"), 4);
        assert_eq!(need(b"*2\r"), 4);
        // A bulk header read: the whole payload and its CRLF.
        assert_eq!(need(b"$10\r\n"), 5 + 10 + 2);
        assert_eq!(need(b"$10\r\nabc"), 17);
        assert_eq!(need(b"$10\r\n0123456789\r"), 17);
        assert_eq!(need(b"$0\r\n"), 6);
        // In an array: the first missing element's need.
        assert_eq!(need(b"*2\r\n"), 5);
        assert_eq!(need(b"*2\r\n:1\r\n"), 9);
        assert_eq!(need(b"*2\r\n:1\r\n$4\r\nab"), 8 + 4 + 4 + 2);
        assert_eq!(need(b"*1\r\n*1\r\n$3\r\n"), 12 + 5);
    }

    #[test]
    fn malformed_replies_are_refused() {
        let p = |s: &'static str| ParseError::Protocol(s);
        assert_eq!(error(b"?x\r\n", &L), p("unknown reply type"));
        assert_eq!(error(b"\r\n", &L), p("unknown reply type"));
        assert_eq!(error(b"$-2\r\n", &L), p("negative length"));
        assert_eq!(error(b"*-5\r\n", &L), p("negative length"));
        assert_eq!(error(b"$x\r\n", &L), p("length is not a number"));
        assert_eq!(error(b"$\r\n", &L), p("length is not a number"));
        assert_eq!(error(b"$+3\r\nabc\r\n", &L), p("length is not a number"));
        assert_eq!(error(b"$03\r\nabc\r\n", &L), p("length is not a number"));
        assert_eq!(error(b"$3\r\nabcd\r\n", &L), p("bulk string not followed by CRLF"));
        assert_eq!(error(b"+OK\n", &L), p("line ends with LF without CR"));
        assert_eq!(error(b"+O\rK\r\n", &L), p("CR not followed by LF"));
        assert_eq!(error(b":1x\r\n", &L), p("not an integer"));
        assert_eq!(error(b":\r\n", &L), p("not an integer"));
        assert_eq!(error(b":-0\r\n", &L), p("not an integer"));
        assert_eq!(error(b":9223372036854775808\r\n", &L), p("not an integer"));
        assert_eq!(error(b":123456789012345678901\r\n", &L), p("integer too long"));
        assert_eq!(error(b"*1\r\n:x\r\n", &L), p("not an integer"));
    }

    #[test]
    fn limits_are_checked_before_allocating() {
        let tight = Limits { max_bulk: 8, max_elements: 2, max_depth: 2 };
        let big = ParseError::TooLarge;
        assert_eq!(error(b"$9\r\n", &tight), big("bulk string"));
        assert_eq!(error(b"$99999999999999999999\r\n", &L), big("bulk string"));
        assert_eq!(error(b"*3\r\n", &tight), big("array"));
        assert_eq!(error(b"+123456789", &tight), big("status or error line"));
        assert_eq!(error(b"-123456789\r\n", &tight), big("status or error line"));
        assert_eq!(error(b"$123456789012345678901", &L), ParseError::Protocol("length too long"));
        assert_eq!(error(b"*1\r\n*1\r\n*1\r\n", &tight), big("arrays nested too deep"));
        // A nil array holds nothing, so it nests anywhere.
        assert_eq!(parse(b"*1\r\n*1\r\n*-1\r\n", &tight).unwrap(), Parsed::Done(done(b"*1\r\n*1\r\n*-1\r\n").0, 13));
        assert_eq!(parse(b"*1\r\n*1\r\n:1\r\n", &tight).unwrap(), Parsed::Done(done(b"*1\r\n*1\r\n:1\r\n").0, 12));
        let none = Limits { max_bulk: 0, max_elements: 0, max_depth: 0 };
        assert_eq!(error(b"*0\r\n", &none), big("arrays nested too deep"));
        assert_eq!(parse(b"$0\r\n\r\n", &none).unwrap(), Parsed::Done(bulk(b""), 6));
        // A huge count with few elements present only reserves a few slots.
        let many = Limits { max_bulk: 8, max_elements: usize::MAX, max_depth: 2 };
        // The largest count the target's usize holds (2^63 - 1 as RESP's i64 allows, or 2^32 - 1
        // on a 32-bit build).
        let huge = format!("*{}\r\n:1\r\n", (usize::MAX as u64).min(i64::MAX as u64));
        assert_eq!(parse(huge.as_bytes(), &many).unwrap(), Parsed::Need(huge.len() + 1));
        assert_eq!(error(b"*18446744073709551615\r\n", &many), big("array"));
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let text = "[^\r\n]{0,12}";
        let leaf = prop_oneof![
            text.prop_map(Value::Simple),
            text.prop_map(Value::Error),
            any::<i64>().prop_map(Value::Int),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..24)).prop_map(Value::Bulk),
            Just(Value::Array(None)),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            proptest::collection::vec(inner, 0..6).prop_map(|v| Value::Array(Some(v)))
        })
    }

    /// Replies that parse, to mutate.
    const VALID: &[&[u8]] = &[
        b"*2\r\n$6\r\nstream\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nd\r\n$2\r\nhi\r\n",
        b"*4\r\n:1\r\n$-1\r\n*-1\r\n-ERR x\r\n",
        b"+OK\r\n",
        b"$3\r\nabc\r\n",
    ];

    proptest! {
        #[test]
        fn replies_round_trip(v in any_value(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut bytes = encoded(&v);
            let len = bytes.len();
            bytes.extend_from_slice(&tail);
            prop_assert_eq!(parse(&bytes, &L).unwrap(), Parsed::Done(v, len));
        }

        #[test]
        fn every_prefix_needs_more_but_no_more_than_the_whole(v in any_value()) {
            let bytes = encoded(&v);
            for cut in 0..bytes.len() {
                match parse(&bytes[..cut], &L) {
                    Ok(Parsed::Need(n)) => prop_assert!(n > cut && n <= bytes.len(), "cut {} need {} of {}", cut, n, bytes.len()),
                    other => prop_assert!(false, "cut {}: {:?}", cut, other),
                }
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            check_answer(&bytes)?;
        }

        #[test]
        fn edited_replies_never_panic(
            which in 0..VALID.len(),
            edits in proptest::collection::vec((any::<usize>(), prop_oneof![any::<u8>(), prop::sample::select(b"\r\n$*:+-0129".to_vec())]), 1..4),
        ) {
            let mut bytes = VALID[which].to_vec();
            for (at, b) in edits {
                let at = at % bytes.len();
                bytes[at] = b;
            }
            check_answer(&bytes)?;
        }
    }

    /// What any answer must keep: a reply uses no more than the buffer and re-encodes to what
    /// parses back to it; a need asks for more than the buffer; limits hold.
    fn check_answer(bytes: &[u8]) -> Result<(), TestCaseError> {
        let tight = Limits { max_bulk: 16, max_elements: 4, max_depth: 3 };
        for limits in [&L, &tight] {
            match parse(bytes, limits) {
                Ok(Parsed::Done(v, used)) => {
                    prop_assert!(used <= bytes.len() && used > 0);
                    let again = encoded(&v);
                    // Under `L`: lossy UTF-8 may lengthen a line past the tight limit.
                    prop_assert_eq!(parse(&again, &L).unwrap(), Parsed::Done(v, again.len()));
                }
                Ok(Parsed::Need(n)) => prop_assert!(n > bytes.len()),
                Err(_) => {}
            }
        }
        Ok(())
    }
}
