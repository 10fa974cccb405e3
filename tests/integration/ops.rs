//! Operations: `scripts/install.sh --prefix` (idempotent, uninstall), the systemd units
//! (`systemd-analyze verify` and the `security` exposure score), the cloudflared ingress, and the
//! daemon's side of sd_notify and socket activation with a fake `$NOTIFY_SOCKET` and
//! `systemd-socket-activate` (from the `systemd` package, which `.ci/run` installs). The tests
//! that run those tools are `#[ignore]`d and fail without them (`util::need_tool`).

use crate::util::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The exposure score recorded in systemd/README.md; the unit must not get worse.
const MAX_EXPOSURE: f64 = 1.1;

fn install_sh(args: &[&str]) -> String {
    let out = Command::new("bash").arg(Path::new(ROOT).join("scripts/install.sh")).args(args).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "install.sh {args:?} failed:\n{text}");
    text
}

/// Every file and directory under `root`: relative path → (mtime, SHA-256 of the contents).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (SystemTime, Option<[u8; 32]>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let hash = if meta.is_file() { Some(Sha256::digest(std::fs::read(&p).unwrap()).into()) } else { None };
            if meta.is_dir() {
                stack.push(p.clone());
            }
            out.insert(p.strip_prefix(root).unwrap().to_path_buf(), (meta.modified().unwrap(), hash));
        }
    }
    out
}

#[test]
fn install_sh_into_a_prefix_is_idempotent_and_uninstalls() {
    let tmp = TempDir::new("install");
    let prefix = tmp.0.join("root");
    let p = prefix.to_str().unwrap();
    let first = install_sh(&["--prefix", p, "--no-build", "--bin", BIN]);
    assert!(first.contains("wrote a starter /etc/hookcast/hookcast.json (hookcast check: ok)"), "{first}");
    for f in [
        "usr/local/bin/hookcast",
        "etc/systemd/system/hookcast.service",
        "etc/systemd/system/hookcast.socket",
        "etc/hookcast/hookcast.json",
        "usr/local/share/doc/hookcast/systemd.md",
        "usr/local/share/doc/hookcast/cloudflared-config.yml",
        "usr/local/share/man/man1/hookcast.1",
        "usr/local/share/bash-completion/completions/hookcast",
        "usr/local/share/zsh/site-functions/_hookcast",
        "usr/local/share/fish/vendor_completions.d/hookcast.fish",
    ] {
        assert!(prefix.join(f).is_file(), "{f} not installed:\n{first}");
    }
    assert!(prefix.join("var/lib/hookcast").is_dir());
    assert!(prefix.join("etc/hookcast/credentials").is_dir());
    let mode =
        |f: &str| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(prefix.join(f)).unwrap().permissions());
    assert_eq!(mode("usr/local/bin/hookcast") & 0o777, 0o755);
    assert_eq!(mode("etc/hookcast/hookcast.json") & 0o777, 0o640);
    assert_eq!(mode("etc/hookcast/credentials") & 0o777, 0o700);

    // A second run changes nothing: same bytes, same mtimes, nothing reported.
    let before = snapshot(&prefix);
    // Pacing: a rewrite would now show in the mtimes.
    std::thread::sleep(Duration::from_millis(20));
    let second = install_sh(&["--prefix", p, "--no-build", "--bin", BIN]);
    assert_eq!(snapshot(&prefix), before, "the second run changed files:\n{second}");
    for word in ["installed", "created", "mode ", "owner ", "wrote"] {
        assert!(!second.contains(word), "second run says {word:?}:\n{second}");
    }
    assert!(second.contains("kept the existing /etc/hookcast/hookcast.json"), "{second}");

    // The installed binary accepts the installed config.
    let conf = prefix.join("etc/hookcast/hookcast.json");
    let out =
        Command::new(prefix.join("usr/local/bin/hookcast")).arg("check").arg("--config").arg(&conf).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&conf).unwrap()).unwrap();
    assert_eq!(cfg["listen"], "127.0.0.1:9000");
    assert_eq!(cfg["trusted_proxies"], serde_json::json!(["127.0.0.1/32", "::1"]));
    assert_eq!(cfg["cf_connecting_ip"], true, "the starter config is for cloudflared");

    // A config the user edited survives a reinstall.
    std::fs::write(&conf, r#"{"listen": "127.0.0.1:9100"}"#).unwrap();
    install_sh(&["--prefix", p, "--no-build", "--bin", BIN]);
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), r#"{"listen": "127.0.0.1:9100"}"#);

    let out = install_sh(&["--prefix", p, "--uninstall"]);
    for f in [
        "usr/local/bin/hookcast",
        "etc/systemd/system/hookcast.service",
        "etc/systemd/system/hookcast.socket",
        "usr/local/share/man/man1/hookcast.1",
        "usr/local/share/bash-completion/completions/hookcast",
    ] {
        assert!(!prefix.join(f).exists(), "{f} left after --uninstall:\n{out}");
    }
    assert!(!prefix.join("usr/local/share/doc/hookcast").exists());
    assert!(conf.is_file(), "--uninstall removed the config");
    assert!(prefix.join("var/lib/hookcast").is_dir(), "--uninstall removed the state");
    let again = install_sh(&["--prefix", p, "--uninstall"]);
    assert!(!again.contains("removed"), "a second --uninstall removed something:\n{again}");

    install_sh(&["--prefix", p, "--uninstall", "--purge"]);
    assert!(!prefix.join("etc/hookcast").exists());
    assert!(!prefix.join("var/lib/hookcast").exists());
}

