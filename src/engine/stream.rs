//! Streams and groups as the data path sees them: what a write commits and where.
//!
//! A group owns its configuration and its `order` channel; a stream owns its channel and a
//! copy of its group's configuration. A write takes the group's lock, then the stream's,
//! appends to the stream's log and then to `order`'s, and only once both took it delivers
//! it to both: so `order` lists the writes of all the group's streams in the order they
//! were committed, and a write either reaches both or (failing, its stream's append taken
//! back) neither. The namespace (names, inodes, permissions) lives in the tree and is not
//! needed to write or read.
//!
//! A stream of a followed group also has followers (durable subscriptions, wired by the tree:
//! `tree/follow.rs`): the streams of the same name in the groups that follow it, theirs in
//! turn, and so on. A write commits a copy in each, with its own number in its group, as one
//! commit: every log takes its append, or the write fails and every append is taken back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::{Mutex, MutexGuard};

use super::channel::{Appended, Channel, Origin, ReaderId, Ticket, Wakeups, WriteCallback};
use super::config::{Deliver, GroupConfig, WriteMode};
use super::errno::{Errno, Result};
use super::memory::{Memory, Reservation};
use super::synced::Join;
use super::tree::NAME_MAX;
use super::upstream::{Outgoing, Uplink};
use crate::storage::memory::MemoryLog;
use crate::storage::{Log, LogId, LogKind, Message, Placement, Stamp, Store, SyncPolicy};

/// How a message being committed is stamped: now, as written by its author, or as its
/// shared mount's upstream says.
enum Stamped {
    Now(Author),
    /// With the descriptor that wrote it, if it is a request.
    As(Stamp, Option<Origin>),
}

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
    /// A group whose `order` keeps its history in `order`.
    pub fn new(config: GroupConfig, order: Box<dyn Log>, memory: Arc<Memory>) -> Arc<Group> {
        Group::with_order(config, Channel::new(order, memory))
    }

    /// A group whose `order` is a channel with history already (restored at mount).
    pub fn with_order(config: GroupConfig, order: Channel) -> Arc<Group> {
        let state = GroupState { config, order, ctl_errors: HashMap::new() };
        Arc::new(Group { state: Mutex::new(state) })
    }
}

pub struct Stream {
    pub state: Mutex<StreamState>,
    /// On a shared mount, where its writes go instead of its log (`upstream.rs`).
    uplink: Option<Uplink>,
}

pub struct StreamState {
    pub channel: Channel,
    /// The configuration of the group the stream is in, kept in step by ctl and rename.
    pub config: GroupConfig,
    pub group: Arc<Group>,
    /// What a write appends to the group's `order`: the stream's name and a newline.
    order_line: Vec<u8>,
    /// The streams a write is copied into, parents before children (the order they are
    /// locked in): set by the tree (`tree/follow.rs`).
    pub followers: Vec<Follower>,
}

/// A stream a write is copied into, and its group. The tree unwires it before it moves or
/// goes (which waits for the writes holding the list), so while listed it stays in that
/// group, open.
#[derive(Clone)]
pub struct Follower {
    pub group: Arc<Group>,
    pub stream: Arc<Stream>,
}

impl Follower {
    /// Locks its group and then the stream.
    fn lock(&self) -> LockedCopy<'_> {
        let group = self.group.state.lock();
        let stream = self.stream.state.lock();
        debug_assert!(
            Arc::ptr_eq(&stream.group, &self.group) && !stream.channel.is_closed(),
            "unwired first"
        );
        LockedCopy { group, stream, appended: None }
    }
}

/// A copy of a write being committed, under its stream's and group's locks.
struct LockedCopy<'a> {
    group: MutexGuard<'a, GroupState>,
    stream: MutexGuard<'a, StreamState>,
    /// Its appends to the stream and to `order`, until delivered or taken back.
    appended: Option<(Appended, Appended)>,
}

