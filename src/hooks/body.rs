//! A webhook request turned into the values adnanh/webhook's hooks can reference: headers under
//! Go's canonical names, query parameters, the parsed payload, the raw body, the method and the
//! remote address (adnanh's `hook.Request`, filled by `hookHandler` in `webhook.go` and by
//! `internal/hook/request.go`).
//!
//! The payload is chosen by the content type (the hook's `incoming-payload-content-type` wins over
//! the header), tested in adnanh's order on the media type, case-insensitively:
//!
//! | media type contains | payload |
//! |---|---|
//! | `json` | the JSON object; a top-level list becomes `{"root": [...]}` |
//! | `x-www-form-urlencoded` | `{name: first value}` (GitHub's `payload=<json>` stays a string until `parse-parameters-as-json` names it) |
//! | `xml` | refused with 415: hookcast does not parse XML |
//! | `multipart/form-data` | plain parts as strings; a file part as a JSON object when its `Content-Type` is `application/json` or `parse-parameters-as-json` names it; other file parts left out |
//! | anything else, or an empty body | no payload (`null`), as adnanh |
//!
//! Unlike adnanh, a body that does not parse is an error (400) rather than a log line followed by
//! a run with an empty payload. Everything here is pure.

use crate::hooks::json::{self, Index, Node};
use crate::http::token::{hex_digit, is_token_byte, media_type};
use serde_json::{Map, Value};
use std::fmt;

/// Deepest JSON nesting accepted in a payload (objects and lists inside each other): what
/// serde_json's recursion limit of 128 lets through, answering deeper input with an error, never
/// a stack overflow; pinned by the `json_depth_limit` test. adnanh (Go) allows 10 000.
pub const MAX_JSON_DEPTH: usize = json::MAX_DEPTH;

/// Most parts read from one multipart body.
pub const MAX_MULTIPART_PARTS: usize = 1000;

/// Longest multipart boundary (RFC 2046 §5.1.1: 1 to 70 characters).
pub const MAX_BOUNDARY_LEN: usize = 70;

/// The values of one request, in adnanh's shapes. Its `Debug` shows names and sizes only: header
/// values and bodies carry tokens and signatures.
#[derive(Clone, PartialEq)]
pub struct RequestValues {
    /// Headers by Go-canonical name (`X-Hub-Signature`), first value; `Host` and
    /// `Transfer-Encoding` left out as Go's `net/http` does.
    pub headers: Map<String, Value>,
    /// Query parameters, first value.
    pub query: Map<String, Value>,
    /// The body as adnanh sees it: an object, or `null` when there is none. Read it with
    /// [`RequestValues::payload`].
    pub payload: Payload,
    /// The body bytes exactly as received (what `payload-hmac-*` rules sign).
    pub raw_body: Vec<u8>,
    /// Request method, as sent.
    pub method: String,
    /// Client address as `IP:port` (`[v6]:port`), what `request`/`remote-addr` returns and
    /// `ip-whitelist` checks.
    pub remote_addr: String,
    /// The content type the payload was parsed as (override or header).
    pub content_type: String,
}

impl fmt::Debug for RequestValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestValues")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("query", &self.query.keys().collect::<Vec<_>>())
            .field("payload_is_object", &self.payload().is_object())
            .field("raw_body_len", &self.raw_body.len())
            .field("method", &self.method)
            .field("remote_addr", &self.remote_addr)
            .field("content_type", &self.content_type)
            .finish()
    }
}

/// A request's payload: parsed, or a JSON object still in the raw body, read when asked.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// Form and multipart bodies, a JSON list (`{"root": [...]}`), an edited payload, or `null`.
    Parsed(Value),
    /// A checked JSON object: the raw body, with its members found.
    Json(Index),
}

impl Payload {
    /// The payload as one value; `body` is the raw body it came from.
    pub fn to_value(&self, body: &[u8]) -> Value {
        self.node(body).to_value().into_owned()
    }

    fn node<'a>(&'a self, body: &'a [u8]) -> Node<'a> {
        match self {
            Payload::Parsed(v) => Node::Parsed(v),
            Payload::Json(index) => index.node(body),
        }
    }
}