/// `systemd-analyze verify` on the units install.sh installs (with ExecStart= pointing into the
/// prefix, since verify checks that the binary exists) and the offline security score.
#[test]
#[ignore = "needs systemd-analyze: scripts/test.sh runs ignored tests; apt-get install systemd"]
fn installed_units_pass_systemd_analyze() {
    need_tool("systemd-analyze", "systemd");
    let tmp = TempDir::new("install-units");
    let prefix = tmp.0.join("root");
    install_sh(&["--prefix", prefix.to_str().unwrap(), "--no-build", "--bin", BIN]);
    let dir = tmp.0.join("verify");
    std::fs::create_dir_all(&dir).unwrap();
    let bin = prefix.join("usr/local/bin/hookcast");
    let mut units = Vec::new();
    for unit in ["hookcast.service", "hookcast.socket"] {
        let text = std::fs::read_to_string(prefix.join("etc/systemd/system").join(unit)).unwrap();
        let path = dir.join(unit);
        std::fs::write(&path, text.replace("/usr/local/bin/hookcast", bin.to_str().unwrap())).unwrap();
        units.push(path);
    }
    let out = Command::new("systemd-analyze").arg("verify").args(&units).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !text.contains("hookcast"), "systemd-analyze verify:\n{text}");

    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(prefix.join("etc/systemd/system/hookcast.service"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for hookcast.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{text}{}", String::from_utf8_lossy(&out.stderr)));
    println!("systemd-analyze security --offline=yes hookcast.service: {score}");
    assert!(score <= MAX_EXPOSURE + 1e-9, "exposure {score} is above the recorded {MAX_EXPOSURE}:\n{text}");
}

/// The restart pattern of scripts/deploy-example.sh under the unit's NoNewPrivileges=yes: the
/// path and service templates (instantiated as `myapp`, as `systemctl enable
/// hookcast-restart@myapp.path` would) pass `systemd-analyze verify`, and watch the directory
/// the deploy script writes to.
#[test]
#[ignore = "needs systemd-analyze: scripts/test.sh runs ignored tests; apt-get install systemd"]
fn restart_path_units_pass_systemd_analyze() {
    need_tool("systemd-analyze", "systemd");
    let tmp = TempDir::new("restart-units");
    let prefix = tmp.0.join("root");
    install_sh(&["--prefix", prefix.to_str().unwrap(), "--no-build", "--bin", BIN]);
    let dir = tmp.0.join("verify");
    std::fs::create_dir_all(&dir).unwrap();
    let mut units = Vec::new();
    for kind in ["path", "service"] {
        let text =
            std::fs::read_to_string(prefix.join(format!("etc/systemd/system/hookcast-restart@.{kind}"))).unwrap();
        let path = dir.join(format!("hookcast-restart@myapp.{kind}"));
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    let out = Command::new("systemd-analyze").arg("verify").args(&units).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !text.contains("hookcast"), "systemd-analyze verify:\n{text}");
    let path_unit = std::fs::read_to_string(&units[0]).unwrap();
    assert!(path_unit.contains("PathChanged=/var/lib/hookcast/restart/%i"), "{path_unit}");
    let script = std::fs::read_to_string(Path::new(ROOT).join("scripts/deploy-example.sh")).unwrap();
    assert!(script.contains("DEPLOY_RESTART_DIR:-/var/lib/hookcast/restart"), "the script writes where the unit looks");
}

/// What deploy-example.sh and systemd/README.md point at is what install.sh installs: the
/// script at the `execute-command` path of its example hook, the restart units, and the
/// trigger directory inside the state directory (the one place hookcast's deploys may write).
#[test]
fn install_sh_installs_the_deploy_example_and_its_restart_units() {
    let tmp = TempDir::new("install-deploy");
    let prefix = tmp.0.join("root");
    let p = prefix.to_str().unwrap();
    install_sh(&["--prefix", p, "--no-build", "--bin", BIN]);
    let script = std::fs::read_to_string(Path::new(ROOT).join("scripts/deploy-example.sh")).unwrap();
    let example = script
        .lines()
        .find_map(|l| l.split("\"execute-command\": \"").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("an execute-command in the script's example hook");
    let installed = prefix.join(example.trim_start_matches('/'));
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), script, "{example} is the script");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&installed).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o755);
    for unit in ["hookcast-restart@.path", "hookcast-restart@.service"] {
        assert!(prefix.join("etc/systemd/system").join(unit).is_file(), "{unit}");
    }
    assert!(prefix.join("var/lib/hookcast/restart").is_dir());
    let readme = std::fs::read_to_string(Path::new(ROOT).join("systemd/README.md")).unwrap();
    assert!(readme.contains("hookcast-restart@myapp.path") && !readme.contains("sudo -n"), "systemd/README.md");

    install_sh(&["--prefix", p, "--uninstall"]);
    assert!(!installed.exists() && !prefix.join("usr/local/lib/hookcast").exists());
    assert!(!prefix.join("etc/systemd/system/hookcast-restart@.path").exists());
}

