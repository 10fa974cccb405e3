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
    /// Requests whose answer waits for their journal record to be durable: seq → tokens.
    pub durable_waiters: std::collections::BTreeMap<u64, Vec<usize>>,
    /// Accepted webhook deliveries kept for replay (bounded by bytes), by delivery id.
    pub deliveries: crate::hooks::stored::StoredDeliveries,
    /// Each hook's last `$deliveries` record with its time and verification result, for the
    /// status page (kept by `status::note_delivery`).
    pub last_deliveries: HashMap<String, serde_json::Value>,
    /// Streams (SSE, WebSocket, long poll) open per client that came through a trusted proxy:
    /// at accept only the proxy's address is known, so its clients are held to
    /// `limits.max_connections_per_ip` here, once their address is resolved.
    streams_via_proxy: HashMap<std::net::IpAddr, u32>,
    /// Outstanding one-time tickets: SHA-256 of the ticket → (the token it stands for, expiry).
    tickets: HashMap<[u8; 32], (crate::auth::TokenId, Instant)>,
    date: String,
    date_secs: u64,
    last_seq: u64,
}

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
            durable_waiters: std::collections::BTreeMap::new(),
            deliveries,
            last_deliveries: HashMap::new(),
            streams_via_proxy: HashMap::new(),
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

    /// Publishes what the runner produced (output lines and state changes).
    pub fn pump_runner(&mut self) {
        for (topic, kind, data) in std::mem::take(&mut self.runner.out) {
            self.publish(&topic, kind, data, true);
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

    /// Rebuilds state from the journal read at start: topic history (ids continue after it),
    /// run records (unfinished ones become `interrupted`), stored deliveries and the
    /// idempotency window. Returns (events, deliveries, runs) restored.
    ///
    /// A delivery counts only once its `$deliveries` record (`"outcome":"accepted"`) follows its
    /// delivery record: the two are appended in one turn of the loop, but the writer thread may
    /// make them durable in two batches, and the 202 waits for the later one. A crash between
    /// them leaves a delivery that was never acknowledged; it must not be a duplicate when the
    /// sender tries again (nor be replayable: its events were never published).
    pub fn restore(&mut self, records: Vec<crate::journal::Record>) -> (usize, usize, usize) {
        use crate::hooks::stored::Stored;
        use crate::journal::record::Kind;
        let (mut events, mut deliveries) = (0, 0);
        let mut runs = Vec::new();
        // Delivery records waiting for their accepted outcome, by (hook, delivery id).
        let mut pending: HashMap<(String, String), Stored> = HashMap::new();
        let now_ms = crate::clock::unix_ms();
        for rec in records {
            match rec.kind {
                Kind::Event => {
                    let Some((kind, is_json, data)) = decode_event_data(&rec.data) else { continue };
                    if rec.topic == "$runs" {
                        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&data) {
                            runs.push(v);
                        }
                    }
                    if rec.topic == "$deliveries" && !pending.is_empty() {
                        if let Some(d) = accepted_delivery(&data).and_then(|key| pending.remove(&key)) {
                            let age = Duration::from_millis(now_ms.saturating_sub(d.time_ms));
                            if age < self.cfg.dedup_window {
                                let at = self.now.checked_sub(age).unwrap_or(self.now);
                                self.dedup.insert(&d.hook, &d.delivery, at);
                            }
                            self.deliveries.insert(d);
                            deliveries += 1;
                        }
                    }
                    if self.hub.restore(rec.id, &rec.topic, &kind, data, is_json, rec.time_ms) {
                        events += 1;
                    }
                }
                Kind::Delivery => {
                    let Some(d) = Stored::from_json(&rec.data) else { continue };
                    pending.insert((d.hook.clone(), d.delivery.clone()), d);
                }
                Kind::Run => {}
            }
        }
        if !pending.is_empty() {
            log::warn!(
                "journal: {} delivery record(s) without their outcome (cut off before they were acknowledged) \
                 dropped; their senders will retry",
                pending.len()
            );
        }
        let run_count = runs.len();
        self.runner.restore(runs);
        (events, deliveries, run_count)
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