/// Why a body could not be turned into a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The body does not parse as its content type says (400).
    Malformed(String),
    /// hookcast does not read this kind of body (415).
    Unsupported(String),
}

impl BodyError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            BodyError::Malformed(_) => 400,
            BodyError::Unsupported(_) => 415,
        }
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BodyError::Malformed(m) | BodyError::Unsupported(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for BodyError {}

pub(crate) fn malformed<T>(m: impl Into<String>) -> Result<T, BodyError> {
    Err(BodyError::Malformed(m.into()))
}

impl RequestValues {
    /// Builds the values of a request: headers, query and payload, parsed by `content_type_override`
    /// when given (a hook's `incoming-payload-content-type`), else by the header. `json_parts`
    /// names the multipart file parts read as JSON (a hook's `payload` entries of
    /// `parse-parameters-as-json`; the rest of that list is applied afterwards, see
    /// [`crate::hooks::params::apply_parse_parameters_as_json`]).
    pub fn build<'a>(
        content_type_override: Option<&str>,
        json_parts: &[&str],
        method: &str,
        remote_addr: &str,
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        raw_query: &str,
        body: Vec<u8>,
    ) -> Result<RequestValues, BodyError> {
        let headers = headers_map(headers);
        let header_ct = headers.get("Content-Type").and_then(Value::as_str).unwrap_or("");
        let content_type = effective_content_type(header_ct, content_type_override).to_string();
        let payload = parse_payload_with_json_parts(&content_type, None, &body, json_parts)?;
        Ok(RequestValues {
            headers,
            query: query_map(raw_query),
            payload,
            raw_body: body,
            method: method.to_string(),
            remote_addr: remote_addr.to_string(),
            content_type,
        })
    }

    /// The payload, for reading.
    pub fn payload(&self) -> Node<'_> {
        self.payload.node(&self.raw_body)
    }

    /// The payload parsed, for editing (`parse-parameters-as-json`): a JSON body is parsed now.
    pub fn payload_mut(&mut self) -> &mut Value {
        if let Payload::Json(_) = self.payload {
            self.payload = Payload::Parsed(self.payload.to_value(&self.raw_body));
        }
        match &mut self.payload {
            Payload::Parsed(v) => v,
            Payload::Json(_) => unreachable!("parsed just above"),
        }
    }
}

/// Go's `textproto.CanonicalMIMEHeaderKey`: the first letter and each letter after a `-` upper
/// case, the rest lower case; a name with a byte outside the RFC 7230 token set is left as is.
pub fn canonical_header_key(name: &str) -> String {
    if !name.bytes().all(is_token_byte) {
        return name.to_string();
    }
    let mut upper = true;
    name.bytes()
        .map(|b| {
            let c = if upper { b.to_ascii_uppercase() } else { b.to_ascii_lowercase() };
            upper = b == b'-';
            c as char
        })
        .collect()
}

/// Headers as adnanh sees them: canonical names, the first value of each, surrounding blanks
/// trimmed, `Host` and `Transfer-Encoding` left out (Go's server moves them out of the map);
/// bytes that are not UTF-8 replaced by U+FFFD.
pub fn headers_map<'a>(headers: impl IntoIterator<Item = (&'a str, &'a [u8])>) -> Map<String, Value> {
    let mut map = Map::new();
    for (name, value) in headers {
        let key = canonical_header_key(name);
        if key == "Host" || key == "Transfer-Encoding" || map.contains_key(&key) {
            continue;
        }
        let value = String::from_utf8_lossy(value).trim_matches([' ', '\t']).to_string();
        map.insert(key, Value::String(value));
    }
    map
}

/// Query parameters as Go's `URL.Query()` reads them: `&`-separated, `+` as space, `%XX`
/// decoded, the first value of a name kept; a pair with a `;` or a bad escape is skipped.
pub fn query_map(raw_query: &str) -> Map<String, Value> {
    let mut map = Map::new();
    for pair in raw_query.split('&') {
        if let Ok(Some((k, v))) = decode_pair(pair.as_bytes()) {
            let k = String::from_utf8_lossy(&k).into_owned();
            let v = String::from_utf8_lossy(&v).into_owned();
            map.entry(k).or_insert(Value::String(v));
        }
    }
    map
}

