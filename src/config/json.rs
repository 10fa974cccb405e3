//! The JSON-walking toolkit every configuration reader shares: the config file, hooks files,
//! trigger rules, parameters and secrets. A leaf: it knows JSON paths and how to say what is wrong
//! at one, and nothing about what the settings mean (except `Cidr`, a value shape).
//!
//! An unknown key is always an error that names its path; where the reader knows the fields, the
//! message names the one a misspelt key looks like (`did you mean "max_body_bytes"?`).

use crate::auth::Cidr;
use serde_json::{Map, Value};
use std::fmt;

/// A configuration error: where in the JSON, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// JSON path of the offending value (`limits.max_body_bytes`), empty for the document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Fails with a [`ConfigError`] at `path`.
pub(crate) fn err<T>(path: &str, message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError { path: path.to_string(), message: message.into() })
}

/// `path.key`, or `key` at the document root.
pub(crate) fn at(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The kind of a JSON value, for messages.
pub(crate) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A field name with case and `_`/`-` folded, for comparing spellings.
pub(crate) fn normalise(key: &str) -> String {
    key.to_ascii_lowercase().replace('_', "-")
}

/// Levenshtein distance, for telling a typo from a field of another program.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

/// The field of `known` that `key` looks like a misspelling of: the same but for case or `_`
/// for `-`, one edit away (two for names longer than four letters), or one containing the other
/// (`secret` / `secrets`).
pub(crate) fn near_miss<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    let k = normalise(key);
    let exact = known.iter().find(|f| normalise(f) == k);
    let close = || known.iter().find(|f| distance(&normalise(f), &k) <= if f.len().min(k.len()) <= 4 { 1 } else { 2 });
    let within = || known.iter().find(|f| k.len() >= 4 && f.len() >= 4 && (f.contains(k.as_str()) || k.contains(*f)));
    exact.or_else(close).or_else(within).copied()
}

/// The one unknown-key error: `key` of the object at `path` is not one of `known`. A `refused`
/// key gets its reason, a near miss ([`near_miss`]) a hint, a short `known` list the choices;
/// with `known` empty (the reader cannot list them) it is a bare "unknown field".
pub(crate) fn unknown_field(path: &str, key: &str, known: &[&str], refused: &[(&str, &str)]) -> ConfigError {
    let message = if let Some((_, why)) = refused.iter().find(|(k, _)| *k == key) {
        format!("not supported by hookcast: {why}")
    } else {
        match near_miss(key, known) {
            Some(k) => format!("unknown field (did you mean {k:?}?)"),
            None if !known.is_empty() && known.len() <= 6 => format!("unknown field (one of {})", known.join(", ")),
            None => "unknown field".to_string(),
        }
    };
    ConfigError { path: at(path, key), message }
}

/// Refuses the first key of the object `value` that is not in `known` ([`unknown_field`]).
pub(crate) fn check_fields(
    value: &Value,
    path: &str,
    known: &[&str],
    refused: &[(&str, &str)],
) -> Result<(), ConfigError> {
    let Some(map) = value.as_object() else { return Ok(()) };
    match map.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err(unknown_field(path, key, known, refused)),
    }
}

/// A JSON object being consumed key by key; `finish` rejects whatever is left.
pub struct Obj {
    map: Map<String, Value>,
    path: String,
    /// Every key asked for, present or not: the fields this object may have.
    asked: Vec<String>,
}

impl Obj {
    /// Wraps `value`, which must be an object, found at `path`.
    pub fn new(value: Value, path: &str) -> Result<Obj, ConfigError> {
        match value {
            Value::Object(map) => Ok(Obj { map, path: path.to_string(), asked: Vec::new() }),
            other => err(path, format!("expected an object, found {}", kind(&other))),
        }
    }

    /// Wraps an object already taken apart from its value.
    pub(crate) fn from_map(map: Map<String, Value>, path: &str) -> Obj {
        Obj { map, path: path.to_string(), asked: Vec::new() }
    }

    /// The keys not taken yet, with their values.
    pub(crate) fn rest(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.map.iter()
    }

    /// An object with no keys, for an absent section read with its defaults.
    pub(crate) fn empty() -> Obj {
        Obj { map: Map::new(), path: String::new(), asked: Vec::new() }
    }

    /// The JSON path of `key` inside this object.
    pub fn at(&self, key: &str) -> String {
        at(&self.path, key)
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        self.asked.push(key.to_string());
        self.map.remove(key)
    }

    /// Takes a value as it is, for fields of more than one shape.
    pub fn take_raw(&mut self, key: &str) -> Option<Value> {
        self.take(key)
    }

    /// Takes an optional string.
    pub fn opt_str(&mut self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => err(&self.at(key), format!("expected a string, found {}", kind(&other))),
        }
    }

    /// Takes an optional integer in `[min, max]`, or `default` when absent.
    pub fn num(&mut self, key: &str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if (min..=max).contains(&v) => Ok(v),
                _ => err(&self.at(key), format!("expected a whole number from {min} to {max}, found {n}")),
            },
            Some(other) => err(&self.at(key), format!("expected a number, found {}", kind(&other))),
        }
    }

    /// [`Obj::num`] for a count or size held in memory: a bound past what this machine's usize
    /// holds (4 GiB of history on a 32-bit Pi) means "as much as it can", never a wrapped value.
    pub fn size(&mut self, key: &str, default: u64, min: u64, max: u64) -> Result<usize, ConfigError> {
        self.num(key, default, min, max).map(|v| usize::try_from(v).unwrap_or(usize::MAX))
    }

    /// Takes an optional boolean.
    pub fn opt_bool(&mut self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(other) => err(&self.at(key), format!("expected true or false, found {}", kind(&other))),
        }
    }

    /// Takes an optional nested object.
    pub fn opt_obj(&mut self, key: &str) -> Result<Option<Obj>, ConfigError> {
        let path = self.at(key);
        match self.take(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => Obj::new(v, &path).map(Some),
        }
    }

    /// Takes an optional list, returning each element with its path.
    pub fn opt_list(&mut self, key: &str) -> Result<Vec<(String, Value)>, ConfigError> {
        let path = self.at(key);
        match self.take(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                Ok(items.into_iter().enumerate().map(|(i, v)| (format!("{path}[{i}]"), v)).collect())
            }
            Some(other) => err(&path, format!("expected a list, found {}", kind(&other))),
        }
    }

    /// Takes an optional list of strings.
    pub fn opt_str_list(&mut self, key: &str) -> Result<Option<Vec<String>>, ConfigError> {
        if !self.map.contains_key(key) {
            self.asked.push(key.to_string());
            return Ok(None);
        }
        self.opt_list(key)?
            .into_iter()
            .map(|(path, v)| match v {
                Value::String(s) => Ok(s),
                other => err(&path, format!("expected a string, found {}", kind(&other))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// Takes an optional list of addresses or CIDR networks (empty when absent).
    pub fn opt_cidr_list(&mut self, key: &str) -> Result<Vec<Cidr>, ConfigError> {
        let path = self.at(key);
        self.opt_str_list(key)?
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Cidr::parse(s).ok_or_else(|| ConfigError {
                    path: format!("{path}[{i}]"),
                    message: format!("not an address or CIDR: {s:?}"),
                })
            })
            .collect()
    }

    /// Rejects the keys nobody took, naming the first and the field it looks like among the
    /// keys asked for ("did you mean"), or the choices when there are few.
    pub fn finish(self) -> Result<(), ConfigError> {
        let asked: Vec<&str> = self.asked.iter().map(String::as_str).collect();
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(unknown_field(&self.path, k, &asked, &[])),
        }
    }
}
