//! Mounting as an administrator does, after the README's set-up (`contrib/install`, run
//! here once with the binary under test): `mount -t fuse.mqfs` through mqfs's checking
//! `mount.fuse.mqfs` and the stock mount.fuse3 helper (also with `drop_privileges`, refused
//! before mounting without `default_permissions`), `mount -t mqfs` through mqfs's own
//! helper link (fake and sloppy mounts), fstab entries with `mount -a`, `mount DIR` and
//! `umount` (mount(8)'s options accepted, `noauto` skipped, the shipped fstab example),
//! a store directory as SOURCE (its namespace kept across mounts), failures that make mount
//! exit non-zero with mqfs's one-line reason (bad option, bad SOURCE, busy mount point,
//! missing /dev/fuse, bad config file), the configuration file (limits,
//! defaults, presets, -o overriding it, the shipped example), the daemon (it leaves the
//! terminal, logs to syslog or to log=FILE at the level -o debug / RUST_LOG ask, stops on
//! SIGTERM, exits after `umount -l` releasing a blocked reader), the systemd units
//! (`systemd-analyze verify`, and the commands they run) and what the installer puts in
//! place (man pages, completions generated from the CLI).
//!
//! Everything runs through the real mount(8), mount.fuse3 and the installed binary; a test
//! whose tool is missing says so, and fails when run on CI (CI=true).

mod common;

use common::{
    MQFS_BIN, Proc, TempDir, blocked_in_syscall, is_mounted_at, mountinfo, poll_until, proc_state, run_ok,
    run_sh, wait_until,
};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

const T: Duration = Duration::from_secs(10);
const INSTALLED: &str = "/usr/local/bin/mqfs";
const HELPER: &str = "/sbin/mount.mqfs";
const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `cmd` to completion (panics after `T`): status, stdout, stderr.
fn run(cmd: &mut Command) -> (ExitStatus, String, String) {
    let shown = format!("{cmd:?}");
    let mut p = Proc::spawn(cmd);
    let status = p.wait_exit(T).unwrap_or_else(|| panic!("{shown} did not finish within {T:?}"));
    (status, text(&p.output()), text(&p.stderr_output()))
}

/// Runs `cmd`, asserting it succeeds; returns its stdout.
fn ok(cmd: &mut Command) -> String {
    let shown = format!("{cmd:?}");
    let (status, out, err) = run(cmd);
    assert!(status.success(), "{shown}: {status:?}\nstdout: {out}\nstderr: {err}");
    out
}

fn have(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
}

/// Whether `tool` is there; if not, a note, or a failure on CI.
fn need(tool: &str, package: &str) -> bool {
    if have(tool) {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{tool} is missing on CI (Debian package {package})");
    }
    eprintln!("note: skipping: {tool} is not installed (Debian package {package})");
    false
}

