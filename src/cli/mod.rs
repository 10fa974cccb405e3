//! The subcommands. Arguments are parsed by hand (a few dozen flags do not need a parser crate)
//! against the table in [`spec`], which also makes every `--help`, the man page and the shell
//! completions. Every command returns its exit code; `main` only exits with it.

pub mod client;
mod runs;
pub mod spec;

use crate::config::Config;
use client::Target;
use std::ffi::OsString;
use std::io::{BufRead, Read};
use std::path::PathBuf;

/// Exit codes: 0 ok, 1 the command failed, 2 the command line was wrong.
const USAGE: i32 = 2;

/// Runs the command line; returns the process exit code.
pub fn main(args: impl Iterator<Item = OsString>) -> i32 {
    let mut args = args.peekable();
    // Installed or linked as `webhook`, hookcast reads adnanh/webhook's command line.
    let as_webhook =
        args.peek().and_then(|a0| std::path::Path::new(a0).file_name().map(|n| n == "webhook")).unwrap_or(false);
    let mut args: Vec<String> = match args.skip(1).map(|a| a.into_string()).collect() {
        Ok(a) => a,
        Err(bad) => {
            eprintln!("hookcast: argument is not UTF-8: {bad:?}");
            return USAGE;
        }
    };
    if as_webhook {
        args.insert(0, "webhook".into());
    }
    let Some(cmd) = args.first().map(String::as_str) else {
        eprint!("{}", spec::overview());
        return USAGE;
    };
    let rest = &args[1..];
    if cmd == "webhook" {
        return exit_code(webhook(rest));
    }
    match cmd {
        "-h" | "--help" => {
            print!("{}", spec::overview());
            return 0;
        }
        "help" => {
            return match rest.first() {
                None => {
                    print!("{}", spec::overview());
                    0
                }
                Some(name) => match spec::find(name) {
                    Some(c) => {
                        print!("{}", spec::help(c));
                        0
                    }
                    None => exit_code(Err(Fail::Usage(format!("unknown command {name:?}")))),
                },
            };
        }
        "-V" | "--version" | "version" => {
            println!("hookcast {}", env!("CARGO_PKG_VERSION"));
            return 0;
        }
        _ => {}
    }
    if let Some(c) = spec::find(cmd) {
        if rest.iter().take_while(|a| *a != "--").any(|a| a == "-h" || a == "--help") {
            print!("{}", spec::help(c));
            return 0;
        }
    }
    let result = match cmd {
        "serve" => serve(rest),
        "check" => check(rest),
        "publish" => publish(rest),
        "tail" => tail(rest),
        "runs" => runs::runs(rest),
        "deliveries" => runs::deliveries(rest),
        "token" => token(rest),
        "sign" => sign(rest),
        "send" => send(rest),
        "completions" => completions(rest),
        "man" => Args::parse("man", rest).and_then(|a| match a.positional.first() {
            Some(p) => Err(Fail::Usage(format!("man takes no argument {p:?}"))),
            None => {
                print!("{}", spec::man());
                Ok(())
            }
        }),
        other => Err(Fail::Usage(format!("unknown command {other:?}"))),
    };
    exit_code_for(cmd, result)
}

/// `hookcast completions SHELL`.
fn completions(words: &[String]) -> Result<(), Fail> {
    let a = Args::parse("completions", words)?;
    let script = match a.positional.as_slice() {
        [s] if s == "bash" => spec::bash(),
        [s] if s == "zsh" => spec::zsh(),
        [s] if s == "fish" => spec::fish(),
        _ => return Err(Fail::Usage("completions needs one of bash, zsh, fish".into())),
    };
    print!("{script}");
    Ok(())
}

/// [`exit_code`], pointing a usage error at the command's own help.
fn exit_code_for(cmd: &str, result: Result<(), Fail>) -> i32 {
    match result {
        Err(Fail::Usage(msg)) if spec::find(cmd).is_some() => {
            eprintln!("hookcast {cmd}: {msg}\n(see hookcast {cmd} --help)");
            USAGE
        }
        other => exit_code(other),
    }
}

