//! Several nodes on one Redis: the shared log, its reader and the roles nodes hold.
//!
//! Every event of every node goes into one Redis Stream (`hookcast:{NAME}:log`), appended by
//! a Lua script that gives it its hookcast id from Redis `TIME` (microseconds, always above the
//! last id given), so ids keep their single-node format, rise on every node alike without
//! clock sync, and keep rising after Redis lost its data. Each node reads the stream on a
//! second connection (`XREAD BLOCK`) and feeds what it reads to its hub exactly as a local
//! publish, its own events included: every node emits one order with the same ids.
//!
//! An append is acknowledged once the script has run (see the README for what that means with
//! Redis's persistence settings); the acknowledgement carries the id the script gave. Each
//! entry also carries the id of the entry before it, so the log is a chain: a reader that gets
//! an entry whose predecessor is not the last one it read knows that something between is
//! gone (the stream was trimmed past its cursor while it was away or behind; Redis was flushed,
//! restarted without persistence, or replaced) and reports a [`Hole`]: the node's subscribers
//! are told `reset`, never left with a silent gap.
//!
//! The module does no application work: it turns appends into commands and replies into
//! [`Appended`] outcomes and [`Entry`]s, and the application decides what they mean.

pub mod config;

use crate::redis::link::{Event as LinkEvent, Link, LinkConfig};
use crate::redis::resp::{Limits, Value};
use config::ClusterConfig;
use mio::{Registry, Token};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Poll token of the connection that appends (and runs every other command).
pub const WRITER_TOKEN: Token = Token(usize::MAX - 4);
/// Poll token of the connection that tails the log.
pub const READER_TOKEN: Token = Token(usize::MAX - 5);

/// How long one `XREAD` blocks in Redis when there is nothing new.
const READ_BLOCK: Duration = Duration::from_secs(2);
/// Most entries asked for per `XREAD` (fewer when entries may be large, see
/// [`Cluster::new`]): a node catching up takes the log in bounded replies.
const MAX_READ_COUNT: usize = 256;
/// What one `XREAD` reply may hold at most, with every entry as large as it may be.
const READ_REPLY_BUDGET: usize = 32 << 20;

/// The append script: dedup (optional), then every entry under consecutive ids from `TIME`.
/// KEYS: log, last id[, dedup key]. ARGV: max length, dedup seconds, node, then
/// (kind, topic, data, time ms) per entry. Each entry records its predecessor's id (`p`).
/// Returns {1, first id}, or {0} for a duplicate.
const APPEND: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if KEYS[3] then
  if not redis.call('SET', KEYS[3], '1', 'NX', 'EX', ARGV[2]) then
    return {0}
  end
end
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
local id = now
if id <= prev then id = prev + 1 end
local first = id
for b = 4, #ARGV, 4 do
  redis.call('XADD', KEYS[1], 'MAXLEN', '=', ARGV[1], string.format('%d-0', id), 'k', ARGV[b], 't', ARGV[b + 1],
    'd', ARGV[b + 2], 'ms', ARGV[b + 3], 'p', string.format('%d', prev), 'n', ARGV[3])
  prev = id
  id = id + 1
end
redis.call('SET', KEYS[2], string.format('%d', prev))
return {1, string.format('%d', first)}
";

/// The runner role: taken when free, renewed by its holder. KEYS: the role's key. ARGV: node,
/// lease in ms. Returns 1 when this node holds it now.
const LEASE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == false or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// How often the runner role's holder renews it (and a standby node asks for it), and how
/// often a node writes its status line and reads every node's.
const LEASE_EVERY: Duration = Duration::from_secs(2);
/// A node's status line older than this is removed from the cluster's table (a node gone for
/// good, renamed or moved).
const FORGET_NODE_MS: u64 = 24 * 3600 * 1000;

/// What an entry of the log is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An event: `data` is the journal's event encoding (type, JSON flag, data).
    Event,
    /// A webhook request accepted for a hook (`hooks::stored::Stored` as JSON): what the node
    /// that runs commands needs to start its run.
    Delivery,
    /// A signed ticket used on some node (`auth::encode_ticket_use`): every node refuses it
    /// from then on. Not an event: no subscriber sees it.
    TicketUsed,
}

impl Kind {
    fn code(self) -> &'static [u8] {
        match self {
            Kind::Event => b"e",
            Kind::Delivery => b"d",
            Kind::TicketUsed => b"u",
        }
    }
}

