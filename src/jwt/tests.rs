//! Published vectors (RFC 7515 A.1–A.3, RFC 8037 A.4), tokens minted by PyJWT
//! (tests/fixtures/jwt), the attacks, the claims and the templates.

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::json;

fn b64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).unwrap()
}

/// The RFC 7515 examples' claims expire at 1300819380 (March 2011).
const RFC_NOW: u64 = 1_300_819_000;
const RFC_PAYLOAD: &str =
    "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
const A1_TOKEN: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const A1_K: &str = "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
const A2_N: &str = "ofgWCuLjybRlzo0tZWJjNiuSfb4p4fAkd_wWJcyQoTbji9k0l8W26mPddxHmfHQp-Vaw-4qPCJrcS2mJPMEzP1Pt0Bm4d4QlL-yRT-SFd2lZS-pCgNMsD1W_YpRPEwOWvG6b32690r2jZ47soMZo9wGzjb_7OMg0LOL-bSf63kpaSHSXndS5z5rexMdbBYUsLA9e-KXBdQOS-UTo7WTBEMa2R2CapHg665xsmtdVMTBQY4uDZlxvb3qCo5ZwKh9kG4LT6_I5IhlJH7aGhyxXFvUK-DWNmoudF8NAco9_h9iaGNj8q2ethFkMLs91kzk2PAcDTW9gb54h4FRWyuXpoQ";
const A2_SIG: &str = "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqvhJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrBp0igcN_IoypGlUPQGe77Rw";
const A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";
const A3_SIG: &str = "DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
const RFC8037_JWS: &str = "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg";

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
const NOW: u64 = 1_700_000_000;

fn verifier(alg: Alg, key: Key) -> VerifierConfig {
    VerifierConfig {
        name: format!("{alg}"),
        alg,
        key,
        kid: None,
        issuer: None,
        audience: Vec::new(),
        leeway: Duration::from_secs(30),
        require_exp: true,
        subscribe: vec!["demo".into()],
        publish: Vec::new(),
    }
}

fn hs(templates: &[&str]) -> VerifierConfig {
    let mut v = verifier(Alg::HS256, Key::Secret(SECRET.to_vec()));
    v.subscribe = templates.iter().map(|t| t.to_string()).collect();
    v
}

fn one(v: VerifierConfig) -> Verifiers {
    Verifiers::new(vec![v])
}

fn token(claims: Value) -> String {
    sign_hs(Alg::HS256, SECRET, None, &claims).unwrap()
}

fn subs(g: &Grant) -> Vec<&str> {
    g.subscribe.iter().map(|s| &**s).collect()
}

fn rfc_es256_key() -> Key {
    let point =
        p256::EncodedPoint::from_affine_coordinates(b64(A3_X).as_slice().into(), b64(A3_Y).as_slice().into(), false);
    Key::P256(p256::ecdsa::VerifyingKey::from_encoded_point(&point).unwrap())
}

fn rfc_ed25519_key() -> Key {
    Key::Ed25519(ed25519_dalek::VerifyingKey::from_bytes(&b64(RFC8037_X).try_into().unwrap()).unwrap())
}

#[test]
fn rfc7515_a1_hs256() {
    let vs = one(verifier(Alg::HS256, Key::Secret(b64(A1_K))));
    let g = vs.verify(A1_TOKEN, RFC_NOW).unwrap();
    assert_eq!((subs(&g), g.expires, g.subject.as_deref(), g.verifier), (vec!["demo"], Some(1_300_819_380), None, 0));
    assert_eq!(vs.verify(A1_TOKEN, 1_300_819_380 + 30), Err(Refusal::Expired));
    assert_eq!(vs.verify(A1_TOKEN, 1_300_819_380 + 29).map(|g| g.verifier), Ok(0), "within the leeway");
    let other = one(verifier(Alg::HS256, Key::Secret(SECRET.to_vec())));
    assert_eq!(other.verify(A1_TOKEN, RFC_NOW), Err(Refusal::BadSignature));
}

