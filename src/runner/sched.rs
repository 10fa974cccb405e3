//! Which deploy run starts when: per-hook concurrency policies and a global cap, as a pure
//! state machine over run ids. The runner asks it on every delivery and every finished run;
//! processes, pipes and clocks live elsewhere.
//!
//! - `coalesce` (default): one run at a time per hook; deliveries arriving meanwhile collapse into
//!   one follow-up run that carries the newest payload (the runner swaps it in).
//! - `queue`: every delivery runs, one at a time, in order, from a bounded queue.
//! - `parallel`: up to `max` at once, the rest queued (bounded).
//!
//! Accounting: every submitted delivery is started, queued or coalesced into a queued run, or
//! refused before it is acknowledged — never dropped after.

use std::collections::{HashMap, VecDeque};

/// A run's identifier.
pub type RunId = u64;

/// A hook's concurrency policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One at a time; pending deliveries merge into one follow-up run.
    Coalesce,
    /// One at a time, every delivery in order; at most `max_queued` waiting.
    Queue {
        /// Waiting runs allowed.
        max_queued: usize,
    },
    /// Up to `max` at once; at most `max_queued` waiting.
    Parallel {
        /// Concurrent runs allowed.
        max: usize,
        /// Waiting runs allowed.
        max_queued: usize,
    },
}

impl Mode {
    /// Parses the config spelling (`coalesce`, `queue`, `parallel`).
    pub fn parse(s: &str, max_parallel: usize, max_queued: usize) -> Option<Mode> {
        match s {
            "coalesce" => Some(Mode::Coalesce),
            "queue" => Some(Mode::Queue { max_queued }),
            "parallel" => Some(Mode::Parallel { max: max_parallel.max(1), max_queued }),
            _ => None,
        }
    }

    fn max_running(self) -> usize {
        match self {
            Mode::Coalesce | Mode::Queue { .. } => 1,
            Mode::Parallel { max, .. } => max,
        }
    }
}

/// What happened to a submitted delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submit {
    /// Start this (new) run now.
    Start(RunId),
    /// The new run waits.
    Queued(RunId),
    /// No new run: the delivery joins this waiting run (which should take its payload).
    Coalesced(RunId),
    /// Refused: the hook's queue is full (answer 503 before acknowledging).
    Full,
}

#[derive(Debug, Default)]
struct HookState {
    running: Vec<RunId>,
    waiting: VecDeque<RunId>,
}

/// The scheduler.
#[derive(Debug)]
pub struct Scheduler {
    hooks: HashMap<String, HookState>,
    /// Runs allowed at once over all hooks.
    global_max: usize,
    running_total: usize,
    /// Hooks that had a run ready while the global cap was reached, in order.
    blocked: VecDeque<String>,
}

impl Scheduler {
    /// A scheduler allowing `global_max` runs at once.
    pub fn new(global_max: usize) -> Scheduler {
        Scheduler { hooks: HashMap::new(), global_max: global_max.max(1), running_total: 0, blocked: VecDeque::new() }
    }

    /// A delivery for `hook` under `mode`; `next_id` is the id a new run would get.
    pub fn submit(&mut self, hook: &str, mode: Mode, next_id: RunId) -> Submit {
        let global_free = self.running_total < self.global_max;
        let h = self.hooks.entry(hook.to_string()).or_default();
        if let Mode::Coalesce = mode {
            if let Some(&w) = h.waiting.back() {
                return Submit::Coalesced(w);
            }
        }
        if h.running.len() < mode.max_running() && h.waiting.is_empty() && global_free {
            h.running.push(next_id);
            self.running_total += 1;
            return Submit::Start(next_id);
        }
        let max_queued = match mode {
            Mode::Coalesce => 1,
            Mode::Queue { max_queued } | Mode::Parallel { max_queued, .. } => max_queued,
        };
        if h.waiting.len() >= max_queued {
            return Submit::Full;
        }
        h.waiting.push_back(next_id);
        if h.running.len() < mode.max_running() && !self.blocked.iter().any(|b| b == hook) {
            // Only the global cap holds it back.
            self.blocked.push_back(hook.to_string());
        }
        Submit::Queued(next_id)
    }

