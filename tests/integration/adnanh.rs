//! adnanh/webhook as a drop-in (issue 13, item 1): hooks files adnanh starts on start hookcast
//! too, and adnanh's command line runs hookcast.
//!
//! - `"value": 1` matches the request value `1` (adnanh's YAML layer makes it `"1"`), with a
//!   warning at start and in `check`;
//! - a status code Go does not know (999) is answered as 200, a field adnanh ignores is ignored,
//!   a field name in another case is read, a repeated id answers with the first, an XML hook
//!   answers 415, each with a warning;
//! - `request`/`remote-addr` is the TCP peer with its port;
//! - an adnanh-format hook's command inherits the daemon's environment (`MY_APP_ENV`), a
//!   `provider` hook's does not, `inherit-environment` switches both;
//! - `hookcast webhook -hooks … -hotreload …` (and the binary named `webhook`) serves with
//!   adnanh's flags and reloads a changed hooks file, keeping connections.

use crate::util::*;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const NOT_SATISFIED: &str = "Hook rules were not satisfied.";

fn write_hooks(dir: &Path, name: &str, hooks: &Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(hooks).unwrap()).unwrap();
    path
}

/// Runs the binary (or a link to it, as `webhook`) to completion: exit code, stdout, stderr.
fn run(program: &Path, args: &[&str]) -> (i32, String, String) {
    run_to_end(program, args, &[])
}

/// Starts `hookcast ARGS…` (no `serve` added) and waits for its address in the log.
fn start(args: &[&str], env: &[(&str, &str)]) -> Daemon {
    let mut cmd = Command::new(BIN);
    cmd.args(args).envs(env.iter().copied());
    Daemon::launch(cmd, TempDir::new("adnanh-cli"))
}

fn post_json(d: &Daemon, path: &str, body: &str) -> Resp {
    d.request("POST", path, &[("Content-Type", "application/json")], body.as_bytes())
}

