//! Log sources (config `sources`): long-running commands whose stdout lines become events on a
//! topic, driven by the event loop like deploy runs, and followed files ([`tail`], inotify on the
//! loop). What follows is about commands; the flood budget and the per-turn bounds hold for both.
//!
//! A source's child gets an argv (never a shell string), a minimal environment, its own process
//! group and stdout as a non-blocking pipe registered with the loop's poll. When it exits it is
//! started again after a backoff that doubles up to [`BACKOFF_MAX`] (and starts over once a child
//! ran for [`STABLE_AFTER`]). Its group gets SIGTERM when the source is removed or changed by a
//! reload and at shutdown, and SIGKILL after [`STOP_GRACE`]. Each source has a flood budget
//! (`max_lines_per_sec`): lines beyond it in one second are dropped and counted, and the count
//! goes out as a `dropped` event on the topic when the second is over. Reading is bounded per loop
//! turn, so a source never starves the loop.
//!
//! ```text
//! starting ──► running ──► backoff ──► running …     (the child exited: restarted)
//!                 └──────► stopped                   (removed by a reload, or shutdown)
//! ```

pub mod tail;

use crate::runner::lines::{Line, LineSplitter};
use mio::unix::pipe::Receiver;
use mio::{Interest, Registry, Token};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Poll tokens at or above this belong to sources: the inotify descriptor of the `tail` sources
/// at it, then one per started child (the upper half of the token space, below the loop's own).
pub const TOKEN_BASE: usize = usize::MAX / 2 + 1;
/// The inotify descriptor's token.
const INOTIFY: Token = Token(TOKEN_BASE);
/// Bytes read from one followed file per loop turn.
const TAIL_BUDGET: usize = 256 * 1024;
/// Bytes read from one source per loop turn.
const READ_BUDGET: usize = 256 * 1024;
/// Lines taken from one source per loop turn (each one may become an event).
const LINE_BUDGET: usize = 1024;
/// Bytes per read.
const READ_CHUNK: usize = 4 * 1024;
/// The first wait before a restart.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
/// The longest wait before a restart.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A child that ran this long was healthy: the next restart waits `BACKOFF_MIN` again.
pub const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Time between SIGTERM and SIGKILL for a stopped source's group.
pub const STOP_GRACE: Duration = Duration::from_secs(2);
/// The flood budget's window.
const WINDOW: Duration = Duration::from_secs(1);
/// PATH for a source's command when the daemon has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One source's settings (an element of config `sources`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// Name in metrics and on the status page (defaults to the topic); unique.
    pub name: String,
    /// Topic its lines are published to.
    pub topic: String,
    /// What it reads.
    pub what: What,
    /// Lines published per second at most; the rest are dropped and counted.
    pub max_lines_per_sec: u32,
    /// Lines are cut at this many bytes (the rest of the line is dropped).
    pub max_line_bytes: usize,
}

/// What a source reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum What {
    /// A long-running command's stdout: the program and its arguments.
    Command(Vec<String>),
    /// A file followed from its end.
    Tail(PathBuf),
}

/// Where a source is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    Backoff(Instant),
    Stopped,
}

#[derive(Debug)]
struct Proc {
    child: Child,
    pgid: u32,
    rx: Receiver,
    token: Token,
    open: bool,
    started: Instant,
    exited: bool,
}

#[derive(Debug)]
struct Source {
    cfg: SourceConfig,
    state: State,
    proc: Option<Proc>,
    tail: Option<tail::Tail>,
    split: LineSplitter,
    /// Inside a line cut at the limit: its continuation pieces are dropped.
    skipping: bool,
    backoff: Duration,
    restarts: u64,
    lines: u64,
    dropped: u64,
    last_line_ms: Option<u64>,
    error: Option<String>,
    window_start: Instant,
    window_lines: u32,
    window_dropped: u64,
    /// Lines published in the last complete window (the status page's lines/s).
    last_rate: u32,
}

impl Source {
    /// A source that has read nothing yet, in `state`.
    fn new(cfg: SourceConfig, state: State, now: Instant) -> Source {
        Source {
            split: LineSplitter::new(cfg.max_line_bytes),
            cfg,
            state,
            proc: None,
            tail: None,
            skipping: false,
            backoff: BACKOFF_MIN,
            restarts: 0,
            lines: 0,
            dropped: 0,
            last_line_ms: None,
            error: None,
            window_start: now,
            window_lines: 0,
            window_dropped: 0,
            last_rate: 0,
        }
    }
}