#[test]
fn rfc7515_a2_rs256() {
    let n = rsa::BigUint::from_bytes_be(&b64(A2_N));
    let key = Key::Rsa(Box::new(rsa::RsaPublicKey::new(n, rsa::BigUint::from(65537u32)).unwrap()));
    let vs = one(verifier(Alg::RS256, key));
    let t = format!("eyJhbGciOiJSUzI1NiJ9.{RFC_PAYLOAD}.{A2_SIG}");
    assert_eq!(vs.verify(&t, RFC_NOW).map(|g| g.expires), Ok(Some(1_300_819_380)));
    let short = format!("eyJhbGciOiJSUzI1NiJ9.{RFC_PAYLOAD}.{}", URL_SAFE_NO_PAD.encode(&b64(A2_SIG)[..255]));
    assert_eq!(vs.verify(&short, RFC_NOW), Err(Refusal::BadSignature));
}

#[test]
fn rfc7515_a3_es256() {
    let vs = one(verifier(Alg::ES256, rfc_es256_key()));
    let t = format!("eyJhbGciOiJFUzI1NiJ9.{RFC_PAYLOAD}.{A3_SIG}");
    assert_eq!(vs.verify(&t, RFC_NOW).map(|g| g.expires), Ok(Some(1_300_819_380)));
    // A DER signature, or r||s with a byte missing or added, is not the JWS encoding.
    let sig = b64(A3_SIG);
    for bad in [&sig[..63], &[&sig[..], &[0]].concat()[..], &[0u8; 64][..]] {
        let t = format!("eyJhbGciOiJFUzI1NiJ9.{RFC_PAYLOAD}.{}", URL_SAFE_NO_PAD.encode(bad));
        assert_eq!(vs.verify(&t, RFC_NOW), Err(Refusal::BadSignature));
    }
}

#[test]
fn rfc8037_a4_ed25519() {
    let key = rfc_ed25519_key();
    let (input, sig) = RFC8037_JWS.rsplit_once('.').unwrap();
    assert!(key.verifies(Alg::EdDSA, input.as_bytes(), &b64(sig)));
    assert!(!key.verifies(Alg::EdDSA, b"eyJhbGciOiJFZERTQSJ9.eA", &b64(sig)));
    assert!(!key.verifies(Alg::EdDSA, input.as_bytes(), &b64(sig)[..63]));
    // Its payload is text, not claims: a well-signed token hookcast still cannot use.
    assert_eq!(one(verifier(Alg::EdDSA, key)).verify(RFC8037_JWS, RFC_NOW), Err(Refusal::Malformed));
}

/// Tokens that PyJWT signed (tests/fixtures/jwt/make_tokens.py), with the keys it made.
#[test]
fn pyjwt_tokens_verify() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    let tokens: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("tokens.json")).unwrap()).unwrap();
    let pem = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let secret = tokens["HS256-secret"].as_str().unwrap().as_bytes().to_vec();
    let configure = |mut v: VerifierConfig| {
        v.kid = Some("k1".into());
        v.issuer = Some("https://app.example".into());
        v.audience = vec!["dash".into()];
        v.subscribe = vec!["users/{sub}/**".into(), "teams/{teams}/**".into()];
        v
    };
    let vs = Verifiers::new(vec![
        configure(verifier(Alg::HS256, Key::Secret(secret.clone()))),
        configure(verifier(Alg::EdDSA, Key::from_pem(Alg::EdDSA, &pem("ed25519.pub.pem")).unwrap())),
        configure(verifier(Alg::ES256, Key::from_pem(Alg::ES256, &pem("p256.pub.pem")).unwrap())),
        configure(verifier(Alg::RS256, Key::from_pem(Alg::RS256, &pem("rsa.pub.pem")).unwrap())),
    ]);
    for (i, alg) in ["HS256", "EdDSA", "ES256", "RS256"].into_iter().enumerate() {
        let g = vs.verify(tokens[alg].as_str().unwrap(), NOW).unwrap_or_else(|r| panic!("{alg}: {r:?}"));
        assert_eq!(g.verifier, i, "{alg}");
        assert_eq!(subs(&g), ["news/**", "users/alice/**", "teams/red/**", "teams/blue/**"], "{alg}");
        assert_eq!(
            (&*g.publish, g.expires, g.subject.as_deref()),
            (&["users/alice/inbox".into()][..], Some(4_102_444_800), Some("alice"))
        );
    }
    let mut mercure = verifier(Alg::HS256, Key::Secret(secret));
    mercure.subscribe.clear();
    let g = one(mercure).verify(tokens["HS256-mercure"].as_str().unwrap(), NOW).unwrap();
    assert_eq!((subs(&g), &*g.publish), (vec!["**"], &["chat/1".into()][..]));
}

