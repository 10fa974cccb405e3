//! `hookcast runs` and `hookcast deliveries`: the JSON API of deploy runs and stored deliveries
//! as commands, for a daemon on this machine or behind a tunnel.

use super::{bearer, client, encode_query, target, Args, Fail};
use serde_json::Value;
use std::io::Read;

/// Run states after which nothing more happens to a run.
const FINAL_STATES: &[&str] = &["succeeded", "failed", "timed_out", "cancelled", "interrupted"];

/// A request to the daemon with the command's URL and token; the answer's status and body.
fn call(a: &Args, method: &str, path: &str) -> Result<(u16, Vec<u8>), Fail> {
    let t = target(a)?;
    let auth = bearer(a)?.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Accept", "application/json"), ("Connection", "close")];
    if let Some(h) = auth.as_deref() {
        headers.push(("Authorization", h));
    }
    let (status, fields, mut r) =
        t.request(method, path, &headers, b"").map_err(|e| Fail::Run(format!("{path}: {e}")))?;
    let body = client::read_body(&fields, &mut r).map_err(|e| Fail::Run(format!("{path}: {e}")))?;
    Ok((status, body))
}

/// [`call`], for an answer that must be 2xx JSON.
fn call_json(a: &Args, method: &str, path: &str) -> Result<Value, Fail> {
    let (status, body) = call(a, method, path)?;
    let text = String::from_utf8_lossy(&body);
    if !(200..300).contains(&status) {
        let why = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.trim().to_string());
        let hint = if status == 401 { " (give an admin token: --token, --token-file or $HOOKCAST_TOKEN)" } else { "" };
        return Err(Fail::Run(format!("{status} {why}{hint}")));
    }
    serde_json::from_str(&text).map_err(|e| Fail::Run(format!("{path}: not JSON: {e}")))
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// A run id from the command line.
fn run_id(a: &Args) -> Result<u64, Fail> {
    let Some(id) = a.positional.get(1) else {
        return Err(Fail::Usage(format!("{} needs a run ID", a.positional[0])));
    };
    id.parse().map_err(|_| Fail::Usage(format!("not a run id: {id:?}")))
}

/// `hookcast runs [list|show ID|follow ID|retry ID|cancel ID]`.
pub(super) fn runs(words: &[String]) -> Result<(), Fail> {
    let mut a = Args::parse("runs", words)?;
    if a.positional.is_empty() {
        a.positional.push("list".into());
    }
    let json = a.has("--json");
    match a.positional[0].as_str() {
        "list" => {
            let v = call_json(&a, "GET", "/api/runs")?;
            if json {
                print_json(&v);
                return Ok(());
            }
            let runs = v["runs"].as_array().cloned().unwrap_or_default();
            if runs.is_empty() {
                println!("no runs yet");
            }
            println!(
                "{:>6}  {:<16} {:<12} {:>5}  {:<24} {:>9}  DELIVERIES",
                "ID", "HOOK", "STATE", "EXIT", "STARTED", "TOOK"
            );
            for r in &runs {
                println!(
                    "{:>6}  {:<16} {:<12} {:>5}  {:<24} {:>9}  {}",
                    r["id"].to_string(),
                    r["hook"].as_str().unwrap_or("?"),
                    r["state"].as_str().unwrap_or("?"),
                    exit_text(r),
                    r["started"].as_str().or(r["queued"].as_str()).unwrap_or("-"),
                    took(r),
                    deliveries_text(r)
                );
            }
            Ok(())
        }
        "show" => {
            let id = run_id(&a)?;
            let v = call_json(&a, "GET", &format!("/api/runs/{id}"))?;
            if json {
                print_json(&v);
                return Ok(());
            }
            print_run_head(&v);
            if let Some(d) = v["log_lines_dropped"].as_u64().filter(|d| *d > 0) {
                println!("… {d} earlier line(s) not kept (runner.log_bytes)");
            }
            for l in v["log"].as_array().into_iter().flatten() {
                print_line(l);
            }
            if v["log"].is_null() {
                println!("(no output kept: the run is from before the daemon's restart; its lines are in $runs/{id})");
            }
            Ok(())
        }
        "follow" => follow(&a, run_id(&a)?),
        "retry" => {
            let id = run_id(&a)?;
            let v = call_json(&a, "POST", &format!("/api/runs/{id}/retry"))?;
            if json {
                print_json(&v);
            } else {
                println!("run {} started (a retry of run {id})", v["run"]);
            }
            Ok(())
        }
        "cancel" => {
            let id = run_id(&a)?;
            let v = call_json(&a, "POST", &format!("/api/runs/{id}/cancel"))?;
            if json {
                print_json(&v);
            } else {
                println!("run {id}: cancelling");
            }
            Ok(())
        }
        other => Err(Fail::Usage(format!("runs: unknown action {other:?} (list, show, follow, retry, cancel)"))),
    }
}

