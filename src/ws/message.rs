//! Message assembly over `ws::frame` (RFC 6455 §5.4–§5.6, §8.1): turns the bytes a client
//! sends into whole messages and control frames, or into the close code to fail the connection
//! with.
//!
//! This module owns the receive-side protocol rules that span frames: fragmentation, control
//! frames between fragments, incremental UTF-8 validation of text, the message size cap and
//! Close bodies. It does no I/O and knows nothing of sockets or of the closing handshake's
//! timing; the session decides what to send back.
//!
//! # Shape
//!
//! [`Assembler::feed`] takes the connection's unread bytes and returns a [`Feed`]: how many of
//! them it consumed and at most one [`Incoming`] item. `item: None` means "give me more bytes";
//! `consumed` may still be non-zero then, because data-frame payload is taken as soon as it is
//! present (unmasked in place, validated, copied into the message under assembly). So a huge
//! message — one frame or many — is never held twice: the caller's read buffer needs room for
//! one frame header or one whole control frame ([`MIN_BUFFER`] bytes), not for a message. The
//! caller loops:
//!
//! ```text
//! loop {
//!     let Feed { consumed, item } = assembler.feed(&mut unread)?;   // Err → send Close(code)
//!     unread.consume(consumed);
//!     match item { Some(item) => handle(item), None => break }      // wait for readable
//! }
//! ```
//!
//! A control frame is only taken once it is complete (it is at most 139 bytes); a frame header
//! only once it is complete (at most 14 bytes). Until then nothing of it is consumed.
//!
//! # Owned items
//!
//! Items own their bytes (`Vec<u8>`, `String`). A borrowed `&[u8]` into the caller's buffer
//! would save one copy for a message that arrives as a single frame all at once, but it cannot
//! describe a message assembled from fragments or from several reads, and it would pin the
//! caller's buffer until the item is handled. Control payloads are at most 125 bytes, so their
//! copy is noise. Text is kept as `Vec<u8>` (already validated) rather than `String` because
//! building a `String` safely would validate it a second time.

use std::fmt;

use crate::ws::frame::{self, FrameError, Opcode};
use crate::ws::utf8::Utf8Validator;

/// Bytes the caller's read buffer must be able to hold for every frame to make progress: the
/// longest header plus the longest control payload (a control frame is consumed whole).
pub const MIN_BUFFER: usize = frame::MAX_HEADER_LEN + frame::MAX_CONTROL_PAYLOAD;

/// The close code and reason to fail the connection with (§7.1.7, §7.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseReason {
    /// 1002 protocol error, 1007 invalid UTF-8, or 1009 message too big.
    pub code: u16,
    /// A short lowercase reason for the Close frame and the log; always under 123 bytes.
    pub reason: &'static str,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "close {}: {}", self.code, self.reason)
    }
}

impl std::error::Error for CloseReason {}

impl From<FrameError> for CloseReason {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Protocol(rule) => CloseReason { code: e.close_code(), reason: rule },
            // A data frame over the remaining budget: the message would be too big.
            FrameError::TooBig => TOO_BIG,
            FrameError::InvalidUtf8 => CloseReason { code: e.close_code(), reason: "invalid utf-8 in close reason" },
        }
    }
}

/// 1002: a Continuation frame with no fragmented message open (§5.4).
const ORPHAN_CONTINUATION: CloseReason =
    CloseReason { code: 1002, reason: "continuation frame without a message to continue" };

/// 1002: a Text/Binary frame while a fragmented message is open (§5.4).
const INTERLEAVED_MESSAGE: CloseReason =
    CloseReason { code: 1002, reason: "new data frame inside a fragmented message" };

/// 1007: a text message that is not UTF-8 (§8.1).
const INVALID_TEXT: CloseReason = CloseReason { code: 1007, reason: "invalid utf-8 in text message" };

/// 1009: the message (all its fragments) exceeds `max_message`.
const TOO_BIG: CloseReason = CloseReason { code: 1009, reason: "message too big" };

