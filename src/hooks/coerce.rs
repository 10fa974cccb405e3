//! adnanh/webhook's scalar coercion, redone on a hook's raw JSON before it is parsed.
//!
//! adnanh reads every hooks file, JSON included, with `github.com/ghodss/yaml`: the text is
//! parsed as YAML (`gopkg.in/yaml.v2`), turned into JSON, and decoded into the `Hook` structs.
//! On the way, a number or boolean that lands in a Go `string` field becomes a string
//! (`convertToJSONableObject`): integers in decimal, `true`/`false`, and other numbers with
//! `strconv.FormatFloat(f, 'g', -1, 32)` — the shortest form of the value *as a 32-bit float*,
//! so `1.5` stays `1.5` but `0.30000001192092896` becomes `0.3` and `1e6` becomes `1e+06`.
//! A hooks file with `"value": 1` therefore starts under adnanh and compares the request value
//! with `"1"`. hookcast does the same on the same fields, and records a warning for each, so
//! `hookcast check` and the start say where a value was not written as a string.
//!
//! The string fields (adnanh 2.8, `internal/hook/hook.go`): `Hook.ID`, `ExecuteCommand`,
//! `CommandWorkingDirectory`, `ResponseMessage`, `IncomingPayloadContentType`, the items of
//! `HTTPMethods`; `Header.Name`/`Value` (`response-headers`); `Argument.Source`/`Name`/
//! `EnvName` (the four argument lists and a match's `parameter`); `MatchRule.Type`/`Regex`/
//! `Secret`/`Value`/`IPRange`. Boolean and integer fields are not coerced (a string there fails
//! adnanh's decoder too).
//!
//! Go's decoder also matches field names case-insensitively (`"Execute-Command"`, `"ID"`), so
//! such a name is renamed to the field it stands for, with a warning, unless the exact name is
//! there too (then the odd one stays and is refused as unknown). And it ignores fields it does
//! not know (`"description"`, `"_comment"`): so does hookcast, with a warning, in hooks, their
//! arguments, response headers and match rules — except a near miss of a field
//! (`"trigger_rule"`, `"execute-comand"`), which stays to be refused: under adnanh it silently
//! disables what its author meant to configure.

use crate::config::json::{at, near_miss};
use crate::hooks::params::ARGUMENT_FIELDS;
use crate::hooks::rules::{MATCH_FIELDS, RULE_FIELDS};
use serde_json::Value;

/// The fields of adnanh's `Hook` (2.8: `internal/hook/hook.go`).
pub(crate) const ADNANH_FIELDS: &[&str] = &[
    "id",
    "execute-command",
    "command-working-directory",
    "response-message",
    "response-headers",
    "success-http-response-code",
    "incoming-payload-content-type",
    "http-methods",
    "include-command-output-in-response",
    "include-command-output-in-response-on-error",
    "pass-arguments-to-command",
    "pass-environment-to-command",
    "pass-file-to-command",
    "parse-parameters-as-json",
    "trigger-rule",
    "trigger-rule-mismatch-http-response-code",
    "trigger-signature-soft-failures",
];

/// hookcast's own hook fields.
pub(crate) const HOOKCAST_FIELDS: &[&str] = &[
    "provider",
    "secrets",
    "events",
    "branches",
    "topic",
    "publish",
    "retain",
    "allowed-ips",
    "concurrency",
    "timeout",
    "dedup",
    "inherit-environment",
];

/// Fields found in adnanh's docs or forks that hookcast refuses, with the reason.
pub(crate) const REFUSED_FIELDS: &[(&str, &str)] =
    &[("pre-hook-command", "pre-hook-command (described in adnanh/webhook's docs, absent from its releases)")];

/// The string fields of adnanh's `Hook`.
const HOOK_STRINGS: &[&str] =
    &["id", "execute-command", "command-working-directory", "response-message", "incoming-payload-content-type"];
/// The argument lists of a hook.
const ARGUMENT_LISTS: &[&str] =
    &["pass-arguments-to-command", "pass-environment-to-command", "pass-file-to-command", "parse-parameters-as-json"];
/// The string fields of adnanh's `Argument`.
const ARGUMENT_STRINGS: &[&str] = &["source", "name", "envname"];
/// The string fields of adnanh's `MatchRule`.
const MATCH_STRINGS: &[&str] = &["type", "regex", "secret", "value", "ip-range"];
/// The fields of adnanh's `Header`. Those of `Argument`, `Rules` and `MatchRule` come from their
/// readers (`params`, `rules`), so what is coerced and what is read never disagree.
pub(crate) const HEADER_FIELDS: &[&str] = &["name", "value"];

