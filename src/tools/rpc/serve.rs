//! `mq-serve`: a server running a command once per request.
//!
//! Each of `workers` threads opens the stream read-write and loops: wait for a request, run
//! the command with the request on its standard input, write its standard output back as the
//! reply (one message, on the descriptor the request came from). Every request gets exactly
//! one reply, whatever the command does: its output, or an empty line if it printed nothing
//! (a message cannot be empty). A command that fails (a non-zero status, a signal, or one that
//! cannot be started) is logged with the request's number, and its output is still the reply:
//! the client is waiting, a reply withheld would only turn a known failure into its timeout,
//! and the server's next read acknowledges the request anyway, so nothing would retry it.
//!
//! SIGINT and SIGTERM stop the server cleanly: no new request is read, the requests in
//! progress finish and get their replies, then it exits 0. A second signal abandons them: the
//! commands are sent SIGTERM and the server dies of the signal, which mqfs takes as a killed
//! reader, so the abandoned requests go back to the queue for another server. Commands run in
//! their own process groups, so a Ctrl-C at the terminal reaches only the server.

use std::ffi::OsString;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::signal::{SigHandler, SigSet, Signal};
use parking_lot::Mutex;

use super::{Endpoint, Received};
use crate::tools::sys;

/// What to serve.
pub struct Serve {
    pub stream: PathBuf,
    pub workers: usize,
    /// The command and its arguments (at least the command).
    pub command: Vec<OsString>,
}

/// What the workers share.
struct Shared<'a> {
    serve: &'a Serve,
    /// Requests read so far: the next one's number is this plus one.
    requests: AtomicU64,
    /// The process of each worker's running command, if one runs.
    running: Running,
}

/// The process of each worker's running command, if one runs.
type Running = Arc<Mutex<Vec<Option<i32>>>>;

/// Serves until told to stop (exit status 0) or until every worker ended, one of them on an
/// error or the stream's removal (1). Errors opening the stream are returned before anything is served.
pub fn serve(serve: &Serve) -> Result<u8, String> {
    let signals = SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM]);
    // Blocked here, so in every thread started from now on; commands start with none blocked.
    signals.thread_block().map_err(|e| format!("cannot block signals: {e}"))?;
    let mut endpoints = Vec::new();
    for _ in 0..serve.workers {
        let endpoint = Endpoint::open(&serve.stream)
            .map_err(|e| format!("{}: {}", serve.stream.display(), sys::strerror(&e)))?;
        endpoints.push(endpoint);
    }
    let (stop, stopping) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    let running: Running = Arc::new(Mutex::new(vec![None; serve.workers]));
    // Not joined: it waits for signals as long as the process lives.
    let watched = running.clone();
    std::thread::spawn(move || watch_signals(signals, stopping, &watched));
    let shared = Shared { serve, requests: AtomicU64::new(0), running };
    let stopped = std::thread::scope(|scope| {
        let workers: Vec<_> = endpoints
            .into_iter()
            .enumerate()
            .map(|(index, endpoint)| {
                let (shared, stop) = (&shared, &stop);
                scope.spawn(move || work(index, endpoint, stop, shared))
            })
            .collect();
        workers.into_iter().all(|worker| worker.join().unwrap_or(false))
    });
    Ok(u8::from(!stopped))
}

/// Waits for SIGINT or SIGTERM: the first makes the workers stop (writes to `stopping`,
/// whose reading end they poll), the second abandons the requests in progress.
fn watch_signals(signals: SigSet, stopping: OwnedFd, running: &Running) {
    let mut stopped = false;
    loop {
        let Ok(signal) = signals.wait() else { continue };
        if !stopped {
            eprintln!("mq-serve: {signal}: finishing the requests in progress (again to abandon them)");
            // Never read: it stays readable for every worker.
            let _ = sys::write(stopping.as_fd(), b"x");
            stopped = true;
            continue;
        }
        eprintln!("mq-serve: {signal}: abandoning the requests in progress");
        for pid in running.lock().iter().flatten() {
            sys::killpg(*pid, Signal::SIGTERM);
        }
        // Die of the signal itself: mqfs then takes back the requests in flight.
        // SAFETY: restoring a signal's default disposition has no memory-safety preconditions.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) };
        let _ = SigSet::from(signal).thread_unblock();
        let _ = nix::sys::signal::raise(signal);
    }
}

/// One worker's loop; false if it ended on an error (or the stream's removal), true once
/// told to stop.
fn work(index: usize, mut endpoint: Endpoint, stop: &OwnedFd, shared: &Shared) -> bool {
    loop {
        let request = match endpoint.receive(Some(stop.as_fd())) {
            Ok(Received::Message(request)) => request.to_vec(),
            Ok(Received::Stopped) => return true,
            Ok(Received::Removed) => {
                eprintln!("mq-serve: {}: the stream was removed", endpoint.path().display());
                return false;
            }
            Err(e) if sys::is(&e, libc::ENOBUFS) => {
                eprintln!(
                    "mq-serve: {}: requests were dropped before they could be read",
                    endpoint.path().display()
                );
                continue;
            }
            Err(e) => {
                eprintln!("mq-serve: {}: {}", endpoint.path().display(), sys::strerror(&e));
                return false;
            }
        };
        let number = shared.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let mut reply = run(index, number, &request, shared);
        if reply.is_empty() {
            reply.push(b'\n');
        }
        if let Err(e) = endpoint.send(&reply) {
            eprintln!("mq-serve: request {number}: the reply was not sent: {}", sys::strerror(&e));
        }
    }
}

/// Runs the command for request `number` as worker `index`; returns its standard output.
fn run(index: usize, number: u64, request: &[u8], shared: &Shared) -> Vec<u8> {
    let command = &shared.serve.command;
    let name = Path::new(&command[0]).display();
    let child = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => {
            eprintln!("mq-serve: request {number}: cannot run {name}: {}", sys::strerror(&e));
            return Vec::new();
        }
    };
    shared.running.lock()[index] = Some(child.id() as i32);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let output = std::thread::scope(|scope| {
        // Written from a thread of its own, so that a command printing much before it has
        // read everything cannot block both sides. A command that does not read its input
        // (EPIPE) is no failure.
        scope.spawn(move || stdin.write_all(request));
        child.wait_with_output()
    });
    shared.running.lock()[index] = None;
    match output {
        Ok(output) => {
            if let Some(failure) = failure(output.status) {
                eprintln!("mq-serve: request {number}: {name} {failure}");
            }
            output.stdout
        }
        Err(e) => {
            eprintln!("mq-serve: request {number}: {name}: {}", sys::strerror(&e));
            Vec::new()
        }
    }
}

/// How a command's end was a failure, if it was.
fn failure(status: ExitStatus) -> Option<String> {
    if let Some(code) = status.code() {
        return (code != 0).then(|| format!("exited with status {code}"));
    }
    let signal = status.signal().map_or_else(
        || "?".into(),
        |s| Signal::try_from(s).map_or_else(|_| s.to_string(), |s| s.to_string()),
    );
    Some(format!("was killed by {signal}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commands_end_is_a_failure_unless_it_exited_0() {
        assert_eq!(failure(ExitStatus::from_raw(0)), None);
        assert_eq!(failure(ExitStatus::from_raw(3 << 8)).as_deref(), Some("exited with status 3"));
        assert_eq!(failure(ExitStatus::from_raw(libc::SIGKILL)).as_deref(), Some("was killed by SIGKILL"));
    }
}
