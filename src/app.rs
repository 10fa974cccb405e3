//! The state every handler works on, owned by the loop: configuration, auth, the hub, metrics,
//! the cached `Date` header, and the outbox of events published during this turn of the loop
//! (fanned out by the loop afterwards, so a handler never touches another connection).

use crate::auth::Auth;
use crate::config::Config;
use crate::hub::{Event, Hub};
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long a ticket from `POST /api/ticket` stays valid.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Most tickets outstanding at once (each is single-use and short-lived).
pub const MAX_TICKETS: usize = 10_000;

/// What a journal replay carries from one record to the next (see [`App::restore_record`]).
pub struct Restore {
    /// Delivery records waiting for their accepted outcome, by (hook, delivery id): a delivery
    /// and its outcome are appended in the same turn, so this holds a handful at most (plus
    /// those a crash cut off).
    pending: HashMap<(String, String), crate::hooks::stored::Stored>,
    now_ms: u64,
    events: usize,
    deliveries: usize,
    runs: usize,
}

impl Restore {
    /// A replay starting now.
    pub fn new() -> Restore {
        Restore { pending: HashMap::new(), now_ms: crate::clock::unix_ms(), events: 0, deliveries: 0, runs: 0 }
    }
}

impl Default for Restore {
    fn default() -> Restore {
        Restore::new()
    }
}

/// Application state shared by all connections on the loop.
pub struct App {
    /// The configuration in force.
    pub cfg: Config,
    /// Token and anonymous-access decisions.
    pub auth: Auth,
    /// Topics, history and subscriptions.
    pub hub: Hub,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// When the daemon started.
    pub started: Instant,
    /// The loop's notion of now, updated once per turn.
    pub now: Instant,
    /// Events published this turn, to be fanned out by the loop.
    pub outbox: Vec<Rc<Event>>,
    /// Deploy runs.
    pub runner: crate::runner::Runner,
    /// Webhook hooks, secrets read.
    pub hooks: crate::hooks::intake::Hooks,
    /// Delivery ids recently accepted.
    pub dedup: crate::hooks::dedup::DedupWindow,
    /// Connections waiting for a run's output (`include-command-output-in-response`).
    pub run_waiters: HashMap<crate::runner::sched::RunId, Vec<usize>>,
    /// The on-disk journal, when `state_dir` is set.
    pub journal: Option<crate::journal::Journal>,
    /// How much deploy-run output goes into the journal (see `journal::budget`).
    pub output_budget: crate::journal::budget::OutputBudget,
    /// Requests whose answer waits for their journal record to be durable: seq → tokens.
    pub durable_waiters: std::collections::BTreeMap<u64, Vec<usize>>,
    /// Accepted webhook deliveries kept for replay (bounded by bytes), by delivery id.
    pub deliveries: crate::hooks::stored::StoredDeliveries,
    /// Each hook's last `$deliveries` record with its time and verification result, for the
    /// status page (kept by `status::note_delivery`).
    pub last_deliveries: HashMap<String, serde_json::Value>,
    /// Outstanding one-time tickets: SHA-256 of the ticket → (the token it stands for, expiry).
    tickets: HashMap<[u8; 32], (crate::auth::TokenId, Instant)>,
    date: String,
    date_secs: u64,
    last_seq: u64,
}

/// Event type of the marker journalled where run output was left out of the journal
/// (`{"run","lines","bytes","limit"}`); seen in `$runs/{id}` history after a restart.
pub const OUTPUT_GAP_TYPE: &str = "output-not-journalled";

/// An event's journal payload: `[flags][type length][type][data]`, flags bit 0 = JSON.
pub fn encode_event_data(kind: &str, is_json: bool, data: &str) -> Vec<u8> {
    let kind = &kind.as_bytes()[..kind.len().min(255)];
    let mut out = Vec::with_capacity(2 + kind.len() + data.len());
    out.push(u8::from(is_json));
    out.push(kind.len() as u8);
    out.extend_from_slice(kind);
    out.extend_from_slice(data.as_bytes());
    out
}

