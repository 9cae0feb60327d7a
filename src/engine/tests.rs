//! Engine behaviour through its public operations, without FUSE.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use super::*;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const OWNER: Caller = Caller { uid: 0, gid: 0 };
const MIB: u64 = 1 << 20;

fn engine_with(limits: Limits) -> Engine {
    Engine::new(GroupConfig::default(), OWNER, limits)
}

fn engine() -> Engine {
    engine_with(Limits { max_message: MIB, memory: 64 * MIB })
}

/// Where a read's callback leaves its result.
type Slot = Arc<Mutex<Option<ReadResult>>>;

/// Starts a read; returns the slot its result lands in and the ticket if it parked.
fn start_read(e: &Engine, fh: u64, size: u32, mode: ReadMode) -> (Slot, Option<Ticket>) {
    let slot: Slot = Arc::new(Mutex::new(None));
    let target = slot.clone();
    let ticket = e.read(
        fh,
        0,
        size,
        mode,
        Box::new(move |result| {
            let previous = target.lock().unwrap().replace(result);
            assert!(previous.is_none(), "a read callback ran twice");
        }),
    );
    (slot, ticket)
}

fn taken(slot: &Slot) -> Option<ReadResult> {
    slot.lock().unwrap().take()
}

fn is_pending(slot: &Slot) -> bool {
    slot.lock().unwrap().is_none()
}

/// A read that must complete at once.
fn read_mode(e: &Engine, fh: u64, size: u32, mode: ReadMode) -> ReadResult {
    let (slot, ticket) = start_read(e, fh, size, mode);
    assert_eq!(ticket, None, "a {mode:?} read parked");
    taken(&slot).unwrap_or_else(|| panic!("a {mode:?} read did not complete at once"))
}

fn read_now(e: &Engine, fh: u64, size: u32) -> ReadResult {
    read_mode(e, fh, size, ReadMode::NonBlock)
}

/// A non-blocking read that must return these bytes.
fn expect_read(e: &Engine, fh: u64, size: u32, want: &[u8]) {
    assert_eq!(read_now(e, fh, size).as_deref(), Ok(want), "reading fh {fh}");
}

fn expect_errno(e: &Engine, fh: u64, errno: Errno) {
    assert_eq!(read_now(e, fh, 65536), Err(errno), "reading fh {fh}");
}

fn create(e: &Engine, parent: Ino, name: &str) -> Ino {
    e.create(parent, name.as_bytes(), 0o644, OWNER).expect("create").ino
}

fn mkdir(e: &Engine, parent: Ino, name: &str) -> Ino {
    e.mkdir(parent, name.as_bytes(), 0o755, OWNER).expect("mkdir").ino
}

fn open_reader(e: &Engine, ino: Ino) -> u64 {
    e.open(ino, true, false, OWNER).expect("open for reading").0
}

fn open_writer(e: &Engine, ino: Ino) -> u64 {
    e.open(ino, false, true, OWNER).expect("open for writing").0
}

fn write(e: &Engine, fh: u64, data: &[u8]) -> Result<usize> {
    write_part(e, fh, data, 0, Some(data.len() as u64))
}

/// One WRITE request of writer 1 at `offset`, in a group where writes complete at once. It
/// starts a write(2) of `call` bytes, or (None) must continue the one in progress.
fn write_part(e: &Engine, fh: u64, data: &[u8], offset: u64, call: Option<u64>) -> Result<usize> {
    let outcome = Arc::new(Mutex::new(None));
    let slot = outcome.clone();
    let request = WriteRequest { data, writer: 1, offset, nonblock: false };
    let size_of_call = || Some(call.expect("this request continues a write(2)"));
    let ticket = e.write(fh, &request, size_of_call, Box::new(move |r| *slot.lock().unwrap() = Some(r)));
    assert_eq!(ticket, None, "a write in this group does not block");
    let result = outcome.lock().unwrap().take().expect("the write completed");
    result.map(|()| data.len())
}

/// Opens `ino`, writes each message through one handle, closes it.
fn publish(e: &Engine, ino: Ino, messages: &[&[u8]]) {
    let fh = open_writer(e, ino);
    for message in messages {
        assert_eq!(write(e, fh, message), Ok(message.len()));
    }
    e.release(fh);
}

fn ctl_ino(e: &Engine, group: Ino) -> Ino {
    e.lookup(group, b"ctl").expect("ctl exists").ino
}

fn order_ino(e: &Engine, group: Ino) -> Ino {
    e.lookup(group, b"order").expect("order exists").ino
}

/// What a fresh open of the group's ctl reads.
fn ctl_read(e: &Engine, group: Ino) -> String {
    let (fh, kind) = e.open(ctl_ino(e, group), true, false, OWNER).expect("open ctl");
    assert_eq!(kind, OpenKind::Ctl);
    let text = read_now(e, fh, 65536).expect("read ctl");
    e.release(fh);
    String::from_utf8(text).expect("ctl is text")
}

fn ctl_write(e: &Engine, group: Ino, text: &str) -> Result<usize> {
    let (fh, _) = e.open(ctl_ino(e, group), false, true, OWNER).expect("open ctl for writing");
    let result = write(e, fh, text.as_bytes());
    e.release(fh);
    result
}

fn ctl(e: &Engine, group: Ino, text: &str) {
    assert_eq!(ctl_write(e, group, text), Ok(text.len()), "ctl {text:?}");
}

/// The value of the `# name N` status line of a ctl text.
fn status(text: &str, name: &str) -> u64 {
    let prefix = format!("# {name} ");
    let line = text
        .lines()
        .find(|line| line.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in {text:?}"));
    line[prefix.len()..].trim().parse().expect("a number")
}

/// The payload bytes a stream or `order` retains (what ctl counts as `# bytes`).
fn size(e: &Engine, ino: Ino) -> u64 {
    let tree = e.tree.read();
    match Special::of(ino) {
        Special::Order(group) => tree.group(group).expect("group").shared.state.lock().order.bytes(),
        _ => tree.stream(ino).expect("stream").state.lock().channel.bytes(),
    }
}

/// A directory entry as a test keeps it.
#[derive(Debug)]
struct Listed {
    ino: Ino,
    kind: Kind,
    name: Vec<u8>,
    next: u64,
}

/// The entries of a group from cookie `offset` on, at most `max` of them.
fn listing_from(e: &Engine, group: Ino, offset: u64, max: usize) -> Vec<Listed> {
    let mut listed = Vec::new();
    e.readdir(group, offset, |entry| {
        listed.push(Listed { ino: entry.ino, kind: entry.kind, name: entry.name.to_vec(), next: entry.next });
        listed.len() == max
    })
    .expect("readdir");
    listed
}

fn listing(e: &Engine, group: Ino) -> Vec<Listed> {
    listing_from(e, group, 0, usize::MAX)
}

fn names(e: &Engine, group: Ino) -> Vec<String> {
    listing(e, group).into_iter().map(|entry| String::from_utf8(entry.name).unwrap()).collect()
}

// ---------------------------------------------------------------------------------------
// 1. Tree
// ---------------------------------------------------------------------------------------

#[test]
fn root_lists_dot_entries_first_and_ctl_order_last() {
    let e = engine();
    assert_eq!(names(&e, ROOT), [".", "..", "ctl", "order"]);
    create(&e, ROOT, "zeta");
    mkdir(&e, ROOT, "alpha");
    create(&e, ROOT, "mid");
    assert_eq!(names(&e, ROOT), [".", "..", "zeta", "alpha", "mid", "ctl", "order"], "in creation order");

    let entries = listing(&e, ROOT);
    assert_eq!(entries[0].ino, ROOT);
    assert_eq!(entries[3].kind, Kind::Directory, "alpha is a group");
    assert_eq!(entries[4].kind, Kind::File, "mid is a stream");
    assert_eq!(entries[5].ino, ctl_ino(&e, ROOT));
    assert_eq!(entries[6].ino, order_ino(&e, ROOT));
    assert_eq!(entries[5].kind, Kind::File);
    assert_eq!(entries[6].kind, Kind::File);
    for entry in &entries[2..] {
        let looked_up = e.lookup(ROOT, &entry.name).unwrap();
        assert_eq!(looked_up.ino, entry.ino);
        assert_eq!(looked_up.kind, entry.kind);
    }
}

#[test]
fn mkdir_copies_the_parents_configuration() {
    let e = engine();
    ctl(&e, ROOT, "data coalesce\nreplay all\ndepth 7\n");
    let child = mkdir(&e, ROOT, "child");
    let text = ctl_read(&e, child);
    assert!(text.contains("data coalesce\n"), "{text}");
    assert!(text.contains("replay all\n"), "{text}");
    assert!(text.contains("depth 7\n"), "{text}");

    // A copy, not a link: changing the child leaves the parent alone, and vice versa.
    ctl(&e, child, "replay last");
    assert!(ctl_read(&e, ROOT).contains("replay all\n"));
    ctl(&e, ROOT, "depth 0");
    assert!(ctl_read(&e, child).contains("depth 7\n"));

    // The grandchild copies the child as it is now.
    let grandchild = mkdir(&e, child, "grandchild");
    let text = ctl_read(&e, grandchild);
    assert!(text.contains("replay last\n") && text.contains("depth 7\n"), "{text}");

    // And the configuration governs streams created there: replay all keeps history.
    let s = create(&e, grandchild, "s");
    publish(&e, s, &[b"one", b"two", b"three"]);
    let r = open_reader(&e, s);
    // replay last: only the most recent.
    expect_read(&e, r, 100, b"three");
}

#[test]
fn reserved_names_cannot_be_created() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    for parent in [ROOT, g] {
        for name in [b"ctl".as_slice(), b"order"] {
            assert_eq!(e.create(parent, name, 0o644, OWNER).map(|a| a.ino), Err(Errno::EEXIST));
            assert_eq!(e.mkdir(parent, name, 0o755, OWNER).map(|a| a.ino), Err(Errno::EEXIST));
        }
    }
    // Ordinary duplicates are EEXIST too.
    create(&e, g, "s");
    assert_eq!(e.create(g, b"s", 0o644, OWNER).map(|a| a.ino), Err(Errno::EEXIST));
    assert_eq!(e.mkdir(g, b"s", 0o755, OWNER).map(|a| a.ino), Err(Errno::EEXIST));
    assert_eq!(names(&e, g), [".", "..", "s", "ctl", "order"]);
}

#[test]
fn unlinking_ctl_or_order_is_refused_unless_the_group_is_empty() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    let s = create(&e, g, "s");
    for name in [b"ctl".as_slice(), b"order"] {
        assert_eq!(e.unlink(g, name), Err(Errno::EPERM));
    }
    // A group holding only a subgroup is not empty either.
    let h = mkdir(&e, ROOT, "h");
    mkdir(&e, h, "sub");
    assert_eq!(e.unlink(h, b"ctl"), Err(Errno::EPERM));

    // Empty the group: now removing them is accepted and changes nothing.
    let _ = s;
    e.unlink(g, b"s").unwrap();
    let ctl_before = ctl_ino(&e, g);
    for name in [b"ctl".as_slice(), b"order"] {
        assert_eq!(e.unlink(g, name), Ok(()));
    }
    assert_eq!(ctl_ino(&e, g), ctl_before);
    assert!(e.lookup(g, b"order").is_ok());
    assert_eq!(names(&e, g), [".", "..", "ctl", "order"]);
    // ctl still works.
    ctl(&e, g, "replay all");
    assert!(ctl_read(&e, g).contains("replay all\n"));
    // And the group can now be removed (the `rm -r` sequence).
    e.rmdir(ROOT, b"g").unwrap();
    assert_eq!(e.lookup(ROOT, b"g").map(|a| a.ino), Err(Errno::ENOENT));
}

