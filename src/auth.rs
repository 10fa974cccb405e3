//! Who may do what: scopes, tokens (kept only as SHA-256 hashes, compared in constant time),
//! anonymous rules by client address (CIDR), and the decision for one request.

use crate::http::token::hex_digit;
use crate::topic;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Something a caller may be allowed to do on a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Receive events (SSE, WebSocket, long poll).
    Subscribe,
    /// Publish events.
    Publish,
    /// Operate the daemon (runs, replays, status).
    Admin,
}

impl Scope {
    /// Parses the config spelling.
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "subscribe" => Some(Scope::Subscribe),
            "publish" => Some(Scope::Publish),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// An IPv4 or IPv6 network, `10.0.0.0/8` or a bare address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr` or `addr/prefix`.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
            Some(_) => return None,
        };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether every address in this network is a loopback address.
    pub fn is_loopback_only(&self) -> bool {
        match self.addr {
            IpAddr::V4(a) => a.is_loopback() && self.prefix >= 8,
            IpAddr::V6(a) => a.is_loopback() && self.prefix == 128,
        }
    }

    /// Whether `ip` is inside this network; IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d`, so rules written for IPv4 hold on a dual-stack listener.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// The client's address. Forwarding headers are believed only from a trusted proxy (cloudflared
/// or nginx on the same box, say): otherwise anyone could claim any address.
///
/// `X-Forwarded-For` is walked from the right (the entries our proxies appended) to the first
/// address that is not itself a trusted proxy; anything that does not parse ends the walk at
/// the last address we can vouch for. `CF-Connecting-IP` is believed only when the operator
/// says the trusted proxy is cloudflared (`cf_connecting_ip`): Cloudflare's edge overwrites
/// whatever a client sent there, but nginx, Caddy or HAProxy pass an unknown header through
/// untouched, so from them it is whatever the client wrote.
pub fn client_ip(
    peer: IpAddr,
    trusted: &[Cidr],
    cf_connecting_ip: Option<&str>,
    believe_cf: bool,
    forwarded_for: &[&str],
) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    if believe_cf {
        if let Some(ip) = cf_connecting_ip.and_then(|v| v.trim().parse::<IpAddr>().ok()) {
            return canonical(ip);
        }
    }
    let mut client = peer;
    for entry in forwarded_for.iter().rev().flat_map(|h| h.rsplit(',')) {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else { break };
        client = canonical(ip);
        if !is_trusted(client) {
            break;
        }
    }
    client
}

/// Where a request came from, as far as address-based access goes: the client address behind
/// any trusted proxy, and whether its `Host` is one this daemon answers to. A WebSocket or SSE
/// session keeps it for every later decision (ops, reload checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client {
    /// The client address (never the proxy's, when a trusted proxy forwarded it).
    pub ip: IpAddr,
    /// Whether `Host` named this daemon ([`host_is_ours`]); `public` rules apply only then, so
    /// a DNS-rebinding page (whose `Host` is the attacker's name) gets nothing from them.
    pub host_ok: bool,
}

/// The host part of a `Host` value or an origin's authority: `[::1]:9000` → `::1`,
/// `Example.org.:443` → `example.org`.
fn host_name(authority: &str) -> String {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        rest.split_once(']').map_or(rest, |(h, _)| h)
    } else {
        match a.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => a,
        }
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether a `Host` header names this daemon: an IP literal (the listen address, or any other
/// of the box's: a literal cannot be rebound), `localhost` and its subdomains (RFC 6761:
/// browsers resolve them to loopback themselves), or one of `server_names`. No `Host` at all is
/// an HTTP/1.0 client, not a browser (browsers always send one).
pub fn host_is_ours(host: Option<&str>, server_names: &[String]) -> bool {
    let Some(host) = host else { return true };
    let name = host_name(host);
    if name.is_empty() {
        return false;
    }
    name.parse::<IpAddr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || server_names.iter().any(|s| s.eq_ignore_ascii_case(&name))
}

/// Where a browser says a request comes from, by `Origin` (or, without one,
/// `Sec-Fetch-Site`), relative to the request's `Host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// Neither header: not a browser (a webhook sender, curl), or a same-origin navigation.
    Unmarked,
    /// The page's origin is the host the request went to.
    SameOrigin,
    /// An origin the config names (`cors.allowed_origins`, one by one; `*` does not count).
    Allowed,
    /// Another origin: another site, another port of this host, a sibling subdomain, `null`.
    Foreign,
}

