//! Gitea and Forgejo webhooks: bare lower-case hex HMAC-SHA256 of the body, no prefix, in
//! `X-Gitea-Signature` (Gitea) or `X-Forgejo-Signature` (Forgejo, which sends the Gitea, Gogs
//! and GitHub names as well).
//!
//! <https://docs.gitea.com/usage/webhooks> shows the delivery headers ("X-Gitea-Delivery:
//! f6266f16-1bf3-46a5-9ea4-602e06ead473", "X-Gitea-Event: push") and
//! <https://forgejo.org/docs/latest/user/webhooks/> Forgejo's ("X-Forgejo-Delivery: …",
//! "X-Forgejo-Event: push", followed by the X-GitHub-, X-Gogs- and X-Gitea- copies). Neither page
//! spells out the signature, so the source is the reference: Forgejo's
//! `services/webhook/shared/payloader.go` (`AddDefaultHeaders`), the same code as Gitea's
//! `services/webhook/deliver.go`:
//!
//! ```go
//! sig256 := hmac.New(sha256.New, secret)
//! signatureSHA256 = hex.EncodeToString(sig256.Sum(nil))
//! req.Header.Add("X-Forgejo-Signature", signatureSHA256)
//! req.Header.Add("X-Gitea-Signature", signatureSHA256)
//! req.Header.Add("X-Gogs-Signature", signatureSHA256)
//! req.Header.Add("X-Hub-Signature", "sha1="+signatureSHA1)
//! req.Header.Add("X-Hub-Signature-256", "sha256="+signatureSHA256)
//! ```
//!
//! With no secret set, those headers go out empty; an empty header counts as absent here, so
//! the answer is `Missing`. For Forgejo the `X-Forgejo-*` names are read first and the
//! `X-Gitea-*` copies only when they are absent: a bad `X-Forgejo-Signature` is not rescued by
//! a good `X-Gitea-Signature`. Neither sets a User-Agent, so Go's default is what arrives.

use super::{
    decode_mac, encode_hex, header, id_header_any, mac, match_secrets, Algorithm, Encoding, Headers, Incoming,
    Verified, VerifyError,
};

/// Which of the two forges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flavour {
    /// Gitea: `X-Gitea-*` only.
    Gitea,
    /// Forgejo: `X-Forgejo-*`, falling back to the `X-Gitea-*` copies.
    Forgejo,
}

impl Flavour {
    /// Header names in the order they are tried: signature, delivery, event.
    fn names(self) -> (&'static [&'static str], &'static [&'static str], &'static [&'static str]) {
        match self {
            Flavour::Gitea => (&["x-gitea-signature"], &["x-gitea-delivery"], &["x-gitea-event"]),
            Flavour::Forgejo => (
                &["x-forgejo-signature", "x-gitea-signature"],
                &["x-forgejo-delivery", "x-gitea-delivery"],
                &["x-forgejo-event", "x-gitea-event"],
            ),
        }
    }
}

/// Verifies a Gitea or Forgejo delivery.
pub(super) fn verify(flavour: Flavour, secrets: &[Vec<u8>], req: &Incoming) -> Result<Verified, VerifyError> {
    let (sig_names, delivery_names, event_names) = flavour.names();
    let mut sig = None;
    for name in sig_names {
        if let Some(v) = header(req, name)? {
            sig = Some(decode_mac(v, "", Algorithm::Sha256, Encoding::Hex, name)?);
            break;
        }
    }
    let sig = sig.ok_or(VerifyError::Missing(sig_names[0]))?;
    let delivery_id = id_header_any(req, delivery_names)?;
    let event = id_header_any(req, event_names)?;
    let secret_index = match_secrets(secrets, Algorithm::Sha256, &[req.body], &[sig]).ok_or(VerifyError::Mismatch)?;
    Ok(Verified { secret_index, delivery_id, event, timestamp: None })
}

/// The headers Gitea or Forgejo send (`AddDefaultHeaders`), less the `X-*-Event-Type` ones.
pub(super) fn sign(out: &mut Headers, flavour: Flavour, secret: &[u8], body: &[u8], event: &str, delivery_id: &str) {
    let sha256 = encode_hex(&mac(Algorithm::Sha256, secret, &[body]));
    let sha1 = encode_hex(&mac(Algorithm::Sha1, secret, &[body]));
    out.add("User-Agent", "Go-http-client/1.1");
    let forges: &[&str] = match flavour {
        Flavour::Gitea => &["Gitea", "Gogs"],
        Flavour::Forgejo => &["Forgejo", "Gitea", "Gogs"],
    };
    for forge in forges {
        out.add_nonempty(&format!("X-{forge}-Delivery"), delivery_id);
        out.add_nonempty(&format!("X-{forge}-Event"), event);
        out.add(&format!("X-{forge}-Signature"), sha256.clone());
    }
    out.add("X-Hub-Signature", format!("sha1={sha1}"));
    out.add("X-Hub-Signature-256", format!("sha256={sha256}"));
    out.add_nonempty("X-GitHub-Delivery", delivery_id);
    out.add_nonempty("X-GitHub-Event", event);
}

