//! Durable history (issue 6) against the real binary: the on-disk journal under `--state-dir`
//! survives SIGKILL at random moments and torn tails, and clients resume across a restart —
//! SSE with the independent EventSource client (npm `eventsource`), WebSocket with `tungstenite`,
//! long polling — or are told `reset` when retention dropped what they missed. Runs interrupted
//! by a crash, replay of stored deliveries and idempotency across restarts ride on the same
//! journal.

use crate::util::ws_json as ws_next;
use crate::util::*;
use hmac::{Hmac, Mac};
use hookcast::journal::{decode, Decoded, Kind};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

// ---------------------------------------------------------------------------------------------
// Helpers

const ADMIN: &str = "admin-token";
const READER: &str = "reader-token";
const SECOND: Duration = Duration::from_secs(1);

fn token_hash(t: &str) -> String {
    hookcast::auth::hex(&hookcast::auth::token_hash(t))
}

/// A config where anyone may publish and read every topic the tests look at (system topics
/// included), with an admin token and a read-only token, plus the top-level fields in `more`.
fn config(more: Value) -> String {
    let mut c = json!({
        "public": [{ "topics": ["**", "$deliveries", "$runs", "$runs/**"], "scopes": ["subscribe", "publish"] }],
        "tokens": [
            { "name": "ops", "sha256": token_hash(ADMIN), "scopes": ["admin"] },
            { "name": "dash", "sha256": token_hash(READER), "scopes": ["subscribe"] },
        ],
    });
    if let Value::Object(m) = more {
        for (k, v) in m {
            c[k] = v;
        }
    }
    c.to_string()
}

/// A loopback address nobody listens on right now, so a daemon can restart on the same port
/// (clients that reconnect by themselves need that).
fn free_listen() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// One daemon across restarts: the same config, state directory and listen address.
struct Node {
    cfg: String,
    state: TempDir,
    listen: String,
}

impl Node {
    fn new(tag: &str, cfg: &str) -> Node {
        Node { cfg: cfg.to_string(), state: TempDir::new(tag), listen: free_listen() }
    }

    fn start(&self) -> Daemon {
        let state = self.state.0.to_str().unwrap();
        Daemon::start_args(Some(&self.cfg), &["--state-dir", state, "--listen", &self.listen])
    }

    /// The journal's segment files, oldest first.
    fn segments(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.state.0.join("journal"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect();
        v.sort();
        v
    }
}

/// SIGKILL: no drain, no flush, no goodbye.
fn kill9(mut d: Daemon) {
    signal(&d.child, "KILL");
    let st = d.child.wait().unwrap();
    assert!(!st.success(), "killed, not exited");
}

/// SIGTERM and a clean exit.
fn stop(mut d: Daemon) {
    let (st, took) = d.terminate();
    assert!(st.success(), "exit after SIGTERM: {st:?}; log:\n{}", d.log_text());
    assert!(took < 5 * SECOND, "drain took {took:?}");
}

/// GitHub's `X-Hub-Signature-256` value for `body`.
fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hookcast::auth::hex(&mac.finalize().into_bytes()))
}

/// The headers GitHub sends with a signed push delivery.
fn github_headers(secret: &str, delivery: &str, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("Content-Type".into(), "application/json".into()),
        ("User-Agent".into(), "GitHub-Hookshot/test".into()),
        ("X-GitHub-Event".into(), "push".into()),
        ("X-GitHub-Delivery".into(), delivery.into()),
        ("X-Hub-Signature-256".into(), github_signature(secret, body)),
    ]
}

