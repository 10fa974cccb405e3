//! A real `redis-server` on loopback per test, a TCP proxy that can blackhole a link, and
//! several hookcast nodes sharing one Redis (issue 15). Redis is spoken to with raw sockets and
//! the few lines of RESP below: the tests must not lean on the daemon's own RESP client.

use super::{eventually, signal, Daemon, TempDir};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a starting Redis may take to answer PING (loading an AOF included), generous for a
/// loaded 2-core machine.
const REDIS_START: Duration = Duration::from_secs(20);

/// How a [`RedisServer`] persists.
#[derive(Clone, Copy, Debug, Default)]
pub struct RedisOpts {
    /// `--appendonly yes --appendfsync always`: every acknowledged write survives SIGKILL.
    pub aof: bool,
}

/// A `redis-server` on 127.0.0.1 with its own directory; killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    opts: RedisOpts,
    /// `--replicaof 127.0.0.1 PORT`.
    replica_of: Option<u16>,
    /// `--dir`: the AOF and the log file; kept across [`RedisServer::restart`].
    pub dir: TempDir,
}

impl RedisServer {
    /// Starts one on a free ephemeral port and waits until it answers PING.
    pub fn start(opts: RedisOpts) -> RedisServer {
        Self::start_as(opts, None)
    }

    /// Starts a replica of the server on 127.0.0.1:`master` (without persistence) and waits
    /// until it answers PING and its replication link is up.
    pub fn start_replica(master: u16) -> RedisServer {
        let r = Self::start_as(RedisOpts::default(), Some(master));
        // Generous: the first full sync of a near-empty dataset takes milliseconds.
        let synced = eventually(REDIS_START, || r.command(&["INFO", "replication"]).contains("master_link_status:up"));
        assert!(synced, "the replica did not sync; log:\n{}", r.log_text());
        r
    }

    fn start_as(opts: RedisOpts, replica_of: Option<u16>) -> RedisServer {
        let mut r = RedisServer { child: None, port: 0, opts, replica_of, dir: TempDir::new("redis") };
        // A port picked by binding :0 and releasing it can be taken by someone else before Redis
        // binds it: then Redis exits at once and another port is tried.
        for _ in 0..5 {
            r.port = free_port();
            if r.spawn() {
                return r;
            }
        }
        panic!("redis-server did not start on any of 5 ports; log:\n{}", r.log_text());
    }

