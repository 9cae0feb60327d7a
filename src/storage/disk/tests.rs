//! The disk store alone: round trips across reopen, recovery of torn and damaged files,
//! refused writes, power loss (amid concurrent writers too), the journal's group commit and
//! replay, format versions, memory bounds and the store lock.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use super::files::sim::SimDisk;
use super::files::{FileLayer, Os};
use super::segment::{self, FILE_HEADER, RECORD_HEADER};
use super::{DiskStore, RecoveryReport};
use crate::engine::Errno;
use crate::storage::{Log, LogId, LogKind, Message, Placement, Stamp, Store, SyncPolicy};

/// A fresh directory, deleted when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("mqfs-disk-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let dir = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const STREAM: LogId = LogId { node: 7, kind: LogKind::Stream };
/// A small journal, so that tests go round it (its laps end, checkpointed) often.
const JOURNAL_BYTES: u64 = 64 << 10;

fn open(dir: &Path, layer: Arc<dyn FileLayer>, segment_bytes: u64) -> (DiskStore, RecoveryReport) {
    let (store, report) =
        DiskStore::open_on(dir, layer, segment_bytes, JOURNAL_BYTES).unwrap_or_else(|e| panic!("{e}"));
    store.start().expect("the sync thread starts");
    (store, report)
}

fn log(store: &DiskStore, policy: SyncPolicy) -> Box<dyn Log> {
    store.log(STREAM, Placement::Disk, policy).expect("a disk log")
}

fn message(seq: u64) -> Vec<u8> {
    format!("message {seq} ").repeat(1 + seq as usize % 5).into_bytes()
}

fn stamp(seq: u64) -> Stamp {
    let time = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_000_000_000 + seq);
    Stamp { time, group_seq: seq * 2, pid: 10 + seq as u32, uid: 1000, gid: 100 }
}

fn append(log: &mut dyn Log, seq: u64) {
    assert_eq!(log.append(Message::Owned(message(seq)), &stamp(seq)), Ok(seq));
}

/// Waits for `log.sync` to answer.
fn sync(log: &dyn Log) -> Result<(), Errno> {
    let (tx, rx) = mpsc::channel();
    log.sync(Box::new(move |result| tx.send(result).expect("the test waits")));
    rx.recv_timeout(Duration::from_secs(10)).expect("sync answered")
}

fn read(log: &dyn Log, position: u64, size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    log.read_at(position, size, &mut out).expect("read_at");
    out
}

