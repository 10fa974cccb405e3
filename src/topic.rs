//! Topic names and subscription patterns: validation, matching and scope coverage.
//!
//! A topic is `/`-separated segments (`builds/web/main`). A pattern is a topic whose last
//! segment may be `*` (exactly one more level) or `**` (one or more levels). System topics start
//! with `$` (`$runs/42`); as in MQTT, a pattern whose *first* segment is a wildcard never matches
//! them, so `**` does not leak system traffic to a subscriber who asked for "everything".

use std::fmt;

/// Longest topic or pattern accepted, in bytes.
pub const MAX_TOPIC_LEN: usize = 256;
/// Most segments in a topic or pattern.
pub const MAX_SEGMENTS: usize = 16;

/// Why a topic or pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicError {
    /// Nothing at all.
    Empty,
    /// Longer than [`MAX_TOPIC_LEN`].
    TooLong,
    /// More than [`MAX_SEGMENTS`] segments.
    TooDeep,
    /// `a//b`, a leading or trailing `/`.
    EmptySegment,
    /// A byte outside `[A-Za-z0-9._~-]` (and `$` first).
    BadChar(char),
    /// A wildcard where a name must be (wildcards only as the last segment of a pattern).
    Wildcard,
}

impl fmt::Display for TopicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TopicError::Empty => write!(f, "empty topic"),
            TopicError::TooLong => write!(f, "topic longer than {MAX_TOPIC_LEN} bytes"),
            TopicError::TooDeep => write!(f, "topic deeper than {MAX_SEGMENTS} levels"),
            TopicError::EmptySegment => write!(f, "empty topic segment"),
            TopicError::BadChar(c) => write!(f, "character {c:?} not allowed in a topic"),
            TopicError::Wildcard => write!(f, "wildcards only as the last segment of a pattern"),
        }
    }
}

impl std::error::Error for TopicError {}

fn check_segment(seg: &str, first: bool) -> Result<(), TopicError> {
    if seg.is_empty() {
        return Err(TopicError::EmptySegment);
    }
    for (i, c) in seg.char_indices() {
        let ok = c.is_ascii_alphanumeric()
            || matches!(c, '.' | '_' | '~' | '-')
            || (c == '$' && first && i == 0 && seg.len() > 1);
        if !ok {
            return Err(TopicError::BadChar(c));
        }
    }
    Ok(())
}

fn check_shape(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    if s.split('/').count() > MAX_SEGMENTS {
        return Err(TopicError::TooDeep);
    }
    Ok(())
}

/// Checks a concrete topic name (no wildcards).
pub fn validate_topic(s: &str) -> Result<(), TopicError> {
    check_shape(s)?;
    for (i, seg) in s.split('/').enumerate() {
        if seg == "*" || seg == "**" {
            return Err(TopicError::Wildcard);
        }
        check_segment(seg, i == 0)?;
    }
    Ok(())
}

/// Checks a subscription pattern: a topic whose last segment may be `*` or `**`.
pub fn validate_pattern(s: &str) -> Result<(), TopicError> {
    check_shape(s)?;
    let n = s.split('/').count();
    for (i, seg) in s.split('/').enumerate() {
        if seg == "*" || seg == "**" {
            if i + 1 != n {
                return Err(TopicError::Wildcard);
            }
            continue;
        }
        check_segment(seg, i == 0)?;
    }
    Ok(())
}

/// Whether a pattern contains a wildcard (and so can match more than one topic).
pub fn is_wildcard(pattern: &str) -> bool {
    pattern == "*" || pattern == "**" || pattern.ends_with("/*") || pattern.ends_with("/**")
}

/// Whether the validated `pattern` matches the concrete `topic`.
pub fn matches(pattern: &str, topic: &str) -> bool {
    if !is_wildcard(pattern) {
        return pattern == topic;
    }
    let (prefix, deep) = match pattern.strip_suffix("**") {
        Some(p) => (p, true),
        None => (&pattern[..pattern.len() - 1], false),
    };
    // prefix is "" (top-level wildcard) or "a/b/".
    if prefix.is_empty() && topic.starts_with('$') {
        return false;
    }
    let Some(rest) = topic.strip_prefix(prefix) else {
        return false;
    };
    !rest.is_empty() && (deep || !rest.contains('/'))
}

