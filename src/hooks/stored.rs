//! Accepted webhook deliveries kept for `POST /api/deliveries/{hook}/{id}/replay`: the request
//! as it arrived (method, headers, query, raw body, client address), bounded by total bytes,
//! oldest dropped first. With a journal they are also written there and read back at start.
//!
//! Keyed by (hook, delivery id), as the idempotency window is: two hooks may well receive the
//! same id (one repository's push sent to two hooks), and neither copy may replace the other.

use base64::Engine;
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// What a masked header value is shown as.
pub const MASKED: &str = "[masked]";

/// One stored delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The delivery id.
    pub delivery: String,
    /// The hook it went to.
    pub hook: String,
    /// When it arrived (ms since the epoch).
    pub time_ms: u64,
    /// Request method.
    pub method: String,
    /// Header fields, names lower-cased.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Raw query string.
    pub query: String,
    /// Raw body.
    pub body: Vec<u8>,
    /// Client address.
    pub ip: IpAddr,
    /// The trusted proxy it came through (the TCP peer), when that is not the client.
    pub via: Option<IpAddr>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(v: &Value) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(v.as_str()?).ok()
}

impl Stored {
    /// The request as the intake decides on it again (a replay, the cluster's runner, the
    /// inspector's explanation): the kept method, headers, query, body and client address.
    pub fn request<'a>(&'a self, port: u16, now_unix: u64, replay_of: Option<&'a str>) -> super::intake::Request<'a> {
        super::intake::Request {
            method: &self.method,
            headers: &self.headers,
            query: &self.query,
            body: self.body.clone(),
            ip: self.ip,
            port,
            now_unix,
            replay_of,
        }
    }

    /// Bytes this record is counted for.
    pub fn cost(&self) -> usize {
        200 + self.body.len()
            + self.query.len()
            + self.headers.iter().map(|(k, v)| k.len() + v.len() + 16).sum::<usize>()
    }

    /// The journal form (binary parts in base64).
    pub fn to_json(&self) -> String {
        let mut v = json!({
            "delivery": self.delivery, "hook": self.hook, "time_ms": self.time_ms, "method": self.method,
            "headers": self.headers.iter().map(|(k, v)| json!([k, b64(v)])).collect::<Vec<_>>(),
            "query": self.query, "body": b64(&self.body), "ip": self.ip.to_string(),
        });
        if let Some(via) = self.via {
            v["via"] = json!(via.to_string());
        }
        v.to_string()
    }

    /// Reads the journal form back.
    pub fn from_json(raw: &[u8]) -> Option<Stored> {
        let v: Value = serde_json::from_slice(raw).ok()?;
        let headers = v["headers"]
            .as_array()?
            .iter()
            .map(|h| Some((h.get(0)?.as_str()?.to_string(), unb64(h.get(1)?)?)))
            .collect::<Option<Vec<_>>>()?;
        Some(Stored {
            delivery: v["delivery"].as_str()?.to_string(),
            hook: v["hook"].as_str()?.to_string(),
            time_ms: v["time_ms"].as_u64()?,
            method: v["method"].as_str()?.to_string(),
            headers,
            query: v["query"].as_str()?.to_string(),
            body: unb64(&v["body"])?,
            ip: v["ip"].as_str()?.parse().ok()?,
            via: v.get("via").and_then(Value::as_str).and_then(|s| s.parse().ok()),
        })
    }

    /// What the API shows of it: not the body, and the headers for which `secret(name)` holds
    /// with their value replaced by [`MASKED`] (the name kept, so a reader sees it was sent).
    pub fn summary(&self, secret: impl Fn(&str) -> bool) -> Value {
        let headers: Vec<Value> = self
            .headers
            .iter()
            .map(|(k, v)| {
                let shown = if secret(k) { MASKED.into() } else { String::from_utf8_lossy(v) };
                json!([k, shown])
            })
            .collect();
        json!({
            "delivery": self.delivery, "hook": self.hook, "time": crate::clock::rfc3339(self.time_ms),
            "method": self.method, "bytes": self.body.len(), "source": self.ip.to_string(),
            "headers": headers,
        })
    }
}

/// (hook id, delivery id).
type Key = (String, String);

