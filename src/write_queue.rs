//! The connections whose output waits to be written, in the order it was queued, and the events
//! whose fan-out is not fully written yet.
//!
//! A fan-out queues an event on every subscriber at once (cheap: a reference each) but writes the
//! queues a slice at a time, with a look at the sockets in between. An event that arrives while a
//! slice is being written is queued behind the ones already waiting, so every subscriber not yet
//! reached writes both in one system call: when events come faster than one write per subscriber
//! per event can keep up with, writes carry several events; when they are sparse, an event still
//! leaves at once, since nothing is waiting before it. Answers to requests (a publish's 202, a
//! held webhook's answer) take the urgent lane and are written in the turn they are made.

use std::collections::VecDeque;
use std::time::Instant;

/// Tokens of connections with output to write.
#[derive(Debug, Default)]
pub struct WriteQueue {
    /// Written whole every turn: answers to requests.
    urgent: Vec<usize>,
    /// Written in order, a slice per turn: fan-outs, keep-alives, pings.
    fanout: VecDeque<usize>,
    /// How many tokens ever entered `fanout`, and how many ever left it: positions in the lane.
    pushed: u64,
    popped: u64,
    /// Events fanned out, each with its birth and the lane position that, once passed, means
    /// every subscriber queued for it has been written.
    marks: VecDeque<(Instant, u64)>,
}

impl WriteQueue {
    /// Queues a connection's answer to be written this turn.
    pub fn push_urgent(&mut self, t: usize) {
        self.urgent.push(t);
    }

    /// Queues a connection behind everything the fan-out lane holds.
    pub fn push(&mut self, t: usize) {
        self.fanout.push_back(t);
        self.pushed += 1;
    }

    /// The next answer to write (in no particular order: they all go this turn).
    pub fn pop_urgent(&mut self) -> Option<usize> {
        self.urgent.pop()
    }

    /// The connection at the head of the fan-out lane.
    pub fn pop(&mut self) -> Option<usize> {
        let t = self.fanout.pop_front()?;
        self.popped += 1;
        Some(t)
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.urgent.is_empty() && self.fanout.is_empty()
    }

    /// Notes an event born at `born` whose subscribers were all queued by now.
    pub fn mark(&mut self, born: Instant) {
        self.marks.push_back((born, self.pushed));
    }

    /// The births of the events now written to all their subscribers, oldest first.
    pub fn written(&mut self) -> impl Iterator<Item = Instant> + '_ {
        let through = self.popped;
        let done = self.marks.iter().take_while(|(_, at)| *at <= through).count();
        self.marks.drain(..done).map(|(born, _)| born)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn answers_and_the_lane_are_apart_and_the_lane_keeps_its_order() {
        let mut q = WriteQueue::default();
        q.push(1);
        q.push(2);
        q.push_urgent(9);
        assert_eq!([q.pop_urgent(), q.pop_urgent()], [Some(9), None]);
        assert!(!q.is_empty());
        assert_eq!([q.pop(), q.pop(), q.pop()], [Some(1), Some(2), None]);
        assert!(q.is_empty());
    }

    #[test]
    fn an_event_is_written_once_the_lane_passes_everyone_queued_before_its_mark() {
        let mut q = WriteQueue::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_millis(1);
        q.push(1);
        q.push(2);
        q.mark(t0);
        // A second event: subscriber 1 and 2 are still queued (they write both at once); a third
        // subscriber joins the lane behind them.
        q.push(3);
        q.mark(t1);
        assert_eq!(q.pop(), Some(1));
        assert_eq!(q.written().count(), 0);
        assert_eq!(q.pop(), Some(2));
        assert_eq!(q.written().collect::<Vec<_>>(), [t0]);
        assert_eq!(q.pop(), Some(3));
        assert_eq!(q.written().collect::<Vec<_>>(), [t1]);
        assert_eq!(q.written().count(), 0);
    }

    #[test]
    fn an_event_with_nobody_new_to_queue_is_written_with_those_before_it() {
        let mut q = WriteQueue::default();
        let t0 = Instant::now();
        q.mark(t0);
        assert_eq!(q.written().collect::<Vec<_>>(), [t0], "nothing was waiting");
        q.push(4);
        q.mark(t0);
        q.mark(t0 + Duration::from_millis(1));
        assert_eq!(q.written().count(), 0);
        q.pop();
        assert_eq!(q.written().count(), 2);
    }
}
