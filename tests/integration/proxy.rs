//! What is trusted from a proxy, from a browser and from a `Host` (issue 12, items 1, 2, 4, 9
//! and the ticket and per-address notes): a small reverse proxy in the test stands in for nginx,
//! raw requests carry the headers a browser or an attacker would send.

use crate::util::*;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

/// The address the proxy says every client has (all test traffic is loopback).
const REMOTE: &str = "203.0.113.9";
const ADMIN: &str = "admin-token";
const LOOPBACK: [&str; 2] = ["127.0.0.0/8", "::1"];

/// A reverse proxy that behaves like nginx with `proxy_set_header X-Forwarded-For
/// $remote_addr`: it sets `X-Forwarded-For` to the client's address (here, `client`, since every
/// test connection is loopback) and passes every other header through untouched, as nginx, Caddy
/// and HAProxy do with headers they do not know (`CF-Connecting-IP` among them). It rewrites
/// the first request on a connection only: test requests use one request per connection.
struct NginxLike {
    addr: SocketAddr,
}

impl NginxLike {
    fn start(upstream: SocketAddr, client: &'static str) -> NginxLike {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for down in listener.incoming() {
                let Ok(down) = down else { return };
                std::thread::spawn(move || NginxLike::serve(down, upstream, client));
            }
        });
        NginxLike { addr }
    }

    fn serve(mut down: TcpStream, upstream: SocketAddr, client: &str) {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match down.read(&mut b) {
                Ok(1) => head.push(b[0]),
                _ => return,
            }
        }
        let text = String::from_utf8_lossy(&head).into_owned();
        let mut lines = text.split("\r\n");
        let mut out = format!("{}\r\n", lines.next().unwrap_or_default());
        for line in lines.filter(|l| !l.is_empty()) {
            if !line.to_ascii_lowercase().starts_with("x-forwarded-for:") {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        out.push_str(&format!("X-Forwarded-For: {client}\r\n\r\n"));
        let Ok(mut up) = TcpStream::connect(upstream) else { return };
        if up.write_all(out.as_bytes()).is_err() {
            return;
        }
        let (mut up_r, mut down_w) = (up.try_clone().unwrap(), down.try_clone().unwrap());
        let back = std::thread::spawn(move || {
            let _ = std::io::copy(&mut up_r, &mut down_w);
            let _ = down_w.shutdown(std::net::Shutdown::Both);
        });
        let _ = std::io::copy(&mut down, &mut up);
        let _ = up.shutdown(std::net::Shutdown::Write);
        let _ = back.join();
    }
}

/// One request with exactly these headers (`Host` included) on a new connection to `addr`.
fn req(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    s.write_all(&bytes).unwrap();
    read_response(&mut s).expect("a response")
}

