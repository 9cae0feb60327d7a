//! Request/reply in a queue: a message written through a descriptor that also reads the
//! stream (opened read-write) is a request that remembers it. A write through a descriptor
//! that holds such a request is its reply: it goes to that descriptor's private reply queue
//! only (not the log, not `order`), or nowhere if that descriptor was closed. A descriptor
//! reads replies while it has replies queued or requests it has not read a reply to, and
//! requests otherwise. A queued reply is charged to the mount's memory ceiling until read.

use std::collections::VecDeque;

use super::{Channel, ReadMode, ReadResult, ReaderId, Wakeups};
use crate::engine::config::GroupConfig;
use crate::engine::errno::{Errno, Result};
use crate::engine::memory::Reservation;
use crate::storage::Bytes;

/// The reply side of a read-write descriptor that wrote requests.
#[derive(Default)]
pub(super) struct Client {
    /// Requests written whose reply has not been read yet.
    awaiting: u64,
    /// Each with what it holds of the memory ceiling.
    replies: VecDeque<(Bytes, Reservation)>,
    /// The reply being read, and how much of it was returned.
    reading: Option<(Bytes, usize)>,
}

impl Client {
    /// Whether the descriptor reads replies now.
    pub(super) fn reads_replies(&self) -> bool {
        self.awaiting > 0 || !self.replies.is_empty() || self.reading.is_some()
    }

    /// Whether a read would return a reply at once.
    pub(super) fn has_reply(&self) -> bool {
        !self.replies.is_empty() || self.reading.is_some()
    }

    /// A read of `size` in the reply role: the rest of the reply being read, or the next
    /// one; None if it has to wait for one.
    pub(super) fn take(&mut self, size: usize, mode: ReadMode) -> Option<ReadResult> {
        if self.reading.is_none() {
            if mode == ReadMode::Continuation {
                return Some(Ok(Bytes::default()));
            }
            let (reply, _charged) = self.replies.pop_front()?;
            self.awaiting = self.awaiting.saturating_sub(1);
            self.reading = Some((reply, 0));
        }
        let (reply, offset) = self.reading.take().expect("a reply being read");
        let end = reply.len().min(offset + size);
        let out = reply.slice(offset..end);
        if end < reply.len() {
            self.reading = Some((reply, end));
        }
        Some(Ok(out))
    }
}

impl Channel {
    /// Message `seq`, about to be delivered, was written through reader `id`'s descriptor:
    /// in a queue it is a request, whose reply goes back to `id`.
    pub fn remember_origin(&mut self, seq: u64, id: ReaderId) {
        let Some(queue) = &mut self.queue else { return };
        if !self.readers.contains_key(&id) {
            return;
        }
        queue.origins.insert(seq, id);
        queue.clients.entry(id).or_default().awaiting += 1;
    }

    /// A write of `message` through reader `id`'s descriptor, if it is a reply: the reader
    /// holds a request whose writer reads the stream. Then it is queued for that writer
    /// alone (`ENOSPC` if the memory ceiling has no room for it), or dropped if the writer
    /// closed (the write succeeds), and the wake-ups it owes are returned. None: it is no
    /// reply, to be published.
    pub fn reply(&mut self, id: ReaderId, message: &[u8], config: &GroupConfig) -> Option<Result<Wakeups>> {
        let queue = self.queue.as_mut()?;
        let client = queue.requester(id)?;
        match queue.clients.get_mut(&client).filter(|_| self.readers.contains_key(&client)) {
            Some(waiting) => {
                let Some(charged) = self.memory.reserve(message.len() as u64) else {
                    return Some(Err(Errno::ENOSPC));
                };
                waiting.replies.push_back((Bytes::from(message.to_vec()), charged));
            }
            None => {
                log::debug!("a reply of {} bytes dropped: its requester closed", message.len());
                return Some(Ok(Wakeups::default()));
            }
        }
        Some(Ok(self.serve_waiting(config)))
    }
}
