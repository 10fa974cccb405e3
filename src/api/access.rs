//! Who is asking and from where: the credentials a request presents (bearer token, login
//! cookie, `?token=`, a one-time `?ticket=`), the client address behind trusted proxies, the
//! 401/403 answer, and the browser-origin rules (CORS, WebSocket `Origin`). Shared by the
//! handlers in [`crate::api`] and the status page ([`crate::status`]).

use crate::app::App;
use crate::auth::{Caller, Client};
use crate::http::request::{query_param, Head};
use crate::http::response::{Field, Response};
use std::net::IpAddr;

/// The client behind any trusted proxy (see `auth::client_ip`), and whether its `Host` is ours.
pub fn client(app: &App, peer: IpAddr, head: &Head) -> Client {
    let host_ok = crate::auth::host_is_ours(head.header_str("host"), &app.cfg.server_names);
    if app.cfg.trusted_proxies.is_empty() {
        return Client { ip: crate::auth::canonical(peer), host_ok };
    }
    let forwarded: Vec<&str> = head
        .headers
        .iter()
        .filter(|(n, _)| n == "x-forwarded-for")
        .filter_map(|(_, v)| std::str::from_utf8(v).ok())
        .collect();
    let ip = crate::auth::client_ip(
        peer,
        &app.cfg.trusted_proxies,
        head.header_str("cf-connecting-ip"),
        app.cfg.cf_connecting_ip,
        &forwarded,
    );
    Client { ip, host_ok }
}

/// How a request presented its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `Authorization: Bearer`.
    Bearer,
    /// The `hookcast_token` cookie: sent by the browser on its own, whoever made the request.
    Cookie,
    /// `?token=`.
    Query,
}

/// The token a request presents: `Authorization: Bearer`, the `hookcast_token` cookie, or
/// `?token=` (for clients that cannot set headers).
pub fn presented_token(head: &Head) -> Option<String> {
    presented(head).map(|(t, _)| t)
}

/// The token a request presents and how (see [`presented_token`]).
pub fn presented(head: &Head) -> Option<(String, Via)> {
    if let Some(v) = head.header_str("authorization") {
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some((rest.trim().to_string(), Via::Bearer));
        }
    }
    for (name, value) in &head.headers {
        if name != "cookie" {
            continue;
        }
        let Ok(v) = std::str::from_utf8(value) else { continue };
        for pair in v.split(';') {
            if let Some(t) = pair.trim().strip_prefix("hookcast_token=") {
                return Some((t.to_string(), Via::Cookie));
            }
        }
    }
    query_param(head.query(), "token").map(|t| (t, Via::Query))
}

/// Who is asking: a `?ticket=` (redeemed once, where `tickets` says the route takes one), a
/// presented JWT (from the header, `?token=` or the `jwt_cookie` cookie) when verifiers are
/// configured, a presented token, or nobody.
pub(crate) fn caller(app: &mut App, client: Client, head: &Head, tickets: bool) -> Caller {
    if tickets {
        if let Some(t) = query_param(head.query(), "ticket") {
            return match app.redeem_ticket(&t) {
                Some(credential) => app.auth.caller_with(&credential, client),
                None => Caller { bad_token: true, ..Caller::anonymous(client) },
            };
        }
    }
    let presented = presented_token(head);
    if !app.jwt.is_empty() {
        let jwt = presented
            .as_deref()
            .filter(|t| jwt_shaped(t))
            .map(str::to_string)
            .or_else(|| cookie(head, &app.cfg.jwt_cookie).filter(|t| jwt_shaped(t)));
        if let Some(t) = jwt {
            return Caller::with_jwt(verify_jwt(app, &t), client);
        }
    }
    app.auth.identify(presented.as_deref(), client)
}

/// Whether a presented credential is meant as a JWT: three dot-separated parts, empty ones
/// included, so that `alg: none` with no signature is refused for what it is. Configured tokens
/// never have a dot.
pub(crate) fn jwt_shaped(t: &str) -> bool {
    t.bytes().filter(|b| *b == b'.').count() == 2
}

/// Verifies a JWT now and counts it. The grant ends when the token stops verifying: at its
/// `exp` plus its verifier's leeway (a stream opened with it is ended then).
pub(crate) fn verify_jwt(app: &mut App, token: &str) -> Result<crate::jwt::Grant, crate::jwt::Refusal> {
    let mut verified = app.jwt.verify(token, crate::clock::unix_ms() / 1000);
    let configs = app.jwt.configs();
    if let Ok(g) = verified.as_mut() {
        let leeway = configs.get(g.verifier).map_or(0, |v| v.leeway.as_secs());
        g.expires = g.expires.map(|e| e.saturating_add(leeway));
    }
    let names = app.jwt.names();
    let by = verified.as_ref().map(|g| names.get(g.verifier).copied().unwrap_or("?")).map_err(|r| *r);
    app.metrics.jwt_checked(by);
    verified
}

