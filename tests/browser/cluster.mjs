// Browser proof of the status page's Cluster panel (issue 15): a real redis-server, three real
// hookcast nodes sharing it, the system's headless Chromium driven by playwright-core. Node a's
// page lists a, b and c (a marked, one runner); 20 nodes (fake lines written straight into the
// shared table, one with a name made of markup) keep the page usable, the markup stays text
// and a line nobody renews shows as gone; when Redis dies the page says so.
// Usage: node cluster.mjs [path/to/hookcast] (or $HOOKCAST_BIN). Needs redis-server on $PATH.
// Screenshots go to $ARTIFACTS (default target/browser-artifacts/).
import { chromium } from 'playwright-core';
import { CHROMIUM, ARGS } from './chromium.mjs';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.resolve(process.argv[2] || process.env.HOOKCAST_BIN || path.join(ROOT, 'target/debug/hookcast'));
const ARTIFACTS = process.env.ARTIFACTS || path.join(ROOT, 'target/browser-artifacts');
const CLUSTER = 'browser';
const EVIL = '<img src=x onerror="window.pwned=1">';

const t0 = Date.now();
const log = (...a) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)}s]`, ...a);
function check(cond, msg) { if (!cond) throw new Error(msg); }

let redisPath = '';
try { redisPath = execFileSync('sh', ['-c', 'command -v redis-server'], { encoding: 'utf8' }).trim(); } catch { /* below */ }
for (const [what, p] of [['Chromium', CHROMIUM], ['the hookcast binary', BIN], ['redis-server', redisPath]]) {
  if (!p || !fs.existsSync(p)) {
    console.error(`browser test FAILED: ${what} not found${p ? ` at ${p}` : ''}` +
      (what === 'the hookcast binary' ? ' (cargo build first)' : ` (apt-get install ${what === 'Chromium' ? 'chromium' : 'redis-server'})`));
    process.exit(1);
  }
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hookcast-cluster-'));
const procs = [];
let browser;
async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
  fs.rmSync(work, { recursive: true, force: true });
}
function die(msg) {
  console.error(`browser test FAILED: ${msg}`);
  for (const p of procs) if (p.log) console.error(`--- log (${p.name}) ---\n${p.log.slice(-3000)}`);
  cleanup().finally(() => process.exit(1));
}

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

// One command in RESP on a fresh connection; resolves with the raw reply.
function redis(port, args) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    s.on('error', reject);
    s.on('data', (b) => { got += b; if (got.endsWith('\r\n')) { s.end(); resolve(got); } });
    s.write(`*${args.length}\r\n` + args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join(''));
  });
}

async function until(what, fn, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => false);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startRedis() {
  const port = await freePort();
  const child = spawn(redisPath, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--dir', work, '--protected-mode', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const p = { name: 'redis', child, log: '' };
  child.stdout.on('data', (s) => { p.log += s; });
  procs.push(p);
  await until('redis-server to answer PING', async () => (await redis(port, ['PING'])) === '+PONG\r\n', 10000);
  return { ...p, port };
}

function startNode(name, redisPort) {
  const file = path.join(work, `${name}.json`);
  fs.writeFileSync(file, JSON.stringify({
    public: [{ topics: ['$deliveries', '$runs', '$runs/**'], scopes: ['subscribe'], from: ['127.0.0.0/8', '::1'] }],
    cluster: { redis: `redis://127.0.0.1:${redisPort}/0`, name: CLUSTER, node: name },
  }));
  const child = spawn(BIN, ['serve', '--config', file, '--listen', '127.0.0.1:0'],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, HOOKCAST_LOG: 'info' } });
  const d = { name, child, log: '' };
  procs.push(d);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name}: no "listening on" line in 10 s`)), 10000);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (s) => {
      d.log += s;
      const m = d.log.match(/listening on http:\/\/(\S+)/);
      if (m && !d.url) { d.url = `http://${m[1]}`; d.addr = m[1]; clearTimeout(timer); resolve(d); }
    });
    child.on('exit', (code, sig) => { clearTimeout(timer); reject(new Error(`${name} exited (${code ?? sig})`)); });
  });
}

