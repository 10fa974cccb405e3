// Chromium's own EventSource against the real daemon: a stream that connects, receives no event
// and loses its connection must reconnect with the position the daemon sent at its start
// (`id:` alone, WHATWG "dispatch the event" step 1), so an event published while it was away
// arrives. A TCP relay in this script cuts the connection and holds the reconnect until the event
// is published. Usage: node eventsource.mjs [path/to/hookcast] (or $HOOKCAST_BIN).
import { chromium } from 'playwright-core';
import { CHROMIUM, ARGS } from './chromium.mjs';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.resolve(process.argv[2] || process.env.HOOKCAST_BIN || path.join(ROOT, 'target/debug/hookcast'));

for (const [what, p] of [['Chromium', CHROMIUM], ['the hookcast binary', BIN]]) {
  if (!fs.existsSync(p)) {
    console.error(`eventsource browser test FAILED: ${what} not found at ${p}`);
    process.exit(1);
  }
}

let daemon;
let browser;
let daemonLog = '';
async function fail(msg) {
  console.error(`eventsource browser test FAILED: ${msg}\n--- daemon log ---\n${daemonLog.slice(-3000)}`);
  await cleanup();
  process.exit(1);
}
async function cleanup() {
  if (browser) await browser.close().catch(() => {});
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

// A relay whose connections can be cut, and whose new connections can be held back.
function relay(target) {
  const sockets = new Set();
  let held = false;
  const waiting = [];
  const pipe = (client) => {
    const upstream = net.connect(target.port, target.host);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream).pipe(client);
  };
  const server = net.createServer((client) => (held ? waiting.push(client) : pipe(client)));
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({
    port: server.address().port,
    hold() { held = true; },
    cut() { for (const s of sockets) s.destroy(); },
    release() { held = false; for (const c of waiting.splice(0)) pipe(c); },
    close() { server.close(); },
  })));
}

try {
  const config = { public: [{ topics: ['**'], scopes: ['subscribe', 'publish'] }], sse: { retry_ms: 200 } };
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hookcast-es-browser-'));
  const configFile = path.join(work, 'hookcast.json');
  fs.writeFileSync(configFile, JSON.stringify(config));
  daemon = spawn(BIN, ['serve', '--config', configFile, '--listen', '127.0.0.1:0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  daemon.stderr.on('data', (b) => { daemonLog += b; });
  const addr = await until('the daemon to listen', () => (daemonLog.match(/listening on http:\/\/([0-9.:]+)/) || [])[1]);
  const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))];
  const publish = async (topic, data) => {
    const r = await fetch(`http://${addr}/publish/${topic}`, { method: 'POST', body: data });
    if (r.status !== 202) throw new Error(`publish answered ${r.status}`);
    return (await r.json()).id;
  };
  const r = await relay({ host, port });

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${r.port}/healthz`);
  await page.evaluate(() => {
    window.opens = 0;
    window.got = [];
    const es = new EventSource('/events?topics=quiet');
    es.onopen = () => { window.opens += 1; };
    es.onmessage = (e) => window.got.push({ data: e.data, id: e.lastEventId });
  });
  await until('the first open', () => page.evaluate(() => window.opens === 1));
  await publish('elsewhere', 'not for this stream');
  r.hold();
  r.cut();
  const missed = await publish('quiet', 'while-away');
  r.release();
  await until('the reconnect', () => page.evaluate(() => window.opens >= 2));
  const got = await until('the missed event', async () => {
    const g = await page.evaluate(() => window.got);
    return g.length ? g : null;
  });
  if (got[0].data !== 'while-away' || got[0].id !== String(missed)) {
    await fail(`expected the event published while away (id ${missed}), got ${JSON.stringify(got)}`);
  }
  const live = await publish('quiet', 'live');
  await until('the live event', () => page.evaluate(() => window.got.length === 2));
  const all = await page.evaluate(() => window.got);
  if (all[1].data !== 'live' || all[1].id !== String(live)) await fail(`bad live event: ${JSON.stringify(all)}`);
  r.close();
  await cleanup();
  console.log('eventsource browser test: ok (an idle stream resumed across a cut; nothing lost)');
} catch (e) {
  await fail(e.stack || String(e));
}
