//! One connection to Redis, driven by the event loop like any other socket: non-blocking
//! connect, a pipelined request queue whose replies come back in order, a handshake (`AUTH`,
//! `SELECT`, or a `PING` that proves the peer speaks RESP) before the owner may send anything,
//! and reconnection with exponential backoff and jitter when the link breaks.
//!
//! ```text
//! Down ──(backoff over)──► Resolving ──► Connecting ──(writable)──► Handshake ──(+OK)──► Ready
//!   ▲                         │               │                          │                 │
//!   └─────────────────────────┴───────────────┴──(error, EOF, timeout)───┴─────────────────┘
//! ```
//!
//! A command older than its deadline breaks the link: Redis answers in order, so a reply that
//! does not come means every later one will not either (a stalled server, a dead peer behind a
//! black-holing network). Buffers are bounded: the owner is refused (`send` returns false)
//! beyond `max_out` bytes of commands not yet written, and a reply larger than `limits` allows
//! breaks the link rather than growing memory.
//!
//! The link decides nothing about what the replies mean; its owner reads [`Event`]s.

use super::resp::{self, Limits, Parsed, Value};
use super::url::{Addr, RedisUrl};
use mio::{Interest, Registry, Token};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// First reconnect delay; it doubles per failed attempt up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// Tags at or above this are the link's own (handshake) commands.
const OWN_TAG: u64 = u64::MAX - 16;

/// How to reach and log in to one Redis server.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// What the link is for, in log lines ("commands", "reader").
    pub role: &'static str,
    /// Address, user and database.
    pub url: RedisUrl,
    /// `AUTH` password (overrides the URL's).
    pub password: Option<Vec<u8>>,
    /// A reply later than this (beyond the time a command asks to block) breaks the link.
    pub timeout: Duration,
    /// Most bytes of commands waiting to be written.
    pub max_out: usize,
    /// Bounds on one reply.
    pub limits: Limits,
}

/// What happened on the link, for its owner.
#[derive(Debug)]
pub enum Event {
    /// Connected and logged in: the owner may send (and should send what it must first, e.g.
    /// load its scripts).
    Ready,
    /// The reply to the command sent with this tag (possibly a Redis error value).
    Reply(u64, Value),
    /// The command sent with this tag has no reply and never will on this connection: the link
    /// broke after it was sent (Redis may or may not have carried it out).
    Lost(u64),
    /// The link broke (the reason, for the log); it reconnects by itself.
    Down(String),
}

/// Counters for `/metrics` and the status page.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinkStats {
    /// Connections made that completed the handshake.
    pub connects: u64,
    /// Times the link broke.
    pub breaks: u64,
    /// Commands sent.
    pub commands: u64,
}

enum Stream {
    Tcp(mio::net::TcpStream),
    Unix(mio::net::UnixStream),
}

