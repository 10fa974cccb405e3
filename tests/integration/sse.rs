//! SSE streams, history, resume, auth and slow consumers, over raw sockets.

use crate::util::*;
use std::io::{Read, Write};
use std::time::Duration;

const OPEN: &str = r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}],
  "sse":{"retry_ms":750}}"#;

fn events_in(text: &str) -> Vec<String> {
    text.split("\n\n").filter(|b| b.contains("data:")).map(str::to_string).collect()
}

#[test]
fn stream_head_retry_and_framing() {
    let d = Daemon::start(OPEN);
    let (mut s, head) = sse(&d, "/events?topics=demo", &[]);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    for h in ["Content-Type: text/event-stream", "Cache-Control: no-cache", "X-Accel-Buffering: no"] {
        assert!(head.contains(h), "missing {h}: {head}");
    }
    assert!(!head.contains("Content-Length"));
    assert!(read_until(&mut s, "\n\n").contains("retry: 750\n"));
    let id = d.publish_with("demo", "one\ntwo\r\nthree", &[]);
    let got = read_until(&mut s, "three\n\n");
    assert!(got.contains(&format!("id: {id}\ndata: one\ndata: two\ndata: three\n\n")), "{got:?}");
    let r =
        d.request("POST", "/publish/demo?event=deploy.done", &[("Content-Type", "application/json")], b"{\"ok\":true}");
    assert_eq!(r.status, 202);
    let got = read_until(&mut s, "true}\n\n");
    assert!(got.contains("event: deploy.done\ndata: {\"ok\":true}\n\n"), "{got:?}");
}

#[test]
fn patterns_single_topic_path_and_no_duplicates() {
    let d = Daemon::start(OPEN);
    // Two overlapping patterns: each event must arrive once.
    let (mut s, _) = sse(&d, "/events?topics=builds/*,builds/**&format=json", &[]);
    let (mut one, _) = sse(&d, "/events/builds/web", &[]);
    d.publish("builds/web", "a");
    d.publish("builds/web/deep", "b");
    d.publish("other", "c");
    d.publish("builds/api", "d");
    let got = read_until(&mut s, "\"data\":\"d\"");
    let evs = events_in(&got);
    assert_eq!(evs.len(), 3, "{got}");
    assert!(evs[0].contains("\"topic\":\"builds/web\""));
    assert!(evs[1].contains("\"topic\":\"builds/web/deep\""));
    let got = read_until(&mut one, "data: a\n");
    assert_eq!(events_in(&got).len(), 1);
}

#[test]
fn last_event_id_resumes_from_history() {
    let d = Daemon::start(OPEN);
    let ids: Vec<u64> = (0..5).map(|i| d.publish("r", &format!("e{i}"))).collect();
    // Header form.
    let (mut s, _) = sse(&d, "/events?topics=r", &[("Last-Event-ID", &ids[1].to_string())]);
    let got = read_until(&mut s, "data: e4\n\n");
    assert!(!got.contains("e1") && got.contains("e2") && got.contains("e3"), "{got}");
    assert!(!got.contains("event: reset"));
    // Query form, as a browser that cannot set headers would send.
    let (mut s, _) = sse(&d, &format!("/events?topics=r&lastEventId={}", ids[3]), &[]);
    let got = read_until(&mut s, "data: e4\n\n");
    assert!(!got.contains("e3"), "{got}");
    // Then live events follow on the same stream.
    d.publish("r", "live");
    read_until(&mut s, "data: live\n\n");
}

#[test]
fn gap_in_history_is_announced_with_a_reset_event() {
    let d = Daemon::start(
        r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}],
        "history":{"max_events_per_topic":3}}"#,
    );
    let ids: Vec<u64> = (0..6).map(|i| d.publish("g", &format!("e{i}"))).collect();
    let (mut s, _) = sse(&d, "/events?topics=g", &[("Last-Event-ID", &ids[0].to_string())]);
    let got = read_until(&mut s, "data: e5\n\n");
    let reset_at = got.find("event: reset").expect("a reset event");
    assert!(reset_at < got.find("data: e3").unwrap(), "reset comes first: {got}");
    assert!(got.contains("\"reason\":\"history_gap\""));
    assert!(!got.contains("data: e2"));
    // An id this daemon never gave out (a previous run's, or garbage) is a gap as well.
    let (mut s, _) = sse(&d, "/events?topics=g", &[("Last-Event-ID", "12")]);
    assert!(read_until(&mut s, "event: reset").contains("event: reset"));
    let (mut s, _) = sse(&d, "/events?topics=g", &[("Last-Event-ID", "not-a-number")]);
    assert!(read_until(&mut s, "event: reset").contains("event: reset"));
}

