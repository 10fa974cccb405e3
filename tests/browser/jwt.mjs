// Signed subscriber tokens in a real browser: a tiny app backend in this script serves a page and
// signs short-lived HS256 JWTs (npm `jose`) for its logged-in user, alice; the page, on the
// backend's origin, opens a WebSocket and an EventSource to the hookcast daemon (another origin)
// with `?token=`. Events for alice and for bob are published every 300 ms for 8 s; the page must
// receive alice's only, and when hookcast ends a stream at its token's expiry (WebSocket close
// 4001, SSE ending after its comment) the page fetches a fresh token and resumes from its last
// event id, so every event arrives exactly once, in order, on both.
// Usage: node jwt.mjs [path/to/hookcast] (or $HOOKCAST_BIN).
import { chromium } from 'playwright-core';
import { CHROMIUM, ARGS } from './chromium.mjs';
import { SignJWT } from 'jose';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.resolve(process.argv[2] || process.env.HOOKCAST_BIN || path.join(ROOT, 'target/debug/hookcast'));
const SECRET = 'browser-test-app-secret-0123456789abcdef';
const PUBLISHER = 'browser-test-publisher';
const TTL_S = 3;

for (const [what, p] of [['Chromium', CHROMIUM], ['the hookcast binary', BIN]]) {
  if (!fs.existsSync(p)) {
    console.error(`jwt browser test FAILED: ${what} not found at ${p}`);
    process.exit(1);
  }
}

