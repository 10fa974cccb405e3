//! Response serialisation: status line, headers and body into one buffer, and the short JSON
//! error bodies every 4xx/5xx carries (`{"error":"...","status":431}`).

use std::borrow::Cow;
use std::fmt::Write;

/// A header field: a name (static for ours, owned for configured ones) and a value.
pub type Field = (Cow<'static, str>, String);

/// The reason phrase of a status: RFC 9110 §15 for the ones it defines, the IANA HTTP Status Code
/// Registry's for the others a hook may be configured to answer (WebDAV's, RFC 6585's, …). A
/// code without one (a hook may answer any code Go's `net/http` knows, see `hooks::def`) still
/// gets a phrase: the one of its class (RFC 9110 §15: "a client MUST understand the class of
/// any status code … as being equivalent to the x00 status code of that class").
pub fn reason(status: u16) -> &'static str {
    let own = match status {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        207 => "Multi-Status",
        208 => "Already Reported",
        226 => "IM Used",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        305 => "Use Proxy",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        // RFC 9110 §15.5.19: "(Unused)"; Go's net/http and adnanh answer it as RFC 2324 does.
        418 => "I'm a teapot",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        424 => "Failed Dependency",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        506 => "Variant Also Negotiates",
        507 => "Insufficient Storage",
        508 => "Loop Detected",
        510 => "Not Extended",
        511 => "Network Authentication Required",
        _ => "",
    };
    match (own, status / 100) {
        ("", 1) => "Continue",
        ("", 2) => "OK",
        ("", 3) => "Multiple Choices",
        ("", 4) => "Bad Request",
        ("", _) => "Internal Server Error",
        (own, _) => own,
    }
}

/// What a response says about its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// `Connection: close`: the connection ends after this response.
    Close,
    /// HTTP/1.1's default: the connection stays open and nothing needs saying.
    KeepAlive,
    /// An HTTP/1.0 client asked for `Connection: keep-alive`. RFC 2068 §19.7.1: the server
    /// "would then respond with the Keep-Alive connection token and the client may proceed"; a
    /// 1.0 client that does not see it assumes the connection ends with the response.
    Announce,
}

impl Persist {
    /// The answer to a request that may keep its connection (`keep_alive`) in HTTP/1.`minor`.
    pub fn new(keep_alive: bool, version_minor: u8) -> Persist {
        match (keep_alive, version_minor) {
            (false, _) => Persist::Close,
            (true, 0) => Persist::Announce,
            (true, _) => Persist::KeepAlive,
        }
    }

    /// Whether the connection stays open after the response.
    pub fn keeps(self) -> bool {
        self != Persist::Close
    }
}

/// A response to be written whole.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Extra header fields (Content-Length, Connection and Date are added when written).
    pub headers: Vec<Field>,
    /// Body bytes (not sent for HEAD, but counted in Content-Length).
    pub body: Vec<u8>,
}

impl Response {
    /// A response with a body of the given content type.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response { status, headers: vec![("Content-Type".into(), content_type.to_string())], body: body.into() }
    }

    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let mut body = value.to_string().into_bytes();
        body.push(b'\n');
        Response::new(status, "application/json", body)
    }

    /// A short JSON error: `{"error": message, "status": status}`.
    pub fn error(status: u16, message: &str) -> Response {
        Response::json(status, &serde_json::json!({ "error": message, "status": status }))
    }

    /// Adds a header field.
    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds a header field whose name comes from configuration.
    pub fn with_owned(mut self, name: impl Into<String>, value: impl Into<String>) -> Response {
        self.headers.push((Cow::Owned(name.into()), value.into()));
        self
    }

    /// Serialises the response; `head_only` leaves the body out (HEAD).
    pub fn to_bytes(&self, persist: Persist, head_only: bool, date: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + self.body.len());
        // A 304's Content-Length would have to be the 200's (RFC 9110 §8.6): leave it out.
        let length = (self.status != 304).then_some(self.body.len());
        write_head(&mut out, self.status, &self.headers, length, persist, date);
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

/// Writes a status line and header fields; `content_length` None leaves the length out (streams).
pub fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[Field],
    content_length: Option<usize>,
    persist: Persist,
    date: &str,
) {
    let mut s = String::with_capacity(160);
    let _ = write!(s, "HTTP/1.1 {status} {}\r\nDate: {date}\r\nServer: hookcast\r\n", reason(status));
    for (name, value) in headers {
        let _ = write!(s, "{name}: {value}\r\n");
    }
    if let Some(n) = content_length {
        let _ = write!(s, "Content-Length: {n}\r\n");
    }
    s.push_str(match persist {
        Persist::Close => "Connection: close\r\n",
        Persist::KeepAlive => "",
        Persist::Announce => "Connection: keep-alive\r\n",
    });
    s.push_str("\r\n");
    out.extend_from_slice(s.as_bytes());
}

/// The `Date` header value, formatted once a second rather than once a response.
#[derive(Debug, Default)]
pub struct DateCache {
    secs: u64,
    value: String,
}

impl DateCache {
    /// Moves the cache to `unix_secs`, formatting the value when the second changed.
    pub fn update(&mut self, unix_secs: u64) {
        if unix_secs != self.secs {
            self.secs = unix_secs;
            self.value = crate::clock::http_date(unix_secs);
        }
    }

    /// The current value (empty before the first [`DateCache::update`]).
    pub fn get(&self) -> &str {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_error_with_length_and_close() {
        let r = Response::error(431, "request header fields too large");
        let bytes = r.to_bytes(Persist::Close, false, "D");
        let text = String::from_utf8(bytes).unwrap();
        let body = "{\"error\":\"request header fields too large\",\"status\":431}\n";
        assert_eq!(
            text,
            format!(
                "HTTP/1.1 431 Request Header Fields Too Large\r\nDate: D\r\nServer: hookcast\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
        );
    }

    #[test]
    fn head_keeps_length_drops_body() {
        let r = Response::new(200, "text/plain", "hello");
        let text = String::from_utf8(r.to_bytes(Persist::KeepAlive, true, "D")).unwrap();
        assert!(text.ends_with("Content-Length: 5\r\n\r\n"), "{text}");
    }

    #[test]
    fn http10_keep_alive_is_announced() {
        let r = Response::new(200, "text/plain", "hello");
        let text = String::from_utf8(r.to_bytes(Persist::new(true, 0), false, "D")).unwrap();
        assert!(text.contains("\r\nConnection: keep-alive\r\n"), "{text}");
        assert_eq!(Persist::new(true, 1), Persist::KeepAlive);
        assert_eq!(Persist::new(false, 0), Persist::Close);
    }
}
