//! The mqfs engine: groups of message streams, their history and their readers, behind
//! file-system-shaped operations. It knows nothing of FUSE; `crate::fuse` maps kernel
//! requests onto it.

mod ackwait;
pub mod channel;
pub mod config;
pub mod ctl;
mod dead;
pub mod delivery;
pub mod errno;
mod handle;
pub mod memory;
pub mod presets;
pub mod recovery;
mod saving;
pub mod stream;
mod synced;
pub mod tree;
mod upstream;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{RwLock, RwLockWriteGuard};

use ackwait::Timer;
use channel::Wakeups;
pub use channel::{
    Origin, PollCallback, ReadCallback, ReadMode, ReadResult, ReaderId, Settle, Settled, Stats, Ticket,
    WriteCallback,
};
use config::Frame;
pub use config::{DataMode, GroupConfig};
use dead::Graveyard;
pub use errno::{Errno, Result};
use handle::{CtlFile, Handle, Source, Writing};
use memory::Memory;
use saving::Saving;
use stream::{Author, WriteWaiter};
pub use tree::{Attr, Caller, Entry, Ino, Kind, ROOT, SetAttr};
use tree::{Special, Tree};
pub use upstream::{Op, Outgoing, Uplink, Upstream, Via};

use crate::storage::{Catalogue, Stamp, Store};

/// Mount-wide settings the engine enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest message a single write may publish, in bytes.
    pub max_message: u64,
    /// The most memory all retained history may take, in bytes.
    pub memory: u64,
}

/// One WRITE request: a write(2) arrives as one or several, in order.
#[derive(Clone, Copy, Debug)]
pub struct WriteRequest<'a> {
    pub data: &'a [u8],
    /// Who sent it, as an opaque number the same for every request of one write(2) and
    /// different for concurrent write(2)s (the glue uses the caller's thread id).
    pub writer: u64,
    /// The offset the request carries: a later request of a write(2) carries the offset
    /// where the previous one ended.
    pub offset: u64,
    /// The writer asked not to block (O_NONBLOCK).
    pub nonblock: bool,
    /// The writing process and its user and group, for the message's stamp.
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
}

/// How long `Engine::close` waits for the logs to reach stable storage.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The largest ctl write(2) accepted (a longer one fails with EINVAL); it is parsed and
/// applied whole.
pub const CTL_MAX: u64 = 1 << 20;

/// What an open file is, as the FUSE layer needs to know to open it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenKind {
    /// A stream or `order`: no offsets, no end of file while it exists.
    Stream,
    /// `ctl`: a small text file read by offset.
    Ctl,
    /// A stream or `order` in `data static` mode: read by offset, with an end of file.
    Static,
}

/// The message a descriptor's last read returned bytes of: who wrote it and when (its
/// stamp), its number in its stream, and how many times it has been delivered (1: the first
/// time; more: a redelivery).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub seq: u64,
    pub deliveries: u32,
    pub stamp: Stamp,
}

/// Usage figures for statfs.
pub struct Usage {
    pub memory_used: u64,
    pub memory_limit: u64,
    pub nodes: u64,
}

pub struct Engine {
    tree: Arc<RwLock<Tree>>,
    handles: RwLock<HashMap<u64, Arc<Handle>>>,
    next_handle: AtomicU64,
    next_ticket: AtomicU64,
    memory: Arc<Memory>,
    limits: Limits,
    /// Where the namespace is saved (none: it is not, and the tree tracks no changes).
    saving: Option<Arc<Saving>>,
    /// Where a queue's dead messages go.
    graveyard: Graveyard,
    /// Rings the queues whose messages in flight are due (`ackwait`).
    timer: Arc<Timer>,
    /// Where a shared mount's namespace changes and writes go (`upstream.rs`).
    upstream: Option<Arc<dyn Upstream>>,
    /// `close` was called: the mount ends.
    closed: std::sync::atomic::AtomicBool,
}

impl Engine {
    /// An engine whose root group starts with `root_config`, owned by `owner`, its
    /// channels' logs made by `store`, its namespace saved nowhere (fails as the root's
    /// `order` log does).
    pub fn new(
        root_config: GroupConfig,
        owner: Caller,
        limits: Limits,
        store: Arc<dyn Store>,
    ) -> Result<Engine> {
        Engine::fresh(root_config, owner, limits, store, None)
    }

