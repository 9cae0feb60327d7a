//! Request/reply through a stream of a `deliver one` group, as `mq-call` and `mq-serve` do
//! it: a client writes a request on a read-write descriptor and reads its reply from the same
//! descriptor; a server reads a request and writes the reply on the descriptor it read it
//! from. `Endpoint` is such a descriptor; `call` is the client, `serve` the server.
//!
//! Each message is one write(2) out and read whole in (`ordered::read_one`). Writes block as
//! the group's `write` setting says; reads wait in `poll(2)`, with a second descriptor whose
//! readability means "stop waiting" (a server told to stop).

pub mod call;
pub mod serve;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags};

use super::ordered::{Got, MESSAGE_BUFFER, read_one};
use super::sys;

/// What waiting for a message ended with.
pub enum Received<'a> {
    Message(&'a [u8]),
    /// The stop descriptor became readable first.
    Stopped,
    /// End-of-file: the stream was removed.
    Removed,
}

/// A read-write descriptor of a stream, for requests and replies.
pub struct Endpoint {
    file: File,
    path: PathBuf,
    /// Whether `file` is in non-blocking mode now (for reads) or not (for writes).
    nonblock: bool,
    buf: Vec<u8>,
    current: Vec<u8>,
}

impl Endpoint {
    /// Opens the stream at `path` for reading and writing, creating it (mode 0666 less the
    /// umask) if its group has no such stream yet: a request waits there for a server.
    pub fn open(path: &Path) -> io::Result<Endpoint> {
        let file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o666).open(path)?;
        Ok(Endpoint {
            file,
            path: path.to_path_buf(),
            nonblock: false,
            buf: vec![0; MESSAGE_BUFFER],
            current: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `data` as one message, blocking as the group's `write` setting says.
    pub fn send(&mut self, data: &[u8]) -> io::Result<()> {
        self.set_nonblock(false)?;
        sys::write_message(&self.file, data)
    }

    /// Waits for the next message, or until `stop` (if given) is readable.
    pub fn receive(&mut self, stop: Option<BorrowedFd<'_>>) -> io::Result<Received<'_>> {
        self.set_nonblock(true)?;
        loop {
            let mut fds = vec![PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
            fds.extend(stop.map(|stop| PollFd::new(stop, PollFlags::POLLIN)));
            sys::poll(&mut fds, None)?;
            if fds.get(1).is_some_and(sys::ready) {
                return Ok(Received::Stopped);
            }
            if !sys::ready(&fds[0]) {
                continue;
            }
            // Another reader may have taken the message poll saw: then wait again.
            match read_one(&self.file, &mut self.buf, &mut self.current)? {
                Got::Nothing => {}
                Got::End => return Ok(Received::Removed),
                Got::InBuffer(n) => return Ok(Received::Message(&self.buf[..n])),
                Got::InCurrent => return Ok(Received::Message(&self.current)),
            }
        }
    }

    fn set_nonblock(&mut self, nonblock: bool) -> io::Result<()> {
        if self.nonblock != nonblock {
            // The descriptor has no other status flag (not O_APPEND: it was not opened so).
            let flags = if nonblock { OFlag::O_NONBLOCK } else { OFlag::empty() };
            fcntl(&self.file, FcntlArg::F_SETFL(flags))?;
            self.nonblock = nonblock;
        }
        Ok(())
    }
}
