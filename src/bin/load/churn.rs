//! `hookcast-load churn`: a steady churn of subscribers for the soak (`scripts/bench.sh --soak`).
//!
//! Subscribers connect at a fixed rate, each with a transport drawn from the mix (SSE, WebSocket,
//! long poll), some resuming from an event a few publishes back (`Last-Event-ID`, `lastEventId`,
//! `since`), some with a filter (`type=even`); each stays for a hold time drawn from a range,
//! then closes. Meanwhile one keep-alive publisher posts events (types `even` and `odd`
//! alternating) and another posts GitHub-signed webhooks (`X-Hub-Signature-256`).
//!
//! Every publish's id and times are logged, so a subscriber can tell at its close which events
//! it must have received: those after its resume cursor, or published after it was established,
//! and acknowledged at least `MARGIN` before it closed (filtered to `even` when it filters). It
//! reports the ones missing, ids that came out of order, events its filter should have kept
//! away, `reset`s (the cursor is always within history here) and any unexpected status or close.
//!
//! With `--pid` the daemon is sampled every `--sample-secs`: VmRSS, open descriptors, and from
//! `/metrics` the history's bytes and events and the open connections; after the warm-up each
//! series gets a least-squares slope and a flat / not flat verdict (see `Fit` and `flatness`).
//!
//! Subscribers are one thread each with blocking sockets: a churn holds a few hundred at a time,
//! and a thread per subscriber keeps each one's story linear and easy to check.

use super::{
    check_path, dechunk, encode_client_frame, kb_field, now_micros, number, parse_frame_head, parse_head,
    read_line_capped, resolve_v4, ws_accept, Chunked, Rng, BASE64, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING,
    OP_PONG, OP_TEXT,
};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// An event acknowledged this long before a subscriber closed must have reached it.
const MARGIN: Duration = Duration::from_secs(2);
/// Bound on connect, on every write, and on a response head.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// A blocking read waits at most this long before the hold's end is checked again.
const READ_SLICE: Duration = Duration::from_millis(200);
/// The most bytes a subscriber keeps unparsed (a line, a frame, a poll answer).
const MAX_BUFFER: usize = 4 << 20;
/// A resuming subscriber starts 1 to this many publishes back.
const MAX_RESUME_BACK: usize = 10;
/// The longest hold of a long poll request, in seconds (it is repeated until the hold ends).
const POLL_TIMEOUT_SECS: u64 = 5;
/// Distinct error descriptions kept with their counts.
const MAX_ERROR_KINDS: usize = 50;

/// `churn`'s part of the usage text.
pub(crate) const HELP: &str = "\
    hookcast-load churn  --target HOST:PORT --seconds S [--topic T] [--also TOPICS]
                         [--connect-rate R] [--hold-ms MIN-MAX] [--mix sse=2,ws=2,poll=1]
                         [--resume-pct P] [--filter-pct P] [--max-open N] [--token T]
                         [--publish-rate R] [--webhook-rate R --hook-path PATH --hook-secret S]
                         [--pid PID --sample-secs N --samples FILE --warmup-secs N
                          --flat-pct X --history-limit BYTES]

churn: for S seconds, subscribers connect at R a second (default 20) to topic T (default soak,
plus --also, e.g. hooks/soak), each over a transport drawn from --mix, P% of them resuming 1 to
10 publishes back (--resume-pct, default 30) and P% filtering on type=even (--filter-pct,
default 20); each holds for a time drawn from --hold-ms (default 1000-10000), then closes. One
keep-alive publisher POSTs /publish/T?event=even|odd at --publish-rate a second (default 10);
another POSTs a push to --hook-path signed with --hook-secret the way GitHub does
(X-Hub-Signature-256) at --webhook-rate a second (default 0). Prints

    churn seconds=S subscribers=.. completed=.. events_checked=.. missing=.. out_of_order=.. \\
        filter_violations=.. resets=.. errors=.. published=.. publish_errors=.. webhooks=.. \\
        webhook_errors=..

and an `error COUNT what` line per kind of error. With --pid it samples the server every
--sample-secs (default 10): VmRSS, open descriptors, and from /metrics hookcast_history_bytes,
hookcast_history_events and hookcast_connections_active; each sample is a `sample` line and a
row of --samples (TSV). After --warmup-secs (default S/5) each series is fitted by least squares:

    series name=rss_kb n=.. mean=.. slope_per_min=.. pct_per_hour=.. drift=.. noise=.. \\
        threshold=.. flat=yes|no

drift = |slope| x the measured window, noise = the residual standard deviation of one sample;
flat when drift <= max(noise, --flat-pct % of the mean (default 1 %), 2 standard errors of the
drift) — no change over the run that can be told from the samples' scatter. With --history-limit,
history_bytes must reach 90 % of it before the warm-up ends (the plateau is then tested).
Exit status 1 on any error counted above, a series that is not flat or could not be measured.
";

/// The three ways to subscribe.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Sse,
    Ws,
    Poll,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Sse => "sse",
            Kind::Ws => "ws",
            Kind::Poll => "poll",
        }
    }
}

/// `churn`'s options, validated.
#[derive(Debug, Clone)]
pub(crate) struct ChurnOpts {
    target: String,
    addr: SocketAddrV4,
    seconds: u64,
    topic: String,
    also: Vec<String>,
    connect_rate: f64,
    hold_ms: (u64, u64),
    mix: Vec<(Kind, u32)>,
    resume_pct: u32,
    filter_pct: u32,
    max_open: usize,
    token: Option<String>,
    publish_rate: f64,
    webhook_rate: f64,
    hook_path: String,
    hook_secret: Option<String>,
    pid: Option<u32>,
    sample_secs: u64,
    samples: Option<String>,
    warmup_secs: u64,
    flat_pct: f64,
    history_limit: Option<u64>,
}

/// Runs `churn` with the arguments after the subcommand; returns the exit status.
pub(crate) fn churn_main(args: &[String]) -> i32 {
    match parse_churn_args(args) {
        Ok(Some(opts)) => run_churn(&opts),
        Ok(None) => {
            super::print_help();
            0
        }
        Err(e) => {
            eprintln!("hookcast-load: {e}\n(hookcast-load --help prints the usage)");
            2
        }
    }
}

/// `MIN-MAX` in milliseconds, MIN <= MAX, MIN >= 100.
fn parse_range(name: &str, v: &str) -> Result<(u64, u64), String> {
    let (a, b) = v.split_once('-').ok_or_else(|| format!("{name}: {v:?} is not MIN-MAX"))?;
    let (a, b): (u64, u64) = (number(name, Some(a), 0)?, number(name, Some(b), 0)?);
    if a < 100 || a > b {
        return Err(format!("{name}: {v:?} needs 100 <= MIN <= MAX"));
    }
    Ok((a, b))
}

