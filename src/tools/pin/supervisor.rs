//! The supervisor (`mq-pin --supervise`, in a session of its own): runs the program on a
//! pseudo-terminal whose master side it copies to and from the streams, or on plain files
//! (`--no-pty`); carries out `note` requests (`winch ROWS COLS`, signal names); reports the
//! program's start and end on `status`, then removes the streams the program used.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{dup2_stdout, setsid};

use super::session::open_existing_writer;
use crate::tools::sys::{self, strerror};
use crate::tools::term;

/// The files of a running session, as its supervisor holds them.
struct Supervised {
    group: PathBuf,
    status: File,
    output: File,
    note: File,
    program: i32,
    run_line: String,
}

/// The user's shell: `$SHELL`, else `/bin/sh`.
fn shell() -> OsString {
    std::env::var_os("SHELL").filter(|s| !s.is_empty()).unwrap_or_else(|| OsString::from("/bin/sh"))
}

/// Signals a `note` line may ask for, sent to the program's foreground process group.
fn signal_named(name: &str) -> Option<Signal> {
    Some(match name.to_ascii_lowercase().trim_start_matches("sig") {
        "int" | "interrupt" => Signal::SIGINT,
        "quit" => Signal::SIGQUIT,
        "hup" | "hangup" => Signal::SIGHUP,
        "term" => Signal::SIGTERM,
        "kill" => Signal::SIGKILL,
        "tstp" => Signal::SIGTSTP,
        "stop" => Signal::SIGSTOP,
        "cont" => Signal::SIGCONT,
        "usr1" => Signal::SIGUSR1,
        "usr2" => Signal::SIGUSR2,
        "alrm" => Signal::SIGALRM,
        "winch" => Signal::SIGWINCH,
        _ => return None,
    })
}

/// The exit status a shell would report: the code, or 128 + the signal.
fn shell_status(status: std::process::ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Unblocks every signal: the program must not inherit the supervisor's blocked stop signals.
/// (For `pre_exec`: sigprocmask is async-signal-safe.)
fn unblock_all_signals() -> nix::Result<()> {
    sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
}

/// A descriptor that becomes readable when process `pid` ends.
fn pidfd(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open has no memory-safety preconditions.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// A signalfd for `SIGTERM`, `SIGHUP` and `SIGINT`, which are blocked from now on: asked to
/// stop, the supervisor hangs up its program and still reports how it ended.
fn stop_signals() -> io::Result<SignalFd> {
    let set = SigSet::from_iter([Signal::SIGTERM, Signal::SIGHUP, Signal::SIGINT]);
    set.thread_block()?;
    Ok(SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?)
}

impl Supervised {
    /// Appends program output to `1`. If the mount's memory ceiling is reached, the session's
    /// history is cleared (the status line written again) and the write retried once.
    fn output(&self, data: &[u8]) -> io::Result<()> {
        match sys::write_message(&self.output, data) {
            Err(e) if sys::is(&e, libc::ENOSPC) => {
                fs::write(self.group.join("ctl"), "clear\n")?;
                let _ = sys::write_message(&self.status, self.run_line.as_bytes());
                sys::write_message(&self.output, data)
            }
            other => other,
        }
    }

    /// Carries out the requests of a `note` message.
    fn note(&self, text: &[u8], master: Option<BorrowedFd<'_>>) {
        for line in String::from_utf8_lossy(text).lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["winch", rows, cols] => {
                    if let (Some(fd), Ok(rows), Ok(cols)) = (master, rows.parse(), cols.parse()) {
                        let _ = term::set_window_size(fd, rows, cols);
                    }
                }
                [name] => {
                    if let Some(sig) = signal_named(name) {
                        self.signal(sig, master);
                    }
                }
                _ => {}
            }
        }
    }

    /// Sends `sig` where a terminal would: the foreground process group of the program's
    /// terminal (on a pseudo-terminal), or the program's own group. A hangup or kill also
    /// reaches the program's group.
    fn signal(&self, sig: Signal, master: Option<BorrowedFd<'_>>) {
        let foreground = master.and_then(term::foreground_group).unwrap_or(self.program);
        sys::killpg(foreground, sig);
        if foreground != self.program && matches!(sig, Signal::SIGHUP | Signal::SIGTERM | Signal::SIGKILL) {
            sys::killpg(self.program, sig);
        }
    }
}

