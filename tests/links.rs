//! The rest of the POSIX namespace on a real mount: symbolic links as aliases of streams,
//! hard links (one stream under several names, in several groups; nlink; removing one name),
//! FIFOs and Unix sockets served by the kernel from nodes in the mount, device nodes on the
//! nodev mount, and setgid groups (with a test user).

mod common;

use common::users::users;
use common::{Mount, Proc, blocked_in_syscall, run_sh, wait_until};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, symlink};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Command;
use std::time::Duration;
use std::{fs, io};

const T: Duration = Duration::from_secs(10);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `script` in the mount root and asserts it succeeded; returns stdout.
fn ok(m: &Mount, script: &str) -> String {
    let out = run_sh(script, &m.path, T);
    assert!(out.status.success(), "sh -c {script:?}: {:?}\n{}", out.status, text(&out.stderr));
    text(&out.stdout)
}

/// The errno of a failed call, or "ok".
fn outcome<T>(result: io::Result<T>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(e) => io::Error::from_raw_os_error(e.raw_os_error().unwrap_or(0)).to_string(),
    }
}

/// Starts `cat path` (relative to the mount) and waits until it is parked in read(2).
fn reader(m: &Mount, path: &str) -> Proc {
    let p = Proc::spawn(Command::new("cat").arg(path).current_dir(&m.path));
    let pid = p.pid();
    wait_until(&format!("cat {path} to block in read"), T, || blocked_in_syscall(pid, libc::SYS_read));
    p
}

#[test]
fn a_symlink_is_an_alias_of_its_stream() {
    let m = Mount::new();
    ok(&m, "mkdir chat && touch chat/alice && ln -s alice chat/al");
    assert_eq!(ok(&m, "readlink chat/al"), "alice\n");
    assert_eq!(ok(&m, "stat -c '%F %u %g %h' chat/al"), "symbolic link 0 0 1\n");
    assert_eq!(ok(&m, "ls -1U chat"), "alice\nal\nctl\norder\n");
    // Written through the alias: a message to alice, recorded under alice's name.
    let alice = reader(&m, "chat/alice");
    let order = reader(&m, "chat/order");
    ok(&m, "echo hi >> chat/al");
    alice.wait_output_contains(b"hi\n", T);
    order.wait_output_contains(b"alice\n", T);
    // Read through the alias.
    let al = reader(&m, "chat/al");
    ok(&m, "echo again >> chat/alice");
    al.wait_output_contains(b"again\n", T);
    assert_eq!(text(&al.output()), "again\n");
    // A target is any bytes up to PATH_MAX, whether it exists or not.
    let long = "x/".repeat(2047) + "y";
    symlink(&long, m.join("chat/long")).unwrap();
    assert_eq!(fs::read_link(m.join("chat/long")).unwrap().as_os_str().len(), 4095);
    assert_eq!(fs::symlink_metadata(m.join("chat/long")).unwrap().len(), 4095);
    ok(&m, "rm chat/al chat/long");
    assert_eq!(ok(&m, "ls -1U chat"), "alice\nctl\norder\n");
}

#[test]
fn a_hard_link_is_one_stream_under_several_names() {
    let m = Mount::new();
    ok(&m, "mkdir g h && touch g/a && ln g/a h/b && ln g/a g/a2");
    let (a, b) = (fs::metadata(m.join("g/a")).unwrap(), fs::metadata(m.join("h/b")).unwrap());
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 3), "one stream, three names");
    assert_eq!(ok(&m, "ls -1U g"), "a\na2\nctl\norder\n");
    assert_eq!(ok(&m, "grep streams g/ctl h/ctl"), "g/ctl:# streams 1\nh/ctl:# streams 0\n");
    // Written via one name, read via another; the stream's home is its first name.
    let via_b = reader(&m, "h/b");
    let (g_order, h_order) = (reader(&m, "g/order"), reader(&m, "h/order"));
    ok(&m, "echo one >> g/a2");
    via_b.wait_output_contains(b"one\n", T);
    g_order.wait_output_contains(b"a\n", T);
    // Removing a name keeps the stream and its readers; the oldest name left is its home.
    ok(&m, "rm g/a g/a2");
    assert_eq!(fs::metadata(m.join("h/b")).unwrap().nlink(), 1);
    ok(&m, "echo two >> h/b");
    via_b.wait_output_contains(b"one\ntwo\n", T);
    h_order.wait_output_contains(b"b\n", T);
    assert_eq!(text(&g_order.output()), "a\n", "g's order no longer records the stream");
    assert_eq!(ok(&m, "grep streams g/ctl h/ctl"), "g/ctl:# streams 0\nh/ctl:# streams 1\n");
    // The last name gone, its reader gets end-of-file.
    let mut via_b = via_b;
    ok(&m, "rm h/b");
    assert!(via_b.wait_exit(T).expect("cat h/b ends").success());
    // Groups, ctl and order have one name each.
    assert_eq!(outcome(fs::hard_link(m.join("g"), m.join("h/g"))), "Operation not permitted (os error 1)");
    assert_eq!(
        outcome(fs::hard_link(m.join("g/ctl"), m.join("h/c"))),
        "Operation not permitted (os error 1)"
    );
    assert_eq!(
        outcome(fs::hard_link(m.join("g/order"), m.join("h/o"))),
        "Operation not permitted (os error 1)"
    );
}

