//! Tests of the journal as a whole: real files in a temporary directory, the writer thread, a
//! real `mio::Poll` woken by its `Waker`, recovery from torn and corrupt tails, retention.

use super::writer::fault;
use super::*;
use mio::{Events, Poll, Token};
use std::path::Path;
use std::sync::atomic::AtomicUsize;

const WAKE: Token = Token(7);
const PATIENCE: Duration = Duration::from_secs(5);

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Relaxed);
        let path = std::env::temp_dir().join(format!("hookcast-journal-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A poll with the journal's waker registered, standing in for the event loop.
struct Loop {
    poll: Poll,
    waker: Arc<Waker>,
}

impl Loop {
    fn new() -> Loop {
        let poll = Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), WAKE).unwrap());
        Loop { poll, waker }
    }

    /// Opens the journal, collecting what the replay hands over.
    fn open(&self, cfg: JournalConfig) -> (Journal, Read) {
        let mut records = Vec::new();
        let (j, r) = Journal::open(cfg, Arc::clone(&self.waker), &mut |rec| records.push(rec)).unwrap();
        assert_eq!(r.records, records.len() as u64);
        (j, Read { records, truncated: r.truncated, skipped: r.skipped, segments: r.segments, bytes: r.bytes })
    }

    /// Polls until `durable_seq() >= seq` (at most 5 s); returns whether the waker fired.
    fn wait_durable(&mut self, j: &Journal, seq: u64) -> bool {
        let deadline = Instant::now() + PATIENCE;
        let mut events = Events::with_capacity(8);
        let mut woke = false;
        loop {
            let now = Instant::now();
            assert!(now < deadline, "durable_seq {} < {seq} after {PATIENCE:?}", j.durable_seq());
            self.poll.poll(&mut events, Some((deadline - now).min(Duration::from_millis(100)))).unwrap();
            woke |= events.iter().any(|e| e.token() == WAKE);
            if j.durable_seq() >= seq {
                return woke;
            }
        }
    }
}

/// A [`Replay`] with the records the callback received.
struct Read {
    records: Vec<Record>,
    truncated: Option<Truncation>,
    skipped: Vec<Truncation>,
    segments: usize,
    bytes: u64,
}

fn config(dir: &Path, fsync: Fsync) -> JournalConfig {
    JournalConfig { fsync, ..JournalConfig::new(dir) }
}

/// Wall-clock time when the tests started, so that `rec(i)` is the same record every time.
fn start_ms() -> u64 {
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *START.get_or_init(crate::clock::unix_ms)
}

fn rec(i: u64) -> Record {
    let kind = [Kind::Event, Kind::Delivery, Kind::Run][i as usize % 3];
    let topic = if i % 7 == 0 { String::new() } else { format!("builds/{}", i % 5) };
    let data = format!("payload {i};").repeat(i as usize % 4).into_bytes();
    Record { kind, id: i, time_ms: start_ms(), topic, data }
}

fn append_all(j: &mut Journal, recs: &[Record]) -> u64 {
    recs.iter().map(|r| j.append(r).unwrap()).last().unwrap_or(0)
}

fn segment_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    segment::list(dir).unwrap()
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn records_survive_reopen_in_order() {
    let tmp = TempDir::new("reopen");
    let l = Loop::new();
    let (mut j, replay) = l.open(config(&tmp.0, Fsync::Always));
    assert!(replay.records.is_empty() && replay.truncated.is_none());
    assert_eq!(replay.segments, 0);
    let first: Vec<Record> = (0..200).map(rec).collect();
    assert_eq!(append_all(&mut j, &first), 200);
    j.close();

    let (mut j, replay) = l.open(config(&tmp.0, Fsync::Always));
    assert_eq!(replay.records, first);
    assert_eq!((replay.truncated, replay.skipped.len(), replay.segments), (None, 0, 1));
    assert_eq!(replay.bytes, first.iter().map(|r| record::encoded_len(r) as u64).sum::<u64>());
    // Sequence numbers are per process; the writer appends to the same segment.
    let second: Vec<Record> = (200..210).map(rec).collect();
    assert_eq!(j.append(&second[0]).unwrap(), 1);
    append_all(&mut j, &second[1..]);
    j.close();

    let (j, replay) = l.open(config(&tmp.0, Fsync::Always));
    assert_eq!(replay.records, [first, second].concat());
    assert_eq!(replay.segments, 1);
    j.close();
}

