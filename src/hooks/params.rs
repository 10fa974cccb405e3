//! Request values referenced by adnanh/webhook hooks (`{"source": "payload", "name":
//! "commits.0.id"}`): parsing such a reference from a hooks file, and reading its value from a
//! request exactly as adnanh does in `internal/hook/hook.go` (`Argument.Get`, `GetParameter`,
//! `ExtractParameterAsString`):
//!
//! - a name is first looked up as a literal key (`"a.b"` wins over `a` → `b`), then split at its
//!   *first* dot; inside a list the segment must be a decimal index (`commits.0.id`);
//! - header names are put in Go's canonical form first (`x-hub-signature` → `X-Hub-Signature`);
//! - strings come out as they are, numbers as written, `true`/`false`, JSON `null` as `<nil>`
//!   (Go's `%v` of a nil), objects and lists as Go's `json.Marshal` prints them: keys sorted,
//!   `<`, `>` and `&` escaped as `\u003c`, `\u003e`, `\u0026`.
//!
//! Everything here is pure: the request arrives as [`RequestValues`].

use crate::config::json::{check_fields, ConfigError, Obj};
use crate::hooks::body::{canonical_header_key, malformed, BodyError, RequestValues};
use crate::hooks::json::Node;
use base64::Engine;
use serde_json::{Map, Value};
use std::fmt;

/// Prefix adnanh gives environment variables that have no `envname`.
pub const ENV_PREFIX: &str = "HOOK_";

/// Where a value comes from (adnanh's `source` spellings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// `header`: a request header, first value, name looked up in Go's canonical form.
    Header,
    /// `url`: a query parameter, first value (same map as `query`).
    Url,
    /// `query`: adnanh's alias of `url`.
    Query,
    /// `payload`: a value of the parsed body (JSON, form or multipart), by dot path.
    Payload,
    /// `request`: `method` or `remote-addr` (`IP:port`), name case-insensitive.
    Request,
    /// `raw-request-body`: the body bytes as received.
    RawRequestBody,
    /// `entire-payload`: the parsed body, JSON-encoded.
    EntirePayload,
    /// `entire-headers`: all headers (first values, canonical names), JSON-encoded.
    EntireHeaders,
    /// `entire-query`: all query parameters (first values), JSON-encoded.
    EntireQuery,
    /// `string`: the `name` itself, a constant.
    String,
}

impl Source {
    /// Every spelling adnanh accepts, for error messages.
    pub const ALL: &'static str =
        "header, url, query, payload, request, raw-request-body, entire-payload, entire-headers, entire-query, string";

    /// Parses adnanh's spelling.
    pub fn parse(s: &str) -> Option<Source> {
        Some(match s {
            "header" => Source::Header,
            "url" => Source::Url,
            "query" => Source::Query,
            "payload" => Source::Payload,
            "request" => Source::Request,
            "raw-request-body" => Source::RawRequestBody,
            "entire-payload" => Source::EntirePayload,
            "entire-headers" => Source::EntireHeaders,
            "entire-query" => Source::EntireQuery,
            "string" => Source::String,
            _ => return None,
        })
    }

    /// adnanh's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Header => "header",
            Source::Url => "url",
            Source::Query => "query",
            Source::Payload => "payload",
            Source::Request => "request",
            Source::RawRequestBody => "raw-request-body",
            Source::EntirePayload => "entire-payload",
            Source::EntireHeaders => "entire-headers",
            Source::EntireQuery => "entire-query",
            Source::String => "string",
        }
    }

    /// Whether `name` picks a value out of a map (and so must be given).
    fn needs_name(self) -> bool {
        matches!(self, Source::Header | Source::Url | Source::Query | Source::Payload | Source::Request)
    }
}

/// A reference to a request value: adnanh's `Argument`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Argument {
    /// Where the value comes from.
    pub source: Source,
    /// Key or dot path in that source; the value itself for [`Source::String`].
    pub name: String,
    /// `envname`: the environment variable (or, for files, the variable holding the path).
    pub env_name: Option<String>,
    /// `base64decode`: decode the value before writing it to a file (`pass-file-to-command` only,
    /// as in adnanh; elsewhere accepted and ignored, as adnanh ignores it).
    pub base64_decode: bool,
}