/// Runs the README's set-up once, with the binary under test: `contrib/install --bin`.
fn installed() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let result = DONE.get_or_init(|| {
        let out = Command::new(format!("{REPO}/contrib/install"))
            .args(["--bin", MQFS_BIN])
            .output()
            .map_err(|e| format!("contrib/install: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "contrib/install: {:?}\n{}{}",
                out.status,
                text(&out.stdout),
                text(&out.stderr)
            ));
        }
        let (built, installed) = (std::fs::read(MQFS_BIN), std::fs::read(INSTALLED));
        if built.ok() != installed.ok() {
            return Err(format!("{INSTALLED} is not the binary under test {MQFS_BIN}"));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn gone(pid: u32) -> bool {
    matches!(proc_state(pid), None | Some('Z'))
}

/// The command lines (argv) of running mqfs processes (also run as mount.mqfs) that have
/// `word` among their arguments.
fn daemons_with(word: &[u8]) -> Vec<(u32, Vec<Vec<u8>>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // comm first: reading another process's cmdline can block on its memory map.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if !matches!(comm.trim(), "mqfs" | "mount.mqfs") || gone(pid) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<Vec<u8>> = cmdline.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
        if args.iter().any(|a| a == word) {
            found.push((pid, args));
        }
    }
    found
}

/// The one daemon serving `dir`.
fn daemon_for(dir: &Path) -> (u32, Vec<String>) {
    let daemons = daemons_with(dir.as_os_str().as_bytes());
    assert_eq!(daemons.len(), 1, "expected one daemon for {}: {daemons:?}", dir.display());
    let (pid, args) = &daemons[0];
    (*pid, args.iter().map(|a| text(a)).collect())
}

/// Mount points under a temporary directory. On drop (also when the test failed) it
/// detaches whatever is mounted on them and SIGKILLs any mqfs naming them.
struct Dirs {
    tmp: TempDir,
    made: Vec<PathBuf>,
}

impl Dirs {
    fn new() -> Dirs {
        Dirs { tmp: TempDir::new(), made: Vec::new() }
    }

    /// A new empty directory `name`.
    fn dir(&mut self, name: &str) -> PathBuf {
        let path = self.tmp.join(name);
        std::fs::create_dir(&path).unwrap();
        self.made.push(path.clone());
        path
    }

    /// A file `name` holding `content`.
    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.tmp.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        for path in &self.made {
            let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
            for _ in 0..8 {
                if !is_mounted_at(path, None) {
                    break;
                }
                // SAFETY: c_path is a valid NUL-terminated string.
                unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
            }
            for (pid, _) in daemons_with(path.as_os_str().as_bytes()) {
                eprintln!("note: killing leftover mqfs {pid} for {}", path.display());
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        }
    }
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// The mountinfo entry of `dir` (there must be exactly one).
fn mount_of(dir: &Path) -> common::MountInfo {
    let here: Vec<_> = mountinfo().into_iter().filter(|m| m.mount_point == dir).collect();
    assert_eq!(here.len(), 1, "mounts on {}: {here:?}", dir.display());
    here.into_iter().next().unwrap()
}

/// The super options of the mount on `dir` (the last field of its mountinfo line).
fn super_options(dir: &Path) -> String {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let needle = format!(" {} ", s(dir));
    let line = text.lines().find(|l| l.contains(&needle)).unwrap_or_else(|| panic!("{} not mounted", s(dir)));
    line.rsplit(' ').next().unwrap().to_string()
}

fn ctl(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("ctl")).unwrap()
}

/// The mount on `dir` serves: a reader blocked on a new stream receives a message written
/// by another process, then EOF when the stream is removed.
fn assert_serves(dir: &Path) {
    std::fs::File::create(dir.join("s")).unwrap();
    let mut reader = Proc::spawn(Command::new("cat").arg("s").current_dir(dir));
    let pid = reader.pid();
    wait_until("cat to block in read", T, || blocked_in_syscall(pid, libc::SYS_read));
    let out = run_sh("echo served >> s", dir, T);
    assert!(out.status.success(), "write: {}", text(&out.stderr));
    reader.wait_output_contains(b"served\n", T);
    std::fs::remove_file(dir.join("s")).unwrap();
    let status = reader.wait_exit(T).expect("cat ends when its stream is removed");
    assert!(status.success(), "cat: {status:?}");
}

/// `umount DIR` succeeds, the daemon `pid` exits and nothing stays mounted.
fn umount_ends(dir: &Path, pid: u32) {
    ok(Command::new("umount").arg(dir));
    wait_until("the daemon to exit after umount", T, || gone(pid));
    assert!(!is_mounted_at(dir, None), "{} still mounted: {:?}", dir.display(), mountinfo());
}

/// `mount ARGS` must fail with mqfs's one-line reason containing `needle` on stderr, and
/// leave `dir` with `mounts_before` mounts and no new daemon.
fn mount_fails(args: &[&str], needle: &str, dir: &Path, mounts_before: usize) {
    let daemons_before = daemons_with(dir.as_os_str().as_bytes()).len();
    let (status, out, err) = run(Command::new("mount").args(args));
    assert!(!status.success(), "mount {args:?} succeeded: {out} {err}");
    let reason: Vec<&str> = err.lines().filter(|l| l.starts_with("mqfs: ")).collect();
    assert_eq!(reason.len(), 1, "mount {args:?}: want one \"mqfs: \" line on stderr: {err:?}");
    assert!(reason[0].contains(needle), "mount {args:?}: {:?} lacks {needle:?}", reason[0]);
    let here = mountinfo().iter().filter(|m| m.mount_point == dir).count();
    assert_eq!(here, mounts_before, "mount {args:?} changed the mounts on {}", dir.display());
    assert_eq!(
        daemons_with(dir.as_os_str().as_bytes()).len(),
        daemons_before,
        "mount {args:?} left a daemon"
    );
}

// ---------------------------------------------------------------------------
// mount -t fuse.mqfs, -t mqfs
// ---------------------------------------------------------------------------

#[test]
fn mount_t_fuse_mqfs_goes_through_mount_fuse3_and_umount_ends_the_daemon() {
    installed();
    if !need("mount.fuse3", "fuse3") {
        return;
    }
    let mut dirs = Dirs::new();
    let dir = dirs.dir("mq");
    // mount(8) strips PATH: this works only because mqfs is in /usr/local/bin.
    let (status, _, err) = run(Command::new("/usr/bin/mount")
        .args(["-t", "fuse.mqfs", "none", s(&dir), "-o", "replay=all,allow_other"])
        .env_clear());
    // The mount is there the moment mount returns.
    let mounted = is_mounted_at(&dir, Some("fuse.mqfs"));
    assert!(status.success(), "mount: {status:?} {err}");
    assert!(mounted, "mount returned before {} was mounted", dir.display());
    let info = mount_of(&dir);
    assert_eq!((info.fs_type.as_str(), info.source.as_str()), ("fuse.mqfs", "none"));
    let opts = super_options(&dir);
    assert!(opts.contains("allow_other") && opts.contains("default_permissions"), "{opts}");

    // mount.fuse3 ran the installed mqfs with its own additions (dev,suid).
    let (pid, args) = daemon_for(&dir);
    assert_eq!(args[0], "mqfs", "{args:?}");
    assert_eq!(args[1..4], ["none", s(&dir), "-o"], "{args:?}");
    assert!(args[4].contains("replay=all,allow_other") && args[4].ends_with("dev,suid"), "{args:?}");
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(), Path::new(INSTALLED));

    assert!(ctl(&dir).starts_with("data message\nreplay all\n"), "{}", ctl(&dir));
    // allow_other: another user may read what permissions allow.
    let nobody = ok(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(dir.join("ctl")));
    assert!(nobody.starts_with("data message\n"), "{nobody}");
    assert_serves(&dir);
    umount_ends(&dir, pid);
}

#[test]
fn without_allow_other_other_users_are_refused() {
    installed();
    if !need("mount.fuse3", "fuse3") {
        return;
    }
    let mut dirs = Dirs::new();
    let dir = dirs.dir("mq");
    ok(Command::new("mount").args(["-t", "fuse.mqfs", "none", s(&dir)]));
    let (pid, _) = daemon_for(&dir);
    let (status, _, err) = run(Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
        .arg(dir.join("ctl")));
    assert!(!status.success() && err.contains("Permission denied"), "{status:?} {err}");
    umount_ends(&dir, pid);
}

#[test]
fn mount_t_mqfs_runs_the_installed_helper() {
    installed();
    let mut dirs = Dirs::new();
    let dir = dirs.dir("mq");
    assert_eq!(std::fs::read_link(HELPER).unwrap(), Path::new(INSTALLED));
    ok(Command::new("mount").args([
        "-t",
        "mqfs",
        "none",
        s(&dir),
        "-o",
        "replay=last,depth=3,x-mqfs.note=1",
    ]));
    assert_eq!(mount_of(&dir).fs_type, "fuse.mqfs");
    let (pid, args) = daemon_for(&dir);
    assert_eq!(args[0], HELPER, "mount(8) runs the helper: {args:?}");
    assert!(ctl(&dir).starts_with("data message\nreplay last\ndepth 3\n"), "{}", ctl(&dir));
    assert_serves(&dir);
    umount_ends(&dir, pid);
}

#[test]
fn helper_fake_mounts_nothing_and_sloppy_ignores_unknown_options() {
    installed();
    let mut dirs = Dirs::new();
    let dir = dirs.dir("mq");
    // mount -f: everything is checked, nothing is mounted, no daemon is left.
    let (status, out, err) =
        run(Command::new("mount").args(["-f", "-t", "mqfs", "none", s(&dir), "-o", "replay=all"]));
    assert!(status.success(), "mount -f: {status:?} {out} {err}");
    assert!(!is_mounted_at(&dir, None));
    assert!(daemons_with(dir.as_os_str().as_bytes()).is_empty());
    // ... and a fake mount still checks the options.
    mount_fails(&["-f", "-t", "mqfs", "none", s(&dir), "-o", "frobnicate"], "frobnicate", &dir, 0);

    // mount -s: an unknown option is ignored with a warning.
    let (status, _, err) =
        run(Command::new("mount").args(["-s", "-t", "mqfs", "none", s(&dir), "-o", "frobnicate,replay=all"]));
    assert!(status.success(), "mount -s: {status:?} {err}");
    assert!(err.contains("frobnicate"), "no warning: {err:?}");
    assert!(ctl(&dir).starts_with("data message\nreplay all\n"));
    let (pid, _) = daemon_for(&dir);
    umount_ends(&dir, pid);
}