#[cfg(test)]
mod tests {
    use super::super::tests::{hdrs, req};
    use super::*;

    const SECRET: &[u8] = b"gitea-secret";
    const BODY: &[u8] = br#"{"ref":"refs/heads/main"}"#;

    fn sig(secret: &[u8]) -> String {
        encode_hex(&mac(Algorithm::Sha256, secret, &[BODY]))
    }

    #[test]
    fn gitea_headers() {
        let s = sig(SECRET);
        let h = hdrs(&[("X-Gitea-Signature", &s), ("X-Gitea-Delivery", "d-1"), ("X-Gitea-Event", "push")]);
        let got = verify(Flavour::Gitea, &[SECRET.to_vec()], &req(&h, BODY, 0)).unwrap();
        assert_eq!(
            got,
            Verified { secret_index: 0, delivery_id: Some("d-1".into()), event: Some("push".into()), timestamp: None }
        );
        // Gitea does not read Forgejo's names.
        let h = hdrs(&[("X-Forgejo-Signature", &s)]);
        assert_eq!(
            verify(Flavour::Gitea, &[SECRET.to_vec()], &req(&h, BODY, 0)),
            Err(VerifyError::Missing("x-gitea-signature"))
        );
    }

    #[test]
    fn forgejo_prefers_its_own_names_and_falls_back_to_gitea() {
        let good = sig(SECRET);
        let bad = sig(b"other");
        let secrets = [SECRET.to_vec()];
        let h = hdrs(&[
            ("X-Forgejo-Signature", &good),
            ("X-Forgejo-Delivery", "f-1"),
            ("X-Gitea-Delivery", "g-1"),
            ("X-Gitea-Event", "push"),
        ]);
        let got = verify(Flavour::Forgejo, &secrets, &req(&h, BODY, 0)).unwrap();
        assert_eq!((got.delivery_id.as_deref(), got.event.as_deref()), (Some("f-1"), Some("push")));
        let h = hdrs(&[("X-Gitea-Signature", &good)]);
        assert!(verify(Flavour::Forgejo, &secrets, &req(&h, BODY, 0)).is_ok());
        let h = hdrs(&[("X-Forgejo-Signature", &bad), ("X-Gitea-Signature", &good)]);
        assert_eq!(verify(Flavour::Forgejo, &secrets, &req(&h, BODY, 0)), Err(VerifyError::Mismatch));
        // Empty headers (Forgejo without a secret) count as absent.
        let h = hdrs(&[("X-Forgejo-Signature", ""), ("X-Gitea-Signature", "")]);
        assert_eq!(
            verify(Flavour::Forgejo, &secrets, &req(&h, BODY, 0)),
            Err(VerifyError::Missing("x-forgejo-signature"))
        );
    }

    #[test]
    fn rotation_second_secret() {
        let h = hdrs(&[("X-Gitea-Signature", &sig(b"new"))]);
        let got = verify(Flavour::Gitea, &[b"old".to_vec(), b"new".to_vec()], &req(&h, BODY, 0)).unwrap();
        assert_eq!(got.secret_index, 1);
    }

    #[test]
    fn every_error() {
        let s = [SECRET.to_vec()];
        let good = sig(SECRET);
        let check = |f: Flavour, pairs: &[(&str, &str)], want: VerifyError| {
            let h = hdrs(pairs);
            assert_eq!(verify(f, &s, &req(&h, BODY, 0)), Err(want), "{pairs:?}");
        };
        check(Flavour::Gitea, &[], VerifyError::Missing("x-gitea-signature"));
        check(Flavour::Forgejo, &[], VerifyError::Missing("x-forgejo-signature"));
        check(
            Flavour::Gitea,
            &[("x-gitea-signature", &good), ("x-gitea-signature", &good)],
            VerifyError::Duplicate("x-gitea-signature"),
        );
        check(
            Flavour::Forgejo,
            &[("x-forgejo-signature", &good), ("x-forgejo-signature", "")],
            VerifyError::Duplicate("x-forgejo-signature"),
        );
        check(
            Flavour::Gitea,
            &[("x-gitea-signature", &format!("sha256={good}"))],
            VerifyError::Malformed("x-gitea-signature"),
        );
        check(Flavour::Gitea, &[("x-gitea-signature", &good[1..])], VerifyError::Malformed("x-gitea-signature"));
        check(Flavour::Forgejo, &[("x-forgejo-signature", "zz")], VerifyError::Malformed("x-forgejo-signature"));
        check(Flavour::Gitea, &[("x-gitea-signature", &sig(b"x"))], VerifyError::Mismatch);
        check(
            Flavour::Gitea,
            &[("x-gitea-signature", &good), ("x-gitea-event", "a"), ("x-gitea-event", "b")],
            VerifyError::Duplicate("x-gitea-event"),
        );
    }
}
