//! Where a Redis server is, as written in a configuration: `redis://user:password@host:port/db`,
//! `unix:/path/redis.sock?db=N`, and Sentinel's `host:port`. Pure string parsing, no lookups.
//!
//! A password never leaves this module in text meant for people: [`RedisUrl`]'s `Display` and
//! `Debug` write `***` in its place, so a URL can go into logs and `hookcast check` as it is.

use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;

/// Redis's own port.
pub const DEFAULT_PORT: u16 = 6379;

/// Sentinel's own port.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;

/// Highest database number accepted; Redis itself refuses what its `databases` setting does not have.
pub const MAX_DB: u32 = 1_000_000;

/// Where a Redis server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addr {
    /// A host name or IP address (IPv6 without brackets) and a port.
    Tcp {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// A unix socket's path.
    Unix(PathBuf),
}

/// A parsed `redis://` or `unix:` address.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// The server.
    pub addr: Addr,
    /// ACL user name (Redis 6+); none is the `default` user.
    pub user: Option<String>,
    /// Password, percent-decoded.
    pub password: Option<String>,
    /// Database number (`SELECT`).
    pub db: u32,
}

const TLS_REFUSED: &str = "rediss:// (TLS) is not supported: hookcast speaks plain RESP; use a unix socket \
                           (unix:/run/redis/redis.sock), a loopback address, or a tunnel such as stunnel or spiped";

const FORMS: &str = "expected redis://[user[:password]@]host[:port][/db] or unix:/path/redis.sock[?db=N]";

/// Parses `redis://[user[:password]@]host[:port][/db]`, `redis://[::1]:6379`, `unix:/path/redis.sock[?db=N]`, `unix:///path?db=N`. Port defaults to 6379, db to 0.
pub fn parse_url(s: &str) -> Result<RedisUrl, String> {
    if s.get(..9).is_some_and(|p| p.eq_ignore_ascii_case("rediss://")) {
        return Err(TLS_REFUSED.to_string());
    }
    if let Some(rest) = strip_prefix_ci(s, "redis://") {
        return parse_tcp(rest);
    }
    if let Some(rest) = strip_prefix_ci(s, "unix:") {
        return parse_unix(rest);
    }
    Err(format!("{FORMS}, found {:?}", redact_guess(s)))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

/// Text to echo in an error about an unrecognised string: it may be a URL with a password, so
/// everything from `://` on is left out.
fn redact_guess(s: &str) -> String {
    match s.find("://") {
        Some(i) => format!("{}://…", &s[..i]),
        None if s.contains('@') => "…".to_string(),
        None => s.to_string(),
    }
}

fn parse_tcp(rest: &str) -> Result<RedisUrl, String> {
    if rest.contains(['?', '#']) {
        return Err("a redis:// URL takes no query or fragment (the db goes in the path, redis://host:6379/2; \
             percent-encode a ? or # in the password)"
            .to_string());
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    if path.contains('@') {
        // Said before anything else is parsed, so no error echoes a piece of the password.
        return Err("a / in the user name or password must be percent-encoded (%2F)".to_string());
    }
    // The last `@`: a password with an unencoded `@` still splits where it must.
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (name, pass) = match u.split_once(':') {
                Some((n, p)) => (n, Some(p)),
                None => (u, None),
            };
            let name = percent_decode(name).map_err(|e| format!("user name: {e}"))?;
            let pass = pass.map(percent_decode).transpose().map_err(|e| format!("password: {e}"))?;
            (Some(name).filter(|n| !n.is_empty()), pass.filter(|p| !p.is_empty()))
        }
    };
    let (host, port) = parse_host_port(hostport, DEFAULT_PORT)?;
    let db = match path {
        "" => 0,
        d => parse_db(d)?,
    };
    Ok(RedisUrl { addr: Addr::Tcp { host, port }, user, password, db })
}

