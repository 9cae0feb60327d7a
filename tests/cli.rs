//! The `mqfs` command line: background mode (returns once the mount is
//! ready, a daemon serves until `umount` or `fusermount3 -u`), foreground
//! mode stopping cleanly on SIGTERM and SIGINT even with a reader blocked,
//! one-line "mqfs: " errors before mounting (missing or non-directory mount
//! point, already mounted, bad -o options, a SOURCE neither `none` nor a
//! directory) that leave nothing mounted, --version and --help, -o options
//! taking effect, and a store directory's namespace kept across mounts.

mod common;

use common::{
    MQFS_BIN, Mount, Proc, TempDir, blocked_in_syscall, is_mounted_at, mountinfo, proc_state, run_ok, run_sh,
    wait_until,
};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `mqfs ARGS` to completion (panics if it takes longer than `T`).
fn mqfs(args: &[&str]) -> (ExitStatus, String, String) {
    let mut p = Proc::spawn(Command::new(MQFS_BIN).args(args));
    let status = p.wait_exit(T).unwrap_or_else(|| panic!("mqfs {args:?} did not exit within {T:?}"));
    (status, text(&p.output()), text(&p.stderr_output()))
}

/// Pids of the processes running the mqfs binary with `dir` as an argument.
fn daemons_for(dir: &Path) -> Vec<u32> {
    let want = dir.as_os_str().as_bytes();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        let is_mqfs = args.first().is_some_and(|a0| a0.ends_with(b"mqfs"));
        if is_mqfs && args.contains(&want) && proc_state(pid) != Some('Z') {
            pids.push(pid);
        }
    }
    pids
}

fn gone(pid: u32) -> bool {
    matches!(proc_state(pid), None | Some('Z'))
}

/// A mount point for a background daemon. On drop (also when the test
/// failed) it detaches whatever is mounted there and SIGKILLs any mqfs
/// whose command line names it, then removes the directory.
struct BgDir {
    _tmp: TempDir,
    path: PathBuf,
}

impl BgDir {
    fn new() -> BgDir {
        let tmp = TempDir::new();
        let path = tmp.join("mnt");
        std::fs::create_dir(&path).unwrap();
        BgDir { _tmp: tmp, path }
    }

    fn s(&self) -> &str {
        self.path.to_str().unwrap()
    }
}

