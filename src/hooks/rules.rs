//! adnanh/webhook trigger rules (`and`, `or`, `not`, `match`): parsing them from a hooks file,
//! with every regex, CIDR and secret checked at load time, and evaluating them against a request
//! as adnanh's `Rules.Evaluate` does (`internal/hook/hook.go`).
//!
//! adnanh's evaluation has two quirks that decide real outcomes, and both are kept:
//!
//! - A value the rule refers to that is missing makes its `match` false *and* marks the result:
//!   `and` stops at a marked child and is false, `or` ignores the mark, `not` inverts the value
//!   but keeps the mark. So `{"not": <match on a missing value>}` is true on its own but makes an
//!   enclosing `and` false.
//! - A signature that does not match is an error, not a plain `false`. Inside an `or` it is
//!   forgiven when the hook sets `trigger-signature-soft-failures` (the `or` goes on with the
//!   next rule); anywhere else it ends the evaluation with [`RuleError::Signature`], which adnanh
//!   answers with a 500 and hookcast with a 4xx (see `docs/migrating-from-webhook.md`).
//!
//! HMACs are compared in constant time over the raw body bytes; a rule's secret is never shown in
//! `Debug` output or error messages.
//!
//! Two departures bound what an unauthenticated client can make the loop do (a regex over a
//! large parameter costs tens of milliseconds per MiB):
//!
//! - An `and` evaluates its children that hold a `payload-hmac-*` match first. Its value is the
//!   same whenever those signatures hold (it is decided by the first child, in the written
//!   order, that is false or marked, and signature children that hold are neither); when one
//!   fails, the request is refused for its signature before any regex runs, where adnanh could
//!   answer "rules not satisfied" for an earlier false child.
//! - A `regex` match tests at most [`MAX_REGEX_INPUT`] bytes: a longer value does not match.

use crate::auth::{canonical, ct_eq, Cidr};
use crate::config::json::{at, check_fields, err, kind, ConfigError, Obj};
use crate::hooks::body::RequestValues;
use crate::hooks::params::{extract, parse_argument, Argument, ParamError};
use crate::hooks::secret::{parse_secret, SecretSource};
use hmac::{Hmac, Mac};
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// Longest value a `regex` match is tested against; a longer one does not match (refs, event
/// names and headers are far shorter, and the test's cost grows with the input).
pub const MAX_REGEX_INPUT: usize = 64 * 1024;

/// A trigger rule.
#[derive(Debug, Clone)]
pub enum Rule {
    /// True when every child is (and none is missing a value).
    And(Vec<Rule>),
    /// True when any child is.
    Or(Vec<Rule>),
    /// The opposite of its child.
    Not(Box<Rule>),
    /// A test of one request value.
    Match(MatchRule),
}

/// Hash function of a `payload-hmac-*` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgo {
    /// `payload-hmac-sha1` (and the deprecated `payload-hash-sha1`).
    Sha1,
    /// `payload-hmac-sha256` (and `payload-hash-sha256`).
    Sha256,
    /// `payload-hmac-sha512` (and `payload-hash-sha512`).
    Sha512,
}

impl HmacAlgo {
    /// The prefix a signature may carry (`sha256=`), stripped as adnanh does.
    pub fn prefix(self) -> &'static str {
        match self {
            HmacAlgo::Sha1 => "sha1=",
            HmacAlgo::Sha256 => "sha256=",
            HmacAlgo::Sha512 => "sha512=",
        }
    }

    /// Lower-case hex HMAC of `body` under `secret`.
    pub fn hex_mac(self, secret: &[u8], body: &[u8]) -> String {
        fn mac<M: Mac + hmac::digest::KeyInit>(secret: &[u8], body: &[u8]) -> String {
            let mut m = <M as hmac::digest::KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
            m.update(body);
            lower_hex(&m.finalize().into_bytes())
        }
        match self {
            HmacAlgo::Sha1 => lower_hex(&hmac_sha1(secret, body)),
            HmacAlgo::Sha256 => mac::<Hmac<sha2::Sha256>>(secret, body),
            HmacAlgo::Sha512 => mac::<Hmac<sha2::Sha512>>(secret, body),
        }
    }
}

/// Lower-case hex of a digest.
fn lower_hex(bytes: &[u8]) -> String {
    crate::auth::hex(bytes)
}

/// HMAC-SHA1 (the providers module has the one implementation).
fn hmac_sha1(key: &[u8], text: &[u8]) -> [u8; 20] {
    crate::hooks::providers::hmac_sha1(key, &[text])
}

/// The test of a `match` rule.
#[derive(Debug, Clone)]
pub enum MatchRule {
    /// `value`: the parameter equals `value` (compared in constant time, as adnanh).
    Value {
        /// The expected text.
        value: String,
        /// The request value tested.
        parameter: Argument,
    },
    /// `regex`: the parameter contains a match of `regex` (unanchored, as Go's `MatchString`).
    Regex {
        /// The compiled pattern.
        regex: regex_lite::Regex,
        /// The request value tested.
        parameter: Argument,
    },
    /// `payload-hmac-*`: the parameter holds the hex HMAC of the raw body.
    PayloadHmac {
        /// Hash function.
        algo: HmacAlgo,
        /// Where the key comes from.
        secret: SecretSource,
        /// Where the signature is (usually a header).
        parameter: Argument,
    },
    /// `ip-whitelist`: the client address is inside one of the ranges.
    IpWhitelist {
        /// The networks of `ip-range`; a bare address is a /32 or /128.
        ranges: Vec<Cidr>,
    },
}

