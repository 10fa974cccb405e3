use super::*;
use proptest::prelude::*;
use serde_json::json;

fn q(types: Option<&str>, wheres: &[&str], text: Option<&str>) -> Result<Option<Filter>, String> {
    let w: Vec<String> = wheres.iter().map(|s| s.to_string()).collect();
    Filter::from_query(types, &w, text)
}

fn hit(f: &Filter, kind: &str, data: &str, is_json: bool) -> bool {
    f.matches(&Subject::new(kind, data, is_json))
}

#[test]
fn no_parameters_is_no_filter() {
    assert_eq!(q(None, &[], None), Ok(None));
    assert_eq!(Filter::from_json(&json!(null)), Ok(None));
    assert_eq!(Filter::from_json(&json!({})), Ok(None));
}

#[test]
fn type_where_and_q_combine_with_and() {
    let f = q(Some("line,error"), &["level:error", "meta.region:eu"], Some("TimeOut")).unwrap().unwrap();
    let ev = r#"{"level":"error","meta":{"region":"eu"},"msg":"upstream timeout"}"#;
    assert!(hit(&f, "line", ev, true));
    assert!(hit(&f, "error", ev, true));
    assert!(!hit(&f, "other", ev, true));
    assert!(!hit(&f, "line", &ev.replace("timeout", "refused"), true));
    assert!(!hit(&f, "line", &ev.replace("\"eu\"", "\"us\""), true));
    assert!(!hit(&f, "line", &ev.replace("\"error\"", "\"warn\""), true));
    // Field conditions never match text events, even when the text looks like JSON.
    assert!(!hit(&f, "line", ev, false));
}

