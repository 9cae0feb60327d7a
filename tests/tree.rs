//! The namespace through real shell commands: what creates a stream or a
//! group, the reserved `ctl` and `order` entries in every group, name length,
//! removal (`rm`, `rm -r`, `rmdir`) and what it does to readers, `mv` of
//! streams and groups keeping history and open readers, and metadata: owners
//! and modes of what other users create (umask), chmod/chown, permissions
//! enforced by the kernel (supplementary groups included), size = retained
//! bytes, mtime = last message, and `df` answering from the memory ceiling.

mod common;

use common::users::users;
use common::{Mount, Proc, blocked_in_syscall, run_sh, wait_until};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const T: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `script` in the mount root; returns the output (status unchecked).
fn run(m: &Mount, script: &str) -> Output {
    run_sh(script, &m.path, T)
}

/// Runs `script` in the mount root and asserts it succeeded; returns stdout.
fn ok(m: &Mount, script: &str) -> String {
    let out = run(m, script);
    assert!(
        out.status.success(),
        "sh -c {script:?} failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `script`, asserts it failed and that its stderr contains `needle`.
fn fails_with(m: &Mount, script: &str, needle: &str) {
    let out = run(m, script);
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "sh -c {script:?} succeeded but should fail with {needle:?}; stdout: {}",
        text(&out.stdout)
    );
    assert!(err.contains(needle), "sh -c {script:?}: stderr {err:?} lacks {needle:?}");
}

/// A python3 that other users may run (/root/.pyenv is private to root).
fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" }
}

/// Python that tries `op` (an expression using `os`, `stat` and `p`, the
/// path in argv[1]) and prints "ok" or the errno's symbolic name.
fn py_errno(op: &str, path: &str) -> String {
    format!(
        "{} -c 'import os, stat, errno, sys\np = sys.argv[1]\ntry:\n    {op}\n    print(\"ok\")\n\
         except OSError as e:\n    print(errno.errorcode[e.errno])' '{path}'",
        python()
    )
}

/// The `ls -1U` listing of `dir` (readdir order), one name a line.
fn ls(m: &Mount, dir: &str) -> Vec<String> {
    ok(m, &format!("ls -1U '{dir}'")).lines().map(str::to_string).collect()
}

/// The value of the `# key N` line of a ctl file.
fn ctl_count(m: &Mount, ctl: &str, key: &str) -> u64 {
    let content = std::fs::read_to_string(m.join(ctl)).unwrap_or_else(|e| panic!("read {ctl}: {e}"));
    let prefix = format!("# {key} ");
    content
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{ctl} has no {prefix:?} line: {content:?}"))
        .trim()
        .parse()
        .unwrap()
}

/// Starts `cat path` (relative to the mount) and waits until it has printed
/// exactly `expect` and is parked in read(2) waiting for more.
fn cat_reader(m: &Mount, path: &str, expect: &[u8]) -> Proc {
    let p = Proc::spawn(Command::new("cat").arg(path).current_dir(&m.path));
    if !expect.is_empty() {
        p.wait_output_len(expect.len(), T);
    }
    let pid = p.pid();
    wait_until(&format!("cat {path} to block in read"), T, || blocked_in_syscall(pid, libc::SYS_read));
    assert_eq!(text(&p.output()), text(expect), "cat {path} printed");
    p
}

/// Asserts that a fresh `cat path` shows exactly `history` and then waits.
fn assert_history(m: &Mount, path: &str, history: &[u8]) {
    drop(cat_reader(m, path, history));
}

// ---------------------------------------------------------------------------
// Test users
// ---------------------------------------------------------------------------

/// `sh -c script` as `uid`/`gid` with exactly the supplementary `groups`.
fn as_user(uid: u32, gid: u32, groups: &[u32], script: &str) -> String {
    let groups = if groups.is_empty() {
        "--clear-groups".to_string()
    } else {
        format!("--groups={}", groups.iter().map(u32::to_string).collect::<Vec<_>>().join(","))
    };
    let script = script.replace('\'', r"'\''");
    format!("setpriv --reuid={uid} --regid={gid} {groups} sh -c '{script}'")
}

/// `stat -c '%u %g %a' path`.
fn owner_mode(m: &Mount, path: &str) -> String {
    ok(m, &format!("stat -c '%u %g %a' '{path}'")).trim().to_string()
}

// ---------------------------------------------------------------------------
// Tree
// ---------------------------------------------------------------------------

