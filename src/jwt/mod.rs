//! Signed subscriber tokens: verifying a JWT that the user's own app signed, and turning its
//! claims into a compact [`Grant`] of topic patterns.
//!
//! How a verifier is chosen (algorithm confusion is defeated here): the header's `alg` must be
//! spelt exactly as one configured verifier's [`Alg`]; `none` and every other name are
//! [`Refusal::UnsupportedAlg`]. So an HS256 token is only ever checked with an HS256 secret and an
//! EdDSA token only with an Ed25519 key; a public key is never used as an HMAC secret. Among the
//! verifiers of that algorithm, a token with a `kid` is checked against the verifiers whose `kid`
//! is that one, or, when none is, against those configured without a `kid` (a `kid` is then only
//! a hint the config does not ask for); a token without a `kid` is checked against the verifiers
//! configured without one. No candidate: [`Refusal::UnknownKey`]. The first candidate whose key
//! verifies the signature checks the claims; none: [`Refusal::BadSignature`].
//!
//! Claims: `exp` (required unless the verifier says `require_exp: false`), `nbf` and `iat` (an
//! `iat` in the future beyond the leeway is [`Refusal::NotYetValid`]) are JSON numbers of unix
//! seconds. `iss` must equal the verifier's issuer when one is configured; `aud` (a string or a
//! list) must contain one of its audiences when some are configured, and is not looked at
//! otherwise.
//!
//! Grants: the `hookcast` claim's `subscribe`/`publish` topic patterns (an invalid one refuses the
//! token: [`Refusal::BadClaim`]), Mercure's `mercure` claim (`"*"` is `**`; entries that are not
//! hookcast patterns, such as Mercure's URL topics, are skipped), and the verifier's templates
//! expanded with claim values. A template names top-level claims as `{name}`; a string claim (or a
//! whole number) gives one value, a list of strings one pattern per element; a template naming a
//! claim the token does not have gives nothing (so `teams/{teams}/**` suits users without teams).
//! A value must be one plain topic segment (`A-Z a-z 0-9 . _ ~ -`, not `.` or `..`), otherwise
//! the token is refused with [`Refusal::BadClaim`]: a claim can never widen a pattern.

pub mod jws;

use crate::topic;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use std::fmt;
use std::time::Duration;

/// Most topic patterns one grant (subscribe and publish together) may carry.
pub const MAX_GRANTS: usize = 64;
/// Longest claim value a template substitutes, in bytes.
const MAX_VALUE_LEN: usize = 128;

/// A signature algorithm a verifier accepts (its JOSE name, RFC 7518).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::upper_case_acronyms)]
pub enum Alg {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// Ed25519 (RFC 8037).
    EdDSA,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
}

impl Alg {
    /// Every algorithm, for messages.
    pub const ALL: [Alg; 6] = [Alg::HS256, Alg::HS384, Alg::HS512, Alg::EdDSA, Alg::ES256, Alg::RS256];

    /// The JOSE name, exactly as a header carries it.
    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
            Alg::EdDSA => "EdDSA",
            Alg::ES256 => "ES256",
            Alg::RS256 => "RS256",
        }
    }

    /// The algorithm a header's `alg` names; case matters (RFC 7515 §4.1.1).
    pub fn parse(s: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == s)
    }

    /// Whether this is an HMAC algorithm (its key a shared secret).
    pub fn is_hmac(self) -> bool {
        matches!(self, Alg::HS256 | Alg::HS384 | Alg::HS512)
    }

    /// The shortest secret accepted for an HMAC algorithm: its hash's size (RFC 7518 §3.2).
    pub fn min_secret_len(self) -> usize {
        match self {
            Alg::HS384 => 48,
            Alg::HS512 => 64,
            _ => 32,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A verifier's key.
#[derive(Clone, PartialEq, Eq)]
pub enum Key {
    /// An HMAC secret (HS256/384/512).
    Secret(Vec<u8>),
    /// An Ed25519 public key (EdDSA).
    Ed25519(ed25519_dalek::VerifyingKey),
    /// A P-256 public key (ES256).
    P256(p256::ecdsa::VerifyingKey),
    /// An RSA public key (RS256).
    Rsa(Box<rsa::RsaPublicKey>),
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Secret(s) => write!(f, "Secret(<{} bytes redacted>)", s.len()),
            Key::Ed25519(_) => write!(f, "Ed25519(..)"),
            Key::P256(_) => write!(f, "P256(..)"),
            Key::Rsa(_) => write!(f, "Rsa(..)"),
        }
    }
}

