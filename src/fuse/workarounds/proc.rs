//! What the daemon learns about a calling thread from `/proc`: whether a
//! thread blocked on us has exited or has a signal waiting for it, and how
//! many bytes the write(2)-family system call it is stuck in asks to write.
//!
//! Linux only (x86_64 and aarch64). Every function here tolerates the thread
//! vanishing at any moment and odd `/proc` content: they never panic, they
//! just answer conservatively.

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write as _};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[cfg(not(all(
    target_os = "linux",
    target_pointer_width = "64",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
compile_error!("fuse::workarounds::proc supports only 64-bit Linux on x86_64 and aarch64");

/// System call numbers of the native 64-bit ABI, as `/proc/<tid>/syscall`
/// prints them. The `libc` constants carry the right value per architecture
/// (x86_64: 1/18/20/296/328, aarch64: 64/68/66/70/287).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
mod nr {
    pub const WRITE: libc::c_long = libc::SYS_write;
    pub const PWRITE64: libc::c_long = libc::SYS_pwrite64;
    pub const WRITEV: libc::c_long = libc::SYS_writev;
    pub const PWRITEV: libc::c_long = libc::SYS_pwritev;
    pub const PWRITEV2: libc::c_long = libc::SYS_pwritev2;
}

/// Largest iovec count the kernel accepts (`UIO_MAXIOV`, `IOV_MAX`); a
/// vectored write with more fails with EINVAL before reaching any file.
const IOV_MAX: u64 = 1024;

/// Initial size of the per-thread buffer `caller_state` reads into; a
/// typical `status` file is 1.5 KiB and the fields we need come first.
const STATUS_BUF_INITIAL: usize = 4096;

/// Never grow the status buffer past this (a status file with a huge
/// `Groups:` line is legal but bounded; this only guards against nonsense).
const STATUS_BUF_MAX: usize = 1 << 20;

/// What a thread blocked on the daemon is doing, as seen in
/// `/proc/<tid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// The thread no longer exists, or is a zombie / dead task.
    Gone,
    /// A signal is pending for the thread that it neither blocks nor
    /// ignores: the caller wants its system call interrupted.
    Signalled,
    /// Alive and nothing pending that concerns us (also the answer when the
    /// file could not be interpreted).
    Waiting,
}

thread_local! {
    static STATUS_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// What `/proc/<tid>/status` says about a thread blocked on the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Task {
    pub caller: Caller,
    /// The thread's process (thread group), if the file said.
    pub process: Option<u32>,
    /// A signal sent to the whole process is pending and not ignored. Which thread it
    /// wakes is the kernel's choice, so each thread of the process blocked on us has to be
    /// asked whether it blocks the signal.
    pub process_signalled: bool,
}

/// Classifies thread `tid` from `/proc/<tid>/status`.
///
/// * `Gone` when the task does not exist (ENOENT on open, ESRCH on read) or
///   its `State:` is `Z` (zombie) or `X` (dead);
/// * `Signalled` when `(SigPnd | ShdPnd) & !SigBlk & !SigIgn != 0`;
/// * `Waiting` otherwise. Other I/O errors (EMFILE, EACCES under
///   `hidepid=1`, ...) say nothing about the task, so they give `Waiting`
///   too rather than a false `Gone`.
pub fn caller_state(tid: u32) -> Caller {
    task(tid).caller
}

/// Reads thread `tid`'s status: how it stands (see [`caller_state`]), its process, and
/// whether its process has a signal pending.
///
/// Cheap enough to call for many blocked readers every few tens of
/// milliseconds: no allocation after the first call on a thread (the read
/// buffer is per-thread and reused), normally a single `read(2)`, and
/// parsing stops at the `SigIgn:` line.
pub fn task(tid: u32) -> Task {
    STATUS_BUF
        .try_with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => task_in(tid, &mut buf),
            Err(_) => task_in(tid, &mut Vec::new()),
        })
        .unwrap_or_else(|_| task_in(tid, &mut Vec::new()))
}

fn task_in(tid: u32, buf: &mut Vec<u8>) -> Task {
    let path = ProcPath::new(tid, "status");
    let mut file = match path.open() {
        Ok(file) => file,
        Err(err) => return state_on_error(tid, &err),
    };
    if buf.len() < STATUS_BUF_INITIAL {
        buf.resize(STATUS_BUF_INITIAL, 0);
    }
    let mut filled = 0;
    let mut fields = StatusFields::default();
    loop {
        if filled >= buf.len() {
            if buf.len() >= STATUS_BUF_MAX {
                break;
            }
            let grown = buf.len().saturating_mul(2).min(STATUS_BUF_MAX);
            buf.resize(grown, 0);
        }
        let Some(spare) = buf.get_mut(filled..) else {
            break;
        };
        match file.read(spare) {
            Ok(0) => break,
            Ok(n) => {
                filled = filled.saturating_add(n).min(buf.len());
                fields = parse_status(buf.get(..filled).unwrap_or_default());
                if fields.complete() {
                    break;
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return state_on_error(tid, &err),
        }
    }
    fields.task()
}

fn state_on_error(tid: u32, err: &io::Error) -> Task {
    let caller = if task_vanished(err) {
        Caller::Gone
    } else {
        log::debug!("procfs: reading /proc/{tid}/status: {err}");
        Caller::Waiting
    };
    Task { caller, process: None, process_signalled: false }
}

/// Whether an error from opening or reading a `/proc/<tid>/...` file means
/// the task is not there (any more).
fn task_vanished(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOENT | libc::ESRCH))
}

/// The lines of `/proc/<tid>/status` that `caller_state` needs. Each is
/// `None` until its line has been seen complete (newline-terminated) and
/// parsed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct StatusFields {
    /// First character of the `State:` value (`R`, `S`, `D`, `T`, `Z`, ...).
    state: Option<u8>,
    tgid: Option<u32>,
    sig_pnd: Option<u64>,
    shd_pnd: Option<u64>,
    sig_blk: Option<u64>,
    sig_ign: Option<u64>,
}

