//! Retention: what the log keeps (by replay mode and depth, for the slowest reader and the
//! awaited `write one` messages), and what it is charged for in the mount's memory.

use super::{Channel, Wakeups};
use crate::engine::config::{GroupConfig, Replay};

impl Channel {
    /// Where the slowest reader is (the end of the log without readers).
    /// Under `deliver one`, the oldest message not acknowledged.
    pub(super) fn slowest(&self) -> u64 {
        if let Some(queue) = &self.queue {
            return queue.front;
        }
        self.positions.keys().next().copied().unwrap_or(self.log.next_seq())
    }

    /// Drops all history.
    pub fn clear(&mut self) {
        self.log.clear();
        self.trim_queue();
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
        // A queue keeps what is not acknowledged, whatever the replay mode.
        let replay = if self.closed || self.queue.is_some() { Replay::Off } else { config.replay };
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
        self.trim_queue();
        self.account();
        let mut wakeups = Wakeups::default();
        self.settle_writers(&mut wakeups);
        wakeups
    }

    /// Brings the mount-wide memory count up to date with this log.
    pub(super) fn account(&mut self) {
        let now = self.log.allocated();
        self.memory.recharge(self.charged, now);
        self.charged = now;
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.memory.recharge(self.charged, 0);
    }
}
