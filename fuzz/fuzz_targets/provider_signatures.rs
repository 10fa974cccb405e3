//! Feeds arbitrary header values and bodies to `hooks::providers::verify` for every provider
//! (Stripe's `t=…,v1=…`, the Standard Webhooks `v1,…` list, GitHub's `sha256=…`, Slack's
//! `v0=…` and timestamp, GitLab's token, Gitea/Forgejo and Bitbucket, generic HMAC).
//!
//! Beyond "does not panic": a request the fuzzer wrote never names a secret that is not there,
//! and, as a differential check, a request `sign` made with any secret `check_secret` accepts
//! verifies at its own time with that secret, reporting the ids the headers carry.
//!
//! Input: a provider selector byte, then fields split at NUL: body, secret, event, delivery id,
//! clock (decimal), then header fields, each a name selector byte followed by the value.

#![no_main]

use hookcast::hooks::providers::{sign, verify, Algorithm, Encoding, HmacSpec, Incoming, Provider};
use libfuzzer_sys::fuzz_target;

/// Every header a scheme reads, so the fuzzer reaches each parser (and duplicates of it).
const NAMES: [&str; 18] = [
    "x-hub-signature-256",
    "x-hub-signature",
    "x-github-delivery",
    "x-github-event",
    "x-gitlab-token",
    "x-gitea-signature",
    "x-forgejo-signature",
    "stripe-signature",
    "x-slack-signature",
    "x-slack-request-timestamp",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "x-signature",
    "x-event-key",
];

/// A secret every provider accepts (Standard Webhooks needs base64 after `whsec_`).
const FALLBACK_SECRET: &[u8] = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn providers() -> [Provider; 11] {
    [
        Provider::Github { allow_sha1: false },
        Provider::Github { allow_sha1: true },
        Provider::Gitlab,
        Provider::Gitea,
        Provider::Forgejo,
        Provider::Bitbucket,
        Provider::Stripe { tolerance_secs: 300 },
        Provider::Slack { tolerance_secs: 300 },
        Provider::StandardWebhooks { tolerance_secs: 300 },
        Provider::parse("hmac").unwrap(),
        Provider::Hmac(HmacSpec {
            header: "x-signature".into(),
            algorithm: Algorithm::Sha512,
            encoding: Encoding::Base64,
            prefix: "v=".into(),
        }),
    ]
}

/// An id as `sign` is meant to get one: printable ASCII without spaces, short.
fn id_from(bytes: &[u8]) -> String {
    bytes.iter().filter(|b| b.is_ascii_graphic()).take(64).map(|&b| char::from(b)).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let all = providers();
    let p = &all[usize::from(sel) % all.len()];
    let mut fields = rest.split(|&b| b == 0);
    let body = fields.next().unwrap_or_default();
    let secret = fields.next().unwrap_or_default();
    let event = id_from(fields.next().unwrap_or_default());
    let delivery = id_from(fields.next().unwrap_or_default());
    // Timestamps are 1 to 19 digits (`parse_timestamp`): a clock past 10^19 s signs what no
    // receiver reads, so the differential check keeps to clocks below it.
    let now: u64 = std::str::from_utf8(fields.next().unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n < 10_000_000_000_000_000_000)
        .unwrap_or(1_700_000_000);
    let headers: Vec<(String, Vec<u8>)> = fields
        .filter_map(|f| f.split_first())
        .map(|(&n, v)| (NAMES[usize::from(n) % NAMES.len()].to_owned(), v.to_vec()))
        .collect();

    // Arbitrary headers: an answer, never a panic, and never a secret index out of range.
    let secrets = vec![FALLBACK_SECRET.to_vec(), secret.to_vec()];
    if let Ok(v) = verify(p, &secrets, &Incoming { headers: &headers, body, now_unix: now }) {
        assert!(v.secret_index < secrets.len(), "{p:?}: {v:?}");
    }

    // Differential: what `sign` makes with an accepted secret verifies, with that secret.
    let secret = if p.check_secret(secret).is_ok() { secret } else { FALLBACK_SECRET };
    // Standard Webhooks signs its id: without one the request cannot verify (see `sign`).
    let delivery =
        if delivery.is_empty() && matches!(p, Provider::StandardWebhooks { .. }) { "d".into() } else { delivery };
    let signed: Vec<(String, Vec<u8>)> = sign(p, secret, body, now, &event, &delivery)
        .into_iter()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.into_bytes()))
        .collect();
    let with = [b"not it".to_vec(), secret.to_vec()];
    let got = verify(p, &with, &Incoming { headers: &signed, body, now_unix: now })
        .unwrap_or_else(|e| panic!("{p:?}: signed with {secret:?}, refused: {e}; headers {signed:?}"));
    // The first secret that is the signing one (a fuzzed secret may be "not it" too).
    assert_eq!(Some(got.secret_index), with.iter().position(|s| s == secret), "{p:?}");
    let nonempty = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    match p {
        Provider::Stripe { .. } | Provider::Slack { .. } => assert_eq!(got.timestamp, Some(now)),
        Provider::StandardWebhooks { .. } => {
            assert_eq!((got.delivery_id, got.timestamp), (Some(delivery), Some(now)));
        }
        Provider::Hmac(_) => assert_eq!((got.delivery_id, got.event), (None, None)),
        _ => assert_eq!((got.delivery_id, got.event), (nonempty(&delivery), nonempty(&event)), "{p:?}"),
    }
});
