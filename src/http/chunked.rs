//! Incremental decoding of `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).
//!
//! The decoder owns only its position in the grammar, so input may be split at any byte: each
//! call consumes what it is given, appends the chunk data to `out`, and says when the body has
//! ended. It stops exactly after the final CRLF, leaving a pipelined request in the caller's
//! buffer.
//!
//! ```text
//! chunked-body   = *chunk
//!                  last-chunk
//!                  trailer-section
//!                  CRLF
//!
//! chunk          = chunk-size [ chunk-ext ] CRLF
//!                  chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//!
//! chunk-data     = 1*OCTET ; a sequence of chunk-size octets
//!
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name
//!                     [ BWS "=" BWS chunk-ext-val ] )          (§7.1.1)
//!
//! trailer-section   = *( field-line CRLF )                      (§7.1.2)
//! field-line        = field-name ":" OWS field-value OWS        (§5)
//! ```
//!
//! Choices, all on the strict side because a body decoder that disagrees with a proxy in front
//! of it is how request smuggling happens:
//! - every line ends in CRLF; a bare LF is an error (the leniency RFC 9112 §2.2 allows for the
//!   head is not extended to the body);
//! - a chunk size has at most 16 hex digits, leading zeros included, so it always fits a `u64`
//!   (§7.1: "Recipients MUST anticipate potentially large hexadecimal numerals and prevent
//!   security flaws due to integer conversion overflows");
//! - chunk extensions are checked only for their bytes (no control characters) and length, then
//!   ignored (§7.1.1: "A recipient MUST ignore unrecognized chunk extensions");
//! - trailer fields are checked for `name ":" value` shape and discarded (§7.1.2 lets a
//!   recipient discard them).

use crate::http::token::{hex_digit, is_token_byte};
use std::fmt;

/// Longest chunk extension accepted on one chunk-size line, counted from after the size.
pub const MAX_CHUNK_EXT_BYTES: usize = 1024;

/// Longest trailer section accepted, counting its line endings but not the final CRLF.
pub const MAX_TRAILER_BYTES: usize = 8192;

/// Most hex digits in a chunk size: 16 digits are 64 bits.
const MAX_SIZE_DIGITS: u8 = 16;

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkedError {
    /// 400: the body breaks the chunked grammar or a limit on its framing; the reason is for
    /// the log.
    Malformed(&'static str),
    /// 413: the decoded body would be longer than the caller's `max_body`.
    TooLarge,
}

impl ChunkedError {
    /// The response status code this error calls for.
    pub fn status(&self) -> u16 {
        match self {
            ChunkedError::Malformed(_) => 400,
            ChunkedError::TooLarge => 413,
        }
    }
}

impl fmt::Display for ChunkedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkedError::Malformed(reason) => write!(f, "malformed chunked body: {reason}"),
            ChunkedError::TooLarge => f.write_str("chunked body too large"),
        }
    }
}

impl std::error::Error for ChunkedError {}

/// Where in the grammar the next input byte belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In `chunk-size`, having read `digits` hex digits worth `size`.
    Size { size: u64, digits: u8 },
    /// After the size, in `chunk-ext` or the BWS before it; `seen_semicolon` once `;` came.
    Ext { size: u64, seen_semicolon: bool },
    /// After the CR ending a chunk-size line.
    SizeLf { size: u64 },
    /// In `chunk-data`, `left` bytes to go.
    Data { left: u64 },
    /// After chunk data, expecting its CR.
    DataCr,
    /// After chunk data and CR, expecting LF.
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// In a trailer field name.
    TrailerName,
    /// In a trailer field value.
    TrailerValue,
    /// After the CR ending a trailer field line.
    TrailerLf,
    /// After the CR of the final CRLF.
    FinalLf,
    /// The body is complete.
    Done,
    /// An error was returned; it is returned again on every later call.
    Failed(ChunkedError),
}

