//! The mount-wide memory ceiling: every log charges what its segments hold, and every
//! message still being assembled holds a reservation for what it will cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct Memory {
    used: AtomicU64,
    limit: u64,
}

impl Memory {
    pub fn new(limit: u64) -> Self {
        Memory { used: AtomicU64::new(0), limit }
    }

    /// Takes `bytes` from under the ceiling, if they fit; they are given back when the
    /// reservation is dropped (by then a log has charged what it actually took).
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Option<Reservation> {
        let mut reservation = Reservation { memory: self.clone(), bytes: 0 };
        reservation.grow_to(bytes).then_some(reservation)
    }

    /// Adds `extra` bytes to what is used if the total stays under the ceiling.
    fn take(&self, extra: u64) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(extra).filter(|&total| total <= self.limit)
            })
            .is_ok()
    }

    /// Replaces a charge of `before` bytes with one of `after` bytes.
    pub fn recharge(&self, before: u64, after: u64) {
        if after >= before {
            self.used.fetch_add(after - before, Ordering::Relaxed);
        } else {
            self.used.fetch_sub(before - after, Ordering::Relaxed);
        }
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }
}

/// Memory promised to a message not yet in a log, counted as used until dropped.
#[derive(Debug)]
pub struct Reservation {
    memory: Arc<Memory>,
    bytes: u64,
}

impl Reservation {
    /// Makes the reservation at least `bytes`; false (and unchanged) if that does not fit.
    pub fn grow_to(&mut self, bytes: u64) -> bool {
        if bytes <= self.bytes {
            return true;
        }
        if !self.memory.take(bytes - self.bytes) {
            return false;
        }
        self.bytes = bytes;
        true
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.memory.recharge(self.bytes, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_count_until_dropped_and_never_pass_the_ceiling() {
        let memory = Arc::new(Memory::new(100));
        let mut first = memory.reserve(60).expect("fits");
        assert!(memory.reserve(41).is_none(), "60 + 41 is over 100");
        assert!(!first.grow_to(101));
        assert_eq!(first.bytes(), 60, "a failed growth changes nothing");
        assert!(first.grow_to(70));
        let second = memory.reserve(30).expect("70 + 30 fits exactly");
        assert_eq!(memory.used(), 100);
        drop(first);
        assert_eq!(memory.used(), 30);
        drop(second);
        assert_eq!(memory.used(), 0);
    }
}