/// An SSE stream opened on `addr` with `Host: localhost`; the socket and the response head.
fn sse_at(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n");
    for (k, v) in extra {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    s.write_all(r.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    (s, String::from_utf8_lossy(&head).into_owned())
}

fn ws_at(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    let mut r = format!("ws://{addr}{path}").into_client_request().unwrap();
    for (k, v) in headers {
        r.headers_mut().insert(tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tungstenite::client(r, s).map(|(ws, _)| ws).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        other => panic!("WebSocket handshake: {other:?}"),
    })
}

/// Sends an op and returns the reply (pings answered on the way).
fn op(ws: &mut Ws, v: Value) -> Value {
    ws.send(Message::text(v.to_string())).unwrap();
    loop {
        match ws.read().expect("a reply") {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn token_hash(t: &str) -> String {
    hookcast::auth::hex(&hookcast::auth::token_hash(t))
}

/// Regression (item 1): the WebSocket handshake resolved the client through `trusted_proxies`,
/// but later `subscribe` / `publish` ops were decided for the TCP peer, the proxy on loopback:
/// a remote client opened `/ws` with no topics and then subscribed to `$deliveries` and
/// published to loopback-only topics.
#[test]
fn websocket_ops_are_decided_for_the_client_behind_the_proxy() {
    let d = Daemon::start(
        &json!({
            "trusted_proxies": LOOPBACK,
            "public": [
                { "topics": ["$deliveries", "$runs", "$runs/**"], "scopes": ["subscribe"], "from": LOOPBACK },
                { "topics": ["local/**"], "scopes": ["subscribe", "publish"], "from": LOOPBACK },
                { "topics": ["open"], "scopes": ["subscribe"] }
            ]
        })
        .to_string(),
    );
    let proxy = NginxLike::start(d.addr, REMOTE);
    // The HTTP side already agreed: the remote client may not read $deliveries.
    let (_, head) = sse_at(proxy.addr, "/events?topics=$deliveries", &[]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");

    let mut remote = ws_at(proxy.addr, "/ws?topics=open", &[]).expect("open to anyone");
    for topics in [json!(["$deliveries"]), json!(["$runs/**"]), json!(["local/x"])] {
        let r = op(&mut remote, json!({ "op": "subscribe", "topics": topics }));
        assert_eq!(r["type"], "error", "a remote client subscribed to {topics}: {r}");
    }
    let r = op(&mut remote, json!({ "op": "publish", "topic": "local/x", "data": "from afar" }));
    assert_eq!(r["type"], "error", "a remote client published to a loopback-only topic: {r}");

    // The same ops from loopback itself are allowed (the rules are right, the address was not).
    let mut local = ws_at(d.addr, "/ws", &[]).unwrap();
    let r = op(&mut local, json!({ "op": "subscribe", "topics": ["$deliveries", "local/x"] }));
    assert_eq!(r["type"], "ack", "{r}");
    let r = op(&mut local, json!({ "op": "publish", "topic": "local/x", "data": "here" }));
    assert_eq!(r["type"], "ack", "{r}");
}

/// Regression (item 1): the reload re-check also judged subscribers by the TCP peer, so a remote
/// stream through the proxy survived a reload that closed its topic to remote clients.
#[test]
fn reload_recheck_judges_the_client_behind_the_proxy() {
    let config = |from: Value| {
        json!({
            "trusted_proxies": LOOPBACK,
            "public": [{ "topics": ["feed"], "scopes": ["subscribe"], "from": from }],
            "sse": { "keepalive_ms": 60000 }
        })
        .to_string()
    };
    let d = Daemon::start(&config(json!([])));
    let proxy = NginxLike::start(d.addr, REMOTE);
    let (mut remote, head) = sse_at(proxy.addr, "/events?topics=feed", &[]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (mut local, head) = sse_at(d.addr, "/events?topics=feed", &[]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    std::fs::write(d.dir.0.join("hookcast.json"), config(json!(LOOPBACK))).unwrap();
    signal(&d.child, "HUP");
    let got = read_until(&mut remote, "no longer allowed");
    assert!(got.contains(": no longer allowed to subscribe to \"feed\""), "{got}");
    assert!(closed_within(&mut remote, Duration::from_secs(5)));
    assert!(!closed_within(&mut local, Duration::from_millis(300)), "the loopback subscriber stays");
}

fn lan_config(cf: bool) -> String {
    let mut c = json!({
        "trusted_proxies": LOOPBACK,
        "public": [{ "topics": ["lan"], "scopes": ["subscribe"], "from": ["10.0.0.0/8"] }],
        "hooks": [
            { "id": "lan", "allowed-ips": ["10.0.0.0/8"], "response-message": "lan ok" },
            {
                "id": "lan-rule", "response-message": "rule ok",
                "trigger-rule": { "match": { "type": "ip-whitelist", "ip-range": "10.0.0.0/8" } }
            }
        ]
    });
    if cf {
        c["cf_connecting_ip"] = json!(true);
    }
    c.to_string()
}

/// Regression (item 2): `CF-Connecting-IP` was believed from any trusted proxy and beat
/// `X-Forwarded-For`; behind nginx (which passes it through) a client wrote its own and passed
/// `allowed-ips`, `ip-whitelist` and `public` rules.
#[test]
fn cf_connecting_ip_through_a_generic_proxy_is_not_believed() {
    let d = Daemon::start(&lan_config(false));
    let proxy = NginxLike::start(d.addr, REMOTE);
    let spoof = [("Host", "localhost"), ("CF-Connecting-IP", "10.1.2.3")];
    let r = req(proxy.addr, "POST", "/hooks/lan", &spoof, b"");
    assert_eq!(r.status, 403, "allowed-ips passed with a client's own CF-Connecting-IP: {}", r.text());
    let r = req(proxy.addr, "POST", "/hooks/lan-rule", &spoof, b"");
    assert_ne!(r.text(), "rule ok", "ip-whitelist passed with a client's own CF-Connecting-IP");
    let (_, head) = sse_at(proxy.addr, "/events?topics=lan", &[("CF-Connecting-IP", "10.1.2.3")]);
    assert!(head.starts_with("HTTP/1.1 401"), "public rule passed: {head}");
    // X-Forwarded-For from the proxy is what counts: a client the proxy says is on the LAN passes.
    let lan = NginxLike::start(d.addr, "10.7.7.7");
    let r = req(lan.addr, "POST", "/hooks/lan", &[("Host", "localhost")], b"");
    assert_eq!((r.status, r.text().as_str()), (200, "lan ok"));
    assert!(d.log_text().contains("source=10.7.7.7"), "{}", d.log_text());
}

/// With `cf_connecting_ip` the operator says the proxy is cloudflared, whose edge overwrites the
/// header: then it is believed (and beats X-Forwarded-For).
#[test]
fn cf_connecting_ip_is_believed_when_the_proxy_is_cloudflared() {
    let d = Daemon::start(&lan_config(true));
    let r = req(d.addr, "POST", "/hooks/lan", &[("Host", "localhost"), ("CF-Connecting-IP", "10.1.2.3")], b"");
    assert_eq!((r.status, r.text().as_str()), (200, "lan ok"));
    let r = req(
        d.addr,
        "POST",
        "/hooks/lan",
        &[("Host", "localhost"), ("CF-Connecting-IP", "203.0.113.7"), ("X-Forwarded-For", "10.1.2.3")],
        b"",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    let out = std::process::Command::new(BIN)
        .args(["check", "--config", "/dev/stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(br#"{"cf_connecting_ip": true}"#)?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cf_connecting_ip: needs trusted_proxies"), "{out:?}");
}

/// The default config's shape: loopback-trusting public rules, a hook trusting loopback, a
/// signed hook, and an admin token.
const GH_SECRET: &str = "gh-secret";

fn local_config(more: Value) -> String {
    let mut c = json!({
        "public": [
            { "topics": ["demo"], "scopes": ["subscribe", "publish"], "from": LOOPBACK },
            { "topics": ["$deliveries", "$runs", "$runs/**"], "scopes": ["subscribe"], "from": LOOPBACK }
        ],
        "tokens": [{ "name": "ops", "sha256": token_hash(ADMIN), "scopes": ["admin", "publish"] }],
        "hooks": [
            { "id": "demo", "allowed-ips": LOOPBACK, "topic": "demo", "response-message": "demo ran" },
            { "id": "site", "provider": "github", "secrets": [GH_SECRET] },
            { "id": "deploy", "execute-command": "true" }
        ]
    });
    if let Value::Object(m) = more {
        for (k, v) in m {
            c[k] = v;
        }
    }
    c.to_string()
}

/// Regression (item 9): with no `Host` check, a DNS-rebinding page (its own name now resolving
/// to 127.0.0.1) read the status, `$deliveries` and run output through loopback trust.
#[test]
fn a_rebound_host_gets_nothing_from_loopback_trust() {
    let d = Daemon::start(&local_config(json!({ "server_names": ["hookcast.lan"] })));
    let port = d.addr.port();
    let evil = format!("evil.example:{port}");
    let evil_origin = format!("http://{evil}");
    let r = req(d.addr, "GET", "/api/status", &[("Host", &evil)], b"");
    assert_eq!(r.status, 401, "a rebound page read the status: {}", r.text());
    assert_eq!(req(d.addr, "GET", "/api/runs", &[("Host", &evil)], b"").status, 401);
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET /events?topics=$deliveries HTTP/1.1\r\nHost: {evil}\r\n\r\n").as_bytes()).unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 401);
    // WebSocket: the Origin matches the attacker's own Host, so the handshake is the page's
    // own; the topics are what must be refused, at the handshake and by a later op.
    let ws_headers = [("Host", evil.as_str()), ("Origin", evil_origin.as_str())];
    assert_eq!(ws_at(d.addr, "/ws?topics=$deliveries", &ws_headers).err(), Some(401));
    let mut ws = ws_at(d.addr, "/ws", &ws_headers).expect("a handshake with no topics");
    let r = op(&mut ws, json!({ "op": "subscribe", "topics": ["$deliveries"] }));
    assert_eq!(r["type"], "error", "{r}");
    let r = op(&mut ws, json!({ "op": "publish", "topic": "demo", "data": "x" }));
    assert_eq!(r["type"], "error", "{r}");
    // Publishing and hooks trusting loopback, from the rebound page (same-origin to itself).
    let post = [("Host", evil.as_str()), ("Origin", evil_origin.as_str()), ("Content-Type", "text/plain")];
    assert_eq!(req(d.addr, "POST", "/publish/demo", &post, b"x").status, 403);
    let r = req(d.addr, "POST", "/hooks/demo", &post, b"x");
    assert_eq!(r.status, 403, "a rebound page ran a loopback hook: {}", r.text());
    // A fetch() GET of a hook from the rebound page carries no Origin (and over plain HTTP to a
    // name that is not localhost, no Sec-Fetch-* either): only the Host tells.
    let get = [("Host", evil.as_str()), ("Sec-Fetch-Site", "same-origin")];
    assert_eq!(req(d.addr, "GET", "/hooks/demo", &get, b"").status, 403);
    let r = req(d.addr, "GET", "/hooks/demo", &[("Host", &evil)], b"");
    assert_eq!(r.status, 421, "a rebound page ran a loopback hook by GET: {}", r.text());
    assert_eq!(req(d.addr, "POST", "/hooks/deploy", &[("Host", &evil)], b"").status, 421);
    assert_eq!(d.metric("hookcast_deliveries_total{hook=\"demo\",outcome=\"accepted\"}"), 0.0);

    // The names we answer to keep working: IP literals, localhost, server_names.
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), "hookcast.lan".to_string()] {
        let r = req(d.addr, "GET", "/api/status?brief=1", &[("Host", &host)], b"");
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        let r = req(d.addr, "POST", "/hooks/demo", &[("Host", &host)], b"");
        assert_eq!((r.status, r.text().as_str()), (200, "demo ran"), "{host}");
    }
    // A token is not address-based: it works with any Host.
    let bearer = format!("Bearer {ADMIN}");
    let r = req(d.addr, "GET", "/api/status?brief=1", &[("Host", &evil), ("Authorization", &bearer)], b"");
    assert_eq!(r.status, 200);
    // A signed webhook through a tunnel: the public Host, no Origin.
    let body = br#"{"ref":"refs/heads/main"}"#;
    let mut mac = Hmac::<Sha256>::new_from_slice(GH_SECRET.as_bytes()).unwrap();
    mac.update(body);
    let sig = format!("sha256={}", hookcast::auth::hex(&mac.finalize().into_bytes()));
    let gh = [
        ("Host", "hooks.example.org"),
        ("Content-Type", "application/json"),
        ("X-GitHub-Event", "push"),
        ("X-GitHub-Delivery", "d-1"),
        ("X-Hub-Signature-256", sig.as_str()),
    ];
    let r = req(d.addr, "POST", "/hooks/site", &gh, body);
    assert_eq!(r.status, 202, "a signed hook with the tunnel's Host: {}", r.text());
}

/// Behind a trusted proxy the address rules see the real client, so a hook without a provider
/// works with the public `Host` the proxy passes on (and does not trust a remote client).
#[test]
fn hooks_behind_a_proxy_work_with_the_public_host() {
    let d = Daemon::start(&local_config(json!({ "trusted_proxies": LOOPBACK })));
    let remote = NginxLike::start(d.addr, REMOTE);
    let public = [("Host", "hooks.example.org")];
    assert_eq!(req(remote.addr, "POST", "/hooks/deploy", &public, b"{}").status, 200);
    let r = req(remote.addr, "POST", "/hooks/demo", &public, b"");
    assert_eq!(r.status, 403, "a remote client passed a loopback-only hook: {}", r.text());
    // A loopback client through the proxy looks like a direct one (nothing tells them apart
    // from a rebinding page reaching a local proxy): loopback trust needs one of our names.
    let local = NginxLike::start(d.addr, "127.0.0.1");
    assert_eq!(req(local.addr, "POST", "/hooks/demo", &public, b"").status, 421);
    assert_eq!(req(local.addr, "POST", "/hooks/demo", &[("Host", "localhost")], b"").text(), "demo ran");
}

/// `hookcast check` says when proxy settings are valid but likely not meant.
#[test]
fn check_warns_about_proxy_settings() {
    let dir = TempDir::new("check-proxy");
    let run = |cfg: Value| {
        let file = dir.0.join("c.json");
        std::fs::write(&file, cfg.to_string()).unwrap();
        let out = std::process::Command::new(BIN).args(["check", "--config"]).arg(&file).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let open = json!([{ "topics": ["feed"], "scopes": ["subscribe"] }]);
    let err = run(json!({ "trusted_proxies": LOOPBACK, "public": open }));
    assert!(err.contains("warning: trusted_proxies without cf_connecting_ip"), "{err}");
    assert!(err.contains("warning: public rules for remote clients with trusted_proxies but no server_names"), "{err}");
    let err = run(
        json!({ "trusted_proxies": LOOPBACK, "cf_connecting_ip": true, "server_names": ["hooks.example.org"], "public": open }),
    );
    assert!(!err.contains("warning"), "{err}");
    let loopback_only = json!([{ "topics": ["feed"], "scopes": ["subscribe"], "from": LOOPBACK }]);
    let err = run(json!({ "trusted_proxies": LOOPBACK, "cf_connecting_ip": true, "public": loopback_only }));
    assert!(!err.contains("warning"), "{err}");
}

/// Regression (item 9): any web page could form-POST to `/publish/demo` and to hooks that trust
/// loopback (the browser connects from loopback, `Host` is ours; only `Origin` tells).
#[test]
fn cross_site_posts_to_loopback_trust_are_refused() {
    let d = Daemon::start(&local_config(json!({ "cors": { "allowed_origins": ["https://dash.example"] } })));
    let host = format!("127.0.0.1:{}", d.addr.port());
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    for browser in [
        [("Origin", "https://evil.example"), ("Sec-Fetch-Site", "cross-site")],
        [("Origin", "null"), ("Sec-Fetch-Site", "cross-site")],
        [("Sec-Fetch-Site", "cross-site"), ("Sec-Fetch-Mode", "no-cors")],
        [("Origin", "http://127.0.0.1:8080"), ("Sec-Fetch-Site", "same-site")],
    ] {
        let mut h = vec![("Host", host.as_str()), form];
        h.extend(browser);
        let r = req(d.addr, "POST", "/publish/demo", &h, b"a=1");
        assert_eq!(r.status, 403, "{browser:?}: {}", r.text());
        let r = req(d.addr, "POST", "/hooks/demo", &h, b"a=1");
        assert_eq!(r.status, 403, "{browser:?} ran a hook: {}", r.text());
        // An <img src=…> is a GET: hooks run on any method.
        let r = req(d.addr, "GET", "/hooks/demo", &h, b"");
        assert_eq!(r.status, 403, "{browser:?} ran a hook by GET: {}", r.text());
    }
    assert_eq!(d.metric("hookcast_deliveries_total{hook=\"demo\",outcome=\"accepted\"}"), 0.0);
    // The page's own origin, a configured origin, and clients that are not browsers pass.
    let own = format!("http://{host}");
    for ok in [vec![("Origin", own.as_str())], vec![("Origin", "https://dash.example")], vec![]] {
        let mut h = vec![("Host", host.as_str()), form];
        h.extend(ok.iter().copied());
        assert_eq!(req(d.addr, "POST", "/publish/demo", &h, b"a=1").status, 202, "{ok:?}");
        assert_eq!(req(d.addr, "POST", "/hooks/demo", &h, b"a=1").text(), "demo ran", "{ok:?}");
    }
    // A bearer token is no ambient credential: a page had to hold it (CORS decides the rest).
    let bearer = format!("Bearer {ADMIN}");
    let h = [("Host", host.as_str()), ("Origin", "https://evil.example"), ("Authorization", bearer.as_str())];
    assert_eq!(req(d.addr, "POST", "/publish/tok", &h, b"x").status, 202);
}

/// Waits until the run list holds a finished run and returns its id.
fn a_finished_run(d: &Daemon) -> u64 {
    let bearer = format!("Bearer {ADMIN}");
    let mut id = None;
    assert!(eventually(Duration::from_secs(10), || {
        let r = req(d.addr, "GET", "/api/runs", &[("Host", "localhost"), ("Authorization", &bearer)], b"");
        id = r.json()["runs"]
            .as_array()
            .and_then(|runs| runs.iter().find(|r| r["state"] == "succeeded"))
            .and_then(|r| r["id"].as_u64());
        id.is_some()
    }));
    id.unwrap()
}

/// Regression (item 4): the login cookie is `SameSite=Strict`, which a page on another port of
/// the same host (or a sibling subdomain) does not trip: its form POSTs to retry and replay were
/// answered 202. A cookie-authenticated state change now needs this page's own `Origin`.
#[test]
fn cookie_authenticated_posts_need_the_pages_own_origin() {
    let d = Daemon::start(&local_config(json!({ "public": [] })));
    let host = format!("127.0.0.1:{}", d.addr.port());
    let r = req(d.addr, "POST", "/hooks/deploy", &[("Host", &host), ("X-GitHub-Delivery", "dlv-1")], b"{}");
    assert_eq!(r.status, 200, "{}", r.text());
    let run = a_finished_run(&d);
    let delivery = {
        let bearer = format!("Bearer {ADMIN}");
        let r = req(d.addr, "GET", "/api/deliveries", &[("Host", "localhost"), ("Authorization", &bearer)], b"");
        r.json()["deliveries"][0]["delivery"].as_str().unwrap().to_string()
    };
    let cookie = format!("hookcast_token={ADMIN}");
    let routes = [
        format!("/api/runs/{run}/retry"),
        format!("/api/runs/{run}/cancel"),
        format!("/api/deliveries/{delivery}/replay"),
        "/api/ticket".to_string(),
    ];
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    for path in &routes {
        for foreign in [
            vec![("Origin", "http://127.0.0.1:8080"), ("Sec-Fetch-Site", "same-site")],
            vec![("Origin", "https://sibling.example.org")],
            vec![("Sec-Fetch-Site", "same-site")],
            vec![("Origin", "null")],
            vec![],
        ] {
            let mut h = vec![("Host", host.as_str()), ("Cookie", cookie.as_str()), form];
            h.extend(foreign.iter().copied());
            let r = req(d.addr, "POST", path, &h, b"");
            assert_eq!(r.status, 403, "{path} with {foreign:?}: {}", r.text());
        }
    }
    assert_eq!(d.metric("hookcast_deliveries_total{hook=\"deploy\",outcome=\"accepted\"}"), 1.0, "nothing replayed");
    // The status page's own fetch() (same origin, with the CSRF token /api/status gives it:
    // issue 19) still works, and so does a bearer token.
    let status = req(d.addr, "GET", "/api/status?brief=1", &[("Host", &host), ("Cookie", &cookie)], b"");
    let csrf = status.json()["csrf"].as_str().expect("a CSRF token for the cookie session").to_string();
    let own = format!("http://{host}");
    let h = [("Host", host.as_str()), ("Cookie", cookie.as_str()), ("Origin", own.as_str()), ("X-CSRF-Token", &csrf)];
    assert_eq!(req(d.addr, "POST", &routes[0], &h, b"").status, 202);
    assert_eq!(req(d.addr, "POST", &routes[2], &h, b"").status, 202);
    assert_eq!(req(d.addr, "POST", &routes[3], &h, b"").status, 200);
    let h = [
        ("Host", host.as_str()),
        ("Cookie", cookie.as_str()),
        ("Sec-Fetch-Site", "same-origin"),
        ("X-CSRF-Token", &csrf),
    ];
    assert_eq!(req(d.addr, "POST", &routes[0], &h, b"").status, 202);
    let bearer = format!("Bearer {ADMIN}");
    assert_eq!(req(d.addr, "POST", &routes[0], &[("Host", &host), ("Authorization", &bearer)], b"").status, 202);
}

/// A WebSocket handshake carrying the login cookie from another origin: `ws.allowed_origins: *`
/// lets any page open a socket with its own credentials, not with the cookie the browser adds.
#[test]
fn a_cookie_websocket_from_another_origin_is_refused_even_with_a_wildcard() {
    let d = Daemon::start(
        &json!({
            "ws": { "allowed_origins": ["*"] },
            "tokens": [{ "name": "ops", "sha256": token_hash(ADMIN), "scopes": ["admin", "subscribe"], "topics": ["$deliveries"] }]
        })
        .to_string(),
    );
    let cookie = format!("hookcast_token={ADMIN}");
    let other_port = [("Origin", "http://127.0.0.1:8080"), ("Cookie", cookie.as_str())];
    assert_eq!(ws_at(d.addr, "/ws?topics=$deliveries", &other_port).err(), Some(403));
    let own = format!("http://{}", d.addr);
    ws_at(d.addr, "/ws?topics=$deliveries", &[("Origin", &own), ("Cookie", &cookie)]).expect("the page's own origin");
    let bearer = format!("Bearer {ADMIN}");
    ws_at(d.addr, "/ws?topics=$deliveries", &[("Origin", "http://127.0.0.1:8080"), ("Authorization", &bearer)])
        .expect("a token the page holds itself");
}

/// Tickets stand in for a token where a browser cannot send headers, `/ws` and `/events`; they
/// were accepted on every route, admin POSTs included.
#[test]
fn tickets_are_accepted_only_on_ws_and_events() {
    let d = Daemon::start(
        &json!({
            "tokens": [{ "name": "ops", "sha256": token_hash(ADMIN), "scopes": ["admin", "publish", "subscribe"] }]
        })
        .to_string(),
    );
    let bearer = format!("Bearer {ADMIN}");
    let ticket = || {
        let r = req(d.addr, "POST", "/api/ticket", &[("Host", "localhost"), ("Authorization", &bearer)], b"");
        r.json()["ticket"].as_str().unwrap().to_string()
    };
    let t = ticket();
    for (method, path) in [
        ("POST", format!("/publish/x?ticket={t}")),
        ("POST", format!("/api/runs/1/retry?ticket={t}")),
        ("POST", format!("/api/deliveries/x/replay?ticket={t}")),
        ("GET", format!("/api/runs?ticket={t}")),
        ("GET", format!("/poll?topics=x&ticket={t}")),
        ("POST", format!("/api/ticket?ticket={t}")),
    ] {
        let r = req(d.addr, method, &path, &[("Host", "localhost")], b"");
        assert_eq!(r.status, 400, "{method} {path}: {}", r.text());
        assert!(r.text().contains("only on /ws and /events"), "{}", r.text());
    }
    // Refused, not spent: the same ticket still opens a stream.
    let (_, head) = sse_at(d.addr, &format!("/events?topics=x&ticket={t}"), &[]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let t = ticket();
    ws_at(d.addr, &format!("/ws?topics=x&ticket={t}"), &[]).expect("a ticket opens a WebSocket");
}

/// `max_connections_per_ip` defaulted to `max_connections`: one address could take every slot.
#[test]
fn one_address_gets_a_tenth_of_the_connections_by_default() {
    let d = Daemon::start(r#"{"limits":{"max_connections":20},"public":[{"topics":["**"],"scopes":["subscribe"]}]}"#);
    let streams: Vec<_> = (0..2).map(|_| sse_at(d.addr, "/events?topics=x", &[])).collect();
    for (_, head) in &streams {
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = read_response(&mut s).expect("refused at accept");
    assert_eq!(r.status, 503);
}

/// A trusted proxy carries every remote client on one address: it is held only to the total at
/// accept, and each client behind it to `max_connections_per_ip` once its streams say who it is.
#[test]
fn clients_behind_a_trusted_proxy_are_limited_each_not_the_proxy() {
    let d = Daemon::start(
        &json!({
            "trusted_proxies": LOOPBACK,
            "limits": { "max_connections": 50, "max_connections_per_ip": 2 },
            "public": [{ "topics": ["**"], "scopes": ["subscribe"] }]
        })
        .to_string(),
    );
    let a = NginxLike::start(d.addr, REMOTE);
    let b = NginxLike::start(d.addr, "203.0.113.10");
    let mut held = Vec::new();
    for _ in 0..2 {
        let (s, head) = sse_at(a.addr, "/events?topics=x", &[]);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push(s);
    }
    let (_, head) = sse_at(a.addr, "/events?topics=x", &[]);
    assert!(head.starts_with("HTTP/1.1 503"), "a third stream from one client: {head}");
    assert_eq!(ws_at(a.addr, "/ws?topics=x", &[]).err(), Some(503));
    let r = req(a.addr, "GET", "/poll?topics=x&timeout=5", &[("Host", "localhost")], b"");
    assert_eq!(r.status, 503);
    // Another client through the same proxy (the same TCP address, over the limit by now).
    for _ in 0..2 {
        let (s, head) = sse_at(b.addr, "/events?topics=x", &[]);
        assert!(head.starts_with("HTTP/1.1 200"), "another client behind the proxy: {head}");
        held.push(s);
    }
    assert!(ws_at(b.addr, "/ws?topics=x", &[]).is_err());
    // A stream that ends gives its slot back.
    drop(held.remove(0));
    assert!(eventually(Duration::from_secs(5), || sse_at(a.addr, "/events?topics=x", &[])
        .1
        .starts_with("HTTP/1.1 200")));
}
