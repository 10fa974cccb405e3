// An independent EventSource client for hookcast's integration tests: the `eventsource` npm
// package (a WHATWG-conformant EventSource on fetch), so our SSE framing, retry and
// Last-Event-ID resumption are checked by code we did not write.
//
// Usage:
//   node es_client.mjs URL [--count N] [--timeout-ms MS] [--last-event-id ID]
//                          [--header 'Name: value']... [--events a,b,c]
//
// Prints one JSON line per line of output on stdout:
//   {"open":true}                              each time the stream (re)opens
//   {"type":"message","id":"7","data":"..."}   each event; id is the event's lastEventId
//   {"error":true,"code":..,"message":".."}    each error; the client reconnects by itself,
//                                              unless "closed":true (a fatal error per the spec:
//                                              non-200 status, wrong Content-Type)
// Listens to `message`, `reset` (sent on history gaps) and every type named in --events.
// Exit status: 0 after N events (--count, default 1); 2 at the timeout (--timeout-ms, default
// 10000) or when the stream is closed for good; 64 on a usage error.
import { EventSource } from 'eventsource';

const USAGE =
  "usage: node es_client.mjs URL [--count N] [--timeout-ms MS] [--last-event-id ID] " +
  "[--header 'Name: value']... [--events a,b,c]";

function usage(message) {
  process.stderr.write(`es_client: ${message}\n${USAGE}\n`);
  process.exit(64);
}

function parseArgs(argv) {
  const opts = { url: null, count: 1, timeoutMs: 10000, lastEventId: null, headers: {}, events: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`);
      return argv[++i];
    };
    const positiveInt = (v) => {
      if (!/^\d+$/.test(v) || Number(v) < 1) usage(`${arg}: ${JSON.stringify(v)} is not a positive integer`);
      return Number(v);
    };
    switch (arg) {
      case '--count':
        opts.count = positiveInt(value());
        break;
      case '--timeout-ms':
        opts.timeoutMs = positiveInt(value());
        break;
      case '--last-event-id':
        opts.lastEventId = value();
        break;
      case '--header': {
        const h = value();
        const colon = h.indexOf(':');
        if (colon < 1) usage(`--header ${JSON.stringify(h)} is not 'Name: value'`);
        opts.headers[h.slice(0, colon).trim()] = h.slice(colon + 1).trim();
        break;
      }
      case '--events':
        opts.events.push(...value().split(',').map((s) => s.trim()).filter(Boolean));
        break;
      case '-h':
      case '--help':
        process.stdout.write(`${USAGE}\n`);
        process.exit(0);
        break;
      default:
        if (arg.startsWith('--') || opts.url !== null) usage(`unexpected argument ${JSON.stringify(arg)}`);
        opts.url = arg;
    }
  }
  if (opts.url === null) usage('URL is required');
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

const es = new EventSource(opts.url, {
  // The package's documented way to set request headers: wrap fetch. Its own Last-Event-ID
  // (set once an event with an id has arrived) wins over --last-event-id.
  fetch: (input, init) => {
    const headers = { ...opts.headers, ...(init && init.headers) };
    const hasId = Object.keys(headers).some((k) => k.toLowerCase() === 'last-event-id');
    if (opts.lastEventId !== null && !hasId) headers['Last-Event-ID'] = opts.lastEventId;
    return fetch(input, { ...init, headers });
  },
});

let received = 0;
let finished = false;

function finish(code) {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  es.close();
  // Let stdout drain before exiting.
  process.stdout.write('', () => process.exit(code));
}

const timer = setTimeout(() => finish(2), opts.timeoutMs);

function onEvent(event) {
  if (finished) return;
  emit({ type: event.type, id: event.lastEventId, data: event.data });
  received += 1;
  if (received >= opts.count) finish(0);
}

es.addEventListener('open', () => emit({ open: true }));
es.addEventListener('error', (event) => {
  const line = { error: true };
  if (event.code !== undefined) line.code = event.code;
  if (event.message !== undefined) line.message = event.message;
  if (es.readyState === es.CLOSED) line.closed = true;
  emit(line);
  if (es.readyState === es.CLOSED) finish(2);
});
for (const type of new Set(['message', 'reset', ...opts.events])) {
  es.addEventListener(type, onEvent);
}