fn pairs(h: &[(String, String)]) -> Vec<(&str, &str)> {
    h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// Sends a signed GitHub push delivery on a fresh connection.
fn deliver_github(d: &Daemon, hook: &str, secret: &str, delivery: &str, body: &[u8]) -> Resp {
    let h = github_headers(secret, delivery, body);
    d.request("POST", &format!("/hooks/{hook}"), &pairs(&h), body)
}

/// One long-poll answer (`timeout=1`: an empty answer comes back after a second at most).
fn poll(d: &Daemon, topics: &str, since: u64) -> Value {
    let r = d.get(&format!("/poll?topics={topics}&since={since}&timeout=1&limit=1000"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Everything in history on `topics`, read with long polls from `since=0`, page by page with
/// `next` while `more` says the page was cut.
fn poll_all(d: &Daemon, topics: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut since = 0;
    for _ in 0..10_000 {
        let v = poll(d, topics, since);
        out.extend(v["events"].as_array().unwrap().iter().cloned());
        if v["more"] != true {
            return out;
        }
        since = v["next"].as_u64().unwrap();
    }
    panic!("more than 10 000 pages");
}

fn ids(events: &[Value]) -> Vec<u64> {
    events.iter().map(|e| e["id"].as_u64().unwrap()).collect()
}

fn datas(events: &[Value]) -> Vec<String> {
    events.iter().map(|e| e["data"].as_str().unwrap().to_string()).collect()
}

/// splitmix64: the crash test's moments come from a seed, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The crash test: SIGKILL at random moments under a flood of publishes and signed webhooks

const CRASH_SECRET: &str = "crash test secret";
const PUBLISHERS: u64 = 3;
/// Bounds on what the clients send, whatever the machine's speed.
const MAX_PUBLISHES_PER_CLIENT: u64 = 20_000;
const MAX_DELIVERIES: u64 = 5_000;

/// A publish's body: who sent it, its number, and a check value derived from both, so a
/// mangled or invented event cannot pass for one.
fn crash_body(w: u64, n: u64) -> String {
    json!({ "w": w, "n": n, "x": format!("{:016x}", Rng(w << 32 | n).next_u64()) }).to_string()
}

fn crash_delivery(k: u64) -> String {
    format!("crash-{k:05}")
}

fn crash_push(k: u64) -> Vec<u8> {
    json!({
        "ref": "refs/heads/main",
        "after": format!("{:040x}", u128::from(Rng(k).next_u64())),
        "repository": { "full_name": "lab/site" },
        "sender": { "login": "crash" },
        "k": k,
    })
    .to_string()
    .into_bytes()
}

#[derive(Default)]
struct PublisherReport {
    /// (event id, n) of every publish that got a 2xx, in the order they were answered.
    acked: Vec<(u64, u64)>,
    /// Publishes attempted: n ran over 0..attempted.
    attempted: u64,
    /// Answers that were neither 2xx nor a lost connection.
    refused: Vec<String>,
}

fn publisher(addr: SocketAddr, w: u64, stop: &AtomicBool) -> PublisherReport {
    let mut c = KeepAlive::new(addr);
    let mut rep = PublisherReport::default();
    while !stop.load(Ordering::Relaxed) && rep.attempted < MAX_PUBLISHES_PER_CLIENT {
        let n = rep.attempted;
        rep.attempted += 1;
        let body = crash_body(w, n);
        match c.request("POST", "/publish/crash", &[("Content-Type", "application/json")], body.as_bytes()) {
            Ok(r) if (200..300).contains(&r.status) => rep.acked.push((r.json()["id"].as_u64().unwrap(), n)),
            Ok(r) => rep.refused.push(format!("{} {}", r.status, r.text())),
            // The daemon died under us (or is not back yet): not acknowledged, move on.
            Err(_) => std::thread::sleep(Duration::from_millis(3)), // pacing: back off, retry
        }
    }
    rep
}

#[derive(Default)]
struct HookReport {
    /// Deliveries answered 202 (accepted now).
    accepted: Vec<String>,
    /// Deliveries answered 200 `{"duplicate":true}`: a resend after a lost answer, whose first
    /// copy had become durable before the crash.
    duplicates: Vec<String>,
    /// Deliveries sent: `crash_delivery(0..sent)`.
    sent: u64,
    /// Deliveries sent more than once (an attempt lost its connection).
    resent: HashSet<String>,
    refused: Vec<String>,
}

/// Sends signed GitHub pushes, each with its own delivery id, as fast as the daemon answers.
/// Like GitHub after a failed delivery, a delivery whose answer was lost is sent again (same
/// id, same bytes) until some answer comes.
fn webhooker(addr: SocketAddr, stop: &AtomicBool) -> HookReport {
    let mut c = KeepAlive::new(addr);
    let mut rep = HookReport::default();
    while !stop.load(Ordering::Relaxed) && rep.sent < MAX_DELIVERIES {
        let k = rep.sent;
        rep.sent += 1;
        let id = crash_delivery(k);
        let body = crash_push(k);
        let h = github_headers(CRASH_SECRET, &id, &body);
        for _ in 0..2_000 {
            match c.request("POST", "/hooks/gh", &pairs(&h), &body) {
                Ok(r) if r.status == 202 => rep.accepted.push(id.clone()),
                Ok(r) if r.status == 200 && r.json()["duplicate"] == true => rep.duplicates.push(id.clone()),
                Ok(r) => rep.refused.push(format!("{id}: {} {}", r.status, r.text())),
                Err(_) if stop.load(Ordering::Relaxed) => {}
                Err(_) => {
                    rep.resent.insert(id.clone());
                    // Pacing: back off while the daemon restarts, then resend.
                    std::thread::sleep(Duration::from_millis(3));
                    continue;
                }
            }
            break;
        }
    }
    rep
}

/// A second daemon started by mistake on the same `--state-dir` (a manual run beside the
/// systemd unit) used to cut the first one's active segment as a "torn tail" and append to it
/// alongside: acknowledged events were lost. It must refuse to start and leave the first alone.
#[test]
fn a_second_daemon_on_the_same_state_dir_refuses_to_start() {
    let node = Node::new("lock", &config(json!({})));
    let first = node.start();
    let acked: Vec<u64> = (0..50).map(|i| first.publish("locked", &format!("{{\"n\":{i}}}"))).collect();
    let cfg = first.dir.0.join("hookcast.json");
    let mut second = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--state-dir", node.state.0.to_str().unwrap()])
        .arg("--config")
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = eventually(5 * SECOND, || second.try_wait().unwrap().is_some());
    if !exited {
        let _ = second.kill();
    }
    let out = second.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(exited && !out.status.success(), "the second daemon started; stderr:\n{stderr}");
    assert!(
        stderr.contains("in use by another hookcast") && stderr.contains(&format!("pid {}", first.child.id())),
        "{stderr}"
    );
    assert_eq!(first.get("/healthz").status, 200, "the first daemon is unharmed");
    let more = first.publish("locked", "{\"n\":50}");
    stop(first);
    let again = node.start();
    let got = ids(&poll_all(&again, "locked"));
    assert_eq!(got, [acked, vec![more]].concat(), "every acknowledged event is still there after a restart");
    stop(again);
}

#[test]
fn crash_test_sigkill_at_random_moments_loses_no_acknowledged_event_or_delivery() {
    crash_test("always", json!({ "fsync": "always" }), 0);
}

/// The same under the other policies: `batch` acknowledges after its delayed fsync, `never` once
/// the record is written to the OS; a killed process cannot undo either.
#[test]
fn crash_test_under_fsync_batch() {
    crash_test("batch", json!({ "fsync": "batch", "fsync_delay_ms": 10 }), 1);
}

#[test]
fn crash_test_under_fsync_never() {
    crash_test("never", json!({ "fsync": "never" }), 2);
}

/// Publishers and a webhook sender at full speed while the daemon is SIGKILLed 4–6 times at
/// 100–600 ms intervals (from a seed: `HOOKCAST_CRASH_SEED`, plus `salt` per policy), then
/// everything acknowledged is checked after a last restart.
fn crash_test(policy: &str, mut journal: Value, salt: u64) {
    let t0 = Instant::now();
    let seed = std::env::var("HOOKCAST_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x6_c4a5) + salt;
    eprintln!("crash test ({policy}): seed {seed} (set HOOKCAST_CRASH_SEED to replay another)");
    let mut rng = Rng(seed);
    journal["max_delivery_bytes"] = json!(1u64 << 30);
    let cfg = config(json!({
        "hooks": [{ "id": "gh", "provider": "github", "secrets": [CRASH_SECRET], "topic": "hooks/gh" }],
        "history": { "max_events_per_topic": 1_000_000, "max_bytes_per_topic": 1u64 << 30, "max_bytes_total": 1u64 << 32 },
        "journal": journal,
    }));
    let node = Node::new("crash", &cfg);
    let mut d = Some(node.start());
    let addr = d.as_ref().unwrap().addr;
    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|w| {
            let stop = stop.clone();
            std::thread::spawn(move || publisher(addr, w, &stop))
        })
        .collect();
    let hooks = {
        let stop = stop.clone();
        std::thread::spawn(move || webhooker(addr, &stop))
    };
    let kills = rng.between(4, 6);
    let mut moments = Vec::new();
    for k in 0..kills {
        let wait = Duration::from_millis(rng.between(100, 600));
        // Pacing: the kill comes at a random moment of the load.
        std::thread::sleep(wait);
        moments.push(wait.as_millis());
        kill9(d.take().unwrap());
        if k + 1 < kills {
            d = Some(node.start());
        }
    }
    // The last kill happened under load; now stop the clients and come back once more.
    stop.store(true, Ordering::Relaxed);
    let reports: Vec<PublisherReport> = publishers.into_iter().map(|h| h.join().unwrap()).collect();
    let hooks = hooks.join().unwrap();
    let d = node.start();
    let load_phase = t0.elapsed();

    for (w, r) in reports.iter().enumerate() {
        assert!(r.refused.is_empty(), "publisher {w} got refusals: {:?}", &r.refused[..r.refused.len().min(5)]);
    }
    assert!(hooks.refused.is_empty(), "webhooks refused: {:?}", &hooks.refused[..hooks.refused.len().min(5)]);
    let acked_publishes: usize = reports.iter().map(|r| r.acked.len()).sum();
    let acked_deliveries = hooks.accepted.len() + hooks.duplicates.len();
    assert!(acked_publishes >= 100, "only {acked_publishes} publishes acknowledged: the test proved little");
    assert!(acked_deliveries >= 20, "only {acked_deliveries} deliveries acknowledged: the test proved little");

    // Read everything back from the start of history.
    let events = poll_all(&d, "crash,hooks/gh,$deliveries");
    let all_ids = ids(&events);
    assert!(all_ids.windows(2).all(|w| w[0] < w[1]), "ids not strictly increasing (or repeated)");

    // Publishes: every acknowledged one exactly once, with its own data; nothing invented.
    let mut by_id: HashMap<u64, (u64, u64)> = HashMap::new();
    let mut seen_wn: HashSet<(u64, u64)> = HashSet::new();
    for e in events.iter().filter(|e| e["topic"] == "crash") {
        let v = &e["data"];
        let (w, n) = (v["w"].as_u64().unwrap_or(u64::MAX), v["n"].as_u64().unwrap_or(u64::MAX));
        assert!(w < PUBLISHERS && n < reports[w as usize].attempted, "an event nobody published: {e}");
        assert_eq!(v.to_string(), crash_body(w, n), "garbled event {e}");
        assert!(seen_wn.insert((w, n)), "publish ({w},{n}) is stored twice: {e}");
        by_id.insert(e["id"].as_u64().unwrap(), (w, n));
    }
    for (w, r) in reports.iter().enumerate() {
        let w = w as u64;
        for &(id, n) in &r.acked {
            assert_eq!(by_id.get(&id), Some(&(w, n)), "acknowledged publish {id} ({w},{n}) is missing or wrong");
        }
        assert!(r.acked.windows(2).all(|p| p[0].0 < p[1].0), "publisher {w}'s acknowledged ids go backwards");
    }

    // Deliveries: every acknowledged one accepted exactly once, on `$deliveries` and its topic.
    let sent: HashSet<String> = (0..hooks.sent).map(crash_delivery).collect();
    let mut accepted_records: BTreeMap<String, usize> = BTreeMap::new();
    let mut topic_events: BTreeMap<String, usize> = BTreeMap::new();
    for e in &events {
        let v = &e["data"];
        let delivery = v["delivery"].as_str().unwrap_or_default().to_string();
        match e["topic"].as_str().unwrap() {
            "$deliveries" => {
                assert!(sent.contains(&delivery), "a delivery nobody sent: {e}");
                assert_eq!(v["hook"], "gh", "{e}");
                match v["outcome"].as_str() {
                    Some("accepted") => *accepted_records.entry(delivery).or_default() += 1,
                    Some("duplicate") => {}
                    _ => panic!("unexpected delivery record {e}"),
                }
            }
            "hooks/gh" => {
                assert!(sent.contains(&delivery), "a hook event nobody sent: {e}");
                assert_eq!((v["repo"].as_str(), v["event"].as_str()), (Some("lab/site"), Some("push")), "{e}");
                *topic_events.entry(delivery).or_default() += 1;
            }
            _ => {}
        }
    }
    assert!(accepted_records.values().all(|&n| n == 1), "a delivery accepted twice: {accepted_records:?}");
    for id in hooks.accepted.iter().chain(&hooks.duplicates) {
        assert_eq!(accepted_records.get(id), Some(&1), "acknowledged delivery {id} has no accepted record");
        // A resend after a crash that kept the topic event but not the `$deliveries` record
        // is accepted again (the first copy was never acknowledged): at least once, then.
        let published = topic_events.get(id).copied().unwrap_or(0);
        let ok = if hooks.resent.contains(id) { published >= 1 } else { published == 1 };
        assert!(ok, "acknowledged delivery {id} was published to hooks/gh {published} times");
    }

    // The stored deliveries: the listing (the newest 100) holds only deliveries that were sent,
    // and every acknowledged one can be replayed, so it was kept across the crashes.
    let listed = d.request("GET", "/api/deliveries", &[("Authorization", &format!("Bearer {ADMIN}"))], b"");
    assert_eq!(listed.status, 200);
    let listed = listed.json()["deliveries"].as_array().unwrap().clone();
    assert_eq!(listed.len(), accepted_records.len().min(100), "listing length");
    for x in &listed {
        let id = x["delivery"].as_str().unwrap();
        assert!(accepted_records.contains_key(id), "listed delivery {id} has no accepted record");
    }
    let acked: Vec<String> = hooks.accepted.iter().chain(&hooks.duplicates).cloned().collect();
    let replayers: Vec<_> = acked
        .chunks(acked.len().div_ceil(4).max(1))
        .map(|chunk| {
            let chunk = chunk.to_vec();
            std::thread::spawn(move || {
                let mut c = KeepAlive::new(addr);
                let auth = format!("Bearer {ADMIN}");
                for id in chunk {
                    let r =
                        c.request("POST", &format!("/api/deliveries/{id}/replay"), &[("Authorization", &auth)], b"");
                    let r = r.unwrap_or_else(|e| panic!("replay {id}: {e}"));
                    assert_eq!(r.status, 202, "replay of acknowledged delivery {id}: {}", r.text());
                    assert_eq!(r.json()["replayed"], id.as_str());
                }
            })
        })
        .collect();
    for r in replayers {
        r.join().unwrap();
    }
    assert_eq!(d.metric("hookcast_journal_failed"), 0.0);
    assert_eq!(d.metric("hookcast_journal_write_errors_total"), 0.0);
    eprintln!(
        "crash test ({policy}): {kills} kills after {moments:?} ms; {acked_publishes} publishes and {acked_deliveries} \
         deliveries ({} resent after a lost answer) acknowledged; {} events read back; load phase {load_phase:?}, \
         total {:?}",
        hooks.duplicates.len(),
        events.len(),
        t0.elapsed()
    );
    assert!(t0.elapsed() < 20 * SECOND, "the crash test took {:?}", t0.elapsed());
}

// ---------------------------------------------------------------------------------------------
// 2. A torn tail, at every byte of the last record

/// Start offset and record of every frame in a segment's bytes (all must decode).
fn frames(bytes: &[u8]) -> Vec<(usize, hookcast::journal::Record)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match decode(&bytes[at..]) {
            Decoded::Record(rec, used) => {
                out.push((at, rec));
                at += used;
            }
            other => panic!("frame at {at}: {other:?}"),
        }
    }
    out
}

/// A journal of five events on `torn` whose last one is short; the daemon is stopped. Returns
/// (the first four ids, the last id, the segment file, its bytes, where the last record starts).
fn journal_with_a_short_last_record(node: &Node) -> (Vec<u64>, u64, PathBuf, Vec<u8>, usize) {
    let d = node.start();
    let early: Vec<u64> = (0..4).map(|i| d.publish("torn", &format!("e{i}"))).collect();
    // A short record keeps the offsets few.
    let last = d.publish("torn", "z");
    stop(d);
    let segs = node.segments();
    assert_eq!(segs.len(), 1, "{segs:?}");
    let pristine = std::fs::read(&segs[0]).unwrap();
    let all = frames(&pristine);
    let (start, rec) = all.last().unwrap();
    assert_eq!((rec.kind, rec.id, rec.topic.as_str()), (Kind::Event, last, "torn"), "the last record is our event");
    assert_eq!(
        all.iter().map(|(_, r)| r.id).collect::<Vec<_>>()[..4],
        early[..],
        "the journal holds what was published"
    );
    (early, last, segs[0].clone(), pristine, *start)
}

#[test]
fn torn_tail_at_every_byte_of_the_last_record_is_cut_and_the_journal_goes_on() {
    let node = Node::new("torn", &config(json!({ "journal": { "fsync": "always" } })));
    let (early, last, seg, pristine, start) = journal_with_a_short_last_record(&node);
    let seg = &seg;
    let mut starts = 0;
    for len in start..pristine.len() {
        std::fs::write(seg, &pristine[..len]).unwrap();
        let d = node.start();
        starts += 1;
        let got = poll_all(&d, "torn");
        assert_eq!(ids(&got), early, "cut at {len}: the earlier events and not the torn one");
        assert_eq!(datas(&got), ["e0", "e1", "e2", "e3"], "cut at {len}");
        assert_eq!(std::fs::metadata(seg).unwrap().len(), start as u64, "cut at {len}: the torn bytes are gone");
        if len > start {
            let log = d.log_text();
            assert!(
                log.contains("cut a torn or corrupt tail") && log.contains(&format!("at byte {start}")),
                "cut at {len}: the repair is logged:\n{log}"
            );
        }
        let new = d.publish("torn", &format!("n{len}"));
        assert!(new > last, "ids go on after the torn one: {new} <= {last}");
        stop(d);
        let d = node.start();
        starts += 1;
        let got = poll_all(&d, "torn");
        let mut want = early.clone();
        want.push(new);
        assert_eq!(ids(&got), want, "cut at {len}: the publish after the repair survives a restart");
        assert_eq!(datas(&got).last().unwrap(), &format!("n{len}"));
        stop(d);
    }
    // The pristine journal still serves all five.
    std::fs::write(seg, &pristine).unwrap();
    let d = node.start();
    let mut want = early.clone();
    want.push(last);
    assert_eq!(ids(&poll_all(&d, "torn")), want);
    eprintln!("torn tail: {} offsets, {starts} starts", pristine.len() - start);
}

#[test]
fn a_damaged_byte_anywhere_in_the_last_record_is_cut_not_served() {
    let node = Node::new("flip", &config(json!({ "journal": { "fsync": "always" } })));
    let (early, _, seg, pristine, start) = journal_with_a_short_last_record(&node);
    for at in start..pristine.len() {
        let mut bytes = pristine.clone();
        bytes[at] ^= 0xA5;
        std::fs::write(&seg, &bytes).unwrap();
        let d = node.start();
        let got = poll_all(&d, "torn");
        assert_eq!(ids(&got), early, "byte {at} damaged: the earlier events and not the damaged one");
        assert_eq!(datas(&got), ["e0", "e1", "e2", "e3"], "byte {at} damaged");
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), start as u64, "byte {at} damaged: cut");
        assert!(d.log_text().contains("cut a torn or corrupt tail"), "byte {at} damaged: logged");
        stop(d);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Resume across a restart: SSE (EventSource), WebSocket, long poll; and the reset

/// The independent EventSource client (`tests/js/es_client.mjs`, npm `eventsource`).
struct EsClient {
    child: Child,
    lines: Receiver<Value>,
    /// Lines read while looking for something else.
    other: Vec<Value>,
}

impl EsClient {
    fn start(url: &str, extra: &[&str]) -> EsClient {
        let mut args = vec!["--count", "1000", "--timeout-ms", "30000"];
        args.extend_from_slice(extra);
        let (child, rx) = spawn_es_client(url, &args);
        EsClient { child, lines: rx, other: Vec::new() }
    }

    fn next_where(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let v = self
                .lines
                .recv_timeout(10 * SECOND)
                .unwrap_or_else(|_| panic!("the EventSource client said nothing about {what}; saw {:?}", self.other));
            if pred(&v) {
                return v;
            }
            self.other.push(v);
        }
    }

    fn open(&mut self) {
        self.next_where("opening", |v| v["open"] == true);
    }

    /// The next event (message or reset); (type, id, data).
    fn event(&mut self) -> (String, u64, String) {
        let v = self.next_where("an event", |v| v.get("data").is_some());
        (
            v["type"].as_str().unwrap().into(),
            v["id"].as_str().unwrap().parse().unwrap_or(0),
            v["data"].as_str().unwrap().into(),
        )
    }
}

impl Drop for EsClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn eventsource_resumes_across_a_restart_with_last_event_id() {
    // retry 1 s: the client comes back well after the missed events were published.
    let node = Node::new("es", &config(json!({ "sse": { "retry_ms": 1000 } })));
    let d = node.start();
    let url = format!("http://{}/events?topics=rs", node.listen);
    let mut es = EsClient::start(&url, &[]);
    es.open();
    let before: Vec<u64> = (0..3).map(|i| d.publish("rs", &format!("b{i}"))).collect();
    for (i, id) in before.iter().enumerate() {
        assert_eq!(es.event(), ("message".into(), *id, format!("b{i}")));
    }
    stop(d);
    let d = node.start();
    let missed: Vec<u64> = (0..3).map(|i| d.publish("rs", &format!("a{i}"))).collect();
    assert!(missed[0] > before[2], "ids continue after the journal's");
    assert_eq!(d.metric("hookcast_connections_active{transport=\"sse\"}"), 0.0, "the client was away meanwhile");
    es.open();
    for (i, id) in missed.iter().enumerate() {
        assert_eq!(es.event(), ("message".into(), *id, format!("a{i}")), "exactly the missed ones, no reset");
    }
    let live = d.publish("rs", "live");
    assert_eq!(es.event(), ("message".into(), live, "live".into()), "nothing more than the missed ones");
    assert!(es.other.iter().any(|v| v["error"] == true), "the restart was noticed: {:?}", es.other);
    // A client that saw only the first event before the restart gets the rest, the part from
    // before the restart out of the journal.
    let mut late = EsClient::start(&url, &["--last-event-id", &before[0].to_string()]);
    late.open();
    let mut want: Vec<u64> = before[1..].to_vec();
    want.extend(&missed);
    want.push(live);
    let got: Vec<(String, u64)> = (0..want.len()).map(|_| late.event()).map(|(t, id, _)| (t, id)).collect();
    assert_eq!(got, want.iter().map(|&id| ("message".to_string(), id)).collect::<Vec<_>>());
}

type Ws = WebSocket<TcpStream>;

fn ws_connect(listen: &str, path: &str) -> Ws {
    let req = format!("ws://{listen}{path}").into_client_request().unwrap();
    let stream = TcpStream::connect(listen).unwrap();
    stream.set_read_timeout(Some(10 * SECOND)).unwrap();
    let (ws, _) = tungstenite::client(req, stream).unwrap_or_else(|e| panic!("WebSocket handshake: {e}"));
    ws
}

#[test]
fn websocket_resumes_across_a_restart_by_query_and_by_resume_op() {
    let node = Node::new("ws", &config(json!({})));
    let d = node.start();
    let mut ws = ws_connect(&node.listen, "/ws?topics=w");
    let before: Vec<u64> = (0..2).map(|i| d.publish("w", &format!("b{i}"))).collect();
    for id in &before {
        assert_eq!(ws_next(&mut ws)["id"], *id);
    }
    stop(d);
    // The drain closed the socket (1001 going away).
    loop {
        match ws.read() {
            Ok(Message::Close(f)) => {
                assert_eq!(f.map(|f| u16::from(f.code)), Some(1001));
                break;
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    let d = node.start();
    let missed: Vec<u64> = (0..2).map(|i| d.publish("w", &format!("a{i}"))).collect();
    // By query on connect: exactly the missed ones, no reset.
    let mut ws = ws_connect(&node.listen, &format!("/ws?topics=w&lastEventId={}", before[1]));
    for (i, id) in missed.iter().enumerate() {
        let ev = ws_next(&mut ws);
        assert_eq!((ev["id"].as_u64(), ev["data"].as_str()), (Some(*id), Some(format!("a{i}").as_str())), "{ev}");
    }
    // By the resume op, from before the restart: the rest comes out of the journal.
    ws.send(Message::text(json!({ "op": "resume", "since": before[0] }).to_string())).unwrap();
    let ack = ws_next(&mut ws);
    assert_eq!((ack["type"].as_str(), ack["op"].as_str()), (Some("ack"), Some("resume")), "{ack}");
    let mut want = vec![before[1]];
    want.extend(&missed);
    for id in want {
        let ev = ws_next(&mut ws);
        assert_eq!(ev["id"], id, "no reset, nothing skipped: {ev}");
    }
    let live = d.publish("w", "live");
    assert_eq!(ws_next(&mut ws)["id"], live, "nothing more than the missed ones");
}

#[test]
fn long_poll_resumes_across_a_restart_with_since() {
    let node = Node::new("lp", &config(json!({})));
    let d = node.start();
    let before: Vec<u64> = (0..3).map(|i| d.publish("lp", &format!("b{i}"))).collect();
    let v = poll(&d, "lp", before[0]);
    assert_eq!(ids(v["events"].as_array().unwrap()), before[1..]);
    stop(d);
    let d = node.start();
    let missed: Vec<u64> = (0..2).map(|i| d.publish("lp", &format!("a{i}"))).collect();
    let v = poll(&d, "lp", before[2]);
    assert_eq!(ids(v["events"].as_array().unwrap()), missed, "{v}");
    assert_eq!(v["next"], missed[1]);
    assert!(v.get("reset").is_none(), "{v}");
    let v = poll(&d, "lp", before[0]);
    let mut want = before[1..].to_vec();
    want.extend(&missed);
    assert_eq!(ids(v["events"].as_array().unwrap()), want, "{v}");
    assert_eq!(datas(v["events"].as_array().unwrap()), ["b1", "b2", "a0", "a1"]);
    assert!(v.get("reset").is_none(), "{v}");
    // Held on the restored cursor until the next event.
    let addr = d.addr;
    let cursor = missed[1];
    let waiter = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(10 * SECOND)).unwrap();
        s.write_all(
            format!("GET /poll?topics=lp&since={cursor}&timeout=10 HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes(),
        )
        .unwrap();
        read_response(&mut s).unwrap()
    });
    assert!(eventually(5 * SECOND, || d.metric("hookcast_connections_active{transport=\"poll\"}") == 1.0));
    let live = d.publish("lp", "live");
    assert_eq!(ids(waiter.join().unwrap().json()["events"].as_array().unwrap()), [live]);
}

#[test]
fn a_cursor_older_than_journal_retention_gets_an_explicit_reset_everywhere() {
    // Tiny journal: 4 KiB segments, 64 KiB in all (the smallest allowed); in-memory history is
    // large, so only the restart (which rebuilds history from the journal) forgets.
    let node = Node::new(
        "retention",
        &config(
            json!({ "journal": { "fsync": "batch", "fsync_delay_ms": 2, "segment_bytes": 4096, "max_bytes": 65536 } }),
        ),
    );
    let d = node.start();
    let pad = "x".repeat(1000);
    let sent: Vec<u64> = (0..100).map(|i| d.publish("old", &format!("{i:03}{pad}"))).collect();
    assert!(poll(&d, "old", sent[0]).get("reset").is_none(), "all still in memory before the restart");
    stop(d);
    let d = node.start();
    // Bounded by max_bytes plus the active segment (never deleted) and one record over it; the
    // figure in /metrics is what is on disk (retention may also run right after the start).
    let disk = || node.segments().iter().map(|p| std::fs::metadata(p).unwrap().len()).sum::<u64>();
    assert!(eventually(5 * SECOND, || d.metric("hookcast_journal_disk_bytes") == disk() as f64), "{}", disk());
    assert!(disk() <= 65536 + 4096 + 1100, "the journal is bounded: {} bytes", disk());
    let kept = ids(&poll_all(&d, "old"));
    assert!(!kept.is_empty() && kept.len() < 80, "retention dropped the oldest: {} kept", kept.len());
    assert_eq!(kept[..], sent[sent.len() - kept.len()..], "what is kept is the newest, in order");
    let stale = sent[0];

    // Long poll: `"reset":true` and what is left.
    let v = poll(&d, "old", stale);
    assert_eq!(v["reset"], true, "{}", v["next"]);
    assert_eq!(ids(v["events"].as_array().unwrap()), kept);
    // A cursor right before the oldest kept event missed nothing: no reset.
    let v = poll(&d, "old", kept[0] - 1);
    assert!(v.get("reset").is_none());
    assert_eq!(ids(v["events"].as_array().unwrap()), kept);

    // SSE: `event: reset` first, then what is left.
    let (mut s, head) = sse(&d, "/events?topics=old", &[("Last-Event-ID", &stale.to_string())]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let text = read_until(&mut s, &format!("id: {}\n", kept[kept.len() - 1]));
    let reset_at = text.find("event: reset\n").unwrap_or_else(|| panic!("no reset event in {text:?}"));
    assert!(reset_at < text.find(&format!("id: {}\n", kept[0])).unwrap(), "reset comes first");
    assert!(text.contains("history_gap"), "{text}");

    // WebSocket: `{"type":"reset"}` first, then what is left.
    let mut ws = ws_connect(&node.listen, &format!("/ws?topics=old&lastEventId={stale}"));
    let reset = ws_next(&mut ws);
    assert_eq!((reset["type"].as_str(), reset["last_event_id"].as_u64()), (Some("reset"), Some(stale)), "{reset}");
    assert_eq!(ws_next(&mut ws)["id"], kept[0]);

    // And the EventSource client hears it as a `reset` event.
    let mut es =
        EsClient::start(&format!("http://{}/events?topics=old", node.listen), &["--last-event-id", &stale.to_string()]);
    es.open();
    let (kind, _, data) = es.event();
    assert_eq!(kind, "reset", "{data}");
    assert_eq!(serde_json::from_str::<Value>(&data).unwrap()["reason"], "history_gap");
    assert_eq!(es.event().1, kept[0]);
}

#[test]
fn max_age_deletes_old_segments_and_a_cursor_into_them_gets_a_reset() {
    let node = Node::new("max-age", &config(json!({ "journal": { "segment_bytes": 4096, "max_age_secs": 1 } })));
    let d = node.start();
    let pad = "y".repeat(1000);
    let sent: Vec<u64> = (0..10).map(|i| d.publish("aged", &format!("{i}{pad}"))).collect();
    stop(d);
    assert!(node.segments().len() >= 3, "{:?}", node.segments());
    // Time itself must pass: the segments become older than max_age_secs.
    std::thread::sleep(Duration::from_millis(1100));
    // Retention runs as the journal opens: every closed segment is older than a second now.
    let d = node.start();
    assert!(eventually(5 * SECOND, || d.metric("hookcast_journal_segments") == 1.0), "only the active one is left");
    assert!(d.log_text().contains("older than max_age"), "{}", d.log_text());
    assert_eq!(node.segments().len(), 1);
    stop(d);
    let d = node.start();
    let kept = ids(&poll_all(&d, "aged"));
    assert!(kept.len() < sent.len(), "{kept:?}");
    assert_eq!(kept[..], sent[sent.len() - kept.len()..]);
    assert_eq!(poll(&d, "aged", sent[0])["reset"], true);
}

// ---------------------------------------------------------------------------------------------
// 4. A run cut off by a crash is recorded as interrupted

/// Writes an executable `/bin/sh` script and returns its path.
fn script(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_string_lossy().into_owned()
}

/// Kills a process group left behind by a SIGKILLed daemon, whatever happens in the test.
struct GroupKiller(PathBuf);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", pid.trim())]).status();
        }
    }
}

