//! The journal's one helper thread: it owns the active segment file, turns queued records into
//! writes and fsyncs (group commit), rotates segments, applies retention, and publishes progress
//! to the loop through atomics plus a `mio::Waker`.
//!
//! ```text
//!  loop thread                         writer thread
//!  Journal::append ──mpsc (Msg)──▶ recv, then drain everything queued (≤ MAX_BATCH_BYTES)
//!                                     encode into `buf` (rotating first if the segment is full)
//!                                     write(2) buf; fsync per policy
//!  durable_seq() ◀──AtomicU64──────── store the batch's last seq
//!  Poll wakes    ◀──Waker::wake()──── once per batch that became durable
//! ```
//!
//! Invariant: the active file holds exactly `durable_len` bytes plus `buf[..written]`. `write(2)`
//! reports how much it wrote, so a short or failed write leaves a clean prefix that the next try
//! continues; after a failed fsync the unsynced tail cannot be trusted (the kernel may have
//! dropped those pages), so the file is cut back to `durable_len` and the batch rewritten.

use super::record::{encode, Record};
use super::segment::{file_name, sync_dir};
use super::Fsync;
use mio::Waker;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Stop draining the channel into one batch past this many bytes (a single record may exceed it).
const MAX_BATCH_BYTES: usize = 8 << 20;

/// A batch buffer that grew past this is released rather than kept for the next batch.
const KEEP_BUF_BYTES: usize = 16 << 20;

/// How often retention runs besides after each rotation.
const RETENTION_EVERY: Duration = Duration::from_secs(30);

/// First wait after a write error; doubled per further error up to `MAX_BACKOFF`.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long `close` keeps retrying a failing flush before giving up.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// What the loop sends to the writer.
pub(crate) enum Msg {
    /// A record to write, with its sequence number and the time it was appended.
    Append { seq: u64, rec: Record, at: Instant },
    /// The records up to `CopyEnd` re-append the owner's states (see `Journal::copy_states`).
    CopyBegin,
    /// The end of the copies: once they are durable, the segments before them may go.
    CopyEnd,
    /// Flush, fsync and stop.
    Close,
}

/// Test-only fault injection: make writes fail (after short partial writes) or fsyncs fail.
#[cfg(test)]
pub(crate) mod fault {
    /// `write` alternates between writing at most 3 bytes and failing with ENOSPC.
    pub const WRITE: u8 = 1;
    /// `fsync` fails with EIO.
    pub const SYNC: u8 = 2;
}

/// State shared between the loop (reader) and the writer thread.
#[derive(Default)]
pub(crate) struct Shared {
    pub durable_seq: AtomicU64,
    pub disk_bytes: AtomicU64,
    pub segments: AtomicU64,
    /// Rotations not caused by the owner's own copies: each asks for a new copy of its states.
    pub rotations: AtomicU64,
    pub fsyncs: AtomicU64,
    pub write_errors: AtomicU64,
    pub queued_bytes: AtomicU64,
    pub is_failed: AtomicBool,
    pub failed: Mutex<Option<String>>,
    #[cfg(test)]
    pub faults: std::sync::atomic::AtomicU8,
}

impl Shared {
    /// Records a failure message (or clears it); returns whether the failed state changed.
    pub(crate) fn set_failed(&self, msg: Option<String>) -> bool {
        let changed = self.is_failed.swap(msg.is_some(), AcqRel) != msg.is_some();
        *self.failed.lock().unwrap_or_else(|p| p.into_inner()) = msg;
        changed
    }
}

/// One segment file as the writer tracks it.
#[derive(Debug)]
pub(crate) struct Seg {
    pub number: u64,
    pub path: PathBuf,
    pub bytes: u64,
    pub newest_ms: Option<u64>,
}

/// The policy part of the configuration.
pub(crate) struct Settings {
    pub dir: PathBuf,
    pub fsync: Fsync,
    pub segment_bytes: u64,
    pub max_bytes: u64,
    pub max_age: Option<Duration>,
    /// Retention waits for copies (`JournalConfig::copies`).
    pub copies: bool,
}

