//! How the replies an operation owes go out: the engine's delivery contract.
//!
//! No reply is sent under a lock. An operation collects what it owes (completed reads, poll
//! notifications, completed writes) in a [`Wakeups`], which sends them when dropped, after
//! the caller released its locks, in the order below; a large batch goes out from several
//! cores ([`parallel`]).

mod parallel;

pub use parallel::start;

use super::channel::{PollCallback, ReadCallback, ReadResult, WriteCallback};
use super::errno::Result;

/// One wake-up: a completed read with its outcome, or a poll notification.
pub enum Wake {
    Read(ReadCallback, ReadResult),
    Poll(PollCallback),
}

impl Wake {
    pub fn run(self) {
        match self {
            Wake::Read(callback, result) => callback(result),
            Wake::Poll(poller) => poller(),
        }
    }
}

/// A read reply at least this long is a copy that takes longer than a wake-up: the writer
/// is answered before it, so that the writer's next message overlaps the copy.
const LONG_REPLY: usize = 64 * 1024;

/// Callbacks to run once the lock that produced them is released; dropping runs them.
///
/// The order is chosen for latency first: the first reader's reply (or poller's
/// notification), unless it is a long reply; then the writers'; then every other reader's,
/// from several cores if there are many (see `delivery`). So one reader waits for no
/// writer's reply, and a writer waits for at most one reader's before it can write its next
/// message while the rest go out.
#[derive(Default)]
#[must_use = "wake-ups run when dropped: drop them after releasing the lock"]
pub struct Wakeups {
    /// The first completed read or poll notification, unless it is a long reply.
    lead: Option<Wake>,
    writes: Vec<(WriteCallback, Result<()>)>,
    /// Other completed reads and poll notifications, each bound to its outcome.
    wakes: Vec<Wake>,
}

impl Wakeups {
    pub fn merge(&mut self, mut other: Wakeups) {
        if self.lead.is_none() && self.wakes.is_empty() {
            self.lead = other.lead.take();
        }
        self.wakes.extend(other.lead.take());
        self.wakes.append(&mut other.wakes);
        self.writes.append(&mut other.writes);
    }

    /// Completes a read when the wake-ups run.
    pub(super) fn complete_read(&mut self, callback: ReadCallback, result: ReadResult) {
        let short = result.as_ref().map_or(true, |bytes| bytes.len() < LONG_REPLY);
        self.push(Wake::Read(callback, result), short);
    }

    /// Tells a poller when the wake-ups run.
    pub(super) fn notify(&mut self, poller: Option<PollCallback>) {
        if let Some(poller) = poller {
            self.push(Wake::Poll(poller), true);
        }
    }

    fn push(&mut self, wake: Wake, short: bool) {
        if short && self.lead.is_none() && self.wakes.is_empty() {
            self.lead = Some(wake);
        } else {
            self.wakes.push(wake);
        }
    }

    /// Completes a write when the wake-ups run.
    pub fn complete_write(&mut self, callback: WriteCallback, result: Result<()>) {
        self.writes.push((callback, result));
    }
}

impl Drop for Wakeups {
    fn drop(&mut self) {
        if let Some(lead) = self.lead.take() {
            lead.run();
        }
        for (callback, result) in self.writes.drain(..) {
            callback(result);
        }
        parallel::run_all(std::mem::take(&mut self.wakes));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::engine::errno::Errno;

    type Log = Arc<Mutex<Vec<&'static str>>>;

    /// A read or write callback that notes `name` in `log` when it runs.
    fn noting<T>(log: &Log, name: &'static str) -> Box<dyn FnOnce(T) + Send> {
        let log = log.clone();
        Box::new(move |_| log.lock().unwrap().push(name))
    }

    #[test]
    fn the_first_short_reply_goes_before_the_writer_and_the_rest_after() {
        let log = Log::default();
        let mut wakeups = Wakeups::default();
        wakeups.complete_read(noting(&log, "reader 1"), Ok(vec![1; 64].into()));
        wakeups.complete_read(noting(&log, "reader 2"), Ok(vec![2; 64].into()));
        let mut more = Wakeups::default();
        more.complete_write(noting(&log, "writer"), Ok(()));
        more.complete_read(noting(&log, "order reader"), Ok(b"s\n".to_vec().into()));
        wakeups.merge(more);
        drop(wakeups);
        assert_eq!(*log.lock().unwrap(), ["reader 1", "writer", "reader 2", "order reader"]);
    }

    #[test]
    fn a_long_reply_waits_for_the_writer() {
        let log = Log::default();
        let mut wakeups = Wakeups::default();
        wakeups.complete_read(noting(&log, "long reader"), Ok(vec![0; LONG_REPLY].into()));
        wakeups.complete_read(noting(&log, "short reader"), Ok(vec![0; 64].into()));
        wakeups.complete_write(noting(&log, "writer"), Ok(()));
        drop(wakeups);
        assert_eq!(*log.lock().unwrap(), ["writer", "long reader", "short reader"]);
    }

    #[test]
    fn a_poller_is_told_before_the_writer() {
        let log = Log::default();
        let mut wakeups = Wakeups::default();
        wakeups.complete_write(noting(&log, "writer"), Ok(()));
        let poll_log = log.clone();
        wakeups.notify(Some(Arc::new(move || poll_log.lock().unwrap().push("poller"))));
        wakeups.complete_read(noting(&log, "reader"), Ok(vec![0; 64].into()));
        drop(wakeups);
        assert_eq!(*log.lock().unwrap(), ["poller", "writer", "reader"]);
    }

    #[test]
    fn a_merged_lead_stays_first() {
        let log = Log::default();
        let mut wakeups = Wakeups::default();
        wakeups.complete_write(noting(&log, "writer"), Ok(()));
        let mut reads = Wakeups::default();
        reads.complete_read(noting(&log, "reader"), Err(Errno::EINTR));
        wakeups.merge(reads);
        drop(wakeups);
        assert_eq!(*log.lock().unwrap(), ["reader", "writer"]);
    }
}
