//! Counters and gauges, rendered in the Prometheus text exposition format (version 0.0.4).
//! Plain integers owned by the loop: no atomics, no registry crate.

use crate::hub::HubStats;
use std::collections::BTreeMap;
use std::fmt::Write;

/// How a connection is being used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain request/response HTTP.
    Http,
    /// A Server-Sent Events stream.
    Sse,
    /// A WebSocket.
    Ws,
    /// A held long-poll request.
    Poll,
}

impl Transport {
    const ALL: [Transport; 4] = [Transport::Http, Transport::Sse, Transport::Ws, Transport::Poll];

    fn label(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Sse => "sse",
            Transport::Ws => "ws",
            Transport::Poll => "poll",
        }
    }
}

/// A Prometheus histogram with fixed buckets (seconds).
#[derive(Debug, Clone)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

/// Buckets for event delivery latency: 100 µs to 2.5 s.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// Buckets for deploy run durations: 100 ms to an hour.
pub const RUN_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

impl Histogram {
    /// An empty histogram over `bounds` (upper bounds, increasing).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    /// Records one observation in seconds.
    pub fn observe(&mut self, secs: f64) {
        if let Some(i) = self.bounds.iter().position(|&b| secs <= b) {
            self.counts[i] += 1;
        }
        self.sum += secs;
        self.count += 1;
    }

    /// Writes `name_bucket`, `name_sum` and `name_count` lines with extra `labels` (`a="b",` or empty).
    pub fn render(&self, s: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c;
            let _ = writeln!(s, "{name}_bucket{{{labels}le=\"{b}\"}} {cumulative}");
        }
        let _ = writeln!(s, "{name}_bucket{{{labels}le=\"+Inf\"}} {}", self.count);
        let plain = labels.trim_end_matches(',');
        let braces = if plain.is_empty() { String::new() } else { format!("{{{plain}}}") };
        let _ = writeln!(s, "{name}_sum{braces} {}\n{name}_count{braces} {}", self.sum, self.count);
    }
}

/// Everything `/metrics` reports that the loop counts itself.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open connections by transport.
    pub active: [u64; 4],
    /// Connections ever accepted (by the transport they ended as).
    pub total: [u64; 4],
    /// Connections refused at accept (limits).
    pub refused: u64,
    /// Events published.
    pub events_published: u64,
    /// Event messages queued to subscribers, by transport.
    pub messages_sent: [u64; 4],
    /// Subscriber queues written by the fan-out, by transport: with `messages_sent`, how many
    /// events a write carries (more than one when a burst outpaces the writes).
    pub subscriber_writes: [u64; 4],
    /// Subscribers cut loose for not reading.
    pub slow_consumer_disconnects: [u64; 4],
    /// HTTP responses by status code.
    pub responses: BTreeMap<u16, u64>,
    /// Webhook deliveries by hook and outcome.
    pub deliveries: BTreeMap<(String, &'static str), u64>,
    /// Signature failures by hook and reason.
    pub signature_failures: BTreeMap<(String, &'static str), u64>,
    /// Time from publish to the write to the last of its subscribers.
    pub delivery_latency: Option<Histogram>,
    /// Deploy run durations by hook.
    pub run_durations: BTreeMap<String, Histogram>,
    /// JWTs verified, by verifier name.
    pub jwt_verified: BTreeMap<String, u64>,
    /// JWTs refused, by reason (`jwt::Refusal::as_str`).
    pub jwt_refused: BTreeMap<&'static str, u64>,
    /// Streams ended because their credential expired, by transport.
    pub sessions_expired: [u64; 4],
    /// What clients sent, by transport: HTTP requests, WebSocket data messages.
    pub messages_received: [u64; 4],
    /// Failed writes to a client (reset, broken pipe) by transport.
    pub send_errors: [u64; 4],
    /// Requests or frames that broke the protocol (malformed HTTP, a WebSocket protocol error,
    /// a WebSocket op that is not one), by transport.
    pub protocol_errors: [u64; 4],
    /// Time from a webhook's request to its answer (or to its run being queued), by hook and
    /// source (see [`webhook_source`]).
    pub webhook_durations: BTreeMap<(String, &'static str), Histogram>,
    /// Runs started again by `POST /api/runs/{id}/retry`, by hook.
    pub run_retries: BTreeMap<String, u64>,
    /// Deliveries replayed by `POST /api/deliveries/…/replay`, by hook.
    pub delivery_replays: BTreeMap<String, u64>,
}

/// The `source` label of a webhook: the hook's provider when it has one (the sender is then
/// that service), else the class of the client's address. Never the address itself: one series
/// per sender would grow without bound with whoever calls; providers and three classes are a
/// dozen values at most.
pub fn webhook_source(provider: Option<&str>, ip: std::net::IpAddr) -> &'static str {
    use std::net::IpAddr;
    if let Some(p) = provider {
        // The provider names the config accepts (`hooks::providers::Provider::parse`).
        return match p {
            "github" => "github",
            "gitlab" => "gitlab",
            "gitea" => "gitea",
            "forgejo" => "forgejo",
            "bitbucket" => "bitbucket",
            "stripe" => "stripe",
            "slack" => "slack",
            "standard-webhooks" | "svix" => "standard-webhooks",
            _ => "hmac",
        };
    }
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(a) if a.is_loopback() => "loopback",
        IpAddr::V4(a) if a.is_private() || a.is_link_local() || a.octets()[0] == 100 && a.octets()[1] & 0xc0 == 64 => {
            "private"
        }
        IpAddr::V6(a) if a.is_loopback() => "loopback",
        // fc00::/7 (unique local) and fe80::/10 (link local).
        IpAddr::V6(a) if a.segments()[0] & 0xfe00 == 0xfc00 || a.segments()[0] & 0xffc0 == 0xfe80 => "private",
        _ => "public",
    }
}