#[test]
fn alg_none_and_unknown_algorithms() {
    let vs = one(hs(&["demo"]));
    let none =
        format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#), URL_SAFE_NO_PAD.encode(r#"{"exp":1800000000}"#));
    assert_eq!(vs.verify(&none, NOW), Err(Refusal::UnsupportedAlg));
    for alg in ["None", "NONE", "hs256", "HS257", "PS256", "ES512"] {
        let t = format!("{}.e30.AAAA", URL_SAFE_NO_PAD.encode(json!({ "alg": alg }).to_string()));
        assert_eq!(vs.verify(&t, NOW), Err(Refusal::UnsupportedAlg), "{alg}");
    }
    // An algorithm hookcast knows but this config has no verifier for.
    let t = format!("{}.e30.AAAA", URL_SAFE_NO_PAD.encode(r#"{"alg":"HS512"}"#));
    assert_eq!(vs.verify(&t, NOW), Err(Refusal::UnsupportedAlg));
    assert_eq!(Verifiers::new(Vec::new()).verify(&token(json!({})), NOW), Err(Refusal::UnsupportedAlg));
}

/// An HS256 token whose secret is the text of the Ed25519 public key's PEM: the classic
/// confusion. Without an HS verifier there is no algorithm to check it with; with one, its secret
/// is not the PEM.
#[test]
fn algorithm_confusion() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jwt");
    let pem = std::fs::read_to_string(dir.join("ed25519.pub.pem")).unwrap();
    let forged = sign_hs(Alg::HS256, pem.as_bytes(), None, &json!({"exp": NOW + 60, "sub": "x"})).unwrap();
    let ed = verifier(Alg::EdDSA, Key::from_pem(Alg::EdDSA, &pem).unwrap());
    assert_eq!(one(ed.clone()).verify(&forged, NOW), Err(Refusal::UnsupportedAlg));
    assert_eq!(Verifiers::new(vec![ed.clone(), hs(&["demo"])]).verify(&forged, NOW), Err(Refusal::BadSignature));
    // A token claiming EdDSA is never checked with an HMAC secret, nor the reverse.
    assert!(!Key::Secret(SECRET.to_vec()).verifies(Alg::EdDSA, b"x", &[0; 64]));
    assert!(!ed.key.verifies(Alg::HS256, b"x", &[0; 32]));
    let mut lying = ed;
    lying.alg = Alg::HS256;
    assert_eq!(one(lying).verify(&forged, NOW), Err(Refusal::BadSignature), "a key of another family never verifies");
}

#[test]
fn tampering() {
    let vs = one(hs(&["users/{sub}/**"]));
    let t = token(json!({"sub": "alice", "exp": NOW + 60}));
    assert_eq!(subs(&vs.verify(&t, NOW).unwrap()), ["users/alice/**"]);
    let (head, rest) = t.split_once('.').unwrap();
    let (_, sig) = rest.split_once('.').unwrap();
    let evil = URL_SAFE_NO_PAD.encode(json!({"sub": "bob", "exp": NOW + 60}).to_string());
    assert_eq!(vs.verify(&format!("{head}.{evil}.{sig}"), NOW), Err(Refusal::BadSignature));
    let short = URL_SAFE_NO_PAD.encode(&b64(sig)[..31]);
    assert_eq!(
        vs.verify(&format!("{head}.{rest_payload}.{short}", rest_payload = rest.split_once('.').unwrap().0), NOW),
        Err(Refusal::BadSignature)
    );
    assert_eq!(vs.verify(&format!("{head}.{evil}."), NOW), Err(Refusal::BadSignature));
    assert_eq!(vs.verify(&format!("{head}.{evil}"), NOW), Err(Refusal::Malformed));
    assert_eq!(vs.verify("hc_0123", NOW), Err(Refusal::Malformed));
    assert_eq!(vs.verify(&format!("{t}{}", "A".repeat(9000)), NOW), Err(Refusal::Malformed));
}

#[test]
fn dates() {
    let vs = one(hs(&["demo"]));
    let at = |claims: Value| vs.verify(&token(claims), NOW);
    assert_eq!(at(json!({"exp": NOW + 1})).unwrap().expires, Some(NOW + 1));
    assert_eq!(at(json!({"exp": NOW - 31})), Err(Refusal::Expired));
    assert_eq!(at(json!({"exp": NOW - 30})), Err(Refusal::Expired));
    assert!(at(json!({"exp": NOW - 29})).is_ok(), "within the leeway");
    assert_eq!(at(json!({"exp": (NOW + 5) as f64 + 0.5})).unwrap().expires, Some(NOW + 5));
    assert_eq!(at(json!({})), Err(Refusal::MissingExp));
    assert_eq!(at(json!({"exp": "1800000000"})), Err(Refusal::BadClaim));
    assert_eq!(at(json!({"exp": -1})), Err(Refusal::BadClaim));
    assert_eq!(at(json!({"exp": NOW + 60, "nbf": NOW + 31})), Err(Refusal::NotYetValid));
    assert!(at(json!({"exp": NOW + 60, "nbf": NOW + 30})).is_ok());
    assert_eq!(at(json!({"exp": NOW + 60, "iat": NOW + 31})), Err(Refusal::NotYetValid));
    assert!(at(json!({"exp": NOW + 60, "iat": NOW - 3600})).is_ok());
    assert_eq!(at(json!({"exp": NOW + 60, "nbf": "soon"})), Err(Refusal::BadClaim));
    let mut lax = hs(&["demo"]);
    lax.require_exp = false;
    lax.leeway = Duration::ZERO;
    let lax = one(lax);
    assert_eq!(lax.verify(&token(json!({})), NOW).unwrap().expires, None);
    assert_eq!(lax.verify(&token(json!({"exp": NOW})), NOW), Err(Refusal::Expired));
}

#[test]
fn issuer_and_audience() {
    let mut v = hs(&["demo"]);
    v.issuer = Some("https://app".into());
    v.audience = vec!["dash".into(), "admin".into()];
    let vs = one(v);
    let at = |claims: Value| vs.verify(&token(claims), NOW).map(|_| ());
    let exp = NOW + 60;
    assert_eq!(at(json!({"exp": exp, "iss": "https://app", "aud": "dash"})), Ok(()));
    assert_eq!(at(json!({"exp": exp, "iss": "https://app", "aud": ["x", "admin"]})), Ok(()));
    assert_eq!(at(json!({"exp": exp, "iss": "https://app", "aud": "other"})), Err(Refusal::WrongAudience));
    assert_eq!(at(json!({"exp": exp, "iss": "https://app", "aud": ["x", 1]})), Err(Refusal::WrongAudience));
    assert_eq!(at(json!({"exp": exp, "iss": "https://app"})), Err(Refusal::WrongAudience));
    assert_eq!(at(json!({"exp": exp, "iss": "https://evil", "aud": "dash"})), Err(Refusal::WrongIssuer));
    assert_eq!(at(json!({"exp": exp, "aud": "dash"})), Err(Refusal::WrongIssuer));
    // Without a configured audience, `aud` is not looked at.
    assert!(one(hs(&["demo"])).verify(&token(json!({"exp": exp, "aud": "anything"})), NOW).is_ok());
}

#[test]
fn key_ids() {
    let key = |k: &[u8]| {
        let mut s = k.to_vec();
        s.resize(32, b'.');
        s
    };
    let with_kid = |kid: Option<&str>, secret: &[u8]| {
        let mut v = verifier(Alg::HS256, Key::Secret(key(secret)));
        v.kid = kid.map(str::to_string);
        v
    };
    let claims = json!({"exp": NOW + 60});
    let signed = |kid: Option<&str>, secret: &[u8]| sign_hs(Alg::HS256, &key(secret), kid, &claims).unwrap();
    // Rotation: two keys with ids, and an old one without.
    let vs = Verifiers::new(vec![with_kid(Some("a"), b"A"), with_kid(Some("b"), b"B"), with_kid(None, b"old")]);
    assert_eq!(vs.verify(&signed(Some("a"), b"A"), NOW).map(|g| g.verifier), Ok(0));
    assert_eq!(vs.verify(&signed(Some("b"), b"B"), NOW).map(|g| g.verifier), Ok(1));
    assert_eq!(vs.verify(&signed(Some("b"), b"A"), NOW), Err(Refusal::BadSignature));
    assert_eq!(vs.verify(&signed(None, b"old"), NOW).map(|g| g.verifier), Ok(2));
    assert_eq!(vs.verify(&signed(None, b"A"), NOW), Err(Refusal::BadSignature), "without kid: only kid-less keys");
    assert_eq!(vs.verify(&signed(Some("zzz"), b"old"), NOW).map(|g| g.verifier), Ok(2), "kid-less keys take any kid");
    let strict = Verifiers::new(vec![with_kid(Some("a"), b"A"), with_kid(Some("b"), b"B")]);
    assert_eq!(strict.verify(&signed(Some("zzz"), b"A"), NOW), Err(Refusal::UnknownKey));
    assert_eq!(strict.verify(&signed(None, b"A"), NOW), Err(Refusal::UnknownKey));
}

#[test]
fn templates_never_widen() {
    let vs = one(hs(&["users/{sub}/**"]));
    let at = |sub: Value| vs.verify(&token(json!({"exp": NOW + 60, "sub": sub})), NOW);
    assert_eq!(subs(&at(json!("a.b-c_d~e")).unwrap()), ["users/a.b-c_d~e/**"]);
    for bad in ["*", "**", "a/b", "..", ".", "", "a b", "$runs", "é", "a\u{0}"] {
        assert_eq!(at(json!(bad)), Err(Refusal::BadClaim), "{bad:?}");
    }
    assert_eq!(at(json!("x".repeat(129))), Err(Refusal::BadClaim));
    assert_eq!(at(json!(42)), Err(Refusal::BadClaim), "`sub` itself must be a string");
    // Without the claim, the template gives nothing, and then the token grants nothing.
    assert_eq!(vs.verify(&token(json!({"exp": NOW + 60})), NOW), Err(Refusal::NoGrant));
    let teams = one(hs(&["teams/{teams}/**", "org/{org}/u{uid}"]));
    let g = teams.verify(&token(json!({"exp": NOW + 60, "teams": ["a", "b", "a"], "org": "o", "uid": 7})), NOW);
    assert_eq!(subs(&g.unwrap()), ["teams/a/**", "teams/b/**", "org/o/u7"]);
    for bad in [json!(["a", "*"]), json!(["a", 1]), json!({"a": 1}), json!(true), json!(1.5)] {
        let t = token(json!({"exp": NOW + 60, "teams": bad}));
        assert_eq!(teams.verify(&t, NOW), Err(Refusal::BadClaim), "{bad}");
    }
    let many: Vec<String> = (0..65).map(|i| format!("t{i}")).collect();
    assert_eq!(teams.verify(&token(json!({"exp": NOW + 60, "teams": many})), NOW), Err(Refusal::BadClaim));
    // A long value can make a pattern too long: refused, never cut.
    let deep = one(hs(&["{a}/{b}/{c}"]));
    let long = "x".repeat(100);
    assert_eq!(
        deep.verify(&token(json!({"exp": NOW + 60, "a": long, "b": long, "c": long})), NOW),
        Err(Refusal::BadClaim)
    );
}

#[test]
fn hookcast_and_mercure_claims() {
    let vs = one(hs(&[]));
    let at = |claims: Value| {
        let mut c = claims;
        c["exp"] = json!(NOW + 60);
        vs.verify(&token(c), NOW)
    };
    let g = at(json!({"hookcast": {"subscribe": ["a/*", "b"], "publish": ["c"]}})).unwrap();
    assert_eq!((subs(&g), &*g.publish), (vec!["a/*", "b"], &["c".into()][..]));
    assert_eq!(at(json!({"hookcast": {"subscribe": ["a/**/b"]}})), Err(Refusal::BadClaim));
    assert_eq!(at(json!({"hookcast": {"subscribe": "a"}})), Err(Refusal::BadClaim));
    assert_eq!(at(json!({"hookcast": ["a"]})), Err(Refusal::BadClaim));
    assert_eq!(at(json!({"hookcast": {"subscribe": []}})), Err(Refusal::NoGrant));
    let g =
        at(json!({"mercure": {"subscribe": ["*"], "publish": ["https://example.com/books/1", "books/1"]}})).unwrap();
    assert_eq!((subs(&g), &*g.publish), (vec!["**"], &["books/1".into()][..]));
    assert_eq!(at(json!({"mercure": {"subscribe": ["https://example.com/{id}"]}})), Err(Refusal::NoGrant));
    assert_eq!(at(json!({"mercure": {"subscribe": [1]}})), Err(Refusal::BadClaim));
    let both = at(json!({"hookcast": {"subscribe": ["a"]}, "mercure": {"subscribe": ["a", "b"]}})).unwrap();
    assert_eq!(subs(&both), ["a", "b"]);
    let many: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    assert_eq!(at(json!({"hookcast": {"subscribe": many, "publish": many}})), Err(Refusal::BadClaim));
    assert_eq!(at(json!({"sub": 7, "hookcast": {"subscribe": ["a"]}})), Err(Refusal::BadClaim));
}

#[test]
fn refusals_have_names_and_sentences() {
    let all = [
        Refusal::Malformed,
        Refusal::UnsupportedAlg,
        Refusal::UnknownKey,
        Refusal::BadSignature,
        Refusal::Expired,
        Refusal::NotYetValid,
        Refusal::WrongAudience,
        Refusal::WrongIssuer,
        Refusal::MissingExp,
        Refusal::BadClaim,
        Refusal::NoGrant,
    ];
    let names: Vec<&str> = all.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        names,
        [
            "malformed",
            "unsupported_alg",
            "unknown_key",
            "bad_signature",
            "expired",
            "not_yet_valid",
            "wrong_audience",
            "wrong_issuer",
            "missing_exp",
            "bad_claim",
            "no_grant"
        ]
    );
    assert!(all.iter().all(|r| r.message().contains("token")));
}

#[test]
fn describe_never_shows_the_secret() {
    let mut v = hs(&["users/{sub}/**"]);
    v.name = "app".into();
    v.kid = Some("k1".into());
    v.audience = vec!["dash".into()];
    v.issuer = Some("https://app".into());
    let line = describe(&v, "secret from environment variable APP_JWT");
    assert_eq!(
        line,
        "jwt \"app\": HS256, secret from environment variable APP_JWT, kid \"k1\", iss \"https://app\", aud dash, \
         leeway 30s, exp required; grants the hookcast and mercure claims, subscribe users/{sub}/**"
    );
    assert!(!format!("{v:?}").contains("0123456789abcdef"));
    assert_eq!(one(v).names(), ["app"]);
}

#[test]
fn grants_stay_small() {
    // What a session keeps: two boxed slices, an expiry, a subject and an index.
    assert!(std::mem::size_of::<Grant>() <= 80, "{}", std::mem::size_of::<Grant>());
}
