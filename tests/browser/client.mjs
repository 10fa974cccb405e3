// hookcast.js (the daemon's GET /hookcast.js) in Chromium against the real daemon: every event
// a test publishes and the daemon acknowledges must reach every page exactly once, in order,
// asserted by ids, through
//   1. each transport alone (WebSocket, SSE, long polling), and the fallbacks a proxy forces:
//      WebSocket upgrades refused → SSE; upgrades refused and SSE buffered, or replaced by the
//      proxy's own page → long polling (test proxies in this script);
//   2. a page reload (the last id in sessionStorage), the proxy's page remembering its transport;
//   3. a daemon restart mid-stream on every transport (journal: ids survive);
//   4. eight tabs of one origin over HTTP/1.1 sharing one SSE connection (the daemon counts
//      one), then the leader tab closed: another takes over;
//   5. a 401 (a bad ticket) then a fresh ticket from the app's callback, on WebSocket and SSE;
//   6. on each transport: the retained state on connect, a filter, then setFilter, subscribe and
//      unsubscribe mid-stream, and a `reset` surfaced when the stored id is older than history;
//   7. tabs without Web Locks (as on plain http:// to a LAN name) electing a leader on the
//      channel, and taking over when it closes;
//   8. the pages of examples/pages/, served from another origin as their README says, against a
//      daemon with their hookcast.json: the bell's count from the retained state, then live; the
//      deploy log's lines, then only stderr after the filter changed mid-stream; the
//      cross-origin page's token traded for tickets;
// and the client's size, minified and gzipped (size.mjs), within its budget.
// Usage: node client.mjs [path/to/hookcast] (or $HOOKCAST_BIN).
import { chromium } from 'playwright-core';
import { CHROMIUM, ARGS } from './chromium.mjs';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { measure } from './size.mjs';
import { SignJWT } from 'jose';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.resolve(process.argv[2] || process.env.HOOKCAST_BIN || path.join(ROOT, 'target/debug/hookcast'));
const READER = 'hc_client_test_reader';
const JWT_SECRET = 'client-browser-test-secret-0123456789abcdef';
const JWT_TTL_S = 3;
const started = Date.now();

for (const [what, p] of [['Chromium', CHROMIUM], ['the hookcast binary', BIN]]) {
  if (!fs.existsSync(p)) {
    console.error(`client browser test FAILED: ${what} not found at ${p}`);
    process.exit(1);
  }
}

