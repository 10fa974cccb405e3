//! The event loop: one `mio::Poll` owning the listener, every connection, the signal pipe and
//! all timers. It only dispatches: readiness goes to the connection, published events are fanned
//! out to subscribers' queues once per turn, queues are written with one `writev` each, a slice
//! per turn (`write_queue`), and the poll timeout is the nearest deadline.

use crate::app::App;
use crate::auth::canonical;
use crate::config::Config;
use crate::conn::{Close, Conn};
use crate::metrics::{Histogram, Transport, LATENCY_BUCKETS, RUN_BUCKETS};
use crate::sessions::{Refusal, Sessions};
use crate::write_queue::WriteQueue;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_mio::v1_0::Signals;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

// The poll's tokens, all of them: connections count up from 0 (`Sessions`), the runner's child
// pipes from `runner::TOKEN_BASE` (a quarter of the token space) up, the log sources' pipes from
// `sources::TOKEN_BASE` (half of it) up, and the loop's own sit at the top. Fractions of
// `usize::MAX`, not fixed powers of two, so a 32-bit build (armv7) has the same layout.
const LISTENER: Token = Token(usize::MAX - 1);
const SIGNALS: Token = Token(usize::MAX - 2);
/// The journal's writer thread wakes the loop through this when records became durable.
const WAKER: Token = Token(usize::MAX - 3);
/// How long a cluster node waits at start for Redis (to read the shared log) before it serves
/// without it.
const LOG_WAIT: Duration = Duration::from_secs(10);
/// Scratch buffer every read goes through; only leftovers are copied into a connection.
const READ_SCRATCH: usize = 64 * 1024;
/// How often a journal replay tells systemd it is still starting (and extends its timeout).
const REPLAY_NOTE_EVERY: Duration = Duration::from_secs(5);
/// How long a SIGTERM drain may take before the remaining connections are dropped.
const DRAIN: Duration = Duration::from_millis(500);
/// Pause after the process ran out of file descriptors, before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How often `-hotreload` looks at the hooks files (one `stat` each).
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Longest a turn spends writing fan-out queues before it looks at the sockets again. Shorter
/// slices let a publisher that waits for each answer in sooner, so writes carry more events:
/// more throughput, but each write takes longer and an event waits longer for its turn. Measured
/// with 1 000 events back to back to 1 000 subscribers (scripts/bench.sh, burst): 0.5 ms gave
/// 1.3 M deliveries/s and p99 21-35 ms, 1 ms 740-800 k/s and p99 17-27 ms, 2 ms 440 k/s and p99
/// 19-21 ms.
const WRITE_SLICE: Duration = Duration::from_millis(1);
/// While subscribers wait to be written, a turn writes at least this many times as long as the
/// rest of it took.
const WRITE_SHARE: u32 = 3;

