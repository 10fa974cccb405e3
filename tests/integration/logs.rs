//! What the daemon tells its operator (issue 20): a log line per run start and end, per refused
//! delivery (with the rule or signature check that failed) and per unknown hook, in text and in
//! JSON (`log_format`); start-up errors naming what failed; the hooks a start loaded; and the
//! HTTP details a first `curl` meets (a POST without a body, reason phrases).

use crate::util::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Writes an executable `/bin/sh` script and returns its path.
fn script(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_string_lossy().into_owned()
}

/// Hooks that succeed, exit 3, die of SIGTERM, test a token, and check GitLab's token.
fn config(dir: &Path, log_format: &str) -> String {
    json!({
        "log_format": log_format,
        "hooks": [
            { "id": "ok", "execute-command": script(dir, "ok.sh", "exit 0\n") },
            { "id": "fails", "execute-command": script(dir, "fails.sh", "exit 3\n") },
            { "id": "killed", "execute-command": script(dir, "killed.sh", "kill -TERM $$\nsleep 5\n") },
            { "id": "ruled", "trigger-rule": { "match": { "type": "value", "value": "s3cret",
                "parameter": { "source": "header", "name": "X-Token" } } } },
            { "id": "gl", "provider": "gitlab", "secrets": ["tok"] },
        ]
    })
    .to_string()
}

/// Sends the deliveries every log test looks for.
fn deliver_all(d: &Daemon) {
    for hook in ["ok", "fails", "killed"] {
        assert_eq!(d.request("POST", &format!("/hooks/{hook}"), &[], b"").status, 200, "{hook}");
    }
    assert_eq!(d.request("POST", "/hooks/ruled", &[("X-Token", "guess")], b"").status, 200);
    let gl = [("X-Gitlab-Token", "tok"), ("X-Gitlab-Event", "Pipeline Hook"), ("Content-Type", "application/json")];
    assert_eq!(d.request("POST", "/hooks/gl", &gl, b"{}").status, 202);
    let bad = [("X-Gitlab-Token", "wrong"), ("X-Gitlab-Event", "Push Hook")];
    assert_eq!(d.request("POST", "/hooks/gl", &bad, b"{}").status, 403);
    assert_eq!(d.request("POST", "/hooks/no-such-hook", &[], b"").status, 404);
}

/// The log's lines that contain every one of `parts`.
fn lines_with(log: &str, parts: &[&str]) -> Vec<String> {
    log.lines().filter(|l| parts.iter().all(|p| l.contains(p))).map(str::to_string).collect()
}

#[test]
fn text_log_has_runs_refusals_and_unknown_hooks_with_quoted_values() {
    let dir = TempDir::new("log-text");
    let d = Daemon::start(&config(&dir.0, "text"));
    deliver_all(&d);
    let want: &[&[&str]] = &[
        &["INFO  run started hook=ok run=", " delivery=hc-", " pid="],
        &["INFO  run finished hook=ok run=", " result=succeeded exit_code=0 duration_ms="],
        &["WARN  run finished hook=fails run=", " result=failed exit_code=3 duration_ms="],
        &["WARN  run finished hook=killed run=", " result=failed signal=SIGTERM duration_ms="],
        &[
            "INFO  delivery hook=ruled source=127.0.0.1 delivery=hc-",
            " outcome=mismatch status=200 ",
            " reason=\"trigger rules were not satisfied (match value on header \\\"X-Token\\\" did not match)\"",
        ],
        &["INFO  delivery hook=gl source=127.0.0.1 event=\"Pipeline Hook\" delivery=", " outcome=accepted status=202"],
        &[
            "INFO  delivery hook=gl source=127.0.0.1 delivery=\"\" outcome=rejected status=403",
            " reason=\"signature does not match (provider \\\"gitlab\\\" signature check)\"",
        ],
        &["INFO  unknown hook hook=no-such-hook source=127.0.0.1 method=POST"],
        &["INFO  hooks loaded count=5 ids=ok,fails,killed,ruled,gl"],
    ];
    for parts in want {
        let found = eventually(WAIT, || !lines_with(&d.log_text(), parts).is_empty());
        assert!(found, "no line with {parts:?} in the log:\n{}", d.log_text());
    }
    // The secret a rule compares with, and the token sent, never reach the log.
    let log = d.log_text();
    assert!(!log.contains("s3cret") && !log.contains("guess"), "{log}");
}