/// Every retained message, stamp and byte is what was appended.
fn check(log: &dyn Log, first: u64, next: u64) {
    assert_eq!((log.first_seq(), log.next_seq()), (first, next));
    let mut all = Vec::new();
    for seq in first..next {
        assert_eq!(log.get(seq).expect("readable").as_deref(), Some(&message(seq)[..]), "message {seq}");
        assert_eq!(log.stamp(seq), Ok(Some(stamp(seq))));
        all.extend(message(seq));
    }
    assert_eq!(log.get(next), Ok(None));
    assert_eq!(log.bytes(), all.len() as u64);
    assert_eq!(read(log, log.start(), usize::MAX), all);
    // A read from the middle of some message, across segments.
    let middle = all.len() / 3;
    assert_eq!(read(log, log.start() + middle as u64, 1000), all[middle..(middle + 1000).min(all.len())]);
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("logs/7"))
        .expect("the log's directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

#[test]
fn history_survives_reopen_with_its_numbers_and_positions() {
    let scratch = Scratch::new();
    let end;
    {
        let (store, report) = open(&scratch.0, Arc::new(Os), 4096);
        assert_eq!((report.logs, report.messages), (0, 0));
        let mut log = log(&store, SyncPolicy::Never);
        (0..300).for_each(|seq| append(&mut *log, seq));
        sync(&*log).expect("segment files and their directory synced");
        let popped: usize = (0..120).map(|_| log.pop_front().expect("a message")).sum();
        assert_eq!(popped, (0..120).map(|seq| message(seq).len()).sum::<usize>());
        check(&*log, 120, 300);
        end = log.end();
        assert!(segment_files(&scratch.0).len() > 3, "the test spans several segments");
        assert!(
            !segment_files(&scratch.0)[0].ends_with(segment::file_name(0)),
            "wholly popped segments are deleted"
        );
    }
    let (store, report) = open(&scratch.0, Arc::new(Os), 4096);
    assert_eq!((report.logs, report.messages, report.cut), (1, 180, 0));
    assert!(report.damaged.is_empty());
    let mut log = log(&store, SyncPolicy::Never);
    check(&*log, 120, 300);
    assert_eq!(log.end(), end);
    append(&mut *log, 300);
    log.clear();
    log.skip(11);
    drop(log);
    drop(store);
    let (store, _) = open(&scratch.0, Arc::new(Os), 4096);
    let log = self::log(&store, SyncPolicy::Never);
    assert_eq!((log.first_seq(), log.next_seq()), (302, 302));
    assert_eq!(log.end(), end + message(300).len() as u64 + 11);
    assert!(segment_files(&scratch.0).is_empty());
    assert_eq!(store.log(STREAM, Placement::Disk, SyncPolicy::Never).err(), Some(Errno(libc::EBUSY)));
}

#[test]
fn a_torn_tail_is_cut_and_reported() {
    let scratch = Scratch::new();
    {
        let (store, _) = open(&scratch.0, Arc::new(Os), 1 << 20);
        let mut log = log(&store, SyncPolicy::Never);
        (0..10).for_each(|seq| append(&mut *log, seq));
    }
    // A record cut short by a crash: its header and half its payload.
    let last = segment_files(&scratch.0).pop().expect("a segment");
    let mut torn =
        super::segment::RecordHeader { len: 100, seq: 10, stamp: stamp(10) }.encode(&[7; 100]).to_vec();
    torn.extend([7; 50]);
    let mut bytes = std::fs::read(&last).expect("segment");
    let good = bytes.len();
    bytes.extend(&torn);
    std::fs::write(&last, &bytes).expect("tear");
    let (store, report) = open(&scratch.0, Arc::new(Os), 1 << 20);
    assert_eq!((report.messages, report.cut), (10, torn.len() as u64));
    assert!(report.to_string().contains(&format!("{} bytes of torn tails cut", torn.len())), "{report}");
    assert_eq!(std::fs::metadata(&last).expect("segment").len(), good as u64);
    let mut log = log(&store, SyncPolicy::Never);
    append(&mut *log, 10);
    check(&*log, 0, 11);
}

#[test]
fn damage_in_a_sealed_segment_ends_the_log_and_is_moved_aside() {
    let scratch = Scratch::new();
    {
        let (store, _) = open(&scratch.0, Arc::new(Os), 1024);
        let mut log = log(&store, SyncPolicy::Never);
        (0..60).for_each(|seq| append(&mut *log, seq));
    }
    let files = segment_files(&scratch.0);
    assert!(files.len() >= 3);
    // Garbage in the middle of the first segment's third record.
    let mut bytes = std::fs::read(&files[0]).expect("segment");
    let third =
        FILE_HEADER as usize + (0..2).map(|s| RECORD_HEADER as usize + message(s).len()).sum::<usize>();
    bytes[third + RECORD_HEADER as usize + 2] ^= 0xff;
    std::fs::write(&files[0], &bytes).expect("damage");
    let (store, report) = open(&scratch.0, Arc::new(Os), 1024);
    let line = report.to_string();
    assert!(line.contains(&format!("{} at offset {third}", files[0].display())), "{line}");
    assert_eq!(report.messages, 2);
    let damaged = scratch.0.join("damaged/7");
    let moved = std::fs::read(damaged.join(files[0].file_name().expect("named"))).expect("moved bytes");
    assert_eq!(moved, bytes[third..]);
    for later in &files[1..] {
        assert!(damaged.join(later.file_name().expect("named")).exists(), "{later:?} moved");
        assert!(!later.exists());
    }
    let mut log = log(&store, SyncPolicy::Never);
    check(&*log, 0, 2);
    append(&mut *log, 2);
    check(&*log, 0, 3);
}

#[test]
fn a_refused_write_appends_nothing_and_the_log_goes_on() {
    let scratch = Scratch::new();
    let sim = Arc::new(SimDisk::default());
    {
        let (store, _) = open(&scratch.0, sim.clone(), 4096);
        let mut log = log(&store, SyncPolicy::Never);
        (0..40).for_each(|seq| append(&mut *log, seq));
        let sizes: Vec<u64> =
            segment_files(&scratch.0).iter().map(|f| f.metadata().expect("size").len()).collect();
        sim.refuse_writes(Some(libc::ENOSPC));
        assert_eq!(log.append(Message::Borrowed(b"refused"), &stamp(40)), Err(Errno::ENOSPC));
        // The next one would need a new segment: refused too, and no file left behind.
        assert_eq!(log.append(Message::Owned(vec![1; 5000]), &stamp(40)), Err(Errno::ENOSPC));
        let after: Vec<u64> =
            segment_files(&scratch.0).iter().map(|f| f.metadata().expect("size").len()).collect();
        assert_eq!(after, sizes);
        check(&*log, 0, 40);
        sim.refuse_writes(None);
        append(&mut *log, 40);
        check(&*log, 0, 41);
    }
    let (store, report) = open(&scratch.0, Arc::new(Os), 4096);
    assert_eq!((report.messages, report.cut), (41, 0));
    check(&*log(&store, SyncPolicy::Never), 0, 41);
}

#[test]
fn after_power_loss_every_synced_message_is_there_once_in_order() {
    for seed in 1..=20 {
        let scratch = Scratch::new();
        let sim = Arc::new(SimDisk::default());
        let synced = 30 + seed;
        {
            let (store, _) = open(&scratch.0, sim.clone(), 2048);
            let mut log = log(&store, SyncPolicy::Always);
            for seq in 0..synced {
                append(&mut *log, seq);
                sync(&*log).expect("synced");
            }
            // Appended, never synced: may be lost, or torn.
            (synced..synced + 10).for_each(|seq| append(&mut *log, seq));
            sim.power_loss(seed);
        }
        let (store, report) = open(&scratch.0, Arc::new(Os), 2048);
        assert!(report.damaged.is_empty(), "seed {seed}: {report}");
        let log = log(&store, SyncPolicy::Never);
        assert!(log.next_seq() >= synced, "seed {seed}: {} of {synced} synced messages", log.next_seq());
        check(&*log, 0, log.next_seq());
    }
}

/// Appends message after message to log `node` (under `sync always`), each waiting for its
/// sync, counting in `acked` those whose sync answered Ok, until one fails or `count` are.
fn write_synced(store: &DiskStore, node: u64, count: u64, acked: &AtomicU64) {
    let id = LogId { node, kind: LogKind::Stream };
    let mut log = store.log(id, Placement::Disk, SyncPolicy::Always).expect("a disk log");
    for seq in 0..count {
        if log.append(Message::Owned(message(seq)), &stamp(seq)).is_err() || sync(&*log).is_err() {
            return;
        }
        acked.store(seq + 1, Ordering::SeqCst);
    }
}

#[test]
fn writers_to_many_logs_share_one_fdatasync_of_the_journal() {
    let scratch = Scratch::new();
    let sim = Arc::new(SimDisk::slow(Duration::from_millis(2)));
    let (store, _) = open(&scratch.0, sim.clone(), 1 << 20);
    let before = sim.syncs();
    let acked: Vec<AtomicU64> = (0..8).map(|_| AtomicU64::new(0)).collect();
    std::thread::scope(|scope| {
        for (node, acked) in (10..).zip(&acked) {
            let store = &store;
            scope.spawn(move || write_synced(store, node, 25, acked));
        }
    });
    assert!(acked.iter().all(|a| a.load(Ordering::SeqCst) == 25));
    // A round syncing each log's segment file would make one fdatasync per write (a writer
    // has one write in each round); one of the journal serves them all.
    let made = sim.syncs() - before;
    assert!(made < 8 * 25 / 2, "{made} fdatasyncs for {} synced writes", 8 * 25);
}

#[test]
fn after_power_loss_amid_writers_every_acknowledged_message_is_there_once_in_order() {
    for seed in 1..=12 {
        let scratch = Scratch::new();
        let sim = Arc::new(SimDisk::slow(Duration::from_micros(200)));
        let acked: Vec<AtomicU64> = (0..8).map(|_| AtomicU64::new(0)).collect();
        {
            // Small segments and a small journal: segments are made and laps end meanwhile.
            let (store, _) = open(&scratch.0, sim.clone(), 2048);
            std::thread::scope(|scope| {
                for (node, acked) in (10..).zip(&acked) {
                    let store = &store;
                    scope.spawn(move || write_synced(store, node, u64::MAX, acked));
                }
                let total = || acked.iter().map(|a| a.load(Ordering::SeqCst)).sum::<u64>();
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while total() < 400 + 100 * seed {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "seed {seed}: writers stalled at {}",
                        total()
                    );
                    std::thread::yield_now();
                }
                sim.power_loss_reordered(seed);
            });
        }
        let (store, report) = open(&scratch.0, Arc::new(Os), 2048);
        for (node, acked) in (10..).zip(&acked) {
            let log = store
                .log(LogId { node, kind: LogKind::Stream }, Placement::Disk, SyncPolicy::Never)
                .expect("log");
            let acked = acked.load(Ordering::SeqCst);
            assert!(
                log.next_seq() >= acked,
                "seed {seed}: log {node} has {} of {acked}: {report}",
                log.next_seq()
            );
            check(&*log, 0, log.next_seq());
        }
    }
}

