//! The engine over its storage interface: a fake store whose logs can refuse appends and
//! hold their syncs shows that a write reaches both of its logs or neither (and its copies'
//! in following groups, or none), that `sync always` writes and fsync(2) answer only once
//! the logs synced, what stamps record (a copy's too), and that history moves when a
//! group's `store` changes.

use std::collections::BTreeMap;

use super::*;
use crate::storage::memory::{MemoryLog, MemoryStore};
use crate::storage::{
    Bytes, Extent, Log, LogId, LogKind, Message, Placement, Stamp, Store, SyncCallback, SyncPolicy,
};

/// What the fake store's logs do and have seen.
#[derive(Default)]
struct Faults {
    /// `order` logs refuse appends with this.
    failing_order: Option<Errno>,
    /// This log refuses appends with this.
    failing: Option<(LogId, Errno)>,
    /// Sync callbacks are kept here instead of being called.
    holding: bool,
    held: Vec<SyncCallback>,
    /// Every appended message's stamp, by log; `unappend` takes it back.
    stamps: BTreeMap<LogId, Vec<Stamp>>,
    /// The logs asked for: which, where, how synced.
    opened: Vec<(LogId, Placement, SyncPolicy)>,
    /// Policy changes, by log.
    policies: Vec<(LogId, SyncPolicy)>,
}

#[derive(Clone, Default)]
struct FakeStore(Arc<Mutex<Faults>>);

impl FakeStore {
    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.0.lock().unwrap()
    }

    /// Runs the sync callbacks held so far, outside the lock.
    fn release_syncs(&self) {
        let held = std::mem::take(&mut self.faults().held);
        assert!(!held.is_empty(), "no sync was asked for");
        for done in held {
            done(Ok(()));
        }
    }

    fn stamps(&self, id: LogId) -> Vec<Stamp> {
        self.faults().stamps.get(&id).cloned().unwrap_or_default()
    }
}

impl Store for FakeStore {
    fn log(&self, id: LogId, placement: Placement, policy: SyncPolicy) -> Result<Box<dyn Log>> {
        self.faults().opened.push((id, placement, policy));
        Ok(Box::new(FakeLog { id, inner: MemoryLog::default(), store: self.clone() }))
    }

    fn remove_log(&self, _id: LogId) {}
}

/// A memory log that answers as its store's faults say.
struct FakeLog {
    id: LogId,
    inner: MemoryLog,
    store: FakeStore,
}

impl Log for FakeLog {
    fn append(&mut self, message: Message<'_>, stamp: &Stamp) -> Result<u64> {
        if let (true, Some(errno)) = (self.id.kind == LogKind::Order, self.store.faults().failing_order) {
            return Err(errno);
        }
        if let Some((_, errno)) = self.store.faults().failing.filter(|&(id, _)| id == self.id) {
            return Err(errno);
        }
        let seq = self.inner.append(message, stamp)?;
        self.store.faults().stamps.entry(self.id).or_default().push(*stamp);
        Ok(seq)
    }

    fn unappend(&mut self) {
        self.inner.unappend();
        self.store.faults().stamps.get_mut(&self.id).and_then(Vec::pop);
    }

    fn get(&self, seq: u64) -> Result<Option<Bytes>> {
        self.inner.get(seq)
    }

    fn stamp(&self, seq: u64) -> Result<Option<Stamp>> {
        self.inner.stamp(seq)
    }

    fn read_at(&self, position: u64, size: usize, out: &mut Vec<u8>) -> Result<()> {
        self.inner.read_at(position, size, out)
    }

    fn pop_front(&mut self) -> Option<usize> {
        self.inner.pop_front()
    }

    fn skip(&mut self, len: usize) {
        self.inner.skip(len)
    }

    fn clear(&mut self) {
        self.inner.clear()
    }

    fn extent(&self) -> Extent {
        self.inner.extent()
    }