impl StatusFields {
    fn complete(&self) -> bool {
        self.state.is_some()
            && self.tgid.is_some()
            && self.sig_pnd.is_some()
            && self.shd_pnd.is_some()
            && self.sig_blk.is_some()
            && self.sig_ign.is_some()
    }

    fn classify(&self) -> Caller {
        if matches!(self.state, Some(b'Z' | b'X')) {
            return Caller::Gone;
        }
        match (self.sig_pnd, self.shd_pnd, self.sig_blk, self.sig_ign) {
            (Some(pnd), Some(shd), Some(blk), Some(ign)) if (pnd | shd) & !blk & !ign != 0 => {
                Caller::Signalled
            }
            _ => Caller::Waiting,
        }
    }

    fn task(&self) -> Task {
        let process_signalled = match (self.shd_pnd, self.sig_ign) {
            (Some(shd), Some(ign)) => shd & !ign != 0,
            _ => false,
        };
        Task { caller: self.classify(), process: self.tgid, process_signalled }
    }
}

/// Parses the complete lines of (a prefix of) a status file. The first
/// occurrence of a field wins; an unparsable value leaves it `None`. The
/// only line before these that a program controls, `Name:`, is escaped by
/// the kernel so it cannot contain a newline and fake a field.
fn parse_status(data: &[u8]) -> StatusFields {
    let mut fields = StatusFields::default();
    let Some(end) = data.iter().rposition(|&b| b == b'\n') else {
        return fields;
    };
    for line in data.get(..end).unwrap_or_default().split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (key, value) = line.split_at(colon);
        let value = value.get(1..).unwrap_or_default();
        let slot = match key {
            b"State" => {
                if fields.state.is_none() {
                    fields.state = value.iter().copied().find(|b| !b.is_ascii_whitespace());
                }
                continue;
            }
            b"Tgid" => {
                if fields.tgid.is_none() {
                    fields.tgid = parse_dec(value.trim_ascii()).and_then(|v| u32::try_from(v).ok());
                }
                continue;
            }
            b"SigPnd" => &mut fields.sig_pnd,
            b"ShdPnd" => &mut fields.shd_pnd,
            b"SigBlk" => &mut fields.sig_blk,
            b"SigIgn" => &mut fields.sig_ign,
            _ => continue,
        };
        if slot.is_none() {
            *slot = parse_hex(value);
        }
        if key == b"SigIgn" {
            // Last of the fields we need; nothing after it matters.
            break;
        }
    }
    fields
}

