//! Running as a daemon: detaching while telling the parent whether the start worked, stopping
//! on signals, and noticing when the mount is gone.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use mqfs::mountinfo;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, umount2};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, dup2_stderr, dup2_stdin, dup2_stdout, fork, pipe2, setsid};

/// The child's end of the pipe its parent waits on.
pub struct Reporter(File);

impl Reporter {
    /// The daemon serves: the parent exits 0.
    pub fn ready(mut self) {
        let _ = self.0.write_all(b"ok");
    }

    /// The start failed (the mount is undone already): the parent prints `message` and
    /// exits 1.
    pub fn failed(mut self, message: &str) {
        let _ = self.0.write_all(format!("error {message}").as_bytes());
    }
}

/// Forks. The parent waits until the child reports through a [`Reporter`], then exits: 0 if
/// the daemon serves, 1 with its reason on stderr if not (and if the child dies without a
/// word, it detaches `mountpoint` itself). Only the child returns: in a new session, in
/// `/`, with stdin, stdout and stderr on /dev/null, so that whoever waits for the command's
/// output (mount(8), a shell's `$(...)`) is not kept waiting by the daemon.
pub fn detach(mountpoint: Option<&Path>) -> Result<Reporter, String> {
    let (read_end, write_end) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {}", std::io::Error::from(e)))?;
    // SAFETY: no other thread exists yet, so the child starts in a consistent state.
    match unsafe { fork() }.map_err(|e| format!("fork: {}", std::io::Error::from(e)))? {
        ForkResult::Parent { child } => {
            drop(write_end);
            parent_waits(File::from(read_end), child, mountpoint);
        }
        ForkResult::Child => {}
    }
    drop(read_end);
    let _ = setsid();
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        let _ = (dup2_stdin(&null), dup2_stdout(&null), dup2_stderr(&null));
    }
    let _ = std::env::set_current_dir("/");
    Ok(Reporter(File::from(write_end)))
}

fn parent_waits(mut pipe: File, child: Pid, mountpoint: Option<&Path>) -> ! {
    let mut report = String::new();
    let _ = pipe.read_to_string(&mut report);
    if report == "ok" {
        // Exit without dropping anything: dropping the session would unmount it.
        std::process::exit(0);
    }
    let message = match report.strip_prefix("error ") {
        Some(message) => message.to_string(),
        None => {
            let reaped = waitpid(child, None);
            if let Some(path) = mountpoint {
                detach_mount(path);
            }
            match reaped {
                Ok(WaitStatus::Signaled(_, signal, _)) => {
                    format!("the daemon was killed by signal {} while starting", signal as i32)
                }
                _ => "the daemon ended while starting".to_string(),
            }
        }
    };
    eprintln!("mqfs: {message}");
    std::process::exit(1);
}

/// Detaches whatever is mounted on `path` (umount -l); open files then fail with ENOTCONN
/// once the daemon is gone.
pub fn detach_mount(path: &Path) -> bool {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) => true,
        Err(e) => {
            log::warn!("unmount {}: {}", path.display(), std::io::Error::from(e));
            false
        }
    }
}

/// What [`exit`] does first: the engine's close, which makes the store whole.
static BEFORE_EXIT: std::sync::OnceLock<Box<dyn Fn() + Send + Sync>> = std::sync::OnceLock::new();

/// Has [`exit`] run `close` before the process ends (once set, for good).
pub fn before_exit(close: impl Fn() + Send + Sync + 'static) {
    let _ = BEFORE_EXIT.set(Box::new(close));
}

/// Exits the process with `code`, after what [`before_exit`] set. Several threads may decide
/// to end the daemon at once (a signal, the unmount seen by the watcher and by the session);
/// exit(3) must run once.
pub fn exit(code: i32) -> ! {
    static EXITING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _exiting = EXITING.lock();
    if let Some(close) = BEFORE_EXIT.get() {
        close();
    }
    std::process::exit(code)
}

fn stop_signal_set() -> SigSet {
    SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP])
}

