//! Feeds arbitrary methods and paths to `http::router::route`, whose topic, hook and delivery
//! segments go through `http::request::percent_decode`.
//!
//! Beyond "does not panic": every string a path segment decodes to comes back unchanged from a
//! path that percent-encodes it (each byte outside RFC 3986's unreserved set as `%XX`), on each
//! route that carries a decoded segment, `/` inside a segment included.

#![no_main]

use hookcast::http::request::{percent_decode, Method};
use hookcast::http::router::{route, Route};
use libfuzzer_sys::fuzz_target;

const METHODS: [Method; 8] = [
    Method::Get,
    Method::Head,
    Method::Post,
    Method::Put,
    Method::Delete,
    Method::Options,
    Method::Patch,
    Method::Other,
];

/// Every byte outside RFC 3986 §2.3's unreserved set as `%XX`, in upper or lower case.
fn encode(s: &str, upper: bool) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => char::from(b).to_string(),
            _ if upper => format!("%{b:02X}"),
            _ => format!("%{b:02x}"),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let method = METHODS[usize::from(sel) % METHODS.len()];
    let path = String::from_utf8_lossy(rest);
    let _ = route(method, &path);

    // What the fuzzed text decodes to (or, when it does not decode, the text itself).
    let decoded = percent_decode(&path).unwrap_or_else(|| path.clone().into_owned());
    let upper = sel & 0x80 != 0;
    let enc = encode(&decoded, upper);
    assert_eq!(percent_decode(&enc).as_deref(), Some(decoded.as_str()));
    assert_eq!(route(Method::Post, &format!("/publish/{enc}")), Ok(Route::Publish(decoded.clone())));
    assert_eq!(route(Method::Get, &format!("/events/{enc}")), Ok(Route::Events(Some(decoded.clone()))));
    assert_eq!(route(method, &format!("/hooks/{enc}")), Ok(Route::Hook(decoded.clone())));
    // A hook may hold `/` between segments; the id is the last segment.
    let mid = (0..=decoded.len() / 2).rev().find(|&i| decoded.is_char_boundary(i)).unwrap_or(0);
    let (hook, id) = decoded.split_at(mid);
    let hook_path: String = hook.split('/').map(|s| encode(s, upper)).collect::<Vec<_>>().join("/");
    let want = Route::ReplayDelivery { hook: Some(hook.to_owned()), id: id.to_owned() };
    assert_eq!(route(Method::Post, &format!("/api/deliveries/{hook_path}/{}/replay", encode(id, upper))), Ok(want));
});
