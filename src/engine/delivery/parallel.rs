//! Sends a large batch of wake-ups from several cores at once.
//!
//! One append can complete thousands of parked reads. Each completion is a reply to the
//! kernel, a system call that wakes one reader; sent one after another from the writer's
//! thread, the last reader waits for all the others while the other cores idle. So a batch
//! of at least [`SPLIT_AT`] wake-ups is cut into parts: helper threads, one per core beyond
//! the first, each run a part while the thread that made the batch runs its own. That thread
//! returns only once every part has run, so "the wake-ups were dropped" still means "every
//! reader has been answered", as it does for small batches run in place.
//!
//! The daemon starts the helpers once it has forked ([`start`]); elsewhere (tests) they start
//! with the first large batch.

use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, Sender, channel};

use super::Wake;

/// Batches smaller than this run on the calling thread: handing a part to a helper costs a
/// thread wake-up, about what a few replies cost.
const SPLIT_AT: usize = 64;
/// Enough helpers for any machine mqfs serves well; each costs a sleeping thread.
const MAX_HELPERS: usize = 7;

/// A part of a batch, and where to say it has run.
type Part = (Vec<Wake>, Sender<()>);

struct Helpers {
    parts: Vec<Sender<Part>>,
}

static HELPERS: OnceLock<Helpers> = OnceLock::new();

thread_local! {
    /// This thread is a helper: a batch made while running a part runs in place, since
    /// handing it to the helpers could mean waiting for this very thread.
    static HELPING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// How many threads share a batch of `len` wake-ups (the caller included), given `helpers`.
fn parts_for(len: usize, helpers: usize) -> usize {
    if len < SPLIT_AT { 1 } else { (helpers + 1).min(len / (SPLIT_AT / 2)).max(1) }
}

fn helpers() -> &'static Helpers {
    HELPERS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut parts = Vec::new();
        for index in 0..cores.saturating_sub(1).min(MAX_HELPERS) {
            let (sender, receiver) = channel::<Part>();
            let spawned = std::thread::Builder::new()
                .name(format!("mqfs-deliver-{index}"))
                .spawn(move || serve(receiver));
            match spawned {
                Ok(_) => parts.push(sender),
                Err(e) => {
                    log::warn!("cannot start a delivery thread ({e}): large fan-outs use fewer cores");
                    break;
                }
            }
        }
        Helpers { parts }
    })
}

/// Starts the helpers now rather than with the first large batch: the daemon starts all
/// its threads once it has forked, so that they are there from the first request on.
pub fn start() {
    helpers();
}

fn serve(receiver: Receiver<Part>) {
    HELPING.set(true);
    for (wakes, done) in receiver {
        // A wake-up that panics (a bug) drops the rest of its part, whose replies then
        // fail with EIO, as a panicking request handler's would; the helper goes on.
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(wakes))).is_err() {
            log::error!("bug: a wake-up panicked on a delivery thread; the rest of its part failed");
        }
        let _ = done.send(());
    }
}

fn run(wakes: Vec<Wake>) {
    for wake in wakes {
        wake.run();
    }
}

