#!/usr/bin/env python3
"""Writes tests/fixtures/providers/*.json: webhook requests signed by the providers' own SDKs.

Each fixture is {"provider", "sdk", "secret", "body", "headers", "now", "expect", "sign"?, ...}:
hookcast's unit tests (src/hooks/providers/mod.rs, `fixtures`) verify every one at `now`, check
the delivery id / event / timestamp in `expect`, and, where `sign` is present, that hookcast's
own `sign()` reproduces the SDK's header values (`sign.compare`: our name -> fixture's name).

Before a fixture is written, a second SDK (or the same SDK's verifier) must accept it, with its
clock pinned to the fixture's `now`; see `cross_check`. The output is deterministic: fixed
secrets, ids and clock, so running this again rewrites the same bytes.

Usage (from the repository root):
    python3 -m venv /tmp/hookcast-sdk && /tmp/hookcast-sdk/bin/pip install -r tests/sdk/requirements.txt
    npm ci --prefix tests/sdk
    /tmp/hookcast-sdk/bin/python tests/sdk/make_fixtures.py
"""

import hashlib
import hmac
import json
import os
import sys
from datetime import datetime, timezone

import sdk

ROOT = os.path.dirname(os.path.dirname(sdk.HERE))
OUT = os.path.join(ROOT, "tests", "fixtures", "providers")

