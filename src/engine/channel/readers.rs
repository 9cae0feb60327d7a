//! Reader cursors and parking: where each reader is (the message it is on, how much of it
//! it has had), how many readers stand at each message, and the reads and pollers waiting
//! for the next append; and the message each reader's last read returned bytes of, with its
//! stamp (sender identity).

use super::{Channel, PollCallback, ReadCallback, ReadMode, ReadResult, ReaderId, Ticket, Wakeups};
use crate::engine::config::{DataMode, GroupConfig};
use crate::engine::errno::{Errno, Result};
use crate::storage::{Bytes, Stamp};

/// A message by its number, with its stamp.
pub(super) type Stamped = (u64, Stamp);

/// The message a reader's last read returned bytes of: its number and stamp, and how many
/// times it has been delivered (more than once only in a queue: redeliveries).
#[derive(Clone, Copy, Debug)]
pub(super) struct Last {
    pub(super) seq: u64,
    pub(super) stamp: Stamp,
    pub(super) deliveries: u32,
}

/// A parked read.
pub(super) struct Waiter {
    pub(super) ticket: Ticket,
    pub(super) size: usize,
    pub(super) callback: ReadCallback,
}

/// A reader's cursor and what it waits with.
#[derive(Default)]
pub(super) struct Reader {
    /// The message this reader reads next.
    pub(super) next: u64,
    /// Bytes of message `next` this reader already received.
    pub(super) offset: usize,
    pub(super) waiters: Vec<Waiter>,
    /// Armed by the latest poll that asked to be told; the next append (or the close) tells
    /// it and drops it.
    pub(super) poller: Option<PollCallback>,
    /// The message the last read returned bytes of, kept here because the log may drop it
    /// as soon as it was read.
    pub(super) last: Option<Last>,
}

impl Reader {
    /// Whether an append has something to do for this reader: parked reads or a poller.
    fn waits(&self) -> bool {
        !self.waiters.is_empty() || self.poller.is_some()
    }
}

