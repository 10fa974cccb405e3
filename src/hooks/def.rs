//! Hook definitions in adnanh/webhook's `hooks.json` format (the `Hook` struct of its
//! `internal/hook/hook.go`), plus hookcast's own fields, parsed into a validated [`HookDef`].
//!
//! Every field adnanh reads is either read here or refused by name. What adnanh's decoder reads
//! leniently (numbers in string fields, names in another case, fields it does not know, unknown
//! status codes) is read the same way with a warning ([`crate::hooks::coerce`], `warnings`); a
//! field that looks like a misspelt one stays an error with its JSON path, since under adnanh it
//! silently disables a check. Regexes, CIDRs and environment variable names are checked at load
//! time, where adnanh finds most mistakes only when a request arrives. A hooks file must be JSON: YAML files and Go templates (adnanh's `-template`) are
//! refused with a message naming the file. The one function with I/O is [`load_hooks_file`]
//! (and [`crate::hooks::secret::SecretSource::resolve`], which reads a secret when the daemon loads).

use crate::auth::Cidr;
use crate::config::json::{at, check_fields, err, kind, ConfigError, Obj};
use crate::hooks::coerce::{ADNANH_FIELDS, HEADER_FIELDS, HOOKCAST_FIELDS, REFUSED_FIELDS};
use crate::hooks::params::{check_env_name, parse_argument, Argument, Source};
use crate::hooks::providers::Provider;
use crate::hooks::rules::{parse_rule, Rule};
use crate::hooks::secret::{parse_secret, SecretSource};
use crate::http::token::{is_token_byte, media_type};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Longest hook id, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// Longest `timeout`, in seconds (one week).
pub const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// Status codes Go's `net/http` has a `StatusText` for, from 200 up: adnanh answers 200 for any
/// other configured code (`writeHttpResponseCode`), and so does hookcast, with a warning.
const GO_STATUS_CODES: &[u16] = &[
    200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308, 400, 401, 402, 403, 404,
    405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 421, 422, 423, 424, 425, 426, 428, 429, 431,
    451, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
];

/// What an accepted delivery publishes to the hook's topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublishMode {
    /// The normalised summary (provider, event, repository, ref, sender, head commit).
    #[default]
    Summary,
    /// The summary and the whole payload.
    Full,
    /// Nothing (only `$deliveries` sees the delivery).
    None,
}

/// What makes two deliveries to a hook the same one (answered `{"duplicate":true}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DedupBy {
    /// The delivery id (the provider's, an id header's, or a made-up one).
    #[default]
    DeliveryId,
    /// The SHA-256 of the raw body: for senders that do not sign their delivery id (GitHub,
    /// Gitea, Bitbucket), so a captured request resent under a new id is still a repeat.
    Body,
}

/// What happens to a delivery that arrives while the hook's command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concurrency {
    /// One follow-up run with the newest payload.
    Coalesce,
    /// Every delivery runs, one after the other.
    Queue,
    /// Every delivery runs at once.
    Parallel,
}

/// One hook, validated.
#[derive(Debug, Clone)]
pub struct HookDef {
    /// `id`: the URL is `/hooks/{id}`.
    pub id: String,
    /// `execute-command`: the program to run (`argv[0]`); none only publishes.
    pub execute_command: Option<String>,
    /// `command-working-directory`: its working directory; a relative command is found there.
    pub command_working_directory: Option<String>,
    /// `response-message`: the body of the success response when output is not included.
    pub response_message: Option<String>,
    /// `response-headers`: headers added to the success response.
    pub response_headers: Vec<(String, String)>,
    /// `success-http-response-code`: status of a success (adnanh's default 200).
    pub success_http_response_code: u16,
    /// `incoming-payload-content-type`: parse the body as this type whatever the header says.
    pub incoming_payload_content_type: Option<String>,
    /// `http-methods`, upper case; empty allows every method (adnanh's default).
    pub http_methods: Vec<String>,
    /// `include-command-output-in-response`: wait for the command and answer with its output.
    pub include_command_output_in_response: bool,
    /// `include-command-output-in-response-on-error`: also answer with the output when it fails.
    pub include_command_output_in_response_on_error: bool,
    /// `pass-arguments-to-command`: `argv[1..]`.
    pub pass_arguments_to_command: Vec<Argument>,
    /// `pass-environment-to-command`: environment variables (`envname`, else `HOOK_` + name).
    pub pass_environment_to_command: Vec<Argument>,
    /// `pass-file-to-command`: values written to temporary files whose paths go in variables.
    pub pass_file_to_command: Vec<Argument>,
    /// `parse-parameters-as-json`: string values decoded as JSON objects before anything reads them.
    pub parse_parameters_as_json: Vec<Argument>,
    /// `trigger-rule`: none always triggers.
    pub trigger_rule: Option<Rule>,
    /// `trigger-rule-mismatch-http-response-code`: status when the rule is false (adnanh: 200).
    pub trigger_rule_mismatch_http_response_code: Option<u16>,
    /// `trigger-signature-soft-failures`: a bad signature inside an `or` only makes that branch false.
    pub trigger_signature_soft_failures: bool,
    /// hookcast: `provider`, the signature scheme checked before the rules (its name).
    pub provider: Option<String>,
    /// The provider with its settings (`allow_sha1`, replay window, generic HMAC's header…).
    pub provider_spec: Option<Provider>,
    /// hookcast: `secrets` of the provider, several while rotating.
    pub secrets: Vec<SecretSource>,
    /// hookcast: `events` accepted (provider event names); empty accepts all.
    pub events: Vec<String>,
    /// hookcast: `branches` accepted; empty accepts all.
    pub branches: Vec<String>,
    /// hookcast: `topic` the deliveries are published to.
    pub topic: Option<String>,
    /// hookcast: `publish`, what goes to the topic.
    pub publish: PublishMode,
    /// hookcast: `retain`, whether what goes to the topic becomes its retained state.
    pub retain: bool,
    /// hookcast: `allowed-ips`, client networks allowed to call the hook; empty allows all.
    pub allowed_ips: Vec<Cidr>,
    /// hookcast: `concurrency` of runs.
    pub concurrency: Option<Concurrency>,
    /// hookcast: `timeout` of a run, in seconds.
    pub timeout_secs: Option<u64>,
    /// hookcast: `dedup`, what identifies a repeated delivery.
    pub dedup: DedupBy,
    /// hookcast: `inherit-environment`, whether the command gets the daemon's environment (as
    /// adnanh gives it) under its own variables; defaults to true without a `provider`.
    pub inherit_environment: bool,
    /// adnanh's `-header name=value` flags (`hookcast webhook`): on every answer of the hook,
    /// unless `response-headers` sets the same name.
    pub flag_headers: Vec<(String, String)>,
    /// What was read differently from how it is written (adnanh's coercions), for `check` and
    /// the start's log.
    pub warnings: Vec<String>,
}

impl HookDef {
    /// Whether `method` may call the hook (every method when `http-methods` is empty).
    pub fn allows_method(&self, method: &str) -> bool {
        self.http_methods.is_empty() || self.http_methods.iter().any(|m| m == method)
    }

    /// The command as adnanh looks it up: joined to the working directory when it is relative
    /// and a directory is set, else as written (a bare name is then searched in `PATH`).
    pub fn command_path(&self) -> Option<PathBuf> {
        let cmd = Path::new(self.execute_command.as_deref()?);
        match &self.command_working_directory {
            Some(dir) if !cmd.is_absolute() => Some(Path::new(dir).join(cmd)),
            _ => Some(cmd.to_path_buf()),
        }
    }
}

