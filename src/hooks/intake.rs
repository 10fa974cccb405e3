//! Webhook intake: one request to `/hooks/{id}` becomes a delivery — verified, deduplicated,
//! matched against the hook's rules, published, and (with `execute-command`) handed to the
//! runner. Checks run cheapest and most hostile-input-proof first:
//!
//! ```text
//! hook known? → method allowed? → client address allowed? → provider signature (raw body,
//! constant time) → duplicate delivery? → body parsed → events / branches filters →
//! trigger-rule → (no provider: duplicate delivery?) → accepted: summary published, run
//! submitted → response
//! ```
//!
//! Hooks in adnanh/webhook's format answer as adnanh does (status, `response-message`,
//! `response-headers`, or the command's output); hooks with a `provider` answer 202 with a JSON
//! receipt. Every outcome, rejected ones included, is published on `$deliveries`.

use super::body::{BodyError, RequestValues};
use super::def::{Concurrency, DedupBy, HookDef, PublishMode};
use super::params::{self, Argument};
use super::providers::{self, Incoming, Provider};
use super::rules::{self, RuleError, Secrets};
use super::summary::{summarize, Facts};
use crate::config::json::ConfigError;
use crate::http::response::Response;
use crate::runner::sched::Mode;
use crate::runner::{RunSpec, RunnerConfig};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// adnanh/webhook's body when a command failed and its output is not to be shown.
const ADNANH_EXEC_ERROR: &str =
    "Error occurred while executing the hook's command. Please check your logs for more details.";
/// Variables addressed to the daemon itself (systemd's notification socket, watchdog and socket
/// activation), never inherited by a command: under adnanh, which speaks none of these
/// protocols, a unit does not set them.
const DAEMON_ONLY_ENV: &[&str] =
    &["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"];

/// adnanh/webhook's body when the rules did not match.
const ADNANH_RULES_NOT_SATISFIED: &str = "Hook rules were not satisfied.";

/// A hook ready to serve: its definition with every secret read.
#[derive(Debug)]
pub struct Hook {
    /// The definition.
    pub def: HookDef,
    provider: Option<Provider>,
    provider_secrets: Vec<Vec<u8>>,
    rule_secrets: Secrets,
    /// Headers the trigger rule compares with a secret (`value`) or checks an HMAC in, lower-case.
    rule_secret_headers: Vec<String>,
    /// Whether any argument or rule reads one of [`CREDENTIAL_HEADERS`] (or every header).
    reads_credentials: bool,
    /// Topic its deliveries are published to.
    pub topic: String,
    /// Variables any hook reads a secret from (`{"env": NAME}`): kept out of an inherited
    /// environment, since a command's output is published on `$runs`.
    withheld_env: Vec<String>,
}

/// Header fields that carry a secret, or a signature over the body, in some scheme we know
/// (lower-case). A stored delivery's view shows them masked (see [`Hook::is_secret_header`]).
pub const SECRET_HEADERS: &[&str] = &[
    "x-gitlab-token",
    "x-hub-signature",
    "x-hub-signature-256",
    "x-gitea-signature",
    "x-forgejo-signature",
    "x-gogs-signature",
    "stripe-signature",
    "x-slack-signature",
    "webhook-signature",
    "svix-signature",
    "authorization",
    "proxy-authorization",
    "cookie",
];

/// Credentials meant for hookcast or a proxy, never for a hook's verification: not kept in a
/// stored delivery (memory, journal) unless the hook's arguments or rules read them.
pub const CREDENTIAL_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// Whether an argument reads one of [`CREDENTIAL_HEADERS`] or every header.
fn reads_credentials(a: &Argument) -> bool {
    match a.source {
        params::Source::EntireHeaders => true,
        params::Source::Header => CREDENTIAL_HEADERS.iter().any(|h| a.name.eq_ignore_ascii_case(h)),
        _ => false,
    }
}

/// Every argument a rule reads.
fn rule_arguments<'a>(rule: &'a super::rules::Rule, out: &mut Vec<&'a Argument>) {
    use super::rules::{MatchRule, Rule};
    match rule {
        Rule::And(rs) | Rule::Or(rs) => rs.iter().for_each(|r| rule_arguments(r, out)),
        Rule::Not(r) => rule_arguments(r, out),
        Rule::Match(
            MatchRule::Value { parameter, .. }
            | MatchRule::Regex { parameter, .. }
            | MatchRule::PayloadHmac { parameter, .. },
        ) => out.push(parameter),
        Rule::Match(MatchRule::IpWhitelist { .. }) => {}
    }
}

