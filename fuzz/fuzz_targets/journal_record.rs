//! Feeds arbitrary bytes to the journal's record decoder, as a segment read back from a damaged
//! disk would: `decode` must not panic, must not claim more bytes than it was given, must only
//! accept frames that re-encode to exactly the same bytes (the encoding is canonical), and must
//! call every strict prefix of an accepted frame incomplete. Then the whole input is scanned as
//! a stream of frames up to the first bad one. (`Journal::open`'s reader, which also skips damage
//! to the next valid frame, is covered by a property test in `src/journal/segment.rs`.)
#![no_main]

use hookcast::journal::record::{decode, encode, Decoded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Decoded::Record(rec, used) = decode(data) {
        assert!(used <= data.len());
        let mut again = Vec::new();
        encode(&rec, &mut again).expect("a decoded record is within the limits");
        assert_eq!(&again[..], &data[..used], "decode accepted a non-canonical frame");
        assert_eq!(decode(&data[..used - 1]), Decoded::Incomplete);
    }
    let mut at = 0;
    while at < data.len() {
        match decode(&data[at..]) {
            Decoded::Record(_, used) => {
                assert!(used > 0 && at + used <= data.len());
                at += used;
            }
            Decoded::Incomplete | Decoded::Corrupt(_) => break,
        }
    }
});
