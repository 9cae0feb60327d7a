//! How long the write(2) is that a WRITE request starts. The kernel cuts a write(2) into
//! requests of at most `max_pages` pages and says nothing of the whole: a request shorter
//! than the cap is whole, a longer one is measured from the caller's blocked system call in
//! `/proc/<tid>/syscall` (and, for the vectored calls, its iovec array, copied with
//! `process_vm_readv`). The same line tells whether a later request still belongs to that
//! write(2): it stays the same while the caller stays in that system call.

use super::proc::{ProcPath, ThreadState, parse_dec, parse_hex, read_small, thread_state};

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

/// Decides the size of the write(2) a WRITE request starts.
pub struct WriteSize {
    /// A WRITE request shorter than this cannot have been cut short by the kernel's limit of
    /// pages per request, so it is a whole write(2) without asking /proc.
    whole_below: usize,
}

impl WriteSize {
    pub fn new() -> WriteSize {
        WriteSize { whole_below: whole_write_threshold() }
    }

    /// How many bytes the write(2) that a WRITE request of `len` bytes from thread `tid`
    /// starts has; see `docs/ARCHITECTURE.md`. None: it may be the start of a longer write(2)
    /// whose caller is being killed (its system call can no longer be read), so nothing of it
    /// is published.
    pub fn of_call(&self, len: usize, tid: u32) -> Option<u64> {
        if len < self.whole_below {
            return Some(len as u64);
        }
        match write_syscall_len(tid) {
            Some(total) => Some(total),
            None if thread_state(tid) != ThreadState::Waiting => None,
            // Not a write system call (sendfile, splice, io_uring, a 32-bit caller): each
            // request is a message.
            None => Some(len as u64),
        }
    }
}

/// An identity of the system call thread `tid` is in now, for the engine's `call_id`: a
/// hash of its `/proc/<tid>/syscall` line (number, arguments, stack and instruction
/// pointers), which stays the same while the thread stays in that call and changes with
/// its next one unless that repeats all of it. None if the thread is running, in no system
/// call, or gone.
pub fn call_id(tid: u32) -> Option<u64> {
    let mut buf = [0u8; 256];
    let len = read_small(&ProcPath::new(tid, "syscall"), &mut buf).ok()?;
    id_of_syscall_line(buf.get(..len)?)
}

fn id_of_syscall_line(data: &[u8]) -> Option<u64> {
    parse_syscall_line(data)?;
    let mut hasher = std::hash::DefaultHasher::new();
    std::hash::Hash::hash(data, &mut hasher);
    Some(std::hash::Hasher::finish(&hasher))
}

/// From the kernel's cap on pages per request (fuser asks for more than any kernel allows):
/// a request the cap cut short spans that many pages, each holding at least one byte of it
/// (each iovec of a writev takes pages of its own), so one of fewer bytes carries all that
/// was left of its write(2).
fn whole_write_threshold() -> usize {
    std::fs::read_to_string("/proc/sys/fs/fuse/max_pages_limit")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(32)
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
fn write_syscall_len(tid: u32) -> Option<u64> {
    let mut buf = [0u8; 256];
    let len = read_small(&ProcPath::new(tid, "syscall"), &mut buf).ok()?;
    len_from_syscall_line(tid, buf.get(..len)?)
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

#[cfg(test)]
mod tests {
    use super::super::testing::{gettid, wait_for};
    use super::*;
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    use std::sync::mpsc;
    use std::thread::JoinHandle;

    /// First token of /proc/<tid>/syscall as a number, if it is one.
    fn current_syscall(tid: u32) -> Option<libc::c_long> {
        let text = std::fs::read_to_string(format!("/proc/{tid}/syscall")).ok()?;
        text.split_whitespace().next()?.parse().ok()
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
    fn a_blocked_write_keeps_its_call_id() {
        let blocked = Blocked::spawn(true, |fd| {
            let data = vec![7u8; 300_000];
            // SAFETY: data is valid for its length.
            unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) }
        });
        blocked.wait_len();
        let id = wait_for("the helper's call id", || call_id(blocked.tid));
        blocked.drain(4096);
        let again = wait_for("the helper to block again", || call_id(blocked.tid));
        assert_eq!(again, id, "the same write(2) after part of it went through");
        blocked.drain(300_000 - 4096);
        assert_eq!(blocked.join(), 300_000);
        let line =
            |count: u64| format!("{} 0x3 0x1000 0x{count:x} 0x0 0x0 0x0 0x7ffc1000 0x7f001000\n", nr::WRITE);
        assert_ne!(id_of_syscall_line(line(2000).as_bytes()), id_of_syscall_line(line(1000).as_bytes()));
        assert_eq!(id_of_syscall_line(b"running\n"), None);
        assert_eq!(id_of_syscall_line(b"-1 0x7ffc1000 0x7f001000\n"), None);
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
