//! Long polling: answered at once from history, held on the loop until an event or the
//! timeout, with the cursor in `next`.

use crate::util::*;
use std::io::Write;
use std::time::{Duration, Instant};

const OPEN: &str = r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}]}"#;

#[test]
fn answers_from_history_then_holds_then_times_out() {
    let d = Daemon::start(OPEN);
    let a = d.publish("p", "a");
    let b = d.publish("p/x", "b");
    let r = d.get(&format!("/poll?topics=p,p/*&since={}", a - 1));
    assert_eq!(r.status, 200);
    let v = r.json();
    let ids: Vec<u64> = v["events"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [a, b]);
    assert_eq!(v["next"], b);
    assert!(v.get("reset").is_none());
    // Held: the answer comes when an event is published, not before.
    let url = d.url();
    let t0 = Instant::now();
    let waiter = std::thread::spawn({
        let addr = d.addr;
        move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(
                format!("GET /poll?topics=p&since={b}&timeout=10 HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
            )
            .unwrap();
            read_response(&mut s).unwrap()
        }
    });
    // Pacing: the event comes well after the poll began (checked below), not only once it is held.
    std::thread::sleep(Duration::from_millis(300));
    assert!(eventually(Duration::from_secs(5), || d.metric("hookcast_connections_active{transport=\"poll\"}") == 1.0));
    let c = d.publish("p", "c");
    let r = waiter.join().unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(300), "answered before the event");
    assert_eq!(r.json()["events"][0]["id"], c);
    assert_eq!(r.json()["events"][0]["data"], "c");
    // Timeout: an empty answer with the cursor unchanged.
    let t0 = Instant::now();
    let r = d.get(&format!("/poll?topics=p&since={c}&timeout=1"));
    assert!(t0.elapsed() >= Duration::from_millis(900));
    assert_eq!(r.json()["events"].as_array().unwrap().len(), 0);
    assert_eq!(r.json()["next"], c);
    let _ = url;
}

#[test]
fn keep_alive_connection_polls_repeatedly() {
    let d = Daemon::start(OPEN);
    let mut s = d.connect();
    let mut since = d.publish("k", "0");
    for i in 1..4 {
        let id = d.publish("k", &i.to_string());
        s.write_all(format!("GET /poll?topics=k&since={since} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_response(&mut s).unwrap();
        assert_eq!(r.json()["next"], id);
        since = id;
    }
    // A held poll, then its answer, then the next request on the same connection.
    s.write_all(
        format!("GET /poll?topics=k&since={since} HTTP/1.1\r\nHost: localhost\r\n\r\nGET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    // The event is published only once the poll is held.
    assert!(eventually(Duration::from_secs(5), || d.metric("hookcast_connections_active{transport=\"poll\"}") == 1.0));
    let addr = d.addr;
    let publisher = std::thread::spawn(move || {
        let mut p = std::net::TcpStream::connect(addr).unwrap();
        p.write_all(
            b"POST /publish/k HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nConnection: close\r\n\r\nlate",
        )
        .unwrap();
        read_response(&mut p).unwrap()
    });
    let r = read_response(&mut s).unwrap();
    assert_eq!(r.json()["events"][0]["data"], "late");
    assert_eq!(read_response(&mut s).unwrap().status, 200, "the pipelined request after the poll");
    publisher.join().unwrap();
    assert_eq!(d.metric("hookcast_connections_active{transport=\"poll\"}"), 0.0);
}

#[test]
fn gaps_limits_auth_and_hangups() {
    let d = Daemon::start(
        r#"{"public":[{"topics":["**"],"scopes":["subscribe","publish"]}],"history":{"max_events_per_topic":5}}"#,
    );
    let ids: Vec<u64> = (0..8).map(|i| d.publish("g", &i.to_string())).collect();
    let v = d.get(&format!("/poll?topics=g&since={}", ids[0])).json();
    assert_eq!(v["reset"], true, "ids[1] and ids[2] were evicted");
    assert_eq!(v["events"].as_array().unwrap().len(), 5);
    let v = d.get(&format!("/poll?topics=g&since={}&limit=2", ids[4])).json();
    assert_eq!(v["events"].as_array().unwrap().len(), 2);
    assert_eq!(v["more"], true);
    assert_eq!(v["next"], ids[6]);
    for bad in [
        "/poll",
        "/poll?topics=g&timeout=0",
        "/poll?topics=g&timeout=999",
        "/poll?topics=g&limit=x",
        "/poll?topics=a/**/b",
    ] {
        assert_eq!(d.get(bad).status, 400, "{bad}");
    }
    let closed = Daemon::start_default();
    assert_eq!(closed.get("/poll?topics=private").status, 401);
    // A client that hangs up while held releases its place.
    let mut s = d.connect();
    s.write_all(
        format!("GET /poll?topics=g&since={}&timeout=30 HTTP/1.1\r\nHost: localhost\r\n\r\n", ids[7]).as_bytes(),
    )
    .unwrap();
    assert!(eventually(Duration::from_secs(5), || d.metric("hookcast_connections_active{transport=\"poll\"}") == 1.0));
    drop(s);
    assert!(eventually(Duration::from_secs(5), || d.metric("hookcast_connections_active{transport=\"poll\"}") == 0.0));
}

/// Issue 12 item 11: a cursor ahead of the server (ids went back after a restore, or a Pi
/// whose clock was late) was answered `reset` with `next` equal to itself, at once, forever.
/// The answer must move the cursor to the head, so the next poll waits like any other.
#[test]
fn cursor_ahead_of_the_server_is_reset_to_the_head() {
    let d = Daemon::start(OPEN);
    let head = d.publish("f", "x");
    for ahead in [head + 1_000_000, u64::MAX] {
        let v = d.get(&format!("/poll?topics=f&since={ahead}")).json();
        assert_eq!(v["reset"], true, "{v}");
        assert_eq!(v["next"], head, "the cursor must come back to the head: {v}");
    }
    // Following `next` recovers: held, no reset, then the next event arrives.
    let t0 = Instant::now();
    let v = d.get(&format!("/poll?topics=f&since={head}&timeout=1")).json();
    assert!(t0.elapsed() >= Duration::from_millis(900), "held until the timeout");
    assert!(v.get("reset").is_none(), "{v}");
    let next = d.publish("f", "y");
    let v = d.get(&format!("/poll?topics=f&since={head}")).json();
    assert_eq!(v["events"][0]["id"], next, "{v}");
}
