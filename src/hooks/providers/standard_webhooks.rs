//! Standard Webhooks (and Svix, which sends the same scheme under `svix-` names): headers
//! `webhook-id`, `webhook-timestamp` and `webhook-signature`, the last a space-separated list of
//! `v1,<base64 HMAC-SHA256("{id}.{timestamp}.{body}")>` entries; the secret is `whsec_<base64>`
//! and the HMAC key is the decoded base64.
//!
//! <https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>
//! (version 1.0.0): "The content to be signed is therefore: `{msg_id}.{timestamp}.{payload}`." —
//! Symmetric signatures use "`HMAC-SHA256`", secrets are "base64 encoded, prefixed with `whsec_`
//! for easy identification", and the "signature identifier" is "`v1`" (asymmetric: "`v1a`"). —
//! "a symmetric signature will be v1, followed by a comma (`,`), followed by the base64 encoded
//! signature. For example: `v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=`." — "`webhook-id`:
//! the unique webhook identifier described in the sections above. `webhook-timestamp`: integer
//! unix timestamp (seconds since epoch). `webhook-signature`: the signature(s) of this webhook."
//! — "The signature header is a space delimited list of signatures associated with this webhook.
//! […] Webhook consumers can try to verify each signature until one matches." — "When verifying
//! symmetric signatures, use a constant time comparison function" — "Make sure to verify the
//! `webhook-timestamp` header has a timestamp that is within some allowable tolerance of the
//! current timestamp to prevent replay attacks." — "Use the `webhook-id` header as an
//! idempotency key".
//!
//! <https://docs.svix.com/receiving/verifying-payloads/how-manual>: "Each webhook call includes
//! three headers with additional information that are used for verification: `svix-id` […]
//! `svix-timestamp` […] `svix-signature`" — "Professional and Enterprise tier customers can have
//! the headers white-labeled to use the `webhook-` prefix instead of the `svix-` prefix".
//!
//! Only `v1` entries are checked (`v1a`, ed25519, and unknown versions are skipped, as the
//! reference libraries skip them); a `v1` entry that is not 32 bytes of base64 is malformed.
//! The header set is chosen as a whole: the `webhook-` names when `webhook-signature` is
//! present, else the `svix-` names, so an id, timestamp and signature never mix prefixes.
//! The window applies both ways ("Message timestamp too old" / "too new" in the libraries).

use super::{
    check_window, id_header, json_id, mac, parse_timestamp, required, Algorithm, Headers, Incoming, Verified,
    VerifyError, BASE64,
};
use base64::Engine as _;

/// One family of header names.
struct Names {
    id: &'static str,
    timestamp: &'static str,
    signature: &'static str,
}

const WEBHOOK: Names = Names { id: "webhook-id", timestamp: "webhook-timestamp", signature: "webhook-signature" };
const SVIX: Names = Names { id: "svix-id", timestamp: "svix-timestamp", signature: "svix-signature" };

/// The HMAC key of a secret: `whsec_` stripped if present, the rest base64-decoded (padding
/// optional, as the Python library pads before decoding); `None` when that fails or is empty.
pub(super) fn key(secret: &[u8]) -> Option<Vec<u8>> {
    let b64 = secret.strip_prefix(b"whsec_").unwrap_or(secret);
    BASE64.decode(b64).ok().filter(|k| !k.is_empty())
}

/// The `v1` signatures of a `webhook-signature` value.
fn v1_signatures(value: &str, header: &'static str) -> Result<Vec<Vec<u8>>, VerifyError> {
    let mut out = Vec::new();
    for entry in value.split(' ').filter(|e| !e.is_empty()) {
        let (version, sig) = entry.split_once(',').ok_or(VerifyError::Malformed(header))?;
        if version == "v1" {
            let mac = BASE64.decode(sig).ok().filter(|m| m.len() == 32).ok_or(VerifyError::Malformed(header))?;
            out.push(mac);
        }
    }
    Ok(out)
}

