//! adnanh/webhook's command line (`webhook -hooks hooks.json -verbose -port 9000 …`), read by
//! `hookcast webhook` so a systemd unit can swap the binary and keep its arguments.
//!
//! The flags are those of adnanh 2.8 (`webhook.go`, `platform_unix.go`), parsed as Go's `flag`
//! package does: `-flag value`, `-flag=value`, `--flag` alike; a boolean takes no separate value
//! (`-verbose`, `-verbose=false`); `-hooks` and `-header` repeat. Flags hookcast cannot honour
//! (TLS, `-template`, privilege dropping, Unix sockets, log files, pid files) are refused with
//! the alternative, never ignored: a unit that relies on one must not start half-configured.
//! Parsing is pure; `crate::config` puts the result into a `Config` (`ConfigSource::load`).

use crate::http::token::is_token_byte;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// adnanh's default listen address (`-ip 0.0.0.0 -port 9000`).
const DEFAULT_IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
const DEFAULT_PORT: u16 = 9000;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve with these settings.
    Serve(Settings),
    /// `-version`.
    Version,
    /// `-h`, `-help`.
    Help,
}

/// The settings adnanh's flags map to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `-hooks`, repeated (adnanh's default: `hooks.json`).
    pub hooks: Vec<PathBuf>,
    /// `-ip`/`-port`; none when neither was given and `-config` names a listen address.
    pub listen: Option<SocketAddr>,
    /// `-verbose` (info), `-debug` (debug); neither: warnings only (adnanh logs nothing).
    pub log_level: log::LevelFilter,
    /// `-hotreload`: watch the hooks files and reload on change.
    pub hot_reload: bool,
    /// `-http-methods`: methods of hooks that list none.
    pub http_methods: Vec<String>,
    /// `-header name=value`: added to every answer of a hook.
    pub headers: Vec<(String, String)>,
    /// `-x-request-id` (with `-x-request-id-limit`, 0 for none): log the request's
    /// `X-Request-Id` with its delivery.
    pub x_request_id: Option<usize>,
    /// hookcast's own `-config FILE` (tokens, public rules, proxies…), optional.
    pub config: Option<PathBuf>,
    /// Flags accepted but without effect in hookcast, said at start.
    pub notes: Vec<String>,
}

/// A command line hookcast cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagError(pub String);

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FlagError {}

fn fail<T>(msg: impl Into<String>) -> Result<T, FlagError> {
    Err(FlagError(msg.into()))
}

/// Boolean flags (take no separate value).
const BOOLS: &[&str] = &[
    "verbose",
    "debug",
    "nopanic",
    "hotreload",
    "x-request-id",
    "secure",
    "template",
    "version",
    "list-cipher-suites",
    "h",
    "help",
];
/// Flags with a value.
const VALUED: &[&str] = &[
    "hooks",
    "header",
    "ip",
    "port",
    "urlprefix",
    "http-methods",
    "x-request-id-limit",
    "max-multipart-mem",
    "cert",
    "key",
    "tls-min-version",
    "cipher-suites",
    "logfile",
    "pidfile",
    "socket",
    "setuid",
    "setgid",
    "config",
];

/// Go's `strconv.ParseBool`.
fn go_bool(name: &str, v: &str) -> Result<bool, FlagError> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => fail(format!("invalid boolean value {v:?} for -{name}")),
    }
}

fn number<T: std::str::FromStr>(name: &str, v: &str) -> Result<T, FlagError> {
    v.parse().or_else(|_| fail(format!("invalid value {v:?} for -{name}: not a number in range")))
}

