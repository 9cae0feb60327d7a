//! Durable acknowledgements: a `deliver one` stream kept on disk keeps its acknowledgements
//! out of order in a log of the store (`LogKind::Acks`, one 8-byte little-endian message
//! number each). One in order moves the queue's front on, and retention then drops the
//! message from the stream's log, whose dropped head the log records; so after a remount the
//! queue starts at the log's first message and skips those its ack log names: what was not
//! acknowledged (queued or in flight) is delivered again, what was never is. The ack log
//! drops the numbers the front has passed.

use super::{Channel, Settled};
use crate::storage::{Log, Message, Stamp};

/// The message number an ack log entry holds.
fn number(entry: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(entry.try_into().ok()?))
}

impl Channel {
    /// Keeps the queue's acknowledgements in `log` from now on: a log with entries (kept
    /// before a remount) tells what was acknowledged; an empty one is given what is now.
    pub fn keep_acks(&mut self, mut log: Box<dyn Log>) {
        if let Some(queue) = &mut self.queue {
            if log.is_empty() {
                for seq in queue.acked().collect::<Vec<_>>() {
                    record(&mut *log, seq);
                }
            } else {
                for entry in log.first_seq()..log.next_seq() {
                    match log.get(entry).map(|bytes| bytes.as_deref().and_then(number)) {
                        Ok(Some(seq)) => queue.restore_ack(seq),
                        Ok(None) => log::warn!("an ack log entry is not a message number: skipped"),
                        Err(errno) => log::warn!("an ack log entry cannot be read ({errno}): skipped"),
                    }
                }
            }
        }
        self.acks = Some(log);
        self.compact_acks();
    }

    /// Gives up the ack log, which is returned (the stream is no longer a queue on disk).
    pub fn drop_acks(&mut self) -> Option<Box<dyn Log>> {
        self.acks.take()
    }

    pub fn has_ack_log(&self) -> bool {
        self.acks.is_some()
    }

    /// The ack log, to change its policy.
    pub fn ack_log_mut(&mut self) -> Option<&mut (dyn Log + 'static)> {
        self.acks.as_deref_mut()
    }

    /// Acknowledges message `seq` of the queue, in the ack log if it is out of order.
    pub(super) fn ack(&mut self, seq: u64) {
        let Some(queue) = &mut self.queue else { return };
        let in_order = seq == queue.front;
        if !queue.acknowledge(seq) {
            return;
        }
        if let (Some(settle), Ok(Some(stamp))) = (&self.settle, self.log.stamp(seq)) {
            settle(stamp, Settled::Acked);
        }
        if let (false, Some(log)) = (in_order, &mut self.acks) {
            record(&mut **log, seq);
        }
        self.compact_acks();
    }

    /// Drops the ack log's numbers that the queue's front has passed, from its oldest on.
    pub(super) fn compact_acks(&mut self) {
        let (Some(log), Some(queue)) = (&mut self.acks, &self.queue) else { return };
        while let Ok(Some(entry)) = log.get(log.first_seq()) {
            if number(&entry).is_some_and(|seq| seq >= queue.front) {
                break;
            }
            log.pop_front();
        }
    }
}

fn record(log: &mut dyn Log, seq: u64) {
    if let Err(errno) = log.append(Message::Borrowed(&seq.to_le_bytes()), &Stamp::default()) {
        log::warn!(
            "acknowledgement of message {seq} not kept ({errno}): it may be delivered again after a remount"
        );
    }
}
