//! HTTP/1.1 on our own code: request heads and body framing (`request`), chunked bodies
//! (`chunked`), response serialisation (`response`), routing (`router`) and embedded files
//! (`asset`). Nothing here does I/O.

pub mod asset;
pub mod chunked;
pub mod request;
pub mod response;
pub mod router;
pub(crate) mod token;

// Property tests of `request::parse_head` and `chunked::ChunkedDecoder` together.
#[cfg(test)]
mod props;