#[test]
fn json_log_is_one_object_per_line_with_stable_keys() {
    let dir = TempDir::new("log-json");
    let d = Daemon::start(&config(&dir.0, "json"));
    deliver_all(&d);
    let records = || -> Vec<Value> {
        d.log_text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON object ({e}): {l}")))
            .collect()
    };
    let done = |r: &Value| r["msg"] == "run finished" && r["hook"] == "killed";
    // Every line looked for below, whatever order the runs end in.
    let all_in = || {
        let r = records();
        r.iter().any(done)
            && r.iter().any(|x| x["msg"] == "run finished" && x["hook"] == "fails")
            && r.iter().any(|x| x["msg"] == "run started" && x["hook"] == "ok")
    };
    assert!(eventually(WAIT, all_in), "{}", d.log_text());
    let all = records();
    // The first keys, in this order, on every line.
    for line in d.log_text().lines() {
        let ts = line.strip_prefix("{\"ts\":\"").unwrap_or_else(|| panic!("{line}"));
        let after = &ts[ts.find('"').unwrap()..];
        assert!(after.starts_with("\",\"level\":\"") && after.contains("\",\"msg\":\""), "{line}");
    }
    for r in &all {
        assert!(r["ts"].as_str().unwrap().ends_with('Z') && r["level"].is_string() && r["msg"].is_string(), "{r}");
    }
    let find = |f: &dyn Fn(&Value) -> bool| all.iter().find(|r| f(r)).cloned().unwrap_or_else(|| panic!("{all:#?}"));
    let failed = find(&|r| r["msg"] == "run finished" && r["hook"] == "fails");
    assert_eq!(
        (&failed["level"], &failed["result"], &failed["exit_code"]),
        (&json!("warn"), &json!("failed"), &json!(3))
    );
    assert!(failed["run"].is_u64() && failed["duration_ms"].is_u64(), "{failed}");
    assert!(failed["delivery"].as_str().unwrap().starts_with("hc-"), "{failed}");
    let killed = find(&|r| done(r));
    assert_eq!((&killed["signal"], killed.get("exit_code")), (&json!("SIGTERM"), None));
    let started = find(&|r| r["msg"] == "run started" && r["hook"] == "ok");
    assert!(started["pid"].is_u64() && started["run"].is_u64(), "{started}");
    let event = find(&|r| r["msg"] == "delivery" && r["hook"] == "gl" && r["outcome"] == "accepted");
    assert_eq!(
        (&event["event"], &event["status"], &event["level"]),
        (&json!("Pipeline Hook"), &json!("202"), &json!("info"))
    );
    assert!(event.get("reason").is_none() && event.get("request").is_none(), "absent fields are left out: {event}");
    let ruled = find(&|r| r["msg"] == "delivery" && r["hook"] == "ruled");
    assert_eq!(
        ruled["reason"], "trigger rules were not satisfied (match value on header \"X-Token\" did not match)",
        "{ruled}"
    );
    let unknown = find(&|r| r["msg"] == "unknown hook");
    assert_eq!((&unknown["hook"], &unknown["source"]), (&json!("no-such-hook"), &json!("127.0.0.1")));
}

