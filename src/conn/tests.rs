//! Unit tests of the connection state machine, driven over an in-memory socket (the way
//! tungstenite tests its protocol over a `Cursor`): no daemon, no TCP.

use super::*;
use crate::api::stream::MAX_PATTERNS;
use crate::config::Config;
use std::io;

/// Anyone may publish and subscribe to anything.
const OPEN: &str = r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}]}"#;

/// A socket in memory: reads hand out `incoming` (then `WouldBlock`, or EOF once `closed`);
/// writes take up to `room` bytes in all (then `WouldBlock`) into `written`.
#[derive(Debug)]
struct Mock {
    incoming: Vec<u8>,
    read_pos: usize,
    closed: bool,
    written: Vec<u8>,
    room: usize,
}

impl Mock {
    fn new() -> Mock {
        Mock { incoming: Vec::new(), read_pos: 0, closed: false, written: Vec::new(), room: usize::MAX }
    }

    /// What was written since the last call, as text.
    fn take_written(&mut self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut self.written)).into_owned()
    }
}

impl Read for Mock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = &self.incoming[self.read_pos..];
        if left.is_empty() {
            return if self.closed { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let n = left.len().min(buf.len());
        buf[..n].copy_from_slice(&left[..n]);
        self.read_pos += n;
        Ok(n)
    }
}

impl Write for Mock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket for Mock {
    fn shutdown_write(&self) {}
}

fn app() -> App {
    let poll = mio::Poll::new().expect("a poll instance");
    let registry = poll.registry().try_clone().expect("a registry");
    App::new(Config::from_json(OPEN).expect("valid config"), Default::default(), registry)
}

fn conn(app: &App) -> Conn<Mock> {
    Conn::new(1, Mock::new(), IpAddr::from([127, 0, 0, 1]), 40000, app)
}

/// What the loop does on readable: read everything, process, flush.
fn drive(c: &mut Conn<Mock>, app: &mut App, bytes: &[u8]) {
    c.sock.incoming.extend_from_slice(bytes);
    let mut scratch = vec![0; 64 * 1024];
    c.read(&mut scratch, usize::MAX, true);
    c.process(app);
    c.flush(app);
}

/// Status codes of the responses in `text`, in order.
fn statuses(text: &str) -> Vec<u16> {
    text.match_indices("HTTP/1.1 ").map(|(i, _)| text[i + 9..i + 12].parse().expect("a status code")).collect()
}

const GET_HEALTH: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n";