/// The inverse of [`encode_event_data`]: (type, is JSON, data).
pub fn decode_event_data(raw: &[u8]) -> Option<(String, bool, String)> {
    let (&flags, rest) = raw.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let kind = std::str::from_utf8(rest.get(..len as usize)?).ok()?;
    let data = std::str::from_utf8(&rest[len as usize..]).ok()?;
    Some((kind.to_string(), flags & 1 == 1, data.to_string()))
}

/// The (hook, delivery id) of a `$deliveries` record that accepted a delivery as it arrived
/// (not a replay), if `data` is one.
fn accepted_delivery(data: &str) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    if v.get("outcome")?.as_str()? != "accepted" || v.get("replay").is_some() {
        return None;
    }
    Some((v.get("hook")?.as_str()?.to_string(), v.get("delivery")?.as_str()?.to_string()))
}

impl App {
    /// Builds the state from a validated config; ids start from the clock (see `Hub::new`).
    /// Run pipes register with `registry`.
    pub fn new(cfg: Config, hooks: crate::hooks::intake::Hooks, registry: mio::Registry) -> App {
        let dedup = crate::hooks::dedup::DedupWindow::new(cfg.dedup_window, 100_000);
        let deliveries = crate::hooks::stored::StoredDeliveries::new(cfg.journal.max_delivery_bytes);
        let runner = crate::runner::Runner::new(cfg.runner.clone(), registry);
        let auth = Auth::new(cfg.tokens.clone(), cfg.public.clone());
        let hub = Hub::new(cfg.history.clone(), crate::clock::unix_us());
        let output_budget = crate::journal::budget::OutputBudget::new(
            cfg.journal.run_output_bytes,
            cfg.journal.run_output_bytes_per_sec,
        );
        let now = Instant::now();
        let mut app = App {
            cfg,
            auth,
            hub,
            metrics: Metrics::default(),
            started: now,
            now,
            outbox: Vec::new(),
            runner,
            hooks,
            dedup,
            run_waiters: HashMap::new(),
            journal: None,
            output_budget,
            durable_waiters: std::collections::BTreeMap::new(),
            deliveries,
            last_deliveries: HashMap::new(),
            tickets: HashMap::new(),
            date: String::new(),
            date_secs: 0,
            last_seq: 0,
        };
        app.tick();
        app
    }

    /// Updates `now` and, once a second, the `Date` header value.
    pub fn tick(&mut self) {
        self.now = Instant::now();
        let secs = crate::clock::unix_ms() / 1000;
        if secs != self.date_secs {
            self.date_secs = secs;
            self.date = crate::clock::http_date(secs);
        }
    }

    /// The current `Date` header value.
    pub fn date(&self) -> &str {
        &self.date
    }

    /// Issues a one-time ticket standing for token `token` for [`TICKET_TTL`]; None when too
    /// many are outstanding.
    pub fn issue_ticket(&mut self, token: crate::auth::TokenId) -> Option<String> {
        let now = self.now;
        self.tickets.retain(|_, (_, exp)| *exp > now);
        if self.tickets.len() >= MAX_TICKETS {
            return None;
        }
        let mut raw = [0u8; 24];
        crate::sys::random_bytes(&mut raw).ok()?;
        let ticket = format!("tk_{}", crate::auth::hex(&raw));
        // Only the hash is kept, like configured tokens.
        self.tickets.insert(crate::auth::token_hash(&ticket), (token, now + TICKET_TTL));
        Some(ticket)
    }

    /// Redeems a ticket once: the token it stands for, if it is valid and unexpired.
    pub fn redeem_ticket(&mut self, ticket: &str) -> Option<crate::auth::TokenId> {
        let (token, exp) = self.tickets.remove(&crate::auth::token_hash(ticket))?;
        (exp > self.now).then_some(token)
    }

