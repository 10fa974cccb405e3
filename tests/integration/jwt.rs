//! Signed subscriber tokens against the real daemon, with tokens minted by two independent
//! libraries: PyJWT (`tests/sdk/jwt_mint.py`, in the test venv) and the npm `jose` package
//! (`tests/js/jwt_mint.mjs`). Key pairs are made per test in a temp dir by `cryptography`, so no
//! private key is committed for these tests. Every algorithm is minted by at least one library
//! and HS256, EdDSA, ES256 and RS256 by both. Like `hooks.rs` (the providers' SDKs) these tests
//! need the venv and `npm ci` in tests/js (scripts/test.sh makes both) and fail loudly without.

use crate::util::*;
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const HINT: &str = "PyJWT (tests/.venv, made by scripts/test.sh from tests/sdk/requirements.txt) and jose \
    (`npm ci` in tests/js) are needed for these tests";

const HS256: &str = "app-secret-for-hs256-0123456789abcdef";
const HS384: &str = "app-secret-for-hs384-0123456789abcdef-0123456789ab";
const HS512: &str = "app-secret-for-hs512-0123456789abcdef-0123456789abcdef-0123456789";
const PUBLISHER: &str = "publisher-token";
const ISS: &str = "https://app.example";

#[derive(Clone, Copy, Debug)]
enum Lib {
    PyJwt,
    Jose,
}

/// The Python of the test venv (see `hooks.rs`).
fn python() -> PathBuf {
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

fn run_json(mut cmd: Command, input: &str) -> Value {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}\n{HINT}"));
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed: {}\n{HINT}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{cmd:?} printed no JSON ({e})"))
}

/// Mints one token per spec (`{"alg", "secret"|"key", "claims", "kid"?, "header"?}`) with `lib`.
fn mint(lib: Lib, specs: &[Value]) -> Vec<String> {
    let cmd = match lib {
        Lib::PyJwt => {
            let mut c = Command::new(python());
            c.arg(Path::new(ROOT).join("tests/sdk/jwt_mint.py")).arg("--batch");
            c
        }
        Lib::Jose => {
            let js = Path::new(ROOT).join("tests/js");
            assert!(js.join("node_modules/jose").exists(), "{HINT}");
            let mut c = Command::new("node");
            c.arg(js.join("jwt_mint.mjs")).arg("--batch");
            c
        }
    };
    let v = run_json(cmd, &Value::from(specs.to_vec()).to_string());
    v.as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
}

