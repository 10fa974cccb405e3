//! The live status page and its JSON: `GET /` (HTML), `GET /status/app.js` and
//! `GET /status/style.css` (embedded with `include_str!`: no CDN, no build step), `GET
//! /api/status` (the snapshot the page starts from), and the login form that turns an admin
//! token into the `hookcast_token` cookie (`GET`/`POST /login`, `POST /logout`).
//!
//! Who sees it: a client that a `public` rule lets subscribe to the page's topics
//! ([`PAGE_TOPICS`]; the default config opens them to loopback) without a token; anyone else
//! needs a token with the `admin` scope (bearer, `?token=` or the cookie). The page gets the
//! snapshot, then one EventSource on [`PAGE_TOPICS`] resumed from the snapshot's
//! `last_event_id`, so nothing between the two is lost; after a reconnect EventSource resends
//! `Last-Event-ID` and a `reset` makes it fetch the snapshot again.
//!
//! Assets are served with a content hash in `?v=` and cached as immutable, with that hash as
//! their `ETag` (`http::asset`); the HTML itself is `no-cache`. Every page response carries a strict `Content-Security-Policy` (the script builds
//! its DOM with `textContent` only, so webhook data never becomes markup).

use crate::api::access::{is_request_host, presented_token};
use crate::app::App;
use crate::auth::{Caller, Client, Scope};
use crate::hooks::intake::{DeliveryRecord, PublishedRecord, Verdict};
use crate::http::asset::{fnv1a, FNV_SEED};
use crate::http::request::{query_param, Head, Method};
use crate::http::response::Response;
use crate::metrics::Transport;
use serde_json::{json, Map, Value};
use std::net::IpAddr;
use std::sync::OnceLock;

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// The system topics the page subscribes to (a token or public rule must allow all three).
pub const PAGE_TOPICS: [&str; 3] = ["$deliveries", "$runs", "$runs/*"];
/// The cookie the login form sets (also read by `api::access::presented_token`).
pub const COOKIE: &str = "hookcast_token";
/// How long the login cookie lives (30 days).
const COOKIE_MAX_AGE_SECS: u64 = 30 * 24 * 3600;
/// How far back (in event ids) the snapshot looks for deliveries and run output.
const HISTORY_SCAN: u64 = 5000;
/// Deliveries in the snapshot's feed.
const FEED_LEN: usize = 50;
/// Runs in the snapshot; the newest [`RUNS_WITH_OUTPUT`] carry their output lines.
const RUNS_LEN: usize = 20;
const RUNS_WITH_OUTPUT: usize = 5;
/// Output lines per run in the snapshot (the newest ones).
const OUTPUT_LINES: usize = 500;
/// Deliveries in a hook's history (its recent outcomes and success rate).
const HOOK_HISTORY: usize = 20;
/// Most hooks remembered in `App::last_deliveries` (entries exist only for configured hooks;
/// this only bounds what config reloads could leave behind).
const MAX_REMEMBERED_HOOKS: usize = 10_000;
/// Most nodes in the snapshot's cluster table (`nodes_total` says how many there are).
const MAX_NODES: usize = 200;
/// A node whose line is older than this shows as stale: lines are written every 2 s.
const NODE_STALE_MS: u64 = 10_000;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

const ASSETS_HASH: u64 = fnv1a(fnv1a(fnv1a(FNV_SEED, INDEX_HTML), APP_JS), STYLE_CSS);

/// The assets' version string (the `?v=` the HTML asks for).
pub fn asset_version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(|| format!("{ASSETS_HASH:016x}"))
}

fn index_html() -> &'static str {
    static HTML: OnceLock<String> = OnceLock::new();
    HTML.get_or_init(|| INDEX_HTML.replace("__V__", asset_version()))
}

/// Size in bytes of the embedded page (HTML, JS, CSS).
pub fn page_bytes() -> usize {
    INDEX_HTML.len() + APP_JS.len() + STYLE_CSS.len()
}

/// How a caller gets to see the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// A public rule lets this address subscribe to the page's topics (loopback by default).
    Public,
    /// A token with the admin scope.
    Token,
    /// Neither.
    Denied,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::Token => "token",
            Access::Denied => "denied",
        }
    }
}

fn access(app: &App, client: Client, head: &Head) -> (Access, Caller) {
    let who = app.auth.identify(presented_token(head).as_deref(), client);
    if app.auth.has_scope(&who, Scope::Admin) {
        return (Access::Token, who);
    }
    let anonymous = Caller::anonymous(client);
    if PAGE_TOPICS.iter().all(|t| app.auth.allows(&anonymous, Scope::Subscribe, t)) {
        return (Access::Public, who);
    }
    (Access::Denied, who)
}

