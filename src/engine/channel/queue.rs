//! Queue mode (`deliver one`): each message of the channel goes to one reader, which
//! acknowledges it. Held here: the shared cursor (the oldest message never handed out), the
//! messages in flight (which reader has each, how often it was handed out, since when), the
//! line of messages to hand out again (first in line), the messages acknowledged out of
//! order, and the message each reader reads. Retention keeps every message from the oldest
//! one not acknowledged on (depth still drops the oldest, handed out or not).
//!
//! A reader has at most one message in flight: the one its reads return bytes of. A read
//! that starts after it was read whole acknowledges it and takes the next; so does the
//! reader's close ([`Channel::close_reader`]). One whose reader's process was killed
//! ([`Channel::abandon`]), or not acknowledged within `ackwait` ([`Channel::expire`]), goes
//! back to the front of the line, or after `maxdeliver` failed deliveries it is handed back
//! to the caller as [`Dead`], to be moved to the stream of dead messages.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::readers::Last;
use super::replies::{Client, Origin};
use super::stats::Stats;
use super::{Channel, ReadMode, ReadResult, ReaderId, Wakeups};
use crate::engine::config::{Deliver, GroupConfig};
use crate::engine::errno::Errno;
use crate::storage::{Bytes, Stamp};

/// Asks to be called back (through `Channel::expire`) at the given instant: how a queue
/// that hands out messages under `ackwait` has them checked in time.
pub type Alarm = Arc<dyn Fn(Instant) + Send + Sync>;

/// On a shared mount, how a queue tells its upstream what became of a message it was given
/// (by the message's stamp, which says where the upstream has it): the upstream keeps the
/// queue across mounts, redelivering what was not acknowledged, so a failed delivery goes
/// back to it rather than to this queue's line.
pub type Settle = Arc<dyn Fn(Stamp, Settled) + Send + Sync>;

/// What became of a message a shared queue was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Acknowledged by its reader.
    Acked,
    /// Its reader was killed: to be handed to another reader at once.
    Failed,
}

/// A message that failed `maxdeliver` deliveries, taken out of its queue: to be published
/// to the stream of dead messages.
pub struct Dead {
    pub message: Bytes,
    /// Its stamp, where the log keeps stamps (its writer).
    pub stamp: Option<Stamp>,
}

pub(super) struct Queue {
    /// The oldest message never handed out.
    next: u64,
    /// Messages to hand out again, first in line, with how often each was handed out.
    line: VecDeque<(u64, u32)>,
    in_flight: HashMap<u64, Flight>,
    /// Messages at or after `front` acknowledged.
    acked: BTreeSet<u64>,
    /// The oldest message not acknowledged: retention keeps it and every later one.
    pub(super) front: u64,
    /// The message each reader's reads return bytes of, and how much of it they returned.
    held: HashMap<ReaderId, Held>,
    /// The reader whose descriptor wrote each request not yet acknowledged (see `replies`).
    pub(super) origins: HashMap<u64, Origin>,
    /// The reply side of each read-write descriptor that wrote requests.
    pub(super) clients: HashMap<ReaderId, Client>,
    redelivered: u64,
    dead: u64,
    /// Whether a message that failed `maxdeliver` deliveries moves on (not in a stream of
    /// dead messages).
    buries: bool,
    /// The earliest instant the alarm was asked for and has not yet called back.
    armed: Option<Instant>,
}

struct Flight {
    reader: ReaderId,
    /// How many times it was handed out, this time included.
    deliveries: u32,
    since: Instant,
}

#[derive(Clone)]
struct Held {
    seq: u64,
    offset: usize,
    /// The descriptor that wrote it, if it is a request (see `replies`).
    origin: Option<Origin>,
}

impl Queue {
    /// Fills in a queue's numbers: messages not handed out (first in line again or never
    /// yet) among those from `first` to `end`, in flight, redelivered, dead.
    pub(super) fn count(&self, first: u64, end: u64, stats: &mut Stats) {
        stats.backlog = self.line.len() as u64 + end
            - self.next.max(first).min(end)
            - self.acked.range(self.next..).count() as u64;
        stats.in_flight = self.in_flight.len() as u64;
        stats.redelivered = self.redelivered;
        stats.dead = self.dead;
    }

