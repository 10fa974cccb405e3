//! The configuration: one JSON file, read raw as `serde_json::Value`, then walked into a
//! validated [`Config`]. Unknown keys and bad values are errors that name their JSON path
//! (`tokens[1].scopes: unknown scope "pubish"`), so `hookcast check` can say exactly what to fix.
//!
//! The walk is written by hand rather than with `#[serde(deny_unknown_fields)]` because serde's
//! messages carry a line and column but not the path, and half of our checks (CIDRs, topic
//! patterns, hashes) are semantic anyway.

mod cluster;
pub mod json;
mod jwt;
mod sources;

use crate::auth::{Cidr, PublicRule, Scope, TokenConfig};
use crate::hub::{HistoryConfig, RetainConfig};
use crate::topic;
use json::{err, kind, ConfigError, Obj};
use serde_json::Value;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The configuration used when no `--config` is given: loopback only, topic `demo` open.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.json");

/// Why [`ConfigSource::load`] failed, with the place to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The `--config` file cannot be read or is invalid.
    File(PathBuf, ConfigError),
    /// A hooks file, a hook or one of its secrets (the error's path names the file or hook).
    Hooks(ConfigError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::File(p, e) => write!(f, "{}: {e}", p.display()),
            LoadError::Hooks(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// Why a cluster node refuses a journal: the two cannot both be the record yet.
const CLUSTER_AND_STATE_DIR: &str =
    "a node in a cluster keeps its log in Redis; remove state_dir (the journal) from this node's config";

/// Where the configuration comes from, so SIGHUP can read it again the same way.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// `--config FILE` (none: the embedded default).
    pub file: Option<PathBuf>,
    /// `--hooks FILE`, repeatable.
    pub hooks_files: Vec<PathBuf>,
    /// `--listen` override.
    pub listen: Option<SocketAddr>,
    /// `--state-dir` override.
    pub state_dir: Option<PathBuf>,
    /// adnanh/webhook's flags (`hookcast webhook`): without `file`, the base is an empty
    /// configuration rather than the demo default.
    pub adnanh: Option<crate::hooks::adnanh::Settings>,
}

impl ConfigSource {
    /// Reads and validates everything, secrets included: the config with the overrides applied
    /// and the hooks ready to serve. Any error names the file and the JSON path.
    pub fn load(&self) -> Result<(Config, crate::hooks::intake::Hooks), LoadError> {
        let mut cfg = match (&self.file, &self.adnanh) {
            (None, None) if self.hooks_files.is_empty() => Config::default_embedded(),
            (None, None) => Config::default_without_demo(),
            (None, Some(_)) => Config::from_json("{}").expect("an empty configuration is valid"),
            (Some(p), _) => Config::from_file(p).map_err(|e| LoadError::File(p.clone(), e))?,
        };
        if let Some(a) = &self.adnanh {
            // adnanh reads `{{` as text unless -template (which `hookcast webhook` refuses).
            for f in &self.hooks_files {
                cfg.hooks.extend(crate::hooks::def::load_hooks_file_as(f, true).map_err(LoadError::Hooks)?);
            }
            apply_adnanh(a, &mut cfg);
        } else {
            cfg.add_hooks_files(&self.hooks_files).map_err(LoadError::Hooks)?;
        }
        let hooks = crate::hooks::intake::Hooks::prepare(std::mem::take(&mut cfg.hooks)).map_err(LoadError::Hooks)?;
        if let Some(l) = self.listen {
            cfg.listen = l;
        }
        if let Some(d) = &self.state_dir {
            if cfg.cluster.is_some() {
                let e =
                    ConfigError { path: "cluster".into(), message: format!("{CLUSTER_AND_STATE_DIR} (--state-dir)") };
                return Err(LoadError::File(self.file.clone().unwrap_or_default(), e));
            }
            cfg.state_dir = Some(d.clone());
        }
        Ok((cfg, hooks))
    }
}

/// Puts adnanh's flags into a loaded configuration (its hooks not yet prepared).
fn apply_adnanh(a: &crate::hooks::adnanh::Settings, cfg: &mut Config) {
    cfg.log_level = a.log_level;
    cfg.x_request_id = a.x_request_id;
    for h in &mut cfg.hooks {
        if h.http_methods.is_empty() {
            h.http_methods = a.http_methods.clone();
        }
        h.flag_headers = a.headers.clone();
    }
}

/// Connection and request limits; each one maps to a status or a close (see README).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections in total; beyond it new ones get 503 and are closed.
    pub max_connections: usize,
    /// Open connections from one address (the TCP peer at accept, except a trusted proxy), and
    /// streams (SSE, WebSocket, long poll) from one client behind a trusted proxy.
    pub max_connections_per_ip: usize,
    /// Bytes of a request head (431 beyond).
    pub max_header_bytes: usize,
    /// Bytes of a request target (414 beyond).
    pub max_uri_bytes: usize,
    /// Bytes of a request body (413 beyond).
    pub max_body_bytes: usize,
    /// Time to receive a whole request head once its first byte arrived (408).
    pub header_timeout: Duration,
    /// Time to receive a whole request body once its head arrived (408).
    pub body_timeout: Duration,
    /// Time a keep-alive connection may sit between requests before it is closed.
    pub idle_timeout: Duration,
    /// Bytes queued for one subscriber before it counts as slow and is disconnected.
    pub max_queued_bytes: usize,
}