fn secure_headers(r: Response) -> Response {
    r.with("Content-Security-Policy", CSP)
        .with("X-Content-Type-Options", "nosniff")
        .with("X-Frame-Options", "DENY")
        .with("Referrer-Policy", "same-origin")
}

fn redirect(to: &'static str) -> Response {
    Response::new(303, "text/plain; charset=utf-8", format!("see {to}\n"))
        .with("Location", to)
        .with("Cache-Control", "no-store")
}

/// `GET /`: the page, or a redirect to the login form.
pub fn page(app: &App, client: Client, head: &Head) -> Response {
    if access(app, client, head).0 == Access::Denied {
        return redirect("/login");
    }
    secure_headers(Response::new(200, "text/html; charset=utf-8", index_html()).with("Cache-Control", "no-cache"))
}

/// `GET /status/{name}`: an embedded asset, immutable when asked for by its current version.
/// Served to anyone: they hold no data (the login form uses the stylesheet too).
pub fn asset(head: &Head, name: &str) -> Response {
    let (body, content_type) = match name {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        _ => return Response::error(404, "no such asset"),
    };
    crate::http::asset::serve(head, body, content_type, asset_version())
}

/// `GET /api/status`: the snapshot the page starts from (and a scripts' view of the daemon).
pub fn api(app: &App, client: Client, head: &Head) -> Response {
    let (how, who) = access(app, client, head);
    if how == Access::Denied {
        return if who.token.is_some() {
            Response::error(403, "token may not read the status (admin scope needed)")
        } else {
            let msg = if who.bad_token { "invalid token" } else { "a token with the admin scope is needed" };
            Response::error(401, msg).with("WWW-Authenticate", "Bearer realm=\"hookcast\"")
        };
    }
    let can_subscribe = PAGE_TOPICS.iter().all(|t| app.auth.allows(&who, Scope::Subscribe, t));
    let brief = query_param(head.query(), "brief").is_some_and(|b| b != "0");
    let mut v = snapshot(app, brief);
    v["auth"] = json!(how.as_str());
    v["can_subscribe"] = json!(can_subscribe);
    // The page's POSTs carry this when the cookie is what authenticates them.
    if let (Access::Token, Some((token, crate::api::access::Via::Cookie))) = (how, crate::api::access::presented(head))
    {
        v["csrf"] = json!(crate::api::access::csrf_token(app, &token));
    }
    Response::json(200, &v).with("Cache-Control", "no-store")
}

/// This node's line in the cluster's node table (JSON), which every node's status page shows:
/// where it listens, its subscribers, its Redis link and how far its reader lags.
pub fn node_line(app: &App, addr: std::net::SocketAddr) -> Vec<u8> {
    let Some(c) = &app.cluster else { return b"{}".to_vec() };
    let m = &app.metrics;
    let line = json!({
        "node": c.config().node,
        "addr": addr.to_string(),
        "version": env!("CARGO_PKG_VERSION"),
        "seen_ms": crate::clock::unix_ms(),
        "uptime_ms": app.now.duration_since(app.started).as_millis() as u64,
        "subscribers": {
            "sse": m.active[Transport::Sse as usize],
            "ws": m.active[Transport::Ws as usize],
            "poll": m.active[Transport::Poll as usize],
        },
        "redis_up": c.is_up(),
        "runner": c.is_runner(app.now),
        "runs_commands": c.config().runs_commands,
        "read_lag_ms": c.stats.read_lag_us as f64 / 1000.0,
        "last_event_id": app.hub.last_id(),
    });
    line.to_string().into_bytes()
}

/// The cluster's node table as the status API shows it: by name, at most [`MAX_NODES`] rows,
/// each line with `age_ms` (since it was written, by this node's clock; null when the line has
/// no `seen_ms`) and `stale` (not written for more than [`NODE_STALE_MS`]). The hash key is the
/// name shown: a line is another node's (untrusted) text, and may not claim a name it was not
/// written under; a line that is not a JSON object shows as a stale row with only its name.
pub(crate) fn node_table(lines: &[(String, Vec<u8>)], now_ms: u64) -> Vec<Value> {
    let mut rows: Vec<&(String, Vec<u8>)> = lines.iter().collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows.into_iter()
        .take(MAX_NODES)
        .map(|(name, raw)| {
            let mut line = match serde_json::from_slice::<Value>(raw) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            };
            let age = line.get("seen_ms").and_then(Value::as_u64).map(|t| now_ms.saturating_sub(t));
            line.insert("node".into(), json!(name));
            line.insert("age_ms".into(), json!(age));
            line.insert("stale".into(), json!(age.is_none_or(|a| a > NODE_STALE_MS)));
            Value::Object(line)
        })
        .collect()
}

