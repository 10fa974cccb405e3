//! Holds the lazy JSON checker to serde_json: the same documents accepted, and every value read
//! lazily equal to the one serde_json parses.
#![no_main]

use hookcast::hooks::json::check;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let ours = check(data);
    let theirs = serde_json::from_slice::<Value>(data);
    assert_eq!(ours.is_ok(), theirs.is_ok(), "ours {ours:?}, serde_json {theirs:?}");
    let (Ok(doc), Ok(parsed)) = (ours, theirs) else { return };
    let node = doc.node(data);
    assert_eq!(node.to_value().into_owned(), parsed);
    if let Some(map) = parsed.as_object() {
        for (k, v) in map {
            assert_eq!(node.get(k).map(|n| n.to_value().into_owned()).as_ref(), Some(v));
            if let Some(inner) = v.as_object() {
                for (k2, v2) in inner {
                    assert_eq!(
                        node.get(k).and_then(|n| n.get(k2)).map(|n| n.to_value().into_owned()).as_ref(),
                        Some(v2)
                    );
                }
            }
        }
    }
    for (i, item) in node.items().into_iter().enumerate() {
        assert_eq!(item.to_value().into_owned(), parsed[i]);
        assert_eq!(node.at(i).map(|n| n.to_value().into_owned()), Some(parsed[i].clone()));
    }
});