let daemon;
let browser;
let backend;
let daemonLog = '';
async function fail(msg) {
  console.error(`jwt browser test FAILED: ${msg}\n--- daemon log ---\n${daemonLog.slice(-3000)}`);
  await cleanup();
  process.exit(1);
}
async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  if (backend) backend.close();
  if (daemon) daemon.kill('SIGTERM');
}
async function until(what, f, ms = 15000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

// The page: gets tokens from its own backend, streams from hookcast, renews at expiry.
const PAGE = (hc) => `<!doctype html><meta charset="utf-8"><title>app</title><script>
const HC = ${JSON.stringify(hc)};
const TOPICS = 'users/alice/**';
window.ws = { got: [], closes: [], opens: 0 };
window.sse = { got: [], ends: 0, opens: 0 };
async function token() {
  const r = await fetch('/token');
  return (await r.json()).token;
}
async function openWs() {
  const last = window.ws.got.length ? window.ws.got[window.ws.got.length - 1].id : null;
  const t = await token();
  const url = HC.replace('http', 'ws') + '/ws?topics=' + TOPICS + '&token=' + t + (last ? '&lastEventId=' + last : '');
  const s = new WebSocket(url);
  s.onopen = () => { window.ws.opens += 1; };
  s.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.id !== undefined && m.topic) window.ws.got.push({ id: String(m.id), topic: m.topic, data: m.data });
  };
  // 4001: the token expired. A fresh one, and on from the last event.
  s.onclose = (e) => { window.ws.closes.push(e.code); if (e.code === 4001) openWs(); };
}
async function openSse() {
  const last = window.sse.got.length ? window.sse.got[window.sse.got.length - 1].id : null;
  const t = await token();
  const es = new EventSource(HC + '/events?topics=' + TOPICS + '&token=' + t + (last ? '&lastEventId=' + last : ''));
  es.onopen = () => { window.sse.opens += 1; };
  es.onmessage = (e) => window.sse.got.push({ id: e.lastEventId, data: e.data });
  // The stream ended (at the token's expiry): EventSource would reconnect with the old URL and
  // its expired token, so the page opens a new one with a fresh token instead.
  es.onerror = () => { es.close(); window.sse.ends += 1; openSse(); };
}
window.refused = {};
token().then((t) => fetch(HC + '/poll?topics=users/bob/**&token=' + t)).then(async (r) => {
  window.refused = { status: r.status, body: await r.json() };
});
openWs();
openSse();
</script><p>app</p>`;

try {
  let hcUrl = null;
  let tokensIssued = 0;
  backend = http.createServer(async (req, res) => {
    if (req.url === '/token') {
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT({ sub: 'alice' })
        .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
        .setIssuedAt(now)
        .setExpirationTime(now + TTL_S)
        .sign(new TextEncoder().encode(SECRET));
      tokensIssued += 1;
      res.writeHead(200, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
      res.end(JSON.stringify({ token }));
    } else if (req.url === '/') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(PAGE(hcUrl));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise((r) => backend.listen(0, '127.0.0.1', r));
  const appOrigin = `http://127.0.0.1:${backend.address().port}`;

  const { createHash } = await import('node:crypto');
  const config = {
    tokens: [{ name: 'publisher', sha256: createHash('sha256').update(PUBLISHER).digest('hex'),
      scopes: ['publish'], topics: ['**'] }],
    jwt: [{ name: 'app', alg: 'HS256', secret: SECRET, leeway_secs: 0, subscribe: ['users/{sub}/**'] }],
    // The page is on the app's origin: hookcast lets it read the SSE stream (CORS) and open the
    // WebSocket (Origin check).
    cors: { allowed_origins: [appOrigin] },
    ws: { allowed_origins: [appOrigin] },
  };
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hookcast-jwt-browser-'));
  const configFile = path.join(work, 'hookcast.json');
  fs.writeFileSync(configFile, JSON.stringify(config));
  daemon = spawn(BIN, ['serve', '--config', configFile, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  daemon.stderr.on('data', (b) => { daemonLog += b; });
  const addr = await until('the daemon to listen', () => (daemonLog.match(/listening on http:\/\/([0-9.:]+)/) || [])[1]);
  hcUrl = `http://${addr}`;
  const publish = async (topic, data) => {
    const r = await fetch(`${hcUrl}/publish/${topic}`, {
      method: 'POST', body: data, headers: { Authorization: `Bearer ${PUBLISHER}` },
    });
    if (r.status !== 202) throw new Error(`publish answered ${r.status}: ${await r.text()}`);
    return String((await r.json()).id);
  };

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  const page = await browser.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(m.text()));
  await page.goto(`${appOrigin}/`);
  await until('both streams to open', () => page.evaluate(() => window.ws.opens === 1 && window.sse.opens === 1));
  const refused = await until('the refusal of bob\'s topics', () => page.evaluate(() => window.refused.status && window.refused));
  if (refused.status !== 403 || refused.body.reason !== 'not_granted') {
    await fail(`bob's topics with alice's token: ${JSON.stringify(refused)}`);
  }

  const alice = [];
  const t0 = Date.now();
  for (let i = 0; Date.now() - t0 < 8000; i++) {
    await publish('users/bob/feed', `bob-${i}`);
    alice.push(await publish('users/alice/feed', `alice-${i}`));
    await new Promise((r) => setTimeout(r, 300));
  }
  const done = (k) => page.evaluate(([k, n]) => window[k].got.length >= n, [k, alice.length]);
  await until('every event on the WebSocket', () => done('ws'), 10000).catch(() => {});
  await until('every event on the EventSource', () => done('sse'), 10000).catch(() => {});
  await new Promise((r) => setTimeout(r, 500)); // duplicates, if any, would come now
  const state = await page.evaluate(() => ({ ws: window.ws, sse: window.sse }));
  const want = JSON.stringify(alice);
  for (const k of ['ws', 'sse']) {
    const ids = JSON.stringify(state[k].got.map((e) => e.id));
    if (ids !== want) await fail(`${k} got ids ${ids}, want ${want} (console: ${consoleLines.join(' | ')})`);
    const foreign = state[k].got.filter((e) => (e.topic && e.topic !== 'users/alice/feed') || !String(e.data).startsWith('alice-'));
    if (foreign.length) await fail(`${k} got another user's events: ${JSON.stringify(foreign)}`);
  }
  const expiries = state.ws.closes.filter((c) => c === 4001).length;
  if (expiries < 2 || state.ws.closes.length !== expiries) await fail(`WebSocket closes ${JSON.stringify(state.ws.closes)}: want 4001 at least twice, nothing else`);
  if (state.sse.ends < 2 || state.sse.opens !== state.sse.ends + 1) await fail(`EventSource ended ${state.sse.ends} times and opened ${state.sse.opens}`);
  await cleanup();
  console.log(`jwt browser test: ok (${alice.length} events for alice over ${expiries + 1} WebSocket and ${state.sse.opens} EventSource sessions, ` +
    `${tokensIssued} tokens of ${TTL_S} s; none of bob's, none lost or repeated)`);
} catch (e) {
  await fail(e.stack || String(e));
}