/// Server-Sent Events settings.
#[derive(Debug, Clone)]
pub struct SseConfig {
    /// Interval of `: keepalive` comments.
    pub keepalive: Duration,
    /// `retry:` sent on connect, in milliseconds.
    pub retry_ms: u64,
}

/// WebSocket settings.
#[derive(Debug, Clone)]
pub struct WsConfig {
    /// Interval of server pings; a connection that misses two pongs is closed.
    pub ping_interval: Duration,
    /// Largest message a client may send (1009 beyond).
    pub max_message_bytes: usize,
    /// Origins allowed to open a WebSocket besides the page's own host (`*` allows any).
    pub allowed_origins: Vec<String>,
    /// Serve `GET /ws/echo`, an echo endpoint for conformance testing (Autobahn|Testsuite).
    pub echo: bool,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory for persistent state (journal); none keeps everything in memory.
    pub state_dir: Option<PathBuf>,
    /// Log level.
    pub log_level: log::LevelFilter,
    /// Log line format (`log_format`: `text` or `json`).
    pub log_format: crate::logger::Format,
    /// Limits.
    pub limits: Limits,
    /// SSE settings.
    pub sse: SseConfig,
    /// WebSocket settings.
    pub ws: WsConfig,
    /// History settings.
    pub history: HistoryConfig,
    /// Bounds on retained state (topics' current events).
    pub retain: RetainConfig,
    /// Origins allowed by CORS (`*` allows any).
    pub cors_origins: Vec<String>,
    /// API tokens.
    pub tokens: Vec<TokenConfig>,
    /// Anonymous access rules.
    pub public: Vec<PublicRule>,
    /// Proxies whose `X-Forwarded-For` (and `X-Forwarded-Proto`) are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// Whether the trusted proxies are cloudflared, so their `CF-Connecting-IP` is believed
    /// (other proxies pass a client's own value through).
    pub cf_connecting_ip: bool,
    /// `reuse_port`: listen with `SO_REUSEPORT`, so that several nodes of one cluster on one box
    /// share the port (the kernel spreads connections over them).
    pub reuse_port: bool,
    /// Host names this daemon answers to besides IP literals and `localhost` (lower case); a
    /// request with another `Host` gets nothing from `public` rules.
    pub server_names: Vec<String>,
    /// Deploy runner settings.
    pub runner: crate::runner::RunnerConfig,
    /// Log sources (`sources`).
    pub sources: Vec<crate::sources::SourceConfig>,
    /// Webhook hooks (adnanh/webhook's format plus hookcast's fields).
    pub hooks: Vec<crate::hooks::def::HookDef>,
    /// How long delivery ids are remembered for idempotency.
    pub dedup_window: Duration,
    /// Journal settings (used when `state_dir` is set).
    pub journal: JournalSettings,
    /// adnanh's `-x-request-id`: log a delivery's `X-Request-Id`, cut to this many bytes (0: not
    /// cut). Set by `hookcast webhook` only.
    pub x_request_id: Option<usize>,
    /// Several nodes sharing one Redis; none: this node alone.
    pub cluster: Option<crate::cluster::config::ClusterConfig>,
    /// `jwt`: the verifiers of signed subscriber tokens (none: JWTs are not accepted).
    pub jwt: Vec<crate::jwt::VerifierConfig>,
    /// Where each of `jwt`'s keys came from, by index (for `hookcast check`; never the key).
    pub jwt_key_sources: Vec<String>,
    /// `jwt_cookie`: the cookie a JWT may come in (`hookcast_jwt` by default).
    pub jwt_cookie: String,
}

