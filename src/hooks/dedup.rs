//! Idempotency: delivery ids seen recently, per hook, so a provider's retry of a delivery that
//! was already accepted is answered `200 {"duplicate":true}` and triggers nothing twice.
//! Bounded by age and by count; the oldest entries go first.
//!
//! Each key is one allocation shared by the map and the age queue: at the count cap the window
//! holds 100 000 keys, and ids are at most `providers::MAX_ID_LEN` bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `hook id` + `\n` + `delivery id`: one string, unambiguous because a delivery id (printable
/// ASCII, see `providers::valid_id`) never holds a line break.
type Key = Arc<str>;

fn key(hook: &str, id: &str) -> String {
    let mut k = String::with_capacity(hook.len() + 1 + id.len());
    k.push_str(hook);
    k.push('\n');
    k.push_str(id);
    k
}

/// A bounded window of (hook, delivery id) pairs.
#[derive(Debug)]
pub struct DedupWindow {
    seen: HashMap<Key, Instant>,
    order: VecDeque<(Key, Instant)>,
    max_age: Duration,
    max_entries: usize,
}

impl DedupWindow {
    /// A window remembering ids for `max_age`, at most `max_entries` of them.
    pub fn new(max_age: Duration, max_entries: usize) -> DedupWindow {
        DedupWindow { seen: HashMap::new(), order: VecDeque::new(), max_age, max_entries: max_entries.max(1) }
    }

    fn expire(&mut self, now: Instant) {
        while let Some((key, at)) = self.order.front() {
            if now.duration_since(*at) < self.max_age && self.order.len() <= self.max_entries {
                break;
            }
            // Only forget the key if this queue entry is the one that recorded it.
            if self.seen.get(key) == Some(at) {
                self.seen.remove(&**key);
            }
            self.order.pop_front();
        }
    }

    /// Changes how long ids are remembered.
    pub fn set_max_age(&mut self, max_age: Duration) {
        self.max_age = max_age;
    }

    /// Whether `id` was already seen for `hook` within the window.
    pub fn contains(&mut self, hook: &str, id: &str, now: Instant) -> bool {
        self.expire(now);
        self.seen.contains_key(key(hook, id).as_str())
    }

    /// Records `id` for `hook` (after the delivery was accepted).
    pub fn insert(&mut self, hook: &str, id: &str, now: Instant) {
        let key: Key = key(hook, id).into();
        self.seen.insert(Arc::clone(&key), now);
        self.order.push_back((key, now));
        self.expire(now);
    }

    /// Ids currently remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_hook_within_age_and_count() {
        let t0 = Instant::now();
        let mut w = DedupWindow::new(Duration::from_secs(60), 3);
        assert!(!w.contains("gh", "a", t0));
        w.insert("gh", "a", t0);
        assert!(w.contains("gh", "a", t0));
        assert!(!w.contains("other", "a", t0), "per hook");
        assert!(!w.contains("gh", "a", t0 + Duration::from_secs(61)), "aged out");
        for id in ["b", "c", "d", "e"] {
            w.insert("gh", id, t0 + Duration::from_secs(70));
        }
        assert_eq!(w.len(), 3);
        assert!(!w.contains("gh", "b", t0 + Duration::from_secs(70)), "oldest dropped at the cap");
        assert!(w.contains("gh", "e", t0 + Duration::from_secs(70)));
    }

    /// Regression (issue 12, item 7): each key was kept twice, once in the map and once in the
    /// age queue.
    #[test]
    fn a_key_is_stored_once() {
        let t0 = Instant::now();
        let mut w = DedupWindow::new(Duration::from_secs(60), 10);
        w.insert("gh", "a", t0);
        let (k, _) = w.seen.iter().next().unwrap();
        assert!(Arc::ptr_eq(k, &w.order[0].0), "the map and the queue share one allocation");
        assert_eq!(Arc::strong_count(k), 2);
    }
}