#[test]
fn renaming_ctl_or_order_is_refused() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    create(&e, g, "s");
    for reserved in [b"ctl".as_slice(), b"order"] {
        assert_eq!(e.rename(g, reserved, g, b"other", false), Err(Errno::EPERM));
        assert_eq!(e.rename(g, reserved, ROOT, b"other", false), Err(Errno::EPERM));
        assert_eq!(e.rename(g, b"s", g, reserved, false), Err(Errno::EPERM));
        assert_eq!(e.rename(ROOT, b"g", ROOT, reserved, false), Err(Errno::EPERM));
    }
    assert!(e.lookup(g, b"s").is_ok(), "the stream stayed where it was");
    assert!(e.lookup(ROOT, b"g").is_ok());
    assert_eq!(names(&e, g), [".", "..", "s", "ctl", "order"]);
}

#[test]
fn names_longer_than_255_bytes_are_refused() {
    let e = engine();
    let long = vec![b'x'; 256];
    let max = vec![b'y'; 255];
    assert_eq!(e.create(ROOT, &long, 0o644, OWNER).map(|a| a.ino), Err(Errno::ENAMETOOLONG));
    assert_eq!(e.mkdir(ROOT, &long, 0o755, OWNER).map(|a| a.ino), Err(Errno::ENAMETOOLONG));
    assert_eq!(names(&e, ROOT).len(), 4, "nothing was created");

    let s = e.create(ROOT, &max, 0o644, OWNER).unwrap().ino;
    assert_eq!(e.lookup(ROOT, &max).unwrap().ino, s);
    let g = e.mkdir(ROOT, &max[..254], 0o755, OWNER).unwrap().ino;
    assert_eq!(e.lookup(ROOT, &max[..254]).unwrap().kind, Kind::Directory);

    // Renaming to a too-long name is refused and leaves the stream in place.
    assert_eq!(e.rename(ROOT, &max, g, &long, false), Err(Errno::ENAMETOOLONG));
    assert_eq!(e.lookup(ROOT, &max).unwrap().ino, s);
    e.rename(ROOT, &max, g, &max, false).unwrap();
    assert_eq!(e.lookup(g, &max).unwrap().ino, s);
}

#[test]
fn groups_nest() {
    let e = engine();
    let a = mkdir(&e, ROOT, "a");
    let b = mkdir(&e, a, "b");
    let c = mkdir(&e, b, "c");
    let s = create(&e, c, "deep");
    assert_eq!(e.lookup(ROOT, b"a").unwrap().ino, a);
    assert_eq!(e.lookup(a, b"b").unwrap().ino, b);
    assert_eq!(e.lookup(b, b"c").unwrap().ino, c);
    assert_eq!(e.lookup(c, b"deep").unwrap().ino, s);
    assert_eq!(e.lookup(a, b"deep").map(|a| a.ino), Err(Errno::ENOENT));
    assert_eq!(names(&e, b), [".", "..", "c", "ctl", "order"]);
    let entries = listing(&e, c);
    assert_eq!(entries[1].ino, b, "`..` of c is b");
    assert_eq!(e.getattr(a).unwrap().kind, Kind::Directory);
    // Each nested group has its own ctl and order.
    let ctls = [ROOT, a, b, c].map(|g| ctl_ino(&e, g));
    for i in 0..ctls.len() {
        for j in i + 1..ctls.len() {
            assert_ne!(ctls[i], ctls[j]);
        }
    }
    // A stream is not a group.
    assert_eq!(e.create(s, b"x", 0o644, OWNER).map(|a| a.ino), Err(Errno::ENOTDIR));
    // Data flows at depth.
    let r = open_reader(&e, s);
    publish(&e, s, &[b"down here"]);
    expect_read(&e, r, 100, b"down here");
}

#[test]
fn a_listing_resumes_after_its_cookie_whatever_was_removed_meanwhile() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    for i in 0..100 {
        create(&e, g, &format!("s{i}"));
    }
    // Read in batches of 7, removing everything listed before reading on, as `rm -r` does.
    let mut offset = 0;
    let mut seen = Vec::new();
    loop {
        let batch = listing_from(&e, g, offset, 7);
        let Some(last) = batch.last() else { break };
        offset = last.next;
        for entry in &batch {
            let name = String::from_utf8(entry.name.clone()).unwrap();
            if name.starts_with('s') {
                e.unlink(g, &entry.name).unwrap();
            }
            seen.push(name);
        }
    }
    let expect: Vec<String> = [".", ".."]
        .into_iter()
        .map(String::from)
        .chain((0..100).map(|i| format!("s{i}")))
        .chain(["ctl", "order"].map(String::from))
        .collect();
    assert_eq!(seen, expect, "every entry once, in creation order, ctl and order last");
    assert_eq!(names(&e, g), [".", "..", "ctl", "order"]);
    // A listing resumed from any cookie starts right after that entry.
    let a = create(&e, g, "a");
    create(&e, g, "b");
    let from_a = listing_from(&e, g, listing(&e, g)[2].next, 1);
    assert_eq!((listing(&e, g)[2].ino, from_a[0].name.as_slice()), (a, b"b".as_slice()));
}

#[test]
fn a_removed_node_the_kernel_knows_keeps_its_metadata_with_no_links() {
    let e = engine();
    let caller = Caller { uid: 1000, gid: 100 };
    let g = e.mkdir(ROOT, b"g", 0o750, caller).unwrap().ino;
    let s = e.create(g, b"s", 0o640, caller).unwrap().ino;
    e.lookup(g, b"s").unwrap(); // the kernel looks it up again: it now holds two lookups
    let w = open_writer(&e, s);
    e.unlink(g, b"s").unwrap();
    let attr = e.getattr(s).unwrap();
    assert_eq!((attr.nlink, attr.perm, attr.uid, attr.gid), (0, 0o640, 1000, 100));
    let changed = e.setattr(s, SetAttr { perm: Some(0o600), uid: Some(7), ..SetAttr::default() }).unwrap();
    assert_eq!((changed.nlink, changed.perm, changed.uid, changed.gid), (0, 0o600, 7, 100));
    assert_eq!(write(&e, w, b"x"), Err(Errno::EPIPE), "writing to it still fails");

    e.rmdir(ROOT, b"g").unwrap();
    let attr = e.getattr(g).unwrap();
    assert_eq!((attr.kind, attr.nlink, attr.perm, attr.uid), (Kind::Directory, 0, 0o750, 1000));
    assert_eq!(e.setattr(g, SetAttr { gid: Some(5), ..SetAttr::default() }).unwrap().gid, 5);
    assert_eq!(names(&e, g), [".", ".."], "a removed group lists only itself and its parent");
    assert_eq!(e.create(g, b"new", 0o644, OWNER).map(|a| a.ino), Err(Errno::ENOENT));
    assert_eq!(e.mkdir(g, b"new", 0o755, OWNER).map(|a| a.ino), Err(Errno::ENOENT));
    assert_eq!(e.lookup(g, b"ctl").map(|a| a.ino), Err(Errno::ENOENT));
    assert_eq!(e.rename(ROOT, b"x", g, b"y", false), Err(Errno::ENOENT));
    let moved = create(&e, ROOT, "m");
    assert_eq!(e.rename(ROOT, b"m", g, b"m", false), Err(Errno::ENOENT));
    assert_eq!(e.lookup(ROOT, b"m").unwrap().ino, moved);

    // Once the kernel has forgotten every lookup of it, it is gone; a lookup it still holds
    // keeps it.
    e.release(w);
    e.forget(s, 1);
    assert_eq!(e.getattr(s).unwrap().nlink, 0, "one lookup of it is still held");
    e.forget(s, 1);
    assert_eq!(e.getattr(s).map(|a| a.ino), Err(Errno::ENOENT));
    e.forget(g, u64::MAX);
    assert_eq!(e.getattr(g).map(|a| a.ino), Err(Errno::ENOENT));
    assert_eq!(e.usage().nodes, 2, "the root and m");
}

#[test]
fn a_node_the_kernel_does_not_know_goes_at_once() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    e.forget(s, 1);
    assert_eq!(e.getattr(s).unwrap().nlink, 1, "forgetting a linked node keeps it");
    e.unlink(ROOT, b"s").unwrap();
    assert_eq!(e.getattr(s).map(|a| a.ino), Err(Errno::ENOENT));
}

#[test]
fn names_with_a_newline_are_refused() {
    let e = engine();
    create(&e, ROOT, "a");
    assert_eq!(e.create(ROOT, b"a\nb", 0o644, OWNER).map(|a| a.ino), Err(Errno::EINVAL));
    assert_eq!(e.mkdir(ROOT, b"\n", 0o755, OWNER).map(|a| a.ino), Err(Errno::EINVAL));
    assert_eq!(e.rename(ROOT, b"a", ROOT, b"a\n", false), Err(Errno::EINVAL));
    assert_eq!(e.lookup(ROOT, b"a\nb").map(|a| a.ino), Err(Errno::ENOENT), "no such name can exist");
    assert_eq!(names(&e, ROOT), [".", "..", "a", "ctl", "order"]);
}

// ---------------------------------------------------------------------------------------
// 2. Writing
// ---------------------------------------------------------------------------------------

#[test]
fn each_write_is_one_binary_safe_message() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let w = open_writer(&e, s);
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let lines = b"first line\nsecond line\n\0after a nul\n".to_vec();
    assert_eq!(write(&e, w, &all_bytes), Ok(256));
    assert_eq!(write(&e, w, &lines), Ok(lines.len()));
    assert_eq!(write(&e, w, b"\0"), Ok(1));
    assert_eq!(write(&e, w, b"\n"), Ok(1));
    expect_read(&e, r, 4096, &all_bytes);
    expect_read(&e, r, 4096, &lines);
    expect_read(&e, r, 4096, b"\0");
    expect_read(&e, r, 4096, b"\n");
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!(size(&e, s), 0, "replay off: read messages are gone");
}

#[test]
fn a_write_in_several_requests_is_published_once_complete() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let w = open_writer(&e, s);
    let message: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();

    let (slot, ticket) = start_read(&e, r, 8192, ReadMode::Block);
    assert!(ticket.is_some(), "nothing to read yet");
    assert_eq!(write_part(&e, w, &message[..1000], 0, Some(3000)), Ok(1000));
    assert!(is_pending(&slot), "a part is not a message");
    assert_eq!(size(&e, s), 0);
    assert_eq!(write_part(&e, w, &message[1000..2000], 1000, None), Ok(1000));
    assert!(is_pending(&slot), "two parts are not a message");
    assert_eq!(size(&e, s), 0);
    let (other, _) = start_read(&e, open_reader(&e, s), 8192, ReadMode::NonBlock);
    assert_eq!(taken(&other), Some(Err(Errno::EAGAIN)), "a reader sees nothing in between");
    assert_eq!(write_part(&e, w, &message[2000..], 2000, None), Ok(1000));
    assert_eq!(taken(&slot), Some(Ok(message.clone())), "one message, all parts in order");
    expect_errno(&e, r, Errno::EAGAIN);

    // The next whole write is a message of its own again.
    assert_eq!(write(&e, w, b"next"), Ok(4));
    expect_read(&e, r, 8192, b"next");
}

#[test]
fn a_message_larger_than_a_log_can_index_is_refused_whatever_max_message_says() {
    let e = engine_with(Limits { max_message: 8 << 30, memory: 16 << 30 });
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let w = open_writer(&e, s);
    let huge = seglog::Untouched::new(seglog::MAX_MESSAGE as usize + 16);
    assert_eq!(write(&e, w, huge.bytes()), Err(Errno::EFBIG));
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!((size(&e, s), e.usage().memory_used), (0, 0), "nothing was appended");
    assert_eq!(write(&e, w, b"after"), Ok(5));
    expect_read(&e, r, 100, b"after");
}

