//! Feeds arbitrary text to the JWT parser and to a verifier, as a presented token reaches them:
//! neither may panic, a parsed token's parts must come from the text, and nothing but a token
//! signed with the verifier's secret may verify.
#![no_main]

use hookcast::jwt::{jws, Alg, Key, VerifierConfig, Verifiers};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn verifiers() -> &'static Verifiers {
    static V: OnceLock<Verifiers> = OnceLock::new();
    V.get_or_init(|| {
        Verifiers::new(vec![VerifierConfig {
            name: "fuzz".into(),
            alg: Alg::HS256,
            key: Key::Secret(b"a secret the fuzzer cannot guess!".to_vec()),
            kid: None,
            issuer: None,
            audience: Vec::new(),
            leeway: std::time::Duration::from_secs(30),
            require_exp: false,
            subscribe: vec!["users/{sub}/**".into()],
            publish: Vec::new(),
        }])
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(t) = jws::parse(text) {
        assert!(text.starts_with(std::str::from_utf8(t.signing_input).unwrap()));
    }
    assert!(verifiers().verify(text, 1_800_000_000).is_err(), "a forged token verified: {text:?}");
});