#[test]
fn keepalive_comments_flow() {
    let d = Daemon::start(r#"{"public":[{"topics":["k"],"scopes":["subscribe"]}],"sse":{"keepalive_ms":150}}"#);
    let (mut s, _) = sse(&d, "/events?topics=k", &[]);
    let got = read_until(&mut s, ": keepalive\n\n: keepalive\n\n");
    assert!(got.contains(": keepalive"));
}

#[test]
fn default_config_opens_demo_on_loopback_only() {
    let d = Daemon::start_default();
    let id = d.publish("demo", "hi");
    assert!(id > 0);
    let r = d.request("POST", "/publish/other", &[], b"x");
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    let r = d.get("/events?topics=other");
    assert_eq!(r.status, 401);
    let r = d.get("/events?topics=**");
    assert_eq!(r.status, 401, "demo alone is public, not everything");
}

#[test]
fn tokens_by_header_cookie_and_query() {
    // sha256("pub-token") and sha256("sub-token")
    let cfg = format!(
        r#"{{"tokens":[
            {{"name":"ci","sha256":"{}","scopes":["publish"],"topics":["builds/**"]}},
            {{"name":"dash","sha256":"{}","scopes":["subscribe"]}}]}}"#,
        hookcast::auth::hex(&hookcast::auth::token_hash("pub-token")),
        hookcast::auth::hex(&hookcast::auth::token_hash("sub-token"))
    );
    let d = Daemon::start(&cfg);
    let (mut s, _) = sse(&d, "/events?topics=builds/**&token=sub-token", &[]);
    let (mut c, _) = sse(&d, "/events?topics=builds/web", &[("Cookie", "theme=dark; hookcast_token=sub-token")]);
    let id = d.publish_with("builds/web", "ok", &[("Authorization", "Bearer pub-token")]);
    read_until(&mut s, &format!("id: {id}"));
    read_until(&mut c, &format!("id: {id}"));
    assert_eq!(d.request("POST", "/publish/builds/web", &[("Authorization", "Bearer wrong")], b"x").status, 401);
    assert_eq!(d.request("POST", "/publish/deploys", &[("Authorization", "Bearer pub-token")], b"x").status, 403);
    assert_eq!(d.request("POST", "/publish/builds/x", &[("Authorization", "Bearer sub-token")], b"x").status, 403);
    assert_eq!(d.get("/events?topics=builds/web&token=pub-token").status, 403);
    assert_eq!(d.get("/events?topics=$runs&token=sub-token").status, 403, "** does not cover system topics");
}

#[test]
fn slow_consumer_is_cut_loose_and_resumes_without_loss() {
    let d = Daemon::start(
        r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}],
            "limits":{"max_queued_bytes":65536,"max_body_bytes":70000},
            "history":{"max_bytes_per_topic":67108864,"max_bytes_total":134217728,"max_events_per_topic":100000}}"#,
    );
    // A subscriber that never reads.
    let (mut lazy, _) = sse(&d, "/events?topics=flood", &[]);
    let chunk = "x".repeat(60_000);
    let mut ids = Vec::new();
    let mut cut = false;
    for _ in 0..400 {
        ids.push(d.publish("flood", &chunk));
        if d.metric("hookcast_slow_consumer_disconnects_total{transport=\"sse\"}") >= 1.0 {
            cut = true;
            break;
        }
    }
    assert!(cut, "never disconnected after {} events of 60 kB", ids.len());
    // What it did receive ends at some id; resuming from there yields every later id, in order.
    let mut got = Vec::new();
    lazy.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = lazy.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got);
    let last_seen: u64 = text
        .split("\n\n")
        .filter(|b| b.contains("data: x"))
        .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("id: ")))
        .filter_map(|v| v.parse().ok())
        .last()
        .unwrap_or(ids[0] - 1);
    let (mut s, _) = sse(&d, "/events?topics=flood", &[("Last-Event-ID", &last_seen.to_string())]);
    let want: Vec<u64> = ids.iter().copied().filter(|&i| i > last_seen).collect();
    let mut seen = Vec::new();
    let mut buf = String::new();
    let mut raw = [0u8; 65536];
    while seen.len() < want.len() {
        let n = s.read(&mut raw).expect("resume stream");
        assert!(n > 0, "EOF during resume after {} of {}", seen.len(), want.len());
        buf.push_str(&String::from_utf8_lossy(&raw[..n]));
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            // Blocks without data (the stream's starting position) are not events.
            let is_event = block.lines().any(|l| l.starts_with("data:"));
            if let Some(id) = block.lines().find_map(|l| l.strip_prefix("id: ")).filter(|_| is_event) {
                assert!(!block.contains("event: reset"), "no gap expected: {block}");
                seen.push(id.parse::<u64>().unwrap());
            }
        }
    }
    assert_eq!(seen, want, "every event after the cut, exactly once, in order");
}