/// Turns the numbers and booleans in adnanh's string fields of `hook` (found at `path`) into
/// strings as adnanh does, and returns one warning per value changed.
pub fn coerce_hook(hook: &mut Value, path: &str) -> Vec<String> {
    let mut warnings = Vec::new();
    fold_case(hook, path, ADNANH_FIELDS, &mut warnings);
    let known: Vec<&str> = ADNANH_FIELDS.iter().chain(HOOKCAST_FIELDS).copied().collect();
    drop_unknown(hook, path, &known, REFUSED_FIELDS, &mut warnings);
    let Some(map) = hook.as_object_mut() else { return warnings };
    for key in HOOK_STRINGS {
        if let Some(v) = map.get_mut(*key) {
            coerce(v, &at(path, key), &mut warnings);
        }
    }
    if let Some(Value::Array(items)) = map.get_mut("http-methods") {
        for (i, v) in items.iter_mut().enumerate() {
            coerce(v, &format!("{}[{i}]", at(path, "http-methods")), &mut warnings);
        }
    }
    if let Some(Value::Array(items)) = map.get_mut("response-headers") {
        for (i, h) in items.iter_mut().enumerate() {
            let here = format!("{}[{i}]", at(path, "response-headers"));
            fold_case(h, &here, HEADER_FIELDS, &mut warnings);
            drop_unknown(h, &here, HEADER_FIELDS, &[], &mut warnings);
            fields(h, &here, HEADER_FIELDS, &mut warnings);
        }
    }
    for list in ARGUMENT_LISTS {
        if let Some(Value::Array(items)) = map.get_mut(*list) {
            for (i, a) in items.iter_mut().enumerate() {
                let here = format!("{}[{i}]", at(path, list));
                fold_case(a, &here, ARGUMENT_FIELDS, &mut warnings);
                drop_unknown(a, &here, ARGUMENT_FIELDS, crate::hooks::params::ARGUMENT_REFUSED, &mut warnings);
                fields(a, &here, ARGUMENT_STRINGS, &mut warnings);
            }
        }
    }
    if let Some(rule) = map.get_mut("trigger-rule") {
        coerce_rule(rule, &at(path, "trigger-rule"), &mut warnings);
    }
    warnings
}

fn coerce_rule(rule: &mut Value, path: &str, warnings: &mut Vec<String>) {
    fold_case(rule, path, RULE_FIELDS, warnings);
    let Some(map) = rule.as_object_mut() else { return };
    for key in ["and", "or"] {
        if let Some(Value::Array(items)) = map.get_mut(key) {
            for (i, r) in items.iter_mut().enumerate() {
                coerce_rule(r, &format!("{}[{i}]", at(path, key)), warnings);
            }
        }
    }
    if let Some(r) = map.get_mut("not") {
        coerce_rule(r, &at(path, "not"), warnings);
    }
    if let Some(m) = map.get_mut("match") {
        let here = at(path, "match");
        fold_case(m, &here, MATCH_FIELDS, warnings);
        drop_unknown(m, &here, MATCH_FIELDS, &[], warnings);
        drop_unused(m, &here, warnings);
        fields(m, &here, MATCH_STRINGS, warnings);
        if let Some(p) = m.get_mut("parameter") {
            let here = at(&here, "parameter");
            fold_case(p, &here, ARGUMENT_FIELDS, warnings);
            drop_unknown(p, &here, ARGUMENT_FIELDS, crate::hooks::params::ARGUMENT_REFUSED, warnings);
            fields(p, &here, ARGUMENT_STRINGS, warnings);
        }
    }
}

/// Renames keys that differ from a field of `known` only in ASCII case, as Go's decoder reads
/// them, unless the exact name is also there.
fn fold_case(obj: &mut Value, path: &str, known: &[&str], warnings: &mut Vec<String>) {
    let Some(map) = obj.as_object_mut() else { return };
    let odd: Vec<(String, &str)> = map
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .filter_map(|k| known.iter().find(|f| f.eq_ignore_ascii_case(k)).map(|f| (k.clone(), *f)))
        .filter(|(_, f)| !map.contains_key(*f))
        .collect();
    for (key, field) in odd {
        // Two odd spellings of one field: the second stays, to be refused as unknown.
        if map.contains_key(field) {
            continue;
        }
        let v = map.remove(&key).expect("listed above");
        warnings.push(format!(
            "{}: read as {field:?}, as adnanh/webhook matches field names regardless of case (write {field:?} to silence this)",
            at(path, &key)
        ));
        map.insert(field.to_string(), v);
    }
}

