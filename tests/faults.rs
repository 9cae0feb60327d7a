//! Faults: readers and writers killed with SIGKILL in the middle of reads and writes (the
//! other readers get every message whole, the killed writers' messages form a gap-free prefix
//! with no partial message, ctl's reader count returns to the survivors, nothing stays
//! retained or charged); 10,000 readers blocked in read(2) at once and then killed (ctl counts
//! no reader of them, the mount serves on); the daemon killed with SIGKILL while readers, a
//! writer and a poller are blocked (each gets ECONNABORTED or ENOTCONN at once; after `umount`
//! a new daemon mounts on the same mount point); unmounting with readers blocked (plain
//! `umount` fails EBUSY and the mount serves on; `umount -l` releases them and the daemon
//! exits 0); a flood past the memory ceiling (writes fail ENOSPC and publish nothing, the
//! daemon's memory stays within the ceiling, readers keep reading every accepted message, and
//! writes succeed again once they have).

mod common;
mod mqcheck;

use common::{Mount, Proc, blocked_in_syscall, is_mounted_at, poll_until, proc_syscall, wait_until};
use mqcheck::{
    assert_healthy, ctl_count, finish, join, json_u64, mqcheck, opts, python, sized, status_kib, text,
};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// `statvfs` blocks and free blocks of the mount (df's view of the memory ceiling).
fn df(path: &Path) -> (u64, u64) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: statvfs(3) fills the zeroed struct we pass; c is NUL-terminated.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut st), 0, "statvfs {}", path.display());
        (st.f_blocks, st.f_bfree)
    }
}

fn wait_readers(m: &Mount, ctl: &str, n: u64, deadline: Duration) {
    let ctl = m.join(ctl);
    wait_until(&format!("{} to count {n} readers", ctl.display()), deadline, || {
        ctl_count(&ctl, "readers") == n
    });
}

/// Waits until `p` is asleep in system call `nr` (so it is killed in the middle of it).
fn wait_in_syscall(p: &mut Proc, nr: libc::c_long, what: &str) {
    let pid = p.pid();
    wait_until(what, T, || {
        assert!(!p.has_exited(), "{what}: it exited: {}{}", text(&p.output()), text(&p.stderr_output()));
        blocked_in_syscall(pid, nr)
    });
}

/// Like [`wait_in_syscall`] but polling without pause, so that the kill lands as early in
/// the call as possible: for a big write(2), while its first request is being taken in.
fn spin_until_in_syscall(p: &mut Proc, nr: libc::c_long, what: &str) {
    let (pid, start) = (p.pid(), Instant::now());
    while !blocked_in_syscall(pid, nr) {
        assert!(start.elapsed() < T, "timed out after {T:?} waiting for: {what}");
        assert!(!p.has_exited(), "{what}: it exited: {}{}", text(&p.output()), text(&p.stderr_output()));
    }
}

fn kill9(p: &mut Proc, what: &str) -> Duration {
    let start = Instant::now();
    p.signal(libc::SIGKILL);
    let status = p.wait_exit(T).unwrap_or_else(|| panic!("{what} survived SIGKILL for {T:?}"));
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL), "{what}");
    start.elapsed()
}

// ---------------------------------------------------------------------------
// Killed readers and writers
// ---------------------------------------------------------------------------