    fn new(start: u64, buries: bool) -> Queue {
        Queue {
            next: start,
            line: VecDeque::new(),
            in_flight: HashMap::new(),
            acked: BTreeSet::new(),
            front: start,
            held: HashMap::new(),
            origins: HashMap::new(),
            clients: HashMap::new(),
            redelivered: 0,
            dead: 0,
            buries,
            armed: None,
        }
    }

    /// The next message to hand out and how often it was handed out before: the first in
    /// line, else the oldest never handed out (of those in `first..end`).
    fn pick(&mut self, first: u64, end: u64) -> Option<(u64, u32)> {
        while let Some((seq, deliveries)) = self.line.pop_front() {
            if seq >= first && !self.acked.contains(&seq) {
                return Some((seq, deliveries));
            }
        }
        // Past messages acknowledged before a remount, never handed out since.
        self.next = self.next.max(first).max(self.front);
        while self.acked.contains(&self.next) {
            self.next += 1;
        }
        (self.next < end).then(|| {
            self.next += 1;
            (self.next - 1, 0)
        })
    }

    /// Message `seq` was acknowledged (or moved on), by whichever reader: it is in flight,
    /// in line or held no more. False if it was already, or was never handed out.
    pub(super) fn acknowledge(&mut self, seq: u64) -> bool {
        if seq < self.front || seq >= self.next || !self.acked.insert(seq) {
            return false;
        }
        self.in_flight.remove(&seq);
        self.origins.remove(&seq);
        self.line.retain(|&(s, _)| s != seq);
        self.advance();
        true
    }

    /// Moves the front over the messages acknowledged.
    fn advance(&mut self) {
        while self.acked.remove(&self.front) {
            self.front += 1;
        }
    }

    /// Message `seq` was acknowledged before a remount (its ack log says so).
    pub(super) fn restore_ack(&mut self, seq: u64) {
        if seq >= self.front {
            self.acked.insert(seq);
            self.advance();
        }
    }

    /// The acknowledgements out of order: those after the front.
    pub(super) fn acked(&self) -> impl Iterator<Item = u64> + '_ {
        self.acked.iter().copied()
    }

    /// Delivery of `seq` failed: first in line again, or None if it is to move on (dead).
    fn fail(&mut self, seq: u64, config: &GroupConfig) -> Option<u64> {
        let flight = self.in_flight.remove(&seq)?;
        if self.buries && config.maxdeliver > 0 && u64::from(flight.deliveries) >= config.maxdeliver {
            return Some(seq);
        }
        self.line.push_front((seq, flight.deliveries));
        None
    }

    /// The requester of the message reader `id` reads, if that is a request.
    pub(super) fn requester(&self, id: ReaderId) -> Option<&Origin> {
        self.held.get(&id)?.origin.as_ref()
    }

    /// Messages before `first` were dropped (depth, clear, removal).
    fn dropped_before(&mut self, first: u64) {
        self.next = self.next.max(first);
        self.front = self.front.max(first);
        self.line.retain(|&(seq, _)| seq >= first);
        self.in_flight.retain(|&seq, _| seq >= first);
        self.origins.retain(|&seq, _| seq >= first);
        self.acked = self.acked.split_off(&first);
        self.advance();
    }
}

impl Channel {
    /// Makes the channel fan out (`deliver all`) or a queue (`deliver one`). A channel that
    /// becomes a queue queues what its slowest reader has yet to read (all it retains, if it
    /// has no reader: a stream restored at mount); one that stops being a queue puts every
    /// reader at its oldest message not acknowledged. `buries`: whether a message that fails
    /// `maxdeliver` deliveries moves on (false for a stream of dead messages).
    pub fn set_deliver(&mut self, deliver: Deliver, buries: bool) {
        match (deliver, &mut self.queue) {
            (Deliver::One, Some(queue)) => queue.buries = buries,
            (Deliver::One, None) => {
                let first = self.log.first_seq();
                let start = if self.readers.is_empty() { first } else { self.slowest().max(first) };
                self.positions.clear();
                self.queue = Some(Queue::new(start, buries));
            }
            (Deliver::All, Some(queue)) => {
                let front = queue.front.max(self.log.first_seq());
                self.queue = None;
                for reader in self.readers.values_mut() {
                    (reader.next, reader.offset) = (front, 0);
                }
                if !self.readers.is_empty() {
                    self.positions.insert(front, self.readers.len());
                }
            }
            (Deliver::All, None) => {}
        }
    }

