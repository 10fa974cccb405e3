//! The on-disk journal: an append-only log of events, webhook deliveries and run records in
//! segment files, written by one helper thread with group commit, replayed on start.
//!
//! This module owns durability (DESIGN.md non-negotiable 4) without breaking the one-loop rule
//! (non-negotiable 1): [`Journal::append`] only clones the record into a channel; the writer
//! thread (`journal::writer`) does every `write(2)` and `fsync(2)`, then stores the highest durable
//! sequence number in an atomic and calls `mio::Waker::wake`. The loop, on that wake-up, reads
//! [`Journal::durable_seq`] and releases every response waiting on a sequence number at or below it
//! (a webhook's 202, a publish's 200). Nothing here takes a lock on the loop's path except
//! [`Journal::stats`].
//!
//! On disk (`cfg.dir`):
//!
//! ```text
//!  <dir>/journal-00000000000000000001.log   closed segment (oldest; first deleted by retention)
//!  <dir>/journal-00000000000000000002.log   closed segment
//!  <dir>/journal-00000000000000000003.log   active segment, opened O_APPEND
//!
//!  segment := frame*            frame := see `record` (magic, len, CRC-32C, kind, id, time, topic, data)
//! ```
//!
//! Segment numbers are a counter (+1 per rotation), so names sort in write order. A segment is
//! rotated once it holds `segment_bytes` or more, at a record boundary; the old one is fsynced first
//! (whatever the policy) and the directory is fsynced after every create and delete.
//! After a restart the writer keeps appending to the last segment once its torn tail is cut.
//!
//! Retention deletes the oldest closed segments past `max_bytes` or `max_age`. An owner that
//! keeps state the deleted segments held (retained events) sets [`JournalConfig::copies`] and
//! re-appends that state after each rotation ([`Journal::copy_states`], `Kind::State` records);
//! a segment is then deleted only once a copy after it is durable.
//!
//! Recovery ([`Journal::open`]): segments are read oldest first, frame by frame through a bounded
//! buffer, and each record is handed to the caller as it is read; the journal is never held in
//! memory (replay costs about one frame, at most [`record::MAX_BODY_LEN`], beside what the caller
//! keeps). A torn write can only be at the end of an append-only file, so:
//! - bad bytes with no valid frame after them, in the last segment, are a torn tail: the file is
//!   cut there and [`Replay::truncated`] says where;
//! - bad bytes followed by a valid frame (in any segment), or at the end of an older segment
//!   (closed complete), are damage: they are copied aside to `<segment>.damaged-at-<offset>`
//!   (mode 0600, never deleted by hookcast), skipped, logged as errors and listed in
//!   [`Replay::skipped`]; every valid record before and after them is kept, and the segment is
//!   left as it is (retention deletes it in its turn).
//!
//! Files are private: the directory is created 0700 and files 0600 whatever the umask (records
//! hold webhook requests with their headers); wider modes left by an older version are tightened.
//!
//! Write errors (ENOSPC, EIO): the writer counts them, sets [`Stats::failed`], stops advancing
//! `durable_seq`, wakes the loop once, keeps queuing in memory and retries with a backoff (50 ms
//! doubling to 5 s); the first batch that becomes durable again clears the state (and wakes).
//! **Callers answer 503 while [`Journal::is_failed`] is true, or while [`Journal::queued_bytes`] is
//! over their bound** (`App::work_refusal`), instead of accepting work they cannot make
//! durable, so what the writer holds in memory stays bounded; the loop itself is never blocked.

pub mod budget;
pub mod record;
mod segment;
mod writer;

pub use record::{crc32c, crc32c_update, decode, encode, Decoded, Kind, Record, RecordError};

use mio::Waker;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::*;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use writer::{Msg, Seg, Settings, Shared, Writer};

/// Default size at which a segment is closed and a new one started: 16 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 16 << 20;

/// Default bound on the journal's total size on disk: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Written and fsynced before it is acknowledged; concurrent appends share one fsync.
    Always,
    /// Fsynced at most this long after it was appended (the fsync starts by then).
    Batch(Duration),
    /// Handed to the OS (`write(2)` returned); survives a process crash, not a power cut. Only
    /// closed segments (at rotation) and `close` are fsynced.
    Never,
}

