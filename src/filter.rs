//! Subscription filters: which events a subscriber wants, as a pure, parsed, bounded value.
//!
//! ```text
//! /events?topics=logs/*&type=line,error&where=level:error&where=meta.region:eu&q=timeout
//! {"type":["line","error"],"where":{"level":"error","meta.region":"eu"},"q":"timeout"}
//! ```
//!
//! Every condition must hold (AND): the event type is one of `type`; each `where` dot path
//! (`items.0.name`: a number indexes a list, as in hooks' payload paths) names a scalar in the
//! event's JSON data equal to the value (a string equals a string; a number, `true`, `false` or
//! `null` equals the value written the same way, numbers compared as numbers); `q` occurs in the
//! data text, ignoring case. A field condition never matches a text event. Filters are bounded
//! ([`MAX_CONDITIONS`], [`MAX_VALUE_BYTES`], [`MAX_TOTAL_BYTES`]) and a refusal names the problem.
//! The data is parsed as JSON lazily and at most once per event however many filters look at
//! it ([`Subject`]).

use serde_json::Value;
use std::cell::OnceCell;

/// Most conditions in one filter: event types, field equalities and the text search together.
pub const MAX_CONDITIONS: usize = 8;
/// Longest type name, field path, field value or search text, in bytes.
pub const MAX_VALUE_BYTES: usize = 256;
/// Most bytes of names, paths, values and text in one filter together.
pub const MAX_TOTAL_BYTES: usize = 2048;

/// A parsed filter with at least one condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Event types, any of which matches (empty: any type).
    types: Vec<Box<str>>,
    /// Field equalities: the path's segments and the expected scalar.
    fields: Vec<Field>,
    /// Text searched in the data, lowercased.
    text: Option<Box<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Field {
    path: Box<str>,
    value: Scalar,
}

/// An expected field value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scalar {
    /// From a query or a JSON string: equals a string field, or a scalar field written the same.
    Text(Box<str>),
    /// From a JSON number, boolean or null: equals the same JSON scalar.
    Json(Value),
}

/// One event as a filter sees it; the data is parsed as JSON on first need, then kept.
#[derive(Debug)]
pub struct Subject<'a> {
    kind: &'a str,
    data: &'a str,
    is_json: bool,
    parsed: OnceCell<Option<Value>>,
}

impl<'a> Subject<'a> {
    /// An event of type `kind` with `data` (JSON when `is_json`).
    pub fn new(kind: &'a str, data: &'a str, is_json: bool) -> Subject<'a> {
        Subject { kind, data, is_json, parsed: OnceCell::new() }
    }

    fn json(&self) -> Option<&Value> {
        if !self.is_json {
            return None;
        }
        self.parsed.get_or_init(|| serde_json::from_str(self.data).ok()).as_ref()
    }

    /// Whether the data was parsed (for tests and benchmarks of the laziness).
    pub fn was_parsed(&self) -> bool {
        self.parsed.get().is_some()
    }
}

/// Counts conditions and bytes while a filter is built, refusing past the limits.
struct Budget {
    conditions: usize,
    bytes: usize,
}

impl Budget {
    fn take(&mut self, what: &str, s: &str) -> Result<(), String> {
        if s.len() > MAX_VALUE_BYTES {
            return Err(format!("filter: {what} is longer than {MAX_VALUE_BYTES} bytes"));
        }
        self.bytes += s.len();
        if self.bytes > MAX_TOTAL_BYTES {
            return Err(format!("filter: more than {MAX_TOTAL_BYTES} bytes in all"));
        }
        Ok(())
    }

    fn condition(&mut self) -> Result<(), String> {
        self.conditions += 1;
        if self.conditions > MAX_CONDITIONS {
            return Err(format!("filter: at most {MAX_CONDITIONS} conditions"));
        }
        Ok(())
    }
}

fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(format!("filter: field path {path:?} has an empty segment"));
    }
    Ok(())
}

