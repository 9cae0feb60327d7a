//! Saving the namespace: every change reaches the catalogue, and an engine restored from
//! what was saved shows the same tree (names, entry numbers, attributes, links, targets,
//! device numbers, configurations).

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;

use super::*;
use crate::storage::catalogue::NodeRecord;
use crate::storage::memory::MemoryStore;
use crate::storage::{Catalogue, Log, LogId, LogKind, Placement, Store, SyncPolicy};

/// A catalogue that keeps records in memory, shared with the test; it refuses saves while
/// `failing` is set.
#[derive(Clone, Default)]
struct Kept {
    records: Arc<Mutex<BTreeMap<u64, NodeRecord>>>,
    durable_saves: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
}

impl Catalogue for Kept {
    fn load(&self) -> std::result::Result<Vec<NodeRecord>, Errno> {
        Ok(self.records.lock().unwrap().values().cloned().collect())
    }

    fn save(&self, changed: &[NodeRecord], removed: &[u64], durable: bool) -> std::result::Result<(), Errno> {
        if self.failing.load(Ordering::Relaxed) {
            return Err(Errno::ENOSPC);
        }
        let mut records = self.records.lock().unwrap();
        for record in changed {
            records.insert(record.ino, record.clone());
        }
        for ino in removed {
            records.remove(ino);
        }
        self.durable_saves.fetch_add(durable as usize, Ordering::Relaxed);
        Ok(())
    }
}

const LIMITS: Limits = Limits { max_message: MIB, memory: 64 * MIB };
const ALICE: Caller = Caller { uid: 1000, gid: 100 };

/// A memory store that lists the logs it was told to delete.
#[derive(Default)]
struct Removals(Mutex<Vec<LogId>>);

impl Store for Removals {
    fn log(
        &self,
        id: LogId,
        placement: Placement,
        policy: SyncPolicy,
    ) -> std::result::Result<Box<dyn Log>, Errno> {
        MemoryStore.log(id, placement, policy)
    }

    fn remove_log(&self, id: LogId) {
        self.0.lock().unwrap().push(id);
    }
}

fn engine_with(kept: &Kept, store: Arc<dyn Store>) -> std::result::Result<Engine, String> {
    Engine::with_catalogue(GroupConfig::default(), OWNER, LIMITS, store, Box::new(kept.clone()))
}

fn engine_on(kept: &Kept) -> Engine {
    engine_with(kept, Arc::new(MemoryStore)).expect("restores")
}

/// Everything `ls -lR` and `cat ctl` show of a group and below, with inode numbers and
/// readdir cookies: one line per entry.
fn view(e: &Engine, group: Ino, path: &str, out: &mut Vec<String>) {
    out.push(format!("{path}: {:?}", e.getattr(group).unwrap()));
    out.push(format!("{path}/ctl: {}", ctl_read(e, group)));
    for entry in listing(e, group) {
        let name = String::from_utf8_lossy(&entry.name).into_owned();
        let path = format!("{path}/{name}");
        if name == "." || name == ".." || name == "ctl" || name == "order" {
            out.push(format!("{path} -> {} @{}", entry.ino, entry.next));
            continue;
        }
        let attr = e.getattr(entry.ino).unwrap();
        out.push(format!("{path} @{} {attr:?}", entry.next));
        match entry.kind {
            Kind::Directory => view(e, entry.ino, &path, out),
            Kind::Symlink => out.push(format!("{path} -> {:?}", e.readlink(entry.ino).unwrap())),
            _ => {}
        }
    }
}

fn whole_view(e: &Engine) -> Vec<String> {
    let mut out = Vec::new();
    view(e, ROOT, "", &mut out);
    out
}

fn set(e: &Engine, ino: Ino, change: SetAttr) {
    e.setattr(ino, change).expect("setattr");
}

