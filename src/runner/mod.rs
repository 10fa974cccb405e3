//! Deploy runs: commands started from webhooks, driven by the event loop.
//!
//! A run's child gets an argv (never a shell string), an explicit environment, its own process
//! group, and stdout/stderr as non-blocking pipes registered with the loop's poll. SIGCHLD makes
//! the loop call [`Runner::reap`], which only `try_wait`s. A timeout sends SIGTERM to the whole
//! group and SIGKILL after a grace period, so grandchildren go too. Output is split into lines,
//! kept in a bounded log per run, and published on `$runs/{id}`; state changes on `$runs`.
//! Which run starts when is [`sched`]'s decision.
//!
//! ```text
//! queued ──► running ──► succeeded | failed (exit code / signal / could not start)
//!    │          ├──────► timed_out (SIGTERM, then SIGKILL to the group)
//!    └──────────┴──────► cancelled (API or shutdown)
//! ```

pub mod lines;
pub mod sched;

use lines::{Line, LineSplitter};
use mio::unix::pipe::Receiver;
use mio::{Interest, Registry, Token};
use sched::{Mode, RunId, Scheduler, Submit};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Poll tokens at or above this belong to run pipes (two per run): the second quarter of the
/// token space (2^62 on 64-bit, 2^30 on a 32-bit Pi: room for 2^29 runs before the sources').
pub const TOKEN_BASE: usize = usize::MAX / 4 + 1;
/// Bytes read from one pipe per loop turn, so a chatty child cannot starve other connections.
const READ_BUDGET: usize = 256 * 1024;
/// Output lines taken from one pipe per loop turn. Each line becomes an event, which costs far
/// more than its bytes: 256 KiB of `y\n` is 131 072 events, which held every other connection
/// for half a second (release) to seconds (debug) per turn.
const LINE_BUDGET: usize = 1024;
/// Bytes per read: small enough that one read of one-byte lines stays near the line budget.
const READ_CHUNK: usize = 4 * 1024;
/// What a kept line costs against `runner.log_bytes` beyond its text: the log entry itself. The
/// log counted text bytes only, so empty lines grew it without bound.
const LOG_LINE_OVERHEAD: usize = std::mem::size_of::<(u8, String)>();
/// How long pipes may stay open after the child exited (a grandchild holding them) before
/// the run is finished anyway; the pipes are then drained and discarded until they close.
const PIPE_LINGER: Duration = Duration::from_secs(1);
/// The linger while a pipe still has unread output: a process left behind that writes without
/// end must not keep its run open forever, but a loaded loop reading the run's last lines must
/// not cut them off either.
const PIPE_LINGER_UNREAD: Duration = Duration::from_secs(30);
/// Most pipes kept draining for processes a run left behind; beyond it the oldest is closed.
const MAX_ORPHAN_PIPES: usize = 64;

/// Runner settings (config `runner`).
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// Runs at once over all hooks.
    pub max_concurrent: usize,
    /// Waiting runs per hook (`queue` / `parallel`).
    pub max_queued: usize,
    /// Concurrent runs per hook in `parallel` mode, unless the hook says.
    pub max_parallel: usize,
    /// Run timeout unless the hook says.
    pub timeout: Duration,
    /// Time between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Output lines are cut at this many bytes.
    pub max_line_bytes: usize,
    /// Bytes of output kept per run (each line counts its text and `LOG_LINE_OVERHEAD`).
    pub log_bytes: usize,
    /// Finished runs kept for the API.
    pub keep_runs: usize,
    /// How long SIGTERM waits for running deploys before killing them.
    pub shutdown_grace: Duration,
    /// Directory for `pass-file-to-command` files.
    pub temp_dir: PathBuf,
}

/// Everything needed to start (or retry) one run.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// Hook id.
    pub hook: String,
    /// Program: a path, or a name looked up in the child's PATH.
    pub command: String,
    /// Arguments after the program.
    pub args: Vec<String>,
    /// Environment on top of the minimal base.
    pub env: Vec<(String, String)>,
    /// Files to write before the run: (environment variable that receives the path, contents).
    pub files: Vec<(String, Vec<u8>)>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Timeout.
    pub timeout: Duration,
    /// Concurrency policy.
    pub mode: Mode,
    /// Delivery that asked for it.
    pub delivery: String,
    /// Keep the combined raw output (for `include-command-output-in-response`).
    pub capture: bool,
    /// Start from the daemon's environment (adnanh's behaviour) instead of an empty one.
    pub inherit_env: bool,
    /// Variables of the daemon's environment left out even when inheriting (secrets).
    pub withheld_env: Vec<String>,
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Waiting for its turn.
    Queued,
    /// The child is running.
    Running,
    /// Exited 0.
    Succeeded,
    /// Exited non-zero, killed by a signal, or could not start.
    Failed,
    /// Killed at its timeout.
    TimedOut,
    /// Cancelled by the API or at shutdown.
    Cancelled,
    /// Was queued or running when the daemon stopped without finishing it (a crash).
    Interrupted,
}

impl RunState {
    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::TimedOut => "timed_out",
            RunState::Cancelled => "cancelled",
            RunState::Interrupted => "interrupted",
        }
    }

    /// Whether the run is over.
    pub fn is_final(self) -> bool {
        !matches!(self, RunState::Queued | RunState::Running)
    }
}

