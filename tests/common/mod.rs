//! Shared harness for the integration tests: mounts a real `mqfs` daemon
//! on a fresh temporary directory ([`Mount`]), runs and observes ordinary
//! processes against it ([`Proc`], [`sh`], [`run_sh`]), and waits on
//! conditions instead of sleeping ([`wait_until`], [`proc_state`]).
//!
//! Everything here cleans up after itself in `Drop`, also when the test
//! panicked: no mount, no process and no temporary directory is left behind.
//!
//! Each test file includes this with `mod common;` and uses only part of it,
//! hence the `dead_code` allowance below.

#![allow(dead_code)]

pub mod nats;
pub mod users;

use std::ffi::{CString, OsStr};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Path of the daemon under test, built by cargo for integration tests.
pub const MQFS_BIN: &str = env!("CARGO_BIN_EXE_mqfs");

/// How long [`Mount::with_options`] waits for the mount to appear.
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `Drop for Mount` waits for the daemon to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// How long [`Mount::kill9`] and the `Drop`s wait for a SIGKILLed process
/// to be reaped before leaving it to a background reaper thread. A killed
/// process normally goes in milliseconds; one whose request the FUSE daemon
/// has already taken waits until the daemon answers it (mqfs answers an
/// interrupted request with EINTR, but a daemon that is stopped or wedged
/// does not), and blocking on it here could hang the test binary.
const REAP_TIMEOUT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------

/// Polls `cond` until it returns true, with a backoff growing from 1 ms to
/// 20 ms. Panics with a message naming `what` if `deadline` (a duration from
/// now) passes first. `cond` is evaluated once more at the deadline.
pub fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    let mut delay = Duration::from_millis(1);
    loop {
        if cond() {
            return;
        }
        let elapsed = start.elapsed();
        if elapsed >= deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        thread::sleep(delay.min(deadline - elapsed));
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}

/// Like [`wait_until`], but returns whether `cond` became true in time
/// instead of panicking.
pub fn poll_until(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut delay = Duration::from_millis(1);
    loop {
        if cond() {
            return true;
        }
        let elapsed = start.elapsed();
        if elapsed >= deadline {
            return false;
        }
        thread::sleep(delay.min(deadline - elapsed));
        delay = (delay * 2).min(Duration::from_millis(20));
    }
}

/// The State letter of `/proc/PID/stat` ('R', 'S', 'D', 'Z', 'T', ...), or
/// None if there is no such process. A reader blocked in the kernel on the
/// filesystem shows 'S' (or 'D').
pub fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read(format!("/proc/{pid}/stat")).ok()?;
    // "PID (COMM) S ...": COMM may itself contain spaces and parentheses,
    // so the state is the first non-blank after the *last* ')'.
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat[close + 1..].iter().find(|b| !b.is_ascii_whitespace()).map(|&b| b as char)
}