/// How the on-disk journal under `state_dir` behaves.
#[derive(Debug, Clone)]
pub struct JournalSettings {
    /// When an append counts as durable (and a 2xx may be sent).
    pub fsync: crate::journal::Fsync,
    /// Segment file size.
    pub segment_bytes: u64,
    /// Total size bound.
    pub max_bytes: u64,
    /// Age bound.
    pub max_age: Option<Duration>,
    /// Bytes of webhook payloads kept for `POST /api/deliveries/{id}/replay`.
    pub max_delivery_bytes: usize,
    /// Requests of deliveries not accepted kept (in memory only) for the status page's inspector.
    pub max_rejected_deliveries: usize,
    /// Bytes those requests may take.
    pub max_rejected_bytes: usize,
    /// New publishes and deliveries are refused (503) while more than this many bytes of
    /// records wait to be made durable.
    pub max_queued_bytes: u64,
    /// Journal bytes of each deploy run's output kept (the first ones); 0 keeps none.
    pub run_output_bytes: u64,
    /// Journal bytes of run output a second over all runs; 0 keeps none.
    pub run_output_bytes_per_sec: u64,
}

impl Config {
    /// Parses and validates a configuration document (relative paths from the current directory).
    pub fn from_json(text: &str) -> Result<Config, ConfigError> {
        Config::from_json_in(text, Path::new("."))
    }

