//! Helpers for the workarounds' unit tests.

use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(5);

pub fn gettid() -> u32 {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    u32::try_from(tid).expect("tid is positive")
}

/// Polls `probe` every millisecond until it returns `Some`, for at most
/// `DEADLINE`.
pub fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}
