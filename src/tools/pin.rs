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

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::ordered::{Item, Ordered};
use super::sys::{self, strerror};
use super::term;

/// The session's streams, created with it.
pub const STREAMS: [&str; 5] = ["0", "1", "2", "note", "status"];

/// What a session's group is set to: messages, whole history, no bound, plain writes.
const SESSION_CTL: &str = "data message\nreplay all\ndepth 0\nwrite nonblock\nframe write\n";

/// The default detach key: Ctrl-\ (as dtach(1)).
pub const DETACH_KEY: u8 = 0x1c;

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

// ---------------------------------------------------------------------------
// Where sessions live
// ---------------------------------------------------------------------------

/// The directory sessions live in when `-m` is not given: `$MQ_PIN_DIR`, else
/// `$XDG_RUNTIME_DIR/mq-pin`, else `/run/user/UID/mq-pin` if that directory exists, else
/// `/tmp/mq-pin-UID`.
pub fn default_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("MQ_PIN_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = var("XDG_RUNTIME_DIR") {
        return Path::new(&dir).join("mq-pin");
    }
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let run = PathBuf::from(format!("/run/user/{uid}"));
    if run.is_dir() {
        return run.join("mq-pin");
    }
    PathBuf::from(format!("/tmp/mq-pin-{uid}"))
}

/// Undoes the octal escapes (`\040` for a space) of /proc/self/mountinfo fields.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push(b[i + 1..i + 4].iter().fold(0u32, |acc, c| acc * 8 + u32::from(c - b'0')) as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The file system type and the source of what is mounted on `dir` (the topmost mount), if
/// anything is.
fn mount_at(dir: &Path) -> Option<(String, Vec<u8>)> {
    let dir = dir.canonicalize().ok()?;
    let text = fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        let sep = fields.iter().position(|f| *f == "-")?;
        let point = unescape(fields.get(4)?);
        let (fstype, source) = (fields.get(sep + 1)?, fields.get(sep + 2)?);
        (Path::new(OsStr::from_bytes(&point)) == dir).then(|| (fstype.to_string(), unescape(source)))
    })
}

/// The file system type mounted on `dir` (the topmost mount), if any.
pub fn mounted_type(dir: &Path) -> Option<String> {
    mount_at(dir).map(|(fstype, _)| fstype)
}

/// Whether an mqfs is mounted on `dir`.
pub fn is_mounted(dir: &Path) -> bool {
    mounted_type(dir).as_deref() == Some("fuse.mqfs")
}

/// The mqfs binary: the one next to this program if there is one, else `mqfs` from `PATH`.
fn mqfs_binary() -> PathBuf {
    if let Ok(exe) = std::env::current_exe()
        && let Some(next) = exe.parent().map(|d| d.join("mqfs"))
        && next.is_file()
    {
        return next;
    }
    PathBuf::from("mqfs")
}

/// The source mq-pin mounts mqfs with: it marks the mounts mq-pin made, which it also unmounts.
const OWN_SOURCE: &str = "mq-pin";

/// Makes sure an mqfs is mounted on `dir`, mounting one (`mqfs DIR -o replay=all,fsname=mq-pin`,
/// in the background) if nothing is; creates `dir` (mode 0700) if needed.
pub fn ensure_mounted(dir: &Path) -> Result<()> {
    if is_mounted(dir) {
        return Ok(());
    }
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| at(dir, &e))?;
    if let Some(other) = mounted_type(dir) {
        return Err(Failure::new(format!("{}: {other} is mounted there, not mqfs", dir.display())));
    }
    let mqfs = mqfs_binary();
    let out = Command::new(&mqfs)
        .arg(dir)
        .arg("-o")
        .arg(format!("replay=all,fsname={OWN_SOURCE}"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Failure::new(format!("{}: {}", mqfs.display(), strerror(&e))))?;
    // Another mq-pin may have mounted it in the meantime: then ours failed as "busy".
    if out.status.success() || is_mounted(dir) {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(Failure::new(format!("cannot mount mqfs on {}: {why}", dir.display())))
}

/// Unmounts `dir` if mq-pin mounted it (`ensure_mounted`) and no session is left in it, so
/// that the daemon it started ends with the last session. Best effort: a mount still in use
/// (a shell inside it) stays.
fn release_mount(dir: &Path) {
    let ours = mount_at(dir)
        .is_some_and(|(fstype, source)| fstype == "fuse.mqfs" && source == OWN_SOURCE.as_bytes());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let empty = entries.flatten().all(|e| e.file_name() == "ctl" || e.file_name() == "order");
    if ours && empty {
        // Root may unmount itself; another user's mount was made through fusermount3.
        if sys::unmount(dir).is_err() {
            let _ = Command::new("fusermount3").arg("-u").arg("-q").arg(dir).stderr(Stdio::null()).status();
        }
    }
}

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

// ---------------------------------------------------------------------------
// Session state
// ---------------------------------------------------------------------------

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
        match sys::read(file.as_raw_fd(), &mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if sys::is(&e, libc::EAGAIN) => return Ok(out),
            Err(e) => return Err(e),
        }
    }
}