/// An incremental `chunked` decoder for one request body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    /// Data bytes decoded so far, to check against `max_body`.
    decoded: u64,
    /// Bytes of chunk extension on the current size line.
    ext_len: usize,
    /// Bytes of trailer section so far.
    trailer_len: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder { state: State::Size { size: 0, digits: 0 }, decoded: 0, ext_len: 0, trailer_len: 0 }
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the final CRLF has been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Data bytes decoded so far (the body length once `is_done`).
    pub fn decoded_len(&self) -> u64 {
        self.decoded
    }

    /// Decodes `input`, appending chunk data to `out`; returns the bytes of `input` used and
    /// whether the body is complete.
    ///
    /// Until the body is complete all of `input` is used. Once it is, the count stops right
    /// after the final CRLF, and later calls use nothing. `max_body` caps the decoded length
    /// over all calls; a chunk that would pass it is refused before any of it is copied. After
    /// an error every call returns the same error.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>, max_body: usize) -> Result<(usize, bool), ChunkedError> {
        if let State::Failed(e) = self.state {
            return Err(e);
        }
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Done => break,
                State::Data { left } => {
                    // The only multi-byte step: copy as much of the chunk as has arrived.
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(input.len() - i);
                    out.extend_from_slice(&input[i..i + take]);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 { State::DataCr } else { State::Data { left } };
                }
                _ => {
                    let step = self.step(input[i], max_body);
                    if let Err(e) = step {
                        self.state = State::Failed(e);
                        return Err(e);
                    }
                    i += 1;
                }
            }
        }
        Ok((i, self.state == State::Done))
    }

    /// Moves the state on by one byte outside chunk data.
    fn step(&mut self, b: u8, max_body: usize) -> Result<(), ChunkedError> {
        self.state = match self.state {
            State::Size { size, digits } => match (b, hex_digit(b)) {
                (_, Some(d)) => {
                    if digits == MAX_SIZE_DIGITS {
                        return Err(ChunkedError::Malformed("chunk size too long"));
                    }
                    // 16 digits of 4 bits each cannot overflow a u64.
                    State::Size { size: size << 4 | u64::from(d), digits: digits + 1 }
                }
                _ if digits == 0 => return Err(ChunkedError::Malformed("missing chunk size")),
                (b'\r', _) => State::SizeLf { size },
                (b';', _) => self.ext_byte(size, true)?,
                (b' ' | b'\t', _) => self.ext_byte(size, false)?,
                (b'\n', _) => return Err(ChunkedError::Malformed("bare lf after chunk size")),
                _ => return Err(ChunkedError::Malformed("invalid chunk size")),
            },
            State::Ext { size, seen_semicolon } => match b {
                // BWS is only allowed before a ";": "1 \r\n" is not a chunk-size line.
                b'\r' if seen_semicolon => State::SizeLf { size },
                b'\n' => return Err(ChunkedError::Malformed("bare lf after chunk extension")),
                // BWS ";" — only whitespace may come between the size and the first ";".
                b';' => self.ext_byte(size, true)?,
                b' ' | b'\t' => self.ext_byte(size, seen_semicolon)?,
                _ if !seen_semicolon => return Err(ChunkedError::Malformed("invalid chunk size")),
                // token / quoted-string bytes: VCHAR or obs-text; no controls.
                0x21..=0x7e | 0x80..=0xff => self.ext_byte(size, true)?,
                _ => return Err(ChunkedError::Malformed("invalid byte in chunk extension")),
            },
            State::SizeLf { size } => {
                if b != b'\n' {
                    return Err(ChunkedError::Malformed("cr without lf after chunk size"));
                }
                self.ext_len = 0;
                if size == 0 {
                    State::TrailerStart
                } else {
                    // Refuse before copying anything: the size line tells us the total.
                    let total = self.decoded.checked_add(size);
                    match total {
                        Some(total) if total <= u64::try_from(max_body).unwrap_or(u64::MAX) => {
                            self.decoded = total;
                        }
                        _ => return Err(ChunkedError::TooLarge),
                    }
                    State::Data { left: size }
                }
            }
            State::DataCr => {
                if b != b'\r' {
                    return Err(ChunkedError::Malformed("missing crlf after chunk data"));
                }
                State::DataLf
            }
            State::DataLf => {
                if b != b'\n' {
                    return Err(ChunkedError::Malformed("missing crlf after chunk data"));
                }
                State::Size { size: 0, digits: 0 }
            }
            State::TrailerStart => match b {
                b'\r' => State::FinalLf,
                b'\n' => return Err(ChunkedError::Malformed("bare lf in trailer section")),
                _ if is_token_byte(b) => self.trailer_byte(State::TrailerName)?,
                // Includes SP/HTAB: obs-fold is not allowed (RFC 9112 §5.2).
                _ => return Err(ChunkedError::Malformed("invalid trailer field name")),
            },
            State::TrailerName => match b {
                b':' => self.trailer_byte(State::TrailerValue)?,
                _ if is_token_byte(b) => self.trailer_byte(State::TrailerName)?,
                _ => return Err(ChunkedError::Malformed("invalid trailer field name")),
            },
            State::TrailerValue => match b {
                b'\r' => self.trailer_byte(State::TrailerLf)?,
                b'\n' => return Err(ChunkedError::Malformed("bare lf in trailer section")),
                // field-value bytes: VCHAR / obs-text / SP / HTAB.
                b'\t' | 0x20..=0x7e | 0x80..=0xff => self.trailer_byte(State::TrailerValue)?,
                _ => return Err(ChunkedError::Malformed("invalid trailer field value")),
            },
            State::TrailerLf => {
                if b != b'\n' {
                    return Err(ChunkedError::Malformed("cr without lf in trailer section"));
                }
                self.trailer_byte(State::TrailerStart)?
            }
            State::FinalLf => {
                if b != b'\n' {
                    return Err(ChunkedError::Malformed("cr without lf at end of body"));
                }
                State::Done
            }
            State::Data { .. } | State::Done | State::Failed(_) => {
                unreachable!("handled in decode")
            }
        };
        Ok(())
    }

    /// Counts one byte of chunk extension against `MAX_CHUNK_EXT_BYTES`.
    fn ext_byte(&mut self, size: u64, seen_semicolon: bool) -> Result<State, ChunkedError> {
        self.ext_len += 1;
        if self.ext_len > MAX_CHUNK_EXT_BYTES {
            return Err(ChunkedError::Malformed("chunk extension too long"));
        }
        Ok(State::Ext { size, seen_semicolon })
    }

    /// Counts one byte of trailer section against `MAX_TRAILER_BYTES`.
    fn trailer_byte(&mut self, next: State) -> Result<State, ChunkedError> {
        self.trailer_len += 1;
        if self.trailer_len > MAX_TRAILER_BYTES {
            return Err(ChunkedError::Malformed("trailer section too long"));
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 1 << 20;

    /// Decodes `input` in one call.
    fn decode_all(input: &[u8], max_body: usize) -> Result<(usize, bool, Vec<u8>), ChunkedError> {
        let mut dec = ChunkedDecoder::new();
        let mut out = Vec::new();
        let (used, done) = dec.decode(input, &mut out, max_body)?;
        Ok((used, done, out))
    }

    /// Decodes `input` in the pieces given by `cuts` (ascending offsets) as a connection
    /// would: unused bytes stay in its buffer, and it stops asking once the body has ended.
    fn decode_pieces(input: &[u8], cuts: &[usize], max_body: usize) -> Result<(usize, bool, Vec<u8>), ChunkedError> {
        let mut dec = ChunkedDecoder::new();
        let mut out = Vec::new();
        let mut used = 0;
        for end in cuts.iter().copied().chain([input.len()]) {
            let (n, done) = dec.decode(&input[used..end], &mut out, max_body)?;
            used += n;
            if done {
                return Ok((used, true, out));
            }
            assert_eq!(used, end, "all input is used until the body ends");
        }
        Ok((used, false, out))
    }

    /// Every way to feed `input`: whole, cut once at every offset, and one byte at a time; all
    /// must agree with the whole.
    fn decode_every_split(input: &[u8], max_body: usize) -> Result<(usize, bool, Vec<u8>), ChunkedError> {
        let whole = decode_all(input, max_body);
        for cut in 0..=input.len() {
            assert_eq!(
                decode_pieces(input, &[cut], max_body),
                whole,
                "cut at {cut} of {:?}",
                String::from_utf8_lossy(input)
            );
        }
        let every: Vec<usize> = (0..input.len()).collect();
        assert_eq!(decode_pieces(input, &every, max_body), whole, "byte at a time");
        whole
    }

    #[test]
    fn classic_example() {
        // The example of the Wikipedia/MDN "Chunked transfer encoding" articles.
        let body = b"4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
        let (used, done, out) = decode_every_split(body, MAX).unwrap();
        assert!(done);
        assert_eq!(used, body.len());
        assert_eq!(out, b"Wikipedia in\r\n\r\nchunks.");
    }

    struct Good {
        name: &'static str,
        input: &'static [u8],
        body: &'static [u8],
        /// What must be left unused after the body (a pipelined request).
        rest: &'static [u8],
    }

    const GOOD: &[Good] = &[
        Good { name: "empty body", input: b"0\r\n\r\n", body: b"", rest: b"" },
        Good { name: "several zeros in the last chunk", input: b"000\r\n\r\n", body: b"", rest: b"" },
        Good {
            name: "hex sizes in both cases, leading zeros",
            input: b"0a\r\n0123456789\r\nA\r\nabcdefghij\r\n0\r\n\r\n",
            body: b"0123456789abcdefghij",
            rest: b"",
        },
        Good {
            name: "extensions, with BWS and quoted strings",
            input: b"3;name=value\r\nabc\r\n2 ; a ; b = \"q;\\\" s\"\r\nde\r\n0;last\r\n\r\n",
            body: b"abcde",
            rest: b"",
        },
        Good {
            name: "trailers are discarded",
            input: b"1\r\nx\r\n0\r\nChecksum: abc\r\nX-Empty:\r\nX-Sp:  a b \r\n\r\n",
            body: b"x",
            rest: b"",
        },
        Good {
            name: "pipelined request left unconsumed",
            input: b"2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
            body: b"hi",
            rest: b"GET / HTTP/1.1\r\n\r\n",
        },
        Good {
            name: "chunk data may hold CRLF and zeros",
            input: b"6\r\n\r\n0\r\n\r\r\n0\r\n\r\n",
            body: b"\r\n0\r\n\r",
            rest: b"",
        },
        Good { name: "sixteen digit size", input: b"0000000000000001\r\nz\r\n0\r\n\r\n", body: b"z", rest: b"" },
    ];

    #[test]
    fn good_bodies_split_anywhere() {
        for g in GOOD {
            let (used, done, out) = decode_every_split(g.input, MAX).unwrap_or_else(|e| panic!("{}: {e}", g.name));
            assert!(done, "{}", g.name);
            assert_eq!(&g.input[used..], g.rest, "{}", g.name);
            assert_eq!(out, g.body, "{}", g.name);
        }
    }

    #[test]
    fn incomplete_bodies_use_everything_and_are_not_done() {
        let body = b"4\r\nWiki\r\n0\r\nT: v\r\n\r\n";
        for end in 0..body.len() {
            let (used, done, _) = decode_all(&body[..end], MAX).unwrap();
            assert_eq!((used, done), (end, false), "prefix of {end}");
        }
    }

    #[test]
    fn nothing_is_used_after_the_end() {
        let mut dec = ChunkedDecoder::new();
        let mut out = Vec::new();
        assert_eq!(dec.decode(b"1\r\na\r\n0\r\n\r\n", &mut out, MAX), Ok((11, true)));
        assert!(dec.is_done());
        assert_eq!(dec.decoded_len(), 1);
        assert_eq!(dec.decode(b"1\r\nb\r\n", &mut out, MAX), Ok((0, true)));
        assert_eq!(out, b"a");
    }

    #[test]
    fn max_body_is_inclusive_and_checked_before_copying() {
        let body = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(decode_every_split(body, 5).unwrap().2, b"abcde");
        assert_eq!(decode_every_split(body, 4), Err(ChunkedError::TooLarge));
        // The second chunk's size line is enough to refuse it: nothing of it is copied.
        let mut dec = ChunkedDecoder::new();
        let mut out = Vec::new();
        assert_eq!(dec.decode(b"3\r\nabc\r\n2\r\n", &mut out, 4), Err(ChunkedError::TooLarge));
        assert_eq!(out, b"abc");
        // A size near u64::MAX does not overflow the running total.
        assert_eq!(decode_all(b"1\r\na\r\nffffffffffffffff\r\n", usize::MAX), Err(ChunkedError::TooLarge));
    }

    #[test]
    fn errors_are_sticky() {
        let mut dec = ChunkedDecoder::new();
        let mut out = Vec::new();
        let e = ChunkedError::Malformed("missing chunk size");
        assert_eq!(dec.decode(b"x", &mut out, MAX), Err(e));
        assert_eq!(dec.decode(b"0\r\n\r\n", &mut out, MAX), Err(e));
        assert_eq!(dec.decode(b"", &mut out, MAX), Err(e));
    }

    fn bad_bodies() -> Vec<(&'static str, Vec<u8>, ChunkedError)> {
        use ChunkedError::*;
        let b = |s: &[u8]| s.to_vec();
        let long_ext = [&b"1;"[..], &[b'x'; MAX_CHUNK_EXT_BYTES], b"\r\na\r\n0\r\n\r\n"].concat();
        let long_trailer = [&b"0\r\nX: "[..], &[b'v'; MAX_TRAILER_BYTES], b"\r\n\r\n"].concat();
        vec![
            ("empty size", b(b"\r\n"), Malformed("missing chunk size")),
            ("non-hex size", b(b"g\r\n"), Malformed("missing chunk size")),
            ("non-hex after digits", b(b"1g\r\n"), Malformed("invalid chunk size")),
            ("sign", b(b"+1\r\na\r\n0\r\n\r\n"), Malformed("missing chunk size")),
            ("0x prefix", b(b"0x1\r\na\r\n"), Malformed("invalid chunk size")),
            ("space inside size", b(b"1 0\r\n"), Malformed("invalid chunk size")),
            ("trailing space, no extension", b(b"1 \r\na\r\n"), Malformed("invalid chunk size")),
            ("seventeen digits", b(b"00000000000000001\r\n"), Malformed("chunk size too long")),
            ("u64 overflow", b(b"10000000000000000\r\n"), Malformed("chunk size too long")),
            ("bare lf after size", b(b"1\na\r\n0\r\n\r\n"), Malformed("bare lf after chunk size")),
            ("cr without lf after size", b(b"1\rxa\r\n"), Malformed("cr without lf after chunk size")),
            ("bare lf after extension", b(b"1;a\na\r\n"), Malformed("bare lf after chunk extension")),
            ("control in extension", b(b"1;a\x00\r\na\r\n"), Malformed("invalid byte in chunk extension")),
            ("extension too long", long_ext, Malformed("chunk extension too long")),
            ("data longer than size", b(b"1\r\nab\r\n0\r\n\r\n"), Malformed("missing crlf after chunk data")),
            ("bare lf after data", b(b"1\r\na\n0\r\n\r\n"), Malformed("missing crlf after chunk data")),
            ("cr without lf after data", b(b"1\r\na\rx"), Malformed("missing crlf after chunk data")),
            ("bare lf ending the body", b(b"0\r\n\n"), Malformed("bare lf in trailer section")),
            ("cr without lf ending the body", b(b"0\r\n\rx"), Malformed("cr without lf at end of body")),
            ("trailer without colon", b(b"0\r\nX\r\n\r\n"), Malformed("invalid trailer field name")),
            ("trailer name with space", b(b"0\r\nX Y: v\r\n\r\n"), Malformed("invalid trailer field name")),
            ("trailer obs-fold", b(b"0\r\nX: v\r\n w\r\n\r\n"), Malformed("invalid trailer field name")),
            ("trailer with empty name", b(b"0\r\n: v\r\n\r\n"), Malformed("invalid trailer field name")),
            ("trailer bare lf", b(b"0\r\nX: v\n\r\n"), Malformed("bare lf in trailer section")),
            ("trailer cr without lf", b(b"0\r\nX: v\rx"), Malformed("cr without lf in trailer section")),
            ("trailer control byte", b(b"0\r\nX: \x01\r\n\r\n"), Malformed("invalid trailer field value")),
            ("trailer too long", long_trailer, Malformed("trailer section too long")),
        ]
    }

    #[test]
    fn bad_bodies_fail_the_same_way_however_split() {
        for (name, input, expected) in bad_bodies() {
            assert_eq!(decode_every_split(&input, MAX), Err(expected), "{name}");
        }
    }

    #[test]
    fn limits_are_inclusive() {
        let ext = [&b"1;"[..], &[b'x'; MAX_CHUNK_EXT_BYTES - 1], b"\r\na\r\n0\r\n\r\n"].concat();
        assert!(decode_all(&ext, MAX).unwrap().1);
        // "X: " + value + CRLF is the whole trailer section.
        let value = MAX_TRAILER_BYTES - b"X: \r\n".len();
        let trailer = [&b"0\r\nX: "[..], &vec![b'v'; value], b"\r\n\r\n"].concat();
        assert!(decode_all(&trailer, MAX).unwrap().1);
        let trailer = [&b"0\r\nX: "[..], &vec![b'v'; value + 1], b"\r\n\r\n"].concat();
        assert_eq!(decode_all(&trailer, MAX), Err(ChunkedError::Malformed("trailer section too long")));
    }

    #[test]
    fn statuses_and_messages() {
        let e = ChunkedError::Malformed("missing chunk size");
        assert_eq!(e.status(), 400);
        assert_eq!(e.to_string(), "malformed chunked body: missing chunk size");
        assert_eq!(ChunkedError::TooLarge.status(), 413);
        assert_eq!(ChunkedError::TooLarge.to_string(), "chunked body too large");
    }
}
