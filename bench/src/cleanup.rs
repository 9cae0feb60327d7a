//! Leaves nothing behind. Every mount, child process, scratch directory and changed sysctl
//! is registered here while it exists; its owner undoes it on drop (also when a panic
//! unwinds), and if the bench itself gets SIGINT, SIGTERM or SIGHUP, a watcher thread undoes
//! whatever is still registered, newest first, and exits.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub enum Item {
    Pid(i32),
    Mount(PathBuf),
    Dir(PathBuf),
    Sysctl(PathBuf, String),
}

struct Registry {
    next: u64,
    items: Vec<(u64, Item)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { next: 0, items: Vec::new() });

/// Keeps an item registered; dropping it unregisters (the owner has undone it itself).
pub struct Registration(u64);

pub fn register(item: Item) -> Registration {
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let id = registry.next;
    registry.next += 1;
    registry.items.push((id, item));
    Registration(id)
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
        registry.items.retain(|(id, _)| *id != self.0);
    }
}

/// Lazily detaches whatever is mounted at `path` (`umount -l`); errors are ignored.
pub fn detach(path: &Path) {
    if let Ok(c_path) = CString::new(path.as_os_str().as_bytes()) {
        // SAFETY: umount2 reads a NUL-terminated path we own.
        unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Whether something is mounted exactly at `path`, from /proc/self/mountinfo.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else { return false };
    let wanted = path.to_string_lossy().replace(' ', "\\040");
    info.lines().any(|line| line.split(' ').nth(4) == Some(wanted.as_str()))
}

fn undo(item: &Item) {
    match item {
        // SAFETY: kill(2) has no memory-safety preconditions.
        Item::Pid(pid) => unsafe {
            libc::kill(*pid, libc::SIGKILL);
        },
        Item::Mount(path) => detach(path),
        Item::Dir(path) => {
            let _ = std::fs::remove_dir_all(path);
        }
        Item::Sysctl(path, old) => {
            let _ = std::fs::write(path, old);
        }
    }
}

/// Takes down what an earlier run that was SIGKILLed left behind: mounts and scratch
/// directories named `mqfs-bench-PID` under the temporary directory whose PID is gone.
pub fn sweep_stale() {
    let base = std::env::temp_dir();
    let Ok(entries) = std::fs::read_dir(&base) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some(pid) = name.strip_prefix("mqfs-bench-").and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let dir = entry.path();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let prefix = format!("{}/", dir.to_string_lossy());
        let mut mounts: Vec<&str> =
            info.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&prefix)).collect();
        // Deepest first.
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in &mounts {
            detach(Path::new(&mount.replace("\\040", " ")));
        }
        eprintln!("mqfs-bench: removing {} left by an earlier run", dir.display());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A sysctl (a file under /proc/sys) raised for the run and restored on drop.
pub struct Sysctl {
    path: PathBuf,
    old: String,
    _registration: Registration,
}

impl Sysctl {
    /// Raises the numeric sysctl at `path` to at least `value`. None if it was high enough
    /// already; Err if it cannot be read or written.
    pub fn raise_to(path: &str, value: u64) -> Result<Option<Sysctl>, String> {
        let old = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let current: u64 = old.trim().parse().map_err(|_| format!("{path}: not a number"))?;
        if current >= value {
            return Ok(None);
        }
        std::fs::write(path, value.to_string()).map_err(|e| format!("{path}: {e}"))?;
        let path = PathBuf::from(path);
        let old = old.trim().to_string();
        let registration = register(Item::Sysctl(path.clone(), old.clone()));
        Ok(Some(Sysctl { path, old, _registration: registration }))
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.path, &self.old);
    }
}

/// Blocks the stop signals in this thread (and so in every thread started after it) and
/// starts the thread that cleans up and exits when one arrives. Call first thing in main.
pub fn install_signal_watcher() {
    // SAFETY: plain signal-set manipulation on a set we own.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    std::thread::spawn(move || {
        let mut signal = 0;
        // SAFETY: sigwait on a set of signals blocked in every thread.
        unsafe { libc::sigwait(&set, &mut signal) };
        eprintln!("mqfs-bench: signal {signal}: cleaning up");
        let items = {
            let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut registry.items)
        };
        for (_, item) in items.iter().rev() {
            undo(item);
        }
        std::process::exit(130);
    });
}