fn mint1(lib: Lib, spec: Value) -> String {
    mint(lib, &[spec]).pop().unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Fresh key pairs (`ed25519`, `p256`, `rsa`, each `.pem` and `.pub.pem`) and a daemon whose
/// verifiers take every algorithm.
struct Setup {
    keys: TempDir,
    d: Daemon,
}

impl Setup {
    fn start() -> Setup {
        Setup::start_with(json!({}))
    }

    fn start_with(extra: Value) -> Setup {
        let keys = TempDir::new("jwt-keys");
        let mut c = Command::new(python());
        c.arg(Path::new(ROOT).join("tests/sdk/jwt_mint.py")).arg("keygen").arg(&keys.0);
        let st = c.status().unwrap_or_else(|e| panic!("cannot run python: {e}\n{HINT}"));
        assert!(st.success(), "jwt_mint.py keygen failed\n{HINT}");
        let pubkey = |n: &str| keys.0.join(format!("{n}.pub.pem")).to_str().unwrap().to_string();
        let mut cfg = json!({
            "tokens": [{"name": "pub", "sha256": hookcast::auth::hex(&hookcast::auth::token_hash(PUBLISHER)),
                        "scopes": ["publish"], "topics": ["**"]}],
            "jwt": [
                {"name": "hs", "alg": "HS256", "secret": HS256, "issuer": ISS, "audience": "dash", "leeway_secs": 0,
                 "subscribe": ["users/{sub}/**"], "publish": ["users/{sub}/outbox"]},
                {"name": "hs384", "alg": "HS384", "secret": HS384, "leeway_secs": 0, "subscribe": ["users/{sub}/**"]},
                {"name": "hs512", "alg": "HS512", "secret": HS512, "leeway_secs": 0, "subscribe": ["users/{sub}/**"]},
                {"name": "ed", "alg": "EdDSA", "key_file": pubkey("ed25519"), "kid": "ed1", "leeway_secs": 0,
                 "subscribe": ["users/{sub}/**", "teams/{team}/**"]},
                {"name": "es", "alg": "ES256", "key_file": pubkey("p256"), "leeway_secs": 0,
                 "subscribe": ["users/{sub}/**"]},
                {"name": "rs", "alg": "RS256", "key_file": pubkey("rsa"), "leeway_secs": 0,
                 "subscribe": ["users/{sub}/**"]}
            ]
        });
        crate::util::redis::merge(&mut cfg, &extra);
        let d = Daemon::start(&cfg.to_string());
        Setup { keys, d }
    }

    /// A spec for `alg` signed with this setup's key, with `claims`.
    fn spec(&self, alg: &str, claims: Value) -> Value {
        let key = |n: &str| self.keys.0.join(format!("{n}.pem")).to_str().unwrap().to_string();
        match alg {
            "HS256" => json!({"alg": alg, "secret": HS256, "claims": claims}),
            "HS384" => json!({"alg": alg, "secret": HS384, "claims": claims}),
            "HS512" => json!({"alg": alg, "secret": HS512, "claims": claims}),
            "EdDSA" => json!({"alg": alg, "key": key("ed25519"), "kid": "ed1", "claims": claims}),
            "ES256" => json!({"alg": alg, "key": key("p256"), "claims": claims}),
            "RS256" => json!({"alg": alg, "key": key("rsa"), "claims": claims}),
            other => panic!("no key for {other}"),
        }
    }

    /// The claims the `hs` verifier wants for user `sub`, expiring `ttl` seconds from now.
    fn user(&self, sub: &str, ttl: u64) -> Value {
        json!({"sub": sub, "iss": ISS, "aud": "dash", "iat": now(), "exp": now() + ttl})
    }

    fn publish(&self, topic: &str, data: &str) -> u64 {
        self.d.publish_with(topic, data, &[("Authorization", &format!("Bearer {PUBLISHER}"))])
    }
}

type Ws = WebSocket<TcpStream>;

fn ws_connect(d: &Daemon, path: &str, headers: &[(&str, &str)]) -> Result<Ws, u16> {
    let mut req = format!("ws://{}{path}", d.addr).into_client_request().unwrap();
    for (k, v) in headers {
        req.headers_mut().insert(tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
    }
    match tungstenite::client(req, d.connect()) {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => Err(r.status().as_u16()),
        Err(e) => panic!("WebSocket handshake: {e}"),
    }
}

/// Reads until the server's close frame: its code (text messages before it are returned too).
fn ws_close_code(ws: &mut Ws) -> (u16, Vec<Value>) {
    let mut seen = Vec::new();
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => seen.push(serde_json::from_str(&t).unwrap()),
            Ok(Message::Close(Some(f))) => return (u16::from(f.code), seen),
            Ok(Message::Close(None)) => return (1005, seen),
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}; saw {seen:?}"),
        }
    }
}

/// Status and JSON body of a refused (or accepted) GET.
fn status_reason(d: &Daemon, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let r = d.request("GET", path, headers, b"");
    let reason = if r.status >= 400 { r.json()["reason"].as_str().unwrap_or("").to_string() } else { String::new() };
    (r.status, reason)
}

