//! The `cluster` section's type: several nodes sharing one Redis. `crate::config` fills it in
//! (`config/cluster.rs`); the cluster's owner reads it. Secrets are resolved by then, and
//! `Debug` never shows them.

use crate::hooks::secret::SecretSource;
use crate::redis::url::{Addr, RedisUrl};
use std::fmt;
use std::time::Duration;

/// The `cluster` section: several nodes sharing one Redis.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `redis`: the server. With `sentinel` its host and port are ignored (the master comes from
    /// Sentinel) and only its user, password and db count.
    pub redis: RedisUrl,
    /// The password to `AUTH` with: the `password` secret, else the one in the URL.
    pub password: Option<Vec<u8>>,
    /// Where `password` came from when it was the `password` secret (none: the URL, or no password).
    pub password_source: Option<SecretSource>,
    /// `name`: separates clusters sharing one Redis (keys are prefixed `hookcast:{NAME}:`).
    pub name: String,
    /// `node`: this node's name in the cluster, by default the host name.
    pub node: String,
    /// `sentinel`: find the master through Redis Sentinel.
    pub sentinel: Option<SentinelConfig>,
    /// `runs_commands`: this node may take the runner role (deploy commands run on one node at a time).
    pub runs_commands: bool,
    /// `runner_lease_ms`: how long the runner role outlives its holder's last renewal (a
    /// node that died gives the role up this late).
    pub runner_lease: std::time::Duration,
    /// `log_max_events`: the shared stream is trimmed to about this many entries.
    pub log_max_events: u64,
    /// `wait_replicas`: acknowledge only once this many replicas have the write (Redis `WAIT`).
    pub wait_replicas: u32,
    /// `wait_timeout_ms`: the longest `WAIT` for those replicas.
    pub wait_timeout: Duration,
    /// `command_timeout_ms`: a reply later than this counts the link as broken.
    pub command_timeout: Duration,
    /// `max_queued_bytes`: bytes of commands waiting for Redis before new work gets 503.
    pub max_queued_bytes: usize,
}

/// `cluster.sentinel` (the Redis client's own type: the link finds the master with it).
pub use crate::redis::url::SentinelConfig;

/// Longest cluster or node name.
pub const MAX_NAME: usize = 64;

/// Whether `s` may be a cluster or node name: 1 to 64 of `A-Z a-z 0-9 _ . -` (it goes into
/// Redis keys and onto the status page as it is).
pub fn valid_name(s: &str) -> bool {
    (1..=MAX_NAME).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// A node's name when the configuration gives none: the host name if it is a valid name, else `node`.
pub fn default_node_name() -> String {
    crate::sys::hostname().filter(|h| valid_name(h)).unwrap_or_else(|| "node".to_string())
}

impl ClusterConfig {
    /// One line for `hookcast check` and the start-up log, without any secret:
    /// `cluster "prod": node box-a, redis redis://127.0.0.1:6379/0 (password from environment variable X), runs commands`.
    pub fn describe(&self) -> String {
        let password = match (&self.password_source, &self.password) {
            (Some(SecretSource::Inline(_)), _) => Some("password written in the config".to_string()),
            (Some(s), _) => Some(format!("password from {s}")),
            (None, Some(_)) => Some("password from the URL".to_string()),
            (None, None) => None,
        };
        let server = match &self.sentinel {
            None => match password {
                Some(p) => format!("redis {} ({p})", self.redis),
                None => format!("redis {}", self.redis),
            },
            Some(s) => {
                let list: Vec<String> =
                    s.addresses.iter().map(|(h, p)| Addr::Tcp { host: h.clone(), port: *p }.to_string()).collect();
                let mut notes = vec![format!("db {}", self.redis.db)];
                notes.extend(self.redis.user.as_ref().map(|u| format!("user {u}")));
                notes.extend(password);
                notes.extend(s.password.as_ref().map(|_| "sentinel password set".to_string()));
                format!("master {:?} from sentinel {} ({})", s.master, list.join(", "), notes.join(", "))
            }
        };
        let role = if self.runs_commands { "runs commands" } else { "does not run commands" };
        format!("cluster {:?}: node {}, {server}, {role}", self.name, self.node)
    }
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis", &self.redis)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_source", &self.password_source)
            .field("name", &self.name)
            .field("node", &self.node)
            .field("sentinel", &self.sentinel)
            .field("runs_commands", &self.runs_commands)
            .field("runner_lease", &self.runner_lease)
            .field("log_max_events", &self.log_max_events)
            .field("wait_replicas", &self.wait_replicas)
            .field("wait_timeout", &self.wait_timeout)
            .field("command_timeout", &self.command_timeout)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .finish()
    }
}
