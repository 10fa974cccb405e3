//! RFC 6455 WebSocket: frame parsing and encoding (`frame`), incremental UTF-8 validation
//! (`utf8`), the opening handshake (`handshake`) and message assembly (`message`). Pure code.

pub mod frame;
pub mod handshake;
pub mod message;
pub mod utf8;