    /// An engine with the namespace `catalogue` saved and the history `store` holds, which
    /// it saves from now on; a new one (nothing saved) as `new` would make it.
    /// `root_config` is also what a group's saved configuration lacks (a setting newer than
    /// its record) starts with. After a crash, each group's `order` is brought in line with
    /// its streams (see `recovery`).
    pub fn with_catalogue(
        root_config: GroupConfig,
        owner: Caller,
        limits: Limits,
        store: Arc<dyn Store>,
        catalogue: Box<dyn Catalogue>,
    ) -> std::result::Result<Engine, String> {
        let memory = Arc::new(Memory::new(limits.memory));
        let records = catalogue.load().map_err(|e| format!("catalogue: cannot load: {e}"))?;
        let mut tree = if records.is_empty() {
            Tree::new(root_config, owner, 0o755, memory.clone(), store.clone())
                .map_err(|e| format!("cannot open the root's order log: {e}"))?
        } else {
            let tree = Tree::restore(records, root_config, memory.clone(), store.clone())?;
            tree.reconcile_orders();
            tree
        };
        store.set_aside_unclaimed();
        tree.track_changes();
        let engine = Engine::build(tree, memory, limits, Some(Saving::new(catalogue, store)));
        // A new namespace's root is saved at once, with the configuration it starts with.
        engine.save_changes(engine.tree.write());
        Ok(engine)
    }

    /// An engine whose tree is shared with other mounts through `upstream`: its namespace
    /// changes ordered, and its messages published, by it; its channels' logs in memory (the
    /// mount's copy of what the upstream holds). Its root as `new` makes it, until the
    /// upstream's changes are applied.
    pub fn shared(
        root_config: GroupConfig,
        owner: Caller,
        limits: Limits,
        upstream: Arc<dyn Upstream>,
    ) -> Result<Engine> {
        let store = Arc::new(crate::storage::memory::MemoryStore);
        Engine::fresh(root_config, owner, limits, store, Some(upstream))
    }

    /// A tree of only its root, its namespace saved nowhere.
    fn fresh(
        root_config: GroupConfig,
        owner: Caller,
        limits: Limits,
        store: Arc<dyn Store>,
        upstream: Option<Arc<dyn Upstream>>,
    ) -> Result<Engine> {
        let memory = Arc::new(Memory::new(limits.memory));
        let mut tree = Tree::new(root_config, owner, 0o755, memory.clone(), store)?;
        tree.upstream = upstream;
        Ok(Engine::build(tree, memory, limits, None))
    }

    fn build(tree: Tree, memory: Arc<Memory>, limits: Limits, saving: Option<Saving>) -> Engine {
        let upstream = tree.upstream.clone();
        let tree = Arc::new(RwLock::new(tree));
        let saving = saving.map(Arc::new);
        let graveyard = Graveyard { tree: Arc::downgrade(&tree), saving: saving.clone() };
        Engine {
            tree,
            timer: Timer::new(graveyard.clone()),
            graveyard,
            handles: RwLock::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            next_ticket: AtomicU64::new(1),
            memory,
            limits,
            saving,
            upstream,
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Saves what the operation that holds `tree` changed, after releasing the tree.
    fn save_changes(&self, tree: RwLockWriteGuard<Tree>) {
        saving::save_changes(self.saving.as_deref(), tree);
    }

    /// Sets what groups created from now on at given paths start with.
    pub fn set_presets(&self, presets: presets::Presets) {
        self.tree.write().presets = presets;
    }

    /// Looks a name up for the kernel, which then knows the inode until it forgets it (as
    /// after `create` and `mkdir`).
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        let tree = self.tree.read();
        let attr = tree.attr(tree.lookup(parent, name)?)?;
        tree.remember(attr.ino);
        Ok(attr)
    }

    /// The kernel forgot `lookups` of its lookups of `ino`; a removed node it no longer
    /// knows goes.
    pub fn forget(&self, ino: Ino, lookups: u64) {
        if self.tree.read().forget(ino, lookups) {
            let mut tree = self.tree.write();
            tree.purge(ino);
            self.save_changes(tree);
        }
    }

    /// Attributes, also of a node removed while the kernel still knows it (open, or a
    /// working directory): its link count is then 0.
    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        self.tree.read().attr(ino)
    }

    pub fn setattr(&self, ino: Ino, change: SetAttr) -> Result<Attr> {
        self.made_attr(self.change(Op::Setattr { ino, change }))
    }

    pub fn mkdir(&self, parent: Ino, name: &[u8], perm: u16, caller: Caller) -> Result<Attr> {
        self.made_attr(self.change(Op::Mkdir { parent, name: name.to_vec(), perm, caller }))
    }

