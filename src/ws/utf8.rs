//! Incremental UTF-8 validation for text messages (RFC 6455 §5.6, §8.1) whose bytes arrive in
//! arbitrary pieces: fragments of one message, or parts of one frame as they are read.
//!
//! This module owns one question: "can the bytes seen so far still be the start of valid UTF-8?"
//! It answers it as early as possible, because Autobahn|Testsuite 6.4.x requires an endpoint to
//! fail the connection on the first invalid byte rather than at the end of the message.
//!
//! > When an endpoint is to interpret a byte stream as UTF-8 but finds that the byte stream is
//! > not, in fact, a valid UTF-8 stream, that endpoint MUST _Fail the WebSocket Connection_.
//! > This rule applies both during the opening handshake and during subsequent data exchange.
//! > (RFC 6455 §8.1)
//!
//! The bulk of every chunk goes through `std::str::from_utf8` (vectorised in std); only a code
//! point split across chunks goes through the small state machine below, at most three bytes at a
//! time. Nothing here allocates.

use std::fmt;

/// Why a byte stream is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Utf8Error {
    /// A byte that no valid UTF-8 text could contain at that position.
    Invalid,
    /// The message ended in the middle of a multi-byte sequence.
    Incomplete,
}

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Utf8Error::Invalid => f.write_str("invalid utf-8 sequence"),
            Utf8Error::Incomplete => f.write_str("utf-8 sequence cut off at end of message"),
        }
    }
}

impl std::error::Error for Utf8Error {}

/// Validates one message's UTF-8 across any number of `feed` calls; `finish` at the message end.
///
/// After an error every further `feed`/`finish` returns that same error until `reset`.
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    /// Continuation bytes still owed by the sequence split across chunks (0 = on a boundary).
    need: u8,
    /// Inclusive range allowed for the next continuation byte; only the first continuation byte
    /// of a sequence has a range narrower than 0x80..=0xBF (see `lead`).
    lo: u8,
    hi: u8,
    /// Sticky error: once the prefix is invalid it stays invalid.
    failed: Option<Utf8Error>,
}

/// The range any continuation byte outside the special first positions must fall in.
const CONT_LO: u8 = 0x80;
const CONT_HI: u8 = 0xBF;

