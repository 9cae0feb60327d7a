//! A channel: one log fanned out to many readers. Streams and `order` are channels.
//!
//! Each reader has a cursor (the message it is on and how much of it it has had). A read
//! that finds nothing parks a callback on its reader, and a poll that asks to be told keeps a
//! poller on it; a delivered append completes parked reads and tells the armed pollers. An
//! append reaches the log first ([`Channel::append`], which can fail) and readers only when
//! delivered ([`Channel::deliver`]), so a write can still be taken back in between. Callbacks are never
//! run under the channel's lock: operations return them in a [`Wakeups`], which runs them when
//! dropped, after the caller released the lock.
//! What the log retains follows the group's replay mode and depth, and the slowest reader.
//! Under `deliver one` the channel is a queue instead: each message to one reader, which
//! acknowledges it ([`queue`]).
//!
//! Here: `Channel` and its entry points (open and close a reader, append, deliver, take
//! back, read, poll, cancel, close, sync, move the history to another log). Its parts: reader cursors and parking ([`readers`]), blocked writers
//! ([`writers`]), what the log keeps and is charged for ([`retention`]), the queue
//! ([`queue`]), its durable acknowledgements ([`acks`]), request/reply ([`replies`]) and the
//! numbers `mqfs-stat` shows ([`stats`]).

mod acks;
mod queue;
mod readers;
mod replies;
mod retention;
mod stats;
mod writers;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use super::config::{GroupConfig, Replay};
/// The replies a channel operation owes (see `delivery`).
pub use super::delivery::Wakeups;
use super::errno::{Errno, Result};
use super::memory::Memory;
use super::synced::Join;
use crate::storage::{Bytes, Log, Message, Stamp, SyncCallback, memory};
use queue::Queue;
pub use queue::{Alarm, Dead, Settle, Settled};
use readers::{Reader, Waiter};
pub use replies::Origin;
pub use stats::Stats;
use writers::BlockedWriter;

/// What a read delivers: bytes (empty at end-of-file), shared with the log where they are
/// one message's, or an error.
pub type ReadResult = Result<Bytes>;
/// Completes a read, possibly later and from another thread.
pub type ReadCallback = Box<dyn FnOnce(ReadResult) + Send>;
/// Tells a poller that its reader's readiness may have changed: a message came, or the
/// channel closed. Called once: the kernel's next poll arms a new one.
pub type PollCallback = Arc<dyn Fn() + Send + Sync>;
/// Completes a write, possibly later: Ok once it is done, or why it failed.
pub type WriteCallback = Box<dyn FnOnce(Result<()>) + Send>;

pub type ReaderId = u64;

/// A message appended to a channel's log and not delivered yet.
#[must_use = "an append is delivered or taken back"]
pub struct Appended {
    /// Its sequence number.
    pub seq: u64,
    /// Nobody could read it: nothing was stored, and delivering counts these bytes.
    skipped: Option<usize>,
    /// When it was written (its stamp's time): the channel's modification time.
    time: SystemTime,
}
/// Identifies one parked read, so that it can be cancelled.
pub type Ticket = u64;

/// How a read may behave when there is nothing to return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Park until data arrives.
    Block,
    /// Fail with EAGAIN.
    NonBlock,
    /// A follow-up request of a read(2) that already received a full request's worth of
    /// bytes: return what continues the same message (or, coalescing, whatever is there),
    /// else an empty read that ends the system call. Never blocks, never fails.
    Continuation,
}

