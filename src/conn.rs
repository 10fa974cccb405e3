//! One client connection: its socket, input bytes, output queue and protocol state.
//!
//! ```text
//!            accept
//!              │
//!              ▼
//!   ┌──────► Head ──(head with body)──► Body ──(body complete)──┐
//!   │          │ (complete head, no body)                        │
//!   │          ▼                                                 │
//!   └─ keep-alive ◄─────────────── dispatch ◄────────────────────┘
//!                                   │   │
//!        (GET /events) Subscriber ◄─┘   └─► Closing ──(flushed)──► Lingering ──► closed
//!                                        (error or Connection: close)
//! ```
//!
//! Transitions happen in [`Conn::process`], which consumes requests from the input buffer while
//! the output queue is short (pipelining with backpressure). The loop feeds it bytes, flushes its
//! queue and acts on [`Conn::want_close`]. A read stops at the input cap with bytes possibly left
//! in the kernel; readiness is edge-triggered and will not report them again, so once `process`
//! has made room the loop reads again by itself ([`Conn::wants_read`]). An idle subscriber holds no input buffer and no output
//! buffer: the struct itself and its pattern ids are all it costs.

use crate::api::{self, Outcome};
use crate::app::App;
use crate::auth::{Caller, Client, Scope, TokenId};
use crate::buf::{Flush, OutQueue};
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::{self, BodyKind, Head, Method};
use crate::http::response::{Persist, Response};
use crate::hub::{Event, PatternId, Wire};
use crate::metrics::Transport;
use crate::ws::frame::{self, Opcode};
use crate::ws::message::{Assembler, Incoming};
use crate::ws::ops::{self, Op, OpError};
use mio::net::TcpStream;
use std::io::{self, Read};
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Output bytes past which pipelined requests wait until the client reads.
const PIPELINE_OUT_LIMIT: usize = 256 * 1024;
/// How long a connection closed after an error keeps reading (and dropping) what the client
/// still sends, so the kernel does not answer it with a reset that destroys our response.
const LINGER: Duration = Duration::from_secs(2);
/// Replay batch size for a resuming subscriber, at most (also bounded by half the queue limit).
const REPLAY_BATCH: usize = 256 * 1024;
/// Input buffer capacity a keep-alive connection keeps between requests.
const KEEP_INBUF: usize = 16 * 1024;
/// How long an acknowledgement may wait for the journal before it becomes a 503.
const DURABLE_WAIT: Duration = Duration::from_secs(10);
/// `Subscriber::catch_up` before the first replay batch (no eviction mark yet).
const FIRST_BATCH: u64 = u64::MAX;

/// A body being received.
#[derive(Debug)]
pub struct PendingBody {
    head: Head,
    framing: BodyFraming,
    body: Vec<u8>,
}

#[derive(Debug)]
enum BodyFraming {
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// A webhook request whose answer is its command's output.
#[derive(Debug)]
pub struct AwaitRun {
    run: crate::runner::sched::RunId,
    hook: String,
    seq: u64,
    persist: Persist,
    head_only: bool,
    served: u32,
}

/// An acknowledgement waiting for the journal.
#[derive(Debug)]
pub struct AwaitDurable {
    seq: u64,
    resp: Response,
    persist: Persist,
    head_only: bool,
    served: u32,
}

/// A held long-poll request.
#[derive(Debug)]
pub struct PollWait {
    patterns: Box<[PatternId]>,
    client: Client,
    /// Counted in `App`'s per-client streams (it came through a trusted proxy).
    counted: bool,
    since: u64,
    limit: usize,
    persist: Persist,
    head_only: bool,
    served: u32,
}

/// A Server-Sent Events subscriber.
#[derive(Debug)]
pub struct Subscriber {
    /// Interned pattern ids in the hub.
    pub patterns: Box<[PatternId]>,
    /// Wire format for events.
    pub wire: Wire,
    /// The last event id queued (fan-out skips anything not newer).
    pub last_id: u64,
    /// While catching up from history: the eviction mark of the previous batch.
    pub catch_up: Option<u64>,
    /// Whether bytes were written since the last keep-alive tick (for stall detection).
    pub wrote: bool,
    /// The WebSocket side of the stream, when it is one.
    pub ws: Option<Box<WsSession>>,
    /// The token the client authenticated with: checked again at each WebSocket op and on a
    /// reload (boxed: most subscribers have none, and idle memory is counted in bytes).
    pub token: Option<Box<TokenId>>,
    /// Who connected, as resolved from the handshake (behind a trusted proxy: the client, not
    /// the proxy): every later decision is made for it, never for the TCP peer.
    pub client: Client,
    /// Counted in `App`'s per-client streams (it came through a trusted proxy).
    counted: bool,
}

impl Subscriber {
    /// Who the subscriber is under the configuration in force now.
    fn caller(&self, app: &App) -> Caller {
        match &self.token {
            Some(id) => app.auth.caller_with_token(id, self.client),
            None => app.auth.identify(None, self.client),
        }
    }
}

/// What a WebSocket subscriber has beyond an SSE one.
#[derive(Debug)]
pub struct WsSession {
    asm: Assembler,
    /// Pings sent since the client last showed signs of life.
    pub missed_pongs: u8,
    echo: bool,
    /// Publish acks held until their journal record is durable: (journal seq, ack).
    pending_acks: std::collections::VecDeque<(u64, String)>,
}

/// Where a connection is in its life.
#[derive(Debug)]
pub enum State {
    /// Waiting for a request head; `served` counts requests already answered.
    Head {
        /// Requests answered on this connection.
        served: u32,
    },
    /// Receiving a request body.
    Body(Box<PendingBody>),
    /// Streaming events.
    Subscriber(Subscriber),
    /// Waiting for a run's output to answer a webhook.
    AwaitRun(Box<AwaitRun>),
    /// A long poll waiting for an event or its timeout.
    Poll(Box<PollWait>),
    /// An answer ready but held until its journal record is durable.
    AwaitDurable(Box<AwaitDurable>),
    /// A final response is queued; close once it is written.
    Closing,
    /// Write side shut; reading and dropping input until EOF or the deadline.
    Lingering,
}

/// What the loop should do with a connection after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Keep it.
    No,
    /// Close now (peer gone, error, timeout with nothing to say).
    Now,
    /// Slow consumer: close now and count it.
    Slow,
}

