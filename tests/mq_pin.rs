//! `mq-pin` sessions on real mounts, driven through real processes and real terminals
//! (pseudo-terminals opened here, with `mq-pin -a` on their slave side as on a user's
//! terminal): a session created, written to, attached, detached with Ctrl-\ while its program
//! keeps running, re-attached by two viewers at once that each get the whole history in order
//! and then live output; the program's end removing the session's streams (plain `cat`
//! readers end) and ending every viewer with its status; line editing, Ctrl-C, single
//! keystrokes and window-size changes on the program's pseudo-terminal; `--no-pty` sessions
//! with standard error apart and Ctrl-C through `note`; `-w` from arguments and standard
//! input; `-l`, `-k`; mounting by itself under `$XDG_RUNTIME_DIR`; the seed's detached shell
//! with plain mkdir/echo/cat and with `mq-pin NAME` in one line; errors and exit statuses.

mod common;

use common::{Mount, Proc, TempDir, is_mounted_at, proc_state, run_ok, wait_until};
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const MQ_PIN: &str = env!("CARGO_BIN_EXE_mq-pin");
const MQ_CAT: &str = env!("CARGO_BIN_EXE_mq-cat");
/// Generous: the machine may be busy.
const T: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `mq-pin -m DIR ARGS` with extra environment; returns (status, stdout, stderr).
fn pin_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut cmd = Command::new(MQ_PIN);
    cmd.arg("-m").arg(dir).args(args).envs(env.iter().copied());
    let mut p = Proc::spawn(&mut cmd);
    let status = p.wait_exit(T).unwrap_or_else(|| panic!("mq-pin {args:?} did not finish within {T:?}"));
    (status, text(&p.output()), text(&p.stderr_output()))
}

fn pin(dir: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    pin_env(dir, args, &[])
}

/// `mq-pin ARGS`, which must succeed; returns its output.
fn pin_ok(dir: &Path, args: &[&str]) -> String {
    let (status, out, err) = pin(dir, args);
    assert!(status.success(), "mq-pin {args:?}: {status:?}\n{err}");
    out
}

/// Everything a stream of a `replay all` group holds now.
fn history(path: &Path) -> Vec<u8> {
    let Ok(mut f) = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The supervisor's and the program's pids, from the session's `status`.
fn session_pids(group: &Path) -> Option<(i32, i32)> {
    let status = text(&history(&group.join("status")));
    let line = status.lines().find(|l| l.starts_with("run "))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    Some((words[1].parse().ok()?, words[2].parse().ok()?))
}

fn alive(pid: i32) -> bool {
    !matches!(proc_state(pid as u32), None | Some('Z'))
}

/// The children of `pid` named `comm`.
fn children_named(pid: i32, comm: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some((name, rest)) = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") ")) else {
            continue;
        };
        let ppid: i32 = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        if name == comm && ppid == pid && alive(child) {
            found.push(child);
        }
    }
    found
}

/// Kills the supervisors and programs of sessions a test leaves running (it failed, or they
/// are not its subject), so that no process outlives the test. Drop it before the mount.
struct Sessions {
    groups: Vec<PathBuf>,
}

impl Sessions {
    fn new(dir: &Path, names: &[&str]) -> Sessions {
        Sessions { groups: names.iter().map(|n| dir.join(n)).collect() }
    }
}

