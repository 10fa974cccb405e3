//! The intake's tests: which headers a hook keeps and masks, and one row per path through
//! [`decide`].

use super::*;
use crate::hooks::def::parse_hook;
use std::net::Ipv4Addr;

fn hook(v: Value) -> Hook {
    let def = parse_hook(v, "hooks[0]").unwrap();
    Hooks::prepare(vec![def]).unwrap().list.pop().unwrap()
}

#[test]
fn credentials_are_kept_only_when_the_hook_reads_them() {
    let plain = hook(json!({"id": "a", "provider": "github", "secrets": ["s"]}));
    assert!(plain.keeps_header("x-hub-signature-256") && plain.keeps_header("x-github-event"));
    assert!(!plain.keeps_header("authorization") && !plain.keeps_header("cookie"));
    let readers = [
        json!({"id": "b", "pass-arguments-to-command": [{"source": "header", "name": "Authorization"}]}),
        json!({"id": "c", "pass-environment-to-command": [{"source": "entire-headers", "name": "h", "envname": "H"}]}),
        json!({"id": "d", "trigger-rule": {"match": {"type": "regex", "regex": "x",
                                                     "parameter": {"source": "header", "name": "cookie"}}}}),
        json!({"id": "e", "provider": {"name": "hmac", "header": "Authorization"}, "secrets": ["s"]}),
    ];
    for v in readers {
        let h = hook(v.clone());
        assert!(h.keeps_header("authorization") && h.keeps_header("cookie"), "{v}");
    }
}

#[test]
fn secret_headers_include_the_hooks_own() {
    let h = hook(json!({"id": "a", "provider": {"name": "hmac", "header": "X-Custom-Sig"}, "secrets": ["s"],
                        "trigger-rule": {"match": {"type": "value", "value": "t",
                                                   "parameter": {"source": "header", "name": "X-Token"}}}}));
    for name in ["x-custom-sig", "x-token", "x-gitlab-token", "stripe-signature", "cookie"] {
        assert!(h.is_secret_header(name), "{name}");
    }
    assert!(!h.is_secret_header("x-github-event"));
    assert!(!hook(json!({"id": "b"})).is_secret_header("x-custom-sig"));
}

#[test]
fn header_ids_follow_the_providers_rule() {
    let id = |v: &[u8]| header_delivery_id(&[("x-github-delivery".to_string(), v.to_vec())]);
    assert_eq!(id(b" abc-1 "), Some("abc-1".to_string()));
    assert_eq!(id(&[b'a'; 256]), Some("a".repeat(256)));
    for bad in [&b"a b"[..], &[b'a'; 257], b"caf\xc3\xa9", b"a\x01", b""] {
        assert_eq!(id(bad), None, "{bad:?}");
    }
}

/// A hook from its definition's JSON text, through the config's parser.
fn hook_from(text: &str) -> Hook {
    hook(serde_json::from_str(text).unwrap())
}

const NOW: u64 = 1_700_000_000;
const GITHUB: &str = r#"{"id": "gh", "provider": "github", "secrets": ["s3cret"]}"#;

/// One request to one hook and what the intake must decide.
struct Row {
    name: &'static str,
    hook: &'static str,
    method: &'static str,
    /// Extra header fields (names lower-case).
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    /// GitHub's signature headers with this secret and `x-github-event: push`.
    signed_with: Option<&'static str>,
    /// What the idempotency window answers.
    seen: bool,
    replay_of: Option<&'static str>,
    /// Whether the idempotency window is asked: only once a delivery id is believed (a
    /// provider's signature held, or a hook without one passed its trigger rule).
    asks_window: bool,
    verdict: Verdict,
    status: u16,
    verification: Verification,
    message: &'static str,
}

const ROW: Row = Row {
    name: "",
    hook: r#"{"id": "plain"}"#,
    method: "POST",
    headers: &[],
    body: "{}",
    signed_with: None,
    seen: false,
    replay_of: None,
    asks_window: true,
    verdict: Verdict::Accepted,
    status: 200,
    verification: Verification::None,
    message: "accepted",
};

