//! Request-head parsing (RFC 9112 §2–§7) on top of `httparse`: a pure function over bytes that
//! returns `Ok(None)` while the head is incomplete, the owned `Head` and the bytes it used once it
//! is complete, or the error that decides the status code.
//!
//! `httparse` checks the grammar (tokens, line endings, field syntax); this module owns the
//! limits (431/414), the request-target form, `Host`, body framing (`Content-Length` /
//! `Transfer-Encoding`, where request smuggling is decided), `Expect` and connection
//! persistence. It also has the small accessors the router needs: path, query, fields, tokens.
//!
//! Choices the RFC leaves open, made here:
//! - a bare LF ends a line of the head (RFC 9112 §2.2 allows it; `httparse` does it), but not
//!   inside a chunked body (see `chunked`);
//! - `Content-Length: 0` gives `BodyKind::Length(0)`, not `BodyKind::None`, so the caller can tell
//!   "said zero" from "said nothing"; both mean an empty body;
//! - a `#fragment` in the target is kept in `target` but never part of `path()` or `query()`;
//! - a `Transfer-Encoding` whose final coding is not `chunked` is 400 (RFC 9112 §6.3 item 4, a
//!   MUST); 501 is for a chain that ends in `chunked` but has codings we do not implement.

use crate::http::token::{hex_digit, trim_ows};
use std::fmt;

/// Most header fields a request may carry; a 64th+1 field is `431`.
pub const MAX_HEADERS: usize = 64;

/// The limits the parser enforces before anything else looks at a request.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes of the whole head (request line + fields + CRLF CRLF); beyond it: 431.
    pub max_header_bytes: usize,
    /// Bytes of the request target; beyond it: 414.
    pub max_uri_bytes: usize,
}

/// The request methods hookcast routes on; anything else is kept as `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
    /// PATCH
    Patch,
    /// Any other token (answered 405 by the router).
    Other,
}

impl Method {
    /// The method for a request-line token; methods are case-sensitive (RFC 9110 §9.1).
    fn from_token(token: &str) -> Method {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            "PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }

    /// The method's token as sent ("" for `Other`, whose token is not kept).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Other => "",
        }
    }
}

/// How the request body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all.
    None,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head, owned so the read buffer may move on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The method.
    pub method: Method,
    /// The request target as sent in origin-form (path and query); an absolute-form target is
    /// reduced to its path and query, and `*` is kept for OPTIONS.
    pub target: String,
    /// Minor HTTP version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// Header fields in order, names lower-cased, values as raw bytes.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Body framing decided from Content-Length / Transfer-Encoding.
    pub body: BodyKind,
    /// Whether the connection stays open after this request (version + `Connection`).
    pub keep_alive: bool,
    /// Whether the client sent `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// Why a request head was refused; each variant is one response status (see `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// 431: the head is longer than `max_header_bytes` or has more than `MAX_HEADERS` fields.
    TooLarge,
    /// 414: the request target is longer than `max_uri_bytes`.
    UriTooLong,
    /// 400: the head breaks the grammar or a framing rule; the reason is for the log.
    Malformed(&'static str),
    /// 501: a transfer-coding chain ending in `chunked` with codings we do not implement.
    UnsupportedTransferCoding,
    /// 505: a well-formed HTTP version other than 1.0 or 1.1.
    UnsupportedVersion,
    /// 417: an `Expect` member other than `100-continue`.
    ExpectationFailed,
}

impl HeadError {
    /// The response status code this error calls for.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::UriTooLong => 414,
            HeadError::Malformed(_) => 400,
            HeadError::UnsupportedTransferCoding => 501,
            HeadError::UnsupportedVersion => 505,
            HeadError::ExpectationFailed => 417,
        }
    }
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::TooLarge => f.write_str("request head too large"),
            HeadError::UriTooLong => f.write_str("request target too long"),
            HeadError::Malformed(reason) => write!(f, "malformed request head: {reason}"),
            HeadError::UnsupportedTransferCoding => f.write_str("unsupported transfer coding"),
            HeadError::UnsupportedVersion => f.write_str("unsupported http version"),
            HeadError::ExpectationFailed => f.write_str("unsupported expectation"),
        }
    }
}

impl std::error::Error for HeadError {}