/// `sse=2,ws=2,poll=1`: relative weights, at least one above zero.
fn parse_mix(v: &str) -> Result<Vec<(Kind, u32)>, String> {
    let mut mix = Vec::new();
    for part in v.split(',') {
        let (name, w) = part.split_once('=').ok_or_else(|| format!("--mix: {part:?} is not NAME=WEIGHT"))?;
        let kind = match name.trim() {
            "sse" => Kind::Sse,
            "ws" => Kind::Ws,
            "poll" => Kind::Poll,
            other => return Err(format!("--mix: unknown transport {other:?} (sse, ws, poll)")),
        };
        if mix.iter().any(|(k, _)| *k == kind) {
            return Err(format!("--mix: {name} given twice"));
        }
        mix.push((kind, number("--mix", Some(w.trim()), 0u32)?));
    }
    if mix.iter().all(|(_, w)| *w == 0) {
        return Err("--mix: every weight is zero".into());
    }
    Ok(mix)
}

fn rate(name: &str, v: Option<&str>, default: f64) -> Result<f64, String> {
    let r: f64 = number(name, v, default)?;
    if !(0.0..=10_000.0).contains(&r) {
        return Err(format!("{name} must be between 0 and 10000"));
    }
    Ok(r)
}

fn topic_ok(t: &str) -> bool {
    !t.is_empty() && !t.bytes().any(|b| b <= b' ' || b == 0x7f || matches!(b, b'?' | b'#' | b'&' | b',' | b'%'))
}

/// Parses `churn`'s flags (`--name value` or `--name=value`); `Ok(None)` means `--help`.
pub(crate) fn parse_churn_args(args: &[String]) -> Result<Option<ChurnOpts>, String> {
    let mut raw: BTreeMap<String, String> = BTreeMap::new();
    let mut it = args.iter().cloned();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        if matches!(name.as_str(), "-h" | "--help") {
            return Ok(None);
        }
        const KNOWN: &[&str] = &[
            "--target",
            "--seconds",
            "--topic",
            "--also",
            "--connect-rate",
            "--hold-ms",
            "--mix",
            "--resume-pct",
            "--filter-pct",
            "--max-open",
            "--token",
            "--publish-rate",
            "--webhook-rate",
            "--hook-path",
            "--hook-secret",
            "--pid",
            "--sample-secs",
            "--samples",
            "--warmup-secs",
            "--flat-pct",
            "--history-limit",
        ];
        if !KNOWN.contains(&name.as_str()) {
            return Err(format!("unknown option {name:?} for churn"));
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("{name} needs a value"))?,
        };
        if raw.insert(name.clone(), value).is_some() {
            return Err(format!("{name} given twice"));
        }
    }
    let get = |n: &str| raw.get(n).map(String::as_str);
    let target = get("--target").ok_or("--target is required")?.to_string();
    let addr = resolve_v4("--target", &target)?;
    let seconds: u64 = number("--seconds", Some(get("--seconds").ok_or("--seconds is required")?), 0)?;
    if !(1..=86_400).contains(&seconds) {
        return Err("--seconds must be between 1 and 86400".into());
    }
    let topic = get("--topic").unwrap_or("soak").to_string();
    let also: Vec<String> = get("--also").map(|v| v.split(',').map(str::to_string).collect()).unwrap_or_default();
    for t in std::iter::once(&topic).chain(&also) {
        if !topic_ok(t) {
            return Err(format!("topic {t:?}: no spaces, '?', '#', '&', ',' or '%'"));
        }
    }
    let hold_ms = parse_range("--hold-ms", get("--hold-ms").unwrap_or("1000-10000"))?;
    let mix = parse_mix(get("--mix").unwrap_or("sse=2,ws=2,poll=1"))?;
    let resume_pct: u32 = number("--resume-pct", get("--resume-pct"), 30)?;
    let filter_pct: u32 = number("--filter-pct", get("--filter-pct"), 20)?;
    if resume_pct > 100 || filter_pct > 100 {
        return Err("--resume-pct and --filter-pct are percentages (0 to 100)".into());
    }
    let max_open: usize = number("--max-open", get("--max-open"), 2000)?;
    if !(1..=20_000).contains(&max_open) {
        return Err("--max-open must be between 1 and 20000".into());
    }
    let token = get("--token").map(str::to_string);
    if token.as_deref().is_some_and(|t| t.contains(['\r', '\n'])) {
        return Err("--token must not contain CR or LF".into());
    }
    let webhook_rate = rate("--webhook-rate", get("--webhook-rate"), 0.0)?;
    let hook_path = get("--hook-path").unwrap_or("/hooks/soak").to_string();
    check_path("--hook-path", &hook_path)?;
    let hook_secret = get("--hook-secret").map(str::to_string);
    if webhook_rate > 0.0 && hook_secret.is_none() {
        return Err("--webhook-rate needs --hook-secret".into());
    }
    let pid: Option<u32> = get("--pid").map(|v| number("--pid", Some(v), 0)).transpose()?;
    let sample_secs: u64 = number("--sample-secs", get("--sample-secs"), 10)?;
    if sample_secs == 0 {
        return Err("--sample-secs must be at least 1".into());
    }
    let warmup_secs: u64 = number("--warmup-secs", get("--warmup-secs"), seconds / 5)?;
    if warmup_secs >= seconds {
        return Err("--warmup-secs must be shorter than --seconds".into());
    }
    let flat_pct: f64 = number("--flat-pct", get("--flat-pct"), 1.0)?;
    if !(0.0..=100.0).contains(&flat_pct) {
        return Err("--flat-pct must be between 0 and 100".into());
    }
    let history_limit: Option<u64> =
        get("--history-limit").map(|v| number("--history-limit", Some(v), 0)).transpose()?;
    let sampling = ["--sample-secs", "--samples", "--warmup-secs", "--flat-pct", "--history-limit"];
    if pid.is_none() {
        if let Some(n) = sampling.iter().find(|n| raw.contains_key(**n)) {
            return Err(format!("{n} needs --pid"));
        }
    }
    Ok(Some(ChurnOpts {
        target,
        addr,
        seconds,
        topic,
        also,
        connect_rate: rate("--connect-rate", get("--connect-rate"), 20.0)?,
        hold_ms,
        mix,
        resume_pct,
        filter_pct,
        max_open,
        token,
        publish_rate: rate("--publish-rate", get("--publish-rate"), 10.0)?,
        webhook_rate,
        hook_path,
        hook_secret,
        pid,
        sample_secs,
        samples: get("--samples").map(str::to_string),
        warmup_secs,
        flat_pct,
        history_limit,
    }))
}

// ---------------------------------------------------------------------------------------------
// What was published, and what a subscriber must therefore have received.

/// One acknowledged publish.
#[derive(Clone, Copy, Debug)]
struct Pub {
    id: u64,
    /// Its type is `even` (else `odd`).
    even: bool,
    /// When its request was written.
    sent: Instant,
    /// When its 2xx answer was read.
    acked: Instant,
}