/// The value of cookie `name`, if the request carries it.
fn cookie(head: &Head, name: &str) -> Option<String> {
    head.headers.iter().filter(|(n, _)| n == "cookie").find_map(|(_, v)| {
        let v = std::str::from_utf8(v).ok()?;
        v.split(';').find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('=').map(str::to_string))
    })
}

/// 401 when the caller did not (validly) identify, 403 when it did and still may not; the
/// JSON body says why (`reason`), never with a secret.
pub(crate) fn denied(caller: &Caller, what: &str) -> Response {
    if !caller.identified() {
        let (msg, reason) = match caller.refused {
            Some(r) => (r.message().to_string(), r.as_str()),
            None if caller.bad_token => ("invalid token".to_string(), "invalid_token"),
            None => (format!("a token is needed to {what}"), "no_token"),
        };
        let body = serde_json::json!({ "error": msg, "reason": reason, "status": 401 });
        Response::json(401, &body).with("WWW-Authenticate", "Bearer realm=\"hookcast\"")
    } else {
        let body =
            serde_json::json!({ "error": format!("token may not {what}"), "reason": "not_granted", "status": 403 });
        Response::json(403, &body)
    }
}

/// Whether a browser page from `origin` may open a WebSocket here: the same host as the
/// request (what a page served by hookcast sends), or one configured. Non-browser clients send
/// no `Origin` and are let through (they authenticate like anyone else). A handshake that
/// carries the login cookie is the browser's doing, not the page's: `*` does not cover it, only
/// origins named one by one (cross-site WebSocket hijacking from another port of the host).
pub(crate) fn origin_allowed(app: &App, head: &Head, origin: &str) -> bool {
    let same_host = is_request_host(origin, head);
    let by_cookie = presented(head).is_some_and(|(_, via)| via == Via::Cookie);
    same_host
        || app
            .cfg
            .ws
            .allowed_origins
            .iter()
            .chain(&app.cfg.cors_origins)
            .any(|o| (o == "*" && !by_cookie) || o == origin)
}

/// The origin a response may allow, if the request's `Origin` is configured.
pub(crate) fn allowed_origin(app: &App, head: &Head) -> Option<(String, bool)> {
    let origin = head.header_str("origin")?;
    let list = &app.cfg.cors_origins;
    if list.iter().any(|o| o == origin) {
        Some((origin.to_string(), true))
    } else if list.iter().any(|o| o == "*") {
        Some(("*".to_string(), false))
    } else {
        None
    }
}

/// The CORS headers of a response to a request whose `Origin` is allowed ([`allowed_origin`]).
pub(crate) fn cors_headers(app: &App, head: &Head) -> Vec<Field> {
    match allowed_origin(app, head) {
        None => Vec::new(),
        Some((origin, exact)) => {
            let mut h: Vec<Field> = vec![("Access-Control-Allow-Origin".into(), origin)];
            if exact {
                // Credentials (the token cookie) only for origins named one by one.
                h.push(("Access-Control-Allow-Credentials".into(), "true".to_string()));
                h.push(("Vary".into(), "Origin".to_string()));
            }
            h
        }
    }
}

/// `r` with the CORS headers for `head`.
pub(crate) fn with_cors(app: &App, head: &Head, mut r: Response) -> Response {
    r.headers.extend(cors_headers(app, head));
    r
}

/// The answer to a CORS preflight (`OPTIONS`) for a route that allows the methods `allow`.
pub(crate) fn preflight(app: &App, head: &Head, allow: &'static str) -> Response {
    let mut r = Response::new(204, "text/plain", Vec::new()).with("Allow", allow);
    if allowed_origin(app, head).is_some() {
        r = r
            .with("Access-Control-Allow-Methods", allow)
            .with("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID, X-CSRF-Token")
            .with("Access-Control-Max-Age", "600");
    }
    r
}

/// Whether a browser's `origin` (`scheme://authority`) names the host the request was sent to.
pub(crate) fn is_request_host(origin: &str, head: &Head) -> bool {
    origin
        .split_once("://")
        .zip(head.header_str("host"))
        .is_some_and(|((_, authority), host)| authority.eq_ignore_ascii_case(host))
}

/// The CSRF token of a login-cookie session: HMAC-SHA256 of the cookie's token under a key
/// drawn at start (so it changes with a restart, and tells nothing of the token), in hex. The
/// status page gets it from `/api/status` and sends it as `X-CSRF-Token` with every POST; a
/// page on another origin cannot read it.
pub(crate) fn csrf_token(app: &App, cookie_token: &str) -> String {
    use hmac::Mac;
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(&app.csrf_key).expect("HMAC takes keys of any length");
    mac.update(b"hookcast csrf\n");
    mac.update(cookie_token.as_bytes());
    crate::auth::hex(&mac.finalize().into_bytes())
}

/// Whether a request authenticated by the login cookie carries that session's CSRF token.
pub(crate) fn csrf_ok(app: &App, head: &Head, cookie_token: &str) -> bool {
    head.header_str("x-csrf-token")
        .is_some_and(|t| crate::auth::ct_eq(t.trim().as_bytes(), csrf_token(app, cookie_token).as_bytes()))
}
