//! The ackwait timer: one thread for the mount, started on first use, that calls back each
//! queue when its oldest message in flight has waited `ackwait` (`Channel::expire`), so that
//! a message a reader does not acknowledge in time goes to another. A queue asks for one
//! call at a time (its earliest deadline), so the timer holds at most about one alarm per
//! queue; an alarm of a stream gone is dropped when it rings.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::Ino;
use super::channel::Alarm;
use super::dead::Graveyard;
use super::stream::Stream;

/// How long the thread waits at most before it looks whether its engine is gone.
const IDLE: Duration = Duration::from_secs(1);

pub(super) struct Timer {
    alarms: Mutex<Alarms>,
    ring: Condvar,
    graveyard: Graveyard,
}

#[derive(Default)]
struct Alarms {
    heap: BinaryHeap<Reverse<Ring>>,
    started: bool,
}

/// One alarm: when, and whose.
struct Ring {
    at: Instant,
    ino: Ino,
    stream: Weak<Stream>,
}

impl PartialEq for Ring {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.ino) == (other.at, other.ino)
    }
}

impl Eq for Ring {}

impl PartialOrd for Ring {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ring {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.ino).cmp(&(other.at, other.ino))
    }
}

impl Timer {
    pub(super) fn new(graveyard: Graveyard) -> Arc<Timer> {
        Arc::new(Timer { alarms: Mutex::default(), ring: Condvar::new(), graveyard })
    }

    /// The alarm of stream `ino`'s channel.
    pub(super) fn alarm(self: &Arc<Self>, ino: Ino, stream: &Arc<Stream>) -> Alarm {
        let (timer, stream) = (Arc::downgrade(self), Arc::downgrade(stream));
        Arc::new(move |at| {
            if let Some(timer) = timer.upgrade() {
                timer.set(Ring { at, ino, stream: stream.clone() });
            }
        })
    }

    fn set(self: &Arc<Self>, ring: Ring) {
        let mut alarms = self.alarms.lock();
        alarms.heap.push(Reverse(ring));
        if !alarms.started {
            let timer = Arc::downgrade(self);
            let spawned = std::thread::Builder::new().name("mqfs-ackwait".into()).spawn(move || run(timer));
            match spawned {
                Ok(_) => alarms.started = true,
                Err(e) => log::error!("cannot start the ackwait thread ({e}): will try again"),
            }
        }
        self.ring.notify_one();
    }

    /// Waits for the next alarm due (at most `IDLE`) and rings it.
    fn ring_next(&self) {
        let mut alarms = self.alarms.lock();
        let now = Instant::now();
        match alarms.heap.peek() {
            Some(Reverse(ring)) if ring.at <= now => {}
            Some(Reverse(ring)) => {
                let wait = (ring.at - now).min(IDLE);
                self.ring.wait_for(&mut alarms, wait);
                return;
            }
            None => {
                self.ring.wait_for(&mut alarms, IDLE);
                return;
            }
        }
        let Reverse(ring) = alarms.heap.pop().expect("peeked");
        drop(alarms);
        let Some(stream) = ring.stream.upgrade() else { return };
        let (wakeups, dead) = {
            let mut state = stream.state.lock();
            let config = state.config;
            state.channel.expire(Instant::now(), &config)
        };
        drop(wakeups);
        self.graveyard.bury(ring.ino, dead);
    }
}

/// The thread: rings alarms until its engine is gone.
fn run(timer: Weak<Timer>) {
    while let Some(timer) = timer.upgrade() {
        timer.ring_next();
    }
}
