// Mints JWTs with the npm `jose` package (an implementation independent of hookcast's) for the
// integration tests (tests/integration/jwt.rs).
//
// Usage:
//   node jwt_mint.mjs --alg ALG (--secret S | --key PRIVATE.pem) --claims JSON [--kid K] [--header JSON]
//   node jwt_mint.mjs --batch < specs.json   # a JSON list of {"alg","secret"|"key","claims","kid","header"}
//
// One token prints as a line; --batch prints a JSON list of tokens in the specs' order. A
// "secret" is used as the HMAC key's bytes whatever it looks like (even a PEM public key: the
// algorithm-confusion test needs exactly that, which PyJWT refuses to do). Exit status 64 on a
// usage error.
import { readFileSync } from 'node:fs';
import { SignJWT, importPKCS8 } from 'jose';

async function mint(spec) {
  const key =
    spec.secret !== undefined
      ? new TextEncoder().encode(spec.secret)
      : await importPKCS8(readFileSync(spec.key, 'utf8'), spec.alg);
  const header = { ...(spec.header || {}), alg: spec.alg, typ: 'JWT' };
  if (spec.kid) header.kid = spec.kid;
  return new SignJWT(spec.claims).setProtectedHeader(header).sign(key);
}

function usage(message) {
  process.stderr.write(`jwt_mint: ${message}\n`);
  process.exit(64);
}

const argv = process.argv.slice(2);
if (argv[0] === '--batch') {
  const specs = JSON.parse(readFileSync(0, 'utf8'));
  const tokens = [];
  for (const s of specs) tokens.push(await mint(s));
  process.stdout.write(JSON.stringify(tokens) + '\n');
} else {
  const spec = {};
  for (let i = 0; i < argv.length; i += 2) {
    const [name, value] = [argv[i], argv[i + 1]];
    if (value === undefined) usage(`${name} needs a value`);
    switch (name) {
      case '--alg': spec.alg = value; break;
      case '--secret': spec.secret = value; break;
      case '--key': spec.key = value; break;
      case '--kid': spec.kid = value; break;
      case '--claims': spec.claims = JSON.parse(value); break;
      case '--header': spec.header = JSON.parse(value); break;
      default: usage(`unknown argument ${name}`);
    }
  }
  if (!spec.alg || !spec.claims || (spec.secret === undefined) === (spec.key === undefined)) {
    usage('--alg, --claims and one of --secret or --key are needed');
  }
  process.stdout.write((await mint(spec)) + '\n');
}
