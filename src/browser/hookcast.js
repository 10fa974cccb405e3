/**
 * hookcast.js — the browser client of hookcast (served by the daemon at /hookcast.js as a classic
 * script setting `window.hookcast`, and at /hookcast.mjs as an ES module). No dependency, no build.
 *
 *   const hc = hookcast.connect('https://push.example', { topics: ['deploys/**'], state: true });
 *   hc.on('event', (e) => console.log(e.id, e.topic, e.data));
 *   hc.on('reset', () => refetchEverything());
 *
 * One stream per browser (tabs share it through a BroadcastChannel, the leader chosen with Web
 * Locks), over WebSocket, else SSE (read with fetch), else long polling; the last event id
 * survives reconnects, transport switches and reloads (sessionStorage), so no event is lost or
 * delivered twice. See the README's "Use it from your own page".
 *
 * @typedef {{id: number, topic: string, event: string, time: string, data: any}} HookcastEvent
 *   An event as published (`data`: JSON, or a string for text events).
 * @typedef {{reason: string, last_event_id: number, resume_from: number}} HookcastReset
 *   History no longer held everything after `last_event_id`: refetch your state.
 * @typedef {{state: 'connecting'|'connected'|'reconnecting'|'closed', transport: 'ws'|'sse'|'poll'|null,
 *   leader: boolean, error?: string}} HookcastStatus
 * @typedef {{type?: string|string[], where?: Object<string, string|number|boolean|null>, q?: string}} HookcastFilter
 * @typedef {Object} HookcastOptions
 * @property {string[]} topics Topic patterns (`a/b`, `builds/*`, `logs/**`).
 * @property {string|function(): Promise<string>} [token] A token or JWT, or a function giving a
 *   fresh one (called again after a 401 or an expiry).
 * @property {function(): Promise<string>} [ticket] Gives a one-time ticket (POST /api/ticket),
 *   called before each WebSocket or SSE attempt; long polling takes `token` or cookies only.
 * @property {Array<'ws'|'sse'|'poll'>} [transports] Allowed transports, best first (default all).
 * @property {HookcastFilter} [filter] Server-side filter (README "Filters").
 * @property {boolean} [state] Retained state first on every (re)connect, as 'state' events.
 * @property {{initial?: number, max?: number}} [backoff] Full-jitter backoff in ms (500, 30000).
 * @property {boolean} [shared] One connection for all tabs of this origin (default true).
 * @property {RequestCredentials} [credentials] fetch credentials for SSE and polling
 *   ('same-origin'; 'include' sends cookies to another origin).
 * @property {number} [openTimeout] ms for a first message before a transport counts as failed (5000).
 * @property {number} [idle] ms without a byte before a stream counts as dead (45000; above the
 *   daemon's sse.keepalive_ms).
 * @property {number} [retryUp] ms before a transport that failed is tried again (300000).
 */
