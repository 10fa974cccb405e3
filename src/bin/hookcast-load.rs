//! `hookcast-load`: the load generator behind hookcast's benchmarks.
//!
//! It is a plain client of any SSE / WebSocket push server (hookcast, Nchan, Pushpin,
//! websocketd…), so every peer in a benchmark is measured by the same code:
//!
//! * `idle`: open N subscribers, let the server settle, and report how much the server's memory
//!   grew per connection (`/proc/PID/status` RssAnon and VmRSS, `/proc/PID/smaps_rollup` Pss);
//! * `fanout`: open N subscribers, publish E timestamped events with `POST`, and report the
//!   delivery latency percentiles and the deliveries that never arrived;
//! * `publish`: C keep-alive publishers `POST` as fast as they are answered for S seconds, and
//!   the acknowledged publishes per second and their latency are reported (the journal's fsync
//!   policies are compared with it; see `run_publish`);
//! * `storm`: open N SSE subscribers, publish at a steady rate while the server is restarted,
//!   and report how the subscribers came back with `Last-Event-ID`: what they lost, how long
//!   until all had resumed (see `print_storm`).
//!
//! How it is built: each process runs a few *shard* threads, each owning one `mio::Poll` over
//! its share of the sockets, so 10 000 sockets are not 10 000 threads. Past the per-process
//! open-file limit the tool re-executes itself (`--procs`); the workers report back over a line
//! protocol on stdout (`ready N`, `lat …`, `done R D`) and stop on `stop` or end of file on stdin.
//! Client sockets are bound to a source address in 127.0.0.0/8 before connecting, so that no
//! source runs out of ephemeral ports; std cannot bind before connecting, hence `mod sys`, the
//! only place with `unsafe`.
//!
//! Every loop is bounded: by a count, by the connect deadline, by `--hold` / `--wait`, or by the
//! run's hard deadline, so a wedged server cannot make the tool hang.
#![allow(unsafe_code)] // confined to `mod sys`: bind-before-connect and RLIMIT_NOFILE

use std::borrow::Cow;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream as StdTcpStream, ToSocketAddrs};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

// Outside src/bin/'s top level so that cargo does not take it for a binary of its own.
#[path = "load/churn.rs"]
mod churn;

const HELP: &str = "\
hookcast-load: load generator for SSE / WebSocket push servers (hookcast's benchmarks)

USAGE:
    hookcast-load idle   --target HOST:PORT --path PATH [--ws] --conns N [OPTIONS]
    hookcast-load fanout --target HOST:PORT --path PATH [--ws] --conns N
                         --events E --interval-ms MS --publish-path PATH [--token T] [OPTIONS]
    hookcast-load publish --target HOST:PORT --topic T --conns C --seconds S [--size BYTES]
                          [--token T]
    hookcast-load storm  --target HOST:PORT --path PATH --conns N --publish-path PATH
                         [--rate R] [--seconds S] [--spread-ms MS] [--settle S] [OPTIONS]

idle: open N subscribers, wait 2 s for the server to settle, measure it (--pid), hold the
connections for --hold seconds while reading and discarding what arrives (WebSocket pings are
answered), then close everything. An SSE subscriber (GET PATH, Accept: text/event-stream) counts
as established on a 200 status and the end of the headers; a WebSocket one (--ws, RFC 6455
upgrade) on a 101 with the right Sec-WebSocket-Accept. Prints

    idle transport=sse conns=N established=N failed=0 rss_before_kb=.. rss_after_kb=.. \\
        bytes_per_conn=.. vmrss_before_kb=.. vmrss_after_kb=.. vmrss_bytes_per_conn=.. \\
        [pss_before_kb=.. pss_after_kb=.. pss_bytes_per_conn=..] rss_source=rss_anon procs=P

where rss_* and bytes_per_conn use RssAnon from /proc/PID/status (the server's user-space
memory; VmRSS if the kernel has no RssAnon), bytes_per_conn = (after - before) * 1024 /
established. Without --pid only the first four fields are printed.

fanout: open N subscribers like idle, then publish E events, one every MS ms, with
POST PUBLISH_PATH on one keep-alive connection; each body is a 200-byte JSON object
{\"t\":<unix micros>,\"pad\":\"xx..\"}. Every subscriber extracts \"t\" from each SSE event's data
lines (or each WebSocket text message) and records now - t. Prints

    fanout transport=sse conns=N events=E p50_ms=.. p99_ms=.. max_ms=.. lost=.. \\
        established=.. received=.. published=.. publish_errors=.. procs=P

where lost = established * published - received, window_ms runs from the first publish to the
last delivery seen and deliveries_per_s = received / window (with --interval-ms 0 this is the
burst throughput).

publish: C threads, each with one keep-alive connection, POST /publish/T (Content-Type:
application/json, a BYTES-byte JSON body, default 200) one after the other for S seconds: a
publish is acknowledged by a 2xx answer, which hookcast sends once the event is durable under
its journal.fsync policy. Prints

    publish conns=C seconds=S acked=.. per_sec=.. p50_ms=.. p99_ms=.. max_ms=.. errors=.. size=..

where per_sec = acked / the measured duration and the latencies are request to answer.

storm: open N SSE subscribers like idle, then publish R events a second (default 50) for S
seconds (default 15) with POST PUBLISH_PATH; each body is {\"t\":..,\"n\":<attempt>,\"pad\":..}
and a refused or failed publish is tried again (a new attempt number, 20 ms later) until one is
acknowledged (2xx). Restart the server once the line '# storm: publishing' appears: a subscriber
whose stream ends reconnects after a random delay below --spread-ms (default 1000) with
Last-Event-ID set to the last SSE id it saw (whatever the server's ids look like), and a refused
attempt (connect refused, closed, or a status other than 200) is tried again after 100-500 ms.
After the publisher stops the subscribers read for --settle seconds more (default 5). Prints

    storm conns=N established=.. disconnected=.. published=.. publish_attempts=.. lost=.. \
        duplicates=.. resets=.. unacked_delivered=.. reconnects=.. refused=.. down_ms=.. \
        reconnect_ms=.. resume_ms=.. unresumed=.. procs=P

where lost sums, over the acknowledged publishes, the established subscribers that never got
it; duplicates counts a publish attempt a subscriber got twice; resets counts 'event: reset';
unacked_delivered counts deliveries of attempts whose answer was lost in the restart (not an
error). Times run from the first successful reconnect (the restarted server answering 200):
down_ms from the first stream that ended to it, reconnect_ms to the last subscriber's 200, and
resume_ms to the moment the last subscriber got its first event on its new stream (the first
replayed event, or the first live one when it had missed nothing).

Exit status: 0; 1 if fewer than 99% of the subscribers were established (or, for fanout or
publish, a publish failed; for storm, no subscriber lost its stream, one did not resume, or no
publish was acknowledged); 2 on a usage error.

OPTIONS:
    --target HOST:PORT      server address (IPv4); also sent as the Host header. idle and
                            fanout take it more than once: subscriber i connects to target
                            i mod T (round-robin), and fanout publishes to the first one
                            unless --publish-target is given
    --path PATH             subscriber request target, e.g. '/events?topics=demo'
    --ws                    subscribe over WebSocket instead of Server-Sent Events
    --conns N               number of subscribers
    --header 'Name: value'  extra header on every subscriber request (repeatable)
    --procs P               processes to spread the connections over (default: as many as the
                            open-file limit needs); P-1 of them re-execute this binary
    --threads T             event-loop threads per process (default 2)
    --sources IP,IP,..      source addresses to bind the client sockets to
    --source-count K        use 127.0.0.1 .. 127.0.0.K (default K = ceil(N / 20000) + 1)
    --batch B               at most B handshakes in flight across all processes (default 500)
    --connect-timeout SECS  bound on the whole connect phase (default 120)
    --pid PID               (idle) the server process to measure
    --hold SECS             (idle) keep the connections open this long after measuring (default 0)
    --events E              (fanout) number of events to publish
    --interval-ms MS        (fanout) pause between two publishes
    --publish-path PATH     (fanout, storm) e.g. /publish/bench
    --publish-target H:P    (fanout, storm) where to POST (default: the first --target)
    --token T               (fanout, storm) sent as 'Authorization: Bearer T' with each publish
    --wait SECS             (fanout) how long to wait for deliveries after the last publish
                            (default 10)
    --pushpin-channel C     (fanout) publish through Pushpin's HTTP publish API: each body is
                            sent as an `http-stream` item of channel C whose content is the
                            SSE event `data: <body>` (POST it to Pushpin's /publish/)
    --rate R                (storm) publishes per second (default 50)
    --seconds S             (storm) how long to publish (default 15)
    --spread-ms MS          (storm) reconnects are spread over this much time (default 1000)
    --settle S              (storm) reading time after the last publish (default 5)
    -h, --help              print this text
";

/// The usage text of every subcommand.
fn print_help() {
    print!("{HELP}\n{}", churn::HELP);
}

/// Client sockets, pipes and poll descriptors a process needs besides its connections.
const FD_RESERVE: usize = 64;
/// One source address is given at most this many connections by default (the ephemeral port
/// range is 28 232 ports wide by default).
const CONNS_PER_SOURCE: usize = 20_000;
/// A connection that has not finished its handshake in this time has failed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the server gets to settle before the `idle` measurement.
const SETTLE: Duration = Duration::from_secs(2);
/// The largest response head accepted from the server.
const MAX_HEAD: usize = 16 * 1024;
/// The largest partial SSE line or WebSocket frame kept between two reads.
const MAX_PENDING: usize = 4 * 1024 * 1024;
/// Reads per readiness event before the socket is put back in line behind the others.
const READS_PER_EVENT: usize = 64;
/// The bytes of one publish body.
const PUBLISH_BODY_LEN: usize = 200;
/// Bound on every blocking step of the publisher (connect, write, read).
const PUBLISH_IO_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest publish response head line or body accepted.
const MAX_PUBLISH_RESPONSE: usize = 1024 * 1024;
/// Latencies per `lat` line of the worker protocol.
const LAT_PER_LINE: usize = 1000;
/// RFC 6455 §1.3: the GUID concatenated with the client's key to form Sec-WebSocket-Accept.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "publish") {
        std::process::exit(publish_main(&args[1..]));
    }
    if args.first().is_some_and(|a| a == "churn") {
        std::process::exit(churn::churn_main(&args[1..]));
    }
    let opts = match parse_args(args) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            print_help();
            return;
        }
        Err(e) => {
            eprintln!("hookcast-load: {e}\n(hookcast-load --help prints the usage)");
            std::process::exit(2);
        }
    };
    let code = match run(&opts) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hookcast-load: {e}");
            1
        }
    };
    std::process::exit(code);
}

// ---------------------------------------------------------------------------------------------
// Options: parsed raw, then validated (ripgrep's habit).

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Idle,
    Fanout,
    Storm,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Transport {
    Sse,
    Ws,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Sse => "sse",
            Transport::Ws => "ws",
        }
    }
}

#[derive(Debug)]
struct Opts {
    mode: Mode,
    /// The first `--target`: where to publish by default.
    target_addr: SocketAddrV4,
    /// Every `--target` as given (the Host header) and resolved: subscriber i goes to i mod len.
    targets: Vec<(String, SocketAddrV4)>,
    path: String,
    transport: Transport,
    conns: usize,
    headers: Vec<String>,
    procs: Option<usize>,
    threads: usize,
    sources: Vec<Ipv4Addr>,
    batch: usize,
    connect_timeout: Duration,
    pid: Option<u32>,
    hold: Duration,
    events: u64,
    interval: Duration,
    publish_path: String,
    publish_target: String,
    token: Option<String>,
    wait: Duration,
    /// Set in a re-executed worker: the global index of its first connection.
    worker_offset: Option<usize>,
    /// Fanout through Pushpin: the channel each publish is wrapped for (see `wrap_for_peer`).
    pushpin_channel: Option<String>,
    /// Storm: what the publisher and the reconnecting subscribers do (see `run_storm`).
    storm: StormOpts,
}

/// `storm`'s own settings.
#[derive(Debug, Clone, Copy, PartialEq)]
struct StormOpts {
    /// Publishes per second.
    rate: f64,
    /// How long the publisher runs.
    seconds: Duration,
    /// A subscriber whose stream ends reconnects after a random delay below this.
    spread: Duration,
    /// How long the subscribers keep reading after the publisher stopped.
    settle: Duration,
}

impl Default for StormOpts {
    fn default() -> StormOpts {
        StormOpts {
            rate: 50.0,
            seconds: Duration::from_secs(15),
            spread: Duration::from_millis(1000),
            settle: Duration::from_secs(5),
        }
    }
}

/// The flags exactly as typed, before validation.
#[derive(Default)]
struct RawOpts {
    targets: Vec<String>,
    path: Option<String>,
    ws: bool,
    conns: Option<String>,
    headers: Vec<String>,
    procs: Option<String>,
    threads: Option<String>,
    sources: Option<String>,
    source_count: Option<String>,
    batch: Option<String>,
    connect_timeout: Option<String>,
    pid: Option<String>,
    hold: Option<String>,
    events: Option<String>,
    interval_ms: Option<String>,
    publish_path: Option<String>,
    publish_target: Option<String>,
    token: Option<String>,
    wait: Option<String>,
    worker_offset: Option<String>,
    pushpin_channel: Option<String>,
    rate: Option<String>,
    seconds: Option<String>,
    spread_ms: Option<String>,
    settle: Option<String>,
}

/// Parses the command line; `Ok(None)` means `--help`.
fn parse_args(args: Vec<String>) -> Result<Option<Opts>, String> {
    let mut it = args.into_iter();
    let mode = match it.next().as_deref() {
        None | Some("-h" | "--help" | "help") => return Ok(None),
        Some("idle") => Mode::Idle,
        Some("fanout") => Mode::Fanout,
        Some("storm") => Mode::Storm,
        Some(other) => return Err(format!("unknown subcommand {other:?} (idle, fanout, storm, publish or churn)")),
    };
    let mut raw = RawOpts::default();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        if matches!(name.as_str(), "-h" | "--help" | "--ws") {
            if inline.is_some() {
                return Err(format!("{name} takes no value"));
            }
            if name == "--ws" {
                raw.ws = true;
                continue;
            }
            return Ok(None);
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("{name} needs a value"))?,
        };
        let slot = match name.as_str() {
            "--target" => {
                raw.targets.push(value);
                continue;
            }
            "--path" => &mut raw.path,
            "--conns" => &mut raw.conns,
            "--header" => {
                raw.headers.push(value);
                continue;
            }
            "--procs" => &mut raw.procs,
            "--threads" => &mut raw.threads,
            "--sources" => &mut raw.sources,
            "--source-count" => &mut raw.source_count,
            "--batch" => &mut raw.batch,
            "--connect-timeout" => &mut raw.connect_timeout,
            "--pid" => &mut raw.pid,
            "--hold" => &mut raw.hold,
            "--events" => &mut raw.events,
            "--interval-ms" => &mut raw.interval_ms,
            "--publish-path" => &mut raw.publish_path,
            "--publish-target" => &mut raw.publish_target,
            "--token" => &mut raw.token,
            "--wait" => &mut raw.wait,
            "--worker-offset" => &mut raw.worker_offset,
            "--pushpin-channel" => &mut raw.pushpin_channel,
            "--rate" => &mut raw.rate,
            "--seconds" => &mut raw.seconds,
            "--spread-ms" => &mut raw.spread_ms,
            "--settle" => &mut raw.settle,
            _ => return Err(format!("unknown option {name:?}")),
        };
        if slot.replace(value).is_some() {
            return Err(format!("{name} given twice"));
        }
    }
    validate(mode, raw).map(Some)
}