/// Whether `name` is one of [`SECRET_HEADERS`] (for a delivery whose hook is gone).
pub fn is_known_secret_header(name: &str) -> bool {
    SECRET_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Headers a rule tests against a secret: the parameters of `value` and `payload-hmac-*`
/// matches whose source is a header.
fn rule_secret_headers(rule: &super::rules::Rule, out: &mut Vec<String>) {
    use super::rules::{MatchRule, Rule};
    match rule {
        Rule::And(rs) | Rule::Or(rs) => rs.iter().for_each(|r| rule_secret_headers(r, out)),
        Rule::Not(r) => rule_secret_headers(r, out),
        Rule::Match(MatchRule::Value { parameter, .. } | MatchRule::PayloadHmac { parameter, .. })
            if parameter.source == params::Source::Header =>
        {
            out.push(parameter.name.to_ascii_lowercase())
        }
        Rule::Match(_) => {}
    }
}

impl Hook {
    /// Whether header `name` carries a secret or a signature for this hook: one of
    /// [`SECRET_HEADERS`], the header of an `hmac` provider, or one the trigger rule compares
    /// with a secret. Its value is masked wherever a stored delivery is shown.
    pub fn is_secret_header(&self, name: &str) -> bool {
        is_known_secret_header(name)
            || matches!(&self.provider, Some(Provider::Hmac(spec)) if spec.header.eq_ignore_ascii_case(name))
            || self.rule_secret_headers.iter().any(|h| h.eq_ignore_ascii_case(name))
    }

    /// Whether a request's header `name` is kept, for the intake and for replay: all but
    /// [`CREDENTIAL_HEADERS`] unless the hook reads them (then replay needs them too).
    pub fn keeps_header(&self, name: &str) -> bool {
        self.reads_credentials || !CREDENTIAL_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h))
    }

    /// What the idempotency window knows a delivery by: its id, or with `"dedup": "body"` the
    /// SHA-256 of its raw body (`body:` and hex, printable like every delivery id).
    pub fn dedup_key(&self, delivery: &str, body: &[u8]) -> String {
        match self.def.dedup {
            DedupBy::DeliveryId => delivery.to_string(),
            DedupBy::Body => {
                use sha2::Digest;
                format!("body:{}", crate::auth::hex(&sha2::Sha256::digest(body)))
            }
        }
    }
}

/// All hooks by id.
#[derive(Debug, Default)]
pub struct Hooks {
    list: Vec<Hook>,
    by_id: HashMap<String, usize>,
}