#[test]
fn a_write_continues_only_from_its_writer_at_its_next_offset() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let w = open_writer(&e, s);
    // O_APPEND: the first request carries the cached file size, not 0.
    assert_eq!(write_part(&e, w, &[b'a'; 600], 5000, Some(1000)), Ok(600));
    assert_eq!(write_part(&e, w, &[b'a'; 400], 5600, None), Ok(400));
    expect_read(&e, r, 4096, &[b'a'; 1000]);
    // A request at any other offset, or from another writer, starts a new write(2); the
    // one it interrupts is dropped with its reservation.
    assert_eq!(write_part(&e, w, &[b'b'; 600], 0, Some(1000)), Ok(600));
    assert!(e.usage().memory_used > 0, "the pending write holds a reservation");
    assert_eq!(write_part(&e, w, &[b'c'; 10], 601, Some(10)), Ok(10));
    expect_read(&e, r, 4096, &[b'c'; 10]);
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!(write_part(&e, w, &[b'd'; 600], 0, Some(1000)), Ok(600));
    let other = WriteRequest { data: &[b'e'; 400], writer: 2, offset: 600, nonblock: false };
    let outcome = Arc::new(Mutex::new(None));
    let slot = outcome.clone();
    e.write(w, &other, || Some(400), Box::new(move |r| *slot.lock().unwrap() = Some(r)));
    assert_eq!(outcome.lock().unwrap().take(), Some(Ok(())));
    expect_read(&e, r, 4096, &[b'e'; 400]);
    // More than is missing is not a continuation either.
    assert_eq!(write_part(&e, w, &[b'f'; 600], 0, Some(1000)), Ok(600));
    assert_eq!(write_part(&e, w, &[b'g'; 500], 600, Some(500)), Ok(500));
    expect_read(&e, r, 4096, &[b'g'; 500]);
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!(e.usage().memory_used, 0, "replay off, all read: nothing held");
}

#[test]
fn a_write_is_admitted_once_for_all_it_costs_and_assemblies_count() {
    let e = engine_with(Limits { max_message: 16 * MIB, memory: 8 * MIB });
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let (w1, w2) = (open_writer(&e, s), open_writer(&e, s));
    // Two writes of 3 MiB being assembled leave no room for a third.
    let part = vec![b'x'; MIB as usize];
    assert_eq!(write_part(&e, w1, &part, 0, Some(3 * MIB)), Ok(part.len()));
    assert_eq!(write_part(&e, w2, &part, 0, Some(3 * MIB)), Ok(part.len()));
    let w3 = open_writer(&e, s);
    assert_eq!(write_part(&e, w3, &part, 0, Some(3 * MIB)), Err(Errno::ENOSPC));
    // The admitted ones complete whatever else is written meanwhile.
    assert_eq!(write(&e, w3, &[b'y'; 100]), Ok(100));
    for offset in [MIB, 2 * MIB] {
        assert_eq!(write_part(&e, w1, &part, offset, None), Ok(part.len()));
    }
    expect_read(&e, r, 4096, &[b'y'; 100]);
    expect_read(&e, r, 4 * MIB as u32, &vec![b'x'; 3 * MIB as usize]);
    e.release(w2);
    assert_eq!(e.usage().memory_used, 0, "a closed handle's pending write is released");
}

#[test]
fn frame_is_fixed_when_a_file_is_opened() {
    let e = engine();
    ctl(&e, ROOT, "frame close");
    let s = create(&e, ROOT, "s");
    let (r, w) = (open_reader(&e, s), open_writer(&e, s));
    assert_eq!(write(&e, w, b"one "), Ok(4));
    ctl(&e, ROOT, "frame write");
    assert_eq!(write(&e, w, b"message"), Ok(7));
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!(e.flush(w, || false), Ok(()));
    expect_read(&e, r, 100, b"one message");
}

#[test]
fn a_ctl_write_in_several_requests_applies_whole_or_not_at_all() {
    let e = engine();
    let (fh, _) = e.open(ctl_ino(&e, ROOT), false, true, OWNER).unwrap();
    let text = b"depth 5\nbogus line\n";
    assert_eq!(write_part(&e, fh, &text[..8], 100, Some(text.len() as u64)), Ok(8));
    assert!(ctl_read(&e, ROOT).contains("depth 0"), "nothing applied before the end");
    assert_eq!(write_part(&e, fh, &text[8..], 108, None), Err(Errno::EINVAL));
    assert!(ctl_read(&e, ROOT).contains("depth 0"));
    assert_eq!(write_part(&e, fh, &[b'#'; 10], 0, Some(CTL_MAX + 1)), Err(Errno::EINVAL));
    e.release(fh);
}

#[test]
fn an_oversized_message_is_refused_with_efbig() {
    let e = engine_with(Limits { max_message: 100, memory: 64 * MIB });
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let w = open_writer(&e, s);
    assert_eq!(write(&e, w, &[b'x'; 101]), Err(Errno::EFBIG));
    assert_eq!(write_part(&e, w, &[b'y'; 50], 0, Some(101)), Err(Errno::EFBIG));
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!(size(&e, s), 0);
    assert_eq!(e.usage().memory_used, 0);

    // Exactly the limit is fine, whole or in parts.
    assert_eq!(write(&e, w, &[b'a'; 100]), Ok(100));
    expect_read(&e, r, 4096, &[b'a'; 100]);
    assert_eq!(write_part(&e, w, &[b'b'; 60], 0, Some(100)), Ok(60));
    assert_eq!(write_part(&e, w, &[b'b'; 40], 60, None), Ok(40));
    expect_read(&e, r, 4096, &[b'b'; 100]);
    expect_errno(&e, r, Errno::EAGAIN);
}

// ---------------------------------------------------------------------------------------
// 3. Reading
// ---------------------------------------------------------------------------------------

#[test]
fn every_reader_gets_every_message_in_order() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let readers: Vec<u64> = (0..3).map(|_| open_reader(&e, s)).collect();
    let messages: Vec<Vec<u8>> = (0..20).map(|i| format!("message {i}").into_bytes()).collect();
    let w = open_writer(&e, s);
    for m in &messages {
        write(&e, w, m).unwrap();
    }
    // Interleave the readers: one reader's progress does not move another's.
    for m in &messages {
        for &r in &readers {
            expect_read(&e, r, 4096, m);
        }
    }
    for &r in &readers {
        expect_errno(&e, r, Errno::EAGAIN);
    }
}

#[test]
fn message_mode_returns_at_most_one_message_per_read() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    publish(&e, s, &[b"one", b"two", b"three"]);
    expect_read(&e, r, 4096, b"one");
    expect_read(&e, r, 4096, b"two");
    expect_read(&e, r, 4096, b"three");
    expect_errno(&e, r, Errno::EAGAIN);
}

#[test]
fn a_short_read_gets_the_rest_of_its_message_before_the_next() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    publish(&e, s, &[b"hello world", b"next"]);
    expect_read(&e, r, 5, b"hello");
    expect_read(&e, r, 4, b" wor");
    expect_read(&e, r, 100, b"ld");
    expect_read(&e, r, 100, b"next");
    expect_errno(&e, r, Errno::EAGAIN);
}

#[test]
fn coalesce_mode_reads_across_message_boundaries() {
    let e = engine();
    ctl(&e, ROOT, "data coalesce");
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    publish(&e, s, &[b"ab", b"cd", b"ef", b"gh"]);
    expect_read(&e, r, 5, b"abcde");
    expect_read(&e, r, 100, b"fgh");
    expect_errno(&e, r, Errno::EAGAIN);

    // The mode follows the group's ctl: back to messages.
    ctl(&e, ROOT, "data message");
    publish(&e, s, &[b"ij", b"kl"]);
    expect_read(&e, r, 100, b"ij");
    expect_read(&e, r, 100, b"kl");
}

#[test]
fn a_non_blocking_read_with_nothing_to_read_fails_eagain() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    expect_errno(&e, r, Errno::EAGAIN);
    // EAGAIN did not move the cursor: the next message is still delivered.
    publish(&e, s, &[b"x"]);
    expect_read(&e, r, 10, b"x");
    expect_errno(&e, r, Errno::EAGAIN);
}

#[test]
fn a_blocking_read_parks_until_a_write() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let (slot, ticket) = start_read(&e, r, 100, ReadMode::Block);
    assert!(ticket.is_some(), "the read parked");
    assert!(is_pending(&slot), "no result before a write");
    publish(&e, s, &[b"wake up"]);
    assert_eq!(taken(&slot), Some(Ok(b"wake up".to_vec())));
    expect_errno(&e, r, Errno::EAGAIN);

    // With data already there, a blocking read returns at once.
    publish(&e, s, &[b"ready"]);
    assert_eq!(read_mode(&e, r, 100, ReadMode::Block), Ok(b"ready".to_vec()));

    // A parked read woken from another thread.
    let e = Arc::new(e);
    let (slot, ticket) = start_read(&e, r, 100, ReadMode::Block);
    assert!(ticket.is_some());
    let writer = {
        let e = e.clone();
        thread::spawn(move || publish(&e, s, &[b"from a thread"]))
    };
    writer.join().unwrap();
    assert_eq!(taken(&slot), Some(Ok(b"from a thread".to_vec())));
}

#[test]
fn continuation_reads_only_continue_a_partly_read_message() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    // Nothing to read: an empty read, not a parked one, not EAGAIN.
    assert_eq!(read_mode(&e, r, 100, ReadMode::Continuation), Ok(Vec::new()));

    publish(&e, s, &[b"hello world", b"second"]);
    // A message is waiting, but a continuation does not start a new message.
    assert_eq!(read_mode(&e, r, 100, ReadMode::Continuation), Ok(Vec::new()));
    expect_read(&e, r, 5, b"hello");
    assert_eq!(read_mode(&e, r, 3, ReadMode::Continuation), Ok(b" wo".to_vec()));
    assert_eq!(read_mode(&e, r, 100, ReadMode::Continuation), Ok(b"rld".to_vec()));
    // The message is done: the next continuation ends the read(2) without mixing in "second".
    assert_eq!(read_mode(&e, r, 100, ReadMode::Continuation), Ok(Vec::new()));
    expect_read(&e, r, 100, b"second");
    assert_eq!(read_mode(&e, r, 100, ReadMode::Continuation), Ok(Vec::new()));

    // Coalescing, a continuation never parks either.
    ctl(&e, ROOT, "data coalesce");
    assert_eq!(read_mode(&e, r, 100, ReadMode::Continuation), Ok(Vec::new()));
    publish(&e, s, &[b"ab", b"cd"]);
    expect_read(&e, r, 1, b"a");
    assert_eq!(read_mode(&e, r, 100, ReadMode::Continuation), Ok(b"bcd".to_vec()));
    assert_eq!(read_mode(&e, r, 100, ReadMode::Continuation), Ok(Vec::new()));
}

// ---------------------------------------------------------------------------------------
// 4. Replay
// ---------------------------------------------------------------------------------------

#[test]
fn replay_off_shows_a_new_reader_only_later_messages() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let early = open_reader(&e, s);
    publish(&e, s, &[b"before 1", b"before 2"]);
    let r = open_reader(&e, s);
    expect_errno(&e, r, Errno::EAGAIN);
    publish(&e, s, &[b"after"]);
    expect_read(&e, r, 100, b"after");
    expect_errno(&e, r, Errno::EAGAIN);
    // The earlier reader still has everything.
    expect_read(&e, early, 100, b"before 1");
    expect_read(&e, early, 100, b"before 2");
    expect_read(&e, early, 100, b"after");
}

#[test]
fn replay_last_shows_the_most_recent_message_then_new_ones() {
    let e = engine();
    ctl(&e, ROOT, "replay last");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"one", b"two", b"three"]);
    assert_eq!(size(&e, s), 5, "only the last message is retained");
    let r = open_reader(&e, s);
    expect_read(&e, r, 100, b"three");
    expect_errno(&e, r, Errno::EAGAIN);
    publish(&e, s, &[b"four"]);
    expect_read(&e, r, 100, b"four");
    let r2 = open_reader(&e, s);
    expect_read(&e, r2, 100, b"four");
    expect_errno(&e, r2, Errno::EAGAIN);

    // Older messages kept for a slow reader are not replayed to a new one.
    let slow = open_reader(&e, s);
    publish(&e, s, &[b"five", b"six", b"seven"]);
    assert_eq!(size(&e, s), 16, "the slow reader still needs four..seven");
    let r3 = open_reader(&e, s);
    expect_read(&e, r3, 100, b"seven");
    expect_errno(&e, r3, Errno::EAGAIN);
    expect_read(&e, slow, 100, b"four");
}