pub struct Channel {
    log: Box<dyn Log>,
    readers: HashMap<ReaderId, Reader>,
    /// How many readers stand at each message: the first key is the slowest reader.
    positions: BTreeMap<u64, usize>,
    /// Readers with parked reads or a poller, the only ones an append has to visit: each once,
    /// in the order they began to wait, and no other (see [`Channel::park`]).
    waiting: Vec<ReaderId>,
    /// Writes waiting for their message to be received, oldest first.
    writers: Vec<BlockedWriter>,
    /// The `write one` messages no reader has received yet, oldest first. Each is kept for
    /// the next reader to open, until a reader received it or it was dropped (depth, clear,
    /// removal), whether or not its writer still waits.
    awaited: VecDeque<u64>,
    next_reader: ReaderId,
    /// No more messages will come: readers get their backlog, then end-of-file.
    closed: bool,
    modified: SystemTime,
    memory: Arc<Memory>,
    /// The part of `memory` this channel's log is charged for.
    charged: u64,
    /// Under `deliver one`: the queue (see [`queue`]); readers then have no positions.
    queue: Option<Queue>,
    /// Called to have in-flight messages checked in time (`ackwait`).
    alarm: Option<Alarm>,
    /// Under `deliver one` on disk: where acknowledgements out of order are kept (see
    /// [`acks`]).
    acks: Option<Box<dyn Log>>,
    /// Under `deliver one` on a shared mount: what its acknowledgements and failed
    /// deliveries are told to (the upstream keeps the queue across mounts).
    settle: Option<Settle>,
}

impl Channel {
    /// A channel over `log`, with what it holds (recovered history is read by new readers
    /// as their replay mode says).
    pub fn new(log: Box<dyn Log>, memory: Arc<Memory>) -> Self {
        let mut channel = Channel {
            memory,
            charged: 0,
            log,
            readers: HashMap::new(),
            positions: BTreeMap::new(),
            waiting: Vec::new(),
            writers: Vec::new(),
            awaited: VecDeque::new(),
            next_reader: 0,
            closed: false,
            modified: SystemTime::now(),
            queue: None,
            alarm: None,
            acks: None,
            settle: None,
        };
        channel.account();
        channel
    }

    /// Adds a reader whose first message follows the replay mode, or is the oldest `write
    /// one` message no reader has received yet.
    pub fn open_reader(&mut self, replay: Replay) -> ReaderId {
        let replayed = match replay {
            Replay::Off => self.log.next_seq(),
            Replay::Last => self.log.next_seq().saturating_sub(1).max(self.log.first_seq()),
            Replay::All => self.log.first_seq(),
        };
        let next = self.awaited.front().map_or(replayed, |&seq| seq.min(replayed));
        let id = self.next_reader;
        self.next_reader += 1;
        self.readers.insert(id, Reader { next, ..Reader::default() });
        if self.queue.is_none() {
            *self.positions.entry(next).or_default() += 1;
        }
        id
    }

    /// Removes a reader; what only it still needed is released, and a queue's reader's
    /// message is acknowledged.
    pub fn close_reader(&mut self, id: ReaderId, config: &GroupConfig) -> Wakeups {
        let mut wakeups = Wakeups::default();
        let unparked = self.park(id, |reader| {
            reader.poller = None;
            std::mem::take(&mut reader.waiters)
        });
        let Some(waiters) = unparked else { return wakeups };
        let reader = self.readers.remove(&id).expect("the reader was there to unpark");
        if self.queue.is_some() {
            self.release_held(id);
        } else {
            self.leave_position(reader.next);
        }
        for waiter in waiters {
            wakeups.complete_read(waiter.callback, Ok(Bytes::default()));
        }
        wakeups.merge(self.retain(config));
        wakeups
    }

    /// The mount's memory ceiling, which this channel's log is charged to.
    pub fn memory(&self) -> &Arc<Memory> {
        &self.memory
    }

    /// Whether the log can index a message of `len` bytes: `EFBIG` for a larger one.
    pub fn indexes(len: usize) -> Result<()> {
        if len as u64 > memory::MAX_MESSAGE { Err(Errno::EFBIG) } else { Ok(()) }
    }

    /// The bytes of memory appending a message of `len` bytes would take.
    pub fn growth(&self, len: usize) -> u64 {
        self.log.growth(len)
    }

    /// Appends one message to the log, not delivered yet: [`Channel::deliver`] delivers it,
    /// [`Channel::unappend`] takes it back. A message that is to be `kept` (for a `write one`
    /// or blocked writer) is stored even where nobody could read it. Messages are never
    /// empty: an empty read means end-of-file. Fails as the log's append does (nothing
    /// appended).
    pub fn append(
        &mut self,
        message: Message<'_>,
        stamp: &Stamp,
        kept: bool,
        config: &GroupConfig,
    ) -> Result<Appended> {
        debug_assert!(!message.is_empty(), "empty messages cannot be told from end-of-file");
        let seq = self.log.next_seq();
        if !kept
            && config.replay == Replay::Off
            && self.readers.is_empty()
            && self.writers.is_empty()
            && self.awaited.is_empty()
            && self.log.is_empty()
            && self.queue.is_none()
        {
            // Nobody can ever read it: counted when delivered, nothing kept.
            return Ok(Appended { seq, skipped: Some(message.len()), time: stamp.time });
        }
        self.log.append(message, stamp)?;
        Ok(Appended { seq, skipped: None, time: stamp.time })
    }