    /// Runs the process on `self.port`; true once it answers PING, false if it exited first.
    fn spawn(&mut self) -> bool {
        let yes_no = if self.opts.aof { "yes" } else { "no" };
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir.0)
            .args(["--save", "", "--appendonly", yes_no, "--daemonize", "no", "--protected-mode", "no"])
            .arg("--logfile")
            .arg(self.dir.0.join("redis.log"));
        if self.opts.aof {
            cmd.args(["--appendfsync", "always"]);
        }
        if let Some(master) = self.replica_of {
            cmd.args(["--replicaof", "127.0.0.1", &master.to_string()]);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn redis-server");
        let t0 = Instant::now();
        while t0.elapsed() < REDIS_START {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            if ping(self.port, Duration::from_millis(500)) {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not answer PING within {REDIS_START:?}; log:\n{}", self.log_text());
    }

    /// The TCP port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/DB`
    pub fn url(&self, db: u32) -> String {
        format!("redis://127.0.0.1:{}/{db}", self.port)
    }

    /// Its log file, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("redis.log")).unwrap_or_default()
    }

    fn child(&self) -> &Child {
        self.child.as_ref().expect("redis-server is not running")
    }

    /// SIGTERM and wait (bounded): a clean shutdown, the AOF flushed.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        signal(&child, "TERM");
        let t0 = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t0.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-server did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL and wait: no shutdown work at all.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP: the sockets stay open and nothing answers, like a stalled server.
    pub fn pause(&self) {
        signal(self.child(), "STOP");
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        signal(self.child(), "CONT");
    }

    /// Starts it again on the same port and directory (an AOF is reloaded); stops it first
    /// (SIGTERM) if it still runs.
    pub fn restart(&mut self) {
        self.stop();
        // The port was ours a moment ago; only a stranger binding it in between fails this.
        for _ in 0..3 {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("redis-server did not restart on port {}; log:\n{}", self.port, self.log_text());
    }

    /// Sends one command on a fresh connection and returns the raw reply (RESP text).
    pub fn command(&self, args: &[&str]) -> String {
        command_on(self.port, args)
    }
}

/// Sends one command to 127.0.0.1:`port` on a fresh connection; the raw reply (RESP text).
pub fn command_on(port: u16, args: &[&str]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis-server");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&encode(args)).unwrap();
    let mut r = BufReader::new(s);
    read_reply(&mut r).unwrap_or_else(|e| panic!("no reply to {args:?}: {e}"))
}

/// A Redis Sentinel (`redis-server CONF --sentinel`) on 127.0.0.1 watching one master with a
/// quorum of 1 and short timers (down after 1 s); killed on drop.
pub struct Sentinel {
    child: Child,
    port: u16,
    /// Its configuration file (Sentinel rewrites it, so it lives in a writable directory) and log.
    pub dir: TempDir,
}

impl Sentinel {
    /// Starts one watching 127.0.0.1:`master` under `name` and waits until it answers PING.
    pub fn start(name: &str, master: u16) -> Sentinel {
        let dir = TempDir::new("sentinel");
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.0.join("sentinel.conf");
            let text = format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\ndir {dir}\nlogfile {log}\n\
                 sentinel monitor {name} 127.0.0.1 {master} 1\n\
                 sentinel down-after-milliseconds {name} 1000\n\
                 sentinel failover-timeout {name} 5000\n",
                dir = dir.0.display(),
                log = dir.0.join("sentinel.log").display(),
            );
            std::fs::write(&conf, text).unwrap();
            let mut child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server --sentinel");
            let t0 = Instant::now();
            while t0.elapsed() < REDIS_START {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if ping(port, Duration::from_millis(500)) {
                    return Sentinel { child, port, dir };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let log = std::fs::read_to_string(dir.0.join("sentinel.log")).unwrap_or_default();
        panic!("redis-server --sentinel did not start on any of 5 ports; log:\n{log}");
    }

    /// The TCP port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends one command (`SENTINEL …`) and returns the raw reply.
    pub fn command(&self, args: &[&str]) -> String {
        command_on(self.port, args)
    }

    /// Its log file, for failure messages.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("sentinel.log")).unwrap_or_default()
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A paused process dies of SIGKILL too, but say CONT so nothing lingers stopped.
            let _ = Command::new("kill").arg("-CONT").arg(c.id().to_string()).status();
        }
        self.kill();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A command as a RESP array of bulk strings.
pub fn encode(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one whole reply (nested arrays included) and returns its raw text.
pub fn read_reply(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let mut out = line.clone();
    let n: i64 = line.get(1..).unwrap_or("").trim_end().parse().unwrap_or(-1);
    match line.as_bytes().first() {
        Some(b'$') if n >= 0 => {
            let mut body = vec![0; n as usize + 2];
            r.read_exact(&mut body)?;
            out.push_str(&String::from_utf8_lossy(&body));
        }
        Some(b'*') => {
            for _ in 0..n.max(0) {
                out.push_str(&read_reply(r)?);
            }
        }
        _ => {}
    }
    Ok(out)
}

/// Whether something on `port` answers a raw PING with `+PONG` within `within`.
pub fn ping(port: u16, within: Duration) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, within) else { return false };
    ping_on(&mut s, within)
}

/// Sends PING on an open connection; whether `+PONG` comes back within `within`.
pub fn ping_on(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    if s.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut got = [0u8; 7];
    s.read_exact(&mut got).is_ok() && &got == b"+PONG\r\n"
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy that can blackhole its connections

/// At most this many proxied connections at once; more are closed at accept (a node holds one
/// or two links to Redis).
const BLACKHOLE_MAX_CONNS: usize = 16;

/// A loopback TCP proxy to `target` that can go silent without closing anything.
///
/// [`Blackhole::block`] stops forwarding in both directions: bytes already received stay in the
/// proxy and the kernel's buffers, nothing is read, nothing is closed, so the peers see neither
/// data nor RST nor FIN — a partition, not a crash. New connections are accepted but not
/// connected through while blocked. [`Blackhole::unblock`] heals the partition: held bytes are
/// delivered late, on existing connections as on new ones, as TCP would after a real partition
/// (a peer that gave up on its connection meanwhile has closed it, and that close goes through).
pub struct Blackhole {
    /// Where clients connect.
    pub addr: SocketAddr,
    blocked: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    live: Arc<AtomicUsize>,
}

impl Blackhole {
    /// Listens on 127.0.0.1:0 and forwards every connection to `target`.
    pub fn start(target: SocketAddr) -> Blackhole {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let bh = Blackhole {
            addr,
            blocked: Arc::default(),
            stop: Arc::default(),
            conns: Arc::default(),
            live: Arc::default(),
        };
        let (blocked, stop, conns, live) = (bh.blocked.clone(), bh.stop.clone(), bh.conns.clone(), bh.live.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                if live.load(Ordering::SeqCst) >= BLACKHOLE_MAX_CONNS {
                    continue;
                }
                live.fetch_add(1, Ordering::SeqCst);
                let (blocked, stop, conns, live) = (blocked.clone(), stop.clone(), conns.clone(), live.clone());
                std::thread::spawn(move || {
                    client.set_nonblocking(false).unwrap();
                    // Blocked: the client is accepted but not connected through yet.
                    while blocked.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let Ok(server) = TcpStream::connect(target) else {
                        live.fetch_sub(1, Ordering::SeqCst);
                        return;
                    };
                    conns.lock().unwrap().push(client.try_clone().unwrap());
                    conns.lock().unwrap().push(server.try_clone().unwrap());
                    let back = {
                        let (from, to) = (server.try_clone().unwrap(), client.try_clone().unwrap());
                        let (blocked, stop) = (blocked.clone(), stop.clone());
                        std::thread::spawn(move || pump(from, to, &blocked, &stop))
                    };
                    pump(client, server, &blocked, &stop);
                    let _ = back.join();
                    live.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        bh
    }

    /// Stops forwarding, silently, in both directions (see the type's doc).
    pub fn block(&self) {
        self.blocked.store(true, Ordering::SeqCst);
    }

    /// Forwards again, on existing and new connections (see the type's doc).
    pub fn unblock(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }

    /// Closes every proxied connection (both sides), as a restarting middlebox would.
    pub fn cut(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.cut();
    }
}

/// Copies `from` to `to` until EOF, an error or `stop`; while `blocked`, reads nothing and holds
/// what it read.
fn pump(mut from: TcpStream, mut to: TcpStream, blocked: &AtomicBool, stop: &AtomicBool) {
    // Short read timeouts so a block or a stop is noticed between reads.
    from.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut buf = [0u8; 16384];
    loop {
        while blocked.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => break,
        };
        // Read just before a block began: held until the block ends, not dropped.
        while blocked.load(Ordering::SeqCst) && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

// ---------------------------------------------------------------------------------------------
// Several hookcast nodes on one Redis

static CLUSTERS: AtomicUsize = AtomicUsize::new(0);

/// Rights for every topic the cluster tests use, system topics included: anyone may publish
/// and subscribe (as in the single-node tests' configs).
pub fn open_rules() -> Value {
    json!([{ "topics": ["**", "$runs", "$runs/**", "$deliveries"], "scopes": ["subscribe", "publish"] }])
}

/// Merges `extra` into `base`: objects key by key (recursively), anything else replaced.
pub fn merge(base: &mut Value, extra: &Value) {
    match (base, extra) {
        (Value::Object(b), Value::Object(e)) => {
            for (k, v) in e {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, e) => *b = e.clone(),
    }
}

/// Node names: "a", "b", "c", …
pub fn node_name(i: usize) -> String {
    assert!(i < 26, "at most 26 nodes");
    char::from(b'a' + i as u8).to_string()
}

/// hookcast nodes sharing one Redis under one cluster name unique to the test; each node keeps
/// its listen address across restarts, so reconnecting clients find it again.
pub struct Cluster {
    /// The running nodes, in start order ("a" first).
    pub nodes: Vec<Daemon>,
    /// `cluster.name`, unique per cluster started by this process.
    pub name: String,
    redis: String,
    extra: Value,
    configs: Vec<String>,
    listens: Vec<String>,
}

impl Cluster {
    /// Starts `n` nodes on `redis_url`; `extra` (a JSON object) is merged into every node's
    /// config, `cluster` key by key.
    pub fn start(n: usize, redis_url: &str, extra: &Value) -> Cluster {
        let name = format!("t-{}-{}", std::process::id(), CLUSTERS.fetch_add(1, Ordering::SeqCst));
        let mut c = Cluster {
            nodes: Vec::new(),
            name,
            redis: redis_url.to_string(),
            extra: extra.clone(),
            configs: Vec::new(),
            listens: Vec::new(),
        };
        for _ in 0..n {
            c.add_node();
        }
        c
    }

    /// The config node `i` runs with.
    pub fn config_for(&self, i: usize) -> Value {
        let mut cfg = json!({
            "listen": "127.0.0.1:0",
            "public": open_rules(),
            "cluster": { "redis": self.redis, "name": self.name, "node": node_name(i) },
        });
        merge(&mut cfg, &self.extra);
        cfg
    }

    /// Starts one more node (the next name) and returns its index.
    pub fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        self.configs.push(self.config_for(i).to_string());
        self.listens.push(format!("127.0.0.1:{}", free_port()));
        let d = self.launch(i);
        self.nodes.push(d);
        i
    }

    /// Starts node `i` and waits until it is linked to Redis (before that it answers, and
    /// refuses new work with 503).
    fn launch(&self, i: usize) -> Daemon {
        let d = Daemon::start_args(Some(&self.configs[i]), &["--listen", &self.listens[i]]);
        // Generous: the first connect is immediate on loopback.
        assert!(linked(&d, Duration::from_secs(10)), "node {} did not link to Redis", node_name(i));
        d
    }

    /// `127.0.0.1:PORT` of node `i`, stable across restarts.
    pub fn listen(&self, i: usize) -> &str {
        &self.listens[i]
    }

    /// SIGKILL node `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        let d = &mut self.nodes[i];
        let _ = d.child.kill();
        let _ = d.child.wait();
    }

    /// Starts node `i` again (SIGKILL first if it still runs) with the same config and address.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        // The old process's port may linger a moment in the kernel; the launch waits for the
        // new one's address line, and a bind failure shows in its panic.
        self.nodes[i] = self.launch(i);
    }

    /// Waits until every node is linked to Redis (bounded, generous).
    pub fn wait_healthy(&self) -> bool {
        self.nodes.iter().all(|d| linked(d, Duration::from_secs(10)))
    }
}

/// Whether node `d` reports both Redis links up within `within`.
pub fn linked(d: &Daemon, within: Duration) -> bool {
    eventually(within, || d.get("/metrics").text().lines().any(|l| l == "hookcast_redis_up 1"))
}

// ---------------------------------------------------------------------------------------------
// The harness's own tests: they need redis-server but not the cluster feature.

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::need_tool;

    #[test]
    #[ignore = "needs redis-server"]
    fn redis_starts_answers_and_keeps_its_aof_across_restarts() {
        need_tool("redis-server", "redis-server");
        let mut r = RedisServer::start(RedisOpts { aof: true });
        assert!(ping(r.port(), Duration::from_secs(1)));
        assert_eq!(r.url(0), format!("redis://127.0.0.1:{}/0", r.port()));
        assert_eq!(r.command(&["SET", "k", "before"]), "+OK\r\n");
        assert_eq!(r.command(&["XADD", "s", "1-1", "f", "v"]), "$3\r\n1-1\r\n");
        // appendfsync always: what was acknowledged survives SIGKILL.
        r.kill();
        assert!(!ping(r.port(), Duration::from_millis(200)), "it is down");
        r.restart();
        assert_eq!(r.command(&["GET", "k"]), "$6\r\nbefore\r\n");
        assert_eq!(r.command(&["XLEN", "s"]), ":1\r\n");
        assert_eq!(r.command(&["XRANGE", "s", "-", "+"]), "*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
        // A clean stop and start keeps it too.
        r.restart();
        assert_eq!(r.command(&["GET", "k"]), "$6\r\nbefore\r\n");
        assert_eq!(r.command(&["FLUSHALL"]), "+OK\r\n");
        assert_eq!(r.command(&["GET", "k"]), "$-1\r\n");
        assert!(r.command(&["NOSUCHCOMMAND"]).starts_with("-ERR"));
    }

    #[test]
    #[ignore = "needs redis-server"]
    fn redis_without_aof_forgets_on_restart() {
        need_tool("redis-server", "redis-server");
        let mut r = RedisServer::start(RedisOpts::default());
        assert_eq!(r.command(&["SET", "k", "v"]), "+OK\r\n");
        r.restart();
        assert_eq!(r.command(&["GET", "k"]), "$-1\r\n");
    }

    #[test]
    #[ignore = "needs redis-server"]
    fn redis_pauses_and_resumes() {
        need_tool("redis-server", "redis-server");
        let r = RedisServer::start(RedisOpts::default());
        let mut held = TcpStream::connect(("127.0.0.1", r.port())).unwrap();
        assert!(ping_on(&mut held, Duration::from_secs(2)));
        r.pause();
        // Stopped: the kernel still accepts and buffers, nothing answers.
        assert!(!ping_on(&mut held, Duration::from_millis(300)), "a stopped Redis answered");
        r.resume();
        // The PING sent while stopped is answered now, then a fresh one.
        let mut late = [0u8; 7];
        held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        held.read_exact(&mut late).unwrap();
        assert_eq!(&late, b"+PONG\r\n");
        assert!(ping_on(&mut held, Duration::from_secs(5)));
        assert!(ping(r.port(), Duration::from_secs(5)));
    }

    #[test]
    #[ignore = "needs redis-server"]
    fn blackhole_blocks_silently_and_unblocks() {
        need_tool("redis-server", "redis-server");
        let r = RedisServer::start(RedisOpts::default());
        let bh = Blackhole::start(SocketAddr::from(([127, 0, 0, 1], r.port())));
        let mut old = TcpStream::connect(bh.addr).unwrap();
        assert!(ping_on(&mut old, Duration::from_secs(5)), "through the proxy");
        bh.block();
        assert!(!ping_on(&mut old, Duration::from_millis(300)), "answered while blocked");
        let mut new = TcpStream::connect(bh.addr).expect("accepted while blocked");
        assert!(!ping_on(&mut new, Duration::from_millis(300)), "a new connection answered while blocked");
        // Neither side was closed: a read sees no EOF, only silence.
        let mut b = [0u8; 1];
        old.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        assert!(matches!(old.read(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock));
        bh.unblock();
        // The held PINGs go through late: one answer each, then fresh ones work.
        for s in [&mut old, &mut new] {
            let mut late = [0u8; 7];
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.read_exact(&mut late).unwrap();
            assert_eq!(&late, b"+PONG\r\n");
            assert!(ping_on(s, Duration::from_secs(5)));
        }
        assert!(ping(bh.addr.port(), Duration::from_secs(5)));
        bh.cut();
        old.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert!(matches!(old.read(&mut b), Ok(0) | Err(_)), "cut closes");
    }

    #[test]
    fn cluster_configs_merge_extra_fields_into_the_cluster_section() {
        let mut c = json!({ "cluster": { "redis": "r", "name": "n", "node": "a" }, "sse": { "retry_ms": 1 } });
        merge(&mut c, &json!({ "cluster": { "log_max_events": 100 }, "sse": { "retry_ms": 200 }, "hooks": [] }));
        assert_eq!(
            c,
            json!({
                "cluster": { "redis": "r", "name": "n", "node": "a", "log_max_events": 100 },
                "sse": { "retry_ms": 200 },
                "hooks": [],
            })
        );
        assert_eq!((node_name(0), node_name(2)), ("a".to_string(), "c".to_string()));
    }
}