#[test]
fn a_second_opener_of_the_directory_is_refused_until_the_first_closes() {
    let tmp = TempDir::new("lock");
    let l = Loop::new();
    let (mut j, _) = l.open(config(&tmp.0, Fsync::Always));
    let recs: Vec<Record> = (0..20).map(rec).collect();
    append_all(&mut j, &recs);
    let Err(e) = Journal::open(config(&tmp.0, Fsync::Always), Arc::clone(&l.waker), &mut |_| {}) else {
        panic!("a second journal opened the same directory");
    };
    assert_eq!(e.kind(), std::io::ErrorKind::ResourceBusy);
    let msg = e.to_string();
    assert!(
        msg.contains("in use by another hookcast") && msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    // The refused opener touched nothing: the first journal's records are all there.
    j.close();
    let (j, replay) = l.open(config(&tmp.0, Fsync::Always));
    assert_eq!(replay.records, recs);
    j.close();
}

#[test]
fn durable_seq_advances_and_wakes_under_each_policy() {
    for fsync in [Fsync::Always, Fsync::Batch(Duration::from_millis(20)), Fsync::Never] {
        let tmp = TempDir::new("policy");
        let mut l = Loop::new();
        let (mut j, _) = l.open(config(&tmp.0, fsync));
        let recs: Vec<Record> = (0..500).map(rec).collect();
        let last = append_all(&mut j, &recs);
        assert!(l.wait_durable(&j, last), "{fsync:?}: the waker never fired");
        let stats = j.stats();
        assert_eq!((stats.appended, stats.queued_bytes, stats.write_errors, stats.failed), (500, 0, 0, None));
        assert_eq!(stats.disk_bytes, recs.iter().map(|r| record::encoded_len(r) as u64).sum::<u64>());
        match fsync {
            Fsync::Never => assert_eq!(stats.fsyncs, 0),
            _ => assert!((1..=500).contains(&stats.fsyncs), "{fsync:?}: {} fsyncs", stats.fsyncs),
        }
        // A later, lone append is acknowledged too.
        let seq = j.append(&rec(500)).unwrap();
        l.wait_durable(&j, seq);
        j.close();
        let (j, replay) = l.open(config(&tmp.0, fsync));
        assert_eq!(replay.records.len(), 501, "{fsync:?}");
        j.close();
    }
}

#[test]
fn batch_policy_writes_at_once_and_syncs_by_the_deadline() {
    let tmp = TempDir::new("batch");
    let mut l = Loop::new();
    let d = Duration::from_millis(1500);
    let (mut j, _) = l.open(config(&tmp.0, Fsync::Batch(d)));
    let start = Instant::now();
    let seq = j.append(&rec(1)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // Handed to the OS already, not yet durable under Batch.
    let path = &segment_files(&tmp.0)[0].1;
    assert_eq!(file_len(path), record::encoded_len(&rec(1)) as u64);
    assert_eq!(j.durable_seq(), 0);
    assert!(l.wait_durable(&j, seq));
    assert!(start.elapsed() >= d - Duration::from_millis(100), "synced after {:?}", start.elapsed());
    assert_eq!(j.stats().fsyncs, 1);
    j.close();
}

#[test]
fn oversized_records_are_refused_without_a_sequence_number() {
    let tmp = TempDir::new("limits");
    let mut l = Loop::new();
    let (mut j, _) = l.open(config(&tmp.0, Fsync::Never));
    let mut bad = rec(1);
    bad.topic = "x".repeat(record::MAX_TOPIC_LEN + 1);
    assert_eq!(j.append(&bad), Err(RecordError::TopicTooLong(record::MAX_TOPIC_LEN + 1)));
    assert_eq!(j.append(&rec(2)), Ok(1));
    l.wait_durable(&j, 1);
    j.close();
}

#[test]
fn rotation_at_segment_bytes() {
    let tmp = TempDir::new("rotate");
    let l = Loop::new();
    let cfg = JournalConfig { segment_bytes: 1000, ..config(&tmp.0, Fsync::Always) };
    let (mut j, _) = l.open(cfg.clone());
    let recs: Vec<Record> = (0..300).map(rec).collect();
    append_all(&mut j, &recs);
    j.close();
    let files = segment_files(&tmp.0);
    assert!(files.len() >= 5, "{} segments", files.len());
    let biggest = recs.iter().map(record::encoded_len).max().unwrap() as u64;
    for (i, (n, path)) in files.iter().enumerate() {
        assert_eq!(*n, i as u64 + 1, "numbers count up from 1");
        let len = file_len(path);
        if i + 1 < files.len() {
            assert!((1000..1000 + biggest).contains(&len), "{} has {len} bytes", path.display());
        }
    }
    let (j, replay) = l.open(cfg);
    assert_eq!(replay.records, recs);
    assert_eq!(replay.segments, files.len());
    assert_eq!(j.stats().segments, files.len() as u64);
    j.close();
}

/// Checks that the files left are the newest ones, numbered without gaps, and that replay
/// returns exactly their records: a suffix of `all` starting at a segment boundary.
/// Returns the files (number, size) as they were before that reopen, which may run retention again.
fn assert_oldest_deleted(l: &Loop, cfg: &JournalConfig, all: &[Record]) -> (Vec<(u64, u64)>, Vec<Record>) {
    let files: Vec<(u64, u64)> = segment_files(&cfg.dir).into_iter().map(|(n, p)| (n, file_len(&p))).collect();
    let numbers: Vec<u64> = files.iter().map(|(n, _)| *n).collect();
    let first = numbers[0];
    assert_eq!(numbers, (first..first + numbers.len() as u64).collect::<Vec<_>>());
    let (j, replay) = l.open(cfg.clone());
    j.close();
    let kept = replay.records;
    assert!(!kept.is_empty());
    assert_eq!(kept[..], all[all.len() - kept.len()..], "replay is not a suffix of what was written");
    (files, kept)
}

#[test]
fn retention_by_max_bytes_deletes_oldest_only() {
    let tmp = TempDir::new("maxbytes");
    let l = Loop::new();
    let cfg = JournalConfig { segment_bytes: 1000, max_bytes: 3000, ..config(&tmp.0, Fsync::Never) };
    let (mut j, _) = l.open(cfg.clone());
    let recs: Vec<Record> = (0..400).map(rec).collect();
    append_all(&mut j, &recs);
    j.close();
    let (files, kept) = assert_oldest_deleted(&l, &cfg, &recs);
    assert!(files[0].0 > 1, "nothing was deleted");
    assert!(kept.len() < recs.len());
    // Closed segments fit max_bytes; the active one may add up to one segment.
    let closed: u64 = files[..files.len() - 1].iter().map(|(_, len)| len).sum();
    assert!(closed <= 3000, "{closed} bytes in closed segments");

    // The active segment is never deleted, however small max_bytes is.
    let tmp = TempDir::new("maxbytes-active");
    let cfg = JournalConfig { max_bytes: 10, ..config(&tmp.0, Fsync::Never) };
    let (mut j, _) = l.open(cfg.clone());
    append_all(&mut j, &recs[..20]);
    j.close();
    let (j, replay) = l.open(cfg);
    assert_eq!(replay.records, recs[..20]);
    j.close();
}

#[test]
fn retention_by_max_age_deletes_oldest_only() {
    let tmp = TempDir::new("maxage");
    let l = Loop::new();
    let hour = Duration::from_secs(3600);
    let cfg = JournalConfig { segment_bytes: 1000, max_age: Some(hour), ..config(&tmp.0, Fsync::Never) };
    let now = start_ms();
    let old_ms = now - 2 * 3600 * 1000;
    let mut recs: Vec<Record> = (0..100).map(|i| Record { time_ms: old_ms, ..rec(i) }).collect();
    recs.extend((100..200).map(rec));
    let (mut j, _) = l.open(cfg.clone());
    append_all(&mut j, &recs);
    j.close();
    // Only the segment where old turned into new may still hold old records.
    for (_, path) in &segment_files(&tmp.0) {
        let s = segment::scan(&std::fs::read(path).unwrap());
        let newest = s.records.iter().map(|r| r.time_ms).max().unwrap();
        assert!(newest >= now, "{} should have been deleted", path.display());
    }
    let (files, kept) = assert_oldest_deleted(&l, &cfg, &recs);
    assert!(files[0].0 > 1, "nothing was deleted");
    assert!(kept.len() >= 100, "a new record was deleted");
}

#[test]
fn torn_tail_at_every_offset_of_the_last_record() {
    let tmp = TempDir::new("torn");
    let l = Loop::new();
    let cfg = config(&tmp.0, Fsync::Always);
    let (mut j, _) = l.open(cfg.clone());
    let recs: Vec<Record> = (1..=10).map(rec).collect();
    append_all(&mut j, &recs);
    j.close();
    let path = segment_files(&tmp.0)[0].1.clone();
    let whole = std::fs::read(&path).unwrap();
    let start = whole.len() - record::encoded_len(&recs[9]);
    for cut in start..whole.len() {
        std::fs::write(&path, &whole[..cut]).unwrap();
        let (mut j, replay) = l.open(cfg.clone());
        assert_eq!(replay.records, recs[..9], "cut at {cut}");
        let expect = (cut > start).then(|| Truncation {
            file: path.clone(),
            offset: start as u64,
            cut: (cut - start) as u64,
            reason: "torn record at end",
            aside: None,
        });
        assert_eq!(replay.truncated, expect, "cut at {cut}");
        assert_eq!(file_len(&path), start as u64, "the torn bytes are gone from the file");
        let fresh = Record { id: 1000 + cut as u64, ..rec(3) };
        j.append(&fresh).unwrap();
        j.close();
        let (j, replay) = l.open(cfg.clone());
        assert_eq!(replay.records, [&recs[..9], &[fresh][..]].concat(), "cut at {cut}");
        assert_eq!(replay.truncated, None);
        j.close();
    }
}

/// Issue 12 item 6: a bad frame followed by valid ones is damage, not a torn write. Start-up
/// used to cut the active segment there and lose every acknowledged record after it (150 of
/// 200); now it keeps them all, copies the bad frame aside and goes on appending.
#[test]
fn a_corrupt_frame_mid_segment_keeps_every_later_record() {
    let tmp = TempDir::new("corrupt-mid");
    let l = Loop::new();
    let cfg = config(&tmp.0, Fsync::Always);
    let (mut j, _) = l.open(cfg.clone());
    let recs: Vec<Record> = (1..=200).map(rec).collect();
    append_all(&mut j, &recs);
    j.close();
    let path = segment_files(&tmp.0)[0].1.clone();
    let mut bytes = std::fs::read(&path).unwrap();
    let start: usize = recs[..49].iter().map(record::encoded_len).sum();
    let bad_len = record::encoded_len(&recs[49]);
    bytes[start + record::HEADER_LEN + 3] ^= 0x40; // inside record 50's id
    std::fs::write(&path, &bytes).unwrap();

    for round in 0..2 {
        let (mut j, replay) = l.open(cfg.clone());
        let expect = [&recs[..49], &recs[50..]].concat();
        let appended: Vec<Record> = (0..round).map(|i| rec(1000 + i)).collect();
        assert_eq!(replay.records, [expect, appended].concat(), "round {round}");
        assert_eq!(replay.truncated, None, "nothing is cut");
        let aside = path.with_file_name(format!("{}.damaged-at-{start}", path.file_name().unwrap().to_str().unwrap()));
        let t = Truncation {
            file: path.clone(),
            offset: start as u64,
            cut: bad_len as u64,
            reason: "checksum mismatch",
            aside: Some(aside.clone()),
        };
        assert_eq!(replay.skipped, [t]);
        assert_eq!(std::fs::read(&aside).unwrap(), bytes[start..start + bad_len], "the bad frame is kept aside");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&aside).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(file_len(&path) >= bytes.len() as u64, "the segment was not cut");
        // Appending goes on after the damage; the next start finds the same damage and the new record.
        j.append(&rec(1000 + round)).unwrap();
        j.close();
    }
}

/// A torn tail is still cut (a bad last frame with nothing valid after it), damage before it is
/// skipped and kept, and no copy is kept of the torn bytes.
#[test]
fn damage_then_a_torn_tail_skips_one_and_cuts_the_other() {
    let tmp = TempDir::new("corrupt-then-torn");
    let l = Loop::new();
    let cfg = config(&tmp.0, Fsync::Always);
    let (mut j, _) = l.open(cfg.clone());
    let recs: Vec<Record> = (1..=10).map(rec).collect();
    append_all(&mut j, &recs);
    j.close();
    let path = segment_files(&tmp.0)[0].1.clone();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = |n: usize| recs[..n].iter().map(record::encoded_len).sum::<usize>();
    bytes[at(2) + record::HEADER_LEN] ^= 0xFF; // record 3's kind
    bytes[at(9) + record::HEADER_LEN + 1] ^= 0x01; // record 10: a torn or damaged last frame
    std::fs::write(&path, &bytes).unwrap();

    let (j, replay) = l.open(cfg.clone());
    j.close();
    assert_eq!(replay.records, [&recs[..2], &recs[3..9]].concat());
    assert_eq!(
        replay.skipped.iter().map(|t| (t.offset, t.cut)).collect::<Vec<_>>(),
        [(at(2) as u64, (at(3) - at(2)) as u64)]
    );
    let t = replay.truncated.expect("the tail is cut");
    assert_eq!(
        (t.offset, t.cut, t.reason, t.aside),
        (at(9) as u64, (bytes.len() - at(9)) as u64, "checksum mismatch", None)
    );
    assert_eq!(file_len(&path), at(9) as u64);
    let asides: Vec<_> = std::fs::read_dir(&tmp.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains("damaged"))
        .collect();
    assert_eq!(asides, [format!("{}.damaged-at-{}", segment::file_name(1), at(2))], "no copy of the torn tail");
}

/// Damage in an older (closed) segment: the records before and after it are kept, the file is
/// left as it is, and its damaged end is kept aside too.
#[test]
fn corrupt_bytes_in_an_older_segment_keep_the_rest_of_it() {
    let tmp = TempDir::new("corrupt-old");
    let l = Loop::new();
    let cfg = JournalConfig { segment_bytes: 300, ..config(&tmp.0, Fsync::Never) };
    let (mut j, _) = l.open(cfg.clone());
    let recs: Vec<Record> = (1..=60).map(rec).collect();
    append_all(&mut j, &recs);
    j.close();
    let files = segment_files(&tmp.0);
    assert!(files.len() >= 3);
    let path = files[0].1.clone();
    let mut bytes = std::fs::read(&path).unwrap();
    let in_first = segment::scan(&bytes).records.len();
    assert!(in_first >= 3);
    let one = record::encoded_len(&recs[0]);
    bytes[one + record::HEADER_LEN + 1] ^= 0xFF; // record 2
    bytes.truncate(bytes.len() - 1); // and a damaged end: closed segments are never torn
    std::fs::write(&path, &bytes).unwrap();

    let (j, replay) = l.open(cfg);
    j.close();
    let before_last: usize = recs[..in_first - 1].iter().map(record::encoded_len).sum();
    assert_eq!(replay.records, [&recs[..1], &recs[2..in_first - 1], &recs[in_first..]].concat());
    assert_eq!(replay.truncated, None);
    let got: Vec<_> = replay.skipped.iter().map(|t| (t.offset, t.aside.is_some())).collect();
    assert_eq!(got, [(one as u64, true), (before_last as u64, true)]);
    assert_eq!(file_len(&path), bytes.len() as u64, "older segments are left as they are");
}

/// Replay hands records over as it reads them, segment by segment and chunk by chunk, instead
/// of reading the journal into memory first (issue 12 item 10): bytes changed on disk after
/// the first record was handed over are what the replay sees.
#[test]
fn replay_reads_as_it_hands_records_over() {
    let tmp = TempDir::new("streaming");
    let l = Loop::new();
    let cfg = JournalConfig { segment_bytes: 4 << 20, ..config(&tmp.0, Fsync::Never) };
    let (mut j, _) = l.open(cfg.clone());
    let big = |i: u64| Record { data: vec![i as u8; 64 << 10], ..rec(i) };
    let recs: Vec<Record> = (0..150).map(big).collect();
    append_all(&mut j, &recs);
    j.close();
    let files = segment_files(&tmp.0);
    assert!(files.len() >= 2, "{} segments", files.len());
    let first = files[0].1.clone();
    let last = files.last().unwrap().1.clone();
    // A frame well past the first read chunk of the first segment.
    let frame40: u64 = recs[..40].iter().map(|r| record::encoded_len(r) as u64).sum();
    let far = frame40 + record::HEADER_LEN as u64 + 2;
    let mut seen = 0;
    let (j, replay) = Journal::open(cfg, Arc::clone(&l.waker), &mut |_| {
        seen += 1;
        if seen == 1 {
            use std::os::unix::fs::FileExt;
            let f = OpenOptions::new().write(true).open(&first).unwrap();
            f.write_at(&[0xAA], far).unwrap();
            let f = OpenOptions::new().write(true).open(&last).unwrap();
            f.set_len(file_len(&last) - 1).unwrap();
        }
    })
    .unwrap();
    j.close();
    assert_eq!(replay.skipped.len(), 1, "the first segment was read after the first record was handed over");
    assert_eq!((replay.skipped[0].file.clone(), replay.skipped[0].offset), (first, frame40));
    assert_eq!(replay.truncated.map(|t| t.file), Some(last), "the last segment was read after that");
    assert_eq!(replay.records, 148);
}

#[test]
fn zero_length_last_segment() {
    let tmp = TempDir::new("empty-last");
    let mut l = Loop::new();
    let cfg = config(&tmp.0, Fsync::Always);
    let (mut j, _) = l.open(cfg.clone());
    append_all(&mut j, &[rec(1), rec(2)]);
    j.close();
    let second = tmp.0.join(segment::file_name(2));
    std::fs::write(&second, b"").unwrap();
    let (mut j, replay) = l.open(cfg.clone());
    assert_eq!((replay.records.len(), replay.segments, replay.truncated), (2, 2, None));
    let seq = j.append(&rec(3)).unwrap();
    l.wait_durable(&j, seq);
    assert_eq!(file_len(&second), record::encoded_len(&rec(3)) as u64, "appends go to the last segment");
    j.close();
    let (j, replay) = l.open(cfg);
    assert_eq!(replay.records, vec![rec(1), rec(2), rec(3)]);
    j.close();
}

#[test]
fn write_and_fsync_errors_stall_then_recover_without_damage() {
    for fsync in [Fsync::Always, Fsync::Batch(Duration::from_millis(20)), Fsync::Never] {
        write_errors_under(fsync);
    }
}

fn write_errors_under(fsync: Fsync) {
    let tmp = TempDir::new("faults");
    let mut l = Loop::new();
    let cfg = config(&tmp.0, fsync);
    let (mut j, _) = l.open(cfg.clone());
    let recs: Vec<Record> = (1..=15).map(rec).collect();
    let seq = append_all(&mut j, &recs[..5]);
    l.wait_durable(&j, seq);

    let mut cases = vec![(fault::WRITE, "No space left", 5..10), (fault::SYNC, "Input/output error", 10..15)];
    if fsync == Fsync::Never {
        cases[1].0 = fault::WRITE; // no fsyncs to fail
        cases[1].1 = "No space left";
    }
    for (faults, msg, batch) in cases {
        j.set_faults(faults);
        let errors_before = j.stats().write_errors;
        let seq = append_all(&mut j, &recs[batch]);
        // The loop hears of the failure at once (to answer 503), not at the next success.
        // (The writer sets the state before it wakes, so a wake-up seen after the appends with
        // the state still clear can only be an earlier one.)
        let mut events = Events::with_capacity(8);
        let deadline = Instant::now() + PATIENCE;
        loop {
            assert!(Instant::now() < deadline, "no wake-up for the failure");
            l.poll.poll(&mut events, Some(Duration::from_millis(100))).unwrap();
            if events.iter().any(|e| e.token() == WAKE) && j.is_failed() {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(600));
        let stats = j.stats();
        assert_eq!(j.durable_seq(), seq - 5, "{fsync:?}: durable_seq must not move while writes fail");
        assert!(j.is_failed());
        assert!(stats.failed.as_deref().unwrap_or("").contains(msg), "{:?}", stats.failed);
        let errors = stats.write_errors - errors_before;
        assert!((1..=10).contains(&errors), "{errors} errors in 600 ms: retries must back off");
        assert!(stats.queued_bytes > 0);
        j.set_faults(0);
        l.wait_durable(&j, seq);
        assert!(!j.is_failed());
        assert_eq!(j.stats().failed, None);
    }
    j.close();
    // Partial writes were continued, the unsynced tail rewritten once: every record exactly once.
    let (j, replay) = l.open(cfg);
    assert_eq!(replay.records, recs, "{fsync:?}");
    assert_eq!(replay.truncated, None);
    j.close();
}

/// With `copies`, retention keeps every segment until the owner's copy after it is durable;
/// then the segments before the copy go, and the copy is what replay finds of them.
#[test]
fn retention_waits_for_a_durable_copy_of_the_states() {
    let tmp = TempDir::new("copies");
    let mut l = Loop::new();
    let cfg = JournalConfig { segment_bytes: 1000, max_bytes: 3000, copies: true, ..config(&tmp.0, Fsync::Always) };
    let (mut j, _) = l.open(cfg.clone());
    let recs: Vec<Record> = (0..400).map(rec).collect();
    let last = append_all(&mut j, &recs);
    l.wait_durable(&j, last);
    assert!(j.rotations() > 3, "rotated {} times", j.rotations());
    assert_eq!(segment_files(&tmp.0)[0].0, 1, "nothing goes before a copy");
    let state = Record { kind: Kind::State, id: 7, time_ms: start_ms(), topic: "bell".into(), data: b"x".to_vec() };
    let rotations = j.rotations();
    let seq = j.copy_states([state.clone()]);
    l.wait_durable(&j, seq);
    assert_eq!(j.rotations(), rotations, "the copy's own rotation asks for no copy");
    // Retention runs right after the flush that made the copy durable, on the writer thread.
    let deadline = Instant::now() + PATIENCE;
    while segment_files(&tmp.0)[0].0 == 1 {
        assert!(Instant::now() < deadline, "segments before the copy not deleted");
        std::thread::yield_now();
    }
    j.close();
    let (j, replay) = l.open(cfg);
    assert!(replay.records.contains(&state), "the copy outlives the segments it covers");
    j.close();
}

/// An empty copy (no states) lets retention go on at once, not at its next timer: a daemon
/// without retained events deletes old segments as promptly as before copies existed.
#[test]
fn an_empty_copy_frees_the_segments_before_it_at_once() {
    let tmp = TempDir::new("copies-empty");
    let mut l = Loop::new();
    let cfg = JournalConfig { segment_bytes: 1000, max_bytes: 3000, copies: true, ..config(&tmp.0, Fsync::Always) };
    let (mut j, _) = l.open(cfg);
    let recs: Vec<Record> = (0..400).map(rec).collect();
    let last = append_all(&mut j, &recs);
    l.wait_durable(&j, last);
    assert_eq!(segment_files(&tmp.0)[0].0, 1, "nothing goes before a copy");
    j.copy_states([]);
    // Well under the writer's 30 s retention timer.
    let deadline = Instant::now() + Duration::from_secs(5);
    while segment_files(&tmp.0)[0].0 == 1 {
        assert!(Instant::now() < deadline, "an empty copy did not free the old segments");
        std::thread::sleep(Duration::from_millis(5));
    }
    j.close();
}