var hookcast = (function () {
  'use strict';
  var ORDER = ['ws', 'sse', 'poll'];
  var PFX = 'hookcast:';

  function load(k) {
    try { return JSON.parse(sessionStorage.getItem(k)); } catch (e) { return null; }
  }
  function save(k, v) {
    try { sessionStorage.setItem(k, JSON.stringify(v)); } catch (e) { /* storage off: memory only */ }
  }
  // 401 means a fresh credential; 5xx, 408, 429 and network errors a retry; other 4xx the transport.
  function verdict(status) {
    return status === 401 ? 'auth' : status >= 500 || status === 408 || status === 429 ? 'down' : 'fail';
  }

  /**
   * Opens a stream. `url` is the daemon's base URL ('' or '/' for this origin).
   * @param {string} url
   * @param {HookcastOptions} opts
   * @returns {Connection}
   */
  function connect(url, opts) {
    return new Connection(url, opts || {});
  }

  /** A stream that reconnects, resumes and shares itself between tabs until `close()`. */
  class Connection {
    constructor(url, o) {
      var u = new URL(url || '/', location.href);
      this._base = u.origin + u.pathname.replace(/\/+$/, '');
      this._o = o;
      this._topics = [].concat(o.topics || []);
      this._filter = o.filter || null;
      this._list = ORDER.filter(function (t) { return !o.transports || o.transports.indexOf(t) >= 0; });
      this._fns = {};
      this._idKey = PFX + 'id:' + this._base + '|' + this._topics.join(',');
      this._trKey = PFX + 'tr:' + this._base;
      /** The id of the last event delivered (0: none yet). */
      this.lastEventId = Number(load(this._idKey)) || 0;
      /** @type {HookcastStatus} */
      this.status = { state: 'connecting', transport: null, leader: false };
      this._gen = this._lgen = 0;
      var self = this;
      this._onWake = function () {
        if (document.visibilityState !== 'hidden' && self._waker) self._waker();
      };
      addEventListener('online', this._onWake);
      document.addEventListener('visibilitychange', this._onWake);
      // After the caller's on(...) calls.
      Promise.resolve().then(function () { self._start(); });
    }

    /**
     * Listens: 'event' (HookcastEvent), 'state' (HookcastEvent, a retained state), 'reset'
     * (HookcastReset), 'status' (HookcastStatus), 'error' ({op, error}: a refused op).
     * @param {'event'|'state'|'reset'|'status'|'error'} name
     * @param {function(*): void} fn
     */
    on(name, fn) {
      (this._fns[name] = this._fns[name] || []).push(fn);
      return this;
    }

    /** Stops listening. */
    off(name, fn) {
      this._fns[name] = (this._fns[name] || []).filter(function (f) { return f !== fn; });
      return this;
    }

    /**
     * Adds topic patterns; settles once they are in force (WebSocket: the ack; otherwise the
     * new connection's first message), rejects when the daemon refuses the op.
     * @param {string|string[]} topics
     * @returns {Promise<void>}
     */
    subscribe(topics) {
      var add = [].concat(topics).filter(function (t) { return this._topics.indexOf(t) < 0; }, this);
      if (!add.length) return Promise.resolve();
      this._topics = this._topics.concat(add);
      return this._change({ op: 'subscribe', topics: add, state: !!this._o.state });
    }

    /** Removes topic patterns (settles like subscribe). @param {string|string[]} topics @returns {Promise<void>} */
    unsubscribe(topics) {
      var drop = [].concat(topics);
      this._topics = this._topics.filter(function (t) { return drop.indexOf(t) < 0; });
      return this._change({ op: 'unsubscribe', topics: drop });
    }

    /**
     * Sets, replaces or (null) clears the filter (settles like subscribe). Over SSE and long
     * polling this reconnects from the last event id: events since then that the new filter
     * passes are replayed.
     * @param {HookcastFilter|null} filter
     * @returns {Promise<void>}
     */
    setFilter(filter) {
      this._filter = filter || null;
      return this._change({ op: 'filter', filter: this._filter });
    }

    /** Ends the stream for good (another tab takes over a shared one). */
    close() {
      if (this._closed) return;
      this._closed = true;
      this._stop();
      removeEventListener('online', this._onWake);
      document.removeEventListener('visibilitychange', this._onWake);
      this._status('closed', null, this._fatal);
    }

    _emit(name, v) {
      (this._fns[name] || []).forEach(function (f) {
        try { f(v); } catch (e) { setTimeout(function () { throw e; }); }
      });
    }

    _status(state, transport, error) {
      var s = this.status;
      if (s.state === state && s.transport === transport && s.leader === !!this._leading && !error) return;
      this.status = { state: state, transport: transport, leader: !!this._leading };
      if (error) this.status.error = error;
      if (this._leading) this._post({ k: 'status', state: state, transport: transport });
      this._emit('status', this.status);
    }

    // WebSocket ops when one is open; otherwise (and for a shared stream, whose group is this
    // subscription) a reconnect with the new parameters, resuming from the last id.
    _change(op) {
      var ws = this._sock;
      var self = this;
      var done = new Promise(function (resolve, reject) {
        (self._waiting = self._waiting || []).push({ op: op.op, resolve: resolve, reject: reject });
      });
      if (this._bc) {
        this._stop();
        this._start();
      } else if (ws && ws.readyState === 1) {
        ws.send(JSON.stringify(op));
        // Ops are answered in order: the states come between the ack and the pong.
        if (op.state) { this._stating = 1; ws.send('{"op":"ping"}'); }
      } else if (this._abort) {
        this._abort('restart');
      }
      return done;
    }

    // The changes waiting are in force (a new connection: all of them), or `op`'s ack or
    // error came (the oldest such change).
    _settle(op, error) {
      var w = this._waiting || [];
      if (!op) {
        this._waiting = [];
        w.forEach(function (x) { x.resolve(); });
        return;
      }
      var i = w.findIndex(function (x) { return x.op === op; });
      if (i < 0) return;
      var x = w.splice(i, 1)[0];
      if (error) x.reject(new Error(error));
      else x.resolve();
    }

    // --- tabs: one leader holds the connection, the others listen on the channel ---

    _start() {
      if (this._closed) return;
      var gen = ++this._gen;
      var self = this;
      var key = PFX + this._base + '|' + this._topics.join(',') + '|' + JSON.stringify(this._filter) + '|' + !!this._o.state;
      if (this._o.shared === false || typeof BroadcastChannel !== 'function') {
        this._lead();
        return;
      }
      var bc = this._bc = new BroadcastChannel(key);
      bc.onmessage = function (m) { if (gen === self._gen) self._heard(m.data); };
      this._status('connecting', null);
      bc.postMessage({ k: 'join', last: this.lastEventId });
      if (navigator.locks) {
        var ac = this._lockAc = new AbortController();
        navigator.locks.request(key, { signal: ac.signal }, function () {
          if (gen !== self._gen) return null;
          return new Promise(function (release) { self._unlock = release; self._lead(); });
        }).catch(function () { /* aborted: this subscription changed */ });
      } else {
        this._elect(gen);
      }
    }

    _stop() {
      this._gen++;
      this._unlead();
      if (this._lockAc) this._lockAc.abort();
      if (this._unlock) this._unlock();
      if (this._bc) {
        if (this._me) this._bc.postMessage({ k: 'bye', from: this._me });
        this._bc.close();
      }
      clearInterval(this._beat);
      this._bc = this._lockAc = this._unlock = this._me = null;
    }

    // Without Web Locks (not a secure context: plain http:// to a LAN name), tabs beat on the
    // channel every second; when no leader has beaten for 3 s, the lowest id heard takes over,
    // and of two leaders the higher id steps down. Two leaders for a moment cost one extra
    // connection, nothing else: every tab drops ids it has already delivered.
    _elect(gen) {
      var self = this;
      var me = this._me = Math.random();
      var peers = this._peers = {};
      var since = Date.now();
      var tick = function () {
        if (gen !== self._gen) return;
        self._bc.postMessage({ k: 'beat', from: me, lead: !!self._leading });
        var now = Date.now();
        var lowest = true;
        var leader = false;
        for (var id in peers) {
          var p = peers[id];
          if (now - p.t > 3000) { delete peers[id]; continue; }
          if (Number(id) < me) lowest = false;
          if (p.lead && (!self._leading || Number(id) < me)) leader = true;
        }
        if (self._leading && leader) self._unlead();
        else if (!self._leading && !leader && lowest && now - since > 1500) self._lead();
      };
      this._beat = setInterval(tick, 1000);
      tick();
      addEventListener('pagehide', function () { if (self._me === me) self._bc.postMessage({ k: 'bye', from: me }); });
    }

    _heard(m) {
      if (m.k === 'beat' && this._peers) this._peers[m.from] = { t: Date.now(), lead: m.lead };
      else if (m.k === 'bye' && this._peers) delete this._peers[m.from];
      else if (m.k === 'join') this._joined(m.last);
      else if (this._leading) return;
      else if (m.k === 'status') {
        this._status(m.state, m.transport);
        if (m.state === 'connected') this._settle();
      } else this._take(m);
    }

    // A tab joined: it may have missed events (a reload) and wants the states. Joins close
    // together become one reconnect from the oldest cursor; the replay is deduplicated by each tab.
    _joined(last) {
      if (!this._leading) return;
      var self = this;
      this._joinFrom = Math.min(this._joinFrom || Infinity, last || Infinity);
      clearTimeout(this._joinT);
      this._joinT = setTimeout(function () {
        var from = self._joinFrom;
        self._joinFrom = null;
        self._post({ k: 'status', state: self.status.state, transport: self.status.transport });
        if (from < self.lastEventId || self._o.state) {
          self._from = Math.min(from, self.lastEventId) || self.lastEventId;
          if (self._abort) self._abort('restart');
        } else if (self.lastEventId) {
          self._post({ k: 'cursor', id: self.lastEventId });
        }
      }, 50);
    }

    _post(m) {
      if (this._bc && this._leading) this._bc.postMessage(m);
    }

    // What the leader's connection says goes to this tab and to every other one.
    _feed(m) {
      this._take(m);
      this._post(m);
    }

    _take(m) {
      var last = this.lastEventId;
      if (m.k === 'ev') {
        if (m.e.id > last) {
          this._setLast(m.e.id);
          this._emit('event', m.e);
        }
      } else if (m.k === 'state') {
        this._emit('state', m.e);
      } else if (m.k === 'cursor') {
        if (m.id > last) this._setLast(m.id);
      } else if (m.k === 'reset') {
        var r = m.r;
        // A gap before resume_from touches only tabs behind it; ids that went back, every tab.
        if (r.resume_from < r.last_event_id || last < r.resume_from) {
          this._setLast(r.resume_from);
          this._emit('reset', r);
        }
      }
    }

    _setLast(id) {
      this.lastEventId = id;
      save(this._idKey, id);
    }

    // --- the connection (leader only) ---

    _lead() {
      this._leading = true;
      this._run(++this._lgen);
    }

    _unlead() {
      this._leading = false;
      this._lgen++;
      if (this._abort) this._abort('stop');
      if (this._waker) this._waker();
      clearTimeout(this._upT);
      clearTimeout(this._joinT);
    }

    async _run(lgen) {
      var self = this;
      var live = function () { return lgen === self._lgen && !self._closed; };
      var tries = 0;
      var authFails = 0;
      var failed = [];
      var retried = false;
      var i = this._startAt();
      while (live()) {
        var name = this._list[i];
        var res;
        this._round = { i: i, failed: failed };
        try {
          var cred = await this._cred(name);
          if (!live()) return;
          if (this.status.state !== 'connected' || this.status.transport !== name) {
            this._status(this._opened ? 'reconnecting' : 'connecting', name);
          }
          res = await this['_' + name](cred);
        } catch (e) {
          res = { why: 'down' };
        }
        this._abort = null;
        if (!live()) return;
        if (res.opened) {
          tries = authFails = 0;
          retried = false;
        }
        failed = this._round.failed;
        var why = res.why;
        if (why === 'restart' || why === 'auth' || why === 'down') failed = [];
        if (why === 'restart') {
          i = this._startAt();
          continue;
        }
        this._status(this._opened ? 'reconnecting' : 'connecting', null);
        if (why === 'auth') {
          this._stale = true;
          if (++authFails > 1) await this._backoff(tries++);
          i = this._startAt();
        } else if (why === 'fail' && name === 'ws' && this._o.ticket && !retried) {
          // A WebSocket cannot show why it was refused: once more with a fresh ticket.
          retried = true;
        } else if (why === 'fail' && i + 1 < this._list.length) {
          failed = failed.concat(i);
          i++;
        } else if (why === 'fail' && res.status >= 400) {
          this._fatal = 'refused with ' + res.status;
          this.close();
          return;
        } else {
          await this._backoff(tries++);
          i = this._startAt();
        }
      }
    }

    // Where a round starts: the best transport that has not failed lately.
    _startAt() {
      var tr = load(this._trKey) || {};
      var up = this._o.retryUp || 300000;
      var now = Date.now();
      for (var i = 0; i < this._list.length; i++) {
        var n = this._list[i];
        if (!(tr[n] && now - (tr[n + '@'] || 0) < up)) return i;
      }
      return 0;
    }

    // A transport opened after the ones above it failed: those failures count (a failure
    // followed by no success was the server or the network, not the transport).
    _noteOpen(i, failed) {
      var tr = load(this._trKey) || {};
      var self = this;
      failed.forEach(function (j) {
        var n = self._list[j];
        tr[n] = (tr[n] || 0) + 1;
        tr[n + '@'] = Date.now();
      });
      tr[this._list[i]] = 0;
      save(this._trKey, tr);
      this._opened = true;
      clearTimeout(this._upT);
      if (i > 0) {
        this._upT = setTimeout(function () { if (self._abort) self._abort('restart'); }, this._o.retryUp || 300000);
      }
    }

    _backoff(n) {
      var b = this._o.backoff || {};
      var ms = Math.random() * Math.min(b.max || 30000, (b.initial || 500) * Math.pow(2, n));
      var self = this;
      return new Promise(function (resolve) {
        var t = setTimeout(done, ms);
        function done() { clearTimeout(t); self._waker = null; resolve(); }
        self._waker = done;
      });
    }

    async _cred(name) {
      var o = this._o;
      if (o.ticket && name !== 'poll') return { ticket: await o.ticket() };
      if (typeof o.token === 'function') {
        if (this._stale || this._tok == null) {
          this._tok = await o.token();
          this._stale = false;
        }
        return { token: this._tok };
      }
      return { token: o.token };
    }

    // The resume point of a new connection: the last id, or older once, for a joining tab.
    _since() {
      var f = this._from;
      this._from = null;
      return f && f < this.lastEventId ? f : this.lastEventId;
    }

    _url(path, extra) {
      var p = new URLSearchParams();
      var f = this._filter || {};
      p.set('topics', this._topics.join(','));
      if (f.type) p.set('type', [].concat(f.type).join(','));
      for (var k in f.where || {}) {
        var v = f.where[k];
        p.append('where', k + ':' + (typeof v === 'string' ? v : JSON.stringify(v)));
      }
      if (f.q) p.set('q', f.q);
      for (k in extra) if (extra[k]) p.set(k, extra[k]);
      return this._base + path + '?' + p;
    }

    // Calls `dead` when nothing arrives for `idle` ms; returns the function to call on each arrival.
    _watch(dead, quiet) {
      var idle = this._o.idle || 45000;
      var t, q;
      var self = this;
      this._unwatch = function () { clearTimeout(t); clearTimeout(q); };
      return function () {
        self._unwatch();
        t = setTimeout(dead, idle);
        if (quiet) q = setTimeout(quiet, idle / 2);
      };
    }

    _ws(cred) {
      var self = this;
      return new Promise(function (resolve) {
        var since = self._since();
        var hello = false;
        var done = false;
        var url = self._url('/ws', {
          hello: 1, lastEventId: since, state: self._o.state && 1, ticket: cred.ticket, token: cred.token,
        }).replace(/^http/, 'ws');
        var ws;
        try { ws = new WebSocket(url, 'hookcast.v1'); } catch (e) { resolve({ why: 'fail' }); return; }
        // A JWT from the token callback is renewed in place (the auth op) before it expires.
        var renewT;
        var renew = function (tok) {
          var exp = 0;
          try { exp = JSON.parse(atob(tok.split('.')[1].replace(/-/g, '+').replace(/_/g, '/'))).exp; } catch (e) { /* not a JWT */ }
          if (!exp || typeof self._o.token !== 'function' || cred.ticket) return;
          var left = exp * 1000 - Date.now();
          renewT = setTimeout(async function () {
            try {
              var fresh = self._tok = await self._o.token();
              if (done) return;
              ws.send(JSON.stringify({ op: 'auth', token: fresh }));
              renew(fresh);
            } catch (e) { /* the session ends at expiry (4001) and reconnects */ }
          }, Math.max(0, left - Math.min(30000, left / 5)));
        };
        var end = self._abort = function (why) {
          if (done) return;
          done = true;
          clearTimeout(first);
          clearTimeout(renewT);
          self._unwatch();
          ws.onclose = ws.onmessage = null;
          self._sock = null;
          try { ws.close(); } catch (e) { /* already closing */ }
          resolve({ opened: hello, why: why });
        };
        var first = setTimeout(function () { end('fail'); }, self._o.openTimeout || 5000);
        var alive = self._watch(function () { end('down'); }, function () { ws.send('{"op":"ping"}'); });
        self._sock = ws;
        self._stating = 0;
        ws.onmessage = function (m) {
          var v;
          try { v = JSON.parse(m.data); } catch (e) { return; }
          alive();
          if (v.type === 'hello') {
            hello = true;
            clearTimeout(first);
            renew(cred.token);
            self._connected('ws');
            self._feed({ k: 'cursor', id: v.last_event_id });
          } else if (v.type === 'reset') {
            self._feed({ k: 'reset', r: { reason: 'history_gap', last_event_id: v.last_event_id, resume_from: v.resume_from } });
          } else if (v.type === 'ack') {
            if (v.op === 'subscribe' && self._stating === 1) self._stating = 2;
            self._settle(v.op);
          } else if (v.type === 'pong') {
            self._stating = 0;
          } else if (v.type === 'error') {
            if (v.op) self._settle(v.op, v.error);
            self._emit('error', v);
          } else if (v.type == null && v.id != null) {
            self._feed({ k: hello && self._stating !== 2 ? 'ev' : 'state', e: v });
          }
        };
        // Before the hello: refused (a proxy, the origin, a credential) or unreachable.
        ws.onclose = function (e) { end(!hello ? 'fail' : e.code === 4001 || e.code === 1008 ? 'auth' : 'down'); };
      });
    }

    _connected(name) {
      this._noteOpen(this._round.i, this._round.failed);
      this._round.failed = [];
      this._status('connected', name);
      this._settle();
    }

    async _sse(cred) {
      var self = this;
      var ac = new AbortController();
      var why = null;
      var opened = false;
      var end = this._abort = function (w) { why = why || w; ac.abort(); };
      var first = setTimeout(function () { end('fail'); }, this._o.openTimeout || 5000);
      var alive = this._watch(function () { end('down'); });
      var url = this._url('/events', { format: 'json', lastEventId: this._since(), state: this._o.state && 1, ticket: cred.ticket });
      try {
        var r = await fetch(url, {
          headers: cred.token ? { Authorization: 'Bearer ' + cred.token } : {},
          signal: ac.signal, credentials: this._o.credentials || 'same-origin', cache: 'no-store',
        });
        if (!r.ok) return { why: verdict(r.status), status: r.status };
        // A proxy's own page instead of the stream.
        if (!/^text\/event-stream/i.test(r.headers.get('content-type') || '')) return { why: 'fail' };
        var reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
        var buf = '';
        var id = null;
        var type = '';
        var data = null;
        var states = true;
        for (;;) {
          var chunk = await reader.read();
          if (chunk.done) break;
          alive();
          buf += chunk.value;
          var n;
          while ((n = buf.indexOf('\n')) >= 0) {
            var line = buf.slice(0, n).replace(/\r$/, '');
            buf = buf.slice(n + 1);
            if (line === '') {
              if (data != null) {
                var v = JSON.parse(data);
                if (type === 'reset') self._feed({ k: 'reset', r: v });
                else self._feed({ k: states ? 'state' : 'ev', e: v });
              } else if (id != null) {
                // The stream's position: the states (if any) came before it.
                states = false;
                if (!opened) {
                  opened = true;
                  clearTimeout(first);
                  self._connected('sse');
                }
                self._feed({ k: 'cursor', id: Number(id) });
              }
              id = data = null;
              type = '';
            } else if (line[0] === ':') {
              if (/token expired/.test(line)) why = 'auth';
            } else {
              var c = line.indexOf(':');
              var field = c < 0 ? line : line.slice(0, c);
              var value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
              if (field === 'data') data = data == null ? value : data + '\n' + value;
              else if (field === 'id') id = value;
              else if (field === 'event') type = value;
            }
          }
        }
      } catch (e) {
        // Aborted (why says by whom) or the network.
      } finally {
        clearTimeout(first);
        this._unwatch();
      }
      return { opened: opened, why: why || 'down' };
    }

    async _poll(cred) {
      var ac;
      var why = null;
      var opened = false;
      var stated = !this._o.state;
      var since = this._since();
      this._abort = function (w) { why = why || w; if (ac) ac.abort(); };
      while (!why) {
        // Without a cursor, a short poll learns one: states are told apart by id <= since.
        var state = !stated && since;
        var url = this._url('/poll', since ? { since: since, timeout: 25, state: state && 1 } : { timeout: 1 });
        ac = new AbortController();
        var t = setTimeout(ac.abort.bind(ac), 40000);
        var r;
        var body = null;
        try {
          r = await fetch(url, {
            headers: cred.token ? { Authorization: 'Bearer ' + cred.token } : {},
            signal: ac.signal, credentials: this._o.credentials || 'same-origin', cache: 'no-store',
          });
          if (r.ok) body = await r.json().catch(function () { return null; });
        } catch (e) {
          break;
        } finally {
          clearTimeout(t);
        }
        if (why) break;
        if (!r.ok) return { opened: opened, why: verdict(r.status), status: r.status };
        if (!body || !Array.isArray(body.events)) return { opened: opened, why: 'fail' };
        if (!opened) {
          opened = true;
          this._connected('poll');
        }
        var events = body.events;
        var isState = function (e) { return state && e.id <= since; };
        if (body.reset) {
          var after = events.filter(function (e) { return !isState(e); });
          this._feed({ k: 'reset', r: {
            reason: 'history_gap', last_event_id: since,
            resume_from: after.length && body.next >= since ? after[0].id - 1 : body.next,
          } });
        }
        for (var j = 0; j < events.length; j++) {
          this._feed({ k: isState(events[j]) ? 'state' : 'ev', e: events[j] });
        }
        if (state) stated = true;
        since = body.next;
        this._feed({ k: 'cursor', id: since });
      }
      return { opened: opened, why: why || 'down' };
    }
  }

  return { connect: connect, Connection: Connection };
})();