/// Takes a field out of an object before it is wrapped in [`Obj`]; `null` counts as absent.
fn take(value: &mut Value, key: &str) -> Option<Value> {
    value.as_object_mut().and_then(|m| m.remove(key)).filter(|v| !v.is_null())
}

/// Checks a hook id: `[A-Za-z0-9._~-]` segments joined by `/`, as adnanh's `/hooks/{id:.*}`
/// route allows slashes; no empty, `.` or `..` segment.
fn check_id(id: &str, path: &str) -> Result<(), ConfigError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '~' | '-');
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != ".." && seg.chars().all(ok_char));
    if ok {
        Ok(())
    } else {
        err(
            path,
            format!(
                "hook id {id:?} is not URL-path-safe: 1 to {MAX_ID_LEN} of A-Z a-z 0-9 . _ ~ - with / between segments"
            ),
        )
    }
}

/// A status code field (a Go `int`: a float with no fraction decodes too). 0 means unset; a code
/// Go has no `StatusText` for is answered as 200, as adnanh does, with a warning.
fn status_code(v: Option<Value>, path: &str, warnings: &mut Vec<String>) -> Result<Option<u16>, ConfigError> {
    let Some(v) = v else { return Ok(None) };
    let n = match (v.as_i64(), v.as_f64()) {
        (Some(n), _) => n,
        (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e15 => f as i64,
        _ => return err(path, format!("expected a status code, found {}", kind(&v))),
    };
    match u16::try_from(n) {
        Ok(0) => Ok(None),
        Ok(code) if GO_STATUS_CODES.contains(&code) => Ok(Some(code)),
        _ => {
            warnings.push(format!(
                "{path}: {n} is not a status code adnanh/webhook knows: answered as 200, as adnanh does"
            ));
            Ok(Some(200))
        }
    }
}

fn arguments(o: &mut Obj, key: &str) -> Result<Vec<(String, Argument)>, ConfigError> {
    o.opt_list(key)?.into_iter().map(|(p, v)| Ok((p.clone(), parse_argument(v, &p)?))).collect()
}

/// Parses one hook object found at `path` (`hooks[0]`, `hooks.json[3]`).
pub fn parse_hook(mut value: Value, path: &str) -> Result<HookDef, ConfigError> {
    let known: Vec<&str> = ADNANH_FIELDS.iter().chain(HOOKCAST_FIELDS).copied().collect();
    // adnanh's leniencies first (case, ignored fields, scalars), so what remains is what
    // adnanh would refuse too, or a typo.
    let mut warnings = crate::hooks::coerce::coerce_hook(&mut value, path);
    check_fields(&value, path, &known, REFUSED_FIELDS)?;
    let trigger_rule_raw = take(&mut value, "trigger-rule");
    let success_raw = take(&mut value, "success-http-response-code");
    let mismatch_raw = take(&mut value, "trigger-rule-mismatch-http-response-code");
    let timeout_raw = take(&mut value, "timeout");
    let mut o = Obj::new(value, path)?;

    let id_path = o.at("id");
    let Some(id) = o.opt_str("id")? else { return err(&id_path, "missing") };
    check_id(&id, &id_path)?;
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    let execute_command = non_empty(o.opt_str("execute-command")?);
    let command_working_directory = non_empty(o.opt_str("command-working-directory")?);
    let response_message = o.opt_str("response-message")?;

    let mut response_headers = Vec::new();
    for (p, v) in o.opt_list("response-headers")? {
        check_fields(&v, &p, HEADER_FIELDS, &[])?;
        let mut h = Obj::new(v, &p)?;
        let name_path = h.at("name");
        let name = h.opt_str("name")?.unwrap_or_default();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return err(&name_path, format!("not a header name: {name:?}"));
        }
        let value_path = h.at("value");
        let value = h.opt_str("value")?.unwrap_or_default();
        if value.contains(['\r', '\n', '\0']) {
            return err(&value_path, "a header value cannot hold CR, LF or NUL");
        }
        h.finish()?;
        response_headers.push((name, value));
    }

    let success_http_response_code =
        status_code(success_raw, &o.at("success-http-response-code"), &mut warnings)?.unwrap_or(200);
    let trigger_rule_mismatch_http_response_code =
        status_code(mismatch_raw, &o.at("trigger-rule-mismatch-http-response-code"), &mut warnings)?;

    let ct_path = o.at("incoming-payload-content-type");
    let incoming_payload_content_type = non_empty(o.opt_str("incoming-payload-content-type")?);
    if let Some(ct) = &incoming_payload_content_type {
        // adnanh starts on it (and parses XML); the other hooks of the file must still serve.
        if media_type(ct).0.contains("xml") {
            warnings.push(format!(
                "{ct_path}: XML payloads ({ct:?}) are not supported by hookcast: every request to this hook is answered 415"
            ));
        }
    }

    let methods_path = o.at("http-methods");
    let mut http_methods = Vec::new();
    for (i, m) in o.opt_str_list("http-methods")?.unwrap_or_default().into_iter().enumerate() {
        let m = m.trim().to_ascii_uppercase();
        if m.is_empty() || !m.bytes().all(is_token_byte) {
            return err(&format!("{methods_path}[{i}]"), format!("not an HTTP method: {m:?}"));
        }
        if !http_methods.contains(&m) {
            http_methods.push(m);
        }
    }

    let include_command_output_in_response = o.opt_bool("include-command-output-in-response")?.unwrap_or(false);
    let include_command_output_in_response_on_error =
        o.opt_bool("include-command-output-in-response-on-error")?.unwrap_or(false);

    let pass_arguments_to_command =
        arguments(&mut o, "pass-arguments-to-command")?.into_iter().map(|(_, a)| a).collect();
    let mut pass_environment_to_command = Vec::new();
    for (p, a) in arguments(&mut o, "pass-environment-to-command")? {
        check_env_name(&a.env_var(), &p).or_else(|e| err(&p, format!("{} (set envname)", e.message)))?;
        pass_environment_to_command.push(a);
    }
    let mut pass_file_to_command = Vec::new();
    for (p, a) in arguments(&mut o, "pass-file-to-command")? {
        check_env_name(&a.file_env_var(), &p).or_else(|e| err(&p, format!("{} (set envname)", e.message)))?;
        pass_file_to_command.push(a);
    }
    let mut parse_parameters_as_json = Vec::new();
    for (p, a) in arguments(&mut o, "parse-parameters-as-json")? {
        if !matches!(a.source, Source::Header | Source::Url | Source::Query | Source::Payload) {
            return err(&at(&p, "source"), "only header, url, query and payload values can be parsed as JSON");
        }
        parse_parameters_as_json.push(a);
    }

    let trigger_rule = match trigger_rule_raw {
        Some(v) => Some(parse_rule(v, &o.at("trigger-rule"))?),
        None => None,
    };
    let trigger_signature_soft_failures = o.opt_bool("trigger-signature-soft-failures")?.unwrap_or(false);

    // hookcast's fields.
    let provider_path = o.at("provider");
    let provider_spec = match o.take_raw("provider") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_provider(v, &provider_path)?),
    };
    let provider = provider_spec.as_ref().map(|p| p.name().to_string());
    let secrets_path = o.at("secrets");
    let secrets =
        o.opt_list("secrets")?.into_iter().map(|(p, v)| parse_secret(v, &p)).collect::<Result<Vec<_>, _>>()?;
    match (&provider, secrets.is_empty()) {
        (Some(p), true) => {
            return err(&secrets_path, format!("missing: provider {p:?} verifies with at least one secret"))
        }
        (None, false) => {
            return err(
                &secrets_path,
                "secrets are only used by a provider: name one in provider (or use a payload-hmac-* rule)",
            )
        }
        _ => {}
    }
    let list = |o: &mut Obj, key: &str| -> Result<Vec<String>, ConfigError> {
        let path = o.at(key);
        let items = o.opt_str_list(key)?.unwrap_or_default();
        match items.iter().position(String::is_empty) {
            Some(i) => err(&format!("{path}[{i}]"), "empty"),
            None => Ok(items),
        }
    };
    let events = list(&mut o, "events")?;
    let branches = list(&mut o, "branches")?;
    let topic_path = o.at("topic");
    let topic = o.opt_str("topic")?;
    if let Some(t) = &topic {
        crate::topic::validate_topic(t).or_else(|e| err(&topic_path, format!("{e}: {t:?}")))?;
    }
    let publish_path = o.at("publish");
    let publish = match o.opt_str("publish")?.as_deref() {
        None | Some("summary") => PublishMode::Summary,
        Some("full") => PublishMode::Full,
        Some("none") => PublishMode::None,
        Some(other) => return err(&publish_path, format!("unknown publish mode {other:?} (summary, full, none)")),
    };
    let retain_path = o.at("retain");
    let retain = o.opt_bool("retain")?.unwrap_or(false);
    if retain && publish == PublishMode::None {
        return err(&retain_path, "publish is none: nothing goes to the topic to retain");
    }
    let allowed_ips = o.opt_cidr_list("allowed-ips")?;
    let concurrency_path = o.at("concurrency");
    let concurrency = match o.opt_str("concurrency")?.as_deref() {
        None => None,
        Some("coalesce") => Some(Concurrency::Coalesce),
        Some("queue") => Some(Concurrency::Queue),
        Some("parallel") => Some(Concurrency::Parallel),
        Some(other) => {
            return err(&concurrency_path, format!("unknown concurrency {other:?} (coalesce, queue, parallel)"))
        }
    };
    let dedup_path = o.at("dedup");
    let dedup = match o.opt_str("dedup")?.as_deref() {
        None | Some("delivery-id") => DedupBy::DeliveryId,
        Some("body") => DedupBy::Body,
        Some(other) => return err(&dedup_path, format!("unknown dedup {other:?} (delivery-id, body)")),
    };
    let timeout_secs = match timeout_raw {
        None => None,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_TIMEOUT_SECS).contains(&n) => Some(n),
            _ => {
                return err(&o.at("timeout"), format!("expected whole seconds from 1 to {MAX_TIMEOUT_SECS}, found {v}"))
            }
        },
    };
    // adnanh hands its own environment to every command; a hook that names a `provider` is
    // hookcast's format, where children get an explicit environment unless the hook asks.
    let inherit_environment = o.opt_bool("inherit-environment")?.unwrap_or(provider_spec.is_none());
    o.finish()?;

    Ok(HookDef {
        id,
        execute_command,
        command_working_directory,
        response_message,
        response_headers,
        success_http_response_code,
        incoming_payload_content_type,
        http_methods,
        include_command_output_in_response,
        include_command_output_in_response_on_error,
        pass_arguments_to_command,
        pass_environment_to_command,
        pass_file_to_command,
        parse_parameters_as_json,
        trigger_rule,
        trigger_rule_mismatch_http_response_code,
        trigger_signature_soft_failures,
        provider,
        provider_spec,
        secrets,
        events,
        branches,
        topic,
        publish,
        retain,
        allowed_ips,
        concurrency,
        timeout_secs,
        dedup,
        inherit_environment,
        flag_headers: Vec::new(),
        warnings,
    })
}