/// One entry to append.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// What it is.
    pub kind: Kind,
    /// The event's topic, or the delivery's hook.
    pub topic: String,
    /// The payload (see [`Kind`]).
    pub data: Vec<u8>,
    /// When it was made, ms since the Unix epoch.
    pub time_ms: u64,
}

/// One entry read from the log.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its hookcast id.
    pub id: u64,
    /// What it is.
    pub kind: Kind,
    /// Topic or hook.
    pub topic: String,
    /// Payload.
    pub data: Vec<u8>,
    /// When it was made.
    pub time_ms: u64,
    /// The node that appended it.
    pub node: String,
}

/// What became of one append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// In the log; its entries have ids from this one up.
    Ok(u64),
    /// Not appended: a delivery with this dedup key was appended before (by any node).
    Duplicate,
    /// Not acknowledged: the link broke before the reply, Redis refused the script, or too few
    /// replicas confirmed it. Redis may still have carried it out.
    Failed,
}

/// Events the log could not give this node: ids up to `through` may be missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hole {
    /// Every id up to and including this one may be missing.
    pub through: u64,
    /// Why, for the log line.
    pub why: &'static str,
}

/// Counters for `/metrics` and the status page.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClusterStats {
    /// Entries appended (acknowledged by the script).
    pub written: u64,
    /// Entries read from the log.
    pub read: u64,
    /// Script errors (Redis refused an append).
    pub script_errors: u64,
    /// Holes found (each told subscribers `reset`).
    pub holes: u64,
    /// Microseconds between an entry's id (Redis time at append) and this node reading it,
    /// for the last entry read: the reader's lag.
    pub read_lag_us: u64,
}

/// Tags of the writer's commands: appends use their sequence number; these are above them.
const TAG_WAIT_BIT: u64 = 1 << 62;
/// The tag of a runner-role request.
const TAG_LEASE: u64 = 1 << 61;
/// The tag of the node table's read.
const TAG_NODES: u64 = TAG_LEASE + 1;
/// Commands whose replies are not looked at (the node table's write).
const TAG_IGNORED: u64 = TAG_LEASE + 2;
/// The tag of the shared key's read.
const TAG_KEY: u64 = TAG_LEASE + 3;
/// Tags of the reader's commands.
const R_PROBE: u64 = 1;
const R_READ: u64 = 2;

/// The append queued or in flight, by sequence.
#[derive(Debug)]
struct InFlight {
    /// The command, kept for a `NOSCRIPT` retry with the script's text.
    args: Vec<Vec<u8>>,
    /// Sent with `EVAL` already (the retry).
    retried: bool,
    /// Its result, once the script answered (waiting for `WAIT` when replicas are asked for).
    result: Option<Appended>,
}

/// The node's part of the cluster: the two links, appends in flight, the reader's cursor.
pub struct Cluster {
    cfg: ClusterConfig,
    keys: Keys,
    sha: String,
    writer: Link,
    reader: Link,
    next_seq: u64,
    /// Appends not yet answered, in sequence order (Redis answers in order).
    in_flight: BTreeMap<u64, InFlight>,
    /// Appends made while the writer was not ready (the daemon's own events: run states and
    /// output), sent when it is.
    backlog: VecDeque<(u64, Vec<Vec<u8>>)>,
    backlog_bytes: usize,
    /// Outcomes not yet collected by [`Cluster::take_outcome`].
    done: BTreeMap<u64, Appended>,
    /// The last id read (0: nothing yet): the chain's end as this node knows it.
    cursor: u64,
    /// Where the next read starts: past the cursor when entries not written by hookcast
    /// followed it.
    read_from: u64,
    /// The last id the log had given when the reader first connected (its `GET`), until the
    /// first read sets the floor.
    probe: Option<u64>,
    /// The oldest id this node's history may vouch for, once the first probe told it.
    floor: Option<u64>,
    /// The reader has reached the end of the log once (a read returned less than it asked
    /// for): what it read before was the past, not news.
    caught_up: bool,
    /// Entries read, for the application.
    pub entries: Vec<Entry>,
    /// Holes found, for the application.
    pub holes: Vec<Hole>,
    /// Counters.
    pub stats: ClusterStats,
    dedup_secs: u64,
    /// Entries asked for per read.
    read_count: usize,
    /// Until when this node holds the runner role (by its own clock, from when it asked).
    lease_until: Option<Instant>,
    /// When the pending role request was sent, and when the next is due.
    lease_asked: Option<Instant>,
    next_lease: Instant,
    /// This node's line in the cluster's node table, written every [`LEASE_EVERY`].
    status: Vec<u8>,
    /// Every node's line (node, JSON), as last read.
    nodes: Vec<(String, Vec<u8>)>,
    /// A random key every node of the cluster shares (made by the first node that asked),
    /// for what one node signs and another checks: tickets.
    shared_key: Option<Vec<u8>>,
}