    /// Takes back an append that was not delivered (its write failed after it).
    pub fn unappend(&mut self, appended: Appended) {
        if appended.skipped.is_none() {
            self.log.unappend();
        }
    }

    /// Delivers an appended message: completes parked reads and tells the armed pollers.
    pub fn deliver(&mut self, appended: Appended, config: &GroupConfig) -> Wakeups {
        self.modified = appended.time;
        if let Some(len) = appended.skipped {
            self.log.skip(len);
            return Wakeups::default();
        }
        self.serve_waiting(config)
    }

    /// Serves the readers that wait, in the order they began to wait (a queue's message goes
    /// to the first), then retains what is still needed.
    fn serve_waiting(&mut self, config: &GroupConfig) -> Wakeups {
        let mut wakeups = Wakeups::default();
        // Serving only ends waits: the readers that still wait stay listed, in their order.
        let mut waiting = std::mem::take(&mut self.waiting);
        waiting.retain(|&id| self.serve(id, config, &mut wakeups));
        self.waiting = waiting;
        wakeups.merge(self.retain(config));
        wakeups
    }

    /// Sequence number the next message will get.
    pub fn next_seq(&self) -> u64 {
        self.log.next_seq()
    }

    /// Calls `done` once every message appended so far is on stable storage.
    pub fn sync(&self, done: SyncCallback) {
        self.log.sync(done);
    }

    /// The log itself, to change its policy or move its history (see `relog`).
    pub fn log_mut(&mut self) -> &mut dyn Log {
        &mut *self.log
    }

    /// Moves the retained history, numbering and positions to `log` (empty, from another
    /// store or placement) and keeps it instead of the current one, which is returned.
    /// On error the channel keeps its log and `log` is dropped.
    pub fn relog(&mut self, mut log: Box<dyn Log>) -> Result<Box<dyn Log>> {
        if !log.is_empty() || log.next_seq() > self.log.first_seq() {
            return Err(Errno::EEXIST);
        }
        // Numbering and positions first: skipped messages, the last one carrying every
        // dropped byte.
        let (first, start) = (self.log.first_seq(), self.log.start());
        while log.next_seq() + 1 < first {
            log.skip(0);
        }
        if log.next_seq() < first {
            log.skip((start - log.end()) as usize);
        }
        for seq in first..self.log.next_seq() {
            let message = self.log.get(seq)?.ok_or(Errno::EIO)?;
            let stamp = self.log.stamp(seq)?.ok_or(Errno::EIO)?;
            log.append(Message::Borrowed(&message), &stamp)?;
        }
        let old = std::mem::replace(&mut self.log, log);
        self.account();
        Ok(old)
    }

    /// Reads for `id`, or parks `callback` until there is something to read. Returns the
    /// ticket of a parked read; otherwise the callback is in the returned wake-ups.
    pub fn read(
        &mut self,
        id: ReaderId,
        size: usize,
        mode: ReadMode,
        ticket: Ticket,
        callback: ReadCallback,
        config: &GroupConfig,
    ) -> (Option<Ticket>, Wakeups) {
        let mut wakeups = Wakeups::default();
        if !self.readers.contains_key(&id) {
            wakeups.complete_read(callback, Err(Errno::EBADF));
            return (None, wakeups);
        }
        let parked = {
            let result = self.take(id, size, mode, config);
            self.settle_writers(&mut wakeups);
            match result {
                Some(result) => {
                    wakeups.complete_read(callback, result);
                    None
                }
                None => {
                    self.park(id, |reader| reader.waiters.push(Waiter { ticket, size, callback }));
                    Some(ticket)
                }
            }
        };
        wakeups.merge(self.retain(config));
        (parked, wakeups)
    }

