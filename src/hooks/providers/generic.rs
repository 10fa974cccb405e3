//! Generic HMAC senders (the `hmac` provider): one header holding `prefix` followed by the
//! HMAC of the raw body, in hex or base64, with SHA-1, SHA-256 or SHA-512, as an [`HmacSpec`]
//! describes — the shape of adnanh/webhook's `payload-hmac-sha1` / `-sha256` / `-sha512` trigger
//! rules and of most "signed webhook" senders that follow GitHub. No delivery id, event name or
//! timestamp is defined, so none is reported, and there is no replay protection beyond the
//! intake's deduplication.
//!
//! The prefix is matched exactly (case-sensitive) and stripped before decoding; hex is accepted
//! in either case; base64 is RFC 4648 §4's standard alphabet, padding optional. The MAC must
//! have the algorithm's length (20, 32 or 64 bytes), so a truncated MAC is malformed.

use super::{
    decode_mac, encode_hex, header_as, mac, match_secrets, Encoding, Headers, HmacSpec, Incoming, Verified,
    VerifyError, BASE64,
};
use base64::Engine as _;

/// The name errors report for the spec's header. Errors carry `&'static str`; rather than leak
/// a copy of every configured name (which would grow on each config reload), the common names
/// are spelled here and any other is reported as "signature header".
fn label(spec: &HmacSpec) -> &'static str {
    const COMMON: [&str; 8] = [
        "x-hub-signature-256",
        "x-hub-signature",
        "x-signature",
        "x-signature-256",
        "x-webhook-signature",
        "webhook-signature",
        "x-hmac-signature",
        "signature",
    ];
    COMMON.iter().find(|c| c.eq_ignore_ascii_case(&spec.header)).copied().unwrap_or("signature header")
}

/// Verifies a request signed as `spec` says.
pub(super) fn verify(spec: &HmacSpec, secrets: &[Vec<u8>], req: &Incoming) -> Result<Verified, VerifyError> {
    let label = label(spec);
    let value = header_as(req, &spec.header, label)?.ok_or(VerifyError::Missing(label))?;
    let sig = decode_mac(value, &spec.prefix, spec.algorithm, spec.encoding, label)?;
    let secret_index = match_secrets(secrets, spec.algorithm, &[req.body], &[sig]).ok_or(VerifyError::Mismatch)?;
    Ok(Verified { secret_index, delivery_id: None, event: None, timestamp: None })
}

/// The one header the spec names, with the MAC of `body` under `secret`.
pub(super) fn sign(out: &mut Headers, spec: &HmacSpec, secret: &[u8], body: &[u8]) {
    let m = mac(spec.algorithm, secret, &[body]);
    let encoded = match spec.encoding {
        Encoding::Hex => encode_hex(&m),
        Encoding::Base64 => BASE64.encode(m),
    };
    out.add(&spec.header, format!("{}{encoded}", spec.prefix));
}

#[cfg(test)]
mod tests {
    use super::super::tests::{hdrs, req};
    use super::super::Algorithm;
    use super::*;

    fn spec(header: &str, algorithm: Algorithm, encoding: Encoding, prefix: &str) -> HmacSpec {
        HmacSpec { header: header.into(), algorithm, encoding, prefix: prefix.into() }
    }

    fn signed(spec: &HmacSpec, secret: &[u8], body: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Headers(Vec::new());
        sign(&mut out, spec, secret, body);
        out.0.into_iter().map(|(n, v)| (n.to_ascii_lowercase(), v.into_bytes())).collect()
    }

    /// RFC 4231 §4.3 (key "Jefe") as a header, in each algorithm and encoding.
    #[test]
    fn every_algorithm_and_encoding() {
        let body = b"what do ya want for nothing?";
        let cases = [
            (Algorithm::Sha1, Encoding::Hex, "sha1=", "sha1=effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
            (Algorithm::Sha256, Encoding::Hex, "", "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
            (Algorithm::Sha256, Encoding::Base64, "", "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM="),
            (
                Algorithm::Sha512,
                Encoding::Hex,
                "sha512=",
                "sha512=164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737",
            ),
        ];
        for (alg, enc, prefix, want) in cases {
            let s = spec("x-signature", alg, enc, prefix);
            let h = signed(&s, b"Jefe", body);
            assert_eq!(h, [("x-signature".to_owned(), want.as_bytes().to_vec())]);
            let got = verify(&s, &[b"x".to_vec(), b"Jefe".to_vec()], &req(&h, body, 0)).unwrap();
            assert_eq!(got, Verified { secret_index: 1, delivery_id: None, event: None, timestamp: None });
        }
    }

    #[test]
    fn upper_hex_and_unpadded_base64_accepted() {
        let body = b"what do ya want for nothing?";
        let s = spec("x-signature", Algorithm::Sha256, Encoding::Hex, "");
        let h = hdrs(&[("x-signature", "5BDCC146BF60754E6A042426089575C75A003F089D2739839DEC58B964EC3843")]);
        assert!(verify(&s, &[b"Jefe".to_vec()], &req(&h, body, 0)).is_ok());
        let s = spec("x-signature", Algorithm::Sha256, Encoding::Base64, "");
        let h = hdrs(&[("x-signature", "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM")]);
        assert!(verify(&s, &[b"Jefe".to_vec()], &req(&h, body, 0)).is_ok());
    }

    #[test]
    fn every_error() {
        let s = spec("x-custom-sig", Algorithm::Sha256, Encoding::Hex, "sha256=");
        let secrets = [b"k".to_vec()];
        let good = String::from_utf8(signed(&s, b"k", b"body")[0].1.clone()).unwrap();
        let check = |pairs: &[(&str, &str)], want: VerifyError| {
            let h = hdrs(pairs);
            assert_eq!(verify(&s, &secrets, &req(&h, b"body", 0)), Err(want), "{pairs:?}");
        };
        check(&[], VerifyError::Missing("signature header"));
        check(&[("X-Custom-Sig", &good), ("x-custom-sig", &good)], VerifyError::Duplicate("signature header"));
        check(&[("x-custom-sig", &good[7..])], VerifyError::Malformed("signature header"));
        check(&[("x-custom-sig", &good.replace("sha256=", "SHA256="))], VerifyError::Malformed("signature header"));
        check(&[("x-custom-sig", &good[..good.len() - 2])], VerifyError::Malformed("signature header"));
        check(&[("x-custom-sig", &format!("sha256={}", "0".repeat(64)))], VerifyError::Mismatch);
        let h = hdrs(&[("x-custom-sig", &good)]);
        assert!(verify(&s, &secrets, &req(&h, b"body", 0)).is_ok());
        // A common name is reported as itself.
        let s = spec("X-Signature", Algorithm::Sha256, Encoding::Hex, "");
        assert_eq!(verify(&s, &secrets, &req(&[], b"body", 0)), Err(VerifyError::Missing("x-signature")));
    }
}
