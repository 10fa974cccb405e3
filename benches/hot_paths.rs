//! Hot-path micro-benchmarks with plain `std::time` (no criterion): nanoseconds per operation of
//! the code every request or every delivery runs through, so a regression shows as a number.
//!
//! - HTTP request head parse (`http::request::parse_head`): a GitHub webhook POST and an SSE GET;
//! - SSE encode (`sse::encode_into`) of a 200-byte event;
//! - WebSocket frame encode (`ws::frame::encode_header` + payload) of the event's JSON envelope;
//! - one publish through the hub with both wire encodings (`Hub::publish` + `Event::encoded`);
//! - HMAC verify over the 7.7 KB GitHub push fixture: the GitHub provider
//!   (`X-Hub-Signature-256`) and an adnanh-style `payload-hmac-sha256` rule;
//! - the 7.7 KB GitHub push payload checked and indexed (`hooks::json::check`), then read for a
//!   rule's `ref` and the delivery summary (`hooks::summary::summarize`), against what building
//!   a whole `serde_json::Value` cost before;
//! - topic match (`topic::matches`), exact and wildcard, and the fan-out lookup of the
//!   subscribers of one topic among 10 000 (`Hub::subscribers_into`);
//! - one delivery's user-space share: queue an event by reference and write it out
//!   (`buf::OutQueue`, into a `Vec` instead of a socket).
//! - a subscription filter's match (`filter::Filter::matches`): a type that differs, a text
//!   search, a JSON field (parse included), and the fan-out turn of 5 000 filtered subscribers
//!   sharing one parse of the event (`filter::Subject`);
//! - a JWT's check per algorithm (`jwt::Verifiers::verify`, the fixtures' tokens): what each
//!   stream opened with a JWT costs, once.
//!
//! Each case runs for about `HOOKCAST_BENCH_MS` milliseconds (default 200) per round, five rounds;
//! it prints the median ns/op and the spread of the rounds.
//!
//! ```sh
//! cargo bench --bench hot_paths                 # all cases
//! cargo bench --bench hot_paths -- hmac         # the cases whose name contains "hmac"
//! ```

use hookcast::buf::{OutQueue, SocketResult};
use hookcast::filter::{Filter, Subject};
use hookcast::hooks::providers::{self, Incoming, Provider};
use hookcast::hooks::rules::HmacAlgo;
use hookcast::hooks::summary::{summarize, Facts};
use hookcast::http::request::{parse_head, Limits};
use hookcast::hub::{HistoryConfig, Hub, Wire};
use hookcast::jwt::{Alg, Key, VerifierConfig, Verifiers};
use hookcast::sse;
use hookcast::topic;
use hookcast::ws::frame::{encode_header, Opcode};
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;

/// Runs `f` in batches until `budget` has passed, `ROUNDS` times; prints median and range.
fn bench(filter: &[String], name: &str, budget: Duration, mut f: impl FnMut()) {
    if !filter.is_empty() && !filter.iter().any(|w| name.contains(w.as_str())) {
        return;
    }
    // Calibrate a batch that takes about a millisecond, so the clock is read rarely.
    let mut batch: u64 = 1;
    loop {
        let t = Instant::now();
        for _ in 0..batch {
            f();
        }
        if t.elapsed() >= Duration::from_millis(1) || batch >= 1 << 30 {
            break;
        }
        batch *= 2;
    }
    let mut per_op = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let (start, mut ops) = (Instant::now(), 0u64);
        while start.elapsed() < budget {
            for _ in 0..batch {
                f();
            }
            ops += batch;
        }
        per_op.push(start.elapsed().as_nanos() as f64 / ops as f64);
    }
    per_op.sort_by(f64::total_cmp);
    println!("{name:<48} {:>10.1} ns/op   (rounds {:.1} .. {:.1})", per_op[ROUNDS / 2], per_op[0], per_op[ROUNDS - 1]);
}

/// The body and signature of the GitHub push fixture (tests/fixtures/providers/github-push.json).
fn github_fixture() -> (Vec<u8>, String, String) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/providers/github-push.json");
    let text = std::fs::read_to_string(path).expect("read the GitHub push fixture");
    let v: serde_json::Value = serde_json::from_str(&text).expect("fixture is JSON");
    let body = v["body"].as_str().expect("fixture body").as_bytes().to_vec();
    let secret = v["secret"].as_str().expect("fixture secret").to_string();
    let sig = v["headers"]["X-Hub-Signature-256"].as_str().expect("fixture signature").to_string();
    (body, secret, sig)
}