    /// Parses and validates a configuration document whose relative paths start at `base_dir`.
    pub fn from_json_in(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| ConfigError { path: String::new(), message: format!("invalid JSON: {e}") })?;
        let mut root = Obj::new(value, "")?;
        let listen = match root.opt_str("listen")? {
            Some(s) => {
                parse_listen(&s).map_or_else(|| err(&root.at("listen"), format!("not an address:port: {s:?}")), Ok)?
            }
            None => SocketAddr::from(([127, 0, 0, 1], 9000)),
        };
        let state_dir = root.opt_str("state_dir")?.map(PathBuf::from);
        let log_level = match root.opt_str("log_level")? {
            None => log::LevelFilter::Info,
            Some(s) => s.parse().or_else(|_| {
                err(&root.at("log_level"), format!("unknown level {s:?} (error, warn, info, debug, trace, off)"))
            })?,
        };
        let log_format = match root.opt_str("log_format")? {
            None => crate::logger::Format::Text,
            Some(s) => crate::logger::Format::parse(&s)
                .map_or_else(|| err(&root.at("log_format"), format!("unknown format {s:?} (text, json)")), Ok)?,
        };
        let limits = limits(root.opt_obj("limits")?)?;
        let sse = sse(root.opt_obj("sse")?)?;
        let ws = ws(root.opt_obj("ws")?)?;
        let history = history(root.opt_obj("history")?)?;
        let retain = retain(root.opt_obj("retain")?)?;
        let cors_origins = match root.opt_obj("cors")? {
            None => Vec::new(),
            Some(mut c) => {
                let list = origins(&mut c, "allowed_origins")?;
                c.finish()?;
                list
            }
        };
        let tokens = root
            .opt_list("tokens")?
            .into_iter()
            .map(|(path, v)| token(Obj::new(v, &path)?))
            .collect::<Result<Vec<_>, _>>()?;
        let public = root
            .opt_list("public")?
            .into_iter()
            .map(|(path, v)| public_rule(Obj::new(v, &path)?))
            .collect::<Result<Vec<_>, _>>()?;
        let runner = runner(root.opt_obj("runner")?)?;
        let sources = sources::sources(root.opt_list("sources")?, base_dir)?;
        let hooks = match root.take_raw("hooks") {
            None | Some(Value::Null) => Vec::new(),
            // The path of an existing adnanh/webhook hooks.json: migrate by pointing at it.
            Some(Value::String(path)) => crate::hooks::def::load_hooks_file(&base_dir.join(path))?,
            Some(Value::Array(items)) => crate::hooks::def::parse_hook_list(
                items.into_iter().enumerate().map(|(i, v)| (format!("hooks[{i}]"), v)).collect(),
            )?,
            Some(other) => {
                return err(
                    "hooks",
                    format!("expected a list of hooks or the path of a hooks.json, found {}", kind(&other)),
                )
            }
        };
        let dedup_window = Duration::from_secs(root.num("dedup_window_secs", 86_400, 0, 30 * 86_400)?);
        let journal = journal(root.opt_obj("journal")?)?;
        let trusted_proxies = root.opt_cidr_list("trusted_proxies")?;
        let cf_connecting_ip = root.opt_bool("cf_connecting_ip")?.unwrap_or(false);
        if cf_connecting_ip && trusted_proxies.is_empty() {
            return err(
                "cf_connecting_ip",
                "needs trusted_proxies (the addresses cloudflared connects from, e.g. [\"127.0.0.1/32\", \"::1\"])",
            );
        }
        let server_names = server_names(&mut root)?;
        let cluster = root.opt_obj("cluster")?.map(cluster::cluster).transpose()?;
        let (jwt, jwt_key_sources) = jwt::verifiers(root.opt_list("jwt")?, base_dir)?;
        let jwt_cookie = jwt::cookie(&mut root)?;
        let reuse_port = root.opt_bool("reuse_port")?.unwrap_or(false);
        if reuse_port && cluster.is_none() {
            return err(
                "reuse_port",
                "processes sharing a port must share one log: needs a cluster section (several nodes on one Redis)",
            );
        }
        if cluster.is_some() && state_dir.is_some() {
            return err("cluster", CLUSTER_AND_STATE_DIR);
        }
        root.finish()?;
        Ok(Config {
            listen,
            state_dir,
            log_level,
            log_format,
            limits,
            sse,
            ws,
            history,
            retain,
            cors_origins,
            tokens,
            public,
            trusted_proxies,
            cf_connecting_ip,
            reuse_port,
            server_names,
            runner,
            sources,
            hooks,
            dedup_window,
            journal,
            x_request_id: None,
            cluster,
            jwt,
            jwt_key_sources,
            jwt_cookie,
        })
    }

    /// Reads and validates a configuration file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
        })?;
        Config::from_json_in(&text, path.parent().unwrap_or(Path::new(".")))
    }

    /// Adds the hooks of adnanh/webhook hooks files (`serve --hooks FILE`, repeatable).
    pub fn add_hooks_files(&mut self, files: &[PathBuf]) -> Result<(), ConfigError> {
        for f in files {
            self.hooks.extend(crate::hooks::def::load_hooks_file(f)?);
        }
        Ok(())
    }

    /// The embedded default configuration.
    pub fn default_embedded() -> Config {
        Config::from_json(DEFAULT_CONFIG).expect("embedded default config is valid")
    }

    /// The embedded default without its `demo` hook and topic: the base under `--hooks FILE`
    /// given without `--config`, whose hooks are then the file's and nothing else.
    pub fn default_without_demo() -> Config {
        let mut cfg = Config::default_embedded();
        cfg.hooks.clear();
        cfg.public.retain(|r| !r.topics.iter().any(|t| t == "demo"));
        cfg
    }
}

/// A listen address: `IP:PORT` (`[::1]:PORT` for IPv6), or `:PORT` for every IPv4 interface
/// (`0.0.0.0:PORT`), as adnanh/webhook and Go programs write it.
pub fn parse_listen(s: &str) -> Option<SocketAddr> {
    match s.strip_prefix(':') {
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            Some(SocketAddr::from(([0, 0, 0, 0], port.parse().ok()?)))
        }
        _ => s.parse().ok(),
    }
}

