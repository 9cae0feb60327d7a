//! Where history lives. A channel keeps its messages in a [`Log`]; a mount's [`Store`] makes
//! the logs, and its [`Catalogue`] keeps the namespace and every group's configuration. Two
//! stores stand behind this interface: memory ([`memory`], today's segmented log, nothing
//! survives the daemon) and disk ([`disk`], a store directory of segment files with
//! checksummed records, fsync policies and crash recovery). A NATS JetStream store is meant
//! to be the third: nothing here assumes local files.
//!
//! Messages come out as [`Bytes`]: shared, not copied once per reader.

pub mod bytes;
pub mod catalogue;
pub mod disk;
pub mod memory;

use std::time::SystemTime;

pub use bytes::Bytes;

/// An errno, as the engine reports it (`libc` numbers).
pub type Errno = crate::engine::Errno;

/// What is stored with every message besides its bytes: who wrote it and when, and its
/// place among all writes to its group (the number `order` gives it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub time: SystemTime,
    /// The write's number among all writes to the group, counted from 0; `order`'s own
    /// lines carry their own number here.
    pub group_seq: u64,
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Default for Stamp {
    fn default() -> Self {
        Stamp { time: SystemTime::UNIX_EPOCH, group_seq: 0, pid: 0, uid: 0, gid: 0 }
    }
}

/// A message on its way into a log: borrowed (copied in), or an assembled buffer the log
/// may keep as it is.
pub enum Message<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl Message<'_> {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Message::Borrowed(bytes) => bytes,
            Message::Owned(bytes) => bytes,
        }
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Its bytes as a buffer of its own (an assembled one without a copy).
    pub fn into_vec(self) -> Vec<u8> {
        match self {
            Message::Borrowed(bytes) => bytes.to_vec(),
            Message::Owned(bytes) => bytes,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
}

/// Called once everything appended before the request is on stable storage, or with why
/// it cannot be.
pub type SyncCallback = Box<dyn FnOnce(Result<(), Errno>) + Send>;

/// When a disk log's appends reach stable storage on their own (`sync` setting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Only when asked (fsync(2)) and at unmount: the kernel writes back when it will.
    Never,
    /// Every write waits for its message to be on stable storage (writers share syncs).
    Always,
    /// Within this long of the write.
    Interval(std::time::Duration),
}

/// Where a log stands: the numbers every log keeps alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Extent {
    /// Sequence number of the oldest retained message.
    pub first: u64,
    /// Sequence number the next appended message will get.
    pub next: u64,
    /// Retained payload bytes.
    pub bytes: u64,
    /// Payload bytes ever appended: the position where the next message starts.
    pub appended: u64,
}

impl Extent {
    /// Counts a message of `len` bytes nobody will read as appended and dropped.
    pub fn skip(&mut self, len: usize) {
        self.appended += len as u64;
        self.next += 1;
        self.first = self.next;
    }

    /// Drops every retained message from the count.
    pub fn clear(&mut self) {
        self.first = self.next;
        self.bytes = 0;
    }
}

