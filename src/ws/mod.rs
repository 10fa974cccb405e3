//! RFC 6455 WebSocket: frame parsing and encoding (`frame`), incremental UTF-8 validation
//! (`utf8`), the opening handshake (`handshake`), message assembly (`message`), the JSON
//! client protocol (`ops`) and a subscriber's WebSocket state (`session`). Pure code: the
//! connection drives it.

pub mod frame;
pub mod handshake;
pub mod message;
pub mod ops;
pub mod session;
pub mod utf8;
