//! The handlers behind streams and held requests: what a subscription may name, what a publish
//! must pass, the WebSocket client ops, and the answers of requests the connection holds (a long
//! poll, a webhook waiting for its run). HTTP routes and WebSocket ops both call these, so one
//! rule gives one answer whichever way a client comes. No I/O: the connection sends what these
//! return.

use super::denied;
use crate::app::App;
use crate::auth::{Caller, Scope};
use crate::http::response::Response;
use crate::hub::{Event, PatternId, Wire};
use crate::ws::ops::{self, Op, OpError};
use serde_json::json;
use std::rc::Rc;

/// Most patterns one subscription may name.
pub const MAX_PATTERNS: usize = 32;

/// Deepest JSON accepted as an event's data: the hook payloads' limit less the three levels a
/// long-poll answer wraps around it (`{"events":[{"data":…}]}`), so every wire format stays
/// within what serde_json and the hook checker read.
pub const MAX_PUBLISH_DEPTH: usize = crate::hooks::json::MAX_DEPTH - 3;

/// 400 when a subscription names more than [`MAX_PATTERNS`] patterns.
pub(crate) fn pattern_count(n: usize) -> Result<(), Response> {
    if n > MAX_PATTERNS {
        return Err(Response::error(400, &format!("at most {MAX_PATTERNS} topics")));
    }
    Ok(())
}

/// 400 when `p` is not a topic pattern.
pub(crate) fn valid_pattern(p: &str) -> Result<(), Response> {
    crate::topic::validate_pattern(p).map_err(|e| Response::error(400, &format!("{e}: {p:?}")))
}

/// 401 or 403 when `who` may not subscribe to `p`.
pub(crate) fn may_subscribe(app: &App, who: &Caller, p: &str) -> Result<(), Response> {
    if app.auth.allows(who, Scope::Subscribe, p) {
        Ok(())
    } else {
        Err(denied(who, &format!("subscribe to {p:?}")))
    }
}

/// The retained events a subscriber asking for state gets first: the states of the topics
/// matching `patterns` that `who` may subscribe to, up to id `through` (where its stream
/// continues), in id order.
pub(crate) fn state_events(app: &App, who: &Caller, patterns: &[&str], through: u64) -> Vec<Rc<Event>> {
    let mut list = app.hub.states_matching(patterns, through);
    list.retain(|ev| app.auth.allows(who, Scope::Subscribe, &ev.topic));
    list
}

/// Publishes `data` as event `kind` on `topic` for `who`, after every check a publish must pass,
/// in this order: the topic's syntax, no system topic, the caller's scope, a journal that takes
/// work, the event type, the journal's record limit, UTF-8, and for JSON the nesting limit. A
/// refusal is the HTTP answer; a WebSocket op sends its message (see [`op_error`]). With
/// `retain` the event becomes the topic's state (an empty body clears it).
pub(crate) fn publish_checked(
    app: &mut App,
    who: &Caller,
    topic: &str,
    kind: &str,
    data: Vec<u8>,
    is_json: bool,
    retain: bool,
) -> Result<Rc<Event>, Response> {
    if let Err(e) = crate::topic::validate_topic(topic) {
        return Err(Response::error(400, &format!("{e}: {topic:?}")));
    }
    if topic.starts_with('$') {
        return Err(Response::error(403, "system topics are published by hookcast itself"));
    }
    if !app.auth.allows(who, Scope::Publish, topic) {
        return Err(denied(who, &format!("publish to {topic:?}")));
    }
    if let Some(why) = app.work_refusal() {
        return Err(super::journal_unavailable(why));
    }
    if !crate::sse::valid_event_name(kind) {
        return Err(Response::error(400, "event type must be 1-64 characters without line breaks"));
    }
    let limit = crate::app::max_event_data(topic, kind);
    if app.journal.is_some() && data.len() > limit {
        // It could not be journalled, so it could not be acknowledged as durable.
        return Err(Response::error(
            413,
            &format!("event data of {} bytes is over the journal's record limit ({limit} bytes)", data.len()),
        ));
    }
    let Ok(data) = String::from_utf8(data) else {
        return Err(Response::error(400, "body must be UTF-8 text"));
    };
    // The hook payloads' checker, nesting limit included: serde_json ignores a value without
    // its recursion limit, and a 100 000-deep list stored here broke every client that parsed it.
    if is_json {
        if let Err(e) = crate::hooks::json::check_depth(data.as_bytes(), MAX_PUBLISH_DEPTH) {
            let max = MAX_PUBLISH_DEPTH;
            let msg =
                format!("body is not valid JSON of at most {max} nested levels (Content-Type says it is JSON): {e}");
            return Err(Response::error(400, &msg));
        }
    }
    Ok(app.publish_event(topic, kind, data, is_json, retain))
}

