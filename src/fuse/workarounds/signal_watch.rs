//! The signal watcher: the fallback that ends a parked request whose caller was signalled
//! when the kernel's FUSE_INTERRUPT does not reach us (see [`super::dispatch_trace`]). It
//! looks at the callers' pending signals in /proc and answers the request of a signalled (or
//! vanished) thread with EINTR. While interrupts arrive it scans once a second; once they
//! are known lost, every [`BASE_INTERVAL`].
//!
//! A scan reads one status file per process, not per thread: it shows the signals sent to
//! the whole process (Ctrl-C, kill, timeout) and the main thread's own. Only when such a
//! signal is pending are the process's other blocked threads read one by one, to learn
//! which of them does not block it. A signal sent to one thread alone (pthread_kill) is
//! found by reading the other threads in turn, a bounded number per scan. So ten thousand
//! readers in a few processes cost a few reads per scan, not ten thousand. The interval
//! still grows with the time a scan takes, so that the watcher stays a small share of one
//! core however many processes block.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::interrupts::Interrupts;
use super::proc::{ThreadState, task};
use crate::engine::Ticket;

/// How often signals are looked for while few reads are parked and the kernel no longer
/// sends interrupts.
pub const BASE_INTERVAL: Duration = Duration::from_millis(40);
/// How often while it still sends them: only a request whose interrupt could not be
/// answered in time depends on the watcher then.
const FALLBACK_INTERVAL: Duration = Duration::from_secs(1);
/// The watcher sleeps at least this many times as long as a scan took.
const IDLE_FACTOR: u32 = 4;
/// Threads other than their process's main thread read one by one per scan, in turn.
const THREADS_PER_SCAN: usize = 64;

/// A parked read as one scan sees it.
#[derive(Clone, Copy)]
pub struct Candidate {
    /// The request's FUSE unique id.
    pub unique: u64,
    pub ticket: Ticket,
    pub tid: u32,
    pub fh: u64,
    pub process: Option<u32>,
}

/// What a scan found.
#[derive(Default)]
pub struct Findings {
    /// Reads whose callers want out: signalled or gone.
    pub interrupt: Vec<Candidate>,
    /// Processes learnt for reads seen for the first time, by unique id.
    pub learnt: Vec<(u64, u32)>,
}

fn wants_out(state: ThreadState) -> bool {
    matches!(state, ThreadState::Signalled | ThreadState::Gone)
}

/// The watcher thread's loop: scans the callers of `registry`'s parked requests and
/// answers those that want out, for ever.
pub fn run(registry: &Interrupts) {
    let mut turn: u64 = 0;
    loop {
        let candidates = registry.parked();
        let started = Instant::now();
        let findings = scan(&candidates, &mut turn, THREADS_PER_SCAN);
        registry.settle(&findings);
        let interval = if registry.are_lost() { BASE_INTERVAL } else { FALLBACK_INTERVAL };
        std::thread::sleep(interval.max(started.elapsed() * IDLE_FACTOR));
    }
}

