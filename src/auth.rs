//! Who may do what: scopes, tokens (kept only as SHA-256 hashes, compared in constant time),
//! anonymous rules by client address (CIDR), the decision for one request, and one-time
//! tickets (signed with a cluster's shared key, where there is one).

use crate::http::token::hex_digit;
use crate::topic;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::rc::Rc;
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

/// What a session or a ticket stands for: a configured token (by its hash), or what a verified
/// JWT granted (kept compactly, never the token's text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A configured token.
    Token(TokenId),
    /// A verified JWT's grant.
    Jwt(Rc<crate::jwt::Grant>),
}

impl Credential {
    /// When it stops being valid (unix seconds): a JWT's `exp`; a configured token never.
    pub fn expires(&self) -> Option<u64> {
        match self {
            Credential::Token(_) => None,
            Credential::Jwt(g) => g.expires,
        }
    }
}

/// Who a request turned out to be: the token it presented, if any, and where it came from.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Index of the matching token in the config, if a valid one was presented.
    pub token: Option<usize>,
    /// What a verified JWT granted, if one was presented.
    pub jwt: Option<Rc<crate::jwt::Grant>>,
    /// Whether a token was presented but matched none (answered 401 rather than 403).
    pub bad_token: bool,
    /// Why a presented JWT was refused (said in the 401).
    pub refused: Option<crate::jwt::Refusal>,
    /// Client address and `Host` check.
    pub client: Client,
}

impl Caller {
    /// Nobody in particular, from `client`.
    pub fn anonymous(client: Client) -> Caller {
        Caller { token: None, jwt: None, bad_token: false, refused: None, client }
    }

    /// The caller a verified JWT (or its refusal) makes.
    pub fn with_jwt(verified: Result<crate::jwt::Grant, crate::jwt::Refusal>, client: Client) -> Caller {
        match verified {
            Ok(g) => Caller { jwt: Some(Rc::new(g)), ..Caller::anonymous(client) },
            Err(r) => Caller { bad_token: true, refused: Some(r), ..Caller::anonymous(client) },
        }
    }

    /// Whether the caller identified with a valid credential (a token or a JWT).
    pub fn identified(&self) -> bool {
        self.token.is_some() || self.jwt.is_some()
    }
}

impl Auth {
    /// Builds the decision maker from the validated config parts.
    pub fn new(tokens: Vec<TokenConfig>, public: Vec<PublicRule>) -> Auth {
        Auth { tokens, public }
    }

    /// Identifies the caller from a presented token (or none).
    pub fn identify(&self, presented: Option<&str>, client: Client) -> Caller {
        let Some(t) = presented else {
            return Caller::anonymous(client);
        };
        let h = token_hash(t);
        // Compare against every token so the time does not tell which one matched.
        let mut found = None;
        for (i, tok) in self.tokens.iter().enumerate() {
            if ct_eq(&tok.sha256, &h) && found.is_none() {
                found = Some(i);
            }
        }
        Caller { token: found, bad_token: found.is_none(), ..Caller::anonymous(client) }
    }

    /// What stays true of the caller's token across a reload: its hash. An index into the token
    /// list does not: a reload that reorders or removes tokens would hand a WebSocket session or
    /// an outstanding ticket some other token's rights.
    pub fn token_id(&self, caller: &Caller) -> Option<TokenId> {
        caller.token.map(|i| TokenId(self.tokens[i].sha256))
    }

    /// What a session or ticket of the caller stands for: its token's hash or its JWT's grant.
    pub fn credential(&self, caller: &Caller) -> Option<Credential> {
        match (&caller.jwt, self.token_id(caller)) {
            (Some(g), _) => Some(Credential::Jwt(g.clone())),
            (None, Some(id)) => Some(Credential::Token(id)),
            (None, None) => None,
        }
    }

    /// The caller a session's or ticket's credential stands for now (see
    /// [`Auth::caller_with_token`]); a JWT's grant stays what it was when it was verified.
    pub fn caller_with(&self, credential: &Credential, client: Client) -> Caller {
        match credential {
            Credential::Token(id) => self.caller_with_token(id, client),
            Credential::Jwt(g) => Caller { jwt: Some(g.clone()), ..Caller::anonymous(client) },
        }
    }

