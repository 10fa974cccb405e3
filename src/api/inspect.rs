//! The status page's delivery inspector: `GET /api/deliveries/{event}` (or
//! `/api/deliveries/{hook}/{id}`, the newest record of that delivery) answers one delivery's
//! whole story — its `$deliveries` record (verification and rules in words, the event it
//! published, its run) with the request as it arrived (method, path, query, client address and
//! proxy hop, headers, body) — and `GET /api/deliveries/{event}/body` the body's raw bytes.
//! Admin only: a request holds whatever its sender put in it. Secret-bearing headers are masked
//! unless `?reveal=1` asks otherwise, which the log records.

use super::access::{caller, denied};
use crate::app::App;
use crate::auth::{Client, Scope};
use crate::hooks::intake::{self, DeliveryRecord, PublishedRecord, Verdict};
use crate::hooks::stored::{Stored, MASKED};
use crate::http::request::{query_param, Head};
use crate::http::response::Response;
use base64::Engine;
use serde_json::{json, Value};

/// Most body bytes shown in the record's JSON; the rest is at the raw link.
pub(crate) const BODY_PREVIEW: usize = 64 * 1024;

/// `GET /api/deliveries/{event}[/body]` and `GET /api/deliveries/{hook}/{id}`.
pub(super) fn inspect(
    app: &mut App,
    client: Client,
    head: &Head,
    hook: Option<String>,
    id: &str,
    raw: bool,
) -> Response {
    let who = caller(app, client, head, false);
    if !app.auth.has_scope(&who, Scope::Admin) {
        return denied(&who, "inspect deliveries");
    }
    let found = match &hook {
        None => id.parse::<u64>().ok().and_then(|e| by_event(app, e)),
        Some(h) => by_name(app, h, id),
    };
    let Some(p) = found else {
        return Response::error(404, "no such delivery in the $deliveries history");
    };
    let request = request_of(app, &p);
    if raw {
        return match request {
            Some((kept, _)) => Response::new(200, "application/octet-stream", kept.body.clone())
                .with("Content-Disposition", format!("attachment; filename=\"delivery-{}.bin\"", p.event_id))
                .with("Content-Security-Policy", "sandbox")
                .with("X-Content-Type-Options", "nosniff")
                .with("Cache-Control", "no-store"),
            None => Response::error(404, "this delivery's request is no longer kept"),
        };
    }
    let reveal = matches!(query_param(head.query(), "reveal").as_deref(), Some("1" | "true"));
    if reveal {
        let name = app.auth.token_name(&who).unwrap_or("?");
        log::warn!(
            "status: {name} from {} revealed the secret headers of delivery {} (hook {:?}, event {})",
            client.ip,
            p.record.delivery,
            p.record.hook,
            p.event_id
        );
    }
    let hooks = &app.hooks;
    let secret = |name: &str| {
        hooks.get(&p.record.hook).map_or_else(|| intake::is_known_secret_header(name), |h| h.is_secret_header(name))
    };
    let run = p.record.run.and_then(|r| app.runner.record(r, false));
    let replayable = p.record.outcome == Verdict::Accepted
        && app.deliveries.get(&p.record.hook, &p.record.delivery).is_some()
        && app.hooks.get(&p.record.hook).is_some();
    let (verification_detail, rule) = explain(app, &p, request);
    let mut v = serde_json::to_value(&p).unwrap_or(Value::Null);
    v["verification_detail"] = json!(verification_detail);
    v["rule"] = json!(rule);
    v["request"] = request.map_or(Value::Null, |(kept, cut)| request_json(kept, cut, p.event_id, reveal, secret));
    v["run"] = json!(p.record.run);
    v["run_record"] = run.unwrap_or(Value::Null);
    v["replayable"] = json!(replayable);
    v["revealed"] = json!(reveal);
    Response::json(200, &v).with("Cache-Control", "no-store")
}