#[test]
fn drop_privileges_serves_the_descriptor_mount_fuse3_passes() {
    installed();
    if !need("mount.fuse3", "fuse3") {
        return;
    }
    let mut dirs = Dirs::new();
    let dir = dirs.dir("mq");
    ok(Command::new("mount").args([
        "-t",
        "fuse.mqfs",
        "none",
        s(&dir),
        "-o",
        "drop_privileges,default_permissions,replay=all",
    ]));
    // mount.fuse3 mounted, and runs `mqfs none /dev/fd/N -o ...` without privileges.
    let daemons: Vec<_> = daemons_with(b"none")
        .into_iter()
        .filter(|(_, args)| args.len() > 2 && args[2].starts_with(b"/dev/fd/"))
        .collect();
    assert_eq!(daemons.len(), 1, "{daemons:?}");
    let pid = daemons[0].0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("CapEff:\t0000000000000000"), "the daemon kept privileges:\n{status}");
    assert!(ctl(&dir).starts_with("data message\nreplay all\n"), "{}", ctl(&dir));
    assert!(super_options(&dir).contains("default_permissions"));
    assert_serves(&dir);
    ok(Command::new("umount").arg(&dir));
    wait_until("the daemon to exit after umount", T, || gone(pid));

    // Without default_permissions the kernel would check nothing: mqfs (as mount.fuse.mqfs)
    // refuses before mount.fuse3 mounts anything, as it does a bad option.
    for options in ["drop_privileges", "drop_privileges,default_permissions,replay"] {
        let (status, _, err) =
            run(Command::new("mount").args(["-t", "fuse.mqfs", "none", s(&dir), "-o", options]));
        assert!(!status.success(), "mount -o {options}: {status:?}");
        let reason = |l: &str| l.contains("default_permissions") || l.contains("replay needs a value");
        assert!(err.lines().any(|l| l.starts_with("mqfs: ") && reason(l)), "{err}");
        assert!(!is_mounted_at(&dir, None), "mount -o {options} left a mount");
    }
}

// ---------------------------------------------------------------------------
// fstab
// ---------------------------------------------------------------------------

#[test]
fn a_nats_source_mounts_with_mount_t_fuse_mqfs_and_from_an_fstab_line_with_netdev() {
    installed();
    if !need("mount.fuse3", "fuse3") {
        return;
    }
    let server = common::nats::NatsServer::new();
    let mut dirs = Dirs::new();
    let (by_type, by_fstab) = (dirs.dir("by-type"), dirs.dir("by-fstab"));
    let (source, prefix) = (server.url(), common::unique_name("m"));
    ok(Command::new("/usr/bin/mount")
        .args(["-t", "fuse.mqfs", &source, s(&by_type), "-o", &format!("prefix={prefix}")])
        .env_clear());
    let line = format!("{source} {} fuse.mqfs _netdev,prefix={prefix} 0 0\n", s(&by_fstab));
    let fstab = dirs.file("fstab", &line);
    ok(Command::new("mount").args(["-T", s(&fstab)]).arg(&by_fstab));
    for dir in [&by_type, &by_fstab] {
        let info = mount_of(dir);
        assert_eq!((info.fs_type.as_str(), info.source.as_str()), ("fuse.mqfs", source.as_str()));
    }
    // One tree: what one makes, the other shows.
    std::fs::create_dir(by_type.join("g")).unwrap();
    wait_until("g on the fstab mount", Duration::from_secs(1), || by_fstab.join("g").is_dir());
    let (type_pid, _) = daemon_for(&by_type);
    let (fstab_pid, _) = daemon_for(&by_fstab);
    umount_ends(&by_type, type_pid);
    umount_ends(&by_fstab, fstab_pid);
}

#[test]
fn fstab_entries_mount_with_mount_a_and_mount_dir_and_end_with_umount() {
    installed();
    if !need("mount.fuse3", "fuse3") {
        return;
    }
    let mut dirs = Dirs::new();
    let (auto, lazy, own) = (dirs.dir("auto"), dirs.dir("lazy"), dirs.dir("own"));
    let fstab = dirs.file(
        "fstab",
        &format!(
            "# a test fstab\n\
             none {} fuse.mqfs defaults,allow_other,replay=all,nofail,_netdev,x-systemd.automount,x-systemd.requires=network-online.target 0 0\n\
             none {} fuse.mqfs noauto,replay=last 0 0\n\
             none {} mqfs noauto,_netdev,depth=5 0 0\n",
            s(&auto),
            s(&lazy),
            s(&own)
        ),
    );
    let fstab = s(&fstab);
    ok(Command::new("mount").args(["-T", fstab, "-a"]));
    assert!(is_mounted_at(&auto, Some("fuse.mqfs")));
    assert!(!is_mounted_at(&lazy, None) && !is_mounted_at(&own, None), "mount -a mounted a noauto entry");
    assert!(ctl(&auto).starts_with("data message\nreplay all\n"), "{}", ctl(&auto));
    assert!(super_options(&auto).contains("allow_other"));
    // Again: what is mounted already is skipped.
    ok(Command::new("mount").args(["-T", fstab, "-a"]));
    let (auto_pid, _) = daemon_for(&auto);

    ok(Command::new("mount").args(["-T", fstab]).arg(&lazy));
    assert!(ctl(&lazy).starts_with("data message\nreplay last\n"), "{}", ctl(&lazy));
    // Options on the command line override the fstab line's.
    ok(Command::new("mount").args(["-T", fstab, "-o", "replay=all"]).arg(&own));
    assert!(ctl(&own).starts_with("data message\nreplay all\ndepth 5\n"), "{}", ctl(&own));
    let (lazy_pid, _) = daemon_for(&lazy);
    let (own_pid, _) = daemon_for(&own);
    assert_serves(&own);

    umount_ends(&auto, auto_pid);
    umount_ends(&lazy, lazy_pid);
    umount_ends(&own, own_pid);
}

