//! WebSocket subscribers, tested with `tungstenite` as an independent client (and raw sockets
//! where a misbehaving client is the point).

use crate::util::ws_json as next_json;
use crate::util::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::client::IntoClientRequest;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

const OPEN: &str = r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}]}"#;

fn connect(d: &Daemon, path: &str, headers: &[(&str, &str)]) -> Result<Ws, Box<tungstenite::Error>> {
    let mut req = format!("ws://{}{path}", d.addr).into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    let stream = d.connect();
    tungstenite::client(req, stream).map(|(ws, _)| ws).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => Box::new(e),
        tungstenite::HandshakeError::Interrupted(_) => panic!("blocking handshake interrupted"),
    })
}

fn status_of(err: &tungstenite::Error) -> u16 {
    match err {
        tungstenite::Error::Http(resp) => resp.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).unwrap();
}

#[test]
fn subscribe_receive_and_client_ops() {
    let d = Daemon::start(OPEN);
    let mut ws = connect(&d, "/ws?topics=a", &[]).unwrap();
    let id = d.publish_with("a", "{\"n\":1}", &[("Content-Type", "application/json")]);
    let ev = next_json(&mut ws);
    assert_eq!(ev["id"], id);
    assert_eq!(ev["topic"], "a");
    assert_eq!(ev["event"], "message");
    assert_eq!(ev["data"], json!({"n": 1}));
    assert!(ev["time"].as_str().unwrap().ends_with('Z'));

    send(&mut ws, json!({"op": "subscribe", "topics": ["b/*"]}));
    assert_eq!(next_json(&mut ws), json!({"type": "ack", "op": "subscribe", "topics": ["b/*"]}));
    send(&mut ws, json!({"op": "publish", "topic": "b/x", "event": "note", "data": "hi"}));
    let ack = next_json(&mut ws);
    assert_eq!(ack["type"], "ack");
    let ev = next_json(&mut ws);
    assert_eq!(
        (ev["id"].clone(), ev["event"].clone(), ev["data"].clone()),
        (ack["id"].clone(), json!("note"), json!("hi"))
    );

    // Garbage gets an error and the connection stays.
    ws.send(Message::text("not json")).unwrap();
    assert_eq!(next_json(&mut ws)["type"], "error");
    ws.send(Message::binary(vec![1, 2, 3])).unwrap();
    assert_eq!(next_json(&mut ws)["type"], "error");
    send(&mut ws, json!({"op": "publish", "topic": "$runs", "data": 1}));
    assert_eq!(next_json(&mut ws)["type"], "error");
    send(&mut ws, json!({"op": "ping"}));
    assert_eq!(next_json(&mut ws), json!({"type": "pong"}));

    send(&mut ws, json!({"op": "unsubscribe", "topics": ["a"]}));
    assert_eq!(next_json(&mut ws)["op"], "unsubscribe");
    d.publish("a", "not for you");
    let id = d.publish("b/y", "for you");
    assert_eq!(next_json(&mut ws)["id"], id);

    ws.close(None).unwrap();
    loop {
        match ws.read() {
            Ok(Message::Close(_)) | Err(tungstenite::Error::ConnectionClosed) => break,
            Ok(_) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn resume_after_reconnect_loses_nothing() {
    let d = Daemon::start(OPEN);
    let mut ws = connect(&d, "/ws?topics=r", &[]).unwrap();
    let first = d.publish("r", "0");
    assert_eq!(next_json(&mut ws)["id"], first);
    drop(ws);
    let missed: Vec<u64> = (1..4).map(|i| d.publish("r", &i.to_string())).collect();
    // By query on connect…
    let mut ws = connect(&d, &format!("/ws?topics=r&lastEventId={first}"), &[]).unwrap();
    for id in &missed {
        assert_eq!(next_json(&mut ws)["id"], *id);
    }
    // …or by a resume op on an open connection.
    send(&mut ws, json!({"op": "resume", "since": missed[0]}));
    assert_eq!(next_json(&mut ws)["op"], "resume");
    assert_eq!(next_json(&mut ws)["id"], missed[1]);
    assert_eq!(next_json(&mut ws)["id"], missed[2]);
    let live = d.publish("r", "live");
    assert_eq!(next_json(&mut ws)["id"], live);
}

#[test]
fn ticket_auth_is_one_time() {
    let cfg = format!(
        r#"{{"tokens":[{{"name":"dash","sha256":"{}","scopes":["subscribe","publish"],"topics":["private/**"]}}]}}"#,
        hookcast::auth::hex(&hookcast::auth::token_hash("dash-token"))
    );
    let d = Daemon::start(&cfg);
    assert_eq!(status_of(&connect(&d, "/ws?topics=private/x", &[]).unwrap_err()), 401);
    assert_eq!(d.request("POST", "/api/ticket", &[], b"").status, 401);
    let r = d.request("POST", "/api/ticket", &[("Authorization", "Bearer dash-token")], b"");
    assert_eq!(r.status, 200);
    let ticket = r.json()["ticket"].as_str().unwrap().to_string();
    assert_eq!(r.json()["expires_in"], 30);
    let mut ws = connect(&d, &format!("/ws?topics=private/x&ticket={ticket}"), &[]).unwrap();
    let id = d.publish_with("private/x", "s", &[("Authorization", "Bearer dash-token")]);
    assert_eq!(next_json(&mut ws)["id"], id);
    // The ticket carries the token's scopes for later ops too.
    send(&mut ws, json!({"op": "publish", "topic": "private/y", "data": "z"}));
    assert_eq!(next_json(&mut ws)["type"], "ack");
    assert_eq!(status_of(&connect(&d, &format!("/ws?topics=private/x&ticket={ticket}"), &[]).unwrap_err()), 401);
    // Bearer header and cookie work as well.
    connect(&d, "/ws?topics=private/x", &[("Authorization", "Bearer dash-token")]).unwrap();
    connect(&d, "/ws?topics=private/x", &[("Cookie", "hookcast_token=dash-token")]).unwrap();
}

/// A session keeps the token it authenticated with across a reload. It used to keep the
/// token's index in the list: a reload that put another token at that index handed the session
/// that token's rights, and one that removed the token left the session with them.
#[test]
fn a_session_keeps_its_own_token_across_a_reload_that_reorders_or_removes_tokens() {
    let tok = |name: &str, scopes: &str, topics: &str| {
        format!(
            r#"{{"name":"{name}","sha256":"{}","scopes":{scopes},"topics":{topics}}}"#,
            hookcast::auth::hex(&hookcast::auth::token_hash(&format!("{name}-token")))
        )
    };
    let admin = tok("admin", r#"["subscribe","publish"]"#, r#"["**"]"#);
    let reader = tok("reader", r#"["subscribe"]"#, r#"["open/**"]"#);
    let d = Daemon::start(&format!(r#"{{"tokens":[{admin},{reader}]}}"#));
    let cfg = d.dir.0.join("hookcast.json");
    let reload = |tokens: String, n: usize| {
        std::fs::write(&cfg, format!(r#"{{"tokens":[{tokens}]}}"#)).unwrap();
        signal(&d.child, "HUP");
        assert!(eventually(Duration::from_secs(5), || d.log_text().matches("configuration reloaded").count() == n));
    };
    let mut ws = connect(&d, "/ws?topics=open/a", &[("Authorization", "Bearer reader-token")]).unwrap();
    let r = d.request("POST", "/api/ticket", &[("Authorization", "Bearer reader-token")], b"");
    let ticket = r.json()["ticket"].as_str().unwrap().to_string();
    let secret = json!({"op": "subscribe", "topics": ["secret"]});
    send(&mut ws, secret.clone());
    assert_eq!(next_json(&mut ws)["type"], "error", "the reader may not read secret");

    // The reader's index now names the admin token.
    reload(format!("{reader},{admin}"), 1);
    send(&mut ws, secret.clone());
    assert_eq!(next_json(&mut ws)["type"], "error", "still the reader after the reorder");
    send(&mut ws, json!({"op": "subscribe", "topics": ["open/b"]}));
    assert_eq!(next_json(&mut ws)["type"], "ack", "and still allowed what the reader may do");
    let mut ticketed = connect(&d, &format!("/ws?topics=open/a&ticket={ticket}"), &[]).unwrap();
    send(&mut ticketed, secret.clone());
    assert_eq!(next_json(&mut ticketed)["type"], "error", "a ticket issued before the reorder is still the reader's");

    // The reader's token is revoked: its sessions end (the next test looks at that closely).
    reload(admin.clone(), 2);
    assert_closed_for_policy(&mut ws);
    assert_closed_for_policy(&mut ticketed);
}

/// Reads until a close frame, which must be 1008 (policy: no longer allowed).
fn assert_closed_for_policy(ws: &mut Ws) {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(f.code, CloseCode::Policy, "1008");
                assert!(f.reason.contains("no longer allowed to subscribe"), "{}", f.reason);
                return;
            }
            Ok(Message::Text(_) | Message::Ping(_) | Message::Pong(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// A reload that revokes a token (or narrows what it may read) cuts the streams opened with
/// it, over both transports; the others keep streaming.
#[test]
fn a_reload_that_revokes_a_token_cuts_its_streams_and_only_those() {
    let tok = |name: &str, topics: &str| {
        format!(
            r#"{{"name":"{name}","sha256":"{}","scopes":["subscribe","publish"],"topics":{topics}}}"#,
            hookcast::auth::hex(&hookcast::auth::token_hash(&format!("{name}-token")))
        )
    };
    let (keep, gone) = (tok("keep", r#"["**"]"#), tok("gone", r#"["open/**"]"#));
    let d = Daemon::start(&format!(r#"{{"tokens":[{gone},{keep}],"sse":{{"keepalive_ms":60000}}}}"#));
    let bearer = |name: &str| format!("Bearer {name}-token");
    let (mut sse_gone, _) = sse(&d, "/events?topics=open/a", &[("Authorization", &bearer("gone"))]);
    let (mut sse_keep, _) = sse(&d, "/events?topics=open/a", &[("Authorization", &bearer("keep"))]);
    let mut ws_gone = connect(&d, "/ws?topics=open/a", &[("Authorization", &bearer("gone"))]).unwrap();
    let mut ws_keep = connect(&d, "/ws?topics=open/a", &[("Authorization", &bearer("keep"))]).unwrap();
    let before = d.publish_with("open/a", "before", &[("Authorization", &bearer("keep"))]);
    assert_eq!(next_json(&mut ws_gone)["id"], before);

    std::fs::write(d.dir.0.join("hookcast.json"), format!(r#"{{"tokens":[{keep}],"sse":{{"keepalive_ms":60000}}}}"#))
        .unwrap();
    signal(&d.child, "HUP");
    assert!(eventually(Duration::from_secs(5), || d.log_text().contains("configuration reloaded")));
    let got = read_until(&mut sse_gone, "no longer allowed");
    assert!(got.contains("data: before\n"), "{got}");
    assert!(closed_within(&mut sse_gone, Duration::from_secs(2)), "the SSE stream of the revoked token ends");
    assert_closed_for_policy(&mut ws_gone);
    let after = d.publish_with("open/a", "after", &[("Authorization", &bearer("keep"))]);
    let got = read_until(&mut sse_keep, "data: after\n");
    assert!(got.contains("data: before\n"), "{got}");
    assert_eq!(next_json(&mut ws_keep)["id"], before);
    assert_eq!(next_json(&mut ws_keep)["id"], after);
    assert!(d.log_text().contains("2 subscriber(s) no longer allowed"), "{}", d.log_text());
}

#[test]
fn handshake_checks() {
    let d = Daemon::start(
        r#"{"ws":{"allowed_origins":["https://dash.example"]},"public":[{"topics":["**"],"scopes":["subscribe"]}]}"#,
    );
    // Cross-site WebSocket hijacking: a foreign page is refused, the same host and a listed one are not.
    assert_eq!(status_of(&connect(&d, "/ws", &[("Origin", "https://evil.example")]).unwrap_err()), 403);
    let same = format!("http://{}", d.addr);
    connect(&d, "/ws", &[("Origin", &same)]).unwrap();
    connect(&d, "/ws", &[("Origin", "https://dash.example")]).unwrap();
    // Subprotocol negotiation.
    let mut req = format!("ws://{}/ws", d.addr).into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", "other, hookcast.v1".parse().unwrap());
    let (_, resp) = tungstenite::client(req, d.connect()).unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "hookcast.v1");
    // Raw: wrong version → 426 naming 13; no upgrade → 426; bad key → 400.
    let base = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n";
    let r = d.raw(
        format!("{base}Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 426);
    assert_eq!(r.header("sec-websocket-version"), Some("13"));
    assert_eq!(d.get("/ws").status, 426);
    let r = d.raw(format!("{base}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n\r\n").as_bytes());
    assert_eq!(r.status, 400);
    // The RFC's own example key gets the RFC's accept value.
    let mut s = d.connect();
    s.write_all(
        format!("{base}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 101);
    assert_eq!(r.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
}

#[test]
fn protocol_errors_close_with_the_right_code() {
    let d = Daemon::start(r#"{"ws":{"max_message_bytes":1000},"public":[{"topics":["**"],"scopes":["subscribe"]}]}"#);
    let cases: [(&[u8], u16); 4] = [
        (&[0x81, 0x02, b'h', b'i'], 1002),             // unmasked
        (&[0x83, 0x80, 0, 0, 0, 0], 1002),             // reserved opcode
        (&[0x81, 0x82, 0, 0, 0, 0, 0xC0, 0xAF], 1007), // invalid UTF-8
        (&[0x82, 0xFE, 0x03, 0xE9, 0, 0, 0, 0], 1009), // 1001 bytes > 1000
    ];
    for (frame, code) in cases {
        let mut ws = connect(&d, "/ws", &[]).unwrap();
        ws.get_mut().write_all(frame).unwrap();
        let mut got = Vec::new();
        let _ = ws.get_mut().read_to_end(&mut got);
        assert!(got.len() >= 4 && got[0] == 0x88, "close frame expected, got {got:?}");
        assert_eq!(u16::from_be_bytes([got[2], got[3]]), code, "{frame:?}");
    }
}

#[test]
fn missed_pongs_close_and_answered_pings_keep_it_open() {
    let d = Daemon::start(
        r#"{"ws":{"ping_interval_ms":100},"public":[{"topics":["**"],"scopes":["subscribe","publish"]}]}"#,
    );
    // A client that never reads cannot answer pings: gone after two missed pongs.
    let mut mute = connect(&d, "/ws", &[]).unwrap();
    // Pacing: several ping intervals pass unanswered.
    std::thread::sleep(Duration::from_millis(600));
    let mut got = Vec::new();
    mute.get_mut().set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let ended = mute.get_mut().read_to_end(&mut got);
    assert!(ended.is_ok(), "the server closed the connection: {ended:?}");
    assert!(got.iter().filter(|&&b| b == 0x89).count() >= 2, "pings were sent: {got:?}");
    // tungstenite answers pings while it reads: still open after many intervals.
    let mut ws = connect(&d, "/ws?topics=k", &[]).unwrap();
    ws.get_mut().set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let t0 = std::time::Instant::now();
    while t0.elapsed() < Duration::from_millis(800) {
        match ws.read() {
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("closed although pongs were sent: {e}"),
        }
    }
    ws.get_mut().set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let id = d.publish("k", "still here");
    assert_eq!(next_json(&mut ws)["id"], id);
}

#[test]
fn slow_websocket_consumer_is_cut_loose() {
    let d = Daemon::start(
        r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}],
            "limits":{"max_queued_bytes":65536,"max_body_bytes":70000}}"#,
    );
    let _lazy = connect(&d, "/ws?topics=flood", &[]).unwrap();
    let chunk = "y".repeat(60_000);
    let cut = (0..400).any(|_| {
        d.publish("flood", &chunk);
        d.metric("hookcast_slow_consumer_disconnects_total{transport=\"ws\"}") >= 1.0
    });
    assert!(cut);
}

#[test]
fn sigterm_sends_going_away() {
    let mut d = Daemon::start(OPEN);
    let mut ws = connect(&d, "/ws", &[]).unwrap();
    let (status, took) = d.terminate();
    assert!(status.success());
    // A liveness bound (shutdown does not wait for clients to close), not a performance
    // target: those are what benches/ and bench/ measure.
    assert!(took < Duration::from_secs(1));
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => {
                assert_eq!(f.code, CloseCode::Away);
                break;
            }
            Ok(Message::Ping(_)) => {}
            other => panic!("expected close 1001, got {other:?}"),
        }
    }
}

/// Issue 12 item 12, the WebSocket side: the `publish` op's JSON data has the same nesting
/// limit as `POST /publish`, so no wire format of the event is deeper than a client can read.
#[test]
fn publish_op_data_nesting_is_limited() {
    let d = Daemon::start(OPEN);
    let mut ws = connect(&d, "/ws", &[]).unwrap();
    let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    ws.send(Message::text(format!(r#"{{"op":"publish","topic":"deep","data":{}}}"#, nest(125)))).unwrap();
    let v = next_json(&mut ws);
    assert_eq!(v["type"], "error", "{v}");
    assert!(v["error"].as_str().unwrap().contains("124"), "{v}");
    ws.send(Message::text(format!(r#"{{"op":"publish","topic":"deep","data":{}}}"#, nest(124)))).unwrap();
    assert_eq!(next_json(&mut ws)["type"], "ack");
}

/// Issue 12 item 5, the WebSocket side: messages wait in the input buffer while the output is
/// over its limit (an echo peer that sends faster than it reads). When the client then reads,
/// the server must go on with them although nothing new arrives; it only flushed, and the rest
/// waited for the next ping's pong.
#[test]
fn echo_peer_that_sends_before_it_reads_gets_every_echo() {
    let d = Daemon::start(r#"{"ws":{"echo":true,"ping_interval_ms":600000},"limits":{"max_queued_bytes":65536}}"#);
    let ws = connect(&d, "/ws/echo", &[]).unwrap();
    let stream = ws.get_ref().try_clone().unwrap();
    let role = tungstenite::protocol::Role::Client;
    let mut writer = WebSocket::from_raw_socket(stream.try_clone().unwrap(), role, None);
    let mut reader = WebSocket::from_raw_socket(stream, role, None);
    const N: usize = 200;
    let msg = "e".repeat(16 * 1024);
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = sent.clone();
    let t = std::thread::spawn(move || {
        for i in 0..N {
            writer.send(Message::text(format!("{i:04}{msg}"))).unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        writer
    });
    // Read nothing until the client has sent everything or is blocked by full buffers.
    eventually(Duration::from_secs(2), || sent.load(std::sync::atomic::Ordering::SeqCst));
    reader.get_mut().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for i in 0..N {
        match reader.read() {
            Ok(Message::Text(t)) => assert!(t.starts_with(&format!("{i:04}")), "echo {i} out of order"),
            other => panic!("echo {i} of {N}: {other:?}"),
        }
    }
    let _writer = t.join().unwrap();
}
