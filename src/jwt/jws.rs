//! The compact JWS serialisation (RFC 7515 §7.1): `header.payload.signature`, each part
//! base64url without padding. Pure parsing, no cryptography: [`parse`] splits and decodes a token
//! and refuses what hookcast never accepts (oversized tokens, non-object JSON, `crit`, no `alg`)
//! before any key is looked at.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

/// Longest token accepted, in bytes: far above any real grant, far below a request head's limit.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Why a token is not a compact JWS hookcast accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsError {
    /// Longer than [`MAX_TOKEN_LEN`].
    TooLong,
    /// Not three `.`-separated parts.
    Shape,
    /// A part is not base64url without padding.
    Base64,
    /// The header or the payload is not a JSON object.
    NotObject,
    /// The header has `crit`: extensions we do not implement must be refused (RFC 7515 §4.1.11).
    Crit,
    /// The header has no string `alg`.
    NoAlg,
    /// `kid` or `typ` is not a string.
    BadHeader,
}

/// A parsed compact JWS; its signature is not checked yet.
#[derive(Debug, Clone, PartialEq)]
pub struct Jws<'a> {
    /// The header's `alg`, as written (`none` included: refusing it is the verifier's job).
    pub alg: String,
    /// The header's `kid`.
    pub kid: Option<String>,
    /// The header's `typ`.
    pub typ: Option<String>,
    /// `header.payload` as sent: the bytes the signature covers.
    pub signing_input: &'a [u8],
    /// The decoded payload: the claims.
    pub payload: Map<String, Value>,
    /// The decoded signature.
    pub signature: Vec<u8>,
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Whether `s` has the shape of a compact JWS (three non-empty base64url parts), so that a
/// credential can be told from an opaque token without decoding it.
pub fn looks_like_jwt(s: &str) -> bool {
    let mut parts = 0;
    for part in s.split('.') {
        parts += 1;
        if parts > 3 || part.is_empty() || !part.bytes().all(is_b64url) {
            return false;
        }
    }
    parts == 3
}

fn decode(part: &str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD.decode(part).map_err(|_| JwsError::Base64)
}

fn object(bytes: &[u8]) -> Result<Map<String, Value>, JwsError> {
    // serde_json's recursion limit bounds nesting; the token's length bounds the rest.
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JwsError::NotObject),
    }
}

fn opt_string(header: &Map<String, Value>, key: &str) -> Result<Option<String>, JwsError> {
    match header.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwsError::BadHeader),
    }
}

/// Splits and decodes a compact JWS.
pub fn parse(token: &str) -> Result<Jws<'_>, JwsError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwsError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwsError::Shape);
    };
    if h.is_empty() || p.is_empty() {
        return Err(JwsError::Shape);
    }
    let header = object(&decode(h)?)?;
    if header.contains_key("crit") {
        return Err(JwsError::Crit);
    }
    let Some(Value::String(alg)) = header.get("alg") else {
        return Err(JwsError::NoAlg);
    };
    let kid = opt_string(&header, "kid")?;
    let typ = opt_string(&header, "typ")?;
    let payload = object(&decode(p)?)?;
    let signature = decode(s)?;
    Ok(Jws {
        alg: alg.clone(),
        kid,
        typ,
        signing_input: &token.as_bytes()[..h.len() + 1 + p.len()],
        payload,
        signature,
    })
}

/// `base64url(header).base64url(payload)`: the signing input of a new token.
pub(crate) fn signing_input(header: &Value, payload: &Value) -> String {
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}", enc(header), enc(payload))
}

/// Encodes a signature part.
pub(crate) fn encode_signature(sig: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn parses_a_token() {
        let t =
            format!("{}.{}.{}", enc(r#"{"alg":"HS256","kid":"k1","typ":"JWT"}"#), enc(r#"{"sub":"u"}"#), enc("sig"));
        let j = parse(&t).unwrap();
        assert_eq!((j.alg.as_str(), j.kid.as_deref(), j.typ.as_deref()), ("HS256", Some("k1"), Some("JWT")));
        assert_eq!(j.signing_input, t.rsplit_once('.').unwrap().0.as_bytes());
        assert_eq!((j.payload["sub"].as_str(), j.signature.as_slice()), (Some("u"), &b"sig"[..]));
        assert!(looks_like_jwt(&t));
        // An empty signature parses (and never verifies): `alg: none` tokens look like that.
        let none = format!("{}.{}.", enc(r#"{"alg":"none"}"#), enc("{}"));
        assert_eq!(parse(&none).unwrap().signature, b"");
        assert!(!looks_like_jwt(&none));
    }

    #[test]
    fn refusals() {
        let h = enc(r#"{"alg":"HS256"}"#);
        let p = enc("{}");
        let cases = [
            (format!("{h}.{p}"), JwsError::Shape),
            (format!("{h}.{p}.a.b"), JwsError::Shape),
            (format!(".{p}.aa"), JwsError::Shape),
            (format!("{h}.{p}.a="), JwsError::Base64),
            (format!("{h}=.{p}.aa"), JwsError::Base64),
            (format!("{h}.{p}.a+b"), JwsError::Base64),
            (format!("{}.{p}.aa", enc("[1]")), JwsError::NotObject),
            (format!("{h}.{}.aa", enc("\"x\"")), JwsError::NotObject),
            (format!("{h}.{}.aa", enc("{")), JwsError::NotObject),
            (format!("{}.{p}.aa", enc(r#"{"alg":"HS256","crit":["b64"]}"#)), JwsError::Crit),
            (format!("{}.{p}.aa", enc(r#"{"typ":"JWT"}"#)), JwsError::NoAlg),
            (format!("{}.{p}.aa", enc(r#"{"alg":1}"#)), JwsError::NoAlg),
            (format!("{}.{p}.aa", enc(r#"{"alg":"HS256","kid":7}"#)), JwsError::BadHeader),
            (format!("{h}.{}.aa", "A".repeat(MAX_TOKEN_LEN)), JwsError::TooLong),
        ];
        for (t, want) in cases {
            assert_eq!(parse(&t), Err(want), "{t}");
        }
    }

    #[test]
    fn shape_check() {
        for ok in ["a.b.c", "eyJ-_.x.y9"] {
            assert!(looks_like_jwt(ok), "{ok}");
        }
        for bad in ["", "a.b", "a..c", "a.b.c.d", "a.b.c=", "hc_0123", "a.b.c d", ".b.c"] {
            assert!(!looks_like_jwt(bad), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,400}") {
            let _ = parse(&s);
            let _ = looks_like_jwt(&s);
        }

        #[test]
        fn never_panics_on_jws_shaped_input(h in "[A-Za-z0-9_-]{0,60}", p in "[A-Za-z0-9_-]{0,60}",
                                            s in "[A-Za-z0-9_=.-]{0,60}") {
            let _ = parse(&format!("{h}.{p}.{s}"));
        }

        #[test]
        fn never_panics_on_encoded_json(h in "\\PC{0,80}", p in "\\PC{0,80}") {
            let t = format!("{}.{}.{}", enc(&h), enc(&p), enc("x"));
            if let Ok(j) = parse(&t) {
                prop_assert_eq!(j.signing_input.len() + 3, t.len());
            }
        }
    }
}
