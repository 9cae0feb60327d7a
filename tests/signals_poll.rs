//! Signals and readiness, through real processes on a real mount.
//!
//! Signals (contract: a reader blocked in read is released by any signal it
//! neither blocks nor ignores): Ctrl-C on a `cat` (sent directly and typed on a
//! pseudo-terminal under an interactive shell) releases it within 250 ms;
//! `kill -9` ends it at once and its reader goes away; SIGTERM and SIGHUP
//! release it; Python's default SIGINT handler raises KeyboardInterrupt; a
//! handled signal lets the read resume (PEP 475) without losing or duplicating
//! a message; other readers of the stream are not disturbed; a reader that got
//! no deliverable signal stays blocked; a reader that is not its process's main
//! thread is released by a signal to its process and by one to it alone.
//!
//! poll/select/epoll (contract: a stream is readable when its reader has data
//! or the stream was removed): select times out on empty streams and then
//! reports exactly the written one; an epoll selector in one thread serves 50
//! streams; asyncio's add_reader; removal wakes a poller with EOF; an
//! O_NONBLOCK read/poll loop receives 100 messages in order.

mod common;

use common::{Mount, Proc, proc_state, run_sh, syscall_and_fd, wait_until};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Liveness deadline for things that should happen promptly (not a contract bound).
const T: Duration = Duration::from_secs(10);

/// The contract's bound for Ctrl-C (and kill -9) to release a blocked reader.
const SIGNAL_BOUND: Duration = Duration::from_millis(250);