#[test]
fn the_shipped_fstab_example_mounts() {
    installed();
    if !need("mount.fuse3", "fuse3") {
        return;
    }
    let example = std::fs::read_to_string(format!("{REPO}/contrib/fstab.example")).unwrap();
    let mut dirs = Dirs::new();
    let mut fstab = String::new();
    let mut mounted = Vec::new();
    // Active lines, and the commented-out examples: each on a directory of its own.
    for (i, line) in example.lines().enumerate() {
        let entry = line.trim_start_matches('#');
        let fields: Vec<&str> = entry.split_whitespace().collect();
        if fields.len() != 6 || !fields[1].starts_with("/n/") {
            continue;
        }
        let dir = dirs.dir(&format!("example{i}"));
        let source = match fields[0] {
            "/var/lib/mqfs" => dirs.dir(&format!("store{i}")).to_string_lossy().into_owned(),
            source => source.to_string(),
        };
        let options = fields[3]
            .replace("config=/etc/mqfs.toml", &format!("config={REPO}/contrib/mqfs.toml"))
            .replace("log=/var/log/mqfs.log", &format!("log={}", s(&dirs.tmp.join("example.log"))))
            .replace("noauto,", "");
        fstab.push_str(&format!("{source} {} {} {options} 0 0\n", s(&dir), fields[2]));
        mounted.push(dir);
    }
    assert!(mounted.len() >= 4, "fstab.example lost its entries: {example}");
    let fstab = dirs.file("fstab", &fstab);
    ok(Command::new("mount").args(["-T", s(&fstab), "-a"]));
    for dir in &mounted {
        assert!(is_mounted_at(dir, Some("fuse.mqfs")), "{} not mounted", dir.display());
        let (pid, _) = daemon_for(dir);
        umount_ends(dir, pid);
    }
}

// ---------------------------------------------------------------------------
// Failures through mount(8)
// ---------------------------------------------------------------------------

#[test]
fn a_store_directory_keeps_the_namespace_across_mounts_through_mount_8() {
    installed();
    let types: &[&str] = if need("mount.fuse3", "fuse3") { &["fuse.mqfs", "mqfs"] } else { &["mqfs"] };
    let mut dirs = Dirs::new();
    let (store, dir) = (dirs.dir("store"), dirs.dir("mq"));
    let listing = || ok(Command::new("ls").args(["-lRi", "--full-time"]).arg(&dir));
    ok(Command::new("mount").args(["-t", types[0], s(&store), s(&dir)]));
    run_ok(
        "mkdir -p g/sub && echo 'replay last' > g/ctl && touch g/s && ln g/s g/sub/t && chmod 640 g/s",
        &dir,
    );
    let (before, config) = (listing(), ctl(&dir.join("g")));
    let (pid, _) = daemon_for(&dir);
    umount_ends(&dir, pid);
    for &fstype in types {
        ok(Command::new("mount").args(["-t", fstype, s(&store), s(&dir)]));
        assert_eq!(listing(), before, "{fstype}");
        assert_eq!(ctl(&dir.join("g")), config, "{fstype}");
        let (pid, _) = daemon_for(&dir);
        umount_ends(&dir, pid);
    }
}

#[test]
fn a_failing_mount_exits_non_zero_with_the_reason_from_mqfs() {
    installed();
    let types: &[&str] = if need("mount.fuse3", "fuse3") { &["fuse.mqfs", "mqfs"] } else { &["mqfs"] };
    let mut dirs = Dirs::new();
    let dir = dirs.dir("mq");
    let d = s(&dir);
    let bad_config = dirs.file("bad.toml", "[limits]\nmemory = \"1G\"\n\n[defaults]\ndepth = \"lots\"\n");
    let config = format!("config={}", s(&bad_config));
    for &fstype in types {
        mount_fails(
            &["-t", fstype, "none", d, "-o", "frobnicate"],
            "unknown mount option \"frobnicate\"",
            &dir,
            0,
        );
        mount_fails(&["-t", fstype, "none", d, "-o", "replay=sometimes"], "replay", &dir, 0);
        mount_fails(&["-t", fstype, "none", d, "-o", "threads=0"], "threads", &dir, 0);
        mount_fails(
            &["-t", fstype, "none", d, "-o", &config],
            &format!("{}:5: depth", s(&bad_config)),
            &dir,
            0,
        );
        mount_fails(&["-t", fstype, "none", d, "-o", "log=/nonexistent/dir/mqfs.log"], "log file", &dir, 0);
        let neither =
            "SOURCE: neither \"none\", nats://HOST:PORT nor an existing directory: /nonexistent/store";
        mount_fails(&["-t", fstype, "/nonexistent/store", d], neither, &dir, 0);
    }
    // Busy: something is mounted there already.
    ok(Command::new("mount").args(["-t", types[0], "none", d, "-o", "replay=all"]));
    std::fs::write(dir.join("s"), "first\n").unwrap();
    for &fstype in types {
        mount_fails(&["-t", fstype, "none", d], "busy", &dir, 1);
    }
    assert!(ctl(&dir).contains("# messages 1\n"), "the first mount was disturbed: {}", ctl(&dir));
    let (pid, _) = daemon_for(&dir);
    umount_ends(&dir, pid);

    // No /dev/fuse: in a mount namespace of its own, with an empty /dev.
    if need("unshare", "util-linux") {
        for &fstype in types {
            let script = format!("mount -t tmpfs tmpfs /dev && exec mount -t {fstype} none {d}");
            let (status, _, err) = run(Command::new("unshare").args(["-m", "sh", "-c", &script]));
            assert!(!status.success(), "mount without /dev/fuse succeeded");
            assert!(err.lines().any(|l| l.starts_with("mqfs: /dev/fuse is missing")), "{fstype}: {err}");
        }
    }
}

// ---------------------------------------------------------------------------
// Configuration file
// ---------------------------------------------------------------------------