impl Hooks {
    /// Reads every secret the hooks use (env, file, systemd credential) and checks them, so a
    /// missing secret stops `hookcast check` and the start, naming the hook.
    pub fn prepare(defs: Vec<HookDef>) -> Result<Hooks, ConfigError> {
        let mut hooks = Hooks::default();
        for def in defs {
            let at = |what: &str| format!("hooks[{:?}].{what}", def.id);
            let provider = def.provider_spec.clone();
            let mut provider_secrets = Vec::new();
            for s in &def.secrets {
                let bytes = s.resolve().map_err(|e| ConfigError { path: at("secrets"), message: e.message })?;
                if let Some(p) = &provider {
                    p.check_secret(&bytes).map_err(|e| ConfigError { path: at("secrets"), message: e.to_string() })?;
                }
                provider_secrets.push(bytes);
            }
            let rule_secrets = match &def.trigger_rule {
                Some(r) => {
                    Secrets::load(r).map_err(|e| ConfigError { path: at("trigger-rule"), message: e.message })?
                }
                None => Secrets::new(),
            };
            let mut secret_headers = Vec::new();
            let mut read = Vec::new();
            if let Some(r) = &def.trigger_rule {
                rule_secret_headers(r, &mut secret_headers);
                rule_arguments(r, &mut read);
            }
            read.extend(def.pass_arguments_to_command.iter());
            read.extend(def.pass_environment_to_command.iter());
            read.extend(def.pass_file_to_command.iter());
            read.extend(def.parse_parameters_as_json.iter());
            let hmac_reads = |spec: &providers::HmacSpec| CREDENTIAL_HEADERS.contains(&spec.header.as_str());
            let reads_credentials = read.into_iter().any(reads_credentials)
                || matches!(&provider, Some(Provider::Hmac(spec)) if hmac_reads(spec));
            let topic = def.topic.clone().unwrap_or_else(|| format!("hooks/{}", def.id));
            if let Err(e) = crate::topic::validate_topic(&topic) {
                return Err(ConfigError { path: at("topic"), message: format!("{e}: {topic:?}") });
            }
            if hooks.by_id.contains_key(&def.id) {
                return Err(ConfigError { path: at("id"), message: "defined twice".into() });
            }
            hooks.by_id.insert(def.id.clone(), hooks.list.len());
            hooks.list.push(Hook {
                def,
                provider,
                provider_secrets,
                rule_secrets,
                rule_secret_headers: secret_headers,
                reads_credentials,
                topic,
                withheld_env: Vec::new(),
            });
        }
        let mut withheld: Vec<String> = DAEMON_ONLY_ENV.iter().map(|s| s.to_string()).collect();
        for h in &hooks.list {
            let mut sources: Vec<&crate::hooks::secret::SecretSource> = h.def.secrets.iter().collect();
            if let Some(r) = &h.def.trigger_rule {
                rules::secret_sources(r, &mut sources);
            }
            for s in sources {
                if let crate::hooks::secret::SecretSource::Env(name) = s {
                    if !withheld.contains(name) {
                        withheld.push(name.clone());
                    }
                }
            }
        }
        for h in &mut hooks.list {
            if h.def.inherit_environment {
                h.withheld_env = withheld.clone();
            }
        }
        Ok(hooks)
    }

    /// A hook by id.
    pub fn get(&self, id: &str) -> Option<&Hook> {
        self.by_id.get(id).map(|&i| &self.list[i])
    }

    /// Every hook, in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Hook> {
        self.list.iter()
    }

    /// How many hooks there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// A request to a hook, as the intake sees it.
pub struct Request<'a> {
    /// Method as sent.
    pub method: &'a str,
    /// Header fields, names lower-cased.
    pub headers: &'a [(String, Vec<u8>)],
    /// Raw query string.
    pub query: &'a str,
    /// Raw body.
    pub body: Vec<u8>,
    /// Client address (after trusted proxies).
    pub ip: IpAddr,
    /// The client's port, 0 when unknown (a replay, a client named by a trusted proxy).
    pub port: u16,
    /// Unix time now.
    pub now_unix: u64,
    /// The id of the stored delivery a replay repeats: kept, even when it was made up.
    pub replay_of: Option<&'a str>,
}

/// How a delivery ended, for the log line, metrics and `$deliveries`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Accepted (and run, when the hook has a command).
    Accepted,
    /// A repeat of a delivery already accepted.
    Duplicate,
    /// Verified but filtered out by `events` / `branches`.
    Ignored,
    /// The trigger rule was false.
    Mismatch,
    /// Refused: method, address, signature, body, or a full run queue.
    Rejected,
}

impl Verdict {
    /// The label in metrics and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Duplicate => "duplicate",
            Verdict::Ignored => "ignored",
            Verdict::Mismatch => "mismatch",
            Verdict::Rejected => "rejected",
        }
    }
}

/// What the signature check said about a delivery (the status page's "Signature" column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verification {
    /// The provider's signature held.
    Ok,
    /// A signature (the provider's, or a trigger rule's `payload-hmac-*`) did not hold.
    Failed,
    /// Refused before the provider's check ran (method or address).
    NotChecked,
    /// The hook has no provider: nothing to check.
    None,
}