/// The `ingress` rules of cloudflared/config.yml as (hostname, path, service), in order. A
/// small reader for the file's own shape (a list of maps), not a YAML parser.
fn ingress_rules(yaml: &str) -> Vec<(Option<String>, Option<String>, String)> {
    let mut rules: Vec<(Option<String>, Option<String>, Option<String>)> = Vec::new();
    let mut inside = false;
    for line in yaml.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            inside = line.starts_with("ingress:");
            continue;
        }
        if !inside {
            continue;
        }
        let (item, body) = match trimmed.strip_prefix("- ") {
            Some(b) if line.len() - trimmed.len() == 2 => (true, b),
            _ => (false, trimmed),
        };
        if item {
            rules.push((None, None, None));
        }
        let Some((k, v)) = body.split_once(':') else { continue };
        let v = v.trim().to_string();
        let rule = rules.last_mut().expect("a key before the first rule");
        match k.trim() {
            "hostname" => rule.0 = Some(v),
            "path" => rule.1 = Some(v),
            "service" => rule.2 = Some(v),
            _ => {}
        }
    }
    rules.into_iter().map(|(h, p, s)| (h, p, s.expect("every rule has a service"))).collect()
}

#[test]
fn cloudflared_forwards_only_hooks_and_ports_agree() {
    let yaml = std::fs::read_to_string(Path::new(ROOT).join("cloudflared/config.yml")).unwrap();
    let rules = ingress_rules(&yaml);
    let last = rules.last().unwrap();
    assert_eq!(last, &(None, None, "http_status:404".to_string()), "the last rule must 404 everything");
    // Which service a request for `path` reaches, as cloudflared matches rules (the path
    // regex is searched in the URL path; the first matching rule wins).
    let route = |path: &str| -> &str {
        for (host, re, service) in &rules {
            if host.as_deref().is_some_and(|h| h != "hooks.example.org") {
                continue;
            }
            if re.as_deref().is_none_or(|re| regex_lite::Regex::new(re).unwrap().is_match(path)) {
                return service;
            }
        }
        unreachable!("the catch-all matches")
    };
    for path in ["/hooks/site", "/hooks/a/b"] {
        assert_eq!(route(path), "http://127.0.0.1:9000", "{path}");
    }
    for path in [
        "/",
        "/api/status",
        "/events",
        "/ws",
        "/metrics",
        "/publish/x",
        "/login",
        "/hooks",
        "/x/hooks/site",
        "/api/runs/1/cancel",
    ] {
        assert_eq!(route(path), "http_status:404", "{path} would reach hookcast");
    }

    // The tunnel, the socket unit, the tunnel example and the starter config name one address.
    let socket = std::fs::read_to_string(Path::new(ROOT).join("systemd/hookcast.socket")).unwrap();
    assert!(socket.lines().any(|l| l == "ListenStream=127.0.0.1:9000"));
    let example: serde_json::Value =
        serde_json::from_slice(&std::fs::read(Path::new(ROOT).join("examples/hookcast-tunnel.json")).unwrap()).unwrap();
    assert_eq!(example["listen"], "127.0.0.1:9000");
    assert_eq!(example["trusted_proxies"], serde_json::json!(["127.0.0.1/32", "::1"]));
    assert_eq!(example["cf_connecting_ip"], true, "the tunnel example believes cloudflared's CF-Connecting-IP");
    let install = std::fs::read_to_string(Path::new(ROOT).join("scripts/install.sh")).unwrap();
    assert!(install.contains(r#""listen": "127.0.0.1:9000""#));
}

#[test]
#[ignore = "needs shellcheck: scripts/test.sh runs ignored tests; apt-get install shellcheck"]
fn install_sh_is_shellcheck_clean() {
    need_tool("shellcheck", "shellcheck");
    let out = Command::new("shellcheck").arg(Path::new(ROOT).join("scripts/install.sh")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// `sudo scripts/install.sh` failed with "Permission denied": it was committed without its
/// executable bit. Git's index is what a clone gets, so that is what is checked: every shell
/// script under scripts/ and tests/scripts/ is mode 100755, except the libraries in
/// scripts/lib/ (sourced, never run: no `#!` line), and so is every tracked file with a `#!`.
#[test]
#[ignore = "needs git: scripts/test.sh runs ignored tests; apt-get install git"]
fn regression_scripts_are_executable_in_git() {
    need_tool("git", "git");
    let out = Command::new("git").args(["ls-files", "-s"]).current_dir(ROOT).output().unwrap();
    assert!(out.status.success(), "git ls-files: {}", String::from_utf8_lossy(&out.stderr));
    let mut wrong = Vec::new();
    let mut scripts = 0;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        // `<mode> <object> <stage>\t<path>`
        let (meta, path) = line.split_once('\t').unwrap();
        let mode = meta.split_whitespace().next().unwrap();
        let in_scripts = path.starts_with("scripts/") || path.starts_with("tests/scripts/");
        let shell = in_scripts && path.ends_with(".sh") && !path.starts_with("scripts/lib/");
        let shebang = std::fs::read(Path::new(ROOT).join(path)).is_ok_and(|b| b.starts_with(b"#!"));
        if path.starts_with("scripts/lib/") {
            assert!(!shebang && mode == "100644", "{path}: a sourced library, not a program ({mode})");
        }
        if shell || shebang {
            scripts += 1;
            if mode != "100755" {
                wrong.push(format!("{mode} {path}"));
            }
        }
    }
    assert!(scripts >= 10, "only {scripts} scripts found: is {ROOT} a git checkout?");
    assert!(wrong.is_empty(), "not executable in git's index (git update-index --chmod=+x): {wrong:?}");
}

/// Cargo.toml says `MIT OR Apache-2.0`: both texts are at the root, and the copyright holder is
/// named in the MIT one (the Apache text names none of its own).
#[test]
fn license_texts_match_cargo_toml() {
    let read = |f: &str| std::fs::read_to_string(Path::new(ROOT).join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    let manifest = read("Cargo.toml");
    assert!(manifest.lines().any(|l| l == "license = \"MIT OR Apache-2.0\""), "Cargo.toml's license");
    assert!(!manifest.lines().any(|l| l.starts_with("license-file")), "license and license-file both set");
    let mit = read("LICENSE-MIT");
    assert!(mit.starts_with("MIT License") && mit.contains("Copyright (c) 2026 hookcast contributors"), "{mit}");
    let apache = read("LICENSE-APACHE");
    assert!(apache.contains("Version 2.0, January 2004") && apache.contains("END OF TERMS AND CONDITIONS"));
}

/// A fake service manager's notification socket: a bound datagram socket in a temp dir.
struct FakeNotify {
    sock: UnixDatagram,
    path: PathBuf,
    _dir: TempDir,
}

impl FakeNotify {
    fn new() -> FakeNotify {
        let dir = TempDir::new("notify");
        let path = dir.0.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        FakeNotify { sock, path, _dir: dir }
    }

    /// Messages until one has the line `want`; returns them all (the last holds `want`).
    fn wait_for(&self, want: &str, within: Duration) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {want:?} within {within:?}; got {got:?}");
            self.sock.set_read_timeout(Some(left)).unwrap();
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let done = msg.lines().any(|l| l == want);
                    got.push(msg);
                    if done {
                        return got;
                    }
                }
                Err(e) => panic!("no {want:?} within {within:?} ({e}); got {got:?}"),
            }
        }
    }
}