/// The status (and the reason, when refused) of an SSE stream opened with `token`: a refusal is
/// read whole, an open stream is dropped after its head.
fn sse_status(d: &Daemon, topics: &str, token: &str) -> (u16, String) {
    let mut c = d.connect();
    let req = format!("GET /events?topics={topics}&token={token} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    c.write_all(req.as_bytes()).unwrap();
    let (head, _) = sse_head(&mut c);
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    if status == 200 {
        return (200, String::new());
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
        .expect("a refusal has a Content-Length");
    let mut body = vec![0; len];
    std::io::Read::read_exact(&mut c, &mut body).unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    (status, v["reason"].as_str().unwrap_or("").to_string())
}

/// Reads a response head byte by byte (nothing after it is consumed).
fn sse_head(c: &mut TcpStream) -> (String, ()) {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(std::io::Read::read(c, &mut b).expect("a response head"), 1, "EOF in a response head");
        head.push(b[0]);
    }
    (String::from_utf8(head).unwrap(), ())
}

#[test]
fn tokens_minted_by_pyjwt_and_jose_for_every_algorithm_open_their_users_topics_only() {
    let s = Setup::start();
    let algs = ["HS256", "HS384", "HS512", "EdDSA", "ES256", "RS256"];
    let py: Vec<Value> = algs.iter().map(|a| s.spec(a, s.user("alice", 300))).collect();
    let js: Vec<Value> = ["HS256", "EdDSA", "ES256", "RS256"].iter().map(|a| s.spec(a, s.user("alice", 300))).collect();
    let (py_t, js_t) = std::thread::scope(|sc| {
        let a = sc.spawn(|| mint(Lib::PyJwt, &py));
        let b = sc.spawn(|| mint(Lib::Jose, &js));
        (a.join().unwrap(), b.join().unwrap())
    });
    let tokens: Vec<(String, &str)> =
        py_t.into_iter().zip(algs).chain(js_t.into_iter().zip(["HS256", "EdDSA", "ES256", "RS256"])).collect();
    let mut streams = Vec::new();
    for (t, alg) in &tokens {
        let (sock, head) = sse(&s.d, &format!("/events?topics=users/alice/**&token={t}"), &[]);
        assert!(head.starts_with("HTTP/1.1 200"), "{alg}: {head}");
        streams.push((sock, *alg));
        // Another user's topics: 403, saying why.
        assert_eq!(sse_status(&s.d, "users/bob/**", t), (403, "not_granted".into()), "{alg}");
    }
    let bob = s.publish("users/bob/inbox", "for bob");
    let alice = s.publish("users/alice/inbox", "for alice");
    for (sock, alg) in &mut streams {
        let got = read_until(sock, &format!("id: {alice}\n"));
        assert!(!got.contains(&format!("id: {bob}\n")) && !got.contains("for bob"), "{alg} got bob's event: {got}");
    }
    for (name, n) in [("hs", 4.0), ("hs384", 2.0), ("hs512", 2.0), ("ed", 4.0), ("es", 4.0), ("rs", 4.0)] {
        // Each token once for its stream and once for the 403.
        assert_eq!(s.d.metric(&format!("hookcast_jwt_verified_total{{verifier=\"{name}\"}}")), n, "{name}");
    }
}

#[test]
fn a_token_works_in_the_query_the_header_the_cookie_and_with_an_independent_eventsource() {
    let s = Setup::start();
    let t = mint1(Lib::Jose, s.spec("EdDSA", json!({"sub": "alice", "exp": now() + 300})));
    let (mut es, lines) = spawn_es_client(
        &format!("{}/events?topics=users/alice/**&token={t}", s.d.url()),
        &["--count", "2", "--timeout-ms", "20000"],
    );
    let mut ws_q = ws_connect(&s.d, &format!("/ws?topics=users/alice/**&token={t}"), &[]).unwrap();
    let mut ws_c =
        ws_connect(&s.d, "/ws?topics=users/alice/**", &[("Cookie", &format!("theme=dark; hookcast_jwt={t}"))]).unwrap();
    let (mut sse_h, _) = sse(&s.d, "/events?topics=users/alice/**", &[("Authorization", &format!("Bearer {t}"))]);
    let (mut sse_c, _) = sse(&s.d, "/events?topics=users/alice/**", &[("Cookie", &format!("hookcast_jwt={t}"))]);
    // Each of them refused for bob's topics.
    for (k, v) in [("Authorization", format!("Bearer {t}")), ("Cookie", format!("hookcast_jwt={t}"))] {
        assert_eq!(status_reason(&s.d, "/poll?topics=users/bob/x", &[(k, &v)]), (403, "not_granted".into()));
        assert_eq!(ws_connect(&s.d, "/ws?topics=users/bob/x", &[(k, &v)]).unwrap_err(), 403);
    }
    assert_eq!(ws_connect(&s.d, &format!("/ws?topics=users/bob/x&token={t}"), &[]).unwrap_err(), 403);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = lines.recv_timeout(deadline - Instant::now()).expect("the EventSource client opens");
        if v["open"] == true {
            break;
        }
    }
    s.publish("users/bob/inbox", "for bob");
    let a1 = s.publish("users/alice/inbox", "one");
    s.publish("teams/red/x", "not granted: no team claim");
    let a2 = s.publish("users/alice/deep/er", "two");
    let mut got = Vec::new();
    while got.len() < 2 {
        let v = lines.recv_timeout(Duration::from_secs(15)).expect("events");
        if v.get("data").is_some() {
            got.push((v["id"].as_str().unwrap().parse::<u64>().unwrap(), v["data"].as_str().unwrap().to_string()));
        }
    }
    assert_eq!(got, [(a1, "one".to_string()), (a2, "two".to_string())]);
    let _ = es.kill();
    let _ = es.wait();
    for ws in [&mut ws_q, &mut ws_c] {
        assert_eq!((ws_json(ws)["id"].as_u64(), ws_json(ws)["id"].as_u64()), (Some(a1), Some(a2)));
    }
    for sock in [&mut sse_h, &mut sse_c] {
        let text = read_until(sock, &format!("id: {a2}\n"));
        assert!(text.contains(&format!("id: {a1}\n")) && !text.contains("for bob") && !text.contains("team"), "{text}");
    }
}

