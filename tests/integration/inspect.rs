//! The status page's delivery inspector and admin actions (issue 19) without a browser:
//! `GET /api/deliveries/{event}` field by field for an accepted and for refused deliveries
//! (verification and rules in words, masking and `?reveal=1`, truncated bodies and the raw
//! bytes, the bounded store of refused requests), who may read it, and the CSRF token that a
//! cookie-authenticated POST needs besides its Origin. The browser half is
//! `tests/browser/inspect.mjs`.

use crate::util::*;
use serde_json::{json, Value};
use std::time::Duration;

const ADMIN: &str = "hc_inspect_admin_token";
const READER: &str = "hc_inspect_reader_token";
const OLD_SECRET: &str = "old-secret";
const SECRET: &str = "new-secret";

fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn config(more: Value) -> String {
    let mut c = json!({
        "public": [{"topics": ["$deliveries", "$runs", "$runs/**"], "scopes": ["subscribe"], "from": ["127.0.0.0/8", "::1"]}],
        "tokens": [
            {"name": "admin", "sha256": sha256_hex(ADMIN), "scopes": ["admin", "subscribe", "publish"], "topics": ["**"]},
            {"name": "reader", "sha256": sha256_hex(READER), "scopes": ["subscribe"], "topics": ["**"]},
        ],
        "hooks": [
            {"id": "gh", "provider": "github", "secrets": [OLD_SECRET, SECRET], "events": ["push"], "branches": ["main"],
             "execute-command": "true"},
            {"id": "ruled", "trigger-rule": {"and": [
                {"match": {"type": "value", "value": "refs/heads/main", "parameter": {"source": "payload", "name": "ref"}}},
                {"match": {"type": "regex", "regex": "^prod-", "parameter": {"source": "header", "name": "X-Env"}}}
            ]}},
        ],
    });
    if let (Value::Object(c), Value::Object(m)) = (&mut c, more) {
        c.extend(m);
    }
    c.to_string()
}

fn sign(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>())
}

fn push(d: &Daemon, id: &str, sig: Option<&str>, body: &[u8]) -> Resp {
    let mut h = vec![("Content-Type", "application/json"), ("X-GitHub-Event", "push"), ("X-GitHub-Delivery", id)];
    h.extend(sig.map(|s| ("X-Hub-Signature-256", s)));
    d.request("POST", "/hooks/gh?x=1&y=%3Cb%3E", &h, body)
}

/// The `$deliveries` event ids so far, oldest first.
fn delivery_events(d: &Daemon) -> Vec<u64> {
    let v = d.get("/poll?topics=%24deliveries&since=0&limit=1000").json();
    v["events"].as_array().unwrap().iter().map(|e| e["id"].as_u64().unwrap()).collect()
}

fn inspect(d: &Daemon, path: &str) -> Resp {
    d.request("GET", path, &[("Authorization", &format!("Bearer {ADMIN}"))], b"")
}

