//! The README's Dashboards recipes on `examples/dashboards.json` (its tail path moved to a
//! temporary directory): the notification bell's count as state then live notifications, and
//! the log viewer's filter changed mid-stream on a tailed file, with tungstenite.

use crate::util::ws_json as next_json;
use crate::util::{ws, Daemon, TempDir};
use serde_json::{json, Value};
use tungstenite::Message;

/// The example config, listening where the test says and tailing `log`.
fn example(log: &std::path::Path) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/dashboards.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    assert_eq!(cfg["sources"][0]["tail"], "/tmp/hookcast-demo/app.log", "the README's path");
    cfg["sources"][0]["tail"] = json!(log.display().to_string());
    cfg.as_object_mut().unwrap().remove("listen");
    cfg.to_string()
}

fn append(path: &std::path::Path, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).create(true).open(path).unwrap();
    writeln!(f, "{line}").unwrap();
}

#[test]
fn the_bell_shows_the_count_at_once_then_live_notifications() {
    let tmp = TempDir::new("dash-bell");
    let d = Daemon::start(&example(&tmp.0.join("app.log")));
    let json = [("Content-Type", "application/json")];
    d.publish_with("bell/alice?retain=1&event=unread", r#"{"unread":3}"#, &json);
    let mut bell = ws(&d, "/ws?topics=bell/alice&state=1");
    let first = next_json(&mut bell);
    assert_eq!((first["event"].clone(), first["data"].clone()), (json!("unread"), json!({"unread": 3})), "{first}");
    d.publish_with("bell/alice?event=notification", r#"{"title":"web deployed"}"#, &json);
    d.publish_with("bell/alice?retain=1&event=unread", r#"{"unread":4}"#, &json);
    assert_eq!(next_json(&mut bell)["data"]["title"], "web deployed");
    assert_eq!(next_json(&mut bell)["data"]["unread"], 4);
    assert_eq!(d.get("/api/topics/bell/alice").json()["data"], json!({"unread": 4}));
}

#[test]
fn the_log_viewer_changes_its_filter_mid_stream() {
    let tmp = TempDir::new("dash-logs");
    let log = tmp.0.join("app.log");
    std::fs::write(&log, "").unwrap();
    let d = Daemon::start(&example(&log));
    let mut viewer = ws(&d, "/ws?topics=logs/app&where=level:error&q=timeout");
    append(&log, r#"{"level":"info","msg":"request done"}"#);
    append(&log, r#"{"level":"error","msg":"upstream timeout"}"#);
    let ev = next_json(&mut viewer);
    assert_eq!((ev["event"].clone(), ev["data"]["msg"].clone()), (json!("line"), json!("upstream timeout")), "{ev}");
    viewer.send(Message::text(r#"{"op":"filter","filter":{"where":{"level":"warn"}}}"#)).unwrap();
    let ack = next_json(&mut viewer);
    assert_eq!((ack["type"].clone(), ack["op"].clone()), (json!("ack"), json!("filter")), "{ack}");
    append(&log, r#"{"level":"error","msg":"another timeout"}"#);
    append(&log, r#"{"level":"warn","msg":"slow"}"#);
    assert_eq!(next_json(&mut viewer)["data"]["msg"], "slow", "after the ack, the new filter only");
}