impl Argument {
    /// The variable name for `pass-environment-to-command`: `envname`, else `HOOK_` + name.
    pub fn env_var(&self) -> String {
        self.env_name.clone().unwrap_or_else(|| format!("{ENV_PREFIX}{}", self.name))
    }

    /// The variable naming the file for `pass-file-to-command`: `envname`, else `HOOK_` + the
    /// name in upper case (adnanh upper-cases here, not for plain environment variables).
    pub fn file_env_var(&self) -> String {
        self.env_name.clone().unwrap_or_else(|| format!("{ENV_PREFIX}{}", self.name.to_uppercase()))
    }
}

impl fmt::Display for Argument {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}", self.source.as_str(), self.name)
    }
}

/// Why a value could not be read from a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamError {
    /// Nothing at that name (adnanh's "parameter node not found"); rules treat it as no match.
    NotFound {
        /// The source looked in.
        source: Source,
        /// The name looked up.
        name: String,
    },
    /// `base64decode` was set and the value is not standard base64.
    Base64 {
        /// The name of the argument.
        name: String,
    },
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::NotFound { source, name } => write!(f, "no {} value named {name:?}", source.as_str()),
            ParamError::Base64 { name } => write!(f, "value of {name:?} is not valid base64"),
        }
    }
}

impl std::error::Error for ParamError {}

/// Fields of adnanh's `Argument` that hookcast reads.
pub(crate) const ARGUMENT_FIELDS: &[&str] = &["source", "name", "envname", "base64decode"];

/// Fields seen in adnanh forks and pull requests that hookcast refuses, with the reason.
pub(crate) const ARGUMENT_REFUSED: &[(&str, &str)] = &[(
    "headers-to-add-to-signature-payload",
    "headers-to-add-to-signature-payload (an unmerged adnanh/webhook pull request; use a provider for schemes that sign headers)",
)];

/// Parses one `{"source": …, "name": …}` object found at `path`.
pub fn parse_argument(value: Value, path: &str) -> Result<Argument, ConfigError> {
    check_fields(&value, path, ARGUMENT_FIELDS, ARGUMENT_REFUSED)?;
    let mut o = Obj::new(value, path)?;
    let source_path = o.at("source");
    let source = match o.opt_str("source")? {
        None => return Err(ConfigError { path: source_path, message: format!("missing (one of {})", Source::ALL) }),
        Some(s) => match Source::parse(&s) {
            Some(src) => src,
            None if s == "template" || s == "context" => {
                return Err(ConfigError {
                    path: source_path,
                    message: format!("not supported by hookcast: source {s:?} (Go templates / pre-hook context)"),
                })
            }
            None => {
                return Err(ConfigError {
                    path: source_path,
                    message: format!("unknown source {s:?} (one of {})", Source::ALL),
                })
            }
        },
    };
    let name_path = o.at("name");
    let name = o.opt_str("name")?.unwrap_or_default();
    if source.needs_name() && name.is_empty() {
        return Err(ConfigError {
            path: name_path,
            message: format!("missing (source {:?} reads a named value)", source.as_str()),
        });
    }
    if source == Source::Request && !matches!(name.to_ascii_lowercase().as_str(), "method" | "remote-addr") {
        return Err(ConfigError {
            path: name_path,
            message: format!("unknown request value {name:?} (method or remote-addr)"),
        });
    }
    let env_path = o.at("envname");
    let env_name = o.opt_str("envname")?.filter(|s| !s.is_empty());
    if let Some(e) = &env_name {
        check_env_name(e, &env_path)?;
    }
    let base64_decode = o.opt_bool("base64decode")?.unwrap_or(false);
    o.finish()?;
    Ok(Argument { source, name, env_name, base64_decode })
}

/// Parses a list of arguments as returned by [`Obj::opt_list`].
pub fn parse_arguments(items: Vec<(String, Value)>) -> Result<Vec<Argument>, ConfigError> {
    items.into_iter().map(|(path, v)| parse_argument(v, &path)).collect()
}

/// Refuses a variable name the kernel would misread (`A=B` sets `A`) or cannot carry (NUL).
pub(crate) fn check_env_name(name: &str, path: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return Err(ConfigError {
            path: path.to_string(),
            message: format!("environment variable name {name:?} must be non-empty without '=' or NUL"),
        });
    }
    Ok(())
}

