//! One client connection: its socket, input bytes, output queue and protocol state. This is the
//! transport state machine only: what a request means is decided by the handlers (`api`), and
//! what a WebSocket op does by `api::stream`.
//!
//! ```text
//!             accept
//!               │
//!               ▼
//!   ┌──────────► Head ──(head with a body)──► Body ──(body complete)──┐
//!   │             │ (head without a body)                             │
//!   │             ▼                                                   │
//!   │          dispatch ◄─────────────────────────────────────────────┘
//!   │             ├──(response)───────────────────────────────────────────────────► answer
//!   │             ├──(202, journal not caught up)──► AwaitDurable ──(durable)──────► answer
//!   │             ├──(webhook answered by its run)─► AwaitRun ──(run ended)──► AwaitDurable
//!   │             ├──(GET /poll, nothing yet)──────► Poll ──(event or timeout)─────► answer
//!   │             ├──(GET /events)─────────────────► Subscriber (SSE)
//!   │             └──(GET /ws, 101)────────────────► Subscriber (WebSocket: ops, ping, close)
//!   │                                                     │ (close frame, protocol error,
//!   │                                                     │  access revoked by a reload)
//!   └─(keep-alive)── answer ──(Connection: close)──► Closing ◄─┘
//!                                                      │ ▲ (error response, timeout answer)
//!                                   (output flushed,   ▼ │ from Head or Body
//!                                    write side shut)  Lingering ──(EOF or 2 s)──► closed
//! ```
//!
//! Every state change goes through `Conn::transition`, which checks the pair in debug builds;
//! a state being rebuilt is `State::Transitioning`, never seen live. [`Conn::process`] consumes
//! requests from the input buffer while the output queue is short (pipelining with
//! backpressure). The loop feeds it bytes, flushes its queue and acts on [`Conn::want_close`]. A
//! read stops at the input cap with bytes possibly left in the kernel; readiness is
//! edge-triggered and will not report them again, so once `process` has made room the loop reads
//! again by itself ([`Conn::wants_read`]). An idle subscriber holds no input buffer and no output
//! buffer: the struct itself and its pattern ids are all it costs.

use crate::api::stream::{self, OpReply};
use crate::api::{self, Outcome};
use crate::app::{Ack, App};
use crate::auth::{Caller, Client, Credential};
use crate::buf::{self, OutQueue, SocketResult};
use crate::filter::{Filter, Subject};
use crate::http::chunked::ChunkedDecoder;
use crate::http::request::{self, BodyKind, Head, Method};
use crate::http::response::{Persist, Response};
use crate::hub::{Event, PatternId, Wire};
use crate::metrics::Transport;
use crate::ws::frame::{self, Opcode};
use crate::ws::message::Incoming;
use crate::ws::ops::{self, OpError};
pub use crate::ws::session::WsSession;
use mio::net::TcpStream;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::num::NonZeroU64;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[cfg(test)]
mod tests;

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
const FIRST_BATCH: NonZeroU64 = NonZeroU64::MAX;

/// The byte stream under a connection: a TCP socket in the daemon, bytes in memory in tests.
pub trait Socket: Read + Write {
    /// Shuts the write side, so the peer sees the end of our output.
    fn shutdown_write(&self);
}

