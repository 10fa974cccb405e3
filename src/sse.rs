//! Server-Sent Events wire format (WHATWG HTML §9.2 "Server-sent events").
//!
//! The encoder is twenty lines on purpose: an event is `id:`, an optional `event:` and one
//! `data:` line per line of data, then a blank line. The spec splits data on CRLF, LF *and* CR,
//! so we split on all three: a lone CR left in a `data:` line would end the line at the client.
//! `id` is a number and `event` is checked at publish time, so neither can carry a line break.
//! The incremental parser is for `hookcast tail`, a client.

/// A comment line that keeps proxies and the client's read timeout from closing an idle stream.
pub const KEEPALIVE: &[u8] = b": keepalive\n\n";

/// Appends one event in SSE framing to `out`.
pub fn encode_into(out: &mut Vec<u8>, id: u64, event: &str, data: &str) {
    out.reserve(data.len() + event.len() + 40);
    out.extend_from_slice(b"id: ");
    // The id's decimal digits without a temporary String (this runs once per event and wire).
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = id;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.push(b'\n');
    if event != "message" {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(event.as_bytes());
        out.push(b'\n');
    }
    for line in split_lines(data) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Lines of `data` as the SSE parser will see them (CRLF, LF and CR all end a line).
fn split_lines(data: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let s = rest?;
        // A byte scan: CR and LF are ASCII, so a match is always on a char boundary.
        match s.bytes().position(|b| b == b'\r' || b == b'\n') {
            None => {
                rest = None;
                Some(s)
            }
            Some(i) => {
                let skip = if s[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = Some(&s[i + skip..]);
                Some(&s[..i])
            }
        }
    })
}

/// The `retry:` field telling the client how long to wait before reconnecting.
pub fn retry(ms: u64) -> Vec<u8> {
    format!("retry: {ms}\n\n").into_bytes()
}

/// A block with only an `id:` field: it sets the browser's last event id without dispatching an
/// event (WHATWG HTML, "dispatch the event", step 1 runs before the empty-data check). Sent at the
/// start of every stream so that a client which connects, receives nothing and loses its
/// connection still reconnects with `Last-Event-ID` and misses nothing published meanwhile.
pub fn position(id: u64) -> Vec<u8> {
    format!("id: {id}\n\n").into_bytes()
}

/// Whether `name` can be an SSE event type: non-empty, no line breaks, no NUL.
pub fn valid_event_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && !name.contains(['\r', '\n', '\0'])
}

/// One event as a client dispatches it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Received {
    /// The last event ID buffer after this event.
    pub id: String,
    /// Event type (`message` when none was given).
    pub event: String,
    /// Data, lines joined with `\n`.
    pub data: String,
}

/// An incremental SSE stream parser (client side), per the WHATWG "interpreting an event
/// stream" algorithm.
#[derive(Debug, Default)]
pub struct Parser {
    line: Vec<u8>,
    last_was_cr: bool,
    id: String,
    event: String,
    data: String,
    has_data: bool,
    /// The last `retry:` value seen.
    pub retry_ms: Option<u64>,
}

impl Parser {
    /// Feeds bytes, returning the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Received> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.last_was_cr && b == b'\n' {
                self.last_was_cr = false;
                continue;
            }
            self.last_was_cr = b == b'\r';
            if b == b'\r' || b == b'\n' {
                let line = std::mem::take(&mut self.line);
                if let Some(ev) = self.line_done(&line) {
                    out.push(ev);
                }
            } else {
                self.line.push(b);
            }
        }
        out
    }

    /// The id a reconnecting client sends as `Last-Event-ID`.
    pub fn last_event_id(&self) -> &str {
        &self.id
    }

    fn line_done(&mut self, line: &[u8]) -> Option<Received> {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            if !std::mem::take(&mut self.has_data) {
                return None;
            }
            let event = if event.is_empty() { "message".to_string() } else { event };
            return Some(Received { id: self.id.clone(), event, data });
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.find(':') {
            Some(0) => return None, // comment
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = value.to_string(),
            "retry" => self.retry_ms = value.parse().ok().or(self.retry_ms),
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(id: u64, ev: &str, data: &str) -> String {
        let mut v = Vec::new();
        encode_into(&mut v, id, ev, data);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn encoder_splits_every_kind_of_line_break() {
        assert_eq!(enc(1, "message", "hi"), "id: 1\ndata: hi\n\n");
        assert_eq!(enc(2, "deploy", "a\nb\r\nc\rd"), "id: 2\nevent: deploy\ndata: a\ndata: b\ndata: c\ndata: d\n\n");
        assert_eq!(enc(3, "message", ""), "id: 3\ndata: \n\n");
        assert_eq!(enc(0, "message", "x"), "id: 0\ndata: x\n\n");
        assert_eq!(enc(u64::MAX, "message", "x"), format!("id: {}\ndata: x\n\n", u64::MAX));
        assert_eq!(enc(4, "message", "x\n"), "id: 4\ndata: x\ndata: \n\n");
    }

    #[test]
    fn round_trip_through_the_parser_at_every_split() {
        let data = "line one\nline two\r\n: not a comment\r\rend";
        let wire = enc(42, "deploy", data);
        for cut in 0..wire.len() {
            let mut p = Parser::default();
            let mut got = p.feed(&wire.as_bytes()[..cut]);
            got.extend(p.feed(&wire.as_bytes()[cut..]));
            assert_eq!(got.len(), 1, "cut {cut}");
            assert_eq!(got[0].id, "42");
            assert_eq!(got[0].event, "deploy");
            assert_eq!(got[0].data, data.replace("\r\n", "\n").replace('\r', "\n"));
        }
    }

    #[test]
    fn a_position_block_sets_the_last_event_id_without_an_event() {
        let mut p = Parser::default();
        let mut stream = retry(200);
        stream.extend(position(1_796_000_000_000_042));
        assert!(p.feed(&stream).is_empty(), "no event is dispatched");
        assert_eq!(p.last_event_id(), "1796000000000042");
    }

    #[test]
    fn parser_follows_the_spec_examples() {
        // WHATWG examples: comments ignored, "data" with no colon is an empty line of data,
        // a space after the colon is removed once.
        let mut p = Parser::default();
        let got =
            p.feed(b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n");
        let datas: Vec<_> = got.iter().map(|e| e.data.as_str()).collect();
        assert_eq!(datas, ["first event", "second event", " third event"]);
        assert_eq!(got[0].id, "1");
        assert_eq!(got[1].id, "");
        let mut p = Parser::default();
        let got = p.feed(b"data\n\ndata\ndata\n\ndata:\nretry: 500\n");
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].data, "\n");
        assert_eq!(p.feed(b"\n").len(), 1);
        assert_eq!(p.retry_ms, Some(500));
    }

    #[test]
    fn event_names() {
        assert!(valid_event_name("deploy.done"));
        assert!(!valid_event_name("a\nb"));
        assert!(!valid_event_name(""));
    }
}