/// The number of the system call `pid` is blocked in, from
/// `/proc/PID/syscall` (e.g. `libc::SYS_read`); None if it is running in
/// user space, gone, or the file is unavailable.
pub fn proc_syscall(pid: u32) -> Option<libc::c_long> {
    let text = fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// The kernel function `pid` sleeps in, from `/proc/PID/wchan` (e.g.
/// "request_wait_answer" for a FUSE request); None if running or gone.
pub fn proc_wchan(pid: u32) -> Option<String> {
    let w = fs::read_to_string(format!("/proc/{pid}/wchan")).ok()?;
    let w = w.trim();
    (!w.is_empty() && w != "0").then(|| w.to_string())
}

/// Whether `pid` is asleep ('S' or 'D') inside system call `nr`, e.g.
/// `blocked_in_syscall(pid, libc::SYS_read)`. Stronger than checking the
/// state alone, which is also 'S' during a brief FUSE open or lookup.
pub fn blocked_in_syscall(pid: u32, nr: libc::c_long) -> bool {
    matches!(proc_state(pid), Some('S' | 'D')) && proc_syscall(pid) == Some(nr)
}

/// Sends `sig` to `pid`; errors (no such process) are ignored.
fn send_signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// SIGKILLs `child` (and, if `group`, its whole process group) unless it has
/// already been reaped, then reaps it. If it is not gone within
/// [`REAP_TIMEOUT`] (stuck in the kernel), a background thread reaps it
/// whenever it dies, so no zombie is left for the rest of the test run.
/// Returns whether it was reaped here.
fn kill_and_reap(child: &mut Child, group: bool, what: &str) -> bool {
    let pid = child.id();
    if let Ok(None) = child.try_wait() {
        send_signal(pid, libc::SIGKILL);
    }
    if group {
        // The group id is the child's pid (spawned with process_group(0)).
        // Also clears out grandchildren after the child itself has exited.
        // SAFETY: killpg(2) has no memory-safety preconditions.
        unsafe {
            libc::killpg(pid as libc::pid_t, libc::SIGKILL);
        }
    }
    if poll_until(REAP_TIMEOUT, || !matches!(child.try_wait(), Ok(None))) {
        return true;
    }
    eprintln!(
        "note: {what} (pid {pid}) still there {REAP_TIMEOUT:?} after SIGKILL (state {:?}); \
         reaping it in the background",
        proc_state(pid)
    );
    // `Child` never reaps on drop, so this thread is the only waiter; the
    // pid cannot be reused before it is reaped.
    thread::spawn(move || {
        let mut status = 0;
        // SAFETY: waitpid(2) on our own unreaped child.
        unsafe {
            while libc::waitpid(pid as libc::pid_t, &mut status, 0) < 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
        }
    });
    false
}

// ---------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------

/// A fresh, uniquely named path under `std::env::temp_dir()`:
/// `mqfs-test-PID-COUNTER-NANOS-TAG`.
fn unique_temp_path(tag: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    std::env::temp_dir().join(format!("mqfs-test-{}-{n}-{nanos}-{tag}", std::process::id()))
}

/// A name no other test of this run uses, made of `tag`, letters, digits and `_` (fit for a
/// NATS prefix or cluster name).
pub fn unique_name(tag: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{tag}_{}_{n}_{nanos}", std::process::id())
}

/// Creates a new empty directory (fails rather than reuse an existing one)
/// and returns its canonical path.
fn create_unique_dir(tag: &str) -> PathBuf {
    for _ in 0..100 {
        let p = unique_temp_path(tag);
        match fs::create_dir(&p) {
            Ok(()) => return p.canonicalize().expect("canonicalize temp dir"),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create temp dir {}: {e}", p.display()),
        }
    }
    panic!("cannot find a free temp dir name");
}

/// A scratch directory (not a mountpoint) removed recursively on drop, e.g.
/// for files a test prepares outside the mount. Removal is skipped if
/// anything is mounted inside it, so it never recurses into a filesystem.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new() -> TempDir {
        TempDir { path: create_unique_dir("tmp") }
    }

    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let has_mount = mountinfo().iter().any(|m| m.mount_point.starts_with(&self.path));
        if has_mount {
            eprintln!("warning: not removing {}: something is mounted inside it", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------
// /proc/self/mountinfo
// ---------------------------------------------------------------------------

pub use mqfs::mountinfo::MountInfo;

/// All current mounts of this process's mount namespace.
pub fn mountinfo() -> Vec<MountInfo> {
    mqfs::mountinfo::read().unwrap_or_default()
}

/// Whether anything (if `fs_type` is None) or a filesystem of type
/// `fs_type` is mounted exactly at `path` (compare canonical paths).
pub fn is_mounted_at(path: &Path, fs_type: Option<&str>) -> bool {
    mountinfo().iter().any(|m| m.mount_point == path && fs_type.is_none_or(|t| m.fs_type == t))
}

/// Lazily detaches whatever is mounted at `path` (`umount -l`), repeating
/// for stacked mounts. Returns whether `path` is free afterwards.
pub fn detach_all(path: &Path) -> bool {
    let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    for _ in 0..16 {
        if !is_mounted_at(path, None) {
            return true;
        }
        // SAFETY: c_path is a valid NUL-terminated string.
        let rc = unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EINVAL) {
                eprintln!("warning: umount2({}, MNT_DETACH): {err}", path.display());
            }
            // EINVAL: not a mountpoint (any more); re-check and stop.
            return !is_mounted_at(path, None);
        }
    }
    !is_mounted_at(path, None)
}

// ---------------------------------------------------------------------------
// Mount
// ---------------------------------------------------------------------------

