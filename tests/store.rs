//! The disk store on real mounts: what survives an unmount, a SIGKILL of the daemon, torn
//! and damaged files and a full file system (docs/guarantees.md, "Durability").

mod common;

use common::{Mount, TempDir, history, history_lines, run_ok, sh, wait_until};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

const T: Duration = Duration::from_secs(20);

fn write_msg(path: &Path, message: &[u8]) {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    file.write_all(message).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

fn ctl(dir: &Path, command: &str) {
    fs::write(dir.join("ctl"), format!("{command}\n")).unwrap_or_else(|e| panic!("{command:?} > ctl: {e}"));
}

/// The segment files of the store, by path.
fn segment_files(store: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![store.join("logs")];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "log") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The segment file holding `needle`, and where in it.
fn find_in_segments(store: &Path, needle: &[u8]) -> (PathBuf, usize) {
    for path in segment_files(store) {
        let bytes = fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            return (path, at);
        }
    }
    panic!("no segment file of {} holds {:?}", store.display(), String::from_utf8_lossy(needle));
}

fn daemon_rss_kib(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("daemon status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}

/// `ls -lR` of the mount with full times: names, kinds, modes, owners, links, sizes, times.
fn listing(m: &Mount) -> String {
    run_ok("ls -lR --time-style=+%s.%N . | grep -v '^total '", &m.path)
}

#[test]
fn a_remount_shows_the_same_tree_configuration_history_and_order() {
    let store = TempDir::new();
    let (before, ctl_before, history_before, order_before);
    {
        let m = Mount::on_store(&store.path, "");
        let g = m.join("g");
        fs::create_dir_all(g.join("sub")).unwrap();
        ctl(&g, "replay all");
        ctl(&g, "depth 5");
        for i in 0..8 {
            write_msg(&g.join("s"), format!("s {i}\n").as_bytes());
            if i % 2 == 0 {
                write_msg(&g.join("t"), format!("t {i}\n").as_bytes());
            }
        }
        write_msg(&g.join("sub/deep"), b"deep\n");
        run_ok(
            "chmod 640 g/s && chown 1234:5678 g/t && chmod 750 g/sub && ln -s s g/link && mkfifo g/fifo",
            &m.path,
        );
        before = listing(&m);
        ctl_before = fs::read_to_string(g.join("ctl")).unwrap();
        history_before =
            [history_lines(&g.join("s")), history_lines(&g.join("t")), history_lines(&g.join("sub/deep"))];
        order_before = history_lines(&g.join("order"));
        assert_eq!(
            history_before[0],
            (3..8).map(|i| format!("s {i}\n")).collect::<Vec<_>>(),
            "depth 5 kept the last 5"
        );
        assert_eq!(order_before.len(), 5, "order keeps depth 5 too: {order_before:?}");
    }
    let m = Mount::on_store(&store.path, "");
    let g = m.join("g");
    assert_eq!(listing(&m), before, "ls -lR after a remount");
    assert_eq!(fs::read_to_string(g.join("ctl")).unwrap(), ctl_before);
    assert_eq!(
        [history_lines(&g.join("s")), history_lines(&g.join("t")), history_lines(&g.join("sub/deep"))],
        history_before
    );
    assert_eq!(history_lines(&g.join("order")), order_before);
    // The remounted store goes on: numbering and depth carry over.
    write_msg(&g.join("s"), b"s 8\n");
    assert_eq!(history_lines(&g.join("s")), (4..9).map(|i| format!("s {i}\n")).collect::<Vec<_>>());
    assert_eq!(history_lines(&g.join("order")).last().map(String::as_str), Some("s\n"));
}

#[test]
fn a_memory_group_on_a_disk_mount_keeps_its_configuration_not_its_messages() {
    let store = TempDir::new();
    {
        let m = Mount::on_store(&store.path, "");
        let ram = m.join("ram");
        let disk = m.join("disk");
        fs::create_dir(&ram).unwrap();
        ctl(&ram, "store memory");
        ctl(&ram, "replay all");
        fs::create_dir(ram.join("child")).unwrap();
        fs::create_dir(&disk).unwrap();
        ctl(&disk, "replay all");
        write_msg(&ram.join("s"), b"volatile\n");
        write_msg(&disk.join("s"), b"kept\n");
        assert_eq!(history_lines(&ram.join("s")), ["volatile\n"]);
        assert!(fs::read_to_string(ram.join("child/ctl")).unwrap().contains("store memory"), "inherited");
    }
    let m = Mount::on_store(&store.path, "");
    let ram_ctl = fs::read_to_string(m.join("ram/ctl")).unwrap();
    assert!(ram_ctl.contains("store memory") && ram_ctl.contains("replay all"), "{ram_ctl}");
    assert!(m.join("ram/s").exists(), "the stream itself is part of the namespace");
    assert!(history_lines(&m.join("ram/s")).is_empty(), "a memory group's messages do not survive");
    assert_eq!(history_lines(&m.join("disk/s")), ["kept\n"]);
    assert!(
        fs::read_to_string(m.join("disk/ctl")).unwrap().contains("store disk"),
        "the disk mount's default"
    );
}

#[test]
fn a_store_in_use_refuses_a_second_mount_with_a_clear_error() {
    let store = TempDir::new();
    let _first = Mount::on_store(&store.path, "");
    let mnt = TempDir::new();
    let out = Command::new(common::MQFS_BIN).arg(&store.path).arg(&mnt.path).arg("-f").output().unwrap();
    assert!(!out.status.success(), "a second mount of a store in use succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use"), "stderr: {stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
}

/// A small deterministic generator: the rounds' timings are random but reproducible from
/// the seed printed on failure.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// A shell loop writing `NAME I` to `stream` for I = 0, 1, ... and, once each write(2)
/// returned, `I` to `acked`, until a write fails.
fn writer(m: &Mount, stream: &str, acked: &Path) -> common::Proc {
    let script = format!(
        "i=0; while echo \"{stream} $i\" >> {stream} && echo $i >> '{}'; do i=$((i+1)); done",
        acked.display()
    );
    sh(&script, &m.join("g"))
}

/// One crash round: writers into three streams (one of them alternating between two
/// more), SIGKILL of the daemon after `delay`, remount, and the checks.
fn crash_round(round: u64, delay: Duration) {
    let store = TempDir::new();
    let acks = TempDir::new();
    let streams = ["s0", "s1", "s2"];
    {
        let mut m = Mount::on_store(&store.path, "");
        fs::create_dir(m.join("g")).unwrap();
        ctl(&m.join("g"), "replay all");
        let mut writers: Vec<common::Proc> = streams.iter().map(|s| writer(&m, s, &acks.join(s))).collect();
        let alternating = format!(
            "i=0; while echo \"a $i\" >> a && echo $i >> '{a}' && echo \"b $i\" >> b && echo $i >> '{b}'; do i=$((i+1)); done",
            a = acks.join("a").display(),
            b = acks.join("b").display()
        );
        writers.push(sh(&alternating, &m.join("g")));
        std::thread::sleep(delay); // the crash's moment: random, by design
        m.kill9();
        for w in &mut writers {
            assert!(w.wait_exit(T).is_some(), "round {round}: a writer did not stop after the daemon died");
        }
    }
    let m = Mount::on_store(&store.path, "");
    let g = m.join("g");
    let mut counts = BTreeMap::new();
    for name in streams.iter().chain(&["a", "b"]) {
        let acked = fs::read_to_string(acks.join(name)).unwrap_or_default().lines().count();
        // A crash before a writer's first write leaves its stream uncreated: only then is
        // it allowed to be missing.
        let got = match g.join(name).try_exists() {
            Ok(true) => history_lines(&g.join(name)),
            _ if acked == 0 => Vec::new(),
            found => panic!("round {round}: {name} is gone ({found:?}), {acked} writes to it returned"),
        };
        let expected: Vec<String> = (0..got.len()).map(|i| format!("{name} {i}\n")).collect();
        assert_eq!(got, expected, "round {round}: {name} lost, duplicated or reordered a message");
        assert!(
            got.len() == acked || got.len() == acked + 1,
            "round {round}: {name} holds {} messages, {acked} writes returned",
            got.len()
        );
        if !got.is_empty() {
            counts.insert(format!("{name}\n"), got.len());
        }
    }
    let order = history_lines(&g.join("order"));
    let mut in_order = BTreeMap::new();
    for line in &order {
        *in_order.entry(line.clone()).or_insert(0) += 1;
    }
    assert_eq!(in_order, counts, "round {round}: order disagrees with the streams");
    let ab: Vec<&String> = order.iter().filter(|l| *l == "a\n" || *l == "b\n").collect();
    assert!(
        ab.iter().enumerate().all(|(i, l)| **l == if i % 2 == 0 { "a\n" } else { "b\n" }),
        "round {round}: order does not alternate a and b as they were written: {ab:?}"
    );
    let log = m.log();
    assert!(log.contains("recovered"), "round {round}: the log does not say what was recovered:\n{log}");
}

#[test]
fn a_killed_daemon_loses_no_message_whose_write_returned() {
    let rounds = if std::env::var_os("MQFS_SOAK").is_some() { 1000 } else { 50 };
    let seed = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("crash rounds: {rounds}, seed {seed}");
    let mut rng = Rng(seed);
    for round in 0..rounds {
        crash_round(round, Duration::from_millis(10 + rng.below(150)));
    }
}

#[test]
fn a_torn_last_record_is_cut_and_said() {
    let store = TempDir::new();
    {
        let m = Mount::on_store(&store.path, "");
        fs::create_dir(m.join("g")).unwrap();
        ctl(&m.join("g"), "replay all");
        for i in 0..3 {
            write_msg(&m.join("g/s"), format!("TORN-TEST {i}\n").as_bytes());
        }
    }
    let (segment, _) = find_in_segments(&store.path, b"TORN-TEST 2");
    let intact = fs::metadata(&segment).unwrap().len();
    // Half a record header, as a write cut short by a crash leaves it.
    OpenOptions::new().append(true).open(&segment).unwrap().write_all(&[0x5a; 30]).unwrap();
    let m = Mount::on_store(&store.path, "");
    assert_eq!(history_lines(&m.join("g/s")), ["TORN-TEST 0\n", "TORN-TEST 1\n", "TORN-TEST 2\n"]);
    assert_eq!(
        fs::metadata(&segment).unwrap().len(),
        intact,
        "the torn bytes were cut from {}",
        segment.display()
    );
    assert!(m.log().contains("cut"), "the log says what was cut:\n{}", m.log());
    write_msg(&m.join("g/s"), b"TORN-TEST 3\n");
    assert_eq!(history_lines(&m.join("g/s")).len(), 4, "the log goes on after the cut");
}

#[test]
fn damage_in_the_middle_is_reported_with_file_and_offset_and_kept_aside() {
    let store = TempDir::new();
    {
        let m = Mount::on_store(&store.path, "");
        fs::create_dir(m.join("g")).unwrap();
        ctl(&m.join("g"), "replay all");
        for word in ["FIRST-MESSAGE", "MIDDLE-MESSAGE", "LAST-MESSAGE"] {
            write_msg(&m.join("g/s"), format!("{word}\n").as_bytes());
        }
    }
    let (segment, at) = find_in_segments(&store.path, b"MIDDLE-MESSAGE");
    let mut bytes = fs::read(&segment).unwrap();
    bytes[at] ^= 0xff; // one flipped bit pattern in a record followed by a valid one
    fs::write(&segment, &bytes).unwrap();
    let m = Mount::on_store(&store.path, "");
    let log = m.log();
    let name = segment.file_name().unwrap().to_string_lossy().into_owned();
    assert!(log.contains("ERROR") && log.contains(&name), "the damage is an error naming {name}:\n{log}");
    assert_eq!(history_lines(&m.join("g/s")), ["FIRST-MESSAGE\n"], "history ends before the damage");
    let damaged = store.join("damaged");
    let kept = run_ok(&format!("grep -rl LAST-MESSAGE '{}'", damaged.display()), &store.path);
    assert!(!kept.trim().is_empty(), "the bytes after the damage are kept under damaged/");
    write_msg(&m.join("g/s"), b"AFTER\n");
    assert_eq!(history_lines(&m.join("g/s")), ["FIRST-MESSAGE\n", "AFTER\n"], "the stream goes on");
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct SmallFs {
    dir: TempDir,
}

impl SmallFs {
    fn new(size: &str) -> SmallFs {
        let dir = TempDir::new();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir.path)
            .status();
        assert!(status.is_ok_and(|s| s.success()), "mount a tmpfs of {size}");
        SmallFs { dir }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir.path).status();
    }
}

#[test]
fn a_full_store_fails_writes_with_enospc_and_serves_again_once_space_returns() {
    let fs_ = SmallFs::new("6m");
    let message = vec![b'x'; 64 * 1024];
    let stored;
    {
        let m = Mount::on_store(&fs_.dir.path, "");
        let g = m.join("g");
        fs::create_dir(&g).unwrap();
        ctl(&g, "replay all");
        for _ in 0..32 {
            write_msg(&g.join("filler"), &message); // 2 MiB to free later
        }
        let mut s =
            OpenOptions::new().write(true).open(g.join("s")).or_else(|_| File::create(g.join("s"))).unwrap();
        let mut written = 0;
        let error = loop {
            match s.write(&message) {
                Ok(n) => {
                    assert_eq!(n, message.len(), "a short write");
                    written += 1;
                    assert!(written < 1000, "a 6 MiB file system took 64 MiB");
                }
                Err(e) => break e,
            }
        };
        assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "a full store: {error}");
        assert_eq!(history(&g.join("s")).len(), written, "the failed write published nothing");
        assert!(history(&g.join("s")).iter().all(|m| *m == message), "stored messages intact");
        fs::remove_file(g.join("filler")).unwrap();
        wait_until("space to return after removing a stream", T, || s.write(&message).is_ok());
        stored = written + 1;
        assert_eq!(history(&g.join("s")).len(), stored);
    }
    let m = Mount::on_store(&fs_.dir.path, "");
    assert_eq!(history(&m.join("g/s")).len(), stored, "after a remount");
}

