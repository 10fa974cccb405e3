//! Fuzz target for the request parsers: `parse_head` and `ChunkedDecoder` on arbitrary bytes.
//!
//! Beyond "does not panic" it checks what the property tests check: a parser never claims more
//! input than it was given, and splitting the input cannot change the answer.

#![no_main]

use hookcast::http::chunked::{ChunkedDecoder, ChunkedError};
use hookcast::http::request::{parse_head, BodyKind, Limits};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits { max_header_bytes: 8192, max_uri_bytes: 2048 };

const MAX_BODY: usize = 1 << 16;

/// Decodes `input` in two pieces cut at `cut`, as a connection would; checks the counts.
fn decode_split(input: &[u8], cut: usize) -> Result<(usize, bool, Vec<u8>), ChunkedError> {
    let mut dec = ChunkedDecoder::new();
    let mut out = Vec::new();
    let (first, done) = dec.decode(&input[..cut], &mut out, MAX_BODY)?;
    assert!(first <= cut);
    if done {
        return Ok((first, true, out));
    }
    assert_eq!(first, cut);
    let (second, done) = dec.decode(&input[cut..], &mut out, MAX_BODY)?;
    assert!(second <= input.len() - cut);
    assert!(out.len() <= MAX_BODY);
    Ok((first + second, done, out))
}

/// The chunked decoder on `input`: whole and split at a point derived from the input agree.
fn check_chunked(input: &[u8]) {
    let whole = decode_split(input, input.len());
    let cut = input.first().map_or(0, |&b| usize::from(b) % (input.len() + 1));
    assert_eq!(decode_split(input, cut), whole);
}

fuzz_target!(|data: &[u8]| {
    match parse_head(data, &LIMITS) {
        Ok(Some((head, used))) => {
            assert!(used <= data.len() && used <= LIMITS.max_header_bytes);
            // The accessors must cope with any head the parser accepts.
            let _ = (head.path(), head.query(), head.header_str("host"));
            let _ = head.has_token("connection", "upgrade");
            // A complete head is decided by its own bytes: later bytes change nothing.
            assert_eq!(parse_head(&data[..used], &LIMITS), Ok(Some((head.clone(), used))));
            if head.body == BodyKind::Chunked {
                check_chunked(&data[used..]);
            }
        }
        Ok(None) => assert!(data.len() <= LIMITS.max_header_bytes),
        Err(e) => assert!((400..=505).contains(&e.status())),
    }
    check_chunked(data);
});
