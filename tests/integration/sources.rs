//! Log sources: a command's stdout lines become events (JSON and text), a command that exits is
//! restarted, SIGHUP stops a removed source's process group and leaves the others alone, and a
//! flood is bounded by the source's budget with the dropped count reported.

use crate::util::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Kills the process groups the sources wrote down, whatever happens to the test.
struct Groups(Vec<PathBuf>);

impl Drop for Groups {
    fn drop(&mut self) {
        for f in &self.0 {
            if let Some(pgid) = read_pid(f) {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pgid}")])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}

fn read_pid(f: &Path) -> Option<u32> {
    std::fs::read_to_string(f).ok()?.trim().parse().ok()
}

fn group_alive(pgid: u32) -> bool {
    Command::new("kill")
        .args(["-0", "--", &format!("-{pgid}")])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// A source running `script` under sh (which writes its process group to `pidfile` first).
fn source(name: &str, topic: &str, pidfile: &Path, script: &str, extra: &str) -> String {
    let script = format!("echo $$ > {}; {script}", pidfile.display());
    format!(
        r#"{{"name":{name:?},"topic":{topic:?},"command":["sh","-c",{script:?}]{extra}}}"#,
        name = name,
        topic = topic,
        script = script,
        extra = extra
    )
}

fn config(sources: &[String]) -> String {
    format!(
        r#"{{"public":[{{"topics":["**"],"scopes":["subscribe","publish"]}},{{"topics":["$deliveries","$runs","$runs/**"],"scopes":["subscribe"]}}],"sources":[{}]}}"#,
        sources.join(",")
    )
}

#[test]
fn a_command_sources_lines_arrive_as_json_and_text_events() {
    let tmp = TempDir::new("src-lines");
    let pid = tmp.0.join("pid");
    let _groups = Groups(vec![pid.clone()]);
    let script = r#"while true; do echo '{"level":"error","msg":"timeout"}'; echo 'plain text'; sleep 0.1; done"#;
    let d = Daemon::start(&config(&[source("app", "logs/app", &pid, script, "")]));
    let url = format!("{}/events?topics=logs/app", d.url());
    let (mut child, rx) = spawn_es_client(&url, &["--count", "6", "--timeout-ms", "20000", "--events", "line"]);
    let (mut json, mut text) = (0, 0);
    while json + text < 6 {
        let v = rx.recv_timeout(Duration::from_secs(20)).expect("the source's lines arrive");
        if v["type"] != "line" {
            continue;
        }
        let data = v["data"].as_str().unwrap();
        if data == "plain text" {
            text += 1;
        } else {
            let j: serde_json::Value = serde_json::from_str(data).expect("a JSON line is a JSON event");
            assert_eq!(j["level"], "error", "{data}");
            json += 1;
        }
    }
    assert!(json > 0 && text > 0, "both kinds arrive: {json} JSON, {text} text");
    let _ = child.kill();
    let _ = child.wait();
    assert!(d.metric("hookcast_source_lines_total{source=\"app\"}") >= 6.0);
    let status = d.get("/api/status").json();
    let s = &status["sources"][0];
    assert_eq!((s["name"].as_str(), s["state"].as_str()), (Some("app"), Some("running")), "{status}");
    assert!(s["last_line"].is_string(), "{s}");
}

#[test]
fn a_command_that_exits_is_restarted_with_backoff() {
    let tmp = TempDir::new("src-crash");
    let pid = tmp.0.join("pid");
    let _groups = Groups(vec![pid.clone()]);
    let d = Daemon::start(&config(&[source("crash", "logs/crash", &pid, "echo up; exit 3", "")]));
    let url = format!("{}/events?topics=logs/crash", d.url());
    let (mut child, rx) = spawn_es_client(&url, &["--count", "2", "--timeout-ms", "20000", "--events", "line"]);
    let mut ups = 0;
    while ups < 2 {
        let v = rx.recv_timeout(Duration::from_secs(20)).expect("each start says up");
        if v["type"] == "line" && v["data"] == "up" {
            ups += 1;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(d.metric("hookcast_source_restarts_total{source=\"crash\"}") >= 2.0);
    assert!(d.log_text().contains("restarting in"), "{}", d.log_text());
    // The backoff doubles: in 2 s no more than a handful of restarts (0.2 + 0.4 + 0.8 …).
    let before = d.metric("hookcast_source_restarts_total{source=\"crash\"}");
    std::thread::sleep(Duration::from_secs(2));
    let after = d.metric("hookcast_source_restarts_total{source=\"crash\"}");
    assert!(after - before <= 3.0, "{before} → {after}");
}

#[test]
fn sighup_stops_a_removed_sources_group_and_leaves_the_others_running() {
    let tmp = TempDir::new("src-hup");
    let (gone, kept, added) = (tmp.0.join("gone"), tmp.0.join("kept"), tmp.0.join("added"));
    let _groups = Groups(vec![gone.clone(), kept.clone(), added.clone()]);
    // A grandchild in the background: the whole group must go.
    let script = "sleep 1000 & while true; do echo tick; sleep 0.2; done";
    let a = source("gone", "logs/gone", &gone, script, "");
    let b = source("kept", "logs/kept", &kept, script, "");
    let mut d = Daemon::start(&config(&[a, b.clone()]));
    assert!(eventually(Duration::from_secs(10), || read_pid(&gone).is_some() && read_pid(&kept).is_some()));
    let (gone_pg, kept_pg) = (read_pid(&gone).unwrap(), read_pid(&kept).unwrap());
    assert!(group_alive(gone_pg) && group_alive(kept_pg));

    let c = source("added", "logs/added", &added, script, "");
    std::fs::write(d.dir.0.join("hookcast.json"), config(&[b, c])).unwrap();
    signal(&d.child, "HUP");
    assert!(eventually(Duration::from_secs(10), || !group_alive(gone_pg)), "the removed source's group is gone");
    assert!(eventually(Duration::from_secs(10), || read_pid(&added).is_some()), "the new source started");
    assert!(group_alive(kept_pg), "the unchanged source was not touched");
    assert_eq!(read_pid(&kept), Some(kept_pg), "…nor restarted");
    assert_eq!(d.metric("hookcast_source_restarts_total{source=\"kept\"}"), 0.0);
    let added_pg = read_pid(&added).unwrap();

    // Shutdown stops every group.
    let (status, _) = d.terminate();
    assert!(status.success(), "{status:?}");
    assert!(eventually(Duration::from_secs(5), || !group_alive(kept_pg) && !group_alive(added_pg)));
}

#[test]
fn a_flood_is_bounded_by_the_budget_and_the_dropped_count_reported() {
    let tmp = TempDir::new("src-flood");
    let pid = tmp.0.join("pid");
    let _groups = Groups(vec![pid.clone()]);
    let d =
        Daemon::start(&config(&[source("flood", "logs/flood", &pid, "exec yes flood", r#","max_lines_per_sec":50"#)]));
    let url = format!("{}/events?topics=logs/flood", d.url());
    let t0 = Instant::now();
    let (mut child, rx) =
        spawn_es_client(&url, &["--count", "1000", "--timeout-ms", "20000", "--events", "line,dropped"]);
    let mut dropped = None;
    while dropped.is_none() {
        let v = rx.recv_timeout(Duration::from_secs(20)).expect("a dropped report arrives");
        if v["type"] == "dropped" {
            let j: serde_json::Value = serde_json::from_str(v["data"].as_str().unwrap()).unwrap();
            dropped = j["dropped"].as_u64();
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(dropped.unwrap() > 0);
    // The loop still answers promptly while the source floods.
    let asked = Instant::now();
    assert_eq!(d.get("/healthz").status, 200);
    assert!(asked.elapsed() < Duration::from_secs(1), "{:?}", asked.elapsed());
    let lines = d.metric("hookcast_source_lines_total{source=\"flood\"}");
    let secs = t0.elapsed().as_secs_f64() + 2.0;
    assert!(lines <= 50.0 * secs, "{lines} lines in {secs} s over a budget of 50/s");
    assert!(d.metric("hookcast_source_dropped_total{source=\"flood\"}") > 0.0);
}

/// The next `line` event's data.
fn next_line(rx: &std::sync::mpsc::Receiver<serde_json::Value>) -> String {
    loop {
        let v = rx.recv_timeout(Duration::from_secs(20)).expect("a line arrives");
        if v["type"] == "line" {
            return v["data"].as_str().unwrap().to_string();
        }
    }
}

fn append(path: &Path, text: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new().append(true).create(true).open(path).unwrap().write_all(text.as_bytes()).unwrap();
}

#[test]
fn a_tail_follows_appends_rename_rotation_copytruncate_and_a_file_created_later() {
    let tmp = TempDir::new("src-tail");
    let (log, late) = (tmp.0.join("app.log"), tmp.0.join("late.log"));
    std::fs::write(&log, "old line, before the start\n").unwrap();
    let sources = [
        format!(r#"{{"tail":{:?},"topic":"logs/app"}}"#, log.display().to_string()),
        format!(r#"{{"tail":{:?},"topic":"logs/late"}}"#, late.display().to_string()),
    ];
    let d = Daemon::start(&config(&sources));
    let url = format!("{}/events?topics=logs/app,logs/late", d.url());
    let (mut child, rx) = spawn_es_client(&url, &["--count", "6", "--timeout-ms", "30000", "--events", "line"]);
    assert_eq!(rx.recv_timeout(Duration::from_secs(20)).unwrap()["open"], true);

    append(&log, "one\n");
    assert_eq!(next_line(&rx), "one", "from the end: the old line is not sent");
    append(&log, r#"{"level":"warn","msg":"json"}"#);
    append(&log, "\n");
    let j: serde_json::Value = serde_json::from_str(&next_line(&rx)).unwrap();
    assert_eq!(j["level"], "warn");

    // Rotation by rename: the writer finishes the old file, then a new one appears.
    std::fs::rename(&log, tmp.0.join("app.log.1")).unwrap();
    append(&tmp.0.join("app.log.1"), "two\n");
    append(&log, "three\n");
    assert_eq!(next_line(&rx), "two");
    assert_eq!(next_line(&rx), "three");

    // copytruncate: copied away, truncated in place, then written again.
    std::fs::copy(&log, tmp.0.join("app.log.2")).unwrap();
    std::fs::OpenOptions::new().write(true).truncate(true).open(&log).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    append(&log, "four\n");
    assert_eq!(next_line(&rx), "four");

    // A file that did not exist at start.
    let status = d.get("/api/status").json();
    assert_eq!(status["sources"][1]["state"], "waiting", "{status}");
    append(&late, "five\n");
    assert_eq!(next_line(&rx), "five");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(d.metric("hookcast_source_lines_total{source=\"logs/app\"}"), 5.0);
    assert_eq!(d.metric("hookcast_source_lines_total{source=\"logs/late\"}"), 1.0);
}
