//! Permissions as other users (docs/guarantees.md, "Who may do what"): the whole matrix of
//! actors (the owner, a member of the file's group through a supplementary group, another
//! user, root) × operations (read and write streams of modes 0644, 0664 and 0600, read and
//! write ctl of 0755 and 0775 groups, read and write order, create, remove and mkdir in those
//! groups, chmod), checked against the table the docs give, with the messages that were let
//! through delivered and nothing else; and without `allow_other` another user cannot even
//! stat the mount.

mod common;
mod mqcheck;

use common::users::users;
use common::{Mount, Proc};
use mqcheck::{as_user, assert_healthy, python, text};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// Tries each operation given as "op path" on argv (relative to the mount root) and prints
/// "op path result", the result being "ok" or the errno's name. Never blocks: reads open
/// O_NONBLOCK and only open; writes send one message naming argv[1], the actor, or to a ctl
/// a depth that names it (large enough to drop nothing).
const TRY: &str = r#"
import errno, os, sys
actor = sys.argv[1]
def run(op, path):
    if op == "read":
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
    elif op == "write":
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        try:
            depth = {"owner": 1001, "member": 1002, "other": 1003, "root": 1004}[actor]
            os.write(fd, f"depth {depth}\n".encode() if path.endswith("ctl") else f"from {actor}\n".encode())
        finally:
            os.close(fd)
    elif op == "create":
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    elif op == "unlink":
        os.unlink(path)
    elif op == "mkdir":
        os.mkdir(path)
    elif op == "chmod":
        os.chmod(path, 0o644)
    elif op == "stat":
        os.stat(path)
    elif op == "list":
        os.listdir(path)
for arg in sys.argv[2:]:
    op, path = arg.split(" ", 1)
    try:
        run(op, path)
        result = "ok"
    except OSError as e:
        result = errno.errorcode[e.errno]
    print(op, path, result, flush=True)
"#;

/// Runs TRY as `cmd` (a `setpriv` command) for `actor`; returns its output lines.
fn try_as(mut cmd: std::process::Command, actor: &str, ops: &[String], cwd: &std::path::Path) -> Vec<String> {
    cmd.arg("-c").arg(TRY).arg(actor).args(ops).current_dir(cwd);
    let mut p = Proc::spawn(&mut cmd);
    let status = p.wait_exit(T).unwrap_or_else(|| panic!("{actor}'s operations hang"));
    assert!(status.success(), "{actor}: {}", text(&p.stderr_output()));
    text(&p.output()).lines().map(str::to_string).collect()
}

/// The matrix: operation, then the outcome for the owner, a member (through a
/// supplementary group), another user, root. The same table is in docs/guarantees.md.
const MATRIX: &[(&str, [&str; 4])] = &[
    ("read g/s644", ["ok", "ok", "ok", "ok"]),
    ("read g/s664", ["ok", "ok", "ok", "ok"]),
    ("read g/s600", ["ok", "EACCES", "EACCES", "ok"]),
    ("write g/s644", ["ok", "EACCES", "EACCES", "ok"]),
    ("write g/s664", ["ok", "ok", "EACCES", "ok"]),
    ("write g/s600", ["ok", "EACCES", "EACCES", "ok"]),
    ("read g/ctl", ["ok", "ok", "ok", "ok"]),
    ("write g/ctl", ["ok", "EACCES", "EACCES", "ok"]),
    ("write team/ctl", ["ok", "ok", "EACCES", "ok"]),
    ("read g/order", ["ok", "ok", "ok", "ok"]),
    ("write g/order", ["EACCES", "EACCES", "EACCES", "EPERM"]),
    ("create g/new_ACTOR", ["ok", "EACCES", "EACCES", "ok"]),
    ("create team/new_ACTOR", ["ok", "ok", "EACCES", "ok"]),
    ("mkdir g/dir_ACTOR", ["ok", "EACCES", "EACCES", "ok"]),
    ("mkdir team/dir_ACTOR", ["ok", "ok", "EACCES", "ok"]),
    ("unlink g/victim_ACTOR", ["ok", "EACCES", "EACCES", "ok"]),
    ("unlink team/victim_ACTOR", ["ok", "ok", "EACCES", "ok"]),
    ("chmod g/s644", ["ok", "EPERM", "EPERM", "ok"]),
];

const ACTORS: [&str; 4] = ["owner", "member", "other", "root"];