    /// Publishes what the runner produced (output lines and state changes). Every line goes to
    /// subscribers; the journal gets what `output_budget` allows, and a marker where it left
    /// lines out.
    pub fn pump_runner(&mut self) {
        for (topic, kind, data) in std::mem::take(&mut self.runner.out) {
            let line_of = match kind {
                "stdout" | "stderr" => topic.strip_prefix("$runs/").and_then(|id| id.parse::<u64>().ok()),
                _ => None,
            };
            let (Some(run), true) = (line_of, self.journal.is_some()) else {
                self.publish(&topic, kind, data, true);
                continue;
            };
            let bytes = crate::journal::record::encoded_len_of(&topic, 2 + kind.len() + data.len()) as u64;
            match self.output_budget.admit(run, bytes, self.now) {
                crate::journal::budget::Admit::Keep(gap) => {
                    if let Some(g) = gap {
                        self.journal_gap(&g);
                    }
                    self.publish(&topic, kind, data, true);
                }
                crate::journal::budget::Admit::Drop => {
                    let ev = self.hub.publish(&topic, kind, data, true, crate::clock::unix_ms());
                    self.metrics.events_published += 1;
                    self.outbox.push(ev);
                }
            }
        }
        for i in 0..self.runner.finished.len() {
            if let Some(g) = self.output_budget.finish(self.runner.finished[i]) {
                self.journal_gap(&g);
            }
        }
    }

    /// Journals the marker for run output left out of the journal, on the run's topic, under an
    /// id of its own (after every line it stands for), so that after a restart the run's
    /// history says what is missing. Live subscribers had every line and do not get it.
    fn journal_gap(&mut self, g: &crate::journal::budget::Gap) {
        log::debug!("journal: {} line(s) ({} bytes) of run {} not journalled ({})", g.lines, g.bytes, g.run, g.reason);
        let Some(j) = self.journal.as_mut() else { return };
        let data =
            serde_json::json!({ "run": g.run, "lines": g.lines, "bytes": g.bytes, "limit": g.reason }).to_string();
        let rec = crate::journal::Record {
            kind: crate::journal::record::Kind::Event,
            id: self.hub.reserve_id(),
            time_ms: crate::clock::unix_ms(),
            topic: format!("$runs/{}", g.run),
            data: encode_event_data(OUTPUT_GAP_TYPE, true, &data),
        };
        if let Ok(seq) = j.append_owned(rec) {
            self.last_seq = seq;
        }
    }

    /// Publishes an event: into the hub, the journal (when there is one) and the fan-out.
    /// Subscribers get it at once; a publisher's acknowledgement waits for [`App::last_seq`].
    pub fn publish(&mut self, topic: &str, kind: &str, data: String, data_is_json: bool) -> Rc<Event> {
        let ev = self.hub.publish(topic, kind, data, data_is_json, crate::clock::unix_ms());
        self.metrics.events_published += 1;
        if let Some(j) = self.journal.as_mut() {
            let rec = crate::journal::Record {
                kind: crate::journal::record::Kind::Event,
                id: ev.id,
                time_ms: ev.time_ms,
                topic: ev.topic.to_string(),
                data: encode_event_data(&ev.kind, ev.data_is_json, &ev.data),
            };
            if let Ok(seq) = j.append_owned(rec) {
                self.last_seq = seq;
            }
        }
        self.outbox.push(ev.clone());
        ev
    }

    /// Puts a reloaded configuration in force. Connections, history, runs and the journal stay;
    /// what only a restart can change (listen address, state dir, journal settings) keeps its
    /// old value and is named in the returned notes.
    pub fn reload(&mut self, mut cfg: Config, hooks: crate::hooks::intake::Hooks) -> Vec<String> {
        let mut notes = Vec::new();
        if cfg.listen != self.cfg.listen {
            notes.push(format!("listen {} → {} needs a restart", self.cfg.listen, cfg.listen));
            cfg.listen = self.cfg.listen;
        }
        if cfg.state_dir != self.cfg.state_dir {
            notes.push("state_dir changes need a restart".to_string());
            cfg.state_dir = self.cfg.state_dir.clone();
        }
        cfg.journal = self.cfg.journal.clone();
        self.auth = Auth::new(cfg.tokens.clone(), cfg.public.clone());
        self.hub.set_history_config(cfg.history.clone());
        self.runner.set_config(cfg.runner.clone());
        self.dedup.set_max_age(cfg.dedup_window);
        self.hooks = hooks;
        log::set_max_level(cfg.log_level);
        self.cfg = cfg;
        notes
    }