/// Whether every topic matched by `pattern` is also matched by `scope`, so that a token allowed
/// `scope` may subscribe to `pattern`. Both must be valid patterns.
pub fn covers(scope: &str, pattern: &str) -> bool {
    if !is_wildcard(scope) {
        return scope == pattern;
    }
    let deep = scope.ends_with("**");
    let prefix = scope.trim_end_matches('*');
    if prefix.is_empty() && pattern.starts_with('$') {
        return false;
    }
    let Some(rest) = pattern.strip_prefix(prefix) else {
        return false;
    };
    if rest.is_empty() {
        return false;
    }
    if deep {
        return true;
    }
    // `a/*` covers `a/b` and `a/*`, never anything deeper.
    !rest.contains('/') && rest != "**"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_validation() {
        for ok in ["demo", "a/b/c", "$runs", "$runs/42", "a.b-c_d~e"] {
            assert_eq!(validate_topic(ok), Ok(()), "{ok}");
        }
        for (bad, err) in [
            ("", TopicError::Empty),
            ("a//b", TopicError::EmptySegment),
            ("/a", TopicError::EmptySegment),
            ("a/", TopicError::EmptySegment),
            ("a b", TopicError::BadChar(' ')),
            ("a/$b", TopicError::BadChar('$')),
            ("$", TopicError::BadChar('$')),
            ("a/*", TopicError::Wildcard),
            ("a\n", TopicError::BadChar('\n')),
        ] {
            assert_eq!(validate_topic(bad), Err(err), "{bad:?}");
        }
        assert_eq!(validate_topic(&"a".repeat(257)), Err(TopicError::TooLong));
        assert_eq!(validate_topic(&["a"; 17].join("/")), Err(TopicError::TooDeep));
    }

    #[test]
    fn pattern_validation() {
        for ok in ["*", "**", "a/*", "a/**", "$runs/**", "a"] {
            assert_eq!(validate_pattern(ok), Ok(()), "{ok}");
        }
        for bad in ["*/a", "a/**/b", "a/b*", "***"] {
            assert!(validate_pattern(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matching_table() {
        let table = [
            ("demo", "demo", true),
            ("demo", "demo/x", false),
            ("a/*", "a/b", true),
            ("a/*", "a/b/c", false),
            ("a/*", "a", false),
            ("a/**", "a/b", true),
            ("a/**", "a/b/c/d", true),
            ("a/**", "a", false),
            ("a/**", "ab/c", false),
            ("*", "a", true),
            ("*", "a/b", false),
            ("**", "a/b", true),
            ("**", "$runs", false),
            ("*", "$runs", false),
            ("$runs/*", "$runs/7", true),
            ("$runs/**", "$runs/7/x", true),
            ("$runs", "$runs", true),
        ];
        for (p, t, want) in table {
            assert_eq!(matches(p, t), want, "{p} ~ {t}");
        }
    }

    #[test]
    fn coverage_table() {
        let table = [
            ("**", "a", true),
            ("**", "a/**", true),
            ("**", "$runs/**", false),
            ("a/**", "a/b", true),
            ("a/**", "a/*", true),
            ("a/**", "a/b/**", true),
            ("a/**", "a", false),
            ("a/*", "a/b", true),
            ("a/*", "a/*", true),
            ("a/*", "a/**", false),
            ("a/*", "a/b/c", false),
            ("a", "a", true),
            ("a", "a/*", false),
            ("demo", "**", false),
            ("*", "x", true),
            ("*", "x/*", false),
        ];
        for (s, p, want) in table {
            assert_eq!(covers(s, p), want, "{s} covers {p}");
        }
    }
}
