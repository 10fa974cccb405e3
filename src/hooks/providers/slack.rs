//! Slack request signing: `X-Slack-Signature: v0=<hex HMAC-SHA256("v0:{ts}:{body}")>` with the
//! app's signing secret, `X-Slack-Request-Timestamp: {ts}`, and a five-minute replay window.
//! Events API bodies are JSON: the event name is `event.type` (or the top-level `type`, e.g.
//! `url_verification`) and the delivery id `event_id`; slash commands and interactivity are
//! form-encoded and carry neither.
//!
//! <https://docs.slack.dev/authentication/verifying-requests-from-slack>: "Slack signs its
//! requests using a secret that's unique to your app." — "On each HTTP request that Slack sends,
//! we add an `X-Slack-Signature` HTTP header. The signature is created by combining the signing
//! secret with the body of the request we're sending using a standard HMAC-SHA256 keyed hash."
//! The steps: "Extract the timestamp header (`1531420618` in this example) from the request" —
//! and, in the page's sample code, "The request timestamp is more than five minutes from local
//! time. It could be a replay attack, so let's ignore it." — "Concatenate the version number, the timestamp, and the body
//! of the request to form a basestring. Use a colon as the delimiter between the three
//! elements. For example, `v0:1531420618:token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&…`.
//! The version number right now is always `v0`." — "With the help of HMAC SHA256 implemented in
//! your favorite programming language, hash the above basestring, using the Slack Signing Secret
//! as the key." — "Compare this computed signature to the `X-Slack-Signature` header on the
//! request."
//!
//! Checked against `slack_sdk.signature.SignatureVerifier` by the fixtures, and against the
//! worked example of that page by a unit test.

use super::{
    check_window, decode_mac, encode_hex, json_id, mac, match_secrets, parse_timestamp, required, Algorithm, Encoding,
    Headers, Incoming, Verified, VerifyError,
};
use serde::Deserialize;

const SIG_HEADER: &str = "x-slack-signature";
const TS_HEADER: &str = "x-slack-request-timestamp";

/// The fields of an Events API body we report.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<String>,
    event_id: Option<String>,
    event: Option<Inner>,
}

/// The inner `event` object of an `event_callback`.
#[derive(Deserialize)]
struct Inner {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Verifies a Slack request.
pub(super) fn verify(tolerance_secs: u64, secrets: &[Vec<u8>], req: &Incoming) -> Result<Verified, VerifyError> {
    let sig = decode_mac(required(req, SIG_HEADER)?, "v0=", Algorithm::Sha256, Encoding::Hex, SIG_HEADER)?;
    let ts_text = required(req, TS_HEADER)?;
    let timestamp = parse_timestamp(ts_text, TS_HEADER)?;
    let parts: [&[u8]; 5] = [b"v0", b":", ts_text.as_bytes(), b":", req.body];
    let secret_index = match_secrets(secrets, Algorithm::Sha256, &parts, &[sig]).ok_or(VerifyError::Mismatch)?;
    check_window(timestamp, req.now_unix, tolerance_secs)?;
    // Verified: now the body may be parsed. Form-encoded bodies have no ids.
    let (event, delivery_id) = match serde_json::from_slice::<Envelope>(req.body) {
        Ok(e) => (json_id(e.event.and_then(|i| i.kind)).or(json_id(e.kind)), json_id(e.event_id)),
        Err(_) => (None, None),
    };
    Ok(Verified { secret_index, delivery_id, event, timestamp: Some(timestamp) })
}

/// The headers Slack sends: signature, timestamp and its User-Agent.
pub(super) fn sign(out: &mut Headers, secret: &[u8], body: &[u8], now_unix: u64) {
    let ts = now_unix.to_string();
    let sig = encode_hex(&mac(Algorithm::Sha256, secret, &[b"v0:", ts.as_bytes(), b":", body]));
    out.add("User-Agent", "Slackbot 1.0 (+https://api.slack.com/robots)");
    out.add("X-Slack-Request-Timestamp", ts);
    out.add("X-Slack-Signature", format!("v0={sig}"));
}

#[cfg(test)]
mod tests {
    use super::super::tests::{hdrs, req};
    use super::*;

    /// The worked example of "Verifying requests from Slack".
    const DOCS_SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const DOCS_TS: &str = "1531420618";
    const DOCS_BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const DOCS_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    const NOW: u64 = 1_531_420_618;

    fn run(ts: &str, sig: &str, body: &[u8], now: u64, secrets: &[Vec<u8>]) -> Result<Verified, VerifyError> {
        let h = hdrs(&[("X-Slack-Request-Timestamp", ts), ("X-Slack-Signature", sig)]);
        verify(300, secrets, &req(&h, body, now))
    }

