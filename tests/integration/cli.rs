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

#[test]
fn every_command_has_its_own_help_and_the_usual_short_flags() {
    let (_, overview, _) = run(&["--help"]);
    for cmd in
        ["serve", "check", "publish", "tail", "runs", "deliveries", "token", "sign", "send", "completions", "man"]
    {
        let (code, out, err) = run(&[cmd, "--help"]);
        assert_eq!(code, 0, "{cmd}: {err}");
        assert!(out.contains(&format!("hookcast {cmd}")) && out != overview, "{cmd} --help is not its own:\n{out}");
        assert_eq!(run(&["help", cmd]).1, out, "help {cmd}");
    }
    assert!(run(&["publish", "-h"]).1.contains("-r, --retain"));
    let (code, _, err) = run(&["publish", "--nope", "t", "x"]);
    assert_eq!(code, 2);
    assert!(err.contains("unknown option \"--nope\"") && err.contains("hookcast publish --help"), "{err}");
    // Short flags do what the long ones do.
    let d = Daemon::start_default();
    let url = d.url();
    let (code, id, err) = run(&["publish", "-u", &url, "-e", "greet", "-j", "-r", "demo", r#"{"hi":1}"#]);
    assert_eq!(code, 0, "{err}");
    let state = d.get("/api/topics/demo").json();
    assert_eq!((state["id"].as_u64(), state["type"].as_str()), (id.trim().parse().ok(), Some("greet")), "{state}");
    // `--` ends the options: a DATA that starts with a dash.
    let (code, _, err) = run(&["publish", "-u", &url, "--", "demo", "-1"]);
    assert_eq!(code, 0, "{err}");
}

/// A deploy that prints a line, waits for a file the test creates, prints another and exits 3.
fn slow_deploy(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let go = dir.join("go");
    let script = dir.join("deploy.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho first\necho warn >&2\nwhile [ ! -e {go} ]; do sleep 0.02; done\necho second\nexit 3\n",
            go = go.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (script.display().to_string(), go)
}

#[test]
fn runs_and_deliveries_commands_against_a_live_daemon() {
    let dir = TempDir::new("cli-runs");
    let (script, go) = slow_deploy(&dir.0);
    let token = "cli-runs-admin-token";
    let token_file = dir.0.join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let hash = hookcast::auth::hex(&hookcast::auth::token_hash(token));
    let d = Daemon::start(&format!(
        r#"{{"tokens":[{{"name":"ops","sha256":"{hash}","scopes":["admin","subscribe"],"topics":["$runs","$runs/**"]}}],
            "hooks":[{{"id":"site","execute-command":"{script}"}}]}}"#
    ));
    let url = d.url();
    let tf = token_file.to_str().unwrap();
    let cli = |args: &[&str]| {
        let mut all = vec![args[0], "-u", &url, "--token-file", tf];
        all.extend(&args[1..]);
        run(&all)
    };
    // Without a token: the daemon's 401, said as such.
    let (code, _, err) = run(&["runs", "-u", &url]);
    assert!(code == 1 && err.contains("401"), "{err}");

    let r = d.request("POST", "/hooks/site", &[("Content-Type", "application/json")], br#"{"n":1}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        eventually(Duration::from_secs(10), || cli(&["runs", "show", "1"]).1.contains("first")),
        "run 1 printed nothing"
    );
    // Follow it from the middle: the lines so far once, the rest as they come, its exit code.
    let mut follow = Command::new(BIN)
        .args(["runs", "follow", "1", "-u", &url, "--token-file", tf])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = follow.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "first");
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "! warn");
    std::fs::write(&go, "").unwrap();
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), "second");
    let status = follow.wait().unwrap();
    assert_eq!(status.code(), Some(3), "follow ends with the run's exit code");
    assert!(rx.recv_timeout(Duration::from_secs(1)).is_err(), "no line twice");
    // The live lines carry the numbers the log has.
    let auth = format!("Bearer {token}");
    let r = d.request("GET", "/poll?topics=%24runs/1&since=0&timeout=1", &[("Authorization", &auth)], b"");
    let ns: Vec<u64> = r.json()["events"].as_array().unwrap().iter().filter_map(|e| e["data"]["n"].as_u64()).collect();
    assert_eq!(ns, [1, 2, 3], "{}", r.text());

    let (code, out, err) = cli(&["runs", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines().nth(1).is_some_and(|l| l.contains("site") && l.contains("failed") && l.contains(" 3 ")),
        "{out}"
    );
    let (code, out, _) = cli(&["runs", "-j"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["runs"][0]["exit_code"], 3);
    // A retry waits for the file again: cancelled, and follow says so with exit 1.
    std::fs::remove_file(&go).unwrap();
    let (code, out, err) = cli(&["runs", "retry", "1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("run 2 started"), "{out}");
    assert!(
        eventually(Duration::from_secs(10), || cli(&["runs", "show", "2"]).1.contains("first")),
        "run 2 printed nothing"
    );
    let (code, out, err) = cli(&["runs", "cancel", "2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("run 2: cancelling"), "{out}");
    let (code, out, err) = cli(&["runs", "follow", "2"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("run 2 cancelled"), "{err}");
    std::fs::write(&go, "").unwrap();

    let (code, out, err) = cli(&["deliveries", "list", "--hook", "site"]);
    assert_eq!(code, 0, "{err}");
    let delivery = out.lines().nth(1).and_then(|l| l.split_whitespace().nth(2)).expect("a delivery row").to_string();
    let (code, out, _) = cli(&["deliveries", "show", &delivery]);
    assert!(code == 0 && out.contains("content-type: application/json"), "{out}");
    let (code, out, err) = cli(&["deliveries", "replay", &format!("site/{delivery}")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("replayed {delivery}: accepted (run 3)")), "{out}");
    let (code, _, err) = cli(&["deliveries", "show", "nope"]);
    assert!(code == 1 && err.contains("no stored delivery"), "{err}");
}

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The committed completions and man page are what the binary makes (regenerate them with
/// `hookcast completions SHELL` and `hookcast man` after changing the command table).
#[test]
fn completions_and_the_man_page_match_what_the_binary_makes() {
    for (args, file) in [
        (&["completions", "bash"][..], "contrib/completions/hookcast.bash"),
        (&["completions", "zsh"][..], "contrib/completions/_hookcast"),
        (&["completions", "fish"][..], "contrib/completions/hookcast.fish"),
        (&["man"][..], "contrib/man/hookcast.1"),
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, 0, "{err}");
        let committed = std::fs::read_to_string(std::path::Path::new(ROOT).join(file)).unwrap();
        assert!(committed == out, "{file} is stale: run `target/debug/hookcast {} > {file}`", args.join(" "));
    }
}

/// What bash completes, asked the way bash-completion asks.
fn bash_complete(words: &[&str]) -> Vec<String> {
    let script = std::path::Path::new(ROOT).join("contrib/completions/hookcast.bash");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cmd = format!(
        "source {}; COMP_WORDS=({}); COMP_CWORD={}; _hookcast; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        quoted.join(" "),
        words.len() - 1
    );
    let out = Command::new("bash").args(["-c", &cmd]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
}

#[test]
fn bash_completes_commands_flags_actions_and_values() {
    assert_eq!(bash_complete(&["hookcast", "de"]), ["deliveries"]);
    assert_eq!(bash_complete(&["hookcast", "serve", "--st"]), ["--state-dir"]);
    assert_eq!(bash_complete(&["hookcast", "runs", "f"]), ["follow"]);
    assert_eq!(bash_complete(&["hookcast", "send", "-p", "st"]), ["stripe", "standard-webhooks"]);
    assert!(bash_complete(&["hookcast", "tail", "--"]).contains(&"--token-file".to_string()));
}

#[test]
#[ignore = "needs zsh"]
fn the_zsh_completion_parses() {
    need_tool("zsh", "zsh");
    let st = Command::new("zsh").args(["-n", &format!("{ROOT}/contrib/completions/_hookcast")]).status().unwrap();
    assert!(st.success());
}

#[test]
#[ignore = "needs fish"]
fn fish_completes_commands_and_flags() {
    need_tool("fish", "fish");
    let script = format!("{ROOT}/contrib/completions/hookcast.fish");
    let out = Command::new("fish")
        .args(["-c", &format!("source {script}; complete -C'hookcast del'; complete -C'hookcast publish --ret'")])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains("deliveries\t") && out.contains("--retain\t"), "{out}");
}

#[test]
#[ignore = "needs man"]
fn the_man_page_renders_without_warnings() {
    need_tool("man", "man-db");
    let out = Command::new("man")
        .args(["--warnings", "-l", &format!("{ROOT}/contrib/man/hookcast.1")])
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "0")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("runs") && text.contains("--token-file"), "{text}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "man warned");
}

/// A CA and a certificate for localhost it signed, made by openssl in `dir`: (ca, cert, key).
fn tls_files(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let (ca, ca_key, cert, key, csr) =
        (dir.join("ca.pem"), dir.join("ca.key"), dir.join("cert.pem"), dir.join("key.pem"), dir.join("req.csr"));
    let ext = dir.join("ext.cnf");
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n").unwrap();
    let p = |p: &std::path::PathBuf| p.to_str().unwrap().to_string();
    for args in [
        vec!["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"]
            .into_iter()
            .map(String::from)
            .chain(["-subj".into(), "/CN=hookcast test CA".into(), "-keyout".into(), p(&ca_key), "-out".into(), p(&ca)])
            .collect::<Vec<_>>(),
        ["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=localhost"]
            .into_iter()
            .map(String::from)
            .chain(["-keyout".into(), p(&key), "-out".into(), p(&csr)])
            .collect(),
        ["x509", "-req", "-days", "2", "-CAcreateserial"]
            .into_iter()
            .map(String::from)
            .chain(
                ["-in", "-CA", "-CAkey", "-extfile", "-out"]
                    .into_iter()
                    .zip([&csr, &ca, &ca_key, &ext, &cert])
                    .flat_map(|(f, v)| [f.to_string(), p(v)]),
            )
            .collect(),
    ] {
        let out = Command::new("openssl").args(&args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    (ca, cert, key)
}

/// The client commands over https://, through a TLS front like a tunnel's: checked against the
/// CA given in SSL_CERT_FILE, refused without it.
#[test]
#[ignore = "needs openssl and a build with --features tls"]
fn client_commands_speak_https() {
    need_tool("openssl", "openssl");
    let dir = TempDir::new("cli-tls");
    let (ca, cert, key) = tls_files(&dir.0);
    let d = Daemon::start_default();
    let python = std::env::var("HOOKCAST_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let mut proxy = Command::new(python)
        .arg(std::path::Path::new(ROOT).join("tests/tls/proxy.py"))
        .args([&cert, &key])
        .arg(d.addr.port().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    BufReader::new(proxy.stdout.take().unwrap()).read_line(&mut port).unwrap();
    let url = format!("https://localhost:{}", port.trim());
    let with_ca = |args: &[&str]| {
        let out = Command::new(BIN).args(args).env("SSL_CERT_FILE", &ca).env_remove("SSL_CERT_DIR").output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, id, err) = with_ca(&["publish", "-u", &url, "-r", "demo", "over tls"]);
    assert!(!err.contains("without the tls feature"), "build with --features tls (scripts/test.sh does): {err}");
    assert_eq!(code, 0, "{err}");
    assert_eq!(d.get("/api/topics/demo").json()["id"].as_u64(), id.trim().parse().ok());
    let (code, out, err) = with_ca(&["send", &format!("{url}/hooks/demo"), "-p", "hmac", "-s", "x", "-"]);
    assert!(code == 0 && out.starts_with("200 "), "{out}{err}");
    // tail over TLS: the retained state arrives.
    let mut tail = Command::new(BIN)
        .args(["tail", "-u", &url, "--state", "demo"])
        .env("SSL_CERT_FILE", &ca)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(tail.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _ = tail.kill();
    let _ = tail.wait();
    assert!(line.contains("over tls"), "{line}");
    // Without the test CA, the certificate is not trusted and nothing is sent.
    let out =
        Command::new(BIN).args(["publish", "-u", &url, "demo", "x"]).env("SSL_CERT_FILE", &cert).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.to_lowercase().contains("certificate"), "{err}");
    let _ = proxy.kill();
    let _ = proxy.wait();
}
