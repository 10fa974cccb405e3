//! Request handlers: one complete request in, a response or a subscription out. No I/O; the
//! connection writes what these return, and published events go through `App::publish`.

use crate::app::App;
use crate::auth::{Caller, Scope};
use crate::http::request::{query_param, Head};
use crate::http::response::{Field, Response};
use crate::http::router::{self, Route, RouteError};
use crate::hub::Wire;
use crate::topic;
use serde_json::json;
use std::net::IpAddr;

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
}

/// Default and largest `timeout` of a long poll, in seconds.
const POLL_TIMEOUT: (u64, u64) = (25, 120);
/// Default and largest number of events in one long-poll answer.
const POLL_LIMIT: (usize, usize) = (100, 1000);

/// The long-poll answer: `{"events":[…],"next":ID}` plus `"reset":true` after a history gap
/// and `"more":true` when the limit cut the batch (poll again at once with `since=next`).
pub fn poll_answer(app: &App, patterns: &[&str], since: u64, limit: usize) -> Option<Response> {
    let r = app.hub.replay(patterns, since, usize::MAX, None);
    if r.events.is_empty() && !r.gap {
        return None;
    }
    let more = r.events.len() > limit;
    let events = &r.events[..r.events.len().min(limit)];
    let next = events.last().map_or(app.hub.last_id().max(since), |e| e.id);
    let mut body = Vec::with_capacity(64 + events.iter().map(|e| e.cost()).sum::<usize>());
    body.extend_from_slice(b"{\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&e.encoded(Wire::Json));
    }
    body.extend_from_slice(format!("],\"next\":{next}").as_bytes());
    if r.gap {
        body.extend_from_slice(b",\"reset\":true");
    }
    if more {
        body.extend_from_slice(b",\"more\":true");
    }
    body.extend_from_slice(b"}\n");
    Some(Response::new(200, "application/json", body).with("Cache-Control", "no-cache"))
}

