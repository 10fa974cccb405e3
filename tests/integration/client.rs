//! What the browser client (`GET /hookcast.js`, issue 18) needs from the daemon, without a
//! browser: the script's types, `ETag`, `304` and cache headers (the status page's assets share
//! the mechanism), the module form, CORS for a cross-origin `import`, and the WebSocket `hello`
//! frame. The browser half is `tests/browser/client.mjs`.

use crate::util::*;
use serde_json::Value;
use std::io::Write;
use std::time::Duration;
use tungstenite::{Message, WebSocket};

const OPEN: &str = r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}],
    "cors":{"allowed_origins":["http://app.test"]}}"#;

#[test]
fn the_script_is_served_with_its_version_as_etag_and_revalidates_with_304() {
    let d = Daemon::start(OPEN);
    let js = d.get("/hookcast.js");
    assert_eq!(js.status, 200);
    assert_eq!(js.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(js.header("cache-control"), Some("no-cache"), "revalidated unless the URL names the version");
    assert_eq!(js.header("x-content-type-options"), Some("nosniff"));
    let etag = js.header("etag").expect("an ETag").to_string();
    let version = etag.trim_matches('"').to_string();
    assert!(version.len() == 16 && version.chars().all(|c| c.is_ascii_hexdigit()), "{etag}");
    let text = js.text();
    assert!(text.starts_with("/**") && text.contains("var hookcast = ") && !text.contains("\nexport "));

    let module = d.get("/hookcast.mjs");
    assert_eq!(module.status, 200);
    assert_eq!(module.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(module.header("etag"), Some(etag.as_str()), "one version for both forms");
    let m = module.text();
    assert!(
        m.starts_with(&text) && m.ends_with("export const connect = hookcast.connect;\nexport default hookcast;\n")
    );

    let pinned = d.get(&format!("/hookcast.js?v={version}"));
    assert_eq!(pinned.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(d.get("/hookcast.js?v=0123456789abcdef").header("cache-control"), Some("no-cache"));

    // 304 on a kept-alive connection: no body and no Content-Length, and the next answer on
    // the same connection is read whole.
    let mut c = d.connect();
    let req = |extra: &str| format!("GET /hookcast.js HTTP/1.1\r\nHost: localhost\r\n{extra}\r\n");
    c.write_all(req(&format!("If-None-Match: W/\"old\", {etag}\r\n")).as_bytes()).unwrap();
    let not_modified = read_until(&mut c, "\r\n\r\n");
    assert!(not_modified.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{not_modified}");
    let lower = not_modified.to_ascii_lowercase();
    assert!(
        lower.contains(&format!("etag: {etag}\r\n")) && lower.contains("cache-control: no-cache\r\n"),
        "{not_modified}"
    );
    assert!(!lower.contains("content-length") && !lower.contains("content-type"), "{not_modified}");
    c.write_all(req("Connection: close\r\n").as_bytes()).unwrap();
    let next = read_response(&mut c).expect("the next answer");
    assert_eq!((next.status, next.body.len()), (200, text.len()));

    let mut c = d.connect();
    c.write_all(b"HEAD /hookcast.mjs HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut head = String::new();
    std::io::Read::read_to_string(&mut c, &mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 ") && head.ends_with("\r\n\r\n"), "{head}");
    assert!(head.contains(&format!("ETag: {etag}\r\n")) && head.contains(&format!("Content-Length: {}\r\n", m.len())));
    assert_eq!(d.request("POST", "/hookcast.js", &[], b"").status, 405);

    // The status page's assets go through the same helper.
    let css = d.get("/status/style.css");
    let css_etag = css.header("etag").expect("the status assets have an ETag too").to_string();
    let again = d.request("GET", "/status/style.css", &[("If-None-Match", &css_etag)], b"");
    assert_eq!((again.status, again.body.len()), (304, 0));
}

#[test]
fn a_listed_origin_may_import_the_module() {
    let d = Daemon::start(OPEN);
    let r = d.request("GET", "/hookcast.mjs", &[("Origin", "http://app.test")], b"");
    assert_eq!(r.header("access-control-allow-origin"), Some("http://app.test"));
    let r = d.request("GET", "/hookcast.mjs", &[("Origin", "http://other.test")], b"");
    assert_eq!((r.status, r.header("access-control-allow-origin")), (200, None));
}

type Ws = WebSocket<std::net::TcpStream>;

fn ws(d: &Daemon, path: &str) -> Ws {
    let stream = d.connect();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tungstenite::client(format!("ws://{}{path}", d.addr), stream).map(|(ws, _)| ws).expect("a WebSocket")
}

fn next_json(ws: &mut Ws) -> Value {
    loop {
        if let Message::Text(t) = ws.read().expect("a message") {
            return serde_json::from_str(&t).unwrap();
        }
    }
}

#[test]
fn hello_gives_a_websocket_its_position_after_the_states() {
    let d = Daemon::start(OPEN);
    let first = d.publish("a", "one");
    let fresh = &mut ws(&d, "/ws?topics=a&hello=1");
    assert_eq!(next_json(fresh), serde_json::json!({"type": "hello", "last_event_id": first}));
    let second = d.publish("a", "two");
    assert_eq!(next_json(fresh)["id"], second);

    // Resuming: the hello names the client's cursor, the replay follows it.
    let resumed = &mut ws(&d, &format!("/ws?topics=a&hello=1&lastEventId={first}"));
    assert_eq!(next_json(resumed), serde_json::json!({"type": "hello", "last_event_id": first}));
    assert_eq!(next_json(resumed)["id"], second);

    // With state: the retained event first, then the hello.
    let retained: Value = d.request("POST", "/publish/b?retain=1", &[], b"state").json();
    let now = d.publish("a", "three");
    let stated = &mut ws(&d, "/ws?topics=a,b&hello=1&state=1");
    assert_eq!(next_json(stated)["id"], retained["id"]);
    assert_eq!(next_json(stated), serde_json::json!({"type": "hello", "last_event_id": now}));

    // Without hello=1 nothing changes: the first frame is the next event.
    let plain = &mut ws(&d, "/ws?topics=a");
    let fourth = d.publish("a", "four");
    assert_eq!(next_json(plain)["id"], fourth);
}

#[test]
fn the_example_pages_config_passes_check() {
    // Not under examples/ itself, where `shipped_example_configs_pass_check` looks.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/pages/hookcast.json");
    let out = std::process::Command::new(BIN).args(["check", "--config", path.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
