//! Feeds arbitrary multipart bodies to `hooks::body`: through `parse_payload_with_json_parts`
//! with a fuzzed Content-Type, and to the part splitter with a fuzzed boundary.
//!
//! Beyond "does not panic": the boundary length and part-count limits hold (an out-of-range
//! boundary is refused, no answer has more than `MAX_MULTIPART_PARTS` parts), and a body built
//! here from fuzzed values, none of which holds the delimiter, reads back as those values.
//!
//! Input: a Content-Type (whose `boundary` the splitter is also given), NUL, the body.

#![no_main]

use hookcast::hooks::body::{
    multipart_part_count, parse_payload_with_json_parts, MAX_BOUNDARY_LEN, MAX_MULTIPART_PARTS,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fuzz_target!(|data: &[u8]| {
    let (ct, body) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let ct = String::from_utf8_lossy(ct);
    let _ = parse_payload_with_json_parts(&ct, None, body, &["payload"]);

    // The splitter with the raw text after `boundary=` as the boundary, unparsed.
    let boundary = ct.split_once("boundary=").map_or("", |(_, b)| b);
    match multipart_part_count(body, boundary) {
        Ok(n) => {
            assert!((1..=MAX_BOUNDARY_LEN).contains(&boundary.len()), "boundary {boundary:?} accepted");
            assert!(n <= MAX_MULTIPART_PARTS, "{n} parts");
        }
        Err(e) => assert!(matches!(e.status(), 400 | 415), "{e}"),
    }

    // Round trip: the body's pieces (split at 0x01) as values under a boundary made from the
    // Content-Type's letters, skipped when a piece holds its delimiter line.
    let b: String = ct.chars().filter(char::is_ascii_alphanumeric).take(MAX_BOUNDARY_LEN).collect();
    let b = if b.is_empty() { "b".to_owned() } else { b };
    let line_delim = format!("\n--{b}").into_bytes();
    let mut built = Vec::new();
    let mut want = Map::new();
    let mut utf8 = true;
    for (i, piece) in body.split(|&c| c == 1).enumerate() {
        if contains(&[b"\n", piece].concat(), &line_delim) {
            return;
        }
        built.extend_from_slice(format!("--{b}\r\nContent-Disposition: form-data; name=\"f{i}\"\r\n\r\n").as_bytes());
        built.extend_from_slice(piece);
        built.extend_from_slice(b"\r\n");
        match std::str::from_utf8(piece) {
            Ok(s) => {
                want.insert(format!("f{i}"), Value::String(s.to_owned()));
            }
            Err(_) => utf8 = false,
        }
    }
    built.extend_from_slice(format!("--{b}--\r\n").as_bytes());
    let count = body.split(|&c| c == 1).count();
    let got = multipart_part_count(&built, &b);
    if count > MAX_MULTIPART_PARTS {
        assert!(got.is_err(), "{count} parts accepted");
        return;
    }
    assert_eq!(got, Ok(count));
    let parsed = parse_payload_with_json_parts(&format!("multipart/form-data; boundary={b}"), None, &built, &[]);
    match parsed {
        Ok(p) if utf8 => assert_eq!(p.to_value(&built), Value::Object(want)),
        Err(e) if !utf8 => assert_eq!(e.status(), 400, "{e}"),
        other => panic!("utf8 {utf8}: {other:?}"),
    }
});