/// Why a PEM file is not a public key for an algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Key {
    /// Reads the public key for `alg` from PEM text (SPKI, `-----BEGIN PUBLIC KEY-----`; RS256
    /// also takes PKCS#1 `RSA PUBLIC KEY`). RSA keys under 2048 bits are refused.
    pub fn from_pem(alg: Alg, pem: &str) -> Result<Key, KeyError> {
        use p256::pkcs8::DecodePublicKey;
        let want = || {
            KeyError(format!(
                "not a {alg} public key in PEM (\"-----BEGIN PUBLIC KEY-----\"; from a private key: \
                 openssl pkey -in private.pem -pubout)"
            ))
        };
        if pem.contains("PRIVATE KEY-----") {
            return Err(KeyError(
                "this is a private key: give hookcast only the public one (openssl pkey -in private.pem -pubout)"
                    .into(),
            ));
        }
        match alg {
            Alg::EdDSA => ed25519_dalek::VerifyingKey::from_public_key_pem(pem).map(Key::Ed25519).map_err(|_| want()),
            Alg::ES256 => p256::ecdsa::VerifyingKey::from_public_key_pem(pem).map(Key::P256).map_err(|_| want()),
            Alg::RS256 => {
                use rsa::pkcs1::DecodeRsaPublicKey;
                use rsa::traits::PublicKeyParts;
                let k = rsa::RsaPublicKey::from_public_key_pem(pem)
                    .or_else(|_| rsa::RsaPublicKey::from_pkcs1_pem(pem))
                    .map_err(|_| want())?;
                if k.size() < 256 {
                    return Err(KeyError(format!("an RSA key of {} bits: at least 2048 are needed", k.size() * 8)));
                }
                Ok(Key::Rsa(Box::new(k)))
            }
            _ => Err(KeyError(format!("{alg} takes a secret, not a key file"))),
        }
    }

    /// Whether this key verifies `sig` over `input` with `alg`; comparisons are constant-time.
    fn verifies(&self, alg: Alg, input: &[u8], sig: &[u8]) -> bool {
        use p256::ecdsa::signature::Verifier;
        fn hmac<M: Mac + hmac::digest::KeyInit>(key: &[u8], input: &[u8], sig: &[u8]) -> bool {
            match <M as Mac>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(input);
                    m.verify_slice(sig).is_ok()
                }
                Err(_) => false,
            }
        }
        match (alg, self) {
            (Alg::HS256, Key::Secret(k)) => hmac::<Hmac<sha2::Sha256>>(k, input, sig),
            (Alg::HS384, Key::Secret(k)) => hmac::<Hmac<sha2::Sha384>>(k, input, sig),
            (Alg::HS512, Key::Secret(k)) => hmac::<Hmac<sha2::Sha512>>(k, input, sig),
            (Alg::EdDSA, Key::Ed25519(k)) => match ed25519_dalek::Signature::from_slice(sig) {
                Ok(s) => k.verify_strict(input, &s).is_ok(),
                Err(_) => false,
            },
            (Alg::ES256, Key::P256(k)) => match p256::ecdsa::Signature::from_slice(sig) {
                Ok(s) if sig.len() == 64 => k.verify(input, &s).is_ok(),
                _ => false,
            },
            (Alg::RS256, Key::Rsa(k)) => {
                use sha2::Digest;
                let hashed = sha2::Sha256::digest(input);
                k.verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &hashed, sig).is_ok()
            }
            // A key of another family never verifies: no confusion between them.
            _ => false,
        }
    }
}