fn exit_code(result: Result<(), Fail>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(Fail::Usage(msg)) => {
            eprintln!("hookcast: {msg}\n(see hookcast --help)");
            USAGE
        }
        Err(Fail::Run(msg)) => {
            eprintln!("hookcast: {msg}");
            1
        }
    }
}

/// How a command failed.
enum Fail {
    /// The command line was wrong.
    Usage(String),
    /// The command ran and failed.
    Run(String),
}

/// Flags and positional words of one command line.
struct Args {
    flags: Vec<(String, Option<String>)>,
    positional: Vec<String>,
}

impl Args {
    /// Splits `cmd`'s words into flags (by the table in [`spec`]: `--long value`, `--long=value`,
    /// `-s value`, switches) and positionals; `-` is a positional, and after `--` every word is.
    /// Flags are stored under their long name (`--config`), whichever way they were written.
    fn parse(cmd: &str, words: &[String]) -> Result<Args, Fail> {
        let spec = spec::find(cmd).ok_or_else(|| Fail::Usage(format!("unknown command {cmd:?}")))?;
        let mut a = Args { flags: Vec::new(), positional: Vec::new() };
        let mut it = words.iter();
        while let Some(w) = it.next() {
            if w == "--" {
                a.positional.extend(it.by_ref().cloned());
                break;
            }
            if w == "-" || !w.starts_with('-') {
                a.positional.push(w.clone());
                continue;
            }
            let (name, inline) = match w.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                _ => (w.as_str(), None),
            };
            let flag = match name.strip_prefix("--") {
                Some(long) => spec::flags(spec).find(|f| f.long == long),
                None => {
                    let mut chars = name[1..].chars();
                    match (chars.next(), chars.next()) {
                        (Some(c), None) => spec::flags(spec).find(|f| f.short == Some(c)),
                        _ => None,
                    }
                }
            };
            let Some(flag) = flag else {
                return Err(Fail::Usage(format!("unknown option {w:?}")));
            };
            let long = format!("--{}", flag.long);
            if flag.value.is_some() {
                let v = match inline {
                    Some(v) => v,
                    None => it.next().cloned().ok_or_else(|| Fail::Usage(format!("{long} needs a value")))?,
                };
                a.flags.push((long, Some(v)));
            } else if inline.is_none() {
                a.flags.push((long, None));
            } else {
                return Err(Fail::Usage(format!("{long} takes no value")));
            }
        }
        Ok(a)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.flags.iter().rev().find(|(n, _)| n == name).and_then(|(_, v)| v.as_deref())
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.flags.iter().filter(move |(n, _)| n == name).filter_map(|(_, v)| v.as_deref())
    }

    fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| n == name)
    }
}

fn load_config(path: Option<&str>) -> Result<Config, Fail> {
    match path {
        None => Ok(Config::default_embedded()),
        Some(p) => Config::from_file(&PathBuf::from(p)).map_err(|e| Fail::Run(format!("{p}: {e}"))),
    }
}

fn serve(words: &[String]) -> Result<(), Fail> {
    let a = Args::parse("serve", words)?;
    if let Some(p) = a.positional.first() {
        return Err(Fail::Usage(format!("serve takes no argument {p:?}")));
    }
    let listen = match a.value("--listen") {
        Some(l) => Some(
            crate::config::parse_listen(l)
                .ok_or_else(|| Fail::Usage(format!("--listen: not an address:port: {l:?}")))?,
        ),
        None => None,
    };
    let source = crate::config::ConfigSource {
        file: a.value("--config").map(PathBuf::from),
        hooks_files: a.values("--hooks").map(PathBuf::from).collect(),
        listen,
        state_dir: a.value("--state-dir").map(PathBuf::from),
        adnanh: None,
    };
    run_daemon(source, &[])
}

