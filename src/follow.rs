//! What a node of a cluster does with what it reads from the shared log, its own appends
//! included: events go into history and out to subscribers, accepted deliveries enter the
//! idempotency window, the stored deliveries and the status page, and the node holding the
//! runner role starts their runs; a signed ticket used on one node is refused on every node.
//! What the log could not give becomes a `reset` for every subscriber here.

use crate::app::App;
use crate::cluster::{Entry, Kind};
use crate::hooks::intake::{DeliveryRecord, Verdict};
use crate::hooks::stored::Stored;
use crate::journal::record::decode_event_data;

/// Delivery requests kept until their `$deliveries` record follows (the two are appended in
/// one script call, so this holds a handful at most; the bound is for a log written by
/// something that is not hookcast).
const MAX_PENDING: usize = 1024;

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
    let Some(ev) = app.hub.insert_read(e.id, &e.topic, &kind, data, is_json, e.time_ms) else { return };
    app.outbox.push(ev);
    if let Some(r) = record {
        delivery_record(app, r, (e.id, e.time_ms));
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
    if app.cluster.as_ref().is_some_and(|c| c.is_runner(app.now)) {
        crate::api::deliver::run_from_log(app, d);
    }
}