/// One complete thing received from the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A whole text message; the bytes are valid UTF-8.
    Text(Vec<u8>),
    /// A whole binary message.
    Binary(Vec<u8>),
    /// A Ping; answer with a Pong carrying the same payload (§5.5.2).
    Ping(Vec<u8>),
    /// A Pong (solicited or not, §5.5.3).
    Pong(Vec<u8>),
    /// A Close with its status code and reason, or `None` for an empty body. After it, the
    /// assembler discards all further input (§5.5.1: no data may follow a Close).
    Close(Option<(u16, String)>),
}

/// What one `Assembler::feed` call did: bytes consumed from the front of the buffer and the
/// item completed, if any (`None`: more bytes are needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feed {
    /// Bytes to drop from the front of the caller's buffer.
    pub consumed: usize,
    /// The next complete message or control frame.
    pub item: Option<Incoming>,
}

/// Kind of the data message under assembly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
}

/// The data frame whose payload is still arriving.
#[derive(Debug, Clone, Copy)]
struct PayloadInProgress {
    fin: bool,
    mask: [u8; 4],
    /// Payload bytes not yet received.
    remaining: u64,
    /// Payload bytes already received, modulo 4 (the masking key phase).
    phase: usize,
}

/// Reassembles one connection's client frames into messages; see the module doc for the
/// calling protocol.
#[derive(Debug)]
pub struct Assembler {
    /// Cap on a whole message's payload, over all its fragments; beyond it: 1009.
    max_message: usize,
    /// The data message under assembly, if any (its first frame has been seen).
    message: Option<Kind>,
    /// Payload of the message under assembly, already unmasked.
    data: Vec<u8>,
    /// UTF-8 state of a text message under assembly.
    utf8: Utf8Validator,
    /// Set while a data frame's payload is only partly received.
    payload: Option<PayloadInProgress>,
    /// A Close was delivered or the peer broke the protocol: input is discarded from now on.
    done: bool,
}

impl Assembler {
    /// An assembler that accepts messages of at most `max_message` payload bytes.
    pub fn new(max_message: usize) -> Self {
        Assembler {
            max_message,
            message: None,
            data: Vec::new(),
            utf8: Utf8Validator::new(),
            payload: None,
            done: false,
        }
    }

    /// True once a Close has been delivered or an error returned; `feed` then discards input.
    pub fn is_closed(&self) -> bool {
        self.done
    }

    /// Payload bytes held for the message under assembly (for memory accounting).
    pub fn buffered(&self) -> usize {
        self.data.len()
    }

    /// Consumes bytes from the front of `buf` until one item is complete or more bytes are
    /// needed; unmasks payloads in place. On `Err` the connection must be failed with the
    /// returned code (§7.1.7) and the assembler discards all further input.
    pub fn feed(&mut self, buf: &mut [u8]) -> Result<Feed, CloseReason> {
        if self.done {
            return Ok(Feed { consumed: buf.len(), item: None });
        }
        let result = self.step(buf);
        if result.is_err() {
            self.done = true;
            self.discard_message();
        }
        result
    }

    fn step(&mut self, buf: &mut [u8]) -> Result<Feed, CloseReason> {
        let mut pos = 0;
        loop {
            if let Some(p) = self.payload.take() {
                let (n, p) = self.take_payload(p, &mut buf[pos..])?;
                pos += n;
                if p.remaining > 0 {
                    self.payload = Some(p);
                    return Ok(Feed { consumed: pos, item: None });
                }
                if p.fin {
                    let item = self.finish_message()?;
                    return Ok(Feed { consumed: pos, item: Some(item) });
                }
                continue;
            }

            let rest = &mut buf[pos..];
            // What the message under assembly may still grow by; `parse_header` checks data
            // frames against it from the length alone (control frames have their own 125 cap).
            let budget = self.max_message - self.data.len();
            let Some(h) = frame::parse_header(rest, budget as u64)? else {
                return Ok(Feed { consumed: pos, item: None });
            };
            // `parse_header` rejects unmasked frames, so the key is always there.
            let mask = h.mask.unwrap_or_default();

            if h.opcode.is_control() {
                // ≤ 125 bytes, so `as usize` cannot truncate.
                let end = h.header_len + h.payload_len as usize;
                let Some(payload) = rest.get_mut(h.header_len..end) else {
                    return Ok(Feed { consumed: pos, item: None });
                };
                frame::unmask(payload, mask, 0);
                let item = self.control(h.opcode, payload)?;
                return Ok(Feed { consumed: pos + end, item: Some(item) });
            }

            // §5.4: "A fragmented message consists of a single frame with the FIN bit clear and
            // an opcode other than 0, followed by zero or more frames with the FIN bit clear and
            // the opcode set to 0, and terminated by a single frame with the FIN bit set and an
            // opcode of 0." and "The fragments of one message MUST NOT be interleaved between
            // the fragments of another message unless an extension has been negotiated".
            match (h.opcode, self.message) {
                (Opcode::Continuation, None) => return Err(ORPHAN_CONTINUATION),
                (Opcode::Text | Opcode::Binary, Some(_)) => return Err(INTERLEAVED_MESSAGE),
                (Opcode::Text, None) => self.start_message(Kind::Text),
                (Opcode::Binary, None) => self.start_message(Kind::Binary),
                _ => {}
            }
            pos += h.header_len;
            self.payload = Some(PayloadInProgress { fin: h.fin, mask, remaining: h.payload_len, phase: 0 });
        }
    }

