//! Open files: what each open file description holds (a reader's cursor, a message being
//! assembled, a ctl snapshot) and how its reads and writes reach channels.

use std::sync::Arc;

use parking_lot::Mutex;

use super::channel::{
    Channel, PollCallback, ReadCallback, ReadMode, ReaderId, Ticket, Wakeups, WriteCallback,
};
use super::config::{DataMode, Frame, GroupConfig};
use super::dead::Graveyard;
use super::errno::{Errno, Result};
use super::memory::{Memory, Reservation};
use super::stream::{Author, Group, Stream, WriteWaiter};
use super::synced::Join;
use super::tree::Ino;
use super::{OpenKind, Received, WriteRequest};
use crate::storage::{Bytes, Message};

/// The channel an open file reads: a stream's, or a group's `order`.
pub enum Source {
    Stream(Arc<Stream>),
    Order(Arc<Group>),
}

impl Source {
    /// Runs `f` on the channel and its configuration, under the channel's lock.
    fn with<R>(&self, f: impl FnOnce(&mut Channel, &GroupConfig) -> R) -> R {
        match self {
            Source::Stream(stream) => {
                let mut state = stream.state.lock();
                let config = state.config;
                f(&mut state.channel, &config)
            }
            Source::Order(group) => {
                let mut state = group.state.lock();
                let config = state.config;
                f(&mut state.order, &config)
            }
        }
    }
}

pub enum Handle {
    /// A stream or `order` read as a stream: each reader has its own cursor.
    Channel {
        /// The file's inode number: a stream's dead messages go beside it.
        ino: Ino,
        source: Source,
        /// The cursor of a handle opened for reading.
        reader: Option<ReaderId>,
        writing: Writing,
    },
    /// A stream or `order` in `data static` mode, read by offset like a regular file.
    Static {
        source: Source,
        writing: Writing,
        resume: Mutex<Resume>,
    },
    Ctl(CtlFile),
}

/// An open `ctl`.
pub struct CtlFile {
    pub group: Ino,
    /// Who opened it: a refused write is remembered for that user's next reads of ctl.
    pub uid: u32,
    /// What reading returns first: the configuration and status when the file was opened.
    pub text: Vec<u8>,
    /// What ends it: why the opener's last ctl write was refused, if it was: the refusal
    /// known at the open, then that of a write through this file (one comment, replaced by
    /// the next refusal and gone after an applied write, so repeated refusals take no memory).
    pub error: Mutex<Option<String>>,
    /// A ctl write(2) is assembled like a message, then applied whole.
    pub writing: Writing,
}

impl Handle {
    /// Opens a stream or `order`; its `data static` and frame modes are the group's now,
    /// for as long as the file stays open.
    pub fn open(ino: Ino, source: Source, read: bool) -> (Handle, OpenKind) {
        let (config, reader) = source.with(|channel, config| {
            let reader =
                (read && config.data != DataMode::Static).then(|| channel.open_reader(config.replay));
            (*config, reader)
        });
        let writing = Writing::new(config.frame);
        match config.data {
            DataMode::Static => {
                (Handle::Static { source, writing, resume: Mutex::default() }, OpenKind::Static)
            }
            _ => (Handle::Channel { ino, source, reader, writing }, OpenKind::Stream),
        }
    }

    /// Gives up the handle's cursor; a message still being assembled is dropped unpublished.
    pub fn close(&self) {
        if let Handle::Channel { source, reader: Some(reader), .. } = self {
            let wakeups = source.with(|channel, config| channel.close_reader(*reader, config));
            drop(wakeups);
        }
    }

    pub fn read(
        &self,
        offset: u64,
        size: usize,
        mode: ReadMode,
        ticket: Ticket,
        callback: ReadCallback,
    ) -> Option<Ticket> {
        let (parked, wakeups) = match self {
            Handle::Channel { source, reader: Some(reader), .. } => {
                source.with(|channel, config| channel.read(*reader, size, mode, ticket, callback, config))
            }
            Handle::Static { source, resume, .. } => {
                callback(resume.lock().read(source, offset, size).map(Bytes::from));
                return None;
            }
            Handle::Ctl(_) => {
                callback(self.read_at(offset, size).map(Bytes::from));
                return None;
            }
            Handle::Channel { reader: None, .. } => {
                callback(Err(Errno::EBADF));
                return None;
            }
        };
        drop(wakeups);
        if parked.is_some() {
            self.waits();
        }
        parked
    }

