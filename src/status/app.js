// hookcast status page. A snapshot from /api/status, then one EventSource on the system topics
// resumed from the snapshot's last_event_id: nothing is missed between the two, EventSource
// resends Last-Event-ID after a reconnect, and a `reset` (history gap) refetches the snapshot.
// Everything from the server goes into the DOM through textContent, never as markup.
'use strict';

const TOPICS = '$deliveries,$runs,$runs/*';
const KINDS = ['delivery', 'run', 'stdout', 'stderr', 'message'];
const MAX_FEED = 100, MAX_RUNS = 20, MAX_LINES = 1000, RETRY_MS = 2000;
const FINAL = ['succeeded', 'failed', 'timed_out', 'cancelled', 'interrupted'];
const STALE_MS = 10000; // a node writes its line every 2 s: one older than this is gone

// State, also read by the browser test (window.hookcast).
const S = window.hookcast = {
  state: 'connecting', last: 0, es: null, timer: 0, events: 0, resets: 0, seen: [],
  hooks: new Map(), runs: new Map(), up: null, samples: [], soon: 0, again: false, nodesAt: 0,
  admin: false, csrf: '', feed: [], byRun: new Map(), hits: null, copied: '', said: '', over: null,
};

const $ = (id) => document.getElementById(id);
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = String(text);
  return e;
}
function badge(kind, text) { return el('span', 'badge b-' + kind, text); }

function setConn(state) {
  S.state = state;
  document.body.dataset.state = state;
  const c = $('conn');
  c.dataset.state = state;
  c.textContent = state;
}

// --- formatting -----------------------------------------------------------------------------

function dur(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return ms < 10000 && ms % 1000 ? (ms / 1000).toFixed(1) + ' s' : s + ' s';
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  if (d) return d + 'd ' + h + 'h';
  if (h) return h + 'h ' + m + 'm';
  return m + 'm ' + (s % 60) + 's';
}
function bytes(n) {
  return n < 1024 ? n + ' B' : n < 1048576 ? (n / 1024).toFixed(1) + ' KiB' : (n / 1048576).toFixed(1) + ' MiB';
}
function clock(iso) {
  const t = new Date(iso);
  return isNaN(t) ? '' : t.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}
function ago(iso) {
  const s = Math.max(0, Math.round((Date.now() - new Date(iso)) / 1000));
  return isNaN(s) ? '' : s < 5 ? 'just now' : dur(s * 1000) + ' ago';
}
// A relative time ("2m 5s ago", kept fresh by tick) with the full date on hover.
function timeEl(iso) {
  const t = el('time', 'ago', ago(iso));
  t.dateTime = t.dataset.t = iso || '';
  t.title = iso ? new Date(iso).toLocaleString() + ' (' + iso + ')' : '';
  return t;
}
// Only http(s) links from a payload, never javascript: or data:.
function link(url, text) {
  if (typeof url !== 'string' || !/^https?:\/\//i.test(url)) return el('span', '', text);
  const a = el('a', '', text);
  a.href = url; a.target = '_blank'; a.rel = 'noopener noreferrer';
  return a;
}
// Repo, branch, commit (linked when the provider gave its URL) and author of a delivery.
// The run a retry repeats: its one delivery is named `retry-of-run-N`.
function retryOf(x) {
  const m = /^retry-of-run-(\d+)$/.exec((x.deliveries || [])[0] || '');
  return m ? Number(m[1]) : null;
}

// The delivery a run was for: its own, or for a retry (of a retry…) the first run's.
function deliveryOf(x) {
  for (let rec = x, id = x.id, i = 0; i < 16; i++) {
    const d = S.byRun.get(id);
    if (d || !rec) return d || null;
    const back = retryOf(rec);
    if (back == null) return null;
    id = back;
    rec = S.runs.has(id) ? S.runs.get(id).rec : null;
  }
  return null;
}

function source(d) {
  const s = d && d.summary, out = [];
  if (!s) return out;
  const c = s.head_commit || {};
  if (s.repo) out.push(el('b', '', s.repo));
  if (s.branch) out.push(el('code', '', s.branch));
  if (c.id) out.push(link(c.url, String(c.id).slice(0, 8)));
  if (c.author || s.sender) out.push(el('span', '', 'by ' + (c.author || s.sender)));
  return out.flatMap((e, i) => (i ? [' · ', e] : [e]));
}

// ANSI SGR colour codes become spans (bold, 8/16 foreground and background colours); every
// other escape sequence is dropped. A carriage return keeps what was written after it.
function ansi(parent, text) {
  const cr = text.lastIndexOf('\r', text.length - 2);
  if (cr >= 0) text = text.slice(cr + 1);
  text = text.replace(/\x1b\][^\x07\x1b]*(\x07|\x1b\\)/g, '');
  const re = /\x1b\[([0-9;]*)([@-~])/g;
  let st = { b: 0, fg: 0, bg: 0 }, i = 0, m;
  const put = (s) => {
    s = s.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '');
    if (!s) return;
    if (!st.b && !st.fg && !st.bg) return parent.append(s);
    const cls = [st.b ? 'a-b' : '', st.fg ? 'a-f' + st.fg : '', st.bg ? 'a-g' + st.bg : ''];
    parent.append(el('span', cls.join(' ').trim(), s));
  };
  while ((m = re.exec(text))) {
    put(text.slice(i, m.index));
    i = re.lastIndex;
    if (m[2] !== 'm') continue;
    const codes = m[1] === '' ? [0] : m[1].split(';').map(Number);
    for (let k = 0; k < codes.length; k++) {
      const c = codes[k];
      if (c === 0) st = { b: 0, fg: 0, bg: 0 };
      else if (c === 1) st.b = 1;
      else if (c === 22) st.b = 0;
      else if (c >= 30 && c <= 37) st.fg = c - 29;
      else if (c >= 90 && c <= 97) st.fg = c - 81;
      else if (c === 39) st.fg = 0;
      else if (c >= 40 && c <= 47) st.bg = c - 39;
      else if (c === 49) st.bg = 0;
      else if (c === 38 || c === 48) k += codes[k + 1] === 5 ? 2 : 4; // 256/true colour: dropped
    }
  }
  put(text.slice(i));
}

