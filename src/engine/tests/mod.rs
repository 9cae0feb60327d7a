//! Engine behaviour through its public operations, without FUSE: the shared helpers here,
//! the tests in one file per subject (tree, writing, reading, retention, ctl, order, removal,
//! modes, links, catalogue, stats, follow, shared).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use super::*;
use crate::storage::memory::MemoryStore;

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

const OWNER: Caller = Caller { uid: 0, gid: 0 };
const MIB: u64 = 1 << 20;
/// The thread a test's close comes from: not the writer (1) of any write(2) in progress.
const CLOSER: u64 = 99;

fn engine_with(limits: Limits) -> Engine {
    Engine::new(GroupConfig::default(), OWNER, limits, Arc::new(MemoryStore)).expect("memory logs open")
}

fn engine() -> Engine {
    engine_with(Limits { max_message: MIB, memory: 64 * MIB })
}

/// What a read returned, as bytes of its own to compare.
type Read = Result<Vec<u8>>;

/// Where a read's callback leaves its result.
type Slot = Arc<Mutex<Option<Read>>>;

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
            let previous = target.lock().unwrap().replace(result.map(|bytes| bytes.to_vec()));
            assert!(previous.is_none(), "a read callback ran twice");
        }),
    );
    (slot, ticket)
}

fn taken(slot: &Slot) -> Option<Read> {
    slot.lock().unwrap().take()
}

fn is_pending(slot: &Slot) -> bool {
    slot.lock().unwrap().is_none()
}

/// A read that must complete at once.
fn read_mode(e: &Engine, fh: u64, size: u32, mode: ReadMode) -> Read {
    let (slot, ticket) = start_read(e, fh, size, mode);
    assert_eq!(ticket, None, "a {mode:?} read parked");
    taken(&slot).unwrap_or_else(|| panic!("a {mode:?} read did not complete at once"))
}

fn read_now(e: &Engine, fh: u64, size: u32) -> Read {
    read_mode(e, fh, size, ReadMode::NonBlock)
}

/// A non-blocking read that must return these bytes.
fn expect_read(e: &Engine, fh: u64, size: u32, want: &[u8]) {
    assert_eq!(read_now(e, fh, size).as_deref(), Ok(want), "reading fh {fh}");
}

/// Reads `want`, a message a read, and then finds nothing more (EAGAIN).
fn expect_messages(e: &Engine, fh: u64, want: &[&[u8]]) {
    for message in want {
        expect_read(e, fh, 100, message);
    }
    expect_errno(e, fh, Errno::EAGAIN);
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
/// starts a write(2) of `call` bytes, or (None) must continue the one in progress; all are
/// the same system call (`call_id` 1).
fn write_part(e: &Engine, fh: u64, data: &[u8], offset: u64, call: Option<u64>) -> Result<usize> {
    write_in_call(e, fh, data, offset, call, 1)
}

/// `write_part` from system call `id` (what `call_id` answers for writer 1).
fn write_in_call(e: &Engine, fh: u64, data: &[u8], offset: u64, call: Option<u64>, id: u64) -> Result<usize> {
    let outcome = Arc::new(Mutex::new(None));
    let slot = outcome.clone();
    let request = WriteRequest { data, writer: 1, offset, nonblock: false, pid: 0, uid: 0, gid: 0 };
    let size_of_call = || Some(call.expect("this request continues a write(2)"));
    let call_id = |writer| (writer == 1).then_some(id);
    let ticket =
        e.write(fh, &request, size_of_call, call_id, Box::new(move |r| *slot.lock().unwrap() = Some(r)));
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

type WriteSlot = Arc<Mutex<Option<Result<()>>>>;

/// Starts a write; returns where its outcome lands and the ticket if it blocked.
fn start_write(e: &Engine, fh: u64, data: &[u8], nonblock: bool) -> (WriteSlot, Option<Ticket>) {
    let slot: WriteSlot = Arc::new(Mutex::new(None));
    let target = slot.clone();
    let ticket = e.write(
        fh,
        &WriteRequest { data, writer: 1, offset: 0, nonblock, pid: 0, uid: 0, gid: 0 },
        || Some(data.len() as u64),
        |_| Some(1),
        Box::new(move |result| assert!(target.lock().unwrap().replace(result).is_none(), "completed twice")),
    );
    (slot, ticket)
}

fn write_outcome(slot: &WriteSlot) -> Option<Result<()>> {
    slot.lock().unwrap().take()
}

/// Reads `size` bytes at `offset` through a static file: never parks.
fn read_static(e: &Engine, fh: u64, offset: u64, size: u32) -> Read {
    let slot: Slot = Arc::new(Mutex::new(None));
    let target = slot.clone();
    let keep = move |r: ReadResult| *target.lock().unwrap() = Some(r.map(|bytes| bytes.to_vec()));
    let parked = e.read(fh, offset, size, ReadMode::Block, Box::new(keep));
    assert_eq!(parked, None, "static reads never block");
    taken(&slot).expect("a static read completes at once")
}

mod catalogue;
mod ctl;
mod follow;
mod links;
mod modes;
mod order;
mod queues;
mod reading;
mod removal;
mod retention;
mod shared;
mod stats;
mod storage;
mod tree;
mod writing;
