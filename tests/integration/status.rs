//! The status page (issue 7) without a browser: assets and their types and caching, the
//! `/api/status` snapshot, loopback-versus-token protection, and the login/logout cookies.
//! The browser half is `tests/browser/status.mjs`.

use crate::util::*;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::time::Duration;

const ADMIN: &str = "hc_status_admin_token";
const READER: &str = "hc_status_reader_token";
/// The default config's rule that opens the page to loopback.
const PAGE_RULE: &str =
    r#"{"topics": ["$deliveries", "$runs", "$runs/**"], "scopes": ["subscribe"], "from": ["127.0.0.0/8", "::1"]}"#;

fn sha256_hex(s: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(s.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// No public rules; an admin token (that may also subscribe to the page's topics) and a
/// token without the admin scope; cloudflared-style trusted proxy on loopback.
fn locked_config() -> String {
    json!({
        "trusted_proxies": ["127.0.0.1/32"],
        "tokens": [
            {"name": "admin", "sha256": sha256_hex(ADMIN), "scopes": ["admin", "subscribe"],
             "topics": ["$deliveries", "$runs", "$runs/**"]},
            {"name": "reader", "sha256": sha256_hex(READER), "scopes": ["subscribe"], "topics": ["**"]},
        ],
        "hooks": [{"id": "demo", "response-message": "ok\n"}],
    })
    .to_string()
}

fn form(d: &Daemon, path: &str, body: &str, extra: &[(&str, &str)]) -> Resp {
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    headers.extend_from_slice(extra);
    d.request("POST", path, &headers, body.as_bytes())
}

#[test]
fn assets_are_served_with_types_and_caching() {
    let d = Daemon::start_default();
    let page = d.get("/");
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(page.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    let csp = page.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = page.text();
    assert!(html.len() < 4096 && html.contains("id=\"conn\""), "{html}");
    let v = html.split("/status/app.js?v=").nth(1).and_then(|s| s.split('"').next()).expect("a versioned script");
    assert!(html.contains(&format!("/status/style.css?v={v}")));

    let js = d.get(&format!("/status/app.js?v={v}"));
    assert_eq!(js.status, 200);
    assert_eq!(js.header("content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(js.header("cache-control"), Some("public, max-age=31536000, immutable"));
    assert_eq!(js.header("x-content-type-options"), Some("nosniff"));
    assert!(js.text().contains("new EventSource("));
    let css = d.get("/status/style.css");
    assert_eq!(css.status, 200);
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(css.header("cache-control"), Some("no-cache"), "an unversioned asset is revalidated");
    assert!(css.text().contains("prefers-color-scheme: dark"));
    let total = html.len() + js.body.len() + css.body.len();
    assert!(total < 48 * 1024, "the page is {total} bytes");

    let mut c = d.connect();
    c.write_all(b"HEAD / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").unwrap();
    let mut head = String::new();
    c.read_to_string(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200 ") && head.ends_with("\r\n\r\n"), "{head}");
    assert_eq!(d.get("/status/nope.js").status, 404);
    assert_eq!(d.request("POST", "/", &[], b"").status, 405);
}

#[test]
fn api_status_shape() {
    let dir = TempDir::new("status-shape");
    let script = dir.0.join("deploy.sh");
    std::fs::write(&script, "#!/bin/sh\nprintf '\\033[32mhello\\033[0m %s\\n' \"$1\"\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let cfg = format!(
        r#"{{"public": [{PAGE_RULE}], "hooks": [
            {{"id": "demo", "response-message": "ok\n", "http-methods": ["POST"]}},
            {{"id": "site", "execute-command": {script:?}, "pass-arguments-to-command": [{{"source": "string", "name": "world"}}]}},
            {{"id": "quiet"}}
        ]}}"#,
        script = script.to_str().unwrap()
    );
    let d = Daemon::start(&cfg);
    assert_eq!(d.request("POST", "/hooks/demo", &[], b"{}").status, 200);
    assert_eq!(d.request("PUT", "/hooks/demo", &[], b"{}").status, 405);
    assert!(d.request("POST", "/hooks/site", &[], b"{}").status < 300);
    let done = eventually(Duration::from_secs(5), || {
        d.get("/api/status").json()["runs"][0]["state"].as_str().is_some_and(|s| s == "succeeded")
    });
    assert!(done, "the run did not finish: {}", d.get("/api/status").text());

    let r = d.get("/api/status");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let s = r.json();
    assert_eq!(s["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(s["auth"], "public");
    assert_eq!(s["can_subscribe"], true);
    assert!(s["uptime_ms"].is_u64() && s["last_event_id"].as_u64().unwrap() > 0);
    for t in ["http", "sse", "ws", "poll"] {
        assert!(s["connections"][t]["active"].is_u64() && s["connections"][t]["total"].is_u64(), "{t}: {s}");
    }
    assert!(s["connections"]["http"]["total"].as_u64().unwrap() >= 4);
    assert!(s["events"]["published"].as_u64().unwrap() >= 5, "{s}");
    assert!(s["events"]["per_sec_since_start"].is_number());
    assert!(s["history"]["events"].is_u64());
    assert_eq!(s["journal"], Value::Null);

    let hooks = s["hooks"].as_array().unwrap();
    assert_eq!(hooks.iter().map(|h| h["id"].as_str().unwrap()).collect::<Vec<_>>(), ["demo", "site", "quiet"]);
    // demo's last delivery is the refused PUT, after the accepted POST.
    let last = &hooks[0]["last_delivery"];
    assert_eq!(last["outcome"], "rejected", "{last}");
    assert_eq!(last["status"], 405);
    assert_eq!(last["verification"], "none", "a hook without a provider is unsigned");
    assert!(last["time"].as_str().unwrap().ends_with('Z') && last["event_id"].is_u64());
    assert_eq!(hooks[1]["command"], true);
    assert_eq!(hooks[1]["last_delivery"]["outcome"], "accepted");
    assert_eq!(hooks[2]["last_delivery"], Value::Null);

    let feed = s["deliveries"].as_array().unwrap();
    assert_eq!(feed.len(), 3, "{feed:?}");
    assert_eq!(feed[0]["hook"], "site", "newest first");
    assert_eq!(feed[2]["hook"], "demo");
    assert!(feed.iter().all(|d| d["time"].is_string() && d["event_id"].is_u64()));

    let run = &s["runs"][0];
    assert_eq!(run["hook"], "site");
    assert_eq!(run["output"][0]["line"], "\u{1b}[32mhello\u{1b}[0m world", "{run}");
    assert_eq!(run["output"][0]["stream"], "stdout");

    // The page's periodic refresh leaves the lists out.
    let brief = d.get("/api/status?brief=1").json();
    assert!(brief["connections"].is_object() && brief.get("hooks").is_none() && brief.get("runs").is_none());
}

#[test]
fn last_delivery_survives_a_restart_through_history() {
    let dir = TempDir::new("status-restart");
    let cfg = format!(r#"{{"public": [{PAGE_RULE}], "hooks": [{{"id": "demo", "response-message": "ok\n"}}]}}"#);
    let state = dir.0.to_str().unwrap().to_string();
    let mut d = Daemon::start_args(Some(&cfg), &["--state-dir", &state]);
    assert_eq!(d.request("POST", "/hooks/demo", &[], b"{}").status, 200);
    d.terminate();
    let d = Daemon::start_args(Some(&cfg), &["--state-dir", &state]);
    let s = d.get("/api/status").json();
    assert_eq!(s["hooks"][0]["last_delivery"]["outcome"], "accepted", "{s}");
    assert_eq!(s["deliveries"].as_array().unwrap().len(), 1);
    assert!(s["journal"]["segments"].as_u64().unwrap() >= 1, "{s}");
}

#[test]
fn loopback_is_open_by_the_public_rule_and_everyone_else_needs_an_admin_token() {
    // The default config: open to loopback...
    let d = Daemon::start_default();
    assert_eq!(d.get("/").status, 200);
    assert_eq!(d.get("/api/status").json()["auth"], "public");
    let (_stream, head) = sse(&d, "/events?topics=%24deliveries,%24runs,%24runs/*&format=json", &[]);
    assert!(head.starts_with("HTTP/1.1 200"), "the page's own subscription: {head}");

    // ...but not to a remote client behind a trusted proxy.
    let cfg = format!(r#"{{"trusted_proxies": ["127.0.0.1/32"], "public": [{PAGE_RULE}]}}"#);
    let d = Daemon::start(&cfg);
    let remote = [("X-Forwarded-For", "203.0.113.9")];
    assert_eq!(d.request("GET", "/", &[], b"").status, 200, "the proxy itself is local");
    let page = d.request("GET", "/", &remote, b"");
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), Some("/login"));
    let api = d.request("GET", "/api/status", &remote, b"");
    assert_eq!(api.status, 401);
    assert_eq!(api.header("www-authenticate"), Some("Bearer realm=\"hookcast\""));
    assert_eq!(api.json()["status"], 401);
    assert_eq!(d.request("GET", "/status/app.js", &remote, b"").status, 200, "assets hold no data");

    // Without public rules, loopback too needs the token: bearer, cookie or ?token=.
    let d = Daemon::start(&locked_config());
    assert_eq!(d.get("/").status, 303);
    assert_eq!(d.get("/api/status").status, 401);
    let bad = d.request("GET", "/api/status", &[("Authorization", "Bearer nope")], b"");
    assert_eq!((bad.status, bad.json()["error"].as_str()), (401, Some("invalid token")));
    let reader = d.request("GET", "/api/status", &[("Authorization", &format!("Bearer {READER}"))], b"");
    assert_eq!(reader.status, 403, "a token without the admin scope");
    let admin = d.request("GET", "/api/status", &[("Authorization", &format!("Bearer {ADMIN}"))], b"");
    assert_eq!(admin.status, 200);
    assert_eq!(admin.json()["auth"], "token");
    assert_eq!(admin.json()["can_subscribe"], true);
    let cookie = format!("theme=dark; hookcast_token={ADMIN}");
    assert_eq!(d.request("GET", "/", &[("Cookie", &cookie)], b"").status, 200);
    assert_eq!(d.get(&format!("/api/status?token={ADMIN}")).status, 200);
    let reader_page = d.request("GET", "/", &[("Cookie", &format!("hookcast_token={READER}"))], b"");
    assert_eq!(reader_page.status, 303);
}

#[test]
fn login_sets_the_cookie_and_logout_clears_it() {
    let d = Daemon::start(&locked_config());
    let f = d.get("/login");
    assert_eq!(f.status, 200);
    assert_eq!(f.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(f.text().contains("<form method=\"post\" action=\"/login\""));

    let wrong = form(&d, "/login", "token=nope", &[]);
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("Wrong token.") && wrong.header("set-cookie").is_none());
    let empty = form(&d, "/login", "token=", &[]);
    assert_eq!(empty.status, 400);
    let reader = form(&d, "/login", &format!("token={READER}"), &[]);
    assert_eq!(reader.status, 403);
    assert!(reader.header("set-cookie").is_none());

    let ok = form(&d, "/login", &format!("token={ADMIN}"), &[("Origin", "http://localhost")]);
    assert_eq!(ok.status, 303, "{}", ok.text());
    assert_eq!(ok.header("location"), Some("/"));
    assert_eq!(
        ok.header("set-cookie"),
        Some(format!("hookcast_token={ADMIN}; Path=/; HttpOnly; SameSite=Strict; Max-Age=2592000").as_str())
    );
    // Through a proxy that says the client used HTTPS: Secure.
    let https = form(&d, "/login", &format!("token={ADMIN}"), &[("X-Forwarded-Proto", "https")]);
    assert!(https.header("set-cookie").unwrap().ends_with("; Secure"), "{:?}", https.header("set-cookie"));
    // A form posted from another site logs nobody in.
    let csrf = form(&d, "/login", &format!("token={ADMIN}"), &[("Origin", "https://evil.example")]);
    assert_eq!(csrf.status, 403);
    assert!(csrf.header("set-cookie").is_none());

    let out = d.request("POST", "/logout", &[("Cookie", &format!("hookcast_token={ADMIN}"))], b"");
    assert_eq!(out.status, 303);
    assert_eq!(out.header("location"), Some("/login"));
    assert_eq!(out.header("set-cookie"), Some("hookcast_token=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"));
    assert_eq!(d.get("/logout").status, 405);
}

/// Every `$deliveries` record says what the signature check found (`verification`): live (long
/// poll), in the snapshot's feed and hooks table, and after a restart (read back from the journal).
#[test]
fn deliveries_carry_their_verification() {
    use hmac::{Hmac, Mac};
    let dir = TempDir::new("status-verification");
    let cfg = format!(
        r#"{{"public": [{PAGE_RULE}], "hooks": [
            {{"id": "gh", "provider": "github", "secrets": ["s3cret"], "http-methods": ["POST"]}},
            {{"id": "plain"}}
        ]}}"#
    );
    let state = dir.0.to_str().unwrap().to_string();
    let mut d = Daemon::start_args(Some(&cfg), &["--state-dir", &state]);
    let body = br#"{"ref":"refs/heads/main"}"#;
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(body);
    let sig = format!("sha256={}", mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>());
    fn github(sig: Option<&str>) -> Vec<(&str, &str)> {
        let mut h = vec![
            ("Content-Type", "application/json"),
            ("X-GitHub-Event", "push"),
            ("X-GitHub-Delivery", "gh-delivery-1"),
        ];
        h.extend(sig.map(|s| ("X-Hub-Signature-256", s)));
        h
    }
    assert_eq!(d.request("PUT", "/hooks/gh", &github(Some(&sig)), body).status, 405);
    assert_eq!(d.request("POST", "/hooks/gh", &github(None), body).status, 401);
    let wrong = format!("sha256={}", "0".repeat(64));
    assert_eq!(d.request("POST", "/hooks/gh", &github(Some(&wrong)), body).status, 403);
    assert_eq!(d.request("POST", "/hooks/gh", &github(Some(&sig)), body).status, 202);
    assert_eq!(d.request("POST", "/hooks/plain", &[], b"{}").status, 200);
    let expected = ["not_checked", "failed", "failed", "ok", "none"];

    let live = d.get("/poll?topics=%24deliveries&since=0").json();
    let live: Vec<&Value> = live["events"].as_array().unwrap().iter().map(|e| &e["data"]).collect();
    assert_eq!(live.iter().map(|r| r["verification"].as_str().unwrap()).collect::<Vec<_>>(), expected, "{live:?}");
    // Only `verification` is new on the wire: the metric's reason stays off the records.
    assert!(live.iter().all(|r| r.get("signature_failure").is_none()), "{live:?}");
    assert_eq!(live[1]["message"], "missing header x-hub-signature-256");

    for restarted in [false, true] {
        let s = d.get("/api/status").json();
        let feed = s["deliveries"].as_array().unwrap();
        let got: Vec<&str> = feed.iter().rev().map(|r| r["verification"].as_str().unwrap()).collect();
        assert_eq!(got, expected, "restarted: {restarted}: {feed:?}");
        let last = |i: usize| &s["hooks"][i]["last_delivery"];
        assert_eq!((last(0)["verification"].as_str(), last(0)["outcome"].as_str()), (Some("ok"), Some("accepted")));
        assert_eq!(last(1)["verification"], "none");
        if !restarted {
            d.terminate();
            d = Daemon::start_args(Some(&cfg), &["--state-dir", &state]);
        }
    }
}