#[test]
fn paths_index_lists_by_number() {
    let f = q(None, &["items.1.name:b"], None).unwrap().unwrap();
    assert!(hit(&f, "m", r#"{"items":[{"name":"a"},{"name":"b"}]}"#, true));
    assert!(!hit(&f, "m", r#"{"items":[{"name":"b"}]}"#, true));
    assert!(!hit(&f, "m", r#"{"items":{"name":"b"}}"#, true));
}

#[test]
fn scalars_compare_as_json_or_text() {
    let d = r#"{"n":5,"ok":true,"none":null,"s":"5","f":2.5}"#;
    for (w, want) in [
        ("n:5", true),
        ("n:5.0", true),
        ("n:6", false),
        ("ok:true", true),
        ("ok:false", false),
        ("none:null", true),
        ("s:5", true),
        ("f:2.5", true),
        ("missing:x", false),
    ] {
        let f = q(None, &[w], None).unwrap().unwrap();
        assert_eq!(hit(&f, "m", d, true), want, "{w}");
    }
    let f = Filter::from_json(&json!({"where": {"n": 5, "ok": true, "none": null, "s": "5"}})).unwrap().unwrap();
    assert!(hit(&f, "m", d, true));
    // A JSON number does not equal a string field; a JSON string does.
    let f = Filter::from_json(&json!({"where": {"s": 5}})).unwrap().unwrap();
    assert!(!hit(&f, "m", d, true));
}

#[test]
fn a_where_value_may_contain_colons() {
    let f = q(None, &["url:http://x"], None).unwrap().unwrap();
    assert!(hit(&f, "m", r#"{"url":"http://x"}"#, true));
}

#[test]
fn text_search_ignores_case_also_beyond_ascii() {
    let f = q(None, &[], Some("Timeout")).unwrap().unwrap();
    assert!(hit(&f, "m", "read TIMEOUT after 5s", false));
    assert!(!hit(&f, "m", "time out", false));
    let f = q(None, &[], Some("ÉTÉ")).unwrap().unwrap();
    assert!(hit(&f, "m", "un été chaud", false));
}

#[test]
fn json_form_round_trips_through_to_json() {
    let v = json!({"type": ["a", "b"], "where": {"level": "error", "n": 3}, "q": "x"});
    let f = Filter::from_json(&v).unwrap().unwrap();
    assert_eq!(f.to_json(), v);
    assert_eq!(Filter::from_json(&f.to_json()).unwrap().unwrap(), f);
}

#[test]
fn field_data_is_parsed_lazily() {
    let f = q(Some("a"), &["level:error"], None).unwrap().unwrap();
    let s = Subject::new("b", r#"{"level":"error"}"#, true);
    assert!(!f.matches(&s));
    assert!(!s.was_parsed(), "a type mismatch decides without parsing");
    let s = Subject::new("a", r#"{"level":"error"}"#, true);
    assert!(f.matches(&s) && f.matches(&s));
    assert!(s.was_parsed());
}

#[test]
fn bad_filters_name_the_problem() {
    let long = "x".repeat(MAX_VALUE_BYTES + 1);
    let nine: Vec<String> = (0..9).map(|i| format!("f{i}:v")).collect();
    let nine: Vec<&str> = nine.iter().map(String::as_str).collect();
    let big: Vec<String> = (0..8).map(|i| format!("f{i}:{}", "v".repeat(255))).collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    for (r, needle) in [
        (q(Some(","), &[], None), "at least one event type"),
        (q(None, &["level"], None), "path:value"),
        (q(None, &["a..b:x"], None), "empty segment"),
        (q(None, &[":x"], None), "empty segment"),
        (q(None, &["level:warn", "level:error"], None), "where \"level\" is given twice"),
        (q(None, &[&format!("a:{long}")], None), "longer than 256"),
        (q(None, &[], Some(&long)), "q is longer"),
        (q(None, &[], Some("")), "q is empty"),
        (q(None, &nine, None), "at most 8 conditions"),
        (q(None, &big, None), "2048 bytes"),
        (Filter::from_json(&json!([1])), "must be an object"),
        (Filter::from_json(&json!({"kind": "a"})), "unknown key \"kind\""),
        (Filter::from_json(&json!({"type": 1})), "type must be"),
        (Filter::from_json(&json!({"type": []})), "type must be"),
        (Filter::from_json(&json!({"where": {"a": [1]}})), "where \"a\" must be"),
        (Filter::from_json(&json!({"where": "a:b"})), "where must be an object"),
        (Filter::from_json(&json!({"q": 3})), "q must be a string"),
    ] {
        let e = r.unwrap_err();
        assert!(e.contains(needle), "{e:?} should contain {needle:?}");
        assert!(e.starts_with("filter: "), "{e}");
    }
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z0-9:]{0,6}".prop_map(Value::from),
        any::<i32>().prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
    ]
}

fn doc() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-c]", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #[test]
    fn parsing_never_panics_and_respects_limits(
        types in proptest::option::of("[a-z,]{0,40}"),
        wheres in prop::collection::vec("[a-z.:0-9]{0,300}", 0..12),
        text in proptest::option::of(".{0,300}"),
    ) {
        if let Ok(Some(f)) = Filter::from_query(types.as_deref(), &wheres, text.as_deref()) {
            let n = f.types.len() + f.fields.len() + usize::from(f.text.is_some());
            prop_assert!((1..=MAX_CONDITIONS).contains(&n));
            prop_assert!(f.to_json().to_string().len() < 2 * MAX_TOTAL_BYTES + 256);
            // The JSON form means the same filter.
            let again = Filter::from_json(&f.to_json());
            prop_assert_eq!(again, Ok(Some(f)));
        }
    }

    #[test]
    fn any_json_filter_parses_or_refuses(v in doc(), kind in "[a-c]", data in doc()) {
        if let Ok(Some(f)) = Filter::from_json(&v) {
            prop_assert_eq!(Filter::from_json(&f.to_json()), Ok(Some(f.clone())));
            let text = data.to_string();
            let _ = f.matches(&Subject::new(&kind, &text, true));
            let _ = f.matches(&Subject::new(&kind, &text, false));
        }
    }

    #[test]
    fn a_field_equals_what_the_document_holds(data in doc(), path in prop::collection::vec("[a-c0-3]", 1..4)) {
        let path = path.join(".");
        if let Some(v) = lookup(&data, &path).filter(|v| !v.is_object() && !v.is_array()) {
            let f = Filter::from_json(&json!({"where": {path.clone(): v.clone()}})).unwrap().unwrap();
            prop_assert!(f.matches(&Subject::new("m", &data.to_string(), true)));
            let as_text = match v { Value::String(s) => s.clone(), other => other.to_string() };
            let f = Filter::from_query(None, &[format!("{path}:{as_text}")], None).unwrap().unwrap();
            prop_assert!(f.matches(&Subject::new("m", &data.to_string(), true)));
        }
    }

    #[test]
    fn text_search_agrees_with_lowercasing(hay in "[a-zA-Z ]{0,40}", needle in "[a-zA-Z]{1,4}") {
        let f = Filter::from_query(None, &[], Some(&needle)).unwrap().unwrap();
        let want = hay.to_lowercase().contains(&needle.to_lowercase());
        prop_assert_eq!(f.matches(&Subject::new("m", &hay, false)), want);
    }
}