/// Looks at the callers of `candidates`, reading up to `in_turn` threads
/// on their own in turn. `turn` is the unique id of the last thread read in turn, where the
/// next scan goes on.
fn scan(candidates: &[Candidate], turn: &mut u64, in_turn: usize) -> Findings {
    let mut findings = Findings::default();
    let mut by_process: BTreeMap<u32, Vec<Candidate>> = BTreeMap::new();
    for &c in candidates {
        match c.process {
            Some(process) => by_process.entry(process).or_default().push(c),
            None => {
                let seen = task(c.tid);
                if wants_out(seen.state) {
                    findings.interrupt.push(c);
                } else if let Some(process) = seen.process {
                    findings.learnt.push((c.unique, process));
                }
            }
        }
    }
    // Threads that only a signal of their own would concern, to be read in turn.
    let mut turns = Vec::new();
    for (process, members) in by_process {
        let status = task(process);
        for c in members {
            let state = if c.tid == process {
                status.state
            } else if status.process_signalled || status.state == ThreadState::Gone {
                // Which thread takes the signal depends on each one's mask; a main thread
                // that is gone may have left the others running.
                task(c.tid).state
            } else {
                turns.push(c);
                continue;
            };
            if wants_out(state) {
                findings.interrupt.push(c);
            }
        }
    }
    turns.sort_unstable_by_key(|c| c.unique);
    let start = turns.iter().position(|c| c.unique > *turn).unwrap_or(0);
    for c in turns.iter().cycle().skip(start).take(in_turn.min(turns.len())) {
        if wants_out(task(c.tid).state) {
            findings.interrupt.push(*c);
        }
        *turn = c.unique;
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::super::testing::gettid;
    use super::*;

    /// A thread of this process that waits until told to end; returns its tid and the
    /// sender that ends it.
    fn waiting_thread() -> (u32, std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (end_tx, end_rx) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::spawn(move || {
            tid_tx.send(gettid()).unwrap();
            let _ = end_rx.recv();
        });
        (tid_rx.recv().unwrap(), end_tx, handle)
    }

    fn candidate(unique: u64, tid: u32, process: Option<u32>) -> Candidate {
        Candidate { unique, ticket: unique, tid, fh: 0, process }
    }

    #[test]
    fn a_first_scan_learns_each_callers_process() {
        let me = std::process::id();
        let (tid, end, handle) = waiting_thread();
        let findings = scan(&[candidate(1, tid, None)], &mut 0, THREADS_PER_SCAN);
        assert!(findings.interrupt.is_empty());
        assert_eq!(findings.learnt, [(1, me)]);
        end.send(()).unwrap();
        handle.join().unwrap();
    }

    #[test]
    fn the_turn_goes_on_where_the_last_scan_stopped() {
        let me = std::process::id();
        let (tid, end, handle) = waiting_thread();
        let many: Vec<Candidate> =
            (1..=THREADS_PER_SCAN as u64 + 10).map(|t| candidate(t, tid, Some(me))).collect();
        let mut turn = 0;
        scan(&many, &mut turn, THREADS_PER_SCAN);
        assert_eq!(turn, THREADS_PER_SCAN as u64);
        scan(&many, &mut turn, THREADS_PER_SCAN);
        assert_eq!(turn, THREADS_PER_SCAN as u64 - 10, "ten to the end, then from the start again");
        end.send(()).unwrap();
        handle.join().unwrap();
    }

    #[test]
    fn vanished_callers_want_out() {
        let findings = scan(&[candidate(7, u32::MAX - 1, None)], &mut 0, 0);
        assert_eq!(findings.interrupt.len(), 1);
        let findings = scan(&[candidate(8, u32::MAX - 1, Some(u32::MAX - 1))], &mut 0, 0);
        assert_eq!(findings.interrupt.len(), 1);
    }

    /// A signal sent to a process is found through the process's status, without reading
    /// its threads in turn. A stopped process keeps it pending, as a thread parked in a
    /// FUSE read does.
    #[test]
    fn a_signal_to_the_process_is_found_without_a_turn() {
        let mut child = std::process::Command::new("python3")
            // SIGUSR1 is handled: were it fatal, the kernel would end the stopped process at
            // once, and the scan could find it gone.
            .args([
                "-c",
                "import signal, threading, time\n\
                 signal.signal(signal.SIGUSR1, lambda *_: None)\n\
                 threading.Thread(target=time.sleep, args=(60,)).start()",
            ])
            .spawn()
            .expect("python3 runs");
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        let second = loop {
            let tasks: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|dir| dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
                .unwrap_or_default();
            // A new thread blocks every signal until its start-up is done (glibc), so it
            // counts only once its mask is empty.
            let unmasked = |tid: u32| {
                std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
                    .is_ok_and(|status| status.lines().any(|l| l == "SigBlk:\t0000000000000000"))
            };
            if let Some(&tid) = tasks.iter().find(|&&t| t != pid && unmasked(t)) {
                break tid;
            }
            assert!(Instant::now() < deadline, "python3 started no second thread with an empty mask");
            std::thread::sleep(Duration::from_millis(5));
        };
        // SAFETY: signals to our own child.
        unsafe { libc::kill(pid as i32, libc::SIGSTOP) };
        let stopped = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('T'))
            })
        };
        while !stopped() {
            assert!(Instant::now() < deadline, "python3 did not stop");
            std::thread::sleep(Duration::from_millis(5));
        }
        let parked = [candidate(1, second, Some(pid))];
        assert!(scan(&parked, &mut 0, 0).interrupt.is_empty(), "nothing pending yet");
        // SAFETY: as above.
        unsafe { libc::kill(pid as i32, libc::SIGUSR1) };
        let found = scan(&parked, &mut 0, 0);
        // SAFETY: as above.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        child.wait().expect("reaped");
        assert_eq!(found.interrupt.len(), 1, "the second thread is released by its process's signal");
    }
}