/// Where a subscriber's stream starts.
#[derive(Clone, Copy, Debug)]
enum Start {
    /// It resumed after this id (or, long poll, continued after this `next`).
    After(u64),
    /// It was established at this instant: publishes sent later are its.
    SentAfter(Instant),
}

/// The ids (in publish order) a subscriber must have received by `closed`.
fn expected_ids(log: &[Pub], start: Start, even_only: bool, closed: Instant) -> Vec<u64> {
    let Some(due) = closed.checked_sub(MARGIN) else {
        return Vec::new();
    };
    log.iter()
        .filter(|p| match start {
            Start::After(cursor) => p.id > cursor,
            Start::SentAfter(at) => p.sent > at,
        })
        .filter(|p| p.acked <= due && (!even_only || p.even))
        .map(|p| p.id)
        .collect()
}

/// The expected ids not among the received ones, and the received ids not above the one before.
fn check_received(expected: &[u64], received: &[u64]) -> (u64, u64) {
    let out_of_order = received.windows(2).filter(|w| w[1] <= w[0]).count() as u64;
    let mut sorted = received.to_vec();
    sorted.sort_unstable();
    let missing = expected.iter().filter(|id| sorted.binary_search(id).is_err()).count() as u64;
    (missing, out_of_order)
}

// ---------------------------------------------------------------------------------------------
// The tally every thread adds to.

#[derive(Default, Debug)]
struct Tally {
    started: u64,
    completed: u64,
    events_checked: u64,
    missing: u64,
    out_of_order: u64,
    filter_violations: u64,
    resets: u64,
    received: u64,
    published: u64,
    publish_errors: u64,
    webhooks: u64,
    webhook_errors: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn error(&mut self, what: String) {
        if self.errors.len() < MAX_ERROR_KINDS || self.errors.contains_key(&what) {
            *self.errors.entry(what).or_default() += 1;
        } else {
            *self.errors.entry("(other errors)".into()).or_default() += 1;
        }
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// What the threads share.
struct Shared {
    opts: ChurnOpts,
    log: Mutex<Vec<Pub>>,
    tally: Mutex<Tally>,
    open: AtomicUsize,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------------------------------------
// The controller.

fn run_churn(opts: &ChurnOpts) -> i32 {
    let shared = Arc::new(Shared {
        opts: opts.clone(),
        log: Mutex::new(Vec::new()),
        tally: Mutex::new(Tally::default()),
        open: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
    });
    let start = Instant::now();
    let end = start + Duration::from_secs(opts.seconds);
    let mut helpers = Vec::new();
    if opts.publish_rate > 0.0 {
        let s = Arc::clone(&shared);
        helpers.push(thread::spawn(move || publisher(&s, end)));
    }
    if opts.webhook_rate > 0.0 {
        let s = Arc::clone(&shared);
        helpers.push(thread::spawn(move || webhooks(&s, end)));
    }
    let sampler = opts.pid.map(|pid| {
        let s = Arc::clone(&shared);
        thread::spawn(move || sample_loop(&s, pid, start, end))
    });
    let mut rng = Rng::seeded();
    let mut subs = Vec::new();
    let mut n = 0u64;
    if opts.connect_rate > 0.0 {
        let every = Duration::from_secs_f64(1.0 / opts.connect_rate);
        loop {
            let due = start + every.saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
            if due >= end {
                break;
            }
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                thread::sleep(wait);
            }
            n += 1;
            if shared.open.load(Ordering::Relaxed) >= opts.max_open {
                lock(&shared.tally).error(format!("--max-open {} reached: a connect was skipped", opts.max_open));
                continue;
            }
            let plan = draw_plan(opts, &mut rng, &lock(&shared.log));
            let s = Arc::clone(&shared);
            shared.open.fetch_add(1, Ordering::Relaxed);
            lock(&shared.tally).started += 1;
            let spawned = thread::Builder::new().stack_size(256 * 1024).name(format!("sub-{n}")).spawn(move || {
                subscriber(&s, plan);
                s.open.fetch_sub(1, Ordering::Relaxed);
            });
            match spawned {
                Ok(h) => subs.push(h),
                Err(e) => {
                    shared.open.fetch_sub(1, Ordering::Relaxed);
                    lock(&shared.tally).error(format!("cannot start a subscriber thread: {e}"));
                }
            }
            // Finished threads are joined as we go so their handles do not pile up.
            if subs.len() > 256 {
                let (done, live): (Vec<_>, Vec<_>) = subs.into_iter().partition(|h| h.is_finished());
                done.into_iter().for_each(|h| drop(h.join()));
                subs = live;
            }
        }
    }
    // Without subscribers (--connect-rate 0) the publishers still run for the whole time.
    if let Some(w) = end.checked_duration_since(Instant::now()) {
        thread::sleep(w);
    }
    // Subscribers still holding end by their own hold time; publishing goes on until they have.
    for h in subs {
        if h.join().is_err() {
            lock(&shared.tally).error("a subscriber thread panicked".into());
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    for h in helpers {
        let _ = h.join();
    }
    let samples = sampler.and_then(|h| h.join().ok()).unwrap_or_default();
    let t = lock(&shared.tally);
    println!(
        "churn seconds={} subscribers={} completed={} events_checked={} received={} missing={} out_of_order={} \
         filter_violations={} resets={} errors={} published={} publish_errors={} webhooks={} webhook_errors={}",
        opts.seconds,
        t.started,
        t.completed,
        t.events_checked,
        t.received,
        t.missing,
        t.out_of_order,
        t.filter_violations,
        t.resets,
        t.error_count(),
        t.published,
        t.publish_errors,
        t.webhooks,
        t.webhook_errors
    );
    for (what, count) in &t.errors {
        println!("error {count} {what}");
    }
    let mut failed = t.error_count() + t.missing + t.out_of_order + t.filter_violations + t.resets > 0;
    if opts.pid.is_some() {
        failed |= !report_series(opts, &samples);
    }
    i32::from(failed)
}

/// One subscriber's dice.
#[derive(Debug, Clone)]
struct SubPlan {
    kind: Kind,
    /// The id to resume after.
    resume: Option<u64>,
    filter: bool,
    hold: Duration,
    ws_key: String,
}

fn draw_plan(opts: &ChurnOpts, rng: &mut Rng, log: &[Pub]) -> SubPlan {
    let total: u64 = opts.mix.iter().map(|(_, w)| u64::from(*w)).sum();
    let mut pick = rng.next_u64() % total.max(1);
    let mut kind = opts.mix[0].0;
    for (k, w) in &opts.mix {
        if pick < u64::from(*w) {
            kind = *k;
            break;
        }
        pick -= u64::from(*w);
    }
    let resume = (rng.next_u64() % 100 < u64::from(opts.resume_pct) && log.len() > MAX_RESUME_BACK)
        .then(|| log[log.len() - 1 - (1 + (rng.next_u64() % MAX_RESUME_BACK as u64) as usize)].id);
    let filter = rng.next_u64() % 100 < u64::from(opts.filter_pct);
    let (lo, hi) = opts.hold_ms;
    let hold = Duration::from_millis(lo + rng.next_u64() % (hi - lo + 1));
    SubPlan { kind, resume, filter, hold, ws_key: BASE64.encode(rng.bytes16()) }
}

// ---------------------------------------------------------------------------------------------
// A subscriber.

/// One delivery as a subscriber saw it.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Event {
        id: u64,
        topic: String,
        event: String,
    },
    Reset,
    /// Anything else (an ack, a keep-alive).
    Other,
}

/// What one subscriber observed.
#[derive(Default)]
struct SubLog {
    /// Ids of the main topic's events, in arrival order.
    ids: Vec<u64>,
    other_topics: u64,
    filter_violations: u64,
    resets: u64,
}

impl SubLog {
    fn add(&mut self, seen: Seen, main: &str, filter: bool) {
        match seen {
            Seen::Event { id, topic, event } => {
                if filter && event != "even" {
                    self.filter_violations += 1;
                }
                if topic == main {
                    self.ids.push(id);
                } else {
                    self.other_topics += 1;
                }
            }
            Seen::Reset => self.resets += 1,
            Seen::Other => {}
        }
    }
}

fn subscriber(shared: &Shared, plan: SubPlan) {
    let opts = &shared.opts;
    let began = Instant::now();
    let until = began + plan.hold;
    let mut log = SubLog::default();
    let outcome = match plan.kind {
        Kind::Sse | Kind::Ws => stream_sub(opts, &plan, until, &mut log),
        Kind::Poll => poll_sub(opts, &plan, until, &mut log),
    };
    let closed = Instant::now();
    let mut t = lock(&shared.tally);
    match outcome {
        Ok(start) => {
            let expected = expected_ids(&lock(&shared.log), start, plan.filter, closed);
            let (missing, out_of_order) = check_received(&expected, &log.ids);
            t.completed += 1;
            t.events_checked += expected.len() as u64;
            t.missing += missing;
            t.out_of_order += out_of_order;
            if missing > 0 {
                let how = if plan.resume.is_some() { "resumed" } else { "live" };
                t.error(format!("{} ({how}): events missing", plan.kind.name()));
            }
        }
        Err(e) => t.error(format!("{}: {e}", plan.kind.name())),
    }
    t.received += log.ids.len() as u64 + log.other_topics;
    t.filter_violations += log.filter_violations;
    t.resets += log.resets;
}

fn query(opts: &ChurnOpts, plan: &SubPlan) -> String {
    let mut topics = opts.topic.clone();
    for t in &opts.also {
        topics.push(',');
        topics.push_str(t);
    }
    let mut q = format!("topics={topics}");
    if plan.filter {
        q += "&type=even";
    }
    q
}

fn connect(opts: &ChurnOpts) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&SocketAddr::V4(opts.addr), IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    s.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    Ok(s)
}

fn auth(opts: &ChurnOpts) -> String {
    opts.token.as_ref().map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default()
}

/// Reads what is there into `buf`, waiting until `until` at most; `Ok(false)` when nothing came.
fn read_some(s: &mut TcpStream, buf: &mut Vec<u8>, until: Instant) -> Result<bool, String> {
    let Some(left) = until.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) else {
        return Ok(false);
    };
    s.set_read_timeout(Some(left.min(READ_SLICE))).map_err(|e| e.to_string())?;
    let mut chunk = [0u8; 16 * 1024];
    match s.read(&mut chunk) {
        Ok(0) => Err("closed by the server before the hold ended".into()),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > MAX_BUFFER {
                return Err("more than 4 MiB unparsed".into());
            }
            Ok(true)
        }
        Err(e)
            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted) =>
        {
            Ok(false)
        }
        Err(e) => Err(format!("read: {e}")),
    }
}

