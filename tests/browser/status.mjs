// Browser proof of hookcast's live status page: the real daemon, the system's headless Chromium
// driven by playwright-core. Usage: node status.mjs [path/to/hookcast] (or $HOOKCAST_BIN).
// Screenshots go to $ARTIFACTS (default target/browser-artifacts/).
import { chromium } from 'playwright-core';
import { CHROMIUM, ARGS } from './chromium.mjs';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.resolve(process.argv[2] || process.env.HOOKCAST_BIN || path.join(ROOT, 'target/debug/hookcast'));
const ARTIFACTS = process.env.ARTIFACTS || path.join(ROOT, 'target/browser-artifacts');
const SECRET = 'browser-test-secret';
const TOKEN = 'hc_browser_test_admin_token_0123456789';

const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
function die(msg) {
  console.error(`browser test FAILED: ${msg}`);
  for (const d of daemons) if (d.log) console.error(`--- daemon log (${d.name}) ---\n${d.log.slice(-4000)}`);
  process.exitCode = 1;
  cleanup().finally(() => process.exit(1));
}
function check(cond, msg) { if (!cond) throw new Error(msg); }

for (const [what, p] of [['Chromium', CHROMIUM], ['the hookcast binary', BIN]]) {
  if (!fs.existsSync(p)) {
    console.error(`browser test FAILED: ${what} not found at ${p}` +
      (what === 'Chromium' ? ' (apt-get install chromium; .ci/run installs it)' : ' (cargo build first)'));
    process.exit(1);
  }
}

// --- the daemon ---------------------------------------------------------------------------

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hookcast-browser-'));
const stateDir = path.join(work, 'state');
const deploy = path.join(work, 'deploy.sh');
fs.writeFileSync(deploy, `#!/bin/sh
printf '\\033[32mdeploying\\033[0m %s\\n' "$1"
sleep 0.15
echo "step 2: build"
printf '\\033[1;33mwarning:\\033[0m from stderr\\n' >&2
sleep 0.15
echo "done: $1"
`, { mode: 0o755 });

const PUBLIC = [{ topics: ['$deliveries', '$runs', '$runs/**'], scopes: ['subscribe'], from: ['127.0.0.0/8', '::1'] }];
function config(extra) {
  return {
    sse: { retry_ms: 1000 },
    hooks: [{
      id: 'site', provider: 'github', secrets: [SECRET], events: ['push'], 'execute-command': deploy,
      'pass-arguments-to-command': [{ source: 'payload', name: 'head_commit.id' }],
    }],
    ...extra,
  };
}

const daemons = [];
function start(name, cfg, listen) {
  const file = path.join(work, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify(cfg));
  const child = spawn(BIN, ['serve', '--config', file, '--listen', listen, '--state-dir', stateDir],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, HOOKCAST_LOG: 'info' } });
  const d = { name, child, log: '', exited: null };
  daemons.push(d);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: no "listening on" line in 10 s`)), 10000);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s) => {
      d.log += s;
      const m = d.log.match(/listening on http:\/\/(\S+)/);
      if (m && !d.url) { d.url = `http://${m[1]}`; d.addr = m[1]; clearTimeout(timer); resolve(d); }
    });
    child.on('exit', (code, sig) => { d.exited = { code, sig }; clearTimeout(timer); reject(new Error(`${name} exited (${code ?? sig})`)); });
  });
}
async function stop(d) {
  if (d.exited) return;
  const done = new Promise((r) => d.child.once('exit', r));
  d.child.kill('SIGTERM');
  await done;
}

async function webhook(d, { delivery, commit, secret = SECRET }) {
  const body = JSON.stringify({ ref: 'refs/heads/main', head_commit: { id: commit }, repository: { full_name: 'me/site' } });
  const sig = 'sha256=' + crypto.createHmac('sha256', secret).update(body).digest('hex');
  const r = await fetch(`${d.url}/hooks/site`, {
    method: 'POST', body,
    headers: { 'Content-Type': 'application/json', 'X-GitHub-Event': 'push', 'X-GitHub-Delivery': delivery, 'X-Hub-Signature-256': sig },
  });
  return { status: r.status, body: await r.text() };
}

let browser;
async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  for (const d of daemons) if (!d.exited) d.child.kill('SIGKILL');
  fs.rmSync(work, { recursive: true, force: true });
}