#[test]
fn readers_and_writers_killed_mid_call_leave_the_others_whole() {
    let m = Mount::new();
    std::fs::create_dir(m.join("g")).unwrap();
    for s in ["g/s0", "g/s1"] {
        std::fs::write(m.join(s), b"").unwrap();
    }
    // Survivors: writers 0 and 1 (a pause half way, while the victims die), four readers.
    // Victims: writers 1000.. (every message 1.1-3.1 MB, so several write requests), one
    // after the other, and four readers, two of them reading those messages 1000 bytes at a
    // time.
    let count: u32 = sized(300, 3000);
    let survivors = [0u32, 1];
    let victims: Vec<u32> = (1000..1000 + sized(12, 40)).collect();
    let reader = |index: u32, buf: u32| {
        let mut a = opts(&[
            ("path", &format!("g/s{index}")),
            ("index", &index.to_string()),
            ("streams-count", "2"),
            ("buf", &buf.to_string()),
            ("writers", &join(survivors)),
            ("prefix-writers", &join(&victims)),
            ("count", &count.to_string()),
        ]);
        a.push("--big".into());
        mqcheck("reader", &a, &m.path)
    };
    let mut readers: Vec<Proc> = [(0, 65536), (1, 4096), (0, 1500), (1, 2 << 20)]
        .into_iter()
        .map(|(index, buf)| reader(index, buf))
        .collect();
    let mut victim_readers: Vec<Proc> =
        [(0, 1000), (1, 1000), (0, 2 << 20), (1, 65536)].into_iter().map(|(i, b)| reader(i, b)).collect();
    wait_readers(&m, "g/ctl", 8, T);

    let writer = |id: u32, n: i64, pause: bool| {
        let mut a = opts(&[("id", &id.to_string()), ("count", &n.to_string()), ("streams", "g/s0,g/s1")]);
        a.push("--big".into());
        let at = if pause { "pause-at" } else { "tell-at" };
        a.extend(opts(&[(at, &(if pause { count / 2 } else { 3 }).to_string())]));
        mqcheck("writer", &a, &m.path)
    };
    let mut writers: Vec<Proc> = survivors.iter().map(|&w| writer(w, i64::from(count), true)).collect();

    // Each victim dies inside its system call: a writer (after 3 messages) in the middle of
    // a multi-request message, a reader in the middle of a read.
    for &id in &victims {
        let mut v = writer(id, -1, false);
        v.wait_output_contains(b"wrote 3\n", T);
        spin_until_in_syscall(&mut v, libc::SYS_write, &format!("victim writer {id} to be in write(2)"));
        kill9(&mut v, &format!("victim writer {id}"));
    }
    for (i, v) in victim_readers.iter_mut().enumerate() {
        wait_in_syscall(v, libc::SYS_read, &format!("victim reader {i} to be in read(2)"));
        kill9(v, &format!("victim reader {i}"));
    }
    // No reader state is left behind.
    wait_readers(&m, "g/ctl", 4, T);

    // The survivors go on; their readers get everything.
    for (i, w) in writers.iter_mut().enumerate() {
        w.wait_output_contains(b"paused\n", T);
        w.write_stdin(b"go\n");
        let line = finish(w, &format!("writer {i}"), Duration::from_secs(300));
        assert_eq!(json_u64(&line, "written"), u64::from(count), "{line}");
    }
    // Every message was read by every reader: nothing is retained, and nothing is charged
    // against the memory ceiling (a killed writer's half-assembled message included).
    wait_until("nothing retained once the survivors read everything", T, || {
        ctl_count(&m.join("g/ctl"), "messages") == 0 && ctl_count(&m.join("g/ctl"), "bytes") == 0
    });
    wait_until("df to show the whole ceiling free", T, || {
        let (blocks, free) = df(&m.path);
        blocks == free
    });

    std::fs::remove_file(m.join("g/s0")).unwrap();
    std::fs::remove_file(m.join("g/s1")).unwrap();
    let mut got = Vec::new();
    for (i, r) in readers.iter_mut().enumerate() {
        r.close_stdin();
        let line = finish(r, &format!("reader {i}"), T);
        got.push(line);
    }
    // Readers of the same stream got the same prefix of each killed writer's messages, and
    // the killed writers had published some.
    for &v in &victims {
        let n = |line: &String| json_u64(&line[line.find("\"got\"").unwrap()..], &v.to_string());
        assert_eq!(n(&got[0]), n(&got[2]), "readers of g/s0 disagree on writer {v}:\n{}\n{}", got[0], got[2]);
        assert_eq!(n(&got[1]), n(&got[3]), "readers of g/s1 disagree on writer {v}:\n{}\n{}", got[1], got[3]);
        assert!(n(&got[0]) + n(&got[1]) >= 3, "killed writer {v} published less than it wrote: {got:?}");
    }
    assert_healthy(&m);
}

// ---------------------------------------------------------------------------
// 10,000 blocked readers
// ---------------------------------------------------------------------------

/// How many threads of `pid` are asleep in read(2).
fn threads_in_read(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(|t| t.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&tid| blocked_in_syscall(tid, libc::SYS_read))
        .count()
}