#[test]
fn a_delivery_is_inspected_field_by_field_and_a_refused_one_says_why() {
    let d = Daemon::start(&config(json!({})));
    let body = br#"{"ref":"refs/heads/main","head_commit":{"id":"abc","url":"https://example.com/c/abc"}}"#;
    assert_eq!(push(&d, "ok-1", Some(&sign(SECRET, body)), body).status, 202);
    assert_eq!(push(&d, "bad-1", Some(&sign("guess", body)), body).status, 403);
    assert_eq!(push(&d, "none-1", None, body).status, 401);
    let dev = br#"{"ref":"refs/heads/dev"}"#;
    assert_eq!(push(&d, "dev-1", Some(&sign(OLD_SECRET, dev)), dev).status, 202);
    let r = d.request(
        "POST",
        "/hooks/ruled",
        &[("X-Env", "staging"), ("Content-Type", "application/json")],
        br#"{"ref":"refs/heads/main"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let ids = delivery_events(&d);
    assert_eq!(ids.len(), 5);

    // Accepted: which secret, what the filters said, what it published, its run, the request.
    let ok = inspect(&d, &format!("/api/deliveries/{}", ids[0]));
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.header("cache-control"), Some("no-store"));
    let v = ok.json();
    assert_eq!((v["outcome"].as_str(), v["delivery"].as_str()), (Some("accepted"), Some("ok-1")));
    assert_eq!(v["verification"], "ok");
    assert_eq!(v["verification_detail"], "github signature matches secret 2 of 2");
    assert_eq!(v["rule"], r#"event "push" is one of the hook's events; branch "main" is one of the hook's branches"#);
    assert_eq!(v["published"]["topic"], "hooks/gh");
    assert!(v["published"]["id"].as_u64().unwrap() < ids[0]);
    assert_eq!(v["run"], 1);
    assert_eq!(v["run_record"]["hook"], "gh");
    assert_eq!(v["summary"]["head_commit"]["url"], "https://example.com/c/abc");
    assert_eq!(v["replayable"], true);
    let req = &v["request"];
    assert_eq!((req["method"].as_str(), req["path"].as_str()), (Some("POST"), Some("/hooks/gh")));
    assert_eq!(req["query"], "x=1&y=%3Cb%3E");
    assert_eq!((req["source"].as_str(), &req["via"]), (Some("127.0.0.1"), &Value::Null));
    let header = |v: &Value, name: &str| {
        v["request"]["headers"].as_array().unwrap().iter().find(|h| h[0] == name).cloned().unwrap_or(Value::Null)
    };
    assert_eq!(header(&v, "x-hub-signature-256"), json!(["x-hub-signature-256", "[masked]", true]));
    assert_eq!(header(&v, "x-github-event"), json!(["x-github-event", "push", false]));
    assert_eq!(req["content_type"], "application/json");
    assert_eq!(req["body"]["text"], std::str::from_utf8(body).unwrap());
    assert_eq!((req["body"]["bytes"].as_u64(), &req["body"]["truncated"]), (Some(body.len() as u64), &json!(false)));
    // The same by its name, and the signature revealed on request (and logged).
    let named = inspect(&d, "/api/deliveries/gh/ok-1").json();
    assert_eq!(named["event_id"], ids[0]);
    let shown = inspect(&d, &format!("/api/deliveries/{}?reveal=1", ids[0])).json();
    assert_eq!(header(&shown, "x-hub-signature-256")[1], sign(SECRET, body));
    assert!(eventually(Duration::from_secs(5), || d
        .log_text()
        .contains("revealed the secret headers of delivery ok-1")));

    // Refused: why, in words, and the request all the same.
    let bad = inspect(&d, &format!("/api/deliveries/{}", ids[1])).json();
    assert_eq!((bad["outcome"].as_str(), bad["status"].as_u64()), (Some("rejected"), Some(403)));
    assert!(bad["verification_detail"].as_str().unwrap().starts_with("wrong signature: none of the hook's 2 secrets"));
    assert_eq!(bad["request"]["body"]["text"], std::str::from_utf8(body).unwrap());
    assert_eq!(bad["replayable"], false);
    assert_eq!(bad["run"], Value::Null);
    let none = inspect(&d, &format!("/api/deliveries/{}", ids[2])).json();
    assert_eq!(none["verification_detail"], "missing header x-hub-signature-256: the request is not signed");
    let dev = inspect(&d, &format!("/api/deliveries/{}", ids[3])).json();
    assert_eq!(dev["outcome"], "ignored");
    assert_eq!(dev["verification_detail"], "github signature matches secret 1 of 2");
    assert_eq!(dev["rule"], r#"branch "dev" is not one of this hook's branches"#);
    let ruled = inspect(&d, &format!("/api/deliveries/{}", ids[4])).json();
    assert_eq!(ruled["outcome"], "mismatch");
    assert_eq!(ruled["verification_detail"], "the hook has no provider: no signature to check");
    assert_eq!(
        ruled["rule"],
        r#"trigger-rule does not hold: and: header "X-Env" is "staging", which does not match /^prod-/"#
    );

    // Unknown ones, and who may ask.
    assert_eq!(inspect(&d, "/api/deliveries/1").status, 404);
    assert_eq!(inspect(&d, "/api/deliveries/gh/nope").status, 404);
    let path = format!("/api/deliveries/{}", ids[0]);
    assert_eq!(d.get(&path).status, 401, "loopback's public rule does not open the inspector");
    assert_eq!(d.request("GET", &path, &[("Authorization", &format!("Bearer {READER}"))], b"").status, 403);
}

#[test]
fn big_bodies_are_cut_in_the_record_and_whole_at_the_raw_link() {
    let d = Daemon::start(&config(json!({})));
    let mut body = format!(r#"{{"ref":"refs/heads/main","pad":"{}"}}"#, "é".repeat(40_000)).into_bytes();
    body.extend_from_slice(b" ");
    assert_eq!(push(&d, "big-1", Some(&sign(SECRET, &body)), &body).status, 202);
    let binary: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
    assert_eq!(push(&d, "bin-1", Some(&sign("guess", &binary)), &binary).status, 403);
    let ids = delivery_events(&d);
    let v = inspect(&d, &format!("/api/deliveries/{}", ids[0])).json();
    let b = &v["request"]["body"];
    assert_eq!((b["bytes"].as_u64(), &b["truncated"]), (Some(body.len() as u64), &json!(true)));
    let text = b["text"].as_str().unwrap();
    assert!(text.len() <= 64 * 1024 && text.len() > 60 * 1024, "{}", text.len());
    let raw = inspect(&d, b["raw"].as_str().unwrap());
    assert_eq!(raw.status, 200);
    assert_eq!(raw.header("content-type"), Some("application/octet-stream"));
    assert_eq!(raw.header("content-security-policy"), Some("sandbox"));
    assert_eq!(raw.body, body);
    let bin = inspect(&d, &format!("/api/deliveries/{}", ids[1])).json();
    assert_eq!(bin["request"]["body"]["encoding"], "base64");
    assert_eq!(d.get(&format!("/api/deliveries/{}/body", ids[0])).status, 401);
}

#[test]
fn refused_requests_are_kept_within_their_bounds() {
    let d = Daemon::start(&config(json!({ "journal": { "max_rejected_deliveries": 2 } })));
    for i in 0..3 {
        assert_eq!(push(&d, &format!("bad-{i}"), None, b"{}").status, 401);
    }
    let ids = delivery_events(&d);
    let kept: Vec<bool> =
        ids.iter().map(|e| !inspect(&d, &format!("/api/deliveries/{e}")).json()["request"].is_null()).collect();
    assert_eq!(kept, [false, true, true]);
    let none = Daemon::start(&config(json!({ "journal": { "max_rejected_bytes": 0 } })));
    assert_eq!(push(&none, "bad", None, b"{}").status, 401);
    let e = delivery_events(&none)[0];
    let v = inspect(&none, &format!("/api/deliveries/{e}")).json();
    assert!(v["request"].is_null() && v["verification"] == "failed", "{v}");
}

/// Every admin action the page can take, and two more state changes the cookie could make.
fn admin_posts(d: &Daemon) -> Vec<String> {
    let body = br#"{"ref":"refs/heads/main"}"#;
    assert_eq!(push(d, "csrf-1", Some(&sign(SECRET, body)), body).status, 202);
    let run = {
        let mut id = None;
        assert!(eventually(Duration::from_secs(10), || {
            let runs = inspect(d, "/api/runs").json();
            id = runs["runs"][0]["id"].as_u64().filter(|_| runs["runs"][0]["state"] == "succeeded");
            id.is_some()
        }));
        id.unwrap()
    };
    vec![
        format!("/api/runs/{run}/retry"),
        format!("/api/runs/{run}/cancel"),
        "/api/deliveries/gh/csrf-1/replay".to_string(),
        "/api/ticket".to_string(),
        "/publish/x".to_string(),
    ]
}

#[test]
fn a_cookie_post_needs_its_csrf_token_as_well_as_its_origin() {
    let d = Daemon::start(&config(json!({})));
    let posts = admin_posts(&d);
    let cookie = format!("hookcast_token={ADMIN}");
    let csrf = {
        let s = d.request("GET", "/api/status?brief=1", &[("Cookie", &cookie)], b"").json();
        s["csrf"].as_str().expect("a CSRF token for the cookie session").to_string()
    };
    assert_eq!(csrf.len(), 64);
    let bearer = d.request("GET", "/api/status?brief=1", &[("Authorization", &format!("Bearer {ADMIN}"))], b"");
    assert!(bearer.json().get("csrf").is_none(), "a bearer client needs none");
    assert!(d.get("/api/status?brief=1").json().get("csrf").is_none());
    let own = ("Origin", "http://localhost");
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    for path in &posts {
        // A cross-site form, with the cookie the browser adds: refused, token or not.
        for extra in [vec![], vec![("X-CSRF-Token", csrf.as_str())]] {
            let mut h = vec![("Cookie", cookie.as_str()), form, ("Origin", "http://localhost:8080")];
            h.extend(extra);
            let r = d.request("POST", path, &h, b"x=1");
            assert_eq!(r.status, 403, "{path}: {}", r.text());
        }
        // The page's own origin without the token, with a wrong one: refused.
        for token in [None, Some("0".repeat(64))] {
            let mut h = vec![("Cookie", cookie.as_str()), own];
            h.extend(token.as_deref().map(|t| ("X-CSRF-Token", t)));
            let r = d.request("POST", path, &h, b"");
            assert_eq!(r.status, 403, "{path} with token {token:?}: {}", r.text());
            assert!(r.text().contains("X-CSRF-Token"), "{}", r.text());
        }
    }
    assert_eq!(d.metric("hookcast_deliveries_total{hook=\"gh\",outcome=\"accepted\"}"), 1.0, "nothing replayed");
    assert_eq!(inspect(&d, "/api/runs").json()["runs"].as_array().unwrap().len(), 1, "nothing retried");
    // With both: done. A bearer token needs neither.
    let h = [("Cookie", cookie.as_str()), own, ("X-CSRF-Token", csrf.as_str())];
    for (path, status) in posts.iter().zip([202, 409, 202, 200, 202]) {
        let r = d.request("POST", path, &h, b"");
        assert_eq!(r.status, status, "{path}: {}", r.text());
    }
    let bearer = format!("Bearer {ADMIN}");
    assert_eq!(d.request("POST", &posts[0], &[("Authorization", &bearer)], b"").status, 202);
}

/// The page's size budget (README, "Status page"): HTML, script and stylesheet as served, 48 KiB
/// together, not compressed.
#[test]
fn the_page_stays_within_its_size_budget() {
    let d = Daemon::start(&config(json!({})));
    let page = d.get("/");
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
    let html = page.text();
    let mut total = page.body.len();
    for asset in ["/status/app.js", "/status/style.css"] {
        let start = html.find(asset).unwrap_or_else(|| panic!("the page does not load {asset}"));
        let url = &html[start..start + html[start..].find('"').unwrap()];
        let r = d.get(url);
        assert_eq!(r.status, 200, "{url}");
        total += r.body.len();
    }
    assert!(total < 48 * 1024, "the page is {total} bytes, over its 48 KiB budget");
}

#[test]
fn a_search_finds_kept_bodies_for_an_admin_only() {
    let d = Daemon::start(&config(json!({})));
    let body = br#"{"ref":"refs/heads/main","note":"Needle in here"}"#;
    assert_eq!(push(&d, "ok-1", Some(&sign(SECRET, body)), body).status, 202);
    assert_eq!(push(&d, "bad-1", Some(&sign("guess", body)), body).status, 403);
    assert_eq!(push(&d, "other", Some(&sign(SECRET, b"{}")), b"{}").status, 202);
    let ids = delivery_events(&d);
    let found = inspect(&d, "/api/deliveries?q=needle").json();
    assert_eq!(
        found["matches"],
        json!([{"hook": "gh", "delivery": "ok-1", "event_id": null}, {"hook": "gh", "delivery": "", "event_id": ids[1]}])
    );
    assert_eq!(d.get("/api/deliveries?q=needle").status, 401);
    assert_eq!(
        d.request("GET", "/api/deliveries?q=needle", &[("Authorization", &format!("Bearer {READER}"))], b"").status,
        403
    );
    assert_eq!(inspect(&d, "/api/deliveries?q=").status, 400);
}