/// A canned answer for connections refused at accept (written best-effort, never queued).
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 54\r\nConnection: close\r\nRetry-After: 1\r\n\r\n{\"error\":\"too many connections\",\"status\":503,\"retry\":1}";

/// Why the daemon could not start; each names what failed (and its path or address).
#[derive(Debug)]
pub enum StartError {
    /// The listener systemd passed (`LISTEN_FDS`) could not be adopted.
    Inherited(io::Error),
    /// The listen address could not be bound.
    Listen(SocketAddr, io::Error),
    /// The journal could not be opened, locked or read (the error names the path).
    Journal(crate::journal::OpenError),
    /// Something the loop needs could not be set up (what, and the error).
    Setup(&'static str, io::Error),
}

impl StartError {
    fn setup(what: &'static str) -> impl FnOnce(io::Error) -> StartError {
        move |e| StartError::Setup(what, e)
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Inherited(e) => write!(f, "cannot use the listening socket systemd passed: {e}"),
            StartError::Listen(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            StartError::Journal(e) => write!(f, "journal: {e}"),
            StartError::Setup(what, e) => write!(f, "cannot set up {what}: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// The start-up (and reload) line naming every hook served, by id.
pub(crate) fn log_hooks(hooks: &crate::hooks::intake::Hooks) {
    let ids: Vec<&str> = hooks.iter().map(|h| h.def.id.as_str()).collect();
    log::info!(count = ids.len(), ids = ids.join(","); "hooks loaded");
}

/// Where the daemon is in its life: shutting down is two phases, each with its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Accepting and serving.
    Running,
    /// SIGTERM or SIGINT arrived: no more accepts, queued deploys cancelled, the running ones
    /// given until the deadline (none: no deploy was running) while everyone watches them end.
    FinishingRuns(Option<Instant>),
    /// No deploy runs any more: connections have until the deadline to flush, then the loop ends.
    Draining(Instant),
}

/// The server: the poll, its sockets and the application state.
pub struct Server {
    poll: Poll,
    listener: Option<TcpListener>,
    local_addr: SocketAddr,
    signals: Signals,
    sessions: Sessions,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    app: App,
    scratch: Box<[u8]>,
    /// Connections with output to write: answers this turn, fan-outs a slice per turn.
    writes: WriteQueue,
    /// Connections to read again at the start of the next turn: a read stopped at the input cap
    /// and room was made since (see `Conn::wants_read`).
    reread: Vec<usize>,
    fanout: Vec<usize>,
    keepalive: Rc<[u8]>,
    next_keepalive: Instant,
    ping: Rc<[u8]>,
    next_ping: Instant,
    accept_paused_until: Option<Instant>,
    /// In a cluster, until the reader has read the shared log to its end (or this deadline
    /// passed with Redis away): connections wait in the kernel's queue meanwhile, as they do
    /// during a journal replay, so that no subscriber meets a half-read history.
    awaiting_log: Option<Instant>,
    phase: Phase,
    /// Where SIGHUP reads the configuration again.
    source: Option<crate::config::ConfigSource>,
    /// systemd's notification socket, when running under `Type=notify`.
    notifier: Option<crate::notify::Notifier>,
    /// When the next `WATCHDOG=1` is due.
    next_watchdog: Option<Instant>,
    /// `-hotreload`: the hooks files watched and what they looked like at the last look.
    watched: Vec<(std::path::PathBuf, Option<FileStamp>)>,
    /// When to look at them again.
    next_watch: Option<Instant>,
}

/// What identifies a version of a file without reading it: device, inode (a rename over it
/// changes it), size and modification time to the nanosecond.
type FileStamp = (u64, u64, u64, i64, i64);

fn stamp(path: &std::path::Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

impl Server {
    /// Replays the journal, then binds the listener and prepares the loop (nothing runs until
    /// [`Server::run`]).
    ///
    /// The listener is bound only after the replay (and a failed replay never binds): a client
    /// of a slow start is refused at once and retries, instead of connecting and hanging in the
    /// backlog for the whole replay, or through a crash loop. A listener systemd passed (socket
    /// activation) is adopted first but accepted from only after the replay: there, waiting in
    /// the kernel's backlog is the point.
    pub fn bind(cfg: Config, hooks: crate::hooks::intake::Hooks) -> Result<Server, StartError> {
        // Adopt systemd's sockets (socket activation) before opening any descriptor of our own.
        let passed = crate::notify::listener_from_env().map_err(StartError::Inherited)?;
        let poll = Poll::new().map_err(StartError::setup("the poll"))?;
        // A write past a file-size limit (systemd's LimitFSIZE, a quota) raises SIGXFSZ, whose
        // default kills the process: with a handler the write fails with EFBIG instead, and the
        // journal refuses work (503) as it does when the disk is full. A handler, unlike
        // SIG_IGN, is reset at exec, so deploy commands keep the default.
        signal_hook::flag::register(signal_hook::consts::SIGXFSZ, Arc::new(AtomicBool::new(false)))
            .map_err(StartError::setup("signals"))?;
        let mut signals =
            Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGCHLD]).map_err(StartError::setup("signals"))?;
        poll.registry().register(&mut signals, SIGNALS, Interest::READABLE).map_err(StartError::setup("signals"))?;
        let registry = poll.registry().try_clone().map_err(StartError::setup("the poll"))?;
        log_hooks(&hooks);
        let mut app = App::new(cfg, hooks, registry);
        let notifier = crate::notify::Notifier::from_env();
        if let Some(dir) = app.cfg.state_dir.clone() {
            let j = &app.cfg.journal;
            let jcfg = crate::journal::JournalConfig {
                dir: dir.join("journal"),
                fsync: j.fsync,
                segment_bytes: j.segment_bytes,
                max_bytes: j.max_bytes,
                max_age: j.max_age,
                copies: true,
            };
            let waker = mio::Waker::new(poll.registry(), WAKER).map_err(StartError::setup("the journal's waker"))?;
            let t0 = Instant::now();
            let mut st = crate::app::Restore::new();
            // A long replay (a large journal on a slow disk) must not meet systemd's start
            // timeout: that would kill it and start it again, in a loop. The first note goes out
            // once a replay is more than trivial, then one every REPLAY_NOTE_EVERY.
            let mut next_note = t0;
            let mut read = 0u64;
            let (journal, replay) = crate::journal::Journal::open(jcfg, std::sync::Arc::new(waker), &mut |rec| {
                app.restore_record(&mut st, rec);
                read += 1;
                if read % 1024 == 0 && notifier.is_some() && Instant::now() >= next_note {
                    next_note = Instant::now() + REPLAY_NOTE_EVERY;
                    if let Some(n) = &notifier {
                        let extend = (3 * REPLAY_NOTE_EVERY).as_micros();
                        n.notify(&format!(
                            "EXTEND_TIMEOUT_USEC={extend}\nSTATUS=replaying the journal: {read} records"
                        ));
                    }
                }
            })
            .map_err(StartError::Journal)?;
            let (events, deliveries, runs) = app.restore_done(st);
            if !replay.skipped.is_empty() {
                log::error!(
                    "journal: {} damaged range(s) skipped, every valid record around them kept; see the errors above",
                    replay.skipped.len()
                );
            }
            log::info!(
                "journal: {} segment(s), {} records replayed in {:?}: {events} events, {deliveries} deliveries, \
                 {runs} run records",
                replay.segments,
                replay.records,
                t0.elapsed()
            );
            app.journal = Some(journal);
            // The states just replayed may live in segments retention is about to delete.
            app.copy_states();
        }
        if let Some(c) = app.cfg.cluster.clone() {
            log::info!("cluster {:?}: node {:?}, log on {}", c.name, c.node, c.redis);
            // The largest entry: a webhook's request as JSON (its body in base64, its header
            // fields, the rest of the record) or a publish's data.
            let l = &app.cfg.limits;
            let max_entry = l.max_body_bytes / 3 * 4 + 2 * l.max_header_bytes + 64 * 1024;
            let cluster = crate::cluster::Cluster::new(c, poll.registry(), app.cfg.dedup_window, max_entry)
                .map_err(StartError::setup("the Redis links"))?;
            app.cluster = Some(cluster);
            app.hub.follow_log();
            app.runner.set_node(app.cfg.cluster.as_ref().map_or_else(String::new, |c| c.node.clone()));
        }
        let mut listener = match passed {
            Some(l) => {
                log::info!("socket activation: using the listener systemd passed (listen {} ignored)", app.cfg.listen);
                TcpListener::from_std(l)
            }
            // Not mio's `TcpListener::bind`: its backlog of 128 overflows in a reconnect storm.
            None => crate::sys::tcp_listener(app.cfg.listen, app.cfg.reuse_port)
                .map(TcpListener::from_std)
                .map_err(|e| StartError::Listen(app.cfg.listen, e))?,
        };
        let local_addr = listener.local_addr().map_err(StartError::setup("the listener"))?;
        if local_addr.ip().is_unspecified() {
            // `--listen :9001` and `0.0.0.0`: worth saying, since the default is loopback only.
            log::info!("listening on every interface ({local_addr}): reachable from other machines");
        }
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(StartError::setup("the listener"))?;
        let app_awaits_log = app.cluster.as_ref().map(|_| app.now + LOG_WAIT);
        let next_keepalive = app.now + app.cfg.sse.keepalive;
        let next_ping = app.now + app.cfg.ws.ping_interval;
        Ok(Server {
            poll,
            listener: Some(listener),
            local_addr,
            signals,
            sessions: Sessions::default(),
            timers: BinaryHeap::new(),
            app,
            scratch: vec![0; READ_SCRATCH].into_boxed_slice(),
            writes: WriteQueue::default(),
            reread: Vec::new(),
            fanout: Vec::new(),
            keepalive: Rc::from(crate::sse::KEEPALIVE),
            next_keepalive,
            ping: Rc::from(crate::ws::frame::encode_frame(crate::ws::frame::Opcode::Ping, b"")),
            next_ping,
            accept_paused_until: None,
            awaiting_log: app_awaits_log,
            phase: Phase::Running,
            source: None,
            notifier,
            next_watchdog: None,
            watched: Vec::new(),
            next_watch: None,
        })
    }

    /// Remembers where the configuration came from, for SIGHUP.
    pub fn set_source(&mut self, source: crate::config::ConfigSource) {
        self.source = Some(source);
    }

    /// Reloads the configuration when one of `files` changes (adnanh's `-hotreload`). A timer
    /// and a `stat` per file, on the loop: a few microseconds a second, where inotify would
    /// need another descriptor and still miss editors that replace the file by a rename.
    pub fn watch_hooks_files(&mut self, files: Vec<std::path::PathBuf>) {
        for f in &files {
            log::info!("hot reload: watching {}", f.display());
        }
        self.watched = files
            .into_iter()
            .map(|f| {
                let s = stamp(&f);
                (f, s)
            })
            .collect();
        self.next_watch = Some(Instant::now() + WATCH_INTERVAL);
    }

    fn check_watched(&mut self) {
        let Some(at) = self.next_watch else { return };
        if self.app.now < at {
            return;
        }
        self.next_watch = Some(self.app.now + WATCH_INTERVAL);
        let mut changed = None;
        for (path, last) in &mut self.watched {
            let now = stamp(path);
            if now != *last {
                *last = now;
                changed.get_or_insert_with(|| path.display().to_string());
            }
        }
        if let Some(path) = changed {
            log::info!("hot reload: {path} changed");
            self.reload("hot reload");
        }
    }

    /// SIGHUP (and SIGUSR1, adnanh's reload signal, and `-hotreload`): reads and checks the
    /// configuration again and, if it is good, puts it in force without touching a connection.
    /// A broken one is logged and the running one stays.
    fn reload(&mut self, why: &str) {
        let Some(source) = self.source.clone() else {
            log::warn!("{why}: no configuration source to reload from");
            return;
        };
        let t0 = Instant::now();
        match source.load() {
            Err(e) => log::error!("{why}: configuration refused, the running one stays: {e}"),
            Ok((cfg, hooks)) => {
                for w in hooks.iter().flat_map(|h| &h.def.warnings) {
                    log::warn!("{why}: {w}");
                }
                for note in self.app.reload(cfg, hooks) {
                    log::warn!("{why}: {note}");
                }
                self.recheck_subscribers();
                log_hooks(&self.app.hooks);
                log::info!("{why}: configuration reloaded in {:?} ({} hooks)", t0.elapsed(), self.app.hooks.len());
            }
        }
    }

    /// Puts a reloaded configuration's tokens and rules in force for the streams already open:
    /// a revoked token or a narrowed rule cuts the subscribers it no longer covers.
    fn recheck_subscribers(&mut self) {
        let mut cut = 0;
        for t in 0..self.sessions.capacity() {
            let Some(slot) = self.sessions.get_mut(t) else { continue };
            if slot.conn.recheck(&mut self.app) {
                cut += 1;
                slot.conn.flush(&mut self.app);
                self.settle(t);
            }
        }
        if cut > 0 {
            log::warn!("SIGHUP: {cut} subscriber(s) no longer allowed by the new configuration were disconnected");
        }
    }

    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Runs until SIGTERM or SIGINT, then drains and returns.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let sources = self.app.cfg.sources.clone();
        self.app.sources.set_config(&sources, Instant::now());
        if let Some(n) = &self.notifier {
            if self.awaiting_log.is_none() {
                n.ready();
            }
            self.next_watchdog = n.watchdog_interval().map(|i| Instant::now() + i);
        }
        loop {
            let timeout = self.next_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            self.app.tick();
            self.check_watched();
            if let (Some(n), Some(at)) = (&self.notifier, self.next_watchdog) {
                if self.app.now >= at {
                    n.watchdog();
                    self.next_watchdog = n.watchdog_interval().map(|i| self.app.now + i);
                }
            }
            self.reread_all();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.accept_all(),
                    SIGNALS => self.on_signals(),
                    // Records became durable (or the journal failed): handled below, every turn.
                    WAKER => {}
                    t @ (crate::cluster::WRITER_TOKEN | crate::cluster::READER_TOKEN) => {
                        if let Some(c) = self.app.cluster.as_mut() {
                            c.on_event(t, ev.is_readable() || ev.is_read_closed() || ev.is_error(), ev.is_writable());
                        }
                    }
                    Token(t) if t >= crate::sources::TOKEN_BASE => self.app.sources.on_readable(Token(t), self.app.now),
                    Token(t) if t >= crate::runner::TOKEN_BASE => self.app.runner.on_readable(Token(t)),
                    Token(t) => {
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            // Without a hang-up in this event, a short read means the socket is
                            // empty: a later byte is a new edge, so no read has to meet EAGAIN.
                            self.drive(t, ev.is_read_closed() || ev.is_error());
                        }
                        if ev.is_writable() {
                            self.on_writable(t);
                        }
                        self.settle(t);
                    }
                }
            }
            self.fire_timers();
            if self.app.cluster.as_ref().is_some_and(|c| c.wants_status(self.app.now)) {
                let line = crate::status::node_line(&self.app, self.local_addr);
                if let Some(c) = self.app.cluster.as_mut() {
                    c.set_status(line);
                }
            }
            if let Some(c) = self.app.cluster.as_mut() {
                c.tick(self.app.now);
            }
            self.check_log_read();
            self.release_durable();
            self.app.runner.read_more();
            self.app.runner.tick(self.app.now);
            self.app.sources.read_more(self.app.now);
            self.app.sources.tick(self.app.now);
            self.end_of_turn();
            if let Phase::FinishingRuns(grace_until) = self.phase {
                // Everyone stays connected to watch the deploys end.
                if self.app.runner.active() > 0 && grace_until.is_some_and(|d| self.app.now >= d) {
                    log::warn!("shutdown grace over: killing {} running deploy(s)", self.app.runner.active());
                    self.app.runner.kill_all(self.app.now);
                    self.end_of_turn();
                }
                if self.app.runner.active() == 0 {
                    self.close_for_drain();
                }
            }
            // Checked in the same turn the drain began: with nothing open, exit at once.
            if let Phase::Draining(until) = self.phase {
                if self.sessions.open() == 0 || self.app.now >= until {
                    if let Some(j) = self.app.journal.take() {
                        // Everything appended so far reaches the disk before we exit.
                        j.close();
                    }
                    if let Some(c) = self.app.cluster.as_mut() {
                        c.close();
                    }
                    self.app.sources.kill_all();
                    log::info!("stopped ({} connections dropped at the end of the drain)", self.sessions.open());
                    return Ok(());
                }
            }
        }
    }

    /// Starts accepting once the cluster's log has been read to its end, or when the wait
    /// for it is over (Redis away at start: the node serves, degraded; resumes get `reset`
    /// until it has read the log).
    fn check_log_read(&mut self) {
        let Some(until) = self.awaiting_log else { return };
        let caught_up = self.app.cluster.as_ref().is_some_and(|c| c.caught_up());
        if !caught_up && self.app.now < until {
            return;
        }
        if caught_up {
            log::info!(
                "cluster: the shared log is read ({} events in history); accepting connections",
                self.app.hub.stats().history_events
            );
        } else {
            log::warn!("cluster: Redis not reachable after {LOG_WAIT:?}; accepting connections without the shared log");
        }
        self.awaiting_log = None;
        if let Some(n) = &self.notifier {
            n.ready();
        }
        self.accept_all();
    }

    /// What every turn ends with, in this order: runs' output becomes events and answers, the
    /// events reach the subscribers' queues, and every queue touched is written once.
    fn end_of_turn(&mut self) {
        // First what the log brought: runs it starts report their state in this same turn.
        crate::follow::apply(&mut self.app);
        self.app.pump_runner();
        self.app.pump_sources();
        self.answer_run_waiters();
        self.send_resets();
        self.fan_out();
        self.write_queued();
        if let Some(c) = self.app.cluster.as_mut() {
            // This turn's appends share one write.
            c.flush();
        }
    }

    /// Tells every live subscriber about holes in what this node could read from the cluster's
    /// log.
    fn send_resets(&mut self) {
        let Some(through) = self.app.resets.drain(..).max() else { return };
        for t in 0..self.sessions.capacity() {
            let Some(slot) = self.sessions.get_mut(t) else { continue };
            slot.conn.push_reset(through);
            if !slot.dirty {
                slot.dirty = true;
                self.writes.push(t);
            }
        }
    }

    fn next_timeout(&mut self) -> Option<Duration> {
        let now = Instant::now();
        let mut next = self.next_keepalive.min(self.next_ping);
        if let Some(Reverse((t, _))) = self.timers.peek() {
            next = next.min(*t);
        }
        if self.app.runner.has_more()
            || self.app.sources.has_more()
            || !self.reread.is_empty()
            || !self.writes.is_empty()
        {
            return Some(Duration::ZERO);
        }
        let phase_deadline = match self.phase {
            Phase::Running => None,
            Phase::FinishingRuns(until) => until,
            Phase::Draining(until) => Some(until),
        };
        for t in [
            self.awaiting_log,
            self.app.cluster.as_ref().and_then(|c| c.next_deadline()),
            self.accept_paused_until,
            phase_deadline,
            self.app.runner.next_deadline(),
            self.app.sources.next_deadline(),
            self.next_watchdog,
            self.next_watch,
        ]
        .into_iter()
        .flatten()
        {
            next = next.min(t);
        }
        // Round up to the next millisecond so a deadline is never polled for as 0 ms early.
        Some(next.saturating_duration_since(now) + Duration::from_micros(500))
    }

    fn accept_all(&mut self) {
        if self.accept_paused_until.is_some() || self.awaiting_log.is_some() || self.phase != Phase::Running {
            return;
        }
        loop {
            let Some(listener) = self.listener.as_ref() else { return };
            match listener.accept() {
                Ok((sock, addr)) => self.admit(sock, canonical(addr.ip()), addr.port()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS)) =>
                {
                    log::warn!("accept: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
                    self.accept_paused_until = Some(self.app.now + ACCEPT_BACKOFF);
                    return;
                }
                // The peer gave up before we got to it (ECONNABORTED and friends).
                Err(e) => log::debug!("accept: {e}"),
            }
        }
    }

    fn admit(&mut self, mut sock: TcpStream, ip: IpAddr, port: u16) {
        let limits = &self.app.cfg.limits;
        // A trusted proxy carries many clients on its one address: it is held only to the total
        // here, and its clients to the per-address limit once their streams say who they are
        // (`App::open_stream`).
        let proxy = self.app.cfg.trusted_proxies.iter().any(|c| c.contains(ip));
        let per_ip = if proxy { limits.max_connections } else { limits.max_connections_per_ip };
        if let Err(why) = self.sessions.admits(ip, limits.max_connections, per_ip) {
            self.app.metrics.refused += 1;
            self.app.metrics.response(503);
            let open = self.sessions.open();
            match why {
                Refusal::Full => log::debug!("refused {ip}: {open} open"),
                Refusal::PerAddress(n) => log::debug!("refused {ip}: {open} open, {n} from this address"),
            }
            let _ = sock.write(REFUSED);
            return;
        }
        let _ = sock.set_nodelay(true);
        let t = self.sessions.reserve();
        if let Err(e) = self.poll.registry().register(&mut sock, Token(t), Interest::READABLE | Interest::WRITABLE) {
            log::warn!("register: {e}");
            self.sessions.unreserve(t);
            return;
        }
        let conn = Conn::new(t, sock, ip, port, &self.app);
        self.sessions.fill(t, conn);
        self.app.metrics.active[Transport::Http as usize] += 1;
        self.app.metrics.total[Transport::Http as usize] += 1;
        self.settle(t);
    }

    /// Input a connection buffers before it processes what it has (a head and a body's first
    /// MiB, or several pipelined requests).
    fn read_cap(&self) -> usize {
        self.app.cfg.limits.max_header_bytes + self.app.cfg.limits.max_body_bytes.min(1 << 20) + 4096
    }

    /// Reads, processes and flushes until the connection has nothing more to do now;
    /// `to_eagain` reads on after a short read (the peer may have hung up behind its data).
    fn drive(&mut self, t: usize, to_eagain: bool) {
        let cap = self.read_cap();
        let Some(slot) = self.sessions.get_mut(t) else { return };
        let conn = &mut slot.conn;
        for _ in 0..64 {
            conn.read(&mut self.scratch, cap, to_eagain);
            conn.process(&mut self.app);
            conn.flush(&mut self.app);
            // Input waited for the output, which has drained; or the read stopped at its cap and
            // processing made room: go again. Whatever is left when this gives up is picked up
            // by `on_writable`, or by `settle` and `reread_all`.
            let more = conn.held_by_output() || conn.wants_read(cap);
            if !more || !conn.out.is_empty() {
                break;
            }
        }
    }

    /// Drives the connections whose last read stopped at the cap and that have room again.
    fn reread_all(&mut self) {
        let list = std::mem::take(&mut self.reread);
        for &t in &list {
            let Some(slot) = self.sessions.get_mut(t) else { continue };
            if !std::mem::take(&mut slot.reread) {
                continue; // the token went to a new connection since
            }
            // The event that left bytes behind may have reported a hang-up behind them.
            self.drive(t, true);
            self.settle(t);
        }
        let mut list = list;
        list.clear();
        if self.reread.is_empty() {
            self.reread = list;
        }
    }

    fn on_writable(&mut self, t: usize) {
        let Some(slot) = self.sessions.get_mut(t) else { return };
        let conn = &mut slot.conn;
        // Requests (or WebSocket messages) wait in the buffer while the output is over its
        // limit; the client has read some, so go on with them.
        let resume = conn.held_by_output();
        conn.flush(&mut self.app);
        if resume {
            self.drive(t, true);
        }
    }

    /// Acts on the connection's wishes after anything happened to it: close it, or arm its timer.
    fn settle(&mut self, t: usize) {
        let cap = self.read_cap();
        let Some(slot) = self.sessions.get_mut(t) else { return };
        let conn = &slot.conn;
        // A subscriber or a lingering close has nothing left to read: EOF ends it.
        let peer_gone = conn.eof && conn.ends_at_eof();
        match conn.want_close() {
            Close::Now => return self.close(t, false),
            Close::Slow => return self.close(t, true),
            Close::No if peer_gone => return self.close(t, false),
            Close::No => {}
        }
        if matches!(self.phase, Phase::Draining(_)) && conn.out.is_empty() && !conn.owes_answer() {
            return self.close(t, false);
        }
        if !slot.reread && conn.wants_read(cap) {
            slot.reread = true;
            self.reread.push(t);
        }
        if let Some(d) = conn.deadline {
            if slot.armed.is_none_or(|a| d < a) {
                slot.armed = Some(d);
                self.timers.push(Reverse((d, t)));
            }
        }
    }

    fn close(&mut self, t: usize, slow: bool) {
        let Some(mut slot) = self.sessions.remove(t) else { return };
        let conn = &mut slot.conn;
        conn.unsubscribe(&mut self.app);
        let _ = self.poll.registry().deregister(&mut conn.sock);
        let tr = conn.transport as usize;
        self.app.metrics.active[tr] = self.app.metrics.active[tr].saturating_sub(1);
        if slow {
            self.app.metrics.slow_consumer_disconnects[tr] += 1;
            log::info!("{}: slow consumer disconnected ({} bytes queued)", conn.ip, conn.out.len());
        }
        if self.accept_paused_until.is_some() {
            // A descriptor came free: try the backlog again now rather than after the backoff.
            self.accept_paused_until = None;
            self.accept_all();
        }
    }

    fn fire_timers(&mut self) {
        let now = self.app.now;
        if self.accept_paused_until.is_some_and(|t| t <= now) {
            self.accept_paused_until = None;
            self.accept_all();
        }
        while let Some(&Reverse((at, t))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.sessions.get_mut(t) else { continue };
            if slot.armed != Some(at) {
                continue; // superseded by an earlier entry, or a previous occupant's
            }
            slot.armed = None;
            match slot.conn.deadline {
                Some(d) if d <= now => {
                    slot.conn.on_timeout(&mut self.app);
                    slot.conn.flush(&mut self.app);
                }
                _ => {} // moved later: settle re-arms it
            }
            self.settle(t);
        }
        if now >= self.next_keepalive {
            self.next_keepalive = now + self.app.cfg.sse.keepalive;
            self.heartbeat(Transport::Sse);
        }
        if now >= self.next_ping {
            self.next_ping = now + self.app.cfg.ws.ping_interval;
            self.heartbeat(Transport::Ws);
        }
    }

    /// One heartbeat for the subscribers of one transport: SSE ones get a keep-alive comment
    /// when idle, WebSocket ones a ping (and are closed after two unanswered). Either way, a
    /// subscriber whose queue did not move for a whole interval is cut loose as slow.
    fn heartbeat(&mut self, transport: Transport) {
        debug_assert!(matches!(transport, Transport::Sse | Transport::Ws));
        let websocket = transport == Transport::Ws;
        for t in 0..self.sessions.capacity() {
            let Some(slot) = self.sessions.get_mut(t) else { continue };
            let pending = !slot.conn.out.is_empty();
            let Some(sub) = slot.conn.subscriber() else { continue };
            if sub.ws.is_some() != websocket {
                continue;
            }
            // Output still waiting in the loop's own write queue (`dirty`) was not refused by the
            // client: only output its socket did not take counts against it.
            let stalled = pending && !sub.wrote && !slot.dirty;
            sub.wrote = false;
            let frame = match sub.ws.as_mut() {
                Some(ws) if ws.missed_pongs >= 2 => {
                    log::debug!("{}: closing a WebSocket that missed two pongs", slot.conn.ip);
                    self.close(t, false);
                    continue;
                }
                Some(ws) => {
                    ws.missed_pongs += 1;
                    &self.ping
                }
                None => &self.keepalive,
            };
            if stalled {
                self.close(t, true);
            } else if !pending || websocket {
                slot.conn.out.push_shared(frame.clone());
                if !slot.dirty {
                    slot.dirty = true;
                    self.writes.push(t);
                }
            }
        }
    }

    /// Answers the requests whose journal records became durable (or all of them with 503 when
    /// the journal cannot write).
    fn release_durable(&mut self) {
        self.app.copy_states_after_rotation();
        if let Some(c) = self.app.cluster.as_mut() {
            // The outcomes settled so far, for the answers below (they read them by `ack_of`).
            let settled = c.settled_through();
            while let Some((&seq, _)) = self.app.durable_waiters.first_key_value() {
                if seq > settled {
                    break;
                }
                let Some(c) = self.app.cluster.as_mut() else { break };
                if let Some(outcome) = c.take_outcome(seq) {
                    self.app.settled.insert(seq, outcome);
                }
                let tokens = self.app.durable_waiters.remove(&seq).unwrap_or_default();
                self.finish_durable(tokens);
            }
            self.app.settled.clear();
            // Whatever became of the append (a failed one leaves the role with Redis soon).
            while self.app.held_runs.front().is_some_and(|(seq, _)| *seq <= settled) {
                let Some((_, run)) = self.app.held_runs.pop_front() else { break };
                self.app.runner.release(run, self.app.now);
            }
            if let Some(c) = self.app.cluster.as_mut() {
                c.forget_through(settled);
            }
            self.app.if_duplicate.retain(|seq, _| *seq > settled);
            return;
        }
        let Some(j) = self.app.journal.as_ref() else { return };
        let (durable, failed) = (j.durable_seq(), j.is_failed());
        // The held events join this turn's fan-out, with the acknowledgements below.
        self.app.release_durable();
        while let Some((&seq, _)) = self.app.durable_waiters.first_key_value() {
            if seq > durable && !failed {
                break;
            }
            let tokens = self.app.durable_waiters.remove(&seq).unwrap_or_default();
            self.finish_durable(tokens);
        }
    }

    fn finish_durable(&mut self, tokens: Vec<usize>) {
        for t in tokens {
            let Some(slot) = self.sessions.get_mut(t) else { continue };
            if !slot.conn.awaits_journal() {
                continue; // a stale entry: the connection went away or timed out
            }
            slot.conn.finish_durable(&mut self.app);
            self.writes.push_urgent(t);
        }
    }

    /// Answers the requests that waited for a run's output, now that their runs ended.
    fn answer_run_waiters(&mut self) {
        for id in std::mem::take(&mut self.app.runner.finished) {
            if let Some(run) = self.app.runner.get(id) {
                if let (Some(start), Some(end)) = (run.started_ms, run.finished_ms) {
                    let secs = end.saturating_sub(start) as f64 / 1000.0;
                    let h = self.app.metrics.run_durations.entry(run.spec.hook.clone());
                    h.or_insert_with(|| Histogram::new(RUN_BUCKETS)).observe(secs);
                }
            }
            for t in self.app.run_waiters.remove(&id).unwrap_or_default() {
                let Some(slot) = self.sessions.get_mut(t) else { continue };
                slot.conn.finish_await(&mut self.app, id);
                self.writes.push_urgent(t);
            }
        }
    }

    fn fan_out(&mut self) {
        let outbox = std::mem::take(&mut self.app.outbox);
        for ev in &outbox {
            self.app.hub.subscribers_into(&ev.topic, &mut self.fanout);
            // Made once per event: filtered subscribers share its data parsed at most once.
            let subject = crate::filter::Subject::new(&ev.kind, &ev.data, ev.data_is_json);
            for i in 0..self.fanout.len() {
                let t = self.fanout[i];
                let Some(slot) = self.sessions.get_mut(t) else { continue };
                if !slot.conn.push_event_as(ev, &subject, &mut self.app) {
                    self.close(t, true);
                } else if !slot.dirty {
                    slot.dirty = true;
                    self.writes.push(t);
                }
            }
            if !self.fanout.is_empty() {
                self.writes.mark(ev.born);
            }
        }
        // Every subscriber has its reference now; history keeps the event, not its encodings.
        for ev in &outbox {
            ev.retire();
        }
        // Keep the vector's allocation for the next turn.
        let mut outbox = outbox;
        outbox.clear();
        self.app.outbox = outbox;
    }

    /// Writes every queued answer, then fan-out queues in order until the turn's write budget is
    /// spent; the rest wait for the next turn, which comes at once (see `next_timeout`) after a
    /// look at the sockets. Events that arrive meanwhile join the queues not yet written, so
    /// those subscribers get several events in one write: batching that exists only while the
    /// loop is behind. The budget is [`WRITE_SLICE`], or [`WRITE_SHARE`] times as long as the
    /// rest of the turn took, whichever is longer: other work (a chatty deploy's output) never
    /// gets more than a quarter of the loop while subscribers wait.
    fn write_queued(&mut self) {
        while let Some(t) = self.writes.pop_urgent() {
            self.write_now(t);
        }
        let start = Instant::now();
        let budget = WRITE_SLICE.max(WRITE_SHARE * start.saturating_duration_since(self.app.now));
        let mut written = 0u32;
        while let Some(t) = self.writes.pop() {
            if let Some(slot) = self.sessions.get_mut(t) {
                slot.dirty = false;
                if !slot.conn.out.is_empty() {
                    self.app.metrics.subscriber_writes[slot.conn.transport as usize] += 1;
                }
                self.write_now(t);
            }
            written += 1;
            // The clock is read every few writes: a write costs microseconds, a read of the clock
            // tens of nanoseconds.
            if written % 16 == 0 && start.elapsed() >= budget {
                break;
            }
        }
        let mut done = self.writes.written().peekable();
        if done.peek().is_some() {
            let now = Instant::now();
            let h = self.app.metrics.delivery_latency.get_or_insert_with(|| Histogram::new(LATENCY_BUCKETS));
            for born in done {
                h.observe(now.duration_since(born).as_secs_f64());
            }
        }
    }

    fn write_now(&mut self, t: usize) {
        let Some(slot) = self.sessions.get_mut(t) else { return };
        slot.conn.flush(&mut self.app);
        self.settle(t);
    }

    fn on_signals(&mut self) {
        let pending: Vec<i32> = self.signals.pending().collect();
        for sig in pending {
            match sig {
                SIGCHLD => {
                    self.app.runner.reap(self.app.now);
                    self.app.sources.reap(self.app.now);
                }
                SIGHUP | SIGUSR1 => {
                    if let Some(n) = &self.notifier {
                        n.reloading();
                    }
                    self.reload(if sig == SIGHUP { "SIGHUP" } else { "SIGUSR1" });
                    // READY even after a refused reload: systemd waits for it either way.
                    if let Some(n) = &self.notifier {
                        n.ready();
                    }
                }
                _ => self.begin_drain(),
            }
        }
    }

    /// Stops accepting, closes idle connections, and gives the rest a moment to flush.
    fn begin_drain(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        self.phase = Phase::FinishingRuns(None);
        if let Some(n) = &self.notifier {
            n.stopping();
        }
        log::info!("shutting down: {} connections open", self.sessions.open());
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.app.sources.stop_all(self.app.now);
        if self.app.runner.cancel_queued(self.app.now) {
            let grace = self.app.runner.config().shutdown_grace;
            log::info!("waiting up to {grace:?} for {} running deploy(s)", self.app.runner.active());
            self.phase = Phase::FinishingRuns(Some(self.app.now + grace));
        }
        // The loop calls close_for_drain once no deploy is running any more.
    }

    /// Phase two of a drain: WebSockets get 1001, idle connections close, the rest have
    /// [`DRAIN`] to flush.
    fn close_for_drain(&mut self) {
        self.phase = Phase::Draining(self.app.now + DRAIN);
        for t in 0..self.sessions.capacity() {
            let Some(slot) = self.sessions.get_mut(t) else { continue };
            if slot.conn.is_ws() {
                // RFC 6455 §7.4.1: 1001, going away.
                slot.conn.out.push_owned(crate::ws::frame::encode_close(1001, "server shutting down"));
            }
            slot.conn.flush(&mut self.app);
            let done = slot.conn.out.is_empty() && !slot.conn.owes_answer();
            if done {
                self.close(t, false);
            }
        }
    }
}