    /// Its reader waits for a message: a shared queue asks its upstream for one.
    fn waits(&self) {
        if let Handle::Channel { source: Source::Stream(stream), .. } = self {
            stream.wants();
        }
    }

    /// Reads `size` bytes at exactly `offset` of a file read by offset (a static stream or
    /// `order`, ctl), for the page cache. A stream read as a stream has no offsets, and its
    /// bytes are read by moving a cursor: such a read (a memory mapping's page-in, sendfile)
    /// fails with ENODEV, as mmap(2) fails on files that cannot be mapped, and the cursor
    /// stays where it is. So does a read of a static file's dropped head: those bytes are gone.
    pub fn read_at(&self, offset: u64, size: usize) -> Result<Vec<u8>> {
        match self {
            Handle::Static { source, .. } => source.with(|channel, _| {
                if offset < channel.span().0 { Err(Errno::ENODEV) } else { channel.read_at(offset, size) }
            }),
            Handle::Ctl(ctl) => {
                let error = ctl.error.lock();
                let text = [&ctl.text[..], error.as_deref().unwrap_or_default().as_bytes()].concat();
                let start = (offset as usize).min(text.len());
                let end = start.saturating_add(size).min(text.len());
                Ok(text[start..end].to_vec())
            }
            Handle::Channel { .. } => Err(Errno::ENODEV),
        }
    }

    /// Writes one WRITE request's bytes to a stream; see `Engine::write`.
    pub fn write(
        &self,
        request: &WriteRequest,
        size_of_call: impl FnOnce() -> Option<u64>,
        call_id: impl Fn(u64) -> Option<u64>,
        waiter: WriteWaiter,
        max_message: u64,
        memory: &Arc<Memory>,
    ) -> Option<Ticket> {
        let (Handle::Channel { source: Source::Stream(stream), writing, .. }
        | Handle::Static { source: Source::Stream(stream), writing, .. }) = self
        else {
            (waiter.callback)(Err(Errno::EBADF));
            return None;
        };
        let nonblock = waiter.nonblock;
        let would_wait = || stream.state.lock().would_wait(nonblock);
        let cost = |len| stream.state.lock().most_cost(len);
        let reader = match self {
            Handle::Channel { reader, .. } => *reader,
            _ => None,
        };
        let author = Author { pid: request.pid, uid: request.uid, gid: request.gid, reader };
        let admission = Admission { would_wait, cost, max_message, memory };
        match writing.take(request, size_of_call, call_id, admission) {
            Ok(Step::Message(message, reservation)) => {
                stream.publish(message, author, Some(waiter), reservation).unwrap_or(None)
            }
            Ok(Step::More) => {
                (waiter.callback)(Ok(()));
                None
            }
            Err(errno) => {
                (waiter.callback)(Err(errno));
                None
            }
        }
    }

    /// At a close by thread `closer`: ends a write(2) through the file that its writer left
    /// (see `Writing::at_close`), and publishes what was written under `frame close` as one
    /// message by `author`, unless the writer is `dying`. A queue's reader that is `dying`
    /// gives its message in flight back (to the front of the line, or to the `graveyard`).
    /// `dying` is asked only when there is something to publish or give back.
    pub fn flush(
        &self,
        closer: u64,
        author: Author,
        dying: impl FnOnce() -> bool,
        call_id: impl Fn(u64) -> Option<u64>,
        graveyard: &Graveyard,
    ) -> Result<()> {
        let mut dying = Some(dying);
        let mut known = None;
        let mut dying = move || *known.get_or_insert_with(|| dying.take().is_some_and(|dying| dying()));
        if let Handle::Channel { ino, source: source @ Source::Stream(stream), reader: Some(reader), .. } =
            self
            && stream.state.lock().channel.holds(*reader)
            && dying()
        {
            let (wakeups, dead) = source.with(|channel, config| channel.abandon(*reader, config));
            drop(wakeups);
            log::info!("a reader of stream {ino} died: its message in flight is given back");
            graveyard.bury(*ino, dead);
        }
        let (Handle::Channel { source: Source::Stream(stream), writing, .. }
        | Handle::Static { source: Source::Stream(stream), writing, .. }) = self
        else {
            return Ok(());
        };
        match writing.at_close(closer, call_id) {
            None => Ok(()),
            Some((data, _)) if dying() => {
                log::info!("a writer died before closing: {} bytes not published", data.len());
                Ok(())
            }
            Some((data, reservation)) => {
                stream.publish(Message::Owned(data), author, None, reservation).map(|_| ())
            }
        }
    }