#[test]
fn a_restored_engine_shows_the_tree_that_was_saved() {
    let kept = Kept::default();
    let e = engine_on(&kept);
    let chat = mkdir(&e, ROOT, "chat");
    ctl(&e, chat, "replay all\ndepth 10\n");
    let sub = mkdir(&e, chat, "sub"); // inherits chat's configuration
    ctl(&e, sub, "data coalesce\n");
    let alice = e.create(chat, b"alice", 0o640, ALICE).unwrap().ino;
    let bob = create(&e, chat, "bob");
    create(&e, chat, "gone");
    let old = mkdir(&e, ROOT, "old");
    e.link(alice, sub, b"alias").unwrap();
    e.link(alice, ROOT, b"top").unwrap();
    e.mknod(sub, b"fifo", Kind::Fifo, 0o600, 0, ALICE).unwrap();
    e.mknod(sub, b"sock", Kind::Socket, 0o600, 0, OWNER).unwrap();
    e.mknod(ROOT, b"null", Kind::CharDevice, 0o666, 0x0103, OWNER).unwrap();
    e.mknod(ROOT, b"disk", Kind::BlockDevice, 0o660, 0x0801, OWNER).unwrap();
    e.symlink(ROOT, b"link", b"chat/alice", ALICE).unwrap();
    e.rename(chat, b"bob", sub, b"robert", false).unwrap();
    e.rename(ROOT, b"old", chat, b"older", false).unwrap();
    e.unlink(chat, b"gone").unwrap();
    e.unlink(ROOT, b"top").unwrap();
    set(&e, old, SetAttr { perm: Some(0o2750), uid: Some(5), gid: Some(6), ..SetAttr::default() });
    let past = SystemTime::UNIX_EPOCH + Duration::new(1_000_000, 42);
    set(&e, bob, SetAttr { atime: Some(past), mtime: Some(past), ..SetAttr::default() });
    set(&e, ROOT, SetAttr { perm: Some(0o711), ..SetAttr::default() });
    let before = whole_view(&e);

    let restored = engine_on(&kept);
    let after = whole_view(&restored);
    assert_eq!(before.len(), after.len(), "{before:#?}\n{after:#?}");
    for (before, after) in before.iter().zip(&after) {
        assert_eq!(before, after);
    }
    // New nodes and names take numbers past every saved node's and name's.
    let records = kept.load().unwrap();
    let highest = records.iter().flat_map(|r| r.names.iter().map(|n| n.entry).chain([r.ino])).max().unwrap();
    assert!(highest > alice, "hard links took entry numbers");
    assert_eq!(create(&restored, ROOT, "new"), highest + 1);
    assert!(restored.link(alice, old, b"again").is_ok(), "a restored stream takes more names");
}

#[test]
fn a_restored_engine_copies_into_the_followers_saved() {
    let kept = Kept::default();
    let e = engine_on(&kept);
    ctl(&e, ROOT, "replay all");
    let news = mkdir(&e, ROOT, "news");
    let s = create(&e, news, "s");
    let alice = mkdir(&e, news, "alice");
    // The ctl write that makes the copy saves it, and the group's configuration.
    ctl(&e, alice, "follow parent");
    let alice_s = e.lookup(alice, b"s").unwrap().ino;
    drop(e);
    let e = engine_on(&kept);
    assert!(ctl_read(&e, alice).contains("follow parent\n"));
    let reader = open_reader(&e, alice_s);
    publish(&e, s, &[b"after the restore"]);
    expect_read(&e, reader, 100, b"after the restore");
}

#[test]
fn each_change_is_saved_as_it_is_made() {
    let kept = Kept::default();
    let e = engine_on(&kept);
    let saved = |ino: Ino| kept.records.lock().unwrap().get(&ino).cloned();
    assert!(saved(ROOT).is_some(), "a new namespace's root is saved at once");
    let group = mkdir(&e, ROOT, "g");
    let stream = create(&e, group, "s");
    assert!(saved(stream).is_some());
    let root_mtime = saved(ROOT).unwrap().mtime;
    set(&e, stream, SetAttr { perm: Some(0o600), ..SetAttr::default() });
    assert_eq!(saved(stream).unwrap().perm, 0o600);
    ctl(&e, group, "replay last\n");
    assert!(saved(group).is_some_and(|r| format!("{:?}", r.body).contains("replay last")));
    e.rename(group, b"s", ROOT, b"moved", false).unwrap();
    assert_eq!(saved(stream).unwrap().names[0].parent, ROOT);
    assert!(saved(ROOT).unwrap().mtime >= root_mtime);
    e.unlink(ROOT, b"moved").unwrap();
    assert_eq!(saved(stream), None, "a removed stream is forgotten");
    e.rmdir(ROOT, b"g").unwrap();
    assert_eq!(saved(group), None);
    assert_eq!(kept.durable_saves.load(Ordering::Relaxed), 0, "no group says sync always");
    let durable = mkdir(&e, ROOT, "durable");
    ctl(&e, durable, "sync always\n");
    let before = kept.durable_saves.load(Ordering::Relaxed);
    create(&e, durable, "s");
    assert!(
        kept.durable_saves.load(Ordering::Relaxed) > before,
        "a sync always group's changes are durable saves"
    );
}