#[test]
fn regression_adnanh_numeric_match_value_unknown_status_code_and_lenient_fields_start_as_in_adnanh() {
    let dir = TempDir::new("adnanh-coerce");
    let file = write_hooks(
        &dir.0,
        "hooks.json",
        &json!([{
            "id": "numbers",
            "description": "adnanh ignores fields it does not know",
            "Response-Message": "matched",
            "trigger-rule": {"and": [
                {"match": {"type": "value", "value": 1, "parameter": {"source": "payload", "name": "build.attempt"}}},
                {"match": {"type": "value", "value": true, "parameter": {"source": "payload", "name": "build.green"}}}
            ]},
            "trigger-rule-mismatch-http-response-code": 999
        },
        {"id": "numbers", "response-message": "the second of a repeated id: never answers"},
        {"id": "xml", "incoming-payload-content-type": "application/xml"}]),
    );
    let path = file.to_str().unwrap();
    let d = Daemon::start_args(None, &["--hooks", path]);
    // 1 and true in the request compare as adnanh's "1" and "true".
    let r = post_json(&d, "/hooks/numbers", r#"{"build":{"attempt":1,"green":true}}"#);
    assert_eq!((r.status, r.text().as_str()), (200, "matched"));
    // A mismatch answers 200, not the 999 Go has no status text for.
    let r = post_json(&d, "/hooks/numbers", r#"{"build":{"attempt":2,"green":true}}"#);
    assert_eq!((r.status, r.text().as_str()), (200, NOT_SATISFIED));
    // adnanh parses XML; hookcast starts, and answers that hook 415.
    let r = d.request("POST", "/hooks/xml", &[("Content-Type", "application/xml")], b"<a/>");
    assert_eq!(r.status, 415, "{}", r.text());
    let log = d.log_text();
    for want in [
        "WARN  hooks.json[0].trigger-rule.and[0].match.value: 1 is not a string; read as \"1\", as adnanh/webhook does",
        "WARN  hooks.json[0].trigger-rule.and[1].match.value: true is not a string; read as \"true\"",
        "WARN  hooks.json[0].trigger-rule-mismatch-http-response-code: 999 is not a status code adnanh/webhook knows: answered as 200",
        "WARN  hooks.json[0].description: unknown field, ignored as adnanh/webhook ignores it",
        "WARN  hooks.json[0].Response-Message: read as \"response-message\", as adnanh/webhook matches field names regardless of case",
        "WARN  hooks.json[1].id: duplicate hook id \"numbers\" (first at hooks.json[0].id): left out, as adnanh/webhook answers with the first",
        "WARN  hooks.json[2].incoming-payload-content-type: XML payloads (\"application/xml\") are not supported by hookcast: every request to this hook is answered 415",
    ] {
        assert!(log.contains(&want.replace("hooks.json", path)), "no {want:?} in the log:\n{log}");
    }
    // `check` accepts the file and says the same.
    let (code, out, err) = run(Path::new(BIN), &["check", "--hooks", path]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains(&format!("warning: {path}[0].trigger-rule.and[0].match.value: 1 is not a string")), "{err}");
    assert!(err.contains(&format!("warning: {path}[0].trigger-rule-mismatch-http-response-code: 999")), "{err}");
}

#[test]
fn regression_remote_addr_is_the_tcp_peer_with_its_port() {
    let dir = TempDir::new("adnanh-remote");
    let file = write_hooks(
        &dir.0,
        "hooks.json",
        &json!([{
            "id": "who",
            "execute-command": "/bin/echo",
            "include-command-output-in-response": true,
            "pass-arguments-to-command": [{"source": "request", "name": "remote-addr"}]
        }]),
    );
    let d = Daemon::start_args(None, &["--hooks", file.to_str().unwrap()]);
    let mut s = d.connect();
    let me = s.local_addr().unwrap();
    s.write_all(b"POST /hooks/who HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .unwrap();
    let r = read_response(&mut s).unwrap();
    assert_eq!((r.status, r.text().trim()), (200, me.to_string().as_str()), "adnanh: r.RemoteAddr");
    assert_ne!(me.port(), 0);
}

#[test]
fn regression_adnanh_hook_commands_inherit_the_daemons_environment() {
    let dir = TempDir::new("adnanh-env");
    let show = |id: &str| {
        json!({
            "id": id,
            "execute-command": "/bin/sh",
            "include-command-output-in-response": true,
            "pass-arguments-to-command": [
                {"source": "string", "name": "-c"},
                {"source": "string", "name": "echo app=${MY_APP_ENV:-unset} home=${HOME:-unset} secret=${HC_TEST_HMAC_SECRET:-unset} notify=${NOTIFY_SOCKET:-unset}"}
            ]
        })
    };
    let mut explicit = show("adnanh-explicit");
    explicit["inherit-environment"] = json!(false);
    let mut signed = show("signed");
    signed["trigger-rule"] = json!({"match": {"type": "payload-hmac-sha256", "secret": {"env": "HC_TEST_HMAC_SECRET"},
                                              "parameter": {"source": "header", "name": "X-Signature"}}});
    let mut provider = show("provider");
    provider["provider"] = json!("gitlab");
    provider["secrets"] = json!(["gl-token"]);
    let mut provider_inherit = show("provider-inherit");
    provider_inherit["provider"] = json!("gitlab");
    provider_inherit["secrets"] = json!(["gl-token"]);
    provider_inherit["inherit-environment"] = json!(true);
    let file =
        write_hooks(&dir.0, "hooks.json", &json!([show("adnanh"), explicit, signed, provider, provider_inherit]));
    let d = Daemon::start_env(
        None,
        &["--hooks", file.to_str().unwrap()],
        &[
            ("MY_APP_ENV", "production"),
            ("HOME", "/home/deploy"),
            ("HC_TEST_HMAC_SECRET", "k"),
            ("NOTIFY_SOCKET", "/nonexistent/hookcast-test-notify"),
        ],
    );
    let gitlab =
        [("Content-Type", "application/json"), ("X-Gitlab-Token", "gl-token"), ("X-Gitlab-Event", "Push Hook")];
    for (hook, headers, want) in [
        // adnanh: os.Environ() plus the hook's variables; a variable hookcast reads a secret from,
        // and systemd's variables addressed to the daemon, stay with the daemon.
        ("adnanh", &[][..], "app=production home=/home/deploy secret=unset notify=unset"),
        ("adnanh-explicit", &[][..], "app=unset home=/home/deploy secret=unset notify=unset"),
        ("provider", &gitlab[..], "app=unset home=/home/deploy secret=unset notify=unset"),
        ("provider-inherit", &gitlab[..], "app=production home=/home/deploy secret=unset notify=unset"),
    ] {
        let r = d.request("POST", &format!("/hooks/{hook}"), headers, b"{}");
        assert_eq!((r.status, r.text().trim()), (200, want), "{hook}");
    }
}

#[test]
fn webhook_command_line_serves_with_adnanhs_flags_and_hot_reloads() {
    let dir = TempDir::new("adnanh-flags");
    let first = |message: &str| {
        json!([{"id": "deploy", "response-message": message,
                "response-headers": [{"name": "X-Hook", "value": "deploy"}]}])
    };
    let main = write_hooks(&dir.0, "hooks.json", &first("version one"));
    let more = write_hooks(
        &dir.0,
        "more.json",
        &json!([{"id": "other", "http-methods": ["PUT"], "response-message": "{{ .Not }} a template"}]),
    );
    let d = start(
        &[
            "webhook",
            "-hooks",
            main.to_str().unwrap(),
            &format!("--hooks={}", more.display()),
            "-verbose",
            "-ip",
            "127.0.0.1",
            "-port",
            "0",
            "-hotreload",
            "-urlprefix",
            "hooks",
            "-http-methods",
            "post",
            "-header",
            "X-Served-By=hookcast",
            "-header=X-Hook=from-flag",
            "-x-request-id",
            "-x-request-id-limit",
            "6",
            "-nopanic",
        ],
        &[],
    );
    assert_eq!(d.addr.ip().to_string(), "127.0.0.1", "-ip and -port");
    // -http-methods applies to hooks that list none; -header to every answer, under the hook's
    // own response-headers.
    let r = d.request("POST", "/hooks/deploy", &[("X-Request-Id", "req-123456789")], b"");
    assert_eq!((r.status, r.text().as_str()), (200, "version one"));
    assert_eq!((r.header("X-Served-By"), r.header("X-Hook")), (Some("hookcast"), Some("deploy")));
    assert_eq!(d.request("GET", "/hooks/deploy", &[], b"").status, 405);
    let r = d.request("PUT", "/hooks/other", &[], b"x");
    // Without -template, adnanh reads "{{" as text.
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "{{ .Not }} a template"),
        "the second -hooks file, its own methods"
    );
    assert!(
        d.log_text().contains("more.json: line 7: \"{{\" read as text, as adnanh/webhook does without -template"),
        "{}",
        d.log_text()
    );
    assert_eq!(d.request("POST", "/hooks/other", &[], b"").status, 405);
    assert!(
        eventually(Duration::from_secs(5), || d
            .log_text()
            .contains("delivery hook=deploy source=127.0.0.1 request=\"req-12\"")),
        "-x-request-id logs the request's id, cut at -x-request-id-limit:\n{}",
        d.log_text()
    );
    // The demo hook and open topics of `serve`'s default are not there.
    assert_eq!(d.request("POST", "/hooks/demo", &[], b"").status, 404);

    // A keep-alive connection opened before the reload is still served after it.
    let mut kept = d.connect();
    let ask = b"POST /hooks/deploy HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n";
    kept.write_all(ask).unwrap();
    assert_eq!(read_response(&mut kept).unwrap().text(), "version one");

    // A broken edit is refused and the running hooks stay; the next good one is taken.
    std::fs::write(&main, "[{\"id\": ").unwrap();
    assert!(
        eventually(Duration::from_secs(10), || d.log_text().contains("hot reload: configuration refused")),
        "{}",
        d.log_text()
    );
    assert_eq!(d.request("POST", "/hooks/deploy", &[], b"").text(), "version one");
    write_hooks(&dir.0, "hooks.json", &first("version two"));
    assert!(
        eventually(Duration::from_secs(10), || d.request("POST", "/hooks/deploy", &[], b"").text() == "version two"),
        "the changed hooks file was not reloaded:\n{}",
        d.log_text()
    );
    kept.write_all(ask).unwrap();
    assert_eq!(read_response(&mut kept).unwrap().text(), "version two");
}

#[test]
fn webhook_command_line_refuses_what_hookcast_does_not_do_and_answers_to_the_name_webhook() {
    for (args, want) in [
        (&["webhook", "-template"][..], "-template is not supported: hookcast does not run Go templates"),
        (
            &["webhook", "-secure", "-cert", "c.pem", "-key", "k.pem"],
            "-secure is not supported: hookcast serves plain HTTP only",
        ),
        (&["webhook", "-setuid", "1000", "-setgid", "1000"], "-setuid is not supported: run the unit as that user"),
        (&["webhook", "-urlprefix", "api"], "-urlprefix \"api\" is not supported"),
        (&["webhook", "-socket", "/run/webhook.sock"], "-socket is not supported"),
        (&["webhook", "-no-such-flag"], "flag provided but not defined: -no-such-flag"),
    ] {
        let (code, out, err) = run(Path::new(BIN), args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    // Started as `webhook` (a link in place of adnanh's binary), hookcast reads adnanh's flags.
    let dir = TempDir::new("adnanh-argv0");
    let link = dir.0.join("webhook");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let (code, out, err) = run(&link, &["-version"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("hookcast ") && out.contains("adnanh/webhook"), "{out}");
    let (code, _, err) = run(&link, &["-hooks", "/nonexistent/hooks.json", "-port", "0"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/hooks.json: cannot read"), "{err}");
}

#[test]
fn sigusr1_reloads_as_in_adnanh() {
    let dir = TempDir::new("adnanh-usr1");
    let hooks = |m: &str| json!([{"id": "h", "response-message": m}]);
    let file = write_hooks(&dir.0, "hooks.json", &hooks("before"));
    let d = Daemon::start_args(None, &["--hooks", file.to_str().unwrap()]);
    assert_eq!(d.request("POST", "/hooks/h", &[], b"").text(), "before");
    write_hooks(&dir.0, "hooks.json", &hooks("after"));
    signal(&d.child, "USR1");
    assert!(
        eventually(Duration::from_secs(10), || d.log_text().contains("SIGUSR1: configuration reloaded")),
        "{}",
        d.log_text()
    );
    assert_eq!(d.request("POST", "/hooks/h", &[], b"").text(), "after");
}