#[test]
fn sd_notify_ready_then_stopping() {
    let n = FakeNotify::new();
    let mut d = Daemon::start_env(None, &[], &[("NOTIFY_SOCKET", n.path.to_str().unwrap())]);
    n.wait_for("READY=1", Duration::from_secs(5));
    assert_eq!(d.get("/healthz").status, 200, "READY=1 came before the daemon could answer");
    let (status, _) = d.terminate();
    assert!(status.success());
    let after = n.wait_for("STOPPING=1", Duration::from_secs(1));
    assert!(after.iter().all(|m| !m.lines().any(|l| l == "READY=1")), "READY=1 again while stopping: {after:?}");
}

/// Issue 12 item 10: the listener is bound after the journal replay, and READY=1 comes after
/// it too; a long replay tells systemd it is still starting (`EXTEND_TIMEOUT_USEC`) instead of
/// being killed at `TimeoutStartSec=` and started again, in a loop.
#[test]
fn sd_notify_extends_the_start_timeout_while_the_journal_is_replayed() {
    let state = TempDir::new("notify-replay");
    let dir = state.0.join("journal");
    std::fs::create_dir_all(&dir).unwrap();
    let data = hookcast::journal::record::encode_event_data("message", false, "x");
    let mut seg = Vec::new();
    for id in 1..=3000u64 {
        let topic = format!("bulk/{}", id % 7);
        let rec = hookcast::journal::Record {
            kind: hookcast::journal::Kind::Event,
            id,
            time_ms: 1,
            topic,
            data: data.clone(),
        };
        hookcast::journal::encode(&rec, &mut seg).unwrap();
    }
    std::fs::write(dir.join(format!("journal-{:020}.log", 1)), &seg).unwrap();
    let n = FakeNotify::new();
    let args = ["--state-dir", state.0.to_str().unwrap()];
    let d = Daemon::start_env(None, &args, &[("NOTIFY_SOCKET", n.path.to_str().unwrap())]);
    let got = n.wait_for("READY=1", Duration::from_secs(10));
    let extend = got.iter().position(|m| m.lines().any(|l| l.starts_with("EXTEND_TIMEOUT_USEC=")));
    assert!(extend.is_some_and(|i| i + 1 < got.len()), "EXTEND_TIMEOUT_USEC before READY=1: {got:?}");
    assert!(got[extend.unwrap()].contains("STATUS=replaying the journal"), "{got:?}");
    assert_eq!(d.get("/healthz").status, 200);
}