impl Drop for BgDir {
    fn drop(&mut self) {
        let c_path = CString::new(self.path.as_os_str().as_bytes()).unwrap();
        for _ in 0..8 {
            if !is_mounted_at(&self.path, None) {
                break;
            }
            // SAFETY: c_path is a valid NUL-terminated string.
            unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
        }
        for pid in daemons_for(&self.path) {
            eprintln!("note: killing leftover mqfs daemon {pid} for {}", self.path.display());
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
        // TempDir's own drop refuses to recurse into a mount.
    }
}

/// Mounts in the background with `args` (which must name `dir`), asserts
/// the command returned 0 with the mount already in place and served, and
/// returns the daemon's pid.
fn start_background(dir: &BgDir, args: &[&str]) -> u32 {
    let (status, out, err) = mqfs(args);
    // Checked before anything else: the mount must be there the moment mqfs returns.
    let mounted = is_mounted_at(&dir.path, Some("fuse.mqfs"));
    assert!(status.success(), "mqfs {args:?}: {status:?}\nstdout: {out}\nstderr: {err}");
    assert!(mounted, "mqfs {args:?} returned before {} was mounted: {:?}", dir.s(), mountinfo());
    let names: Vec<String> = std::fs::read_dir(&dir.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["ctl", "order"], "ls {}", dir.s());
    let daemons = daemons_for(&dir.path);
    assert_eq!(daemons.len(), 1, "expected one daemon serving {}: {daemons:?}", dir.s());
    daemons[0]
}

/// The daemon keeps serving after the command returned: a stream works.
fn assert_serves(dir: &BgDir) {
    std::fs::File::create(dir.path.join("s")).unwrap();
    let mut reader = Proc::spawn(Command::new("cat").arg("s").current_dir(&dir.path));
    let pid = reader.pid();
    wait_until("cat to block in read", T, || blocked_in_syscall(pid, libc::SYS_read));
    let out = run_sh("echo served >> s", &dir.path, T);
    assert!(out.status.success(), "write: {}", text(&out.stderr));
    reader.wait_output_contains(b"served\n", T);
    // End the reader through the file system (rm: EOF), so that nothing
    // holds the mount open afterwards.
    std::fs::remove_file(dir.path.join("s")).unwrap();
    let status = reader.wait_exit(T).expect("cat ends when its stream is removed");
    assert!(status.success(), "cat: {status:?}");
}

// ---------------------------------------------------------------------------
// Background mode
// ---------------------------------------------------------------------------

#[test]
fn background_mode_returns_once_mounted_and_umount_ends_the_daemon() {
    let dir = BgDir::new();
    let daemon = start_background(&dir, &[dir.s()]);
    assert_serves(&dir);
    let out = run_sh(&format!("umount '{}'", dir.s()), Path::new("/"), T);
    assert!(out.status.success(), "umount: {:?} {}", out.status, text(&out.stderr));
    wait_until("the daemon to exit after umount", T, || gone(daemon));
    assert!(!is_mounted_at(&dir.path, None), "still mounted after umount");
    assert!(daemons_for(&dir.path).is_empty());
}

#[test]
fn background_mode_with_a_source_ends_on_fusermount3_u() {
    let dir = BgDir::new();
    let daemon = start_background(&dir, &["none", dir.s(), "-o", "replay=all"]);
    let ctl = std::fs::read_to_string(dir.path.join("ctl")).unwrap();
    assert!(ctl.starts_with("data message\nreplay all\n"), "ctl: {ctl:?}");
    assert_serves(&dir);

    let have_fusermount = Command::new("sh")
        .args(["-c", "command -v fusermount3"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !have_fusermount {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("fusermount3 is missing on CI (the fuse3 package provides it)");
        }
        eprintln!(
            "note: skipping `fusermount3 -u`: fusermount3 is not installed (Debian: apt-get install fuse3)"
        );
        return; // BgDir's drop unmounts and ends the daemon
    }
    let out = run_sh(&format!("fusermount3 -u '{}'", dir.s()), Path::new("/"), T);
    assert!(out.status.success(), "fusermount3 -u: {}", text(&out.stderr));
    wait_until("the daemon to exit after fusermount3 -u", T, || gone(daemon));
    assert!(!is_mounted_at(&dir.path, None), "still mounted after fusermount3 -u");
}

// ---------------------------------------------------------------------------
// Foreground mode
// ---------------------------------------------------------------------------

fn foreground_stop(sig: libc::c_int) {
    let mut m = Mount::new();
    std::fs::File::create(m.join("s")).unwrap();
    let mut cat = Proc::spawn(Command::new("cat").arg(m.join("s")));
    let pid = cat.pid();
    wait_until("cat to block in read", T, || blocked_in_syscall(pid, libc::SYS_read));

    let status = m.stop_with(sig, T).unwrap_or_else(|| panic!("mqfs -f did not exit on signal {sig}"));
    assert!(status.success(), "mqfs -f on signal {sig}: {status:?}\nlog:\n{}", m.log());
    assert!(!m.is_mounted(), "still mounted after signal {sig}");
    assert!(!is_mounted_at(&m.path, None));
    // The blocked reader is released rather than left hanging.
    cat.wait_exit(T).unwrap_or_else(|| panic!("cat still blocked after the daemon exited on signal {sig}"));
}

#[test]
fn foreground_sigterm_unmounts_and_exits_0_releasing_a_blocked_reader() {
    foreground_stop(libc::SIGTERM);
}

#[test]
fn foreground_sigint_unmounts_and_exits_0_releasing_a_blocked_reader() {
    foreground_stop(libc::SIGINT);
}

// ---------------------------------------------------------------------------
// Errors before the mount
// ---------------------------------------------------------------------------

/// `mqfs ARGS` must fail with one stderr line "mqfs: ..." containing
/// `needle`, and leave `dir` as it found it (`mounts_before` mounts there)
/// with no daemon for it.
fn fails_before_mount(args: &[&str], needle: &str, dir: &Path, mounts_before: usize) {
    let (status, out, err) = mqfs(args);
    assert!(!status.success(), "mqfs {args:?} succeeded; stdout {out:?} stderr {err:?}");
    assert!(status.code().is_some(), "mqfs {args:?} died of a signal: {status:?}");
    assert!(
        err.ends_with('\n') && err.lines().count() == 1,
        "mqfs {args:?}: stderr must be one line: {err:?}"
    );
    assert!(err.starts_with("mqfs: "), "mqfs {args:?}: stderr {err:?}");
    assert!(err.contains(needle), "mqfs {args:?}: stderr {err:?} lacks {needle:?}");
    let here = mountinfo().iter().filter(|m| m.mount_point == dir).count();
    assert_eq!(here, mounts_before, "mqfs {args:?} changed the mounts on {}", dir.display());
    // Only a daemon that was there before (the first mount's) may remain.
    let daemons = daemons_for(dir);
    assert!(daemons.len() <= mounts_before, "mqfs {args:?} left a daemon: {daemons:?}");
}

#[test]
fn a_missing_mount_point_is_an_error() {
    let dir = BgDir::new();
    let missing = dir.path.join("nonexistent");
    let m = missing.to_str().unwrap();
    // mount(8)'s words, and the remedy; no "(os error 2)".
    let said = format!("mqfs: mount point {m} does not exist (create it with mkdir -p)\n");
    fails_before_mount(&[m], &said, &missing, 0);
    fails_before_mount(&[m, "-f"], &said, &missing, 0);
    assert!(!missing.exists());
}

#[test]
fn a_regular_file_as_mount_point_is_an_error() {
    let dir = BgDir::new();
    let file = dir.path.join("file");
    std::fs::write(&file, "x").unwrap();
    let f = file.to_str().unwrap();
    fails_before_mount(&[f], "Not a directory", &file, 0);
    fails_before_mount(&[f, "-f"], "Not a directory", &file, 0);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
}

#[test]
fn a_mount_point_already_mounted_is_busy() {
    let m = Mount::with_options("replay=all");
    std::fs::write(m.join("s"), "first\n").unwrap();
    let p = m.path.to_str().unwrap();
    fails_before_mount(&[p, "-f"], "busy", &m.path, 1);
    fails_before_mount(&[p], "busy", &m.path, 1);
    // The first mount is untouched and still serving.
    assert!(m.is_mounted());
    let ctl = std::fs::read_to_string(m.join("ctl")).unwrap();
    assert!(ctl.contains("# streams 1\n") && ctl.contains("# messages 1\n"), "ctl: {ctl:?}");
}

#[test]
fn a_source_neither_none_nor_a_directory_is_an_error_exiting_2() {
    let dir = BgDir::new();
    let file = dir._tmp.join("file");
    std::fs::write(&file, "x").unwrap();
    for source in ["/nonexistent/store", file.to_str().unwrap(), "mqfs"] {
        let said =
            format!("mqfs: SOURCE: neither \"none\", nats://HOST:PORT nor an existing directory: {source}\n");
        fails_before_mount(&[source, dir.s()], &said, &dir.path, 0);
        fails_before_mount(&[source, dir.s(), "-f"], &said, &dir.path, 0);
        assert_eq!(mqfs(&[source, dir.s()]).0.code(), Some(2), "{source}");
    }
}

#[test]
fn a_nats_source_and_its_options_are_checked_before_anything_is_mounted() {
    let dir = BgDir::new();
    fails_before_mount(&["nats://localhost", dir.s()], "each server is HOST:PORT", &dir.path, 0);
    fails_before_mount(&["none", dir.s(), "-o", "prefix=x"], "need a nats:// SOURCE", &dir.path, 0);
    fails_before_mount(&["nats://127.0.0.1:9", dir.s(), "-o", "prefix=a.b"], "prefix \"a.b\"", &dir.path, 0);
    let refused = "not on a NATS-backed mount: a write cannot wait";
    fails_before_mount(&["nats://127.0.0.1:9", dir.s(), "-o", "write=all"], refused, &dir.path, 0);
    // Nothing listens on port 9: the daemon's connection fails, and says so.
    fails_before_mount(&["nats://127.0.0.1:9", dir.s()], "nats://127.0.0.1:9: cannot connect", &dir.path, 0);
}

#[test]
fn a_store_directory_keeps_the_namespace_across_mounts() {
    let dir = BgDir::new();
    let store = dir._tmp.join("store");
    std::fs::create_dir(&store).unwrap();
    let listing = || run_ok(&format!("ls -lRi --full-time '{}'", dir.s()), Path::new("/"));
    let ctl = |group: &str| std::fs::read_to_string(dir.path.join(group).join("ctl")).unwrap();
    let mount = |options: &str| {
        let (status, out, err) = mqfs(&[store.to_str().unwrap(), dir.s(), "-o", options]);
        assert!(status.success(), "mqfs {}: {out} {err}", store.display());
        daemons_for(&dir.path)[0]
    };
    let umount = |daemon| {
        let out = run_sh(&format!("umount '{}'", dir.s()), Path::new("/"), T);
        assert!(out.status.success(), "umount: {}", text(&out.stderr));
        wait_until("the daemon to exit after umount", T, || gone(daemon));
    };
    let daemon = mount("replay=last");
    run_ok(
        "mkdir -p g/sub && printf 'replay all\\ndepth 7\\n' > g/ctl && touch g/s && ln g/s g/sub/t \
         && ln -s g/s l && mkfifo g/fifo && chmod 2750 g/sub && chown 12:34 g/s && rm g/sub/t \
         && mkdir gone && rmdir gone && mv g/s g/sub/s && touch -d @1000000 g/sub/s",
        &dir.path,
    );
    let (before, config, root) = (listing(), ctl("g"), ctl("."));
    assert!(config.starts_with("data message\nreplay all\ndepth 7\n"), "{config}");
    assert!(root.starts_with("data message\nreplay last\n"), "a new store's root takes -o: {root}");
    umount(daemon);
    // Mounted again, the store keeps the root's saved configuration over -o's.
    let daemon = mount("replay=off");
    assert_eq!(listing(), before);
    assert_eq!((ctl("g"), ctl(".")), (config, root));
    umount(daemon);
}

#[test]
fn an_unknown_mount_option_is_named_in_the_error() {
    let dir = BgDir::new();
    fails_before_mount(&[dir.s(), "-o", "frobnicate"], "frobnicate", &dir.path, 0);
    fails_before_mount(&[dir.s(), "-f", "-o", "replay=all,frobnicate"], "frobnicate", &dir.path, 0);
}

#[test]
fn a_bad_option_value_is_an_error() {
    let dir = BgDir::new();
    fails_before_mount(&[dir.s(), "-o", "replay=sometimes"], "replay", &dir.path, 0);
    fails_before_mount(&[dir.s(), "-f", "-o", "replay=sometimes"], "replay", &dir.path, 0);
    fails_before_mount(&[dir.s(), "-f", "-o", "depth=lots"], "depth", &dir.path, 0);
}

#[test]
fn max_message_beyond_what_a_stream_can_index_is_an_error() {
    let dir = BgDir::new();
    for value in ["4G", "5G"] {
        let option = format!("memory=8G,max_message={value}");
        fails_before_mount(&[dir.s(), "-o", &option], "max_message", &dir.path, 0);
        fails_before_mount(&[dir.s(), "-f", "-o", &option], "4G - 1", &dir.path, 0);
        let config = dir._tmp.join(format!("mqfs-{value}.toml"));
        std::fs::write(&config, format!("[limits]\nmemory = \"8G\"\nmax_message = \"{value}\"\n")).unwrap();
        let option = format!("config={}", config.display());
        fails_before_mount(&[dir.s(), "-f", "-o", &option], ":3: max_message: bad value", &dir.path, 0);
    }
    // The largest the index holds mounts and serves (the memory ceiling is not allocated).
    let daemon = start_background(&dir, &[dir.s(), "-o", "memory=8G,max_message=4294967295"]);
    assert_serves(&dir);
    let out = run_sh(&format!("umount '{}'", dir.s()), Path::new("/"), T);
    assert!(out.status.success(), "umount: {:?} {}", out.status, text(&out.stderr));
    wait_until("the daemon to exit after umount", T, || gone(daemon));
}

#[test]
fn a_known_option_without_its_value_says_what_it_takes() {
    let dir = BgDir::new();
    for (option, says) in [
        ("replay", "mount option replay needs a value (replay=off|last|all)"),
        ("depth", "mount option depth needs a value (depth=N|SIZE)"),
        ("memory", "mount option memory needs a value (memory=SIZE)"),
    ] {
        fails_before_mount(&[dir.s(), "-o", option], says, &dir.path, 0);
    }
}

// ---------------------------------------------------------------------------
// --version, --help
// ---------------------------------------------------------------------------

#[test]
fn version_and_help() {
    let (status, out, err) = mqfs(&["--version"]);
    assert!(status.success(), "--version: {status:?} {err}");
    assert!(out.starts_with("mqfs "), "--version: {out:?}");
    assert!(out.contains(env!("CARGO_PKG_VERSION")), "--version: {out:?}");

    let (status, out, err) = mqfs(&["--help"]);
    assert!(status.success(), "--help: {status:?} {err}");
    assert!(out.contains("Examples"), "--help lacks examples: {out}");
    assert!(out.contains("umount"), "--help lacks how to unmount: {out}");
    assert!(out.contains("-o"), "--help lacks -o: {out}");
}

// ---------------------------------------------------------------------------
// -o options take effect
// ---------------------------------------------------------------------------

#[test]
fn group_options_set_the_root_ctl() {
    let m = Mount::with_options("replay=all,data=coalesce,depth=5");
    let ctl = std::fs::read_to_string(m.join("ctl")).unwrap();
    assert!(ctl.starts_with("data coalesce\nreplay all\ndepth 5\n"), "ctl: {ctl:?}");
    // mount(8) noise is accepted and ignored alongside real options.
    let m = Mount::with_options("defaults,rw,nofail,_netdev,x-systemd.automount,replay=last,depth=64K");
    let ctl = std::fs::read_to_string(m.join("ctl")).unwrap();
    assert!(ctl.starts_with("data message\nreplay last\ndepth 64K\n"), "ctl: {ctl:?}");
}

#[test]
fn ro_makes_every_write_fail_erofs() {
    let m = Mount::with_options("ro");
    let mi = mountinfo();
    let me = mi.iter().find(|i| i.mount_point == m.path).expect("mounted");
    assert_eq!(me.fs_type, "fuse.mqfs");
    let errors = run_sh(
        "for op in 'touch s' 'mkdir g' 'echo x >> ctl' 'echo x > s2'; do sh -c \"$op\" 2>&1 || true; done; \
         python3 -c 'import os\ntry:\n    os.open(\"ctl\", os.O_WRONLY)\nexcept OSError as e:\n    print(e.strerror)'",
        &m.path,
        T,
    );
    let out = text(&errors.stdout);
    assert_eq!(out.matches("Read-only file system").count(), 5, "{out}");
    assert_eq!(std::fs::read_dir(&m.path).unwrap().count(), 2, "ro mount gained entries");
    // Reading still works.
    let ctl = std::fs::read_to_string(m.join("ctl")).unwrap();
    assert!(ctl.starts_with("data message\nreplay off\ndepth 0\n"), "ctl: {ctl:?}");
}