/// One connection.
#[derive(Debug)]
pub struct Conn {
    /// The loop's token for this connection.
    pub token: usize,
    /// The socket.
    pub sock: TcpStream,
    /// The client address.
    pub ip: IpAddr,
    /// The TCP peer's port (adnanh's `remote-addr` carries it).
    pub port: u16,
    /// Unprocessed input; empty (and unallocated) when idle.
    inbuf: Vec<u8>,
    /// Output waiting for the socket.
    pub out: OutQueue,
    /// Protocol state.
    pub state: State,
    /// When this connection times out in its current state.
    pub deadline: Option<Instant>,
    /// How the connection is counted in metrics.
    pub transport: Transport,
    /// The peer closed its write side.
    pub eof: bool,
    /// The last read stopped at the input cap, not at an empty socket: bytes may wait in the
    /// kernel that no edge-triggered readiness event will announce again.
    unread: bool,
    /// `process` stopped with input left because the output was over its limit: once the
    /// client has read, it must run again although no new input arrives.
    held: bool,
    close: Close,
}

impl Conn {
    /// A freshly accepted connection, waiting for its first request.
    pub fn new(token: usize, sock: TcpStream, ip: IpAddr, port: u16, app: &App) -> Conn {
        Conn {
            token,
            sock,
            ip,
            port,
            inbuf: Vec::new(),
            out: OutQueue::default(),
            state: State::Head { served: 0 },
            deadline: Some(app.now + app.cfg.limits.header_timeout),
            transport: Transport::Http,
            eof: false,
            unread: false,
            held: false,
            close: Close::No,
        }
    }

    /// What the loop should do now.
    pub fn want_close(&self) -> Close {
        self.close
    }

    /// Whether this connection is streaming events.
    pub fn subscriber(&mut self) -> Option<&mut Subscriber> {
        match &mut self.state {
            State::Subscriber(s) => Some(s),
            _ => None,
        }
    }

    /// Reads everything available (up to `cap` buffered), stopping at a short read unless
    /// `to_eagain`. Input is kept only while a request is being parsed; a subscriber's or a
    /// closing connection's input is dropped.
    pub fn read(&mut self, scratch: &mut [u8], cap: usize, to_eagain: bool) {
        let keep = self.keeps_input();
        // Every way out of the loop but the cap means the socket is empty (a short read, see the
        // loop's `drive`), at its end, or broken.
        self.unread = false;
        loop {
            if keep && self.inbuf.len() >= cap {
                // Enough to decide on; the rest stays in the kernel until we have processed this,
                // and then `wants_read` has the loop come back for it: no new edge will.
                self.unread = true;
                return;
            }
            match self.sock.read(scratch) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(n) => {
                    if keep {
                        self.inbuf.extend_from_slice(&scratch[..n]);
                    }
                    if n < scratch.len() && !to_eagain {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.close = Close::Now;
                    return;
                }
            }
        }
    }

    /// Whether input is waiting that `process` did not take (backpressure or the read cap).
    pub fn has_input(&self) -> bool {
        !self.inbuf.is_empty()
    }

    /// Whether input waits for the output to drain (pipelined requests, WebSocket messages): when
    /// it has, `process` must run again.
    pub fn held_by_output(&self) -> bool {
        self.held && self.close == Close::No
    }

    /// Whether input read in this state is kept for `process` (else it is read and dropped).
    fn keeps_input(&self) -> bool {
        match &self.state {
            State::Head { .. } | State::Body(_) | State::AwaitRun(_) | State::Poll(_) | State::AwaitDurable(_) => true,
            State::Subscriber(s) => s.ws.is_some(),
            State::Closing | State::Lingering => false,
        }
    }