/// `server_names`: DNS names (what a `Host` header carries without its port), lower-cased.
fn server_names(root: &mut Obj) -> Result<Vec<String>, ConfigError> {
    let path = root.at("server_names");
    let list = root.opt_str_list("server_names")?.unwrap_or_default();
    list.into_iter()
        .enumerate()
        .map(|(i, name)| {
            let ok = !name.is_empty()
                && name.len() <= 253
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
                && !name.starts_with('.')
                && !name.ends_with('.');
            if ok {
                Ok(name.to_ascii_lowercase())
            } else {
                err(&format!("{path}[{i}]"), format!("not a host name (no scheme, port or wildcard): {name:?}"))
            }
        })
        .collect()
}

/// The per-address connection limit when the config does not set one: a tenth of the total, so
/// one address cannot take every slot. Trusted proxies are not held to it (their clients are,
/// once known: see `event_loop`).
fn default_per_ip(max_connections: u64) -> u64 {
    (max_connections / 10).max(1)
}

fn limits(o: Option<Obj>) -> Result<Limits, ConfigError> {
    let mut o = o.unwrap_or_else(Obj::empty);
    let ms = Duration::from_millis;
    let max_connections = o.num("max_connections", 10_000, 1, 10_000_000)?;
    let l = Limits {
        max_connections: max_connections as usize,
        max_connections_per_ip: o.num("max_connections_per_ip", default_per_ip(max_connections), 1, 10_000_000)?
            as usize,
        max_header_bytes: o.size("max_header_bytes", 16 * 1024, 256, 1 << 20)?,
        max_uri_bytes: o.size("max_uri_bytes", 4096, 64, 1 << 20)?,
        max_body_bytes: o.size("max_body_bytes", 1 << 20, 0, 1 << 30)?,
        header_timeout: ms(o.num("header_timeout_ms", 10_000, 100, 3_600_000)?),
        body_timeout: ms(o.num("body_timeout_ms", 30_000, 100, 3_600_000)?),
        idle_timeout: ms(o.num("idle_timeout_ms", 75_000, 100, 3_600_000)?),
        max_queued_bytes: o.size("max_queued_bytes", 4 << 20, 1024, 1 << 30)?,
    };
    o.finish()?;
    Ok(l)
}

fn sse(o: Option<Obj>) -> Result<SseConfig, ConfigError> {
    let mut o = o.unwrap_or_else(Obj::empty);
    let s = SseConfig {
        keepalive: Duration::from_millis(o.num("keepalive_ms", 15_000, 100, 3_600_000)?),
        retry_ms: o.num("retry_ms", 2_000, 0, 3_600_000)?,
    };
    o.finish()?;
    Ok(s)
}

fn origins(o: &mut Obj, key: &str) -> Result<Vec<String>, ConfigError> {
    let list = o.opt_str_list(key)?.unwrap_or_default();
    for (i, origin) in list.iter().enumerate() {
        if origin != "*" && !(origin.starts_with("http://") || origin.starts_with("https://")) {
            return err(
                &format!("{}[{i}]", o.at(key)),
                format!("origin must be \"*\" or start with http:// or https://: {origin:?}"),
            );
        }
    }
    Ok(list)
}

fn ws(o: Option<Obj>) -> Result<WsConfig, ConfigError> {
    let mut o = o.unwrap_or_else(Obj::empty);
    let w = WsConfig {
        ping_interval: Duration::from_millis(o.num("ping_interval_ms", 30_000, 100, 3_600_000)?),
        max_message_bytes: o.size("max_message_bytes", 64 * 1024, 125, 1 << 30)?,
        allowed_origins: origins(&mut o, "allowed_origins")?,
        echo: o.opt_bool("echo")?.unwrap_or(false),
    };
    o.finish()?;
    Ok(w)
}

fn runner(o: Option<Obj>) -> Result<crate::runner::RunnerConfig, ConfigError> {
    let mut o = o.unwrap_or_else(Obj::empty);
    let ms = Duration::from_millis;
    let r = crate::runner::RunnerConfig {
        max_concurrent: o.size("max_concurrent", 4, 1, 1024)?,
        max_queued: o.size("max_queued", 100, 1, 100_000)?,
        max_parallel: o.size("max_parallel", 4, 1, 1024)?,
        timeout: ms(o.num("timeout_ms", 600_000, 100, 86_400_000)?),
        kill_grace: ms(o.num("kill_grace_ms", 5_000, 0, 600_000)?),
        max_line_bytes: o.size("max_line_bytes", 4096, 16, 1 << 20)?,
        log_bytes: o.size("log_bytes", 256 * 1024, 1024, 1 << 30)?,
        keep_runs: o.size("keep_runs", 200, 1, 1_000_000)?,
        shutdown_grace: ms(o.num("shutdown_grace_ms", 30_000, 0, 3_600_000)?),
        temp_dir: o.opt_str("temp_dir")?.map(PathBuf::from).unwrap_or_else(std::env::temp_dir),
    };
    o.finish()?;
    Ok(r)
}

