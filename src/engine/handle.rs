//! Open files: what each open file description holds (a reader's cursor, a message being
//! assembled, a ctl snapshot) and how its reads and writes reach channels.

use std::borrow::Cow;
use std::sync::Arc;

use parking_lot::Mutex;

use super::WriteShape;
use super::channel::{Channel, PollCallback, ReadCallback, ReadMode, ReaderId, Ticket, Wakeups};
use super::config::{Frame, GroupConfig};
use super::errno::{Errno, Result};
use super::memory::Memory;
use super::stream::{Group, Stream, WriteWaiter};
use super::tree::Ino;

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
        source: Source,
        /// The cursor of a handle opened for reading.
        reader: Option<ReaderId>,
        writing: Writing,
    },
    /// A stream or `order` in `data static` mode, read by offset like a regular file.
    Static { source: Source, writing: Writing },
    Ctl {
        group: Ino,
        /// What reading returns: the configuration and status when the file was opened.
        text: Vec<u8>,
    },
}

impl Handle {
    pub fn open(source: Source, read: bool, static_data: bool) -> Handle {
        if static_data {
            return Handle::Static { source, writing: Writing::default() };
        }
        let reader = read.then(|| source.with(|channel, config| channel.open_reader(config.replay)));
        Handle::Channel { source, reader, writing: Writing::default() }
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
            Handle::Static { .. } | Handle::Ctl { .. } => {
                callback(self.read_at(offset, size));
                return None;
            }
            Handle::Channel { reader: None, .. } => {
                callback(Err(Errno::EBADF));
                return None;
            }
        };
        drop(wakeups);
        parked
    }

    /// Reads `size` bytes at `offset` of a file read by offset (a static stream or `order`,
    /// ctl). A stream read as a stream has no offsets, and its bytes are read by moving a
    /// cursor: such a read (a memory mapping's page-in, sendfile) fails with ENODEV, as mmap(2)
    /// fails on files that cannot be mapped, and the cursor stays where it is.
    pub fn read_at(&self, offset: u64, size: usize) -> Result<Vec<u8>> {
        match self {
            Handle::Static { source, .. } => Ok(source.with(|channel, _| channel.read_at(offset, size))),
            Handle::Ctl { text, .. } => {
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
        data: &[u8],
        shape: WriteShape,
        waiter: WriteWaiter,
        max_message: u64,
        memory: &Memory,
    ) -> Option<Ticket> {
        let (Handle::Channel { source: Source::Stream(stream), writing, .. }
        | Handle::Static { source: Source::Stream(stream), writing }) = self
        else {
            (waiter.callback)(Err(Errno::EBADF));
            return None;
        };
        if stream.state.lock().config.frame == Frame::Close {
            (waiter.callback)(writing.add_to_whole_file(data, max_message, memory));
            return None;
        }
        match writing.assemble(data, shape, max_message, memory) {
            Ok(Some(message)) => stream.publish(&message, Some(waiter)).unwrap_or(None),
            Ok(None) => {
                (waiter.callback)(Ok(()));
                None
            }
            Err(errno) => {
                (waiter.callback)(Err(errno));
                None
            }
        }
    }

    /// At a close: publishes what was written under `frame close` as one message, unless
    /// the writer is `dying` (asked only when there is something to publish).
    pub fn flush(&self, dying: impl FnOnce() -> bool) -> Result<()> {
        let (Handle::Channel { source: Source::Stream(stream), writing, .. }
        | Handle::Static { source: Source::Stream(stream), writing }) = self
        else {
            return Ok(());
        };
        let whole = std::mem::take(&mut *writing.whole.lock());
        match whole {
            WholeFile { refused: true, .. } => Ok(()),
            WholeFile { data, .. } if data.is_empty() => Ok(()),
            WholeFile { data, .. } if dying() => {
                log::info!("a writer died before closing: {} bytes not published", data.len());
                Ok(())
            }
            WholeFile { data, .. } => stream.publish(&data, None).map(|_| ()),
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
            Handle::Ctl { .. } => (false, Wakeups::default()),
        };
        drop(wakeups);
        cancelled
    }

    pub fn poll(&self, poller: Option<PollCallback>) -> bool {
        match self {
            Handle::Channel { source, reader: Some(reader), .. } => {
                source.with(|channel, _| channel.poll(*reader, poller))
            }
            _ => true,
        }
    }
}

/// What a handle has written that is not yet a message.
#[derive(Default)]
pub struct Writing {
    /// A write(2) larger than one request, until its last part arrives.
    pending: Mutex<Option<Pending>>,
    /// Under `frame close`, everything written since the last close.
    whole: Mutex<WholeFile>,
}

struct Pending {
    data: Vec<u8>,
    total: u64,
}

#[derive(Default)]
struct WholeFile {
    data: Vec<u8>,
    /// It grew past the largest message: nothing of it will be published.
    refused: bool,
}

impl Writing {
    /// Adds one request's bytes to the message being written. Returns the message once it
    /// is whole; None while parts are still to come.
    fn assemble<'a>(
        &self,
        data: &'a [u8],
        shape: WriteShape,
        max_message: u64,
        memory: &Memory,
    ) -> Result<Option<Cow<'a, [u8]>>> {
        let mut slot = self.pending.lock();
        let shape = match (shape, slot.is_some()) {
            // A continuation with nothing begun (its start was refused or could not be
            // recognised) is a message of its own.
            (WriteShape::Continues, false) => WriteShape::Whole,
            (WriteShape::Whole | WriteShape::Starts { .. }, true) => {
                log::warn!("a write(2) ended before all its parts arrived; dropping it");
                *slot = None;
                shape
            }
            _ => shape,
        };
        match shape {
            WriteShape::Whole => {
                if data.len() as u64 > max_message {
                    return Err(Errno::EFBIG);
                }
                Ok((!data.is_empty()).then_some(Cow::Borrowed(data)))
            }
            WriteShape::Starts { total } => {
                if total > max_message {
                    return Err(Errno::EFBIG);
                }
                if !memory.admits(total) {
                    return Err(Errno::ENOSPC);
                }
                let mut buffer = Vec::with_capacity(total as usize);
                buffer.extend_from_slice(data);
                *slot = Some(Pending { data: buffer, total });
                Ok(None)
            }
            WriteShape::Continues => {
                let pending = slot.as_mut().expect("shape says a write is pending");
                pending.data.extend_from_slice(data);
                if (pending.data.len() as u64) < pending.total {
                    return Ok(None);
                }
                Ok(slot.take().map(|pending| Cow::Owned(pending.data)))
            }
        }
    }

    /// Under `frame close`: keeps the bytes for the message published at close. Growing
    /// past the largest message fails with EFBIG and dooms the whole message.
    fn add_to_whole_file(&self, data: &[u8], max_message: u64, memory: &Memory) -> Result<()> {
        let mut whole = self.whole.lock();
        if whole.refused || (whole.data.len() + data.len()) as u64 > max_message {
            whole.refused = true;
            whole.data = Vec::new();
            return Err(Errno::EFBIG);
        }
        if !memory.admits((whole.data.len() + data.len()) as u64) {
            return Err(Errno::ENOSPC);
        }
        whole.data.extend_from_slice(data);
        Ok(())
    }
}
