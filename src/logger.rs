//! A small logger for the `log` facade: one line per record on stderr. A crate would add
//! nothing we use.
//!
//! Records may carry structured fields (`log::info!(hook = id, run = 7; "run started")`, the
//! `log` crate's key-values). This module is the one place that turns them into text, in one of
//! two formats (`log_format`):
//!
//! - `text`: `2026-11-22T09:41:10.123Z INFO  run started hook=deploy run=7`; a value that is
//!   empty or holds a space, a quote, `=`, a backslash or a control character is written as a
//!   quoted, escaped string (`event="Pipeline Hook"`), so a line always splits back into its
//!   fields.
//! - `json`: one object per line, `{"ts":…,"level":"info","msg":…}` and then the fields in the
//!   order the record gives them; numbers and booleans stay JSON numbers and booleans.
//!
//! In both, a field whose value is `None` is left out.
//!
//! When stderr is the journal (systemd sets `JOURNAL_STREAM`) a line starts with a `<N>`
//! syslog priority, which journald takes off and keeps as the entry's priority; text lines then
//! leave out the timestamp, since journald stamps lines itself.

use log::kv::{Error as KvError, Key, Value, VisitSource, VisitValue};
use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};

/// How log lines are written (config `log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// `TIME LEVEL message key=value …`.
    #[default]
    Text,
    /// One JSON object per line with the keys `ts`, `level`, `msg` and the record's fields.
    Json,
}

impl Format {
    /// The format named `s` (`text` or `json`).
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// The format in use: a reload may change it while the journal thread logs.
static FORMAT: AtomicU8 = AtomicU8::new(0);

/// Fields written quoted even when they need not be: a request id is the sender's text, and it
/// was always logged quoted, so what people grep for stays true.
const ALWAYS_QUOTED: &[&str] = &["request"];

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
        let format = if FORMAT.load(Ordering::Relaxed) == 1 { Format::Json } else { Format::Text };
        let ts = (!self.journald || format == Format::Json).then(|| crate::clock::rfc3339(crate::clock::unix_ms()));
        let line = format_line(format, record, ts.as_deref(), self.journald);
        // One write per line so lines from the journal thread never interleave mid-line.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// One record as one line (with its newline): `ts` is left out when `None`.
fn format_line(format: Format, record: &Record<'_>, ts: Option<&str>, journald: bool) -> String {
    let mut line = String::with_capacity(128);
    if journald {
        let _ = write!(line, "<{}>", priority(record.level()));
    }
    match format {
        Format::Text => {
            if let Some(ts) = ts {
                let _ = write!(line, "{ts} {:5} ", record.level());
            }
            let _ = write!(line, "{}", record.args());
            let _ = record.key_values().visit(&mut TextFields(&mut line));
        }
        Format::Json => {
            line.push('{');
            if let Some(ts) = ts {
                let _ = write!(line, "\"ts\":{},", json_str(ts));
            }
            let level = record.level().as_str().to_ascii_lowercase();
            let _ = write!(line, "\"level\":\"{level}\",\"msg\":{}", json_str(&record.args().to_string()));
            let _ = record.key_values().visit(&mut JsonFields(&mut line));
            line.push('}');
        }
    }
    line.push('\n');
    line
}

/// Whether a text value must be quoted to read back as one field.
fn needs_quotes(v: &str) -> bool {
    v.is_empty() || v.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '=' | '\\'))
}

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A field's value, typed as far as `log` tells us.
enum Typed {
    /// `None`: the field is left out of the line.
    Absent,
    /// A number or a boolean: written bare in both formats.
    Bare(String),
    /// Anything else, as text.
    Text(String),
}

impl Typed {
    fn of(v: &Value<'_>) -> Typed {
        struct Visit(Option<Typed>);
        impl<'v> VisitValue<'v> for Visit {
            fn visit_any(&mut self, value: Value<'_>) -> Result<(), KvError> {
                self.0 = Some(Typed::Text(value.to_string()));
                Ok(())
            }
            fn visit_null(&mut self) -> Result<(), KvError> {
                self.0 = Some(Typed::Absent);
                Ok(())
            }
            fn visit_u64(&mut self, v: u64) -> Result<(), KvError> {
                self.0 = Some(Typed::Bare(v.to_string()));
                Ok(())
            }
            fn visit_i64(&mut self, v: i64) -> Result<(), KvError> {
                self.0 = Some(Typed::Bare(v.to_string()));
                Ok(())
            }
            fn visit_f64(&mut self, v: f64) -> Result<(), KvError> {
                // JSON has no NaN or infinity.
                self.0 = Some(if v.is_finite() { Typed::Bare(v.to_string()) } else { Typed::Text(v.to_string()) });
                Ok(())
            }
            fn visit_bool(&mut self, v: bool) -> Result<(), KvError> {
                self.0 = Some(Typed::Bare(v.to_string()));
                Ok(())
            }
            fn visit_str(&mut self, v: &str) -> Result<(), KvError> {
                self.0 = Some(Typed::Text(v.to_string()));
                Ok(())
            }
        }
        let mut visit = Visit(None);
        let _ = v.visit(&mut visit);
        visit.0.unwrap_or_else(|| Typed::Text(v.to_string()))
    }
}