fn history() -> HistoryConfig {
    HistoryConfig {
        max_events_per_topic: 1000,
        max_bytes_per_topic: 1 << 20,
        max_bytes_total: 64 << 20,
        max_topics: 10_000,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; any other word filters the cases by name.
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let ms = std::env::var("HOOKCAST_BENCH_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let budget = Duration::from_millis(ms);
    println!("hot paths: median of {ROUNDS} rounds of ~{ms} ms each");

    // --- HTTP request head parse.
    let limits = Limits { max_header_bytes: 16 * 1024, max_uri_bytes: 4096 };
    let post = b"POST /hooks/deploy HTTP/1.1\r\nHost: hooks.example.com\r\nUser-Agent: GitHub-Hookshot/5d8e1a4\r\n\
Content-Length: 7676\r\nAccept: */*\r\nContent-Type: application/json\r\nX-GitHub-Delivery: \
c0ffee00-4b1d-11ef-9a7e-3b6e2a1f0c9d\r\nX-GitHub-Event: push\r\nX-GitHub-Hook-ID: 489187543\r\n\
X-GitHub-Hook-Installation-Target-ID: 186853002\r\nX-GitHub-Hook-Installation-Target-Type: repository\r\n\
X-Hub-Signature: sha1=e19b3ff4dbea7f550299a34846bcb6f6a2563894\r\nX-Hub-Signature-256: \
sha256=fec4ae3df2756b3306e3b3361cd9d539374c7e01a682cfcd0f95e6673ff7e0a8\r\nCF-Connecting-IP: 192.0.2.7\r\n\r\n";
    bench(&filter, "http head parse: GitHub webhook POST (690 B)", budget, || {
        let r = parse_head(black_box(post), &limits);
        assert!(matches!(r, Ok(Some(_))));
        black_box(r.ok());
    });
    let get = b"GET /events?topics=builds/**,deploys HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n\
Accept: text/event-stream\r\nCache-Control: no-cache\r\nLast-Event-ID: 1795340470123456\r\n\r\n";
    bench(&filter, "http head parse: SSE subscribe GET (150 B)", budget, || {
        black_box(parse_head(black_box(get), &limits).ok());
    });

    // --- SSE and WebSocket encoding of one 200-byte event.
    let data = format!("{{\"t\":1795340470123456,\"pad\":\"{}\"}}", "x".repeat(200 - 33));
    let mut out = Vec::with_capacity(512);
    bench(&filter, "sse encode: 200-byte event", budget, || {
        out.clear();
        sse::encode_into(&mut out, black_box(1_795_340_470_123_456), "message", black_box(&data));
        black_box(&out);
    });
    let envelope = format!(
        r#"{{"id":1795340470123456,"topic":"bench","event":"message","time":"2026-11-22T10:41:10.123Z","data":{data}}}"#
    );
    bench(&filter, "ws frame encode: 290-byte text frame", budget, || {
        out.clear();
        encode_header(true, Opcode::Text, envelope.len() as u64, &mut out);
        out.extend_from_slice(black_box(envelope.as_bytes()));
        black_box(&out);
    });
    let mut hub = Hub::new(history(), 1);
    let mut t_ms = 1_795_340_470_123u64;
    bench(&filter, "hub publish + SSE and WS encodings", budget, || {
        t_ms += 1;
        let ev = hub.publish("bench", "message", data.clone(), true, t_ms);
        black_box(ev.encoded(Wire::Sse));
        black_box(ev.encoded(Wire::Ws));
    });

    // --- HMAC verification over the 7.7 KB GitHub push body.
    let (body, secret, sig) = github_fixture();
    let headers = vec![
        ("x-github-event".to_string(), b"push".to_vec()),
        ("x-github-delivery".to_string(), b"c0ffee00-4b1d-11ef-9a7e-3b6e2a1f0c9d".to_vec()),
        ("x-hub-signature-256".to_string(), sig.clone().into_bytes()),
    ];
    let github = Provider::parse("github").expect("github provider");
    let secrets = vec![secret.clone().into_bytes()];
    bench(&filter, "hmac verify: github provider, 7.7 KB body", budget, || {
        let req = Incoming { headers: &headers, body: black_box(&body), now_unix: 1_795_340_470 };
        assert!(providers::verify(&github, &secrets, &req).is_ok());
    });
    let expected = sig.trim_start_matches("sha256=").to_string();
    bench(&filter, "hmac verify: adnanh payload-hmac-sha256 rule", budget, || {
        let mac = HmacAlgo::Sha256.hex_mac(secret.as_bytes(), black_box(&body));
        assert!(hookcast::auth::ct_eq(mac.as_bytes(), expected.as_bytes()));
    });

    // --- The JSON payload: checked once, read lazily.
    bench(&filter, "json payload: check + index, 7.7 KB push", budget, || {
        assert!(hookcast::hooks::json::check(black_box(&body)).is_ok());
    });
    let facts = Facts { hook: "deploy", provider: Some("github"), event: Some("push"), delivery: None, source: "::1" };
    bench(&filter, "json payload: check + ref + summary, 7.7 KB push", budget, || {
        let doc = hookcast::hooks::json::check(black_box(&body)).expect("fixture is JSON");
        let node = doc.node(&body);
        assert!(node.get("ref").and_then(|r| r.as_str()).is_some());
        black_box(summarize(&facts, node));
    });
    bench(&filter, "json payload: serde_json::Value (before), 7.7 KB push", budget, || {
        let v: serde_json::Value = serde_json::from_slice(black_box(&body)).expect("fixture is JSON");
        black_box(v);
    });

    // --- Topic matching and the fan-out lookup.
    bench(&filter, "topic match: exact", budget, || {
        black_box(topic::matches(black_box("deploys/web"), black_box("deploys/web")));
    });
    bench(&filter, "topic match: builds/** vs builds/a/b/c", budget, || {
        black_box(topic::matches(black_box("builds/**"), black_box("builds/a/b/c")));
    });
    bench(&filter, "topic match: builds/*/done vs builds/x/done", budget, || {
        black_box(topic::matches(black_box("builds/*/done"), black_box("builds/x/done")));
    });
    let mut fan = Hub::new(history(), 1);
    for sub in 0..10_000 {
        fan.subscribe(sub, if sub % 10 == 0 { "bench/**" } else { "bench/events" });
    }
    for p in 0..50 {
        fan.subscribe(20_000 + p, &format!("other/{p}/*"));
    }
    let mut subs = Vec::with_capacity(10_000);
    bench(&filter, "fan-out lookup: 10 000 subscribers, 51 patterns", budget, || {
        fan.subscribers_into(black_box("bench/events"), &mut subs);
        assert_eq!(subs.len(), 10_000);
    });

    // --- A JWT's check: once per stream opened (what a reconnect storm costs per client).
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    let tokens: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("tokens.json")).unwrap()).unwrap();
    for (alg, key) in [
        (Alg::HS256, None),
        (Alg::EdDSA, Some("ed25519.pub.pem")),
        (Alg::ES256, Some("p256.pub.pem")),
        (Alg::RS256, Some("rsa.pub.pem")),
    ] {
        let key = match key {
            None => Key::Secret(tokens["HS256-secret"].as_str().unwrap().as_bytes().to_vec()),
            Some(f) => Key::from_pem(alg, &std::fs::read_to_string(fixtures.join(f)).unwrap()).unwrap(),
        };
        let v = VerifierConfig {
            name: alg.name().to_string(),
            alg,
            key,
            kid: None,
            issuer: None,
            audience: Vec::new(),
            leeway: Duration::from_secs(30),
            require_exp: true,
            subscribe: vec!["users/{sub}/**".into()],
            publish: Vec::new(),
        };
        let verifiers = Verifiers::new(vec![v]);
        let token = tokens[alg.name()].as_str().unwrap().to_string();
        bench(&filter, &format!("jwt verify: {} token, grants expanded", alg.name()), budget, || {
            assert!(verifiers.verify(std::hint::black_box(&token), 1_800_000_000).is_ok());
        });
    }

    // --- Subscription filters on a 200-byte JSON log line.
    let line = r#"{"level":"warn","service":"api","meta":{"region":"eu","host":"web-3"},"msg":"upstream read timeout after 5000 ms","req":"c0ffee00-4b1d-11ef-9a7e-3b6e2a1f0c9d","n":42}"#;
    let by_type = Filter::from_query(Some("deploy"), &[], None).unwrap().unwrap();
    let by_text = Filter::from_query(None, &[], Some("TIMEOUT")).unwrap().unwrap();
    let by_field = Filter::from_query(None, &["level:error".into(), "meta.region:eu".into()], None).unwrap().unwrap();
    bench(&filter, "filter match: event type differs", budget, || {
        assert!(!by_type.matches(&Subject::new("line", black_box(line), true)));
    });
    bench(&filter, "filter match: q=timeout (case-insensitive, 200 B)", budget, || {
        assert!(by_text.matches(&Subject::new("line", black_box(line), true)));
    });
    bench(&filter, "filter match: 2 fields, parse included (200 B)", budget, || {
        assert!(!by_field.matches(&Subject::new("line", black_box(line), true)));
    });
    bench(&filter, "filter match: 5000 field filters, one shared parse", budget, || {
        let subject = Subject::new("line", black_box(line), true);
        for _ in 0..5000 {
            assert!(!black_box(&by_field).matches(&subject));
        }
    });

    // --- One delivery's user-space share: queue by reference, write out.
    let frame: Rc<[u8]> = Rc::from(envelope.as_bytes());
    let mut q = OutQueue::default();
    let mut sink = Vec::with_capacity(4096);
    bench(&filter, "out queue: push shared event + flush", budget, || {
        sink.clear();
        q.push_shared(Rc::clone(&frame));
        assert_eq!(q.flush(&mut sink), SocketResult::Continue);
    });
}
