//! Journal throughput under each fsync policy, with plain `std::time` (no criterion).
//!
//! For each policy it measures, on a fresh directory on the build disk (`CARGO_TARGET_TMPDIR`,
//! or `HOOKCAST_BENCH_DIR`), with 200-byte payloads (228-byte frames):
//! - **pipelined**: `append` N records as fast as possible (the loop's cost per append), then
//!   wait until `durable_seq` reaches N (durable-acked throughput with group commit);
//! - **window W**: at most W appends not yet durable, as W concurrent webhook senders each
//!   waiting for its 202 would be;
//! - **one at a time**: append, wait for its durability, repeat (the latency floor).
//!
//! Waiting is done the way the event loop does it: `mio::Poll` woken by the journal's `Waker`.
//!
//! ```sh
//! cargo bench --bench journal               # HOOKCAST_BENCH_N=200000 by default
//! ```

use hookcast::journal::{Fsync, Journal, JournalConfig, Kind, Record};
use mio::{Events, Poll, Token, Waker};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAKE: Token = Token(0);

struct Bench {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    root: PathBuf,
    runs: usize,
}

impl Bench {
    fn open(&mut self, fsync: Fsync) -> Journal {
        // The previous run's files go first, so their writeback does not land in this run.
        let _ = std::fs::remove_dir_all(self.root.join(format!("run-{}", self.runs)));
        self.runs += 1;
        let dir = self.root.join(format!("run-{}", self.runs));
        let cfg = JournalConfig { fsync, ..JournalConfig::new(&dir) };
        let (j, _) = Journal::open(cfg, Arc::clone(&self.waker), &mut |_| {}).expect("open journal");
        j
    }

    /// Blocks in `poll` until `durable_seq() >= seq`.
    fn wait(&mut self, j: &Journal, seq: u64) {
        while j.durable_seq() < seq {
            self.poll.poll(&mut self.events, Some(Duration::from_secs(10))).expect("poll");
            assert!(j.stats().failed.is_none(), "journal failed: {:?}", j.stats().failed);
        }
    }
}

fn record(i: u64) -> Record {
    Record { kind: Kind::Event, id: i, time_ms: 1_795_340_470_123, topic: "bench/events".into(), data: vec![b'x'; 200] }
}

fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let n: u64 = std::env::var("HOOKCAST_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    let root = std::env::var_os("HOOKCAST_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")))
        .join(format!("journal-bench-{}", std::process::id()));
    let poll = Poll::new().expect("poll");
    let waker = Arc::new(Waker::new(poll.registry(), WAKE).expect("waker"));
    let mut b = Bench { poll, events: Events::with_capacity(16), waker, root: root.clone(), runs: 0 };
    println!("journal bench: {n} records of 200-byte data (228-byte frames) in {}", root.display());

    for (name, fsync) in
        [("always", Fsync::Always), ("batch(10ms)", Fsync::Batch(Duration::from_millis(10))), ("never", Fsync::Never)]
    {
        // Pipelined.
        let mut j = b.open(fsync);
        let start = Instant::now();
        for i in 1..=n {
            j.append_owned(record(i)).expect("append");
        }
        let appended = start.elapsed();
        b.wait(&j, n);
        let durable = start.elapsed();
        let fsyncs = j.stats().fsyncs;
        j.close();
        println!(
            "{name:>12}  pipelined: append {:>10.0}/s   durable-acked {:>9.0}/s   ({fsyncs} fsyncs, {:.0} records each)",
            per_sec(n, appended),
            per_sec(n, durable),
            n as f64 / fsyncs.max(1) as f64
        );

        // A window of W appends in flight.
        for w in [64u64, 1] {
            let m = if w == 1 { (n / 100).clamp(200, 2000) } else { n / 10 };
            let mut j = b.open(fsync);
            let start = Instant::now();
            let mut seq = 0;
            while seq < m {
                while seq < m && seq - j.durable_seq() < w {
                    seq = j.append_owned(record(seq + 1)).expect("append");
                }
                b.wait(&j, seq + 1 - w.min(seq));
            }
            b.wait(&j, m);
            let took = start.elapsed();
            let fsyncs = j.stats().fsyncs;
            j.close();
            let label = if w == 1 { "one at a time".to_string() } else { format!("window {w}") };
            println!(
                "{name:>12}  {label:>13}: durable-acked {:>9.0}/s   mean ack {:>8.1} µs   ({m} records, {fsyncs} fsyncs)",
                per_sec(m, took),
                took.as_secs_f64() * 1e6 / m as f64 * w.min(m) as f64,
            );
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}
