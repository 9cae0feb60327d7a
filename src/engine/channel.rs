//! A channel: one log fanned out to many readers. Streams and `order` are channels.
//!
//! Each reader has a cursor (the message it is on and how much of it it has had). A read
//! that finds nothing parks a callback on its reader, and a poll that asks to be told keeps a
//! poller on it; an append completes parked reads and tells every poller. Callbacks are never
//! run under the channel's lock: operations return them in a [`Wakeups`], which runs them when
//! dropped, after the caller released the lock.
//! What the log retains follows the group's replay mode and depth, and the slowest reader.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::SystemTime;

use super::config::{DataMode, GroupConfig, Replay, WriteMode};
use super::delivery::{self, Wake};
use super::errno::{Errno, Result};
use super::memory::Memory;
use super::seglog::{self, SegLog};

/// What a read delivers: bytes (empty at end-of-file) or an error.
pub type ReadResult = Result<Vec<u8>>;
/// Completes a read, possibly later and from another thread.
pub type ReadCallback = Box<dyn FnOnce(ReadResult) + Send>;
/// Tells a poller that its reader's readiness may have changed: a message came, or the
/// channel closed. Called again on every later message, until the reader closes.
pub type PollCallback = Arc<dyn Fn() + Send + Sync>;
/// Completes a write, possibly later: Ok once it is done, or why it failed.
pub type WriteCallback = Box<dyn FnOnce(Result<()>) + Send>;

pub type ReaderId = u64;
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

struct Waiter {
    ticket: Ticket,
    size: usize,
    callback: ReadCallback,
}

#[derive(Default)]
struct Reader {
    /// The message this reader reads next.
    next: u64,
    /// Bytes of message `next` this reader already received.
    offset: usize,
    waiters: Vec<Waiter>,
    /// The latest poll that asked to be told, told of every append (and of the close).
    poller: Option<PollCallback>,
}

impl Reader {
    /// Whether an append has something to do for this reader: parked reads or a poller.
    fn waits(&self) -> bool {
        !self.waiters.is_empty() || self.poller.is_some()
    }
}

/// The reply of a write waiting until its message has been received (`write one` /
/// `write all`). Only the reply: what a `write one` message needs kept is in
/// `Channel::awaited`, which outlives a reply sent early because of a signal.
struct BlockedWriter {
    ticket: Ticket,
    seq: u64,
    /// For `write all`, the readers open at the commit; for `write one`, None.
    readers: Option<Vec<ReaderId>>,
    callback: WriteCallback,
}

/// A read reply at least this long is a copy that takes longer than a wake-up: the writer
/// is answered before it, so that the writer's next message overlaps the copy.
const LONG_REPLY: usize = 64 * 1024;

/// Callbacks to run once the lock that produced them is released; dropping runs them.
///
/// The order is chosen for latency first: the first reader's reply (or poller's
/// notification), unless it is a long reply; then the writers'; then every other reader's,
/// from several cores if there are many (see `delivery`). So one reader waits for no
/// writer's reply, and a writer waits for at most one reader's before it can write its next
/// message while the rest go out.
#[derive(Default)]
#[must_use = "wake-ups run when dropped: drop them after releasing the lock"]
pub struct Wakeups {
    /// The first completed read or poll notification, unless it is a long reply.
    lead: Option<Wake>,
    writes: Vec<(WriteCallback, Result<()>)>,
    /// Other completed reads and poll notifications, each bound to its outcome.
    wakes: Vec<Wake>,
}

impl Wakeups {
    pub fn merge(&mut self, mut other: Wakeups) {
        if self.lead.is_none() && self.wakes.is_empty() {
            self.lead = other.lead.take();
        }
        self.wakes.extend(other.lead.take());
        self.wakes.append(&mut other.wakes);
        self.writes.append(&mut other.writes);
    }

    /// Completes a read when the wake-ups run.
    fn complete_read(&mut self, callback: ReadCallback, result: ReadResult) {
        let short = result.as_ref().map_or(true, |bytes| bytes.len() < LONG_REPLY);
        self.push(Wake::Read(callback, result), short);
    }

    /// Tells a poller when the wake-ups run.
    fn notify(&mut self, poller: Option<PollCallback>) {
        if let Some(poller) = poller {
            self.push(Wake::Poll(poller), true);
        }
    }

    fn push(&mut self, wake: Wake, short: bool) {
        if short && self.lead.is_none() && self.wakes.is_empty() {
            self.lead = Some(wake);
        } else {
            self.wakes.push(wake);
        }
    }