/// The WebSocket error for op `op` that an HTTP client would get as `refusal`: the same words,
/// so a rule has one wording whichever way the client came.
/// An op's refusal as the WebSocket error reply: the HTTP refusal's words and, when it gave
/// one, its `reason` (a JWT's `expired`, `not_granted`, …).
fn op_refusal(op: &str, refusal: &Response) -> String {
    let body: serde_json::Value = serde_json::from_slice(&refusal.body).unwrap_or_default();
    let mut reply: serde_json::Value = serde_json::from_str(&ops::error(&op_error(op, refusal))).unwrap_or_default();
    if let (Some(reason), Some(m)) = (body.get("reason").filter(|r| r.is_string()), reply.as_object_mut()) {
        m.insert("reason".into(), reason.clone());
    }
    reply.to_string()
}

fn op_error(op: &str, refusal: &Response) -> OpError {
    let body: serde_json::Value = serde_json::from_slice(&refusal.body).unwrap_or_default();
    let error = body["error"].as_str().map_or_else(|| format!("refused ({})", refusal.status), str::to_string);
    OpError { op: Some(op.to_string()), error }
}

/// What the connection does after a WebSocket op.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OpReply {
    /// Send this text message (a reply, an ack or an error).
    Send(String),
    /// Replay history after `since` for the current patterns, after sending the `ack`.
    Resume {
        /// The acknowledgement, sent before the replay.
        ack: String,
        /// Replay events after this id.
        since: u64,
    },
    /// The session goes on under a fresh credential: send `ack`, keep `credential`.
    Reauth {
        /// The acknowledgement (with the new expiry).
        ack: String,
        /// What the session stands for from now on.
        credential: crate::auth::Credential,
    },
    /// Patterns were added with `"state": true`: send `ack`, then the retained events of the
    /// topics matching `patterns` up to where the connection's stream stands.
    State {
        /// The acknowledgement, sent first.
        ack: String,
        /// The patterns the op named.
        patterns: Vec<String>,
    },
    /// The subscription's filter is now `filter` (none: every event): send `ack`.
    Filter {
        /// The acknowledgement, carrying the filter in force.
        ack: String,
        /// The new filter.
        filter: Option<Box<crate::filter::Filter>>,
    },
    /// An event was published: send `ack` once journal record `seq` is durable.
    Published {
        /// The acknowledgement.
        ack: String,
        /// The event's journal record.
        seq: u64,
    },
}

/// Adds the patterns a `subscribe` op names, all or none: the ack, or the refusal.
fn subscribe_op(
    app: &mut App,
    who: &Caller,
    conn: usize,
    patterns: &mut Box<[PatternId]>,
    list: &[String],
) -> Result<String, Response> {
    for p in list {
        valid_pattern(p).and_then(|()| may_subscribe(app, who, p))?;
    }
    let mut added: Vec<&str> = Vec::new();
    for p in list {
        let known = patterns.iter().any(|&id| app.hub.pattern_text(id) == Some(p.as_str()));
        if !known && !added.contains(&p.as_str()) {
            added.push(p);
        }
    }
    // All or nothing: the limit counts the connection's patterns, old and new.
    pattern_count(patterns.len() + added.len())?;
    let mut ids = patterns.to_vec();
    ids.extend(added.into_iter().map(|p| app.hub.subscribe(conn, p)));
    *patterns = ids.into_boxed_slice();
    Ok(ops::ack("subscribe", json!({ "topics": list })))
}

