//! Segment files: their names, listing a journal directory in order, and reading one segment
//! frame by frame, telling damage followed by valid frames from a torn tail.
//!
//! A segment is `<dir>/journal-<20-digit number>.log`, a plain concatenation of record frames
//! (see [`super::record`]). Numbers start at 1 and grow by one per rotation, so the names sort in
//! write order; they are a counter, not a record sequence. [`Reader`] only reads: repairing
//! files (cutting a torn tail, keeping damaged bytes aside) is [`super::Journal::open`]'s job.

use super::record::{decode, Decoded, Record, MAGIC};
use std::fs::File;
use std::io::{self, Read};
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

/// Bytes read from a segment file at a time. The buffer grows past it only to hold one frame
/// whose length field asks for more (at most [`super::record::MAX_BODY_LEN`] plus a chunk).
const READ_CHUNK: usize = 1 << 20;

/// Why a frame that runs past the end of the file is bad, when no valid frame follows it.
const TORN: &str = "torn record at end";
/// The same when a valid frame follows: its length field was damaged.
const PAST_END: &str = "length field past the end of the file";

/// Bytes of a segment that are not frames: `len` bytes at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bad {
    /// Offset of the first bad byte.
    pub offset: u64,
    /// Bytes up to the next valid frame (or to the end of the file).
    pub len: u64,
    /// What was wrong with the frame at `offset`.
    pub reason: &'static str,
}

/// What [`Reader::next`] found.
#[derive(Debug)]
pub(crate) enum Next {
    /// A whole, checked record.
    Record(Record),
    /// Damage followed by a valid frame: disk damage, not a torn write (an append-only file is
    /// only ever torn at its end). Reading goes on at that frame.
    Damaged(Bad),
    /// Bytes from `offset` to the end of the file with no valid frame among them: in the last
    /// segment, a torn write to cut.
    Tail(Bad),
}

/// Reads one segment frame by frame through a bounded buffer, so that replaying a journal
/// costs one frame of memory, not the journal's size.
///
/// After a bad frame it looks for the next offset where a whole frame with a good checksum
/// starts (a CRC-32C collision on a random candidate is a 2^-32 chance). The bytes it passes
/// over go to the `aside` callback as it goes, so that damage of any size costs no memory.
pub(crate) struct Reader<R> {
    src: R,
    buf: Vec<u8>,
    /// `buf[..start]` is consumed.
    start: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
}

impl<R: Read> Reader<R> {
    /// A reader at the start of `src`.
    pub(crate) fn new(src: R) -> Reader<R> {
        Reader { src, buf: Vec::new(), start: 0, base: 0, eof: false }
    }