    /// Calls `done` once what was committed to the handle's channel is on stable storage
    /// (see `Engine::fsync`).
    pub fn sync(&self, done: WriteCallback) {
        match self {
            Handle::Channel { source, .. } | Handle::Static { source, .. } => match source {
                Source::Stream(stream) => stream.sync(done),
                Source::Order(group) => {
                    let join = Join::new(done);
                    group.state.lock().order.sync(join.part());
                    join.done()(Ok(()));
                }
            },
            Handle::Ctl(_) => done(Ok(())),
        }
    }

    /// Cancels a parked read (with `error`) or a blocked write (which succeeds: its message
    /// is committed). False if nothing with that ticket waits here.
    pub fn cancel(&self, ticket: Ticket, error: Errno) -> bool {
        let (cancelled, wakeups) = match self {
            Handle::Channel { source, reader, .. } => source.with(|channel, _| {
                let (written, mut wakeups) = channel.cancel_write(ticket);
                if written {
                    return (true, wakeups);
                }
                let Some(reader) = reader else { return (false, wakeups) };
                let (read, more) = channel.cancel(*reader, ticket, error);
                wakeups.merge(more);
                (read, wakeups)
            }),
            Handle::Static { source, .. } => source.with(|channel, _| channel.cancel_write(ticket)),
            Handle::Ctl(_) => (false, Wakeups::default()),
        };
        drop(wakeups);
        cancelled
    }

    /// The message the handle's last read returned bytes of (see `Engine::stamp`): None
    /// before its first, and for a handle that reads no messages (write-only, `data
    /// static`, ctl).
    pub fn received(&self) -> Option<Received> {
        let Handle::Channel { source, reader: Some(reader), .. } = self else { return None };
        source.with(|channel, _| {
            let (seq, deliveries) = channel.last_delivered(*reader)?;
            Some(Received { seq, deliveries, stamp: channel.last_stamp(*reader)? })
        })
    }

    pub fn poll(&self, poller: Option<PollCallback>) -> bool {
        match self {
            Handle::Channel { source, reader: Some(reader), .. } => {
                let readable = source.with(|channel, _| channel.poll(*reader, poller));
                if !readable {
                    self.waits();
                }
                readable
            }
            _ => true,
        }
    }
}

/// Where a static file's next sequential read goes on: the offset its last read ended at,
/// and the stream position that was. Two reads skip the dropped head of the history (which
/// a read at any other offset finds as zeros) and start at the oldest retained byte: a read
/// at offset 0, so that reading from the start reads the retained history, and a read that
/// goes on where the previous one ended, if what followed was dropped meanwhile, so that a
/// reader that fell behind (`tail -f` outrun by a writer) loses what was dropped but goes on
/// with whole messages. Such a file then reads on behind its own offsets.
#[derive(Default)]
pub struct Resume {
    offset: u64,
    position: u64,
}

impl Resume {
    fn read(&mut self, source: &Source, offset: u64, size: usize) -> Result<Vec<u8>> {
        let continues = offset == self.offset;
        let (position, bytes) = source.with(|channel, _| {
            let wanted = if continues { self.position } else { offset };
            let position = if continues || offset == 0 { wanted.max(channel.span().0) } else { wanted };
            Ok((position, channel.read_at(position, size)?))
        })?;
        let len = bytes.len() as u64;
        *self = Resume { offset: offset + len, position: position + len };
        Ok(bytes)
    }
}

/// What a handle has written that is not yet a message, and the write(2) whose requests
/// are still arriving. A request continues that write(2) only if it comes from the same
/// writer at exactly the offset where the previous one ended, with no more bytes than are
/// missing, while that writer is still in the same system call (a short write(2), which
/// stopped after some of its requests, is not continued by the writer's next one); any
/// other request starts a new write(2). Each write(2) is admitted on its first request for
/// all its message will cost, so its later requests cannot fail.
pub struct Writing {
    /// `frame` of the group when the file was opened: a later change does not apply here.
    frame: Frame,
    state: Mutex<Assembly>,
}

