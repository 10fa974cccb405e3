#!/usr/bin/env python3
"""Prints, as one JSON object, the header fields a provider would send with a body now, made by
that provider's own SDK (see sdk.py for which SDK signs what).

    sign.py PROVIDER SECRET BODYFILE [--event E] [--id ID] [--timestamp T] [--via python|npm]
    sign.py hmac SECRET BODYFILE --header x-signature --algorithm sha256 --encoding hex --prefix sha256=

PROVIDER is one of github, github-sha1, gitlab, gitea, forgejo, bitbucket, stripe, slack,
standard-webhooks, svix, hmac. SECRET is the secret itself, or @PATH to read it from a file
(trailing newline dropped). BODYFILE is the exact body to send ("-" for stdin); it must be UTF-8,
since the SDKs sign text. The integration tests send the body with these headers to a running
hookcast, so the daemon is checked against the SDKs at the real time, not only against fixtures.

Exit status 2 on bad arguments, 1 when an SDK fails (e.g. node_modules not installed).
"""

import argparse
import json
import sys
import time
import uuid

import sdk

DEFAULT_EVENT = {
    "github": "push",
    "github-sha1": "push",
    "gitlab": "Push Hook",
    "gitea": "push",
    "forgejo": "push",
    "bitbucket": "repo:push",
}


def headers_for(a, secret, body):
    p = a.provider
    event = a.event or DEFAULT_EVENT.get(p, "")
    if p in ("standard-webhooks", "svix"):
        delivery = a.id or "msg_" + uuid.uuid4().hex
    else:
        delivery = a.id or str(uuid.uuid4())
    if p == "github":
        return sdk.github(secret, body, event, delivery)
    if p == "github-sha1":
        return sdk.github_sha1_only(secret, body, event, delivery)
    if p == "gitlab":
        return sdk.gitlab(secret, event, delivery)
    if p in ("gitea", "forgejo"):
        return sdk.gitea(secret, body, event, delivery, forgejo=p == "forgejo")
    if p == "bitbucket":
        return sdk.bitbucket(secret, body, event, delivery)
    if p == "stripe":
        return sdk.stripe([secret], body, a.timestamp, via=a.via)
    if p == "slack":
        return sdk.slack(secret, body, a.timestamp)
    if p == "standard-webhooks":
        return sdk.standard_webhooks([secret], body, a.timestamp, delivery, via=a.via)
    if p == "svix":
        return sdk.standard_webhooks([secret], body, a.timestamp, delivery, via="svix")
    if p == "hmac":
        spec = dict(header=a.header, algorithm=a.algorithm, encoding=a.encoding, prefix=a.prefix)
        return sdk.generic_hmac(spec, secret, body)
    raise AssertionError(p)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("provider", choices=list(DEFAULT_EVENT) + ["stripe", "slack", "standard-webhooks", "svix", "hmac"])
    ap.add_argument("secret", help="the secret, or @PATH to read it from a file")
    ap.add_argument("bodyfile", help='file holding the exact body, or "-" for stdin')
    ap.add_argument("--event", help="event name for providers that send it in a header")
    ap.add_argument("--id", help="delivery id (default: a fresh UUID, or msg_<hex> for standard-webhooks/svix)")
    ap.add_argument("--timestamp", type=int, default=None, help="Unix seconds to sign at (default: now)")
    ap.add_argument("--via", choices=["python", "npm"], default="python", help="SDK for stripe/standard-webhooks")
    ap.add_argument("--header", default="x-hub-signature-256", help="hmac: header name")
    ap.add_argument("--algorithm", choices=["sha1", "sha256", "sha512"], default="sha256", help="hmac: hash")
    ap.add_argument("--encoding", choices=["hex", "base64"], default="hex", help="hmac: encoding")
    ap.add_argument("--prefix", default="sha256=", help="hmac: text before the MAC")
    a = ap.parse_args()
    if a.timestamp is None:
        a.timestamp = int(time.time())

    secret = a.secret
    if secret.startswith("@"):
        with open(secret[1:], encoding="utf-8") as f:
            secret = f.read().rstrip("\n")
    raw = sys.stdin.buffer.read() if a.bodyfile == "-" else open(a.bodyfile, "rb").read()
    try:
        body = raw.decode("utf-8")
    except UnicodeDecodeError:
        ap.error("the body must be UTF-8: the SDKs sign text")

    try:
        headers = headers_for(a, secret, body)
    except Exception as e:  # noqa: BLE001 - one line for the caller, not a traceback
        print(f"sign.py: {a.provider}: {e}", file=sys.stderr)
        sys.exit(1)
    json.dump(headers, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