#[test]
fn a_hole_the_journal_covers_is_filled_from_it_not_taken_for_damage() {
    let scratch = Scratch::new();
    {
        let (store, _) = open(&scratch.0, Arc::new(Os), 1 << 20);
        let mut log = log(&store, SyncPolicy::Always);
        for seq in 0..20 {
            append(&mut *log, seq);
            sync(&*log).expect("synced");
        }
    }
    // A page of the segment never written back, a later one written.
    let file = &segment_files(&scratch.0)[0];
    let mut bytes = std::fs::read(file).expect("segment");
    let fifth =
        FILE_HEADER as usize + (0..5).map(|s| RECORD_HEADER as usize + message(s).len()).sum::<usize>();
    bytes[fifth..fifth + 100].fill(0);
    std::fs::write(file, &bytes).expect("hole");
    let (store, report) = open(&scratch.0, Arc::new(Os), 1 << 20);
    assert!(report.damaged.is_empty(), "{report}");
    assert_eq!(report.replayed, 15, "{report}");
    check(&*log(&store, SyncPolicy::Never), 0, 20);
}

#[test]
fn a_log_removed_and_made_again_is_not_given_its_old_records() {
    let scratch = Scratch::new();
    let sim = Arc::new(SimDisk::default());
    {
        let (store, _) = open(&scratch.0, sim.clone(), 1 << 20);
        let mut old = log(&store, SyncPolicy::Always);
        for seq in 0..10 {
            append(&mut *old, seq);
            sync(&*old).expect("synced");
        }
        drop(old);
        store.remove_log(STREAM);
        let mut new = log(&store, SyncPolicy::Always);
        for seq in 0..3 {
            append(&mut *new, seq);
            sync(&*new).expect("synced");
        }
        sim.power_loss(0);
    }
    let (store, _) = open(&scratch.0, Arc::new(Os), 1 << 20);
    check(&*log(&store, SyncPolicy::Never), 0, 3);
}