/// A decoded `key=value` pair.
type Pair = (Vec<u8>, Vec<u8>);

/// One `key=value` pair, decoded; `Ok(None)` for an empty pair.
fn decode_pair(pair: &[u8]) -> Result<Option<Pair>, String> {
    if pair.is_empty() {
        return Ok(None);
    }
    if pair.contains(&b';') {
        return Err("invalid semicolon separator".to_string());
    }
    let (k, v) = match pair.iter().position(|&b| b == b'=') {
        Some(i) => (&pair[..i], &pair[i + 1..]),
        None => (pair, &[][..]),
    };
    Ok(Some((unescape(k)?, unescape(v)?)))
}

/// Go's `url.QueryUnescape`.
fn unescape(s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match (s.get(i + 1).copied().and_then(hex_digit), s.get(i + 2).copied().and_then(hex_digit)) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => {
                        let end = (i + 3).min(s.len());
                        return Err(format!("invalid escape {:?}", String::from_utf8_lossy(&s[i..end])));
                    }
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Ok(out)
}

/// The content type a hook reads its payload as: its non-empty override, else the header.
pub fn effective_content_type<'a>(header: &'a str, override_ct: Option<&'a str>) -> &'a str {
    match override_ct {
        Some(o) if !o.is_empty() => o,
        _ => header,
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Parses a body as adnanh would for `content_type` (or the override); see the module docs.
pub fn parse_payload(content_type: &str, override_ct: Option<&str>, body: &[u8]) -> Result<Value, BodyError> {
    parse_payload_with_json_parts(content_type, override_ct, body, &[]).map(|p| p.to_value(body))
}

/// [`parse_payload`], where the multipart file parts named in `json_parts` are read as JSON
/// whatever their own content type (adnanh forces this for the `payload` names listed in a
/// hook's `parse-parameters-as-json`).
pub fn parse_payload_with_json_parts(
    content_type: &str,
    override_ct: Option<&str>,
    body: &[u8],
    json_parts: &[&str],
) -> Result<Payload, BodyError> {
    let (essence, params) = media_type(effective_content_type(content_type, override_ct));
    if essence.contains("json") {
        return json_payload(body);
    }
    let parsed = if essence.contains("x-www-form-urlencoded") {
        form_payload(body)
    } else if essence.contains("xml") {
        Err(BodyError::Unsupported(format!(
            "XML payloads ({essence}) are not supported by hookcast; send JSON or form data"
        )))
    } else if essence == "multipart/form-data" {
        let Some(boundary) = param(&params, "boundary") else {
            return malformed("multipart/form-data without a boundary parameter");
        };
        multipart_payload(body, boundary, json_parts)
    } else {
        Ok(Value::Null)
    };
    parsed.map(Payload::Parsed)
}

/// A JSON body is checked whole (so a broken one is a 400 before anything runs) but an object
/// is left as text: rules and the summary read a handful of its values.
fn json_payload(body: &[u8]) -> Result<Payload, BodyError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Payload::Parsed(Value::Null));
    }
    let doc = json::check(body).or_else(|e| malformed(format!("invalid JSON payload: {e}")))?;
    if let Some(index) = doc.index {
        return Ok(Payload::Json(index));
    }
    match Node::Text(&body[doc.value]).to_value().into_owned() {
        Value::Null => Ok(Payload::Parsed(Value::Null)),
        v @ Value::Array(_) => {
            let mut root = Map::new();
            root.insert("root".to_string(), v);
            Ok(Payload::Parsed(Value::Object(root)))
        }
        _ => malformed("JSON payload must be an object or a list"),
    }
}

