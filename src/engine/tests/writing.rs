//! Writes: one write(2) one message, multi-request writes, admission, ctl writes.

use super::*;

#[test]
fn each_write_is_one_binary_safe_message() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let w = open_writer(&e, s);
    let all_bytes: Vec<u8> = (0..=255u8).collect();
    let lines = b"first line\nsecond line\n\0after a nul\n".to_vec();
    assert_eq!(write(&e, w, &all_bytes), Ok(256));
    assert_eq!(write(&e, w, &lines), Ok(lines.len()));
    assert_eq!(write(&e, w, b"\0"), Ok(1));
    assert_eq!(write(&e, w, b"\n"), Ok(1));
    expect_read(&e, r, 4096, &all_bytes);
    expect_read(&e, r, 4096, &lines);
    expect_read(&e, r, 4096, b"\0");
    expect_read(&e, r, 4096, b"\n");
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!(size(&e, s), 0, "replay off: read messages are gone");
}

#[test]
fn a_write_in_several_requests_is_published_once_complete() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let w = open_writer(&e, s);
    let message: Vec<u8> = (0..3000u32).map(|i| (i * 7 % 256) as u8).collect();

    let (slot, ticket) = start_read(&e, r, 8192, ReadMode::Block);
    assert!(ticket.is_some(), "nothing to read yet");
    assert_eq!(write_part(&e, w, &message[..1000], 0, Some(3000)), Ok(1000));
    assert!(is_pending(&slot), "a part is not a message");
    assert_eq!(size(&e, s), 0);
    assert_eq!(write_part(&e, w, &message[1000..2000], 1000, None), Ok(1000));
    assert!(is_pending(&slot), "two parts are not a message");
    assert_eq!(size(&e, s), 0);
    let (other, _) = start_read(&e, open_reader(&e, s), 8192, ReadMode::NonBlock);
    assert_eq!(taken(&other), Some(Err(Errno::EAGAIN)), "a reader sees nothing in between");
    assert_eq!(write_part(&e, w, &message[2000..], 2000, None), Ok(1000));
    assert_eq!(taken(&slot), Some(Ok(message.clone())), "one message, all parts in order");
    expect_errno(&e, r, Errno::EAGAIN);

    // The next whole write is a message of its own again.
    assert_eq!(write(&e, w, b"next"), Ok(4));
    expect_read(&e, r, 8192, b"next");
}

#[test]
fn a_message_larger_than_a_log_can_index_is_refused_whatever_max_message_says() {
    let e = engine_with(Limits { max_message: 8 << 30, memory: 16 << 30 });
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let w = open_writer(&e, s);
    let huge = crate::storage::memory::Untouched::new(crate::storage::memory::MAX_MESSAGE as usize + 16);
    assert_eq!(write(&e, w, huge.bytes()), Err(Errno::EFBIG));
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!((size(&e, s), e.usage().memory_used), (0, 0), "nothing was appended");
    assert_eq!(write(&e, w, b"after"), Ok(5));
    expect_read(&e, r, 100, b"after");
}

#[test]
fn a_write_continues_only_from_its_writer_at_its_next_offset() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let w = open_writer(&e, s);
    // O_APPEND: the first request carries the cached file size, not 0.
    assert_eq!(write_part(&e, w, &[b'a'; 600], 5000, Some(1000)), Ok(600));
    assert_eq!(write_part(&e, w, &[b'a'; 400], 5600, None), Ok(400));
    expect_read(&e, r, 4096, &[b'a'; 1000]);
    // A request at any other offset, or from another writer, starts a new write(2); the
    // one it interrupts is dropped with its reservation.
    assert_eq!(write_part(&e, w, &[b'b'; 600], 0, Some(1000)), Ok(600));
    assert!(e.usage().memory_used > 0, "the pending write holds a reservation");
    assert_eq!(write_part(&e, w, &[b'c'; 10], 601, Some(10)), Ok(10));
    expect_read(&e, r, 4096, &[b'c'; 10]);
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!(write_part(&e, w, &[b'd'; 600], 0, Some(1000)), Ok(600));
    let other =
        WriteRequest { data: &[b'e'; 400], writer: 2, offset: 600, nonblock: false, pid: 0, uid: 0, gid: 0 };
    let outcome = Arc::new(Mutex::new(None));
    let slot = outcome.clone();
    e.write(w, &other, || Some(400), |_| Some(1), Box::new(move |r| *slot.lock().unwrap() = Some(r)));
    assert_eq!(outcome.lock().unwrap().take(), Some(Ok(())));
    expect_read(&e, r, 4096, &[b'e'; 400]);
    // More than is missing is not a continuation either.
    assert_eq!(write_part(&e, w, &[b'f'; 600], 0, Some(1000)), Ok(600));
    assert_eq!(write_part(&e, w, &[b'g'; 500], 600, Some(500)), Ok(500));
    expect_read(&e, r, 4096, &[b'g'; 500]);
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!(e.usage().memory_used, 0, "replay off, all read: nothing held");
}

