//! Blocked writers: the writes that wait until their message has been received (`write one`,
//! `write all`), and the `write one` messages kept for the next reader to open.

use std::collections::HashMap;

use super::readers::Reader;
use super::{Channel, ReaderId, Ticket, Wakeups, WriteCallback};
use crate::engine::config::WriteMode;

/// The reply of a write waiting until its message has been received (`write one` /
/// `write all`). Only the reply: what a `write one` message needs kept is in
/// `Channel::awaited`, which outlives a reply sent early because of a signal.
pub(super) struct BlockedWriter {
    ticket: Ticket,
    seq: u64,
    /// For `write all`, the readers open at the commit; for `write one`, None.
    readers: Option<Vec<ReaderId>>,
    pub(super) callback: WriteCallback,
}

impl Channel {
    /// Keeps `write one` message `seq`, about to be appended, until a reader has received
    /// it: a reader opened later starts with it.
    pub fn await_delivery(&mut self, seq: u64) {
        self.awaited.push_back(seq);
    }

    /// Keeps `callback` until message `seq`, about to be appended, has been received: by
    /// any reader (`write one`, whose message `await_delivery` keeps), or by every reader
    /// open now (`write all`). Checked after every read, close and drop, the append included.
    pub fn expect_delivery(&mut self, seq: u64, mode: WriteMode, ticket: Ticket, callback: WriteCallback) {
        let readers = (mode == WriteMode::All).then(|| self.readers.keys().copied().collect());
        self.writers.push(BlockedWriter { ticket, seq, readers, callback });
    }

    /// Whether the write with `ticket` still waits for its message to be received.
    pub fn is_blocked(&self, ticket: Ticket) -> bool {
        self.writers.iter().any(|w| w.ticket == ticket)
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
        wakeups.complete_write(writer.callback, Ok(()));
        (true, wakeups)
    }

    /// Completes the blocked writes whose message has been received as their mode asks,
    /// or can no longer be (it was dropped); a `write one` message received by a reader or
    /// dropped is no longer awaited.
    pub(super) fn settle_writers(&mut self, wakeups: &mut Wakeups) {
        if self.writers.is_empty() && self.awaited.is_empty() {
            return;
        }
        let first = self.log.first_seq();
        // Every message before the furthest reader was received by it (a reader skips a
        // message only when it is dropped, and then it is before `first`).
        // A queue's message is received when handed out.
        let furthest = self.handed().or_else(|| self.positions.keys().next_back().copied()).unwrap_or(0);
        let passed = first.max(furthest);
        let queue = self.queue.is_some();
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
                        Some(ids) if !queue => ids.iter().all(|id| received(&self.readers, id, writer.seq)),
                        _ => writer.seq < passed,
                    }
            });
        self.writers = waiting;
        for writer in done {
            wakeups.complete_write(writer.callback, Ok(()));
        }
    }
}
