//! HTTP/1.1 behaviour and every limit, over raw sockets.

use crate::util::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const SMALL_LIMITS: &str = r#"{
  "limits": {
    "max_header_bytes": 1024, "max_uri_bytes": 256, "max_body_bytes": 4096,
    "header_timeout_ms": 400, "body_timeout_ms": 400, "idle_timeout_ms": 600,
    "max_connections": 40, "max_connections_per_ip": 30
  },
  "public": [{ "topics": ["**"], "scopes": ["subscribe", "publish"] }]
}"#;

const SMALL_LIMITS_BIG_BODY: &str = r#"{
  "limits": { "max_body_bytes": 262144 },
  "public": [{ "topics": ["**"], "scopes": ["subscribe", "publish"] }]
}"#;

#[test]
fn health_metrics_and_unknown_routes() {
    let d = Daemon::start_default();
    let r = d.get("/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "ok");
    assert!(r.header("date").is_some());
    let r = d.get("/nope");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["status"], 404);
    let r = d.request("DELETE", "/healthz", &[], b"");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD"));
    let r = d.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    assert!(r.text().contains("hookcast_http_responses_total{status=\"404\"} 1"), "{}", r.text());
}

#[test]
fn head_has_headers_and_no_body() {
    let d = Daemon::start_default();
    let mut s = d.connect();
    s.write_all(
        b"HEAD /healthz HTTP/1.1\r\nHost: localhost\r\n\r\nGET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    // The HEAD response announces 16 bytes but sends none: the next bytes are the GET's head.
    let first_end = all.find("\r\n\r\n").unwrap() + 4;
    assert!(all[..first_end].contains("Content-Length: 16"));
    assert!(all[first_end..].starts_with("HTTP/1.1 200 OK"), "{all}");
    assert!(all.ends_with("{\"status\":\"ok\"}\n"));
}

#[test]
fn keep_alive_and_pipelining_answer_in_order() {
    let d = Daemon::start(SMALL_LIMITS);
    let mut s = d.connect();
    let mut batch = Vec::new();
    for i in 0..20 {
        batch.extend_from_slice(
            format!("POST /publish/p{i} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\n{}", i % 10).as_bytes(),
        );
    }
    batch.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    s.write_all(&batch).unwrap();
    let mut last = 0;
    for i in 0..20 {
        let r = read_response(&mut s).unwrap();
        assert_eq!(r.status, 202, "request {i}");
        assert_eq!(r.json()["topic"], format!("p{i}"));
        let id = r.json()["id"].as_u64().unwrap();
        assert!(id > last, "ids increase in request order");
        last = id;
    }
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    // Still open: one more request on the same connection.
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.header("connection"), Some("close"));
    assert!(read_response(&mut s).is_none(), "closed after Connection: close");
}

/// The loop stops reading at a short read unless the event said the peer hung up: a hang-up
/// that arrives with the request, or after it, must still be seen, and a request that
/// trickles in must still be read to its end.
#[test]
fn half_close_behind_a_request_and_trickled_requests_are_both_answered() {
    let d = Daemon::start_default();
    for _ in 0..20 {
        let mut s = d.connect();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(read_response(&mut s).unwrap().status, 200);
        assert!(closed_within(&mut s, Duration::from_secs(2)), "closed once the peer is done");
    }
    let mut s = d.connect();
    s.set_nodelay(true).unwrap();
    for _ in 0..3 {
        for b in b"POST /publish/demo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhi" {
            s.write_all(&[*b]).unwrap();
            // Pacing: one byte at a time, each its own segment.
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(read_response(&mut s).unwrap().status, 202);
    }
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    // The answer is read before the hang-up is sent, so the hang-up is surely a later event.
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed_within(&mut s, Duration::from_secs(2)), "a later hang-up is a new event");
}

#[test]
fn http10_closes_unless_keep_alive() {
    let d = Daemon::start_default();
    let mut s = d.connect();
    s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    assert!(read_response(&mut s).is_none());
}

/// Issue 12 item 17: an HTTP/1.0 client that asked for keep-alive must be told it got it, or
/// it takes the response as the connection's last.
#[test]
fn http10_keep_alive_is_announced_and_the_connection_kept() {
    let d = Daemon::start_default();
    let mut s = d.connect();
    s.write_all(b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection").map(str::to_ascii_lowercase).as_deref(), Some("keep-alive"), "{:?}", r.headers);
    // Still open: a second request on the same socket, this time without keep-alive.
    s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(read_response(&mut s).is_none());
    // HTTP/1.1 keeps its default silent.
    let mut s = d.connect();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).unwrap().header("connection"), None);
}