    /// Cancels a parked read, completing it with `error`. False if it is no longer parked.
    pub fn cancel(&mut self, id: ReaderId, ticket: Ticket, error: Errno) -> (bool, Wakeups) {
        let mut wakeups = Wakeups::default();
        let cancelled = self.park(id, |reader| {
            let index = reader.waiters.iter().position(|w| w.ticket == ticket)?;
            Some(reader.waiters.remove(index))
        });
        let Some(Some(waiter)) = cancelled else { return (false, wakeups) };
        wakeups.complete_read(waiter.callback, Err(error));
        (true, wakeups)
    }

    /// Whether a read by `id` would return at once. A `poller` replaces the reader's previous
    /// one, readable or not, and is told of the next append: an edge-triggered waiter that
    /// polled while readable and then read everything is woken only by being told.
    pub fn poll(&mut self, id: ReaderId, poller: Option<PollCallback>) -> bool {
        if let Some(poller) = poller {
            self.park(id, |reader| reader.poller = Some(poller));
        }
        self.readable(id)
    }

    /// Ends the channel: readers drain their backlog, then read end-of-file.
    pub fn close(&mut self) -> Wakeups {
        self.closed = true;
        let mut wakeups = Wakeups::default();
        // Nothing will change any more: every wait ends, pollers are told once more.
        for id in std::mem::take(&mut self.waiting) {
            let Some(reader) = self.readers.get_mut(&id) else { continue };
            for waiter in reader.waiters.drain(..) {
                wakeups.complete_read(waiter.callback, Ok(Bytes::default()));
            }
            wakeups.notify(reader.poller.take());
        }
        // Nobody can receive anything any more, and no reader will open: blocked writers are
        // done and nothing is awaited.
        self.awaited.clear();
        for writer in self.writers.drain(..) {
            wakeups.complete_write(writer.callback, Ok(()));
        }
        // Only what open readers have still to read is kept (see `retain`).
        while self.log.first_seq() < self.slowest() {
            self.log.pop_front();
        }
        self.trim_queue();
        self.account();
        wakeups
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn readers(&self) -> u64 {
        self.readers.len() as u64
    }

    pub fn messages(&self) -> u64 {
        self.log.len()
    }

    /// The history read as one file (`data static`): up to `size` bytes at `position`,
    /// counted from the first byte ever appended. The dropped head, before the oldest
    /// retained byte, reads as zeros (a hole).
    pub fn read_at(&self, position: u64, size: usize) -> Result<Vec<u8>> {
        let (start, end) = self.span();
        if position >= end {
            return Ok(Vec::new());
        }
        let stop = end.min(position.saturating_add(size as u64));
        let hole = start.clamp(position, stop) - position;
        let mut out = vec![0; hole as usize];
        self.log.read_at(position + hole, (stop - position - hole) as usize, &mut out)?;
        Ok(out)
    }

    /// Where the retained history starts and ends, counted from the first byte ever
    /// appended: a static file's dropped head, and its size.
    pub fn span(&self) -> (u64, u64) {
        (self.log.start(), self.log.end())
    }

    /// Retained payload bytes: a stream's size.
    pub fn bytes(&self) -> u64 {
        self.log.bytes()
    }

    /// Time of the last message (or of creation).
    pub fn modified(&self) -> SystemTime {
        self.modified
    }

    /// When the newest retained message was written.
    pub fn last_written(&self) -> Option<SystemTime> {
        let seq = self.log.next_seq().checked_sub(1).filter(|&seq| seq >= self.log.first_seq())?;
        Some(self.log.stamp(seq).ok()??.time)
    }

    /// The mount ends: see `Log::close` (of the ack log too).
    pub fn close_log(&mut self, done: SyncCallback) {
        let join = Join::new(done);
        self.log.close(join.part());
        if let Some(acks) = &mut self.acks {
            acks.close(join.part());
        }
        join.done()(Ok(()));
    }

    /// The log itself, to look at (recovery).
    pub fn log(&self) -> &dyn Log {
        &*self.log
    }

    /// Sets the time reported as the last message's (touch, utimes); the next message moves it on.
    pub fn set_modified(&mut self, time: SystemTime) {
        self.modified = time;
    }
}
