//! Self-tests of the shared harness in `tests/common`. All but the last one
//! run without the filesystem; `mount_root_lists_ctl_and_order` needs the
//! `mqfs` binary to mount.

mod common;

use common::{Mount, Proc, TempDir, proc_state, run_sh, sh, wait_until};
use std::os::unix::process::ExitStatusExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        String::from("<non-string panic payload>")
    }
}

fn pid_gone_or_zombie(pid: u32) -> bool {
    matches!(proc_state(pid), None | Some('Z'))
}

#[test]
fn wait_until_returns_once_condition_holds() {
    let mut calls = 0;
    wait_until("third call", T, || {
        calls += 1;
        calls >= 3
    });
    assert_eq!(calls, 3);
}

#[test]
fn wait_until_times_out_with_panic_naming_what() {
    let start = Instant::now();
    let result =
        panic::catch_unwind(|| wait_until("the moon to turn blue", Duration::from_millis(100), || false));
    let elapsed = start.elapsed();
    let msg = panic_message(result.expect_err("wait_until must panic on timeout"));
    assert!(msg.contains("the moon to turn blue"), "message: {msg}");
    assert!(elapsed >= Duration::from_millis(100), "gave up early: {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "overshot: {elapsed:?}");
}

#[test]
fn proc_captures_output_and_exit_status() {
    let mut p = sh("echo hi; echo oops >&2; exit 3", Path::new("/"));
    p.wait_output_contains(b"hi", T);
    let status = p.wait_exit(T).expect("sh exits");
    assert_eq!(status.code(), Some(3));
    assert_eq!(p.output(), b"hi\n");
    assert_eq!(p.stderr_output(), b"oops\n");
}

#[test]
fn proc_wait_output_contains_fails_fast_on_eof() {
    let p = sh("echo something-else", Path::new("/"));
    let start = Instant::now();
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        p.wait_output_contains(b"never printed", Duration::from_secs(30))
    }));
    let msg = panic_message(result.expect_err("must panic"));
    assert!(msg.contains("EOF") && msg.contains("something-else"), "message: {msg}");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn run_sh_runs_to_completion_in_cwd() {
    let dir = TempDir::new();
    std::fs::write(dir.join("f"), "content").unwrap();
    let out = run_sh("cat f && pwd", &dir.path, T);
    assert!(out.status.success(), "{out:?}");
    let expected = format!("content{}\n", dir.path.display());
    assert_eq!(String::from_utf8_lossy(&out.stdout), expected);
}

#[test]
fn run_sh_panics_and_kills_on_timeout() {
    let dir = TempDir::new();
    let pid_file = dir.join("pid");
    let script = format!("echo $$ > {}; exec sleep 100", pid_file.display());
    let result = panic::catch_unwind(|| run_sh(&script, Path::new("/"), Duration::from_millis(300)));
    let msg = panic_message(result.expect_err("run_sh must panic on timeout"));
    assert!(msg.contains("did not finish"), "message: {msg}");
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    assert!(pid_gone_or_zombie(pid), "pid {pid} still alive: {:?}", proc_state(pid));
}

#[test]
fn proc_signal_delivers_sigint() {
    let mut p = Proc::spawn(Command::new("sleep").arg("100"));
    let pid = p.pid();
    wait_until("sleep to block", T, || proc_state(pid) == Some('S'));
    p.signal(libc::SIGINT);
    let status = p.wait_exit(T).expect("sleep dies of SIGINT");
    assert_eq!(status.signal(), Some(libc::SIGINT));
}

#[test]
fn proc_piped_stdin_and_blocked_state() {
    let mut p = Proc::spawn_piped_stdin(&mut Command::new("cat"));
    let pid = p.pid();
    // cat blocks in read(2) on the empty pipe: interruptible sleep.
    wait_until("cat to block reading stdin", T, || proc_state(pid) == Some('S'));
    p.write_stdin(b"hello\n");
    p.wait_output_contains(b"hello\n", T);
    p.close_stdin();
    let status = p.wait_exit(T).expect("cat exits on EOF");
    assert!(status.success());
    assert_eq!(p.output(), b"hello\n");
    assert_eq!(p.state(), None);
}

#[test]
fn proc_drop_kills_and_reaps() {
    let p = Proc::spawn(Command::new("sleep").arg("100"));
    let pid = p.pid();
    assert!(proc_state(pid).is_some());
    drop(p);
    // Reaped by Drop, so /proc/PID is gone (not even a zombie).
    assert_eq!(proc_state(pid), None, "pid {pid} left behind");
}

#[test]
fn proc_drop_kills_grandchildren_too() {
    let p = sh("sleep 100 & echo $!; wait", Path::new("/"));
    p.wait_output_contains(b"\n", T);
    let grandchild: u32 = String::from_utf8(p.output()).unwrap().trim().parse().unwrap();
    assert!(proc_state(grandchild).is_some());
    drop(p);
    // The orphaned grandchild is reaped by init (or lingers as a zombie if
    // this container's init does not reap): either way, not running.
    wait_until("grandchild sleep to die", T, || pid_gone_or_zombie(grandchild));
}

#[test]
fn mount_root_lists_ctl_and_order() {
    let m = Mount::new();
    let names: Vec<String> = std::fs::read_dir(&m.path)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}\nlog:\n{}", m.path.display(), m.log()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for want in ["ctl", "order"] {
        assert!(names.iter().any(|n| n == want), "root lists {names:?}, missing {want}\nlog:\n{}", m.log());
    }
    assert_eq!(m.join("ctl"), m.path.join("ctl"));
}