#[test]
fn a_version_1_store_is_read_and_upgraded_and_a_later_one_refused() {
    let scratch = Scratch::new();
    {
        let (store, _) = open(&scratch.0, Arc::new(Os), 4096);
        let mut log = log(&store, SyncPolicy::Never);
        (0..10).for_each(|seq| append(&mut *log, seq));
    }
    std::fs::write(scratch.0.join("format"), super::FORMAT_1).expect("version 1");
    std::fs::remove_file(scratch.0.join("journal")).expect("version 1 had no journal");
    {
        let (store, report) = open(&scratch.0, Arc::new(Os), 4096);
        assert_eq!(report.messages, 10);
        check(&*log(&store, SyncPolicy::Never), 0, 10);
    }
    assert_eq!(std::fs::read_to_string(scratch.0.join("format")).expect("format"), super::FORMAT);
    assert!(scratch.0.join("journal").exists());
    std::fs::write(scratch.0.join("format"), "mqfs store\nversion 3\n").expect("a later version");
    let error = DiskStore::open(&scratch.0).err().expect("refused");
    assert!(error.to_string().contains("version 3"), "{error}");
}

#[test]
fn a_large_log_holds_little_memory_and_reads_back_intact() {
    let scratch = Scratch::new();
    let (store, _) = open(&scratch.0, Arc::new(Os), 1 << 20);
    let mut log = log(&store, SyncPolicy::Never);
    let chunk = |seq: u64| vec![(seq % 251) as u8; 3000 + (seq % 97) as usize];
    let mut total = 0;
    let mut seq = 0;
    while total < 200 << 20 {
        let bytes = chunk(seq);
        total += bytes.len();
        let (before, growth) = (log.allocated(), log.growth(bytes.len()));
        assert_eq!(log.append(Message::Owned(bytes), &Stamp::default()), Ok(seq));
        assert!(log.allocated() <= before + growth, "message {seq} allocated more than its growth");
        seq += 1;
    }
    // The cache and 4 bytes a message (the last segment's index may hold room for more).
    let most = super::log::CACHE_BYTES as u64 + 4 * (seq + (1 << 20) / 3000);
    assert!(log.allocated() <= most, "{} bytes held for {total} appended", log.allocated());
    for s in 0..seq {
        assert_eq!(log.get(s).expect("readable").as_deref(), Some(&chunk(s)[..]), "message {s}");
    }
    assert_eq!(log.bytes(), total as u64);
}