#[test]
fn a_write_is_admitted_once_for_all_it_costs_and_assemblies_count() {
    let e = engine_with(Limits { max_message: 16 * MIB, memory: 8 * MIB });
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let (w1, w2) = (open_writer(&e, s), open_writer(&e, s));
    // Two writes of 3 MiB being assembled leave no room for a third.
    let part = vec![b'x'; MIB as usize];
    assert_eq!(write_part(&e, w1, &part, 0, Some(3 * MIB)), Ok(part.len()));
    assert_eq!(write_part(&e, w2, &part, 0, Some(3 * MIB)), Ok(part.len()));
    let w3 = open_writer(&e, s);
    assert_eq!(write_part(&e, w3, &part, 0, Some(3 * MIB)), Err(Errno::ENOSPC));
    // The admitted ones complete whatever else is written meanwhile.
    assert_eq!(write(&e, w3, &[b'y'; 100]), Ok(100));
    for offset in [MIB, 2 * MIB] {
        assert_eq!(write_part(&e, w1, &part, offset, None), Ok(part.len()));
    }
    expect_read(&e, r, 4096, &[b'y'; 100]);
    expect_read(&e, r, 4 * MIB as u32, &vec![b'x'; 3 * MIB as usize]);
    e.release(w2);
    assert_eq!(e.usage().memory_used, 0, "a closed handle's pending write is released");
}

#[test]
fn frame_is_fixed_when_a_file_is_opened() {
    let e = engine();
    ctl(&e, ROOT, "frame close");
    let s = create(&e, ROOT, "s");
    let (r, w) = (open_reader(&e, s), open_writer(&e, s));
    assert_eq!(write(&e, w, b"one "), Ok(4));
    ctl(&e, ROOT, "frame write");
    assert_eq!(write(&e, w, b"message"), Ok(7));
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!(e.flush(w, CLOSER, OWNER, || false, |_| Some(1)), Ok(()));
    expect_read(&e, r, 100, b"one message");
}

#[test]
fn a_ctl_write_in_several_requests_applies_whole_or_not_at_all() {
    let e = engine();
    let (fh, _) = e.open(ctl_ino(&e, ROOT), false, true, OWNER).unwrap();
    let text = b"depth 5\nbogus line\n";
    assert_eq!(write_part(&e, fh, &text[..8], 100, Some(text.len() as u64)), Ok(8));
    assert!(ctl_read(&e, ROOT).contains("depth 0"), "nothing applied before the end");
    assert_eq!(write_part(&e, fh, &text[8..], 108, None), Err(Errno::EINVAL));
    assert!(ctl_read(&e, ROOT).contains("depth 0"));
    assert_eq!(write_part(&e, fh, &[b'#'; 10], 0, Some(CTL_MAX + 1)), Err(Errno::EINVAL));
    e.release(fh);
}

#[test]
fn an_oversized_message_is_refused_with_efbig() {
    let e = engine_with(Limits { max_message: 100, memory: 64 * MIB });
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let w = open_writer(&e, s);
    assert_eq!(write(&e, w, &[b'x'; 101]), Err(Errno::EFBIG));
    assert_eq!(write_part(&e, w, &[b'y'; 50], 0, Some(101)), Err(Errno::EFBIG));
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!(size(&e, s), 0);
    assert_eq!(e.usage().memory_used, 0);

    // Exactly the limit is fine, whole or in parts.
    assert_eq!(write(&e, w, &[b'a'; 100]), Ok(100));
    expect_read(&e, r, 4096, &[b'a'; 100]);
    assert_eq!(write_part(&e, w, &[b'b'; 60], 0, Some(100)), Ok(60));
    assert_eq!(write_part(&e, w, &[b'b'; 40], 60, None), Ok(40));
    expect_read(&e, r, 4096, &[b'b'; 100]);
    expect_errno(&e, r, Errno::EAGAIN);
}

#[test]
fn a_short_write_is_not_continued_by_its_writers_next_write() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let w = open_writer(&e, s);
    // write(2) 1 of 2000 bytes stops after 1000 (EFAULT); the file position moved by 1000,
    // so write(2) 2 starts where write(2) 1 stopped, and fits in what it misses.
    assert_eq!(write_in_call(&e, w, &[b'a'; 1000], 0, Some(2000), 1), Ok(1000));
    assert_eq!(write_in_call(&e, w, &[b'b'; 1000], 1000, Some(1000), 2), Ok(1000));
    expect_read(&e, r, 4096, &[b'b'; 1000]);
    // A smaller one is not swallowed either.
    assert_eq!(write_in_call(&e, w, &[b'a'; 1000], 2000, Some(2000), 3), Ok(1000));
    assert_eq!(write_in_call(&e, w, &[b'c'; 10], 3000, Some(10), 4), Ok(10));
    expect_read(&e, r, 4096, &[b'c'; 10]);
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!(e.usage().memory_used, 0, "the short writes' reservations were released");
}

#[test]
fn a_write_whose_writer_left_it_is_released_at_close() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let w = open_writer(&e, s);
    let part = [b'x'; 1000];
    assert_eq!(write_part(&e, w, &part, 0, Some(2000)), Ok(part.len()));
    // Another process sharing the file closes it while the write(2) goes on: it stays.
    assert_eq!(e.flush(w, CLOSER, OWNER, || false, |_| Some(1)), Ok(()));
    assert_eq!(write_part(&e, w, &part, 1000, None), Ok(part.len()));
    expect_read(&e, r, 4096, &[b'x'; 2000]);
    // Its writer was killed between requests: its close (or any close once it is gone)
    // releases what the write(2) held.
    assert_eq!(write_part(&e, w, &part, 0, Some(2000)), Ok(part.len()));
    assert!(e.usage().memory_used > 0, "the pending write holds a reservation");
    assert_eq!(e.flush(w, 1, OWNER, || true, |_| Some(1)), Ok(()));
    assert_eq!(e.usage().memory_used, 0, "released at the writer's own close");
    assert_eq!(write_part(&e, w, &part, 0, Some(2000)), Ok(part.len()));
    assert_eq!(e.flush(w, CLOSER, OWNER, || false, |_| None), Ok(()));
    assert_eq!(e.usage().memory_used, 0, "released once the writer is out of its write(2)");
    expect_errno(&e, r, Errno::EAGAIN);
}
