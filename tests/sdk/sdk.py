"""Webhook header fields as each provider's own SDK makes them.

Shared by make_fixtures.py (committed fixtures for hookcast's unit tests) and sign.py (live,
SDK-signed webhooks for the integration tests). Every function returns a dict of header fields,
in the provider's spelling, for a body given as text (the SDKs sign text: its UTF-8 bytes).

Where a provider publishes no SDK that signs, the scheme is computed here with Python's
standard library (hmac, hashlib, base64), an implementation independent of hookcast's Rust
code; each such function says so in its docstring.
"""

import base64
import hashlib
import hmac
import json
import os
import subprocess
from datetime import datetime, timezone

HERE = os.path.dirname(os.path.abspath(__file__))


def node(request):
    """Runs sdk_sign.mjs (the npm SDKs) on one JSON request and returns its JSON answer."""
    out = subprocess.run(
        ["node", os.path.join(HERE, "sdk_sign.mjs")],
        input=json.dumps(request).encode(),
        capture_output=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(
            "sdk_sign.mjs failed (did you run `npm ci --prefix tests/sdk`?):\n" + out.stderr.decode()
        )
    return json.loads(out.stdout)


def _stdlib_hmac(algorithm, key, data):
    return hmac.new(key, data, getattr(hashlib, algorithm))


def content_type(body):
    """What the provider would send as Content-Type for this body."""
    return "application/json" if body.lstrip().startswith(("{", "[")) else "application/x-www-form-urlencoded"


def github(secret, body, event, delivery_id):
    """GitHub: X-Hub-Signature-256 from @octokit/webhooks-methods `sign` (GitHub's own JS SDK).

    GitHub also sends the legacy SHA-1 X-Hub-Signature; octokit no longer computes it, so that
    one header comes from Python's hmac module.
    """
    sig256 = node({"op": "sign", "provider": "github", "secret": secret, "body": body})["header"]
    sig1 = "sha1=" + _stdlib_hmac("sha1", secret.encode(), body.encode()).hexdigest()
    return {
        "User-Agent": "GitHub-Hookshot/5d8e1a4",
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
        "X-GitHub-Hook-ID": "489187543",
        "X-GitHub-Hook-Installation-Target-Type": "repository",
        "X-GitHub-Hook-Installation-Target-ID": "186853002",
        "X-Hub-Signature": sig1,
        "X-Hub-Signature-256": sig256,
    }


def github_sha1_only(secret, body, event, delivery_id):
    """A GitHub delivery with only the legacy SHA-1 header (Python's hmac module: no SDK
    computes SHA-1 any more), for hooks that allow SHA-1."""
    return {
        "User-Agent": "GitHub-Hookshot/5d8e1a4",
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery_id,
        "X-Hub-Signature": "sha1=" + _stdlib_hmac("sha1", secret.encode(), body.encode()).hexdigest(),
    }


def gitlab(secret, event, delivery_id):
    """GitLab: the token itself in X-Gitlab-Token (there is nothing to sign, so no SDK is needed)."""
    return {
        "User-Agent": "GitLab/17.6.0",
        "Content-Type": "application/json",
        "X-Gitlab-Event": event,
        "X-Gitlab-Event-UUID": delivery_id,
        "X-Gitlab-Webhook-UUID": "5c5a6c73-0d3a-4a85-9b5e-3b1c1f0d5f77",
        "X-Gitlab-Instance": "https://gitlab.example.com",
        "Idempotency-Key": "0f6cbe4a-2cb3-4e0b-9d8e-7c7a7f1b2c3d",
        "X-Gitlab-Token": secret,
    }


def gitea(secret, body, event, delivery_id, forgejo=False):
    """Gitea / Forgejo: the header set of their `AddDefaultHeaders` (Forgejo's
    services/webhook/shared/payloader.go), computed with Python's hmac module: neither forge
    publishes an SDK that signs."""
    sig256 = _stdlib_hmac("sha256", secret.encode(), body.encode()).hexdigest()
    sig1 = _stdlib_hmac("sha1", secret.encode(), body.encode()).hexdigest()
    headers = {"User-Agent": "Go-http-client/1.1", "Content-Type": "application/json"}
    for forge in (["Forgejo"] if forgejo else []) + ["Gitea", "Gogs"]:
        headers[f"X-{forge}-Delivery"] = delivery_id
        headers[f"X-{forge}-Event"] = event
        headers[f"X-{forge}-Event-Type"] = event
        headers[f"X-{forge}-Signature"] = sig256
    headers["X-Hub-Signature"] = "sha1=" + sig1
    headers["X-Hub-Signature-256"] = "sha256=" + sig256
    headers["X-GitHub-Delivery"] = delivery_id
    headers["X-GitHub-Event"] = event
    headers["X-GitHub-Event-Type"] = event
    return headers


def bitbucket(secret, body, event, delivery_id):
    """Bitbucket Cloud: X-Hub-Signature `sha256=<hex>` from @octokit/webhooks-methods `sign`,
    which writes exactly that form (Atlassian publishes no signing SDK)."""
    sig = node({"op": "sign", "provider": "bitbucket", "secret": secret, "body": body})["header"]
    return {
        "User-Agent": "Bitbucket-Webhooks/2.0",
        "Content-Type": "application/json",
        "X-Event-Key": event,
        "X-Request-UUID": delivery_id,
        "X-Hook-UUID": "{6d5f3c1e-8a4b-4f2e-9c7d-1b2a3c4d5e6f}",
        "X-Attempt-Number": "1",
        "X-Hub-Signature": sig,
    }


def stripe_signature(secrets, body, timestamp, via="python"):
    """Stripe-Signature with one v1 per secret (as while a secret rolls).

    via="npm": stripe-node's `webhooks.generateTestHeaderString`;
    via="python": stripe-python's `WebhookSignature.generate_signature_header`.
    """
    if via == "npm":
        return node({"op": "sign", "provider": "stripe", "secrets": secrets, "body": body, "timestamp": timestamp})[
            "header"
        ]
    import stripe

    parts = [stripe.WebhookSignature.generate_signature_header(body, s, timestamp) for s in secrets]
    return ",".join([f"t={timestamp}"] + [p.split(",", 1)[1] for p in parts])


def stripe(secrets, body, timestamp, via="python"):
    """Stripe: the Stripe-Signature header (the event id travels in the body)."""
    return {
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": stripe_signature(secrets, body, timestamp, via),
    }


def slack(secret, body, timestamp):
    """Slack: slack_sdk's `SignatureVerifier.generate_signature`."""
    from slack_sdk.signature import SignatureVerifier

    sig = SignatureVerifier(secret).generate_signature(timestamp=str(timestamp), body=body)
    return {
        "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        "Content-Type": content_type(body),
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": sig,
    }


def standard_signature(secrets, body, timestamp, msg_id, via="python"):
    """webhook-signature: one `v1,<base64>` per secret, space-separated.

    via="python": the `standardwebhooks` package; via="svix": the `svix` package (which wraps
    `standardwebhooks`); via="npm": the `standardwebhooks` npm package (a separate
    TypeScript implementation).
    """
    if via == "npm":
        req = {"op": "sign", "provider": "standard-webhooks", "secrets": secrets, "body": body}
        return node({**req, "timestamp": timestamp, "id": msg_id})["header"]
    if via == "svix":
        from svix.webhooks import Webhook
    else:
        from standardwebhooks import Webhook
    when = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return " ".join(Webhook(s).sign(msg_id, when, body) for s in secrets)


def standard_webhooks(secrets, body, timestamp, msg_id, via="python"):
    """Standard Webhooks headers (`webhook-*`), or Svix's (`svix-*`) when via="svix"."""
    prefix = "svix" if via == "svix" else "webhook"
    headers = {"Content-Type": "application/json"}
    if via == "svix":
        headers["User-Agent"] = "Svix-Webhooks/1.64.1 (sender-Zx8Bs; +https://www.svix.com/http-sender/)"
    headers[f"{prefix}-id"] = msg_id
    headers[f"{prefix}-timestamp"] = str(timestamp)
    headers[f"{prefix}-signature"] = standard_signature(secrets, body, timestamp, msg_id, via)
    return headers


def generic_hmac(spec, secret, body):
    """The generic `hmac` provider: Python's hmac module (there is no one sender to ask)."""
    mac = _stdlib_hmac(spec["algorithm"], secret.encode(), body.encode())
    encoded = mac.hexdigest() if spec["encoding"] == "hex" else base64.b64encode(mac.digest()).decode()
    return {"Content-Type": content_type(body), spec["header"]: spec["prefix"] + encoded}