impl LockedCopy<'_> {
    /// What the copy's logs grow by.
    fn growth(&self, len: usize) -> u64 {
        self.stream.channel.growth(len) + self.group.order.growth(self.stream.order_line.len())
    }

    /// Appends the copy to its stream and its group's `order`, stamped as `original` but
    /// numbered in its own group; on failure nothing of it is appended.
    fn append(&mut self, message: &[u8], original: &Stamp) -> Result<()> {
        let stamp = Stamp { group_seq: self.group.order.next_seq(), ..*original };
        let config = self.stream.config;
        let appended = self.stream.channel.append(Message::Borrowed(message), &stamp, false, &config)?;
        let order_config = self.group.config;
        let line = Message::Borrowed(&self.stream.order_line);
        match self.group.order.append(line, &stamp, false, &order_config) {
            Ok(ordered) => {
                self.appended = Some((appended, ordered));
                Ok(())
            }
            Err(errno) => {
                self.stream.channel.unappend(appended);
                Err(errno)
            }
        }
    }

    fn take_back(&mut self) {
        if let Some((appended, ordered)) = self.appended.take() {
            self.stream.channel.unappend(appended);
            self.group.order.unappend(ordered);
        }
    }

    fn deliver(&mut self, wakeups: &mut Wakeups) {
        if let Some((appended, ordered)) = self.appended.take() {
            let (config, order_config) = (self.stream.config, self.group.config);
            wakeups.merge(self.stream.channel.deliver(appended, &config));
            wakeups.merge(self.group.order.deliver(ordered, &order_config));
        }
    }
}

/// What the name of a stream of dead messages ends with, after its stream's name.
pub const DEAD_SUFFIX: &[u8] = b".dead";

/// The most a message of `len` bytes can cost when published: its log's growth and its
/// `order` line's, whatever either log holds by then.
pub fn most_cost(len: usize) -> u64 {
    MemoryLog::most_growth(len) + MemoryLog::most_growth(NAME_MAX + 1)
}

impl StreamState {
    /// The most a message of `len` bytes written to this stream can cost: `most_cost` for
    /// it and for each of its copies.
    pub fn most_cost(&self, len: usize) -> u64 {
        most_cost(len) * (1 + self.followers.len() as u64)
    }

    /// The stream's name as its group's `order` gives it (without the newline).
    pub fn order_name(&self) -> &[u8] {
        self.order_line.strip_suffix(b"\n").unwrap_or(&self.order_line)
    }

    /// Whether a write would have to wait for a reader to appear before committing, which
    /// a non-blocking writer is refused with EAGAIN (nothing is committed).
    pub fn would_wait(&self, nonblock: bool) -> bool {
        self.config.write == WriteMode::One && nonblock && self.channel.readers() == 0
    }

    /// Moves the stream under `group` as `name` (its history already where the group keeps
    /// it: see `move_history`).
    pub fn rehome(&mut self, group: Arc<Group>, config: GroupConfig, name: &[u8]) -> Wakeups {
        if self.config.sync != config.sync {
            self.channel.log_mut().set_policy(config.sync);
        }
        self.group = group;
        self.config = config;
        self.order_line = [name, b"\n"].concat();
        self.follow_deliver();
        self.channel.retain(&self.config)
    }

    /// Keeps stream `ino`'s acknowledgements where its configuration says: in an ack log of
    /// `store` for a `deliver one` stream kept on disk (the one kept before a remount, if
    /// any), else in memory only (an ack log it had is removed).
    pub fn place_acks(&mut self, store: &dyn Store, ino: u64) {
        let id = LogId { node: ino, kind: LogKind::Acks };
        let wanted = self.config.deliver == Deliver::One && self.config.store == Placement::Disk;
        let policy = policy_of(id, self.config.sync);
        match (wanted, self.channel.ack_log_mut()) {
            (true, Some(log)) => log.set_policy(policy),
            (true, None) => match store.log(id, Placement::Disk, policy) {
                Ok(log) => self.channel.keep_acks(log),
                Err(errno) => {
                    log::warn!("stream {ino}: no ack log ({errno}): acknowledgements kept in memory")
                }
            },
            (false, Some(_)) => {
                drop(self.channel.drop_acks());
                store.remove_log(id);
            }
            (false, None) => {}
        }
    }

    /// Makes the channel a queue or not, as the configuration's `deliver` says; a stream of
    /// dead messages (`NAME.dead`) keeps the messages that fail in it.
    pub fn follow_deliver(&mut self) {
        let buries = !self.order_name().ends_with(DEAD_SUFFIX);
        self.channel.set_deliver(self.config.deliver, buries);
    }
}