/// `GET /poll`: answers at once when history has something after `since`, else waits.
fn poll(app: &mut App, ip: IpAddr, head: &Head) -> Outcome {
    let patterns = match query_patterns(head) {
        Ok(p) if p.is_empty() => return respond(Response::error(400, "name the topics: /poll?topics=a,b")),
        Ok(p) => p,
        Err(r) => return respond(r),
    };
    let who = caller(app, ip, head);
    if let Some(p) = patterns.iter().find(|p| !app.auth.allows(&who, Scope::Subscribe, p)) {
        return respond(denied(&who, &format!("subscribe to {p:?}")));
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
    let since = match query_param(q, "since").or_else(|| head.header_str("last-event-id").map(str::to_string)) {
        None => app.hub.last_id(),
        Some(s) => s.trim().parse::<u64>().unwrap_or(0),
    };
    let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
    if let Some(r) = poll_answer(app, &refs, since, limit) {
        return respond(r);
    }
    if head.method == crate::http::request::Method::Head {
        return respond(Response::new(200, "application/json", Vec::new()));
    }
    Outcome::Poll(PollRequest { patterns, since, timeout: std::time::Duration::from_secs(timeout), limit })
}

/// An accepted WebSocket handshake.
#[derive(Debug)]
pub struct WsUpgrade {
    /// The 101 response.
    pub head: Vec<u8>,
    /// Patterns from `?topics=`, validated and authorised.
    pub patterns: Vec<String>,
    /// The token the client authenticated with (for later subscribe/publish ops).
    pub token: Option<crate::auth::TokenId>,
    /// Resume point from `?lastEventId=`.
    pub last_event_id: Option<u64>,
    /// Echo mode (conformance testing): no hub, every message sent back.
    pub echo: bool,
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
    pub token: Option<crate::auth::TokenId>,
}

/// Most patterns one subscription may name.
pub const MAX_PATTERNS: usize = 32;

/// The client address behind any trusted proxy (see `auth::client_ip`).
pub fn client_ip(app: &App, peer: IpAddr, head: &Head) -> IpAddr {
    if app.cfg.trusted_proxies.is_empty() {
        return crate::auth::canonical(peer);
    }
    let forwarded: Vec<&str> = head
        .headers
        .iter()
        .filter(|(n, _)| n == "x-forwarded-for")
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .collect();
    crate::auth::client_ip(peer, &app.cfg.trusted_proxies, head.header_str("cf-connecting-ip"), &forwarded)
}

/// Answers one request from `peer` (address and port).
pub fn handle(app: &mut App, (peer, peer_port): (IpAddr, u16), head: &Head, body: Vec<u8>) -> Outcome {
    let ip = client_ip(app, peer, head);
    let route = match router::route(head.method, head.path()) {
        Ok(r) => r,
        Err(RouteError::NotFound) => return respond(Response::error(404, "no such route")),
        Err(RouteError::BadPath) => return respond(Response::error(400, "bad percent-encoding in path")),
        Err(RouteError::MethodNotAllowed(allow)) => {
            return respond(Response::error(405, "method not allowed").with("Allow", allow))
        }
    };
    let out = match route {
        Route::Health => respond(Response::json(200, &json!({"status": "ok"}))),
        Route::Metrics => {
            let uptime = app.now.duration_since(app.started).as_secs();
            let mut text = app.metrics.render(&app.hub.stats(), uptime);
            if let Some(j) = &app.journal {
                crate::metrics::render_journal(&mut text, &j.stats());
            }
            respond(Response::new(200, "text/plain; version=0.0.4; charset=utf-8", text))
        }
        Route::Index => respond(crate::status::page(app, ip, head)),
        Route::StatusAsset(name) => respond(crate::status::asset(head, name)),
        Route::Status => respond(crate::status::api(app, ip, head)),
        Route::Login => respond(crate::status::login(app, peer, ip, head, &body)),
        Route::Logout => respond(crate::status::logout(app, peer, head)),
        Route::Events(single) => events(app, ip, head, single),
        Route::Publish(topic) => {
            let before = app.last_seq();
            let r = publish(app, ip, head, &topic, body);
            // Acknowledged only once the event is durable (no journal: at once).
            match app.last_seq() {
                seq if seq > before && r.status < 300 => Outcome::Durable { seq, resp: r },
                _ => respond(r),
            }
        }
        Route::Ws => ws_upgrade(app, ip, head, false),
        Route::Poll => poll(app, ip, head),
        Route::WsEcho if app.cfg.ws.echo => ws_upgrade(app, ip, head, true),
        Route::WsEcho => respond(Response::error(404, "no such route (set ws.echo to enable)")),
        Route::Ticket => respond(ticket(app, ip, head)),
        Route::Preflight(allow) => respond(preflight(app, head, allow)),
        Route::Runs | Route::Run(_) | Route::CancelRun(_) | Route::RetryRun(_) => respond(runs(app, ip, head, route)),
        Route::Hook(id) => {
            // adnanh's `remote-addr` is the TCP peer with its port; a client a trusted proxy
            // named has no port we know of.
            let port = if ip == crate::auth::canonical(peer) { peer_port } else { 0 };
            hook(app, ip, port, head, body, &id)
        }
        Route::Deliveries | Route::ReplayDelivery(_) => deliveries(app, ip, head, route),
    };
    match out {
        Outcome::Respond(r) => Outcome::Respond(with_cors(app, head, r)),
        other => other,
    }
}

fn respond(r: Response) -> Outcome {
    Outcome::Respond(r)
}

/// The token a request presents: `Authorization: Bearer`, the `hookcast_token` cookie, or
/// `?token=` (for clients that cannot set headers).
pub fn presented_token(head: &Head) -> Option<String> {
    if let Some(v) = head.header_str("authorization") {
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(rest.trim().to_string());
        }
    }
    for (name, value) in &head.headers {
        if name != "cookie" {
            continue;
        }
        let Ok(v) = std::str::from_utf8(value) else { continue };
        for pair in v.split(';') {
            if let Some(t) = pair.trim().strip_prefix("hookcast_token=") {
                return Some(t.to_string());
            }
        }
    }
    query_param(head.query(), "token")
}

/// Who is asking: a `?ticket=` (redeemed once) or a presented token, or nobody.
fn caller(app: &mut App, ip: IpAddr, head: &Head) -> Caller {
    if let Some(t) = query_param(head.query(), "ticket") {
        return match app.redeem_ticket(&t) {
            Some(id) => app.auth.caller_with_token(&id, ip),
            None => Caller { token: None, bad_token: true, ip },
        };
    }
    app.auth.identify(presented_token(head).as_deref(), ip)
}

