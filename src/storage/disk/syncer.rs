//! Group commit: one thread per store makes the fdatasyncs. It takes every queued sync
//! request at once, syncs the commit journal once if any of them waits for it and each
//! distinct file they name once, answers them all, and goes round again (waiting a little
//! for as many requests as it last answered), so writers asking together share the syncs
//! (`sync always` writers share one fdatasync of the journal, whatever logs they wrote to).
//! Files of `sync` interval logs are queued with a deadline instead. No lock an append needs
//! is held across an fsync.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::files::{DataFile, errno};
use super::journal::Journal;
use crate::storage::{Errno, SyncCallback};

/// What a sync request waits for: files, and the journal reaching a point.
#[derive(Default)]
pub struct Wait {
    pub files: Vec<Arc<DataFile>>,
    pub journal: Option<(Arc<Journal>, u64)>,
}

impl Wait {
    fn is_done(&self) -> bool {
        self.files.is_empty() && self.journal.as_ref().is_none_or(|(journal, to)| journal.is_synced(*to))
    }
}

struct Request {
    wait: Wait,
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
    /// Calls `done` once what `wait` names is synced. Unless the thread runs, the caller
    /// syncs.
    pub fn sync(&self, wait: Wait, done: SyncCallback) {
        if wait.is_done() {
            return done(Ok(()));
        }
        let mut queue = self.0.queue.lock();
        if queue.stopped || !queue.running {
            drop(queue);
            let journal = wait.journal.as_ref().map(|(journal, _)| &**journal);
            let (failed, journal_failed) = sync_together(&wait.files, journal);
            return done(failed.first().map(|(_, e)| *e).or(journal_failed).map_or(Ok(()), Err));
        }
        queue.now.push(Request { wait, done });
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

/// The longest a round waits for the writers of the round before it.
const GATHER: Duration = Duration::from_micros(200);

fn run(shared: &Shared) {
    // How many requests the last round answered, and how long its syncs took.
    let (mut answered, mut took) = (0, Duration::ZERO);
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
            // The writers the last round answered are on their way back with their next
            // writes: a round that starts without them makes them wait for the one after.
            // So it waits for as many as the last one answered, a little (half a sync, at
            // most GATHER).
            let by = Instant::now() + (took / 2).min(GATHER);
            while queue.now.len() < answered && !queue.stopped {
                if shared.wake.wait_until(&mut queue, by).timed_out() {
                    break;
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
        files.extend(requests.iter().flat_map(|r| r.wait.files.iter().cloned()));
        files.sort_by_key(Arc::as_ptr);
        files.dedup_by_key(|f| Arc::as_ptr(f));
        // One store, one journal.
        let journal =
            requests.iter().find_map(|r| r.wait.journal.as_ref().map(|(journal, _)| journal.clone()));
        let began = Instant::now();
        let (failed, journal_failed) = sync_together(&files, journal.as_deref());
        (answered, took) = (requests.len(), began.elapsed());
        for request in requests {
            let error =
                request.wait.files.iter().find_map(|f| failed.iter().find(|(p, _)| *p == Arc::as_ptr(f)));
            let error = error.map(|(_, e)| *e).or(journal_failed.filter(|_| request.wait.journal.is_some()));
            (request.done)(error.map_or(Ok(()), Err));
        }
        if last {
            return;
        }
    }
}

/// Syncs `files` and `journal` at the same time, one thread each but the journal (or the
/// first file): the file system then commits its own journal once for all of them (on
/// ext4 each fdatasync of a grown file waits for a journal commit). Returns the files that
/// failed, with why, and why the journal failed.
fn sync_together(
    files: &[Arc<DataFile>],
    journal: Option<&Journal>,
) -> (Vec<(*const DataFile, Errno)>, Option<Errno>) {
    let sync = |f: &Arc<DataFile>| f.sync().err().map(|e| report(&f.path, &e));
    let sync_journal = || journal.and_then(|j| j.sync().err().map(|e| report(j.path(), &e)));
    let (mine, others) = match journal {
        Some(_) => (None, files),
        None => match files.split_first() {
            Some((first, others)) => (Some(first), others),
            None => return (Vec::new(), None),
        },
    };
    let (errors, journal_failed) = std::thread::scope(|scope| {
        let others: Vec<_> = others.iter().map(|f| scope.spawn(move || sync(f))).collect();
        let journal_failed = sync_journal();
        let errors: Vec<Option<Errno>> = mine
            .map(sync)
            .into_iter()
            .chain(others.into_iter().map(|t| t.join().expect("a sync thread panicked")))
            .collect();
        (errors, journal_failed)
    });
    let failed = files.iter().zip(errors).filter_map(|(f, error)| Some((Arc::as_ptr(f), error?))).collect();
    (failed, journal_failed)
}

fn report(path: &std::path::Path, error: &std::io::Error) -> Errno {
    log::error!("{}: fdatasync failed: {error}", path.display());
    errno(error)
}
