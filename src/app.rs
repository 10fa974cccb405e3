//! The state every handler works on, owned by the loop: configuration, auth, the hub, metrics,
//! the cached `Date` header, and the outbox of events published during this turn of the loop
//! (fanned out by the loop afterwards, so a handler never touches another connection).

use crate::auth::Auth;
use crate::config::Config;
use crate::hub::{Event, Hub};
use crate::metrics::Metrics;
use std::rc::Rc;
use std::time::Instant;

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
    date: String,
    date_secs: u64,
}

impl App {
    /// Builds the state from a validated config; ids start from the clock (see `Hub::new`).
    pub fn new(cfg: Config) -> App {
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

    /// Publishes an event and queues it for fan-out.
    pub fn publish(&mut self, topic: &str, kind: &str, data: String, data_is_json: bool) -> Rc<Event> {
        let ev = self.hub.publish(topic, kind, data, data_is_json, crate::clock::unix_ms());
        self.metrics.events_published += 1;
        self.outbox.push(ev.clone());
        ev
    }
}