    /// A run of `hook` ended (or a waiting one was cancelled); returns the runs to start now,
    /// each with its hook. `mode_of` gives each hook's policy.
    pub fn finished(&mut self, hook: &str, run: RunId, mode_of: impl Fn(&str) -> Mode) -> Vec<(String, RunId)> {
        if let Some(h) = self.hooks.get_mut(hook) {
            if let Some(i) = h.running.iter().position(|&r| r == run) {
                h.running.remove(i);
                self.running_total -= 1;
                if !self.blocked.iter().any(|b| b == hook) && !h.waiting.is_empty() {
                    self.blocked.push_front(hook.to_string());
                }
            } else {
                h.waiting.retain(|&r| r != run);
            }
        }
        let mut start = Vec::new();
        let mut still_blocked = VecDeque::new();
        while let Some(name) = self.blocked.pop_front() {
            let mode = mode_of(&name);
            let Some(h) = self.hooks.get_mut(&name) else { continue };
            while self.running_total < self.global_max && h.running.len() < mode.max_running() {
                let Some(next) = h.waiting.pop_front() else { break };
                h.running.push(next);
                self.running_total += 1;
                start.push((name.clone(), next));
            }
            if !h.waiting.is_empty() && h.running.len() < mode.max_running() {
                still_blocked.push_back(name);
            }
        }
        self.blocked = still_blocked;
        self.hooks.retain(|_, h| !h.running.is_empty() || !h.waiting.is_empty());
        start
    }

    /// Changes the cap on runs at once (runs above a lowered cap finish normally).
    pub fn set_global_max(&mut self, global_max: usize) {
        self.global_max = global_max.max(1);
    }

    /// Runs going on now, over all hooks.
    pub fn running(&self) -> usize {
        self.running_total
    }

    /// Runs waiting, over all hooks.
    pub fn waiting(&self) -> usize {
        self.hooks.values().map(|h| h.waiting.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coalesce(_: &str) -> Mode {
        Mode::Coalesce
    }

    #[test]
    fn coalesce_runs_one_and_merges_the_rest_into_one_follow_up() {
        let mut s = Scheduler::new(8);
        assert_eq!(s.submit("h", Mode::Coalesce, 1), Submit::Start(1));
        assert_eq!(s.submit("h", Mode::Coalesce, 2), Submit::Queued(2));
        for id in 3..50 {
            assert_eq!(s.submit("h", Mode::Coalesce, id), Submit::Coalesced(2));
        }
        assert_eq!(s.finished("h", 1, coalesce), vec![("h".to_string(), 2)]);
        assert_eq!(s.submit("h", Mode::Coalesce, 50), Submit::Queued(50));
        assert_eq!(s.finished("h", 2, coalesce), vec![("h".to_string(), 50)]);
        assert!(s.finished("h", 50, coalesce).is_empty());
        assert_eq!((s.running(), s.waiting()), (0, 0));
    }

    #[test]
    fn queue_keeps_order_and_bounds() {
        let m = Mode::Queue { max_queued: 3 };
        let mut s = Scheduler::new(8);
        assert_eq!(s.submit("q", m, 1), Submit::Start(1));
        for id in 2..5 {
            assert_eq!(s.submit("q", m, id), Submit::Queued(id));
        }
        assert_eq!(s.submit("q", m, 5), Submit::Full);
        let order: Vec<RunId> = (1..4).flat_map(|r| s.finished("q", r, |_| m)).map(|(_, id)| id).collect();
        assert_eq!(order, [2, 3, 4]);
    }

    #[test]
    fn parallel_up_to_max_then_queue() {
        let m = Mode::Parallel { max: 2, max_queued: 10 };
        let mut s = Scheduler::new(8);
        assert_eq!(s.submit("p", m, 1), Submit::Start(1));
        assert_eq!(s.submit("p", m, 2), Submit::Start(2));
        assert_eq!(s.submit("p", m, 3), Submit::Queued(3));
        assert_eq!(s.finished("p", 2, |_| m), vec![("p".to_string(), 3)]);
        assert_eq!(s.running(), 2);
    }

    #[test]
    fn global_cap_holds_runs_across_hooks_in_order() {
        let mut s = Scheduler::new(1);
        assert_eq!(s.submit("a", Mode::Coalesce, 1), Submit::Start(1));
        assert_eq!(s.submit("b", Mode::Coalesce, 2), Submit::Queued(2));
        assert_eq!(s.submit("c", Mode::Coalesce, 3), Submit::Queued(3));
        assert_eq!(s.finished("a", 1, coalesce), vec![("b".to_string(), 2)]);
        assert_eq!(s.finished("b", 2, coalesce), vec![("c".to_string(), 3)]);
        assert!(s.finished("c", 3, coalesce).is_empty());
    }

    #[test]
    fn cancelling_a_waiting_run_frees_its_place() {
        let m = Mode::Queue { max_queued: 1 };
        let mut s = Scheduler::new(8);
        s.submit("q", m, 1);
        assert_eq!(s.submit("q", m, 2), Submit::Queued(2));
        assert_eq!(s.submit("q", m, 3), Submit::Full);
        assert!(s.finished("q", 2, |_| m).is_empty());
        assert_eq!(s.submit("q", m, 4), Submit::Queued(4));
    }
}
