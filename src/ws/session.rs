//! What a WebSocket subscriber has beyond a Server-Sent Events one: its message assembler, its
//! liveness count, echo mode and the publish acks waiting for the journal.

use crate::ws::message::Assembler;
use std::collections::VecDeque;

/// The WebSocket side of a subscriber.
#[derive(Debug)]
pub struct WsSession {
    /// Reassembles frames into messages.
    pub(crate) asm: Assembler,
    /// Pings sent since the client last showed signs of life.
    pub missed_pongs: u8,
    /// Echo mode (conformance testing): every message is sent back.
    pub(crate) echo: bool,
    /// Publish acks held until their journal record is durable: (journal seq, ack).
    pub(crate) pending_acks: VecDeque<(u64, String)>,
}

impl WsSession {
    /// A session taking messages of up to `max_message_bytes`.
    pub fn new(max_message_bytes: usize, echo: bool) -> WsSession {
        WsSession { asm: Assembler::new(max_message_bytes), missed_pongs: 0, echo, pending_acks: VecDeque::new() }
    }
}