#[test]
fn ten_thousand_blocked_readers_killed_leave_no_reader_behind() {
    // 10 processes × 1000 threads, each blocked in read(2) on its own descriptor. The soak
    // repeats the round rather than growing it: pid_max (32768 here) bounds the threads.
    let (procs, threads, rounds) = sized((10, 1000, 1), (10, 1000, 5));
    let total = procs * threads;
    let m = Mount::new();
    std::fs::write(m.join("s"), b"").unwrap();
    let witness = Proc::spawn(Command::new("cat").arg(m.join("s")));
    let witness_pid = witness.pid();
    let mut rss_after_first = 0;
    for round in 0..rounds {
        let mut blockers: Vec<Proc> = (0..procs)
            .map(|_| mqcheck("blocker", &opts(&[("path", "s"), ("threads", &threads.to_string())]), &m.path))
            .collect();
        for b in &blockers {
            b.wait_output_contains(b"ready\n", Duration::from_secs(120));
        }
        wait_readers(&m, "ctl", total as u64 + 1, Duration::from_secs(120));
        wait_until(&format!("{total} threads blocked in read(2)"), Duration::from_secs(120), || {
            blockers.iter().map(|b| threads_in_read(b.pid())).sum::<usize>() == total
                && blocked_in_syscall(witness_pid, libc::SYS_read)
        });
        for (i, b) in blockers.iter_mut().enumerate() {
            kill9(b, &format!("blocker {i} of round {round}"));
        }
        // Every cursor of the killed readers goes; the witness stays and is served.
        wait_readers(&m, "ctl", 1, Duration::from_secs(120));
        let msg = format!("still served after round {round}\n");
        std::fs::write(m.join("s"), &msg).unwrap();
        witness.wait_output_contains(msg.as_bytes(), T);
        assert_eq!(ctl_count(&m.join("ctl"), "messages"), 0);
        if round == 0 {
            rss_after_first = status_kib(m.pid(), "VmRSS");
        }
    }
    // Rounds leave nothing behind: the daemon does not grow from one to the next.
    let grown = status_kib(m.pid(), "VmRSS").saturating_sub(rss_after_first);
    assert!(grown < 16 << 10, "the daemon grew by {grown} KiB over {rounds} rounds");
    assert!(poll_until(T, || blocked_in_syscall(witness_pid, libc::SYS_read)), "cat blocks again");
    assert_healthy(&m);
}

// ---------------------------------------------------------------------------
// The daemon killed
// ---------------------------------------------------------------------------

/// Reads one message from argv[1] (waiting in select first if argv[2] is "select") and prints
/// "ok" or the errno's name.
const BLOCKED_READER: &str = r#"
import errno, os, select, sys
try:
    fd = os.open(sys.argv[1], os.O_RDONLY)
    print("open", flush=True)
    if sys.argv[2] == "select":
        select.select([fd], [], [])
    os.read(fd, 4096)
    print("ok", flush=True)
except OSError as e:
    print(errno.errorcode[e.errno], flush=True)
"#;

/// Writes argv[1] one message and prints "ok" or the errno's name.
const BLOCKED_WRITER: &str = r#"
import errno, os, sys
try:
    fd = os.open(sys.argv[1], os.O_WRONLY)
    os.write(fd, b"waiting for a reader\n")
    print("ok", flush=True)
except OSError as e:
    print(errno.errorcode[e.errno], flush=True)
"#;

fn py(script: &str, args: &[&str], cwd: &Path) -> Proc {
    Proc::spawn(Command::new(python()).arg("-c").arg(script).args(args).current_dir(cwd))
}

/// Blocked clients of every kind: two `cat`s, a Python read, a Python select, and a writer
/// blocked under `write one` with no reader. Returns them once each sleeps in its call.
fn blocked_clients(m: &Mount) -> Vec<(&'static str, Proc)> {
    std::fs::create_dir(m.join("w")).unwrap();
    std::fs::write(m.join("w/ctl"), "write one\n").unwrap();
    std::fs::write(m.join("w/s"), b"").unwrap();
    std::fs::write(m.join("s"), b"").unwrap();
    let mut clients = vec![
        ("cat 1", Proc::spawn(Command::new("cat").arg("s").current_dir(&m.path))),
        ("cat 2", Proc::spawn(Command::new("cat").arg("s").current_dir(&m.path))),
        ("python read", py(BLOCKED_READER, &["s", "read"], &m.path)),
        ("python select", py(BLOCKED_READER, &["s", "select"], &m.path)),
        ("writer", py(BLOCKED_WRITER, &["w/s"], &m.path)),
    ];
    for (what, p) in &mut clients {
        let nr = match *what {
            "writer" => libc::SYS_write,
            "python select" => libc::SYS_select,
            _ => libc::SYS_read,
        };
        let pid = p.pid();
        wait_until(&format!("{what} to block"), T, || {
            blocked_in_syscall(pid, nr)
                || (nr == libc::SYS_select && blocked_in_syscall(pid, libc::SYS_pselect6))
        });
    }
    clients
}