fn form_payload(body: &[u8]) -> Result<Value, BodyError> {
    let mut map = Map::new();
    for pair in body.split(|&b| b == b'&') {
        let Some((k, v)) = decode_pair(pair).or_else(|e| malformed(format!("invalid form payload: {e}")))? else {
            continue;
        };
        let (Ok(k), Ok(v)) = (String::from_utf8(k), String::from_utf8(v)) else {
            return malformed("invalid form payload: a name or value is not UTF-8");
        };
        map.entry(k).or_insert(Value::String(v));
    }
    Ok(Value::Object(map))
}

/// One part of a multipart body.
struct Part<'a> {
    name: String,
    is_file: bool,
    is_json: bool,
    data: &'a [u8],
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > hay.len() {
        return None;
    }
    hay[from..].windows(needle.len()).position(|w| w == needle).map(|p| p + from)
}

/// Where a delimiter line that starts at `at` (just past `--boundary`) ends: past `--` for the
/// close delimiter (`Some((end, true))`), past optional blanks and a line break otherwise.
fn delimiter_end(body: &[u8], at: usize) -> Option<(usize, bool)> {
    let rest = &body[at..];
    if rest.starts_with(b"--") {
        return Some((at + 2, true));
    }
    let blanks = rest.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
    match &rest[blanks..] {
        [b'\r', b'\n', ..] => Some((at + blanks + 2, false)),
        [b'\n', ..] => Some((at + blanks + 1, false)),
        _ => None,
    }
}

/// RFC 2046 §5.1 / RFC 7578 parts, with CRLF or bare LF line breaks (as Go's reader allows).
fn multipart_parts<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, BodyError> {
    if boundary.is_empty() || boundary.len() > MAX_BOUNDARY_LEN {
        return malformed(format!("multipart boundary must be 1 to {MAX_BOUNDARY_LEN} characters"));
    }
    let delim = format!("--{boundary}").into_bytes();
    let line_delim = [b"\n".as_slice(), &delim].concat();
    // The first delimiter opens the body or a line after the preamble.
    let mut search = 0;
    let mut pos = loop {
        let start = if search == 0 && body.starts_with(&delim) {
            0
        } else {
            match find(body, &line_delim, search) {
                Some(i) => i + 1,
                None => return malformed("multipart body has no boundary delimiter"),
            }
        };
        match delimiter_end(body, start + delim.len()) {
            Some((end, false)) => break end,
            Some((_, true)) => return Ok(Vec::new()),
            None => search = start + 1,
        }
    };
    let mut parts = Vec::new();
    loop {
        if parts.len() == MAX_MULTIPART_PARTS {
            return malformed(format!("multipart body has more than {MAX_MULTIPART_PARTS} parts"));
        }
        let (headers, content_start) = part_headers(body, pos)?;
        // The content ends at the next line that is a delimiter.
        let mut search = content_start.saturating_sub(1);
        let (content_end, next, last) = loop {
            let Some(i) = find(body, &line_delim, search) else {
                return malformed("multipart body ends before its closing delimiter");
            };
            if let Some((end, last)) = delimiter_end(body, i + line_delim.len()) {
                let content_end = if i > content_start && body[i - 1] == b'\r' { i - 1 } else { i };
                break (content_end.max(content_start), end, last);
            }
            search = i + 1;
        };
        parts.push(part_from(headers, &body[content_start..content_end])?);
        if last {
            return Ok(parts);
        }
        pos = next;
    }
}

/// How many parts `multipart_parts` finds, for the fuzz target that checks its limits.
#[doc(hidden)]
pub fn multipart_part_count(body: &[u8], boundary: &str) -> Result<usize, BodyError> {
    multipart_parts(body, boundary).map(|parts| parts.len())
}