#[test]
fn a_second_open_fails_while_the_store_is_open() {
    let scratch = Scratch::new();
    let (first, _) = open(&scratch.0, Arc::new(Os), 4096);
    let error = DiskStore::open(&scratch.0).err().expect("refused");
    assert_eq!(
        error.to_string(),
        format!("store {} is in use by process {}", scratch.0.display(), std::process::id())
    );
    drop(first);
    DiskStore::open(&scratch.0).expect("free again");
}

#[test]
fn a_directory_that_is_not_a_store_is_refused() {
    let scratch = Scratch::new();
    std::fs::create_dir_all(&scratch.0).expect("dir");
    std::fs::write(scratch.0.join("precious"), "data").expect("file");
    let error = DiskStore::open(&scratch.0).err().expect("refused");
    assert!(error.to_string().contains("is not an mqfs store"), "{error}");
}

#[test]
fn unappend_takes_the_last_record_back_for_good() {
    let scratch = Scratch::new();
    {
        let (store, _) = open(&scratch.0, Arc::new(Os), 256);
        let mut log = log(&store, SyncPolicy::Never);
        (0..5).for_each(|seq| append(&mut *log, seq));
        let files = segment_files(&scratch.0).len();
        // The next message needs a segment of its own; taking it back deletes that file.
        assert_eq!(log.append(Message::Owned(vec![9; 300]), &stamp(5)), Ok(5));
        assert_eq!(segment_files(&scratch.0).len(), files + 1);
        log.unappend();
        assert_eq!(segment_files(&scratch.0).len(), files);
        log.unappend();
        check(&*log, 0, 4);
        assert_eq!(log.end(), (0..4).map(|seq| message(seq).len() as u64).sum::<u64>());
        append(&mut *log, 4);
        log.unappend();
    }
    let (store, report) = open(&scratch.0, Arc::new(Os), 256);
    assert_eq!((report.messages, report.cut), (4, 0));
    check(&*log(&store, SyncPolicy::Never), 0, 4);
}

#[test]
fn a_message_read_back_with_a_bad_checksum_is_an_eio() {
    let scratch = Scratch::new();
    let (store, _) = open(&scratch.0, Arc::new(Os), 1 << 20);
    let mut log = log(&store, SyncPolicy::Never);
    append(&mut *log, 0);
    // Push message 0 out of the cache, so that it is read from its file.
    assert_eq!(log.append(Message::Owned(vec![1; super::log::CACHE_BYTES + 1]), &stamp(1)), Ok(1));
    assert_eq!(log.get(0).expect("readable").as_deref(), Some(&message(0)[..]));
    let file = &segment_files(&scratch.0)[0];
    let mut bytes = std::fs::read(file).expect("segment");
    bytes[(FILE_HEADER + RECORD_HEADER) as usize] ^= 1;
    std::fs::write(file, &bytes).expect("damage");
    assert_eq!(log.get(0), Err(Errno::EIO));
    assert_eq!(log.stamp(0), Err(Errno::EIO));
    // The newest messages come from memory: a reader right behind the writer reads no file.
    append(&mut *log, 2);
    std::fs::write(file, b"").expect("empty the file");
    assert_eq!(log.get(2).expect("cached").as_deref(), Some(&message(2)[..]));
}

#[test]
fn an_interval_log_is_synced_on_its_own() {
    let scratch = Scratch::new();
    let sim = Arc::new(SimDisk::default());
    {
        let (store, _) = open(&scratch.0, sim.clone(), 1 << 20);
        let mut log = log(&store, SyncPolicy::Never);
        (0..10).for_each(|seq| append(&mut *log, seq));
        // One more append under the interval policy has the file, all ten with it, synced.
        log.set_policy(SyncPolicy::Interval(Duration::from_millis(20)));
        let before = sim.syncs();
        append(&mut *log, 10);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sim.syncs() == before {
            assert!(std::time::Instant::now() < deadline, "no sync within the interval");
            std::thread::yield_now();
        }
        sim.power_loss(0);
    }
    let (store, _) = open(&scratch.0, Arc::new(Os), 1 << 20);
    check(&*log(&store, SyncPolicy::Never), 0, 11);
}