#[test]
fn four_gigabytes_of_history_stay_on_disk_and_read_back_intact() {
    let store = TempDir::new();
    let m = Mount::on_store(&store.path, "");
    let g = m.join("g");
    fs::create_dir(&g).unwrap();
    ctl(&g, "replay all");
    const SIZE: usize = 64 * 1024;
    const COUNT: usize = (4 << 30) / SIZE;
    let pattern = |i: usize| -> Vec<u8> {
        let mut message = vec![(i % 251) as u8; SIZE];
        message[..8].copy_from_slice(&(i as u64).to_le_bytes());
        message
    };
    let mut most = 0;
    {
        let mut s = File::create(g.join("s")).unwrap();
        for i in 0..COUNT {
            s.write_all(&pattern(i)).unwrap();
            if i % 4096 == 0 {
                most = most.max(daemon_rss_kib(m.pid()));
            }
        }
    }
    let mut reader = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(g.join("s")).unwrap();
    let mut buf = vec![0; SIZE];
    let start = Instant::now();
    for i in 0..COUNT {
        let n = reader.read(&mut buf).unwrap();
        assert!(n == SIZE && buf == pattern(i), "message {i} read back wrong ({n} bytes)");
        if i % 4096 == 0 {
            most = most.max(daemon_rss_kib(m.pid()));
        }
    }
    eprintln!("4 GiB read back in {:?}; most daemon RSS {most} KiB", start.elapsed());
    assert!(most < 100 * 1024, "the daemon's resident memory reached {most} KiB holding 4 GiB");
}