#[test]
fn every_way_of_creating_a_file_makes_a_stream_and_mkdir_a_group() {
    let m = Mount::with_options("replay=all");
    ok(&m, "touch a && echo x > b && echo y >> c && mkdir g");
    ok(&m, &py_errno("os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))", "d"));
    let out = ok(&m, &py_errno("os.mknod(p, stat.S_IFREG | 0o644)", "e"));
    assert_eq!(out.trim(), "ok", "mknod of a regular file");
    ok(&m, &py_errno("os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644))", "f"));

    for s in ["a", "b", "c", "d", "e", "f"] {
        let kind = ok(&m, &format!("stat -c %F {s}"));
        assert!(kind.starts_with("regular"), "{s} is {kind:?}");
    }
    assert_eq!(ok(&m, "stat -c %F g").trim(), "directory");
    assert_eq!(ctl_count(&m, "ctl", "streams"), 6);
    assert_eq!(ctl_count(&m, "ctl", "groups"), 1);
    // `>` and `>>` each appended one message; the others published nothing.
    assert_eq!(ctl_count(&m, "ctl", "messages"), 2);
    assert_history(&m, "b", b"x\n");
    assert_history(&m, "c", b"y\n");
    // And the new ones are live streams: a message written now reaches a reader.
    let reader = cat_reader(&m, "e", b"");
    ok(&m, "echo z >> e");
    reader.wait_output_contains(b"z\n", T);
}

#[test]
fn every_group_lists_ctl_and_order_after_its_entries() {
    let m = Mount::new();
    ok(&m, "mkdir -p a/b/c && touch a/zz a/aa a/b/s");
    assert_eq!(ls(&m, "."), ["a", "ctl", "order"]);
    // In the order created (`ls -U`).
    assert_eq!(ls(&m, "a"), ["b", "zz", "aa", "ctl", "order"]);
    assert_eq!(ls(&m, "a/b"), ["c", "s", "ctl", "order"]);
    assert_eq!(ls(&m, "a/b/c"), ["ctl", "order"]);
    for g in [".", "a", "a/b", "a/b/c"] {
        let kinds = ok(&m, &format!("stat -c %F {g}/ctl {g}/order"));
        assert!(kinds.lines().all(|k| k.starts_with("regular")), "{g}: ctl and order are {kinds:?}");
        let ctl = std::fs::read_to_string(m.join(g).join("ctl")).unwrap();
        assert!(ctl.starts_with("data message\nreplay off\ndepth 0\n"), "{g}/ctl: {ctl:?}");
    }
}

#[test]
fn a_new_group_starts_with_a_copy_of_its_parents_config() {
    let m = Mount::new();
    ok(&m, "printf 'data coalesce\\nreplay all\\ndepth 7\\n' > ctl");
    ok(&m, "mkdir g");
    let g = std::fs::read_to_string(m.join("g/ctl")).unwrap();
    assert!(g.starts_with("data coalesce\nreplay all\ndepth 7\n"), "g/ctl: {g:?}");

    // A copy, not a link: the parent changing later leaves the child alone.
    ok(&m, "echo 'replay off' > ctl");
    let g = std::fs::read_to_string(m.join("g/ctl")).unwrap();
    assert!(g.starts_with("data coalesce\nreplay all\ndepth 7\n"), "g/ctl after root changed: {g:?}");

    // Nested: the grandchild copies the child, not the root.
    ok(&m, "printf 'replay last\\ndepth 64K\\n' > g/ctl && mkdir g/h");
    let h = std::fs::read_to_string(m.join("g/h/ctl")).unwrap();
    assert!(h.starts_with("data coalesce\nreplay last\ndepth 64K\n"), "g/h/ctl: {h:?}");
    let root = std::fs::read_to_string(m.join("ctl")).unwrap();
    assert!(root.starts_with("data coalesce\nreplay off\ndepth 7\n"), "root ctl: {root:?}");
}

