//! The command line: check, publish, tail, token, help and version.

use crate::util::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_and_version() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for cmd in ["serve", "check", "publish", "tail", "token"] {
        assert!(out.contains(cmd), "{cmd} missing from help");
    }
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("hookcast {}", env!("CARGO_PKG_VERSION")));
    let (code, _, err) = run(&["frobnicate"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown command"));
}

#[test]
fn check_names_the_bad_field() {
    let dir = TempDir::new("check");
    let bad = dir.0.join("bad.json");
    let h = "a".repeat(64);
    std::fs::write(
        &bad,
        format!(r#"{{"tokens":[{{"sha256":"{h}","scopes":["publish"]}},{{"sha256":"{h}","scopes":["pubish"]}}]}}"#),
    )
    .unwrap();
    let (code, _, err) = run(&["check", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains(r#"tokens[1].scopes: unknown scope "pubish""#), "{err}");
    let good = dir.0.join("good.json");
    std::fs::write(&good, r#"{"listen":"127.0.0.1:9100"}"#).unwrap();
    let (code, out, _) = run(&["check", "--config", good.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok"));
}

#[test]
fn check_describes_a_cluster_without_its_password() {
    let dir = TempDir::new("check-cluster");
    let cfg = dir.0.join("cluster.json");
    std::fs::write(
        &cfg,
        r#"{"cluster":{"redis":"redis://app:url-secret@127.0.0.1:6379/0","name":"prod","node":"box-a",
            "password":{"env":"HOOKCAST_TEST_REDIS_PASSWORD"}}}"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", cfg.to_str().unwrap()])
        .env("HOOKCAST_TEST_REDIS_PASSWORD", "env-secret")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "cluster \"prod\": node box-a, redis redis://app:***@127.0.0.1:6379/0 \
             (password from environment variable HOOKCAST_TEST_REDIS_PASSWORD), runs commands"
        ),
        "{stdout}"
    );
    assert!(!format!("{stdout}{stderr}").contains("secret"), "{stdout}{stderr}");
    // Without the variable the check fails, naming where the password was to come from.
    let (code, _, err) = run(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("cluster.password: environment variable HOOKCAST_TEST_REDIS_PASSWORD is not set"), "{err}");
    std::fs::write(&cfg, r#"{"state_dir":"/tmp","cluster":{"redis":"unix:/run/redis.sock"}}"#).unwrap();
    let (code, _, err) = run(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("cluster: a node in a cluster keeps its log in Redis; remove state_dir"), "{err}");
}

#[test]
fn shipped_example_configs_pass_check() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for dir in ["config", "examples"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "json") {
                let (code, out, err) = run(&["check", "--config", p.to_str().unwrap()]);
                assert_eq!(code, 0, "{}: {out}{err}", p.display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 2);
}

#[test]
fn token_hash_matches_config_format() {
    let (code, out, _) = run(&["token", "hash", "secret"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b");
    let (code, out, _) = run(&["token", "new"]);
    assert_eq!(code, 0);
    let tok = out.lines().find_map(|l| l.strip_prefix("token:")).unwrap().trim().to_string();
    let hash = out.lines().find_map(|l| l.strip_prefix("sha256:")).unwrap().trim().to_string();
    assert_eq!(run(&["token", "hash", &tok]).1.trim(), hash);
}

#[test]
fn token_jwt_is_accepted_by_the_verifier_check_describes() {
    let dir = TempDir::new("jwt");
    let secret = dir.0.join("jwt.secret");
    std::fs::write(&secret, "cli-test-secret-0123456789abcdefghij\n").unwrap();
    let cfg = dir.0.join("c.json");
    let json = serde_json::json!({"jwt": [{"name": "app", "alg": "HS256", "secret": {"file": secret},
        "audience": "dash", "subscribe": ["users/{sub}/**", "teams/{teams}/*"]}]});
    std::fs::write(&cfg, json.to_string()).unwrap();
    let (code, out, err) = run(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let line = out.lines().find(|l| l.starts_with("jwt ")).unwrap();
    assert_eq!(
        line,
        format!(
            "jwt \"app\": HS256, secret from file {}, aud dash, leeway 30s, exp required; grants the hookcast and \
             mercure claims, subscribe users/{{sub}}/** teams/{{teams}}/*",
            secret.display()
        )
    );
    assert!(!out.contains("cli-test-secret"));
    let (code, out, err) = run(&[
        "token",
        "jwt",
        "--secret-file",
        secret.to_str().unwrap(),
        "--sub",
        "alice",
        "--aud",
        "dash",
        "--claim",
        r#"teams=["red","blue"]"#,
        "--claim",
        "plan=pro",
        "--ttl",
        "2h",
        "--subscribe",
        "news/**",
    ]);
    assert_eq!(code, 0, "{err}");
    let config = hookcast::config::Config::from_file(&cfg).unwrap();
    let verifiers = hookcast::jwt::Verifiers::new(config.jwt);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let grant = verifiers.verify(out.trim(), now).unwrap();
    let subscribe: Vec<&str> = grant.subscribe.iter().map(|s| &**s).collect();
    assert_eq!(subscribe, ["news/**", "users/alice/**", "teams/red/*", "teams/blue/*"]);
    let ttl = grant.expires.unwrap() - now;
    assert!((7190..=7200).contains(&ttl), "{ttl}");
    assert_eq!(verifiers.verify(out.trim(), now + 7200 + 30), Err(hookcast::jwt::Refusal::Expired));
    // Bad command lines say why.
    let (code, _, err) = run(&["token", "jwt", "--sub", "a"]);
    assert!(code == 2 && err.contains("--secret-env NAME or --secret-file PATH"), "{err}");
    let (code, _, err) = run(&["token", "jwt", "--secret-env", "HOOKCAST_TEST_NEVER_SET_JWT"]);
    assert!(code == 1 && err.contains("HOOKCAST_TEST_NEVER_SET_JWT is not set"), "{err}");
    let (code, _, err) = run(&["token", "jwt", "--secret-file", secret.to_str().unwrap(), "--alg", "HS512"]);
    assert!(code == 1 && err.contains("an HS512 secret must be at least 64 bytes"), "{err}");
    let (code, _, err) = run(&["token", "jwt", "--secret-file", secret.to_str().unwrap(), "--alg", "EdDSA"]);
    assert!(code == 2 && err.contains("--alg: HS256, HS384 or HS512"), "{err}");
    let (code, _, err) = run(&["token", "jwt", "--secret-file", secret.to_str().unwrap(), "--ttl", "15x"]);
    assert!(code == 2 && err.contains("--ttl"), "{err}");
}

#[test]
fn publish_and_tail_against_a_daemon() {
    let d = Daemon::start_default();
    let url = d.url();
    let mut tail = Command::new(BIN)
        .args(["tail", "--url", &url, "demo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = tail.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The tail connects asynchronously: publish until it shows up.
    let mut printed = None;
    for i in 0..50 {
        let (code, id, err) = run(&["publish", "--url", &url, "--event", "greet", "demo", &format!("hello {i}")]);
        assert_eq!(code, 0, "{err}");
        let id: u64 = id.trim().parse().unwrap();
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            printed = Some((line, id));
            break;
        }
    }
    let _ = tail.kill();
    let _ = tail.wait();
    let (line, _) = printed.expect("tail printed an event");
    assert!(line.contains(" demo #") && line.contains("[greet] hello"), "{line}");
    // Errors come back as exit 1 with the server's message.
    let (code, _, err) = run(&["publish", "--url", &url, "private", "x"]);
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
}

#[test]
fn sign_and_send_produce_what_the_provider_would() {
    let d = Daemon::start(
        r#"{"public":[{"topics":["hooks/**"],"scopes":["subscribe"]}],
            "hooks":[{"id":"gh","provider":"github","secrets":["old","s3cret"]}]}"#,
    );
    let dir = TempDir::new("sign");
    let body = dir.0.join("push.json");
    std::fs::write(&body, br#"{"ref":"refs/heads/main","repository":{"full_name":"me/site"}}"#).unwrap();
    let body = body.to_str().unwrap();
    // GitHub's documented vector, through the CLI.
    let vector = dir.0.join("vector");
    std::fs::write(&vector, "Hello, World!").unwrap();
    let (code, out, _) =
        run(&["sign", "--provider", "github", "--secret", "It's a Secret to Everybody", vector.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("X-Hub-Signature-256: sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"),
        "{out}"
    );
    // send: accepted with the second (rotated-in) secret, then refused with a wrong one.
    let url = format!("{}/hooks/gh", d.url());
    let (code, out, err) = run(&["send", &url, "--provider", "github", "--secret", "s3cret", "--id", "cli-1", body]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("202 ") && out.contains("\"delivery\":\"cli-1\""), "{out}");
    let (code, out, _) = run(&["send", &url, "--provider", "github", "--secret", "wrong", body]);
    assert_eq!(code, 1);
    assert!(out.starts_with("403 "), "{out}");
    // The secret can come from a file (as systemd credentials do).
    let secret = dir.0.join("secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    let at = format!("@{}", secret.display());
    let (code, out, _) = run(&["send", &url, "--provider", "github", "--secret", &at, body]);
    assert_eq!(code, 0, "{out}");
}
