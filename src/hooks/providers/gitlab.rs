//! GitLab webhooks: the `X-Gitlab-Token` header carries the secret itself. It is a shared
//! password, not an HMAC: nothing about the body is signed, so a captured delivery can be
//! replayed or altered by whoever can read it; the delivery id is what deduplicates.
//!
//! <https://docs.gitlab.com/user/project/integrations/webhooks/#validate-payloads-by-using-a-secret-token>:
//! "If you specify a secret token, it is sent with the hook request in the `X-Gitlab-Token` HTTP
//! header. Your webhook endpoint can check the token to verify that the request is legitimate."
//!
//! Delivery headers (same page): "`User-Agent`: In the format `"Gitlab/<VERSION>"`." —
//! "`X-Gitlab-Event`: Name of the webhook type. Corresponds to event types but in the format
//! `"<EVENT> Hook"`." — "`X-Gitlab-Event-UUID`: Unique ID per webhook that is not recursive."
//! `X-Gitlab-Webhook-UUID` (GitLab 16.2, <https://gitlab.com/gitlab-org/gitlab/-/merge_requests/125338>)
//! "adds a unique identification header for every webhook event"; it is the fallback id when
//! an older GitLab sends no `X-Gitlab-Event-UUID`.
//!
//! The token is compared as SHA-256 digests with [`ct_eq`], so neither its bytes nor its length
//! show in the time taken.

use super::{header, id_header_any, Headers, Incoming, Verified, VerifyError};
use crate::auth::ct_eq;
use sha2::{Digest, Sha256};

const TOKEN_HEADER: &str = "x-gitlab-token";

/// Verifies a GitLab delivery.
pub(super) fn verify(secrets: &[Vec<u8>], req: &Incoming) -> Result<Verified, VerifyError> {
    let token = header(req, TOKEN_HEADER)?.ok_or(VerifyError::Missing(TOKEN_HEADER))?;
    let delivery_id = id_header_any(req, &["x-gitlab-event-uuid", "x-gitlab-webhook-uuid"])?;
    // "Push Hook" has a space in it: the event name is read as a header value, not an id.
    let event = match header(req, "x-gitlab-event")? {
        Some(v) if v.len() <= super::MAX_ID_LEN => Some(v.to_owned()),
        Some(_) => return Err(VerifyError::Malformed("x-gitlab-event")),
        None => None,
    };
    let given = Sha256::digest(token.as_bytes());
    let mut found = None;
    for (i, secret) in secrets.iter().enumerate() {
        if secret.is_empty() {
            continue;
        }
        let hit = ct_eq(&Sha256::digest(secret), &given);
        if hit && found.is_none() {
            found = Some(i);
        }
    }
    let secret_index = found.ok_or(VerifyError::Mismatch)?;
    Ok(Verified { secret_index, delivery_id, event, timestamp: None })
}

/// The headers GitLab sends: the token, event, both UUIDs and its User-Agent. A token that is
/// not UTF-8 (which `Provider::check_secret` refuses) is sent lossily.
pub(super) fn sign(out: &mut Headers, secret: &[u8], event: &str, delivery_id: &str) {
    out.add("User-Agent", "GitLab/hookcast");
    out.add_nonempty("X-Gitlab-Event", event);
    out.add_nonempty("X-Gitlab-Event-UUID", delivery_id);
    out.add_nonempty("X-Gitlab-Webhook-UUID", delivery_id);
    out.add("X-Gitlab-Token", String::from_utf8_lossy(secret));
}

#[cfg(test)]
mod tests {
    use super::super::tests::{hdrs, req};
    use super::*;

    #[test]
    fn token_event_and_ids() {
        let h = hdrs(&[
            ("X-Gitlab-Token", "s3cret"),
            ("X-Gitlab-Event", "Push Hook"),
            ("X-Gitlab-Webhook-UUID", "w-1"),
            ("X-Gitlab-Event-UUID", "e-1"),
        ]);
        let got = verify(&[b"s3cret".to_vec()], &req(&h, b"{}", 0)).unwrap();
        assert_eq!(
            got,
            Verified {
                secret_index: 0,
                delivery_id: Some("e-1".into()),
                event: Some("Push Hook".into()),
                timestamp: None
            }
        );
        // Without the event UUID the webhook UUID is the id.
        let h = hdrs(&[("X-Gitlab-Token", "s3cret"), ("X-Gitlab-Webhook-UUID", "w-1")]);
        let got = verify(&[b"s3cret".to_vec()], &req(&h, b"{}", 0)).unwrap();
        assert_eq!(got.delivery_id.as_deref(), Some("w-1"));
        assert_eq!(got.event, None);
    }

    #[test]
    fn rotation_second_secret() {
        let h = hdrs(&[("X-Gitlab-Token", "new")]);
        let got = verify(&[b"old".to_vec(), b"new".to_vec()], &req(&h, b"", 0)).unwrap();
        assert_eq!(got.secret_index, 1);
    }

    #[test]
    fn every_error() {
        let s = [b"s3cret".to_vec()];
        let check = |pairs: &[(&str, &str)], want: VerifyError| {
            let h = hdrs(pairs);
            assert_eq!(verify(&s, &req(&h, b"", 0)), Err(want), "{pairs:?}");
        };
        check(&[], VerifyError::Missing(TOKEN_HEADER));
        check(&[("x-gitlab-token", "  ")], VerifyError::Missing(TOKEN_HEADER));
        check(&[("x-gitlab-token", "s3cret"), ("x-gitlab-token", "s3cret")], VerifyError::Duplicate(TOKEN_HEADER));
        check(&[("x-gitlab-token", "s3cret\u{7f}")], VerifyError::Malformed(TOKEN_HEADER));
        check(&[("x-gitlab-token", "s3cre")], VerifyError::Mismatch);
        check(&[("x-gitlab-token", "s3cret2")], VerifyError::Mismatch);
        check(&[("x-gitlab-token", "S3CRET")], VerifyError::Mismatch);
        // An empty configured secret never matches anything.
        let h = hdrs(&[("x-gitlab-token", "x")]);
        assert_eq!(verify(&[Vec::new()], &req(&h, b"", 0)), Err(VerifyError::Mismatch));
    }
}