// --- the daemon's figures -------------------------------------------------------------------

function gauges(st) {
  $('version').textContent = 'v' + st.version;
  S.up = { ms: st.uptime_ms, at: performance.now() };
  $('uptime').textContent = dur(st.uptime_ms);
  // The event rate over the last minute of samples (since start until there are two).
  const sm = S.samples;
  if (sm.length && st.uptime_ms + 2000 < sm[sm.length - 1].ms) sm.length = 0; // the daemon restarted
  if (!sm.length || st.uptime_ms > sm[sm.length - 1].ms) sm.push({ ms: st.uptime_ms, n: st.events.published });
  while (sm.length > 2 && st.uptime_ms - sm[1].ms >= 60000) sm.shift();
  const a = sm[0], b = sm[sm.length - 1];
  const rate = b.ms - a.ms >= 1000 ? (b.n - a.n) * 1000 / (b.ms - a.ms) : st.events.per_sec_since_start;
  $('rate').textContent = rate < 10 ? rate.toFixed(2) : Math.round(rate);
  $('published').textContent = st.events.published.toLocaleString();
  for (const t of ['sse', 'ws', 'poll', 'http']) {
    const c = st.connections[t], b = $('c-' + t);
    b.textContent = c.active;
    b.title = c.total + ' since start';
  }
  const j = st.journal, h = st.history;
  $('foot').textContent = `history ${h.events} events in ${h.topics} topics (${bytes(h.bytes)}) · last event id ${st.last_event_id}`;
  $('journal').textContent = j ? `${bytes(j.disk_bytes)} in ${j.segments} segment${j.segments === 1 ? '' : 's'} · fsync ${j.fsync}`
    + ` · keeps ${bytes(j.max_bytes)}` + (j.max_age_secs ? ' or ' + dur(j.max_age_secs * 1000) : '')
    + (j.failed ? ` · FAILING: ${j.failed}` : '') : 'none (no state_dir): history in memory only';
  $('logout').hidden = st.auth !== 'token';
  S.admin = st.auth === 'token';
  S.csrf = st.csrf || '';
  document.body.classList.toggle('admin', S.admin);
  cluster(st.cluster);
  sources(st.sources || []);
  const w = $('warn');
  w.hidden = st.can_subscribe;
  w.textContent = st.can_subscribe ? '' : 'This token cannot subscribe to $deliveries, $runs and $runs/*: '
    + 'give it the subscribe scope on those topics for live updates.';
}

function tick() {
  if (S.up && S.state !== 'reconnecting') $('uptime').textContent = dur(S.up.ms + performance.now() - S.up.at);
  for (const t of document.querySelectorAll('.ago')) t.textContent = ago(t.dataset.t);
  for (const r of S.runs.values()) if (r.rec.state === 'running' && r.rec.started) r.el.textContent = dur(Math.max(0, Date.now() - new Date(r.rec.started)));
  if (S.state !== 'reconnecting') for (const t of document.querySelectorAll('#nodes .seen')) seen(t);
}

// --- the cluster ----------------------------------------------------------------------------