#[test]
fn reserved_names_cannot_be_created_renamed_or_removed() {
    let m = Mount::with_options("replay=all");
    ok(&m, "mkdir g && echo kept >> g/s");
    let before = ls(&m, "g");
    assert_eq!(before, ["s", "ctl", "order"]);

    // touch of an existing ctl/order succeeds but creates nothing.
    ok(&m, "touch g/ctl g/order");
    assert_eq!(ls(&m, "g"), before);
    for name in ["ctl", "order"] {
        let r = ok(
            &m,
            &py_errno("os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)", &format!("g/{name}")),
        );
        assert_eq!(r.trim(), "EEXIST", "O_CREAT|O_EXCL of {name}");
        let r = ok(&m, &py_errno("os.mkdir(p)", &format!("g/{name}")));
        assert_eq!(r.trim(), "EEXIST", "mkdir {name}");
    }

    // Renames of and onto them: EPERM, nothing moves.
    fails_with(&m, "mv g/ctl g/x", "Operation not permitted");
    fails_with(&m, "mv g/order g/x", "Operation not permitted");
    fails_with(&m, "mv g/s g/ctl", "Operation not permitted");
    fails_with(&m, "mv g/s g/order", "Operation not permitted");
    let r = ok(&m, &format!("{} -c 'import os; os.rename(\"g/s\", \"g/ctl\")' 2>&1; true", python()));
    assert!(r.contains("PermissionError") && r.contains("Operation not permitted"), "rename onto ctl: {r}");
    assert_eq!(ls(&m, "g"), before);
    assert_history(&m, "g/s", b"kept\n");

    // unlink while the group holds a stream: EPERM, still there.
    fails_with(&m, "rm g/ctl", "Operation not permitted");
    fails_with(&m, "rm g/order", "Operation not permitted");
    assert_eq!(ls(&m, "g"), before);
    // ...and while it holds only a subgroup.
    ok(&m, "mkdir h h/sub");
    fails_with(&m, "rm h/ctl", "Operation not permitted");
    // In an empty group it succeeds and has no effect.
    ok(&m, "rm h/sub/ctl h/sub/order");
    assert_eq!(ls(&m, "h/sub"), ["ctl", "order"]);
    let ctl = std::fs::read_to_string(m.join("h/sub/ctl")).unwrap();
    assert!(ctl.starts_with("data message\nreplay all\n"), "h/sub/ctl after rm: {ctl:?}");

    // Nor can a FIFO or a symbolic link take their names.
    fails_with(&m, "mkfifo g/ctl", "File exists");
    fails_with(&m, "ln -s s g/order", "File exists");
    assert_eq!(ls(&m, "g"), before);
}

#[test]
fn names_longer_than_255_bytes_are_refused() {
    let m = Mount::new();
    let n255 = "n".repeat(255);
    let n256 = "n".repeat(256);
    ok(&m, &format!("touch {n255} && mkdir d{}", &n255[1..]));
    assert_eq!(ls(&m, "."), [n255.clone(), format!("d{}", &n255[1..]), "ctl".into(), "order".into()]);
    fails_with(&m, &format!("touch {n256}"), "File name too long");
    fails_with(&m, &format!("mkdir {n256}"), "File name too long");
    let r = ok(&m, &py_errno("os.open(p, os.O_CREAT | os.O_WRONLY, 0o644)", &n256));
    assert_eq!(r.trim(), "ENAMETOOLONG");
    fails_with(&m, &format!("mv {n255} {n256}"), "File name too long");
    assert_eq!(ls(&m, ".").len(), 4);
}

#[test]
fn names_with_a_newline_are_refused() {
    let m = Mount::new();
    // `order` is a name and a newline per write: streams a, b and "a\nb" would read alike.
    ok(&m, "touch a");
    fails_with(&m, "touch \"$(printf 'a\\nb')\"", "Invalid argument");
    fails_with(&m, "mkdir \"$(printf 'a\\nb')\"", "Invalid argument");
    // (mv words EINVAL from rename(2) as "cannot move ... to a subdirectory of itself".)
    fails_with(&m, "mv a \"$(printf 'a\\nb')\"", "cannot move");
    let r = ok(&m, &py_errno("os.rename(\"a\", p)", "a\nb"));
    assert_eq!(r.trim(), "EINVAL");
    let r = ok(&m, &py_errno("os.mknod(p, 0o644 | stat.S_IFREG)", "x\ny"));
    assert_eq!(r.trim(), "EINVAL");
    fails_with(&m, "mkfifo \"$(printf 'a\\nb')\"", "Invalid argument");
    fails_with(&m, "ln a \"$(printf 'a\\nb')\"", "Invalid argument");
    fails_with(&m, "ln -s a \"$(printf 'a\\nb')\"", "Invalid argument");
    assert_eq!(ls(&m, "."), ["a", "ctl", "order"], "nothing was created, a was not moved");
}

// ---------------------------------------------------------------------------
// Removal
// ---------------------------------------------------------------------------

/// Opens a stream and a group, removes both (and the working directory), then stats and
/// changes them through their descriptors; prints what it saw.
const REMOVED_BUT_OPEN: &str = r#"
import os, stat
def show(what, st):
    print(what, st.st_nlink, oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid, int(st.st_mtime))
def attempt(what, f):
    try:
        print(what, f())
    except OSError as e:
        print(what, os.strerror(e.errno))
