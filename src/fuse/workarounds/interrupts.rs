//! The registry of parked requests that a signal must be able to end.
//!
//! Every parked read or blocked write is registered here with its FUSE unique id and the
//! thread that made it. Two ways answer it with EINTR when its caller gets a signal:
//!
//! - The kernel's FUSE_INTERRUPT, which fuser 0.18 cannot pass on: [`super::dispatch_trace`]
//!   reads it from fuser's dispatch trace and calls [`Interrupts::interrupt`] before fuser
//!   answers ENOSYS. This keeps the kernel sending interrupts, so a blocked reader sleeps
//!   interruptibly (state S) and a signal releases it at once.
//! - [`super::signal_watch`], a watcher thread, the fallback for when the kernel has stopped
//!   sending interrupts: it looks at the callers' pending signals in /proc and answers the
//!   request of a signalled (or vanished) thread.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::signal_watch::{self, BASE_INTERVAL, Candidate, Findings};
use crate::engine::{Engine, Errno, Ticket};

/// How long an interrupt waits for a completion racing with it to send its reply.
const REPLY_WAIT: Duration = Duration::from_millis(100);

struct Parked {
    ticket: Ticket,
    tid: u32,
    fh: u64,
    /// Set by the read's completion: the entry is dropped at the next scan.
    done: Arc<AtomicBool>,
    /// The caller's process, learnt from its status at its first scan.
    process: Option<u32>,
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
        super::dispatch_trace::install(self.clone());
        let watcher = self.clone();
        std::thread::Builder::new().name("mqfs-signals".into()).spawn(move || signal_watch::run(&watcher))?;
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
        if self.engine.cancel(fh, ticket, Errno::EINTR) {
            return; // answered here, in this thread: its reply is sent
        }
        // A completion raced with the interrupt: wait (briefly) until its reply is sent.
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

    /// Whether [`Interrupts::lost`] was called.
    pub(super) fn are_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// The requests still parked, for the watcher's next scan; waits while there are none.
    pub(super) fn parked(&self) -> Vec<Candidate> {
        let mut parked = self.parked.lock();
        loop {
            parked.retain(|_, p| !p.done.load(Ordering::Acquire));
            if !parked.is_empty() {
                break;
            }
            self.wake.wait(&mut parked);
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
    }

    /// Answers with EINTR the requests a scan found wanting out, and notes the processes it
    /// learnt.
    pub(super) fn settle(&self, findings: &Findings) {
        for c in &findings.interrupt {
            self.engine.cancel(c.fh, c.ticket, Errno::EINTR);
        }
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
}

#[cfg(test)]
mod tests {
    use super::super::testing::gettid;
    use super::*;

    /// An engine with one stream open for reading, and a read parked on it.
    fn parked_read() -> (Arc<Interrupts>, Arc<std::sync::Mutex<Option<crate::engine::ReadResult>>>) {
        use crate::engine::{Caller, GroupConfig, Limits, ROOT, ReadMode};
        let engine = Arc::new(
            Engine::new(
                GroupConfig::default(),
                Caller { uid: 0, gid: 0 },
                Limits { max_message: 1 << 20, memory: 1 << 26 },
                Arc::new(crate::storage::memory::MemoryStore),
            )
            .expect("memory logs open"),
        );
        let stream = engine.create(ROOT, b"s", 0o644, Caller { uid: 0, gid: 0 }).expect("create");
        let (fh, _) = engine.open(stream.ino, true, false, Caller { uid: 0, gid: 0 }).expect("open");
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
}