impl Stream {
    /// A stream named `name` in `group`, keeping its history in `log`.
    pub fn new(
        group: Arc<Group>,
        config: GroupConfig,
        name: &[u8],
        log: Box<dyn Log>,
        memory: Arc<Memory>,
        uplink: Option<Uplink>,
    ) -> Arc<Self> {
        Stream::build(group, config, name, Channel::new(log, memory), uplink)
    }

    /// A stream whose channel has history already (restored at mount).
    pub fn with_channel(group: Arc<Group>, config: GroupConfig, name: &[u8], channel: Channel) -> Arc<Self> {
        Stream::build(group, config, name, channel, None)
    }

    fn build(
        group: Arc<Group>,
        config: GroupConfig,
        name: &[u8],
        channel: Channel,
        uplink: Option<Uplink>,
    ) -> Arc<Self> {
        let order_line = [name, b"\n"].concat();
        let mut state = StreamState { channel, config, group, order_line, followers: Vec::new() };
        state.follow_deliver();
        Arc::new(Stream { state: Mutex::new(state), uplink })
    }

    /// Commits one message: to the stream's readers and to its group's `order`, and a copy
    /// to each of its followers'. Written through a queue descriptor that holds a request, it
    /// is instead that request's reply, for the requester alone (see `Channel::reply`).
    ///
    /// Without a waiter (a close publishing a whole-file message) the outcome is returned
    /// and nothing waits. With one, every outcome reaches its callback: under `write one` or
    /// `write all` only once the message was received, and the ticket of such a blocked
    /// write is returned.
    ///
    /// A message admitted beforehand brings its `reservation` (of at least `most_cost`), so
    /// it cannot fail for space, nor with EAGAIN: that was decided when it was admitted
    /// (unless a follower was wired since: then the reservation grows, or the write fails
    /// with ENOSPC). It can still fail as the logs' appends do (ENOSPC, EIO from a disk store).
    ///
    /// Under `sync always` a waiter's reply waits for its stream's log's sync too, and for
    /// that of each copy in a `sync always` group.
    pub fn publish(
        &self,
        message: Message<'_>,
        author: Author,
        mut waiter: Option<WriteWaiter>,
        reservation: Option<Reservation>,
    ) -> Result<Option<Ticket>> {
        if let Some(uplink) = &self.uplink {
            self.publish_upstream(uplink, message, author, waiter.map(|w| w.callback));
            return Ok(None);
        }
        let mut wakeups = Wakeups::default();
        let stamped = Stamped::Now(author);
        let result = match (self.commit(message, stamped, &mut waiter, reservation, &mut wakeups), waiter) {
            (Err(errno), Some(waiter)) => {
                wakeups.complete_write(waiter.callback, Err(errno));
                Ok(None)
            }
            (result, _) => result,
        };
        drop(wakeups); // completes parked reads and writes, outside the locks
        result
    }

    /// A write on a shared mount: a reply to a request its descriptor holds goes back to
    /// the requester, here or upstream; anything else is published upstream (a request
    /// first counted as waiting for its reply).
    fn publish_upstream(
        &self,
        uplink: &Uplink,
        message: Message<'_>,
        author: Author,
        done: Option<WriteCallback>,
    ) {
        let Uplink { upstream, ino } = uplink;
        let mut reply_to = None;
        if let Some(reader) = author.reader {
            let mut state = self.state.lock();
            let config = state.config;
            if let Some(to) = state.channel.remote_requester(reader) {
                drop(state);
                return upstream.reply(to, message.into_vec(), done);
            }
            if let Some(outcome) = state.channel.reply(reader, message.as_slice(), &config) {
                drop(state);
                let outcome = outcome.map(drop);
                return if let Some(done) = done {
                    done(outcome)
                };
            }
            reply_to = state.channel.expect_reply(reader).then_some(reader);
        }
        let Author { pid, uid, gid, .. } = author;
        let outgoing = Outgoing { stream: *ino, message: message.into_vec(), pid, uid, gid, reply_to };
        upstream.publish(outgoing, done);
    }

    /// A reader of the stream waits: a shared queue (`deliver one` on a shared mount) asks
    /// its upstream for a message.
    pub fn wants(&self) {
        let Some(Uplink { upstream, ino }) = &self.uplink else { return };
        let queue = self.state.lock().config.deliver == Deliver::One;
        if queue {
            upstream.wants(*ino);
        }
    }