/// The writer thread's state; see the module doc for the file invariant.
pub(crate) struct Writer {
    set: Settings,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    waker: Arc<Waker>,
    /// Oldest first; the last one is the active segment, never deleted.
    segs: VecDeque<Seg>,
    file: File,
    /// Bytes of the active file that are durable under the policy.
    durable_len: u64,
    /// Encoded records past `durable_len`; the first `written` bytes are already in the file.
    buf: Vec<u8>,
    written: usize,
    /// Sequence number of the last record in `buf`.
    buf_seq: u64,
    /// When the oldest record in `buf` was appended (the Batch deadline runs from it).
    buf_since: Option<Instant>,
    /// Bytes were written to the active file since its last fsync.
    unsynced: bool,
    /// An fsync failed: cut the file back to `durable_len` before writing again.
    must_truncate: bool,
    /// A segment was created or deleted and the directory not yet fsynced.
    dir_dirty: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
    next_retention: Instant,
    closing: bool,
    /// With `Settings::copies`, segments numbered below this are covered by a durable copy of
    /// the owner's states and may be deleted; without, `u64::MAX`.
    covered: u64,
    /// Between `CopyBegin` and `CopyEnd`: the segment of the first copy once one is written.
    copying: Option<Option<u64>>,
    /// A finished copy (its first segment, its last record's seq) waiting to be durable.
    cover_pending: Option<(u64, u64)>,
    #[cfg(test)]
    fault_flip: bool,
}

impl Writer {
    /// A writer appending to the last of `segs` through `file`, which holds `segs.back().bytes`.
    pub(crate) fn new(
        set: Settings,
        rx: Receiver<Msg>,
        shared: Arc<Shared>,
        waker: Arc<Waker>,
        segs: VecDeque<Seg>,
        file: File,
    ) -> Writer {
        let durable_len = segs.back().map_or(0, |s| s.bytes);
        let covered = if set.copies { 0 } else { u64::MAX };
        let w = Writer {
            set,
            rx,
            shared,
            waker,
            segs,
            file,
            durable_len,
            buf: Vec::new(),
            written: 0,
            buf_seq: 0,
            buf_since: None,
            unsynced: false,
            must_truncate: false,
            dir_dirty: false,
            retry_at: None,
            backoff: MIN_BACKOFF,
            next_retention: Instant::now(),
            closing: false,
            covered,
            copying: None,
            cover_pending: None,
            #[cfg(test)]
            fault_flip: false,
        };
        w.publish_disk_stats();
        w
    }