/// How long a reader that got no deliverable signal is watched for staying
/// blocked (hundreds of times an interrupt's answer; several of the fallback
/// watcher's ~40 ms scans once the kernel no longer sends interrupts).
const STILL_BLOCKED: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Whether `pid` is asleep in read(2) on a descriptor of `path` (stronger
/// than "in some read": a Python interpreter also reads its own files).
fn blocked_reading(pid: u32, path: &Path) -> bool {
    if !matches!(proc_state(pid), Some('S' | 'D')) {
        return false;
    }
    match syscall_and_fd(pid) {
        Some((nr, fd)) if nr == libc::SYS_read => {
            fs::read_link(format!("/proc/{pid}/fd/{fd}")).is_ok_and(|target| target == path)
        }
        _ => false,
    }
}

/// Waits until `pid` (not a [`Proc`] of ours) is blocked reading `path`.
fn wait_pid_parked(pid: u32, path: &Path, what: &str) {
    wait_until(&format!("{what} (pid {pid}) to block in read on {}", path.display()), T, || {
        blocked_reading(pid, path)
    });
}

/// Waits until `p` is asleep in a state `cond` recognizes; panics with its
/// output at once should it exit first, or after [`T`].
fn wait_proc(p: &mut Proc, what: &str, cond: impl Fn(u32) -> bool) {
    let start = Instant::now();
    loop {
        if cond(p.pid()) {
            return;
        }
        let exited = p.has_exited();
        if exited || start.elapsed() > T {
            let why = if exited { "exited" } else { "timed out" };
            panic!(
                "{why} waiting for pid {} to {what}\nstdout: {:?}\nstderr: {:?}",
                p.pid(),
                out_str(p),
                err_str(p)
            );
        }
        thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until `p` is blocked in read(2) on `path`.
fn wait_parked(p: &mut Proc, path: &Path) {
    wait_proc(p, &format!("block in read on {}", path.display()), |pid| blocked_reading(pid, path));
}

/// System calls a poll/select/epoll waiter sleeps in.
#[cfg(target_arch = "x86_64")]
const WAIT_SYSCALLS: &[libc::c_long] = &[
    libc::SYS_select,
    libc::SYS_pselect6,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
];
#[cfg(not(target_arch = "x86_64"))]
const WAIT_SYSCALLS: &[libc::c_long] =
    &[libc::SYS_pselect6, libc::SYS_ppoll, libc::SYS_epoll_pwait, libc::SYS_epoll_pwait2];

/// Whether `pid` is asleep in poll, select or epoll_wait.
fn blocked_waiting(pid: u32) -> bool {
    matches!(proc_state(pid), Some('S' | 'D'))
        && syscall_and_fd(pid).is_some_and(|(nr, _)| WAIT_SYSCALLS.contains(&nr))
}

/// Waits until `p` is blocked in poll, select or epoll_wait.
fn wait_polling(p: &mut Proc) {
    wait_proc(p, "block in poll/select/epoll", blocked_waiting);
}

/// Spawns `cat PATH` directly (not through a shell), so SIGINT reaches it
/// with its default action.
fn spawn_cat(path: &Path) -> Proc {
    Proc::spawn(Command::new("cat").arg(path))
}

/// Spawns `python3 -c SCRIPT ARGS...`.
fn python(script: &str, args: &[&str]) -> Proc {
    Proc::spawn(Command::new("python3").arg("-c").arg(script).args(args))
}

/// Waits up to `timeout` for `p` to exit; panics with its output otherwise.
fn finish(p: &mut Proc, timeout: Duration, what: &str) -> ExitStatus {
    match p.wait_exit(timeout) {
        Some(status) => status,
        None => panic!(
            "{what} (pid {}) did not exit within {timeout:?} (state {:?})\nstdout: {:?}\nstderr: {:?}",
            p.pid(),
            proc_state(p.pid()),
            String::from_utf8_lossy(&p.output()),
            String::from_utf8_lossy(&p.stderr_output()),
        ),
    }
}

fn out_str(p: &Proc) -> String {
    String::from_utf8_lossy(&p.output()).into_owned()
}

fn err_str(p: &Proc) -> String {
    String::from_utf8_lossy(&p.stderr_output()).into_owned()
}

/// Sends `sig` to `p` and returns how long it took until it was reaped
/// (polling every millisecond, giving up after [`T`]).
fn signal_and_time_exit(p: &mut Proc, sig: libc::c_int) -> Duration {
    let start = Instant::now();
    p.signal(sig);
    while !p.has_exited() {
        if start.elapsed() > T {
            panic!("pid {} still there {T:?} after signal {sig} (state {:?})", p.pid(), p.state());
        }
        thread::sleep(Duration::from_millis(1));
    }
    start.elapsed()
}

/// Appends one message to `path` with a single write(2) from this process.
fn write_msg(path: &Path, msg: &[u8]) {
    let mut f = fs::OpenOptions::new().append(true).open(path).expect("open stream for writing");
    let n = f.write(msg).expect("write message");
    assert_eq!(n, msg.len(), "short write to {}", path.display());
}

/// Appends one message to `path` from another process (`printf ... >> path`).
fn write_msg_sh(mount: &Mount, name: &str, msg: &str) {
    let out = run_sh(&format!("printf '%s' '{msg}' >> '{name}'"), &mount.path, T);
    assert!(out.status.success(), "printf >> {name} failed: {:?}", String::from_utf8_lossy(&out.stderr));
}

/// The `# readers N` count of the root group's ctl.
fn ctl_readers(mount: &Mount) -> u64 {
    let text = fs::read_to_string(mount.join("ctl")).expect("read ctl");
    text.lines()
        .find_map(|l| l.strip_prefix("# readers "))
        .unwrap_or_else(|| panic!("no '# readers' line in ctl: {text:?}"))
        .trim()
        .parse()
        .expect("readers count")
}

fn wait_readers(mount: &Mount, n: u64) {
    wait_until(&format!("ctl to show '# readers {n}'"), T, || ctl_readers(mount) == n);
}

/// Log lines of the daemon that report a problem.
fn log_problems(mount: &Mount) -> Vec<String> {
    mount
        .log()
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("WARN") || l.contains("panicked"))
        .map(str::to_string)
        .collect()
}

/// Checks for [`STILL_BLOCKED`] that every one of `procs` stays blocked
/// reading `path` with no output. A bounded wait: it checks an absence.
fn assert_stay_blocked(procs: &mut [&mut Proc], path: &Path, why: &str) {
    let start = Instant::now();
    while start.elapsed() < STILL_BLOCKED {
        for p in procs.iter_mut() {
            assert!(!p.has_exited(), "pid {} exited ({why}); stderr {:?}", p.pid(), err_str(p));
            assert!(
                blocked_reading(p.pid(), path),
                "pid {} no longer blocked in read ({why}): state {:?}, syscall {:?}",
                p.pid(),
                proc_state(p.pid()),
                syscall_and_fd(p.pid())
            );
            assert!(p.output().is_empty(), "pid {} printed {:?} ({why})", p.pid(), out_str(p));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A small xorshift generator; the seed is printed so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1;
        eprintln!("rng seed: {seed}");
        Rng(seed)
    }

    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

// ---------------------------------------------------------------------------
// An interactive shell on a pseudo-terminal
// ---------------------------------------------------------------------------

const PROMPT: &str = "mqfs-prompt$ ";

/// `sh -i` as a session leader whose controlling terminal is a fresh pty, so
/// that it runs jobs in the terminal's foreground process group and a ^C
/// written to the master side reaches them as SIGINT, as in a real terminal.
/// Dropping it SIGKILLs the shell and the recorded job pids.
struct PtyShell {
    child: Child,
    master: File,
    output: Arc<Mutex<Vec<u8>>>,
    jobs: Vec<u32>,
}

impl PtyShell {
    fn spawn(cwd: &Path) -> PtyShell {
        // SAFETY: plain libc calls on descriptors created here; ptsname_r gets
        // a buffer of the size passed.
        let (master, slave) = unsafe {
            let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(m >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
            let master = OwnedFd::from_raw_fd(m);
            assert_eq!(libc::grantpt(m), 0, "grantpt: {}", std::io::Error::last_os_error());
            assert_eq!(libc::unlockpt(m), 0, "unlockpt: {}", std::io::Error::last_os_error());
            let mut name = [0 as libc::c_char; 128];
            assert_eq!(libc::ptsname_r(m, name.as_mut_ptr(), name.len()), 0, "ptsname_r");
            let s = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            assert!(s >= 0, "open pty slave: {}", std::io::Error::last_os_error());
            (File::from(master), File::from(OwnedFd::from_raw_fd(s)))
        };
        let mut cmd = Command::new("sh");
        cmd.arg("-i")
            .env("PS1", PROMPT)
            .env_remove("ENV")
            .current_dir(cwd)
            .stdin(Stdio::from(slave.try_clone().expect("dup slave")))
            .stdout(Stdio::from(slave.try_clone().expect("dup slave")))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn sh -i on a pty");
        drop(cmd); // closes our copies of the slave

        let output: Arc<Mutex<Vec<u8>>> = Arc::default();
        let mut reader = master.try_clone().expect("dup master");
        let sink = output.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return, // EIO once every slave descriptor is closed
                }
            }
        });
        PtyShell { child, master, output, jobs: Vec::new() }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    fn output_len(&self) -> usize {
        self.output.lock().unwrap().len()
    }

    /// Whether the output from byte `from` on contains `needle`.
    fn output_since_contains(&self, from: usize, needle: &str) -> bool {
        let out = self.output.lock().unwrap();
        out.get(from..).is_some_and(|tail| tail.windows(needle.len()).any(|w| w == needle.as_bytes()))
    }

    fn wait_output_since(&self, from: usize, needle: &str) {
        if !common::poll_until(T, || self.output_since_contains(from, needle)) {
            panic!("no {needle:?} on the terminal within {T:?}; terminal so far: {:?}", self.output());
        }
    }

    /// Types `bytes` on the terminal.
    fn type_keys(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("write to pty master");
    }

    /// The pid of the shell's child named `comm`, once there is one.
    fn wait_child(&mut self, comm: &str) -> u32 {
        let ppid = self.pid();
        let mut found = None;
        wait_until(&format!("the shell to start {comm}"), T, || {
            found = children_of(ppid).into_iter().find(|(_, c)| c == comm).map(|(pid, _)| pid);
            found.is_some()
        });
        let pid = found.unwrap();
        self.jobs.push(pid);
        pid
    }
}

impl Drop for PtyShell {
    fn drop(&mut self) {
        for &pid in &self.jobs {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        common::poll_until(Duration::from_secs(2), || !matches!(self.child.try_wait(), Ok(None)));
    }
}

/// (pid, comm) of every child of `ppid`, from /proc/PPID/task/PPID/children
/// (not by scanning all of /proc, where a stuck unrelated process can make a
/// read of its stat file block).
fn children_of(ppid: u32) -> Vec<(u32, String)> {
    let list = fs::read_to_string(format!("/proc/{ppid}/task/{ppid}/children")).unwrap_or_default();
    list.split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter_map(|pid| {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            Some((pid, comm.trim_end().to_string()))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------

#[test]
fn sigint_releases_blocked_cat_within_250ms_five_times() {
    let m = Mount::new();
    let s = m.join("s");
    File::create(&s).unwrap();
    let mut times = Vec::new();
    for round in 0..5 {
        let mut cat = spawn_cat(&s);
        wait_parked(&mut cat, &s);
        let took = signal_and_time_exit(&mut cat, libc::SIGINT);
        let status = finish(&mut cat, T, "cat");
        assert_eq!(status.signal(), Some(libc::SIGINT), "round {round}: cat ended with {status}");
        assert!(cat.output().is_empty(), "round {round}: cat printed {:?}", out_str(&cat));
        times.push(took);
    }
    eprintln!("SIGINT to reap: {times:?}");
    assert!(times.iter().all(|t| *t < SIGNAL_BOUND), "SIGINT to reap took {times:?}, bound {SIGNAL_BOUND:?}");
    wait_readers(&m, 0);
}

#[test]
fn ctrl_c_on_a_terminal_gives_the_prompt_back_within_250ms() {
    let m = Mount::new();
    let s = m.join("s");
    File::create(&s).unwrap();
    let mut shell = PtyShell::spawn(&m.path);
    shell.wait_output_since(0, PROMPT);
    for round in 0..3 {
        let before = shell.output_len();
        shell.type_keys(format!("cat '{}'\n", s.display()).as_bytes());
        let cat = shell.wait_child("cat");
        wait_pid_parked(cat, &s, "cat under sh -i");
        // The foreground job is the cat, not the shell.
        // SAFETY: tcgetpgrp/getpgid have no memory-safety preconditions.
        let (fg, cat_group) = unsafe {
            (
                libc::tcgetpgrp(std::os::fd::AsRawFd::as_raw_fd(&shell.master)),
                libc::getpgid(cat as libc::pid_t),
            )
        };
        assert_eq!(fg, cat_group, "round {round}: cat is not the terminal's foreground job");

        let mark = shell.output_len();
        let start = Instant::now();
        shell.type_keys(b"\x03");
        let mut took = None;
        while start.elapsed() < T {
            if shell.output_since_contains(mark, PROMPT) {
                took = Some(start.elapsed());
                break;
            }
            thread::sleep(Duration::from_millis(1));
        }
        let Some(took) = took else {
            panic!("round {round}: no prompt within {T:?} of ^C; terminal: {:?}", shell.output());
        };
        eprintln!("round {round}: ^C to prompt: {took:?}");
        assert!(
            took < SIGNAL_BOUND,
            "round {round}: prompt came back {took:?} after ^C (bound {SIGNAL_BOUND:?})"
        );
        assert_eq!(proc_state(cat), None, "round {round}: cat still exists after the prompt came back");

        let mark = shell.output_len();
        shell.type_keys(b"echo status=$?\n");
        shell.wait_output_since(mark, "status=130");
        assert!(
            !shell.output_since_contains(before, "cat:"),
            "round {round}: cat complained: {:?}",
            shell.output()
        );
    }
    wait_readers(&m, 0);
}

#[test]
fn kill9_ends_blocked_cat_at_once_and_its_reader_goes_away() {
    let m = Mount::new();
    let s = m.join("s");
    File::create(&s).unwrap();
    for round in 0..3 {
        let mut cat = spawn_cat(&s);
        wait_parked(&mut cat, &s);
        assert_eq!(ctl_readers(&m), 1, "round {round}: the blocked cat should be a reader");
        let took = signal_and_time_exit(&mut cat, libc::SIGKILL);
        let status = finish(&mut cat, T, "cat");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "round {round}: cat ended with {status}");
        assert!(took < SIGNAL_BOUND, "round {round}: kill -9 to reap took {took:?}, bound {SIGNAL_BOUND:?}");
        wait_readers(&m, 0);
    }
    // The stream still works for the next reader.
    let mut cat = spawn_cat(&s);
    wait_parked(&mut cat, &s);
    write_msg_sh(&m, "s", "after kills\n");
    cat.wait_output_contains(b"after kills\n", T);
    assert_eq!(out_str(&cat), "after kills\n");
    drop(cat);
    wait_readers(&m, 0);
    assert_eq!(log_problems(&m), Vec::<String>::new(), "daemon log:\n{}", m.log());
}

#[test]
fn sigterm_and_sighup_release_blocked_cat() {
    let m = Mount::new();
    let s = m.join("s");
    File::create(&s).unwrap();
    for sig in [libc::SIGTERM, libc::SIGHUP] {
        let mut cat = spawn_cat(&s);
        wait_parked(&mut cat, &s);
        cat.signal(sig);
        let status = finish(&mut cat, T, "cat");
        assert_eq!(status.signal(), Some(sig), "cat ended with {status} after signal {sig}");
        wait_readers(&m, 0);
    }
    assert_eq!(log_problems(&m), Vec::<String>::new(), "daemon log:\n{}", m.log());
}

#[test]
fn python_reader_gets_keyboard_interrupt() {
    let m = Mount::new();
    let s = m.join("s");
    File::create(&s).unwrap();
    let script = "import sys\n\
                  try:\n  \
                    open(sys.argv[1],'rb',buffering=0).read(100)\n\
                  except KeyboardInterrupt:\n  \
                    print('KI'); sys.exit(3)\n\
                  print('NO-KI')\n";
    let mut py = python(script, &[s.to_str().unwrap()]);
    wait_parked(&mut py, &s);
    py.signal(libc::SIGINT);
    let status = finish(&mut py, T, "python reader");
    assert_eq!(status.code(), Some(3), "python ended with {status}; stderr {:?}", err_str(&py));
    assert_eq!(out_str(&py), "KI\n", "stderr {:?}", err_str(&py));
    wait_readers(&m, 0);
}

/// A Python reader whose SIGUSR1 handler just counts: each signal interrupts
/// the parked read (EINTR), the handler runs, PEP 475 retries the read. Every
/// message written afterwards arrives exactly once, in order.
#[test]
fn handled_signal_resumes_read_without_losing_or_duplicating_messages() {
    let m = Mount::new();
    let s = m.join("s");
    File::create(&s).unwrap();
    let script = r#"
import os, signal, sys
count = 0
def handler(signum, frame):
    global count
    count += 1
    os.write(1, b"SIG %d\n" % count)
signal.signal(signal.SIGUSR1, handler)
f = open(sys.argv[1], "rb", buffering=0)
while True:
    data = f.read(100)
    if not data:
        break
    os.write(1, b"MSG " + data)
os.write(1, b"EOF\n")
"#;
    let mut py = python(script, &[s.to_str().unwrap()]);
    let mut expected = Vec::new();

    // Deterministic rounds: the signal releases the parked read, the handler
    // runs, the read is parked again, then the message comes.
    for i in 1..=3 {
        wait_parked(&mut py, &s);
        py.signal(libc::SIGUSR1);
        py.wait_output_contains(format!("SIG {i}\n").as_bytes(), T);
        wait_parked(&mut py, &s);
        let out = out_str(&py);
        assert_eq!(out.matches("MSG ").count(), i - 1, "a message that was not written: {out:?}");
        let msg = format!("m{i}\n");
        write_msg(&s, msg.as_bytes());
        expected.push(msg.clone());
        py.wait_output_contains(format!("MSG {msg}").as_bytes(), T);
    }

    // Racy rounds: the message is written right after the signal, so the
    // watcher's EINTR and the message's delivery meet in every order.
    for i in 4..=30 {
        py.signal(libc::SIGUSR1);
        let msg = format!("m{i}\n");
        write_msg(&s, msg.as_bytes());
        expected.push(msg.clone());
        py.wait_output_contains(format!("MSG {msg}").as_bytes(), T);
    }

    fs::remove_file(&s).unwrap();
    let status = finish(&mut py, T, "python reader");
    assert!(status.success(), "python ended with {status}; stderr {:?}", err_str(&py));
    let out = out_str(&py);
    let msgs: Vec<String> =
        out.lines().filter_map(|l| l.strip_prefix("MSG ")).map(|l| format!("{l}\n")).collect();
    assert_eq!(msgs, expected, "messages lost, duplicated or reordered; full output:\n{out}");
    let sigs = out.lines().filter(|l| l.starts_with("SIG ")).count();
    assert!((3..=30).contains(&sigs), "{sigs} handler runs for 30 signals; output:\n{out}");
    assert!(out.ends_with("EOF\n"), "output:\n{out}");
}

/// A Python reader of argv[1] that handles SIGUSR1 (printing `SIG`) and reads on,
/// printing `END` when it reads the message `END` (so a test knows it has caught up).
const HANDLING_READER: &str = r#"
import os, signal, sys
signal.signal(signal.SIGUSR1, lambda *_: os.write(1, b"SIG\n"))
f = open(sys.argv[1], "rb", buffering=0)
while (data := f.read(100)):
    if data == b"END\n":
        os.write(1, b"END\n")
"#;

/// Waits until `reader` and `cats` new `cat`s are blocked reading `s`, and asserts that all
/// of them sleep interruptibly (state S, not D). Returns the cats.
fn assert_readers_sleep(reader: &mut Proc, s: &Path, cats: usize, when: &str) -> Vec<Proc> {
    let mut cats: Vec<Proc> = (0..cats).map(|_| spawn_cat(s)).collect();
    for cat in &mut cats {
        wait_parked(cat, s);
    }
    wait_parked(reader, s);
    let states: Vec<Option<char>> =
        std::iter::once(reader.pid()).chain(cats.iter().map(Proc::pid)).map(proc_state).collect();
    assert!(states.iter().all(|&st| st == Some('S')), "{when}, blocked readers' states: {states:?}");
    cats
}

/// After a read was interrupted, readers blocked on the mount still sleep interruptibly
/// (state S, not counted in the load average) and SIGINT ends a `cat` at once. fuser 0.18
/// answers the kernel's FUSE_INTERRUPT with ENOSYS, after which the kernel would send no
/// more and wait killably (state D); mqfs answers the interrupt first, reading fuser's
/// dispatch trace. This fails should fuser's wording change (Cargo.toml pins fuser).
#[test]
fn blocked_readers_stay_interruptible_after_an_interrupt() {
    let m = Mount::new();
    let s = m.join("s");
    File::create(&s).unwrap();
    let mut py = python(HANDLING_READER, &[s.to_str().unwrap()]);
    wait_parked(&mut py, &s);
    py.signal(libc::SIGUSR1);
    py.wait_output_contains(b"SIG\n", T);
    let mut cats = assert_readers_sleep(&mut py, &s, 20, "after an interrupt");
    let mut times = Vec::new();
    for cat in &mut cats {
        times.push(signal_and_time_exit(cat, libc::SIGINT));
        assert_eq!(finish(cat, T, "cat").signal(), Some(libc::SIGINT));
    }
    times.sort();
    eprintln!("SIGINT to reap, sorted: {times:?}");
    assert!(times.iter().all(|t| *t < SIGNAL_BOUND), "SIGINT to reap: {times:?}");
    assert!(log_problems(&m).is_empty(), "daemon log: {:?}", log_problems(&m));
}

/// Interrupts keep coming through a storm of handled signals to a reader whose reads are
/// dispatched all the time: an interrupt that arrives while its request is still being
/// dispatched waits for the handler to park or answer it, so fuser's ENOSYS never reaches
/// a request the kernel still waits on (which would stop interrupts for good).
#[test]
fn interrupts_survive_a_storm_of_signals_during_busy_reads() {
    let m = Mount::new();
    let s = m.join("s");
    File::create(&s).unwrap();
    let mut py = python(HANDLING_READER, &[s.to_str().unwrap()]);
    wait_parked(&mut py, &s);
    let storm = Duration::from_secs(2);
    let writer = {
        let s = s.clone();
        thread::spawn(move || {
            let mut f = fs::OpenOptions::new().write(true).open(&s).expect("open for writing");
            let start = Instant::now();
            while start.elapsed() < storm {
                f.write_all(b"0123456789").expect("write");
            }
        })
    };
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < storm {
        py.signal(libc::SIGUSR1);
        sent += 1;
        thread::sleep(Duration::from_micros(500));
    }
    writer.join().unwrap();
    // The reader may still be working through the storm's backlog, running between reads
    // (state R); once it has read the last message its next read parks.
    write_msg(&s, b"END\n");
    py.wait_output_contains(b"END\n", T);
    assert_readers_sleep(&mut py, &s, 5, &format!("after {sent} signals"));
    assert!(log_problems(&m).is_empty(), "daemon log: {:?}", log_problems(&m));
}

#[test]
fn interrupting_one_reader_leaves_the_others_blocked_and_served() {
    let m = Mount::new();
    let s = m.join("s");
    File::create(&s).unwrap();
    let mut victim = spawn_cat(&s);
    let mut a = spawn_cat(&s);
    let mut b = spawn_cat(&s);
    for p in [&mut victim, &mut a, &mut b] {
        wait_parked(p, &s);
    }
    assert_eq!(ctl_readers(&m), 3);

    victim.signal(libc::SIGINT);
    let status = finish(&mut victim, T, "interrupted cat");
    assert_eq!(status.signal(), Some(libc::SIGINT), "victim ended with {status}");
    wait_readers(&m, 2);
    assert_stay_blocked(&mut [&mut a, &mut b], &s, "another reader was interrupted");

    write_msg_sh(&m, "s", "next\n");
    for p in [&a, &b] {
        p.wait_output_contains(b"next\n", T);
    }
    write_msg_sh(&m, "s", "and more\n");
    for p in [&mut a, &mut b] {
        p.wait_output_contains(b"and more\n", T);
        assert_eq!(out_str(p), "next\nand more\n");
        assert!(!p.has_exited(), "a surviving reader exited; stderr {:?}", err_str(p));
    }
}

/// A reader that does not retry EINTR: one raw read(2) through ctypes, so a
/// read the daemon ended without cause shows as "ERR 4" (cat and Python's
/// own reads retry EINTR, which would hide it). Mode "masked" first installs
/// a SIGUSR1 handler and blocks SIGUSR1, ignores SIGUSR2, and after the read
/// reports whether SIGUSR1 is pending, then unblocks it.
const RAW_READER: &str = r#"
import ctypes, os, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
masked = sys.argv[2] == "masked"
if masked:
    signal.signal(signal.SIGUSR1, lambda n, f: os.write(1, b"HANDLED\n"))
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
fd = os.open(sys.argv[1], os.O_RDONLY)
buf = ctypes.create_string_buffer(100)
n = libc.read(fd, buf, 100)
if n < 0:
    os.write(1, b"ERR %d\n" % ctypes.get_errno())
    sys.exit(4)
os.write(1, b"MSG " + buf.raw[:n])
if masked:
    os.write(1, b"PENDING %d\n" % (signal.SIGUSR1 in signal.sigpending()))
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGUSR1})
os.write(1, b"END\n")
"#;

/// Only a deliverable pending signal releases a parked read: not the mere
/// passing of time, nor signals that are discarded (default-ignored, like a
/// terminal resize), ignored, or blocked.
#[test]
fn readers_without_a_deliverable_signal_stay_blocked() {
    let m = Mount::new();
    let s = m.join("s");
    File::create(&s).unwrap();
    let path = s.to_str().unwrap();

    let mut cat = spawn_cat(&s);
    let mut alone = python(RAW_READER, &[path, "plain"]);
    let mut discarded = python(RAW_READER, &[path, "plain"]);
    let mut masked = python(RAW_READER, &[path, "masked"]);
    wait_parked(&mut cat, &s);
    for p in [&mut alone, &mut discarded, &mut masked] {
        wait_parked(p, &s);
    }

    // Left alone, nothing happens.
    assert_stay_blocked(&mut [&mut cat, &mut alone, &mut discarded, &mut masked], &s, "no signal at all");

    for sig in [libc::SIGWINCH, libc::SIGURG, libc::SIGCHLD] {
        cat.signal(sig);
        discarded.signal(sig);
    }
    masked.signal(libc::SIGUSR1); // blocked: stays pending
    masked.signal(libc::SIGUSR2); // ignored
    assert_stay_blocked(
        &mut [&mut cat, &mut alone, &mut discarded, &mut masked],
        &s,
        "only discarded, ignored or blocked signals",
    );

    write_msg_sh(&m, "s", "hello\n");
    cat.wait_output_contains(b"hello\n", T);
    for (p, want) in [
        (&mut alone, "MSG hello\nEND\n"),
        (&mut discarded, "MSG hello\nEND\n"),
        // The blocked SIGUSR1 was pending all along and ran once unblocked.
        (&mut masked, "MSG hello\nPENDING 1\nHANDLED\nEND\n"),
    ] {
        let status = finish(p, T, "raw python reader");
        assert!(
            status.success(),
            "reader ended with {status}; stdout {:?} stderr {:?}",
            out_str(p),
            err_str(p)
        );
        assert_eq!(out_str(p), want, "stderr {:?}", err_str(p));
    }
    assert_eq!(out_str(&cat), "hello\n");
    assert!(!cat.has_exited(), "cat exited; stderr {:?}", err_str(&cat));
}

/// A Python process whose reader is a second thread: it prints `TID <n>` and reads, the
/// main thread polls for handled signals (a handler runs in the main thread).
const THREAD_READER: &str = r#"
import os, signal, sys, threading, time
handled = []
signal.signal(signal.SIGUSR1, lambda *a: handled.append(1))
got = []
def read():
    os.write(1, b"TID %d\n" % threading.get_native_id())
    with open(sys.argv[1], "rb", buffering=0) as f:
        got.append(f.read(100))
threading.Thread(target=read, daemon=True).start()
while not got:
    if handled:
        os.write(1, b"HANDLED\n")
        handled.clear()
    time.sleep(0.01)
os.write(1, b"MSG " + got[0])
"#;

/// A [`THREAD_READER`] on a new stream `s` of `m`, once its reading thread is parked: the
/// stream, the process and the thread's id.
fn parked_thread_reader(m: &Mount) -> (PathBuf, Proc, u32) {
    let s = m.join("s");
    File::create(&s).unwrap();
    let py = python(THREAD_READER, &[s.to_str().unwrap()]);
    py.wait_output_contains(b"\n", T);
    let out = out_str(&py);
    let line = out.lines().find_map(|l| l.strip_prefix("TID ")).expect("the reader thread says its id");
    let tid = line.trim().parse().expect("a thread id");
    wait_pid_parked(tid, &s, "reader thread");
    (s, py, tid)
}

/// A signal sent to the whole process reaches a reader that is not the main thread: SIGTERM
/// ends the process even though its reading thread was parked.
#[test]
fn sigterm_ends_a_process_whose_second_thread_is_blocked_reading() {
    let m = Mount::new();
    let (_, mut py, _) = parked_thread_reader(&m);
    py.signal(libc::SIGTERM);
    let status = finish(&mut py, T, "python with a reader thread");
    assert_eq!(status.signal(), Some(libc::SIGTERM), "stdout {:?} stderr {:?}", out_str(&py), err_str(&py));
    wait_readers(&m, 0);
}

/// A signal sent to the reading thread alone (pthread_kill, tgkill) interrupts its read:
/// the handler runs, the read resumes (PEP 475) and gets the next message.
#[test]
fn a_signal_to_the_reading_thread_alone_interrupts_its_read() {
    let m = Mount::new();
    let (s, mut py, tid) = parked_thread_reader(&m);
    // SAFETY: tgkill has no memory-safety preconditions; both ids are our child's.
    let sent = unsafe { libc::syscall(libc::SYS_tgkill, py.pid(), tid, libc::SIGUSR1) };
    assert_eq!(sent, 0, "tgkill: {}", std::io::Error::last_os_error());
    py.wait_output_contains(b"HANDLED\n", T);
    wait_pid_parked(tid, &s, "reader thread, reading again");
    write_msg(&s, b"after\n");
    let status = finish(&mut py, T, "python with a reader thread");
    assert!(status.success(), "ended with {status}; stderr {:?}", err_str(&py));
    assert!(out_str(&py).ends_with("HANDLED\nMSG after\n"), "stdout {:?}", out_str(&py));
}

// ---------------------------------------------------------------------------
// poll / select / epoll
// ---------------------------------------------------------------------------

/// Deadline for the Python scripts below. Each wait they make is bounded by
/// 8 s and reports whether it ended by a wake-up or by running out: at the
/// end of its timeout the kernel checks every descriptor once more, so a
/// missing wake-up would otherwise pass as a slow one.
const PY_DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn select_times_out_on_empty_streams_then_reports_only_the_written_one() {
    let m = Mount::new();
    for name in ["s1", "s2", "s3"] {
        File::create(m.join(name)).unwrap();
    }
    let script = r#"
import os, select, sys, time
paths = sys.argv[1:]
fds = [os.open(p, os.O_RDONLY) for p in paths]
r, w, x = select.select(fds, [], [], 0.2)
print("FIRST", r, w, x, flush=True)
r, w, x = select.select([], fds, [], 0)
print("WRITABLE", [fds.index(f) + 1 for f in w], flush=True)
start = time.monotonic()
r, w, x = select.select(fds, [], [], 8)
woke = time.monotonic() - start < 7.5
print("READY", "woken" if woke else "timed-out", [fds.index(f) + 1 for f in r], flush=True)
for f in r:
    print("DATA", os.read(f, 100), flush=True)
r, w, x = select.select(fds, [], [], 0.2)
print("AFTER", r, flush=True)
"#;
    let paths: Vec<PathBuf> = ["s1", "s2", "s3"].iter().map(|n| m.join(n)).collect();
    let args: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    let mut py = python(script, &args);
    py.wait_output_contains(b"WRITABLE", T);
    wait_polling(&mut py);
    write_msg_sh(&m, "s2", "to two\n");
    let status = finish(&mut py, PY_DEADLINE, "python select");
    assert!(status.success(), "python ended with {status}; stderr {:?}", err_str(&py));
    assert_eq!(
        out_str(&py),
        "FIRST [] [] []\nWRITABLE [1, 2, 3]\nREADY woken [2]\nDATA b'to two\\n'\nAFTER []\n",
        "stderr {:?}",
        err_str(&py)
    );
}

#[test]
fn epoll_selector_serves_50_streams_in_one_thread() {
    const STREAMS: usize = 50;
    let m = Mount::new();
    let names: Vec<String> = (0..STREAMS).map(|i| format!("s{i:02}")).collect();
    for n in &names {
        File::create(m.join(n)).unwrap();
    }
    let script = r#"
import os, selectors, sys, threading
want = int(sys.argv[1])
sel = selectors.DefaultSelector()
print("SELECTOR", type(sel).__name__, flush=True)
for p in sys.argv[2:]:
    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    sel.register(fd, selectors.EVENT_READ, os.path.basename(p))
print("QUIET", sel.select(timeout=0.2), flush=True)
got = 0
while got < want:
    events = sel.select(timeout=8)
    if not events:
        print("TIMEOUT", flush=True)
        sys.exit(2)
    for key, mask in events:
        try:
            data = os.read(key.fd, 4096)
        except BlockingIOError:
            print("SPURIOUS", key.data, flush=True)
            continue
        print("GOT", key.data, data.decode().strip(), flush=True)
        got += 1
print("END", sel.select(timeout=0.2), threading.active_count(), flush=True)
"#;
    let paths: Vec<PathBuf> = names.iter().map(|n| m.join(n)).collect();
    let mut args: Vec<String> = vec!["10".into()];
    args.extend(paths.iter().map(|p| p.to_str().unwrap().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut py = python(script, &args);
    py.wait_output_contains(b"QUIET", T);

    let mut rng = Rng::new();
    let mut chosen: Vec<usize> = Vec::new();
    while chosen.len() < 10 {
        let i = rng.below(STREAMS);
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    // One at a time, each written while the selector sleeps: a stream
    // becomes readable only after its write, and the wake-up reaches epoll.
    let mut expected = vec!["SELECTOR EpollSelector".to_string(), "QUIET []".to_string()];
    for &i in &chosen[..5] {
        wait_polling(&mut py);
        let before = out_str(&py);
        assert_eq!(before.lines().count(), expected.len(), "chosen {chosen:?}; unexpected output: {before}");
        write_msg_sh(&m, &names[i], &format!("msg-{i}\n"));
        let line = format!("GOT {} msg-{i}", names[i]);
        py.wait_output_contains(format!("{line}\n").as_bytes(), T);
        expected.push(line);
    }
    // Then a burst of five from one writer process.
    let burst: String =
        chosen[5..].iter().map(|&i| format!("printf 'msg-{i}\\n' >> {}; ", names[i])).collect();
    let out = run_sh(&burst, &m.path, T);
    assert!(out.status.success(), "burst writer: {:?}", String::from_utf8_lossy(&out.stderr));

    let status = finish(&mut py, PY_DEADLINE, "python selector");
    assert!(
        status.success(),
        "python ended with {status}; stdout {:?} stderr {:?}",
        out_str(&py),
        err_str(&py)
    );
    let out = out_str(&py);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 13, "chosen {chosen:?}; output:\n{out}");
    assert_eq!(lines[..7], expected.iter().map(String::as_str).collect::<Vec<_>>()[..], "output:\n{out}");
    let mut burst_got: Vec<&str> = lines[7..12].to_vec();
    let mut burst_want: Vec<String> =
        chosen[5..].iter().map(|&i| format!("GOT {} msg-{i}", names[i])).collect();
    burst_got.sort_unstable();
    burst_want.sort_unstable();
    assert_eq!(burst_got, burst_want, "chosen {chosen:?}; output:\n{out}");
    // Nothing readable any more, and all of it ran in one thread.
    assert_eq!(lines[12], "END [] 1", "output:\n{out}");
}

#[test]
fn asyncio_add_reader_gets_the_message() {
    let m = Mount::new();
    let s = m.join("s");
    File::create(&s).unwrap();
    let script = r#"
import asyncio, os, sys
async def main(path):
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    loop = asyncio.get_running_loop()
    fut = loop.create_future()
    spurious = 0
    def on_readable():
        nonlocal spurious
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            spurious += 1
            return
        loop.remove_reader(fd)
        if not fut.done():
            fut.set_result(data)
    loop.add_reader(fd, on_readable)
    print("READY", flush=True)
    data = await asyncio.wait_for(fut, 8)
    print("GOT", data, "SPURIOUS", spurious, flush=True)
asyncio.run(main(sys.argv[1]))
"#;
    let mut py = python(script, &[s.to_str().unwrap()]);
    py.wait_output_contains(b"READY\n", T);
    wait_polling(&mut py);
    write_msg_sh(&m, "s", "hello asyncio\n");
    let status = finish(&mut py, PY_DEADLINE, "python asyncio");
    assert!(status.success(), "python ended with {status}; stderr {:?}", err_str(&py));
    assert_eq!(out_str(&py), "READY\nGOT b'hello asyncio\\n' SPURIOUS 0\n", "stderr {:?}", err_str(&py));
}

#[test]
fn removing_the_stream_wakes_a_poller_and_read_gives_eof() {
    let m = Mount::new();
    let s = m.join("s");
    File::create(&s).unwrap();
    let script = r#"
import os, select, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
p = select.poll()
p.register(fd, select.POLLIN)
print("BEFORE", p.poll(200), flush=True)
start = time.monotonic()
ev = p.poll(8000)
woke = time.monotonic() - start < 7.5
print("EVENTS", "woken" if woke else "timed-out", [(f == fd, bool(e & select.POLLIN)) for f, e in ev], flush=True)
print("DATA", os.read(fd, 100), flush=True)
"#;
    let mut py = python(script, &[s.to_str().unwrap()]);
    py.wait_output_contains(b"BEFORE", T);
    wait_polling(&mut py);
    fs::remove_file(&s).unwrap();
    let status = finish(&mut py, PY_DEADLINE, "python poller");
    assert!(status.success(), "python ended with {status}; stderr {:?}", err_str(&py));
    assert_eq!(
        out_str(&py),
        "BEFORE []\nEVENTS woken [(True, True)]\nDATA b''\n",
        "stderr {:?}",
        err_str(&py)
    );
}

/// An event-loop style reader: O_NONBLOCK reads until EAGAIN, then poll.
/// Every poll must end by a wake-up (not its timeout) and be followed by a
/// read that gets data (poll reports readable only when a read would not
/// fail with EAGAIN).
#[test]
fn nonblocking_poll_loop_receives_100_messages_in_order() {
    const N: usize = 100;
    let m = Mount::new();
    let s = m.join("s");
    File::create(&s).unwrap();
    let script = r#"
import os, select, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
want = int(sys.argv[2])
try:
    os.read(fd, 4096)
    print("NOT-EAGAIN", flush=True)
    sys.exit(2)
except BlockingIOError:
    pass
p = select.poll()
p.register(fd, select.POLLIN)
print("READY", flush=True)
got = []
polls = wasted = timed_out = 0
polled = False
while len(got) < want:
    try:
        data = os.read(fd, 4096)
    except BlockingIOError:
        if polled:
            wasted += 1
        start = time.monotonic()
        ready = p.poll(8000)
        polls += 1
        polled = True
        if not ready or time.monotonic() - start >= 7.5:
            timed_out += 1
            if not ready:
                break
        continue
    polled = False
    if not data:
        print("EOF", flush=True)
        break
    got.append(data)
try:
    got.append(b"EXTRA " + os.read(fd, 4096))
except BlockingIOError:
    pass
sys.stdout.write("".join(d.decode() for d in got))
print("polls timed out %d, followed by EAGAIN %d" % (timed_out, wasted), flush=True)
sys.stderr.write("%d polls\n" % polls)
"#;
    let mut py = python(script, &[s.to_str().unwrap(), &N.to_string()]);
    py.wait_output_contains(b"READY\n", T);
    let writer = "i=1; while [ $i -le 100 ]; do printf 'msg %d\\n' $i >> s; i=$((i+1)); done";
    let out = run_sh(writer, &m.path, T);
    assert!(out.status.success(), "writer: {:?}", String::from_utf8_lossy(&out.stderr));
    let status = finish(&mut py, PY_DEADLINE, "python event loop");
    assert!(status.success(), "python ended with {status}; stderr {:?}", err_str(&py));
    let expected: String = std::iter::once("READY\n".to_string())
        .chain((1..=N).map(|i| format!("msg {i}\n")))
        .chain(std::iter::once("polls timed out 0, followed by EAGAIN 0\n".to_string()))
        .collect();
    assert_eq!(out_str(&py), expected, "stderr {:?}", err_str(&py));
}