/// The daemon's state as the page shows it; consistent as of `last_event_id` (the loop is
/// single-threaded), so a stream resumed from that id continues it with no gap. `brief` leaves
/// out hooks, deliveries and runs (the page's periodic refresh of its figures).
pub fn snapshot(app: &App, brief: bool) -> Value {
    let uptime = app.now.duration_since(app.started);
    let m = &app.metrics;
    let mut connections = Map::new();
    for (name, t) in
        [("http", Transport::Http), ("sse", Transport::Sse), ("ws", Transport::Ws), ("poll", Transport::Poll)]
    {
        connections.insert(name.into(), json!({ "active": m.active[t as usize], "total": m.total[t as usize] }));
    }
    let hub = app.hub.stats();
    let mut v = json!({
        "name": "hookcast",
        "version": env!("CARGO_PKG_VERSION"),
        "now": crate::clock::rfc3339(crate::clock::unix_ms()),
        "uptime_ms": uptime.as_millis() as u64,
        "last_event_id": hub.last_id,
        "connections": connections,
        "events": {
            "published": m.events_published,
            "per_sec_since_start": (m.events_published as f64 / uptime.as_secs_f64().max(0.001) * 100.0).round() / 100.0,
        },
        "history": { "events": hub.history_events, "bytes": hub.history_bytes, "topics": hub.topics },
        "retained": { "topics": hub.retained_topics, "bytes": hub.retained_bytes },
        "active_runs": app.runner.active(),
        "sources": app.sources.status(),
        "journal": app.journal.as_ref().map(|j| {
            let s = j.stats();
            json!({
                "disk_bytes": s.disk_bytes, "segments": s.segments, "appended": s.appended, "fsyncs": s.fsyncs,
                "write_errors": s.write_errors, "queued_bytes": s.queued_bytes, "failed": s.failed,
                "fsync": match app.cfg.journal.fsync {
                    crate::journal::Fsync::Always => "always".to_string(),
                    crate::journal::Fsync::Batch(d) => format!("batch ({} ms)", d.as_millis()),
                    crate::journal::Fsync::Never => "never".to_string(),
                },
                "max_bytes": app.cfg.journal.max_bytes,
                "max_age_secs": app.cfg.journal.max_age.map(|a| a.as_secs()),
            })
        }),
        "cluster": app.cluster.as_ref().map(|c| {
            let nodes = node_table(c.nodes(), crate::clock::unix_ms());
            json!({
                "name": c.config().name,
                "node": c.config().node,
                "redis": c.config().redis.to_string(),
                "redis_up": c.is_up(),
                "runner": c.is_runner(app.now),
                "read_lag_ms": c.stats.read_lag_us as f64 / 1000.0,
                "nodes": nodes,
                "nodes_total": c.nodes().len(),
            })
        }),
    });
    if brief {
        return v;
    }
    // The recent window of ids first (cheap: history is ordered by id); ids jump at a restart
    // (they continue from the clock), so when that window holds too few deliveries, all of
    // history — only when a page loads, not on its periodic `brief` refreshes.
    let patterns = ["$deliveries", "$runs/*"];
    let mut recent = app.hub.replay(&patterns, hub.last_id.saturating_sub(HISTORY_SCAN), usize::MAX, None).events;
    if recent.iter().filter(|e| &*e.topic == "$deliveries").count() < FEED_LEN {
        recent = app.hub.replay(&patterns, 0, usize::MAX, None).events;
    }
    let mut feed = Vec::new();
    let mut output: std::collections::HashMap<&str, Vec<Value>> = std::collections::HashMap::new();
    let day_ago = crate::clock::unix_ms().saturating_sub(24 * 3600 * 1000);
    let mut rejected_24h = 0;
    for ev in &recent {
        if &*ev.topic == "$deliveries" {
            let Some(record) = DeliveryRecord::read(&ev.data) else { continue };
            rejected_24h += usize::from(record.outcome == Verdict::Rejected && ev.time_ms >= day_ago);
            feed.push(PublishedRecord::new(record, None, ev.id, ev.time_ms));
        } else {
            let Ok(data) = serde_json::from_str::<Value>(&ev.data) else { continue };
            output.entry(&ev.topic).or_default().push(data);
        }
    }
    let all_runs = app.runner.recent(usize::MAX);
    let hooks: Vec<Value> = app
        .hooks
        .iter()
        .map(|h| {
            let id = h.def.id.as_str();
            let last = app.last_deliveries.get(id).or_else(|| feed.iter().rev().find(|d| d.record.hook == id));
            // The hook's history: its last HOOK_HISTORY deliveries held, and how many were accepted.
            let mine: Vec<&PublishedRecord> =
                feed.iter().rev().filter(|d| d.record.hook == id).take(HOOK_HISTORY).collect();
            let ok = mine.iter().filter(|d| d.record.outcome == Verdict::Accepted).count();
            json!({
                "id": id,
                "provider": h.def.provider,
                "topic": h.topic,
                "command": h.def.execute_command.is_some(),
                "last_delivery": last,
                "recent": { "deliveries": mine.len(), "accepted": ok,
                            "outcomes": mine.iter().map(|d| d.record.outcome.as_str()).collect::<Vec<_>>() },
                "last_run": all_runs.iter().find(|r| r["hook"] == id),
            })
        })
        .collect();
    // Failures in the last 24 h (of what history and the kept runs hold): deliveries refused and
    // runs that did not succeed. RFC 3339 times in one format sort as text.
    let since = crate::clock::rfc3339(day_ago);
    let failed_runs = all_runs
        .iter()
        .filter(|r| matches!(r["state"].as_str(), Some("failed" | "timed_out" | "interrupted")))
        .filter(|r| r["queued"].as_str().is_some_and(|q| q >= since.as_str()))
        .count();
    v["failures_24h"] = json!({ "deliveries": rejected_24h, "runs": failed_runs });
    let mut runs = app.runner.recent(RUNS_LEN);
    for run in runs.iter_mut().take(RUNS_WITH_OUTPUT) {
        let topic = format!("$runs/{}", run["id"]);
        if let Some(lines) = output.get_mut(topic.as_str()) {
            let skip = lines.len().saturating_sub(OUTPUT_LINES);
            run["output"] = Value::Array(lines.drain(skip..).collect());
        }
    }
    let feed: Vec<&PublishedRecord> = feed.iter().rev().take(FEED_LEN).collect();
    v["hooks"] = Value::Array(hooks);
    v["deliveries"] = json!(feed);
    v["runs"] = Value::Array(runs);
    v
}