/// A running `mqfs MOUNTPOINT -f [-o OPTS]` daemon, mounted on a fresh
/// temporary directory. Dropping it stops the daemon (SIGTERM, then
/// `umount -l` + SIGKILL if needed) and removes the temporary directories.
///
/// Layout: `BASE/mnt` is the mountpoint (`path`), `BASE/daemon.log` gets the
/// daemon's stdout and stderr.
pub struct Mount {
    /// Canonical path of the mountpoint.
    pub path: PathBuf,
    base: PathBuf,
    log_path: PathBuf,
    child: Child,
    /// Set when the constructor panics with the log already in its message.
    log_reported: bool,
    /// Set by [`Mount::kill9`].
    killed: bool,
}

impl Mount {
    /// Mounts with no `-o` options.
    pub fn new() -> Mount {
        Mount::with_options("")
    }

    /// Mounts with `-o OPTS` (omitted if `opts` is empty). Panics, with the
    /// daemon's log, if the daemon exits before the mount shows up in
    /// /proc/self/mountinfo as `fuse.mqfs`, or if that takes over
    /// [`MOUNT_TIMEOUT`].
    pub fn with_options(opts: &str) -> Mount {
        Mount::spawn(None, opts)
    }

    /// Mounts the disk store in `store` (`mqfs STORE MOUNTPOINT`), with `-o OPTS` unless empty.
    pub fn on_store(store: &Path, opts: &str) -> Mount {
        Mount::spawn(Some(store.as_os_str()), opts)
    }

    /// Mounts the tree kept in NATS JetStream under `prefix` (`mqfs nats://HOST:PORT[,...]
    /// MOUNTPOINT -o prefix=PREFIX[,EXTRA]`); `urls` is the source, as
    /// [`nats::NatsServer::url`] or [`nats::NatsCluster::urls`] give it. Returns once the
    /// mount serves: the daemon mounts first and connects after, and requests wait meanwhile.
    pub fn on_nats(urls: &str, prefix: &str, extra_opts: &str) -> Mount {
        let mut opts = format!("prefix={prefix}");
        if !extra_opts.is_empty() {
            opts = format!("{opts},{extra_opts}");
        }
        let mut mount = Mount::spawn(Some(OsStr::new(urls)), &opts);
        // A stat of the root waits until the daemon serves, or fails if it gave up.
        let (tx, rx) = std::sync::mpsc::channel();
        let root = mount.path.clone();
        thread::spawn(move || tx.send(fs::metadata(root).map(drop)));
        let served = rx.recv_timeout(nats::READY_TIMEOUT);
        if !matches!(served, Ok(Ok(()))) {
            // A daemon that gave up says why as it exits, after the mount is gone.
            poll_until(Duration::from_secs(5), || matches!(proc_state(mount.pid()), None | Some('Z')));
            mount.log_reported = true;
            panic!(
                "mqfs did not serve {} within {:?} ({served:?}); daemon log:\n{}",
                mount.path.display(),
                nats::READY_TIMEOUT,
                mount.log()
            );
        }
        mount
    }

