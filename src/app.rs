//! The state every handler works on, owned by the loop: configuration, auth, the hub, metrics,
//! the cached `Date` header, and the outbox of events published during this turn of the loop
//! (fanned out by the loop afterwards, so a handler never touches another connection).

use crate::auth::Auth;
use crate::config::Config;
use crate::hub::{Event, Hub};
use crate::journal::record::{decode_event_data, encode_event, encode_event_data, event_data_retained};
use crate::metrics::Metrics;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

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
    /// Each topic's newest retained record read so far (a clear too): a copy of a state
    /// counts only when nothing newer for its topic came before it.
    state_ids: HashMap<String, u64>,
}

impl Restore {
    /// Notes a retained record for `topic`; whether it is newer than any before it.
    fn newer_state(&mut self, topic: &str, id: u64) -> bool {
        match self.state_ids.get_mut(topic) {
            Some(seen) if *seen >= id => false,
            Some(seen) => {
                *seen = id;
                true
            }
            None => {
                self.state_ids.insert(topic.to_string(), id);
                true
            }
        }
    }

    /// A replay starting now.
    pub fn new() -> Restore {
        Restore {
            pending: HashMap::new(),
            now_ms: crate::clock::unix_ms(),
            events: 0,
            deliveries: 0,
            runs: 0,
            state_ids: HashMap::new(),
        }
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
    /// Verifiers of signed subscriber tokens (config `jwt`).
    pub jwt: crate::jwt::Verifiers,
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
    /// Log sources (their processes and counters).
    pub sources: crate::sources::Sources,
    /// Webhook hooks, secrets read.
    pub hooks: crate::hooks::intake::Hooks,
    /// Delivery ids recently accepted.
    pub dedup: crate::hooks::dedup::DedupWindow,
    /// Connections waiting for a run's output (`include-command-output-in-response`).
    pub run_waiters: HashMap<crate::runner::sched::RunId, Vec<usize>>,
    /// The on-disk journal, when `state_dir` is set.
    pub journal: Option<crate::journal::Journal>,
    /// The shared log on Redis, when `cluster` is set (never together with a journal).
    pub cluster: Option<crate::cluster::Cluster>,
    /// Appends to the cluster log gathered into one script call (see [`App::begin_batch`]).
    batch: Option<(Vec<crate::cluster::NewEntry>, Option<String>)>,
    /// Outcomes of cluster appends settled this turn, for the answers waiting on them (filled
    /// and emptied by the loop around [`crate::conn::Conn::finish_durable`]).
    pub settled: std::collections::BTreeMap<u64, crate::cluster::Appended>,
    /// In a cluster: the hook and the duplicate answer for a delivery's append, should the
    /// log refuse it.
    pub if_duplicate: HashMap<u64, (String, crate::http::response::Response)>,
    /// In a cluster: delivery requests read from the log, waiting for their records.
    pub log_pending: HashMap<(String, String), crate::hooks::stored::Stored>,
    /// Holes in what this node could read from the cluster's log (ids through which events
    /// may be missing): every subscriber is told `reset`.
    pub resets: Vec<u64>,
    /// In a cluster: accepted deliveries read from the log whose runs no node has recorded
    /// yet (arrival ms, request): the node that takes the runner role runs them.
    pub unstarted: std::collections::VecDeque<(u64, crate::hooks::stored::Stored)>,
    /// In a cluster: whether this node ran commands as of the last turn.
    pub was_runner: bool,
    /// In a cluster: runs started from the log, each waiting for the append of its `queued`
    /// record (sequence, run) before its command starts.
    pub held_runs: std::collections::VecDeque<(u64, crate::runner::sched::RunId)>,
    /// How much deploy-run output goes into the journal (see `journal::budget`).
    pub output_budget: crate::journal::budget::OutputBudget,
    /// Requests whose answer waits for their journal record to be durable: seq → tokens.
    pub durable_waiters: std::collections::BTreeMap<u64, Vec<usize>>,
    /// Effects waiting for their journal record to be durable, in sequence order (see
    /// [`App::release_durable`]).
    held: std::collections::VecDeque<(u64, Held)>,
    /// Deliveries accepted whose records are not durable yet, by (hook, delivery id): a resend
    /// meanwhile is neither new nor a duplicate yet.
    pub unconfirmed: std::collections::HashSet<(String, String)>,
    /// Run output lines not published while the journal was refusing work.
    pub dropped_lines: u64,
    /// The journal's rotation count at the last copy of the states.
    copied_rotations: u64,
    /// Accepted webhook deliveries kept for replay (bounded by bytes), by delivery id.
    pub deliveries: crate::hooks::stored::StoredDeliveries,
    /// Requests of deliveries not accepted, by `$deliveries` event id, for the inspector.
    pub rejected: crate::hooks::stored::RecentRequests,
    /// The key of the login cookie's CSRF tokens (random, per process).
    pub csrf_key: [u8; 32],
    /// Each hook's last `$deliveries` record with its time, for the status page (kept by
    /// `status::note_delivery`).
    pub last_deliveries: HashMap<String, crate::hooks::intake::PublishedRecord>,
    /// Ids for deliveries whose sender gives none.
    pub made_up_ids: crate::hooks::intake::MadeUpIds,
    /// Streams (SSE, WebSocket, long poll) open per client that came through a trusted proxy:
    /// at accept only the proxy's address is known, so its clients are held to
    /// `limits.max_connections_per_ip` here, once their address is resolved.
    streams_via_proxy: HashMap<std::net::IpAddr, u32>,
    /// One-time tickets: this node's outstanding ones, and the used signed ones.
    tickets: crate::auth::Tickets,
    date: crate::http::response::DateCache,
    last_seq: u64,
}

/// Event type of the marker journalled where run output was left out of the journal
/// (`{"run","lines","bytes","limit"}`); seen in `$runs/{id}` history after a restart.
pub const OUTPUT_GAP_TYPE: &str = "output-not-journalled";

/// What happens once a journal record is durable (with a journal, nothing a client could see
/// or that could not be taken back happens before).
enum Held {
    /// Into history and out to subscribers.
    Event(Rc<Event>),
    /// Into the idempotency window (by its dedup key) and the stored deliveries.
    Delivery(Box<crate::hooks::stored::Stored>, String),
    /// The delivery's run may start.
    Run(crate::runner::sched::RunId),
    /// An id given to a journal-only record (`Hub::reserve_id`): the hub's head may pass it.
    Reserved,
}

/// Where an answer that waits for durability stands (see [`App::ack_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// Not yet.
    Pending,
    /// Durable; in a cluster, with the id the log gave the (first) event.
    Done(Option<u64>),
    /// In a cluster: a delivery with the same id was accepted before, by some node.
    Duplicate,
    /// Not acknowledged (why, for the 503).
    Failed(&'static str),
}

/// Most bytes of data a published event may have to fit one journal record with `topic` and
/// event type `kind` (the rest of the record is the frame's fixed part and two bytes of flags).
pub fn max_event_data(topic: &str, kind: &str) -> usize {
    use crate::journal::record::{FIXED_BODY_LEN, MAX_BODY_LEN};
    MAX_BODY_LEN.saturating_sub(FIXED_BODY_LEN + topic.len() + 2 + kind.len().min(255))
}

/// The (hook, delivery id) of a `$deliveries` record that accepted a delivery as it arrived
/// (not a replay), if `data` is one.
fn accepted_delivery(data: &str) -> Option<(String, String)> {
    let r = crate::hooks::intake::DeliveryRecord::read(data)?;
    (r.outcome == crate::hooks::intake::Verdict::Accepted && !r.replay).then_some((r.hook, r.delivery))
}

impl App {
    /// Builds the state from a validated config; ids start from the clock (see `Hub::new`).
    /// Run pipes register with `registry`.
    pub fn new(cfg: Config, hooks: crate::hooks::intake::Hooks, registry: mio::Registry) -> App {
        let dedup = crate::hooks::dedup::DedupWindow::new(cfg.dedup_window, 100_000);
        let deliveries = crate::hooks::stored::StoredDeliveries::new(cfg.journal.max_delivery_bytes);
        let cfg_rejected = (cfg.journal.max_rejected_deliveries, cfg.journal.max_rejected_bytes);
        let sources = crate::sources::Sources::new(registry.try_clone().ok());
        let runner = crate::runner::Runner::new(cfg.runner.clone(), registry);
        let auth = Auth::new(cfg.tokens.clone(), cfg.public.clone());
        let jwt = crate::jwt::Verifiers::new(cfg.jwt.clone());
        let mut hub = Hub::new(cfg.history.clone(), crate::clock::unix_us());
        hub.set_retain_config(cfg.retain.clone());
        let output_budget = crate::journal::budget::OutputBudget::new(
            cfg.journal.run_output_bytes,
            cfg.journal.run_output_bytes_per_sec,
        );
        let now = Instant::now();
        let mut app = App {
            cfg,
            auth,
            jwt,
            hub,
            metrics: Metrics::default(),
            started: now,
            now,
            outbox: Vec::new(),
            runner,
            sources,
            hooks,
            dedup,
            run_waiters: HashMap::new(),
            journal: None,
            output_budget,
            durable_waiters: std::collections::BTreeMap::new(),
            cluster: None,
            batch: None,
            settled: std::collections::BTreeMap::new(),
            if_duplicate: HashMap::new(),
            log_pending: HashMap::new(),
            resets: Vec::new(),
            unstarted: std::collections::VecDeque::new(),
            was_runner: false,
            held_runs: std::collections::VecDeque::new(),
            held: std::collections::VecDeque::new(),
            unconfirmed: std::collections::HashSet::new(),
            dropped_lines: 0,
            copied_rotations: 0,
            rejected: crate::hooks::stored::RecentRequests::new(cfg_rejected.0, cfg_rejected.1),
            csrf_key: {
                let mut k = [0u8; 32];
                let _ = crate::sys::random_bytes(&mut k);
                k
            },
            deliveries,
            last_deliveries: HashMap::new(),
            made_up_ids: crate::hooks::intake::MadeUpIds::random(),
            streams_via_proxy: HashMap::new(),
            tickets: crate::auth::Tickets::default(),
            date: crate::http::response::DateCache::default(),
            last_seq: 0,
        };
        app.tick();
        app
    }