/// The state `status` lines describe (the last one that means something wins).
fn parse_status(text: &str) -> State {
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
fn session_state(dir: &Path, name: &OsStr) -> Result<State> {
    let group = dir.join(name);
    match state(&group) {
        Ok(state) => Ok(state),
        Err(e) if sys::is(&e, libc::ENOENT) || sys::is(&e, libc::ENOTDIR) => {
            Err(Failure::new(format!("{}: no such session", name.to_string_lossy())))
        }
        Err(e) => Err(at(&group, &e)),
    }
}

/// Removes a session's group: its streams, then the directory.
fn remove_group(group: &Path) -> io::Result<()> {
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
fn open_existing_writer(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).open(path)
}

// ---------------------------------------------------------------------------
// Creating a session
// ---------------------------------------------------------------------------

/// How to start a session.
pub struct Create {
    pub dir: PathBuf,
    pub name: OsString,
    /// The program and its arguments; empty: the user's shell.
    pub command: Vec<OsString>,
    pub pty: bool,
}

/// The user's shell: `$SHELL`, else `/bin/sh`.
fn shell() -> OsString {
    std::env::var_os("SHELL").filter(|s| !s.is_empty()).unwrap_or_else(|| OsString::from("/bin/sh"))
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
    let (rows, cols) = term::window_size(libc::STDIN_FILENO).unwrap_or((24, 80));
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
            libc::setsid();
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

// ---------------------------------------------------------------------------
// The supervisor
// ---------------------------------------------------------------------------

/// The files of a running session, as its supervisor holds them.
struct Supervised {
    group: PathBuf,
    status: File,
    output: File,
    note: File,
    program: i32,
    run_line: String,
}

/// Signals a `note` line may ask for, sent to the program's foreground process group.
fn signal_named(name: &str) -> Option<i32> {
    Some(match name.to_ascii_lowercase().trim_start_matches("sig") {
        "int" | "interrupt" => libc::SIGINT,
        "quit" => libc::SIGQUIT,
        "hup" | "hangup" => libc::SIGHUP,
        "term" => libc::SIGTERM,
        "kill" => libc::SIGKILL,
        "tstp" => libc::SIGTSTP,
        "stop" => libc::SIGSTOP,
        "cont" => libc::SIGCONT,
        "usr1" => libc::SIGUSR1,
        "usr2" => libc::SIGUSR2,
        "alrm" => libc::SIGALRM,
        "winch" => libc::SIGWINCH,
        _ => return None,
    })
}

/// The exit status a shell would report: the code, or 128 + the signal.
fn shell_status(status: std::process::ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Unblocks every signal: the program must not inherit the supervisor's blocked stop signals.
/// (For `pre_exec`: sigprocmask is async-signal-safe.)
fn unblock_all_signals() {
    // SAFETY: sigset operations on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
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
fn stop_signals() -> io::Result<OwnedFd> {
    // SAFETY: sigset operations on a local set; signalfd on it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
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
    fn note(&self, text: &[u8], master: Option<RawFd>) {
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
    fn signal(&self, sig: i32, master: Option<RawFd>) {
        let foreground = master.and_then(term::foreground_group).unwrap_or(self.program);
        sys::killpg(foreground, sig);
        if foreground != self.program && matches!(sig, libc::SIGHUP | libc::SIGTERM | libc::SIGKILL) {
            sys::killpg(self.program, sig);
        }
    }
}

/// `mq-pin --supervise`: runs the program of session `name` and serves its streams until it
/// ends. Says `ok` (or `error STATUS MESSAGE`) on standard output once the program runs.
pub fn supervise(dir: &Path, name: &OsStr, command: &[OsString], pty: bool, rows: u16, cols: u16) -> u8 {
    let report = |status: u8, message: String| {
        let _ = sys::write_all(libc::STDOUT_FILENO, format!("error {status} {message}\n").as_bytes());
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
        // SAFETY: setsid and ioctl are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                unblock_all_signals();
                libc::setsid();
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
                unblock_all_signals();
                libc::setsid();
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
            sys::killpg(program, libc::SIGKILL);
            let _ = child.wait();
            return report(1, format!("pidfd_open: {}", strerror(&e)));
        }
    };
    let run_line = format!("run {} {program} {}\n", std::process::id(), if pty { "pty" } else { "pipes" });
    let s = Supervised { group, status, output, note, program, run_line };
    if let Err(e) = sys::write_message(&s.status, s.run_line.as_bytes()) {
        sys::killpg(program, libc::SIGKILL);
        let _ = child.wait();
        return report(1, format!("status: {}", strerror(&e)));
    }
    let _ = sys::write_all(libc::STDOUT_FILENO, b"ok\n");
    // Nothing more to say: standard output goes to /dev/null, so the creator sees its end.
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        // SAFETY: dup2 onto our own standard output.
        unsafe { libc::dup2(null.as_raw_fd(), libc::STDOUT_FILENO) };
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
    sys::killpg(s.program, libc::SIGHUP);
    sys::killpg(s.program, libc::SIGCONT);
    for (wait, then) in [(Duration::from_secs(3), Some(libc::SIGKILL)), (Duration::from_secs(2), None)] {
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
    128 + libc::SIGHUP
}

/// How long the supervisor keeps copying output after its program ended, while something
/// else (a background job) still holds the terminal and nothing comes.
const DRAIN_IDLE_MS: i32 = 300;

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
    signals: OwnedFd,
) -> io::Result<i32> {
    let master_fd = master.as_ref().map(|m| m.as_raw_fd());
    if let Some(fd) = master_fd {
        // SAFETY: fcntl on our own descriptor.
        unsafe { libc::fcntl(fd, libc::F_SETFL, libc::fcntl(fd, libc::F_GETFL) | libc::O_NONBLOCK) };
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut master_open = master_fd.is_some();
    let mut hung_up = false;
    loop {
        // [exited, signals, note, input?, master?]
        let mut fds = vec![
            sys::pollfd(exited.as_raw_fd(), libc::POLLIN),
            sys::pollfd(signals.as_raw_fd(), libc::POLLIN),
            sys::pollfd(s.note.as_raw_fd(), libc::POLLIN),
        ];
        let input_at = fds.len();
        if let Some(input) = &input {
            // Stop taking input while a megabyte waits for the program to read it.
            let events = if pending.len() < 1 << 20 { libc::POLLIN } else { 0 };
            fds.push(sys::pollfd(input.as_raw_fd(), events));
        }
        let master_at = fds.len();
        if let (Some(fd), true) = (master_fd, master_open) {
            let events = libc::POLLIN | if pending.is_empty() { 0 } else { libc::POLLOUT };
            fds.push(sys::pollfd(fd, events));
        }
        sys::poll(&mut fds, -1)?;
        if fds[0].revents != 0 {
            break;
        }
        if fds[1].revents != 0 {
            // Asked to stop: hang up the program, as a terminal closing would.
            let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
            let _ = sys::read(signals.as_raw_fd(), &mut info);
            if !hung_up {
                hung_up = true;
                s.signal(libc::SIGHUP, master_fd);
                sys::killpg(s.program, libc::SIGCONT);
            }
        }
        if fds[2].revents != 0 {
            match sys::read(s.note.as_raw_fd(), &mut buf) {
                Ok(0) => return Err(sys::errno(libc::EPIPE)),
                Ok(n) => s.note(&buf[..n], master_fd),
                Err(e) if sys::is(&e, libc::EAGAIN) || sys::is(&e, libc::ENOBUFS) => {}
                Err(e) => return Err(e),
            }
        }
        if let Some(input) = &input
            && fds[input_at].revents != 0
        {
            match sys::read(input.as_raw_fd(), &mut buf) {
                Ok(0) => return Err(sys::errno(libc::EPIPE)),
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(e) if sys::is(&e, libc::EAGAIN) || sys::is(&e, libc::ENOBUFS) => {}
                Err(e) => return Err(e),
            }
        }
        if let (Some(fd), true) = (master_fd, master_open)
            && let Some(p) = fds.get(master_at)
        {
            if p.revents & libc::POLLOUT != 0 && !pending.is_empty() {
                match sys::write(fd, &pending) {
                    Ok(n) => {
                        pending.drain(..n);
                    }
                    Err(e) if sys::is(&e, libc::EAGAIN) => {}
                    Err(_) => pending.clear(),
                }
            }
            if p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
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
            let mut fds = [sys::pollfd(fd, libc::POLLIN)];
            if sys::poll(&mut fds, DRAIN_IDLE_MS)? == 0 {
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

// ---------------------------------------------------------------------------
// Attaching
// ---------------------------------------------------------------------------

/// How a viewer ended.
enum Outcome {
    Exited(i32),
    Detached,
    Signal(i32),
    Removed,
    Error(String),
}

/// Blocks the signals a viewer handles in its signal thread (in every thread: call before
/// starting any) and returns the set.
fn block_viewer_signals() -> libc::sigset_t {
    // SAFETY: sigset operations on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGWINCH, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

/// `mq-pin -a NAME`: replays the session's output in write order, then follows it, sending
/// what is typed to the program, until the program ends (returns its status), the viewer
/// detaches (0), or the session goes away.
pub fn attach(dir: &Path, name: &OsStr, detach_key: Option<u8>) -> Result<u8> {
    check_name(name)?;
    let shown = name.to_string_lossy().into_owned();
    let group = dir.join(name);
    let state = session_state(dir, name)?;
    let ended = |status: i32| {
        if sys::isatty(libc::STDERR_FILENO) {
            eprintln!("[mq-pin: {shown}: exited with status {status}]");
        }
        Ok(status.clamp(0, 255) as u8)
    };
    let pty = match state {
        State::Exited(status) => return ended(status),
        State::Lost { .. } => {
            return Err(Failure::new(format!(
                "{shown}: its supervisor is gone (mq-pin -k {shown} removes the session)"
            )));
        }
        State::Running { pty, .. } => pty,
        State::Starting => true,
    };
    let names: Vec<OsString> = ["1", "2", "status"].iter().map(OsString::from).collect();
    let opened = Ordered::open(&group, &names, true).map_err(|e| at(&e.path, &e.error)).and_then(|reader| {
        let input = open_existing_writer(&group.join("0")).map_err(|e| at(&group.join("0"), &e))?;
        let note = open_existing_writer(&group.join("note")).map_err(|e| at(&group.join("note"), &e))?;
        Ok((reader, input, note))
    });
    let (mut reader, input, note) = match opened {
        Ok(files) => files,
        // It may have ended just now.
        Err(f) => match state_of(&group) {
            Some(State::Exited(status)) => return ended(status),
            _ => return Err(f),
        },
    };

    let tty = sys::isatty(libc::STDIN_FILENO);
    let saved = if tty { term::Saved::get(libc::STDIN_FILENO).ok() } else { None };
    if let Some(saved) = &saved {
        let set = if pty { saved.make_raw() } else { saved.quit_key(detach_key) };
        set.map_err(|e| Failure::new(format!("standard input: {}", strerror(&e))))?;
    }
    let signals = block_viewer_signals();
    let send_size = {
        let note = note.try_clone().map_err(|e| Failure::new(strerror(&e)))?;
        move || {
            if let Some((rows, cols)) = term::window_size(libc::STDIN_FILENO) {
                let _ = sys::write_message(&note, format!("winch {rows} {cols}\n").as_bytes());
            }
        }
    };
    if pty && tty {
        send_size();
    }

    let (tx, rx) = mpsc::channel::<Outcome>();
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let outcome = loop {
                match reader.next_item() {
                    Ok(Some(Item::Message(2, text))) => {
                        if let State::Exited(status) = parse_status(&String::from_utf8_lossy(text)) {
                            break Outcome::Exited(status);
                        }
                    }
                    Ok(Some(Item::Message(_, data))) => {
                        if let Err(e) = sys::write_all(libc::STDOUT_FILENO, data) {
                            break Outcome::Error(format!("standard output: {}", strerror(&e)));
                        }
                    }
                    Ok(Some(Item::Lost(_))) => {}
                    Ok(None) => break Outcome::Removed,
                    Err(e) => break Outcome::Error(strerror(&e)),
                }
            };
            let _ = tx.send(outcome);
        });
    }
    {
        let tx = tx.clone();
        let raw = pty && tty;
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = match sys::read(libc::STDIN_FILENO, &mut buf) {
                    Ok(0) | Err(_) => {
                        // On a terminal: hung up, or ^D without a pseudo-terminal, which
                        // detaches as ending `cat >>0` would. Otherwise input is over, and
                        // the viewer goes on showing output.
                        if tty {
                            let _ = tx.send(Outcome::Detached);
                        }
                        return;
                    }
                    Ok(n) => n,
                };
                let mut data = &buf[..n];
                let mut detach = false;
                if raw
                    && let Some(key) = detach_key
                    && let Some(at) = data.iter().position(|&b| b == key)
                {
                    data = &data[..at];
                    detach = true;
                }
                if !data.is_empty() && sys::write_message(&input, data).is_err() {
                    // The session ended: the output side reports how.
                    return;
                }
                if detach {
                    let _ = tx.send(Outcome::Detached);
                    return;
                }
            }
        });
    }
    {
        let tx = tx.clone();
        std::thread::spawn(move || {
            loop {
                // SAFETY: signals is a valid set, blocked in every thread.
                let sig = unsafe { libc::sigwaitinfo(&signals, std::ptr::null_mut()) };
                if sig < 0 {
                    continue;
                }
                match sig {
                    libc::SIGWINCH if pty && tty => send_size(),
                    libc::SIGINT => {
                        let _ = sys::write_message(&note, b"int\n");
                    }
                    libc::SIGQUIT => {
                        let _ = tx.send(Outcome::Detached);
                    }
                    libc::SIGTERM | libc::SIGHUP => {
                        let _ = tx.send(Outcome::Signal(sig));
                    }
                    _ => {}
                }
            }
        });
    }
    let outcome = rx.recv().unwrap_or(Outcome::Removed);
    drop(saved);
    match outcome {
        Outcome::Exited(status) => ended(status),
        Outcome::Detached => {
            if sys::isatty(libc::STDERR_FILENO) {
                eprintln!("[mq-pin: detached from {shown}]");
            }
            Ok(0)
        }
        Outcome::Signal(sig) => Ok((128 + sig) as u8),
        Outcome::Removed => match state_of(&group) {
            Some(State::Exited(status)) => ended(status),
            _ => Err(Failure::new(format!("{shown}: the session was removed"))),
        },
        Outcome::Error(message) => Err(Failure::new(message)),
    }
}

/// The state of the session in `group`, if it can be read.
fn state_of(group: &Path) -> Option<State> {
    state(group).ok()
}

// ---------------------------------------------------------------------------
// Writing, listing, removing
// ---------------------------------------------------------------------------

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
        match sys::read(libc::STDIN_FILENO, &mut buf) {
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

/// Waits up to `wait` for the session's `status` to say `exit`.
fn wait_exit(group: &Path, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let Ok(status) = sys::open_reader(&group.join("status")) else {
        return false;
    };
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match sys::read(status.as_raw_fd(), &mut buf) {
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
        let mut fds = [sys::pollfd(status.as_raw_fd(), libc::POLLIN)];
        if sys::poll(&mut fds, left.as_millis().min(i32::MAX as u128) as i32).is_err() {
            return false;
        }
    }
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
                sys::killpg(program, libc::SIGHUP);
                sys::killpg(program, libc::SIGKILL);
            }
        }
        State::Exited(_) => {}
    }
    remove_group(&group).map_err(|e| at(&group, &e))?;
    release_mount(dir);
    Ok(())
}
