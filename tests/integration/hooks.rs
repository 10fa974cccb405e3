//! Webhook intake end to end (issue 4): the real daemon with hooks, talked to over HTTP.
//!
//! - Live deliveries signed by the providers' own SDKs (`tests/sdk/sign.py`, at the current
//!   time), with realistic bodies from `tests/fixtures/providers/`: receipt, summary on the hook's
//!   topic and on `$deliveries`, metrics, secret rotation.
//! - adnanh/webhook compatibility: `tests/fixtures/adnanh/hooks.json` with its commands replaced
//!   by a script that prints what reached it, loaded with `serve --hooks FILE`; every rule type,
//!   parameter source and body kind, with adnanh's status codes and bodies; `hookcast check`.
//! - Hostile input: each gets a clear 4xx and nothing is triggered (no run, no accepted event).
//!
//! The SDKs must be installed (`scripts/test.sh` does it); without them these tests fail and
//! say how to install them, they never skip.

use crate::util::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

const SDK_HINT: &str = "the providers' SDKs are needed for these tests: run scripts/test.sh (it makes the venv \
    tests/.venv), or see tests/sdk/README.md";

/// The Python that has the providers' SDKs: `$HOOKCAST_TEST_PYTHON` (scripts/test.sh sets it), else
/// the test venv scripts/test.sh makes, else `python3` (whose missing SDKs then fail loudly).
fn python() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("HOOKCAST_TEST_PYTHON") {
        return p.into();
    }
    let venv = Path::new(ROOT).join("tests/.venv/bin/python3");
    if venv.exists() {
        venv
    } else {
        "python3".into()
    }
}

/// adnanh/webhook's answer when the trigger rule is false.
const NOT_SATISFIED: &str = "Hook rules were not satisfied.";

// ------------------------------------------------------------------------------------------
// Signing with the SDKs

/// One request to `tests/sdk/sign.py PROVIDER SECRET BODYFILE ARGS…`.
struct Sign<'a> {
    provider: &'a str,
    secret: &'a str,
    body: &'a [u8],
    args: Vec<String>,
}

impl<'a> Sign<'a> {
    fn new(provider: &'a str, secret: &'a str, body: &'a [u8]) -> Sign<'a> {
        Sign { provider, secret, body, args: Vec::new() }
    }

    fn arg(mut self, name: &str, value: impl ToString) -> Sign<'a> {
        self.args.push(name.to_string());
        self.args.push(value.to_string());
        self
    }
}

type Headers = Vec<(String, String)>;

/// Runs every signing request at once (each is a Python, sometimes a Node, process) and
/// returns the header fields each printed, in order.
fn sign_all(reqs: &[Sign]) -> Vec<Headers> {
    let dir = TempDir::new("sign");
    let script = Path::new(ROOT).join("tests/sdk/sign.py");
    let children: Vec<_> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let body = dir.0.join(format!("body-{i}"));
            std::fs::write(&body, r.body).unwrap();
            let child = Command::new(python())
                .arg(&script)
                .arg(r.provider)
                .arg(r.secret)
                .arg(&body)
                .args(&r.args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run python3: {e}\n{SDK_HINT}"));
            (r.provider, child)
        })
        .collect();
    children
        .into_iter()
        .map(|(provider, child)| {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "tests/sdk/sign.py {provider} failed ({}):\n{}\n{SDK_HINT}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            let v: Value = serde_json::from_slice(&out.stdout).expect("sign.py prints a JSON object");
            v.as_object()
                .expect("sign.py prints a JSON object")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("header values are strings").to_string()))
                .collect()
        })
        .collect()
}

fn sign(r: Sign) -> Headers {
    sign_all(&[r]).pop().unwrap()
}