    /// Updates `now` and, once a second, the `Date` header value.
    pub fn tick(&mut self) {
        self.now = Instant::now();
        self.date.update(crate::clock::unix_ms() / 1000);
    }

    /// The current `Date` header value.
    pub fn date(&self) -> &str {
        self.date.get()
    }

    /// Issues a one-time ticket standing for `credential` (see [`crate::auth::Tickets`]): a
    /// configured token's is signed with the cluster's shared key once it is known (any node
    /// takes it); a JWT's, and any without a cluster, is kept here and ends with the JWT.
    pub fn issue_ticket(&mut self, credential: crate::auth::Credential) -> Option<String> {
        use crate::auth::Credential;
        match (&credential, self.cluster.as_ref().and_then(|c| c.shared_key())) {
            (Credential::Token(id), Some(key)) => self.tickets.issue_signed(key, id, self.now, crate::clock::unix_ms()),
            (Credential::Token(_), None) => self.tickets.issue_for(credential, self.now, crate::auth::TICKET_TTL),
            (Credential::Jwt(g), _) => {
                let left = g.expires.map_or(crate::auth::TICKET_TTL, |exp| {
                    std::time::Duration::from_secs(exp.saturating_sub(crate::clock::unix_ms() / 1000))
                });
                self.tickets.issue_for(credential, self.now, left)
            }
        }
    }