/// SSE or WebSocket: subscribe, read until the hold ends, close.
fn stream_sub(opts: &ChurnOpts, plan: &SubPlan, until: Instant, log: &mut SubLog) -> Result<Start, String> {
    let mut s = connect(opts)?;
    let mut q = query(opts, plan);
    let request = match plan.kind {
        Kind::Sse => {
            q += "&format=json";
            let resume = plan.resume.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
            format!(
                "GET /events?{q} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n{resume}{}\r\n",
                opts.target,
                auth(opts)
            )
        }
        _ => {
            if let Some(id) = plan.resume {
                q += &format!("&lastEventId={id}");
            }
            format!(
                "GET /ws?{q} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {}\r\n{}\r\n",
                opts.target,
                plan.ws_key,
                auth(opts)
            )
        }
    };
    s.write_all(request.as_bytes()).map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let head_by = until.min(Instant::now() + IO_TIMEOUT);
    let head = loop {
        if let Some(head) = parse_head(&buf)? {
            break head;
        }
        if !read_some(&mut s, &mut buf, head_by)? && Instant::now() >= head_by {
            return Err("no response head before the hold ended".into());
        }
    };
    let want = if plan.kind == Kind::Sse { 200 } else { 101 };
    if head.status != want {
        return Err(format!("status {}", head.status));
    }
    if plan.kind == Kind::Ws && head.accept.as_deref() != Some(ws_accept(&plan.ws_key).as_str()) {
        return Err("wrong Sec-WebSocket-Accept".into());
    }
    let start = match plan.resume {
        Some(id) => Start::After(id),
        None => Start::SentAfter(Instant::now()),
    };
    let mut rest = buf.split_off(head.len);
    let mut chunked = head.chunked.then(Chunked::default);
    let mut body = Vec::new();
    let mut sse = SseParse::default();
    let mut rng = Rng::seeded();
    loop {
        match &mut chunked {
            Some(state) => dechunk(state, &rest, &mut body)?,
            None => body.extend_from_slice(&rest),
        }
        rest.clear();
        let used = match plan.kind {
            Kind::Sse => sse.feed(&body, |seen| log.add(seen, &opts.topic, plan.filter))?,
            _ => {
                let mut out = Vec::new();
                let mask = rng.next_u64().to_le_bytes();
                let used = ws_messages(&body, &mut out, [mask[0], mask[1], mask[2], mask[3]], |seen| {
                    log.add(seen, &opts.topic, plan.filter)
                })?;
                if !out.is_empty() {
                    s.write_all(&out).map_err(|e| format!("write: {e}"))?;
                }
                used
            }
        };
        body.drain(..used);
        if Instant::now() >= until {
            break;
        }
        read_some(&mut s, &mut rest, until)?;
    }
    if plan.kind == Kind::Ws {
        let mask = rng.next_u64().to_le_bytes();
        // RFC 6455 §5.5.1: a polite close (1000); best effort.
        let _ =
            s.write_all(&encode_client_frame(OP_CLOSE, &1000u16.to_be_bytes(), [mask[0], mask[1], mask[2], mask[3]]));
    }
    Ok(start)
}