#[test]
fn the_config_file_sets_limits_defaults_and_presets_and_o_overrides_it() {
    installed();
    let mut dirs = Dirs::new();
    let dir = dirs.dir("mq");
    let config = dirs.file(
        "mqfs.toml",
        "[limits]\nmemory = \"8M\"\nmax_message = 1048576\nthreads = 2\n\n\
         [defaults]\nreplay = \"last\"\ndepth = 10\n\n\
         [[preset]]\npath = \"logs\"\nreplay = \"all\"\ndepth = \"64K\"\n\n\
         [[preset]]\npath = \"users/*/inbox\"\ndata = \"coalesce\"\nwrite = \"one\"\n",
    );
    ok(Command::new("mount")
        .args(["-t", "mqfs", "none", s(&dir), "-o"])
        .arg(format!("config={},depth=20", s(&config))));
    let (pid, _) = daemon_for(&dir);
    // [defaults], with -o depth=20 over the file's depth.
    assert!(ctl(&dir).starts_with("data message\nreplay last\ndepth 20\n"), "{}", ctl(&dir));
    // [limits]: df shows the memory ceiling; a write over max_message fails EFBIG.
    let df = ok(Command::new("df").args(["-B1", "--output=size"]).arg(&dir));
    assert_eq!(df.lines().nth(1).map(str::trim), Some("8388608"), "df: {df}");
    let big = run_sh("dd if=/dev/zero of=s bs=1048577 count=1", &dir, T);
    assert!(!big.status.success() && text(&big.stderr).contains("File too large"), "{big:?}");
    let fits = run_sh("dd if=/dev/zero of=s bs=1048576 count=1", &dir, T);
    assert!(fits.status.success(), "{fits:?}");
    // Presets: logs and below; * matches one name; other groups copy their parent.
    for group in ["logs", "logs/web", "logs/web/2024", "other", "users", "users/ann", "users/ann/inbox"] {
        std::fs::create_dir(dir.join(group)).unwrap();
    }
    // Any ctl setting may be preset.
    assert!(
        ctl(&dir.join("users/ann/inbox")).contains("\nwrite one\n"),
        "{}",
        ctl(&dir.join("users/ann/inbox"))
    );
    assert!(!ctl(&dir.join("users/ann")).contains("\nwrite one\n"));
    for (group, want) in [
        ("logs", "data message\nreplay all\ndepth 64K\n"),
        ("logs/web", "data message\nreplay all\ndepth 64K\n"),
        ("logs/web/2024", "data message\nreplay all\ndepth 64K\n"),
        ("other", "data message\nreplay last\ndepth 20\n"),
        ("users/ann", "data message\nreplay last\ndepth 20\n"),
        ("users/ann/inbox", "data coalesce\nreplay last\ndepth 20\n"),
    ] {
        let got = ctl(&dir.join(group));
        assert!(got.starts_with(want), "{group}: {got:?}, want {want:?}");
    }
    // A preset group behaves as configured: a late reader gets the history.
    std::fs::write(dir.join("logs/web/access"), "GET /\n").unwrap();
    let replayed = run_sh(
        "python3 -c 'import os, sys; fd = os.open(\"logs/web/access\", os.O_RDONLY | os.O_NONBLOCK); \
         sys.stdout.write(os.read(fd, 100).decode())'",
        &dir,
        T,
    );
    assert_eq!(text(&replayed.stdout), "GET /\n", "{replayed:?}");
    umount_ends(&dir, pid);
}

#[test]
fn the_shipped_config_example_is_valid_and_applies() {
    installed();
    let mut dirs = Dirs::new();
    let dir = dirs.dir("mq");
    let config = format!("config={REPO}/contrib/mqfs.toml");
    ok(Command::new(INSTALLED).args(["none", s(&dir), "-o", &config]));
    let (pid, _) = daemon_for(&dir);
    std::fs::create_dir_all(dir.join("users/bob/inbox")).unwrap();
    std::fs::create_dir_all(dir.join("logs/app")).unwrap();
    assert!(ctl(&dir.join("users/bob/inbox")).starts_with("data message\nreplay all\ndepth 1000\n"));
    assert!(ctl(&dir.join("logs/app")).starts_with("data message\nreplay all\ndepth 64M\n"));
    let df = ok(Command::new("df").args(["-B1", "--output=size"]).arg(&dir));
    assert_eq!(df.lines().nth(1).map(str::trim), Some("1073741824"), "df: {df}");
    umount_ends(&dir, pid);
}

// ---------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------

/// Field `n` (from 1) of /proc/PID/stat.
fn stat_field(pid: u32, n: usize) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    after_comm.split(' ').nth(n - 3).unwrap().to_string()
}

fn log_has(log: &Path, needle: &str) -> bool {
    std::fs::read_to_string(log).unwrap_or_default().contains(needle)
}

#[test]
fn the_daemon_leaves_the_terminal_logs_to_its_file_and_stops_on_sigterm() {
    installed();
    let mut dirs = Dirs::new();
    let dir = dirs.dir("mq");
    let log = dirs.tmp.join("mqfs.log");
    // The command's output ends when it returns: the daemon holds neither stdout nor
    // stderr (a pipeline would otherwise wait for it).
    let started =
        run_sh(&format!("{INSTALLED} {} -o log={} 2>&1 | cat", s(&dir), s(&log)), Path::new("/"), T);
    assert!(started.status.success(), "{started:?}");
    assert_eq!(text(&started.stdout), "", "the daemon wrote to the terminal");
    let (pid, _) = daemon_for(&dir);
    // A session of its own, no controlling terminal, stdio on /dev/null.
    assert_eq!(stat_field(pid, 6), pid.to_string(), "not a session leader");
    assert_eq!(stat_field(pid, 7), "0", "has a controlling terminal");
    for fd in 0..3 {
        assert_eq!(std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap(), Path::new("/dev/null"));
    }
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap(), Path::new("/"));

    wait_until("the log to say the daemon serves", T, || {
        log_has(&log, &format!("mqfs[{pid}]: info: serving {}", s(&dir)))
    });
    // A refused ctl write is logged; at the default level there is no debug detail.
    let refused = run_sh("echo bogus > ctl", &dir, T);
    assert!(!refused.status.success());
    wait_until("the refused ctl line in the log", T, || log_has(&log, "bogus"));
    assert!(!log_has(&log, ": debug: "), "debug lines at the info level");

    // SIGTERM detaches the mount and ends the daemon cleanly.
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
    wait_until("the daemon to exit on SIGTERM", T, || gone(pid));
    assert!(!is_mounted_at(&dir, None), "still mounted after SIGTERM");
    assert!(log_has(&log, "signal 15"), "{}", std::fs::read_to_string(&log).unwrap());
}

#[test]
fn o_debug_and_rust_log_raise_the_log_level_without_keeping_the_foreground() {
    installed();
    let mut dirs = Dirs::new();
    for (name, env, option) in [("by-option", None, ",debug"), ("by-env", Some("debug"), "")] {
        let dir = dirs.dir(name);
        let log = dirs.tmp.join(format!("{name}.log"));
        let mut cmd = Command::new(INSTALLED);
        cmd.arg(&dir).arg("-o").arg(format!("log={}{option}", s(&log)));
        if let Some(level) = env {
            cmd.env("RUST_LOG", level);
        }
        // Returns: -o debug does not mean the foreground (it would hang mount(8)).
        ok(&mut cmd);
        let (pid, _) = daemon_for(&dir);
        std::fs::read_dir(&dir).unwrap().for_each(drop);
        wait_until("debug lines in the log", T, || log_has(&log, ": debug: "));
        umount_ends(&dir, pid);
        assert!(log_has(&log, "unmounted"), "{name}: {}", std::fs::read_to_string(&log).unwrap());
    }
}

