//! The `sources` list, walked into [`SourceConfig`]s.

use super::json::{err, kind, ConfigError, Obj};
use crate::sources::SourceConfig;
use serde_json::Value;

/// Most sources configured.
const MAX_SOURCES: usize = 256;
/// Most arguments of a source's command.
const MAX_ARGS: usize = 256;

/// Reads the `sources` list.
pub(crate) fn sources(list: Vec<(String, Value)>) -> Result<Vec<SourceConfig>, ConfigError> {
    if list.len() > MAX_SOURCES {
        return err("sources", format!("at most {MAX_SOURCES} sources"));
    }
    let mut out: Vec<SourceConfig> = Vec::with_capacity(list.len());
    for (path, v) in list {
        let mut o = Obj::new(v, &path)?;
        if o.take_raw("tail").is_some() {
            return err(
                &o.at("tail"),
                "tail sources are not supported yet; use a command such as [\"tail\", \"-F\", \"-n\", \"0\", FILE]",
            );
        }
        let topic_path = o.at("topic");
        let topic = match o.opt_str("topic")? {
            Some(t) => t,
            None => return err(&topic_path, "missing: the topic the lines are published to"),
        };
        if let Err(e) = crate::topic::validate_topic(&topic) {
            return err(&topic_path, format!("{e:?}"));
        }
        let command_path = o.at("command");
        let command = match o.take_raw("command") {
            Some(Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s),
                    other => err(&format!("{command_path}[{i}]"), format!("expected a string, found {}", kind(&other))),
                })
                .collect::<Result<Vec<_>, _>>()?,
            None | Some(Value::Null) => return err(&command_path, "missing: the program and its arguments, as a list"),
            Some(other) => {
                return err(
                    &command_path,
                    format!("expected a list (the program and its arguments, no shell), found {}", kind(&other)),
                )
            }
        };
        if command.is_empty() || command[0].is_empty() {
            return err(&command_path, "needs at least the program");
        }
        if command.len() > MAX_ARGS {
            return err(&command_path, format!("at most {MAX_ARGS} arguments"));
        }
        let name_path = o.at("name");
        let name = o.opt_str("name")?.unwrap_or_else(|| topic.clone());
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return err(&name_path, "a name of 1 to 128 printable characters");
        }
        if out.iter().any(|s| s.name == name) {
            return err(&name_path, format!("another source is named {name:?} (names default to the topic)"));
        }
        let max_lines_per_sec = o.num("max_lines_per_sec", 1000, 1, 1_000_000)? as u32;
        let max_line_bytes = o.num("max_line_bytes", 16 * 1024, 16, 1 << 20)? as usize;
        o.finish()?;
        out.push(SourceConfig { name, topic, command, max_lines_per_sec, max_line_bytes });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn error_of(json: &str) -> String {
        Config::from_json(json).unwrap_err().to_string()
    }

    #[test]
    fn a_command_source_with_defaults() {
        let c = Config::from_json(r#"{"sources":[{"command":["journalctl","-f"],"topic":"logs/app"}]}"#).unwrap();
        let s = &c.sources[0];
        assert_eq!((s.name.as_str(), s.topic.as_str(), s.max_lines_per_sec), ("logs/app", "logs/app", 1000));
        assert_eq!(s.command, ["journalctl", "-f"]);
    }

    #[test]
    fn bad_sources_are_named() {
        assert!(error_of(r#"{"sources":[{"command":"journalctl -f","topic":"a"}]}"#).starts_with("sources[0].command"));
        assert!(error_of(r#"{"sources":[{"command":[],"topic":"a"}]}"#).starts_with("sources[0].command"));
        assert!(error_of(r#"{"sources":[{"command":["x"]}]}"#).starts_with("sources[0].topic"));
        assert!(error_of(r#"{"sources":[{"tail":"/var/log/x","topic":"a"}]}"#).starts_with("sources[0].tail"));
        assert!(error_of(r#"{"sources":[{"command":["x"],"topic":"a","max_lines_per_sec":0}]}"#)
            .starts_with("sources[0].max_lines_per_sec"));
        let dup = r#"{"sources":[{"command":["x"],"topic":"a"},{"command":["y"],"topic":"a"}]}"#;
        assert!(error_of(dup).starts_with("sources[1].name"));
        assert!(error_of(r#"{"sources":[{"command":["x"],"topic":"a","bogus":1}]}"#).contains("bogus"));
    }
}
