//! `hookcast-floor`: the least a push server can do, for hookcast's fan-out to be measured
//! against (issue 21). One `mio` loop, no HTTP parser, no hub, no history: a `GET` becomes an SSE
//! subscriber (a fixed 200 head, then nothing but what is pushed), a `POST` with a
//! `Content-Length` body is written as one `data:` frame to every subscriber — one write per
//! subscriber, as hookcast does — and answered 202. Driven by `hookcast-load fanout` like the
//! real servers; `scripts/bench-floor.sh` runs both and reports the ratios.
//!
//! It trusts its client (a benchmark on loopback): no limits beyond a bounded request head, and
//! a subscriber whose socket is full gets the rest of a frame later or is dropped.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};

const LISTENER: Token = Token(usize::MAX);
/// A request head longer than this is refused (the connection is closed).
const MAX_HEAD: usize = 16 * 1024;
/// Bytes a subscriber may have pending before it is dropped (like a slow consumer).
const MAX_PENDING: usize = 4 << 20;
const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n\r\n";
const ACCEPTED: &[u8] = b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";

/// What a connection turned out to be.
enum Role {
    /// Its request head is still arriving.
    Asking,
    /// An SSE subscriber: only written to.
    Subscriber,
}

struct Conn {
    stream: TcpStream,
    role: Role,
    /// What was read and not yet used (a request head and body).
    input: Vec<u8>,
    /// What could not be written yet.
    pending: Vec<u8>,
}

fn main() {
    let listen = std::env::args().skip_while(|a| a != "--listen").nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    if let Err(e) = run(&listen) {
        eprintln!("hookcast-floor: {e}");
        std::process::exit(1);
    }
}

fn run(listen: &str) -> std::io::Result<()> {
    let addr = listen
        .parse()
        .map_err(|_| std::io::Error::new(ErrorKind::InvalidInput, format!("not an address: {listen}")))?;
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    eprintln!("hookcast-floor listening on http://{}", listener.local_addr()?);
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        poll.poll(&mut events, None)?;
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut stream, _)) => {
                            let slot = free.pop().unwrap_or_else(|| {
                                conns.push(None);
                                conns.len() - 1
                            });
                            poll.registry().register(&mut stream, Token(slot), Interest::READABLE)?;
                            let _ = stream.set_nodelay(true);
                            conns[slot] =
                                Some(Conn { stream, role: Role::Asking, input: Vec::new(), pending: Vec::new() });
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                continue;
            }
            let slot = ev.token().0;
            let mut publish: Vec<Vec<u8>> = Vec::new();
            let alive = match conns.get_mut(slot).and_then(Option::as_mut) {
                None => continue,
                Some(c) => {
                    let mut ok = flush(c);
                    if ok && (ev.is_readable() || ev.is_read_closed()) {
                        ok = read(c, &mut scratch, &mut publish);
                    }
                    ok
                }
            };
            if !alive {
                close(&poll, &mut conns, &mut free, slot);
                continue;
            }
            for body in publish {
                fan_out(&poll, &mut conns, &mut free, &body);
                if let Some(c) = conns.get_mut(slot).and_then(Option::as_mut) {
                    c.pending.extend_from_slice(ACCEPTED);
                    if !flush(c) {
                        close(&poll, &mut conns, &mut free, slot);
                    }
                }
            }
        }
    }
}

/// Reads what is there; a complete `GET` head makes a subscriber, a complete `POST` (head and
/// `Content-Length` body) adds its body to `publish`. False when the connection must close.
fn read(c: &mut Conn, scratch: &mut [u8], publish: &mut Vec<Vec<u8>>) -> bool {
    loop {
        match c.stream.read(scratch) {
            Ok(0) => return false,
            Ok(n) => {
                if matches!(c.role, Role::Asking) {
                    c.input.extend_from_slice(&scratch[..n]);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    while matches!(c.role, Role::Asking) {
        let Some(end) = c.input.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4) else {
            return c.input.len() <= MAX_HEAD;
        };
        let head = String::from_utf8_lossy(&c.input[..end]).to_ascii_lowercase();
        if head.starts_with("get ") {
            c.role = Role::Subscriber;
            c.input.clear();
            c.pending.extend_from_slice(SSE_HEAD);
            return flush(c);
        }
        let len = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        if c.input.len() < end + len {
            return true;
        }
        publish.push(c.input[end..end + len].to_vec());
        c.input.drain(..end + len);
    }
    true
}

/// One `data:` frame, encoded once, written to every subscriber with one write each.
fn fan_out(poll: &Poll, conns: &mut [Option<Conn>], free: &mut Vec<usize>, body: &[u8]) {
    let mut frame = Vec::with_capacity(body.len() + 8);
    frame.extend_from_slice(b"data: ");
    frame.extend_from_slice(body);
    frame.extend_from_slice(b"\n\n");
    for slot in 0..conns.len() {
        let Some(c) = conns[slot].as_mut() else { continue };
        if !matches!(c.role, Role::Subscriber) {
            continue;
        }
        let ok = if c.pending.is_empty() {
            match c.stream.write(&frame) {
                Ok(n) => {
                    c.pending.extend_from_slice(&frame[n..]);
                    true
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    c.pending.extend_from_slice(&frame);
                    true
                }
                Err(_) => false,
            }
        } else {
            c.pending.extend_from_slice(&frame);
            c.pending.len() <= MAX_PENDING
        };
        let ok = ok && (c.pending.is_empty() || watch_writable(poll, c, slot));
        if !ok {
            close(poll, conns, free, slot);
        }
    }
}

fn watch_writable(poll: &Poll, c: &mut Conn, slot: usize) -> bool {
    poll.registry().reregister(&mut c.stream, Token(slot), Interest::READABLE | Interest::WRITABLE).is_ok()
}

/// Writes what is pending; false on an error.
fn flush(c: &mut Conn) -> bool {
    while !c.pending.is_empty() {
        match c.stream.write(&c.pending) {
            Ok(0) => return false,
            Ok(n) => {
                c.pending.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

fn close(poll: &Poll, conns: &mut [Option<Conn>], free: &mut Vec<usize>, slot: usize) {
    if let Some(mut c) = conns[slot].take() {
        let _ = poll.registry().deregister(&mut c.stream);
        free.push(slot);
    }
}