impl Channel {
    /// Changes reader `id`'s parked reads or poller with `change`, keeping `waiting` exact:
    /// the reader is listed once when it begins to wait and unlisted when it stops. Every
    /// change goes through here but those of an append, which serves the listed readers
    /// and keeps those still waiting, and of `close`, which ends every wait. None if there
    /// is no such reader.
    pub(super) fn park<T>(&mut self, id: ReaderId, change: impl FnOnce(&mut Reader) -> T) -> Option<T> {
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

    pub(super) fn readable(&self, id: ReaderId) -> bool {
        match self.readers.get(&id) {
            Some(_) if self.queue.is_some() => self.readable_queued(id),
            Some(reader) => self.closed || reader.next < self.log.next_seq(),
            None => true,
        }
    }

    /// Tells `id`'s poller and completes as many of its parked reads as there is data for;
    /// returns whether it still waits.
    pub(super) fn serve(&mut self, id: ReaderId, config: &GroupConfig, wakeups: &mut Wakeups) -> bool {
        let Some(reader) = self.readers.get_mut(&id) else { return false };
        wakeups.notify(reader.poller.take());
        let waiters = std::mem::take(&mut reader.waiters);
        let mut still_parked = Vec::new();
        for waiter in waiters {
            match self.take(id, waiter.size, ReadMode::Block, config) {
                Some(result) => wakeups.complete_read(waiter.callback, result),
                None => still_parked.push(waiter),
            }
        }
        let reader = self.readers.get_mut(&id).expect("reader exists");
        reader.waiters = still_parked;
        reader.waits()
    }

    /// The core of a read: the bytes `id` gets now, or None if it has to wait.
    pub(super) fn take(
        &mut self,
        id: ReaderId,
        size: usize,
        mode: ReadMode,
        config: &GroupConfig,
    ) -> Option<ReadResult> {
        if self.queue.is_some() {
            return self.take_queued(id, size, mode, config);
        }
        let data = config.data;
        let (next, offset) = {
            let reader = &self.readers[&id];
            (reader.next, reader.offset)
        };
        if next < self.log.first_seq() {
            // Unread messages were dropped: say so once, then go on from the oldest kept.
            if mode == ReadMode::Continuation {
                return Some(Ok(Bytes::default()));
            }
            self.move_reader(id, self.log.first_seq(), 0);
            return Some(Err(Errno::ENOBUFS));
        }
        if mode == ReadMode::Continuation && data == DataMode::Message && offset == 0 {
            // A message-mode read(2) ends with its message.
            return Some(Ok(Bytes::default()));
        }
        let (out, next, offset, last) = match self.cut(next, offset, size, data) {
            Ok(cut) => cut,
            Err(errno) => return Some(Err(errno)),
        };
        self.move_reader(id, next, offset);
        if let Some((seq, stamp)) = last {
            // A fan-out reader gets every message once.
            self.readers.get_mut(&id).expect("reader exists").last = Some(Last { seq, stamp, deliveries: 1 });
        }
        if !out.is_empty() || self.closed || mode == ReadMode::Continuation || size == 0 {
            Some(Ok(out))
        } else if mode == ReadMode::NonBlock {
            Some(Err(Errno::EAGAIN))
        } else {
            None
        }
    }

    /// The bytes a read of `size` gets from `offset` of message `next` on, where the reader
    /// is after them, and the message they end in with its stamp: a slice of one message,
    /// shared with the log, or (coalescing across messages) their bytes together.
    fn cut(
        &self,
        mut next: u64,
        mut offset: usize,
        size: usize,
        data: DataMode,
    ) -> Result<(Bytes, u64, usize, Option<Stamped>)> {
        let mut parts: Vec<Bytes> = Vec::new();
        let mut len = 0;
        let mut last = None;
        while len < size {
            let Some((message, stamp)) = self.log.get_stamped(next)? else { break };
            last = Some((next, stamp));
            let end = message.len().min(offset + size - len);
            parts.push(message.slice(offset..end));
            len += end - offset;
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
        let out = match parts.len() {
            0 => Bytes::default(),
            1 => parts.pop().expect("one part"),
            _ => Bytes::from(parts.iter().flat_map(|part| part.iter().copied()).collect::<Vec<u8>>()),
        };
        Ok((out, next, offset, last))
    }

    /// The message reader `id`'s last read returned bytes of, and how many times it has
    /// been delivered: once to a reader of a fan-out stream, which gets every message; in a
    /// queue, more than once for a redelivery.
    pub fn last_delivered(&self, id: ReaderId) -> Option<(u64, u32)> {
        self.readers.get(&id)?.last.map(|last| (last.seq, last.deliveries))
    }

    /// The stamp of that message.
    pub fn last_stamp(&self, id: ReaderId) -> Option<Stamp> {
        self.readers.get(&id)?.last.map(|last| last.stamp)
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

    pub(super) fn leave_position(&mut self, seq: u64) {
        if let Some(count) = self.positions.get_mut(&seq) {
            *count -= 1;
            if *count == 0 {
                self.positions.remove(&seq);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::config::GroupConfig;
    use crate::engine::memory::Memory;
    use crate::storage::memory::MemoryLog;
    use crate::storage::{Message, Stamp};

    /// Parks a read by `id` that must park.
    fn park_read(channel: &mut Channel, id: ReaderId, ticket: Ticket, config: &GroupConfig) {
        let (parked, wakeups) = channel.read(id, 100, ReadMode::Block, ticket, Box::new(|_| {}), config);
        assert_eq!(parked, Some(ticket));
        drop(wakeups);
    }

    #[test]
    fn a_reader_keeps_the_stamp_of_the_message_its_last_read_returned_bytes_of() {
        let mut config = GroupConfig { replay: crate::engine::config::Replay::All, ..GroupConfig::default() };
        let mut channel = Channel::new(Box::new(MemoryLog::default()), Arc::new(Memory::new(1 << 20)));
        for (i, message) in [&b"first"[..], b"second", b"third"].into_iter().enumerate() {
            let stamp = Stamp { group_seq: 10 + i as u64, pid: 100 + i as u32, ..Stamp::default() };
            let appended = channel.append(Message::Borrowed(message), &stamp, false, &config).unwrap();
            drop(channel.deliver(appended, &config));
        }
        let reader = channel.open_reader(config.replay);
        let read = |channel: &mut Channel, size: usize, config: &GroupConfig| {
            let got = Arc::new(parking_lot::Mutex::new(None));
            let sink = got.clone();
            let callback = Box::new(move |result: ReadResult| *sink.lock() = Some(result));
            drop(channel.read(reader, size, ReadMode::NonBlock, 0, callback, config));
            let result = got.lock().take().expect("a non-blocking read completes at once");
            result.map(|bytes| bytes.to_vec())
        };
        assert_eq!(channel.last_delivered(reader), None, "nothing read yet");
        // Part of a message: that message; the rest of it: still that one.
        assert_eq!(read(&mut channel, 2, &config), Ok(b"fi".to_vec()));
        assert_eq!(channel.last_delivered(reader), Some((0, 1)));
        assert_eq!(read(&mut channel, 100, &config), Ok(b"rst".to_vec()));
        assert_eq!(channel.last_stamp(reader).map(|s| (s.group_seq, s.pid)), Some((10, 100)));
        // Coalescing across messages: the last one it returned bytes of.
        config.data = DataMode::Coalesce;
        assert_eq!(read(&mut channel, 9, &config), Ok(b"secondthi".to_vec()));
        assert_eq!(channel.last_delivered(reader), Some((2, 1)));
        assert_eq!(read(&mut channel, 100, &config), Ok(b"rd".to_vec()));
        // A read that finds nothing keeps it.
        assert_eq!(read(&mut channel, 100, &config), Err(Errno::EAGAIN));
        assert_eq!(channel.last_stamp(reader).map(|s| (s.group_seq, s.pid)), Some((12, 102)));
    }

    #[test]
    fn waiting_lists_each_waiting_reader_once_and_no_other() {
        let config = GroupConfig::default();
        let log = Box::new(MemoryLog::default());
        let mut channel = Channel::new(log, Arc::new(Memory::new(1 << 20)));
        let append = |channel: &mut Channel, message: &[u8]| {
            let appended = channel.append(Message::Borrowed(message), &Stamp::default(), false, &config);
            channel.deliver(appended.expect("a memory log appends"), &config)
        };
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
        // An append serves what it can and tells the poller, which the next poll re-arms.
        drop(append(&mut channel, b"m"));
        assert_eq!(channel.waiting, [idle], "idle has a read left; polling was told and served");
        drop(append(&mut channel, b"n"));
        assert!(channel.waiting.is_empty());
        park_read(&mut channel, idle, 103, &config);
        assert!(channel.poll(polling, Some(Arc::new(|| {}))), "readable, and armed all the same");
        assert_eq!(channel.waiting, [idle, polling]);
        // Closing a reader unlists it, whatever it waited with.
        drop(channel.close_reader(polling, &config));
        assert_eq!(channel.waiting, [idle]);
        drop(channel.close_reader(idle, &config));
        assert!(channel.waiting.is_empty());
    }
}