impl Metrics {
    /// Counts a response.
    pub fn response(&mut self, status: u16) {
        *self.responses.entry(status).or_default() += 1;
    }

    /// Counts a JWT's verification: by the verifier that took it, or by why it was refused.
    pub fn jwt_checked(&mut self, verified: Result<&str, crate::jwt::Refusal>) {
        match verified {
            Ok(name) => *self.jwt_verified.entry(name.to_string()).or_default() += 1,
            Err(r) => *self.jwt_refused.entry(r.as_str()).or_default() += 1,
        }
    }

    /// Moves one open connection from one transport to another.
    pub fn switch(&mut self, from: Transport, to: Transport) {
        self.active[from as usize] = self.active[from as usize].saturating_sub(1);
        self.active[to as usize] += 1;
        self.total[to as usize] += 1;
    }

    /// Records one webhook's processing time.
    pub fn webhook_took(&mut self, hook: &str, source: &'static str, secs: f64) {
        let key = (hook.to_string(), source);
        self.webhook_durations.entry(key).or_insert_with(|| Histogram::new(LATENCY_BUCKETS)).observe(secs);
    }

    /// Renders the exposition text.
    pub fn render(&self, hub: &HubStats, uptime_secs: u64) -> String {
        let mut s = String::with_capacity(2048);
        let per_transport = |s: &mut String, name: &str, kind: &str, help: &str, v: &[u64; 4]| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for t in Transport::ALL {
                let _ = writeln!(s, "{name}{{transport=\"{}\"}} {}", t.label(), v[t as usize]);
            }
        };
        per_transport(&mut s, "hookcast_connections_active", "gauge", "Open connections.", &self.active);
        per_transport(
            &mut s,
            "hookcast_connections_total",
            "counter",
            "Connections by the transport they used.",
            &self.total,
        );
        per_transport(
            &mut s,
            "hookcast_messages_sent_total",
            "counter",
            "Event messages queued to subscribers.",
            &self.messages_sent,
        );
        per_transport(
            &mut s,
            "hookcast_subscriber_writes_total",
            "counter",
            "Subscriber queues written by the fan-out (several events to a write when a burst outpaces the writes).",
            &self.subscriber_writes,
        );
        per_transport(
            &mut s,
            "hookcast_sessions_expired_total",
            "counter",
            "Streams ended because the JWT (or ticket) they were opened with expired.",
            &self.sessions_expired,
        );
        per_transport(
            &mut s,
            "hookcast_messages_received_total",
            "counter",
            "What clients sent: HTTP requests, WebSocket data messages.",
            &self.messages_received,
        );
        let _ = writeln!(
            s,
            "# HELP hookcast_transport_errors_total Failed sends and protocol errors, by transport.\n\
             # TYPE hookcast_transport_errors_total counter"
        );
        for (kind, v) in [("send", &self.send_errors), ("protocol", &self.protocol_errors)] {
            for t in Transport::ALL {
                let _ = writeln!(
                    s,
                    "hookcast_transport_errors_total{{transport=\"{}\",kind=\"{kind}\"}} {}",
                    t.label(),
                    v[t as usize]
                );
            }
        }
        let _ = writeln!(s, "# HELP hookcast_jwt_verified_total JWTs verified, by verifier.\n# TYPE hookcast_jwt_verified_total counter");
        for (name, n) in &self.jwt_verified {
            let _ = writeln!(s, "hookcast_jwt_verified_total{{verifier=\"{}\"}} {n}", escape(name));
        }
        let _ = writeln!(
            s,
            "# HELP hookcast_jwt_refused_total JWTs refused, by reason.\n# TYPE hookcast_jwt_refused_total counter"
        );
        for (reason, n) in &self.jwt_refused {
            let _ = writeln!(s, "hookcast_jwt_refused_total{{reason=\"{reason}\"}} {n}");
        }
        per_transport(
            &mut s,
            "hookcast_slow_consumer_disconnects_total",
            "counter",
            "Subscribers disconnected because their queue passed its limit.",
            &self.slow_consumer_disconnects,
        );
        let single = |s: &mut String, name: &str, kind: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
        };
        single(
            &mut s,
            "hookcast_connections_refused_total",
            "counter",
            "Connections refused by connection limits.",
            self.refused,
        );
        single(&mut s, "hookcast_events_published_total", "counter", "Events published.", self.events_published);
        single(
            &mut s,
            "hookcast_history_events",
            "gauge",
            "Events held in memory for resume.",
            hub.history_events as u64,
        );
        single(
            &mut s,
            "hookcast_history_bytes",
            "gauge",
            "Bytes counted for events held in memory.",
            hub.history_bytes as u64,
        );
        single(&mut s, "hookcast_topics", "gauge", "Topics with history.", hub.topics as u64);
        single(
            &mut s,
            "hookcast_retained_topics",
            "gauge",
            "Topics with a retained state.",
            hub.retained_topics as u64,
        );
        single(
            &mut s,
            "hookcast_retained_bytes",
            "gauge",
            "Bytes counted for retained states (bounded by retain.max_bytes).",
            hub.retained_bytes as u64,
        );
        single(&mut s, "hookcast_last_event_id", "gauge", "The last event id given out.", hub.last_id);
        single(&mut s, "hookcast_uptime_seconds", "gauge", "Seconds since start.", uptime_secs);
        let _ = writeln!(s, "# HELP hookcast_http_responses_total HTTP responses by status.\n# TYPE hookcast_http_responses_total counter");
        for (status, n) in &self.responses {
            let _ = writeln!(s, "hookcast_http_responses_total{{status=\"{status}\"}} {n}");
        }
        let labelled =
            |s: &mut String, name: &str, help: &str, second: &str, m: &BTreeMap<(String, &'static str), u64>| {
                let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
                for ((hook, label), n) in m {
                    let _ = writeln!(s, "{name}{{hook=\"{}\",{second}=\"{label}\"}} {n}", escape(hook));
                }
            };
        let _ = writeln!(
            s,
            "# HELP hookcast_event_delivery_seconds Time from publish to the write to subscribers' sockets.\n# TYPE hookcast_event_delivery_seconds histogram"
        );
        self.delivery_latency.clone().unwrap_or_else(|| Histogram::new(LATENCY_BUCKETS)).render(
            &mut s,
            "hookcast_event_delivery_seconds",
            "",
        );
        let _ = writeln!(s, "# HELP hookcast_run_duration_seconds Deploy run durations.\n# TYPE hookcast_run_duration_seconds histogram");
        for (hook, h) in &self.run_durations {
            h.render(&mut s, "hookcast_run_duration_seconds", &format!("hook=\"{}\",", escape(hook)));
        }
        let _ = writeln!(
            s,
            "# HELP hookcast_webhook_processing_seconds Time from a webhook's request to its answer (or its run \
             queued), by hook and source (provider, or loopback/private/public).\n\
             # TYPE hookcast_webhook_processing_seconds histogram"
        );
        for ((hook, source), h) in &self.webhook_durations {
            let labels = format!("hook=\"{}\",source=\"{source}\",", escape(hook));
            h.render(&mut s, "hookcast_webhook_processing_seconds", &labels);
        }
        let by_hook = |s: &mut String, name: &str, help: &str, m: &BTreeMap<String, u64>| {
            let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} counter");
            for (hook, n) in m {
                let _ = writeln!(s, "{name}{{hook=\"{}\"}} {n}", escape(hook));
            }
        };
        by_hook(&mut s, "hookcast_run_retries_total", "Runs started again through the API.", &self.run_retries);
        by_hook(&mut s, "hookcast_delivery_replays_total", "Stored deliveries replayed.", &self.delivery_replays);
        labelled(
            &mut s,
            "hookcast_deliveries_total",
            "Webhook deliveries by hook and outcome.",
            "outcome",
            &self.deliveries,
        );
        labelled(
            &mut s,
            "hookcast_signature_failures_total",
            "Webhook signature failures by hook and reason.",
            "reason",
            &self.signature_failures,
        );
        s
    }
}