/// `hookcast webhook`: adnanh/webhook's flags, mapped onto a [`crate::config::ConfigSource`].
fn webhook(words: &[String]) -> Result<(), Fail> {
    use crate::hooks::adnanh::{parse, Command};
    let settings = match parse(words).map_err(|e| Fail::Usage(e.to_string()))? {
        Command::Version => {
            println!("hookcast {} (reads adnanh/webhook 2.8 hooks files and flags)", env!("CARGO_PKG_VERSION"));
            return Ok(());
        }
        Command::Help => {
            print!("{}", spec::help(spec::find("webhook").expect("in the table")));
            return Ok(());
        }
        Command::Serve(s) => s,
    };
    let watch = if settings.hot_reload { settings.hooks.clone() } else { Vec::new() };
    let source = crate::config::ConfigSource {
        file: settings.config.clone(),
        hooks_files: settings.hooks.clone(),
        listen: settings.listen,
        state_dir: None,
        adnanh: Some(settings),
    };
    run_daemon(source, &watch)
}

/// Loads the configuration, binds and runs the loop; `watch` are hooks files reloaded on change.
fn run_daemon(source: crate::config::ConfigSource, watch: &[PathBuf]) -> Result<(), Fail> {
    let (cfg, hooks) = source.load().map_err(|e| Fail::Run(e.to_string()))?;
    crate::logger::init(cfg.log_level, cfg.log_format);
    for note in source.adnanh.iter().flat_map(|a| &a.notes) {
        log::warn!("{note}");
    }
    match crate::sys::raise_nofile_limit() {
        Ok(n) => log::debug!("open-file limit {n}"),
        Err(e) => log::warn!("could not raise the open-file limit: {e}"),
    }
    for w in hooks.iter().flat_map(|h| &h.def.warnings) {
        log::warn!("{w}");
    }
    let hook_count = hooks.len();
    let mut server = crate::event_loop::Server::bind(cfg.clone(), hooks).map_err(|e| Fail::Run(e.to_string()))?;
    server.set_source(source);
    if !watch.is_empty() {
        server.watch_hooks_files(watch.to_vec());
    }
    log::info!(
        "hookcast {} listening on http://{} ({hook_count} hooks)",
        env!("CARGO_PKG_VERSION"),
        server.local_addr()
    );
    server.run().map_err(|e| Fail::Run(format!("event loop: {e}")))
}

fn check(words: &[String]) -> Result<(), Fail> {
    let a = Args::parse("check", words)?;
    let path = a.value("--config").or(a.positional.first().map(String::as_str));
    let hook_files: Vec<PathBuf> = a.values("--hooks").map(PathBuf::from).collect();
    if path.is_none() && hook_files.is_empty() {
        return Err(Fail::Usage("check needs --config FILE and/or --hooks FILE".into()));
    }
    let mut cfg = if path.is_none() { Config::default_without_demo() } else { load_config(path)? };
    cfg.add_hooks_files(&hook_files).map_err(|e| Fail::Run(e.to_string()))?;
    // Reads every secret too, so a missing credential fails here and not at the first delivery.
    let hooks =
        crate::hooks::intake::Hooks::prepare(std::mem::take(&mut cfg.hooks)).map_err(|e| Fail::Run(e.to_string()))?;
    let hook_warnings = hooks.iter().flat_map(|h| h.def.warnings.iter().cloned());
    for w in hook_warnings.chain(check_warnings(&cfg)).chain(proxy_warnings(&cfg)) {
        eprintln!("warning: {w}");
    }
    println!(
        "{}: ok (listen {}, {} hook(s), {} token(s), {} public rule(s))",
        path.unwrap_or("(embedded default)"),
        cfg.listen,
        hooks.len(),
        cfg.tokens.len(),
        cfg.public.len()
    );
    if let Some(c) = &cfg.cluster {
        println!("{}", c.describe());
    }
    for (v, source) in cfg.jwt.iter().zip(&cfg.jwt_key_sources) {
        println!("{}", crate::jwt::describe(v, source));
    }
    Ok(())
}

/// What `check` points out without refusing the configuration.
fn check_warnings(cfg: &crate::config::Config) -> Vec<String> {
    let mut out = Vec::new();
    let record = crate::journal::record::MAX_BODY_LEN;
    let webhook = (record - 2 * cfg.limits.max_header_bytes) / 4 * 3;
    if cfg.limits.max_body_bytes > webhook {
        // A publish's data is its body; a delivery's record holds its body in base64 beside
        // the request's headers.
        out.push(format!(
            "limits.max_body_bytes is {}: with a state_dir, a publish over about {} bytes or a webhook over \
             about {} bytes cannot be journalled and is refused with 413 (a journal record holds at most \
             {record} bytes)",
            cfg.limits.max_body_bytes,
            record - 512,
            webhook,
        ));
    }
    out
}

