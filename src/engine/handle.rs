//! Open files: what each open file description holds (a reader's cursor, a write being
//! assembled, a ctl snapshot) and how its reads and writes reach channels.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use parking_lot::Mutex;

use super::WriteShape;
use super::channel::{PollCallback, ReadCallback, ReadMode, ReaderId, Ticket};
use super::errno::{Errno, Result};
use super::memory::Memory;
use super::stream::{Group, Stream};
use super::tree::{Attr, Ino, Kind};

pub enum Handle {
    Stream {
        stream: Arc<Stream>,
        /// The cursor of a handle opened for reading.
        reader: Option<ReaderId>,
        /// A write(2) larger than one request, until its last part arrives.
        pending: Mutex<Option<Pending>>,
    },
    Order {
        group: Arc<Group>,
        reader: ReaderId,
    },
    Ctl {
        group: Ino,
        /// What reading returns: the configuration and status when the file was opened.
        text: Vec<u8>,
    },
}

impl Handle {
    pub fn open_stream(stream: &Arc<Stream>, read: bool) -> Handle {
        let reader = read.then(|| {
            let mut state = stream.state.lock();
            let replay = state.config.replay;
            state.channel.open_reader(replay)
        });
        Handle::Stream { stream: stream.clone(), reader, pending: Mutex::new(None) }
    }

    pub fn open_order(group: &Arc<Group>) -> Handle {
        let mut state = group.state.lock();
        let replay = state.config.replay;
        let reader = state.order.open_reader(replay);
        Handle::Order { group: group.clone(), reader }
    }

    /// Gives up the handle's cursor; an unfinished multi-request write is dropped unpublished.
    pub fn close(&self) {
        let wakeups = match self {
            Handle::Stream { stream, reader: Some(reader), .. } => {
                let mut state = stream.state.lock();
                let config = state.config;
                state.channel.close_reader(*reader, &config)
            }
            Handle::Order { group, reader } => {
                let mut state = group.state.lock();
                let config = state.config;
                state.order.close_reader(*reader, &config)
            }
            Handle::Stream { reader: None, .. } | Handle::Ctl { .. } => return,
        };
        drop(wakeups);
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
            Handle::Stream { stream, reader: Some(reader), .. } => {
                let mut state = stream.state.lock();
                let config = state.config;
                state.channel.read(*reader, size, mode, ticket, callback, &config)
            }
            Handle::Order { group, reader } => {
                let mut state = group.state.lock();
                let config = state.config;
                state.order.read(*reader, size, mode, ticket, callback, &config)
            }
            Handle::Ctl { text, .. } => {
                let start = (offset as usize).min(text.len());
                let end = start.saturating_add(size).min(text.len());
                callback(Ok(text[start..end].to_vec()));
                return None;
            }
            Handle::Stream { reader: None, .. } => {
                callback(Err(Errno::EBADF));
                return None;
            }
        };
        drop(wakeups);
        parked
    }

    pub fn cancel(&self, ticket: Ticket, error: Errno) -> bool {
        let (cancelled, wakeups) = match self {
            Handle::Stream { stream, reader: Some(reader), .. } => {
                stream.state.lock().channel.cancel(*reader, ticket, error)
            }
            Handle::Order { group, reader } => group.state.lock().order.cancel(*reader, ticket, error),
            Handle::Stream { reader: None, .. } | Handle::Ctl { .. } => return false,
        };
        drop(wakeups);
        cancelled
    }

    pub fn poll(&self, poller: PollCallback) -> bool {
        match self {
            Handle::Stream { stream, reader: Some(reader), .. } => {
                stream.state.lock().channel.poll(*reader, poller)
            }
            Handle::Order { group, reader } => group.state.lock().order.poll(*reader, poller),
            Handle::Stream { reader: None, .. } | Handle::Ctl { .. } => true,
        }
    }

    /// Attributes of a stream that was removed while this handle kept it open.
    pub fn orphan_attr(&self, ino: Ino) -> Result<Attr> {
        let Handle::Stream { stream, .. } = self else { return Err(Errno::ENOENT) };
        let state = stream.state.lock();
        let modified = state.channel.modified();
        Ok(Attr {
            ino,
            kind: Kind::File,
            size: state.channel.bytes(),
            perm: 0,
            nlink: 0,
            uid: 0,
            gid: 0,
            atime: modified,
            mtime: modified,
            ctime: SystemTime::now(),
        })
    }
}

/// A message arriving in several WRITE requests.
pub struct Pending {
    data: Vec<u8>,
    total: u64,
}

impl Pending {
    /// Adds one request's bytes to the message being written through a handle. Returns the
    /// message once it is whole; None while parts are still to come.
    pub fn assemble<'a>(
        slot: &Mutex<Option<Pending>>,
        data: &'a [u8],
        shape: WriteShape,
        max_message: u64,
        memory: &Memory,
    ) -> Result<Option<Cow<'a, [u8]>>> {
        let mut slot = slot.lock();
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
                Ok(Some(Cow::Borrowed(data)))
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
}