/// Where and how the journal is kept.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// Directory of the segment files; created if missing.
    pub dir: PathBuf,
    /// Durability policy.
    pub fsync: Fsync,
    /// Rotate the active segment once it holds this many bytes.
    pub segment_bytes: u64,
    /// Delete the oldest closed segments while the total is above this.
    pub max_bytes: u64,
    /// Delete closed segments whose newest record (by `time_ms`) is older than this.
    pub max_age: Option<Duration>,
    /// The owner keeps state that older segments hold (retained events) and re-appends it
    /// after every rotation ([`Journal::copy_states`]): retention deletes a segment only once
    /// a copy after it is durable, so no state lives only in a deleted file.
    pub copies: bool,
}

impl JournalConfig {
    /// Defaults: `Fsync::Always`, 16 MiB segments, 1 GiB in total, no age limit.
    pub fn new(dir: impl Into<PathBuf>) -> JournalConfig {
        JournalConfig {
            dir: dir.into(),
            fsync: Fsync::Always,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            max_bytes: DEFAULT_MAX_BYTES,
            max_age: None,
            copies: false,
        }
    }
}

/// Bytes of a segment that were not records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// The segment file.
    pub file: PathBuf,
    /// Offset of the first bad byte (the end of the last good record).
    pub offset: u64,
    /// Bytes from there that were cut (a torn tail) or skipped (damage).
    pub cut: u64,
    /// What was wrong with the frame at `offset`.
    pub reason: &'static str,
    /// Where a copy of skipped bytes was kept (none for a torn tail, which is cut).
    pub aside: Option<PathBuf>,
}

/// What [`Journal::open`] read back (the records themselves went to its callback).
#[derive(Debug)]
pub struct Replay {
    /// Records read and handed to the callback.
    pub records: u64,
    /// The torn tail cut from the last segment, if there was one.
    pub truncated: Option<Truncation>,
    /// Damaged ranges skipped (and copied aside) with every valid record around them kept.
    pub skipped: Vec<Truncation>,
    /// Segment files read.
    pub segments: usize,
    /// Their total size after the repair.
    pub bytes: u64,
}

/// Counters for `/metrics` and the status API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Total size of the segment files.
    pub disk_bytes: u64,
    /// Number of segment files.
    pub segments: u64,
    /// Records appended in this process.
    pub appended: u64,
    /// fsync calls on segment files.
    pub fsyncs: u64,
    /// Failed writes, fsyncs, truncations and segment creations.
    pub write_errors: u64,
    /// Encoded bytes appended but not durable yet.
    pub queued_bytes: u64,
    /// The last write error while the journal cannot make progress; callers answer 503 meanwhile.
    pub failed: Option<String>,
}

/// The journal handle the event loop holds. Not `Clone`: one loop, one writer. Dropping it
/// without [`close`](Self::close) still makes the writer flush and fsync, but nobody waits for it.
pub struct Journal {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    next_seq: u64,
    thread: JoinHandle<()>,
    /// The state directory's lock, held while this process may write.
    lock: File,
}

/// Takes `dir`'s lock file (flock, released when the process ends however it ends). A second
/// daemon on the same directory must not start: it would cut the first one's active segment
/// as a torn tail and append to it in parallel.
fn lock_dir(dir: &Path) -> io::Result<File> {
    let path = dir.join("lock");
    let mut file = private_file().read(true).write(true).create(true).truncate(false).open(&path)?;
    if !crate::sys::try_lock_exclusive(&file)? {
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = holder.trim();
        let who = if holder.is_empty() { String::new() } else { format!(" (pid {holder})") };
        return Err(io::Error::new(
            io::ErrorKind::ResourceBusy,
            format!("{} is in use by another hookcast{who}; give each daemon its own state_dir", dir.display()),
        ));
    }
    file.set_len(0)?;
    writeln!(file, "{}", std::process::id())?;
    Ok(file)
}