#[derive(Debug)]
struct Pipe {
    rx: Receiver,
    split: LineSplitter,
    open: bool,
}

#[derive(Debug)]
struct Proc {
    child: Child,
    pgid: u32,
    /// stdout then stderr; emptied when the run completes.
    pipes: Vec<Pipe>,
    deadline: Instant,
    term_sent: Option<Instant>,
    killed: bool,
    exited: Option<(ExitStatus, Instant)>,
    /// Why we are ending it, if we are: the final state to record.
    ending: Option<RunState>,
    /// The `pass-file-to-command` directory, removed when the run completes.
    files: Option<RunFiles>,
}

/// One run.
#[derive(Debug)]
pub struct Run {
    /// Id.
    pub id: RunId,
    /// What it runs.
    pub spec: RunSpec,
    /// State.
    pub state: RunState,
    /// Deliveries it covers (more than one when coalesced).
    pub deliveries: Vec<String>,
    /// Exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Why it failed to start, or other trouble.
    pub error: Option<String>,
    /// Times (ms since the epoch).
    pub queued_ms: u64,
    /// Start time.
    pub started_ms: Option<u64>,
    /// End time.
    pub finished_ms: Option<u64>,
    log: VecDeque<(u8, String)>,
    log_bytes: usize,
    log_dropped: u64,
    /// Output lines so far (the last one's `n`).
    lines: u64,
    /// Combined raw output, bounded, when the spec asks for it.
    pub raw: Vec<u8>,
    proc: Option<Proc>,
    /// Deliveries in this run whose journal records are not durable yet: it may not start
    /// before they are (a delivery that never becomes durable must not have run).
    holds: u32,
    /// The scheduler gave it its turn while it was held: start it on the last release.
    start_due: bool,
}

impl Run {
    /// Keeps an output line in the bounded log, dropping the oldest lines beyond `cap`.
    fn keep_line(&mut self, stream: u8, text: String, cap: usize) {
        self.lines += 1;
        self.log_bytes += text.len() + LOG_LINE_OVERHEAD;
        self.log.push_back((stream, text));
        while self.log_bytes > cap {
            let Some((_, old)) = self.log.pop_front() else { break };
            self.log_bytes -= old.len() + LOG_LINE_OVERHEAD;
            self.log_dropped += 1;
        }
    }
}

/// An output line as published on `$runs/{id}`: `n` counts the run's lines from 1, so a client
/// that read the log from `/api/runs/{id}` knows which live lines it already has.
fn line_json(run: RunId, stream: &str, text: &str, cut: bool, n: u64) -> String {
    json!({ "run": run, "stream": stream, "line": text, "cut": cut, "n": n }).to_string()
}

