//! The `jwt` list (one verifier each, [`VerifierConfig`]) and `jwt_cookie`. Secrets and key
//! files are read here, so a missing variable, a short secret or a bad PEM fails `hookcast check`
//! and start-up, not the first token.

use super::json::{err, kind, ConfigError, Obj};
use crate::hooks::secret::parse_secret;
use crate::jwt::{parse_template, Alg, Key, VerifierConfig};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Most verifiers (several at once are for key rotation, not for hundreds of apps).
const MAX_VERIFIERS: usize = 16;
/// Most templates in one verifier's `subscribe` or `publish`.
const MAX_TEMPLATES: usize = 16;
/// The cookie a JWT may come in when the config does not name one.
pub const DEFAULT_COOKIE: &str = "hookcast_jwt";

/// Reads the `jwt` list: the verifiers, and where each one's key came from (for `check`).
pub(crate) fn verifiers(
    items: Vec<(String, Value)>,
    base_dir: &Path,
) -> Result<(Vec<VerifierConfig>, Vec<String>), ConfigError> {
    if items.len() > MAX_VERIFIERS {
        return err("jwt", format!("at most {MAX_VERIFIERS} verifiers"));
    }
    let mut out: Vec<VerifierConfig> = Vec::new();
    let mut sources = Vec::new();
    for (i, (path, v)) in items.into_iter().enumerate() {
        let (v, source) = verifier(Obj::new(v, &path)?, i, base_dir)?;
        if out.iter().any(|o| o.name == v.name) {
            return err(&format!("{path}.name"), format!("two verifiers are named {:?}", v.name));
        }
        out.push(v);
        sources.push(source);
    }
    Ok((out, sources))
}

fn verifier(mut o: Obj, i: usize, base_dir: &Path) -> Result<(VerifierConfig, String), ConfigError> {
    let name_path = o.at("name");
    let name = match o.opt_str("name")? {
        None => format!("jwt-{i}"),
        Some(n)
            if !n.is_empty()
                && n.len() <= 64
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) =>
        {
            n
        }
        Some(n) => {
            return err(&name_path, format!("1 to 64 of the characters A-Z a-z 0-9 _ . - expected, found {n:?}"))
        }
    };
    let alg_path = o.at("alg");
    let names = || Alg::ALL.map(Alg::name).join(", ");
    let alg = match o.opt_str("alg")? {
        None => return err(&alg_path, format!("missing: the algorithm the app signs with ({})", names())),
        Some(a) => match Alg::parse(&a) {
            Some(alg) => alg,
            None => return err(&alg_path, format!("unknown algorithm {a:?} (one of {}; never \"none\")", names())),
        },
    };
    let secret_path = o.at("secret");
    let file_path = o.at("key_file");
    let secret = o.take_raw("secret").filter(|v| !v.is_null());
    let key_file = o.opt_str("key_file")?;
    let (key, source) = match (alg.is_hmac(), secret, key_file) {
        (true, Some(s), None) => {
            let source = parse_secret(s, &secret_path)?;
            let bytes = source.resolve().map_err(|e| ConfigError { path: secret_path.clone(), message: e.message })?;
            if bytes.len() < alg.min_secret_len() {
                return err(
                    &secret_path,
                    format!(
                        "an {alg} secret must be at least {} bytes, this one has {} (make one with `openssl rand \
                         -base64 {}`)",
                        alg.min_secret_len(),
                        bytes.len(),
                        alg.min_secret_len()
                    ),
                );
            }
            (Key::Secret(bytes), format!("secret from {source}"))
        }
        (true, None, Some(_)) => return err(&file_path, format!("{alg} takes a \"secret\", not a key file")),
        (true, None, None) => return err(&secret_path, format!("missing: {alg} needs the secret the app signs with")),
        (false, None, Some(f)) => {
            let file = base_dir.join(&f);
            let pem = std::fs::read_to_string(&file)
                .or_else(|e| err(&file_path, format!("cannot read {}: {e}", file.display())))?;
            let key = Key::from_pem(alg, &pem).or_else(|e| err(&file_path, format!("{}: {e}", file.display())))?;
            (key, format!("public key from {}", file.display()))
        }
        (false, Some(_), _) => {
            return err(
                &secret_path,
                format!("{alg} verifies with a public key: give \"key_file\" (PEM), not a secret"),
            )
        }
        (false, None, None) => {
            return err(&file_path, format!("missing: {alg} needs the app's public key (a PEM file)"))
        }
        (true, Some(_), Some(_)) => return err(&file_path, "give either \"secret\" or \"key_file\", not both"),
    };
    let kid_path = o.at("kid");
    let kid = match o.opt_str("kid")? {
        Some(k) if k.is_empty() || k.len() > 256 => return err(&kid_path, "1 to 256 characters expected"),
        k => k,
    };
    let issuer = o.opt_str("issuer")?;
    let aud_path = o.at("audience");
    let audience = match o.take_raw("audience") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s],
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                other => err(&format!("{aud_path}[{i}]"), format!("expected a string, found {}", kind(&other))),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return err(&aud_path, format!("expected a string or a list of strings, found {}", kind(&other)))
        }
    };
    let leeway = Duration::from_secs(o.num("leeway_secs", 30, 0, 300)?);
    let require_exp = o.opt_bool("require_exp")?.unwrap_or(true);
    let subscribe = templates(&mut o, "subscribe")?;
    let publish = templates(&mut o, "publish")?;
    o.finish()?;
    let v = VerifierConfig { name, alg, key, kid, issuer, audience, leeway, require_exp, subscribe, publish };
    Ok((v, source))
}