fn number<T: std::str::FromStr>(name: &str, value: Option<&str>, default: T) -> Result<T, String> {
    match value {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("{name}: {v:?} is not a valid number")),
    }
}

fn required<'a>(name: &str, value: &'a Option<String>) -> Result<&'a str, String> {
    value.as_deref().ok_or_else(|| format!("{name} is required"))
}

fn resolve_v4(name: &str, target: &str) -> Result<SocketAddrV4, String> {
    let addrs = target.to_socket_addrs().map_err(|e| format!("{name} {target:?}: {e}"))?;
    addrs
        .filter_map(|a| match a {
            SocketAddr::V4(v4) => Some(v4),
            SocketAddr::V6(_) => None,
        })
        .next()
        .ok_or_else(|| format!("{name} {target:?}: no IPv4 address"))
}

fn check_path(name: &str, path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("{name} {path:?} must start with '/' and contain no spaces or control characters"));
    }
    Ok(())
}

fn validate(mode: Mode, raw: RawOpts) -> Result<Opts, String> {
    if raw.targets.is_empty() {
        return Err("--target is required".into());
    }
    let targets = raw
        .targets
        .iter()
        .map(|t| resolve_v4("--target", t).map(|addr| (t.clone(), addr)))
        .collect::<Result<Vec<_>, _>>()?;
    let (target, target_addr) = targets[0].clone();
    let path = required("--path", &raw.path)?.to_string();
    check_path("--path", &path)?;
    let conns: usize = number("--conns", Some(required("--conns", &raw.conns)?), 0)?;
    if conns == 0 {
        return Err("--conns must be at least 1".into());
    }
    for h in &raw.headers {
        let ok = h.split_once(':').is_some_and(|(n, _)| !n.is_empty() && !n.contains(' '));
        if !ok || h.contains('\r') || h.contains('\n') {
            return Err(format!("--header {h:?} is not 'Name: value'"));
        }
    }
    let procs: Option<usize> = match raw.procs.as_deref() {
        None => None,
        Some(v) => Some(number("--procs", Some(v), 1)?),
    };
    if procs == Some(0) || procs.is_some_and(|p| p > conns) {
        return Err("--procs must be between 1 and --conns".into());
    }
    let threads: usize = number("--threads", raw.threads.as_deref(), 2)?;
    if !(1..=64).contains(&threads) {
        return Err("--threads must be between 1 and 64".into());
    }
    let sources = match (&raw.sources, &raw.source_count) {
        (Some(_), Some(_)) => return Err("give --sources or --source-count, not both".into()),
        (Some(list), None) => list
            .split(',')
            .map(|s| s.trim().parse::<Ipv4Addr>().map_err(|_| format!("--sources: {s:?} is not an IPv4 address")))
            .collect::<Result<Vec<_>, _>>()?,
        (None, count) => {
            let default = conns.div_ceil(CONNS_PER_SOURCE) + 1;
            let k: u32 = number("--source-count", count.as_deref(), u32::try_from(default).unwrap_or(u32::MAX))?;
            if !(1..=65_534).contains(&k) {
                return Err("--source-count must be between 1 and 65534".into());
            }
            let base = u32::from(Ipv4Addr::new(127, 0, 0, 0));
            (1..=k).map(|i| Ipv4Addr::from(base + i)).collect()
        }
    };
    if sources.is_empty() {
        return Err("--sources is empty".into());
    }
    let batch: usize = number("--batch", raw.batch.as_deref(), 500)?;
    let connect_timeout: u64 = number("--connect-timeout", raw.connect_timeout.as_deref(), 120)?;
    if batch == 0 || connect_timeout == 0 {
        return Err("--batch and --connect-timeout must be at least 1".into());
    }
    let pid: Option<u32> = match raw.pid.as_deref() {
        None => None,
        Some(v) => Some(number("--pid", Some(v), 0)?),
    };
    let hold: u64 = number("--hold", raw.hold.as_deref(), 0)?;
    let wait: u64 = number("--wait", raw.wait.as_deref(), 10)?;
    let worker_offset: Option<usize> = match raw.worker_offset.as_deref() {
        None => None,
        Some(v) => Some(number("--worker-offset", Some(v), 0)?),
    };
    let publishes = matches!(mode, Mode::Fanout | Mode::Storm);
    let publish_path = if publishes {
        // A worker never publishes, so the parent does not pass it the publish path.
        let publish_path = match (&raw.publish_path, worker_offset) {
            (None, Some(_)) => String::from("/"),
            (p, _) => required("--publish-path", p)?.to_string(),
        };
        check_path("--publish-path", &publish_path)?;
        publish_path
    } else {
        String::new()
    };
    let (events, interval_ms) = if mode == Mode::Fanout {
        let events: u64 = number("--events", Some(required("--events", &raw.events)?), 0)?;
        let interval: u64 = number("--interval-ms", Some(required("--interval-ms", &raw.interval_ms)?), 0)?;
        if events == 0 {
            return Err("--events must be at least 1".into());
        }
        (events, interval)
    } else {
        (0, 0)
    };
    let only = [
        ("--events", raw.events.is_some(), Mode::Fanout == mode, "fanout"),
        ("--interval-ms", raw.interval_ms.is_some(), Mode::Fanout == mode, "fanout"),
        ("--wait", raw.wait.is_some(), Mode::Fanout == mode, "fanout"),
        ("--pushpin-channel", raw.pushpin_channel.is_some(), Mode::Fanout == mode, "fanout"),
        ("--publish-path", raw.publish_path.is_some(), publishes, "fanout and storm"),
        ("--publish-target", raw.publish_target.is_some(), publishes, "fanout and storm"),
        ("--token", raw.token.is_some(), publishes, "fanout and storm"),
        ("--pid", raw.pid.is_some(), Mode::Idle == mode, "idle"),
        ("--hold", raw.hold.is_some(), Mode::Idle == mode, "idle"),
        ("--rate", raw.rate.is_some(), Mode::Storm == mode, "storm"),
        ("--seconds", raw.seconds.is_some(), Mode::Storm == mode, "storm"),
        ("--spread-ms", raw.spread_ms.is_some(), Mode::Storm == mode, "storm"),
        ("--settle", raw.settle.is_some(), Mode::Storm == mode, "storm"),
    ];
    for (name, given, allowed, modes) in only {
        if given && !allowed {
            return Err(format!("{name} is only for {modes}"));
        }
    }
    let storm = storm_opts(&raw)?;
    if mode == Mode::Storm && raw.ws {
        return Err("storm subscribes over SSE only (it resumes with Last-Event-ID)".into());
    }
    let publish_target = raw.publish_target.clone().unwrap_or_else(|| target.clone());
    if publishes && worker_offset.is_none() {
        resolve_v4("--publish-target", &publish_target)?;
    }
    if raw.token.as_deref().is_some_and(|t| t.contains(['\r', '\n'])) {
        return Err("--token must not contain CR or LF".into());
    }
    Ok(Opts {
        mode,
        target_addr,
        targets,
        path,
        transport: if raw.ws { Transport::Ws } else { Transport::Sse },
        conns,
        headers: raw.headers,
        procs,
        threads,
        sources,
        batch,
        connect_timeout: Duration::from_secs(connect_timeout),
        pid,
        hold: Duration::from_secs(hold),
        events,
        interval: Duration::from_millis(interval_ms),
        publish_path,
        publish_target,
        token: raw.token,
        wait: Duration::from_secs(wait),
        worker_offset,
        pushpin_channel: raw.pushpin_channel,
        storm,
    })
}

/// `storm`'s flags, validated (the defaults for the other modes, which reject the flags).
fn storm_opts(raw: &RawOpts) -> Result<StormOpts, String> {
    let d = StormOpts::default();
    let rate: f64 = number("--rate", raw.rate.as_deref(), d.rate)?;
    if !(rate.is_finite() && (0.1..=10_000.0).contains(&rate)) {
        return Err("--rate must be between 0.1 and 10000 publishes per second".into());
    }
    let seconds: u64 = number("--seconds", raw.seconds.as_deref(), d.seconds.as_secs())?;
    let spread_ms: u64 = number("--spread-ms", raw.spread_ms.as_deref(), 1000)?;
    let settle: u64 = number("--settle", raw.settle.as_deref(), d.settle.as_secs())?;
    if !(1..=3600).contains(&seconds) || settle > 600 || spread_ms > 600_000 {
        return Err("--seconds must be 1 to 3600, --settle at most 600, --spread-ms at most 600000".into());
    }
    Ok(StormOpts {
        rate,
        seconds: Duration::from_secs(seconds),
        spread: Duration::from_millis(spread_ms),
        settle: Duration::from_secs(settle),
    })
}

/// The argv of a re-executed worker that opens `share` connections starting at global index
/// `offset`.
fn worker_args(opts: &Opts, share: usize, offset: usize, batch: usize) -> Vec<String> {
    let mode = match opts.mode {
        Mode::Idle => "idle",
        Mode::Fanout => "fanout",
        Mode::Storm => "storm",
    };
    let sources: Vec<String> = opts.sources.iter().map(Ipv4Addr::to_string).collect();
    let mut args: Vec<String> = vec![mode.into()];
    for (target, _) in &opts.targets {
        args.extend(["--target".into(), target.clone()]);
    }
    args.extend([
        "--path".into(),
        opts.path.clone(),
        "--conns".into(),
        share.to_string(),
        "--procs".into(),
        "1".into(),
        "--threads".into(),
        opts.threads.to_string(),
        "--sources".into(),
        sources.join(","),
        "--batch".into(),
        batch.to_string(),
        "--connect-timeout".into(),
        opts.connect_timeout.as_secs().to_string(),
        "--worker-offset".into(),
        offset.to_string(),
    ]);
    if opts.transport == Transport::Ws {
        args.push("--ws".into());
    }
    for h in &opts.headers {
        args.push("--header".into());
        args.push(h.clone());
    }
    match opts.mode {
        Mode::Idle => args.extend(["--hold".into(), opts.hold.as_secs().to_string()]),
        Mode::Fanout => args.extend([
            "--events".into(),
            opts.events.to_string(),
            "--interval-ms".into(),
            opts.interval.as_millis().to_string(),
            "--wait".into(),
            opts.wait.as_secs().to_string(),
        ]),
        // The publisher stays with the parent; workers need what bounds their run and paces
        // their reconnects (and get the rate so that they describe the same run).
        Mode::Storm => args.extend([
            "--rate".into(),
            opts.storm.rate.to_string(),
            "--seconds".into(),
            opts.storm.seconds.as_secs().to_string(),
            "--spread-ms".into(),
            opts.storm.spread.as_millis().to_string(),
            "--settle".into(),
            opts.storm.settle.as_secs().to_string(),
        ]),
    }
    args
}

/// The latest a shard may still be running, whatever the controller says: the safety net for a
/// worker whose parent vanished.
fn hard_bound(opts: &Opts) -> Duration {
    let margin = Duration::from_secs(60);
    let run = match opts.mode {
        Mode::Idle => SETTLE + opts.hold,
        Mode::Fanout => {
            let per_event = opts.interval + 2 * PUBLISH_IO_TIMEOUT;
            let events = u32::try_from(opts.events).unwrap_or(u32::MAX);
            per_event.saturating_mul(events) + opts.wait
        }
        // The publisher's last request may take PUBLISH_IO_TIMEOUT past its deadline.
        Mode::Storm => opts.storm.seconds + opts.storm.settle + 2 * PUBLISH_IO_TIMEOUT + Duration::from_secs(1),
    };
    opts.connect_timeout + run + margin
}

// ---------------------------------------------------------------------------------------------
// The controller: spawns workers and shards, measures, publishes, prints.

/// What a shard tells its controller (through a channel, or through a worker's stdout).
enum Report {
    /// The connect phase is over; this many connections are open.
    Ready { open: usize },
    /// The shard closed its connections. `last_us`: wall-clock time of its last delivery
    /// (microseconds since the Unix epoch, 0 if none), for the delivery rate.
    /// `storm`: what the shard's subscribers saw of the restart.
    Done { received: u64, dropped: usize, latencies_us: Vec<u64>, last_us: u64, storm: Option<Box<StormStats>> },
    /// A worker process ended without reporting for this many shards.
    Gone { ready: usize, done: usize },
}

#[derive(Default)]
struct Tally {
    ready: usize,
    done: usize,
    open: usize,
    received: u64,
    dropped: usize,
    latencies_us: Vec<u64>,
    /// The latest delivery seen by any shard (microseconds since the Unix epoch).
    last_us: u64,
    /// When the first event was published (microseconds since the Unix epoch).
    first_publish_us: u64,
    /// `storm`: every shard's figures, merged.
    storm: StormStats,
}

impl Tally {
    fn absorb(&mut self, report: Report) {
        match report {
            Report::Ready { open } => {
                self.ready += 1;
                self.open += open;
            }
            Report::Done { received, dropped, latencies_us, last_us, storm } => {
                self.done += 1;
                if let Some(s) = storm {
                    self.storm.merge(&s);
                }
                self.last_us = self.last_us.max(last_us);
                self.received += received;
                self.dropped += dropped;
                self.latencies_us.extend(latencies_us);
            }
            Report::Gone { ready, done } => {
                self.ready += ready;
                self.done += done;
            }
        }
    }

    /// Absorbs reports until `want` holds or `deadline` passes; tells whether `want` holds.
    fn wait_until(&mut self, rx: &Receiver<Report>, want: impl Fn(&Tally) -> bool, deadline: Instant) -> bool {
        while !want(self) {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            match rx.recv_timeout(deadline - now) {
                Ok(report) => self.absorb(report),
                Err(RecvTimeoutError::Timeout) => return false,
                Err(RecvTimeoutError::Disconnected) => return want(self),
            }
        }
        true
    }
}

/// A re-executed copy of this binary.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
}