/// Parses one request head from the start of `buf`.
///
/// `Ok(None)`: incomplete, read more (unless a limit is already exceeded, which is an error
/// now rather than after the next read). `Ok(Some((head, n)))`: the head is `buf[..n]`; the body
/// and any pipelined request start at `n`.
pub fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<(Head, usize)>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            // Limits are checked on every partial read so a client cannot make us buffer more
            // than them. The target first: once the bytes after the method exceed the limit,
            // 414 is certain whatever follows.
            let (line, _) = request_line(buf);
            if target_of(line).len() > limits.max_uri_bytes {
                return Err(HeadError::UriTooLong);
            }
            // Everything received so far is head, so the buffer length is the head length.
            if buf.len() > limits.max_header_bytes {
                return Err(HeadError::TooLarge);
            }
            return Ok(None);
        }
        Err(e) => return Err(from_httparse(e, buf)),
    };
    // `httparse` fills method, path and version before returning `Complete`.
    let (Some(method), Some(raw_target), Some(version_minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed("incomplete request line"));
    };
    if raw_target.len() > limits.max_uri_bytes {
        return Err(HeadError::UriTooLong);
    }
    if len > limits.max_header_bytes {
        return Err(HeadError::TooLarge);
    }
    let method = Method::from_token(method);
    let target = origin_form(method, raw_target)?;
    let headers = req.headers.iter().map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec())).collect();
    let mut head = Head {
        method,
        target,
        version_minor,
        headers,
        body: BodyKind::None,
        keep_alive: false,
        expect_continue: false,
    };
    check_host(&head)?;
    head.body = body_kind(&head)?;
    head.expect_continue = expect_continue(&head)?;
    head.keep_alive = keep_alive(&head);
    Ok(Some((head, len)))
}

impl Head {
    /// The value of the first field called `name` (any case), as raw bytes.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    /// The value of the first field called `name` as UTF-8 with surrounding SP/HTAB removed.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        let value = std::str::from_utf8(self.header(name)?).ok()?;
        Some(value.trim_matches([' ', '\t']))
    }

    /// The target's path: everything before the first `?` (or `#`).
    pub fn path(&self) -> &str {
        let end = self.target.find(['?', '#']).unwrap_or(self.target.len());
        &self.target[..end]
    }

    /// The target's query: after the first `?` up to any `#`; empty when there is none.
    pub fn query(&self) -> &str {
        let before_fragment = match self.target.find('#') {
            Some(end) => &self.target[..end],
            None => &self.target,
        };
        match before_fragment.find('?') {
            Some(start) => &before_fragment[start + 1..],
            None => "",
        }
    }

    /// Whether any field called `name` lists `token` (comma-separated, case-insensitive).
    ///
    /// `Connection: keep-alive, Upgrade` has the token `upgrade`; repeated fields are one list
    /// (RFC 9110 §5.3).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.members(name).any(|m| m.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Values of every field called `name`, in order.
    fn fields<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    /// Non-empty members of the comma-separated list formed by every field called `name`.
    ///
    /// RFC 9110 §5.6.1: "a recipient MUST parse and ignore a reasonable number of empty list
    /// elements". Quoted strings are not special-cased: no list we read here uses them.
    fn members<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields(name).flat_map(|v| v.split(|&b| b == b',')).map(trim_ows).filter(|m| !m.is_empty())
    }

    /// Every member of the list formed by every field called `name`, empty ones included.
    fn raw_members<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields(name).flat_map(|v| v.split(|&b| b == b',')).map(trim_ows)
    }
}

/// The first `key` parameter of a query string, form-decoded (`+` is a space, then `%XX`).
///
/// `a&key&b` gives `Some("")` for `key`. `None` when the key is absent, or when its value has a
/// broken escape or is not UTF-8 once decoded. Keys are compared after decoding them too.
pub fn query_param(query: &str, key: &str) -> Option<String> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if form_decode(k).as_deref() == Some(key) {
            return form_decode(v);
        }
    }
    None
}

/// Every `key` parameter of a query string, form-decoded, in order (broken ones left out).
pub fn query_params(query: &str, key: &str) -> Vec<String> {
    let pairs = query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, "")));
    pairs.filter(|(k, _)| form_decode(k).as_deref() == Some(key)).filter_map(|(_, v)| form_decode(v)).collect()
}

/// Decodes `%XX` escapes (RFC 3986 §2.1); `None` on a broken escape or non-UTF-8 result.
///
/// `+` is left alone: it means a space only in form-encoded queries (see `query_param`).
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            // pct-encoded = "%" HEXDIG HEXDIG
            let hi = hex_digit(*bytes.get(i + 1)?)?;
            let lo = hex_digit(*bytes.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `application/x-www-form-urlencoded` decoding of one key or value.
fn form_decode(s: &str) -> Option<String> {
    percent_decode(&s.replace('+', " "))
}

/// The request line as received so far, after any leading empty lines, without its line
/// ending; and whether that line ending has arrived.
fn request_line(buf: &[u8]) -> (&[u8], bool) {
    let start = buf.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(buf.len());
    let rest = &buf[start..];
    match rest.iter().position(|&b| b == b'\n') {
        Some(end) => {
            let line = &rest[..end];
            (line.strip_suffix(b"\r").unwrap_or(line), true)
        }
        None => (rest, false),
    }
}

/// The target part of a (possibly partial) request line: between the first and second SP.
///
/// `request-line = method SP request-target SP HTTP-version` (RFC 9112 §3)
fn target_of(line: &[u8]) -> &[u8] {
    line.splitn(3, |&b| b == b' ').nth(1).unwrap_or(&[])
}

/// Maps an `httparse` error to ours; a version error is split into 505 and 400 by its shape.
fn from_httparse(e: httparse::Error, buf: &[u8]) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooLarge,
        httparse::Error::HeaderName => HeadError::Malformed("invalid header field name"),
        httparse::Error::HeaderValue => HeadError::Malformed("invalid header field value"),
        httparse::Error::NewLine => HeadError::Malformed("invalid line ending"),
        httparse::Error::Version => version_error(buf),
        httparse::Error::Status | httparse::Error::Token => HeadError::Malformed("invalid request line"),
    }
}