    /// The thread body: batch, write, sync, repeat until `Close` (or the `Journal` is dropped).
    pub(crate) fn run(mut self) {
        loop {
            let timeout = self.next_due(Instant::now());
            match self.rx.recv_timeout(timeout) {
                Ok(msg) => self.take(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.closing = true,
            }
            // Group commit: everything queued while the last write/fsync ran joins this batch.
            while !self.closing && self.buf.len() < MAX_BATCH_BYTES {
                match self.rx.try_recv() {
                    Ok(msg) => self.take(msg),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => self.closing = true,
                }
            }
            if self.closing {
                self.finish();
                return;
            }
            self.step(Instant::now());
        }
    }

    /// How long the thread may sleep waiting for the next message.
    fn next_due(&self, now: Instant) -> Duration {
        let mut due = self.next_retention;
        // Under Never a directory fsync is only retried at close: not a reason to wake up.
        let dir = self.dir_dirty && !matches!(self.set.fsync, Fsync::Never);
        let pending = !self.buf.is_empty() || self.must_truncate || dir;
        if let Some(retry) = self.retry_at {
            if pending || self.shared.is_failed.load(Relaxed) {
                due = due.min(retry);
            }
        } else if pending {
            due = match self.set.fsync {
                Fsync::Batch(_) => self.batch_due().map_or(due, |b| due.min(b)),
                Fsync::Always | Fsync::Never => now,
            };
        }
        due.saturating_duration_since(now)
    }

    fn batch_due(&self) -> Option<Instant> {
        match self.set.fsync {
            Fsync::Batch(d) => self.buf_since.and_then(|s| s.checked_add(d)),
            _ => None,
        }
    }

    fn may_try(&self, now: Instant) -> bool {
        self.retry_at.is_none_or(|t| now >= t)
    }

    fn active(&mut self) -> &mut Seg {
        self.segs.back_mut().expect("the active segment always exists")
    }

    fn take(&mut self, msg: Msg) {
        let (seq, rec, at) = match msg {
            Msg::Close => {
                self.closing = true;
                return;
            }
            Msg::CopyBegin => {
                self.copying = Some(None);
                return;
            }
            Msg::CopyEnd => {
                let first = self.copying.take().flatten();
                let number = self.active().number;
                match first {
                    // Nothing to copy: whatever came before the active segment holds no state,
                    // and retention may go on at once (not at its next timer, 30 s away).
                    None => {
                        self.covered = self.covered.max(number);
                        self.next_retention = Instant::now();
                    }
                    Some(first) => self.cover_pending = Some((first, self.buf_seq)),
                }
                return;
            }
            Msg::Append { seq, rec, at } => (seq, rec, at),
        };
        let now = Instant::now();
        if self.durable_len + self.buf.len() as u64 >= self.set.segment_bytes && self.may_try(now) {
            // The old segment is written and fsynced before the next one exists (under Never
            // too: one fsync per segment costs nothing and leaves only the active one at risk),
            // so a crash cannot leave a hole followed by newer records.
            if self.flush(true) {
                self.rotate();
            }
        }
        if let Err(e) = encode(&rec, &mut self.buf) {
            // `Journal::append` checked the record; this cannot happen.
            log::error!("journal: dropping record {seq}: {e}");
            return;
        }
        self.buf_seq = seq;
        self.buf_since.get_or_insert(at);
        if let Some(first @ None) = &mut self.copying {
            *first = Some(self.segs.back().map_or(0, |s| s.number));
        }
        let active = self.active();
        active.newest_ms = Some(active.newest_ms.map_or(rec.time_ms, |t| t.max(rec.time_ms)));
    }

    /// After a batch is taken: write and sync as the policy says; retention when due, and as
    /// soon as a copy of the owner's states is durable (the segments before it may go).
    fn step(&mut self, now: Instant) {
        self.write_and_sync(now);
        let durable = self.shared.durable_seq.load(Relaxed);
        if let Some((first, _)) = self.cover_pending.take_if(|&mut (_, seq)| seq <= durable) {
            self.covered = self.covered.max(first);
            self.retention();
        }
    }

    /// Retention on its timer, then the writes and fsyncs the policy asks for now.
    fn write_and_sync(&mut self, now: Instant) {
        if now >= self.next_retention {
            self.retention();
            self.next_retention = now + RETENTION_EVERY;
        }
        if !self.may_try(now) {
            return;
        }
        match self.set.fsync {
            Fsync::Always => {
                self.flush(true);
            }
            Fsync::Never => {
                self.flush(false);
            }
            Fsync::Batch(_) => {
                // A retry after an error is a full write and fsync, whatever the deadline.
                let due = self.batch_due().is_some_and(|due| now >= due);
                if due || self.dir_dirty || self.retry_at.is_some() {
                    self.flush(true);
                } else if self.must_truncate || self.written < self.buf.len() {
                    // Hand the bytes to the OS now; the fsync waits for the deadline.
                    if let Err(e) = self.write_out() {
                        self.fail("writing", e);
                    }
                }
            }
        }
    }

    /// Writes what is pending and, if `sync`, makes it durable; then publishes the new
    /// `durable_seq`. Returns whether everything pending is now durable.
    fn flush(&mut self, sync: bool) -> bool {
        match self.try_flush(sync) {
            Ok(()) => true,
            Err(e) => {
                self.fail(if sync { "writing and syncing" } else { "writing" }, e);
                false
            }
        }
    }

    fn try_flush(&mut self, sync: bool) -> io::Result<()> {
        self.write_out()?;
        if sync && self.dir_dirty {
            sync_dir(&self.set.dir)?;
            self.dir_dirty = false;
        }
        if sync && self.unsynced {
            if let Err(e) = self.sync_file() {
                self.must_truncate = true;
                return Err(e);
            }
            self.unsynced = false;
            self.shared.fsyncs.fetch_add(1, Relaxed);
        }
        // Cleared before the new durable_seq is published, so a loop that sees the new value
        // also sees the journal healthy.
        self.retry_at = None;
        self.backoff = MIN_BACKOFF;
        if self.shared.set_failed(None) {
            log::info!("journal: writes recovered");
        }
        self.publish();
        Ok(())
    }

    /// Writes `buf[written..]` to the file, first cutting an untrusted tail if an fsync failed.
    fn write_out(&mut self) -> io::Result<()> {
        if self.must_truncate {
            self.file.set_len(self.durable_len)?;
            self.must_truncate = false;
            self.written = 0;
            let len = self.durable_len;
            self.active().bytes = len;
        }
        while self.written < self.buf.len() {
            match self.file_write() {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    self.written += n;
                    self.unsynced = true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let len = self.durable_len + self.written as u64;
        self.active().bytes = len;
        Ok(())
    }

    #[cfg(not(test))]
    fn file_write(&mut self) -> io::Result<usize> {
        (&self.file).write(&self.buf[self.written..])
    }

    #[cfg(test)]
    fn file_write(&mut self) -> io::Result<usize> {
        let rest = &self.buf[self.written..];
        if self.shared.faults.load(Relaxed) & fault::WRITE != 0 {
            self.fault_flip = !self.fault_flip;
            if self.fault_flip {
                return (&self.file).write(&rest[..rest.len().min(3)]);
            }
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        (&self.file).write(rest)
    }

    fn sync_file(&mut self) -> io::Result<()> {
        #[cfg(test)]
        if self.shared.faults.load(Relaxed) & fault::SYNC != 0 {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        // fdatasync: enough for appends, the size change is part of the data it flushes.
        self.file.sync_data()
    }

    /// `buf` (all written, and synced if the policy wants) becomes durable: tell the loop.
    fn publish(&mut self) {
        let bytes = self.buf.len();
        if bytes == 0 {
            return;
        }
        self.durable_len += bytes as u64;
        self.written = 0;
        self.buf_since = None;
        if self.buf.capacity() > KEEP_BUF_BYTES {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        self.shared.queued_bytes.fetch_sub(bytes as u64, Relaxed);
        self.shared.durable_seq.store(self.buf_seq, Release);
        self.publish_disk_stats();
        if let Err(e) = self.waker.wake() {
            log::warn!("journal: waking the event loop: {e}");
        }
    }

    fn fail(&mut self, what: &str, e: io::Error) {
        self.shared.write_errors.fetch_add(1, Relaxed);
        self.retry_at = Some(Instant::now() + self.backoff);
        let msg = format!("journal {what} {}: {e}", self.segs.back().map_or(&self.set.dir, |s| &s.path).display());
        if self.shared.set_failed(Some(msg.clone())) {
            log::error!("{msg}; retrying every {MAX_BACKOFF:?} at most");
            // The loop answers 503 to whatever waits on durability: let it know now.
            if let Err(e) = self.waker.wake() {
                log::warn!("journal: waking the event loop: {e}");
            }
        } else {
            log::debug!("{msg} (retry in {:?})", self.backoff);
        }
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    /// Starts a new segment; the caller has flushed the old one.
    fn rotate(&mut self) {
        let number = self.segs.back().map_or(1, |s| s.number + 1);
        let path = self.set.dir.join(file_name(number));
        // 0600 whatever the umask: records hold webhook requests with their secret headers.
        match super::private_file().append(true).create_new(true).open(&path) {
            Ok(file) => {
                log::debug!("journal: rotated to {}", path.display());
                if self.copying.is_none() {
                    self.shared.rotations.fetch_add(1, Relaxed);
                }
                self.file = file;
                self.segs.push_back(Seg { number, path, bytes: 0, newest_ms: None });
                self.durable_len = 0;
                self.unsynced = false;
                self.dir_dirty = true;
                self.sync_dir_now();
                self.retention();
            }
            Err(e) => self.fail("creating segment after", e),
        }
    }

    fn sync_dir_now(&mut self) {
        match sync_dir(&self.set.dir) {
            Ok(()) => self.dir_dirty = false,
            // Retried by the next flush that syncs; durable_seq waits for it.
            Err(e) => log::warn!("journal: fsync of {}: {e}", self.set.dir.display()),
        }
    }

    /// Deletes the oldest closed segments while the journal is over `max_bytes`, or while the
    /// oldest one holds nothing newer than `max_age`. Never the active segment, nor one whose
    /// states no durable copy after it holds yet.
    fn retention(&mut self) {
        let cutoff = self.set.max_age.map(|age| crate::clock::unix_ms().saturating_sub(age.as_millis() as u64));
        let mut total: u64 = self.segs.iter().map(|s| s.bytes).sum();
        let mut deleted = false;
        while self.segs.len() > 1 && self.segs[0].number < self.covered {
            let oldest = &self.segs[0];
            let too_big = total > self.set.max_bytes;
            let too_old = cutoff.is_some_and(|c| oldest.newest_ms.is_none_or(|n| n < c));
            if !too_big && !too_old {
                break;
            }
            match std::fs::remove_file(&oldest.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    log::warn!("journal: deleting {}: {e}", oldest.path.display());
                    break;
                }
            }
            let why = if too_big { "over max_bytes" } else { "older than max_age" };
            log::info!("journal: deleted {} ({} bytes, {why})", oldest.path.display(), oldest.bytes);
            total -= oldest.bytes;
            self.segs.pop_front();
            deleted = true;
        }
        if deleted {
            self.dir_dirty = true;
            self.sync_dir_now();
        }
        self.publish_disk_stats();
    }

    fn publish_disk_stats(&self) {
        self.shared.disk_bytes.store(self.segs.iter().map(|s| s.bytes).sum(), Relaxed);
        self.shared.segments.store(self.segs.len() as u64, Relaxed);
    }

    /// On close: write and fsync everything (whatever the policy), retrying for a while.
    fn finish(&mut self) {
        let deadline = Instant::now() + CLOSE_GRACE;
        while !self.flush(true) {
            let now = Instant::now();
            if now >= deadline {
                log::error!("journal: closing with {} bytes not durable", self.buf.len());
                return;
            }
            std::thread::sleep(
                self.retry_at.map_or(MIN_BACKOFF, |t| t.saturating_duration_since(now)).min(deadline - now),
            );
        }
    }
}
