//! Reads fuser's dispatch trace, so that the kernel's FUSE_INTERRUPT reaches mqfs.
//!
//! fuser 0.18 answers FUSE_INTERRUPT with ENOSYS, and the kernel, given ENOSYS for a request
//! it is still waiting on, stops sending interrupts for good: from then on every wait for a
//! request already sent is killable only (D state). But fuser first logs every request it
//! dispatches, `FUSE(N) ino 0x… INTERRUPT unique RequestId(M) thread=…`, and only then
//! answers, on the same thread. The kernel ignores (ENOENT, nothing else changes) an
//! interrupt's answer once the interrupted request was answered. So when the logger shows us
//! that record we answer request M ourselves (EINTR, if it is parked) before returning: the
//! ENOSYS that follows finds it answered, and interrupts keep coming.
//!
//! Of each record only the start, `FUSE(N)`, is formatted (into a fixed buffer, about
//! 0.1 µs): the kernel gives an interrupt its request's id plus one, so an odd N is an
//! interrupt, whose whole text is then read and checked.
//!
//! An interrupt can arrive while its request is still being dispatched on another worker
//! thread (not yet parked, not yet answered). So every request's record marks its unique id
//! as in dispatch, in a small table, until the handler returns ([`end`], called by the
//! handlers' guard) or its thread dispatches its next request; an interrupt waits (bounded)
//! until its request's dispatch is over before looking for a parked read.
//!
//! This rests on fuser's wording, so Cargo.toml pins fuser's version and
//! tests/signals_poll.rs checks that a reader blocked after an interrupt sleeps
//! interruptibly. Should interrupts stop nonetheless (fuser's ENOSYS reached a request
//! still pending), that is noticed and the signal watcher takes over at its fast pace.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use log::{Level, Record};

use super::interrupts::Interrupts;

/// The target of fuser's per-request trace line and of its failed-reply line.
const DISPATCH_TARGET: &str = "fuser::request";
const REPLY_TARGET: &str = "fuser::reply";
/// What fuser logs when its ENOSYS answer to an interrupt finds the request answered.
const ANSWERED_ALREADY: &str = "Failed to send FUSE reply: No such file or directory (os error 2)";

/// Unique ids are even; the low bit of a table entry says "in dispatch".
const BUSY: u64 = 1;
/// A slot is reused after this many requests: an interrupt whose request a worker has read
/// but not yet logged mistakes it for long done if the other workers dispatch as many
/// meanwhile (a worker descheduled while a writer sends 100,000 requests a second: 1024
/// slots were 10 ms of them). 512 KiB, touched as requests come.
const SLOTS: usize = 1 << 16;
/// How long an interrupt waits for its request's dispatch to end.
const DISPATCH_WAIT: Duration = Duration::from_millis(100);

/// The latest request dispatched into each slot (`unique / 2 % SLOTS`), with [`BUSY`].
static DISPATCHED: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];

static INTERRUPTS: OnceLock<Arc<Interrupts>> = OnceLock::new();

thread_local! {
    /// The request this worker thread is dispatching (0: none).
    static CURRENT: Cell<u64> = const { Cell::new(0) };
    /// This thread let fuser's ENOSYS answer an interrupt; fuser's failure to send it
    /// (the request was answered) is expected next.
    static ANSWERING: Cell<bool> = const { Cell::new(false) };
}

/// Starts answering interrupts for the parked requests of `interrupts`.
pub fn install(interrupts: Arc<Interrupts>) {
    if INTERRUPTS.set(interrupts).is_ok() {
        crate::logger::set_tap(tap);
    }
}

/// Called by the logger with each of fuser's records before filtering; true hides it.
fn tap(record: &Record<'_>) -> bool {
    match (record.level(), record.target()) {
        (Level::Debug, DISPATCH_TARGET) => {
            dispatched(record);
            false
        }
        (Level::Error, REPLY_TARGET) if ANSWERING.get() => {
            ANSWERING.set(false);
            let mut text = Prefix::new(ANSWERED_ALREADY.len() + 1);
            let _ = write!(text, "{}", record.args());
            text.as_str() == ANSWERED_ALREADY
        }
        _ => false,
    }
}