/// 505 for a version that is well-formed but not 1.0 or 1.1, 400 for anything else.
///
/// RFC 9112 §2.3: `HTTP-version = HTTP-name "/" DIGIT "." DIGIT`, `HTTP-name = %s"HTTP"`
/// (case-sensitive). `httparse` stops at the first unexpected byte, so a version whose line has
/// not ended yet is judged on the bytes that have arrived.
fn version_error(buf: &[u8]) -> HeadError {
    const SHAPE: &[u8; 8] = b"HTTP/9.9";
    let (line, ended) = request_line(buf);
    let version = line.splitn(3, |&b| b == b' ').nth(2).unwrap_or(&[]);
    let long_enough = if ended {
        version.len() == SHAPE.len()
    } else {
        version.len() > b"HTTP/".len() && version.len() <= SHAPE.len()
    };
    let shaped = version.iter().zip(SHAPE).all(|(&b, &s)| if s == b'9' { b.is_ascii_digit() } else { b == s });
    if long_enough && shaped {
        HeadError::UnsupportedVersion
    } else {
        HeadError::Malformed("invalid http version")
    }
}

/// The target in origin-form (or `*`), converting absolute-form to its path and query.
///
/// RFC 9112 §3.2: `request-target = origin-form / absolute-form / authority-form /
/// asterisk-form`, with `origin-form = absolute-path [ "?" query ]`. "The asterisk-form ... is
/// only used for a server-wide OPTIONS request". "A server MUST accept the absolute-form in
/// requests even though most HTTP/1.1 clients will only send the absolute-form to a proxy."
/// The authority-form is only for CONNECT, which we do not serve.
fn origin_form(method: Method, raw: &str) -> Result<String, HeadError> {
    if raw.starts_with('/') {
        return Ok(raw.to_owned());
    }
    if raw == "*" {
        return match method {
            Method::Options => Ok(raw.to_owned()),
            _ => Err(HeadError::Malformed("asterisk-form target outside options")),
        };
    }
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err(HeadError::Malformed("invalid request target"));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(HeadError::Malformed("unsupported request target scheme"));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    // RFC 9110 §4.2.1: "A sender MUST NOT generate an "http" URI with an empty host
    // identifier. A recipient that processes such a URI reference MUST reject it as invalid."
    // §4.2.4: a recipient "SHOULD parse for userinfo and treat its presence as an error".
    if authority.is_empty() || !valid_authority(authority.as_bytes()) {
        return Err(HeadError::Malformed("invalid authority in request target"));
    }
    if path.starts_with('/') {
        Ok(path.to_owned())
    } else {
        Ok(format!("/{path}"))
    }
}

/// Whether `s` is made of the characters of `uri-host [ ":" port ]` (RFC 3986 §3.2.2).
///
/// `reg-name = *( unreserved / pct-encoded / sub-delims )`, plus `[ ]` for IP-literals and `:`
/// for the port. No `@` (userinfo), `/`, `?`, `#`, whitespace or control bytes. An empty value
/// passes: RFC 9112 §3.2 makes an empty `Host` the right one when the target has no authority.
fn valid_authority(s: &[u8]) -> bool {
    s.iter().all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:[]".contains(&b))
}

/// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
/// request message that lacks a Host header field and to any request message that contains
/// more than one Host header field line or a Host header field with an invalid field value."
fn check_host(head: &Head) -> Result<(), HeadError> {
    let mut hosts = head.fields("host");
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(HeadError::Malformed("more than one host field")),
        (None, _) if head.version_minor == 1 => Err(HeadError::Malformed("missing host field")),
        (Some(value), None) if !valid_authority(trim_ows(value)) => Err(HeadError::Malformed("invalid host field")),
        _ => Ok(()),
    }
}