impl Socket for TcpStream {
    fn shutdown_write(&self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

/// How the answer to the request being served is written, and how many came before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// Whether the connection stays open after the answer.
    persist: Persist,
    /// A HEAD request: the answer has no body.
    head_only: bool,
    /// Requests answered on this connection before this one.
    served: u32,
}

/// A body being received.
#[derive(Debug)]
pub struct PendingBody {
    head: Head,
    framing: BodyFraming,
    body: Vec<u8>,
    /// Requests answered on this connection before this one.
    served: u32,
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
    reply: Reply,
}

/// An acknowledgement waiting for the journal.
#[derive(Debug)]
pub struct AwaitDurable {
    seq: u64,
    resp: Response,
    reply: Reply,
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
    reply: Reply,
    /// When the credential it was asked with expires (unix seconds).
    expires: Option<u64>,
    /// Only events passing it answer the poll.
    filter: Option<Box<Filter>>,
}

/// An event subscriber: a Server-Sent Events stream, or a WebSocket when `ws` is set.
#[derive(Debug)]
pub struct Subscriber {
    /// Interned pattern ids in the hub.
    pub patterns: Box<[PatternId]>,
    /// Wire format for events.
    pub wire: Wire,
    /// The last event id queued (fan-out skips anything not newer).
    pub last_id: u64,
    /// While catching up from history: the eviction mark of the previous batch, plus one
    /// (half the size of an `Option<u64>`: idle memory per subscriber is counted in bytes, and
    /// this makes room for `filter`).
    pub catch_up: Option<NonZeroU64>,
    /// Whether bytes were written since the last keep-alive tick (for stall detection).
    pub wrote: bool,
    /// The WebSocket side of the stream, when it is one.
    pub ws: Option<Box<WsSession>>,
    /// The token the client authenticated with: checked again at each WebSocket op and on a
    /// reload (boxed: most subscribers have none, and idle memory is counted in bytes).
    pub token: Option<Box<Credential>>,
    /// Who connected, as resolved from the handshake (behind a trusted proxy: the client, not
    /// the proxy): every later decision is made for it, never for the TCP peer.
    pub client: Client,
    /// Counted in `App`'s per-client streams (it came through a trusted proxy).
    counted: bool,
    /// Only events passing it are queued (live and replayed); none costs the fan-out one check.
    pub filter: Option<Box<Filter>>,
}

impl Subscriber {
    /// Who the subscriber is under the configuration in force now.
    fn caller(&self, app: &App) -> Caller {
        match &self.token {
            Some(credential) => app.auth.caller_with(credential, self.client),
            None => app.auth.identify(None, self.client),
        }
    }
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
    /// The state was taken out to build the next one from it (the marker says which it was). Never
    /// live: every path that takes a state ends in `Conn::transition`.
    Transitioning(Marker),
}

/// A state's name without its data, for checking transitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// [`State::Head`].
    Head,
    /// [`State::Body`].
    Body,
    /// [`State::Subscriber`].
    Subscriber,
    /// [`State::AwaitRun`].
    AwaitRun,
    /// [`State::Poll`].
    Poll,
    /// [`State::AwaitDurable`].
    AwaitDurable,
    /// [`State::Closing`].
    Closing,
    /// [`State::Lingering`].
    Lingering,
    /// [`State::Transitioning`].
    Transitioning,
}

impl State {
    /// Which state this is.
    pub fn marker(&self) -> Marker {
        match self {
            State::Head { .. } => Marker::Head,
            State::Body(_) => Marker::Body,
            State::Subscriber(_) => Marker::Subscriber,
            State::AwaitRun(_) => Marker::AwaitRun,
            State::Poll(_) => Marker::Poll,
            State::AwaitDurable(_) => Marker::AwaitDurable,
            State::Closing => Marker::Closing,
            State::Lingering => Marker::Lingering,
            State::Transitioning(_) => Marker::Transitioning,
        }
    }
}

/// Whether a connection may go from `from` to `to` (the diagram in the module doc).
fn legal(from: Marker, to: Marker) -> bool {
    use Marker::*;
    match (from, to) {
        (_, Transitioning) | (Transitioning, _) => false,
        // A request is answered (keep-alive or close) or fails.
        (Head | Body | AwaitRun | AwaitDurable | Poll, Head | Closing) => true,
        (Head, Body) => true,
        // A complete request becomes a held answer or a stream.
        (Head | Body, Subscriber | Poll | AwaitRun | AwaitDurable) => true,
        // The run is over; its delivery's record is not durable yet.
        (AwaitRun, AwaitDurable) => true,
        (Subscriber, Closing) => true,
        (Closing, Lingering) => true,
        _ => false,
    }
}

/// What the connection's deadline is for: which timeout it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// A request head must arrive (`limits.header_timeout`).
    Head,
    /// Keep-alive between requests (`limits.idle_timeout`).
    Idle,
    /// A request body must arrive (`limits.body_timeout`).
    Body,
    /// A webhook's run must end.
    Run,
    /// The journal must confirm an answer's record.
    Durable,
    /// A long poll's own timeout.
    Poll,
    /// The final response must be read by the client (`limits.idle_timeout`).
    Closing,
    /// Reading and dropping input after the final response.
    Linger,
    /// The credential a stream was opened with (a JWT, or a ticket standing for one) expires.
    Expiry,
}

/// Time from `app.now` until `exp` (unix seconds), for [`Conn::arm`]. `app.now` was read when the
/// loop woke, earlier than the clock is read here: without the difference the timer fires that
/// much before `exp`, when the token is still valid (a long poll then answered 200, not 401).
fn until_unix(app: &App, exp: u64) -> Duration {
    let left = Duration::from_millis(exp.saturating_mul(1000).saturating_sub(crate::clock::unix_ms()));
    left + Instant::now().saturating_duration_since(app.now)
}

/// RFC 6455 close code (private range) for a session whose credential expired.
pub const CLOSE_EXPIRED: u16 = 4001;

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