/// Every `$runs` state change of run `id` in history.
fn run_states(d: &Daemon, id: u64) -> Vec<String> {
    poll_all(d, "$runs")
        .iter()
        .filter(|e| e["data"]["id"] == id)
        .map(|e| e["data"]["state"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_run_cut_off_by_sigkill_is_interrupted_after_the_restart() {
    let work = TempDir::new("interrupted");
    let pidfile = work.0.join("pid");
    let _cleanup = GroupKiller(pidfile.clone());
    // Sleeps as long as the payload's `sleep` says; a long sleeper leaves its pid for cleanup.
    let cmd = script(
        &work.0,
        "slow.sh",
        &format!("[ \"$1\" = 0 ] || echo $$ > {}\necho started\nsleep \"$1\"\n", pidfile.display()),
    );
    let hook = json!({
        "id": "slow", "execute-command": cmd, "timeout": 60,
        "pass-arguments-to-command": [{ "source": "payload", "name": "sleep" }],
    });
    let node = Node::new("interrupted", &config(json!({ "hooks": [hook] })));
    let d = node.start();
    let r = d.request(
        "POST",
        "/hooks/slow",
        &[("X-GitHub-Delivery", "slow-1"), ("Content-Type", "application/json")],
        br#"{"sleep":"20"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut run = 0;
    assert!(
        eventually(5 * SECOND, || {
            let v = d.get("/api/runs").json();
            let found = v["runs"].as_array().unwrap().iter().find(|r| r["deliveries"][0] == "slow-1").cloned();
            run = found.as_ref().and_then(|r| r["id"].as_u64()).unwrap_or(0);
            found.is_some_and(|r| r["state"] == "running") && pidfile.exists()
        }),
        "the run started"
    );
    // A publish is acknowledged once durable, and the journal is written in order: the run's
    // `running` record is on disk before the kill.
    d.publish("sync", "x");
    kill9(d);
    let d = node.start();
    let runs = d.get("/api/runs").json();
    let r = runs["runs"].as_array().unwrap().iter().find(|r| r["id"] == run).cloned();
    let r = r.unwrap_or_else(|| panic!("run {run} is not listed: {runs}"));
    assert_eq!(r["state"], "interrupted", "{r}");
    assert_eq!(d.get(&format!("/api/runs/{run}")).json()["state"], "interrupted");
    // Published at start, it is in history once its record is durable (not necessarily yet).
    let mut states = Vec::new();
    let interrupted = eventually(5 * SECOND, || {
        states = run_states(&d, run);
        states.last().map(String::as_str) == Some("interrupted")
    });
    assert!(interrupted, "$runs history: {states:?}");
    assert!(states.contains(&"running".to_string()), "{states:?}");
    // The hook runs again, under a new run id.
    let r = d.request(
        "POST",
        "/hooks/slow",
        &[("X-GitHub-Delivery", "slow-2"), ("Content-Type", "application/json")],
        br#"{"sleep":"0"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let next = d.get("/api/runs").json()["runs"][0].clone();
    assert_eq!(next["deliveries"], json!(["slow-2"]), "{next}");
    let next = next["id"].as_u64().unwrap();
    assert!(next > run, "run ids continue after the restored ones: {next} <= {run}");
    assert_eq!(run_final(&d, next)["state"], "succeeded");
    // Once recorded, it is not interrupted again by the next restart.
    stop(d);
    let d = node.start();
    assert_eq!(run_states(&d, run).iter().filter(|s| *s == "interrupted").count(), 1);
    assert_eq!(d.get(&format!("/api/runs/{run}")).json()["state"], "interrupted");
}

// ---------------------------------------------------------------------------------------------
// 5. Replay of a stored delivery; 6. idempotency across restarts

const GH_SECRET: &str = "durable github secret";

/// Waits for run `id` to reach a final state and returns its record.
fn run_final(d: &Daemon, id: u64) -> Value {
    let mut rec = Value::Null;
    let done = eventually(10 * SECOND, || {
        rec = d.get(&format!("/api/runs/{id}")).json();
        rec["state"].as_str().is_some_and(|s| !matches!(s, "queued" | "running"))
    });
    assert!(done, "run {id} did not end: {rec}");
    rec
}

fn replay(d: &Daemon, id: &str, token: Option<&str>) -> Resp {
    let auth = token.map(|t| format!("Bearer {t}"));
    let h: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    d.request("POST", &format!("/api/deliveries/{id}/replay"), &h, b"")
}

#[test]
fn a_failed_deploy_is_replayed_by_delivery_id_also_after_a_restart() {
    let work = TempDir::new("replay");
    let cmd = script(&work.0, "fail.sh", "echo deploying\nexit 3\n");
    let node = Node::new(
        "replay",
        &config(
            json!({ "hooks": [{ "id": "site", "provider": "github", "secrets": [GH_SECRET], "execute-command": cmd }] }),
        ),
    );
    let d = node.start();
    let body = br#"{"ref":"refs/heads/main","repository":{"full_name":"lab/site"}}"#;
    let r = deliver_github(&d, "site", GH_SECRET, "rp-1", body);
    assert_eq!(r.status, 202, "{}", r.text());
    let first = r.json();
    assert_eq!(first["delivery"], "rp-1");
    let runs = d.get("/api/runs").json();
    let run1 = runs["runs"][0]["id"].as_u64().unwrap();
    let fin = run_final(&d, run1);
    assert_eq!((fin["state"].as_str(), fin["exit_code"].as_i64()), (Some("failed"), Some(3)), "{fin}");
    let listed = d.request("GET", "/api/deliveries", &[("Authorization", &format!("Bearer {READER}"))], b"").json();
    assert_eq!(listed["deliveries"][0]["delivery"], "rp-1", "{listed}");

    // Only the admin may replay.
    let r = replay(&d, "rp-1", None);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(replay(&d, "rp-1", Some("not-a-token")).status, 401);
    assert_eq!(replay(&d, "rp-1", Some(READER)).status, 403);
    assert_eq!(replay(&d, "no-such-delivery", Some(ADMIN)).status, 404);
    let r = replay(&d, "rp-1", Some(ADMIN));
    assert_eq!(r.status, 202, "{}", r.text());
    let v = r.json();
    assert_eq!((v["replayed"].as_str(), v["outcome"].as_str()), (Some("rp-1"), Some("accepted")), "{v}");
    let run2 = v["run"].as_u64().unwrap();
    assert_ne!(run2, run1, "a new run");
    let fin = run_final(&d, run2);
    assert_eq!(fin["state"], "failed");
    assert_eq!(fin["deliveries"], json!(["rp-1"]), "the same delivery: {fin}");
    let recs: Vec<Value> = poll_all(&d, "$deliveries").into_iter().map(|e| e["data"].clone()).collect();
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!((recs[1]["delivery"].as_str(), recs[1]["replay"].as_bool()), (Some("rp-1"), Some(true)), "{recs:?}");

    // After a restart the stored request is read back from the journal and replays again.
    stop(d);
    let d = node.start();
    assert_eq!(d.get(&format!("/api/runs/{run1}")).json()["state"], "failed", "run records survive");
    assert_eq!(replay(&d, "rp-1", None).status, 401);
    assert_eq!(replay(&d, "no-such-delivery", Some(ADMIN)).status, 404);
    let r = replay(&d, "rp-1", Some(ADMIN));
    assert_eq!(r.status, 202, "{}", r.text());
    let run3 = r.json()["run"].as_u64().unwrap();
    assert!(run3 > run2, "run ids continue after the restored ones: {run3} <= {run2}");
    let fin = run_final(&d, run3);
    assert_eq!((fin["state"].as_str(), fin["deliveries"].clone()), (Some("failed"), json!(["rp-1"])), "{fin}");
    assert_eq!(fin["command"], first_command(&d, run1), "the same deploy command");
}

fn first_command(d: &Daemon, run: u64) -> Value {
    d.get(&format!("/api/runs/{run}")).json()["command"].clone()
}

#[test]
fn a_delivery_accepted_before_a_restart_is_a_duplicate_after_it() {
    let node =
        Node::new("idem", &config(json!({ "hooks": [{ "id": "gh", "provider": "github", "secrets": [GH_SECRET] }] })));
    let body = br#"{"ref":"refs/heads/main"}"#;
    let d = node.start();
    let r = deliver_github(&d, "gh", GH_SECRET, "idem-1", body);
    assert_eq!(r.status, 202, "{}", r.text());
    stop(d);
    let d = node.start();
    let r = deliver_github(&d, "gh", GH_SECRET, "idem-1", body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["duplicate"], true);
    assert_eq!(r.json()["delivery"], "idem-1");
    // A crash does not forget it either. (A duplicate's answer does not wait for its
    // `$deliveries` record to be durable; an acknowledged publish after it, which does, makes the
    // history below certain.)
    d.publish("sync", "x");
    kill9(d);
    let d = node.start();
    let r = deliver_github(&d, "gh", GH_SECRET, "idem-1", body);
    assert_eq!((r.status, r.json()["duplicate"].clone()), (200, json!(true)), "{}", r.text());
    assert_eq!(deliver_github(&d, "gh", GH_SECRET, "idem-2", body).status, 202, "a new id is accepted");
    let outcomes: Vec<String> =
        poll_all(&d, "$deliveries").iter().map(|e| e["data"]["outcome"].as_str().unwrap().to_string()).collect();
    assert_eq!(outcomes, ["accepted", "duplicate", "duplicate", "accepted"]);
}

/// `"dedup": "body"` survives a restart: the idempotency window is rebuilt from the journal
/// with the body's hash, so a resend of the same signed body under a new id is still a
/// duplicate (issue 12, also observed).
#[test]
fn dedup_by_body_is_restored_from_the_journal() {
    let hooks = json!({ "hooks": [{ "id": "gh", "provider": "github", "secrets": [GH_SECRET], "dedup": "body" }] });
    let node = Node::new("idem-body", &config(hooks));
    let body = br#"{"ref":"refs/heads/main","after":"abc"}"#;
    let d = node.start();
    assert_eq!(deliver_github(&d, "gh", GH_SECRET, "body-1", body).status, 202);
    stop(d);
    let d = node.start();
    let r = deliver_github(&d, "gh", GH_SECRET, "body-2", body);
    assert_eq!((r.status, r.json()["duplicate"].clone()), (200, json!(true)), "{}", r.text());
    let other = br#"{"ref":"refs/heads/main","after":"def"}"#;
    assert_eq!(deliver_github(&d, "gh", GH_SECRET, "body-3", other).status, 202, "another body is accepted");
}

/// Regression (found by the crash test): the writer thread may write a delivery's record in one
/// batch and the events that follow it (hook topic, `$deliveries`) in the next, so a SIGKILL in
/// between left a delivery record whose 202 was never sent (the answer waits for the last of
/// them). The restart counted it as accepted: the provider's resend got `{"duplicate":true}` and
/// the delivery was never published (nor would its deploy have run).
#[test]
fn regression_a_delivery_record_cut_off_from_its_events_is_not_a_duplicate_after_restart() {
    let node =
        Node::new("half", &config(json!({ "hooks": [{ "id": "gh", "provider": "github", "secrets": [GH_SECRET] }] })));
    let body = br#"{"ref":"refs/heads/main"}"#;
    let d = node.start();
    assert_eq!(deliver_github(&d, "gh", GH_SECRET, "half-0", body).status, 202);
    assert_eq!(deliver_github(&d, "gh", GH_SECRET, "half-1", body).status, 202);
    stop(d);
    let segs = node.segments();
    let bytes = std::fs::read(&segs[0]).unwrap();
    let all = frames(&bytes);
    let i = all.iter().rposition(|(_, r)| r.kind == Kind::Delivery).unwrap();
    assert!(String::from_utf8_lossy(&all[i].1.data).contains("half-1"));
    assert!(all.len() > i + 1, "events follow the delivery record");
    // The crash: the delivery record is on disk, the events after it are not (a clean record
    // boundary, so nothing looks torn).
    std::fs::write(&segs[0], &bytes[..all[i + 1].0]).unwrap();
    let d = node.start();
    let r = deliver_github(&d, "gh", GH_SECRET, "half-1", body);
    assert_eq!(r.status, 202, "never acknowledged, so accepted now: {}", r.text());
    let r = deliver_github(&d, "gh", GH_SECRET, "half-0", body);
    assert_eq!((r.status, r.json()["duplicate"].clone()), (200, json!(true)), "{}", r.text());
    // The duplicate's record is answered at once and in history once durable.
    let want = [("half-0", "accepted"), ("half-1", "accepted"), ("half-0", "duplicate")];
    let want = want.map(|(a, b)| (a.to_string(), b.to_string()));
    let mut recs: Vec<(String, String)> = Vec::new();
    let all_there = eventually(5 * SECOND, || {
        recs = poll_all(&d, "$deliveries")
            .iter()
            .map(|e| (e["data"]["delivery"].as_str().unwrap().into(), e["data"]["outcome"].as_str().unwrap().into()))
            .collect();
        recs.len() >= want.len()
    });
    assert!(all_there, "{recs:?}");
    assert_eq!(recs, want);
    let listed = d.get("/api/deliveries").json();
    let listed: Vec<&str> =
        listed["deliveries"].as_array().unwrap().iter().map(|x| x["delivery"].as_str().unwrap()).collect();
    assert_eq!(listed, ["half-1", "half-0"], "stored once each");
}

/// Under `batch` with a long delay an acknowledgement that waits for durability takes about the
/// delay; one that does not comes back at once.
const SLOW_FSYNC_MS: u64 = 1500;

fn slow_fsync_node(tag: &str, more: Value) -> Node {
    let mut cfg = json!({ "journal": { "fsync": "batch", "fsync_delay_ms": SLOW_FSYNC_MS } });
    if let Value::Object(m) = more {
        for (k, v) in m {
            cfg[k] = v;
        }
    }
    Node::new(tag, &config(cfg))
}

/// The control for the two tests below: `POST /publish` is answered once the fsync ran.
#[test]
fn publish_is_acknowledged_only_after_the_fsync() {
    let node = slow_fsync_node("ack-publish", json!({}));
    let d = node.start();
    let t = Instant::now();
    d.publish("x", "a");
    assert!(t.elapsed() >= Duration::from_millis(SLOW_FSYNC_MS - 300), "answered after {:?}", t.elapsed());
    assert_eq!(d.metric("hookcast_journal_queued_bytes"), 0.0, "nothing pending once acknowledged");
}

#[test]
fn websocket_publish_op_is_acknowledged_only_after_the_fsync() {
    let node = slow_fsync_node("ack-ws", json!({}));
    let _d = node.start();
    let mut ws = ws_connect(&node.listen, "/ws");
    let t = Instant::now();
    ws.send(Message::text(json!({ "op": "publish", "topic": "x", "data": "b" }).to_string())).unwrap();
    let ack = ws_next(&mut ws);
    assert_eq!((ack["type"].as_str(), ack["op"].as_str()), (Some("ack"), Some("publish")), "{ack}");
    assert!(
        t.elapsed() >= Duration::from_millis(SLOW_FSYNC_MS - 300),
        "acknowledged after {:?}, before the journal's fsync (batch, {SLOW_FSYNC_MS} ms)",
        t.elapsed()
    );
}

#[test]
fn a_delivery_answered_with_command_output_waits_for_the_fsync() {
    let hook = json!({
        "id": "out", "execute-command": "/bin/echo", "include-command-output-in-response": true,
        "pass-arguments-to-command": [{ "source": "string", "name": "deployed" }],
    });
    let node = slow_fsync_node("ack-output", json!({ "hooks": [hook] }));
    let d = node.start();
    let t = Instant::now();
    let r = d.request("POST", "/hooks/out", &[("X-GitHub-Delivery", "out-1")], b"{}");
    assert_eq!((r.status, r.text().trim()), (200, "deployed"));
    assert!(
        t.elapsed() >= Duration::from_millis(SLOW_FSYNC_MS - 300),
        "answered after {:?}, before the delivery's journal fsync (batch, {SLOW_FSYNC_MS} ms)",
        t.elapsed()
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Config validation

#[test]
fn check_refuses_an_unknown_fsync_policy_naming_the_field() {
    let dir = TempDir::new("fsync-check");
    let run = |cfg: &str| {
        let path = dir.0.join("hookcast.json");
        std::fs::write(&path, cfg).unwrap();
        let out = Command::new(BIN).args(["check", "--config", path.to_str().unwrap()]).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = run(r#"{"journal":{"fsync":"sometimes"}}"#);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("journal.fsync") && err.contains("sometimes"), "{err}");
    for ok in [r#"{"journal":{"fsync":"batch","fsync_delay_ms":10}}"#, r#"{"journal":{"fsync":"never"}}"#] {
        let (code, err) = run(ok);
        assert_eq!(code, Some(0), "{ok}: {err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 12: damage in the middle of the journal (6), private files (16), start-up errors (18)

/// Item 6: one damaged frame in the middle of the active segment used to make start-up cut the
/// segment there: 150 of 200 acknowledged events were gone. Only the damaged one is missing
/// now, its bytes are kept aside, and the journal goes on.
#[test]
fn a_damaged_frame_mid_journal_loses_only_itself() {
    let node = Node::new("mid-damage", &config(json!({ "journal": { "fsync": "always" } })));
    let d = node.start();
    let acked: Vec<u64> = (0..200).map(|i| d.publish("mid", &format!("m{i}"))).collect();
    stop(d);
    let seg = node.segments().pop().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let all = frames(&bytes);
    let (at, _) = all.iter().find(|(_, r)| r.id == acked[50]).expect("event 50 is in the journal");
    bytes[at + 12] ^= 0x10;
    std::fs::write(&seg, &bytes).unwrap();

    let d = node.start();
    let got = ids(&poll_all(&d, "mid"));
    let want: Vec<u64> = acked.iter().copied().filter(|id| *id != acked[50]).collect();
    assert_eq!(got.len(), 199, "every valid record after the damage is kept");
    assert_eq!(got, want);
    let log = d.log_text();
    assert!(log.contains("DAMAGED") && log.contains(&format!("at byte {at}")), "logged loudly:\n{log}");
    let aside = PathBuf::from(format!("{}.damaged-at-{at}", seg.display()));
    assert!(aside.exists(), "the damaged bytes are kept aside in {}", aside.display());
    let more = d.publish("mid", "after");
    stop(d);
    let d = node.start();
    assert_eq!(ids(&poll_all(&d, "mid")), [want, vec![more]].concat(), "the journal goes on");
    stop(d);
}

/// The mode bits of `p`.
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The umask this test passes on to the daemon, read by a shell that inherits it.
fn inherited_umask() -> u32 {
    let out = Command::new("sh").args(["-c", "umask"]).output().expect("sh is needed to read the umask");
    u32::from_str_radix(String::from_utf8_lossy(&out.stdout).trim(), 8).expect("umask prints octal")
}

/// Item 16: outside systemd (umask 022) the state directory was 0755 and the segments 0644,
/// readable by every local user, and they hold webhook requests with their secret headers.
#[test]
fn the_state_directory_is_private_whatever_the_umask() {
    assert_eq!(inherited_umask(), 0o022, "run this test under umask 022 (the usual default) for it to mean something");
    let top = TempDir::new("private");
    let state = top.0.join("state");
    let cfg = config(json!({ "journal": { "segment_bytes": 4096 } }));
    let args = ["--state-dir", state.to_str().unwrap()];
    let d = Daemon::start_args(Some(&cfg), &args);
    for i in 0..40 {
        d.publish("private", &format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat(200)));
    }
    stop(d);
    let journal = state.join("journal");
    assert_eq!((mode(&state), mode(&journal)), (0o700, 0o700), "directories created 0700");
    let files: Vec<PathBuf> = std::fs::read_dir(&journal).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(files.iter().filter(|p| p.extension().is_some_and(|x| x == "log")).count() >= 2, "rotated: {files:?}");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{} (the lock, the first segment and the rotated ones)", f.display());
    }

    // A journal left readable by an older version is tightened at the next start.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in &files {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let d = Daemon::start_args(Some(&cfg), &args);
    stop(d);
    assert_eq!(mode(&journal), 0o700);
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }
}

/// Starts `hookcast serve` expecting it to refuse; returns its stderr.
fn refused_start(args: &[&str]) -> String {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = eventually(10 * SECOND, || child.try_wait().unwrap().is_some());
    if !exited {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(exited, "the daemon started; stderr:\n{stderr}");
    assert!(!out.status.success(), "exit status {:?}; stderr:\n{stderr}", out.status);
    stderr
}

/// Item 18: a journal that cannot be opened was reported as "cannot listen on ADDR: …". The
/// message now names the journal and the path that failed, and the daemon exits non-zero.
#[test]
fn a_journal_that_cannot_be_opened_is_named_in_the_start_up_error() {
    let top = TempDir::new("start-errors");
    let listen = free_listen();
    // `state_dir` is a file.
    let file = top.0.join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let err = refused_start(&["--listen", &listen, "--state-dir", file.to_str().unwrap()]);
    let journal = file.join("journal");
    assert!(
        err.contains(&format!("journal: cannot create the directory {}", journal.display())) && !err.contains("listen"),
        "{err}"
    );
    // The journal's lock cannot be taken (a directory where the lock file goes: unwritable
    // even for root, which these tests may run as).
    let state = top.0.join("state");
    std::fs::create_dir_all(state.join("journal").join("lock")).unwrap();
    let err = refused_start(&["--listen", &listen, "--state-dir", state.to_str().unwrap()]);
    let lock = state.join("journal").join("lock");
    assert!(err.contains(&format!("journal: cannot lock {}", lock.display())) && !err.contains("listen"), "{err}");
    // An unwritable state directory (permissions bind only a non-root user).
    let ro = top.0.join("read-only");
    std::fs::create_dir_all(&ro).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
    if std::fs::write(ro.join("probe"), "x").is_ok() {
        eprintln!("NOTE: running as root: a 0500 directory is writable, that case is not tried here");
    } else {
        let err = refused_start(&["--listen", &listen, "--state-dir", ro.to_str().unwrap()]);
        assert!(err.contains(&format!("cannot create the directory {}", ro.join("journal").display())), "{err}");
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o700)).unwrap();
    // A listen failure still names the address (and only that).
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = holder.local_addr().unwrap().to_string();
    let err = refused_start(&["--listen", &busy]);
    assert!(err.contains(&format!("cannot listen on {busy}")) && !err.contains("journal"), "{err}");
}

/// Journal bytes and records of run `run`'s output lines (and its markers) in `node`'s journal.
fn run_output_in_journal(node: &Node, run: u64) -> (u64, Vec<(String, String)>) {
    let topic = format!("$runs/{run}");
    let (mut bytes, mut recs) = (0, Vec::new());
    for seg in node.segments() {
        for (_, rec) in frames(&std::fs::read(seg).unwrap()) {
            if rec.topic == topic {
                bytes += hookcast::journal::record::encoded_len(&rec) as u64;
                let (kind, _, data) = hookcast::journal::record::decode_event_data(&rec.data).unwrap();
                recs.push((kind, data));
            }
        }
    }
    (bytes, recs)
}

/// Starts the `chatty` hook and waits for its run to end; returns the run's record.
fn chatty_run(d: &Daemon, delivery: &str) -> Value {
    let r = d.request("POST", "/hooks/chatty", &[("X-GitHub-Delivery", delivery)], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let mut run = 0;
    assert!(
        eventually(10 * SECOND, || {
            let v = d.get("/api/runs").json();
            let found = v["runs"].as_array().unwrap().iter().find(|r| r["deliveries"][0] == delivery).cloned();
            run = found.and_then(|r| r["id"].as_u64()).unwrap_or(0);
            run != 0
        }),
        "the run was not listed"
    );
    let rec = run_final(d, run);
    assert_eq!(rec["state"], "succeeded", "{rec}");
    rec
}

/// Item 10: run output went to the journal with no cap (three seconds of `yes` wrote 135–300
/// MiB, and retention then deleted acknowledged records). The journal now keeps the first
/// `journal.run_output_bytes` of a run and a marker saying how much was left out; subscribers
/// still see every line.
#[test]
fn run_output_in_the_journal_is_capped_per_run_with_a_marker() {
    let work = TempDir::new("chatty");
    // 20 000 lines, about 2 MB of journal records without a cap.
    let cmd = script(&work.0, "chatty.sh", "yes 'a line of deploy output' | head -n 20000\n");
    let hook = json!({ "id": "chatty", "execute-command": cmd });
    let cap = 64 * 1024;
    let cfg = config(json!({ "hooks": [hook], "journal": { "run_output_bytes": cap } }));
    let node = Node::new("chatty", &cfg);
    let d = node.start();
    let run = chatty_run(&d, "chatty-1")["id"].as_u64().unwrap();
    // Live, every line is published (the runner's own limits are the only ones there).
    assert!(d.metric("hookcast_events_published_total") >= 20_000.0, "every line was published");
    d.publish("sync", "x"); // acknowledged once durable: the journal is written up to here
    stop(d);

    let (bytes, recs) = run_output_in_journal(&node, run);
    assert!(bytes <= cap + 200, "{bytes} journal bytes of run output, cap {cap}");
    let lines = recs.iter().filter(|(k, _)| k == "stdout").count();
    assert!(lines > 100, "the first lines are kept: {lines}");
    let (kind, marker) = recs.last().unwrap();
    assert_eq!(kind, "output-not-journalled", "a marker ends the run's journalled output");
    let marker: Value = serde_json::from_str(marker).unwrap();
    assert_eq!(marker["lines"], 20_000 - lines as u64, "{marker}");
    assert_eq!(marker["limit"], "journal.run_output_bytes");

    // After a restart the run's history has the kept prefix and the marker, not a silent hole.
    let d = node.start();
    let hist = poll_all(&d, &format!("$runs/{run}"));
    let types: Vec<&str> = hist.iter().map(|e| e["event"].as_str().unwrap_or("")).collect();
    assert_eq!(types.last(), Some(&"output-not-journalled"), "{:?}", &types[types.len().saturating_sub(3)..]);
    stop(d);
}

/// Item 10: the per-second budget over all runs bounds how fast run output reaches the disk,
/// however the per-run cap is set.
#[test]
fn run_output_in_the_journal_is_bounded_per_second() {
    let work = TempDir::new("chatty-rate");
    let cmd = script(&work.0, "chatty.sh", "yes 'a line of deploy output' | head -n 20000\n");
    let hook = json!({ "id": "chatty", "execute-command": cmd });
    let rate = 8 * 1024;
    let journal = json!({ "run_output_bytes": 1u64 << 30, "run_output_bytes_per_sec": rate });
    let node = Node::new("chatty-rate", &config(json!({ "hooks": [hook], "journal": journal })));
    let d = node.start();
    let rec = chatty_run(&d, "rate-1");
    let run = rec["id"].as_u64().unwrap();
    d.publish("sync", "x");
    stop(d);
    let secs = rec["duration_ms"].as_u64().unwrap_or(0) / 1000;
    let (bytes, recs) = run_output_in_journal(&node, run);
    // Generous: one budget per started second of the run, plus two.
    assert!(bytes <= rate * (secs + 3), "{bytes} bytes in a run of {secs} s at {rate} bytes/s");
    // Markers account for every line left out.
    let kept = recs.iter().filter(|(k, _)| k == "stdout").count() as u64;
    let markers: Vec<Value> = recs
        .iter()
        .filter(|(k, _)| k == "output-not-journalled")
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        !markers.is_empty() && markers.iter().all(|m| m["limit"] == "journal.run_output_bytes_per_sec"),
        "{markers:?}"
    );
    let left_out: u64 = markers.iter().map(|m| m["lines"].as_u64().unwrap()).sum();
    assert_eq!(kept + left_out, 20_000, "{kept} kept, {left_out} left out");
}

/// Item 10: the listener was bound before the journal was replayed, so during a long replay
/// (an OOM loop under systemd, at worst) clients connected and hung. It is bound after the
/// replay now: while the journal is being read (its lock is taken first), connecting is refused.
#[test]
fn the_listener_is_bound_only_after_the_journal_is_replayed() {
    let state = TempDir::new("late-bind");
    let dir = state.0.join("journal");
    std::fs::create_dir_all(&dir).unwrap();
    // About 48 MB of events, written directly: a replay that takes a while.
    let t0 = hookcast::clock::unix_ms();
    let data = hookcast::journal::record::encode_event_data("message", false, &"z".repeat(4000));
    let mut seg = Vec::with_capacity(16 << 20);
    for n in 1..=3u64 {
        seg.clear();
        for i in 0..4000u64 {
            let id = n * 1_000_000 + i;
            let rec = hookcast::journal::Record {
                kind: Kind::Event,
                id,
                time_ms: t0,
                topic: format!("bulk/{}", i % 10),
                data: data.clone(),
            };
            hookcast::journal::encode(&rec, &mut seg).unwrap();
        }
        std::fs::write(dir.join(format!("journal-{n:020}.log")), &seg).unwrap();
    }
    let listen = free_listen();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &listen, "--state-dir", state.0.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let replaying =
        eventually(10 * SECOND, || std::fs::read_to_string(dir.join("lock")).is_ok_and(|s| s.trim() == pid));
    let during = TcpStream::connect(&listen);
    let up = eventually(60 * SECOND, || TcpStream::connect(&listen).is_ok());
    let _ = child.kill();
    let _ = child.wait();
    assert!(replaying, "the daemon never took the journal's lock");
    assert!(during.is_err(), "a client could connect while the journal was being replayed");
    assert!(up, "the daemon never listened after the replay");
}