    /// Completes a write when the wake-ups run.
    pub fn complete_write(&mut self, callback: WriteCallback, result: Result<()>) {
        self.writes.push((callback, result));
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        if let Some(lead) = self.lead.take() {
            lead.run();
        }
        for (callback, result) in self.writes.drain(..) {
            callback(result);
        }
        delivery::run_all(std::mem::take(&mut self.wakes));
    }
}

pub struct Channel {
    log: SegLog,
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
}

impl Channel {
    pub fn new(memory: Arc<Memory>) -> Self {
        Channel {
            memory,
            charged: 0,
            log: SegLog::default(),
            readers: HashMap::new(),
            positions: BTreeMap::new(),
            waiting: Vec::new(),
            writers: Vec::new(),
            awaited: VecDeque::new(),
            next_reader: 0,
            closed: false,
            modified: SystemTime::now(),
        }
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
        *self.positions.entry(next).or_default() += 1;
        id
    }

    /// Removes a reader; what only it still needed is released.
    pub fn close_reader(&mut self, id: ReaderId, config: &GroupConfig) -> Wakeups {
        let mut wakeups = Wakeups::default();
        let unparked = self.park(id, |reader| {
            reader.poller = None;
            std::mem::take(&mut reader.waiters)
        });
        let Some(waiters) = unparked else { return wakeups };
        let reader = self.readers.remove(&id).expect("the reader was there to unpark");
        self.leave_position(reader.next);
        for waiter in waiters {
            wakeups.complete_read(waiter.callback, Ok(Vec::new()));
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
        if len as u64 > seglog::MAX_MESSAGE { Err(Errno::EFBIG) } else { Ok(()) }
    }

    /// The bytes of memory appending a message of `len` bytes would take.
    pub fn growth(&self, len: usize) -> u64 {
        self.log.growth(len)
    }

    /// Appends one message, completes parked reads and tells every poller. Messages are never
    /// empty: an empty read means end-of-file.
    pub fn append(&mut self, message: &[u8], config: &GroupConfig) -> Wakeups {
        debug_assert!(!message.is_empty(), "empty messages cannot be told from end-of-file");
        self.modified = SystemTime::now();
        if config.replay == Replay::Off
            && self.readers.is_empty()
            && self.writers.is_empty()
            && self.log.is_empty()
        {
            // Nobody can ever read it: count it, keep nothing.
            self.log.skip(message.len());
            return Wakeups::default();
        }
        self.log.append(message).expect("admitted: not larger than the log can index");
        self.modified = SystemTime::now();
        let mut wakeups = Wakeups::default();
        // An append only ends waits: the readers that still wait stay listed, in their order.
        let mut waiting = std::mem::take(&mut self.waiting);
        waiting.retain(|&id| self.serve(id, config.data, &mut wakeups));
        self.waiting = waiting;
        wakeups.merge(self.retain(config));
        wakeups
    }

    /// Keeps `callback` until message `seq`, about to be appended, has been received: by
    /// any reader (`write one`; a reader opened later starts with it), or by every reader
    /// open now (`write all`). Checked after every read, close and drop, the append included.
    pub fn expect_delivery(&mut self, seq: u64, mode: WriteMode, ticket: Ticket, callback: WriteCallback) {
        if mode == WriteMode::One {
            self.awaited.push_back(seq);
        }
        let readers = (mode == WriteMode::All).then(|| self.readers.keys().copied().collect());
        self.writers.push(BlockedWriter { ticket, seq, readers, callback });
    }

    /// Whether the write with `ticket` still waits for its message to be received.
    pub fn is_blocked(&self, ticket: Ticket) -> bool {
        self.writers.iter().any(|w| w.ticket == ticket)
    }

    /// Sequence number the next message will get.
    pub fn next_seq(&self) -> u64 {
        self.log.next_seq()
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
            let result = self.take(id, size, mode, config.data);
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

    /// Answers a blocked write now (its writer got a signal). Its message is committed and
    /// stays so: the write succeeds, and a `write one` message is still kept for the next
    /// reader. False if it is no longer blocked.
    pub fn cancel_write(&mut self, ticket: Ticket) -> (bool, Wakeups) {
        let mut wakeups = Wakeups::default();
        let Some(index) = self.writers.iter().position(|w| w.ticket == ticket) else {
            return (false, wakeups);
        };
        let writer = self.writers.remove(index);
        wakeups.writes.push((writer.callback, Ok(())));
        (true, wakeups)
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
    /// one, readable or not, and is told of every append until the reader closes: an
    /// edge-triggered waiter that has read everything is woken only by being told again.
    pub fn poll(&mut self, id: ReaderId, poller: Option<PollCallback>) -> bool {
        if let Some(poller) = poller {
            self.park(id, |reader| reader.poller = Some(poller));
        }
        self.readable(id)
    }

    /// Changes reader `id`'s parked reads or poller with `change`, keeping `waiting` exact:
    /// the reader is listed once when it begins to wait and unlisted when it stops. Every
    /// change goes through here but those of an append, which serves the listed readers
    /// and keeps those still waiting, and of `close`, which ends every wait. None if there
    /// is no such reader.
    fn park<T>(&mut self, id: ReaderId, change: impl FnOnce(&mut Reader) -> T) -> Option<T> {
        let reader = self.readers.get_mut(&id)?;
        let listed = reader.waits();
        let result = change(reader);
        match (listed, reader.waits()) {
            (false, true) => self.waiting.push(id),
            (true, false) => {
                if let Some(index) = self.waiting.iter().position(|&w| w == id) {
                    self.waiting.remove(index);
                }
            }
            _ => {}
        }
        Some(result)
    }

    /// Ends the channel: readers drain their backlog, then read end-of-file.
    pub fn close(&mut self) -> Wakeups {
        self.closed = true;
        let mut wakeups = Wakeups::default();
        // Nothing will change any more: every wait ends, pollers are told once more.
        for id in std::mem::take(&mut self.waiting) {
            let Some(reader) = self.readers.get_mut(&id) else { continue };
            for waiter in reader.waiters.drain(..) {
                wakeups.complete_read(waiter.callback, Ok(Vec::new()));
            }
            wakeups.notify(reader.poller.take());
        }
        // Nobody can receive anything any more, and no reader will open: blocked writers are
        // done and nothing is awaited.
        self.awaited.clear();
        for writer in self.writers.drain(..) {
            wakeups.writes.push((writer.callback, Ok(())));
        }
        // Only what open readers have still to read is kept (see `retain`).
        while self.log.first_seq() < self.slowest() {
            self.log.pop_front();
        }
        self.account();
        wakeups
    }

    /// Where the slowest reader is (the end of the log without readers).
    fn slowest(&self) -> u64 {
        self.positions.keys().next().copied().unwrap_or(self.log.next_seq())
    }

    /// Drops all history.
    pub fn clear(&mut self) {
        self.log.clear();
        self.account();
    }

    /// Drops what the replay mode and depth no longer let the log keep; writers waiting for a
    /// dropped message are released.
    pub fn retain(&mut self, config: &GroupConfig) -> Wakeups {
        let slowest = self.slowest();
        // A `write one` message no reader has had yet is kept for the next reader.
        let needed = self.awaited.front().map_or(slowest, |&seq| seq.min(slowest));
        // A closed channel (its stream removed) gets no new reader: whatever the replay
        // mode, it keeps only what its readers have still to read, though the tree may keep
        // the stream a while (a removed node the kernel still knows).
        let replay = if self.closed { Replay::Off } else { config.replay };
        let keep_from = match replay {
            Replay::All => self.log.first_seq(),
            Replay::Last => needed.min(self.log.next_seq().saturating_sub(1)),
            Replay::Off => needed,
        };
        while self.log.first_seq() < keep_from {
            self.log.pop_front();
        }
        while config.depth.exceeded(self.log.len(), self.log.bytes()) {
            self.log.pop_front();
        }
        self.account();
        let mut wakeups = Wakeups::default();
        self.settle_writers(&mut wakeups);
        wakeups
    }

    /// Completes the blocked writes whose message has been received as their mode asks,
    /// or can no longer be (it was dropped); a `write one` message received by a reader or
    /// dropped is no longer awaited.
    fn settle_writers(&mut self, wakeups: &mut Wakeups) {
        if self.writers.is_empty() && self.awaited.is_empty() {
            return;
        }
        let first = self.log.first_seq();
        // Every message before the furthest reader was received by it (a reader skips a
        // message only when it is dropped, and then it is before `first`).
        let furthest = self.positions.keys().next_back().copied().unwrap_or(0);
        let passed = first.max(furthest);
        while self.awaited.front().is_some_and(|&seq| seq < passed) {
            self.awaited.pop_front();
        }
        let received = |readers: &HashMap<ReaderId, Reader>, id: &ReaderId, seq: u64| {
            readers.get(id).is_none_or(|reader| reader.next > seq)
        };
        let (done, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.writers).into_iter().partition(|writer| {
                writer.seq < first
                    || match &writer.readers {
                        None => writer.seq < passed,
                        Some(ids) => ids.iter().all(|id| received(&self.readers, id, writer.seq)),
                    }
            });
        self.writers = waiting;
        for writer in done {
            wakeups.writes.push((writer.callback, Ok(())));
        }
    }

    /// Brings the mount-wide memory count up to date with this log.
    fn account(&mut self) {
        let now = self.log.allocated();
        self.memory.recharge(self.charged, now);
        self.charged = now;
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
    pub fn read_at(&self, position: u64, size: usize) -> Vec<u8> {
        let (start, end) = self.span();
        if position >= end {
            return Vec::new();
        }
        let stop = end.min(position.saturating_add(size as u64));
        let hole = start.clamp(position, stop) - position;
        let mut out = vec![0; hole as usize];
        self.log.read_at(position + hole, (stop - position - hole) as usize, &mut out);
        out
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

    /// Sets the time reported as the last message's (touch, utimes); the next message moves it on.
    pub fn set_modified(&mut self, time: SystemTime) {
        self.modified = time;
    }

    fn readable(&self, id: ReaderId) -> bool {
        match self.readers.get(&id) {
            Some(reader) => self.closed || reader.next < self.log.next_seq(),
            None => true,
        }
    }

    /// Tells `id`'s poller and completes as many of its parked reads as there is data for;
    /// returns whether it still waits.
    fn serve(&mut self, id: ReaderId, data: DataMode, wakeups: &mut Wakeups) -> bool {
        let Some(reader) = self.readers.get_mut(&id) else { return false };
        wakeups.notify(reader.poller.clone());
        let waiters = std::mem::take(&mut reader.waiters);
        let mut still_parked = Vec::new();
        for waiter in waiters {
            match self.take(id, waiter.size, ReadMode::Block, data) {
                Some(result) => wakeups.complete_read(waiter.callback, result),
                None => still_parked.push(waiter),
            }
        }
        let reader = self.readers.get_mut(&id).expect("reader exists");
        reader.waiters = still_parked;
        reader.waits()
    }

    /// The core of a read: the bytes `id` gets now, or None if it has to wait.
    fn take(&mut self, id: ReaderId, size: usize, mode: ReadMode, data: DataMode) -> Option<ReadResult> {
        let (next, offset) = {
            let reader = &self.readers[&id];
            (reader.next, reader.offset)
        };
        if next < self.log.first_seq() {
            // Unread messages were dropped: say so once, then go on from the oldest kept.
            if mode == ReadMode::Continuation {
                return Some(Ok(Vec::new()));
            }
            self.move_reader(id, self.log.first_seq(), 0);
            return Some(Err(Errno::ENOBUFS));
        }
        if mode == ReadMode::Continuation && data == DataMode::Message && offset == 0 {
            // A message-mode read(2) ends with its message.
            return Some(Ok(Vec::new()));
        }
        let mut out = Vec::new();
        let (mut next, mut offset) = (next, offset);
        while out.len() < size {
            let Some(message) = self.log.get(next) else { break };
            let end = message.len().min(offset + size - out.len());
            out.extend_from_slice(&message[offset..end]);
            if end == message.len() {
                next += 1;
                offset = 0;
            } else {
                offset = end;
            }
            if data == DataMode::Message {
                break;
            }
        }
        self.move_reader(id, next, offset);
        if !out.is_empty() || self.closed || mode == ReadMode::Continuation || size == 0 {
            Some(Ok(out))
        } else if mode == ReadMode::NonBlock {
            Some(Err(Errno::EAGAIN))
        } else {
            None
        }
    }

    fn move_reader(&mut self, id: ReaderId, next: u64, offset: usize) {
        let reader = self.readers.get_mut(&id).expect("reader exists");
        let previous = reader.next;
        reader.next = next;
        reader.offset = offset;
        if previous != next {
            self.leave_position(previous);
            *self.positions.entry(next).or_default() += 1;
        }
    }

    fn leave_position(&mut self, seq: u64) {
        if let Some(count) = self.positions.get_mut(&seq) {
            *count -= 1;
            if *count == 0 {
                self.positions.remove(&seq);
            }
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.memory.recharge(self.charged, 0);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    type Log = Arc<Mutex<Vec<&'static str>>>;

    /// A read or write callback that notes `name` in `log` when it runs.
    fn noting<T>(log: &Log, name: &'static str) -> Box<dyn FnOnce(T) + Send> {
        let log = log.clone();
        Box::new(move |_| log.lock().unwrap().push(name))
    }

    /// Parks a read by `id` that must park.
    fn park_read(channel: &mut Channel, id: ReaderId, ticket: Ticket, config: &GroupConfig) {
        let (parked, wakeups) = channel.read(id, 100, ReadMode::Block, ticket, Box::new(|_| {}), config);
        assert_eq!(parked, Some(ticket));
        drop(wakeups);
    }

    #[test]
    fn waiting_lists_each_waiting_reader_once_and_no_other() {
        let config = GroupConfig::default();
        let mut channel = Channel::new(Arc::new(Memory::new(1 << 20)));
        let idle = channel.open_reader(config.replay);
        let polling = channel.open_reader(config.replay);
        // A signal cancels an idle reader's read, which parks again: over and over.
        for ticket in 0..100 {
            park_read(&mut channel, idle, ticket, &config);
            assert!(channel.cancel(idle, ticket, Errno::EINTR).0);
            assert!(channel.waiting.is_empty(), "cycle {ticket}: {:?}", channel.waiting);
        }
        // Every poll replaces the poller; a parked read besides it does not list the reader twice.
        for _ in 0..100 {
            assert!(!channel.poll(polling, Some(Arc::new(|| {}))));
        }
        park_read(&mut channel, idle, 100, &config);
        park_read(&mut channel, idle, 101, &config);
        park_read(&mut channel, polling, 102, &config);
        assert_eq!(channel.waiting, [polling, idle]);
        // An append serves what it can and keeps the poller.
        drop(channel.append(b"m", &config));
        assert_eq!(channel.waiting, [polling, idle], "idle has a read left");
        drop(channel.append(b"n", &config));
        assert_eq!(channel.waiting, [polling]);
        park_read(&mut channel, idle, 103, &config);
        assert_eq!(channel.waiting, [polling, idle]);
        // Closing a reader unlists it, whatever it waited with.
        drop(channel.close_reader(polling, &config));
        assert_eq!(channel.waiting, [idle]);
        drop(channel.close_reader(idle, &config));
        assert!(channel.waiting.is_empty());
    }

    #[test]
    fn the_first_short_reply_goes_before_the_writer_and_the_rest_after() {
        let log = Log::default();
        let mut wakeups = Wakeups::default();
        wakeups.complete_read(noting(&log, "reader 1"), Ok(vec![1; 64]));
        wakeups.complete_read(noting(&log, "reader 2"), Ok(vec![2; 64]));
        let mut more = Wakeups::default();
        more.complete_write(noting(&log, "writer"), Ok(()));
        more.complete_read(noting(&log, "order reader"), Ok(b"s\n".to_vec()));
        wakeups.merge(more);
        drop(wakeups);
        assert_eq!(*log.lock().unwrap(), ["reader 1", "writer", "reader 2", "order reader"]);
    }

    #[test]
    fn a_long_reply_waits_for_the_writer() {
        let log = Log::default();
        let mut wakeups = Wakeups::default();
        wakeups.complete_read(noting(&log, "long reader"), Ok(vec![0; LONG_REPLY]));
        wakeups.complete_read(noting(&log, "short reader"), Ok(vec![0; 64]));
        wakeups.complete_write(noting(&log, "writer"), Ok(()));
        drop(wakeups);
        assert_eq!(*log.lock().unwrap(), ["writer", "long reader", "short reader"]);
    }

    #[test]
    fn a_poller_is_told_before_the_writer() {
        let log = Log::default();
        let mut wakeups = Wakeups::default();
        wakeups.complete_write(noting(&log, "writer"), Ok(()));
        let poll_log = log.clone();
        wakeups.notify(Some(Arc::new(move || poll_log.lock().unwrap().push("poller"))));
        wakeups.complete_read(noting(&log, "reader"), Ok(vec![0; 64]));
        drop(wakeups);
        assert_eq!(*log.lock().unwrap(), ["poller", "writer", "reader"]);
    }

    #[test]
    fn a_merged_lead_stays_first() {
        let log = Log::default();
        let mut wakeups = Wakeups::default();
        wakeups.complete_write(noting(&log, "writer"), Ok(()));
        let mut reads = Wakeups::default();
        reads.complete_read(noting(&log, "reader"), Err(Errno::EINTR));
        wakeups.merge(reads);
        drop(wakeups);
        assert_eq!(*log.lock().unwrap(), ["reader", "writer"]);
    }
}