/// Detaches a mount made by a command when dropped.
struct Detach<'a>(&'a Path);

impl Drop for Detach<'_> {
    fn drop(&mut self) {
        common::detach_all(self.0);
    }
}

/// A store mounted in the background (the daemon forks after opening its store) serves
/// `sync always` writes and fsync(2): the store's sync thread runs in the daemon, not in
/// the process that opened the store and exited.
#[test]
fn a_store_mounted_in_the_background_serves_sync_always_writes_and_fsync() {
    let store = TempDir::new();
    let mnt = TempDir::new();
    let status = Command::new(common::MQFS_BIN).arg(&store.path).arg(&mnt.path).status().unwrap();
    assert!(status.success(), "mqfs STORE MOUNTPOINT: {status}");
    let _detach = Detach(&mnt.path);
    let g = mnt.join("g");
    fs::create_dir(&g).unwrap();
    ctl(&g, "replay all");
    ctl(&g, "sync always");
    let fsync = "import os\nfd = os.open('g/s', os.O_WRONLY | os.O_APPEND)\nos.write(fd, b'fsynced\\n')\nos.fsync(fd)\nprint('synced')";
    let out = common::run_sh(&format!("echo durable >> g/s && python3 -c \"{fsync}\""), &mnt.path, T);
    assert!(out.status.success() && out.stdout == b"synced\n", "{out:?}");
    assert_eq!(history_lines(&g.join("s")), ["durable\n", "fsynced\n"]);
}