#[test]
fn refusals_say_why() {
    let s = Setup::start();
    let t = now();
    let ok = s.user("alice", 300);
    let with = |extra: Value| {
        let mut c = ok.clone();
        crate::util::redis::merge(&mut c, &extra);
        c
    };
    let ed_pub = std::fs::read_to_string(s.keys.0.join("ed25519.pub.pem")).unwrap();
    let py = mint(
        Lib::PyJwt,
        &[
            s.spec("HS256", with(json!({"exp": t - 5}))),
            s.spec("HS256", with(json!({"nbf": t + 300}))),
            s.spec("HS256", with(json!({"aud": "other"}))),
            s.spec("HS256", with(json!({"iss": "https://evil.example"}))),
            s.spec("EdDSA", with(json!({"sub": "*"}))),
            s.spec("EdDSA", with(json!({"sub": "a/b"}))),
            s.spec("EdDSA", with(json!({"sub": "**"}))),
            json!({"alg": "none", "claims": ok}),
            s.spec("ES256", json!({"sub": "alice"})),
            s.spec("RS256", json!({"exp": t + 300})),
            s.spec("HS384", json!({"sub": "alice", "exp": t + 300, "hookcast": {"subscribe": ["a/**/b"]}})),
            s.spec("HS256", ok.clone()),
        ],
    );
    let js = mint(
        Lib::Jose,
        &[
            // Algorithm confusion: HS256 keyed with the configured EdDSA public key's PEM.
            json!({"alg": "HS256", "secret": ed_pub, "claims": ok}),
            json!({"alg": "HS256", "secret": ed_pub, "kid": "ed1", "claims": ok}),
            json!({"alg": "EdDSA", "key": s.keys.0.join("ed25519.pem"), "kid": "nope", "claims": ok}),
            // Signed with a key no verifier has.
            json!({"alg": "HS256", "secret": "another-apps-secret-0123456789abcdef", "claims": ok}),
            s.spec("EdDSA", with(json!({"exp": t + 3600, "iat": t + 600}))),
        ],
    );
    // Tampered payload: alice's signature over bob's claims.
    let good = &py[11];
    let mut parts: Vec<&str> = good.split('.').collect();
    let bob_claims = hookcast_b64(&s.user("bob", 300).to_string());
    parts[1] = &bob_claims;
    let tampered = parts.join(".");
    // `alg: none` with some signature bytes, so it has the shape of a JWT.
    let none_signed = format!("{}AAAA", py[7]);
    let cases: Vec<(&str, &str, &str)> = vec![
        ("expired", &py[0], "expired"),
        ("nbf in the future", &py[1], "not_yet_valid"),
        ("iat in the future", &js[4], "not_yet_valid"),
        ("wrong audience", &py[2], "wrong_audience"),
        ("wrong issuer", &py[3], "wrong_issuer"),
        ("sub *", &py[4], "bad_claim"),
        ("sub a/b", &py[5], "bad_claim"),
        ("sub **", &py[6], "bad_claim"),
        ("alg none, no signature", &py[7], "unsupported_alg"),
        ("alg none, a signature", &none_signed, "unsupported_alg"),
        ("no exp", &py[8], "missing_exp"),
        ("no grant", &py[9], "no_grant"),
        ("a hookcast claim that is no pattern", &py[10], "bad_claim"),
        ("HS256 keyed with the EdDSA public key", &js[0], "bad_signature"),
        ("the same with the EdDSA kid", &js[1], "bad_signature"),
        ("unknown kid", &js[2], "unknown_key"),
        ("another app's secret", &js[3], "bad_signature"),
        ("tampered payload", &tampered, "bad_signature"),
    ];
    for (what, token, reason) in &cases {
        let r = s.d.request("GET", &format!("/poll?topics=users/alice/x&token={token}"), &[], b"");
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        let body = r.json();
        assert_eq!(body["reason"], *reason, "{what}: {body}");
        assert_eq!(body["status"], 401, "{what}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}");
        // No secret, no claim value in the answer.
        assert!(!r.text().contains(HS256) && !r.text().contains("evil"), "{what}: {}", r.text());
        assert!(r.header("www-authenticate").is_some_and(|h| h.starts_with("Bearer")), "{what}");
        // The same in a header, and on a WebSocket handshake.
        let bearer = format!("Bearer {token}");
        assert_eq!(
            status_reason(&s.d, "/poll?topics=users/alice/x", &[("Authorization", &bearer)]),
            (401, reason.to_string()),
            "{what}"
        );
        assert_eq!(
            ws_connect(&s.d, &format!("/ws?topics=users/alice/x&token={token}"), &[]).unwrap_err(),
            401,
            "{what}"
        );
    }
    // The good one works, for alice's topics only.
    assert_eq!(sse_status(&s.d, "users/alice/x", good), (200, String::new()));
    assert_eq!(sse_status(&s.d, "users/bob/x", good), (403, "not_granted".into()));
    assert_eq!(sse_status(&s.d, "users/*", good), (403, "not_granted".into()));
    assert_eq!(sse_status(&s.d, "**", good), (403, "not_granted".into()));
    let refused = |r: &str| s.d.metric(&format!("hookcast_jwt_refused_total{{reason=\"{r}\"}}"));
    assert_eq!(refused("expired"), 3.0);
    assert_eq!(refused("bad_signature"), 12.0);
    assert_eq!(refused("bad_claim"), 12.0);
}