#[test]
fn umount_l_with_a_blocked_reader_ends_the_daemon_and_releases_the_reader() {
    installed();
    let mut dirs = Dirs::new();
    let dir = dirs.dir("mq");
    ok(Command::new(INSTALLED).arg(&dir));
    let (pid, _) = daemon_for(&dir);
    std::fs::File::create(dir.join("s")).unwrap();
    let mut reader = Proc::spawn(Command::new("cat").arg(dir.join("s")));
    let reader_pid = reader.pid();
    wait_until("cat to block in read", T, || blocked_in_syscall(reader_pid, libc::SYS_read));
    // The open file keeps the connection after a lazy unmount; the daemon notices that its
    // mount is gone and exits, which ends the blocked read.
    ok(Command::new("umount").arg("-l").arg(&dir));
    wait_until("the daemon to exit after umount -l", T, || gone(pid));
    let status = reader.wait_exit(T).expect("the blocked reader was not released");
    assert!(!status.success(), "cat: {status:?}");
    let err = text(&reader.stderr_output());
    assert!(err.contains("not connected") || err.contains("connection abort"), "cat: {err}");
    assert!(!is_mounted_at(&dir, None));
}

/// A syslog socket at /dev/log for the length of a test (when there is none). A thread
/// keeps reading it, so that no daemon of a concurrent test blocks on a full socket.
struct FakeSyslog {
    messages: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl FakeSyslog {
    fn new() -> Option<FakeSyslog> {
        let socket = UnixDatagram::bind("/dev/log").ok()?;
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (m, st) = (messages.clone(), stop.clone());
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            while !st.load(Ordering::Relaxed) {
                if let Ok(n) = socket.recv(&mut buf) {
                    m.lock().unwrap().push(text(&buf[..n]));
                }
            }
        });
        Some(FakeSyslog { messages, stop, reader: Some(reader) })
    }

    /// Waits for a message containing every one of `needles`.
    fn wait_for(&self, needles: &[&str]) -> String {
        let mut found = None;
        let seen = poll_until(T, || {
            let messages = self.messages.lock().unwrap();
            found = messages.iter().find(|m| needles.iter().all(|n| m.contains(n))).cloned();
            found.is_some()
        });
        let all = self.messages.lock().unwrap().clone();
        assert!(seen, "no syslog message with {needles:?} within {T:?}; got {all:?}");
        found.unwrap()
    }
}

