// The JavaScript half of hookcast's SDK fixtures: signs and verifies with the providers' own
// npm packages, for make_fixtures.py and sign.py (Python has no GitHub SDK that signs).
//
// Reads one JSON request on stdin, writes one JSON answer on stdout:
//   {"op": "sign", "provider": "github" | "bitbucket", "secret": S, "body": B}
//       -> {"header": "sha256=<hex>"}                       (@octokit/webhooks-methods sign)
//   {"op": "sign", "provider": "stripe", "secrets": [S...], "body": B, "timestamp": T}
//       -> {"header": "t=T,v1=<hex>[,v1=<hex>...]"}         (stripe webhooks.generateTestHeaderString)
//   {"op": "sign", "provider": "standard-webhooks", "secrets": [S...], "body": B, "timestamp": T, "id": ID}
//       -> {"header": "v1,<b64>[ v1,<b64>...]"}             (standardwebhooks Webhook.sign)
//   {"op": "verify", "provider": ..., "secret": S, "body": B, "headers": {...}, "now": T}
//       -> {"ok": true} or {"ok": false, "error": "..."}
// Several secrets give one signature each, in order, as a provider does while a secret rolls.

import { sign, verify } from "@octokit/webhooks-methods";
import Stripe from "stripe";
import { Webhook } from "standardwebhooks";

async function readStdin() {
  const chunks = [];
  for await (const c of process.stdin) chunks.push(c);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

function lower(headers) {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
}

async function doSign(r) {
  switch (r.provider) {
    case "github":
    case "bitbucket":
      return { header: await sign(r.secret, r.body) };
    case "stripe": {
      const parts = r.secrets.map((secret) =>
        Stripe.webhooks.generateTestHeaderString({ payload: r.body, secret, timestamp: r.timestamp }),
      );
      // Each is "t=T,v1=<hex>": keep one t and every v1.
      const v1 = parts.map((p) => p.split(",").find((e) => e.startsWith("v1=")));
      return { header: [`t=${r.timestamp}`, ...v1].join(",") };
    }
    case "standard-webhooks": {
      const date = new Date(r.timestamp * 1000);
      return { header: r.secrets.map((s) => new Webhook(s).sign(r.id, date, r.body)).join(" ") };
    }
    default:
      throw new Error(`no npm signer for ${r.provider}`);
  }
}

async function doVerify(r) {
  const h = lower(r.headers);
  switch (r.provider) {
    case "github":
      return verify(r.secret, r.body, h["x-hub-signature-256"]);
    case "bitbucket":
      return verify(r.secret, r.body, h["x-hub-signature"]);
    case "stripe":
      // receivedAt pins the SDK's clock to the fixture's `now` (milliseconds).
      Stripe.webhooks.constructEvent(r.body, h["stripe-signature"], r.secret, 300, undefined, r.now * 1000);
      return true;
    case "standard-webhooks": {
      // The library reads Date.now() for its five-minute window.
      const realNow = Date.now;
      Date.now = () => r.now * 1000;
      try {
        new Webhook(r.secret).verify(r.body, h);
      } finally {
        Date.now = realNow;
      }
      return true;
    }
    default:
      throw new Error(`no npm verifier for ${r.provider}`);
  }
}

const r = await readStdin();
try {
  if (r.op === "sign") {
    process.stdout.write(JSON.stringify(await doSign(r)));
  } else if (r.op === "verify") {
    const ok = await doVerify(r);
    process.stdout.write(JSON.stringify(ok ? { ok: true } : { ok: false, error: "no match" }));
  } else {
    throw new Error(`unknown op ${r.op}`);
  }
} catch (e) {
  if (r.op === "verify") {
    process.stdout.write(JSON.stringify({ ok: false, error: String(e.message).split("\n")[0] }));
  } else {
    process.stderr.write(`${e.stack}\n`);
    process.exit(1);
  }
}