/// The hex HMAC-SHA256 of arbitrary bytes, from Python's hmac module (sign.py signs UTF-8 text
/// only, as the SDKs do).
fn py_hmac_sha256(secret: &str, body: &[u8]) -> String {
    let dir = TempDir::new("pyhmac");
    let f = dir.0.join("body");
    std::fs::write(&f, body).unwrap();
    let out = Command::new(python())
        .args(["-c", "import hashlib, hmac, sys; print(hmac.new(sys.argv[1].encode(), open(sys.argv[2], 'rb').read(), hashlib.sha256).hexdigest())"])
        .arg(secret)
        .arg(&f)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3: {e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

// ------------------------------------------------------------------------------------------
// Requests, events, runs

fn fixture(name: &str) -> Value {
    let p = Path::new(ROOT).join("tests/fixtures/providers").join(format!("{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn fixture_body(name: &str) -> String {
    fixture(name)["body"].as_str().unwrap().to_string()
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// `signed` with the fields of `extra` added, replacing same-named ones.
fn merge(signed: &[(String, String)], extra: &[(&str, &str)]) -> Headers {
    let mut out: Headers =
        signed.iter().filter(|(k, _)| !extra.iter().any(|(e, _)| e.eq_ignore_ascii_case(k))).cloned().collect();
    out.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    out
}

/// A POST with these header fields (and Content-Length) on a new connection.
fn post(d: &Daemon, path: &str, headers: &[(String, String)], body: &[u8]) -> Resp {
    let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    d.request("POST", path, &h, body)
}

fn post_with(d: &Daemon, path: &str, signed: &[(String, String)], extra: &[(&str, &str)], body: &[u8]) -> Resp {
    post(d, path, &merge(signed, extra), body)
}

/// A request head and then exactly `bytes`, on a new connection; the response.
fn raw_post(d: &Daemon, path: &str, headers: &[(&str, &str)], content_length: usize, bytes: &[u8]) -> Resp {
    let mut req = format!("POST {path} HTTP/1.1\r\nHost: test\r\nContent-Length: {content_length}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut s = d.connect();
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(bytes).unwrap();
    read_response(&mut s).expect("a response")
}

/// An SSE stream in the JSON envelope format, read event by event.
struct Events {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Events {
    fn open(d: &Daemon, topics: &str) -> Events {
        let (s, head) = sse(d, &format!("/events?topics={topics}&format=json"), &[]);
        assert!(head.starts_with("HTTP/1.1 200"), "subscribing to {topics}: {head}");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Events { s, buf: Vec::new() }
    }

    /// The next event's envelope (`{"id","topic","event","time","data"}`); panics when none
    /// arrives within the socket's timeout.
    fn next(&mut self) -> Value {
        for _ in 0..10_000 {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                let text = String::from_utf8(block).unwrap();
                let data: Vec<&str> = text
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|l| l.strip_prefix(' ').unwrap_or(l))
                    .collect();
                if !data.is_empty() {
                    return serde_json::from_str(&data.join("\n")).unwrap();
                }
                continue;
            }
            let mut chunk = [0u8; 16384];
            match self.s.read(&mut chunk) {
                Ok(0) => panic!("event stream closed; pending {:?}", String::from_utf8_lossy(&self.buf)),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("no event in time ({e}); pending {:?}", String::from_utf8_lossy(&self.buf)),
            }
        }
        panic!("no event after 10 000 reads")
    }

    /// Asserts that no event arrives within `wait`.
    fn assert_quiet(&mut self, wait: Duration) {
        assert!(!String::from_utf8_lossy(&self.buf).contains("data:"), "unexpected event: {:?}", self.buf);
        self.s.set_read_timeout(Some(wait)).unwrap();
        let mut chunk = [0u8; 16384];
        let t0 = Instant::now();
        while t0.elapsed() < wait {
            match self.s.read(&mut chunk) {
                Ok(0) => panic!("event stream closed"),
                Ok(n) => {
                    let got = String::from_utf8_lossy(&chunk[..n]).into_owned();
                    assert!(!got.contains("data:"), "unexpected event: {got}");
                }
                Err(_) => break,
            }
        }
        self.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    }
}

/// `hookcast_deliveries_total{hook=…,outcome=…}`.
fn deliveries(d: &Daemon, hook: &str, outcome: &str) -> f64 {
    d.metric(&format!("hookcast_deliveries_total{{hook=\"{hook}\",outcome=\"{outcome}\"}}"))
}

/// `hookcast_signature_failures_total{hook=…,reason=…}`.
fn signature_failures(d: &Daemon, hook: &str, reason: &str) -> f64 {
    d.metric(&format!("hookcast_signature_failures_total{{hook=\"{hook}\",reason=\"{reason}\"}}"))
}

/// `GET /api/runs`: recent runs, newest first.
fn runs(d: &Daemon) -> Vec<Value> {
    let r = d.get("/api/runs");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["runs"].as_array().unwrap().clone()
}

/// Waits for `count` runs to exist and be over; returns them with their logs, oldest first.
fn finished_runs(d: &Daemon, count: usize) -> Vec<Value> {
    let over = |r: &Value| !matches!(r["state"].as_str(), Some("queued" | "running"));
    assert!(
        eventually(Duration::from_secs(5), || {
            let rs = runs(d);
            rs.len() == count && rs.iter().all(over)
        }),
        "expected {count} finished runs, have {:?}",
        runs(d)
    );
    let mut rs = runs(d);
    rs.reverse();
    rs.iter().map(|r| d.get(&format!("/api/runs/{}", r["id"])).json()).collect()
}

/// The lines a run printed (stdout and stderr).
fn log_lines(run: &Value) -> Vec<String> {
    run["log"].as_array().unwrap().iter().map(|l| l["line"].as_str().unwrap().to_string()).collect()
}

/// Nothing ran and nothing was accepted on this daemon.
fn assert_nothing_triggered(d: &Daemon, hooks: &[&str]) {
    assert_eq!(runs(d), Vec::<Value>::new(), "no run may start");
    for h in hooks {
        assert_eq!(deliveries(d, h, "accepted"), 0.0, "hook {h} accepted a delivery");
    }
}

/// Subscriptions the tests need without a token: hook topics and the system topics.
const OPEN_TOPICS: &str = r#"{"topics": ["hooks/**", "$deliveries", "$runs", "$runs/**"], "scopes": ["subscribe"]}"#;

// ------------------------------------------------------------------------------------------
// 1. Live deliveries signed by the providers' SDKs

/// How a provider tells its delivery id.
#[derive(Clone, Copy)]
enum Id {
    /// A header; the test passes it to sign.py with `--id`.
    Given,
    /// Inside the body (Stripe's event id, Slack's `event_id`).
    Body(&'static str),
    /// Not at all: hookcast makes one up (`hc-…`).
    MadeUp,
}

struct Live {
    /// sign.py's provider name, and the hook's `provider`.
    provider: &'static str,
    fixture: &'static str,
    /// The hook's two secrets (a rotation: old, new).
    secrets: [&'static str; 2],
    event: Option<&'static str>,
    id: Id,
    /// JSON pointers into the summary and the values expected there.
    summary: &'static [(&'static str, &'static str)],
}

const LIVE: &[Live] = &[
    Live {
        provider: "github",
        fixture: "github-push",
        secrets: ["gh old secret", "gh new secret"],
        event: Some("push"),
        id: Id::Given,
        summary: &[
            ("/repo", "Codertocat/Hello-World"),
            ("/ref", "refs/heads/master"),
            ("/branch", "master"),
            ("/sender", "Codertocat"),
            ("/head_commit/id", "6113728f27ae82c7b1a177c8d03f9e96e0adf246"),
        ],
    },
    Live {
        provider: "gitlab",
        fixture: "gitlab-push",
        secrets: ["glpat-old-token", "glpat-new-token"],
        event: Some("Push Hook"),
        id: Id::Given,
        summary: &[("/repo", "mike/diaspora"), ("/branch", "master"), ("/sender", "jsmith")],
    },
    Live {
        provider: "gitea",
        fixture: "gitea-push",
        secrets: ["gitea old", "3gEsCfjlV2ugRwgpU#w1*WaW*wa4NXgGmpCfkbG3"],
        event: Some("push"),
        id: Id::Given,
        summary: &[
            ("/repo", "gitea/webhooks"),
            ("/branch", "develop"),
            ("/sender", "gitea"),
            ("/head_commit/id", "bffeb74224043ba2feb48d137756c8a9331c449a"),
        ],
    },
    Live {
        provider: "forgejo",
        fixture: "forgejo-push",
        secrets: ["forgejo old", "forgejo webhook secret"],
        event: Some("push"),
        id: Id::Given,
        summary: &[("/repo", "gitea/webhooks"), ("/branch", "develop"), ("/sender", "gitea")],
    },
    Live {
        provider: "bitbucket",
        fixture: "bitbucket-push",
        secrets: ["bitbucket old", "bitbucket-webhook-secret-8c1d"],
        event: Some("repo:push"),
        id: Id::Given,
        summary: &[("/repo", "team_name/repo_name"), ("/branch", "main"), ("/sender", "Ada Lovelace")],
    },
    Live {
        provider: "stripe",
        fixture: "stripe-payment-intent",
        secrets: ["whsec_oldSecretBeingRolled", "whsec_5WbX5kEWLlfzsGNjH64I8lOOqUB6e8FH"],
        event: Some("payment_intent.succeeded"),
        id: Id::Body("evt_3QmK2pLkdIwHu7ix0Xq9ZxYa"),
        summary: &[("/object/id", "pi_3QmK2pLkdIwHu7ix0T1ZqBcD"), ("/object/type", "payment_intent")],
    },
    Live {
        provider: "slack",
        fixture: "slack-event-callback",
        secrets: ["0ld5lack5igningSecret", "8f742231b10e8888abcd99yyyzzz85a5"],
        event: Some("app_mention"),
        id: Id::Body("Ev08MFMKH6"),
        summary: &[],
    },
    Live {
        provider: "standard-webhooks",
        fixture: "standard-webhooks-python",
        secrets: ["whsec_xsJ0eUb4jzUZUgFBkHi6yAq57vHqtUKf", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
        event: None,
        id: Id::Given,
        summary: &[],
    },
    Live {
        provider: "svix",
        fixture: "svix-headers",
        secrets: ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_plJ3nmyCDGBKInavdOK15jsl"],
        event: None,
        id: Id::Given,
        summary: &[],
    },
    Live {
        provider: "hmac",
        fixture: "hmac-sha512-base64",
        secrets: ["generic old secret", "generic sender secret"],
        event: None,
        id: Id::MadeUp,
        summary: &[],
    },
];

fn live_config() -> String {
    let hooks: Vec<Value> = LIVE
        .iter()
        .map(|l| json!({"id": format!("live-{}", l.provider), "provider": l.provider, "secrets": l.secrets}))
        .collect();
    format!(r#"{{"public": [{OPEN_TOPICS}], "hooks": {}}}"#, Value::Array(hooks))
}

/// Signs every provider's fixture body with secret `which` of its hook, sends it, and checks
/// the receipt, the summary on `hooks/live-{provider}`, the `$deliveries` record and the metric.
fn deliver_every_provider(which: usize) {
    let d = Daemon::start(&live_config());
    let mut events = Events::open(&d, "hooks/**,$deliveries");
    let bodies: Vec<String> = LIVE.iter().map(|l| fixture_body(l.fixture)).collect();
    let ids: Vec<String> = LIVE.iter().map(|l| format!("{}-delivery-{which}-{}", l.provider, now_unix())).collect();
    let reqs: Vec<Sign> = LIVE
        .iter()
        .zip(&bodies)
        .zip(&ids)
        .map(|((l, body), id)| {
            let s = Sign::new(l.provider, l.secrets[which], body.as_bytes());
            match l.id {
                Id::Given => s.arg("--id", id),
                _ => s,
            }
        })
        .collect();
    let signed = sign_all(&reqs);
    for ((l, body), (headers, id)) in LIVE.iter().zip(&bodies).zip(signed.iter().zip(&ids)) {
        let hook = format!("live-{}", l.provider);
        let r = post(&d, &format!("/hooks/{hook}"), headers, body.as_bytes());
        assert_eq!(r.status, 202, "{}: {}", l.provider, r.text());
        assert!(r.header("content-type").unwrap().starts_with("application/json"), "{:?}", r.headers);
        let receipt = r.json();
        let delivery = receipt["delivery"].as_str().unwrap_or_else(|| panic!("{}: {receipt}", l.provider)).to_string();
        match l.id {
            Id::Given => assert_eq!(&delivery, id, "{}", l.provider),
            Id::Body(want) => assert_eq!(delivery, want, "{}", l.provider),
            Id::MadeUp => assert!(delivery.starts_with("hc-"), "{}: {delivery}", l.provider),
        }
        assert_eq!(receipt["status"], "accepted", "{}", l.provider);
        assert_eq!(receipt["hook"], hook.as_str());
        assert_eq!(receipt["event"].as_str(), l.event, "{}", l.provider);

        // The summary on the hook's topic, then the record on $deliveries.
        let ev = events.next();
        assert_eq!(ev["topic"], format!("hooks/{hook}"), "{ev}");
        assert_eq!(ev["event"].as_str(), Some(l.event.unwrap_or("delivery")), "{ev}");
        let summary = &ev["data"];
        assert_eq!(summary["hook"], hook.as_str(), "{ev}");
        // `svix` is an alias; whether the summary says so or names the scheme is def.rs's choice.
        let named = summary["provider"].as_str();
        assert!(named == Some(l.provider) || (l.provider == "svix" && named == Some("standard-webhooks")), "{ev}");
        assert_eq!(summary["delivery"], delivery.as_str(), "{ev}");
        assert_eq!(summary["event"].as_str(), l.event, "{ev}");
        assert_eq!(summary["source"], "127.0.0.1", "{ev}");
        for (pointer, want) in l.summary {
            assert_eq!(summary.pointer(pointer).and_then(Value::as_str), Some(*want), "{pointer} in {ev}");
        }
        let rec = events.next();
        assert_eq!(rec["topic"], "$deliveries", "{rec}");
        let rec = &rec["data"];
        assert_eq!(
            (rec["hook"].as_str(), rec["delivery"].as_str(), rec["outcome"].as_str(), rec["status"].as_u64()),
            (Some(hook.as_str()), Some(delivery.as_str()), Some("accepted"), Some(202)),
            "{rec}"
        );
        assert_eq!(&rec["summary"], summary, "the record carries the same summary");
    }
    for l in LIVE {
        let hook = format!("live-{}", l.provider);
        assert_eq!(deliveries(&d, &hook, "accepted"), 1.0, "{hook}");
        assert_eq!(signature_failures(&d, &hook, "mismatch"), 0.0, "{hook}");
    }
}

#[test]
fn every_provider_accepts_a_delivery_signed_by_its_sdk() {
    deliver_every_provider(0);
}

#[test]
fn every_provider_accepts_the_second_secret_while_rotating() {
    deliver_every_provider(1);
}

#[test]
fn a_secret_the_hook_does_not_have_is_refused_by_every_provider() {
    let d = Daemon::start(&live_config());
    let bodies: Vec<String> = LIVE.iter().map(|l| fixture_body(l.fixture)).collect();
    // A third secret of the right shape for each scheme (Standard Webhooks keys are base64).
    let third = |l: &Live| {
        if l.secrets[0].starts_with("whsec_") {
            "whsec_dGhpcmQgc2VjcmV0IG5vdCBvbiB0aGUgaG9vaw=="
        } else {
            "a third secret"
        }
    };
    let reqs: Vec<Sign> =
        LIVE.iter().zip(&bodies).map(|(l, b)| Sign::new(l.provider, third(l), b.as_bytes())).collect();
    for ((l, body), headers) in LIVE.iter().zip(&bodies).zip(sign_all(&reqs)) {
        let hook = format!("live-{}", l.provider);
        let r = post(&d, &format!("/hooks/{hook}"), &headers, body.as_bytes());
        assert_eq!(r.status, 403, "{}: {}", l.provider, r.text());
        assert_eq!(r.json()["error"], "signature does not match", "{}", l.provider);
        assert_eq!(signature_failures(&d, &hook, "mismatch"), 1.0, "{hook}");
        assert_eq!(deliveries(&d, &hook, "rejected"), 1.0, "{hook}");
    }
    let hooks: Vec<String> = LIVE.iter().map(|l| format!("live-{}", l.provider)).collect();
    assert_nothing_triggered(&d, &hooks.iter().map(String::as_str).collect::<Vec<_>>());
}

/// hookcast's own fields on a provider hook: secrets from an env var and a file, `events`,
/// `branches`, `topic`, `publish` (`full`, `none`).
#[test]
fn provider_hook_filters_events_and_branches_and_publishes_where_told() {
    let dir = TempDir::new("ext");
    let secret_file = dir.0.join("site.secret");
    std::fs::write(&secret_file, "site new secret\n").unwrap();
    let config = json!({
        "public": [{"topics": ["deploys/**", "hooks/**", "$deliveries", "$runs"], "scopes": ["subscribe"]}],
        "hooks": [
            {"id": "site", "provider": "github", "secrets": [{"env": "SITE_OLD_SECRET"}, {"file": secret_file}],
             "events": ["push"], "branches": ["main"], "topic": "deploys/site", "publish": "full",
             "execute-command": "true"},
            {"id": "quiet", "provider": "github", "secrets": ["quiet secret"], "publish": "none"}
        ]
    });
    let d = Daemon::start_env(Some(&config.to_string()), &[], &[("SITE_OLD_SECRET", "site old secret")]);
    let mut events = Events::open(&d, "deploys/**,hooks/**,$deliveries");
    let master = fixture_body("github-push");
    let main = master.replace(r#""ref":"refs/heads/master""#, r#""ref":"refs/heads/main""#);
    let signed = sign_all(&[
        Sign::new("github", "site new secret", main.as_bytes()).arg("--id", "site-1"),
        Sign::new("github", "site old secret", main.as_bytes()).arg("--id", "site-2"),
        Sign::new("github", "site new secret", master.as_bytes()).arg("--id", "site-3"),
        Sign::new("github", "site new secret", main.as_bytes()).arg("--id", "site-4").arg("--event", "ping"),
        Sign::new("github", "quiet secret", main.as_bytes()).arg("--id", "quiet-1"),
    ]);
    for (i, id) in [(0, "site-1"), (1, "site-2")] {
        let r = post(&d, "/hooks/site", &signed[i], main.as_bytes());
        assert_eq!((r.status, r.json()["delivery"].as_str()), (202, Some(id)), "{}", r.text());
        let ev = events.next();
        assert_eq!((ev["topic"].as_str(), ev["event"].as_str()), (Some("deploys/site"), Some("push")), "{ev}");
        assert_eq!(ev["data"]["delivery"], id);
        assert_eq!(ev["data"]["branch"], "main");
        assert_eq!(ev["data"]["payload"], serde_json::from_str::<Value>(&main).unwrap(), "publish: full");
        assert_eq!(events.next()["data"]["outcome"], "accepted");
    }
    // Another branch, another event: verified, acknowledged, ignored.
    for (i, why) in [
        (2, r#"branch "master" is not one of this hook's branches"#),
        (3, r#"event "ping" is not one of this hook's events"#),
    ] {
        let body = if i == 2 { &master } else { &main };
        let r = post(&d, "/hooks/site", &signed[i], body.as_bytes());
        assert_eq!((r.status, r.json()["ignored"].as_str()), (202, Some(why)), "{}", r.text());
        let rec = events.next();
        assert_eq!(
            (rec["topic"].as_str(), rec["data"]["outcome"].as_str()),
            (Some("$deliveries"), Some("ignored")),
            "{rec}"
        );
    }
    // publish: none: only $deliveries hears of it.
    let r = post(&d, "/hooks/quiet", &signed[4], main.as_bytes());
    assert_eq!(r.status, 202, "{}", r.text());
    let rec = events.next();
    assert_eq!(
        (rec["topic"].as_str(), rec["data"]["delivery"].as_str()),
        (Some("$deliveries"), Some("quiet-1")),
        "{rec}"
    );
    events.assert_quiet(Duration::from_millis(200));
    assert_eq!(finished_runs(&d, 2).len(), 2);
    assert_eq!((deliveries(&d, "site", "accepted"), deliveries(&d, "site", "ignored")), (2.0, 2.0));
}

// ------------------------------------------------------------------------------------------
// 2. adnanh/webhook compatibility

/// The command of every compat hook: prints its arguments, working directory, environment and
/// the contents of the files passed by path (the runner names them `hookcast-run…`), so a test
/// reads exactly what reached it. With `fail` as its first argument it exits 3.
const SHOW_SH: &str = r#"#!/bin/sh
n=0
for a in "$@"; do
    n=$((n + 1))
    printf 'arg%s=%s\n' "$n" "$a"
done
printf 'argc=%s\n' "$#"
printf 'cwd=%s\n' "$(pwd)"
env | LC_ALL=C sort | sed 's/^/env /'
for name in $(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*\/hookcast-run[^/]*$/\1/p'); do
    eval "path=\$$name"
    printf 'file %s=' "$name"
    cat "$path"
    printf '\n'
done
if [ "${1:-}" = fail ]; then
    echo 'failing on purpose' >&2
    exit 3
fi
"#;

/// Secrets of the fixture's hooks: `{"env": "GITHUB_WEBHOOK_SECRET"}`, `{"file": …}` (moved into
/// the test's directory), `{"env": "DEPLOY_HMAC_OLD"}` and `{"credential": "deploy-hmac-new"}`.
const GH_SECRET: &str = "github deploy secret";
const FORM_SECRET: &str = "github form secret";
const OLD_KEY: &str = "deploy hmac old key";
const NEW_KEY: &str = "deploy hmac new key";

/// A daemon serving the adnanh fixture (plus a few hooks for what the fixture lacks) through
/// `serve --hooks FILE`, behind a trusted local proxy so that `CF-Connecting-IP` sets the
/// client address the `ip-whitelist` rules see.
struct Compat {
    d: Daemon,
    dir: TempDir,
}

impl Compat {
    fn path(&self) -> String {
        self.dir.0.display().to_string()
    }

    /// Files the runner wrote for `pass-file-to-command` and not yet removed.
    fn leftover_files(&self) -> usize {
        std::fs::read_dir(self.dir.0.join("run-files")).unwrap().count()
    }
}

/// Writes the script, the secrets and the hooks file into `dir`; returns the hooks file.
fn write_compat_hooks(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("show.sh");
    std::fs::write(&script, SHOW_SH).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    // A trailing line break, as `echo s > file` leaves: not part of the secret.
    std::fs::write(dir.join("github-form.secret"), format!("{FORM_SECRET}\n")).unwrap();
    std::fs::create_dir_all(dir.join("credentials")).unwrap();
    std::fs::write(dir.join("credentials/deploy-hmac-new"), NEW_KEY).unwrap();
    std::fs::create_dir_all(dir.join("run-files")).unwrap();

    let fixture = Path::new(ROOT).join("tests/fixtures/adnanh/hooks.json");
    let mut hooks: Value = serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
    let list = hooks.as_array_mut().unwrap();
    for h in list.iter_mut() {
        h["execute-command"] = json!(script);
        h["command-working-directory"] = json!(dir);
        if h["id"] != "github-deploy" {
            h["include-command-output-in-response"] = json!(true);
        }
    }
    let form = list.iter_mut().find(|h| h["id"] == "github-form").unwrap();
    let secret = form.pointer_mut("/trigger-rule/and/0/match/secret").unwrap();
    assert_eq!(secret["file"], "/etc/hookcast/github-form.secret", "the fixture changed");
    *secret = json!({"file": dir.join("github-form.secret")});
    list.extend([
        json!({
            "id": "array-root",
            "execute-command": script,
            "include-command-output-in-response": true,
            "pass-arguments-to-command": [
                {"source": "payload", "name": "root.0.id"},
                {"source": "payload", "name": "root.1.tags.1"},
                {"source": "payload", "name": "root.1.size"},
                {"source": "entire-payload"}
            ],
            "trigger-rule": {"match": {"type": "regex", "regex": "^build-[0-9]+$",
                                       "parameter": {"source": "payload", "name": "root.0.id"}}}
        }),
        json!({
            "id": "ping",
            "response-message": "pong",
            "success-http-response-code": 201,
            "response-headers": [{"name": "X-Pong", "value": "yes"}],
            "incoming-payload-content-type": "application/json",
            "trigger-rule": {"match": {"type": "value", "value": "hello",
                                       "parameter": {"source": "payload", "name": "greeting"}}}
        }),
        json!({
            "id": "fails-loudly",
            "execute-command": script,
            "pass-arguments-to-command": [{"source": "string", "name": "fail"}],
            "include-command-output-in-response": true,
            "include-command-output-in-response-on-error": true
        }),
        json!({
            "id": "fails-quietly",
            "execute-command": script,
            "pass-arguments-to-command": [{"source": "string", "name": "fail"}],
            "include-command-output-in-response": true
        }),
    ]);
    let path = dir.join("hooks.json");
    std::fs::write(&path, serde_json::to_string_pretty(&hooks).unwrap()).unwrap();
    path
}

/// The environment the compat hooks' secrets come from.
fn compat_env(dir: &Path) -> Vec<(String, String)> {
    vec![
        ("GITHUB_WEBHOOK_SECRET".into(), GH_SECRET.into()),
        ("DEPLOY_HMAC_OLD".into(), OLD_KEY.into()),
        ("CREDENTIALS_DIRECTORY".into(), dir.join("credentials").display().to_string()),
    ]
}

fn compat() -> Compat {
    let dir = TempDir::new("adnanh");
    let hooks = write_compat_hooks(&dir.0);
    let open: Value = serde_json::from_str(OPEN_TOPICS).unwrap();
    let config = json!({
        "public": [open],
        "trusted_proxies": ["127.0.0.0/8"],
        // The tests stand in for cloudflared, whose CF-Connecting-IP is believed only when said.
        "cf_connecting_ip": true,
        "runner": {"max_line_bytes": 65536, "temp_dir": dir.0.join("run-files")}
    });
    let env = compat_env(&dir.0);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let d = Daemon::start_env(Some(&config.to_string()), &["--hooks", hooks.to_str().unwrap()], &env);
    Compat { d, dir }
}

/// A response body's lines.
fn lines(r: &Resp) -> Vec<String> {
    r.text().lines().map(str::to_string).collect()
}

fn assert_has(lines: &[String], want: &str) {
    assert!(lines.iter().any(|l| l == want), "no line {want:?} in:\n{}", lines.join("\n"));
}

/// Go's `textproto.CanonicalMIMEHeaderKey`, written again here: `x-gitlab-event-uuid` →
/// `X-Gitlab-Event-Uuid`.
fn go_canonical(name: &str) -> String {
    name.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// `application/x-www-form-urlencoded` encoding of a value (every byte but the unreserved ones
/// as `%XX`, as GitHub's form deliveries do).
fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn adnanh_json_hook_signature_value_and_ip_rules() {
    let c = compat();
    let hook = "/hooks/github-deploy";
    let body = fixture_body("github-push").replace(r#""ref":"refs/heads/master""#, r#""ref":"refs/heads/main""#);
    assert!(body.contains(r#""ref":"refs/heads/main""#));
    let dev = body.replace(r#""ref":"refs/heads/main""#, r#""ref":"refs/heads/dev""#);
    let signed = sign_all(&[
        Sign::new("github", GH_SECRET, body.as_bytes()).arg("--id", "deploy-0001"),
        Sign::new("github", GH_SECRET, dev.as_bytes()).arg("--id", "deploy-0002"),
        Sign::new("github", "not the deploy secret", body.as_bytes()).arg("--id", "deploy-0003"),
    ]);
    let from_github = [("CF-Connecting-IP", "140.82.115.3")];

    // Signed, on main, from GitHub's network: the hook's status, message and headers.
    let r = post_with(&c.d, hook, &signed[0], &from_github, body.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (202, "Deploying."));
    assert_eq!(r.header("X-Deployer"), Some("hookcast"));
    assert!(r.header("Content-Type").unwrap().starts_with("text/plain"));
    // What reached the command: payload paths with a list index, method, address, a header, a
    // payload value in the environment, the entire payload in a file.
    let run = &finished_runs(&c.d, 1)[0];
    assert_eq!(run["state"], "succeeded", "{run}");
    let log = log_lines(run);
    for want in [
        "arg1=6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "arg2=Codertocat",
        "arg3=6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        "arg4=POST",
        "arg5=140.82.115.3:0",
        "argc=5",
        &format!("cwd={}", c.path()),
        "env DELIVERY=deploy-0001",
        "env REPO=Codertocat/Hello-World",
    ] {
        assert_has(&log, want);
    }
    let file = log.iter().find_map(|l| l.strip_prefix("file PAYLOAD_FILE=")).expect("the payload file");
    assert_eq!(serde_json::from_str::<Value>(file).unwrap(), serde_json::from_str::<Value>(&body).unwrap());
    assert!(file.starts_with(r#"{"after":"#), "keys sorted as Go's json.Marshal: {}", &file[..40]);
    assert!(!log.iter().any(|l| l.contains(GH_SECRET) || l.contains("GITHUB_WEBHOOK_SECRET")), "{log:?}");
    assert_eq!(c.leftover_files(), 0, "the payload file is removed after the run");

    // Mismatches answer the configured 400 with adnanh's text: another branch, another
    // address, no signature at all (a missing value is a plain mismatch in adnanh).
    let r = post_with(&c.d, hook, &signed[1], &from_github, dev.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (400, NOT_SATISFIED));
    let r = post(&c.d, hook, &signed[0], body.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (400, NOT_SATISFIED), "127.0.0.1 is not GitHub");
    let unsigned: Headers = signed[0].iter().filter(|(k, _)| !k.starts_with("X-Hub-Signature")).cloned().collect();
    let r = post_with(&c.d, hook, &unsigned, &from_github, body.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (400, NOT_SATISFIED));
    // A wrong signature: 403 (adnanh: 500), see docs/migrating-from-webhook.md.
    let r = post_with(&c.d, hook, &signed[2], &from_github, body.as_bytes());
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"], "invalid payload signature");
    // http-methods: POST only.
    let r = c.d.request("GET", hook, &[], b"");
    assert_eq!((r.status, r.text().as_str(), r.header("Allow")), (405, "", Some("POST")));
    let r = c.d.request("PUT", hook, &[("Content-Type", "application/json")], body.as_bytes());
    assert_eq!(r.status, 405);

    assert_eq!(runs(&c.d).len(), 1, "only the first request ran the command");
    assert_eq!(deliveries(&c.d, "github-deploy", "accepted"), 1.0);
    assert_eq!(deliveries(&c.d, "github-deploy", "mismatch"), 3.0);
    assert_eq!(deliveries(&c.d, "github-deploy", "rejected"), 3.0);
    assert_eq!(signature_failures(&c.d, "github-deploy", "mismatch"), 1.0);
}

#[test]
fn adnanh_header_token_hook_with_entire_headers() {
    let c = compat();
    let hook = "/hooks/gitlab-token";
    let body = fixture_body("gitlab-push");
    let both = sign_all(&[
        Sign::new("gitlab", "gl-token", body.as_bytes()).arg("--id", "gl-0001"),
        Sign::new("gitlab", "gl-token", body.as_bytes()).arg("--id", "gl-0002"),
    ]);
    let signed = &both[0];
    let r = post(&c.d, hook, signed, body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let out = lines(&r);
    // entire-headers: every header (Host aside) under Go's canonical name, keys sorted.
    let mut sent: BTreeMap<String, String> =
        signed.iter().map(|(k, v)| (go_canonical(k), v.clone())).collect::<BTreeMap<_, _>>();
    sent.insert("Connection".into(), "close".into());
    sent.insert("Content-Length".into(), body.len().to_string());
    assert_has(&out, &format!("env GITLAB_HEADERS={}", serde_json::to_string(&sent).unwrap()));
    assert!(sent.contains_key("X-Gitlab-Event-Uuid"));
    // A payload value without envname: HOOK_ and the name as written.
    assert_has(&out, "env HOOK_checkout_sha=da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
    assert_has(&out, "argc=0");

    // GitLab retries with the same X-Gitlab-Event-UUID: acknowledged, not run again (hookcast's
    // idempotency, also for hooks in adnanh's format).
    let r = post(&c.d, hook, signed, body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"duplicate": true, "delivery": "gl-0001", "hook": "gitlab-token"}));
    // Header names are case-insensitive, as in Go.
    let lower: Headers = both[1].iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
    let r = post(&c.d, hook, &lower, body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_has(&lines(&r), "env HOOK_checkout_sha=da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
    // Wrong token, or no event header: the configured 403 with adnanh's text, even with the id
    // of a delivery that was accepted (the id is only trusted once the rule holds).
    let r = post_with(&c.d, hook, signed, &[("X-Gitlab-Token", "gl-token2")], body.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (403, NOT_SATISFIED));
    let no_event: Headers = signed.iter().filter(|(k, _)| k != "X-Gitlab-Event").cloned().collect();
    let r = post(&c.d, hook, &no_event, body.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (403, NOT_SATISFIED));
    assert_eq!(finished_runs(&c.d, 2).len(), 2);
}

#[test]
fn adnanh_github_form_delivery_with_parse_parameters_as_json() {
    let c = compat();
    let hook = "/hooks/github-form";
    let json_for = |git_ref: &str| fixture_body("github-push").replace("refs/heads/master", git_ref);
    let form = |json: &str| format!("payload={}", form_encode(json));
    let release = form(&json_for("refs/heads/release/1.2"));
    let feature = form(&json_for("refs/heads/feature"));
    let not_json = "payload=not%20json".to_string();
    let signed = sign_all(&[
        Sign::new("github-sha1", FORM_SECRET, release.as_bytes()),
        Sign::new("github-sha1", FORM_SECRET, feature.as_bytes()),
        Sign::new("github-sha1", "wrong", release.as_bytes()),
        Sign::new("github-sha1", FORM_SECRET, not_json.as_bytes()),
    ]);
    let form_ct = [("Content-Type", "application/x-www-form-urlencoded")];

    let r = post_with(&c.d, hook, &signed[0], &form_ct, release.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let out = lines(&r);
    assert_has(&out, "arg1=Codertocat/Hello-World");
    assert_has(&out, &format!("arg2={release}"));
    assert_has(&out, "argc=2");

    // The regex on payload.payload.ref does not match: adnanh's default 200 mismatch.
    let r = post_with(&c.d, hook, &signed[1], &form_ct, feature.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, NOT_SATISFIED));
    // Unsigned: a mismatch; wrongly signed: 403.
    let unsigned: Headers = signed[0].iter().filter(|(k, _)| k != "X-Hub-Signature").cloned().collect();
    let r = post_with(&c.d, hook, &unsigned, &form_ct, release.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, NOT_SATISFIED));
    let r = post_with(&c.d, hook, &signed[2], &form_ct, release.as_bytes());
    assert_eq!(r.status, 403, "{}", r.text());
    // A value named in parse-parameters-as-json that is not JSON: 400 (adnanh runs the hook).
    let r = post_with(&c.d, hook, &signed[3], &form_ct, not_json.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(finished_runs(&c.d, 1).len(), 1);
}

#[test]
fn adnanh_multipart_upload_with_query_and_file_arguments() {
    let c = compat();
    let body = |status: &str| {
        format!(
            "--XyZ\r\nContent-Disposition: form-data; name=\"meta\"; filename=\"meta.json\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n{{\"status\":\"{status}\",\"branch\":\"main\"}}\r\n\
             --XyZ\r\nContent-Disposition: form-data; name=\"artifact\"\r\n\r\nAAFiaW5hcnn/\r\n--XyZ--\r\n"
        )
    };
    let ct = ("Content-Type", "multipart/form-data; boundary=XyZ");
    let lan = ("CF-Connecting-IP", "10.1.2.3");
    let path = "/hooks/ci-artifact?token=ci-token&build=42";

    let r = c.d.request("PUT", path, &[ct, lan], body("success").as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let out = lines(&r);
    assert_has(&out, "arg1=42");
    assert_has(&out, r#"env CI_QUERY={"build":"42","token":"ci-token"}"#);
    // The base64 field, decoded into a file byte for byte.
    assert!(
        r.body.windows(24).any(|w| w == b"file ARTIFACT=\x00\x01binary\xff\n"),
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    let r = c.d.request("POST", path, &[ct, lan], body("success").as_bytes());
    assert_eq!(r.status, 200, "POST is listed too");

    // Mismatches: a JSON file part's value, the query token, the address.
    let r = c.d.request("POST", path, &[ct, lan], body("failed").as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, NOT_SATISFIED));
    let r = c.d.request("POST", "/hooks/ci-artifact?token=nope&build=42", &[ct, lan], body("success").as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, NOT_SATISFIED));
    let r = c.d.request("POST", path, &[ct], body("success").as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, NOT_SATISFIED));
    // Methods not listed, and a multipart body without its closing delimiter.
    let r = c.d.request("GET", path, &[lan], b"");
    assert_eq!((r.status, r.header("Allow")), (405, Some("POST, PUT")));
    let r = c.d.request("DELETE", path, &[lan], b"");
    assert_eq!(r.status, 405);
    let cut = body("success");
    let r = c.d.request("POST", path, &[ct, lan], &cut.as_bytes()[..cut.len() - 9]);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(finished_runs(&c.d, 2).len(), 2);
    assert_eq!(c.leftover_files(), 0);
}

#[test]
fn adnanh_or_not_rules_with_soft_signature_failures() {
    let c = compat();
    let hook = "/hooks/manual-or-tag";
    let tag = r#"{"ref":"refs/tags/v1.2.3","draft":"false","release":{"name":"v1.2.3 <stable>"}}"#;
    let draft = r#"{"ref":"refs/tags/v1.2.4","draft":"true"}"#;
    let sha512 = |key: &'static str, body: &'static str| {
        Sign::new("hmac", key, body.as_bytes())
            .arg("--header", "X-Signature")
            .arg("--algorithm", "sha512")
            .arg("--prefix", "sha512=")
    };
    let signed = sign_all(&[sha512(NEW_KEY, tag), sha512(OLD_KEY, tag), sha512(NEW_KEY, draft), sha512("other", tag)]);
    let json = [("Content-Type", "application/json")];

    // Signed with the new key (a systemd credential) or the old one (an env var): the `or` of
    // two payload-hmac-sha512 rules forgives the other key's mismatch.
    for (i, key) in [(0, "new"), (1, "old")] {
        let r = post_with(&c.d, hook, &signed[i], &json, tag.as_bytes());
        assert_eq!(r.status, 200, "{key}: {}", r.text());
        let out = lines(&r);
        assert_has(&out, "arg1=--tag");
        assert_has(&out, "arg2=refs/tags/v1.2.3");
        assert_has(&out, &format!("file HOOK_BODY={tag}"));
    }
    // The `not` refuses a draft; a key the hook does not know is a soft failure inside the
    // `or`, so a plain mismatch (200), not a 403.
    let r = post_with(&c.d, hook, &signed[2], &json, draft.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, NOT_SATISFIED));
    let r = post_with(&c.d, hook, &signed[3], &json, tag.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, NOT_SATISFIED));
    // The other branch: a manual trigger from the LAN needs no signature and no payload.
    let lan = [("CF-Connecting-IP", "192.168.1.20")];
    let r = c.d.request("POST", &format!("{hook}?trigger=manual"), &lan, b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let out = lines(&r);
    assert_has(&out, "arg1=--tag");
    assert_has(&out, "arg2=");
    assert_has(&out, "argc=2");
    let r = c.d.request("POST", &format!("{hook}?trigger=manual"), &[("CF-Connecting-IP", "192.168.2.20")], b"");
    assert_eq!((r.status, r.text().as_str()), (200, NOT_SATISFIED));
    assert_eq!(finished_runs(&c.d, 3).len(), 3);
}

#[test]
fn adnanh_list_payload_responses_and_command_failures() {
    let c = compat();
    // A JSON list is reachable as `root`; values print as adnanh prints them.
    let list = r#"[{"id":"build-42","ok":true},{"name":"x","tags":["a","b<c>&"],"size":1.5}]"#;
    let r = c.d.request("POST", "/hooks/array-root", &[("Content-Type", "application/json")], list.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let out = lines(&r);
    assert_has(&out, "arg1=build-42");
    assert_has(&out, "arg2=b<c>&");
    assert_has(&out, "arg3=1.5");
    assert_has(
        &out,
        r#"arg4={"root":[{"id":"build-42","ok":true},{"name":"x","size":1.5,"tags":["a","b\u003cc\u003e\u0026"]}]}"#,
    );
    let r = c.d.request("POST", "/hooks/array-root", &[("Content-Type", "application/json")], br#"[{"id":"x"}]"#);
    assert_eq!((r.status, r.text().as_str()), (200, NOT_SATISFIED));

    // No command: response-message, success-http-response-code and response-headers; the body
    // is read as JSON whatever its Content-Type says (incoming-payload-content-type).
    let r = c.d.request("POST", "/hooks/ping", &[("Content-Type", "text/plain")], br#"{"greeting":"hello"}"#);
    assert_eq!((r.status, r.text().as_str(), r.header("X-Pong")), (201, "pong", Some("yes")));
    let r = c.d.request("POST", "/hooks/ping", &[("Content-Type", "text/plain")], br#"{"greeting":"bye"}"#);
    assert_eq!((r.status, r.text().as_str()), (200, NOT_SATISFIED));

    // A failing command: 500 with its output when asked, adnanh's fixed text otherwise.
    let r = c.d.request("POST", "/hooks/fails-loudly", &[], b"");
    assert_eq!(r.status, 500);
    let out = lines(&r);
    assert_has(&out, "arg1=fail");
    assert_has(&out, "failing on purpose");
    let r = c.d.request("POST", "/hooks/fails-quietly", &[], b"");
    assert_eq!(
        (r.status, r.text().as_str()),
        (500, "Error occurred while executing the hook's command. Please check your logs for more details.")
    );

    // An unknown hook.
    let r = c.d.request("POST", "/hooks/no-such-hook", &[], b"{}");
    assert_eq!((r.status, r.text().as_str()), (404, "Hook not found."));
    assert!(r.header("Content-Type").unwrap().starts_with("text/plain"));
    let states: Vec<String> = finished_runs(&c.d, 3).iter().map(|r| r["state"].as_str().unwrap().to_string()).collect();
    assert_eq!(states, ["succeeded", "failed", "failed"]);
}

#[test]
fn hooks_flag_works_without_a_config_and_hooks_may_be_a_path_in_the_config() {
    let dir = TempDir::new("hooks-flag");
    let file = write_compat_hooks(&dir.0);
    let env = compat_env(&dir.0);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let ping = |d: &Daemon| {
        let r = d.request("POST", "/hooks/ping", &[("Content-Type", "text/plain")], br#"{"greeting":"hello"}"#);
        assert_eq!((r.status, r.text().as_str()), (201, "pong"));
        let r =
            d.request("POST", "/hooks/array-root", &[("Content-Type", "application/json")], br#"[{"id":"build-7"}]"#);
        assert_eq!(r.status, 200);
        assert_has(&lines(&r), "arg1=build-7");
    };
    // `serve --hooks FILE` and nothing else: the embedded config plus the file's hooks.
    let d = Daemon::start_env(None, &["--hooks", file.to_str().unwrap()], &env);
    ping(&d);
    assert!(d.log_text().contains("hooks)"), "{}", d.log_text());
    drop(d);
    // `"hooks": "hooks.json"` in a config, relative to the config file.
    std::fs::copy(&file, dir.0.join("linked-hooks.json")).unwrap();
    let config = dir.0.join("hookcast.json");
    std::fs::write(&config, r#"{"hooks": "linked-hooks.json"}"#).unwrap();
    let d = Daemon::start_env(None, &["--config", config.to_str().unwrap()], &env);
    ping(&d);
}

/// The embedded default config's `demo` hook: loopback only, the whole payload on topic `demo`.
#[test]
fn default_config_demo_hook() {
    let d = Daemon::start_default();
    let (mut s, _) = sse(&d, "/events?topics=demo&format=json", &[]);
    let r = d.request("POST", "/hooks/demo", &[("Content-Type", "application/json")], br#"{"hello":"world"}"#);
    assert_eq!((r.status, r.text().as_str()), (200, "delivered to topic demo\n"));
    let got = read_until(&mut s, "world");
    assert!(got.contains(r#""topic":"demo""#) && got.contains(r#""payload":{"hello":"world"}"#), "{got}");
}

/// Runs the binary to completion (at most 10 s): exit code, stdout, stderr.
fn run_cli(args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
    run_to_end(Path::new(BIN), args, env)
}

/// Hooks files hookcast refuses, each with a phrase of its message: YAML, a Go template, an
/// unknown field.
fn refused_hooks_files(dir: &Path) -> Vec<(PathBuf, &'static str)> {
    let files = [
        ("hooks.yaml", "- id: deploy\n  execute-command: /srv/deploy.sh\n", "not JSON"),
        (
            "template.json",
            "[\n  {\"id\": \"deploy\",\n   \"trigger-rule\": {\"match\": {\"type\": \"payload-hmac-sha256\", \"secret\": \"{{ getenv \\\"S\\\" | js }}\", \"parameter\": {\"source\": \"header\", \"name\": \"X-Hub-Signature-256\"}}}}\n]\n",
            "line 3: \"{{\" looks like a Go template",
        ),
        ("unknown.json", r#"[{"id": "deploy", "execute-comand": "/srv/deploy.sh"}]"#, "[0].execute-comand: unknown field"),
    ];
    files
        .into_iter()
        .map(|(name, text, phrase)| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            (p, phrase)
        })
        .collect()
}

#[test]
fn serve_and_check_refuse_unsupported_hooks_files_naming_them() {
    let dir = TempDir::new("refused");
    for (file, phrase) in refused_hooks_files(&dir.0) {
        let path = file.to_str().unwrap();
        // At start: exit 1, the file and the reason on stderr, never a daemon that ignores it.
        let (code, _, err) = run_cli(&["serve", "--listen", "127.0.0.1:0", "--hooks", path], &[]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(path) && err.contains(phrase), "{err}");
        // `check` on a config pointing at the file.
        let config = dir.0.join("hookcast.json");
        std::fs::write(&config, json!({ "hooks": file }).to_string()).unwrap();
        let (code, _, err) = run_cli(&["check", "--config", config.to_str().unwrap()], &[]);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(path) && err.contains(phrase), "{err}");
    }
}

#[test]
fn check_hooks_flag_validates_adnanh_files() {
    let dir = TempDir::new("check-hooks");
    let file = write_compat_hooks(&dir.0);
    let env = compat_env(&dir.0);
    let (code, out, err) = run_cli(&["check", "--hooks", file.to_str().unwrap()], &env);
    assert_eq!(code, 0, "{out}{err}");
    for (bad, phrase) in refused_hooks_files(&dir.0) {
        let path = bad.to_str().unwrap();
        let (code, _, err) = run_cli(&["check", "--hooks", path], &env);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains(path) && err.contains(phrase), "{err}");
    }
}

#[test]
fn check_reads_the_hooks_secrets() {
    let dir = TempDir::new("check-secrets");
    let file = write_compat_hooks(&dir.0);
    let config = dir.0.join("hookcast.json");
    std::fs::write(&config, json!({ "hooks": file }).to_string()).unwrap();
    let env = compat_env(&dir.0);
    let (code, out, err) = run_cli(&["check", "--config", config.to_str().unwrap()], &env);
    assert_eq!(code, 0, "{out}{err}");
    // Without GITHUB_WEBHOOK_SECRET, serve refuses to start, and so must check.
    let partial: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k != "GITHUB_WEBHOOK_SECRET").collect();
    let (code, _, err) = run_cli(&["serve", "--listen", "127.0.0.1:0", "--config", config.to_str().unwrap()], &partial);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("GITHUB_WEBHOOK_SECRET"), "{err}");
    let (code, _, err) = run_cli(&["check", "--config", config.to_str().unwrap()], &partial);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("GITHUB_WEBHOOK_SECRET"), "{err}");
}

// ------------------------------------------------------------------------------------------
// 3. Hostile input: a clear 4xx, and nothing triggered

const H_GITHUB: &str = "hostile github secret";
const H_STRIPE: &str = "whsec_hostileStripeSecret";
const H_SLACK: &str = "hostile slack signing secret";
const H_SW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const H_HMAC: &str = "hostile hmac secret";
const HOSTILE_HOOKS: &[&str] = &["gh", "stripe", "slack", "sw", "hm", "raw", "lan", "lan-rule"];

/// Every hook runs a command, so "nothing triggered" means no run in `/api/runs`.
fn hostile(trusted_proxies: &[&str]) -> Daemon {
    let open: Value = serde_json::from_str(OPEN_TOPICS).unwrap();
    let run = "true";
    let config = json!({
        "public": [open],
        "trusted_proxies": trusted_proxies,
        // A trusted proxy here is cloudflared (CF-Connecting-IP believed only when said).
        "cf_connecting_ip": !trusted_proxies.is_empty(),
        "limits": {"max_body_bytes": 200000, "body_timeout_ms": 300},
        "hooks": [
            {"id": "gh", "provider": "github", "secrets": [H_GITHUB], "execute-command": run},
            {"id": "stripe", "provider": "stripe", "secrets": [H_STRIPE], "execute-command": run},
            {"id": "slack", "provider": "slack", "secrets": [H_SLACK], "execute-command": run},
            {"id": "sw", "provider": "standard-webhooks", "secrets": [H_SW], "execute-command": run},
            {"id": "hm", "provider": "hmac", "secrets": [H_HMAC], "execute-command": run},
            {"id": "raw", "execute-command": run},
            {"id": "lan", "allowed-ips": ["10.0.0.0/8"], "execute-command": run},
            {"id": "lan-rule", "execute-command": run,
             "trigger-rule": {"match": {"type": "ip-whitelist", "ip-range": "10.0.0.0/8"}}}
        ]
    });
    Daemon::start(&config.to_string())
}

fn without(headers: &[(String, String)], name: &str) -> Headers {
    headers.iter().filter(|(k, _)| !k.eq_ignore_ascii_case(name)).cloned().collect()
}

fn error_of(r: &Resp) -> String {
    r.json()["error"].as_str().unwrap_or_default().to_string()
}

#[test]
fn wrong_missing_and_duplicated_signatures_are_refused() {
    let d = hostile(&[]);
    let mut events = Events::open(&d, "hooks/**");
    let gh_body = fixture_body("github-push");
    let stripe_body = fixture_body("stripe-payment-intent");
    let sw_body = fixture_body("standard-webhooks-python");
    let signed = sign_all(&[
        Sign::new("github", H_GITHUB, gh_body.as_bytes()),
        Sign::new("github", "another secret", gh_body.as_bytes()),
        Sign::new("stripe", H_STRIPE, stripe_body.as_bytes()),
        Sign::new("standard-webhooks", H_SW, sw_body.as_bytes()),
    ]);
    let (gh, gh_wrong, stripe, sw) = (&signed[0], &signed[1], &signed[2], &signed[3]);

    // Wrong secret, and a body changed after signing: 403.
    let r = post(&d, "/hooks/gh", gh_wrong, gh_body.as_bytes());
    assert_eq!((r.status, error_of(&r).as_str()), (403, "signature does not match"));
    let tampered = gh_body.replace("Codertocat", "Codertocaz");
    let r = post(&d, "/hooks/gh", gh, tampered.as_bytes());
    assert_eq!((r.status, error_of(&r).as_str()), (403, "signature does not match"));
    // Missing: 401. (GitHub's SHA-1 header alone does not count unless the hook allows it.)
    let r = post(&d, "/hooks/gh", &without(gh, "X-Hub-Signature-256"), gh_body.as_bytes());
    assert_eq!((r.status, error_of(&r).as_str()), (401, "missing header x-hub-signature-256"));
    let r = post(&d, "/hooks/stripe", &without(stripe, "Stripe-Signature"), stripe_body.as_bytes());
    assert_eq!(r.status, 401, "{}", r.text());
    let r = post(&d, "/hooks/sw", &without(sw, "webhook-signature"), sw_body.as_bytes());
    assert_eq!(r.status, 401, "{}", r.text());
    // Duplicated, even when both copies are valid: 400, ambiguous input is never "first wins".
    for (hook, headers, name, body) in [
        ("gh", gh, "X-Hub-Signature-256", &gh_body),
        ("stripe", stripe, "Stripe-Signature", &stripe_body),
        ("sw", sw, "webhook-signature", &sw_body),
    ] {
        let value = headers.iter().find(|(k, _)| k == name).unwrap().1.clone();
        let mut twice = headers.clone();
        twice.push((name.to_string(), value));
        let r = post(&d, &format!("/hooks/{hook}"), &twice, body.as_bytes());
        assert_eq!(r.status, 400, "{hook}: {}", r.text());
        assert_eq!(error_of(&r), format!("header {} appears more than once", name.to_ascii_lowercase()));
        assert_eq!(signature_failures(&d, hook, "duplicate"), 1.0, "{hook}");
    }
    assert_eq!(signature_failures(&d, "gh", "mismatch"), 2.0);
    assert_eq!(signature_failures(&d, "gh", "missing"), 1.0);
    assert_eq!(deliveries(&d, "gh", "rejected"), 4.0);
    events.assert_quiet(Duration::from_millis(200));
    assert_nothing_triggered(&d, HOSTILE_HOOKS);
}

#[test]
fn replayed_delivery_is_acknowledged_but_runs_once() {
    let d = hostile(&[]);
    let mut events = Events::open(&d, "hooks/**");
    let gh_body = fixture_body("github-push");
    let stripe_body = fixture_body("stripe-payment-intent");
    let now = now_unix();
    // GitHub redelivers with the same X-GitHub-Delivery; a Stripe event id comes back signed at
    // another time (a replay that re-signs is still the same event).
    let signed = sign_all(&[
        Sign::new("github", H_GITHUB, gh_body.as_bytes()).arg("--id", "replayed-delivery-1"),
        Sign::new("stripe", H_STRIPE, stripe_body.as_bytes()).arg("--timestamp", now),
        Sign::new("stripe", H_STRIPE, stripe_body.as_bytes()).arg("--timestamp", now - 30),
    ]);
    let r = post(&d, "/hooks/gh", &signed[0], gh_body.as_bytes());
    assert_eq!(r.status, 202, "{}", r.text());
    for _ in 0..2 {
        let r = post(&d, "/hooks/gh", &signed[0], gh_body.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json(), json!({"duplicate": true, "delivery": "replayed-delivery-1", "hook": "gh"}));
    }
    let r = post(&d, "/hooks/stripe", &signed[1], stripe_body.as_bytes());
    assert_eq!(r.status, 202, "{}", r.text());
    let r = post(&d, "/hooks/stripe", &signed[2], stripe_body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["duplicate"], true);

    assert_eq!(events.next()["topic"], "hooks/gh");
    assert_eq!(events.next()["topic"], "hooks/stripe");
    events.assert_quiet(Duration::from_millis(200));
    let done = finished_runs(&d, 2);
    assert_eq!(done.iter().map(|r| r["hook"].as_str().unwrap()).collect::<Vec<_>>(), ["gh", "stripe"]);
    assert_eq!(done[0]["deliveries"], json!(["replayed-delivery-1"]));
    assert_eq!((deliveries(&d, "gh", "accepted"), deliveries(&d, "gh", "duplicate")), (1.0, 2.0));
    assert_eq!((deliveries(&d, "stripe", "accepted"), deliveries(&d, "stripe", "duplicate")), (1.0, 1.0));
}

#[test]
fn stale_and_future_timestamps_are_refused() {
    let d = hostile(&[]);
    let mut events = Events::open(&d, "hooks/**");
    let now = now_unix();
    let stripe_body = fixture_body("stripe-payment-intent");
    let slack_body = fixture_body("slack-event-callback");
    let sw_body = fixture_body("standard-webhooks-python");
    let cases: Vec<(&str, &str, &str, &String)> = vec![
        ("stripe", "stripe", H_STRIPE, &stripe_body),
        ("slack", "slack", H_SLACK, &slack_body),
        ("sw", "standard-webhooks", H_SW, &sw_body),
        ("sw", "svix", H_SW, &sw_body),
    ];
    let mut reqs = Vec::new();
    for (_, provider, secret, body) in &cases {
        for skew in [-600i64, 600] {
            reqs.push(Sign::new(provider, secret, body.as_bytes()).arg("--timestamp", now as i64 + skew));
        }
    }
    let signed = sign_all(&reqs);
    for (i, headers) in signed.iter().enumerate() {
        let (hook, provider, _, body) = cases[i / 2];
        let r = post(&d, &format!("/hooks/{hook}"), headers, body.as_bytes());
        assert_eq!(r.status, 403, "{provider} {}: {}", i % 2, r.text());
        let e = error_of(&r);
        let when = if i % 2 == 0 {
            " s old, outside the replay window"
        } else {
            " s in the future, outside the replay window"
        };
        assert!(e.starts_with("timestamp is ") && e.ends_with(when), "{provider}: {e}");
    }
    assert_eq!(signature_failures(&d, "stripe", "stale"), 2.0);
    assert_eq!(signature_failures(&d, "slack", "stale"), 2.0);
    assert_eq!(signature_failures(&d, "sw", "stale"), 4.0);
    events.assert_quiet(Duration::from_millis(200));
    assert_nothing_triggered(&d, HOSTILE_HOOKS);
}

#[test]
fn oversized_bodies_are_refused_from_the_header() {
    let d = hostile(&[]);
    // Only the head is sent: the 413 comes before any of the 300 000 announced bytes.
    for hook in ["gh", "raw"] {
        let r = raw_post(&d, &format!("/hooks/{hook}"), &[("Content-Type", "application/json")], 300_000, b"");
        assert_eq!(r.status, 413, "{hook}: {}", r.text());
        assert_eq!(r.json()["status"], 413);
    }
    // And so with Expect: 100-continue (no 100 first).
    let r = raw_post(&d, "/hooks/raw", &[("Expect", "100-continue")], 200_001, b"");
    assert_eq!(r.status, 413);
    assert_nothing_triggered(&d, HOSTILE_HOOKS);
}

#[test]
fn deeply_nested_and_invalid_utf8_bodies_get_400() {
    let d = hostile(&[]);
    let mut events = Events::open(&d, "hooks/**");
    let json_ct = ("Content-Type", "application/json");
    let deep = "[".repeat(100_000);
    let just_too_deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let signed =
        sign_all(&[Sign::new("hmac", H_HMAC, deep.as_bytes()), Sign::new("hmac", H_HMAC, just_too_deep.as_bytes())]);
    // Unsigned hook: refused while parsing. Signed hook: refused after the signature held.
    for body in [&deep, &just_too_deep] {
        let r = d.request("POST", "/hooks/raw", &[json_ct], body.as_bytes());
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(error_of(&r).starts_with("invalid JSON payload"), "{}", r.text());
    }
    for (headers, body) in signed.iter().zip([&deep, &just_too_deep]) {
        let r = post_with(&d, "/hooks/hm", headers, &[json_ct], body.as_bytes());
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(error_of(&r).starts_with("invalid JSON payload"), "{}", r.text());
    }
    // Invalid UTF-8 in a JSON string, and in a form value (raw and percent-encoded).
    let bad_json = b"{\"ref\":\"refs/heads/\xff\xfe\"}";
    let sig = format!("sha256={}", py_hmac_sha256(H_HMAC, bad_json));
    let r = d.request("POST", "/hooks/hm", &[json_ct, ("X-Hub-Signature-256", &sig)], bad_json);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = d.request("POST", "/hooks/raw", &[json_ct], bad_json);
    assert_eq!(r.status, 400, "{}", r.text());
    for form in [&b"ref=main\xff"[..], b"ref=%FFmain"] {
        let r = d.request("POST", "/hooks/raw", &[("Content-Type", "application/x-www-form-urlencoded")], form);
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(error_of(&r).contains("not UTF-8"), "{}", r.text());
    }
    // Trailing data after the JSON value.
    let r = d.request("POST", "/hooks/raw", &[json_ct], br#"{"a":1} {"b":2}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    events.assert_quiet(Duration::from_millis(200));
    assert_nothing_triggered(&d, HOSTILE_HOOKS);
    assert_eq!(signature_failures(&d, "hm", "mismatch"), 0.0, "the signatures held");
}

#[test]
fn unsupported_and_malformed_content_types_are_refused() {
    let d = hostile(&[]);
    let mut events = Events::open(&d, "hooks/**");
    let xml = r#"<?xml version="1.0"?><push><ref>refs/heads/main</ref></push>"#;
    let gh = sign(Sign::new("github", H_GITHUB, xml.as_bytes()));
    // XML: 415, from an unsigned hook and from a signed delivery alike.
    let r = d.request("POST", "/hooks/raw", &[("Content-Type", "application/xml")], xml.as_bytes());
    assert_eq!(r.status, 415, "{}", r.text());
    let r = post_with(&d, "/hooks/gh", &gh, &[("Content-Type", "text/xml; charset=utf-8")], xml.as_bytes());
    assert_eq!(r.status, 415, "{}", r.text());
    // Multipart without a boundary, with a broken body, with a quoted-printable part.
    let part = "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--b--\r\n";
    let r = d.request("POST", "/hooks/raw", &[("Content-Type", "multipart/form-data")], part.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    let r = d.request(
        "POST",
        "/hooks/raw",
        &[("Content-Type", "multipart/form-data; boundary=b")],
        b"--b\r\nno headers end",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let qp = "--b\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nx=3D1\r\n--b--\r\n";
    let r = d.request("POST", "/hooks/raw", &[("Content-Type", "multipart/form-data; boundary=b")], qp.as_bytes());
    assert_eq!(r.status, 415, "{}", r.text());
    // JSON that says it is JSON but is not.
    let r = d.request("POST", "/hooks/raw", &[("Content-Type", "application/json")], b"ref=main");
    assert_eq!(r.status, 400, "{}", r.text());
    events.assert_quiet(Duration::from_millis(200));
    assert_nothing_triggered(&d, HOSTILE_HOOKS);
}

#[test]
fn a_body_that_does_not_match_its_content_length_is_refused() {
    let d = hostile(&[]);
    let body = fixture_body("github-push");
    let gh = sign(Sign::new("github", H_GITHUB, body.as_bytes()));
    let gh: Vec<(&str, &str)> = gh.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Shorter than announced: the daemon waits body_timeout_ms (300), then 408.
    let t0 = Instant::now();
    let r = raw_post(&d, "/hooks/gh", &gh, body.len(), &body.as_bytes()[..body.len() - 1]);
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(t0.elapsed() >= Duration::from_millis(250) && t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let r = raw_post(&d, "/hooks/raw", &[("Content-Type", "application/json")], 100, b"{\"a\":");
    assert_eq!(r.status, 408, "{}", r.text());
    // Longer than announced: the signature covers bytes the daemon does not take as the body.
    let r = raw_post(&d, "/hooks/gh", &gh, body.len() - 5, body.as_bytes());
    assert_eq!(r.status, 403, "{}", r.text());
    assert_nothing_triggered(&d, HOSTILE_HOOKS);
}

#[test]
fn forwarded_addresses_from_an_untrusted_peer_are_ignored() {
    let d = hostile(&[]);
    let mut events = Events::open(&d, "hooks/**");
    for spoof in [("CF-Connecting-IP", "10.1.2.3"), ("X-Forwarded-For", "10.1.2.3")] {
        let r = d.request("POST", "/hooks/lan", &[spoof], b"");
        assert_eq!((r.status, error_of(&r).as_str()), (403, "address not allowed"), "{spoof:?}");
        let r = d.request("POST", "/hooks/lan-rule", &[spoof], b"");
        assert_eq!((r.status, r.text().as_str()), (200, NOT_SATISFIED), "{spoof:?}");
    }
    let r = d.request("POST", "/hooks/lan", &[("CF-Connecting-IP", "10.1.2.3"), ("X-Forwarded-For", "10.1.2.3")], b"");
    assert_eq!(r.status, 403);
    assert_eq!(deliveries(&d, "lan", "rejected"), 3.0);
    assert_eq!(deliveries(&d, "lan-rule", "mismatch"), 2.0);
    events.assert_quiet(Duration::from_millis(200));
    assert_nothing_triggered(&d, HOSTILE_HOOKS);
}

#[test]
fn forwarded_addresses_from_a_trusted_proxy_are_honoured() {
    let d = hostile(&["127.0.0.0/8"]);
    let mut deliveries_topic = Events::open(&d, "$deliveries");
    let r = d.request("POST", "/hooks/lan", &[("CF-Connecting-IP", "10.1.2.3")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let rec = deliveries_topic.next();
    assert_eq!((rec["data"]["source"].as_str(), rec["data"]["outcome"].as_str()), (Some("10.1.2.3"), Some("accepted")));
    let r = d.request("POST", "/hooks/lan-rule", &[("X-Forwarded-For", "203.0.113.50, 10.9.9.9")], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(deliveries_topic.next()["data"]["source"], "10.9.9.9");
    // A client outside the allowed network, and a header that is not an address (the peer
    // itself then counts), are still refused.
    let r = d.request("POST", "/hooks/lan", &[("CF-Connecting-IP", "203.0.113.7")], b"");
    assert_eq!(r.status, 403);
    let r = d.request("POST", "/hooks/lan", &[("CF-Connecting-IP", "10.1.2.3.evil")], b"");
    assert_eq!(r.status, 403);
    assert_eq!(finished_runs(&d, 2).len(), 2);
}

/// Regression: the delivery id header of a hook without a `provider` (adnanh format) was looked
/// up in the idempotency window before the trigger rule ran, so an unsigned or wrongly signed
/// request reusing an accepted id was answered `200 {"duplicate":true}` instead of the rule's
/// mismatch or 403.
#[test]
fn unverified_repeat_of_an_accepted_delivery_id_gets_the_rules_answer() {
    let open: Value = serde_json::from_str(OPEN_TOPICS).unwrap();
    let rule = json!({"match": {"type": "payload-hmac-sha256", "secret": H_GITHUB,
                                "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}});
    let config =
        json!({"public": [open], "hooks": [{"id": "signed", "execute-command": "true", "trigger-rule": rule}]});
    let d = Daemon::start(&config.to_string());
    let body = fixture_body("github-push");
    let signed = sign_all(&[
        Sign::new("github", H_GITHUB, body.as_bytes()).arg("--id", "accepted-once"),
        Sign::new("github", "not the secret", body.as_bytes()).arg("--id", "accepted-once"),
    ]);
    let r = post(&d, "/hooks/signed", &signed[0], body.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, ""));
    let r = post(&d, "/hooks/signed", &signed[0], body.as_bytes());
    assert_eq!(r.json()["duplicate"], true, "a verified repeat is acknowledged");
    let unsigned: Headers = signed[0].iter().filter(|(k, _)| !k.starts_with("X-Hub-Signature")).cloned().collect();
    let r = post(&d, "/hooks/signed", &unsigned, body.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, NOT_SATISFIED));
    let r = post(&d, "/hooks/signed", &signed[1], body.as_bytes());
    assert_eq!((r.status, error_of(&r).as_str()), (403, "invalid payload signature"));
    assert_eq!(finished_runs(&d, 1).len(), 1);
    assert_eq!(deliveries(&d, "signed", "duplicate"), 1.0);
}

/// Slack checks a new Events API URL with a signed `url_verification` request and expects its
/// `challenge` back; it is not a delivery: nothing runs, nothing is published on the topic.
#[test]
fn slack_url_verification_is_answered_with_its_challenge() {
    let d = hostile(&[]);
    let mut events = Events::open(&d, "hooks/**");
    let body = r#"{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}"#;
    let signed =
        sign_all(&[Sign::new("slack", H_SLACK, body.as_bytes()), Sign::new("slack", "wrong", body.as_bytes())]);
    let r = post(&d, "/hooks/slack", &signed[0], body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}));
    // Only a verified request gets it.
    let r = post(&d, "/hooks/slack", &signed[1], body.as_bytes());
    assert_eq!(r.status, 403);
    events.assert_quiet(Duration::from_millis(200));
    assert_nothing_triggered(&d, HOSTILE_HOOKS);
}

/// Regression (issue 12, item 7): on hooks without a `provider`, a delivery id header of any
/// length or bytes was taken as it came, kept in the dedup window and copied into records and
/// the journal. Now the providers' rule (printable ASCII without spaces, at most 256 bytes)
/// applies; an invalid id is replaced by a made-up one.
#[test]
fn delivery_ids_from_headers_follow_the_providers_rules_on_every_hook() {
    let d = hostile(&[]);
    let long = "a".repeat(8000);
    let cases = [
        ("X-GitHub-Delivery", long.as_str()),
        ("X-Gitlab-Event-UUID", "with space"),
        ("X-Request-UUID", "tab\there"),
        ("webhook-id", &"b".repeat(257)),
    ];
    for (i, (name, id)) in cases.iter().enumerate() {
        let r = d.request("POST", "/hooks/raw", &[(name, id)], b"{}");
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let run = &finished_runs(&d, i + 1)[i];
        let kept = run["deliveries"][0].as_str().unwrap();
        assert!(kept.starts_with("hc-") && kept.len() < 64, "{name}: made up, not {:.40}…", kept);
    }
    // Valid ids (the longest allowed, and spaces around one) are kept, and still deduplicate.
    let longest = "c".repeat(256);
    for (n, (sent, kept)) in [(longest.as_str(), longest.as_str()), ("  id-42 ", "id-42")].into_iter().enumerate() {
        let r = d.request("POST", "/hooks/raw", &[("X-GitHub-Delivery", sent)], b"{}");
        assert_eq!(r.status, 200, "{}", r.text());
        let run = &finished_runs(&d, cases.len() + n + 1)[cases.len() + n];
        assert_eq!(run["deliveries"][0], kept);
        let r = d.request("POST", "/hooks/raw", &[("X-GitHub-Delivery", kept)], b"{}");
        assert_eq!(r.json()["duplicate"], true, "{}", r.text());
    }
}

const ADMIN: &str = "hooks admin token";

/// A daemon with an admin token and `hooks`, whose topics anyone may read.
fn with_admin(hooks: Value) -> Daemon {
    let open: Value = serde_json::from_str(OPEN_TOPICS).unwrap();
    let hash = hookcast::auth::hex(&hookcast::auth::token_hash(ADMIN));
    let config = json!({
        "public": [open],
        "tokens": [{"name": "ops", "sha256": hash, "scopes": ["admin"]}],
        "hooks": hooks,
    });
    Daemon::start(&config.to_string())
}

fn replay_path(d: &Daemon, path: &str) -> Resp {
    d.request("POST", path, &[("Authorization", &format!("Bearer {ADMIN}"))], b"")
}

/// Regression (issue 12, item 15): stored deliveries were keyed by delivery id alone while
/// deduplication is per (hook, id), so the same id on a second hook replaced the first hook's
/// copy and a replay ran the wrong hook; replaying a made-up id reported a new id.
#[test]
fn stored_deliveries_are_per_hook_and_a_replay_keeps_its_id() {
    let d = with_admin(json!([
        {"id": "one", "execute-command": "true"},
        {"id": "two", "execute-command": "true"},
    ]));
    for hook in ["one", "two"] {
        let r = d.request("POST", &format!("/hooks/{hook}"), &[("X-GitHub-Delivery", "shared-1")], b"{}");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    finished_runs(&d, 2);
    let listed = d.request("GET", "/api/deliveries", &[("Authorization", &format!("Bearer {ADMIN}"))], b"").json();
    let kept: Vec<(&str, &str)> = listed["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["hook"].as_str().unwrap(), x["delivery"].as_str().unwrap()))
        .collect();
    assert_eq!(kept, [("two", "shared-1"), ("one", "shared-1")], "both copies are kept");

    // The short form is ambiguous now: 409 naming the hooks.
    let r = replay_path(&d, "/api/deliveries/shared-1/replay");
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["hooks"], json!(["one", "two"]));
    // Named by (hook, id), each replays its own hook.
    for (n, hook) in ["one", "two"].into_iter().enumerate() {
        let r = replay_path(&d, &format!("/api/deliveries/{hook}/shared-1/replay"));
        assert_eq!(r.status, 202, "{}", r.text());
        assert_eq!(r.json()["replayed"], "shared-1");
        let run = d.get(&format!("/api/runs/{}", r.json()["run"])).json();
        assert_eq!((run["hook"].as_str(), run["deliveries"].clone()), (Some(hook), json!(["shared-1"])), "{run}");
        finished_runs(&d, 3 + n);
    }

    // A delivery whose id was made up replays under that id, by the short form too.
    let r = d.request("POST", "/hooks/one", &[], b"{}");
    assert_eq!(r.status, 200, "{}", r.text());
    finished_runs(&d, 5);
    let listed = d.request("GET", "/api/deliveries", &[("Authorization", &format!("Bearer {ADMIN}"))], b"").json();
    let made_up = listed["deliveries"][0]["delivery"].as_str().unwrap().to_string();
    assert!(made_up.starts_with("hc-"), "{made_up}");
    let r = replay_path(&d, &format!("/api/deliveries/{made_up}/replay"));
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.json()["replayed"], made_up.as_str(), "the replay keeps the stored id");
    assert_eq!(r.json()["record"]["delivery"], made_up.as_str());
    let run = d.get(&format!("/api/runs/{}", r.json()["run"])).json();
    assert_eq!(run["deliveries"], json!([made_up]));

    // Unknown ids and hooks: 404, and nothing runs.
    for path in [
        "/api/deliveries/no-such/replay",
        "/api/deliveries/one/no-such/replay",
        "/api/deliveries/three/shared-1/replay",
    ] {
        assert_eq!(replay_path(&d, path).status, 404, "{path}");
    }
    assert_eq!(finished_runs(&d, 6).len(), 6);
}

/// GitHub does not sign X-GitHub-Delivery: a captured signed request resent under a new id
/// passes the signature check. With `"dedup": "body"` (issue 12, "also observed") the hook
/// knows a delivery by the SHA-256 of its body, so the resend is a duplicate and runs nothing;
/// the default (`delivery-id`) still takes it, as the README warns.
#[test]
fn dedup_by_body_catches_a_signed_request_resent_under_a_new_id() {
    let open: Value = serde_json::from_str(OPEN_TOPICS).unwrap();
    let config = json!({"public": [open], "hooks": [
        {"id": "by-id", "provider": "github", "secrets": [H_GITHUB], "execute-command": "true"},
        {"id": "by-body", "provider": "github", "secrets": [H_GITHUB], "execute-command": "true", "dedup": "body"},
    ]});
    let d = Daemon::start(&config.to_string());
    let body = fixture_body("github-push");
    let other = body.replace("Codertocat", "Octocat");
    let signed = sign_all(&[
        Sign::new("github", H_GITHUB, body.as_bytes()).arg("--id", "captured-1"),
        Sign::new("github", H_GITHUB, other.as_bytes()).arg("--id", "captured-2"),
    ]);
    let with_id = |h: &Headers, id: &str| -> Headers {
        h.iter()
            .map(|(k, v)| {
                (k.clone(), if k.eq_ignore_ascii_case("X-GitHub-Delivery") { id.to_string() } else { v.clone() })
            })
            .collect()
    };
    for hook in ["by-id", "by-body"] {
        let r = post(&d, &format!("/hooks/{hook}"), &signed[0], body.as_bytes());
        assert_eq!(r.status, 202, "{hook}: {}", r.text());
    }
    let resent = with_id(&signed[0], "attacker-chosen-id");
    let r = post(&d, "/hooks/by-id", &resent, body.as_bytes());
    assert_eq!(r.status, 202, "by delivery id, a new id is a new delivery: {}", r.text());
    let r = post(&d, "/hooks/by-body", &resent, body.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"duplicate": true, "delivery": "attacker-chosen-id", "hook": "by-body"}));
    // Another body is another delivery, and GitHub's own redelivery (same id, same body) is a
    // duplicate as before.
    let r = post(&d, "/hooks/by-body", &signed[1], other.as_bytes());
    assert_eq!(r.status, 202, "{}", r.text());
    let r = post(&d, "/hooks/by-body", &signed[1], other.as_bytes());
    assert_eq!(r.json()["duplicate"], true, "{}", r.text());
    let done = finished_runs(&d, 4);
    let per_hook = |h: &str| done.iter().filter(|r| r["hook"] == h).count();
    assert_eq!((per_hook("by-id"), per_hook("by-body")), (2, 2));
    assert_eq!((deliveries(&d, "by-body", "accepted"), deliveries(&d, "by-body", "duplicate")), (2.0, 2.0));
}

/// Regression (issue 12, also observed): a `regex` written before the signature in an `and`
/// ran over an unauthenticated client's parameter (60–140 ms of loop time per MiB) before the
/// request was refused as unsigned. Signatures are now checked first, and a regex tests at
/// most `MAX_REGEX_INPUT` bytes.
#[test]
fn signature_is_checked_before_regex_rules_and_regex_input_is_bounded() {
    let open: Value = serde_json::from_str(OPEN_TOPICS).unwrap();
    let rule = json!({"and": [
        {"match": {"type": "regex", "regex": "(a|b|c)*d$", "parameter": {"source": "payload", "name": "msg"}}},
        {"match": {"type": "payload-hmac-sha256", "secret": H_GITHUB,
                   "parameter": {"source": "header", "name": "X-Hub-Signature-256"}}}
    ]});
    let config = json!({"public": [open], "hooks": [{"id": "re", "execute-command": "true", "trigger-rule": rule}]});
    let d = Daemon::start(&config.to_string());
    let json_ct = ("Content-Type", "application/json");
    // A made-up signature and a large parameter the regex does not match: refused for the
    // signature (it was "rules not satisfied", after the regex had run over 600 kB).
    let big = json!({"msg": "abc".repeat(200_000)}).to_string();
    let r = d.request("POST", "/hooks/re", &[json_ct, ("X-Hub-Signature-256", "sha256=00")], big.as_bytes());
    assert_eq!((r.status, error_of(&r).as_str()), (403, "invalid payload signature"), "{}", r.text());
    // No signature at all: adnanh's answer for a missing value, now given before the regex runs.
    let r = d.request("POST", "/hooks/re", &[json_ct], big.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, NOT_SATISFIED));
    // Signed: a matching value within the cap triggers, the same value over the cap does not.
    let fits = json!({"msg": format!("{}d", "a".repeat(60_000))}).to_string();
    let over = json!({"msg": format!("{}d", "a".repeat(70_000))}).to_string();
    let signed =
        sign_all(&[Sign::new("github", H_GITHUB, fits.as_bytes()), Sign::new("github", H_GITHUB, over.as_bytes())]);
    let r = post_with(&d, "/hooks/re", &signed[0], &[json_ct], fits.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, ""));
    let r = post_with(&d, "/hooks/re", &signed[1], &[json_ct], over.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, NOT_SATISFIED));
    assert_eq!(finished_runs(&d, 1).len(), 1);
}

/// Issue 12, item 16 (display half): the stored copy of a delivery held every request header,
/// `X-Gitlab-Token` (the secret itself) included. The API's view of a stored delivery masks
/// every secret-bearing header (the known signature and token headers, a generic `hmac`
/// hook's header, headers a trigger rule compares with a secret); credentials meant for
/// hookcast (`Authorization`, `Cookie`) are not stored at all unless the hook reads them. The
/// stored copy keeps what verification needs, so a replay still verifies.
#[test]
fn stored_deliveries_are_shown_with_secret_headers_masked_and_still_replay() {
    const GL: &str = "gitlab token is the secret";
    const HM: &str = "generic hmac secret";
    const TOK: &str = "deploy token value";
    let sig_rule = json!({"match": {"type": "value", "value": TOK,
                                    "parameter": {"source": "header", "name": "X-Deploy-Token"}}});
    let d = with_admin(json!([
        {"id": "gl", "provider": "gitlab", "secrets": [GL], "execute-command": "true"},
        {"id": "hm", "provider": {"name": "hmac", "header": "X-Custom-Sig", "prefix": ""}, "secrets": [HM],
         "execute-command": "true"},
        {"id": "tok", "execute-command": "true", "trigger-rule": sig_rule},
        {"id": "reads-auth", "execute-command": "true",
         "pass-arguments-to-command": [{"source": "header", "name": "Authorization"}]},
    ]));
    let body = br#"{"object_kind":"push","ref":"refs/heads/main"}"#;
    let hm_sig = py_hmac_sha256(HM, body);
    let common = [("Authorization", "Bearer hookcast-token-123"), ("Cookie", "hookcast_token=cookie-456")];
    let send = |hook: &str, extra: &[(&str, &str)]| {
        let mut h: Vec<(&str, &str)> = vec![("Content-Type", "application/json")];
        h.extend_from_slice(extra);
        h.extend_from_slice(&common);
        let r = d.request("POST", &format!("/hooks/{hook}"), &h, body);
        assert!(r.status < 300, "{hook}: {} {}", r.status, r.text());
    };
    send("gl", &[("X-Gitlab-Token", GL), ("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Event-UUID", "gl-1")]);
    send("hm", &[("X-Custom-Sig", &hm_sig), ("X-Hub-Signature-256", "sha256=abcdef"), ("X-Request-UUID", "hm-1")]);
    send("tok", &[("X-Deploy-Token", TOK), ("X-GitHub-Delivery", "tok-1")]);
    send("reads-auth", &[("X-GitHub-Delivery", "ra-1")]);
    finished_runs(&d, 4);

    let r = d.request("GET", "/api/deliveries", &[("Authorization", &format!("Bearer {ADMIN}"))], b"");
    assert_eq!(r.status, 200);
    let text = r.text();
    for secret in [GL, TOK, hm_sig.as_str(), "abcdef", "hookcast-token-123", "cookie-456"] {
        assert!(!text.contains(secret), "{secret:?} shown in {text}");
    }
    let listed = r.json();
    let headers_of = |hook: &str| -> BTreeMap<String, String> {
        let d = listed["deliveries"].as_array().unwrap().iter().find(|d| d["hook"] == hook).unwrap();
        d["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().unwrap().to_string()))
            .collect()
    };
    let gl = headers_of("gl");
    assert_eq!(gl["x-gitlab-token"], "[masked]");
    assert_eq!(gl["x-gitlab-event"], "Push Hook", "other headers are shown");
    let hm = headers_of("hm");
    assert_eq!((hm["x-custom-sig"].as_str(), hm["x-hub-signature-256"].as_str()), ("[masked]", "[masked]"));
    assert_eq!(headers_of("tok")["x-deploy-token"], "[masked]");
    for hook in ["gl", "hm", "tok"] {
        let h = headers_of(hook);
        assert!(!h.contains_key("authorization") && !h.contains_key("cookie"), "{hook} stores no credentials: {h:?}");
    }
    // A hook that reads Authorization keeps it for replay, and shows it masked.
    let ra = headers_of("reads-auth");
    assert_eq!((ra["authorization"].as_str(), ra["cookie"].as_str()), ("[masked]", "[masked]"));

    // Replay verifies the stored request again: the real token and signatures were kept.
    for (hook, id) in [("gl", "gl-1"), ("hm", "hm-1"), ("tok", "tok-1")] {
        let r = replay_path(&d, &format!("/api/deliveries/{hook}/{id}/replay"));
        assert_eq!((r.status, r.json()["outcome"].as_str()), (202, Some("accepted")), "{hook}: {}", r.text());
    }
}