/// What `check` says about proxy and host settings that are valid but likely not meant.
fn proxy_warnings(cfg: &crate::config::Config) -> Vec<String> {
    let mut out = Vec::new();
    if !cfg.trusted_proxies.is_empty() && !cfg.cf_connecting_ip {
        out.push(
            "trusted_proxies without cf_connecting_ip: CF-Connecting-IP is ignored and X-Forwarded-For is walked \
             (set \"cf_connecting_ip\": true if the proxy is cloudflared)"
                .to_string(),
        );
    }
    // Rules for loopback only are for clients on the box, who use an IP literal or localhost.
    let remote_rule = cfg.public.iter().any(|r| r.from.is_empty() || r.from.iter().any(|c| !c.is_loopback_only()));
    if !cfg.trusted_proxies.is_empty() && cfg.server_names.is_empty() && remote_rule {
        out.push(
            "public rules for remote clients with trusted_proxies but no server_names: requests that arrive \
             with the proxy's public host name get nothing from public rules (list the name in server_names)"
                .to_string(),
        );
    }
    out
}

fn target(a: &Args) -> Result<Target, Fail> {
    let env = std::env::var("HOOKCAST_URL").ok();
    let url = a.value("--url").or(env.as_deref()).unwrap_or("http://127.0.0.1:9000");
    Target::parse(url).map_err(Fail::Usage)
}

/// The bearer token: `--token`, `--token-file`, `$HOOKCAST_TOKEN`, `$HOOKCAST_TOKEN_FILE`, in
/// that order. A file's first line is the token.
fn bearer(a: &Args) -> Result<Option<String>, Fail> {
    if let Some(t) = a.value("--token") {
        return Ok(Some(t.to_string()));
    }
    let file = a.value("--token-file").map(str::to_string);
    if file.is_none() {
        if let Ok(t) = std::env::var("HOOKCAST_TOKEN") {
            return Ok(Some(t));
        }
    }
    let Some(path) = file.or_else(|| std::env::var("HOOKCAST_TOKEN_FILE").ok()) else { return Ok(None) };
    let text = std::fs::read_to_string(&path).map_err(|e| Fail::Run(format!("token file {path}: {e}")))?;
    match text.lines().next().map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => Ok(Some(t.to_string())),
        None => Err(Fail::Run(format!("token file {path}: empty"))),
    }
}

/// Percent-encodes a query value (topics and ids are mostly safe; this covers the rest).
fn encode_query(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' | b'*' | b',' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn publish(words: &[String]) -> Result<(), Fail> {
    let a = Args::parse("publish", words)?;
    let [topic, data] = a.positional.as_slice() else {
        return Err(Fail::Usage("publish needs TOPIC and DATA (or - for stdin)".into()));
    };
    let body = if data == "-" {
        let mut b = Vec::new();
        std::io::stdin().read_to_end(&mut b).map_err(|e| Fail::Run(format!("stdin: {e}")))?;
        b
    } else {
        data.clone().into_bytes()
    };
    let t = target(&a)?;
    let mut path = format!("/publish/{}", encode_query(topic));
    let mut query = Vec::new();
    if let Some(ev) = a.value("--event") {
        query.push(format!("event={}", encode_query(ev)));
    }
    if a.has("--retain") {
        query.push("retain=1".to_string());
    }
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    let auth = bearer(&a)?.map(|t| format!("Bearer {t}"));
    let mut headers =
        vec![("Content-Type", if a.has("--json") { "application/json" } else { "text/plain; charset=utf-8" })];
    if let Some(h) = auth.as_deref() {
        headers.push(("Authorization", h));
    }
    headers.push(("Connection", "close"));
    let (status, fields, mut r) =
        t.request("POST", &path, &headers, &body).map_err(|e| Fail::Run(format!("publish: {e}")))?;
    let body = client::read_body(&fields, &mut r).map_err(|e| Fail::Run(format!("publish: {e}")))?;
    let text = String::from_utf8_lossy(&body);
    if status != 202 {
        return Err(Fail::Run(format!("publish: {status} {}", text.trim())));
    }
    let id = serde_json::from_str::<serde_json::Value>(&text).ok().and_then(|v| v["id"].as_u64());
    match id {
        Some(id) => println!("{id}"),
        None => println!("{}", text.trim()),
    }
    Ok(())
}