/// A message for the hub: (topic, event type, JSON data).
pub type Pub = (String, &'static str, String);

/// All runs, their processes and the scheduler.
pub struct Runner {
    cfg: RunnerConfig,
    sched: Scheduler,
    runs: BTreeMap<RunId, Run>,
    next_id: RunId,
    registry: Registry,
    /// Pipes with input left over after their read budget.
    more: Vec<Token>,
    /// Messages to publish (the loop drains this).
    pub out: Vec<Pub>,
    /// Runs that reached a final state since the loop last looked.
    pub finished: Vec<RunId>,
    mode_of: HashMap<String, Mode>,
    /// Pipes still held by processes a finished run left running (a daemon a deploy script
    /// started in the background). Closing them would kill those processes with SIGPIPE at
    /// their next write, so they are read and discarded until their last writer closes them.
    orphans: VecDeque<(Token, Receiver)>,
    /// Records of runs from before a restart (from the journal), newest state of each; in a
    /// cluster also the runs of the other nodes (from the shared log).
    restored: BTreeMap<RunId, Value>,
    /// In a cluster, this node's name: its run records say where they ran.
    node: Option<String>,
}

fn now_ms() -> u64 {
    crate::clock::unix_ms()
}

impl Runner {
    /// A runner whose pipes register with `registry` (a clone of the loop's).
    pub fn new(cfg: RunnerConfig, registry: Registry) -> Runner {
        let sched = Scheduler::new(cfg.max_concurrent);
        Runner {
            cfg,
            sched,
            runs: BTreeMap::new(),
            next_id: 1,
            registry,
            more: Vec::new(),
            out: Vec::new(),
            finished: Vec::new(),
            mode_of: HashMap::new(),
            orphans: VecDeque::new(),
            restored: BTreeMap::new(),
            node: None,
        }
    }

    /// In a cluster: names this node in its run records.
    pub fn set_node(&mut self, node: String) {
        self.node = Some(node);
    }

    /// In a cluster: a run record read from the shared log. The records of this node's own
    /// runs come back too and are skipped; the others' are kept like restored ones (for the
    /// runs API and the status page), and new run ids continue after them, so that whichever
    /// node runs commands next does not reuse an id.
    pub fn follow_record(&mut self, r: Value) {
        let Some(id) = r.get("id").and_then(Value::as_u64) else { return };
        if self.runs.contains_key(&id) {
            return;
        }
        self.next_id = self.next_id.max(id + 1);
        self.restore_one(r);
    }

    /// In a cluster, when this node takes the runner role: the runs another node had queued
    /// or running are over for good (that node stopped holding the role: it died, or lost
    /// Redis for longer than the lease), so they are recorded `interrupted` and that is
    /// published. Returns the deliveries of those that had not started, to be run here.
    pub fn take_over(&mut self) -> Vec<(String, String)> {
        let now = crate::clock::rfc3339(now_ms());
        let mut queued = Vec::new();
        let mut over = Vec::new();
        for (id, r) in self.restored.iter_mut() {
            let state = r.get("state").and_then(Value::as_str).unwrap_or("");
            if !matches!(state, "queued" | "running") {
                continue;
            }
            let node = r.get("node").and_then(Value::as_str).unwrap_or("another node").to_string();
            if state == "queued" {
                let hook = r.get("hook").and_then(Value::as_str).unwrap_or("").to_string();
                if let Some(list) = r.get("deliveries").and_then(Value::as_array) {
                    queued.extend(list.iter().filter_map(|d| Some((hook.clone(), d.as_str()?.to_string()))));
                }
                r["error"] = json!(format!("queued on node {node}, which stopped running commands; its deliveries run again on the node that took over"));
            } else {
                r["error"] = json!(format!("node {node} stopped running commands before this run finished; replay its delivery to run it again"));
            }
            r["state"] = json!("interrupted");
            r["finished"] = json!(now);
            over.push(*id);
        }
        for id in over {
            let data = self.restored[&id].to_string();
            self.out.push(("$runs".to_string(), "run", data));
        }
        queued
    }

    /// New settings (SIGHUP): the global cap and defaults apply to runs started from now on.
    pub fn set_config(&mut self, cfg: RunnerConfig) {
        self.sched.set_global_max(cfg.max_concurrent);
        self.cfg = cfg;
    }

    /// The settings.
    pub fn config(&self) -> &RunnerConfig {
        &self.cfg
    }

    /// A run by id.
    pub fn get(&self, id: RunId) -> Option<&Run> {
        self.runs.get(&id)
    }

    /// Runs queued or running.
    pub fn active(&self) -> usize {
        self.sched.running() + self.sched.waiting()
    }

    /// Submits a delivery's run. Returns the run that will carry it, or None when the hook's
    /// queue is full (the caller answers 503 and does not acknowledge the delivery). A `held`
    /// submission does not start until [`Runner::release`] is called for it (once the
    /// delivery's journal record is durable); it holds its place in the queue meanwhile.
    pub fn submit(&mut self, spec: RunSpec, now: Instant, held: bool) -> Option<RunId> {
        let id = self.next_id;
        self.mode_of.insert(spec.hook.clone(), spec.mode);
        let decision = self.sched.submit(&spec.hook, spec.mode, id);
        match decision {
            Submit::Full => None,
            Submit::Coalesced(into) => {
                let run = self.runs.get_mut(&into).expect("a waiting run has a record");
                run.holds += u32::from(held);
                run.deliveries.push(spec.delivery.clone());
                // A small record per coalesced delivery: the full list goes out when the run
                // starts and ends, so a pile-up behind a long run costs linear, not quadratic.
                let data = json!({
                    "id": into,
                    "hook": spec.hook,
                    "state": "queued",
                    "coalesced": spec.delivery,
                    "deliveries_count": run.deliveries.len(),
                })
                .to_string();
                // The follow-up run carries the newest payload.
                run.spec = spec;
                self.out.push(("$runs".to_string(), "run", data));
                Some(into)
            }
            Submit::Start(_) | Submit::Queued(_) => {
                self.next_id += 1;
                let run = Run {
                    id,
                    deliveries: vec![spec.delivery.clone()],
                    spec,
                    state: RunState::Queued,
                    exit_code: None,
                    signal: None,
                    error: None,
                    queued_ms: now_ms(),
                    started_ms: None,
                    finished_ms: None,
                    log: VecDeque::new(),
                    log_bytes: 0,
                    log_dropped: 0,
                    lines: 0,
                    raw: Vec::new(),
                    proc: None,
                    holds: u32::from(held),
                    start_due: false,
                };
                self.runs.insert(id, run);
                self.publish_state(id);
                if let Submit::Start(_) = decision {
                    self.start(id, now);
                }
                Some(id)
            }
        }
    }

    /// Puts back one run record from before a restart (a `$runs` event of the journal, read in
    /// order). Only the newest `keep_runs` runs are kept as they come, so a long journal costs
    /// no more. [`Runner::restore_done`] ends the replay.
    pub fn restore_one(&mut self, r: Value) {
        let Some(id) = r.get("id").and_then(Value::as_u64) else { return };
        match r.get("coalesced") {
            // A delivery that joined a waiting run: merged into that run's record.
            Some(delivery) => {
                let run = self.restored.entry(id).or_insert_with(|| json!({ "id": id, "deliveries": [] }));
                if let Some(list) = run.get_mut("deliveries").and_then(Value::as_array_mut) {
                    list.push(delivery.clone());
                }
                for key in ["hook", "state"] {
                    run[key] = r[key].clone();
                }
            }
            None => {
                self.restored.insert(id, r);
            }
        }
        while self.restored.len() > self.cfg.keep_runs {
            self.restored.pop_first();
        }
    }

    /// Ends a replay: a run whose last record is not final was cut off by a crash; it is
    /// recorded as `interrupted` and that is published. New run ids continue after the restored
    /// ones.
    pub fn restore_done(&mut self) {
        if let Some(&last) = self.restored.keys().next_back() {
            self.next_id = self.next_id.max(last + 1);
        }
        let now = crate::clock::rfc3339(now_ms());
        let mut interrupted = Vec::new();
        for (id, r) in self.restored.iter_mut() {
            if matches!(r.get("state").and_then(Value::as_str), Some("queued" | "running")) {
                r["state"] = json!("interrupted");
                r["finished"] = json!(now);
                r["error"] = json!("the daemon stopped before this run finished");
                interrupted.push(*id);
            }
        }
        for id in interrupted {
            let data = self.restored[&id].to_string();
            self.out.push(("$runs".to_string(), "run", data));
        }
    }

    /// Runs a stored run's spec again as a new delivery (the API's retry).
    pub fn retry(&mut self, id: RunId, now: Instant) -> Option<RunId> {
        let mut spec = self.runs.get(&id)?.spec.clone();
        spec.delivery = format!("retry-of-run-{id}");
        spec.capture = false;
        self.submit(spec, now, false)
    }

    /// One delivery held in run `id` became durable: the run may start once none is left.
    pub fn release(&mut self, id: RunId, now: Instant) {
        let Some(run) = self.runs.get_mut(&id) else { return };
        run.holds = run.holds.saturating_sub(1);
        if run.holds == 0 && run.start_due {
            run.start_due = false;
            if run.state == RunState::Queued {
                self.start(id, now);
            }
        }
    }

    /// Cancels a run: a queued one at once, a running one by SIGTERM to its group.
    pub fn cancel(&mut self, id: RunId, now: Instant) -> bool {
        let Some(run) = self.runs.get_mut(&id) else { return false };
        match run.state {
            RunState::Queued => {
                self.end(id, RunState::Cancelled, None, now);
                true
            }
            RunState::Running => {
                if let Some(p) = run.proc.as_mut() {
                    p.ending = Some(RunState::Cancelled);
                    p.deadline = now;
                }
                self.tick(now);
                true
            }
            _ => false,
        }
    }

    fn base_env(&self, run: &Run) -> Vec<(String, String)> {
        let path = std::env::var("PATH")
            .unwrap_or_else(|_| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        // An inheriting child keeps the daemon's own locale.
        let lang = std::env::var("LANG").ok().filter(|_| run.spec.inherit_env).unwrap_or_else(|| "C.UTF-8".into());
        let mut env = vec![
            ("PATH".to_string(), path),
            ("LANG".to_string(), lang),
            ("HOOKCAST_HOOK".to_string(), run.spec.hook.clone()),
            ("HOOKCAST_DELIVERY".to_string(), run.spec.delivery.clone()),
            ("HOOKCAST_RUN".to_string(), run.id.to_string()),
        ];
        for key in ["HOME", "USER", "LOGNAME", "TZ"] {
            if let Ok(v) = std::env::var(key) {
                env.push((key.to_string(), v));
            }
        }
        env
    }

    fn start(&mut self, id: RunId, now: Instant) {
        if let Some(run) = self.runs.get_mut(&id).filter(|r| r.holds > 0) {
            // Its turn came before its delivery was durable: `release` starts it.
            run.start_due = true;
            return;
        }
        let base = self.base_env(&self.runs[&id]);
        let run = self.runs.get_mut(&id).expect("started runs exist");
        run.state = RunState::Running;
        run.started_ms = Some(now_ms());
        match spawn(&self.cfg, &self.registry, run, base, now) {
            Ok(p) => {
                log::info!(
                    hook = run.spec.hook.as_str(),
                    run = id,
                    delivery = run.spec.delivery.as_str(),
                    deliveries = (run.deliveries.len() > 1).then_some(run.deliveries.len()),
                    pid = p.child.id();
                    "run started"
                );
                run.proc = Some(p);
                self.publish_state(id);
            }
            Err(e) => {
                // `end` logs it, with the error.
                let msg = format!("could not start {:?}: {e}", run.spec.command);
                self.end(id, RunState::Failed, Some(msg), now);
            }
        }
    }

    /// Reads a pipe that became readable (up to a budget; the rest next turn).
    pub fn on_readable(&mut self, token: Token) {
        if self.more.contains(&token) {
            // Already owed a read this turn (`read_more`): one budget per pipe per turn.
            return;
        }
        if let Some(i) = self.orphans.iter().position(|(t, _)| *t == token) {
            return self.drain_orphan(i);
        }
        let index = token.0 - TOKEN_BASE;
        let (id, stream) = ((index / 2) as RunId, index % 2);
        let log_cap = self.cfg.log_bytes;
        let Some(run) = self.runs.get_mut(&id) else { return };
        let Some(p) = run.proc.as_mut() else { return };
        let Some(pipe) = p.pipes.get_mut(stream) else { return };
        if !pipe.open {
            return;
        }
        let mut buf = [0u8; READ_CHUNK];
        let mut budget = READ_BUDGET;
        let mut lines = Vec::new();
        loop {
            if budget == 0 || lines.len() >= LINE_BUDGET {
                if !self.more.contains(&token) {
                    self.more.push(token);
                }
                break;
            }
            match pipe.rx.read(&mut buf[..budget.min(READ_CHUNK)]) {
                Ok(0) => {
                    pipe.split.finish(&mut lines);
                    pipe.open = false;
                    let _ = self.registry.deregister(&mut pipe.rx);
                    break;
                }
                Ok(n) => {
                    budget -= n;
                    pipe.split.feed(&buf[..n], &mut lines);
                    if run.spec.capture && run.raw.len() < log_cap {
                        let take = n.min(log_cap - run.raw.len());
                        run.raw.extend_from_slice(&buf[..take]);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    pipe.open = false;
                    let _ = self.registry.deregister(&mut pipe.rx);
                    break;
                }
            }
        }
        let kind = if stream == 0 { "stdout" } else { "stderr" };
        let topic = format!("$runs/{id}");
        for Line { text, cut } in lines {
            let data = line_json(id, kind, &text, cut, run.lines + 1);
            run.keep_line(stream as u8, text, log_cap);
            self.out.push((topic.clone(), kind, data));
        }
    }

    fn drain_orphan(&mut self, i: usize) {
        let mut buf = [0u8; 16 * 1024];
        let rx = &mut self.orphans[i].1;
        for _ in 0..64 {
            match rx.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        // EOF, an error, or a writer that never stops: let it go.
        if let Some((_, mut rx)) = self.orphans.remove(i) {
            let _ = self.registry.deregister(&mut rx);
        }
    }

    /// Pipes still drained for processes finished runs left behind.
    pub fn orphan_pipes(&self) -> usize {
        self.orphans.len()
    }

    /// Pipes that hit their budget last turn; the loop calls this when [`Runner::has_more`].
    pub fn read_more(&mut self) {
        for t in std::mem::take(&mut self.more) {
            self.on_readable(t);
        }
    }

    /// Whether some pipe still has unread input (the loop should not sleep).
    pub fn has_more(&self) -> bool {
        !self.more.is_empty()
    }

    /// After SIGCHLD: collects exited children without blocking.
    pub fn reap(&mut self, now: Instant) {
        for run in self.runs.values_mut() {
            if let Some(p) = run.proc.as_mut() {
                if p.exited.is_none() {
                    if let Ok(Some(status)) = p.child.try_wait() {
                        p.exited = Some((status, now));
                    }
                }
            }
        }
        self.tick(now);
    }

    /// The next time [`Runner::tick`] has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.runs
            .values()
            .filter_map(|r| r.proc.as_ref())
            .map(|p| match (p.exited, p.term_sent) {
                (Some((_, at)), _) => at + PIPE_LINGER,
                (None, Some(at)) => at + self.cfg.kill_grace,
                (None, None) => p.deadline,
            })
            .min()
    }

    /// Timeouts, kills, and finishing runs whose child and pipes are done.
    pub fn tick(&mut self, now: Instant) {
        let grace = self.cfg.kill_grace;
        let mut done = Vec::new();
        for run in self.runs.values_mut() {
            let Some(p) = run.proc.as_mut() else { continue };
            if p.exited.is_none() {
                if p.term_sent.is_none() && now >= p.deadline {
                    p.ending.get_or_insert(RunState::TimedOut);
                    p.term_sent = Some(now);
                    let _ = crate::sys::kill_group(p.pgid, libc::SIGTERM);
                } else if let Some(at) = p.term_sent {
                    if !p.killed && now >= at + grace {
                        p.killed = true;
                        let _ = crate::sys::kill_group(p.pgid, libc::SIGKILL);
                    }
                }
                continue;
            }
            let (_, exited_at) = p.exited.expect("checked above");
            let pipes_done = p.pipes.iter().all(|x| !x.open);
            // Output still waiting in a pipe after the exit is the run's own (its last lines),
            // not a leftover process's: a busy loop may need more than the linger to read it.
            let unread = (0..p.pipes.len()).any(|i| self.more.contains(&Token(TOKEN_BASE + run.id as usize * 2 + i)));
            let linger = if unread { PIPE_LINGER_UNREAD } else { PIPE_LINGER };
            if pipes_done || now >= exited_at + linger {
                done.push(run.id);
            }
        }
        for id in done {
            self.complete(id, now);
        }
    }

    fn complete(&mut self, id: RunId, now: Instant) {
        let run = self.runs.get_mut(&id).expect("completing runs exist");
        let mut p = run.proc.take().expect("completing runs have a process");
        // Flush partial lines; pipes a leftover process still holds keep being drained.
        let mut tail = Vec::new();
        for (i, mut pipe) in std::mem::take(&mut p.pipes).into_iter().enumerate() {
            pipe.split.finish(&mut tail);
            for Line { text, cut } in tail.drain(..) {
                let kind = if i == 0 { "stdout" } else { "stderr" };
                let data = line_json(id, kind, &text, cut, run.lines + 1);
                self.out.push((format!("$runs/{id}"), kind, data));
                run.keep_line(i as u8, text, self.cfg.log_bytes);
            }
            if pipe.open {
                let token = Token(TOKEN_BASE + id as usize * 2 + i);
                self.orphans.push_back((token, pipe.rx));
                if self.orphans.len() > MAX_ORPHAN_PIPES {
                    if let Some((_, mut old)) = self.orphans.pop_front() {
                        let _ = self.registry.deregister(&mut old);
                    }
                }
            }
        }
        if matches!(p.ending, Some(RunState::TimedOut | RunState::Cancelled)) {
            // Whatever the child left behind in its group goes too.
            let _ = crate::sys::kill_group(p.pgid, libc::SIGKILL);
        }
        // The run's private directory goes with every file in it.
        drop(p.files.take());
        use std::os::unix::process::ExitStatusExt;
        let status = p.exited.map(|(s, _)| s);
        run.exit_code = status.and_then(|s| s.code());
        run.signal = status.and_then(|s| s.signal());
        let state = match (p.ending, status) {
            (Some(end), _) => end,
            (None, Some(s)) if s.success() => RunState::Succeeded,
            _ => RunState::Failed,
        };
        self.end(id, state, None, now);
    }

    /// Records a final state, publishes it, and starts whatever the scheduler frees.
    fn end(&mut self, id: RunId, state: RunState, error: Option<String>, now: Instant) {
        let Some(run) = self.runs.get_mut(&id) else { return };
        run.state = state;
        run.finished_ms = Some(now_ms());
        if error.is_some() {
            run.error = error;
        }
        let hook = run.spec.hook.clone();
        log_end(run);
        self.publish_state(id);
        self.finished.push(id);
        let modes = &self.mode_of;
        let next = self.sched.finished(&hook, id, |h| modes.get(h).copied().unwrap_or(Mode::Coalesce));
        for (_, next_id) in next {
            self.start(next_id, now);
        }
        self.forget_old();
    }

    fn forget_old(&mut self) {
        let finished: Vec<RunId> = self.runs.values().filter(|r| r.state.is_final()).map(|r| r.id).collect();
        let excess = finished.len().saturating_sub(self.cfg.keep_runs);
        for id in finished.into_iter().take(excess) {
            self.runs.remove(&id);
        }
    }

    /// At shutdown: cancels queued runs; returns whether any is still running.
    pub fn cancel_queued(&mut self, now: Instant) -> bool {
        let queued: Vec<RunId> = self.runs.values().filter(|r| r.state == RunState::Queued).map(|r| r.id).collect();
        for id in queued {
            self.end(id, RunState::Cancelled, Some("daemon shutting down".into()), now);
        }
        self.runs.values().any(|r| r.state == RunState::Running)
    }

    /// At the end of the shutdown grace: kills every running group and records the runs as
    /// cancelled (blocking briefly to reap them, since the process is about to exit).
    pub fn kill_all(&mut self, now: Instant) {
        let running: Vec<RunId> = self.runs.values().filter(|r| r.state == RunState::Running).map(|r| r.id).collect();
        for id in running {
            if let Some(p) = self.runs.get_mut(&id).and_then(|r| r.proc.as_mut()) {
                let _ = crate::sys::kill_group(p.pgid, libc::SIGKILL);
                p.ending = Some(RunState::Cancelled);
                if let Ok(status) = p.child.wait() {
                    p.exited = Some((status, now));
                }
            }
            self.complete(id, now);
        }
    }

    fn publish_state(&mut self, id: RunId) {
        let Some(run) = self.runs.get(&id) else { return };
        let data = summary(run, self.node.as_deref()).to_string();
        self.out.push(("$runs".to_string(), "run", data));
    }

    /// The JSON record of a run, with its log when `with_log` (restored runs: the record only;
    /// their output lines are in the `$runs/{id}` history).
    pub fn record(&self, id: RunId, with_log: bool) -> Option<Value> {
        let Some(run) = self.runs.get(&id) else {
            return self.restored.get(&id).cloned();
        };
        let mut v = summary(run, self.node.as_deref());
        if with_log {
            // The log holds the newest lines: the first one is line `log_dropped + 1`.
            let lines: Vec<Value> = (run.log_dropped + 1..)
                .zip(&run.log)
                .map(|(n, (s, t))| json!({ "stream": if *s == 0 { "stdout" } else { "stderr" }, "line": t, "n": n }))
                .collect();
            v["log"] = Value::Array(lines);
            v["log_lines_dropped"] = json!(run.log_dropped);
        }
        Some(v)
    }

    /// Dead letters: deliveries whose latest run (this process's, or one read back from the
    /// journal) failed, timed out or was interrupted, and that were neither retried nor
    /// replayed since: a replay is a newer run of the same delivery id, a retry a newer run
    /// named `retry-of-run-{id}` that stands for that run's deliveries. Counted over the runs
    /// kept (`runner.keep_runs`), at each scrape: a few thousand entries at most.
    pub fn dead_letters(&self) -> usize {
        let restored = self.restored.iter().map(|(id, r)| {
            let dead = matches!(r["state"].as_str(), Some("failed" | "timed_out" | "interrupted"));
            let ds: Vec<&str> = r["deliveries"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            (*id, r["hook"].as_str().unwrap_or(""), ds, dead)
        });
        let live = self.runs.iter().map(|(id, r)| {
            let dead = matches!(r.state, RunState::Failed | RunState::TimedOut | RunState::Interrupted);
            (*id, r.spec.hook.as_str(), r.deliveries.iter().map(String::as_str).collect(), dead)
        });
        let mut runs: Vec<(RunId, &str, Vec<&str>, bool)> = restored.chain(live).collect();
        runs.sort_by_key(|r| r.0);
        // Delivery ids are the senders': two hooks may share one.
        let mut latest: HashMap<(&str, &str), bool> = HashMap::new();
        let mut covers: HashMap<RunId, Vec<&str>> = HashMap::new();
        for (id, hook, deliveries, dead) in runs {
            let mut real = Vec::new();
            for d in deliveries {
                let retried = d.strip_prefix("retry-of-run-").and_then(|n| n.parse::<RunId>().ok());
                match retried.and_then(|n| covers.get(&n)) {
                    Some(of) => real.extend(of.iter().copied()),
                    None => real.push(d),
                }
            }
            for d in &real {
                latest.insert((hook, d), dead);
            }
            covers.insert(id, real);
        }
        latest.values().filter(|dead| **dead).count()
    }

    /// The most recent runs, newest first (restored ones after this process's own).
    pub fn recent(&self, limit: usize) -> Vec<Value> {
        self.runs
            .values()
            .rev()
            .map(|r| summary(r, self.node.as_deref()))
            .chain(self.restored.values().rev().cloned())
            .take(limit)
            .collect()
    }
}

/// The log line of a run that reached its final state: how it ended and in what time.
fn log_end(run: &Run) {
    let level = match run.state {
        RunState::Failed | RunState::TimedOut => log::Level::Warn,
        _ => log::Level::Info,
    };
    let duration_ms = run.started_ms.zip(run.finished_ms).map(|(a, b)| b.saturating_sub(a));
    let signal = run.signal.map(|s| signal_name(s).map_or_else(|| s.to_string(), str::to_string));
    log::log!(
        level,
        hook = run.spec.hook.as_str(),
        run = run.id,
        delivery = run.spec.delivery.as_str(),
        result = run.state.as_str(),
        exit_code = run.exit_code,
        signal = signal,
        duration_ms = duration_ms,
        error = run.error.as_deref();
        "run finished"
    );
}

/// The usual name of the signals that end runs (a timeout's, a kill's, a crash's).
fn signal_name(sig: i32) -> Option<&'static str> {
    Some(match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        _ => return None,
    })
}

fn summary(run: &Run, node: Option<&str>) -> Value {
    let mut v = json!({
        "id": run.id,
        "hook": run.spec.hook,
        "state": run.state.as_str(),
        "deliveries": run.deliveries,
        "command": run.spec.command,
        "queued": crate::clock::rfc3339(run.queued_ms),
    });
    let m = v.as_object_mut().expect("an object");
    if let Some(n) = node {
        m.insert("node".into(), json!(n));
    }
    if let Some(t) = run.started_ms {
        m.insert("started".into(), json!(crate::clock::rfc3339(t)));
    }
    if let Some(t) = run.finished_ms {
        m.insert("finished".into(), json!(crate::clock::rfc3339(t)));
        m.insert("duration_ms".into(), json!(t.saturating_sub(run.started_ms.unwrap_or(t))));
    }
    if let Some(c) = run.exit_code {
        m.insert("exit_code".into(), json!(c));
    }
    if let Some(s) = run.signal {
        m.insert("signal".into(), json!(s));
    }
    if let Some(e) = &run.error {
        m.insert("error".into(), json!(e));
    }
    v
}

/// Resolves the program: a relative path with a `/` is relative to the working directory (as
/// adnanh/webhook does); a bare name is looked up in PATH by the OS.
fn program(spec: &RunSpec) -> PathBuf {
    let cmd = PathBuf::from(&spec.command);
    match &spec.cwd {
        Some(dir) if cmd.is_relative() && spec.command.contains('/') => dir.join(cmd),
        _ => cmd,
    }
}

/// A run's private directory for `pass-file-to-command` files: created 0700 under a fresh
/// random name inside `runner.temp_dir` (a name nobody can predict, so nobody can plant a file
/// or a symlink there first), removed with its contents when dropped, so every path out of a
/// run, failures included, cleans up.
#[derive(Debug)]
struct RunFiles {
    dir: PathBuf,
    run: RunId,
}

impl RunFiles {
    /// Attempts at a fresh name before giving up (a clash needs 64 random bits to repeat).
    const ATTEMPTS: usize = 8;

    fn create(temp_dir: &Path, run: RunId) -> io::Result<RunFiles> {
        use std::os::unix::fs::DirBuilderExt;
        let mut last = io::Error::new(io::ErrorKind::AlreadyExists, "no fresh directory name");
        for _ in 0..Self::ATTEMPTS {
            let mut raw = [0u8; 8];
            crate::sys::random_bytes(&mut raw)?;
            let dir = temp_dir.join(format!("hookcast-run{run}-{:016x}", u64::from_le_bytes(raw)));
            // `create_dir` refuses an existing name, a symlink included; the mode only narrows
            // under the umask, never widens.
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(RunFiles { dir, run }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Writes file `i` (for environment variable `var`) and returns its path.
    fn write(&self, i: usize, var: &str, contents: &[u8]) -> io::Result<PathBuf> {
        use std::os::unix::fs::OpenOptionsExt;
        // The names runs always had (scripts may look for them); the prefix and the index keep
        // a variable's name from becoming `..` or a path.
        let safe = |c: char| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' };
        let name: String = var.chars().map(|c| safe(c).to_ascii_lowercase()).collect();
        let path = self.dir.join(format!("hookcast-run{}-{i}-{name}", self.run));
        // 0600: the payload may be private.
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        std::io::Write::write_all(&mut f, contents)?;
        Ok(path)
    }
}

impl Drop for RunFiles {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            log::warn!("could not remove {}: {e}", self.dir.display());
        }
    }
}

fn spawn(
    cfg: &RunnerConfig,
    registry: &Registry,
    run: &Run,
    base: Vec<(String, String)>,
    now: Instant,
) -> io::Result<Proc> {
    use std::os::unix::process::CommandExt;
    let mut env = base;
    // Removed again when this function fails at any later step (the guard drops).
    let files = if run.spec.files.is_empty() { None } else { Some(RunFiles::create(&cfg.temp_dir, run.id)?) };
    if let Some(dir) = &files {
        for (i, (var, contents)) in run.spec.files.iter().enumerate() {
            let path = dir.write(i, var, contents)?;
            env.push((var.clone(), path.to_string_lossy().into_owned()));
        }
    }
    env.extend(run.spec.env.iter().cloned());
    let mut cmd = Command::new(program(&run.spec));
    if run.spec.inherit_env {
        for name in &run.spec.withheld_env {
            cmd.env_remove(name);
        }
    } else {
        cmd.env_clear();
    }
    cmd.args(&run.spec.args)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = &run.spec.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn()?;
    let pgid = child.id();
    let mut pipes = Vec::with_capacity(2);
    for (i, rx) in
        [Receiver::from(child.stdout.take().expect("piped")), Receiver::from(child.stderr.take().expect("piped"))]
            .into_iter()
            .enumerate()
    {
        let mut rx = rx;
        rx.set_nonblocking(true)?;
        let token = Token(TOKEN_BASE + run.id as usize * 2 + i);
        registry.register(&mut rx, token, Interest::READABLE)?;
        pipes.push(Pipe { rx, split: LineSplitter::new(cfg.max_line_bytes), open: true });
    }
    Ok(Proc {
        child,
        pgid,
        pipes,
        deadline: now + run.spec.timeout,
        term_sent: None,
        killed: false,
        exited: None,
        ending: None,
        files,
    })
}

#[cfg(test)]
impl RunnerConfig {
    /// Small limits for unit tests here and in the intake's.
    pub(crate) fn for_tests() -> RunnerConfig {
        RunnerConfig {
            max_concurrent: 4,
            max_queued: 4,
            max_parallel: 1,
            timeout: Duration::from_secs(60),
            kill_grace: Duration::from_secs(1),
            max_line_bytes: 1024,
            log_bytes: 64 * 1024,
            keep_runs: 10,
            shutdown_grace: Duration::from_secs(1),
            temp_dir: std::env::temp_dir(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner() -> (mio::Poll, Runner) {
        let poll = mio::Poll::new().unwrap();
        let cfg = RunnerConfig::for_tests();
        let registry = poll.registry().try_clone().unwrap();
        (poll, Runner::new(cfg, registry))
    }

    /// Regression: a run whose child had exited was finished one second later even while its
    /// own last lines were still unread in the pipe (a loaded loop reads a budget per turn),
    /// and those lines were discarded with the pipe.
    #[test]
    fn a_run_that_exited_keeps_its_unread_last_lines() {
        let (_poll, mut r) = runner();
        let spec = RunSpec {
            hook: "h".into(),
            command: "sh".into(),
            args: vec!["-c".into(), "head -c 60000 /dev/zero | tr '\\0' '\\n'; echo last".into()],
            env: Vec::new(),
            files: Vec::new(),
            cwd: None,
            timeout: Duration::from_secs(60),
            mode: Mode::Coalesce,
            delivery: "d".into(),
            capture: false,
            inherit_env: false,
            withheld_env: Vec::new(),
        };
        let id = r.submit(spec, Instant::now(), false).expect("started");
        // Let the child write everything and exit without reading a byte.
        let t0 = Instant::now();
        while r.runs[&id].proc.as_ref().is_some_and(|p| p.exited.is_none()) {
            assert!(t0.elapsed() < Duration::from_secs(20), "the child did not exit");
            std::thread::sleep(Duration::from_millis(5));
            r.reap(Instant::now());
        }
        // One turn's budget of reading, then a tick well past the linger of a quiet pipe.
        r.on_readable(Token(TOKEN_BASE + id as usize * 2));
        assert!(r.has_more(), "60 000 lines are more than one turn's budget");
        r.tick(Instant::now() + PIPE_LINGER * 3);
        assert!(r.runs[&id].proc.is_some(), "finished with output still unread");
        while r.has_more() {
            r.read_more();
        }
        r.on_readable(Token(TOKEN_BASE + id as usize * 2 + 1));
        r.tick(Instant::now());
        let run = &r.runs[&id];
        assert!(run.proc.is_none(), "finished once the pipes closed");
        assert_eq!(run.log.back().map(|(_, l)| l.as_str()), Some("last"));
    }
}
