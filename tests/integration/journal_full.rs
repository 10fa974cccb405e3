//! The journal when it cannot keep up or cannot write (issue 12, items 3 and 13): new work is
//! refused with 503 up front, nothing is published, deduplicated or run before its record is
//! durable, the writer's queue stays bounded, and what the journal cannot hold is refused
//! rather than acknowledged and lost.
//!
//! A full disk is made real without root or a loop mount: the daemon runs under a file-size
//! limit (`RLIMIT_FSIZE`, set with util-linux `prlimit`), so a `write(2)` past the limit fails
//! with `EFBIG`, a write error like `ENOSPC`. `SIGXFSZ` is left at its default disposition, which
//! kills a process that does not handle it (as under systemd's `LimitFSIZE`): the daemon handles
//! it itself. Raising the limit from outside with `prlimit --pid` is the disk getting space again.

use crate::util::ws_json as ws_next;
use crate::util::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::Command;
use std::sync::mpsc::Receiver;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(20);
const ADMIN: &str = "admin-token";

fn need_prlimit() {
    let ok = Command::new("prlimit").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "these tests need util-linux `prlimit` (apt-get install util-linux)");
}

/// Starts the daemon on `state` with its files limited to `fsize` bytes, SIGXFSZ at its default
/// disposition (which kills a process that does not handle it), as under systemd's LimitFSIZE.
fn start_limited(cfg: &Value, state: &TempDir, fsize: u64) -> Daemon {
    need_prlimit();
    let limit = format!("--fsize={fsize}:");
    // `$0` is the binary, `$@` its arguments (see `Daemon::start_via`).
    let script = format!("trap - XFSZ; exec prlimit {limit} -- \"$0\" \"$@\"");
    let state = state.0.to_str().unwrap();
    Daemon::start_via(&["sh", "-c", &script], Some(&cfg.to_string()), &["--state-dir", state], &[])
}

/// The disk has room again: lifts the daemon's file-size limit.
fn lift_limit(d: &Daemon) {
    let st = Command::new("prlimit")
        .args(["--pid", &d.child.id().to_string(), "--fsize=unlimited:unlimited"])
        .status()
        .unwrap();
    assert!(st.success(), "prlimit --pid failed");
}

/// The `data:` lines of an SSE stream, one message per line, as they arrive.
fn sse_data(d: &Daemon, path: &str) -> Receiver<String> {
    let (s, _) = sse(d, path, &[]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { break };
            if let Some(data) = line.strip_prefix("data:") {
                if tx.send(data.trim_start().to_string()).is_err() {
                    break;
                }
            }
        }
    });
    rx
}

fn ws_connect(d: &Daemon) -> tungstenite::WebSocket<std::net::TcpStream> {
    use tungstenite::client::IntoClientRequest;
    let req = format!("ws://{}/ws", d.addr).into_client_request().unwrap();
    let (ws, _) = tungstenite::client(req, d.connect()).unwrap_or_else(|e| panic!("WebSocket handshake: {e}"));
    ws
}

/// Every event in history on `topics` (long poll from the beginning).
fn history(d: &Daemon, topics: &str) -> Vec<Value> {
    let r = d.get(&format!("/poll?topics={topics}&since=0&timeout=1&limit=1000"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["events"].as_array().unwrap().clone()
}

fn runs_file_lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |s| s.lines().count())
}

