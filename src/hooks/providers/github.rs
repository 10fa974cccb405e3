//! GitHub webhooks: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`, with the
//! legacy SHA-1 `X-Hub-Signature` accepted only when the hook allows it and no SHA-256 header
//! came; `X-GitHub-Delivery` is the delivery id and `X-GitHub-Event` the event name.
//!
//! <https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries>:
//! "GitHub will use your secret token to create a hash signature that's sent to you with each
//! payload. The hash signature will appear in each delivery as the value of the
//! `X-Hub-Signature-256` header." — "GitHub uses an HMAC hex digest to compute the hash." —
//! "The hash signature always starts with `sha256=`." — "The hash signature is generated using
//! your webhook's secret token and the payload contents."
//!
//! <https://docs.github.com/en/webhooks/webhook-events-and-payloads#delivery-headers>:
//! "`X-GitHub-Event`: The name of the event that triggered the delivery. `X-GitHub-Delivery`: A
//! globally unique identifier (GUID) to identify the event." — "`X-Hub-Signature`: This header is
//! sent if the webhook is configured with a secret. This is the HMAC hex digest of the request
//! body, and is generated using the SHA-1 hash function and the secret as the HMAC key.
//! `X-Hub-Signature` is provided for compatibility with existing integrations. We recommend that
//! you use the more secure `X-Hub-Signature-256` instead." — "the User-Agent for the requests
//! will have the prefix `GitHub-Hookshot/`."
//!
//! Checked against `@octokit/webhooks-methods` (GitHub's own JavaScript SDK) by the fixtures.

use super::{
    decode_mac, encode_hex, header, id_header, mac, match_secrets, Algorithm, Encoding, Headers, Incoming, Verified,
    VerifyError,
};

const SHA256_HEADER: &str = "x-hub-signature-256";
const SHA1_HEADER: &str = "x-hub-signature";

/// Verifies a GitHub delivery.
pub(super) fn verify(allow_sha1: bool, secrets: &[Vec<u8>], req: &Incoming) -> Result<Verified, VerifyError> {
    let (alg, name, prefix, value) = match header(req, SHA256_HEADER)? {
        Some(v) => (Algorithm::Sha256, SHA256_HEADER, "sha256=", v),
        None if allow_sha1 => match header(req, SHA1_HEADER)? {
            Some(v) => (Algorithm::Sha1, SHA1_HEADER, "sha1=", v),
            None => return Err(VerifyError::Missing(SHA256_HEADER)),
        },
        None => return Err(VerifyError::Missing(SHA256_HEADER)),
    };
    let sig = decode_mac(value, prefix, alg, Encoding::Hex, name)?;
    let delivery_id = id_header(req, "x-github-delivery")?;
    let event = id_header(req, "x-github-event")?;
    let secret_index = match_secrets(secrets, alg, &[req.body], &[sig]).ok_or(VerifyError::Mismatch)?;
    Ok(Verified { secret_index, delivery_id, event, timestamp: None })
}

/// The headers GitHub sends with a body: both signatures (GitHub sends the SHA-1 one too),
/// event, delivery and its User-Agent.
pub(super) fn sign(out: &mut Headers, secret: &[u8], body: &[u8], event: &str, delivery_id: &str) {
    out.add("User-Agent", "GitHub-Hookshot/hookcast");
    out.add_nonempty("X-GitHub-Event", event);
    out.add_nonempty("X-GitHub-Delivery", delivery_id);
    out.add("X-Hub-Signature", format!("sha1={}", encode_hex(&mac(Algorithm::Sha1, secret, &[body]))));
    out.add("X-Hub-Signature-256", format!("sha256={}", encode_hex(&mac(Algorithm::Sha256, secret, &[body]))));
}

#[cfg(test)]
mod tests {
    use super::super::tests::{hdrs, req};
    use super::super::{sign as sign_any, verify as verify_any, Provider};
    use super::*;