/// One channel's history: an append-only sequence of messages numbered from the log's
/// first, trimmed from the front. Positions count every payload byte ever appended, so a
/// position names the same byte for good (a `data static` file's offsets).
pub trait Log: Send {
    /// Appends one message and returns its sequence number. On error nothing was appended
    /// (EFBIG: larger than the log can index; ENOSPC, EIO: the store's files refused it).
    fn append(&mut self, message: Message<'_>, stamp: &Stamp) -> Result<u64, Errno>;
    /// Takes back the last append, which was never delivered (its write is rolled back).
    fn unappend(&mut self);
    /// The message with sequence number `seq`, if it is retained (EIO if its file cannot be
    /// read back).
    fn get(&self, seq: u64) -> Result<Option<Bytes>, Errno>;
    /// The stamp of message `seq`, if it is retained (EIO as `get`).
    fn stamp(&self, seq: u64) -> Result<Option<Stamp>, Errno>;
    /// Message `seq` and its stamp, if it is retained: what a read returns and keeps (a
    /// log that reads both at once says so, rather than read the message twice).
    fn get_stamped(&self, seq: u64) -> Result<Option<(Bytes, Stamp)>, Errno> {
        let Some(bytes) = self.get(seq)? else { return Ok(None) };
        Ok(self.stamp(seq)?.map(|stamp| (bytes, stamp)))
    }
    /// Appends to `out` up to `size` bytes of the history read as one file, from `position`
    /// (not before `start`); nothing at or past `end`.
    fn read_at(&self, position: u64, size: usize, out: &mut Vec<u8>) -> Result<(), Errno>;
    /// Drops the oldest retained message; returns its length, or None if the log is empty.
    fn pop_front(&mut self) -> Option<usize>;
    /// Counts a message nobody will read as appended and dropped (only on an empty log).
    fn skip(&mut self, len: usize);
    /// Drops every retained message.
    fn clear(&mut self);
    /// Its numbers: first and next sequence numbers, retained and appended bytes.
    fn extent(&self) -> Extent;
    /// Bytes of memory the log holds, charged to the mount's ceiling.
    fn allocated(&self) -> u64;
    /// The bytes of memory appending a message of `len` bytes would allocate.
    fn growth(&self, len: usize) -> u64;
    /// Calls `done` once every message appended so far is on stable storage (at once for a
    /// log that has none).
    fn sync(&self, done: SyncCallback);
    /// Changes when appends reach stable storage on their own.
    fn set_policy(&mut self, policy: SyncPolicy);
    /// The mount ends: saves what reopening the log needs, and calls `done` once that and
    /// every message are on stable storage (at once for a log that has none).
    fn close(&mut self, done: SyncCallback) {
        done(Ok(()));
    }

    fn first_seq(&self) -> u64 {
        self.extent().first
    }

    fn next_seq(&self) -> u64 {
        self.extent().next
    }

    /// Retained payload bytes.
    fn bytes(&self) -> u64 {
        self.extent().bytes
    }

    /// Position of the oldest retained byte.
    fn start(&self) -> u64 {
        let extent = self.extent();
        extent.appended - extent.bytes
    }

    /// Payload bytes ever appended: where the next message starts.
    fn end(&self) -> u64 {
        self.extent().appended
    }

    fn len(&self) -> u64 {
        self.next_seq() - self.first_seq()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Which log this is: a node's (by its inode number, which the catalogue keeps across
/// remounts) of a given kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogId {
    pub node: u64,
    pub kind: LogKind,
}

/// What a log holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LogKind {
    /// A stream's messages.
    Stream,
    /// A group's `order` lines.
    Order,
    /// A `deliver one` stream's acknowledgements out of order: 8-byte little-endian
    /// message numbers.
    Acks,
}

/// Where a group keeps its history (the `store` setting).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// In memory: lost when the daemon stops.
    Memory,
    /// In the store directory's files.
    Disk,
}

/// A mount's storage: it makes the channels' logs. A store with files is opened (locked,
/// recovered) before the mount; its catalogue is opened beside it.
pub trait Store: Send + Sync {
    /// The log of channel `id` with what the store holds of it (recovered at open), or a new
    /// empty one. A store without files gives memory logs whatever `placement` says.
    fn log(&self, id: LogId, placement: Placement, policy: SyncPolicy) -> Result<Box<dyn Log>, Errno>;
    /// Deletes what the store holds of log `id` (its stream or group is gone for good).
    fn remove_log(&self, id: LogId);
    /// Starts the store's own threads (a disk store's sync thread), once the process has its
    /// final threads: a daemon forks after it opened its store. Until then the callers of
    /// `Log::sync` sync themselves.
    fn start(&self) -> std::io::Result<()> {
        Ok(())
    }
    /// Sets aside what the store holds of logs nobody asked for since it was opened: their
    /// nodes are not in the catalogue (a crash between the two), so a new node with the same
    /// number must not find their history. Called once the tree is restored.
    fn set_aside_unclaimed(&self) {}
}

/// The saved namespace: every node (group, stream, link, special file) with its names,
/// owner, mode, times and, for a group, its configuration. Record layout: `catalogue.rs`.
pub trait Catalogue: Send + Sync {
    /// Every node as last saved.
    fn load(&self) -> Result<Vec<catalogue::NodeRecord>, Errno>;
    /// Saves the new state of `changed` nodes and forgets `removed` ones; durable before it
    /// returns when `durable` (a `sync always` group's namespace change).
    fn save(&self, changed: &[catalogue::NodeRecord], removed: &[u64], durable: bool) -> Result<(), Errno>;
}