/// base64url without padding, for the tampered payload.
fn hookcast_b64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..=c.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn grants_from_the_hookcast_and_mercure_claims_templates_and_publish() {
    let s = Setup::start();
    let t = now() + 300;
    let tokens = mint(
        Lib::PyJwt,
        &[
            s.spec(
                "HS256",
                json!({"sub": "alice", "iss": ISS, "aud": ["x", "dash"], "exp": t,
                                  "hookcast": {"subscribe": ["news/**"], "publish": ["chat/1"]}}),
            ),
            // Mercure's claim, as a Mercure hub's publisher/subscriber token has it.
            s.spec(
                "HS384",
                json!({"exp": t, "mercure": {"subscribe": ["https://example.com/books/{id}", "books/1"],
                                                         "publish": ["books/1"]}}),
            ),
            s.spec("HS512", json!({"exp": t, "mercure": {"subscribe": ["*"]}})),
            s.spec("EdDSA", json!({"sub": "carol", "team": ["red", "blue"], "exp": t})),
        ],
    );
    let [alice, books, all, carol] = &tokens[..] else { unreachable!() };
    let cases = [
        (alice, "news/today", 200),
        (alice, "users/alice/inbox", 200),
        (alice, "chat/1", 403),
        (books, "books/1", 200),
        (books, "books/2", 403),
        (all, "anything/at/all", 200),
        (all, "**", 200),
        (carol, "teams/red/x", 200),
        (carol, "teams/blue/y/z", 200),
        (carol, "teams/green/x", 403),
        (carol, "users/carol/x", 200),
    ];
    for (token, topic, want) in cases {
        assert_eq!(sse_status(&s.d, topic, token).0, want, "{topic}");
    }
    // Publishing: the verifier's publish template and the claims' publish grants.
    let post = |topic: &str, token: &str| {
        let r =
            s.d.request("POST", &format!("/publish/{topic}"), &[("Authorization", &format!("Bearer {token}"))], b"x");
        let reason =
            if r.status >= 400 { r.json()["reason"].as_str().unwrap_or("").to_string() } else { String::new() };
        (r.status, reason)
    };
    assert_eq!(post("users/alice/outbox", alice).0, 202);
    assert_eq!(post("chat/1", alice).0, 202);
    assert_eq!(post("users/bob/outbox", alice), (403, "not_granted".into()));
    assert_eq!(post("users/alice/inbox", alice), (403, "not_granted".into()));
    assert_eq!(post("books/1", books).0, 202);
    assert_eq!(post("books/1", carol), (403, "not_granted".into()));
    // And over a WebSocket opened with the token.
    let mut ws = ws_connect(&s.d, &format!("/ws?topics=users/alice/**&token={alice}"), &[]).unwrap();
    ws.send(Message::text(json!({"op": "publish", "topic": "users/alice/outbox", "data": "hi"}).to_string())).unwrap();
    let ack = ws_json(&mut ws);
    assert_eq!(ack["type"], "ack", "{ack}");
    let ev = ws_json(&mut ws);
    assert_eq!((ev["id"].clone(), ev["data"].clone()), (ack["id"].clone(), json!("hi")));
    ws.send(Message::text(json!({"op": "publish", "topic": "users/bob/outbox", "data": "no"}).to_string())).unwrap();
    assert_eq!(ws_json(&mut ws)["type"], "error");
    ws.send(Message::text(json!({"op": "subscribe", "topics": ["users/bob/**"]}).to_string())).unwrap();
    assert_eq!(ws_json(&mut ws)["type"], "error");
}