/// One connection over a socket `S` (a TCP stream in the daemon).
#[derive(Debug)]
pub struct Conn<S: Socket = TcpStream> {
    /// The loop's token for this connection.
    pub token: usize,
    /// The socket.
    pub sock: S,
    /// The client address.
    pub ip: IpAddr,
    /// The TCP peer's port (adnanh's `remote-addr` carries it).
    pub port: u16,
    /// Unprocessed input; empty (and unallocated) when idle.
    inbuf: Vec<u8>,
    /// Output waiting for the socket.
    pub out: OutQueue,
    /// Protocol state; changed only by [`Conn::transition`].
    state: State,
    /// When this connection times out in its current state.
    pub deadline: Option<Instant>,
    /// Which timeout `deadline` is.
    timer: Timer,
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

/// Whether journal record `seq` is durable (always, without a journal): an answer that depends
/// on it may go out.
fn is_durable(app: &App, seq: u64) -> bool {
    // In a cluster, answered through the waiters even when settled: the answer needs the id.
    app.ack_of(seq) == Ack::Done(None) && (app.cluster.is_none() || seq == 0)
}

/// A publish acknowledgement (JSON with `"id"`) with the id the cluster's log gave.
fn with_id(body: &[u8], id: u64) -> Option<Vec<u8>> {
    let mut v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let slot = v.as_object_mut()?.get_mut("id")?;
    *slot = serde_json::json!(id);
    serde_json::to_vec(&v).ok()
}

impl<S: Socket> Conn<S> {
    /// A freshly accepted connection, waiting for its first request.
    pub fn new(token: usize, sock: S, ip: IpAddr, port: u16, app: &App) -> Conn<S> {
        Conn {
            token,
            sock,
            ip,
            port,
            inbuf: Vec::new(),
            out: OutQueue::default(),
            state: State::Head { served: 0 },
            deadline: Some(app.now + app.cfg.limits.header_timeout),
            timer: Timer::Head,
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

    /// The connection's state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Whether a request is being read (its head or its body).
    pub fn is_parsing(&self) -> bool {
        matches!(self.state, State::Head { .. } | State::Body(_))
    }

    /// Whether this connection streams events (SSE or WebSocket).
    pub fn is_stream(&self) -> bool {
        matches!(self.state, State::Subscriber(_))
    }

    /// Whether this connection is a WebSocket subscriber.
    pub fn is_ws(&self) -> bool {
        matches!(&self.state, State::Subscriber(s) if s.ws.is_some())
    }

    /// Whether the final response is out and the connection only drops what still arrives.
    pub fn is_lingering(&self) -> bool {
        matches!(self.state, State::Lingering)
    }

    /// Whether the peer's end of stream ends the connection: nothing is left to answer (a
    /// subscriber, a lingering close) and nothing more will be read.
    pub fn ends_at_eof(&self) -> bool {
        self.is_stream() || self.is_lingering()
    }

    /// Whether this connection is streaming events.
    pub fn subscriber(&mut self) -> Option<&mut Subscriber> {
        match &mut self.state {
            State::Subscriber(s) => Some(s),
            _ => None,
        }
    }

    /// Takes the state out to build the next one from it, leaving the non-live marker.
    fn take_state(&mut self) -> State {
        let from = self.state.marker();
        debug_assert!(from != Marker::Transitioning, "state taken twice");
        std::mem::replace(&mut self.state, State::Transitioning(from))
    }

    /// Moves to state `to`: the one place the state changes (from the live state, or from the one
    /// [`Conn::take_state`] took out). Debug builds check the pair against the module diagram.
    fn transition(&mut self, to: State) {
        let from = match self.state {
            State::Transitioning(from) => from,
            ref live => live.marker(),
        };
        debug_assert!(legal(from, to.marker()), "illegal transition {from:?} -> {:?}", to.marker());
        self.state = to;
    }

    /// Sets the deadline: `timer` runs out `after` from now.
    fn arm(&mut self, app: &App, timer: Timer, after: Duration) {
        self.deadline = Some(app.now + after);
        self.timer = timer;
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
            match buf::read_once(&mut self.sock, scratch) {
                (n, SocketResult::Continue) => {
                    if keep {
                        self.inbuf.extend_from_slice(&scratch[..n]);
                    }
                    if n < scratch.len() && !to_eagain {
                        return;
                    }
                }
                (_, SocketResult::WouldBlock) => return,
                // The peer's half-close: what it asked for is still answered.
                (_, SocketResult::Closed) => {
                    self.eof = true;
                    return;
                }
                (_, SocketResult::Error) => {
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
            State::Closing | State::Lingering | State::Transitioning(_) => false,
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
                SocketResult::Closed | SocketResult::Error => {
                    // Bytes were waiting: the client will never see them.
                    app.metrics.send_errors[self.transport as usize] += 1;
                    self.close = Close::Now;
                    return;
                }
                SocketResult::WouldBlock => return,
                SocketResult::Continue => {}
            }
            match &self.state {
                State::Closing => {
                    // Half-close so the client sees the end of our response, then drain its input.
                    self.sock.shutdown_write();
                    self.transition(State::Lingering);
                    self.arm(app, Timer::Linger, LINGER);
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
        let mark = (mark != FIRST_BATCH).then(|| mark.get() - 1);
        let patterns: Vec<&str> = s.patterns.iter().filter_map(|&p| app.hub.pattern_text(p)).collect();
        let batch = REPLAY_BATCH.min(app.cfg.limits.max_queued_bytes / 2);
        let r = app.hub.replay(&patterns, s.last_id, batch, mark);
        s.catch_up = if r.done { None } else { Some(NonZeroU64::MIN.saturating_add(app.hub.evict_mark())) };
        if r.gap {
            // The client must refetch its state; it is consistent again from just before the
            // first event we still have (or from now, when there is none).
            let resume = r.events.first().map_or_else(|| app.live_cursor(), |e| e.id - 1);
            self.out.push_owned(s.wire.reset_event(s.last_id, resume));
            s.last_id = resume;
        }
        let mut sent = 0;
        for ev in &r.events {
            s.last_id = ev.id;
            if let Some(f) = &s.filter {
                if !f.matches(&Subject::new(&ev.kind, &ev.data, ev.data_is_json)) {
                    continue;
                }
            }
            self.out.push_shared(ev.encoded(s.wire));
            sent += 1;
        }
        app.metrics.messages_sent[self.transport as usize] += sent;
        // A batch the filter emptied still moved the cursor: the caller flushes and asks for
        // the next one.
        r.gap || !r.events.is_empty()
    }

    /// Tells a live subscriber that events through `through` may be missing (the cluster's log
    /// lost them or this node could not read them): it refetches its state and goes on from
    /// there. One catching up from history notices the hole itself (see `Hub::lost_through`).
    pub fn push_reset(&mut self, through: u64) {
        let State::Subscriber(s) = &mut self.state else { return };
        if s.catch_up.is_some() || s.last_id >= through {
            return;
        }
        self.out.push_owned(s.wire.reset_event(s.last_id, through));
        s.last_id = through;
    }

    /// Queues a live event for a subscriber. Returns false when the subscriber is over its
    /// queue limit and must be cut loose (it resumes from history with `Last-Event-ID`).
    pub fn push_event(&mut self, ev: &Rc<Event>, app: &mut App) -> bool {
        self.push_event_as(ev, &Subject::new(&ev.kind, &ev.data, ev.data_is_json), app)
    }

    /// [`Conn::push_event`] with the event as filters see it, made once per event by the
    /// fan-out, so its data is parsed at most once however many filters look at it.
    pub fn push_event_as(&mut self, ev: &Rc<Event>, subject: &Subject, app: &mut App) -> bool {
        if let State::Poll(p) = &self.state {
            if ev.id > p.since && p.filter.as_ref().is_none_or(|f| f.matches(subject)) {
                let patterns: Vec<&str> = p.patterns.iter().filter_map(|&id| app.hub.pattern_text(id)).collect();
                if let Some(r) = stream::poll_answer(app, &patterns, p.since, p.limit, &[], p.filter.as_deref()) {
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
        if s.filter.as_ref().is_some_and(|f| !f.matches(subject)) {
            return true;
        }
        let bytes = ev.encoded(s.wire);
        let limit = app.cfg.limits.max_queued_bytes;
        if self.out.len() + bytes.len() > limit {
            // The queue may be long only because the loop's write slices have not reached this
            // subscriber yet (a burst): what its socket takes now does not count against it.
            self.flush(app);
            if self.out.len() + bytes.len() > limit || self.close != Close::No {
                self.close = Close::Slow;
                return false;
            }
        }
        self.out.push_shared(bytes);
        app.metrics.messages_sent[self.transport as usize] += 1;
        true
    }

    /// Handles the connection's deadline having passed.
    pub fn on_timeout(&mut self, app: &mut App) {
        self.deadline = None;
        if self.timer == Timer::Expiry && matches!(self.state, State::Subscriber(_)) {
            self.expire(app);
            return;
        }
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
            State::Poll(p) if p.expires.is_some_and(|e| crate::clock::unix_ms() / 1000 >= e) => {
                app.metrics.sessions_expired[Transport::Poll as usize] += 1;
                let r = stream::expired();
                self.end_poll(app, r);
            }
            State::Poll(p) => {
                let r = stream::poll_timed_out(p.since);
                self.end_poll(app, r);
            }
            // Idle keep-alive, a client that never started, or a stuck final write: just close.
            _ => self.close = Close::Now,
        }
    }

    /// Queues an error response and moves to Closing (the request stream cannot be trusted).
    fn fail(&mut self, app: &mut App, resp: Response) {
        app.metrics.response(resp.status);
        // Bytes that are not HTTP (or not the HTTP we serve); not a timeout or a size limit.
        if matches!(resp.status, 400 | 414 | 417 | 431 | 501 | 505) {
            app.metrics.protocol_errors[self.transport as usize] += 1;
        }
        log::debug!("{} {}: {}", self.ip, resp.status, String::from_utf8_lossy(&resp.body).trim_end());
        self.out.push_owned(resp.to_bytes(Persist::Close, false, app.date()));
        self.enter_closing(app);
    }

    fn enter_closing(&mut self, app: &mut App) {
        self.transition(State::Closing);
        self.inbuf = Vec::new();
        // A client that never reads its final response is dropped after the idle timeout.
        self.arm(app, Timer::Closing, app.cfg.limits.idle_timeout);
    }

    /// Consumes complete requests (or WebSocket messages) from the input buffer and answers
    /// them, in order, each state taking its bytes in its own `on_*_bytes`.
    pub fn process(&mut self, app: &mut App) {
        let mut pos = 0;
        self.held = false;
        loop {
            let more = match self.state {
                State::Head { .. } => self.on_head_bytes(app, &mut pos),
                State::Body(_) => self.on_body_bytes(app, &mut pos),
                State::Subscriber(_) => self.on_ws_bytes(app, &mut pos),
                State::AwaitRun(_) | State::Poll(_) | State::AwaitDurable(_) => self.on_held_bytes(),
                State::Closing | State::Lingering | State::Transitioning(_) => {
                    pos = self.inbuf.len();
                    false
                }
            };
            if !more {
                break;
            }
        }
        debug_assert!(self.state.marker() != Marker::Transitioning, "a taken state was not replaced");
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

    /// Waiting for a head: parses the next one from `inbuf[*pos..]` and starts its request.
    /// Whether to go on with the input.
    fn on_head_bytes(&mut self, app: &mut App, pos: &mut usize) -> bool {
        let State::Head { served } = self.state else { return false };
        if self.out.len() > PIPELINE_OUT_LIMIT {
            self.held = true;
            return false; // let the client read before we answer more
        }
        let input = &self.inbuf[*pos..];
        if input.is_empty() {
            if self.eof {
                self.close_or_finish();
            }
            return false;
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
                } else if self.timer == Timer::Idle {
                    // First byte of the next request: the head timeout starts now.
                    self.arm(app, Timer::Head, app.cfg.limits.header_timeout);
                }
                false
            }
            Err(e) => {
                self.fail(app, Response::error(e.status(), &e.to_string()));
                false
            }
            Ok(Some((head, used))) => {
                *pos += used;
                self.start_body(app, head, served);
                true
            }
        }
    }

    /// Receiving a body: takes what of it `inbuf[*pos..]` holds; dispatches the request once it
    /// is complete. Whether to go on with the input.
    fn on_body_bytes(&mut self, app: &mut App, pos: &mut usize) -> bool {
        let State::Body(pending) = &mut self.state else { return false };
        let input = &self.inbuf[*pos..];
        let max = app.cfg.limits.max_body_bytes;
        let done = match &mut pending.framing {
            BodyFraming::Length(left) => {
                let take = input.len().min(*left as usize);
                pending.body.extend_from_slice(&input[..take]);
                *pos += take;
                *left -= take as u64;
                *left == 0
            }
            BodyFraming::Chunked(dec) => match dec.decode(input, &mut pending.body, max) {
                Ok((used, done)) => {
                    *pos += used;
                    done
                }
                Err(e) => {
                    self.fail(app, Response::error(e.status(), &e.to_string()));
                    return false;
                }
            },
        };
        if !done {
            if self.eof {
                self.close = Close::Now;
            }
            return false;
        }
        let State::Body(pending) = self.take_state() else { unreachable!("matched Body above") };
        let PendingBody { head, body, served, .. } = *pending;
        self.dispatch(app, head, body, served);
        true
    }

    /// A subscriber: a WebSocket one takes the messages in `inbuf[*pos..]`; an SSE one has
    /// nothing to read and drops it. Whether to go on with the input.
    fn on_ws_bytes(&mut self, app: &mut App, pos: &mut usize) -> bool {
        let State::Subscriber(s) = &mut self.state else { return false };
        let Some(ws) = s.ws.as_mut() else {
            *pos = self.inbuf.len();
            return false;
        };
        if *pos >= self.inbuf.len() {
            if self.eof {
                // Gone without a close frame (1006 on their side): nothing to answer.
                self.close = Close::Now;
            }
            return false;
        }
        if self.out.len() > app.cfg.limits.max_queued_bytes {
            self.held = true;
            return false; // an echo peer that sends faster than it reads: wait for it
        }
        match ws.asm.feed(&mut self.inbuf[*pos..]) {
            Err(reason) => {
                app.metrics.protocol_errors[Transport::Ws as usize] += 1;
                self.ws_close(app, reason.code, reason.reason);
                false
            }
            Ok(f) => {
                *pos += f.consumed;
                match f.item {
                    Some(item) => {
                        self.ws_incoming(app, item);
                        true
                    }
                    None => f.consumed > 0,
                }
            }
        }
    }

    /// A held answer (run, poll, journal): pipelined requests wait until it is out; a client
    /// that hangs up meanwhile is gone. Never goes on.
    fn on_held_bytes(&mut self) -> bool {
        if self.eof {
            self.close = Close::Now;
        }
        false
    }

    fn close_or_finish(&mut self) {
        if self.out.is_empty() {
            self.close = Close::Now;
        } else {
            // Answer what was asked before the client half-closed, then go.
            self.transition(State::Closing);
        }
    }

    /// A complete head arrived: decide how its body is framed, answering limit errors early.
    fn start_body(&mut self, app: &mut App, head: Head, served: u32) {
        let max = api::body_limit(app, &head) as u64;
        let framing = match head.body {
            BodyKind::None | BodyKind::Length(0) => {
                self.take_state();
                self.dispatch(app, head, Vec::new(), served);
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
        let body = Vec::with_capacity(cap.min(64 * 1024));
        self.transition(State::Body(Box::new(PendingBody { head, framing, body, served })));
        self.arm(app, Timer::Body, app.cfg.limits.body_timeout);
    }

    /// Answers one complete request; its state was taken out (`take_state`), and every way out
    /// of here makes the next one.
    fn dispatch(&mut self, app: &mut App, head: Head, body: Vec<u8>, served: u32) {
        debug_assert!(matches!(self.state, State::Transitioning(_)), "dispatch without taking the state");
        app.metrics.messages_received[self.transport as usize] += 1;
        let reply = Reply {
            persist: Persist::new(head.keep_alive && !self.eof, head.version_minor),
            head_only: head.method == Method::Head,
            served,
        };
        match api::handle(app, (self.ip, self.port), &head, body) {
            Outcome::Respond(resp) => self.answer(app, resp, reply),
            Outcome::Subscribe(sub) => {
                let Some(counted) = self.open_stream(app, sub.client, reply) else { return };
                let mut s =
                    self.subscribe(app, sub.head, &sub.patterns, sub.wire, None, sub.token, sub.client, counted);
                s.filter = sub.filter;
                self.start_stream(app, s, sub.last_event_id);
            }
            Outcome::Durable { seq, resp } => self.answer_when_durable(app, seq, resp, reply),
            Outcome::Poll(p) => {
                let Some(counted) = self.open_stream(app, p.client, reply) else { return };
                app.metrics.switch(self.transport, Transport::Poll);
                self.transport = Transport::Poll;
                let patterns = p.patterns.iter().map(|pat| app.hub.subscribe(self.token, pat)).collect();
                // Held no longer than its credential lasts.
                let wait = p.expires.map_or(p.timeout, |e| p.timeout.min(until_unix(app, e)));
                self.arm(app, Timer::Poll, wait);
                let (client, since, limit, expires, filter) = (p.client, p.since, p.limit, p.expires, p.filter);
                let poll = PollWait { patterns, client, counted, since, limit, reply, expires, filter };
                self.transition(State::Poll(Box::new(poll)));
            }
            Outcome::AwaitRun { run, hook, seq, wait } => {
                app.run_waiters.entry(run).or_default().push(self.token);
                if !is_durable(app, seq) {
                    // The run starts only once the delivery is durable: if the journal fails
                    // first, the answer is a 503 rather than a wait for a run that may never start.
                    app.durable_waiters.entry(seq).or_default().push(self.token);
                }
                self.arm(app, Timer::Run, wait);
                self.transition(State::AwaitRun(Box::new(AwaitRun { run, hook, seq, reply })));
            }
            Outcome::Upgrade(up) => {
                let Some(counted) = self.open_stream(app, up.client, reply) else { return };
                let ws = WsSession::new(app.cfg.ws.max_message_bytes, up.echo);
                app.metrics.response(101);
                let mut s = self.subscribe(
                    app,
                    up.head,
                    &up.patterns,
                    Wire::Ws,
                    Some(Box::new(ws)),
                    up.token,
                    up.client,
                    counted,
                );
                s.filter = up.filter;
                self.start_stream(app, s, up.last_event_id);
            }
        }
    }

    /// Counts a stream (SSE, WebSocket, long poll) against its client's limit when it came
    /// through a trusted proxy (at accept only the proxy's address was known). Some(whether it
    /// was counted), or None after answering 503 when the client already holds its share.
    fn open_stream(&mut self, app: &mut App, client: Client, reply: Reply) -> Option<bool> {
        match app.open_stream(self.ip, client.ip) {
            Ok(counted) => Some(counted),
            Err(open) => {
                log::debug!("{}: refused a stream via {}: {open} already open", client.ip, self.ip);
                let r = Response::error(503, "too many connections from your address").with("Retry-After", "10");
                self.answer(app, r, reply);
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
        token: Option<Credential>,
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
            last_id: app.live_cursor(),
            catch_up: None,
            wrote: false,
            ws,
            token,
            client,
            counted,
            filter: None,
        }
    }

    /// Enters the streaming state, replaying history first when the client resumes.
    fn start_stream(&mut self, app: &mut App, mut s: Subscriber, resume_from: Option<u64>) {
        if let Some(since) = resume_from {
            s.last_id = since;
            s.catch_up = Some(FIRST_BATCH);
        }
        let expires = s.token.as_ref().and_then(|c| c.expires());
        self.transition(State::Subscriber(s));
        self.deadline = None;
        if let Some(exp) = expires {
            // A stream never outlives its credential.
            self.arm(app, Timer::Expiry, until_unix(app, exp));
        }
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
        if matches!(item, Incoming::Text(_) | Incoming::Binary(_)) {
            app.metrics.messages_received[Transport::Ws as usize] += 1;
        }
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
            Incoming::Binary(_) => {
                app.metrics.protocol_errors[Transport::Ws as usize] += 1;
                self.ws_text(&ops::error(&OpError {
                    op: None,
                    error: "binary messages are not understood; send JSON text".into(),
                }))
            }
            Incoming::Text(t) => match ops::parse(&t) {
                Ok(op) => self.ws_op(app, op),
                Err(e) => {
                    app.metrics.protocol_errors[Transport::Ws as usize] += 1;
                    self.ws_text(&ops::error(&e))
                }
            },
        }
    }

    /// Has the handlers carry out a client op and does what they answer.
    fn ws_op(&mut self, app: &mut App, op: ops::Op) {
        let State::Subscriber(s) = &mut self.state else { return };
        let who = s.caller(app);
        match stream::ws_op(app, &who, self.token, &mut s.patterns, op) {
            OpReply::Send(text) => self.ws_text(&text),
            OpReply::Reauth { ack, credential } => {
                let expires = credential.expires();
                s.token = Some(Box::new(credential));
                self.deadline = None;
                if let Some(exp) = expires {
                    self.arm(app, Timer::Expiry, until_unix(app, exp));
                }
                self.ws_text(&ack);
            }
            OpReply::State { ack, patterns } => {
                let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
                // Up to where the stream stands: a live one has been sent everything up to the
                // head (`last_id` only moves with what matched), one catching up gets the rest
                // by replay, which now covers the new patterns too.
                let through = if s.catch_up.is_some() { s.last_id } else { app.live_cursor() };
                let mut state = stream::state_events(app, &who, &refs, through);
                state.retain(|ev| {
                    s.filter.as_ref().is_none_or(|f| f.matches(&Subject::new(&ev.kind, &ev.data, ev.data_is_json)))
                });
                self.ws_text(&ack);
                for ev in state {
                    self.out.push_shared(ev.encoded(Wire::Ws));
                }
            }
            OpReply::Filter { ack, filter } => {
                s.filter = filter;
                self.ws_text(&ack);
            }
            OpReply::Resume { ack, since } => {
                s.last_id = since;
                s.catch_up = Some(FIRST_BATCH);
                self.ws_text(&ack);
                self.replay_batch(app);
            }
            // Acknowledged, like POST /publish, only once the event is durable.
            OpReply::Published { ack, seq } if is_durable(app, seq) => self.ws_text(&ack),
            OpReply::Published { ack, seq } => {
                if let Some(ws) = s.ws.as_mut() {
                    ws.pending_acks.push_back((seq, ack));
                }
                app.durable_waiters.entry(seq).or_default().push(self.token);
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
        let State::AwaitRun(w) = self.take_state() else { unreachable!("matched AwaitRun above") };
        let resp = api::deliver::run_answer(app, &w.hook, run);
        // The run is over, but the delivery is acknowledged only once its record is durable.
        self.answer_when_durable(app, w.seq, resp, w.reply);
        self.process(app);
    }

    /// Answers now if journal record `seq` is durable (or there is no journal), else holds the
    /// answer until it is.
    fn answer_when_durable(&mut self, app: &mut App, seq: u64, resp: Response, reply: Reply) {
        if is_durable(app, seq) {
            self.answer(app, resp, reply);
        } else {
            app.durable_waiters.entry(seq).or_default().push(self.token);
            self.arm(app, Timer::Durable, DURABLE_WAIT);
            self.transition(State::AwaitDurable(Box::new(AwaitDurable { seq, resp, reply })));
        }
    }

    /// The journal made everything up to `durable` durable (or failed): send the answers this
    /// connection held for it — an HTTP response, or WebSocket publish acks.
    pub fn finish_durable(&mut self, app: &mut App) {
        match &mut self.state {
            State::Subscriber(s) => {
                let Some(ws) = s.ws.as_mut() else { return };
                let mut ready = Vec::new();
                while let Some((seq, _)) = ws.pending_acks.front() {
                    let ack = app.ack_of(*seq);
                    if ack == Ack::Pending {
                        break;
                    }
                    let (_, text) = ws.pending_acks.pop_front().expect("front exists");
                    ready.push(match ack {
                        Ack::Done(Some(id)) => {
                            with_id(text.as_bytes(), id).and_then(|t| String::from_utf8(t).ok()).unwrap_or(text)
                        }
                        Ack::Done(None) | Ack::Pending => text,
                        Ack::Failed(why) => ops::error(&OpError { op: Some("publish".into()), error: why.into() }),
                        // Publishes carry no delivery id: the log never calls one a duplicate.
                        Ack::Duplicate => {
                            ops::error(&OpError { op: Some("publish".into()), error: "not acknowledged".into() })
                        }
                    });
                }
                for text in ready {
                    self.ws_text(&text);
                }
            }
            State::AwaitDurable(w) if app.ack_of(w.seq) != Ack::Pending => {
                let State::AwaitDurable(w) = self.take_state() else { unreachable!("matched AwaitDurable above") };
                let resp = match app.ack_of(w.seq) {
                    Ack::Done(Some(id)) => match with_id(&w.resp.body, id) {
                        Some(body) => Response { body, ..w.resp },
                        None => w.resp,
                    },
                    Ack::Duplicate => app.duplicate_answer(w.seq),
                    Ack::Failed(why) => Response::error(503, why).with("Retry-After", "30"),
                    Ack::Done(None) | Ack::Pending => w.resp,
                };
                self.answer(app, resp, w.reply);
                self.process(app);
            }
            State::AwaitRun(w) => {
                if let Ack::Failed(why) = app.ack_of(w.seq) {
                    let State::AwaitRun(w) = self.take_state() else { unreachable!("matched AwaitRun above") };
                    self.answer(app, Response::error(503, why).with("Retry-After", "30"), w.reply);
                    self.process(app);
                }
            }
            _ => {}
        }
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
    fn answer(&mut self, app: &mut App, resp: Response, reply: Reply) {
        app.metrics.response(resp.status);
        self.out.push_owned(resp.to_bytes(reply.persist, reply.head_only, app.date()));
        if reply.persist.keeps() {
            self.transition(State::Head { served: reply.served + 1 });
            self.arm(app, Timer::Idle, app.cfg.limits.idle_timeout);
        } else {
            self.enter_closing(app);
        }
    }

    /// Answers a held long poll and returns to serving requests on this connection.
    fn end_poll(&mut self, app: &mut App, resp: Response) {
        if !matches!(self.state, State::Poll(_)) {
            return;
        }
        let State::Poll(p) = self.take_state() else { unreachable!("matched Poll above") };
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
        self.answer(app, resp, p.reply);
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
            .find(|p| stream::may_subscribe(app, &who, p).is_err())
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

    /// Ends a stream whose credential expired: a WebSocket with close code [`CLOSE_EXPIRED`],
    /// an SSE stream with a comment saying why (its EventSource reconnects, with a fresh token
    /// or cookie if the page has one).
    fn expire(&mut self, app: &mut App) {
        let State::Subscriber(s) = &self.state else { return };
        app.metrics.sessions_expired[self.transport as usize] += 1;
        log::debug!("{}: the stream's token expired; ending it", s.client.ip);
        let reason = "token expired; reconnect with a fresh token";
        if s.ws.is_some() {
            self.ws_close(app, CLOSE_EXPIRED, reason);
        } else {
            self.out.push_owned(format!(": {reason}\n\n").into_bytes());
            self.unsubscribe(app);
            self.enter_closing(app);
        }
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