#[test]
fn a_disk_queues_ack_log_goes_with_it_or_when_it_stops_being_a_queue() {
    let kept = Kept::default();
    let store = Arc::new(Removals::default());
    let e = engine_with(&kept, store.clone()).expect("a new engine");
    let group = mkdir(&e, ROOT, "g");
    ctl(&e, group, "store disk\ndeliver one\n");
    let (stream, other) = (create(&e, group, "s"), create(&e, group, "t"));
    let acks = |node| LogId { node, kind: LogKind::Acks };
    e.unlink(group, b"s").unwrap();
    e.forget(stream, 1);
    assert_eq!(*store.0.lock().unwrap(), [LogId { node: stream, kind: LogKind::Stream }, acks(stream)]);
    ctl(&e, group, "deliver all\n");
    assert_eq!(store.0.lock().unwrap().last(), Some(&acks(other)));
}

#[test]
fn a_removed_nodes_log_is_deleted_once_the_kernel_forgets_it() {
    let kept = Kept::default();
    let store = Arc::new(Removals::default());
    let e = engine_with(&kept, store.clone()).expect("a new engine");
    let removed = &store.0;
    let group = mkdir(&e, ROOT, "g"); // the kernel knows both: made for it
    let stream = create(&e, group, "s");
    e.unlink(group, b"s").unwrap();
    e.rmdir(ROOT, b"g").unwrap();
    assert!(removed.lock().unwrap().is_empty(), "the kernel still knows them");
    assert!(kept.records.lock().unwrap().get(&stream).is_none(), "but they are gone from the namespace");
    e.forget(stream, 1);
    e.forget(group, 1);
    assert_eq!(
        *removed.lock().unwrap(),
        [LogId { node: stream, kind: LogKind::Stream }, LogId { node: group, kind: LogKind::Order }]
    );
}

#[test]
fn a_failed_save_is_made_with_the_next_change() {
    let kept = Kept::default();
    let e = engine_on(&kept);
    kept.failing.store(true, Ordering::Relaxed);
    let lost = mkdir(&e, ROOT, "first");
    assert!(kept.records.lock().unwrap().get(&lost).is_none());
    kept.failing.store(false, Ordering::Relaxed);
    let next = mkdir(&e, ROOT, "second");
    let records = kept.records.lock().unwrap();
    assert!(records.contains_key(&lost) && records.contains_key(&next));
}

#[test]
fn records_that_make_no_tree_are_refused_naming_the_node() {
    let kept = Kept::default();
    let e = engine_on(&kept);
    let stream = create(&e, ROOT, "s");
    let a = mkdir(&e, ROOT, "a");
    let b = mkdir(&e, a, "b");
    drop(e);
    let good = kept.records.lock().unwrap().clone();
    let refused = |change: &dyn Fn(&mut BTreeMap<u64, NodeRecord>)| {
        let mut records = good.clone();
        change(&mut records);
        *kept.records.lock().unwrap() = records;
        engine_with(&kept, Arc::new(MemoryStore)).err().expect("refused")
    };
    let looped = refused(&|records| records.get_mut(&a).unwrap().names[0].parent = b);
    assert!(looped.contains("not under the root"), "{looped}");
    let orphan = refused(&|records| records.get_mut(&stream).unwrap().names[0].parent = 77);
    assert!(orphan.contains(&format!("node {stream}")), "{orphan}");
    let rootless = refused(&|records| drop(records.remove(&ROOT)));
    assert!(rootless.contains("no root"), "{rootless}");
    let bad_config = refused(&|records| {
        records.get_mut(&ROOT).unwrap().body =
            crate::storage::catalogue::NodeBody::Group { config: "bogus 1\n".into() };
    });
    assert!(bad_config.contains("node 1: configuration"), "{bad_config}");
}

#[test]
fn concurrent_changes_reach_the_catalogue_as_they_end() {
    let kept = Kept::default();
    let e = Arc::new(engine_on(&kept));
    let group = mkdir(&e, ROOT, "g");
    let shared = create(&e, group, "shared");
    let threads: Vec<_> = (0..4u16)
        .map(|t| {
            let e = e.clone();
            thread::spawn(move || {
                for i in 0..300u16 {
                    set(&e, shared, SetAttr { perm: Some((t * 300 + i) % 0o777), ..SetAttr::default() });
                    ctl(&e, group, &format!("depth {}\n", t * 1000 + i));
                    create(&e, group, &format!("t{t}-{i}"));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let live = whole_view(&e);
    assert_eq!(whole_view(&engine_on(&kept)), live);
}