/// Remembers a hook's last delivery, published as `$deliveries` event `(id, time in ms)`.
pub fn note_delivery(
    app: &mut App,
    record: DeliveryRecord,
    signature_failure: Option<&'static str>,
    (event_id, time_ms): (u64, u64),
) {
    if app.last_deliveries.len() >= MAX_REMEMBERED_HOOKS && !app.last_deliveries.contains_key(&record.hook) {
        return;
    }
    let hook = record.hook.clone();
    app.last_deliveries.insert(hook, PublishedRecord::new(record, signature_failure, event_id, time_ms));
}

/// Whether a browser's `Origin` (when sent) is this host: a form posted from another site
/// must not log anyone in or out.
fn same_origin(head: &Head) -> bool {
    let Some(origin) = head.header_str("origin") else { return true };
    is_request_host(origin, head)
}

/// Whether the request reached a trusted proxy over HTTPS (`X-Forwarded-Proto: https`, believed
/// only from `trusted_proxies`, like the client address): then the cookie is `Secure`.
fn via_https(app: &App, peer: IpAddr, head: &Head) -> bool {
    let peer = crate::auth::canonical(peer);
    app.cfg.trusted_proxies.iter().any(|c| c.contains(peer))
        && head
            .header_str("x-forwarded-proto")
            .and_then(|v| v.split(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// Characters a token may have to travel in a cookie value (RFC 6265 §4.1.1 `cookie-octet`).
fn cookie_safe(token: &str) -> bool {
    token.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e))
}

fn cookie(value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// The login form, with an error when there is one.
fn login_form(status: u16, error: Option<&'static str>) -> Response {
    let error = error.map_or(String::new(), |e| format!("<p class=\"error\" role=\"alert\">{e}</p>"));
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\"><title>hookcast · log in</title>\
         <link rel=\"icon\" href=\"data:,\"><link rel=\"stylesheet\" href=\"/status/style.css?v={v}\"></head>\
         <body class=\"login\"><main><form method=\"post\" action=\"/login\" class=\"card\">\
         <h1>hookcast</h1><p>The status page needs a token with the <code>admin</code> scope.</p>{error}\
         <label for=\"token\">Token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
         <button type=\"submit\">Log in</button></form></main></body></html>\n",
        v = asset_version(),
    );
    secure_headers(Response::new(status, "text/html; charset=utf-8", html).with("Cache-Control", "no-store"))
}

/// `GET /login` shows the form; `POST /login` (`token=…`, form-encoded) checks the token
/// (in constant time, by `Auth::identify`) and, when it has the admin scope, sets the cookie
/// and sends the browser to `/`.
pub fn login(app: &App, peer: IpAddr, client: Client, head: &Head, body: &[u8]) -> Response {
    let ip = client.ip;
    if head.method != Method::Post {
        return login_form(200, None);
    }
    if !same_origin(head) {
        return Response::error(403, "cross-origin login refused");
    }
    let token = std::str::from_utf8(body).ok().and_then(|b| query_param(b, "token")).unwrap_or_default();
    let token = token.trim();
    if token.is_empty() {
        return login_form(400, Some("Enter a token."));
    }
    let who = app.auth.identify(Some(token), client);
    if who.token.is_none() {
        log::warn!("status: failed login from {ip}");
        return login_form(401, Some("Wrong token."));
    }
    if !app.auth.has_scope(&who, Scope::Admin) {
        return login_form(403, Some("This token has no <code>admin</code> scope."));
    }
    if !cookie_safe(token) {
        return login_form(400, Some("This token has characters a cookie cannot carry."));
    }
    log::info!("status: {} logged in from {ip}", app.auth.token_name(&who).unwrap_or("?"));
    redirect("/").with("Set-Cookie", cookie(token, COOKIE_MAX_AGE_SECS, via_https(app, peer, head)))
}

/// `POST /logout`: clears the cookie and goes back to the form.
pub fn logout(app: &App, peer: IpAddr, head: &Head) -> Response {
    if !same_origin(head) {
        return Response::error(403, "cross-origin logout refused");
    }
    redirect("/login").with("Set-Cookie", cookie("", 0, via_https(app, peer, head)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_is_small_and_references_its_versioned_assets() {
        assert!(page_bytes() < 48 * 1024, "page is {} bytes", page_bytes());
        let html = index_html();
        assert!(html.contains(&format!("/status/app.js?v={}", asset_version())));
        assert!(html.contains(&format!("/status/style.css?v={}", asset_version())));
        assert!(!html.contains("__V__"));
    }

    #[test]
    fn the_node_table_is_ordered_by_name_ages_its_lines_and_trusts_only_the_key_for_names() {
        let now = 1_000_000;
        let line = |node: &str, seen: u64| json!({ "node": node, "seen_ms": seen, "runner": true }).to_string();
        let lines = vec![
            ("c".to_string(), line("c", now - 10_001).into_bytes()),
            ("a".to_string(), line("not-a", now - 3_000).into_bytes()),
            ("b".to_string(), line("b", now + 500).into_bytes()),
            ("d".to_string(), b"<script>".to_vec()),
            ("e".to_string(), b"[1]".to_vec()),
        ];
        let t = node_table(&lines, now);
        let names: Vec<&str> = t.iter().map(|n| n["node"].as_str().unwrap()).collect();
        assert_eq!(names, ["a", "b", "c", "d", "e"]);
        assert_eq!(
            (t[0]["age_ms"].as_u64(), &t[0]["stale"], &t[0]["runner"]),
            (Some(3_000), &json!(false), &json!(true))
        );
        // A clock ahead of ours is "just now", not negative.
        assert_eq!((t[1]["age_ms"].as_u64(), &t[1]["stale"]), (Some(0), &json!(false)));
        assert_eq!((t[2]["age_ms"].as_u64(), &t[2]["stale"]), (Some(10_001), &json!(true)));
        for bad in &t[3..] {
            assert_eq!(bad.as_object().unwrap().len(), 3, "{bad}");
            assert_eq!((&bad["age_ms"], &bad["stale"]), (&Value::Null, &json!(true)));
        }
        let many: Vec<(String, Vec<u8>)> =
            (0..MAX_NODES + 5).map(|i| (format!("n{i:04}"), line("x", now).into_bytes())).rev().collect();
        let t = node_table(&many, now);
        assert_eq!((t.len(), t[0]["node"].as_str()), (MAX_NODES, Some("n0000")));
    }

    #[test]
    fn cookie_values() {
        assert!(cookie_safe("hc_3f9c0a"));
        assert!(!cookie_safe("a;b") && !cookie_safe("a b") && !cookie_safe("a,b") && !cookie_safe("é"));
        assert_eq!(cookie("t", 60, true), "hookcast_token=t; Path=/; HttpOnly; SameSite=Strict; Max-Age=60; Secure");
    }
}