/// A delivery's `$deliveries` record: published, journalled as that event, shown on the status
/// page and read back at a restart. Fields are declared in name order so the JSON is what it was
/// when this was a `serde_json::Value` (whose keys come out sorted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// Delivery id: the provider's, a header's, or a made-up one; empty when refused before an
    /// id is believed (a provider's id is only believed once its signature holds).
    pub delivery: String,
    /// Event name, when known.
    pub event: Option<String>,
    /// The hook's id.
    pub hook: String,
    /// Why it ended so, in words.
    pub message: String,
    /// How it ended.
    pub outcome: Verdict,
    /// The hook's provider, if any.
    pub provider: Option<String>,
    /// The event an accepted delivery published to the hook's topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<PublishedEvent>,
    /// A replay of a stored delivery (`POST /api/deliveries/…/replay`); absent when false.
    #[serde(default, skip_serializing_if = "is_false")]
    pub replay: bool,
    /// The run an accepted delivery started or joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<crate::runner::sched::RunId>,
    /// Client address.
    pub source: String,
    /// Status answered; 0 while the answer waits for the run's output.
    pub status: u16,
    /// The payload's summary, when accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<Value>,
    /// What the signature check said.
    pub verification: Verification,
}

/// An event a delivery published: its id and topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedEvent {
    /// The event's id.
    pub id: u64,
    /// The topic it went to.
    pub topic: String,
}

/// The signature check in words (no secret in them: only its position in the hook's list).
fn verification_words(e: &providers::VerifyError, secrets: usize) -> String {
    use providers::VerifyError as E;
    match e {
        E::Missing(h) => format!("missing header {h}: the request is not signed"),
        E::Duplicate(h) => format!("header {h} appears more than once"),
        E::Malformed(h) => format!("malformed header {h}"),
        E::Mismatch => format!(
            "wrong signature: none of the hook's {secrets} secret{} matches it (another secret, or the body was changed)",
            if secrets == 1 { "" } else { "s" }
        ),
        E::Stale { .. } => format!("stale timestamp: {e}"),
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl DeliveryRecord {
    /// The record as `$deliveries` carries it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a delivery record is plain JSON")
    }

    /// A record read back from `$deliveries` history (the journal, at a restart). Records
    /// written before `verification` was a field lack it; theirs is worked out by
    /// `legacy_verification`.
    pub fn read(data: &str) -> Option<DeliveryRecord> {
        let mut v: Value = serde_json::from_str(data).ok()?;
        let m = v.as_object_mut()?;
        if !m.contains_key("verification") {
            let legacy = legacy_verification(m);
            m.insert("verification".into(), serde_json::to_value(legacy).ok()?);
        }
        serde_json::from_value(v).ok()
    }
}

/// LEGACY, only for records journalled before `verification` was a field (see
/// [`DeliveryRecord::read`]): nothing but the record's words tells a refused signature from a
/// refused body, so this reads them. Keep it away from new records: rewording an error in
/// `providers/` changes what it says.
fn legacy_verification(r: &serde_json::Map<String, Value>) -> Verification {
    let msg = r.get("message").and_then(Value::as_str).unwrap_or("");
    let rejected = r.get("outcome").and_then(Value::as_str) == Some("rejected");
    let provider = r.get("provider").is_some_and(|p| !p.is_null());
    let sig_msg = ["missing header", "malformed header", "signature", "replay window", "appears more than once"]
        .iter()
        .any(|p| msg.contains(p));
    let status = r.get("status").and_then(Value::as_u64);
    if rejected && sig_msg {
        Verification::Failed
    } else if !provider {
        Verification::None
    } else if rejected && (status == Some(405) || msg == "address not allowed") {
        Verification::NotChecked
    } else {
        Verification::Ok
    }
}

/// A record as published on `$deliveries`, with its event's time and id: what the status page
/// shows, and for a hook's last delivery (remembered apart from history) why its signature
/// failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishedRecord {
    /// The record.
    #[serde(flatten)]
    pub record: DeliveryRecord,
    /// When it was published (RFC 3339).
    pub time: String,
    /// Its `$deliveries` event id.
    pub event_id: u64,
    /// The signature failure's metric reason, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_failure: Option<&'static str>,
}

impl PublishedRecord {
    /// The record published as event `event_id` at `time_ms`.
    pub fn new(
        record: DeliveryRecord,
        signature_failure: Option<&'static str>,
        event_id: u64,
        time_ms: u64,
    ) -> PublishedRecord {
        PublishedRecord { record, time: crate::clock::rfc3339(time_ms), event_id, signature_failure }
    }
}