/// What the runner and the process know, appended to the exposition: dead letters and the
/// descriptor limit (for an alert on connections nearing it).
pub fn render_process(s: &mut String, dead_letters: usize, nofile_limit: Option<u64>) {
    let _ = writeln!(
        s,
        "# HELP hookcast_dead_letters Deliveries whose run failed (or timed out, or was interrupted) and was \
         neither retried nor replayed since.\n# TYPE hookcast_dead_letters gauge\nhookcast_dead_letters {dead_letters}"
    );
    if let Some(n) = nofile_limit {
        let _ = writeln!(
            s,
            "# HELP hookcast_open_files_limit The process's open-file limit (RLIMIT_NOFILE): each connection \
             takes one.\n# TYPE hookcast_open_files_limit gauge\nhookcast_open_files_limit {n}"
        );
    }
}

/// The journal's figures, appended to the exposition when there is a journal.
pub fn render_journal(s: &mut String, j: &crate::journal::Stats) {
    let mut one = |name: &str, kind: &str, help: &str, v: u64| {
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    };
    one("hookcast_journal_disk_bytes", "gauge", "Bytes of journal segments on disk.", j.disk_bytes);
    one("hookcast_journal_segments", "gauge", "Journal segment files.", j.segments);
    one("hookcast_journal_appended_total", "counter", "Records appended to the journal.", j.appended);
    one("hookcast_journal_fsyncs_total", "counter", "fsync calls on journal segments.", j.fsyncs);
    one("hookcast_journal_write_errors_total", "counter", "Failed journal writes.", j.write_errors);
    one("hookcast_journal_queued_bytes", "gauge", "Bytes appended but not durable yet.", j.queued_bytes);
    one(
        "hookcast_journal_failed",
        "gauge",
        "1 while the journal cannot write (acknowledgements get 503).",
        u64::from(j.failed.is_some()),
    );
}