    fn allocated(&self) -> u64 {
        self.inner.allocated()
    }

    fn growth(&self, len: usize) -> u64 {
        self.inner.growth(len)
    }

    fn sync(&self, done: SyncCallback) {
        let mut faults = self.store.faults();
        if faults.holding {
            faults.held.push(done);
        } else {
            drop(faults);
            done(Ok(()));
        }
    }

    fn set_policy(&mut self, policy: SyncPolicy) {
        self.store.faults().policies.push((self.id, policy));
    }
}

fn engine_on(store: &FakeStore) -> Engine {
    let limits = Limits { max_message: MIB, memory: 64 * MIB };
    Engine::new(GroupConfig::default(), OWNER, limits, Arc::new(store.clone())).expect("fake logs open")
}

fn stream_log(ino: Ino) -> LogId {
    LogId { node: ino, kind: LogKind::Stream }
}

fn order_log(group: Ino) -> LogId {
    LogId { node: group, kind: LogKind::Order }
}

#[test]
fn a_write_order_refuses_is_taken_back_from_its_stream() {
    let store = FakeStore::default();
    let e = engine_on(&store);
    ctl(&e, ROOT, "replay all");
    let s = create(&e, ROOT, "s");
    let reader = open_reader(&e, s);
    let order_reader = open_reader(&e, order_ino(&e, ROOT));
    let w = open_writer(&e, s);
    assert_eq!(write(&e, w, b"first"), Ok(5));
    for errno in [Errno::ENOSPC, Errno::EIO] {
        store.faults().failing_order = Some(errno);
        let (slot, ticket) = start_write(&e, w, b"lost", false);
        assert_eq!((write_outcome(&slot), ticket), (Some(Err(errno)), None), "the writer gets the errno");
    }
    store.faults().failing_order = None;
    assert_eq!(write(&e, w, b"second"), Ok(6));
    // Neither refused write reached any reader, nor any reader opened later, nor the log.
    expect_messages(&e, reader, &[b"first", b"second"]);
    expect_messages(&e, order_reader, &[b"s\n", b"s\n"]);
    let late = open_reader(&e, s);
    expect_messages(&e, late, &[b"first", b"second"]);
    assert_eq!(store.stamps(stream_log(s)).len(), 2, "the stream's log kept two messages");
}

#[test]
fn a_sync_always_write_returns_once_its_streams_log_synced() {
    let store = FakeStore::default();
    let e = engine_on(&store);
    // `order` keeps its lines (else nobody could read them and its log is not asked).
    ctl(&e, ROOT, "sync always\nreplay all");
    let s = create(&e, ROOT, "s");
    let reader = open_reader(&e, s);
    let w = open_writer(&e, s);
    store.faults().holding = true;
    let (slot, ticket) = start_write(&e, w, b"durable", false);
    assert_eq!(ticket, None, "no write blocks on a reader here");
    assert_eq!(write_outcome(&slot), None, "the write waits for its syncs");
    // Order's lines are rebuilt from the stream's stamps after a power loss (recovery.rs).
    assert_eq!(store.faults().held.len(), 1, "the stream's log alone");
    expect_read(&e, reader, 100, b"durable");
    store.release_syncs();
    assert_eq!(write_outcome(&slot), Some(Ok(())));
    // A refused write is answered at once, syncing nothing.
    store.faults().failing_order = Some(Errno::EIO);
    let (slot, _) = start_write(&e, w, b"refused", false);
    assert_eq!(write_outcome(&slot), Some(Err(Errno::EIO)));
    assert!(store.faults().held.is_empty());
    // Without `sync always` nothing waits.
    store.faults().failing_order = None;
    ctl(&e, ROOT, "sync never");
    assert_eq!(write(&e, w, b"at once"), Ok(7));
    assert!(store.faults().held.is_empty());
}

