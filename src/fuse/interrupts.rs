//! Lets signals reach processes blocked reading (or writing) a stream.
//!
//! Every parked request is registered here with its FUSE unique id and the thread that
//! made it. Two ways answer it with EINTR when its caller gets a signal:
//!
//! - The kernel's FUSE_INTERRUPT, which fuser 0.18 cannot pass on: [`super::trace`] reads
//!   it from fuser's dispatch trace and calls [`Interrupts::interrupt`] before fuser answers
//!   ENOSYS. This keeps the kernel sending interrupts, so a blocked reader sleeps
//!   interruptibly (state S) and a signal releases it at once.
//! - A watcher thread, the fallback for when the kernel has stopped sending interrupts: it
//!   looks at the callers' pending signals in /proc and answers the request of a signalled
//!   (or vanished) thread. While interrupts arrive it scans once a second; once they are
//!   known lost, every [`BASE_INTERVAL`].
//!
//! A scan reads one status file per process, not per thread: it shows the signals sent to
//! the whole process (Ctrl-C, kill, timeout) and the main thread's own. Only when such a
//! signal is pending are the process's other blocked threads read one by one, to learn
//! which of them does not block it. A signal sent to one thread alone (pthread_kill) is
//! found by reading the other threads in turn, a bounded number per scan. So ten thousand
//! readers in a few processes cost a few reads per scan, not ten thousand. The interval
//! still grows with the time a scan takes, so that the watcher stays a small share of one
//! core however many processes block.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::procfs::{Caller, task};
use crate::engine::{Engine, Errno, Ticket};

/// How often signals are looked for while few reads are parked and the kernel no longer
/// sends interrupts.
const BASE_INTERVAL: Duration = Duration::from_millis(40);
/// How often while it still sends them: only a request whose interrupt could not be
/// answered in time depends on the watcher then.
const FALLBACK_INTERVAL: Duration = Duration::from_secs(1);
/// How long an interrupt waits for a completion racing with it to send its reply.
const REPLY_WAIT: Duration = Duration::from_millis(100);
/// The watcher sleeps at least this many times as long as a scan took.
const IDLE_FACTOR: u32 = 4;
/// Threads other than their process's main thread read one by one per scan, in turn.
const THREADS_PER_SCAN: usize = 64;

struct Parked {
    ticket: Ticket,
    tid: u32,
    fh: u64,
    /// Set by the read's completion: the entry is dropped at the next scan.
    done: Arc<AtomicBool>,
    /// The caller's process, learnt from its status at its first scan.
    process: Option<u32>,
}

/// A parked read as one scan sees it.
#[derive(Clone, Copy)]
struct Candidate {
    /// The request's FUSE unique id.
    unique: u64,
    ticket: Ticket,
    tid: u32,
    fh: u64,
    process: Option<u32>,
}

/// What a scan found.
#[derive(Default)]
struct Findings {
    /// Reads whose callers want out: signalled or gone.
    interrupt: Vec<Candidate>,
    /// Processes learnt for reads seen for the first time, by unique id.
    learnt: Vec<(u64, u32)>,
}

fn wants_out(caller: Caller) -> bool {
    matches!(caller, Caller::Signalled | Caller::Gone)
}

pub struct Interrupts {
    engine: Arc<Engine>,
    /// By the request's FUSE unique id.
    parked: Mutex<HashMap<u64, Parked>>,
    wake: Condvar,
    /// The kernel no longer sends interrupts to this mount.
    lost: AtomicBool,
}

impl Interrupts {
    pub fn new(engine: Arc<Engine>) -> Arc<Interrupts> {
        Arc::new(Interrupts {
            engine,
            parked: Mutex::default(),
            wake: Condvar::new(),
            lost: AtomicBool::new(false),
        })
    }

    /// Starts answering the kernel's interrupts, and the watcher thread.
    pub fn start(self: &Arc<Self>) -> std::io::Result<()> {
        super::trace::install(self.clone());
        let watcher = self.clone();
        std::thread::Builder::new().name("mqfs-signals".into()).spawn(move || watcher.watch_loop())?;
        Ok(())
    }

    /// Watches request `unique`, parked as `ticket` by caller `tid`; `done` is set once
    /// its reply was sent.
    pub fn watch(&self, unique: u64, ticket: Ticket, tid: u32, fh: u64, done: Arc<AtomicBool>) {
        let mut parked = self.parked.lock();
        parked.insert(unique, Parked { ticket, tid, fh, done, process: None });
        if parked.len() == 1 {
            self.wake.notify_one();
        }
    }

