//! Streams and groups as the data path sees them: what a write commits and where.
//!
//! A group owns its configuration and its `order` channel; a stream owns its channel and a
//! copy of its group's configuration. A write takes the group's lock, then the stream's,
//! and appends to the stream and to `order` together, so `order` lists the writes of all
//! the group's streams in the order they were committed. The namespace (names, inodes,
//! permissions) lives in the tree and is not needed to write or read.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::channel::{Channel, Ticket, Wakeups, WriteCallback};
use super::config::{GroupConfig, WriteMode};
use super::errno::{Errno, Result};
use super::memory::{Memory, Reservation};
use super::seglog::SegLog;
use super::tree::NAME_MAX;

pub struct Group {
    pub state: Mutex<GroupState>,
}

pub struct GroupState {
    pub config: GroupConfig,
    pub order: Channel,
    /// Each user's last refused ctl write, as the comment line that user's reads of `ctl`
    /// end with, until that user's next ctl write to the group.
    pub ctl_errors: HashMap<u32, String>,
}

impl Group {
    pub fn new(config: GroupConfig, memory: Arc<Memory>) -> Arc<Group> {
        Group::with_order(config, Channel::new(memory))
    }

    /// A group whose `order` is a channel with history already (restored at mount).
    pub fn with_order(config: GroupConfig, order: Channel) -> Arc<Group> {
        let state = GroupState { config, order, ctl_errors: HashMap::new() };
        Arc::new(Group { state: Mutex::new(state) })
    }
}

pub struct Stream {
    pub state: Mutex<StreamState>,
}

pub struct StreamState {
    pub channel: Channel,
    /// The configuration of the group the stream is in, kept in step by ctl and rename.
    pub config: GroupConfig,
    pub group: Arc<Group>,
    /// What a write appends to the group's `order`: the stream's name and a newline.
    order_line: Vec<u8>,
}

/// The most a message of `len` bytes can cost when published: its log's growth and its
/// `order` line's, whatever either log holds by then.
pub fn most_cost(len: usize) -> u64 {
    SegLog::most_growth(len) + SegLog::most_growth(NAME_MAX + 1)
}

impl StreamState {
    /// Whether a write would have to wait for a reader to appear before committing, which
    /// a non-blocking writer is refused with EAGAIN (nothing is committed).
    pub fn would_wait(&self, nonblock: bool) -> bool {
        self.config.write == WriteMode::One && nonblock && self.channel.readers() == 0
    }

    /// Moves the stream under `group` as `name`.
    pub fn rehome(&mut self, group: Arc<Group>, config: GroupConfig, name: &[u8]) -> Wakeups {
        self.group = group;
        self.config = config;
        self.order_line = [name, b"\n"].concat();
        self.channel.retain(&self.config)
    }
}

impl Stream {
    pub fn new(group: Arc<Group>, config: GroupConfig, name: &[u8], memory: Arc<Memory>) -> Arc<Self> {
        Stream::with_channel(group, config, name, Channel::new(memory))
    }

    /// A stream whose channel has history already (restored at mount).
    pub fn with_channel(group: Arc<Group>, config: GroupConfig, name: &[u8], channel: Channel) -> Arc<Self> {
        let order_line = [name, b"\n"].concat();
        Arc::new(Stream { state: Mutex::new(StreamState { channel, config, group, order_line }) })
    }

    /// Commits one message: to the stream's readers and to its group's `order`.
    ///
    /// Without a waiter (a close publishing a whole-file message) the outcome is returned
    /// and nothing waits. With one, every outcome reaches its callback: under `write one` or
    /// `write all` only once the message was received, and the ticket of such a blocked
    /// write is returned.
    ///
    /// A message admitted beforehand brings its `reservation` (of at least `most_cost`), so
    /// it cannot fail for space, nor with EAGAIN: that was decided when it was admitted.
    pub fn publish(
        &self,
        message: &[u8],
        mut waiter: Option<WriteWaiter>,
        reservation: Option<Reservation>,
    ) -> Result<Option<Ticket>> {
        let mut wakeups = Wakeups::default();
        let result = match (self.commit(message, &mut waiter, reservation, &mut wakeups), waiter) {
            (Err(errno), Some(waiter)) => {
                wakeups.complete_write(waiter.callback, Err(errno));
                Ok(None)
            }
            (result, _) => result,
        };
        drop(wakeups); // completes parked reads and writes, outside the locks
        result
    }

    /// Appends to the stream and to `order` under both locks. Takes the waiter unless the
    /// message is refused.
    fn commit(
        &self,
        message: &[u8],
        waiter: &mut Option<WriteWaiter>,
        reservation: Option<Reservation>,
        wakeups: &mut Wakeups,
    ) -> Result<Option<Ticket>> {
        let admitted = reservation.is_some();
        loop {
            let group = self.state.lock().group.clone();
            let mut group_state = group.state.lock();
            let mut state = self.state.lock();
            if !Arc::ptr_eq(&state.group, &group) {
                continue; // renamed into another group meanwhile
            }
            if state.channel.is_closed() {
                return Err(Errno::EPIPE);
            }
            Channel::indexes(message.len())?;
            // The stream's log and the group's order both grow; what they take is charged to
            // the ceiling by the append, and held under it meanwhile by a reservation.
            let growth =
                state.channel.growth(message.len()) + group_state.order.growth(state.order_line.len());
            let _held = match reservation {
                // Within `most_cost`, which the reservation holds: growing takes nothing.
                Some(mut held) => held.grow_to(growth).then_some(held),
                None => state.channel.memory().reserve(growth),
            }
            .ok_or(Errno::ENOSPC)?;
            let config = state.config;
            let nonblock = waiter.as_ref().is_some_and(|w| w.nonblock);
            if !admitted && state.would_wait(nonblock) {
                return Err(Errno::EAGAIN);
            }
            if config.write == WriteMode::One && waiter.is_some() {
                // Kept for the next reader until one received it, whether or not its writer
                // waits: a non-blocking write admitted while a reader was open, or a blocked
                // write answered early, still delivers.
                let seq = state.channel.next_seq();
                state.channel.await_delivery(seq);
            }
            let blocked = match waiter.take() {
                Some(w) if config.write != WriteMode::NonBlock && !w.nonblock => {
                    let seq = state.channel.next_seq();
                    state.channel.expect_delivery(seq, config.write, w.ticket, w.callback);
                    Some(w.ticket)
                }
                Some(w) => {
                    wakeups.complete_write(w.callback, Ok(()));
                    None
                }
                None => None,
            };
            wakeups.merge(state.channel.append(message, &config));
            let order_config = group_state.config;
            wakeups.merge(group_state.order.append(&state.order_line, &order_config));
            return Ok(blocked.filter(|&ticket| state.channel.is_blocked(ticket)));
        }
    }
}

/// A write that may have to wait for its message to be received.
pub struct WriteWaiter {
    pub ticket: Ticket,
    /// The writer asked not to block (O_NONBLOCK).
    pub nonblock: bool,
    pub callback: WriteCallback,
}