#[test]
fn a_ticket_got_with_a_jwt_carries_its_grant_and_ends_with_it() {
    let s = Setup::start();
    let [long, short] =
        &mint(Lib::Jose, &[s.spec("HS256", s.user("alice", 300)), s.spec("HS256", s.user("alice", 2))])[..]
    else {
        unreachable!()
    };
    let ticket = |t: &str| {
        let r = s.d.request("POST", "/api/ticket", &[("Authorization", &format!("Bearer {t}"))], b"");
        assert_eq!(r.status, 200, "{}", r.text());
        // The answer says how long the ticket lasts: no longer than the JWT.
        let left = r.json()["expires_in"].as_u64().unwrap();
        assert!(left <= if t == short { 2 } else { 30 }, "expires_in {left}");
        r.json()["ticket"].as_str().unwrap().to_string()
    };
    let mut ws = ws_connect(&s.d, &format!("/ws?topics=users/alice/**&ticket={}", ticket(long)), &[]).unwrap();
    assert_eq!(ws_connect(&s.d, &format!("/ws?topics=users/bob/**&ticket={}", ticket(long)), &[]).unwrap_err(), 403);
    let bob = s.publish("users/bob/x", "b");
    let a = s.publish("users/alice/x", "a");
    let ev = ws_json(&mut ws);
    assert_eq!(ev["id"], a, "bob's event {bob} must not arrive");
    // A ticket from a token with 2 s left ends with the token.
    let t0 = Instant::now();
    let mut short_ws = ws_connect(&s.d, &format!("/ws?topics=users/alice/**&ticket={}", ticket(short)), &[]).unwrap();
    assert_eq!(ws_close_code(&mut short_ws).0, 4001);
    assert!(t0.elapsed() < Duration::from_secs(5), "closed after {:?}", t0.elapsed());
    // A JWT that was refused gets no ticket, and says why.
    let r = s.d.request("POST", "/api/ticket", &[("Authorization", "Bearer a.b.c")], b"");
    assert_eq!((r.status, r.json()["reason"].clone()), (401, json!("malformed")));
}