#[test]
fn a_sync_always_blocked_write_waits_for_its_reader_and_its_syncs() {
    let store = FakeStore::default();
    let e = engine_on(&store);
    ctl(&e, ROOT, "sync always\nwrite all");
    let s = create(&e, ROOT, "s");
    let reader = open_reader(&e, s);
    let w = open_writer(&e, s);
    store.faults().holding = true;
    let (slot, ticket) = start_write(&e, w, b"m", false);
    assert!(ticket.is_some(), "blocked on its reader");
    store.release_syncs();
    assert_eq!(write_outcome(&slot), None, "synced, not yet received");
    expect_read(&e, reader, 100, b"m");
    assert_eq!(write_outcome(&slot), Some(Ok(())));
}

#[test]
fn fsync_answers_once_the_stream_and_order_synced() {
    let store = FakeStore::default();
    let e = engine_on(&store);
    let s = create(&e, ROOT, "s");
    let w = open_writer(&e, s);
    assert_eq!(write(&e, w, b"m"), Ok(1));
    store.faults().holding = true;
    let fsync = |fh| {
        let slot: WriteSlot = Arc::new(Mutex::new(None));
        let target = slot.clone();
        e.fsync(fh, Box::new(move |result| *target.lock().unwrap() = Some(result)));
        slot
    };
    let slot = fsync(w);
    assert_eq!(write_outcome(&slot), None);
    assert_eq!(store.faults().held.len(), 2, "the stream's log and order's");
    store.release_syncs();
    assert_eq!(write_outcome(&slot), Some(Ok(())));
    let order = open_reader(&e, order_ino(&e, ROOT));
    let slot = fsync(order);
    assert_eq!(store.faults().held.len(), 1, "order's log alone");
    store.release_syncs();
    assert_eq!(write_outcome(&slot), Some(Ok(())));
    let (ctl_fh, _) = e.open(ctl_ino(&e, ROOT), true, false, OWNER).unwrap();
    assert_eq!(write_outcome(&fsync(ctl_fh)), Some(Ok(())), "ctl has nothing to sync");
    assert_eq!(write_outcome(&fsync(12345)), Some(Err(Errno::EBADF)));
}

#[test]
fn stamps_carry_the_writer_and_the_group_sequence() {
    let store = FakeStore::default();
    let e = engine_on(&store);
    ctl(&e, ROOT, "replay all");
    let (a, b) = (create(&e, ROOT, "a"), create(&e, ROOT, "b"));
    let (wa, wb) = (open_writer(&e, a), open_writer(&e, b));
    for (fh, pid) in [(wa, 10), (wb, 11), (wa, 12)] {
        let request =
            WriteRequest { data: b"m", writer: 1, offset: 0, nonblock: false, pid, uid: 500, gid: 600 };
        let outcome = Arc::new(Mutex::new(None));
        let slot = outcome.clone();
        e.write(fh, &request, || Some(1), |_| Some(1), Box::new(move |r| *slot.lock().unwrap() = Some(r)));
        assert_eq!(*outcome.lock().unwrap(), Some(Ok(())));
    }
    let seqs = |id| store.stamps(id).iter().map(|s| (s.group_seq, s.pid, s.uid, s.gid)).collect::<Vec<_>>();
    assert_eq!(seqs(stream_log(a)), [(0, 10, 500, 600), (2, 12, 500, 600)]);
    assert_eq!(seqs(stream_log(b)), [(1, 11, 500, 600)]);
    assert_eq!(seqs(order_log(ROOT)), [(0, 10, 500, 600), (1, 11, 500, 600), (2, 12, 500, 600)]);
    let times: Vec<SystemTime> = store.stamps(order_log(ROOT)).iter().map(|s| s.time).collect();
    assert!(times.windows(2).all(|t| t[0] <= t[1]) && times[0] > SystemTime::UNIX_EPOCH, "{times:?}");
}