fn tail(words: &[String]) -> Result<(), Fail> {
    let a = Args::parse("tail", words)?;
    if a.positional.is_empty() {
        return Err(Fail::Usage("tail needs at least one TOPIC".into()));
    }
    let t = target(&a)?;
    let topics = a.positional.join(",");
    // The server checks the filter (a 400 names what is wrong with it).
    let mut filter = String::new();
    for (name, value) in a
        .value("--type")
        .map(|v| ("type", v))
        .into_iter()
        .chain(a.values("--where").map(|v| ("where", v)))
        .chain(a.value("--q").map(|v| ("q", v)))
    {
        filter.push_str(&format!("&{name}={}", encode_query(value)));
    }
    let auth = bearer(&a)?.map(|t| format!("Bearer {t}"));
    let mut last_id = a.value("--since").map(str::to_string);
    let mut retry_ms = 2000;
    let mut announced_down = false;
    loop {
        // States only on the first connect: a resume gets what came after its cursor.
        let state = if a.has("--state") && last_id.is_none() { "&state=1" } else { "" };
        let path = format!("/events?topics={}&format=json{filter}{state}", encode_query(&topics));
        let mut headers = vec![("Accept", "text/event-stream")];
        if let Some(h) = auth.as_deref() {
            headers.push(("Authorization", h));
        }
        if let Some(id) = last_id.as_deref() {
            headers.push(("Last-Event-ID", id));
        }
        match t.request("GET", &path, &headers, b"") {
            Err(e) => {
                if !announced_down {
                    eprintln!("hookcast tail: {e}; retrying every {retry_ms} ms");
                    announced_down = true;
                }
            }
            Ok((status, fields, mut r)) if status != 200 => {
                let body = client::read_body(&fields, &mut r).unwrap_or_default();
                return Err(Fail::Run(format!("tail: {status} {}", String::from_utf8_lossy(&body).trim())));
            }
            Ok((_, _, mut r)) => {
                if announced_down {
                    eprintln!("hookcast tail: connected");
                    announced_down = false;
                }
                let mut parser = crate::sse::Parser::default();
                let mut buf = [0u8; 16 * 1024];
                loop {
                    let n = match r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    for ev in parser.feed(&buf[..n]) {
                        print_event(&ev, a.has("--json"));
                    }
                    if !parser.last_event_id().is_empty() {
                        last_id = Some(parser.last_event_id().to_string());
                    }
                }
                retry_ms = parser.retry_ms.unwrap_or(retry_ms).clamp(100, 60_000);
                eprintln!("hookcast tail: disconnected; resuming after {}", last_id.as_deref().unwrap_or("now"));
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(retry_ms));
    }
}

fn print_event(ev: &crate::sse::Received, json: bool) {
    if json {
        println!("{}", ev.data);
        return;
    }
    if ev.event == "reset" {
        println!("-- history gap: some events were missed ({}) --", ev.data);
        return;
    }
    let v: serde_json::Value = serde_json::from_str(&ev.data).unwrap_or(serde_json::Value::Null);
    let data = match &v["data"] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => ev.data.clone(),
        other => other.to_string(),
    };
    let kind = v["event"].as_str().unwrap_or("message");
    let kind = if kind == "message" { String::new() } else { format!(" [{kind}]") };
    println!("{} {} #{}{kind} {data}", v["time"].as_str().unwrap_or("-"), v["topic"].as_str().unwrap_or("?"), ev.id);
}

