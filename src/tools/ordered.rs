//! Reading several streams of a group in the order their messages were written, as `mq-cat`
//! does and `mq-pin` viewers do.
//!
//! A group's `order` stream holds one message, the stream's name and a newline, for every
//! message committed to one of its streams, in commit order (a write appends to its stream and
//! to `order` under the group's lock). So: read an entry of `order`; if it names one of the
//! wanted streams, read exactly one message from that stream; repeat.
//!
//! Every stream is opened before `order`, all non-blocking. Under `replay all` each of them
//! starts at its oldest retained message, so the streams and `order` agree from the start
//! (as long as `depth` has dropped nothing: it drops independently per stream and in `order`).
//! Under `replay off` a write racing the opens can be in a stream but not in `order`: that
//! stream's messages then come one entry late (and the last one when the stream is removed).
//!
//! When following, the reader waits in `poll(2)` on `order` and on every wanted stream. A
//! stream that becomes readable while `order` has nothing new is read ahead (its entry is
//! about to show, or it was removed and reports end-of-file); read-ahead messages are used
//! when their entries come. Following ends once every wanted stream has been removed (its
//! reader reached end-of-file), or when the group itself is gone (`order` at end-of-file).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::poll::{PollFd, PollFlags};

use super::sys;

/// The largest message read in one piece: the default `max_message` (64 MiB) plus one byte,
/// so that a read filling the buffer means the message is longer. The buffer is allocated
/// once, and only the pages messages actually fill are touched.
pub const MESSAGE_BUFFER: usize = 64 * 1024 * 1024 + 1;

/// A stream the reader follows.
struct Input {
    name: OsString,
    file: File,
    /// Messages read ahead of their `order` entries.
    pending: VecDeque<Vec<u8>>,
    /// The stream was removed and its reader reached end-of-file.
    ended: bool,
}

/// What [`Ordered::next_item`] returns.
pub enum Item<'a> {
    /// The next message, of the stream with this index (in the order the names were given).
    Message(usize, &'a [u8]),
    /// Messages were dropped before this reader got them (`ENOBUFS`, see mqfs(5)): of the
    /// stream with this index, or of `order` (None). Reading goes on.
    Lost(Option<usize>),
}

/// Why [`Ordered::open`] failed: which path, and the error.
#[derive(Debug)]
pub struct OpenError {
    pub path: PathBuf,
    pub error: io::Error,
}

/// What a step of [`Ordered::next_item`] found, before anything is borrowed for the caller.
enum Step {
    InBuffer(usize, usize),
    InCurrent(usize),
    Lost(Option<usize>),
    End,
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
    /// `order` reached end-of-file: the group was removed.
    order_ended: bool,
    /// Every input had ended, and `order` has been read once more since.
    drained: bool,
    /// The end was reached; what is left are read-ahead messages without entries.
    flushing: bool,
}

