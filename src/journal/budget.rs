//! How much deploy-run output goes into the journal: the first `per_run` bytes of each run, and
//! at most `per_sec` bytes a second over all runs. Pure bookkeeping: the caller passes the time.
//!
//! Why: run output is not acknowledged work (nobody was told "200" for a line of `yes`), but it
//! shares the journal with what is: three seconds of `yes` wrote 135–300 MiB, after which
//! retention deleted the oldest segments holding acknowledged publishes and deliveries, and
//! every publish's fsync waited behind it. Subscribers still get every line live (the runner's
//! own limits apply there); only the durable copy is bounded.
//!
//! Where lines were left out, the caller journals a marker (a [`Gap`]) in their place, so that
//! after a restart the run's history says so instead of having a silent hole: before the next
//! line of that run that is kept, or when the run ends.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Lines of one run left out of the journal since the last marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The run.
    pub run: u64,
    /// Lines left out.
    pub lines: u64,
    /// Their journal bytes.
    pub bytes: u64,
    /// The limit that left the first of them out (its config key).
    pub reason: &'static str,
}

/// What to do with one line.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Journal it, after the marker for the lines left out before it, if any.
    Keep(Option<Gap>),
    /// Leave it out of the journal (it is counted for the next marker).
    Drop,
}

#[derive(Debug, Default)]
struct RunUse {
    kept: u64,
    /// A line did not fit `per_run`: everything after it is left out too, so that the journal
    /// holds a prefix of the output, not a sample.
    full: bool,
    gap: Option<Gap>,
}

/// The budget; one per journal.
#[derive(Debug)]
pub struct OutputBudget {
    per_run: u64,
    per_sec: u64,
    window: Option<Instant>,
    used: u64,
    runs: HashMap<u64, RunUse>,
}

/// Config key named in a marker when a run's cap left lines out.
pub const PER_RUN_KEY: &str = "journal.run_output_bytes";
/// Config key named in a marker when the per-second budget left lines out.
pub const PER_SEC_KEY: &str = "journal.run_output_bytes_per_sec";

impl OutputBudget {
    /// `per_run` bytes of each run's output, `per_sec` bytes a second over all runs.
    pub fn new(per_run: u64, per_sec: u64) -> OutputBudget {
        OutputBudget { per_run, per_sec, window: None, used: 0, runs: HashMap::new() }
    }

    /// Whether a line of `bytes` journal bytes from `run` goes into the journal at `now`.
    pub fn admit(&mut self, run: u64, bytes: u64, now: Instant) -> Admit {
        if self.window.is_none_or(|w| now.duration_since(w) >= Duration::from_secs(1)) {
            self.window = Some(now);
            self.used = 0;
        }
        let u = self.runs.entry(run).or_default();
        let reason = if u.full || u.kept + bytes > self.per_run {
            u.full = true;
            PER_RUN_KEY
        } else if self.used + bytes > self.per_sec {
            PER_SEC_KEY
        } else {
            u.kept += bytes;
            self.used += bytes;
            return Admit::Keep(u.gap.take());
        };
        let g = u.gap.get_or_insert(Gap { run, lines: 0, bytes: 0, reason });
        g.lines += 1;
        g.bytes += bytes;
        Admit::Drop
    }

    /// The run ended: forgets it and returns the marker still owed for it, if any.
    pub fn finish(&mut self, run: u64) -> Option<Gap> {
        self.runs.remove(&run).and_then(|u| u.gap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_run_cap_keeps_a_prefix_and_owes_one_marker() {
        let t = Instant::now();
        let mut b = OutputBudget::new(100, 1 << 20);
        assert_eq!(b.admit(1, 60, t), Admit::Keep(None));
        assert_eq!(b.admit(1, 50, t), Admit::Drop);
        // Smaller lines that would fit are left out too: the journal keeps a prefix.
        assert_eq!(b.admit(1, 10, t), Admit::Drop);
        // Another run has its own cap.
        assert_eq!(b.admit(2, 100, t), Admit::Keep(None));
        assert_eq!(b.finish(1), Some(Gap { run: 1, lines: 2, bytes: 60, reason: PER_RUN_KEY }));
        assert_eq!(b.finish(1), None);
        assert_eq!(b.finish(2), None);
    }

    #[test]
    fn per_second_budget_is_shared_and_refills() {
        let t = Instant::now();
        let mut b = OutputBudget::new(1 << 20, 100);
        assert_eq!(b.admit(1, 70, t), Admit::Keep(None));
        assert_eq!(b.admit(2, 40, t), Admit::Drop);
        // Still room in this second for a smaller line, after the marker for the one left out.
        let gap2 = Gap { run: 2, lines: 1, bytes: 40, reason: PER_SEC_KEY };
        assert_eq!(b.admit(2, 30, t + Duration::from_millis(500)), Admit::Keep(Some(gap2)));
        assert_eq!(b.admit(1, 1, t + Duration::from_millis(999)), Admit::Drop);
        // A new second: the marker for run 1's left-out line comes with its next kept one.
        let gap = Gap { run: 1, lines: 1, bytes: 1, reason: PER_SEC_KEY };
        assert_eq!(b.admit(1, 90, t + Duration::from_secs(1)), Admit::Keep(Some(gap)));
        assert_eq!(b.admit(2, 10, t + Duration::from_secs(1)), Admit::Keep(None));
    }

    #[test]
    fn zero_keeps_run_output_out_of_the_journal() {
        let t = Instant::now();
        let mut b = OutputBudget::new(0, 1 << 20);
        assert_eq!(b.admit(1, 1, t), Admit::Drop);
        assert_eq!(b.finish(1).map(|g| g.lines), Some(1));
        let mut b = OutputBudget::new(1 << 20, 0);
        assert_eq!(b.admit(1, 1, t), Admit::Drop);
    }
}
