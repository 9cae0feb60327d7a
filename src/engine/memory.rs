//! The mount-wide memory ceiling: every log charges what its segments hold.

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

    /// Whether `extra` more bytes fit under the ceiling.
    pub fn admits(&self, extra: u64) -> bool {
        self.used.load(Ordering::Relaxed).saturating_add(extra) <= self.limit
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