/// One configured verifier (config `jwt[i]`).
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Its name, for metrics and logs (`jwt-<i>` by default).
    pub name: String,
    /// The one algorithm it accepts.
    pub alg: Alg,
    /// Secret bytes for HS*, the parsed public key for the others.
    pub key: Key,
    /// The `kid` a token must name to be checked with this key, if any.
    pub kid: Option<String>,
    /// The `iss` a token must carry, if any.
    pub issuer: Option<String>,
    /// The audiences one of which a token's `aud` must contain (none: `aud` is not checked).
    pub audience: Vec<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`.
    pub leeway: Duration,
    /// Whether a token without `exp` is refused.
    pub require_exp: bool,
    /// Subscribe topic templates (`users/{sub}/**`).
    pub subscribe: Vec<String>,
    /// Publish topic templates.
    pub publish: Vec<String>,
}

/// One part of a topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Claim(String),
}

/// Splits a topic template into text and `{claim}` placeholders, and checks that it gives a valid
/// pattern with any valid value: the one check `config` and the verifier share.
pub fn parse_template(t: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find(['{', '}']) {
        if rest.as_bytes()[open] == b'}' {
            return Err(format!("a '}}' without its '{{' in {t:?}"));
        }
        if open > 0 {
            parts.push(TemplatePart(Part::Text(rest[..open].to_string())));
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { return Err(format!("a '{{' without its '}}' in {t:?}")) };
        let name = &after[..close];
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !ok {
            return Err(format!("{{{name}}} is not a claim name (letters, digits, _ - .) in {t:?}"));
        }
        parts.push(TemplatePart(Part::Claim(name.to_string())));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(TemplatePart(Part::Text(rest.to_string())));
    }
    // Any value is a plain segment, so one sample value stands for all of them.
    let sample: String = parts
        .iter()
        .map(|p| match &p.0 {
            Part::Text(s) => s.as_str(),
            Part::Claim(_) => "x",
        })
        .collect();
    topic::validate_pattern(&sample).map_err(|e| format!("{e}: {t:?}"))?;
    Ok(parts)
}

/// One piece of a parsed topic template ([`parse_template`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplatePart(Part);

/// One parsed topic template.
type Template = Vec<TemplatePart>;

/// The configured verifiers.
#[derive(Debug, Clone, Default)]
pub struct Verifiers {
    list: Vec<VerifierConfig>,
    /// Each verifier's parsed subscribe and publish templates.
    templates: Vec<(Vec<Template>, Vec<Template>)>,
}

/// What a verified token grants (kept per session: compact).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Topic patterns it may subscribe to, validated ([`crate::topic`]).
    pub subscribe: Box<[Box<str>]>,
    /// Topic patterns it may publish to.
    pub publish: Box<[Box<str>]>,
    /// `exp`, unix seconds (`None` only when the verifier does not require `exp` and there is none).
    pub expires: Option<u64>,
    /// `sub`, for logs.
    pub subject: Option<Box<str>>,
    /// Index into the verifiers (metrics).
    pub verifier: usize,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a compact JWS with JSON header and claims, or over the size limit.
    Malformed,
    /// `alg` is `none` or no verifier takes it.
    UnsupportedAlg,
    /// No verifier of that algorithm has the token's key id.
    UnknownKey,
    /// The signature does not verify.
    BadSignature,
    /// Past `exp`.
    Expired,
    /// Before `nbf`, or `iat` in the future.
    NotYetValid,
    /// `aud` names none of the configured audiences.
    WrongAudience,
    /// `iss` is not the configured issuer.
    WrongIssuer,
    /// No `exp`, and the verifier requires one.
    MissingExp,
    /// A claim has the wrong type, or a value a template cannot use.
    BadClaim,
    /// The token grants no topic at all.
    NoGrant,
}

impl Refusal {
    /// The reason's stable name, for JSON error bodies and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::UnsupportedAlg => "unsupported_alg",
            Refusal::UnknownKey => "unknown_key",
            Refusal::BadSignature => "bad_signature",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::WrongAudience => "wrong_audience",
            Refusal::WrongIssuer => "wrong_issuer",
            Refusal::MissingExp => "missing_exp",
            Refusal::BadClaim => "bad_claim",
            Refusal::NoGrant => "no_grant",
        }
    }

    /// A sentence for people; never a secret or a claim value.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Malformed => "the token is not a well-formed JWT (compact JWS with a JSON header and claims)",
            Refusal::UnsupportedAlg => "the token's algorithm is not one this server accepts",
            Refusal::UnknownKey => "the token's key id (kid) names no key this server has",
            Refusal::BadSignature => "the token's signature does not verify",
            Refusal::Expired => "the token has expired",
            Refusal::NotYetValid => "the token is not valid yet (nbf or iat in the future)",
            Refusal::WrongAudience => "the token is not for this audience (aud)",
            Refusal::WrongIssuer => "the token is not from the expected issuer (iss)",
            Refusal::MissingExp => "the token has no expiry (exp)",
            Refusal::BadClaim => "a claim of the token has the wrong type or a value that cannot name a topic",
            Refusal::NoGrant => "the token grants no topic",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// A numeric date claim: absent, or whole seconds (fractions dropped).
fn date(claims: &Map<String, Value>, key: &str) -> Result<Option<u64>, Refusal> {
    match claims.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(v), _) => Ok(Some(v)),
            (None, Some(f)) if (0.0..1e15).contains(&f) => Ok(Some(f as u64)),
            _ => Err(Refusal::BadClaim),
        },
        Some(_) => Err(Refusal::BadClaim),
    }
}

fn check_claims(v: &VerifierConfig, claims: &Map<String, Value>, now: u64) -> Result<Option<u64>, Refusal> {
    let leeway = v.leeway.as_secs();
    let exp = date(claims, "exp")?;
    match exp {
        // RFC 7519 §4.1.4: the current time must be before `exp`.
        Some(exp) if now >= exp.saturating_add(leeway) => return Err(Refusal::Expired),
        None if v.require_exp => return Err(Refusal::MissingExp),
        _ => {}
    }
    let future = |t: Option<u64>| t.is_some_and(|t| t > now.saturating_add(leeway));
    if future(date(claims, "nbf")?) || future(date(claims, "iat")?) {
        return Err(Refusal::NotYetValid);
    }
    if let Some(iss) = &v.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(iss.as_str()) {
            return Err(Refusal::WrongIssuer);
        }
    }
    if !v.audience.is_empty() {
        let ok = match claims.get("aud") {
            Some(Value::String(a)) => v.audience.contains(a),
            Some(Value::Array(list)) => {
                list.iter().any(|a| a.as_str().is_some_and(|a| v.audience.iter().any(|w| w == a)))
            }
            _ => false,
        };
        if !ok {
            return Err(Refusal::WrongAudience);
        }
    }
    Ok(exp)
}

/// The values a template's `{name}` takes from the claims: none when the claim is absent.
fn claim_values<'a>(claims: &'a Map<String, Value>, name: &str) -> Result<Vec<std::borrow::Cow<'a, str>>, Refusal> {
    fn segment(s: &str) -> Result<std::borrow::Cow<'_, str>, Refusal> {
        let ok = !s.is_empty()
            && s.len() <= MAX_VALUE_LEN
            && s != "."
            && s != ".."
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
        if ok {
            Ok(s.into())
        } else {
            Err(Refusal::BadClaim)
        }
    }
    match claims.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![segment(s)?]),
        Some(Value::Number(n)) if n.is_u64() => Ok(vec![n.to_string().into()]),
        Some(Value::Array(items)) if items.len() <= MAX_GRANTS => items
            .iter()
            .map(|i| match i {
                Value::String(s) => segment(s),
                _ => Err(Refusal::BadClaim),
            })
            .collect(),
        Some(_) => Err(Refusal::BadClaim),
    }
}

/// Expands one template into `out`; a claim it names that is absent gives nothing.
fn expand(t: &[TemplatePart], claims: &Map<String, Value>, out: &mut Vec<Box<str>>) -> Result<(), Refusal> {
    let mut partial = vec![String::new()];
    for p in t {
        match &p.0 {
            Part::Text(s) => partial.iter_mut().for_each(|acc| acc.push_str(s)),
            Part::Claim(name) => {
                let values = claim_values(claims, name)?;
                if partial.len() * values.len() > MAX_GRANTS {
                    return Err(Refusal::BadClaim);
                }
                partial = partial.iter().flat_map(|acc| values.iter().map(move |v| format!("{acc}{v}"))).collect();
            }
        }
    }
    for p in partial {
        // A long value can still make the pattern too long or deep: refused, never cut.
        topic::validate_pattern(&p).map_err(|_| Refusal::BadClaim)?;
        push(out, p.into())?;
    }
    Ok(())
}

fn push(out: &mut Vec<Box<str>>, p: Box<str>) -> Result<(), Refusal> {
    if !out.contains(&p) {
        if out.len() >= MAX_GRANTS {
            return Err(Refusal::BadClaim);
        }
        out.push(p);
    }
    Ok(())
}

/// Adds the `subscribe` and `publish` lists of a `hookcast` or `mercure` claim.
fn claim_grants(
    claim: &Value,
    mercure: bool,
    sub: &mut Vec<Box<str>>,
    publ: &mut Vec<Box<str>>,
) -> Result<(), Refusal> {
    let Value::Object(o) = claim else { return Err(Refusal::BadClaim) };
    for (key, out) in [("subscribe", sub), ("publish", publ)] {
        let list = match o.get(key) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(l)) if l.len() <= MAX_GRANTS => l,
            Some(_) => return Err(Refusal::BadClaim),
        };
        for item in list {
            let Value::String(p) = item else { return Err(Refusal::BadClaim) };
            let p = if mercure && p == "*" { "**" } else { p.as_str() };
            match topic::validate_pattern(p) {
                Ok(()) => push(out, p.into())?,
                // Mercure topics are mostly URLs and URI templates: not ours to grant.
                Err(_) if mercure => {}
                Err(_) => return Err(Refusal::BadClaim),
            }
        }
    }
    Ok(())
}

impl Verifiers {
    /// Takes the verifiers; their templates were checked when the config was read (one that
    /// does not parse grants nothing).
    pub fn new(list: Vec<VerifierConfig>) -> Verifiers {
        let parse = |ts: &[String]| ts.iter().filter_map(|t| parse_template(t).ok()).collect::<Vec<_>>();
        let templates = list.iter().map(|v| (parse(&v.subscribe), parse(&v.publish))).collect();
        Verifiers { list, templates }
    }

    /// Whether no verifier is configured (JWTs are then not accepted at all).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Each verifier's name (for metrics labels), by index.
    pub fn names(&self) -> Vec<&str> {
        self.list.iter().map(|v| v.name.as_str()).collect()
    }

    /// The verifiers, in config order.
    pub fn configs(&self) -> &[VerifierConfig] {
        &self.list
    }

    /// Verifies a compact JWS at unix time `now` (seconds): the grant it carries, or why not.
    pub fn verify(&self, token: &str, now: u64) -> Result<Grant, Refusal> {
        let jws = jws::parse(token).map_err(|_| Refusal::Malformed)?;
        let alg = Alg::parse(&jws.alg).ok_or(Refusal::UnsupportedAlg)?;
        let of_alg = || self.list.iter().enumerate().filter(move |(_, v)| v.alg == alg);
        if of_alg().next().is_none() {
            return Err(Refusal::UnsupportedAlg);
        }
        let by_kid: Vec<usize> = match &jws.kid {
            Some(kid) => of_alg().filter(|(_, v)| v.kid.as_ref() == Some(kid)).map(|(i, _)| i).collect(),
            None => Vec::new(),
        };
        let candidates = if by_kid.is_empty() {
            of_alg().filter(|(_, v)| v.kid.is_none()).map(|(i, _)| i).collect()
        } else {
            by_kid
        };
        if candidates.is_empty() {
            return Err(Refusal::UnknownKey);
        }
        let Some(i) =
            candidates.into_iter().find(|&i| self.list[i].key.verifies(alg, jws.signing_input, &jws.signature))
        else {
            return Err(Refusal::BadSignature);
        };
        let v = &self.list[i];
        let claims = &jws.payload;
        let expires = check_claims(v, claims, now)?;
        let (mut subscribe, mut publish) = (Vec::new(), Vec::new());
        if let Some(c) = claims.get("hookcast") {
            claim_grants(c, false, &mut subscribe, &mut publish)?;
        }
        if let Some(c) = claims.get("mercure") {
            claim_grants(c, true, &mut subscribe, &mut publish)?;
        }
        let (sub_t, pub_t) = &self.templates[i];
        for t in sub_t {
            expand(t, claims, &mut subscribe)?;
        }
        for t in pub_t {
            expand(t, claims, &mut publish)?;
        }
        if subscribe.len() + publish.len() > MAX_GRANTS {
            return Err(Refusal::BadClaim);
        }
        if subscribe.is_empty() && publish.is_empty() {
            return Err(Refusal::NoGrant);
        }
        let subject = match claims.get("sub") {
            None => None,
            // Logged, so bounded; any string is fine there.
            Some(Value::String(s)) if s.len() <= 256 => Some(s.as_str().into()),
            Some(_) => return Err(Refusal::BadClaim),
        };
        Ok(Grant {
            subscribe: subscribe.into_boxed_slice(),
            publish: publish.into_boxed_slice(),
            expires,
            subject,
            verifier: i,
        })
    }
}

/// Signs `claims` as an HS* token (for `hookcast token jwt` and tests).
pub fn sign_hs(alg: Alg, secret: &[u8], kid: Option<&str>, claims: &Value) -> Option<String> {
    fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], input: &[u8]) -> Option<Vec<u8>> {
        let mut m = <M as Mac>::new_from_slice(key).ok()?;
        m.update(input);
        Some(m.finalize().into_bytes().to_vec())
    }
    let mut header = serde_json::json!({"alg": alg.name(), "typ": "JWT"});
    if let Some(k) = kid {
        header["kid"] = k.into();
    }
    let input = jws::signing_input(&header, claims);
    let sig = match alg {
        Alg::HS256 => mac::<Hmac<sha2::Sha256>>(secret, input.as_bytes())?,
        Alg::HS384 => mac::<Hmac<sha2::Sha384>>(secret, input.as_bytes())?,
        Alg::HS512 => mac::<Hmac<sha2::Sha512>>(secret, input.as_bytes())?,
        _ => return None,
    };
    Some(format!("{input}.{}", jws::encode_signature(&sig)))
}

/// One line for `hookcast check`: what a verifier accepts and grants, never its secret;
/// `key_source` says where its key came from.
pub fn describe(v: &VerifierConfig, key_source: &str) -> String {
    let mut s = format!("jwt {:?}: {}, {key_source}", v.name, v.alg);
    if let Some(k) = &v.kid {
        s.push_str(&format!(", kid {k:?}"));
    }
    if let Some(i) = &v.issuer {
        s.push_str(&format!(", iss {i:?}"));
    }
    if !v.audience.is_empty() {
        s.push_str(&format!(", aud {}", v.audience.join(" or ")));
    }
    s.push_str(&format!(", leeway {}s", v.leeway.as_secs()));
    s.push_str(if v.require_exp { ", exp required" } else { ", exp optional" });
    s.push_str("; grants the hookcast and mercure claims");
    if !v.subscribe.is_empty() {
        s.push_str(&format!(", subscribe {}", v.subscribe.join(" ")));
    }
    if !v.publish.is_empty() {
        s.push_str(&format!(", publish {}", v.publish.join(" ")));
    }
    s
}

#[cfg(test)]
mod tests;