struct Keys {
    log: Vec<u8>,
    last: Vec<u8>,
    prefix: String,
}

impl Cluster {
    /// A node's links to Redis (they connect on the first tick). `max_entry` is the largest
    /// entry any node may append (from the request size limits): the reader takes replies up
    /// to that per entry, and asks for as few entries per read as keep a reply within
    /// `READ_REPLY_BUDGET`.
    pub fn new(cfg: ClusterConfig, registry: &Registry, dedup: Duration, max_entry: usize) -> std::io::Result<Cluster> {
        let prefix = format!("hookcast:{{{}}}:", cfg.name);
        let keys =
            Keys { log: format!("{prefix}log").into_bytes(), last: format!("{prefix}last").into_bytes(), prefix };
        let link = |role| LinkConfig {
            role,
            url: cfg.redis.clone(),
            password: cfg.password.clone(),
            timeout: cfg.command_timeout,
            max_out: cfg.max_queued_bytes,
            limits: Limits { max_bulk: max_entry.max(64 << 10), max_elements: 1 << 20, max_depth: 8 },
            sentinel: cfg.sentinel.clone(),
        };
        let writer = Link::new(link("commands"), registry.try_clone()?, WRITER_TOKEN);
        let reader = Link::new(link("reader"), registry.try_clone()?, READER_TOKEN);
        let sha = sha1_smol::Sha1::from(APPEND).digest().to_string();
        Ok(Cluster {
            cfg,
            keys,
            sha,
            writer,
            reader,
            next_seq: 1,
            in_flight: BTreeMap::new(),
            backlog: VecDeque::new(),
            backlog_bytes: 0,
            done: BTreeMap::new(),
            cursor: 0,
            read_from: 0,
            probe: None,
            floor: None,
            caught_up: false,
            entries: Vec::new(),
            holes: Vec::new(),
            stats: ClusterStats::default(),
            dedup_secs: dedup.as_secs().max(1),
            read_count: (READ_REPLY_BUDGET / max_entry.max(1)).clamp(8, MAX_READ_COUNT),
            lease_until: None,
            lease_asked: None,
            next_lease: Instant::now(),
            status: b"{}".to_vec(),
            nodes: Vec::new(),
            shared_key: None,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &ClusterConfig {
        &self.cfg
    }

    /// Whether both links are up.
    pub fn is_up(&self) -> bool {
        self.writer.is_ready() && self.reader.is_ready()
    }

    /// Reconnects (`writer`, `reader`) so far, breaks, for `/metrics`.
    pub fn link_stats(&self) -> [crate::redis::link::LinkStats; 2] {
        [self.writer.stats, self.reader.stats]
    }

    /// Why new work must be refused now (503), if it must.
    pub fn refusal(&self) -> Option<&'static str> {
        if !self.writer.is_ready() {
            Some("Redis is not reachable; not accepted, send again later")
        } else if self.writer.queued_bytes() + self.backlog_bytes > self.cfg.max_queued_bytes {
            Some("Redis is behind; not accepted, send again later")
        } else {
            None
        }
    }

    /// Whether the reader has reached the end of the log since the node started.
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// Whether this node holds the runner role now: deploy commands run on one node at a time.
    pub fn is_runner(&self, now: Instant) -> bool {
        self.lease_until.is_some_and(|t| now < t)
    }

    /// This node's line for the status page's cluster table (JSON), written with the next
    /// renewal.
    pub fn set_status(&mut self, json: Vec<u8>) {
        self.status = json;
    }

    /// Whether this node's status line is due (set it with [`Cluster::set_status`] before
    /// the next tick).
    pub fn wants_status(&self, now: Instant) -> bool {
        self.writer.is_ready() && now >= self.next_lease
    }

    /// Every node's status line, as last read (node name, JSON).
    pub fn nodes(&self) -> &[(String, Vec<u8>)] {
        &self.nodes
    }

    /// The key every node of this cluster shares, once read from Redis.
    pub fn shared_key(&self) -> Option<&[u8]> {
        self.shared_key.as_deref()
    }

    /// Every [`LEASE_EVERY`]: renews (or asks for) the runner role, writes this node's status
    /// line and reads everyone's.
    fn periodic(&mut self, now: Instant) {
        if now < self.next_lease {
            return;
        }
        self.next_lease = now + self.renew_every();
        let nodes = format!("{}nodes", self.keys.prefix);
        let hset: [&[u8]; 4] = [b"HSET", nodes.as_bytes(), self.cfg.node.as_bytes(), &self.status];
        self.writer.send(&hset, TAG_IGNORED, Duration::ZERO);
        self.writer.send(&[b"HGETALL", nodes.as_bytes()], TAG_NODES, Duration::ZERO);
        if self.shared_key.is_none() {
            let key = format!("{}shared-key", self.keys.prefix);
            let mut fresh = [0u8; 32];
            if crate::sys::random_bytes(&mut fresh).is_ok() {
                let hex: String = fresh.iter().map(|b| format!("{b:02x}")).collect();
                self.writer.send(&[b"SET", key.as_bytes(), hex.as_bytes(), b"NX"], TAG_IGNORED, Duration::ZERO);
            }
            self.writer.send(&[b"GET", key.as_bytes()], TAG_KEY, Duration::ZERO);
        }
        if !self.cfg.runs_commands || self.lease_asked.is_some() {
            return;
        }
        let key = format!("{}runner", self.keys.prefix);
        let ttl = self.cfg.runner_lease.as_millis().to_string();
        let args: [&[u8]; 6] =
            [b"EVAL", LEASE.as_bytes(), b"1", key.as_bytes(), self.cfg.node.as_bytes(), ttl.as_bytes()];
        if self.writer.send(&args, TAG_LEASE, Duration::ZERO) {
            self.lease_asked = Some(now);
        }
    }

    /// How often the role is renewed: at least three times per lease.
    fn renew_every(&self) -> Duration {
        LEASE_EVERY.min(self.cfg.runner_lease / 3)
    }

    fn on_nodes(&mut self, v: Value) {
        let Some(items) = v.into_array() else { return };
        let now_ms = crate::clock::unix_ms();
        let key = format!("{}nodes", self.keys.prefix);
        let mut nodes = Vec::new();
        let mut it = items.into_iter();
        while let (Some(Value::Bulk(Some(k))), Some(Value::Bulk(Some(v)))) = (it.next(), it.next()) {
            let Ok(name) = String::from_utf8(k) else { continue };
            let seen = serde_json::from_slice::<serde_json::Value>(&v).ok().and_then(|j| j["seen_ms"].as_u64());
            if seen.is_some_and(|t| now_ms.saturating_sub(t) > FORGET_NODE_MS) {
                self.writer.send(&[b"HDEL", key.as_bytes(), name.as_bytes()], TAG_IGNORED, Duration::ZERO);
                continue;
            }
            nodes.push((name, v));
        }
        nodes.sort();
        self.nodes = nodes;
    }

    fn on_lease(&mut self, held: bool) {
        let Some(asked) = self.lease_asked.take() else { return };
        let was = self.is_runner(Instant::now());
        // Counted from when it was asked for, less a margin: Redis started the lease later.
        // Valid here until one renewal before Redis lets it go: a stalled node stops running
        // commands before another may start.
        self.lease_until = held.then(|| asked + self.cfg.runner_lease - self.renew_every());
        match (was, held) {
            (false, true) => {
                log::info!("cluster: node {:?} holds the runner role: deploy commands run here", self.cfg.node)
            }
            (true, false) => log::warn!("cluster: node {:?} lost the runner role to another node", self.cfg.node),
            _ => {}
        }
    }

    /// The oldest id this node can vouch for (history after it is complete), once known.
    pub fn floor(&self) -> Option<u64> {
        self.floor
    }

    /// Appends `entries` in one script call (all or none), deduplicated by `dedup` (a key only
    /// one append per dedup window may carry). Returns its sequence number; its outcome comes
    /// from [`Cluster::take_outcome`]. With the writer down the append waits in a bounded
    /// backlog (the daemon's own events; requests were refused before they got here).
    pub fn append(&mut self, entries: &[NewEntry], dedup: Option<&str>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let dedup_key = dedup.map(|d| {
            let digest = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(d.as_bytes()));
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            format!("{}seen:{hex}", self.keys.prefix).into_bytes()
        });
        let mut args: Vec<Vec<u8>> = vec![b"EVALSHA".to_vec(), self.sha.clone().into_bytes()];
        args.push(if dedup_key.is_some() { b"3".to_vec() } else { b"2".to_vec() });
        args.extend([self.keys.log.clone(), self.keys.last.clone()]);
        args.extend(dedup_key);
        args.push(self.cfg.log_max_events.to_string().into_bytes());
        args.push(self.dedup_secs.to_string().into_bytes());
        args.push(self.cfg.node.clone().into_bytes());
        for e in entries {
            args.push(e.kind.code().to_vec());
            args.push(e.topic.clone().into_bytes());
            args.push(e.data.clone());
            args.push(e.time_ms.to_string().into_bytes());
        }
        if self.writer.is_ready() && self.backlog.is_empty() {
            self.send_append(seq, args, false);
        } else {
            let bytes: usize = args.iter().map(Vec::len).sum();
            if self.backlog_bytes + bytes > self.cfg.max_queued_bytes {
                log::warn!("cluster: Redis is away and the backlog is full; an event of the daemon's own was dropped");
                self.done.insert(seq, Appended::Failed);
            } else {
                self.backlog_bytes += bytes;
                self.backlog.push_back((seq, args));
            }
        }
        seq
    }

    fn send_append(&mut self, seq: u64, args: Vec<Vec<u8>>, retried: bool) {
        let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        if !self.writer.send(&refs, seq, Duration::ZERO) {
            self.done.insert(seq, Appended::Failed);
            return;
        }
        if self.cfg.wait_replicas > 0 {
            let n = self.cfg.wait_replicas.to_string();
            let ms = self.cfg.wait_timeout.as_millis().to_string();
            // WAIT blocks this connection; the append's answer waits for it.
            self.writer.send(&[b"WAIT", n.as_bytes(), ms.as_bytes()], seq | TAG_WAIT_BIT, self.cfg.wait_timeout);
        }
        self.in_flight.insert(seq, InFlight { args, retried, result: None });
    }

    /// The outcome of append `seq`, once there is one (taken: asked once).
    pub fn take_outcome(&mut self, seq: u64) -> Option<Appended> {
        self.done.remove(&seq)
    }

    /// Forgets the outcomes up to `seq` nobody asked for (the daemon's own appends).
    pub fn forget_through(&mut self, seq: u64) {
        while self.done.first_key_value().is_some_and(|(s, _)| *s <= seq) {
            self.done.pop_first();
        }
    }

    /// Every append up to this sequence has an outcome.
    pub fn settled_through(&self) -> u64 {
        let first_open = [self.in_flight.keys().next(), self.backlog.front().map(|(s, _)| s)]
            .into_iter()
            .flatten()
            .min()
            .copied()
            .unwrap_or(self.next_seq);
        first_open - 1
    }

    /// The last sequence handed out (0: none).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Handles readiness of one of the cluster's sockets.
    pub fn on_event(&mut self, token: Token, readable: bool, writable: bool) {
        if token == WRITER_TOKEN {
            self.writer.on_ready(writable, readable);
        } else {
            self.reader.on_ready(writable, readable);
        }
        self.process();
    }

    /// Timers: reconnects and overdue replies.
    pub fn tick(&mut self, now: Instant) {
        self.writer.tick(now);
        self.reader.tick(now);
        self.process();
        if self.writer.is_ready() {
            self.periodic(now);
        }
    }

    /// When [`Cluster::tick`] must run next.
    pub fn next_deadline(&self) -> Option<Instant> {
        let lease = self.writer.is_ready().then_some(self.next_lease);
        [self.writer.next_deadline(), self.reader.next_deadline(), lease].into_iter().flatten().min()
    }

    /// Writes what this turn queued (once per turn, so a turn's appends share a write).
    pub fn flush(&mut self) {
        self.writer.flush();
        self.reader.flush();
        self.process();
    }

    /// Closes both links (shutdown).
    pub fn close(&mut self) {
        self.writer.close();
        self.reader.close();
    }

    fn process(&mut self) {
        loop {
            let w = self.writer.take_events();
            let r = self.reader.take_events();
            if w.is_empty() && r.is_empty() {
                return;
            }
            for ev in w {
                self.on_writer(ev);
            }
            for ev in r {
                self.on_reader(ev);
            }
        }
    }

    fn on_writer(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Ready => {
                self.next_lease = Instant::now();
                self.periodic(Instant::now());
                while let Some((seq, args)) = self.backlog.pop_front() {
                    self.backlog_bytes -= args.iter().map(Vec::len).sum::<usize>();
                    self.send_append(seq, args, false);
                }
            }
            LinkEvent::Reply(TAG_LEASE, v) => self.on_lease(v.as_int() == Some(1)),
            LinkEvent::Lost(TAG_LEASE) => self.on_lease(false),
            LinkEvent::Reply(TAG_NODES, v) => self.on_nodes(v),
            LinkEvent::Reply(TAG_KEY, v) => {
                self.shared_key = v.as_bytes().filter(|k| k.len() >= 32).map(<[u8]>::to_vec);
            }
            LinkEvent::Reply(TAG_IGNORED, _) | LinkEvent::Lost(TAG_NODES | TAG_IGNORED | TAG_KEY) => {}
            LinkEvent::Reply(tag, v) if tag & TAG_WAIT_BIT != 0 => {
                let seq = tag & !TAG_WAIT_BIT;
                let acked = v.as_int().unwrap_or(0);
                if let Some(f) = self.in_flight.remove(&seq) {
                    let result = match f.result {
                        Some(Appended::Ok(id)) if acked < i64::from(self.cfg.wait_replicas) => {
                            log::warn!(
                                "cluster: append {id} reached {acked} of {} replica(s) in time; not acknowledged",
                                self.cfg.wait_replicas
                            );
                            Appended::Failed
                        }
                        Some(r) => r,
                        None => Appended::Failed,
                    };
                    self.done.insert(seq, result);
                }
            }
            LinkEvent::Reply(seq, v) => self.on_append_reply(seq, v),
            LinkEvent::Lost(tag) => {
                let seq = tag & !TAG_WAIT_BIT;
                if self.in_flight.remove(&seq).is_some() {
                    self.done.insert(seq, Appended::Failed);
                }
            }
            LinkEvent::Down(_) => {}
        }
    }

