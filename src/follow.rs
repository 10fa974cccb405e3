//! What a node of a cluster does with what it reads from the shared log, its own appends
//! included: events go into history and out to subscribers, accepted deliveries enter the
//! idempotency window, the stored deliveries and the status page, and the node holding the
//! runner role starts their runs; a signed ticket used on one node is refused on every node.
//! What the log could not give becomes a `reset` for every subscriber here.
//!
//! Runs: only the node holding the runner role starts them, and only once its reader has
//! reached the end of the log (what it read before is the past: runs that happened or were
//! lost with their node). Every other node keeps the accepted deliveries whose run no `$runs`
//! record has mentioned yet; the node that takes the role over marks the runs its predecessor
//! left unfinished `interrupted`, and runs the deliveries that never started.

use crate::app::App;
use crate::cluster::{Entry, Kind};
use crate::hooks::intake::{DeliveryRecord, Verdict};
use crate::hooks::stored::Stored;
use crate::journal::record::{decode_event_data, event_data_retained};

/// Delivery requests kept until their `$deliveries` record follows (the two are appended in
/// one script call, so this holds a handful at most; the bound is for a log written by
/// something that is not hookcast).
const MAX_PENDING: usize = 1024;
/// Accepted deliveries kept while no run record mentions them.
const MAX_UNSTARTED: usize = 256;
/// A delivery older than this that never got a run is not started by a node taking over: a
/// deploy long after its push would surprise more than it helps.
const UNSTARTED_MAX_AGE_MS: u64 = 10 * 60 * 1000;

/// Applies what the cluster's reader brought since the last turn.
pub fn apply(app: &mut App) {
    let Some(c) = app.cluster.as_mut() else { return };
    let floor = c.floor();
    let holes = std::mem::take(&mut c.holes);
    let entries = std::mem::take(&mut c.entries);
    if let Some(floor) = floor {
        app.hub.set_floor(floor);
    }
    for h in holes {
        log::warn!(
            "cluster: events up to id {} may be missing here: {}; subscribers are told to reset",
            h.through,
            h.why
        );
        app.hub.lost_through(h.through);
        app.resets.push(h.through);
    }
    let runner = app.cluster.as_ref().is_some_and(|c| c.is_runner(app.now) && c.caught_up());
    if runner && !app.was_runner {
        take_over(app);
    }
    app.was_runner = runner;
    for e in entries {
        match e.kind {
            Kind::Event => event(app, e),
            Kind::Delivery => match Stored::from_json(&e.data) {
                Some(d) => {
                    if app.log_pending.len() >= MAX_PENDING {
                        log::warn!("cluster: {} delivery requests without their records; forgotten", MAX_PENDING);
                        app.log_pending.clear();
                    }
                    app.log_pending.insert((d.hook.clone(), d.delivery.clone()), d);
                }
                None => log::warn!("cluster: entry {} from node {:?} is not a delivery request", e.id, e.node),
            },
            // Its id stays unused here: ids only need to rise, as around delivery requests.
            Kind::TicketUsed => match crate::auth::decode_ticket_use(&e.data) {
                Some((nonce, expires_ms)) => app.note_ticket_used(nonce, expires_ms),
                None => log::warn!("cluster: entry {} from node {:?} is not a ticket's use", e.id, e.node),
            },
        }
    }
}

fn event(app: &mut App, e: Entry) {
    let Some((kind, is_json, data)) = decode_event_data(&e.data) else {
        log::warn!("cluster: entry {} from node {:?} is not an event", e.id, e.node);
        return;
    };
    let record = (e.topic == "$deliveries").then(|| DeliveryRecord::read(&data)).flatten();
    let run = (e.topic == "$runs").then(|| serde_json::from_str::<serde_json::Value>(&data).ok()).flatten();
    let retained = event_data_retained(&e.data);
    let Some(ev) = app.hub.insert_read(e.id, &e.topic, &kind, data, is_json, retained, e.time_ms) else { return };
    app.outbox.push(ev);
    if let Some(r) = record {
        delivery_record(app, r, (e.id, e.time_ms));
    }
    if let Some(r) = run {
        run_record(app, r);
    }
}

/// A `$runs` record read: its deliveries are started; the runner keeps it (its own runs'
/// records are skipped there).
fn run_record(app: &mut App, r: serde_json::Value) {
    let hook = r["hook"].as_str().unwrap_or("");
    let mentioned = |d: &str| {
        r["coalesced"].as_str() == Some(d)
            || r["deliveries"].as_array().is_some_and(|l| l.iter().any(|x| x.as_str() == Some(d)))
    };
    app.unstarted.retain(|(_, d)| !(d.hook == hook && mentioned(&d.delivery)));
    app.runner.follow_record(r);
}

/// This node took the runner role (and has read the log to its end): its predecessor's
/// unfinished runs are over, and the deliveries that never started run here, oldest first.
fn take_over(app: &mut App) {
    let queued = app.runner.take_over();
    let now_ms = crate::clock::unix_ms();
    let mut todo: Vec<Stored> = Vec::new();
    for (hook, delivery) in queued {
        if let Some(d) = app.deliveries.get(&hook, &delivery) {
            todo.push(d.clone());
        }
    }
    for (at, d) in std::mem::take(&mut app.unstarted) {
        if now_ms.saturating_sub(at) < UNSTARTED_MAX_AGE_MS
            && !todo.iter().any(|t| t.hook == d.hook && t.delivery == d.delivery)
        {
            todo.push(d);
        }
    }
    if !todo.is_empty() {
        log::warn!("cluster: taking over the runner role with {} delivery(ies) whose runs had not started", todo.len());
    }
    for d in todo {
        crate::api::deliver::run_from_log(app, d);
    }
}

/// A `$deliveries` record read: the status page notes it; an accepted delivery's request (read
/// just before it) enters the idempotency window and the stored deliveries, and its run starts
/// on the node holding the runner role.
fn delivery_record(app: &mut App, r: DeliveryRecord, noted: (u64, u64)) {
    let accepted = r.outcome == Verdict::Accepted;
    let key = (r.hook.clone(), r.delivery.clone());
    let replay = r.replay;
    crate::status::note_delivery(app, r, None, noted);
    if !accepted {
        return;
    }
    let Some(d) = app.log_pending.remove(&key) else { return };
    if !replay {
        let dedup_key = match app.hooks.get(&d.hook) {
            Some(h) => h.dedup_key(&d.delivery, &d.body),
            None => d.delivery.clone(),
        };
        app.dedup.insert(&d.hook, &dedup_key, app.now);
        app.deliveries.insert(d.clone());
    }
    if app.was_runner {
        crate::api::deliver::run_from_log(app, d);
    } else {
        if app.unstarted.len() >= MAX_UNSTARTED {
            app.unstarted.pop_front();
        }
        app.unstarted.push_back((d.time_ms, d));
    }
}