#[test]
fn replay_all_shows_every_retained_message() {
    let e = engine();
    ctl(&e, ROOT, "replay all");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"one", b"two", b"three"]);
    assert_eq!(size(&e, s), 11);
    for _ in 0..2 {
        let r = open_reader(&e, s);
        expect_read(&e, r, 100, b"one");
        expect_read(&e, r, 100, b"two");
        expect_read(&e, r, 100, b"three");
        expect_errno(&e, r, Errno::EAGAIN);
    }
    assert_eq!(size(&e, s), 11, "reading does not consume under replay all");
    // The `on` spelling of mq(4) means all.
    let g = mkdir(&e, ROOT, "g");
    ctl(&e, g, "replay off");
    ctl(&e, g, "replay on");
    assert!(ctl_read(&e, g).contains("replay all\n"));
}

// ---------------------------------------------------------------------------------------
// 5. Depth and memory
// ---------------------------------------------------------------------------------------

#[test]
fn depth_in_messages_keeps_the_newest() {
    let e = engine();
    ctl(&e, ROOT, "replay all\ndepth 3");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"m1", b"m2", b"m3", b"m4", b"m5"]);
    assert_eq!(size(&e, s), 6, "three 2-byte messages");
    let r = open_reader(&e, s);
    expect_read(&e, r, 100, b"m3");
    expect_read(&e, r, 100, b"m4");
    expect_read(&e, r, 100, b"m5");
    expect_errno(&e, r, Errno::EAGAIN);

    // Lowering the depth trims what is already there.
    ctl(&e, ROOT, "depth 1");
    assert_eq!(size(&e, s), 2);
    let r = open_reader(&e, s);
    expect_read(&e, r, 100, b"m5");
    expect_errno(&e, r, Errno::EAGAIN);
}

#[test]
fn depth_in_bytes_bounds_retained_payload() {
    let e = engine();
    ctl(&e, ROOT, "replay all\ndepth 10B");
    assert!(ctl_read(&e, ROOT).contains("depth 10B\n"));
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"aaaa", b"bbbb", b"cccc"]);
    assert_eq!(size(&e, s), 8);
    let r = open_reader(&e, s);
    expect_read(&e, r, 100, b"bbbb");
    expect_read(&e, r, 100, b"cccc");
    expect_errno(&e, r, Errno::EAGAIN);
    publish(&e, s, &[b"dd"]);
    assert_eq!(size(&e, s), 10, "exactly the depth fits");
    publish(&e, s, &[b"e"]);
    assert_eq!(size(&e, s), 7, "cccc, dd, e");
    let r = open_reader(&e, s);
    expect_read(&e, r, 100, b"cccc");
}

#[test]
fn replay_off_drops_a_message_once_every_reader_has_it() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    // With no reader at all nothing is kept.
    publish(&e, s, &[b"nobody"]);
    assert_eq!(size(&e, s), 0);

    let r1 = open_reader(&e, s);
    let r2 = open_reader(&e, s);
    publish(&e, s, &[b"abc", b"defg"]);
    assert_eq!(size(&e, s), 7);
    expect_read(&e, r1, 100, b"abc");
    expect_read(&e, r1, 100, b"defg");
    assert_eq!(size(&e, s), 7, "r2 still needs both");
    expect_read(&e, r2, 100, b"abc");
    assert_eq!(size(&e, s), 4, "only defg is still needed");
    expect_read(&e, r2, 2, b"de");
    assert_eq!(size(&e, s), 4, "a partly read message is still needed");
    expect_read(&e, r2, 2, b"fg");
    assert_eq!(size(&e, s), 0);
}

#[test]
fn a_reader_overrun_by_depth_gets_one_enobufs_then_the_oldest_retained() {
    let e = engine();
    ctl(&e, ROOT, "depth 3");
    let s = create(&e, ROOT, "s");
    let slow = open_reader(&e, s);
    let fast = open_reader(&e, s);
    let w = open_writer(&e, s);
    for i in 0..10 {
        write(&e, w, format!("m{i}").as_bytes()).unwrap();
        expect_read(&e, fast, 100, format!("m{i}").as_bytes());
    }
    assert_eq!(size(&e, s), 6, "depth keeps three for the slow reader");
    expect_errno(&e, slow, Errno::ENOBUFS);
    expect_read(&e, slow, 100, b"m7");
    expect_read(&e, slow, 100, b"m8");
    expect_read(&e, slow, 100, b"m9");
    expect_errno(&e, slow, Errno::EAGAIN);

    // Overrun in the middle of a message: the same, once.
    write(&e, w, b"partial message").unwrap();
    expect_read(&e, slow, 7, b"partial");
    for i in 0..5 {
        write(&e, w, format!("n{i}").as_bytes()).unwrap();
    }
    expect_errno(&e, slow, Errno::ENOBUFS);
    expect_read(&e, slow, 100, b"n2");
    expect_read(&e, slow, 100, b"n3");
    expect_read(&e, slow, 100, b"n4");
    expect_errno(&e, slow, Errno::EAGAIN);
}

#[test]
fn the_memory_ceiling_refuses_writes_until_memory_is_freed() {
    let limit = 64 << 10;
    let e = engine_with(Limits { max_message: MIB, memory: limit });
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let w = open_writer(&e, s);
    let message = |i: usize| vec![(i % 251) as u8; 1000];

    let mut written = 0;
    let refused = loop {
        assert!(written < 1000, "the ceiling never refused a write");
        match write(&e, w, &message(written)) {
            Ok(_) => written += 1,
            Err(errno) => break errno,
        }
        let usage = e.usage();
        assert!(
            usage.memory_used <= usage.memory_limit,
            "{} bytes used over a ceiling of {} after {written} messages",
            usage.memory_used,
            usage.memory_limit
        );
    };
    assert_eq!(refused, Errno::ENOSPC);
    assert!(written >= 30, "only {written} KB-sized messages fit in 64 KiB");
    assert_eq!(size(&e, s), written as u64 * 1000, "the refused write published nothing");
    // Still refused, whole or in parts.
    assert_eq!(write(&e, w, &message(0)), Err(Errno::ENOSPC));
    assert_eq!(write_part(&e, w, &message(0), 0, Some(2000)), Err(Errno::ENOSPC));

    // Readers still get everything retained.
    for i in 0..written {
        expect_read(&e, r, 4096, &message(i));
    }
    expect_errno(&e, r, Errno::EAGAIN);
    // Read under replay off, it is all freed, and writes succeed again.
    assert_eq!(size(&e, s), 0);
    assert_eq!(e.usage().memory_used, 0);
    assert_eq!(write(&e, w, b"room again"), Ok(10));
    expect_read(&e, r, 100, b"room again");

    // Filled again under replay all, `clear` frees it.
    ctl(&e, ROOT, "replay all");
    let mut filled = false;
    for i in 0..1000 {
        if write(&e, w, &message(i)) == Err(Errno::ENOSPC) {
            filled = true;
            break;
        }
        // `order` keeps its lines too now, and they count against the same ceiling.
        assert!(e.usage().memory_used <= limit, "{} used after {i} more", e.usage().memory_used);
    }
    assert!(filled);
    assert!(size(&e, order_ino(&e, ROOT)) > 0);
    ctl(&e, ROOT, "clear");
    assert_eq!(size(&e, s), 0);
    assert_eq!(e.usage().memory_used, 0);
    assert_eq!(write(&e, w, b"after clear"), Ok(11));
}

// ---------------------------------------------------------------------------------------
// 6. ctl
// ---------------------------------------------------------------------------------------

#[test]
fn ctl_reads_configuration_and_status() {
    let e = engine();
    let text = ctl_read(&e, ROOT);
    for line in ["data message\n", "replay off\n", "depth 0\n"] {
        assert!(text.contains(line), "{line:?} missing from {text:?}");
    }
    assert!(text.lines().any(|line| line.starts_with("# ")), "{text}");
    assert_eq!(status(&text, "streams"), 0);
    assert_eq!(status(&text, "readers"), 0);
    assert_eq!(status(&text, "messages"), 0);
    assert_eq!(status(&text, "bytes"), 0);

    let g = mkdir(&e, ROOT, "g");
    ctl(&e, g, "replay all");
    let a = create(&e, g, "a");
    let b = create(&e, g, "b");
    mkdir(&e, g, "sub");
    let sub_stream = create(&e, e.lookup(g, b"sub").unwrap().ino, "c");
    let _readers = [open_reader(&e, a), open_reader(&e, a), open_reader(&e, b)];
    let _elsewhere = open_reader(&e, sub_stream);
    publish(&e, a, &[b"abc", b"12345"]);
    publish(&e, b, &[b"de"]);
    publish(&e, sub_stream, &[b"not counted here"]);
    let text = ctl_read(&e, g);
    assert_eq!(status(&text, "streams"), 2, "{text}");
    assert_eq!(status(&text, "groups"), 1, "{text}");
    assert_eq!(status(&text, "readers"), 3, "{text}");
    assert_eq!(status(&text, "messages"), 3, "{text}");
    assert_eq!(status(&text, "bytes"), 10, "{text}");

    // An open ctl reads by offset, as a file.
    let (fh, _) = e.open(ctl_ino(&e, g), true, false, OWNER).unwrap();
    let whole = text.as_bytes();
    let (slot, _) = start_read(&e, fh, 5, ReadMode::Block);
    assert_eq!(taken(&slot), Some(Ok(whole[..5].to_vec())));
    let tail = Arc::new(Mutex::new(None));
    let target = tail.clone();
    e.read(fh, 5, 4096, ReadMode::Block, Box::new(move |r| *target.lock().unwrap() = Some(r)));
    assert_eq!(tail.lock().unwrap().take(), Some(Ok(whole[5..].to_vec())));
    e.release(fh);
}

#[test]
fn writing_back_what_ctl_reads_changes_nothing() {
    let e = engine();
    ctl(&e, ROOT, "data coalesce\nreplay last\ndepth 64K");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"kept"]);
    let before = ctl_read(&e, ROOT);
    assert!(before.contains("depth 64K\n"), "{before}");
    ctl(&e, ROOT, &before);
    assert_eq!(ctl_read(&e, ROOT), before);
    assert_eq!(size(&e, s), 4, "history untouched");
    let r = open_reader(&e, s);
    expect_read(&e, r, 100, b"kept");
}

#[test]
fn a_bad_ctl_write_is_refused_whole() {
    let e = engine();
    let before = ctl_read(&e, ROOT);
    for bad in [
        "frobnicate",
        "replay sometimes",
        "data stream",
        "depth -1",
        "depth 12Q",
        "depth",
        "clear now",
        "replay all\ndepth 5\ndata coalesce\nbogus line",
        "replay all\ndepth five",
    ] {
        assert_eq!(ctl_write(&e, ROOT, bad), Err(Errno::EINVAL), "{bad:?}");
        let after = ctl_read(&e, ROOT);
        let error = after.strip_prefix(&before).unwrap_or_else(|| panic!("{bad:?} changed something"));
        assert!(error.starts_with("# error: line ") && error.lines().count() == 1, "{error:?}");
    }
    // A refused write that includes `clear` clears nothing.
    ctl(&e, ROOT, "replay all");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"keep me"]);
    assert_eq!(ctl_write(&e, ROOT, "clear\nnonsense"), Err(Errno::EINVAL));
    assert_eq!(size(&e, s), 7);
    // Comments and blank lines are fine.
    ctl(&e, ROOT, "\n# a comment\n  \ndepth 2\n");
    assert!(ctl_read(&e, ROOT).contains("depth 2\n"));
}