/// Each client returns within `within` with a connection error.
fn assert_released(clients: &mut [(&'static str, Proc)], within: Duration) {
    for (what, p) in clients.iter_mut() {
        let status = p.wait_exit(within).unwrap_or_else(|| {
            panic!(
                "{what} still blocked (syscall {:?}) {within:?} after the connection went",
                proc_syscall(p.pid())
            )
        });
        let (out, err) = (text(&p.output()), text(&p.stderr_output()));
        if what.starts_with("cat") {
            assert!(!status.success(), "{what} exited 0: {out}");
            assert!(
                err.contains("Software caused connection abort")
                    || err.contains("Transport endpoint is not connected"),
                "{what}: {err}"
            );
        } else {
            let last = out.lines().last().unwrap_or_default();
            assert!(["ECONNABORTED", "ENOTCONN"].contains(&last), "{what}: {out}{err}");
        }
    }
}

#[test]
fn the_daemon_killed_releases_blocked_clients_and_the_mount_point_mounts_again() {
    let mut m = Mount::new();
    let mut clients = blocked_clients(&m);
    m.kill9();
    assert_released(&mut clients, T);
    // The dead mount answers ENOTCONN, until it is unmounted.
    let err = std::fs::metadata(&m.path).expect_err("stat of a dead mount");
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    let out = Command::new("umount").arg(&m.path).output().unwrap();
    assert!(out.status.success(), "umount of the dead mount: {}", text(&out.stderr));
    assert!(!is_mounted_at(&m.path, None));

    // A new daemon mounts on the same mount point and serves.
    let mut again =
        Proc::spawn(Command::new(common::MQFS_BIN).arg(&m.path).arg("-f").arg("-o").arg("replay=all"));
    wait_until("the new daemon to mount", T, || is_mounted_at(&m.path, Some("fuse.mqfs")));
    std::fs::write(m.join("s"), b"").unwrap();
    std::fs::write(m.join("s"), b"hello again\n").unwrap();
    let cat = Proc::spawn(Command::new("cat").arg(m.join("s")));
    cat.wait_output_contains(b"hello again\n", T);
    drop(cat);
    again.signal(libc::SIGTERM);
    let status = again.wait_exit(T).expect("the new daemon stops on SIGTERM");
    assert!(status.success(), "{status}: {}", text(&again.stderr_output()));
    assert!(!is_mounted_at(&m.path, None));
}

// ---------------------------------------------------------------------------
// Unmounting with blocked clients
// ---------------------------------------------------------------------------

#[test]
fn umount_with_blocked_readers_is_busy_and_umount_l_releases_them() {
    let mut m = Mount::new();
    let mut clients = blocked_clients(&m);

    // Plain umount refuses while files are open (Linux: EBUSY), and nothing changes.
    let out = Command::new("umount").arg(&m.path).output().unwrap();
    assert!(!out.status.success(), "umount with open files succeeded");
    assert!(text(&out.stderr).contains("busy"), "{}", text(&out.stderr));
    assert!(m.is_mounted());
    std::fs::write(m.join("s"), b"still mounted\n").unwrap();
    for (what, p) in clients.iter_mut().filter(|(w, _)| w.starts_with("cat")) {
        p.wait_output_contains(b"still mounted\n", T);
        let pid = p.pid();
        wait_until(&format!("{what} to block again"), T, || blocked_in_syscall(pid, libc::SYS_read));
    }
    // The Python reader and poller got that message; open them again.
    for (what, p) in clients.iter_mut().filter(|(w, _)| w.starts_with("python")) {
        p.wait_exit(T).unwrap_or_else(|| panic!("{what} did not get the message"));
        assert_eq!(text(&p.output()), "open\nok\n", "{what}");
    }
    clients.retain(|(w, _)| !w.starts_with("python"));
    for (what, script) in [("python read", "read"), ("python select", "select")] {
        let p = py(BLOCKED_READER, &["s", script], &m.path);
        p.wait_output_contains(b"open\n", T);
        let pid = p.pid();
        wait_until(&format!("{what} to block"), T, || {
            blocked_in_syscall(pid, libc::SYS_read)
                || blocked_in_syscall(pid, libc::SYS_select)
                || blocked_in_syscall(pid, libc::SYS_pselect6)
        });
        clients.push((what, p));
    }

    // A lazy unmount detaches the mount; the daemon notices, exits 0, and every blocked
    // client returns with an error.
    let out = Command::new("umount").arg("-l").arg(&m.path).output().unwrap();
    assert!(out.status.success(), "umount -l: {}", text(&out.stderr));
    assert_released(&mut clients, T);
    // Signal 0 sends nothing: this only waits for the daemon's exit.
    let status = m.stop_with(0, T).expect("the daemon exits after umount -l");
    assert!(status.success(), "{status}; log:\n{}", m.log());
    assert!(!is_mounted_at(&m.path, None));
}

// ---------------------------------------------------------------------------
// The memory ceiling
// ---------------------------------------------------------------------------

#[test]
fn a_flood_past_the_memory_ceiling_gets_enospc_while_readers_keep_reading() {
    const CEILING_MIB: u64 = 8;
    let m = Mount::with_options(&format!("memory={CEILING_MIB}M,max_message=1M"));
    std::fs::write(m.join("s"), b"").unwrap();
    // Writers 2000 and 2001 send messages of about 64 KiB, 4 times the ceiling in all, and
    // retry a write refused with ENOSPC. A fast reader reads all along; a slow one holds every
    // message back (replay off keeps a message until every reader has it) until told to go.
    let count = sized(256u32, 2048);
    let writer_ids = [2000u32, 2001];
    let reader = |buf: &str, slow: bool| {
        let mut a = opts(&[
            ("path", "s"),
            ("index", "0"),
            ("streams-count", "1"),
            ("buf", buf),
            ("writers", &join(writer_ids)),
            ("count", &count.to_string()),
        ]);
        if slow {
            a.push("--wait-go".into());
        }
        mqcheck("reader", &a, &m.path)
    };
    let mut fast = reader("65536", false);
    let mut slow = reader("4096", true);
    wait_readers(&m, "ctl", 2, T);
    let pid = m.pid();
    let baseline = status_kib(pid, "VmRSS");

    let mut writers: Vec<Proc> = writer_ids
        .iter()
        .map(|w| {
            let mut a = opts(&[("id", &w.to_string()), ("count", &count.to_string()), ("streams", "s")]);
            a.push("--retry-enospc".into());
            mqcheck("writer", &a, &m.path)
        })
        .collect();
    // Both writers hit the ceiling; meanwhile the daemon's memory stays near it.
    let mut peak = baseline;
    wait_until("both writers to get ENOSPC", Duration::from_secs(120), || {
        peak = peak.max(status_kib(pid, "VmRSS"));
        writers.iter().all(|w| w.output_contains(b"enospc\n"))
    });
    let retained = ctl_count(&m.join("ctl"), "bytes");
    assert!(retained <= CEILING_MIB << 20, "{retained} bytes retained over a {CEILING_MIB} MiB ceiling");
    assert!(retained > (CEILING_MIB << 20) / 2, "only {retained} bytes retained when writes were refused");
    let (blocks, free) = df(&m.path);
    assert!(free * 16 < blocks, "df shows {free} of {blocks} blocks free at the ceiling");
    // The fast reader has everything that was accepted: it is waiting for more.
    let fast_pid = fast.pid();
    wait_until("the fast reader to wait for more", T, || blocked_in_syscall(fast_pid, libc::SYS_read));

    slow.write_stdin(b"go\n");
    for (i, w) in writers.iter_mut().enumerate() {
        let done = finish(w, &format!("writer {i}"), Duration::from_secs(300));
        assert_eq!(json_u64(&done, "written"), u64::from(count), "{done}");
        assert!(json_u64(&done, "enospc") > 0, "{done}");
        peak = peak.max(status_kib(pid, "VmRSS"));
    }
    wait_until("everything read", T, || ctl_count(&m.join("ctl"), "messages") == 0);
    peak = peak.max(status_kib(pid, "VmRSS"));
    // Without the ceiling the daemon would hold 4 times it: its growth stays under the
    // ceiling plus transient buffers (requests being assembled and replied).
    let grown_mib = peak.saturating_sub(baseline) / 1024;
    eprintln!("flood: the daemon grew by {grown_mib} MiB at most under a {CEILING_MIB} MiB ceiling");
    assert!(grown_mib < CEILING_MIB + 12, "VmRSS grew by {grown_mib} MiB under a {CEILING_MIB} MiB ceiling");

    std::fs::remove_file(m.join("s")).unwrap();
    for (what, r) in [("fast reader", &mut fast), ("slow reader", &mut slow)] {
        r.close_stdin();
        let line = finish(r, what, T);
        assert_eq!(json_u64(&line, "messages"), u64::from(count) * 2, "{what}: {line}");
    }
    let (blocks, free) = df(&m.path);
    assert_eq!(free, blocks, "the ceiling is free again");
    assert_healthy(&m);
}