/// An SSE parser that keeps the fields hookcast's JSON format needs (WHATWG HTML §9.2.6).
#[derive(Default)]
struct SseParse {
    event: Option<String>,
    data: Option<String>,
}

impl SseParse {
    /// Consumes the complete lines of `buf`; returns the bytes consumed.
    fn feed(&mut self, buf: &[u8], mut on: impl FnMut(Seen)) -> Result<usize, String> {
        let mut pos = 0;
        while let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') {
            let mut line = &buf[pos..pos + nl];
            pos += nl + 1;
            if let Some(l) = line.strip_suffix(b"\r") {
                line = l;
            }
            if line.is_empty() {
                let event = self.event.take();
                if let Some(data) = self.data.take() {
                    on(if event.as_deref() == Some("reset") { Seen::Reset } else { envelope(data.as_bytes())? });
                }
                continue;
            }
            if line[0] == b':' {
                continue;
            }
            let text = String::from_utf8_lossy(line);
            let (field, value) =
                text.split_once(':').map_or((&*text, ""), |(f, v)| (f, v.strip_prefix(' ').unwrap_or(v)));
            match field {
                "event" => self.event = Some(value.to_string()),
                "data" => match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => self.data = Some(value.to_string()),
                },
                _ => {}
            }
        }
        Ok(pos)
    }
}

/// A JSON envelope `{"id","topic","event",…}` (SSE with format=json, WebSocket, long poll), a
/// WebSocket `{"type":"reset"}`, or something else (acks).
fn envelope(bytes: &[u8]) -> Result<Seen, String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    Ok(envelope_value(&v))
}

fn envelope_value(v: &serde_json::Value) -> Seen {
    if v.get("type").and_then(|t| t.as_str()) == Some("reset") {
        return Seen::Reset;
    }
    match (v.get("id").and_then(serde_json::Value::as_u64), v.get("topic").and_then(|t| t.as_str())) {
        (Some(id), Some(topic)) => Seen::Event {
            id,
            topic: topic.to_string(),
            event: v.get("event").and_then(|e| e.as_str()).unwrap_or("message").to_string(),
        },
        _ => Seen::Other,
    }
}

/// Consumes the complete server frames of `buf` (unfragmented text expected; fragments are
/// reassembled), answering pings into `out`; returns the bytes consumed.
fn ws_messages(buf: &[u8], out: &mut Vec<u8>, mask: [u8; 4], mut on: impl FnMut(Seen)) -> Result<usize, String> {
    let mut pos = 0;
    let mut fragments: Option<Vec<u8>> = None;
    let mut committed = 0;
    while let Some(head) = parse_frame_head(&buf[pos..])? {
        let end = pos + head.header_len + head.payload_len;
        if end > buf.len() {
            break;
        }
        let payload = &buf[pos + head.header_len..end];
        pos = end;
        match head.opcode {
            OP_TEXT | OP_BINARY if head.fin => {
                on(envelope(payload)?);
                committed = pos;
            }
            OP_TEXT | OP_BINARY => fragments = Some(payload.to_vec()),
            OP_CONTINUATION => {
                let f = fragments.as_mut().ok_or("a continuation outside a message")?;
                f.extend_from_slice(payload);
                if head.fin {
                    let whole = fragments.take().unwrap_or_default();
                    on(envelope(&whole)?);
                    committed = pos;
                }
            }
            OP_PING => {
                out.extend_from_slice(&encode_client_frame(OP_PONG, payload, mask));
                if fragments.is_none() {
                    committed = pos;
                }
            }
            OP_PONG => {
                if fragments.is_none() {
                    committed = pos;
                }
            }
            OP_CLOSE => return Err("close frame from the server before the hold ended".into()),
            op => return Err(format!("unknown opcode {op:#x}")),
        }
    }
    // A fragmented message still incomplete is parsed again, whole, with the next bytes.
    Ok(committed)
}

/// Long poll: `GET /poll` on one keep-alive connection, again with `since=next` until the hold
/// ends; a request still held then is abandoned.
fn poll_sub(opts: &ChurnOpts, plan: &SubPlan, until: Instant, log: &mut SubLog) -> Result<Start, String> {
    let mut s = connect(opts)?;
    let base = query(opts, plan);
    let mut since = plan.resume;
    let mut start = plan.resume.map(Start::After);
    let mut buf = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now()).as_secs();
        if left == 0 {
            break;
        }
        let timeout = left.clamp(1, POLL_TIMEOUT_SECS);
        let cursor = since.map(|id| format!("&since={id}")).unwrap_or_default();
        let request = format!(
            "GET /poll?{base}{cursor}&timeout={timeout} HTTP/1.1\r\nHost: {}\r\n{}\r\n",
            opts.target,
            auth(opts)
        );
        s.write_all(request.as_bytes()).map_err(|e| format!("write: {e}"))?;
        let answer_by = until.max(Instant::now() + Duration::from_secs(timeout) + IO_TIMEOUT);
        let Some((status, body)) = read_answer(&mut s, &mut buf, until, answer_by)? else {
            break; // the hold ended while the request was held
        };
        if status != 200 {
            return Err(format!("status {status}"));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(|e| format!("answer not JSON: {e}"))?;
        if v.get("reset").and_then(serde_json::Value::as_bool) == Some(true) {
            log.add(Seen::Reset, &opts.topic, plan.filter);
        }
        for e in v.get("events").and_then(|e| e.as_array()).into_iter().flatten() {
            log.add(envelope_value(e), &opts.topic, plan.filter);
        }
        let next = v.get("next").and_then(serde_json::Value::as_u64).ok_or("answer without next")?;
        start.get_or_insert(Start::After(next));
        since = Some(next);
    }
    start.ok_or_else(|| "the hold ended before the first answer".into())
}

