// Browser proof for issue 12, item 4 (CSRF on cookie-authenticated admin POSTs): the login cookie
// is SameSite=Strict, but a page on another port of the same host is the same *site*, so the
// browser sends the cookie with that page's form POSTs. Those must be refused (403) while the
// status page's own requests keep working. The real daemon, the system's headless Chromium
// driven by playwright-core. Usage: node csrf.mjs [path/to/hookcast] (or $HOOKCAST_BIN).
import { chromium } from 'playwright-core';
import { CHROMIUM, ARGS } from './chromium.mjs';
import { start as startDaemon } from './daemon.mjs';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.resolve(process.argv[2] || process.env.HOOKCAST_BIN || path.join(ROOT, 'target/debug/hookcast'));
const TOKEN = 'hc_browser_csrf_admin_token_0123456789';

const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
function check(cond, msg) { if (!cond) throw new Error(msg); }

for (const [what, p] of [['Chromium', CHROMIUM], ['the hookcast binary', BIN]]) {
  if (!fs.existsSync(p)) {
    console.error(`browser test FAILED: ${what} not found at ${p}` +
      (what === 'Chromium' ? ' (apt-get install chromium; .ci/run installs it)' : ' (cargo build first)'));
    process.exit(1);
  }
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hookcast-csrf-'));
const sha256 = (await import('node:crypto')).createHash('sha256').update(TOKEN).digest('hex');
const cfgFile = path.join(work, 'hookcast.json');
fs.writeFileSync(cfgFile, JSON.stringify({
  tokens: [{ name: 'me', sha256, scopes: ['admin', 'subscribe'], topics: ['$deliveries', '$runs', '$runs/**'] }],
  hooks: [{ id: 'deploy', 'execute-command': 'true' }],
}));

let daemon, browser, attacker;
async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  if (attacker) attacker.close();
  if (daemon && daemon.child.exitCode === null) daemon.child.kill('SIGKILL');
  fs.rmSync(work, { recursive: true, force: true });
}
function die(msg) {
  console.error(`browser test FAILED: ${msg}\n--- daemon log ---\n${daemon ? daemon.log.slice(-4000) : ''}`);
  cleanup().finally(() => process.exit(1));
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

const bearer = { Authorization: `Bearer ${TOKEN}` };
async function runs(url) {
  return (await (await fetch(`${url}/api/runs`, { headers: bearer })).json()).runs;
}

async function main() {
  daemon = await startDaemon(BIN, cfgFile);
  const url = daemon.url;
  log(`daemon on ${url}`);
  // A finished run and a stored delivery to aim at.
  const r = await fetch(`${url}/hooks/deploy`, { method: 'POST', body: '{}', headers: { 'X-GitHub-Delivery': 'csrf-1' } });
  check(r.status === 200, `hook answered ${r.status}`);
  const run = (await until('a finished run', async () => (await runs(url)).find((x) => x.state === 'succeeded'), 5000)).id;
  const delivery = (await (await fetch(`${url}/api/deliveries`, { headers: bearer })).json()).deliveries[0].delivery;

  // The attacker: another port on the same host (same site, other origin), auto-submitting forms.
  // Every admin action the page has (issue 19 added cancel from the page), and a ticket.
  const targets = {
    retry: `${url}/api/runs/${run}/retry`, cancel: `${url}/api/runs/${run}/cancel`,
    replay: `${url}/api/deliveries/${encodeURIComponent(delivery)}/replay`, ticket: `${url}/api/ticket`,
  };
  attacker = http.createServer((req, res) => {
    const name = req.url.slice(1);
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(`<!doctype html><form id="f" method="post" action="${targets[name]}"><input name="x" value="1"></form>`);
  });
  await new Promise((r) => attacker.listen(0, '127.0.0.1', r));
  const evil = `http://127.0.0.1:${attacker.address().port}`;
  log(`attacker page on ${evil}`);

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  // Log in through the real form: the cookie is the browser's own.
  await page.goto(`${url}/login`);
  await page.fill('#token', TOKEN);
  await Promise.all([page.waitForURL(`${url}/`), page.click('button[type=submit]')]);
  const cookie = (await ctx.cookies()).find((c) => c.name === 'hookcast_token');
  check(cookie && cookie.sameSite === 'Strict', `login cookie: ${JSON.stringify(cookie)}`);
  log('logged in (SameSite=Strict cookie set)');

  const before = (await runs(url)).length;
  for (const name of Object.keys(targets)) {
    const p = await ctx.newPage();
    await p.goto(`${evil}/${name}`);
    const [resp] = await Promise.all([p.waitForNavigation(), p.evaluate(() => document.getElementById('f').submit())]);
    const sent = await resp.request().allHeaders();
    check(/hookcast_token=/.test(sent.cookie || ''), `the browser did not send the cookie with the ${name} form (so this proves nothing): ${JSON.stringify(sent)}`);
    check(resp.status() === 403, `${name} from another port of the same host answered ${resp.status()}: ${await resp.text()}`);
    log(`${name} form from ${evil}: cookie sent (Origin ${sent.origin}, Sec-Fetch-Site ${sent['sec-fetch-site']}), answered 403`);
    await p.close();
  }
  // Nothing was retried or replayed (a replay starts a run too; both are recorded before the
  // answer is sent, so there is nothing to wait for).
  const after = await runs(url);
  check(after.length === before, `runs went from ${before} to ${after.length}`);

  // The page's own origin keeps working with the same cookie and the CSRF token /api/status
  // gives the page (issue 19: without the token, even the page's own origin is refused).
  const own = await page.evaluate(async (path) => {
    const bare = (await fetch(path, { method: 'POST', credentials: 'same-origin' })).status;
    const { csrf } = await (await fetch('/api/status?brief=1', { credentials: 'same-origin' })).json();
    const post = await fetch(path, { method: 'POST', credentials: 'same-origin', headers: { 'X-CSRF-Token': csrf } });
    return [bare, post.status];
  }, `/api/runs/${run}/retry`);
  check(own[0] === 403, `retry from the page's own origin without the CSRF token answered ${own[0]}`);
  check(own[1] === 202, `retry from the page's own origin answered ${own[1]}`);
  await until('the same-origin retry run', async () => (await runs(url)).length === before + 1, 5000);
  log('retry from the page itself (same origin): 202');

  await cleanup();
  log('PASS');
}

main().catch((e) => die(e.stack || String(e)));
