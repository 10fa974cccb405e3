//! An independent, WHATWG-compliant EventSource client (the npm `eventsource` package, run by
//! `tests/js/es_client.mjs`) against the real daemon: it must reconnect by itself after a cut
//! and resume with `Last-Event-ID`, losing nothing and getting nothing twice.

use crate::util::*;
use std::process::Child;
use std::sync::mpsc::Receiver;
use std::time::Duration;

struct EsClient {
    child: Child,
    lines: Receiver<serde_json::Value>,
}

impl EsClient {
    fn start(url: &str, count: usize) -> EsClient {
        let count = count.to_string();
        let (child, rx) =
            spawn_es_client(url, &["--count", &count, "--timeout-ms", "30000", "--events", "reset,deploy"]);
        EsClient { child, lines: rx }
    }

    /// The next line that satisfies `pred`, skipping others into `skipped`.
    fn next_where(
        &self,
        skipped: &mut Vec<serde_json::Value>,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        loop {
            let v = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("EventSource client said nothing useful in time; saw {skipped:?}"));

            if pred(&v) {
                return v;
            }
            skipped.push(v);
        }
    }

    fn event(&self, skipped: &mut Vec<serde_json::Value>) -> serde_json::Value {
        self.next_where(skipped, |v| v.get("data").is_some())
    }
}

impl Drop for EsClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn eventsource_reconnects_and_resumes_after_a_cut() {
    let d = Daemon::start(r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}],"sse":{"retry_ms":200}}"#);
    let relay = Relay::start(d.addr);
    let es = EsClient::start(&format!("http://{}/events?topics=es", relay.addr), 6);
    let mut other = Vec::new();
    es.next_where(&mut other, |v| v["open"] == true);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(d.publish("es", &format!("e{i}")));
    }
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(es.event(&mut other));
    }
    relay.cut();
    // Published while the client is away: it must get these through Last-Event-ID.
    for i in 3..5 {
        ids.push(d.publish("es", &format!("e{i}")));
    }
    es.next_where(&mut other, |v| v["open"] == true);
    for _ in 0..2 {
        got.push(es.event(&mut other));
    }
    let r = d.request("POST", "/publish/es?event=deploy", &[], b"e5");
    ids.push(r.json()["id"].as_u64().unwrap());
    got.push(es.event(&mut other));
    let datas: Vec<&str> = got.iter().map(|v| v["data"].as_str().unwrap()).collect();
    assert_eq!(datas, ["e0", "e1", "e2", "e3", "e4", "e5"]);
    let got_ids: Vec<u64> = got.iter().map(|v| v["id"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(got_ids, ids);
    assert_eq!(got[5]["type"], "deploy");
    assert!(other.iter().any(|v| v["error"] == true), "the cut was noticed: {other:?}");
}

#[test]
fn eventsource_is_told_about_a_gap_after_a_restart() {
    // Without a journal a restart loses history: a resuming client must hear `reset`.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let cfg = r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}],"sse":{"retry_ms":200}}"#;
    let mut d = Daemon::start_args(Some(cfg), &["--listen", &listen]);
    let es = EsClient::start(&format!("http://{listen}/events?topics=rs"), 3);
    let mut other = Vec::new();
    es.next_where(&mut other, |v| v["open"] == true);
    d.publish("rs", "before");
    assert_eq!(es.event(&mut other)["data"], "before");
    d.terminate();
    drop(d);
    let d = Daemon::start_args(Some(cfg), &["--listen", &listen]);
    let reset = es.event(&mut other);
    assert_eq!(reset["type"], "reset", "{reset}");
    let body: serde_json::Value = serde_json::from_str(reset["data"].as_str().unwrap()).unwrap();
    assert_eq!(body["reason"], "history_gap");
    d.publish("rs", "after");
    assert_eq!(es.event(&mut other)["data"], "after");
}

#[test]
fn eventsource_that_received_nothing_misses_nothing_after_a_cut() {
    // Regression: a stream used to start with `retry:` only, so a client that had received no
    // event reconnected without Last-Event-ID and silently lost what was published meanwhile.
    let d = Daemon::start(r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}],"sse":{"retry_ms":200}}"#);
    let relay = Relay::start(d.addr);
    let es = EsClient::start(&format!("http://{}/events?topics=quiet", relay.addr), 2);
    let mut other = Vec::new();
    es.next_where(&mut other, |v| v["open"] == true);
    // Published before the cut on another topic: the stream's position must still be current.
    d.publish("elsewhere", "x");
    relay.hold();
    relay.cut();
    let missed = d.publish("quiet", "while-away");
    relay.release();
    es.next_where(&mut other, |v| v["open"] == true);
    let got = es.event(&mut other);
    assert_eq!(got["data"], "while-away", "{got} (other lines: {other:?})");
    assert_eq!(got["id"].as_str().unwrap().parse::<u64>().unwrap(), missed);
    let live = d.publish("quiet", "live");
    let got = es.event(&mut other);
    assert_eq!(
        (got["data"].as_str(), got["id"].as_str().map(|s| s.parse::<u64>().unwrap())),
        (Some("live"), Some(live))
    );
}
