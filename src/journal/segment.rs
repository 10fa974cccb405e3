//! Segment files: their names, listing a journal directory in order, and scanning one segment's
//! bytes into records up to the first torn or corrupt frame.
//!
//! A segment is `<dir>/journal-<20-digit number>.log`, a plain concatenation of record frames
//! (see [`super::record`]). Numbers start at 1 and grow by one per rotation, so the names sort in
//! write order; they are a counter, not a record sequence. `scan` is pure: reading and repairing
//! files is [`super::Journal::open`]'s job.

use super::record::{decode, Decoded, Record};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

const PREFIX: &str = "journal-";
const SUFFIX: &str = ".log";
const DIGITS: usize = 20;

/// File name of segment `number`.
pub(crate) fn file_name(number: u64) -> String {
    format!("{PREFIX}{number:0DIGITS$}{SUFFIX}")
}

/// The number in a segment file name; `None` for any other file.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The segments in `dir`, oldest first.
pub(crate) fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(n) = entry.file_name().to_str().and_then(parse_name) {
            out.push((n, entry.path()));
        }
    }
    out.sort_unstable_by_key(|(n, _)| *n);
    Ok(out)
}

/// Makes creations and deletions of files in `dir` durable (fsync of the directory itself).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What one segment's bytes hold.
#[derive(Debug)]
pub(crate) struct Scan {
    /// The records before the first bad frame, in order.
    pub records: Vec<Record>,
    /// Bytes those records occupy; everything after is torn or corrupt.
    pub good_len: usize,
    /// Why the scan stopped before the end, if it did.
    pub stop: Option<&'static str>,
    /// Largest `time_ms` among the records.
    pub newest_ms: Option<u64>,
}

/// Decodes frames from the start of `buf` until its end or the first torn/corrupt one.
pub(crate) fn scan(buf: &[u8]) -> Scan {
    let mut s = Scan { records: Vec::new(), good_len: 0, stop: None, newest_ms: None };
    while s.good_len < buf.len() {
        match decode(&buf[s.good_len..]) {
            Decoded::Record(rec, used) => {
                s.newest_ms = Some(s.newest_ms.map_or(rec.time_ms, |t| t.max(rec.time_ms)));
                s.records.push(rec);
                s.good_len += used;
            }
            Decoded::Incomplete => {
                s.stop = Some("torn record at end");
                break;
            }
            Decoded::Corrupt(why) => {
                s.stop = Some(why);
                break;
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::super::record::{encode, Kind};
    use super::*;

    #[test]
    fn names() {
        assert_eq!(file_name(1), "journal-00000000000000000001.log");
        assert_eq!(file_name(u64::MAX), "journal-18446744073709551615.log");
        assert_eq!(parse_name("journal-00000000000000000042.log"), Some(42));
        for bad in ["journal-42.log", "journal-0000000000000000004x.log", "journal-00000000000000000042.log.tmp", "x"] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
        assert_eq!(parse_name("journal-99999999999999999999.log"), None); // over u64
    }

    #[test]
    fn scan_stops_at_damage() {
        let mut buf = Vec::new();
        for id in 1..=3 {
            let rec = Record { kind: Kind::Event, id, time_ms: 10 * id, topic: "t".into(), data: vec![1; 5] };
            encode(&rec, &mut buf).unwrap();
        }
        let whole = scan(&buf);
        assert_eq!((whole.records.len(), whole.good_len, whole.stop, whole.newest_ms), (3, buf.len(), None, Some(30)));
        let one = buf.len() / 3;
        let torn = scan(&buf[..buf.len() - 1]);
        assert_eq!((torn.records.len(), torn.good_len, torn.stop), (2, 2 * one, Some("torn record at end")));
        buf[one + 12] ^= 1;
        let bad = scan(&buf);
        assert_eq!((bad.records.len(), bad.good_len, bad.stop), (1, one, Some("checksum mismatch")));
        assert_eq!(scan(&[]).good_len, 0);
    }
}
