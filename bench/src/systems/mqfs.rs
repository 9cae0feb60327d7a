//! mqfs itself: the release binary built by cargo, mounted on a fresh directory as
//! `mqfs DIR -f -o memory=8G[,OPTIONS]` (in memory), `mqfs STORE DIR ...` (disk-backed,
//! its store in the directory STORE) or `mqfs nats://HOST:PORT DIR ...` (its tree shared
//! through NATS JetStream with every mount of that server and prefix), with helpers to make groups and read ctl counters.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::fuse_mount::FuseMount;

/// Builds `target/release/mqfs` with cargo and returns its path.
pub fn build(workspace: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("mqfs-bench: cargo build --release -p mqfs");
    let mut command = Command::new(&cargo);
    command.args(["build", "--release", "-p", "mqfs", "--bin", "mqfs"]).current_dir(workspace);
    // What `cargo run` told the bench about itself: build scripts that watch these (ring's
    // does) would see them change and rebuild, here and again in the next `cargo run`.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_CRATE_", "CARGO_BIN_", "CARGO_PRIMARY_"]
            .iter()
            .any(|prefix| key.starts_with(prefix))
        {
            command.env_remove(&*key);
        }
    }
    let status = command.status().map_err(|e| format!("cannot run {cargo}: {e}"))?;
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
    /// Mounts mqfs on `work/name` with `-o memory=8G` plus `options` (may be empty); with a
    /// `store` directory, disk-backed there.
    pub fn start(
        bin: &Path,
        work: &Path,
        name: &str,
        options: &str,
        store: Option<&Path>,
    ) -> Result<MqfsMount, String> {
        let mount = MqfsMount::spawn(bin, work, name, options, store.map(Path::as_os_str))?;
        if store.is_some() {
            mount.check_disk()?;
        }
        Ok(mount)
    }

    /// Mounts `url` (`nats://HOST:PORT`) on `work/name` as [`MqfsMount::start`] does. An mqfs
    /// without NATS mounts takes the URL for a store directory and refuses it: "not measured".
    pub fn start_nats(
        bin: &Path,
        work: &Path,
        name: &str,
        options: &str,
        url: &str,
    ) -> Result<MqfsMount, String> {
        MqfsMount::spawn(bin, work, name, options, Some(url.as_ref())).map_err(|e| {
            if e.contains("existing directory") {
                format!("not measured: this mqfs has no NATS mount ({e})")
            } else {
                e
            }
        })
    }

    fn spawn(
        bin: &Path,
        work: &Path,
        name: &str,
        options: &str,
        source: Option<&OsStr>,
    ) -> Result<MqfsMount, String> {
        let mountpoint = work.join(name);
        std::fs::create_dir(&mountpoint).map_err(|e| format!("{}: {e}", mountpoint.display()))?;
        let mut all = "memory=8G".to_string();
        if !options.is_empty() {
            all = format!("{all},{options}");
        }
        let mut command = Command::new(bin);
        command.args(source).arg(&mountpoint).arg("-f").arg("-o").arg(all);
        let log = work.join(format!("{name}.log"));
        Ok(MqfsMount { mount: FuseMount::start("mqfs", command, &mountpoint, &log)? })
    }

    /// A disk-backed mount's groups default to `store disk`. An mqfs without a disk store
    /// takes the SOURCE for a name and mounts in memory: its ctl has no `store` line.
    fn check_disk(&self) -> Result<(), String> {
        let ctl = std::fs::read_to_string(self.root().join("ctl")).map_err(|e| format!("ctl: {e}"))?;
        if ctl.lines().any(|line| line.trim() == "store disk") {
            return Ok(());
        }
        Err("not measured: this mqfs has no disk store (given a store directory, it mounted one whose root ctl \
             has no `store disk`)"
            .into())
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

    /// Unmounts and waits up to `wait` for the daemon to exit (a disk store closes its files).
    pub fn stop(self, wait: std::time::Duration) -> Result<(), String> {
        self.mount.stop(wait)
    }

    /// Unmounts (the daemon stops) and shows on stderr what mqfs logged beyond INFO lines.
    pub fn stop_and_show_log(self, tag: &str) {
        let log = self.log();
        drop(self);
        let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty() && !l.contains("INFO:")).collect();
        if !lines.is_empty() {
            let shown = &lines[lines.len().saturating_sub(10)..];
            eprintln!(
                "[{tag}] mqfs said ({} lines, last {}):\n  {}",
                lines.len(),
                shown.len(),
                shown.join("\n  ")
            );
        }
    }

    /// A `# KEY N` counter of a group's ctl (streams, readers, messages, bytes).
    pub fn counter(&self, group: &Path, key: &str) -> Option<u64> {
        let text = std::fs::read_to_string(group.join("ctl")).ok()?;
        let prefix = format!("# {key} ");
        text.lines().find_map(|line| line.strip_prefix(&prefix)?.trim().parse().ok())
    }
}
