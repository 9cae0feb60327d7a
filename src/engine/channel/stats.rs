//! A channel's numbers as `mqfs-stat` and the `user.mq.*` extended attributes show them:
//! readers, backlog, messages and bytes retained, and the queue counters (in flight,
//! redelivered, dead) of a `deliver one` stream.

use super::Channel;

/// One stream's numbers, each a count at the moment they were taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Open read descriptors.
    pub readers: u64,
    /// Messages waiting to be read: those the slowest reader has not read yet (none without
    /// readers).
    pub backlog: u64,
    /// Messages handed to a reader and not yet acknowledged.
    pub in_flight: u64,
    /// Deliveries that were redeliveries.
    pub redelivered: u64,
    /// Messages moved to the stream's dead-letter stream.
    pub dead: u64,
    /// Messages retained.
    pub messages: u64,
    /// Payload bytes retained.
    pub bytes: u64,
}

impl Stats {
    /// Each number under its extended attribute's name (`user.mq.` and this), in the order
    /// listxattr gives them.
    pub fn named(&self) -> [(&'static str, u64); 7] {
        [
            ("readers", self.readers),
            ("backlog", self.backlog),
            ("inflight", self.in_flight),
            ("redelivered", self.redelivered),
            ("dead", self.dead),
            ("messages", self.messages),
            ("bytes", self.bytes),
        ]
    }
}

impl Channel {
    /// The channel's numbers now.
    pub fn stats(&self) -> Stats {
        let (first, end) = (self.log.first_seq(), self.log.next_seq());
        let mut stats = Stats {
            readers: self.readers(),
            messages: self.messages(),
            bytes: self.bytes(),
            ..Stats::default()
        };
        match &self.queue {
            Some(queue) => queue.count(first, end, &mut stats),
            None => stats.backlog = end - self.slowest().max(first).min(end),
        }
        stats
    }
}