/// The cluster's lines: the Redis links, what was written to and read from the log.
pub fn render_cluster(s: &mut String, c: &crate::cluster::Cluster) {
    let st = c.stats;
    let [w, r] = c.link_stats();
    let runner = c.is_runner(std::time::Instant::now());
    let lines: [(&str, &str, &str, f64); 10] = [
        (
            "hookcast_redis_up",
            "gauge",
            "1 while both Redis links (commands and reader) are connected.",
            f64::from(u8::from(c.is_up())),
        ),
        (
            "hookcast_redis_connects_total",
            "counter",
            "Connections to Redis made (both links; the first ones included).",
            (w.connects + r.connects) as f64,
        ),
        (
            "hookcast_redis_breaks_total",
            "counter",
            "Times a Redis link broke (and was reconnected).",
            (w.breaks + r.breaks) as f64,
        ),
        ("hookcast_redis_commands_total", "counter", "Commands sent to Redis.", (w.commands + r.commands) as f64),
        ("hookcast_redis_script_errors_total", "counter", "Appends Redis refused.", st.script_errors as f64),
        (
            "hookcast_cluster_events_written_total",
            "counter",
            "Entries this node appended to the shared log.",
            st.written as f64,
        ),
        (
            "hookcast_cluster_events_read_total",
            "counter",
            "Entries this node read from the shared log.",
            st.read as f64,
        ),
        (
            "hookcast_cluster_holes_total",
            "counter",
            "Holes in what this node could read (each a reset).",
            st.holes as f64,
        ),
        (
            "hookcast_cluster_read_lag_seconds",
            "gauge",
            "Time from the last entry's append (Redis clock) to this node reading it.",
            st.read_lag_us as f64 / 1e6,
        ),
        (
            "hookcast_cluster_runner",
            "gauge",
            "1 while this node holds the runner role (deploy commands run here).",
            f64::from(u8::from(runner)),
        ),
    ];
    for (name, kind, help, v) in lines {
        // `{v}` prints whole numbers without a fraction, as the other lines are.
        let _ = writeln!(s, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}");
    }
}