fn run(opts: &Opts) -> Result<i32, String> {
    let limit = sys::raise_nofile_limit().map_err(|e| format!("cannot read or raise RLIMIT_NOFILE: {e}"))?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let per_proc = limit.saturating_sub(FD_RESERVE).max(1);
    if let Some(offset) = opts.worker_offset {
        if opts.conns > per_proc {
            return Err(format!("worker: {} connections exceed the open-file limit {limit}", opts.conns));
        }
        return Ok(run_worker(opts, offset));
    }
    let procs = opts.procs.unwrap_or_else(|| opts.conns.div_ceil(per_proc));
    if opts.conns.div_ceil(procs) > per_proc {
        return Err(format!(
            "{} connections over {procs} process(es) exceed the open-file limit of {limit} per \
             process; use --procs {} or more",
            opts.conns,
            opts.conns.div_ceil(per_proc)
        ));
    }
    let before = match opts.pid {
        Some(pid) => Some(read_mem(pid)?),
        None => None,
    };
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let shares = split(opts.conns, procs);
    let batch = (opts.batch / procs).max(1);
    let mut workers = Vec::new();
    let mut offset = shares[0];
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own binary: {e}"))?;
    for &share in &shares[1..] {
        let mut child = Command::new(&exe)
            .args(worker_args(opts, share, offset, batch))
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start a worker process: {e}"))?;
        let stdin = child.stdin.take();
        if let Some(stdout) = child.stdout.take() {
            let tx = tx.clone();
            let threads = opts.threads;
            thread::spawn(move || forward_worker(stdout, threads, &tx));
        }
        workers.push(Worker { child, stdin });
        offset += share;
    }
    start_shards(opts, 0, shares[0], batch, &stop, &tx);
    drop(tx);

    let shards = procs * opts.threads;
    let mut tally = Tally::default();
    let connect_bound = started + opts.connect_timeout + Duration::from_secs(15);
    if !tally.wait_until(&rx, |t| t.ready >= shards, connect_bound) {
        eprintln!("hookcast-load: some shards did not report in time; their connections count as failed");
    }
    let connect_time = started.elapsed();
    let established = tally.open;
    let failed = opts.conns - established.min(opts.conns);
    let enough = established * 100 >= opts.conns * 99;
    let transport = opts.transport.name();
    let shape = format!("{procs} process(es) x {} thread(s), {} source address(es)", opts.threads, opts.sources.len());
    println!(
        "# {established} of {} {} subscribers established in {:.1} s ({shape})",
        opts.conns,
        transport.to_uppercase(),
        connect_time.as_secs_f64()
    );
    let mut measured = true;
    let mut storm_log = None;
    let published = match opts.mode {
        Mode::Idle => {
            if let Err(e) = finish_idle(opts, &rx, &mut tally, before, established, failed, procs) {
                eprintln!("hookcast-load: {e}");
                measured = false;
            }
            None
        }
        Mode::Fanout => Some(publish_all(opts, &rx, &mut tally, shards)),
        Mode::Storm => {
            storm_log = Some(storm_phase(opts, &rx, &mut tally));
            None
        }
    };
    stop_all(&stop, &mut workers);
    let closed_bound = Instant::now() + Duration::from_secs(10);
    if !tally.wait_until(&rx, |t| t.done >= shards, closed_bound) {
        eprintln!("hookcast-load: some shards did not close in time");
    }
    reap(&mut workers, Instant::now() + Duration::from_secs(5));
    let ok = match (published, storm_log) {
        (Some((published, errors)), _) => print_fanout(opts, &mut tally, established, procs, published, errors),
        (None, Some(log)) => print_storm(opts, &tally, established, procs, &log),
        (None, None) => {
            if opts.hold > Duration::ZERO {
                println!(
                    "# held for {} s; {} connection(s) closed by the server meanwhile",
                    opts.hold.as_secs(),
                    tally.dropped
                );
            }
            true
        }
    };
    Ok(i32::from(!enough || !ok || !measured))
}

fn finish_idle(
    opts: &Opts,
    rx: &Receiver<Report>,
    tally: &mut Tally,
    before: Option<Mem>,
    established: usize,
    failed: usize,
    procs: usize,
) -> Result<(), String> {
    let head = format!(
        "idle transport={} conns={} established={established} failed={failed}",
        opts.transport.name(),
        opts.conns
    );
    match (before, opts.pid) {
        (Some(before), Some(pid)) => {
            // Reports that arrive meanwhile (a shard whose connections all died) are kept.
            tally.wait_until(rx, |_| false, Instant::now() + SETTLE);
            let after = read_mem(pid)?;
            let (source, rss_before, rss_after) = match (before.rss_anon_kb, after.rss_anon_kb) {
                (Some(b), Some(a)) => ("rss_anon", b, a),
                _ => ("vmrss", before.vmrss_kb, after.vmrss_kb),
            };
            let mut line = format!(
                "{head} rss_before_kb={rss_before} rss_after_kb={rss_after} bytes_per_conn={} \
                 vmrss_before_kb={} vmrss_after_kb={} vmrss_bytes_per_conn={}",
                per_conn(rss_before, rss_after, established),
                before.vmrss_kb,
                after.vmrss_kb,
                per_conn(before.vmrss_kb, after.vmrss_kb, established),
            );
            if let (Some(b), Some(a)) = (before.pss_kb, after.pss_kb) {
                line +=
                    &format!(" pss_before_kb={b} pss_after_kb={a} pss_bytes_per_conn={}", per_conn(b, a, established));
            }
            println!("{line} rss_source={source} procs={procs}");
            println!(
                "# server pid {pid}: {} {} kB -> {} kB = {} bytes per connection (VmRSS {} -> {} kB = {} bytes)",
                if source == "rss_anon" { "RssAnon" } else { "VmRSS" },
                rss_before,
                rss_after,
                per_conn(rss_before, rss_after, established),
                before.vmrss_kb,
                after.vmrss_kb,
                per_conn(before.vmrss_kb, after.vmrss_kb, established),
            );
        }
        _ => println!("{head}"),
    }
    io::stdout().flush().ok();
    if opts.hold > Duration::ZERO {
        tally.wait_until(rx, |_| false, Instant::now() + opts.hold);
    }
    Ok(())
}

/// Publishes the events, then waits (at most `--wait`) for every shard to get them all;
/// returns (published, publish errors).
fn publish_all(opts: &Opts, rx: &Receiver<Report>, tally: &mut Tally, shards: usize) -> (u64, u64) {
    // Let the server finish registering the last subscriptions.
    tally.wait_until(rx, |_| false, Instant::now() + Duration::from_millis(500));
    let mut publisher = Publisher::new(opts);
    let (mut published, mut errors) = (0u64, 0u64);
    let start = Instant::now();
    tally.first_publish_us = now_micros();
    for i in 0..opts.events {
        let due = start + opts.interval.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
        // Shards that finish early report meanwhile; absorbing keeps the channel short.
        tally.wait_until(rx, |_| false, due);
        let body = wrap_for_peer(opts, publish_body(now_micros()));
        match publisher.publish(&body) {
            Ok(status) if (200..300).contains(&status) => published += 1,
            outcome => {
                if errors == 0 {
                    let what = match outcome {
                        Ok(status) => format!("status {status}"),
                        Err(e) => e,
                    };
                    eprintln!("hookcast-load: publish {} failed: {what}", i + 1);
                }
                errors += 1;
            }
        }
    }
    tally.wait_until(rx, |t| t.done >= shards, Instant::now() + opts.wait);
    (published, errors)
}

/// Prints the fanout figures; false if a publish failed.
fn print_fanout(opts: &Opts, tally: &mut Tally, established: usize, procs: usize, published: u64, errors: u64) -> bool {
    let expected = established as u64 * published;
    let lost = expected.saturating_sub(tally.received);
    let lat = &mut tally.latencies_us;
    lat.sort_unstable();
    let (p50, p99, max) = (percentile(lat, 50.0), percentile(lat, 99.0), lat.last().copied());
    let (window_ms, rate) = delivery_rate(tally.received, tally.first_publish_us, tally.last_us);
    println!(
        "fanout transport={} conns={} events={} p50_ms={} p99_ms={} max_ms={} lost={lost} \
         established={established} received={} published={published} publish_errors={errors} procs={procs} \
         window_ms={window_ms} deliveries_per_s={rate}",
        opts.transport.name(),
        opts.conns,
        opts.events,
        ms(p50),
        ms(p99),
        ms(max),
        tally.received,
    );
    println!(
        "# {published} events to {established} subscribers: p50 {} ms, p99 {} ms, max {} ms; \
         {lost} of {expected} deliveries lost",
        ms(p50),
        ms(p99),
        ms(max),
    );
    errors == 0
}

// ---------------------------------------------------------------------------------------------
// Side-by-side benchmarks against peers (scripts/bench.sh): publish formats and the burst rate.

/// The publish body as the server under test wants it: as is for hookcast and Nchan (a plain
/// POST of the event data), or wrapped in a Pushpin publish item (GRIP `http-stream` format,
/// the content being one SSE event) with `--pushpin-channel`.
fn wrap_for_peer(opts: &Opts, body: Vec<u8>) -> Vec<u8> {
    match &opts.pushpin_channel {
        None => body,
        Some(channel) => pushpin_publish_body(channel, &body),
    }
}

/// `{"items":[{"channel":C,"formats":{"http-stream":{"content":"data: <data>\n\n"}}}]}`.
fn pushpin_publish_body(channel: &str, data: &[u8]) -> Vec<u8> {
    let content = format!("data: {}\n\n", String::from_utf8_lossy(data));
    let item = serde_json::json!({ "channel": channel, "formats": { "http-stream": { "content": content } } });
    serde_json::json!({ "items": [item] }).to_string().into_bytes()
}

/// (window in ms, deliveries per second) from the first publish to the last delivery.
fn delivery_rate(received: u64, first_publish_us: u64, last_us: u64) -> (String, String) {
    if received == 0 || last_us <= first_publish_us {
        return ("n/a".into(), "n/a".into());
    }
    let window_us = last_us - first_publish_us;
    let rate = received as f64 * 1_000_000.0 / window_us as f64;
    (format!("{:.1}", window_us as f64 / 1000.0), format!("{rate:.0}"))
}

fn per_conn(before_kb: u64, after_kb: u64, conns: usize) -> i64 {
    if conns == 0 {
        return 0;
    }
    let delta = i64::try_from(after_kb).unwrap_or(i64::MAX) - i64::try_from(before_kb).unwrap_or(0);
    delta * 1024 / i64::try_from(conns).unwrap_or(i64::MAX)
}

/// Splits `n` into `parts` shares that differ by at most one.
fn split(n: usize, parts: usize) -> Vec<usize> {
    (0..parts).map(|i| n / parts + usize::from(i < n % parts)).collect()
}

fn stop_all(stop: &AtomicBool, workers: &mut [Worker]) {
    stop.store(true, Ordering::Relaxed);
    for w in workers.iter_mut() {
        if let Some(mut stdin) = w.stdin.take() {
            // A worker that already exited makes this fail with EPIPE; nothing to do then.
            let _ = stdin.write_all(b"stop\n");
        }
    }
}

/// Waits for every worker until `deadline`, then kills the ones left.
fn reap(workers: &mut [Worker], deadline: Instant) {
    for w in workers.iter_mut() {
        loop {
            match w.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = w.child.kill();
                    let _ = w.child.wait();
                    break;
                }
                Ok(None) => thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

/// Turns a worker's stdout lines back into reports.
fn forward_worker(stdout: ChildStdout, threads: usize, tx: &Sender<Report>) {
    let (mut ready, mut done) = (0, 0);
    let mut latencies_us = Vec::new();
    let mut storm = None;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_ascii_whitespace();
        let report = match words.next() {
            Some("ready") => {
                ready += 1;
                Report::Ready { open: words.next().and_then(|w| w.parse().ok()).unwrap_or(0) }
            }
            Some("lat") => {
                latencies_us.extend(words.filter_map(|w| w.parse::<u64>().ok()));
                continue;
            }
            Some("storm") => {
                storm = StormStats::from_line(&line).map(Box::new);
                continue;
            }
            Some("done") => {
                done += 1;
                Report::Done {
                    received: words.next().and_then(|w| w.parse().ok()).unwrap_or(0),
                    dropped: words.next().and_then(|w| w.parse().ok()).unwrap_or(0),
                    latencies_us: std::mem::take(&mut latencies_us),
                    last_us: words.next().and_then(|w| w.parse().ok()).unwrap_or(0),
                    storm: storm.take(),
                }
            }
            _ => continue,
        };
        if tx.send(report).is_err() {
            return;
        }
    }
    let _ = tx.send(Report::Gone { ready: threads.saturating_sub(ready), done: threads.saturating_sub(done) });
}

/// A worker: its shards' reports go to stdout; `stop` or end of file on stdin stops them.
fn run_worker(opts: &Opts, offset: usize) -> i32 {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut line = String::new();
            let stdin = io::stdin();
            // Ends at "stop" or at end of file, which the parent's exit also causes.
            while matches!(stdin.lock().read_line(&mut line), Ok(n) if n > 0) {
                if line.trim() == "stop" {
                    break;
                }
                line.clear();
            }
            stop.store(true, Ordering::Relaxed);
        });
    }
    let (tx, rx) = mpsc::channel();
    start_shards(opts, offset, opts.conns, opts.batch, &stop, &tx);
    drop(tx);
    let stdout = io::stdout();
    // Ends when every shard has dropped its sender, which the hard deadline guarantees.
    for report in rx {
        let mut out = stdout.lock();
        let written = match report {
            Report::Ready { open } => writeln!(out, "ready {open}"),
            Report::Done { received, dropped, latencies_us, last_us, storm } => latencies_us
                .chunks(LAT_PER_LINE)
                .try_for_each(|chunk| {
                    let words: Vec<String> = chunk.iter().map(u64::to_string).collect();
                    writeln!(out, "lat {}", words.join(" "))
                })
                .and_then(|()| storm.map_or(Ok(()), |s| writeln!(out, "{}", s.to_line())))
                .and_then(|()| writeln!(out, "done {received} {dropped} {last_us}")),
            Report::Gone { .. } => Ok(()),
        };
        // The parent is gone if this fails; the shards stop on end of file on stdin.
        if written.and_then(|()| out.flush()).is_err() {
            stop.store(true, Ordering::Relaxed);
        }
    }
    0
}

/// What every shard of this process shares.
struct Plan {
    /// Per target: its address and the whole request (SSE), or the request up to the value of
    /// Sec-WebSocket-Key (WS). Connection i goes to target i mod len.
    targets: Vec<(SocketAddrV4, String)>,
    sources: Vec<Ipv4Addr>,
    transport: Transport,
    window: usize,
    connect_deadline: Instant,
    hard_deadline: Instant,
    /// Fanout: the number of events each subscriber should get.
    expect_events: Option<u64>,
    /// Storm: a subscriber whose stream ends reconnects after a random delay below this.
    storm_spread: Option<Duration>,
}