impl Stream {
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }

    fn connect_error(&self) -> io::Result<()> {
        let err = match self {
            Stream::Tcp(s) => s.take_error()?,
            Stream::Unix(s) => s.take_error()?,
        };
        if let Some(e) = err {
            return Err(e);
        }
        match self {
            Stream::Tcp(s) => s.peer_addr().map(|_| ()),
            Stream::Unix(_) => Ok(()),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

enum State {
    Down {
        retry_at: Instant,
    },
    /// A host name being resolved on a helper thread (name lookup blocks; the loop must not).
    Resolving {
        rx: mpsc::Receiver<io::Result<Vec<SocketAddr>>>,
        deadline: Instant,
    },
    Connecting {
        sock: Stream,
        deadline: Instant,
    },
    Handshake {
        sock: Stream,
    },
    Ready {
        sock: Stream,
    },
}

struct Pending {
    tag: u64,
    deadline: Instant,
}

/// One connection to Redis and its queue of commands (see the module doc).
pub struct Link {
    cfg: LinkConfig,
    token: Token,
    registry: Registry,
    state: State,
    out: Vec<u8>,
    written: usize,
    inbuf: Vec<u8>,
    /// Bytes the next reply needs at least (from the parser), so a large reply is not parsed
    /// again from its start on every read.
    need: usize,
    pending: VecDeque<Pending>,
    attempts: u32,
    rng: u64,
    events: Vec<Event>,
    /// Counters.
    pub stats: LinkStats,
}

impl Link {
    /// A link that connects at the first [`Link::tick`]; its socket registers with `registry`
    /// under `token`.
    pub fn new(cfg: LinkConfig, registry: Registry, token: Token) -> Link {
        let now = Instant::now();
        let rng = crate::clock::unix_ms() ^ (u64::from(std::process::id()) << 32) ^ token.0 as u64;
        Link {
            cfg,
            token,
            registry,
            state: State::Down { retry_at: now },
            out: Vec::new(),
            written: 0,
            inbuf: Vec::new(),
            need: 0,
            pending: VecDeque::new(),
            attempts: 0,
            rng: rng | 1,
            events: Vec::new(),
            stats: LinkStats::default(),
        }
    }

    /// The poll token of this link's socket.
    pub fn token(&self) -> Token {
        self.token
    }

    /// Whether the owner may send.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready { .. })
    }

    /// Commands sent and not answered yet.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Bytes of commands not yet written to the socket.
    pub fn queued_bytes(&self) -> usize {
        self.out.len() - self.written
    }

    /// Queues a command whose reply comes back as `Event::Reply(tag, …)`; `block` is how long
    /// the command itself may take before answering (`XREAD BLOCK`), on top of the link's
    /// timeout. False when the link is not ready or its queue is full: nothing was queued.
    pub fn send(&mut self, args: &[&[u8]], tag: u64, block: Duration) -> bool {
        debug_assert!(tag < OWN_TAG);
        if !self.is_ready() || self.queued_bytes() > self.cfg.max_out {
            return false;
        }
        self.push(args, tag, block);
        true
    }

    fn push(&mut self, args: &[&[u8]], tag: u64, block: Duration) {
        resp::encode_command(&mut self.out, args);
        self.pending.push_back(Pending { tag, deadline: Instant::now() + self.cfg.timeout + block });
        self.stats.commands += 1;
    }

    /// What happened since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// When [`Link::tick`] must run next.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Down { retry_at } => Some(*retry_at),
            // The helper thread cannot wake the loop: look again soon.
            State::Resolving { deadline, .. } => Some((Instant::now() + Duration::from_millis(20)).min(*deadline)),
            State::Connecting { deadline, .. } => Some(*deadline),
            State::Handshake { .. } | State::Ready { .. } => self.pending.front().map(|p| p.deadline),
        }
    }

    /// Connects when the backoff is over, notices a name resolved, and breaks the link when
    /// a reply is overdue.
    pub fn tick(&mut self, now: Instant) {
        match &mut self.state {
            State::Down { retry_at } if now >= *retry_at => self.start(now),
            State::Resolving { rx, deadline } => match rx.try_recv() {
                Ok(Ok(addrs)) => match addrs.first() {
                    Some(a) => self.connect_tcp(*a, now),
                    None => self.fail("the host name has no address"),
                },
                Ok(Err(e)) => self.fail(&format!("cannot resolve the host name: {e}")),
                Err(mpsc::TryRecvError::Empty) if now >= *deadline => self.fail("resolving the host name timed out"),
                Err(mpsc::TryRecvError::Empty) => {}
                Err(mpsc::TryRecvError::Disconnected) => self.fail("resolving the host name failed"),
            },
            State::Connecting { deadline, .. } if now >= *deadline => self.fail("connect timed out"),
            State::Handshake { .. } | State::Ready { .. }
                if self.pending.front().is_some_and(|p| now >= p.deadline) =>
            {
                let secs = self.cfg.timeout.as_secs_f64();
                self.fail(&format!("no reply within {secs} s (Redis stalled or the network drops packets)"));
            }
            _ => {}
        }
    }

    fn start(&mut self, now: Instant) {
        match self.cfg.url.addr.clone() {
            Addr::Unix(path) => match mio::net::UnixStream::connect(&path) {
                Ok(sock) => self.connecting(Stream::Unix(sock), now),
                Err(e) => self.fail(&format!("cannot connect to {}: {e}", path.display())),
            },
            Addr::Tcp { host, port } => {
                let bare = host.trim_start_matches('[').trim_end_matches(']');
                if let Ok(ip) = bare.parse::<IpAddr>() {
                    self.connect_tcp(SocketAddr::new(ip, port), now);
                    return;
                }
                let (tx, rx) = mpsc::channel();
                let spawned = std::thread::Builder::new().name("redis-resolve".into()).spawn(move || {
                    let _ = tx.send((host.as_str(), port).to_socket_addrs().map(|a| a.collect()));
                });
                match spawned {
                    Ok(_) => self.state = State::Resolving { rx, deadline: now + self.cfg.timeout },
                    Err(e) => self.fail(&format!("cannot start a resolver thread: {e}")),
                }
            }
        }
    }

    fn connect_tcp(&mut self, addr: SocketAddr, now: Instant) {
        match mio::net::TcpStream::connect(addr) {
            Ok(sock) => {
                let _ = sock.set_nodelay(true);
                self.connecting(Stream::Tcp(sock), now)
            }
            Err(e) => self.fail(&format!("cannot connect to {addr}: {e}")),
        }
    }

    fn connecting(&mut self, mut sock: Stream, now: Instant) {
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self.registry.register(sock.source(), self.token, interest) {
            self.fail(&format!("cannot register the socket: {e}"));
            return;
        }
        self.state = State::Connecting { sock, deadline: now + self.cfg.timeout };
        // A unix socket is usually connected at once; TCP says so with a writable event.
        self.on_ready(true, false);
    }

    /// The socket is readable or writable (or both): finishes a connect, writes what is
    /// queued, reads every reply there is.
    pub fn on_ready(&mut self, writable: bool, readable: bool) {
        if let State::Connecting { sock, .. } = &mut self.state {
            if !writable {
                return;
            }
            match sock.connect_error() {
                Ok(()) => self.handshake(),
                Err(e) if e.kind() == io::ErrorKind::NotConnected || e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => return self.fail(&format!("cannot connect: {e}")),
            }
        }
        if readable {
            self.read_all();
        }
        self.flush();
    }

    fn handshake(&mut self) {
        let State::Connecting { sock, .. } =
            std::mem::replace(&mut self.state, State::Down { retry_at: Instant::now() })
        else {
            return;
        };
        self.state = State::Handshake { sock };
        // Commands queued for a connection that broke were answered `Lost`; start clean.
        self.out.clear();
        self.written = 0;
        self.inbuf.clear();
        self.need = 0;
        let url = self.cfg.url.clone();
        let password = self.cfg.password.clone().or_else(|| url.password.clone().map(String::into_bytes));
        match (&url.user, &password) {
            (Some(u), Some(p)) => self.push(&[b"AUTH", u.as_bytes(), p], OWN_TAG, Duration::ZERO),
            (None, Some(p)) => self.push(&[b"AUTH", p], OWN_TAG, Duration::ZERO),
            _ => {}
        }
        let db = url.db.to_string();
        // Proves the peer speaks RESP even without AUTH or SELECT; its reply ends the handshake.
        self.push(&[b"SELECT", db.as_bytes()], OWN_TAG + 1, Duration::ZERO);
    }

    /// Writes what is queued, as far as the socket takes it.
    pub fn flush(&mut self) {
        let sock = match &mut self.state {
            State::Handshake { sock } | State::Ready { sock } => sock,
            _ => return,
        };
        while self.written < self.out.len() {
            match sock.write(&self.out[self.written..]) {
                Ok(0) => return self.fail("the connection closed while writing"),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(&format!("write failed: {e}")),
            }
        }
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
        } else if self.written > READ_CHUNK {
            self.out.drain(..self.written);
            self.written = 0;
        }
    }

    fn read_all(&mut self) {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            let sock = match &mut self.state {
                State::Handshake { sock } | State::Ready { sock } => sock,
                _ => return,
            };
            match sock.read(&mut chunk) {
                Ok(0) => return self.fail("Redis closed the connection"),
                Ok(n) => {
                    self.inbuf.extend_from_slice(&chunk[..n]);
                    if !self.parse_replies() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(&format!("read failed: {e}")),
            }
        }
    }

    /// Takes every complete reply from the input buffer; false when the link broke.
    fn parse_replies(&mut self) -> bool {
        let mut at = 0;
        while self.inbuf.len() - at >= self.need.saturating_sub(at).max(1) {
            match resp::parse(&self.inbuf[at..], &self.cfg.limits) {
                Ok(Parsed::Done(value, used)) => {
                    at += used;
                    self.need = 0;
                    if !self.on_reply(value) {
                        return false;
                    }
                }
                Ok(Parsed::Need(n)) => {
                    self.need = n;
                    break;
                }
                Err(e) => {
                    self.fail(&format!("Redis sent what is not RESP: {e:?}"));
                    return false;
                }
            }
        }
        self.inbuf.drain(..at);
        true
    }

    fn on_reply(&mut self, value: Value) -> bool {
        let Some(p) = self.pending.pop_front() else {
            self.fail("Redis sent a reply nobody asked for");
            return false;
        };
        if p.tag < OWN_TAG {
            self.events.push(Event::Reply(p.tag, value));
            return true;
        }
        if let Some(e) = value.error() {
            let what = if p.tag == OWN_TAG { "AUTH" } else { "SELECT" };
            let e = e.to_string();
            self.fail(&format!("{what} refused: {e}"));
            return false;
        }
        if p.tag == OWN_TAG + 1 {
            if let State::Handshake { .. } = self.state {
                let State::Handshake { sock } =
                    std::mem::replace(&mut self.state, State::Down { retry_at: Instant::now() })
                else {
                    unreachable!("matched Handshake above")
                };
                self.state = State::Ready { sock };
                self.attempts = 0;
                self.stats.connects += 1;
                log::info!("redis {}: connected to {}", self.cfg.role, self.cfg.url);
                self.events.push(Event::Ready);
            }
        }
        true
    }

    /// Breaks the link: every command in flight is lost, and a reconnect is due after the
    /// backoff.
    fn fail(&mut self, why: &str) {
        let was_up = matches!(self.state, State::Ready { .. });
        if let State::Connecting { sock, .. } | State::Handshake { sock } | State::Ready { sock } = &mut self.state {
            let _ = self.registry.deregister(sock.source());
        }
        for p in self.pending.drain(..) {
            if p.tag < OWN_TAG {
                self.events.push(Event::Lost(p.tag));
            }
        }
        self.out.clear();
        self.written = 0;
        self.inbuf.clear();
        self.need = 0;
        let delay = self.backoff();
        self.state = State::Down { retry_at: Instant::now() + delay };
        self.stats.breaks += u64::from(was_up);
        if was_up || self.attempts <= 1 {
            log::warn!("redis {}: {} ({why}); retrying in {delay:?}", self.cfg.role, self.cfg.url);
        } else {
            log::debug!("redis {}: {why}; retrying in {delay:?}", self.cfg.role);
        }
        self.events.push(Event::Down(why.to_string()));
    }

    /// Exponential from [`MIN_BACKOFF`] to [`MAX_BACKOFF`], each wait drawn from 50–150 % of
    /// it, so nodes that lost Redis together do not come back in lockstep.
    fn backoff(&mut self) -> Duration {
        self.attempts = self.attempts.saturating_add(1);
        let base = MIN_BACKOFF.saturating_mul(1 << self.attempts.min(8).saturating_sub(1)).min(MAX_BACKOFF);
        // xorshift64: jitter needs spread, not secrecy.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let permille = 500 + self.rng % 1001;
        base.mul_f64(permille as f64 / 1000.0)
    }

    /// Closes the link for good (shutdown).
    pub fn close(&mut self) {
        if let State::Connecting { sock, .. } | State::Handshake { sock } | State::Ready { sock } = &mut self.state {
            let _ = self.registry.deregister(sock.source());
        }
        self.state = State::Down { retry_at: Instant::now() + Duration::from_secs(86_400 * 365) };
    }
}