/// Removes the fields adnanh ignores (not in `known`, not `refused`, not a near miss of a known
/// field), with a warning each.
fn drop_unknown(obj: &mut Value, path: &str, known: &[&str], refused: &[(&str, &str)], warnings: &mut Vec<String>) {
    let Some(map) = obj.as_object_mut() else { return };
    let ignored: Vec<String> = map
        .keys()
        .filter(|k| !known.contains(&k.as_str()))
        .filter(|k| !refused.iter().any(|(r, _)| r == k))
        .filter(|k| near_miss(k, known).is_none())
        .cloned()
        .collect();
    for key in ignored {
        map.remove(&key);
        warnings.push(format!(
            "{}: unknown field, ignored as adnanh/webhook ignores it (remove it to silence this)",
            at(path, &key)
        ));
    }
}

/// Removes the fields a match type does not read (`regex` on a `value` match, `parameter` on
/// `ip-whitelist`), which adnanh ignores, with a warning each. The fields the type reads are
/// left for the parser, which refuses them missing.
fn drop_unused(m: &mut Value, path: &str, warnings: &mut Vec<String>) {
    let Some(map) = m.as_object_mut() else { return };
    let uses: &[&str] = match map.get("type").and_then(Value::as_str) {
        Some("value") => &["value", "parameter"],
        Some("regex") => &["regex", "parameter"],
        Some(t) if t.starts_with("payload-hmac-") || t.starts_with("payload-hash-") => &["secret", "parameter"],
        Some("ip-whitelist") => &["ip-range"],
        _ => return,
    };
    let unused: Vec<String> = map
        .keys()
        .filter(|k| *k != "type" && MATCH_FIELDS.contains(&k.as_str()) && !uses.contains(&k.as_str()))
        .cloned()
        .collect();
    for key in unused {
        map.remove(&key);
        warnings.push(format!(
            "{}: not read by match type {:?}, ignored as adnanh/webhook ignores it (it reads {})",
            at(path, &key),
            map.get("type").and_then(Value::as_str).unwrap_or_default(),
            uses.join(" and ")
        ));
    }
}

fn fields(obj: &mut Value, path: &str, keys: &[&str], warnings: &mut Vec<String>) {
    let Some(map) = obj.as_object_mut() else { return };
    for key in keys {
        if let Some(v) = map.get_mut(*key) {
            coerce(v, &at(path, key), warnings);
        }
    }
}

fn coerce(v: &mut Value, path: &str, warnings: &mut Vec<String>) {
    let Some(s) = as_adnanh_string(v) else { return };
    warnings.push(format!(
        "{path}: {v} is not a string; read as {s:?}, as adnanh/webhook does (write {s:?} to silence this)"
    ));
    *v = Value::String(s);
}

