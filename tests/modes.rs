//! Blocking writes, whole-file messages and static reads, through real processes on a real
//! mount (docs/semantics.md, "Blocking writes", "Whole-file messages", `data static`).
//!
//! `write one`: a shell writer stays blocked in write(2) with no reader, its message already
//! committed; the next reader to open (replay off) starts with it and releases the writer; a
//! reader that is open but has not read keeps it blocked until it reads.
//! `write all`: the writer returns only once every reader open at the commit received the
//! message (fast, then slow); a reader opened later does not count; one that closes unread
//! stops counting. Signals: Ctrl-C releases a blocked writer within 250 ms and kill -9 at
//! once, the message staying delivered exactly once; a Python writer whose SIGINT handler
//! returns gets the full length from write(2), not EINTR (so no duplicate on retry). Under
//! `write one` with no reader, a writer released by a handled signal (a shell's trap, a
//! Python writer's SIGCHLD from its child) or killed by SIGKILL leaves its message to the
//! first reader that opens.
//! `O_NONBLOCK` under `write one` with no reader: EAGAIN, nothing committed; with a reader
//! open (not reading): returns at once.
//! `frame close`: `cp` of 5 MiB is one message at three readers; past max_message `cp` fails
//! "File too large" and nothing is published; nothing is published before the close, a
//! normal close publishes the whole, a writer killed by SIGKILL publishes nothing; a shell
//! group redirection is one message; a child exec'd while this process holds stream
//! descriptors (closed at exec, O_CLOEXEC) does not hang.
//! `data static`: grep -c, wc -l, tail -n 20, head -n 3, cp, cat, stat size and a Python
//! seek + read work on a group's history and end at EOF instead of blocking; `wc -l` and
//! `cat` see a consistent, growing history while a writer appends; a message-mode group next
//! to it still blocks and delivers.
//! ctl prints `write`/`frame` after `depth`, shows what was set, refuses bad values, and new
//! subgroups inherit the modes while existing ones keep theirs.

mod common;

use common::{
    Mount, Proc, TempDir, blocked_in_syscall, proc_state, run_ok, run_sh, sh, syscall_and_fd, wait_until,
};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Liveness deadline for things that should happen promptly (not a contract bound).
const T: Duration = Duration::from_secs(10);

/// The contract's bound for Ctrl-C to release a blocked process.
const SIGNAL_BOUND: Duration = Duration::from_millis(250);

/// How long a writer that must stay blocked is watched (several of the signal watcher's
/// ~40 ms scans): a bounded wait that checks an absence.
const STILL_BLOCKED: Duration = Duration::from_millis(300);

const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Writes `commands` to the ctl of `group` (a path relative to the mount) in one write(2).
fn set_ctl(mount: &Mount, group: &str, commands: &str) {
    let ctl = mount.join(group).join("ctl");
    fs::write(&ctl, commands).unwrap_or_else(|e| panic!("write {commands:?} to {}: {e}", ctl.display()));
}

fn ctl_text(mount: &Mount, group: &str) -> String {
    fs::read_to_string(mount.join(group).join("ctl")).expect("read ctl")
}

/// A `# NAME N` status value of a group's ctl.
fn ctl_status(mount: &Mount, group: &str, name: &str) -> u64 {
    let text = ctl_text(mount, group);
    let prefix = format!("# {name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {prefix:?} line in ctl: {text:?}"))
        .trim()
        .parse()
        .expect("ctl status value")
}

fn wait_ctl_status(mount: &Mount, group: &str, name: &str, value: u64) {
    wait_until(&format!("ctl of {group:?} to show '# {name} {value}'"), T, || {
        ctl_status(mount, group, name) == value
    });
}

/// Whether `pid` is asleep in write(2) on a descriptor of `path`.
fn blocked_writing(pid: u32, path: &Path) -> bool {
    blocked_in_syscall(pid, libc::SYS_write)
        && syscall_and_fd(pid).is_some_and(|(_, fd)| {
            fs::read_link(format!("/proc/{pid}/fd/{fd}")).is_ok_and(|target| target == path)
        })
}

fn out_str(p: &Proc) -> String {
    String::from_utf8_lossy(&p.output()).into_owned()
}

