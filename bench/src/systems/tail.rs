//! The inotify tail (what `tail -F` does): writers append to one file on tmpfs, each reader
//! reads to the end, then sleeps on its own inotify instance until the file is modified.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::endpoint::Source;

/// One inotify instance.
pub struct Inotify(OwnedFd);

impl Inotify {
    pub fn watch(path: &Path, mask: u32) -> io::Result<Inotify> {
        // SAFETY: inotify_init1 returns a new descriptor or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that we now own.
        let inotify = Inotify(unsafe { OwnedFd::from_raw_fd(fd) });
        let c_path = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: a valid descriptor and a NUL-terminated path.
        if unsafe { libc::inotify_add_watch(fd, c_path.as_ptr(), mask) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(inotify)
    }

    /// Blocks until at least one event is queued, and discards what is queued.
    pub fn wait(&self) -> io::Result<()> {
        let mut events = [0u8; 4096];
        loop {
            // SAFETY: reading into a buffer we own, of the size we pass.
            let n = unsafe { libc::read(self.0.as_raw_fd(), events.as_mut_ptr().cast(), events.len()) };
            if n >= 0 {
                return Ok(());
            }
            let error = io::Error::last_os_error();
            if error.kind() != io::ErrorKind::Interrupted {
                return Err(error);
            }
        }
    }
}

pub struct TailSource {
    file: File,
    inotify: Inotify,
}

impl TailSource {
    pub fn open(path: &Path) -> io::Result<TailSource> {
        // Watch first: an append between the open and the watch would otherwise be missed.
        let inotify = Inotify::watch(path, libc::IN_MODIFY)?;
        Ok(TailSource { file: File::open(path)?, inotify })
    }
}

impl Source for TailSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.file.read(buf) {
                Ok(0) => self.inotify.wait()?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return result,
            }
        }
    }
}