    fn on_append_reply(&mut self, seq: u64, v: Value) {
        if let Some(e) = v.error() {
            if e.starts_with("NOSCRIPT") {
                if let Some(f) = self.in_flight.remove(&seq) {
                    if !f.retried {
                        // The script cache was flushed (or Redis replaced): EVAL loads it again.
                        let mut args = f.args;
                        args[0] = b"EVAL".to_vec();
                        args[1] = APPEND.as_bytes().to_vec();
                        self.send_append(seq, args, true);
                        return;
                    }
                }
            }
            self.stats.script_errors += 1;
            log::error!("cluster: Redis refused an append: {e}");
            self.in_flight.remove(&seq);
            self.done.insert(seq, Appended::Failed);
            return;
        }
        let result = match v.as_array() {
            Some([ok, first]) if ok.as_int() == Some(1) => {
                first.as_int().and_then(|i| u64::try_from(i).ok()).map_or(Appended::Failed, Appended::Ok)
            }
            Some([ok]) if ok.as_int() == Some(0) => Appended::Duplicate,
            _ => Appended::Failed,
        };
        if let Appended::Ok(_) = result {
            let n = self.in_flight.get(&seq).map_or(0, |f| f.args.len().saturating_sub(8) / 4);
            self.stats.written += n as u64;
        }
        if self.cfg.wait_replicas > 0 && result != Appended::Duplicate {
            if let Some(f) = self.in_flight.get_mut(&seq) {
                f.result = Some(result);
                return;
            }
        }
        self.in_flight.remove(&seq);
        self.done.insert(seq, result);
    }