fn parse_unix(rest: &str) -> Result<RedisUrl, String> {
    // `unix:///path` is the URL form of `unix:/path`: an empty authority.
    let rest = match rest.strip_prefix("//") {
        Some(r) if r.starts_with('/') => r,
        Some(_) => return Err("unix: needs an absolute path with an empty host: unix:///run/redis.sock".into()),
        None => rest,
    };
    let (path, query) = match rest.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (rest, None),
    };
    if !path.starts_with('/') {
        return Err(format!("unix: needs an absolute socket path (unix:/run/redis/redis.sock), found {path:?}"));
    }
    if path.contains('#') || path.contains('\0') {
        return Err(format!("not a socket path: {path:?}"));
    }
    let (mut db, mut user) = (0, None);
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        match pair.split_once('=') {
            Some(("db", n)) => db = parse_db(n)?,
            // An ACL user (`AUTH user password`); a socket path leaves no room for `user@`.
            Some(("user", u)) if !u.is_empty() => user = Some(percent_decode(u)?),
            _ => {
                let key = pair.split_once('=').map_or(pair, |(k, _)| k);
                return Err(format!(
                    "unknown query key {key:?} in a unix: address (db and user; the password goes in \"password\")"
                ));
            }
        }
    }
    Ok(RedisUrl { addr: Addr::Unix(PathBuf::from(path)), user, password: None, db })
}

fn parse_db(s: &str) -> Result<u32, String> {
    let n = (!s.is_empty() && s.len() <= 7 && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse::<u32>().ok())
        .flatten()
        .filter(|n| *n <= MAX_DB);
    n.ok_or_else(|| format!("not a database number (0 to {MAX_DB}): {s:?}"))
}

/// Parses a Sentinel address `host:port` (port default 26379; `[v6]:port`).
pub fn parse_host_port(s: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Err(format!("unclosed [ in {s:?}"));
        };
        if v6.parse::<Ipv6Addr>().is_err() {
            return Err(format!("not an IPv6 address: {v6:?}"));
        }
        match after {
            "" => (v6, None),
            a => match a.strip_prefix(':') {
                Some(p) => (v6, Some(p)),
                None => return Err(format!("expected :port after ]: {s:?}")),
            },
        }
    } else {
        let (host, port) = match s.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err(format!("an IPv6 address goes in brackets, [::1]:{default_port}: {s:?}"))
            }
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if host.is_empty() {
            return Err(format!("no host in {s:?}"));
        }
        if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
            return Err(format!("not a host name or address: {host:?}"));
        }
        (host, port)
    };
    let port = match port {
        None => default_port,
        Some(p) => match (p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse::<u16>()) {
            Some(Ok(n)) if n > 0 => n,
            _ => return Err(format!("not a port (1 to 65535): {p:?}")),
        },
    };
    Ok((host.to_string(), port))
}

/// `%XX` escapes decoded; the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) if hex.is_some_and(|h| h.bytes().all(|c| c.is_ascii_hexdigit())) => out.push(v),
                _ => return Err("a % not followed by two hex digits (write %25 for %)".to_string()),
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once %-decoded".to_string())
}

/// `s` with everything but RFC 3986's unreserved characters percent-encoded.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Addr::Tcp { host, port } => write!(f, "{host}:{port}"),
            Addr::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

impl fmt::Display for RedisUrl {
    /// The URL without its password (`redis://user:***@host:port/db`), for logs and `hookcast check`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.addr {
            Addr::Unix(p) => {
                // `unix://` would take `//x` for an empty host and a relative path.
                let slashes = if p.as_os_str().as_encoded_bytes().starts_with(b"//") { "//" } else { "" };
                write!(f, "unix:{slashes}{}?db={}", p.display(), self.db)?;
                match &self.user {
                    Some(u) => write!(f, "&user={}", percent_encode(u)),
                    None => Ok(()),
                }
            }
            tcp => {
                write!(f, "redis://")?;
                match (&self.user, &self.password) {
                    (Some(u), Some(_)) => write!(f, "{}:***@", percent_encode(u))?,
                    (Some(u), None) => write!(f, "{}@", percent_encode(u))?,
                    (None, Some(_)) => write!(f, ":***@")?,
                    (None, None) => {}
                }
                write!(f, "{tcp}/{}", self.db)
            }
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("addr", &self.addr)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .finish()
    }
}

/// `cluster.sentinel`: where the Sentinels are and which master they watch.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelConfig {
    /// Sentinels' `host:port`, tried in order.
    pub addresses: Vec<(String, u16)>,
    /// The master's name in Sentinel's configuration (`sentinel monitor NAME …`).
    pub master: String,
    /// The password to `AUTH` with on the Sentinels (not the master's).
    pub password: Option<Vec<u8>>,
}

