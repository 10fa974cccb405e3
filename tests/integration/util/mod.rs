//! Shared test helpers: start the real `hookcast` binary on 127.0.0.1:0 with a given config,
//! find its port from the log line, and talk to it over plain sockets.
#![allow(dead_code)]

pub mod redis;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_hookcast");

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let p = std::env::temp_dir().join(format!("hookcast-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running daemon; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<String>>,
    pub dir: TempDir,
}

impl Daemon {
    /// Starts `hookcast serve` with `config` (JSON) on an ephemeral loopback port.
    pub fn start(config: &str) -> Daemon {
        Daemon::start_args(Some(config), &[])
    }

    /// Starts with the embedded default config.
    pub fn start_default() -> Daemon {
        Daemon::start_args(None, &[])
    }

    /// Starts with an optional config and extra `serve` arguments.
    pub fn start_args(config: Option<&str>, extra: &[&str]) -> Daemon {
        Daemon::start_env(config, extra, &[])
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A connected socket with generous timeouts.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Sends raw bytes on a new connection and reads one response.
    pub fn raw(&self, bytes: &[u8]) -> Resp {
        let mut s = self.connect();
        s.write_all(bytes).unwrap();
        read_response(&mut s).expect("a response")
    }

    /// One request with `Connection: close`.
    pub fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            req.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.raw(&bytes)
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, &[], b"")
    }

    /// Publishes and returns the event id.
    pub fn publish(&self, topic: &str, data: &str) -> u64 {
        self.publish_with(topic, data, &[])
    }

    pub fn publish_with(&self, topic: &str, data: &str, headers: &[(&str, &str)]) -> u64 {
        let r = self.request("POST", &format!("/publish/{topic}"), headers, data.as_bytes());
        assert_eq!(r.status, 202, "publish failed: {}", r.text());
        r.json()["id"].as_u64().unwrap()
    }

    /// A metric's value (exact name with labels), 0 when absent.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self.get("/metrics").text();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .map(|v| v.parse().unwrap())
            .unwrap_or(0.0)
    }

    /// Sends SIGTERM and waits for exit; returns the status and how long it took.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        signal(&self.child, "TERM");
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return (st, t0.elapsed());
            }
            assert!(t0.elapsed() < Duration::from_secs(10), "daemon did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal with kill(1) (the tests need no libc).
pub fn signal(child: &Child, name: &str) {
    let st = Command::new("kill").arg(format!("-{name}")).arg(child.id().to_string()).status().unwrap();
    assert!(st.success());
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Reads one response (Content-Length framed, or to EOF) from a stream; None at a clean EOF.
pub fn read_response(s: &mut impl Read) -> Option<Resp> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) => {
                assert!(head.is_empty(), "EOF inside a response head: {:?}", String::from_utf8_lossy(&head));
                return None;
            }
            Ok(_) => head.push(byte[0]),
            // A read with a timeout returns EINTR after the process was stopped and resumed
            // (signal(7)), as when the machine freezes and thaws the test run: not the server's.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read error inside a response head: {e} after {:?}", String::from_utf8_lossy(&head)),
        }
    }
    let text = String::from_utf8(head).unwrap();
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let mut r = Resp { status, headers, body: Vec::new() };
    if status == 100 || status == 101 {
        return Some(r);
    }
    match r.header("content-length").map(|v| v.parse::<usize>().unwrap()) {
        Some(n) => {
            r.body = vec![0; n];
            s.read_exact(&mut r.body).unwrap();
        }
        None => {
            let _ = s.read_to_end(&mut r.body);
        }
    }
    Some(r)
}