fd = os.open("s", os.O_RDWR | os.O_CREAT, 0o640)
os.unlink("s")
show("stream", os.fstat(fd))
os.fchmod(fd, 0o604)
os.fchown(fd, 1234, 5678)
os.utime(fd, (1000000000, 1000000000))
show("stream", os.fstat(fd))
os.mkdir("d", 0o750)
dfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY)
os.rmdir("d")
show("group", os.fstat(dfd))
os.fchmod(dfd, 0o705)
os.fchown(dfd, 4321, 8765)
os.utime(dfd, (1100000000, 1100000000))
show("group", os.fstat(dfd))
attempt("list", lambda: os.listdir(dfd))
os.mkdir("w", 0o755)
os.chdir("w")
os.rmdir("../w")
show("cwd", os.stat("."))
attempt("create", lambda: os.open("new", os.O_WRONLY | os.O_CREAT, 0o644))
"#;

#[test]
fn a_removed_stream_or_group_still_open_keeps_its_metadata() {
    let m = Mount::new();
    let out = run(&m, &format!("{} -c '{}'", python(), REMOVED_BUT_OPEN.replace('\'', "'\\''")));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    let mtime = |line: &str| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap();
    let without_mtime = |line: &str| line.rsplit_once(' ').unwrap().0.to_string();
    // POSIX: fstat, fchmod, fchown and futimens work on a removed file; it has no links.
    assert_eq!(without_mtime(&lines[0]), "stream 0 0o640 0 0", "{lines:?}");
    assert_eq!(lines[1], "stream 0 0o604 1234 5678 1000000000", "{lines:?}");
    assert_eq!(without_mtime(&lines[2]), "group 0 0o750 0 0", "{lines:?}");
    assert!(mtime(&lines[2]) > 1_100_000_000, "{lines:?}");
    assert_eq!(lines[3], "group 0 0o705 4321 8765 1100000000", "{lines:?}");
    // A removed group lists nothing (readdir hides `.` and `..` from os.listdir).
    assert_eq!(lines[4], "list []", "{lines:?}");
    assert_eq!(without_mtime(&lines[5]), "cwd 0 0o755 0 0", "{lines:?}");
    assert_eq!(lines[6], "create No such file or directory", "{lines:?}");
    assert_eq!(ls(&m, "."), ["ctl", "order"]);
    // Once nothing holds them, the kernel forgets them and mqfs drops them: the root alone
    // is left of the file nodes `df -i` counts.
    wait_until("the removed nodes to be dropped", T, || {
        let counts = ok(&m, "stat -f -c '%c %d' .");
        let (total, free) = counts.trim().split_once(' ').unwrap();
        total.parse::<u64>().unwrap() - free.parse::<u64>().unwrap() == 1
    });
}

#[test]
fn rm_r_of_a_populated_group_is_quiet_and_complete() {
    let m = Mount::with_options("replay=all");
    ok(&m, "mkdir -p g/a/b/c g/e && echo 1 >> g/s && echo 2 >> g/a/s && echo 3 >> g/a/b/c/s && touch g/e/t");
    ok(&m, "mkdir keep && echo 4 >> keep/s");
    let out = run(&m, "rm -r g");
    assert!(out.status.success(), "rm -r g: {:?}, stderr {}", out.status, text(&out.stderr));
    assert_eq!(text(&out.stderr), "", "rm -r must be quiet");
    assert_eq!(ls(&m, "."), ["keep", "ctl", "order"]);
    assert!(!m.join("g").exists());
    assert_eq!(ctl_count(&m, "ctl", "groups"), 1);
    assert_history(&m, "keep/s", b"4\n");

    // rm -rf of a group holding only empty groups, too.
    ok(&m, "mkdir -p x/y/z");
    let out = run(&m, "rm -rf x");
    assert!(out.status.success() && out.stderr.is_empty(), "rm -rf x: {out:?}");
    assert_eq!(ls(&m, "."), ["keep", "ctl", "order"]);
}

#[test]
fn rmdir_of_a_non_empty_group_fails_enotempty() {
    let m = Mount::new();
    ok(&m, "mkdir g h && touch g/s && mkdir h/sub");
    fails_with(&m, "rmdir g", "Directory not empty");
    fails_with(&m, "rmdir h", "Directory not empty");
    let r = ok(&m, &py_errno("os.rmdir(p)", "g"));
    assert_eq!(r.trim(), "ENOTEMPTY");
    assert_eq!(ls(&m, "g"), ["s", "ctl", "order"]);
    assert_eq!(ls(&m, "h"), ["sub", "ctl", "order"]);
    // Empty groups go.
    ok(&m, "rmdir h/sub h");
    assert_eq!(ls(&m, "."), ["g", "ctl", "order"]);
}

