//! Request handlers: one complete request in, a response or a subscription out. No I/O; the
//! connection writes what these return, and published events go through `App::publish`.

pub mod access;

use crate::app::App;
use crate::auth::{Client, Fetch};
use crate::http::request::{query_param, query_params, Head};
use crate::http::response::{Field, Response};
use crate::http::router::{self, Route, RouteError};
use crate::hub::Wire;
use access::{caller, client, cors_headers, csrf_ok, denied, origin_allowed, preflight, presented, with_cors, Via};
use serde_json::json;
use std::net::IpAddr;

pub(crate) mod deliver;
pub(crate) mod inspect;
pub(crate) mod stream;

/// What a request turned into.
#[derive(Debug)]
pub enum Outcome {
    /// A whole response.
    Respond(Response),
    /// The connection becomes an event stream.
    Subscribe(SubscribeRequest),
    /// The connection becomes a WebSocket.
    Upgrade(WsUpgrade),
    /// Long poll: nothing to answer yet; wait for a matching event or the timeout.
    Poll(PollRequest),
    /// The answer is ready but must wait until journal record `seq` is durable.
    Durable {
        /// Journal sequence number to wait for.
        seq: u64,
        /// The answer.
        resp: Response,
    },
    /// The answer is the output of a run, when it ends.
    AwaitRun {
        /// The run.
        run: crate::runner::sched::RunId,
        /// The hook (for its response settings).
        hook: String,
        /// The delivery's journal record: the answer also waits until it is durable.
        seq: u64,
        /// How long the run may take before the answer is a 504.
        wait: std::time::Duration,
    },
}

/// A long poll that has to wait.
#[derive(Debug)]
pub struct PollRequest {
    /// Validated, authorised patterns.
    pub patterns: Vec<String>,
    /// Answer with events after this id.
    pub since: u64,
    /// How long to hold the request.
    pub timeout: std::time::Duration,
    /// Most events in one answer.
    pub limit: usize,
    /// Who asked (counted per client while it waits).
    pub client: Client,
    /// When the credential it was asked with expires (unix seconds): it is not held longer.
    pub expires: Option<u64>,
    /// Only events passing this filter count (`type`, `where`, `q`).
    pub filter: Option<Box<crate::filter::Filter>>,
}

/// Default and largest `timeout` of a long poll, in seconds.
const POLL_TIMEOUT: (u64, u64) = (25, 120);
/// Default and largest number of events in one long-poll answer.
const POLL_LIMIT: (usize, usize) = (100, 1000);

/// `GET /poll`: answers at once when history has something after `since`, else waits.
fn poll(app: &mut App, client: Client, head: &Head) -> Outcome {
    let patterns = match query_patterns(head) {
        Ok(p) if p.is_empty() => return respond(Response::error(400, "name the topics: /poll?topics=a,b")),
        Ok(p) => p,
        Err(r) => return respond(r),
    };
    let who = caller(app, client, head, false);
    if let Err(r) = patterns.iter().try_for_each(|p| stream::may_subscribe(app, &who, p)) {
        return respond(r);
    }
    let q = head.query();
    let num = |key: &str, (default, max): (u64, u64)| -> Result<u64, Response> {
        match query_param(q, key) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| Response::error(400, &format!("{key} must be a whole number from 1 to {max}"))),
        }
    };
    let (timeout, limit) =
        match (num("timeout", POLL_TIMEOUT), num("limit", (POLL_LIMIT.0 as u64, POLL_LIMIT.1 as u64))) {
            (Ok(t), Ok(l)) => (t, l as usize),
            (Err(r), _) | (_, Err(r)) => return respond(r),
        };
    let filter = match query_filter(head) {
        Ok(f) => f,
        Err(r) => return respond(r),
    };
    let since = match query_param(q, "since").or_else(|| head.header_str("last-event-id").map(str::to_string)) {
        None => app.live_cursor(),
        Some(s) => s.trim().parse::<u64>().unwrap_or(0),
    };
    let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
    let state = if wants_state(head) { stream::state_events(app, &who, &refs, since) } else { Vec::new() };
    if let Some(r) = stream::poll_answer(app, &refs, since, limit, &state, filter.as_deref()) {
        return respond(r);
    }
    if head.method == crate::http::request::Method::Head {
        return respond(Response::new(200, "application/json", Vec::new()));
    }
    let expires = app.auth.credential(&who).and_then(|c| c.expires());
    let timeout = std::time::Duration::from_secs(timeout);
    Outcome::Poll(PollRequest { patterns, since, timeout, limit, client, expires, filter })
}