fn err_str(p: &Proc) -> String {
    String::from_utf8_lossy(&p.stderr_output()).into_owned()
}

/// Waits until `p` is blocked in write(2) on `path`; panics with its output should it exit
/// first or take over [`T`].
fn wait_blocked_writing(p: &mut Proc, path: &Path) {
    let start = Instant::now();
    while !blocked_writing(p.pid(), path) {
        let exited = p.has_exited();
        if exited || start.elapsed() > T {
            panic!(
                "pid {} {} instead of blocking in write(2) on {}\nstdout: {:?}\nstderr: {:?}",
                p.pid(),
                if exited { "exited" } else { "timed out" },
                path.display(),
                out_str(p),
                err_str(p)
            );
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Checks for [`STILL_BLOCKED`] that `p` stays blocked in write(2) on `path` and prints
/// nothing.
fn assert_stays_blocked(p: &mut Proc, path: &Path, why: &str) {
    let start = Instant::now();
    while start.elapsed() < STILL_BLOCKED {
        assert!(!p.has_exited(), "writer exited ({why}); stdout {:?} stderr {:?}", out_str(p), err_str(p));
        assert!(
            blocked_writing(p.pid(), path),
            "writer no longer blocked in write ({why}): state {:?}, syscall {:?}",
            proc_state(p.pid()),
            syscall_and_fd(p.pid())
        );
        assert!(p.output().is_empty(), "writer printed {:?} ({why})", out_str(p));
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits up to `timeout` for `p` to exit; panics with its output otherwise.
fn finish(p: &mut Proc, timeout: Duration, what: &str) -> ExitStatus {
    match p.wait_exit(timeout) {
        Some(status) => status,
        None => panic!(
            "{what} (pid {}) did not exit within {timeout:?} (state {:?}, syscall {:?})\nstdout: {:?}\nstderr: {:?}",
            p.pid(),
            proc_state(p.pid()),
            syscall_and_fd(p.pid()),
            out_str(p),
            err_str(p),
        ),
    }
}

/// Waits for `p` to exit successfully and returns its stdout.
fn finish_ok(p: &mut Proc, what: &str) -> String {
    let status = finish(p, T, what);
    assert!(
        status.success(),
        "{what} failed: {status:?}\nstdout: {:?}\nstderr: {:?}",
        out_str(p),
        err_str(p)
    );
    out_str(p)
}

/// Sends `sig` to `p` and returns how long it took until it was reaped.
fn signal_and_time_exit(p: &mut Proc, sig: libc::c_int) -> (Duration, ExitStatus) {
    let start = Instant::now();
    p.signal(sig);
    loop {
        if p.has_exited() {
            let elapsed = start.elapsed();
            return (elapsed, finish(p, T, "signalled writer"));
        }
        if start.elapsed() > T {
            panic!("pid {} still there {T:?} after signal {sig} (state {:?})", p.pid(), p.state());
        }
        thread::sleep(Duration::from_millis(1));
    }
}

/// Spawns `python3 -c SCRIPT ARGS...` with stdin piped.
fn python(script: &str, args: &[&str]) -> Proc {
    Proc::spawn_piped_stdin(Command::new("python3").arg("-c").arg(script).args(args))
}

fn open_nonblocking(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} O_RDONLY|O_NONBLOCK: {e}", path.display()))
}

fn open_blocking(path: &Path) -> File {
    File::open(path).unwrap_or_else(|e| panic!("open {} O_RDONLY: {e}", path.display()))
}

/// One read(2) with a buffer of `size` bytes.
fn read_once(file: &mut File, size: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size];
    let n = file.read(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// One read(2) on a non-blocking reader that must return a message now.
fn read_now(file: &mut File) -> Vec<u8> {
    read_once(file, 64 * 1024).unwrap_or_else(|e| panic!("read on a reader that should have data: {e}"))
}

/// A non-blocking reader has nothing to read.
fn assert_empty(file: &mut File, what: &str) {
    match read_once(file, 64 * 1024) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        other => panic!(
            "{what}: expected EAGAIN, got {:?}",
            other.map(|m| String::from_utf8_lossy(&m).into_owned())
        ),
    }
}

/// Starts one blocking read(2) of `size` bytes on another thread.
fn start_read(file: File, size: usize) -> mpsc::Receiver<(File, io::Result<Vec<u8>>)> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut file = file;
        let result = read_once(&mut file, size);
        let _ = tx.send((file, result));
    });
    rx
}

/// The result of a read started by [`start_read`], which must come within [`T`].
fn join_read(rx: mpsc::Receiver<(File, io::Result<Vec<u8>>)>, what: &str) -> (File, Vec<u8>) {
    match rx.recv_timeout(T) {
        Ok((file, Ok(data))) => (file, data),
        Ok((_, Err(e))) => panic!("{what}: read failed: {e}"),
        Err(_) => panic!("{what}: read did not return within {T:?}"),
    }
}

/// One blocking read(2) of a message that must arrive within [`T`].
fn read_blocking(file: File, what: &str) -> (File, Vec<u8>) {
    join_read(start_read(file, 64 * 1024), what)
}

/// `len` pseudo-random bytes depending on `seed`.
fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// "line 1\n" ... "line N\n".
fn numbered_lines(range: std::ops::RangeInclusive<u32>) -> String {
    range.map(|i| format!("line {i}\n")).collect()
}

// ---------------------------------------------------------------------------
// write one
// ---------------------------------------------------------------------------

#[test]
fn write_one_blocks_until_a_reader_receives_the_message() {
    let mount = Mount::new();
    let s = mount.join("s");
    run_ok("echo 'write one' > ctl", &mount.path);

    // No reader: the writer (dash's builtin echo, so the shell itself) stays in write(2),
    // with its message already committed.
    let mut writer = sh("echo hi >> s; echo WROTE", &mount.path);
    wait_blocked_writing(&mut writer, &s);
    wait_ctl_status(&mount, ".", "messages", 1);
    assert_stays_blocked(&mut writer, &s, "no reader is open");

    // The next reader starts with the awaited message although replay is off, and its
    // arrival releases the writer.
    let reader = Proc::spawn(Command::new("cat").arg(&s));
    reader.wait_output_contains(b"hi\n", T);
    assert_eq!(finish_ok(&mut writer, "writer"), "WROTE\n");
    // Received once, and nothing else.
    wait_until("the reader to block in read again", T, || blocked_in_syscall(reader.pid(), libc::SYS_read));
    assert_eq!(out_str(&reader), "hi\n");

    // A reader open but not reading keeps the next writer blocked until it reads.
    let mut idle = open_nonblocking(&s);
    // `cat`, parked in read, receives it at once: one reader has it, so the writer returns
    // although the other has not read.
    let mut writer = sh("echo second >> s; echo WROTE2", &mount.path);
    reader.wait_output_contains(b"second\n", T);
    assert_eq!(finish_ok(&mut writer, "second writer"), "WROTE2\n");
    assert_eq!(read_now(&mut idle), b"second\n");

    // Without the cat, the idle reader alone decides.
    drop(reader);
    wait_ctl_status(&mount, ".", "readers", 1);
    let mut writer = sh("echo third >> s; echo WROTE3", &mount.path);
    wait_blocked_writing(&mut writer, &s);
    assert_stays_blocked(&mut writer, &s, "the only reader has not read");
    assert_eq!(read_now(&mut idle), b"third\n");
    assert_eq!(finish_ok(&mut writer, "third writer"), "WROTE3\n");
    assert_empty(&mut idle, "idle reader after third");
}

#[test]
fn nonblocking_write_one_without_reader_is_refused() {
    let mount = Mount::new();
    let s = mount.join("s");
    set_ctl(&mount, ".", "replay all\nwrite one\n");
    fs::File::create(&s).expect("create s");

    let script = r#"
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
try:
    n = os.write(fd, b"hello")
    print("wrote", n, flush=True)
except BlockingIOError:
    print("EAGAIN", flush=True)
"#;
    let path = s.to_str().unwrap();
    let mut nobody = python(script, &[path]);
    assert_eq!(finish_ok(&mut nobody, "O_NONBLOCK writer with no reader"), "EAGAIN\n");
    // Nothing was committed: a later reader (replay all) sees nothing.
    assert_eq!(ctl_status(&mount, ".", "messages"), 0);
    let mut reader = open_nonblocking(&s);
    assert_empty(&mut reader, "replay-all reader after the refused write");

    // With a reader open (that does not read), an O_NONBLOCK write commits and returns at
    // once.
    let mut someone = python(script, &[path]);
    assert_eq!(finish_ok(&mut someone, "O_NONBLOCK writer with a reader"), "wrote 5\n");
    assert_eq!(read_now(&mut reader), b"hello");
    assert_empty(&mut reader, "reader after hello");
}

// ---------------------------------------------------------------------------
// write all
// ---------------------------------------------------------------------------

#[test]
fn write_all_waits_for_every_reader_open_at_the_commit() {
    let mount = Mount::new();
    let s = mount.join("s");
    set_ctl(&mount, ".", "write all\n");
    fs::File::create(&s).expect("create s");

    let fast = open_blocking(&s);
    let mut slow = open_nonblocking(&s);
    let mut writer = sh("echo m1 >> s; echo WROTE1", &mount.path);
    wait_blocked_writing(&mut writer, &s);
    let (fast, got) = read_blocking(fast, "fast reader, m1");
    assert_eq!(got, b"m1\n");
    // A reader opened after the commit does not count (and, replay off, does not see it).
    let mut late = open_nonblocking(&s);
    assert_empty(&mut late, "reader opened after m1's commit");
    assert_stays_blocked(&mut writer, &s, "the slow reader has not read m1");
    assert_eq!(read_now(&mut slow), b"m1\n");
    assert_eq!(finish_ok(&mut writer, "writer of m1"), "WROTE1\n");

    // Now three readers were open at the commit; the one that closes unread stops counting.
    let mut writer = sh("echo m2 >> s; echo WROTE2", &mount.path);
    wait_blocked_writing(&mut writer, &s);
    let (_fast, got) = read_blocking(fast, "fast reader, m2");
    assert_eq!(got, b"m2\n");
    assert_eq!(read_now(&mut late), b"m2\n");
    assert_stays_blocked(&mut writer, &s, "the slow reader has not read m2");
    drop(slow);
    assert_eq!(finish_ok(&mut writer, "writer of m2"), "WROTE2\n");
    assert_empty(&mut late, "late reader after m2");
}

#[test]
fn blocked_writer_released_by_signals_keeps_its_message_committed() {
    let mount = Mount::new();
    let s = mount.join("s");
    set_ctl(&mount, ".", "write all\n");
    fs::File::create(&s).expect("create s");
    let mut slow = open_nonblocking(&s);

    // Ctrl-C: a shell blocked in its builtin echo's write(2), spawned directly so SIGINT
    // has its default action.
    let mut writer = sh("echo interrupted >> s; echo WROTE", &mount.path);
    wait_blocked_writing(&mut writer, &s);
    wait_ctl_status(&mount, ".", "messages", 1); // committed before the signal
    let (elapsed, status) = signal_and_time_exit(&mut writer, libc::SIGINT);
    assert_eq!(
        status.signal(),
        Some(libc::SIGINT),
        "writer status {status:?}, stderr {:?}",
        err_str(&writer)
    );
    assert!(
        elapsed <= SIGNAL_BOUND,
        "Ctrl-C took {elapsed:?} to end a blocked writer (bound {SIGNAL_BOUND:?})"
    );
    assert!(!writer.output_contains(b"WROTE"), "the writer went on after Ctrl-C");

    // kill -9 ends a blocked writer too.
    let mut writer = sh("echo killed >> s; echo WROTE", &mount.path);
    wait_blocked_writing(&mut writer, &s);
    wait_ctl_status(&mount, ".", "messages", 2);
    let (_, status) = signal_and_time_exit(&mut writer, libc::SIGKILL);
    assert_eq!(status.signal(), Some(libc::SIGKILL));

    // Both messages stay committed: the slow reader gets each exactly once.
    assert_eq!(read_now(&mut slow), b"interrupted\n");
    assert_eq!(read_now(&mut slow), b"killed\n");
    assert_empty(&mut slow, "slow reader after the two messages");

    // A handled SIGINT: the interrupted write(2) reports the full length (it was
    // committed), so PEP 475 does not retry it and nothing is duplicated.
    let script = r#"
import os, signal, sys, time
got = []
signal.signal(signal.SIGINT, lambda sig, frame: got.append(sig))
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
n = os.write(fd, b"payload-123")
deadline = time.monotonic() + 5
while not got and time.monotonic() < deadline:
    time.sleep(0.01)
print("wrote", n, "signals", len(got), flush=True)
"#;
    let mut py = python(script, &[s.to_str().unwrap()]);
    wait_blocked_writing(&mut py, &s);
    wait_ctl_status(&mount, ".", "messages", 1); // the two above were read and dropped
    py.signal(libc::SIGINT);
    assert_eq!(finish_ok(&mut py, "python writer"), "wrote 11 signals 1\n");
    assert_eq!(read_now(&mut slow), b"payload-123");
    assert_empty(&mut slow, "slow reader after payload-123");
}

#[test]
fn write_one_writer_released_by_a_signal_leaves_its_message_to_the_next_reader() {
    let mount = Mount::new();
    let s = mount.join("s");
    set_ctl(&mount, ".", "write one\n");
    fs::File::create(&s).expect("create s");
    // The first reader to open after the writer returned gets exactly its message.
    let first_reader_gets = |message: &[u8], what: &str| {
        let mut reader = open_nonblocking(&s);
        assert_eq!(read_now(&mut reader), message, "{what}");
        assert_empty(&mut reader, what);
        drop(reader);
        wait_ctl_status(&mount, ".", "readers", 0);
    };

    // A shell that traps SIGUSR1: its write(2) reports success, then the trap runs.
    let mut shell = sh("trap 'echo TRAPPED' USR1; echo from-shell >> s; echo WROTE", &mount.path);
    wait_blocked_writing(&mut shell, &s);
    wait_ctl_status(&mount, ".", "messages", 1); // committed before the signal
    shell.signal(libc::SIGUSR1);
    assert_eq!(finish_ok(&mut shell, "trapping shell"), "TRAPPED\nWROTE\n");
    first_reader_gets(b"from-shell\n", "reader after the trapping shell");

    // A Python writer whose child exits while it is blocked: SIGCHLD, handled.
    let script = r#"
import os, signal, subprocess, sys, time
got = []
signal.signal(signal.SIGCHLD, lambda sig, frame: got.append(sig))
child = subprocess.Popen(["cat"], stdin=subprocess.PIPE)  # goes when this process does
print(child.pid, flush=True)
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
n = os.write(fd, b"from-python")
deadline = time.monotonic() + 5
while not got and time.monotonic() < deadline:
    time.sleep(0.01)
child.wait()
print("wrote", n, "signals", len(got), flush=True)
"#;
    let mut py = python(script, &[s.to_str().unwrap()]);
    py.wait_output_contains(b"\n", T);
    let child: i32 = out_str(&py).trim().parse().expect("the child's pid");
    wait_blocked_writing(&mut py, &s);
    // SAFETY: kill(2) of the writer's own child, which is alive until its parent waits.
    assert_eq!(unsafe { libc::kill(child, libc::SIGKILL) }, 0);
    assert_eq!(finish_ok(&mut py, "python writer"), format!("{child}\nwrote 11 signals 1\n"));
    first_reader_gets(b"from-python", "reader after the python writer");

    // kill -9: the writer dies, its committed message stays for the next reader.
    let mut killed = sh("echo from-killed >> s; echo WROTE", &mount.path);
    wait_blocked_writing(&mut killed, &s);
    let (_, status) = signal_and_time_exit(&mut killed, libc::SIGKILL);
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert!(!killed.output_contains(b"WROTE"));
    first_reader_gets(b"from-killed\n", "reader after the killed writer");
}

// ---------------------------------------------------------------------------
// frame close
// ---------------------------------------------------------------------------

#[test]
fn frame_close_cp_is_one_message_at_every_reader() {
    let mount = Mount::new();
    let s = mount.join("s");
    set_ctl(&mount, ".", "frame close\n");
    fs::File::create(&s).expect("create s");

    let tmp = TempDir::new();
    let data = random_bytes(5 * MIB, 6);
    let source = tmp.join("source");
    fs::write(&source, &data).expect("write source file");

    // Three readers, each with one 16 MiB read(2) already waiting.
    let reads: Vec<_> = (0..3).map(|_| start_read(open_blocking(&s), 16 * MIB)).collect();
    wait_ctl_status(&mount, ".", "readers", 3);
    run_ok(&format!("cp '{}' s", source.display()), &mount.path);
    for (i, rx) in reads.into_iter().enumerate() {
        let (file, got) = join_read(rx, &format!("reader {i}"));
        assert_eq!(got.len(), data.len(), "reader {i}: message length");
        assert!(got == data, "reader {i}: message bytes differ from the file");
        // Exactly one message: nothing follows.
        let mut file = file;
        // SAFETY: fcntl on a descriptor we own.
        unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
        assert_empty(&mut file, &format!("reader {i} after the file"));
    }
}

#[test]
fn frame_close_past_max_message_fails_and_publishes_nothing() {
    let mount = Mount::with_options("max_message=1M");
    let s = mount.join("s");
    set_ctl(&mount, ".", "frame close\n");
    fs::File::create(&s).expect("create s");
    let mut reader = open_nonblocking(&s);

    let tmp = TempDir::new();
    let source = tmp.join("big");
    fs::write(&source, random_bytes(2 * MIB, 7)).expect("write source file");
    let out = run_sh(&format!("cp '{}' s", source.display()), &mount.path, T);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "cp of 2 MiB under max_message=1M succeeded");
    assert!(stderr.contains("File too large"), "cp's error: {stderr:?}");
    assert_empty(&mut reader, "reader after the refused cp");
    assert_eq!(ctl_status(&mount, ".", "messages"), 0);

    // The stream still works: a small file is published whole.
    run_ok("printf 'small' > s", &mount.path);
    assert_eq!(read_now(&mut reader), b"small");
    assert_empty(&mut reader, "reader after small");
}