/// Runs every wake-up in `wakes`, spread over the helpers if there are many; returns when
/// all have run.
pub fn run_all(mut wakes: Vec<Wake>) {
    if wakes.len() < SPLIT_AT || HELPING.get() {
        return run(wakes);
    }
    let helpers = helpers();
    let parts = parts_for(wakes.len(), helpers.parts.len());
    let size = wakes.len().div_ceil(parts);
    let (done, finished) = channel();
    let mut handed = 0;
    for helper in helpers.parts.iter().take(parts - 1) {
        let part = wakes.split_off(wakes.len().saturating_sub(size));
        if part.is_empty() {
            break;
        }
        if let Err(returned) = helper.send((part, done.clone())) {
            // The helper thread is gone: run its part here.
            run(returned.0.0);
            continue;
        }
        handed += 1;
    }
    drop(done);
    run(wakes);
    for _ in 0..handed {
        // Every part says it is done, even one cut short by a panic; should a helper
        // thread be gone all the same, its sender is gone with it and waiting ends.
        if finished.recv().is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;

    fn counting(n: usize, ran: &Arc<AtomicUsize>, threads: &Arc<Mutex<HashSet<String>>>) -> Vec<Wake> {
        (0..n)
            .map(|_| {
                let ran = ran.clone();
                let threads = threads.clone();
                Wake::Poll(Arc::new(move || {
                    ran.fetch_add(1, Ordering::SeqCst);
                    let name = std::thread::current().name().unwrap_or("").to_string();
                    threads.lock().unwrap().insert(name);
                }))
            })
            .collect()
    }

    #[test]
    fn every_wake_up_runs_once_before_run_all_returns() {
        for n in [0, 1, SPLIT_AT - 1, SPLIT_AT, SPLIT_AT + 1, 1000, 10_001] {
            let ran = Arc::new(AtomicUsize::new(0));
            let threads = Arc::new(Mutex::new(HashSet::new()));
            run_all(counting(n, &ran, &threads));
            assert_eq!(ran.load(Ordering::SeqCst), n, "batch of {n}");
        }
    }

    #[test]
    fn small_batches_run_on_the_calling_thread() {
        let ran = Arc::new(AtomicUsize::new(0));
        let threads = Arc::new(Mutex::new(HashSet::new()));
        std::thread::Builder::new()
            .name("caller".into())
            .spawn({
                let (ran, threads) = (ran.clone(), threads.clone());
                move || run_all(counting(SPLIT_AT - 1, &ran, &threads))
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(*threads.lock().unwrap(), HashSet::from(["caller".to_string()]));
    }

    #[test]
    fn large_batches_are_shared_with_the_helpers() {
        let ran = Arc::new(AtomicUsize::new(0));
        let threads = Arc::new(Mutex::new(HashSet::new()));
        run_all(counting(10_000, &ran, &threads));
        let helpers = helpers().parts.len();
        let used = threads.lock().unwrap().iter().filter(|n| n.starts_with("mqfs-deliver-")).count();
        assert_eq!(used, helpers, "every helper sends a part of a batch of 10,000");
    }

    #[test]
    fn a_panicking_wake_up_does_not_stop_the_batch_or_its_helper() {
        if helpers().parts.is_empty() {
            return; // one core: the batch runs on the calling thread, which the panic ends
        }
        let ran = Arc::new(AtomicUsize::new(0));
        let threads = Arc::new(Mutex::new(HashSet::new()));
        let mut wakes = counting(1000, &ran, &threads);
        // The last wake-up is in a helper's part where there are helpers.
        wakes.push(Wake::Poll(Arc::new(|| panic!("a bug in a wake-up"))));
        run_all(wakes);
        assert_eq!(ran.load(Ordering::SeqCst), 1000);
        threads.lock().unwrap().clear();
        run_all(counting(1000, &ran, &threads));
        let used = threads.lock().unwrap().iter().filter(|n| n.starts_with("mqfs-deliver-")).count();
        assert_eq!(used, helpers().parts.len(), "the helpers still take parts");
    }

    #[test]
    fn a_batch_made_by_a_wake_up_on_a_helper_runs_in_place() {
        let ran = Arc::new(AtomicUsize::new(0));
        let threads = Arc::new(Mutex::new(HashSet::new()));
        let nested = Mutex::new(Some(counting(1000, &ran, &threads)));
        let mut wakes = counting(1000, &ran, &threads);
        // The last wake-up, in a helper's part, makes a large batch of its own.
        wakes.push(Wake::Poll(Arc::new(move || run_all(nested.lock().unwrap().take().unwrap_or_default()))));
        let (finished, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            run_all(wakes);
            finished.send(()).unwrap();
        });
        done.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the batches ran, without waiting on themselves");
        assert_eq!(ran.load(Ordering::SeqCst), 2000);
    }

    #[test]
    fn parts_are_never_smaller_than_half_the_split_size() {
        assert_eq!(parts_for(SPLIT_AT - 1, 3), 1);
        assert_eq!(parts_for(SPLIT_AT, 3), 2);
        assert_eq!(parts_for(10_000, 3), 4);
        assert_eq!(parts_for(10_000, 0), 1);
        for len in SPLIT_AT..200 {
            assert!(len / parts_for(len, 7) >= SPLIT_AT / 2, "{len} wake-ups");
        }
    }
}