    fn on_reader(&mut self, ev: LinkEvent) {
        match ev {
            LinkEvent::Ready if self.floor.is_none() => {
                self.reader.send(&[b"GET", &self.keys.last], R_PROBE, Duration::ZERO);
            }
            LinkEvent::Ready => self.read_next(),
            LinkEvent::Reply(R_PROBE, v) => {
                self.probe = Some(v.as_int().and_then(|i| u64::try_from(i).ok()).unwrap_or(0));
                self.read_next();
            }
            LinkEvent::Reply(_, v) => {
                if let Some(e) = v.error() {
                    log::error!("cluster: Redis refused XREAD: {e}");
                } else {
                    self.read_reply(v);
                }
                self.read_next();
            }
            LinkEvent::Lost(_) | LinkEvent::Down(_) => {}
        }
    }

    fn read_next(&mut self) {
        let cursor = format!("{}-0", self.cursor.max(self.read_from));
        let count = self.read_count.to_string();
        let count = count.as_bytes();
        // Until the floor is known, do not block: an empty log must not hold the start up.
        let block: &[u8] = if self.floor.is_some() { b"2000" } else { b"0" };
        let args: [&[u8]; 8] =
            [b"XREAD", b"COUNT", count, b"BLOCK", block, b"STREAMS", &self.keys.log, cursor.as_bytes()];
        if self.floor.is_some() {
            self.reader.send(&args, R_READ, READ_BLOCK);
        } else {
            // BLOCK 0 would wait for ever: the first read does not block at all.
            let args: [&[u8]; 6] = [b"XREAD", b"COUNT", count, b"STREAMS", &self.keys.log, cursor.as_bytes()];
            self.reader.send(&args, R_READ, Duration::ZERO);
        }
    }