/// Parses an unsigned hex number of 1 to 16 digits (no prefix), surrounding
/// ASCII whitespace allowed.
fn parse_hex(text: &[u8]) -> Option<u64> {
    let digits = text.trim_ascii();
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        let digit = char::from(b).to_digit(16)?;
        Some((acc << 4) | u64::from(digit))
    })
}

/// Parses a signed decimal number (the syscall number may be `-1`).
fn parse_dec(text: &[u8]) -> Option<libc::c_long> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Total number of bytes the current system call of thread `tid` asks to
/// write, when that call is write(2), pwrite64(2), writev(2), pwritev(2) or
/// pwritev2(2); `None` for any other call, a running thread, or any error.
///
/// Reads `/proc/<tid>/syscall` (`NR arg1 .. arg6 sp pc`, args in `0x` hex).
/// For write/pwrite64 the answer is the count argument. For the vectored
/// calls the iovec array (at most `IOV_MAX` = 1024 entries) is copied out of
/// the caller with `process_vm_readv` and the `iov_len`s are summed; `None`
/// on overflow or if fewer bytes than the whole array could be read.
///
/// Both `/proc/<tid>/syscall` and `process_vm_readv` need ptrace-attach
/// rights over the target (same credentials and Yama permitting, or
/// `CAP_SYS_PTRACE`); without them this returns `None`. The answer is a
/// snapshot: another thread of the caller may change the iovec array after
/// the kernel copied it. Only native 64-bit callers are understood; a
/// 32-bit (compat) caller's syscall numbers belong to another table and
/// give `None`.
pub fn write_syscall_len(tid: u32) -> Option<u64> {
    let mut buf = [0u8; 256];
    let len = read_small(&ProcPath::new(tid, "syscall"), &mut buf).ok()?;
    len_from_syscall_line(tid, buf.get(..len)?)
}

/// Whether thread `tid` is exiting because a signal killed it (its exit code, set before
/// the kernel closes its files, names a signal). A process that exits normally, or one
/// that is not exiting, is not dying; neither is a task that cannot be read.
pub fn killed_by_signal(tid: u32) -> bool {
    // `stat` must not be read for a thread that is not exiting: execve closes O_CLOEXEC
    // descriptors (so this FLUSH) while holding the lock reading `stat` takes
    // (exec_update_lock), and the read would wait for the exec that waits for us. An
    // exiting thread has dropped its memory (exit_mm) before closing its files
    // (exit_files); `status`, which takes no such lock, lists `VmSize` only while it has any.
    if has_memory(tid) {
        return false;
    }
    let mut buf = [0u8; 1024];
    let Ok(len) = read_small(&ProcPath::new(tid, "stat"), &mut buf) else { return false };
    exit_signal_from_stat(buf.get(..len).unwrap_or_default()).is_some_and(|signal| signal != 0)
}

/// The signal number in the exit code (field 52) of a `/proc/<tid>/stat` line. The command
/// name (field 2) may hold spaces and parentheses: fields are counted after its last `)`.
fn exit_signal_from_stat(data: &[u8]) -> Option<i64> {
    let after_name = data.get(data.iter().rposition(|&b| b == b')')? + 1..)?;
    let field = after_name.split(|b| b.is_ascii_whitespace()).filter(|t| !t.is_empty()).nth(52 - 3)?;
    let code: i64 = std::str::from_utf8(field).ok()?.parse().ok()?;
    Some(code & 0x7f)
}

/// Whether `/proc/<tid>/status` shows an address space (a `VmSize` line); false if the
/// thread is gone or the file cannot be read.
fn has_memory(tid: u32) -> bool {
    let mut buf = vec![0u8; 4 * STATUS_BUF_INITIAL];
    let Ok(len) = read_small(&ProcPath::new(tid, "status"), &mut buf) else { return false };
    buf.get(..len).unwrap_or_default().windows(8).any(|w| w == b"\nVmSize:")
}

