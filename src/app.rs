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
    /// Outstanding one-time tickets: SHA-256 of the ticket → (token index, expiry).
    tickets: HashMap<[u8; 32], (usize, Instant)>,
    date: String,
    date_secs: u64,
}

impl App {
    /// Builds the state from a validated config; ids start from the clock (see `Hub::new`).
    /// Run pipes register with `registry`.
    pub fn new(cfg: Config, hooks: crate::hooks::intake::Hooks, registry: mio::Registry) -> App {
        let dedup = crate::hooks::dedup::DedupWindow::new(cfg.dedup_window, 100_000);
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
            tickets: HashMap::new(),
            date: String::new(),
            date_secs: 0,
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
    pub fn issue_ticket(&mut self, token: usize) -> Option<String> {
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

    /// Redeems a ticket once: the token index it stands for, if it is valid and unexpired.
    pub fn redeem_ticket(&mut self, ticket: &str) -> Option<usize> {
        let (token, exp) = self.tickets.remove(&crate::auth::token_hash(ticket))?;
        (exp > self.now).then_some(token)
    }

    /// Publishes what the runner produced (output lines and state changes).
    pub fn pump_runner(&mut self) {
        for (topic, kind, data) in std::mem::take(&mut self.runner.out) {
            self.publish(&topic, kind, data, true);
        }
    }

    /// Publishes an event and queues it for fan-out.
    pub fn publish(&mut self, topic: &str, kind: &str, data: String, data_is_json: bool) -> Rc<Event> {
        let ev = self.hub.publish(topic, kind, data, data_is_json, crate::clock::unix_ms());
        self.metrics.events_published += 1;
        self.outbox.push(ev.clone());
        ev
    }
}