/// Verifies a Standard Webhooks or Svix delivery.
pub(super) fn verify(tolerance_secs: u64, secrets: &[Vec<u8>], req: &Incoming) -> Result<Verified, VerifyError> {
    let names = match super::header(req, WEBHOOK.signature)? {
        Some(_) => &WEBHOOK,
        None if super::header(req, SVIX.signature)?.is_some() => &SVIX,
        None => return Err(VerifyError::Missing(WEBHOOK.signature)),
    };
    let signatures = v1_signatures(required(req, names.signature)?, names.signature)?;
    let id = id_header(req, names.id)?.ok_or(VerifyError::Missing(names.id))?;
    let ts_text = required(req, names.timestamp)?;
    let timestamp = parse_timestamp(ts_text, names.timestamp)?;
    let keys: Vec<Vec<u8>> = secrets.iter().map(|s| key(s).unwrap_or_default()).collect();
    let parts: [&[u8]; 5] = [id.as_bytes(), b".", ts_text.as_bytes(), b".", req.body];
    let secret_index = super::first_match(keys.iter().map(Vec::as_slice), Algorithm::Sha256, &parts, &signatures)
        .ok_or(VerifyError::Mismatch)?;
    check_window(timestamp, req.now_unix, tolerance_secs)?;
    Ok(Verified { secret_index, delivery_id: json_id(Some(id)), event: None, timestamp: Some(timestamp) })
}

