//! Request/reply in a queue: a message written through a descriptor that also reads the
//! stream (opened read-write) is a request that remembers it. A write through a descriptor
//! that holds such a request is its reply: it goes to that descriptor's private reply queue
//! only (not the log, not `order`), or nowhere if that descriptor was closed. A descriptor
//! reads replies while it has replies queued or requests it has not read a reply to, and
//! requests otherwise. A queued reply is charged to the mount's memory ceiling until read.
//! On a shared mount a request may come from another mount: its reply goes back upstream.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{Channel, ReadMode, ReadResult, ReaderId, Wakeups};
use crate::engine::config::GroupConfig;
use crate::engine::errno::{Errno, Result};
use crate::engine::memory::Reservation;
use crate::storage::Bytes;

/// Where a request came from: a read-write descriptor of this mount, or, on a shared
/// mount, one of another, by the address its upstream gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Here(ReaderId),
    Away(Arc<str>),
}

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
    /// Message `seq`, about to be delivered, was written through the descriptor `origin`
    /// names: in a queue it is a request, whose reply goes back there (a descriptor of this
    /// mount was counted as waiting for it by `expect_reply`).
    pub fn remember_origin(&mut self, seq: u64, origin: Origin) {
        if let Some(queue) = &mut self.queue {
            queue.origins.insert(seq, origin);
        }
    }

    /// Reader `id`'s descriptor wrote a request: it reads its reply. False if the channel
    /// is no queue, or `id` no reader.
    pub fn expect_reply(&mut self, id: ReaderId) -> bool {
        let Some(queue) = &mut self.queue else { return false };
        if !self.readers.contains_key(&id) {
            return false;
        }
        queue.clients.entry(id).or_default().awaiting += 1;
        true
    }

    /// Where a reply written through reader `id`'s descriptor goes upstream: the request it
    /// holds came from another mount.
    pub fn remote_requester(&self, id: ReaderId) -> Option<Arc<str>> {
        match self.queue.as_ref()?.requester(id)? {
            Origin::Away(address) => Some(address.clone()),
            Origin::Here(_) => None,
        }
    }

    /// A write of `message` through reader `id`'s descriptor, if it is a reply: the reader
    /// holds a request whose writer reads the stream. Then it is queued for that writer
    /// alone (`ENOSPC` if the memory ceiling has no room for it), or dropped if the writer
    /// closed (the write succeeds), and the wake-ups it owes are returned. None: it is no
    /// reply, to be published.
    pub fn reply(&mut self, id: ReaderId, message: &[u8], config: &GroupConfig) -> Option<Result<Wakeups>> {
        let Origin::Here(client) = *self.queue.as_ref()?.requester(id)? else { return None };
        Some(self.queue_reply(client, message, config))
    }

    /// Queues `message` as a reply for reader `client`, or drops it if `client` closed.
    pub fn queue_reply(&mut self, client: ReaderId, message: &[u8], config: &GroupConfig) -> Result<Wakeups> {
        let Some(queue) = self.queue.as_mut() else { return Ok(Wakeups::default()) };
        match queue.clients.get_mut(&client).filter(|_| self.readers.contains_key(&client)) {
            Some(waiting) => {
                let Some(charged) = self.memory.reserve(message.len() as u64) else {
                    return Err(Errno::ENOSPC);
                };
                waiting.replies.push_back((Bytes::from(message.to_vec()), charged));
            }
            None => {
                log::debug!("a reply of {} bytes dropped: its requester closed", message.len());
                return Ok(Wakeups::default());
            }
        }
        Ok(self.serve_waiting(config))
    }
}