#[test]
fn chunked_bodies_are_decoded() {
    let d = Daemon::start(SMALL_LIMITS);
    let (mut sub, _) = sse(&d, "/events?topics=chunky", &[]);
    let mut s = d.connect();
    // The body must reach the decoder in two reads. With Nagle off, the head and the first chunk
    // leave in one segment, which the daemon reads whole; its 100 Continue proves it has read
    // them, so the rest, sent only then, comes in a later read.
    s.set_nodelay(true).unwrap();
    s.write_all(
        b"POST /publish/chunky HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n5\r\nhello\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 100, "the head and the first chunk were read");
    s.write_all(b"6;ext=1\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 202);
    let got = read_until(&mut sub, "data: hello world\n");
    assert!(got.starts_with("retry:"), "{got}");
}

#[test]
fn expect_100_continue() {
    let d = Daemon::start(SMALL_LIMITS);
    let mut s = d.connect();
    s.write_all(b"POST /publish/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 100);
    s.write_all(b"hello").unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 202);
    // Too large: answered 413 at once, without 100 Continue, and the body is never read.
    let mut s = d.connect();
    s.write_all(
        b"POST /publish/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 99999\r\nExpect: 100-continue\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 413);
}

#[test]
fn limit_statuses() {
    let d = Daemon::start(SMALL_LIMITS);
    let big_header = format!("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n", "a".repeat(2000));
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (big_header.into_bytes(), 431),
        (format!("GET /{} HTTP/1.1\r\nHost: localhost\r\n\r\n", "u".repeat(400)).into_bytes(), 414),
        (b"POST /publish/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5000\r\n\r\n".to_vec(), 413),
        (b"GET /healthz HTTP/1.1\r\n\r\n".to_vec(), 400),
        (b"GARBAGE\r\n\r\n".to_vec(), 400),
        (b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n".to_vec(), 400),
        (b"GET /healthz HTTP/2.0\r\nHost: localhost\r\n\r\n".to_vec(), 505),
        (b"POST /publish/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(), 501),
        (b"POST /publish/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(), 400),
        (
            b"POST /publish/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            400,
        ),
        (b"POST /publish/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".to_vec(), 400),
        (b"POST /publish/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(), 400),
        (b"POST /publish/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n2000\r\n".to_vec(), 413),
        (b"POST /publish/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\n\xff\xfe".to_vec(), 400),
        (b"POST /publish/bad%20topic HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n".to_vec(), 400),
        (b"POST /publish/x?event=a%0Ab HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n".to_vec(), 400),
        (
            b"POST /publish/x HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n{x}"
                .to_vec(),
            400,
        ),
        (b"POST /publish/x HTTP/1.1\r\nHost: localhost\r\nExpect: teapot\r\nContent-Length: 0\r\n\r\n".to_vec(), 417),
        (b"GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), 400),
        (b"GET /events?topics=a/**/b HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(), 400),
    ];
    for (req, want) in cases {
        let r = d.raw(&req);
        assert_eq!(r.status, want, "{:?} → {}", String::from_utf8_lossy(&req), r.text());
        assert_eq!(r.json()["status"], want);
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
    // Neither Content-Length nor Transfer-Encoding: an empty body (RFC 9112 §6.3), published like
    // any other. This request got 411 before issue 20 overrode it.
    let r = d.raw(b"POST /publish/x HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(r.status, 202, "{}", r.text());
    // Nothing above may have hurt the daemon.
    assert_eq!(d.get("/healthz").status, 200);
}

#[test]
fn slowloris_head_gets_408_and_close() {
    let d = Daemon::start(SMALL_LIMITS);
    let mut s = d.connect();
    let t0 = Instant::now();
    // Dribble a head one byte at a time: per-read progress must not extend the deadline.
    let head = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
    for b in head.iter() {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        // Pacing: the dribble is the attack.
        std::thread::sleep(Duration::from_millis(15));
        if t0.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 408);
    assert!(t0.elapsed() < Duration::from_secs(3), "took {:?}", t0.elapsed());
    assert!(closed_within(&mut s, Duration::from_secs(5)));
}

#[test]
fn slow_body_gets_408() {
    let d = Daemon::start(SMALL_LIMITS);
    let mut s = d.connect();
    s.write_all(b"POST /publish/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\nabc").unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 408);
}

#[test]
fn silent_and_idle_connections_are_closed() {
    let d = Daemon::start(SMALL_LIMITS);
    // Never sends a byte: closed at the head timeout, without a response.
    let mut silent = d.connect();
    assert!(closed_within(&mut silent, Duration::from_secs(5)));
    // Idle between keep-alive requests: closed at the idle timeout.
    let mut s = d.connect();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
    let t0 = Instant::now();
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    assert!(t0.elapsed() >= Duration::from_millis(300), "closed too early: {:?}", t0.elapsed());
}

#[test]
fn connection_limits_refuse_with_503() {
    let d = Daemon::start(SMALL_LIMITS);
    // Per-IP limit is 30: hold 30 subscribers, the 31st is refused.
    let mut held = Vec::new();
    for _ in 0..30 {
        held.push(sse(&d, "/events?topics=x", &[]).0);
    }
    let mut s = d.connect();
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 503);
    assert!(r.text().contains("too many connections"));
    drop(held);
    assert!(eventually(Duration::from_secs(5), || d.get("/healthz").status == 200));
    assert!(d.metric("hookcast_connections_refused_total") >= 1.0);
}

#[test]
fn garbage_never_kills_the_daemon() {
    let mut d = Daemon::start(SMALL_LIMITS);
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let prefixes: [&[u8]; 4] = [
        b"",
        b"GET / HTTP/1.1\r\n",
        b"POST /publish/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET /events?topics=",
    ];
    for i in 0..200 {
        let mut bytes = prefixes[i % prefixes.len()].to_vec();
        for _ in 0..(next() % 300) {
            let b = next() as u8;
            bytes.push(if next() % 3 == 0 { b"\r\n:; /?%"[(b % 8) as usize] } else { b });
        }
        let Ok(mut s) = TcpStream::connect(d.addr) else { continue };
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    assert!(eventually(Duration::from_secs(5), || d.get("/healthz").status == 200));
    assert!(d.child.try_wait().unwrap().is_none(), "the daemon exited");
}

#[test]
fn sigterm_exits_zero_quickly_with_subscribers_open() {
    let mut d = Daemon::start_default();
    let (mut sub, _) = sse(&d, "/events?topics=demo", &[]);
    let (status, took) = d.terminate();
    assert!(status.success(), "{status:?}");
    // A liveness bound (shutdown does not wait for subscribers to leave), not a performance
    // target: those are what benches/ and bench/ measure.
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(closed_within(&mut sub, Duration::from_secs(2)));
    assert!(TcpStream::connect(d.addr).is_err(), "no longer listening");
}

#[test]
fn cors_for_configured_origins_only() {
    let d = Daemon::start(
        r#"{"cors":{"allowed_origins":["https://dash.example"]},"public":[{"topics":["**"],"scopes":["subscribe","publish"]}]}"#,
    );
    let r = d.request("GET", "/healthz", &[("Origin", "https://dash.example")], b"");
    assert_eq!(r.header("access-control-allow-origin"), Some("https://dash.example"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let r = d.request("GET", "/healthz", &[("Origin", "https://evil.example")], b"");
    assert_eq!(r.header("access-control-allow-origin"), None);
    let r = d.request(
        "OPTIONS",
        "/publish/x",
        &[("Origin", "https://dash.example"), ("Access-Control-Request-Method", "POST")],
        b"",
    );
    assert_eq!(r.status, 204);
    assert!(r.header("access-control-allow-headers").unwrap().contains("Authorization"));
    let (_, head) = sse(&d, "/events?topics=x", &[("Origin", "https://dash.example")]);
    assert!(head.contains("Access-Control-Allow-Origin: https://dash.example"), "{head}");
}

#[test]
fn pipelining_client_that_never_reads_is_dropped() {
    let d = Daemon::start(SMALL_LIMITS);
    let mut s = d.connect();
    // Each /metrics answer is a few kB: far more than socket buffers and our pipeline limit.
    let req = b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n".repeat(3000);
    s.write_all(&req).unwrap();
    // Others are served meanwhile.
    assert_eq!(d.get("/healthz").status, 200);
    // The non-reader is cut off at the idle timeout (600 ms), not served forever. Pacing: the
    // client reads nothing for well over that timeout.
    std::thread::sleep(Duration::from_millis(1500));
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let end = s.read_to_end(&mut got);
    let answered = String::from_utf8_lossy(&got).matches("HTTP/1.1 200").count();
    assert!(end.is_ok() || end.unwrap_err().kind() == std::io::ErrorKind::ConnectionReset);
    assert!(answered < 3000, "all {answered} answered: the pipeline limit did not hold");
    assert_eq!(d.metric("hookcast_connections_active{transport=\"http\"}"), 1.0);
}

/// Issue 12 item 12: `POST /publish` with JSON had no nesting limit (serde_json ignores a value
/// without its recursion limit), so a 100 000-deep list was stored and broke clients and
/// long-poll batches. The limit is the hook payloads' (127 levels) less the three a long-poll
/// answer wraps around the data, so every answer parses in serde_json (the test's client).
#[test]
fn publish_json_nesting_is_limited_like_hook_payloads() {
    let d = Daemon::start(SMALL_LIMITS_BIG_BODY);
    let json = [("Content-Type", "application/json")];
    let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let r = d.request("POST", "/publish/deep", &json, nest(100_000).as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    let err = r.json()["error"].as_str().unwrap().to_string();
    assert!(err.contains("124") && err.contains("nested too deeply"), "{err}");
    // 124, not 127: a long-poll answer wraps three levels around the data.
    assert_eq!(d.request("POST", "/publish/deep", &json, nest(125).as_bytes()).status, 400);
    assert_eq!(d.request("POST", "/publish/deep", &json, nest(124).as_bytes()).status, 202);
    // Text is text: no JSON rules apply to it.
    assert_eq!(d.request("POST", "/publish/deep", &[], nest(1000).as_bytes()).status, 202);
    // Nothing deep reached history: a long poll of the topic parses.
    let v = d.get("/poll?topics=deep&since=0").json();
    assert_eq!(v["events"].as_array().unwrap().len(), 2, "{v}");
}

/// Issue 12 item 5: a read stops when the input buffer reaches its cap; when the buffered body
/// was then moved out, nothing read again, and edge-triggered readiness never fires for bytes
/// already in the kernel, so a fully sent body waited for the body timeout (408). A short body
/// timeout makes any stall show as a 408 instead of a slow test.
const STALL_LIMITS: &str = r#"{
  "limits": { "body_timeout_ms": 5000 },
  "public": [{ "topics": ["**"], "scopes": ["subscribe", "publish"] }]
}"#;

/// Writes `bytes` from a thread (it may block on a full socket while the server is reading)
/// and returns the socket to read answers from.
fn send_in_background(s: &TcpStream, bytes: Vec<u8>) -> std::thread::JoinHandle<()> {
    let mut w = s.try_clone().unwrap();
    std::thread::spawn(move || w.write_all(&bytes).unwrap())
}

fn publish_request(topic: &str, body_len: usize) -> Vec<u8> {
    let mut req =
        format!("POST /publish/{topic} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {body_len}\r\n\r\n").into_bytes();
    req.resize(req.len() + body_len, b'x');
    req
}

/// Three pipelined 1 MB POSTs with the default size limits. Written behind a held long poll so
/// that all of them sit in the buffer and the kernel when the server goes on: without it the
/// stall needs the client to finish writing just before a read meets the cap, which is timing.
#[test]
fn three_pipelined_1mb_posts_are_answered_without_waiting_for_the_body_timeout() {
    let d = Daemon::start(STALL_LIMITS);
    let mut s = d.connect();
    let mut batch = b"GET /poll?topics=quiet&timeout=1 HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    batch.extend((0..3).flat_map(|i| publish_request(&format!("big{i}"), 1_000_000)));
    let writer = send_in_background(&s, batch);
    assert_eq!(read_response(&mut s).unwrap().status, 200, "the poll times out empty");
    let t0 = Instant::now();
    for i in 0..3 {
        let r = read_response(&mut s).unwrap();
        assert_eq!(r.status, 202, "request {i} after {:?}: {}", t0.elapsed(), r.text());
    }
    writer.join().unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5), "took {:?}", t0.elapsed());
}

#[test]
fn large_posts_with_raised_max_body_bytes_are_all_answered() {
    let d = Daemon::start(
        r#"{
  "limits": { "max_body_bytes": 8388608, "body_timeout_ms": 5000 },
  "public": [{ "topics": ["**"], "scopes": ["subscribe", "publish"] }]
}"#,
    );
    // Each stalled about one time in three before the fix.
    for i in 0..12 {
        let mut s = d.connect();
        let writer = send_in_background(&s, publish_request("large", 4 << 20));
        let r = read_response(&mut s).unwrap();
        assert_eq!(r.status, 202, "post {i}: {}", r.text());
        writer.join().unwrap();
    }
}

/// The deterministic form: a long poll holds the connection while a pipelined 3 MB POST fills
/// the buffer to its cap and the kernel's buffers behind it; when the poll ends, the body takes
/// what was buffered and the rest must be read without a new readiness event.
#[test]
fn a_body_left_in_the_kernel_behind_a_held_request_is_read() {
    let d = Daemon::start(
        r#"{
  "limits": { "max_body_bytes": 4194304, "body_timeout_ms": 5000 },
  "public": [{ "topics": ["**"], "scopes": ["subscribe", "publish"] }]
}"#,
    );
    let mut s = d.connect();
    let mut batch = b"GET /poll?topics=quiet&timeout=1 HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    batch.extend(publish_request("after", 3 << 20));
    let writer = send_in_background(&s, batch);
    let poll = read_response(&mut s).unwrap();
    assert_eq!(poll.status, 200, "{}", poll.text());
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    writer.join().unwrap();
}