#[test]
fn a_refused_ctl_write_is_told_to_its_writer_on_its_next_reads_of_ctl() {
    let e = engine();
    let other = Caller { uid: 1000, gid: 1000 };
    let open_ctl = |caller, read, write| e.open(ctl_ino(&e, ROOT), read, write, caller).unwrap().0;
    let read_all = |fh| String::from_utf8(read_static(&e, fh, 0, 65536).unwrap()).unwrap();
    let clean = ctl_read(&e, ROOT);
    assert_eq!(ctl_write(&e, ROOT, "depth 3\nbogus\n"), Err(Errno::EINVAL));
    let told = format!("{clean}# error: line 2: unknown command \"bogus\"\n");
    assert_eq!(ctl_read(&e, ROOT), told, "the writer's next open");
    assert_eq!(ctl_read(&e, ROOT), told, "and every one until its next ctl write");
    // Another user's reads do not show it.
    let theirs = open_ctl(other, true, false);
    assert_eq!(read_all(theirs), clean);
    // What ctl printed, error included, writes back: the error line is a comment.
    ctl(&e, ROOT, &told);
    assert_eq!(ctl_read(&e, ROOT), clean, "a successful write clears the writer's error");
    // Through a file open for reading and writing, the same file's reads end with it too.
    let both = open_ctl(other, true, true);
    assert_eq!(read_all(both), clean);
    assert_eq!(write(&e, both, b"replay never\n"), Err(Errno::EINVAL));
    let reason = "# error: line 1: replay takes off, last or all, not \"never\"\n";
    assert_eq!(read_all(both), format!("{clean}{reason}"));
    assert_eq!(ctl_read(&e, ROOT), clean, "the owner did nothing wrong");
    let again = open_ctl(other, true, false);
    assert_eq!(read_all(again), format!("{clean}{reason}"), "the other user's next open");
    // A write too long to apply is refused the same way.
    let huge = "#".repeat(CTL_MAX as usize + 1);
    assert_eq!(ctl_write(&e, ROOT, &huge), Err(Errno::EINVAL));
    assert!(ctl_read(&e, ROOT).ends_with("# error: a write(2) longer than 1048576 bytes is refused\n"));
    for fh in [theirs, both, again] {
        e.release(fh);
    }
}

#[test]
fn clear_empties_every_stream_of_the_group_only() {
    let e = engine();
    ctl(&e, ROOT, "replay all");
    let g = mkdir(&e, ROOT, "g");
    let a = create(&e, g, "a");
    let b = create(&e, g, "b");
    let sub = mkdir(&e, g, "sub");
    let c = create(&e, sub, "c");
    let outside = create(&e, ROOT, "outside");
    for s in [a, b, c, outside] {
        publish(&e, s, &[b"history", b"more"]);
    }
    let caught_up = open_reader(&e, a);
    expect_read(&e, caught_up, 100, b"history");
    expect_read(&e, caught_up, 100, b"more");

    ctl(&e, g, "clear");
    assert_eq!(size(&e, a), 0);
    assert_eq!(size(&e, b), 0);
    assert_eq!(size(&e, order_ino(&e, g)), 0, "order is history too");
    assert_eq!(size(&e, c), 11, "a subgroup's streams are not the group's");
    assert_eq!(size(&e, outside), 11);
    let text = ctl_read(&e, g);
    assert_eq!(status(&text, "messages"), 0, "{text}");
    assert_eq!(status(&text, "bytes"), 0, "{text}");
    assert!(text.contains("replay all\n"), "clear keeps the configuration");

    let r = open_reader(&e, b);
    expect_errno(&e, r, Errno::EAGAIN);
    // The streams go on: new messages reach old and new readers.
    publish(&e, a, &[b"fresh"]);
    expect_read(&e, caught_up, 100, b"fresh");
    let r = open_reader(&e, a);
    expect_read(&e, r, 100, b"fresh");
    expect_errno(&e, r, Errno::EAGAIN);
}

// ---------------------------------------------------------------------------------------
// 7. order
// ---------------------------------------------------------------------------------------

#[test]
fn order_names_the_stream_of_each_write() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    let a = create(&e, g, "a");
    let b = create(&e, g, "b");
    let order = open_reader(&e, order_ino(&e, g));
    let ra = open_reader(&e, a);
    let rb = open_reader(&e, b);
    publish(&e, a, &[b"a1"]);
    publish(&e, b, &[b"b1"]);
    publish(&e, a, &[b"a2"]);

    let mut history = Vec::new();
    let mut lines = Vec::new();
    loop {
        match read_now(&e, order, 4096) {
            Ok(line) => {
                let stream = match line.as_slice() {
                    b"a\n" => ra,
                    b"b\n" => rb,
                    other => panic!("unexpected order line {:?}", String::from_utf8_lossy(other)),
                };
                lines.push(line);
                history.push(read_now(&e, stream, 4096).unwrap());
            }
            Err(errno) => {
                assert_eq!(errno, Errno::EAGAIN);
                break;
            }
        }
    }
    assert_eq!(lines, [b"a\n".to_vec(), b"b\n".to_vec(), b"a\n".to_vec()]);
    assert_eq!(history, [b"a1".to_vec(), b"b1".to_vec(), b"a2".to_vec()]);
    assert_eq!(size(&e, order_ino(&e, g)), 0, "order lines read under replay off are gone");
}

#[test]
fn order_is_per_group() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    let sub = mkdir(&e, g, "sub");
    let a = create(&e, g, "a");
    let c = create(&e, sub, "c");
    let root_order = open_reader(&e, order_ino(&e, ROOT));
    let g_order = open_reader(&e, order_ino(&e, g));
    let sub_order = open_reader(&e, order_ino(&e, sub));
    publish(&e, c, &[b"deep"]);
    publish(&e, a, &[b"shallow"]);
    expect_read(&e, g_order, 100, b"a\n");
    expect_errno(&e, g_order, Errno::EAGAIN);
    expect_read(&e, sub_order, 100, b"c\n");
    expect_errno(&e, sub_order, Errno::EAGAIN);
    expect_errno(&e, root_order, Errno::EAGAIN);
}

#[test]
fn order_cannot_be_opened_for_writing() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    for group in [ROOT, g] {
        let order = order_ino(&e, group);
        assert_eq!(e.open(order, false, true, OWNER).map(|o| o.1), Err(Errno::EPERM));
        assert_eq!(e.open(order, true, true, OWNER).map(|o| o.1), Err(Errno::EPERM));
        assert_eq!(e.open(order, true, false, OWNER).map(|o| o.1), Ok(OpenKind::Stream));
    }
}

#[test]
fn order_agrees_with_streams_under_concurrent_writers() {
    const THREADS: usize = 4;
    const MESSAGES: usize = 500;
    let e = Arc::new(engine());
    ctl(&e, ROOT, "replay all");
    let g = mkdir(&e, ROOT, "g");
    let streams: Vec<Ino> = (0..THREADS).map(|t| create(&e, g, &format!("s{t}"))).collect();

    let writers: Vec<_> = streams
        .iter()
        .enumerate()
        .map(|(t, &s)| {
            let e = e.clone();
            thread::spawn(move || {
                let fh = open_writer(&e, s);
                for n in 0..MESSAGES {
                    let message = format!("{t}:{n}");
                    assert_eq!(write(&e, fh, message.as_bytes()), Ok(message.len()));
                }
                e.release(fh);
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }

    let order = open_reader(&e, order_ino(&e, g));
    let readers: Vec<u64> = streams.iter().map(|&s| open_reader(&e, s)).collect();
    let mut next = [0usize; THREADS];
    let mut switches = 0;
    let mut previous = usize::MAX;
    for _ in 0..THREADS * MESSAGES {
        let line = read_now(&e, order, 100).expect("an order line per message");
        let name = String::from_utf8(line).unwrap();
        let t: usize = name.strip_prefix('s').and_then(|n| n.strip_suffix('\n')).unwrap().parse().unwrap();
        let message = read_now(&e, readers[t], 100).expect("the stream has the message order names");
        assert_eq!(message, format!("{t}:{}", next[t]).into_bytes());
        next[t] += 1;
        if t != previous {
            switches += 1;
            previous = t;
        }
    }
    expect_errno(&e, order, Errno::EAGAIN);
    for &r in &readers {
        expect_errno(&e, r, Errno::EAGAIN);
    }
    assert_eq!(next, [MESSAGES; THREADS]);
    assert!(switches >= THREADS, "every stream appears in order");
}

// ---------------------------------------------------------------------------------------
// 8. Removal and rename
// ---------------------------------------------------------------------------------------

#[test]
fn unlink_lets_readers_drain_then_read_end_of_file() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let idle = open_reader(&e, s);
    let parked = open_reader(&e, s);
    let w = open_writer(&e, s);
    write(&e, w, b"one").unwrap();
    write(&e, w, b"two").unwrap();
    expect_read(&e, parked, 100, b"one");
    expect_read(&e, parked, 100, b"two");
    let (slot, ticket) = start_read(&e, parked, 100, ReadMode::Block);
    assert!(ticket.is_some());
    let polling = open_reader(&e, s); // replay off: it starts after "two"
    let (told, poller) = poll_counter();
    assert_eq!(e.poll(polling, Some(poller)), Ok(false));

    e.unlink(ROOT, b"s").unwrap();
    assert_eq!(taken(&slot), Some(Ok(Vec::new())), "a parked reader is released with EOF");
    assert_eq!(told.load(Ordering::SeqCst), 1, "a poller is told: EOF is readable");
    assert_eq!(e.poll(polling, None), Ok(true));
    expect_read(&e, polling, 100, b"");
    e.release(polling);
    assert_eq!(e.lookup(ROOT, b"s").map(|a| a.ino), Err(Errno::ENOENT));
    assert_eq!(names(&e, ROOT), [".", "..", "ctl", "order"]);

    expect_read(&e, r, 100, b"one");
    expect_read(&e, r, 100, b"two");
    expect_read(&e, r, 100, b"");
    expect_read(&e, r, 100, b"");
    assert_eq!(read_mode(&e, r, 100, ReadMode::Block), Ok(Vec::new()), "EOF does not park");
    let _ = idle;
    // Writing to the removed stream fails.
    assert_eq!(write(&e, w, b"three"), Err(Errno::EPIPE));
    expect_read(&e, idle, 100, b"one");
    expect_read(&e, idle, 100, b"two");
    expect_read(&e, idle, 100, b"");

    // Removing a stream and then releasing its handles returns its memory.
    for fh in [r, idle, parked, w] {
        e.release(fh);
    }
    assert_eq!(e.usage().memory_used, 0);
}

#[test]
fn unlink_after_a_parked_or_polling_reader_went_away() {
    let e = engine();
    for polling in [false, true] {
        let s = create(&e, ROOT, "s");
        let gone = open_reader(&e, s);
        let staying = open_reader(&e, s);
        if polling {
            assert_eq!(e.poll(gone, Some(Arc::new(|| {}))), Ok(false));
        } else {
            let (slot, ticket) = start_read(&e, gone, 100, ReadMode::Block);
            assert!(ticket.is_some());
            e.release(gone);
            assert_eq!(taken(&slot), Some(Ok(Vec::new())), "release ends a parked read");
        }
        e.release(gone);
        let (slot, _) = start_read(&e, staying, 100, ReadMode::Block);
        e.unlink(ROOT, b"s").unwrap();
        assert_eq!(taken(&slot), Some(Ok(Vec::new())));
        e.release(staying);
    }
    // The same for order, when its group goes.
    let g = mkdir(&e, ROOT, "g");
    let order = open_reader(&e, order_ino(&e, g));
    let (_slot, ticket) = start_read(&e, order, 100, ReadMode::Block);
    assert!(ticket.is_some());
    e.release(order);
    e.rmdir(ROOT, b"g").unwrap();
    assert_eq!(e.lookup(ROOT, b"g").map(|a| a.ino), Err(Errno::ENOENT));
}

#[test]
fn rmdir_removes_only_empty_groups() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    create(&e, g, "s");
    assert_eq!(e.rmdir(ROOT, b"g"), Err(Errno::ENOTEMPTY));
    let h = mkdir(&e, ROOT, "h");
    mkdir(&e, h, "sub");
    assert_eq!(e.rmdir(ROOT, b"h"), Err(Errno::ENOTEMPTY));
    assert!(e.lookup(ROOT, b"g").is_ok() && e.lookup(ROOT, b"h").is_ok());

    e.unlink(g, b"s").unwrap();
    e.rmdir(ROOT, b"g").unwrap();
    e.rmdir(h, b"sub").unwrap();
    e.rmdir(ROOT, b"h").unwrap();
    // Gone from the tree; served with no links until the kernel forgets it.
    assert_eq!(e.getattr(g).map(|a| a.nlink), Ok(0));
    e.forget(g, u64::MAX);
    assert_eq!(e.getattr(g).map(|a| a.ino), Err(Errno::ENOENT));
    assert_eq!(names(&e, ROOT), [".", "..", "ctl", "order"]);
    // Streams are not groups, nor the other way round.
    let s = create(&e, ROOT, "s");
    assert_eq!(e.rmdir(ROOT, b"s"), Err(Errno::ENOTDIR));
    mkdir(&e, ROOT, "d");
    assert_eq!(e.unlink(ROOT, b"d"), Err(Errno::EISDIR));
    assert_eq!(e.lookup(ROOT, b"s").unwrap().ino, s);
}

#[test]
fn rename_moves_a_stream_with_its_history_and_readers() {
    let e = engine();
    ctl(&e, ROOT, "replay all");
    let g1 = mkdir(&e, ROOT, "g1");
    let g2 = mkdir(&e, ROOT, "g2");
    let s = create(&e, g1, "s");
    let early = open_reader(&e, s);
    let w = open_writer(&e, s);
    write(&e, w, b"old").unwrap();
    let order1 = open_reader(&e, order_ino(&e, g1));
    let order2 = open_reader(&e, order_ino(&e, g2));
    expect_read(&e, order1, 100, b"s\n");

    e.rename(g1, b"s", g2, b"t", false).unwrap();
    assert_eq!(e.lookup(g1, b"s").map(|a| a.ino), Err(Errno::ENOENT));
    let moved = e.lookup(g2, b"t").unwrap();
    assert_eq!(moved.ino, s);
    assert_eq!(size(&e, s), 3);
    let fresh = open_reader(&e, s);
    expect_read(&e, fresh, 100, b"old");

    // Writes through a handle opened before the move land in the moved stream.
    write(&e, w, b"new").unwrap();
    expect_read(&e, early, 100, b"old");
    expect_read(&e, early, 100, b"new");
    expect_read(&e, fresh, 100, b"new");
    expect_read(&e, order2, 100, b"t\n");
    expect_errno(&e, order1, Errno::EAGAIN);

    // It now follows its new group's configuration.
    ctl(&e, g2, "depth 1");
    assert_eq!(size(&e, s), 3);
    ctl(&e, g1, "depth 0\nclear");
    assert_eq!(size(&e, s), 3, "the old group's clear no longer reaches it");
    ctl(&e, g2, "clear");
    assert_eq!(size(&e, s), 0);
}

#[test]
fn rename_of_a_group_within_itself_is_refused() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    let sub = mkdir(&e, g, "sub");
    let deeper = mkdir(&e, sub, "deeper");
    assert_eq!(e.rename(ROOT, b"g", g, b"x", false), Err(Errno::EINVAL));
    assert_eq!(e.rename(ROOT, b"g", sub, b"x", false), Err(Errno::EINVAL));
    assert_eq!(e.rename(ROOT, b"g", deeper, b"g", false), Err(Errno::EINVAL));
    assert_eq!(e.lookup(ROOT, b"g").unwrap().ino, g);
    assert_eq!(names(&e, sub), [".", "..", "deeper", "ctl", "order"]);
    // Moving a group elsewhere (and back up) is fine.
    e.rename(sub, b"deeper", ROOT, b"up", false).unwrap();
    assert_eq!(e.lookup(ROOT, b"up").unwrap().ino, deeper);
    e.rename(ROOT, b"g", deeper, b"g", false).unwrap();
    assert_eq!(e.lookup(deeper, b"g").unwrap().ino, g);
    assert_eq!(e.lookup(g, b"sub").unwrap().ino, sub);
}