    /// Keeps `settle` to tell the upstream what becomes of the messages it gives a shared
    /// queue; one set before stays.
    pub fn set_settle(&mut self, settle: impl FnOnce() -> Settle) {
        if self.settle.is_none() {
            self.settle = Some(settle());
        }
    }

    /// How many more messages a queue's readers wait for than it has to hand out: what a
    /// shared queue asks its upstream for.
    pub fn queue_demand(&self) -> usize {
        let Some(queue) = &self.queue else { return 0 };
        // Not those waiting for replies to their requests, nor those still reading one (a
        // poll after a message read whole waits for the next).
        let takes = |id: &&ReaderId| !queue.clients.get(id).is_some_and(Client::reads_replies);
        let read_whole = |id: &&ReaderId| {
            queue.held.get(id).is_none_or(|held| {
                self.log.get(held.seq).ok().flatten().is_none_or(|message| held.offset >= message.len())
            })
        };
        let idle = self.waiting.iter().filter(takes).filter(read_whole).count();
        let backlog = queue.line.len() as u64
            + self.log.next_seq().saturating_sub(queue.next.max(self.log.first_seq()));
        idle.saturating_sub(usize::try_from(backlog).unwrap_or(usize::MAX))
    }

    /// Keeps `alarm` to have in-flight messages checked when `ackwait` is up (see
    /// [`Channel::expire`]); an alarm set before stays.
    pub fn set_alarm(&mut self, alarm: impl FnOnce() -> Alarm) {
        if self.alarm.is_none() {
            self.alarm = Some(alarm());
        }
    }

    /// A queue's read for `id`: see [`Channel::take`].
    pub(super) fn take_queued(
        &mut self,
        id: ReaderId,
        size: usize,
        mode: ReadMode,
        config: &GroupConfig,
    ) -> Option<ReadResult> {
        if size == 0 {
            return Some(Ok(Bytes::default()));
        }
        let queue = self.queue.as_mut().expect("a queue");
        if let Some(held) = queue.held.get(&id).cloned() {
            let message = match self.log.get(held.seq) {
                Ok(message) => message,
                Err(errno) => return Some(Err(errno)),
            };
            match message {
                // Dropped (depth) while it was read: said once, as a fan-out reader is told.
                None => {
                    queue.held.remove(&id);
                    if mode == ReadMode::Continuation {
                        return Some(Ok(Bytes::default()));
                    }
                    return Some(Err(Errno::ENOBUFS));
                }
                // More of it: the byte-by-byte reads of a shell's `read` go on with it.
                Some(message) if held.offset < message.len() => {
                    let end = message.len().min(held.offset + size);
                    queue.held.insert(id, Held { offset: end, ..held });
                    return Some(Ok(message.slice(held.offset..end)));
                }
                Some(_) if mode == ReadMode::Continuation => return Some(Ok(Bytes::default())),
                // Read whole, and this read starts after: acknowledged.
                Some(_) => {
                    queue.held.remove(&id);
                    self.ack(held.seq);
                }
            }
        }
        let queue = self.queue.as_mut().expect("a queue");
        let nothing = |closed: bool| match mode {
            _ if closed => Some(Ok(Bytes::default())),
            ReadMode::NonBlock => Some(Err(Errno::EAGAIN)),
            _ => None,
        };
        if let Some(client) = queue.clients.get_mut(&id).filter(|client| client.reads_replies()) {
            return client.take(size, mode).or_else(|| nothing(self.closed));
        }
        if mode == ReadMode::Continuation {
            return Some(Ok(Bytes::default()));
        }
        let Some((seq, before)) = queue.pick(self.log.first_seq(), self.log.next_seq()) else {
            return nothing(self.closed);
        };
        let (message, stamp) = match self.log.get_stamped(seq) {
            Ok(Some(stamped)) => stamped,
            // Not read (a disk log's EIO): it stays first in line.
            failed => {
                queue.line.push_front((seq, before));
                return Some(Err(failed.err().unwrap_or(Errno::EIO)));
            }
        };
        let deliveries = before + 1;
        let now = Instant::now();
        queue.in_flight.insert(seq, Flight { reader: id, deliveries, since: now });
        if before > 0 {
            queue.redelivered += 1;
        }
        let end = message.len().min(size);
        let origin = queue.origins.get(&seq).cloned();
        queue.held.insert(id, Held { seq, offset: end, origin });
        if let Some(reader) = self.readers.get_mut(&id) {
            reader.last = Some(Last { seq, stamp, deliveries });
        }
        if !config.ackwait.is_zero() {
            self.arm(now + config.ackwait);
        }
        Some(Ok(message.slice(0..end)))
    }