#[test]
fn a_fifo_in_the_mount_carries_bytes_between_processes() {
    let m = Mount::new();
    ok(&m, "mkdir g && mkfifo -m 600 g/f");
    assert_eq!(ok(&m, "stat -c '%F %a' g/f"), "fifo 600\n");
    let mut cat = Proc::spawn(Command::new("cat").arg("g/f").current_dir(&m.path));
    ok(&m, "echo through > g/f");
    assert!(cat.wait_exit(T).expect("cat g/f ends when the writer closes").success());
    assert_eq!(text(&cat.output()), "through\n");
}

#[test]
fn a_unix_socket_bound_in_the_mount_takes_connections() {
    let m = Mount::new();
    ok(&m, "mkdir g");
    let listener = UnixListener::bind(m.join("g/sock")).unwrap();
    assert_eq!(ok(&m, "stat -c %F g/sock"), "socket\n");
    let path = m.join("g/sock");
    let client = std::thread::spawn(move || {
        let mut stream = UnixStream::connect(path).unwrap();
        stream.write_all(b"ping").unwrap();
    });
    let (mut conn, _) = listener.accept().unwrap();
    let mut got = Vec::new();
    conn.read_to_end(&mut got).unwrap();
    client.join().unwrap();
    assert_eq!(got, b"ping");
    ok(&m, "rm g/sock");
}

#[test]
fn a_device_node_is_made_but_the_nodev_mount_will_not_open_it() {
    let m = Mount::new();
    ok(&m, "mknod -m 666 null c 1 3 && mknod disk b 7 0");
    assert_eq!(ok(&m, "stat -c '%F %t %T %a' null"), "character special file 1 3 666\n");
    assert_eq!(ok(&m, "stat -c '%F %t %T' disk"), "block special file 7 0\n");
    // As on any Linux file system mounted nodev.
    assert_eq!(outcome(fs::File::open(m.join("null"))), "Permission denied (os error 13)");
}

#[test]
fn a_setgid_group_gives_new_entries_its_gid_and_subgroups_its_bit() {
    let u = users();
    let m = Mount::with_options("allow_other");
    ok(&m, &format!("mkdir team plain && chown 0:{} team && chmod 2777 team && chmod 777 plain", u.tg));
    let make = "umask 022; touch s && mkdir sub && mkfifo f && ln -s s l && touch sf && chmod 2755 sf";
    for dir in ["team", "plain"] {
        ok(
            &m,
            &format!(
                "cd {dir} && setpriv --reuid={} --regid={} --clear-groups sh -c '{make}'",
                u.t1, u.users_gid
            ),
        );
    }
    let stat = |path: &str| ok(&m, &format!("stat -c '%g %a' {path}")).trim().to_string();
    for name in ["s", "f"] {
        assert_eq!(stat(&format!("team/{name}")), format!("{} 644", u.tg), "team/{name}");
        assert_eq!(stat(&format!("plain/{name}")), format!("{} 644", u.users_gid), "plain/{name}");
    }
    assert_eq!(stat("team/l"), format!("{} 777", u.tg));
    // The kernel lets a user set the setgid bit only on a file of a group it is in.
    assert_eq!(stat("team/sf"), format!("{} 755", u.tg));
    assert_eq!(stat("plain/sf"), format!("{} 2755", u.users_gid));
    assert_eq!(stat("team/sub"), format!("{} 2755", u.tg), "a subgroup inherits the setgid bit");
    assert_eq!(stat("plain/sub"), format!("{} 755", u.users_gid));
    // And passes it on.
    ok(&m, "mkdir team/sub/deeper");
    assert_eq!(stat("team/sub/deeper"), format!("{} 2755", u.tg));
}