fn dispatched(record: &Record<'_>) {
    end();
    if ANSWERING.replace(false) {
        // fuser's ENOSYS reached a request still pending: the kernel sends no more.
        if let Some(interrupts) = INTERRUPTS.get() {
            interrupts.lost();
        }
    }
    // Only the header's start, `FUSE(N)`, is formatted for every request.
    let mut head = Prefix::until(b')');
    let _ = write!(head, "{}", record.args());
    let Some(unique) = request_id(head.as_str()) else { return };
    if unique & INTERRUPT_BIT == 0 {
        DISPATCHED[slot(unique)].store(unique | BUSY, Ordering::Release);
        CURRENT.set(unique);
        return;
    }
    let mut text = Prefix::new(LONG);
    let _ = write!(text, "{}", record.args());
    let interrupted = unique & !INTERRUPT_BIT;
    if interrupted_id(text.as_str()) == Some(interrupted) {
        wait_dispatch(interrupted);
        if let Some(interrupts) = INTERRUPTS.get() {
            interrupts.interrupt(interrupted);
        }
        ANSWERING.set(true);
    }
}

/// The dispatch of this thread's current request is over: its handler returned.
pub fn end() {
    let unique = CURRENT.replace(0);
    if unique != 0 {
        let _ = DISPATCHED[slot(unique)].compare_exchange(
            unique | BUSY,
            unique,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

fn slot(unique: u64) -> usize {
    (unique / 2) as usize % SLOTS
}

/// Waits until request `unique` was dispatched and its handler returned, or for
/// [`DISPATCH_WAIT`]. A slot holding a later request means `unique` was dispatched long ago.
fn wait_dispatch(unique: u64) {
    let deadline = Instant::now() + DISPATCH_WAIT;
    loop {
        let seen = DISPATCHED[slot(unique)].load(Ordering::Acquire);
        if seen == unique || seen & !BUSY > unique || Instant::now() >= deadline {
            return;
        }
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// The kernel's ids: even for requests; an interrupt's is its request's, plus one.
const INTERRUPT_BIT: u64 = 1;
/// An interrupt's record, up to the interrupted id, fits in this.
const LONG: usize = 128;

/// The id of a dispatch record, `FUSE(  N) ino…`, from its start.
fn request_id(head: &str) -> Option<u64> {
    let rest = head.strip_prefix("FUSE(")?;
    rest[..rest.find(')').unwrap_or(rest.len())].trim_start().parse().ok()
}

/// The interrupted id of an interrupt's dispatch record,
/// `FUSE(N) ino 0x<16 hex> INTERRUPT unique RequestId(M)…`.
fn interrupted_id(text: &str) -> Option<u64> {
    let (_, rest) = text.strip_prefix("FUSE(")?.split_once(')')?;
    let operation = rest.strip_prefix(" ino 0x")?.get(17..)?;
    operation.strip_prefix("INTERRUPT unique RequestId(")?.split_once(')')?.0.parse().ok()
}

/// The start of a formatted record, in a fixed buffer: formatting stops once it is full or
/// has written the `until` byte, so what comes after (a request's arguments) is never
/// formatted.
struct Prefix {
    buf: [u8; LONG],
    len: usize,
    limit: usize,
    until: Option<u8>,
}

impl Prefix {
    fn new(limit: usize) -> Prefix {
        Prefix { buf: [0; LONG], len: 0, limit: limit.min(LONG), until: None }
    }

    fn until(byte: u8) -> Prefix {
        Prefix { until: Some(byte), ..Prefix::new(LONG) }
    }

    fn as_str(&self) -> &str {
        let bytes = &self.buf[..self.len];
        std::str::from_utf8(bytes)
            .unwrap_or_else(|e| std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default())
    }
}

impl std::fmt::Write for Prefix {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let take = s.len().min(self.limit - self.len);
        let bytes = &s.as_bytes()[..take];
        self.buf[self.len..self.len + take].copy_from_slice(bytes);
        self.len += take;
        let done = self.len == self.limit || self.until.is_some_and(|b| bytes.contains(&b));
        if done { Err(std::fmt::Error) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(mut into: Prefix, args: std::fmt::Arguments<'_>) -> String {
        let _ = into.write_fmt(args);
        into.as_str().to_string()
    }

    /// The records below have the shape of fuser 0.18's (request.rs: `"{} thread={}"` of
    /// an `AnyRequest`, ll/request.rs: `"FUSE({:3}) ino {:#018x} {}"`, and
    /// `"INTERRUPT unique {:?}"` of a `RequestId`).
    #[test]
    fn only_a_request_records_id_is_formatted() {
        let head = format(
            Prefix::until(b')'),
            format_args!(
                "FUSE({:3}) ino {:#018x} READ fh FileHandle(3) offset 0 size 4096 thread={}",
                12u64, 2u64, "fuser-1"
            ),
        );
        assert_eq!(head, "FUSE( 12) ino ", "formatting stopped after the id");
        assert_eq!(request_id(&head), Some(12));
        assert_eq!(
            request_id(&format(Prefix::until(b')'), format_args!("FUSE({:3})", u64::MAX))),
            Some(u64::MAX)
        );
    }

    #[test]
    fn an_interrupt_record_gives_the_interrupted_id_however_long() {
        let unique = u64::MAX - 1;
        let text = format(
            Prefix::new(LONG),
            format_args!(
                "FUSE({:3}) ino {:#018x} INTERRUPT unique {:?} thread={}",
                unique | INTERRUPT_BIT,
                0u64,
                request_id_like(unique),
                "fuser-3"
            ),
        );
        assert_eq!(interrupted_id(&text), Some(unique));
    }

    /// Formats as fuser's `RequestId` (a derived Debug of a one-field tuple struct).
    fn request_id_like(id: u64) -> impl std::fmt::Debug {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct RequestId(u64);
        RequestId(id)
    }

    #[test]
    fn other_records_are_not_dispatches() {
        assert_eq!(request_id("capability FUSE_ASYNC_READ enabled"), None);
        assert_eq!(interrupted_id("FUSE( 13) ino 0x0000000000000002 READ fh FileHandle(3)"), None);
        assert_eq!(interrupted_id("FUSE( 13) ino 0x02"), None);
    }

    #[test]
    fn a_dispatch_is_busy_until_its_handler_returns() {
        let unique = 1_000_002;
        DISPATCHED[slot(unique)].store(unique | BUSY, Ordering::Release);
        CURRENT.set(unique);
        let waited = std::thread::spawn(move || {
            let start = Instant::now();
            wait_dispatch(unique);
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waited.is_finished(), "the interrupt waits while its request is being dispatched");
        end();
        let waited = waited.join().unwrap();
        assert!(waited < DISPATCH_WAIT, "the handler's return ended the wait: waited {waited:?}");
        assert_eq!(DISPATCHED[slot(unique)].load(Ordering::Acquire), unique);
    }

    #[test]
    fn an_interrupt_waits_for_its_request_to_be_dispatched_but_not_for_an_old_one() {
        let unique = 2_000_002;
        let start = Instant::now();
        DISPATCHED[slot(unique)].store(unique + 2 * SLOTS as u64, Ordering::Release);
        wait_dispatch(unique);
        assert!(start.elapsed() < Duration::from_millis(20), "a later request in the slot: no wait");
        DISPATCHED[slot(unique)].store(unique - 2 * SLOTS as u64, Ordering::Release);
        let start = Instant::now();
        wait_dispatch(unique);
        assert!(start.elapsed() >= DISPATCH_WAIT, "not dispatched yet: waits, bounded");
    }
}