    /// Whether the loop must read again without waiting for readiness: the last read stopped at
    /// `cap` with bytes possibly left in the kernel (edge-triggered, so no event will come for
    /// them), and there is room for them now (a body was moved out, a pipelined request taken,
    /// or the state drops what it reads).
    pub fn wants_read(&self, cap: usize) -> bool {
        self.unread && !self.eof && self.close == Close::No && (!self.keeps_input() || self.inbuf.len() < cap)
    }

    /// Writes queued output; on a subscriber that is catching up, pulls the next history batch
    /// whenever the queue empties.
    pub fn flush(&mut self, app: &mut App) {
        loop {
            let before = self.out.len();
            let result = self.out.flush(&mut self.sock);
            if let State::Subscriber(s) = &mut self.state {
                s.wrote |= self.out.len() < before;
            }
            match result {
                Flush::Closed => {
                    self.close = Close::Now;
                    return;
                }
                Flush::WouldBlock => return,
                Flush::Drained => {}
            }
            match &self.state {
                State::Closing => {
                    // Half-close so the client sees the end of our response, then drain its input.
                    let _ = self.sock.shutdown(std::net::Shutdown::Write);
                    self.state = State::Lingering;
                    self.deadline = Some(app.now + LINGER);
                    self.inbuf = Vec::new();
                    if self.eof {
                        self.close = Close::Now;
                    }
                    return;
                }
                State::Subscriber(s) if s.catch_up.is_some() => {
                    if !self.replay_batch(app) {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    /// Queues the next batch of history for a catching-up subscriber. Returns whether anything
    /// was queued (so the caller flushes again). The first batch of a resume passes no eviction
    /// mark, so every gap counts; later batches pass the mark of the batch before.
    fn replay_batch(&mut self, app: &mut App) -> bool {
        let State::Subscriber(s) = &mut self.state else { return false };
        let Some(mark) = s.catch_up else { return false };
        let mark = (mark != FIRST_BATCH).then_some(mark);
        let patterns: Vec<&str> = s.patterns.iter().filter_map(|&p| app.hub.pattern_text(p)).collect();
        let batch = REPLAY_BATCH.min(app.cfg.limits.max_queued_bytes / 2);
        let r = app.hub.replay(&patterns, s.last_id, batch, mark);
        s.catch_up = if r.done { None } else { Some(app.hub.evict_mark()) };
        if r.gap {
            // The client must refetch its state; it is consistent again from just before the
            // first event we still have (or from now, when there is none).
            let resume = r.events.first().map_or(app.hub.last_id(), |e| e.id - 1);
            self.out.push_owned(api::reset_event(s.wire, s.last_id, resume));
            s.last_id = resume;
        }
        for ev in &r.events {
            self.out.push_shared(ev.encoded(s.wire));
            s.last_id = ev.id;
        }
        app.metrics.messages_sent[self.transport as usize] += r.events.len() as u64;
        r.gap || !r.events.is_empty()
    }

    /// Queues a live event for a subscriber. Returns false when the subscriber is over its
    /// queue limit and must be cut loose (it resumes from history with `Last-Event-ID`).
    pub fn push_event(&mut self, ev: &Rc<Event>, app: &mut App) -> bool {
        if let State::Poll(p) = &self.state {
            if ev.id > p.since {
                let patterns: Vec<&str> = p.patterns.iter().filter_map(|&id| app.hub.pattern_text(id)).collect();
                let answer = api::poll_answer(app, &patterns, p.since, p.limit);
                if let Some(r) = answer {
                    app.metrics.messages_sent[Transport::Poll as usize] += 1;
                    self.end_poll(app, r);
                }
            }
            return true;
        }
        let State::Subscriber(s) = &mut self.state else { return true };
        if ev.id <= s.last_id || s.catch_up.is_some() {
            // Already queued through another pattern or by replay; or history will bring it.
            return true;
        }
        s.last_id = ev.id;
        let bytes = ev.encoded(s.wire);
        if self.out.len() + bytes.len() > app.cfg.limits.max_queued_bytes {
            self.close = Close::Slow;
            return false;
        }
        self.out.push_shared(bytes);
        app.metrics.messages_sent[self.transport as usize] += 1;
        true
    }

    /// Handles the connection's deadline having passed.
    pub fn on_timeout(&mut self, app: &mut App) {
        self.deadline = None;
        if !self.out.is_empty() {
            // The client is not reading what we already owe it: nothing more to say.
            self.close = Close::Now;
            return;
        }
        match &self.state {
            State::Head { .. } if !self.inbuf.is_empty() => {
                self.fail(app, Response::error(408, "request head not received in time"));
            }
            State::Body(_) => self.fail(app, Response::error(408, "request body not received in time")),
            State::AwaitRun(_) => self.fail(app, Response::error(504, "the hook's command did not finish in time")),
            State::AwaitDurable(_) => self.fail(
                app,
                Response::error(503, "the journal did not confirm the write in time").with("Retry-After", "5"),
            ),
            State::Poll(p) => {
                // Nothing arrived: an empty answer, the cursor unchanged.
                let since = p.since;
                let body = format!("{{\"events\":[],\"next\":{since}}}\n");
                self.end_poll(app, Response::new(200, "application/json", body).with("Cache-Control", "no-cache"));
            }
            // Idle keep-alive, a client that never started, or a stuck final write: just close.
            _ => self.close = Close::Now,
        }
    }

    /// Queues an error response and moves to Closing (the request stream cannot be trusted).
    fn fail(&mut self, app: &mut App, resp: Response) {
        app.metrics.response(resp.status);
        log::debug!("{} {}: {}", self.ip, resp.status, String::from_utf8_lossy(&resp.body).trim_end());
        self.out.push_owned(resp.to_bytes(Persist::Close, false, app.date()));
        self.enter_closing(app);
    }

    fn enter_closing(&mut self, app: &mut App) {
        self.state = State::Closing;
        self.inbuf = Vec::new();
        // A client that never reads its final response is dropped after the idle timeout.
        self.deadline = Some(app.now + app.cfg.limits.idle_timeout);
    }

    /// Consumes complete requests from the input buffer and answers them, in order.
    pub fn process(&mut self, app: &mut App) {
        let mut pos = 0;
        self.held = false;
        loop {
            match &mut self.state {
                State::Head { served } => {
                    let served = *served;
                    if self.out.len() > PIPELINE_OUT_LIMIT {
                        self.held = true;
                        break; // let the client read before we answer more
                    }
                    let input = &self.inbuf[pos..];
                    if input.is_empty() {
                        if self.eof {
                            self.close_or_finish();
                        }
                        break;
                    }
                    let limits = request::Limits {
                        max_header_bytes: app.cfg.limits.max_header_bytes,
                        max_uri_bytes: app.cfg.limits.max_uri_bytes,
                    };
                    match request::parse_head(input, &limits) {
                        Ok(None) => {
                            if self.eof {
                                // The client gave up halfway through a head.
                                self.close = Close::Now;
                            } else if served > 0 && self.deadline_is_idle(app) {
                                // First byte of the next request: the head timeout starts now.
                                self.deadline = Some(app.now + app.cfg.limits.header_timeout);
                            }
                            break;
                        }
                        Err(e) => {
                            let msg = e.to_string();
                            self.fail(app, Response::error(e.status(), &msg));
                            break;
                        }
                        Ok(Some((head, used))) => {
                            pos += used;
                            self.start_body(app, head);
                        }
                    }
                }
                State::Body(pending) => {
                    let input = &self.inbuf[pos..];
                    let max = app.cfg.limits.max_body_bytes;
                    let done = match &mut pending.framing {
                        BodyFraming::Length(left) => {
                            let take = input.len().min(*left as usize);
                            pending.body.extend_from_slice(&input[..take]);
                            pos += take;
                            *left -= take as u64;
                            *left == 0
                        }
                        BodyFraming::Chunked(dec) => match dec.decode(input, &mut pending.body, max) {
                            Ok((used, done)) => {
                                pos += used;
                                done
                            }
                            Err(e) => {
                                let status = match e {
                                    crate::http::chunked::ChunkedError::TooLarge => 413,
                                    _ => 400,
                                };
                                self.fail(app, Response::error(status, &e.to_string()));
                                break;
                            }
                        },
                    };
                    if !done {
                        if self.eof {
                            self.close = Close::Now;
                        }
                        break;
                    }
                    let State::Body(pending) = std::mem::replace(&mut self.state, State::Head { served: 0 }) else {
                        unreachable!("matched Body above")
                    };
                    let PendingBody { head, body, .. } = *pending;
                    self.dispatch(app, head, body);
                }
                State::Subscriber(s) => {
                    let Some(ws) = s.ws.as_mut() else {
                        pos = self.inbuf.len();
                        break;
                    };
                    if pos >= self.inbuf.len() {
                        if self.eof {
                            // Gone without a close frame (1006 on their side): nothing to answer.
                            self.close = Close::Now;
                        }
                        break;
                    }
                    if self.out.len() > app.cfg.limits.max_queued_bytes {
                        self.held = true;
                        break; // an echo peer that sends faster than it reads: wait for it
                    }
                    match ws.asm.feed(&mut self.inbuf[pos..]) {
                        Err(reason) => {
                            self.ws_close(app, reason.code, reason.reason);
                            break;
                        }
                        Ok(f) => {
                            pos += f.consumed;
                            match f.item {
                                Some(item) => self.ws_incoming(app, item),
                                None if f.consumed == 0 => break,
                                None => {}
                            }
                        }
                    }
                }
                // Pipelined requests wait until the run (or the poll) answers this one; a client
                // that hangs up meanwhile is gone.
                State::AwaitRun(_) | State::Poll(_) | State::AwaitDurable(_) => {
                    if self.eof {
                        self.close = Close::Now;
                    }
                    break;
                }
                State::Closing | State::Lingering => {
                    pos = self.inbuf.len();
                    break;
                }
            }
        }
        if pos >= self.inbuf.len() {
            if matches!(self.state, State::Head { .. }) && self.inbuf.capacity() <= KEEP_INBUF {
                // A keep-alive client will send again: reuse the buffer rather than free it and
                // allocate it anew for every request (it showed in the intake profile).
                self.inbuf.clear();
            } else {
                // Streams and idle subscribers own no input buffer.
                self.inbuf = Vec::new();
            }
        } else if pos > 0 {
            self.inbuf.drain(..pos);
        }
    }

    fn deadline_is_idle(&self, app: &App) -> bool {
        // The idle deadline is the only one longer than the head timeout from "now".
        self.deadline.is_none_or(|d| d > app.now + app.cfg.limits.header_timeout)
    }

    fn close_or_finish(&mut self) {
        if self.out.is_empty() {
            self.close = Close::Now;
        } else {
            // Answer what was asked before the client half-closed, then go.
            self.state = State::Closing;
        }
    }

    /// A complete head arrived: decide how its body is framed, answering limit errors early.
    fn start_body(&mut self, app: &mut App, head: Head) {
        let max = api::body_limit(app, &head) as u64;
        let framing = match head.body {
            BodyKind::None | BodyKind::Length(0) => {
                self.dispatch(app, head, Vec::new());
                return;
            }
            BodyKind::Length(n) if n > max => {
                self.fail(app, Response::error(413, &format!("request body larger than {max} bytes")));
                return;
            }
            BodyKind::Length(n) => BodyFraming::Length(n),
            BodyKind::Chunked => BodyFraming::Chunked(ChunkedDecoder::new()),
        };
        if head.expect_continue {
            // RFC 9110 §10.1.1: tell the client to send the body we are willing to read.
            self.out.push_owned(b"HTTP/1.1 100 Continue\r\n\r\n".to_vec());
        }
        let cap = match framing {
            BodyFraming::Length(n) => n as usize,
            BodyFraming::Chunked(_) => 0,
        };
        self.state = State::Body(Box::new(PendingBody { head, framing, body: Vec::with_capacity(cap.min(64 * 1024)) }));
        self.deadline = Some(app.now + app.cfg.limits.body_timeout);
    }

    /// Answers one complete request.
    fn dispatch(&mut self, app: &mut App, head: Head, body: Vec<u8>) {
        let served = match self.state {
            State::Head { served } => served,
            _ => 0,
        };
        let head_only = head.method == Method::Head;
        let persist = Persist::new(head.keep_alive && !self.eof, head.version_minor);
        match api::handle(app, (self.ip, self.port), &head, body) {
            Outcome::Respond(resp) => self.answer(app, resp, persist, head_only, served),
            Outcome::Subscribe(sub) => {
                let Some(counted) = self.open_stream(app, sub.client, persist, head_only, served) else { return };
                let s = self.subscribe(app, sub.head, &sub.patterns, sub.wire, None, sub.token, sub.client, counted);
                self.start_stream(app, s, sub.last_event_id);
            }
            Outcome::Durable { seq, resp } => self.answer_when_durable(app, seq, resp, persist, head_only, served),
            Outcome::Poll(p) => {
                let Some(counted) = self.open_stream(app, p.client, persist, head_only, served) else { return };
                app.metrics.switch(self.transport, Transport::Poll);
                self.transport = Transport::Poll;
                let patterns = p.patterns.iter().map(|pat| app.hub.subscribe(self.token, pat)).collect();
                self.deadline = Some(app.now + p.timeout);
                self.state = State::Poll(Box::new(PollWait {
                    patterns,
                    client: p.client,
                    counted,
                    since: p.since,
                    limit: p.limit,
                    persist,
                    head_only,
                    served,
                }));
            }
            Outcome::AwaitRun { run, hook, seq } => {
                app.run_waiters.entry(run).or_default().push(self.token);
                if app.journal.as_ref().is_some_and(|j| j.durable_seq() < seq) {
                    // The run starts only once the delivery is durable: if the journal fails
                    // first, the answer is a 503 rather than a wait for a run that may never start.
                    app.durable_waiters.entry(seq).or_default().push(self.token);
                }
                let wait = app
                    .hooks
                    .get(&hook)
                    .and_then(|h| h.def.timeout_secs)
                    .map_or(app.runner.config().timeout, Duration::from_secs);
                self.deadline = Some(app.now + wait + app.runner.config().kill_grace + Duration::from_secs(10));
                self.state = State::AwaitRun(Box::new(AwaitRun { run, hook, seq, persist, head_only, served }));
            }
            Outcome::Upgrade(up) => {
                let Some(counted) = self.open_stream(app, up.client, persist, head_only, served) else { return };
                let ws = WsSession {
                    asm: Assembler::new(app.cfg.ws.max_message_bytes),
                    missed_pongs: 0,
                    echo: up.echo,
                    pending_acks: std::collections::VecDeque::new(),
                };
                app.metrics.response(101);
                let s = self.subscribe(
                    app,
                    up.head,
                    &up.patterns,
                    Wire::Ws,
                    Some(Box::new(ws)),
                    up.token,
                    up.client,
                    counted,
                );
                self.start_stream(app, s, up.last_event_id);
            }
        }
    }

    /// Counts a stream (SSE, WebSocket, long poll) against its client's limit when it came
    /// through a trusted proxy (at accept only the proxy's address was known). Some(whether it
    /// was counted), or None after answering 503 when the client already holds its share.
    fn open_stream(
        &mut self,
        app: &mut App,
        client: Client,
        persist: Persist,
        head_only: bool,
        served: u32,
    ) -> Option<bool> {
        match app.open_stream(self.ip, client.ip) {
            Ok(counted) => Some(counted),
            Err(open) => {
                log::debug!("{}: refused a stream via {}: {open} already open", client.ip, self.ip);
                let r = Response::error(503, "too many connections from your address").with("Retry-After", "10");
                self.answer(app, r, persist, head_only, served);
                None
            }
        }
    }

    /// Turns the connection into a subscriber (a WebSocket one with `ws`): counts it, queues
    /// the response head, interns its patterns.
    #[allow(clippy::too_many_arguments)]
    fn subscribe(
        &mut self,
        app: &mut App,
        head: Vec<u8>,
        patterns: &[String],
        wire: Wire,
        ws: Option<Box<WsSession>>,
        token: Option<TokenId>,
        client: Client,
        counted: bool,
    ) -> Subscriber {
        let transport = if ws.is_some() { Transport::Ws } else { Transport::Sse };
        if transport == Transport::Sse {
            app.metrics.response(200);
        }
        app.metrics.switch(self.transport, transport);
        self.transport = transport;
        self.out.push_owned(head);
        let patterns = patterns.iter().map(|p| app.hub.subscribe(self.token, p)).collect();
        let token = token.map(Box::new);
        Subscriber {
            patterns,
            wire,
            last_id: app.hub.last_id(),
            catch_up: None,
            wrote: false,
            ws,
            token,
            client,
            counted,
        }
    }

    /// Enters the streaming state, replaying history first when the client resumes.
    fn start_stream(&mut self, app: &mut App, mut s: Subscriber, resume_from: Option<u64>) {
        if let Some(since) = resume_from {
            s.last_id = since;
            s.catch_up = Some(FIRST_BATCH);
        }
        self.state = State::Subscriber(s);
        self.deadline = None;
        self.replay_batch(app);
    }

    /// Queues a WebSocket frame we generated (reply, pong, echo).
    fn ws_send(&mut self, opcode: Opcode, payload: &[u8]) {
        self.out.push_owned(frame::encode_frame(opcode, payload));
    }

    fn ws_text(&mut self, text: &str) {
        self.ws_send(Opcode::Text, text.as_bytes());
    }

    /// Sends a close frame and stops reading messages: the connection closes once it is out.
    fn ws_close(&mut self, app: &mut App, code: u16, reason: &str) {
        self.out.push_owned(frame::encode_close(code, reason));
        self.unsubscribe(app);
        self.enter_closing(app);
    }

    /// One complete message or control frame from a WebSocket client.
    fn ws_incoming(&mut self, app: &mut App, item: Incoming) {
        let State::Subscriber(s) = &mut self.state else { return };
        let Some(ws) = s.ws.as_mut() else { return };
        // Anything at all from the client shows it is alive.
        ws.missed_pongs = 0;
        let echo = ws.echo;
        match item {
            Incoming::Ping(payload) => self.ws_send(Opcode::Pong, &payload),
            Incoming::Pong(_) => {}
            // RFC 6455 §5.5.1: answer a close with a close (echoing the code), then end.
            Incoming::Close(Some((code, _))) => self.ws_close(app, code, ""),
            Incoming::Close(None) => {
                self.ws_send(Opcode::Close, &[]);
                self.unsubscribe(app);
                self.enter_closing(app);
            }
            Incoming::Text(t) if echo => self.ws_send(Opcode::Text, &t),
            Incoming::Binary(b) if echo => self.ws_send(Opcode::Binary, &b),
            Incoming::Binary(_) => self.ws_text(&ops::error(&OpError {
                op: None,
                error: "binary messages are not understood; send JSON text".into(),
            })),
            Incoming::Text(t) => {
                let reply = match ops::parse(&t) {
                    Ok(op) => self.ws_op(app, op),
                    Err(e) => Err(e),
                };
                match reply {
                    Ok(Some(text)) => self.ws_text(&text),
                    Ok(None) => {}
                    Err(e) => self.ws_text(&ops::error(&e)),
                }
            }
        }
    }

    /// Carries out a client op; the reply to send, if any.
    fn ws_op(&mut self, app: &mut App, op: Op) -> Result<Option<String>, OpError> {
        let State::Subscriber(s) = &mut self.state else { return Ok(None) };
        let who = s.caller(app);
        let fail = |op: &str, e: String| OpError { op: Some(op.to_string()), error: e };
        match op {
            Op::Ping => Ok(Some(r#"{"type":"pong"}"#.to_string())),
            Op::Subscribe(list) => {
                for p in &list {
                    crate::topic::validate_pattern(p).map_err(|e| fail("subscribe", format!("{e}: {p:?}")))?;
                    if !app.auth.allows(&who, Scope::Subscribe, p) {
                        return Err(fail("subscribe", format!("not allowed to subscribe to {p:?}")));
                    }
                }
                let mut ids = s.patterns.to_vec();
                for p in &list {
                    let known = ids.iter().any(|&id| app.hub.pattern_text(id) == Some(p.as_str()));
                    if !known {
                        if ids.len() >= api::MAX_PATTERNS {
                            return Err(fail(
                                "subscribe",
                                format!("at most {} topics per connection", api::MAX_PATTERNS),
                            ));
                        }
                        ids.push(app.hub.subscribe(self.token, p));
                    }
                }
                s.patterns = ids.into_boxed_slice();
                Ok(Some(ops::ack("subscribe", serde_json::json!({ "topics": list }))))
            }
            Op::Unsubscribe(list) => {
                let mut ids = s.patterns.to_vec();
                ids.retain(|&id| {
                    let drop = app.hub.pattern_text(id).is_some_and(|t| list.iter().any(|p| p == t));
                    if drop {
                        app.hub.unsubscribe(self.token, id);
                    }
                    !drop
                });
                s.patterns = ids.into_boxed_slice();
                Ok(Some(ops::ack("unsubscribe", serde_json::json!({ "topics": list }))))
            }
            Op::Resume(since) => {
                s.last_id = since;
                s.catch_up = Some(FIRST_BATCH);
                self.ws_text(&ops::ack("resume", serde_json::json!({ "since": since })));
                self.replay_batch(app);
                Ok(None)
            }
            Op::Publish { topic, event, data } => {
                let t = topic.as_str();
                crate::topic::validate_topic(t).map_err(|e| fail("publish", format!("{e}: {t:?}")))?;
                if t.starts_with('$') || !app.auth.allows(&who, Scope::Publish, t) {
                    return Err(fail("publish", format!("not allowed to publish to {t:?}")));
                }
                if !crate::sse::valid_event_name(&event) {
                    return Err(fail("publish", "event type must be 1-64 characters without line breaks".into()));
                }
                if let Some(why) = app.journal_refusal() {
                    return Err(fail("publish", why.into()));
                }
                let (text, is_json) = match data {
                    serde_json::Value::String(s) => (s, false),
                    other => (other.to_string(), true),
                };
                if app.journal.is_some() && text.len() > crate::app::max_event_data(t, &event) {
                    return Err(fail("publish", "event data over the journal's record limit".into()));
                }
                if is_json && crate::hooks::json::check_depth(text.as_bytes(), api::MAX_PUBLISH_DEPTH).is_err() {
                    let max = api::MAX_PUBLISH_DEPTH;
                    return Err(fail("publish", format!("data nested deeper than {max} levels")));
                }
                let ev = app.publish(t, &event, text, is_json);
                let ack = ops::ack("publish", serde_json::json!({ "id": ev.id, "topic": t }));
                let seq = app.last_seq();
                if app.journal.as_ref().is_none_or(|j| j.durable_seq() >= seq) {
                    return Ok(Some(ack));
                }
                // Acknowledged, like POST /publish, only once the event is durable.
                if let Some(ws) = s.ws.as_mut() {
                    ws.pending_acks.push_back((seq, ack));
                }
                app.durable_waiters.entry(seq).or_default().push(self.token);
                Ok(None)
            }
        }
    }

    /// The run this connection waited for has ended: answer with its output, then go on with
    /// any pipelined request.
    pub fn finish_await(&mut self, app: &mut App, run: crate::runner::sched::RunId) {
        let State::AwaitRun(w) = &self.state else { return };
        if w.run != run {
            return; // a stale waiter entry for a token now used by another connection
        }
        let State::AwaitRun(w) = std::mem::replace(&mut self.state, State::Head { served: 0 }) else { unreachable!() };
        let resp = match (app.hooks.get(&w.hook), app.runner.get(run)) {
            (Some(h), Some(r)) => {
                crate::hooks::intake::run_response(&h.def, r.state == crate::runner::RunState::Succeeded, &r.raw)
            }
            _ => Response::error(500, "the run's record is gone"),
        };
        // The run is over, but the delivery is acknowledged only once its record is durable.
        self.answer_when_durable(app, w.seq, resp, w.persist, w.head_only, w.served);
        self.process(app);
    }

    /// Answers now if journal record `seq` is durable (or there is no journal), else holds the
    /// answer until it is.
    fn answer_when_durable(
        &mut self,
        app: &mut App,
        seq: u64,
        resp: Response,
        persist: Persist,
        head_only: bool,
        served: u32,
    ) {
        if app.journal.as_ref().is_none_or(|j| j.durable_seq() >= seq) {
            self.answer(app, resp, persist, head_only, served);
        } else {
            app.durable_waiters.entry(seq).or_default().push(self.token);
            self.deadline = Some(app.now + DURABLE_WAIT);
            self.state = State::AwaitDurable(Box::new(AwaitDurable { seq, resp, persist, head_only, served }));
        }
    }

    /// The journal made everything up to `durable` durable (or failed): send the answers this
    /// connection held for it — an HTTP response, or WebSocket publish acks.
    pub fn finish_durable(&mut self, app: &mut App, durable: u64, failed: bool) {
        if let State::Subscriber(s) = &mut self.state {
            let Some(ws) = s.ws.as_mut() else { return };
            let mut ready = Vec::new();
            while ws.pending_acks.front().is_some_and(|(seq, _)| *seq <= durable || failed) {
                let (seq, ack) = ws.pending_acks.pop_front().expect("front exists");
                ready.push(if seq <= durable {
                    ack
                } else {
                    ops::error(&OpError {
                        op: Some("publish".into()),
                        error: "the journal cannot write; not acknowledged".into(),
                    })
                });
            }
            for text in ready {
                self.ws_text(&text);
            }
            return;
        }
        match &self.state {
            State::AwaitDurable(w) if w.seq <= durable || failed => {}
            State::AwaitRun(w) if w.seq > durable && failed => {
                let State::AwaitRun(w) = std::mem::replace(&mut self.state, State::Head { served: 0 }) else {
                    return;
                };
                let resp = Response::error(503, "the journal cannot write; not acknowledged, send again later")
                    .with("Retry-After", "30");
                self.answer(app, resp, w.persist, w.head_only, w.served);
                self.process(app);
                return;
            }
            _ => return,
        }
        let State::AwaitDurable(w) = std::mem::replace(&mut self.state, State::Head { served: 0 }) else { return };
        let resp = if w.seq > durable {
            Response::error(503, "the journal cannot write; not acknowledged, send again later")
                .with("Retry-After", "30")
        } else {
            w.resp
        };
        self.answer(app, resp, w.persist, w.head_only, w.served);
        self.process(app);
    }

    /// Whether a request was taken that has not been answered yet (a body still arriving, an
    /// acknowledgement waiting for the journal, a run's output): a drain lets these finish.
    pub fn owes_answer(&self) -> bool {
        matches!(self.state, State::Body(_) | State::AwaitDurable(_) | State::AwaitRun(_))
    }

    /// Whether this connection holds an answer until the journal catches up.
    pub fn awaits_journal(&self) -> bool {
        match &self.state {
            State::AwaitDurable(_) | State::AwaitRun(_) => true,
            State::Subscriber(s) => s.ws.as_ref().is_some_and(|w| !w.pending_acks.is_empty()),
            _ => false,
        }
    }

    /// Writes an answer and moves on: back to reading requests, or to closing.
    fn answer(&mut self, app: &mut App, resp: Response, persist: Persist, head_only: bool, served: u32) {
        app.metrics.response(resp.status);
        self.out.push_owned(resp.to_bytes(persist, head_only, app.date()));
        if persist.keeps() {
            self.state = State::Head { served: served + 1 };
            self.deadline = Some(app.now + app.cfg.limits.idle_timeout);
        } else {
            self.enter_closing(app);
        }
    }

    /// Answers a held long poll and returns to serving requests on this connection.
    fn end_poll(&mut self, app: &mut App, resp: Response) {
        let State::Poll(p) = std::mem::replace(&mut self.state, State::Head { served: 0 }) else { return };
        for &id in p.patterns.iter() {
            app.hub.unsubscribe(self.token, id);
        }
        if p.counted {
            app.close_stream(p.client.ip);
        }
        // Back to plain HTTP: an active connection again, not a new one.
        app.metrics.active[Transport::Poll as usize] = app.metrics.active[Transport::Poll as usize].saturating_sub(1);
        app.metrics.active[Transport::Http as usize] += 1;
        self.transport = Transport::Http;
        self.answer(app, resp, p.persist, p.head_only, p.served);
        self.process(app);
    }

    /// After a reload: a subscriber whose token or address no longer allows one of its patterns
    /// is cut off (WebSocket close 1008; an SSE stream gets a comment and is closed, and its
    /// EventSource's reconnect then meets the 401 or 403). True when it was.
    pub fn recheck(&mut self, app: &mut App) -> bool {
        let State::Subscriber(s) = &self.state else { return false };
        let ip = s.client.ip;
        let who = s.caller(app);
        let Some(lost) = s
            .patterns
            .iter()
            .filter_map(|&p| app.hub.pattern_text(p))
            .find(|p| !app.auth.allows(&who, Scope::Subscribe, p))
            .map(str::to_string)
        else {
            return false;
        };
        log::info!("{ip}: no longer allowed to subscribe to {lost:?} after the reload; disconnecting");
        let reason = format!("no longer allowed to subscribe to {lost:?}");
        if s.ws.is_some() {
            // RFC 6455 §7.4.1: 1008, policy violation.
            self.ws_close(app, 1008, &reason);
        } else {
            self.out.push_owned(format!(": {reason}\n\n").into_bytes());
            self.unsubscribe(app);
            self.enter_closing(app);
        }
        true
    }

    /// Releases the hub subscriptions; called once when the connection goes away.
    pub fn unsubscribe(&mut self, app: &mut App) {
        if let State::Poll(p) = &mut self.state {
            for &id in p.patterns.iter() {
                app.hub.unsubscribe(self.token, id);
            }
            p.patterns = Box::new([]);
            if std::mem::take(&mut p.counted) {
                app.close_stream(p.client.ip);
            }
        }
        if let State::Subscriber(s) = &mut self.state {
            for &p in s.patterns.iter() {
                app.hub.unsubscribe(self.token, p);
            }
            s.patterns = Box::new([]);
            if std::mem::take(&mut s.counted) {
                app.close_stream(s.client.ip);
            }
        }
    }
}
