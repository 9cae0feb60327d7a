//! A FUSE daemon serving a fresh mount point, for mqfs and the ceiling alike: started in the
//! foreground, ready once the mount shows in /proc/self/mountinfo, and on drop stopped with
//! SIGTERM (both detach their mount), lazily unmounted if it did not, and killed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cleanup::{self, Item, Registration};
use crate::procs::Proc;

pub struct FuseMount {
    mountpoint: PathBuf,
    log: PathBuf,
    // Dropped in this order: the daemon, then the mount's registration.
    daemon: Option<Proc>,
    _registration: Registration,
}

impl FuseMount {
    /// Runs `command` (which must mount `mountpoint`, an existing empty directory), its
    /// stderr going to `log`.
    pub fn start(
        name: &str,
        mut command: Command,
        mountpoint: &Path,
        log: &Path,
    ) -> Result<FuseMount, String> {
        let log_file = File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log_file);
        let registration = cleanup::register(Item::Mount(mountpoint.to_path_buf()));
        let mut daemon = Proc::spawn(name, command, false, libc::SIGTERM)?;
        // A disk store may recover its files before it mounts: give it time, and poll
        // finely, as the start-up scenario times this.
        let deadline = Instant::now() + Duration::from_secs(120);
        while !cleanup::is_mounted(mountpoint) {
            if daemon.wait(Instant::now()).is_ok() || Instant::now() > deadline {
                let text = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!("{name} did not mount {}: {}", mountpoint.display(), text.trim()));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(FuseMount {
            mountpoint: mountpoint.to_path_buf(),
            log: log.to_path_buf(),
            daemon: Some(daemon),
            _registration: registration,
        })
    }

    pub fn pid(&self) -> u32 {
        self.daemon.as_ref().expect("running").pid()
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Stops the daemon with SIGTERM (it unmounts) and waits up to `wait` for it to exit,
    /// so that what it holds is closed cleanly.
    pub fn stop(mut self, wait: Duration) -> Result<(), String> {
        let mut daemon = self.daemon.take().expect("running");
        daemon.signal(libc::SIGTERM);
        let exited = daemon.wait(Instant::now() + wait);
        self.daemon = Some(daemon);
        exited.map(drop)
    }

    /// What the daemon wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for FuseMount {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.signal(libc::SIGTERM);
            let _ = daemon.wait(Instant::now() + Duration::from_secs(5));
            if cleanup::is_mounted(&self.mountpoint) {
                cleanup::detach(&self.mountpoint);
            }
            drop(daemon);
        }
        let _ = std::fs::remove_dir(&self.mountpoint);
    }
}
