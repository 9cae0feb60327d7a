//! Thin wrappers over the system calls the tools use (through `nix`, or `libc` for getxattr): reads and
//! writes that retry on `EINTR`, `poll`, error texts without Rust's "(os error N)" suffix.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::MntFlags;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

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

/// Runs `call` until it does not fail `EINTR`.
fn retried<T>(mut call: impl FnMut() -> nix::Result<T>) -> io::Result<T> {
    loop {
        match call() {
            Err(Errno::EINTR) => {}
            result => return result.map_err(io::Error::from),
        }
    }
}

/// One `read(2)`, retried on `EINTR`.
pub fn read(fd: impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    retried(|| nix::unistd::read(&fd, buf))
}

/// One `write(2)`, retried on `EINTR`: on a stream, one message.
pub fn write(fd: impl AsFd, data: &[u8]) -> io::Result<usize> {
    retried(|| nix::unistd::write(&fd, data))
}

/// Writes all of `data`, in as many `write(2)`s as it takes (for terminals and pipes; a
/// stream takes any message whole in one write).
pub fn write_all(fd: impl AsFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        let n = write(&fd, data)?;
        if n == 0 {
            return Err(errno(libc::EIO));
        }
        data = &data[n..];
    }
    Ok(())
}

/// Writes `data` to a stream as one message.
pub fn write_message(file: &File, data: &[u8]) -> io::Result<()> {
    let n = write(file, data)?;
    if n != data.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short write to a stream"));
    }
    Ok(())
}

/// `poll(2)` on `fds`, retried on `EINTR` (with the full timeout again; callers use it for
/// "forever" or short waits). `timeout` None waits forever. Returns how many descriptors have
/// events.
pub fn poll(fds: &mut [PollFd<'_>], timeout: Option<std::time::Duration>) -> io::Result<usize> {
    let timeout = match timeout {
        None => PollTimeout::NONE,
        Some(wait) => PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX),
    };
    retried(|| nix::poll::poll(fds, timeout)).map(|n| n as usize)
}

/// Whether poll reported anything on `fd`: an event asked for, a hang-up, an error.
pub fn ready(fd: &PollFd<'_>) -> bool {
    fd.any() != Some(false)
}

/// Whether poll reported one of `events` on `fd`.
pub fn polled(fd: &PollFd<'_>, events: PollFlags) -> bool {
    fd.revents().is_some_and(|got| got.intersects(events))
}

/// Waits until `fd` is readable (or hung up).
pub fn wait_readable(fd: impl AsFd) -> io::Result<()> {
    poll(&mut [PollFd::new(fd.as_fd(), PollFlags::POLLIN)], None).map(drop)
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
pub fn isatty(fd: impl AsFd) -> bool {
    nix::unistd::isatty(fd).unwrap_or(false)
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
pub fn killpg(pgid: i32, sig: Signal) {
    if pgid > 1 {
        let _ = nix::sys::signal::killpg(Pid::from_raw(pgid), sig);
    }
}

/// Sends `sig` to process `pid`; errors are ignored.
pub fn kill(pid: i32, sig: Signal) {
    if pid > 1 {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
    }
}

/// Unmounts the file system mounted on `dir` (`umount2` without flags: fails `EBUSY` while it
/// is in use).
pub fn unmount(dir: &Path) -> io::Result<()> {
    Ok(nix::mount::umount2(dir, MntFlags::empty())?)
}

/// The value of extended attribute `name` of `path` (following symbolic links), at most 64
/// bytes: ERANGE if longer.
pub fn getxattr(path: &Path, name: &str) -> io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| errno(libc::EINVAL))?;
    let name = std::ffi::CString::new(name).map_err(|_| errno(libc::EINVAL))?;
    let mut value = [0u8; 64];
    // SAFETY: both strings are NUL-terminated and outlive the call; the value buffer is
    // writable for its whole length, which is what the call is given.
    let n = unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value[..n as usize].to_vec())
}