    /// Whether a queue's reader `id` would read at once.
    pub(super) fn readable_queued(&self, id: ReaderId) -> bool {
        let queue = self.queue.as_ref().expect("a queue");
        if let Some(client) = queue.clients.get(&id).filter(|client| client.reads_replies()) {
            return client.has_reply() || self.closed;
        }
        let unread = queue.held.get(&id).is_some_and(|held| {
            self.log.get(held.seq).ok().flatten().is_none_or(|message| held.offset < message.len())
        });
        unread
            || self.closed
            || !queue.line.is_empty()
            || queue.next.max(self.log.first_seq()) < self.log.next_seq()
    }

    /// A queue's reader closes: its message is acknowledged (a close by a process that was
    /// not killed; one that was is `abandon`ed first, at its FLUSH), its replies dropped.
    pub(super) fn release_held(&mut self, id: ReaderId) {
        let Some(queue) = &mut self.queue else { return };
        queue.clients.remove(&id);
        if let Some(held) = queue.held.remove(&id) {
            self.ack(held.seq);
        }
    }

    /// Whether reader `id` holds a message in flight.
    pub fn holds(&self, id: ReaderId) -> bool {
        self.queue.as_ref().is_some_and(|queue| {
            queue
                .held
                .get(&id)
                .is_some_and(|held| queue.in_flight.get(&held.seq).is_some_and(|f| f.reader == id))
        })
    }

    /// Reader `id`'s process was killed: its message in flight goes back to the front of
    /// the line (or, failed `maxdeliver` times, is returned to be moved on), and the reads
    /// waiting are served.
    pub fn abandon(&mut self, id: ReaderId, config: &GroupConfig) -> (Wakeups, Vec<Dead>) {
        let Some(queue) = &mut self.queue else { return (Wakeups::default(), Vec::new()) };
        let Some(held) = queue.held.remove(&id) else { return (Wakeups::default(), Vec::new()) };
        if queue.in_flight.get(&held.seq).is_none_or(|flight| flight.reader != id) {
            return (Wakeups::default(), Vec::new());
        }
        let dead = self.fail(vec![held.seq], config);
        (self.serve_waiting(config), dead)
    }

    /// The alarm called back: every message in flight longer than `ackwait` goes back to
    /// the front of the line (oldest first), or is returned to be moved on; the reads
    /// waiting are served, and the alarm is set for the next message in flight. The reader
    /// that had one may still read the rest of it; its acknowledgement counts if it comes
    /// before another reader's.
    pub fn expire(&mut self, now: Instant, config: &GroupConfig) -> (Wakeups, Vec<Dead>) {
        let wait = config.ackwait;
        let Some(queue) = &mut self.queue else { return (Wakeups::default(), Vec::new()) };
        queue.armed = None;
        if wait.is_zero() {
            return (Wakeups::default(), Vec::new());
        }
        let mut due: Vec<u64> = queue
            .in_flight
            .iter()
            .filter(|(_, flight)| flight.since + wait <= now)
            .map(|(&seq, _)| seq)
            .collect();
        due.sort_unstable();
        let next = queue.in_flight.values().map(|flight| flight.since + wait).filter(|&at| at > now).min();
        let dead = self.fail(due, config);
        if let Some(at) = next {
            self.arm(at);
        }
        (self.serve_waiting(config), dead)
    }