/// Reads from a stream until `needle` has been seen (or panics after the stream's timeout).
pub fn read_until(s: &mut TcpStream, needle: &str) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(needle) {
        match s.read(&mut buf) {
            Ok(0) => panic!("EOF before {needle:?}; got {:?}", String::from_utf8_lossy(&got)),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            // EINTR after a stop and resume of the test process (see read_response).
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("{e} before {needle:?}; got {:?}", String::from_utf8_lossy(&got)),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Opens an SSE stream and returns the socket after the response head (and the head).
pub fn sse(d: &Daemon, path: &str, extra: &[(&str, &str)]) -> (TcpStream, String) {
    let mut s = d.connect();
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n");
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // Byte by byte, so that nothing after the head is consumed here.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut b).expect("response head"), 1, "EOF in head: {:?}", String::from_utf8_lossy(&head));
        head.push(b[0]);
    }
    (s, String::from_utf8(head).unwrap())
}

/// Whether the peer has closed the stream (reads until EOF, reset, or the timeout).
pub fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 65536];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
        if t0.elapsed() > within {
            return false;
        }
    }
}

/// Waits for a condition, polling, up to `within`.
pub fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// A TCP relay in front of the daemon whose connections the test can cut at will, as a
/// network blip or a restarting proxy would.
pub struct Relay {
    pub addr: SocketAddr,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    /// While true, new clients are accepted but not connected through (see [`Relay::hold`]).
    held: Arc<(Mutex<bool>, std::sync::Condvar)>,
}

impl Relay {
    pub fn start(target: SocketAddr) -> Relay {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let list = conns.clone();
        let held: Arc<(Mutex<bool>, std::sync::Condvar)> = Arc::default();
        let gate = held.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let (lock, cvar) = &*gate;
                drop(cvar.wait_while(lock.lock().unwrap(), |h| *h).unwrap());
                let Ok(server) = TcpStream::connect(target) else { continue };
                list.lock().unwrap().push(client.try_clone().unwrap());
                list.lock().unwrap().push(server.try_clone().unwrap());
                for (mut from, mut to) in [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { addr, conns, held }
    }

    /// Makes clients that connect from now on wait before they reach the daemon, so a test can
    /// act while a reconnecting client is certainly away; [`Relay::release`] lets them through.
    pub fn hold(&self) {
        *self.held.0.lock().unwrap() = true;
    }

    /// Lets held and new clients through again.
    pub fn release(&self) {
        *self.held.0.lock().unwrap() = false;
        self.held.1.notify_all();
    }

    /// Cuts every relayed connection in both directions.
    pub fn cut(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Helpers for the webhook tests (`hooks.rs`).
impl Daemon {
    /// Like [`Daemon::start_args`], with extra environment variables for the daemon (secrets
    /// read from `{"env": …}`, `CREDENTIALS_DIRECTORY`).
    pub fn start_env(config: Option<&str>, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::start_via(&[], config, extra, env)
    }

    /// Like [`Daemon::start_env`], with the binary started by `wrapper` (a program and its
    /// arguments, the binary's path and arguments following), e.g. a shell setting limits.
    pub fn start_via(wrapper: &[&str], config: Option<&str>, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let dir = TempDir::new("daemon");
        let mut cmd = match wrapper.split_first() {
            None => Command::new(BIN),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(BIN);
                c
            }
        };
        cmd.arg("serve").arg("--listen").arg("127.0.0.1:0");
        if let Some(c) = config {
            let path = dir.0.join("hookcast.json");
            std::fs::write(&path, c).unwrap();
            cmd.arg("--config").arg(&path);
        }
        cmd.args(extra).envs(env.iter().copied()).env("HOOKCAST_LOG", "debug");
        Daemon::launch(cmd, dir)
    }

    /// Spawns `cmd` (a hookcast command line that serves) with its stderr collected as the log,
    /// and waits for the address it reports; `dir` lives as long as the daemon.
    pub fn launch(mut cmd: Command, dir: TempDir) -> Daemon {
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn hookcast");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(i) = line.find("listening on http://") {
                    if let Some(tx) = tx.take() {
                        let rest = &line[i + "listening on http://".len()..];
                        let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_string());
                    }
                }
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
            // EOF before the address: the daemon refused to start; say so at once.
            drop(tx);
        });
        let addr = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(a) => a.parse().unwrap(),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("daemon ({cmd:?}) did not report its address; log:\n{}", log.lock().unwrap());
            }
        };
        Daemon { child, addr, log, dir }
    }
}