#[test]
fn changing_store_moves_the_history_and_sync_reaches_the_logs() {
    let store = FakeStore::default();
    let e = engine_on(&store);
    ctl(&e, ROOT, "replay all");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"one", b"two", b"three"]);
    let reader = open_reader(&e, s);
    expect_read(&e, reader, 100, b"one");
    ctl(&e, ROOT, "store disk\nsync 100ms");
    let opened = store.faults().opened.clone();
    let interval = SyncPolicy::Interval(Duration::from_millis(100));
    assert!(opened.contains(&(stream_log(s), Placement::Disk, interval)), "{opened:?}");
    assert!(opened.contains(&(order_log(ROOT), Placement::Disk, interval)), "{opened:?}");
    // The reader goes on where it was; new readers replay all the history.
    expect_read(&e, reader, 100, b"two");
    let late = open_reader(&e, s);
    for message in [&b"one"[..], b"two", b"three"] {
        expect_read(&e, late, 100, message);
    }
    // The moved messages kept their stamps: the original group numbers, copied once more.
    let seqs: Vec<u64> = store.stamps(stream_log(s)).iter().map(|s| s.group_seq).collect();
    assert_eq!(seqs, [0, 1, 2, 0, 1, 2]);
    ctl(&e, ROOT, "sync always");
    let policies = store.faults().policies.clone();
    assert!(policies.contains(&(stream_log(s), SyncPolicy::Always)), "{policies:?}");
    let order = SyncPolicy::Interval(crate::engine::stream::ORDER_SYNC);
    assert!(policies.contains(&(order_log(ROOT), order)), "order syncs on its own: {policies:?}");
}

#[test]
fn a_stream_renamed_into_a_group_stored_elsewhere_takes_its_history_along() {
    let store = FakeStore::default();
    let e = engine_on(&store);
    ctl(&e, ROOT, "replay all");
    let g = mkdir(&e, ROOT, "g");
    ctl(&e, g, "store disk");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"kept"]);
    e.rename(ROOT, b"s", g, b"s", false).unwrap();
    assert!(store.faults().opened.contains(&(stream_log(s), Placement::Disk, SyncPolicy::Never)));
    let reader = open_reader(&e, s);
    expect_read(&e, reader, 100, b"kept");
}

#[test]
fn readers_of_a_large_message_share_its_bytes() {
    let limits = Limits { max_message: MIB, memory: 64 * MIB };
    let e = Engine::new(GroupConfig::default(), OWNER, limits, Arc::new(MemoryStore)).unwrap();
    let s = create(&e, ROOT, "s");
    let readers = [open_reader(&e, s), open_reader(&e, s)];
    let big = vec![7u8; 256 << 10];
    publish(&e, s, &[&big]);
    let mut got = Vec::new();
    for fh in readers {
        let slot = Arc::new(Mutex::new(None));
        let target = slot.clone();
        e.read(fh, 0, MIB as u32, ReadMode::NonBlock, Box::new(move |r| *target.lock().unwrap() = Some(r)));
        got.push(slot.lock().unwrap().take().expect("read at once").expect("the message"));
    }
    assert_eq!(&*got[0], &big[..]);
    assert_eq!(got[0].as_ptr(), got[1].as_ptr(), "one buffer, not a copy per reader");
}

/// `news/s` with followers `news/alice` and `news/bob`: the groups and their `s` streams.
fn followed(e: &Engine) -> [(Ino, Ino); 3] {
    ctl(e, ROOT, "replay all");
    let news = mkdir(e, ROOT, "news");
    let s = create(e, news, "s");
    let mut groups = vec![(news, s)];
    for name in [&b"alice"[..], b"bob"] {
        let group = e.mkdir(news, name, 0o755, OWNER).unwrap().ino;
        ctl(e, group, "follow parent");
        groups.push((group, e.lookup(group, b"s").unwrap().ino));
    }
    groups.try_into().unwrap()
}