let daemon;
let browser;
let daemonLog = '';
const closers = [];
async function fail(msg) {
  for (const [tag, r] of Object.entries(seen)) {
    const st = r.statuses.slice(-4).map((x) => `${x.state}/${x.transport}${x.leader ? '*' : ''}`).join(' ');
    console.error(`  ${tag}: ${r.events.length} events, ${r.states.length} states, ${r.resets.length} resets; ${st}`);
  }
  console.error(`client browser test FAILED: ${msg}\n--- daemon log ---\n${daemonLog.slice(-3000)}`);
  await cleanup();
  process.exit(1);
}
async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  for (const c of closers) c();
  if (daemon) daemon.kill('SIGTERM');
}
function log(msg) {
  console.log(`client browser test: ${msg} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
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

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hookcast-client-browser-'));
const configFile = path.join(work, 'hookcast.json');
fs.writeFileSync(configFile, JSON.stringify({
  state_dir: path.join(work, 'state'),
  public: [{ topics: ['open/**'], scopes: ['subscribe'] }, { topics: ['**'], scopes: ['publish'] }],
  jwt: [{ name: 'app', alg: 'HS256', secret: JWT_SECRET, leeway_secs: 0, subscribe: ['users/{sub}/**'] }],
  tokens: [{ name: 'reader', sha256: crypto.createHash('sha256').update(READER).digest('hex'), scopes: ['subscribe'], topics: ['secret/**'] }],
}));

async function startDaemon(listen) {
  daemonLog = '';
  daemon = spawn(BIN, ['serve', '--config', configFile, '--listen', listen], { stdio: ['ignore', 'ignore', 'pipe'] });
  daemon.stderr.on('data', (b) => { daemonLog += b; });
  return until('the daemon to listen', () => (daemonLog.match(/listening on http:\/\/([0-9.:]+)/) || [])[1]);
}
async function stopDaemon() {
  const d = daemon;
  const gone = new Promise((r) => d.once('exit', r));
  d.kill('SIGTERM');
  await gone;
}

let addr;
// Publishes; the id when acknowledged, null when the daemon is away.
async function publish(topic, data) {
  try {
    const r = await fetch(`http://${addr}/publish/${topic}`, { method: 'POST', body: data });
    return r.status === 202 ? (await r.json()).id : null;
  } catch {
    return null;
  }
}
async function publishJson(topic, value, query = '') {
  const r = await fetch(`http://${addr}/publish/${topic}${query}`, {
    method: 'POST', body: JSON.stringify(value), headers: { 'Content-Type': 'application/json' },
  });
  if (r.status !== 202) throw new Error(`publish to ${topic} answered ${r.status}`);
  return (await r.json()).id;
}
async function publishMany(topic, n, gapMs = 20) {
  const ids = [];
  for (let i = 0; i < n; i++) {
    const id = await publish(topic, `e${i}`);
    if (id == null) throw new Error(`publish to ${topic} not acknowledged`);
    ids.push(id);
    if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
  }
  return ids;
}
async function metric(name) {
  const text = await (await fetch(`http://${addr}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  return line ? Number(line.split(' ')[1]) : NaN;
}

// A proxy in front of the daemon that also serves the test page (/__test.html), so the page and
// the daemon share its origin: `ws: false` refuses WebSocket upgrades (403); `sse: 'buffer'`
// holds back /events bodies (never flushed), `sse: 'strip'` answers /events with its own page.
function proxy(opts) {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))];
  const stats = { upgrades: 0, events: 0, polls: 0 };
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    if (req.url.startsWith('/__test.html')) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(PAGE);
      return;
    }
    const events = req.url.startsWith('/events');
    if (events) stats.events++;
    if (req.url.startsWith('/poll')) stats.polls++;
    if (events && opts.sse === 'strip') {
      res.writeHead(200, { 'Content-Type': 'text/html' }).end('<h1>Blocked by your security policy</h1>');
      return;
    }
    const up = http.request({ host, port, method: req.method, path: req.url, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      res.flushHeaders();
      if (events && opts.sse === 'buffer') ur.on('data', () => {});
      else ur.pipe(res);
    });
    up.on('error', () => res.destroy());
    res.on('close', () => up.destroy());
    req.pipe(up);
  });
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });
  server.on('upgrade', (req, sock, head) => {
    stats.upgrades++;
    if (!opts.ws) {
      sock.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
      return;
    }
    const up = net.connect(port, host, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
      up.write(lines.join('\r\n') + '\r\n\r\n');
      up.write(head);
      sock.pipe(up).pipe(sock);
    });
    for (const s of [sock, up]) s.on('error', () => { sock.destroy(); up.destroy(); });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    closers.push(() => { for (const s of sockets) s.destroy(); server.close(); });
    resolve({ origin: `http://127.0.0.1:${server.address().port}`, stats });
  }));
}

// The test page: loads the daemon's hookcast.js (or .mjs) from its own origin and reports what
// it gets. Options come in the query (JSON); `tickets: 'bad-first'` makes the ticket callback's
// first answer a made-up ticket.
const PAGE = `<!doctype html><meta charset="utf-8"><title>t</title>
<script src="/hookcast.js"></script>
<script type="module">
import { connect } from '/hookcast.mjs';
const q = new URLSearchParams(location.search);
const tag = q.get('tag');
const o = JSON.parse(q.get('o') || '{}');
if (o.jwt) o.token = async () => { report(tag, 'token', 1); return mint(); };
if (o.tickets) {
  let n = 0;
  o.ticket = async () => {
    n += 1;
    report(tag, 'ticket', n);
    if (n === 1 && o.tickets === 'bad-first') return 'tk_made_up';
    const r = await fetch('/api/ticket', { method: 'POST', headers: { Authorization: 'Bearer ${READER}' } });
    return (await r.json()).ticket;
  };
}
// Both forms load: the classic script's global and the module's export.
if (typeof window.hookcast.connect !== 'function' || typeof connect !== 'function') report(tag, 'broken', 'exports');
const hc = window.hc = connect(q.get('hc') || '', Object.assign({ openTimeout: 1500, backoff: { initial: 200, max: 2000 } }, o));
// What the page got, kept with the client's own last id: a report() sent while the page
// unloads may never arrive.
hc.on('event', (e) => {
  const got = JSON.parse(sessionStorage.getItem('got') || '[]');
  got.push(e.id);
  sessionStorage.setItem('got', JSON.stringify(got));
});
hc.on('state', (e) => report(tag, 'state', e.id));
hc.on('reset', (r) => report(tag, 'reset', r));
hc.on('status', (s) => report(tag, 'status', s));
</script>`;

