//! The hub: topics, events, history and who is subscribed to what.
//!
//! An event gets the next global id and is stored once (`Rc<Event>`); each wire format (SSE,
//! SSE-with-envelope, JSON, WebSocket frame) is encoded on first use and cached in the event
//! while it is live, so a fan-out to ten thousand subscribers queues ten thousand pointers to one
//! buffer. Once the loop has fanned it out the event is retired: the cache is emptied and a
//! replay from history encodes for itself, so what history holds is what its byte limits count
//! (four cached encodings, JSON escaping included, had made 16 MiB of history 180 MiB resident).
//!
//! History is kept per topic (bounded by count and bytes) and globally in id order (bounded by
//! bytes and topic count). Replay scans the global order from the first id after the client's
//! cursor, in batches, so a client that is far behind is fed as its socket drains instead of
//! being handed the whole history at once. When anything the client would have seen was evicted
//! the replay says so (`gap`), and the client is told to refetch its state.
//!
//! The hub does no I/O and knows connections only by token.

use crate::topic;
use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

/// Bytes counted for an event beyond its data, topic and type (the struct and its pointers).
const EVENT_OVERHEAD: usize = 160;

/// One published event, immutable once made; wire encodings are cached beside it while live.
pub struct Event {
    /// Global, strictly increasing id.
    pub id: u64,
    /// Concrete topic.
    pub topic: Rc<str>,
    /// Event type (`message` by default).
    pub kind: Box<str>,
    /// Publish time, milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The payload as text.
    pub data: Box<str>,
    /// Whether `data` is JSON (embedded as a value in envelopes) or text (embedded as a string).
    pub data_is_json: bool,
    /// When this process made (or restored) it, for the delivery latency metric.
    pub born: std::time::Instant,
    /// Not yet retired: encodings are cached to be shared by the fan-out.
    live: Cell<bool>,
    /// Published as its topic's current state (`?retain=1`); set before it is committed.
    retained: Cell<bool>,
    sse: Cell<Option<Rc<[u8]>>>,
    sse_envelope: Cell<Option<Rc<[u8]>>>,
    json: Cell<Option<Rc<[u8]>>>,
    ws: Cell<Option<Rc<[u8]>>>,
}

/// The encodings a subscriber can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// SSE with the raw data.
    Sse,
    /// SSE whose data is the JSON envelope (carries the topic).
    SseEnvelope,
    /// The JSON envelope alone.
    Json,
    /// A WebSocket text frame of the JSON envelope.
    Ws,
}

impl Wire {
    /// The event telling a resuming client that history no longer holds everything after
    /// `since`, so it must refetch its state; the stream is consistent from `resume` on (its id).
    pub fn reset_event(self, since: u64, resume: u64) -> Vec<u8> {
        let data = serde_json::json!({ "reason": "history_gap", "last_event_id": since, "resume_from": resume });
        match self {
            Wire::Sse | Wire::SseEnvelope => {
                let mut out = Vec::new();
                crate::sse::encode_into(&mut out, resume, "reset", &data.to_string());
                out
            }
            Wire::Json => data.to_string().into_bytes(),
            Wire::Ws => {
                let msg = serde_json::json!({ "type": "reset", "last_event_id": since, "resume_from": resume });
                crate::ws::frame::encode_frame(crate::ws::frame::Opcode::Text, msg.to_string().as_bytes())
            }
        }
    }
}

impl std::fmt::Debug for Event {
    // By hand: `Cell` shows its content only when it is `Copy`, and the encodings are noise.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("id", &self.id)
            .field("topic", &self.topic)
            .field("kind", &self.kind)
            .field("time_ms", &self.time_ms)
            .field("data", &self.data)
            .field("data_is_json", &self.data_is_json)
            .field("live", &self.live.get())
            .field("retained", &self.retained.get())
            .finish_non_exhaustive()
    }
}

impl Event {
    /// Makes an event; the id is the hub's to give, so this is crate-private.
    fn new(id: u64, topic: Rc<str>, kind: &str, time_ms: u64, data: String, data_is_json: bool) -> Event {
        Event {
            id,
            topic,
            kind: kind.into(),
            time_ms,
            data: data.into_boxed_str(),
            data_is_json,
            born: std::time::Instant::now(),
            live: Cell::new(true),
            retained: Cell::new(false),
            sse: Cell::new(None),
            sse_envelope: Cell::new(None),
            json: Cell::new(None),
            ws: Cell::new(None),
        }
    }

    /// Whether this event is its topic's state (published with `retain`; empty data clears).
    pub fn retained(&self) -> bool {
        self.retained.get()
    }

    /// Marks a made event as its topic's state: committing it keeps it (see [`Hub::state`]).
    pub fn mark_retained(&self) {
        self.retained.set(true);
    }

    /// Bytes this event is counted for in history limits.
    pub fn cost(&self) -> usize {
        EVENT_OVERHEAD + self.data.len() + self.kind.len() + self.topic.len()
    }

