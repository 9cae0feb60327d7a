//! The commands that act on a session and return: create one (`-c`: make its group, start
//! its supervisor, wait until the program runs), write to its input (`-w`), list (`-l`),
//! kill (`-k`).

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::setsid;

use super::mount::{ensure_mounted, is_mounted, release_mount};
use super::session::{
    SESSION_CTL, STREAMS, State, check_name, open_existing_writer, remove_group, session_state, state,
    wait_exit,
};
use super::{Failure, Result, at};
use crate::tools::sys::{self, strerror};
use crate::tools::term;

/// How to start a session.
pub struct Create {
    pub dir: PathBuf,
    pub name: OsString,
    /// The program and its arguments; empty: the user's shell.
    pub command: Vec<OsString>,
    pub pty: bool,
}

/// Creates a session and starts its program under a supervisor; returns once the program
/// runs (or why it could not start: exit status 126 or 127 as a shell's).
pub fn create(c: &Create) -> Result<()> {
    check_name(&c.name)?;
    ensure_mounted(&c.dir)?;
    let group = c.dir.join(&c.name);
    if group.exists() {
        match state(&group) {
            Ok(State::Running { .. } | State::Starting) | Err(_) => {
                return Err(Failure::new(format!("{}: session exists", c.name.to_string_lossy())));
            }
            // What is left of an ended session makes way for the new one.
            Ok(State::Exited(_) | State::Lost { .. }) => remove_group(&group).map_err(|e| at(&group, &e))?,
        }
    }
    match fs::create_dir(&group) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(Failure::new(format!("{}: session exists", c.name.to_string_lossy())));
        }
        Err(e) => return Err(at(&group, &e)),
    }
    let made = (|| -> io::Result<()> {
        fs::write(group.join("ctl"), SESSION_CTL)?;
        for stream in STREAMS {
            sys::open_writer(&group.join(stream))?;
        }
        Ok(())
    })();
    if let Err(e) = made {
        let _ = remove_group(&group);
        return Err(at(&group, &e));
    }
    match start_supervisor(c) {
        Ok(()) => Ok(()),
        Err(f) => {
            let _ = remove_group(&group);
            Err(f)
        }
    }
}

/// Runs `mq-pin --supervise ...` in a new session of its own, its output a pipe on which it
/// says `ok`, or `error STATUS MESSAGE`.
fn start_supervisor(c: &Create) -> Result<()> {
    let exe =
        std::env::current_exe().map_err(|e| Failure::new(format!("cannot find myself: {}", strerror(&e))))?;
    let (rows, cols) = term::window_size(io::stdin()).unwrap_or((24, 80));
    let mut cmd = Command::new(exe);
    cmd.arg("--supervise").arg(&c.name).arg("-m").arg(&c.dir).args([
        "--rows",
        &rows.to_string(),
        "--cols",
        &cols.to_string(),
    ]);
    if !c.pty {
        cmd.arg("--no-pty");
    }
    cmd.arg("--").args(&c.command);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
    // SAFETY: setsid and close_range are async-signal-safe. The supervisor leaves the
    // creator's session and keeps none of its descriptors (pipes of whoever started it).
    unsafe {
        cmd.pre_exec(|| {
            setsid()?;
            // nix has no close_range.
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
            Ok(())
        });
    }
    let mut child: Child =
        cmd.spawn().map_err(|e| Failure::new(format!("cannot start the supervisor: {}", strerror(&e))))?;
    let mut said = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut said);
    }
    // The supervisor runs on; it is not waited for (it ends with its program).
    let said = said.trim_end();
    if said == "ok" {
        return Ok(());
    }
    if let Some(rest) = said.strip_prefix("error ") {
        let (status, message) = rest.split_once(' ').unwrap_or(("1", rest));
        return Err(Failure { message: message.to_string(), status: status.parse().unwrap_or(1) });
    }
    let _ = child.wait();
    Err(Failure::new(format!("{}: the supervisor failed to start", c.name.to_string_lossy())))
}

/// The session's input stream, if its program still runs.
fn running_input(dir: &Path, name: &OsStr) -> Result<File> {
    check_name(name)?;
    let shown = name.to_string_lossy();
    match session_state(dir, name)? {
        State::Exited(status) => {
            return Err(Failure::new(format!("{shown}: the program has exited ({status})")));
        }
        State::Lost { .. } => return Err(Failure::new(format!("{shown}: its supervisor is gone"))),
        _ => {}
    }
    let path = dir.join(name).join("0");
    open_existing_writer(&path).map_err(|e| at(&path, &e))
}

/// `mq-pin -w NAME [TEXT...]`: writes TEXT (its words joined by spaces, and a newline) as one
/// message to the program's input; without TEXT, copies standard input, one message per read.
pub fn write(dir: &Path, name: &OsStr, text: &[OsString]) -> Result<()> {
    let input = running_input(dir, name)?;
    let fail = |e: io::Error| Failure::new(format!("{}: {}", name.to_string_lossy(), strerror(&e)));
    if !text.is_empty() {
        let mut line = text.iter().map(|w| w.as_bytes()).collect::<Vec<_>>().join(&b' ');
        line.push(b'\n');
        return sys::write_message(&input, &line).map_err(fail);
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match sys::read(io::stdin(), &mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => sys::write_message(&input, &buf[..n]).map_err(fail)?,
            Err(e) => return Err(Failure::new(format!("standard input: {}", strerror(&e)))),
        }
    }
}

/// `mq-pin -l`: one line per session, `NAME<TAB>STATE` (`running PID`, `exited STATUS`,
/// `lost`, `starting`), sorted by name. Nothing if nothing is mounted.
pub fn list(dir: &Path) -> Result<Vec<String>> {
    if !is_mounted(dir) {
        return Ok(Vec::new());
    }
    let mut lines = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| at(dir, &e))?;
    let mut names: Vec<OsString> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()) && e.path().join("status").is_file())
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        if let Ok(state) = state(&dir.join(&name)) {
            lines.push(format!("{}\t{state}", name.to_string_lossy()));
        }
    }
    Ok(lines)
}

/// `mq-pin -k NAME`: ends the program if it runs (`hup`, then `kill` if it is still there
/// after a few seconds) and removes the session; unmounts mq-pin's own mount if that was the
/// last.
pub fn kill(dir: &Path, name: &OsStr) -> Result<()> {
    check_name(name)?;
    let group = dir.join(name);
    match session_state(dir, name)? {
        State::Running { .. } | State::Starting => {
            if let Ok(note) = open_existing_writer(&group.join("note")) {
                let _ = sys::write_message(&note, b"hup\n");
                if !wait_exit(&group, Duration::from_secs(5)) {
                    let _ = sys::write_message(&note, b"kill\n");
                    wait_exit(&group, Duration::from_secs(5));
                }
            }
        }
        State::Lost { program } => {
            if sys::process_alive(program) {
                sys::killpg(program, Signal::SIGHUP);
                sys::killpg(program, Signal::SIGKILL);
            }
        }
        State::Exited(_) => {}
    }
    remove_group(&group).map_err(|e| at(&group, &e))?;
    release_mount(dir);
    Ok(())
}