impl Filter {
    /// A filter from query parameters: `type` (comma-separated types), every `where`
    /// (`path:value`) and `q`. `Ok(None)` when none is given.
    pub fn from_query(types: Option<&str>, wheres: &[String], q: Option<&str>) -> Result<Option<Filter>, String> {
        let mut budget = Budget { conditions: 0, bytes: 0 };
        let mut f = Filter { types: Vec::new(), fields: Vec::new(), text: None };
        if let Some(list) = types {
            for t in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                f.add_type(&mut budget, t)?;
            }
            if f.types.is_empty() {
                return Err("filter: type must name at least one event type".into());
            }
        }
        for w in wheres {
            let Some((path, value)) = w.split_once(':') else {
                return Err(format!("filter: where must be path:value, got {w:?}"));
            };
            f.add_field(&mut budget, path, Scalar::Text(value.into()))?;
        }
        if let Some(q) = q {
            f.set_text(&mut budget, q)?;
        }
        Ok(f.nonempty())
    }

    /// A filter from a JSON object `{"type": "a" | ["a", …], "where": {path: scalar, …},
    /// "q": "text"}`; `null` or `{}` is no filter.
    pub fn from_json(v: &Value) -> Result<Option<Filter>, String> {
        let obj = match v {
            Value::Null => return Ok(None),
            Value::Object(o) => o,
            _ => return Err("filter: must be an object (type, where, q) or null".into()),
        };
        let mut budget = Budget { conditions: 0, bytes: 0 };
        let mut f = Filter { types: Vec::new(), fields: Vec::new(), text: None };
        for (key, val) in obj {
            match (key.as_str(), val) {
                ("type", Value::String(t)) => f.add_type(&mut budget, t)?,
                ("type", Value::Array(list)) if !list.is_empty() => {
                    for t in list {
                        let Some(t) = t.as_str() else {
                            return Err("filter: type must be a string or a list of strings".into());
                        };
                        f.add_type(&mut budget, t)?;
                    }
                }
                ("type", _) => return Err("filter: type must be a string or a list of strings".into()),
                ("where", Value::Object(fields)) => {
                    for (path, want) in fields {
                        let value = match want {
                            Value::String(s) => Scalar::Text(s.as_str().into()),
                            Value::Number(_) | Value::Bool(_) | Value::Null => Scalar::Json(want.clone()),
                            _ => {
                                return Err(format!("filter: where {path:?} must be a string, number, boolean or null"))
                            }
                        };
                        f.add_field(&mut budget, path, value)?;
                    }
                }
                ("where", _) => return Err("filter: where must be an object of path: value".into()),
                ("q", Value::String(q)) => f.set_text(&mut budget, q)?,
                ("q", _) => return Err("filter: q must be a string".into()),
                (other, _) => return Err(format!("filter: unknown key {other:?} (type, where, q)")),
            }
        }
        Ok(f.nonempty())
    }

    fn add_type(&mut self, budget: &mut Budget, t: &str) -> Result<(), String> {
        if t.is_empty() {
            return Err("filter: an event type is empty".into());
        }
        budget.condition()?;
        budget.take("an event type", t)?;
        self.types.push(t.into());
        Ok(())
    }

    fn add_field(&mut self, budget: &mut Budget, path: &str, value: Scalar) -> Result<(), String> {
        check_path(path)?;
        // Two values for one path can never both hold, and the JSON form has one key per path.
        if self.fields.iter().any(|f| &*f.path == path) {
            return Err(format!("filter: where {:?} is given twice", truncated(path)));
        }
        budget.condition()?;
        budget.take(&format!("the path of where {:?}", truncated(path)), path)?;
        let text = match &value {
            Scalar::Text(s) => s.to_string(),
            Scalar::Json(v) => v.to_string(),
        };
        budget.take(&format!("the value of where {path:?}"), &text)?;
        self.fields.push(Field { path: path.into(), value });
        Ok(())
    }

    fn set_text(&mut self, budget: &mut Budget, q: &str) -> Result<(), String> {
        if q.is_empty() {
            return Err("filter: q is empty".into());
        }
        if self.text.is_some() {
            return Err("filter: only one q".into());
        }
        budget.condition()?;
        budget.take("q", q)?;
        self.text = Some(q.to_lowercase().into());
        Ok(())
    }

    fn nonempty(mut self) -> Option<Filter> {
        // One order whatever the form it came in, so equal filters compare equal.
        self.fields.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        (!self.types.is_empty() || !self.fields.is_empty() || self.text.is_some()).then_some(self)
    }

    /// Whether the event passes every condition. Cheap conditions first: the type, the text,
    /// and only then the fields, which need the data parsed.
    pub fn matches(&self, ev: &Subject) -> bool {
        if !self.types.is_empty() && !self.types.iter().any(|t| **t == *ev.kind) {
            return false;
        }
        if let Some(needle) = &self.text {
            if !contains_ignoring_case(ev.data, needle) {
                return false;
            }
        }
        if self.fields.is_empty() {
            return true;
        }
        let Some(root) = ev.json() else { return false };
        self.fields.iter().all(|f| lookup(root, &f.path).is_some_and(|v| f.value.equals(v)))
    }

    /// The filter as JSON, in the form [`Filter::from_json`] reads (for acknowledgements).
    pub fn to_json(&self) -> Value {
        let mut o = serde_json::Map::new();
        if !self.types.is_empty() {
            o.insert("type".into(), self.types.iter().map(|t| Value::from(&**t)).collect());
        }
        if !self.fields.is_empty() {
            let w = self.fields.iter().map(|f| {
                let v = match &f.value {
                    Scalar::Text(s) => Value::from(&**s),
                    Scalar::Json(v) => v.clone(),
                };
                (f.path.to_string(), v)
            });
            o.insert("where".into(), Value::Object(w.collect()));
        }
        if let Some(q) = &self.text {
            o.insert("q".into(), Value::from(&**q));
        }
        Value::Object(o)
    }
}