#[test]
fn frame_close_publishes_at_close_and_not_when_killed() {
    let mount = Mount::new();
    let s = mount.join("s");
    set_ctl(&mount, ".", "frame close\n");
    fs::File::create(&s).expect("create s");
    let mut reader = open_nonblocking(&s);

    let script = r#"
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
for chunk in (b"chunk1", b"chunk2", b"chunk3"):
    assert os.write(fd, chunk) == len(chunk)
print("written", flush=True)
sys.stdin.read()
os.close(fd)
print("closed", flush=True)
"#;
    let path = s.to_str().unwrap();

    // A normal close publishes the three writes as one message, and not before.
    let mut py = python(script, &[path]);
    py.wait_output_contains(b"written\n", T);
    assert_empty(&mut reader, "reader before the writer closed");
    py.close_stdin();
    assert_eq!(finish_ok(&mut py, "python writer"), "written\nclosed\n");
    assert_eq!(read_now(&mut reader), b"chunk1chunk2chunk3");
    assert_empty(&mut reader, "reader after the whole file");

    // A writer killed before closing publishes nothing. Its descriptors are closed (and
    // the daemon has handled the close) before it can be reaped.
    let mut py = python(script, &[path]);
    py.wait_output_contains(b"written\n", T);
    let (_, status) = signal_and_time_exit(&mut py, libc::SIGKILL);
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_empty(&mut reader, "reader after the killed writer");
    // A marker from another process comes next: nothing of the killed writer slipped in.
    run_ok("printf M > s", &mount.path);
    assert_eq!(read_now(&mut reader), b"M");
    assert_empty(&mut reader, "reader after the marker");

    // A shell group redirection writes through one open file: one message.
    run_ok("{ echo one; echo two; } >> s", &mount.path);
    assert_eq!(read_now(&mut reader), b"one\ntwo\n");
    assert_empty(&mut reader, "reader after the group redirection");

    // Back to frame write, each write(2) is a message again.
    set_ctl(&mount, ".", "frame write\n");
    run_ok("{ echo one; echo two; } >> s", &mount.path);
    assert_eq!(read_now(&mut reader), b"one\n");
    assert_eq!(read_now(&mut reader), b"two\n");
    assert_empty(&mut reader, "reader under frame write");
}