// Node lines are other nodes' writes to the shared Redis: untrusted, shown only as text, and a
// field of the wrong type shows as a dash.
const num = (x) => (typeof x === 'number' && isFinite(x) ? x : null);
const str = (x) => (typeof x === 'string' ? x : null);

function lag(ms) {
  if (ms == null) return '–';
  return ms < 10 ? ms.toFixed(1) + ' ms' : ms < 1000 ? Math.round(ms) + ' ms' : dur(Math.round(ms));
}

// "Last seen": the line's age at the last refresh plus the time since; a row turns stale here
// too when refreshes stop coming in.
function seen(t) {
  const tr = t.closest('tr');
  if (t.dataset.age === '') { t.textContent = 'never'; return; }
  const ms = Number(t.dataset.age) + performance.now() - S.nodesAt;
  t.textContent = ms < 1000 ? 'just now' : dur(Math.floor(ms / 1000) * 1000) + ' ago';
  if (ms > STALE_MS && !tr.classList.contains('stale')) {
    tr.classList.add('stale');
    tr.cells[0].append(' ', badge('gone', 'gone'));
  }
}

function nodeRow(n, self) {
  const tr = el('tr');
  const cell = (label, ...kids) => { const td = el('td'); td.dataset.l = label; td.append(...kids); tr.append(td); return td; };
  const name = cell('Node', el('b', '', n.node));
  if (n.node === self) {
    tr.classList.add('self');
    name.append(' ', badge('self', 'this node'));
  }
  cell('Address', el('code', '', str(n.addr) ?? '–'));
  cell('Version', str(n.version) ?? '–').classList.add('hide-sm');
  const s = n.subscribers || {};
  cell('Subscribers', ['SSE', 'WS', 'poll'].map((k) => k + ' ' + (num(s[k.toLowerCase()]) ?? '–')).join(' · '));
  cell('Redis', n.redis_up === true ? badge('ok', 'up') : n.redis_up === false ? badge('bad', 'down') : '–');
  cell('Role', n.runner === true ? badge('runner', 'runner')
    : el('span', 'muted', n.runs_commands === false ? 'runs no commands' : 'standby'));
  cell('Reader lag', lag(num(n.read_lag_ms))).classList.add('hide-sm');
  const t = el('span', 'seen');
  t.dataset.age = num(n.age_ms) ?? '';
  cell('Last seen', t);
  if (n.stale) {
    tr.classList.add('stale');
    name.append(' ', badge('gone', 'gone'));
  }
  return tr;
}

// The Cluster panel (only on a node of a cluster) and this node's Redis warning.
function cluster(c) {
  document.body.classList.toggle('clustered', !!c);
  $('cluster-s').hidden = !c;
  $('redis-warn').hidden = !c || c.redis_up;
  if (!c) return;
  const nodes = c.nodes;
  const stale = nodes.filter((n) => n.stale).length;
  const runners = nodes.filter((n) => !n.stale && n.runner === true).map((n) => n.node);
  const sum = $('cluster-sum');
  sum.replaceChildren(el('b', '', c.name), ' · this node ', el('b', '', c.node), ' · ',
    nodes.length + (nodes.length === 1 ? ' node' : ' nodes') + (stale ? ` (${stale} gone)` : ''), ' · runner ',
    runners.length ? el('b', '', runners.join(', ')) : el('span', 'muted', 'none'),
    ' · Redis ', el('code', '', c.redis), ' ', c.redis_up ? badge('ok', 'up') : badge('bad', 'unreachable'));
  if (c.nodes_total > nodes.length) sum.append(` · showing ${nodes.length} of ${c.nodes_total}`);
  S.nodesAt = performance.now();
  $('nodes').tBodies[0].replaceChildren(...nodes.map((n) => nodeRow(n, c.node)));
  $('no-nodes').hidden = nodes.length > 0;
  for (const t of document.querySelectorAll('#nodes .seen')) seen(t);
}

// The Sources panel: one row per log source (config `sources`), refreshed with the figures.
function sources(list) {
  $('sources-s').hidden = list.length === 0;
  $('sources').tBodies[0].replaceChildren(...list.map((s) => {
    const tr = el('tr');
    const cell = (label, ...kids) => { const td = el('td'); td.dataset.l = label; td.append(...kids); tr.append(td); return td; };
    cell('Source', el('b', '', s.name));
    cell('Topic', el('code', '', s.topic));
    const state = cell('State', badge(s.state === 'running' ? 'running' : s.state === 'backoff' ? 'timed_out' : 'nil', s.state));
    if (s.error) state.title = s.error;
    cell('Lines', s.lines.toLocaleString());
    cell('Lines/s', String(s.lines_per_sec));
    cell('Dropped', s.dropped.toLocaleString());
    cell('Restarts', String(s.restarts));
    cell('Last line', s.last_line ? timeEl(s.last_line) : el('span', 'muted', 'none yet'));
    return tr;
  }));
}