/// Classifies a lead byte: how many continuation bytes follow and the allowed range of the first
/// one, or `None` if the byte can never start a sequence.
///
/// RFC 3629 §4, the grammar this table implements:
///
/// ```text
/// UTF8-char   = UTF8-1 / UTF8-2 / UTF8-3 / UTF8-4
/// UTF8-1      = %x00-7F
/// UTF8-2      = %xC2-DF UTF8-tail
/// UTF8-3      = %xE0 %xA0-BF UTF8-tail / %xE1-EC 2( UTF8-tail ) /
///               %xED %x80-9F UTF8-tail / %xEE-EF 2( UTF8-tail )
/// UTF8-4      = %xF0 %x90-BF 2( UTF8-tail ) / %xF1-F3 3( UTF8-tail ) /
///               %xF4 %x80-8F 2( UTF8-tail )
/// UTF8-tail   = %x80-BF
/// ```
///
/// `E0 80..9F` are overlong, `ED A0..BF` are UTF-16 surrogates, `F0 80..8F` are overlong and
/// `F4 90..BF` lie beyond U+10FFFF; `C0`, `C1` and `F5..FF` are never valid.
fn lead(b: u8) -> Option<(u8, u8, u8)> {
    match b {
        0x00..=0x7F => Some((0, CONT_LO, CONT_HI)),
        0xC2..=0xDF => Some((1, CONT_LO, CONT_HI)),
        0xE0 => Some((2, 0xA0, CONT_HI)),
        0xE1..=0xEC | 0xEE..=0xEF => Some((2, CONT_LO, CONT_HI)),
        0xED => Some((2, CONT_LO, 0x9F)),
        0xF0 => Some((3, 0x90, CONT_HI)),
        0xF1..=0xF3 => Some((3, CONT_LO, CONT_HI)),
        0xF4 => Some((3, CONT_LO, 0x8F)),
        _ => None,
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets all state, ready for the next message.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// True when the bytes so far end on a code point boundary (nothing is pending).
    pub fn is_boundary(&self) -> bool {
        self.need == 0 && self.failed.is_none()
    }

    /// Validates the next piece of the message; errs as soon as the bytes seen so far cannot be
    /// the prefix of any valid UTF-8 text.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Utf8Error> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut rest = bytes;
        // Finish a sequence left open by the previous chunk, byte by byte (at most three).
        while self.need > 0 {
            let Some((&b, tail)) = rest.split_first() else {
                return Ok(());
            };
            self.step(b)?;
            rest = tail;
        }
        match std::str::from_utf8(rest) {
            Ok(_) => Ok(()),
            // `error_len() == Some(_)`: an invalid sequence inside the chunk; std checks the
            // narrowed second-byte ranges too, so this is the earliest failure.
            Err(e) if e.error_len().is_some() => self.fail(Utf8Error::Invalid),
            // `None`: the chunk ends inside a sequence that is valid so far (std has already
            // checked the bytes present); keep those 1–3 bytes in the state machine.
            Err(e) => {
                for &b in &rest[e.valid_up_to()..] {
                    self.step(b)?;
                }
                Ok(())
            }
        }
    }

    /// Declares the end of the message; errs if it stops inside a multi-byte sequence.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        if self.need > 0 {
            return self.fail(Utf8Error::Incomplete);
        }
        Ok(())
    }

    /// Advances the state machine by one byte.
    fn step(&mut self, b: u8) -> Result<(), Utf8Error> {
        if self.need == 0 {
            match lead(b) {
                Some((need, lo, hi)) => {
                    self.need = need;
                    self.lo = lo;
                    self.hi = hi;
                    Ok(())
                }
                None => self.fail(Utf8Error::Invalid),
            }
        } else if (self.lo..=self.hi).contains(&b) {
            self.need -= 1;
            self.lo = CONT_LO;
            self.hi = CONT_HI;
            Ok(())
        } else {
            self.fail(Utf8Error::Invalid)
        }
    }

    fn fail(&mut self, e: Utf8Error) -> Result<(), Utf8Error> {
        self.failed = Some(e);
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Valid texts in the spirit of Autobahn 6.2.x / 6.5.x / 6.6.x / 6.7.x–6.8.x (boundaries and
    /// Markus Kuhn's stress test, section 2).
    const VALID: &[&[u8]] = &[
        b"",
        b"Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!",
        // κόσμε
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
        // first possible sequence of each length
        b"\x00",
        b"\xc2\x80",
        b"\xe0\xa0\x80",
        b"\xf0\x90\x80\x80",
        // last possible sequence of each length
        b"\x7f",
        b"\xdf\xbf",
        b"\xef\xbf\xbf",
        b"\xf4\x8f\xbf\xbf",
        // other boundary conditions
        b"\xed\x9f\xbf",
        b"\xee\x80\x80",
        b"\xef\xbf\xbd",
        // noncharacters are valid UTF-8
        b"\xef\xbf\xbe",
        b"\xf0\x9f\xbf\xbf",
        b"\xf3\xbf\xbf\xbf",
        // emoji and a mix of every length
        b"\xf0\x9f\x98\x80 a\xc3\xa9\xe2\x82\xac\xf0\x90\x8d\x88",
    ];

    /// Invalid texts and the index of the first byte at which the prefix becomes invalid
    /// (Autobahn 6.3.x, 6.4.x and Kuhn sections 3–5). `None` means the bytes are a valid prefix
    /// that is cut off: `feed` succeeds and `finish` fails.
    const INVALID: &[(&[u8], Option<usize>)] = &[
        // 6.3.1: κόσμε + surrogate + "edited"
        (b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64", Some(12)),
        // 6.4.1-style: valid text, then a code point beyond U+10FFFF
        (b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80edited", Some(12)),
        // unexpected continuation bytes
        (b"\x80", Some(0)),
        (b"\xbf", Some(0)),
        (b"a\x80\xbf", Some(1)),
        // lonely start characters
        (b"\xc0 ", Some(0)),
        (b"\xc2 ", Some(1)),
        (b"\xe0 ", Some(1)),
        (b"\xf0 ", Some(1)),
        (b"\xe1\x80 ", Some(2)),
        (b"\xf1\x80\x80 ", Some(3)),
        // impossible bytes
        (b"\xfe", Some(0)),
        (b"\xff", Some(0)),
        (b"\xfe\xfe\xff\xff", Some(0)),
        (b"\xf5\x80\x80\x80", Some(0)),
        (b"\xf8\x88\x80\x80\x80", Some(0)),
        (b"\xfc\x84\x80\x80\x80\x80", Some(0)),
        // overlong encodings
        (b"\xc0\xaf", Some(0)),
        (b"\xc1\xbf", Some(0)),
        (b"\xe0\x80\xaf", Some(1)),
        (b"\xe0\x9f\xbf", Some(1)),
        (b"\xf0\x80\x80\xaf", Some(1)),
        (b"\xf0\x8f\xbf\xbf", Some(1)),
        // beyond U+10FFFF
        (b"\xf4\x90\x80\x80", Some(1)),
        (b"\xf4\xbf\xbf\xbf", Some(1)),
        // UTF-16 surrogates, single and paired
        (b"\xed\xa0\x80", Some(1)),
        (b"\xed\xad\xbf", Some(1)),
        (b"\xed\xbf\xbf", Some(1)),
        (b"\xed\xa0\x80\xed\xb0\x80", Some(1)),
        // valid lead, bad later continuation
        (b"\xe2\x82\x28", Some(2)),
        (b"\xf0\x9f\x98\x28", Some(3)),
        // cut off at the end of the message: only `finish` can tell
        (b"\xc2", None),
        (b"\xe0\xa0", None),
        (b"\xf0\x90\x80", None),
        (b"abc\xf4\x8f\xbf", None),
    ];

    /// Feeds `bytes` one byte at a time; returns the index of the first failing byte, or Ok with
    /// the `finish` result.
    fn byte_at_a_time(bytes: &[u8]) -> Result<Result<(), Utf8Error>, usize> {
        let mut v = Utf8Validator::new();
        for (i, b) in bytes.iter().enumerate() {
            if v.feed(std::slice::from_ref(b)).is_err() {
                return Err(i);
            }
        }
        Ok(v.finish())
    }

    /// Is `bytes` the prefix of some valid UTF-8? (the oracle, from std)
    fn is_valid_prefix(bytes: &[u8]) -> bool {
        match std::str::from_utf8(bytes) {
            Ok(_) => true,
            Err(e) => e.error_len().is_none(),
        }
    }

    #[test]
    fn valid_whole() {
        for &text in VALID {
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(text), Ok(()), "{text:x?}");
            assert_eq!(v.finish(), Ok(()), "{text:x?}");
        }
    }

    #[test]
    fn valid_split_at_every_byte() {
        for &text in VALID {
            assert_eq!(byte_at_a_time(text), Ok(Ok(())), "{text:x?}");
        }
    }

    #[test]
    fn valid_split_at_every_pair_of_points() {
        for &text in VALID {
            for i in 0..=text.len() {
                for j in i..=text.len() {
                    let mut v = Utf8Validator::new();
                    for part in [&text[..i], &text[i..j], &text[j..]] {
                        assert_eq!(v.feed(part), Ok(()), "{text:x?} split {i} {j}");
                    }
                    assert_eq!(v.finish(), Ok(()), "{text:x?} split {i} {j}");
                }
            }
        }
    }

    #[test]
    fn invalid_detected_at_earliest_byte() {
        for &(text, at) in INVALID {
            match at {
                Some(at) => assert_eq!(byte_at_a_time(text), Err(at), "{text:x?}"),
                None => assert_eq!(byte_at_a_time(text), Ok(Err(Utf8Error::Incomplete)), "{text:x?}"),
            }
        }
    }

    #[test]
    fn invalid_detected_in_the_chunk_that_holds_the_bad_byte() {
        for &(text, at) in INVALID {
            for split in 0..=text.len() {
                let mut v = Utf8Validator::new();
                let first = v.feed(&text[..split]);
                match at {
                    Some(at) if at < split => {
                        assert_eq!(first, Err(Utf8Error::Invalid), "{text:x?} split {split}");
                    }
                    Some(_) => {
                        assert_eq!(first, Ok(()), "{text:x?} split {split}");
                        assert_eq!(v.feed(&text[split..]), Err(Utf8Error::Invalid));
                    }
                    None => {
                        assert_eq!(first, Ok(()));
                        assert_eq!(v.feed(&text[split..]), Ok(()));
                        assert_eq!(v.finish(), Err(Utf8Error::Incomplete));
                    }
                }
            }
        }
    }

    #[test]
    fn fragments_of_a_message() {
        // 6.2.3-style: the whole text split into three fragments mid code point.
        let text = "Hello-µ@ßöäüàá-UTF-8!! κόσμε 😀".as_bytes();
        let mut v = Utf8Validator::new();
        v.feed(&text[..7]).unwrap();
        assert!(!v.is_boundary());
        v.feed(&text[7..30]).unwrap();
        v.feed(&text[30..]).unwrap();
        assert!(v.is_boundary());
        v.finish().unwrap();
    }

    #[test]
    fn error_is_sticky_until_reset() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xff"), Err(Utf8Error::Invalid));
        assert_eq!(v.feed(b"abc"), Err(Utf8Error::Invalid));
        assert_eq!(v.finish(), Err(Utf8Error::Invalid));
        v.reset();
        assert_eq!(v.feed(b"abc"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn reset_drops_a_pending_sequence() {
        let mut v = Utf8Validator::new();
        v.feed(b"\xe2\x82").unwrap();
        v.reset();
        assert_eq!(v.feed(b"a"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn empty_chunks_change_nothing() {
        let mut v = Utf8Validator::new();
        v.feed(b"\xf0").unwrap();
        v.feed(b"").unwrap();
        v.feed(b"\x9f").unwrap();
        v.feed(b"").unwrap();
        v.feed(b"\x98\x80").unwrap();
        v.finish().unwrap();
    }

    /// Every two-byte string, and every three-byte string starting with a multi-byte lead byte,
    /// fed one byte at a time, agrees with std on each prefix.
    #[test]
    fn exhaustive_short_strings_agree_with_std() {
        let check = |bytes: &[u8]| {
            let got = byte_at_a_time(bytes);
            let first_bad = (1..=bytes.len()).find(|&n| !is_valid_prefix(&bytes[..n]));
            match first_bad {
                Some(n) => assert_eq!(got, Err(n - 1), "{bytes:x?}"),
                None => {
                    let complete = std::str::from_utf8(bytes).is_ok();
                    let want = if complete { Ok(()) } else { Err(Utf8Error::Incomplete) };
                    assert_eq!(got, Ok(want), "{bytes:x?}");
                }
            }
        };
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                check(&[a, b]);
            }
        }
        for a in 0xC0..=0xF7u8 {
            for b in 0x70..=0xC7u8 {
                for c in 0x70..=0xC7u8 {
                    check(&[a, b, c]);
                }
            }
        }
    }

    #[test]
    fn long_ascii_then_split_four_byte_sequence() {
        let mut text = vec![b'a'; 10_000];
        text.extend_from_slice("😀".as_bytes());
        text.extend_from_slice(&[b'b'; 1000]);
        let mut v = Utf8Validator::new();
        v.feed(&text[..10_002]).unwrap();
        v.feed(&text[10_002..]).unwrap();
        v.finish().unwrap();

        text.push(0xC0);
        let mut v = Utf8Validator::new();
        v.feed(&text[..10_002]).unwrap();
        assert_eq!(v.feed(&text[10_002..]), Err(Utf8Error::Invalid));
    }

    #[test]
    fn display_is_lowercase_without_period() {
        for e in [Utf8Error::Invalid, Utf8Error::Incomplete] {
            let s = e.to_string();
            assert!(!s.ends_with('.'));
            assert_eq!(s, s.to_lowercase());
        }
    }
}