struct TextFields<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for TextFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), KvError> {
        let _ = match Typed::of(&value) {
            Typed::Absent => Ok(()),
            Typed::Bare(v) => write!(self.0, " {key}={v}"),
            Typed::Text(v) if needs_quotes(&v) || ALWAYS_QUOTED.contains(&key.as_str()) => {
                write!(self.0, " {key}={v:?}")
            }
            Typed::Text(v) => write!(self.0, " {key}={v}"),
        };
        Ok(())
    }
}

struct JsonFields<'a>(&'a mut String);

impl<'kvs> VisitSource<'kvs> for JsonFields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), KvError> {
        let v = match Typed::of(&value) {
            Typed::Absent => return Ok(()),
            Typed::Bare(v) => v,
            Typed::Text(v) => json_str(&v),
        };
        let _ = write!(self.0, ",{}:{v}", json_str(key.as_str()));
        Ok(())
    }
}

/// Installs the logger; `HOOKCAST_LOG` overrides the configured level.
pub fn init(level: LevelFilter, format: Format) {
    let level = std::env::var("HOOKCAST_LOG").ok().and_then(|s| s.parse().ok()).unwrap_or(level);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    set_format(format);
    // A second init (tests) keeps the first logger; the level still applies.
    let _ = log::set_boxed_logger(Box::new(Logger { journald }));
    log::set_max_level(level);
}

/// Switches the line format (a reload).
pub fn set_format(format: Format) {
    FORMAT.store(u8::from(format == Format::Json), Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(format: Format, journald: bool, record: &Record<'_>) -> String {
        format_line(format, record, Some("2026-11-22T09:41:10.123Z"), journald)
    }

    #[test]
    fn text_quotes_only_what_needs_it() {
        let kvs: &[(&str, Value<'_>)] = &[
            ("hook", Value::from("deploy")),
            ("event", Value::from("Pipeline Hook")),
            ("run", Value::from(7u64)),
            ("ok", Value::from(true)),
            ("empty", Value::from("")),
            ("said", Value::from("a \"b\"\n")),
            ("request", Value::from("req-12")),
        ];
        let args = format_args!("delivery");
        let r = Record::builder().level(Level::Info).args(args).key_values(&kvs).build();
        assert_eq!(
            line(Format::Text, false, &r),
            "2026-11-22T09:41:10.123Z INFO  delivery hook=deploy event=\"Pipeline Hook\" run=7 ok=true empty=\"\" \
             said=\"a \\\"b\\\"\\n\" request=\"req-12\"\n"
        );
    }

    #[test]
    fn json_has_stable_keys_and_typed_values() {
        let kvs: &[(&str, Value<'_>)] =
            &[("hook", Value::from("deploy")), ("run", Value::from(7u64)), ("event", Value::from("Pipeline Hook"))];
        let args = format_args!("run \"started\"");
        let r = Record::builder().level(Level::Warn).args(args).key_values(&kvs).build();
        let out = line(Format::Json, false, &r);
        assert!(out.ends_with("}\n") && !out.trim_end().contains('\n'), "{out}");
        assert_eq!(
            out,
            "{\"ts\":\"2026-11-22T09:41:10.123Z\",\"level\":\"warn\",\"msg\":\"run \\\"started\\\"\",\
             \"hook\":\"deploy\",\"run\":7,\"event\":\"Pipeline Hook\"}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["run"], 7);
    }

    #[test]
    fn journald_lines_carry_the_priority() {
        let args = format_args!("hello");
        let r = Record::builder().level(Level::Error).args(args).build();
        assert_eq!(format_line(Format::Text, &r, None, true), "<3>hello\n");
        assert!(line(Format::Json, true, &r).starts_with("<3>{\"ts\":"));
    }

    #[test]
    fn formats_by_name() {
        assert_eq!(Format::parse("json"), Some(Format::Json));
        assert_eq!(Format::parse("text"), Some(Format::Text));
        assert_eq!(Format::parse("logfmt"), None);
    }
}