#[test]
fn regression_while_the_journal_cannot_write_nothing_is_done_or_acknowledged() {
    let work = TempDir::new("journal-full");
    let runs = work.0.join("runs");
    let script = work.0.join("deploy.sh");
    std::fs::write(&script, format!("#!/bin/sh\necho ran >> {}\n", runs.display())).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let admin = hookcast::auth::hex(&hookcast::auth::token_hash(ADMIN));
    let cfg = json!({
        "public": [{ "topics": ["**", "$deliveries", "$runs"], "scopes": ["subscribe", "publish"] }],
        "tokens": [{ "name": "ops", "sha256": admin, "scopes": ["admin"] }],
        "hooks": [{ "id": "deploy", "execute-command": script.to_str().unwrap() }],
    });
    let state = TempDir::new("journal-full-state");
    // Room for the first publish (about 30 kB) and not for the delivery after it.
    let d = start_limited(&cfg, &state, 32 * 1024);
    let stream = sse_data(&d, "/events?topics=t");

    let body = format!("{{\"pad\":\"{}\"}}", "p".repeat(4000));
    let deliver = |id: &str| {
        let h = [("Content-Type", "application/json"), ("X-GitHub-Delivery", id)];
        d.request("POST", "/hooks/deploy", &h, body.as_bytes())
    };
    let r = d.request("POST", "/hooks/deploy", &[("X-GitHub-Delivery", "d-0")], b"{}");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(eventually(TIMEOUT, || runs_file_lines(&runs) == 1), "d-0 ran");
    let a = "a".repeat(26_000);
    d.publish("t", &a);
    // Its records do not fit: the write fails while the delivery waits for it.
    let r = deliver("d-1");
    assert_eq!(r.status, 503, "{}", r.text());

    // From now on, refused up front (not after the durable wait's timeout).
    let r = d.request("POST", "/publish/t", &[], b"b");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("not accepted"), "refused up front: {}", r.text());
    assert!(r.header("retry-after").is_some(), "{:?}", r.headers);
    let r = deliver("d-1");
    assert_eq!(r.status, 503, "a resend of a delivery never made durable is no duplicate: {}", r.text());
    assert!(r.text().contains("not accepted"), "{}", r.text());
    let r = deliver("d-2");
    assert_eq!(r.status, 503, "{}", r.text());
    let mut ws = ws_connect(&d);
    let op = json!({ "op": "publish", "topic": "t", "data": "w" }).to_string();
    ws.send(tungstenite::Message::text(op)).unwrap();
    let answer = ws_next(&mut ws);
    assert_eq!(answer["op"], "publish", "{answer}");
    assert!(answer["error"].as_str().is_some_and(|e| e.contains("not accepted")), "{answer}");
    let bearer = format!("Bearer {ADMIN}");
    let r = d.request("POST", "/api/deliveries/d-0/replay", &[("Authorization", &bearer)], b"");
    assert_eq!(r.status, 503, "a replay is new work too: {}", r.text());
    assert!(r.text().contains("not accepted"), "{}", r.text());

    // The writer's queue does not grow with what is refused.
    let big = "q".repeat(64 * 1024);
    for _ in 0..40 {
        let r = d.request("POST", "/publish/t", &[], big.as_bytes());
        assert_eq!(r.status, 503, "{}", r.text());
    }
    let queued = d.metric("hookcast_journal_queued_bytes");
    assert!(queued < 64.0 * 1024.0, "{queued} bytes queued while the journal cannot write");

    // Nothing but the acknowledged publish is visible, and the delivery did not run.
    let seen: Vec<String> = history(&d, "t").iter().map(|e| e["data"].as_str().unwrap().to_string()).collect();
    assert_eq!(seen, std::slice::from_ref(&a), "history holds only what was acknowledged");
    let accepted: Vec<Value> = history(&d, "$deliveries")
        .into_iter()
        .filter(|e| e["data"]["outcome"] == "accepted")
        .map(|e| e["data"]["delivery"].clone())
        .collect();
    assert_eq!(accepted, [json!("d-0")], "only the delivery acknowledged before");
    assert_eq!(runs_file_lines(&runs), 1, "no run started for a delivery that is not durable");

    // The disk has room again: the writer's retry makes the queued delivery durable, and only
    // then does it take effect, once.
    lift_limit(&d);
    assert!(eventually(TIMEOUT, || runs_file_lines(&runs) == 2), "the durable delivery ran");
    assert_eq!(d.metric("hookcast_journal_failed"), 0.0);
    let r = deliver("d-1");
    assert_eq!((r.status, r.json()["duplicate"].clone()), (200, json!(true)), "{}", r.text());
    let r = deliver("d-2");
    assert_eq!(r.status, 200, "refused before, so new now: {}", r.text());
    assert!(!r.text().contains("duplicate"), "{}", r.text());
    assert!(eventually(TIMEOUT, || runs_file_lines(&runs) == 3), "d-2 ran");
    d.publish("t", "c");

    // The subscriber saw what was acknowledged, in order, and nothing that was refused.
    let mut got = Vec::new();
    while got.last().map(String::as_str) != Some("c") {
        got.push(stream.recv_timeout(TIMEOUT).expect("the stream goes on"));
    }
    assert_eq!(got, [a, "c".to_string()]);
}

/// Journal settings whose fsync comes late, and a small queue bound.
fn slow_node_cfg() -> Value {
    json!({
        "public": [{ "topics": ["**"], "scopes": ["subscribe", "publish"] }],
        "hooks": [{ "id": "h", "response-message": "ok" }],
        "journal": { "fsync": "batch", "fsync_delay_ms": 2000, "max_queued_bytes": 65536 },
    })
}

