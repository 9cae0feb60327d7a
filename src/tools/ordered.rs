//! Reading several streams of a group in the order they were written, as `mq-cat` does and
//! `mq-pin` viewers do.
//!
//! Every message carries its group number, the place of its write among all writes to the
//! group, which a reader gets with the `MQ_IOC_STAMP` ioctl after reading it
//! (`crate::ioctl`); `order` holds one line per write, stamped with the same number. The
//! reader merges the streams by that number: of the messages read ahead (at most one per
//! stream), it gives the one with the lowest. So what `depth` dropped of a stream or of
//! `order` leaves the rest exact.
//!
//! A message may be given only once every message with a lower number has been read, and
//! `order` tells how far that holds: a write appends to its stream and to `order` under the
//! group's lock, so once `order`'s line numbered N is read, every message numbered up to N
//! can be read from its stream. The reader reads `order` to its end, takes the number of its
//! newest line as the bound, reads each stream until its next message is past the bound or
//! it has nothing more, and gives the messages up to the bound in their order.
//!
//! `order` is opened before the streams, all non-blocking, so that every message a stream's
//! reader gets has its line in what `order`'s reader gets. Without following, the bound is
//! taken once, at the start: the reader ends where `order` ended then. When following, the
//! reader waits in `poll(2)` on `order` and on every wanted stream it has read to the end
//! (one that is removed reports end-of-file), and moves the bound on as `order` grows.
//! Following ends once every wanted stream has been removed and read to its end, or when the
//! group itself is gone (`order` at end-of-file: what its streams still hold is given, then
//! the end).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::poll::{PollFd, PollFlags};

use super::sys;
use crate::ioctl::MqStamp;

/// The largest message read in one piece: the default `max_message` (64 MiB) plus one byte,
/// so that a read filling the buffer means the message is longer. The buffer is allocated
/// once, and only the pages messages actually fill are touched.
pub const MESSAGE_BUFFER: usize = 64 * 1024 * 1024 + 1;

/// A stream the reader follows.
struct Input {
    name: OsString,
    file: File,
    /// Its next message, read ahead, and the message's group number.
    next: Option<(Vec<u8>, u64)>,
    /// Read to the end for the current bound: it had nothing more.
    drained: bool,
    /// The stream was removed and its reader reached end-of-file.
    ended: bool,
}

/// What [`Ordered::next_item`] returns.
pub enum Item<'a> {
    /// The next message, of the stream with this index (in the order the names were given).
    Message(usize, &'a [u8]),
    /// Messages were dropped before this reader got them (`ENOBUFS`, see mqfs(5)): of the
    /// stream with this index. Reading goes on.
    Lost(usize),
}

/// Why [`Ordered::open`] failed: which path, and the error.
#[derive(Debug)]
pub struct OpenError {
    pub path: PathBuf,
    pub error: io::Error,
}

/// What one message read found.
pub(super) enum Got {
    /// A whole message in `buf[..n]`.
    InBuffer(usize),
    /// A whole message, larger than the buffer, in `current`.
    InCurrent,
    /// Nothing to read now (`EAGAIN`).
    Nothing,
    /// End-of-file: the stream was removed.
    End,
}

/// Reads the messages of some streams of a group in the order they were written.
pub struct Ordered {
    order: File,
    inputs: Vec<Input>,
    follow: bool,
    buf: Vec<u8>,
    current: Vec<u8>,
    /// The group number up to which every message can be read: `order`'s newest line's
    /// (None before any; every number once the group is gone).
    bound: Option<u64>,
    /// `order` was read to its end once (without following, the bound is final).
    started: bool,
    /// `order` reached end-of-file: the group was removed.
    order_ended: bool,
}

impl Ordered {
    /// Opens the `order` of `group`, then its streams `names` (names, not paths; repeated
    /// names count once). With `follow`, [`Ordered::next_item`] waits for new messages until the streams
    /// are removed; without, it ends where `order` ends now.
    ///
    /// The group must be in `data message` mode (the default): other modes do not keep
    /// message boundaries, so messages cannot be told apart.
    pub fn open(group: &Path, names: &[OsString], follow: bool) -> Result<Ordered, OpenError> {
        let fail = |path: &Path, error: io::Error| OpenError { path: path.to_path_buf(), error };
        let meta = std::fs::metadata(group).map_err(|e| fail(group, e))?;
        if !meta.is_dir() {
            return Err(fail(group, sys::errno(libc::ENOTDIR)));
        }
        let ctl = group.join("ctl");
        if let Ok(text) = std::fs::read(&ctl) {
            let text = String::from_utf8_lossy(&text);
            if let Some(mode) = text.lines().find(|l| l.starts_with("data ") && *l != "data message") {
                let why = format!("{mode}: reading in write order needs `data message`");
                return Err(fail(group, io::Error::new(io::ErrorKind::InvalidInput, why)));
            }
        }
        // `order` first: whatever a stream's reader gets then has its line in `order`.
        let order_path = group.join("order");
        let order = sys::open_reader(&order_path).map_err(|e| fail(&order_path, e))?;
        let mut inputs: Vec<Input> = Vec::new();
        for name in names {
            if inputs.iter().any(|s| &s.name == name) {
                continue;
            }
            let path = group.join(name);
            let meta = std::fs::metadata(&path).map_err(|e| fail(&path, e))?;
            if meta.is_dir() {
                return Err(fail(&path, sys::errno(libc::EISDIR)));
            }
            if name == "ctl" || name == "order" {
                let e = io::Error::new(io::ErrorKind::InvalidInput, "not a stream");
                return Err(fail(&path, e));
            }
            let file = sys::open_reader(&path).map_err(|e| fail(&path, e))?;
            inputs.push(Input { name: name.clone(), file, next: None, drained: false, ended: false });
        }
        Ok(Ordered {
            order,
            inputs,
            follow,
            buf: vec![0; MESSAGE_BUFFER],
            current: Vec::new(),
            bound: None,
            started: false,
            order_ended: false,
        })
    }

