//! mqfs itself: the release binary built by cargo, mounted on a fresh directory as
//! `mqfs DIR -f -o memory=8G[,OPTIONS]`, with helpers to make groups and read ctl counters.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::fuse_mount::FuseMount;

/// Builds `target/release/mqfs` with cargo and returns its path.
pub fn build(workspace: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("mqfs-bench: cargo build --release -p mqfs");
    let status = Command::new(&cargo)
        .args(["build", "--release", "-p", "mqfs", "--bin", "mqfs"])
        .current_dir(workspace)
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release -p mqfs failed ({status})"));
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace.join("target"));
    let target = if target.is_absolute() { target } else { workspace.join(target) };
    let bin = target.join("release").join("mqfs");
    if bin.is_file() { Ok(bin) } else { Err(format!("{} is missing after the build", bin.display())) }
}

pub struct MqfsMount {
    mount: FuseMount,
}

impl MqfsMount {
    /// Mounts mqfs on `work/name` with `-o memory=8G` plus `options` (may be empty).
    pub fn start(bin: &Path, work: &Path, name: &str, options: &str) -> Result<MqfsMount, String> {
        let mountpoint = work.join(name);
        std::fs::create_dir(&mountpoint).map_err(|e| format!("{}: {e}", mountpoint.display()))?;
        let mut all = "memory=8G".to_string();
        if !options.is_empty() {
            all = format!("{all},{options}");
        }
        let mut command = Command::new(bin);
        command.arg(&mountpoint).arg("-f").arg("-o").arg(all);
        let log = work.join(format!("{name}.log"));
        Ok(MqfsMount { mount: FuseMount::start("mqfs", command, &mountpoint, &log)? })
    }

    pub fn pid(&self) -> u32 {
        self.mount.pid()
    }

    pub fn root(&self) -> &Path {
        self.mount.path()
    }

    pub fn log(&self) -> String {
        self.mount.log()
    }

    /// Makes group `name` (if new) and writes `ctl` commands to it (if any).
    pub fn group(&self, name: &str, ctl: &str) -> Result<PathBuf, String> {
        let dir = self.root().join(name);
        if !dir.is_dir() {
            std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        }
        if !ctl.is_empty() {
            std::fs::write(dir.join("ctl"), ctl).map_err(|e| format!("{}/ctl: {e}", dir.display()))?;
        }
        Ok(dir)
    }

    /// A `# KEY N` counter of a group's ctl (streams, readers, messages, bytes).
    pub fn counter(&self, group: &Path, key: &str) -> Option<u64> {
        let text = std::fs::read_to_string(group.join("ctl")).ok()?;
        let prefix = format!("# {key} ");
        text.lines().find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
    }
}