/// `mq-pin --supervise`: runs the program of session `name` and serves its streams until it
/// ends. Says `ok` (or `error STATUS MESSAGE`) on standard output once the program runs.
pub fn supervise(dir: &Path, name: &OsStr, command: &[OsString], pty: bool, rows: u16, cols: u16) -> u8 {
    let report = |status: u8, message: String| {
        let _ = sys::write_all(io::stdout(), format!("error {status} {message}\n").as_bytes());
        status
    };
    let group = dir.join(name);
    let command: Vec<OsString> = if command.is_empty() {
        if pty { vec![shell()] } else { vec![shell(), OsString::from("-i")] }
    } else {
        command.to_vec()
    };
    let open = |stream: &str, write: bool| {
        let path = group.join(stream);
        let file = if write { open_existing_writer(&path) } else { sys::open_reader(&path) };
        file.map_err(|e| format!("{}: {}", path.display(), strerror(&e)))
    };
    let files = (|| Ok::<_, String>((open("status", true)?, open("1", true)?, open("note", false)?)))();
    let (status, output, note) = match files {
        Ok(files) => files,
        Err(message) => return report(1, message),
    };
    let signals = match stop_signals() {
        Ok(fd) => fd,
        Err(e) => return report(1, format!("signalfd: {}", strerror(&e))),
    };

    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]).env("MQ_PIN_SESSION", name);
    let mut master = None;
    let mut input = None;
    if pty {
        let (m, slave) = match term::openpty(rows, cols) {
            Ok(pair) => pair,
            Err(e) => return report(1, format!("openpty: {}", strerror(&e))),
        };
        let clones = (slave.try_clone(), slave.try_clone());
        let (Ok(a), Ok(b)) = clones else {
            return report(1, "cannot duplicate the terminal".to_string());
        };
        cmd.stdin(a).stdout(b).stderr(slave);
        // SAFETY: sigprocmask, setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                unblock_all_signals()?;
                setsid()?;
                // nix has no safe wrapper of TIOCSCTTY.
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        match open("0", false) {
            Ok(f) => input = Some(f),
            Err(message) => return report(1, message),
        }
        master = Some(m);
    } else {
        let files = (|| {
            let stdin = File::open(group.join("0")).map_err(|e| format!("0: {}", strerror(&e)))?;
            Ok::<_, String>((stdin, open("1", true)?, open("2", true)?))
        })();
        let (stdin, stdout, stderr) = match files {
            Ok(files) => files,
            Err(message) => return report(1, message),
        };
        cmd.stdin(stdin).stdout(stdout).stderr(stderr);
        // SAFETY: sigprocmask and setsid are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                unblock_all_signals()?;
                setsid()?;
                Ok(())
            });
        }
    }
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            let status = if e.kind() == io::ErrorKind::NotFound { 127 } else { 126 };
            return report(status, format!("{}: {}", command[0].to_string_lossy(), strerror(&e)));
        }
    };
    drop(cmd); // closes our copies of the slave side / the program's files
    let program = child.id() as i32;
    let exited = match pidfd(program) {
        Ok(fd) => fd,
        Err(e) => {
            sys::killpg(program, Signal::SIGKILL);
            let _ = child.wait();
            return report(1, format!("pidfd_open: {}", strerror(&e)));
        }
    };
    let run_line = format!("run {} {program} {}\n", std::process::id(), if pty { "pty" } else { "pipes" });
    let s = Supervised { group, status, output, note, program, run_line };
    if let Err(e) = sys::write_message(&s.status, s.run_line.as_bytes()) {
        sys::killpg(program, Signal::SIGKILL);
        let _ = child.wait();
        return report(1, format!("status: {}", strerror(&e)));
    }
    let _ = sys::write_all(io::stdout(), b"ok\n");
    // Nothing more to say: standard output goes to /dev/null, so the creator sees its end.
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        let _ = dup2_stdout(null);
    }

    let ended = serve(&s, &mut child, master, input, exited, signals);
    let code = match ended {
        Ok(status) => status,
        Err(_) => {
            // The session's files failed (removed, or the mount went away): hang up.
            hang_up(&s, &mut child)
        }
    };
    let _ = sys::write_message(&s.status, format!("exit {code}\n").as_bytes());
    for stream in ["0", "1", "2", "note"] {
        let _ = fs::remove_file(s.group.join(stream));
    }
    0
}