// --- hooks ----------------------------------------------------------------------------------

// Every delivery record says what its signature check found (`verification`).
const VERIFY = { ok: ['ok', 'verified'], failed: ['bad', 'failed'], not_checked: ['nil', 'not checked'], none: ['nil', 'unsigned'] };

function hookRow(h) {
  let r = S.hooks.get(h.id);
  if (!r) {
    r = { h, tr: el('tr') };
    S.hooks.set(h.id, r);
    $('hooks').tBodies[0].append(r.tr);
    $('no-hooks').hidden = true;
  }
  r.h = h;
  const tr = r.tr, d = h.last_delivery;
  tr.replaceChildren();
  const cell = (label, ...kids) => { const td = el('td'); td.dataset.l = label; td.append(...kids); tr.append(td); return td; };
  const name = cell('Hook', el('b', '', h.id));
  name.append(el('small', 'muted', ' ' + (h.provider || 'no provider') + (h.command ? ' · deploys' : '')));
  // Its history: the last deliveries' outcomes as dots, and the share accepted.
  const o = (h.recent && h.recent.outcomes) || [];
  const hist = el('span', 'hist');
  for (const x of o.slice(0, 20).reverse()) hist.append(el('i', 'b-' + x, ''));
  const n = o.filter((x) => x === 'accepted').length;
  hist.title = o.length ? `${n} of the last ${o.length} deliveries accepted` : 'no deliveries held';
  if (!d) {
    cell('Last delivery', el('span', 'muted', 'never'));
    tr.append(el('td', 'hide-sm'), el('td', 'hide-sm'), el('td', 'hide-sm'), el('td', 'hide-sm'), el('td', 'hide-sm'));
    return;
  }
  cell('Last delivery', timeEl(d.time));
  cell('History', hist, o.length ? el('small', 'muted', ` ${Math.round(n * 100 / o.length)}%`) : '');
  cell('Event', d.event || '–');
  cell('Outcome', badge(d.outcome, d.outcome), ' ', el('small', 'muted', d.status || ''));
  const v = VERIFY[d.verification] || ['nil', 'unknown'];
  const sig = cell('Signature', badge(v[0], v[1]));
  if (d.signature_failure) sig.append(' ', el('small', 'muted', d.signature_failure));
  cell('Message', el('span', 'msg', d.message || ''));
}

// --- deliveries -----------------------------------------------------------------------------

function delivery(d, time, live, eid) {
  const li = el('li', 'd');
  li.tabIndex = 0;
  const it = { d, time, eid, li, text: JSON.stringify(d).toLowerCase(),
    key: d.outcome === 'accepted' ? 'a\n' + d.hook + '\n' + d.delivery : 'e' + eid };
  S.feed.unshift(it);
  if (S.feed.length > MAX_FEED) S.feed.pop();
  if (d.run != null) S.byRun.set(d.run, d);
  li.onclick = (e) => { if (!e.target.closest('a')) inspect(it); };
  li.onkeydown = (e) => { if (e.key === 'Enter') inspect(it); };
  const top = el('div', 'row');
  top.append(timeEl(time), ' ', el('b', '', d.hook), ' ', el('span', 'ev', d.event || ''), ' ',
    badge(d.outcome, d.outcome), ' ', el('small', 'muted', d.status || ''));
  if (d.run != null) {
    const a = el('a', 'runlink', 'run #' + d.run);
    a.href = '#run-' + d.run;
    top.append(' ', a);
  }
  li.append(top);
  const sub = el('div', 'row muted');
  if (d.message) sub.append(el('span', 'msg', d.message), ' ');
  if (d.delivery) sub.append(el('code', '', d.delivery));
  if (d.source) sub.append(' ', el('small', '', 'from ' + d.source));
  li.append(sub);
  const src = source(d);
  if (src.length) { const r = el('div', 'row'); r.append(...src); li.append(r); }
  match(it);
  const feed = $('feed');
  feed.prepend(li);
  while (feed.children.length > MAX_FEED) feed.lastChild.remove();
  $('no-feed').hidden = true;
  if (live) {
    li.classList.add('new');
    const r = S.hooks.get(d.hook);
    const h = r ? r.h : { id: d.hook, provider: d.provider };
    const o = [d.outcome, ...((h.recent && h.recent.outcomes) || [])].slice(0, 20);
    hookRow({ ...h, recent: { outcomes: o }, last_delivery: { ...d, time } });
    if (d.outcome === 'rejected' && S.over) { S.over.fail.deliveries++; overview(); }
  }
}