/// Why [`Journal::open`] failed: what it was doing, to which file or directory.
#[derive(Debug)]
pub struct OpenError {
    /// What failed, as a verb phrase ("create the directory", "lock", "read", ...).
    pub action: &'static str,
    /// The file or directory it failed on.
    pub path: PathBuf,
    /// The system's error.
    pub err: io::Error,
}

impl OpenError {
    fn at<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> OpenError + 'a {
        move |err| OpenError { action, path: path.to_path_buf(), err }
    }

    /// The kind of the underlying error.
    pub fn kind(&self) -> io::ErrorKind {
        self.err.kind()
    }
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot {} {}: {}", self.action, self.path.display(), self.err)
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.err)
    }
}

/// Mode of the journal directory (and of a state directory created for it).
const DIR_MODE: u32 = 0o700;
/// Mode of every file in it.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) 0700.
fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Tightens an existing `dir` that is group- or world-accessible (made by an older version under
/// umask 022), and its files. Best effort: what cannot be changed is logged, not fatal.
fn tighten(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let wide = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.permissions().mode() & 0o077 != 0);
    let mut paths = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        let files = entries.flatten().filter(|e| e.file_type().is_ok_and(|t| t.is_file()));
        paths.extend(files.map(|e| e.path()));
    }
    for (i, p) in paths.iter().enumerate().filter(|(_, p)| wide(p)) {
        let mode = if i == 0 { DIR_MODE } else { FILE_MODE };
        match std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)) {
            Ok(()) => log::warn!("journal: {} was open to other users; now {mode:o}", p.display()),
            Err(e) => log::error!("journal: {} is open to other users and cannot be made {mode:o}: {e}", p.display()),
        }
    }
}

/// Options that create files 0600 whatever the umask.
pub(crate) fn private_file() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

/// Bytes of damage held in memory before a copy-aside file is created: a torn tail is cut, not
/// kept, and should not cost a file; larger damage is streamed to the file.
const ASIDE_HOLD: usize = 1 << 20;

/// Damaged bytes on their way to `<segment>.damaged-at-<offset>`.
struct Aside {
    path: PathBuf,
    held: Vec<u8>,
    file: Option<File>,
}

impl Aside {
    fn new(segment: &Path, offset: u64) -> Aside {
        let mut name = segment.as_os_str().to_owned();
        name.push(format!(".damaged-at-{offset}"));
        Aside { path: name.into(), held: Vec::new(), file: None }
    }

    fn push(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.file.is_none() && self.held.len() + bytes.len() <= ASIDE_HOLD {
            self.held.extend_from_slice(bytes);
            return Ok(());
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(private_file().write(true).create(true).truncate(true).open(&self.path)?),
        };
        file.write_all(&self.held)?;
        self.held = Vec::new();
        file.write_all(bytes)
    }

    /// Writes everything to the file and makes it durable; returns its path.
    fn keep(mut self) -> Result<PathBuf, OpenError> {
        let path = self.path.clone();
        let done = (|| {
            if self.file.is_none() {
                self.file = Some(private_file().write(true).create(true).truncate(true).open(&self.path)?);
            }
            self.push(&[])?;
            self.file.as_ref().map_or(Ok(()), File::sync_all)
        })();
        done.map_err(OpenError::at("keep damaged bytes aside in", &path))?;
        Ok(path)
    }