/// A keep-alive HTTP/1.1 client that survives its server dying: any I/O error drops the
/// connection and is returned; the next request connects again.
pub struct KeepAlive {
    addr: SocketAddr,
    conn: Option<(TcpStream, BufReader<TcpStream>)>,
}

impl KeepAlive {
    pub fn new(addr: SocketAddr) -> KeepAlive {
        KeepAlive { addr, conn: None }
    }

    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<Resp> {
        let r = self.exchange(method, path, headers, body);
        match &r {
            Ok(resp) if resp.header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close")) => self.conn = None,
            Ok(_) => {}
            Err(_) => self.conn = None,
        }
        r
    }

    fn exchange(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<Resp> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1))?;
            s.set_read_timeout(Some(Duration::from_secs(20)))?;
            s.set_nodelay(true)?;
            self.conn = Some((s.try_clone()?, BufReader::new(s)));
        }
        let (w, r) = self.conn.as_mut().unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n", body.len());
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        w.write_all(&bytes)?;
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad(&line))?;
        let mut resp = Resp { status, headers: Vec::new(), body: Vec::new() };
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').ok_or_else(|| bad(l))?;
            resp.headers.push((k.trim().to_string(), v.trim().to_string()));
        }
        let len = resp.header("content-length").and_then(|v| v.parse().ok()).ok_or_else(|| bad("no Content-Length"))?;
        resp.body = vec![0; len];
        r.read_exact(&mut resp.body)?;
        Ok(resp)
    }
}

/// Panics, naming the package, unless `tool` can be run. The test policy: a test that needs a
/// tool the Rust toolchain does not bring is `#[ignore = "needs <tool>: …"]` and calls this
/// first, so `cargo test` leaves it out visibly and `scripts/test.sh` (which passes
/// `--include-ignored`) fails it when the tool is missing: it never passes without running.
pub fn need_tool(tool: &str, package: &str) {
    let found = Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    assert!(found, "{tool} is needed for this test and is not on PATH: apt-get install {package}");
}

/// Starts the independent EventSource client (`tests/js/es_client.mjs`, the npm `eventsource`
/// package) on `url` with extra arguments; returns the process and its JSON lines as they come.
pub fn spawn_es_client(url: &str, args: &[&str]) -> (Child, std::sync::mpsc::Receiver<serde_json::Value>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/js");
    assert!(
        dir.join("node_modules/eventsource").exists(),
        "the EventSource client is not installed: run `npm ci` in tests/js (scripts/test.sh does it)"
    );
    let mut child = Command::new("node")
        .arg(dir.join("es_client.mjs"))
        .arg(url)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node is needed for the EventSource tests");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str(&line) {
                if tx.send(v).is_err() {
                    break;
                }
            }
        }
    });
    (child, rx)
}

/// Runs `program` (the hookcast binary, or a link to it) to completion, at most 10 s: exit
/// code, stdout, stderr.
pub fn run_to_end(program: &std::path::Path, args: &[&str], env: &[(String, String)]) -> (i32, String, String) {
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} {args:?} did not exit within 10 s", program.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A tungstenite WebSocket over a blocking socket, as the tests use it.
pub type Ws = tungstenite::WebSocket<TcpStream>;

/// A WebSocket to the daemon at `path` (like `/ws?topics=a`); reads give up after 10 s.
pub fn ws(d: &Daemon, path: &str) -> Ws {
    use tungstenite::client::IntoClientRequest;
    let req = format!("ws://{}{path}", d.addr).into_client_request().unwrap();
    let (ws, _) = tungstenite::client(req, d.connect()).map_err(|e| format!("{e:?}")).expect("a WebSocket");
    ws.get_ref().set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    ws
}

/// The next text message as JSON (pings are answered by tungstenite while reading).
pub fn ws_json(ws: &mut Ws) -> serde_json::Value {
    use tungstenite::Message;
    loop {
        match ws.read().expect("a WebSocket message") {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}