fn truncated(s: &str) -> &str {
    let mut end = s.len().min(32);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl Scalar {
    fn equals(&self, field: &Value) -> bool {
        match (self, field) {
            (Scalar::Json(Value::Number(a)), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (Scalar::Json(want), got) => want == got,
            (Scalar::Text(want), Value::String(got)) => **want == **got,
            (Scalar::Text(want), Value::Number(n)) => {
                want.parse::<f64>().is_ok_and(|w| n.as_f64() == Some(w)) || **want == *n.to_string()
            }
            (Scalar::Text(want), Value::Bool(b)) => **want == *if *b { "true" } else { "false" },
            (Scalar::Text(want), Value::Null) => &**want == "null",
            (Scalar::Text(_), _) => false,
        }
    }
}

/// The value at a dot path: object keys by name, list items by number.
fn lookup<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(root, |v, seg| match v {
        Value::Object(o) => o.get(seg),
        Value::Array(a) => a.get(seg.parse::<usize>().ok()?),
        _ => None,
    })
}

/// Whether `hay` contains `needle` (already lowercased), ignoring case. ASCII needles are
/// searched in place; others compare against a lowercased copy of the data.
fn contains_ignoring_case(hay: &str, needle: &str) -> bool {
    if needle.is_ascii() {
        let (h, n) = (hay.as_bytes(), needle.as_bytes());
        let Some(&first) = n.first() else { return true };
        let (lo, up) = (first.to_ascii_lowercase(), first.to_ascii_uppercase());
        return h.windows(n.len()).any(|w| (w[0] == lo || w[0] == up) && w.eq_ignore_ascii_case(n));
    }
    hay.to_lowercase().contains(needle)
}

#[cfg(test)]
mod tests;
