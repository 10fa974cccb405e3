//! Our own Redis client: RESP2 codec, addresses, and (link.rs) the connection on the event loop.

pub mod link;
pub mod resp;
pub mod url;
