//! Bursts: events that arrive faster than one write per subscriber per event are written several
//! to a write, whole and in order, and a subscriber that reads is never cut loose for a queue
//! that only the daemon's own pace made long.

use crate::util::*;
use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

/// `n` publishes of `body` to `topic` written at once on one connection (pipelined), then their
/// answers read; returns the ids in order.
fn pipelined_publishes(d: &Daemon, topic: &str, body: &str, n: usize) -> Vec<u64> {
    let mut s = d.connect();
    let one =
        format!("POST /publish/{topic} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    s.write_all(one.repeat(n).as_bytes()).unwrap();
    (0..n)
        .map(|i| {
            let r = read_response(&mut s).unwrap_or_else(|| panic!("no answer to publish {i}"));
            assert_eq!(r.status, 202, "{}", r.text());
            r.json()["id"].as_u64().unwrap()
        })
        .collect()
}

/// The `id:` lines of complete SSE events in `text`.
fn ids_in(text: &str) -> Vec<u64> {
    text.split("\n\n")
        .filter(|b| b.contains("data:"))
        .filter_map(|b| b.lines().find_map(|l| l.strip_prefix("id: ")).and_then(|v| v.parse().ok()))
        .collect()
}

#[test]
fn pipelined_publishes_past_the_queue_limit_reach_a_subscriber_that_reads() {
    // 40 events of 1 KiB arrive in one turn: 40 KiB for a queue allowed 16 KiB. The subscriber's
    // socket takes them all at once; it was cut loose as slow before the queue was written first.
    let d = Daemon::start(
        r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}],
            "limits":{"max_queued_bytes":16384}}"#,
    );
    let (mut s, _) = sse(&d, "/events?topics=burst", &[]);
    let body = "x".repeat(1024);
    let ids = pipelined_publishes(&d, "burst", &body, 40);
    let got = read_until(&mut s, &format!("id: {}\ndata: {body}\n\n", ids[39]));
    assert_eq!(ids_in(&got), ids);
    assert_eq!(d.metric(r#"hookcast_slow_consumer_disconnects_total{transport="sse"}"#), 0.0);
}

/// `n` SSE subscribers to `topic`, registered on a poll of their own.
fn subscribers(d: &Daemon, topic: &str, n: usize) -> (Poll, Vec<(MioStream, Vec<u8>)>) {
    let poll = Poll::new().unwrap();
    let subs = (0..n)
        .map(|i| {
            let (s, _) = sse(d, &format!("/events?topics={topic}"), &[]);
            s.set_nonblocking(true).unwrap();
            let mut s = MioStream::from_std(s);
            poll.registry().register(&mut s, Token(i), Interest::READABLE).unwrap();
            (s, Vec::new())
        })
        .collect();
    (poll, subs)
}

/// Reads every subscriber until each has the event `last` whole (60 s at most), then checks
/// that each got exactly `ids`, in order.
fn read_all(poll: &mut Poll, subs: &mut [(MioStream, Vec<u8>)], ids: &[u64]) {
    let last = format!("id: {}\n", ids[ids.len() - 1]);
    let mut done = vec![false; subs.len()];
    let mut events = Events::with_capacity(1024);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 64 * 1024];
    // Whatever arrived before the registration took effect is read on the first pass.
    let mut ready: Vec<usize> = (0..subs.len()).collect();
    while done.iter().any(|d| !d) {
        assert!(Instant::now() < deadline, "{} subscribers still waiting", done.iter().filter(|d| !**d).count());
        for &i in &ready {
            let (s, got) = &mut subs[i];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => panic!("subscriber {i} was disconnected"),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => panic!("subscriber {i}: {e}"),
                }
            }
            let text = String::from_utf8_lossy(got);
            done[i] = text.rsplit(&last).next().is_some_and(|t| text.contains(&last) && t.contains("\n\n"));
        }
        // epoll_wait returns EINTR after a stop and resume of the test process (signal(7)).
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_secs(1))) {
            assert_eq!(e.kind(), ErrorKind::Interrupted, "poll: {e}");
        }
        ready = events.iter().map(|e| e.token().0).collect();
    }
    for (i, (_, got)) in subs.iter().enumerate() {
        assert_eq!(ids_in(&String::from_utf8_lossy(got)), ids, "subscriber {i}");
    }
}

const MANY: &str = r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}],
    "limits":{"max_connections_per_ip":2000}}"#;

#[test]
fn a_burst_to_many_subscribers_arrives_whole_and_in_order_at_each() {
    const SUBSCRIBERS: usize = 600;
    const EVENTS: usize = 240;
    let d = Daemon::start(MANY);
    let (mut poll, mut subs) = subscribers(&d, "burst", SUBSCRIBERS);
    // Several pipelined rounds: each arrives while the writes of the one before are under way.
    let mut ids = Vec::new();
    for _ in 0..EVENTS / 40 {
        ids.extend(pipelined_publishes(&d, "burst", &"y".repeat(200), 40));
    }
    read_all(&mut poll, &mut subs, &ids);
    assert_eq!(d.metric(r#"hookcast_slow_consumer_disconnects_total{transport="sse"}"#), 0.0);
    // Every event counts in the delivery histogram once all its subscribers were written.
    assert!(eventually(Duration::from_secs(10), || d.metric("hookcast_event_delivery_seconds_count") == EVENTS as f64));
}

#[test]
fn events_published_one_by_one_while_the_writes_lag_share_writes() {
    // One publisher that waits for each answer, as most do: each event arrives in a turn of its
    // own. Writing 600 subscribers takes far longer than one publish's round trip, so the events
    // published meanwhile reach the subscribers not yet written in the same write. Before the
    // write queue, every event was one write per subscriber, in the turn it arrived.
    const SUBSCRIBERS: usize = 600;
    const EVENTS: usize = 100;
    let d = Daemon::start(MANY);
    let (mut poll, mut subs) = subscribers(&d, "one-by-one", SUBSCRIBERS);
    let mut publisher = KeepAlive::new(d.addr);
    let ids: Vec<u64> = (0..EVENTS)
        .map(|i| {
            let r = publisher.request("POST", "/publish/one-by-one", &[], format!("event {i}").as_bytes()).unwrap();
            assert_eq!(r.status, 202, "{}", r.text());
            r.json()["id"].as_u64().unwrap()
        })
        .collect();
    read_all(&mut poll, &mut subs, &ids);
    let sent = d.metric(r#"hookcast_messages_sent_total{transport="sse"}"#);
    let writes = d.metric(r#"hookcast_subscriber_writes_total{transport="sse"}"#);
    assert_eq!(sent, (SUBSCRIBERS * EVENTS) as f64);
    assert!(writes > 0.0 && writes < sent, "{writes} writes for {sent} messages: no write carried two events");
}
