//! Property tests for the two pure HTTP parsers, `parse_head` and `ChunkedDecoder`, beside them.
//!
//! Whatever bytes arrive, neither parser panics or claims more input than it was given, and
//! where the input is split cannot change what it decides. The unit tables inside the modules
//! pin the exact answers; these tests look for the inputs nobody thought to write down.

use crate::http::chunked::{ChunkedDecoder, ChunkedError};
use crate::http::request::{parse_head, BodyKind, Head, HeadError, Limits};
use proptest::prelude::*;

const LIMITS: Limits = Limits { max_header_bytes: 8192, max_uri_bytes: 2048 };

/// Small enough that random inputs reach both limits.
const TIGHT: Limits = Limits { max_header_bytes: 96, max_uri_bytes: 24 };

const MAX_BODY: usize = 4096;

type Parsed = Result<Option<(Head, usize)>, HeadError>;

/// `parse_head` plus the invariant every answer must keep.
fn parse_checked(buf: &[u8], limits: &Limits) -> Parsed {
    let parsed = parse_head(buf, limits);
    if let Ok(Some((head, used))) = &parsed {
        assert!(*used <= buf.len(), "used {used} of {}", buf.len());
        assert!(*used <= limits.max_header_bytes);
        assert!(head.target.len() <= limits.max_uri_bytes);
    }
    parsed
}

/// Decodes `input` in the pieces given by `cuts`, as a connection would (unused bytes stay,
/// no calls once the body is done), checking the consumed counts on the way.
fn decode_pieces(input: &[u8], cuts: &[usize]) -> Result<(usize, bool, Vec<u8>), ChunkedError> {
    let mut dec = ChunkedDecoder::new();
    let mut out = Vec::new();
    let mut used = 0;
    for end in cuts.iter().copied().chain([input.len()]) {
        let end = end.clamp(used, input.len());
        let (n, done) = dec.decode(&input[used..end], &mut out, MAX_BODY)?;
        assert!(n <= end - used, "used {n} of {}", end - used);
        assert!(out.len() <= MAX_BODY);
        used += n;
        if done {
            return Ok((used, true, out));
        }
        assert_eq!(used, end, "everything is used until the body ends");
    }
    Ok((used, false, out))
}

/// Requests that parse, to mutate and to split.
const VALID: &[&[u8]] = &[
    b"GET /topics/a?since=4 HTTP/1.1\r\nHost: example.com\r\nAccept: text/event-stream\r\n\r\n",
    b"POST /hooks/gh HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
    b"POST /h HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"GET http://h:80/ws HTTP/1.1\r\nHost: h:80\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
];

/// Chunked bodies that decode, to mutate.
const VALID_BODIES: &[&[u8]] = &[
    b"4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n",
    b"3;a=b\r\nabc\r\n0;x\r\nChecksum: 1\r\n\r\nGET / HTTP/1.1\r\n",
];

/// One edit of a byte string: replace, insert or delete at a position taken modulo its length.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Bias the new bytes towards the ones the grammars care about.
    let byte = prop_oneof![any::<u8>(), prop::sample::select(b"\r\n :;,=\t/?#%0aF".to_vec()),];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<usize>(), byte).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
    ]
}

fn apply(base: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = base.to_vec();
    for e in edits {
        match *e {
            Edit::Replace(i, b) if !v.is_empty() => {
                let i = i % v.len();
                v[i] = b;
            }
            Edit::Insert(i, b) => {
                let i = i % (v.len() + 1);
                v.insert(i, b);
            }
            Edit::Delete(i) if !v.is_empty() => {
                let i = i % v.len();
                v.remove(i);
            }
            _ => {}
        }
    }
    v
}

/// Byte strings made of HTTP-shaped pieces, so random input gets past the request line.
fn http_soup() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        prop::sample::select(vec![
            &b"GET "[..],
            b"POST ",
            b"OPTIONS ",
            b"/",
            b"/a?b=c",
            b"*",
            b"http://h",
            b" HTTP/1.1",
            b" HTTP/1.0",
            b" HTTP/2.0",
            b"\r\n",
            b"\n",
            b"\r",
            b"Host: h",
            b"Content-Length: ",
            b"Transfer-Encoding: ",
            b"chunked",
            b"gzip, ",
            b"Connection: close",
            b"Expect: 100-continue",
            b"0",
            b"12",
            b", ",
            b": ",
        ])
        .prop_map(<[u8]>::to_vec),
        prop::collection::vec(any::<u8>(), 1..4),
    ];
    prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
}

/// A valid request head with random path, fields and framing, and its expected framing.
fn valid_request() -> impl Strategy<Value = (Vec<u8>, BodyKind)> {
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "OPTIONS", "BREW"]);
    let path = "/[a-zA-Z0-9._~/-]{0,20}(\\?[a-z0-9=&%+]{0,20})?";
    let field = ("[A-Za-z][A-Za-z0-9-]{0,12}", "[!-~]([ -~]{0,20}[!-~])?").prop_filter(
        "framing fields are chosen separately",
        |(name, _)| {
            let n = name.to_ascii_lowercase();
            !["host", "content-length", "transfer-encoding", "expect", "connection"].contains(&n.as_str())
        },
    );
    let fields = prop::collection::vec(field, 0..8);
    let framing =
        prop_oneof![Just(BodyKind::None), (0u64..100_000).prop_map(BodyKind::Length), Just(BodyKind::Chunked),];
    (method, path, fields, framing, any::<bool>()).prop_map(|(method, path, fields, framing, close)| {
        let framing = match (method, framing) {
            ("POST" | "PUT", BodyKind::None) => BodyKind::Length(0),
            (_, f) => f,
        };
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: example.com\r\n");
        for (name, value) in fields {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        match framing {
            BodyKind::None => {}
            BodyKind::Length(n) => raw.push_str(&format!("Content-Length: {n}\r\n")),
            BodyKind::Chunked => raw.push_str("Transfer-Encoding: chunked\r\n"),
        }
        if close {
            raw.push_str("Connection: close\r\n");
        }
        raw.push_str("\r\n");
        (raw.into_bytes(), framing)
    })
}