/// Decides the body framing from `Transfer-Encoding` and `Content-Length` (RFC 9112 §6).
fn body_kind(head: &Head) -> Result<BodyKind, HeadError> {
    let has_te = head.fields("transfer-encoding").next().is_some();
    let has_cl = head.fields("content-length").next().is_some();
    if has_te {
        // §6.1: "A server or client that receives an HTTP/1.0 message containing a
        // Transfer-Encoding header field MUST treat the message as if the framing is faulty,
        // even if a Content-Length is present, and close the connection".
        if head.version_minor == 0 {
            return Err(HeadError::Malformed("transfer-encoding in an http/1.0 request"));
        }
        // §6.3: a message with both "might indicate an attempt to perform request smuggling
        // ... and ought to be handled as an error"; §6.1: "A server MAY reject a request that
        // contains both Content-Length and Transfer-Encoding". We do.
        if has_cl {
            return Err(HeadError::Malformed("both transfer-encoding and content-length"));
        }
        return transfer_coding(head);
    }
    if has_cl {
        return content_length(head).map(BodyKind::Length);
    }
    // §6.3: "If this is a request message and none of the above are true, then the message
    // body length is zero". `curl -X POST` sends no framing field at all; it means no body.
    Ok(BodyKind::None)
}

/// `Transfer-Encoding = #transfer-coding` (RFC 9112 §6.1); only exactly `chunked` is served.
///
/// Empty list members are refused rather than ignored: a framing field is where two parsers
/// disagreeing becomes request smuggling, so only the plain form is accepted.
fn transfer_coding(head: &Head) -> Result<BodyKind, HeadError> {
    let codings: Vec<&[u8]> = head.raw_members("transfer-encoding").collect();
    if codings.iter().any(|c| c.is_empty()) {
        return Err(HeadError::Malformed("empty transfer coding"));
    }
    let is_chunked = |c: &[u8]| c.eq_ignore_ascii_case(b"chunked");
    // §6.3: "If a Transfer-Encoding header field is present in a request and the chunked
    // transfer coding is not the final encoding, the message body length cannot be determined
    // reliably; the server MUST respond with the 400 (Bad Request) status code".
    match codings.split_last() {
        Some((last, _)) if is_chunked(last) => {}
        _ => return Err(HeadError::Malformed("chunked is not the final transfer coding")),
    }
    // §7.1: "A sender MUST NOT apply the chunked transfer coding more than once".
    if codings.iter().filter(|c| is_chunked(c)).count() > 1 {
        return Err(HeadError::Malformed("chunked applied more than once"));
    }
    // §6.1: "A server that receives a request message with a transfer coding it does not
    // understand SHOULD respond with 501 (Not Implemented)."
    if codings.len() > 1 {
        return Err(HeadError::UnsupportedTransferCoding);
    }
    Ok(BodyKind::Chunked)
}