#[test]
fn rm_of_a_stream_ends_a_replaying_cat_with_everything() {
    let m = Mount::with_options("replay=all");
    ok(&m, "echo one >> s && echo two >> s");
    let mut cat = cat_reader(&m, "s", b"one\ntwo\n");
    ok(&m, "rm s");
    let status = cat.wait_exit(T).expect("cat ends after rm");
    assert!(status.success(), "cat: {status:?}, stderr {}", text(&cat.stderr_output()));
    assert_eq!(text(&cat.output()), "one\ntwo\n");
    assert_eq!(text(&cat.stderr_output()), "");
    assert_eq!(ls(&m, "."), ["ctl", "order"]);
}

#[test]
fn rm_of_a_stream_gives_a_reader_its_backlog_then_eof() {
    let m = Mount::new(); // replay off
    ok(&m, "touch s");
    let script = "import os, sys\n\
                  fd = os.open('s', os.O_RDONLY)\n\
                  print('open', flush=True)\n\
                  sys.stdin.readline()\n\
                  out = b''\n\
                  while True:\n    b = os.read(fd, 65536)\n    if not b: break\n    out += b\n\
                  print('got:' + out.decode() + '|eof', flush=True)\n";
    let mut reader =
        Proc::spawn_piped_stdin(Command::new(python()).arg("-c").arg(script).current_dir(&m.path));
    reader.wait_output_contains(b"open\n", T);
    ok(&m, "echo one >> s && echo two >> s");
    ok(&m, "rm s");
    assert_eq!(ls(&m, "."), ["ctl", "order"]);
    // Only now does the reader start reading: the backlog is still there.
    reader.write_stdin(b"go\n");
    let status = reader.wait_exit(T).expect("reader ends");
    assert!(status.success(), "reader: {status:?}, stderr {}", text(&reader.stderr_output()));
    assert_eq!(text(&reader.output()), "open\ngot:one\ntwo\n|eof\n");
}

#[test]
fn rm_of_a_stream_releases_a_blocked_cat() {
    let m = Mount::new(); // replay off
    ok(&m, "mkdir g && touch g/s");
    let mut cat = cat_reader(&m, "g/s", b"");
    ok(&m, "echo live >> g/s");
    cat.wait_output_contains(b"live\n", T);
    let pid = cat.pid();
    wait_until("cat to block again", T, || blocked_in_syscall(pid, libc::SYS_read));
    ok(&m, "rm g/s");
    let status = cat.wait_exit(T).expect("blocked cat returns after rm");
    assert!(status.success(), "cat: {status:?}, stderr {}", text(&cat.stderr_output()));
    assert_eq!(text(&cat.output()), "live\n");
    // The group is empty now and can go.
    ok(&m, "rmdir g");
}

// ---------------------------------------------------------------------------
// Rename
// ---------------------------------------------------------------------------

#[test]
fn mv_of_a_stream_within_its_group_keeps_history_and_readers() {
    let m = Mount::with_options("replay=all");
    ok(&m, "echo one >> s");
    let mut reader = cat_reader(&m, "s", b"one\n");
    ok(&m, "mv s t");
    assert_eq!(ls(&m, "."), ["t", "ctl", "order"]);
    ok(&m, "echo two >> t");
    reader.wait_output_contains(b"one\ntwo\n", T);
    assert_history(&m, "t", b"one\ntwo\n");
    ok(&m, "rm t");
    assert!(reader.wait_exit(T).expect("reader ends on rm").success());
    assert_eq!(text(&reader.output()), "one\ntwo\n");
}

#[test]
fn mv_of_a_stream_into_another_group_keeps_history_and_readers() {
    let m = Mount::with_options("replay=all");
    ok(&m, "mkdir a b && echo one >> a/s");
    let reader = cat_reader(&m, "a/s", b"one\n");
    ok(&m, "mv a/s b/s2");
    assert_eq!(ls(&m, "a"), ["ctl", "order"]);
    assert_eq!(ls(&m, "b"), ["s2", "ctl", "order"]);
    assert_eq!(ctl_count(&m, "a/ctl", "streams"), 0);
    assert_eq!(ctl_count(&m, "b/ctl", "streams"), 1);
    ok(&m, "echo two >> b/s2");
    reader.wait_output_contains(b"one\ntwo\n", T);
    assert_history(&m, "b/s2", b"one\ntwo\n");
    // The old name is free again: a new stream there is a different one.
    ok(&m, "touch a/s");
    assert_history(&m, "a/s", b"");
    assert_eq!(text(&reader.output()), "one\ntwo\n");
}

