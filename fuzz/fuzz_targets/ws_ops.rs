//! Feeds arbitrary text messages to `ws::ops::parse`, the WebSocket clients' request parser.
//!
//! Beyond "does not panic": only JSON is accepted, a subscribe or unsubscribe names 1 to
//! `MAX_TOPICS_PER_OP` topics, and an accepted op written back out as JSON parses to the same op.

#![no_main]

use hookcast::ws::ops::{error, parse, Op, MAX_TOPICS_PER_OP};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

/// Whether `v` holds a float, whose text form serde_json (without `float_roundtrip`) may read
/// back one unit in the last place off: such data is left out of the round trip.
fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(o) => o.values().any(has_float),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let op = match parse(data) {
        Ok(op) => op,
        Err(e) => {
            // The error reply is JSON whatever the input held.
            let reply: Value = serde_json::from_str(&error(&e)).expect("error reply is JSON");
            assert_eq!(reply["type"], "error");
            return;
        }
    };
    assert!(serde_json::from_slice::<Value>(data).is_ok(), "accepted non-JSON");
    let again = match &op {
        Op::Subscribe(t) | Op::Unsubscribe(t) => {
            assert!((1..=MAX_TOPICS_PER_OP).contains(&t.len()), "{} topics", t.len());
            let name = if matches!(op, Op::Subscribe(_)) { "subscribe" } else { "unsubscribe" };
            json!({ "op": name, "topics": t })
        }
        Op::SubscribeWithState(t) => {
            assert!((1..=MAX_TOPICS_PER_OP).contains(&t.len()), "{} topics", t.len());
            json!({ "op": "subscribe", "topics": t, "state": true })
        }
        Op::Resume(id) => json!({ "op": "resume", "since": id }),
        Op::Publish { data, .. } if has_float(data) => return,
        Op::Publish { topic, event, data, retain } => {
            json!({ "op": "publish", "topic": topic, "event": event, "data": data, "retain": retain })
        }
        Op::Ping => json!({ "op": "ping" }),
        Op::Auth(t) => json!({ "op": "auth", "token": t }),
        Op::Filter(f) => json!({ "op": "filter", "filter": f.as_ref().map_or(Value::Null, |f| f.to_json()) }),
    };
    assert_eq!(parse(again.to_string().as_bytes()), Ok(op));
});
