//! Retained state (issue 17): a publish with `retain` becomes its topic's state; a subscriber
//! asking with `state=1` gets the states first, then the live stream, with nothing lost or
//! doubled between the two, also while publishes race its connect. Clients: the npm
//! `eventsource` package and tungstenite, besides raw HTTP.

use crate::util::ws_json as next_json;
use crate::util::{spawn_es_client, ws, Daemon, TempDir};
use serde_json::{json, Value};
use std::net::TcpStream;
use std::time::Duration;
use tungstenite::Message;

const OPEN: &str = r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}]}"#;
const ADMIN: &str = "retain-admin-token";

fn retain(d: &Daemon, topic: &str, data: &str) -> u64 {
    d.publish_with(&format!("{topic}?retain=1"), data, &[])
}

/// The values a round's subscriber saw must be exactly `k, k+1, …, last` for some `k`: the
/// state at connect (or the first live one), then every later publish once, in order.
fn assert_run(round: usize, seen: &[(u64, u64)], last: u64) {
    let first = seen.first().unwrap_or_else(|| panic!("round {round}: nothing received")).1;
    let want: Vec<u64> = (first..=last).collect();
    let got: Vec<u64> = seen.iter().map(|&(_, v)| v).collect();
    assert_eq!(got, want, "round {round}: values not a gap-free run ending at {last}");
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "round {round}: ids not increasing: {seen:?}");
}

const LAST: u64 = 20;