#[test]
fn a_closed_log_is_on_stable_storage_whatever_its_policy() {
    let scratch = Scratch::new();
    let sim = Arc::new(SimDisk::default());
    {
        let (store, _) = open(&scratch.0, sim.clone(), 512);
        let mut log = log(&store, SyncPolicy::Never);
        (0..30).for_each(|seq| append(&mut *log, seq));
        (0..12).for_each(|_| assert!(log.pop_front().is_some()));
    }
    sim.power_loss(0);
    let (store, report) = open(&scratch.0, Arc::new(Os), 512);
    assert_eq!((report.messages, report.cut), (18, 0));
    check(&*log(&store, SyncPolicy::Never), 12, 30);
}

#[test]
fn a_removed_log_leaves_nothing_behind() {
    let scratch = Scratch::new();
    let (store, _) = open(&scratch.0, Arc::new(Os), 4096);
    let mut log = log(&store, SyncPolicy::Never);
    append(&mut *log, 0);
    drop(log);
    store.remove_log(STREAM);
    assert!(!scratch.0.join("logs/7").exists());
    let log = self::log(&store, SyncPolicy::Never);
    assert_eq!((log.first_seq(), log.next_seq()), (0, 0));
}

#[test]
fn a_gap_between_segments_is_damage_and_nothing_after_it_is_deleted() {
    let scratch = Scratch::new();
    {
        let (store, _) = open(&scratch.0, Arc::new(Os), 1024);
        let mut log = log(&store, SyncPolicy::Never);
        (0..60).for_each(|seq| append(&mut *log, seq));
    }
    let files = segment_files(&scratch.0);
    std::fs::remove_file(&files[1]).expect("lose a segment");
    let (store, report) = open(&scratch.0, Arc::new(Os), 1024);
    assert!(report.to_string().contains(&format!("{} at offset 0", files[2].display())), "{report}");
    for later in &files[2..] {
        assert!(
            scratch.0.join("damaged/7").join(later.file_name().expect("named")).exists(),
            "{later:?} kept"
        );
    }
    let log = log(&store, SyncPolicy::Never);
    let first_segment = segment::parse_name(&files[1].file_name().expect("named").to_string_lossy());
    check(&*log, 0, first_segment.expect("a segment name"));
}

#[test]
fn a_segment_file_that_belongs_elsewhere_is_moved_aside_not_cut() {
    let scratch = Scratch::new();
    {
        let (store, _) = open(&scratch.0, Arc::new(Os), 1024);
        let mut log = log(&store, SyncPolicy::Never);
        (0..60).for_each(|seq| append(&mut *log, seq));
    }
    let files = segment_files(&scratch.0);
    let last = files.last().expect("segments");
    // The last file holds older records than its name says: copied over by hand.
    std::fs::copy(&files[0], last).expect("copy");
    let (_store, report) = open(&scratch.0, Arc::new(Os), 1024);
    assert_eq!(report.cut, 0);
    assert_eq!(report.damaged.len(), 1, "{report}");
    let moved = scratch.0.join("damaged/7").join(last.file_name().expect("named"));
    assert_eq!(std::fs::read(moved).expect("moved whole"), std::fs::read(&files[0]).expect("first"));
}

#[test]
fn a_log_nobody_claims_is_set_aside_and_its_number_starts_empty() {
    let scratch = Scratch::new();
    {
        let (store, _) = open(&scratch.0, Arc::new(Os), 1 << 20);
        let mut log = log(&store, SyncPolicy::Never);
        append(&mut *log, 0);
    }
    let (store, report) = open(&scratch.0, Arc::new(Os), 1 << 20);
    assert_eq!(report.messages, 1);
    store.set_aside_unclaimed();
    let fresh = log(&store, SyncPolicy::Never);
    assert_eq!((fresh.first_seq(), fresh.next_seq()), (0, 0), "a new node with the number starts empty");
    let aside = scratch.0.join("damaged").join(STREAM.node.to_string());
    let kept = std::fs::read_dir(&aside).expect("set aside under damaged/").flatten();
    assert_eq!(kept.filter(|e| e.path().extension().is_some_and(|x| x == "log")).count(), 1);
}