// --- runs -----------------------------------------------------------------------------------

function runBox(id) {
  let r = S.runs.get(id);
  if (r) return r;
  const box = el('details', 'run');
  box.id = 'run-' + id;
  box.open = true;
  const sum = el('summary'), log = el('pre', 'log');
  log.tabIndex = 0;
  box.append(sum, log);
  r = { id, rec: { id, state: 'running' }, box, sum, log, lines: 0, el: el('span', 'el') };
  S.runs.set(id, r);
  $('runs').prepend(box);
  $('no-runs').hidden = true;
  // Older runs fold away; at most MAX_RUNS stay.
  const all = [...S.runs.values()].sort((a, b) => b.id - a.id);
  all.forEach((o, i) => {
    if (i >= MAX_RUNS) { o.box.remove(); S.runs.delete(o.id); } else if (i >= 3 && FINAL.includes(o.rec.state)) o.box.open = false;
  });
  return r;
}

function runState(rec, live) {
  const r = runBox(rec.id);
  r.rec = { ...r.rec, ...rec };
  const x = r.rec, s = r.sum;
  s.replaceChildren(badge(x.state, x.state.replace('_', ' ')), ' ', el('b', '', '#' + x.id), ' ', el('span', '', x.hook || ''));
  const info = [];
  if (x.deliveries && x.deliveries.length > 1) info.push(x.deliveries.length + ' deliveries');
  const retried = retryOf(x);
  if (retried != null) info.push('retry of #' + retried);
  if (x.duration_ms != null) info.push(dur(x.duration_ms));
  if (x.exit_code != null) info.push('exit ' + x.exit_code);
  if (x.signal != null) info.push('signal ' + x.signal);
  if (x.error) info.push(x.error);
  s.append(' ', el('small', 'muted', info.join(' · ')), ' ');
  if (x.state === 'running') s.append(r.el);
  const d = deliveryOf(x);
  if (d) s.append(' ', ...source(d));
  if (S.admin) {
    const b = (what, path) => {
      const k = el('button', 'act', what);
      k.onclick = (e) => { e.preventDefault(); act(`/api/runs/${x.id}/${path}`, what + ' run #' + x.id); };
      return k;
    };
    s.append(' ', FINAL.includes(x.state) ? b('Retry', 'retry') : b('Cancel', 'cancel'));
  }
  const t = timeEl(x.started || x.queued);
  t.classList.add('muted', 'right');
  s.append(t);
  if (live && S.over) {
    S.over.last.set(x.hook, x);
    if (['failed', 'timed_out', 'interrupted'].includes(x.state)) S.over.fail.runs++;
    overview();
  }
}

function runLine(d) {
  const r = runBox(d.run);
  const log = r.log;
  const stick = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
  const ln = el('span', d.stream === 'stderr' ? 'ln err' : 'ln');
  ansi(ln, d.line);
  if (d.cut) ln.append(el('span', 'muted', ' …'));
  ln.append('\n');
  log.append(ln);
  if (++r.lines > MAX_LINES) { log.firstChild.remove(); r.lines--; }
  if (stick) log.scrollTop = log.scrollHeight;
}

// --- overview -------------------------------------------------------------------------------

// Is everything fine? Failures in the last 24 h and each deploying hook's last run.
function overview() {
  const o = S.over, f = o.fail;
  const bad = f.deliveries + f.runs;
  $('fails').replaceChildren(badge(bad ? 'bad' : 'ok', bad ? bad + ' failure' + (bad === 1 ? '' : 's') : 'no failures'),
    el('small', 'muted', ` in 24 h: ${f.deliveries} deliver${f.deliveries === 1 ? 'y' : 'ies'} refused, ${f.runs} run${f.runs === 1 ? '' : 's'} failed`));
  $('deploys').replaceChildren(...[...o.last.values()].map((x) => {
    const li = el('li', '', '');
    const a = el('a', '', '#' + x.id);
    a.href = '#run-' + x.id;
    li.append(el('b', '', x.hook), ' ', badge(x.state, x.state.replace('_', ' ')), ' ', a, ' ', timeEl(x.finished || x.started || x.queued));
    return li;
  }));
  $('no-deploys').hidden = o.last.size > 0;
}

// --- finding things -------------------------------------------------------------------------