#[test]
fn mv_of_a_group_keeps_its_streams_history_and_readers() {
    let m = Mount::with_options("replay=all");
    ok(&m, "mkdir -p g/sub other && echo one >> g/s && echo deep >> g/sub/t");
    let reader = cat_reader(&m, "g/s", b"one\n");
    let deep = cat_reader(&m, "g/sub/t", b"deep\n");

    ok(&m, "mv g h");
    assert_eq!(ls(&m, "."), ["h", "other", "ctl", "order"]);
    assert_eq!(ls(&m, "h"), ["sub", "s", "ctl", "order"]);
    ok(&m, "echo two >> h/s && echo deeper >> h/sub/t");
    reader.wait_output_contains(b"one\ntwo\n", T);
    deep.wait_output_contains(b"deep\ndeeper\n", T);

    // Into another group.
    ok(&m, "mv h other/h2");
    assert_eq!(ls(&m, "."), ["other", "ctl", "order"]);
    assert_eq!(ls(&m, "other"), ["h2", "ctl", "order"]);
    ok(&m, "echo three >> other/h2/s");
    reader.wait_output_contains(b"one\ntwo\nthree\n", T);
    assert_history(&m, "other/h2/s", b"one\ntwo\nthree\n");
    assert_history(&m, "other/h2/sub/t", b"deep\ndeeper\n");
    assert_eq!(text(&reader.output()), "one\ntwo\nthree\n");
}

#[test]
fn mv_of_a_group_into_its_own_subtree_fails() {
    let m = Mount::with_options("replay=all");
    ok(&m, "mkdir -p g/sub/deeper && echo one >> g/s");
    let out = run(&m, "mv g g/sub");
    assert!(!out.status.success(), "mv g g/sub succeeded");
    let r = ok(&m, &format!("{} -c 'import os; os.rename(\"g\", \"g/sub/x\")' 2>&1; true", python()));
    assert!(r.contains("Invalid argument"), "rename into own subtree: {r}");
    let r = ok(&m, &format!("{} -c 'import os; os.rename(\"g\", \"g/sub/deeper/x\")' 2>&1; true", python()));
    assert!(r.contains("Invalid argument"), "rename into own subtree: {r}");
    assert_eq!(ls(&m, "."), ["g", "ctl", "order"]);
    assert_eq!(ls(&m, "g"), ["sub", "s", "ctl", "order"]);
    assert_eq!(ls(&m, "g/sub"), ["deeper", "ctl", "order"]);
    assert_history(&m, "g/s", b"one\n");
}

// ---------------------------------------------------------------------------
// Metadata and permissions
// ---------------------------------------------------------------------------

#[test]
fn what_a_user_creates_is_theirs_and_honours_their_umask() {
    let u = users();
    let m = Mount::with_options("allow_other");
    ok(&m, &format!("mkdir home && chown {}:{} home", u.t1, u.users_gid));
    assert_eq!(owner_mode(&m, "home"), format!("{} {} 755", u.t1, u.users_gid));
    ok(&m, &as_user(u.t1, u.users_gid, &[], "umask 027; cd home && touch s && mkdir d && echo x > e"));
    ok(&m, &as_user(u.t1, u.users_gid, &[], "umask 077; cd home && touch p && mkdir q"));
    ok(&m, &as_user(u.t1, u.users_gid, &[], "umask 000; cd home && touch open && mkdir wide"));
    let own = format!("{} {}", u.t1, u.users_gid);
    for (path, mode) in [
        ("home/s", "640"),
        ("home/d", "750"),
        ("home/e", "640"),
        ("home/p", "600"),
        ("home/q", "700"),
        ("home/open", "666"),
        ("home/wide", "777"),
        // ctl takes the group's rw bits, order its r bits.
        ("home/d/ctl", "640"),
        ("home/d/order", "440"),
        ("home/wide/ctl", "666"),
        ("home/wide/order", "444"),
    ] {
        assert_eq!(owner_mode(&m, path), format!("{own} {mode}"), "{path}");
    }
    // Created with a supplementary group as the effective gid: that gid.
    ok(&m, &as_user(u.t1, u.tg, &[], "umask 022; cd home && touch g"));
    assert_eq!(owner_mode(&m, "home/g"), format!("{} {} 644", u.t1, u.tg));
}