/// `Content-Length = 1*DIGIT` (RFC 9110 §8.6), with the list leniency of RFC 9112 §6.3 item 5:
/// "unless the field value can be successfully parsed as a comma-separated list ..., all values
/// in the list are valid, and all values in the list are the same". Fields repeated are one
/// list. Empty members are invalid here, for the reason given at `transfer_coding`.
fn content_length(head: &Head) -> Result<u64, HeadError> {
    let mut length = None;
    for member in head.raw_members("content-length") {
        if member.is_empty() || !member.iter().all(u8::is_ascii_digit) {
            return Err(HeadError::Malformed("invalid content-length"));
        }
        // §7.1's warning about "integer conversion overflows" holds for this number too.
        let n = member
            .iter()
            .try_fold(0u64, |acc, &d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .ok_or(HeadError::Malformed("content-length out of range"))?;
        match length {
            Some(previous) if previous != n => {
                return Err(HeadError::Malformed("conflicting content-length values"));
            }
            _ => length = Some(n),
        }
    }
    length.ok_or(HeadError::Malformed("invalid content-length"))
}

/// Whether the client waits for `100 Continue`; any other expectation is 417.
///
/// RFC 9110 §10.1.1: "A server that receives an Expect field value containing a member other
/// than 100-continue MAY respond with a 417 (Expectation Failed) status code"; "A server that
/// receives a 100-continue expectation in an HTTP/1.0 request MUST ignore that expectation."
fn expect_continue(head: &Head) -> Result<bool, HeadError> {
    let mut expect = false;
    for member in head.members("expect") {
        if !member.eq_ignore_ascii_case(b"100-continue") {
            return Err(HeadError::ExpectationFailed);
        }
        expect = true;
    }
    Ok(expect && head.version_minor == 1)
}

/// RFC 9112 §9.3: "If the "close" connection option is present ..., the connection will not
/// persist"; otherwise "If the received protocol is HTTP/1.1 (or later), the connection will
/// persist", and for HTTP/1.0 only if "the "keep-alive" connection option is present".
fn keep_alive(head: &Head) -> bool {
    if head.has_token("connection", "close") {
        return false;
    }
    head.version_minor == 1 || head.has_token("connection", "keep-alive")
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_header_bytes: 8192, max_uri_bytes: 2048 };

    fn parse(raw: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
        parse_head(raw, &LIMITS)
    }

    #[test]
    fn a_method_names_the_token_it_was_read_from() {
        use Method::*;
        for m in [Get, Head, Post, Put, Delete, Options, Patch] {
            assert_eq!(Method::from_token(m.as_str()), m);
        }
        assert_eq!(Other.as_str(), "");
    }

    fn parse_ok(raw: &[u8]) -> (Head, usize) {
        match parse(raw) {
            Ok(Some(done)) => done,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(raw)),
        }
    }

    /// RFC 9112 §6.3: a request with neither `Content-Length` nor `Transfer-Encoding` has a
    /// zero-length body, whatever its method (`curl -X POST` sends exactly this). Replaces the
    /// 411 these requests got before (issue 20).
    #[test]
    fn a_request_without_framing_has_no_body() {
        for raw in [
            &b"POST / HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            b"PUT / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"PATCH / HTTP/1.0\r\n\r\n",
        ] {
            let (head, used) = parse_ok(raw);
            assert_eq!((head.body, used), (BodyKind::None, raw.len()), "{}", String::from_utf8_lossy(raw));
        }
    }

    /// Offset just past the first `CRLF CRLF` after any leading empty lines: where the first
    /// head ends.
    fn head_end(raw: &[u8]) -> usize {
        let start = raw.iter().position(|&b| b != b'\r' && b != b'\n').unwrap();
        start + raw[start..].windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4
    }

    struct Good {
        name: &'static str,
        raw: &'static [u8],
        method: Method,
        target: &'static str,
        minor: u8,
        body: BodyKind,
        keep_alive: bool,
        expect_continue: bool,
    }

    const GOOD: &[Good] = &[
        Good {
            name: "simple get",
            raw: b"GET /topics/a?since=4 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            method: Method::Get,
            target: "/topics/a?since=4",
            minor: 1,
            body: BodyKind::None,
            keep_alive: true,
            expect_continue: false,
        },
        Good {
            name: "post with length",
            raw: b"POST /hooks/gh HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
            method: Method::Post,
            target: "/hooks/gh",
            minor: 1,
            body: BodyKind::Length(5),
            keep_alive: true,
            expect_continue: false,
        },
        Good {
            name: "chunked post, mixed case and whitespace",
            raw: b"POST /h HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:  ChUnKeD \r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            method: Method::Post,
            target: "/h",
            minor: 1,
            body: BodyKind::Chunked,
            keep_alive: true,
            expect_continue: false,
        },
        Good {
            name: "pipelined pair: only the first is consumed",
            raw: b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n",
            method: Method::Get,
            target: "/a",
            minor: 1,
            body: BodyKind::None,
            keep_alive: true,
            expect_continue: false,
        },
        Good {
            name: "http/1.0 keep-alive without host",
            raw: b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
            method: Method::Get,
            target: "/",
            minor: 0,
            body: BodyKind::None,
            keep_alive: true,
            expect_continue: false,
        },
        Good {
            name: "http/1.0 closes by default",
            raw: b"GET / HTTP/1.0\r\nHost: h\r\n\r\n",
            method: Method::Get,
            target: "/",
            minor: 0,
            body: BodyKind::None,
            keep_alive: false,
            expect_continue: false,
        },
        Good {
            name: "http/1.1 connection close among tokens in two fields",
            raw: b"GET / HTTP/1.1\r\nHost: h\r\nConnection: foo\r\nConnection: bar, CLOSE\r\n\r\n",
            method: Method::Get,
            target: "/",
            minor: 1,
            body: BodyKind::None,
            keep_alive: false,
            expect_continue: false,
        },
        Good {
            name: "absolute-form becomes the path",
            raw: b"GET http://example.com:8080/p/q?x=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n",
            method: Method::Get,
            target: "/p/q?x=1",
            minor: 1,
            body: BodyKind::None,
            keep_alive: true,
            expect_continue: false,
        },
        Good {
            name: "absolute-form without a path",
            raw: b"GET HTTPS://example.com?x HTTP/1.1\r\nHost: example.com\r\n\r\n",
            method: Method::Get,
            target: "/?x",
            minor: 1,
            body: BodyKind::None,
            keep_alive: true,
            expect_continue: false,
        },
        Good {
            name: "asterisk-form for options",
            raw: b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
            method: Method::Options,
            target: "*",
            minor: 1,
            body: BodyKind::None,
            keep_alive: true,
            expect_continue: false,
        },
        Good {
            name: "leading empty lines are skipped (RFC 9112 §2.2)",
            raw: b"\r\n\r\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n",
            method: Method::Get,
            target: "/x",
            minor: 1,
            body: BodyKind::None,
            keep_alive: true,
            expect_continue: false,
        },
        Good {
            name: "expect 100-continue",
            raw: b"PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
            method: Method::Put,
            target: "/x",
            minor: 1,
            body: BodyKind::Length(3),
            keep_alive: true,
            expect_continue: true,
        },
        Good {
            name: "expect 100-continue is ignored in http/1.0",
            raw: b"POST /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            method: Method::Post,
            target: "/x",
            minor: 0,
            body: BodyKind::Length(3),
            keep_alive: false,
            expect_continue: false,
        },
        Good {
            name: "equal content-length values, list and repeat",
            raw: b"PATCH /x HTTP/1.1\r\nHost: h\r\nContent-Length: 7, 7\r\nContent-Length: 007\r\n\r\n",
            method: Method::Patch,
            target: "/x",
            minor: 1,
            body: BodyKind::Length(7),
            keep_alive: true,
            expect_continue: false,
        },
        Good {
            name: "content-length zero is Length(0)",
            raw: b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
            method: Method::Post,
            target: "/x",
            minor: 1,
            body: BodyKind::Length(0),
            keep_alive: true,
            expect_continue: false,
        },
        Good {
            name: "delete without a body, unknown method kept as other",
            raw: b"DELETE /x HTTP/1.1\r\nHost: [::1]:80\r\n\r\n",
            method: Method::Delete,
            target: "/x",
            minor: 1,
            body: BodyKind::None,
            keep_alive: true,
            expect_continue: false,
        },
        Good {
            name: "unknown method, empty host",
            raw: b"BREW /pot HTTP/1.1\r\nHost:\r\n\r\n",
            method: Method::Other,
            target: "/pot",
            minor: 1,
            body: BodyKind::None,
            keep_alive: true,
            expect_continue: false,
        },
    ];

    #[test]
    fn good_requests() {
        for g in GOOD {
            let (head, used) = parse_ok(g.raw);
            assert_eq!(used, head_end(g.raw), "{}", g.name);
            assert_eq!(head.method, g.method, "{}", g.name);
            assert_eq!(head.target, g.target, "{}", g.name);
            assert_eq!(head.version_minor, g.minor, "{}", g.name);
            assert_eq!(head.body, g.body, "{}", g.name);
            assert_eq!(head.keep_alive, g.keep_alive, "{}", g.name);
            assert_eq!(head.expect_continue, g.expect_continue, "{}", g.name);
        }
    }

    #[test]
    fn good_requests_fed_one_byte_at_a_time() {
        for g in GOOD {
            let end = head_end(g.raw);
            for i in 0..end {
                assert_eq!(parse(&g.raw[..i]), Ok(None), "{} at {i}", g.name);
            }
            let whole = parse_ok(g.raw);
            assert_eq!(parse_ok(&g.raw[..end]), whole, "{}", g.name);
        }
    }

    #[test]
    fn pipelined_second_request_parses_from_the_offset() {
        let raw = GOOD[3].raw;
        let (first, used) = parse_ok(raw);
        assert_eq!(first.target, "/a");
        let (second, used2) = parse_ok(&raw[used..]);
        assert_eq!(second.target, "/b");
        assert_eq!(used + used2, raw.len());
    }

    #[test]
    fn header_names_are_lower_cased_and_values_kept() {
        let (head, _) = parse_ok(b"GET / HTTP/1.1\r\nHOST: h\r\nX-Hub-Signature-256: sha256=AbC \r\n\r\n");
        let names: Vec<&str> = head.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["host", "x-hub-signature-256"]);
        assert_eq!(head.header("X-HUB-signature-256"), Some(&b"sha256=AbC"[..]));
        assert_eq!(head.header_str("x-hub-signature-256"), Some("sha256=AbC"));
        assert_eq!(head.header("missing"), None);
    }

    #[test]
    fn bare_lf_line_endings_are_accepted_in_the_head() {
        let (head, used) = parse_ok(b"GET /lf HTTP/1.1\nHost: h\n\nrest");
        assert_eq!(head.target, "/lf");
        assert_eq!(used, 26);
    }

    /// A request with `n` extra fields besides `Host`.
    fn with_fields(n: usize) -> Vec<u8> {
        let mut raw = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..n {
            raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        raw
    }

    fn bad_requests() -> Vec<(&'static str, Vec<u8>, HeadError)> {
        let long_target = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(2048));
        let long_field = format!("GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n", "v".repeat(8192));
        use HeadError::*;
        let b = |s: &str| s.as_bytes().to_vec();
        vec![
            // 431 (each group below is one status; `statuses_and_messages` maps them)
            ("65 fields", with_fields(MAX_HEADERS), TooLarge),
            ("complete head over the limit", b(&long_field), TooLarge),
            ("partial head over the limit", b(&long_field[..8200]), TooLarge),
            // 414
            ("complete target over the limit", b(&long_target), UriTooLong),
            ("partial target over the limit", b(&long_target[..2060]), UriTooLong),
            // 400: request line
            ("lower-case http name", b("GET / http/1.1\r\nHost: h\r\n\r\n"), Malformed("invalid http version")),
            ("two-digit version", b("GET / HTTP/10.1\r\nHost: h\r\n\r\n"), Malformed("invalid http version")),
            ("junk after version", b("GET / HTTP/1.1x\r\nHost: h\r\n\r\n"), Malformed("invalid line ending")),
            ("no version", b("GET /\r\nHost: h\r\n\r\n"), Malformed("invalid request line")),
            ("double space", b("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), Malformed("invalid request line")),
            ("bad method byte", b("G(T / HTTP/1.1\r\nHost: h\r\n\r\n"), Malformed("invalid request line")),
            ("control byte in target", b("GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n"), Malformed("invalid request line")),
            ("bare cr", b("GET / HTTP/1.1\rHost: h\r\n\r\n"), Malformed("invalid line ending")),
            // 400: target form
            ("relative target", b("GET foo HTTP/1.1\r\nHost: h\r\n\r\n"), Malformed("invalid request target")),
            (
                "asterisk with get",
                b("GET * HTTP/1.1\r\nHost: h\r\n\r\n"),
                Malformed("asterisk-form target outside options"),
            ),
            ("authority-form", b("CONNECT h:443 HTTP/1.1\r\nHost: h\r\n\r\n"), Malformed("invalid request target")),
            (
                "ftp scheme",
                b("GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n"),
                Malformed("unsupported request target scheme"),
            ),
            (
                "empty authority",
                b("GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n"),
                Malformed("invalid authority in request target"),
            ),
            (
                "userinfo",
                b("GET http://u@h/x HTTP/1.1\r\nHost: h\r\n\r\n"),
                Malformed("invalid authority in request target"),
            ),
            // 400: fields
            ("space before colon", b("GET / HTTP/1.1\r\nHost : h\r\n\r\n"), Malformed("invalid header field name")),
            ("obs-fold", b("GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n"), Malformed("invalid header field name")),
            ("nul in value", b("GET / HTTP/1.1\r\nHost: h\x00\r\n\r\n"), Malformed("invalid header field value")),
            ("missing host in 1.1", b("GET / HTTP/1.1\r\n\r\n"), Malformed("missing host field")),
            ("two hosts", b("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), Malformed("more than one host field")),
            (
                "two hosts in 1.0",
                b("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"),
                Malformed("more than one host field"),
            ),
            ("host with a path", b("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), Malformed("invalid host field")),
            ("host with a space", b("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), Malformed("invalid host field")),
            // 400: framing
            (
                "content-length letters",
                b("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n"),
                Malformed("invalid content-length"),
            ),
            (
                "content-length sign",
                b("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n"),
                Malformed("invalid content-length"),
            ),
            (
                "content-length negative",
                b("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n"),
                Malformed("invalid content-length"),
            ),
            (
                "content-length empty",
                b("POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n"),
                Malformed("invalid content-length"),
            ),
            (
                "content-length empty member",
                b("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,\r\n\r\n"),
                Malformed("invalid content-length"),
            ),
            (
                "content-length overflow",
                b("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551616\r\n\r\n"),
                Malformed("content-length out of range"),
            ),
            (
                "content-length list differs",
                b("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n"),
                Malformed("conflicting content-length values"),
            ),
            (
                "content-length fields differ",
                b("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
                Malformed("conflicting content-length values"),
            ),
            (
                "te and cl",
                b("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
                Malformed("both transfer-encoding and content-length"),
            ),
            (
                "cl and te",
                b("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
                Malformed("both transfer-encoding and content-length"),
            ),
            (
                "te in http/1.0",
                b("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
                Malformed("transfer-encoding in an http/1.0 request"),
            ),
            (
                "te not ending in chunked",
                b("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n"),
                Malformed("chunked is not the final transfer coding"),
            ),
            (
                "te chunked then gzip",
                b("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
                Malformed("chunked is not the final transfer coding"),
            ),
            (
                "te chunked twice",
                b("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
                Malformed("chunked applied more than once"),
            ),
            (
                "te empty",
                b("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n"),
                Malformed("empty transfer coding"),
            ),
            (
                "te empty member",
                b("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , chunked\r\n\r\n"),
                Malformed("empty transfer coding"),
            ),
            (
                "te with a parameter",
                b("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;x=1\r\n\r\n"),
                Malformed("chunked is not the final transfer coding"),
            ),
            (
                "te with a vertical tab",
                b("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \x0bchunked\r\n\r\n"),
                Malformed("invalid header field value"),
            ),
            // 501
            (
                "gzip then chunked",
                b("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
                UnsupportedTransferCoding,
            ),
            (
                "gzip field then chunked field",
                b("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"),
                UnsupportedTransferCoding,
            ),
            // 505
            ("http/2.0", b("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), UnsupportedVersion),
            ("http/1.2", b("GET / HTTP/1.2\r\nHost: h\r\n\r\n"), UnsupportedVersion),
            ("http/3 before the line ends", b("GET / HTTP/3"), UnsupportedVersion),
            // 417
            (
                "expect other",
                b("POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\n"),
                ExpectationFailed,
            ),
            (
                "expect continue and other",
                b("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue, x\r\nContent-Length: 1\r\n\r\n"),
                ExpectationFailed,
            ),
        ]
    }

    #[test]
    fn bad_requests_get_their_error() {
        for (name, raw, expected) in bad_requests() {
            assert_eq!(parse(&raw), Err(expected), "{name}");
        }
    }

    #[test]
    fn sixty_four_fields_are_allowed() {
        let (head, _) = parse_ok(&with_fields(MAX_HEADERS - 1));
        assert_eq!(head.headers.len(), MAX_HEADERS);
    }

    #[test]
    fn limits_are_inclusive() {
        let raw = b"GET /abc HTTP/1.1\r\nHost: h\r\n\r\n";
        let exact = Limits { max_header_bytes: raw.len(), max_uri_bytes: 4 };
        assert!(parse_head(raw, &exact).unwrap().is_some());
        let head_short = Limits { max_header_bytes: raw.len() - 1, ..exact };
        assert_eq!(parse_head(raw, &head_short), Err(HeadError::TooLarge));
        let uri_short = Limits { max_uri_bytes: 3, ..exact };
        assert_eq!(parse_head(raw, &uri_short), Err(HeadError::UriTooLong));
    }

    #[test]
    fn long_target_is_refused_as_soon_as_it_is_too_long() {
        let limits = Limits { max_header_bytes: 8192, max_uri_bytes: 10 };
        assert_eq!(parse_head(b"GET /123456789", &limits), Ok(None));
        assert_eq!(parse_head(b"GET /1234567890", &limits), Err(HeadError::UriTooLong));
    }

    #[test]
    fn endless_empty_lines_are_too_large() {
        let raw = b"\r\n".repeat(4097);
        assert_eq!(parse(&raw), Err(HeadError::TooLarge));
        assert_eq!(parse(&raw[..8192]), Ok(None));
    }

    #[test]
    fn statuses_and_messages() {
        let all = [
            (HeadError::TooLarge, 431, "request head too large"),
            (HeadError::UriTooLong, 414, "request target too long"),
            (HeadError::Malformed("missing host field"), 400, "malformed request head: missing host field"),
            (HeadError::UnsupportedTransferCoding, 501, "unsupported transfer coding"),
            (HeadError::UnsupportedVersion, 505, "unsupported http version"),
            (HeadError::ExpectationFailed, 417, "unsupported expectation"),
        ];
        for (e, status, text) in all {
            assert_eq!(e.status(), status);
            assert_eq!(e.to_string(), text);
        }
    }

    #[test]
    fn path_and_query() {
        let cases = [
            ("/", "/", ""),
            ("/a/b", "/a/b", ""),
            ("/a?x=1&y=2", "/a", "x=1&y=2"),
            ("/a?", "/a", ""),
            ("/a?x=1#frag", "/a", "x=1"),
            ("/a#f?x", "/a", ""),
            ("/a?b?c", "/a", "b?c"),
            ("*", "*", ""),
        ];
        for (target, path, query) in cases {
            let raw = format!("OPTIONS {target} HTTP/1.1\r\nHost: h\r\n\r\n");
            let (head, _) = parse_ok(raw.as_bytes());
            assert_eq!(head.path(), path, "{target}");
            assert_eq!(head.query(), query, "{target}");
        }
    }

    #[test]
    fn query_params() {
        let q = "a=1&b=hello+world&c=%E2%9C%93&d&e=%zz&f=%FF&a=2&g%5B%5D=x&&h=";
        assert_eq!(query_param(q, "a").as_deref(), Some("1"));
        assert_eq!(query_param(q, "b").as_deref(), Some("hello world"));
        assert_eq!(query_param(q, "c").as_deref(), Some("\u{2713}"));
        assert_eq!(query_param(q, "d").as_deref(), Some(""));
        assert_eq!(query_param(q, "e"), None, "broken escape");
        assert_eq!(query_param(q, "f"), None, "not utf-8");
        assert_eq!(query_param(q, "g[]").as_deref(), Some("x"));
        assert_eq!(query_param(q, "h").as_deref(), Some(""));
        assert_eq!(query_param(q, "z"), None);
        assert_eq!(query_param("", "a"), None);
        assert_eq!(query_param("x=%2B+", "x").as_deref(), Some("+ "));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c").as_deref(), Some("a b+c"));
        assert_eq!(percent_decode("%41%62").as_deref(), Some("Ab"));
        assert_eq!(percent_decode("").as_deref(), Some(""));
        assert_eq!(percent_decode("%"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%g0"), None);
        assert_eq!(percent_decode("%C3%28"), None);
    }

    #[test]
    fn tokens_across_fields() {
        let (head, _) = parse_ok(
            concat!(
                "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n",
                "Upgrade: websocket\r\nConnection: ,x-y\r\n\r\n",
            )
            .as_bytes(),
        );
        assert!(head.has_token("connection", "upgrade"));
        assert!(head.has_token("Connection", "KEEP-ALIVE"));
        assert!(head.has_token("connection", "x-y"));
        assert!(!head.has_token("connection", "keep"));
        assert!(!head.has_token("connection", ""));
        assert!(head.has_token("upgrade", "WebSocket"));
        assert!(!head.has_token("sec-websocket-key", "x"));
    }
}