    /// The name of stream `index`.
    pub fn name(&self, index: usize) -> &OsStr {
        &self.inputs[index].name
    }

    /// The next message in write order, or None at the end (see [`Ordered::open`]).
    pub fn next_item(&mut self) -> io::Result<Option<Item<'_>>> {
        loop {
            // Read ahead every stream that may still hold a message within the bound.
            for i in 0..self.inputs.len() {
                let input = &self.inputs[i];
                if input.next.is_some() || input.drained || input.ended {
                    continue;
                }
                match self.read_next(i) {
                    Ok(()) => {}
                    Err(e) if sys::is(&e, libc::ENOBUFS) => return Ok(Some(Item::Lost(i))),
                    Err(e) => return Err(e),
                }
            }
            // The lowest-numbered message within the bound goes first.
            let bound = if self.inputs.iter().all(|s| s.ended) { Some(u64::MAX) } else { self.bound };
            let lowest = (self.inputs.iter().enumerate())
                .filter_map(|(i, s)| s.next.as_ref().map(|(_, seq)| (*seq, i)))
                .filter(|&(seq, _)| bound.is_some_and(|bound| seq <= bound))
                .min();
            if let Some((_, i)) = lowest {
                let (message, _) = self.inputs[i].next.take().expect("it was the lowest");
                self.current = message;
                return Ok(Some(Item::Message(i, &self.current)));
            }
            // Nothing more within the bound.
            let ended = self.order_ended || self.inputs.iter().all(|s| s.ended);
            if ended || (self.started && !self.follow) {
                return Ok(None);
            }
            if !self.read_order()? && self.follow {
                self.wait()?;
            }
        }
    }

    /// Reads `order` to its end and moves the bound to its newest line's number; false if
    /// it had nothing new.
    fn read_order(&mut self) -> io::Result<bool> {
        let mut line = [0u8; 4096];
        let mut read = false;
        loop {
            match sys::read(&self.order, &mut line) {
                Ok(0) => {
                    self.order_ended = true;
                    self.bound = Some(u64::MAX);
                    read = true;
                    break;
                }
                Ok(_) => read = true,
                Err(e) if sys::is(&e, libc::EAGAIN) => break,
                // Lines dropped before they were read: the newest line still bounds.
                Err(e) if sys::is(&e, libc::ENOBUFS) => {}
                Err(e) => return Err(e),
            }
        }
        self.started = true;
        if read && !self.order_ended {
            self.bound = Some(MqStamp::of(self.order.as_fd())?.group_seq);
        }
        if read || self.order_ended {
            for input in &mut self.inputs {
                input.drained = false;
            }
        }
        Ok(read)
    }

    /// Waits until `order` or a stream read to its end can be read.
    fn wait(&mut self) -> io::Result<()> {
        let waiting: Vec<usize> = (0..self.inputs.len()).filter(|&i| self.inputs[i].drained).collect();
        let ready: Vec<bool> = {
            let files = std::iter::once(&self.order).chain(waiting.iter().map(|&i| &self.inputs[i].file));
            let mut fds: Vec<PollFd<'_>> = files.map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN)).collect();
            sys::poll(&mut fds, None)?;
            fds.iter().map(sys::ready).collect()
        };
        for (k, &i) in waiting.iter().enumerate() {
            if ready[k + 1] {
                self.inputs[i].drained = false;
            }
        }
        Ok(())
    }

    /// Reads stream `i`'s next message and its group number, if it has one now.
    fn read_next(&mut self, i: usize) -> io::Result<()> {
        let input = &self.inputs[i];
        let message = match read_one(&input.file, &mut self.buf, &mut self.current)? {
            Got::InBuffer(n) => self.buf[..n].to_vec(),
            Got::InCurrent => std::mem::take(&mut self.current),
            Got::Nothing => {
                self.inputs[i].drained = true;
                return Ok(());
            }
            Got::End => {
                self.inputs[i].ended = true;
                return Ok(());
            }
        };
        let seq = MqStamp::of(input.file.as_fd())?.group_seq;
        self.inputs[i].next = Some((message, seq));
        Ok(())
    }
}

/// Reads one message from a non-blocking stream. A read returns at most one message; one that
/// fills the whole buffer may continue, so the following reads are added until one is short
/// or finds nothing.
pub(super) fn read_one(file: &File, buf: &mut [u8], current: &mut Vec<u8>) -> io::Result<Got> {
    let n = match sys::read(file, buf) {
        Ok(0) => return Ok(Got::End),
        Ok(n) => n,
        Err(e) if sys::is(&e, libc::EAGAIN) => return Ok(Got::Nothing),
        Err(e) => return Err(e),
    };
    if n < buf.len() {
        return Ok(Got::InBuffer(n));
    }
    current.clear();
    current.extend_from_slice(&buf[..n]);
    loop {
        match sys::read(file, buf) {
            Ok(0) => return Ok(Got::InCurrent),
            Ok(n) => {
                current.extend_from_slice(&buf[..n]);
                if n < buf.len() {
                    return Ok(Got::InCurrent);
                }
            }
            Err(e) if sys::is(&e, libc::EAGAIN) => return Ok(Got::InCurrent),
            Err(e) => return Err(e),
        }
    }
}