    /// Takes what is present of the current data frame's payload: unmasks it in place,
    /// validates text, appends it to the message. Returns the bytes taken and the frame's
    /// updated progress.
    fn take_payload(
        &mut self,
        p: PayloadInProgress,
        buf: &mut [u8],
    ) -> Result<(usize, PayloadInProgress), CloseReason> {
        // `remaining` ≤ budget ≤ usize::MAX, so the `min` fits in usize.
        let n = buf.len().min(usize::try_from(p.remaining).unwrap_or(usize::MAX));
        let chunk = &mut buf[..n];
        frame::unmask(chunk, p.mask, p.phase);
        if self.message == Some(Kind::Text) {
            // Fail fast (Autobahn 6.4.x): on the first bytes that make the prefix invalid, even
            // in the middle of a frame.
            self.utf8.feed(chunk).map_err(|_| INVALID_TEXT)?;
        }
        self.data.extend_from_slice(chunk);
        let progress = PayloadInProgress { remaining: p.remaining - n as u64, phase: (p.phase + n) % 4, ..p };
        Ok((n, progress))
    }

    fn start_message(&mut self, kind: Kind) {
        self.message = Some(kind);
        self.data.clear();
        self.utf8.reset();
    }

    fn discard_message(&mut self) {
        self.message = None;
        self.payload = None;
        self.data = Vec::new();
        self.utf8.reset();
    }

    /// Hands over the completed data message.
    fn finish_message(&mut self) -> Result<Incoming, CloseReason> {
        let kind = self.message.take();
        let data = std::mem::take(&mut self.data);
        match kind {
            Some(Kind::Text) => {
                self.utf8.finish().map_err(|_| INVALID_TEXT)?;
                Ok(Incoming::Text(data))
            }
            _ => Ok(Incoming::Binary(data)),
        }
    }