    /// The caller holding the token `id` stands for (a WebSocket session, a redeemed ticket), as
    /// the configuration has it now: a token removed since is a bad token.
    pub fn caller_with_token(&self, id: &TokenId, client: Client) -> Caller {
        let index = self.tokens.iter().position(|t| t.sha256 == id.0);
        Caller { token: index, bad_token: index.is_none(), ..Caller::anonymous(client) }
    }

    /// The name of the caller's token, for logs.
    pub fn token_name(&self, caller: &Caller) -> Option<&str> {
        caller.token.map(|i| self.tokens[i].name.as_str())
    }

    /// Whether the caller may use `scope` on every topic `pattern` matches. `public` rules grant
    /// by address, so they apply only to a request whose `Host` is ours (see [`Client`]).
    pub fn allows(&self, caller: &Caller, scope: Scope, pattern: &str) -> bool {
        if let Some(g) = &caller.jwt {
            // A JWT grants subscribe and publish on its patterns, nothing else.
            let granted: &[Box<str>] = match scope {
                Scope::Subscribe => &g.subscribe,
                Scope::Publish => &g.publish,
                _ => &[],
            };
            if granted.iter().any(|s| topic::covers(s, pattern)) {
                return true;
            }
        }
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
        let by_jwt = caller.jwt.as_ref().is_some_and(|g| match scope {
            Scope::Subscribe => !g.subscribe.is_empty(),
            Scope::Publish => !g.publish.is_empty(),
            _ => false,
        });
        by_jwt || caller.token.is_some_and(|i| self.tokens[i].scopes.contains(&scope))
    }
}

/// How long a ticket from `POST /api/ticket` stays valid.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Most tickets outstanding at once (each is single-use and short-lived).
pub const MAX_TICKETS: usize = 10_000;
/// Most used signed tickets remembered at once (this node's and the other nodes' uses, each
/// until its expiry); past it, signed tickets are refused until the overflow expires.
pub const MAX_USED_TICKETS: usize = 4 * MAX_TICKETS;

/// Version byte of a signed ticket's payload.
const SIGNED_VERSION: u8 = 1;
/// Bytes of a signed ticket's token pin, expiry, nonce and HMAC-SHA256.
const PIN_LEN: usize = 8;
const NONCE_LEN: usize = 16;
const MAC_LEN: usize = 32;
/// Version, pin, expiry (unix ms, big-endian), nonce.
const PAYLOAD_LEN: usize = 1 + PIN_LEN + 8 + NONCE_LEN;
/// base64url (no padding) of payload and MAC: 65 bytes are 87 characters.
const SIGNED_CHARS: usize = ((PAYLOAD_LEN + MAC_LEN) * 4).div_ceil(3);
/// How far past this node's clock (plus [`TICKET_TTL`]) a signed ticket's expiry may lie: the
/// nodes' clocks may differ this much, and a use is remembered no longer than this.
const MAX_SKEW_MS: u64 = 60_000;
/// Domain labels, so the shared key signs nothing else by accident.
const MAC_LABEL: &[u8] = b"hookcast/ticket\0";
const PIN_LABEL: &[u8] = b"hookcast/ticket-token\0";

/// A ticket's single use, as nodes tell each other: its nonce, remembered until its expiry.
pub type TicketNonce = [u8; NONCE_LEN];

/// Why a signed ticket was refused (for the debug log; the client gets one answer for all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketRefusal {
    /// Not a signed ticket of this version.
    Malformed,
    /// Signed with another key (another cluster, or altered).
    BadSignature,
    /// Past its expiry, or implausibly far in the future.
    Expired,
    /// Stands for a token this node's configuration does not have.
    UnknownToken,
    /// Used before, here or (as far as the log has told) on another node.
    Used,
    /// Too many uses to remember: refused until some expire.
    Overflow,
}

/// A signed ticket that passed its checks: what it stands for and what marks its use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redeemed {
    /// The token it stands for.
    pub token: TokenId,
    /// Its nonce, to tell the other nodes it is used.
    pub nonce: TicketNonce,
    /// Its expiry, unix ms: the nonce need not be remembered after it.
    pub expires_ms: u64,
}