    /// Whether the stream is a queue that its upstream feeds one message at a time (its
    /// messages do not come to every mount).
    pub fn is_shared_queue(&self) -> bool {
        self.uplink.is_some() && self.state.lock().config.deliver == Deliver::One
    }

    /// Commits a message a shared mount's upstream delivered, stamped as it says: as a
    /// write by nobody who waits for it.
    pub fn deliver_remote(&self, message: Message<'_>, stamp: Stamp, origin: Option<Origin>) -> Result<()> {
        let mut wakeups = Wakeups::default();
        let result =
            self.commit(message, Stamped::As(stamp, origin), &mut None, None, &mut wakeups).map(drop);
        drop(wakeups);
        result
    }

    /// Appends to the stream and to `order` under both locks, and each copy under its own,
    /// then delivers to all. Takes the waiter unless the message is refused.
    fn commit(
        &self,
        message: Message<'_>,
        stamped: Stamped,
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
            // A write through a descriptor that holds a request is its reply, not a message.
            let config = state.config;
            let author = match &stamped {
                Stamped::Now(author) => *author,
                Stamped::As(Stamp { pid, uid, gid, .. }, _) => {
                    Author { pid: *pid, uid: *uid, gid: *gid, reader: None }
                }
            };
            if let Some(outcome) =
                author.reader.and_then(|r| state.channel.reply(r, message.as_slice(), &config))
            {
                wakeups.merge(outcome?);
                if let Some(w) = waiter.take() {
                    wakeups.complete_write(w.callback, Ok(()));
                }
                return Ok(None);
            }
            Channel::indexes(message.len())?;
            // Locked after the stream, parents before children, as they were wired.
            let followers = state.followers.clone();
            let mut copies: Vec<LockedCopy> = followers.iter().map(Follower::lock).collect();
            // The stream's log and the group's order both grow, and each copy's; what they
            // take is charged to the ceiling by the append, and held under it meanwhile by a
            // reservation.
            let growth = state.channel.growth(message.len())
                + group_state.order.growth(state.order_line.len())
                + copies.iter().map(|copy| copy.growth(message.len())).sum::<u64>();
            let _held = match reservation {
                // Within `most_cost`, which the reservation holds: growing takes nothing.
                Some(mut held) => held.grow_to(growth).then_some(held),
                None => state.channel.memory().reserve(growth),
            }
            .ok_or(Errno::ENOSPC)?;
            let nonblock = waiter.as_ref().is_some_and(|w| w.nonblock);
            if !admitted && state.would_wait(nonblock) {
                return Err(Errno::EAGAIN);
            }
            let order_config = group_state.config;
            let stamp = match &stamped {
                Stamped::Now(author) => Stamp {
                    time: SystemTime::now(),
                    group_seq: group_state.order.next_seq(),
                    pid: author.pid,
                    uid: author.uid,
                    gid: author.gid,
                },
                Stamped::As(stamp, _) => *stamp,
            };
            // A `write one` message is kept for the next reader until one received it,
            // whether or not its writer waits: a non-blocking write admitted while a reader
            // was open, or a blocked write answered early, still delivers.
            let awaited = config.write == WriteMode::One && waiter.is_some();
            let blocks = waiter.as_ref().is_some_and(|w| config.write != WriteMode::NonBlock && !w.nonblock);
            // The copies first: the stream's append may take the message's buffer.
            let copied = copies.iter_mut().try_for_each(|copy| copy.append(message.as_slice(), &stamp));
            let take_back = |copies: &mut Vec<LockedCopy>, errno| {
                copies.iter_mut().for_each(LockedCopy::take_back);
                Err(errno)
            };
            if let Err(errno) = copied {
                return take_back(&mut copies, errno);
            }
            let appended = match state.channel.append(message, &stamp, awaited || blocks, &config) {
                Ok(appended) => appended,
                Err(errno) => return take_back(&mut copies, errno),
            };
            let line = Message::Borrowed(&state.order_line);
            let ordered = match group_state.order.append(line, &stamp, false, &order_config) {
                Ok(ordered) => ordered,
                Err(errno) => {
                    state.channel.unappend(appended);
                    return take_back(&mut copies, errno);
                }
            };
            // Committed: from here on nothing fails.
            let seq = appended.seq;
            let origin = match stamped {
                Stamped::Now(Author { reader: Some(reader), .. }) => {
                    state.channel.expect_reply(reader).then_some(Origin::Here(reader))
                }
                Stamped::Now(_) => None,
                Stamped::As(_, origin) => origin,
            };
            if let Some(origin) = origin {
                state.channel.remember_origin(seq, origin);
            }
            if awaited {
                state.channel.await_delivery(seq);
            }
            let blocked = match waiter.take() {
                Some(w) => {
                    let mut callback = w.callback;
                    let always = |config: &GroupConfig| config.sync == SyncPolicy::Always;
                    if always(&config) || copies.iter().any(|copy| always(&copy.stream.config)) {
                        // Answered once its stream's log synced (`policy_of` says why not
                        // `order`'s), and each copy's in a `sync always` group, as well as
                        // when it would be.
                        let join = Join::new(callback);
                        if always(&config) {
                            state.channel.sync(join.part());
                        }
                        for copy in copies.iter().filter(|copy| always(&copy.stream.config)) {
                            copy.stream.channel.sync(join.part());
                        }
                        callback = join.done();
                    }
                    if blocks {
                        state.channel.expect_delivery(seq, config.write, w.ticket, callback);
                        Some(w.ticket)
                    } else {
                        wakeups.complete_write(callback, Ok(()));
                        None
                    }
                }
                None => None,
            };
            wakeups.merge(state.channel.deliver(appended, &config));
            wakeups.merge(group_state.order.deliver(ordered, &order_config));
            copies.iter_mut().for_each(|copy| copy.deliver(wakeups));
            return Ok(blocked.filter(|&ticket| state.channel.is_blocked(ticket)));
        }
    }

    /// Calls `done` once everything committed to the stream and its group's `order` is on
    /// stable storage (fsync(2)).
    pub fn sync(&self, done: WriteCallback) {
        let group = self.state.lock().group.clone();
        let group_state = group.state.lock();
        let state = self.state.lock();
        let join = Join::new(done);
        state.channel.sync(join.part());
        group_state.order.sync(join.part());
        drop((state, group_state));
        join.done()(Ok(()));
    }
}