fn exit_text(r: &Value) -> String {
    match (&r["exit_code"], &r["signal"]) {
        (Value::Number(n), _) => n.to_string(),
        (_, Value::String(s)) => s.clone(),
        (_, Value::Number(n)) => format!("sig{n}"),
        _ => "-".into(),
    }
}

fn took(r: &Value) -> String {
    r["duration_ms"].as_u64().map_or("-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0))
}

fn deliveries_text(r: &Value) -> String {
    let list: Vec<&str> = r["deliveries"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    match list.as_slice() {
        [] => "-".into(),
        [one] => (*one).to_string(),
        [first, rest @ ..] => format!("{first} (+{})", rest.len()),
    }
}

fn print_run_head(v: &Value) {
    println!(
        "run {}  hook {}  {}  exit {}  took {}",
        v["id"],
        v["hook"].as_str().unwrap_or("?"),
        v["state"].as_str().unwrap_or("?"),
        exit_text(v),
        took(v)
    );
    for (label, key) in [("queued", "queued"), ("started", "started"), ("finished", "finished"), ("node", "node")] {
        if let Some(t) = v[key].as_str() {
            println!("  {label:<9}{t}");
        }
    }
    println!("  {:<9}{}", "for", deliveries_text(v));
}

/// One output line: stdout as it is, stderr marked (both go to stdout, in order).
fn print_line(l: &Value) {
    let text = l["line"].as_str().unwrap_or("");
    if l["stream"] == "stderr" {
        println!("! {text}");
    } else {
        println!("{text}");
    }
}

/// The exit code a followed run ends `hookcast runs follow` with: its own (1..=255) when it
/// failed with one, 0 when it succeeded, 1 otherwise.
fn final_code(v: &Value) -> Option<i32> {
    let state = v["state"].as_str()?;
    if !FINAL_STATES.contains(&state) {
        return None;
    }
    Some(match (state, v["exit_code"].as_i64()) {
        ("succeeded", _) => 0,
        ("failed", Some(c)) if (1..=255).contains(&c) => c as i32,
        _ => 1,
    })
}

/// Prints a run's output as it comes and ends with its exit code. For a run still going, the
/// stream of `$runs/{id}` and `$runs` is opened first, from now; then the record is read again:
/// its log has the lines so far, each with its number `n`, and a live line with an `n` the log
/// had is skipped.
fn follow(a: &Args, id: u64) -> Result<(), Fail> {
    // A run that has ended needs no stream (nor the right to subscribe to its topics).
    let v = call_json(a, "GET", &format!("/api/runs/{id}"))?;
    if let Some(code) = final_code(&v) {
        if let Some(d) = v["log_lines_dropped"].as_u64().filter(|d| *d > 0) {
            println!("… {d} earlier line(s) not kept (runner.log_bytes)");
        }
        v["log"].as_array().into_iter().flatten().for_each(print_line);
        return finish(&v, code);
    }
    let t = target(a)?;
    let auth = bearer(a)?.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Accept", "text/event-stream")];
    if let Some(h) = auth.as_deref() {
        headers.push(("Authorization", h));
    }
    let topics = encode_query(&format!("$runs/{id},$runs"));
    let path = format!("/events?topics={topics}&format=json");
    let (status, fields, mut stream) =
        t.request("GET", &path, &headers, b"").map_err(|e| Fail::Run(format!("follow: {e}")))?;
    if status != 200 {
        let body = client::read_body(&fields, &mut stream).unwrap_or_default();
        return Err(Fail::Run(format!("follow: {status} {}", String::from_utf8_lossy(&body).trim())));
    }
    let v = call_json(a, "GET", &format!("/api/runs/{id}"))?;
    eprintln!(
        "following run {id} of hook {} ({})",
        v["hook"].as_str().unwrap_or("?"),
        v["state"].as_str().unwrap_or("?")
    );
    if let Some(d) = v["log_lines_dropped"].as_u64().filter(|d| *d > 0) {
        println!("… {d} earlier line(s) not kept (runner.log_bytes)");
    }
    let mut seen = v["log_lines_dropped"].as_u64().unwrap_or(0);
    for l in v["log"].as_array().into_iter().flatten() {
        print_line(l);
        seen = seen.max(l["n"].as_u64().unwrap_or(seen + 1));
    }
    if let Some(code) = final_code(&v) {
        return finish(&v, code);
    }
    let mut parser = crate::sse::Parser::default();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => {
                return Err(Fail::Run(format!(
                    "follow: the daemon closed the stream; `hookcast runs show {id}` for the rest"
                )))
            }
            Ok(n) => n,
        };
        for ev in parser.feed(&buf[..n]) {
            let Ok(env) = serde_json::from_str::<Value>(&ev.data) else { continue };
            let data = &env["data"];
            if ev.event == "reset" || env["event"] == "reset" {
                eprintln!(
                    "(the stream missed some events; lines may be missing: `hookcast runs show {id}` has the log)"
                );
                continue;
            }
            if env["topic"] == "$runs" {
                if data["id"].as_u64() == Some(id) {
                    if let Some(code) = final_code(data) {
                        return finish(data, code);
                    }
                }
                continue;
            }
            let n = data["n"].as_u64().unwrap_or(seen + 1);
            if n > seen {
                print_line(data);
                seen = n;
            }
        }
    }
}

