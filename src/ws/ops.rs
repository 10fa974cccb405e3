//! The JSON messages a WebSocket client may send and the replies it gets, as pure functions.
//!
//! ```text
//! → {"op":"subscribe","topics":["builds/*"]}        ← {"type":"ack","op":"subscribe","topics":[...]}
//! → {…,"state":true}                                ← the ack, then the topics' retained events
//! → {"op":"unsubscribe","topics":["builds/*"]}      ← {"type":"ack","op":"unsubscribe","topics":[...]}
//! → {"op":"resume","since":1795340960422219}        ← replayed events, then {"type":"ack","op":"resume",...}
//! → {"op":"publish","topic":"t","data":…,"event":"e"} ← {"type":"ack","op":"publish","id":N}
//!   (`"retain":true`: the event becomes the topic's state; empty data clears it)
//! → {"op":"filter","filter":{"type":"e"}}           ← {"type":"ack","op":"filter","filter":{...}|null}
//! → {"op":"ping"}                                   ← {"type":"pong"}
//! anything else                                     ← {"type":"error","error":"…"} (the connection stays)
//! ```
//!
//! Events arrive as the envelope `{"id","topic","event","time","data"}`, which has no `type`.
//! A connection opened with `/ws?hello=1` first gets `{"type":"hello","last_event_id":N}` (after
//! any retained states): the stream's position, from which a client that received nothing yet
//! can still resume (hookcast.js uses it).

use serde_json::{json, Value};

/// Most topics one subscribe/unsubscribe may name.
pub const MAX_TOPICS_PER_OP: usize = 32;

/// A parsed client request.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Add patterns.
    Subscribe(Vec<String>),
    /// Add patterns, then send the retained state of the topics they match (`"state":true`).
    SubscribeWithState(Vec<String>),
    /// Remove patterns.
    Unsubscribe(Vec<String>),
    /// Replay history after this id for the current patterns.
    Resume(u64),
    /// Publish an event.
    Publish {
        /// Concrete topic.
        topic: String,
        /// Event type.
        event: String,
        /// Payload: a JSON string is published as text, anything else as JSON.
        data: Value,
        /// Keep it as the topic's state (`"retain":true`).
        retain: bool,
    },
    /// Set, replace (or with `None` clear) the subscription's filter.
    Filter(Option<crate::filter::Filter>),
    /// Application-level ping.
    Ping,
    /// A fresh token (a JWT) for the session, before the one it was opened with expires.
    Auth(String),
}

/// Why a client message was refused (sent back as an error reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpError {
    /// The `op` it was about, when known.
    pub op: Option<String>,
    /// What was wrong.
    pub error: String,
}

impl OpError {
    fn new(op: Option<&str>, error: impl Into<String>) -> OpError {
        OpError { op: op.map(str::to_string), error: error.into() }
    }
}

fn topics(v: &Value, op: &str) -> Result<Vec<String>, OpError> {
    let list = match v.get("topics") {
        Some(Value::Array(a)) => a,
        Some(Value::String(s)) => return Ok(vec![s.clone()]),
        _ => return Err(OpError::new(Some(op), "\"topics\" must be a list of topic patterns")),
    };
    if list.is_empty() || list.len() > MAX_TOPICS_PER_OP {
        return Err(OpError::new(Some(op), format!("between 1 and {MAX_TOPICS_PER_OP} topics")));
    }
    list.iter()
        .map(|t| t.as_str().map(str::to_string).ok_or_else(|| OpError::new(Some(op), "topics must be strings")))
        .collect()
}

/// Parses one text message from a client.
pub fn parse(text: &[u8]) -> Result<Op, OpError> {
    let v: Value = serde_json::from_slice(text).map_err(|e| OpError::new(None, format!("not JSON: {e}")))?;
    let Some(op) = v.get("op").and_then(Value::as_str) else {
        return Err(OpError::new(None, "expected an object with \"op\""));
    };
    match op {
        "subscribe" => match v.get("state") {
            None | Some(Value::Null | Value::Bool(false)) => Ok(Op::Subscribe(topics(&v, op)?)),
            Some(Value::Bool(true)) => Ok(Op::SubscribeWithState(topics(&v, op)?)),
            Some(_) => Err(OpError::new(Some(op), "\"state\" must be true or false")),
        },
        "unsubscribe" => Ok(Op::Unsubscribe(topics(&v, op)?)),
        "resume" => match v.get("since").and_then(|s| s.as_u64().or_else(|| s.as_str()?.parse().ok())) {
            Some(id) => Ok(Op::Resume(id)),
            None => Err(OpError::new(Some(op), "\"since\" must be an event id")),
        },
        "publish" => {
            let Some(topic) = v.get("topic").and_then(Value::as_str) else {
                return Err(OpError::new(Some(op), "\"topic\" is required"));
            };
            let event = match v.get("event") {
                None | Some(Value::Null) => "message".to_string(),
                Some(Value::String(e)) => e.clone(),
                Some(_) => return Err(OpError::new(Some(op), "\"event\" must be a string")),
            };
            let retain = match v.get("retain") {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(_) => return Err(OpError::new(Some(op), "\"retain\" must be true or false")),
            };
            let data = v.get("data").cloned().unwrap_or(Value::Null);
            Ok(Op::Publish { topic: topic.to_string(), event, data, retain })
        }
        "filter" => match v.get("filter") {
            Some(f) => crate::filter::Filter::from_json(f).map(Op::Filter).map_err(|e| OpError::new(Some(op), e)),
            None => Err(OpError::new(Some(op), "\"filter\" is required (an object, or null to clear it)")),
        },
        "ping" => Ok(Op::Ping),
        "auth" => match v.get("token").and_then(Value::as_str) {
            Some(t) if !t.is_empty() && t.len() <= 8192 => Ok(Op::Auth(t.to_string())),
            _ => Err(OpError::new(Some(op), "\"token\" must be a token of at most 8192 characters")),
        },
        other => Err(OpError::new(
            Some(other),
            format!("unknown op {other:?} (subscribe, unsubscribe, resume, publish, filter, ping, auth)"),
        )),
    }
}