/// An accepted WebSocket handshake.
#[derive(Debug)]
pub struct WsUpgrade {
    /// The 101 response.
    pub head: Vec<u8>,
    /// Patterns from `?topics=`, validated and authorised.
    pub patterns: Vec<String>,
    /// The token the client authenticated with (for later subscribe/publish ops).
    pub token: Option<crate::auth::Credential>,
    /// Resume point from `?lastEventId=`.
    pub last_event_id: Option<u64>,
    /// Echo mode (conformance testing): no hub, every message sent back.
    pub echo: bool,
    /// The filter from the query (`type`, `where`, `q`); the `filter` op replaces it.
    pub filter: Option<Box<crate::filter::Filter>>,
    /// Who connected: every later op is decided for this client, not for the TCP peer.
    pub client: Client,
}

/// An accepted subscription, ready for the connection to start.
#[derive(Debug)]
pub struct SubscribeRequest {
    /// Response head and the `retry:` field, written first.
    pub head: Vec<u8>,
    /// Validated, authorised patterns.
    pub patterns: Vec<String>,
    /// Encoding of events.
    pub wire: Wire,
    /// Resume point (`Last-Event-ID` or `lastEventId`), if any.
    pub last_event_id: Option<u64>,
    /// The token the client authenticated with (checked again on a reload).
    pub token: Option<crate::auth::Credential>,
    /// Who connected (checked again on a reload).
    pub client: Client,
    /// Only events passing this filter are sent (`type`, `where`, `q`).
    pub filter: Option<Box<crate::filter::Filter>>,
}

/// Answers one request from `peer` (address and port).
pub fn handle(app: &mut App, (peer, peer_port): (IpAddr, u16), head: &Head, body: Vec<u8>) -> Outcome {
    let client = client(app, peer, head);
    let route = match router::route(head.method, head.path()) {
        Ok(r) => r,
        Err(RouteError::NotFound) => return respond(Response::error(404, "no such route")),
        Err(RouteError::BadPath) => return respond(Response::error(400, "bad percent-encoding in path")),
        Err(RouteError::MethodNotAllowed(allow)) => {
            return respond(Response::error(405, "method not allowed").with("Allow", allow))
        }
    };
    if let Some(refusal) = refuse_ticket(&route, head).or_else(|| refuse_cross_origin(app, client, &route, head)) {
        return Outcome::Respond(with_cors(app, head, refusal));
    }
    let out = match route {
        Route::Health => respond(Response::json(200, &json!({"status": "ok"}))),
        Route::Metrics => {
            let uptime = app.now.duration_since(app.started).as_secs();
            let mut text = app.metrics.render(&app.hub.stats(), uptime);
            if let Some(j) = &app.journal {
                crate::metrics::render_journal(&mut text, &j.stats());
            }
            if let Some(c) = &app.cluster {
                crate::metrics::render_cluster(&mut text, c);
            }
            app.sources.render_metrics(&mut text);
            crate::metrics::render_process(&mut text, app.runner.dead_letters(), crate::sys::nofile_limit().ok());
            respond(Response::new(200, "text/plain; version=0.0.4; charset=utf-8", text))
        }
        Route::Index => respond(crate::status::page(app, client, head)),
        Route::StatusAsset(name) => respond(crate::status::asset(head, name)),
        Route::Client { module } => respond(crate::browser::script(head, module)),
        Route::Status => respond(crate::status::api(app, client, head)),
        Route::Login => respond(crate::status::login(app, peer, client, head, &body)),
        Route::Logout => respond(crate::status::logout(app, peer, head)),
        Route::Events(single) => events(app, client, head, single),
        Route::Publish(topic) => {
            let before = app.last_seq();
            let r = publish(app, client, head, &topic, body);
            // Acknowledged only once the event is durable (no journal: at once).
            match app.last_seq() {
                seq if seq > before && r.status < 300 => Outcome::Durable { seq, resp: r },
                _ => respond(r),
            }
        }
        Route::Ws => ws_upgrade(app, client, head, false),
        Route::TopicState(topic) => respond(topic_state(app, client, head, &topic)),
        Route::Poll => poll(app, client, head),
        Route::WsEcho if app.cfg.ws.echo => ws_upgrade(app, client, head, true),
        Route::WsEcho => respond(Response::error(404, "no such route (set ws.echo to enable)")),
        Route::Ticket => respond(ticket(app, client, head)),
        Route::Preflight(allow) => respond(preflight(app, head, allow)),
        Route::Runs | Route::Run(_) | Route::CancelRun(_) | Route::RetryRun(_) => {
            respond(deliver::runs(app, client, head, route))
        }
        Route::Hook(id) => {
            // adnanh's `remote-addr` is the TCP peer with its port; a client a trusted proxy
            // named has no port we know of.
            let direct = client.ip == crate::auth::canonical(peer);
            let port = if direct { peer_port } else { 0 };
            let via = (!direct).then(|| crate::auth::canonical(peer));
            deliver::hook(app, client, via, port, head, body, &id)
        }
        Route::Deliveries | Route::ReplayDelivery { .. } => deliver::deliveries(app, client, head, route),
        Route::Delivery { hook, id, raw } => respond(inspect::inspect(app, client, head, hook, &id, raw)),
    };
    match out {
        Outcome::Respond(r) => Outcome::Respond(with_cors(app, head, r)),
        other => other,
    }
}

