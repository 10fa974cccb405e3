// Browser proof of the status page as a tool (issue 19): an admin session inspects a signed
// delivery field by field and a refused one that says why, copies a delivery as a curl command
// and as `hookcast send` (both run through /bin/sh and accepted, so their quoting is right),
// replays it and retries a run from the page and sees the new runs' output, and finds
// deliveries by filter and search; payloads carrying markup and escape sequences (headers,
// body, event names, run output) render as text and run nothing. Screenshots (desktop and
// phone, light and dark) go to $ARTIFACTS (default target/browser-artifacts/), and with
// DOCS_SCREENSHOT=path the README's picture is written there.
// Usage: node inspect.mjs [path/to/hookcast] (or $HOOKCAST_BIN).
import { chromium } from 'playwright-core';
import { CHROMIUM, ARGS } from './chromium.mjs';
import { start as startDaemon } from './daemon.mjs';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = path.resolve(process.argv[2] || process.env.HOOKCAST_BIN || path.join(ROOT, 'target/debug/hookcast'));
const ARTIFACTS = process.env.ARTIFACTS || path.join(ROOT, 'target/browser-artifacts');
const SECRET = 'inspect-test-secret';
const TOKEN = 'hc_browser_inspect_admin_token_0123456789';

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
for (const tool of ['/bin/sh', 'curl']) {
  try { execFileSync('sh', ['-c', `command -v ${tool}`]); } catch {
    console.error(`browser test FAILED: ${tool} is needed to run the copied commands (apt-get install curl)`);
    process.exit(1);
  }
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'hookcast-inspect-'));
const deploy = path.join(work, 'deploy.sh');
// Prints its argument (the commit message, which the sender chose) as it is.
fs.writeFileSync(deploy, `#!/bin/sh
printf 'deploying %s\\n' "$1"
printf '%s\\n' "$2"
sleep 0.2
echo "done: $1"
`, { mode: 0o755 });
// Waits until the test lets it go (or 20 s): a run that is still going when Cancel is clicked.
const slow = path.join(work, 'slow.sh');
const release = path.join(work, 'release');
fs.writeFileSync(slow, `#!/bin/sh
echo waiting
i=0; while [ ! -e ${release} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done
echo released
`, { mode: 0o755 });
const cfgFile = path.join(work, 'hookcast.json');
fs.writeFileSync(cfgFile, JSON.stringify({
  tokens: [{ name: 'admin', sha256: crypto.createHash('sha256').update(TOKEN).digest('hex'), scopes: ['admin', 'subscribe'],
    topics: ['$deliveries', '$runs', '$runs/**'] }],
  hooks: [
    { id: 'site', provider: 'github', secrets: [SECRET], events: ['push'], 'execute-command': deploy,
      'pass-arguments-to-command': [{ source: 'payload', name: 'head_commit.id' }, { source: 'payload', name: 'head_commit.message' }] },
    { id: 'form', 'response-message': 'ok' },
    { id: 'slow', 'execute-command': slow },
  ],
}));

let daemon, browser;
async function cleanup() {
  if (browser) await browser.close().catch(() => {});
  if (daemon && daemon.child.exitCode === null) daemon.child.kill('SIGKILL');
  fs.rmSync(work, { recursive: true, force: true });
}
function die(msg) {
  console.error(`browser test FAILED: ${msg}\n--- daemon log ---\n${daemon ? daemon.log.slice(-4000) : ''}`);
  cleanup().finally(() => process.exit(1));
}


const sign = (body, secret = SECRET) => 'sha256=' + crypto.createHmac('sha256', secret).update(body).digest('hex');
async function push(url, { delivery, body, secret, event = 'push', extra = {} }) {
  const r = await fetch(`${url}/hooks/site?src=test`, {
    method: 'POST', body,
    headers: { 'Content-Type': 'application/json', 'X-GitHub-Event': event, 'X-GitHub-Delivery': delivery,
      'X-Hub-Signature-256': sign(body, secret), ...extra },
  });
  return r.status;
}

// Text that a shell, a terminal or an HTML parser would all like to interpret.
const NASTY = `it's "quoted" $(touch ${work}/pwned) \`id\` <img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>`;
const ESC = '\x1b[31m<b>red</b>\x1b[0m \x1b]8;;javascript:window.__pwned=3\x07link\x1b]8;;\x07 \x1b]0;title\x07';