    /// Fails the deliveries of `seqs` (oldest first): the oldest ends first in line. A
    /// shared queue's go back upstream instead.
    fn fail(&mut self, seqs: Vec<u64>, config: &GroupConfig) -> Vec<Dead> {
        if let Some(settle) = self.settle.clone() {
            for seq in seqs {
                if let Ok(Some(stamp)) = self.log.stamp(seq) {
                    settle(stamp, Settled::Failed);
                }
                self.queue.as_mut().expect("a queue").acknowledge(seq);
            }
            return Vec::new();
        }
        let queue = self.queue.as_mut().expect("a queue");
        let buried: Vec<u64> = seqs.into_iter().rev().filter_map(|seq| queue.fail(seq, config)).collect();
        let mut dead = Vec::new();
        for seq in buried.into_iter().rev() {
            match self.log.get(seq) {
                Ok(Some(message)) => {
                    let stamp = self.log.stamp(seq).ok().flatten();
                    dead.push(Dead { message, stamp });
                }
                Ok(None) => {}
                Err(errno) => log::error!("a dead message could not be read back ({errno}): it is lost"),
            }
            self.ack(seq);
            self.queue.as_mut().expect("a queue").dead += 1;
        }
        dead
    }

    /// Has the alarm call back at `at`, unless it will sooner.
    fn arm(&mut self, at: Instant) {
        let (Some(alarm), Some(queue)) = (&self.alarm, &mut self.queue) else { return };
        if queue.armed.is_none_or(|armed| armed > at) {
            queue.armed = Some(at);
            alarm(at);
        }
    }

    /// Messages before the log's first were dropped: the queue forgets them.
    pub(super) fn trim_queue(&mut self) {
        let first = self.log.first_seq();
        if let Some(queue) = &mut self.queue {
            queue.dropped_before(first);
            self.compact_acks();
        }
    }