/// Classifies a request's `Origin` / `Sec-Fetch-Site` against its `Host` and the configured
/// origins. `Sec-Fetch-Site: same-site` is foreign on purpose: another port of the same host or
/// a sibling subdomain is the same *site*, and that is what `SameSite` cookies do not stop.
pub fn fetch_origin(
    origin: Option<&str>,
    sec_fetch_site: Option<&str>,
    host: Option<&str>,
    allowed: &[String],
) -> Fetch {
    if let Some(o) = origin {
        let o = o.trim();
        if allowed.iter().any(|a| a != "*" && a == o) {
            return Fetch::Allowed;
        }
        let same = o
            .split_once("://")
            .zip(host)
            .is_some_and(|((_, authority), host)| authority.eq_ignore_ascii_case(host.trim()));
        return if same { Fetch::SameOrigin } else { Fetch::Foreign };
    }
    match sec_fetch_site.map(str::trim) {
        Some(s) if s.eq_ignore_ascii_case("cross-site") || s.eq_ignore_ascii_case("same-site") => Fetch::Foreign,
        Some(s) if s.eq_ignore_ascii_case("same-origin") => Fetch::SameOrigin,
        _ => Fetch::Unmarked,
    }
}

/// Parses 64 hex digits.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks(2).enumerate() {
        out[i] = hex_digit(pair[0])? << 4 | hex_digit(pair[1])?;
    }
    Some(out)
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    // By table: this runs on every signed delivery, where a `format!` per byte showed in the
    // intake profile.
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// The SHA-256 of a token, as stored in the config.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Equality whose time depends only on the length, not on where the bytes differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

/// An API token, stored as the SHA-256 of its secret value.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// A name for logs and metrics.
    pub name: String,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Topic patterns it may do it on.
    pub topics: Vec<String>,
}

/// Access without a token: these scopes on these topics, from these addresses.
#[derive(Debug, Clone)]
pub struct PublicRule {
    /// Topic patterns opened.
    pub topics: Vec<String>,
    /// What anyone may do there.
    pub scopes: Vec<Scope>,
    /// Client addresses the rule applies to; empty means any.
    pub from: Vec<Cidr>,
}

/// The decision maker for one configuration.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: Vec<TokenConfig>,
    public: Vec<PublicRule>,
}

/// A configured token, by its hash (what a session or ticket remembers; see [`Auth::token_id`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenId([u8; 32]);

/// Who a request turned out to be: the token it presented, if any, and where it came from.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// Index of the matching token in the config, if a valid one was presented.
    pub token: Option<usize>,
    /// Whether a token was presented but matched none (answered 401 rather than 403).
    pub bad_token: bool,
    /// Client address and `Host` check.
    pub client: Client,
}

impl Auth {
    /// Builds the decision maker from the validated config parts.
    pub fn new(tokens: Vec<TokenConfig>, public: Vec<PublicRule>) -> Auth {
        Auth { tokens, public }
    }

    /// Identifies the caller from a presented token (or none).
    pub fn identify(&self, presented: Option<&str>, client: Client) -> Caller {
        let Some(t) = presented else {
            return Caller { token: None, bad_token: false, client };
        };
        let h = token_hash(t);
        // Compare against every token so the time does not tell which one matched.
        let mut found = None;
        for (i, tok) in self.tokens.iter().enumerate() {
            if ct_eq(&tok.sha256, &h) && found.is_none() {
                found = Some(i);
            }
        }
        Caller { token: found, bad_token: found.is_none(), client }
    }

    /// What stays true of the caller's token across a reload: its hash. An index into the token
    /// list does not: a reload that reorders or removes tokens would hand a WebSocket session or
    /// an outstanding ticket some other token's rights.
    pub fn token_id(&self, caller: &Caller) -> Option<TokenId> {
        caller.token.map(|i| TokenId(self.tokens[i].sha256))
    }

    /// The caller holding the token `id` stands for (a WebSocket session, a redeemed ticket), as
    /// the configuration has it now: a token removed since is a bad token.
    pub fn caller_with_token(&self, id: &TokenId, client: Client) -> Caller {
        let index = self.tokens.iter().position(|t| t.sha256 == id.0);
        Caller { token: index, bad_token: index.is_none(), client }
    }

    /// The name of the caller's token, for logs.
    pub fn token_name(&self, caller: &Caller) -> Option<&str> {
        caller.token.map(|i| self.tokens[i].name.as_str())
    }

    /// Whether the caller may use `scope` on every topic `pattern` matches. `public` rules grant
    /// by address, so they apply only to a request whose `Host` is ours (see [`Client`]).
    pub fn allows(&self, caller: &Caller, scope: Scope, pattern: &str) -> bool {
        if let Some(i) = caller.token {
            let t = &self.tokens[i];
            if t.scopes.contains(&scope) && t.topics.iter().any(|s| topic::covers(s, pattern)) {
                return true;
            }
        }
        caller.client.host_ok
            && self.public.iter().any(|r| {
                r.scopes.contains(&scope)
                    && (r.from.is_empty() || r.from.iter().any(|c| c.contains(caller.client.ip)))
                    && r.topics.iter().any(|s| topic::covers(s, pattern))
            })
    }