const seen = {};
function rec(tag) {
  return (seen[tag] ||= { events: [], states: [], resets: [], statuses: [], tickets: 0, broken: [] });
}
async function newContext() {
  const ctx = await browser.newContext();
  // The app's backend: a JWT for alice, valid JWT_TTL_S seconds.
  await ctx.exposeFunction('mint', () => new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt().setExpirationTime(`${JWT_TTL_S}s`).sign(new TextEncoder().encode(JWT_SECRET)));
  await ctx.exposeFunction('report', (tag, kind, v) => {
    const r = rec(tag);
    if (kind === 'state') r.states.push(v);
    else if (kind === 'reset') r.resets.push(v);
    else if (kind === 'status') r.statuses.push(v);
    else if (kind === 'ticket') r.tickets = v;
    else if (kind === 'token') r.tokens = (r.tokens || 0) + 1;
    else r.broken.push(v);
  });
  return ctx;
}
const pages = {};
async function open(ctx, origin, tag, o) {
  const page = pages[tag] = await ctx.newPage();
  page.on('pageerror', (e) => fail(`page ${tag}: ${e.message}`));
  if (process.env.DEBUG) page.on('console', (m) => console.error(tag, m.text()));
  await page.goto(`${origin}/__test.html?tag=${tag}&o=${encodeURIComponent(JSON.stringify(o))}`);
  return page;
}
const connectedOn = (tag, transport) => () => {
  const s = rec(tag).statuses.at(-1);
  return s && s.state === 'connected' && (!transport || s.transport === transport);
};
async function events(tag) {
  return (rec(tag).events = await pages[tag].evaluate(() => JSON.parse(sessionStorage.getItem('got') || '[]')));
}
// Every id in `ids` exactly once, in order, and nothing else.
async function exactly(tag, ids) {
  const got = await events(tag);
  const dup = got.filter((id, i) => got.indexOf(id) !== i);
  if (dup.length) throw new Error(`${tag}: duplicated ${dup}`);
  const missing = ids.filter((id) => !got.includes(id));
  if (missing.length) throw new Error(`${tag}: missing ${missing.length} of ${ids.length}: ${missing.slice(0, 5)}…`);
  const extra = got.filter((id) => !ids.includes(id));
  if (extra.length) throw new Error(`${tag}: unexpected ${extra}`);
  if (got.some((id, i) => i && id <= got[i - 1])) throw new Error(`${tag}: out of order ${got}`);
  if (rec(tag).broken.length) throw new Error(`${tag}: ${rec(tag).broken}`);
}
const hasAll = (tag, ids) => async () => {
  const got = await events(tag);
  return ids.every((id) => got.includes(id));
};