    fn hole(&mut self, through: u64, why: &'static str) {
        self.stats.holes += 1;
        self.holes.push(Hole { through, why });
    }

    fn read_reply(&mut self, v: Value) {
        let now_us = crate::clock::unix_ms() * 1000;
        // Nil: nothing new within the block time.
        let items: Vec<Value> = v
            .into_array()
            .and_then(|streams| streams.into_iter().next())
            .and_then(Value::into_array)
            .and_then(|mut kv| kv.pop())
            .and_then(Value::into_array)
            .unwrap_or_default();
        if items.len() < self.read_count {
            self.caught_up = true;
        }
        if self.floor.is_none() {
            // The first read: history may vouch for everything after the oldest entry's
            // predecessor; with nothing in the log, for what follows the last id given
            // (none given: from now on).
            let first_prev = items.iter().find_map(|i| parse_entry(i.clone()).and_then(|(_, prev, _)| prev));
            let (floor, cursor) = match (first_prev, self.probe) {
                (Some(p), _) => (p + 1, p),
                (None, Some(last)) if last > 0 => (last + 1, last),
                // A log never written to: its first entry's predecessor will be 0.
                _ => (now_us, 0),
            };
            self.floor = Some(floor);
            self.cursor = cursor;
        }
        for item in items {
            let Some((id, prev, entry)) = parse_entry(item) else { continue };
            self.read_from = self.read_from.max(id);
            let Some(prev) = prev else {
                // Not written by our script: no link in the chain, nothing for us.
                log::warn!("cluster: entry {id} of the log was not written by hookcast; skipped");
                continue;
            };
            if id <= self.cursor {
                continue;
            }
            if prev != self.cursor {
                let why = if prev < self.cursor {
                    "Redis lost the end of the log (flushed, restarted without persistence, or replaced)"
                } else {
                    "the log was trimmed past what this node had read"
                };
                self.hole(id - 1, why);
            }
            self.cursor = id;
            self.stats.read += 1;
            self.stats.read_lag_us = now_us.saturating_sub(id);
            match entry {
                Some(entry) => self.entries.push(entry),
                None => log::debug!("cluster: entry {id} is of a kind this version does not know; skipped"),
            }
        }
    }
}

