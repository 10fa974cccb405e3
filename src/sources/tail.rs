//! Following a file for a `tail` source: from its end at start, through rotation by rename (the
//! old file is read to its end, then the new one from its start), truncation in place
//! (`copytruncate`: read again from the start), and a file that does not exist yet (its
//! directory is watched, and a file created later is read from its start). The loop learns of
//! changes from one inotify watch on the file's directory; this module only reads, with `pread`,
//! so a rotated file needs no seek.

use crate::runner::lines::{Line, LineSplitter};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// What a directory watch listens for: writes to and the comings and goings of its files.
pub(crate) const DIR_MASK: u32 = libc::IN_MODIFY
    | libc::IN_CREATE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE
    | libc::IN_CLOSE_WRITE
    | libc::IN_ATTRIB;

/// Size of `struct inotify_event` before its name.
const EVENT_HEAD: usize = 16;

/// The watch and mask of each complete event in what one read of an inotify descriptor returned
/// (names are not needed: every event of a directory makes its tails look again). A truncated
/// record at the end is ignored.
pub fn parse_events(mut buf: &[u8]) -> Vec<(i32, u32)> {
    let mut out = Vec::new();
    while buf.len() >= EVENT_HEAD {
        let word = |i: usize| [buf[i], buf[i + 1], buf[i + 2], buf[i + 3]];
        let wd = i32::from_ne_bytes(word(0));
        let mask = u32::from_ne_bytes(word(4));
        let len = u32::from_ne_bytes(word(12)) as usize;
        let Some(end) = EVENT_HEAD.checked_add(len).filter(|e| *e <= buf.len()) else { break };
        out.push((wd, mask));
        buf = &buf[end..];
    }
    out
}

/// One followed file.
#[derive(Debug)]
pub(crate) struct Tail {
    path: PathBuf,
    file: Option<File>,
    /// (device, inode) of the open file: a different one at the path means it was rotated.
    id: (u64, u64),
    offset: u64,
    /// The directory's watch, while there is one.
    pub wd: Option<i32>,
}

impl Tail {
    /// Follows `path`, from its current end if it exists.
    pub fn new(path: &Path) -> Tail {
        let mut t = Tail { path: path.to_path_buf(), file: None, id: (0, 0), offset: 0, wd: None };
        if let Ok(f) = File::open(path) {
            if let Ok(m) = f.metadata() {
                t.id = (m.dev(), m.ino());
                t.offset = m.len();
                t.file = Some(f);
            }
        }
        t
    }

    /// The directory to watch.
    pub fn dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Whether the file is open (false while waiting for it to exist).
    pub fn is_open(&self) -> bool {
        self.file.is_some()
    }

    /// Reads what is new into `lines`, at most `budget` bytes; returns whether more is left.
    pub fn read(&mut self, split: &mut LineSplitter, lines: &mut Vec<Line>, budget: usize) -> bool {
        let mut budget = budget;
        // Twice at most: the old file to its end, then the one that replaced it.
        for _ in 0..2 {
            if self.read_open(split, lines, &mut budget) {
                return true;
            }
            match std::fs::metadata(&self.path) {
                Ok(m) if self.file.is_none() || (m.dev(), m.ino()) != self.id => {
                    let Ok(f) = File::open(&self.path) else { return false };
                    let Ok(m) = f.metadata() else { return false };
                    // The end of the rotated file's last line, if it had no line break.
                    split.finish(lines);
                    self.id = (m.dev(), m.ino());
                    self.offset = 0;
                    self.file = Some(f);
                }
                _ => return false,
            }
        }
        false
    }

    /// Reads the open file from the offset; true when the budget ran out first.
    fn read_open(&mut self, split: &mut LineSplitter, lines: &mut Vec<Line>, budget: &mut usize) -> bool {
        let Some(f) = &self.file else { return false };
        if f.metadata().is_ok_and(|m| m.len() < self.offset) {
            // Truncated in place (copytruncate): what is there now is new.
            split.finish(lines);
            self.offset = 0;
        }
        let mut buf = [0u8; 4096];
        loop {
            if *budget == 0 {
                return true;
            }
            let want = (*budget).min(buf.len());
            match f.read_at(&mut buf[..want], self.offset) {
                Ok(0) => return false,
                Ok(n) => {
                    *budget -= n;
                    self.offset += n as u64;
                    split.feed(&buf[..n], lines);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("tail {}: {e}", self.path.display());
                    self.file = None;
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    fn event(wd: i32, mask: u32, name: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&wd.to_ne_bytes());
        v.extend_from_slice(&mask.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&(name.len() as u32).to_ne_bytes());
        v.extend_from_slice(name);
        v
    }

    #[test]
    fn events_are_parsed_and_a_truncated_one_ignored() {
        let mut b = event(1, libc::IN_MODIFY, b"app.log\0\0\0\0\0\0\0\0\0");
        b.extend(event(2, libc::IN_CREATE, b""));
        assert_eq!(parse_events(&b), [(1, libc::IN_MODIFY), (2, libc::IN_CREATE)]);
        b.extend(&event(3, 0, b"abcd")[..18]);
        assert_eq!(parse_events(&b).len(), 2);
    }

    proptest! {
        #[test]
        fn parsing_any_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_events(&b);
        }
    }

    fn texts(lines: &[Line]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn follows_from_the_end_through_rename_and_truncation() {
        let dir = std::env::temp_dir().join(format!("hookcast-tail-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("app.log");
        std::fs::write(&path, "old\n").unwrap();
        let mut t = Tail::new(&path);
        let mut split = LineSplitter::new(64);
        let mut lines = Vec::new();
        let append = |s: &str| std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(s.as_bytes());
        append("a\n").unwrap();
        assert!(!t.read(&mut split, &mut lines, 1 << 20));
        assert_eq!(texts(&lines), ["a"]);
        // Rename rotation: the old file's last line, then the new file from its start.
        append("b\n").unwrap();
        std::fs::rename(&path, dir.join("app.log.1")).unwrap();
        std::fs::write(&path, "c\n").unwrap();
        t.read(&mut split, &mut lines, 1 << 20);
        assert_eq!(texts(&lines), ["a", "b", "c"]);
        // copytruncate: the truncation is seen (its IN_MODIFY) before the next write.
        std::fs::OpenOptions::new().write(true).truncate(true).open(&path).unwrap();
        t.read(&mut split, &mut lines, 1 << 20);
        append("d\n").unwrap();
        t.read(&mut split, &mut lines, 1 << 20);
        assert_eq!(texts(&lines), ["a", "b", "c", "d"]);
        // A budget leaves the rest for later.
        append("eeee\nffff\n").unwrap();
        assert!(t.read(&mut split, &mut lines, 5));
        assert!(!t.read(&mut split, &mut lines, 1 << 20));
        assert_eq!(texts(&lines)[4..], ["eeee", "ffff"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_created_later_is_read_from_its_start() {
        let dir = std::env::temp_dir().join(format!("hookcast-tail-unit-new-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("late.log");
        let mut t = Tail::new(&path);
        assert!(!t.is_open());
        let mut split = LineSplitter::new(64);
        let mut lines = Vec::new();
        t.read(&mut split, &mut lines, 1 << 20);
        assert!(lines.is_empty());
        std::fs::write(&path, "first\n").unwrap();
        t.read(&mut split, &mut lines, 1 << 20);
        assert_eq!(texts(&lines), ["first"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
