//! SIGHUP: the configuration is read again and put in force without dropping a connection; a
//! broken configuration is refused and the running one stays.

use crate::util::*;
use std::time::Duration;

fn config(hook: &str) -> String {
    format!(
        r#"{{"public":[{{"topics":["**"],"scopes":["subscribe","publish"]}}],
            "sse":{{"keepalive_ms":60000}},
            "limits":{{"max_connections_per_ip":2000}},
            "hooks":[{{"id":"{hook}","response-message":"{hook} here"}}]}}"#
    )
}

#[test]
fn sighup_swaps_hooks_without_dropping_a_subscriber() {
    let d = Daemon::start(&config("old"));
    let cfg = d.dir.0.join("hookcast.json");
    let mut subs: Vec<_> = (0..1000).map(|_| sse(&d, "/events?topics=r", &[]).0).collect();
    assert_eq!(d.metric("hookcast_connections_active{transport=\"sse\"}"), 1000.0);
    d.publish("r", "before");
    assert_eq!(d.request("POST", "/hooks/old", &[], b"").text(), "old here");

    std::fs::write(&cfg, config("new")).unwrap();
    signal(&d.child, "HUP");
    assert!(eventually(Duration::from_secs(5), || d.request("POST", "/hooks/new", &[], b"").status == 200));
    assert_eq!(d.request("POST", "/hooks/old", &[], b"").status, 404, "the old hook is gone");
    assert_eq!(d.metric("hookcast_connections_active{transport=\"sse\"}"), 1000.0, "nobody was dropped");

    // A broken file is refused: the running configuration stays.
    std::fs::write(&cfg, "{ not json").unwrap();
    signal(&d.child, "HUP");
    assert!(eventually(Duration::from_secs(5), || d.log_text().contains("configuration refused")));
    assert_eq!(d.request("POST", "/hooks/new", &[], b"").text(), "new here");
    std::fs::write(&cfg, r#"{"hooks":[{"id":"x","provider":"github","secrets":[{"env":"UNSET_SECRET_VAR"}]}]}"#)
        .unwrap();
    signal(&d.child, "HUP");
    assert!(eventually(Duration::from_secs(5), || d.log_text().matches("configuration refused").count() == 2));
    assert_eq!(d.request("POST", "/hooks/new", &[], b"").status, 200, "a missing secret is refused too");

    // Every subscriber still gets events, the one before and the one after.
    d.publish("r", "after");
    for s in subs.iter_mut() {
        let got = read_until(s, "data: after\n");
        assert!(got.contains("data: before\n"), "{got}");
    }
}