fn journal(o: Option<Obj>) -> Result<JournalSettings, ConfigError> {
    use crate::journal::Fsync;
    let mut o = o.unwrap_or_else(Obj::empty);
    let delay = Duration::from_millis(o.num("fsync_delay_ms", 20, 1, 60_000)?);
    let fsync = match o.opt_str("fsync")?.as_deref() {
        None | Some("always") => Fsync::Always,
        Some("batch") => Fsync::Batch(delay),
        Some("never") => Fsync::Never,
        Some(other) => return err(&o.at("fsync"), format!("unknown policy {other:?} (always, batch, never)")),
    };
    let max_age = match o.num("max_age_secs", 0, 0, 10 * 365 * 86_400)? {
        0 => None,
        s => Some(Duration::from_secs(s)),
    };
    let j = JournalSettings {
        fsync,
        segment_bytes: o.num("segment_bytes", 16 << 20, 4096, 1 << 32)?,
        max_bytes: o.num("max_bytes", 1 << 30, 1 << 16, 1 << 44)?,
        max_age,
        max_delivery_bytes: o.size("max_delivery_bytes", 8 << 20, 0, 1 << 34)?,
        max_rejected_deliveries: o.size("max_rejected_deliveries", 200, 0, 100_000)?,
        max_rejected_bytes: o.size("max_rejected_bytes", 2 << 20, 0, 1 << 30)?,
        max_queued_bytes: o.num("max_queued_bytes", 16 << 20, 1 << 16, 1 << 40)?,
        run_output_bytes: o.num("run_output_bytes", 1 << 20, 0, 1 << 34)?,
        run_output_bytes_per_sec: o.num("run_output_bytes_per_sec", 256 << 10, 0, 1 << 34)?,
    };
    o.finish()?;
    Ok(j)
}

fn history(o: Option<Obj>) -> Result<HistoryConfig, ConfigError> {
    let mut o = o.unwrap_or_else(Obj::empty);
    let h = HistoryConfig {
        max_events_per_topic: o.size("max_events_per_topic", 1000, 0, 10_000_000)?,
        max_bytes_per_topic: o.size("max_bytes_per_topic", 1 << 20, 0, 1 << 32)?,
        max_bytes_total: o.size("max_bytes_total", 16 << 20, 0, 1 << 36)?,
        max_topics: o.size("max_topics", 10_000, 1, 10_000_000)?,
    };
    o.finish()?;
    Ok(h)
}

fn retain(o: Option<Obj>) -> Result<RetainConfig, ConfigError> {
    let mut o = o.unwrap_or_else(Obj::empty);
    let d = RetainConfig::default();
    let r = RetainConfig {
        max_topics: o.size("max_topics", d.max_topics as u64, 0, 10_000_000)?,
        max_bytes: o.size("max_bytes", d.max_bytes as u64, 0, 1 << 36)?,
    };
    o.finish()?;
    Ok(r)
}

fn scopes(o: &mut Obj, key: &str) -> Result<Vec<Scope>, ConfigError> {
    let path = o.at(key);
    let Some(list) = o.opt_str_list(key)? else {
        return err(&path, "missing (a list of \"subscribe\", \"publish\", \"admin\")");
    };
    list.iter()
        .map(|s| {
            Scope::parse(s).ok_or_else(|| ConfigError {
                path: path.clone(),
                message: format!("unknown scope {s:?} (subscribe, publish, admin)"),
            })
        })
        .collect()
}