/// `{"type":"ack","op":…}` plus extra fields.
pub fn ack(op: &str, extra: Value) -> String {
    let mut v = json!({ "type": "ack", "op": op });
    if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
        o.extend(e);
    }
    v.to_string()
}

/// `{"type":"error","op":…,"error":…}`.
pub fn error(e: &OpError) -> String {
    match &e.op {
        Some(op) => json!({ "type": "error", "op": op, "error": e.error }).to_string(),
        None => json!({ "type": "error", "error": e.error }).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_op() {
        assert_eq!(
            parse(br#"{"op":"subscribe","topics":["a","b/*"]}"#),
            Ok(Op::Subscribe(vec!["a".into(), "b/*".into()]))
        );
        assert_eq!(parse(br#"{"op":"unsubscribe","topics":"a"}"#), Ok(Op::Unsubscribe(vec!["a".into()])));
        assert_eq!(parse(br#"{"op":"resume","since":42}"#), Ok(Op::Resume(42)));
        assert_eq!(parse(br#"{"op":"resume","since":"42"}"#), Ok(Op::Resume(42)));
        assert_eq!(parse(br#"{"op":"ping"}"#), Ok(Op::Ping));
        assert_eq!(parse(br#"{"op":"filter","filter":null}"#), Ok(Op::Filter(None)));
        let f = crate::filter::Filter::from_json(&json!({"type": "e"})).unwrap();
        assert_eq!(parse(br#"{"op":"filter","filter":{"type":"e"}}"#), Ok(Op::Filter(f)));
        assert_eq!(
            parse(br#"{"op":"publish","topic":"t","data":{"x":1}}"#),
            Ok(Op::Publish { topic: "t".into(), event: "message".into(), data: json!({"x":1}), retain: false })
        );
    }

    #[test]
    fn state_and_retain_options() {
        assert_eq!(
            parse(br#"{"op":"subscribe","topics":["a"],"state":true}"#),
            Ok(Op::SubscribeWithState(vec!["a".into()]))
        );
        assert_eq!(parse(br#"{"op":"subscribe","topics":["a"],"state":false}"#), Ok(Op::Subscribe(vec!["a".into()])));
        assert!(parse(br#"{"op":"subscribe","topics":["a"],"state":1}"#).unwrap_err().error.contains("state"));
        assert_eq!(
            parse(br#"{"op":"publish","topic":"t","data":"","retain":true}"#),
            Ok(Op::Publish { topic: "t".into(), event: "message".into(), data: json!(""), retain: true })
        );
        assert!(parse(br#"{"op":"publish","topic":"t","retain":"yes"}"#).unwrap_err().error.contains("retain"));
    }

    #[test]
    fn garbage_gets_an_error_naming_the_problem() {
        for (input, needle) in [
            (&b"nope"[..], "not JSON"),
            (b"[1,2]", "expected an object"),
            (b"{\"op\":\"dance\"}", "unknown op"),
            (b"{\"op\":\"subscribe\"}", "topics"),
            (b"{\"op\":\"subscribe\",\"topics\":[]}", "between 1"),
            (b"{\"op\":\"subscribe\",\"topics\":[1]}", "strings"),
            (b"{\"op\":\"resume\"}", "since"),
            (b"{\"op\":\"publish\",\"data\":1}", "topic"),
            (b"{\"op\":\"publish\",\"topic\":\"t\",\"event\":5}", "event"),
            (b"{\"op\":\"filter\"}", "\"filter\" is required"),
            (b"{\"op\":\"filter\",\"filter\":{\"nope\":1}}", "unknown key \"nope\""),
        ] {
            let e = parse(input).unwrap_err();
            assert!(e.error.contains(needle), "{input:?}: {e:?}");
            let reply: Value = serde_json::from_str(&error(&e)).unwrap();
            assert_eq!(reply["type"], "error");
        }
    }

    #[test]
    fn ack_merges_fields() {
        let a: Value = serde_json::from_str(&ack("publish", json!({"id": 7}))).unwrap();
        assert_eq!(a, json!({"type":"ack","op":"publish","id":7}));
    }
}
