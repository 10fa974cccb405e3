//! Subscription filters (`type`, `where`, `q`): SSE with the npm `eventsource` client, WebSocket
//! with tungstenite (a filter changed mid-stream), resume, long poll, and refusals.

use crate::util::ws_json as next_json;
use crate::util::*;
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

type Ws = WebSocket<TcpStream>;

const OPEN: &str = r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}]}"#;

/// Publishes `data` as JSON event `kind` on `topic`; returns its id.
fn publish_json(d: &Daemon, topic: &str, kind: &str, data: Value) -> u64 {
    d.publish_with(&format!("{topic}?event={kind}"), &data.to_string(), &[("Content-Type", "application/json")])
}

/// The mixed sequence the SSE tests publish: which entries `type=line,alert&where=level:error&q=timeout`
/// passes is the second element.
fn mixed() -> Vec<(&'static str, Value, bool)> {
    vec![
        ("line", json!({"level": "error", "msg": "upstream Timeout"}), true),
        ("line", json!({"level": "warn", "msg": "timeout"}), false),
        ("other", json!({"level": "error", "msg": "timeout"}), false),
        ("line", json!({"level": "error", "msg": "refused"}), false),
        ("line", json!({"level": ["error"], "msg": "timeout"}), false),
        ("alert", json!({"level": "error", "msg": "read TIMEOUT", "n": 2}), true),
    ]
}

const FILTER_QUERY: &str = "type=line,alert&where=level:error&q=timeout";

fn es_events(rx: &std::sync::mpsc::Receiver<Value>, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    while got.len() < n {
        let v = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("no event in time; got {got:?}"));
        if v.get("data").is_some() {
            got.push(v);
        }
    }
    got
}

fn wait_open(rx: &std::sync::mpsc::Receiver<Value>) {
    loop {
        let v = rx.recv_timeout(Duration::from_secs(20)).expect("the EventSource opens");
        if v["open"] == true {
            return;
        }
    }
}

#[test]
fn sse_subscriber_gets_exactly_the_matching_events() {
    let d = Daemon::start(OPEN);
    let url = format!("{}/events?topics=logs&{FILTER_QUERY}", d.url());
    let (mut child, rx) =
        spawn_es_client(&url, &["--count", "2", "--timeout-ms", "30000", "--events", "line,alert,other"]);
    wait_open(&rx);
    let mut want = Vec::new();
    for (kind, data, passes) in mixed() {
        let id = publish_json(&d, "logs", kind, data.clone());
        if passes {
            want.push((id.to_string(), kind, data));
        }
    }
    // The last event published passes, so anything let through wrongly would come before it.
    let got = es_events(&rx, 2);
    for (g, (id, kind, data)) in got.iter().zip(&want) {
        assert_eq!(g["id"], *id, "{got:?}");
        assert_eq!(g["type"], *kind, "{got:?}");
        assert_eq!(serde_json::from_str::<Value>(g["data"].as_str().unwrap()).unwrap(), *data);
    }
    assert!(child.wait().unwrap().success());
}

#[test]
fn resume_replays_only_what_the_filter_passes() {
    let d = Daemon::start(OPEN);
    let before = d.publish("logs", "before");
    let mut want = Vec::new();
    for (kind, data, passes) in mixed() {
        let id = publish_json(&d, "logs", kind, data);
        if passes {
            want.push(id.to_string());
        }
    }
    let url = format!("{}/events?topics=logs&{FILTER_QUERY}", d.url());
    let args = ["--count", "2", "--timeout-ms", "30000", "--events", "line,alert,other", "--last-event-id"];
    let before = before.to_string();
    let mut args: Vec<&str> = args.to_vec();
    args.push(&before);
    let (mut child, rx) = spawn_es_client(&url, &args);
    let got: Vec<Value> = es_events(&rx, 2).into_iter().map(|v| v["id"].clone()).collect();
    assert_eq!(got, want);
    assert!(child.wait().unwrap().success());
}

fn connect(d: &Daemon, path: &str) -> Result<Ws, Box<tungstenite::Error>> {
    let req = format!("ws://{}{path}", d.addr).into_client_request().unwrap();
    tungstenite::client(req, d.connect()).map(|(ws, _)| ws).map_err(|e| match e {
        tungstenite::HandshakeError::Failure(e) => Box::new(e),
        tungstenite::HandshakeError::Interrupted(_) => panic!("blocking handshake interrupted"),
    })
}

fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::text(v.to_string())).unwrap();
}