fn patterns(o: &mut Obj, key: &str, default: Option<&str>) -> Result<Vec<String>, ConfigError> {
    let path = o.at(key);
    let list = match (o.opt_str_list(key)?, default) {
        (Some(l), _) => l,
        (None, Some(d)) => vec![d.to_string()],
        (None, None) => return err(&path, "missing (a list of topic patterns)"),
    };
    for (i, p) in list.iter().enumerate() {
        if let Err(e) = topic::validate_pattern(p) {
            return err(&format!("{path}[{i}]"), format!("{e}: {p:?}"));
        }
    }
    Ok(list)
}

fn token(mut o: Obj) -> Result<TokenConfig, ConfigError> {
    let name = o.opt_str("name")?.unwrap_or_else(|| "token".to_string());
    let hash_path = o.at("sha256");
    let Some(hex) = o.opt_str("sha256")? else {
        return err(&hash_path, "missing (print it with `hookcast token hash`)");
    };
    let Some(sha256) = crate::auth::parse_hex32(&hex) else {
        return err(&hash_path, "not 64 hex digits (print it with `hookcast token hash`)");
    };
    let scopes = scopes(&mut o, "scopes")?;
    let topics = patterns(&mut o, "topics", Some("**"))?;
    o.finish()?;
    Ok(TokenConfig { name, sha256, scopes, topics })
}