    /// Whether the caller holds `scope` on anything at all (for admin-only routes).
    pub fn has_scope(&self, caller: &Caller, scope: Scope) -> bool {
        caller.token.is_some_and(|i| self.tokens[i].scopes.contains(&scope))
    }
}

/// How long a ticket from `POST /api/ticket` stays valid.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Most tickets outstanding at once (each is single-use and short-lived).
pub const MAX_TICKETS: usize = 10_000;

/// Outstanding one-time tickets, each standing for a token for [`TICKET_TTL`]: a browser opens a
/// WebSocket or EventSource with `?ticket=` instead of putting the long-lived token in a URL.
#[derive(Debug, Default)]
pub struct Tickets {
    /// SHA-256 of the ticket → (the token it stands for, expiry).
    map: HashMap<[u8; 32], (TokenId, Instant)>,
}

impl Tickets {
    /// Issues a ticket for `token` at `now`; None when too many are outstanding or the system
    /// has no randomness to give.
    pub fn issue(&mut self, token: TokenId, now: Instant) -> Option<String> {
        self.map.retain(|_, (_, exp)| *exp > now);
        if self.map.len() >= MAX_TICKETS {
            return None;
        }
        let mut raw = [0u8; 24];
        crate::sys::random_bytes(&mut raw).ok()?;
        let ticket = format!("tk_{}", hex(&raw));
        // Only the hash is kept, like configured tokens.
        self.map.insert(token_hash(&ticket), (token, now + TICKET_TTL));
        Some(ticket)
    }