/// Reads a small `/proc` file into `buf` until EOF or `buf` is full.
fn read_small(path: &ProcPath, buf: &mut [u8]) -> io::Result<usize> {
    let mut file = path.open()?;
    let mut filled = 0;
    while let Some(spare) = buf.get_mut(filled..).filter(|s| !s.is_empty()) {
        match file.read(spare) {
            Ok(0) => break,
            Ok(n) => filled = filled.saturating_add(n).min(buf.len()),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// The system call number and first three arguments from the content of
/// `/proc/<tid>/syscall`; `None` for `running`, a negative number (not in a
/// system call) or anything malformed.
fn parse_syscall_line(data: &[u8]) -> Option<(libc::c_long, [u64; 3])> {
    let mut tokens = data.split(|b| b.is_ascii_whitespace()).filter(|t| !t.is_empty());
    let nr = parse_dec(tokens.next()?)?;
    if nr < 0 {
        return None;
    }
    let mut args = [0u64; 3];
    for arg in &mut args {
        let token = tokens.next()?;
        *arg = parse_hex(token.strip_prefix(b"0x")?)?;
    }
    Some((nr, args))
}

fn len_from_syscall_line(tid: u32, data: &[u8]) -> Option<u64> {
    let (nr, [_fd, addr, count]) = parse_syscall_line(data)?;
    match nr {
        nr::WRITE | nr::PWRITE64 => Some(count),
        nr::WRITEV | nr::PWRITEV | nr::PWRITEV2 => remote_iovec_total(tid, addr, count),
        _ => None,
    }
}

/// Sum of the `iov_len`s of the `count` iovecs at address `addr` in the
/// address space of thread `tid`.
fn remote_iovec_total(tid: u32, addr: u64, count: u64) -> Option<u64> {
    if count > IOV_MAX {
        // The kernel rejects such a call with EINVAL before any write.
        return None;
    }
    if count == 0 {
        return Some(0);
    }
    let count = usize::try_from(count).ok()?;
    let pid = libc::pid_t::try_from(tid).ok()?;
    let mut iovs = vec![libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; count];
    let bytes = count.checked_mul(size_of::<libc::iovec>())?;
    let local = libc::iovec { iov_base: iovs.as_mut_ptr().cast(), iov_len: bytes };
    // An address in the other process: never dereferenced here.
    let remote = libc::iovec {
        iov_base: std::ptr::without_provenance_mut(usize::try_from(addr).ok()?),
        iov_len: bytes,
    };
    // SAFETY: `local` describes exactly the `bytes` bytes owned by `iovs`,
    // which is valid for writes and lives across the call; any bit pattern
    // is a valid `libc::iovec`. `remote` is only interpreted by the kernel
    // in the target's address space (a bad address yields an error or a
    // short read, never local memory corruption).
    let got = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if usize::try_from(got).ok()? != bytes {
        return None;
    }
    iovs.iter().try_fold(0u64, |acc, iov| acc.checked_add(u64::try_from(iov.iov_len).ok()?))
}

/// `/proc/<tid>/<leaf>` formatted on the stack (std's `File::open` also
/// converts short paths on the stack, so opening allocates nothing).
struct ProcPath {
    buf: [u8; 48],
    len: usize,
}

impl ProcPath {
    fn new(tid: u32, leaf: &str) -> Self {
        let mut buf = [0u8; 48];
        let mut rest = &mut buf[..];
        // Cannot fail for the short leaves used here; on failure the path is
        // left empty and opening it fails.
        let len = match write!(rest, "/proc/{tid}/{leaf}") {
            Ok(()) => 48 - rest.len(),
            Err(_) => 0,
        };
        ProcPath { buf, len }
    }

    fn open(&self) -> io::Result<File> {
        let bytes = self.buf.get(..self.len).unwrap_or_default();
        File::open(Path::new(OsStr::from_bytes(bytes)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn exit_signal_is_read_from_field_52_after_the_name() {
        let fields_after_name: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        let line = |name: &str, code: &str| {
            let mut fields = fields_after_name.clone();
            fields[52 - 3] = code.to_string();
            format!("1234 ({name}) {}\n", fields.join(" "))
        };
        assert_eq!(super::exit_signal_from_stat(line("cat", "9").as_bytes()), Some(9));
        assert_eq!(super::exit_signal_from_stat(line("a) b (c", "256").as_bytes()), Some(0));
        assert_eq!(super::exit_signal_from_stat(line("sh", "0").as_bytes()), Some(0));
        assert_eq!(super::exit_signal_from_stat(b"1234 (x) S 1 2"), None);
        assert!(!super::killed_by_signal(std::process::id()), "this test is alive");
    }

    use super::*;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    const DEADLINE: Duration = Duration::from_secs(5);

    fn gettid() -> u32 {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        u32::try_from(tid).expect("tid is positive")
    }

    /// Polls `probe` every millisecond until it returns `Some`, for at most
    /// `DEADLINE`.
    fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(value) = probe() {
                return value;
            }
            assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// A line's value from /proc/<tid>/status, read independently of the code
    /// under test.
    fn status_field(tid: u32, key: &str) -> Option<String> {
        let text = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
        text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map(|v| v.trim().to_owned())
    }

    fn status_mask(tid: u32, key: &str) -> Option<u64> {
        u64::from_str_radix(&status_field(tid, key)?, 16).ok()
    }

    fn sig_bit(sig: libc::c_int) -> u64 {
        1 << (sig - 1)
    }

    /// First token of /proc/<tid>/syscall as a number, if it is one.
    fn current_syscall(tid: u32) -> Option<libc::c_long> {
        let text = std::fs::read_to_string(format!("/proc/{tid}/syscall")).ok()?;
        text.split_whitespace().next()?.parse().ok()
    }

    // ---- caller_state --------------------------------------------------

    #[test]
    fn current_thread_is_waiting() {
        assert_eq!(caller_state(gettid()), Caller::Waiting);
        // Twice: the second call reuses the thread-local buffer.
        assert_eq!(caller_state(gettid()), Caller::Waiting);
    }

    #[test]
    fn nonexistent_tids_are_gone() {
        assert_eq!(caller_state(u32::MAX), Caller::Gone);
        assert_eq!(caller_state(0), Caller::Gone);
        let pid_max: u32 =
            std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
        assert_eq!(caller_state(pid_max + 1), Caller::Gone);
    }

    #[test]
    fn blocked_pending_signal_is_waiting() {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let helper = std::thread::spawn(move || {
            // SAFETY: plain signal-mask manipulation of this thread; SIGUSR1
            // stays blocked until the thread exits and is consumed with
            // sigtimedwait, so it is never delivered.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGUSR1);
                assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()), 0);
                assert_eq!(libc::pthread_kill(libc::pthread_self(), libc::SIGUSR1), 0);
                tid_tx.send(gettid()).unwrap();
                // Wait until the test thread has looked (or gone away).
                let _ = done_rx.recv();
                let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                libc::sigtimedwait(&set, std::ptr::null_mut(), &zero)
            }
        });
        let tid = tid_rx.recv().unwrap();
        // The signal really is pending for the thread, and blocked ...
        let pending = status_mask(tid, "SigPnd").unwrap();
        let blocked = status_mask(tid, "SigBlk").unwrap();
        assert_ne!(pending & sig_bit(libc::SIGUSR1), 0, "SigPnd {pending:x}");
        assert_ne!(blocked & sig_bit(libc::SIGUSR1), 0, "SigBlk {blocked:x}");
        // ... so it does not count.
        assert_eq!(caller_state(tid), Caller::Waiting);
        done_tx.send(()).unwrap();
        assert_eq!(helper.join().unwrap(), libc::SIGUSR1);
    }

    /// Kills and reaps the child however the test ends.
    struct ChildGuard(Child);

    impl Drop for ChildGuard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn kill(pid: u32, sig: libc::c_int) {
        // SAFETY: sending a signal to our own child process.
        let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({pid}, {sig}): {}", io::Error::last_os_error());
    }

    #[test]
    fn pending_signal_then_zombie_then_reaped() {
        // A shell blocked reading its stdin, with a SIGTERM handler (so the
        // test does not depend on an inherited SIG_IGN disposition: ignored
        // signals are discarded, never pending). While the process is
        // stopped, a SIGTERM stays pending: not blocked, not ignored.
        let mut child = ChildGuard(
            Command::new("sh")
                .args(["-c", "trap 'exit 0' TERM; read line"])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let pid = child.0.id();
        wait_for("the shell to catch SIGTERM", || {
            let caught = status_mask(pid, "SigCgt")?;
            (caught & sig_bit(libc::SIGTERM) != 0).then_some(())
        });
        assert_eq!(caller_state(pid), Caller::Waiting);

        kill(pid, libc::SIGSTOP);
        wait_for("the shell to stop", || status_field(pid, "State")?.starts_with('T').then_some(()));
        assert_eq!(caller_state(pid), Caller::Waiting);

        kill(pid, libc::SIGTERM);
        let shared = status_mask(pid, "ShdPnd").unwrap();
        assert_ne!(shared & sig_bit(libc::SIGTERM), 0, "ShdPnd {shared:x}");
        assert_eq!(caller_state(pid), Caller::Signalled);

        kill(pid, libc::SIGKILL);
        wait_for("the shell to become a zombie", || {
            status_field(pid, "State")?.starts_with('Z').then_some(())
        });
        assert_eq!(caller_state(pid), Caller::Gone);

        child.0.wait().unwrap();
        assert_eq!(caller_state(pid), Caller::Gone);
    }

    #[test]
    fn status_parsing() {
        let text = b"Name:\tx\nState:\tS (sleeping)\nTgid:\t42\nSigQ:\t0/1\n\
            SigPnd:\t0000000000000000\nShdPnd:\t0000000000004000\n\
            SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n\
            SigCgt:\t0000000000004000\n";
        let fields = parse_status(text);
        assert!(fields.complete());
        assert_eq!(fields.state, Some(b'S'));
        assert_eq!(fields.shd_pnd, Some(0x4000));
        assert_eq!(fields.classify(), Caller::Signalled);
        let task = fields.task();
        assert_eq!((task.process, task.process_signalled), (Some(42), true));

        // Pending but ignored / blocked.
        let ignored = StatusFields { sig_ign: Some(0x4000), ..fields };
        assert_eq!(ignored.classify(), Caller::Waiting);
        assert!(!ignored.task().process_signalled, "ignored by the whole process");
        let blocked = StatusFields { sig_blk: Some(0xffff_ffff_ffff_ffff), ..fields };
        assert_eq!(blocked.classify(), Caller::Waiting);
        assert!(blocked.task().process_signalled, "blocked by this thread, maybe not by others");
        let thread_pending = StatusFields { sig_pnd: Some(1 << 63), shd_pnd: Some(0), ..fields };
        assert_eq!(thread_pending.classify(), Caller::Signalled);
        assert!(!thread_pending.task().process_signalled, "pending for this thread only");

        // Zombie / dead win over pending signals.
        for state in [b'Z', b'X'] {
            let dead = StatusFields { state: Some(state), ..fields };
            assert_eq!(dead.classify(), Caller::Gone);
        }

        // The last line is only used once complete.
        let cut = &text[..text.len() - "SigCgt:\t0000000000004000\n".len() - 2];
        let fields = parse_status(cut);
        assert_eq!(fields.sig_ign, None);
        assert!(!fields.complete());
        assert_eq!(fields.classify(), Caller::Waiting);

        // Garbage, empty, no newline at all.
        assert_eq!(parse_status(b""), StatusFields::default());
        assert_eq!(parse_status(b"State:\tZ"), StatusFields::default());
        let odd = parse_status(b"\n:\n::::\nState:\nSigPnd:\tzz\nSigBlk:\t+1\nSigIgn\n\xff\xfe\n");
        assert_eq!(odd, StatusFields::default());
        assert_eq!(odd.classify(), Caller::Waiting);
        // Too many digits is rejected rather than truncated.
        assert_eq!(parse_hex(b"10000000000000000"), None);
        assert_eq!(parse_hex(b" ffffffffffffffff\t"), Some(u64::MAX));
        // First occurrence wins.
        assert_eq!(parse_status(b"State:\tS\nState:\tZ\n").state, Some(b'S'));
    }

    // ---- write_syscall_len ---------------------------------------------

    /// A helper thread blocked in a system call on one end of a pipe; the
    /// test owns the other end. Dropping it closes the test's end (which
    /// releases the helper: EOF for a reader, EPIPE for a writer, SIGPIPE
    /// being ignored in Rust programs), joins the helper, then closes the
    /// helper's end.
    struct Blocked {
        tid: u32,
        ours: Option<OwnedFd>,
        handle: Option<JoinHandle<isize>>,
        _theirs: OwnedFd,
    }

    impl Blocked {
        /// `helper_writes`: the helper gets the write end (else the read end).
        /// `call` receives the helper's fd and returns the syscall result.
        fn spawn(helper_writes: bool, call: impl FnOnce(RawFd) -> isize + Send + 'static) -> Self {
            let mut fds = [0; 2];
            // SAFETY: fds has room for the two descriptors.
            let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
            assert_eq!(rc, 0, "pipe2: {}", io::Error::last_os_error());
            // SAFETY: pipe2 just created these and nothing else owns them.
            let (read_end, write_end) =
                unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            // Smallest pipe buffer (one page), so the writes below block even
            // with 64 KiB pages.
            // SAFETY: fcntl on a descriptor we own.
            unsafe { libc::fcntl(write_end.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
            let (ours, theirs) = if helper_writes { (read_end, write_end) } else { (write_end, read_end) };
            let fd = theirs.as_raw_fd();
            let (tid_tx, tid_rx) = mpsc::channel();
            let handle = std::thread::spawn(move || {
                tid_tx.send(gettid()).unwrap();
                call(fd)
            });
            Blocked { tid: tid_rx.recv().unwrap(), ours: Some(ours), handle: Some(handle), _theirs: theirs }
        }

        fn our_fd(&self) -> RawFd {
            self.ours.as_ref().unwrap().as_raw_fd()
        }

        /// Waits until `write_syscall_len` reports something for the helper.
        fn wait_len(&self) -> u64 {
            wait_for("the helper to block in write", || write_syscall_len(self.tid))
        }

        /// Reads everything from our (read) end until `total` bytes came.
        fn drain(&self, total: usize) {
            let mut buf = vec![0u8; 65536];
            let mut got = 0;
            while got < total {
                // SAFETY: buf is valid for buf.len() bytes.
                let n = unsafe { libc::read(self.our_fd(), buf.as_mut_ptr().cast(), buf.len()) };
                assert!(n > 0, "drain: {n} {}", io::Error::last_os_error());
                got += n as usize;
            }
            assert_eq!(got, total);
        }

        fn join(mut self) -> isize {
            self.handle.take().unwrap().join().unwrap()
        }
    }

    impl Drop for Blocked {
        fn drop(&mut self) {
            self.ours = None;
            if let Some(handle) = self.handle.take() {
                let _ = handle.join();
            }
        }
    }

    #[test]
    fn blocked_write() {
        const LEN: usize = 300_000;
        let blocked = Blocked::spawn(true, |fd| {
            let data = vec![7u8; LEN];
            // SAFETY: data is valid for LEN bytes.
            unsafe { libc::write(fd, data.as_ptr().cast(), LEN) }
        });
        assert_eq!(blocked.wait_len(), LEN as u64);
        // Still the same after part of the data went through.
        blocked.drain(4096);
        assert_eq!(blocked.wait_len(), LEN as u64);
        blocked.drain(LEN - 4096);
        assert_eq!(blocked.join(), LEN as isize);
    }

    #[test]
    fn blocked_writev() {
        const SIZES: [usize; 3] = [100_000, 100_000, 123];
        let blocked = Blocked::spawn(true, |fd| {
            let bufs: Vec<Vec<u8>> = SIZES.iter().map(|&n| vec![1u8; n]).collect();
            let iovs: Vec<libc::iovec> = bufs
                .iter()
                .map(|b| libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() })
                .collect();
            // SAFETY: each iovec describes a live buffer of its length.
            unsafe { libc::writev(fd, iovs.as_ptr(), iovs.len() as libc::c_int) }
        });
        assert_eq!(blocked.wait_len(), 200_123);
        blocked.drain(200_123);
        assert_eq!(blocked.join(), 200_123);
    }

    #[test]
    fn blocked_read_is_none() {
        let blocked = Blocked::spawn(false, |fd| {
            let mut byte = 0u8;
            // SAFETY: byte is valid for 1 byte.
            unsafe { libc::read(fd, (&raw mut byte).cast(), 1) }
        });
        wait_for("the helper to block in read", || {
            (current_syscall(blocked.tid)? == libc::SYS_read).then_some(())
        });
        assert_eq!(write_syscall_len(blocked.tid), None);
        // SAFETY: writing one byte from a valid buffer to our end.
        let n = unsafe { libc::write(blocked.our_fd(), b"x".as_ptr().cast(), 1) };
        assert_eq!(n, 1);
        assert_eq!(blocked.join(), 1);
    }

    #[test]
    fn running_self_or_missing_thread_is_none() {
        // A thread reading its own file sees the read(2) doing it.
        let me = gettid();
        assert_eq!(current_syscall(me), Some(libc::SYS_read));
        assert_eq!(write_syscall_len(me), None);

        // A thread spinning in user space shows "running".
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tid_tx, tid_rx) = mpsc::channel();
        let spinner = std::thread::spawn({
            let stop = stop.clone();
            move || {
                tid_tx.send(gettid()).unwrap();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            }
        });
        struct Stop(std::sync::Arc<std::sync::atomic::AtomicBool>);
        impl Drop for Stop {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let stop = Stop(stop);
        let tid = tid_rx.recv().unwrap();
        wait_for("the spinner to show as running", || {
            let text = std::fs::read_to_string(format!("/proc/{tid}/syscall")).ok()?;
            (text == "running\n").then_some(())
        });
        assert_eq!(write_syscall_len(tid), None);
        drop(stop);
        spinner.join().unwrap();

        assert_eq!(write_syscall_len(u32::MAX), None);
        assert_eq!(write_syscall_len(0), None);
    }

    #[test]
    fn syscall_line_parsing() {
        let me = gettid();
        let line = |nr: libc::c_long, a2: u64, a3: u64| {
            format!("{nr} 0x3 0x{a2:x} 0x{a3:x} 0x0 0x0 0x0 0x7ffc1000 0x7f001000\n")
        };
        assert_eq!(len_from_syscall_line(me, line(nr::WRITE, 0x1000, 300_000).as_bytes()), Some(300_000));
        assert_eq!(len_from_syscall_line(me, line(nr::PWRITE64, 0x1000, 5).as_bytes()), Some(5));
        assert_eq!(len_from_syscall_line(me, line(nr::PWRITE64, 0, u64::MAX).as_bytes()), Some(u64::MAX));
        assert_eq!(len_from_syscall_line(me, line(libc::SYS_read, 0x1000, 5).as_bytes()), None);
        assert_eq!(len_from_syscall_line(me, line(libc::SYS_pread64, 0x1000, 5).as_bytes()), None);

        // Vectored calls read the iovec array from the target (here: us).
        let iovs = [
            libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 10 },
            libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 20 },
            libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 30 },
        ];
        let addr = iovs.as_ptr() as u64;
        for nr in [nr::WRITEV, nr::PWRITEV, nr::PWRITEV2] {
            assert_eq!(len_from_syscall_line(me, line(nr, addr, 3).as_bytes()), Some(60));
            assert_eq!(len_from_syscall_line(me, line(nr, addr, 2).as_bytes()), Some(30));
            assert_eq!(len_from_syscall_line(me, line(nr, addr, 0).as_bytes()), Some(0));
            // Unreadable address, too many iovecs.
            assert_eq!(len_from_syscall_line(me, line(nr, 0, 3).as_bytes()), None);
            assert_eq!(len_from_syscall_line(me, line(nr, addr, 1025).as_bytes()), None);
        }
        // Overflowing sum.
        let huge = [
            libc::iovec { iov_base: std::ptr::null_mut(), iov_len: usize::MAX },
            libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 1 },
        ];
        assert_eq!(remote_iovec_total(me, huge.as_ptr() as u64, 1), Some(u64::MAX));
        assert_eq!(remote_iovec_total(me, huge.as_ptr() as u64, 2), None);
        // Unmapped address.
        assert_eq!(remote_iovec_total(me, 16, 1), None);
        // No such process.
        assert_eq!(remote_iovec_total(u32::MAX, addr, 3), None);

        // Not in a syscall, running, malformed.
        for text in [
            &b"running\n"[..],
            b"-1 0x7ffc1000 0x7f001000\n",
            b"",
            b"\n",
            b"1",
            b"1 0x3 0x1000\n",
            b"1 3 4096 5 0 0 0 0 0\n",
            b"1 0x3 0x1000 0xzz 0x0 0x0 0x0 0x0 0x0\n",
            b"1 0x3 0x1000 0x0x5 0x0 0x0 0x0 0x0 0x0\n",
            b"1 0x3 0x1000 0x 0x0 0x0 0x0 0x0 0x0\n",
            b"1 0x3 0x1000 0x10000000000000000 0x0 0x0 0x0 0x0 0x0\n",
            b"99999999999999999999 0x3 0x1000 0x5\n",
            b"\xff\xfe 0x3\n",
        ] {
            assert_eq!(len_from_syscall_line(me, text), None, "{:?}", String::from_utf8_lossy(text));
        }
        // Without the trailing fields, still understood.
        assert_eq!(len_from_syscall_line(me, format!("{} 0x3 0x1000 0x5", nr::WRITE).as_bytes()), Some(5));
    }
}