try {
  addr = await startDaemon('127.0.0.1:0');
  // The daemon as it is, with the test page beside it.
  const daemonOrigin = (await proxy({ ws: true })).origin;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });

  // 1. Each transport alone; then the fallbacks three proxies force.
  {
    const ctx = await newContext();
    const noWs = await proxy({ ws: false });
    const buffered = await proxy({ ws: false, sse: 'buffer' });
    const stripped = await proxy({ ws: false, sse: 'strip' });
    for (const t of ['ws', 'sse', 'poll']) {
      await open(ctx, daemonOrigin, `alone-${t}`, { topics: ['open/alone'], transports: [t], shared: false });
    }
    await open(ctx, noWs.origin, 'via-no-ws', { topics: ['open/alone'] });
    await open(ctx, buffered.origin, 'via-buffered', { topics: ['open/alone'] });
    await open(ctx, stripped.origin, 'via-stripped', { topics: ['open/alone'] });
    for (const [tag, t] of [['alone-ws', 'ws'], ['alone-sse', 'sse'], ['alone-poll', 'poll'],
      ['via-no-ws', 'sse'], ['via-buffered', 'poll'], ['via-stripped', 'poll']]) {
      await until(`${tag} connected on ${t}`, connectedOn(tag, t));
    }
    const ids = await publishMany('open/alone', 30);
    const tags = ['alone-ws', 'alone-sse', 'alone-poll', 'via-no-ws', 'via-buffered', 'via-stripped'];
    for (const tag of tags) {
      await until(`${tag} to get all 30`, hasAll(tag, ids));
      await exactly(tag, ids);
    }
    if (noWs.stats.upgrades < 1 || buffered.stats.events < 1) throw new Error('the proxies saw no attempt');
    log(`each transport alone and through proxies (ws refused → sse; sse buffered or stripped → poll): 30 events each, once, in order`);

    // 2. Reloads: the last id survives in sessionStorage; the proxy's page starts on SSE.
    const before = noWs.stats.upgrades;
    const more = [];
    const reloads = ['alone-ws', 'alone-poll', 'via-no-ws'].map((tag) => ({ tag, page: pages[tag] }));
    const publishing = (async () => { more.push(...await publishMany('open/alone', 20, 30)); })();
    await new Promise((r) => setTimeout(r, 150));
    await Promise.all(reloads.map(({ page }) => page.reload()));
    await publishing;
    more.push(...await publishMany('open/alone', 5));
    for (const { tag } of reloads) {
      await until(`${tag} to get all after its reload`, hasAll(tag, [...ids, ...more]));
      await exactly(tag, [...ids, ...more]);
    }
    if (noWs.stats.upgrades !== before) throw new Error(`the reloaded page tried WebSocket again (${noWs.stats.upgrades - before})`);
    log('page reloads mid-stream (ws, poll, sse via the proxy): resumed from sessionStorage, nothing lost or repeated; the proxy page remembered SSE');

    // 3. The daemon restarts mid-stream (journal: ids persist); publishing goes on throughout.
    for (const t of ['ws', 'sse', 'poll']) {
      await open(ctx, daemonOrigin, `restart-${t}`, { topics: ['open/restart'], transports: [t], shared: false });
      await until(`restart-${t} connected`, connectedOn(`restart-${t}`, t));
    }
    const acked = [];
    let publishingOn = true;
    const publisher = (async () => {
      for (let i = 0; publishingOn; i++) {
        const id = await publish('open/restart', `r${i}`);
        if (id != null) acked.push(id);
        await new Promise((r) => setTimeout(r, 25));
      }
    })();
    await until('some events before the restart', () => acked.length >= 10);
    await stopDaemon();
    const during = acked.length;
    await startDaemon(addr);
    await until('events after the restart', () => acked.length >= during + 20);
    publishingOn = false;
    await publisher;
    for (const t of ['ws', 'sse', 'poll']) {
      await until(`restart-${t} to get all ${acked.length}`, hasAll(`restart-${t}`, acked));
      await exactly(`restart-${t}`, acked);
    }
    log(`daemon restarted mid-stream: ${acked.length} acknowledged events reached ws, sse and poll once each`);
    await ctx.close();
  }

  // 4. Eight tabs, one origin, plain HTTP/1.1 (Chromium has six connections per origin): one SSE
  // connection for all; the leader tab closed, another takes over.
  {
    const ctx = await newContext();
    // The contexts before have closed their streams.
    await until('no SSE connection left', async () => (await metric('hookcast_connections_active{transport="sse"}')) === 0);
    const sseBefore = 0;
    const tabs = [];
    for (let i = 0; i < 8; i++) tabs.push(await open(ctx, daemonOrigin, `tab${i}`, { topics: ['open/tabs'], transports: ['sse'] }));
    for (let i = 0; i < 8; i++) await until(`tab${i} connected`, connectedOn(`tab${i}`, 'sse'));
    const ids = await publishMany('open/tabs', 20);
    for (let i = 0; i < 8; i++) await until(`tab${i} to get 20`, hasAll(`tab${i}`, ids));
    const conns = await metric('hookcast_connections_active{transport="sse"}');
    if (conns - sseBefore !== 1) throw new Error(`eight tabs hold ${conns - sseBefore} SSE connections`);
    const leaders = [];
    for (let i = 0; i < 8; i++) if (await tabs[i].evaluate(() => window.hc.status.leader)) leaders.push(i);
    if (leaders.length !== 1) throw new Error(`leaders: ${leaders}`);
    const gone = leaders[0];
    const more = [];
    const publishing = (async () => { more.push(...await publishMany('open/tabs', 20, 25)); })();
    await new Promise((r) => setTimeout(r, 100));
    await tabs[gone].close();
    await publishing;
    const all = [...ids, ...more];
    for (let i = 0; i < 8; i++) {
      if (i === gone) continue;
      await until(`tab${i} to get all after the takeover`, hasAll(`tab${i}`, all));
      await exactly(`tab${i}`, all);
    }
    await until('one SSE connection again', async () => (await metric('hookcast_connections_active{transport="sse"}')) - sseBefore === 1);
    log(`eight tabs shared one SSE connection; leader tab${gone} closed, another took over: 40 events each, once`);
    await ctx.close();
  }

  // 5. A 401 (a made-up ticket) then a fresh ticket, on WebSocket (which cannot see the status)
  // and on SSE.
  {
    const ctx = await newContext();
    await open(ctx, daemonOrigin, 'ticket-ws', { topics: ['secret/a'], tickets: 'bad-first', shared: false });
    await open(ctx, daemonOrigin, 'ticket-sse', { topics: ['secret/a'], tickets: 'bad-first', transports: ['sse'], shared: false });
    await until('ticket-ws connected on ws', connectedOn('ticket-ws', 'ws'));
    await until('ticket-sse connected on sse', connectedOn('ticket-sse', 'sse'));
    const ids = await publishMany('secret/a', 20);
    for (const tag of ['ticket-ws', 'ticket-sse']) {
      await until(`${tag} to get 20`, hasAll(tag, ids));
      await exactly(tag, ids);
      if (rec(tag).tickets < 2) throw new Error(`${tag}: the ticket callback was called ${rec(tag).tickets} times`);
    }
    log('a made-up ticket refused, a fresh one asked for: connected and every event once (ws, sse)');

    // JWTs from the token callback, valid 3 s, for about 8 s: the WebSocket renews in place (the
    // auth op, never reconnecting); SSE ends at each expiry and reconnects with a fresh token.
    await open(ctx, daemonOrigin, 'jwt-ws', { topics: ['users/alice/**'], jwt: true, transports: ['ws'], shared: false });
    await open(ctx, daemonOrigin, 'jwt-sse', { topics: ['users/alice/**'], jwt: true, transports: ['sse'], shared: false });
    await until('jwt-ws connected', connectedOn('jwt-ws', 'ws'));
    await until('jwt-sse connected', connectedOn('jwt-sse', 'sse'));
    const jwtIds = await publishMany('users/alice/inbox', 80, 100);
    for (const tag of ['jwt-ws', 'jwt-sse']) {
      await until(`${tag} to get 80`, hasAll(tag, jwtIds));
      await exactly(tag, jwtIds);
      if ((rec(tag).tokens || 0) < 3) throw new Error(`${tag}: ${rec(tag).tokens} tokens asked for in ${80 * 0.1} s of 3 s tokens`);
    }
    const wsOpens = rec('jwt-ws').statuses.filter((x) => x.state === 'connected').length;
    if (wsOpens !== 1) throw new Error(`the WebSocket reconnected (${wsOpens} connects) instead of renewing`);
    const sseOpens = rec('jwt-sse').statuses.filter((x) => x.state === 'connected').length;
    if (sseOpens < 2) throw new Error(`SSE connected ${sseOpens} times across token expiries`);
    log(`3-second JWTs for 8 s: WebSocket renewed in place (${rec('jwt-ws').tokens} tokens, one connection), SSE reconnected at expiry (${sseOpens} connects); every event once`);
    await ctx.close();
  }

  // 6. State on connect, filters and subscriptions changed mid-stream, reset; each transport.
  {
    const ctx = await newContext();
    const kept = await publishJson('open/s/a', { level: 'error', n: 0 }, '?retain=1');
    const ts = ['ws', 'sse', 'poll'];
    const o = (t) => ({ topics: ['open/s/a'], state: true, filter: { where: { level: 'error' } }, transports: [t], shared: false });
    for (const t of ts) await open(ctx, daemonOrigin, `ops-${t}`, o(t));
    for (const t of ts) await until(`ops-${t} connected`, connectedOn(`ops-${t}`, t));
    for (const t of ts) {
      await until(`ops-${t} to get the state`, () => rec(`ops-${t}`).states.length);
      if (JSON.stringify(rec(`ops-${t}`).states) !== JSON.stringify([kept])) throw new Error(`ops-${t} states: ${rec(`ops-${t}`).states}`);
    }
    const expect = [];
    await publishJson('open/s/a', { level: 'info', n: 1 });
    expect.push(await publishJson('open/s/a', { level: 'error', n: 2 }));
    // Each change once the events before it arrived: over SSE and polling a change resumes
    // from the last event delivered.
    const each = async (f) => {
      for (const t of ts) await until(`ops-${t} to be up to date`, hasAll(`ops-${t}`, expect));
      await Promise.all(ts.map((t) => pages[`ops-${t}`].evaluate(f)));
    };
    await each(() => window.hc.setFilter(null));
    expect.push(await publishJson('open/s/a', { level: 'info', n: 3 }));
    await each(() => window.hc.subscribe('open/s/b'));
    expect.push(await publishJson('open/s/b', { level: 'info', n: 4 }));
    await each(() => window.hc.unsubscribe('open/s/b'));
    await publishJson('open/s/b', { level: 'info', n: 5 });
    expect.push(await publishJson('open/s/a', { level: 'info', n: 6 }));
    for (const t of ts) {
      await until(`ops-${t} to get its events`, hasAll(`ops-${t}`, expect));
      await exactly(`ops-${t}`, expect);
    }
    // An id older than history: the daemon says reset, the client tells the page.
    for (const t of ts) {
      const page = pages[`ops-${t}`];
      await page.evaluate(() => { for (const k of Object.keys(sessionStorage)) if (k.startsWith('hookcast:id:')) sessionStorage.setItem(k, '1'); });
      await page.reload();
    }
    for (const t of ts) {
      const r = await until(`ops-${t} to surface a reset`, () => rec(`ops-${t}`).resets[0]);
      if (r.last_event_id !== 1 || !(r.resume_from > 1)) throw new Error(`ops-${t} reset: ${JSON.stringify(r)}`);
    }
    log('state on connect, a filter, setFilter/subscribe/unsubscribe mid-stream and a reset, on ws, sse and poll');
    await ctx.close();
  }

  // 7. No Web Locks: the tabs elect a leader by heartbeats on the BroadcastChannel.
  {
    const ctx = await newContext();
    await ctx.addInitScript(() => Object.defineProperty(Navigator.prototype, 'locks', { get: () => undefined }));
    // The contexts before have closed their streams.
    await until('no SSE connection left', async () => (await metric('hookcast_connections_active{transport="sse"}')) === 0);
    const sseBefore = 0;
    const tabs = [];
    for (let i = 0; i < 3; i++) tabs.push(await open(ctx, daemonOrigin, `nolock${i}`, { topics: ['open/nolock'], transports: ['sse'] }));
    for (let i = 0; i < 3; i++) await until(`nolock${i} connected`, connectedOn(`nolock${i}`, 'sse'));
    if (await tabs[0].evaluate(() => !!navigator.locks)) throw new Error('navigator.locks still there');
    await until('one SSE connection for three tabs', async () => (await metric('hookcast_connections_active{transport="sse"}')) - sseBefore === 1);
    const ids = await publishMany('open/nolock', 10);
    let gone = -1;
    for (let i = 0; i < 3; i++) if (await tabs[i].evaluate(() => window.hc.status.leader)) gone = i;
    if (gone < 0) throw new Error('no leader');
    const more = [];
    const publishing = (async () => { more.push(...await publishMany('open/nolock', 10, 50)); })();
    await tabs[gone].close();
    await publishing;
    for (let i = 0; i < 3; i++) {
      if (i === gone) continue;
      await until(`nolock${i} to get all after the takeover`, hasAll(`nolock${i}`, [...ids, ...more]));
      await exactly(`nolock${i}`, [...ids, ...more]);
    }
    log(`without Web Locks: three tabs, one SSE connection; leader nolock${gone} closed, another took over`);
    await ctx.close();
  }

  // 8. The examples, from a static server on another origin, with their own config.
  {
    const dir = path.join(ROOT, 'examples/pages');
    const files = http.createServer((req, res) => {
      const name = path.basename(new URL(req.url, 'http://x').pathname);
      if (!name.endsWith('.html') || !fs.existsSync(path.join(dir, name))) return res.writeHead(404).end();
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(fs.readFileSync(path.join(dir, name)));
    });
    await new Promise((r) => files.listen(0, '127.0.0.1', r));
    closers.push(() => files.close());
    const pagesOrigin = `http://127.0.0.1:${files.address().port}`;
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'hookcast.json'), 'utf8'));
    cfg.cors.allowed_origins = [pagesOrigin];
    const cfgFile = path.join(work, 'examples.json');
    fs.writeFileSync(cfgFile, JSON.stringify(cfg));
    let exLog = '';
    const ex = spawn(BIN, ['serve', '--config', cfgFile, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
    closers.push(() => ex.kill('SIGTERM'));
    ex.stderr.on('data', (b) => { exLog += b; });
    const hc = 'http://' + await until('the examples daemon', () => (exLog.match(/listening on http:\/\/([0-9.:]+)/) || [])[1]);
    const post = async (p, body, json) => {
      const r = await fetch(hc + p, { method: 'POST', body, headers: json ? { 'Content-Type': 'application/json' } : {} });
      if (r.status >= 300) throw new Error(`POST ${p}: ${r.status} ${await r.text()}`);
    };
    const ctx = await newContext();
    const at = async (name) => {
      const page = await ctx.newPage();
      page.on('pageerror', (e) => fail(`${name}: ${e.message}`));
      await page.goto(`${pagesOrigin}/${name}?hc=${encodeURIComponent(hc)}`);
      return page;
    };
    const text = (page, sel) => page.evaluate((s) => document.querySelector(s).textContent, sel);

    await post('/publish/bell?retain=1&event=note', JSON.stringify({ unread: 3, text: 'one' }), true);
    const bell = await at('bell.html');
    await until('the bell to show the retained count', async () => (await text(bell, '#count')) === '3');
    await post('/publish/bell?retain=1&event=note', JSON.stringify({ unread: 4, text: 'two' }), true);
    await until('the bell to count the new note', async () => (await text(bell, '#count')) === '4' && (await text(bell, '#notes')) === 'two');
    await bell.click('#bell');
    await until('the bell to clear', () => bell.evaluate(() => document.getElementById('count').hidden));

    const deploys = await at('deploys.html');
    await until('the deploy log connected', async () => (await text(deploys, '#status')).startsWith('connected'));
    await post('/hooks/deploy', '');
    await until('the first deploy\'s lines', async () => (await text(deploys, '#log')).includes('restart: ok'));
    await until('the run to succeed', async () => (await text(deploys, '#runs')).includes('succeeded'));
    await deploys.check('#stderr');
    await until('the filter in force', async () => (await text(deploys, '#log')).includes('— filter:'));
    await post('/hooks/deploy', '');
    await until('the second run to finish', async () => (await text(deploys, '#runs')).split('succeeded').length === 3);
    const after = (await text(deploys, '#log')).split('— filter:')[1];
    if (!after.includes('test: 1 warning') || after.includes('started') || after.includes(': ok')) {
      throw new Error(`after the filter, the log shows: ${after}`);
    }

    const cross = await at('cross-origin.html');
    await until('the classic script', () => cross.evaluate(() => !!window.hookcast));
    await cross.click('button');
    await until('the cross-origin page connected', async () => (await text(cross, '#status')).startsWith('connected'));
    await post('/publish/team/news', 'hello, team');
    await until('the team event', async () => (await text(cross, '#events')).includes('"hello, team"'));
    log('examples: bell from retained state then live, deploy log filtered mid-stream, cross-origin page with tickets');
    await ctx.close();
  }

  const size = await measure();
  if (size.minGzip > 6 * 1024) throw new Error(`hookcast.js is ${size.minGzip} bytes minified and gzipped (budget 6 KiB)`);
  log(`hookcast.js: ${size.raw} bytes as served, ${size.minGzip} minified+gzipped`);
  await cleanup();
  log('ok');
} catch (e) {
  await fail(e.stack || String(e));
}