/// Parses adnanh's flags (the words after `webhook`).
pub fn parse(words: &[String]) -> Result<Command, FlagError> {
    let mut flags: Vec<(String, String)> = Vec::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        if w == "--" {
            if let Some(extra) = it.next() {
                return fail(format!("unexpected argument {extra:?} (adnanh/webhook takes flags only)"));
            }
            break;
        }
        let Some(body) = w.strip_prefix("--").or_else(|| w.strip_prefix('-')).filter(|b| !b.is_empty()) else {
            return fail(format!("unexpected argument {w:?} (adnanh/webhook takes flags only)"));
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if name.starts_with('-') || name.is_empty() {
            return fail(format!("bad flag syntax: {w}"));
        }
        let value = if BOOLS.contains(&name) {
            match inline {
                Some(v) => go_bool(name, &v)?.to_string(),
                None => "true".to_string(),
            }
        } else if VALUED.contains(&name) {
            match inline {
                Some(v) => v,
                None => it.next().cloned().ok_or_else(|| FlagError(format!("flag needs an argument: -{name}")))?,
            }
        } else {
            return fail(format!(
                "flag provided but not defined: -{name} (hookcast webhook takes adnanh/webhook 2.8's flags)"
            ));
        };
        flags.push((name.to_string(), value));
    }
    let last = |n: &str| flags.iter().rev().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
    let all = |n: &'static str| flags.iter().filter(move |(k, _)| k == n).map(|(_, v)| v.as_str());
    let on = |n: &str| last(n) == Some("true");
    if on("h") || on("help") {
        return Ok(Command::Help);
    }
    if on("version") {
        return Ok(Command::Version);
    }
    let tls = "terminate TLS in front of hookcast (Cloudflare Tunnel, Caddy, nginx) and serve plain HTTP on loopback";
    let refused: &[(&str, String)] = &[
        ("template", "hookcast does not run Go templates over hooks files; take secrets from {\"env\": NAME}, {\"file\": PATH} or {\"credential\": NAME} (see docs/migrating-from-webhook.md)".into()),
        ("secure", format!("hookcast serves plain HTTP only: {tls}")),
        ("list-cipher-suites", format!("hookcast serves plain HTTP only: {tls}")),
    ];
    for (name, why) in refused {
        if on(name) {
            return fail(format!("-{name} is not supported: {why}"));
        }
    }
    let refused_valued: &[(&str, &str)] = &[
        ("logfile", "hookcast logs to stderr (the journal under systemd); use StandardError=append:FILE in the unit"),
        (
            "pidfile",
            "under systemd the unit tracks the main process itself (Type=notify, see systemd/hookcast.service)",
        ),
        ("socket", "listen on TCP (-ip/-port), or let systemd pass a socket (socket activation, LISTEN_FDS)"),
        ("setuid", "run the unit as that user (User=/Group= in systemd); socket activation binds a low port for it"),
        ("setgid", "run the unit as that group (User=/Group= in systemd); socket activation binds a low port for it"),
    ];
    for (name, why) in refused_valued {
        match last(name) {
            None => {}
            // adnanh's own "not set" values.
            Some("0") if name.starts_with("set") => {}
            Some("") if !name.starts_with("set") => {}
            Some(_) => return fail(format!("-{name} is not supported: {why}")),
        }
    }
    let mut notes = Vec::new();
    for name in ["cert", "key", "tls-min-version", "cipher-suites"] {
        if last(name).is_some() {
            notes.push(format!("-{name} ignored: it only applies with -secure, as in adnanh/webhook"));
        }
    }
    if let Some(v) = last("max-multipart-mem") {
        number::<i64>("max-multipart-mem", v)?;
        notes.push("-max-multipart-mem ignored: hookcast keeps a body in memory up to limits.max_body_bytes".into());
    }
    let prefix = last("urlprefix").unwrap_or("hooks");
    if prefix.trim_matches('/') != "hooks" {
        return fail(format!(
            "-urlprefix {prefix:?} is not supported: hookcast serves hooks at /hooks/{{id}} (adnanh's default); \
             leave -urlprefix out, or have the reverse proxy rewrite /{}/ to /hooks/",
            prefix.trim_matches('/')
        ));
    }
    let ip_given = last("ip");
    let port_given = last("port");
    let ip: IpAddr = match ip_given {
        None => DEFAULT_IP,
        Some(s) => s
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .or_else(|_| fail(format!("-ip {s:?} is not an IP address (hookcast does not resolve names here)")))?,
    };
    let port = match port_given {
        None => DEFAULT_PORT,
        Some(p) => number::<u16>("port", p)?,
    };
    let config = last("config").map(PathBuf::from);
    let listen = (ip_given.is_some() || port_given.is_some() || config.is_none()).then(|| SocketAddr::new(ip, port));
    let mut http_methods = Vec::new();
    if let Some(m) = last("http-methods") {
        // adnanh: upper case, spaces removed, split on commas.
        for m in m.replace(' ', "").to_ascii_uppercase().split(',').filter(|m| !m.is_empty()) {
            if !m.bytes().all(is_token_byte) {
                return fail(format!("-http-methods: not an HTTP method: {m:?}"));
            }
            http_methods.push(m.to_string());
        }
    }
    let mut headers = Vec::new();
    for h in all("header") {
        let Some((name, value)) = h.split_once('=') else {
            return fail(format!("-header {h:?}: header flag must be in name=value format"));
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return fail(format!("-header {h:?}: not a header name: {name:?}"));
        }
        if value.contains(['\r', '\n', '\0']) {
            return fail(format!("-header {h:?}: a header value cannot hold CR, LF or NUL"));
        }
        headers.push((name.to_string(), value.to_string()));
    }
    let limit = match last("x-request-id-limit") {
        None => 0,
        Some(v) => number::<i64>("x-request-id-limit", v)?.max(0) as usize,
    };
    let mut hooks: Vec<PathBuf> = all("hooks").map(PathBuf::from).collect();
    if hooks.is_empty() {
        hooks.push(PathBuf::from("hooks.json"));
    }
    let log_level = if on("debug") {
        log::LevelFilter::Debug
    } else if on("verbose") {
        log::LevelFilter::Info
    } else {
        log::LevelFilter::Warn
    };
    Ok(Command::Serve(Settings {
        hooks,
        listen,
        log_level,
        hot_reload: on("hotreload"),
        http_methods,
        headers,
        x_request_id: on("x-request-id").then_some(limit),
        config,
        notes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    fn settings(s: &str) -> Settings {
        match parse(&words(s)) {
            Ok(Command::Serve(s)) => s,
            other => panic!("{s}: {other:?}"),
        }
    }

    fn error(s: &str) -> String {
        parse(&words(s)).unwrap_err().0
    }

    #[test]
    fn a_systemd_units_command_line() {
        let s = settings(
            "-hooks /etc/webhook/hooks.json -verbose -port 9001 -ip 127.0.0.1 -hotreload -urlprefix hooks \
             -http-methods post,Put -header X-A=1 --header=X-B=b=c -x-request-id -x-request-id-limit=8 \
             --hooks=/etc/webhook/more.json -nopanic",
        );
        assert_eq!(s.hooks, [PathBuf::from("/etc/webhook/hooks.json"), PathBuf::from("/etc/webhook/more.json")]);
        assert_eq!(s.listen, Some("127.0.0.1:9001".parse().unwrap()));
        assert_eq!(s.log_level, log::LevelFilter::Info);
        assert!(s.hot_reload);
        assert_eq!(s.http_methods, ["POST", "PUT"]);
        assert_eq!(s.headers, [("X-A".to_string(), "1".to_string()), ("X-B".to_string(), "b=c".to_string())]);
        assert_eq!(s.x_request_id, Some(8));
        assert!(s.notes.is_empty());
    }

    #[test]
    fn adnanh_defaults() {
        let s = settings("");
        assert_eq!(s.hooks, [PathBuf::from("hooks.json")]);
        assert_eq!(s.listen, Some("0.0.0.0:9000".parse().unwrap()));
        assert_eq!(s.log_level, log::LevelFilter::Warn);
        assert!(!s.hot_reload && s.x_request_id.is_none() && s.http_methods.is_empty());
        assert_eq!(settings("-debug").log_level, log::LevelFilter::Debug);
        assert_eq!(settings("-verbose=false -hotreload=0").log_level, log::LevelFilter::Warn);
        assert_eq!(settings("-ip ::1 -port 0").listen, Some("[::1]:0".parse().unwrap()));
        // With hookcast's own config and no -ip/-port, the config's listen address stays.
        assert_eq!(settings("-config /etc/hookcast.json").listen, None);
        assert_eq!(parse(&words("-version")), Ok(Command::Version));
        assert_eq!(parse(&words("--help")), Ok(Command::Help));
        assert_eq!(settings("-secure=false -template=false -setuid 0 -setgid 0").hooks.len(), 1);
        assert_eq!(settings("-cert c.pem -max-multipart-mem 10").notes.len(), 2);
    }

    #[test]
    fn unsupported_flags_are_refused_with_the_alternative() {
        for (line, want) in [
            ("-template", "-template is not supported: hookcast does not run Go templates"),
            ("-secure -cert c -key k", "-secure is not supported: hookcast serves plain HTTP only"),
            ("-setuid 1000 -setgid 1000", "-setuid is not supported: run the unit as that user"),
            ("-socket /run/w.sock", "-socket is not supported"),
            ("-logfile /var/log/w.log", "-logfile is not supported"),
            ("-pidfile /run/w.pid", "-pidfile is not supported"),
            ("-urlprefix api", "-urlprefix \"api\" is not supported: hookcast serves hooks at /hooks/{id}"),
            ("-bogus", "flag provided but not defined: -bogus"),
            ("-port", "flag needs an argument: -port"),
            ("-port x", "invalid value \"x\" for -port"),
            ("-verbose=maybe", "invalid boolean value \"maybe\" for -verbose"),
            ("-header X", "-header \"X\": header flag must be in name=value format"),
            ("-ip localhost", "-ip \"localhost\" is not an IP address"),
            ("-hooks h.json extra", "unexpected argument \"extra\""),
        ] {
            let got = error(line);
            assert!(got.starts_with(want), "{line}:\n got {got}\nwant {want}");
        }
    }
}