// The rows of the node table as the page shows them.
const rows = (page) => page.$$eval('#nodes tbody tr', (trs) => trs.map((tr) => ({
  name: tr.cells[0].querySelector('b').textContent,
  addr: tr.cells[1].textContent,
  self: tr.classList.contains('self'),
  runner: !!tr.querySelector('.b-runner'),
  stale: tr.classList.contains('stale'),
  seen: tr.cells[7].textContent,
})));

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const r = await startRedis();
  const nodes = [];
  for (const name of ['a', 'b', 'c']) nodes.push(await startNode(name, r.port));
  log(`redis on ${r.port}; nodes ${nodes.map((d) => `${d.name} ${d.addr}`).join(', ')}`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 860 }, colorScheme: 'light' });
  const page = await ctx.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console: ${m.text()}`); });

  await page.goto(nodes[0].url + '/');
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 5000 });
  await page.waitForSelector('#cluster-s', { state: 'visible', timeout: 5000 });
  // Generous: lines are written every 2 s and the page refreshes its figures every 5 s.
  const want = nodes.map((d) => `${d.name} ${d.addr}`).join(', ');
  const got = await until('the three nodes in the Cluster panel', async () => {
    const rs = await rows(page);
    return rs.map((x) => `${x.name} ${x.addr}`).join(', ') === want && rs.some((x) => x.runner) && rs;
  }, 15000);
  check(got.filter((x) => x.self).map((x) => x.name).join() === 'a', `this node marked: ${JSON.stringify(got)}`);
  check(got.filter((x) => x.runner).length === 1, `one runner: ${JSON.stringify(got)}`);
  check(got.every((x) => !x.stale && /ago|just now/.test(x.seen)), `all fresh: ${JSON.stringify(got)}`);
  const sum = await page.textContent('#cluster-sum');
  check(sum.includes(CLUSTER) && sum.includes('3 nodes') && sum.includes('runner'), `summary: ${sum}`);
  check(await page.isHidden('#redis-warn'), 'the Redis warning shows while Redis is up');
  log(`Cluster panel: ${got.map((x) => x.name + (x.self ? ' (this node)' : '') + (x.runner ? ' (runner)' : '')).join(', ')}`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'cluster-3.png'), fullPage: true });

  // 20 nodes: 17 more lines in the shared table, one named with markup, two not renewed for 30 s.
  const key = `hookcast:{${CLUSTER}}:nodes`;
  const now = Date.now();
  const fakes = [];
  for (let i = 1; i <= 16; i++) fakes.push([`z${String(i).padStart(2, '0')}`, now - (i <= 2 ? 30000 : 0)]);
  fakes.push([EVIL, now]);
  for (const [name, seen] of fakes) {
    const line = { node: name, addr: `10.0.0.${fakes.length}:9000`, version: '0.0.0', seen_ms: seen, uptime_ms: 1,
      subscribers: { sse: 1, ws: 2, poll: 3 }, redis_up: true, runner: false, runs_commands: true, read_lag_ms: 0.5 };
    check(/^:\d/.test(await redis(r.port, ['HSET', key, name, JSON.stringify(line)])), 'HSET refused');
  }
  const twenty = await until('20 nodes in the panel', async () => { const rs = await rows(page); return rs.length === 20 && rs; }, 15000);
  const names = twenty.map((x) => x.name);
  check(JSON.stringify(names) === JSON.stringify([...names].sort()), `rows are not by name: ${names}`);
  check(names.includes(EVIL), 'the markup-named node is not shown by its name');
  check(await page.evaluate(() => !window.pwned && !document.querySelector('#nodes img')), 'a node name became markup');
  const gone = twenty.filter((x) => x.stale).map((x) => x.name);
  check(gone.join() === 'z01,z02', `stale rows: ${gone}`);
  check(await page.isVisible('#nodes tr.stale .b-gone'), 'a stale row is not marked gone');
  const box = await page.$eval('#cluster-s', (e) => e.getBoundingClientRect().height);
  check(box < 640, `the Cluster panel is ${box} px high with 20 nodes`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  check(overflow <= 0, `page scrolls sideways by ${overflow} px`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'cluster-20.png'), fullPage: true });
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, colorScheme: 'dark' });
  const pp = await phone.newPage();
  pp.on('pageerror', (e) => problems.push(`page error (phone): ${e.message}`));
  await pp.goto(nodes[0].url + '/');
  await until('20 nodes on the phone', async () => (await rows(pp)).length === 20, 5000);
  const phoneOverflow = await pp.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  check(phoneOverflow <= 0, `phone: page scrolls sideways by ${phoneOverflow} px`);
  await pp.screenshot({ path: path.join(ARTIFACTS, 'cluster-20-phone-dark.png'), fullPage: true });
  await phone.close();
  log(`20 nodes: by name, markup shown as text, ${gone.length} gone, panel ${Math.round(box)} px high, no sideways scroll`);

  // Redis dies: the page says what that means; its stream to node a stays up.
  r.child.kill('SIGKILL');
  await page.waitForSelector('#redis-warn', { state: 'visible', timeout: 15000 });
  const warn = await page.textContent('#redis-warn');
  check(warn.includes('503') && warn.includes('subscribers stay connected'), `warning: ${warn}`);
  check(await page.evaluate(() => window.hookcast.state) === 'connected', 'the page lost its stream');
  await page.screenshot({ path: path.join(ARTIFACTS, 'cluster-redis-down.png') });
  log('Redis killed: the page warns, its stream stays connected');

  check(problems.length === 0, `browser reported:\n${problems.join('\n')}`);
  await cleanup();
  log('PASS');
}

main().catch((e) => die(e.stack || String(e)));