/// The header fields of a part starting at `pos`, names lower case, and where its content starts.
fn part_headers(body: &[u8], mut pos: usize) -> Result<(Vec<(String, String)>, usize), BodyError> {
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let Some(nl) = find(body, b"\n", pos) else {
            return malformed("multipart part headers are not terminated");
        };
        let line = &body[pos..nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos = nl + 1;
        if line.is_empty() {
            return Ok((headers, pos));
        }
        let line = String::from_utf8_lossy(line);
        if line.starts_with([' ', '\t']) {
            // obs-fold continuation of the previous field.
            match headers.last_mut() {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                None => return malformed("multipart part header starts with a continuation line"),
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return malformed(format!("malformed multipart part header {:?}", line.as_ref()));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
}

fn part_from(headers: Vec<(String, String)>, data: &[u8]) -> Result<Part<'_>, BodyError> {
    let mut name = String::new();
    let mut is_file = false;
    let mut is_json = false;
    for (k, v) in &headers {
        match k.as_str() {
            "content-disposition" if name.is_empty() => {
                let (disposition, params) = media_type(v);
                if disposition == "form-data" {
                    name = param(&params, "name").unwrap_or_default().to_string();
                    is_file = param(&params, "filename").is_some() || param(&params, "filename*").is_some();
                }
            }
            "content-type" => is_json |= media_type(v).0 == "application/json",
            // Go decodes quoted-printable parts transparently; other encodings it passes through
            // as they are, and so does hookcast.
            "content-transfer-encoding" if v.eq_ignore_ascii_case("quoted-printable") => {
                return Err(BodyError::Unsupported(format!(
                    "multipart Content-Transfer-Encoding {v:?} is not supported"
                )));
            }
            _ => {}
        }
    }
    Ok(Part { name, is_file, is_json, data })
}

fn multipart_payload(body: &[u8], boundary: &str, json_parts: &[&str]) -> Result<Value, BodyError> {
    let mut values = Map::new();
    let mut files = Map::new();
    let mut seen_files: Vec<String> = Vec::new();
    for part in multipart_parts(body, boundary)? {
        if part.name.is_empty() {
            continue;
        }
        if !part.is_file {
            let Ok(text) = std::str::from_utf8(part.data) else {
                return malformed(format!("multipart value {:?} is not UTF-8", part.name));
            };
            values.entry(part.name).or_insert_with(|| Value::String(text.to_string()));
            continue;
        }
        // adnanh looks only at the first file of a name.
        if seen_files.contains(&part.name) {
            continue;
        }
        seen_files.push(part.name.clone());
        if part.is_json || json_parts.contains(&part.name.as_str()) {
            let v: Value = serde_json::from_slice(part.data)
                .or_else(|e| malformed(format!("multipart file {:?} is not valid JSON: {e}", part.name)))?;
            if !v.is_object() {
                return malformed(format!("multipart file {:?} must hold a JSON object", part.name));
            }
            files.insert(part.name, v);
        }
    }
    values.extend(files);
    Ok(if values.is_empty() { Value::Null } else { Value::Object(values) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::def::{parse_hook, HookDef};
    use crate::hooks::intake::request_values;
    use crate::hooks::params::{extract, parse_argument};
    use serde_json::json;

    #[test]
    fn canonical_keys_like_go() {
        let table = [
            ("x-hub-signature-256", "X-Hub-Signature-256"),
            ("X-GITLAB-TOKEN", "X-Gitlab-Token"),
            ("content-type", "Content-Type"),
            ("x_under_score", "X_under_score"),
            ("a--b", "A--B"),
            ("bad header", "bad header"),
            ("ünïcode", "ünïcode"),
            ("", ""),
        ];
        for (raw, want) in table {
            assert_eq!(canonical_header_key(raw), want, "{raw}");
        }
    }

    #[test]
    fn headers_first_value_wins() {
        let h = headers_map([
            ("x-a", b"1".as_slice()),
            ("X-A", b"2".as_slice()),
            ("host", b"example.org".as_slice()),
            ("transfer-encoding", b"chunked".as_slice()),
            ("x-b", b"  padded\t".as_slice()),
            ("x-c", b"\xffbad".as_slice()),
        ]);
        assert_eq!(Value::Object(h), json!({"X-A": "1", "X-B": "padded", "X-C": "\u{fffd}bad"}));
    }

    #[test]
    fn query_like_go() {
        let q = query_map("a=1&a=2&b=x+y%21&empty&&c=%zz&d=ok;no&e=%41");
        assert_eq!(Value::Object(q), json!({"a": "1", "b": "x y!", "empty": "", "e": "A"}));
    }

    #[test]
    fn json_payloads() {
        assert_eq!(parse_payload("application/json", None, br#"{"a": 1}"#).unwrap(), json!({"a": 1}));
        assert_eq!(
            parse_payload("application/vnd.github+json; charset=utf-8", None, b" [1, {\"b\": 2}]").unwrap(),
            json!({"root": [1, {"b": 2}]})
        );
        assert_eq!(parse_payload("Application/JSON", None, b"  \n").unwrap(), Value::Null);
        assert_eq!(parse_payload("application/json", None, b"null").unwrap(), Value::Null);
        for bad in [&b"{"[..], b"\"str\"", b"12", b"{\"a\":1} trailing", b"\xff"] {
            assert_eq!(parse_payload("application/json", None, bad).unwrap_err().status(), 400, "{bad:?}");
        }
        // The override wins over the header.
        assert_eq!(parse_payload("text/plain", Some("application/json"), br#"{"a":1}"#).unwrap(), json!({"a": 1}));
        assert_eq!(parse_payload("application/json", Some(""), br#"{"a":1}"#).unwrap(), json!({"a": 1}));
        // Unknown and absent types: no payload, as adnanh.
        assert_eq!(parse_payload("text/plain", None, b"hello").unwrap(), Value::Null);
        assert_eq!(parse_payload("", None, b"{}").unwrap(), Value::Null);
        let xml = parse_payload("application/xml", None, b"<a/>").unwrap_err();
        assert_eq!((xml.status(), xml.to_string().starts_with("XML payloads")), (415, true));
    }

    #[test]
    fn json_depth_limit() {
        let nest = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n - 1), "]".repeat(n - 1));
        assert!(parse_payload("application/json", None, nest(MAX_JSON_DEPTH).as_bytes()).is_ok());
        assert_eq!(
            parse_payload("application/json", None, nest(MAX_JSON_DEPTH + 1).as_bytes()).unwrap_err().status(),
            400
        );
        // Far deeper input errors out instead of overflowing the stack.
        let deep = "[".repeat(1_000_000);
        let e = parse_payload("application/json", None, deep.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("nested too deeply"), "{e}");
    }

    #[test]
    fn form_payloads() {
        let v = parse_payload(
            "application/x-www-form-urlencoded",
            None,
            b"payload=%7B%22ref%22%3A%22x%22%7D&a=1&a=2&sp=a+b",
        )
        .unwrap();
        assert_eq!(v, json!({"payload": "{\"ref\":\"x\"}", "a": "1", "sp": "a b"}));
        assert_eq!(parse_payload("application/x-www-form-urlencoded", None, b"").unwrap(), json!({}));
        for bad in [&b"a=%zz"[..], b"a=1;b=2", b"a=%ff"] {
            assert_eq!(
                parse_payload("application/x-www-form-urlencoded", None, bad).unwrap_err().status(),
                400,
                "{bad:?}"
            );
        }
    }

    fn multipart(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut b = b"preamble\r\n".to_vec();
        for (headers, body) in parts {
            b.extend_from_slice(b"--XyZ\r\n");
            b.extend_from_slice(headers.as_bytes());
            b.extend_from_slice(b"\r\n\r\n");
            b.extend_from_slice(body.as_bytes());
            b.extend_from_slice(b"\r\n");
        }
        b.extend_from_slice(b"--XyZ--\r\nepilogue");
        b
    }

    const MP: &str = "multipart/form-data; boundary=\"XyZ\"";

    #[test]
    fn multipart_payloads() {
        let body = multipart(&[
            ("Content-Disposition: form-data; name=\"event\"\r\nContent-Transfer-Encoding: 7bit", "push"),
            ("Content-Disposition: form-data; name=\"event\"", "second value ignored"),
            ("Content-Disposition: form-data; name=\"multi\"", "line 1\r\nline 2\r\n--XyZnot-a-delimiter"),
            ("Content-Disposition: form-data; name=\"meta\"; filename=\"meta.json\"\r\nContent-Type: application/json", r#"{"ref":"refs/heads/main","n":[1,2]}"#),
            ("Content-Disposition: form-data; name=\"blob\"; filename=\"x.bin\"\r\nContent-Type: application/octet-stream", "\u{1}\u{2}"),
            ("Content-Disposition: form-data; name=\"forced\"; filename=\"f.txt\"", r#"{"k":"v"}"#),
            ("Content-Disposition: form-data", "no name"),
            ("Content-Disposition: attachment; name=\"att\"", "not form-data"),
        ]);
        let v = parse_payload_with_json_parts(MP, None, &body, &["forced"]).unwrap();
        assert_eq!(
            v,
            Payload::Parsed(json!({
                "event": "push",
                "multi": "line 1\r\nline 2\r\n--XyZnot-a-delimiter",
                "meta": {"ref": "refs/heads/main", "n": [1, 2]},
                "forced": {"k": "v"},
            }))
        );
        // Without the forced name, a text file part is left out.
        let v = parse_payload(MP, None, &body).unwrap();
        assert!(v.get("forced").is_none() && v.get("blob").is_none());
        // Bare LF line breaks.
        let lf = b"--b\nContent-Disposition: form-data; name=\"a\"\n\nx\n--b--\n";
        assert_eq!(parse_payload("multipart/form-data; boundary=b", None, lf).unwrap(), json!({"a": "x"}));
        // No parts at all: no payload.
        assert_eq!(parse_payload("multipart/form-data; boundary=b", None, b"--b--\r\n").unwrap(), Value::Null);
    }

    #[test]
    fn multipart_errors() {
        let bad_utf8 = [&b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n\xff\r\n--b--"[..]].concat();
        let cases: [(&str, &[u8], u16); 8] = [
            ("multipart/form-data", b"--b--", 400),
            ("multipart/form-data; boundary=b", b"no delimiter", 400),
            ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nunterminated", 400),
            ("multipart/form-data; boundary=b", b"--b\r\nContent-Disposition: form-data; name=\"a\"", 400),
            ("multipart/form-data; boundary=b", &bad_utf8, 400),
            (
                "multipart/form-data; boundary=b",
                b"--b\r\nContent-Disposition: form-data; name=\"j\"; filename=\"j\"\r\nContent-Type: application/json\r\n\r\n[1]\r\n--b--",
                400,
            ),
            (
                "multipart/form-data; boundary=b",
                b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=41\r\n--b--",
                415,
            ),
            ("multipart/form-data; boundary=b", b"--b\r\nbroken header\r\n\r\nx\r\n--b--", 400),
        ];
        for (ct, body, status) in cases {
            let e = parse_payload(ct, None, body).unwrap_err();
            assert_eq!(e.status(), status, "{ct} {:?}: {e}", String::from_utf8_lossy(body));
        }
        let too_long = format!("multipart/form-data; boundary={}", "b".repeat(71));
        assert_eq!(parse_payload(&too_long, None, b"").unwrap_err().status(), 400);
        let many: String = (0..=MAX_MULTIPART_PARTS).map(|_| "--b\r\n\r\nx\r\n").collect::<String>() + "--b--";
        assert!(parse_payload("multipart/form-data; boundary=b", None, many.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("parts"));
    }

    proptest::proptest! {
        #[test]
        fn no_body_panics(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512), lf in proptest::prelude::any::<bool>()) {
            // Bias towards bodies that contain delimiters and header breaks.
            let mut framed = if lf { b"--b\n".to_vec() } else { b"--b\r\n".to_vec() };
            framed.extend_from_slice(&body);
            framed.extend_from_slice(b"\r\n--b--");
            for ct in ["multipart/form-data; boundary=b", "application/json", "application/x-www-form-urlencoded"] {
                let _ = parse_payload_with_json_parts(ct, None, &body, &["f"]);
                let _ = parse_payload_with_json_parts(ct, None, &framed, &["f"]);
            }
            let _ = query_map(&String::from_utf8_lossy(&body));
        }
    }

    #[test]
    fn media_type_params() {
        let (t, p) = media_type("Multipart/Form-Data; Boundary=\"a \\\"b\\\"\"; charset=utf-8");
        assert_eq!(t, "multipart/form-data");
        assert_eq!(
            p,
            vec![("boundary".to_string(), "a \"b\"".to_string()), ("charset".to_string(), "utf-8".to_string())]
        );
    }

    fn hook(extra: Value) -> HookDef {
        let mut h = json!({"id": "h"});
        h.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        parse_hook(h, "hooks[0]").unwrap()
    }

    #[test]
    fn github_form_payload_with_parse_parameters_as_json() {
        let h = hook(json!({"parse-parameters-as-json": [{"source": "payload", "name": "payload"}]}));
        let body =
            b"payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%2C%22commits%22%3A%5B%7B%22id%22%3A%22c0%22%7D%5D%7D"
                .to_vec();
        let rv = request_values(
            &h,
            "POST",
            "192.0.2.1:5000",
            [("content-type", b"application/x-www-form-urlencoded".as_slice())],
            "",
            body,
        )
        .unwrap();
        assert_eq!(
            rv.payload().to_value().into_owned(),
            json!({"payload": {"ref": "refs/heads/main", "commits": [{"id": "c0"}]}})
        );
        let a = parse_argument(json!({"source": "payload", "name": "payload.commits.0.id"}), "a").unwrap();
        assert_eq!(extract(&a, &rv).unwrap(), "c0");
    }

    #[test]
    fn parse_parameters_as_json_everywhere() {
        let h = hook(json!({
            "incoming-payload-content-type": "application/json",
            "parse-parameters-as-json": [
                {"source": "header", "name": "x-meta"},
                {"source": "url", "name": "q"},
                {"source": "payload", "name": "outer.inner"},
                {"source": "payload", "name": "absent"},
                {"source": "payload", "name": "already"},
            ]
        }));
        let rv = request_values(
            &h,
            "POST",
            "[::1]:5000",
            [("X-Meta", br#"{"a":1}"#.as_slice())],
            "q=%7B%22b%22%3Atrue%7D",
            br#"{"outer": {"inner": "{\"c\": [1]}"}, "already": {"x": 1}}"#.to_vec(),
        )
        .unwrap();
        assert_eq!(rv.headers["X-Meta"], json!({"a": 1}));
        assert_eq!(rv.query["q"], json!({"b": true}));
        assert_eq!(rv.payload().to_value().into_owned(), json!({"outer": {"inner": {"c": [1]}}, "already": {"x": 1}}));
        assert_eq!(rv.content_type, "application/json");

        let bad = request_values(&h, "POST", "[::1]:5000", [("X-Meta", b"[1]".as_slice())], "", Vec::new());
        assert_eq!(bad.unwrap_err().to_string(), "parse-parameters-as-json: header \"x-meta\" must hold a JSON object");
        let bad = request_values(&h, "POST", "[::1]:5000", [("X-Meta", b"{".as_slice())], "", Vec::new());
        assert!(bad
            .unwrap_err()
            .to_string()
            .starts_with("parse-parameters-as-json: header \"x-meta\" is not valid JSON"));
    }

    #[test]
    fn build_multipart_keeps_raw_body() {
        let h = hook(json!({"parse-parameters-as-json": [{"source": "payload", "name": "meta"}]}));
        let body = multipart(&[
            ("Content-Disposition: form-data; name=\"meta\"; filename=\"m\"", r#"{"event":"build"}"#),
            ("Content-Disposition: form-data; name=\"note\"", r#"{"not":"parsed"}"#),
        ]);
        let rv = request_values(&h, "PUT", "10.0.0.1:1", [("Content-Type", MP.as_bytes())], "", body.clone()).unwrap();
        assert_eq!(
            rv.payload().to_value().into_owned(),
            json!({"meta": {"event": "build"}, "note": "{\"not\":\"parsed\"}"})
        );
        assert_eq!(rv.raw_body, body);
        assert_eq!(rv.method, "PUT");
        let debug = format!("{rv:?}");
        assert!(debug.contains("raw_body_len") && !debug.contains("build"), "{debug}");
    }
}