#[test]
fn exec_closing_inherited_descriptors_does_not_hang() {
    // Descriptors of this process are O_CLOEXEC: a child closes its copies while in execve,
    // so the daemon's FLUSH handler must not wait on the exec (it once read /proc/PID/stat,
    // which waits for the exec, which waited for the FLUSH).
    let mount = Mount::new();
    let s = mount.join("s");
    set_ctl(&mount, ".", "frame close\n");
    fs::File::create(&s).expect("create s");
    let _reader = open_nonblocking(&s);
    let _writer = OpenOptions::new().append(true).open(&s).expect("open s for writing");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(Command::new("sh").args(["-c", "echo ok"]).output());
    });
    match rx.recv_timeout(T) {
        Ok(Ok(out)) => assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n"),
        Ok(Err(e)) => panic!("cannot run sh: {e}"),
        Err(_) => panic!("spawning a child while holding stream descriptors hung for {T:?}"),
    }
}

// ---------------------------------------------------------------------------
// data static
// ---------------------------------------------------------------------------

#[test]
fn data_static_reads_history_like_a_regular_file() {
    let mount = Mount::new();
    fs::create_dir(mount.join("log")).expect("mkdir log");
    run_ok("echo replay all > log/ctl; echo data static > log/ctl", &mount.path);
    run_ok("i=1; while [ $i -le 100 ]; do echo \"line $i\" >> log/s; i=$((i+1)); done", &mount.path);
    let expected = numbered_lines(1..=100);
    let s = mount.join("log/s");

    // Each tool ends at the end of the history instead of blocking.
    assert_eq!(run_ok("timeout 5 grep -c line log/s", &mount.path), "100\n");
    assert_eq!(run_ok("timeout 5 wc -l < log/s", &mount.path), "100\n");
    assert_eq!(run_ok("timeout 5 tail -n 20 log/s", &mount.path), numbered_lines(81..=100));
    assert_eq!(run_ok("timeout 5 head -n 3 log/s", &mount.path), numbered_lines(1..=3));
    assert_eq!(run_ok("timeout 5 cat log/s", &mount.path), expected);
    assert_eq!(fs::metadata(&s).expect("stat log/s").len(), expected.len() as u64);
    let tmp = TempDir::new();
    let copy = tmp.join("x");
    run_ok(&format!("timeout 5 cp log/s '{}'", copy.display()), &mount.path);
    assert!(fs::read(&copy).expect("read the copy") == expected.as_bytes(), "cp's copy differs");

    // less-style: seek to the middle, read, then reads at the end return nothing at once.
    let script = r#"
import os, sys
with open(sys.argv[1], "rb") as f:
    f.seek(int(sys.argv[2]))
    middle = f.read(40)
    end = f.seek(0, 2)
    rest = f.read()
    raw = os.read(f.fileno(), 100)
sys.stdout.buffer.write(middle)
print("|", end, len(rest), len(raw))
"#;
    let middle = expected.len() / 2;
    let mut py = Proc::spawn(Command::new("timeout").args([
        "5",
        "python3",
        "-c",
        script,
        s.to_str().unwrap(),
        &middle.to_string(),
    ]));
    let want = format!("{}| {} 0 0\n", &expected[middle..middle + 40], expected.len());
    assert_eq!(finish_ok(&mut py, "python seek + read"), want);

    // A message-mode group next to it is unaffected: cat blocks, then receives.
    let m = mount.join("m");
    fs::File::create(&m).expect("create m");
    let mut cat = Proc::spawn(Command::new("cat").arg(&m));
    wait_until("cat to block in read on m", T, || blocked_in_syscall(cat.pid(), libc::SYS_read));
    run_ok("echo hello >> m", &mount.path);
    cat.wait_output_contains(b"hello\n", T);
    assert!(!cat.has_exited(), "cat of a message-mode stream ended");

    // While a writer keeps appending, static readers see a growing, consistent history.
    let _writer = sh(
        "i=101; while [ $i -le 100000 ]; do echo \"line $i\" >> log/s || exit 1; i=$((i+1)); done",
        &mount.path,
    );
    let count = |mount: &Mount| -> u64 {
        run_ok("timeout 5 wc -l < log/s", &mount.path).trim().parse().expect("wc -l output")
    };
    let first = count(&mount);
    assert!(first >= 100, "wc -l saw {first} lines");
    wait_until("wc -l to see the history grow", T, || count(&mount) > first);
    let snapshot = run_ok("timeout 5 cat log/s", &mount.path);
    let lines = snapshot.lines().count() as u32;
    assert!(lines > 100, "cat saw {lines} lines");
    assert_eq!(snapshot, numbered_lines(1..=lines), "cat's snapshot is not a prefix of the history");
}

