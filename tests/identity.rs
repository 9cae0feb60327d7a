//! Sender identity on real mounts (docs/semantics.md, "Sender identity"): the stamp a reader
//! gets with `MQ_IOC_STAMP` after a read names the process, user and group that wrote the
//! message (shell writers running as two different non-root users), its number in its stream
//! and in its group, and its first delivery; before any read, and on files that read no
//! messages, there is none (ENODATA), and other commands are not ours (ENOTTY). `mq-stamp`
//! prints it from a `while read` loop, sharing the shell's open file. On a disk store the
//! stamps survive a remount.

mod common;
mod mqcheck;

use common::users::users;
use common::{Mount, Proc, TempDir, run_sh};
use mqcheck::{as_user, text};
use mqfs::ioctl::MqStamp;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::time::{Duration, SystemTime};

const MQ_STAMP: &str = env!("CARGO_BIN_EXE_mq-stamp");
const T: Duration = Duration::from_secs(20);

fn reader(path: &std::path::Path) -> File {
    OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).unwrap()
}

/// Reads one message and its stamp.
fn read_stamped(file: &mut File) -> (String, MqStamp) {
    let mut buf = [0u8; 4096];
    let n = file.read(&mut buf).expect("a message is there");
    (
        String::from_utf8_lossy(&buf[..n]).into_owned(),
        MqStamp::of(file.as_fd()).expect("a stamp after a read"),
    )
}

#[test]
fn the_stamp_names_the_writing_process_and_its_user_and_group() {
    let u = users();
    let m = Mount::with_options("allow_other,replay=all");
    for name in ["s", "t"] {
        std::fs::write(m.join(name), b"").unwrap();
        std::fs::set_permissions(m.join(name), PermissionsExt::from_mode(0o666)).unwrap();
    }
    let before = SystemTime::now();
    // Each writer is a shell that says its pid, then writes with its builtin echo.
    let writers =
        [(u.t1, u.users_gid, "s", "one"), (u.t2, u.tg, "t", "two"), (u.t1, u.users_gid, "s", "three")];
    let mut pids = Vec::new();
    for (uid, gid, stream, word) in writers {
        let mut cmd = as_user(uid, gid, &[], "sh");
        cmd.arg("-c").arg(format!("echo $$; echo {word} > {stream}")).current_dir(&m.path);
        let mut p = Proc::spawn(&mut cmd);
        let status = p.wait_exit(T).expect("the writer finishes");
        assert!(status.success(), "{}", text(&p.stderr_output()));
        pids.push(text(&p.output()).trim().parse::<u32>().unwrap());
    }
    let after = SystemTime::now();
    let (mut s, mut t) = (reader(&m.join("s")), reader(&m.join("t")));
    let got = [read_stamped(&mut s), read_stamped(&mut t), read_stamped(&mut s)];
    for (i, ((uid, gid, _, word), (message, stamp))) in writers.iter().zip(&got).enumerate() {
        assert_eq!(message, &format!("{word}\n"));
        assert_eq!((stamp.pid, stamp.uid, stamp.gid), (pids[i], *uid, *gid), "{word}: {stamp:?}");
        assert_eq!((stamp.version, stamp.deliveries, stamp.group_seq), (1, 1, i as u64), "{word}");
        assert!(before <= stamp.system_time() && stamp.system_time() <= after, "{word}: {stamp:?}");
    }
    assert_eq!((got[0].1.seq, got[1].1.seq, got[2].1.seq), (0, 0, 1), "numbers in their own streams");
    // `order`'s lines carry the same stamps.
    let mut order = reader(&m.join("order"));
    for (i, (_, want)) in got.iter().enumerate() {
        let (line, stamp) = read_stamped(&mut order);
        assert_eq!(line, if i == 1 { "t\n" } else { "s\n" });
        assert_eq!(
            (stamp.pid, stamp.uid, stamp.group_seq, stamp.time),
            (want.pid, want.uid, want.group_seq, want.time)
        );
    }
}