    /// Interprets a complete, unmasked control frame. §5.4: "Control frames (see Section 5.5)
    /// MAY be injected in the middle of a fragmented message."; the message under assembly is
    /// untouched unless this is a Close.
    fn control(&mut self, opcode: Opcode, payload: &[u8]) -> Result<Incoming, CloseReason> {
        match opcode {
            Opcode::Ping => Ok(Incoming::Ping(payload.to_vec())),
            Opcode::Pong => Ok(Incoming::Pong(payload.to_vec())),
            _ => {
                let body = frame::parse_close_payload(payload)?;
                self.done = true;
                self.discard_message();
                Ok(Incoming::Close(body.map(|(code, reason)| (code, reason.to_owned()))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const MAX: usize = 1 << 16;

    /// A masked client frame with the minimal length encoding.
    fn client(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | op];
        let len = payload.len();
        if len <= 125 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&KEY);
        let mut body = payload.to_vec();
        frame::unmask(&mut body, KEY, 0);
        out.extend_from_slice(&body);
        out
    }

    fn wire(frames: &[Vec<u8>]) -> Vec<u8> {
        frames.concat()
    }

    /// Plays `bytes` into a fresh assembler `chunk` bytes per read, like a connection would:
    /// appends to an unread buffer, feeds until `item: None`, drops what was consumed. Returns
    /// the items, then the error if one ended it, and the largest the unread buffer got.
    fn play(max: usize, bytes: &[u8], chunk: usize) -> (Vec<Incoming>, Option<CloseReason>, usize) {
        let mut asm = Assembler::new(max);
        let mut unread = Vec::new();
        let mut items = Vec::new();
        let mut peak = 0;
        for piece in bytes.chunks(chunk) {
            unread.extend_from_slice(piece);
            peak = peak.max(unread.len());
            loop {
                match asm.feed(&mut unread) {
                    Ok(Feed { consumed, item }) => {
                        unread.drain(..consumed);
                        match item {
                            Some(item) => items.push(item),
                            None => break,
                        }
                    }
                    Err(e) => {
                        assert!(asm.is_closed());
                        return (items, Some(e), peak);
                    }
                }
            }
        }
        (items, None, peak)
    }

    fn items(bytes: &[u8]) -> Vec<Incoming> {
        let (items, err, _) = play(MAX, bytes, bytes.len().max(1));
        assert_eq!(err, None);
        items
    }

    fn error(max: usize, bytes: &[u8]) -> CloseReason {
        let (_, err, _) = play(max, bytes, bytes.len().max(1));
        err.expect("an error")
    }

    fn text(s: &str) -> Incoming {
        Incoming::Text(s.as_bytes().to_vec())
    }

    // --- happy paths ---

    #[test]
    fn rfc_masked_hello() {
        let f = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let mut buf = f.to_vec();
        let mut asm = Assembler::new(MAX);
        assert_eq!(asm.feed(&mut buf), Ok(Feed { consumed: 11, item: Some(text("Hello")) }));
    }

    #[test]
    fn rfc_fragmented_hello() {
        let bytes = wire(&[client(false, 0x1, b"Hel"), client(true, 0x0, b"lo")]);
        assert_eq!(items(&bytes), [text("Hello")]);
    }

    #[test]
    fn each_kind_of_item() {
        let bytes = wire(&[
            client(true, 0x1, b""),
            client(true, 0x2, &[0, 1, 2, 255]),
            client(true, 0x9, b"ping"),
            client(true, 0xA, b"pong"),
            client(true, 0x8, b"\x03\xe8bye"),
        ]);
        assert_eq!(
            items(&bytes),
            [
                text(""),
                Incoming::Binary(vec![0, 1, 2, 255]),
                Incoming::Ping(b"ping".to_vec()),
                Incoming::Pong(b"pong".to_vec()),
                Incoming::Close(Some((1000, "bye".to_owned()))),
            ]
        );
    }

    #[test]
    fn empty_close() {
        assert_eq!(items(&client(true, 0x8, b"")), [Incoming::Close(None)]);
    }

    #[test]
    fn fragmented_text_with_interleaved_ping() {
        // Autobahn 5.6–5.9: a Ping between the fragments is delivered first, the text after.
        let bytes = wire(&[
            client(false, 0x1, "κό".as_bytes()),
            client(true, 0x9, b"hi"),
            client(false, 0x0, &"σμε".as_bytes()[..3]), // ends mid code point
            client(true, 0xA, b""),
            client(true, 0x0, &"σμε".as_bytes()[3..]),
        ]);
        let mut asm = Assembler::new(MAX);
        let mut buf = bytes.clone();
        let first = asm.feed(&mut buf).unwrap();
        // The first fragment is absorbed along with the Ping.
        assert_eq!(first.item, Some(Incoming::Ping(b"hi".to_vec())));
        assert_eq!(first.consumed, 6 + 4 + 6 + 2);
        assert_eq!(asm.buffered(), 4);
        assert_eq!(items(&bytes), [Incoming::Ping(b"hi".to_vec()), Incoming::Pong(vec![]), text("κόσμε"),]);
    }

    #[test]
    fn fragmented_binary_with_empty_fragments() {
        let bytes = wire(&[
            client(false, 0x2, b""),
            client(false, 0x0, b"ab"),
            client(false, 0x0, b""),
            client(true, 0x0, b"c"),
        ]);
        assert_eq!(items(&bytes), [Incoming::Binary(b"abc".to_vec())]);
    }

    #[test]
    fn many_messages_in_one_buffer_come_out_one_per_call() {
        let bytes = wire(&[client(true, 0x1, b"a"), client(true, 0x1, b"b")]);
        let mut asm = Assembler::new(MAX);
        let mut buf = bytes.clone();
        let f = asm.feed(&mut buf).unwrap();
        assert_eq!((f.consumed, f.item), (7, Some(text("a"))));
        let f = asm.feed(&mut buf[7..]).unwrap();
        assert_eq!((f.consumed, f.item), (7, Some(text("b"))));
        let f = asm.feed(&mut buf[14..]).unwrap();
        assert_eq!((f.consumed, f.item), (0, None));
    }

    #[test]
    fn incomplete_header_or_control_frame_consumes_nothing() {
        let ping = client(true, 0x9, b"hello");
        let mut asm = Assembler::new(MAX);
        for n in 0..ping.len() {
            let mut part = ping[..n].to_vec();
            assert_eq!(asm.feed(&mut part), Ok(Feed { consumed: 0, item: None }), "{n} bytes");
            assert_eq!(part, ping[..n], "no byte unmasked before it is consumed");
        }
    }

    #[test]
    fn data_payload_is_consumed_as_it_arrives() {
        let f = client(true, 0x2, &[7; 100]);
        let mut asm = Assembler::new(MAX);
        let mut part = f[..6 + 40].to_vec();
        let got = asm.feed(&mut part).unwrap();
        assert_eq!((got.consumed, got.item), (46, None));
        assert_eq!(asm.buffered(), 40);
        let mut rest = f[46..].to_vec();
        let got = asm.feed(&mut rest).unwrap();
        assert_eq!((got.consumed, got.item), (60, Some(Incoming::Binary(vec![7; 100]))));
        assert_eq!(asm.buffered(), 0);
    }

    #[test]
    fn message_of_exactly_max_is_accepted() {
        let bytes = wire(&[client(false, 0x2, &[1; 60]), client(true, 0x0, &[2; 40])]);
        let (items, err, _) = play(100, &bytes, bytes.len());
        assert_eq!(err, None);
        assert_eq!(items.len(), 1);
    }

    #[test]
    fn ping_is_accepted_when_the_open_message_is_nearly_full() {
        let bytes = wire(&[client(false, 0x2, &[1; 99]), client(true, 0x9, &[9; 125]), client(true, 0x0, &[2; 1])]);
        let (items, err, _) = play(100, &bytes, bytes.len());
        assert_eq!(err, None);
        assert_eq!(items[0], Incoming::Ping(vec![9; 125]));
        assert_eq!(items.len(), 2);
    }

    // --- chunking ---

    fn mixed_sequence() -> Vec<u8> {
        wire(&[
            client(true, 0x1, "Hello-µ@ßöäüàá-UTF-8!!".as_bytes()),
            client(false, 0x1, &"κόσμε".as_bytes()[..5]),
            client(true, 0x9, b"mid"),
            client(false, 0x0, &"κόσμε".as_bytes()[5..7]),
            client(true, 0x0, &"κόσμε".as_bytes()[7..]),
            client(true, 0x2, &[0xAA; 300]),
            client(false, 0x2, &[0xBB; 200]),
            client(true, 0x0, &[0xCC; 70_000]),
            client(true, 0xA, b""),
            client(true, 0x8, b"\x0f\xa0done"),
            client(true, 0x1, b"ignored after close"),
        ])
    }

    fn mixed_expected() -> Vec<Incoming> {
        let mut big = vec![0xBB; 200];
        big.extend_from_slice(&[0xCC; 70_000]);
        vec![
            text("Hello-µ@ßöäüàá-UTF-8!!"),
            Incoming::Ping(b"mid".to_vec()),
            text("κόσμε"),
            Incoming::Binary(vec![0xAA; 300]),
            Incoming::Binary(big),
            Incoming::Pong(vec![]),
            Incoming::Close(Some((4000, "done".to_owned()))),
        ]
    }

    #[test]
    fn all_at_once() {
        let (items, err, _) = play(1 << 20, &mixed_sequence(), usize::MAX);
        assert_eq!(err, None);
        assert_eq!(items, mixed_expected());
    }

    #[test]
    fn byte_at_a_time_gives_the_same_items() {
        let (items, err, peak) = play(1 << 20, &mixed_sequence(), 1);
        assert_eq!(err, None);
        assert_eq!(items, mixed_expected());
        assert!(peak <= MIN_BUFFER, "unread buffer peaked at {peak}");
    }

    #[test]
    fn odd_read_sizes_give_the_same_items() {
        for chunk in [2, 3, 5, 7, 13, 64, 139, 1000, 4096, 65_537] {
            let (items, err, _) = play(1 << 20, &mixed_sequence(), chunk);
            assert_eq!(err, None, "chunk {chunk}");
            assert_eq!(items, mixed_expected(), "chunk {chunk}");
        }
    }

    #[test]
    fn every_two_way_split_gives_the_same_items() {
        let bytes = wire(&[
            client(false, 0x1, "aé".as_bytes()),
            client(true, 0x9, b"p"),
            client(true, 0x0, "€b".as_bytes()),
            client(true, 0x2, &[1; 130]),
            client(true, 0x8, b""),
        ]);
        let want = items(&bytes);
        assert_eq!(want.len(), 4);
        for split in 0..=bytes.len() {
            let mut asm = Assembler::new(MAX);
            let mut got = Vec::new();
            let mut unread = Vec::new();
            for piece in [&bytes[..split], &bytes[split..]] {
                unread.extend_from_slice(piece);
                loop {
                    let f = asm.feed(&mut unread).unwrap();
                    unread.drain(..f.consumed);
                    match f.item {
                        Some(i) => got.push(i),
                        None => break,
                    }
                }
            }
            assert_eq!(got, want, "split at {split}");
        }
    }

    #[test]
    fn huge_single_frame_never_needs_a_big_read_buffer() {
        let payload = vec![b'x'; 1 << 20];
        let bytes = client(true, 0x1, &payload);
        let (items, err, peak) = play(1 << 20, &bytes, 4096);
        assert_eq!(err, None);
        assert_eq!(items, [Incoming::Text(payload)]);
        assert!(peak <= 4096);
    }

    // --- after Close ---

    #[test]
    fn input_after_close_is_discarded() {
        let mut asm = Assembler::new(MAX);
        let mut buf = wire(&[client(true, 0x8, b""), client(true, 0x1, b"late")]);
        let f = asm.feed(&mut buf).unwrap();
        assert_eq!((f.consumed, f.item), (6, Some(Incoming::Close(None))));
        assert!(asm.is_closed());
        let f = asm.feed(&mut buf[6..]).unwrap();
        assert_eq!((f.consumed, f.item), (buf.len() - 6, None));
        // Even garbage.
        let f = asm.feed(&mut [0xFF, 0xFF]).unwrap();
        assert_eq!((f.consumed, f.item), (2, None));
    }

    #[test]
    fn close_inside_a_fragmented_message_drops_the_message() {
        let bytes = wire(&[client(false, 0x1, b"half"), client(true, 0x8, b"\x03\xe9")]);
        assert_eq!(items(&bytes), [Incoming::Close(Some((1001, String::new())))]);
    }

    // --- errors ---

    #[test]
    fn continuation_without_a_start() {
        let e = error(MAX, &client(true, 0x0, b"x"));
        assert_eq!(e, ORPHAN_CONTINUATION);
        let e = error(MAX, &client(false, 0x0, b"x"));
        assert_eq!(e.code, 1002);
        // After a completed message, too.
        let e = error(MAX, &wire(&[client(true, 0x1, b"a"), client(true, 0x0, b"b")]));
        assert_eq!(e, ORPHAN_CONTINUATION);
    }

    #[test]
    fn new_message_inside_a_fragmented_one() {
        for op in [0x1, 0x2] {
            for fin in [true, false] {
                let bytes = wire(&[client(false, 0x1, b"a"), client(fin, op, b"b")]);
                assert_eq!(error(MAX, &bytes), INTERLEAVED_MESSAGE);
                let bytes = wire(&[client(false, 0x2, b"a"), client(fin, op, b"b")]);
                assert_eq!(error(MAX, &bytes), INTERLEAVED_MESSAGE);
            }
        }
    }

    #[test]
    fn frame_level_errors_map_to_1002() {
        let cases: Vec<Vec<u8>> = vec![
            {
                let mut f = client(true, 0x1, b"a");
                f[0] |= 0x40; // RSV1
                f
            },
            client(true, 0x3, b""),
            client(true, 0xB, b""),
            client(false, 0x9, b""),
            client(true, 0x9, &[0; 126]),
            vec![0x81, 0x01, b'a'], // unmasked
            vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0],
        ];
        for bytes in cases {
            let e = error(MAX, &bytes);
            assert_eq!(e.code, 1002, "{bytes:x?}: {e}");
        }
    }

    #[test]
    fn invalid_utf8_single_frame() {
        let e = error(MAX, &client(true, 0x1, b"\xce\xba\xed\xa0\x80"));
        assert_eq!(e, INVALID_TEXT);
        assert_eq!(e.code, 1007);
    }

    #[test]
    fn incomplete_utf8_at_end_of_message() {
        let e = error(MAX, &client(true, 0x1, b"ok\xe2\x82"));
        assert_eq!(e, INVALID_TEXT);
        let bytes = wire(&[client(false, 0x1, b"ok\xe2"), client(true, 0x0, b"\x82")]);
        assert_eq!(error(MAX, &bytes), INVALID_TEXT);
    }

    #[test]
    fn invalid_utf8_fails_on_the_fragment_that_breaks_it() {
        // Autobahn 6.4.1: three fragments, the second holds a code point beyond U+10FFFF; the
        // error must come before the third fragment is even sent.
        let f1 = client(false, 0x1, "κόσμε".as_bytes());
        let f2 = client(false, 0x0, b"\xf4\x90\x80\x80");
        let mut asm = Assembler::new(MAX);
        let mut buf = f1.clone();
        assert_eq!(asm.feed(&mut buf).unwrap().item, None);
        let mut buf = f2.clone();
        assert_eq!(asm.feed(&mut buf), Err(INVALID_TEXT));
    }

    #[test]
    fn invalid_utf8_fails_mid_frame() {
        // Autobahn 6.4.3/6.4.4: one frame whose payload arrives in parts; the invalid byte is in
        // the second part and the rest never arrives.
        let mut payload = "κόσμε".as_bytes().to_vec();
        payload.extend_from_slice(b"\xf4\x90\x80\x80edited");
        let f = client(true, 0x1, &payload);
        let mut asm = Assembler::new(MAX);
        let mut part = f[..6 + 11].to_vec(); // header + the valid prefix
        assert_eq!(asm.feed(&mut part).unwrap().consumed, 17);
        let mut part = f[17..19].to_vec(); // F4 90: already impossible
        assert_eq!(asm.feed(&mut part), Err(INVALID_TEXT));
    }

    #[test]
    fn binary_is_not_utf8_checked() {
        assert_eq!(items(&client(true, 0x2, b"\xff\xfe")), [Incoming::Binary(vec![0xFF, 0xFE])]);
    }

    #[test]
    fn single_frame_over_max_fails_from_the_header() {
        let f = client(true, 0x2, &[0; 101]);
        let mut asm = Assembler::new(100);
        let mut header_only = f[..2].to_vec();
        assert_eq!(asm.feed(&mut header_only), Err(TOO_BIG));
        // 16- and 64-bit lengths, payload never sent.
        let e = error(1000, &[0x81, 0xFE, 0x10, 0x00]);
        assert_eq!(e.code, 1009);
        let e = error(1 << 30, &[0x82, 0xFF, 0x7F, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(e.code, 1009);
    }

    #[test]
    fn fragmented_message_over_max_fails_on_the_fragment_that_overflows() {
        let mut asm = Assembler::new(100);
        let mut f1 = client(false, 0x1, &[b'a'; 60]);
        let mut f2 = client(false, 0x0, &[b'b'; 30]);
        let f3 = client(true, 0x0, &[b'c'; 11]);
        assert_eq!(asm.feed(&mut f1).unwrap(), Feed { consumed: 66, item: None });
        assert_eq!(asm.feed(&mut f2).unwrap(), Feed { consumed: 36, item: None });
        assert_eq!(asm.buffered(), 90);
        // The third header alone (11 > 100 - 90) fails, before its payload arrives.
        let mut header = f3[..2].to_vec();
        assert_eq!(asm.feed(&mut header), Err(TOO_BIG));
        assert_eq!(TOO_BIG.code, 1009);
    }

    #[test]
    fn many_small_fragments_over_max() {
        let mut frames = vec![client(false, 0x2, &[0; 10])];
        for _ in 0..20 {
            frames.push(client(false, 0x0, &[0; 10]));
        }
        assert_eq!(error(100, &wire(&frames)), TOO_BIG);
    }

    #[test]
    fn bad_close_bodies() {
        let e = error(MAX, &client(true, 0x8, b"\x03"));
        assert_eq!(e, CloseReason::from(FrameError::Protocol("close payload of one byte")));
        assert_eq!(e.code, 1002);
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            let e = error(MAX, &client(true, 0x8, &code.to_be_bytes()));
            assert_eq!(e.code, 1002, "{code}");
        }
        let e = error(MAX, &client(true, 0x8, b"\x03\xe8\xce\xba\xed\xa0\x80"));
        assert_eq!(e.code, 1007);
        assert_eq!(e.reason, "invalid utf-8 in close reason");
    }

    #[test]
    fn input_after_an_error_is_discarded() {
        let mut asm = Assembler::new(MAX);
        let mut bad = client(true, 0x0, b"x");
        assert!(asm.feed(&mut bad).is_err());
        assert!(asm.is_closed());
        assert_eq!(asm.buffered(), 0);
        let mut good = client(true, 0x1, b"x");
        let f = asm.feed(&mut good).unwrap();
        assert_eq!((f.consumed, f.item), (good.len(), None));
    }

    #[test]
    fn close_reason_from_frame_errors_and_display() {
        let cases = [
            (FrameError::Protocol("reserved opcode"), 1002, "reserved opcode"),
            (FrameError::TooBig, 1009, "message too big"),
            (FrameError::InvalidUtf8, 1007, "invalid utf-8 in close reason"),
        ];
        for (fe, code, reason) in cases {
            assert_eq!(CloseReason::from(fe), CloseReason { code, reason });
        }
        assert_eq!(TOO_BIG.to_string(), "close 1009: message too big");
        for r in [ORPHAN_CONTINUATION, INTERLEAVED_MESSAGE, INVALID_TEXT, TOO_BIG] {
            assert!(r.reason.len() <= frame::MAX_CLOSE_REASON);
            assert!(!r.reason.ends_with('.'));
        }
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Any way of cutting the byte stream into reads yields the same items.
            #[test]
            fn random_read_sizes(sizes in proptest::collection::vec(1usize..300, 1..64)) {
                let bytes = mixed_sequence();
                let mut asm = Assembler::new(1 << 20);
                let mut unread = Vec::new();
                let mut got = Vec::new();
                let mut pos = 0;
                let mut i = 0;
                while pos < bytes.len() {
                    let n = sizes[i % sizes.len()].min(bytes.len() - pos);
                    i += 1;
                    unread.extend_from_slice(&bytes[pos..pos + n]);
                    pos += n;
                    loop {
                        let f = asm.feed(&mut unread).unwrap();
                        unread.drain(..f.consumed);
                        match f.item {
                            Some(item) => got.push(item),
                            None => break,
                        }
                    }
                }
                prop_assert_eq!(got, mixed_expected());
            }

            /// Arbitrary bytes never panic, and consumption never exceeds the input.
            #[test]
            fn arbitrary_bytes_do_not_panic(
                bytes in proptest::collection::vec(any::<u8>(), 0..512)
            ) {
                let mut asm = Assembler::new(256);
                let mut buf = bytes.clone();
                let mut pos = 0;
                while let Ok(f) = asm.feed(&mut buf[pos..]) {
                    prop_assert!(f.consumed <= buf.len() - pos);
                    pos += f.consumed;
                    if f.item.is_none() {
                        break;
                    }
                }
            }
        }
    }
}