// Filters and search run over what the page holds (the feed, the runs' output); a search of 3
// characters or more also asks the server which kept request bodies hold it (admin only).
function match(it) {
  const h = $('f-hook').value, o = $('f-out').value, e = $('f-ev').value.trim().toLowerCase();
  const q = $('f-q').value.trim().toLowerCase(), d = it.d;
  it.li.hidden = !!(h && d.hook !== h || o && d.outcome !== o || e && !(d.event || '').toLowerCase().includes(e)
    || q && !it.text.includes(q) && !(S.hits && S.hits.has(it.key)));
}
function filter() {
  S.feed.forEach(match);
  const h = $('f-hook').value, q = $('f-q').value.trim().toLowerCase();
  for (const r of S.runs.values()) r.box.hidden = !!(h && r.rec.hook !== h || q && !r.box.textContent.toLowerCase().includes(q));
}
let searchT = 0;
function search() {
  clearTimeout(searchT);
  const q = $('f-q').value.trim();
  S.hits = null;
  filter();
  if (q.length < 3 || !S.admin) return;
  searchT = setTimeout(async () => {
    const r = await fetch('/api/deliveries?q=' + encodeURIComponent(q), { credentials: 'same-origin' });
    if (!r.ok || q !== $('f-q').value.trim()) return;
    S.hits = new Set((await r.json()).matches.map((m) => (m.event_id ? 'e' + m.event_id : 'a\n' + m.hook + '\n' + m.delivery)));
    filter();
  }, 250);
}

// --- the inspector and the actions ----------------------------------------------------------

function say(text) { S.said = text; const m = $('insp-msg'); m.textContent = text; $('toast').textContent = text; }

// A POST from the page: the cookie's CSRF token with it (fetched again once if the daemon
// restarted and no longer knows it).
async function act(path, what, again) {
  const r = await fetch(path, { method: 'POST', credentials: 'same-origin', headers: S.csrf ? { 'X-CSRF-Token': S.csrf } : {} });
  let j = {};
  try { j = await r.json(); } catch { /* not JSON */ }
  if (r.status === 403 && !again) { await refresh(); return act(path, what, true); }
  say(r.ok ? `${what}: ${j.run != null ? 'run #' + j.run : 'done'}` : `${what} refused: ${j.error || r.status}`);
  return r.ok;
}

async function copy(text, what) {
  S.copied = text;
  try { await navigator.clipboard.writeText(text); } catch {
    const t = el('textarea');
    t.value = text;
    document.body.append(t);
    t.select();
    document.execCommand('copy');
    t.remove();
  }
  say(what + ' copied');
}