/// The bounded store.
#[derive(Debug)]
pub struct StoredDeliveries {
    by_key: HashMap<Key, Stored>,
    order: VecDeque<Key>,
    bytes: usize,
    max_bytes: usize,
}

impl StoredDeliveries {
    /// A store holding at most `max_bytes` (0 keeps nothing).
    pub fn new(max_bytes: usize) -> StoredDeliveries {
        StoredDeliveries { by_key: HashMap::new(), order: VecDeque::new(), bytes: 0, max_bytes }
    }

    /// Keeps a delivery, dropping the oldest beyond the bound. Returns whether it was kept.
    pub fn insert(&mut self, d: Stored) -> bool {
        let cost = d.cost();
        if cost > self.max_bytes {
            return false;
        }
        let key: Key = (d.hook.clone(), d.delivery.clone());
        if let Some(old) = self.by_key.remove(&key) {
            self.bytes -= old.cost();
            self.order.retain(|k| k != &key);
        }
        self.bytes += cost;
        self.order.push_back(key.clone());
        self.by_key.insert(key, d);
        while self.bytes > self.max_bytes {
            let Some(k) = self.order.pop_front() else { break };
            if let Some(old) = self.by_key.remove(&k) {
                self.bytes -= old.cost();
            }
        }
        true
    }

    /// The delivery `id` that hook `hook` accepted.
    pub fn get(&self, hook: &str, id: &str) -> Option<&Stored> {
        self.by_key.get(&(hook.to_string(), id.to_string()))
    }

    /// Every kept delivery with id `id`, whichever hook took it (oldest first).
    pub fn with_id(&self, id: &str) -> Vec<&Stored> {
        self.order.iter().filter(|(_, d)| d == id).filter_map(|k| self.by_key.get(k)).collect()
    }

    /// The newest deliveries first, each as [`Stored::summary`] shows it; `secret(hook, name)`
    /// says which headers to mask.
    pub fn recent(&self, limit: usize, secret: impl Fn(&str, &str) -> bool) -> Vec<Value> {
        let newest = self.order.iter().rev().filter_map(|k| self.by_key.get(k)).take(limit);
        newest.map(|d| d.summary(|name| secret(&d.hook, name))).collect()
    }

    /// Every kept delivery, newest first.
    pub fn newest(&self) -> impl Iterator<Item = &Stored> {
        self.order.iter().rev().filter_map(|k| self.by_key.get(k))
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

/// The requests of deliveries that were not accepted (rejected, ignored, mismatched,
/// duplicates), kept in memory only for the status page's inspector, by their `$deliveries`
/// event id: the newest `max_count`, within `max_bytes` (a body that alone would take more than
/// a quarter of that is cut, and says so). Accepted ones are in [`StoredDeliveries`].
#[derive(Debug)]
pub struct RecentRequests {
    list: VecDeque<(u64, Stored, bool)>,
    bytes: usize,
    max_count: usize,
    max_bytes: usize,
}

impl RecentRequests {
    /// A store of at most `max_count` requests and `max_bytes` (either 0 keeps nothing).
    pub fn new(max_count: usize, max_bytes: usize) -> RecentRequests {
        RecentRequests { list: VecDeque::new(), bytes: 0, max_count, max_bytes }
    }

    /// Keeps the request of `$deliveries` event `event_id`, dropping the oldest beyond the bounds.
    pub fn insert(&mut self, event_id: u64, mut d: Stored) {
        // Ids increase (`get` relies on it); a provisional one (a cluster's, 0) is not kept.
        if self.max_count == 0 || self.max_bytes == 0 || self.list.back().is_some_and(|(id, _, _)| *id >= event_id) {
            return;
        }
        let cut = d.body.len() > self.max_bytes / 4;
        if cut {
            d.body.truncate(self.max_bytes / 4);
        }
        if d.cost() > self.max_bytes {
            return;
        }
        self.bytes += d.cost();
        self.list.push_back((event_id, d, cut));
        while self.list.len() > self.max_count || self.bytes > self.max_bytes {
            let Some((_, old, _)) = self.list.pop_front() else { break };
            self.bytes -= old.cost();
        }
    }

    /// The request of `$deliveries` event `event_id`, and whether its body was cut.
    pub fn get(&self, event_id: u64) -> Option<(&Stored, bool)> {
        // Ids increase: the list is sorted by them.
        let i = self.list.binary_search_by_key(&event_id, |(id, _, _)| *id).ok()?;
        self.list.get(i).map(|(_, d, cut)| (d, *cut))
    }

    /// Every request kept, oldest first, with its event id.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Stored)> {
        self.list.iter().map(|(id, d, _)| (*id, d))
    }

    /// How many are kept.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(id: &str, body: usize) -> Stored {
        Stored {
            delivery: id.into(),
            hook: "h".into(),
            time_ms: 1,
            method: "POST".into(),
            headers: vec![("x-hub-signature-256".into(), b"sha256=00".to_vec())],
            query: "a=1".into(),
            body: vec![0xff; body],
            ip: "::1".parse().unwrap(),
            via: None,
        }
    }

