//! Child processes and what /proc says about processes. A [`Proc`] is the bench itself
//! re-executed as a worker, a daemon under test, or a helper such as tee; it is killed and
//! reaped when dropped, and dies with the bench (PR_SET_PDEATHSIG) if the bench is killed.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use crate::cleanup::{self, Item, Registration};

pub struct Proc {
    name: String,
    child: Child,
    lines: Option<Receiver<String>>,
    exited: Option<ExitStatus>,
    _registration: Registration,
}

pub fn self_exe() -> PathBuf {
    std::env::current_exe().expect("the bench knows its own path")
}

impl Proc {
    /// Spawns `command` (stdin as the caller set it up); with `capture`, its stdout lines become readable through
    /// [`Proc::expect_line`]. `death_signal` is what the child gets if the bench dies.
    pub fn spawn(name: &str, mut command: Command, capture: bool, death_signal: i32) -> Result<Proc, String> {
        if capture {
            command.stdout(Stdio::piped());
        }
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            command.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, death_signal as libc::c_ulong);
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| format!("cannot start {name}: {e}"))?;
        let registration = cleanup::register(Item::Pid(child.id() as i32));
        let lines = child.stdout.take().map(|stdout| {
            let (sender, receiver) = channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
            receiver
        });
        Ok(Proc { name: name.to_string(), child, lines, exited: None, _registration: registration })
    }

    /// The bench re-executed as `mqfs-bench __worker ARGS...`.
    pub fn worker(name: &str, args: &[String]) -> Result<Proc, String> {
        let mut command = Command::new(self_exe());
        // Reader workers wait for the end of their standard input before they exit: see
        // `release`.
        command.arg("__worker").args(args).stdin(Stdio::piped());
        Proc::spawn(name, command, true, libc::SIGKILL)
    }

    /// Closes the worker's standard input: a reader that has reported exits by itself,
    /// without a signal that would race its last requests.
    pub fn release(&mut self) {
        drop(self.child.stdin.take());
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line starting with `word` (other lines are skipped), without the
    /// word. A line starting with "error" or the end of output fails.
    pub fn expect_line(&self, word: &str, deadline: Instant) -> Result<String, String> {
        let lines = self.lines.as_ref().ok_or_else(|| format!("{}: output not captured", self.name))?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(word) {
                        return Ok(rest.trim().to_string());
                    }
                    if let Some(rest) = line.strip_prefix("error") {
                        return Err(format!("{}: {}", self.name, rest.trim()));
                    }
                }
                Err(RecvTimeoutError::Timeout) => return Err(format!("{}: no '{word}' in time", self.name)),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!("{}: exited before saying '{word}'", self.name));
                }
            }
        }
    }

    /// Waits for the process to exit, up to `deadline`.
    pub fn wait(&mut self, deadline: Instant) -> Result<ExitStatus, String> {
        loop {
            if let Some(status) = self.exited {
                return Ok(status);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
                continue;
            }
            if Instant::now() >= deadline {
                return Err(format!("{} (pid {}) did not exit in time", self.name, self.pid()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn signal(&self, signal: i32) {
        if self.exited.is_none() {
            // SAFETY: kill(2) has no memory-safety preconditions; the pid is our unreaped child.
            unsafe { libc::kill(self.child.id() as i32, signal) };
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.exited.is_some() || matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        self.signal(libc::SIGKILL);
        if self.wait(Instant::now() + Duration::from_secs(2)).is_err() {
            // Stuck in the kernel (a FUSE request nobody answers yet): reap it later.
            let pid = self.child.id() as i32;
            std::thread::spawn(move || {
                let mut status = 0;
                // SAFETY: waitpid on our own unreaped child.
                unsafe { libc::waitpid(pid, &mut status, 0) };
            });
        }
    }
}

/// A field of /proc/PID/status in bytes (for kB fields such as VmRSS) or as a count.
pub fn status_field(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    let mut parts = line[field.len() + 1..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    Some(if parts.next() == Some("kB") { value * 1024 } else { value })
}

pub fn rss(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS")
}

pub fn threads(pid: u32) -> Option<u64> {
    status_field(pid, "Threads")
}

/// User + system CPU time of a process, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After "pid (comm) ", field 3 (state) is index 0; utime and stime are fields 14 and 15.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

/// (tasks asleep in the kernel, all tasks) of a process.
pub fn sleeping_tasks(pid: u32) -> (usize, usize) {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return (0, 0) };
    let (mut asleep, mut all) = (0, 0);
    for task in tasks.flatten() {
        all += 1;
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
        if matches!(state, Some("S" | "D")) {
            asleep += 1;
        }
    }
    (asleep, all)
}