/// A one-time ticket stands in for a token only where a browser cannot send one: `/ws` and
/// `/events` (WebSocket and EventSource set no headers). Anywhere else it is refused, not
/// redeemed, so a leaked ticket URL cannot operate runs or publish. Hooks read their own query
/// (`?ticket=` may be a hook's parameter) and never look at tokens; the status routes read
/// tokens, so a ticket there is refused too rather than silently ignored.
fn refuse_ticket(route: &Route, head: &Head) -> Option<Response> {
    let takes_tokens = matches!(
        route,
        Route::Poll
            | Route::Publish(_)
            | Route::TopicState(_)
            | Route::Ticket
            | Route::Runs
            | Route::Run(_)
            | Route::CancelRun(_)
            | Route::RetryRun(_)
            | Route::Deliveries
            | Route::Delivery { .. }
            | Route::ReplayDelivery { .. }
            | Route::Status
            | Route::Index
    );
    (takes_tokens && query_param(head.query(), "ticket").is_some())
        .then(|| Response::error(400, "a ticket is accepted only on /ws and /events; send the token instead"))
}

/// Refuses a state-changing request a browser made on behalf of another origin, where the
/// request's authority is ambient: the login cookie (CSRF: `SameSite=Strict` does not stop a page
/// on another port of this host or a sibling subdomain), or no token at all, when access comes
/// from the address (`public` rules, a hook trusting loopback) and any page could form-POST it.
/// A bearer or `?token=` credential is not ambient: a page must already hold it.
///
/// - cookie: the request must show a same-origin `Origin` (or `Sec-Fetch-Site: same-origin`),
///   or an origin listed in `cors.allowed_origins`;
/// - no token: a foreign `Origin` or `Sec-Fetch-Site: cross-site`/`same-site` is refused, and a
///   browser's same-origin claim counts only when `Host` is ours (a DNS-rebinding page is "same
///   origin" with itself). Requests without either header (webhook senders, curl) pass.
fn refuse_cross_origin(app: &App, client: Client, route: &Route, head: &Head) -> Option<Response> {
    let state_changing = match route {
        // A hook may take GET and run a command: an <img> on any page could trigger it.
        Route::Hook(_) => true,
        Route::Publish(_) | Route::Ticket | Route::CancelRun(_) | Route::RetryRun(_) | Route::ReplayDelivery { .. } => {
            true
        }
        _ => false,
    };
    if !state_changing {
        return None;
    }
    let presented = match route {
        Route::Hook(_) => None,
        _ => presented(head),
    };
    let via = presented.as_ref().map(|(_, via)| *via);
    let fetch = crate::auth::fetch_origin(
        head.header_str("origin"),
        head.header_str("sec-fetch-site"),
        head.header_str("host"),
        &app.cfg.cors_origins,
    );
    let refused = match (via, fetch) {
        (Some(Via::Bearer | Via::Query), _) => false,
        (_, Fetch::Allowed) => false,
        (Some(Via::Cookie), Fetch::SameOrigin) => false,
        (Some(Via::Cookie), _) => true,
        (None, Fetch::Foreign) => true,
        (None, Fetch::SameOrigin) => !client.host_ok,
        (None, Fetch::Unmarked) => false,
    };
    if !refused {
        // The cookie also needs its session's CSRF token (see `access::csrf_token`): an
        // Origin check alone trusts every browser to send Origin right.
        return match presented {
            Some((token, Via::Cookie)) if !csrf_ok(app, head, &token) => {
                log::info!("{}: cookie-authenticated {} without its CSRF token refused", client.ip, head.path());
                Some(Response::error(
                    403,
                    "missing or wrong X-CSRF-Token: a request authenticated by the login cookie must carry the \
                     token /api/status gives the page (or send a bearer token instead)",
                ))
            }
            _ => None,
        };
    }
    let what = head.header_str("origin").map_or_else(
        || format!("Sec-Fetch-Site: {}", head.header_str("sec-fetch-site").unwrap_or("(none)")),
        |o| format!("origin {o:?}"),
    );
    log::info!(
        "{}: cross-origin request refused ({what}, Host {:?})",
        client.ip,
        head.header_str("host").unwrap_or("")
    );
    let msg = if via == Some(Via::Cookie) {
        format!("cross-origin request refused ({what}): a request authenticated by the login cookie must come from this page's origin")
    } else {
        format!("cross-origin request refused ({what}); list the origin in cors.allowed_origins or send a token")
    };
    Some(Response::error(403, &msg))
}

