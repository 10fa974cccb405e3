//! The server's side of the RFC 6455 opening handshake (§4.2.1 reading the client's header
//! values, §4.2.2 answering): the accept key, key and version checks, subprotocol choice and the
//! `101 Switching Protocols` response head.
//!
//! This module does not parse HTTP: `http::request` does, and the caller hands over the values
//! of the header fields it found (several fields of one name joined with `,`). Each function is
//! a pure answer to one of §4.2.1's questions, so the router decides the status code
//! (400, or 426 for a version mismatch, §4.4) from plain booleans.

use crate::http::token::trim_ows_str;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The GUID §1.3 and §4.2.2 concatenate with the client's key.
pub const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version this server speaks, for `Sec-WebSocket-Version` (§4.2.1 item 6,
/// and the value to advertise in a `426 Upgrade Required`, §4.4).
pub const SUPPORTED_VERSION: &str = "13";

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key` (§4.2.2 step 5, item 4).
///
/// §1.3: "the server has to take the value (as present in the header field, e.g., the
/// base64-encoded \[RFC4648\] version minus any leading and trailing whitespace) and concatenate
/// this with the Globally Unique Identifier (GUID, \[RFC4122\]) "258EAFA5-E914-47DA-95CA-
/// C5AB0DC85B11" in string form [...]. A SHA-1 hash (160 bits) \[FIPS.180-3\], base64-encoded
/// (see Section 4 of \[RFC4648\]), of this concatenation is then returned in the server's
/// handshake."
pub fn accept_key(client_key: &str) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(trim_ows_str(client_key).as_bytes());
    sha1.update(WEBSOCKET_GUID.as_bytes());
    STANDARD.encode(sha1.digest().bytes())
}

/// True if `key` is a valid `Sec-WebSocket-Key` (§4.2.1 item 5): "a base64-encoded (see
/// Section 4 of \[RFC4648\]) value that, when decoded, is 16 bytes in length."
///
/// Canonical padded base64 only (24 characters ending in `==`); leading and trailing OWS is
/// ignored, as `accept_key` ignores it. Decodes into a stack buffer: nothing is allocated.
pub fn key_is_valid(key: &str) -> bool {
    let key = trim_ows_str(key);
    if key.len() != 24 {
        return false;
    }
    // 24 base64 characters decode to at most 18 bytes; a valid key decodes to exactly 16.
    let mut out = [0u8; 18];
    matches!(STANDARD.decode_slice(key, &mut out), Ok(16))
}

/// True if the `Sec-WebSocket-Version` value is 13 (§4.2.1 item 6: "A |Sec-WebSocket-Version|
/// header field, with a value of 13.").
pub fn version_is_supported(version: &str) -> bool {
    trim_ows_str(version) == SUPPORTED_VERSION
}

/// True if the comma-separated header value `list` contains `token`, compared ASCII
/// case-insensitively.
///
/// For §4.2.1 item 3 ("An |Upgrade| header field containing the value "websocket", treated as
/// an ASCII case-insensitive value.") and item 4 ("A |Connection| header field that includes the
/// token "Upgrade", treated as an ASCII case-insensitive value."); e.g.
/// `has_token("keep-alive, Upgrade", "upgrade")` is true.
pub fn has_token(list: &str, token: &str) -> bool {
    list.split(',').any(|item| trim_ows_str(item).eq_ignore_ascii_case(token))
}

/// The subprotocol to answer with: the first name in the client's `Sec-WebSocket-Protocol`
/// list (`offered`, comma-separated, in the client's order of preference) that appears in
/// `supported`; `None` if there is no overlap or nothing was offered.
///
/// §4.2.2 step 4, /subprotocol/: "The value chosen MUST be derived from the client's
/// handshake, specifically by selecting one of the values from the |Sec-WebSocket-Protocol|
/// field that the server is willing to use for this connection (if any)." Names are compared
/// exactly (subprotocol names are case-sensitive tokens). The result borrows from `supported`,
/// so it is `'static` when the server's names are, and never echoes client bytes into the
/// response.
pub fn pick_protocol(offered: &str, supported: &[&'static str]) -> Option<&'static str> {
    offered
        .split(',')
        .map(trim_ows_str)
        .filter(|name| !name.is_empty())
        .find_map(|name| supported.iter().copied().find(|s| *s == name))
}

/// The `101 Switching Protocols` response head (status line, fields, blank line) of §4.2.2
/// step 5:
///
/// ```text
/// 1. A Status-Line with a 101 response code as per RFC 2616 [RFC2616]. Such a response could
///    look like "HTTP/1.1 101 Switching Protocols".
/// 2. An |Upgrade| header field with value "websocket" as per RFC 2616 [RFC2616].
/// 3. A |Connection| header field with value "Upgrade".
/// 4. A |Sec-WebSocket-Accept| header field. [...]
/// 5. Optionally, a |Sec-WebSocket-Protocol| header field, with a value /subprotocol/ as
///    defined in step 4 in Section 4.2.2.
/// ```
///
/// `accept` comes from `accept_key` and `protocol` from `pick_protocol`, so neither can hold a
/// CR or LF.
pub fn response_head(accept: &str, protocol: Option<&str>) -> Vec<u8> {
    debug_assert!(!accept.contains(['\r', '\n']));
    debug_assert!(!protocol.is_some_and(|p| p.contains(['\r', '\n'])));
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    out.extend_from_slice(b"Upgrade: websocket\r\n");
    out.extend_from_slice(b"Connection: Upgrade\r\n");
    out.extend_from_slice(b"Sec-WebSocket-Accept: ");
    out.extend_from_slice(accept.as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(p) = protocol {
        out.extend_from_slice(b"Sec-WebSocket-Protocol: ");
        out.extend_from_slice(p.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_rfc_vector() {
        // §1.3 and §4.2.2.
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn accept_key_ignores_surrounding_whitespace() {
        assert_eq!(accept_key(" \tdGhlIHNhbXBsZSBub25jZQ== "), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn accept_key_other_vector() {
        // The key used in MDN's "Writing WebSocket servers" example.
        assert_eq!(accept_key("x3JJHMbDL1EzLkh9GBhXDw=="), "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    }

    #[test]
    fn valid_keys() {
        assert!(key_is_valid("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(key_is_valid("x3JJHMbDL1EzLkh9GBhXDw=="));
        assert!(key_is_valid("AAAAAAAAAAAAAAAAAAAAAA=="));
        assert!(key_is_valid(" dGhlIHNhbXBsZSBub25jZQ==\t"));
    }

    #[test]
    fn invalid_keys() {
        let bad = [
            "",
            "dGhlIHNhbXBsZSBub25jZQ",       // no padding
            "dGhlIHNhbXBsZSBub25jZQ=",      // short padding
            "dGhlIHNhbXBsZSBub25jZQ===",    // too long
            "dGhlIHNhbXBsZSBub25jZSE=",     // decodes to 17 bytes
            "dGhlIHNhbXBsZSBub25j",         // 15 bytes, unpadded
            "dGhlIHNhbXBsZSBub25jZSEhIQ==", // 19 bytes
            "dGhlIHNhbXBsZSBub25jZR==",     // non-zero trailing bits
            "dGhlIHNhbXBsZSBub25jZQ!=",     // not base64
            "dGhlIHNhbXBsZSBub25j_Q==",     // URL-safe alphabet
            "dGhlIHNhbXBs ZSBub25jZQ==",    // inner space
            "AAAAAAAAAAAAAAAAAAAAAAAA",     // 18 bytes, no padding
        ];
        for key in bad {
            assert!(!key_is_valid(key), "{key:?}");
        }
    }

    #[test]
    fn versions() {
        assert!(version_is_supported("13"));
        assert!(version_is_supported(" 13 "));
        for v in ["", "8", "12", "14", "13, 8", "130"] {
            assert!(!version_is_supported(v), "{v:?}");
        }
    }

    #[test]
    fn tokens() {
        assert!(has_token("Upgrade", "upgrade"));
        assert!(has_token("keep-alive, Upgrade", "upgrade"));
        assert!(has_token("keep-alive,upgrade", "Upgrade"));
        assert!(has_token("WebSocket", "websocket"));
        assert!(!has_token("keep-alive", "upgrade"));
        assert!(!has_token("upgrades", "upgrade"));
        assert!(!has_token("", "upgrade"));
    }

    #[test]
    fn protocol_choice_follows_client_order() {
        let ours: &[&'static str] = &["hookcast.v1", "hookcast.v2"];
        assert_eq!(pick_protocol("hookcast.v2, hookcast.v1", ours), Some("hookcast.v2"));
        assert_eq!(pick_protocol("chat,hookcast.v1", ours), Some("hookcast.v1"));
        assert_eq!(pick_protocol("  hookcast.v1  ", ours), Some("hookcast.v1"));
        assert_eq!(pick_protocol(",,hookcast.v2,", ours), Some("hookcast.v2"));
        assert_eq!(pick_protocol("chat, superchat", ours), None);
        assert_eq!(pick_protocol("", ours), None);
        assert_eq!(pick_protocol("HOOKCAST.V1", ours), None, "case-sensitive");
        assert_eq!(pick_protocol("hookcast.v1", &[]), None);
    }

    #[test]
    fn response_head_rfc_example() {
        // §1.2's server handshake.
        let head = response_head(&accept_key("dGhlIHNhbXBsZSBub25jZQ=="), Some("chat"));
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             Sec-WebSocket-Protocol: chat\r\n\
             \r\n"
        );
    }

    #[test]
    fn response_head_without_protocol() {
        let head = response_head("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", None);
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\n\
             Upgrade: websocket\r\n\
             Connection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
             \r\n"
        );
    }

    #[test]
    fn response_head_parses_as_http() {
        let head = response_head(&accept_key("x3JJHMbDL1EzLkh9GBhXDw=="), Some("hookcast.v1"));
        let mut fields = [httparse::EMPTY_HEADER; 8];
        let mut resp = httparse::Response::new(&mut fields);
        assert_eq!(resp.parse(&head).unwrap(), httparse::Status::Complete(head.len()));
        assert_eq!(resp.code, Some(101));
        assert_eq!(resp.headers.len(), 4);
    }
}
