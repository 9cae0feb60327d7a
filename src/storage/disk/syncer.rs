//! Group commit: one thread per store makes the fdatasyncs. It takes every queued sync
//! request at once, syncs each distinct file they name once, answers them all, and goes
//! round again, so writers asking together share the syncs. Files of `sync` interval logs
//! are queued with a deadline instead. No lock an append needs is held across an fsync.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::files::{DataFile, errno};
use crate::storage::SyncCallback;

struct Request {
    files: Vec<Arc<DataFile>>,
    done: SyncCallback,
}

#[derive(Default)]
struct Queue {
    now: Vec<Request>,
    timed: Vec<(Instant, Arc<DataFile>)>,
    /// The thread runs: requests wait for it. Before it is started (a daemon forks after it
    /// opened its store, and a fork keeps no thread but its caller) and once it stopped, the
    /// caller syncs.
    running: bool,
    stopped: bool,
}

#[derive(Default)]
struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// What a log holds to ask for syncs.
#[derive(Clone)]
pub struct SyncHandle(Arc<Shared>);

impl SyncHandle {
    /// Calls `done` once `files` are synced. Unless the thread runs, the caller syncs.
    pub fn sync(&self, files: Vec<Arc<DataFile>>, done: SyncCallback) {
        let mut queue = self.0.queue.lock();
        if queue.stopped || !queue.running {
            drop(queue);
            let result = sync_all(&files);
            return done(result);
        }
        queue.now.push(Request { files, done });
        self.0.wake.notify_one();
    }

    /// Syncs `file` within `within` (once, however often it is asked while queued).
    pub fn sync_within(&self, file: &Arc<DataFile>, within: Duration) {
        if file.timed.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let mut queue = self.0.queue.lock();
        queue.timed.push((Instant::now() + within, file.clone()));
        self.0.wake.notify_one();
    }
}

/// The store's sync thread, once started; dropping it syncs what is queued and stops it.
pub struct Syncer {
    handle: SyncHandle,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Syncer {
    pub fn new() -> Syncer {
        Syncer { handle: SyncHandle(Arc::default()), thread: Mutex::new(None) }
    }

    /// Starts the thread (once), with every signal blocked: a process's signals (the
    /// daemon's SIGTERM, which its stop handler waits for) must never be taken by it.
    pub fn start(&self) -> std::io::Result<()> {
        let mut thread = self.thread.lock();
        if thread.is_some() {
            return Ok(());
        }
        let worker = self.handle.0.clone();
        let all = nix::sys::signal::SigSet::all();
        let before =
            all.thread_swap_mask(nix::sys::signal::SigmaskHow::SIG_BLOCK).map_err(std::io::Error::from)?;
        let spawned = std::thread::Builder::new().name("mqfs-sync".into()).spawn(move || run(&worker));
        let _ = before.thread_set_mask();
        *thread = Some(spawned?);
        self.handle.0.queue.lock().running = true;
        Ok(())
    }

    pub fn handle(&self) -> SyncHandle {
        self.handle.clone()
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.handle.0.queue.lock().stopped = true;
        self.handle.0.wake.notify_one();
        if let Some(thread) = self.thread.get_mut().take() {
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared) {
    loop {
        let (requests, timed, last) = {
            let mut queue = shared.queue.lock();
            loop {
                let now = Instant::now();
                let due = queue.timed.iter().any(|(at, _)| *at <= now);
                if !queue.now.is_empty() || due || queue.stopped {
                    break;
                }
                match queue.timed.iter().map(|(at, _)| *at).min() {
                    Some(at) => drop(shared.wake.wait_until(&mut queue, at)),
                    None => shared.wake.wait(&mut queue),
                }
            }
            let now = Instant::now();
            let stopped = queue.stopped;
            let (due, later) =
                std::mem::take(&mut queue.timed).into_iter().partition(|(at, _)| stopped || *at <= now);
            queue.timed = later;
            (std::mem::take(&mut queue.now), due, stopped)
        };
        let mut files: Vec<Arc<DataFile>> = Vec::new();
        for (_, file) in timed {
            // Cleared first: an append from now on queues the file again.
            file.timed.store(false, std::sync::atomic::Ordering::Release);
            files.push(file);
        }
        files.extend(requests.iter().flat_map(|r| r.files.iter().cloned()));
        files.sort_by_key(Arc::as_ptr);
        files.dedup_by_key(|f| Arc::as_ptr(f));
        let failed = sync_together(&files);
        for request in requests {
            let error = request.files.iter().find_map(|f| failed.iter().find(|(p, _)| *p == Arc::as_ptr(f)));
            (request.done)(error.map_or(Ok(()), |(_, e)| Err(*e)));
        }
        if last {
            return;
        }
    }
}

/// Syncs `files` at the same time, one thread each but the first: the file system then
/// commits its journal once for all of them (on ext4 each fdatasync of a grown file waits
/// for a journal commit). Returns the files that failed, with why.
fn sync_together(files: &[Arc<DataFile>]) -> Vec<(*const DataFile, crate::storage::Errno)> {
    let sync = |f: &Arc<DataFile>| f.sync().err().map(|e| report(f, &e));
    let Some((first, others)) = files.split_first() else { return Vec::new() };
    let errors: Vec<Option<crate::storage::Errno>> = std::thread::scope(|scope| {
        let others: Vec<_> = others.iter().map(|f| scope.spawn(move || sync(f))).collect();
        let first = sync(first);
        std::iter::once(first)
            .chain(others.into_iter().map(|t| t.join().expect("a sync thread panicked")))
            .collect()
    });
    files.iter().zip(errors).filter_map(|(f, error)| Some((Arc::as_ptr(f), error?))).collect()
}

fn sync_all(files: &[Arc<DataFile>]) -> Result<(), crate::storage::Errno> {
    files.iter().try_for_each(|f| f.sync().map_err(|e| report(f, &e)))
}

fn report(file: &DataFile, error: &std::io::Error) -> crate::storage::Errno {
    log::error!("{}: fdatasync failed: {error}", file.path.display());
    errno(error)
}