/// HMAC-SHA256 under `key`, started with `label` (HMAC takes keys of any length: the None
/// case does not happen, and is a refusal rather than a panic).
fn ticket_mac(key: &[u8], label: &[u8]) -> Option<hmac::Hmac<Sha256>> {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    mac.update(label);
    Some(mac)
}

/// What pins a token in a signed ticket: a keyed hash of the token's stored hash, so a node
/// with another token list finds no token (or another) rather than a token by position, and
/// the ticket (which travels in URLs and proxy logs) says nothing a weak token could be
/// guessed from offline, as a bare prefix of its unsalted SHA-256 would.
fn token_pin(key: &[u8], token: &TokenId) -> Option<[u8; PIN_LEN]> {
    use hmac::Mac;
    let mut mac = ticket_mac(key, PIN_LABEL)?;
    mac.update(&token.0);
    let full = mac.finalize().into_bytes();
    let mut pin = [0u8; PIN_LEN];
    pin.copy_from_slice(&full[..PIN_LEN]);
    Some(pin)
}

/// A signed ticket: `tk_` and base64url of the payload and its HMAC-SHA256 under `key`.
fn sign_ticket(key: &[u8], pin: &[u8; PIN_LEN], expires_ms: u64, nonce: &TicketNonce) -> Option<String> {
    use base64::Engine;
    use hmac::Mac;
    let mut raw = Vec::with_capacity(PAYLOAD_LEN + MAC_LEN);
    raw.push(SIGNED_VERSION);
    raw.extend_from_slice(pin);
    raw.extend_from_slice(&expires_ms.to_be_bytes());
    raw.extend_from_slice(nonce);
    let mut mac = ticket_mac(key, MAC_LABEL)?;
    mac.update(&raw);
    raw.extend_from_slice(&mac.finalize().into_bytes());
    Some(format!("tk_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&raw)))
}

/// Whether `ticket` has the shape of a signed one (a node's own tickets are hex and shorter).
pub fn is_signed_ticket(ticket: &str) -> bool {
    ticket.len() == 3 + SIGNED_CHARS && ticket.starts_with("tk_")
}

/// The (pin, expiry, nonce) of a signed ticket whose HMAC under `key` holds (compared in
/// constant time).
fn open_ticket(key: &[u8], ticket: &str) -> Result<([u8; PIN_LEN], u64, TicketNonce), TicketRefusal> {
    use base64::Engine;
    use hmac::Mac;
    // Length first: nothing longer than one ticket is decoded.
    let body = ticket.strip_prefix("tk_").filter(|b| b.len() == SIGNED_CHARS).ok_or(TicketRefusal::Malformed)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(body).map_err(|_| TicketRefusal::Malformed)?;
    if raw.len() != PAYLOAD_LEN + MAC_LEN || raw[0] != SIGNED_VERSION {
        return Err(TicketRefusal::Malformed);
    }
    let (payload, tag) = raw.split_at(PAYLOAD_LEN);
    let mut mac = ticket_mac(key, MAC_LABEL).ok_or(TicketRefusal::BadSignature)?;
    mac.update(payload);
    mac.verify_slice(tag).map_err(|_| TicketRefusal::BadSignature)?;
    let mut pin = [0u8; PIN_LEN];
    pin.copy_from_slice(&payload[1..1 + PIN_LEN]);
    let mut exp = [0u8; 8];
    exp.copy_from_slice(&payload[1 + PIN_LEN..1 + PIN_LEN + 8]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&payload[1 + PIN_LEN + 8..]);
    Ok((pin, u64::from_be_bytes(exp), nonce))
}

/// A ticket's use as the shared log carries it: the nonce in hex, `:`, the expiry in unix ms.
pub fn encode_ticket_use(nonce: &TicketNonce, expires_ms: u64) -> Vec<u8> {
    format!("{}:{expires_ms}", hex(nonce)).into_bytes()
}

/// Reads [`encode_ticket_use`]'s form back.
pub fn decode_ticket_use(data: &[u8]) -> Option<(TicketNonce, u64)> {
    let s = std::str::from_utf8(data).ok()?;
    let (n, exp) = s.split_once(':')?;
    let b = n.as_bytes();
    if b.len() != 2 * NONCE_LEN || exp.is_empty() || exp.len() > 20 || !exp.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut nonce = [0u8; NONCE_LEN];
    for (i, pair) in b.chunks(2).enumerate() {
        nonce[i] = hex_digit(pair[0])? << 4 | hex_digit(pair[1])?;
    }
    Some((nonce, exp.parse().ok()?))
}

impl Auth {
    /// The configured token a signed ticket's pin stands for; none when no token (or, by a
    /// freak collision, more than one) has it.
    fn token_for_pin(&self, key: &[u8], pin: &[u8; PIN_LEN]) -> Option<TokenId> {
        let mut found = None;
        let mut matches = 0;
        for t in &self.tokens {
            let id = TokenId(t.sha256);
            if token_pin(key, &id).is_some_and(|p| ct_eq(&p, pin)) {
                found = Some(id);
                matches += 1;
            }
        }
        (matches == 1).then_some(found).flatten()
    }
}

/// One-time tickets, each standing for a token for [`TICKET_TTL`]: a browser opens a
/// WebSocket or EventSource with `?ticket=` instead of putting the long-lived token in a URL.
///
/// A node alone keeps its tickets here ([`Tickets::issue`], [`Tickets::redeem`]). The nodes
/// of a cluster sign them with the key they share instead ([`Tickets::issue_signed`]), so any
/// node can check one; what keeps a signed ticket single-use is the set of used nonces here,
/// which each node fills with its own uses and those the shared log tells it of
/// ([`Tickets::redeem_signed`], [`Tickets::mark_used`]).
#[derive(Debug, Default)]
pub struct Tickets {
    /// SHA-256 of the ticket → (what it stands for, expiry).
    map: HashMap<[u8; 32], (Credential, Instant)>,
    /// Expiries of the signed tickets this node issued and that are still valid (oldest
    /// first: every ticket lives [`TICKET_TTL`]), held to [`MAX_TICKETS`] with `map`.
    issued: std::collections::VecDeque<Instant>,
    /// Used signed tickets' nonces → their expiry (unix ms).
    used: HashMap<TicketNonce, u64>,
    /// Uses not remembered for lack of room: every signed ticket is refused until this (unix
    /// ms), since one of those might be presented again.
    refuse_until_ms: u64,
}

impl Tickets {
    /// Whether another ticket may be issued at `now` (outstanding ones are under the limit).
    fn room(&mut self, now: Instant) -> bool {
        self.map.retain(|_, (_, exp)| *exp > now);
        while self.issued.front().is_some_and(|exp| *exp <= now) {
            self.issued.pop_front();
        }
        self.map.len() + self.issued.len() < MAX_TICKETS
    }

    /// Issues a ticket for `token` at `now`; None when too many are outstanding or the system
    /// has no randomness to give.
    pub fn issue(&mut self, token: TokenId, now: Instant) -> Option<String> {
        self.issue_for(Credential::Token(token), now, TICKET_TTL)
    }

    /// Issues a ticket standing for `credential` for `ttl` (a JWT's ticket ends with the JWT);
    /// None as for [`Tickets::issue`].
    pub fn issue_for(&mut self, credential: Credential, now: Instant, ttl: Duration) -> Option<String> {
        if !self.room(now) {
            return None;
        }
        let mut raw = [0u8; 24];
        crate::sys::random_bytes(&mut raw).ok()?;
        let ticket = format!("tk_{}", hex(&raw));
        // Only the hash is kept, like configured tokens.
        self.map.insert(token_hash(&ticket), (credential, now + ttl.min(TICKET_TTL)));
        Some(ticket)
    }

    /// Redeems a ticket once: what it stands for, if it is valid and unexpired at `now`.
    pub fn redeem(&mut self, ticket: &str, now: Instant) -> Option<Credential> {
        let (token, exp) = self.map.remove(&token_hash(ticket))?;
        (exp > now).then_some(token)
    }

    /// Issues a ticket for `token` signed with a cluster's shared `key`, valid on every node
    /// of the cluster until [`TICKET_TTL`] after `now_ms` (unix ms); None as for
    /// [`Tickets::issue`].
    pub fn issue_signed(&mut self, key: &[u8], token: &TokenId, now: Instant, now_ms: u64) -> Option<String> {
        if !self.room(now) {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        crate::sys::random_bytes(&mut nonce).ok()?;
        let expires_ms = now_ms.saturating_add(TICKET_TTL.as_millis() as u64);
        let ticket = sign_ticket(key, &token_pin(key, token)?, expires_ms, &nonce)?;
        self.issued.push_back(now + TICKET_TTL);
        Some(ticket)
    }

    /// Redeems a signed ticket once, on this node: it must carry `key`'s signature, be
    /// unexpired at `now_ms`, stand for a token `auth` has, and not be used yet. Its nonce is
    /// then remembered as used; telling the other nodes is the caller's part.
    pub fn redeem_signed(
        &mut self,
        key: &[u8],
        ticket: &str,
        auth: &Auth,
        now_ms: u64,
    ) -> Result<Redeemed, TicketRefusal> {
        let (pin, expires_ms, nonce) = open_ticket(key, ticket)?;
        let latest = now_ms.saturating_add(TICKET_TTL.as_millis() as u64 + MAX_SKEW_MS);
        if expires_ms <= now_ms || expires_ms > latest {
            return Err(TicketRefusal::Expired);
        }
        if now_ms < self.refuse_until_ms {
            return Err(TicketRefusal::Overflow);
        }
        if self.used.get(&nonce).is_some_and(|exp| *exp > now_ms) {
            return Err(TicketRefusal::Used);
        }
        let token = auth.token_for_pin(key, &pin).ok_or(TicketRefusal::UnknownToken)?;
        if !self.mark_used(nonce, expires_ms, now_ms) {
            return Err(TicketRefusal::Overflow);
        }
        Ok(Redeemed { token, nonce, expires_ms })
    }

    /// Remembers a signed ticket's nonce as used until `expires_ms` (this node's use, or one
    /// the shared log told of). False when there is no room: then every signed ticket is
    /// refused until that expiry, so the forgotten one cannot be used again meanwhile.
    pub fn mark_used(&mut self, nonce: TicketNonce, expires_ms: u64, now_ms: u64) -> bool {
        if expires_ms <= now_ms {
            return true;
        }
        // A use from the log is remembered no longer than a ticket here could be valid.
        let expires_ms = expires_ms.min(now_ms.saturating_add(TICKET_TTL.as_millis() as u64 + MAX_SKEW_MS));
        if self.used.len() >= MAX_USED_TICKETS && !self.used.contains_key(&nonce) {
            self.used.retain(|_, exp| *exp > now_ms);
            if self.used.len() >= MAX_USED_TICKETS {
                log::warn!(
                    "tickets: more than {MAX_USED_TICKETS} used tickets to remember; signed tickets are refused \
                     for up to {} s",
                    (expires_ms - now_ms).div_ceil(1000)
                );
                self.refuse_until_ms = self.refuse_until_ms.max(expires_ms);
                return false;
            }
        }
        let e = self.used.entry(nonce).or_insert(expires_ms);
        *e = (*e).max(expires_ms);
        true
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

    const NOW_MS: u64 = 1_733_500_000_000;
    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn tokens(names: &[&str]) -> Auth {
        let t = |n: &&str| TokenConfig {
            name: n.to_string(),
            sha256: token_hash(n),
            scopes: vec![Scope::Subscribe],
            topics: vec!["**".into()],
        };
        Auth::new(names.iter().map(t).collect(), vec![])
    }

    fn id(name: &str) -> TokenId {
        TokenId(token_hash(name))
    }

    fn signed(t: &mut Tickets, token: &str) -> String {
        t.issue_signed(KEY, &id(token), Instant::now(), NOW_MS).unwrap()
    }

    #[test]
    fn a_signed_ticket_is_redeemed_once_for_its_token() {
        let auth = tokens(&["dash", "ci"]);
        let mut issuer = Tickets::default();
        let ticket = signed(&mut issuer, "ci");
        assert!(is_signed_ticket(&ticket), "{ticket}");
        assert!(!is_signed_ticket(&Tickets::default().issue(id("ci"), Instant::now()).unwrap()));
        // Another node (nothing of the issuer's memory) takes it.
        let mut other = Tickets::default();
        let r = other.redeem_signed(KEY, &ticket, &auth, NOW_MS + 1).unwrap();
        assert_eq!(r.token, id("ci"));
        assert_eq!(r.expires_ms, NOW_MS + TICKET_TTL.as_millis() as u64);
        assert_eq!(other.redeem_signed(KEY, &ticket, &auth, NOW_MS + 2), Err(TicketRefusal::Used), "a replay");
        // A third node, told of the use through the log, refuses it too.
        let mut third = Tickets::default();
        let used = decode_ticket_use(&encode_ticket_use(&r.nonce, r.expires_ms)).unwrap();
        assert_eq!(used, (r.nonce, r.expires_ms));
        assert!(third.mark_used(used.0, used.1, NOW_MS + 3));
        assert_eq!(third.redeem_signed(KEY, &ticket, &auth, NOW_MS + 4), Err(TicketRefusal::Used));
        // Two tickets for one token are two.
        assert_ne!(signed(&mut issuer, "ci"), ticket);
    }

    #[test]
    fn a_signed_ticket_expires() {
        let auth = tokens(&["dash"]);
        let ticket = signed(&mut Tickets::default(), "dash");
        let exp = NOW_MS + TICKET_TTL.as_millis() as u64;
        let mut t = Tickets::default();
        assert_eq!(t.redeem_signed(KEY, &ticket, &auth, exp), Err(TicketRefusal::Expired));
        assert_eq!(t.redeem_signed(KEY, &ticket, &auth, exp + 1), Err(TicketRefusal::Expired));
        // A node whose clock is far behind the issuer's does not take it for that long.
        assert_eq!(t.redeem_signed(KEY, &ticket, &auth, NOW_MS - MAX_SKEW_MS - 1), Err(TicketRefusal::Expired));
        assert!(t.redeem_signed(KEY, &ticket, &auth, NOW_MS - MAX_SKEW_MS).is_ok());
        // A use told after the expiry is not remembered (nothing to refuse).
        let mut late = Tickets::default();
        assert!(late.mark_used([7; NONCE_LEN], NOW_MS, NOW_MS));
        assert!(late.used.is_empty());
    }

    #[test]
    fn a_tampered_or_foreign_signed_ticket_is_refused() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let auth = tokens(&["dash"]);
        let ticket = signed(&mut Tickets::default(), "dash");
        let mut t = Tickets::default();
        let other_key = b"another cluster's key, 32 bytes or more..";
        assert_eq!(t.redeem_signed(other_key, &ticket, &auth, NOW_MS), Err(TicketRefusal::BadSignature));
        let raw = b64.decode(&ticket[3..]).unwrap();
        for i in 0..raw.len() {
            let mut bad = raw.clone();
            bad[i] ^= 0x01;
            let forged = format!("tk_{}", b64.encode(&bad));
            let got = t.redeem_signed(KEY, &forged, &auth, NOW_MS);
            let want = if i == 0 { TicketRefusal::Malformed } else { TicketRefusal::BadSignature };
            assert_eq!(got, Err(want), "byte {i} flipped");
        }
        for bad in [
            "",
            "tk_",
            "tk_zz",
            &ticket[..ticket.len() - 1],
            &format!("{ticket}A"),
            &format!("{}*{}", &ticket[..10], &ticket[11..]),
        ] {
            assert!(t.redeem_signed(KEY, bad, &auth, NOW_MS).is_err(), "{bad:?}");
        }
        // None of that spent it.
        assert!(t.redeem_signed(KEY, &ticket, &auth, NOW_MS).is_ok());
    }

    #[test]
    fn a_signed_ticket_stands_for_its_token_only_where_the_token_is_configured() {
        let ticket = signed(&mut Tickets::default(), "ci");
        // A node with another token list: no token for it, not the token at the same place.
        let elsewhere = tokens(&["admin", "dash"]);
        let mut t = Tickets::default();
        assert_eq!(t.redeem_signed(KEY, &ticket, &elsewhere, NOW_MS), Err(TicketRefusal::UnknownToken));
        // Reordered, the same token is found by its hash.
        let reordered = tokens(&["admin", "dash", "ci"]);
        assert_eq!(t.redeem_signed(KEY, &ticket, &reordered, NOW_MS).map(|r| r.token), Ok(id("ci")));
        // The ticket names no token in the clear: the pin is keyed.
        assert_ne!(token_pin(KEY, &id("ci")).unwrap()[..], token_hash("ci")[..PIN_LEN]);
        assert_ne!(token_pin(KEY, &id("ci")), token_pin(b"other key", &id("ci")));
    }

    #[test]
    fn signed_tickets_count_toward_the_outstanding_limit() {
        let mut t = Tickets::default();
        let now = Instant::now();
        for _ in 0..MAX_TICKETS - 1 {
            t.issue_signed(KEY, &id("ci"), now, NOW_MS).unwrap();
        }
        assert!(t.issue(id("ci"), now).is_some());
        assert!(t.issue_signed(KEY, &id("ci"), now, NOW_MS).is_none());
        assert!(t.issue(id("ci"), now).is_none());
        // Once they expired, there is room again.
        assert!(t.issue_signed(KEY, &id("ci"), now + TICKET_TTL, NOW_MS).is_some());
    }

    #[test]
    fn too_many_uses_to_remember_refuse_signed_tickets_until_they_expire() {
        let auth = tokens(&["ci"]);
        let mut t = Tickets::default();
        for i in 0..MAX_USED_TICKETS as u64 {
            let mut nonce = [0u8; NONCE_LEN];
            nonce[..8].copy_from_slice(&i.to_be_bytes());
            assert!(t.mark_used(nonce, NOW_MS + 1000, NOW_MS));
        }
        // One more use from the log cannot be remembered: every signed ticket waits for it.
        assert!(!t.mark_used([0xff; NONCE_LEN], NOW_MS + 2000, NOW_MS));
        let ticket = signed(&mut Tickets::default(), "ci");
        assert_eq!(t.redeem_signed(KEY, &ticket, &auth, NOW_MS + 1999), Err(TicketRefusal::Overflow));
        // Past it, the expired uses make room.
        assert!(t.redeem_signed(KEY, &ticket, &auth, NOW_MS + 2000).is_ok());
        assert_eq!(t.used.len(), 1);
    }

    #[test]
    fn a_ticket_use_entry_is_read_strictly() {
        let n = [0xab; NONCE_LEN];
        assert_eq!(decode_ticket_use(&encode_ticket_use(&n, 42)), Some((n, 42)));
        let good = String::from_utf8(encode_ticket_use(&n, 42)).unwrap();
        for bad in ["", ":", "ab:1", &good.replace(":42", ":"), &good.replace(":42", ":+4"), &good.replace(':', "")] {
            assert_eq!(decode_ticket_use(bad.as_bytes()), None, "{bad:?}");
        }
        assert_eq!(decode_ticket_use(format!("{}:99999999999999999999", hex(&n)).as_bytes()), None, "overflows u64");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_ticket_text_is_refused_or_read_without_panic(s in "tk_[A-Za-z0-9_-]{0,100}|\\PC{0,120}") {
                let mut t = Tickets::default();
                let auth = tokens(&["ci"]);
                prop_assert!(t.redeem_signed(KEY, &s, &auth, NOW_MS).is_err());
                let _ = t.redeem(&s, Instant::now());
            }

            #[test]
            fn any_log_entry_is_read_without_panic(data in proptest::collection::vec(any::<u8>(), 0..80)) {
                if let Some((n, exp)) = decode_ticket_use(&data) {
                    prop_assert_eq!(encode_ticket_use(&n, exp), data);
                }
            }

            #[test]
            fn every_signed_ticket_is_read_back(exp in any::<u64>(), nonce in any::<[u8; NONCE_LEN]>(),
                                                pin in any::<[u8; PIN_LEN]>()) {
                let ticket = sign_ticket(KEY, &pin, exp, &nonce).unwrap();
                prop_assert!(is_signed_ticket(&ticket));
                prop_assert_eq!(open_ticket(KEY, &ticket), Ok((pin, exp, nonce)));
            }
        }
    }
}