fn respond(r: Response) -> Outcome {
    Outcome::Respond(r)
}

/// Patterns from `?topics=a,b` (or `?topic=`), validated; none is an empty list.
fn query_patterns(head: &Head) -> Result<Vec<String>, Response> {
    let q = head.query();
    let Some(list) = query_param(q, "topics").or_else(|| query_param(q, "topic")) else {
        return Ok(Vec::new());
    };
    let patterns: Vec<String> = list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    stream::pattern_count(patterns.len())?;
    patterns.iter().try_for_each(|p| stream::valid_pattern(p))?;
    Ok(patterns)
}

/// `?state=1`: the subscriber first gets the retained state of the topics it matches.
fn wants_state(head: &Head) -> bool {
    matches!(query_param(head.query(), "state").as_deref(), Some("1" | "true"))
}

/// `GET /api/topics/{topic}`: the topic's retained state as JSON, 404 without one; for whoever
/// may subscribe to the topic.
fn topic_state(app: &mut App, client: Client, head: &Head, topic: &str) -> Response {
    if let Err(e) = crate::topic::validate_topic(topic) {
        return Response::error(400, &format!("{e}: {topic:?}"));
    }
    let who = caller(app, client, head, false);
    if let Err(r) = stream::may_subscribe(app, &who, topic) {
        return r;
    }
    match app.hub.state(topic) {
        None => Response::error(404, &format!("no retained state for {topic:?}")),
        Some(ev) => {
            let data = if ev.data_is_json {
                serde_json::from_str(&ev.data).unwrap_or(serde_json::Value::Null)
            } else {
                serde_json::Value::String(ev.data.to_string())
            };
            let time = crate::clock::rfc3339(ev.time_ms);
            Response::json(200, &json!({ "topic": topic, "id": ev.id, "type": &*ev.kind, "data": data, "time": time }))
                .with("Cache-Control", "no-cache")
        }
    }
}

/// The filter from `?type=a,b&where=path:value&q=text` (none without them); 400 naming what is
/// wrong with it.
fn query_filter(head: &Head) -> Result<Option<Box<crate::filter::Filter>>, Response> {
    let q = head.query();
    let (types, text) = (query_param(q, "type"), query_param(q, "q"));
    let wheres = query_params(q, "where");
    if types.is_none() && text.is_none() && wheres.is_empty() {
        return Ok(None);
    }
    crate::filter::Filter::from_query(types.as_deref(), &wheres, text.as_deref())
        .map(|f| f.map(Box::new))
        .map_err(|e| Response::error(400, &e))
}

/// The resume point from `Last-Event-ID` or `?lastEventId=`: an id that is not one of ours
/// (another server's format) counts as 0, so the client is told about the gap.
fn last_event_id(head: &Head) -> Option<u64> {
    let last =
        head.header_str("last-event-id").map(str::to_string).or_else(|| query_param(head.query(), "lastEventId"));
    match last.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => Some(s.parse::<u64>().unwrap_or(0)),
    }
}