/// A metric family of the sources: name, help, the value of one source.
type Family = (&'static str, &'static str, fn(&Source) -> u64);

/// A message for the hub: (topic, event type, data, whether the data is JSON).
pub type Pub = (String, &'static str, String, bool);

/// All sources and their processes.
pub struct Sources {
    /// None when the loop's registry could not be cloned: every start then fails (logged).
    registry: Option<Registry>,
    list: Vec<Source>,
    next_token: usize,
    /// Sources with input left over after their read budget.
    more: Vec<Token>,
    /// Groups of removed or changed sources: SIGTERM sent at the instant, SIGKILL after the
    /// grace unless the child is gone.
    stopping: Vec<(Child, u32, Instant, bool)>,
    /// Messages to publish (the loop drains this).
    pub out: Vec<Pub>,
    /// The `tail` sources' inotify instance, made with the first one.
    inotify: Option<File>,
    /// Directory watches and how many tails share each.
    watches: HashMap<i32, usize>,
    /// Tails (by name) with input left over after their read budget.
    more_tails: Vec<String>,
}

fn now_ms() -> u64 {
    crate::clock::unix_ms()
}

impl Sources {
    /// No sources yet; their pipes register with `registry` (a clone of the loop's).
    pub fn new(registry: Option<Registry>) -> Sources {
        Sources {
            registry,
            list: Vec::new(),
            next_token: 1,
            more: Vec::new(),
            stopping: Vec::new(),
            out: Vec::new(),
            inotify: None,
            watches: HashMap::new(),
            more_tails: Vec::new(),
        }
    }

    /// Puts a source list in force: sources removed or changed are stopped (their groups get
    /// SIGTERM), new and changed ones start, unchanged ones keep running untouched.
    pub fn set_config(&mut self, cfgs: &[SourceConfig], now: Instant) {
        let old = std::mem::take(&mut self.list);
        let mut kept: Vec<Option<Source>> = old.into_iter().map(Some).collect();
        for cfg in cfgs {
            let same = kept.iter().position(|s| s.as_ref().is_some_and(|s| s.cfg == *cfg));
            match same {
                Some(i) => self.list.push(kept[i].take().expect("found above")),
                None => {
                    let mut s = Source::new(cfg.clone(), State::Backoff(now), now);
                    self.spawn(&mut s, now);
                    self.list.push(s);
                }
            }
        }
        for mut s in kept.into_iter().flatten() {
            log::info!("source {:?}: stopped (removed or changed by the new configuration)", s.cfg.name);
            self.stop(&mut s, now);
        }
    }

    fn spawn(&mut self, s: &mut Source, now: Instant) {
        let argv = match &s.cfg.what {
            What::Command(argv) => argv.clone(),
            What::Tail(path) => return self.start_tail(s, path.clone(), now),
        };
        self.spawn_command(s, &argv, now);
    }

    /// Starts following a file: a watch on its directory, the file from its end.
    fn start_tail(&mut self, s: &mut Source, path: PathBuf, now: Instant) {
        let t = tail::Tail::new(&path);
        match self.watch(&t.dir()) {
            Ok(wd) => {
                let mut t = t;
                t.wd = Some(wd);
                s.tail = Some(t);
                s.state = State::Running;
                s.error = None;
                s.split = LineSplitter::new(s.cfg.max_line_bytes);
                s.skipping = false;
            }
            Err(e) => {
                let msg = format!("cannot watch {}: {e}", t.dir().display());
                log::warn!("source {:?}: {msg}; trying again in {:?}", s.cfg.name, s.backoff);
                s.error = Some(msg);
                s.state = State::Backoff(now + s.backoff);
                s.backoff = (s.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// A watch on `dir` (shared by the tails in one directory).
    fn watch(&mut self, dir: &std::path::Path) -> io::Result<i32> {
        if self.inotify.is_none() {
            let fd = crate::sys::inotify_init()?;
            let registry = self.registry.as_ref().ok_or_else(|| io::Error::other("no poll registry"))?;
            registry.register(&mut mio::unix::SourceFd(&fd.as_raw_fd()), INOTIFY, Interest::READABLE)?;
            self.inotify = Some(File::from(fd));
        }
        let fd = self.inotify.as_ref().expect("made above");
        let wd = crate::sys::inotify_add_watch(fd.as_fd(), dir, tail::DIR_MASK)?;
        *self.watches.entry(wd).or_insert(0) += 1;
        Ok(wd)
    }

    fn unwatch(&mut self, wd: i32) {
        let Some(n) = self.watches.get_mut(&wd) else { return };
        *n -= 1;
        if *n == 0 {
            self.watches.remove(&wd);
            if let Some(fd) = &self.inotify {
                crate::sys::inotify_rm_watch(fd.as_fd(), wd);
            }
        }
    }

    /// The inotify descriptor is readable: every tail in a directory that changed reads what is
    /// new (bounded per turn).
    fn on_inotify(&mut self, now: Instant) {
        let Some(fd) = &self.inotify else { return };
        let mut buf = [0u8; 16 * 1024];
        let mut touched: Vec<i32> = Vec::new();
        let mut all = false;
        let mut reads = 0;
        loop {
            let n = match (&*fd).read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            };
            for (wd, mask) in tail::parse_events(&buf[..n]) {
                if wd < 0 || mask & libc::IN_Q_OVERFLOW != 0 {
                    all = true;
                } else if mask & libc::IN_IGNORED != 0 {
                    // The directory went away: its tails watch again after a backoff.
                    self.watches.remove(&wd);
                    for s in &mut self.list {
                        if s.tail.as_ref().is_some_and(|t| t.wd == Some(wd)) {
                            s.tail = None;
                            s.error = Some("its directory was removed".into());
                            s.state = State::Backoff(now + s.backoff);
                        }
                    }
                } else if !touched.contains(&wd) {
                    touched.push(wd);
                }
            }
            reads += 1;
            if reads >= 16 {
                if !self.more.contains(&INOTIFY) {
                    self.more.push(INOTIFY);
                }
                break;
            }
        }
        for i in 0..self.list.len() {
            let hit = self.list[i].tail.as_ref().is_some_and(|t| all || t.wd.is_some_and(|w| touched.contains(&w)));
            if hit {
                self.read_tail(i, now);
            }
        }
    }

    /// Reads what is new in a followed file, up to the budget.
    fn read_tail(&mut self, i: usize, now: Instant) {
        let s = &mut self.list[i];
        let Some(t) = s.tail.as_mut() else { return };
        let mut lines = Vec::new();
        let left = t.read(&mut s.split, &mut lines, TAIL_BUDGET.min(LINE_BUDGET * s.cfg.max_line_bytes));
        for line in lines {
            take_line(s, line, now, &mut self.out);
        }
        if left && !self.more_tails.contains(&s.cfg.name) {
            self.more_tails.push(s.cfg.name.clone());
        }
    }

    fn spawn_command(&mut self, s: &mut Source, argv: &[String], now: Instant) {
        use std::os::unix::process::CommandExt;
        let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.to_string());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .env_clear()
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Its complaints go where the daemon's own log goes.
            .stderr(Stdio::inherit())
            .process_group(0);
        for key in ["HOME", "LANG", "LC_ALL", "TZ"] {
            if let Ok(v) = std::env::var(key) {
                cmd.env(key, v);
            }
        }
        let token = Token(TOKEN_BASE + self.next_token);
        self.next_token += 1;
        let started = cmd.spawn().and_then(|mut child| {
            let pgid = child.id();
            let rx = Receiver::from(child.stdout.take().expect("piped"));
            let registered = rx.set_nonblocking(true).and_then(|()| {
                let mut rx = rx;
                let registry = self.registry.as_ref().ok_or_else(|| io::Error::other("no poll registry"))?;
                registry.register(&mut rx, token, Interest::READABLE).map(|()| rx)
            });
            match registered {
                Ok(rx) => Ok(Proc { child, pgid, rx, token, open: true, started: now, exited: false }),
                Err(e) => {
                    let _ = crate::sys::kill_group(pgid, libc::SIGKILL);
                    self.stopping.push((child, pgid, now, true));
                    Err(e)
                }
            }
        });
        match started {
            Ok(p) => {
                s.proc = Some(p);
                s.state = State::Running;
                s.error = None;
                s.split = LineSplitter::new(s.cfg.max_line_bytes);
                s.skipping = false;
            }
            Err(e) => {
                let msg = format!("could not start {:?}: {e}", argv[0]);
                log::warn!("source {:?}: {msg}", s.cfg.name);
                s.error = Some(msg);
                s.state = State::Backoff(now + s.backoff);
                s.backoff = (s.backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// Ends a source's child: SIGTERM to its group now, SIGKILL after [`STOP_GRACE`].
    fn stop(&mut self, s: &mut Source, now: Instant) {
        s.state = State::Stopped;
        if let Some(wd) = s.tail.take().and_then(|t| t.wd) {
            self.unwatch(wd);
        }
        self.more_tails.retain(|n| *n != s.cfg.name);
        if let Some(mut p) = s.proc.take() {
            deregister(&self.registry, &mut p.rx);
            self.more.retain(|t| *t != p.token);
            let _ = crate::sys::kill_group(p.pgid, libc::SIGTERM);
            self.stopping.push((p.child, p.pgid, now, false));
        }
    }

    /// Shutdown: every source's group gets SIGTERM (SIGKILL follows from [`Sources::tick`], or
    /// from [`Sources::kill_all`] at exit).
    pub fn stop_all(&mut self, now: Instant) {
        let mut list = std::mem::take(&mut self.list);
        for s in &mut list {
            self.stop(s, now);
        }
        self.list = list;
    }

    /// At exit: SIGKILL to every group still alive.
    pub fn kill_all(&mut self) {
        for (child, pgid, _, _) in &mut self.stopping {
            if child.try_wait().ok().flatten().is_none() || crate::sys::group_alive(*pgid) {
                let _ = crate::sys::kill_group(*pgid, libc::SIGKILL);
            }
        }
        for s in &mut self.list {
            if let Some(p) = &s.proc {
                let _ = crate::sys::kill_group(p.pgid, libc::SIGKILL);
            }
        }
    }

    /// Reads a source's pipe that became readable (up to a budget; the rest next turn).
    pub fn on_readable(&mut self, token: Token, now: Instant) {
        if self.more.contains(&token) {
            return;
        }
        if token == INOTIFY {
            return self.on_inotify(now);
        }
        let Some(i) = self.list.iter().position(|s| s.proc.as_ref().is_some_and(|p| p.token == token)) else { return };
        let mut lines = Vec::new();
        let s = &mut self.list[i];
        let p = s.proc.as_mut().expect("found above");
        if !p.open {
            return;
        }
        let mut buf = [0u8; READ_CHUNK];
        let mut budget = READ_BUDGET;
        loop {
            if budget == 0 || lines.len() >= LINE_BUDGET {
                self.more.push(token);
                break;
            }
            match p.rx.read(&mut buf[..budget.min(READ_CHUNK)]) {
                Ok(0) => {
                    s.split.finish(&mut lines);
                    p.open = false;
                    deregister(&self.registry, &mut p.rx);
                    break;
                }
                Ok(n) => {
                    budget -= n;
                    s.split.feed(&buf[..n], &mut lines);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    p.open = false;
                    deregister(&self.registry, &mut p.rx);
                    break;
                }
            }
        }
        for line in lines {
            take_line(s, line, now, &mut self.out);
        }
        if !s.proc.as_ref().is_some_and(|p| p.open) {
            self.check_ended(i, now);
        }
    }

    /// Sources that hit their budget last turn; the loop calls this when [`Sources::has_more`].
    pub fn read_more(&mut self, now: Instant) {
        for t in std::mem::take(&mut self.more) {
            self.on_readable(t, now);
        }
        for name in std::mem::take(&mut self.more_tails) {
            if let Some(i) = self.list.iter().position(|s| s.cfg.name == name) {
                self.read_tail(i, now);
            }
        }
    }

    /// Whether some source still has unread input (the loop should not sleep).
    pub fn has_more(&self) -> bool {
        !self.more.is_empty() || !self.more_tails.is_empty()
    }

    /// After SIGCHLD: collects exited children without blocking.
    pub fn reap(&mut self, now: Instant) {
        for i in 0..self.list.len() {
            let Some(p) = self.list[i].proc.as_mut() else { continue };
            if !p.exited && matches!(p.child.try_wait(), Ok(Some(_))) {
                p.exited = true;
                // Its last lines, before the restart.
                let token = p.token;
                if p.open && !self.more.contains(&token) {
                    self.on_readable(token, now);
                }
            }
            self.check_ended(i, now);
        }
        self.stopping.retain_mut(|(child, _, _, _)| !matches!(child.try_wait(), Ok(Some(_))));
    }

    /// A source whose child exited and whose pipe is drained (or whose pipe closed and child
    /// exited) waits for its restart.
    fn check_ended(&mut self, i: usize, now: Instant) {
        let s = &mut self.list[i];
        let Some(p) = s.proc.as_mut() else { return };
        if !p.exited {
            return;
        }
        // Its last lines first: what the pipe still holds is read before the restart. A
        // process left behind holding the pipe is ended with the group below.
        if p.open && self.more.contains(&p.token) {
            return;
        }
        let mut p = s.proc.take().expect("checked above");
        let mut tail = Vec::new();
        s.split.finish(&mut tail);
        for line in tail {
            take_line(s, line, now, &mut self.out);
        }
        if p.open {
            deregister(&self.registry, &mut p.rx);
        }
        self.more.retain(|t| *t != p.token);
        // Whatever it left behind in its group goes with it.
        let _ = crate::sys::kill_group(p.pgid, libc::SIGKILL);
        let status = p.child.try_wait().ok().flatten();
        if now.duration_since(p.started) >= STABLE_AFTER {
            s.backoff = BACKOFF_MIN;
        }
        let why = status.map_or_else(|| "exited".to_string(), |st| format!("exited ({st})"));
        log::warn!("source {:?}: {why}; restarting in {:?}", s.cfg.name, s.backoff);
        s.error = Some(why);
        s.state = State::Backoff(now + s.backoff);
        s.backoff = (s.backoff * 2).min(BACKOFF_MAX);
    }

    /// The next time [`Sources::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let stops = self.stopping.iter().filter(|x| !x.3).map(|x| x.2 + STOP_GRACE);
        let sources = self.list.iter().filter_map(|s| match s.state {
            State::Backoff(at) => Some(at),
            State::Running if s.window_dropped > 0 || s.window_lines > 0 => Some(s.window_start + WINDOW),
            _ => None,
        });
        stops.chain(sources).min()
    }

    /// Restarts due, SIGKILLs due, and the end of flood windows (the dropped counts go out).
    pub fn tick(&mut self, now: Instant) {
        for (_, pgid, at, killed) in &mut self.stopping {
            if !*killed && now >= *at + STOP_GRACE {
                *killed = true;
                let _ = crate::sys::kill_group(*pgid, libc::SIGKILL);
            }
        }
        let mut list = std::mem::take(&mut self.list);
        for s in &mut list {
            roll_window(s, now, &mut self.out);
            if let State::Backoff(at) = s.state {
                if now >= at {
                    s.restarts += 1;
                    self.spawn(s, now);
                }
            }
        }
        self.list = list;
    }

    /// The sources for the status page.
    pub fn status(&self) -> Vec<Value> {
        self.list
            .iter()
            .map(|s| {
                let state = match s.state {
                    State::Running if s.tail.as_ref().is_some_and(|t| !t.is_open()) => "waiting",
                    State::Running => "running",
                    State::Backoff(_) => "backoff",
                    State::Stopped => "stopped",
                };
                json!({
                    "name": s.cfg.name,
                    "topic": s.cfg.topic,
                    "kind": match s.cfg.what { What::Command(_) => "command", What::Tail(_) => "tail" },
                    "state": state,
                    "lines": s.lines,
                    "lines_per_sec": s.last_rate,
                    "dropped": s.dropped,
                    "restarts": s.restarts,
                    "last_line": s.last_line_ms.map(crate::clock::rfc3339),
                    "error": s.error,
                })
            })
            .collect()
    }

    /// The sources' lines for `/metrics`.
    pub fn render_metrics(&self, out: &mut String) {
        if self.list.is_empty() {
            return;
        }
        let families: [Family; 3] = [
            ("hookcast_source_lines_total", "Lines a source read and published.", |s| s.lines),
            ("hookcast_source_dropped_total", "Lines a source dropped over its flood budget.", |s| s.dropped),
            ("hookcast_source_restarts_total", "Times a source's command was started again.", |s| s.restarts),
        ];
        for (name, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for s in &self.list {
                let _ = writeln!(out, "{name}{{source=\"{}\"}} {}", escape_label(&s.cfg.name), value(s));
            }
        }
    }
}

fn deregister(registry: &Option<Registry>, rx: &mut Receiver) {
    if let Some(r) = registry {
        let _ = r.deregister(rx);
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Ends a flood window that is over: the next begins, and a count of dropped lines goes out.
fn roll_window(s: &mut Source, now: Instant, out: &mut Vec<Pub>) {
    if now < s.window_start + WINDOW {
        return;
    }
    if s.window_dropped > 0 {
        log::warn!(
            "source {:?}: {} line(s) dropped over the budget of {}/s",
            s.cfg.name,
            s.window_dropped,
            s.cfg.max_lines_per_sec
        );
        let data = json!({ "source": s.cfg.name, "dropped": s.window_dropped, "dropped_total": s.dropped });
        out.push((s.cfg.topic.clone(), "dropped", data.to_string(), true));
    }
    // A window far in the past (an idle source) restarts now rather than catching up.
    let whole = now >= s.window_start + 2 * WINDOW;
    s.last_rate = if whole { 0 } else { s.window_lines };
    s.window_start = if whole { now } else { s.window_start + WINDOW };
    s.window_lines = 0;
    s.window_dropped = 0;
}

/// One line from a source's child: published within the flood budget, counted beyond it.
fn take_line(s: &mut Source, Line { text, cut }: Line, now: Instant, out: &mut Vec<Pub>) {
    // The continuation of a line cut at the limit is dropped with it.
    if s.skipping {
        s.skipping = cut;
        return;
    }
    roll_window(s, now, out);
    if s.window_lines >= s.cfg.max_lines_per_sec {
        s.dropped += 1;
        s.window_dropped += 1;
        s.skipping = cut;
        return;
    }
    s.window_lines += 1;
    s.lines += 1;
    s.last_line_ms = Some(now_ms());
    if cut {
        s.skipping = true;
        out.push((s.cfg.topic.clone(), "cut", text, false));
        return;
    }
    let (kind, is_json) = classify(&text);
    out.push((s.cfg.topic.clone(), kind, text, is_json));
}

/// A line's event type and whether its text goes out as JSON: a JSON object is a JSON event,
/// anything else a text event.
pub fn classify(line: &str) -> (&'static str, bool) {
    let t = line.trim_start();
    if t.starts_with('{') && serde_json::from_str::<serde_json::Map<String, Value>>(line).is_ok() {
        ("line", true)
    } else {
        ("line", false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(max: u32) -> Source {
        let cfg = SourceConfig {
            name: "s".into(),
            topic: "logs/s".into(),
            what: What::Command(vec!["true".into()]),
            max_lines_per_sec: max,
            max_line_bytes: 32,
        };
        Source::new(cfg, State::Running, Instant::now())
    }

    fn line(text: &str, cut: bool) -> Line {
        Line { text: text.into(), cut }
    }

    #[test]
    fn json_objects_are_json_events_and_the_rest_text() {
        assert_eq!(classify(r#"{"level":"error","msg":"x"}"#), ("line", true));
        assert_eq!(classify("[1,2]"), ("line", false));
        assert_eq!(classify("{not json"), ("line", false));
        assert_eq!(classify("plain"), ("line", false));
    }

    #[test]
    fn lines_over_the_budget_are_dropped_and_reported_when_the_window_ends() {
        let mut s = source(3);
        let mut out = Vec::new();
        let t0 = s.window_start;
        for i in 0..10 {
            take_line(&mut s, line(&i.to_string(), false), t0, &mut out);
        }
        assert_eq!((out.len(), s.lines, s.dropped), (3, 3, 7));
        roll_window(&mut s, t0 + WINDOW, &mut out);
        let (_, kind, data, json) = out.last().unwrap();
        assert_eq!((*kind, *json), ("dropped", true));
        assert_eq!(serde_json::from_str::<Value>(data).unwrap()["dropped"], 7);
        take_line(&mut s, line("next", false), t0 + WINDOW, &mut out);
        assert_eq!(s.lines, 4);
    }

    #[test]
    fn a_cut_line_is_marked_and_its_rest_dropped() {
        let mut s = source(100);
        let mut out = Vec::new();
        let now = s.window_start;
        for l in [line("aaaa", true), line("bbbb", true), line("cc", false), line("next", false)] {
            take_line(&mut s, l, now, &mut out);
        }
        let got: Vec<_> = out.iter().map(|(_, k, d, _)| (*k, d.as_str())).collect();
        assert_eq!(got, [("cut", "aaaa"), ("line", "next")]);
    }

    #[test]
    fn labels_are_escaped() {
        assert_eq!(escape_label("a\"b\\c"), "a\\\"b\\\\c");
    }
}