    fn spawn(source: Option<&OsStr>, opts: &str) -> Mount {
        let base = create_unique_dir("mnt");
        let path = base.join("mnt");
        fs::create_dir(&path).expect("create mountpoint");
        let log_path = base.join("daemon.log");
        let log = File::create(&log_path).expect("create daemon log");
        let log2 = log.try_clone().expect("dup daemon log");

        let mut cmd = Command::new(MQFS_BIN);
        cmd.args(source).arg(&path).arg("-f");
        if !opts.is_empty() {
            cmd.arg("-o").arg(opts);
        }
        if std::env::var_os("RUST_BACKTRACE").is_none() {
            cmd.env("RUST_BACKTRACE", "1");
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::from(log2)).stderr(Stdio::from(log));
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = fs::remove_dir_all(&base); // nothing mounted yet
                panic!("cannot spawn {MQFS_BIN}: {e}");
            }
        };

        // From here on, a panic drops `mount`, which cleans everything up.
        let mut mount = Mount { path, base, log_path, child, log_reported: false, killed: false };
        let start = Instant::now();
        let mut delay = Duration::from_millis(1);
        loop {
            let here: Vec<MountInfo> =
                mountinfo().into_iter().filter(|m| m.mount_point == mount.path).collect();
            if here.iter().any(|m| m.fs_type == "fuse.mqfs") {
                return mount;
            }
            if let Some(other) = here.first() {
                // Mounted, but not as fuse.mqfs: that will not change, so
                // fail now rather than at the deadline.
                mount.log_reported = true;
                panic!(
                    "{} is mounted with fstype {:?} (source {:?}), expected \"fuse.mqfs\" \
                     (fuser's own mount as root passes plain \"fuse\" and ignores Subtype); daemon log:\n{}",
                    mount.path.display(),
                    other.fs_type,
                    other.source,
                    mount.log()
                );
            }
            if let Ok(Some(status)) = mount.child.try_wait() {
                mount.log_reported = true;
                panic!(
                    "mqfs exited with {status} before mounting {} (-o {opts:?}); daemon log:\n{}",
                    mount.path.display(),
                    mount.log()
                );
            }
            if start.elapsed() >= MOUNT_TIMEOUT {
                mount.log_reported = true;
                panic!(
                    "mqfs did not mount {} as fuse.mqfs within {MOUNT_TIMEOUT:?} (-o {opts:?}); daemon log:\n{}",
                    mount.path.display(),
                    mount.log()
                );
            }
            thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(5));
        }
    }

    /// `self.path.join(rel)`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// The daemon's stdout+stderr so far (lossy UTF-8), for assertion messages.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log_path).unwrap_or_default()).into_owned()
    }

    /// Path of the daemon's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether `path` is currently mounted as `fuse.mqfs`.
    pub fn is_mounted(&self) -> bool {
        is_mounted_at(&self.path, Some("fuse.mqfs"))
    }

    /// Sends `sig` to the daemon (if it has not been reaped yet) and waits up
    /// to `timeout` for it to exit. Returns its exit status, None on timeout.
    /// For shutdown tests: e.g. `stop_with(libc::SIGTERM, ..)` must give
    /// success and `!is_mounted()`.
    pub fn stop_with(&mut self, sig: libc::c_int, timeout: Duration) -> Option<ExitStatus> {
        if let Ok(None) = self.child.try_wait() {
            send_signal(self.child.id(), sig);
        }
        let mut status = None;
        poll_until(timeout, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }

    /// SIGKILLs the daemon and reaps it, leaving the mount dead (accesses
    /// fail with ENOTCONN). Drop still detaches it. (Should the daemon be
    /// stuck in the kernel, it is reaped in the background after
    /// [`REAP_TIMEOUT`].)
    pub fn kill9(&mut self) {
        self.killed = true;
        kill_and_reap(&mut self.child, false, "mqfs daemon");
    }
}

impl Default for Mount {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if thread::panicking() && !self.log_reported {
            let log = self.log();
            let tail_start = log.len().saturating_sub(32 * 1024);
            let tail_start = (tail_start..=log.len()).find(|&i| log.is_char_boundary(i)).unwrap_or(log.len());
            eprintln!(
                "--- mqfs daemon log ({}), test panicked ---\n{}\n--- end of daemon log ---",
                self.log_path.display(),
                &log[tail_start..]
            );
        }

        // 1. Ask politely, give it STOP_TIMEOUT to unmount and exit.
        let exited = self.killed || self.stop_with(libc::SIGTERM, STOP_TIMEOUT).is_some();
        if !exited {
            eprintln!(
                "warning: mqfs (pid {}) did not exit within {STOP_TIMEOUT:?} of SIGTERM; detaching and killing it",
                self.child.id()
            );
        }
        // 2. Detach first (so nothing new can enter it), then kill and reap.
        let free = detach_all(&self.path);
        if !exited {
            kill_and_reap(&mut self.child, false, "mqfs daemon");
        }
        // 3. Remove BASE non-recursively: never walk into a mounted fs.
        let _ = fs::remove_file(&self.log_path);
        if free {
            let _ = fs::remove_dir(&self.path);
            let _ = fs::remove_dir(&self.base);
        } else {
            eprintln!("warning: {} is still mounted; leaving {}", self.path.display(), self.base.display());
        }
    }
}

// ---------------------------------------------------------------------------
// Proc
// ---------------------------------------------------------------------------