/// `provider`: a name (`"github"`) or an object with settings:
/// `{"name": "github", "allow_sha1": true}`, `{"name": "stripe", "tolerance_secs": 600}`,
/// `{"name": "hmac", "header": "X-Signature", "algorithm": "sha512", "encoding": "base64", "prefix": ""}`.
fn parse_provider(v: Value, path: &str) -> Result<Provider, ConfigError> {
    use crate::hooks::providers::{Algorithm, Encoding};
    let (name, settings) = match v {
        Value::String(name) => (name, None),
        other => {
            let mut o = Obj::new(other, path)?;
            let Some(name) = o.opt_str("name")? else {
                return err(&o.at("name"), "missing: the provider's name");
            };
            (name, Some(o))
        }
    };
    let Some(mut p) = Provider::parse(&name) else {
        return err(path, format!("unknown provider {name:?} (github, gitlab, gitea, forgejo, bitbucket, stripe, slack, standard-webhooks, hmac)"));
    };
    let Some(mut o) = settings else { return Ok(p) };
    match &mut p {
        Provider::Github { allow_sha1 } => *allow_sha1 = o.opt_bool("allow_sha1")?.unwrap_or(false),
        Provider::Stripe { tolerance_secs }
        | Provider::Slack { tolerance_secs }
        | Provider::StandardWebhooks { tolerance_secs } => {
            *tolerance_secs = o.num("tolerance_secs", *tolerance_secs, 1, 86_400)?;
        }
        Provider::Hmac(spec) => {
            if let Some(h) = o.opt_str("header")? {
                if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                    return err(&o.at("header"), format!("not a header name: {h:?}"));
                }
                spec.header = h.to_ascii_lowercase();
            }
            if let Some(a) = o.opt_str("algorithm")? {
                spec.algorithm = Algorithm::parse(&a).ok_or_else(|| ConfigError {
                    path: o.at("algorithm"),
                    message: format!("unknown algorithm {a:?} (sha1, sha256, sha512)"),
                })?;
            }
            if let Some(e) = o.opt_str("encoding")? {
                spec.encoding = Encoding::parse(&e).ok_or_else(|| ConfigError {
                    path: o.at("encoding"),
                    message: format!("unknown encoding {e:?} (hex, base64)"),
                })?;
            }
            if let Some(pfx) = o.opt_str("prefix")? {
                spec.prefix = pfx;
            }
        }
        Provider::Gitlab | Provider::Gitea | Provider::Forgejo | Provider::Bitbucket => {}
    }
    o.finish()?;
    Ok(p)
}

/// Parses hooks given with their paths (as [`Obj::opt_list`] returns them), refusing a repeated
/// id with both places named.
pub fn parse_hook_list(items: Vec<(String, Value)>) -> Result<Vec<HookDef>, ConfigError> {
    parse_hooks(items, false)
}

/// [`parse_hook_list`]; with `first_wins`, a repeated id is left out with a warning instead, as
/// adnanh starts on a hooks file that repeats an id and answers with the first.
fn parse_hooks(items: Vec<(String, Value)>, first_wins: bool) -> Result<Vec<HookDef>, ConfigError> {
    let mut seen: HashMap<String, (String, usize)> = HashMap::new();
    let mut hooks: Vec<HookDef> = Vec::with_capacity(items.len());
    for (path, v) in items {
        let hook = parse_hook(v, &path)?;
        let id_path = at(&path, "id");
        if let Some((first, i)) = seen.get(&hook.id) {
            let msg = format!("duplicate hook id {:?} (first at {first})", hook.id);
            if !first_wins {
                return err(&id_path, msg);
            }
            let w = format!("{id_path}: {msg}: left out, as adnanh/webhook answers with the first");
            hooks[*i].warnings.push(w);
            continue;
        }
        seen.insert(hook.id.clone(), (id_path, hooks.len()));
        hooks.push(hook);
    }
    Ok(hooks)
}