/// Escapes a label value (backslash, quote, newline) per the exposition format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        for v in [0.05, 0.5, 0.7, 3.0] {
            h.observe(v);
        }
        let mut s = String::new();
        h.render(&mut s, "x", "hook=\"a\",");
        assert!(s.contains("x_bucket{hook=\"a\",le=\"0.1\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{hook=\"a\",le=\"1\"} 3\n"), "{s}");
        assert!(s.contains("x_bucket{hook=\"a\",le=\"+Inf\"} 4\n"), "{s}");
        assert!(s.contains("x_count{hook=\"a\"} 4"), "{s}");
    }

    #[test]
    fn webhook_sources_are_few() {
        let ip = |s: &str| s.parse().unwrap();
        assert_eq!(webhook_source(Some("svix"), ip("8.8.8.8")), "standard-webhooks");
        assert_eq!(webhook_source(Some("github"), ip("127.0.0.1")), "github");
        for (addr, class) in [
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("::ffff:10.1.2.3", "private"),
            ("192.168.1.9", "private"),
            ("100.64.0.1", "private"),
            ("fd00::1", "private"),
            ("fe80::1", "private"),
            ("8.8.8.8", "public"),
            ("2001:db8::1", "public"),
        ] {
            assert_eq!(webhook_source(None, ip(addr)), class, "{addr}");
        }
    }

    #[test]
    fn exposition_has_types_and_labels() {
        let mut m = Metrics::default();
        m.active[Transport::Http as usize] = 1;
        m.switch(Transport::Http, Transport::Sse);
        m.response(200);
        m.response(404);
        m.response(200);
        let text = m.render(&HubStats::default(), 5);
        assert!(text.contains("hookcast_connections_active{transport=\"sse\"} 1\n"));
        assert!(text.contains("hookcast_connections_active{transport=\"http\"} 0\n"));
        assert!(text.contains("hookcast_http_responses_total{status=\"200\"} 2\n"));
        assert!(text.contains("# TYPE hookcast_events_published_total counter\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            assert!(name.starts_with("hookcast_"), "{line}");
        }
    }
}