/// What the intake decided.
pub struct Decision {
    /// The `$deliveries` record: how it ended, the delivery id, event and verification.
    pub record: DeliveryRecord,
    /// The response now, or None when the caller must wait for the run and answer with its output.
    pub response: Option<Response>,
    /// A run to submit (the caller owns the runner).
    pub spec: Option<RunSpec>,
    /// What the idempotency window knows this delivery by (see [`Hook::dedup_key`]).
    pub dedup_key: String,
    /// Signature failure reason, for the metric.
    pub signature_failure: Option<&'static str>,
    /// More than the record's message says, for the log: which part of a trigger rule failed.
    pub detail: Option<String>,
    /// What goes to the hook's topic, when accepted and `publish` is not `none`.
    pub topic_event: Option<Value>,
    /// Whether that event becomes the topic's retained state (the hook's `retain`).
    pub retain: bool,
    /// The signature check in words: which secret matched, or why none did. Not on the
    /// `$deliveries` record: the inspector asks the intake again (see `api::inspect`).
    pub verification_detail: String,
    /// What the hook's filters (`events`, `branches`) and trigger rule said, in words.
    pub rule: Option<String>,
}

fn plain(status: u16, text: &str) -> Response {
    Response::new(status, "text/plain; charset=utf-8", text.to_string())
}

/// Delivery ids for requests whose sender gives none: unique in this process and over time.
/// A random start read once, then a counter: unlikely to repeat across restarts, and no
/// open(/dev/urandom) per request (it showed in the profile).
#[derive(Debug)]
pub struct MadeUpIds {
    next: u64,
}

impl MadeUpIds {
    /// A series starting at `seed`.
    pub fn new(seed: u64) -> MadeUpIds {
        MadeUpIds { next: seed }
    }

    /// A series starting at a random point.
    pub fn random() -> MadeUpIds {
        let mut raw = [0u8; 8];
        let _ = crate::sys::random_bytes(&mut raw);
        MadeUpIds::new(u64::from_le_bytes(raw))
    }

    /// The next id, made at `now_unix`.
    pub fn make(&mut self, now_unix: u64) -> String {
        let n = self.next;
        self.next = n.wrapping_add(1);
        format!("hc-{now_unix}-{n:016x}")
    }
}

/// Headers whose value some senders give as a delivery id even without a `provider` on the hook
/// (adnanh-style hooks behind GitHub or GitLab still get idempotency), in the order looked at.
const ID_HEADERS: [&str; 5] =
    ["x-github-delivery", "x-gitlab-event-uuid", "x-gitea-delivery", "webhook-id", "x-request-uuid"];

/// The delivery id of the first [`ID_HEADERS`] field present, when it follows the providers' id
/// rule ([`providers::valid_id`]); an invalid one is not refused (the hook has no provider to say
/// what is valid) but replaced by a made-up id, so no sender decides how big an id we keep.
fn header_delivery_id(headers: &[(String, Vec<u8>)]) -> Option<String> {
    let value = ID_HEADERS.iter().find_map(|n| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v))?;
    let value = std::str::from_utf8(value).ok()?.trim_matches([' ', '\t']);
    providers::valid_id(value).then(|| value.to_string())
}

/// The values of a request for `hook`: [`RequestValues::build`] with the hook's content type
/// override and JSON parts, then the hook's `parse-parameters-as-json`.
pub fn request_values<'a>(
    hook: &HookDef,
    method: &str,
    remote_addr: &str,
    headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    raw_query: &str,
    body: Vec<u8>,
) -> Result<RequestValues, BodyError> {
    let json_parts: Vec<&str> = hook
        .parse_parameters_as_json
        .iter()
        .filter(|a| a.source == params::Source::Payload)
        .map(|a| a.name.as_str())
        .collect();
    let content_type = hook.incoming_payload_content_type.as_deref();
    let mut rv = RequestValues::build(content_type, &json_parts, method, remote_addr, headers, raw_query, body)?;
    params::apply_parse_parameters_as_json(&hook.parse_parameters_as_json, &mut rv)?;
    Ok(rv)
}