/// The signature check and the rules in words: the intake decides the kept request again, as
/// it did when it arrived (at that time, never a duplicate, nothing run): pure and cheap, and
/// the `$deliveries` record stays as small as it was. None when the request is no longer kept,
/// was cut when kept (its signature would no longer hold), or its hook is gone.
fn explain(app: &App, p: &PublishedRecord, request: Option<(&Stored, bool)>) -> (Option<String>, Option<String>) {
    let (Some((kept, false)), Some(h)) = (request, app.hooks.get(&p.record.hook)) else { return (None, None) };
    let req = kept.request(0, kept.time_ms / 1000, Some(kept.delivery.as_str()).filter(|d| !d.is_empty()));
    let d = intake::decide(h, req, app.runner.config(), |_| false, String::new);
    (Some(d.verification_detail), d.rule)
}

/// The record published as `$deliveries` event `event_id`, while history holds it.
fn by_event(app: &App, event_id: u64) -> Option<PublishedRecord> {
    let r = app.hub.replay(&["$deliveries"], event_id.checked_sub(1)?, 0, None);
    let ev = r.events.first().filter(|e| e.id == event_id)?;
    Some(PublishedRecord::new(DeliveryRecord::read(&ev.data)?, None, ev.id, ev.time_ms))
}

/// The newest record of delivery `id` to hook `hook`.
fn by_name(app: &App, hook: &str, id: &str) -> Option<PublishedRecord> {
    let all = app.hub.replay(&["$deliveries"], 0, usize::MAX, None).events;
    all.iter().rev().filter(|e| e.data.contains(id)).find_map(|ev| {
        let r = DeliveryRecord::read(&ev.data)?;
        (r.hook == hook && r.delivery == id).then(|| PublishedRecord::new(r, None, ev.id, ev.time_ms))
    })
}

/// The request of a delivery, and whether its body was cut when kept: an accepted one's from
/// the stored deliveries, any other's from the recent refused ones.
fn request_of<'a>(app: &'a App, p: &PublishedRecord) -> Option<(&'a Stored, bool)> {
    if p.record.outcome == Verdict::Accepted {
        app.deliveries.get(&p.record.hook, &p.record.delivery).map(|s| (s, false))
    } else {
        app.rejected.get(p.event_id)
    }
}

/// The request as the inspector shows it.
fn request_json(kept: &Stored, cut: bool, event_id: u64, reveal: bool, secret: impl Fn(&str) -> bool) -> Value {
    let headers: Vec<Value> = kept
        .headers
        .iter()
        .map(|(k, v)| {
            let masked = secret(k);
            let shown = if masked && !reveal { MASKED.into() } else { String::from_utf8_lossy(v) };
            json!([k, shown, masked])
        })
        .collect();
    let shown = &kept.body[..kept.body.len().min(BODY_PREVIEW)];
    let (encoding, text) = match std::str::from_utf8(shown) {
        Ok(t) => ("text", t.to_string()),
        // Cut inside a character: the text up to it.
        Err(e) if e.error_len().is_none() && shown.len() < kept.body.len() => {
            ("text", String::from_utf8_lossy(&shown[..e.valid_up_to()]).into_owned())
        }
        Err(_) => ("base64", base64::engine::general_purpose::STANDARD.encode(shown)),
    };
    let content_type = kept.headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| String::from_utf8_lossy(v));
    json!({
        "method": kept.method,
        "path": format!("/hooks/{}", kept.hook),
        "query": kept.query,
        "source": kept.ip.to_string(),
        "via": kept.via.map(|v| v.to_string()),
        "time": crate::clock::rfc3339(kept.time_ms),
        "headers": headers,
        "content_type": content_type,
        "body": {
            "bytes": kept.body.len(),
            "encoding": encoding,
            "text": text,
            "truncated": shown.len() < kept.body.len(),
            "cut_when_kept": cut,
            "raw": format!("/api/deliveries/{event_id}/body"),
        },
    })
}