fn decide_row(row: &Row) -> (Decision, bool) {
    let h = hook_from(row.hook);
    let mut headers: Vec<(String, Vec<u8>)> =
        row.headers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
    headers.push(("content-type".into(), b"application/json".to_vec()));
    if let Some(secret) = row.signed_with {
        let p = Provider::parse("github").unwrap();
        for (k, v) in providers::sign(&p, secret.as_bytes(), row.body.as_bytes(), NOW, "push", "d-1") {
            headers.push((k.to_ascii_lowercase(), v.into_bytes()));
        }
    }
    let req = Request {
        method: row.method,
        headers: &headers,
        query: "",
        body: row.body.as_bytes().to_vec(),
        ip: Ipv4Addr::new(192, 0, 2, 7).into(),
        port: 40000,
        now_unix: NOW,
        replay_of: row.replay_of,
    };
    let mut asked = false;
    let d = decide(
        &h,
        req,
        &RunnerConfig::for_tests(),
        |_| {
            asked = true;
            row.seen
        },
        || "hc-made-up".to_string(),
    );
    (d, asked)
}

#[test]
fn decide_paths() {
    use Verdict::*;
    let rows = [
        Row {
            name: "method refused, no provider",
            asks_window: false,
            hook: r#"{"id": "m", "http-methods": ["POST"]}"#,
            method: "PUT",
            verdict: Rejected,
            status: 405,
            message: "method not allowed for this hook",
            ..ROW
        },
        Row {
            name: "method refused before the signature check",
            asks_window: false,
            hook: r#"{"id": "gh", "provider": "github", "secrets": ["s3cret"], "http-methods": ["POST"]}"#,
            method: "GET",
            signed_with: Some("s3cret"),
            verdict: Rejected,
            status: 405,
            verification: Verification::NotChecked,
            message: "method not allowed for this hook",
            ..ROW
        },
        Row {
            name: "address refused",
            asks_window: false,
            hook: r#"{"id": "gh", "provider": "github", "secrets": ["s3cret"], "allowed-ips": ["10.0.0.0/8"]}"#,
            signed_with: Some("s3cret"),
            verdict: Rejected,
            status: 403,
            verification: Verification::NotChecked,
            message: "address not allowed",
            ..ROW
        },
        Row {
            name: "signature ok",
            hook: GITHUB,
            signed_with: Some("s3cret"),
            status: 202,
            verification: Verification::Ok,
            ..ROW
        },
        Row {
            name: "signature failed",
            asks_window: false,
            hook: GITHUB,
            signed_with: Some("not-the-secret"),
            verdict: Rejected,
            status: 403,
            verification: Verification::Failed,
            message: "signature does not match",
            ..ROW
        },
        Row {
            name: "signature header missing",
            asks_window: false,
            hook: GITHUB,
            headers: &[("x-github-event", "push"), ("x-github-delivery", "d-1")],
            verdict: Rejected,
            status: 401,
            verification: Verification::Failed,
            message: "missing header x-hub-signature-256",
            ..ROW
        },
        Row {
            name: "dedup hit, answered before the body is read",
            hook: GITHUB,
            signed_with: Some("s3cret"),
            body: "{",
            seen: true,
            verdict: Duplicate,
            verification: Verification::Ok,
            message: "duplicate delivery",
            ..ROW
        },
        Row {
            name: "dedup hit without a provider",
            headers: &[("x-github-delivery", "d-1")],
            seen: true,
            verdict: Duplicate,
            message: "duplicate delivery",
            ..ROW
        },
        Row {
            name: "JSON check failure",
            hook: GITHUB,
            signed_with: Some("s3cret"),
            body: "{\"a\": ",
            verdict: Rejected,
            status: 400,
            verification: Verification::Ok,
            message: "invalid JSON payload: unexpected end of input at byte 6",
            ..ROW
        },
        Row {
            name: "events filter",
            hook: r#"{"id": "gh", "provider": "github", "secrets": ["s3cret"], "events": ["issues"]}"#,
            signed_with: Some("s3cret"),
            verdict: Ignored,
            status: 202,
            verification: Verification::Ok,
            message: "event \"push\" is not one of this hook's events",
            ..ROW
        },
        Row {
            name: "branches filter",
            hook: r#"{"id": "gh", "provider": "github", "secrets": ["s3cret"], "branches": ["main"]}"#,
            signed_with: Some("s3cret"),
            body: r#"{"ref": "refs/heads/dev"}"#,
            verdict: Ignored,
            status: 202,
            verification: Verification::Ok,
            message: "branch \"dev\" is not one of this hook's branches",
            ..ROW
        },
        Row {
            name: "trigger rule false",
            asks_window: false,
            hook: r#"{"id": "r", "trigger-rule": {"match": {"type": "value", "value": "main",
                      "parameter": {"source": "payload", "name": "ref"}}}}"#,
            body: r#"{"ref": "dev"}"#,
            verdict: Mismatch,
            message: "trigger rules were not satisfied",
            ..ROW
        },
        Row {
            name: "trigger rule signature failed",
            asks_window: false,
            hook: r#"{"id": "r", "trigger-rule": {"match": {"type": "payload-hmac-sha256", "secret": "s3cret",
                      "parameter": {"source": "header", "name": "X-Signature"}}}}"#,
            headers: &[("x-signature", "sha256=00")],
            verdict: Rejected,
            status: 403,
            verification: Verification::Failed,
            message: "invalid payload signature",
            ..ROW
        },
        Row { name: "accepted without a run", ..ROW },
        Row { name: "accepted with a run", hook: r#"{"id": "run", "execute-command": "/bin/true"}"#, ..ROW },
        Row {
            name: "accepted, answered with the run's output",
            hook: r#"{"id": "run", "execute-command": "/bin/true", "include-command-output-in-response": true}"#,
            status: 0,
            ..ROW
        },
        Row {
            name: "replay: verified again, keeps its id",
            hook: GITHUB,
            signed_with: Some("s3cret"),
            replay_of: Some("first-id"),
            status: 202,
            verification: Verification::Ok,
            ..ROW
        },
    ];
    for row in &rows {
        let (d, asked) = decide_row(row);
        let r = &d.record;
        let got = (r.outcome, r.status, r.verification, r.message.as_str());
        assert_eq!(got, (row.verdict, row.status, row.verification, row.message), "{}", row.name);
        assert_eq!(d.response.as_ref().map_or(0, |r| r.status), row.status, "{}", row.name);
        let accepted = row.verdict == Verdict::Accepted;
        assert_eq!(r.summary.is_some(), accepted, "{}", row.name);
        assert_eq!(d.spec.is_some(), accepted && row.hook.contains("execute-command"), "{}", row.name);
        assert_eq!(d.signature_failure.is_some(), row.verification == Verification::Failed, "{}", row.name);
        assert_eq!(asked, row.asks_window, "{}", row.name);
    }
}

