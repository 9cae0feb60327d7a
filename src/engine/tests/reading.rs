//! Reads: cursors, message and coalesce modes, blocking, continuation reads, cancel, poll, release.

use super::*;

#[test]
fn every_reader_gets_every_message_in_order() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let readers: Vec<u64> = (0..3).map(|_| open_reader(&e, s)).collect();
    let messages: Vec<Vec<u8>> = (0..20).map(|i| format!("message {i}").into_bytes()).collect();
    let w = open_writer(&e, s);
    for m in &messages {
        write(&e, w, m).unwrap();
    }
    // Interleave the readers: one reader's progress does not move another's.
    for m in &messages {
        for &r in &readers {
            expect_read(&e, r, 4096, m);
        }
    }
    for &r in &readers {
        expect_errno(&e, r, Errno::EAGAIN);
    }
}

#[test]
fn message_mode_returns_at_most_one_message_per_read() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    publish(&e, s, &[b"one", b"two", b"three"]);
    expect_read(&e, r, 4096, b"one");
    expect_read(&e, r, 4096, b"two");
    expect_read(&e, r, 4096, b"three");
    expect_errno(&e, r, Errno::EAGAIN);
}

#[test]
fn a_short_read_gets_the_rest_of_its_message_before_the_next() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    publish(&e, s, &[b"hello world", b"next"]);
    expect_read(&e, r, 5, b"hello");
    expect_read(&e, r, 4, b" wor");
    expect_read(&e, r, 100, b"ld");
    expect_read(&e, r, 100, b"next");
    expect_errno(&e, r, Errno::EAGAIN);
}

#[test]
fn coalesce_mode_reads_across_message_boundaries() {
    let e = engine();
    ctl(&e, ROOT, "data coalesce");
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    publish(&e, s, &[b"ab", b"cd", b"ef", b"gh"]);
    expect_read(&e, r, 5, b"abcde");
    expect_read(&e, r, 100, b"fgh");
    expect_errno(&e, r, Errno::EAGAIN);

    // The mode follows the group's ctl: back to messages.
    ctl(&e, ROOT, "data message");
    publish(&e, s, &[b"ij", b"kl"]);
    expect_read(&e, r, 100, b"ij");
    expect_read(&e, r, 100, b"kl");
}

#[test]
fn a_non_blocking_read_with_nothing_to_read_fails_eagain() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    expect_errno(&e, r, Errno::EAGAIN);
    // EAGAIN did not move the cursor: the next message is still delivered.
    publish(&e, s, &[b"x"]);
    expect_read(&e, r, 10, b"x");
    expect_errno(&e, r, Errno::EAGAIN);
}

#[test]
fn a_blocking_read_parks_until_a_write() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let (slot, ticket) = start_read(&e, r, 100, ReadMode::Block);
    assert!(ticket.is_some(), "the read parked");
    assert!(is_pending(&slot), "no result before a write");
    publish(&e, s, &[b"wake up"]);
    assert_eq!(taken(&slot), Some(Ok(b"wake up".to_vec())));
    expect_errno(&e, r, Errno::EAGAIN);

    // With data already there, a blocking read returns at once.
    publish(&e, s, &[b"ready"]);
    assert_eq!(read_mode(&e, r, 100, ReadMode::Block), Ok(b"ready".to_vec()));

    // A parked read woken from another thread.
    let e = Arc::new(e);
    let (slot, ticket) = start_read(&e, r, 100, ReadMode::Block);
    assert!(ticket.is_some());
    let writer = {
        let e = e.clone();
        thread::spawn(move || publish(&e, s, &[b"from a thread"]))
    };
    writer.join().unwrap();
    assert_eq!(taken(&slot), Some(Ok(b"from a thread".to_vec())));
}

#[test]
fn continuation_reads_only_continue_a_partly_read_message() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    // Nothing to read: an empty read, not a parked one, not EAGAIN.
    assert_eq!(read_mode(&e, r, 100, ReadMode::Continuation), Ok(Vec::new()));

    publish(&e, s, &[b"hello world", b"second"]);
    // A message is waiting, but a continuation does not start a new message.
    assert_eq!(read_mode(&e, r, 100, ReadMode::Continuation), Ok(Vec::new()));
    expect_read(&e, r, 5, b"hello");
    assert_eq!(read_mode(&e, r, 3, ReadMode::Continuation), Ok(b" wo".to_vec()));
    assert_eq!(read_mode(&e, r, 100, ReadMode::Continuation), Ok(b"rld".to_vec()));
    // The message is done: the next continuation ends the read(2) without mixing in "second".
    assert_eq!(read_mode(&e, r, 100, ReadMode::Continuation), Ok(Vec::new()));
    expect_read(&e, r, 100, b"second");
    assert_eq!(read_mode(&e, r, 100, ReadMode::Continuation), Ok(Vec::new()));

    // Coalescing, a continuation never parks either.
    ctl(&e, ROOT, "data coalesce");
    assert_eq!(read_mode(&e, r, 100, ReadMode::Continuation), Ok(Vec::new()));
    publish(&e, s, &[b"ab", b"cd"]);
    expect_read(&e, r, 1, b"a");
    assert_eq!(read_mode(&e, r, 100, ReadMode::Continuation), Ok(b"bcd".to_vec()));
    assert_eq!(read_mode(&e, r, 100, ReadMode::Continuation), Ok(Vec::new()));
}