#[test]
fn streams_end_when_their_token_expires() {
    let s = Setup::start();
    let exp = now() + 2;
    let t = mint1(Lib::PyJwt, s.spec("ES256", json!({"sub": "alice", "exp": exp})));
    let (mut sse_s, head) = sse(&s.d, &format!("/events?topics=users/alice/**&token={t}"), &[]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut ws = ws_connect(&s.d, &format!("/ws?topics=users/alice/**&token={t}"), &[]).unwrap();
    // Still delivering before the expiry.
    let a = s.publish("users/alice/x", "before");
    assert_eq!(ws_json(&mut ws)["id"], a);
    read_until(&mut sse_s, &format!("id: {a}\n"));
    let poll = std::thread::spawn({
        let addr = s.d.addr;
        let t = t.clone();
        move || {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            let req =
                format!("GET /poll?topics=users/alice/**&timeout=60&token={t} HTTP/1.1\r\nHost: localhost\r\n\r\n");
            c.write_all(req.as_bytes()).unwrap();
            read_response(&mut c).unwrap()
        }
    });
    let text = read_until(&mut sse_s, ": token expired; reconnect with a fresh token\n");
    assert!(now() >= exp, "ended before exp: {text}");
    assert!(closed_within(&mut sse_s, Duration::from_secs(5)), "the SSE stream stays open after its comment");
    assert_eq!(ws_close_code(&mut ws).0, 4001);
    let r = poll.join().unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["reason"], "expired");
    assert!(now() < exp + 3, "closed late");
    // The same token no longer opens anything.
    assert_eq!(sse_status(&s.d, "users/alice/x", &t), (401, "expired".into()));
    for transport in ["sse", "ws", "poll"] {
        let m = format!("hookcast_sessions_expired_total{{transport=\"{transport}\"}}");
        assert_eq!(s.d.metric(&m), 1.0, "{m}");
    }
}

#[test]
fn the_auth_op_renews_a_websocket_past_its_first_token() {
    let s = Setup::start();
    let exp1 = now() + 2;
    let exp2 = exp1 + 2;
    let [first, second, bobs, stale] = &mint(
        Lib::PyJwt,
        &[
            s.spec("EdDSA", json!({"sub": "alice", "exp": exp1})),
            s.spec("EdDSA", json!({"sub": "alice", "exp": exp2})),
            s.spec("EdDSA", json!({"sub": "bob", "exp": exp2 + 60})),
            s.spec("EdDSA", json!({"sub": "alice", "exp": exp1 - 10})),
        ],
    )[..] else {
        unreachable!()
    };
    let mut ws = ws_connect(&s.d, &format!("/ws?topics=users/alice/**&token={first}"), &[]).unwrap();
    let send = |ws: &mut Ws, token: &str| {
        ws.send(Message::text(json!({"op": "auth", "token": token}).to_string())).unwrap();
        ws_json(ws)
    };
    // Refused renewals leave the session as it was: one for another user (it would not cover
    // the topics held), an expired one, garbage.
    let r = send(&mut ws, bobs);
    assert_eq!((r["type"].clone(), r["op"].clone()), (json!("error"), json!("auth")), "{r}");
    let r = send(&mut ws, stale);
    assert_eq!((r["type"].as_str(), r["reason"].as_str()), (Some("error"), Some("expired")), "{r}");
    assert_eq!(send(&mut ws, "x.y.z")["type"], "error");
    assert_eq!(send(&mut ws, second), json!({"type": "ack", "op": "auth", "expires": exp2}));
    // Past the first token's expiry: still open and delivering.
    while now() < exp1 + 1 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let a = s.publish("users/alice/x", "after the first expiry");
    assert_eq!(ws_json(&mut ws)["id"], a);
    // Closed at the second's.
    let (code, _) = ws_close_code(&mut ws);
    assert_eq!(code, 4001);
    assert!(now() >= exp2 && now() <= exp2 + 2, "closed at {} for exp {exp2}", now());
    assert_eq!(s.d.metric("hookcast_sessions_expired_total{transport=\"ws\"}"), 1.0);
}
