//! Peers from Debian's packages: find a server binary on PATH, or with `--install` apt-get
//! its package first (nats-server comes from pip instead: see `nats`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where a program `name` may be, in the order to try: PATH, then the usual directories.
pub fn candidates(name: &str) -> impl Iterator<Item = PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs: Vec<String> = path.split(':').map(str::to_string).collect();
    dirs.into_iter()
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(String::from))
        .map(move |dir| Path::new(&dir).join(name))
}

fn which(name: &str) -> Option<PathBuf> {
    candidates(name).find(|candidate| candidate.is_file())
}

/// The `binary` of Debian's `package`; with `install`, the package is installed if it is
/// missing. The error starts with "not installed" (the report shows those cells as such).
pub fn locate(binary: &str, package: &str, install: bool) -> Result<PathBuf, String> {
    if let Some(path) = which(binary) {
        return Ok(path);
    }
    if !install {
        return Err(format!("not installed (`--install` apt-gets {package})"));
    }
    eprintln!("mqfs-bench: installing {package} with apt-get");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !apt(&["install", "-y", "-q", package]) {
        apt(&["update", "-q"]);
        apt(&["install", "-y", "-q", package]);
    }
    which(binary).ok_or_else(|| format!("not installed (apt-get install {package} failed)"))
}

/// The first word of `bin ARG`'s output that follows `prefix` ("v=7.0.15", "v2.9.10").
pub fn version(bin: &Path, arg: &str, prefix: &str) -> Option<String> {
    let out = Command::new(bin).arg(arg).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().find_map(|w| w.strip_prefix(prefix)).map(str::to_string)
}