# 2026-11-22T00:00:00Z: the clock every fixture is made and checked at.
NOW = 1795305600


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def pretty(obj):
    return json.dumps(obj, indent=2, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Cross-checks: a verifier other than hookcast must accept each fixture first.


def frozen_datetime(now):
    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.fromtimestamp(now, tz=tz)

    return Frozen


def check_standard_python(secret, body, headers, now):
    import standardwebhooks.webhooks as sw

    real = sw.datetime
    sw.datetime = frozen_datetime(now)
    try:
        if any(k.lower().startswith("svix-") for k in headers):
            from svix.webhooks import Webhook

            Webhook(secret).verify(body, headers)
        else:
            sw.Webhook(secret).verify(body, headers, json_parse=False)
    finally:
        sw.datetime = real


def check_stripe_python(secret, body, headers, now):
    import stripe

    # tolerance=None: stripe-python's window reads time.time(); the npm check below pins it.
    stripe.WebhookSignature.verify_header(body, headers["Stripe-Signature"], secret, tolerance=None)


def check_slack(secret, body, headers, now):
    from slack_sdk.signature import Clock, SignatureVerifier

    class Fixed(Clock):
        def now(self):
            return float(now)

    if not SignatureVerifier(secret, clock=Fixed()).is_valid_request(body, headers):
        raise AssertionError("slack_sdk refused it")


def check_npm(provider):
    def check(secret, body, headers, now):
        req = {"op": "verify", "provider": provider, "secret": secret, "body": body, "headers": headers, "now": now}
        answer = sdk.node(req)
        if not answer["ok"]:
            raise AssertionError(f"npm {provider}: {answer.get('error')}")

    return check


def check_stdlib(algorithm, header, prefix, b64=False):
    """Recomputes with Python's hmac module (for schemes no SDK covers)."""

    def check(secret, body, headers, now):
        mac = hmac.new(secret.encode(), body.encode(), getattr(hashlib, algorithm))
        import base64

        want = prefix + (base64.b64encode(mac.digest()).decode() if b64 else mac.hexdigest())
        if not hmac.compare_digest(headers[header], want):
            raise AssertionError(f"{header} differs from Python's hmac")

    return check


def check_equal(header, value):
    def check(secret, body, headers, now):
        if headers[header] != value:
            raise AssertionError(f"{header} is {headers[header]!r}, want {value!r}")

    return check


# ---------------------------------------------------------------------------------------------
# Bodies.


def github_push_example():
    """A real push payload from @octokit/webhooks-examples (GitHub's documented examples)."""
    path = os.path.join(sdk.HERE, "node_modules", "@octokit", "webhooks-examples", "api.github.com", "index.json")
    with open(path, encoding="utf-8") as f:
        events = json.load(f)
    push = next(e for e in events if e["name"] == "push")
    example = next(x for x in push["examples"] if x["ref"].startswith("refs/heads/") and x["commits"])
    return compact(example)


GITLAB_PUSH = {
    "object_kind": "push",
    "event_name": "push",
    "before": "95790bf891e76fee5e1747ab589903a6a1f80f22",
    "after": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "ref": "refs/heads/master",
    "ref_protected": True,
    "checkout_sha": "da1560886d4f094c3e6c9ef40349f7d38b5d27d7",
    "message": "Hello World",
    "user_id": 4,
    "user_name": "John Smith",
    "user_username": "jsmith",
    "user_email": "john@example.com",
    "project_id": 15,
    "project": {
        "id": 15,
        "name": "Diaspora",
        "web_url": "http://example.com/mike/diaspora",
        "git_http_url": "http://example.com/mike/diaspora.git",
        "namespace": "Mike",
        "path_with_namespace": "mike/diaspora",
        "default_branch": "master",
    },
    "commits": [
        {
            "id": "b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
            "message": "Update Catalan translation to e38cb41.\n\nSee https://gitlab.com/gitlab-org/gitlab for more information",
            "title": "Update Catalan translation to e38cb41.",
            "timestamp": "2011-12-12T14:27:31+02:00",
            "url": "http://example.com/mike/diaspora/commit/b6568db1bc1dcd7f8b4d5a946b0b91f9dacd7327",
            "author": {"name": "Jordi Mallach", "email": "jordi@softcatala.org"},
            "added": ["CHANGELOG"],
            "modified": ["app/controller/application.rb"],
            "removed": [],
        }
    ],
    "total_commits_count": 1,
    "repository": {"name": "Diaspora", "url": "git@example.com:mike/diaspora.git", "visibility_level": 0},
}

GITEA_PUSH = {
    "ref": "refs/heads/develop",
    "before": "28e1879d029cb852e4844d9c718537df08844e03",
    "after": "bffeb74224043ba2feb48d137756c8a9331c449a",
    "compare_url": "http://localhost:3000/gitea/webhooks/compare/28e1879d029cb852e4844d9c718537df08844e03...bffeb74224043ba2feb48d137756c8a9331c449a",
    "commits": [
        {
            "id": "bffeb74224043ba2feb48d137756c8a9331c449a",
            "message": "Webhooks Yay! — déployé ✓",
            "url": "http://localhost:3000/gitea/webhooks/commit/bffeb74224043ba2feb48d137756c8a9331c449a",
            "author": {"name": "Gitea", "email": "someone@gitea.io", "username": "gitea"},
            "committer": {"name": "Gitea", "email": "someone@gitea.io", "username": "gitea"},
            "timestamp": "2017-03-13T13:52:11-04:00",
        }
    ],
    "repository": {
        "id": 140,
        "owner": {"id": 1, "login": "gitea", "full_name": "Gitea", "username": "gitea"},
        "name": "webhooks",
        "full_name": "gitea/webhooks",
        "private": False,
        "html_url": "http://localhost:3000/gitea/webhooks",
        "clone_url": "http://localhost:3000/gitea/webhooks.git",
        "default_branch": "master",
    },
    "pusher": {"id": 1, "login": "gitea", "username": "gitea"},
    "sender": {"id": 1, "login": "gitea", "username": "gitea"},
}

BITBUCKET_PUSH = {
    "push": {
        "changes": [
            {
                "new": {
                    "type": "branch",
                    "name": "main",
                    "target": {
                        "type": "commit",
                        "hash": "709d658dc5b6d6afcd46049c2f332ee3f515a67d",
                        "message": "Deploy on push\n",
                        "date": "2026-11-21T23:59:30+00:00",
                        "author": {"raw": "Ada Lovelace <ada@example.com>", "type": "author"},
                    },
                },
                "old": {
                    "type": "branch",
                    "name": "main",
                    "target": {"type": "commit", "hash": "1e65c05c1d5171631d92438a13901ca7dae9618c"},
                },
                "created": False,
                "forced": False,
                "closed": False,
                "truncated": False,
            }
        ]
    },
    "repository": {
        "type": "repository",
        "full_name": "team_name/repo_name",
        "name": "repo_name",
        "uuid": "{673a6070-3421-46c9-9d48-90745f7bfe8e}",
        "is_private": True,
    },
    "actor": {"type": "user", "display_name": "Ada Lovelace", "uuid": "{d301aafa-d676-4ee0-88be-962be7417567}"},
}

STRIPE_EVENT = {
    "id": "evt_3QmK2pLkdIwHu7ix0Xq9ZxYa",
    "object": "event",
    "api_version": "2025-10-29.clover",
    "created": NOW - 45,
    "data": {
        "object": {
            "id": "pi_3QmK2pLkdIwHu7ix0T1ZqBcD",
            "object": "payment_intent",
            "amount": 2000,
            "currency": "eur",
            "description": "Café crème ☕",
            "status": "succeeded",
        }
    },
    "livemode": False,
    "pending_webhooks": 1,
    "request": {"id": "req_nRrQ8Gy3Lw7mRt", "idempotency_key": "9d1f3b3e-2c4a-4b8e-a1f0-6b7c8d9e0f1a"},
    "type": "payment_intent.succeeded",
}

SLACK_EVENT = {
    "token": "XXYYZZ",
    "team_id": "T123ABC456",
    "api_app_id": "A123ABC456",
    "event": {
        "type": "app_mention",
        "user": "U123ABC456",
        "text": "<@U0LAN0Z89> deploy main please",
        "ts": "1795305590.000100",
        "channel": "C123ABC456",
        "event_ts": "1795305590.000100",
    },
    "type": "event_callback",
    "event_id": "Ev08MFMKH6",
    "event_time": NOW - 10,
}

SLACK_COMMAND = (
    "token=gIkuvaNzQIHg97ATvDxqgjtO&team_id=T0001&team_domain=example&enterprise_id=E0001"
    "&enterprise_name=Globular%20Construct%20Inc&channel_id=C2147483705&channel_name=test"
    "&user_id=U2147483697&user_name=Steve&command=%2Fdeploy&text=main"
    "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1234%2F5678"
    "&trigger_id=13345224609.738474920.8088930838d88f008e0&api_app_id=A123456"
)

STANDARD_EVENT = {
    "type": "invoice.paid",
    "timestamp": "2026-11-21T23:59:58.344522Z",
    "data": {"id": "in_1f81eb52", "amount_due": 4200, "customer": "Grace Hopper"},
}

SVIX_EVENT = {"type": "user.created", "timestamp": "2026-11-21T23:59:59Z", "data": {"id": "usr_2KWPBgLlAfxdpx2AI54"}}


# ---------------------------------------------------------------------------------------------
# The fixtures.


def fixtures():
    out = {}

    body = github_push_example()
    secret = "hookcast github fixture secret"
    delivery = "c0ffee00-4b1d-11ef-9a7e-3b6e2a1f0c9d"
    out["github-push"] = dict(
        provider="github",
        sdk="@octokit/webhooks-methods sign (X-Hub-Signature-256); body from @octokit/webhooks-examples push",
        secret=secret,
        body=body,
        headers=sdk.github(secret, body, "push", delivery),
        now=NOW,
        expect=dict(delivery_id=delivery, event="push", timestamp=None),
        sign=dict(
            event="push",
            delivery_id=delivery,
            compare={k: k for k in ["X-Hub-Signature-256", "X-Hub-Signature", "X-GitHub-Event", "X-GitHub-Delivery"]},
        ),
        checks=[check_npm("github"), check_stdlib("sha256", "X-Hub-Signature-256", "sha256=")],
    )

    secret, body = "It's a Secret to Everybody", "Hello, World!"
    delivery = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
    out["github-docs-vector"] = dict(
        provider="github",
        sdk="@octokit/webhooks-methods sign, on the test vector of GitHub's 'Validating webhook deliveries'",
        secret=secret,
        body=body,
        headers=sdk.github(secret, body, "ping", delivery),
        now=NOW,
        expect=dict(delivery_id=delivery, event="ping", timestamp=None),
        sign=dict(compare={"X-Hub-Signature-256": "X-Hub-Signature-256"}),
        checks=[
            check_npm("github"),
            check_equal(
                "X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
            ),
        ],
    )

    secret, body = "legacy-sha1-secret", compact({"zen": "Keep it logically awesome.", "hook_id": 489187543})
    delivery = "d5b6f1a0-4b1d-11ef-8c2f-1f4b5f6a7b8c"
    out["github-sha1-only"] = dict(
        provider="github",
        allow_sha1=True,
        sdk="Python hmac (SHA-1; no SDK computes GitHub's legacy X-Hub-Signature any more)",
        secret=secret,
        body=body,
        headers=sdk.github_sha1_only(secret, body, "ping", delivery),
        now=NOW,
        expect=dict(delivery_id=delivery, event="ping", timestamp=None),
        sign=dict(compare={"X-Hub-Signature": "X-Hub-Signature"}),
        checks=[check_stdlib("sha1", "X-Hub-Signature", "sha1=")],
    )

    secret, body = "glpat-webhook-token-7d3b2f", compact(GITLAB_PUSH)
    delivery = "13792a34-cac6-4fda-95a8-c58e00a3954e"
    out["gitlab-push"] = dict(
        provider="gitlab",
        sdk="none needed: X-Gitlab-Token is the secret itself (GitLab docs' delivery headers)",
        secret=secret,
        body=body,
        headers=sdk.gitlab(secret, "Push Hook", delivery),
        now=NOW,
        expect=dict(delivery_id=delivery, event="Push Hook", timestamp=None),
        sign=dict(
            event="Push Hook",
            delivery_id=delivery,
            compare={k: k for k in ["X-Gitlab-Token", "X-Gitlab-Event", "X-Gitlab-Event-UUID"]},
        ),
        checks=[check_equal("X-Gitlab-Token", secret)],
    )

    secret, body = "3gEsCfjlV2ugRwgpU#w1*WaW*wa4NXgGmpCfkbG3", pretty(GITEA_PUSH)
    delivery = "f6266f16-1bf3-46a5-9ea4-602e06ead473"
    out["gitea-push"] = dict(
        provider="gitea",
        sdk="Python hmac, headers as Gitea's AddDefaultHeaders (no signing SDK exists); body MarshalIndent-style",
        secret=secret,
        body=body,
        headers=sdk.gitea(secret, body, "push", delivery),
        now=NOW,
        expect=dict(delivery_id=delivery, event="push", timestamp=None),
        sign=dict(
            event="push",
            delivery_id=delivery,
            compare={
                k: k
                for k in [
                    "X-Gitea-Signature",
                    "X-Gogs-Signature",
                    "X-Hub-Signature",
                    "X-Hub-Signature-256",
                    "X-Gitea-Delivery",
                    "X-Gitea-Event",
                    "X-GitHub-Event",
                ]
            },
        ),
        checks=[check_stdlib("sha256", "X-Gitea-Signature", "")],
    )

    secret, body = "forgejo webhook secret", pretty(GITEA_PUSH)
    delivery = "0b8f2f7e-9a5c-4d7e-8f3a-2b1c0d9e8f7a"
    out["forgejo-push"] = dict(
        provider="forgejo",
        sdk="Python hmac, headers as Forgejo's AddDefaultHeaders (no signing SDK exists)",
        secret=secret,
        body=body,
        headers=sdk.gitea(secret, body, "push", delivery, forgejo=True),
        now=NOW,
        expect=dict(delivery_id=delivery, event="push", timestamp=None),
        sign=dict(
            event="push",
            delivery_id=delivery,
            compare={
                k: k
                for k in ["X-Forgejo-Signature", "X-Gitea-Signature", "X-Forgejo-Delivery", "X-Forgejo-Event"]
            },
        ),
        checks=[check_stdlib("sha256", "X-Forgejo-Signature", ""), check_stdlib("sha256", "X-Gitea-Signature", "")],
    )

    secret, body = "bitbucket-webhook-secret-8c1d", compact(BITBUCKET_PUSH)
    delivery = "2a7c9e1f-3b5d-4f6a-8c0e-1d2f3a4b5c6d"
    out["bitbucket-push"] = dict(
        provider="bitbucket",
        sdk="@octokit/webhooks-methods sign (writes Bitbucket Cloud's exact 'sha256=<hex>' form)",
        secret=secret,
        body=body,
        headers=sdk.bitbucket(secret, body, "repo:push", delivery),
        now=NOW,
        expect=dict(delivery_id=delivery, event="repo:push", timestamp=None),
        sign=dict(
            event="repo:push",
            delivery_id=delivery,
            compare={k: k for k in ["X-Hub-Signature", "X-Event-Key", "X-Request-UUID"]},
        ),
        checks=[check_npm("bitbucket"), check_stdlib("sha256", "X-Hub-Signature", "sha256=")],
    )

    secret, body = "whsec_5WbX5kEWLlfzsGNjH64I8lOOqUB6e8FH", pretty(STRIPE_EVENT)
    t = NOW - 42
    headers = sdk.stripe([secret], body, t, via="npm")
    out["stripe-payment-intent"] = dict(
        provider="stripe",
        sdk="stripe (npm) webhooks.generateTestHeaderString; same header from stripe (PyPI) generate_signature_header",
        secret=secret,
        body=body,
        headers=headers,
        now=NOW,
        expect=dict(delivery_id=STRIPE_EVENT["id"], event=STRIPE_EVENT["type"], timestamp=t),
        sign=dict(now=t, compare={"Stripe-Signature": "Stripe-Signature"}),
        checks=[
            check_npm("stripe"),
            check_stripe_python,
            check_equal("Stripe-Signature", sdk.stripe_signature([secret], body, t, via="python")),
        ],
    )

    old, new = "whsec_0ldS3cretStillActiveFor24h", "whsec_n3wS3cretJustRolled"
    t = NOW - 3
    headers = sdk.stripe([old, new], body, t, via="npm")
    # Test-mode events also carry a fake v0 scheme (Stripe docs); it must be ignored.
    headers["Stripe-Signature"] += ",v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39"
    out["stripe-rolled-secret"] = dict(
        provider="stripe",
        sdk="stripe (npm) generateTestHeaderString, once per secret (old and new v1 while rolling), plus a v0",
        secret=new,
        body=body,
        headers=headers,
        now=NOW,
        expect=dict(delivery_id=STRIPE_EVENT["id"], event=STRIPE_EVENT["type"], timestamp=t),
        checks=[check_npm("stripe"), check_stripe_python],
    )

    secret, body = "8f742231b10e8888abcd99yyyzzz85a5", compact(SLACK_EVENT)
    ts = NOW - 1
    out["slack-event-callback"] = dict(
        provider="slack",
        sdk="slack_sdk SignatureVerifier.generate_signature",
        secret=secret,
        body=body,
        headers=sdk.slack(secret, body, ts),
        now=NOW,
        expect=dict(delivery_id="Ev08MFMKH6", event="app_mention", timestamp=ts),
        sign=dict(
            now=ts, compare={"X-Slack-Signature": "X-Slack-Signature", "X-Slack-Request-Timestamp": "X-Slack-Request-Timestamp"}
        ),
        checks=[check_slack],
    )

    secret, body = "e2a1b6c0d9f84e7a9b3c5d7e1f2a4b6c", SLACK_COMMAND
    ts = NOW - 299
    out["slack-slash-command"] = dict(
        provider="slack",
        sdk="slack_sdk SignatureVerifier.generate_signature (form-encoded slash command)",
        secret=secret,
        body=body,
        headers=sdk.slack(secret, body, ts),
        now=NOW,
        expect=dict(delivery_id=None, event=None, timestamp=ts),
        sign=dict(now=ts, compare={"X-Slack-Signature": "X-Slack-Signature"}),
        checks=[check_slack],
    )

    secret, body = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", compact(STANDARD_EVENT)
    msg_id, ts = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", NOW - 2
    out["standard-webhooks-python"] = dict(
        provider="standard-webhooks",
        sdk="standardwebhooks (PyPI) Webhook.sign",
        secret=secret,
        body=body,
        headers=sdk.standard_webhooks([secret], body, ts, msg_id, via="python"),
        now=NOW,
        expect=dict(delivery_id=msg_id, event=None, timestamp=ts),
        sign=dict(
            now=ts,
            delivery_id=msg_id,
            compare={k: k for k in ["webhook-signature", "webhook-id", "webhook-timestamp"]},
        ),
        checks=[check_npm("standard-webhooks"), check_standard_python],
    )

    old = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
    new = "whsec_xsJ0eUb4jzUZUgFBkHi6yAq57vHqtUKf"
    msg_id, ts = "msg_p5jXN8AQM9LWM0D4loKWxJek", NOW + 120
    headers = sdk.standard_webhooks([old, new], body, ts, msg_id, via="npm")
    # An asymmetric (ed25519) signature in the same list must be skipped (the spec's example).
    headers["webhook-signature"] += (
        " v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg=="
    )
    out["standard-webhooks-npm-rotation"] = dict(
        provider="standard-webhooks",
        sdk="standardwebhooks (npm) Webhook.sign with the old and new secret, plus a v1a entry; 2 min in the future",
        secret=new,
        body=body,
        headers=headers,
        now=NOW,
        expect=dict(delivery_id=msg_id, event=None, timestamp=ts),
        checks=[check_npm("standard-webhooks"), check_standard_python],
    )

    secret, body = "whsec_plJ3nmyCDGBKInavdOK15jsl", compact(SVIX_EVENT)
    msg_id, ts = "msg_2m5X0dWk1Qd6qoqWJk6mp1Xy2x3", NOW
    out["svix-headers"] = dict(
        provider="standard-webhooks",
        sdk="svix (PyPI) Webhook.sign, sent under Svix's svix-* header names",
        secret=secret,
        body=body,
        headers=sdk.standard_webhooks([secret], body, ts, msg_id, via="svix"),
        now=NOW,
        expect=dict(delivery_id=msg_id, event=None, timestamp=ts),
        sign=dict(delivery_id=msg_id, compare={"webhook-signature": "svix-signature", "webhook-id": "svix-id"}),
        checks=[check_standard_python],
    )

    spec = dict(header="x-signature", algorithm="sha512", encoding="base64", prefix="")
    secret, body = "generic sender secret", compact({"event": "build.finished", "status": "ok"})
    out["hmac-sha512-base64"] = dict(
        provider="hmac",
        hmac=spec,
        sdk="Python hmac + base64 (a generic sender has no SDK)",
        secret=secret,
        body=body,
        headers=sdk.generic_hmac(spec, secret, body),
        now=NOW,
        expect=dict(delivery_id=None, event=None, timestamp=None),
        sign=dict(compare={"x-signature": "x-signature"}),
        checks=[check_stdlib("sha512", "x-signature", "", b64=True)],
    )

    spec = dict(header="x-hub-signature", algorithm="sha1", encoding="hex", prefix="sha1=")
    secret, body = "adnanh-style secret", "payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D"
    out["hmac-sha1-hex-prefix"] = dict(
        provider="hmac",
        hmac=spec,
        sdk="Python hmac (adnanh/webhook payload-hmac-sha1 style, form body)",
        secret=secret,
        body=body,
        headers=sdk.generic_hmac(spec, secret, body),
        now=NOW,
        expect=dict(delivery_id=None, event=None, timestamp=None),
        sign=dict(compare={"x-hub-signature": "x-hub-signature"}),
        checks=[check_stdlib("sha1", "x-hub-signature", "sha1=")],
    )
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, f in fixtures().items():
        checks = f.pop("checks")
        for check in checks:
            try:
                check(f["secret"], f["body"], f["headers"], f["now"])
            except Exception as e:  # noqa: BLE001 - report which fixture and check failed
                sys.exit(f"{name}: cross-check {getattr(check, '__name__', check)} failed: {e}")
        path = os.path.join(OUT, name + ".json")
        with open(path, "w", encoding="utf-8") as out:
            out.write(json.dumps(f, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {os.path.relpath(path, ROOT)} ({len(checks)} cross-checks passed)")


if __name__ == "__main__":
    main()
