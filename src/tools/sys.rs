//! Thin wrappers over the system calls `mq-cat` and `mq-pin` use: reads and writes that retry
//! on `EINTR`, `poll`, error texts without Rust's "(os error N)" suffix.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The error's text as a Unix tool prints it: "No such file or directory".
pub fn strerror(e: &io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

/// An `io::Error` from an errno value.
pub fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// Whether `e` is the errno `code`.
pub fn is(e: &io::Error, code: i32) -> bool {
    e.raw_os_error() == Some(code)
}

/// One `read(2)`, retried on `EINTR`.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: buf is valid for writes of buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if !is(&e, libc::EINTR) {
            return Err(e);
        }
    }
}

/// One `write(2)`, retried on `EINTR`: on a stream, one message.
pub fn write(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    loop {
        // SAFETY: data is valid for reads of data.len() bytes.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if !is(&e, libc::EINTR) {
            return Err(e);
        }
    }
}

/// Writes all of `data`, in as many `write(2)`s as it takes (for terminals and pipes; a
/// stream takes any message whole in one write).
pub fn write_all(fd: RawFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = write(fd, data)?;
        if n == 0 {
            return Err(errno(libc::EIO));
        }
        data = &data[n..];
    }
    Ok(())
}

/// Writes `data` to a stream as one message.
pub fn write_message(file: &File, data: &[u8]) -> io::Result<()> {
    let n = write(file.as_raw_fd(), data)?;
    if n != data.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short write to a stream"));
    }
    Ok(())
}

/// `poll(2)` on `fds`, retried on `EINTR` (with the full timeout again; callers use it for
/// "forever" or short waits). Returns how many descriptors have events.
pub fn poll(fds: &mut [libc::pollfd], timeout_ms: i32) -> io::Result<usize> {
    loop {
        // SAFETY: fds is a valid array of fds.len() pollfd structures.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if !is(&e, libc::EINTR) {
            return Err(e);
        }
    }
}

/// A `pollfd` asking for `events` on `fd`.
pub fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}

/// Opens a stream for reading, non-blocking: reads fail `EAGAIN` instead of waiting.
pub fn open_reader(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)
}

/// Opens a stream for appending messages, creating it if needed.
pub fn open_writer(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

/// Whether `fd` is a terminal.
pub fn isatty(fd: RawFd) -> bool {
    // SAFETY: isatty has no memory-safety preconditions.
    unsafe { libc::isatty(fd) == 1 }
}

/// Restores the default action of `SIGPIPE` (Rust ignores it), so that a tool writing into a
/// closed pipe ends quietly as `cat` does.
pub fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL has no memory-safety preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Whether process `pid` exists (a zombie counts as gone).
pub fn process_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .iter()
                .rposition(|&b| b == b')')
                .and_then(|close| stat[close + 1..].iter().find(|b| !b.is_ascii_whitespace()));
            !matches!(state, None | Some(b'Z' | b'X'))
        }
        Err(_) => false,
    }
}

/// The command name of process `pid` (`/proc/PID/comm`), if it exists.
pub fn process_comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|s| s.trim_end().to_string())
}

/// Sends `sig` to process group `pgid`; errors (no such group) are ignored.
pub fn killpg(pgid: i32, sig: i32) {
    if pgid > 1 {
        // SAFETY: killpg has no memory-safety preconditions.
        unsafe {
            libc::killpg(pgid, sig);
        }
    }
}

/// Sends `sig` to process `pid`; errors are ignored.
pub fn kill(pid: i32, sig: i32) {
    if pid > 1 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Unmounts the file system mounted on `dir` (`umount2` without flags: fails `EBUSY` while it
/// is in use).
pub fn unmount(dir: &Path) -> io::Result<()> {
    let path = CString::new(dir.as_os_str().as_bytes()).map_err(|_| errno(libc::EINVAL))?;
    // SAFETY: `path` is a valid NUL-terminated string for the duration of the call.
    if unsafe { libc::umount2(path.as_ptr(), 0) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}