#[test]
fn start_up_errors_name_the_state_dir_and_the_address() {
    let dir = TempDir::new("start-errors");
    let file = dir.0.join("a-file");
    std::fs::write(&file, "").unwrap();
    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        run_to_end(Path::new(BIN), &args, &[])
    };
    for state_dir in [file.clone(), file.join("below")] {
        let p = state_dir.to_str().unwrap();
        let (code, _, err) = serve(&["--state-dir", p]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(&format!("{p}/journal")) && !err.contains("cannot listen"), "{err}");
    }
    // A secret that cannot be read: its hook and file named.
    let config = dir.0.join("secret.json");
    let missing = dir.0.join("no-such-secret");
    let hooks = json!({ "hooks": [{ "id": "gh", "provider": "github", "secrets": [{ "file": missing }] }] });
    std::fs::write(&config, hooks.to_string()).unwrap();
    let (code, _, err) = serve(&["--config", config.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("hooks[\"gh\"].secrets") && err.contains(missing.to_str().unwrap()), "{err}");
    // An address in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) = run_to_end(Path::new(BIN), &["serve", "--listen", &addr], &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

#[test]
fn hooks_file_without_config_serves_its_hooks_only_and_names_them() {
    let dir = TempDir::new("hooks-only");
    let file = dir.0.join("hooks.json");
    let hooks = json!([{ "id": "first", "response-message": "one" }, { "id": "second", "response-message": "two" }]);
    std::fs::write(&file, hooks.to_string()).unwrap();
    let d = Daemon::start_args(None, &["--hooks", file.to_str().unwrap()]);
    assert!(d.log_text().contains("hooks loaded count=2 ids=first,second"), "{}", d.log_text());
    // The log is read by a thread: the line after the address may not be in yet.
    assert!(eventually(Duration::from_secs(5), || d.log_text().contains("(2 hooks)")), "{}", d.log_text());
    assert_eq!(d.request("POST", "/hooks/second", &[], b"").text(), "two");
    assert_eq!(d.request("POST", "/hooks/demo", &[], b"").status, 404, "no demo hook");
    assert_eq!(d.request("POST", "/publish/demo", &[], b"x").status, 401, "no open demo topic");
    // `serve` alone is as before: the demo hook and topic.
    let d = Daemon::start_default();
    assert!(d.log_text().contains("hooks loaded count=1 ids=demo"), "{}", d.log_text());
    assert_eq!(d.request("POST", "/publish/demo", &[], b"x").status, 202);
}

#[test]
fn listen_with_a_port_alone_is_every_interface() {
    let port = crate::util::redis::free_port().to_string();
    let dir = TempDir::new("listen-port");
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["serve", "--listen", &format!(":{port}")]);
    let d = Daemon::launch(cmd, dir);
    assert_eq!(d.addr.to_string(), format!("0.0.0.0:{port}"));
    assert!(d.log_text().contains("listening on every interface"), "{}", d.log_text());
    let mut s = std::net::TcpStream::connect(("127.0.0.1", d.addr.port())).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 200);
}

/// RFC 9112 §6.3: neither `Content-Length` nor `Transfer-Encoding` is a body of zero bytes, as
/// `curl -X POST URL` sends it; on a kept-alive connection the next request follows at once.
#[test]
fn post_without_body_or_length_is_an_empty_body() {
    let d = Daemon::start_default();
    let mut s = d.connect();
    s.write_all(b"POST /hooks/demo HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "delivered to topic demo\n"));
    s.write_all(b"POST /publish/demo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut s).unwrap().status, 202);
}

/// The status line of a raw request's response.
fn status_line(d: &Daemon, request: &str) -> String {
    let mut s = d.connect();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).lines().next().unwrap_or("").to_string()
}

#[test]
fn responses_carry_their_reason_phrase() {
    let d = Daemon::start(
        &json!({ "hooks": [{ "id": "made", "success-http-response-code": 201, "response-message": "made" }] })
            .to_string(),
    );
    let post = "POST /hooks/made HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    assert_eq!(status_line(&d, post), "HTTP/1.1 201 Created");
    let page = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    assert_eq!(status_line(&d, page), "HTTP/1.1 303 See Other");
    let missing = "GET /nowhere HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    assert_eq!(status_line(&d, missing), "HTTP/1.1 404 Not Found");
}
