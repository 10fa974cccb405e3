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
//! Recovery ([`Journal::open`]): segments are read oldest first. In the last segment, a torn or
//! corrupt frame ends the journal: the file is truncated there and [`Replay::truncated`] says where.
//! In an older segment (which was complete when it was closed, so this is disk damage) the records
//! before the bad frame are kept, the rest of that segment is skipped and logged
//! ([`Replay::skipped`]), and reading goes on with the next segment.
//!
//! Write errors (ENOSPC, EIO): the writer counts them, sets [`Stats::failed`], stops advancing
//! `durable_seq`, wakes the loop once, keeps queuing in memory and retries with a backoff (50 ms
//! doubling to 5 s); the first batch that becomes durable again clears the state (and wakes).
//! **Callers answer 503 while [`Journal::is_failed`] is true, or while [`Journal::queued_bytes`] is
//! over their bound** (`App::journal_refusal`), instead of accepting work they cannot make
//! durable, so what the writer holds in memory stays bounded; the loop itself is never blocked.

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
        }
    }
}

/// Where a segment's bytes stopped being records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// The segment file.
    pub file: PathBuf,
    /// Offset of the first bad byte (the end of the last good record).
    pub offset: u64,
    /// Bytes from there to the end of the file that were cut (last segment) or skipped (older).
    pub cut: u64,
    /// What was wrong with the frame at `offset`.
    pub reason: &'static str,
}

/// What [`Journal::open`] read back.
#[derive(Debug)]
pub struct Replay {
    /// Every readable record, oldest first. The whole journal is held in memory (bounded by
    /// `max_bytes`); the caller rebuilds its indexes from it and drops it.
    pub records: Vec<Record>,
    /// The torn or corrupt tail cut from the last segment, if there was one.
    pub truncated: Option<Truncation>,
    /// Damaged ends of older segments, skipped but left on disk (until retention deletes them).
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
    let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
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

impl Journal {
    /// Opens or creates `cfg.dir`, reads every segment in order, truncates a torn or corrupt tail of
    /// the last segment (in an older segment: keeps what precedes the bad frame, logs, skips the rest
    /// of that segment), and starts the writer thread, which calls `waker.wake()` after each batch
    /// becomes durable. Blocking: call it before the loop starts.
    pub fn open(cfg: JournalConfig, waker: Arc<Waker>) -> io::Result<(Journal, Replay)> {
        std::fs::create_dir_all(&cfg.dir)?;
        let lock = lock_dir(&cfg.dir)?;
        let found = segment::list(&cfg.dir)?;
        let mut replay =
            Replay { records: Vec::new(), truncated: None, skipped: Vec::new(), segments: found.len(), bytes: 0 };
        let mut segs = VecDeque::with_capacity(found.len() + 1);
        let last = found.len().checked_sub(1);
        for (i, (number, path)) in found.into_iter().enumerate() {
            let bytes = std::fs::read(&path)?;
            let scan = segment::scan(&bytes);
            let mut size = bytes.len() as u64;
            if let Some(reason) = scan.stop {
                let offset = scan.good_len as u64;
                let cut = size - offset;
                if Some(i) == last {
                    log::warn!("journal: {}: {reason} at byte {offset}; cutting the last {cut} bytes", path.display());
                    let file = OpenOptions::new().write(true).open(&path)?;
                    file.set_len(offset)?;
                    file.sync_all()?;
                    size = offset;
                    replay.truncated = Some(Truncation { file: path.clone(), offset, cut, reason });
                } else {
                    log::warn!(
                        "journal: {}: {reason} at byte {offset}; skipping the segment's last {cut} bytes",
                        path.display()
                    );
                    replay.skipped.push(Truncation { file: path.clone(), offset, cut, reason });
                }
            }
            replay.bytes += size;
            replay.records.extend(scan.records);
            segs.push_back(Seg { number, path, bytes: size, newest_ms: scan.newest_ms });
        }
        let file = match segs.back() {
            Some(active) => OpenOptions::new().append(true).open(&active.path)?,
            None => {
                let path = cfg.dir.join(segment::file_name(1));
                let file = OpenOptions::new().append(true).create_new(true).open(&path)?;
                segment::sync_dir(&cfg.dir)?;
                segs.push_back(Seg { number: 1, path, bytes: 0, newest_ms: None });
                file
            }
        };
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let set = Settings {
            dir: cfg.dir,
            fsync: cfg.fsync,
            segment_bytes: cfg.segment_bytes,
            max_bytes: cfg.max_bytes,
            max_age: cfg.max_age,
        };
        let writer = Writer::new(set, rx, Arc::clone(&shared), waker, segs, file);
        let thread = std::thread::Builder::new().name("hookcast-journal".into()).spawn(move || writer.run())?;
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

#[cfg(test)]
mod tests;