    pub fn create(&self, parent: Ino, name: &[u8], perm: u16, caller: Caller) -> Result<Attr> {
        self.mknod(parent, name, Kind::File, perm, 0, caller)
    }

    /// A stream (`Kind::File`), FIFO, socket or device node.
    pub fn mknod(
        &self,
        parent: Ino,
        name: &[u8],
        kind: Kind,
        perm: u16,
        rdev: u32,
        caller: Caller,
    ) -> Result<Attr> {
        self.made_attr(self.change(Op::Mknod { parent, name: name.to_vec(), kind, perm, rdev, caller }))
    }

    pub fn symlink(&self, parent: Ino, name: &[u8], target: &[u8], caller: Caller) -> Result<Attr> {
        let op = Op::Symlink { parent, name: name.to_vec(), target: target.to_vec(), caller };
        self.made_attr(self.change(op))
    }

    /// Gives `ino` the further name `name` in `parent` (a hard link).
    pub fn link(&self, ino: Ino, parent: Ino, name: &[u8]) -> Result<Attr> {
        self.made_attr(self.change(Op::Link { ino, parent, name: name.to_vec() }))
    }

    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        self.tree.read().readlink(ino).map(<[u8]>::to_vec)
    }

    /// The attributes an operation that makes or changes a node gave.
    fn made_attr(&self, outcome: Result<Option<Attr>>) -> Result<Attr> {
        outcome?.ok_or(Errno::EIO)
    }

    /// A node made under the tree's lock, which the kernel then knows as after a lookup
    /// (until it forgets it) if `known`.
    fn made(&self, make: impl FnOnce(&mut Tree) -> Result<Ino>, known: bool) -> Result<Attr> {
        let mut tree = self.tree.write();
        let ino = make(&mut tree)?;
        if known {
            tree.remember(ino);
        }
        let attr = tree.attr(ino);
        self.save_changes(tree);
        attr
    }

    pub fn unlink(&self, parent: Ino, name: &[u8]) -> Result<()> {
        self.change(Op::Unlink { parent, name: name.to_vec() }).map(drop)
    }

    pub fn rmdir(&self, parent: Ino, name: &[u8]) -> Result<()> {
        self.change(Op::Rmdir { parent, name: name.to_vec() }).map(drop)
    }

    pub fn rename(&self, parent: Ino, name: &[u8], to: Ino, to_name: &[u8], no_replace: bool) -> Result<()> {
        let op = Op::Rename { parent, name: name.to_vec(), to, to_name: to_name.to_vec(), no_replace };
        self.change(op).map(drop)
    }

    /// Makes a namespace change under the tree's write lock, then sends the replies it owes
    /// (a removed stream's end-of-file, writes a move released) once the lock is released.
    /// Under the lock a callback that needs the tree would deadlock, and every namespace
    /// operation would wait for the whole fan-out (the delivery helpers' part included).
    fn change_tree(&self, change: impl FnOnce(&mut Tree) -> Result<Wakeups>) -> Result<()> {
        let mut tree = self.tree.write();
        let owed = change(&mut tree);
        self.save_changes(tree);
        drop(owed?);
        Ok(())
    }

    /// Lists a group from cookie `offset` on; see `Tree::readdir`.
    pub fn readdir(&self, ino: Ino, offset: u64, add: impl FnMut(Entry) -> bool) -> Result<()> {
        self.tree.read().readdir(ino, offset, add)
    }

    /// Opens a file for `caller`; a handle opened for reading gets its own cursor.
    pub fn open(&self, ino: Ino, read: bool, write: bool, caller: Caller) -> Result<(u64, OpenKind)> {
        if let (Some(upstream), true) = (&self.upstream, read) {
            // A shared mount's readers need their group's messages to come here.
            let group = match Special::of(ino) {
                Special::Node(ino) => self.tree.read().home_group(ino).ok(),
                Special::Order(group) => Some(group),
                Special::Ctl(_) => None,
            };
            if let Some(group) = group {
                upstream.reading(group);
            }
        }
        let tree = self.tree.read();
        let source = match Special::of(ino) {
            Special::Node(ino) => {
                let stream = tree.stream(ino)?;
                if read {
                    let mut state = stream.state.lock();
                    match &self.upstream {
                        // A shared queue's upstream redelivers what is not acknowledged.
                        Some(upstream) => state.channel.set_settle(|| upstream.settler(ino)),
                        None => state.channel.set_alarm(|| self.timer.alarm(ino, stream)),
                    }
                }
                Source::Stream(stream.clone())
            }
            Special::Order(group) => {
                if write {
                    return Err(Errno::EPERM);
                }
                Source::Order(tree.group(group)?.shared.clone())
            }
            Special::Ctl(group) => {
                let (text, error) =
                    if read { self.ctl_text(&tree, group, caller.uid)? } else { (Vec::new(), None) };
                let handle = Handle::Ctl(CtlFile {
                    group,
                    uid: caller.uid,
                    text,
                    error: parking_lot::Mutex::new(error),
                    writing: Writing::new(Frame::Write),
                });
                let fh = self.insert_handle(handle);
                return Ok((fh, OpenKind::Ctl));
            }
        };
        let (handle, kind) = Handle::open(ino, source, read);
        Ok((self.insert_handle(handle), kind))
    }

    fn insert_handle(&self, handle: Handle) -> u64 {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        self.handles.write().insert(fh, Arc::new(handle));
        fh
    }

    pub fn release(&self, fh: u64) {
        let handle = self.handles.write().remove(&fh);
        if let Some(handle) = handle {
            handle.close();
        }
    }

    /// Reads through `fh`. The result always reaches `callback`: now, or later when data
    /// arrives or the read is cancelled. Returns the ticket of a read left parked.
    pub fn read(
        &self,
        fh: u64,
        offset: u64,
        size: u32,
        mode: ReadMode,
        callback: ReadCallback,
    ) -> Option<Ticket> {
        let handle = match self.handle(fh) {
            Ok(handle) => handle,
            Err(errno) => {
                callback(Err(errno));
                return None;
            }
        };
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        handle.read(offset, size as usize, mode, ticket, callback)
    }

    /// Reads for the page cache (a private mapping's page-in, sendfile, readahead), not for a
    /// read(2) of `fh`: only files read by offset can serve them; see `Handle::read_at`.
    pub fn read_pages(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        self.handle(fh)?.read_at(offset, size as usize)
    }

    /// A signal reached the caller of a parked read or blocked write: the read completes
    /// with `error`, the write with success (its message is committed). False if it had
    /// already completed.
    pub fn cancel(&self, fh: u64, ticket: Ticket, error: Errno) -> bool {
        self.handle(fh).is_ok_and(|handle| handle.cancel(ticket, error))
    }

    /// The message `fh`'s last read returned bytes of (sender identity): None before its
    /// first read, and for a handle that reads no messages (write-only, `data static`, ctl).
    pub fn stamp(&self, fh: u64) -> Result<Option<Received>> {
        Ok(self.handle(fh)?.received())
    }

    /// Whether `fh` is readable now. A `poller` is kept for its reader, replacing the one
    /// before, and called on every message (and when the stream goes) until `fh` is released.
    pub fn poll(&self, fh: u64, poller: Option<PollCallback>) -> Result<bool> {
        Ok(self.handle(fh)?.poll(poller))
    }

    /// Writes one WRITE request's bytes. The outcome always reaches `callback`: at once, or
    /// under `write one`/`write all` once the message was received. Returns the ticket of a
    /// write left blocked. A non-blocking writer never waits: it fails with EAGAIN where it
    /// would have to wait before committing.
    ///
    /// `size_of_call` is asked only for a request that does not continue the handle's
    /// write(2) in progress: how many bytes the write(2) it starts has, None if its caller
    /// is dying (then nothing of it is published: EINTR). `call_id(writer)` is asked for a
    /// write(2) of several requests, on its first request and on each that would continue
    /// it: an opaque identity of the system call `writer` is in now, the same for all the
    /// requests of one write(2) and different for the next (None: it cannot be told, so no
    /// request continues the write(2), which is dropped).
    pub fn write(
        &self,
        fh: u64,
        request: &WriteRequest,
        size_of_call: impl FnOnce() -> Option<u64>,
        call_id: impl Fn(u64) -> Option<u64>,
        callback: WriteCallback,
    ) -> Option<Ticket> {
        let handle = match self.handle(fh) {
            Ok(handle) => handle,
            Err(errno) => {
                callback(Err(errno));
                return None;
            }
        };
        if let Handle::Ctl(ctl) = &*handle {
            callback(self.ctl_request(ctl, request, size_of_call, call_id));
            return None;
        }
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let waiter = WriteWaiter { ticket, nonblock: request.nonblock, callback };
        handle.write(request, size_of_call, call_id, waiter, self.limits.max_message, &self.memory)
    }

    /// A write by a process without CAP_FSETID: clears the stream's setuid bit, and its
    /// setgid bit if it is group-executable, as a write does on other Linux file systems.
    pub fn clear_setid(&self, ino: Ino) {
        let bits = self.tree.read().setid_bits(ino);
        if bits != 0 && self.upstream.is_some() {
            let perm = self.getattr(ino).map(|attr| attr.perm & !bits);
            let change = SetAttr { perm: perm.ok(), ..SetAttr::default() };
            if let Err(errno) = self.change(Op::Setattr { ino, change }) {
                log::warn!("cannot clear the setuid and setgid bits of {ino}: {errno}");
            }
        } else if bits != 0 {
            let mut tree = self.tree.write();
            tree.clear_mode_bits(ino, bits);
            self.save_changes(tree);
        }
    }

    /// A descriptor of `fh` is being closed by thread `closer` (a writer's number, as in
    /// `WriteRequest::writer`). A write(2) through it that its writer left before all its
    /// requests arrived (a short write, a writer killed between requests; `call_id` as for
    /// `write` tells) ends: under `frame write` it is dropped with its reservation. Under
    /// `frame close` what was written through it, a short write's bytes included, is
    /// published now as one message by `caller` (its stamp's pid is `closer`), unless
    /// `dying` says its process was killed (asked only when there is such a message).
    pub fn flush(
        &self,
        fh: u64,
        closer: u64,
        caller: Caller,
        dying: impl FnOnce() -> bool,
        call_id: impl Fn(u64) -> Option<u64>,
    ) -> Result<()> {
        let author = Author { pid: closer as u32, uid: caller.uid, gid: caller.gid, reader: None };
        self.handle(fh)?.flush(closer, author, dying, call_id, &self.graveyard)
    }

    /// fsync(2) of `fh`: `callback` gets the outcome once everything committed to its stream
    /// and its group's `order` (to `order`, for an `order` descriptor) is on stable
    /// storage; at once for ctl, and for logs in memory. No thread waits meanwhile.
    pub fn fsync(&self, fh: u64, callback: WriteCallback) {
        match self.handle(fh) {
            Ok(handle) => handle.sync(callback),
            Err(errno) => callback(Err(errno)),
        }
    }

    /// The mount ends: saves every stream's modification time (messages move it without a
    /// save; after a crash a stream shows its newest retained message's), then has every
    /// log save what reopening it needs, and returns once all of that is on stable storage
    /// (or after `CLOSE_TIMEOUT`, saying so).
    pub fn close(&self) {
        let tree = self.tree.read();
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(saving) = &self.saving {
            saving.queue().add(tree.changes_of(tree.stream_inos()));
        }
        let (closed, done) = std::sync::mpsc::channel();
        let mut logs = 0;
        let mut close = |channel: &mut channel::Channel| {
            let closed = closed.clone();
            channel.close_log(Box::new(move |result| {
                let _ = closed.send(result);
            }));
            logs += 1;
        };
        for ino in tree.stream_inos() {
            if let Ok(stream) = tree.stream(ino) {
                close(&mut stream.state.lock().channel);
            }
        }
        for ino in tree.groups() {
            if let Ok(group) = tree.group(ino) {
                close(&mut group.shared.state.lock().order);
            }
        }
        drop(tree);
        if let Some(saving) = &self.saving {
            saving.save();
        }
        if let Some(upstream) = &self.upstream {
            upstream.close();
        }
        let deadline = std::time::Instant::now() + CLOSE_TIMEOUT;
        for _ in 0..logs {
            match done.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
                Ok(Ok(())) => {}
                Ok(Err(errno)) => log::error!("closing a log: {errno}"),
                Err(_) => {
                    log::error!("the store's logs were not all on stable storage within {CLOSE_TIMEOUT:?}");
                    return;
                }
            }
        }
    }

    /// The numbers of stream `ino` (see `Stats`); ENODATA for any other node, which has none.
    pub fn stream_stats(&self, ino: Ino) -> Result<Stats> {
        let tree = self.tree.read();
        tree.node(tree::Special::node(ino))?;
        match tree.stream(ino) {
            Ok(stream) if Special::of(ino) == Special::Node(ino) => Ok(stream.state.lock().channel.stats()),
            _ => Err(Errno::ENODATA),
        }
    }

    pub fn usage(&self) -> Usage {
        Usage {
            memory_used: self.memory.used(),
            memory_limit: self.memory.limit(),
            nodes: self.tree.read().node_count(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn handle(&self, fh: u64) -> Result<Arc<Handle>> {
        self.handles.read().get(&fh).cloned().ok_or(Errno::EBADF)
    }
}

#[cfg(test)]
mod tests;