/// The provider, secret and headers `sign`/`send` produce for `body`.
fn signed_headers(a: &Args, body: &[u8]) -> Result<Vec<(String, String)>, Fail> {
    use crate::hooks::providers::{self, Algorithm, Encoding, Provider};
    let name = a.value("--provider").ok_or_else(|| Fail::Usage("--provider is required".into()))?;
    let mut p = Provider::parse(name).ok_or_else(|| Fail::Usage(format!("unknown provider {name:?}")))?;
    if let Provider::Hmac(spec) = &mut p {
        if let Some(h) = a.value("--hmac-header") {
            spec.header = h.to_ascii_lowercase();
        }
        if let Some(v) = a.value("--hmac-algorithm") {
            spec.algorithm = Algorithm::parse(v).ok_or_else(|| Fail::Usage(format!("unknown algorithm {v:?}")))?;
        }
        if let Some(v) = a.value("--hmac-encoding") {
            spec.encoding = Encoding::parse(v).ok_or_else(|| Fail::Usage(format!("unknown encoding {v:?}")))?;
        }
        if let Some(v) = a.value("--hmac-prefix") {
            spec.prefix = v.to_string();
        }
    }
    let env_secret = std::env::var("HOOKCAST_SECRET").ok();
    let secret = a
        .value("--secret")
        .or(env_secret.as_deref())
        .ok_or_else(|| Fail::Usage("--secret is required (or $HOOKCAST_SECRET)".into()))?;
    let secret = match secret.strip_prefix('@') {
        Some(path) => {
            let raw = std::fs::read(path).map_err(|e| Fail::Run(format!("{path}: {e}")))?;
            let trimmed = raw.strip_suffix(b"\n").unwrap_or(&raw);
            trimmed.strip_suffix(b"\r").unwrap_or(trimmed).to_vec()
        }
        None => secret.as_bytes().to_vec(),
    };
    let id = match a.value("--id") {
        Some(id) => id.to_string(),
        None => {
            let mut raw = [0u8; 16];
            crate::sys::random_bytes(&mut raw).map_err(|e| Fail::Run(format!("random: {e}")))?;
            let h = crate::auth::hex(&raw);
            format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
        }
    };
    let event = a.value("--event").unwrap_or("push");
    let now = crate::clock::unix_ms() / 1000;
    Ok(providers::sign(&p, &secret, body, now, event, &id))
}

fn read_body(path: Option<&String>) -> Result<Vec<u8>, Fail> {
    match path.map(String::as_str) {
        None | Some("-") => {
            let mut b = Vec::new();
            std::io::stdin().read_to_end(&mut b).map_err(|e| Fail::Run(format!("stdin: {e}")))?;
            Ok(b)
        }
        Some(p) => std::fs::read(p).map_err(|e| Fail::Run(format!("{p}: {e}"))),
    }
}

fn sign(words: &[String]) -> Result<(), Fail> {
    let a = Args::parse("sign", words)?;
    let body = read_body(a.positional.first())?;
    for (k, v) in signed_headers(&a, &body)? {
        println!("{k}: {v}");
    }
    Ok(())
}

fn send(words: &[String]) -> Result<(), Fail> {
    let a = Args::parse("send", words)?;
    let [url, file] = a.positional.as_slice() else {
        return Err(Fail::Usage("send needs URL and FILE (- for stdin)".into()));
    };
    let body = read_body(Some(file))?;
    let t = Target::parse(url).map_err(Fail::Usage)?;
    let headers = signed_headers(&a, &body)?;
    let ct = a.value("--content-type").unwrap_or("application/json");
    let mut all: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    all.push(("Content-Type", ct));
    all.push(("Connection", "close"));
    let (status, fields, mut r) = t.request("POST", "", &all, &body).map_err(|e| Fail::Run(format!("send: {e}")))?;
    let answer = client::read_body(&fields, &mut r).map_err(|e| Fail::Run(format!("send: {e}")))?;
    println!("{status} {}", String::from_utf8_lossy(&answer).trim_end());
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(Fail::Run(format!("the hook answered {status}")))
    }
}

/// `--ttl`: seconds, or a number with s, m, h or d.
fn parse_ttl(s: &str) -> Option<u64> {
    let (n, unit) = match s.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&s[..i], c),
        _ => (s, 's'),
    };
    let mult = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    n.parse::<u64>().ok().filter(|n| *n > 0)?.checked_mul(mult)
}