/// The headers a Standard Webhooks sender sends: id, timestamp, one `v1` signature. A secret
/// that does not decode (which `Provider::check_secret` refuses) is used as raw bytes.
pub(super) fn sign(out: &mut Headers, secret: &[u8], body: &[u8], now_unix: u64, delivery_id: &str) {
    let ts = now_unix.to_string();
    let key = key(secret).unwrap_or_else(|| secret.to_vec());
    let sig = mac(Algorithm::Sha256, &key, &[delivery_id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    out.add_nonempty("webhook-id", delivery_id);
    out.add("webhook-timestamp", ts);
    out.add("webhook-signature", format!("v1,{}", BASE64.encode(sig)));
}

#[cfg(test)]
mod tests {
    use super::super::tests::{hdrs, req};
    use super::*;

    const SECRET: &[u8] = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: u64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    /// The example of the Svix and Standard Webhooks libraries' test suites, which sign this
    /// body, id and timestamp with this secret.
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn run(pairs: &[(&str, &str)], now: u64, secrets: &[Vec<u8>]) -> Result<Verified, VerifyError> {
        let h = hdrs(pairs);
        verify(300, secrets, &req(&h, BODY, now))
    }

    fn std_headers(sig: &str) -> Vec<(&'static str, String)> {
        vec![
            ("webhook-id", ID.to_owned()),
            ("webhook-timestamp", TS.to_string()),
            ("webhook-signature", sig.to_owned()),
        ]
    }

    fn as_pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        v.iter().map(|(n, s)| (*n, s.as_str())).collect()
    }

    #[test]
    fn library_test_vector() {
        let h = std_headers(SIG);
        let got = run(&as_pairs(&h), TS, &[SECRET.to_vec()]).unwrap();
        assert_eq!(got, Verified { secret_index: 0, delivery_id: Some(ID.into()), event: None, timestamp: Some(TS) });
        let mut out = Headers(Vec::new());
        sign(&mut out, SECRET, BODY, TS, ID);
        assert!(out.0.contains(&("webhook-signature".to_owned(), SIG.to_owned())));
        // The same secret without its prefix is the same key.
        assert!(run(&as_pairs(&h), TS, &[SECRET[6..].to_vec()]).is_ok());
    }

    #[test]
    fn svix_names() {
        let h = [("svix-id", ID.to_owned()), ("svix-timestamp", TS.to_string()), ("svix-signature", SIG.to_owned())];
        assert!(run(&as_pairs(&h), TS, &[SECRET.to_vec()]).is_ok());
        // Names never mix: a webhook-signature with svix-id is missing its webhook-id.
        let h =
            [("svix-id", ID.to_owned()), ("webhook-timestamp", TS.to_string()), ("webhook-signature", SIG.to_owned())];
        assert_eq!(run(&as_pairs(&h), TS, &[SECRET.to_vec()]), Err(VerifyError::Missing("webhook-id")));
    }

    #[test]
    fn list_of_signatures_and_rotation() {
        let other = "v1,".to_owned() + &BASE64.encode([7u8; 32]);
        let v1a = "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==";
        let h = std_headers(&format!("{other}  {v1a} v2,whatever {SIG}"));
        let got = run(&as_pairs(&h), TS, &[b"whsec_b2xkLXNlY3JldA==".to_vec(), SECRET.to_vec()]).unwrap();
        assert_eq!(got.secret_index, 1);
        // An undecodable secret in the list is skipped, not fatal.
        let got = run(&as_pairs(&h), TS, &[b"whsec_***".to_vec(), SECRET.to_vec()]).unwrap();
        assert_eq!(got.secret_index, 1);
        // Only v1a: nothing we can check.
        let h = std_headers(v1a);
        assert_eq!(run(&as_pairs(&h), TS, &[SECRET.to_vec()]), Err(VerifyError::Mismatch));
    }

    #[test]
    fn window_both_ways() {
        let h = std_headers(SIG);
        let s = [SECRET.to_vec()];
        assert!(run(&as_pairs(&h), TS - 300, &s).is_ok());
        assert_eq!(run(&as_pairs(&h), TS + 301, &s), Err(VerifyError::Stale { skew_secs: 301 }));
        assert_eq!(run(&as_pairs(&h), TS - 301, &s), Err(VerifyError::Stale { skew_secs: -301 }));
    }

    #[test]
    fn id_and_timestamp_are_signed() {
        let s = [SECRET.to_vec()];
        let mut h = std_headers(SIG);
        h[0].1 = "msg_other".into();
        assert_eq!(run(&as_pairs(&h), TS, &s), Err(VerifyError::Mismatch));
        let mut h = std_headers(SIG);
        h[1].1 = (TS + 1).to_string();
        assert_eq!(run(&as_pairs(&h), TS, &s), Err(VerifyError::Mismatch));
    }

    #[test]
    fn every_error() {
        let s = [SECRET.to_vec()];
        let full = std_headers(SIG);
        let without =
            |name: &str| -> Vec<(&'static str, String)> { full.iter().filter(|(n, _)| *n != name).cloned().collect() };
        assert_eq!(
            run(&as_pairs(&without("webhook-signature")), TS, &s),
            Err(VerifyError::Missing("webhook-signature"))
        );
        assert_eq!(run(&as_pairs(&without("webhook-id")), TS, &s), Err(VerifyError::Missing("webhook-id")));
        assert_eq!(
            run(&as_pairs(&without("webhook-timestamp")), TS, &s),
            Err(VerifyError::Missing("webhook-timestamp"))
        );
        for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let mut h = full.clone();
            h.push(h.iter().find(|(n, _)| *n == name).unwrap().clone());
            assert_eq!(run(&as_pairs(&h), TS, &s), Err(VerifyError::Duplicate(name)));
        }
        let malformed = |sig: &str| {
            let h = std_headers(sig);
            assert_eq!(run(&as_pairs(&h), TS, &s), Err(VerifyError::Malformed("webhook-signature")), "{sig}");
        };
        malformed("v1");
        malformed("v1,");
        malformed("v1,!!!!");
        malformed("v1,AAAA");
        malformed(&format!("{SIG} v1"));
        let mut h = std_headers(SIG);
        h[1].1 = "1614265330.5".into();
        assert_eq!(run(&as_pairs(&h), TS, &s), Err(VerifyError::Malformed("webhook-timestamp")));
        let h = std_headers(&format!("v1,{}", BASE64.encode([0u8; 32])));
        assert_eq!(run(&as_pairs(&h), TS, &s), Err(VerifyError::Mismatch));
    }

    #[test]
    fn secret_keys() {
        assert_eq!(key(b"whsec_AAEC"), Some(vec![0, 1, 2]));
        assert_eq!(key(b"AAEC"), Some(vec![0, 1, 2]));
        assert_eq!(key(b"whsec_AA"), Some(vec![0]));
        assert_eq!(key(b"whsec_AA=="), Some(vec![0]));
        assert_eq!(key(b"whsec_"), None);
        assert_eq!(key(b"whsec_a b"), None);
        assert_eq!(key(b"whsec_YQ-_"), None);
    }
}