#[test]
fn cancel_completes_a_parked_read_and_loses_nothing() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let (slot, ticket) = start_read(&e, r, 100, ReadMode::Block);
    let ticket = ticket.expect("parked");
    assert!(e.cancel(r, ticket, Errno::EINTR));
    assert_eq!(taken(&slot), Some(Err(Errno::EINTR)));
    assert!(!e.cancel(r, ticket, Errno::EINTR), "already cancelled");

    publish(&e, s, &[b"not lost"]);
    assert!(is_pending(&slot), "the cancelled callback does not run again");
    expect_read(&e, r, 100, b"not lost");

    // A read completed by a write can no longer be cancelled.
    let (slot, ticket) = start_read(&e, r, 100, ReadMode::Block);
    let ticket = ticket.expect("parked");
    publish(&e, s, &[b"delivered"]);
    assert_eq!(taken(&slot), Some(Ok(b"delivered".to_vec())));
    assert!(!e.cancel(r, ticket, Errno::EINTR));
    assert!(is_pending(&slot));
    // Nor can a read on a handle that is gone.
    e.release(r);
    assert!(!e.cancel(r, ticket, Errno::EINTR));
}

#[test]
fn a_poll_arms_a_poller_told_of_the_next_write_whether_readable_or_not() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let (told, poller) = poll_counter();
    let count = || told.load(Ordering::SeqCst);
    assert_eq!(e.poll(r, Some(poller.clone())), Ok(false));
    assert_eq!(count(), 0);
    publish(&e, s, &[b"one"]);
    assert_eq!(count(), 1, "the poller was told when data arrived");
    publish(&e, s, &[b"two"]);
    assert_eq!(count(), 1, "once per arming: the kernel polls again after a wake-up");
    assert_eq!(e.poll(r, None), Ok(true));
    publish(&e, s, &[b"three"]);
    assert_eq!(count(), 1, "a poll that does not ask to be told arms nothing");
    // Already readable, a poll that asks to be told arms: an edge-triggered waiter that
    // read everything it was told of needs the next edge.
    assert_eq!(e.poll(r, Some(poller.clone())), Ok(true));
    publish(&e, s, &[b"four"]);
    assert_eq!(count(), 2);
    for message in [&b"one"[..], b"two", b"three", b"four"] {
        expect_read(&e, r, 100, message);
    }
    assert_eq!(e.poll(r, Some(poller.clone())), Ok(false), "read dry, not ready until the next write");
    let other = create(&e, ROOT, "other");
    publish(&e, other, &[b"elsewhere"]);
    assert_eq!(count(), 2, "another stream's write does not tell it");
    publish(&e, s, &[b"five"]);
    assert_eq!(count(), 3);
    // A later poll's poller replaces it.
    let (told_again, replacing) = poll_counter();
    assert_eq!(e.poll(r, Some(poller)), Ok(true));
    assert_eq!(e.poll(r, Some(replacing)), Ok(true));
    publish(&e, s, &[b"six"]);
    assert_eq!((count(), told_again.load(Ordering::SeqCst)), (3, 1));
    // Once the reader is released, nobody is told.
    let (told_last, last) = poll_counter();
    assert_eq!(e.poll(r, Some(last)), Ok(true));
    e.release(r);
    publish(&e, s, &[b"seven"]);
    assert_eq!(told_last.load(Ordering::SeqCst), 0);

    // order polls too.
    let order = open_reader(&e, order_ino(&e, ROOT));
    let (told, poller) = poll_counter();
    assert_eq!(e.poll(order, Some(poller)), Ok(false));
    publish(&e, s, &[b"x"]);
    assert_eq!(told.load(Ordering::SeqCst), 1);
    assert_eq!(e.poll(order, None), Ok(true));
}

#[test]
fn releasing_a_reader_frees_what_only_it_needed() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let keen = open_reader(&e, s);
    let lazy = open_reader(&e, s);
    publish(&e, s, &[&[1u8; 5000], &[2u8; 5000]]);
    expect_read(&e, keen, 8192, &[1u8; 5000]);
    expect_read(&e, keen, 8192, &[2u8; 5000]);
    let held = e.usage().memory_used;
    assert!(held >= 10_000, "the lazy reader's backlog is held: {held}");
    assert_eq!(size(&e, s), 10_000);
    e.release(lazy);
    assert_eq!(size(&e, s), 0);
    assert!(e.usage().memory_used < held);
    assert_eq!(e.usage().memory_used, 0);
    // A released handle is gone.
    assert_eq!(read_now(&e, lazy, 100), Err(Errno::EBADF));
}