/// Why a rule could not be evaluated to true or false.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    /// A `payload-hmac-*` signature did not match (outside a soft-failing `or`).
    Signature {
        /// The body was empty (a common sign of a proxy or a GET that dropped it).
        empty_payload: bool,
    },
    /// A `payload-hmac-*` secret from env/file/credential was not resolved at load time.
    SecretUnavailable(String),
    /// The remote address is not `IP:port` or an IP.
    BadRemoteAddr(String),
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleError::Signature { empty_payload: false } => write!(f, "invalid payload signature"),
            RuleError::Signature { empty_payload: true } => write!(f, "invalid payload signature on empty payload"),
            RuleError::SecretUnavailable(src) => write!(f, "secret not loaded: {src}"),
            RuleError::BadRemoteAddr(a) => write!(f, "invalid IP address found in remote address {a:?}"),
        }
    }
}

impl std::error::Error for RuleError {}

/// Secret bytes of the rules' env/file/credential secrets, read once at load time.
#[derive(Clone, Default)]
pub struct Secrets {
    map: HashMap<SecretSource, Vec<u8>>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} loaded)", self.map.len())
    }
}

impl Secrets {
    /// No secrets loaded (enough for rules whose secrets are inline).
    pub fn new() -> Secrets {
        Secrets::default()
    }

    /// Records the bytes of one source.
    pub fn insert(&mut self, source: SecretSource, bytes: Vec<u8>) {
        self.map.insert(source, bytes);
    }

    /// The bytes of a source: inline secrets directly, others as loaded.
    pub fn get<'a>(&'a self, source: &'a SecretSource) -> Option<&'a [u8]> {
        match source {
            SecretSource::Inline(s) => Some(s.as_bytes()),
            other => self.map.get(other).map(Vec::as_slice),
        }
    }

    /// Reads every env/file/credential secret `rule` uses (the only I/O of this module).
    pub fn load(rule: &Rule) -> Result<Secrets, ConfigError> {
        let mut secrets = Secrets::new();
        let mut sources = Vec::new();
        secret_sources(rule, &mut sources);
        for s in sources {
            if !matches!(s, SecretSource::Inline(_)) && !secrets.map.contains_key(s) {
                let bytes = s.resolve()?;
                secrets.insert(s.clone(), bytes);
            }
        }
        Ok(secrets)
    }
}

/// Every secret source a rule uses, in order.
pub fn secret_sources<'a>(rule: &'a Rule, out: &mut Vec<&'a SecretSource>) {
    match rule {
        Rule::And(rs) | Rule::Or(rs) => rs.iter().for_each(|r| secret_sources(r, out)),
        Rule::Not(r) => secret_sources(r, out),
        Rule::Match(MatchRule::PayloadHmac { secret, .. }) => out.push(secret),
        Rule::Match(_) => {}
    }
}

/// Fields of adnanh's `Rules` object (one of them per rule).
pub(crate) const RULE_FIELDS: &[&str] = &["and", "or", "not", "match"];
/// Fields of adnanh's `MatchRule`.
pub(crate) const MATCH_FIELDS: &[&str] = &["type", "value", "regex", "secret", "parameter", "ip-range"];
const MATCH_TYPES: &str = "value, regex, payload-hmac-sha1, payload-hmac-sha256, payload-hmac-sha512, ip-whitelist";

