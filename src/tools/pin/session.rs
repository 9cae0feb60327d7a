//! A session's group and what it says of itself: the streams it is made of, its name's rules,
//! and the `status` lines (`run SUPERVISOR PROGRAM MODE`, `exit STATUS`) that tell how it
//! stands ([`State`]); removing what is left of it.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags};

use super::{Failure, Result, at};
use crate::tools::sys;

/// The session's streams, created with it.
pub(super) const STREAMS: [&str; 5] = ["0", "1", "2", "note", "status"];

/// What a session's group is set to: messages, whole history, no bound, plain writes.
pub(super) const SESSION_CTL: &str = "data message\nreplay all\ndepth 0\nwrite nonblock\nframe write\n";

/// Checks a session name: one non-empty path component, not `ctl` or `order`.
pub fn check_name(name: &OsStr) -> Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b.contains(&b'/') || b.contains(&0) || name == "." || name == ".." {
        return Err(Failure {
            message: format!("{}: not a session name", name.to_string_lossy()),
            status: 2,
        });
    }
    if name == "ctl" || name == "order" {
        return Err(Failure { message: format!("{}: a reserved name", name.to_string_lossy()), status: 2 });
    }
    Ok(())
}

/// How a session stands, from its `status` stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Created, its program not started yet (or its start failed).
    Starting,
    /// The program runs under supervisor `supervisor` (pid), as process `program`.
    Running { supervisor: i32, program: i32, pty: bool },
    /// The program ended with this status (128 + N for signal N).
    Exited(i32),
    /// The supervisor is gone without reporting an end (killed, or the machine restarted).
    Lost { program: i32 },
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::Starting => write!(f, "starting"),
            State::Running { program, .. } => write!(f, "running {program}"),
            State::Exited(status) => write!(f, "exited {status}"),
            State::Lost { .. } => write!(f, "lost"),
        }
    }
}

/// Every message of a stream's retained history (the session is `replay all`).
fn history(path: &Path) -> io::Result<Vec<u8>> {
    let file = sys::open_reader(path)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match sys::read(&file, &mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if sys::is(&e, libc::EAGAIN) => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

/// The state `status` lines describe (the last one that means something wins).
pub(super) fn parse_status(text: &str) -> State {
    let mut state = State::Starting;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["run", sup, prog, mode] => {
                if let (Ok(supervisor), Ok(program)) = (sup.parse(), prog.parse()) {
                    state = State::Running { supervisor, program, pty: *mode == "pty" };
                }
            }
            ["exit", code] => {
                if let Ok(code) = code.parse() {
                    state = State::Exited(code);
                }
            }
            _ => {}
        }
    }
    state
}

/// Whether `pid` is a live mq-pin supervisor.
fn supervisor_alive(pid: i32) -> bool {
    sys::process_alive(pid) && sys::process_comm(pid).is_some_and(|c| c == "mq-pin")
}

/// The state of the session in `group`; an error if it is not a session.
pub fn state(group: &Path) -> io::Result<State> {
    let text = history(&group.join("status"))?;
    Ok(match parse_status(&String::from_utf8_lossy(&text)) {
        State::Running { supervisor, program, .. } if !supervisor_alive(supervisor) => {
            State::Lost { program }
        }
        state => state,
    })
}

/// The state of session `name`, or "no such session".
pub(super) fn session_state(dir: &Path, name: &OsStr) -> Result<State> {
    let group = dir.join(name);
    match state(&group) {
        Ok(state) => Ok(state),
        Err(e) if sys::is(&e, libc::ENOENT) || sys::is(&e, libc::ENOTDIR) => {
            Err(Failure::new(format!("{}: no such session", name.to_string_lossy())))
        }
        Err(e) => Err(at(&group, &e)),
    }
}

/// The state of the session in `group`, if it can be read.
pub(super) fn state_of(group: &Path) -> Option<State> {
    state(group).ok()
}

/// Waits up to `wait` for the session's `status` to say `exit`.
pub(super) fn wait_exit(group: &Path, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let Ok(status) = sys::open_reader(&group.join("status")) else {
        return false;
    };
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sys::read(&status, &mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                text.extend_from_slice(&buf[..n]);
                if matches!(parse_status(&String::from_utf8_lossy(&text)), State::Exited(_)) {
                    return true;
                }
                continue;
            }
            Err(e) if sys::is(&e, libc::EAGAIN) => {}
            Err(e) if sys::is(&e, libc::ENOBUFS) => continue,
            Err(_) => return false,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [PollFd::new(status.as_fd(), PollFlags::POLLIN)];
        if sys::poll(&mut fds, Some(left)).is_err() {
            return false;
        }
    }
}

/// Removes a session's group: its streams, then the directory.
pub(super) fn remove_group(group: &Path) -> io::Result<()> {
    for entry in fs::read_dir(group)? {
        let entry = entry?;
        let name = entry.file_name();
        if name == "ctl" || name == "order" {
            continue;
        }
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            match fs::remove_file(entry.path()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    fs::remove_dir(group)
}

/// Opens an existing stream of a session for appending.
pub(super) fn open_existing_writer(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).open(path)
}