    #[test]
    fn round_trips_binary_bodies() {
        let x = d("a", 10);
        assert_eq!(Stored::from_json(x.to_json().as_bytes()), Some(x));
        assert_eq!(Stored::from_json(b"{}"), None);
    }

    #[test]
    fn summary_masks_what_it_is_told_and_never_shows_the_body() {
        let mut x = d("a", 3);
        x.headers.push(("x-github-event".into(), b"push".to_vec()));
        let v = x.summary(|n| n == "x-hub-signature-256");
        assert_eq!(v["headers"], json!([["x-hub-signature-256", MASKED], ["x-github-event", "push"]]));
        assert_eq!(v["bytes"], 3);
        assert!(v.get("body").is_none());
    }

    #[test]
    fn bounded_by_bytes_oldest_first() {
        let mut s = StoredDeliveries::new(3 * d("x", 1000).cost());
        for id in ["a", "b", "c", "d"] {
            assert!(s.insert(d(id, 1000)));
        }
        assert_eq!(s.len(), 3);
        assert!(s.get("h", "a").is_none() && s.get("h", "d").is_some());
        assert!(!s.insert(d("huge", 10_000)), "larger than the whole bound");
        assert_eq!(s.recent(10, |_, _| false)[0]["delivery"], "d");
    }

    #[test]
    fn recent_requests_are_bounded_by_count_and_bytes_and_cut_big_bodies() {
        let mut r = RecentRequests::new(3, 8 * d("x", 1000).cost());
        for i in 1..=4 {
            r.insert(i * 10, d("x", 1000));
        }
        assert_eq!(r.len(), 3);
        assert!(r.get(10).is_none() && r.get(40).is_some() && r.get(41).is_none());
        let big = r.max_bytes;
        r.insert(50, d("big", big));
        let (kept, cut) = r.get(50).unwrap();
        assert!(cut && kept.body.len() == big / 4);
        assert!(r.bytes <= r.max_bytes && r.len() <= 3);
        let mut none = RecentRequests::new(0, 1 << 20);
        none.insert(1, d("x", 1));
        assert!(none.is_empty());
    }

    #[test]
    fn the_proxy_hop_round_trips_and_old_records_have_none() {
        let mut x = d("a", 1);
        x.via = Some("10.0.0.1".parse().unwrap());
        assert_eq!(Stored::from_json(x.to_json().as_bytes()), Some(x.clone()));
        assert!(!d("a", 1).to_json().contains("via"));
    }

    /// Regression (issue 12, item 15): keyed by id alone, the same id on another hook replaced
    /// the first hook's copy, and a replay then ran the wrong hook.
    #[test]
    fn the_same_id_on_two_hooks_is_two_deliveries() {
        let mut s = StoredDeliveries::new(1 << 20);
        let mut other = d("same", 10);
        other.hook = "other".into();
        assert!(s.insert(d("same", 10)) && s.insert(other));
        assert_eq!(s.len(), 2);
        assert_eq!(s.get("h", "same").unwrap().hook, "h");
        assert_eq!(s.get("other", "same").unwrap().hook, "other");
        assert_eq!(s.with_id("same").iter().map(|d| d.hook.as_str()).collect::<Vec<_>>(), ["h", "other"]);
        assert!(s.with_id("nope").is_empty());
    }
}
