//! A forty-line logger for the `log` facade: one line per record on stderr, with a timestamp, or
//! with a `<N>` syslog priority prefix instead when stderr is the journal (systemd sets
//! `JOURNAL_STREAM`), since journald stamps lines itself. A crate would add nothing we use.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;

struct Logger {
    journald: bool,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = if self.journald {
            let prio = match record.level() {
                Level::Error => 3,
                Level::Warn => 4,
                Level::Info => 6,
                Level::Debug | Level::Trace => 7,
            };
            format!("<{prio}>{}\n", record.args())
        } else {
            let ts = crate::clock::rfc3339(crate::clock::unix_ms());
            format!("{ts} {:5} {}\n", record.level(), record.args())
        };
        // One write per line so lines from the journal thread never interleave mid-line.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// Installs the logger; `HOOKCAST_LOG` overrides the configured level.
pub fn init(level: LevelFilter) {
    let level = std::env::var("HOOKCAST_LOG").ok().and_then(|s| s.parse().ok()).unwrap_or(level);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    // A second init (tests) keeps the first logger; the level still applies.
    let _ = log::set_boxed_logger(Box::new(Logger { journald }));
    log::set_max_level(level);
}