#[test]
fn a_descriptor_that_read_nothing_has_no_stamp_and_other_commands_are_not_ours() {
    let m = Mount::with_options("replay=all");
    std::fs::write(m.join("s"), b"m\n").unwrap();
    let mut s = reader(&m.join("s"));
    let errno = |r: std::io::Result<MqStamp>| r.unwrap_err().raw_os_error();
    assert_eq!(errno(MqStamp::of(s.as_fd())), Some(libc::ENODATA), "before any read");
    let (_, stamp) = read_stamped(&mut s);
    assert_eq!(stamp.seq, 0);
    // A read that finds nothing keeps the last stamp.
    assert!(s.read(&mut [0u8; 16]).is_err());
    assert_eq!(MqStamp::of(s.as_fd()).unwrap(), stamp);
    let writer = OpenOptions::new().write(true).open(m.join("s")).unwrap();
    assert_eq!(
        errno(MqStamp::of(writer.as_fd())),
        Some(libc::ENODATA),
        "a write-only descriptor reads nothing"
    );
    let ctl = File::open(m.join("ctl")).unwrap();
    assert_eq!(errno(MqStamp::of(ctl.as_fd())), Some(libc::ENODATA), "ctl holds no messages");
    // SAFETY: a command of no direction and size: the kernel copies nothing either way.
    let other = unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&s), 0x4d02 as _) };
    assert_eq!((other, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::ENOTTY)));
}

#[test]
fn mq_stamp_follows_the_shells_reads_in_a_while_loop() {
    let m = Mount::with_options("replay=all");
    std::fs::create_dir(m.join("q")).unwrap();
    let writes = run_sh(
        "for job in a b; do sh -c 'echo $$; echo '$job' > q/jobs'; done; echo last > q/jobs; echo $$",
        &m.path,
        T,
    );
    assert!(writes.status.success(), "{}", text(&writes.stderr));
    let pids: Vec<String> = text(&writes.stdout).lines().map(str::to_string).collect();
    let script = format!(
        "{MQ_STAMP} < q/jobs; echo \"before: $?\"; \
         while read job; do echo \"$job $({MQ_STAMP})\"; [ \"$job\" = last ] && break; done < q/jobs; \
         exec 3< q/jobs; read job <&3; {MQ_STAMP} /dev/fd/3; {MQ_STAMP} q/jobs; echo \"path: $?\""
    );
    let out = run_sh(&script, &m.path, T);
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    let err = text(&out.stderr);
    assert_eq!(lines[0], "before: 1", "{lines:?}");
    assert!(err.contains("mq-stamp: -: no message has been read on it yet"), "{err}");
    for (i, (job, pid)) in [("a", &pids[0]), ("b", &pids[1]), ("last", &pids[2])].iter().enumerate() {
        let line = &lines[1 + i];
        let want = format!("{job} seq={i} group_seq={i} time=");
        assert!(line.starts_with(&want), "{line:?} is not {want:?}...");
        assert!(line.ends_with(&format!(" pid={pid} uid=0 gid=0 deliveries=1")), "{line:?}: pid {pid}");
    }
    assert!(lines[4].starts_with("seq=0 group_seq=0 time=20"), "{lines:?}");
    assert_eq!(lines[5], "path: 2", "{lines:?}");
    assert!(err.contains("q/jobs: not an open descriptor"), "{err}");
}

#[test]
fn on_a_disk_store_stamps_survive_a_remount() {
    let u = users();
    let store = TempDir::new();
    let (pid, first) = {
        let m = Mount::on_store(&store.path, "allow_other,replay=all");
        std::fs::write(m.join("s"), b"").unwrap();
        std::fs::set_permissions(m.join("s"), PermissionsExt::from_mode(0o666)).unwrap();
        let mut cmd = as_user(u.t2, u.tg, &[], "sh");
        cmd.arg("-c").arg("echo $$; echo kept > s").current_dir(&m.path);
        let mut p = Proc::spawn(&mut cmd);
        assert!(p.wait_exit(T).expect("the writer finishes").success(), "{}", text(&p.stderr_output()));
        let pid: u32 = text(&p.output()).trim().parse().unwrap();
        (pid, read_stamped(&mut reader(&m.join("s"))).1)
    };
    let m = Mount::on_store(&store.path, "replay=all");
    let (message, stamp) = read_stamped(&mut reader(&m.join("s")));
    assert_eq!(message, "kept\n");
    assert_eq!(stamp, first, "the same stamp after the remount");
    assert_eq!((stamp.pid, stamp.uid, stamp.gid), (pid, u.t2, u.tg));
}