/// Hangs up the program (`SIGHUP`, then `SIGKILL` after a few seconds) and waits for it.
fn hang_up(s: &Supervised, child: &mut Child) -> i32 {
    sys::killpg(s.program, Signal::SIGHUP);
    sys::killpg(s.program, Signal::SIGCONT);
    for (wait, then) in [(Duration::from_secs(3), Some(Signal::SIGKILL)), (Duration::from_secs(2), None)] {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return shell_status(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(sig) = then {
            sys::killpg(s.program, sig);
            sys::kill(s.program, sig);
        }
    }
    128 + Signal::SIGHUP as i32
}

/// How long the supervisor keeps copying output after its program ended, while something
/// else (a background job) still holds the terminal and nothing comes.
const DRAIN_IDLE: Duration = Duration::from_millis(300);

/// The longest it keeps copying output after its program ended.
const DRAIN_MAX: Duration = Duration::from_secs(3);

/// The supervisor's loop: copies `0` to the terminal and the terminal to `1`, carries out
/// `note` requests, until the program ends. Returns its status; an error if the session's
/// files fail (the session was removed, or the mount went away).
fn serve(
    s: &Supervised,
    child: &mut Child,
    master: Option<OwnedFd>,
    input: Option<File>,
    exited: OwnedFd,
    signals: SignalFd,
) -> io::Result<i32> {
    let master_fd = master.as_ref().map(|m| m.as_fd());
    if let Some(fd) = master_fd {
        let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
        fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut master_open = master_fd.is_some();
    let mut hung_up = false;
    loop {
        // [exited, signals, note, input?, master?]
        let mut fds = vec![
            PollFd::new(exited.as_fd(), PollFlags::POLLIN),
            PollFd::new(signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(s.note.as_fd(), PollFlags::POLLIN),
        ];
        let input_at = fds.len();
        if let Some(input) = &input {
            // Stop taking input while a megabyte waits for the program to read it.
            let events = if pending.len() < 1 << 20 { PollFlags::POLLIN } else { PollFlags::empty() };
            fds.push(PollFd::new(input.as_fd(), events));
        }
        let master_at = fds.len();
        if let (Some(fd), true) = (master_fd, master_open) {
            let events =
                PollFlags::POLLIN | if pending.is_empty() { PollFlags::empty() } else { PollFlags::POLLOUT };
            fds.push(PollFd::new(fd, events));
        }
        sys::poll(&mut fds, None)?;
        if sys::ready(&fds[0]) {
            break;
        }
        if sys::ready(&fds[1]) {
            // Asked to stop: hang up the program, as a terminal closing would.
            let _ = signals.read_signal();
            if !hung_up {
                hung_up = true;
                s.signal(Signal::SIGHUP, master_fd);
                sys::killpg(s.program, Signal::SIGCONT);
            }
        }
        if sys::ready(&fds[2]) {
            match sys::read(&s.note, &mut buf) {
                Ok(0) => return Err(sys::errno(libc::EPIPE)),
                Ok(n) => s.note(&buf[..n], master_fd),
                Err(e) if sys::is(&e, libc::EAGAIN) || sys::is(&e, libc::ENOBUFS) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(input) = &input
            && sys::ready(&fds[input_at])
        {
            match sys::read(input, &mut buf) {
                Ok(0) => return Err(sys::errno(libc::EPIPE)),
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(e) if sys::is(&e, libc::EAGAIN) || sys::is(&e, libc::ENOBUFS) => {}
                Err(e) => return Err(e),
            }
        }
        if let (Some(fd), true) = (master_fd, master_open)
            && let Some(p) = fds.get(master_at)
        {
            if sys::polled(p, PollFlags::POLLOUT) && !pending.is_empty() {
                match sys::write(fd, &pending) {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(e) if sys::is(&e, libc::EAGAIN) => {}
                    Err(_) => pending.clear(),
                }
            }
            if sys::polled(p, PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
                match sys::read(fd, &mut buf) {
                    Ok(0) => master_open = false,
                    Ok(n) => s.output(&buf[..n])?,
                    Err(e) if sys::is(&e, libc::EAGAIN) => {}
                    // EIO: every holder of the terminal's other side closed it.
                    Err(_) => master_open = false,
                }
            }
        }
    }
    // The program ended. What it wrote before is on its way through the terminal: copy it
    // until every holder of the terminal closed it, or nothing comes for a while (a background
    // job still holds it), or for a few seconds at most (one that keeps writing).
    if let (Some(fd), true) = (master_fd, master_open) {
        let deadline = Instant::now() + DRAIN_MAX;
        while Instant::now() < deadline {
            let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
            if sys::poll(&mut fds, Some(DRAIN_IDLE))? == 0 {
                break;
            }
            match sys::read(fd, &mut buf) {
                Ok(0) => break,
                Ok(n) => s.output(&buf[..n])?,
                Err(e) if sys::is(&e, libc::EAGAIN) => {}
                Err(_) => break,
            }
        }
    }
    drop(master);
    let status = child.wait()?;
    Ok(shell_status(status))
}