    /// The event as a JSON object (without a trailing newline).
    pub fn envelope(&self) -> String {
        let data = if self.data_is_json {
            self.data.to_string()
        } else {
            serde_json::Value::String(self.data.to_string()).to_string()
        };
        format!(
            r#"{{"id":{},"topic":{},"event":{},"time":"{}","data":{}}}"#,
            self.id,
            serde_json::Value::String(self.topic.to_string()),
            serde_json::Value::String(self.kind.to_string()),
            crate::clock::rfc3339(self.time_ms),
            data
        )
    }

    /// This event in `wire` format: while it is live, encoded on first use and shared by every
    /// later call; once retired, encoded afresh for each caller and not kept.
    pub fn encoded(&self, wire: Wire) -> Rc<[u8]> {
        let cell = match wire {
            Wire::Sse => &self.sse,
            Wire::SseEnvelope => &self.sse_envelope,
            Wire::Json => &self.json,
            Wire::Ws => &self.ws,
        };
        if let Some(bytes) = cell.take() {
            cell.set(Some(bytes.clone()));
            return bytes;
        }
        let mut out = Vec::new();
        match wire {
            Wire::Sse => crate::sse::encode_into(&mut out, self.id, &self.kind, &self.data),
            Wire::SseEnvelope => crate::sse::encode_into(&mut out, self.id, &self.kind, &self.envelope()),
            Wire::Json => out = self.envelope().into_bytes(),
            Wire::Ws => {
                let json = self.envelope();
                crate::ws::frame::encode_header(true, crate::ws::frame::Opcode::Text, json.len() as u64, &mut out);
                out.extend_from_slice(json.as_bytes());
            }
        }
        let bytes: Rc<[u8]> = out.into();
        if self.live.get() {
            cell.set(Some(bytes.clone()));
        }
        bytes
    }

    /// The fan-out is over: drop the cached encodings (queues keep their own references) and
    /// cache none from now on. History counts an event's data, not its encodings, and a replay
    /// of old events is one client's, not a broadcast.
    pub fn retire(&self) {
        self.live.set(false);
        for cell in [&self.sse, &self.sse_envelope, &self.json, &self.ws] {
            cell.set(None);
        }
    }
}

/// A subscriber, as the hub knows it: the connection's token.
pub type SubId = usize;

/// Interned pattern id; a connection keeps these instead of strings.
pub type PatternId = u32;

#[derive(Debug)]
struct PatternEntry {
    text: Box<str>,
    wildcard: bool,
    subs: HashSet<SubId>,
}

#[derive(Debug, Default)]
struct TopicHistory {
    events: VecDeque<Rc<Event>>,
    bytes: usize,
    /// Highest id this topic has lost from its history (0: none).
    evicted_through: u64,
    last_id: u64,
}

/// What a replay batch found.
#[derive(Debug, Default)]
pub struct Replay {
    /// Something the client should have seen is no longer in history.
    pub gap: bool,
    /// Events after the cursor, in id order.
    pub events: Vec<Rc<Event>>,
    /// Whether the batch reached the newest event (the client is caught up).
    pub done: bool,
}

/// Counts for `/metrics` and the status API.
#[derive(Debug, Clone, Copy, Default)]
pub struct HubStats {
    /// Events currently in history.
    pub history_events: usize,
    /// Bytes counted for history.
    pub history_bytes: usize,
    /// Topics with history.
    pub topics: usize,
    /// Distinct subscription patterns in use.
    pub patterns: usize,
    /// Last id given out.
    pub last_id: u64,
    /// Topics with a retained state.
    pub retained_topics: usize,
    /// Bytes counted for retained states.
    pub retained_bytes: usize,
}

/// In-memory history kept for resume.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    /// Events kept per topic.
    pub max_events_per_topic: usize,
    /// Bytes of event data kept per topic.
    pub max_bytes_per_topic: usize,
    /// Bytes of event data kept over all topics.
    pub max_bytes_total: usize,
    /// Topics with history; the least recently published is forgotten beyond it.
    pub max_topics: usize,
}

/// Bounds on retained state (`retain` in the config): past either, the topic whose state is
/// oldest is forgotten.
#[derive(Debug, Clone)]
pub struct RetainConfig {
    /// Topics with a retained event.
    pub max_topics: usize,
    /// Bytes counted for retained events (as history counts them).
    pub max_bytes: usize,
}

impl Default for RetainConfig {
    fn default() -> RetainConfig {
        RetainConfig { max_topics: 10_000, max_bytes: 16 << 20 }
    }
}