fn subscriber_request(opts: &Opts, host: &str) -> String {
    let extra: String = opts.headers.iter().map(|h| format!("{h}\r\n")).collect();
    let path = &opts.path;
    match opts.transport {
        Transport::Sse => format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\
             Cache-Control: no-cache\r\n{extra}\r\n"
        ),
        Transport::Ws => format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\n{extra}Sec-WebSocket-Key: "
        ),
    }
}

/// Starts this process's shard threads over connections `first .. first + count`.
fn start_shards(opts: &Opts, first: usize, count: usize, batch: usize, stop: &Arc<AtomicBool>, tx: &Sender<Report>) {
    let now = Instant::now();
    let plan = Arc::new(Plan {
        targets: opts.targets.iter().map(|(host, addr)| (*addr, subscriber_request(opts, host))).collect(),
        sources: opts.sources.clone(),
        transport: opts.transport,
        window: (batch / opts.threads).max(1),
        connect_deadline: now + opts.connect_timeout,
        hard_deadline: now + hard_bound(opts),
        expect_events: (opts.mode == Mode::Fanout).then_some(opts.events),
        storm_spread: (opts.mode == Mode::Storm).then_some(opts.storm.spread),
    });
    let mut start = first;
    for (i, share) in split(count, opts.threads).into_iter().enumerate() {
        let (plan, stop, shard_tx) = (Arc::clone(&plan), Arc::clone(stop), tx.clone());
        let spawned = thread::Builder::new()
            .name(format!("shard-{i}"))
            .spawn(move || run_shard(&plan, start, share, &stop, &shard_tx));
        if let Err(e) = spawned {
            eprintln!("hookcast-load: cannot start a shard thread: {e}");
            let _ = tx.send(Report::Gone { ready: 1, done: 1 });
        }
        start += share;
    }
}

// ---------------------------------------------------------------------------------------------
// Shards: one thread, one Poll, many subscriber connections.

enum Phase {
    /// connect() is in progress.
    Connecting,
    /// The request is being written or the response head read.
    Handshaking,
    /// Established: reading events.
    Open,
}

enum BodyState {
    Sse { chunked: Option<Chunked>, sse: SseState },
    Ws(WsState),
}

struct Conn {
    stream: TcpStream,
    phase: Phase,
    opened: Instant,
    /// Bytes to write: the request, then WebSocket pongs.
    out: Vec<u8>,
    out_pos: usize,
    /// Bytes read but not consumed yet: the response head, then a partial line or frame.
    inbuf: Vec<u8>,
    /// WS: the Sec-WebSocket-Accept the server must answer.
    accept: Option<String>,
    body: BodyState,
}

/// Delivered events, as seen by one shard.
#[derive(Default)]
struct Sink {
    received: u64,
    latencies_us: Vec<u64>,
    /// Wall-clock time of the latest delivery (microseconds since the Unix epoch).
    last_us: u64,
    /// `storm`: the events dispatched since the shard last looked (None: not kept).
    storm_events: Option<Vec<StormEvent>>,
}

impl Sink {
    fn delivered(&mut self, t_us: u64) {
        let now = now_micros();
        self.received += 1;
        self.latencies_us.push(now.saturating_sub(t_us));
        self.last_us = self.last_us.max(now);
    }
}

struct Shard<'a> {
    plan: &'a Plan,
    poll: Poll,
    /// Indexed by token; a slot is never reused.
    conns: Vec<Option<Conn>>,
    first: usize,
    count: usize,
    scratch: Vec<u8>,
    dechunked: Vec<u8>,
    rng: Rng,
    sink: Sink,
    in_flight: usize,
    open: usize,
    failed: usize,
    dropped: usize,
    first_error: Option<String>,
    /// Connections that hit `READS_PER_EVENT` and still have bytes to read.
    again: Vec<usize>,
    /// `storm` only: the subscribers across their reconnections.
    storm: Option<StormShard>,
}

fn run_shard(plan: &Plan, first: usize, count: usize, stop: &AtomicBool, tx: &Sender<Report>) {
    let poll = match Poll::new() {
        Ok(poll) => poll,
        Err(e) => {
            eprintln!("hookcast-load: cannot create a poll: {e}");
            let _ = tx.send(Report::Gone { ready: 1, done: 1 });
            return;
        }
    };
    let mut shard = Shard {
        plan,
        poll,
        conns: Vec::with_capacity(count),
        first,
        count,
        scratch: vec![0; 64 * 1024],
        dechunked: Vec::new(),
        rng: Rng::seeded(),
        sink: Sink::default(),
        in_flight: 0,
        open: 0,
        failed: 0,
        dropped: 0,
        first_error: None,
        again: Vec::new(),
        storm: plan.storm_spread.map(|spread| StormShard::new(count, spread)),
    };
    if shard.storm.is_some() {
        shard.sink.storm_events = Some(Vec::new());
    }
    let mut events = Events::with_capacity(1024);
    shard.connect_all(&mut events, stop);
    if let Some(st) = shard.storm.as_mut() {
        st.live = true;
    }
    if shard.failed > 0 {
        eprintln!(
            "hookcast-load: {} of {} connections failed; the first: {}",
            shard.failed,
            count,
            shard.first_error.as_deref().unwrap_or("?")
        );
    }
    let open_at_ready = shard.open;
    if tx.send(Report::Ready { open: shard.open }).is_err() {
        return;
    }
    shard.dropped = 0;
    shard.read_until_stopped(&mut events, stop, open_at_ready);
    let storm = shard.storm.take().map(|mut st| {
        // Resumed: its current stream is open and has delivered something.
        st.stats.unresumed = (0..st.subs.len())
            .filter(|&i| {
                let open = shard.conns[i].as_ref().is_some_and(|c| matches!(c.phase, Phase::Open));
                st.subs[i].disconnected && (!open || st.subs[i].awaiting_resume)
            })
            .count() as u64;
        Box::new(st.stats)
    });
    shard.close_all();
    let _ = tx.send(Report::Done {
        received: shard.sink.received,
        dropped: shard.dropped,
        latencies_us: std::mem::take(&mut shard.sink.latencies_us),
        last_us: shard.sink.last_us,
        storm,
    });
}

impl Shard<'_> {
    /// Opens every connection, at most `window` handshakes in flight, until the connect
    /// deadline.
    fn connect_all(&mut self, events: &mut Events, stop: &AtomicBool) {
        let mut next = 0;
        let mut last_sweep = Instant::now();
        loop {
            if next >= self.count && self.in_flight == 0 {
                break;
            }
            let now = Instant::now();
            if now >= self.plan.connect_deadline || stop.load(Ordering::Relaxed) {
                break;
            }
            while next < self.count && self.in_flight < self.plan.window {
                self.open_one(next);
                next += 1;
            }
            self.poll_once(events, Duration::from_millis(10));
            if now.duration_since(last_sweep) >= Duration::from_millis(200) {
                self.expire_handshakes(now);
                last_sweep = now;
            }
        }
        for idx in 0..self.conns.len() {
            let pending = self.conns[idx].as_ref().is_some_and(|c| !matches!(c.phase, Phase::Open));
            if pending {
                if let Some(conn) = self.conns[idx].take() {
                    self.close(idx, conn, "the connect phase ended first".into());
                }
            }
        }
        self.failed += self.count - next;
        if next < self.count && self.first_error.is_none() {
            self.first_error = Some("the connect phase ended first".into());
        }
    }

    /// Reads and discards (or measures) until stopped, the hard deadline, every connection
    /// closed, or — fanout — every expected event received.
    fn read_until_stopped(&mut self, events: &mut Events, stop: &AtomicBool, open_at_ready: usize) {
        let mut last_sweep = Instant::now();
        loop {
            // A storm's subscribers may all be away at once: that is the restart.
            let all_gone = self.open == 0 && self.storm.is_none();
            if stop.load(Ordering::Relaxed) || Instant::now() >= self.plan.hard_deadline || all_gone {
                return;
            }
            if let Some(e) = self.plan.expect_events {
                if self.sink.received >= e * open_at_ready as u64 {
                    return;
                }
            }
            let mut timeout = Duration::from_millis(100);
            if self.storm.is_some() {
                let now = Instant::now();
                if let Some(next) = self.reconnect_due(now) {
                    timeout = timeout.min(next.saturating_duration_since(now));
                }
                if now.duration_since(last_sweep) >= Duration::from_millis(200) {
                    self.expire_handshakes(now);
                    last_sweep = now;
                }
            }
            self.poll_once(events, timeout);
        }
    }

    fn open_one(&mut self, i: usize) {
        debug_assert_eq!(i, self.conns.len());
        self.conns.push(None);
        self.start_conn(i, None);
    }

    /// Opens connection `idx` (its slot is empty), resuming from `last_id` if given.
    fn start_conn(&mut self, idx: usize, last_id: Option<&str>) {
        let global = self.first + idx;
        let source = self.plan.sources[global % self.plan.sources.len()];
        let (target, request) = &self.plan.targets[global % self.plan.targets.len()];
        let conn = sys::connect_from(source, *target).and_then(|std_stream| {
            let mut stream = TcpStream::from_std(std_stream);
            self.poll.registry().register(&mut stream, Token(idx), Interest::READABLE | Interest::WRITABLE)?;
            Ok(stream)
        });
        let stream = match conn {
            Ok(stream) => stream,
            Err(e) => {
                self.failed += 1;
                if let Some(st) = self.storm.as_mut().filter(|st| st.live) {
                    // Refused at once (loopback answers a connect to a closed port with RST).
                    st.ended(idx, false, self.rng.next_u64());
                    return;
                }
                self.first_error.get_or_insert_with(|| format!("connect from {source}: {e}"));
                return;
            }
        };
        let (out, accept, body) = match self.plan.transport {
            Transport::Sse => (
                with_last_event_id(request, last_id).into_bytes(),
                None,
                BodyState::Sse { chunked: None, sse: SseState::default() },
            ),
            Transport::Ws => {
                let key = BASE64.encode(self.rng.bytes16());
                let accept = ws_accept(&key);
                let request = format!("{request}{key}\r\n\r\n");
                (request.into_bytes(), Some(accept), BodyState::Ws(WsState::default()))
            }
        };
        self.conns[idx] = Some(Conn {
            stream,
            phase: Phase::Connecting,
            opened: Instant::now(),
            out,
            out_pos: 0,
            inbuf: Vec::new(),
            accept,
            body,
        });
        self.in_flight += 1;
    }

    fn poll_once(&mut self, events: &mut Events, timeout: Duration) {
        let timeout = if self.again.is_empty() { timeout } else { Duration::ZERO };
        if let Err(e) = self.poll.poll(events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                eprintln!("hookcast-load: poll: {e}");
                thread::sleep(timeout);
            }
            return;
        }
        let again = std::mem::take(&mut self.again);
        for idx in again {
            self.on_ready(idx);
        }
        for event in events.iter() {
            self.on_ready(event.token().0);
        }
    }

    /// Drives one connection; spurious wake-ups are harmless (mio may deliver them).
    fn on_ready(&mut self, idx: usize) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        match self.drive(idx, &mut conn) {
            Ok(()) => self.conns[idx] = Some(conn),
            Err(why) => self.close(idx, conn, why),
        }
    }

    fn drive(&mut self, idx: usize, conn: &mut Conn) -> Result<(), String> {
        if matches!(conn.phase, Phase::Connecting) {
            // mio's recipe for a non-blocking connect: an error, or a peer address once done.
            if let Some(e) = conn.stream.take_error().map_err(|e| e.to_string())? {
                return Err(format!("connect: {e}"));
            }
            match conn.stream.peer_addr() {
                Ok(_) => conn.phase = Phase::Handshaking,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(format!("connect: {e}")),
            }
        }
        flush(conn)?;
        self.read(idx, conn)?;
        flush(conn)
    }

    fn read(&mut self, idx: usize, conn: &mut Conn) -> Result<(), String> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = (|| {
            for _ in 0..READS_PER_EVENT {
                match conn.stream.read(&mut scratch) {
                    Ok(0) => {
                        return Err(match conn.phase {
                            Phase::Open => "closed by the server".to_string(),
                            _ => "closed by the server before the response head".to_string(),
                        })
                    }
                    Ok(n) => self.ingest(idx, conn, &scratch[..n])?,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("read: {e}")),
                }
            }
            self.again.push(idx);
            Ok(())
        })();
        self.scratch = scratch;
        result
    }

    fn ingest(&mut self, idx: usize, conn: &mut Conn, data: &[u8]) -> Result<(), String> {
        if !matches!(conn.phase, Phase::Handshaking) {
            return self.feed(idx, conn, data);
        }
        conn.inbuf.extend_from_slice(data);
        let Some(head) = parse_head(&conn.inbuf)? else {
            if conn.inbuf.len() > MAX_HEAD {
                return Err("response head too large".into());
            }
            return Ok(());
        };
        let want = match self.plan.transport {
            Transport::Sse => 200,
            Transport::Ws => 101,
        };
        if head.status != want {
            return Err(format!("status {} (expected {want})", head.status));
        }
        if let Some(expected) = &conn.accept {
            if head.accept.as_deref() != Some(expected.as_str()) {
                return Err(format!("Sec-WebSocket-Accept {:?}, expected {expected:?}", head.accept));
            }
        }
        if let BodyState::Sse { chunked, .. } = &mut conn.body {
            *chunked = head.chunked.then(Chunked::default);
        }
        conn.phase = Phase::Open;
        conn.accept = None;
        self.in_flight -= 1;
        self.open += 1;
        if let Some(st) = self.storm.as_mut() {
            st.reconnected(idx);
        }
        let rest = conn.inbuf.split_off(head.len);
        conn.inbuf = Vec::new();
        if rest.is_empty() {
            Ok(())
        } else {
            self.feed(idx, conn, &rest)
        }
    }

    /// Body bytes of an established connection.
    fn feed(&mut self, idx: usize, conn: &mut Conn, data: &[u8]) -> Result<(), String> {
        let sink = &mut self.sink;
        match &mut conn.body {
            BodyState::Sse { chunked, sse } => {
                let data = match chunked {
                    Some(state) => {
                        self.dechunked.clear();
                        dechunk(state, data, &mut self.dechunked)?;
                        &self.dechunked[..]
                    }
                    None => data,
                };
                let fed = feed_buffered(&mut conn.inbuf, data, |buf| Ok(sse_feed(sse, buf, sink)));
                if let (Some(st), Some(events)) = (self.storm.as_mut(), self.sink.storm_events.as_mut()) {
                    st.delivered(idx, events.drain(..), sse.id.as_deref());
                }
                fed
            }
            BodyState::Ws(ws) => {
                let mask = self.rng.next_u64().to_le_bytes();
                let mask = [mask[0], mask[1], mask[2], mask[3]];
                let out = &mut conn.out;
                feed_buffered(&mut conn.inbuf, data, |buf| ws_feed(ws, buf, sink, out, mask))
            }
        }
    }

    fn expire_handshakes(&mut self, now: Instant) {
        for idx in 0..self.conns.len() {
            let expired = self.conns[idx]
                .as_ref()
                .is_some_and(|c| !matches!(c.phase, Phase::Open) && now.duration_since(c.opened) > HANDSHAKE_TIMEOUT);
            if expired {
                if let Some(conn) = self.conns[idx].take() {
                    self.close(idx, conn, "handshake timed out".into());
                }
            }
        }
    }

    /// Accounts for a connection that ends; dropping it closes the socket. In a storm (after
    /// the connect phase) the subscriber is due to come back.
    fn close(&mut self, idx: usize, conn: Conn, why: String) {
        let was_open = matches!(conn.phase, Phase::Open);
        if was_open {
            self.open -= 1;
            self.dropped += 1;
        } else {
            self.in_flight -= 1;
            self.failed += 1;
        }
        if let Some(st) = self.storm.as_mut().filter(|st| st.live) {
            st.ended(idx, was_open, self.rng.next_u64());
            return;
        }
        self.first_error.get_or_insert(why);
    }

    /// Storm: opens the connections whose reconnect is due; returns when the next one is.
    fn reconnect_due(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for idx in 0..self.conns.len() {
            let st = self.storm.as_mut()?;
            let Some(at) = st.subs[idx].reconnect_at else { continue };
            if at > now {
                next = Some(next.map_or(at, |n| n.min(at)));
                continue;
            }
            st.subs[idx].reconnect_at = None;
            st.stats.attempts += 1;
            let last_id = st.subs[idx].last_id.clone();
            if self.conns[idx].is_none() {
                self.start_conn(idx, last_id.as_deref());
            }
        }
        next
    }

    fn close_all(&mut self) {
        for slot in &mut self.conns {
            if let Some(mut conn) = slot.take() {
                if matches!(conn.body, BodyState::Ws(_)) && matches!(conn.phase, Phase::Open) {
                    // RFC 6455 §5.5.1: a polite close (1000, normal closure); best effort.
                    let mask = self.rng.next_u64().to_le_bytes();
                    let frame =
                        encode_client_frame(OP_CLOSE, &1000u16.to_be_bytes(), [mask[0], mask[1], mask[2], mask[3]]);
                    let _ = conn.stream.write(&frame);
                }
            }
        }
        self.open = 0;
    }
}