/// The decisions that need the daemon's state are passed in as closures so this stays pure:
/// `seen(key)` asks the idempotency window about the delivery's [`Hook::dedup_key`], and
/// `made_up_id()` names a delivery whose sender gave no id (see [`MadeUpIds`]).
pub fn decide(
    hook: &Hook,
    mut req: Request<'_>,
    runner: &RunnerConfig,
    seen: impl FnOnce(&str) -> bool,
    made_up_id: impl FnOnce() -> String,
) -> Decision {
    let def = &hook.def;
    let source = req.ip.to_string();
    let mut d = Decision {
        record: DeliveryRecord {
            delivery: String::new(),
            event: None,
            hook: def.id.clone(),
            message: String::new(),
            outcome: Verdict::Rejected,
            provider: def.provider.clone(),
            replay: false,
            run: None,
            source: source.clone(),
            status: 0,
            summary: None,
            // Until the provider's check runs.
            verification: if hook.provider.is_some() { Verification::NotChecked } else { Verification::None },
            published: None,
        },
        verification_detail: if hook.provider.is_some() {
            "not checked: refused before the signature check".to_string()
        } else {
            "the hook has no provider: no signature to check".to_string()
        },
        rule: None,
        response: None,
        spec: None,
        dedup_key: String::new(),
        signature_failure: None,
        detail: None,
        topic_event: None,
        retain: false,
    };
    let finish = |mut d: Decision, status: u16, resp: Response, message: &str| -> Decision {
        d.record.status = status;
        d.record.message = message.to_string();
        d.response = Some(with_flag_headers(def, resp));
        d
    };
    if !def.allows_method(req.method) {
        // adnanh answers 405 with an empty body; we add the Allow header RFC 9110 asks for.
        let allow = def.http_methods.join(", ");
        return finish(d, 405, plain(405, "").with_owned("Allow", allow), "method not allowed for this hook");
    }
    if !def.allowed_ips.is_empty() && !def.allowed_ips.iter().any(|c| c.contains(req.ip)) {
        return finish(d, 403, Response::error(403, "address not allowed"), "address not allowed");
    }
    // The signature is checked over the raw bytes before anything parses them.
    let mut delivery = None;
    if let Some(p) = &hook.provider {
        let incoming = Incoming { headers: req.headers, body: &req.body, now_unix: req.now_unix };
        match providers::verify(p, &hook.provider_secrets, &incoming) {
            Ok(v) => {
                d.record.verification = Verification::Ok;
                let n = hook.provider_secrets.len();
                d.verification_detail = format!("{} signature matches secret {} of {n}", p.name(), v.secret_index + 1);
                d.record.event = v.event;
                delivery = v.delivery_id;
            }
            Err(e) => {
                d.record.verification = Verification::Failed;
                d.verification_detail = verification_words(&e, hook.provider_secrets.len());
                d.signature_failure = Some(e.metric_reason());
                d.detail = def.provider.as_ref().map(|p| format!("provider {p:?} signature check"));
                let msg = e.to_string();
                return finish(d, e.status(), Response::error(e.status(), &msg), &msg);
            }
        }
    }
    d.record.delivery = match req.replay_of {
        Some(id) => id.to_string(),
        None => delivery.or_else(|| header_delivery_id(req.headers)).unwrap_or_else(made_up_id),
    };
    d.dedup_key = hook.dedup_key(&d.record.delivery, &req.body);
    if matches!(hook.provider, Some(Provider::Slack { .. })) && d.record.event.as_deref() == Some("url_verification") {
        // Slack checks a new Events API URL with a signed `url_verification` request and wants
        // its `challenge` back. Not a delivery: nothing runs, nothing goes to the topic.
        let challenge = serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|v| v.get("challenge").and_then(Value::as_str).map(str::to_string));
        if let Some(challenge) = challenge {
            d.record.outcome = Verdict::Ignored;
            let body = json!({ "challenge": challenge });
            return finish(d, 200, Response::json(200, &body), "slack url_verification answered");
        }
    }
    let duplicate = |mut d: Decision| {
        d.record.outcome = Verdict::Duplicate;
        let body = json!({ "duplicate": true, "delivery": d.record.delivery, "hook": def.id });
        finish(d, 200, Response::json(200, &body), "duplicate delivery")
    };
    // A provider's delivery id is vouched for by its signature, so a repeat is answered before
    // the body is parsed. Without a provider the id header is only the sender's word until the
    // trigger rule (which holds any signature check) is true: an unsigned request reusing an
    // accepted id gets the rule's answer, not "duplicate".
    let mut seen = Some(seen);
    let mut repeated = |delivery: &str| seen.take().is_some_and(|f| f(delivery));
    if hook.provider.is_some() && repeated(&d.dedup_key) {
        return duplicate(d);
    }
    let remote = std::net::SocketAddr::new(req.ip, req.port).to_string();
    let headers = req.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
    // Nothing reads the raw body after this: it moves into the request values.
    let rv = match request_values(def, req.method, &remote, headers, req.query, std::mem::take(&mut req.body)) {
        Ok(rv) => rv,
        Err(e) => {
            let msg = e.to_string();
            return finish(d, e.status(), Response::error(e.status(), &msg), &msg);
        }
    };
    let mut passed: Vec<String> = Vec::new();
    let ignored = |mut d: Decision, msg: String| {
        d.record.outcome = Verdict::Ignored;
        d.rule = Some(msg.clone());
        let body = json!({ "ignored": msg, "delivery": d.record.delivery, "hook": def.id });
        finish(d, 202, Response::json(202, &body), &msg)
    };
    if !def.events.is_empty() {
        let ev = d.record.event.clone().unwrap_or_default();
        if !def.events.iter().any(|e| e == &ev || e == "*") {
            return ignored(d, format!("event {ev:?} is not one of this hook's events"));
        }
        passed.push(format!("event {ev:?} is one of the hook's events"));
    }
    if !def.branches.is_empty() {
        let git_ref = rv.payload().get("ref").and_then(|r| r.as_str()).unwrap_or_default();
        let branch = git_ref.strip_prefix("refs/heads/").unwrap_or(&git_ref);
        if !def.branches.iter().any(|b| b == branch) {
            return ignored(d, format!("branch {branch:?} is not one of this hook's branches"));
        }
        passed.push(format!("branch {branch:?} is one of the hook's branches"));
    }
    if let Some(rule) = &def.trigger_rule {
        match rules::evaluate(rule, &rv, &hook.rule_secrets, def.trigger_signature_soft_failures) {
            Ok(true) => passed.push("trigger-rule holds".to_string()),
            Ok(false) => {
                d.record.outcome = Verdict::Mismatch;
                // Worked out again only for a refusal, in words (see `rules::explain`).
                d.rule = Some(format!(
                    "trigger-rule does not hold: {}",
                    rules::explain(rule, &rv, &hook.rule_secrets, &hook.rule_secret_headers)
                ));
                let status = def.trigger_rule_mismatch_http_response_code.unwrap_or(200);
                // Which part failed, for the log (no value or secret in it).
                d.detail = Some(rules::why_false(rule, &rv, &hook.rule_secrets, def.trigger_signature_soft_failures));
                return finish(
                    d,
                    status,
                    plain(status, ADNANH_RULES_NOT_SATISFIED),
                    "trigger rules were not satisfied",
                );
            }
            Err(RuleError::Signature { empty_payload }) => {
                // adnanh answers 500 here; a bad signature is the sender's problem, not ours.
                d.record.verification = Verification::Failed;
                d.verification_detail = "wrong signature: a payload-hmac trigger rule does not match".into();
                d.rule = Some("trigger-rule: its payload-hmac signature check failed".into());
                d.signature_failure = Some("mismatch");
                d.detail = Some(rules::why_false(rule, &rv, &hook.rule_secrets, def.trigger_signature_soft_failures));
                let msg = if empty_payload {
                    "invalid payload signature on empty payload"
                } else {
                    "invalid payload signature"
                };
                return finish(d, 403, Response::error(403, msg), msg);
            }
            Err(e) => {
                let msg = e.to_string();
                return finish(d, 500, Response::error(500, &msg), &msg);
            }
        }
    }
    if repeated(&d.dedup_key) {
        return duplicate(d);
    }
    if !passed.is_empty() {
        d.rule = Some(passed.join("; "));
    }
    accept(hook, d, &rv, runner)
}

