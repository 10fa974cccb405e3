//! Splits a child's output stream into lines for publishing: lines longer than the limit are
//! cut (the rest continues as further pieces, marked), invalid UTF-8 is replaced with U+FFFD,
//! and a final unterminated line is flushed at EOF. Pure; fed whatever each read returned.

/// One output line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The text, without its line break.
    pub text: String,
    /// Whether this piece was cut at the length limit (more of the same line follows).
    pub cut: bool,
}

/// Incremental line splitter.
#[derive(Debug)]
pub struct LineSplitter {
    pending: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    /// A splitter cutting lines at `max` bytes (at least 16).
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter { pending: Vec::new(), max: max.max(16) }
    }

    /// Feeds bytes; returns the lines they complete.
    pub fn feed(&mut self, mut bytes: &[u8], out: &mut Vec<Line>) {
        while !bytes.is_empty() {
            let room = self.max - self.pending.len();
            match bytes.iter().take(room + 1).position(|&b| b == b'\n') {
                Some(i) => {
                    self.pending.extend_from_slice(&bytes[..i]);
                    bytes = &bytes[i + 1..];
                    out.push(self.take(false));
                }
                None if bytes.len() > room => {
                    // Cut at a character boundary when the cut falls inside a UTF-8 sequence.
                    let mut take = room;
                    while take > 0 && take < bytes.len() && (bytes[take] & 0xC0) == 0x80 && room - take < 3 {
                        take -= 1;
                    }
                    if take == 0 {
                        take = room;
                    }
                    self.pending.extend_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    out.push(self.take(true));
                }
                None => {
                    self.pending.extend_from_slice(bytes);
                    bytes = &[];
                }
            }
        }
    }

    /// The unterminated rest, at EOF.
    pub fn finish(&mut self, out: &mut Vec<Line>) {
        if !self.pending.is_empty() {
            out.push(self.take(false));
        }
        self.pending = Vec::new();
    }

    fn take(&mut self, cut: bool) -> Line {
        let mut raw = std::mem::take(&mut self.pending);
        if raw.last() == Some(&b'\r') {
            raw.pop();
        }
        let text = match String::from_utf8(raw) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        };
        Line { text, cut }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(max: usize, chunks: &[&[u8]]) -> Vec<Line> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut out);
        }
        s.finish(&mut out);
        out
    }

    fn texts(v: &[Line]) -> Vec<&str> {
        v.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn splits_across_reads_and_strips_cr() {
        let got = lines(100, &[b"one\ntw", b"o\r\nthr", b"ee"]);
        assert_eq!(texts(&got), ["one", "two", "three"]);
        assert!(got.iter().all(|l| !l.cut));
        assert_eq!(texts(&lines(100, &[b"a\n\nb\n"])), ["a", "", "b"]);
    }

    #[test]
    fn long_lines_are_cut_into_marked_pieces() {
        let long = vec![b'x'; 40];
        let got = lines(16, &[&long, b"\nend\n"]);
        assert_eq!(got.iter().map(|l| l.text.len()).collect::<Vec<_>>(), [16, 16, 8, 3]);
        assert_eq!(got.iter().map(|l| l.cut).collect::<Vec<_>>(), [true, true, false, false]);
        // A megabyte in one line stays bounded per piece.
        let mb = vec![b'y'; 1 << 20];
        assert!(lines(4096, &[&mb]).iter().all(|l| l.text.len() <= 4096));
    }

    #[test]
    fn invalid_utf8_is_replaced_and_cuts_respect_characters() {
        let got = lines(100, &[b"ok \xff\xfe bad\n"]);
        assert_eq!(got[0].text, "ok \u{fffd}\u{fffd} bad");
        // "é" is two bytes: a cut must not split it.
        let s = "ééééééééééééééééé".as_bytes();
        let got = lines(16, &[s]);
        assert!(got.iter().all(|l| !l.text.contains('\u{fffd}')), "{got:?}");
        assert_eq!(got.iter().map(|l| l.text.as_str()).collect::<String>(), "ééééééééééééééééé");
    }
}