/// `token jwt`: an HS-signed token for testing a verifier.
fn token_jwt(words: &[String]) -> Result<(), Fail> {
    use crate::jwt::Alg;
    use serde_json::{json, Value};
    let a = Args::parse("token", words)?;
    if let Some(p) = a.positional.get(1) {
        return Err(Fail::Usage(format!("token jwt takes no argument {p:?}")));
    }
    let name = a.value("--alg").unwrap_or("HS256");
    let alg = Alg::parse(name)
        .filter(|alg| alg.is_hmac())
        .ok_or_else(|| Fail::Usage(format!("--alg: HS256, HS384 or HS512, not {name:?}")))?;
    // Never on the command line, where `ps` and shell history would show it.
    let source = match (a.value("--secret-env"), a.value("--secret-file")) {
        (Some(e), None) => crate::hooks::secret::SecretSource::Env(e.to_string()),
        (None, Some(f)) => crate::hooks::secret::SecretSource::File(PathBuf::from(f)),
        _ => return Err(Fail::Usage("token jwt needs one of --secret-env NAME or --secret-file PATH".into())),
    };
    let secret = source.resolve().map_err(|e| Fail::Run(e.message))?;
    if secret.len() < alg.min_secret_len() {
        return Err(Fail::Run(format!(
            "an {alg} secret must be at least {} bytes, {source} has {}",
            alg.min_secret_len(),
            secret.len()
        )));
    }
    let ttl = match a.value("--ttl") {
        None => 15 * 60,
        Some(t) => parse_ttl(t).ok_or_else(|| Fail::Usage(format!("--ttl: like 90s, 15m, 2h or 1d, not {t:?}")))?,
    };
    let now = crate::clock::unix_ms() / 1000;
    let mut claims = json!({"iat": now, "exp": now + ttl});
    for (flag, claim) in [("--sub", "sub"), ("--aud", "aud"), ("--iss", "iss")] {
        if let Some(v) = a.value(flag) {
            claims[claim] = v.into();
        }
    }
    let (subscribe, publish): (Vec<&str>, Vec<&str>) =
        (a.values("--subscribe").collect(), a.values("--publish").collect());
    for p in subscribe.iter().chain(&publish) {
        crate::topic::validate_pattern(p).map_err(|e| Fail::Usage(format!("{e}: {p:?}")))?;
    }
    if !subscribe.is_empty() || !publish.is_empty() {
        claims["hookcast"] = json!({"subscribe": subscribe, "publish": publish});
    }
    for kv in a.values("--claim") {
        let Some((k, v)) = kv.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(Fail::Usage(format!("--claim: NAME=VALUE, not {kv:?}")));
        };
        claims[k] = serde_json::from_str::<Value>(v).unwrap_or_else(|_| v.into());
    }
    let token = crate::jwt::sign_hs(alg, &secret, a.value("--kid"), &claims)
        .ok_or_else(|| Fail::Run("cannot sign with this secret".into()))?;
    println!("{token}");
    Ok(())
}

fn token(words: &[String]) -> Result<(), Fail> {
    if words.first().map(String::as_str) == Some("jwt") {
        return token_jwt(words);
    }
    let a = Args::parse("token", words)?;
    match a.positional.first().map(String::as_str) {
        Some("new") => {
            let mut raw = [0u8; 24];
            crate::sys::random_bytes(&mut raw).map_err(|e| Fail::Run(format!("random: {e}")))?;
            let tok = format!("hc_{}", crate::auth::hex(&raw));
            println!("token:  {tok}\nsha256: {}", crate::auth::hex(&crate::auth::token_hash(&tok)));
            Ok(())
        }
        Some("hash") => {
            let tok = match a.positional.get(1) {
                Some(t) => t.clone(),
                None => {
                    let mut line = String::new();
                    std::io::stdin().lock().read_line(&mut line).map_err(|e| Fail::Run(format!("stdin: {e}")))?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            println!("{}", crate::auth::hex(&crate::auth::token_hash(&tok)));
            Ok(())
        }
        _ => Err(Fail::Usage("token new | token hash [TOKEN] | token jwt --secret-env NAME ...".into())),
    }
}
