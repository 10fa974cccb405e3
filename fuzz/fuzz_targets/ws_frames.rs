//! Feeds arbitrary client bytes to the WebSocket layer: the frame-header parser, the close
//! payload parser, and the message assembler at two different read splits, which must agree.
#![no_main]

use hookcast::ws::frame::{parse_close_payload, parse_header};
use hookcast::ws::message::{Assembler, Incoming};
use libfuzzer_sys::fuzz_target;

fn run(data: &[u8], split: usize) -> (Vec<Incoming>, Option<u16>) {
    let mut asm = Assembler::new(1 << 16);
    let mut buf: Vec<u8> = Vec::new();
    let mut items = Vec::new();
    for chunk in [&data[..split], &data[split..]] {
        buf.extend_from_slice(chunk);
        loop {
            match asm.feed(&mut buf) {
                Err(reason) => return (items, Some(reason.code)),
                Ok(f) => {
                    assert!(f.consumed <= buf.len());
                    buf.drain(..f.consumed);
                    match f.item {
                        Some(i) => items.push(i),
                        None if f.consumed == 0 => break,
                        None => {}
                    }
                }
            }
        }
    }
    (items, None)
}

fuzz_target!(|data: &[u8]| {
    let _ = parse_header(data, 1 << 20);
    let _ = parse_close_payload(data);
    let whole = run(data, data.len());
    let split = run(data, data.len() / 2);
    assert_eq!(format!("{whole:?}"), format!("{split:?}"), "read splits must not change the outcome");
});