/// One HTTP answer with a Content-Length body: `Ok(None)` if `until` passed while nothing
/// complete had come (a held request abandoned), an error if `hard` passed.
fn read_answer(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    until: Instant,
    hard: Instant,
) -> Result<Option<(u16, Vec<u8>)>, String> {
    loop {
        if let Some(head) = parse_head(buf)? {
            let text = String::from_utf8_lossy(&buf[..head.len]).to_ascii_lowercase();
            let len: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or("an answer without Content-Length")?;
            if buf.len() >= head.len + len {
                let body = buf[head.len..head.len + len].to_vec();
                buf.drain(..head.len + len);
                return Ok(Some((head.status, body)));
            }
        }
        if Instant::now() >= until {
            return Ok(None);
        }
        if Instant::now() >= hard {
            return Err("no answer in time".into());
        }
        read_some(s, buf, until)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Publishes and webhooks: one keep-alive connection each.

struct Client {
    addr: SocketAddr,
    host: String,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    fn new(opts: &ChurnOpts) -> Client {
        Client { addr: SocketAddr::V4(opts.addr), host: opts.target.clone(), conn: None }
    }

    /// POSTs `body` with `headers` (each ending in CRLF); a reused connection that fails is
    /// replaced once. Returns the status and the body.
    fn post(&mut self, path: &str, headers: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
        let reused = self.conn.is_some();
        match self.try_post(path, headers, body) {
            Err(_) if reused => {
                self.conn = None;
                self.try_post(path, headers, body).inspect_err(|_| self.conn = None)
            }
            other => other.inspect_err(|_| self.conn = None),
        }
    }

    fn try_post(&mut self, path: &str, headers: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
            s.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
            self.conn = Some(BufReader::new(s));
        }
        let conn = self.conn.as_mut().ok_or("no connection")?;
        let mut req =
            format!("POST {path} HTTP/1.1\r\nHost: {}\r\n{headers}Content-Length: {}\r\n\r\n", self.host, body.len())
                .into_bytes();
        req.extend_from_slice(body);
        conn.get_mut().write_all(&req).map_err(|e| format!("write: {e}"))?;
        let status_line = read_line_capped(conn)?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let (mut len, mut close) = (0usize, false);
        loop {
            let line = read_line_capped(conn)?;
            if line.is_empty() {
                break;
            }
            if let Some((n, v)) = line.split_once(':') {
                if n.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().map_err(|_| format!("bad Content-Length {v:?}"))?;
                } else if n.eq_ignore_ascii_case("connection") {
                    close = v.trim().eq_ignore_ascii_case("close");
                } else if n.eq_ignore_ascii_case("transfer-encoding") {
                    return Err("a chunked answer (not expected from hookcast)".into());
                }
            }
        }
        if len > MAX_BUFFER {
            return Err("answer too large".into());
        }
        let mut body = vec![0; len];
        conn.read_exact(&mut body).map_err(|e| format!("read: {e}"))?;
        if close {
            self.conn = None;
        }
        Ok((status, body))
    }
}

/// Paces a loop at `rate` a second from `start`: sleeps until the `n`th slot; false past `end`.
fn pace(start: Instant, rate: f64, n: u64, end: Instant) -> bool {
    let due = start + Duration::from_secs_f64(n as f64 / rate);
    if due >= end {
        return false;
    }
    if let Some(w) = due.checked_duration_since(Instant::now()) {
        thread::sleep(w);
    }
    true
}

/// Publishes until the subscribers are done (`stop`), at the rate, alternating even and odd.
fn publisher(shared: &Shared, end: Instant) {
    let opts = &shared.opts;
    let mut client = Client::new(opts);
    let headers = format!("Content-Type: application/json\r\n{}", auth(opts));
    let start = Instant::now();
    let mut n = 0u64;
    // Past `end` subscribers may still hold: keep publishing for them until stopped.
    let hard_end = end + Duration::from_millis(opts.hold_ms.1) + Duration::from_secs(30);
    while !shared.stop.load(Ordering::Relaxed) && pace(start, opts.publish_rate, n, hard_end) {
        let even = n % 2 == 0;
        n += 1;
        let body = format!("{{\"n\":{n},\"t\":{},\"pad\":\"{}\"}}", now_micros(), "x".repeat(150));
        let path = format!("/publish/{}?event={}", opts.topic, if even { "even" } else { "odd" });
        let sent = Instant::now();
        let outcome = client.post(&path, &headers, body.as_bytes());
        let acked = Instant::now();
        let id = match &outcome {
            Ok((s, b)) if (200..300).contains(s) => serde_json::from_slice::<serde_json::Value>(b)
                .ok()
                .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64)),
            _ => None,
        };
        match (id, outcome) {
            (Some(id), _) => {
                lock(&shared.log).push(Pub { id, even, sent, acked });
                lock(&shared.tally).published += 1;
            }
            (None, outcome) => {
                let mut t = lock(&shared.tally);
                t.publish_errors += 1;
                t.error(match outcome {
                    Ok((s, _)) if (200..300).contains(&s) => "publish: an answer without an id".into(),
                    Ok((s, _)) => format!("publish: status {s}"),
                    Err(e) => format!("publish: {e}"),
                });
            }
        }
    }
}