/// Parses the text of an adnanh/webhook hooks file (a JSON list of hooks); errors are located as
/// `{file_label}[i].field`.
pub fn parse_hooks_file(text: &str, file_label: &str) -> Result<Vec<HookDef>, ConfigError> {
    parse_hooks_file_as(text, file_label, false)
}

/// [`parse_hooks_file`]; with `braces_literal` (`hookcast webhook` without `-template`, where
/// adnanh reads `{{` as text), a `{{` is text with a warning instead of a suspected template.
pub fn parse_hooks_file_as(text: &str, file_label: &str, braces_literal: bool) -> Result<Vec<HookDef>, ConfigError> {
    let braces = text.find("{{").map(|pos| text[..pos].matches('\n').count() + 1);
    if let (Some(line), false) = (braces, braces_literal) {
        return err(
            file_label,
            format!(
                "line {line}: \"{{{{\" looks like a Go template (adnanh/webhook's -template), which hookcast does not run; \
                 take secrets from {{\"env\": NAME}} / {{\"file\": PATH}} / {{\"credential\": NAME}} instead \
                 (a literal \"{{{{\" in JSON can be written \"\\u007b{{\")"
            ),
        );
    }
    let body = text.trim_start_matches('\u{feff}').trim_start();
    match body.chars().next() {
        None => return err(file_label, "empty hooks file (expected a JSON list of hooks)"),
        Some('[' | '{') => {}
        Some(_) => {
            return err(
                file_label,
                "not JSON: hookcast reads hooks files as JSON only (YAML hooks files are not supported; convert it, e.g. with `yq -o=json`)",
            )
        }
    }
    let value: Value = serde_json::from_str(body).or_else(|e| err(file_label, format!("invalid JSON: {e}")))?;
    let Value::Array(items) = value else {
        return err(file_label, format!("expected a JSON list of hooks, found {}", kind(&value)));
    };
    let mut hooks =
        parse_hooks(items.into_iter().enumerate().map(|(i, v)| (format!("{file_label}[{i}]"), v)).collect(), true)?;
    if let (Some(line), Some(first)) = (braces, hooks.first_mut()) {
        first.warnings.push(format!(
            "{file_label}: line {line}: \"{{{{\" read as text, as adnanh/webhook does without -template"
        ));
    }
    Ok(hooks)
}

/// Reads and parses a hooks file (the one function here that touches the file system).
pub fn load_hooks_file(path: &Path) -> Result<Vec<HookDef>, ConfigError> {
    load_hooks_file_as(path, false)
}