/// The string adnanh makes of a number or boolean in a string field; None for anything else.
pub fn as_adnanh_string(v: &Value) -> Option<String> {
    match v {
        Value::Bool(b) => Some(b.to_string()),
        // yaml.v2 gives an int or uint64 for a plain integer that fits, a float64 otherwise.
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => Some(i.to_string()),
            (None, Some(u), _) => Some(u.to_string()),
            (None, None, Some(f)) => Some(go_format_float32(f)),
            _ => None,
        },
        _ => None,
    }
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 32)`: the shortest digits that read back as the same
/// `float32`, in `%e` form when the decimal exponent is below -4 or at least 6 (Go fixes the
/// precision of the shortest form at 6: `1e+06` but `123456`), with a signed two-digit exponent.
pub fn go_format_float32(f: f64) -> String {
    let x = f as f32;
    if x == 0.0 {
        return if x.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    if x.is_infinite() {
        return if x > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    // Rust's `{:e}` prints the shortest round-tripping digits: `-1.2345e6`.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').expect("{:e} has an exponent");
    let exp: i32 = exp.parse().expect("{:e} exponent is an integer");
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() { String::new() } else { format!(".{rest}") };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    // %f form with exactly the shortest digits.
    let point = exp + 1; // digits before the decimal point
    let s = if point <= 0 {
        format!("0.{}{digits}", "0".repeat((-point) as usize))
    } else if point as usize >= digits.len() {
        format!("{digits}{}", "0".repeat(point as usize - digits.len()))
    } else {
        let (a, b) = digits.split_at(point as usize);
        format!("{a}.{b}")
    };
    format!("{sign}{s}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_print_as_go_formats_a_float32() {
        // Expected values from Go: strconv.FormatFloat(f, 'g', -1, 32).
        for (f, want) in [
            (1.0, "1"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (-2.25, "-2.25"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.23456789, "1.2345679"),
            (16777217.0, "1.6777216e+07"),
            (1e21, "1e+21"),
            (2.5e-10, "2.5e-10"),
            (100.0, "100"),
        ] {
            assert_eq!(go_format_float32(f), want, "{f}");
        }
    }

    #[test]
    fn scalars_become_adnanh_strings() {
        let s = |v: Value| as_adnanh_string(&v);
        assert_eq!(s(json!(1)), Some("1".into()));
        assert_eq!(s(json!(-7)), Some("-7".into()));
        assert_eq!(s(json!(18446744073709551615u64)), Some("18446744073709551615".into()));
        assert_eq!(s(json!(1.0)), Some("1".into()));
        assert_eq!(s(json!(true)), Some("true".into()));
        assert_eq!(s(json!(false)), Some("false".into()));
        assert_eq!(s(json!("x")), None);
        assert_eq!(s(json!(null)), None);
        assert_eq!(s(json!([1])), None);
    }

    #[test]
    fn field_names_match_regardless_of_case_as_in_go() {
        let mut h = json!({
            "ID": "x",
            "Execute-Command": "/bin/true",
            "Trigger-Rule": {"Match": {"Type": "value", "VALUE": "a", "Parameter": {"Source": "url", "NAME": "q"}}},
            "response-headers": [{"Name": "X-A", "Value": "1"}],
            "pass-arguments-to-command": [{"SOURCE": "string", "name": "n", "Name": "m"}]
        });
        let warnings = coerce_hook(&mut h, "h");
        assert!(warnings.contains(
            &"h.Execute-Command: read as \"execute-command\", as adnanh/webhook matches field names regardless of case (write \"execute-command\" to silence this)".to_string()
        ), "{warnings:#?}");
        assert_eq!(warnings.len(), 12, "{warnings:#?}");
        assert_eq!(h["id"], "x");
        assert_eq!(h["trigger-rule"]["match"]["parameter"]["name"], "q");
        assert_eq!(h["response-headers"][0], json!({"name": "X-A", "value": "1"}));
        // `name` is there as written: `Name` stays, for the parser to refuse as unknown.
        assert_eq!(h["pass-arguments-to-command"][0], json!({"source": "string", "name": "n", "Name": "m"}));
    }

    #[test]
    fn every_adnanh_string_field_is_coerced_and_warned_about() {
        let mut h = json!({
            "id": 42,
            "execute-command": 1,
            "command-working-directory": 2,
            "response-message": true,
            "incoming-payload-content-type": 3,
            "http-methods": [4],
            "response-headers": [{"name": 5, "value": 6}],
            "pass-arguments-to-command": [{"source": "string", "name": 7}],
            "pass-environment-to-command": [{"source": "payload", "name": 8, "envname": 9}],
            "pass-file-to-command": [{"source": "payload", "name": 10}],
            "parse-parameters-as-json": [{"source": "payload", "name": 11}],
            "success-http-response-code": 200,
            "include-command-output-in-response": true,
            "trigger-rule": {"and": [
                {"match": {"type": "value", "value": 1.5, "parameter": {"source": "payload", "name": 12}}},
                {"or": [{"match": {"type": "regex", "regex": 13, "parameter": {"source": "url", "name": "x"}}}]},
                {"not": {"match": {"type": "payload-hmac-sha1", "secret": 14, "parameter": {"source": "header", "name": "s"}}}},
                {"match": {"type": "ip-whitelist", "ip-range": 15}}
            ]},
            "topic": 16
        });
        let warnings = coerce_hook(&mut h, "hooks.json[0]");
        assert_eq!(warnings.len(), 18, "{warnings:#?}");
        assert_eq!(
            warnings[0],
            "hooks.json[0].id: 42 is not a string; read as \"42\", as adnanh/webhook does (write \"42\" to silence this)"
        );
        assert_eq!(h["id"], "42");
        assert_eq!(h["response-message"], "true");
        assert_eq!(h["http-methods"][0], "4");
        assert_eq!(h["response-headers"][0]["value"], "6");
        assert_eq!(h["pass-environment-to-command"][0]["envname"], "9");
        assert_eq!(h["trigger-rule"]["and"][0]["match"]["value"], "1.5");
        assert_eq!(h["trigger-rule"]["and"][0]["match"]["parameter"]["name"], "12");
        assert_eq!(h["trigger-rule"]["and"][1]["or"][0]["match"]["regex"], "13");
        assert_eq!(h["trigger-rule"]["and"][2]["not"]["match"]["secret"], "14");
        assert_eq!(h["trigger-rule"]["and"][3]["match"]["ip-range"], "15");
        // Not string fields in adnanh: left for the parser to judge.
        assert_eq!(h["success-http-response-code"], 200);
        assert_eq!(h["include-command-output-in-response"], true);
        assert_eq!(h["topic"], 16);
    }
}