    /// File offset of the next unread byte (the end of the last record or damage returned).
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    /// Reads one more chunk after what the buffer holds, dropping consumed bytes first; false at
    /// the end of the file.
    fn fill(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.base += self.start as u64;
            self.start = 0;
        }
        let old = self.buf.len();
        self.buf.resize(old + READ_CHUNK, 0);
        let n = loop {
            match self.src.read(&mut self.buf[old..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(old);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(old + n);
        self.eof = n == 0;
        Ok(n > 0)
    }

    /// The next record or damaged range; `None` at a clean end. Damaged bytes are handed to
    /// `aside(offset, bytes)` (in order, possibly in several calls) before the range is returned.
    pub(crate) fn next(&mut self, aside: &mut dyn FnMut(u64, &[u8]) -> io::Result<()>) -> io::Result<Option<Next>> {
        loop {
            match decode(&self.buf[self.start..]) {
                Decoded::Record(rec, used) => {
                    self.start += used;
                    return Ok(Some(Next::Record(rec)));
                }
                Decoded::Incomplete => {
                    if !self.fill()? {
                        if self.start == self.buf.len() {
                            return Ok(None);
                        }
                        // A frame that runs past the end: torn, or a damaged length field with
                        // good frames inside the length it claims.
                        return self.resync(TORN, aside).map(Some);
                    }
                }
                Decoded::Corrupt(why) => return self.resync(why, aside).map(Some),
            }
        }
    }

    /// Skips from the bad frame at `start` to the next valid one, or to the end.
    fn resync(
        &mut self,
        reason: &'static str,
        aside: &mut dyn FnMut(u64, &[u8]) -> io::Result<()>,
    ) -> io::Result<Next> {
        let offset = self.offset();
        let mut p = self.start + 1;
        loop {
            match self.buf[p..].iter().position(|&b| b == MAGIC) {
                None => p = self.buf.len(),
                Some(i) => {
                    p += i;
                    match decode(&self.buf[p..]) {
                        Decoded::Record(..) => {
                            aside(self.offset(), &self.buf[self.start..p])?;
                            self.start = p;
                            let reason = if reason == TORN { PAST_END } else { reason };
                            return Ok(Next::Damaged(Bad { offset, len: self.offset() - offset, reason }));
                        }
                        Decoded::Corrupt(_) => {
                            p += 1;
                            continue;
                        }
                        // Runs past the end of the file: not a frame.
                        Decoded::Incomplete if self.eof => {
                            p += 1;
                            continue;
                        }
                        Decoded::Incomplete => {}
                    }
                }
            }
            // Everything before `p` is damage: hand it aside and read on.
            aside(self.offset(), &self.buf[self.start..p])?;
            self.start = p;
            if !self.fill()? && self.start == self.buf.len() {
                return Ok(Next::Tail(Bad { offset, len: self.offset() - offset, reason }));
            }
            // `fill` may have moved the bytes; the candidate (or the search) goes on at `start`.
            p = self.start;
        }
    }
}

/// What one segment's bytes hold (tests read small segments in one go).
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Scan {
    /// The records, in order.
    pub records: Vec<Record>,
    /// The damaged ranges, in order.
    pub bad: Vec<Bad>,
}

/// Reads every frame of `buf` as the reader would read a file.
#[cfg(test)]
pub(crate) fn scan(buf: &[u8]) -> Scan {
    let mut s = Scan { records: Vec::new(), bad: Vec::new() };
    let mut r = Reader::new(buf);
    while let Some(next) = r.next(&mut |_, _| Ok(())).expect("reading a slice cannot fail") {
        match next {
            Next::Record(rec) => s.records.push(rec),
            Next::Damaged(b) | Next::Tail(b) => s.bad.push(b),
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
    fn scan_skips_damage_and_reports_the_tail() {
        let mut buf = Vec::new();
        for id in 1..=3 {
            let rec = Record { kind: Kind::Event, id, time_ms: 10 * id, topic: "t".into(), data: vec![1; 5] };
            encode(&rec, &mut buf).unwrap();
        }
        let whole = scan(&buf);
        assert_eq!((whole.records.len(), whole.bad.len()), (3, 0));
        let one = buf.len() / 3;
        let torn = scan(&buf[..buf.len() - 1]);
        let tail = Bad { offset: 2 * one as u64, len: one as u64 - 1, reason: "torn record at end" };
        assert_eq!((torn.records.len(), torn.bad), (2, vec![tail]));
        buf[one + 12] ^= 1;
        let bad = scan(&buf);
        let hole = Bad { offset: one as u64, len: one as u64, reason: "checksum mismatch" };
        assert_eq!(bad.records.iter().map(|r| r.id).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(bad.bad, [hole]);
        assert!(scan(&[]).records.is_empty() && scan(&[]).bad.is_empty());
    }

    /// Frames larger than a read chunk, damage larger than a chunk, and a damaged length field
    /// that claims more than the file holds: every valid frame is still found.
    #[test]
    fn reader_across_chunks() {
        let big = |id| Record {
            kind: Kind::Event,
            id,
            time_ms: 1,
            topic: "big".into(),
            data: vec![id as u8; READ_CHUNK + 7],
        };
        let mut buf = Vec::new();
        encode(&big(1), &mut buf).unwrap();
        let garbage_at = buf.len();
        buf.extend((0..8 * READ_CHUNK).map(|i| (i % 251) as u8 & !1)); // never MAGIC (0xC5 is odd)
        let second_at = buf.len();
        encode(&big(2), &mut buf).unwrap();
        let lie_at = buf.len();
        encode(&big(3), &mut buf).unwrap();
        buf[lie_at + 4] = 0x03; // length now ~48 MiB: "incomplete" at the end of the file
        encode(&big(4), &mut buf).unwrap();
        let mut aside = Vec::new();
        let mut r = Reader::new(&buf[..]);
        let mut got = Vec::new();
        while let Some(n) = r
            .next(&mut |at, b| {
                aside.push((at, b.len()));
                Ok(())
            })
            .unwrap()
        {
            got.push(match n {
                Next::Record(rec) => format!("rec {}", rec.id),
                Next::Damaged(b) => format!("damaged {} {} {}", b.offset, b.len, b.reason),
                Next::Tail(b) => format!("tail {}", b.offset),
            });
        }
        let third = encoded_len_of(&big(3));
        assert_eq!(
            got,
            [
                "rec 1".to_string(),
                format!("damaged {garbage_at} {} bad magic byte", second_at - garbage_at),
                "rec 2".to_string(),
                format!("damaged {lie_at} {third} {PAST_END}"),
                "rec 4".to_string(),
            ]
        );
        // The damaged bytes were handed aside in order, contiguously, and nothing else.
        let total: usize = aside.iter().map(|(_, n)| n).sum();
        assert_eq!(total, second_at - garbage_at + third);
        assert_eq!(aside[0].0, garbage_at as u64);
        assert!(r.buf.capacity() < 6 * READ_CHUNK, "the buffer stayed bounded: {}", r.buf.capacity());
    }

    fn encoded_len_of(r: &Record) -> usize {
        super::super::record::encoded_len(r)
    }

    mod props {
        use super::super::super::record::{encode, Kind};
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever bytes of whatever records are damaged, every record left whole is read
            /// back, in order, and nothing else; damage is reported, never a panic.
            #[test]
            fn every_whole_record_survives_damage_elsewhere(
                datas in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..20),
                hits in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), 1..=255u8), 0..6),
                cut in 0usize..40,
            ) {
                let recs: Vec<Record> = datas
                    .into_iter()
                    .enumerate()
                    .map(|(i, data)| Record { kind: Kind::Event, id: i as u64, time_ms: 0, topic: "t".into(), data })
                    .collect();
                let mut buf = Vec::new();
                let mut spans = Vec::new();
                for r in &recs {
                    let at = buf.len();
                    encode(r, &mut buf).unwrap();
                    spans.push(at..buf.len());
                }
                let mut damaged = vec![false; recs.len()];
                for (rec, byte, flip) in hits {
                    let i = rec.index(recs.len());
                    let span = spans[i].clone();
                    buf[span.start + byte.index(span.len())] ^= flip;
                    damaged[i] = true;
                }
                // And a torn end.
                let keep = buf.len().saturating_sub(cut);
                buf.truncate(keep);
                let want: Vec<u64> =
                    (0..recs.len()).filter(|&i| !damaged[i] && spans[i].end <= keep).map(|i| i as u64).collect();
                let got = scan(&buf);
                prop_assert_eq!(got.records.iter().map(|r| r.id).collect::<Vec<_>>(), want);
                let bad: u64 = got.bad.iter().map(|b| b.len).sum();
                let good: u64 = got.records.iter().map(|r| super::encoded_len_of(r) as u64).sum();
                prop_assert_eq!(bad + good, keep as u64, "every byte is a record or reported damage");
            }
        }
    }
}