#[test]
fn chmod_and_chown_change_what_stat_shows() {
    let u = users();
    let m = Mount::with_options("allow_other");
    ok(&m, "touch s && mkdir g");
    ok(&m, "chmod 600 s && chmod 700 g");
    assert_eq!(owner_mode(&m, "s"), "0 0 600");
    assert_eq!(owner_mode(&m, "g"), "0 0 700");
    assert_eq!(owner_mode(&m, "g/ctl"), "0 0 600");
    ok(&m, &format!("chown {}:{} s g", u.t1, u.tg));
    assert_eq!(owner_mode(&m, "s"), format!("{} {} 600", u.t1, u.tg));
    assert_eq!(owner_mode(&m, "g"), format!("{} {} 700", u.t1, u.tg));
    // ctl and order follow their group.
    assert_eq!(owner_mode(&m, "g/ctl"), format!("{} {} 600", u.t1, u.tg));
    assert_eq!(owner_mode(&m, "g/order"), format!("{} {} 400", u.t1, u.tg));

    // The owner may chmod their own stream; someone else may not.
    ok(&m, "chmod 755 g");
    ok(&m, &as_user(u.t1, u.users_gid, &[], "chmod 640 s"));
    assert_eq!(owner_mode(&m, "s"), format!("{} {} 640", u.t1, u.tg));
    let out = run(&m, &as_user(u.t2, u.users_gid, &[], "chmod 666 s"));
    assert!(!out.status.success(), "t2 changed t1's mode");
    assert!(text(&out.stderr).contains("Operation not permitted"), "{}", text(&out.stderr));
    assert_eq!(owner_mode(&m, "s"), format!("{} {} 640", u.t1, u.tg));
}

#[test]
fn permissions_are_enforced_for_streams_and_ctl() {
    let u = users();
    let m = Mount::with_options("allow_other,replay=all");
    let t1 = |script: &str| as_user(u.t1, u.users_gid, &[], script);
    let t2 = |script: &str| as_user(u.t2, u.users_gid, &[], script);
    let t2_in_tg = |script: &str| as_user(u.t2, u.users_gid, &[u.tg], script);

    ok(&m, &format!("mkdir g && chown {}:{} g", u.t1, u.users_gid));
    ok(&m, &t1("umask 022; echo hello >> g/s"));
    assert_eq!(owner_mode(&m, "g/s"), format!("{} {} 644", u.t1, u.users_gid));

    // Another user cannot write the 0644 stream...
    fails_with(&m, &t2("echo intruder >> g/s"), "Permission denied");
    let r = ok(&m, &t2(&py_errno("os.open(p, os.O_WRONLY)", "g/s")));
    assert_eq!(r.trim(), "EACCES");
    // ...nor create in t1's 0755 group...
    fails_with(&m, &t2("touch g/mine"), "Permission denied");
    // ...but can read it (the history, without blocking).
    let read = format!(
        "{} -c 'import os; fd = os.open(\"g/s\", os.O_RDONLY | os.O_NONBLOCK); print(os.read(fd, 100))'",
        python()
    );
    assert_eq!(ok(&m, &t2(&read)).trim(), "b'hello\\n'");
    assert_history(&m, "g/s", b"hello\n");

    // A member of the stream's group may write a 0664 stream; the same user
    // without that supplementary group may not.
    ok(&m, &format!("touch g/team && chown {}:{} g/team && chmod 664 g/team", u.t1, u.tg));
    fails_with(&m, &t2("echo outsider >> g/team"), "Permission denied");
    ok(&m, &t2_in_tg("echo member >> g/team"));
    assert_history(&m, "g/team", b"member\n");

    // ctl of t1's 0755 group is 0644: only t1 may reconfigure it.
    assert_eq!(owner_mode(&m, "g/ctl"), format!("{} {} 644", u.t1, u.users_gid));
    fails_with(&m, &t2("echo \"replay last\" > g/ctl"), "Permission denied");
    let ctl = std::fs::read_to_string(m.join("g/ctl")).unwrap();
    assert!(ctl.starts_with("data message\nreplay all\n"), "g/ctl: {ctl:?}");
    // Others may read it.
    assert!(ok(&m, &t2("cat g/ctl")).starts_with("data message\nreplay all\n"));
    ok(&m, &t1("echo \"replay last\" > g/ctl"));
    let ctl = std::fs::read_to_string(m.join("g/ctl")).unwrap();
    assert!(ctl.starts_with("data message\nreplay last\n"), "g/ctl: {ctl:?}");

    // Group-writable group: its ctl is 0664, so a member may write it.
    ok(&m, &format!("chown :{} g && chmod 775 g", u.tg));
    assert_eq!(owner_mode(&m, "g/ctl"), format!("{} {} 664", u.t1, u.tg));
    fails_with(&m, &t2("echo \"depth 3\" > g/ctl"), "Permission denied");
    ok(&m, &t2_in_tg("echo \"depth 3\" > g/ctl"));
    let ctl = std::fs::read_to_string(m.join("g/ctl")).unwrap();
    assert!(ctl.starts_with("data message\nreplay last\ndepth 3\n"), "g/ctl: {ctl:?}");
}

