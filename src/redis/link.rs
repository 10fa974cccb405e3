//! One connection to Redis, driven by the event loop like any other socket: non-blocking
//! connect, a pipelined request queue whose replies come back in order, a handshake (`AUTH`
//! when there is a password, then `SELECT`, whose `+OK` also proves the peer speaks RESP) before
//! the owner may send anything,
//! and reconnection with exponential backoff and jitter when the link breaks.
//!
//! ```text
//!            ┌──(Sentinel: next one)──┐
//!            ▼                        │
//! Down ──► [Sentinel] ─(its answer: host, port)─┐
//!  ▲ (backoff)                                  ▼
//!  │        Resolving ──► Connecting ──(writable)──► Handshake ──(+OK, ROLE master)──► Ready
//!  │            │               │                          │                           │
//!  └────────────┴───────────────┴──(error, EOF, timeout)───┴───────────────────────────┘
//! ```
//!
//! With Sentinel ([`LinkConfig::sentinel`]) a connect first asks a Sentinel (the one that
//! answered last first, then the others in turn) for the master's address over a connection of
//! its own that goes through the same Resolving → Connecting → Handshake steps (`AUTH` with
//! the Sentinels' password, `SENTINEL get-master-addr-by-name`), closes it, then connects to
//! that master. The master's handshake ends with `ROLE`: a Sentinel can name the old master for
//! a moment during a failover, and a replica must never take the owner's writes. Every
//! Sentinel failing or knowing no such master counts as one failed connect (backoff). While
//! Ready the link asks `ROLE` again every [`ROLE_EVERY`] and breaks when the server is no longer
//! the master; a `READONLY` or `UNBLOCKED` error reply (a demoted master) breaks it too, with or
//! without Sentinel, after the owner has had the reply. Breaking means asking Sentinel again.
//!
//! A command older than its deadline breaks the link: Redis answers in order, so a reply that
//! does not come means every later one will not either (a stalled server, a dead peer behind a
//! black-holing network). Buffers are bounded: the owner is refused (`send` returns false)
//! beyond `max_out` bytes of commands not yet written, and a reply larger than `limits` allows
//! breaks the link rather than growing memory.
//!
//! The link decides nothing about what the replies mean (beyond the errors that say the server
//! is not the master); its owner reads [`Event`]s.

use super::resp::{self, Limits, Parsed, Value};
use super::url::SentinelConfig;
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
/// `AUTH`, to the server or to a Sentinel.
const TAG_AUTH: u64 = OWN_TAG;
/// `SELECT`: without Sentinel its reply ends the handshake.
const TAG_SELECT: u64 = OWN_TAG + 1;
/// `ROLE`: ends the handshake with Sentinel, and re-checks the role while Ready.
const TAG_ROLE: u64 = OWN_TAG + 2;
/// `SENTINEL get-master-addr-by-name`.
const TAG_MASTER: u64 = OWN_TAG + 3;
/// How often a link found through Sentinel asks its server whether it is still the master
/// (a demoted master that keeps its clients connected would otherwise serve stale reads).
pub const ROLE_EVERY: Duration = Duration::from_secs(5);
/// Longest host name accepted from a Sentinel.
const MAX_HOST: usize = 255;

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
    /// Find the master through these Sentinels (the URL's host and port are then unused).
    pub sentinel: Option<SentinelConfig>,
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