// ---------------------------------------------------------------------------
// ctl
// ---------------------------------------------------------------------------

#[test]
fn ctl_shows_the_modes_and_new_subgroups_inherit_them() {
    let mount = Mount::new();
    fs::create_dir(mount.join("old")).expect("mkdir old");
    let defaults = "data message\nreplay off\ndepth 0\nwrite nonblock\nframe write\n";
    assert!(ctl_text(&mount, ".").starts_with(defaults), "{:?}", ctl_text(&mount, "."));

    run_ok("echo write one > ctl; echo frame close > ctl; echo data static > ctl", &mount.path);
    let set = "data static\nreplay off\ndepth 0\nwrite one\nframe close\n";
    assert!(ctl_text(&mount, ".").starts_with(set), "{:?}", ctl_text(&mount, "."));

    // A bad value is refused and changes nothing.
    let err = fs::write(mount.join("ctl"), "write all\nframe sometimes\n").expect_err("bad frame accepted");
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    let err = fs::write(mount.join("ctl"), "write maybe\n").expect_err("bad write mode accepted");
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    assert!(ctl_text(&mount, ".").starts_with(set), "{:?}", ctl_text(&mount, "."));

    // New subgroups copy the configuration; existing ones keep theirs.
    fs::create_dir(mount.join("new")).expect("mkdir new");
    assert!(ctl_text(&mount, "new").starts_with(set), "{:?}", ctl_text(&mount, "new"));
    assert!(ctl_text(&mount, "old").starts_with(defaults), "{:?}", ctl_text(&mount, "old"));

    // And what ctl prints can be written back.
    set_ctl(&mount, "old", "write all\nframe close\n");
    assert!(
        ctl_text(&mount, "old").starts_with("data message\nreplay off\ndepth 0\nwrite all\nframe close\n")
    );
    run_ok("cat old/ctl > new/ctl", &mount.path);
    assert!(
        ctl_text(&mount, "new").starts_with("data message\nreplay off\ndepth 0\nwrite all\nframe close\n"),
        "{:?}",
        ctl_text(&mount, "new")
    );
}

#[test]
fn frame_is_fixed_per_open_file_through_ctl_changes_and_renames() {
    let m = Mount::with_options("frame=close,replay=all");
    fs::create_dir(m.join("g")).unwrap();
    fs::write(m.join("g/ctl"), "frame write\n").unwrap();
    let script = r#"
import os
def lens(path):
    r, out = os.open(path, os.O_RDONLY | os.O_NONBLOCK), []
    while True:
        try:
            out.append(len(os.read(r, 64 << 20)))
        except BlockingIOError:
            return out
w = os.open("s", os.O_WRONLY | os.O_CREAT)
os.write(w, b"a" * (3 << 20))
open("ctl", "w").write("frame write\n")
os.write(w, b"b" * (3 << 20))
os.close(w)
open("ctl", "w").write("frame close\n")
w = os.open("t", os.O_WRONLY | os.O_CREAT)
os.write(w, b"c" * 1000)
os.rename("t", "g/t")
os.write(w, b"d" * 1000)
os.close(w)
print(lens("s"), lens("g/t"))
"#;
    let out = Command::new("python3").arg("-c").arg(script).current_dir(&m.path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[6291456] [2000]");
}