#[test]
fn rename_over_a_stream_replaces_it() {
    let e = engine();
    ctl(&e, ROOT, "replay all");
    let a = create(&e, ROOT, "a");
    let b = create(&e, ROOT, "b");
    publish(&e, a, &[b"from a"]);
    publish(&e, b, &[b"from b"]);
    let old_b = open_reader(&e, b);

    assert_eq!(e.rename(ROOT, b"a", ROOT, b"b", true), Err(Errno::EEXIST));
    assert_eq!(e.lookup(ROOT, b"b").unwrap().ino, b);

    e.rename(ROOT, b"a", ROOT, b"b", false).unwrap();
    assert_eq!(e.lookup(ROOT, b"a").map(|x| x.ino), Err(Errno::ENOENT));
    assert_eq!(e.lookup(ROOT, b"b").unwrap().ino, a);
    assert_eq!(e.getattr(b).map(|x| x.nlink), Ok(0), "the replaced stream is no longer linked");
    e.forget(b, u64::MAX);
    assert_eq!(e.getattr(b).map(|x| x.ino), Err(Errno::ENOENT));
    assert_eq!(names(&e, ROOT), [".", "..", "b", "ctl", "order"]);
    let r = open_reader(&e, a);
    expect_read(&e, r, 100, b"from a");
    expect_errno(&e, r, Errno::EAGAIN);
    // The replaced stream's reader drains it and reads EOF.
    expect_read(&e, old_b, 100, b"from b");
    expect_read(&e, old_b, 100, b"");
    // Writes through the new name reach the moved stream and name it in order.
    let order = open_reader(&e, order_ino(&e, ROOT));
    let order_before = size(&e, order_ino(&e, ROOT));
    publish(&e, a, &[b"again"]);
    expect_read(&e, r, 100, b"again");
    assert_eq!(size(&e, order_ino(&e, ROOT)), order_before + 2);
    let _ = order;
}

/// Whether each callback found the tree's lock free, as one that needs the tree would.
type TreeFree = Arc<Mutex<Vec<bool>>>;

/// A callback that notes in `free` whether the tree could be read when it ran.
fn noting_tree_free<T>(e: &Arc<Engine>, free: &TreeFree) -> Box<dyn FnOnce(T) + Send> {
    let (e, free) = (e.clone(), free.clone());
    Box::new(move |_| {
        let readable = e.tree.try_read().is_some();
        free.lock().unwrap().push(readable);
    })
}

#[test]
fn replies_owed_by_removal_and_rename_are_sent_after_the_tree_lock_is_released() {
    let e = Arc::new(engine());
    let free = TreeFree::default();
    let park = |fh: u64| {
        let ticket = e.read(fh, 0, 100, ReadMode::Block, noting_tree_free(&e, &free));
        assert!(ticket.is_some(), "the read parked");
    };
    let all_free = |expected: usize, what: &str| {
        let seen = std::mem::take(&mut *free.lock().unwrap());
        assert_eq!(seen.len(), expected, "{what}: replies sent");
        assert!(
            seen.iter().all(|&f| f),
            "{what}: {} of {expected} replies sent under the tree's lock",
            seen.iter().filter(|&&f| !f).count()
        );
    };

    // unlink: more parked reads than the delivery helpers' threshold, so that some replies
    // go out from the helper threads.
    let s = create(&e, ROOT, "s");
    let readers: Vec<u64> = (0..100).map(|_| open_reader(&e, s)).collect();
    readers.iter().for_each(|&fh| park(fh));
    e.unlink(ROOT, b"s").unwrap();
    all_free(100, "unlink");

    // rmdir: the group's order readers get end-of-file.
    let g = mkdir(&e, ROOT, "g");
    park(open_reader(&e, order_ino(&e, g)));
    e.rmdir(ROOT, b"g").unwrap();
    all_free(1, "rmdir");

    // rename over a stream: the replaced stream's readers get end-of-file.
    create(&e, ROOT, "a");
    let b = create(&e, ROOT, "b");
    park(open_reader(&e, b));
    e.rename(ROOT, b"a", ROOT, b"b", false).unwrap();
    all_free(1, "rename over b");

    // rename into a group whose depth drops the message a blocked writer waits on.
    let (one, shallow) = (mkdir(&e, ROOT, "one"), mkdir(&e, ROOT, "shallow"));
    ctl(&e, one, "write one");
    ctl(&e, shallow, "depth 1");
    let m = create(&e, one, "m");
    let (w1, w2) = (open_writer(&e, m), open_writer(&e, m));
    let first = WriteRequest { data: b"first", writer: 1, offset: 0, nonblock: false };
    assert!(e.write(w1, &first, || Some(5), noting_tree_free(&e, &free)).is_some());
    let (second, ticket) = start_write(&e, w2, b"second", false);
    assert!(ticket.is_some());
    e.rename(one, b"m", shallow, b"m", false).unwrap();
    all_free(1, "rename into a shallower group");
    assert_eq!(write_outcome(&second), None, "the kept message's writer still waits");
}

// ---------------------------------------------------------------------------------------
// 9. Metadata
// ---------------------------------------------------------------------------------------

#[test]
fn create_and_mkdir_take_owner_and_mode_from_the_caller() {
    let e = engine();
    let caller = Caller { uid: 1000, gid: 100 };
    let s = e.create(ROOT, b"s", 0o640, caller).unwrap();
    assert_eq!((s.kind, s.perm, s.uid, s.gid, s.size), (Kind::File, 0o640, 1000, 100, 0));
    let g = e.mkdir(ROOT, b"g", 0o750, Caller { uid: 7, gid: 8 }).unwrap();
    assert_eq!((g.kind, g.perm, g.uid, g.gid), (Kind::Directory, 0o750, 7, 8));
    assert_eq!(e.getattr(s.ino).unwrap().perm, 0o640);
    assert_eq!(e.lookup(ROOT, b"g").unwrap().uid, 7);
}

#[test]
fn setattr_changes_mode_and_owner() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let g = mkdir(&e, ROOT, "g");
    let changed = e.setattr(s, SetAttr { perm: Some(0o600), ..SetAttr::default() }).unwrap();
    assert_eq!(changed.perm, 0o600);
    let changed = e.setattr(s, SetAttr { uid: Some(42), gid: Some(43), ..SetAttr::default() }).unwrap();
    assert_eq!((changed.perm, changed.uid, changed.gid), (0o600, 42, 43));
    let attr = e.getattr(s).unwrap();
    assert_eq!((attr.perm, attr.uid, attr.gid), (0o600, 42, 43));

    e.setattr(g, SetAttr { perm: Some(0o700), gid: Some(5), ..SetAttr::default() }).unwrap();
    let attr = e.getattr(g).unwrap();
    assert_eq!((attr.kind, attr.perm, attr.uid, attr.gid), (Kind::Directory, 0o700, 0, 5));
}

#[test]
fn a_static_streams_size_is_its_retained_bytes_and_mtime_follows_writes() {
    let e = engine();
    ctl(&e, ROOT, "replay all\ndata static");
    let s = create(&e, ROOT, "s");
    assert_eq!(e.getattr(s).unwrap().size, 0);
    // Set the mtime into the past (as `touch -d` does): it sticks until the next message.
    let past = SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_800);
    let change = SetAttr { mtime: Some(past), ..SetAttr::default() };
    assert_eq!(e.setattr(s, change).unwrap().mtime, past);
    assert_eq!(e.getattr(s).unwrap().mtime, past);
    let before_write = SystemTime::now();
    publish(&e, s, &[b"12345", b"678"]);
    let after = e.getattr(s).unwrap();
    assert_eq!(after.size, 8);
    assert!(after.mtime >= before_write, "a message sets mtime to its time: {:?}", after.mtime);
    publish(&e, s, &[b"9"]);
    let later = e.getattr(s).unwrap();
    assert_eq!(later.size, 9);
    assert!(later.mtime >= after.mtime);
    assert_eq!(e.lookup(ROOT, b"s").unwrap().size, 9);
}