fn events(app: &mut App, client: Client, head: &Head, single: Option<String>) -> Outcome {
    let patterns = match single {
        Some(t) => match stream::valid_pattern(&t) {
            Ok(()) => vec![t],
            Err(r) => return respond(r),
        },
        None => match query_patterns(head) {
            Ok(p) if p.is_empty() => {
                return respond(Response::error(400, "name the topics: /events?topics=a,b or /events/{topic}"))
            }
            Ok(p) => p,
            Err(r) => return respond(r),
        },
    };
    let who = caller(app, client, head, true);
    if let Err(r) = patterns.iter().try_for_each(|p| stream::may_subscribe(app, &who, p)) {
        return respond(r);
    }
    let wire = match query_param(head.query(), "format").as_deref() {
        None | Some("raw") => Wire::Sse,
        Some("json") => Wire::SseEnvelope,
        Some(other) => return respond(Response::error(400, &format!("unknown format {other:?} (raw, json)"))),
    };
    let filter = match query_filter(head) {
        Ok(f) => f,
        Err(r) => return respond(r),
    };
    let last_event_id = last_event_id(head);
    let mut headers: Vec<Field> = vec![
        ("Content-Type".into(), "text/event-stream; charset=utf-8".to_string()),
        ("Cache-Control".into(), "no-cache".to_string()),
        ("X-Accel-Buffering".into(), "no".to_string()),
    ];
    if head.method == crate::http::request::Method::Head {
        // Same head as GET (CORS added by the caller), no stream.
        let mut r = Response::new(200, "text/event-stream; charset=utf-8", Vec::new());
        r.headers.extend(headers.into_iter().skip(1));
        return respond(r);
    }
    headers.extend(cors_headers(app, head));
    let mut out = Vec::with_capacity(256);
    crate::http::response::write_head(&mut out, 200, &headers, None, crate::http::response::Persist::Close, app.date());
    out.extend_from_slice(&crate::sse::retry(app.cfg.sse.retry_ms));
    // Where this stream starts: the client's cursor when it resumes (a gap or a cursor ahead of
    // the server is corrected by the `reset` that follows), else the newest event, which is
    // exactly the point the subscriber's live stream continues from.
    let cursor = last_event_id.unwrap_or_else(|| app.live_cursor());
    if wants_state(head) {
        // Retained events up to the cursor, in id order; what comes after it is the replay or
        // the live stream, so none comes twice and none is missed. The position block after
        // them sets the client's cursor back to where the stream continues.
        let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
        for ev in stream::state_events(app, &who, &refs, cursor) {
            if stream::passes(filter.as_deref(), &ev) {
                out.extend_from_slice(&ev.encoded(wire));
            }
        }
    }
    out.extend_from_slice(&crate::sse::position(cursor));
    let token = app.auth.credential(&who);
    Outcome::Subscribe(SubscribeRequest { head: out, patterns, wire, last_event_id, token, client, filter })
}