/// Patterns from `?topics=a,b` (or `?topic=`), validated; none is an empty list.
fn query_patterns(head: &Head) -> Result<Vec<String>, Response> {
    let q = head.query();
    let Some(list) = query_param(q, "topics").or_else(|| query_param(q, "topic")) else {
        return Ok(Vec::new());
    };
    let patterns: Vec<String> = list.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
    if patterns.len() > MAX_PATTERNS {
        return Err(Response::error(400, &format!("at most {MAX_PATTERNS} topics")));
    }
    for p in &patterns {
        if let Err(e) = topic::validate_pattern(p) {
            return Err(Response::error(400, &format!("{e}: {p:?}")));
        }
    }
    Ok(patterns)
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

/// 401 when the caller did not (validly) identify, 403 when it did and still may not.
fn denied(caller: &Caller, what: &str) -> Response {
    if caller.token.is_none() {
        let msg = if caller.bad_token { "invalid token".to_string() } else { format!("a token is needed to {what}") };
        Response::error(401, &msg).with("WWW-Authenticate", "Bearer realm=\"hookcast\"")
    } else {
        Response::error(403, &format!("token may not {what}"))
    }
}

fn events(app: &mut App, ip: IpAddr, head: &Head, single: Option<String>) -> Outcome {
    let patterns = match single {
        Some(t) => match topic::validate_pattern(&t) {
            Ok(()) => vec![t],
            Err(e) => return respond(Response::error(400, &format!("{e}: {t:?}"))),
        },
        None => match query_patterns(head) {
            Ok(p) if p.is_empty() => {
                return respond(Response::error(400, "name the topics: /events?topics=a,b or /events/{topic}"))
            }
            Ok(p) => p,
            Err(r) => return respond(r),
        },
    };
    let who = caller(app, ip, head);
    if let Some(p) = patterns.iter().find(|p| !app.auth.allows(&who, Scope::Subscribe, p)) {
        return respond(denied(&who, &format!("subscribe to {p:?}")));
    }
    let wire = match query_param(head.query(), "format").as_deref() {
        None | Some("raw") => Wire::Sse,
        Some("json") => Wire::SseEnvelope,
        Some(other) => return respond(Response::error(400, &format!("unknown format {other:?} (raw, json)"))),
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
    crate::http::response::write_head(&mut out, 200, &headers, None, false, app.date());
    out.extend_from_slice(&crate::sse::retry(app.cfg.sse.retry_ms));
    let token = app.auth.token_id(&who);
    Outcome::Subscribe(SubscribeRequest { head: out, patterns, wire, last_event_id, token })
}

fn publish(app: &mut App, ip: IpAddr, head: &Head, topic_name: &str, body: Vec<u8>) -> Response {
    if let Err(e) = topic::validate_topic(topic_name) {
        return Response::error(400, &format!("{e}: {topic_name:?}"));
    }
    if topic_name.starts_with('$') {
        return Response::error(403, "system topics are published by hookcast itself");
    }
    let who = caller(app, ip, head);
    if !app.auth.allows(&who, Scope::Publish, topic_name) {
        return denied(&who, &format!("publish to {topic_name:?}"));
    }
    let kind = query_param(head.query(), "event").unwrap_or_else(|| "message".to_string());
    if !crate::sse::valid_event_name(&kind) {
        return Response::error(400, "event type must be 1-64 characters without line breaks");
    }
    let Ok(data) = String::from_utf8(body) else {
        return Response::error(400, "body must be UTF-8 text");
    };
    let is_json = head
        .header_str("content-type")
        .is_some_and(|ct| ct.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
    if is_json && serde_json::from_str::<serde::de::IgnoredAny>(&data).is_err() {
        return Response::error(400, "body is not valid JSON (Content-Type says it is)");
    }
    let ev = app.publish(topic_name, &kind, data, is_json);
    Response::json(202, &json!({ "id": ev.id, "topic": topic_name }))
}

/// `POST /api/ticket`: a valid bearer token buys a one-time ticket for `?ticket=`, so a
/// browser can open a WebSocket or EventSource (which cannot carry headers) without putting the
/// long-lived token in a URL.
fn ticket(app: &mut App, ip: IpAddr, head: &Head) -> Response {
    let who = app.auth.identify(presented_token(head).as_deref(), ip);
    let Some(id) = app.auth.token_id(&who) else {
        return denied(&who, "get a ticket");
    };
    match app.issue_ticket(id) {
        Some(t) => Response::json(200, &json!({ "ticket": t, "expires_in": crate::app::TICKET_TTL.as_secs() })),
        None => Response::error(429, "too many tickets outstanding").with("Retry-After", "30"),
    }
}

/// Whether a browser page from `origin` may open a WebSocket here: the same host as the
/// request (what a page served by hookcast sends), or one configured. Non-browser clients send
/// no `Origin` and are let through (they authenticate like anyone else).
fn origin_allowed(app: &App, head: &Head, origin: &str) -> bool {
    let same_host = origin
        .split_once("://")
        .zip(head.header_str("host"))
        .is_some_and(|((_, authority), host)| authority.eq_ignore_ascii_case(host));
    same_host || app.cfg.ws.allowed_origins.iter().chain(&app.cfg.cors_origins).any(|o| o == "*" || o == origin)
}

/// The opening handshake (RFC 6455 §4.2.1), checked in the RFC's order, then auth.
fn ws_upgrade(app: &mut App, ip: IpAddr, head: &Head, echo: bool) -> Outcome {
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
    let who = caller(app, ip, head);
    if who.bad_token {
        return respond(denied(&who, "connect"));
    }
    if let Some(p) = patterns.iter().find(|p| !app.auth.allows(&who, Scope::Subscribe, p)) {
        return respond(denied(&who, &format!("subscribe to {p:?}")));
    }
    let protocol =
        head.header_str("sec-websocket-protocol").and_then(|o| handshake::pick_protocol(o, &["hookcast.v1"]));
    Outcome::Upgrade(WsUpgrade {
        head: handshake::response_head(&handshake::accept_key(key), protocol),
        patterns,
        token: app.auth.token_id(&who),
        last_event_id: last_event_id(head),
        echo,
    })
}

fn method_name(m: crate::http::request::Method) -> &'static str {
    use crate::http::request::Method::*;
    match m {
        Get => "GET",
        Head => "HEAD",
        Post => "POST",
        Put => "PUT",
        Delete => "DELETE",
        Options => "OPTIONS",
        Patch => "PATCH",
        Other => "",
    }
}

/// `/hooks/{id}`: the intake decides; here its decision meets the daemon's state (idempotency
/// window, runner, hub, metrics, log).
fn hook(app: &mut App, ip: IpAddr, port: u16, head: &Head, body: Vec<u8>, id: &str) -> Outcome {
    if app.hooks.get(id).is_none() {
        return respond(Response::new(404, "text/plain; charset=utf-8", "Hook not found."));
    }
    // Kept for replay (and journalled) if accepted.
    let kept = crate::hooks::stored::Stored {
        delivery: String::new(),
        hook: id.to_string(),
        time_ms: crate::clock::unix_ms(),
        method: method_name(head.method).to_string(),
        headers: head.headers.clone(),
        query: head.query().to_string(),
        body,
        ip,
    };
    deliver(app, kept, port, false)
}

/// adnanh's `-x-request-id`: the request's `X-Request-Id`, cut to `limit` bytes (0: not cut).
fn x_request_id(headers: &[(String, Vec<u8>)], limit: usize) -> Option<String> {
    let v = headers.iter().find(|(k, _)| k == "x-request-id")?.1.as_slice();
    let v = String::from_utf8_lossy(v);
    let mut end = if limit == 0 { v.len() } else { limit.min(v.len()) };
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    Some(v[..end].to_string()).filter(|s| !s.is_empty())
}

/// Runs one delivery through the intake and acts on the decision. A replay (`POST
/// /api/deliveries/{id}/replay`) is the stored request verified again at the time it first
/// arrived (so a replay window does not refuse the authentic bytes), never a duplicate, and
/// not stored or journalled a second time.
fn deliver(app: &mut App, kept: crate::hooks::stored::Stored, port: u16, replay: bool) -> Outcome {
    use crate::hooks::intake::{self, Outcome as Delivery};
    let started = app.now;
    let id = kept.hook.clone();
    let id = id.as_str();
    let Some(h) = app.hooks.get(id) else {
        return respond(Response::new(404, "text/plain; charset=utf-8", "Hook not found."));
    };
    let ip = kept.ip;
    let request_id = app.cfg.x_request_id.and_then(|limit| x_request_id(&kept.headers, limit));
    let req = intake::Request {
        method: &kept.method,
        headers: &kept.headers,
        query: &kept.query,
        body: kept.body.clone(),
        ip,
        port,
        now_unix: if replay { kept.time_ms / 1000 } else { crate::clock::unix_ms() / 1000 },
    };
    let now = app.now;
    let dedup = &mut app.dedup;
    let mut d = intake::decide(h, req, app.runner.config(), |delivery| !replay && dedup.contains(id, delivery, now));
    if replay {
        d.record["replay"] = json!(true);
    }
    let topic = h.topic.clone();
    if let Some(reason) = d.signature_failure {
        *app.metrics.signature_failures.entry((id.to_string(), reason)).or_default() += 1;
    }
    let mut run = None;
    if let Some(spec) = d.spec.take() {
        match app.runner.submit(spec, now) {
            Some(r) => run = Some(r),
            None => {
                // Not acknowledged: the sender retries later, nothing was lost.
                d.outcome = Delivery::Rejected;
                d.response = Some(Response::error(503, "this hook's run queue is full").with("Retry-After", "10"));
                d.record["outcome"] = json!("rejected");
                d.record["status"] = json!(503);
                d.record["message"] = json!("run queue full");
            }
        }
    }
    let mut durable = 0;
    if d.outcome == Delivery::Accepted {
        if !replay {
            app.dedup.insert(id, &d.delivery, now);
            let kept = crate::hooks::stored::Stored { delivery: d.delivery.clone(), ..kept };
            durable = app.journal_delivery(&kept);
            app.deliveries.insert(kept);
        }
        if let Some(r) = run {
            d.record["run"] = json!(r);
        }
        if let Some(mut ev) = d.topic_event.take() {
            if let Some(r) = run {
                ev["run"] = json!(r);
            }
            let kind = d.event.clone().filter(|e| crate::sse::valid_event_name(e)).unwrap_or_else(|| "delivery".into());
            app.publish(&topic, &kind, ev.to_string(), true);
        }
    }
    *app.metrics.deliveries.entry((id.to_string(), d.outcome.as_str())).or_default() += 1;
    app.publish("$deliveries", "delivery", d.record.to_string(), true);
    let replayed = replay.then(|| {
        let status = if d.outcome == Delivery::Accepted { 202 } else { 409 };
        (status, json!({ "replayed": d.delivery, "outcome": d.outcome.as_str(), "run": run, "record": d.record }))
    });
    crate::status::note_delivery(app, d.record, d.signature_failure);
    let status = d.response.as_ref().map_or(0, |r| r.status);
    log::info!(
        "delivery hook={id} source={ip}{} event={} id={} outcome={} status={} run={} in {:?}",
        request_id.map(|r| format!(" request={r:?}")).unwrap_or_default(),
        d.event.as_deref().unwrap_or("-"),
        d.delivery,
        d.outcome.as_str(),
        if status == 0 { "pending".to_string() } else { status.to_string() },
        run.map_or("-".to_string(), |r| r.to_string()),
        std::time::Instant::now().duration_since(started),
    );
    let durable = durable.max(app.last_seq());
    if let Some((status, body)) = replayed {
        return Outcome::Durable { seq: durable, resp: Response::json(status, &body) };
    }
    match (d.response, run) {
        // A provider that got a 2xx never resends: only answer once the delivery is durable.
        (Some(r), _) if d.outcome == Delivery::Accepted && durable > 0 => Outcome::Durable { seq: durable, resp: r },
        (Some(r), _) => respond(r),
        (None, Some(run)) => Outcome::AwaitRun { run, hook: id.to_string(), seq: durable },
        (None, None) => respond(Response::error(500, "no run to wait for")),
    }
}

/// `GET /api/deliveries` (recent accepted deliveries kept for replay) and
/// `POST /api/deliveries/{id}/replay` (admin): the dead-letter story for failed deploys.
fn deliveries(app: &mut App, ip: IpAddr, head: &Head, route: Route) -> Outcome {
    let who = caller(app, ip, head);
    match route {
        Route::Deliveries => {
            if !app.auth.allows(&who, Scope::Subscribe, "$deliveries") && !app.auth.has_scope(&who, Scope::Admin) {
                return respond(denied(&who, "read deliveries"));
            }
            respond(Response::json(200, &json!({ "deliveries": app.deliveries.recent(100) })))
        }
        Route::ReplayDelivery(id) => {
            if !app.auth.has_scope(&who, Scope::Admin) {
                return respond(denied(&who, "replay deliveries"));
            }
            match app.deliveries.get(&id).cloned() {
                None => respond(Response::error(
                    404,
                    &format!("no stored delivery {id:?} (kept up to journal.max_delivery_bytes)"),
                )),
                Some(kept) if app.hooks.get(&kept.hook).is_none() => {
                    respond(Response::error(409, &format!("hook {:?} no longer exists", kept.hook)))
                }
                Some(kept) => deliver(app, kept, 0, true),
            }
        }
        _ => respond(Response::error(404, "no such route")),
    }
}

/// The runs API: reading needs subscribe on `$runs` (what the status page has); cancel and
/// retry need the admin scope.
fn runs(app: &mut App, ip: IpAddr, head: &Head, route: Route) -> Response {
    let who = caller(app, ip, head);
    let now = app.now;
    match route {
        Route::Runs | Route::Run(_)
            if !app.auth.allows(&who, Scope::Subscribe, "$runs") && !app.auth.has_scope(&who, Scope::Admin) =>
        {
            denied(&who, "read runs")
        }
        Route::CancelRun(_) | Route::RetryRun(_) if !app.auth.has_scope(&who, Scope::Admin) => {
            denied(&who, "operate runs")
        }
        Route::Runs => Response::json(200, &json!({ "runs": app.runner.recent(100) })),
        Route::Run(id) => match app.runner.record(id, true) {
            Some(r) => Response::json(200, &r),
            None => Response::error(404, &format!("no run {id} (finished runs are kept up to runner.keep_runs)")),
        },
        Route::CancelRun(id) => match app.runner.get(id).map(|r| r.state) {
            None => Response::error(404, &format!("no run {id}")),
            Some(s) if s.is_final() => Response::error(409, &format!("run {id} is already {}", s.as_str())),
            Some(_) => {
                app.runner.cancel(id, now);
                Response::json(202, &json!({ "run": id, "cancelling": true }))
            }
        },
        Route::RetryRun(id) => match app.runner.get(id).map(|r| r.state) {
            None => Response::error(404, &format!("no run {id}")),
            Some(_) => match app.runner.retry(id, now) {
                Some(new) => Response::json(202, &json!({ "run": new, "retry_of": id })),
                None => Response::error(503, "the hook's run queue is full").with("Retry-After", "5"),
            },
        },
        _ => Response::error(404, "no such route"),
    }
}

/// The origin a response may allow, if the request's `Origin` is configured.
fn allowed_origin(app: &App, head: &Head) -> Option<(String, bool)> {
    let origin = head.header_str("origin")?;
    let list = &app.cfg.cors_origins;
    if list.iter().any(|o| o == origin) {
        Some((origin.to_string(), true))
    } else if list.iter().any(|o| o == "*") {
        Some(("*".to_string(), false))
    } else {
        None
    }
}

fn cors_headers(app: &App, head: &Head) -> Vec<Field> {
    match allowed_origin(app, head) {
        None => Vec::new(),
        Some((origin, exact)) => {
            let mut h: Vec<Field> = vec![("Access-Control-Allow-Origin".into(), origin)];
            if exact {
                // Credentials (the token cookie) only for origins named one by one.
                h.push(("Access-Control-Allow-Credentials".into(), "true".to_string()));
                h.push(("Vary".into(), "Origin".to_string()));
            }
            h
        }
    }
}

fn with_cors(app: &App, head: &Head, mut r: Response) -> Response {
    r.headers.extend(cors_headers(app, head));
    r
}

fn preflight(app: &App, head: &Head, allow: &'static str) -> Response {
    let mut r = Response::new(204, "text/plain", Vec::new()).with("Allow", allow);
    if allowed_origin(app, head).is_some() {
        r = r
            .with("Access-Control-Allow-Methods", allow)
            .with("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID")
            .with("Access-Control-Max-Age", "600");
    }
    r
}

/// The event telling a resuming client that history no longer holds everything it missed, so
/// it must refetch its state. Its id is the point the stream is consistent from.
pub fn reset_event(wire: Wire, since: u64, resume: u64) -> Vec<u8> {
    let data = json!({ "reason": "history_gap", "last_event_id": since, "resume_from": resume }).to_string();
    match wire {
        Wire::Sse | Wire::SseEnvelope => {
            let mut out = Vec::new();
            crate::sse::encode_into(&mut out, resume, "reset", &data);
            out
        }
        Wire::Json => data.into_bytes(),
        Wire::Ws => {
            let msg = json!({ "type": "reset", "last_event_id": since, "resume_from": resume }).to_string();
            crate::ws::frame::encode_frame(crate::ws::frame::Opcode::Text, msg.as_bytes())
        }
    }
}
