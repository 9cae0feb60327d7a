//! `mq-pin`: programs kept running in sessions that any number of viewers attach to and
//! detach from. A session is a group of an mqfs mount with `replay all`:
//!
//! | stream | holds |
//! |---|---|
//! | `0` | the program's input: keystrokes of viewers, `mq-pin -w` |
//! | `1` | its output (all of it on a pseudo-terminal) |
//! | `2` | its standard error with `--no-pty` (on a pseudo-terminal, it is part of `1`: `2` stays empty) |
//! | `note` | requests to the supervisor, one per line: `winch ROWS COLS`, `int`, `hup`, ... |
//! | `status` | `run SUPERVISOR PROGRAM MODE` when it starts, `exit STATUS` when it ends |
//!
//! A supervisor process (`mq-pin --supervise`, in a session of its own) runs the program, on a
//! pseudo-terminal whose master side it copies to and from the streams, or with plain files
//! (`--no-pty`: the program reads `0` and appends to `1` and `2` itself, as `sh <0 >>1 2>>2`
//! would). Viewers replay `1`, `2` and `status` in write order (see `ordered`), then follow.
//! When the program ends, the supervisor writes `exit STATUS` to `status` and removes `0`, `1`,
//! `2` and `note`: every reader gets what is left, then end-of-file. `status` stays, so that
//! `mq-pin -l` and later viewers learn how it ended, until `mq-pin -k` removes the session.
//!
//! Modules: `session` (the group, its names and `status`), `mount` (where sessions live and
//! the mqfs under them), `commands` (create, write, list, kill), `supervisor` (the program's
//! side), `viewer` (attach and detach).

mod commands;
mod mount;
mod session;
mod supervisor;
mod viewer;

use std::io;
use std::path::Path;

use super::sys::strerror;

pub use commands::{Create, create, kill, list, write};
pub use mount::{default_dir, is_mounted};
pub use session::{State, check_name, state};
pub use supervisor::supervise;
pub use viewer::attach;

/// An error to report as "mq-pin: MESSAGE", with the exit status to end with.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub status: u8,
}

impl Failure {
    fn new(message: impl Into<String>) -> Failure {
        Failure { message: message.into(), status: 1 }
    }
}

pub type Result<T> = std::result::Result<T, Failure>;

fn at(path: &Path, e: &io::Error) -> Failure {
    Failure::new(format!("{}: {}", path.display(), strerror(e)))
}