#[derive(Default)]
struct Assembly {
    call: Option<Call>,
    /// The parts of the write(2) in progress or, under `frame close`, all that was written
    /// since the last close.
    data: Vec<u8>,
    /// Holds what `data` and the message it becomes may cost under the memory ceiling.
    reservation: Option<Reservation>,
    /// Under `frame close`: why the message was refused; nothing of it will be published.
    refused: Option<Errno>,
}

/// A write(2) larger than one request, until its last request arrives.
struct Call {
    writer: u64,
    /// The identity of the writer's system call, as `call_id` told it.
    id: u64,
    next_offset: u64,
    missing: u64,
}

/// What a write(2) is admitted by, on its first request.
pub struct Admission<'m, W, C> {
    /// Asked for a message of several requests: whether it must be refused EAGAIN (its
    /// non-blocking writer would have to wait for a reader).
    pub would_wait: W,
    /// The most a message of so many bytes can cost once published (`stream::most_cost`
    /// for it and each of its copies), which a message of several requests reserves.
    pub cost: C,
    pub max_message: u64,
    pub memory: &'m Arc<Memory>,
}

/// What a request completed.
pub enum Step<'a> {
    /// Nothing to publish yet.
    More,
    /// A whole message (the request's bytes, or a write(2)'s assembled from several), with
    /// the reservation that admitted it if it took several requests.
    Message(Message<'a>, Option<Reservation>),
}

impl Writing {
    pub fn new(frame: Frame) -> Self {
        Writing { frame, state: Mutex::default() }
    }

