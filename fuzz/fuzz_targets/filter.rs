//! Subscription filters from hostile query strings and JSON: parsing never panics, a parsed
//! filter reads back the same from its own JSON form (what the WebSocket ack shows), and
//! matching any event never panics.
#![no_main]

use hookcast::filter::{Filter, Subject};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Query form: `type`, up to a few `where`, `q`, split on a byte the input chooses.
    let mut parts = text.split('\u{1}');
    let types = parts.next().filter(|s| !s.is_empty());
    let q = parts.next().filter(|s| !s.is_empty());
    let wheres: Vec<String> = parts.by_ref().take(10).map(str::to_string).collect();
    let event = parts.next().unwrap_or("");
    if let Ok(Some(f)) = Filter::from_query(types, &wheres, q) {
        let back = Filter::from_json(&f.to_json()).expect("its own JSON form parses");
        assert_eq!(back.as_ref(), Some(&f));
        let _ = f.matches(&Subject::new("line", event, true));
        let _ = f.matches(&Subject::new("line", event, false));
    }
    // JSON form, as the WebSocket filter op carries it.
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(Some(f)) = Filter::from_json(&v) {
            assert_eq!(Filter::from_json(&f.to_json()).ok().flatten().as_ref(), Some(&f));
            let _ = f.matches(&Subject::new("message", &text, true));
        }
    }
});