// POSIX shell quoting: everything inside single quotes is literal but the quote itself.
const sh = (s) => "'" + String(s).replace(/'/g, "'\\''") + "'";
const SKIP = ['host', 'content-length', 'connection', 'transfer-encoding', 'expect'];
function curl(v) {
  const r = v.request, b = r.body, bin = b.encoding !== 'text' || b.truncated || b.text.includes('\0');
  let out = bin ? `# the body is binary or longer than shown: save it first from ${location.origin}${b.raw}\n` : '';
  if (!v.revealed && r.headers.some((h) => h[2])) out += '# secret headers are masked: reveal them first, or re-sign with hookcast send\n';
  out += 'curl -sS' + (r.method === 'POST' ? '' : ' -X ' + sh(r.method)) + ' ' + sh(location.origin + r.path + (r.query ? '?' + r.query : ''));
  for (const [k, val, secret] of r.headers) if (!SKIP.includes(k) && (v.revealed || !secret)) out += ' \\\n  -H ' + sh(k + ': ' + val);
  return out + ' \\\n  --data-binary ' + (bin ? '@body.bin' : sh(b.text));
}
function send(v) {
  const r = v.request, b = r.body, ct = r.content_type || 'application/json';
  if (!v.provider) return '# this hook has no provider: nothing to sign, use the curl command\n' + curl(v);
  const args = ['hookcast send', sh(location.origin + r.path + (r.query ? '?' + r.query : '')), '--provider', sh(v.provider)];
  if (v.event) args.push('--event', sh(v.event));
  if (v.delivery) args.push('--id', sh(v.delivery));
  args.push('--content-type', sh(ct));
  const head = '# signs with the secret in $HOOKCAST_SECRET (or add --secret @FILE)\n';
  if (b.encoding !== 'text' || b.truncated) return head + args.join(' ') + ' body.bin';
  return head + 'printf %s ' + sh(b.text) + ' | ' + args.join(' ') + ' -';
}

// A JSON value as a tree: objects and arrays fold (the first two levels open); at most 2000
// nodes are drawn.
function tree(v, key, depth, n) {
  if (++n.c > 2000) return el('div', 'muted', '…');
  const k = key == null ? [] : [el('span', 'k', key), ': '];
  if (v && typeof v === 'object') {
    const d = el('details'), ks = Object.keys(v), s = el('summary');
    d.open = depth < 2;
    s.append(...k, el('span', 'muted', Array.isArray(v) ? `[${ks.length}]` : `{${ks.length}}`));
    d.append(s, ...ks.map((x) => tree(v[x], x, depth + 1, n)));
    return d;
  }
  const row = el('div');
  row.append(...k, el('span', 'j-' + (v === null ? 'null' : typeof v), JSON.stringify(v)));
  return row;
}

function dl(rows) {
  const d = el('dl');
  for (const [k, ...v] of rows) {
    if (v[0] == null || v[0] === '') continue;
    const dd = el('dd');
    dd.append(...v);
    d.append(el('dt', '', k), dd);
  }
  return d;
}

async function inspect(it, reveal) {
  const box = $('insp-b'), dlg = $('insp');
  if (!dlg.open) dlg.showModal();
  say('');
  let v = { ...it.d, time: it.time, event_id: it.eid, request: null }, note = '';
  if (!S.admin) note = 'The request itself is shown to an admin session: log in with an admin token.';
  else {
    const r = await fetch(`/api/deliveries/${it.eid}${reveal ? '?reveal=1' : ''}`, { credentials: 'same-origin', cache: 'no-store' });
    if (r.ok) v = await r.json(); else note = 'Not found: history no longer holds this delivery.';
  }
  S.shown = v;
  const ver = VERIFY[v.verification] || ['nil', '?'];
  const a = el('a', '', 'run #' + v.run);
  a.href = '#run-' + v.run;
  a.onclick = () => dlg.close();
  const run = v.run != null ? [a, ' ', v.run_record ? badge(v.run_record.state, v.run_record.state) : ''] : [null];
  const head = el('h3');
  head.append(el('b', '', v.hook), ' ', badge(v.outcome, v.outcome), ' ', el('small', 'muted', String(v.status || '')), ' ', timeEl(v.time));
  const parts = [head, dl([
    ['Delivery', v.delivery ? el('code', '', v.delivery) : null],
    ['Event', v.event],
    ['Verification', badge(ver[0], ver[1]), ' ', v.verification_detail || ''],
    ['Rules', v.rule],
    ['Message', v.message],
    ['Published', v.published ? el('code', '', `${v.published.topic} #${v.published.id}`) : null],
    ['Run', ...run],
    ['Source', ...(source(v).length ? source(v) : [null])],
  ])];
  if (note) parts.push(el('p', 'muted', note));
  const q = v.request;
  if (q) {
    parts.push(el('h4', '', 'Request'), dl([
      ['Request', el('code', '', `${q.method} ${q.path}${q.query ? '?' + q.query : ''}`)],
      ['From', q.source + (q.via ? ` (through proxy ${q.via})` : '')],
    ]));
    const t = el('table', 'hdrs'), tb = el('tbody');
    for (const [k, val, secret] of q.headers) {
      const tr = el('tr');
      tr.append(el('th', '', k), el('td', secret && !v.revealed ? 'masked' : '', val));
      tb.append(tr);
    }
    t.append(tb);
    parts.push(el('h4', '', `Headers (${q.headers.length})`), t);
    const b = q.body, bar = el('div', 'bar'), view = el('div', 'body');
    parts.push(el('h4', '', `Body (${bytes(b.bytes)})`), bar, view);
    const tab = (name, fn) => { const k = el('button', '', name); k.onclick = () => { view.replaceChildren(fn()); }; bar.append(k); return k; };
    const raw = () => el('pre', 'raw', b.encoding === 'text' ? b.text : '(binary, base64) ' + b.text);
    let json;
    try { json = b.encoding === 'text' && !b.truncated && b.text ? JSON.parse(b.text) : undefined; } catch { /* not JSON */ }
    const form = /x-www-form-urlencoded/i.test(q.content_type || '') && b.encoding === 'text';
    if (json !== undefined) tab('Tree', () => tree(json, null, 0, { c: 0 }));
    if (form) tab('Form', () => { const f = el('table', 'hdrs'); for (const [k, x] of new URLSearchParams(b.text)) { const tr = el('tr'); tr.append(el('th', '', k), el('td', '', x)); f.append(tr); } return f; });
    tab('Raw', raw);
    bar.append(Object.assign(el('button', '', 'Copy body'), { onclick: () => copy(b.text, 'body') }));
    if (b.truncated || b.cut_when_kept) bar.append(' ', el('small', 'muted', b.truncated ? `first ${bytes(b.text.length)} shown` : 'cut when kept'), ' ', (() => { const a = el('a', '', 'raw bytes'); a.href = b.raw; return a; })());
    bar.firstChild.click();
    const acts = el('div', 'bar');
    const btn = (name, fn) => acts.append(Object.assign(el('button', 'act', name), { onclick: fn }), ' ');
    if (v.replayable) btn('Replay', () => act(`/api/deliveries/${encodeURIComponent(v.hook)}/${encodeURIComponent(v.delivery)}/replay`, 'replay'));
    btn('Copy as curl', () => copy(curl(v), 'curl command'));
    btn('Copy as hookcast send', () => copy(send(v), 'hookcast send command'));
    if (!v.revealed && q.headers.some((h) => h[2])) btn('Reveal secret headers', () => inspect(it, true));
    parts.splice(1, 0, acts);
  }
  box.replaceChildren(...parts);
}

// --- snapshot and stream --------------------------------------------------------------------

function snapshot(st) {
  S.hooks.clear();
  $('hooks').tBodies[0].replaceChildren();
  S.runs.clear();
  $('runs').replaceChildren();
  $('feed').replaceChildren();
  S.feed = [];
  S.byRun.clear();
  $('f-hook').replaceChildren(el('option', '', 'all hooks'), ...st.hooks.map((h) => el('option', '', h.id)));
  $('f-hook').firstChild.value = '';
  S.over = { fail: { ...st.failures_24h }, last: new Map(st.hooks.filter((h) => h.last_run).map((h) => [h.id, h.last_run])) };
  $('no-hooks').hidden = st.hooks.length > 0;
  $('no-runs').hidden = st.runs.length > 0;
  $('no-feed').hidden = st.deliveries.length > 0;
  gauges(st);
  for (const h of st.hooks) hookRow(h);
  for (const d of st.deliveries.slice().reverse()) if (d.run != null) S.byRun.set(d.run, d);
  for (const rec of st.runs.slice().reverse()) {
    runState(rec);
    for (const line of rec.output || []) runLine(line);
  }
  for (const d of st.deliveries.slice().reverse()) delivery(d, d.time, false, d.event_id);
  overview();
  S.last = st.last_event_id;
  tick();
}

function onEvent(e) {
  let m;
  try { m = JSON.parse(e.data); } catch { return; }
  if (!(m.id > S.last)) return; // already shown (a resumed stream starts after S.last)
  S.last = m.id;
  S.events++;
  S.seen.push(m.id);
  if (S.seen.length > 1000) S.seen.shift();
  soon();
  const d = m.data;
  if (m.topic === '$deliveries') delivery(d, m.time, true, m.id);
  else if (m.topic === '$runs') runState(d, true);
  else if (m.topic.startsWith('$runs/')) runLine(d);
}

function open(since) {
  if (S.es) S.es.close();
  clearTimeout(S.timer);
  const es = new EventSource('/events?topics=' + encodeURIComponent(TOPICS) + '&format=json&lastEventId=' + since);
  S.es = es;
  es.onopen = () => { setConn('connected'); refresh(); };
  es.onerror = () => {
    if (S.es !== es) return;
    setConn('reconnecting');
    // A network error makes EventSource retry by itself (with Last-Event-ID); an HTTP error
    // closes it for good: check our access, then resume from the last event we showed.
    if (es.readyState === EventSource.CLOSED) S.timer = setTimeout(() => refresh().then(() => open(S.last)), RETRY_MS);
  };
  for (const k of KINDS) es.addEventListener(k, onEvent);
  es.addEventListener('reset', () => { S.resets++; es.close(); load(); });
}

async function fetchStatus(brief) {
  const r = await fetch(brief ? '/api/status?brief=1' : '/api/status', { cache: 'no-store', credentials: 'same-origin' });
  if (r.status === 401 || r.status === 403) { location.href = '/login'; throw new Error('login'); }
  if (!r.ok) throw new Error('status ' + r.status);
  return r.json();
}

async function load() {
  clearTimeout(S.timer);
  try {
    const st = await fetchStatus();
    snapshot(st);
    open(st.last_event_id);
  } catch {
    setConn('reconnecting');
    S.timer = setTimeout(load, RETRY_MS);
  }
}

// The figures follow activity: refreshed at once, then at most every 250 ms while it lasts.
function soon() {
  if (S.soon) { S.again = true; return; }
  refresh();
  S.soon = setTimeout(() => { S.soon = 0; if (S.again) { S.again = false; soon(); } }, 250);
}

async function refresh() {
  try { gauges(await fetchStatus(true)); } catch { /* the stream's state says it all */ }
}

for (const id of ['f-hook', 'f-out', 'f-ev']) $(id).oninput = filter;
$('f-q').oninput = search;
$('insp-x').onclick = () => $('insp').close();
load();
setInterval(tick, 1000);
setInterval(() => { if (S.state === 'connected') refresh(); }, 5000);