impl std::fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelConfig")
            .field("addresses", &self.addresses)
            .field("master", &self.master)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tcp(host: &str, port: u16) -> Addr {
        Addr::Tcp { host: host.into(), port }
    }

    fn url(addr: Addr, user: Option<&str>, password: Option<&str>, db: u32) -> RedisUrl {
        RedisUrl { addr, user: user.map(String::from), password: password.map(String::from), db }
    }

    #[test]
    fn tcp_urls() {
        let ok = |s| parse_url(s).unwrap();
        assert_eq!(ok("redis://127.0.0.1:6379/0"), url(tcp("127.0.0.1", 6379), None, None, 0));
        assert_eq!(ok("redis://localhost"), url(tcp("localhost", 6379), None, None, 0));
        assert_eq!(ok("redis://localhost/"), url(tcp("localhost", 6379), None, None, 0));
        assert_eq!(ok("REDIS://r.example.org:7000/15"), url(tcp("r.example.org", 7000), None, None, 15));
        assert_eq!(ok("redis://[::1]:6380/2"), url(tcp("::1", 6380), None, None, 2));
        assert_eq!(ok("redis://[::1]"), url(tcp("::1", 6379), None, None, 0));
        assert_eq!(ok("redis://app@h"), url(tcp("h", 6379), Some("app"), None, 0));
        assert_eq!(ok("redis://app:s3cret@h:1/3"), url(tcp("h", 1), Some("app"), Some("s3cret"), 3));
        assert_eq!(ok("redis://:s3cret@h"), url(tcp("h", 6379), None, Some("s3cret"), 0));
        assert_eq!(ok("redis://a%40b:p%3Aw%2F%25@h"), url(tcp("h", 6379), Some("a@b"), Some("p:w/%"), 0));
        assert_eq!(ok("redis://u:p@ss@h"), url(tcp("h", 6379), Some("u"), Some("p@ss"), 0), "the last @ ends it");
        assert_eq!(ok("redis://u:@h"), url(tcp("h", 6379), Some("u"), None, 0));
        assert_eq!(ok("redis://h/1000000").db, 1_000_000);
    }

    #[test]
    fn unix_urls() {
        let ok = |s| parse_url(s).unwrap();
        let sock = || Addr::Unix(PathBuf::from("/run/redis/redis.sock"));
        assert_eq!(ok("unix:/run/redis/redis.sock"), url(sock(), None, None, 0));
        assert_eq!(ok("unix:/run/redis/redis.sock?db=4"), url(sock(), None, None, 4));
        assert_eq!(ok("unix:/run/redis/redis.sock?db=4&user=app%40x"), url(sock(), Some("app@x"), None, 4));
        assert_eq!(
            ok("unix:/run/redis/redis.sock?user=app&db=4").to_string(),
            "unix:/run/redis/redis.sock?db=4&user=app"
        );
        assert_eq!(ok("unix:///run/redis/redis.sock?db=4"), url(sock(), None, None, 4));
        assert_eq!(ok("UNIX:/run/redis/redis.sock"), url(sock(), None, None, 0));
    }

    #[test]
    fn bad_urls_say_why() {
        let bad = |s: &str| parse_url(s).unwrap_err();
        assert!(bad("rediss://h:6380").contains("TLS") && bad("rediss://h").contains("stunnel"));
        assert!(bad("REDISS://u:pw@h").starts_with("rediss:// (TLS) is not supported"));
        assert!(bad("http://u:hunter2@h").starts_with("expected redis://"));
        assert!(!bad("http://u:hunter2@h").contains("hunter2"), "{}", bad("http://u:hunter2@h"));
        assert!(!bad("u:hunter2@h").contains("hunter2"));
        assert_eq!(bad("redis://"), "no host in \"\"");
        assert_eq!(bad("redis://:6379"), "no host in \":6379\"");
        assert_eq!(bad("redis://u:p@/0"), "no host in \"\"");
        assert_eq!(bad("redis://h:0"), "not a port (1 to 65535): \"0\"");
        assert_eq!(bad("redis://h:65536"), "not a port (1 to 65535): \"65536\"");
        assert_eq!(bad("redis://h:"), "not a port (1 to 65535): \"\"");
        assert_eq!(bad("redis://h:+1"), "not a port (1 to 65535): \"+1\"");
        assert!(bad("redis://::1:6379").contains("brackets"));
        assert!(bad("redis://[::g]:1").starts_with("not an IPv6 address"));
        assert!(bad("redis://[::1").starts_with("unclosed ["));
        assert!(bad("redis://[::1]6379").starts_with("expected :port"));
        assert!(bad("redis://h o/").starts_with("not a host name"));
        assert_eq!(bad("redis://h/x"), "not a database number (0 to 1000000): \"x\"");
        assert_eq!(bad("redis://h/1000001"), "not a database number (0 to 1000000): \"1000001\"");
        assert_eq!(bad("redis://h/-1"), "not a database number (0 to 1000000): \"-1\"");
        assert_eq!(bad("redis://h/1/2"), "not a database number (0 to 1000000): \"1/2\"");
        assert!(bad("redis://h?db=1").contains("no query"));
        assert_eq!(bad("redis://u:pa/ss@h"), "a / in the user name or password must be percent-encoded (%2F)");
        assert_eq!(bad("redis://u:p%4@h"), "password: a % not followed by two hex digits (write %25 for %)");
        assert_eq!(bad("redis://%ff@h"), "user name: not UTF-8 once %-decoded");
        assert!(bad("unix:run/redis.sock").contains("absolute"));
        assert!(bad("unix://run/redis.sock").contains("absolute"));
        assert!(bad("unix:/r.sock?password=x").starts_with("unknown query key \"password\""));
        assert!(bad("unix:/r.sock?db=1&x").starts_with("unknown query key \"x\""));
        assert!(bad("unix:/r.sock?db=").starts_with("not a database number"));
    }

    #[test]
    fn display_and_debug_hide_the_password() {
        let u = parse_url("redis://app:hunter2@[::1]:7000/3").unwrap();
        assert_eq!(u.to_string(), "redis://app:***@[::1]:7000/3");
        let debug = format!("{u:?}");
        assert!(!debug.contains("hunter2") && debug.contains("***"), "{debug}");
        assert_eq!(parse_url("redis://:pw@h").unwrap().to_string(), "redis://:***@h:6379/0");
        assert_eq!(parse_url("redis://a%40b@h").unwrap().to_string(), "redis://a%40b@h:6379/0");
        assert_eq!(parse_url("unix:///r.sock").unwrap().to_string(), "unix:/r.sock?db=0");
        assert_eq!(parse_url("redis://h").unwrap().to_string(), "redis://h:6379/0");
    }

    #[test]
    fn sentinel_addresses() {
        assert_eq!(parse_host_port("s1", DEFAULT_SENTINEL_PORT), Ok(("s1".into(), 26379)));
        assert_eq!(parse_host_port("10.0.0.1:5000", 26379), Ok(("10.0.0.1".into(), 5000)));
        assert_eq!(parse_host_port("[fe80::1]:5000", 26379), Ok(("fe80::1".into(), 5000)));
        assert_eq!(parse_host_port("[fe80::1]", 26379), Ok(("fe80::1".into(), 26379)));
        assert!(parse_host_port("fe80::1", 26379).unwrap_err().contains("[::1]:26379"));
        assert!(parse_host_port("", 26379).is_err());
        assert!(parse_host_port("h:99999", 26379).is_err());
        assert!(parse_host_port("redis://h:1", 26379).is_err());
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "(redis://|rediss://|unix:|unix://|)[a-z0-9:@%/\\[\\]?=&.#-]{0,40}") {
            if let Ok(u) = parse_url(&s) {
                // What Display writes parses back to the same address, without the password.
                let mut shown = parse_url(&u.to_string()).unwrap();
                prop_assert_eq!(shown.password.take(), u.password.as_ref().map(|_| "***".to_string()));
                prop_assert_eq!(shown, RedisUrl { password: None, ..u });
            }
            let _ = parse_host_port(&s, 1);
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,40}") {
            let _ = parse_url(&s);
            let _ = parse_host_port(&s, 1);
        }
    }
}