/// [`load_hooks_file`] with [`parse_hooks_file_as`]'s `braces_literal`.
pub fn load_hooks_file_as(path: &Path, braces_literal: bool) -> Result<Vec<HookDef>, ConfigError> {
    let label = path.display().to_string();
    let text = std::fs::read_to_string(path).or_else(|e| err(&label, format!("cannot read: {e}")))?;
    parse_hooks_file_as(&text, &label, braces_literal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hooks::body::RequestValues;

    /// A hook may answer any of these: each gets its own reason phrase, never `Unknown`
    /// (responses said `201 Unknown` and `303 Unknown`, issue 20).
    #[test]
    fn every_status_a_hook_may_answer_has_its_reason_phrase() {
        use crate::http::response::reason;
        for &code in GO_STATUS_CODES {
            let own = code % 100 == 0 || reason(code) != reason(code / 100 * 100);
            assert!(own, "{code} has no reason phrase of its own: {:?}", reason(code));
        }
        assert_eq!((reason(201), reason(303), reason(421)), ("Created", "See Other", "Misdirected Request"));
    }
    use crate::hooks::params::extract;
    use crate::hooks::rules::{evaluate, secret_sources, HmacAlgo, MatchRule, RuleError, Secrets};
    use serde_json::json;

    fn hook(v: Value) -> HookDef {
        parse_hook(v, "hooks[0]").unwrap()
    }

    fn error_of(v: Value) -> String {
        parse_hook(v, "hooks[0]").unwrap_err().to_string()
    }

    #[test]
    fn minimal_hook_gets_adnanh_defaults() {
        let h = hook(json!({"id": "redeploy"}));
        assert_eq!(h.id, "redeploy");
        assert_eq!(h.success_http_response_code, 200);
        assert!(h.http_methods.is_empty() && h.allows_method("GET") && h.allows_method("POST"));
        assert!(h.trigger_rule.is_none() && h.trigger_rule_mismatch_http_response_code.is_none());
        assert!(h.execute_command.is_none() && h.command_path().is_none());
        assert_eq!(h.publish, PublishMode::Summary);
        assert!(!h.include_command_output_in_response && !h.trigger_signature_soft_failures);
    }

    #[test]
    fn adnanh_hooks_table() {
        // The hook of adnanh's README / docs/Hook-Examples.md, field by field.
        let h = hook(json!({
            "id": "webhook",
            "execute-command": "redeploy.sh",
            "command-working-directory": "/home/adnan/go",
            "response-message": "I got the payload!",
            "response-headers": [{"name": "Access-Control-Allow-Origin", "value": "*"}],
            "success-http-response-code": 202,
            "incoming-payload-content-type": "application/json",
            "http-methods": [" post ", "Put", "POST"],
            "include-command-output-in-response": true,
            "include-command-output-in-response-on-error": true,
            "pass-arguments-to-command": [
                {"source": "payload", "name": "head_commit.id"},
                {"source": "payload", "name": "pusher.name"},
                {"source": "string", "name": "--force"}
            ],
            "pass-environment-to-command": [{"source": "payload", "name": "pusher.email", "envname": "PUSHER_EMAIL"}],
            "pass-file-to-command": [{"source": "payload", "name": "binary", "envname": "BIN_FILE", "base64decode": true}],
            "parse-parameters-as-json": [{"source": "payload", "name": "payload"}],
            "trigger-rule": {"match": {"type": "payload-hmac-sha1", "secret": "mysecret", "parameter": {"source": "header", "name": "X-Hub-Signature"}}},
            "trigger-rule-mismatch-http-response-code": 400,
            "trigger-signature-soft-failures": true
        }));
        assert_eq!(h.execute_command.as_deref(), Some("redeploy.sh"));
        assert_eq!(h.command_path(), Some(PathBuf::from("/home/adnan/go/redeploy.sh")));
        assert_eq!(h.response_message.as_deref(), Some("I got the payload!"));
        assert_eq!(h.response_headers, [("Access-Control-Allow-Origin".to_string(), "*".to_string())]);
        assert_eq!(h.success_http_response_code, 202);
        assert_eq!(h.incoming_payload_content_type.as_deref(), Some("application/json"));
        assert_eq!(h.http_methods, ["POST", "PUT"]);
        assert!(!h.allows_method("GET"));
        assert!(h.include_command_output_in_response && h.include_command_output_in_response_on_error);
        assert_eq!(h.pass_arguments_to_command.len(), 3);
        assert_eq!(
            h.pass_arguments_to_command[2],
            Argument { source: Source::String, name: "--force".into(), env_name: None, base64_decode: false }
        );
        assert_eq!(h.pass_environment_to_command[0].env_var(), "PUSHER_EMAIL");
        assert_eq!(h.pass_file_to_command[0].file_env_var(), "BIN_FILE");
        assert!(h.pass_file_to_command[0].base64_decode);
        assert_eq!(h.parse_parameters_as_json[0].name, "payload");
        assert!(matches!(
            &h.trigger_rule,
            Some(Rule::Match(MatchRule::PayloadHmac { algo: HmacAlgo::Sha1, secret: SecretSource::Inline(s), .. })) if s == "mysecret"
        ));
        assert_eq!(h.trigger_rule_mismatch_http_response_code, Some(400));
        assert!(h.trigger_signature_soft_failures);
        assert!(!format!("{h:?}").contains("mysecret"), "Debug must not print secrets");
    }

    #[test]
    fn hookcast_fields() {
        let h = hook(json!({
            "id": "team/site.deploy",
            "execute-command": "/usr/local/bin/deploy",
            "command-working-directory": "/srv",
            "provider": "github",
            "secrets": ["inline", {"env": "GH_SECRET"}, {"file": "/etc/hookcast/gh"}, {"credential": "gh-secret"}],
            "events": ["push"],
            "branches": ["main"],
            "topic": "deploys/site",
            "publish": "full",
            "allowed-ips": ["192.30.252.0/22", "2a0a:a440::/29"],
            "concurrency": "queue",
            "timeout": 600,
            "dedup": "body",
            "success-http-response-code": 0,
            "trigger-rule-mismatch-http-response-code": 0
        }));
        assert_eq!(h.command_path(), Some(PathBuf::from("/usr/local/bin/deploy")));
        assert_eq!(h.provider.as_deref(), Some("github"));
        assert_eq!(
            h.secrets,
            [
                SecretSource::Inline("inline".into()),
                SecretSource::Env("GH_SECRET".into()),
                SecretSource::File("/etc/hookcast/gh".into()),
                SecretSource::Credential("gh-secret".into())
            ]
        );
        assert_eq!(
            (h.events.as_slice(), h.branches.as_slice()),
            (&["push".to_string()][..], &["main".to_string()][..])
        );
        assert_eq!(h.topic.as_deref(), Some("deploys/site"));
        assert_eq!(h.publish, PublishMode::Full);
        assert_eq!(h.allowed_ips.len(), 2);
        assert_eq!(h.concurrency, Some(Concurrency::Queue));
        assert_eq!(h.timeout_secs, Some(600));
        assert_eq!(h.dedup, DedupBy::Body);
        assert_eq!(h.success_http_response_code, 200, "0 means unset, as in adnanh");
        assert_eq!(h.trigger_rule_mismatch_http_response_code, None);
    }

    #[test]
    fn xml_content_type_is_a_warning_and_415_at_request_time() {
        let h = hook(json!({"id": "x", "incoming-payload-content-type": "application/xml"}));
        assert_eq!(h.warnings, ["hooks[0].incoming-payload-content-type: XML payloads (\"application/xml\") are not supported by hookcast: every request to this hook is answered 415"]);
    }

    #[test]
    fn regression_unknown_status_codes_answer_200_with_a_warning_as_adnanh() {
        // adnanh's writeHttpResponseCode: no http.StatusText for the code, so 200 and a log line.
        let h = hook(
            json!({"id": "x", "success-http-response-code": 299, "trigger-rule-mismatch-http-response-code": 999}),
        );
        assert_eq!(h.success_http_response_code, 200);
        assert_eq!(h.trigger_rule_mismatch_http_response_code, Some(200));
        assert_eq!(
            h.warnings,
            [
                "hooks[0].success-http-response-code: 299 is not a status code adnanh/webhook knows: answered as 200, as adnanh does",
                "hooks[0].trigger-rule-mismatch-http-response-code: 999 is not a status code adnanh/webhook knows: answered as 200, as adnanh does",
            ]
        );
        let h = hook(
            json!({"id": "x", "success-http-response-code": 202.0, "trigger-rule-mismatch-http-response-code": 100}),
        );
        assert_eq!((h.success_http_response_code, h.trigger_rule_mismatch_http_response_code), (202, Some(200)));
    }

    #[test]
    fn regression_numbers_in_string_fields_are_read_as_adnanh_reads_them() {
        use crate::hooks::rules::MatchRule;
        let h = hook(
            json!({"id": "x", "trigger-rule": {"match": {"type": "value", "value": 1, "parameter": {"source": "payload", "name": "n"}}}}),
        );
        let Some(Rule::Match(MatchRule::Value { value, .. })) = &h.trigger_rule else { panic!("{:?}", h.trigger_rule) };
        assert_eq!(value, "1");
        assert_eq!(h.warnings.len(), 1);
        assert!(
            h.warnings[0].starts_with("hooks[0].trigger-rule.match.value: 1 is not a string; read as \"1\""),
            "{:?}",
            h.warnings
        );
        assert!(hook(json!({"id": "x"})).warnings.is_empty());
    }

    #[test]
    fn environment_is_inherited_by_adnanh_hooks_and_not_by_provider_hooks() {
        assert!(hook(json!({"id": "x"})).inherit_environment);
        assert!(!hook(json!({"id": "x", "inherit-environment": false})).inherit_environment);
        assert!(!hook(json!({"id": "x", "provider": "github", "secrets": ["s"]})).inherit_environment);
        assert!(
            hook(json!({"id": "x", "provider": "github", "secrets": ["s"], "inherit-environment": true}))
                .inherit_environment
        );
    }

    #[test]
    fn fields_adnanh_ignores_are_ignored_with_a_warning_unless_they_look_like_a_typo() {
        let h = hook(json!({
            "id": "x",
            "description": "redeploys the site",
            "_comment": {"any": "thing"},
            "response-headers": [{"name": "A", "value": "b", "note": "n"}],
            "trigger-rule": {"and": [
                {"match": {"type": "value", "value": "v", "comment": "c",
                           "parameter": {"source": "url", "name": "q", "doc": "d"}}},
                {"match": {"type": "ip-whitelist", "ip-range": "10.0.0.0/8", "parameter": {"source": "url", "name": "q"}}}
            ]}
        }));
        assert_eq!(h.response_headers, [("A".to_string(), "b".to_string())]);
        let paths: Vec<&str> = h.warnings.iter().map(|w| w.split(':').next().unwrap()).collect();
        assert_eq!(
            paths,
            [
                "hooks[0]._comment",
                "hooks[0].description",
                "hooks[0].response-headers[0].note",
                "hooks[0].trigger-rule.and[0].match.comment",
                "hooks[0].trigger-rule.and[0].match.parameter.doc",
                "hooks[0].trigger-rule.and[1].match.parameter",
            ]
        );
        assert!(h.warnings[5].ends_with(
            "not read by match type \"ip-whitelist\", ignored as adnanh/webhook ignores it (it reads ip-range)"
        ));
        assert!(
            h.warnings[1].ends_with("unknown field, ignored as adnanh/webhook ignores it (remove it to silence this)")
        );
    }

    #[test]
    fn errors_name_their_path() {
        let cases = [
            (json!({}), "hooks[0].id: missing"),
            (json!({"id": "a b"}), "hooks[0].id: hook id \"a b\" is not URL-path-safe: 1 to 128 of A-Z a-z 0-9 . _ ~ - with / between segments"),
            (json!({"id": "a//b"}), "hooks[0].id: hook id \"a//b\" is not URL-path-safe"),
            (json!({"id": "../x"}), "hooks[0].id: hook id \"../x\" is not URL-path-safe"),
            (json!({"id": "x", "execute_command": "a"}), "hooks[0].execute_command: unknown field (did you mean \"execute-command\"?)"),
            (json!({"id": "x", "ID": "y"}), "hooks[0].ID: unknown field (did you mean \"id\"?)"),
            (json!({"id": "x", "trigger_rule": {}}), "hooks[0].trigger_rule: unknown field (did you mean \"trigger-rule\"?)"),
            (json!({"id": "x", "execute-comand": "a"}), "hooks[0].execute-comand: unknown field (did you mean \"execute-command\"?)"),
            (json!({"id": "x", "secret": "a"}), "hooks[0].secret: unknown field (did you mean \"secrets\"?)"),
            (json!({"id": "x", "pre-hook-command": "/bin/true"}), "hooks[0].pre-hook-command: not supported by hookcast: pre-hook-command (described in adnanh/webhook's docs, absent from its releases)"),
            (json!({"id": "x", "success-http-response-code": 200.5}), "hooks[0].success-http-response-code: expected a status code, found a number"),
            (json!({"id": "x", "trigger-rule-mismatch-http-response-code": "400"}), "hooks[0].trigger-rule-mismatch-http-response-code: expected a status code, found a string"),
            (json!({"id": "x", "http-methods": ["GET", "PO ST"]}), "hooks[0].http-methods[1]: not an HTTP method: \"PO ST\""),
            (json!({"id": "x", "response-headers": [{"name": "X-A", "value": "a\r\nSet-Cookie: x"}]}), "hooks[0].response-headers[0].value: a header value cannot hold CR, LF or NUL"),
            (json!({"id": "x", "response-headers": [{"name": "", "value": "a"}]}), "hooks[0].response-headers[0].name: not a header name: \"\""),
            (json!({"id": "x", "response-headers": [{"name": "A", "vaule": "a"}]}), "hooks[0].response-headers[0].vaule: unknown field (did you mean \"value\"?)"),
            (json!({"id": "x", "pass-environment-to-command": [{"source": "payload", "name": "a=b"}]}), "hooks[0].pass-environment-to-command[0]: environment variable name \"HOOK_a=b\" must be non-empty without '=' or NUL (set envname)"),
            (json!({"id": "x", "pass-arguments-to-command": [{"source": "payload", "name": "a"}, {"source": "nope"}]}), "hooks[0].pass-arguments-to-command[1].source: unknown source"),
            (json!({"id": "x", "parse-parameters-as-json": [{"source": "string", "name": "{}"}]}), "hooks[0].parse-parameters-as-json[0].source: only header, url, query and payload values can be parsed as JSON"),
            (json!({"id": "x", "trigger-rule": {}}), "hooks[0].trigger-rule: empty rule"),
            (json!({"id": "x", "trigger-rule": {"and": [{"match": {"type": "regex", "regex": "\\pL", "parameter": {"source": "payload", "name": "a"}}}]}}), "hooks[0].trigger-rule.and[0].match.regex: invalid regex"),
            (json!({"id": "x", "provider": "gitbucket", "secrets": ["s"]}), "hooks[0].provider: unknown provider \"gitbucket\""),
            (json!({"id": "x", "provider": "github"}), "hooks[0].secrets: missing: provider \"github\" verifies with at least one secret"),
            (json!({"id": "x", "secrets": ["s"]}), "hooks[0].secrets: secrets are only used by a provider"),
            (json!({"id": "x", "provider": "gitlab", "secrets": [{"file": "relative"}]}), "hooks[0].secrets[0].file: not an absolute path: \"relative\""),
            (json!({"id": "x", "provider": "gitlab", "secrets": [{"env": "A", "file": "/b"}]}), "hooks[0].secrets[0]: exactly one of env, file, credential"),
            (json!({"id": "x", "provider": "gitlab", "secrets": [{"credential": "../x"}]}), "hooks[0].secrets[0].credential: not a credential name: \"../x\""),
            (json!({"id": "x", "provider": "gitlab", "secrets": [{"vault": "x"}]}), "hooks[0].secrets[0].vault: unknown field (one of env, file, credential)"),
            (json!({"id": "x", "provider": "gitlab", "secrets": [42]}), "hooks[0].secrets[0]: expected a secret string or {\"env\"|\"file\"|\"credential\": …}, found a number"),
            (json!({"id": "x", "topic": "a//b"}), "hooks[0].topic: empty topic segment: \"a//b\""),
            (json!({"id": "x", "publish": "all"}), "hooks[0].publish: unknown publish mode \"all\" (summary, full, none)"),
            (json!({"id": "x", "publish": "none", "retain": true}), "hooks[0].retain: publish is none: nothing goes to the topic to retain"),
            (json!({"id": "x", "retain": "yes"}), "hooks[0].retain: expected true or false, found a string"),
            (json!({"id": "x", "allowed-ips": ["10.0.0.0/8", "nope"]}), "hooks[0].allowed-ips[1]: not an address or CIDR: \"nope\""),
            (json!({"id": "x", "concurrency": "serial"}), "hooks[0].concurrency: unknown concurrency \"serial\" (coalesce, queue, parallel)"),
            (json!({"id": "x", "dedup": "id"}), "hooks[0].dedup: unknown dedup \"id\" (delivery-id, body)"),
            (json!({"id": "x", "timeout": 0}), "hooks[0].timeout: expected whole seconds from 1 to 604800, found 0"),
            (json!({"id": "x", "events": ["push", ""]}), "hooks[0].events[1]: empty"),
            (json!({"id": "x", "include-command-output-in-response": "true"}), "hooks[0].include-command-output-in-response: expected true or false, found a string"),
            (json!("x"), "hooks[0]: expected an object, found a string"),
        ];
        for (v, want) in cases {
            let got = error_of(v);
            assert!(got.starts_with(want), "got  {got}\nwant {want}");
        }
    }

    #[test]
    fn hooks_files() {
        let ok = r#" [ {"id": "a"}, {"id": "b", "execute-command": "/bin/true"} ] "#;
        assert_eq!(parse_hooks_file(ok, "hooks.json").unwrap().len(), 2);
        assert!(parse_hooks_file("\u{feff}[]", "hooks.json").unwrap().is_empty());
        let err = |text: &str| parse_hooks_file(text, "/etc/webhook/hooks.json").unwrap_err().to_string();
        // hookcast webhook without -template: "{{" is text, as in adnanh.
        let lit = parse_hooks_file_as(r#"[{"id": "a", "response-message": "{{ x }}"}]"#, "h.json", true).unwrap();
        assert_eq!(lit[0].response_message.as_deref(), Some("{{ x }}"));
        assert_eq!(lit[0].warnings, ["h.json: line 1: \"{{\" read as text, as adnanh/webhook does without -template"]);
        // adnanh starts on a file that repeats an id: the first answers.
        let twice = parse_hooks_file(
            r#"[{"id": "a", "response-message": "1"}, {"id": "b"}, {"id": "a"}]"#,
            "/etc/webhook/hooks.json",
        )
        .unwrap();
        assert_eq!((twice.len(), twice[0].response_message.as_deref()), (2, Some("1")));
        assert_eq!(
            twice[0].warnings,
            ["/etc/webhook/hooks.json[2].id: duplicate hook id \"a\" (first at /etc/webhook/hooks.json[0].id): left out, as adnanh/webhook answers with the first"]
        );
        let list = vec![("hooks[0]".to_string(), json!({"id": "a"})), ("hooks[1]".to_string(), json!({"id": "a"}))];
        assert_eq!(
            parse_hook_list(list).unwrap_err().to_string(),
            "hooks[1].id: duplicate hook id \"a\" (first at hooks[0].id)"
        );
        assert!(err("- id: deploy\n  execute-command: /bin/true\n")
            .starts_with("/etc/webhook/hooks.json: not JSON: hookcast reads hooks files as JSON only (YAML"));
        assert!(err(
            "[\n {\"id\": \"a\",\n  \"trigger-rule\": {\"match\": {\"secret\": \"{{ getenv \\\"S\\\" | js }}\"}}}]"
        )
        .starts_with("/etc/webhook/hooks.json: line 3: \"{{\" looks like a Go template"));
        assert_eq!(err(r#"{"id": "a"}"#), "/etc/webhook/hooks.json: expected a JSON list of hooks, found an object");
        assert!(err("[{").starts_with("/etc/webhook/hooks.json: invalid JSON: "));
        assert_eq!(err("  \n"), "/etc/webhook/hooks.json: empty hooks file (expected a JSON list of hooks)");
        assert!(err(r#"[{"id": "a", "executecommand": 1}]"#).starts_with(
            "/etc/webhook/hooks.json[0].executecommand: unknown field (did you mean \"execute-command\"?)"
        ));
        let missing = load_hooks_file(Path::new("/nonexistent/hooks.json")).unwrap_err().to_string();
        assert!(missing.starts_with("/nonexistent/hooks.json: cannot read: "), "{missing}");
    }

    #[test]
    fn secret_resolution() {
        assert_eq!(SecretSource::Inline("k".into()).resolve().unwrap(), b"k");
        let dir = std::env::temp_dir().join(format!("hookcast-def-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "s3cret\r\n\n").unwrap();
        assert_eq!(SecretSource::File(file.clone()).resolve().unwrap(), b"s3cret");
        std::fs::write(&file, "\n").unwrap();
        assert!(SecretSource::File(file.clone()).resolve().unwrap_err().to_string().ends_with("is empty"));
        let missing = SecretSource::File(dir.join("nope")).resolve().unwrap_err().to_string();
        assert!(missing.starts_with(&format!("cannot read file {}", dir.join("nope").display())), "{missing}");
        assert_eq!(
            SecretSource::Env("HOOKCAST_TEST_UNSET_VAR".into()).resolve().unwrap_err().to_string(),
            "environment variable HOOKCAST_TEST_UNSET_VAR is not set"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    const FIXTURE: &str = include_str!("../../tests/fixtures/adnanh/hooks.json");

    fn request(h: &HookDef, headers: &[(&str, &str)], query: &str, body: &[u8], addr: &str) -> RequestValues {
        let hs: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        crate::hooks::intake::request_values(h, "POST", addr, hs, query, body.to_vec()).unwrap()
    }

    fn fixture() -> HashMap<String, HookDef> {
        parse_hooks_file(FIXTURE, "tests/fixtures/adnanh/hooks.json")
            .unwrap()
            .into_iter()
            .map(|h| (h.id.clone(), h))
            .collect()
    }

    #[test]
    fn fixture_uses_every_rule_type_and_source() {
        let hooks = fixture();
        assert_eq!(hooks.len(), 5);
        let mut sources = Vec::new();
        let mut kinds = Vec::new();
        fn walk(r: &Rule, kinds: &mut Vec<String>, sources: &mut Vec<Source>) {
            match r {
                Rule::And(rs) => {
                    kinds.push("and".into());
                    rs.iter().for_each(|r| walk(r, kinds, sources));
                }
                Rule::Or(rs) => {
                    kinds.push("or".into());
                    rs.iter().for_each(|r| walk(r, kinds, sources));
                }
                Rule::Not(r) => {
                    kinds.push("not".into());
                    walk(r, kinds, sources);
                }
                Rule::Match(MatchRule::Value { parameter, .. }) => {
                    kinds.push("value".into());
                    sources.push(parameter.source);
                }
                Rule::Match(MatchRule::Regex { parameter, .. }) => {
                    kinds.push("regex".into());
                    sources.push(parameter.source);
                }
                Rule::Match(MatchRule::PayloadHmac { algo, parameter, .. }) => {
                    kinds.push(format!("{algo:?}"));
                    sources.push(parameter.source);
                }
                Rule::Match(MatchRule::IpWhitelist { .. }) => kinds.push("ip-whitelist".into()),
            }
        }
        for h in hooks.values() {
            if let Some(r) = &h.trigger_rule {
                walk(r, &mut kinds, &mut sources);
            }
            for a in h
                .pass_arguments_to_command
                .iter()
                .chain(&h.pass_environment_to_command)
                .chain(&h.pass_file_to_command)
                .chain(&h.parse_parameters_as_json)
            {
                sources.push(a.source);
            }
        }
        for k in ["and", "or", "not", "value", "regex", "Sha1", "Sha256", "Sha512", "ip-whitelist"] {
            assert!(kinds.iter().any(|x| x == k), "fixture lacks {k}");
        }
        for s in Source::ALL.split(", ") {
            assert!(sources.contains(&Source::parse(s).unwrap()), "fixture lacks source {s}");
        }
    }

    #[test]
    fn fixture_github_push() {
        let hooks = fixture();
        let h = &hooks["github-deploy"];
        let body = br#"{"ref":"refs/heads/main","after":"abc123","head_commit":{"id":"abc123","message":"fix <b>"},"commits":[{"id":"abc123"}],"pusher":{"name":"octocat"},"repository":{"full_name":"octo/site"}}"#;
        let rule = h.trigger_rule.as_ref().unwrap();
        let mut secrets = Secrets::new();
        for s in {
            let mut v = Vec::new();
            secret_sources(rule, &mut v);
            v
        } {
            secrets.insert(s.clone(), b"gh-secret".to_vec());
        }
        let sig = format!("sha256={}", HmacAlgo::Sha256.hex_mac(b"gh-secret", body));
        let headers =
            [("content-type", "application/json"), ("x-hub-signature-256", sig.as_str()), ("X-GitHub-Event", "push")];
        let rv = request(h, &headers, "", body, "140.82.115.3:41000");
        assert_eq!(evaluate(rule, &rv, &secrets, h.trigger_signature_soft_failures), Ok(true));
        let args: Vec<String> = h.pass_arguments_to_command.iter().map(|a| extract(a, &rv).unwrap()).collect();
        assert_eq!(args, ["abc123", "octocat", "abc123", "POST", "140.82.115.3:41000"]);
        // Another branch: not satisfied; another address: not satisfied; a bad signature: an error.
        let dev = String::from_utf8(body.to_vec()).unwrap().replace("refs/heads/main", "refs/heads/dev");
        let sig_dev = format!("sha256={}", HmacAlgo::Sha256.hex_mac(b"gh-secret", dev.as_bytes()));
        let rv = request(
            h,
            &[("content-type", "application/json"), ("x-hub-signature-256", &sig_dev)],
            "",
            dev.as_bytes(),
            "140.82.115.3:1",
        );
        assert_eq!(evaluate(rule, &rv, &secrets, false), Ok(false));
        let rv = request(h, &headers, "", body, "203.0.113.9:1");
        assert_eq!(evaluate(rule, &rv, &secrets, false), Ok(false));
        let rv = request(
            h,
            &[("content-type", "application/json"), ("x-hub-signature-256", "sha256=00")],
            "",
            body,
            "140.82.115.3:1",
        );
        assert_eq!(evaluate(rule, &rv, &secrets, false), Err(RuleError::Signature { empty_payload: false }));
    }

    #[test]
    fn fixture_gitlab_form_multipart_and_combo() {
        let hooks = fixture();
        let s = Secrets::new();

        let gl = &hooks["gitlab-token"];
        let body = br#"{"object_kind":"push","ref":"refs/heads/main","checkout_sha":"def456"}"#;
        let rv = request(
            gl,
            &[("Content-Type", "application/json"), ("X-Gitlab-Token", "gl-token"), ("X-Gitlab-Event", "Push Hook")],
            "",
            body,
            "10.1.2.3:5",
        );
        assert_eq!(evaluate(gl.trigger_rule.as_ref().unwrap(), &rv, &s, false), Ok(true));
        let env: Vec<String> = gl
            .pass_environment_to_command
            .iter()
            .map(|a| format!("{}={}", a.env_var(), extract(a, &rv).unwrap()))
            .collect();
        assert!(env[0].starts_with("GITLAB_HEADERS={\"Content-Type\":\"application/json\""), "{env:?}");
        assert_eq!(env[1], "HOOK_checkout_sha=def456");
        let rv = request(
            gl,
            &[("Content-Type", "application/json"), ("X-Gitlab-Token", "wrong"), ("X-Gitlab-Event", "Push Hook")],
            "",
            body,
            "10.1.2.3:5",
        );
        assert_eq!(evaluate(gl.trigger_rule.as_ref().unwrap(), &rv, &s, false), Ok(false));

        let form = &hooks["github-form"];
        let inner = r#"{"ref":"refs/heads/release/1.2","repository":{"full_name":"octo/site"}}"#;
        let body = format!(
            "payload={}",
            inner.replace('{', "%7B").replace('}', "%7D").replace('"', "%22").replace('/', "%2F")
        );
        let mut secrets = Secrets::new();
        secrets.insert(SecretSource::File("/etc/hookcast/github-form.secret".into()), b"form-secret".to_vec());
        let sig = format!("sha1={}", HmacAlgo::Sha1.hex_mac(b"form-secret", body.as_bytes()));
        let rv = request(
            form,
            &[("Content-Type", "application/x-www-form-urlencoded"), ("X-Hub-Signature", &sig)],
            "",
            body.as_bytes(),
            "192.30.252.1:1",
        );
        assert_eq!(evaluate(form.trigger_rule.as_ref().unwrap(), &rv, &secrets, false), Ok(true));
        assert_eq!(extract(&form.pass_arguments_to_command[0], &rv).unwrap(), "octo/site");

        let mp = &hooks["ci-artifact"];
        let body = "--BOUNDARY\r\nContent-Disposition: form-data; name=\"meta\"; filename=\"meta.json\"\r\n\r\n{\"status\":\"success\",\"branch\":\"main\"}\r\n--BOUNDARY\r\nContent-Disposition: form-data; name=\"artifact\"\r\n\r\nYmluYXJ5\r\n--BOUNDARY--\r\n";
        let rv = request(
            mp,
            &[("Content-Type", "multipart/form-data; boundary=BOUNDARY")],
            "token=ci-token&build=42",
            body.as_bytes(),
            "10.0.0.5:1",
        );
        assert_eq!(evaluate(mp.trigger_rule.as_ref().unwrap(), &rv, &s, false), Ok(true));
        assert_eq!(extract(&mp.pass_arguments_to_command[0], &rv).unwrap(), "42");
        assert_eq!(crate::hooks::params::file_contents(&mp.pass_file_to_command[0], &rv).unwrap(), b"binary");
        let q = extract(&mp.pass_environment_to_command[0], &rv).unwrap();
        assert_eq!(q, r#"{"build":"42","token":"ci-token"}"#);

        let combo = &hooks["manual-or-tag"];
        let rule = combo.trigger_rule.as_ref().unwrap();
        let mut secrets = Secrets::new();
        secrets.insert(SecretSource::Credential("deploy-hmac-new".into()), b"new".to_vec());
        secrets.insert(SecretSource::Env("DEPLOY_HMAC_OLD".into()), b"old".to_vec());
        let body = br#"{"ref":"refs/tags/v1.0.0","draft":"false"}"#;
        let signed = |key: &[u8]| format!("sha512={}", HmacAlgo::Sha512.hex_mac(key, body));
        // Signed with the new key: the old key's failure is soft inside the `or`.
        let rv = request(
            combo,
            &[("Content-Type", "application/json"), ("X-Signature", &signed(b"new"))],
            "",
            body,
            "10.0.0.9:1",
        );
        assert_eq!(evaluate(rule, &rv, &secrets, combo.trigger_signature_soft_failures), Ok(true));
        // A draft tag is refused by the `not`.
        let draft = br#"{"ref":"refs/tags/v1.0.0","draft":"true"}"#;
        let sig = format!("sha512={}", HmacAlgo::Sha512.hex_mac(b"old", draft));
        let rv =
            request(combo, &[("Content-Type", "application/json"), ("X-Signature", &sig)], "", draft, "10.0.0.9:1");
        assert_eq!(evaluate(rule, &rv, &secrets, true), Ok(false));
        // A manual trigger from the LAN with the shared word in the query needs no signature.
        let rv = request(combo, &[], "trigger=manual", b"", "192.168.1.20:1");
        assert_eq!(evaluate(rule, &rv, &secrets, true), Ok(true));
    }

    #[test]
    fn provider_settings() {
        use crate::hooks::providers::{Algorithm, Encoding, HmacSpec};
        let h = parse_hook(
            json!({"id": "g", "provider": {"name": "github", "allow_sha1": true}, "secrets": ["s"]}),
            "hooks[0]",
        )
        .unwrap();
        assert_eq!(h.provider_spec, Some(Provider::Github { allow_sha1: true }));
        assert_eq!(h.provider.as_deref(), Some("github"));
        let h = parse_hook(
            json!({"id": "s", "provider": {"name": "stripe", "tolerance_secs": 600}, "secrets": ["s"]}),
            "x",
        )
        .unwrap();
        assert_eq!(h.provider_spec, Some(Provider::Stripe { tolerance_secs: 600 }));
        let h = parse_hook(
            json!({"id": "h", "provider": {"name": "hmac", "header": "X-Signature", "algorithm": "sha512", "encoding": "base64", "prefix": ""}, "secrets": ["s"]}),
            "x",
        )
        .unwrap();
        let want = HmacSpec {
            header: "x-signature".into(),
            algorithm: Algorithm::Sha512,
            encoding: Encoding::Base64,
            prefix: String::new(),
        };
        assert_eq!(h.provider_spec, Some(Provider::Hmac(want)));
        for (v, msg) in [
            (json!({"name": "hmac", "algorithm": "md5"}), "hooks[0].provider.algorithm: unknown algorithm \"md5\""),
            (json!({"name": "github", "tolerance_secs": 5}), "hooks[0].provider.tolerance_secs: unknown field"),
            (json!({"allow_sha1": true}), "hooks[0].provider.name: missing"),
            (json!({"name": "hmac", "header": "X Sig"}), "hooks[0].provider.header: not a header name"),
        ] {
            let e =
                parse_hook(json!({"id": "x", "provider": v, "secrets": ["s"]}), "hooks[0]").unwrap_err().to_string();
            assert!(e.starts_with(msg), "{e}");
        }
    }
}