    /// Redeems a ticket once: the token it stands for, if it is valid and unexpired at `now`.
    pub fn redeem(&mut self, ticket: &str, now: Instant) -> Option<TokenId> {
        let (token, exp) = self.map.remove(&token_hash(ticket))?;
        (exp > now).then_some(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_table() {
        let table = [
            ("127.0.0.0/8", "127.1.2.3", true),
            ("127.0.0.0/8", "128.0.0.1", false),
            ("127.0.0.0/8", "::ffff:127.0.0.1", true),
            ("::1", "::1", true),
            ("::1", "127.0.0.1", false),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("2001:db8::/32", "2001:db8:1::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("10.1.2.3", "10.1.2.3", true),
            ("10.1.2.3", "10.1.2.4", false),
        ];
        for (c, ip, want) in table {
            let cidr = Cidr::parse(c).unwrap();
            assert_eq!(cidr.contains(ip.parse().unwrap()), want, "{c} ∋ {ip}");
        }
        assert!(
            Cidr::parse("127.0.0.0/8").unwrap().is_loopback_only() && Cidr::parse("::1").unwrap().is_loopback_only()
        );
        assert!(
            !Cidr::parse("0.0.0.0/0").unwrap().is_loopback_only() && !Cidr::parse("::/0").unwrap().is_loopback_only()
        );
        for bad in ["10.0.0.0/33", "::/129", "10.0.0.0/", "x", "10.0.0.0/-1", "10.0.0.0/+8"] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn forwarded_headers_only_from_trusted_proxies() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let far: IpAddr = "198.51.100.7".parse().unwrap();
        let trusted = [Cidr::parse("127.0.0.0/8").unwrap(), Cidr::parse("10.0.0.0/8").unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // An untrusted peer cannot claim another address.
        assert_eq!(client_ip(far, &trusted, Some("1.2.3.4"), true, &["5.6.7.8"]), far);
        // cloudflared on the box, said so in the config: CF-Connecting-IP is the client.
        assert_eq!(client_ip(lo, &trusted, Some("203.0.113.9"), true, &[]), ip("203.0.113.9"));
        // X-Forwarded-For: rightmost untrusted entry; a spoofed leftmost entry is ignored.
        let got = client_ip(lo, &trusted, None, false, &["6.6.6.6, 203.0.113.9", "10.1.1.1"]);
        assert_eq!(got, ip("203.0.113.9"));
        // Garbage stops the walk at the last address we can vouch for.
        assert_eq!(client_ip(lo, &trusted, None, false, &["203.0.113.9, nonsense"]), lo);
        // Nothing forwarded: the proxy itself (a local client).
        assert_eq!(client_ip(lo, &trusted, None, false, &[]), lo);
        assert_eq!(client_ip(lo, &[], Some("1.2.3.4"), true, &[]), lo, "no trusted proxies configured");
    }

    #[test]
    fn cf_connecting_ip_only_when_the_proxy_is_cloudflared() {
        // Regression (issue 12, item 2): behind nginx, which passes unknown headers through, a
        // client's own CF-Connecting-IP beat X-Forwarded-For and passed address rules.
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let trusted = [Cidr::parse("127.0.0.0/8").unwrap()];
        let xff = ["203.0.113.50"];
        assert_eq!(client_ip(lo, &trusted, Some("10.1.2.3"), false, &xff), "203.0.113.50".parse::<IpAddr>().unwrap());
        assert_eq!(client_ip(lo, &trusted, Some("10.1.2.3"), false, &[]), lo);
        assert_eq!(client_ip(lo, &trusted, Some("10.1.2.3"), true, &xff), "10.1.2.3".parse::<IpAddr>().unwrap());
        // cloudflared without the header (a local request through it): X-Forwarded-For, then the peer.
        assert_eq!(client_ip(lo, &trusted, None, true, &xff), "203.0.113.50".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn host_names_we_answer_to() {
        let names = ["hooks.example.org".to_string()];
        let table = [
            (Some("127.0.0.1:9000"), true),
            (Some("[::1]:9000"), true),
            (Some("192.168.1.5"), true),
            (Some("localhost:9000"), true),
            (Some("LocalHost"), true),
            (Some("app.localhost:8080"), true),
            (Some("hooks.example.org"), true),
            (Some("Hooks.Example.org.:443"), true),
            (None, true),
            (Some("evil.example:9000"), false),
            (Some("localhost.evil.example"), false),
            (Some("example.org"), false),
            (Some(""), false),
            (Some("127.0.0.1.nip.io"), false),
        ];
        for (host, want) in table {
            assert_eq!(host_is_ours(host, &names), want, "{host:?}");
        }
    }

    #[test]
    fn fetch_origin_table() {
        let allowed = ["https://dash.example".to_string(), "*".to_string()];
        let h = Some("127.0.0.1:9000");
        let table = [
            (Some("http://127.0.0.1:9000"), None, Fetch::SameOrigin),
            (Some("http://127.0.0.1:8080"), None, Fetch::Foreign),
            (Some("https://dash.example"), None, Fetch::Allowed),
            (Some("https://other.example"), None, Fetch::Foreign),
            (Some("null"), Some("same-origin"), Fetch::Foreign),
            (None, Some("cross-site"), Fetch::Foreign),
            (None, Some("same-site"), Fetch::Foreign),
            (None, Some("same-origin"), Fetch::SameOrigin),
            (None, Some("none"), Fetch::Unmarked),
            (None, None, Fetch::Unmarked),
        ];
        for (origin, site, want) in table {
            assert_eq!(fetch_origin(origin, site, h, &allowed), want, "{origin:?} {site:?}");
        }
        assert_eq!(fetch_origin(Some("http://x"), None, None, &[]), Fetch::Foreign, "no Host to be the same as");
    }

    #[test]
    fn token_hash_is_sha256_hex() {
        // sha256("secret")
        assert_eq!(hex(&token_hash("secret")), "2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b");
        assert_eq!(parse_hex32(&hex(&token_hash("x"))), Some(token_hash("x")));
        assert!(parse_hex32("zz").is_none());
    }

    #[test]
    fn decisions() {
        let auth = Auth::new(
            vec![TokenConfig {
                name: "ci".into(),
                sha256: token_hash("s3cret"),
                scopes: vec![Scope::Publish],
                topics: vec!["builds/**".into()],
            }],
            vec![PublicRule {
                topics: vec!["demo".into()],
                scopes: vec![Scope::Subscribe],
                from: vec![Cidr::parse("127.0.0.0/8").unwrap()],
            }],
        );
        let lo = Client { ip: "127.0.0.1".parse().unwrap(), host_ok: true };
        let far = Client { ip: "192.0.2.1".parse().unwrap(), host_ok: true };
        let anon = auth.identify(None, lo);
        // A rebinding page on loopback: right address, foreign Host.
        let rebound = auth.identify(None, Client { host_ok: false, ..lo });
        assert!(!auth.allows(&rebound, Scope::Subscribe, "demo"));
        assert!(auth.allows(&anon, Scope::Subscribe, "demo"));
        assert!(!auth.allows(&anon, Scope::Publish, "demo"));
        assert!(!auth.allows(&auth.identify(None, far), Scope::Subscribe, "demo"));
        let ci = auth.identify(Some("s3cret"), far);
        assert!(auth.allows(&ci, Scope::Publish, "builds/web"));
        assert!(!auth.allows(&ci, Scope::Publish, "deploys"));
        assert!(!auth.allows(&ci, Scope::Subscribe, "builds/web"));
        let bad = auth.identify(Some("nope"), lo);
        assert!(bad.bad_token && bad.token.is_none());
    }
}