/// Moves a channel's retained history from a log kept as `from` says to a new one from
/// `store`, kept as `config` says (a group's `store` changed, or a stream moved into a group
/// with another). Rare, and simple: every message copied with its stamp. On failure the
/// history stays where it was, and the failure is logged.
pub fn move_history(
    channel: &mut Channel,
    store: &dyn Store,
    id: LogId,
    from: Placement,
    config: &GroupConfig,
) {
    match store.log(id, config.store, policy_of(id, config.sync)).and_then(|log| channel.relog(log)) {
        Ok(old) => {
            drop(old);
            if from == Placement::Disk {
                // The store's files of this log hold what is now kept in memory.
                store.remove_log(id);
            }
        }
        Err(errno) => log::warn!("the history of {id:?} stays in {from:?}: moving it failed: {errno}"),
    }
}

/// How often a `sync always` group's `order` reaches stable storage.
pub const ORDER_SYNC: std::time::Duration = std::time::Duration::from_secs(1);

/// When log `id` syncs on its own under its group's `sync`: as it says, but a `sync always`
/// group's `order` and ack logs within [`ORDER_SYNC`] (nothing waits for an ack's sync: a
/// power loss at worst delivers a message again). A write waits for its stream's log alone: its
/// record carries its number in the group, from which recovery rebuilds the `order` lines a
/// power loss took (`recovery.rs`), so a write pays one fdatasync, not two.
pub fn policy_of(id: LogId, sync: SyncPolicy) -> SyncPolicy {
    match sync {
        SyncPolicy::Always if id.kind != LogKind::Stream => SyncPolicy::Interval(ORDER_SYNC),
        sync => sync,
    }
}

/// Who wrote a message: what its stamp records besides when and where, and the reader of
/// the descriptor it was written through, if that reads the stream too (opened read-write:
/// in a queue, a request's reply goes back to it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Author {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    pub reader: Option<ReaderId>,
}

/// A write that may have to wait for its message to be received.
pub struct WriteWaiter {
    pub ticket: Ticket,
    /// The writer asked not to block (O_NONBLOCK).
    pub nonblock: bool,
    pub callback: WriteCallback,
}