/// Blocks the stop signals in this thread and so in every thread started after it; the
/// stop handler takes them with sigwait.
pub fn block_stop_signals() {
    let _ = stop_signal_set().thread_block();
}

/// On SIGINT, SIGTERM or SIGHUP: detach the mount (if mqfs mounted it) and exit 0. Open
/// files then fail with ENOTCONN and blocked readers return.
pub fn spawn_stop_handler(mountpoint: Option<PathBuf>) -> std::io::Result<()> {
    std::thread::Builder::new().name("mqfs-stop".into()).spawn(move || {
        let signal = stop_signal_set().wait().map_or(0, |signal| signal as i32);
        notify("STOPPING=1");
        match &mountpoint {
            Some(path) => {
                log::info!("signal {signal}: unmounting {}", path.display());
                detach_mount(path);
            }
            None => log::info!("signal {signal}: exiting (the mount stays until unmounted)"),
        }
        log::info!("exiting");
        exit(0);
    })?;
    Ok(())
}

/// The `MAJ:MIN` device of the mount most recently made on `path` (a canonical path).
pub fn mount_device(path: &Path) -> Option<String> {
    let mounts = mountinfo::read().ok()?;
    mounts.into_iter().filter(|m| m.mount_point == path).max_by_key(|m| m.id).map(|m| m.dev)
}

/// Watches the mount table and exits once the mount of device `dev` is gone. A plain
/// unmount ends the session by itself, but after `umount -l` with a file still open the
/// kernel keeps the connection until the last close, and a reader blocked in read would keep
/// the daemon alive: exiting aborts the connection, so such readers get ENOTCONN.
pub fn spawn_mount_watcher(dev: String, mountpoint: PathBuf) -> std::io::Result<()> {
    let mut mountinfo = File::open("/proc/self/mountinfo")?;
    std::thread::Builder::new().name("mqfs-mounts".into()).spawn(move || {
        let mut text = String::new();
        loop {
            text.clear();
            if mountinfo.rewind().and_then(|()| mountinfo.read_to_string(&mut text)).is_err() {
                log::warn!("cannot read /proc/self/mountinfo; not watching for an unmount");
                return;
            }
            if !mountinfo::parse(&text).any(|m| m.dev == dev) {
                log::info!("{} was unmounted; exiting", mountpoint.display());
                exit(0);
            }
            // The mount table changed since the last read when poll reports POLLPRI.
            while poll(&mut [PollFd::new(mountinfo.as_fd(), PollFlags::POLLPRI)], PollTimeout::NONE).is_err()
            {
            }
        }
    })?;
    Ok(())
}

/// Sends `state` to systemd if it asked for notifications (Type=notify).
pub fn notify(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = socket.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(abstract_name) => SocketAddr::from_abstract_name(abstract_name),
        None => SocketAddr::from_pathname(&socket),
    };
    let sent = addr.and_then(|addr| {
        let message = format!("{state}\nMAINPID={}", std::process::id());
        UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &addr)
    });
    if let Err(e) = sent {
        log::warn!("cannot notify systemd at {}: {e}", socket.to_string_lossy());
    }
}

/// Moves into the mount namespace `ns` (mount(8)'s -N: a pid or a namespace file).
pub fn enter_namespace(ns: &str) -> Result<(), String> {
    let path = if !ns.is_empty() && ns.bytes().all(|b| b.is_ascii_digit()) {
        format!("/proc/{ns}/ns/mnt")
    } else {
        ns.to_string()
    };
    let file = File::open(&path).map_err(|e| format!("namespace {path}: {e}"))?;
    // This process has a single thread here, as setns(CLONE_NEWNS) requires.
    setns(&file, CloneFlags::CLONE_NEWNS)
        .map_err(|e| format!("namespace {path}: {}", std::io::Error::from(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_mount_is_found() {
        let root = mount_device(Path::new("/")).unwrap();
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(mountinfo::parse(&text).any(|m| m.dev == root));
    }
}