    /// The bytes were a torn tail: no copy.
    fn discard(self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Journal {
    /// Opens or creates `cfg.dir` (0700), reads every segment in order handing each record to
    /// `apply` as it is read, cuts a torn tail of the last segment, keeps damaged ranges aside
    /// (see the module doc), and starts the writer thread, which calls `waker.wake()` after each
    /// batch becomes durable. Blocking: call it before the loop starts.
    pub fn open(
        cfg: JournalConfig,
        waker: Arc<Waker>,
        apply: &mut dyn FnMut(Record),
    ) -> Result<(Journal, Replay), OpenError> {
        private_dir(&cfg.dir).map_err(OpenError::at("create the directory", &cfg.dir))?;
        tighten(&cfg.dir);
        let lock = lock_dir(&cfg.dir).map_err(OpenError::at("lock", &cfg.dir.join("lock")))?;
        let found = segment::list(&cfg.dir).map_err(OpenError::at("list", &cfg.dir))?;
        let mut replay = Replay { records: 0, truncated: None, skipped: Vec::new(), segments: found.len(), bytes: 0 };
        let mut segs = VecDeque::with_capacity(found.len() + 1);
        let count = found.len();
        for (i, (number, path)) in found.into_iter().enumerate() {
            let seg = read_segment(number, path, i + 1 == count, &mut replay, apply)?;
            replay.bytes += seg.bytes;
            segs.push_back(seg);
        }
        let file = match segs.back() {
            Some(active) => {
                OpenOptions::new().append(true).open(&active.path).map_err(OpenError::at("open", &active.path))?
            }
            None => {
                let path = cfg.dir.join(segment::file_name(1));
                let file =
                    private_file().append(true).create_new(true).open(&path).map_err(OpenError::at("create", &path))?;
                segment::sync_dir(&cfg.dir).map_err(OpenError::at("sync", &cfg.dir))?;
                segs.push_back(Seg { number: 1, path, bytes: 0, newest_ms: None });
                file
            }
        };
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let set = Settings {
            dir: cfg.dir.clone(),
            fsync: cfg.fsync,
            segment_bytes: cfg.segment_bytes,
            max_bytes: cfg.max_bytes,
            max_age: cfg.max_age,
            copies: cfg.copies,
        };
        let writer = Writer::new(set, rx, Arc::clone(&shared), waker, segs, file);
        let thread = std::thread::Builder::new()
            .name("hookcast-journal".into())
            .spawn(move || writer.run())
            .map_err(OpenError::at("start the writer thread for", &cfg.dir))?;
        Ok((Journal { tx, shared, next_seq: 1, thread, lock }, replay))
    }

    /// Queues a record for writing; never blocks (a channel to the writer thread). Returns its
    /// sequence number (1, 2, 3… in this process), or refuses a record over the frame's limits.
    pub fn append(&mut self, rec: &Record) -> Result<u64, RecordError> {
        rec.check()?;
        Ok(self.send(rec.clone()))
    }

    /// [`append`](Self::append) for a record the caller no longer needs: no clone.
    pub fn append_owned(&mut self, rec: Record) -> Result<u64, RecordError> {
        rec.check()?;
        Ok(self.send(rec))
    }

    fn send(&mut self, rec: Record) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.shared.queued_bytes.fetch_add(record::encoded_len(&rec) as u64, Relaxed);
        if self.tx.send(Msg::Append { seq, rec, at: Instant::now() }).is_err()
            && self.shared.set_failed(Some("journal writer thread has stopped".into()))
        {
            log::error!("journal: writer thread has stopped; nothing more will be durable");
        }
        seq
    }

    /// Rotations so far that were not caused by a copy: when it changes, the owner calls
    /// [`Journal::copy_states`] (and once after opening, for the segments replayed).
    pub fn rotations(&self) -> u64 {
        self.shared.rotations.load(Relaxed)
    }

    /// Re-appends `states` (the owner's current state, as records its replay understands) as one
    /// copy; with [`JournalConfig::copies`], the segments before the copy's first record are
    /// deleted by retention only once the copy is durable. An empty copy still counts. Returns
    /// the last seq appended (0 when nothing was).
    pub fn copy_states(&mut self, states: impl IntoIterator<Item = Record>) -> u64 {
        let _ = self.tx.send(Msg::CopyBegin);
        let mut last = 0;
        for rec in states {
            match self.append_owned(rec) {
                Ok(seq) => last = seq,
                Err(e) => log::warn!("journal: a state not copied: {e}"),
            }
        }
        let _ = self.tx.send(Msg::CopyEnd);
        last
    }

    /// Every append with a sequence number <= this is durable under the policy: `Always` → written
    /// and fsynced (group commit: all records queued while the previous fsync ran go in the next
    /// write+fsync together); `Batch(d)` → fsynced, the fsync started at most `d` after the append;
    /// `Never` → written to the OS (`write(2)` returned).
    pub fn durable_seq(&self) -> u64 {
        self.shared.durable_seq.load(Acquire)
    }

    /// Whether writes are failing (durable_seq stalled): answer 503 to work that needs the journal.
    pub fn is_failed(&self) -> bool {
        self.shared.is_failed.load(Relaxed)
    }

    /// Encoded bytes appended but not durable yet (the writer's queue).
    pub fn queued_bytes(&self) -> u64 {
        self.shared.queued_bytes.load(Relaxed)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        Stats {
            disk_bytes: s.disk_bytes.load(Relaxed),
            segments: s.segments.load(Relaxed),
            appended: self.next_seq - 1,
            fsyncs: s.fsyncs.load(Relaxed),
            write_errors: s.write_errors.load(Relaxed),
            queued_bytes: s.queued_bytes.load(Relaxed),
            failed: s.failed.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        }
    }

    /// Shutdown: flushes, fsyncs (whatever the policy), stops and joins the thread. Blocking,
    /// called once at exit; gives up after 5 s of failing writes, logging what was lost.
    pub fn close(self) {
        let Journal { tx, thread, lock, .. } = self;
        // A send error means the thread is already gone; join reports how.
        let _ = tx.send(Msg::Close);
        if thread.join().is_err() {
            log::error!("journal: writer thread panicked");
        }
        // Only now may another process take the directory.
        drop(lock);
    }

    #[cfg(test)]
    fn set_faults(&self, faults: u8) {
        self.shared.faults.store(faults, Relaxed);
    }
}

/// Reads one segment into `apply` and repairs what needs it (see the module doc); returns the
/// writer's view of it.
fn read_segment(
    number: u64,
    path: PathBuf,
    last: bool,
    replay: &mut Replay,
    apply: &mut dyn FnMut(Record),
) -> Result<Seg, OpenError> {
    let file = File::open(&path).map_err(OpenError::at("open", &path))?;
    let mut reader = segment::Reader::new(file);
    let mut aside: Option<Aside> = None;
    let mut newest_ms: Option<u64> = None;
    let mut size = None;
    loop {
        let next = reader
            .next(&mut |at, bytes| aside.get_or_insert_with(|| Aside::new(&path, at)).push(bytes))
            .map_err(OpenError::at("read", &path))?;
        let (bad, tail) = match next {
            None => break,
            Some(segment::Next::Record(rec)) => {
                newest_ms = Some(newest_ms.map_or(rec.time_ms, |t| t.max(rec.time_ms)));
                replay.records += 1;
                apply(rec);
                continue;
            }
            Some(segment::Next::Damaged(bad)) => (bad, false),
            Some(segment::Next::Tail(bad)) => (bad, true),
        };
        let (offset, cut, reason) = (bad.offset, bad.len, bad.reason);
        if tail && last {
            if let Some(a) = aside.take() {
                a.discard();
            }
            log::warn!(
                "journal: cut a torn or corrupt tail of {} at byte {offset} ({cut} bytes: {reason})",
                path.display()
            );
            let cut_file = (|| {
                let file = OpenOptions::new().write(true).open(&path)?;
                file.set_len(offset)?;
                file.sync_all()
            })();
            cut_file.map_err(OpenError::at("cut the torn tail of", &path))?;
            size = Some(offset);
            replay.truncated = Some(Truncation { file: path.clone(), offset, cut, reason, aside: None });
            break;
        }
        let kept = match aside.take() {
            Some(a) => Some(a.keep()?),
            None => None,
        };
        let copy = kept.as_ref().map_or(String::new(), |p| format!("; a copy is in {}", p.display()));
        let after = if tail { "at the end of a closed segment" } else { "valid records after them are kept" };
        log::error!(
            "journal: {}: DAMAGED: {reason} at byte {offset}; skipping {cut} bytes ({after}){copy}",
            path.display()
        );
        replay.skipped.push(Truncation { file: path.clone(), offset, cut, reason, aside: kept });
    }
    let bytes = size.unwrap_or_else(|| reader.offset());
    Ok(Seg { number, path, bytes, newest_ms })
}

#[cfg(test)]
mod tests;