fn templates(o: &mut Obj, key: &str) -> Result<Vec<String>, ConfigError> {
    let path = o.at(key);
    let list = o.opt_str_list(key)?.unwrap_or_default();
    if list.len() > MAX_TEMPLATES {
        return err(&path, format!("at most {MAX_TEMPLATES} topic templates"));
    }
    for (i, t) in list.iter().enumerate() {
        parse_template(t).or_else(|e| err(&format!("{path}[{i}]"), e))?;
    }
    Ok(list)
}

/// `jwt_cookie`: a cookie name (RFC 6265 token characters).
pub(crate) fn cookie(root: &mut Obj) -> Result<String, ConfigError> {
    let path = root.at("jwt_cookie");
    match root.opt_str("jwt_cookie")? {
        None => Ok(DEFAULT_COOKIE.to_string()),
        Some(c)
            if !c.is_empty()
                && c.len() <= 128
                && c.bytes().all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b)) =>
        {
            Ok(c)
        }
        Some(c) => err(&path, format!("not a cookie name: {c:?}")),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::jwt::{Alg, Key};
    use std::time::Duration;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn error_of(json: &str) -> String {
        Config::from_json(json).unwrap_err().to_string()
    }

    #[test]
    fn defaults_and_every_field() {
        let c = Config::from_json("{}").unwrap();
        assert!(c.jwt.is_empty());
        assert_eq!(c.jwt_cookie, "hookcast_jwt");
        let c = Config::from_json(&format!(
            r#"{{"jwt":[{{"alg":"HS256","secret":"{SECRET}","subscribe":["users/{{sub}}/**"]}},
                {{"name":"rot","alg":"HS512","secret":"{SECRET}{SECRET}","kid":"k2","issuer":"app",
                 "audience":["dash","admin"],"leeway_secs":0,"require_exp":false,"publish":["teams/{{team}}/chat"]}}],
                "jwt_cookie":"mercureAuthorization"}}"#
        ))
        .unwrap();
        let (a, b) = (&c.jwt[0], &c.jwt[1]);
        assert_eq!(
            (a.name.as_str(), a.alg, a.leeway, a.require_exp),
            ("jwt-0", Alg::HS256, Duration::from_secs(30), true)
        );
        assert_eq!((a.kid.as_deref(), a.issuer.as_deref(), a.audience.len()), (None, None, 0));
        assert_eq!((a.subscribe.as_slice(), a.publish.len()), (&["users/{sub}/**".to_string()][..], 0));
        assert_eq!(a.key, Key::Secret(SECRET.as_bytes().to_vec()));
        assert_eq!(
            (b.name.as_str(), b.alg, b.kid.as_deref(), b.issuer.as_deref()),
            ("rot", Alg::HS512, Some("k2"), Some("app"))
        );
        assert_eq!(
            (b.audience.as_slice(), b.leeway, b.require_exp),
            (&["dash".to_string(), "admin".to_string()][..], Duration::ZERO, false)
        );
        assert_eq!(c.jwt_key_sources, ["secret from inline secret", "secret from inline secret"]);
        assert_eq!(c.jwt_cookie, "mercureAuthorization");
        let single = Config::from_json(&format!(r#"{{"jwt":[{{"alg":"HS256","secret":"{SECRET}","audience":"x"}}]}}"#));
        assert_eq!(single.unwrap().jwt[0].audience, ["x"]);
        assert!(!format!("{:?}", c.jwt).contains(SECRET));
    }

    #[test]
    fn key_files() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
        let json = r#"{"jwt":[{"alg":"EdDSA","key_file":"ed25519.pub.pem"},{"alg":"ES256","key_file":"p256.pub.pem"},
                               {"alg":"RS256","key_file":"rsa.pub.pem"}]}"#;
        let c = Config::from_json_in(json, &dir).unwrap();
        assert!(matches!(c.jwt[0].key, Key::Ed25519(_)) && matches!(c.jwt[1].key, Key::P256(_)));
        assert!(matches!(c.jwt[2].key, Key::Rsa(_)));
        assert!(
            c.jwt_key_sources[0].starts_with("public key from ") && c.jwt_key_sources[0].ends_with("ed25519.pub.pem")
        );
        let bad = |json: &str| Config::from_json_in(json, &dir).unwrap_err().to_string();
        let e = bad(r#"{"jwt":[{"alg":"ES256","key_file":"ed25519.pub.pem"}]}"#);
        assert!(e.starts_with("jwt[0].key_file: ") && e.contains("not a ES256 public key in PEM"), "{e}");
        let e = bad(r#"{"jwt":[{"alg":"EdDSA","key_file":"ed25519.pem"}]}"#);
        assert!(e.contains("this is a private key"), "{e}");
        let e = bad(r#"{"jwt":[{"alg":"EdDSA","key_file":"nope.pem"}]}"#);
        assert!(e.starts_with("jwt[0].key_file: cannot read "), "{e}");
    }

    #[test]
    fn errors_name_their_path() {
        let hs = |extra: &str| format!(r#"{{"jwt":[{{"alg":"HS256","secret":"{SECRET}"{extra}}}]}}"#);
        assert_eq!(
            error_of(r#"{"jwt":[{"alg":"HS256","secret":"short"}]}"#),
            "jwt[0].secret: an HS256 secret must be at least 32 bytes, this one has 5 (make one with `openssl rand -base64 32`)"
        );
        assert!(error_of(&format!(r#"{{"jwt":[{{"alg":"HS384","secret":"{SECRET}"}}]}}"#))
            .starts_with("jwt[0].secret: an HS384 secret must be at least 48 bytes"));
        assert!(error_of(&format!(r#"{{"jwt":[{{"alg":"HS512","secret":"{}"}}]}}"#, "x".repeat(63)))
            .starts_with("jwt[0].secret: an HS512 secret must be at least 64 bytes, this one has 63"));
        assert_eq!(
            error_of(r#"{"jwt":[{"alg":"none","secret":"x"}]}"#),
            r#"jwt[0].alg: unknown algorithm "none" (one of HS256, HS384, HS512, EdDSA, ES256, RS256; never "none")"#
        );
        assert!(error_of(r#"{"jwt":[{"secret":"x"}]}"#).starts_with("jwt[0].alg: missing"));
        assert!(error_of(r#"{"jwt":[{"alg":"HS256"}]}"#).starts_with("jwt[0].secret: missing"));
        assert!(error_of(r#"{"jwt":[{"alg":"EdDSA"}]}"#).starts_with("jwt[0].key_file: missing"));
        assert!(error_of(&format!(r#"{{"jwt":[{{"alg":"EdDSA","secret":"{SECRET}"}}]}}"#))
            .starts_with("jwt[0].secret: EdDSA verifies"));
        assert!(error_of(r#"{"jwt":[{"alg":"HS256","key_file":"k.pem"}]}"#).starts_with("jwt[0].key_file: HS256 takes"));
        assert_eq!(
            error_of(r#"{"jwt":[{"alg":"HS256","secret":{"env":"HOOKCAST_TEST_NEVER_SET_J"}}]}"#),
            "jwt[0].secret: environment variable HOOKCAST_TEST_NEVER_SET_J is not set"
        );
        assert_eq!(
            error_of(&hs(r#","audiences":"x""#)),
            r#"jwt[0].audiences: unknown field (did you mean "audience"?)"#
        );
        assert_eq!(
            error_of(&hs(r#","leeway_secs":301"#)),
            "jwt[0].leeway_secs: expected a whole number from 0 to 300, found 301"
        );
        assert_eq!(
            error_of(&hs(r#","audience":7"#)),
            "jwt[0].audience: expected a string or a list of strings, found a number"
        );
        assert_eq!(error_of(&hs(r#","audience":["a",1]"#)), "jwt[0].audience[1]: expected a string, found a number");
        assert_eq!(
            error_of(&hs(r#","name":"a b""#)),
            r#"jwt[0].name: 1 to 64 of the characters A-Z a-z 0-9 _ . - expected, found "a b""#
        );
        assert_eq!(
            error_of(&hs(r#","subscribe":["users/{sub"]"#)),
            r#"jwt[0].subscribe[0]: a '{' without its '}' in "users/{sub""#
        );
        assert_eq!(
            error_of(&hs(r#","subscribe":["users/{$sub}"]"#)),
            r#"jwt[0].subscribe[0]: {$sub} is not a claim name (letters, digits, _ - .) in "users/{$sub}""#
        );
        assert_eq!(
            error_of(&hs(r#","publish":["a/**/{sub}"]"#)),
            r#"jwt[0].publish[0]: wildcards only as the last segment of a pattern: "a/**/{sub}""#
        );
        assert!(error_of(&hs(r#","subscribe":["a}"]"#)).starts_with("jwt[0].subscribe[0]: a '}' without"));
        let two = format!(
            r#"{{"jwt":[{{"alg":"HS256","secret":"{SECRET}","name":"a"}},{{"alg":"HS256","secret":"{SECRET}","name":"a"}}]}}"#
        );
        assert_eq!(error_of(&two), r#"jwt[1].name: two verifiers are named "a""#);
        assert_eq!(error_of(r#"{"jwt_cookie":"a;b"}"#), r#"jwt_cookie: not a cookie name: "a;b""#);
        assert_eq!(error_of(r#"{"jwt":{}}"#), "jwt: expected a list, found an object");
        assert_eq!(error_of(r#"{"jwts":[]}"#), r#"jwts: unknown field (did you mean "jwt"?)"#);
    }
}