/// Writes what is queued until done or `WouldBlock`.
fn flush(conn: &mut Conn) -> Result<(), String> {
    if matches!(conn.phase, Phase::Connecting) {
        return Ok(());
    }
    while conn.out_pos < conn.out.len() {
        match conn.stream.write(&conn.out[conn.out_pos..]) {
            Ok(0) => return Err("write returned 0".into()),
            Ok(n) => conn.out_pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("write: {e}")),
        }
    }
    conn.out = Vec::new();
    conn.out_pos = 0;
    Ok(())
}

/// Runs `parse` over the unconsumed bytes plus `data` and keeps what it did not consume,
/// without copying when nothing was pending.
fn feed_buffered(
    pending: &mut Vec<u8>,
    data: &[u8],
    mut parse: impl FnMut(&[u8]) -> Result<usize, String>,
) -> Result<(), String> {
    if pending.is_empty() {
        let used = parse(data)?;
        pending.extend_from_slice(&data[used..]);
    } else {
        pending.extend_from_slice(data);
        let used = parse(pending)?;
        pending.drain(..used);
    }
    if pending.len() > MAX_PENDING {
        return Err("a line or frame larger than 4 MiB".into());
    }
    if pending.is_empty() && pending.capacity() > 4096 {
        *pending = Vec::new();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pure parsers over bytes: response head, chunked framing, SSE lines, WebSocket frames.

/// The parts of a response head this tool looks at, owned.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    /// Bytes of the head including the blank line.
    len: usize,
    chunked: bool,
    accept: Option<String>,
}

/// `Ok(None)` while the head is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&buf[..end]);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    // RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
    let status = match status_line.split(' ').collect::<Vec<_>>()[..] {
        [version, code, ..] if version.starts_with("HTTP/1.") && code.len() == 3 => code.parse::<u16>().ok(),
        _ => None,
    }
    .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut chunked = false;
    let mut accept = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.rsplit(',').next().is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("sec-websocket-accept") {
            accept = Some(value.to_string());
        }
    }
    Ok(Some(Head { status, len: end + 4, chunked, accept }))
}

/// RFC 6455 §4.2.2: base64(SHA-1(key ++ GUID)).
fn ws_accept(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    BASE64.encode(sha.digest().bytes())
}

/// RFC 9112 §7.1 chunked transfer coding, decoded incrementally:
/// `chunked-body = *chunk last-chunk trailer-section CRLF`,
/// `chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Chunked {
    /// Reading hex digits (and then an extension, ignored) of a chunk size.
    #[default]
    SizeStart,
    Size {
        size: u64,
        ext: bool,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines until an empty one; `fresh` at a line start.
    Trailer {
        fresh: bool,
    },
}

/// Appends the chunk data of `input` to `out`; an error at a framing error or the end of the
/// body (an SSE stream that ends has been closed by the server).
fn dechunk(state: &mut Chunked, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
    let mut i = 0;
    while i < input.len() {
        let b = input[i];
        match *state {
            Chunked::SizeStart | Chunked::Size { .. } => {
                let (size, ext) = match *state {
                    Chunked::Size { size, ext } => (size, ext),
                    _ => (0, false),
                };
                let digits_seen = matches!(*state, Chunked::Size { .. });
                *state = match b {
                    b'\n' if digits_seen => {
                        if size == 0 {
                            Chunked::Trailer { fresh: true }
                        } else {
                            Chunked::Data(size)
                        }
                    }
                    b'\r' | b'\t' | b' ' | b';' if digits_seen => Chunked::Size { size, ext: true },
                    _ if ext => Chunked::Size { size, ext },
                    _ => {
                        let digit = (b as char).to_digit(16).ok_or_else(|| format!("bad chunk size byte {b:#04x}"))?;
                        if size >> 56 != 0 {
                            return Err("chunk size too large".into());
                        }
                        Chunked::Size { size: size * 16 + u64::from(digit), ext: false }
                    }
                };
                i += 1;
            }
            Chunked::Data(left) => {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len() - i);
                out.extend_from_slice(&input[i..i + take]);
                i += take;
                let left = left - take as u64;
                *state = if left == 0 { Chunked::DataCr } else { Chunked::Data(left) };
            }
            Chunked::DataCr => {
                *state = match b {
                    b'\r' => Chunked::DataLf,
                    b'\n' => Chunked::SizeStart,
                    _ => return Err("chunk data not followed by CRLF".into()),
                };
                i += 1;
            }
            Chunked::DataLf => {
                if b != b'\n' {
                    return Err("chunk data not followed by CRLF".into());
                }
                *state = Chunked::SizeStart;
                i += 1;
            }
            Chunked::Trailer { fresh } => {
                *state = match b {
                    b'\r' => Chunked::Trailer { fresh },
                    b'\n' if fresh => return Err("the server ended the event stream".into()),
                    b'\n' => Chunked::Trailer { fresh: true },
                    _ => Chunked::Trailer { fresh: false },
                };
                i += 1;
            }
        }
    }
    Ok(())
}

/// The SSE parser's memory between lines: the publish time and attempt number found in the
/// current event's data, its type, and the stream's last event id.
#[derive(Default, Debug)]
struct SseState {
    t_us: Option<u64>,
    /// `"n":` in the data (`storm`'s publish attempt number).
    n: Option<u64>,
    /// The current event has data lines.
    has_data: bool,
    /// The current event's type is `reset` (hookcast's history-gap notice).
    reset: bool,
    /// WHATWG HTML §9.2.6 "last event ID buffer": kept from event to event until an `id`
    /// field changes it.
    id: Option<String>,
}

/// What `storm` needs of one dispatched SSE event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StormEvent {
    /// The publish attempt number in its data.
    n: Option<u64>,
    /// An `event: reset`.
    reset: bool,
}

/// Consumes the complete lines of `buf` (WHATWG HTML §9.2.6: lines end in CRLF or LF; a bare CR
/// is not used by any server this tool targets), dispatching an event at each blank line;
/// returns the bytes consumed.
fn sse_feed(state: &mut SseState, buf: &[u8], sink: &mut Sink) -> usize {
    let mut pos = 0;
    while let Some(nl) = buf[pos..].iter().position(|&b| b == b'\n') {
        let mut line = &buf[pos..pos + nl];
        pos += nl + 1;
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        if line.is_empty() {
            if let Some(t) = state.t_us.take() {
                sink.delivered(t);
            }
            if let Some(events) = sink.storm_events.as_mut().filter(|_| state.has_data) {
                events.push(StormEvent { n: state.n, reset: state.reset });
            }
            (state.n, state.has_data, state.reset) = (None, false, false);
            continue;
        }
        // `data` field: the name, then a colon, or the name alone (empty value).
        if let Some(value) = line.strip_prefix(b"data") {
            if value.is_empty() || value[0] == b':' {
                state.has_data = true;
                if state.t_us.is_none() {
                    state.t_us = find_t(value);
                }
                if state.n.is_none() {
                    state.n = find_number(value, b"\"n\":");
                }
            }
        } else if let Some(value) = field_value(line, b"event") {
            state.reset = value == b"reset";
        } else if let Some(value) = field_value(line, b"id") {
            // An id with NUL is ignored (§9.2.6); one with CR could not be sent back.
            if !value.contains(&0) && !value.contains(&b'\r') {
                state.id = Some(String::from_utf8_lossy(value).into_owned());
            }
        }
    }
    pos
}

/// The value of field `name` in an SSE line (`name:value`, one leading space dropped, or `name`
/// alone for an empty value); None for another field.
fn field_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let rest = line.strip_prefix(name)?;
    match rest.first() {
        None => Some(rest),
        Some(b':') => Some(rest[1..].strip_prefix(b" ").unwrap_or(&rest[1..])),
        Some(_) => None,
    }
}

/// The value of the first `"t":` number in `bytes` (the publish time in microseconds).
fn find_t(bytes: &[u8]) -> Option<u64> {
    find_number(bytes, b"\"t\":")
}