    /// Rebuilds state from one journal record, read at start in journal order: topic history
    /// (ids continue after it), run records, stored deliveries and the idempotency window.
    /// Records are applied as the journal is read, so replay holds no more than what these keep
    /// (each bounded by its own limit); [`App::restore_done`] finishes.
    ///
    /// A delivery counts only once its `$deliveries` record (`"outcome":"accepted"`) follows its
    /// delivery record: the two are appended in one turn of the loop, but the writer thread may
    /// make them durable in two batches, and the 202 waits for the later one. A crash between
    /// them leaves a delivery that was never acknowledged; it must not be a duplicate when the
    /// sender tries again (nor be replayable: its events were never published).
    pub fn restore_record(&mut self, st: &mut Restore, rec: crate::journal::Record) {
        use crate::hooks::stored::Stored;
        use crate::journal::record::Kind;
        match rec.kind {
            Kind::Event => {
                let Some((kind, is_json, data)) = decode_event_data(&rec.data) else { return };
                if rec.topic == "$runs" {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&data) {
                        self.runner.restore_one(v);
                        st.runs += 1;
                    }
                }
                if rec.topic == "$deliveries" && !st.pending.is_empty() {
                    if let Some(d) = accepted_delivery(&data).and_then(|key| st.pending.remove(&key)) {
                        let age = Duration::from_millis(st.now_ms.saturating_sub(d.time_ms));
                        if age < self.cfg.dedup_window {
                            let at = self.now.checked_sub(age).unwrap_or(self.now);
                            self.dedup.insert(&d.hook, &d.delivery, at);
                        }
                        self.deliveries.insert(d);
                        st.deliveries += 1;
                    }
                }
                if self.hub.restore(rec.id, &rec.topic, &kind, data, is_json, rec.time_ms) {
                    st.events += 1;
                }
            }
            Kind::Delivery => {
                let Some(d) = Stored::from_json(&rec.data) else { return };
                st.pending.insert((d.hook.clone(), d.delivery.clone()), d);
            }
            Kind::Run => {}
        }
    }

    /// Ends a replay: unfinished runs become `interrupted`. Returns (events, deliveries, run
    /// records) restored.
    pub fn restore_done(&mut self, st: Restore) -> (usize, usize, usize) {
        if !st.pending.is_empty() {
            log::warn!(
                "journal: {} delivery record(s) without their outcome (cut off before they were acknowledged) \
                 dropped; their senders will retry",
                st.pending.len()
            );
        }
        self.runner.restore_done();
        (st.events, st.deliveries, st.runs)
    }

    /// The journal sequence of the last append (0 without a journal): wait for it before
    /// acknowledging what was just published.
    pub fn last_seq(&self) -> u64 {
        if self.journal.is_some() {
            self.last_seq
        } else {
            0
        }
    }

    /// Appends an accepted delivery's request, for replay after a restart; returns its seq.
    pub fn journal_delivery(&mut self, d: &crate::hooks::stored::Stored) -> u64 {
        let Some(j) = self.journal.as_mut() else { return 0 };
        let rec = crate::journal::Record {
            kind: crate::journal::record::Kind::Delivery,
            id: 0,
            time_ms: d.time_ms,
            topic: d.hook.chars().take(256).collect(),
            data: d.to_json().into_bytes(),
        };
        match j.append_owned(rec) {
            Ok(seq) => {
                self.last_seq = seq;
                seq
            }
            Err(_) => 0,
        }
    }
}