/// An accepted delivery: its summary, what goes to the hook's topic, its run and its answer.
fn accept(hook: &Hook, mut d: Decision, rv: &RequestValues, runner: &RunnerConfig) -> Decision {
    let def = &hook.def;
    let r = &mut d.record;
    r.outcome = Verdict::Accepted;
    let facts = Facts {
        hook: &def.id,
        provider: def.provider.as_deref(),
        event: r.event.as_deref(),
        delivery: Some(&r.delivery),
        source: &r.source,
    };
    let summary = summarize(&facts, rv.payload());
    d.retain = def.retain;
    d.topic_event = match def.publish {
        PublishMode::None => None,
        PublishMode::Summary => Some(summary.clone()),
        PublishMode::Full => {
            let mut full = summary.clone();
            full["payload"] = rv.payload().to_value().into_owned();
            Some(full)
        }
    };
    if let Some(cmd) = &def.execute_command {
        let mut spec = run_spec(def, cmd, rv, &r.delivery, r.event.as_deref(), runner);
        spec.withheld_env = hook.withheld_env.clone();
        d.spec = Some(spec);
    }
    d.response = if def.include_command_output_in_response && def.execute_command.is_some() {
        None // answered when the run ends
    } else if hook.provider.is_some() {
        Some(Response::json(
            202,
            &json!({ "status": "accepted", "delivery": r.delivery, "hook": def.id, "event": r.event }),
        ))
    } else {
        Some(success(def, def.response_message.as_deref().unwrap_or("").as_bytes()))
    };
    r.status = d.response.as_ref().map_or(0, |r| r.status);
    r.message = "accepted".to_string();
    r.summary = Some(summary);
    d
}