async function main() {
  daemon = await startDaemon(BIN, cfgFile);
  const url = daemon.url;
  log(`daemon on ${url}`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, headless: true });
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' });
  const page = await ctx.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('dialog', (d) => { problems.push(`a script opened a dialog: ${d.message()}`); d.dismiss(); });
  await page.goto(`${url}/login`);
  await page.fill('#token', TOKEN);
  await Promise.all([page.waitForURL(`${url}/`), page.click('button[type=submit]')]);
  await page.waitForSelector('#conn[data-state="connected"]', { timeout: 5000 });
  check(await page.evaluate(() => window.hookcast.admin && window.hookcast.csrf.length === 64), 'no admin session with a CSRF token');
  log('logged in: admin session with a CSRF token');

  // A signed push whose body a shell would mangle if the copied commands quoted it wrong.
  const body = JSON.stringify({
    ref: 'refs/heads/main', repository: { full_name: 'me/site' }, sender: { login: 'octo' },
    head_commit: { id: 'abc123', message: "fix: it's\nnot $(x) `y`", url: 'https://example.com/me/site/commit/abc123', author: { name: 'Ada' } },
    nested: { list: [1, 2, { deep: true }] },
  }, null, 1);
  check(await push(url, { delivery: 'push-1', body }) === 202, 'signed push not accepted');
  await page.waitForSelector('#feed li:has-text("push-1") .b-accepted', { timeout: 2000 });
  await page.waitForSelector('#run-1 .log:has-text("done: abc123")', { timeout: 3000 });
  check(await page.isVisible('#feed li:has-text("push-1") a[href="https://example.com/me/site/commit/abc123"]'), 'no commit link in the feed');
  check(await page.isVisible('#run-1 summary a[href="https://example.com/me/site/commit/abc123"]'), 'no commit link on the run');
  check(await page.isVisible('#deploys li:has-text("site") .b-succeeded'), 'overview: no last deploy');

  // Inspected field by field.
  await page.click('#feed li:has-text("push-1")');
  await page.waitForSelector('#insp[open] dl');
  const field = (name) => page.$eval(`#insp dt:text-is("${name}") + dd`, (e) => e.textContent);
  const want = {
    Delivery: 'push-1', Event: 'push', Verification: 'verified github signature matches secret 1 of 1',
    Rules: 'event "push" is one of the hook\'s events', Published: 'hooks/site #', Run: 'run #1 succeeded',
    Request: 'POST /hooks/site?src=test', From: '127.0.0.1', Source: 'me/site · main · abc123 · by Ada',
  };
  for (const [k, v] of Object.entries(want)) {
    const got = await field(k);
    check(k === 'Published' ? got.startsWith(v) : got === v, `inspector ${k}: ${JSON.stringify(got)}, wanted ${JSON.stringify(v)}`);
  }
  const header = (name) => page.$eval(`#insp .hdrs th:text-is("${name}") + td`, (e) => [e.textContent, e.className]);
  check(JSON.stringify(await header('x-hub-signature-256')) === '["[masked]","masked"]', 'signature not masked');
  check((await header('x-github-event'))[0] === 'push', 'event header');
  // The body: a tree (two levels open), raw, copy.
  await page.waitForSelector('#insp .body details[open] > summary:has-text("head_commit")');
  check(await page.isVisible('#insp .body .j-string:text-is("\\"abc123\\"")'), 'tree: no commit id leaf');
  check(!(await page.isVisible('#insp .body .j-boolean')), 'tree: third level open');
  await page.click('#insp .bar button:text-is("Raw")');
  check((await page.textContent('#insp .body pre')) === body, 'raw view differs from the body');
  await page.click('#insp button:text-is("Copy body")');
  check(await page.evaluate(() => window.hookcast.copied) === body, 'copied body differs');
  log('signed delivery inspected: verification, rules, published event, run, request, masked headers, tree/raw/copy');

  // Reveal (audited), then copy as curl and as hookcast send, and run both through sh.
  await page.click('#insp button:text-is("Reveal secret headers")');
  await page.waitForFunction((sig) => [...document.querySelectorAll('#insp .hdrs td')].some((t) => t.textContent === sig), sign(body));
  check(/revealed the secret headers of delivery push-1/.test(daemon.log), 'reveal not logged');
  await page.click('#insp button:text-is("Copy as curl")');
  const curl = await page.evaluate(() => window.hookcast.copied);
  const out = execFileSync('sh', ['-c', curl], { encoding: 'utf8' });
  check(/"duplicate":true/.test(out), `the copied curl command was not accepted as the same delivery: ${out}\n${curl}`);
  await page.click('#insp button:text-is("Copy as hookcast send")');
  const send = await page.evaluate(() => window.hookcast.copied);
  const sent = execFileSync('sh', ['-c', send], { encoding: 'utf8',
    env: { ...process.env, HOOKCAST_SECRET: SECRET, PATH: `${path.dirname(BIN)}:${process.env.PATH}` } });
  check(/^200 .*"duplicate":true/.test(sent.trim()), `hookcast send: ${sent}\n${send}`);
  check(!fs.existsSync(path.join(work, 'pwned')), 'a copied command ran $(…)');
  log('copied curl and hookcast send commands run through /bin/sh: the same signed bytes arrive (duplicate)');

  // Replay from the page: a new run whose output appears.
  await page.click('#insp button:text-is("Replay")');
  await page.waitForFunction(() => /replay: run #2/.test(window.hookcast.said), null, { timeout: 3000 });
  await page.click('#insp-x');
  await page.waitForSelector('#run-2 .log:has-text("done: abc123")', { timeout: 3000 });
  await page.waitForSelector('#run-2 summary .b-succeeded', { timeout: 3000 });
  log('replay from the page: run #2 ran, its output is on the page');
  // Retry from the run's own button.
  await page.click('#run-2 summary button:text-is("Retry")');
  await page.waitForSelector('#run-3 .log:has-text("done: abc123")', { timeout: 3000 });
  // A retry shows the commit of the delivery it repeats, through the run it retried.
  const retried = await page.$eval('#run-3 summary', (e) => e.textContent);
  const replayed = await page.$eval('#run-2 summary', (e) => e.textContent);
  check(/retry of #2/.test(retried), `run #3 does not say what it retries: ${retried}`);
  check(/abc123/.test(replayed) && /abc123/.test(retried), `run #3 lacks the commit run #2 shows: ${retried} / ${replayed}`);
  log('retry from the page: run #3 ran, and shows the commit of the delivery it repeats');
  // Cancel from the page: a run still going is stopped, and says so.
  check((await fetch(`${url}/hooks/slow`, { method: 'POST' })).ok, 'the slow hook refused');
  await page.waitForSelector('#run-4 .log:has-text("waiting")', { timeout: 3000 });
  await page.click('#run-4 summary button:text-is("Cancel")');
  await page.waitForSelector('#run-4 summary .b-cancelled', { timeout: 5000 });
  fs.writeFileSync(release, '');
  check(!(await page.$eval('#run-4 .log', (e) => e.textContent)).includes('released'), 'the cancelled run went on');
  log('cancel from the page: run #4 cancelled while it waited');

  // A refused one says why, and its request is there too.
  check(await push(url, { delivery: 'bad-1', body: '{"ref":"refs/heads/main"}', secret: 'guess' }) === 403, 'bad signature');
  await page.waitForSelector('#feed li:has-text("signature does not match")', { timeout: 2000 });
  await page.click('#feed li:has-text("signature does not match")');
  await page.waitForSelector('#insp[open] .hdrs');
  check(/^failed wrong signature: none of the hook's 1 secret matches it/.test(await field('Verification')), 'refusal not explained');
  check(!(await page.isVisible('#insp button:text-is("Replay")')), 'a refused delivery offers replay');
  await page.click('#insp-x');
  // A form body is decoded.
  await fetch(`${url}/hooks/form`, { method: 'POST', body: 'a=1&b=x+y%26z', headers: { 'Content-Type': 'application/x-www-form-urlencoded' } });
  await page.click('#feed li:has-text("form")');
  await page.waitForSelector('#insp[open] .bar button:text-is("Form")');
  await page.click('#insp .bar button:text-is("Form")');
  check(await page.isVisible('#insp .body th:text-is("b") + td:text-is("x y&z")'), 'form body not decoded');
  await page.click('#insp-x');
  log('refused delivery explained; form body decoded');

  // Markup and escape sequences in a header, the body, an event name and run output.
  const evil = JSON.stringify({ ref: 'refs/heads/main', head_commit: { id: 'evil', message: NASTY + ESC, author: { name: '<i>x</i>' } } });
  check(await push(url, { delivery: 'evil-1', body: evil, extra: { 'X-Evil': '<script>window.__pwned=4</script>' } }) === 202, 'evil push');
  check(await push(url, { delivery: 'evil-2', body: evil, event: '<svg/onload=window.__pwned=5>' }) === 202, 'evil event');
  await page.waitForSelector('#feed li:has-text("<svg/onload=window.__pwned=5>")', { timeout: 2000 });
  await page.waitForSelector('.run .log:has-text("done: evil")', { timeout: 3000 });
  await page.click('#feed li:has-text("evil-1")');
  await page.waitForSelector('#insp[open] .hdrs');
  check(await page.isVisible('#insp .hdrs td:text-is("<script>window.__pwned=4</script>")'), 'header not shown as text');
  await page.click('#insp .bar button:text-is("Raw")');
  const found = await page.evaluate(() => ({
    pwned: window.__pwned,
    tags: document.querySelectorAll('#feed img, #feed script, #feed svg, .log img, .log script, .log b, .log a, #insp img, #insp script, #insp svg, #insp i').length,
    log: [...document.querySelectorAll('.run .log')].map((l) => l.textContent).join('\n'),
    raw: document.querySelector('#insp .body pre').textContent,
  }));
  check(found.pwned === undefined, `a payload ran: window.__pwned = ${found.pwned}`);
  check(found.tags === 0, `${found.tags} element(s) made from payload markup`);
  check(found.log.includes('<img src=x onerror="window.__pwned=1"><script>') && found.log.includes('<b>red</b>'), 'run output markup not shown as text');
  check(!/[\x00-\x08\x0b-\x1f]/.test(found.log), 'escape sequences reached the page');
  check(found.raw === evil, 'evil body not shown as it is');
  await page.screenshot({ path: path.join(ARTIFACTS, 'inspect-markup.png') });
  await page.click('#insp-x');
  log('markup and escape sequences in headers, body, event names and run output render as text; nothing ran');

  // Finding things: filters and a body search.
  await page.selectOption('#f-out', 'rejected');
  check(await page.$$eval('#feed li:not([hidden])', (l) => l.length) === 1, 'outcome filter');
  await page.selectOption('#f-out', '');
  await page.selectOption('#f-hook', 'form');
  check(await page.$$eval('#feed li:not([hidden])', (l) => l.length) === 1, 'hook filter');
  await page.selectOption('#f-hook', '');
  await page.fill('#f-q', 'nested');
  // push-1's body: as accepted, replayed and twice as a duplicate (the copied commands).
  await page.waitForFunction(() => {
    const shown = [...document.querySelectorAll('#feed li:not([hidden])')];
    return shown.length === 4 && shown.every((li) => /push-1|duplicate/.test(li.textContent));
  }, null, { timeout: 3000 });
  await page.fill('#f-q', 'step-that-no-run-printed');
  await page.waitForFunction(() => [...document.querySelectorAll('.run')].every((r) => r.hidden), null, { timeout: 3000 });
  await page.fill('#f-q', '');
  check(await page.$$eval('#feed li[hidden]', (l) => l.length) === 0, 'filters not cleared');
  log('filters by hook and outcome; search over bodies (server) and run output (page)');

  // Screenshots with the inspector open: desktop and phone, light and dark.
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const cookies = await ctx.cookies();
  for (const [name, opts] of [
    ['inspect-desktop-light', { viewport: { width: 1280, height: 900 }, colorScheme: 'light' }],
    ['inspect-desktop-dark', { viewport: { width: 1280, height: 900 }, colorScheme: 'dark' }],
    ['inspect-phone-light', { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, colorScheme: 'light' }],
    ['inspect-phone-dark', { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, colorScheme: 'dark' }],
  ]) {
    const c = await browser.newContext(opts);
    await c.addCookies(cookies);
    const p = await c.newPage();
    p.on('pageerror', (e) => problems.push(`page error (${name}): ${e.message}`));
    await p.goto(url + '/');
    await p.waitForSelector('#conn[data-state="connected"]', { timeout: 5000 });
    await p.waitForSelector('#run-3 .log:has-text("done: abc123")', { timeout: 3000 });
    if (name.includes('phone')) {
      // Failures and runs come first on a phone.
      const order = await p.evaluate(() => ['over-s', 'runs-s', 'feed-s', 'hooks-s'].map((id) => document.getElementById(id).getBoundingClientRect().top));
      check(order.every((y, i) => i === 0 || y > order[i - 1]), `phone order: ${order}`);
      const overflow = await p.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      check(overflow <= 0, `${name}: page scrolls sideways by ${overflow} px`);
    }
    await p.screenshot({ path: path.join(ARTIFACTS, `${name}-page.png`), fullPage: !name.includes('desktop') });
    await p.click('#feed li:has-text("push-1")');
    await p.waitForSelector('#insp[open] .hdrs');
    await p.screenshot({ path: path.join(ARTIFACTS, `${name}.png`) });
    if (name === 'inspect-desktop-light' && process.env.DOCS_SCREENSHOT) {
      await p.screenshot({ path: process.env.DOCS_SCREENSHOT, clip: { x: 150, y: 0, width: 980, height: 900 } });
    }
    await c.close();
  }
  log('screenshots saved');
  check(problems.length === 0, `browser reported:\n${problems.join('\n')}`);
  await cleanup();
  log(`PASS (screenshots in ${path.relative(process.cwd(), ARTIFACTS) || ARTIFACTS})`);
}

main().catch((e) => die(e.stack || String(e)));