#[test]
fn websocket_changes_its_filter_mid_stream() {
    let d = Daemon::start(OPEN);
    let mut ws = connect(&d, "/ws?topics=t&type=a").unwrap();
    ws.get_mut().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut seen = Vec::new();
    let mut note = |v: Value| {
        if v.get("type").is_some() {
            seen.push(json!({"ack": v["op"], "filter": v["filter"], "type": v["type"]}));
        } else {
            seen.push(json!([v["event"], v["data"]]));
        }
    };
    publish_json(&d, "t", "a", json!({"n": 1}));
    publish_json(&d, "t", "b", json!({"n": 1}));
    note(next_json(&mut ws));
    send(&mut ws, json!({"op": "filter", "filter": {"type": "b"}}));
    note(next_json(&mut ws));
    publish_json(&d, "t", "a", json!({"n": 2}));
    publish_json(&d, "t", "b", json!({"n": 2}));
    note(next_json(&mut ws));
    send(&mut ws, json!({"op": "filter", "filter": {"where": {"n": 3}, "q": "X"}}));
    note(next_json(&mut ws));
    publish_json(&d, "t", "b", json!({"n": 2, "s": "x"}));
    publish_json(&d, "t", "a", json!({"n": 3, "s": "y"}));
    publish_json(&d, "t", "a", json!({"n": 3, "s": "x"}));
    note(next_json(&mut ws));
    send(&mut ws, json!({"op": "filter", "filter": null}));
    note(next_json(&mut ws));
    publish_json(&d, "t", "c", json!({"n": 4}));
    note(next_json(&mut ws));
    assert_eq!(
        seen,
        vec![
            json!(["a", {"n": 1}]),
            json!({"ack": "filter", "filter": {"type": ["b"]}, "type": "ack"}),
            json!(["b", {"n": 2}]),
            json!({"ack": "filter", "filter": {"where": {"n": 3}, "q": "x"}, "type": "ack"}),
            json!(["a", {"n": 3, "s": "x"}]),
            json!({"ack": "filter", "filter": null, "type": "ack"}),
            json!(["c", {"n": 4}]),
        ]
    );
    // A bad filter is an error naming the problem; the stream and its filter stay.
    send(&mut ws, json!({"op": "filter", "filter": {"where": {"a..b": 1}}}));
    let e = next_json(&mut ws);
    assert_eq!(e["type"], "error");
    assert_eq!(e["op"], "filter");
    assert!(e["error"].as_str().unwrap().contains("empty segment"), "{e}");
    send(&mut ws, json!({"op": "ping"}));
    assert_eq!(next_json(&mut ws)["type"], "pong");
}

#[test]
fn long_poll_answers_only_matching_events() {
    let d = Daemon::start(OPEN);
    let first = publish_json(&d, "t", "a", json!({"n": 1}));
    let b = publish_json(&d, "t", "b", json!({"n": 1}));
    let last = publish_json(&d, "t", "a", json!({"n": 2}));
    let r = d.get(&format!("/poll?topics=t&since={}&type=b", first - 1));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let ids: Vec<u64> = v["events"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![b]);
    // Events the filter passed over are behind the cursor too.
    assert_eq!(v["next"], last);

    // A held poll is not answered by an event the filter refuses, only by one it passes.
    let mut s = d.connect();
    let req = format!(
        "GET /poll?topics=t&since={last}&where=n:5&timeout=20 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    publish_json(&d, "t", "a", json!({"n": 4}));
    std::thread::sleep(Duration::from_millis(200));
    let five = publish_json(&d, "t", "a", json!({"n": 5}));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = read_response(&mut s).expect("the poll's answer");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let ids: Vec<u64> = v["events"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![five], "{v}");
}

#[test]
fn bad_filters_get_a_400_naming_the_problem() {
    let d = Daemon::start(OPEN);
    let nine: String = (0..9).map(|i| format!("&where=f{i}:v")).collect();
    for (query, needle) in [
        ("where=level", "path:value"),
        ("type=,", "at least one event type"),
        ("where=a..b:1", "empty segment"),
        (&format!("q={}", "x".repeat(300)), "longer than 256"),
        (&nine[1..], "at most 8 conditions"),
    ] {
        for path in ["/events", "/poll"] {
            let r = d.get(&format!("{path}?topics=t&{query}"));
            assert_eq!(r.status, 400, "{path}?{query}: {}", r.text());
            let e = r.json()["error"].as_str().unwrap().to_string();
            assert!(e.contains(needle), "{path}?{query}: {e}");
        }
        let err = connect(&d, &format!("/ws?topics=t&{query}")).unwrap_err();
        match *err {
            tungstenite::Error::Http(resp) => assert_eq!(resp.status().as_u16(), 400),
            other => panic!("expected a 400, got {other:?}"),
        }
    }
}