#[test]
fn who_may_do_what_follows_the_matrix() {
    let u = users();
    let m = Mount::with_options("allow_other,replay=all");
    let (t1, users_gid, tg) = (u.t1, u.users_gid, u.tg);
    let run = |script: &str| {
        let out = common::run_sh(script, &m.path, T);
        assert!(out.status.success(), "{script}: {}", text(&out.stderr));
    };
    run(&format!(
        "mkdir g team && touch g/s644 g/s600 g/s664 && chmod 600 g/s600 && chmod 664 g/s664 && \
         chown {t1}:{tg} g/s664 team && chmod 775 team && chown {t1}:{users_gid} g g/s644 g/s600"
    ));
    for actor in ACTORS {
        run(&format!(
            "touch g/victim_{actor} team/victim_{actor} && chown {t1}:{users_gid} g/victim_{actor} && \
             chown {t1}:{tg} team/victim_{actor}"
        ));
    }
    // Root goes first, so that what the others may not do would show.
    let mut wrong = Vec::new();
    for i in [3, 0, 1, 2] {
        let actor = &ACTORS[i];
        let cmd = match *actor {
            "owner" => as_user(u.t1, users_gid, &[], python()),
            "member" => as_user(u.t2, users_gid, &[tg], python()),
            "other" => as_user(65534, 65534, &[], python()),
            _ => as_user(0, 0, &[], python()),
        };
        let ops: Vec<String> = MATRIX.iter().map(|(op, _)| op.replace("ACTOR", actor)).collect();
        let got = try_as(cmd, actor, &ops, &m.path);
        assert_eq!(got.len(), ops.len(), "{actor}: {got:?}");
        for ((op, want), line) in MATRIX.iter().zip(&got) {
            let result = line.rsplit(' ').next().unwrap();
            if result != want[i] {
                wrong.push(format!("{actor} {op}: {result}, expected {}", want[i]));
            }
        }
    }
    assert!(wrong.is_empty(), "outcomes differ from the matrix:\n{}", wrong.join("\n"));

    // The messages that were let through arrived, and only those.
    let history = |s: &str| {
        let mut r = std::fs::OpenOptions::new();
        std::os::unix::fs::OpenOptionsExt::custom_flags(r.read(true), libc::O_NONBLOCK);
        let mut f = r.open(m.join(s)).unwrap();
        let mut out = String::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = std::io::Read::read(&mut f, &mut buf) {
            out += &String::from_utf8_lossy(&buf[..n]);
        }
        out
    };
    assert_eq!(history("g/s644"), "from root\nfrom owner\n");
    assert_eq!(history("g/s664"), "from root\nfrom owner\nfrom member\n");
    assert_eq!(history("g/s600"), "from root\nfrom owner\n");
    // The last ctl write let through set each group's depth.
    let depth = |ctl: &str| std::fs::read_to_string(m.join(ctl)).unwrap().lines().nth(2).unwrap().to_string();
    assert_eq!(depth("g/ctl"), "depth 1001", "the owner's, after root's");
    assert_eq!(depth("team/ctl"), "depth 1002", "the member's, after root's and the owner's");
    // What each created or removed is (or is no longer) there.
    let row = |op: &str| MATRIX.iter().position(|(o, _)| *o == op).unwrap();
    for group in ["g", "team"] {
        let create = row(&format!("create {group}/new_ACTOR"));
        let unlink = row(&format!("unlink {group}/victim_ACTOR"));
        let listing = text(&common::run_sh(&format!("ls {group}"), &m.path, T).stdout);
        for (i, actor) in ACTORS.iter().enumerate() {
            let created = MATRIX[create].1[i] == "ok";
            let removed = MATRIX[unlink].1[i] == "ok";
            assert_eq!(listing.contains(&format!("new_{actor}\n")), created, "{group} {actor}: {listing}");
            assert_eq!(
                listing.contains(&format!("victim_{actor}\n")),
                !removed,
                "{group} {actor}: {listing}"
            );
        }
    }
    assert_healthy(&m);
}

#[test]
fn without_allow_other_other_users_cannot_even_look() {
    let u = users();
    let m = Mount::with_options("replay=all");
    std::fs::write(m.join("s"), b"private\n").unwrap();
    let ops: Vec<String> =
        [("stat", "."), ("list", "."), ("read", "s"), ("read", "ctl"), ("write", "s"), ("create", "new")]
            .iter()
            .map(|(op, rel)| format!("{op} {}", m.join(rel).display()))
            .collect();
    for (actor, cmd) in
        [("t1", as_user(u.t1, u.users_gid, &[], python())), ("nobody", as_user(65534, 65534, &[], python()))]
    {
        // The mount point itself answers EACCES to anyone but the user who mounted.
        let got = try_as(cmd, actor, &ops, std::path::Path::new("/"));
        let results: Vec<&str> = got.iter().map(|l| l.rsplit(' ').next().unwrap()).collect();
        assert_eq!(results, ["EACCES"; 6], "{actor}: {got:?}");
    }
    // The user who mounted (root here) is unaffected, and nothing was written.
    let mut f = std::fs::OpenOptions::new();
    std::os::unix::fs::OpenOptionsExt::custom_flags(f.read(true), libc::O_NONBLOCK);
    let mut buf = [0u8; 100];
    let n = std::io::Read::read(&mut f.open(m.join("s")).unwrap(), &mut buf).unwrap();
    assert_eq!(&buf[..n], b"private\n");
    assert_eq!(text(&common::run_sh("ls", &m.path, T).stdout), "ctl\norder\ns\n");
    assert_healthy(&m);
}

#[test]
fn a_write_by_an_unprivileged_user_clears_setuid_and_setgid() {
    let u = users();
    let m = Mount::with_options("allow_other,replay=all");
    let script = "import os, sys\nfor p in sys.argv[1:]:\n    fd = os.open(p, os.O_WRONLY)\n    os.write(fd, b'x')\n    os.close(fd)";
    for (name, mode) in [("s", 0o6777), ("t", 0o6767)] {
        std::fs::write(m.join(name), b"").unwrap();
        std::fs::set_permissions(m.join(name), std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    // Root (CAP_FSETID) keeps the bits, as on other file systems.
    let out = std::process::Command::new(python())
        .arg("-c")
        .arg(script)
        .arg("s")
        .current_dir(&m.path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mode = |name: &str| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(m.join(name)).unwrap().permissions())
            & 0o7777
    };
    assert_eq!(mode("s"), 0o6777);
    // A user's write clears setuid, and setgid where the group may execute (else it marks
    // mandatory locking and stays).
    let out = as_user(u.t1, u.users_gid, &[], python())
        .arg("-c")
        .arg(script)
        .args(["s", "t"])
        .current_dir(&m.path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!((mode("s"), mode("t")), (0o777, 0o2767));
    assert_healthy(&m);
}
