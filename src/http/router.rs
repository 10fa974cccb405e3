//! Routing: method and path to a [`Route`], or the 404/405 answer. A pure function, so the table
//! of what hookcast serves sits in one place.

use super::request::Method;

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /` — the status page.
    Index,
    /// `GET /status/{app.js,style.css}` — the status page's embedded assets (by file name).
    StatusAsset(&'static str),
    /// `GET /hookcast.js` (classic script) or `GET /hookcast.mjs` (`module`: ES module) — the
    /// browser client.
    Client {
        /// The ES module form.
        module: bool,
    },
    /// `GET /api/status` — the status page's snapshot.
    Status,
    /// `GET /login` (the form) and `POST /login` (token → cookie).
    Login,
    /// `POST /logout` — clears the login cookie.
    Logout,
    /// `GET /healthz`
    Health,
    /// `GET /metrics`
    Metrics,
    /// `GET /events?topics=…` or `GET /events/{topic}` (the topic, percent-decoded).
    Events(Option<String>),
    /// `GET /ws?topics=…`
    Ws,
    /// `GET /poll?topics=…&since=ID&timeout=25` — long polling.
    Poll,
    /// `GET /ws/echo` — echo endpoint for conformance tests (when enabled).
    WsEcho,
    /// `POST /api/ticket` — trade a bearer token for a one-time ticket.
    Ticket,
    /// `POST /publish/{topic}`
    Publish(String),
    /// `GET /api/topics/{topic}` — the topic's retained state.
    TopicState(String),
    /// `GET /api/runs` — recent deploy runs.
    Runs,
    /// `GET /api/runs/{id}` — one run with its log.
    Run(u64),
    /// `POST /api/runs/{id}/cancel`
    CancelRun(u64),
    /// `POST /api/runs/{id}/retry`
    RetryRun(u64),
    /// `GET /api/deliveries` — recent accepted deliveries kept for replay.
    Deliveries,
    /// `GET /api/deliveries/{event}` (hook None: `id` is the delivery's `$deliveries` event id)
    /// or `GET /api/deliveries/{hook}/{id}` (the newest record of that delivery): one delivery
    /// as the inspector shows it; `GET /api/deliveries/{event}/body` (`raw`): its body's bytes.
    Delivery {
        /// The hook, when the delivery is named by its id.
        hook: Option<String>,
        /// The delivery id, or the event id when `hook` is None.
        id: String,
        /// The raw body rather than the record.
        raw: bool,
    },
    /// `POST /api/deliveries/{hook}/{id}/replay`, or `/api/deliveries/{id}/replay` (hook None:
    /// the id must name one stored delivery); each segment percent-decoded.
    ReplayDelivery {
        /// The hook that accepted the delivery, when named.
        hook: Option<String>,
        /// The delivery id.
        id: String,
    },
    /// `POST /hooks/{id}` (or the hook's `http-methods`) — webhook intake.
    Hook(String),
    /// `OPTIONS` on a route that has CORS (preflight); carries the route's `Allow` value.
    Preflight(&'static str),
}

/// Why no route matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteError {
    /// No such path (404).
    NotFound,
    /// The path exists with other methods (405 with this `Allow`).
    MethodNotAllowed(&'static str),
    /// The path's topic segment is not valid percent-encoding or UTF-8 (400).
    BadPath,
}

/// Routes one request.
pub fn route(method: Method, path: &str) -> Result<Route, RouteError> {
    use Method::*;
    let (allow, route) = match path {
        "/" => ("GET, HEAD", Route::Index),
        "/status/app.js" => ("GET, HEAD", Route::StatusAsset("app.js")),
        "/status/style.css" => ("GET, HEAD", Route::StatusAsset("style.css")),
        "/hookcast.js" => ("GET, HEAD", Route::Client { module: false }),
        "/hookcast.mjs" => ("GET, HEAD", Route::Client { module: true }),
        "/api/status" => ("GET, HEAD", Route::Status),
        "/login" => ("GET, HEAD, POST", Route::Login),
        "/logout" => ("POST", Route::Logout),
        "/healthz" => ("GET, HEAD", Route::Health),
        "/metrics" => ("GET, HEAD", Route::Metrics),
        "/events" => ("GET, HEAD, OPTIONS", Route::Events(None)),
        "/ws" => ("GET", Route::Ws),
        "/poll" => ("GET, HEAD, OPTIONS", Route::Poll),
        "/ws/echo" => ("GET", Route::WsEcho),
        "/api/ticket" => ("POST, OPTIONS", Route::Ticket),
        "/api/runs" => ("GET, HEAD", Route::Runs),
        "/api/deliveries" => ("GET, HEAD", Route::Deliveries),
        _ => {
            if let Some(t) = path.strip_prefix("/events/") {
                let t = super::request::percent_decode(t).ok_or(RouteError::BadPath)?;
                ("GET, HEAD, OPTIONS", Route::Events(Some(t)))
            } else if let Some(t) = path.strip_prefix("/api/topics/") {
                let t = super::request::percent_decode(t).ok_or(RouteError::BadPath)?;
                ("GET, HEAD", Route::TopicState(t))
            } else if let Some(rest) = path.strip_prefix("/api/runs/") {
                let (id, action) = rest.split_once('/').unwrap_or((rest, ""));
                let id: u64 = id.parse().map_err(|_| RouteError::NotFound)?;
                match action {
                    "" => ("GET, HEAD", Route::Run(id)),
                    "cancel" => ("POST", Route::CancelRun(id)),
                    "retry" => ("POST", Route::RetryRun(id)),
                    _ => return Err(RouteError::NotFound),
                }
            } else if let Some(rest) = path.strip_prefix("/api/deliveries/") {
                // The id is the last segment (a `/` inside it is sent as `%2F`); the hook, whose
                // id may hold `/` between segments, is everything before it.
                let decode = |s: &str| super::request::percent_decode(s).ok_or(RouteError::BadPath);
                let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
                if let Some(names) = rest.strip_suffix("/replay") {
                    let route = match names.rsplit_once('/') {
                        None => Route::ReplayDelivery { hook: None, id: decode(names)? },
                        Some((hook, id)) => Route::ReplayDelivery { hook: Some(decode(hook)?), id: decode(id)? },
                    };
                    ("POST", route)
                } else if let Some(event) = rest.strip_suffix("/body").filter(|e| digits(e)) {
                    ("GET, HEAD", Route::Delivery { hook: None, id: event.to_string(), raw: true })
                } else {
                    let route = match rest.rsplit_once('/') {
                        None if digits(rest) => Route::Delivery { hook: None, id: rest.to_string(), raw: false },
                        None => return Err(RouteError::NotFound),
                        Some((hook, id)) => Route::Delivery { hook: Some(decode(hook)?), id: decode(id)?, raw: false },
                    };
                    ("GET, HEAD", route)
                }
            } else if let Some(id) = path.strip_prefix("/hooks/") {
                // Methods are the hook's business (adnanh's `http-methods`): checked by intake.
                let id = super::request::percent_decode(id).ok_or(RouteError::BadPath)?;
                return Ok(Route::Hook(id));
            } else if let Some(t) = path.strip_prefix("/publish/") {
                let t = super::request::percent_decode(t).ok_or(RouteError::BadPath)?;
                ("POST, OPTIONS", Route::Publish(t))
            } else {
                return Err(RouteError::NotFound);
            }
        }
    };
    let ok = match method {
        Get => allow.contains("GET"),
        Head => allow.contains("HEAD"),
        Post => allow.contains("POST"),
        Options if allow.contains("OPTIONS") => return Ok(Route::Preflight(allow)),
        _ => false,
    };
    if ok {
        Ok(route)
    } else {
        Err(RouteError::MethodNotAllowed(allow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use Method::*;
        assert_eq!(route(Get, "/healthz"), Ok(Route::Health));
        assert_eq!(route(Head, "/healthz"), Ok(Route::Health));
        assert_eq!(route(Post, "/healthz"), Err(RouteError::MethodNotAllowed("GET, HEAD")));
        assert_eq!(route(Get, "/events"), Ok(Route::Events(None)));
        assert_eq!(route(Get, "/events/%24runs/7"), Ok(Route::Events(Some("$runs/7".into()))));
        assert_eq!(route(Post, "/publish/demo"), Ok(Route::Publish("demo".into())));
        assert_eq!(route(Get, "/publish/demo"), Err(RouteError::MethodNotAllowed("POST, OPTIONS")));
        assert_eq!(route(Options, "/publish/demo"), Ok(Route::Preflight("POST, OPTIONS")));
        assert_eq!(route(Get, "/nope"), Err(RouteError::NotFound));
        assert_eq!(route(Delete, "/events"), Err(RouteError::MethodNotAllowed("GET, HEAD, OPTIONS")));
        assert_eq!(route(Get, "/events/%ff"), Err(RouteError::BadPath));
        assert_eq!(route(Get, "/api/runs/7"), Ok(Route::Run(7)));
        assert_eq!(route(Post, "/api/runs/7/retry"), Ok(Route::RetryRun(7)));
        assert_eq!(route(Get, "/api/runs/7/cancel"), Err(RouteError::MethodNotAllowed("POST")));
        assert_eq!(route(Get, "/api/runs/x"), Err(RouteError::NotFound));
        assert_eq!(route(Put, "/hooks/deploy"), Ok(Route::Hook("deploy".into())));
        assert_eq!(route(Get, "/status/app.js"), Ok(Route::StatusAsset("app.js")));
        assert_eq!(route(Get, "/hookcast.js"), Ok(Route::Client { module: false }));
        assert_eq!(route(Head, "/hookcast.mjs"), Ok(Route::Client { module: true }));
        assert_eq!(route(Get, "/status/nope.js"), Err(RouteError::NotFound));
        assert_eq!(route(Post, "/login"), Ok(Route::Login));
        assert_eq!(route(Get, "/logout"), Err(RouteError::MethodNotAllowed("POST")));
        let replay = |hook: Option<&str>, id: &str| Route::ReplayDelivery { hook: hook.map(Into::into), id: id.into() };
        assert_eq!(route(Post, "/api/deliveries/d-1/replay"), Ok(replay(None, "d-1")));
        assert_eq!(route(Post, "/api/deliveries/gh/d-1/replay"), Ok(replay(Some("gh"), "d-1")));
        assert_eq!(route(Post, "/api/deliveries/a%2Fb/c%2Fd/replay"), Ok(replay(Some("a/b"), "c/d")));
        assert_eq!(route(Post, "/api/deliveries/team/site/d-1/replay"), Ok(replay(Some("team/site"), "d-1")));
        assert_eq!(route(Get, "/api/deliveries/gh/d-1/replay"), Err(RouteError::MethodNotAllowed("POST")));
        let one =
            |hook: Option<&str>, id: &str, raw| Route::Delivery { hook: hook.map(Into::into), id: id.into(), raw };
        assert_eq!(route(Get, "/api/deliveries/42"), Ok(one(None, "42", false)));
        assert_eq!(route(Get, "/api/deliveries/42/body"), Ok(one(None, "42", true)));
        assert_eq!(route(Get, "/api/deliveries/team/site/d%2F1"), Ok(one(Some("team/site"), "d/1", false)));
        assert_eq!(route(Get, "/api/deliveries/d-1"), Err(RouteError::NotFound));
        assert_eq!(route(Post, "/api/deliveries/42"), Err(RouteError::MethodNotAllowed("GET, HEAD")));
    }
}