/// Parses a list index as Go's `strconv.ParseUint(s, 10, 64)` does: ASCII digits only.
fn index(s: &str) -> Option<usize> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// adnanh's `GetParameter` over any JSON value: literal key first, then the part before the first
/// dot; list segments are indices. `null`, strings, numbers and booleans have no children.
pub fn lookup<'a>(path: &str, v: &'a Value) -> Option<&'a Value> {
    match v {
        Value::Object(map) => lookup_in(path, map),
        Value::Array(items) => match path.split_once('.') {
            Some((head, rest)) => lookup(rest, items.get(index(head)?)?),
            None => items.get(index(path)?),
        },
        _ => None,
    }
}

/// [`lookup`] over a payload, parsed or still JSON text.
pub fn lookup_node<'a>(path: &str, node: Node<'a>) -> Option<Node<'a>> {
    if node.is_object() {
        if let Some(v) = node.get(path) {
            return Some(v);
        }
        let (head, rest) = path.split_once('.')?;
        lookup_node(rest, node.get(head)?)
    } else if node.is_array() {
        match path.split_once('.') {
            Some((head, rest)) => lookup_node(rest, node.at(index(head)?)?),
            None => node.at(index(path)?),
        }
    } else {
        None
    }
}

/// [`lookup`] in a map (headers, query, an object payload).
pub fn lookup_in<'a>(path: &str, map: &'a Map<String, Value>) -> Option<&'a Value> {
    if let Some(v) = map.get(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    lookup(rest, map.get(head)?)
}

/// [`lookup`], for replacing the value found (`parse-parameters-as-json`).
pub fn lookup_mut<'a>(path: &str, v: &'a mut Value) -> Option<&'a mut Value> {
    match v {
        Value::Object(map) => lookup_in_mut(path, map),
        Value::Array(items) => match path.split_once('.') {
            Some((head, rest)) => lookup_mut(rest, items.get_mut(index(head)?)?),
            None => items.get_mut(index(path)?),
        },
        _ => None,
    }
}

/// [`lookup_in`], for replacing the value found.
pub fn lookup_in_mut<'a>(path: &str, map: &'a mut Map<String, Value>) -> Option<&'a mut Value> {
    if map.contains_key(path) {
        return map.get_mut(path);
    }
    let (head, rest) = path.split_once('.')?;
    lookup_mut(rest, map.get_mut(head)?)
}

/// A value as adnanh turns it into a string: Go's `fmt.Sprintf("%v")` for scalars (`<nil>` for
/// null), Go's `json.Marshal` for objects and lists.
pub fn go_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(_) | Value::Object(_) => go_json(v),
    }
}

/// JSON as Go's `json.Marshal` writes it: compact, map keys sorted bytewise, HTML-sensitive
/// characters and U+2028/U+2029 escaped.
pub fn go_json(v: &Value) -> String {
    let mut out = String::new();
    write_go_json(v, &mut out);
    out
}

/// [`go_json`] of a map (`entire-headers`, `entire-query`).
pub fn go_json_map(map: &Map<String, Value>) -> String {
    let mut out = String::new();
    write_go_object(map, &mut out);
    out
}

fn write_go_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_go_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => write_go_object(map, out),
    }
}

fn write_go_object(map: &Map<String, Value>, out: &mut String) {
    // Sorted explicitly: serde_json's map is only sorted without its `preserve_order` feature.
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    out.push('{');
    for (i, k) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_go_str(k, out);
        out.push(':');
        write_go_json(&map[k], out);
    }
    out.push('}');
}

