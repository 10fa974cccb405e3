//! A reconnect storm: every subscriber of a restarted daemon comes back within a second, with
//! `Last-Event-ID`. The daemon must queue the connects it cannot accept yet and resume everyone
//! from its journal without a gap.

use crate::util::*;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// `net.core.somaxconn`: the kernel caps every listen backlog at it.
fn somaxconn() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(128)
}

/// mio's `TcpListener::bind` listens with a backlog of 128: while the loop was busy (with the
/// resumes of a storm, here with SIGSTOP), the 130th connect lost its SYN and waited for the
/// retransmissions, 1 s, 3 s, 7 s later.
#[test]
fn listen_backlog_holds_a_storm_of_connects_while_the_loop_is_busy() {
    let n = somaxconn().min(600);
    assert!(n > 300, "net.core.somaxconn is {n}: this test needs more than 300 (sysctl net.core.somaxconn=4096)");
    let d = Daemon::start_default();
    signal(&d.child, "STOP");
    let mut socks = Vec::with_capacity(n);
    for i in 0..n {
        match TcpStream::connect_timeout(&d.addr, Duration::from_secs(5)) {
            Ok(s) => socks.push(s),
            Err(e) => {
                signal(&d.child, "CONT");
                panic!("connect {} of {n} to a busy daemon: {e} (the listen backlog is too small)", i + 1);
            }
        }
    }
    signal(&d.child, "CONT");
    // Every queued connection is served once the loop runs again.
    for (i, s) in socks.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
        let r = read_response(s).unwrap_or_else(|| panic!("connection {i}: no answer"));
        assert_eq!(r.status, 200, "connection {i}");
    }
}