#[test]
fn a_stream_has_no_size_unless_read_statically_and_mtime_follows_messages() {
    let m = Mount::with_options("replay=all");
    ok(&m, "touch s");
    assert_eq!(ok(&m, "stat -c %s s").trim(), "0");
    // Read as a stream it has no size, as a pipe has none (FIONREAD counts from it); the
    // retained bytes show in ctl.
    ok(&m, "echo hello >> s && echo hello >> s");
    assert_eq!(ok(&m, "stat -c '%s %b' s order").trim(), "0 0\n0 0");
    let long = ok(&m, "ls -l s");
    assert_eq!(long.split_whitespace().nth(4), Some("0"), "ls -l: {long}");
    assert!(ok(&m, "cat ctl").ends_with("# messages 2\n# bytes 12\n"));
    // Read statically, it is a file of its retained history, and so is order.
    ok(&m, "echo data static > ctl");
    assert_eq!(ok(&m, "stat -c %s s order").trim(), "12\n4");
    let long = ok(&m, "ls -l s");
    assert_eq!(long.split_whitespace().nth(4), Some("12"), "ls -l: {long}");
    assert_eq!(ok(&m, "du -b s").split_whitespace().next(), Some("12"));

    // Bounded history (new groups copy `data static`): depth 2 keeps the last two messages,
    // and offsets count every byte ever written, so the size does not shrink.
    ok(&m, "mkdir d && echo 'depth 2' > d/ctl && echo a >> d/s && echo bb >> d/s && echo ccc >> d/s");
    assert_eq!(ok(&m, "stat -c %s d/s; cat d/s").trim(), "9\nbb\nccc");
    // replay off and nobody reading: nothing is retained, but the bytes were written.
    ok(&m, "mkdir off && echo 'replay off' > off/ctl && echo gone >> off/s");
    assert_eq!(ok(&m, "stat -c %s off/s; cat off/s").trim(), "5");

    // mtime moves forward with a write (nanosecond resolution).
    let mtime = || -> u128 {
        let s = ok(&m, "stat -c %.9Y s");
        let (sec, ns) = s.trim().split_once('.').expect("stat %.9Y");
        sec.parse::<u128>().unwrap() * 1_000_000_000 + ns.parse::<u128>().unwrap()
    };
    let now = || SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let before = mtime();
    wait_until("the clock to pass the last mtime", T, || now() > before);
    let written_after = now();
    ok(&m, "echo later >> s");
    let after = mtime();
    assert!(after > before, "mtime did not move: {before} -> {after}");
    assert!(after >= written_after, "mtime {after} is before the write began ({written_after})");
    assert!(after <= now(), "mtime {after} is in the future");
    assert_eq!(ok(&m, "stat -c %s s").trim(), "18");
}

#[test]
fn df_answers_from_the_memory_ceiling() {
    let m = Mount::with_options("memory=64M,replay=all");
    let df = |m: &Mount| -> Vec<String> {
        let out = ok(m, &format!("df -k '{}'", m.path.display()));
        let line = out.lines().nth(1).unwrap_or_else(|| panic!("df output: {out}"));
        let fields: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        assert_eq!(fields.last().map(String::as_str), Some(m.path.to_str().unwrap()), "df: {out}");
        fields
    };
    let fields = df(&m);
    assert_eq!(fields[1], "65536", "1K-blocks: {fields:?}");
    assert_eq!(fields[2], "0", "used: {fields:?}");
    // 1 MiB retained shows as used.
    ok(&m, "head -c 1048576 /dev/zero >> s");
    let fields = df(&m);
    assert_eq!(fields[1], "65536", "1K-blocks: {fields:?}");
    let used: u64 = fields[2].parse().unwrap();
    let avail: u64 = fields[3].parse().unwrap();
    assert!(used >= 1024, "used {used} after retaining 1 MiB: {fields:?}");
    assert!(avail <= 65536 - 1024, "available {avail}: {fields:?}");
    // And it comes back when the history goes.
    ok(&m, "echo clear > ctl");
    wait_until("df to show the memory freed", T, || df(&m)[2] == "0");
}