    const DOCS_SECRET: &[u8] = b"It's a Secret to Everybody";
    const DOCS_PAYLOAD: &[u8] = b"Hello, World!";
    const DOCS_SIGNATURE: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    /// The test vector in "Testing the webhook payload validation" of GitHub's docs.
    #[test]
    fn docs_test_vector() {
        let h = hdrs(&[
            ("X-Hub-Signature-256", DOCS_SIGNATURE),
            ("X-GitHub-Event", "ping"),
            ("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ]);
        let got = verify(false, &[DOCS_SECRET.to_vec()], &req(&h, DOCS_PAYLOAD, 0)).unwrap();
        assert_eq!(got.secret_index, 0);
        assert_eq!(got.event.as_deref(), Some("ping"));
        assert_eq!(got.delivery_id.as_deref(), Some("72d3162e-cc78-11e3-81ab-4c9367dc0958"));
        assert_eq!(got.timestamp, None);
        let signed = sign_any(&Provider::Github { allow_sha1: false }, DOCS_SECRET, DOCS_PAYLOAD, 0, "", "");
        assert!(signed.contains(&("X-Hub-Signature-256".to_owned(), DOCS_SIGNATURE.to_owned())));
    }

    #[test]
    fn upper_case_hex_is_the_same_mac() {
        let upper = format!("sha256={}", DOCS_SIGNATURE["sha256=".len()..].to_ascii_uppercase());
        let h = hdrs(&[("x-hub-signature-256", &upper)]);
        assert!(verify(false, &[DOCS_SECRET.to_vec()], &req(&h, DOCS_PAYLOAD, 0)).is_ok());
    }

    #[test]
    fn rotation_second_secret() {
        let h = hdrs(&[("x-hub-signature-256", DOCS_SIGNATURE)]);
        let got = verify(false, &[b"old".to_vec(), DOCS_SECRET.to_vec()], &req(&h, DOCS_PAYLOAD, 0)).unwrap();
        assert_eq!(got.secret_index, 1);
    }

    #[test]
    fn sha1_only_when_allowed_and_no_sha256() {
        let sha1 = format!("sha1={}", encode_hex(&mac(Algorithm::Sha1, DOCS_SECRET, &[DOCS_PAYLOAD])));
        let h = hdrs(&[("x-hub-signature", &sha1)]);
        let secrets = [DOCS_SECRET.to_vec()];
        assert_eq!(verify(false, &secrets, &req(&h, DOCS_PAYLOAD, 0)), Err(VerifyError::Missing(SHA256_HEADER)));
        assert!(verify(true, &secrets, &req(&h, DOCS_PAYLOAD, 0)).is_ok());
        // With a SHA-256 header present, it alone decides: a bad one is not rescued by SHA-1.
        let bad256 = format!("sha256={}", "0".repeat(64));
        let h = hdrs(&[("x-hub-signature", &sha1), ("x-hub-signature-256", &bad256)]);
        assert_eq!(verify(true, &secrets, &req(&h, DOCS_PAYLOAD, 0)), Err(VerifyError::Mismatch));
        // A SHA-1 value in the SHA-256 header is malformed.
        let h = hdrs(&[("x-hub-signature-256", &sha1)]);
        assert_eq!(verify(true, &secrets, &req(&h, DOCS_PAYLOAD, 0)), Err(VerifyError::Malformed(SHA256_HEADER)));
    }

    #[test]
    fn every_error() {
        let s = [DOCS_SECRET.to_vec()];
        let check = |pairs: &[(&str, &str)], want: VerifyError| {
            let h = hdrs(pairs);
            assert_eq!(verify(false, &s, &req(&h, DOCS_PAYLOAD, 0)), Err(want), "{pairs:?}");
        };
        check(&[], VerifyError::Missing(SHA256_HEADER));
        check(&[("x-hub-signature-256", "")], VerifyError::Missing(SHA256_HEADER));
        check(
            &[("x-hub-signature-256", DOCS_SIGNATURE), ("x-hub-signature-256", DOCS_SIGNATURE)],
            VerifyError::Duplicate(SHA256_HEADER),
        );
        check(&[("x-hub-signature-256", &DOCS_SIGNATURE[7..])], VerifyError::Malformed(SHA256_HEADER));
        check(&[("x-hub-signature-256", "SHA256=00")], VerifyError::Malformed(SHA256_HEADER));
        check(&[("x-hub-signature-256", &DOCS_SIGNATURE[..70])], VerifyError::Malformed(SHA256_HEADER));
        check(&[("x-hub-signature-256", &format!("{DOCS_SIGNATURE}00"))], VerifyError::Malformed(SHA256_HEADER));
        check(&[("x-hub-signature-256", &format!("sha256={}", "0".repeat(64)))], VerifyError::Mismatch);
        check(
            &[("x-hub-signature-256", DOCS_SIGNATURE), ("x-github-delivery", "a"), ("x-github-delivery", "b")],
            VerifyError::Duplicate("x-github-delivery"),
        );
        check(
            &[("x-hub-signature-256", DOCS_SIGNATURE), ("x-github-event", "pu sh")],
            VerifyError::Malformed("x-github-event"),
        );
        let h = vec![("x-hub-signature-256".to_owned(), b"sha256=\xff".to_vec())];
        assert_eq!(verify(false, &s, &req(&h, DOCS_PAYLOAD, 0)), Err(VerifyError::Malformed(SHA256_HEADER)));
    }

    #[test]
    fn sign_sends_what_github_sends() {
        let p = Provider::Github { allow_sha1: true };
        let fields = sign_any(&p, DOCS_SECRET, DOCS_PAYLOAD, 0, "push", "abc");
        let names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["User-Agent", "X-GitHub-Event", "X-GitHub-Delivery", "X-Hub-Signature", "X-Hub-Signature-256"]
        );
        let h: Vec<(String, Vec<u8>)> = fields
            .iter()
            .filter(|(n, _)| n != "X-Hub-Signature-256")
            .map(|(n, v)| (n.to_ascii_lowercase(), v.clone().into_bytes()))
            .collect();
        // The SHA-1 header alone verifies when allowed.
        assert!(verify_any(&p, &[DOCS_SECRET.to_vec()], &req(&h, DOCS_PAYLOAD, 0)).is_ok());
    }
}