/// A valid chunked encoding of random data in random chunk sizes, with optional extensions
/// and trailers, followed by random bytes that belong to the next request.
fn valid_chunked() -> impl Strategy<Value = (Vec<u8>, Vec<u8>, usize)> {
    (
        prop::collection::vec(any::<u8>(), 0..600),
        prop::collection::vec(1usize..200, 1..10),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(|(data, sizes, ext, trailer, after)| {
            let mut enc = Vec::new();
            let mut rest = &data[..];
            for size in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, tail) = rest.split_at((*size).min(rest.len()));
                enc.extend_from_slice(format!("{:X}", chunk.len()).as_bytes());
                if ext {
                    enc.extend_from_slice(b" ; name=\"v;al\"");
                }
                enc.extend_from_slice(b"\r\n");
                enc.extend_from_slice(chunk);
                enc.extend_from_slice(b"\r\n");
                rest = tail;
            }
            enc.extend_from_slice(b"0\r\n");
            if trailer {
                enc.extend_from_slice(b"Digest: sha-256=abc\r\nX-T:\r\n");
            }
            enc.extend_from_slice(b"\r\n");
            let body_end = enc.len();
            enc.extend_from_slice(&after);
            (enc, data, body_end)
        })
}

proptest! {
    #[test]
    fn head_random_bytes(buf in prop::collection::vec(any::<u8>(), 0..600)) {
        parse_checked(&buf, &LIMITS).ok();
        parse_checked(&buf, &TIGHT).ok();
    }

    #[test]
    fn head_http_soup(buf in http_soup()) {
        parse_checked(&buf, &LIMITS).ok();
        parse_checked(&buf, &TIGHT).ok();
    }

    #[test]
    fn head_mutated(base in prop::sample::select(VALID), edits in prop::collection::vec(edit(), 1..6)) {
        let buf = apply(base, &edits);
        parse_checked(&buf, &LIMITS).ok();
        parse_checked(&buf, &TIGHT).ok();
    }

    #[test]
    fn head_split_anywhere_is_the_same_head(
        (raw, framing) in valid_request(),
        after in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let whole = parse_checked(&raw, &LIMITS);
        let (head, used) = match whole {
            Ok(Some(done)) => done,
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(&raw)),
        };
        prop_assert_eq!(used, raw.len());
        prop_assert_eq!(head.body, framing);
        // Every prefix is incomplete, never an error.
        for cut in 0..raw.len() {
            prop_assert_eq!(parse_checked(&raw[..cut], &LIMITS), Ok(None), "cut at {}", cut);
        }
        // Whatever follows (body, next request, garbage) does not change the head.
        let mut longer = raw.clone();
        longer.extend_from_slice(&after);
        prop_assert_eq!(parse_checked(&longer, &LIMITS), Ok(Some((head, used))));
    }

    #[test]
    fn head_valid_mutated_split_agrees(
        base in prop::sample::select(VALID),
        edits in prop::collection::vec(edit(), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        // For any input, a prefix either is incomplete, or gives the same answer as the whole
        // (a complete head does not look at later bytes; an error found in a prefix stays).
        let buf = apply(base, &edits);
        let whole = parse_checked(&buf, &LIMITS);
        let cut = cut.index(buf.len() + 1);
        match parse_checked(&buf[..cut], &LIMITS) {
            Ok(None) => {}
            Ok(Some((head, used))) => prop_assert_eq!(whole, Ok(Some((head, used)))),
            // A partial version such as "HTTP/2" is judged 505 before its line ends; the
            // whole line may show it to be garbage (400). Any other error must match.
            Err(HeadError::UnsupportedVersion) => prop_assert!(matches!(
                whole,
                Err(HeadError::UnsupportedVersion | HeadError::Malformed(_))
            )),
            Err(e) => prop_assert_eq!(whole, Err(e)),
        }
    }

    #[test]
    fn chunked_random_bytes_any_split(
        buf in prop::collection::vec(any::<u8>(), 0..400),
        cut in any::<prop::sample::Index>(),
    ) {
        let whole = decode_pieces(&buf, &[]);
        let cut = cut.index(buf.len() + 1);
        prop_assert_eq!(decode_pieces(&buf, &[cut]), whole);
    }

    #[test]
    fn chunked_mutated_any_split(
        base in prop::sample::select(VALID_BODIES),
        edits in prop::collection::vec(edit(), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let buf = apply(base, &edits);
        let whole = decode_pieces(&buf, &[]);
        let cut = cut.index(buf.len() + 1);
        prop_assert_eq!(decode_pieces(&buf, &[cut]), whole);
    }

    #[test]
    fn chunked_valid_round_trips_however_split(
        (enc, data, body_end) in valid_chunked(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..4),
    ) {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(enc.len() + 1)).collect();
        cuts.sort_unstable();
        let (used, done, out) = decode_pieces(&enc, &cuts).unwrap();
        prop_assert!(done);
        prop_assert_eq!(used, body_end);
        prop_assert_eq!(out, data);
    }
}

#[test]
fn chunked_one_byte_at_a_time_matches_whole() {
    for body in VALID_BODIES {
        let every: Vec<usize> = (0..body.len()).collect();
        assert_eq!(decode_pieces(body, &every), decode_pieces(body, &[]));
    }
}
