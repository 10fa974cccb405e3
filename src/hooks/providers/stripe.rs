//! Stripe webhooks: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…][,v0=…]`, where each `v1` is
//! the hex HMAC-SHA256 of `{t}.{body}` under the endpoint's signing secret. The event id and
//! type live in the JSON body (`id`, `type`), read only after the signature held.
//!
//! <https://docs.stripe.com/webhooks#verify-manually>: "The `Stripe-Signature` header included
//! in each signed event contains a timestamp and one or more signatures that you must verify.
//! The timestamp is prefixed by `t=`, and each signature is prefixed by a scheme. Schemes start
//! with `v`, followed by an integer. Currently, the only valid live signature scheme is `v1`. To
//! aid with testing, Stripe sends an additional signature with a fake `v0` scheme, for test
//! mode events." — "Stripe generates signatures using a hash-based message authentication code
//! (HMAC) with SHA-256. To prevent downgrade attacks, ignore all schemes that aren't `v1`." —
//! "It's possible to have multiple signatures with the same scheme-secret pair when you roll an
//! endpoint's secret, and keep the previous secret active for up to 24 hours."
//!
//! The steps: "Split the header using the `,` character as the separator to get a list of
//! elements. Then split each element using the `=` character as the separator to get a prefix
//! and value pair." — "The `signed_payload` string is created by concatenating: The timestamp
//! (as a string), The character `.`, The actual JSON payload (that is, the request body)" —
//! "Compute an HMAC with the SHA256 hash function. Use the endpoint's signing secret as the key,
//! and use the `signed_payload` string as the message." — "compute the difference between the
//! current timestamp and the received timestamp, then decide if the difference is within your
//! tolerance." — "Our libraries have a default tolerance of 5 minutes".
//!
//! The `whsec_…` secret is the HMAC key as it is, prefix included: Stripe's SDKs
//! (`stripe-node`'s `computeHMACSignature`, `stripe-python`'s `_compute_signature`) key the HMAC
//! with the secret string's UTF-8 bytes and never base64-decode it, unlike Standard Webhooks.
//!
//! Both SDKs only refuse timestamps that are too old and accept any future one; the window here
//! is applied both ways, as for Slack and Standard Webhooks.

use super::{
    check_window, decode_hex, encode_hex, json_id, mac, match_secrets, parse_timestamp, required, Algorithm, Headers,
    Incoming, Verified, VerifyError,
};
use serde::Deserialize;

const SIG_HEADER: &str = "stripe-signature";

/// The two top-level fields of a Stripe event we report.
#[derive(Deserialize)]
struct EventHead {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// The parsed `Stripe-Signature` value.
struct SignatureHeader<'a> {
    /// The `t` value as sent: the digits are signed as they appear.
    t: &'a str,
    timestamp: u64,
    v1: Vec<Vec<u8>>,
}

/// Splits the header per the steps above. `t` must appear exactly once; every `v1` must be a
/// SHA-256 sized hex MAC; other schemes are ignored; empty elements are skipped.
fn parse(value: &str) -> Result<SignatureHeader<'_>, VerifyError> {
    let malformed = VerifyError::Malformed(SIG_HEADER);
    let mut t = None;
    let mut v1 = Vec::new();
    for element in value.split(',') {
        let element = element.trim_matches([' ', '\t']);
        if element.is_empty() {
            continue;
        }
        let (prefix, v) = element.split_once('=').ok_or(malformed.clone())?;
        match prefix {
            "t" if t.is_none() => t = Some(v),
            "t" => return Err(malformed),
            "v1" => v1.push(decode_hex(v).filter(|m| m.len() == 32).ok_or(malformed.clone())?),
            _ => {}
        }
    }
    let t = t.ok_or(malformed)?;
    Ok(SignatureHeader { t, timestamp: parse_timestamp(t, SIG_HEADER)?, v1 })
}

/// Verifies a Stripe event.
pub(super) fn verify(tolerance_secs: u64, secrets: &[Vec<u8>], req: &Incoming) -> Result<Verified, VerifyError> {
    let sig = parse(required(req, SIG_HEADER)?)?;
    // No v1 at all (only v0, or schemes from the future) is a signature we cannot accept.
    let parts: [&[u8]; 3] = [sig.t.as_bytes(), b".", req.body];
    let secret_index = match_secrets(secrets, Algorithm::Sha256, &parts, &sig.v1).ok_or(VerifyError::Mismatch)?;
    check_window(sig.timestamp, req.now_unix, tolerance_secs)?;
    // Verified: now the body may be parsed. A body that is not a JSON object just has no ids.
    let head = serde_json::from_slice::<EventHead>(req.body).ok();
    let (id, kind) = head.map_or((None, None), |h| (h.id, h.kind));
    Ok(Verified { secret_index, delivery_id: json_id(id), event: json_id(kind), timestamp: Some(sig.timestamp) })
}

/// The header Stripe sends: `Stripe-Signature` for `now_unix`, and its User-Agent. The event id
/// is part of the body, so nothing else is added.
pub(super) fn sign(out: &mut Headers, secret: &[u8], body: &[u8], now_unix: u64) {
    let t = now_unix.to_string();
    let v1 = encode_hex(&mac(Algorithm::Sha256, secret, &[t.as_bytes(), b".", body]));
    out.add("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)");
    out.add("Stripe-Signature", format!("t={t},v1={v1}"));
}

#[cfg(test)]
mod tests {
    use super::super::tests::{hdrs, req};
    use super::*;

