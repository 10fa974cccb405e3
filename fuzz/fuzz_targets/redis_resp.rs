//! Feeds arbitrary server bytes to the RESP2 reply parser, as the Redis link does: parse from
//! the start, and on `Need(n)` wait for `n` bytes. Every answer must be consistent with the
//! bytes given, and reading the same bytes in two pieces must not change what is parsed.
#![no_main]

use hookcast::redis::resp::{parse, Limits, Parsed};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits { max_bulk: 1 << 12, max_elements: 64, max_depth: 4 };

/// Every reply in `data`, with the error that ended the stream if any, reading `data` in
/// pieces that end at `split` and at the end.
fn replies(data: &[u8], split: usize) -> (Vec<String>, Option<String>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for chunk in [&data[..split], &data[split..]] {
        buf.extend_from_slice(chunk);
        loop {
            match parse(&buf, &LIMITS) {
                Ok(Parsed::Done(v, used)) => {
                    assert!(used > 0 && used <= buf.len());
                    out.push(format!("{v:?}"));
                    buf.drain(..used);
                }
                Ok(Parsed::Need(n)) => {
                    assert!(n > buf.len());
                    break;
                }
                Err(e) => return (out, Some(format!("{e:?}"))),
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    let whole = replies(data, data.len());
    let split = replies(data, data.len() / 2);
    assert_eq!(whole, split, "read splits must not change the outcome");
});