/// Carries out a WebSocket client's op for `who`, on the patterns connection `conn` holds.
pub(crate) fn ws_op(app: &mut App, who: &Caller, conn: usize, patterns: &mut Box<[PatternId]>, op: Op) -> OpReply {
    let send_err = |op: &str, refusal: Response| OpReply::Send(op_refusal(op, &refusal));
    match op {
        Op::Ping => OpReply::Send(r#"{"type":"pong"}"#.to_string()),
        Op::Filter(filter) => {
            let shown = filter.as_ref().map_or(serde_json::Value::Null, crate::filter::Filter::to_json);
            OpReply::Filter { ack: ops::ack("filter", json!({ "filter": shown })), filter: filter.map(Box::new) }
        }
        Op::SubscribeWithState(list) => match subscribe_op(app, who, conn, patterns, &list) {
            Ok(ack) => OpReply::State { ack, patterns: list },
            Err(r) => send_err("subscribe", r),
        },
        Op::Subscribe(list) => match subscribe_op(app, who, conn, patterns, &list) {
            Ok(ack) => OpReply::Send(ack),
            Err(r) => send_err("subscribe", r),
        },
        Op::Unsubscribe(list) => {
            let mut ids = patterns.to_vec();
            ids.retain(|&id| {
                let drop = app.hub.pattern_text(id).is_some_and(|t| list.iter().any(|p| p == t));
                if drop {
                    app.hub.unsubscribe(conn, id);
                }
                !drop
            });
            *patterns = ids.into_boxed_slice();
            OpReply::Send(ops::ack("unsubscribe", json!({ "topics": list })))
        }
        Op::Auth(token) => {
            // A session's credential changes only for one that still allows all it holds.
            let fresh = if super::access::jwt_shaped(&token) && !app.jwt.is_empty() {
                Caller::with_jwt(super::access::verify_jwt(app, &token), who.client)
            } else {
                app.auth.identify(Some(&token), who.client)
            };
            let Some(credential) = app.auth.credential(&fresh) else {
                return send_err("auth", super::access::denied(&fresh, "authenticate"));
            };
            let held =
                patterns.iter().filter_map(|&id| app.hub.pattern_text(id)).map(str::to_string).collect::<Vec<_>>();
            if let Some(r) = held.iter().find_map(|p| may_subscribe(app, &fresh, p).err()) {
                return send_err("auth", r);
            }
            let expires = credential.expires();
            OpReply::Reauth { ack: ops::ack("auth", json!({ "expires": expires })), credential }
        }
        Op::Resume(since) => OpReply::Resume { ack: ops::ack("resume", json!({ "since": since })), since },
        Op::Publish { topic, event, data, retain } => {
            let (text, is_json) = match data {
                serde_json::Value::String(s) => (s, false),
                other => (other.to_string(), true),
            };
            match publish_checked(app, who, &topic, &event, text.into_bytes(), is_json, retain) {
                Err(r) => send_err("publish", r),
                Ok(ev) => OpReply::Published {
                    ack: ops::ack("publish", json!({ "id": ev.id, "topic": topic })),
                    seq: app.last_seq(),
                },
            }
        }
    }
}

/// Whether `ev` passes `filter` (no filter: every event does).
pub(crate) fn passes(filter: Option<&crate::filter::Filter>, ev: &Event) -> bool {
    filter.is_none_or(|f| f.matches(&crate::filter::Subject::new(&ev.kind, &ev.data, ev.data_is_json)))
}

/// The long-poll answer: `{"events":[…],"next":ID}` plus `"reset":true` after a history gap
/// and `"more":true` when the limit cut the batch (poll again at once with `since=next`). None
/// while nothing after `since` matches (the topics and the `filter`): the poll waits. `state`
/// (retained events up to `since`, for `state=1`; those the filter passes) comes first and is
/// not counted by `limit`: `next` stays a cursor after it.
pub(crate) fn poll_answer(
    app: &App,
    patterns: &[&str],
    since: u64,
    limit: usize,
    state: &[Rc<Event>],
    filter: Option<&crate::filter::Filter>,
) -> Option<Response> {
    let r = app.hub.replay(patterns, since, usize::MAX, None);
    let passes = |e: &&Rc<Event>| {
        filter.is_none_or(|f| f.matches(&crate::filter::Subject::new(&e.kind, &e.data, e.data_is_json)))
    };
    let state: Vec<&Rc<Event>> = state.iter().filter(passes).collect();
    let matching: Vec<&Rc<Event>> = r.events.iter().filter(passes).collect();
    if matching.is_empty() && !r.gap && state.is_empty() {
        return None;
    }
    let more = matching.len() > limit;
    let replayed = &matching[..matching.len().min(limit)];
    // With no event to carry it, the cursor goes to the head, as an SSE reset does: a cursor
    // ahead of the server (ids went back: a restored backup, a clock set late without an RTC)
    // echoed back would be answered `reset` at once, forever. Events the filter passed over
    // are behind the cursor too, unless the limit cut the answer before them.
    let next = match (more, replayed.last()) {
        (true, Some(e)) => e.id,
        _ => match r.events.last() {
            Some(e) => e.id,
            None if !state.is_empty() => since,
            None => app.hub.last_id(),
        },
    };
    let events: Vec<&Rc<Event>> = state.iter().chain(replayed).copied().collect();
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

/// The answer of a long poll whose timeout passed with nothing new: no events, the cursor
/// unchanged.
/// The answer to a held long poll whose credential expired while it waited: 401, saying so.
pub(crate) fn expired() -> Response {
    let body = serde_json::json!({
        "error": crate::jwt::Refusal::Expired.message(), "reason": crate::jwt::Refusal::Expired.as_str(), "status": 401,
    });
    Response::json(401, &body).with("WWW-Authenticate", "Bearer realm=\"hookcast\", error=\"invalid_token\"")
}

pub(crate) fn poll_timed_out(since: u64) -> Response {
    let body = format!("{{\"events\":[],\"next\":{since}}}\n");
    Response::new(200, "application/json", body).with("Cache-Control", "no-cache")
}