    const SECRET: &[u8] = b"whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","type":"payment_intent.succeeded"}"#;
    const T: u64 = 1_700_000_000;

    fn v1(secret: &[u8], t: u64) -> String {
        encode_hex(&mac(Algorithm::Sha256, secret, &[t.to_string().as_bytes(), b".", BODY]))
    }

    fn run(value: &str, now: u64, secrets: &[Vec<u8>]) -> Result<Verified, VerifyError> {
        let h = hdrs(&[("Stripe-Signature", value)]);
        verify(300, secrets, &req(&h, BODY, now))
    }

    #[test]
    fn verifies_and_reads_the_body_after() {
        let got = run(&format!("t={T},v1={}", v1(SECRET, T)), T, &[SECRET.to_vec()]).unwrap();
        assert_eq!(got.delivery_id.as_deref(), Some("evt_1NG8Du2eZvKYlo2CUI79vXWy"));
        assert_eq!(got.event.as_deref(), Some("payment_intent.succeeded"));
        assert_eq!(got.timestamp, Some(T));
    }

    /// The secret is used as it is: decoding the part after `whsec_` gives a different key.
    #[test]
    fn whsec_secret_is_not_base64_decoded() {
        let decoded_key = b"\xb5\xeb\x2d\xb2\xc7\xb2\xad\xeb".to_vec();
        let value = format!("t={T},v1={}", v1(SECRET, T));
        assert_eq!(run(&value, T, &[decoded_key]), Err(VerifyError::Mismatch));
    }

    #[test]
    fn any_v1_with_any_secret_and_rotation() {
        let value = format!("t={T},v1={},v1={},v0={}", v1(b"whsec_other", T), v1(b"whsec_new", T), "ab".repeat(32));
        let got = run(&value, T, &[b"whsec_old".to_vec(), b"whsec_new".to_vec()]).unwrap();
        assert_eq!(got.secret_index, 1);
        // v0 alone is never accepted, even when it is a real HMAC under the secret.
        assert_eq!(run(&format!("t={T},v0={}", v1(SECRET, T)), T, &[SECRET.to_vec()]), Err(VerifyError::Mismatch));
        // Nor a scheme from the future.
        assert_eq!(run(&format!("t={T},v2={}", v1(SECRET, T)), T, &[SECRET.to_vec()]), Err(VerifyError::Mismatch));
    }

    #[test]
    fn window_both_ways() {
        let value = format!("t={T},v1={}", v1(SECRET, T));
        let s = [SECRET.to_vec()];
        assert!(run(&value, T + 300, &s).is_ok());
        assert!(run(&value, T - 300, &s).is_ok());
        assert_eq!(run(&value, T + 301, &s), Err(VerifyError::Stale { skew_secs: 301 }));
        assert_eq!(run(&value, T - 301, &s), Err(VerifyError::Stale { skew_secs: -301 }));
        // A stale request with a bad signature is a mismatch: staleness is only news once signed.
        let bad = format!("t={T},v1={}", v1(b"x", T));
        assert_eq!(run(&bad, T + 1000, &s), Err(VerifyError::Mismatch));
    }

    #[test]
    fn timestamp_is_signed() {
        let value = format!("t={},v1={}", T + 1, v1(SECRET, T));
        assert_eq!(run(&value, T, &[SECRET.to_vec()]), Err(VerifyError::Mismatch));
    }

    #[test]
    fn every_error() {
        let s = [SECRET.to_vec()];
        let good = v1(SECRET, T);
        let m = VerifyError::Malformed(SIG_HEADER);
        let h = hdrs(&[]);
        assert_eq!(verify(300, &s, &req(&h, BODY, T)), Err(VerifyError::Missing(SIG_HEADER)));
        let h = hdrs(&[("stripe-signature", &format!("t={T},v1={good}")), ("Stripe-Signature", "t=1,v1=00")]);
        assert_eq!(verify(300, &s, &req(&h, BODY, T)), Err(VerifyError::Duplicate(SIG_HEADER)));
        for bad in [
            format!("v1={good}"),
            format!("t={T},t={T},v1={good}"),
            format!("t=,v1={good}"),
            format!("t=-1,v1={good}"),
            format!("t={T}.0,v1={good}"),
            format!("t={T},v1={}", &good[2..]),
            format!("t={T},v1=zz{}", &good[2..]),
            format!("t={T},v1"),
            format!("t={T};v1={good}"),
        ] {
            assert_eq!(run(&bad, T, &s), Err(m.clone()), "{bad}");
        }
        assert_eq!(run(&format!("t={T},v1={}", "0".repeat(64)), T, &s), Err(VerifyError::Mismatch));
        assert_eq!(run(&format!("t={T}"), T, &s), Err(VerifyError::Mismatch));
        // Stray commas and spaces are tolerated.
        assert!(run(&format!(" t={T}, ,v1={good},"), T, &s).is_ok());
    }

    #[test]
    fn body_without_ids_still_verifies() {
        let body = b"not json";
        let t = T.to_string();
        let sig = encode_hex(&mac(Algorithm::Sha256, SECRET, &[t.as_bytes(), b".", body]));
        let h = hdrs(&[("Stripe-Signature", &format!("t={t},v1={sig}"))]);
        let got = verify(300, &[SECRET.to_vec()], &req(&h, body, T)).unwrap();
        assert_eq!((got.delivery_id, got.event), (None, None));
    }
}