/// Go's `encoding/json` string escaping (Go 1.22+: `\b` and `\f` short forms), with its default
/// `EscapeHTML`.
fn write_go_str(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Reads the value `arg` refers to, as a string (adnanh's `Argument.Get`).
///
/// A value that is missing is [`ParamError::NotFound`]; adnanh then passes an empty string as a
/// command argument, leaves the environment variable or file out, and counts a rule as not
/// matched. `raw-request-body` is decoded lossily here; use [`extract_bytes`] for the exact bytes.
pub fn extract(arg: &Argument, rv: &RequestValues) -> Result<String, ParamError> {
    let not_found = || ParamError::NotFound { source: arg.source, name: arg.name.clone() };
    match arg.source {
        Source::Header => lookup_in(&canonical_header_key(&arg.name), &rv.headers).map(go_string).ok_or_else(not_found),
        Source::Url | Source::Query => lookup_in(&arg.name, &rv.query).map(go_string).ok_or_else(not_found),
        Source::Payload => lookup_node(&arg.name, rv.payload()).map(|v| go_string(&v.to_value())).ok_or_else(not_found),
        Source::String => Ok(arg.name.clone()),
        Source::RawRequestBody => Ok(String::from_utf8_lossy(&rv.raw_body).into_owned()),
        Source::Request => match arg.name.to_ascii_lowercase().as_str() {
            "method" => Ok(rv.method.clone()),
            "remote-addr" => Ok(rv.remote_addr.clone()),
            _ => Err(not_found()),
        },
        Source::EntirePayload => Ok(go_json(&rv.payload().to_value())),
        Source::EntireHeaders => Ok(go_json_map(&rv.headers)),
        Source::EntireQuery => Ok(go_json_map(&rv.query)),
    }
}

/// Like [`extract`], but `raw-request-body` comes out byte for byte (for files and arguments that
/// must carry a binary body).
pub fn extract_bytes(arg: &Argument, rv: &RequestValues) -> Result<Vec<u8>, ParamError> {
    match arg.source {
        Source::RawRequestBody => Ok(rv.raw_body.clone()),
        _ => extract(arg, rv).map(String::into_bytes),
    }
}

/// The contents of a `pass-file-to-command` file: the value's bytes, base64-decoded when the
/// argument says `base64decode` (Go's `StdEncoding`, which skips CR and LF).
pub fn file_contents(arg: &Argument, rv: &RequestValues) -> Result<Vec<u8>, ParamError> {
    let bytes = extract_bytes(arg, rv)?;
    if !arg.base64_decode {
        return Ok(bytes);
    }
    let cleaned: Vec<u8> = bytes.into_iter().filter(|b| !matches!(b, b'\r' | b'\n')).collect();
    base64::engine::general_purpose::STANDARD.decode(cleaned).map_err(|_| ParamError::Base64 { name: arg.name.clone() })
}

/// adnanh's `ParseJSONParameters`: each `header`, `url`/`query` or `payload` value named in
/// `parse-parameters-as-json` that holds a string is replaced by the JSON object it encodes, so
/// rules and arguments can reach inside it (`payload.repository.full_name`). A value that is
/// missing, or already structured, is left alone; a string that is not a JSON object is an error.
pub fn apply_parse_parameters_as_json(args: &[Argument], rv: &mut RequestValues) -> Result<(), BodyError> {
    for arg in args {
        let slot = match arg.source {
            Source::Header => lookup_in_mut(&canonical_header_key(&arg.name), &mut rv.headers),
            Source::Url | Source::Query => lookup_in_mut(&arg.name, &mut rv.query),
            Source::Payload => lookup_mut(&arg.name, rv.payload_mut()),
            _ => None,
        };
        let Some(slot) = slot else { continue };
        let Value::String(text) = slot else { continue };
        let parsed: Value = serde_json::from_str(text)
            .or_else(|e| malformed(format!("parse-parameters-as-json: {arg} is not valid JSON: {e}")))?;
        if !parsed.is_object() {
            return malformed(format!("parse-parameters-as-json: {arg} must hold a JSON object"));
        }
        *slot = parsed;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::body::Payload;
    use serde_json::json;

    fn arg(source: &str, name: &str) -> Argument {
        parse_argument(json!({"source": source, "name": name}), "a").unwrap()
    }

    fn rv() -> RequestValues {
        let mut headers = Map::new();
        headers.insert("X-Hub-Signature".into(), json!("sha1=abc"));
        headers.insert("Content-Type".into(), json!("application/json"));
        let mut query = Map::new();
        query.insert("token".into(), json!("t0k"));
        query.insert("q".into(), json!("a<b&c"));
        RequestValues {
            headers,
            query,
            payload: Payload::Parsed(json!({
                "ref": "refs/heads/main",
                "a.b": "literal",
                "a": {"b": "nested", "c": {"d": [10, 20]}},
                "commits": [{"id": "c0", "n": 1.5}, {"id": "c1", "tags": ["x", "y"]}],
                "nothing": null,
                "flag": true,
                "count": 42,
                "big": 1e6,
                "html": "<b>&</b>",
            })),
            raw_body: b"{\"raw\":\xff}".to_vec(),
            method: "POST".into(),
            remote_addr: "192.0.2.1:4242".into(),
            content_type: "application/json".into(),
        }
    }

    /// `r` with its payload as a JSON body read lazily, the way a JSON request arrives.
    fn lazy(mut r: RequestValues) -> RequestValues {
        r.raw_body = serde_json::to_vec_pretty(&r.payload().to_value()).unwrap();
        r.payload = Payload::Json(crate::hooks::json::check(&r.raw_body).unwrap().index.unwrap());
        r
    }

    #[test]
    fn every_source() {
        let r = rv();
        let table = [
            ("header", "x-hub-signature", "sha1=abc"),
            ("header", "X-HUB-SIGNATURE", "sha1=abc"),
            ("url", "token", "t0k"),
            ("query", "token", "t0k"),
            ("payload", "ref", "refs/heads/main"),
            ("payload", "commits.0.id", "c0"),
            ("payload", "commits.1.tags.1", "y"),
            ("payload", "commits.1.tags", r#"["x","y"]"#),
            ("payload", "a.b", "literal"),
            ("payload", "a.c.d.1", "20"),
            ("payload", "a.c", r#"{"d":[10,20]}"#),
            ("payload", "nothing", "<nil>"),
            ("payload", "flag", "true"),
            ("payload", "count", "42"),
            ("payload", "commits.0.n", "1.5"),
            ("payload", "html", "<b>&</b>"),
            ("request", "method", "POST"),
            ("request", "METHOD", "POST"),
            ("request", "remote-addr", "192.0.2.1:4242"),
            ("string", "--force", "--force"),
            ("raw-request-body", "", "{\"raw\":\u{fffd}}"),
            ("entire-query", "", r#"{"q":"a\u003cb\u0026c","token":"t0k"}"#),
            ("entire-headers", "", r#"{"Content-Type":"application/json","X-Hub-Signature":"sha1=abc"}"#),
        ];
        for (source, name, want) in table {
            let a = parse_argument(json!({"source": source, "name": name}), "a").unwrap();
            assert_eq!(extract(&a, &r).unwrap(), want, "{source} {name}");
            if source == "payload" {
                assert_eq!(extract(&a, &lazy(rv())).unwrap(), want, "{source} {name}, lazily");
            }
        }
        for r in [rv(), lazy(rv())] {
            let entire = extract(&parse_argument(json!({"source": "entire-payload"}), "a").unwrap(), &r).unwrap();
            assert!(
                entire.starts_with(r#"{"a":{"b":"nested","c":{"d":[10,20]}},"a.b":"literal","big":1000000.0,"#),
                "{entire}"
            );
            assert!(entire.contains(r#""html":"\u003cb\u003e\u0026\u003c/b\u003e""#), "{entire}");
        }
        assert_eq!(extract_bytes(&arg("raw-request-body", "x"), &r).unwrap(), b"{\"raw\":\xff}");
    }

    #[test]
    fn missing_values() {
        for r in [rv(), lazy(rv())] {
            missing_values_in(&r);
        }
    }

    fn missing_values_in(r: &RequestValues) {
        for (source, name) in [
            ("payload", "nope"),
            ("payload", "commits.2.id"),
            ("payload", "commits.x.id"),
            ("payload", "commits.-1.id"),
            ("payload", "commits.+1.id"),
            ("payload", "ref.x"),
            ("payload", "nothing.x"),
            ("payload", "a.b.c"),
            ("header", "x-missing"),
            ("url", "nope"),
        ] {
            let e = extract(&arg(source, name), r).unwrap_err();
            assert_eq!(e, ParamError::NotFound { source: Source::parse(source).unwrap(), name: name.into() });
        }
    }

    #[test]
    fn go_lookup_table() {
        // The table of adnanh's TestGetParameter / TestExtractParameter.
        let ok = [
            ("a", json!({"a": "1"}), json!("1")),
            ("a.b", json!({"a.b": "1"}), json!("1")),
            ("a.c", json!({"a": {"c": 2}}), json!(2)),
            ("a.1", json!({"a": {"1": 3}}), json!(3)),
            ("a.1", json!({"a": ["a", "b"]}), json!("b")),
            ("0", json!(["a", "b"]), json!("a")),
            ("a.1.b.c", json!({"a": [{"b": {"c": "y"}}, {"b": {"c": "z"}}]}), json!("z")),
        ];
        for (path, v, want) in ok {
            assert_eq!(lookup(path, &v), Some(&want), "{path}");
            let text = v.to_string();
            let lazily = lookup_node(path, Node::Text(text.as_bytes())).map(|n| n.to_value().into_owned());
            assert_eq!(lazily, Some(want), "{path}, lazily");
        }
        let missing = [
            ("z", json!({"a": "1"})),
            ("a.z", json!({"a": {"b": 2}})),
            ("z.b", json!({"a": {"z": 2}})),
            ("a.2", json!({"a": ["a", "b"]})),
            ("a.500.b", json!({"a": {"b": "z"}})),
            ("a.502.b", json!({"a": []})),
            ("a.b", json!("a")),
        ];
        for (path, v) in missing {
            assert_eq!(lookup(path, &v), None, "{path}");
            assert!(lookup_node(path, Node::Text(v.to_string().as_bytes())).is_none(), "{path}, lazily");
        }
        // Only the first dot splits: "a.b" → "c" is not found through "a.b.c".
        assert_eq!(lookup("a.b.c", &json!({"a.b": {"c": 1}})), None);
    }

    #[test]
    fn go_json_escapes_like_go() {
        let v = json!({"z": 1, "a": ["\u{2028}", "\u{1}", "\u{8}\u{c}\n\r\t\"\\", "é"], "m": {"b": null, "a": false}});
        assert_eq!(go_json(&v), r#"{"a":["\u2028","\u0001","\b\f\n\r\t\"\\","é"],"m":{"a":false,"b":null},"z":1}"#);
    }

    #[test]
    fn env_names() {
        let a = parse_argument(json!({"source": "payload", "name": "head_commit.id"}), "a").unwrap();
        assert_eq!(a.env_var(), "HOOK_head_commit.id");
        assert_eq!(a.file_env_var(), "HOOK_HEAD_COMMIT.ID");
        let b = parse_argument(json!({"source": "header", "name": "X-A", "envname": "SIG"}), "a").unwrap();
        assert_eq!((b.env_var(), b.file_env_var()), ("SIG".to_string(), "SIG".to_string()));
    }

    #[test]
    fn base64_files() {
        let mut r = rv();
        r.payload = Payload::Parsed(json!({"file": "aGVs\nbG8=", "bad": "***"}));
        let mut a = arg("payload", "file");
        assert_eq!(file_contents(&a, &r).unwrap(), b"aGVs\nbG8=");
        a.base64_decode = true;
        assert_eq!(file_contents(&a, &r).unwrap(), b"hello");
        let mut bad = arg("payload", "bad");
        bad.base64_decode = true;
        assert_eq!(file_contents(&bad, &r).unwrap_err(), ParamError::Base64 { name: "bad".into() });
    }

    #[test]
    fn parse_errors_name_their_path() {
        let cases = [
            (json!({"name": "x"}), format!("p.source: missing (one of {})", Source::ALL)),
            (json!({"source": "body", "name": "x"}), format!("p.source: unknown source \"body\" (one of {})", Source::ALL)),
            (
                json!({"source": "template", "name": "{{ .Payload }}"}),
                "p.source: not supported by hookcast: source \"template\" (Go templates / pre-hook context)".into(),
            ),
            (json!({"source": "payload"}), "p.name: missing (source \"payload\" reads a named value)".into()),
            (json!({"source": "request", "name": "path"}), "p.name: unknown request value \"path\" (method or remote-addr)".into()),
            (
                json!({"source": "string", "name": "x", "envname": "A=B"}),
                "p.envname: environment variable name \"A=B\" must be non-empty without '=' or NUL".into(),
            ),
            (json!({"source": "string", "name": "x", "base64decode": "yes"}), "p.base64decode: expected true or false, found a string".into()),
            (json!({"source": "string", "name": "x", "Name": "y"}), "p.Name: unknown field (did you mean \"name\"?)".into()),
            (
                json!({"source": "header", "name": "x", "headers-to-add-to-signature-payload": ["Date"]}),
                "p.headers-to-add-to-signature-payload: not supported by hookcast: headers-to-add-to-signature-payload (an unmerged adnanh/webhook pull request; use a provider for schemes that sign headers)".into(),
            ),
            (json!("payload"), "p: expected an object, found a string".into()),
        ];
        for (v, want) in cases {
            assert_eq!(parse_argument(v, "p").unwrap_err().to_string(), want);
        }
    }
}
