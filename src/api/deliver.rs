//! Webhook deliveries: `/hooks/{id}`, the stored deliveries and their replay
//! (`/api/deliveries`), and the runs they start (`/api/runs`). The intake
//! ([`intake::decide`]) decides; here its decision meets the daemon's state (idempotency window,
//! journal, runner, hub, metrics, status page, log).

use super::access::{caller, denied};
use super::{journal_unavailable, respond, Outcome};
use crate::app::App;
use crate::auth::{Client, Scope};
use crate::hooks::intake::{self, Decision, Verdict};
use crate::hooks::stored::Stored;
use crate::http::request::Head;
use crate::http::response::Response;
use crate::http::router::Route;
use crate::runner::sched::RunId;
use serde_json::json;
use std::time::Duration;

/// `/hooks/{id}`: the intake decides; here its decision meets the daemon's state (idempotency
/// window, runner, hub, metrics, log).
///
/// A hook without a `provider` is trusted by who can reach it (its address rules, a loopback
/// listener): a request straight from a browser (no `via`: no trusted proxy vouched for another
/// address) whose `Host` is not ours is a DNS-rebinding page, and gets 421 (RFC 9110 §15.5.20,
/// Misdirected Request). A provider's signature holds whatever the `Host`, and behind a trusted
/// proxy the address rules see the real client, so neither is refused. `via` is that proxy
/// (the TCP peer) when one named the client.
pub(super) fn hook(
    app: &mut App,
    client: Client,
    via: Option<std::net::IpAddr>,
    port: u16,
    head: &Head,
    body: Vec<u8>,
    id: &str,
) -> Outcome {
    let Some(h) = app.hooks.get(id) else {
        // A sender configured with the wrong URL, or someone probing: either way worth a line.
        log::info!(hook = id, source:% = client.ip, method = head.method.as_str(); "unknown hook");
        return respond(Response::new(404, "text/plain; charset=utf-8", "Hook not found."));
    };
    if !client.host_ok && via.is_none() && h.def.provider.is_none() {
        let host = head.header_str("host").unwrap_or("");
        log::info!(
            hook = id,
            source:% = client.ip,
            outcome = "rejected",
            status = 421,
            reason = format!("Host {host:?} is not one of ours (server_names)");
            "delivery"
        );
        return respond(Response::error(421, &format!("host {host:?} is not served here (see server_names)")));
    }
    if let Some(why) = app.work_refusal() {
        // Before the intake: nothing is verified, recorded, deduplicated or run.
        log::warn!(hook = id, source:% = client.ip, outcome = "refused", status = 503, reason = why; "delivery");
        *app.metrics.deliveries.entry((id.to_string(), "refused")).or_default() += 1;
        return respond(journal_unavailable(why));
    }
    // Kept for replay (and journalled) if accepted: every header the hook's verification, rules
    // and arguments may read (replay checks them again), but no credential meant for hookcast.
    let headers = head.headers.iter().filter(|(n, _)| h.keeps_header(n)).cloned().collect();
    let kept = Stored {
        delivery: String::new(),
        hook: id.to_string(),
        time_ms: crate::clock::unix_ms(),
        method: head.method.as_str().to_string(),
        headers,
        query: head.query().to_string(),
        body,
        ip: client.ip,
        via,
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
/// /api/deliveries/{hook}/{id}/replay`) keeps its delivery id and is the stored request verified
/// again at the time it first arrived (so a replay window does not refuse the authentic bytes),
/// never a duplicate, and not stored or journalled a second time.
fn deliver(app: &mut App, kept: Stored, port: u16, replay: bool) -> Outcome {
    let started = app.now;
    let id = kept.hook.clone();
    let id = id.as_str();
    let Some(h) = app.hooks.get(id) else {
        return respond(Response::new(404, "text/plain; charset=utf-8", "Hook not found."));
    };
    let ip = kept.ip;
    let source = crate::metrics::webhook_source(h.def.provider.as_deref(), ip);
    let request_id = app.cfg.x_request_id.and_then(|limit| x_request_id(&kept.headers, limit));
    let now_unix = if replay { kept.time_ms / 1000 } else { crate::clock::unix_ms() / 1000 };
    let req = kept.request(port, now_unix, replay.then_some(kept.delivery.as_str()));
    let now = app.now;
    let (dedup, unconfirmed, ids) = (&mut app.dedup, &app.unconfirmed, &mut app.made_up_ids);
    // A resend of a delivery whose record is still being written is neither new (it would
    // run twice) nor a duplicate yet (it may never become durable): it is refused below.
    let mut in_flight = false;
    let seen = |delivery: &str| {
        if replay {
            return false;
        }
        in_flight = unconfirmed.contains(&(id.to_string(), delivery.to_string()));
        dedup.contains(id, delivery, now)
    };
    let mut d = intake::decide(h, req, app.runner.config(), seen, || ids.make(now_unix));
    d.record.replay = replay;
    let topic = h.topic.clone();
    let done = accept(app, &mut d, kept, &topic, replay, in_flight);
    let status = d.response.as_ref().map_or(0, |r| r.status);
    let took = std::time::Instant::now().duration_since(started);
    app.metrics.webhook_took(id, source, took.as_secs_f64());
    // Why it was not accepted, in words: the rule or signature check that failed.
    let reason = (d.record.outcome != Verdict::Accepted).then(|| match &d.detail {
        Some(more) => format!("{} ({more})", d.record.message),
        None => d.record.message.clone(),
    });
    log::info!(
        hook = id,
        source:% = ip,
        request = request_id,
        event = d.record.event.as_deref(),
        delivery = d.record.delivery.as_str(),
        outcome = d.record.outcome.as_str(),
        status:% = if status == 0 { "pending".to_string() } else { status.to_string() },
        run = done.run,
        replay = replay.then_some(true),
        reason = reason,
        duration_ms = took.as_micros() as f64 / 1000.0;
        "delivery"
    );
    let out = reply(&mut d, &done, id, run_wait(app, id), replay, app.last_seq());
    if app.cluster.is_some() {
        if let (Outcome::Durable { seq, .. }, false) = (&out, replay) {
            // Another node may have taken this delivery id first: then the log says so.
            let body = json!({ "duplicate": true, "delivery": d.record.delivery, "hook": id });
            app.if_duplicate.insert(*seq, (id.to_string(), Response::json(200, &body)));
        }
        // Every node notes it on the status page when it reads it back from the log.
        return out;
    }
    crate::status::note_delivery(app, d.record, d.signature_failure, done.noted);
    out
}

/// Starts the run of a delivery another node (or this one) accepted, read from the cluster's
/// log by the node holding the runner role. The stored request is verified again at the time
/// it arrived, as a replay is: a write to Redis alone cannot start a deploy without the hook's
/// secret, and a hook that differs between nodes shows up here rather than running blind.
pub(crate) fn run_from_log(app: &mut App, kept: Stored) {
    let Some(h) = app.hooks.get(&kept.hook) else {
        log::warn!("cluster: delivery {} is for hook {:?}, which this node does not have", kept.delivery, kept.hook);
        return;
    };
    let req = kept.request(0, kept.time_ms / 1000, Some(kept.delivery.as_str()));
    let (ids, arrived) = (&mut app.made_up_ids, kept.time_ms / 1000);
    let mut d = intake::decide(h, req, app.runner.config(), |_| false, || ids.make(arrived));
    if d.record.outcome != Verdict::Accepted {
        log::warn!(
            "cluster: delivery {} of hook {:?} does not pass here ({}): are the hooks the same on every node?",
            kept.delivery,
            kept.hook,
            d.record.message
        );
        return;
    }
    let Some(spec) = d.spec.take() else { return };
    // Held until its `queued` record is in the log: a node taking the role over after this
    // one died knows from the log alone which deliveries never started.
    match app.runner.submit(spec, app.now, true) {
        Some(run) => {
            log::info!("cluster: delivery {} of hook {:?} runs here as run {run}", kept.delivery, kept.hook);
            app.pump_runner();
            app.held_runs.push_back((app.last_seq(), run));
        }
        None => {
            log::warn!("cluster: delivery {} of hook {:?} not run: the run queue is full", kept.delivery, kept.hook)
        }
    }
}

/// What acting on a decision left for the answer.
struct Acted {
    /// The run the delivery started or joined.
    run: Option<RunId>,
    /// The journal record the answer waits for (0: none).
    durable: u64,
    /// The `$deliveries` event: (id, time in ms).
    noted: (u64, u64),
}

/// Acts on the intake's decision: the daemon's own last refusals (see [`admit`]), then the
/// journal record, the hook topic's event, the `$deliveries` record, metrics, and the effects
/// that wait for durability.
fn accept(app: &mut App, d: &mut Decision, kept: Stored, topic: &str, replay: bool, in_flight: bool) -> Acted {
    let id = kept.hook.clone();
    if let Some(reason) = d.signature_failure {
        *app.metrics.signature_failures.entry((id.clone(), reason)).or_default() += 1;
    }
    // Kept for the inspector: the request of a delivery refused by the intake (an accepted
    // one's is in the stored deliveries; one refused after that, rarely, is not kept).
    let inspect = (d.record.outcome != Verdict::Accepted && !replay).then(|| kept.clone());
    let (record, run) = admit(app, d, kept, replay, in_flight);
    let accepted = d.record.outcome == Verdict::Accepted;
    // In a cluster the request, its events and its record are one append, refused as a whole
    // when another node accepted the same delivery first (a replay is never a duplicate).
    let dedup = (accepted && !replay).then(|| format!("{id}\n{}", d.dedup_key));
    app.begin_batch(dedup);
    let mut durable = 0;
    let mut kept_for_replay = None;
    if accepted {
        if let Some((kept, rec)) = record {
            if app.cluster.is_some() {
                app.batch_delivery(&kept);
            }
            durable = rec.map_or(0, |rec| app.journal_delivery(rec));
            kept_for_replay = Some(kept);
        }
        d.record.run = run;
        if let Some(mut ev) = d.topic_event.take() {
            if let Some(r) = run {
                ev["run"] = json!(r);
            }
            let kind =
                d.record.event.clone().filter(|e| crate::sse::valid_event_name(e)).unwrap_or_else(|| "delivery".into());
            let ev = app.publish_event(topic, &kind, ev.to_string(), true, d.retain);
            d.record.published = Some(intake::PublishedEvent { id: ev.id, topic: topic.to_string() });
        }
    }
    *app.metrics.deliveries.entry((id, d.record.outcome.as_str())).or_default() += 1;
    let noted = app.publish("$deliveries", "delivery", d.record.to_json(), true);
    if let Some(kept) = inspect {
        app.rejected.insert(noted.id, kept);
    }
    durable = durable.max(app.end_batch());
    if accepted {
        // Both records (the request, then its accepted outcome) must be durable: see App::restore.
        let seq = app.last_seq();
        app.hold_delivery(seq, kept_for_replay.map(|k| (k, d.dedup_key.clone())), run);
    }
    Acted { run, durable, noted: (noted.id, noted.time_ms) }
}

/// An accepted delivery's journal record (built before anything is started, so a delivery too
/// large to journal is refused rather than accepted without durability) and its run; or the
/// delivery refused after all (still being journalled, too large, run queue full).
fn admit(
    app: &mut App,
    d: &mut Decision,
    kept: Stored,
    replay: bool,
    in_flight: bool,
) -> (Option<(Stored, Option<crate::journal::Record>)>, Option<RunId>) {
    if in_flight && d.record.outcome == Verdict::Accepted {
        let r = Response::error(503, "this delivery is still being written to the journal; send it again later");
        refuse(d, r.with("Retry-After", "5"), "still being journalled");
    }
    let mut record = None;
    if app.cluster.is_some() && d.record.outcome == Verdict::Accepted {
        // The node holding the runner role starts the run when it reads the request back.
        d.spec = None;
        if d.response.is_none() {
            let body = json!({
                "accepted": true, "delivery": d.record.delivery,
                "message": "accepted; in a cluster the run's output is on $runs, not in this answer",
            });
            d.response = Some(Response::json(202, &body));
        }
        let kept = Stored { delivery: d.record.delivery.clone(), ..kept };
        return (Some((kept, None)), None);
    }
    if d.record.outcome == Verdict::Accepted && !replay {
        let kept = Stored { delivery: d.record.delivery.clone(), ..kept };
        match app.delivery_record(&kept) {
            Some(Err(e)) => {
                let r = Response::error(413, &format!("this delivery is too large for the journal ({e})"));
                refuse(d, r, "too large for the journal");
            }
            Some(Ok(rec)) => record = Some((kept, Some(rec))),
            None => record = Some((kept, None)),
        }
    }
    let mut run = None;
    if let Some(spec) = d.spec.take() {
        // With a journal the run waits for the delivery's record to be durable.
        match app.runner.submit(spec, app.now, app.journal.is_some()) {
            Some(r) => run = Some(r),
            None => {
                let r = Response::error(503, "this hook's run queue is full").with("Retry-After", "10");
                refuse(d, r, "run queue full");
            }
        }
    }
    (record, run)
}

/// The answer to a delivery: once what it published is durable, or when its run ends.
fn reply(d: &mut Decision, done: &Acted, hook: &str, wait: Duration, replay: bool, last_seq: u64) -> Outcome {
    let accepted = d.record.outcome == Verdict::Accepted;
    let durable = done.durable.max(last_seq);
    if replay {
        let status = if accepted { 202 } else { 409 };
        let body = json!({
            "replayed": d.record.delivery, "outcome": d.record.outcome.as_str(), "run": done.run, "record": d.record,
        });
        return Outcome::Durable { seq: durable, resp: Response::json(status, &body) };
    }
    match (d.response.take(), done.run) {
        // A provider that got a 2xx never resends: only answer once the delivery is durable.
        (Some(r), _) if accepted && durable > 0 => Outcome::Durable { seq: durable, resp: r },
        (Some(r), _) => respond(r),
        (None, Some(run)) => Outcome::AwaitRun { run, hook: hook.to_string(), seq: durable, wait },
        (None, None) => respond(Response::error(500, "no run to wait for")),
    }
}

/// Turns an accepted delivery into a refused one answered `resp`. Not acknowledged: the
/// sender retries later, nothing was lost.
fn refuse(d: &mut Decision, resp: Response, message: &str) {
    d.spec = None;
    d.record.outcome = Verdict::Rejected;
    d.record.status = resp.status;
    d.record.message = message.to_string();
    d.response = Some(resp);
}

/// `GET /api/deliveries` (recent accepted deliveries kept for replay) and
/// `POST /api/deliveries/{hook}/{id}/replay` (admin; `/api/deliveries/{id}/replay` while one
/// hook holds that id): the dead-letter story for failed deploys.
pub(super) fn deliveries(app: &mut App, client: Client, head: &Head, route: Route) -> Outcome {
    let who = caller(app, client, head, false);
    match route {
        Route::Deliveries => {
            if let Some(q) = crate::http::request::query_param(head.query(), "q") {
                return respond(search(app, &who, &q));
            }
            if !app.auth.allows(&who, Scope::Subscribe, "$deliveries") && !app.auth.has_scope(&who, Scope::Admin) {
                return respond(denied(&who, "read deliveries"));
            }
            // Secret-bearing headers are masked: the stored copy keeps them for replay only.
            let hooks = &app.hooks;
            let secret = |hook: &str, name: &str| {
                hooks.get(hook).map_or_else(|| intake::is_known_secret_header(name), |h| h.is_secret_header(name))
            };
            respond(Response::json(200, &json!({ "deliveries": app.deliveries.recent(100, secret) })))
        }
        Route::ReplayDelivery { hook, id } => {
            if !app.auth.has_scope(&who, Scope::Admin) {
                return respond(denied(&who, "replay deliveries"));
            }
            let kept = match hook {
                Some(hook) => app.deliveries.get(&hook, &id).cloned().ok_or_else(|| {
                    Response::error(
                        404,
                        &format!("no stored delivery {id:?} of hook {hook:?} (kept up to journal.max_delivery_bytes)"),
                    )
                }),
                // The short form names one delivery only while one hook holds that id.
                None => match app.deliveries.with_id(&id).as_slice() {
                    [] => Err(Response::error(
                        404,
                        &format!("no stored delivery {id:?} (kept up to journal.max_delivery_bytes)"),
                    )),
                    [one] => Ok((*one).clone()),
                    many => {
                        let hooks: Vec<&str> = many.iter().map(|d| d.hook.as_str()).collect();
                        Err(Response::json(
                            409,
                            &json!({
                                "error": format!(
                                    "delivery {id:?} was accepted by several hooks: name one with \
                                     /api/deliveries/{{hook}}/{{id}}/replay"
                                ),
                                "hooks": hooks,
                            }),
                        ))
                    }
                },
            };
            match kept {
                Err(r) => respond(r),
                Ok(kept) if app.hooks.get(&kept.hook).is_none() => {
                    respond(Response::error(409, &format!("hook {:?} no longer exists", kept.hook)))
                }
                Ok(kept) => match app.work_refusal() {
                    Some(why) => respond(journal_unavailable(why)),
                    None => {
                        *app.metrics.delivery_replays.entry(kept.hook.clone()).or_default() += 1;
                        deliver(app, kept, 0, true)
                    }
                },
            }
        }
        _ => respond(Response::error(404, "no such route")),
    }
}

/// Most matches `GET /api/deliveries?q=` answers.
const MAX_MATCHES: usize = 200;

/// `GET /api/deliveries?q=TEXT` (admin: bodies hold whatever senders put in them): the kept
/// requests whose body contains TEXT (ASCII case ignored), newest first — accepted ones by
/// hook and delivery id, refused ones also by their `$deliveries` event id (`event_id`).
fn search(app: &App, who: &crate::auth::Caller, q: &str) -> Response {
    if !app.auth.has_scope(who, Scope::Admin) {
        return denied(who, "search delivery bodies");
    }
    let needle = q.as_bytes().to_ascii_lowercase();
    if needle.is_empty() || needle.len() > 256 {
        return Response::error(400, "q must be 1 to 256 bytes");
    }
    let holds = |body: &[u8]| body.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(&needle));
    let accepted = app.deliveries.newest().filter(|d| holds(&d.body)).map(|d| (None, d));
    let refused = app.rejected.iter().collect::<Vec<_>>();
    let refused = refused.into_iter().rev().filter(|(_, d)| holds(&d.body)).map(|(e, d)| (Some(e), d));
    let matches: Vec<serde_json::Value> = accepted
        .chain(refused)
        .take(MAX_MATCHES)
        .map(|(event_id, d)| json!({ "hook": d.hook, "delivery": d.delivery, "event_id": event_id }))
        .collect();
    Response::json(200, &json!({ "matches": matches })).with("Cache-Control", "no-store")
}

/// The runs API: reading needs subscribe on `$runs` (what the status page has); cancel and
/// retry need the admin scope.
pub(super) fn runs(app: &mut App, client: Client, head: &Head, route: Route) -> Response {
    let who = caller(app, client, head, false);
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
                Some(new) => {
                    if let Some(r) = app.runner.get(new) {
                        *app.metrics.run_retries.entry(r.spec.hook.clone()).or_default() += 1;
                    }
                    Response::json(202, &json!({ "run": new, "retry_of": id }))
                }
                None => Response::error(503, "the hook's run queue is full").with("Retry-After", "5"),
            },
        },
        _ => Response::error(404, "no such route"),
    }
}

/// How long a webhook waiting for its run's output is held: the hook's timeout (else the
/// runner's), the kill grace, and ten seconds for the last output to come in.
fn run_wait(app: &App, hook: &str) -> Duration {
    let runner = app.runner.config();
    let timeout = app.hooks.get(hook).and_then(|h| h.def.timeout_secs).map_or(runner.timeout, Duration::from_secs);
    timeout + runner.kill_grace + Duration::from_secs(10)
}

/// The answer to a webhook that waited for run `run` of `hook` (adnanh's
/// `include-command-output-in-response`), once the run has ended.
pub(crate) fn run_answer(app: &App, hook: &str, run: crate::runner::sched::RunId) -> Response {
    match (app.hooks.get(hook), app.runner.get(run)) {
        (Some(h), Some(r)) => {
            crate::hooks::intake::run_response(&h.def, r.state == crate::runner::RunState::Succeeded, &r.raw)
        }
        _ => Response::error(500, "the run's record is gone"),
    }
}