    #[test]
    fn docs_example() {
        let got = run(DOCS_TS, DOCS_SIG, DOCS_BODY, NOW, &[DOCS_SECRET.to_vec()]).unwrap();
        assert_eq!(got, Verified { secret_index: 0, delivery_id: None, event: None, timestamp: Some(NOW) });
        let mut out = Headers(Vec::new());
        sign(&mut out, DOCS_SECRET, DOCS_BODY, NOW);
        assert!(out.0.contains(&("X-Slack-Signature".to_owned(), DOCS_SIG.to_owned())));
    }

    #[test]
    fn rotation_second_secret() {
        let got = run(DOCS_TS, DOCS_SIG, DOCS_BODY, NOW, &[b"old".to_vec(), DOCS_SECRET.to_vec()]).unwrap();
        assert_eq!(got.secret_index, 1);
    }

    #[test]
    fn window_both_ways() {
        let s = [DOCS_SECRET.to_vec()];
        assert!(run(DOCS_TS, DOCS_SIG, DOCS_BODY, NOW + 300, &s).is_ok());
        assert_eq!(run(DOCS_TS, DOCS_SIG, DOCS_BODY, NOW + 301, &s), Err(VerifyError::Stale { skew_secs: 301 }));
        assert_eq!(run(DOCS_TS, DOCS_SIG, DOCS_BODY, NOW - 301, &s), Err(VerifyError::Stale { skew_secs: -301 }));
        // The timestamp is signed: moving it breaks the signature.
        assert_eq!(run("1531420619", DOCS_SIG, DOCS_BODY, NOW, &s), Err(VerifyError::Mismatch));
    }

    #[test]
    fn events_api_ids() {
        let body = br#"{"type":"event_callback","event_id":"Ev08MFMKH6","event":{"type":"app_mention","text":"hi"}}"#;
        let mut out = Headers(Vec::new());
        sign(&mut out, b"k", body, NOW);
        let h: Vec<(String, Vec<u8>)> =
            out.0.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone().into_bytes())).collect();
        let got = verify(300, &[b"k".to_vec()], &req(&h, body, NOW)).unwrap();
        assert_eq!((got.event.as_deref(), got.delivery_id.as_deref()), (Some("app_mention"), Some("Ev08MFMKH6")));
        let body = br#"{"type":"url_verification","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#;
        let mut out = Headers(Vec::new());
        sign(&mut out, b"k", body, NOW);
        let h: Vec<(String, Vec<u8>)> =
            out.0.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.clone().into_bytes())).collect();
        let got = verify(300, &[b"k".to_vec()], &req(&h, body, NOW)).unwrap();
        assert_eq!((got.event.as_deref(), got.delivery_id), (Some("url_verification"), None));
    }

    #[test]
    fn every_error() {
        let s = [DOCS_SECRET.to_vec()];
        let h = hdrs(&[("X-Slack-Request-Timestamp", DOCS_TS)]);
        assert_eq!(verify(300, &s, &req(&h, DOCS_BODY, NOW)), Err(VerifyError::Missing(SIG_HEADER)));
        let h = hdrs(&[("X-Slack-Signature", DOCS_SIG)]);
        assert_eq!(verify(300, &s, &req(&h, DOCS_BODY, NOW)), Err(VerifyError::Missing(TS_HEADER)));
        let h = hdrs(&[
            ("X-Slack-Request-Timestamp", DOCS_TS),
            ("X-Slack-Request-Timestamp", DOCS_TS),
            ("X-Slack-Signature", DOCS_SIG),
        ]);
        assert_eq!(verify(300, &s, &req(&h, DOCS_BODY, NOW)), Err(VerifyError::Duplicate(TS_HEADER)));
        let h = hdrs(&[
            ("X-Slack-Request-Timestamp", DOCS_TS),
            ("X-Slack-Signature", DOCS_SIG),
            ("X-Slack-Signature", DOCS_SIG),
        ]);
        assert_eq!(verify(300, &s, &req(&h, DOCS_BODY, NOW)), Err(VerifyError::Duplicate(SIG_HEADER)));
        assert_eq!(run("1531420618.5", DOCS_SIG, DOCS_BODY, NOW, &s), Err(VerifyError::Malformed(TS_HEADER)));
        assert_eq!(run(DOCS_TS, &DOCS_SIG[3..], DOCS_BODY, NOW, &s), Err(VerifyError::Malformed(SIG_HEADER)));
        assert_eq!(
            run(DOCS_TS, &DOCS_SIG.replace("v0=", "v1="), DOCS_BODY, NOW, &s),
            Err(VerifyError::Malformed(SIG_HEADER))
        );
        assert_eq!(run(DOCS_TS, DOCS_SIG, b"token=x", NOW, &s), Err(VerifyError::Mismatch));
    }
}
