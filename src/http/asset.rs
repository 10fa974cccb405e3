//! Files embedded in the binary (the status page's script and stylesheet, `hookcast.js`): a
//! version made from their content at compile time, an `ETag` carrying it, `304 Not Modified`
//! for a client that already holds it, and long-term caching when the URL names the current
//! version (`?v=`), so a page that pins the version never asks again and an unpinned one
//! revalidates cheaply.

use super::request::{query_param, Head};
use super::response::Response;

/// FNV-1a's offset basis: the seed of the first [`fnv1a`] in a chain.
pub const FNV_SEED: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a over `s`, continuing from `seed`, at compile time: content versions, not security.
pub const fn fnv1a(seed: u64, s: &str) -> u64 {
    let b = s.as_bytes();
    let mut h = seed;
    let mut i = 0;
    while i < b.len() {
        h ^= b[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

/// `Cache-Control` of an asset asked for by its current version: its URL changes with it.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// The answer to a `GET`/`HEAD` of an embedded file whose content version is `version`: 304
/// when `If-None-Match` names it, else the file; cached for good under `?v=version`, else
/// revalidated each time (`no-cache` with the `ETag`).
pub fn serve(head: &Head, body: &'static str, content_type: &str, version: &str) -> Response {
    let etag = format!("\"{version}\"");
    let current = query_param(head.query(), "v").is_some_and(|v| v == version);
    let cache = if current { IMMUTABLE } else { "no-cache" };
    let held = head.header_str("if-none-match").is_some_and(|list| {
        list.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
    });
    if held {
        // RFC 9110 §15.4.5: no content and no representation headers besides the validators.
        return Response { status: 304, headers: Vec::new(), body: Vec::new() }
            .with("ETag", etag)
            .with("Cache-Control", cache);
    }
    Response::new(200, content_type, body)
        .with("ETag", etag)
        .with("Cache-Control", cache)
        .with("X-Content-Type-Options", "nosniff")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse_head, Limits};

    fn head(target: &str, extra: &str) -> Head {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: h\r\n{extra}\r\n");
        parse_head(raw.as_bytes(), &Limits { max_header_bytes: 8192, max_uri_bytes: 2048 })
            .expect("a head")
            .expect("complete")
            .0
    }

    #[test]
    fn versions_etags_and_not_modified() {
        assert_eq!(fnv1a(FNV_SEED, ""), FNV_SEED);
        assert_ne!(fnv1a(FNV_SEED, "a"), fnv1a(FNV_SEED, "b"));
        let r = serve(&head("/x.js", ""), "body", "text/javascript", "abc");
        assert_eq!((r.status, r.body.as_slice()), (200, &b"body"[..]));
        let h = |r: &Response, n: &str| r.headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(h(&r, "ETag").as_deref(), Some("\"abc\""));
        assert_eq!(h(&r, "Cache-Control").as_deref(), Some("no-cache"));
        let r = serve(&head("/x.js?v=abc", ""), "body", "text/javascript", "abc");
        assert_eq!(h(&r, "Cache-Control").as_deref(), Some(IMMUTABLE));
        for inm in ["\"abc\"", "W/\"abc\"", "\"old\", \"abc\"", "*"] {
            let r = serve(&head("/x.js", &format!("If-None-Match: {inm}\r\n")), "body", "text/javascript", "abc");
            assert_eq!((r.status, r.body.len()), (304, 0), "{inm}");
            assert!(h(&r, "Content-Type").is_none());
        }
        let r = serve(&head("/x.js", "If-None-Match: \"old\"\r\n"), "body", "text/javascript", "abc");
        assert_eq!(r.status, 200);
    }
}