    /// Redeems a ticket once: the token it stands for, if it is valid and unexpired. A signed
    /// ticket's use is appended to the shared log, so the other nodes refuse it too once they
    /// read it (a use on two nodes within the log's few milliseconds is not caught).
    pub fn redeem_ticket(&mut self, ticket: &str) -> Option<crate::auth::Credential> {
        if !crate::auth::is_signed_ticket(ticket) {
            return self.tickets.redeem(ticket, self.now);
        }
        let c = self.cluster.as_mut()?;
        let Some(key) = c.shared_key() else {
            log::debug!("tickets: a signed ticket before this node read the cluster's shared key; refused");
            return None;
        };
        if let Some(why) = c.refusal() {
            // The other nodes could not be told of its use.
            log::debug!("tickets: a signed ticket refused: {why}");
            return None;
        }
        let now_ms = crate::clock::unix_ms();
        match self.tickets.redeem_signed(key, ticket, &self.auth, now_ms) {
            Ok(r) => {
                let entry = crate::cluster::NewEntry {
                    kind: crate::cluster::Kind::TicketUsed,
                    topic: String::new(),
                    data: crate::auth::encode_ticket_use(&r.nonce, r.expires_ms),
                    time_ms: now_ms,
                };
                // Its outcome is nobody's to wait for (forgotten with the daemon's own appends).
                c.append(&[entry], None);
                Some(crate::auth::Credential::Token(r.token))
            }
            Err(why) => {
                log::debug!("tickets: a signed ticket refused: {why:?}");
                None
            }
        }
    }

