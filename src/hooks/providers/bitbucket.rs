//! Bitbucket Cloud webhooks: `X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, body)>` — the
//! header name GitHub uses for SHA-1, holding SHA-256. `X-Request-UUID` is the delivery id and
//! `X-Event-Key` the event (`repo:push`, `pullrequest:created`, …).
//!
//! <https://bitbucket.org/blog/enhanced-webhook-security> announced webhook secrets for
//! Bitbucket Cloud. Atlassian words the scheme the same way for Bitbucket Data Center
//! (<https://confluence.atlassian.com/bitbucketserver/event-payload-938025882.html#Eventpayload-HTTPheaders>):
//! "When you define a secret for a webhook, each request is signed via a Hash-based Message
//! Authentication Code (HMAC). The default for this algorithm is HMACSha256. The header
//! X-Hub-Signature is defined and contains the HMAC. For example, the header of the POST request
//! would be plain text encoded as follows: `x-hub-signature:
//! sha256=c3383246d4fd871e66e962b50cc12222222222222222222222222222222222`" — "To authenticate the
//! validity of the message payload, the receiver can perform the HMAC algorithm on the received
//! body with the secret as the key to the HMAC algorithm."
//!
//! Cloud's event payloads (<https://support.atlassian.com/bitbucket-cloud/docs/event-payloads/>)
//! carry `X-Event-Key` (the event), `X-Hook-UUID` (the webhook), `X-Request-UUID` (the delivery)
//! and `X-Attempt-Number`, with `User-Agent: Bitbucket-Webhooks/2.0`.
//!
//! Some third-party guides say Cloud uses GitHub's `X-Hub-Signature-256` name instead; since the
//! value has the same form and key, that name is read when `X-Hub-Signature` is absent. Only
//! `sha256=` is accepted: it is the only algorithm Bitbucket Cloud signs with. Checked against
//! `@octokit/webhooks-methods`' `sign`, which writes exactly this `sha256=<hex>` form.

use super::{
    decode_mac, encode_hex, header, id_header, mac, match_secrets, Algorithm, Encoding, Headers, Incoming, Verified,
    VerifyError,
};

const SIG_HEADER: &str = "x-hub-signature";
const ALT_HEADER: &str = "x-hub-signature-256";

/// Verifies a Bitbucket Cloud delivery.
pub(super) fn verify(secrets: &[Vec<u8>], req: &Incoming) -> Result<Verified, VerifyError> {
    let (name, value) = match header(req, SIG_HEADER)? {
        Some(v) => (SIG_HEADER, v),
        None => (ALT_HEADER, header(req, ALT_HEADER)?.ok_or(VerifyError::Missing(SIG_HEADER))?),
    };
    let sig = decode_mac(value, "sha256=", Algorithm::Sha256, Encoding::Hex, name)?;
    let delivery_id = id_header(req, "x-request-uuid")?;
    let event = id_header(req, "x-event-key")?;
    let secret_index = match_secrets(secrets, Algorithm::Sha256, &[req.body], &[sig]).ok_or(VerifyError::Mismatch)?;
    Ok(Verified { secret_index, delivery_id, event, timestamp: None })
}

/// The headers Bitbucket Cloud sends: signature, event key, request UUID, User-Agent.
pub(super) fn sign(out: &mut Headers, secret: &[u8], body: &[u8], event: &str, delivery_id: &str) {
    out.add("User-Agent", "Bitbucket-Webhooks/2.0");
    out.add_nonempty("X-Event-Key", event);
    out.add_nonempty("X-Request-UUID", delivery_id);
    out.add("X-Attempt-Number", "1");
    out.add("X-Hub-Signature", format!("sha256={}", encode_hex(&mac(Algorithm::Sha256, secret, &[body]))));
}

#[cfg(test)]
mod tests {
    use super::super::tests::{hdrs, req};
    use super::*;

    const BODY: &[u8] = br#"{"push":{"changes":[]}}"#;

    fn sig(secret: &[u8]) -> String {
        format!("sha256={}", encode_hex(&mac(Algorithm::Sha256, secret, &[BODY])))
    }

    #[test]
    fn verifies_and_reads_ids() {
        let h = hdrs(&[("X-Hub-Signature", &sig(b"bb")), ("X-Event-Key", "repo:push"), ("X-Request-UUID", "{u-1}")]);
        let got = verify(&[b"bb".to_vec()], &req(&h, BODY, 0)).unwrap();
        assert_eq!(
            got,
            Verified {
                secret_index: 0,
                delivery_id: Some("{u-1}".into()),
                event: Some("repo:push".into()),
                timestamp: None
            }
        );
    }

    #[test]
    fn github_style_name_only_when_bitbuckets_is_absent() {
        let s = [b"bb".to_vec()];
        let h = hdrs(&[("X-Hub-Signature-256", &sig(b"bb"))]);
        assert!(verify(&s, &req(&h, BODY, 0)).is_ok());
        let h = hdrs(&[("X-Hub-Signature", &sig(b"other")), ("X-Hub-Signature-256", &sig(b"bb"))]);
        assert_eq!(verify(&s, &req(&h, BODY, 0)), Err(VerifyError::Mismatch));
    }

    #[test]
    fn rotation_second_secret() {
        let h = hdrs(&[("X-Hub-Signature", &sig(b"new"))]);
        assert_eq!(verify(&[b"old".to_vec(), b"new".to_vec()], &req(&h, BODY, 0)).map(|v| v.secret_index), Ok(1));
    }

    #[test]
    fn every_error() {
        let s = [b"bb".to_vec()];
        let good = sig(b"bb");
        let check = |pairs: &[(&str, &str)], want: VerifyError| {
            let h = hdrs(pairs);
            assert_eq!(verify(&s, &req(&h, BODY, 0)), Err(want), "{pairs:?}");
        };
        check(&[], VerifyError::Missing(SIG_HEADER));
        check(&[("x-hub-signature", "")], VerifyError::Missing(SIG_HEADER));
        check(&[("x-hub-signature", &good), ("x-hub-signature", &good)], VerifyError::Duplicate(SIG_HEADER));
        check(&[("x-hub-signature", &good["sha256=".len()..])], VerifyError::Malformed(SIG_HEADER));
        check(&[("x-hub-signature", &format!("sha1={}", "0".repeat(40)))], VerifyError::Malformed(SIG_HEADER));
        check(&[("x-hub-signature", &sig(b"other"))], VerifyError::Mismatch);
        check(
            &[("x-hub-signature", &good), ("x-request-uuid", "a"), ("x-request-uuid", "a")],
            VerifyError::Duplicate("x-request-uuid"),
        );
    }
}