// ---------------------------------------------------------------------------------------
// 10. cancel
// ---------------------------------------------------------------------------------------

#[test]
fn cancel_completes_a_parked_read_and_loses_nothing() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let (slot, ticket) = start_read(&e, r, 100, ReadMode::Block);
    let ticket = ticket.expect("parked");
    assert!(e.cancel(r, ticket, Errno::EINTR));
    assert_eq!(taken(&slot), Some(Err(Errno::EINTR)));
    assert!(!e.cancel(r, ticket, Errno::EINTR), "already cancelled");

    publish(&e, s, &[b"not lost"]);
    assert!(is_pending(&slot), "the cancelled callback does not run again");
    expect_read(&e, r, 100, b"not lost");

    // A read completed by a write can no longer be cancelled.
    let (slot, ticket) = start_read(&e, r, 100, ReadMode::Block);
    let ticket = ticket.expect("parked");
    publish(&e, s, &[b"delivered"]);
    assert_eq!(taken(&slot), Some(Ok(b"delivered".to_vec())));
    assert!(!e.cancel(r, ticket, Errno::EINTR));
    assert!(is_pending(&slot));
    // Nor can a read on a handle that is gone.
    e.release(r);
    assert!(!e.cancel(r, ticket, Errno::EINTR));
}

// ---------------------------------------------------------------------------------------
// 11. poll
// ---------------------------------------------------------------------------------------

/// A poller that counts how often it was told.
fn poll_counter() -> (Arc<AtomicUsize>, PollCallback) {
    let told = Arc::new(AtomicUsize::new(0));
    let count = told.clone();
    (
        told,
        Arc::new(move || {
            count.fetch_add(1, Ordering::SeqCst);
        }),
    )
}

#[test]
fn poll_reports_readiness_and_tells_the_poller_of_every_write() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let (told, poller) = poll_counter();
    assert_eq!(e.poll(r, Some(poller)), Ok(false));
    assert_eq!(told.load(Ordering::SeqCst), 0);
    publish(&e, s, &[b"one"]);
    assert_eq!(told.load(Ordering::SeqCst), 1, "the poller was told when data arrived");
    assert_eq!(e.poll(r, None), Ok(true));
    // Already readable, it is told again: an edge-triggered waiter needs every edge.
    publish(&e, s, &[b"two"]);
    assert_eq!(told.load(Ordering::SeqCst), 2);
    expect_read(&e, r, 100, b"one");
    expect_read(&e, r, 100, b"two");
    assert_eq!(e.poll(r, None), Ok(false), "read dry, it is not ready until the next write");
    let other = create(&e, ROOT, "other");
    publish(&e, other, &[b"elsewhere"]);
    assert_eq!(told.load(Ordering::SeqCst), 2, "another stream's write does not tell it");
    publish(&e, s, &[b"three"]);
    assert_eq!(told.load(Ordering::SeqCst), 3);

    // A later poll's poller replaces it, readable or not.
    let (told_again, poller) = poll_counter();
    assert_eq!(e.poll(r, Some(poller)), Ok(true));
    publish(&e, s, &[b"four"]);
    assert_eq!((told.load(Ordering::SeqCst), told_again.load(Ordering::SeqCst)), (3, 1));
    // Once the reader is released, nobody is told.
    e.release(r);
    publish(&e, s, &[b"five"]);
    assert_eq!(told_again.load(Ordering::SeqCst), 1);

    // order polls too.
    let order = open_reader(&e, order_ino(&e, ROOT));
    let (told, poller) = poll_counter();
    assert_eq!(e.poll(order, Some(poller)), Ok(false));
    publish(&e, s, &[b"x"]);
    assert_eq!(told.load(Ordering::SeqCst), 1);
    assert_eq!(e.poll(order, None), Ok(true));
}

// ---------------------------------------------------------------------------------------
// 12. release
// ---------------------------------------------------------------------------------------

#[test]
fn releasing_a_reader_frees_what_only_it_needed() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let keen = open_reader(&e, s);
    let lazy = open_reader(&e, s);
    publish(&e, s, &[&[1u8; 5000], &[2u8; 5000]]);
    expect_read(&e, keen, 8192, &[1u8; 5000]);
    expect_read(&e, keen, 8192, &[2u8; 5000]);
    let held = e.usage().memory_used;
    assert!(held >= 10_000, "the lazy reader's backlog is held: {held}");
    assert_eq!(size(&e, s), 10_000);
    e.release(lazy);
    assert_eq!(size(&e, s), 0);
    assert!(e.usage().memory_used < held);
    assert_eq!(e.usage().memory_used, 0);
    // A released handle is gone.
    assert_eq!(read_now(&e, lazy, 100), Err(Errno::EBADF));
}

// ---------------------------------------------------------------------------------------
// 13. blocking writes, whole-file messages, static mode
// ---------------------------------------------------------------------------------------

type WriteSlot = Arc<Mutex<Option<Result<()>>>>;

/// Starts a write; returns where its outcome lands and the ticket if it blocked.
fn start_write(e: &Engine, fh: u64, data: &[u8], nonblock: bool) -> (WriteSlot, Option<Ticket>) {
    let slot: WriteSlot = Arc::new(Mutex::new(None));
    let target = slot.clone();
    let ticket = e.write(
        fh,
        &WriteRequest { data, writer: 1, offset: 0, nonblock },
        || Some(data.len() as u64),
        Box::new(move |result| assert!(target.lock().unwrap().replace(result).is_none(), "completed twice")),
    );
    (slot, ticket)
}

fn write_outcome(slot: &WriteSlot) -> Option<Result<()>> {
    slot.lock().unwrap().take()
}

#[test]
fn write_one_waits_for_a_reader_to_receive_the_message() {
    let e = engine();
    ctl(&e, ROOT, "write one");
    let s = create(&e, ROOT, "s");
    let w = open_writer(&e, s);
    // No reader yet: the writer waits, and the message waits for the first reader, even
    // under replay off.
    let (slot, ticket) = start_write(&e, w, b"hello", false);
    assert!(ticket.is_some());
    assert_eq!(write_outcome(&slot), None);
    let r = open_reader(&e, s);
    assert_eq!(write_outcome(&slot), None, "opening is not receiving");
    expect_read(&e, r, 2, b"he");
    assert_eq!(write_outcome(&slot), None, "half a message is not the message");
    expect_read(&e, r, 100, b"llo");
    assert_eq!(write_outcome(&slot), Some(Ok(())));
    // A reader parked in read receives the message during the write: no wait at all.
    let (read_slot, _) = start_read(&e, r, 100, ReadMode::Block);
    let (slot, ticket) = start_write(&e, w, b"again", false);
    assert_eq!(ticket, None);
    assert_eq!(write_outcome(&slot), Some(Ok(())));
    assert_eq!(taken(&read_slot), Some(Ok(b"again".to_vec())));
}

#[test]
fn write_one_with_o_nonblock_and_no_reader_commits_nothing() {
    let e = engine();
    ctl(&e, ROOT, "write one\nreplay all");
    let s = create(&e, ROOT, "s");
    let w = open_writer(&e, s);
    let (slot, ticket) = start_write(&e, w, b"x", true);
    assert_eq!((ticket, write_outcome(&slot)), (None, Some(Err(Errno::EAGAIN))));
    assert_eq!(size(&e, s), 0);
    // With a reader it commits and returns at once, received or not.
    let r = open_reader(&e, s);
    let (slot, ticket) = start_write(&e, w, b"y", true);
    assert_eq!((ticket, write_outcome(&slot)), (None, Some(Ok(()))));
    expect_read(&e, r, 10, b"y");
}

#[test]
fn write_all_waits_for_every_reader_open_at_the_commit() {
    let e = engine();
    ctl(&e, ROOT, "write all");
    let s = create(&e, ROOT, "s");
    let (fast, slow, w) = (open_reader(&e, s), open_reader(&e, s), open_writer(&e, s));
    let (slot, ticket) = start_write(&e, w, b"m", false);
    assert!(ticket.is_some());
    let late = open_reader(&e, s); // opened after the commit: does not count
    expect_read(&e, fast, 10, b"m");
    assert_eq!(write_outcome(&slot), None, "the slow reader has not read it");
    expect_read(&e, slow, 10, b"m");
    assert_eq!(write_outcome(&slot), Some(Ok(())));
    expect_errno(&e, late, Errno::EAGAIN);
    // A reader that closes stops counting.
    let (slot, _) = start_write(&e, w, b"n", false);
    expect_read(&e, fast, 10, b"n");
    expect_read(&e, late, 10, b"n");
    assert_eq!(write_outcome(&slot), None);
    e.release(slow);
    assert_eq!(write_outcome(&slot), Some(Ok(())));
    // With nobody reading there is nobody to wait for.
    e.release(fast);
    e.release(late);
    let (slot, ticket) = start_write(&e, w, b"o", false);
    assert_eq!((ticket, write_outcome(&slot)), (None, Some(Ok(()))));
}

#[test]
fn a_blocked_write_cancelled_by_a_signal_succeeds_and_stays_committed() {
    let e = engine();
    ctl(&e, ROOT, "write all\nreplay all");
    let s = create(&e, ROOT, "s");
    let (r, w) = (open_reader(&e, s), open_writer(&e, s));
    let (slot, ticket) = start_write(&e, w, b"kept", false);
    let ticket = ticket.expect("blocked");
    assert!(e.cancel(w, ticket, Errno::EINTR));
    assert_eq!(write_outcome(&slot), Some(Ok(())), "committed: reported as written");
    expect_read(&e, r, 10, b"kept");
    assert!(!e.cancel(w, ticket, Errno::EINTR));
}

#[test]
fn a_write_one_message_whose_writer_got_a_signal_is_kept_for_the_next_reader() {
    let e = engine();
    ctl(&e, ROOT, "write one");
    let s = create(&e, ROOT, "s");
    let (w1, w2) = (open_writer(&e, s), open_writer(&e, s));
    let (first, ticket) = start_write(&e, w1, b"first", false);
    let (second, second_ticket) = start_write(&e, w2, b"second", false);
    assert!(second_ticket.is_some());
    // A signal answers the first writer: its message is committed, so it succeeds...
    assert!(e.cancel(w1, ticket.expect("blocked"), Errno::EINTR));
    assert_eq!(write_outcome(&first), Some(Ok(())));
    assert_eq!(size(&e, s), 11, "both messages are retained");
    // ...and the first reader to open (replay off) still starts with it.
    let r = open_reader(&e, s);
    expect_read(&e, r, 100, b"first");
    assert_eq!(write_outcome(&second), None, "the second message is not received yet");
    expect_read(&e, r, 100, b"second");
    assert_eq!(write_outcome(&second), Some(Ok(())));
    expect_errno(&e, r, Errno::EAGAIN);
    // Received: replay off keeps nothing more, and a later reader starts after it.
    assert_eq!(size(&e, s), 0);
    let late = open_reader(&e, s);
    expect_errno(&e, late, Errno::EAGAIN);
}

#[test]
fn an_awaited_message_whose_writer_was_answered_still_goes_with_depth_clear_or_removal() {
    let e = engine();
    ctl(&e, ROOT, "write one");
    let s = create(&e, ROOT, "s");
    let w = open_writer(&e, s);
    let answer = |message: &[u8]| {
        let (slot, ticket) = start_write(&e, w, message, false);
        assert!(e.cancel(w, ticket.expect("blocked"), Errno::EINTR));
        assert_eq!(write_outcome(&slot), Some(Ok(())));
    };
    // depth drops the older of two: the next reader starts with the newer, without ENOBUFS.
    answer(b"old");
    answer(b"new");
    ctl(&e, ROOT, "depth 1");
    let r = open_reader(&e, s);
    expect_read(&e, r, 100, b"new");
    expect_errno(&e, r, Errno::EAGAIN);
    e.release(r);
    // clear drops it: nothing is kept for the next reader.
    answer(b"cleared");
    ctl(&e, ROOT, "clear");
    let r = open_reader(&e, s);
    expect_errno(&e, r, Errno::EAGAIN);
    e.release(r);
    assert_eq!(e.usage().memory_used, 0);
    // Removal: the stream's memory returns once its last handle goes.
    answer(b"removed");
    e.unlink(ROOT, b"s").unwrap();
    e.release(w);
    assert_eq!(e.usage().memory_used, 0);
}