#[test]
fn transitions_follow_the_diagram() {
    use Marker::*;
    let legal_pairs = [
        (Head, Head),
        (Head, Body),
        (Head, Closing),
        (Head, Subscriber),
        (Body, Head),
        (Body, Poll),
        (Body, AwaitRun),
        (Body, AwaitDurable),
        (AwaitRun, AwaitDurable),
        (AwaitRun, Head),
        (AwaitDurable, Closing),
        (Poll, Head),
        (Subscriber, Closing),
        (Closing, Lingering),
    ];
    for (from, to) in legal_pairs {
        assert!(legal(from, to), "{from:?} -> {to:?} should be legal");
    }
    let illegal_pairs = [
        (Head, Lingering),
        (Body, Body),
        (Subscriber, Head),
        (Subscriber, Poll),
        (Poll, Subscriber),
        (AwaitDurable, AwaitRun),
        (Closing, Head),
        (Lingering, Closing),
        (Lingering, Head),
        (Head, Transitioning),
        (Transitioning, Head),
    ];
    for (from, to) in illegal_pairs {
        assert!(!legal(from, to), "{from:?} -> {to:?} should be illegal");
    }
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "illegal transition Head -> Lingering")]
fn an_illegal_transition_panics_in_debug_builds() {
    let app = app();
    let mut c = conn(&app);
    c.transition(State::Lingering);
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "illegal transition Subscriber -> Head")]
fn a_taken_state_is_checked_as_the_state_it_was() {
    let mut app = app();
    let mut c = conn(&app);
    drive(&mut c, &mut app, b"GET /events?topics=t HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(c.is_stream());
    c.take_state();
    c.transition(State::Head { served: 1 });
}

#[test]
fn keep_alive_serves_requests_one_after_another_and_counts_them() {
    let mut app = app();
    let mut c = conn(&app);
    assert_eq!(c.timer, Timer::Head);
    drive(&mut c, &mut app, GET_HEALTH);
    assert!(matches!(c.state, State::Head { served: 1 }), "{:?}", c.state);
    assert_eq!(c.timer, Timer::Idle, "between requests the idle timeout runs");
    // A request with a body counts like any other (it used to restart the count).
    drive(&mut c, &mut app, b"POST /publish/t HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhi");
    drive(&mut c, &mut app, GET_HEALTH);
    assert!(matches!(c.state, State::Head { served: 3 }), "{:?}", c.state);
    assert_eq!(statuses(&c.sock.take_written()), [200, 202, 200]);
    assert_eq!(c.want_close(), Close::No);
    // The first byte of the next request starts the head timeout.
    drive(&mut c, &mut app, b"GET /heal");
    assert_eq!(c.timer, Timer::Head);
    assert!(c.is_parsing());
}

#[test]
fn pipelined_requests_wait_while_the_output_is_over_its_limit() {
    let mut app = app();
    let mut c = conn(&app);
    c.sock.room = 0; // a client that does not read
    let n = 4000;
    drive(&mut c, &mut app, &GET_HEALTH.repeat(n));
    let State::Head { served } = c.state else { panic!("{:?}", c.state) };
    let held_at = served as usize;
    assert!(held_at > 0 && held_at < n, "stopped after {held_at} of {n}");
    assert!(c.out.len() > PIPELINE_OUT_LIMIT);
    assert!(c.held_by_output() && c.has_input());
    // Nothing more is taken while the output stays full.
    c.process(&mut app);
    assert!(matches!(c.state, State::Head { served } if served as usize == held_at));
    // The client reads: the loop flushes and, the input being held, processes again.
    c.sock.room = usize::MAX;
    for _ in 0..n {
        if !c.held_by_output() {
            break;
        }
        c.flush(&mut app);
        c.process(&mut app);
        c.flush(&mut app);
    }
    assert!(matches!(c.state, State::Head { served } if served as usize == n), "{:?}", c.state);
    assert!(!c.has_input() && c.out.is_empty());
    let codes = statuses(&c.sock.take_written());
    assert_eq!(codes.len(), n);
    assert!(codes.iter().all(|&s| s == 200));
}

#[test]
fn a_body_split_across_reads_is_put_together() {
    let mut app = app();
    let mut c = conn(&app);
    drive(&mut c, &mut app, b"POST /publish/t HTTP/1.1\r\nHost: localhost\r\nContent-Length: 11\r\n\r\nhello");
    assert!(matches!(c.state, State::Body(_)) && c.is_parsing());
    assert_eq!(c.timer, Timer::Body);
    assert!(c.sock.written.is_empty());
    drive(&mut c, &mut app, b" world");
    assert_eq!(statuses(&c.sock.take_written()), [202]);
    let r = app.hub.replay(&["t"], 0, usize::MAX, None);
    assert_eq!(r.events.last().map(|e| &*e.data), Some("hello world"));
}

#[test]
fn a_chunked_body_split_across_reads_is_put_together() {
    let mut app = app();
    let mut c = conn(&app);
    let head = b"POST /publish/t HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n";
    drive(&mut c, &mut app, &[&head[..], b"5\r\nhel"].concat());
    assert!(matches!(c.state, State::Body(_)));
    drive(&mut c, &mut app, b"lo\r\n6\r\n world\r\n0\r\n\r\n");
    assert_eq!(statuses(&c.sock.take_written()), [202]);
    assert!(matches!(c.state, State::Head { served: 1 }));
    let r = app.hub.replay(&["t"], 0, usize::MAX, None);
    assert_eq!(r.events.last().map(|e| &*e.data), Some("hello world"));
}

#[test]
fn a_malformed_chunked_body_is_answered_400_and_closed() {
    let mut app = app();
    let mut c = conn(&app);
    drive(&mut c, &mut app, b"POST /publish/t HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    let out = c.sock.take_written();
    assert_eq!(statuses(&out), [400], "{out}");
    assert!(c.is_lingering(), "{:?}", c.state);
}

#[test]
fn an_oversized_content_length_is_answered_413_before_the_body() {
    let mut app = app();
    let mut c = conn(&app);
    drive(&mut c, &mut app, b"POST /publish/t HTTP/1.1\r\nHost: localhost\r\nContent-Length: 999999999999\r\n\r\n");
    let out = c.sock.take_written();
    assert_eq!(statuses(&out), [413], "{out}");
    assert!(out.contains("Connection: close"), "{out}");
    // The response is out: the write side is shut and what still comes is dropped.
    assert!(c.is_lingering());
    assert_eq!(c.timer, Timer::Linger);
    drive(&mut c, &mut app, b"more body bytes");
    assert!(!c.has_input());
}

#[test]
fn a_head_not_received_in_time_is_answered_408() {
    let mut app = app();
    let mut c = conn(&app);
    drive(&mut c, &mut app, b"GET /healthz HTTP/1.1\r\nHo");
    assert!(c.sock.written.is_empty());
    c.on_timeout(&mut app);
    c.flush(&mut app);
    let out = c.sock.take_written();
    assert_eq!(statuses(&out), [408], "{out}");
    assert!(c.is_lingering());
}

#[test]
fn an_idle_connection_times_out_without_an_answer() {
    let mut app = app();
    let mut c = conn(&app);
    c.on_timeout(&mut app);
    assert_eq!(c.want_close(), Close::Now);
    assert!(c.sock.written.is_empty());
}

#[test]
fn a_subscriber_receives_a_published_event() {
    let mut app = app();
    let mut c = conn(&app);
    drive(&mut c, &mut app, b"GET /events?topics=news HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert!(c.is_stream() && !c.is_ws() && c.ends_at_eof());
    assert_eq!(c.deadline, None, "a stream has no timeout of its own");
    let head = c.sock.take_written();
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("text/event-stream"), "{head}");
    let ev = app.publish("news", "message", "extra".to_string(), false);
    let other = app.publish("sport", "message", "not for us".to_string(), false);
    assert!(c.push_event(&ev, &mut app));
    c.flush(&mut app);
    let got = c.sock.take_written();
    assert!(got.contains(&format!("id: {}\n", ev.id)) && got.contains("data: extra\n"), "{got}");
    // The same event again (through another pattern) is not sent twice.
    assert!(c.push_event(&ev, &mut app));
    assert!(c.out.is_empty());
    drop(other);
    // EOF ends a subscriber: it has nothing left to answer.
    c.sock.closed = true;
    drive(&mut c, &mut app, b"");
    assert!(c.eof && c.ends_at_eof());
}

#[test]
fn a_slow_subscriber_is_cut_loose() {
    let mut app = app();
    let mut c = conn(&app);
    drive(&mut c, &mut app, b"GET /events?topics=t HTTP/1.1\r\nHost: localhost\r\n\r\n");
    c.sock.room = 0;
    let big = "x".repeat(64 * 1024);
    let mut cut = false;
    for _ in 0..(app.cfg.limits.max_queued_bytes / big.len() + 2) {
        let ev = app.publish("t", "message", big.clone(), false);
        if !c.push_event(&ev, &mut app) {
            cut = true;
            break;
        }
    }
    assert!(cut);
    assert_eq!(c.want_close(), Close::Slow);
}

/// A masked client text frame (payloads under 64 KiB).
fn frame(text: &str) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x81];
    match text.len() {
        n @ 0..=125 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// A connection upgraded to WebSocket, its 101 already taken.
fn websocket(app: &mut App) -> Conn<Mock> {
    let mut c = conn(app);
    drive(
        &mut c,
        app,
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    );
    assert!(c.is_ws());
    assert!(c.sock.take_written().starts_with("HTTP/1.1 101"));
    c
}

#[test]
fn a_websocket_publish_op_shares_the_http_refusals() {
    let mut app = app();
    let mut c = websocket(&mut app);
    drive(&mut c, &mut app, &frame(r#"{"op":"publish","topic":"$runs","data":1}"#));
    let out = c.sock.take_written();
    assert!(out.contains("system topics are published by hookcast itself"), "{out}");
    drive(&mut c, &mut app, &frame(r#"{"op":"publish","topic":"t","data":"hi"}"#));
    let out = c.sock.take_written();
    assert!(out.contains(r#""type":"ack""#) && out.contains(r#""op":"publish""#), "{out}");
}

#[test]
fn a_subscribe_op_over_the_pattern_limit_subscribes_to_nothing() {
    // The op used to subscribe the hub to each new pattern until the limit, then refuse without
    // recording them: hub subscriptions the connection never dropped, fed events it never asked for.
    let mut app = app();
    let mut c = websocket(&mut app);
    let first: Vec<String> = (0..MAX_PATTERNS - 2).map(|i| format!("t{i}")).collect();
    drive(&mut c, &mut app, &frame(&serde_json::json!({"op": "subscribe", "topics": first}).to_string()));
    assert!(c.sock.take_written().contains(r#""type":"ack""#));
    drive(&mut c, &mut app, &frame(r#"{"op":"subscribe","topics":["a","b","c"]}"#));
    let out = c.sock.take_written();
    assert!(out.contains(&format!("at most {MAX_PATTERNS} topics")), "{out}");
    for topic in ["a", "b", "c"] {
        let mut subs = Vec::new();
        app.hub.subscribers_into(topic, &mut subs);
        assert!(subs.is_empty(), "{topic}: {subs:?}");
    }
    // Within the limit the same op still works.
    drive(&mut c, &mut app, &frame(r#"{"op":"subscribe","topics":["a","b"]}"#));
    assert!(c.sock.take_written().contains(r#""type":"ack""#));
    let mut subs = Vec::new();
    app.hub.subscribers_into("b", &mut subs);
    assert_eq!(subs, [c.token]);
}

/// Idle memory per subscriber is counted in bytes: the filter field fits in what a subscriber
/// cost before filters existed.
#[test]
fn a_subscriber_without_a_filter_costs_what_it_did() {
    assert!(std::mem::size_of::<Subscriber>() <= 80, "{}", std::mem::size_of::<Subscriber>());
}

/// A resume through a filter that passes nothing for several replay batches still reaches the
/// matching events after them, and live events are filtered too.
#[test]
fn a_filtered_resume_crosses_batches_that_pass_nothing() {
    let mut app = app();
    let mut c = conn(&app);
    let big = "x".repeat(8 * 1024);
    let first = app.publish("t", "skip", big.clone(), false);
    for _ in 0..(3 * REPLAY_BATCH / big.len()) {
        app.publish("t", "skip", big.clone(), false);
    }
    let wanted = app.publish("t", "keep", "found".to_string(), false);
    let req = format!(
        "GET /events?topics=t&type=keep HTTP/1.1\r\nHost: localhost\r\nLast-Event-ID: {}\r\n\r\n",
        first.id - 1
    );
    drive(&mut c, &mut app, req.as_bytes());
    c.flush(&mut app);
    let got = c.sock.take_written();
    assert!(got.contains(&format!("id: {}\nevent: keep\ndata: found\n", wanted.id)), "{got}");
    assert!(!got.contains("event: skip"));
    let skip = app.publish("t", "skip", "no".to_string(), false);
    let keep = app.publish("t", "keep", "yes".to_string(), false);
    assert!(c.push_event(&skip, &mut app) && c.push_event(&keep, &mut app));
    c.flush(&mut app);
    let got = c.sock.take_written();
    assert!(!got.contains("data: no") && got.contains("data: yes"), "{got}");
}