/// The run a delivery starts: argv and environment from the hook's parameters, never a shell.
fn run_spec(
    def: &HookDef,
    cmd: &str,
    rv: &RequestValues,
    delivery: &str,
    event: Option<&str>,
    runner: &RunnerConfig,
) -> RunSpec {
    let value = |a: &Argument| params::extract(a, rv);
    // adnanh passes a missing argument as an empty string (so positions stay put) and leaves a
    // missing variable or file out.
    let args = def.pass_arguments_to_command.iter().map(|a| value(a).unwrap_or_default()).collect();
    let mut env: Vec<(String, String)> =
        def.pass_environment_to_command.iter().filter_map(|a| value(a).ok().map(|v| (a.env_var(), v))).collect();
    if let Some(e) = event {
        env.push(("HOOKCAST_EVENT".into(), e.into()));
    }
    let files = def
        .pass_file_to_command
        .iter()
        .filter_map(|a| params::file_contents(a, rv).ok().map(|c| (a.file_env_var(), c)))
        .collect();
    let mode = match def.concurrency.unwrap_or(Concurrency::Coalesce) {
        Concurrency::Coalesce => Mode::Coalesce,
        Concurrency::Queue => Mode::Queue { max_queued: runner.max_queued },
        Concurrency::Parallel => Mode::Parallel { max: runner.max_parallel, max_queued: runner.max_queued },
    };
    RunSpec {
        hook: def.id.clone(),
        command: def.command_path().map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|| cmd.to_string()),
        args,
        env,
        files,
        cwd: def.command_working_directory.as_ref().map(Into::into),
        timeout: def.timeout_secs.map_or(runner.timeout, Duration::from_secs),
        mode,
        delivery: delivery.to_string(),
        capture: def.include_command_output_in_response,
        inherit_env: def.inherit_environment,
        withheld_env: Vec::new(),
    }
}

/// adnanh's `-header` flags (`hookcast webhook`), set as Go's `Header.Set` does: replacing a
/// field of the same name (the default Content-Type included).
fn with_flag_headers(def: &HookDef, mut r: Response) -> Response {
    for (name, value) in &def.flag_headers {
        r.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        r.headers.push((name.clone().into(), value.clone()));
    }
    r
}

/// adnanh's success answer: its status, the hook's `response-headers` (over the `-header`
/// flags), and a body.
fn success(def: &HookDef, body: &[u8]) -> Response {
    let mut r = Response::new(def.success_http_response_code, "text/plain; charset=utf-8", body.to_vec());
    r = with_flag_headers(def, r);
    for (name, value) in &def.response_headers {
        if name.eq_ignore_ascii_case("content-type")
            || def.flag_headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            r.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        }
        r.headers.push((name.clone().into(), value.clone()));
    }
    r
}

/// The response for a hook that waited for its run (adnanh's `include-command-output-in-response`).
pub fn run_response(def: &HookDef, succeeded: bool, output: &[u8]) -> Response {
    if succeeded {
        success(def, output)
    } else if def.include_command_output_in_response_on_error {
        with_flag_headers(def, plain(500, &String::from_utf8_lossy(output)))
    } else {
        with_flag_headers(def, plain(500, ADNANH_EXEC_ERROR))
    }
}

#[cfg(test)]
mod tests;