fn public_rule(mut o: Obj) -> Result<PublicRule, ConfigError> {
    let topics = patterns(&mut o, "topics", None)?;
    let scopes = scopes(&mut o, "scopes")?;
    let from = o.opt_cidr_list("from")?;
    if scopes.contains(&Scope::Admin) {
        return err(&o.at("scopes"), "\"admin\" cannot be public");
    }
    o.finish()?;
    Ok(PublicRule { topics, scopes, from })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(json: &str) -> String {
        Config::from_json(json).unwrap_err().to_string()
    }

    #[test]
    fn embedded_default_is_valid_and_loopback() {
        let c = Config::default_embedded();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(c.public.len(), 2);
        assert_eq!(c.public[0].topics, ["demo"]);
        // The status page's topics, for loopback only (src/status).
        assert_eq!(c.public[1].topics, ["$deliveries", "$runs", "$runs/**"]);
        assert!(c.public[1].scopes == [crate::auth::Scope::Subscribe] && c.public[1].from.len() == 2);
    }

    #[test]
    fn listen_port_alone_is_every_ipv4_interface() {
        assert_eq!(parse_listen(":9001"), Some(SocketAddr::from(([0, 0, 0, 0], 9001))));
        assert_eq!(parse_listen("[::1]:9001"), Some("[::1]:9001".parse().unwrap()));
        assert_eq!(parse_listen("127.0.0.1:0"), Some("127.0.0.1:0".parse().unwrap()));
        for bad in [":", ":x", ":-1", "9001", "localhost:9001", ": 9001"] {
            assert_eq!(parse_listen(bad), None, "{bad}");
        }
        assert_eq!(Config::from_json(r#"{"listen":":9001"}"#).unwrap().listen.to_string(), "0.0.0.0:9001");
    }

    #[test]
    fn default_without_demo_keeps_the_status_topics_only() {
        let c = Config::default_without_demo();
        assert!(c.hooks.is_empty());
        assert_eq!(c.public.len(), 1);
        assert_eq!(c.public[0].topics, ["$deliveries", "$runs", "$runs/**"]);
        let log = Config::from_json(r#"{"log_format":"json"}"#).unwrap();
        assert_eq!(log.log_format, crate::logger::Format::Json);
        assert_eq!(error_of(r#"{"log_format":"xml"}"#), "log_format: unknown format \"xml\" (text, json)");
    }

    #[test]
    fn empty_object_gives_defaults() {
        let c = Config::from_json("{}").unwrap();
        assert_eq!(c.limits.max_header_bytes, 16 * 1024);
        assert_eq!(c.sse.keepalive, Duration::from_secs(15));
        assert!(c.tokens.is_empty());
    }

    #[test]
    fn proxy_and_host_settings() {
        let c = Config::from_json("{}").unwrap();
        assert!(!c.cf_connecting_ip && c.server_names.is_empty());
        assert_eq!(c.limits.max_connections_per_ip, 1000, "a tenth of max_connections by default");
        let c = Config::from_json(r#"{"limits":{"max_connections":5}}"#).unwrap();
        assert_eq!(c.limits.max_connections_per_ip, 1);
        let c = Config::from_json(
            r#"{"trusted_proxies":["127.0.0.1/32"],"cf_connecting_ip":true,"server_names":["Hooks.Example.org"]}"#,
        )
        .unwrap();
        assert!(c.cf_connecting_ip);
        assert_eq!(c.server_names, ["hooks.example.org"]);
        assert_eq!(
            error_of(r#"{"cf_connecting_ip":true}"#),
            "cf_connecting_ip: needs trusted_proxies (the addresses cloudflared connects from, e.g. [\"127.0.0.1/32\", \"::1\"])"
        );
        for bad in ["https://x.org", "x.org:443", "*.x.org", "", "a b"] {
            let json = serde_json::json!({ "server_names": [bad] }).to_string();
            assert!(error_of(&json).starts_with("server_names[0]: not a host name"), "{bad}");
        }
    }

    #[test]
    fn a_misspelt_top_level_field_is_named() {
        assert_eq!(error_of(r#"{"histroy":{}}"#), r#"histroy: unknown field (did you mean "history"?)"#);
        assert_eq!(error_of(r#"{"Listen":"127.0.0.1:1"}"#), r#"Listen: unknown field (did you mean "listen"?)"#);
        assert_eq!(error_of(r#"{"colour":1}"#), "colour: unknown field");
    }

    #[test]
    fn errors_name_the_json_path() {
        let h = "0".repeat(64);
        let json =
            format!(r#"{{"tokens":[{{"sha256":"{h}","scopes":["publish"]}},{{"sha256":"{h}","scopes":["pubish"]}}]}}"#);
        assert_eq!(error_of(&json), r#"tokens[1].scopes: unknown scope "pubish" (subscribe, publish, admin)"#);
        // A nested section's unknown key gets the same hint as a top-level one.
        assert_eq!(
            error_of(r#"{"limits":{"max_body_byte":1}}"#),
            r#"limits.max_body_byte: unknown field (did you mean "max_body_bytes"?)"#
        );
        assert_eq!(
            error_of(r#"{"journal":{"fsnyc":"always"}}"#),
            r#"journal.fsnyc: unknown field (did you mean "fsync"?)"#
        );
        assert_eq!(
            error_of(r#"{"limits":{"max_body_bytes":-1}}"#),
            "limits.max_body_bytes: expected a whole number from 0 to 1073741824, found -1"
        );
        assert_eq!(error_of(r#"{"listen":"nowhere"}"#), "listen: not an address:port: \"nowhere\"");
        assert_eq!(error_of(r#"{"listen":":"}"#), "listen: not an address:port: \":\"");
        assert_eq!(error_of(r#"{"listen":":99999"}"#), "listen: not an address:port: \":99999\"");
        assert_eq!(
            error_of(r#"{"reuse_port":true}"#),
            "reuse_port: processes sharing a port must share one log: needs a cluster section (several nodes on one Redis)"
        );
        assert_eq!(
            error_of(r#"{"journal":{"run_output_bytes_per_sec":"fast"}}"#),
            "journal.run_output_bytes_per_sec: expected a number, found a string"
        );
        let j = Config::from_json(r#"{"journal":{"run_output_bytes":0}}"#).unwrap().journal;
        assert_eq!((j.run_output_bytes, j.run_output_bytes_per_sec), (0, 256 << 10));
        assert_eq!(
            error_of(r#"{"public":[{"topics":["a/**/b"],"scopes":["subscribe"]}]}"#),
            "public[0].topics[0]: wildcards only as the last segment of a pattern: \"a/**/b\""
        );
        assert_eq!(
            error_of(r#"{"public":[{"topics":["a"],"scopes":["subscribe"],"from":["10.0.0.0/33"]}]}"#),
            "public[0].from[0]: not an address or CIDR: \"10.0.0.0/33\""
        );
        assert_eq!(
            error_of(r#"{"journal":{"max_queued_bytes":1000}}"#),
            "journal.max_queued_bytes: expected a whole number from 65536 to 1099511627776, found 1000"
        );
        assert!(error_of("{").starts_with("invalid JSON"));
        assert_eq!(error_of("[]"), "expected an object, found a list");
    }
}
