//! Replies that wait for stable storage (`sync always` writes, fsync(2)): one reply owed
//! once several parts are done, each a log's sync or the write's own completion, whichever
//! comes last, from whatever thread it comes. The first failure is the outcome.

use std::sync::Arc;

use parking_lot::Mutex;

use super::channel::WriteCallback;
use super::errno::Result;
use crate::storage::SyncCallback;

struct State {
    parts: usize,
    outcome: Result<()>,
    callback: Option<WriteCallback>,
}

/// A reply owed once all its parts are done.
pub struct Join(Arc<Mutex<State>>);

impl Join {
    /// A reply to `callback`, owed once [`Join::done`] and every [`Join::part`] ran.
    pub fn new(callback: WriteCallback) -> Join {
        Join(Arc::new(Mutex::new(State { parts: 1, outcome: Ok(()), callback: Some(callback) })))
    }

    /// One more part: a log's sync callback.
    pub fn part(&self) -> SyncCallback {
        self.0.lock().parts += 1;
        let state = self.0.clone();
        Box::new(move |result| finish(&state, result))
    }

    /// The last part, the write's own completion, as a write callback. Once it is made no
    /// part can be added: give it out after the logs' syncs were asked for.
    pub fn done(self) -> WriteCallback {
        Box::new(move |result| finish(&self.0, result))
    }
}

fn finish(state: &Mutex<State>, result: Result<()>) {
    let callback = {
        let mut state = state.lock();
        if state.outcome.is_ok() {
            state.outcome = result;
        }
        state.parts -= 1;
        if state.parts > 0 {
            return;
        }
        state.callback.take().map(|callback| (callback, state.outcome))
    };
    if let Some((callback, outcome)) = callback {
        callback(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::errno::Errno;

    #[test]
    fn the_reply_waits_for_every_part_and_keeps_the_first_failure() {
        let outcome = Arc::new(Mutex::new(None));
        let slot = outcome.clone();
        let join = Join::new(Box::new(move |result| *slot.lock() = Some(result)));
        let (first, second) = (join.part(), join.part());
        let done = join.done();
        done(Ok(()));
        second(Err(Errno::EIO));
        assert_eq!(*outcome.lock(), None, "a part is still owed");
        first(Err(Errno::ENOSPC));
        assert_eq!(*outcome.lock(), Some(Err(Errno::EIO)));
    }
}