/// The unsigned number after the first `key` (e.g. `"t":`) in `bytes`.
fn find_number(bytes: &[u8], key: &[u8]) -> Option<u64> {
    let at = bytes.windows(key.len()).position(|w| w == key)? + key.len();
    let rest = &bytes[at..];
    let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let digits = rest[start..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    std::str::from_utf8(&rest[start..start + digits]).ok()?.parse().ok()
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A fragmented message being reassembled.
#[derive(Default, Debug)]
struct WsState {
    in_message: bool,
    fragments: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
struct FrameHead {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: usize,
}

/// RFC 6455 §5.2 base framing:
/// ```text
///  0                   1                   2                   3
/// +-+-+-+-+-------+-+-------------+-------------------------------+
/// |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
/// |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
/// |N|V|V|V|       |S|             |   (if payload len==126/127)   |
/// +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
/// ```
/// `Ok(None)` while incomplete.
fn parse_frame_head(buf: &[u8]) -> Result<Option<FrameHead>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[0] & 0x70 != 0 {
        return Err("WebSocket frame with reserved bits set".into());
    }
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() < 4 => return Ok(None),
        126 => (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4),
        127 if buf.len() < 10 => return Ok(None),
        127 => {
            let mut b = [0; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    let payload_len =
        usize::try_from(len).ok().filter(|&l| l <= MAX_PENDING).ok_or("WebSocket frame larger than 4 MiB")?;
    let mask = if buf[1] & 0x80 != 0 {
        if buf.len() < at + 4 {
            return Ok(None);
        }
        let m = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(FrameHead { fin: buf[0] & 0x80 != 0, opcode: buf[0] & 0x0f, mask, header_len: at, payload_len }))
}

/// Consumes the complete frames of `buf`; pings are answered into `out`; returns the bytes
/// consumed, or an error at a close frame or a protocol error.
fn ws_feed(
    state: &mut WsState,
    buf: &[u8],
    sink: &mut Sink,
    out: &mut Vec<u8>,
    mask: [u8; 4],
) -> Result<usize, String> {
    let mut pos = 0;
    while let Some(head) = parse_frame_head(&buf[pos..])? {
        let end = pos + head.header_len + head.payload_len;
        if end > buf.len() {
            break;
        }
        let raw = &buf[pos + head.header_len..end];
        let payload: Cow<[u8]> = match head.mask {
            Some(m) => Cow::Owned(raw.iter().enumerate().map(|(i, b)| b ^ m[i % 4]).collect()),
            None => Cow::Borrowed(raw),
        };
        match head.opcode {
            OP_TEXT | OP_BINARY if state.in_message => return Err("a new message inside a fragmented one".into()),
            OP_TEXT | OP_BINARY if head.fin => on_message(&payload, sink),
            OP_TEXT | OP_BINARY => {
                state.in_message = true;
                state.fragments.extend_from_slice(&payload);
            }
            OP_CONTINUATION if !state.in_message => return Err("a continuation frame outside a message".into()),
            OP_CONTINUATION => {
                state.fragments.extend_from_slice(&payload);
                if state.fragments.len() > MAX_PENDING {
                    return Err("a WebSocket message larger than 4 MiB".into());
                }
                if head.fin {
                    on_message(&state.fragments, sink);
                    state.fragments = Vec::new();
                    state.in_message = false;
                }
            }
            OP_CLOSE => return Err("close frame from the server".into()),
            OP_PING => out.extend_from_slice(&encode_client_frame(OP_PONG, &payload, mask)),
            OP_PONG => {}
            op => return Err(format!("unknown WebSocket opcode {op:#x}")),
        }
        pos = end;
    }
    Ok(pos)
}

fn on_message(payload: &[u8], sink: &mut Sink) {
    if let Some(t) = find_t(payload) {
        sink.delivered(t);
    }
}

/// A client frame: FIN set, masked as RFC 6455 §5.3 requires of clients.
fn encode_client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

// ---------------------------------------------------------------------------------------------
// `storm`: the subscribers of a restarted server come back with Last-Event-ID.

/// A refused reconnect is tried again after this, doubled per refusal in a row up to
/// `RETRY_MAX`, each with ±50 % jitter so that the retries do not march in step.
const RETRY_BASE: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_millis(500);

/// How long to wait before the next attempt after `refusals` refused ones in a row; `r` is a
/// random number.
fn retry_delay(refusals: u32, r: u64) -> Duration {
    let base = RETRY_BASE.saturating_mul(1 << refusals.saturating_sub(1).min(8)).min(RETRY_MAX);
    let ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(ms / 2 + r % ms)
}

/// The subscriber request with `Last-Event-ID` added (the request ends in its blank line).
fn with_last_event_id(request: &str, last_id: Option<&str>) -> String {
    match (last_id, request.strip_suffix("\r\n")) {
        (Some(id), Some(head)) => format!("{head}Last-Event-ID: {id}\r\n\r\n"),
        _ => request.to_string(),
    }
}

/// `{"t":<micros>,"n":<attempt>,"pad":"xx…"}`, PUBLISH_BODY_LEN bytes long.
fn storm_body(t_us: u64, n: u64) -> Vec<u8> {
    padded(format!("{{\"t\":{t_us},\"n\":{n},\"pad\":\""), PUBLISH_BODY_LEN)
}

/// One subscriber of `storm`, across its connections.
#[derive(Default)]
struct StormSub {
    /// The last SSE `id:` seen, sent back as `Last-Event-ID`.
    last_id: Option<String>,
    /// The publish attempts received, as a bit set.
    seen: Vec<u64>,
    /// When to connect again (its stream ended, or the last attempt was refused).
    reconnect_at: Option<Instant>,
    /// Attempts refused in a row, for the backoff.
    refusals: u32,
    /// It lost its stream at least once.
    disconnected: bool,
    /// Its current stream is a reconnection that has delivered nothing yet.
    awaiting_resume: bool,
}

/// A shard's `storm` bookkeeping.
struct StormShard {
    subs: Vec<StormSub>,
    stats: StormStats,
    spread_us: u64,
    /// The connect phase is over: from now on an ended stream is a disconnect to come back from.
    live: bool,
}

impl StormShard {
    fn new(count: usize, spread: Duration) -> StormShard {
        StormShard {
            subs: (0..count).map(|_| StormSub::default()).collect(),
            stats: StormStats::default(),
            spread_us: u64::try_from(spread.as_micros()).unwrap_or(u64::MAX),
            live: false,
        }
    }

    /// Subscriber `idx`'s stream ended (`was_open`) or an attempt to get one failed.
    fn ended(&mut self, idx: usize, was_open: bool, r: u64) {
        let now = Instant::now();
        let sub = &mut self.subs[idx];
        sub.awaiting_resume = false;
        if was_open {
            self.stats.disconnects += 1;
            if !sub.disconnected {
                sub.disconnected = true;
                self.stats.disconnected += 1;
            }
            self.stats.first_disconnect_us = min_nonzero(self.stats.first_disconnect_us, now_micros());
            sub.refusals = 0;
            let jitter = if self.spread_us == 0 { 0 } else { r % self.spread_us };
            sub.reconnect_at = Some(now + Duration::from_micros(jitter));
        } else {
            self.stats.refused += 1;
            sub.refusals += 1;
            sub.reconnect_at = Some(now + retry_delay(sub.refusals, r));
        }
    }

    /// Subscriber `idx` has a stream again (a 200 and the end of the headers).
    fn reconnected(&mut self, idx: usize) {
        let sub = &mut self.subs[idx];
        sub.refusals = 0;
        if sub.disconnected {
            sub.awaiting_resume = true;
            let now = now_micros();
            self.stats.first_reconnect_us = min_nonzero(self.stats.first_reconnect_us, now);
            self.stats.last_reconnect_us = self.stats.last_reconnect_us.max(now);
        }
    }

    /// Events subscriber `idx` received; `last_id` is its stream's last event id now.
    fn delivered(&mut self, idx: usize, events: impl Iterator<Item = StormEvent>, last_id: Option<&str>) {
        let sub = &mut self.subs[idx];
        let mut any = false;
        for ev in events {
            any = true;
            match ev {
                StormEvent { reset: true, .. } => self.stats.resets += 1,
                StormEvent { n: Some(n), .. } => {
                    let (word, bit) = (usize::try_from(n / 64).unwrap_or(usize::MAX), 1u64 << (n % 64));
                    if word >= MAX_ATTEMPTS / 64 {
                        self.stats.foreign += 1;
                        continue;
                    }
                    if sub.seen.len() <= word {
                        sub.seen.resize(word + 1, 0);
                    }
                    if sub.seen[word] & bit != 0 {
                        self.stats.duplicates += 1;
                    } else {
                        sub.seen[word] |= bit;
                        let n = n as usize;
                        if self.stats.counts.len() <= n {
                            self.stats.counts.resize(n + 1, 0);
                        }
                        self.stats.counts[n] += 1;
                    }
                }
                StormEvent { n: None, .. } => self.stats.foreign += 1,
            }
        }
        if any && sub.awaiting_resume {
            sub.awaiting_resume = false;
            self.stats.last_resume_us = self.stats.last_resume_us.max(now_micros());
        }
        if let Some(id) = last_id {
            if sub.last_id.as_deref() != Some(id) {
                sub.last_id = Some(id.to_string());
            }
        }
    }
}

/// The most publish attempts a storm tracks (the bit sets and counts are indexed by attempt).
const MAX_ATTEMPTS: usize = 1 << 20;

/// The smaller of two timestamps where 0 means none.
fn min_nonzero(a: u64, b: u64) -> u64 {
    match (a, b) {
        (0, x) | (x, 0) => x,
        (a, b) => a.min(b),
    }
}

/// What a storm's subscribers saw, summed over a shard (or all of them). Times are wall-clock
/// microseconds since the Unix epoch, 0 for none.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct StormStats {
    /// Per publish attempt number: the subscribers that received it (at least once).
    counts: Vec<u64>,
    /// Attempts received again by a subscriber that had them.
    duplicates: u64,
    /// `event: reset` received.
    resets: u64,
    /// Events without an attempt number (not ours).
    foreign: u64,
    /// Streams that ended after the connect phase.
    disconnects: u64,
    /// Subscribers that lost their stream at least once.
    disconnected: u64,
    /// Reconnect attempts, and those refused (connect refused, closed before the head, or a
    /// status other than 200).
    attempts: u64,
    refused: u64,
    /// Subscribers that lost their stream and have none at the end, or one that delivered
    /// nothing.
    unresumed: u64,
    first_disconnect_us: u64,
    first_reconnect_us: u64,
    last_reconnect_us: u64,
    last_resume_us: u64,
}

impl StormStats {
    fn merge(&mut self, o: &StormStats) {
        if self.counts.len() < o.counts.len() {
            self.counts.resize(o.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.duplicates += o.duplicates;
        self.resets += o.resets;
        self.foreign += o.foreign;
        self.disconnects += o.disconnects;
        self.disconnected += o.disconnected;
        self.attempts += o.attempts;
        self.refused += o.refused;
        self.unresumed += o.unresumed;
        self.first_disconnect_us = min_nonzero(self.first_disconnect_us, o.first_disconnect_us);
        self.first_reconnect_us = min_nonzero(self.first_reconnect_us, o.first_reconnect_us);
        self.last_reconnect_us = self.last_reconnect_us.max(o.last_reconnect_us);
        self.last_resume_us = self.last_resume_us.max(o.last_resume_us);
    }

    fn scalars(&self) -> [(&'static str, u64); 12] {
        [
            ("duplicates", self.duplicates),
            ("resets", self.resets),
            ("foreign", self.foreign),
            ("disconnects", self.disconnects),
            ("disconnected", self.disconnected),
            ("attempts", self.attempts),
            ("refused", self.refused),
            ("unresumed", self.unresumed),
            ("first_disconnect_us", self.first_disconnect_us),
            ("first_reconnect_us", self.first_reconnect_us),
            ("last_reconnect_us", self.last_reconnect_us),
            ("last_resume_us", self.last_resume_us),
        ]
    }

    /// The worker protocol's `storm k=v … counts=c0,c1,…` line.
    fn to_line(&self) -> String {
        let mut line = String::from("storm");
        for (k, v) in self.scalars() {
            line += &format!(" {k}={v}");
        }
        let counts: Vec<String> = self.counts.iter().map(u64::to_string).collect();
        line + " counts=" + &counts.join(",")
    }

    fn from_line(line: &str) -> Option<StormStats> {
        let mut s = StormStats::default();
        let mut words = line.split_ascii_whitespace();
        if words.next() != Some("storm") {
            return None;
        }
        for word in words {
            let (k, v) = word.split_once('=')?;
            if k == "counts" {
                s.counts = if v.is_empty() {
                    Vec::new()
                } else {
                    v.split(',').map(|c| c.parse().ok()).collect::<Option<_>>()?
                };
                continue;
            }
            let v: u64 = v.parse().ok()?;
            let slot = match k {
                "duplicates" => &mut s.duplicates,
                "resets" => &mut s.resets,
                "foreign" => &mut s.foreign,
                "disconnects" => &mut s.disconnects,
                "disconnected" => &mut s.disconnected,
                "attempts" => &mut s.attempts,
                "refused" => &mut s.refused,
                "unresumed" => &mut s.unresumed,
                "first_disconnect_us" => &mut s.first_disconnect_us,
                "first_reconnect_us" => &mut s.first_reconnect_us,
                "last_reconnect_us" => &mut s.last_reconnect_us,
                "last_resume_us" => &mut s.last_resume_us,
                _ => continue,
            };
            *slot = v;
        }
        Some(s)
    }
}

/// (lost, delivered without acknowledgement): `lost` sums, over the acknowledged attempts, the
/// established subscribers that never received it; the second figure counts deliveries of
/// attempts whose publish failed as far as the publisher knows (the server took it but the
/// answer was lost in the restart), which are not errors.
fn storm_loss(counts: &[u64], accepted: &[u64], established: u64) -> (u64, u64) {
    let mut acked = vec![false; counts.len()];
    let mut lost = 0;
    for &n in accepted {
        let got = counts.get(n as usize).copied().unwrap_or(0);
        lost += established.saturating_sub(got);
        if let Some(a) = acked.get_mut(n as usize) {
            *a = true;
        }
    }
    let unacked = counts.iter().zip(&acked).filter(|(_, a)| !**a).map(|(c, _)| c).sum();
    (lost, unacked)
}

/// What the storm's publisher did.
#[derive(Default)]
struct PublishLog {
    /// Attempt numbers answered 2xx.
    accepted: Vec<u64>,
    attempts: u64,
    failed: u64,
    first_error: Option<String>,
}

/// Publishes at `rate` until `deadline`: each event is tried again (a new attempt number, 20 ms
/// later) until it is acknowledged, as an application whose server restarts would; the next
/// one follows at the rate, without a catch-up burst for the time lost.
fn storm_publish(opts: &Opts, deadline: Instant) -> PublishLog {
    let mut publisher = Publisher::new(opts);
    let mut log = PublishLog::default();
    let interval = Duration::from_secs_f64(1.0 / opts.storm.rate);
    let mut due = Instant::now();
    while due < deadline {
        let now = Instant::now();
        if due > now {
            thread::sleep(due - now);
        }
        loop {
            log.attempts += 1;
            let n = log.attempts;
            match publisher.publish(&storm_body(now_micros(), n)) {
                Ok(status) if (200..300).contains(&status) => {
                    log.accepted.push(n);
                    break;
                }
                outcome => {
                    log.failed += 1;
                    log.first_error.get_or_insert_with(|| match outcome {
                        Ok(status) => format!("status {status}"),
                        Err(e) => e,
                    });
                }
            }
            if Instant::now() >= deadline || log.attempts as usize >= MAX_ATTEMPTS - 1 {
                return log;
            }
            thread::sleep(Duration::from_millis(20));
        }
        due = (due + interval).max(Instant::now());
    }
    log
}

/// The storm's middle: publish for `--seconds` (the bench restarts the server meanwhile, told
/// by the `# storm: publishing` line), then let the subscribers settle.
fn storm_phase(opts: &Opts, rx: &Receiver<Report>, tally: &mut Tally) -> PublishLog {
    tally.wait_until(rx, |_| false, Instant::now() + Duration::from_millis(500));
    println!(
        "# storm: publishing {} events/s for {} s; restart the server now",
        opts.storm.rate,
        opts.storm.seconds.as_secs()
    );
    io::stdout().flush().ok();
    let publisher = {
        let deadline = Instant::now() + opts.storm.seconds;
        let (tx, done) = mpsc::channel();
        thread::scope(|scope| {
            scope.spawn(move || {
                let _ = tx.send(storm_publish(opts, deadline));
            });
            // Absorb the shards' reports meanwhile; the publisher's own bound ends this.
            loop {
                match done.recv_timeout(Duration::from_millis(100)) {
                    Ok(log) => break log,
                    Err(RecvTimeoutError::Timeout) => {
                        tally.wait_until(rx, |_| false, Instant::now() + Duration::from_millis(1));
                    }
                    Err(RecvTimeoutError::Disconnected) => break PublishLog::default(),
                }
            }
        })
    };
    println!("# storm: publisher done; settling for {} s", opts.storm.settle.as_secs());
    io::stdout().flush().ok();
    tally.wait_until(rx, |_| false, Instant::now() + opts.storm.settle);
    publisher
}

/// Prints the storm figures; false if the storm did not happen or did not end (no disconnect,
/// a subscriber that never resumed, nothing acknowledged).
fn print_storm(opts: &Opts, tally: &Tally, established: usize, procs: usize, log: &PublishLog) -> bool {
    let s = &tally.storm;
    let (lost, unacked) = storm_loss(&s.counts, &log.accepted, established as u64);
    let since = |at: u64| {
        if at == 0 || s.first_reconnect_us == 0 {
            "n/a".to_string()
        } else {
            format!("{:.1}", at.saturating_sub(s.first_reconnect_us) as f64 / 1000.0)
        }
    };
    let down = if s.first_disconnect_us == 0 || s.first_reconnect_us == 0 {
        "n/a".to_string()
    } else {
        format!("{:.1}", s.first_reconnect_us.saturating_sub(s.first_disconnect_us) as f64 / 1000.0)
    };
    println!(
        "storm conns={} established={established} disconnected={} published={} publish_attempts={} \
         lost={lost} duplicates={} resets={} unacked_delivered={unacked} foreign={} reconnects={} refused={} \
         down_ms={down} reconnect_ms={} resume_ms={} unresumed={} procs={procs} rate={} spread_ms={}",
        opts.conns,
        s.disconnected,
        log.accepted.len(),
        log.attempts,
        s.duplicates,
        s.resets,
        s.foreign,
        s.attempts,
        s.refused,
        since(s.last_reconnect_us),
        since(s.last_resume_us),
        s.unresumed,
        opts.storm.rate,
        opts.storm.spread.as_millis(),
    );
    println!(
        "# {} of {established} subscribers lost their stream; all back {} ms after the first returned; \
         {lost} acknowledged deliveries lost, {} duplicates, {} resets",
        s.disconnected,
        since(s.last_resume_us),
        s.duplicates,
        s.resets
    );
    if let Some(e) = &log.first_error {
        eprintln!("hookcast-load: {} publish attempt(s) failed (retried); the first: {e}", log.failed);
    }
    let mut ok = true;
    for (bad, why) in [
        (s.disconnected == 0, "no subscriber lost its stream: the server was not restarted".to_string()),
        (s.unresumed > 0, format!("{} subscriber(s) did not resume by the end", s.unresumed)),
        (log.accepted.is_empty(), "no publish was acknowledged".to_string()),
    ] {
        if bad {
            eprintln!("hookcast-load: storm: {why}");
            ok = false;
        }
    }
    ok
}

// ---------------------------------------------------------------------------------------------
// The publisher: one blocking keep-alive connection.

struct Publisher {
    addr: SocketAddr,
    head: String,
    conn: Option<BufReader<StdTcpStream>>,
}

/// `{"t":<micros>,"pad":"xx…"}`, PUBLISH_BODY_LEN bytes long.
fn publish_body(t_us: u64) -> Vec<u8> {
    let prefix = format!("{{\"t\":{t_us},\"pad\":\"");
    let pad = PUBLISH_BODY_LEN.saturating_sub(prefix.len() + 2);
    format!("{prefix}{}\"}}", "x".repeat(pad)).into_bytes()
}

impl Publisher {
    fn new(opts: &Opts) -> Publisher {
        let addr = resolve_v4("--publish-target", &opts.publish_target)
            .map(SocketAddr::V4)
            .unwrap_or(SocketAddr::V4(opts.target_addr));
        let auth = opts.token.as_ref().map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        Publisher {
            addr,
            head: format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}",
                opts.publish_path, opts.publish_target
            ),
            conn: None,
        }
    }

    /// Sends one event; a reused connection that fails is replaced once.
    fn publish(&mut self, body: &[u8]) -> Result<u16, String> {
        let reused = self.conn.is_some();
        match self.try_publish(body) {
            Ok(status) => Ok(status),
            Err(_) if reused => {
                self.conn = None;
                let retry = self.try_publish(body);
                if retry.is_err() {
                    self.conn = None;
                }
                retry
            }
            Err(e) => {
                self.conn = None;
                Err(e)
            }
        }
    }

    fn try_publish(&mut self, body: &[u8]) -> Result<u16, String> {
        if self.conn.is_none() {
            let stream = StdTcpStream::connect_timeout(&self.addr, PUBLISH_IO_TIMEOUT)
                .map_err(|e| format!("connect to {}: {e}", self.addr))?;
            stream.set_nodelay(true).map_err(|e| e.to_string())?;
            stream.set_read_timeout(Some(PUBLISH_IO_TIMEOUT)).map_err(|e| e.to_string())?;
            stream.set_write_timeout(Some(PUBLISH_IO_TIMEOUT)).map_err(|e| e.to_string())?;
            self.conn = Some(BufReader::new(stream));
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err("no connection".into());
        };
        let mut request = format!("{}Content-Length: {}\r\n\r\n", self.head, body.len()).into_bytes();
        request.extend_from_slice(body);
        conn.get_mut().write_all(&request).map_err(|e| format!("write: {e}"))?;
        let status_line = read_line_capped(conn)?;
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .filter(|_| status_line.starts_with("HTTP/1."))
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        let (mut length, mut chunked, mut close) = (0usize, false, false);
        for _ in 0..100 {
            let line = read_line_capped(conn)?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().map_err(|_| format!("bad Content-Length {value:?}"))?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().ends_with("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        if chunked {
            for _ in 0..10_000 {
                let size_line = read_line_capped(conn)?;
                let hex = size_line.split(';').next().unwrap_or("").trim();
                let size = usize::from_str_radix(hex, 16).map_err(|_| format!("bad chunk size {size_line:?}"))?;
                if size == 0 {
                    while !read_line_capped(conn)?.is_empty() {}
                    break;
                }
                discard(conn, size + 2)?;
            }
        } else if length > 0 {
            discard(conn, length)?;
        }
        if close {
            self.conn = None;
        }
        Ok(status)
    }
}

/// One CRLF-terminated line, without its end; at most MAX_PUBLISH_RESPONSE bytes.
fn read_line_capped(conn: &mut BufReader<StdTcpStream>) -> Result<String, String> {
    let mut line = Vec::new();
    let n = conn
        .by_ref()
        .take(MAX_PUBLISH_RESPONSE as u64)
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("read: {e}"))?;
    if n == 0 || line.last() != Some(&b'\n') {
        return Err("the publish connection closed mid-response".into());
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn discard(conn: &mut BufReader<StdTcpStream>, n: usize) -> Result<(), String> {
    if n > MAX_PUBLISH_RESPONSE {
        return Err("publish response body too large".into());
    }
    let copied = io::copy(&mut conn.by_ref().take(n as u64), &mut io::sink()).map_err(|e| format!("read: {e}"))?;
    if copied != n as u64 {
        return Err("the publish connection closed mid-body".into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// `publish`: acknowledged publishes per second (the journal's fsync policies side by side).

/// The `publish` subcommand's options, validated.
#[derive(Debug)]
struct PublishOpts {
    target: String,
    target_addr: SocketAddrV4,
    topic: String,
    conns: usize,
    duration: Duration,
    size: usize,
    token: Option<String>,
}

/// Most publisher threads; each is one blocking connection.
const MAX_PUBLISH_CONNS: usize = 1024;
/// Longest `--seconds`.
const MAX_PUBLISH_SECONDS: u64 = 3600;
/// Body size bounds: room for the timestamp, and at most 1 MiB.
const PUBLISH_SIZE_RANGE: (usize, usize) = (32, 1 << 20);

/// Runs `publish` with the arguments after the subcommand; returns the exit status.
fn publish_main(args: &[String]) -> i32 {
    let opts = match parse_publish_args(args) {
        Ok(Some(opts)) => opts,
        Ok(None) => {
            print_help();
            return 0;
        }
        Err(e) => {
            eprintln!("hookcast-load: {e}\n(hookcast-load --help prints the usage)");
            return 2;
        }
    };
    run_publish(&opts)
}

/// Parses `publish`'s flags (the same syntax as the other subcommands: `--name value` or
/// `--name=value`); `Ok(None)` means `--help`.
fn parse_publish_args(args: &[String]) -> Result<Option<PublishOpts>, String> {
    let (mut target, mut topic, mut conns, mut seconds, mut size, mut token) = (None, None, None, None, None, None);
    let mut it = args.iter().cloned();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        if matches!(name.as_str(), "-h" | "--help") {
            return Ok(None);
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("{name} needs a value"))?,
        };
        let slot: &mut Option<String> = match name.as_str() {
            "--target" => &mut target,
            "--topic" => &mut topic,
            "--conns" => &mut conns,
            "--seconds" => &mut seconds,
            "--size" => &mut size,
            "--token" => &mut token,
            _ => return Err(format!("unknown option {name:?} for publish")),
        };
        if slot.replace(value).is_some() {
            return Err(format!("{name} given twice"));
        }
    }
    let target = required("--target", &target)?.to_string();
    let target_addr = resolve_v4("--target", &target)?;
    let topic = required("--topic", &topic)?.to_string();
    if topic.is_empty() || topic.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'?' || b == b'#') {
        return Err(format!("--topic {topic:?} must be a topic name (no spaces, '?' or '#')"));
    }
    let conns: usize = number("--conns", Some(required("--conns", &conns)?), 0)?;
    if !(1..=MAX_PUBLISH_CONNS).contains(&conns) {
        return Err(format!("--conns must be between 1 and {MAX_PUBLISH_CONNS}"));
    }
    let seconds: u64 = number("--seconds", Some(required("--seconds", &seconds)?), 0)?;
    if !(1..=MAX_PUBLISH_SECONDS).contains(&seconds) {
        return Err(format!("--seconds must be between 1 and {MAX_PUBLISH_SECONDS}"));
    }
    let size: usize = number("--size", size.as_deref(), PUBLISH_BODY_LEN)?;
    let (min, max) = PUBLISH_SIZE_RANGE;
    if !(min..=max).contains(&size) {
        return Err(format!("--size must be between {min} and {max}"));
    }
    if token.as_deref().is_some_and(|t| t.contains(['\r', '\n'])) {
        return Err("--token must not contain CR or LF".into());
    }
    Ok(Some(PublishOpts { target, target_addr, topic, conns, duration: Duration::from_secs(seconds), size, token }))
}

/// `{"t":<micros>,"pad":"xx…"}`, `size` bytes long (`size` >= the 32 bytes the rest needs).
fn sized_publish_body(t_us: u64, size: usize) -> Vec<u8> {
    padded(format!("{{\"t\":{t_us},\"pad\":\""), size)
}

/// `prefix` (a JSON object up to an open `"pad":"`), x's, and `"}`: `size` bytes in all.
fn padded(prefix: String, size: usize) -> Vec<u8> {
    let pad = size.saturating_sub(prefix.len() + 2);
    format!("{prefix}{}\"}}", "x".repeat(pad)).into_bytes()
}

/// What one publisher thread did.
#[derive(Default)]
struct PublishTally {
    acked: u64,
    errors: u64,
    first_error: Option<String>,
    latencies_us: Vec<u64>,
}

/// Each of `conns` threads publishes on its own keep-alive connection until the deadline; a
/// request started before the deadline is waited for (bounded by PUBLISH_IO_TIMEOUT), and the
/// rate is over the time until the last thread stopped.
fn run_publish(opts: &PublishOpts) -> i32 {
    let auth = opts.token.as_ref().map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let head = format!(
        "POST /publish/{} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}",
        opts.topic, opts.target
    );
    let start = Instant::now();
    let deadline = start + opts.duration;
    let threads: Vec<_> = (0..opts.conns)
        .map(|_| {
            let mut publisher = Publisher { addr: SocketAddr::V4(opts.target_addr), head: head.clone(), conn: None };
            let size = opts.size;
            thread::spawn(move || {
                let mut t = PublishTally::default();
                // A failing server is not hammered: after an error, a short pause.
                while Instant::now() < deadline {
                    let body = sized_publish_body(now_micros(), size);
                    let sent = Instant::now();
                    match publisher.publish(&body) {
                        Ok(status) if (200..300).contains(&status) => {
                            t.acked += 1;
                            t.latencies_us.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                        }
                        outcome => {
                            t.errors += 1;
                            t.first_error.get_or_insert_with(|| match outcome {
                                Ok(status) => format!("status {status}"),
                                Err(e) => e,
                            });
                            thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
                t
            })
        })
        .collect();
    let mut all = PublishTally::default();
    for h in threads {
        let t = h.join().unwrap_or_else(|_| PublishTally {
            errors: 1,
            first_error: Some("a publisher thread panicked".into()),
            ..PublishTally::default()
        });
        all.acked += t.acked;
        all.errors += t.errors;
        all.latencies_us.extend(t.latencies_us);
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
    }
    let took = start.elapsed().as_secs_f64();
    let lat = &mut all.latencies_us;
    lat.sort_unstable();
    println!(
        "publish conns={} seconds={} acked={} per_sec={:.0} p50_ms={} p99_ms={} max_ms={} errors={} size={}",
        opts.conns,
        opts.duration.as_secs(),
        all.acked,
        all.acked as f64 / took,
        ms(percentile(lat, 50.0)),
        ms(percentile(lat, 99.0)),
        ms(lat.last().copied()),
        all.errors,
        opts.size
    );
    if let Some(e) = &all.first_error {
        eprintln!("hookcast-load: {} publish(es) failed; the first: {e}", all.errors);
    }
    i32::from(all.errors > 0 || all.acked == 0)
}

// ---------------------------------------------------------------------------------------------
// Small helpers: memory figures, clocks, randomness.

struct Mem {
    vmrss_kb: u64,
    rss_anon_kb: Option<u64>,
    pss_kb: Option<u64>,
}

fn read_mem(pid: u32) -> Result<Mem, String> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    let vmrss_kb = kb_field(&status, "VmRSS:").ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))?;
    let pss_kb = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok().and_then(|s| kb_field(&s, "Pss:"));
    Ok(Mem { vmrss_kb, rss_anon_kb: kb_field(&status, "RssAnon:"), pss_kb })
}

/// The number of a `Name:   1234 kB` line.
fn kb_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)).and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn ms(us: Option<u64>) -> String {
    us.map_or_else(|| "n/a".into(), |us| format!("{:.3}", us as f64 / 1000.0))
}

/// splitmix64, seeded from /dev/urandom: WebSocket keys and masks need to be unpredictable
/// to intermediaries, not cryptographically strong.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let mut seed = [0u8; 8];
        let _ = fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut seed));
        let salt = now_micros() ^ u64::from(std::process::id()) << 32;
        Rng(u64::from_le_bytes(seed) ^ salt)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn bytes16(&mut self) -> [u8; 16] {
        let mut out = [0; 16];
        out[..8].copy_from_slice(&self.next_u64().to_le_bytes());
        out[8..].copy_from_slice(&self.next_u64().to_le_bytes());
        out
    }
}

/// The only `unsafe` of this binary: std has no bind-before-connect and no setrlimit, and mio 1
/// dropped its `TcpSocket`.
mod sys {
    use std::io;
    use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
    use std::os::fd::{FromRawFd, OwnedFd};

    /// Raises the soft RLIMIT_NOFILE to the hard limit; returns the soft limit now in force.
    pub fn raise_nofile_limit() -> io::Result<libc::rlim_t> {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            // SAFETY: `raised` is a valid rlimit that setrlimit only reads. If the hard limit is
            // RLIM_INFINITY the call fails (above fs.nr_open) and the old soft limit stays.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                return Ok(raised.rlim_cur);
            }
        }
        Ok(lim.rlim_cur)
    }

    /// A non-blocking TCP socket bound to `src` (any port) with a connect to `dst` started.
    pub fn connect_from(src: Ipv4Addr, dst: SocketAddrV4) -> io::Result<TcpStream> {
        let flags = libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
        // SAFETY: socket() takes no pointers; a negative result is handled right below.
        let fd = unsafe { libc::socket(libc::AF_INET, flags, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(), is open and owned by nothing else; from
        // here on `owned` closes it on every return path.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let one: libc::c_int = 1;
        // SAFETY: the pointer and length describe `one`, a live c_int. Failing (kernels before
        // 4.2) is harmless: the port is then chosen at bind() instead of at connect().
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        let local = sockaddr(SocketAddrV4::new(src, 0));
        // SAFETY: `local` is a fully initialised sockaddr_in and the length passed is its size.
        if unsafe { libc::bind(fd, (&local as *const libc::sockaddr_in).cast(), SOCKADDR_IN_LEN) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let remote = sockaddr(dst);
        // SAFETY: as for bind().
        if unsafe { libc::connect(fd, (&remote as *const libc::sockaddr_in).cast(), SOCKADDR_IN_LEN) } != 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(err);
            }
        }
        Ok(TcpStream::from(owned))
    }

    const SOCKADDR_IN_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;

    fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
        libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: addr.port().to_be(),
            sin_addr: libc::in_addr { s_addr: u32::from(*addr.ip()).to_be() },
            sin_zero: [0; 8],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn accept_key_matches_rfc6455_example() {
        // RFC 6455 §1.3.
        assert_eq!(ws_accept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn find_t_reads_the_publish_time() {
        assert_eq!(find_t(br#"{"t":1712,"pad":"x"}"#), Some(1712));
        assert_eq!(find_t(br#"{"id":3,"time":9,"data":{"t": 42}}"#), Some(42));
        assert_eq!(find_t(br#"{"time":9}"#), None);
        assert_eq!(find_t(br#"{"t":"no"}"#), None);
        assert_eq!(find_t(br#"{"t":"#), None);
    }

    #[test]
    fn sse_events_dispatch_at_blank_lines_across_reads() {
        let mut st = SseState::default();
        let mut sink = Sink::default();
        let input = b": keepalive\r\n\r\nretry: 500\nid: 7\nevent: x\ndata: {\"t\":5}\n\ndata: {\"t\"";
        let used = sse_feed(&mut st, input, &mut sink);
        assert_eq!(sink.received, 1);
        assert_eq!(&input[used..], b"data: {\"t\"");
        let used = sse_feed(&mut st, b"data: {\"t\":6}\r\n\r\ndata\n\n", &mut sink);
        assert_eq!(used, 23);
        assert_eq!(sink.received, 2);
    }

    #[test]
    fn dechunk_follows_rfc9112_framing() {
        let mut st = Chunked::default();
        let mut out = Vec::new();
        dechunk(&mut st, b"5;ext=1\r\nhel", &mut out).unwrap();
        dechunk(&mut st, b"lo\r\n6\r\n world\r\n", &mut out).unwrap();
        assert_eq!(out, b"hello world");
        assert!(dechunk(&mut st, b"0\r\nTrailer: x\r\n\r\n", &mut out).is_err());
        let mut st = Chunked::default();
        assert!(dechunk(&mut st, b"zz\r\n", &mut out).is_err());
    }

    #[test]
    fn response_heads() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Ty").unwrap(), None);
        let head = parse_head(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
              sec-websocket-accept:  abc= \r\n\r\nrest",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.status, 101);
        assert_eq!(head.accept.as_deref(), Some("abc="));
        assert_eq!(head.len, 86);
        let head = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap().unwrap();
        assert!(head.chunked);
        assert!(parse_head(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn ws_frames_messages_fragments_and_pings() {
        let mut st = WsState::default();
        let mut sink = Sink::default();
        let mut out = Vec::new();
        let mut input = vec![0x81, 7];
        input.extend_from_slice(br#"{"t":1}"#);
        input.extend_from_slice(&[0x01, 3]); // text, not FIN
        input.extend_from_slice(br#"{"t"#);
        input.extend_from_slice(&[0x89, 2, b'h', b'i']); // ping between fragments
        input.extend_from_slice(&[0x80, 3]); // continuation, FIN
        input.extend_from_slice(br#"":2"#);
        input.extend_from_slice(&[0x81, 126, 0]); // incomplete extended length
        let used = ws_feed(&mut st, &input, &mut sink, &mut out, [1, 2, 3, 4]).unwrap();
        assert_eq!(used, input.len() - 3);
        assert_eq!(sink.received, 2);
        assert_eq!(out, encode_client_frame(OP_PONG, b"hi", [1, 2, 3, 4]));
        assert_eq!(out[..2], [0x8A, 0x82]);
        assert_eq!(out[6..], [b'h' ^ 1, b'i' ^ 2]);
        assert!(ws_feed(&mut st, &[0x88, 0], &mut sink, &mut out, [0; 4]).is_err());
        assert!(ws_feed(&mut st, &[0xC1, 0], &mut sink, &mut out, [0; 4]).is_err());
    }

    #[test]
    fn frame_head_lengths() {
        let long = parse_frame_head(&[0x82, 126, 1, 0]).unwrap().unwrap();
        assert_eq!((long.header_len, long.payload_len), (4, 256));
        let masked = parse_frame_head(&[0x81, 0x85, 1, 2, 3, 4]).unwrap().unwrap();
        assert_eq!(masked.mask, Some([1, 2, 3, 4]));
        assert_eq!(parse_frame_head(&[0x81, 0x85, 1]).unwrap(), None);
        assert!(parse_frame_head(&[0x82, 127, 0xff, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn pushpin_items_carry_one_sse_event() {
        let body = pushpin_publish_body("bench", br#"{"t":12,"pad":"x"}"#);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["items"][0]["channel"], "bench");
        let content = v["items"][0]["formats"]["http-stream"]["content"].as_str().unwrap();
        assert_eq!(content, "data: {\"t\":12,\"pad\":\"x\"}\n\n");
        let mut sink = Sink::default();
        let mut st = SseState::default();
        assert_eq!(sse_feed(&mut st, content.as_bytes(), &mut sink), content.len());
        assert_eq!(sink.received, 1);
        assert_eq!(delivery_rate(1000, 1_000_000, 1_500_000), ("500.0".into(), "2000".into()));
        assert_eq!(delivery_rate(0, 1, 2).1, "n/a");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&[7], 99.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn shares_and_memory_arithmetic() {
        assert_eq!(split(10, 3), vec![4, 3, 3]);
        assert_eq!(split(2, 4), vec![1, 1, 0, 0]);
        assert_eq!(per_conn(1000, 11_000, 10_000), 1024);
        assert_eq!(per_conn(1000, 900, 100), -1024);
        assert_eq!(kb_field("Name:\tx\nVmRSS:\t  1234 kB\n", "VmRSS:"), Some(1234));
        assert_eq!(publish_body(1_712_345_678_901_234).len(), PUBLISH_BODY_LEN);
    }

    #[test]
    fn publish_arguments_and_bodies() {
        let o = parse_publish_args(&args("--target 127.0.0.1:80 --topic bench --conns 8 --seconds=3 --size 64"))
            .unwrap()
            .unwrap();
        assert_eq!((o.conns, o.duration, o.size, o.topic.as_str()), (8, Duration::from_secs(3), 64, "bench"));
        assert_eq!(
            parse_publish_args(&args("--target 127.0.0.1:80 --topic t --conns 1 --seconds 1")).unwrap().unwrap().size,
            200
        );
        for bad in [
            "--target 127.0.0.1:80 --topic t --conns 0 --seconds 1",
            "--target 127.0.0.1:80 --topic t --conns 1",
            "--target 127.0.0.1:80 --topic a?b --conns 1 --seconds 1",
            "--target 127.0.0.1:80 --topic t --conns 1 --seconds 1 --size 8",
            "--target 127.0.0.1:80 --topic t --conns 1 --seconds 1 --path /x",
            "--target 127.0.0.1:80 --topic t --topic u --conns 1 --seconds 1",
        ] {
            assert!(parse_publish_args(&args(bad)).is_err(), "{bad}");
        }
        assert!(parse_publish_args(&args("--help")).unwrap().is_none());
        for size in [32, 200, 4096] {
            let body = sized_publish_body(1_712_345_678_901_234, size);
            assert_eq!(body.len(), size);
            assert_eq!(find_t(&body), Some(1_712_345_678_901_234));
        }
    }

    #[test]
    fn arguments() {
        let o = parse_args(args("idle --target 127.0.0.1:80 --path /events?topics=a --conns 45000")).unwrap().unwrap();
        assert_eq!(o.sources.len(), 4);
        assert_eq!(o.sources[3], Ipv4Addr::new(127, 0, 0, 4));
        let o = parse_args(args(
            "fanout --target=127.0.0.1:80 --path /ws --ws --conns 3 --events 2 --interval-ms 5 \
             --publish-path /publish/bench --sources 127.0.0.9",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(o.transport, Transport::Ws);
        assert_eq!(o.sources, vec![Ipv4Addr::new(127, 0, 0, 9)]);
        let worker = worker_args(&o, 2, 1, 250);
        let again = parse_args(worker).unwrap().unwrap();
        assert_eq!((again.conns, again.worker_offset), (2, Some(1)));
        assert!(parse_args(args("idle --target 127.0.0.1:80 --path /x")).is_err());
        assert!(parse_args(args("idle --target 127.0.0.1:80 --path /x --conns 1 --bogus 1")).is_err());
        assert!(parse_args(args("idle --target 127.0.0.1:80 --path /x --conns 1 --events 1")).is_err());
        assert!(parse_args(args("idle --target 127.0.0.1:80 --path /x --conns 1 --pushpin-channel c")).is_err());
        assert!(parse_args(args("idle --help")).unwrap().is_none());
    }

    #[test]
    fn several_targets() {
        let o = parse_args(args(
            "fanout --target 127.0.0.1:81 --target 127.0.0.1:82 --path /e --conns 4 --events 1 \
             --interval-ms 0 --publish-path /p",
        ))
        .unwrap()
        .unwrap();
        assert_eq!((o.targets[0].0.as_str(), o.publish_target.as_str()), ("127.0.0.1:81", "127.0.0.1:81"));
        assert_eq!(o.targets.len(), 2);
        let again = parse_args(worker_args(&o, 2, 2, 100)).unwrap().unwrap();
        let ports: Vec<u16> = again.targets.iter().map(|(_, a)| a.port()).collect();
        assert_eq!(ports, vec![81, 82]);
        assert!(subscriber_request(&o, "127.0.0.1:82").contains("Host: 127.0.0.1:82\r\n"));
    }

    #[test]
    fn storm_arguments() {
        let o = parse_args(args(
            "storm --target 127.0.0.1:80 --path /events?topics=b --conns 10 --publish-path /publish/b --rate 20 \
             --seconds 7 --spread-ms 250 --settle 2 --procs 2",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(o.mode, Mode::Storm);
        let want = StormOpts {
            rate: 20.0,
            seconds: Duration::from_secs(7),
            spread: Duration::from_millis(250),
            settle: Duration::from_secs(2),
        };
        assert_eq!(o.storm, want);
        let again = parse_args(worker_args(&o, 5, 5, 100)).unwrap().unwrap();
        assert_eq!((again.mode, again.storm, again.worker_offset), (Mode::Storm, want, Some(5)));
        let d = parse_args(args("storm --target 127.0.0.1:80 --path /e --conns 1 --publish-path /p")).unwrap().unwrap();
        assert_eq!(d.storm, StormOpts::default());
        assert_eq!(d.storm.spread, Duration::from_millis(1000));
        for bad in [
            "storm --target 127.0.0.1:80 --path /e --conns 1",
            "storm --target 127.0.0.1:80 --path /e --conns 1 --publish-path /p --ws",
            "storm --target 127.0.0.1:80 --path /e --conns 1 --publish-path /p --rate 0",
            "storm --target 127.0.0.1:80 --path /e --conns 1 --publish-path /p --events 3",
            "fanout --target 127.0.0.1:80 --path /e --conns 1 --events 1 --interval-ms 0 --publish-path /p --rate 5",
            "idle --target 127.0.0.1:80 --path /e --conns 1 --spread-ms 5",
        ] {
            assert!(parse_args(args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn sse_storm_events_carry_attempts_resets_and_the_last_id() {
        let mut st = SseState::default();
        let mut sink = Sink { storm_events: Some(Vec::new()), ..Sink::default() };
        let input = b": keepalive\n\nid: 7\ndata: {\"t\":5,\"n\":3}\n\nid:1733:0\nevent: reset\ndata: {}\n\n\
                      data: {\"n\":4}\n\nevent: x\n\nid: 9\x00\ndata: {\"n\"";
        let used = sse_feed(&mut st, input, &mut sink);
        let got = sink.storm_events.take().unwrap();
        assert_eq!(
            got,
            vec![
                StormEvent { n: Some(3), reset: false },
                StormEvent { n: None, reset: true },
                StormEvent { n: Some(4), reset: false }
            ]
        );
        // The id persists across events without one; one with NUL is ignored.
        assert_eq!(st.id.as_deref(), Some("1733:0"));
        assert_eq!(&input[used..], b"data: {\"n\"");
        assert_eq!(sink.received, 1, "only events with a publish time count as fan-out deliveries");
        assert_eq!(field_value(b"id", b"id"), Some(&b""[..]));
        assert_eq!(field_value(b"idx: 1", b"id"), None);
        assert_eq!(field_value(b"id:  2", b"id"), Some(&b" 2"[..]));
    }

    #[test]
    fn storm_requests_bodies_and_backoff() {
        let req = "GET /e HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(with_last_event_id(req, None), req);
        assert_eq!(with_last_event_id(req, Some("17")), "GET /e HTTP/1.1\r\nHost: h\r\nLast-Event-ID: 17\r\n\r\n");
        let body = storm_body(1_712_345_678_901_234, 42);
        assert_eq!(body.len(), PUBLISH_BODY_LEN);
        assert_eq!((find_t(&body), find_number(&body, b"\"n\":")), (Some(1_712_345_678_901_234), Some(42)));
        for r in [0, 1, 99, 12345, u64::MAX] {
            let first = retry_delay(1, r);
            assert!((Duration::from_millis(50)..Duration::from_millis(150)).contains(&first), "{first:?}");
            let late = retry_delay(30, r);
            assert!((Duration::from_millis(250)..Duration::from_millis(750)).contains(&late), "{late:?}");
        }
    }

    #[test]
    fn storm_accounting_counts_loss_duplicates_and_resumes() {
        let mut st = StormShard::new(2, Duration::from_millis(1000));
        st.live = true;
        let ev = |n| StormEvent { n: Some(n), reset: false };
        st.delivered(0, [ev(1), ev(2)].into_iter(), Some("2"));
        st.delivered(1, [ev(1)].into_iter(), Some("1"));
        st.ended(0, true, 7);
        assert!(st.subs[0].reconnect_at.is_some() && st.subs[0].disconnected);
        st.ended(0, false, 7);
        assert_eq!((st.stats.disconnected, st.stats.refused, st.subs[0].refusals), (1, 1, 1));
        st.reconnected(0);
        assert!(st.subs[0].awaiting_resume && st.stats.first_reconnect_us > 0);
        // The replay repeats 2 (a duplicate) and brings 3; the reset counts apart.
        st.delivered(0, [ev(2), ev(3), StormEvent { n: None, reset: true }].into_iter(), Some("3"));
        assert!(!st.subs[0].awaiting_resume && st.stats.last_resume_us >= st.stats.first_reconnect_us);
        assert_eq!((st.stats.duplicates, st.stats.resets, st.subs[0].last_id.as_deref()), (1, 1, Some("3")));
        assert_eq!(st.stats.counts, vec![0, 2, 1, 1]);
        // Subscriber 1 missed 2 and 3: two lost; attempt 4 was never acknowledged.
        let mut all = StormStats::from_line(&st.stats.to_line()).unwrap();
        assert_eq!(all, st.stats);
        all.merge(&StormStats { counts: vec![0, 0, 0, 0, 1], first_reconnect_us: 1, ..StormStats::default() });
        assert_eq!(all.first_reconnect_us, 1);
        assert_eq!(storm_loss(&all.counts, &[1, 2, 3], 2), (2, 1));
        assert_eq!(storm_loss(&[], &[1], 3), (3, 0));
        assert_eq!(StormStats::from_line("storm counts="), Some(StormStats::default()));
        assert_eq!(StormStats::from_line("lat 1 2"), None);
    }
}