#[test]
fn answering_one_write_all_writer_early_leaves_the_others_waiting() {
    let e = engine();
    ctl(&e, ROOT, "write all");
    let s = create(&e, ROOT, "s");
    let (fast, slow) = (open_reader(&e, s), open_reader(&e, s));
    let (w1, w2) = (open_writer(&e, s), open_writer(&e, s));
    let (first, ticket) = start_write(&e, w1, b"m1", false);
    let (second, _) = start_write(&e, w2, b"m2", false);
    assert!(e.cancel(w1, ticket.expect("blocked"), Errno::EINTR));
    assert_eq!(write_outcome(&first), Some(Ok(())));
    // The other write still waits for both readers open at its commit, and both readers
    // get both messages.
    expect_read(&e, fast, 10, b"m1");
    expect_read(&e, fast, 10, b"m2");
    assert_eq!(write_outcome(&second), None, "the slow reader has not read m2");
    expect_read(&e, slow, 10, b"m1");
    assert_eq!(write_outcome(&second), None, "the slow reader has not read m2");
    expect_read(&e, slow, 10, b"m2");
    assert_eq!(write_outcome(&second), Some(Ok(())));
}

#[test]
fn writers_waiting_on_a_removed_or_cleared_stream_are_released() {
    let e = engine();
    ctl(&e, ROOT, "write all");
    let s = create(&e, ROOT, "s");
    let (_r, w) = (open_reader(&e, s), open_writer(&e, s));
    let (cleared, _) = start_write(&e, w, b"a", false);
    ctl(&e, ROOT, "clear");
    assert_eq!(write_outcome(&cleared), Some(Ok(())), "its message is gone: nothing to wait for");
    let (removed, _) = start_write(&e, w, b"b", false);
    assert_eq!(write_outcome(&removed), None);
    e.unlink(ROOT, b"s").unwrap();
    assert_eq!(write_outcome(&removed), Some(Ok(())));
}

#[test]
fn frame_close_publishes_everything_written_at_close() {
    let e = engine();
    ctl(&e, ROOT, "frame close\nreplay all");
    let s = create(&e, ROOT, "s");
    let (r, w) = (open_reader(&e, s), open_writer(&e, s));
    for part in [&b"part one, "[..], b"part two, ", b"end"] {
        assert_eq!(write(&e, w, part), Ok(part.len()));
    }
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!(e.flush(w, || false), Ok(()));
    expect_read(&e, r, 100, b"part one, part two, end");
    // Each close publishes what was written since the last; nothing written, nothing sent.
    assert_eq!(e.flush(w, || false), Ok(()));
    expect_errno(&e, r, Errno::EAGAIN);
    // A dying writer publishes nothing.
    write(&e, w, b"half").unwrap();
    assert_eq!(e.flush(w, || true), Ok(()));
    e.release(w);
    expect_errno(&e, r, Errno::EAGAIN);
}

#[test]
fn frame_close_refuses_a_message_over_the_limit_whole() {
    let e = engine_with(Limits { max_message: 10, memory: MIB });
    ctl(&e, ROOT, "frame close");
    let s = create(&e, ROOT, "s");
    let (r, w) = (open_reader(&e, s), open_writer(&e, s));
    assert_eq!(write(&e, w, b"123456"), Ok(6));
    assert_eq!(write(&e, w, b"789012"), Err(Errno::EFBIG));
    assert_eq!(write(&e, w, b"3"), Err(Errno::EFBIG), "the message stays refused");
    assert_eq!(e.flush(w, || false), Ok(()));
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!(write(&e, w, b"fresh"), Ok(5), "a close starts a new message");
    assert_eq!(e.flush(w, || false), Ok(()));
    expect_read(&e, r, 100, b"fresh");
}

#[test]
fn frame_close_buffers_count_against_the_ceiling_and_enospc_refuses_the_message() {
    let e = engine_with(Limits { max_message: 8 * MIB, memory: 8 * MIB });
    ctl(&e, ROOT, "frame close\nreplay all");
    let s = create(&e, ROOT, "s");
    let (w1, w2) = (open_writer(&e, s), open_writer(&e, s));
    let chunk = vec![b'z'; MIB as usize];
    for _ in 0..5 {
        assert_eq!(write(&e, w1, &chunk), Ok(chunk.len()));
    }
    assert!(e.usage().memory_used >= 5 * MIB, "the buffer is counted");
    assert_eq!(write(&e, w2, &chunk), Ok(chunk.len()));
    // Room for one more: the second fails and dooms w2's message, not w1's.
    let refused = (0..3).find(|_| write(&e, w2, &chunk).is_err());
    assert!(refused.is_some(), "8 MiB cannot hold 5 + 4 MiB");
    assert_eq!(write(&e, w2, b"more"), Err(Errno::ENOSPC), "the message stays refused");
    assert_eq!(e.flush(w2, || false), Ok(()));
    assert_eq!(e.flush(w1, || false), Ok(()), "an admitted message publishes at close");
    let r = open_reader(&e, s);
    expect_read(&e, r, 8 * MIB as u32, &vec![b'z'; 5 * MIB as usize]);
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!(write(&e, w2, b"fresh"), Ok(5), "a close starts a new message");
}

/// Reads `size` bytes at `offset` through a static file: never parks.
fn read_static(e: &Engine, fh: u64, offset: u64, size: u32) -> ReadResult {
    let slot: Slot = Arc::new(Mutex::new(None));
    let target = slot.clone();
    let parked =
        e.read(fh, offset, size, ReadMode::Block, Box::new(move |r| *target.lock().unwrap() = Some(r)));
    assert_eq!(parked, None, "static reads never block");
    taken(&slot).expect("a static read completes at once")
}

#[test]
fn static_mode_reads_history_by_offset_with_an_end() {
    let e = engine();
    ctl(&e, ROOT, "replay all\ndata static");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"one\n", b"two\n", b"three\n"]);
    let (fh, kind) = e.open(s, true, false, OWNER).unwrap();
    assert_eq!(kind, OpenKind::Static);
    let read_at = |offset| read_static(&e, fh, offset, 5);
    assert_eq!(read_at(0), Ok(b"one\nt".to_vec()));
    assert_eq!(read_at(8), Ok(b"three".to_vec()));
    assert_eq!(read_at(14), Ok(Vec::new()), "end of file");
    publish(&e, s, &[b"four\n"]);
    assert_eq!(read_at(14), Ok(b"four\n".to_vec()), "writers keep appending");
    // A group in another mode is not affected.
    let g = mkdir(&e, ROOT, "g");
    ctl(&e, g, "data message");
    let t = create(&e, g, "t");
    assert_eq!(e.open(t, true, false, OWNER).unwrap().1, OpenKind::Stream);
}

#[test]
fn static_offsets_count_every_byte_ever_written_whatever_depth_drops() {
    let e = engine();
    ctl(&e, ROOT, "replay all\ndata static\ndepth 2");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"a1\n", b"b22\n", b"c333\n"]);
    // Every byte ever written counts: "a1\n" was dropped, the others keep their offsets.
    assert_eq!(e.getattr(s).unwrap().size, 12);
    let follower = open_reader(&e, s);
    assert_eq!(read_static(&e, follower, 3, 100), Ok(b"b22\nc333\n".to_vec()));
    assert_eq!(read_static(&e, follower, 12, 100), Ok(Vec::new()), "at the end");
    // A writer outruns it: what it would read next was dropped, so it reads on from the
    // oldest retained message, whole, and then from where that read ended.
    publish(&e, s, &[b"d4444\n", b"e55555\n", b"f666666\n"]);
    assert_eq!(e.getattr(s).unwrap().size, 33);
    assert_eq!(read_static(&e, follower, 12, 7), Ok(b"e55555\n".to_vec()));
    assert_eq!(read_static(&e, follower, 19, 100), Ok(b"f666666\n".to_vec()));
    assert_eq!(read_static(&e, follower, 27, 100), Ok(Vec::new()), "its end is the stream's");
    publish(&e, s, &[b"g\n"]);
    assert_eq!(read_static(&e, follower, 27, 100), Ok(b"g\n".to_vec()));
    // A new reader from the start reads the retained history, not the dropped head.
    let fresh = open_reader(&e, s);
    assert_eq!(read_static(&e, fresh, 0, 100), Ok(b"f666666\ng\n".to_vec()));
    assert_eq!(read_static(&e, fresh, 10, 100), Ok(Vec::new()), "and then its end");
    // A read at another offset (a seek) reads at that offset: the same bytes for good.
    assert_eq!(read_static(&e, fresh, 33, 2), Ok(b"g\n".to_vec()));
    assert_eq!(read_static(&e, fresh, 25, 3), Ok(b"f66".to_vec()));
    // Read there, the dropped head is a hole: zeros, then the retained bytes.
    assert_eq!(read_static(&e, fresh, 20, 8), Ok(b"\0\0\0\0\0f66".to_vec()));
    assert_eq!(read_static(&e, fresh, 2, 4), Ok(vec![0; 4]));
    // From the start again, it skips the hole.
    assert_eq!(read_static(&e, fresh, 0, 4), Ok(b"f666".to_vec()));
    // The page cache reads exactly by offset: the dropped head cannot be mapped.
    assert_eq!(e.read_pages(fresh, 27, 4096), Ok(b"66666\ng\n".to_vec()));
    assert_eq!(e.read_pages(fresh, 0, 4096), Err(Errno::ENODEV));
    // `clear` drops everything and moves no offset; order counts its bytes the same way.
    ctl(&e, ROOT, "clear");
    assert_eq!(e.getattr(s).unwrap().size, 35);
    assert_eq!(read_static(&e, fresh, 0, 100), Ok(Vec::new()));
    assert_eq!(e.getattr(order_ino(&e, ROOT)).unwrap().size, 14, "7 names of 2 bytes");
    publish(&e, s, &[b"h\n"]);
    assert_eq!(e.getattr(order_ino(&e, ROOT)).unwrap().size, 16, "and one more");
}

#[test]
fn stat_gives_no_size_to_a_stream_read_as_a_stream_and_its_history_read_statically() {
    let e = engine();
    ctl(&e, ROOT, "replay all");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"one\n", b"two\n"]);
    let order = order_ino(&e, ROOT);
    assert_eq!((e.getattr(s).unwrap().size, e.getattr(order).unwrap().size), (0, 0));
    assert_eq!((size(&e, s), size(&e, order)), (8, 4), "retained all the same");
    ctl(&e, ROOT, "data coalesce");
    assert_eq!(e.getattr(s).unwrap().size, 0);
    ctl(&e, ROOT, "data static");
    assert_eq!((e.getattr(s).unwrap().size, e.getattr(order).unwrap().size), (8, 4));
}

#[test]
fn page_cache_reads_serve_files_read_by_offset_and_leave_cursors_alone() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    publish(&e, s, &[b"hello"]);
    assert_eq!(e.read_pages(r, 0, 4096), Err(Errno::ENODEV), "a stream has no offsets");
    expect_read(&e, r, 100, b"hello");
    let c = e.open(ctl_ino(&e, ROOT), true, false, OWNER).unwrap().0;
    assert!(e.read_pages(c, 0, 4096).unwrap().starts_with(b"data message\n"), "ctl reads by offset");
    ctl(&e, ROOT, "replay all\ndata static");
    publish(&e, s, &[b"history"]);
    let fh = open_reader(&e, s);
    // Offsets count every byte ever written: "hello" (read and dropped) took the first five.
    assert_eq!(e.read_pages(fh, 7, 4096), Ok(b"story".to_vec()));
}

mod links;
