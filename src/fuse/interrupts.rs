//! Lets signals reach processes blocked reading a stream.
//!
//! fuser 0.18 answers the kernel's FUSE_INTERRUPT with ENOSYS, after which the kernel waits
//! for the read's reply without limit: a `cat` blocked on an empty stream would ignore
//! Ctrl-C and even SIGKILL. So every parked read is registered here with the thread that
//! made it; a watcher thread looks at those threads' pending signals in /proc and answers
//! the read of a signalled (or vanished) thread with EINTR. The scan interval grows with the
//! number of parked reads so that the watcher stays a small share of one core.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::procfs::{Caller, caller_state};
use crate::engine::{Engine, Errno, Ticket};

/// How often signals are looked for while few reads are parked.
const BASE_INTERVAL: Duration = Duration::from_millis(40);
/// The watcher sleeps at least this many times as long as a scan took.
const IDLE_FACTOR: u32 = 4;

struct Parked {
    tid: u32,
    fh: u64,
    /// Set by the read's completion: the entry is dropped at the next scan.
    done: Arc<AtomicBool>,
}

pub struct Interrupts {
    engine: Arc<Engine>,
    parked: Mutex<HashMap<Ticket, Parked>>,
    wake: Condvar,
}

impl Interrupts {
    pub fn new(engine: Arc<Engine>) -> Arc<Interrupts> {
        Arc::new(Interrupts { engine, parked: Mutex::default(), wake: Condvar::new() })
    }

    /// Starts the watcher thread.
    pub fn spawn_watcher(self: &Arc<Self>) -> std::io::Result<()> {
        let watcher = self.clone();
        std::thread::Builder::new().name("mqfs-signals".into()).spawn(move || watcher.watch_loop())?;
        Ok(())
    }

    /// Watches the caller `tid` of a parked read; `done` is set when the read completes.
    pub fn watch(&self, ticket: Ticket, tid: u32, fh: u64, done: Arc<AtomicBool>) {
        let mut parked = self.parked.lock();
        parked.insert(ticket, Parked { tid, fh, done });
        if parked.len() == 1 {
            self.wake.notify_one();
        }
    }

    fn watch_loop(&self) {
        loop {
            let candidates: Vec<(Ticket, u32, u64)> = {
                let mut parked = self.parked.lock();
                parked.retain(|_, p| !p.done.load(Ordering::Acquire));
                if parked.is_empty() {
                    self.wake.wait(&mut parked);
                    continue;
                }
                parked.iter().map(|(&ticket, p)| (ticket, p.tid, p.fh)).collect()
            };
            let started = Instant::now();
            for (ticket, tid, fh) in candidates {
                if matches!(caller_state(tid), Caller::Signalled | Caller::Gone) {
                    self.engine.cancel(fh, ticket, Errno::EINTR);
                    self.parked.lock().remove(&ticket);
                }
            }
            std::thread::sleep(BASE_INTERVAL.max(started.elapsed() * IDLE_FACTOR));
        }
    }
}