/// Parses a trigger rule found at `path`.
pub fn parse_rule(value: Value, path: &str) -> Result<Rule, ConfigError> {
    check_fields(&value, path, RULE_FIELDS, &[])?;
    let Value::Object(map) = value else {
        return err(path, format!("expected a rule object, found {}", kind(&value)));
    };
    let mut present: Vec<(String, Value)> = map.into_iter().filter(|(_, v)| !v.is_null()).collect();
    match present.len() {
        0 => {
            return err(
                path,
                "empty rule (adnanh/webhook treats {} as never true; write a rule, or leave trigger-rule out to always trigger)",
            )
        }
        1 => {}
        _ => {
            let keys: Vec<&str> = present.iter().map(|(k, _)| k.as_str()).collect();
            return err(path, format!("a rule holds exactly one of and, or, not, match; found {}", keys.join(", ")));
        }
    }
    let (key, v) = present.pop().expect("one entry");
    let here = at(path, &key);
    match key.as_str() {
        "and" | "or" => {
            let Value::Array(items) = v else {
                return err(&here, format!("expected a list of rules, found {}", kind(&v)));
            };
            if items.is_empty() {
                return err(&here, format!("empty {key:?} list (write at least one rule)"));
            }
            let rules = items
                .into_iter()
                .enumerate()
                .map(|(i, r)| parse_rule(r, &format!("{here}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(if key == "and" { Rule::And(rules) } else { Rule::Or(rules) })
        }
        "not" => Ok(Rule::Not(Box::new(parse_rule(v, &here)?))),
        _ => Ok(Rule::Match(parse_match(v, &here)?)),
    }
}

fn parse_match(value: Value, path: &str) -> Result<MatchRule, ConfigError> {
    check_fields(&value, path, MATCH_FIELDS, &[])?;
    let Value::Object(map) = value else {
        return err(path, format!("expected a match object, found {}", kind(&value)));
    };
    // The string fields are Go `string`s in adnanh: numbers and booleans were already turned
    // into strings as adnanh does (see `coerce`); an object or list is an error there too.
    let mut o = Obj::from_map(map, path);
    let type_path = at(path, "type");
    let Some(ty) = o.opt_str("type")? else {
        return err(&type_path, format!("missing (one of {MATCH_TYPES})"));
    };
    let (algo, uses): (Option<HmacAlgo>, &[&str]) = match ty.as_str() {
        "value" => (None, &["value", "parameter"]),
        "regex" => (None, &["regex", "parameter"]),
        "payload-hmac-sha1" | "payload-hash-sha1" => (Some(HmacAlgo::Sha1), &["secret", "parameter"]),
        "payload-hmac-sha256" | "payload-hash-sha256" => (Some(HmacAlgo::Sha256), &["secret", "parameter"]),
        "payload-hmac-sha512" | "payload-hash-sha512" => (Some(HmacAlgo::Sha512), &["secret", "parameter"]),
        "ip-whitelist" => (None, &["ip-range"]),
        "scalr-signature" => {
            return err(
                &type_path,
                "not supported by hookcast: match type \"scalr-signature\" (use payload-hmac-* or a provider)",
            )
        }
        other => return err(&type_path, format!("unknown match type {other:?} (one of {MATCH_TYPES})")),
    };
    if let Some((extra, _)) = o.rest().find(|(k, v)| !uses.contains(&k.as_str()) && !v.is_null()) {
        return err(&at(path, extra), format!("not used by match type {ty:?} (it reads {})", uses.join(" and ")));
    }
    let mut parameter = || -> Result<Argument, ConfigError> {
        match o.take_raw("parameter") {
            None | Some(Value::Null) => err(&at(path, "parameter"), "missing (the request value to test)"),
            Some(v) => parse_argument(v, &at(path, "parameter")),
        }
    };
    if let Some(algo) = algo {
        let parameter = parameter()?;
        let secret = match o.take_raw("secret") {
            None | Some(Value::Null) => return err(&at(path, "secret"), "missing"),
            Some(v) => parse_secret(v, &at(path, "secret"))?,
        };
        return Ok(MatchRule::PayloadHmac { algo, secret, parameter });
    }
    match ty.as_str() {
        "value" => {
            let parameter = parameter()?;
            let Some(value) = o.opt_str("value")? else {
                return err(&at(path, "value"), "missing (write \"\" to match an empty value)");
            };
            Ok(MatchRule::Value { value, parameter })
        }
        "regex" => {
            let parameter = parameter()?;
            let regex_path = at(path, "regex");
            let Some(re) = o.opt_str("regex")? else {
                return err(&regex_path, "missing");
            };
            let regex =
                regex_lite::Regex::new(&re).or_else(|e| err(&regex_path, format!("invalid regex {re:?}: {e}")))?;
            Ok(MatchRule::Regex { regex, parameter })
        }
        _ => {
            let range_path = at(path, "ip-range");
            let Some(text) = o.opt_str("ip-range")? else {
                return err(&range_path, "missing (addresses or CIDRs separated by spaces)");
            };
            let ranges = text
                .split_whitespace()
                .map(|r| {
                    Cidr::parse(r).ok_or_else(|| ConfigError {
                        path: range_path.clone(),
                        message: format!("not an address or CIDR: {r:?}"),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if ranges.is_empty() {
                return err(&range_path, "empty (addresses or CIDRs separated by spaces)");
            }
            Ok(MatchRule::IpWhitelist { ranges })
        }
    }
}

/// adnanh's `ExtractSignatures`: with a comma, every `prefix`-led entry (others dropped);
/// without, the whole value with `prefix` stripped if present. Nothing is trimmed.
pub fn extract_signatures<'a>(source: &'a str, prefix: &str) -> Vec<&'a str> {
    if source.contains(',') {
        source.split(',').filter_map(|p| p.strip_prefix(prefix)).collect()
    } else {
        vec![source.strip_prefix(prefix).unwrap_or(source)]
    }
}

/// The IP in a remote address: `IP:port`, `[v6]:port`, or a bare IP.
fn remote_ip(remote_addr: &str) -> Result<IpAddr, RuleError> {
    let s = remote_addr.trim();
    s.parse::<SocketAddr>()
        .map(|a| a.ip())
        .or_else(|_| s.trim_matches(['[', ']']).parse::<IpAddr>())
        .map(canonical)
        .map_err(|_| RuleError::BadRemoteAddr(remote_addr.to_string()))
}

/// Why a result is not a clean true/false (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Missing,
    Signature { empty_payload: bool },
}

#[derive(Debug, Clone, Copy)]
struct Outcome {
    value: bool,
    mark: Option<Mark>,
}

const fn clean(value: bool) -> Outcome {
    Outcome { value, mark: None }
}

/// Evaluates `rule` against a request. `soft_signature_failures` is the hook's
/// `trigger-signature-soft-failures`: a signature mismatch inside an `or` then only makes that
/// branch false. A value the rule needs that is missing makes its `match` false, never an error.
pub fn evaluate(
    rule: &Rule,
    rv: &RequestValues,
    secrets: &Secrets,
    soft_signature_failures: bool,
) -> Result<bool, RuleError> {
    let o = eval(rule, rv, secrets, soft_signature_failures)?;
    match o.mark {
        Some(Mark::Signature { empty_payload }) => Err(RuleError::Signature { empty_payload }),
        Some(Mark::Missing) | None => Ok(o.value),
    }
}

/// Why `rule` is false for a request (after [`evaluate`] said so), for the log: the part of the
/// rule that failed, by its place in the rule and what it tests, never a value or a secret
/// (`and[1]: match value on header "X-Token" did not match`).
pub fn why_false(rule: &Rule, rv: &RequestValues, secrets: &Secrets, soft: bool) -> String {
    fn walk(rule: &Rule, rv: &RequestValues, secrets: &Secrets, soft: bool, at: &str) -> String {
        let value = |r: &Rule| eval(r, rv, secrets, soft).map(|o| (o.value && o.mark.is_none(), o.mark));
        match rule {
            Rule::And(rules) => {
                let signed = rules.iter().enumerate().filter(|(_, r)| checks_signature(r));
                let unsigned = rules.iter().enumerate().filter(|(_, r)| !checks_signature(r));
                for (i, r) in signed.chain(unsigned) {
                    if !matches!(value(r), Ok((true, _))) {
                        return walk(r, rv, secrets, soft, &format!("{at}and[{i}]."));
                    }
                }
                format!("{at}and: true")
            }
            Rule::Or(rules) => format!("{}or: none of its {} rules matched", at, rules.len()),
            Rule::Not(_) => format!("{at}not: its rule matched"),
            Rule::Match(m) => {
                let at = at.trim_end_matches('.');
                let what = match m {
                    MatchRule::Value { parameter, .. } => describe("value", parameter),
                    MatchRule::Regex { parameter, .. } => describe("regex", parameter),
                    MatchRule::PayloadHmac { algo, parameter, .. } => {
                        let name = match algo {
                            HmacAlgo::Sha1 => "payload-hmac-sha1",
                            HmacAlgo::Sha256 => "payload-hmac-sha256",
                            HmacAlgo::Sha512 => "payload-hmac-sha512",
                        };
                        describe(name, parameter)
                    }
                    MatchRule::IpWhitelist { .. } => "match ip-whitelist".to_string(),
                };
                let sep = if at.is_empty() { "" } else { ": " };
                match value(rule) {
                    Ok((_, Some(Mark::Missing))) => format!("{at}{sep}{what}: the value is missing"),
                    Ok(_) => format!("{at}{sep}{what} did not match"),
                    Err(e) => format!("{at}{sep}{what}: {e}"),
                }
            }
        }
    }
    fn describe(kind: &str, p: &Argument) -> String {
        format!("match {kind} on {} {:?}", p.source.as_str(), p.name)
    }
    walk(rule, rv, secrets, soft, "")
}

fn eval(rule: &Rule, rv: &RequestValues, secrets: &Secrets, soft: bool) -> Result<Outcome, RuleError> {
    match rule {
        Rule::And(rules) => {
            // Signatures first (see the module docs); otherwise in the written order.
            let signed = rules.iter().filter(|r| checks_signature(r));
            for r in signed.chain(rules.iter().filter(|r| !checks_signature(r))) {
                let o = eval(r, rv, secrets, soft)?;
                if o.mark.is_some() {
                    return Ok(Outcome { value: false, mark: o.mark });
                }
                if !o.value {
                    return Ok(clean(false));
                }
            }
            Ok(clean(true))
        }
        Rule::Or(rules) => {
            for r in rules {
                let o = eval(r, rv, secrets, soft)?;
                if let Some(Mark::Signature { .. }) = o.mark {
                    if !soft {
                        return Ok(Outcome { value: false, mark: o.mark });
                    }
                }
                if o.value {
                    return Ok(clean(true));
                }
            }
            Ok(clean(false))
        }
        Rule::Not(r) => {
            let o = eval(r, rv, secrets, soft)?;
            Ok(Outcome { value: !o.value, mark: o.mark })
        }
        Rule::Match(m) => eval_match(m, rv, secrets),
    }
}

/// Why `rule` is false (or true) for a request, in words, for the status page's inspector:
/// the first `and` member that fails, every `or` alternative, each `match` with the value it
/// tested. Values of headers in `hidden` (those compared with a secret) and every `value`
/// compared with them are never shown. Called only for a refused delivery, so its cost (one
/// more evaluation) is paid only then.
pub fn explain(rule: &Rule, rv: &RequestValues, secrets: &Secrets, hidden: &[String]) -> String {
    let mut out = why(rule, rv, secrets, hidden).1;
    if out.len() > 1024 {
        let mut end = 1024;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

/// A request value as the inspector quotes it: at most 60 characters.
fn quoted(v: &str) -> String {
    let cut: String = v.chars().take(60).collect();
    if cut.len() < v.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

fn why(rule: &Rule, rv: &RequestValues, secrets: &Secrets, hidden: &[String]) -> (bool, String) {
    let value = |r: &Rule| eval(r, rv, secrets, false).map(|o| o.value && o.mark.is_none()).unwrap_or(false);
    match rule {
        Rule::And(rules) => match rules.iter().find(|r| !value(r)) {
            Some(r) => (false, format!("and: {}", why(r, rv, secrets, hidden).1)),
            None => (true, format!("and: all {} hold", rules.len())),
        },
        Rule::Or(rules) => match rules.iter().find(|r| value(r)) {
            Some(r) => (true, format!("or: {}", why(r, rv, secrets, hidden).1)),
            None => {
                let each: Vec<String> = rules.iter().map(|r| why(r, rv, secrets, hidden).1).collect();
                (false, format!("or: none holds ({})", each.join("; ")))
            }
        },
        Rule::Not(r) => {
            let (v, w) = why(r, rv, secrets, hidden);
            (!v, format!("not: {w}"))
        }
        Rule::Match(m) => {
            let v = value(rule);
            let (is, does) = if v { ("is", "does") } else { ("is not", "does not") };
            let text = match m {
                MatchRule::IpWhitelist { ranges } => {
                    format!("client address {} {is} in the {} range(s) of ip-whitelist", rv.remote_addr, ranges.len())
                }
                MatchRule::Value { parameter: p, value: want } => match extract(p, rv) {
                    Err(_) => format!("{p} is missing"),
                    // A header compared with a value is a shared secret: neither is shown.
                    Ok(_)
                        if p.source == crate::hooks::params::Source::Header
                            || hidden.iter().any(|h| h.eq_ignore_ascii_case(&p.name)) =>
                    {
                        format!("{p} {} the expected value", if v { "equals" } else { "does not equal" })
                    }
                    Ok(got) => format!("{p} is {}, which {is} {}", quoted(&got), quoted(want)),
                },
                MatchRule::Regex { parameter: p, regex } => match extract(p, rv) {
                    Err(_) => format!("{p} is missing"),
                    Ok(got) => format!("{p} is {}, which {does} match /{}/", quoted(&got), regex.as_str()),
                },
                MatchRule::PayloadHmac { parameter: p, algo, .. } => {
                    format!("{}hmac signature in {p} {does} match the body", algo.prefix().trim_end_matches('='))
                }
            };
            (v, text)
        }
    }
}

/// Whether `rule` holds a `payload-hmac-*` match anywhere.
fn checks_signature(rule: &Rule) -> bool {
    match rule {
        Rule::And(rs) | Rule::Or(rs) => rs.iter().any(checks_signature),
        Rule::Not(r) => checks_signature(r),
        Rule::Match(m) => matches!(m, MatchRule::PayloadHmac { .. }),
    }
}

fn eval_match(m: &MatchRule, rv: &RequestValues, secrets: &Secrets) -> Result<Outcome, RuleError> {
    let parameter = match m {
        MatchRule::IpWhitelist { ranges } => {
            let ip = remote_ip(&rv.remote_addr)?;
            return Ok(clean(ranges.iter().any(|c| c.contains(ip))));
        }
        MatchRule::Value { parameter, .. }
        | MatchRule::Regex { parameter, .. }
        | MatchRule::PayloadHmac { parameter, .. } => parameter,
    };
    let arg = match extract(parameter, rv) {
        Ok(a) => a,
        Err(ParamError::NotFound { .. } | ParamError::Base64 { .. }) => {
            return Ok(Outcome { value: false, mark: Some(Mark::Missing) })
        }
    };
    Ok(match m {
        MatchRule::Value { value, .. } => clean(ct_eq(arg.as_bytes(), value.as_bytes())),
        MatchRule::Regex { regex, .. } => clean(arg.len() <= MAX_REGEX_INPUT && regex.is_match(&arg)),
        MatchRule::PayloadHmac { algo, secret, .. } => {
            let key = secrets.get(secret).ok_or_else(|| RuleError::SecretUnavailable(secret.to_string()))?;
            let expected = algo.hex_mac(key, &rv.raw_body);
            // Every candidate is compared, in constant time each.
            let ok = extract_signatures(&arg, algo.prefix())
                .into_iter()
                .fold(false, |ok, sig| ct_eq(sig.as_bytes(), expected.as_bytes()) | ok);
            if ok {
                clean(true)
            } else {
                Outcome { value: false, mark: Some(Mark::Signature { empty_payload: rv.raw_body.is_empty() }) }
            }
        }
        MatchRule::IpWhitelist { .. } => unreachable!("handled above"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map};

    #[test]
    fn lower_hex_matches_auth_hex_for_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(lower_hex(&all), crate::auth::hex(&all));
    }

    fn rule(v: Value) -> Rule {
        parse_rule(v, "r").unwrap()
    }

    fn rv(payload: Value, body: &[u8], headers: &[(&str, &str)]) -> RequestValues {
        let mut h = Map::new();
        for (k, v) in headers {
            h.insert(k.to_string(), json!(v));
        }
        RequestValues {
            headers: h,
            query: Map::new(),
            payload: crate::hooks::body::Payload::Parsed(payload),
            raw_body: body.to_vec(),
            method: "POST".into(),
            remote_addr: "10.0.0.1:1234".into(),
            content_type: "application/json".into(),
        }
    }

    fn eval_json(r: Value, req: &RequestValues) -> Result<bool, RuleError> {
        evaluate(&rule(r), req, &Secrets::new(), false)
    }

    #[test]
    fn why_false_names_the_failing_part_and_never_the_value() {
        let r = rule(json!({"and": [
            {"match": {"type": "value", "value": "s3cret", "parameter": {"source": "header", "name": "X-Token"}}},
            {"match": {"type": "regex", "regex": "^refs/heads/main$", "parameter": {"source": "payload", "name": "ref"}}}
        ]}));
        let why = |req: &RequestValues| why_false(&r, req, &Secrets::new(), false);
        let req = rv(json!({"ref": "refs/heads/dev"}), b"{}", &[("X-Token", "s3cret")]);
        assert_eq!(why(&req), "and[1]: match regex on payload \"ref\" did not match");
        let req = rv(json!({"ref": "refs/heads/main"}), b"{}", &[("X-Token", "guess")]);
        assert_eq!(why(&req), "and[0]: match value on header \"X-Token\" did not match");
        let req = rv(json!({}), b"{}", &[]);
        assert_eq!(why(&req), "and[0]: match value on header \"X-Token\": the value is missing");
        let or = rule(json!({"or": [{"match": {"type": "ip-whitelist", "ip-range": "192.168.0.0/16"}}]}));
        assert_eq!(why_false(&or, &req, &Secrets::new(), false), "or: none of its 1 rules matched");
        let one = rule(json!({"match": {"type": "ip-whitelist", "ip-range": "192.168.0.0/16"}}));
        assert_eq!(why_false(&one, &req, &Secrets::new(), false), "match ip-whitelist did not match");
    }

    fn m(ty: &str, extra: Value) -> Value {
        let mut o = json!({"type": ty});
        o.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({ "match": o })
    }

    fn ref_is(v: &str) -> Value {
        m("value", json!({"value": v, "parameter": {"source": "payload", "name": "ref"}}))
    }

    #[test]
    fn value_and_regex() {
        let r = rv(json!({"ref": "refs/heads/main", "n": 7}), b"", &[]);
        assert_eq!(eval_json(ref_is("refs/heads/main"), &r), Ok(true));
        assert_eq!(eval_json(ref_is("refs/heads/dev"), &r), Ok(false));
        assert_eq!(
            eval_json(m("value", json!({"value": "7", "parameter": {"source": "payload", "name": "n"}})), &r),
            Ok(true)
        );
        let re = |p: &str| m("regex", json!({"regex": p, "parameter": {"source": "payload", "name": "ref"}}));
        assert_eq!(eval_json(re("heads/(main|master)$"), &r), Ok(true));
        assert_eq!(eval_json(re("^main"), &r), Ok(false));
        assert_eq!(eval_json(re(".*"), &r), Ok(true));
    }

    /// Regression (issue 12, also observed): a regex before the signature check let an
    /// unauthenticated client buy loop time with a large parameter.
    #[test]
    fn and_checks_signatures_before_other_children() {
        let secret = "s3cret";
        let body = br#"{"ref":"refs/heads/main"}"#;
        let re = m("regex", json!({"regex": "^x", "parameter": {"source": "payload", "name": "ref"}}));
        let sig = hmac_rule("payload-hmac-sha256", secret, "X-Sig");
        let unsigned = rv(json!({"ref": "refs/heads/main"}), body, &[("X-Sig", "sha256=00")]);
        // A false regex written first no longer hides a bad signature: the signature decides.
        assert_eq!(eval_json(json!({"and": [re, sig]}), &unsigned), Err(RuleError::Signature { empty_payload: false }));
        assert_eq!(
            eval_json(json!({"and": [ref_is("x"), {"not": sig}]}), &unsigned),
            Err(RuleError::Signature { empty_payload: false })
        );
        // With a good signature, the value is what the written order gives.
        let good = gh_sig(HmacAlgo::Sha256, secret, body);
        let signed = rv(json!({"ref": "refs/heads/main"}), body, &[("X-Sig", &good)]);
        assert_eq!(eval_json(json!({"and": [re, sig]}), &signed), Ok(false));
        assert_eq!(eval_json(json!({"and": [ref_is("refs/heads/main"), sig]}), &signed), Ok(true));
        let missing = m("value", json!({"value": "x", "parameter": {"source": "payload", "name": "nope"}}));
        assert_eq!(eval_json(json!({"and": [{"not": missing}, sig]}), &signed), Ok(false));
    }

    #[test]
    fn regex_input_is_bounded() {
        let re = m("regex", json!({"regex": "a$", "parameter": {"source": "payload", "name": "v"}}));
        let at_cap = "a".repeat(MAX_REGEX_INPUT);
        assert_eq!(eval_json(re.clone(), &rv(json!({ "v": at_cap }), b"", &[])), Ok(true));
        let over = "a".repeat(MAX_REGEX_INPUT + 1);
        assert_eq!(eval_json(re, &rv(json!({ "v": over }), b"", &[])), Ok(false), "longer than the cap: no match");
    }

    #[test]
    fn and_or_not() {
        let r = rv(json!({"ref": "refs/heads/main"}), b"", &[]);
        let t = ref_is("refs/heads/main");
        let f = ref_is("x");
        assert_eq!(eval_json(json!({"and": [t, t]}), &r), Ok(true));
        assert_eq!(eval_json(json!({"and": [t, f]}), &r), Ok(false));
        assert_eq!(eval_json(json!({"or": [f, t]}), &r), Ok(true));
        assert_eq!(eval_json(json!({"or": [f, f]}), &r), Ok(false));
        assert_eq!(eval_json(json!({"not": f}), &r), Ok(true));
        assert_eq!(eval_json(json!({"not": t}), &r), Ok(false));
        assert_eq!(eval_json(json!({"and": [t, {"or": [f, {"not": f}]}]}), &r), Ok(true));
    }

    #[test]
    fn missing_values_follow_adnanh() {
        let r = rv(json!({"ref": "refs/heads/main"}), b"", &[]);
        let t = ref_is("refs/heads/main");
        let missing = m("value", json!({"value": "x", "parameter": {"source": "payload", "name": "nope"}}));
        assert_eq!(eval_json(missing.clone(), &r), Ok(false));
        assert_eq!(eval_json(json!({"or": [missing, t]}), &r), Ok(true));
        // `not` inverts but keeps the mark: true alone and inside `or`, false inside `and`.
        assert_eq!(eval_json(json!({"not": missing}), &r), Ok(true));
        assert_eq!(eval_json(json!({"or": [{"not": missing}]}), &r), Ok(true));
        assert_eq!(eval_json(json!({"and": [t, {"not": missing}]}), &r), Ok(false));
        assert_eq!(eval_json(json!({"not": {"and": [{"not": missing}]}}), &r), Ok(true));
    }

    fn gh_sig(algo: HmacAlgo, secret: &str, body: &[u8]) -> String {
        format!("{}{}", algo.prefix(), algo.hex_mac(secret.as_bytes(), body))
    }

    fn hmac_rule(ty: &str, secret: &str, header: &str) -> Value {
        m(ty, json!({"secret": secret, "parameter": {"source": "header", "name": header}}))
    }

    #[test]
    fn adnanh_signature_vectors() {
        // From adnanh's hook_test.go: body {"a": "z"}, secret "secret".
        let body = br#"{"a": "z"}"#;
        assert_eq!(HmacAlgo::Sha1.hex_mac(b"secret", body), "b17e04cbb22afa8ffbff8796fc1894ed27badd9e");
        assert_eq!(
            HmacAlgo::Sha256.hex_mac(b"secret", body),
            "f417af3a21bd70379b5796d5f013915e7029f62c580fb0f500f59a35a6f04c89"
        );
        assert_eq!(
            HmacAlgo::Sha512.hex_mac(b"secret", body),
            "4ab17cc8ec668ead8bf498f87f8f32848c04d5ca3c9bcfcd3db9363f0deb44e580b329502a7fdff633d4d8fca301cc5c94a55a2fec458c675fb0ff2655898324"
        );
        assert_eq!(HmacAlgo::Sha1.hex_mac(b"secret", b""), "25af6174a0fcecc4d346680a72b7ce644b9a88e8");
        let cases = [
            ("b17e04cbb22afa8ffbff8796fc1894ed27badd9e", true),
            ("sha1=b17e04cbb22afa8ffbff8796fc1894ed27badd9e", true),
            ("sha1=XXXe04cbb22afa8ffbff8796fc1894ed27badd9e,sha1=b17e04cbb22afa8ffbff8796fc1894ed27badd9e", true),
            ("XXXe04cbb22afa8ffbff8796fc1894ed27badd9e", false),
            ("sha1=XXXe04cbb22afa8ffbff8796fc1894ed27badd9e", false),
            ("B17E04CBB22AFA8FFBFF8796FC1894ED27BADD9E", false),
            ("b17e04cbb22afa8ffbff8796fc1894ed27badd9e,other", false),
            ("sha1=bad, sha1=b17e04cbb22afa8ffbff8796fc1894ed27badd9e", false),
        ];
        for (sig, ok) in cases {
            let r = rv(Value::Null, body, &[("X-Hub-Signature", sig)]);
            let got = eval_json(hmac_rule("payload-hmac-sha1", "secret", "x-hub-signature"), &r);
            let want = if ok { Ok(true) } else { Err(RuleError::Signature { empty_payload: false }) };
            assert_eq!(got, want, "{sig}");
        }
    }

    #[test]
    fn every_hmac_type() {
        let body = b"{\"ref\":\"refs/heads/main\"}";
        for (ty, algo) in [
            ("payload-hmac-sha1", HmacAlgo::Sha1),
            ("payload-hash-sha1", HmacAlgo::Sha1),
            ("payload-hmac-sha256", HmacAlgo::Sha256),
            ("payload-hash-sha256", HmacAlgo::Sha256),
            ("payload-hmac-sha512", HmacAlgo::Sha512),
            ("payload-hash-sha512", HmacAlgo::Sha512),
        ] {
            let good = rv(Value::Null, body, &[("X-Sig", &gh_sig(algo, "k", body))]);
            assert_eq!(eval_json(hmac_rule(ty, "k", "X-Sig"), &good), Ok(true), "{ty}");
            let bad = rv(Value::Null, body, &[("X-Sig", &gh_sig(algo, "other", body))]);
            assert_eq!(
                eval_json(hmac_rule(ty, "k", "X-Sig"), &bad),
                Err(RuleError::Signature { empty_payload: false }),
                "{ty}"
            );
            let empty = rv(Value::Null, b"", &[("X-Sig", "00")]);
            assert_eq!(
                eval_json(hmac_rule(ty, "k", "X-Sig"), &empty),
                Err(RuleError::Signature { empty_payload: true })
            );
            // No signature at all: the value is missing, so the rule is just not satisfied.
            assert_eq!(eval_json(hmac_rule(ty, "k", "X-Sig"), &rv(Value::Null, body, &[])), Ok(false));
        }
    }

    #[test]
    fn soft_signature_failures_only_inside_or() {
        let body = b"{}";
        let r = rv(Value::Null, body, &[("X-Sig", &gh_sig(HmacAlgo::Sha256, "new", body))]);
        let old = hmac_rule("payload-hmac-sha256", "old", "X-Sig");
        let new = hmac_rule("payload-hmac-sha256", "new", "X-Sig");
        let rotation = rule(json!({"or": [old, new]}));
        let s = Secrets::new();
        assert_eq!(evaluate(&rotation, &r, &s, true), Ok(true));
        assert_eq!(evaluate(&rotation, &r, &s, false), Err(RuleError::Signature { empty_payload: false }));
        let only_old = rule(json!({"or": [old, ref_is("x")]}));
        assert_eq!(evaluate(&only_old, &r, &s, true), Ok(false));
        // Outside an `or` a mismatch stays an error, soft or not.
        assert_eq!(evaluate(&rule(old.clone()), &r, &s, true), Err(RuleError::Signature { empty_payload: false }));
        assert_eq!(
            evaluate(&rule(json!({"and": [old]})), &r, &s, true),
            Err(RuleError::Signature { empty_payload: false })
        );
        assert_eq!(
            evaluate(&rule(json!({"not": old})), &r, &s, true),
            Err(RuleError::Signature { empty_payload: false })
        );
        assert!(RuleError::Signature { empty_payload: false }.to_string() == "invalid payload signature");
    }

    #[test]
    fn secrets_from_elsewhere() {
        let body = b"x";
        let r = rv(Value::Null, body, &[("X-Sig", &gh_sig(HmacAlgo::Sha256, "from-env", body))]);
        let rl = rule(m(
            "payload-hmac-sha256",
            json!({"secret": {"env": "HOOKCAST_TEST_NEVER_SET"}, "parameter": {"source": "header", "name": "X-Sig"}}),
        ));
        assert_eq!(
            evaluate(&rl, &r, &Secrets::new(), false),
            Err(RuleError::SecretUnavailable("environment variable HOOKCAST_TEST_NEVER_SET".into()))
        );
        assert!(Secrets::load(&rl).unwrap_err().to_string().contains("HOOKCAST_TEST_NEVER_SET"));
        let mut s = Secrets::new();
        s.insert(SecretSource::Env("HOOKCAST_TEST_NEVER_SET".into()), b"from-env".to_vec());
        assert_eq!(evaluate(&rl, &r, &s, false), Ok(true));
        assert_eq!(format!("{s:?}"), "Secrets(1 loaded)");
    }

    #[test]
    fn ip_whitelist() {
        let at = |addr: &str| {
            let mut r = rv(Value::Null, b"", &[]);
            r.remote_addr = addr.into();
            r
        };
        let wl = |range: &str| m("ip-whitelist", json!({"ip-range": range}));
        // adnanh's TestCheckIPWhitelist table.
        assert_eq!(eval_json(wl("  10.0.0.1 "), &at("10.0.0.1:1234")), Ok(true));
        assert_eq!(eval_json(wl("  10.0.0.0 "), &at("10.0.0.1:1234")), Ok(false));
        assert_eq!(eval_json(wl("  10.0.0.1 10.0.0.1 "), &at("10.0.0.1:1234")), Ok(true));
        assert_eq!(eval_json(wl("  10.0.0.0/31 "), &at("10.0.0.1:1234")), Ok(true));
        assert_eq!(eval_json(wl("2001:db8:1::/48"), &at("[2001:db8:1:2::1]:1234")), Ok(true));
        assert_eq!(eval_json(wl("2001:db8:1::/48 2001:db8:1::/64"), &at("[2001:db8:1:2::1]:1234")), Ok(true));
        assert_eq!(eval_json(wl("2001:db8:1::/64"), &at("[2001:db8:1:2::1]:1234")), Ok(false));
        // Our fix: a bare IPv6 address is a /128, not adnanh's /32.
        assert_eq!(eval_json(wl("2001:db8::1"), &at("[2001:db8::1]:1")), Ok(true));
        assert_eq!(eval_json(wl("2001:db8::1"), &at("[2001:db8:ffff::2]:1")), Ok(false));
        // IPv4-mapped clients count as IPv4; bare addresses without a port are read too.
        assert_eq!(eval_json(wl("192.0.2.0/24"), &at("[::ffff:192.0.2.9]:80")), Ok(true));
        assert_eq!(eval_json(wl("192.0.2.0/24"), &at("192.0.2.9")), Ok(true));
        assert_eq!(eval_json(wl("192.0.2.0/24"), &at("nonsense")), Err(RuleError::BadRemoteAddr("nonsense".into())));
    }

    #[test]
    fn extract_signatures_like_adnanh() {
        assert_eq!(extract_signatures("sha1=a", "sha1="), ["a"]);
        assert_eq!(extract_signatures("a", "sha1="), ["a"]);
        assert_eq!(extract_signatures("sha1=a,x,sha1=b", "sha1="), ["a", "b"]);
        assert!(extract_signatures("a,b", "sha1=").is_empty());
    }

    #[test]
    fn parse_errors_name_their_path() {
        let p = json!({"source": "payload", "name": "ref"});
        let cases = [
            (json!({}), "r: empty rule (adnanh/webhook treats {} as never true; write a rule, or leave trigger-rule out to always trigger)"),
            (json!({"and": []}), "r.and: empty \"and\" list (write at least one rule)"),
            (json!({"or": {}}), "r.or: expected a list of rules, found an object"),
            (json!({"and": [{"match": {}}], "or": []}), "r: a rule holds exactly one of and, or, not, match; found and, or"),
            (json!({"nand": []}), "r.nand: unknown field (did you mean \"and\"?)"),
            (json!({"and": [{"not": {"match": {"type": "regex", "regex": "(", "parameter": p}}}]}), "r.and[0].not.match.regex: invalid regex \"(\": "),
            (json!({"match": {"type": "value", "value": [1], "parameter": p}}), "r.match.value: expected a string, found a list"),
            (json!({"match": {"type": "value", "parameter": p}}), "r.match.value: missing (write \"\" to match an empty value)"),
            (json!({"match": {"type": "value", "value": "x"}}), "r.match.parameter: missing (the request value to test)"),
            (json!({"match": {"type": "regex", "parameter": p}}), "r.match.regex: missing"),
            (json!({"match": {"type": "payload-hmac-sha256", "parameter": p}}), "r.match.secret: missing"),
            (json!({"match": {"type": "payload-hmac-sha256", "secret": "", "parameter": p}}), "r.match.secret: empty secret"),
            (json!({"match": {"type": "ip-whitelist", "ip-range": "10.0.0.0/33"}}), "r.match.ip-range: not an address or CIDR: \"10.0.0.0/33\""),
            (json!({"match": {"type": "ip-whitelist", "ip-range": "  "}}), "r.match.ip-range: empty (addresses or CIDRs separated by spaces)"),
            (json!({"match": {"type": "ip-whitelist", "ip-range": "::1", "parameter": p}}), "r.match.parameter: not used by match type \"ip-whitelist\" (it reads ip-range)"),
            (json!({"match": {"type": "value", "value": "x", "regex": "y", "parameter": p}}), "r.match.regex: not used by match type \"value\" (it reads value and parameter)"),
            (json!({"match": {"type": "scalr-signature", "secret": "k"}}), "r.match.type: not supported by hookcast: match type \"scalr-signature\" (use payload-hmac-* or a provider)"),
            (json!({"match": {"type": "equals"}}), "r.match.type: unknown match type \"equals\" (one of value, regex, payload-hmac-sha1, payload-hmac-sha256, payload-hmac-sha512, ip-whitelist)"),
            (json!({"match": {"type": "value", "value": "x", "parameter": {"source": "payload"}}}), "r.match.parameter.name: missing (source \"payload\" reads a named value)"),
            (json!({"match": {"Type": "value"}}), "r.match.Type: unknown field (did you mean \"type\"?)"),
            (json!([]), "r: expected a rule object, found a list"),
        ];
        for (v, want) in cases {
            let got = parse_rule(v, "r").unwrap_err().to_string();
            assert!(got.starts_with(want), "got {got}\nwant {want}");
        }
    }

    #[test]
    fn debug_hides_inline_secrets() {
        let r = rule(hmac_rule("payload-hmac-sha1", "hunter2", "X-Sig"));
        assert!(!format!("{r:?}").contains("hunter2"));
    }
}