impl Drop for Sessions {
    fn drop(&mut self) {
        for group in &self.groups {
            if let Some((supervisor, program)) = session_pids(group) {
                for pid in [program, supervisor] {
                    if alive(pid) {
                        // SAFETY: kill/killpg have no memory-safety preconditions.
                        unsafe {
                            libc::killpg(pid, libc::SIGKILL);
                            libc::kill(pid, libc::SIGKILL);
                        }
                    }
                }
                let deadline = Instant::now() + Duration::from_secs(5);
                while (alive(program) || alive(supervisor)) && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
}

/// `mq-pin -a` (or other arguments) on a pseudo-terminal of its own, as on a user's terminal:
/// a new session whose controlling terminal is the slave side; the test types on the master
/// side and reads what the terminal shows.
struct Viewer {
    child: Child,
    master: Arc<File>,
    screen: Arc<Mutex<Vec<u8>>>,
}

impl Viewer {
    fn attach(dir: &Path, name: &str, rows: u16, cols: u16) -> Viewer {
        Viewer::run(dir, &["-a", name], rows, cols, &[])
    }

    fn run(dir: &Path, args: &[&str], rows: u16, cols: u16, env: &[(&str, &str)]) -> Viewer {
        let (mut master, mut slave) = (-1, -1);
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: valid out-pointers; name and termios may be null.
        let rc =
            unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &ws) };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: two new descriptors owned by nothing else.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let mut cmd = Command::new(MQ_PIN);
        cmd.arg("-m").arg(dir).args(args).envs(env.iter().copied());
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        let master_fd = master.as_raw_fd();
        // SAFETY: async-signal-safe calls only.
        unsafe {
            cmd.pre_exec(move || {
                libc::close(master_fd);
                libc::setsid();
                if libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn mq-pin on a pseudo-terminal");
        drop(cmd); // our copies of the slave side: the terminal hangs up when mq-pin is gone
        let master = Arc::new(master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let (m, s) = (master.clone(), screen.clone());
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once no process has the slave side open.
            while let Ok(n) = (&*m).read(&mut buf) {
                if n == 0 {
                    break;
                }
                s.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Viewer { child, master, screen }
    }

    fn screen(&self) -> Vec<u8> {
        self.screen.lock().unwrap().clone()
    }

    /// Types `keys` on the terminal.
    fn keys(&self, keys: &[u8]) {
        (&*self.master).write_all(keys).unwrap();
    }

    /// Waits until the terminal showed `needle`.
    fn wait_for(&self, needle: &[u8]) {
        let start = Instant::now();
        while !contains(&self.screen(), needle) {
            assert!(
                start.elapsed() < T,
                "timed out waiting for {:?} on the terminal of mq-pin (pid {}); it shows:\n{:?}",
                text(needle),
                self.child.id(),
                text(&self.screen())
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Resizes the terminal: the kernel sends SIGWINCH to mq-pin.
    fn resize(&self, rows: u16, cols: u16) {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: a valid winsize for TIOCSWINSZ.
        let rc = unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        assert_eq!(rc, 0);
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < T,
                "mq-pin (pid {}) did not exit; its terminal shows:\n{:?}",
                self.child.id(),
                text(&self.screen())
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// Sessions on a pseudo-terminal
// ---------------------------------------------------------------------------

#[test]
fn detach_then_two_viewers_at_once_get_the_whole_history_in_order_then_live_output() {
    let m = Mount::new();
    let dir = m.path.clone();
    let sessions = Sessions::new(&dir, &["s"]);
    let group = dir.join("s");
    let (status, out, err) = pin_env(&dir, &["-c", "s", "sh"], &[("PS1", "P> ")]);
    assert!(status.success() && out.is_empty() && err.is_empty(), "{status:?} {out} {err}");
    assert_eq!(fs::read_to_string(group.join("ctl")).unwrap().lines().nth(1), Some("replay all"));

    // Written to before anyone attached.
    pin_ok(&dir, &["-w", "s", "echo one-$((1+1))"]);
    wait_until("the program answered", T, || contains(&history(&group.join("1")), b"one-2\r\n"));

    // A viewer gets that history, types a command, and detaches with Ctrl-\.
    let mut a = Viewer::attach(&dir, "s", 30, 100);
    a.wait_for(b"one-2\r\nP> ");
    a.keys(b"echo two-$((2+1))\r");
    a.wait_for(b"two-3\r\nP> ");
    a.keys(b"\x1c");
    assert!(a.wait_exit().success());
    a.wait_for(b"[mq-pin: detached from s]");

    // The program runs on.
    let (_, program) = session_pids(&group).unwrap();
    assert!(alive(program));
    assert_eq!(pin_ok(&dir, &["-l"]), format!("s\trunning {program}\n"));

    // Two viewers at once: each gets the whole history, in order, then what comes live.
    let b = Viewer::attach(&dir, "s", 30, 100);
    let c = Viewer::attach(&dir, "s", 30, 100);
    b.wait_for(b"two-3\r\nP> ");
    c.wait_for(b"two-3\r\nP> ");
    pin_ok(&dir, &["-w", "s", "echo three-$((3+1))"]);
    b.wait_for(b"three-4\r\nP> ");
    c.wait_for(b"three-4\r\nP> ");
    let whole = history(&group.join("1"));
    assert!(whole.ends_with(b"three-4\r\nP> "), "{:?}", text(&whole));
    let one = whole.windows(5).position(|w| w == b"one-2").unwrap();
    let two = whole.windows(5).position(|w| w == b"two-3").unwrap();
    assert!(one < two);
    for v in [&b, &c] {
        wait_until("the viewer shows exactly the session's output", T, || v.screen() == whole);
    }

    // A plain reader of the output stream, as in mq(4)'s example.
    let mut cat = Proc::spawn(Command::new("cat").arg(group.join("1")));
    cat.wait_output_contains(b"three-4", T);

    // The program ends: the viewers end with its status, plain readers at end-of-file.
    let (mut b, mut c) = (b, c);
    pin_ok(&dir, &["-w", "s", "exit 7"]);
    assert_eq!(b.wait_exit().code(), Some(7));
    assert_eq!(c.wait_exit().code(), Some(7));
    b.wait_for(b"[mq-pin: s: exited with status 7]");
    let status = cat.wait_exit(T).expect("cat of a session's output ends with the session");
    assert!(status.success());
    assert!(cat.output().starts_with(&whole));
    assert!(!alive(program));
    for stream in ["0", "1", "2", "note"] {
        assert!(!group.join(stream).exists(), "{stream} is still there");
    }
    assert_eq!(pin_ok(&dir, &["-l"]), "s\texited 7\n");
    // Attaching later tells how it ended; -k removes it.
    let (status, _, _) = pin(&dir, &["-a", "s"]);
    assert_eq!(status.code(), Some(7));
    pin_ok(&dir, &["-k", "s"]);
    assert!(!group.exists());
    assert_eq!(pin_ok(&dir, &["-l"]), "");
    assert!(is_mounted_at(&dir, Some("fuse.mqfs")), "-k unmounted a mount mq-pin did not make");
    drop(sessions);
}

#[test]
fn a_pty_session_has_line_editing_ctrl_c_keystrokes_and_window_sizes() {
    let m = Mount::new();
    let dir = m.path.clone();
    let _sessions = Sessions::new(&dir, &["t"]);
    let group = dir.join("t");
    let (status, _, err) = pin_env(&dir, &["-c", "t", "--", "sh"], &[("PS1", "P> ")]);
    assert!(status.success(), "{err}");
    let mut v = Viewer::attach(&dir, "t", 30, 100);
    v.wait_for(b"P> ");

    // It is a terminal, of the viewer's size (sent on attach).
    v.keys(b"tty; stty size\r");
    v.wait_for(b"/dev/pts/");
    v.wait_for(b"\r\n30 100\r\nP> ");

    // The terminal's line editing: DEL rubs out the x.
    v.keys(b"echo abx\x7fc\r");
    v.wait_for(b"\r\nabc\r\nP> ");
    assert!(!contains(&v.screen(), b"\r\nabx"));

    // Ctrl-C interrupts the foreground command.
    let (_, program) = session_pids(&group).unwrap();
    v.keys(b"sleep 60\r");
    wait_until("sleep runs", T, || !children_named(program, "sleep").is_empty());
    v.keys(b"\x03");
    wait_until("sleep was interrupted", T, || children_named(program, "sleep").is_empty());
    v.wait_for(b"sleep 60\r\n^C");
    v.keys(b"echo after-$((40+2))\r");
    v.wait_for(b"after-42\r\nP> ");

    // A program reading single keystrokes in raw mode, as full-screen programs do.
    v.keys(b"python3 -c 'import os,tty,termios; t=termios.tcgetattr(0); tty.setraw(0); os.write(1,b\"raw-%d>\" % (6*7)); c=os.read(0,1); termios.tcsetattr(0,termios.TCSADRAIN,t); os.write(1,b\"key:\"+c.upper()+b\"!\")'\r");
    v.wait_for(b"raw-42>");
    v.keys(b"q");
    v.wait_for(b"key:Q!P> ");

    // Window-size changes reach the program through `note`.
    v.resize(33, 101);
    wait_until("the viewer sent the new size", T, || {
        contains(&history(&group.join("note")), b"winch 33 101\n")
    });
    v.keys(b"stty size\r");
    v.wait_for(b"\r\n33 101\r\nP> ");

    v.keys(b"exit 3\r");
    assert_eq!(v.wait_exit().code(), Some(3));
}

// ---------------------------------------------------------------------------
// Sessions with plain files
// ---------------------------------------------------------------------------

const PY_ECHO: &str = r#"
import signal, sys
signal.signal(signal.SIGINT, lambda *a: print("got-int", flush=True))
for line in sys.stdin:
    print("out:" + line, end="", flush=True)
    print("err:" + line, end="", file=sys.stderr, flush=True)
"#;

#[test]
fn a_no_pty_session_keeps_errors_apart_and_gets_ctrl_c_through_note() {
    let m = Mount::new();
    let dir = m.path.clone();
    let _sessions = Sessions::new(&dir, &["np"]);
    let group = dir.join("np");
    pin_ok(&dir, &["--no-pty", "-c", "np", "python3", "-c", PY_ECHO]);
    pin_ok(&dir, &["-w", "np", "a"]);
    pin_ok(&dir, &["-w", "np", "b"]);
    // A viewer without a terminal (standard input at end-of-file) only watches.
    let mut viewer = Proc::spawn(Command::new(MQ_PIN).arg("-m").arg(&dir).args(["-a", "np"]));
    viewer.wait_output_contains(b"out:a\nerr:a\nout:b\nerr:b\n", T);
    assert_eq!(history(&group.join("1")), b"out:a\nout:b\n");
    assert_eq!(history(&group.join("2")), b"err:a\nerr:b\n");

    // Ctrl-C on a viewer (SIGINT) reaches the program as `int` on `note`.
    viewer.signal(libc::SIGINT);
    viewer.wait_output_contains(b"got-int\n", T);
    assert!(contains(&history(&group.join("note")), b"int\n"));
    assert!(!viewer.has_exited());

    // -w copies standard input, one message per read.
    let mut w = Proc::spawn_piped_stdin(Command::new(MQ_PIN).arg("-m").arg(&dir).args(["-w", "np"]));
    w.write_stdin(b"c\n");
    w.close_stdin();
    assert!(w.wait_exit(T).unwrap().success());
    viewer.wait_output_contains(b"err:b\ngot-int\nout:c\nerr:c\n", T);

    // -k hangs the program up and removes the session; the viewer ends with the status.
    pin_ok(&dir, &["-k", "np"]);
    let status = viewer.wait_exit(T).expect("the viewer ends with the program");
    assert_eq!(status.code(), Some(128 + libc::SIGHUP));
    assert!(!group.exists());
}

// ---------------------------------------------------------------------------
// Where sessions live
// ---------------------------------------------------------------------------

/// Unmounts what mq-pin mounted under a temporary directory, even if the test failed, and
/// makes sure its daemon is gone.
struct OwnMount {
    path: PathBuf,
}

fn daemons_for(path: &Path) -> Vec<i32> {
    let want = path.as_os_str().as_bytes();
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args.first().is_some_and(|a| a.ends_with(b"mqfs")) && args.contains(&want) && alive(pid) {
            pids.push(pid);
        }
    }
    pids
}

impl Drop for OwnMount {
    fn drop(&mut self) {
        let c = CString::new(self.path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while !daemons_for(&self.path).is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        for pid in daemons_for(&self.path) {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn mq_pin_mounts_mqfs_itself_under_xdg_runtime_dir() {
    let tmp = TempDir::new();
    let dir = tmp.join("mq-pin");
    let own = OwnMount { path: dir.clone() };
    let sessions = Sessions::new(&dir, &["job", "other"]);
    let run = |args: &[&str]| {
        let mut cmd = Command::new(MQ_PIN);
        cmd.args(args).env("XDG_RUNTIME_DIR", &tmp.path).env_remove("MQ_PIN_DIR");
        let mut p = Proc::spawn(&mut cmd);
        let status = p.wait_exit(T).expect("mq-pin finishes");
        (status, text(&p.output()), text(&p.stderr_output()))
    };
    // Nothing mounted: nothing listed, and -l mounts nothing.
    assert_eq!(run(&["-l"]).1, "");
    assert!(!is_mounted_at(&dir, None));
    let (status, _, err) =
        run(&["-c", "job", "--", "sh", "-c", "echo started; read x; echo \"got $x\"; exit 3"]);
    assert!(status.success(), "{err}");
    assert!(is_mounted_at(&dir, Some("fuse.mqfs")), "mq-pin mounted mqfs on {}", dir.display());
    assert!(run(&["-l"]).1.starts_with("job\trunning "));
    assert!(run(&["-w", "job", "go"]).0.success());
    wait_until("the job ended", T, || run(&["-l"]).1 == "job\texited 3\n");
    assert_eq!(run(&["-a", "job"]).0.code(), Some(3));
    // A second session reuses the mount; on a pseudo-terminal it has a stream 2 too, empty.
    let mounts = common::mountinfo().iter().filter(|m| m.mount_point == dir).count();
    assert!(run(&["-c", "job", "sleep", "1000"]).0.success(), "an ended session's name can be reused");
    assert_eq!(common::mountinfo().iter().filter(|m| m.mount_point == dir).count(), mounts);
    assert!(dir.join("job/2").exists() && history(&dir.join("job/2")).is_empty());
    let daemons = daemons_for(&dir);
    assert_eq!(daemons.len(), 1, "{daemons:?}");
    // Removing the last session unmounts what mq-pin mounted, which ends its daemon.
    assert!(run(&["-c", "other", "true"]).0.success());
    assert!(run(&["-k", "job"]).0.success());
    assert!(is_mounted_at(&dir, Some("fuse.mqfs")), "a session is left: the mount stays");
    assert!(run(&["-k", "other"]).0.success());
    assert!(!is_mounted_at(&dir, None), "mq-pin's own mount outlived its last session");
    wait_until("mq-pin's mqfs daemon to exit", T, || daemons_for(&dir).is_empty());
    assert_eq!(run(&["-l"]).1, "");
    drop(sessions);
    drop(own);
}

// ---------------------------------------------------------------------------
// The seed's detached shell
// ---------------------------------------------------------------------------

#[test]
fn the_detached_shell_with_mkdir_echo_and_cat() {
    let m = Mount::new();
    // As the README shows it: a group with replay all, three streams, a shell on them.
    run_ok("mkdir rc && cd rc && echo replay all > ctl && touch 0 1 2", &m.path);
    let rc = m.join("rc");
    let mut shell = Proc::spawn(
        Command::new("sh").arg("-c").arg("exec sh -i <0 >>1 2>>2").current_dir(&rc).env("PS1", "$ "),
    );
    run_ok("echo 'echo hi-$((6*7))' >> 0", &rc);
    // Attach: late readers of 1 and 2 get the history, then live output.
    let out = Proc::spawn(Command::new("cat").arg(rc.join("1")));
    let errs = Proc::spawn(Command::new("cat").arg(rc.join("2")));
    out.wait_output_contains(b"hi-42\n", T);
    errs.wait_output_contains(b"$ ", T);
    let mut input = OpenOptions::new().append(true).open(rc.join("0")).unwrap();
    input.write_all(b"echo live >&2; exit 4\n").unwrap();
    errs.wait_output_contains(b"live\n", T);
    assert_eq!(shell.wait_exit(T).and_then(|s| s.code()), Some(4));
    // mq-cat puts 1 and 2 back together in the order they were written.
    let all = Command::new(MQ_CAT).args(["-n", "rc", "1", "2"]).current_dir(&m.path).output().unwrap();
    // (Before them, sh may complain that it has no terminal for job control.)
    let all = text(&all.stdout);
    let before = all.strip_suffix("$ hi-42\n$ live\n").unwrap_or_else(|| panic!("{all}"));
    assert!(before.is_empty() || before.ends_with('\n'), "{all}");
}

#[test]
fn mq_pin_name_creates_or_attaches_in_one_line() {
    let m = Mount::new();
    let dir = m.path.clone();
    let _sessions = Sessions::new(&dir, &["rc"]);
    let env = [("PS1", "P> ")];
    let mut first = Viewer::run(&dir, &["rc", "sh"], 24, 80, &env);
    first.wait_for(b"P> ");
    first.keys(b"echo first-$((2*2))\r");
    first.wait_for(b"first-4\r\nP> ");
    first.keys(b"\x1c");
    assert!(first.wait_exit().success());
    let (_, program) = session_pids(&dir.join("rc")).unwrap();
    assert!(alive(program));
    // The same line again attaches to the same program, with its history; -e chooses
    // another detach key, and Ctrl-\ then goes to the program (an interactive sh ignores it).
    let mut second = Viewer::run(&dir, &["-e", "^]", "rc"], 24, 80, &env);
    second.wait_for(b"first-4\r\nP> ");
    second.keys(b"\x1c");
    second.keys(b"echo $$\r");
    second.wait_for(format!("{program}\r\n").as_bytes());
    second.keys(b"\x1d");
    assert!(second.wait_exit().success());
    second.wait_for(b"[mq-pin: detached from rc]");
    assert!(alive(program));
    pin_ok(&dir, &["-w", "rc", "exit"]);
    wait_until("the shell ended", T, || !alive(program));
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

#[test]
fn errors_and_exit_statuses() {
    let m = Mount::new();
    let dir = m.path.clone();
    let _sessions = Sessions::new(&dir, &["s"]);
    let cases: &[(&[&str], i32, &str)] = &[
        (&["-w", "nope", "x"], 1, "mq-pin: nope: no such session\n"),
        (&["-a", "nope"], 1, "mq-pin: nope: no such session\n"),
        (&["-k", "nope"], 1, "mq-pin: nope: no such session\n"),
        (
            &["-c", "bad", "/nonexistent/program"],
            127,
            "mq-pin: /nonexistent/program: No such file or directory\n",
        ),
        (&["-c", "ctl"], 2, "mq-pin: ctl: a reserved name\n"),
        (&["-c", "a/b"], 2, "mq-pin: a/b: not a session name\n"),
        (
            &["-e", "^1", "-a", "x"],
            2,
            "mq-pin: ^1: not a control key (^@ ... ^_, ^?)\nTry 'mq-pin --help' for more information.\n",
        ),
    ];
    for (args, code, message) in cases {
        let (status, out, err) = pin(&dir, args);
        assert_eq!(
            (status.code(), err.as_str(), out.as_str()),
            (Some(*code), *message, ""),
            "mq-pin {args:?}"
        );
    }
    assert!(!dir.join("bad").exists(), "a session whose program could not start is removed");
    for args in [&[][..], &["-l", "x"][..], &["-a", "s", "x"][..], &["-a", "s", "-l"][..]] {
        assert_eq!(pin(&dir, args).0.code(), Some(2), "mq-pin {args:?}");
    }
    pin_ok(&dir, &["--no-pty", "-c", "s", "cat"]);
    let (status, _, err) = pin(&dir, &["-c", "s", "cat"]);
    assert_eq!((status.code(), err.as_str()), (Some(1), "mq-pin: s: session exists\n"));
    pin_ok(&dir, &["-k", "s"]);
    let (status, _, err) = pin(&dir, &["-w", "s", "x"]);
    assert_eq!((status.code(), err.as_str()), (Some(1), "mq-pin: s: no such session\n"));
    // --help names every mode.
    let help = pin_ok(&dir, &["--help"]);
    for flag in ["-c NAME", "-a NAME", "-w NAME", "-l", "-k NAME", "-m DIR", "--no-pty", "-e KEY"] {
        assert!(help.contains(flag), "--help lacks {flag}");
    }
    // ... and every place sessions may live, as default_dir picks them.
    for place in ["$MQ_PIN_DIR", "$XDG_RUNTIME_DIR/mq-pin", "/run/user/UID/mq-pin", "/tmp/mq-pin-UID"] {
        assert!(help.contains(place), "--help lacks {place}:\n{help}");
    }
}
