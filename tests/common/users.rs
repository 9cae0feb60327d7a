//! The test users every permission test runs commands as: mqfs_t1 and mqfs_t2 (sharing a
//! primary group) and the group mqfs_tg, created once and idempotently, never deleted.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

pub struct Users {
    pub t1: u32,
    pub t2: u32,
    /// Primary group of both users (`useradd -N`: no user groups).
    pub users_gid: u32,
    /// A group neither user is in by default; given with `--groups`.
    pub tg: u32,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn id_of(flag: &str, name: &str) -> Option<u32> {
    let out = Command::new("id").arg(flag).arg(name).output().ok()?;
    if !out.status.success() {
        return None;
    }
    text(&out.stdout).trim().parse().ok()
}

fn gid_of_group(name: &str) -> Option<u32> {
    let out = Command::new("getent").arg("group").arg(name).output().ok()?;
    if !out.status.success() {
        return None;
    }
    text(&out.stdout).split(':').nth(2)?.trim().parse().ok()
}

/// Runs an account tool until `exists` holds; retries if another process holds the passwd
/// lock. Never deletes anything.
fn ensure(what: &str, exists: impl Fn() -> bool, cmd: &[&str]) {
    for _ in 0..50 {
        if exists() {
            return;
        }
        let out = Command::new(cmd[0]).args(&cmd[1..]).output().unwrap_or_else(|e| panic!("{}: {e}", cmd[0]));
        if exists() {
            return;
        }
        eprintln!("note: {cmd:?} failed ({:?}): {}; retrying", out.status, text(&out.stderr));
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("cannot create {what} with {cmd:?}");
}

/// Creates (once per test binary) the users mqfs_t1 and mqfs_t2 and the group mqfs_tg.
pub fn users() -> &'static Users {
    static USERS: OnceLock<Users> = OnceLock::new();
    USERS.get_or_init(|| {
        ensure("group mqfs_tg", || gid_of_group("mqfs_tg").is_some(), &["groupadd", "-f", "mqfs_tg"]);
        for name in ["mqfs_t1", "mqfs_t2"] {
            ensure(
                name,
                || id_of("-u", name).is_some(),
                &["useradd", "-M", "-N", "-s", "/bin/false", "-d", "/nonexistent", name],
            );
        }
        let u = Users {
            t1: id_of("-u", "mqfs_t1").unwrap(),
            t2: id_of("-u", "mqfs_t2").unwrap(),
            users_gid: id_of("-g", "mqfs_t1").unwrap(),
            tg: gid_of_group("mqfs_tg").unwrap(),
        };
        assert_eq!(id_of("-g", "mqfs_t2"), Some(u.users_gid), "mqfs_t1 and mqfs_t2 share a primary group");
        assert_ne!(u.tg, u.users_gid);
        u
    })
}
