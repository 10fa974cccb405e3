//! The small lexical pieces of HTTP (RFC 9110 §5.6) that parsers in several modules share:
//! `tchar`, optional whitespace, hex digits, and media types with their parameters. Pure.

/// Whether `b` is a `tchar` (RFC 9110 §5.6.2), the bytes of a token such as a field name or a
/// method.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `s` without leading and trailing OWS (RFC 9110 §5.6.3: `OWS = *( SP / HTAB )`).
pub(crate) fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(s.len());
    let end = s.iter().rposition(|&b| b != b' ' && b != b'\t').map_or(start, |i| i + 1);
    &s[start..end]
}

/// [`trim_ows`] for text.
pub(crate) fn trim_ows_str(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// The value of one `HEXDIG` (RFC 5234 `HEXDIG` is upper-case only, but RFC 9110 §1.2 notes
/// ABNF strings are case-insensitive, and `%x41-46` is written as "A"-"F").
pub(crate) fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The bytes an even-length hex string encodes, either case; `None` for anything else.
pub(crate) fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.len() % 2 != 0 {
        return None;
    }
    s.chunks_exact(2).map(|p| Some(hex_digit(p[0])? << 4 | hex_digit(p[1])?)).collect()
}

/// Splits `type/subtype; a=1; b="x y"` into the lower-case media type and its parameters (names
/// lower case, quoted values unescaped). Parsing stops quietly at the first malformed parameter.
pub(crate) fn media_type(s: &str) -> (String, Vec<(String, String)>) {
    let (essence, mut rest) = match s.find(';') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, ""),
    };
    let mut params = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        let Some(eq) = rest.find('=') else { break };
        let name = rest[..eq].trim().to_ascii_lowercase();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            break;
        }
        rest = rest[eq + 1..].trim_start_matches([' ', '\t']);
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            v.push(n);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let Some(end) = end else { break };
            rest = &quoted[end..];
            v
        } else {
            let end = rest.find([';', ' ', '\t']).unwrap_or(rest.len());
            let v = rest[..end].to_string();
            rest = &rest[end..];
            v
        };
        params.push((name, value));
    }
    (essence.trim().to_ascii_lowercase(), params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexical_pieces() {
        assert!(b"!#$%&'*+-.^_`|~azAZ09".iter().all(|&b| is_token_byte(b)));
        assert!(!b" \t\"(),/:;<=>?@[\\]{}\x7f\x80".iter().any(|&b| is_token_byte(b)));
        assert_eq!(trim_ows(b" \t a b\t "), b"a b");
        assert_eq!(trim_ows(b" \t"), b"");
        assert_eq!(trim_ows_str("\t x "), "x");
        assert_eq!(
            (hex_digit(b'f'), hex_digit(b'F'), hex_digit(b'9'), hex_digit(b'g')),
            (Some(15), Some(15), Some(9), None)
        );
        assert_eq!(decode_hex("00ffAb"), Some(vec![0, 0xff, 0xab]));
        assert_eq!(decode_hex("abc"), None);
    }
}