/// Bytes from one of a child's pipes, filled by a background thread.
#[derive(Default)]
struct Captured {
    data: Vec<u8>,
    eof: bool,
}

type Shared = Arc<(Mutex<Captured>, Condvar)>;

fn spawn_reader(mut pipe: impl Read + Send + 'static) -> Shared {
    let shared: Shared = Arc::default();
    let s = Arc::clone(&shared);
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            let n = match pipe.read(&mut buf) {
                Ok(0) => 0,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => 0,
            };
            let (lock, cv) = &*s;
            let mut c = lock.lock().unwrap_or_else(|p| p.into_inner());
            if n == 0 {
                c.eof = true;
            } else {
                c.data.extend_from_slice(&buf[..n]);
            }
            cv.notify_all();
            if n == 0 {
                return;
            }
        }
    });
    shared
}

fn snapshot(s: &Shared) -> (Vec<u8>, bool) {
    let c = s.0.lock().unwrap_or_else(|p| p.into_inner());
    (c.data.clone(), c.eof)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// A spawned child process (in its own process group) whose stdout and
/// stderr are collected by background threads. Dropping it SIGKILLs the
/// child and its process group and reaps the child.
pub struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Shared,
    stderr: Shared,
}

impl Proc {
    /// Spawns `cmd` with stdin from /dev/null, stdout and stderr captured,
    /// in a new process group. Panics if it cannot be spawned.
    pub fn spawn(cmd: &mut Command) -> Proc {
        Proc::spawn_inner(cmd, false)
    }

    /// Like [`Proc::spawn`] but with stdin piped: feed it with
    /// [`Proc::write_stdin`], end it with [`Proc::close_stdin`].
    pub fn spawn_piped_stdin(cmd: &mut Command) -> Proc {
        Proc::spawn_inner(cmd, true)
    }