async function until(what, fn, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

// --- the test -----------------------------------------------------------------------------

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const appLog = path.join(work, 'app.log');
  fs.writeFileSync(appLog, '');
  const SOURCES = [{ tail: appLog, topic: 'logs/app' }, { tail: path.join(work, 'later.log'), topic: 'logs/later' }];
  let d = await start('first', config({ public: PUBLIC, sources: SOURCES }), '127.0.0.1:0');
  log(`daemon on ${d.url}`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  const desktop = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: 'light' });
  const page = await desktop.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' && !/ERR_CONNECTION_REFUSED|net::ERR/.test(m.text())) problems.push(`console: ${m.text()}`); });

  const resp = await page.goto(d.url + '/');
  check(resp.status() === 200, `GET / answered ${resp.status()}`);
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 5000 });
  log('page loaded and connected');
  check(await page.isHidden('#cluster-s') && await page.isHidden('#redis-warn'), 'a single node shows the Cluster panel');

  // A delivery with a wrong signature: refused, and the hooks table says why.
  let r = await webhook(d, { delivery: 'bad-1', commit: 'bad', secret: 'not-the-secret' });
  check(r.status === 403, `bad signature answered ${r.status}`);
  await page.waitForSelector('#hooks tr:has-text("site") .b-bad:has-text("failed")', { timeout: 1000 });
  // (Its delivery id is not believed before the signature is: the record has none.)
  await page.waitForSelector('#feed li:has-text("signature does not match") .b-rejected', { timeout: 1000 });
  log('refused delivery shown with its failed verification');

  // A signed push: accepted, a deploy starts, its output streams in.
  const sent = Date.now();
  r = await webhook(d, { delivery: 'push-1', commit: 'abc123' });
  check(r.status === 202, `signed push answered ${r.status}: ${r.body}`);
  await page.waitForSelector('#feed li:has-text("push-1") .b-accepted', { timeout: 1000 });
  await page.waitForSelector('#hooks tr:has-text("site") .b-ok:has-text("verified")', { timeout: 1000 });
  await page.waitForSelector('.run .log:has-text("deploying abc123")', { timeout: 1000 });
  const firstLineMs = Date.now() - sent;
  await page.waitForSelector('.run .log:has-text("done: abc123")', { timeout: 1000 });
  const allLinesMs = Date.now() - sent;
  await page.waitForSelector('.run summary .b-succeeded', { timeout: 2000 });
  const colour = await page.$eval('.run .log .a-f3', (e) => [e.textContent, getComputedStyle(e).color]);
  check(colour[0] === 'deploying', `ANSI green span holds ${JSON.stringify(colour[0])}`);
  const stderr = await page.$eval('.run .log .err', (e) => e.textContent);
  check(stderr.includes('warning:') && !stderr.includes('\x1b'), `stderr line rendered as ${JSON.stringify(stderr)}`);
  log(`delivery + first output line in ${firstLineMs} ms, all lines in ${allLinesMs} ms; run succeeded; ANSI green ${colour[1]}`);
  check(allLinesMs < 1000, `run output took ${allLinesMs} ms`);

  // The figures follow: events published and this page's own SSE connection.
  await page.waitForFunction(() => Number(document.getElementById('published').textContent.replace(/\D/g, '')) >= 8
    && document.getElementById('c-sse').textContent === '1', null, { timeout: 2000 });
  // The Sources panel (refreshed every 5 s): a tailed file's lines are counted, a file not
  // there yet is waiting.
  check(await page.isVisible('#sources-s'), 'no Sources panel with two sources configured');
  fs.appendFileSync(appLog, 'one\n{"level":"warn","msg":"two"}\nthree\n');
  await page.waitForSelector('#sources tr:has-text("logs/app") td[data-l="Lines"]:text-is("3")', { timeout: 15000 });
  await page.waitForSelector('#sources tr:has-text("logs/app") .b-running', { timeout: 1000 });
  await page.waitForSelector('#sources tr:has-text("logs/later"):has-text("waiting")', { timeout: 1000 });
  const lastLine = await page.$eval('#sources tr:has-text("logs/app") td[data-l="Last line"]', (e) => e.textContent);
  check(!/none yet/.test(lastLine), `last line time not shown: ${lastLine}`);
  log('sources panel: lines counted, running and waiting states, last line time');
  // Screenshots: desktop and phone, light and dark.
  await page.screenshot({ path: path.join(ARTIFACTS, 'desktop-light.png'), fullPage: true });
  for (const [name, opts] of [
    ['desktop-dark', { viewport: { width: 1280, height: 860 }, colorScheme: 'dark' }],
    ['phone-light', { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, colorScheme: 'light' }],
    ['phone-dark', { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, colorScheme: 'dark' }],
  ]) {
    const ctx = await browser.newContext(opts);
    const p = await ctx.newPage();
    p.on('pageerror', (e) => problems.push(`page error (${name}): ${e.message}`));
    await p.goto(d.url + '/');
    await p.waitForSelector('#conn[data-state="connected"]', { timeout: 5000 });
    await p.waitForSelector('.run .log:has-text("done: abc123")', { timeout: 2000 });
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    check(overflow <= 0, `${name}: page scrolls sideways by ${overflow} px`);
    await p.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });
    await ctx.close();
  }
  log('screenshots saved');

  // Restart the daemon on the same port and state dir; a push arrives while the page is away.
  const before = await page.evaluate(() => window.hookcast.last);
  await stop(d);
  await page.waitForSelector('#conn[data-state="reconnecting"]', { timeout: 3000 });
  log('daemon stopped; page says reconnecting');
  await page.screenshot({ path: path.join(ARTIFACTS, 'desktop-reconnecting.png') });
  d = await start('second', config({ public: PUBLIC }), d.addr);
  r = await webhook(d, { delivery: 'push-2', commit: 'def456' });
  check(r.status === 202, `push after restart answered ${r.status}: ${r.body}`);
  const stillAway = await page.evaluate(() => window.hookcast.state);
  check(stillAway === 'reconnecting', `the page reconnected before the push was sent (${stillAway})`);
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 5000 });
  log('daemon restarted; push sent while the page was still away; page connected again');
  await page.waitForSelector('#feed li:has-text("push-2") .b-accepted', { timeout: 3000 });
  await page.waitForSelector('.run .log:has-text("done: def456")', { timeout: 3000 });
  await page.waitForSelector('#run-2 summary .b-succeeded', { timeout: 3000 });
  // No gap: what the page received since `before` is exactly what the daemon's history holds.
  const topics = encodeURIComponent('$deliveries,$runs,$runs/*');
  const hist = await (await fetch(`${d.url}/poll?topics=${topics}&since=${before}&limit=1000&timeout=1`)).json();
  check(!hist.reset, 'history has a gap across the restart (journal not used?)');
  const want = hist.events.map((e) => e.id);
  const got = await until('the page to catch up', () =>
    page.evaluate((last) => window.hookcast.last >= last && window.hookcast, want[want.length - 1]), 3000);
  const seen = got.seen.filter((id) => id > before);
  check(JSON.stringify(seen) === JSON.stringify(want),
    `page saw ${seen.length} events after ${before}, history has ${want.length}: ${JSON.stringify(seen)} vs ${JSON.stringify(want)}`);
  check(got.resets === 0, `page got ${got.resets} reset(s)`);
  const run1 = await page.$eval('#run-1 .log', (e) => e.textContent);
  check(run1.includes('deploying abc123') && run1.includes('done: abc123'), 'run 1 output lost after the restart');
  log(`no gap: the page got all ${want.length} events published across the restart, in order, no reset`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'desktop-after-restart.png'), fullPage: true });

  // Login: without public rules even loopback needs an admin token.
  await desktop.close();
  await stop(d);
  const hash = crypto.createHash('sha256').update(TOKEN).digest('hex');
  d = await start('login', config({
    public: [],
    tokens: [{ name: 'admin', sha256: hash, scopes: ['admin', 'subscribe'], topics: ['$deliveries', '$runs', '$runs/**'] }],
  }), d.addr);
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const lp = await ctx.newPage();
  lp.on('pageerror', (e) => problems.push(`page error (login): ${e.message}`));
  let nav = await lp.goto(d.url + '/');
  check(nav.request().redirectedFrom()?.response() && (await nav.request().redirectedFrom().response()).status() === 303,
    'GET / without a token was not a 303');
  check(new URL(lp.url()).pathname === '/login', `GET / without a token ended at ${lp.url()}`);
  const api = await ctx.request.get(d.url + '/api/status');
  check(api.status() === 401, `/api/status without a token answered ${api.status()}`);
  await lp.fill('#token', 'wrong-token');
  [nav] = await Promise.all([lp.waitForNavigation(), lp.click('button[type=submit]')]);
  check(nav.status() === 401, `a wrong token answered ${nav.status()}`);
  await lp.waitForSelector('.error:has-text("Wrong token")', { timeout: 1000 });
  await lp.screenshot({ path: path.join(ARTIFACTS, 'login-error.png') });
  await lp.fill('#token', TOKEN);
  await Promise.all([lp.waitForURL(d.url + '/'), lp.click('button[type=submit]')]);
  await lp.waitForSelector('#conn[data-state="connected"]', { timeout: 5000 });
  await lp.waitForSelector('#feed li:has-text("push-2")', { timeout: 2000 });
  check(await lp.isVisible('#logout button'), 'no logout button after a token login');
  const [cookie] = (await ctx.cookies()).filter((c) => c.name === 'hookcast_token');
  check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict' && cookie.path === '/' && !cookie.secure,
    `cookie attributes: ${JSON.stringify(cookie)}`);
  log('login: redirect, 401 with a wrong token, cookie (HttpOnly, SameSite=Strict), page live');
  await Promise.all([lp.waitForURL(d.url + '/login'), lp.click('#logout button')]);
  check(!(await ctx.cookies()).some((c) => c.name === 'hookcast_token'), 'cookie still there after logout');
  await lp.goto(d.url + '/');
  check(new URL(lp.url()).pathname === '/login', 'page still served after logout');
  log('logout clears the cookie');

  check(problems.length === 0, `browser reported:\n${problems.join('\n')}`);
  await cleanup();
  log(`PASS (screenshots in ${path.relative(process.cwd(), ARTIFACTS) || ARTIFACTS})`);
}

main().catch((e) => die(e.stack || String(e)));