/// Topics, history and subscriptions.
#[derive(Debug)]
pub struct Hub {
    cfg: HistoryConfig,
    next_id: u64,
    /// The first id this process gave out; anything below it came from an earlier run.
    first_id: u64,
    all: VecDeque<Rc<Event>>,
    all_bytes: usize,
    topics: HashMap<Rc<str>, TopicHistory>,
    /// Highest id of any topic dropped whole (for gap detection on wildcard replays).
    dropped_topics_through: u64,
    /// Last id put back by `restore` (0: none).
    restored_through: u64,
    /// Ids given out by `make` and not committed yet (they wait for the journal).
    uncommitted: u64,
    /// Highest id ever evicted from any topic: a replay's mark, so later batches of a slow
    /// catch-up notice evictions that happened after the batch before.
    evicted_max: u64,
    /// Ids come from a shared log that this node may lag behind: a cursor past the newest
    /// event here is not a gap, its events are still on their way.
    follows_log: bool,
    pattern_ids: HashMap<Box<str>, PatternId>,
    patterns: Vec<Option<PatternEntry>>,
    free_patterns: Vec<PatternId>,
    wildcards: Vec<PatternId>,
    retain_cfg: RetainConfig,
    /// Each topic's current state: its last retained event (history may have dropped it).
    retained: HashMap<Rc<str>, Rc<Event>>,
    retained_bytes: usize,
}

impl Hub {
    /// A hub whose ids start at `first_id` (the clock in microseconds when there is no journal,
    /// so ids keep increasing across restarts).
    pub fn new(cfg: HistoryConfig, first_id: u64) -> Hub {
        let first_id = first_id.max(1);
        Hub {
            cfg,
            next_id: first_id,
            first_id,
            all: VecDeque::new(),
            all_bytes: 0,
            topics: HashMap::new(),
            dropped_topics_through: 0,
            evicted_max: 0,
            restored_through: 0,
            uncommitted: 0,
            follows_log: false,
            pattern_ids: HashMap::new(),
            patterns: Vec::new(),
            free_patterns: Vec::new(),
            wildcards: Vec::new(),
            retain_cfg: RetainConfig::default(),
            retained: HashMap::new(),
            retained_bytes: 0,
        }
    }

    /// New bounds on retained state; they apply at once (the oldest states go).
    pub fn set_retain_config(&mut self, cfg: RetainConfig) {
        self.retain_cfg = cfg;
        self.trim_retained();
    }

    /// `topic`'s current state: its last retained event, unless that cleared it.
    pub fn state(&self, topic: &str) -> Option<&Rc<Event>> {
        self.retained.get(topic)
    }

    /// The states of the topics matching any of `patterns`, up to id `through`, in id order:
    /// what a subscriber asking for state gets before events after `through`.
    pub fn states_matching(&self, patterns: &[&str], through: u64) -> Vec<Rc<Event>> {
        let mut out: Vec<Rc<Event>> = self
            .retained
            .values()
            .filter(|e| e.id <= through && patterns.iter().any(|p| topic::matches(p, &e.topic)))
            .cloned()
            .collect();
        out.sort_unstable_by_key(|e| e.id);
        out
    }

    /// Every topic's state, in no particular order.
    pub fn states(&self) -> impl Iterator<Item = &Rc<Event>> {
        self.retained.values()
    }

    /// Topics with a retained event and the bytes counted for them.
    pub fn retained_stats(&self) -> (usize, usize) {
        (self.retained.len(), self.retained_bytes)
    }

    /// Makes `ev` its topic's state, or clears the state when its data is empty.
    fn keep_state(&mut self, ev: &Rc<Event>) {
        if let Some(old) = self.retained.remove(&ev.topic) {
            self.retained_bytes -= old.cost();
        }
        // One bigger than the whole bound would push every other state out, then itself.
        if ev.data.is_empty() || ev.cost() > self.retain_cfg.max_bytes || self.retain_cfg.max_topics == 0 {
            return;
        }
        self.retained_bytes += ev.cost();
        self.retained.insert(ev.topic.clone(), ev.clone());
        self.trim_retained();
    }

    fn trim_retained(&mut self) {
        while self.retained.len() > self.retain_cfg.max_topics || self.retained_bytes > self.retain_cfg.max_bytes {
            // A scan, but only past a bound.
            let Some(k) = self.retained.values().min_by_key(|e| e.id).map(|e| e.topic.clone()) else { break };
            if let Some(old) = self.retained.remove(&k) {
                self.retained_bytes -= old.cost();
            }
        }
    }

    /// New history bounds (SIGHUP); they apply from the next event on.
    pub fn set_history_config(&mut self, cfg: HistoryConfig) {
        self.cfg = cfg;
    }

    /// The id of the last event in history order (`first_id - 1` before any). Ids given out by
    /// [`Hub::make`] and not committed yet are not counted: a subscriber starting here must
    /// still receive them.
    pub fn last_id(&self) -> u64 {
        // Made ids are the newest ones, and they are committed in order.
        self.next_id - 1 - self.uncommitted
    }