impl Ordered {
    /// Opens the streams `names` of `group` (names, not paths; repeated names count once), then
    /// its `order`. With `follow`, [`Ordered::next_item`] waits for new messages until the streams
    /// are removed; without, it ends where `order` ends now.
    ///
    /// The group must be in `data message` mode (the default): other modes do not keep
    /// message boundaries, so one message per `order` entry cannot be read.
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
            inputs.push(Input { name: name.clone(), file, pending: VecDeque::new(), ended: false });
        }
        let order_path = group.join("order");
        let order = sys::open_reader(&order_path).map_err(|e| fail(&order_path, e))?;
        Ok(Ordered {
            order,
            inputs,
            follow,
            buf: vec![0; MESSAGE_BUFFER],
            current: Vec::new(),
            order_ended: false,
            drained: false,
            flushing: false,
        })
    }

    /// The name of stream `index`.
    pub fn name(&self, index: usize) -> &OsStr {
        &self.inputs[index].name
    }

    /// The next message in write order, or None at the end (see [`Ordered::open`]).
    pub fn next_item(&mut self) -> io::Result<Option<Item<'_>>> {
        Ok(match self.step()? {
            Step::InBuffer(i, n) => Some(Item::Message(i, &self.buf[..n])),
            Step::InCurrent(i) => Some(Item::Message(i, &self.current)),
            Step::Lost(which) => Some(Item::Lost(which)),
            Step::End => None,
        })
    }

    fn step(&mut self) -> io::Result<Step> {
        let mut entry = [0u8; 4096];
        loop {
            if self.flushing {
                // Read-ahead messages that never got an entry (a replay mismatch): print them
                // rather than lose them.
                for (i, input) in self.inputs.iter_mut().enumerate() {
                    if let Some(message) = input.pending.pop_front() {
                        self.current = message;
                        return Ok(Step::InCurrent(i));
                    }
                }
                return Ok(Step::End);
            }
            if !self.order_ended {
                match sys::read(&self.order, &mut entry) {
                    Ok(0) => {
                        self.order_ended = true;
                        continue;
                    }
                    Ok(n) => {
                        let name = entry[..n].strip_suffix(b"\n").unwrap_or(&entry[..n]);
                        let Some(i) = self.inputs.iter().position(|s| s.name.as_bytes() == name) else {
                            continue;
                        };
                        if let Some(message) = self.inputs[i].pending.pop_front() {
                            self.current = message;
                            return Ok(Step::InCurrent(i));
                        }
                        if self.inputs[i].ended {
                            continue;
                        }
                        match self.read_for_entry(i) {
                            Ok(Got::InBuffer(n)) => return Ok(Step::InBuffer(i, n)),
                            Ok(Got::InCurrent) => return Ok(Step::InCurrent(i)),
                            Ok(Got::Nothing) => continue,
                            Ok(Got::End) => {
                                self.inputs[i].ended = true;
                                continue;
                            }
                            Err(e) if sys::is(&e, libc::ENOBUFS) => return Ok(Step::Lost(Some(i))),
                            Err(e) => return Err(e),
                        }
                    }
                    Err(e) if sys::is(&e, libc::EAGAIN) => {}
                    Err(e) if sys::is(&e, libc::ENOBUFS) => return Ok(Step::Lost(None)),
                    Err(e) => return Err(e),
                }
            }
            // `order` has nothing more for now.
            if self.order_ended {
                // The group is gone: take what its streams still hold, then end.
                for i in 0..self.inputs.len() {
                    while !self.inputs[i].ended {
                        match self.read_ahead(i) {
                            Ok(true) => {}
                            Ok(false) => break,
                            Err(e) if sys::is(&e, libc::ENOBUFS) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                self.flushing = true;
                continue;
            }
            if !self.follow {
                return Ok(Step::End);
            }
            if self.inputs.iter().all(|s| s.ended) {
                if self.drained {
                    self.flushing = true;
                } else {
                    // Entries of the last messages may have come after the last look.
                    self.drained = true;
                }
                continue;
            }
            let live: Vec<usize> = (0..self.inputs.len()).filter(|&i| !self.inputs[i].ended).collect();
            let ready: Vec<bool> = {
                let files = std::iter::once(&self.order).chain(live.iter().map(|&i| &self.inputs[i].file));
                let mut fds: Vec<PollFd<'_>> =
                    files.map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN)).collect();
                sys::poll(&mut fds, None)?;
                fds.iter().map(sys::ready).collect()
            };
            if ready[0] {
                continue;
            }
            for (k, &i) in live.iter().enumerate() {
                if ready[k + 1] {
                    match self.read_ahead(i) {
                        Ok(_) => {}
                        Err(e) if sys::is(&e, libc::ENOBUFS) => return Ok(Step::Lost(Some(i))),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// Reads the message an `order` entry named: it is there already (the entry was
    /// committed with it), unless the streams and `order` disagree; when following, wait.
    fn read_for_entry(&mut self, i: usize) -> io::Result<Got> {
        loop {
            let got = read_one(&self.inputs[i].file, &mut self.buf, &mut self.current)?;
            if !matches!(got, Got::Nothing) || !self.follow {
                return Ok(got);
            }
            sys::wait_readable(&self.inputs[i].file)?;
        }
    }

    /// Reads one message of stream `i` ahead of its entry, if there is one now. Returns
    /// whether it read one.
    fn read_ahead(&mut self, i: usize) -> io::Result<bool> {
        match read_one(&self.inputs[i].file, &mut self.buf, &mut self.current)? {
            Got::InBuffer(n) => self.inputs[i].pending.push_back(self.buf[..n].to_vec()),
            Got::InCurrent => {
                let message = std::mem::take(&mut self.current);
                self.inputs[i].pending.push_back(message);
            }
            Got::Nothing => return Ok(false),
            Got::End => {
                self.inputs[i].ended = true;
                return Ok(false);
            }
        }
        Ok(true)
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