/// With Sentinel: where finding the master stands.
#[derive(Default)]
struct Discovery {
    /// The Sentinel (its index) the connection in progress is to; none while it is to a master.
    asking: Option<usize>,
    /// The Sentinel to ask first: the one that answered last.
    first: usize,
    /// Sentinels that failed in this round (a round that reaches them all backs off).
    failed: usize,
    /// The master the last answer named, for the connection to it.
    master: Option<(String, u16)>,
    /// When to ask the master for its role again (while Ready).
    next_role: Option<Instant>,
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
    disc: Discovery,
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
            disc: Discovery::default(),
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
        // Replies come in order: one queued behind a blocking command cannot be due before it.
        let after = self.pending.back().map(|p| p.deadline);
        let deadline = (Instant::now() + self.cfg.timeout + block).max(after.unwrap_or(Instant::now()));
        self.pending.push_back(Pending { tag, deadline });
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
            State::Handshake { .. } => self.pending.front().map(|p| p.deadline),
            State::Ready { .. } => {
                [self.pending.front().map(|p| p.deadline), self.disc.next_role].into_iter().flatten().min()
            }
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
            State::Ready { .. } if self.disc.next_role.is_some_and(|t| now >= t) => {
                self.disc.next_role = Some(now + ROLE_EVERY);
                self.push(&[b"ROLE"], TAG_ROLE, Duration::ZERO);
                self.flush();
            }
            _ => {}
        }
    }

    /// Where the next connect goes: the URL's server, or with Sentinel the master just named,
    /// else the next Sentinel to ask.
    fn target(&mut self) -> Addr {
        let Some(s) = &self.cfg.sentinel else { return self.cfg.url.addr.clone() };
        if let Some((host, port)) = &self.disc.master {
            return Addr::Tcp { host: host.clone(), port: *port };
        }
        // Config validation guarantees at least one address; `max(1)` keeps `%` defined anyway.
        let i = (self.disc.first + self.disc.failed) % s.addresses.len().max(1);
        self.disc.asking = Some(i);
        let (host, port) = s.addresses.get(i).cloned().unwrap_or_default();
        Addr::Tcp { host, port }
    }

    /// What the connection in progress is to, for log lines.
    fn peer(&self) -> String {
        let Some(s) = &self.cfg.sentinel else { return self.cfg.url.to_string() };
        let sentinel = |i: usize| match s.addresses.get(i) {
            Some((host, port)) => format!("sentinel {}", Addr::Tcp { host: host.clone(), port: *port }),
            None => "sentinel ?".to_string(),
        };
        match (&self.disc.master, self.disc.asking) {
            (_, Some(i)) => sentinel(i),
            (Some((host, port)), None) => format!(
                "master {:?} at {} (from {})",
                s.master,
                Addr::Tcp { host: host.clone(), port: *port },
                sentinel(self.disc.first)
            ),
            (None, None) => format!("master {:?} (through Sentinel)", s.master),
        }
    }

    fn start(&mut self, now: Instant) {
        match self.target() {
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
        if let (Some(s), Some(_)) = (&self.cfg.sentinel, self.disc.asking) {
            let (master, password) = (s.master.clone(), s.password.clone());
            if let Some(p) = password {
                self.push(&[b"AUTH", &p], TAG_AUTH, Duration::ZERO);
            }
            self.push(&[b"SENTINEL", b"get-master-addr-by-name", master.as_bytes()], TAG_MASTER, Duration::ZERO);
            return;
        }
        let url = self.cfg.url.clone();
        let password = self.cfg.password.clone().or_else(|| url.password.clone().map(String::into_bytes));
        match (&url.user, &password) {
            (Some(u), Some(p)) => self.push(&[b"AUTH", u.as_bytes(), p], TAG_AUTH, Duration::ZERO),
            (None, Some(p)) => self.push(&[b"AUTH", p], TAG_AUTH, Duration::ZERO),
            _ => {}
        }
        let db = url.db.to_string();
        // Proves the peer speaks RESP even without AUTH; without Sentinel its reply ends the
        // handshake, with Sentinel `ROLE`'s does.
        self.push(&[b"SELECT", db.as_bytes()], TAG_SELECT, Duration::ZERO);
        if self.cfg.sentinel.is_some() {
            self.push(&[b"ROLE"], TAG_ROLE, Duration::ZERO);
        }
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
            let demoted = value.error().is_some_and(not_master_error);
            let why = value.error().map(|e| format!("the server is not the master any more: {e}"));
            self.events.push(Event::Reply(p.tag, value));
            if let (true, Some(why)) = (demoted, why) {
                // The owner has its error reply (a failed write); what follows goes elsewhere.
                self.fail(&why);
                return false;
            }
            return true;
        }
        match (p.tag, value.error()) {
            (TAG_ROLE, Some(e)) if e.starts_with("NOPERM") => {
                // An ACL user without ROLE: READONLY replies remain the guard against a replica.
                log::warn!("redis {}: ROLE refused ({e}); the master's role is not checked", self.cfg.role);
                self.disc.next_role = None;
                self.ready();
                true
            }
            (_, Some(e)) => {
                let what = match p.tag {
                    TAG_AUTH => "AUTH",
                    TAG_SELECT => "SELECT",
                    TAG_ROLE => "ROLE",
                    _ => "SENTINEL get-master-addr-by-name",
                };
                let e = e.to_string();
                self.fail(&format!("{what} refused: {e}"));
                false
            }
            (TAG_SELECT, None) if self.cfg.sentinel.is_none() => {
                self.ready();
                true
            }
            (TAG_ROLE, None) => match role(&value) {
                Some(b"master") => {
                    self.ready();
                    true
                }
                other => {
                    let other = String::from_utf8_lossy(other.unwrap_or(b"unknown")).into_owned();
                    self.fail(&format!("the server's ROLE is {other:?}, not master"));
                    false
                }
            },
            (TAG_MASTER, None) => match master_addr(&value) {
                Some(addr) => {
                    self.found(addr);
                    false
                }
                None => {
                    let master = self.cfg.sentinel.as_ref().map(|s| s.master.clone()).unwrap_or_default();
                    self.fail(&format!("it knows no master named {master:?}"));
                    false
                }
            },
            _ => true,
        }
    }

    /// The handshake is over: the owner may send (once per connection; a later `ROLE` check
    /// that says `master` changes nothing).
    fn ready(&mut self) {
        if !matches!(self.state, State::Handshake { .. }) {
            return;
        }
        let State::Handshake { sock } = std::mem::replace(&mut self.state, State::Down { retry_at: Instant::now() })
        else {
            unreachable!("matched Handshake above")
        };
        self.state = State::Ready { sock };
        self.attempts = 0;
        self.stats.connects += 1;
        if self.cfg.sentinel.is_some() {
            self.disc.next_role = Some(Instant::now() + ROLE_EVERY);
            log::info!("redis {}: {}", self.cfg.role, self.peer());
        } else {
            log::info!("redis {}: connected to {}", self.cfg.role, self.cfg.url);
        }
        self.events.push(Event::Ready);
    }

    /// A Sentinel named the master: its connection is closed and the master's is due now.
    fn found(&mut self, addr: (String, u16)) {
        if let State::Handshake { sock } = &mut self.state {
            let _ = self.registry.deregister(sock.source());
        }
        self.disc.first = self.disc.asking.take().unwrap_or(self.disc.first);
        self.disc.failed = 0;
        self.disc.master = Some(addr);
        log::debug!("redis {}: {}", self.cfg.role, self.peer());
        self.pending.clear();
        self.out.clear();
        self.written = 0;
        self.inbuf.clear();
        self.need = 0;
        // The next tick connects (not from here: this runs inside the read loop).
        self.state = State::Down { retry_at: Instant::now() };
    }

    /// Breaks the link: every command in flight is lost, and a reconnect is due after the
    /// backoff.
    fn fail(&mut self, why: &str) {
        let was_up = matches!(self.state, State::Ready { .. });
        let peer = self.peer();
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
        self.disc.master = None;
        self.disc.next_role = None;
        if let (Some(s), Some(_)) = (&self.cfg.sentinel, self.disc.asking.take()) {
            self.disc.failed += 1;
            if self.disc.failed < s.addresses.len() {
                log::debug!("redis {}: {peer}: {why}; asking the next Sentinel", self.cfg.role);
                self.state = State::Down { retry_at: Instant::now() };
                return;
            }
            // A whole round failed: one failed connect, backed off like any other.
            self.disc.failed = 0;
        }
        let delay = self.backoff();
        self.state = State::Down { retry_at: Instant::now() + delay };
        self.stats.breaks += u64::from(was_up);
        if was_up || self.attempts <= 1 {
            log::warn!("redis {}: {peer} ({why}); retrying in {delay:?}", self.cfg.role);
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

/// Whether an error reply says the server is not (or no longer) the master: a demoted master
/// refuses writes (`READONLY`, a script's write included) and ends blocked reads (`UNBLOCKED`).
fn not_master_error(e: &str) -> bool {
    let kind = e.split(' ').next().unwrap_or("");
    kind == "READONLY" || kind == "UNBLOCKED"
}

/// The master's address in Sentinel's answer to `SENTINEL get-master-addr-by-name`: `[host,
/// port]`; none for nil (no such master) or anything malformed.
pub(crate) fn master_addr(v: &Value) -> Option<(String, u16)> {
    let [host, port] = v.as_array()? else { return None };
    let host = std::str::from_utf8(host.as_bytes()?).ok()?;
    let sane = |b: u8| b.is_ascii_graphic() && b != b'/' && b != b'@';
    if host.is_empty() || host.len() > MAX_HOST || !host.bytes().all(sane) {
        return None;
    }
    let port = std::str::from_utf8(port.as_bytes()?).ok()?.parse::<u16>().ok().filter(|p| *p > 0)?;
    Some((host.to_string(), port))
}

/// The role in a `ROLE` reply: its first element (`master`, `slave`, `sentinel`).
pub(crate) fn role(v: &Value) -> Option<&[u8]> {
    v.as_array()?.first()?.as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parsed(raw: &[u8]) -> Value {
        let limits = Limits { max_bulk: 1024, max_elements: 64, max_depth: 4 };
        match resp::parse(raw, &limits) {
            Ok(Parsed::Done(v, n)) if n == raw.len() => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn reconnects_back_off_exponentially_with_jitter_and_a_cap() {
        let poll = mio::Poll::new().unwrap();
        let cfg = LinkConfig {
            role: "test",
            url: super::super::url::parse_url("redis://127.0.0.1:1/0").unwrap(),
            password: None,
            timeout: Duration::from_secs(1),
            max_out: 1 << 20,
            limits: Limits::default(),
            sentinel: None,
        };
        let mut link = Link::new(cfg, poll.registry().try_clone().unwrap(), Token(7));
        for attempt in 1..=12u32 {
            let base = MIN_BACKOFF.saturating_mul(1 << (attempt.min(8) - 1)).min(MAX_BACKOFF);
            let d = link.backoff();
            assert!(d >= base / 2 && d <= base.mul_f64(1.5), "attempt {attempt}: {d:?} around {base:?}");
        }
        assert!(link.backoff() <= MAX_BACKOFF.mul_f64(1.5));
    }

    #[test]
    fn sentinel_names_the_master_or_nil() {
        let v = parsed(b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6380\r\n");
        assert_eq!(master_addr(&v), Some(("127.0.0.1".to_string(), 6380)));
        let v6 = parsed(b"*2\r\n$3\r\n::1\r\n$5\r\n26379\r\n");
        assert_eq!(master_addr(&v6), Some(("::1".to_string(), 26379)));
        // No such master: nil (RESP2 answers a nil array).
        assert_eq!(master_addr(&parsed(b"*-1\r\n")), None);
        assert_eq!(master_addr(&parsed(b"$-1\r\n")), None);
        for bad in [
            &b"-IDONTKNOW No such master\r\n"[..],
            b"*1\r\n$4\r\nhost\r\n",
            b"*3\r\n$1\r\nh\r\n$1\r\n1\r\n$1\r\n2\r\n",
            b"*2\r\n$0\r\n\r\n$4\r\n6379\r\n",
            b"*2\r\n$1\r\nh\r\n$1\r\n0\r\n",
            b"*2\r\n$1\r\nh\r\n$5\r\n65536\r\n",
            b"*2\r\n$1\r\nh\r\n$2\r\n-1\r\n",
            b"*2\r\n$3\r\na b\r\n$4\r\n6379\r\n",
            b"*2\r\n$3\r\na/b\r\n$4\r\n6379\r\n",
            b"*2\r\n$2\r\n\xff\xfe\r\n$4\r\n6379\r\n",
            b"*2\r\n*0\r\n$4\r\n6379\r\n",
        ] {
            assert_eq!(master_addr(&parsed(bad)), None, "{:?}", String::from_utf8_lossy(bad));
        }
        let long = format!("*2\r\n$256\r\n{}\r\n$4\r\n6379\r\n", "h".repeat(256));
        assert_eq!(master_addr(&parsed(long.as_bytes())), None, "a host name longer than 255");
    }

    #[test]
    fn role_is_the_first_element_of_its_reply() {
        // What Redis 7 answers: master (offset, replicas), replica (master's host, port, state, offset).
        let master =
            parsed(b"*3\r\n$6\r\nmaster\r\n:3129659\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9001\r\n$7\r\n3129242\r\n");
        assert_eq!(role(&master), Some(&b"master"[..]));
        let replica = parsed(b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:9000\r\n$9\r\nconnected\r\n:3167038\r\n");
        assert_eq!(role(&replica), Some(&b"slave"[..]));
        assert_eq!(role(&parsed(b"*0\r\n")), None);
        assert_eq!(role(&parsed(b"*-1\r\n")), None);
        assert_eq!(role(&parsed(b"+master\r\n")), None, "not an array");
        assert_eq!(role(&parsed(b"-ERR unknown command\r\n")), None);
    }

    #[test]
    fn a_demoted_master_s_errors_are_recognised() {
        assert!(not_master_error("READONLY You can't write against a read only replica."));
        assert!(not_master_error(
            "READONLY You can't write against a read only replica. script: 59997d77, on @user_script:1."
        ));
        assert!(not_master_error("UNBLOCKED force unblock from blocking operation, instance state changed"));
        assert!(!not_master_error("ERR unknown command 'FOO'"));
        assert!(!not_master_error("NOSCRIPT No matching script"));
        assert!(!not_master_error("ERR READONLY is a word in this message"));
        assert!(!not_master_error(""));
    }

    proptest! {
        #[test]
        fn any_reply_is_parsed_without_panic(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let limits = Limits { max_bulk: 64, max_elements: 8, max_depth: 3 };
            if let Ok(Parsed::Done(v, _)) = resp::parse(&raw, &limits) {
                if let Some((host, port)) = master_addr(&v) {
                    prop_assert!(!host.is_empty() && host.len() <= MAX_HOST && port > 0);
                }
                let _ = role(&v);
                if let Some(e) = v.error() {
                    let _ = not_master_error(e);
                }
            }
        }

        #[test]
        fn any_sane_address_comes_back_as_sent(host in "[a-z0-9.:-]{1,40}", port in 1u16..) {
            let raw = format!("*2\r\n${}\r\n{host}\r\n${}\r\n{port}\r\n", host.len(), port.to_string().len());
            prop_assert_eq!(master_addr(&parsed(raw.as_bytes())), Some((host, port)));
        }
    }
}