    /// Another node (or this one) used the signed ticket with `nonce`, valid until
    /// `expires_ms`: it is refused here from now on.
    pub(crate) fn note_ticket_used(&mut self, nonce: crate::auth::TicketNonce, expires_ms: u64) {
        self.tickets.mark_used(nonce, expires_ms, crate::clock::unix_ms());
    }

    /// Whether a connection from a trusted proxy at `peer` (client `client`, resolved from its
    /// headers) may start a stream: Ok(true) when it was counted (release it with
    /// [`App::close_stream`]), Ok(false) when it need not be (a direct connection, already
    /// counted at accept), Err(open) when the client holds `max_connections_per_ip` already.
    pub fn open_stream(&mut self, peer: std::net::IpAddr, client: std::net::IpAddr) -> Result<bool, u32> {
        let peer = crate::auth::canonical(peer);
        if client == peer || !self.cfg.trusted_proxies.iter().any(|c| c.contains(peer)) {
            return Ok(false);
        }
        let open = self.streams_via_proxy.entry(client).or_default();
        if *open as usize >= self.cfg.limits.max_connections_per_ip {
            return Err(*open);
        }
        *open += 1;
        Ok(true)
    }

    /// A stream counted by [`App::open_stream`] ended.
    pub fn close_stream(&mut self, client: std::net::IpAddr) {
        if let Some(n) = self.streams_via_proxy.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                self.streams_via_proxy.remove(&client);
            }
        }
    }

    /// Publishes the log sources' lines; while the journal refuses work they are dropped (the
    /// queue of held events must stay bounded).
    pub fn pump_sources(&mut self) {
        let refusing = self.work_refusal().is_some();
        for (topic, kind, data, is_json) in std::mem::take(&mut self.sources.out) {
            if refusing {
                self.dropped_lines += 1;
                continue;
            }
            self.publish(&topic, kind, data, is_json);
        }
    }

    /// Publishes what the runner produced (output lines and state changes). Every line goes to
    /// subscribers and the journal gets what `output_budget` allows, with a marker where it left
    /// lines out; while the journal refuses work, output lines are not published at all (the
    /// run's own log keeps them): they are the one input nobody can be told to send again, and
    /// the queue of held events must stay bounded.
    pub fn pump_runner(&mut self) {
        let refusing = self.work_refusal().is_some();
        for (topic, kind, data) in std::mem::take(&mut self.runner.out) {
            if refusing && topic.starts_with("$runs/") {
                if self.dropped_lines == 0 {
                    log::warn!("journal: not accepting work; run output lines go to the runs' logs only");
                }
                self.dropped_lines += 1;
                continue;
            }
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
                    // Not journalled, but still behind every held event before it: history
                    // and subscribers get events in id order.
                    let ev = self.hub.make(&topic, kind, data, true, crate::clock::unix_ms());
                    self.metrics.events_published += 1;
                    self.held.push_back((self.last_seq, Held::Event(ev)));
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
    /// history says what is missing. Live subscribers had every line and do not get it; the id
    /// is held like an event's so that the hub's head passes it only in order.
    fn journal_gap(&mut self, g: &crate::journal::budget::Gap) {
        log::debug!("journal: {} line(s) ({} bytes) of run {} not journalled ({})", g.lines, g.bytes, g.run, g.reason);
        let Some(j) = self.journal.as_mut() else { return };
        let data =
            serde_json::json!({ "run": g.run, "lines": g.lines, "bytes": g.bytes, "limit": g.reason }).to_string();
        let id = self.hub.reserve_id();
        let rec = crate::journal::Record {
            kind: crate::journal::record::Kind::Event,
            id,
            time_ms: crate::clock::unix_ms(),
            topic: format!("$runs/{}", g.run),
            data: encode_event_data(OUTPUT_GAP_TYPE, true, &data),
        };
        if let Ok(seq) = j.append_owned(rec) {
            self.last_seq = seq;
        }
        self.held.push_back((self.last_seq, Held::Reserved));
    }

    /// Why new work must be refused now (503), if it must: the journal has failed, or its
    /// queue of records not yet durable is over `journal.max_queued_bytes`. None without a
    /// journal.
    pub fn work_refusal(&self) -> Option<&'static str> {
        if let Some(c) = &self.cluster {
            return c.refusal();
        }
        let j = self.journal.as_ref()?;
        if j.is_failed() {
            Some("the journal cannot write; not accepted, send again later")
        } else if j.queued_bytes() > self.cfg.journal.max_queued_bytes {
            Some("the journal is behind; not accepted, send again later")
        } else {
            None
        }
    }

    /// Publishes an event. Without a journal it goes into history and out to subscribers at
    /// once. With one, it gets its id now, its record is queued, and history and subscribers
    /// get it only once that record is durable ([`App::release_durable`]), in id order; a
    /// publisher's acknowledgement waits for [`App::last_seq`].
    pub fn publish(&mut self, topic: &str, kind: &str, data: String, data_is_json: bool) -> Rc<Event> {
        self.publish_event(topic, kind, data, data_is_json, false)
    }

    /// [`App::publish`], and with `retain` the event becomes its topic's state (empty data
    /// clears it) once it is committed, here, after a restart and on every node of a cluster.
    pub fn publish_event(
        &mut self,
        topic: &str,
        kind: &str,
        data: String,
        data_is_json: bool,
        retain: bool,
    ) -> Rc<Event> {
        self.metrics.events_published += 1;
        if self.cluster.is_some() {
            // Its id is the log's to give: history and subscribers get it when it is read back.
            let entry = crate::cluster::NewEntry {
                kind: crate::cluster::Kind::Event,
                topic: topic.to_string(),
                data: encode_event(kind, data_is_json, retain, &data),
                time_ms: crate::clock::unix_ms(),
            };
            let ev = self.hub.provisional(topic, kind, data, data_is_json, entry.time_ms);
            self.append(entry);
            return ev;
        }
        let ev = self.hub.make(topic, kind, data, data_is_json, crate::clock::unix_ms());
        if retain {
            ev.mark_retained();
        }
        if self.journal.is_none() {
            self.hub.commit(ev.clone());
            self.outbox.push(ev.clone());
            return ev;
        }
        let rec = crate::journal::Record {
            kind: crate::journal::record::Kind::Event,
            id: ev.id,
            time_ms: ev.time_ms,
            topic: ev.topic.to_string(),
            data: encode_event(&ev.kind, ev.data_is_json, retain, &ev.data),
        };
        if let Some(j) = self.journal.as_mut() {
            match j.append_owned(rec) {
                Ok(seq) => self.last_seq = seq,
                // Client input is checked against the limit before it gets here; what the
                // daemon itself publishes goes out after everything before it, not durable.
                Err(e) => log::warn!("journal: event {} on {topic:?} not journalled: {e}", ev.id),
            }
        }
        self.held.push_back((self.last_seq, Held::Event(ev.clone())));
        ev
    }

    /// Appends to the cluster log, or to the batch being gathered.
    fn append(&mut self, entry: crate::cluster::NewEntry) {
        if let Some((entries, _)) = self.batch.as_mut() {
            entries.push(entry);
        } else if let Some(c) = self.cluster.as_mut() {
            self.last_seq = c.append(&[entry], None);
        }
    }

    /// Gathers what is published (and the delivery record) until [`App::end_batch`] into one
    /// append to the cluster log: all of it or none, refused as a whole when `dedup` (a
    /// delivery's hook and key) was appended before by any node. Without a cluster, nothing.
    pub fn begin_batch(&mut self, dedup: Option<String>) {
        if self.cluster.is_some() {
            self.batch = Some((Vec::new(), dedup));
        }
    }

    /// Adds an accepted delivery's request to the batch: the node that runs commands starts
    /// its run from it when it reads it.
    pub fn batch_delivery(&mut self, d: &crate::hooks::stored::Stored) {
        let entry = crate::cluster::NewEntry {
            kind: crate::cluster::Kind::Delivery,
            topic: d.hook.clone(),
            data: d.to_json().into_bytes(),
            time_ms: d.time_ms,
        };
        self.append(entry);
    }

    /// Appends the batch; returns its sequence (the answer waits for it), 0 without a cluster.
    pub fn end_batch(&mut self) -> u64 {
        let (Some((entries, dedup)), Some(c)) = (self.batch.take(), self.cluster.as_mut()) else { return 0 };
        if entries.is_empty() {
            return 0;
        }
        self.last_seq = c.append(&entries, dedup.as_deref());
        self.last_seq
    }

    /// The answer to a delivery whose append the cluster's log refused as a duplicate (another
    /// node accepted the same delivery first); its metrics move from accepted to duplicate.
    pub fn duplicate_answer(&mut self, seq: u64) -> crate::http::response::Response {
        let Some((hook, resp)) = self.if_duplicate.remove(&seq) else {
            return crate::http::response::Response::json(200, &serde_json::json!({ "duplicate": true }));
        };
        if let Some(n) = self.metrics.deliveries.get_mut(&(hook.clone(), "accepted")) {
            *n = n.saturating_sub(1);
        }
        *self.metrics.deliveries.entry((hook, "duplicate")).or_default() += 1;
        resp
    }

    /// Where a new subscriber without a cursor starts: the newest event. A cluster node that
    /// has not read the shared log to its end yet (Redis was away when it started) starts it
    /// at the clock instead, so that what it reads later from before the subscriber came is
    /// not sent as news (the log's ids are Redis's clock in microseconds).
    pub fn live_cursor(&self) -> u64 {
        let head = self.hub.last_id();
        match &self.cluster {
            Some(c) if !c.caught_up() => head.max(crate::clock::unix_ms() * 1000),
            _ => head,
        }
    }

    /// Where the answer waiting for record (or append) `seq` stands.
    pub fn ack_of(&self, seq: u64) -> Ack {
        if let Some(c) = &self.cluster {
            return match self.settled.get(&seq) {
                _ if seq == 0 => Ack::Done(None),
                None if seq <= c.settled_through() => Ack::Done(None),
                None => Ack::Pending,
                Some(crate::cluster::Appended::Ok(id)) => Ack::Done(Some(*id)),
                Some(crate::cluster::Appended::Duplicate) => Ack::Duplicate,
                Some(crate::cluster::Appended::Failed) => {
                    Ack::Failed("Redis did not confirm it; not acknowledged, send again later")
                }
            };
        }
        match &self.journal {
            None => Ack::Done(None),
            Some(j) if j.durable_seq() >= seq => Ack::Done(None),
            Some(j) if j.is_failed() => Ack::Failed("the journal cannot write; not acknowledged, send again later"),
            Some(_) => Ack::Pending,
        }
    }

    /// Holds an accepted delivery's effects (idempotency window, stored copy, its run) until
    /// journal record `seq` is durable.
    pub fn hold_delivery(
        &mut self,
        seq: u64,
        kept: Option<(crate::hooks::stored::Stored, String)>,
        run: Option<crate::runner::sched::RunId>,
    ) {
        if self.cluster.is_some() {
            // Every node (this one too) applies the delivery when it reads it from the log.
            return;
        }
        if let Some((k, key)) = kept {
            self.unconfirmed.insert((k.hook.clone(), key.clone()));
            self.held.push_back((seq, Held::Delivery(Box::new(k), key)));
        }
        if let Some(r) = run {
            self.held.push_back((seq, Held::Run(r)));
        }
        if self.journal.is_none() {
            // Nothing to wait for: a resend in this same turn must already be a duplicate.
            self.release_durable();
        }
    }

    /// Re-appends every topic's state to the journal (see [`crate::journal::Journal::copy_states`]):
    /// the committed states, then those of retained events still on their way to the disk, so
    /// the copy is the state as of the journal's last record.
    pub fn copy_states(&mut self) {
        let Some(j) = self.journal.as_mut() else { return };
        self.copied_rotations = j.rotations();
        let mut states: HashMap<Rc<str>, Rc<Event>> =
            self.hub.states().map(|ev| (ev.topic.clone(), ev.clone())).collect();
        for (_, held) in &self.held {
            if let Held::Event(ev) = held {
                if ev.retained() {
                    if ev.data.is_empty() {
                        states.remove(&ev.topic);
                    } else {
                        states.insert(ev.topic.clone(), ev.clone());
                    }
                }
            }
        }
        let mut states: Vec<Rc<Event>> = states.into_values().collect();
        states.sort_unstable_by_key(|ev| ev.id);
        let records = states.into_iter().map(|ev| crate::journal::Record {
            kind: crate::journal::record::Kind::State,
            id: ev.id,
            time_ms: ev.time_ms,
            topic: ev.topic.to_string(),
            data: encode_event(&ev.kind, ev.data_is_json, true, &ev.data),
        });
        j.copy_states(records);
    }

    /// [`App::copy_states`] when the journal rotated since the last copy.
    pub fn copy_states_after_rotation(&mut self) {
        if self.journal.as_ref().is_some_and(|j| j.rotations() != self.copied_rotations) {
            self.copy_states();
        }
    }

    /// Carries out every held effect whose journal record is durable, in order: events go to
    /// history and the outbox (fanned out this turn, with the acknowledgements), deliveries
    /// enter the idempotency window, runs may start. Nothing is released while the journal
    /// has failed; what it still holds is released if it recovers and writes it.
    pub fn release_durable(&mut self) {
        let durable = match &self.journal {
            Some(j) => j.durable_seq(),
            None => u64::MAX,
        };
        while self.held.front().is_some_and(|(seq, _)| *seq <= durable) {
            let Some((_, h)) = self.held.pop_front() else { break };
            match h {
                Held::Event(ev) => {
                    self.hub.commit(ev.clone());
                    self.outbox.push(ev);
                }
                Held::Delivery(k, key) => {
                    self.unconfirmed.remove(&(k.hook.clone(), key.clone()));
                    self.dedup.insert(&k.hook, &key, self.now);
                    self.deliveries.insert(*k);
                }
                Held::Run(r) => self.runner.release(r, self.now),
                Held::Reserved => self.hub.commit_reserved(),
            }
        }
        if self.dropped_lines > 0 && self.work_refusal().is_none() {
            log::warn!("journal: accepting work again; {} run output line(s) were not published", self.dropped_lines);
            self.dropped_lines = 0;
        }
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
        if cfg.reuse_port != self.cfg.reuse_port {
            notes.push("reuse_port changes need a restart".to_string());
            cfg.reuse_port = self.cfg.reuse_port;
        }
        if cfg.state_dir != self.cfg.state_dir {
            notes.push("state_dir changes need a restart".to_string());
            cfg.state_dir = self.cfg.state_dir.clone();
        }
        cfg.journal = self.cfg.journal.clone();
        if cfg.cluster != self.cfg.cluster {
            notes.push("cluster changes need a restart".to_string());
            cfg.cluster = self.cfg.cluster.clone();
        }
        self.auth = Auth::new(cfg.tokens.clone(), cfg.public.clone());
        self.jwt = crate::jwt::Verifiers::new(cfg.jwt.clone());
        self.hub.set_history_config(cfg.history.clone());
        self.hub.set_retain_config(cfg.retain.clone());
        self.runner.set_config(cfg.runner.clone());
        self.sources.set_config(&cfg.sources, self.now);
        self.dedup.set_max_age(cfg.dedup_window);
        self.hooks = hooks;
        log::set_max_level(cfg.log_level);
        crate::logger::set_format(cfg.log_format);
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
                            // The key the hook deduplicates by now (`dedup` may have changed).
                            let key = match self.hooks.get(&d.hook) {
                                Some(h) => h.dedup_key(&d.delivery, &d.body),
                                None => d.delivery.clone(),
                            };
                            self.dedup.insert(&d.hook, &key, at);
                        }
                        self.deliveries.insert(d);
                        st.deliveries += 1;
                    }
                }
                let retained = event_data_retained(&rec.data);
                if retained {
                    st.newer_state(&rec.topic, rec.id);
                }
                if self.hub.restore(rec.id, &rec.topic, &kind, data, is_json, retained, rec.time_ms) {
                    st.events += 1;
                }
            }
            Kind::State => {
                // A copy made after a rotation. One that was taken while a newer retained event
                // was on its way to the disk comes after that event: the newer one stands.
                let Some((kind, is_json, data)) = decode_event_data(&rec.data) else { return };
                if st.newer_state(&rec.topic, rec.id) {
                    self.hub.restore_state(rec.id, &rec.topic, &kind, data, is_json, rec.time_ms);
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
        if self.journal.is_some() || self.cluster.is_some() {
            self.last_seq
        } else {
            0
        }
    }

    /// The journal record of an accepted delivery's request (for replay after a restart), or
    /// why it cannot be one; None without a journal.
    pub fn delivery_record(
        &self,
        d: &crate::hooks::stored::Stored,
    ) -> Option<Result<crate::journal::Record, crate::journal::RecordError>> {
        self.journal.as_ref()?;
        let rec = crate::journal::Record {
            kind: crate::journal::record::Kind::Delivery,
            id: 0,
            time_ms: d.time_ms,
            topic: d.hook.chars().take(256).collect(),
            data: d.to_json().into_bytes(),
        };
        Some(rec.check().map(|()| rec))
    }

    /// Appends a record from [`App::delivery_record`]; returns its seq (0 without a journal).
    pub fn journal_delivery(&mut self, rec: crate::journal::Record) -> u64 {
        let Some(j) = self.journal.as_mut() else { return 0 };
        match j.append_owned(rec) {
            Ok(seq) => {
                self.last_seq = seq;
                seq
            }
            Err(_) => 0,
        }
    }
}