#[test]
fn a_write_one_of_its_copies_refuses_is_taken_back_from_every_log() {
    let store = FakeStore::default();
    let e = engine_on(&store);
    let groups = followed(&e);
    let readers: Vec<(u64, u64)> = groups
        .iter()
        .map(|&(group, s)| (open_reader(&e, s), open_reader(&e, order_ino(&e, group))))
        .collect();
    let w = open_writer(&e, groups[0].1);
    assert_eq!(write(&e, w, b"first"), Ok(5));
    let (bob, bob_s) = groups[2];
    for (log, errno) in [
        (stream_log(bob_s), Errno::ENOSPC),
        (order_log(bob), Errno::EIO),
        (stream_log(groups[1].1), Errno::EIO),
    ] {
        store.faults().failing = Some((log, errno));
        let (slot, ticket) = start_write(&e, w, b"lost", false);
        assert_eq!((write_outcome(&slot), ticket), (Some(Err(errno)), None), "{log:?} refused");
    }
    store.faults().failing = None;
    assert_eq!(write(&e, w, b"second"), Ok(6));
    for (&(_, s), &(reader, order)) in groups.iter().zip(&readers) {
        expect_messages(&e, reader, &[b"first", b"second"]);
        expect_messages(&e, order, &[b"s\n", b"s\n"]);
        assert_eq!(store.stamps(stream_log(s)).len(), 2, "stream {s} kept two messages");
    }
}

#[test]
fn a_copy_keeps_its_writer_and_time_and_is_numbered_in_its_own_group() {
    let store = FakeStore::default();
    let e = engine_on(&store);
    let [(news, s), (alice, alice_s), _] = followed(&e);
    let own = create(&e, alice, "own");
    for (ino, pid) in [(s, 10), (own, 11), (s, 12)] {
        let fh = open_writer(&e, ino);
        let request =
            WriteRequest { data: b"m", writer: 1, offset: 0, nonblock: false, pid, uid: 500, gid: 600 };
        let outcome = Arc::new(Mutex::new(None));
        let slot = outcome.clone();
        e.write(fh, &request, || Some(1), |_| Some(1), Box::new(move |r| *slot.lock().unwrap() = Some(r)));
        assert_eq!(*outcome.lock().unwrap(), Some(Ok(())));
        e.release(fh);
    }
    let seqs = |id| store.stamps(id).iter().map(|s| (s.group_seq, s.pid, s.uid, s.gid)).collect::<Vec<_>>();
    assert_eq!(seqs(stream_log(s)), [(0, 10, 500, 600), (1, 12, 500, 600)]);
    assert_eq!(seqs(stream_log(alice_s)), [(0, 10, 500, 600), (2, 12, 500, 600)]);
    assert_eq!(seqs(order_log(alice)), [(0, 10, 500, 600), (1, 11, 500, 600), (2, 12, 500, 600)]);
    assert_eq!(seqs(order_log(news)), [(0, 10, 500, 600), (1, 12, 500, 600)]);
    let times = |id| store.stamps(id).iter().map(|s| s.time).collect::<Vec<_>>();
    assert_eq!(times(stream_log(alice_s)), times(stream_log(s)), "the original's time");
}

#[test]
fn a_write_returns_once_its_copies_in_sync_always_groups_synced() {
    let store = FakeStore::default();
    let e = engine_on(&store);
    let [(_, s), (alice, alice_s), _] = followed(&e);
    ctl(&e, alice, "sync always");
    let w = open_writer(&e, s);
    store.faults().holding = true;
    let (slot, _) = start_write(&e, w, b"durable copy", false);
    assert_eq!(write_outcome(&slot), None, "the write waits for alice's copy");
    assert_eq!(store.faults().held.len(), 1, "alice's stream's log alone");
    expect_read(&e, open_reader(&e, alice_s), 100, b"durable copy");
    store.release_syncs();
    assert_eq!(write_outcome(&slot), Some(Ok(())));
}
