//! The `cluster` section, walked into [`ClusterConfig`]. Secrets are read here, so a missing
//! environment variable or credential fails `hookcast check` and start-up, not the first
//! connection to Redis.

use super::json::{err, ConfigError, Obj};
use crate::cluster::config::{default_node_name, valid_name, ClusterConfig, SentinelConfig, MAX_NAME};
use crate::hooks::secret::{parse_secret, SecretSource};
use crate::redis::url::{parse_host_port, parse_url, Addr, RedisUrl, DEFAULT_PORT, DEFAULT_SENTINEL_PORT};
use serde_json::Value;
use std::time::Duration;

/// Most Sentinels listed.
const MAX_SENTINELS: usize = 16;

/// Reads the `cluster` object.
pub(crate) fn cluster(mut o: Obj) -> Result<ClusterConfig, ConfigError> {
    let redis_path = o.at("redis");
    let redis = o.opt_str("redis")?.map(|s| parse_url(&s).or_else(|e| err(&redis_path, e))).transpose()?;
    let (password, password_source) = match secret(&mut o, "password")? {
        Some((bytes, source)) => (Some(bytes), Some(source)),
        None => (None, None),
    };
    let name = name_at(&mut o, "name")?.unwrap_or_else(|| "hookcast".to_string());
    let node = name_at(&mut o, "node")?.unwrap_or_else(default_node_name);
    let sentinel = o.opt_obj("sentinel")?.map(sentinel).transpose()?;
    let redis = match (redis, &sentinel) {
        (Some(r), _) => r,
        // Only the user, password and db of `redis` count with Sentinel: none of them set.
        (None, Some(_)) => RedisUrl {
            addr: Addr::Tcp { host: "127.0.0.1".to_string(), port: DEFAULT_PORT },
            user: None,
            password: None,
            db: 0,
        },
        (None, None) => {
            return err(
                &redis_path,
                "missing: where Redis is (\"redis://127.0.0.1:6379/0\", \"unix:/run/redis/redis.sock\"), \
                 or a \"sentinel\" section",
            )
        }
    };
    let ms = Duration::from_millis;
    // With Sentinel a failover promotes a replica while the old master still acknowledges
    // writes for seconds: unless a replica confirmed them, those are lost. So by default an
    // append waits for one replica there.
    let default_wait = u64::from(sentinel.is_some());
    let c = ClusterConfig {
        password: password.or_else(|| redis.password.clone().map(String::into_bytes)),
        password_source,
        redis,
        name,
        node,
        sentinel,
        runs_commands: o.opt_bool("runs_commands")?.unwrap_or(true),
        runner_lease: Duration::from_millis(o.num("runner_lease_ms", 10_000, 3_000, 600_000)?),
        log_max_events: o.num("log_max_events", 100_000, 100, 100_000_000)?,
        wait_replicas: o.num("wait_replicas", default_wait, 0, 16)? as u32,
        wait_timeout: ms(o.num("wait_timeout_ms", 1000, 1, 60_000)?),
        command_timeout: ms(o.num("command_timeout_ms", 5000, 100, 120_000)?),
        max_queued_bytes: o.size("max_queued_bytes", 16 << 20, 64 << 10, 1 << 30)?,
    };
    o.finish()?;
    Ok(c)
}

/// A cluster or node name, if given.
fn name_at(o: &mut Obj, key: &str) -> Result<Option<String>, ConfigError> {
    let path = o.at(key);
    match o.opt_str(key)? {
        Some(n) if !valid_name(&n) => {
            err(&path, format!("1 to {MAX_NAME} of the characters A-Z a-z 0-9 _ . - expected, found {n:?}"))
        }
        n => Ok(n),
    }
}