#[test]
fn many_subscribers_get_every_event() {
    let d = Daemon::start(OPEN);
    let mut subs: Vec<_> = (0..200).map(|_| sse(&d, "/events?topics=fan", &[]).0).collect();
    let ids: Vec<u64> = (0..10).map(|i| d.publish("fan", &format!("m{i}"))).collect();
    for s in subs.iter_mut() {
        let got = read_until(s, "data: m9\n\n");
        assert_eq!(events_in(&got).len(), 10);
        assert!(got.contains(&format!("id: {}", ids[0])));
    }
    let s = &mut subs[0];
    s.write_all(b"ignored bytes from a subscriber\r\n").unwrap();
    d.publish("fan", "after");
    read_until(s, "data: after");
    assert_eq!(d.metric("hookcast_connections_active{transport=\"sse\"}"), 200.0);
}

/// The daemon's resident memory in MiB (Linux: /proc).
fn rss_mib(d: &Daemon) -> f64 {
    let path = format!("/proc/{}/status", d.child.id());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e} (this test needs Linux /proc)"));
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb / 1024.0
}

/// Reads a stream until `needle`, keeping only a tail (a replay is megabytes).
fn read_past(s: &mut std::net::TcpStream, needle: &str) {
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = s.read(&mut buf).expect("replay bytes");
        assert!(n > 0, "stream ended before {needle:?}");
        tail.extend_from_slice(&buf[..n]);
        if tail.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            return;
        }
        let keep = needle.len();
        tail.drain(..tail.len().saturating_sub(keep));
    }
}

/// Issue 12 item 8: each wire format's encoding was cached in every event a replay touched,
/// JSON escaping included, and none of it was counted by `history.max_bytes_*`: 16 MiB of
/// history became 180 MiB resident after one replay per format. Replays now encode for
/// themselves; memory after them stays near what history counts.
#[test]
fn replaying_history_in_every_format_does_not_grow_memory_past_the_history_limit() {
    let d = Daemon::start(
        r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}],"history":{"max_bytes_total":4194304}}"#,
    );
    // Quotes, newlines and control characters: escaping and SSE line splitting make every
    // encoding several times the data.
    let data = "a\"\n\u{1}".repeat(250);
    let mut ka = KeepAlive::new(d.addr);
    let (mut first, mut last) = (0, 0);
    for i in 0..4500 {
        let r = ka.request("POST", &format!("/publish/fill/t{}", i % 8), &[], data.as_bytes()).unwrap();
        assert_eq!(r.status, 202);
        last = r.json()["id"].as_u64().unwrap();
        if first == 0 {
            first = last;
        }
    }
    let accounted = d.metric("hookcast_history_bytes") / (1024.0 * 1024.0);
    assert!(accounted > 3.5, "history filled to its cap: {accounted} MiB");
    let before = rss_mib(&d);
    let since = (first - 1).to_string();
    for format in ["", "&format=json"] {
        let (mut s, _) = sse(&d, &format!("/events?topics=**{format}"), &[("Last-Event-ID", &since)]);
        read_past(&mut s, &format!("id: {last}\n"));
    }
    let req = tungstenite::client::IntoClientRequest::into_client_request(format!(
        "ws://{}/ws?topics=**&lastEventId={since}",
        d.addr
    ))
    .unwrap();
    let (mut ws, _) = tungstenite::client(req, d.connect()).map_err(|e| format!("{e:?}")).unwrap();
    let needle = format!("\"id\":{last},");
    loop {
        match ws.read().expect("a replayed message") {
            tungstenite::Message::Text(t) if t.contains(&needle) => break,
            _ => {}
        }
    }
    let mut since = first - 1;
    loop {
        let v = d.get(&format!("/poll?topics=**&since={since}&limit=1000")).json();
        since = v["next"].as_u64().unwrap();
        if v.get("more").is_none() {
            break;
        }
    }
    assert_eq!(since, last);
    let grown = rss_mib(&d) - before;
    assert!(
        grown < accounted,
        "one replay per format grew memory by {grown:.1} MiB; history counts {accounted:.1} MiB"
    );
}