    /// Takes one WRITE request. `size_of_call` tells, for a request that starts a write(2),
    /// how many bytes that write(2) has (None: its caller is dying, so nothing of it may be
    /// published). `call_id(writer)`, asked for a write(2) of several requests on its first
    /// request and on each that would continue it: an identity of the system call `writer`
    /// is in now (None: it cannot be told, so the request does not continue a write(2)).
    /// `admission` admits the write(2) on its first request.
    pub fn take<'a>(
        &self,
        request: &WriteRequest<'a>,
        size_of_call: impl FnOnce() -> Option<u64>,
        call_id: impl Fn(u64) -> Option<u64>,
        admission: Admission<impl FnOnce() -> bool, impl Fn(usize) -> u64>,
    ) -> Result<Step<'a>> {
        let mut assembly = self.state.lock();
        let len = request.data.len() as u64;
        let continues = assembly.call.as_ref().is_some_and(|call| {
            call.writer == request.writer
                && call.next_offset == request.offset
                && len <= call.missing
                && call_id(call.writer) == Some(call.id)
        });
        if !continues {
            self.end_call(&mut assembly);
            let total = size_of_call().ok_or(Errno::EINTR)?.max(len);
            let id = if total > len { Some(call_id(request.writer).ok_or(Errno::EINTR)?) } else { None };
            let step = self.begin(&mut assembly, request, total, admission)?;
            if let (Step::More, Some(id)) = (&step, id) {
                let next_offset = request.offset + len;
                assembly.call = Some(Call { writer: request.writer, id, next_offset, missing: total - len });
            }
            return Ok(step);
        }
        let call = assembly.call.as_mut().expect("a write(2) continues");
        call.next_offset += len;
        call.missing -= len;
        let done = call.missing == 0;
        assembly.data.extend_from_slice(request.data);
        if !done {
            return Ok(Step::More);
        }
        assembly.call = None;
        Ok(match self.frame {
            Frame::Close => Step::More,
            Frame::Write => {
                Step::Message(Message::Owned(std::mem::take(&mut assembly.data)), assembly.reservation.take())
            }
        })
    }

    /// Ends the write(2) in progress, if any, before all its parts arrived: its writer was
    /// killed, or the kernel could not copy the rest (a short write). Under `frame write` it
    /// is unpublished, its reservation released; under `frame close` what arrived stays
    /// written, as in a regular file after a short write.
    fn end_call(&self, assembly: &mut Assembly) {
        if assembly.call.take().is_some() {
            log::warn!(
                "a write(2) ended before all its parts arrived: what arrived was {}",
                match self.frame {
                    Frame::Write => "dropped",
                    Frame::Close => "kept in the whole-file message",
                }
            );
            if self.frame == Frame::Write {
                *assembly = Assembly::default();
            }
        }
    }

    /// The first request of a write(2) of `total` bytes; `take` then waits for the others.
    fn begin<'a>(
        &self,
        assembly: &mut Assembly,
        request: &WriteRequest<'a>,
        total: u64,
        admission: Admission<impl FnOnce() -> bool, impl Fn(usize) -> u64>,
    ) -> Result<Step<'a>> {
        let Admission { would_wait, cost, max_message, memory } = admission;
        let len = request.data.len() as u64;
        match self.frame {
            Frame::Write => {
                if total > max_message {
                    return Err(Errno::EFBIG);
                }
                if total == len {
                    // Admitted when it is published, in the same request.
                    return Ok(Step::Message(Message::Borrowed(request.data), None));
                }
                if would_wait() {
                    return Err(Errno::EAGAIN);
                }
                let reservation = memory.reserve(cost(total as usize)).ok_or(Errno::ENOSPC)?;
                let mut data = Vec::with_capacity(total as usize);
                data.extend_from_slice(request.data);
                *assembly = Assembly { data, reservation: Some(reservation), ..Assembly::default() };
            }
            Frame::Close => {
                if let Some(errno) = assembly.refused {
                    return Err(errno);
                }
                let whole = assembly.data.len() as u64 + total;
                if whole > max_message {
                    return Err(self.refuse(assembly, Errno::EFBIG));
                }
                if !Self::make_room(assembly, whole as usize, memory, cost) {
                    return Err(self.refuse(assembly, Errno::ENOSPC));
                }
                assembly.data.extend_from_slice(request.data);
            }
        }
        Ok(Step::More)
    }

    /// Under `frame close`: makes the buffer hold `whole` bytes, doubling it where the
    /// ceiling allows, and reserves what it holds and the message will cost.
    fn make_room(
        assembly: &mut Assembly,
        whole: usize,
        memory: &Arc<Memory>,
        cost: impl Fn(usize) -> u64,
    ) -> bool {
        // Invariant: the reservation covers the buffer's capacity and the cost of any
        // message that fits in it.
        let capacity = assembly.data.capacity();
        if whole <= capacity && assembly.reservation.is_some() {
            return true;
        }
        if assembly.reservation.is_none() {
            assembly.reservation = memory.reserve(0);
        }
        let Some(reservation) = assembly.reservation.as_mut() else { return false };
        let doubled = whole.max(capacity * 2);
        let room = [doubled, whole]
            .into_iter()
            .find(|&room| reservation.grow_to(cost(whole) + (room - whole) as u64));
        let Some(room) = room else { return false };
        assembly.data.reserve_exact(room - assembly.data.len());
        true
    }

    /// Under `frame close`, refuses the message being written: `errno` now and for every
    /// later write until the close, which publishes nothing. A hole in a whole-file message
    /// would be worse than no message.
    fn refuse(&self, assembly: &mut Assembly, errno: Errno) -> Errno {
        *assembly = Assembly { refused: Some(errno), ..Assembly::default() };
        errno
    }

    /// At a close by thread `closer`: the `frame close` message to publish, with its
    /// reservation, if any. The next write through the same file starts a new message.
    /// While a write(2) through the file (by another process sharing it) is still arriving,
    /// the message is left for a later close. A write(2) whose writer left it (a short
    /// write, or a writer killed between requests: its close, or the death of its thread)
    /// is ended first, as by its writer's next write(2) (`end_call`).
    fn at_close(
        &self,
        closer: u64,
        call_id: impl Fn(u64) -> Option<u64>,
    ) -> Option<(Vec<u8>, Option<Reservation>)> {
        let mut state = self.state.lock();
        if let Some(call) = &state.call {
            if call.writer != closer && call_id(call.writer) == Some(call.id) {
                return None;
            }
            self.end_call(&mut state);
        }
        if self.frame != Frame::Close {
            return None;
        }
        let assembly = std::mem::take(&mut *state);
        if assembly.refused.is_some() || assembly.data.is_empty() {
            return None;
        }
        Some((assembly.data, assembly.reservation))
    }
}
