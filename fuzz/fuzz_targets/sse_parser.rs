//! Feeds arbitrary bytes to the SSE stream parser (used by `hookcast tail`) at two splits.
#![no_main]

use hookcast::sse::Parser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut a = Parser::default();
    let whole = a.feed(data);
    let mut b = Parser::default();
    let mut split = b.feed(&data[..data.len() / 2]);
    split.extend(b.feed(&data[data.len() / 2..]));
    assert_eq!(whole, split);
});