    /// The kernel interrupts request `unique`: answers it with EINTR if it is parked, and
    /// returns once its reply (this one or a completion's racing with it) was sent.
    pub fn interrupt(&self, unique: u64) {
        let Some((ticket, fh, done)) =
            self.parked.lock().get(&unique).map(|p| (p.ticket, p.fh, p.done.clone()))
        else {
            return;
        };
        self.engine.cancel(fh, ticket, Errno::EINTR);
        let deadline = Instant::now() + REPLY_WAIT;
        while !done.load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::yield_now();
        }
    }

    /// The kernel sends no more interrupts: the watcher alone releases signalled callers.
    pub fn lost(&self) {
        if !self.lost.swap(true, Ordering::Relaxed) {
            log::warn!(
                "the kernel no longer sends interrupts to this mount: blocked readers now sleep \
                 uninterruptibly (state D) and signals reach them through the watcher, within {} ms",
                BASE_INTERVAL.as_millis()
            );
        }
    }

    fn watch_loop(&self) {
        let mut turn: u64 = 0;
        loop {
            let candidates: Vec<Candidate> = {
                let mut parked = self.parked.lock();
                parked.retain(|_, p| !p.done.load(Ordering::Acquire));
                if parked.is_empty() {
                    self.wake.wait(&mut parked);
                    continue;
                }
                parked
                    .iter()
                    .map(|(&unique, p)| Candidate {
                        unique,
                        ticket: p.ticket,
                        tid: p.tid,
                        fh: p.fh,
                        process: p.process,
                    })
                    .collect()
            };
            let started = Instant::now();
            let findings = scan(&candidates, &mut turn, THREADS_PER_SCAN);
            for c in &findings.interrupt {
                self.engine.cancel(c.fh, c.ticket, Errno::EINTR);
            }
            {
                let mut parked = self.parked.lock();
                for c in &findings.interrupt {
                    parked.remove(&c.unique);
                }
                for &(unique, process) in &findings.learnt {
                    if let Some(p) = parked.get_mut(&unique) {
                        p.process = Some(process);
                    }
                }
            }
            let interval = if self.lost.load(Ordering::Relaxed) { BASE_INTERVAL } else { FALLBACK_INTERVAL };
            std::thread::sleep(interval.max(started.elapsed() * IDLE_FACTOR));
        }
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
                if wants_out(seen.caller) {
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
            let caller = if c.tid == process {
                status.caller
            } else if status.process_signalled || status.caller == Caller::Gone {
                // Which thread takes the signal depends on each one's mask; a main thread
                // that is gone may have left the others running.
                task(c.tid).caller
            } else {
                turns.push(c);
                continue;
            };
            if wants_out(caller) {
                findings.interrupt.push(c);
            }
        }
    }
    turns.sort_unstable_by_key(|c| c.unique);
    let start = turns.iter().position(|c| c.unique > *turn).unwrap_or(0);
    for c in turns.iter().cycle().skip(start).take(in_turn.min(turns.len())) {
        if wants_out(task(c.tid).caller) {
            findings.interrupt.push(*c);
        }
        *turn = c.unique;
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gettid() -> u32 {
        // SAFETY: gettid has no preconditions.
        u32::try_from(unsafe { libc::gettid() }).expect("tid is positive")
    }

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

    /// An engine with one stream open for reading, and a read parked on it.
    fn parked_read() -> (Arc<Interrupts>, Arc<std::sync::Mutex<Option<crate::engine::ReadResult>>>) {
        use crate::engine::{Caller, GroupConfig, Limits, ROOT, ReadMode};
        let engine = Arc::new(Engine::new(
            GroupConfig::default(),
            Caller { uid: 0, gid: 0 },
            Limits { max_message: 1 << 20, memory: 1 << 26 },
        ));
        let stream = engine.create(ROOT, b"s", 0o644, Caller { uid: 0, gid: 0 }).expect("create");
        let (fh, _) = engine.open(stream.ino, true, false).expect("open");
        let interrupts = Interrupts::new(engine.clone());
        let result = Arc::new(std::sync::Mutex::new(None));
        let done = Arc::new(AtomicBool::new(false));
        let (into, completed) = (result.clone(), done.clone());
        let callback = Box::new(move |r| {
            *into.lock().unwrap() = Some(r);
            completed.store(true, Ordering::Release);
        });
        let ticket = engine.read(fh, 0, 100, ReadMode::Block, callback).expect("parked");
        interrupts.watch(42, ticket, gettid(), fh, done);
        (interrupts, result)
    }

    #[test]
    fn an_interrupt_answers_the_parked_request_by_its_unique_id() {
        let (interrupts, result) = parked_read();
        interrupts.interrupt(40);
        assert!(result.lock().unwrap().is_none(), "another request's interrupt leaves it parked");
        interrupts.interrupt(42);
        assert_eq!(*result.lock().unwrap(), Some(Err(Errno::EINTR)), "answered before interrupt returns");
        interrupts.interrupt(42);
        assert_eq!(*result.lock().unwrap(), Some(Err(Errno::EINTR)), "a second interrupt changes nothing");
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
            .args(["-c", "import threading, time; threading.Thread(target=time.sleep, args=(60,)).start()"])
            .spawn()
            .expect("python3 runs");
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        let second = loop {
            let tasks: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
                .map(|dir| dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
                .unwrap_or_default();
            if let Some(&tid) = tasks.iter().find(|&&t| t != pid) {
                break tid;
            }
            assert!(Instant::now() < deadline, "python3 started no second thread");
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