#[test]
fn sd_notify_to_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("hookcast-test-notify-{}", std::process::id());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let sock = UnixDatagram::bind_addr(&addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _d = Daemon::start_env(None, &[], &[("NOTIFY_SOCKET", &format!("@{name}"))]);
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).expect("a notification");
    assert!(String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1"));
}

#[test]
fn sd_notify_watchdog_pings() {
    let n = FakeNotify::new();
    // WatchdogSec=0.4s: pings every 0.2 s.
    let _d = Daemon::start_env(None, &[], &[("NOTIFY_SOCKET", n.path.to_str().unwrap()), ("WATCHDOG_USEC", "400000")]);
    n.wait_for("READY=1", Duration::from_secs(5));
    let t0 = Instant::now();
    n.wait_for("WATCHDOG=1", Duration::from_secs(2));
    n.wait_for("WATCHDOG=1", Duration::from_secs(2));
    assert!(t0.elapsed() < Duration::from_secs(2));
}

#[test]
fn sd_notify_reloading_then_ready_around_sighup() {
    let n = FakeNotify::new();
    let d = Daemon::start_env(None, &[], &[("NOTIFY_SOCKET", n.path.to_str().unwrap())]);
    n.wait_for("READY=1", Duration::from_secs(5));
    signal(&d.child, "HUP");
    let msgs = n.wait_for("RELOADING=1", Duration::from_secs(5));
    let reloading = msgs.last().unwrap();
    let usec =
        reloading.lines().find_map(|l| l.strip_prefix("MONOTONIC_USEC=")).expect("MONOTONIC_USEC with RELOADING");
    assert!(usec.parse::<u64>().unwrap() > 0);
    n.wait_for("READY=1", Duration::from_secs(5));
    assert_eq!(d.get("/healthz").status, 200);
}