    /// Takes an id without an event in history: for a record only the journal keeps (a marker
    /// where run output was left out of it), restored like any event after a restart. Like a
    /// made event it is not behind the head until [`Hub::commit_reserved`].
    pub fn reserve_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.uncommitted += 1;
        id
    }

    /// The oldest reserved id is done with (its record is durable): the head may pass it.
    pub fn commit_reserved(&mut self) {
        self.uncommitted = self.uncommitted.saturating_sub(1);
    }

    /// Records a new event and returns it; the caller fans it out.
    pub fn publish(&mut self, topic: &str, kind: &str, data: String, data_is_json: bool, time_ms: u64) -> Rc<Event> {
        let ev = self.make(topic, kind, data, data_is_json, time_ms);
        self.commit(ev.clone());
        ev
    }

    /// Gives a new event its id without putting it in history: the journal holds it until its
    /// record is durable, then [`Hub::commit`] makes it visible. Events must be committed in
    /// the order they were made.
    pub fn make(&mut self, topic: &str, kind: &str, data: String, data_is_json: bool, time_ms: u64) -> Rc<Event> {
        debug_assert!(topic::validate_topic(topic).is_ok());
        let id = self.next_id;
        self.next_id += 1;
        self.uncommitted += 1;
        self.new_event(id, topic, kind, data, data_is_json, time_ms)
    }

    /// Puts an event from [`Hub::make`] into history; the caller fans it out.
    pub fn commit(&mut self, ev: Rc<Event>) {
        self.uncommitted = self.uncommitted.saturating_sub(1);
        self.insert_event(ev);
    }

    /// Makes this a hub that follows a cluster's log: ids come from [`Hub::insert_read`], and
    /// until [`Hub::set_floor`] says from where history is complete, every resume is a gap.
    pub fn follow_log(&mut self) {
        self.follows_log = true;
        self.first_id = u64::MAX;
        self.next_id = 1;
    }

    /// The oldest id this node's history vouches for: a cursor before it missed something.
    pub fn set_floor(&mut self, floor: u64) {
        self.first_id = floor.max(1);
    }

    /// Events up to `through` may be missing here (the log lost them, or this node could not
    /// read them): a cursor before it missed something.
    pub fn lost_through(&mut self, through: u64) {
        self.dropped_topics_through = self.dropped_topics_through.max(through);
        self.evicted_max = self.evicted_max.max(through);
    }

    /// An event whose id the cluster's log will give: for the publisher's answer, never in
    /// history (the event comes back from the log with its id).
    pub fn provisional(&self, topic: &str, kind: &str, data: String, data_is_json: bool, time_ms: u64) -> Rc<Event> {
        Rc::new(Event::new(0, topic.into(), kind, time_ms, data, data_is_json))
    }

    /// Puts an event read from the cluster's log into history, with the id the log gave it;
    /// None when it is not after the newest one (read twice) or its topic is not valid.
    #[allow(clippy::too_many_arguments)]
    pub fn insert_read(
        &mut self,
        id: u64,
        topic: &str,
        kind: &str,
        data: String,
        data_is_json: bool,
        retained: bool,
        time_ms: u64,
    ) -> Option<Rc<Event>> {
        if id < self.next_id || topic::validate_topic(topic).is_err() {
            return None;
        }
        self.next_id = id + 1;
        let ev = self.new_event(id, topic, kind, data, data_is_json, time_ms);
        ev.retained.set(retained);
        self.insert_event(ev.clone());
        Some(ev)
    }

    /// Puts back an event from the journal at start, with its original id. Ids must come in
    /// increasing order; afterwards new ids continue after the last one (or from the clock, if
    /// that is later). The first restored id becomes the oldest this process can vouch for.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        &mut self,
        id: u64,
        topic: &str,
        kind: &str,
        data: String,
        data_is_json: bool,
        retained: bool,
        time_ms: u64,
    ) -> bool {
        if topic::validate_topic(topic).is_err() || self.restored_through >= id {
            return false;
        }
        if self.restored_through == 0 {
            self.first_id = id;
        }
        self.restored_through = id;
        let ev = self.restored_event(id, topic, kind, data, data_is_json, retained, time_ms);
        self.insert_event(ev);
        true
    }

    /// An event from the journal: ids go on after it, and it is retired from the outset (nobody
    /// is subscribed at start).
    #[allow(clippy::too_many_arguments)]
    fn restored_event(
        &mut self,
        id: u64,
        topic: &str,
        kind: &str,
        data: String,
        data_is_json: bool,
        retained: bool,
        time_ms: u64,
    ) -> Rc<Event> {
        self.next_id = self.next_id.max(id + 1);
        let ev = self.new_event(id, topic, kind, data, data_is_json, time_ms);
        ev.retained.set(retained);
        ev.retire();
        ev
    }

    /// A topic's state from the journal's copy of it (its event is older than the history
    /// restored, or gone with its segment): the state only, not history. False for a topic
    /// name that is not valid.
    pub fn restore_state(
        &mut self,
        id: u64,
        topic: &str,
        kind: &str,
        data: String,
        data_is_json: bool,
        time_ms: u64,
    ) -> bool {
        if topic::validate_topic(topic).is_err() {
            return false;
        }
        let ev = self.restored_event(id, topic, kind, data, data_is_json, true, time_ms);
        self.keep_state(&ev);
        true
    }

    /// An event with its topic's name shared with that topic's history (one allocation per
    /// topic, not per event).
    fn new_event(&self, id: u64, topic: &str, kind: &str, data: String, data_is_json: bool, time_ms: u64) -> Rc<Event> {
        let topic: Rc<str> = self.topics.get_key_value(topic).map_or_else(|| topic.into(), |(k, _)| k.clone());
        Rc::new(Event::new(id, topic, kind, time_ms, data, data_is_json))
    }

    fn insert_event(&mut self, ev: Rc<Event>) {
        if ev.retained() {
            self.keep_state(&ev);
        }
        let id = ev.id;
        if !self.topics.contains_key(&ev.topic) {
            self.make_room_for_topic();
            self.topics.insert(ev.topic.clone(), TopicHistory::default());
        }
        let cost = ev.cost();
        let h = self.topics.get_mut(&ev.topic).expect("topic just ensured");
        h.last_id = id;
        if self.cfg.max_events_per_topic > 0 && cost <= self.cfg.max_bytes_per_topic {
            h.events.push_back(ev.clone());
            h.bytes += cost;
            while h.events.len() > self.cfg.max_events_per_topic || h.bytes > self.cfg.max_bytes_per_topic {
                let old = h.events.pop_front().expect("non-empty while over a limit");
                h.bytes -= old.cost();
                h.evicted_through = old.id;
                self.evicted_max = self.evicted_max.max(old.id);
            }
            self.all.push_back(ev);
            self.all_bytes += cost;
            self.trim_global();
        } else {
            // Too big to keep at all: a resuming client will be told it missed something.
            h.evicted_through = id;
            self.evicted_max = id;
        }
    }

    fn trim_global(&mut self) {
        while self.all_bytes > self.cfg.max_bytes_total {
            let Some(old) = self.all.pop_front() else { break };
            self.all_bytes -= old.cost();
            if let Some(h) = self.topics.get_mut(&old.topic) {
                if h.events.front().is_some_and(|e| e.id == old.id) {
                    h.events.pop_front();
                    h.bytes -= old.cost();
                    h.evicted_through = h.evicted_through.max(old.id);
                    self.evicted_max = self.evicted_max.max(old.id);
                }
            }
        }
        // Events a topic already dropped may linger at the front of the global order.
        while let Some(front) = self.all.front() {
            let stale = self.topics.get(&front.topic).is_none_or(|h| front.id <= h.evicted_through);
            if !stale {
                break;
            }
            let old = self.all.pop_front().expect("front exists");
            self.all_bytes -= old.cost();
        }
    }

    fn make_room_for_topic(&mut self) {
        if self.topics.len() < self.cfg.max_topics {
            return;
        }
        // At the cap: forget the topic published to least recently. A scan, but only at the cap.
        let victim = self.topics.iter().min_by_key(|(_, h)| h.last_id).map(|(k, _)| k.clone());
        if let Some(k) = victim {
            let h = self.topics.remove(&k).expect("victim exists");
            self.dropped_topics_through = self.dropped_topics_through.max(h.last_id);
            self.evicted_max = self.evicted_max.max(h.last_id);
        }
    }

    /// Whether a client whose last seen id is `since` may have missed events matching
    /// `patterns` that history no longer holds. With a `mark` from an earlier batch, only
    /// evictions after that batch count (the earlier ones were reported then).
    fn has_gap(&self, patterns: &[&str], since: u64, mark: Option<u64>) -> bool {
        let floor = match mark {
            None if since.saturating_add(1) < self.first_id => return true,
            None if since > self.last_id() && !self.follows_log => return true,
            None => 0,
            Some(m) if self.evicted_max <= m => return false,
            Some(m) => m,
        };
        if self.dropped_topics_through > since.max(floor) {
            return true;
        }
        self.topics
            .iter()
            .any(|(t, h)| h.evicted_through > since.max(floor) && patterns.iter().any(|p| topic::matches(p, t)))
    }

    /// The current eviction mark, to pass back with the next replay batch.
    pub fn evict_mark(&self) -> u64 {
        self.evicted_max
    }

    /// Up to `max_bytes` of events after `since` that match any of `patterns`. `mark` is None
    /// for the first batch of a resume and `evict_mark()` as of the previous batch afterwards.
    pub fn replay(&self, patterns: &[&str], since: u64, max_bytes: usize, mark: Option<u64>) -> Replay {
        let mut r = Replay { gap: self.has_gap(patterns, since, mark), ..Replay::default() };
        let start = self.all.partition_point(|e| e.id <= since);
        let mut bytes = 0;
        for ev in self.all.range(start..) {
            let live = self.topics.get(&ev.topic).is_some_and(|h| ev.id > h.evicted_through);
            if !live || !patterns.iter().any(|p| topic::matches(p, &ev.topic)) {
                continue;
            }
            if bytes >= max_bytes && !r.events.is_empty() {
                return r;
            }
            bytes += ev.cost();
            r.events.push(ev.clone());
        }
        r.done = true;
        r
    }

    /// Interns a pattern and adds `sub` to it.
    pub fn subscribe(&mut self, sub: SubId, pattern: &str) -> PatternId {
        let id = match self.pattern_ids.get(pattern) {
            Some(&id) => id,
            None => {
                let entry =
                    PatternEntry { text: pattern.into(), wildcard: topic::is_wildcard(pattern), subs: HashSet::new() };
                let id = match self.free_patterns.pop() {
                    Some(id) => {
                        self.patterns[id as usize] = Some(entry);
                        id
                    }
                    None => {
                        self.patterns.push(Some(entry));
                        (self.patterns.len() - 1) as PatternId
                    }
                };
                if topic::is_wildcard(pattern) {
                    self.wildcards.push(id);
                }
                self.pattern_ids.insert(pattern.into(), id);
                id
            }
        };
        if let Some(e) = self.patterns[id as usize].as_mut() {
            e.subs.insert(sub);
        }
        id
    }

    /// Removes `sub` from a pattern, forgetting the pattern when nobody is left on it.
    pub fn unsubscribe(&mut self, sub: SubId, pattern: PatternId) {
        let Some(Some(e)) = self.patterns.get_mut(pattern as usize) else { return };
        e.subs.remove(&sub);
        if e.subs.is_empty() {
            let e = self.patterns[pattern as usize].take().expect("entry exists");
            self.pattern_ids.remove(&e.text);
            if e.wildcard {
                self.wildcards.retain(|&w| w != pattern);
            }
            self.free_patterns.push(pattern);
        }
    }

    /// The text of an interned pattern.
    pub fn pattern_text(&self, pattern: PatternId) -> Option<&str> {
        self.patterns.get(pattern as usize)?.as_ref().map(|e| &*e.text)
    }

    /// Everyone subscribed to a pattern matching `topic`, into `out` (which is cleared first).
    /// A subscriber on two matching patterns appears twice; the connection skips repeats by id.
    pub fn subscribers_into(&self, topic: &str, out: &mut Vec<SubId>) {
        out.clear();
        if let Some(&id) = self.pattern_ids.get(topic) {
            if let Some(e) = &self.patterns[id as usize] {
                out.extend(e.subs.iter().copied());
            }
        }
        for &id in &self.wildcards {
            if let Some(e) = &self.patterns[id as usize] {
                if topic::matches(&e.text, topic) {
                    out.extend(e.subs.iter().copied());
                }
            }
        }
    }

    /// Counts for metrics.
    pub fn stats(&self) -> HubStats {
        HubStats {
            history_events: self.topics.values().map(|h| h.events.len()).sum(),
            history_bytes: self.topics.values().map(|h| h.bytes).sum(),
            topics: self.topics.len(),
            patterns: self.pattern_ids.len(),
            last_id: self.last_id(),
            retained_topics: self.retained.len(),
            retained_bytes: self.retained_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(per_topic: usize, bytes: usize) -> HistoryConfig {
        HistoryConfig {
            max_events_per_topic: per_topic,
            max_bytes_per_topic: bytes,
            max_bytes_total: bytes * 4,
            max_topics: 3,
        }
    }

    fn hub() -> Hub {
        Hub::new(cfg(3, 1 << 20), 100)
    }

    #[test]
    fn ids_increase_from_the_first() {
        let mut h = hub();
        assert_eq!(h.last_id(), 99);
        let a = h.publish("a", "message", "x".into(), false, 0);
        let b = h.publish("b", "message", "y".into(), false, 0);
        assert_eq!((a.id, b.id), (100, 101));
    }

    #[test]
    fn encodings_are_shared_not_copied() {
        let mut h = hub();
        let e = h.publish("demo", "deploy", "{\"ok\":true}".into(), true, 1_795_340_470_123);
        let one = e.encoded(Wire::Sse);
        let two = e.encoded(Wire::Sse);
        assert!(Rc::ptr_eq(&one, &two));
        assert_eq!(&*one, b"id: 100\nevent: deploy\ndata: {\"ok\":true}\n\n");
        assert_eq!(
            std::str::from_utf8(&e.encoded(Wire::Json)).unwrap(),
            r#"{"id":100,"topic":"demo","event":"deploy","time":"2026-11-22T09:41:10.123Z","data":{"ok":true}}"#
        );
        let text = h.publish("demo", "message", "a \"q\"".into(), false, 0);
        assert!(std::str::from_utf8(&text.encoded(Wire::Json)).unwrap().ends_with(r#""data":"a \"q\""}"#));
    }

    /// Issue 12 item 8: encodings cached in events that were only in history were not counted
    /// by `history.max_bytes_*` (16 MiB accounted became 180 MiB resident after one replay per
    /// format). A retired event keeps none: the bytes a replay got are the replay's alone.
    #[test]
    fn retired_events_keep_no_encodings() {
        let mut h = hub();
        let e = h.publish("demo", "message", "x\n\u{1}\"".into(), false, 0);
        let wires = [Wire::Sse, Wire::SseEnvelope, Wire::Json, Wire::Ws];
        let live: Vec<Rc<[u8]>> = wires.iter().map(|&w| e.encoded(w)).collect();
        for b in &live {
            assert_eq!(Rc::strong_count(b), 2, "cached while live");
        }
        e.retire();
        for (b, &w) in live.iter().zip(&wires) {
            assert_eq!(Rc::strong_count(b), 1, "the cache let go");
            let again = e.encoded(w);
            assert_eq!(again, *b, "same bytes, encoded afresh");
            assert_eq!(Rc::strong_count(&again), 1, "and not kept");
        }
        // Restored events are history from the start.
        let mut h = hub();
        assert!(h.restore(7, "demo", "message", "r".into(), false, false, 0));
        let r = h.replay(&["demo"], 0, usize::MAX, None);
        assert_eq!(Rc::strong_count(&r.events[0].encoded(Wire::Json)), 1);
    }

    #[test]
    fn replay_returns_what_was_missed_and_flags_gaps() {
        let mut h = hub();
        for i in 0..5 {
            h.publish("a", "message", format!("{i}"), false, 0);
            h.publish("b/x", "message", format!("{i}"), false, 0);
        }
        // ids: a = 100,102,104,106,108; b/x = 101,...,109. History keeps 3 per topic.
        let r = h.replay(&["a"], 104, usize::MAX, None);
        assert!(!r.gap && r.done);
        assert_eq!(r.events.iter().map(|e| e.id).collect::<Vec<_>>(), [106, 108]);
        let r = h.replay(&["a"], 101, usize::MAX, None);
        assert!(r.gap, "102 was evicted from a");
        assert_eq!(r.events.iter().map(|e| e.id).collect::<Vec<_>>(), [104, 106, 108]);
        let r = h.replay(&["b/*", "a"], 105, usize::MAX, None);
        assert!(!r.gap);
        assert_eq!(r.events.iter().map(|e| e.id).collect::<Vec<_>>(), [106, 107, 108, 109]);
        assert!(h.replay(&["a"], 50, usize::MAX, None).gap, "ids from before this run");
        assert!(h.replay(&["a"], 500, usize::MAX, None).gap, "ids from the future");
        let r = h.replay(&["a"], 109, usize::MAX, None);
        assert!(!r.gap && r.events.is_empty() && r.done);
    }

    #[test]
    fn restored_history_resumes_and_ids_continue() {
        let mut h = Hub::new(cfg(10, 1 << 20), 50);
        assert!(h.restore(10, "a", "message", "x".into(), false, false, 0));
        assert!(h.restore(12, "a", "deploy", "{}".into(), true, false, 0));
        assert!(!h.restore(11, "a", "message", "late".into(), false, false, 0), "out of order");
        assert!(!h.restore(13, "bad topic", "message", String::new(), false, false, 0));
        let r = h.replay(&["a"], 10, usize::MAX, None);
        assert!(!r.gap, "10 is the oldest we vouch for: after it nothing is missing");
        assert_eq!(r.events.iter().map(|e| e.id).collect::<Vec<_>>(), [12]);
        assert!(h.replay(&["a"], 5, usize::MAX, None).gap, "before the journal's oldest");
        assert_eq!(h.publish("a", "message", String::new(), false, 0).id, 50, "the clock seed is later");
        let mut h = Hub::new(cfg(10, 1 << 20), 5);
        h.restore(100, "a", "message", String::new(), false, false, 0);
        assert_eq!(h.publish("a", "message", String::new(), false, 0).id, 101, "continues after the journal");
    }

    #[test]
    fn a_made_event_is_invisible_until_committed() {
        let mut h = Hub::new(cfg(10, 1 << 20), 1);
        h.publish("a", "message", "1".into(), false, 0);
        let held = h.make("a", "message", "2".into(), false, 0);
        assert_eq!(held.id, 2);
        // A subscriber starting now starts before it, so fan-out still brings it.
        assert_eq!(h.last_id(), 1);
        assert!(h.replay(&["a"], 0, usize::MAX, None).events.iter().all(|e| e.id == 1));
        assert!(!h.replay(&["a"], 1, usize::MAX, None).gap, "an id not out yet is no gap");
        h.commit(held);
        assert_eq!(h.last_id(), 2);
        let ids: Vec<u64> = h.replay(&["a"], 0, usize::MAX, None).events.iter().map(|e| e.id).collect();
        assert_eq!(ids, [1, 2]);
        assert_eq!(h.publish("b", "message", String::new(), false, 0).id, 3);
    }

    #[test]
    fn replay_comes_in_batches() {
        let mut h = Hub::new(cfg(100, 1 << 20), 1);
        for i in 0..10 {
            h.publish("a", "message", format!("{i}"), false, 0);
        }
        let one = h.publish("a", "message", String::new(), false, 0).cost();
        let r = h.replay(&["a"], 0, one * 3, None);
        assert!(!r.done);
        assert_eq!(r.events.len(), 3);
        let mark = Some(h.evict_mark());
        let r = h.replay(&["a"], r.events[2].id, usize::MAX, mark);
        assert!(r.done && r.events.len() == 8 && !r.gap);
    }

    #[test]
    fn byte_limits_and_topic_cap_hold() {
        let mut h = Hub::new(cfg(1000, 1000), 1);
        for _ in 0..20 {
            h.publish("a", "message", "x".repeat(300), false, 0);
        }
        let s = h.stats();
        assert!(s.history_bytes <= 1000, "{s:?}");
        for t in ["b", "c", "d", "e"] {
            h.publish(t, "message", String::new(), false, 0);
        }
        assert_eq!(h.stats().topics, 3);
        assert!(h.replay(&["a"], 5, usize::MAX, None).gap);
        let mark = h.evict_mark();
        assert!(!h.replay(&["a"], 5, usize::MAX, Some(mark)).gap, "already reported");
        h.publish("a", "message", "x".repeat(900), false, 0);
        assert!(h.replay(&["a"], 5, usize::MAX, Some(mark)).gap, "evicted since the mark");
        // Too big for history at all: not kept, but a resume notices.
        let big = h.publish("e", "message", "y".repeat(5000), false, 0);
        assert!(h.replay(&["e"], big.id - 1, usize::MAX, None).gap);
    }

    #[test]
    fn subscriptions_and_fanout_lookup() {
        let mut h = hub();
        let p1 = h.subscribe(1, "builds/*");
        let p2 = h.subscribe(2, "builds/web");
        h.subscribe(3, "**");
        let p4 = h.subscribe(4, "builds/*");
        assert_eq!(p1, p4);
        let mut out = Vec::new();
        h.subscribers_into("builds/web", &mut out);
        out.sort();
        assert_eq!(out, [1, 2, 3, 4]);
        h.subscribers_into("$runs", &mut out);
        assert!(out.is_empty());
        h.unsubscribe(1, p1);
        h.unsubscribe(4, p1);
        h.unsubscribe(2, p2);
        h.subscribers_into("builds/web", &mut out);
        assert_eq!(out, [3]);
        assert_eq!(h.stats().patterns, 1);
        assert_eq!(h.subscribe(5, "x"), p2, "freed ids are reused");
    }

    fn retained(h: &mut Hub, topic: &str, data: &str) -> Rc<Event> {
        let ev = h.make(topic, "message", data.to_string(), false, 0);
        ev.mark_retained();
        h.commit(ev.clone());
        ev
    }

    #[test]
    fn retained_state_is_kept_replaced_cleared_and_bounded() {
        let mut h = Hub::new(cfg(1, 1 << 20), 1);
        h.set_retain_config(RetainConfig { max_topics: 2, max_bytes: 1 << 20 });
        let a1 = retained(&mut h, "a", "1");
        h.publish("a", "message", "not retained".into(), false, 0);
        assert_eq!(h.state("a").map(|e| e.id), Some(a1.id), "history dropped it; the state stays");
        let a2 = retained(&mut h, "a", "2");
        let b = retained(&mut h, "b", "b");
        assert_eq!(h.state("a").map(|e| e.id), Some(a2.id));
        let ids = |v: Vec<Rc<Event>>| v.iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(ids(h.states_matching(&["*"], u64::MAX)), [a2.id, b.id], "in id order");
        assert_eq!(ids(h.states_matching(&["*"], b.id - 1)), [a2.id], "none after the cursor");
        // Past max_topics the topic with the oldest state goes.
        let c = retained(&mut h, "c", "c");
        assert!(h.state("a").is_none());
        assert_eq!(ids(h.states_matching(&["**"], u64::MAX)), [b.id, c.id]);
        // An empty body clears.
        retained(&mut h, "b", "");
        assert!(h.state("b").is_none());
        assert_eq!(h.retained_stats().0, 1);
        // The byte bound counts as history does; one state bigger than it is not kept.
        h.set_retain_config(RetainConfig { max_topics: 10, max_bytes: 300 });
        retained(&mut h, "d", &"x".repeat(400));
        assert!(h.state("d").is_none());
        assert!(h.state("c").is_some(), "a state too big to keep pushes no other out");
        assert!(h.retained_stats().1 <= 300);
        // Restored and read-from-the-log events carry the flag.
        let mut r = Hub::new(cfg(1, 1 << 20), 1);
        assert!(r.restore(5, "t", "message", "s".into(), false, true, 0));
        assert!(r.restore(6, "u", "message", "n".into(), false, false, 0));
        assert_eq!(ids(r.states_matching(&["*"], u64::MAX)), [5]);
    }
}