/// `POST /publish/{topic}`: the body is the event's data, `?event=` its type, and a JSON
/// `Content-Type` makes it JSON data (see [`stream::publish_checked`]).
fn publish(app: &mut App, client: Client, head: &Head, topic_name: &str, body: Vec<u8>) -> Response {
    let who = caller(app, client, head, false);
    let kind = query_param(head.query(), "event").unwrap_or_else(|| "message".to_string());
    let is_json = head
        .header_str("content-type")
        .is_some_and(|ct| ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
    let retain = matches!(query_param(head.query(), "retain").as_deref(), Some("1" | "true"));
    match stream::publish_checked(app, &who, topic_name, &kind, body, is_json, retain) {
        Ok(ev) => Response::json(202, &json!({ "id": ev.id, "topic": topic_name })),
        Err(r) => r,
    }
}

/// The largest request body `head`'s route takes: `limits.max_body_bytes`, and with a journal
/// no more than one journal record can hold (a publish's data, a webhook's request in base64),
/// so that what could never be made durable is refused with 413 before its body is read.
pub fn body_limit(app: &App, head: &Head) -> usize {
    use crate::journal::record::{FIXED_BODY_LEN, MAX_BODY_LEN, MAX_TOPIC_LEN};
    let max = app.cfg.limits.max_body_bytes;
    if app.journal.is_none() {
        return max;
    }
    match router::route(head.method, head.path()) {
        Ok(Route::Publish(topic)) => {
            let kind = query_param(head.query(), "event").unwrap_or_else(|| "message".to_string());
            max.min(crate::app::max_event_data(&topic, &kind))
        }
        Ok(Route::Hook(_)) => {
            // The stored request is JSON with the headers' values and the body in base64.
            let headers: usize = head.headers.iter().map(|(k, v)| 16 + k.len() + v.len() / 3 * 4 + 4).sum();
            let rest = FIXED_BODY_LEN + MAX_TOPIC_LEN + 1024 + headers + 2 * head.query().len();
            max.min(MAX_BODY_LEN.saturating_sub(rest) / 4 * 3)
        }
        _ => max,
    }
}

/// 503 for new work while the journal cannot take it (see `App::work_refusal`).
pub fn journal_unavailable(why: &str) -> Response {
    Response::error(503, why).with("Retry-After", "5")
}

/// `POST /api/ticket`: a valid bearer token buys a one-time ticket for `?ticket=`, so a
/// browser can open a WebSocket or EventSource (which cannot carry headers) without putting the
/// long-lived token in a URL.
fn ticket(app: &mut App, client: Client, head: &Head) -> Response {
    let who = caller(app, client, head, false);
    let Some(credential) = app.auth.credential(&who) else {
        return denied(&who, "get a ticket");
    };
    // A JWT's ticket ends with the JWT.
    let ttl = crate::auth::TICKET_TTL.as_secs();
    let expires_in = credential.expires().map_or(ttl, |e| ttl.min(e.saturating_sub(crate::clock::unix_ms() / 1000)));
    match app.issue_ticket(credential) {
        Some(t) => Response::json(200, &json!({ "ticket": t, "expires_in": expires_in })),
        None => Response::error(429, "too many tickets outstanding").with("Retry-After", "30"),
    }
}

/// The opening handshake (RFC 6455 §4.2.1), checked in the RFC's order, then auth.
fn ws_upgrade(app: &mut App, client: Client, head: &Head, echo: bool) -> Outcome {
    use crate::ws::handshake;
    let upgrade_required = |msg: &str| {
        respond(
            Response::error(426, msg)
                .with("Upgrade", "websocket")
                .with("Connection", "Upgrade")
                .with("Sec-WebSocket-Version", handshake::SUPPORTED_VERSION),
        )
    };
    if head.version_minor < 1 {
        return respond(Response::error(400, "WebSocket needs HTTP/1.1"));
    }
    if !head.has_token("upgrade", "websocket") || !head.has_token("connection", "upgrade") {
        return upgrade_required("this endpoint speaks WebSocket (Upgrade: websocket)");
    }
    if !head.header_str("sec-websocket-version").is_some_and(handshake::version_is_supported) {
        return upgrade_required("unsupported Sec-WebSocket-Version (13 is)");
    }
    let Some(key) = head.header_str("sec-websocket-key").filter(|k| handshake::key_is_valid(k)) else {
        return respond(Response::error(400, "Sec-WebSocket-Key must be 16 bytes in base64"));
    };
    if let Some(origin) = head.header_str("origin") {
        if !origin_allowed(app, head, origin) {
            return respond(Response::error(403, &format!("origin {origin:?} may not open a WebSocket here")));
        }
    }
    let patterns = match query_patterns(head) {
        Ok(p) => p,
        Err(r) => return respond(r),
    };
    let filter = match query_filter(head) {
        Ok(f) => f,
        Err(r) => return respond(r),
    };
    let who = caller(app, client, head, true);
    if who.bad_token {
        return respond(denied(&who, "connect"));
    }
    if let Err(r) = patterns.iter().try_for_each(|p| stream::may_subscribe(app, &who, p)) {
        return respond(r);
    }
    let protocol =
        head.header_str("sec-websocket-protocol").and_then(|o| handshake::pick_protocol(o, &["hookcast.v1"]));
    let mut out = handshake::response_head(&handshake::accept_key(key), protocol);
    // Where the stream continues, as on SSE: the client's cursor, else the newest event.
    let cursor = last_event_id(head).unwrap_or_else(|| app.live_cursor());
    if wants_state(head) && !echo {
        // Frames right after the 101 head: the state up to where the stream continues.
        let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
        for ev in stream::state_events(app, &who, &refs, cursor) {
            if stream::passes(filter.as_deref(), &ev) {
                out.extend_from_slice(&ev.encoded(Wire::Ws));
            }
        }
    }
    if !echo && query_param(head.query(), "hello").is_some_and(|v| v == "1") {
        // Opt-in (`hello=1`, hookcast.js): the stream's position after the states, like SSE's
        // `id:` block, so a client that receives no event still has a cursor to resume from,
        // and knows the stream is live.
        let hello = json!({ "type": "hello", "last_event_id": cursor }).to_string();
        out.extend_from_slice(&crate::ws::frame::encode_frame(crate::ws::frame::Opcode::Text, hello.as_bytes()));
    }
    Outcome::Upgrade(WsUpgrade {
        head: out,
        patterns,
        token: app.auth.credential(&who),
        last_event_id: last_event_id(head),
        echo,
        client,
        filter,
    })
}