/// The hookcast id of a stream entry id (`<id>-0`).
fn stream_id(raw: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(raw).ok()?;
    s.split('-').next()?.parse().ok()
}

/// One `[id, [field, value, …]]` of an `XREAD` reply: its id, its predecessor's id (None:
/// not written by hookcast's script), and the entry (None: a kind this version does not
/// know, from a newer node, or a damaged one).
fn parse_entry(item: Value) -> Option<(u64, Option<u64>, Option<Entry>)> {
    let mut pair = item.into_array()?.into_iter();
    let id = stream_id(pair.next()?.as_bytes()?)?;
    let Some(fields) = pair.next().and_then(Value::into_array) else { return Some((id, None, None)) };
    let mut e =
        Entry { id, kind: Kind::Event, topic: String::new(), data: Vec::new(), time_ms: 0, node: String::new() };
    let (mut prev, mut known) = (None, true);
    let mut it = fields.into_iter();
    while let (Some(Value::Bulk(Some(k))), Some(Value::Bulk(Some(v)))) = (it.next(), it.next()) {
        if k == b"d" {
            e.data = v;
            continue;
        }
        let Ok(text) = String::from_utf8(v) else {
            known = false;
            continue;
        };
        match k.as_slice() {
            b"k" if text == "e" => e.kind = Kind::Event,
            b"k" if text == "d" => e.kind = Kind::Delivery,
            b"k" if text == "u" => e.kind = Kind::TicketUsed,
            b"k" => known = false,
            b"t" => e.topic = text,
            b"ms" => match text.parse() {
                Ok(ms) => e.time_ms = ms,
                Err(_) => known = false,
            },
            b"p" => prev = text.parse::<u64>().ok().filter(|p| *p < id),
            b"n" => e.node = text,
            _ => {}
        }
    }
    Some((id, prev, known.then_some(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &[u8]) -> Value {
        Value::Bulk(Some(s.to_vec()))
    }

    fn entry(id: &[u8], prev: &[u8]) -> Value {
        let fields = [
            &b"k"[..],
            b"e",
            b"t",
            b"news",
            b"d",
            b"\x01\x07message{}",
            b"ms",
            b"1733500000000",
            b"p",
            prev,
            b"n",
            b"box-a",
        ];
        Value::Array(Some(vec![bulk(id), Value::Array(Some(fields.iter().map(|f| bulk(f)).collect()))]))
    }

    fn with_kind(id: &[u8], prev: &[u8], kind: &[u8]) -> Value {
        let fields = [&b"k"[..], kind, b"t", b"news", b"d", b"\x01\x07message{}", b"ms", b"1", b"p", prev];
        Value::Array(Some(vec![bulk(id), Value::Array(Some(fields.iter().map(|f| bulk(f)).collect()))]))
    }

    /// An `XREAD` reply holding `items`.
    fn xread(items: Vec<Value>) -> Value {
        let stream = Value::Array(Some(vec![bulk(b"hookcast:{t}:log"), Value::Array(Some(items))]));
        Value::Array(Some(vec![stream]))
    }

    fn cluster() -> Cluster {
        let cfg = crate::config::Config::from_json(r#"{"cluster":{"redis":"redis://127.0.0.1:1/0","name":"t"}}"#)
            .unwrap()
            .cluster
            .unwrap();
        let poll = mio::Poll::new().unwrap();
        Cluster::new(cfg, poll.registry(), Duration::from_secs(60), 1 << 20).unwrap()
    }

    #[test]
    fn the_chain_finds_holes_and_nothing_else() {
        let mut c = cluster();
        c.probe = Some(100);
        c.read_reply(xread(vec![entry(b"200-0", b"100"), entry(b"201-0", b"200")]));
        assert_eq!((c.floor, c.cursor, c.entries.len(), c.holes.len()), (Some(101), 201, 2, 0));
        // A kind from a newer node and an entry another writer added: skipped, no hole.
        let foreign = Value::Array(Some(vec![bulk(b"203-0"), Value::Array(Some(vec![bulk(b"x"), bulk(b"y")]))]));
        c.read_reply(xread(vec![with_kind(b"202-0", b"201", b"zz"), foreign, entry(b"204-0", b"202")]));
        assert_eq!((c.cursor, c.read_from, c.entries.len(), c.holes.len()), (204, 204, 3, 0));
        // Trimmed past the cursor while this node was away: a hole through the entry before.
        c.read_reply(xread(vec![entry(b"300-0", b"250")]));
        assert_eq!(c.holes, vec![Hole { through: 299, why: "the log was trimmed past what this node had read" }]);
        // Flushed: the next entry's predecessor is older than what was read.
        c.read_reply(xread(vec![entry(b"400-0", b"0")]));
        assert_eq!(c.holes.len(), 2);
        assert_eq!(c.holes[1].through, 399);
        assert_eq!(c.cursor, 400);
    }

    #[test]
    fn an_empty_log_starts_the_chain_at_zero() {
        let mut c = cluster();
        c.read_reply(Value::Array(None));
        assert_eq!(c.cursor, 0);
        assert!(c.floor.is_some_and(|f| f > 1_700_000_000_000_000), "from now on");
        c.read_reply(xread(vec![entry(b"500-0", b"0")]));
        assert!(c.holes.is_empty(), "{:?}", c.holes);
    }

    #[test]
    fn an_entry_is_read_back_with_its_predecessor() {
        let (id, prev, e) = parse_entry(entry(b"1733500000000001-0", b"1733400000000000")).unwrap();
        let e = e.unwrap();
        assert_eq!(
            (id, e.kind, e.topic.as_str(), e.time_ms, e.node.as_str()),
            (1733500000000001, Kind::Event, "news", 1733500000000, "box-a")
        );
        assert_eq!(prev, Some(1733400000000000));
    }

    #[test]
    fn an_entry_of_another_writer_is_not_ours() {
        let item = Value::Array(Some(vec![bulk(b"5-0"), Value::Array(Some(vec![bulk(b"k"), bulk(b"zz")]))]));
        assert_eq!(parse_entry(item).map(|(id, p, e)| (id, p, e.is_none())), Some((5, None, true)));
        // A predecessor at or after the entry itself is not a chain.
        assert_eq!(parse_entry(entry(b"5-0", b"5")).unwrap().1, None);
    }
}
