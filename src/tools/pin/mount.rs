//! Where sessions live: the directory (`-m`, else a per-user default) and the mqfs mounted
//! on it, which mq-pin mounts itself when nothing is (and unmounts after its last session).

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{Failure, Result, at};
use crate::mountinfo::{self, MountInfo};
use crate::tools::sys::{self, strerror};

/// The directory sessions live in when `-m` is not given: `$MQ_PIN_DIR`, else
/// `$XDG_RUNTIME_DIR/mq-pin`, else `/run/user/UID/mq-pin` if that directory exists, else
/// `/tmp/mq-pin-UID`.
pub fn default_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = var("MQ_PIN_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = var("XDG_RUNTIME_DIR") {
        return Path::new(&dir).join("mq-pin");
    }
    let uid = nix::unistd::getuid();
    let run = PathBuf::from(format!("/run/user/{uid}"));
    if run.is_dir() {
        return run.join("mq-pin");
    }
    PathBuf::from(format!("/tmp/mq-pin-{uid}"))
}

/// What is mounted on `dir` (the topmost mount), if anything is.
fn mount_at(dir: &Path) -> Option<MountInfo> {
    let dir = dir.canonicalize().ok()?;
    mountinfo::read().ok()?.into_iter().rev().find(|m| m.mount_point == dir)
}

/// The file system type mounted on `dir` (the topmost mount), if any.
fn mounted_type(dir: &Path) -> Option<String> {
    mount_at(dir).map(|m| m.fs_type)
}

/// Whether an mqfs is mounted on `dir`.
pub fn is_mounted(dir: &Path) -> bool {
    mounted_type(dir).as_deref() == Some("fuse.mqfs")
}

/// The mqfs binary: the one next to this program if there is one, else `mqfs` from `PATH`.
fn mqfs_binary() -> PathBuf {
    if let Ok(exe) = std::env::current_exe()
        && let Some(next) = exe.parent().map(|d| d.join("mqfs"))
        && next.is_file()
    {
        return next;
    }
    PathBuf::from("mqfs")
}

/// The source mq-pin mounts mqfs with: it marks the mounts mq-pin made, which it also unmounts.
const OWN_SOURCE: &str = "mq-pin";

/// Makes sure an mqfs is mounted on `dir`, mounting one (`mqfs DIR -o replay=all,fsname=mq-pin`,
/// in the background) if nothing is; creates `dir` (mode 0700) if needed.
pub(super) fn ensure_mounted(dir: &Path) -> Result<()> {
    if is_mounted(dir) {
        return Ok(());
    }
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| at(dir, &e))?;
    if let Some(other) = mounted_type(dir) {
        return Err(Failure::new(format!("{}: {other} is mounted there, not mqfs", dir.display())));
    }
    let mqfs = mqfs_binary();
    let out = Command::new(&mqfs)
        .arg(dir)
        .arg("-o")
        .arg(format!("replay=all,fsname={OWN_SOURCE}"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Failure::new(format!("{}: {}", mqfs.display(), strerror(&e))))?;
    // Another mq-pin may have mounted it in the meantime: then ours failed as "busy".
    if out.status.success() || is_mounted(dir) {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(Failure::new(format!("cannot mount mqfs on {}: {why}", dir.display())))
}

/// Unmounts `dir` if mq-pin mounted it (`ensure_mounted`) and no session is left in it, so
/// that the daemon it started ends with the last session. Best effort: a mount still in use
/// (a shell inside it) stays.
pub(super) fn release_mount(dir: &Path) {
    let ours = mount_at(dir).is_some_and(|m| m.fs_type == "fuse.mqfs" && m.source == OWN_SOURCE);
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let empty = entries.flatten().all(|e| e.file_name() == "ctl" || e.file_name() == "order");
    if ours && empty {
        // Root may unmount itself; another user's mount was made through fusermount3.
        if sys::unmount(dir).is_err() {
            let _ = Command::new("fusermount3").arg("-u").arg("-q").arg(dir).stderr(Stdio::null()).status();
        }
    }
}