#[test]
fn regression_new_work_is_refused_while_the_journal_queue_is_over_its_bound() {
    let state = TempDir::new("journal-behind");
    let d = Daemon::start_args(Some(&slow_node_cfg().to_string()), &["--state-dir", state.0.to_str().unwrap()]);
    d.publish("t", "first");

    // A delivery waiting for its fsync is not a duplicate yet: a resend meanwhile is refused,
    // not answered `duplicate` (the first may still be lost) nor run a second time.
    let mut first = d.connect();
    let req =
        "POST /hooks/h HTTP/1.1\r\nHost: localhost\r\nX-GitHub-Delivery: pending-1\r\nContent-Length: 2\r\n\r\n{}";
    first.write_all(req.as_bytes()).unwrap();
    assert!(eventually(TIMEOUT, || d.metric("hookcast_journal_queued_bytes") > 0.0), "the delivery is queued");
    let r = d.request("POST", "/hooks/h", &[("X-GitHub-Delivery", "pending-1")], b"{}");
    assert_eq!(r.status, 503, "a resend while the first is being written: {}", r.text());
    let r = read_response(&mut first).expect("the first answer");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    let r = d.request("POST", "/hooks/h", &[("X-GitHub-Delivery", "pending-1")], b"{}");
    assert_eq!(r.json()["duplicate"], json!(true), "durable now: {}", r.text());

    // 100 kB queued and waiting for the late fsync, its 202 held meanwhile.
    let mut held = d.connect();
    let big = "x".repeat(100_000);
    let req = format!("POST /publish/t HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{big}", big.len());
    held.write_all(req.as_bytes()).unwrap();
    assert!(eventually(TIMEOUT, || d.metric("hookcast_journal_queued_bytes") >= 100_000.0), "the record is queued");
    // Not durable yet, so not in history either.
    let seen: Vec<Value> = history(&d, "t").iter().map(|e| e["data"].clone()).collect();
    assert_eq!(seen, [json!("first")], "an event is visible only once durable");

    let r = d.request("POST", "/publish/t", &[], b"small");
    assert_eq!(r.status, 503, "over the queue bound: {}", r.text());
    assert!(r.text().contains("behind"), "{}", r.text());
    let r = d.request("POST", "/hooks/h", &[("X-GitHub-Delivery", "behind-1")], b"{}");
    assert_eq!(r.status, 503, "{}", r.text());

    let r = read_response(&mut held).expect("the held answer");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(d.metric("hookcast_journal_queued_bytes"), 0.0);
    d.publish("t", "after");
    let seen: Vec<Value> = history(&d, "t").iter().map(|e| e["data"].clone()).collect();
    assert_eq!(seen, [json!("first"), json!(big), json!("after")]);
}

#[test]
fn regression_a_publish_over_the_journal_record_limit_is_refused_not_lost() {
    let cfg = json!({
        "public": [{ "topics": ["**"], "scopes": ["subscribe", "publish"] }],
        "limits": { "max_body_bytes": 80 << 20 },
        "hooks": [{ "id": "big", "response-message": "ok" }],
    });
    let state = TempDir::new("journal-record-limit");
    let d = Daemon::start_args(Some(&cfg.to_string()), &["--state-dir", state.0.to_str().unwrap()]);
    // Refused from the head alone: no need to send (or read) 64 MiB to be told.
    let limit = hookcast::journal::record::MAX_BODY_LEN;
    let head = |path: &str, len: usize| {
        d.raw(format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\n\r\n").as_bytes())
    };
    let r = head("/publish/t", limit + 1);
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(history(&d, "t").is_empty());
    // A webhook's record holds its body in base64: 50 MB of body do not fit either.
    let r = head("/hooks/big", 50 << 20);
    assert_eq!(r.status, 413, "{}", r.text());
    d.publish("t", "small");
    let r = d.request("POST", "/hooks/big", &[("X-GitHub-Delivery", "big-2")], b"small");
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));

    // `check` says what the setting means with a journal.
    let path = state.0.join("big.json");
    std::fs::write(&path, cfg.to_string()).unwrap();
    let out = Command::new(BIN).args(["check", "--config", path.to_str().unwrap()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("warning") && text.contains("limits.max_body_bytes"), "{text}");
}

#[test]
fn regression_a_deploy_s_output_does_not_grow_the_queue_of_a_journal_that_cannot_write() {
    let work = TempDir::new("journal-full-output");
    let script = work.0.join("noisy.sh");
    // About 25 000 lines, each a `$runs/{id}` event of about 100 bytes in the journal.
    std::fs::write(&script, "#!/bin/sh\nyes 'a line of output' | head -n 25000\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cfg = json!({
        "public": [{ "topics": ["**", "$runs", "$runs/**"], "scopes": ["subscribe", "publish"] }],
        "hooks": [{ "id": "noisy", "execute-command": script.to_str().unwrap() }],
    });
    let state = TempDir::new("journal-full-output-state");
    // The output itself fills the journal's file.
    let d = start_limited(&cfg, &state, 64 * 1024);
    let r = d.request("POST", "/hooks/noisy", &[("X-GitHub-Delivery", "n-1")], b"{}");
    assert_eq!(r.status, 200, "{}", r.text());
    let finished = eventually(TIMEOUT, || {
        let v = d.get("/api/runs/1").json();
        v["state"] == "succeeded"
    });
    assert!(finished, "{}", d.get("/api/runs/1").text());
    assert_eq!(d.metric("hookcast_journal_failed"), 1.0, "the journal filled up");
    let queued = d.metric("hookcast_journal_queued_bytes");
    assert!(queued < 512.0 * 1024.0, "{queued} bytes queued for a journal that cannot write");
    // The run's own log still has its output.
    let log = d.get("/api/runs/1").json();
    assert!(log.to_string().contains("a line of output"), "{log}");
}