    fn spawn_inner(cmd: &mut Command, piped_stdin: bool) -> Proc {
        cmd.stdin(if piped_stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
        let stdout = spawn_reader(child.stdout.take().expect("stdout piped"));
        let stderr = spawn_reader(child.stderr.take().expect("stderr piped"));
        let stdin = child.stdin.take();
        Proc { child, stdin, stdout, stderr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the child wrote to stdout so far.
    pub fn output(&self) -> Vec<u8> {
        snapshot(&self.stdout).0
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr_output(&self) -> Vec<u8> {
        snapshot(&self.stderr).0
    }

    /// Whether stdout so far contains `needle`.
    pub fn output_contains(&self, needle: &[u8]) -> bool {
        contains(&self.output(), needle)
    }

    /// Waits until stdout contains `needle`. Panics (showing stdout and
    /// stderr so far) on timeout, or as soon as stdout reached EOF without it.
    pub fn wait_output_contains(&self, needle: &[u8], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.stdout;
        let mut c = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if contains(&c.data, needle) {
                return;
            }
            let now = Instant::now();
            if c.eof || now >= deadline {
                let why = if c.eof { "stdout reached EOF" } else { "timed out" };
                let out = String::from_utf8_lossy(&c.data).into_owned();
                drop(c);
                panic!(
                    "{why} waiting for {:?} in stdout of pid {} after {timeout:?}\nstdout: {out:?}\nstderr: {:?}",
                    String::from_utf8_lossy(needle),
                    self.pid(),
                    String::from_utf8_lossy(&self.stderr_output()),
                );
            }
            c = cv.wait_timeout(c, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Waits until stdout holds at least `len` bytes; returns them all.
    /// Panics on timeout or early EOF.
    pub fn wait_output_len(&self, len: usize, timeout: Duration) -> Vec<u8> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.stdout;
        let mut c = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if c.data.len() >= len {
                return c.data.clone();
            }
            let now = Instant::now();
            if c.eof || now >= deadline {
                panic!(
                    "wanted {len} bytes of stdout from pid {}, got {} (eof: {}) after {timeout:?}: {:?}",
                    self.pid(),
                    c.data.len(),
                    c.eof,
                    String::from_utf8_lossy(&c.data)
                );
            }
            c = cv.wait_timeout(c, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Writes to the child's stdin (only for [`Proc::spawn_piped_stdin`]).
    pub fn write_stdin(&mut self, data: &[u8]) {
        let stdin =
            self.stdin.as_mut().expect("stdin not piped (use Proc::spawn_piped_stdin) or already closed");
        stdin.write_all(data).expect("write to child's stdin");
        stdin.flush().expect("flush child's stdin");
    }

    /// Closes the child's stdin, so it reads EOF.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends `sig` to the child process itself (not its group), unless it
    /// has already been reaped.
    pub fn signal(&mut self, sig: libc::c_int) {
        if let Ok(None) = self.child.try_wait() {
            send_signal(self.child.id(), sig);
        }
    }

    /// Sends `sig` to the child's whole process group (like a terminal's
    /// Ctrl-C would), e.g. to reach the commands of an `sh -c` script.
    pub fn signal_group(&self, sig: libc::c_int) {
        // SAFETY: killpg(2) has no memory-safety preconditions.
        unsafe {
            libc::killpg(self.child.id() as libc::pid_t, sig);
        }
    }

    /// Waits up to `timeout` for the child to exit and reaps it; None on
    /// timeout. On exit it also waits (within the same timeout, but at
    /// least 1 s) for stdout/stderr to reach EOF, so that `output()` is
    /// complete afterwards unless a background grandchild holds the pipes.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        let mut status = None;
        poll_until(timeout, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        let status = status?;
        let drain = timeout.saturating_sub(start.elapsed()).max(Duration::from_secs(1));
        poll_until(drain, || snapshot(&self.stdout).1 && snapshot(&self.stderr).1);
        Some(status)
    }

    /// Whether the child has exited (reaps it if so).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// The child's State letter from /proc (see [`proc_state`]); None once
    /// it has been reaped.
    pub fn state(&mut self) -> Option<char> {
        if self.has_exited() {
            return None;
        }
        proc_state(self.pid())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stdin = None;
        kill_and_reap(&mut self.child, true, "test child");
    }
}

/// Spawns `sh -c script` in `cwd` as a [`Proc`].
pub fn sh(script: &str, cwd: &Path) -> Proc {
    Proc::spawn(Command::new("sh").arg("-c").arg(script).current_dir(cwd))
}

/// Runs `sh -c script` in `cwd` to completion and returns its output (the
/// caller checks `status`). Panics, after killing it and its process group,
/// if it does not finish within `timeout`.
pub fn run_sh(script: &str, cwd: &Path, timeout: Duration) -> Output {
    let mut p = sh(script, cwd);
    match p.wait_exit(timeout) {
        Some(status) => Output { status, stdout: p.output(), stderr: p.stderr_output() },
        None => {
            let pid = p.pid();
            let state = proc_state(pid);
            let (out, err) = (p.output(), p.stderr_output());
            drop(p);
            panic!(
                "sh -c {script:?} (in {}) did not finish within {timeout:?} (pid {pid}, state {state:?})\nstdout: {:?}\nstderr: {:?}",
                cwd.display(),
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err),
            );
        }
    }
}

/// Runs a shell script in `cwd` that must succeed within 10 s; returns its stdout.
pub fn run_ok(script: &str, cwd: &Path) -> String {
    let out = run_sh(script, cwd, Duration::from_secs(10));
    assert!(
        out.status.success(),
        "sh -c {script:?} failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The system call number and first argument (a descriptor, for read and write) of `pid`'s
/// main thread, from /proc/PID/syscall; None if it runs in user space or is gone.
pub fn syscall_and_fd(pid: u32) -> Option<(libc::c_long, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/syscall")).ok()?;
    let mut it = text.split_whitespace();
    let nr: libc::c_long = it.next()?.parse().ok()?;
    let fd = u64::from_str_radix(it.next()?.strip_prefix("0x")?, 16).ok()?;
    Some((nr, fd))
}

/// Every message a reader opening `path` now gets without waiting, one per read(2): the
/// retained history under `replay all`.
pub fn history(path: &Path) -> Vec<Vec<u8>> {
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut messages = Vec::new();
    let mut buf = vec![0; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => panic!("end of file on the message stream {}", path.display()),
            Ok(n) => messages.push(buf[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return messages,
            Err(e) => panic!("read {}: {e}", path.display()),
        }
    }
}

/// [`history`] as text, a message a string.
pub fn history_lines(path: &Path) -> Vec<String> {
    history(path).iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect()
}