impl Drop for FakeSyslog {
    fn drop(&mut self) {
        let _ = std::fs::remove_file("/dev/log");
        self.stop.store(true, Ordering::Relaxed);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

#[test]
fn without_log_the_background_daemon_logs_to_syslog() {
    installed();
    let mut dirs = Dirs::new();
    let dir = dirs.dir("mq");
    if Path::new("/dev/log").exists() {
        // A real syslog daemon: look for the line in the journal.
        if !need("journalctl", "systemd") {
            return;
        }
        ok(Command::new(INSTALLED).arg(&dir));
        let (pid, _) = daemon_for(&dir);
        let want = format!("serving {}", s(&dir));
        wait_until("the journal to show the daemon's start", T, || {
            let out = Command::new("journalctl")
                .args(["-t", "mqfs", "-o", "cat", "--no-pager"])
                .arg(format!("_PID={pid}"))
                .output();
            out.is_ok_and(|o| text(&o.stdout).contains(&want))
        });
        umount_ends(&dir, pid);
        return;
    }
    let syslog = FakeSyslog::new().expect("cannot bind /dev/log");
    ok(Command::new(INSTALLED).arg(&dir));
    let (pid, _) = daemon_for(&dir);
    // <30> is facility daemon (3), level info (6); the identifier carries the pid.
    let message = syslog.wait_for(&[&format!("mqfs[{pid}]: serving {}", s(&dir))]);
    assert!(message.starts_with("<30>"), "{message:?}");
    ok(Command::new("umount").arg(&dir));
    syslog.wait_for(&[&format!("mqfs[{pid}]: "), "unmounted", "exiting"]);
    wait_until("the daemon to exit after umount", T, || gone(pid));
}

#[test]
fn mount_n_mounts_in_another_mount_namespace() {
    installed();
    if !need("unshare", "util-linux") || !need("nsenter", "util-linux") {
        return;
    }
    let mut dirs = Dirs::new();
    let dir = dirs.dir("mq");
    let ns_dir = dirs.dir("ns");
    // A private bind mount to hold a persistent namespace file.
    ok(Command::new("mount").args(["--bind"]).arg(&ns_dir).arg(&ns_dir));
    ok(Command::new("mount").args(["--make-private"]).arg(&ns_dir));
    let ns = ns_dir.join("mnt");
    std::fs::write(&ns, "").unwrap();
    ok(Command::new("unshare").arg(format!("--mount={}", s(&ns))).arg("true"));
    ok(Command::new("mount").args(["-N", s(&ns), "-t", "mqfs", "none", s(&dir), "-o", "replay=all"]));
    // Mounted there, not here.
    assert!(!is_mounted_at(&dir, None), "mounted in the test's namespace");
    let inside =
        ok(Command::new("nsenter").arg(format!("--mount={}", s(&ns))).args(["cat"]).arg(dir.join("ctl")));
    assert!(inside.starts_with("data message\nreplay all\n"), "{inside}");
    let (pid, _) = daemon_for(&dir);
    ok(Command::new("nsenter").arg(format!("--mount={}", s(&ns))).arg("umount").arg(&dir));
    wait_until("the daemon to exit after umount", T, || gone(pid));
    ok(Command::new("umount").arg(&ns));
    ok(Command::new("umount").arg(&ns_dir));
}

// ---------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------

/// The value of `Key=` in a unit file.
fn unit_value(unit: &str, key: &str) -> String {
    let prefix = format!("{key}=");
    unit.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {key}= in unit"))
        .to_string()
}

fn escape_path(dir: &Path, suffix: &str) -> String {
    ok(Command::new("systemd-escape").args(["-p", &format!("--suffix={suffix}")]).arg(dir)).trim().to_string()
}

/// `systemd-analyze verify` accepts `unit` (and says nothing about it).
fn verify(unit: &Path) {
    let (status, out, err) = run(Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(unit));
    let name = unit.file_name().unwrap().to_string_lossy().into_owned();
    assert!(status.success(), "systemd-analyze verify {name}: {status:?}\n{out}{err}");
    assert!(!err.contains(&name) && !out.contains(&name), "systemd-analyze verify {name}:\n{out}{err}");
}

#[test]
fn the_mount_unit_verifies_and_its_mount_works() {
    installed();
    if !need("systemd-analyze", "systemd") || !need("mount.fuse3", "fuse3") {
        return;
    }
    let mut dirs = Dirs::new();
    let dir = dirs.dir("mq");
    let units = dirs.dir("units");
    let shipped = std::fs::read_to_string(format!("{REPO}/contrib/systemd/n-mq.mount")).unwrap();
    assert_eq!(unit_value(&shipped, "Where"), "/n/mq");
    let unit_text = shipped.replace("Where=/n/mq", &format!("Where={}", s(&dir)));
    let unit = units.join(escape_path(&dir, "mount"));
    std::fs::write(&unit, &unit_text).unwrap();
    verify(&unit);
    // What systemd runs for it: mount What Where -t Type -o Options.
    let what = unit_value(&unit_text, "What");
    let options = unit_value(&unit_text, "Options");
    ok(Command::new("mount").args([&what, s(&dir), "-t", &unit_value(&unit_text, "Type"), "-o", &options]));
    assert!(ctl(&dir).starts_with("data message\nreplay all\n"), "{}", ctl(&dir));
    assert!(super_options(&dir).contains("allow_other"));
    let (pid, _) = daemon_for(&dir);
    assert_serves(&dir);
    umount_ends(&dir, pid);
}

#[test]
fn the_service_unit_verifies_and_its_command_notifies_and_stops_on_sigterm() {
    installed();
    if !need("systemd-analyze", "systemd") {
        return;
    }
    let mut dirs = Dirs::new();
    let dir = dirs.dir("mq");
    let units = dirs.dir("units");
    let template = std::fs::read_to_string(format!("{REPO}/contrib/systemd/mqfs@.service")).unwrap();
    std::fs::write(units.join("mqfs@.service"), &template).unwrap();
    let instance = ok(Command::new("systemd-escape").args(["--template=mqfs@.service", "-p"]).arg(&dir));
    verify(&units.join(instance.trim()));

    // What systemd runs: ExecStart with %f the mount point, ${MQFS_OPTIONS} and
    // ${MQFS_SOURCE} one word each (here a store directory), NOTIFY_SOCKET set (Type=notify).
    assert!(template.contains("\nEnvironment=MQFS_SOURCE=none\n"), "memory by default");
    let store = dirs.dir("store");
    let exec = unit_value(&template, "ExecStart");
    let args: Vec<String> = exec
        .split_whitespace()
        .map(|w| {
            w.replace("%f", s(&dir))
                .replace("${MQFS_OPTIONS}", "replay=last")
                .replace("${MQFS_SOURCE}", s(&store))
        })
        .collect();
    assert_eq!(args[0], INSTALLED);
    let notify_path = dirs.tmp.join("notify");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify.set_read_timeout(Some(T)).unwrap();
    let mut service = Proc::spawn(Command::new(&args[0]).args(&args[1..]).env("NOTIFY_SOCKET", &notify_path));
    let mut buf = [0u8; 256];
    let n = notify.recv(&mut buf).expect("no READY=1 from the service");
    let message = text(&buf[..n]);
    assert!(message.contains("READY=1"), "{message:?}");
    // Ready means mounted.
    assert!(is_mounted_at(&dir, Some("fuse.mqfs")), "READY=1 before the mount");
    assert!(ctl(&dir).starts_with("data message\nreplay last\n"), "{}", ctl(&dir));
    assert_serves(&dir);
    // systemctl stop sends SIGTERM: the mount goes and mqfs exits 0.
    service.signal(libc::SIGTERM);
    let status = service.wait_exit(T).expect("the service did not stop on SIGTERM");
    assert!(status.success(), "{status:?}: {}", text(&service.stderr_output()));
    assert!(!is_mounted_at(&dir, None));
    let n = notify.recv(&mut buf).expect("no STOPPING=1");
    assert!(text(&buf[..n]).contains("STOPPING=1"));
    assert!(store.join("catalogue").exists(), "the service mounted its store");
}

// ---------------------------------------------------------------------------
// What the installer puts in place
// ---------------------------------------------------------------------------

/// Every command the installer puts in place, in the order it names them.
const COMMANDS: [&str; 7] = ["mqfs", "mq-cat", "mq-pin", "mq-stamp", "mq-call", "mq-serve", "mqfs-stat"];

#[test]
fn man_pages_and_completions_are_installed_and_current() {
    installed();
    let pages = [
        ("mqfs.1", "man1"),
        ("mqfs.5", "man5"),
        ("mq-cat.1", "man1"),
        ("mq-pin.1", "man1"),
        ("mq-stamp.1", "man1"),
        ("mq-call.1", "man1"),
        ("mq-serve.1", "man1"),
        ("mqfs-stat.1", "man1"),
    ];
    for (page, section) in pages {
        let source = std::fs::read(format!("{REPO}/docs/man/{page}")).unwrap();
        let installed = std::fs::read(format!("/usr/local/share/man/{section}/{page}")).unwrap();
        assert_eq!(source, installed, "{page} installed is not the source's");
        if need("groff", "groff-base") {
            let (status, out, err) =
                run(Command::new("groff").args(["-man", "-ww", "-z"]).arg(format!("{REPO}/docs/man/{page}")));
            assert!(status.success() && out.is_empty() && err.is_empty(), "groff warns about {page}: {err}");
        }
    }
    if need("man", "man-db") {
        for (page, section) in pages {
            let (name, number) = page.rsplit_once('.').unwrap();
            let found = ok(Command::new("man").args(["-w", number, name]));
            let installed = format!("/usr/local/share/man/{section}/{page}");
            let same =
                Path::new(found.trim()).canonicalize().ok() == Path::new(&installed).canonicalize().ok();
            assert!(same, "man -w {number} {name}: {found}, not {installed}");
        }
    }
    // Completions are generated from each command's CLI definition: the installed ones and
    // the copies in contrib/completions are what the binary prints.
    let bins = Path::new(MQFS_BIN).parent().unwrap();
    for command in COMMANDS {
        for (shell, installed, shipped) in [
            (
                "bash",
                format!("/usr/local/share/bash-completion/completions/{command}"),
                format!("{command}.bash"),
            ),
            ("zsh", format!("/usr/local/share/zsh/site-functions/_{command}"), format!("_{command}")),
            (
                "fish",
                format!("/usr/local/share/fish/vendor_completions.d/{command}.fish"),
                format!("{command}.fish"),
            ),
        ] {
            let generated = ok(Command::new(bins.join(command)).args(["--completions", shell]));
            assert!(generated.contains("completions") && generated.contains(command), "{shell}: {generated}");
            assert_eq!(std::fs::read_to_string(&installed).unwrap(), generated, "{installed}");
            let shipped = std::fs::read_to_string(format!("{REPO}/contrib/completions/{shipped}")).unwrap();
            assert_eq!(
                shipped, generated,
                "contrib/completions/{shipped} is stale: regenerate with `{command} --completions {shell}`"
            );
        }
        // bash loads its completion and completes the command's flags.
        let function = format!("_{}", command.replace('-', "__"));
        let words = ok(Command::new("bash").args([
            "-c",
            &format!(
                "source /usr/local/share/bash-completion/completions/{command} && complete -p {command} && \
                 COMP_WORDS=({command} --comp) COMP_CWORD=1 COMP_LINE='{command} --comp' \
                 COMP_POINT={} && {function} {command} --comp {command} && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                command.len() + 7
            ),
        ]));
        assert!(words.contains("--completions"), "{command}: {words}");
    }
    // The unit template points at the installed binary.
    let unit = std::fs::read_to_string("/usr/local/lib/systemd/system/mqfs@.service").unwrap();
    assert!(unit.contains(&format!("ExecStart={INSTALLED} ${{MQFS_SOURCE}} %f -f")), "{unit}");
}

#[test]
fn the_installer_puts_every_command_in_place_and_names_it() {
    let dirs = Dirs::new();
    let prefix = dirs.tmp.join("prefix");
    let sbin = dirs.tmp.join("sbin");
    std::fs::create_dir(&sbin).unwrap();
    let install =
        |args: &[&str]| ok(Command::new(format!("{REPO}/contrib/install")).args(args).env("SBINDIR", &sbin));
    let said = install(&["--bin", MQFS_BIN, "--prefix", s(&prefix)]);
    let mut files =
        vec![sbin.join("mount.mqfs"), sbin.join("mount.fuse.mqfs"), prefix.join("share/man/man5/mqfs.5")];
    assert!(said.contains(s(&sbin.join("mount.fuse.mqfs"))), "{said}");
    for command in COMMANDS {
        assert!(said.contains(&format!("{}/bin/{command}", s(&prefix))), "{said}");
        assert!(said.contains(&format!("{command}(1)")), "the message lacks {command}(1): {said}");
        files.extend([
            prefix.join(format!("bin/{command}")),
            prefix.join(format!("share/man/man1/{command}.1")),
            prefix.join(format!("share/bash-completion/completions/{command}")),
            prefix.join(format!("share/zsh/site-functions/_{command}")),
            prefix.join(format!("share/fish/vendor_completions.d/{command}.fish")),
        ]);
    }
    assert!(
        said.contains("mqfs(5)") && said.contains(&format!("completions for {}", COMMANDS.join(" "))),
        "{said}"
    );
    for file in &files {
        assert!(file.exists(), "{} not installed: {said}", file.display());
    }
    install(&["--prefix", s(&prefix), "--uninstall"]);
    for file in &files {
        assert!(!file.exists() && file.symlink_metadata().is_err(), "{} not uninstalled", file.display());
    }
}

/// A page as man(1) shows it, without formatting, wide enough for a line per example.
fn rendered(page: &str) -> String {
    ok(Command::new("man").args(["-l", &format!("{REPO}/docs/man/{page}")]).env("MANWIDTH", "200"))
}

#[test]
fn man_pages_render_without_stray_escapes_and_show_the_real_errors() {
    if !need("man", "man-db") || !need("groff", "groff-base") {
        return;
    }
    for page in
        ["mqfs.1", "mqfs.5", "mq-cat.1", "mq-pin.1", "mq-stamp.1", "mq-call.1", "mq-serve.1", "mqfs-stat.1"]
    {
        for line in rendered(page).lines() {
            // A backslash shows only as the key Ctrl-\ (or ^\).
            let stray = line
                .match_indices('\\')
                .any(|(at, _)| !line[..at].ends_with("Ctrl-") && !line[..at].ends_with('^'));
            assert!(!stray, "{page} renders an escape: {line:?}");
        }
    }
    // The configuration error mqfs(1) shows is the one mqfs prints.
    let page = rendered("mqfs.1");
    let shown =
        page.lines().map(str::trim).find(|l| l.starts_with("mqfs: /etc/mqfs.toml:7:")).expect("the example");
    let dirs = Dirs::new();
    let config = dirs.file("mqfs.toml", "# line 1\n\n\n\n\n[defaults]\ndepth = \"64Q\"\n");
    let mountpoint = dirs.tmp.join("mq");
    std::fs::create_dir(&mountpoint).unwrap();
    let (status, _, err) =
        run(Command::new(MQFS_BIN).arg(&mountpoint).arg("-o").arg(format!("config={}", s(&config))));
    assert!(!status.success());
    assert_eq!(err.trim_end(), shown.replace("/etc/mqfs.toml", s(&config)));
}

#[test]
fn help_and_mqfs_1_name_every_option() {
    let help = ok(Command::new(MQFS_BIN).arg("--help"));
    let page = std::fs::read_to_string(format!("{REPO}/docs/man/mqfs.1")).unwrap();
    let readme = std::fs::read_to_string(format!("{REPO}/README.md")).unwrap();
    for option in [
        "data=",
        "replay=",
        "depth=",
        "memory=",
        "max_message=",
        "threads=",
        "config=",
        "log=",
        "debug",
        "allow_other",
        "allow_root",
        "default_permissions",
        "ro",
        "noexec",
        "uid=",
        "gid=",
        "fsname=",
    ] {
        let name = option.trim_end_matches('=');
        assert!(help.contains(option), "--help lacks {option}");
        let entry = [".B ", ".BI ", ".BR "].iter().any(|m| page.contains(&format!("\n{m}{name}")));
        assert!(entry, "mqfs.1 lacks an entry for {option}");
        assert!(readme.contains(&format!("`{}", option.trim_end_matches('='))), "README lacks {option}");
    }
    for flag in ["-f", "-d", "-o", "--completions", "--help", "--version"] {
        assert!(help.contains(flag), "--help lacks {flag}");
        assert!(page.contains(&flag.replace('-', "\\-")), "mqfs.1 lacks {flag}");
    }
    let version = ok(Command::new(MQFS_BIN).arg("--version"));
    assert_eq!(version.trim(), format!("mqfs {}", env!("CARGO_PKG_VERSION")));
    assert!(page.contains(&format!("mqfs {}", env!("CARGO_PKG_VERSION"))), "mqfs.1 names another version");
}