/// Publishes 1..=LAST retained on `topic`, a little apart, from another thread.
fn racing_publisher(d: &Daemon, topic: String) -> std::thread::JoinHandle<()> {
    let addr = d.addr;
    std::thread::spawn(move || {
        for v in 1..=LAST {
            let mut s = TcpStream::connect(addr).unwrap();
            let body = v.to_string();
            let req = format!(
                "POST /publish/{topic}?retain=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
            let r = crate::util::read_response(&mut s).expect("an answer");
            assert_eq!(r.status, 202);
            if v % 4 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    })
}

#[test]
fn ws_state_then_live_while_publishes_race_the_connect() {
    let d = Daemon::start(OPEN);
    for round in 0..30 {
        let topic = format!("race/{round}");
        retain(&d, &topic, "0");
        let publisher = racing_publisher(&d, topic.clone());
        // Connect after 0..~10 publishes of this round, varying with the round.
        std::thread::sleep(Duration::from_micros((round as u64 % 6) * 300));
        let mut w = ws(&d, &format!("/ws?topics={topic}&state=1"));
        let mut seen = Vec::new();
        loop {
            let ev = next_json(&mut w);
            assert_eq!(ev["topic"], topic.as_str(), "round {round}: {ev}");
            let v = ev["data"].as_str().unwrap().parse::<u64>().unwrap();
            seen.push((ev["id"].as_u64().unwrap(), v));
            if v == LAST {
                break;
            }
        }
        publisher.join().unwrap();
        assert_run(round, &seen, LAST);
    }
}

#[test]
fn eventsource_state_then_live_while_publishes_race_the_connect() {
    let d = Daemon::start(OPEN);
    for round in 0..8 {
        let topic = format!("esrace/{round}");
        retain(&d, &topic, "0");
        let publisher = racing_publisher(&d, topic.clone());
        let url = format!("{}/events?topics={topic}&state=1", d.url());
        let (mut child, rx) = spawn_es_client(&url, &["--count", "100", "--timeout-ms", "5000"]);
        let mut seen = Vec::new();
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
            if line.get("type").is_none() {
                continue;
            }
            let v = line["data"].as_str().unwrap().parse::<u64>().unwrap();
            seen.push((line["id"].as_str().unwrap().parse::<u64>().unwrap(), v));
            if v == LAST {
                break;
            }
        }
        child.kill().ok();
        child.wait().ok();
        publisher.join().unwrap();
        assert_run(round, &seen, LAST);
    }
}

#[test]
fn an_empty_body_clears_and_the_topic_endpoint_answers() {
    let d = Daemon::start(OPEN);
    assert_eq!(d.get("/api/topics/bell").status, 404);
    let id = d.publish_with("bell?retain=1&event=unread", r#"{"unread":3}"#, &[("Content-Type", "application/json")]);
    let r = d.get("/api/topics/bell");
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!((v["topic"].clone(), v["id"].as_u64(), v["type"].clone()), (json!("bell"), Some(id), json!("unread")));
    assert_eq!(v["data"], json!({"unread": 3}));
    assert!(v["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{v}");
    // A publish without retain leaves the state alone.
    d.publish("bell", "not state");
    assert_eq!(d.get("/api/topics/bell").json()["id"].as_u64(), Some(id));
    retain(&d, "text", "plain");
    assert_eq!(d.get("/api/topics/text").json()["data"], "plain");
    // An empty retained body clears: no state by the endpoint nor on connect.
    retain(&d, "bell", "");
    assert_eq!(d.get("/api/topics/bell").status, 404);
    let mut w = ws(&d, "/ws?topics=bell,text&state=1");
    assert_eq!(next_json(&mut w)["data"], "plain", "only the state that is left");
    let live = d.publish("bell", "live");
    let ev = next_json(&mut w);
    assert_eq!((ev["id"].as_u64(), ev["data"].clone()), (Some(live), json!("live")));
    assert_eq!(d.get("/api/topics/bad%20topic").status, 400);
    assert_eq!(d.metric("hookcast_retained_topics"), 1.0, "text only");
    assert!(d.metric("hookcast_retained_bytes") >= 5.0);
}

#[test]
fn a_topic_the_subscriber_may_not_see_is_not_sent() {
    let cfg = json!({
        "public": [{"topics": ["open/**"], "scopes": ["subscribe"]}],
        "tokens": [{"name": "ops", "sha256": hookcast::auth::hex(&hookcast::auth::token_hash(ADMIN)), "scopes": ["subscribe", "publish"], "topics": ["**"]}],
    });
    let d = Daemon::start(&cfg.to_string());
    let auth = format!("Bearer {ADMIN}");
    let h = [("Authorization", auth.as_str())];
    d.publish_with("open/a?retain=1", "a", &h);
    d.publish_with("secret/b?retain=1", "b", &h);
    // Anonymous: the open state only; the secret one is refused by the endpoint too.
    assert_eq!(d.get("/api/topics/open/a").status, 200);
    assert!(matches!(d.get("/api/topics/secret/b").status, 401 | 403));
    let r = d.get("/poll?topics=open/**&state=1&timeout=1");
    let datas: Vec<Value> = r.json()["events"].as_array().unwrap().iter().map(|e| e["data"].clone()).collect();
    assert_eq!(datas, [json!("a")]);
    let r = d.request("GET", "/api/topics/secret/b", &h, b"");
    assert_eq!(r.json()["data"], "b", "the admin may");
}

#[test]
fn long_poll_with_state_answers_at_once_then_waits_from_the_head() {
    let d = Daemon::start(OPEN);
    let a = retain(&d, "lp/a", "A");
    let b = retain(&d, "lp/b", "B");
    let head = d.publish("lp/c", "not retained");
    let r = d.get("/poll?topics=lp/*&state=1&timeout=5").json();
    let ids: Vec<u64> = r["events"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [a, b], "states in id order, nothing else");
    assert_eq!(r["next"].as_u64(), Some(head), "the cursor is the head, not a state's id");
    // From `next` on only live events come; with state again, the states up to `since` too.
    let r = d.get(&format!("/poll?topics=lp/*&since={head}&timeout=1")).json();
    assert_eq!(r["events"], json!([]));
    let r = d.get(&format!("/poll?topics=lp/*&since={a}&state=1&timeout=1")).json();
    let ids: Vec<u64> = r["events"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [a, b, head], "state through the cursor, then what follows it, once each");
}

#[test]
fn ws_subscribe_op_with_state_and_a_retaining_publish_op() {
    let d = Daemon::start(OPEN);
    let mut w = ws(&d, "/ws");
    w.send(Message::Text(r#"{"op":"publish","topic":"op/x","data":{"n":1},"retain":true}"#.into())).unwrap();
    let ack = next_json(&mut w);
    assert_eq!(ack["op"], "publish");
    let x = ack["id"].as_u64().unwrap();
    assert_eq!(d.get("/api/topics/op/x").json()["data"], json!({"n": 1}));
    w.send(Message::Text(r#"{"op":"subscribe","topics":["op/*"],"state":true}"#.into())).unwrap();
    assert_eq!(next_json(&mut w)["op"], "subscribe");
    let ev = next_json(&mut w);
    assert_eq!((ev["id"].as_u64(), ev["data"].clone()), (Some(x), json!({"n": 1})));
    let live = d.publish("op/y", "live");
    assert_eq!(next_json(&mut w)["id"].as_u64(), Some(live), "then live, without the state again");
    w.send(Message::Text(r#"{"op":"subscribe","topics":["op/*"],"state":"yes"}"#.into())).unwrap();
    assert_eq!(next_json(&mut w)["type"], "error");
}

#[test]
fn the_oldest_state_goes_past_max_topics() {
    let d =
        Daemon::start(r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}],"retain":{"max_topics":2}}"#);
    retain(&d, "b/1", "1");
    retain(&d, "b/2", "2");
    retain(&d, "b/1", "1 again");
    retain(&d, "b/3", "3");
    assert_eq!(d.get("/api/topics/b/2").status, 404, "the topic whose state is oldest was dropped");
    assert_eq!(d.get("/api/topics/b/1").json()["data"], "1 again");
    assert_eq!(d.get("/api/topics/b/3").json()["data"], "3");
}

#[test]
fn retained_state_survives_a_restart_with_the_journal() {
    let state = TempDir::new("retain-journal");
    let dir = state.0.to_str().unwrap().to_string();
    let start = || Daemon::start_args(Some(OPEN), &["--state-dir", &dir]);
    let mut d = start();
    let kept = retain(&d, "dash/build", "green");
    retain(&d, "dash/gone", "soon cleared");
    retain(&d, "dash/gone", "");
    d.publish("dash/build", "not state");
    d.terminate();
    let d = start();
    let r = d.get("/api/topics/dash/build").json();
    assert_eq!((r["id"].as_u64(), r["data"].clone()), (Some(kept), json!("green")));
    assert_eq!(d.get("/api/topics/dash/gone").status, 404, "the clear was journalled too");
    let (mut child, rx) = spawn_es_client(&format!("{}/events?topics=dash/*&state=1", d.url()), &["--count", "1"]);
    let line = loop {
        let l = rx.recv_timeout(Duration::from_secs(10)).expect("the state");
        if l.get("type").is_some() {
            break l;
        }
    };
    assert_eq!((line["id"].as_str(), line["data"].as_str()), (Some(kept.to_string().as_str()), Some("green")));
    child.wait().ok();
}

#[test]
fn the_cli_publishes_retained_state() {
    let d = Daemon::start(OPEN);
    let bin = std::path::Path::new(crate::util::BIN);
    let url = d.url();
    let (code, out, err) =
        crate::util::run_to_end(bin, &["publish", "--url", &url, "--retain", "--json", "cli/t", r#"{"ok":true}"#], &[]);
    assert_eq!(code, 0, "{err}");
    let r = d.get("/api/topics/cli/t").json();
    assert_eq!((r["id"].as_u64(), r["data"].clone()), (out.trim().parse().ok(), json!({"ok": true})));
    let (code, _, err) = crate::util::run_to_end(bin, &["publish", "--url", &url, "--retain", "cli/t", ""], &[]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(d.get("/api/topics/cli/t").status, 404, "an empty DATA clears");
}

#[test]
fn a_filter_applies_to_the_states_sent_on_connect() {
    let d = Daemon::start(OPEN);
    let alert = d.publish_with("fs/a?retain=1&event=alert", "A", &[]);
    let _line = d.publish_with("fs/b?retain=1&event=line", "B", &[]);
    // Long poll: only the state the filter passes, at once.
    let r = d.get("/poll?topics=fs/*&state=1&type=alert&timeout=5").json();
    let ids: Vec<u64> = r["events"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [alert], "{r}");
    // WebSocket: the matching state, then only matching live events.
    let mut w = ws(&d, "/ws?topics=fs/*&state=1&type=alert");
    assert_eq!(next_json(&mut w)["id"].as_u64(), Some(alert));
    d.publish_with("fs/b?event=line", "skipped", &[]);
    let live = d.publish_with("fs/a?event=alert", "live", &[]);
    assert_eq!(next_json(&mut w)["id"].as_u64(), Some(live));
}

#[test]
fn a_hook_with_retain_keeps_its_last_delivery_as_the_topic_state() {
    let d = Daemon::start(
        r#"{"public":[{"topics":["**"],"scopes":["subscribe"]}],
            "hooks":[{"id":"site","retain":true},{"id":"plain"}]}"#,
    );
    let json = [("Content-Type", "application/json")];
    for n in 1..=2 {
        let r = d.request("POST", "/hooks/site", &json, format!(r#"{{"n":{n}}}"#).as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(d.request("POST", "/hooks/plain", &json, b"{}").status, 200);
    let state = d.get("/api/topics/hooks/site");
    assert_eq!(state.status, 200, "{}", state.text());
    let v = state.json();
    assert_eq!((v["type"].clone(), v["data"]["hook"].clone()), (json!("delivery"), json!("site")), "{v}");
    assert_eq!(d.get("/api/topics/hooks/plain").status, 404);
    // The summary retained is the newest delivery's, and a subscriber asking for state gets it.
    let mut w = ws(&d, "/ws?topics=hooks/*&state=1");
    let first = next_json(&mut w);
    assert_eq!((first["id"].clone(), first["topic"].clone()), (v["id"].clone(), json!("hooks/site")), "{first}");
}

/// A state outlives the journal segment its event was in: every segment starts with a copy of
/// the states, and retention deletes a segment only once that copy is on disk.
#[test]
fn retained_state_survives_the_deletion_of_its_segment() {
    let state = TempDir::new("retain-segments");
    let dir = state.0.to_str().unwrap().to_string();
    let config = r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}],
        "journal":{"segment_bytes":4096,"max_bytes":65536}}"#;
    let start = || Daemon::start_args(Some(config), &["--state-dir", &dir]);
    let mut d = start();
    let kept = retain(&d, "bell", "3 unread");
    retain(&d, "gone", "soon cleared");
    retain(&d, "gone", "");
    let filler = "x".repeat(1000);
    for _ in 0..150 {
        d.publish("noise", &filler);
    }
    let newest = retain(&d, "badge", "green");
    let first_segment = || {
        let mut names: Vec<String> = std::fs::read_dir(state.0.join("journal"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("journal-"))
            .collect();
        names.sort();
        names[0].clone()
    };
    assert!(
        crate::util::eventually(Duration::from_secs(10), || first_segment() != "journal-00000000000000000001.log"),
        "retention deleted no segment"
    );
    d.terminate();
    let d = start();
    let r = d.get("/api/topics/bell").json();
    assert_eq!((r["id"].as_u64(), r["data"].clone()), (Some(kept), json!("3 unread")), "{r}");
    assert_eq!(d.get("/api/topics/badge").json()["id"].as_u64(), Some(newest));
    assert_eq!(d.get("/api/topics/gone").status, 404, "a cleared state stays cleared");
    // And it still resumes: the oldest history is gone, so a resume from the start is a reset.
    let poll = d.get(&format!("/poll?topics=bell&since={}", kept - 1)).json();
    assert_eq!(poll["reset"], json!(true), "{poll}");
}

/// `hookcast tail --state` prints the state first, then the live events its filter passes.
#[test]
fn the_cli_tails_state_then_filtered_live_events() {
    let d = Daemon::start(OPEN);
    let json = [("Content-Type", "application/json")];
    d.publish_with("logs/app?retain=1", r#"{"level":"error","msg":"disk timeout"}"#, &json);
    let url = d.url();
    let mut tail = std::process::Command::new(crate::util::BIN)
        .args(["tail", "--url", &url, "--json", "--state", "--where", "level:error", "--q", "TIMEOUT", "logs/*"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = tail.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(out)).map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || {
        let line = rx.recv_timeout(Duration::from_secs(10)).expect("a line from tail");
        serde_json::from_str::<Value>(&line).unwrap()["data"]["msg"].clone()
    };
    assert_eq!(next(), "disk timeout", "the state first");
    d.publish_with("logs/app", r#"{"level":"info","msg":"timeout"}"#, &json);
    d.publish_with("logs/app", r#"{"level":"error","msg":"all fine"}"#, &json);
    d.publish_with("logs/app", r#"{"level":"error","msg":"upstream Timeout"}"#, &json);
    assert_eq!(next(), "upstream Timeout", "only what the filter passes");
    let _ = tail.kill();
    let _ = tail.wait();
}
