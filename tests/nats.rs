//! Mounts backed by NATS JetStream (issue 15, docs/nats.md): two or three mounts of the same
//! servers and prefix stand in for hosts; the servers are started per test on loopback
//! (tests/common/nats.rs).

mod common;

use common::nats::{NatsCluster, NatsServer, pings, request};
use common::{
    MQFS_BIN, Mount, Proc, TempDir, blocked_in_syscall, poll_until, run_ok, run_sh, sh, unique_name,
    wait_until,
};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------

fn jetstream_answers(port: u16) -> bool {
    request(port, "$JS.API.INFO", "", T).contains("io.nats.jetstream.api.v1.account_info_response")
}

#[test]
fn harness_server_and_cluster_start_stop_and_answer() {
    let mut server = NatsServer::new();
    let port = server.client_port();
    assert!(pings(port), "the server answers PING");
    assert!(jetstream_answers(port), "JetStream answers on {}", server.url());
    server.stop();
    assert!(!pings(port), "a stopped server answers nothing");
    server.start();
    assert_eq!(server.client_port(), port, "started again on the same port");
    assert!(jetstream_answers(port));

    let mut cluster = NatsCluster::new();
    let urls = cluster.urls();
    assert_eq!(urls.matches("127.0.0.1:").count(), 3, "three nodes in {urls}");
    let leader = cluster.meta_leader(0).expect("a meta leader");
    let stopped = ["n0", "n1", "n2"].iter().position(|n| *n == leader).unwrap();
    cluster.stop(stopped);
    let other = (stopped + 1) % 3;
    common::wait_until("a new meta leader among the two left", T, || {
        cluster.meta_leader(other).is_some_and(|l| l != leader)
    });
    assert!(jetstream_answers(cluster.node(other).client_port()));
    cluster.start(stopped);
    for i in 0..3 {
        assert!(jetstream_answers(cluster.node(i).client_port()), "node {i} answers");
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// How soon a namespace change made on one mount must show on the others.
const SOON: Duration = Duration::from_secs(1);

/// `n` mounts of `urls` under one fresh prefix, standing in for `n` hosts; the prefix.
fn hosts(urls: &str, n: usize, extra_opts: &str) -> (String, Vec<Mount>) {
    let prefix = unique_name("t");
    let mounts = (0..n).map(|_| Mount::on_nats(urls, &prefix, extra_opts)).collect();
    (prefix, mounts)
}

/// A `cat` of `path`, once it waits in read(2) (so that it gets every later message).
fn reader(path: &Path) -> Proc {
    let mut cat = Proc::spawn(Command::new("cat").arg(path));
    let pid = cat.pid();
    wait_until(&format!("cat {} to wait in read(2)", path.display()), T, || {
        blocked_in_syscall(pid, libc::SYS_read)
    });
    assert!(
        !cat.has_exited(),
        "cat {} exited: {:?}",
        path.display(),
        String::from_utf8_lossy(&cat.stderr_output())
    );
    cat
}

/// One write(2) of `message` to `path`, opened for appending.
fn write(path: &Path, message: &str) -> std::io::Result<()> {
    let mut file = OpenOptions::new().append(true).open(path)?;
    let n = file.write(message.as_bytes())?;
    assert_eq!(n, message.len(), "a short write to {}", path.display());
    Ok(())
}

fn write_ok(path: &Path, message: &str) {
    write(path, message).unwrap_or_else(|e| panic!("write {message:?} to {}: {e}", path.display()));
}

fn ctl(group: &Path, command: &str) {
    fs::write(group.join("ctl"), format!("{command}\n")).unwrap_or_else(|e| panic!("{command:?} > ctl: {e}"));
}

/// Waits until `reader`'s output is exactly `expected`: it must grow into it (a byte that
/// differs fails at once) within `T`.
fn expect_output(reader: &Proc, expected: &str, what: &str) {
    let start = Instant::now();
    loop {
        let got = String::from_utf8_lossy(&reader.output()).into_owned();
        if got == expected {
            return;
        }
        assert!(
            expected.starts_with(&got) && start.elapsed() < T,
            "{what}: got {got:?}, expected {expected:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// The errno of a failed operation.
fn errno<T: std::fmt::Debug>(result: std::io::Result<T>, what: &str) -> i32 {
    let error = result.expect_err(&format!("{what} succeeded"));
    error.raw_os_error().unwrap_or_else(|| panic!("{what}: {error} has no errno"))
}

fn mode(path: &Path) -> Option<u32> {
    fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o7777)
}

// ---------------------------------------------------------------------------
// One tree, several mounts
// ---------------------------------------------------------------------------

#[test]
fn a_write_on_one_mount_reaches_every_reader_on_every_mount_once_in_order() {
    let server = NatsServer::new();
    let (_, m) = hosts(&server.url(), 2, "");
    let (a, b) = (&m[0], &m[1]);
    fs::create_dir(a.join("g")).unwrap();
    run_ok("touch g/s g/t", &a.path);
    wait_until("g/s and g/t on B", SOON, || b.join("g/s").exists() && b.join("g/t").exists());

    let readers = [reader(&a.join("g/s")), reader(&b.join("g/s")), reader(&b.join("g/s"))];
    let orders = [reader(&a.join("g/order")), reader(&b.join("g/order"))];
    run_ok("echo one >> g/s; echo two >> g/s; echo other >> g/t", &a.path);
    run_ok("echo three >> g/s", &b.path);
    run_ok("echo four >> g/s", &a.path);
    for (i, r) in readers.iter().enumerate() {
        expect_output(r, "one\ntwo\nthree\nfour\n", &format!("reader {i} of g/s"));
    }
    for (i, o) in orders.iter().enumerate() {
        expect_output(o, "s\ns\nt\ns\ns\n", &format!("g/order on mount {i}"));
    }
    // Nothing comes twice: a last message follows the others directly.
    write_ok(&b.join("g/s"), "end\n");
    for (i, r) in readers.iter().enumerate() {
        expect_output(r, "one\ntwo\nthree\nfour\nend\n", &format!("reader {i} of g/s, at the end"));
    }
}

/// How many consumers JetStream has on stream `name` of the server at `port`.
fn consumers(port: u16, name: &str) -> usize {
    let info = request(port, &format!("$JS.API.STREAM.INFO.{name}"), "", Duration::from_secs(5));
    let field = "\"consumer_count\":";
    let at = info.find(field).unwrap_or_else(|| panic!("no consumer count in {info}")) + field.len();
    info[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().expect("a count")
}

#[test]
fn a_mount_subscribes_once_to_a_group_it_reads_and_not_to_one_it_only_writes() {
    let server = NatsServer::new();
    let (prefix, m) = hosts(&server.url(), 2, "");
    let (a, b) = (&m[0], &m[1]);
    fs::create_dir(a.join("g")).unwrap();
    run_ok("touch g/s", &a.path);
    wait_until("g/s on B", SOON, || b.join("g/s").exists());
    let stream = format!("{prefix}_g{}", fs::metadata(a.join("g")).unwrap().ino());
    write_ok(&a.join("g/s"), "unread\n");
    assert_eq!(consumers(server.client_port(), &stream), 0, "a mount that only writes subscribes to nothing");
    let readers = [reader(&b.join("g/s")), reader(&b.join("g/s")), reader(&b.join("g/order"))];
    write_ok(&a.join("g/s"), "read\n");
    expect_output(&readers[0], "read\n", "the first reader on B");
    expect_output(&readers[1], "read\n", "the second reader on B");
    expect_output(&readers[2], "s\n", "order on B");
    assert_eq!(consumers(server.client_port(), &stream), 1, "three readers on B, one subscription");
}

#[test]
fn namespace_changes_show_on_the_other_mount_within_a_second() {
    let server = NatsServer::new();
    let (_, m) = hosts(&server.url(), 2, "");
    let (a, b) = (&m[0], &m[1]);

    fs::create_dir(a.join("d")).unwrap();
    wait_until("mkdir d on B", SOON, || b.join("d").is_dir());
    run_ok("touch d/f", &a.path);
    wait_until("touch d/f on B", SOON, || b.join("d/f").is_file());
    assert_eq!(
        fs::metadata(a.join("d/f")).unwrap().ino(),
        fs::metadata(b.join("d/f")).unwrap().ino(),
        "d/f has one inode number on both mounts"
    );
    run_ok("chmod 600 d/f", &a.path);
    wait_until("chmod 600 d/f on B", SOON, || mode(&b.join("d/f")) == Some(0o600));
    run_ok("mv d/f d/g", &a.path);
    wait_until("mv d/f d/g on B", SOON, || b.join("d/g").is_file() && !b.join("d/f").exists());
    run_ok("echo depth 3 > d/ctl", &a.path);
    wait_until("depth 3 in d/ctl on B", SOON, || {
        fs::read_to_string(b.join("d/ctl")).is_ok_and(|c| c.lines().any(|l| l == "depth 3"))
    });
    run_ok("rm d/g", &a.path);
    wait_until("rm d/g on B", SOON, || !b.join("d/g").exists());
    // And the other way round.
    run_ok("mkdir d/e && rmdir d/e && mkdir d/h", &b.path);
    wait_until("mkdir d/h from B on A", SOON, || a.join("d/h").is_dir());
    assert!(!a.join("d/e").exists(), "d/e was removed again on B");
    run_ok("rmdir d/h && rmdir d", &b.path);
    wait_until("rmdir d from B on A", SOON, || !a.join("d").exists());
    assert_eq!(run_ok("ls -A", &a.path), "ctl\norder\n");
}

/// Runs `create` on both mounts at once; exactly one must succeed, the other fail EEXIST.
fn race(mounts: [&Mount; 2], what: &str, create: impl Fn(&Path) -> std::io::Result<()> + Sync) {
    let barrier = Barrier::new(2);
    let results: Vec<std::io::Result<()>> = thread::scope(|s| {
        let racers: Vec<_> = mounts
            .map(|mount| {
                let (barrier, create) = (&barrier, &create);
                s.spawn(move || {
                    barrier.wait();
                    create(&mount.path)
                })
            })
            .into_iter()
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let made = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(made, 1, "{what}: exactly one of the two succeeds: {results:?}");
    let failed = results.into_iter().find(|r| r.is_err()).unwrap();
    assert_eq!(errno(failed, what), libc::EEXIST, "{what}");
}

#[test]
fn one_name_created_on_two_mounts_at_once_is_made_once() {
    let server = NatsServer::new();
    let (_, m) = hosts(&server.url(), 2, "");
    let (a, b) = (&m[0], &m[1]);
    let ino = |mount: &Mount, name: &str| fs::metadata(mount.join(name)).unwrap().ino();
    for round in 0..20 {
        let dir = format!("d{round}");
        race([a, b], &format!("mkdir {dir}"), |root| fs::create_dir(root.join(&dir)));
        assert_eq!(ino(a, &dir), ino(b, &dir), "one {dir} on both mounts");
        let file = format!("f{round}");
        race([a, b], &format!("open {file} O_CREAT|O_EXCL"), |root| {
            OpenOptions::new().write(true).create_new(true).open(root.join(&file)).map(drop)
        });
        assert_eq!(ino(a, &file), ino(b, &file), "one {file} on both mounts");
    }
}

// ---------------------------------------------------------------------------
// History: replay and depth
// ---------------------------------------------------------------------------

#[test]
fn replay_modes_hold_across_a_remount() {
    let server = NatsServer::new();
    let prefix = unique_name("t");
    let messages: Vec<String> = (1..=5).map(|i| format!("m{i}\n")).collect();
    {
        let a = Mount::on_nats(&server.url(), &prefix, "");
        let b = Mount::on_nats(&server.url(), &prefix, "");
        for mode in ["all", "last", "off"] {
            fs::create_dir(a.join(mode)).unwrap();
            ctl(&a.join(mode), &format!("replay {mode}"));
            fs::write(a.join(mode).join("s"), "").unwrap();
        }
        wait_until("the streams on B", SOON, || {
            ["all", "last", "off"].iter().all(|g| b.join(g).join("s").exists())
        });
        for (i, message) in messages.iter().enumerate() {
            for mode in ["all", "last", "off"] {
                // Written from both mounts in turn.
                write_ok(&[&a, &b][i % 2].join(mode).join("s"), message);
            }
        }
    }
    let m = Mount::on_nats(&server.url(), &prefix, "");
    let all = reader(&m.join("all/s"));
    let last = reader(&m.join("last/s"));
    let off = reader(&m.join("off/s"));
    for mode in ["all", "last", "off"] {
        write_ok(&m.join(mode).join("s"), "new\n");
    }
    expect_output(&all, &(messages.concat() + "new\n"), "replay all after a remount");
    expect_output(&last, "m5\nnew\n", "replay last after a remount");
    expect_output(&off, "new\n", "replay off after a remount");
}

#[test]
fn depth_bounds_what_a_fresh_mount_replays() {
    let server = NatsServer::new();
    let (prefix, m) = hosts(&server.url(), 1, "");
    let a = &m[0];
    fs::create_dir(a.join("g")).unwrap();
    ctl(&a.join("g"), "replay all");
    ctl(&a.join("g"), "depth 3");
    run_ok("for i in 1 2 3 4 5 6 7 8 9 10; do echo m$i >> g/s; done", &a.path);
    let fresh = Mount::on_nats(&server.url(), &prefix, "");
    let r = reader(&fresh.join("g/s"));
    write_ok(&fresh.join("g/s"), "end\n");
    expect_output(&r, "m8\nm9\nm10\nend\n", "a fresh mount's reader under depth 3");
}

// ---------------------------------------------------------------------------
// Work queues
// ---------------------------------------------------------------------------

#[test]
fn a_queue_read_by_workers_on_two_mounts_hands_each_job_to_one_of_them() {
    let server = NatsServer::new();
    let (_, m) = hosts(&server.url(), 2, "");
    let (a, b) = (&m[0], &m[1]);
    fs::create_dir(a.join("q")).unwrap();
    ctl(&a.join("q"), "deliver one");
    fs::write(a.join("q/jobs"), "").unwrap();
    wait_until("the queue on B", SOON, || {
        b.join("q/jobs").exists()
            && fs::read_to_string(b.join("q/ctl")).is_ok_and(|c| c.lines().any(|l| l == "deliver one"))
    });
    let workers = [a, b].map(|mount| sh("while read job; do echo \"$job\"; done < q/jobs", &mount.path));
    for w in &workers {
        wait_until("a worker waiting in read(2)", T, || blocked_in_syscall(w.pid(), libc::SYS_read));
    }
    let jobs: Vec<String> = (0..20).map(|i| format!("job{i:02}")).collect();
    for (i, job) in jobs.iter().enumerate() {
        write_ok(&[a, b][i % 2].join("q/jobs"), &format!("{job}\n"));
    }
    let done = || -> Vec<String> {
        let mut lines: Vec<String> = workers
            .iter()
            .flat_map(|w| String::from_utf8_lossy(&w.output()).lines().map(String::from).collect::<Vec<_>>())
            .collect();
        lines.sort();
        lines
    };
    wait_until("every job done", T, || done().len() >= jobs.len());
    assert_eq!(done(), jobs, "each job done once, by one of the workers");
}

#[test]
fn the_job_of_a_worker_killed_on_one_mount_goes_to_a_worker_on_the_other() {
    let server = NatsServer::new();
    let (_, m) = hosts(&server.url(), 2, "");
    let (a, b) = (&m[0], &m[1]);
    fs::create_dir(a.join("q")).unwrap();
    ctl(&a.join("q"), "deliver one");
    run_ok("echo job >> q/jobs", &a.path);
    // It reads the job whole, and holds it (not acknowledged: no further read) until killed.
    let holder = sh("exec 3< q/jobs; read job <&3; echo \"$job\"; exec sleep 60", &a.path);
    holder.wait_output_contains(b"job\n", T);
    wait_until("the queue on B", SOON, || b.join("q/jobs").exists());
    let other = sh("while read job; do echo \"$job\"; done < q/jobs", &b.path);
    wait_until("B's worker waiting in read(2)", T, || blocked_in_syscall(other.pid(), libc::SYS_read));
    assert_eq!(other.output(), b"", "B's worker got the job another worker holds");
    holder.signal_group(libc::SIGKILL);
    expect_output(&other, "job\n", "the killed worker's job, on the other mount");
}

#[test]
fn a_request_from_one_mount_is_answered_by_a_server_on_another_to_it_alone() {
    let server = NatsServer::new();
    let (_, m) = hosts(&server.url(), 3, "");
    fs::create_dir(m[0].join("svc")).unwrap();
    ctl(&m[0].join("svc"), "deliver one");
    run_ok("touch svc/time", &m[0].path);
    wait_until("the service on the other mounts", SOON, || {
        m[1..].iter().all(|x| x.join("svc/time").exists())
    });
    let service = sh("exec 3<>svc/time; while read -r req <&3; do echo \"re $req\" >&3; done", &m[0].path);
    wait_until("the server waiting in read(2)", T, || blocked_in_syscall(service.pid(), libc::SYS_read));
    let clients: Vec<Proc> = ["one", "two"]
        .iter()
        .zip(&m[1..])
        .map(|(request, mount)| {
            sh(&format!("exec 3<>svc/time; echo {request} >&3; head -n1 <&3"), &mount.path)
        })
        .collect();
    for (mut client, request) in clients.into_iter().zip(["one", "two"]) {
        let status = client.wait_exit(T).unwrap_or_else(|| panic!("client {request} got no reply"));
        assert!(status.success(), "client {request}: {status}");
        assert_eq!(String::from_utf8_lossy(&client.output()), format!("re {request}\n"), "client {request}");
    }
}

// ---------------------------------------------------------------------------
// Settings that cannot hold across hosts
// ---------------------------------------------------------------------------

#[test]
fn settings_that_cannot_hold_across_hosts_are_refused_with_eopnotsupp_and_logged() {
    let server = NatsServer::new();
    let (_, m) = hosts(&server.url(), 1, "");
    let a = &m[0];
    fs::create_dir(a.join("g")).unwrap();
    let before = fs::read_to_string(a.join("g/ctl")).unwrap();
    let refused = ["write one", "write all", "data static", "store disk", "sync always", "sync 100ms"];
    let mut logged = std::collections::HashMap::from([("write", 0), ("data", 0), ("store", 0), ("sync", 0)]);
    for command in refused {
        // Coreutils' echo says why a write failed (dash's says "I/O error" whatever errno).
        let out = run_sh(&format!("env echo '{command}' > g/ctl"), &a.path, T);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "echo '{command}' > ctl succeeded on a NATS mount");
        assert!(stderr.contains("Operation not supported"), "echo '{command}' > ctl: {stderr}");
        // A new line saying why, naming the setting.
        let setting = command.split_whitespace().next().unwrap();
        let why = |log: String| log.lines().filter(|l| l.contains("ctl") && l.contains(setting)).count();
        wait_until(&format!("a log line about {command:?}"), T, || why(a.log()) > logged[setting]);
        *logged.get_mut(setting).unwrap() += 1;
    }
    // (Not logged again: the log allows ten lines from one place per five seconds.)
    for command in refused {
        let result = fs::write(a.join("g/ctl"), format!("{command}\n"));
        assert_eq!(errno(result, command), libc::EOPNOTSUPP, "{command}");
    }
    let after = fs::read_to_string(a.join("g/ctl")).unwrap();
    let settings =
        |ctl: &str| ctl.lines().filter(|l| !l.starts_with('#')).map(String::from).collect::<Vec<_>>();
    assert_eq!(settings(&after), settings(&before), "the refused commands changed nothing");
}

#[test]
fn mount_options_that_cannot_hold_across_hosts_are_refused() {
    let server = NatsServer::new();
    for option in ["write=all", "store=disk", "data=static", "sync=always"] {
        let mnt = TempDir::new();
        let opts = format!("prefix={},{option}", unique_name("t"));
        let out = Command::new("timeout")
            .arg("10")
            .arg(MQFS_BIN)
            .arg(server.url())
            .arg(&mnt.path)
            .args(["-f", "-o", &opts])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && out.status.code() != Some(124),
            "-o {option}: {:?}\n{stderr}",
            out.status
        );
        let setting = option.split_once('=').unwrap().0;
        assert!(stderr.contains(setting), "-o {option} refused without saying why: {stderr}");
        assert!(!common::is_mounted_at(&mnt.path, None), "-o {option} mounted");
    }
}

// ---------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------

/// Writes `message` to `path` until one succeeds; every failure must be ENOTCONN, each write
/// must return within `each`, and one must succeed within `deadline`. Returns the failures.
fn write_until_accepted(path: &Path, message: &str, each: Duration, deadline: Duration) -> usize {
    let start = Instant::now();
    let mut failures = 0;
    loop {
        let begun = Instant::now();
        let result = write(path, message);
        assert!(begun.elapsed() < each, "a write took {:?}: {result:?}", begun.elapsed());
        match result {
            Ok(()) => return failures,
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "a write while reconnecting: {e}"),
        }
        failures += 1;
        assert!(start.elapsed() < deadline, "no write accepted within {deadline:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_server_restart_fails_writes_fast_keeps_readers_and_loses_nothing() {
    let mut server = NatsServer::new();
    let (_, mut m) = hosts(&server.url(), 2, "nats_timeout=3s");
    let (a, b) = (&m[0], &m[1]);
    fs::create_dir(a.join("g")).unwrap();
    fs::write(a.join("g/s"), "").unwrap();
    wait_until("g/s on B", SOON, || b.join("g/s").exists());
    let readers = [reader(&a.join("g/s")), reader(&b.join("g/s"))];
    write_ok(&a.join("g/s"), "before\n");
    for r in &readers {
        expect_output(r, "before\n", "before the restart");
    }

    server.stop();
    // Each mount's client sees the connection go within moments; a write racing that may be
    // sent and time out instead (ETIMEDOUT within nats_timeout: outcome unknown). From then on
    // writes and namespace changes fail at once with ENOTCONN and send nothing.
    let mut unknown = Vec::new();
    for (i, mount) in [a, b].into_iter().enumerate() {
        let mut attempt = 0;
        let failing = poll_until(T, || {
            attempt += 1;
            let message = format!("unknown {i}.{attempt}");
            let begun = Instant::now();
            let result = write(&mount.join("g/s"), &format!("{message}\n"));
            assert!(
                begun.elapsed() < Duration::from_secs(5),
                "a write hung {:?}: {result:?}",
                begun.elapsed()
            );
            match result.map_err(|e| e.raw_os_error()) {
                Err(Some(libc::ENOTCONN)) => true,
                Err(Some(libc::ETIMEDOUT)) => {
                    unknown.push(message);
                    false
                }
                other => panic!("a write with the server down: {other:?}"),
            }
        });
        assert!(failing, "mount {i}: writes with the server down do not fail ENOTCONN within {T:?}");
        let begun = Instant::now();
        assert_eq!(errno(write(&mount.join("g/s"), "lost\n"), "write with the server down"), libc::ENOTCONN);
        assert_eq!(errno(fs::create_dir(mount.join("g/new")), "mkdir with the server down"), libc::ENOTCONN);
        assert!(begun.elapsed() < SOON, "failing took {:?}", begun.elapsed());
    }
    let begun = Instant::now();
    let listing = run_ok("ls -la g && stat g/s && cat g/ctl", &a.path);
    assert!(listing.contains("g/s") && listing.contains("replay off"), "{listing}");
    assert!(begun.elapsed() < SOON, "ls and stat with the server down took {:?}", begun.elapsed());
    for (i, r) in readers.iter().enumerate() {
        assert!(blocked_in_syscall(r.pid(), libc::SYS_read), "reader {i} still reading with the server down");
    }

    server.start();
    write_until_accepted(&b.join("g/s"), "after\n", Duration::from_secs(5), Duration::from_secs(20));
    write_until_accepted(&a.join("g/s"), "again\n", Duration::from_secs(5), Duration::from_secs(20));
    // Reconnected, a mount is as quick as before: it reads the restarted server's streams.
    let begun = Instant::now();
    write_ok(&b.join("g/s"), "end\n");
    assert!(begun.elapsed() < SOON, "a write after the restart took {:?}", begun.elapsed());
    for (i, r) in readers.iter().enumerate() {
        r.wait_output_contains(b"end\n", T);
        let text = String::from_utf8_lossy(&r.output()).into_owned();
        let (maybe, known): (Vec<&str>, Vec<&str>) =
            text.lines().partition(|l| unknown.iter().any(|u| u == l));
        assert_eq!(known, ["before", "after", "again", "end"], "reader {i} across the restart: {text:?}");
        let mut once = maybe.clone();
        once.sort();
        once.dedup();
        assert_eq!(once.len(), maybe.len(), "reader {i} got a timed-out write twice: {text:?}");
    }

    // umount with the server down returns promptly, and the daemon exits.
    drop(readers);
    server.stop();
    let a = &mut m[0];
    let begun = Instant::now();
    let out = run_sh(&format!("umount {}", a.path.display()), Path::new("/"), T);
    assert!(out.status.success(), "umount: {}", String::from_utf8_lossy(&out.stderr));
    assert!(begun.elapsed() < Duration::from_secs(2), "umount took {:?}", begun.elapsed());
    let status = a.stop_with(0, Duration::from_secs(5)).expect("the daemon exits after umount");
    assert!(status.success(), "the daemon after umount: {status}");
}

#[test]
fn mounts_started_at_once_on_a_new_prefix_of_a_cluster_all_serve_one_tree() {
    let cluster = NatsCluster::new();
    let (urls, prefix) = (cluster.urls(), unique_name("t"));
    let m: Vec<Mount> = thread::scope(|s| {
        let starting: Vec<_> = (0..2).map(|_| s.spawn(|| Mount::on_nats(&urls, &prefix, ""))).collect();
        starting.into_iter().map(|mount| mount.join().unwrap()).collect()
    });
    fs::create_dir(m[0].join("g")).unwrap();
    wait_until("g on the other mount", SOON, || m[1].join("g").is_dir());
}

#[test]
fn a_cluster_node_stopped_mid_stream_loses_no_acknowledged_write() {
    let mut cluster = NatsCluster::new();
    let (prefix, m) = hosts(&cluster.urls(), 2, "nats_timeout=5s");
    let (a, b) = (&m[0], &m[1]);
    fs::create_dir(a.join("g")).unwrap();
    fs::write(a.join("g/s"), "").unwrap();
    wait_until("g/s on B", SOON, || b.join("g/s").exists());
    let group = format!("{prefix}_g{}", fs::metadata(a.join("g")).unwrap().ino());
    let r = reader(&b.join("g/s"));

    let stop = AtomicBool::new(false);
    let (acked, timed_out) = thread::scope(|s| {
        let writer = s.spawn(|| {
            let (mut acked, mut timed_out) = (Vec::new(), Vec::new());
            for i in 0u32.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match write(&a.join("g/s"), &format!("{i}\n")) {
                    Ok(()) => acked.push(i),
                    Err(e) if e.raw_os_error() == Some(libc::ETIMEDOUT) => timed_out.push(i),
                    Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                        thread::sleep(Duration::from_millis(5))
                    }
                    Err(e) => panic!("write {i}: {e}"),
                }
            }
            (acked, timed_out)
        });
        let wait_read = |n: usize, what: &str| {
            let lines = |r: &Proc| r.output().iter().filter(|&&b| b == b'\n').count();
            let start = lines(&r);
            wait_until(what, Duration::from_secs(20), || lines(&r) >= start + n);
        };
        let stop_writer = SetOnDrop(&stop); // also when a wait below fails
        wait_read(50, "50 messages before the stop");
        // The group's stream is replicated on all three nodes; its leader is stopped.
        let info = request(cluster.node(0).client_port(), &format!("$JS.API.STREAM.INFO.{group}"), "", T);
        assert!(info.contains("\"num_replicas\":3"), "stream {group} is not R3: {info}");
        let leader = stream_leader(&info).unwrap_or_else(|| panic!("no leader for {group}: {info}"));
        let leader = leader.strip_prefix('n').and_then(|n| n.parse::<usize>().ok()).expect("node name");
        cluster.stop(leader);
        wait_read(50, "50 messages with the stream's leader stopped");
        cluster.start(leader);
        wait_read(50, "50 messages after it came back");
        drop(stop_writer);
        writer.join().unwrap()
    });
    let last = *acked.last().unwrap();
    write_ok(&a.join("g/s"), "end\n");
    r.wait_output_contains(b"end\n", T);
    let text = String::from_utf8_lossy(&r.output()).into_owned();
    let got: Vec<u32> = text.lines().take_while(|l| *l != "end").map(|l| l.parse().unwrap()).collect();
    assert!(got.windows(2).all(|w| w[0] < w[1]), "read out of order or twice: {got:?}");
    let missing: Vec<u32> = acked.iter().copied().filter(|i| got.binary_search(i).is_err()).collect();
    assert!(missing.is_empty(), "acknowledged writes never read: {missing:?} (last acknowledged {last})");
    let extra: Vec<u32> =
        got.iter().copied().filter(|i| acked.binary_search(i).is_err() && !timed_out.contains(i)).collect();
    assert!(extra.is_empty(), "read messages whose write failed ENOTCONN: {extra:?}");
}

/// Sets its flag when dropped.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The `"leader"` of a stream's `"cluster"` in a `$JS.API.STREAM.INFO` reply.
fn stream_leader(info: &str) -> Option<String> {
    let cluster = &info[info.find("\"cluster\":{")?..];
    let rest = &cluster[cluster.find("\"leader\":\"")? + "\"leader\":\"".len()..];
    Some(rest[..rest.find('"')?].to_string())
}

// ---------------------------------------------------------------------------
// The embedded default
// ---------------------------------------------------------------------------

/// The inode numbers of `pid`'s TCP sockets: its descriptors' sockets that the network
/// namespace's TCP tables list.
fn tcp_sockets(pid: u32) -> Vec<String> {
    let mut tcp = String::new();
    for table in ["tcp", "tcp6"] {
        tcp += &fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
    }
    let listed: Vec<&str> = tcp.lines().skip(1).filter_map(|l| l.split_whitespace().nth(9)).collect();
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy();
            Some(target.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .filter(|inode| listed.contains(&inode.as_str()))
        .collect()
}

/// The names of `pid`'s threads.
fn thread_names(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn without_a_nats_source_nothing_of_nats_runs() {
    let server = NatsServer::new();
    let (_, m) = hosts(&server.url(), 1, "");
    let nats = &m[0];
    let memory = Mount::new();
    for mount in [nats, &memory] {
        run_ok("mkdir g && echo x >> g/s && ls g", &mount.path);
    }
    assert!(
        !tcp_sockets(nats.pid()).is_empty(),
        "the NATS mount holds no TCP socket: the check sees nothing"
    );
    assert_eq!(tcp_sockets(memory.pid()), Vec::<String>::new(), "TCP sockets of an in-memory mount");
    let memory_threads = thread_names(memory.pid());
    assert!(
        !memory_threads.iter().any(|n| n.starts_with("tokio")),
        "an in-memory mount runs an async runtime: {memory_threads:?}"
    );
    let nats_only: Vec<String> =
        thread_names(nats.pid()).into_iter().filter(|n| !memory_threads.contains(n)).collect();
    assert!(!nats_only.is_empty(), "the NATS mount runs no thread of its own: the check sees nothing");
}
