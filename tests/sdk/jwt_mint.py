#!/usr/bin/env python3
"""Mints JWTs with PyJWT (an implementation independent of hookcast's) for the integration tests
(tests/integration/jwt.rs), and makes throwaway key pairs with `cryptography`.

    jwt_mint.py --alg ALG (--secret S | --key PRIVATE.pem) --claims JSON [--kid K] [--header JSON]
    jwt_mint.py --batch < specs.json      # a JSON list of {"alg","secret"|"key","claims","kid","header"}
    jwt_mint.py keygen DIR                # DIR/{ed25519,p256,rsa}.pem and .pub.pem

One token prints as a line; --batch prints a JSON list of tokens in the specs' order (one process
for many tokens: importing `cryptography` is most of the time). ALG "none" makes an unsigned
token. PyJWT and cryptography are pinned in requirements.txt (the test venv, tests/.venv).
Exit status 2 on bad arguments.
"""

import argparse
import json
import os
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


def mint(spec):
    alg = spec["alg"]
    if alg == "none":
        key = None
    elif "secret" in spec:
        key = spec["secret"].encode()
    else:
        with open(spec["key"], "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
    headers = dict(spec.get("header") or {})
    if spec.get("kid"):
        headers["kid"] = spec["kid"]
    return jwt.encode(spec["claims"], key, algorithm=alg, headers=headers or None)


def keygen(d):
    pairs = {
        "ed25519": ed25519.Ed25519PrivateKey.generate(),
        "p256": ec.generate_private_key(ec.SECP256R1()),
        "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048),
    }
    for name, private in pairs.items():
        with open(os.path.join(d, name + ".pem"), "wb") as f:
            f.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        with open(os.path.join(d, name + ".pub.pem"), "wb") as f:
            f.write(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "keygen":
        keygen(sys.argv[2])
        return
    p = argparse.ArgumentParser(description="Mint a JWT with PyJWT.")
    p.add_argument("--batch", action="store_true")
    p.add_argument("--alg")
    p.add_argument("--secret")
    p.add_argument("--key")
    p.add_argument("--claims")
    p.add_argument("--kid")
    p.add_argument("--header")
    a = p.parse_args()
    if a.batch:
        print(json.dumps([mint(s) for s in json.load(sys.stdin)]))
        return
    if not a.alg or a.claims is None or (a.alg != "none" and (a.secret is None) == (a.key is None)):
        p.error("--alg, --claims and one of --secret or --key are needed")
    spec = {"alg": a.alg, "claims": json.loads(a.claims), "kid": a.kid,
            "header": json.loads(a.header) if a.header else None}
    if a.secret is not None:
        spec["secret"] = a.secret
    if a.key is not None:
        spec["key"] = a.key
    print(mint(spec))


if __name__ == "__main__":
    main()