#[test]
fn decide_names_deliveries() {
    let id = |row: Row| decide_row(&row).0.record.delivery;
    assert_eq!(id(Row { hook: GITHUB, signed_with: Some("s3cret"), ..ROW }), "d-1", "the provider's id");
    assert_eq!(id(Row { headers: &[("x-gitlab-event-uuid", "u-2")], ..ROW }), "u-2", "an id header");
    assert_eq!(id(ROW), "hc-made-up", "none given: made up");
    assert_eq!(id(Row { replay_of: Some("hc-1-00"), ..ROW }), "hc-1-00", "a replay keeps its id");
    assert_eq!(id(Row { hook: GITHUB, signed_with: Some("bad"), ..ROW }), "", "not believed unverified");
}

#[test]
fn made_up_ids_count_from_their_seed() {
    let mut ids = MadeUpIds::new(u64::MAX);
    assert_eq!(ids.make(5), "hc-5-ffffffffffffffff");
    assert_eq!(ids.make(6), "hc-6-0000000000000000");
}

#[test]
fn records_serialise_as_before() {
    let (d, _) = decide_row(&Row { hook: GITHUB, signed_with: Some("s3cret"), ..ROW });
    let mut r = d.record;
    r.run = Some(7);
    r.replay = true;
    // The keys in name order, as when the record was a `serde_json::Value`; `verification` added.
    let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&r.to_json())
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        [
            "delivery",
            "event",
            "hook",
            "message",
            "outcome",
            "provider",
            "replay",
            "run",
            "source",
            "status",
            "summary",
            "verification"
        ]
    );
    let text = r.to_json();
    assert!(text.starts_with(r#"{"delivery":"d-1","event":"push","hook":"gh","message":"accepted","outcome":"accepted","provider":"github","replay":true,"run":7,"source":"192.0.2.7","status":202,"summary":{"#), "{text}");
    assert!(text.ends_with(r#","verification":"ok"}"#), "{text}");
    assert_eq!(DeliveryRecord::read(&text), Some(r.clone()), "read back");
    // Without a run or replay those keys are absent, as before.
    r.run = None;
    r.replay = false;
    let text = r.to_json();
    assert!(!text.contains("\"run\"") && !text.contains("\"replay\""), "{text}");
}

#[test]
fn legacy_records_get_a_verification_from_their_words() {
    let read = |provider: bool, outcome: &str, status: u16, message: &str| {
        let provider = if provider { json!("github") } else { Value::Null };
        let v = json!({"delivery": "", "event": null, "hook": "h", "message": message, "outcome": outcome,
                       "provider": provider, "source": "127.0.0.1", "status": status});
        DeliveryRecord::read(&v.to_string()).unwrap().verification
    };
    use Verification::*;
    assert_eq!(read(true, "accepted", 202, "accepted"), Ok);
    assert_eq!(read(true, "rejected", 403, "signature does not match"), Failed);
    assert_eq!(read(true, "rejected", 401, "missing header x-hub-signature-256"), Failed);
    assert_eq!(read(true, "rejected", 403, "timestamp is 900 s old, outside the replay window"), Failed);
    assert_eq!(read(true, "rejected", 403, "address not allowed"), NotChecked);
    assert_eq!(read(true, "rejected", 405, "method not allowed for this hook"), NotChecked);
    assert_eq!(read(true, "rejected", 503, "run queue full"), Ok);
    assert_eq!(read(false, "accepted", 200, "accepted"), None);
    assert_eq!(read(false, "rejected", 403, "invalid payload signature"), Failed);
    // A record that has the field keeps it, whatever its words say.
    let v = json!({"delivery": "", "event": null, "hook": "h", "message": "signature does not match",
                   "outcome": "rejected", "provider": "github", "source": "::1", "status": 403,
                   "verification": "not_checked"});
    assert_eq!(DeliveryRecord::read(&v.to_string()).unwrap().verification, NotChecked);
}

#[test]
fn the_decision_says_in_words_which_secret_matched_or_why_none_did_and_what_the_rules_said() {
    let words = |row: Row| {
        let d = decide_row(&row).0;
        (d.verification_detail, d.rule)
    };
    let gh = |secret| Row { hook: GITHUB, signed_with: secret, ..ROW };
    assert_eq!(words(gh(Some("s3cret"))), ("github signature matches secret 1 of 1".into(), None));
    let (wrong, _) = words(gh(Some("bad")));
    assert!(wrong.starts_with("wrong signature: none of the hook's 1 secret matches it"), "{wrong}");
    assert_eq!(words(gh(None)).0, "missing header x-hub-signature-256: the request is not signed");
    assert_eq!(words(ROW).0, "the hook has no provider: no signature to check");
    let filtered =
        r#"{"id": "gh", "provider": "github", "secrets": ["s3cret"], "events": ["push"], "branches": ["main"]}"#;
    let rule = words(Row { hook: filtered, signed_with: Some("s3cret"), body: r#"{"ref":"refs/heads/dev"}"#, ..ROW }).1;
    assert_eq!(rule.as_deref(), Some(r#"branch "dev" is not one of this hook's branches"#));
    let ruled = r#"{"id": "r", "trigger-rule": {"or": [
        {"match": {"type": "value", "value": "main", "parameter": {"source": "payload", "name": "branch"}}},
        {"not": {"match": {"type": "value", "value": "s3cret", "parameter": {"source": "header", "name": "X-Token"}}}}
    ]}}"#;
    let rule = words(Row { hook: ruled, headers: &[("x-token", "s3cret")], body: r#"{"branch":"dev"}"#, ..ROW }).1;
    assert_eq!(
        rule.as_deref(),
        Some(
            r#"trigger-rule does not hold: or: none holds (payload "branch" is "dev", which is not "main"; not: header "X-Token" equals the expected value)"#
        ),
        "a header compared with a value is never shown"
    );
}
