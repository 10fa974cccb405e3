//! The `sources` list, walked into [`SourceConfig`]s.

use super::json::{err, kind, ConfigError, Obj};
use crate::sources::{SourceConfig, What};
use serde_json::Value;
use std::path::Path;

/// Most sources configured.
const MAX_SOURCES: usize = 256;
/// Most arguments of a source's command.
const MAX_ARGS: usize = 256;

/// Reads the `sources` list (relative `tail` paths start at `base_dir`).
pub(crate) fn sources(list: Vec<(String, Value)>, base_dir: &Path) -> Result<Vec<SourceConfig>, ConfigError> {
    if list.len() > MAX_SOURCES {
        return err("sources", format!("at most {MAX_SOURCES} sources"));
    }
    let mut out: Vec<SourceConfig> = Vec::with_capacity(list.len());
    for (path, v) in list {
        let mut o = Obj::new(v, &path)?;
        let topic_path = o.at("topic");
        let topic = match o.opt_str("topic")? {
            Some(t) => t,
            None => return err(&topic_path, "missing: the topic the lines are published to"),
        };
        if let Err(e) = crate::topic::validate_topic(&topic) {
            return err(&topic_path, format!("{e:?}"));
        }
        let tail_path = o.at("tail");
        let tail = o.opt_str("tail")?;
        let command_path = o.at("command");
        let what = match (o.take_raw("command"), tail) {
            (Some(c), Some(_)) if !c.is_null() => return err(&path, "either \"command\" or \"tail\", not both"),
            (_, Some(file)) => {
                if file.is_empty() || file.ends_with('/') {
                    return err(&tail_path, "the path of a file");
                }
                What::Tail(base_dir.join(file))
            }
            (raw, None) => What::Command(command(raw, &command_path)?),
        };
        let name_path = o.at("name");
        let name = o.opt_str("name")?.unwrap_or_else(|| topic.clone());
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return err(&name_path, "a name of 1 to 128 printable characters");
        }
        if out.iter().any(|s| s.name == name) {
            return err(&name_path, format!("another source is named {name:?} (names default to the topic)"));
        }
        let max_lines_per_sec = o.num("max_lines_per_sec", 1000, 1, 1_000_000)? as u32;
        let max_line_bytes = o.size("max_line_bytes", 16 * 1024, 16, 1 << 20)?;
        o.finish()?;
        out.push(SourceConfig { name, topic, what, max_lines_per_sec, max_line_bytes });
    }
    Ok(out)
}

/// A command source's argv.
fn command(raw: Option<Value>, command_path: &str) -> Result<Vec<String>, ConfigError> {
    let command = match raw {
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s),
                other => err(&format!("{command_path}[{i}]"), format!("expected a string, found {}", kind(&other))),
            })
            .collect::<Result<Vec<_>, _>>()?,
        None | Some(Value::Null) => {
            return err(command_path, "missing: the program and its arguments as a list, or a \"tail\" file")
        }
        Some(other) => {
            return err(
                command_path,
                format!("expected a list (the program and its arguments, no shell), found {}", kind(&other)),
            )
        }
    };
    if command.is_empty() || command[0].is_empty() {
        return err(command_path, "needs at least the program");
    }
    if command.len() > MAX_ARGS {
        return err(command_path, format!("at most {MAX_ARGS} arguments"));
    }
    Ok(command)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::sources::What;

    fn error_of(json: &str) -> String {
        Config::from_json(json).unwrap_err().to_string()
    }

    #[test]
    fn a_command_source_with_defaults() {
        let c = Config::from_json(r#"{"sources":[{"command":["journalctl","-f"],"topic":"logs/app"}]}"#).unwrap();
        let s = &c.sources[0];
        assert_eq!((s.name.as_str(), s.topic.as_str(), s.max_lines_per_sec), ("logs/app", "logs/app", 1000));
        assert_eq!(s.what, What::Command(vec!["journalctl".into(), "-f".into()]));
        let c = Config::from_json(r#"{"sources":[{"tail":"/var/log/app.log","topic":"logs/app"}]}"#).unwrap();
        assert_eq!(c.sources[0].what, What::Tail("/var/log/app.log".into()));
    }

    #[test]
    fn bad_sources_are_named() {
        assert!(error_of(r#"{"sources":[{"command":"journalctl -f","topic":"a"}]}"#).starts_with("sources[0].command"));
        assert!(error_of(r#"{"sources":[{"command":[],"topic":"a"}]}"#).starts_with("sources[0].command"));
        assert!(error_of(r#"{"sources":[{"command":["x"]}]}"#).starts_with("sources[0].topic"));
        assert!(error_of(r#"{"sources":[{"tail":"/var/log/","topic":"a"}]}"#).starts_with("sources[0].tail"));
        assert!(error_of(r#"{"sources":[{"tail":"/x","command":["y"],"topic":"a"}]}"#).starts_with("sources[0]:"));
        assert!(error_of(r#"{"sources":[{"command":["x"],"topic":"a","max_lines_per_sec":0}]}"#)
            .starts_with("sources[0].max_lines_per_sec"));
        let dup = r#"{"sources":[{"command":["x"],"topic":"a"},{"command":["y"],"topic":"a"}]}"#;
        assert!(error_of(dup).starts_with("sources[1].name"));
        assert!(error_of(r#"{"sources":[{"command":["x"],"topic":"a","bogus":1}]}"#).contains("bogus"));
    }
}