    /// The oldest message never handed out, under `deliver one`.
    pub(super) fn handed(&self) -> Option<u64> {
        self.queue.as_ref().map(|queue| queue.next)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::engine::config::Depth;
    use crate::engine::memory::Memory;
    use crate::storage::memory::MemoryLog;
    use crate::storage::{Log, Message};

    fn queue_config() -> GroupConfig {
        GroupConfig { deliver: Deliver::One, ..GroupConfig::default() }
    }

    fn queue(buries: bool) -> Channel {
        let mut channel = Channel::new(Box::new(MemoryLog::default()), Arc::new(Memory::new(1 << 20)));
        channel.set_deliver(Deliver::One, buries);
        channel
    }

    fn append(channel: &mut Channel, message: &str, config: &GroupConfig) {
        let appended =
            channel.append(Message::Borrowed(message.as_bytes()), &Stamp::default(), false, config);
        drop(channel.deliver(appended.expect("a memory log appends"), config));
    }

    /// A read that completes at once (EAGAIN when there is nothing).
    fn read(channel: &mut Channel, id: ReaderId, size: usize, config: &GroupConfig) -> Result<String, Errno> {
        let slot = Arc::new(Mutex::new(None));
        let target = slot.clone();
        let callback = Box::new(move |result: ReadResult| *target.lock().unwrap() = Some(result));
        let (parked, wakeups) = channel.read(id, size, ReadMode::NonBlock, 0, callback, config);
        assert_eq!(parked, None);
        drop(wakeups);
        let result = slot.lock().unwrap().take().expect("completed");
        result.map(|bytes| String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// Parks a read; returns where its bytes land.
    fn park(channel: &mut Channel, id: ReaderId, config: &GroupConfig) -> Arc<Mutex<Option<String>>> {
        let slot = Arc::new(Mutex::new(None));
        let target = slot.clone();
        let callback = Box::new(move |result: ReadResult| {
            *target.lock().unwrap() = Some(String::from_utf8(result.unwrap().to_vec()).unwrap())
        });
        let (parked, wakeups) = channel.read(id, 100, ReadMode::Block, 0, callback, config);
        assert!(parked.is_some(), "the read parked");
        drop(wakeups);
        slot
    }

    #[test]
    fn each_message_goes_to_one_reader_and_parked_readers_are_served_in_turn() {
        let config = queue_config();
        let mut channel = queue(true);
        let readers: Vec<ReaderId> = (0..3).map(|_| channel.open_reader(config.replay)).collect();
        let slots: Vec<_> = readers.iter().map(|&id| park(&mut channel, id, &config)).collect();
        append(&mut channel, "a", &config);
        append(&mut channel, "b", &config);
        let got: Vec<Option<String>> = slots.iter().map(|slot| slot.lock().unwrap().take()).collect();
        assert_eq!(got, [Some("a".into()), Some("b".into()), None], "in the order they parked");
        // The first reader's next read acknowledges "a" and parks last in turn.
        let first = park(&mut channel, readers[0], &config);
        append(&mut channel, "c", &config);
        append(&mut channel, "d", &config);
        assert_eq!(slots[2].lock().unwrap().take().as_deref(), Some("c"));
        assert_eq!(first.lock().unwrap().take().as_deref(), Some("d"));
        assert_eq!(channel.stats().in_flight, 3, "b, c and d");
    }

    #[test]
    fn a_message_is_read_in_pieces_and_acknowledged_by_the_read_after_its_last_byte() {
        let config = queue_config();
        let mut channel = queue(true);
        append(&mut channel, "job1\n", &config);
        append(&mut channel, "job2\n", &config);
        assert_eq!(channel.messages(), 2, "kept for a reader though none was open (replay off)");
        let id = channel.open_reader(config.replay);
        let other = channel.open_reader(config.replay);
        let bytes: Vec<String> = (0..5).map(|_| read(&mut channel, id, 1, &config).unwrap()).collect();
        assert_eq!(bytes.concat(), "job1\n", "byte reads go on with the message");
        assert_eq!(channel.last_delivered(id), Some((0, 1)));
        assert!(channel.holds(id));
        assert_eq!(channel.messages(), 2, "job1 is kept until acknowledged");
        assert_eq!(read(&mut channel, other, 100, &config).as_deref(), Ok("job2\n"));
        assert_eq!(read(&mut channel, id, 100, &config), Err(Errno::EAGAIN), "acknowledges, finds nothing");
        assert!(!channel.holds(id));
        assert_eq!(channel.messages(), 1, "job1 acknowledged and dropped; job2 in flight");
        drop(channel.close_reader(other, &config));
        assert_eq!(channel.messages(), 0, "a close acknowledges");
        assert_eq!(channel.stats(), Stats { readers: 1, ..Stats::default() });
    }

    #[test]
    fn out_of_order_acknowledgements_keep_the_oldest_unacknowledged() {
        let config = queue_config();
        let mut channel = queue(true);
        for message in ["a", "b", "c"] {
            append(&mut channel, message, &config);
        }
        let readers: Vec<ReaderId> = (0..3).map(|_| channel.open_reader(config.replay)).collect();
        for (&id, want) in readers.iter().zip(["a", "b", "c"]) {
            assert_eq!(read(&mut channel, id, 100, &config).as_deref(), Ok(want));
        }
        drop(channel.close_reader(readers[2], &config));
        drop(channel.close_reader(readers[1], &config));
        assert_eq!(channel.messages(), 3, "b and c acknowledged, a still in flight");
        drop(channel.close_reader(readers[0], &config));
        assert_eq!(channel.messages(), 0);
    }

    #[test]
    fn an_abandoned_message_goes_first_in_line_and_counts_its_deliveries() {
        let config = queue_config();
        let mut channel = queue(true);
        append(&mut channel, "a", &config);
        append(&mut channel, "b", &config);
        let dying = channel.open_reader(config.replay);
        let other = channel.open_reader(config.replay);
        assert_eq!(read(&mut channel, dying, 100, &config).as_deref(), Ok("a"));
        let waiting = channel.open_reader(config.replay);
        assert_eq!(read(&mut channel, other, 100, &config).as_deref(), Ok("b"));
        let slot = park(&mut channel, waiting, &config);
        let (wakeups, dead) = channel.abandon(dying, &config);
        drop(wakeups);
        assert!(dead.is_empty());
        assert_eq!(slot.lock().unwrap().take().as_deref(), Some("a"), "redelivered to the reader waiting");
        assert_eq!(channel.last_delivered(waiting), Some((0, 2)));
        assert_eq!(channel.stats().redelivered, 1);
        // The dying reader's close acknowledges nothing more.
        drop(channel.close_reader(dying, &config));
        assert_eq!(channel.stats().in_flight, 2);
        let (wakeups, dead) = channel.abandon(dying, &config);
        drop(wakeups);
        assert!(dead.is_empty(), "nothing held: nothing given back");
    }

    #[test]
    fn maxdeliver_failures_move_a_message_on_except_in_a_stream_of_dead_messages() {
        let config = GroupConfig { maxdeliver: 2, ..queue_config() };
        for buries in [true, false] {
            let mut channel = queue(buries);
            append(&mut channel, "poison", &config);
            append(&mut channel, "fine", &config);
            let mut dead = Vec::new();
            for round in 0..2 {
                let id = channel.open_reader(config.replay);
                assert_eq!(read(&mut channel, id, 100, &config).as_deref(), Ok("poison"), "round {round}");
                let (wakeups, buried) = channel.abandon(id, &config);
                drop(wakeups);
                dead.extend(buried);
                drop(channel.close_reader(id, &config));
            }
            let id = channel.open_reader(config.replay);
            let next = read(&mut channel, id, 100, &config);
            if buries {
                assert_eq!(dead.len(), 1);
                assert_eq!(&*dead[0].message, b"poison");
                assert_eq!(next.as_deref(), Ok("fine"));
                assert_eq!(channel.stats().dead, 1);
            } else {
                assert!(dead.is_empty());
                assert_eq!(next.as_deref(), Ok("poison"), "a dead message stays in its queue");
                assert_eq!(channel.last_delivered(id), Some((0, 3)));
            }
        }
    }

    #[test]
    fn ackwait_expiry_hands_the_message_to_another_and_rings_for_the_next() {
        let config = GroupConfig { ackwait: Duration::from_secs(10), ..queue_config() };
        let mut channel = queue(true);
        let rung = Arc::new(Mutex::new(Vec::new()));
        let log = rung.clone();
        channel.set_alarm(|| Arc::new(move |at| log.lock().unwrap().push(at)));
        append(&mut channel, "a", &config);
        append(&mut channel, "b", &config);
        let stopped = channel.open_reader(config.replay);
        let other = channel.open_reader(config.replay);
        assert_eq!(read(&mut channel, stopped, 1, &config).as_deref(), Ok("a"));
        assert_eq!(rung.lock().unwrap().len(), 1, "the first message in flight sets the alarm");
        assert_eq!(read(&mut channel, other, 100, &config).as_deref(), Ok("b"));
        assert_eq!(rung.lock().unwrap().len(), 1, "a later deadline waits for the alarm's call");
        let first = rung.lock().unwrap()[0];
        let (wakeups, dead) = channel.expire(first - Duration::from_secs(1), &config);
        drop(wakeups);
        assert!(dead.is_empty());
        assert_eq!(channel.stats().in_flight, 2, "not due yet");
        assert_eq!(rung.lock().unwrap().len(), 2, "rings again for the oldest");
        let (wakeups, _) = channel.expire(first, &config);
        drop(wakeups);
        assert_eq!(channel.stats().in_flight, 1, "a went back in line");
        assert_eq!(channel.stats().backlog, 1);
        let third = channel.open_reader(config.replay);
        assert_eq!(read(&mut channel, third, 100, &config).as_deref(), Ok("a"));
        assert_eq!(channel.last_delivered(third), Some((0, 2)));
        // The stopped reader's acknowledgement comes late: it counts once, the other's not again.
        drop(channel.close_reader(stopped, &config));
        drop(channel.close_reader(third, &config));
        assert_eq!(channel.stats().in_flight, 1);
        assert_eq!(channel.messages(), 1, "only b is not acknowledged");
    }

    #[test]
    fn depth_drops_the_oldest_even_in_flight() {
        let config = GroupConfig { depth: Depth::Messages(2), ..queue_config() };
        let mut channel = queue(true);
        append(&mut channel, "abc", &config);
        let id = channel.open_reader(config.replay);
        assert_eq!(read(&mut channel, id, 1, &config).as_deref(), Ok("a"));
        append(&mut channel, "d", &config);
        append(&mut channel, "e", &config);
        assert_eq!(read(&mut channel, id, 1, &config), Err(Errno::ENOBUFS), "its message was dropped");
        assert_eq!(read(&mut channel, id, 100, &config).as_deref(), Ok("d"));
        assert_eq!(channel.stats().in_flight, 1);
    }

    #[test]
    fn switching_modes_keeps_what_readers_have_yet_to_read() {
        let config = GroupConfig::default();
        let mut channel = Channel::new(Box::new(MemoryLog::default()), Arc::new(Memory::new(1 << 20)));
        let id = channel.open_reader(config.replay);
        append(&mut channel, "a", &config);
        append(&mut channel, "b", &config);
        assert_eq!(read(&mut channel, id, 100, &config).as_deref(), Ok("a"));
        channel.set_deliver(Deliver::One, true);
        let queued = queue_config();
        assert_eq!(read(&mut channel, id, 100, &queued).as_deref(), Ok("b"));
        append(&mut channel, "c", &queued);
        channel.set_deliver(Deliver::All, true);
        assert_eq!(
            read(&mut channel, id, 100, &config).as_deref(),
            Ok("b"),
            "from the oldest not acknowledged"
        );
        assert_eq!(read(&mut channel, id, 100, &config).as_deref(), Ok("c"));
    }

    /// The message numbers an ack log holds.
    fn entries(log: &dyn Log) -> Vec<u64> {
        let entry = |seq| u64::from_le_bytes((*log.get(seq).unwrap().unwrap()).try_into().unwrap());
        (log.first_seq()..log.next_seq()).map(entry).collect()
    }

    #[test]
    fn acknowledgements_out_of_order_are_kept_in_the_ack_log_across_a_remount() {
        let config = queue_config();
        let mut channel = queue(true);
        channel.keep_acks(Box::new(MemoryLog::default()));
        for message in ["a", "b", "c", "d"] {
            append(&mut channel, message, &config);
        }
        let (slow, fast) = (channel.open_reader(config.replay), channel.open_reader(config.replay));
        assert_eq!(read(&mut channel, slow, 100, &config).as_deref(), Ok("a"));
        assert_eq!(read(&mut channel, fast, 100, &config).as_deref(), Ok("b"));
        assert_eq!(read(&mut channel, fast, 100, &config).as_deref(), Ok("c"), "b acknowledged out of order");
        drop(channel.close_reader(fast, &config));
        let acks = channel.drop_acks().expect("an ack log");
        assert_eq!(entries(&*acks), [1, 2]);
        // The mount ends with a in flight: a new channel over the same logs.
        let log = channel.relog(Box::new(MemoryLog::default())).expect("relogged");
        let mut remounted = Channel::new(log, Arc::new(Memory::new(1 << 20)));
        remounted.set_deliver(Deliver::One, true);
        remounted.keep_acks(acks);
        let reader = remounted.open_reader(config.replay);
        assert_eq!(read(&mut remounted, reader, 100, &config).as_deref(), Ok("a"));
        assert_eq!(read(&mut remounted, reader, 100, &config).as_deref(), Ok("d"), "b and c never again");
        assert_eq!(remounted.messages(), 1, "a acknowledged: the front passed b and c");
        assert_eq!(entries(&*remounted.drop_acks().unwrap()), Vec::<u64>::new(), "compacted");
    }

    #[test]
    fn an_acknowledgement_in_order_moves_the_front_and_is_not_logged() {
        let config = queue_config();
        let mut channel = queue(true);
        channel.keep_acks(Box::new(MemoryLog::default()));
        append(&mut channel, "a", &config);
        let id = channel.open_reader(config.replay);
        assert_eq!(read(&mut channel, id, 100, &config).as_deref(), Ok("a"));
        drop(channel.close_reader(id, &config));
        assert_eq!(channel.messages(), 0);
        assert!(channel.drop_acks().unwrap().is_empty());
    }
}