fn finish(v: &Value, code: i32) -> Result<(), Fail> {
    eprintln!("run {} {} (exit {}) in {}", v["id"], v["state"].as_str().unwrap_or("?"), exit_text(v), took(v));
    if code == 0 {
        Ok(())
    } else {
        // The run's own code, not hookcast's usual 1: scripts can tell why it failed.
        std::process::exit(code)
    }
}

/// `hookcast deliveries [list|show ID|replay ID]`.
pub(super) fn deliveries(words: &[String]) -> Result<(), Fail> {
    let mut a = Args::parse("deliveries", words)?;
    if a.positional.is_empty() {
        a.positional.push("list".into());
    }
    let json = a.has("--json");
    let action = a.positional[0].clone();
    match action.as_str() {
        "list" => {
            let v = call_json(&a, "GET", "/api/deliveries")?;
            let mut list = v["deliveries"].as_array().cloned().unwrap_or_default();
            if let Some(h) = a.value("--hook") {
                list.retain(|d| d["hook"] == h);
            }
            if json {
                print_json(&Value::Array(list));
                return Ok(());
            }
            if list.is_empty() {
                println!("no deliveries stored");
                return Ok(());
            }
            println!(
                "{:<24}  {:<16} {:<40} {:<6} {:<16} {:>8}",
                "TIME", "HOOK", "DELIVERY", "METHOD", "SOURCE", "BYTES"
            );
            for d in &list {
                println!(
                    "{:<24}  {:<16} {:<40} {:<6} {:<16} {:>8}",
                    d["time"].as_str().unwrap_or("-"),
                    d["hook"].as_str().unwrap_or("?"),
                    d["delivery"].as_str().unwrap_or("?"),
                    d["method"].as_str().unwrap_or("?"),
                    d["source"].as_str().unwrap_or("?"),
                    d["bytes"].to_string()
                );
            }
            Ok(())
        }
        "show" => {
            let (hook, id) = delivery_id(&a)?;
            let v = call_json(&a, "GET", "/api/deliveries")?;
            let found: Vec<&Value> = v["deliveries"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| d["delivery"] == id.as_str() && hook.as_ref().is_none_or(|h| d["hook"] == h.as_str()))
                .collect();
            let d = match found.as_slice() {
                [] => return Err(Fail::Run(format!("no stored delivery {id:?}"))),
                [d] => *d,
                _ => return Err(Fail::Run(format!("several hooks stored {id:?}: give it as HOOK/{id}"))),
            };
            if json {
                print_json(d);
                return Ok(());
            }
            println!("delivery {}  hook {}", d["delivery"].as_str().unwrap_or("?"), d["hook"].as_str().unwrap_or("?"));
            for key in ["time", "method", "source", "bytes"] {
                if !d[key].is_null() {
                    println!("  {key:<8}{}", d[key].as_str().map_or_else(|| d[key].to_string(), str::to_string));
                }
            }
            for h in d["headers"].as_array().into_iter().flatten() {
                println!("  {}: {}", h[0].as_str().unwrap_or(""), h[1].as_str().unwrap_or(""));
            }
            Ok(())
        }
        "replay" => {
            let (hook, id) = delivery_id(&a)?;
            let path = match &hook {
                Some(h) => format!("/api/deliveries/{}/{}/replay", segment(h), segment(&id)),
                None => format!("/api/deliveries/{}/replay", segment(&id)),
            };
            let v = call_json(&a, "POST", &path)?;
            if json {
                print_json(&v);
            } else {
                let run = if v["run"].is_null() { "no run".to_string() } else { format!("run {}", v["run"]) };
                println!(
                    "replayed {}: {} ({run})",
                    v["replayed"].as_str().unwrap_or(&id),
                    v["outcome"].as_str().unwrap_or("?")
                );
            }
            Ok(())
        }
        other => Err(Fail::Usage(format!("deliveries: unknown action {other:?} (list, show, replay)"))),
    }
}

/// `ID` or `HOOK/ID` (a delivery id may itself hold a `/`: only the first one splits, and only
/// when what is before it looks like a hook id).
fn delivery_id(a: &Args) -> Result<(Option<String>, String), Fail> {
    let Some(raw) = a.positional.get(1) else {
        return Err(Fail::Usage(format!("{} needs a delivery ID (or HOOK/ID)", a.positional[0])));
    };
    Ok(match raw.split_once('/') {
        Some((h, id)) if !h.is_empty() && !id.is_empty() => (Some(h.to_string()), id.to_string()),
        _ => (None, raw.clone()),
    })
}

/// A path segment, percent-encoded (a `/` inside a delivery id becomes `%2F`).
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
