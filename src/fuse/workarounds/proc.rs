//! What `/proc` says about a thread, for the workarounds that ask: the state of a thread
//! blocked on us (gone, signalled, waiting) and its process, read from
//! `/proc/<tid>/status`; and the small readers the others use (`ProcPath`, `read_small`,
//! `parse_hex`, `parse_dec`).
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
compile_error!("fuse::workarounds supports only 64-bit Linux on x86_64 and aarch64");

/// Initial size of the per-thread buffer `thread_state` reads into; a
/// typical `status` file is 1.5 KiB and the fields we need come first.
pub(super) const STATUS_BUF_INITIAL: usize = 4096;

/// Never grow the status buffer past this (a status file with a huge
/// `Groups:` line is legal but bounded; this only guards against nonsense).
const STATUS_BUF_MAX: usize = 1 << 20;

/// What a thread blocked on the daemon is doing, as seen in
/// `/proc/<tid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ThreadState {
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
pub(super) struct Task {
    pub state: ThreadState,
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
pub(super) fn thread_state(tid: u32) -> ThreadState {
    task(tid).state
}

/// Reads thread `tid`'s status: how it stands (see [`thread_state`]), its process, and
/// whether its process has a signal pending.
///
/// Cheap enough to call for many blocked readers every few tens of
/// milliseconds: no allocation after the first call on a thread (the read
/// buffer is per-thread and reused), normally a single `read(2)`, and
/// parsing stops at the `SigIgn:` line.
pub(super) fn task(tid: u32) -> Task {
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
    let state = if task_vanished(err) {
        ThreadState::Gone
    } else {
        log::debug!("procfs: reading /proc/{tid}/status: {err}");
        ThreadState::Waiting
    };
    Task { state, process: None, process_signalled: false }
}

/// Whether an error from opening or reading a `/proc/<tid>/...` file means
/// the task is not there (any more).
fn task_vanished(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOENT | libc::ESRCH))
}

/// The lines of `/proc/<tid>/status` that `thread_state` needs. Each is
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

    fn classify(&self) -> ThreadState {
        if matches!(self.state, Some(b'Z' | b'X')) {
            return ThreadState::Gone;
        }
        match (self.sig_pnd, self.shd_pnd, self.sig_blk, self.sig_ign) {
            (Some(pnd), Some(shd), Some(blk), Some(ign)) if (pnd | shd) & !blk & !ign != 0 => {
                ThreadState::Signalled
            }
            _ => ThreadState::Waiting,
        }
    }

    fn task(&self) -> Task {
        let process_signalled = match (self.shd_pnd, self.sig_ign) {
            (Some(shd), Some(ign)) => shd & !ign != 0,
            _ => false,
        };
        Task { state: self.classify(), process: self.tgid, process_signalled }
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
pub(super) fn parse_hex(text: &[u8]) -> Option<u64> {
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
pub(super) fn parse_dec(text: &[u8]) -> Option<libc::c_long> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Reads a small `/proc` file into `buf` until EOF or `buf` is full.
pub(super) fn read_small(path: &ProcPath, buf: &mut [u8]) -> io::Result<usize> {
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

/// `/proc/<tid>/<leaf>` formatted on the stack (std's `File::open` also
/// converts short paths on the stack, so opening allocates nothing).
pub(super) struct ProcPath {
    buf: [u8; 48],
    len: usize,
}

impl ProcPath {
    pub(super) fn new(tid: u32, leaf: &str) -> Self {
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
    use super::super::testing::{gettid, wait_for};
    use super::*;
    use std::process::{Child, Command, Stdio};
    use std::sync::mpsc;

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

    // ---- thread_state --------------------------------------------------

    #[test]
    fn current_thread_is_waiting() {
        assert_eq!(thread_state(gettid()), ThreadState::Waiting);
        // Twice: the second call reuses the thread-local buffer.
        assert_eq!(thread_state(gettid()), ThreadState::Waiting);
    }

    #[test]
    fn nonexistent_tids_are_gone() {
        assert_eq!(thread_state(u32::MAX), ThreadState::Gone);
        assert_eq!(thread_state(0), ThreadState::Gone);
        let pid_max: u32 =
            std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
        assert_eq!(thread_state(pid_max + 1), ThreadState::Gone);
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
        assert_eq!(thread_state(tid), ThreadState::Waiting);
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
        assert_eq!(thread_state(pid), ThreadState::Waiting);

        kill(pid, libc::SIGSTOP);
        wait_for("the shell to stop", || status_field(pid, "State")?.starts_with('T').then_some(()));
        assert_eq!(thread_state(pid), ThreadState::Waiting);

        kill(pid, libc::SIGTERM);
        let shared = status_mask(pid, "ShdPnd").unwrap();
        assert_ne!(shared & sig_bit(libc::SIGTERM), 0, "ShdPnd {shared:x}");
        assert_eq!(thread_state(pid), ThreadState::Signalled);

        kill(pid, libc::SIGKILL);
        wait_for("the shell to become a zombie", || {
            status_field(pid, "State")?.starts_with('Z').then_some(())
        });
        assert_eq!(thread_state(pid), ThreadState::Gone);

        child.0.wait().unwrap();
        assert_eq!(thread_state(pid), ThreadState::Gone);
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
        assert_eq!(fields.classify(), ThreadState::Signalled);
        let task = fields.task();
        assert_eq!((task.process, task.process_signalled), (Some(42), true));

        // Pending but ignored / blocked.
        let ignored = StatusFields { sig_ign: Some(0x4000), ..fields };
        assert_eq!(ignored.classify(), ThreadState::Waiting);
        assert!(!ignored.task().process_signalled, "ignored by the whole process");
        let blocked = StatusFields { sig_blk: Some(0xffff_ffff_ffff_ffff), ..fields };
        assert_eq!(blocked.classify(), ThreadState::Waiting);
        assert!(blocked.task().process_signalled, "blocked by this thread, maybe not by others");
        let thread_pending = StatusFields { sig_pnd: Some(1 << 63), shd_pnd: Some(0), ..fields };
        assert_eq!(thread_pending.classify(), ThreadState::Signalled);
        assert!(!thread_pending.task().process_signalled, "pending for this thread only");

        // Zombie / dead win over pending signals.
        for state in [b'Z', b'X'] {
            let dead = StatusFields { state: Some(state), ..fields };
            assert_eq!(dead.classify(), ThreadState::Gone);
        }

        // The last line is only used once complete.
        let cut = &text[..text.len() - "SigCgt:\t0000000000004000\n".len() - 2];
        let fields = parse_status(cut);
        assert_eq!(fields.sig_ign, None);
        assert!(!fields.complete());
        assert_eq!(fields.classify(), ThreadState::Waiting);

        // Garbage, empty, no newline at all.
        assert_eq!(parse_status(b""), StatusFields::default());
        assert_eq!(parse_status(b"State:\tZ"), StatusFields::default());
        let odd = parse_status(b"\n:\n::::\nState:\nSigPnd:\tzz\nSigBlk:\t+1\nSigIgn\n\xff\xfe\n");
        assert_eq!(odd, StatusFields::default());
        assert_eq!(odd.classify(), ThreadState::Waiting);
        // Too many digits is rejected rather than truncated.
        assert_eq!(parse_hex(b"10000000000000000"), None);
        assert_eq!(parse_hex(b" ffffffffffffffff\t"), Some(u64::MAX));
        // First occurrence wins.
        assert_eq!(parse_status(b"State:\tS\nState:\tZ\n").state, Some(b'S'));
    }
}