/// A secret read now, with where it came from; errors name `key`'s path.
fn secret(o: &mut Obj, key: &str) -> Result<Option<(Vec<u8>, SecretSource)>, ConfigError> {
    let path = o.at(key);
    match o.take_raw(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let source = parse_secret(v, &path)?;
            let bytes = source.resolve().map_err(|e| ConfigError { path: path.clone(), message: e.message })?;
            Ok(Some((bytes, source)))
        }
    }
}

fn sentinel(mut o: Obj) -> Result<SentinelConfig, ConfigError> {
    let path = o.at("addresses");
    let list = o.opt_str_list("addresses")?.unwrap_or_default();
    if list.is_empty() || list.len() > MAX_SENTINELS {
        return err(&path, format!("1 to {MAX_SENTINELS} Sentinel addresses (\"host:port\") expected"));
    }
    let addresses = list
        .iter()
        .enumerate()
        .map(|(i, a)| parse_host_port(a, DEFAULT_SENTINEL_PORT).or_else(|e| err(&format!("{path}[{i}]"), e)))
        .collect::<Result<Vec<_>, _>>()?;
    let master_path = o.at("master");
    let master = match o.opt_str("master")? {
        Some(m) if !m.is_empty() && m.len() <= 256 && !m.chars().any(|c| c.is_control() || c == ' ') => m,
        Some(m) => return err(&master_path, format!("not a master name: {m:?}")),
        None => return err(&master_path, "missing: the master's name in Sentinel's configuration (\"mymaster\")"),
    };
    let password = secret(&mut o, "password")?.map(|(bytes, _)| bytes);
    o.finish()?;
    Ok(SentinelConfig { addresses, master, password })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::hooks::secret::SecretSource;
    use crate::redis::url::Addr;
    use std::time::Duration;

    fn cluster(section: &str) -> crate::cluster::config::ClusterConfig {
        Config::from_json(&format!(r#"{{"cluster":{section}}}"#)).unwrap().cluster.unwrap()
    }

    fn error_of(section: &str) -> String {
        Config::from_json(&format!(r#"{{"cluster":{section}}}"#)).unwrap_err().to_string()
    }

    #[test]
    fn without_the_section_there_is_no_cluster() {
        assert!(Config::from_json("{}").unwrap().cluster.is_none());
        assert!(Config::default_embedded().cluster.is_none());
    }

    #[test]
    fn defaults() {
        let c = cluster(r#"{"redis":"redis://127.0.0.1:6379/0"}"#);
        assert_eq!(c.redis.addr, Addr::Tcp { host: "127.0.0.1".into(), port: 6379 });
        assert_eq!((c.name.as_str(), c.password.as_deref(), c.sentinel.is_none()), ("hookcast", None, true));
        assert_eq!(c.node, crate::cluster::config::default_node_name());
        assert!(crate::cluster::config::valid_name(&c.node));
        assert!(c.runs_commands);
        assert_eq!((c.log_max_events, c.wait_replicas), (100_000, 0));
        assert_eq!((c.wait_timeout, c.command_timeout), (Duration::from_millis(1000), Duration::from_millis(5000)));
        assert_eq!(c.max_queued_bytes, 16 << 20);
        assert_eq!(
            c.describe(),
            format!("cluster \"hookcast\": node {}, redis redis://127.0.0.1:6379/0, runs commands", c.node)
        );
    }

    #[test]
    fn every_field() {
        let c = cluster(
            r#"{"redis":"unix:/run/redis.sock?db=2","name":"prod.eu-1","node":"box_a","runs_commands":false,
                "log_max_events":100,"wait_replicas":16,"wait_timeout_ms":60000,"command_timeout_ms":100,
                "max_queued_bytes":65536,"password":"inline-pw"}"#,
        );
        assert_eq!((c.name.as_str(), c.node.as_str(), c.redis.db), ("prod.eu-1", "box_a", 2));
        assert_eq!((c.runs_commands, c.log_max_events, c.wait_replicas), (false, 100, 16));
        assert_eq!((c.wait_timeout, c.command_timeout), (Duration::from_secs(60), Duration::from_millis(100)));
        assert_eq!((c.max_queued_bytes, c.password.as_deref()), (65536, Some(&b"inline-pw"[..])));
        assert_eq!(
            c.describe(),
            "cluster \"prod.eu-1\": node box_a, redis unix:/run/redis.sock?db=2 (password written in the config), \
             does not run commands"
        );
        assert!(!format!("{c:?}").contains("inline-pw"));
    }

    #[test]
    fn passwords() {
        let c = cluster(r#"{"redis":"redis://app:url-pw@h/1","node":"a"}"#);
        assert_eq!((c.password.as_deref(), c.password_source.is_none()), (Some(&b"url-pw"[..]), true));
        assert_eq!(
            c.describe(),
            "cluster \"hookcast\": node a, redis redis://app:***@h:6379/1 (password from the URL), runs commands"
        );
        // The secret overrides the URL's; PATH is set wherever tests run.
        let c = cluster(r#"{"redis":"redis://app:url-pw@h/1","node":"a","password":{"env":"PATH"}}"#);
        assert_eq!(c.password, Some(std::env::var("PATH").unwrap().into_bytes()));
        assert_eq!(c.password_source, Some(SecretSource::Env("PATH".into())));
        let line = c.describe();
        assert!(line.contains("(password from environment variable PATH)") && !line.contains("url-pw"), "{line}");
        let debug = format!("{c:?}");
        assert!(!debug.contains("url-pw") && !debug.contains(&std::env::var("PATH").unwrap()), "{debug}");
        assert_eq!(
            error_of(r#"{"redis":"redis://h","password":{"env":"HOOKCAST_TEST_NEVER_SET_X"}}"#),
            "cluster.password: environment variable HOOKCAST_TEST_NEVER_SET_X is not set"
        );
        assert_eq!(error_of(r#"{"redis":"redis://h","password":""}"#), "cluster.password: empty secret");
        assert!(error_of(r#"{"redis":"redis://h","password":{"file":"rel"}}"#).starts_with("cluster.password.file:"));
        assert!(error_of(r#"{"redis":"redis://h","password":7}"#).starts_with("cluster.password: expected a secret"));
    }

    #[test]
    fn sentinel() {
        let c = cluster(
            r#"{"sentinel":{"addresses":["10.0.0.1","s2:5000","[::1]:26380"],"master":"mymaster","password":"sp"},
                "node":"n1"}"#,
        );
        let s = c.sentinel.as_ref().unwrap();
        assert_eq!(s.addresses, [("10.0.0.1".into(), 26379), ("s2".into(), 5000), ("::1".into(), 26380)]);
        assert_eq!((s.master.as_str(), s.password.as_deref()), ("mymaster", Some(&b"sp"[..])));
        assert_eq!((c.redis.db, c.password.as_deref()), (0, None));
        assert_eq!(c.wait_replicas, 1, "with Sentinel, an append waits for a replica unless told otherwise");
        assert_eq!(
            c.describe(),
            "cluster \"hookcast\": node n1, master \"mymaster\" from sentinel 10.0.0.1:26379, s2:5000, [::1]:26380 \
             (db 0, sentinel password set), runs commands"
        );
        assert!(!format!("{c:?}").contains("\"sp\""));
        // `redis` beside `sentinel` gives the user, password and db.
        let c =
            cluster(r#"{"redis":"redis://app:pw@ignored/3","sentinel":{"addresses":["s"],"master":"m"},"node":"n"}"#);
        assert_eq!((c.redis.db, c.password.as_deref()), (3, Some(&b"pw"[..])));
        assert!(c.describe().contains("(db 3, user app, password from the URL)"), "{}", c.describe());
        let bad = |s: &str| error_of(&format!(r#"{{"sentinel":{s}}}"#));
        assert_eq!(
            bad(r#"{"addresses":[],"master":"m"}"#),
            r#"cluster.sentinel.addresses: 1 to 16 Sentinel addresses ("host:port") expected"#
        );
        assert!(bad(r#"{"master":"m"}"#).starts_with("cluster.sentinel.addresses: 1 to 16"));
        let seventeen = serde_json::to_string(&vec!["s"; 17]).unwrap();
        assert!(bad(&format!(r#"{{"addresses":{seventeen},"master":"m"}}"#))
            .starts_with("cluster.sentinel.addresses: 1 to 16"));
        assert_eq!(
            bad(r#"{"addresses":["s","s:0"],"master":"m"}"#),
            r#"cluster.sentinel.addresses[1]: not a port (1 to 65535): "0""#
        );
        assert!(bad(r#"{"addresses":["s"]}"#).starts_with("cluster.sentinel.master: missing"));
        assert_eq!(
            bad(r#"{"addresses":["s"],"master":"a b"}"#),
            r#"cluster.sentinel.master: not a master name: "a b""#
        );
        assert_eq!(
            bad(r#"{"addresses":["s"],"master":"m","mastr":1}"#),
            r#"cluster.sentinel.mastr: unknown field (did you mean "master"?)"#
        );
    }

    #[test]
    fn errors_name_their_path() {
        assert!(error_of(r#"{}"#).starts_with("cluster.redis: missing"));
        assert_eq!(
            error_of(r#"{"redis":"localhost:6379"}"#),
            r#"cluster.redis: expected redis://[user[:password]@]host[:port][/db] or unix:/path/redis.sock[?db=N], found "localhost:6379""#
        );
        let tls = error_of(r#"{"redis":"rediss://u:pw@h:6380"}"#);
        assert!(tls.starts_with("cluster.redis: rediss:// (TLS) is not supported") && !tls.contains("pw"), "{tls}");
        assert_eq!(error_of(r#"{"redis":"redis://h:0"}"#), r#"cluster.redis: not a port (1 to 65535): "0""#);
        for bad in ["", "a b", "x/y", "ü", &"n".repeat(65)] {
            let json = serde_json::json!({ "redis": "redis://h", "name": bad }).to_string();
            assert!(error_of(&json).starts_with("cluster.name: 1 to 64 of the characters"), "{bad:?}");
            let json = serde_json::json!({ "redis": "redis://h", "node": bad }).to_string();
            assert!(error_of(&json).starts_with("cluster.node: 1 to 64 of the characters"), "{bad:?}");
        }
        assert_eq!(
            error_of(r#"{"redis":"redis://h","run_commands":true}"#),
            r#"cluster.run_commands: unknown field (did you mean "runs_commands"?)"#
        );
        assert_eq!(
            error_of(r#"{"redis":"redis://h","wait_replicas":17}"#),
            "cluster.wait_replicas: expected a whole number from 0 to 16, found 17"
        );
        assert_eq!(
            error_of(r#"{"redis":"redis://h","log_max_events":99}"#),
            "cluster.log_max_events: expected a whole number from 100 to 100000000, found 99"
        );
        assert_eq!(
            error_of(r#"{"redis":"redis://h","max_queued_bytes":1024}"#),
            "cluster.max_queued_bytes: expected a whole number from 65536 to 1073741824, found 1024"
        );
        assert_eq!(error_of(r#""redis://h""#), "cluster: expected an object, found a string");
        assert_eq!(
            Config::from_json(r#"{"clustr":{}}"#).unwrap_err().to_string(),
            r#"clustr: unknown field (did you mean "cluster"?)"#
        );
    }

    #[test]
    fn a_cluster_node_has_no_journal() {
        let e = Config::from_json(r#"{"state_dir":"/var/lib/hookcast","cluster":{"redis":"redis://h"}}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cluster: a node in a cluster keeps its log in Redis; remove state_dir (the journal) from this node's config"
        );
    }
}