/// A free loopback port (bound, then released: the tool binds it again right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
#[ignore = "needs systemd-socket-activate: scripts/test.sh runs ignored tests; apt-get install systemd"]
fn socket_activation_uses_the_passed_listener() {
    need_tool("systemd-socket-activate", "systemd");
    let port = free_port();
    let dir = TempDir::new("activate");
    // Without --accept, the tool listens, and at the first connection execs hookcast in its own
    // process with the socket as descriptor 3 (LISTEN_FDS=1, LISTEN_PID = that process).
    let mut child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("HOOKCAST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let sink = log.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line.clone());
            sink.lock().unwrap().push_str(&format!("{line}\n"));
        }
    });
    let wait_line = |needle: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return l,
                Ok(_) => {}
                Err(_) => panic!("no {needle:?} in the log:\n{}", log.lock().unwrap()),
            }
        }
    };
    wait_line(&format!("Listening on 127.0.0.1:{port}"));
    // The first connection starts hookcast, which must answer it on the passed socket.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").unwrap();
    let line = wait_line("listening on http://");
    let resp = read_response(&mut s).expect("an answer on the activated socket");
    assert_eq!(resp.status, 200);
    assert!(line.contains(&format!("listening on http://127.0.0.1:{port}")), "bound its own socket: {line}");
    let mut d = Daemon { child, addr: format!("127.0.0.1:{port}").parse().unwrap(), log, dir };
    assert_eq!(d.get("/healthz").status, 200);
    let (status, _) = d.terminate();
    assert!(status.success());
}