/// `sha256=<hex HMAC-SHA256 of body>`, GitHub's X-Hub-Signature-256.
fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Signed GitHub pushes, each with a new delivery id, until `end`; 202 is expected.
fn webhooks(shared: &Shared, end: Instant) {
    let opts = &shared.opts;
    let Some(secret) = opts.hook_secret.as_deref() else {
        return;
    };
    let mut client = Client::new(opts);
    let start = Instant::now();
    let salt = now_micros();
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) && pace(start, opts.webhook_rate, n, end) {
        n += 1;
        let body = format!(
            "{{\"ref\":\"refs/heads/main\",\"after\":\"{n:040x}\",\"repository\":{{\"full_name\":\"soak/site\"}},\
             \"pusher\":{{\"name\":\"soak\"}},\"sender\":{{\"login\":\"soak\"}},\
             \"head_commit\":{{\"id\":\"{n:040x}\",\"message\":\"soak push {n}\"}}}}"
        );
        let headers = format!(
            "Content-Type: application/json\r\nUser-Agent: GitHub-Hookshot/soak\r\nX-GitHub-Event: push\r\n\
             X-GitHub-Delivery: soak-{salt}-{n}\r\nX-Hub-Signature-256: {}\r\n",
            github_signature(secret, body.as_bytes())
        );
        match client.post(&opts.hook_path, &headers, body.as_bytes()) {
            Ok((202, _)) => lock(&shared.tally).webhooks += 1,
            outcome => {
                let mut t = lock(&shared.tally);
                t.webhook_errors += 1;
                t.error(match outcome {
                    Ok((s, b)) => format!("webhook: status {s} {}", String::from_utf8_lossy(&b).trim()),
                    Err(e) => format!("webhook: {e}"),
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sampling the daemon, and the slopes.

/// The series sampled, in the TSV's column order after `t_s`.
const SERIES: [&str; 5] = ["rss_kb", "fds", "history_bytes", "history_events", "conns_server"];

/// One sample: seconds since the start, then each of `SERIES` (None: could not be read), and
/// the subscribers the load tool had open.
#[derive(Debug, Clone)]
struct Sample {
    t: f64,
    values: [Option<f64>; 5],
    subs: usize,
}

fn sample_loop(shared: &Shared, pid: u32, start: Instant, end: Instant) -> Vec<Sample> {
    let opts = &shared.opts;
    let every = Duration::from_secs(opts.sample_secs);
    let mut file = opts.samples.as_ref().and_then(|p| match fs::File::create(p) {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!("hookcast-load: cannot write {p}: {e}");
            None
        }
    });
    if let Some(f) = file.as_mut() {
        let _ = writeln!(f, "t_s\t{}\tsubs_client", SERIES.join("\t"));
    }
    let mut out = Vec::new();
    let mut k = 0u32;
    loop {
        let due = start + every * k;
        if due > end {
            break;
        }
        if let Some(w) = due.checked_duration_since(Instant::now()) {
            thread::sleep(w);
        }
        k += 1;
        let s = take_sample(opts, pid, start.elapsed().as_secs_f64(), shared.open.load(Ordering::Relaxed));
        let cells: Vec<String> =
            s.values.iter().map(|v| v.map_or_else(|| "n/a".into(), |v| format!("{v:.0}"))).collect();
        println!("sample t_s={:.0} {} subs_client={}", s.t, named(&cells), s.subs);
        if let Some(f) = file.as_mut() {
            let _ = writeln!(f, "{:.0}\t{}\t{}", s.t, cells.join("\t"), s.subs);
        }
        let _ = io::stdout().flush();
        out.push(s);
    }
    out
}

fn named(cells: &[String]) -> String {
    SERIES.iter().zip(cells).map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(" ")
}

fn take_sample(opts: &ChurnOpts, pid: u32, t: f64, subs: usize) -> Sample {
    let rss = fs::read_to_string(format!("/proc/{pid}/status")).ok().and_then(|s| kb_field(&s, "VmRSS:"));
    let fds = fs::read_dir(format!("/proc/{pid}/fd")).ok().map(|d| d.count() as f64);
    let metrics = scrape(opts).ok();
    let m = |name: &str| metrics.as_deref().and_then(|text| metric_sum(text, name));
    Sample {
        t,
        values: [
            rss.map(|v| v as f64),
            fds,
            m("hookcast_history_bytes"),
            m("hookcast_history_events"),
            m("hookcast_connections_active"),
        ],
        subs,
    }
}

/// GET /metrics on a fresh connection.
fn scrape(opts: &ChurnOpts) -> Result<String, String> {
    let mut s = connect(opts)?;
    s.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| e.to_string())?;
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{}\r\n", opts.target, auth(opts));
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.take(16 << 20).read_to_string(&mut text).map_err(|e| e.to_string())?;
    if !text.starts_with("HTTP/1.1 200") {
        return Err(format!("/metrics: {}", text.lines().next().unwrap_or("")));
    }
    Ok(text)
}

/// The sum of a metric's samples over its label sets (`name 12`, `name{a="b"} 3`).
fn metric_sum(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let rest = match rest.as_bytes().first() {
            Some(b' ') => rest,
            Some(b'{') => rest.split_once('}').map_or("", |(_, r)| r),
            _ => continue,
        };
        if let Some(v) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) {
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

/// A least-squares line through (t seconds, value) points.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fit {
    /// Per second.
    slope: f64,
    mean: f64,
    /// The residuals' standard deviation: the noise of one sample around the line.
    noise: f64,
    /// The span of t covered.
    window: f64,
    /// The slope's standard error (per second).
    slope_se: f64,
}

/// None with fewer than 3 points or all at one instant.
fn least_squares(points: &[(f64, f64)]) -> Option<Fit> {
    let n = points.len() as f64;
    if points.len() < 3 {
        return None;
    }
    let mt = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mv = points.iter().map(|p| p.1).sum::<f64>() / n;
    let stt: f64 = points.iter().map(|p| (p.0 - mt).powi(2)).sum();
    if stt <= 0.0 {
        return None;
    }
    let slope = points.iter().map(|p| (p.0 - mt) * (p.1 - mv)).sum::<f64>() / stt;
    let rss: f64 = points.iter().map(|p| (p.1 - (mv + slope * (p.0 - mt))).powi(2)).sum();
    let noise = (rss / (n - 2.0)).sqrt();
    let (lo, hi) = points.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    Some(Fit { slope, mean: mv, noise, window: hi - lo, slope_se: noise / stt.sqrt() })
}

/// (drift over the window, threshold, flat): flat when the line moves over the measured window
/// by no more than the largest of one sample's noise, `pct` % of the mean, and twice the drift's
/// own standard error (a slope that noise alone would give one time in twenty: with few samples
/// of a churning count, one noise is within the fit's uncertainty).
fn flatness(fit: &Fit, pct: f64) -> (f64, f64, bool) {
    let drift = fit.slope.abs() * fit.window;
    let threshold = fit.noise.max(fit.mean.abs() * pct / 100.0).max(2.0 * fit.slope_se * fit.window);
    (drift, threshold, drift <= threshold)
}

/// Prints a `series` line per series (and the history plateau check); true when all are flat
/// and measured.
fn report_series(opts: &ChurnOpts, samples: &[Sample]) -> bool {
    let warm = opts.warmup_secs as f64;
    let mut ok = true;
    for (i, name) in SERIES.iter().enumerate() {
        let measured: Vec<(f64, f64)> =
            samples.iter().filter(|s| s.t >= warm).filter_map(|s| s.values[i].map(|v| (s.t, v))).collect();
        let missing = samples.iter().filter(|s| s.t >= warm && s.values[i].is_none()).count();
        let Some(fit) = least_squares(&measured).filter(|_| missing == 0) else {
            println!("series name={name} n={} unmeasured={missing} flat=unmeasured", measured.len());
            eprintln!(
                "hookcast-load: {name} could not be measured ({missing} samples missing, {} taken)",
                measured.len()
            );
            ok = false;
            continue;
        };
        let (drift, threshold, flat) = flatness(&fit, opts.flat_pct);
        let pct_hour = if fit.mean == 0.0 { 0.0 } else { fit.slope * 3600.0 * 100.0 / fit.mean };
        println!(
            "series name={name} n={} mean={:.1} slope_per_min={:.3} pct_per_hour={:.3} drift={:.1} noise={:.1} \
             threshold={:.1} window_s={:.0} flat={}",
            measured.len(),
            fit.mean,
            fit.slope * 60.0,
            pct_hour,
            drift,
            fit.noise,
            threshold,
            fit.window,
            if flat { "yes" } else { "no" }
        );
        ok &= flat;
    }
    if let Some(limit) = opts.history_limit {
        let reached = samples.iter().find(|s| s.values[2].is_some_and(|v| v >= limit as f64 * 0.9)).map(|s| s.t);
        let in_time = reached.is_some_and(|t| t <= warm);
        println!(
            "history limit={limit} reached_at_s={} before_warmup_end={}",
            reached.map_or_else(|| "never".into(), |t| format!("{t:.0}")),
            if in_time { "yes" } else { "no" }
        );
        if !in_time {
            eprintln!("hookcast-load: history_bytes did not reach 90 % of {limit} before the warm-up ended");
            ok = false;
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn churn_arguments() {
        let o = parse_churn_args(&args(
            "--target 127.0.0.1:80 --seconds 90 --hold-ms 500-2000 --mix sse=1,poll=3 --webhook-rate 2 \
             --hook-secret s --pid 1 --sample-secs 5",
        ))
        .unwrap()
        .unwrap();
        assert_eq!((o.hold_ms, o.warmup_secs, o.topic.as_str()), ((500, 2000), 18, "soak"));
        assert_eq!(o.mix, vec![(Kind::Sse, 1), (Kind::Poll, 3)]);
        for bad in [
            "--target 127.0.0.1:80",
            "--target 127.0.0.1:80 --seconds 10 --hold-ms 2000-1000",
            "--target 127.0.0.1:80 --seconds 10 --mix sse=0",
            "--target 127.0.0.1:80 --seconds 10 --mix udp=1",
            "--target 127.0.0.1:80 --seconds 10 --webhook-rate 1",
            "--target 127.0.0.1:80 --seconds 10 --samples x",
            "--target 127.0.0.1:80 --seconds 10 --pid 1 --warmup-secs 10",
            "--target 127.0.0.1:80 --seconds 10 --topic a,b",
            "--target 127.0.0.1:80 --seconds 10 --resume-pct 101",
            "--target 127.0.0.1:80 --seconds 10 --bogus 1",
        ] {
            assert!(parse_churn_args(&args(bad)).is_err(), "{bad}");
        }
        assert!(parse_churn_args(&args("--help")).unwrap().is_none());
    }

    #[test]
    fn expectations_follow_cursor_filter_and_margin() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let log: Vec<Pub> = (0..10)
            .map(|i| Pub { id: 100 + i, even: i % 2 == 0, sent: at(i * 1000), acked: at(i * 1000 + 10) })
            .collect();
        // Closed at 9.5 s: only publishes acknowledged by 7.5 s count.
        assert_eq!(expected_ids(&log, Start::After(104), false, at(9500)), vec![105, 106, 107]);
        assert_eq!(expected_ids(&log, Start::After(104), true, at(9500)), vec![106]);
        assert_eq!(expected_ids(&log, Start::SentAfter(at(5500)), false, at(20_000)), vec![106, 107, 108, 109]);
        assert!(expected_ids(&log, Start::After(0), false, t0).is_empty());
    }

    #[test]
    fn received_ids_are_checked_for_gaps_and_order() {
        assert_eq!(check_received(&[1, 2, 3], &[1, 2, 3, 4]), (0, 0));
        assert_eq!(check_received(&[1, 2, 3], &[1, 3]), (1, 0));
        assert_eq!(check_received(&[1, 2, 3], &[2, 1, 3, 3]), (0, 2));
    }

    #[test]
    fn slopes_and_flatness() {
        let flat: Vec<(f64, f64)> =
            (0..20).map(|i| (i as f64 * 10.0, 1000.0 + if i % 2 == 0 { 5.0 } else { -5.0 })).collect();
        let fit = least_squares(&flat).unwrap();
        assert!(fit.slope.abs() < 0.1, "{fit:?}");
        assert!((fit.noise - 5.1).abs() < 0.2, "{fit:?}");
        assert!(flatness(&fit, 1.0).2);
        // A count that churns (±7) over 9 samples: a drift of 1.2 noise is within the fit's error.
        let churn: Vec<(f64, f64)> = [124.0, 127.0, 125.0, 121.0, 131.0, 118.0, 126.0, 117.0, 121.0]
            .iter()
            .enumerate()
            .map(|(i, v)| (20.0 + 5.0 * i as f64, *v))
            .collect();
        let fit = least_squares(&churn).unwrap();
        let (drift, threshold, ok) = flatness(&fit, 1.0);
        assert!(ok && drift > fit.noise, "{drift} {threshold} {fit:?}");
        // 1 kB a minute on 10 000 kB over 190 s: 3.2 % drift, no noise.
        let leak: Vec<(f64, f64)> =
            (0..20).map(|i| (i as f64 * 10.0, 10_000.0 + i as f64 * 10.0 / 60.0 * 1000.0)).collect();
        let fit = least_squares(&leak).unwrap();
        assert!((fit.slope * 60.0 - 1000.0).abs() < 1e-6);
        assert!(fit.noise < 1e-6);
        assert!((fit.window - 190.0).abs() < 1e-9);
        let (drift, threshold, ok) = flatness(&fit, 1.0);
        assert!(!ok && (drift - 3166.67).abs() < 0.1 && threshold < 120.0);
        assert!(flatness(&fit, 50.0).2, "within a generous percentage");
        assert!(least_squares(&leak[..2]).is_none());
        assert!(least_squares(&[(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]).is_none());
    }

    #[test]
    fn metrics_are_summed_over_labels() {
        let text = "# HELP x\nhookcast_connections_active{transport=\"sse\"} 3\n\
                    hookcast_connections_active{transport=\"ws\"} 4\nhookcast_connections_active_x 9\n\
                    hookcast_history_bytes 1234\n";
        assert_eq!(metric_sum(text, "hookcast_connections_active"), Some(7.0));
        assert_eq!(metric_sum(text, "hookcast_history_bytes"), Some(1234.0));
        assert_eq!(metric_sum(text, "hookcast_history_events"), None);
    }

    #[test]
    fn github_signature_matches_githubs_example() {
        // docs.github.com, "Validating webhook deliveries": the test values it gives.
        assert_eq!(
            github_signature("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn sse_and_ws_deliveries_are_read() {
        let mut p = SseParse::default();
        let mut seen = Vec::new();
        let input = b"retry: 2000\n\nid: 5\n\n: keepalive\n\nid: 7\nevent: even\ndata: {\"id\":7,\"topic\":\"soak\",\"event\":\"even\"}\n\nevent: reset\ndata: {\"last_event_id\":1}\n\ndata: {\"id\"";
        let used = p.feed(input, |s| seen.push(s)).unwrap();
        assert_eq!(&input[used..], b"data: {\"id\"");
        assert_eq!(seen, vec![Seen::Event { id: 7, topic: "soak".into(), event: "even".into() }, Seen::Reset]);
        let msg = br#"{"id":9,"topic":"hooks/soak","event":"push"}"#;
        let mut buf = vec![0x81, msg.len() as u8];
        buf.extend_from_slice(msg);
        buf.extend_from_slice(&[0x89, 1, b'x']);
        buf.extend_from_slice(&[0x01, 2, b'{', b'"']); // an incomplete fragmented message
        let (mut out, mut seen) = (Vec::new(), Vec::new());
        let used = ws_messages(&buf, &mut out, [1, 2, 3, 4], |s| seen.push(s)).unwrap();
        assert_eq!(used, msg.len() + 2 + 3);
        assert_eq!(seen, vec![Seen::Event { id: 9, topic: "hooks/soak".into(), event: "push".into() }]);
        assert_eq!(out, encode_client_frame(OP_PONG, b"x", [1, 2, 3, 4]));
        assert_eq!(envelope(br#"{"type":"reset","last_event_id":3}"#).unwrap(), Seen::Reset);
        assert_eq!(envelope(br#"{"type":"ack","op":"filter"}"#).unwrap(), Seen::Other);
    }
}
