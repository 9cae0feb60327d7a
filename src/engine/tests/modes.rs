//! Blocking writes, whole-file messages and static mode.

use super::*;

#[test]
fn write_one_waits_for_a_reader_to_receive_the_message() {
    let e = engine();
    ctl(&e, ROOT, "write one");
    let s = create(&e, ROOT, "s");
    let w = open_writer(&e, s);
    // No reader yet: the writer waits, and the message waits for the first reader, even
    // under replay off.
    let (slot, ticket) = start_write(&e, w, b"hello", false);
    assert!(ticket.is_some());
    assert_eq!(write_outcome(&slot), None);
    let r = open_reader(&e, s);
    assert_eq!(write_outcome(&slot), None, "opening is not receiving");
    expect_read(&e, r, 2, b"he");
    assert_eq!(write_outcome(&slot), None, "half a message is not the message");
    expect_read(&e, r, 100, b"llo");
    assert_eq!(write_outcome(&slot), Some(Ok(())));
    // A reader parked in read receives the message during the write: no wait at all.
    let (read_slot, _) = start_read(&e, r, 100, ReadMode::Block);
    let (slot, ticket) = start_write(&e, w, b"again", false);
    assert_eq!(ticket, None);
    assert_eq!(write_outcome(&slot), Some(Ok(())));
    assert_eq!(taken(&read_slot), Some(Ok(b"again".to_vec())));
}

#[test]
fn write_one_with_o_nonblock_and_no_reader_commits_nothing() {
    let e = engine();
    ctl(&e, ROOT, "write one\nreplay all");
    let s = create(&e, ROOT, "s");
    let w = open_writer(&e, s);
    let (slot, ticket) = start_write(&e, w, b"x", true);
    assert_eq!((ticket, write_outcome(&slot)), (None, Some(Err(Errno::EAGAIN))));
    assert_eq!(size(&e, s), 0);
    // With a reader it commits and returns at once, received or not.
    let r = open_reader(&e, s);
    let (slot, ticket) = start_write(&e, w, b"y", true);
    assert_eq!((ticket, write_outcome(&slot)), (None, Some(Ok(()))));
    expect_read(&e, r, 10, b"y");
}

#[test]
fn write_all_waits_for_every_reader_open_at_the_commit() {
    let e = engine();
    ctl(&e, ROOT, "write all");
    let s = create(&e, ROOT, "s");
    let (fast, slow, w) = (open_reader(&e, s), open_reader(&e, s), open_writer(&e, s));
    let (slot, ticket) = start_write(&e, w, b"m", false);
    assert!(ticket.is_some());
    let late = open_reader(&e, s); // opened after the commit: does not count
    expect_read(&e, fast, 10, b"m");
    assert_eq!(write_outcome(&slot), None, "the slow reader has not read it");
    expect_read(&e, slow, 10, b"m");
    assert_eq!(write_outcome(&slot), Some(Ok(())));
    expect_errno(&e, late, Errno::EAGAIN);
    // A reader that closes stops counting.
    let (slot, _) = start_write(&e, w, b"n", false);
    expect_read(&e, fast, 10, b"n");
    expect_read(&e, late, 10, b"n");
    assert_eq!(write_outcome(&slot), None);
    e.release(slow);
    assert_eq!(write_outcome(&slot), Some(Ok(())));
    // With nobody reading there is nobody to wait for.
    e.release(fast);
    e.release(late);
    let (slot, ticket) = start_write(&e, w, b"o", false);
    assert_eq!((ticket, write_outcome(&slot)), (None, Some(Ok(()))));
}

#[test]
fn a_blocked_write_cancelled_by_a_signal_succeeds_and_stays_committed() {
    let e = engine();
    ctl(&e, ROOT, "write all\nreplay all");
    let s = create(&e, ROOT, "s");
    let (r, w) = (open_reader(&e, s), open_writer(&e, s));
    let (slot, ticket) = start_write(&e, w, b"kept", false);
    let ticket = ticket.expect("blocked");
    assert!(e.cancel(w, ticket, Errno::EINTR));
    assert_eq!(write_outcome(&slot), Some(Ok(())), "committed: reported as written");
    expect_read(&e, r, 10, b"kept");
    assert!(!e.cancel(w, ticket, Errno::EINTR));
}

#[test]
fn a_write_one_message_whose_writer_got_a_signal_is_kept_for_the_next_reader() {
    let e = engine();
    ctl(&e, ROOT, "write one");
    let s = create(&e, ROOT, "s");
    let (w1, w2) = (open_writer(&e, s), open_writer(&e, s));
    let (first, ticket) = start_write(&e, w1, b"first", false);
    let (second, second_ticket) = start_write(&e, w2, b"second", false);
    assert!(second_ticket.is_some());
    // A signal answers the first writer: its message is committed, so it succeeds...
    assert!(e.cancel(w1, ticket.expect("blocked"), Errno::EINTR));
    assert_eq!(write_outcome(&first), Some(Ok(())));
    assert_eq!(size(&e, s), 11, "both messages are retained");
    // ...and the first reader to open (replay off) still starts with it.
    let r = open_reader(&e, s);
    expect_read(&e, r, 100, b"first");
    assert_eq!(write_outcome(&second), None, "the second message is not received yet");
    expect_read(&e, r, 100, b"second");
    assert_eq!(write_outcome(&second), Some(Ok(())));
    expect_errno(&e, r, Errno::EAGAIN);
    // Received: replay off keeps nothing more, and a later reader starts after it.
    assert_eq!(size(&e, s), 0);
    let late = open_reader(&e, s);
    expect_errno(&e, late, Errno::EAGAIN);
}

#[test]
fn an_awaited_message_whose_writer_was_answered_still_goes_with_depth_clear_or_removal() {
    let e = engine();
    ctl(&e, ROOT, "write one");
    let s = create(&e, ROOT, "s");
    let w = open_writer(&e, s);
    let answer = |message: &[u8]| {
        let (slot, ticket) = start_write(&e, w, message, false);
        assert!(e.cancel(w, ticket.expect("blocked"), Errno::EINTR));
        assert_eq!(write_outcome(&slot), Some(Ok(())));
    };
    // depth drops the older of two: the next reader starts with the newer, without ENOBUFS.
    answer(b"old");
    answer(b"new");
    ctl(&e, ROOT, "depth 1");
    let r = open_reader(&e, s);
    expect_read(&e, r, 100, b"new");
    expect_errno(&e, r, Errno::EAGAIN);
    e.release(r);
    // clear drops it: nothing is kept for the next reader.
    answer(b"cleared");
    ctl(&e, ROOT, "clear");
    let r = open_reader(&e, s);
    expect_errno(&e, r, Errno::EAGAIN);
    e.release(r);
    assert_eq!(e.usage().memory_used, 0);
    // Removal: the stream's memory returns once its last handle goes.
    answer(b"removed");
    e.unlink(ROOT, b"s").unwrap();
    e.release(w);
    assert_eq!(e.usage().memory_used, 0);
}

#[test]
fn answering_one_write_all_writer_early_leaves_the_others_waiting() {
    let e = engine();
    ctl(&e, ROOT, "write all");
    let s = create(&e, ROOT, "s");
    let (fast, slow) = (open_reader(&e, s), open_reader(&e, s));
    let (w1, w2) = (open_writer(&e, s), open_writer(&e, s));
    let (first, ticket) = start_write(&e, w1, b"m1", false);
    let (second, _) = start_write(&e, w2, b"m2", false);
    assert!(e.cancel(w1, ticket.expect("blocked"), Errno::EINTR));
    assert_eq!(write_outcome(&first), Some(Ok(())));
    // The other write still waits for both readers open at its commit, and both readers
    // get both messages.
    expect_read(&e, fast, 10, b"m1");
    expect_read(&e, fast, 10, b"m2");
    assert_eq!(write_outcome(&second), None, "the slow reader has not read m2");
    expect_read(&e, slow, 10, b"m1");
    assert_eq!(write_outcome(&second), None, "the slow reader has not read m2");
    expect_read(&e, slow, 10, b"m2");
    assert_eq!(write_outcome(&second), Some(Ok(())));
}

#[test]
fn writers_waiting_on_a_removed_or_cleared_stream_are_released() {
    let e = engine();
    ctl(&e, ROOT, "write all");
    let s = create(&e, ROOT, "s");
    let (_r, w) = (open_reader(&e, s), open_writer(&e, s));
    let (cleared, _) = start_write(&e, w, b"a", false);
    ctl(&e, ROOT, "clear");
    assert_eq!(write_outcome(&cleared), Some(Ok(())), "its message is gone: nothing to wait for");
    let (removed, _) = start_write(&e, w, b"b", false);
    assert_eq!(write_outcome(&removed), None);
    e.unlink(ROOT, b"s").unwrap();
    assert_eq!(write_outcome(&removed), Some(Ok(())));
}

#[test]
fn frame_close_publishes_everything_written_at_close() {
    let e = engine();
    ctl(&e, ROOT, "frame close\nreplay all");
    let s = create(&e, ROOT, "s");
    let (r, w) = (open_reader(&e, s), open_writer(&e, s));
    for part in [&b"part one, "[..], b"part two, ", b"end"] {
        assert_eq!(write(&e, w, part), Ok(part.len()));
    }
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!(e.flush(w, CLOSER, OWNER, || false, |_| Some(1)), Ok(()));
    expect_read(&e, r, 100, b"part one, part two, end");
    // Each close publishes what was written since the last; nothing written, nothing sent.
    assert_eq!(e.flush(w, CLOSER, OWNER, || false, |_| Some(1)), Ok(()));
    expect_errno(&e, r, Errno::EAGAIN);
    // A dying writer publishes nothing.
    write(&e, w, b"half").unwrap();
    assert_eq!(e.flush(w, CLOSER, OWNER, || true, |_| Some(1)), Ok(()));
    e.release(w);
    expect_errno(&e, r, Errno::EAGAIN);
}

#[test]
fn frame_close_refuses_a_message_over_the_limit_whole() {
    let e = engine_with(Limits { max_message: 10, memory: MIB });
    ctl(&e, ROOT, "frame close");
    let s = create(&e, ROOT, "s");
    let (r, w) = (open_reader(&e, s), open_writer(&e, s));
    assert_eq!(write(&e, w, b"123456"), Ok(6));
    assert_eq!(write(&e, w, b"789012"), Err(Errno::EFBIG));
    assert_eq!(write(&e, w, b"3"), Err(Errno::EFBIG), "the message stays refused");
    assert_eq!(e.flush(w, CLOSER, OWNER, || false, |_| Some(1)), Ok(()));
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!(write(&e, w, b"fresh"), Ok(5), "a close starts a new message");
    assert_eq!(e.flush(w, CLOSER, OWNER, || false, |_| Some(1)), Ok(()));
    expect_read(&e, r, 100, b"fresh");
}

#[test]
fn frame_close_buffers_count_against_the_ceiling_and_enospc_refuses_the_message() {
    let e = engine_with(Limits { max_message: 8 * MIB, memory: 8 * MIB });
    ctl(&e, ROOT, "frame close\nreplay all");
    let s = create(&e, ROOT, "s");
    let (w1, w2) = (open_writer(&e, s), open_writer(&e, s));
    let chunk = vec![b'z'; MIB as usize];
    for _ in 0..5 {
        assert_eq!(write(&e, w1, &chunk), Ok(chunk.len()));
    }
    assert!(e.usage().memory_used >= 5 * MIB, "the buffer is counted");
    assert_eq!(write(&e, w2, &chunk), Ok(chunk.len()));
    // Room for one more: the second fails and dooms w2's message, not w1's.
    let refused = (0..3).find(|_| write(&e, w2, &chunk).is_err());
    assert!(refused.is_some(), "8 MiB cannot hold 5 + 4 MiB");
    assert_eq!(write(&e, w2, b"more"), Err(Errno::ENOSPC), "the message stays refused");
    assert_eq!(e.flush(w2, CLOSER, OWNER, || false, |_| Some(1)), Ok(()));
    assert_eq!(
        e.flush(w1, CLOSER, OWNER, || false, |_| Some(1)),
        Ok(()),
        "an admitted message publishes at close"
    );
    let r = open_reader(&e, s);
    expect_read(&e, r, 8 * MIB as u32, &vec![b'z'; 5 * MIB as usize]);
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!(write(&e, w2, b"fresh"), Ok(5), "a close starts a new message");
}

#[test]
fn static_mode_reads_history_by_offset_with_an_end() {
    let e = engine();
    ctl(&e, ROOT, "replay all\ndata static");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"one\n", b"two\n", b"three\n"]);
    let (fh, kind) = e.open(s, true, false, OWNER).unwrap();
    assert_eq!(kind, OpenKind::Static);
    let read_at = |offset| read_static(&e, fh, offset, 5);
    assert_eq!(read_at(0), Ok(b"one\nt".to_vec()));
    assert_eq!(read_at(8), Ok(b"three".to_vec()));
    assert_eq!(read_at(14), Ok(Vec::new()), "end of file");
    publish(&e, s, &[b"four\n"]);
    assert_eq!(read_at(14), Ok(b"four\n".to_vec()), "writers keep appending");
    // A group in another mode is not affected.
    let g = mkdir(&e, ROOT, "g");
    ctl(&e, g, "data message");
    let t = create(&e, g, "t");
    assert_eq!(e.open(t, true, false, OWNER).unwrap().1, OpenKind::Stream);
}

#[test]
fn static_offsets_count_every_byte_ever_written_whatever_depth_drops() {
    let e = engine();
    ctl(&e, ROOT, "replay all\ndata static\ndepth 2");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"a1\n", b"b22\n", b"c333\n"]);
    // Every byte ever written counts: "a1\n" was dropped, the others keep their offsets.
    assert_eq!(e.getattr(s).unwrap().size, 12);
    let follower = open_reader(&e, s);
    assert_eq!(read_static(&e, follower, 3, 100), Ok(b"b22\nc333\n".to_vec()));
    assert_eq!(read_static(&e, follower, 12, 100), Ok(Vec::new()), "at the end");
    // A writer outruns it: what it would read next was dropped, so it reads on from the
    // oldest retained message, whole, and then from where that read ended.
    publish(&e, s, &[b"d4444\n", b"e55555\n", b"f666666\n"]);
    assert_eq!(e.getattr(s).unwrap().size, 33);
    assert_eq!(read_static(&e, follower, 12, 7), Ok(b"e55555\n".to_vec()));
    assert_eq!(read_static(&e, follower, 19, 100), Ok(b"f666666\n".to_vec()));
    assert_eq!(read_static(&e, follower, 27, 100), Ok(Vec::new()), "its end is the stream's");
    publish(&e, s, &[b"g\n"]);
    assert_eq!(read_static(&e, follower, 27, 100), Ok(b"g\n".to_vec()));
    // A new reader from the start reads the retained history, not the dropped head.
    let fresh = open_reader(&e, s);
    assert_eq!(read_static(&e, fresh, 0, 100), Ok(b"f666666\ng\n".to_vec()));
    assert_eq!(read_static(&e, fresh, 10, 100), Ok(Vec::new()), "and then its end");
    // A read at another offset (a seek) reads at that offset: the same bytes for good.
    assert_eq!(read_static(&e, fresh, 33, 2), Ok(b"g\n".to_vec()));
    assert_eq!(read_static(&e, fresh, 25, 3), Ok(b"f66".to_vec()));
    // Read there, the dropped head is a hole: zeros, then the retained bytes.
    assert_eq!(read_static(&e, fresh, 20, 8), Ok(b"\0\0\0\0\0f66".to_vec()));
    assert_eq!(read_static(&e, fresh, 2, 4), Ok(vec![0; 4]));
    // From the start again, it skips the hole.
    assert_eq!(read_static(&e, fresh, 0, 4), Ok(b"f666".to_vec()));
    // The page cache reads exactly by offset: the dropped head cannot be mapped.
    assert_eq!(e.read_pages(fresh, 27, 4096), Ok(b"66666\ng\n".to_vec()));
    assert_eq!(e.read_pages(fresh, 0, 4096), Err(Errno::ENODEV));
    // `clear` drops everything and moves no offset; order counts its bytes the same way.
    ctl(&e, ROOT, "clear");
    assert_eq!(e.getattr(s).unwrap().size, 35);
    assert_eq!(read_static(&e, fresh, 0, 100), Ok(Vec::new()));
    assert_eq!(e.getattr(order_ino(&e, ROOT)).unwrap().size, 14, "7 names of 2 bytes");
    publish(&e, s, &[b"h\n"]);
    assert_eq!(e.getattr(order_ino(&e, ROOT)).unwrap().size, 16, "and one more");
}

#[test]
fn stat_gives_no_size_to_a_stream_read_as_a_stream_and_its_history_read_statically() {
    let e = engine();
    ctl(&e, ROOT, "replay all");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"one\n", b"two\n"]);
    let order = order_ino(&e, ROOT);
    assert_eq!((e.getattr(s).unwrap().size, e.getattr(order).unwrap().size), (0, 0));
    assert_eq!((size(&e, s), size(&e, order)), (8, 4), "retained all the same");
    ctl(&e, ROOT, "data coalesce");
    assert_eq!(e.getattr(s).unwrap().size, 0);
    ctl(&e, ROOT, "data static");
    assert_eq!((e.getattr(s).unwrap().size, e.getattr(order).unwrap().size), (8, 4));
}

#[test]
fn page_cache_reads_serve_files_read_by_offset_and_leave_cursors_alone() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    publish(&e, s, &[b"hello"]);
    assert_eq!(e.read_pages(r, 0, 4096), Err(Errno::ENODEV), "a stream has no offsets");
    expect_read(&e, r, 100, b"hello");
    let c = e.open(ctl_ino(&e, ROOT), true, false, OWNER).unwrap().0;
    assert!(e.read_pages(c, 0, 4096).unwrap().starts_with(b"data message\n"), "ctl reads by offset");
    ctl(&e, ROOT, "replay all\ndata static");
    publish(&e, s, &[b"history"]);
    let fh = open_reader(&e, s);
    // Offsets count every byte ever written: "hello" (read and dropped) took the first five.
    assert_eq!(e.read_pages(fh, 7, 4096), Ok(b"story".to_vec()));
}

#[test]
fn frame_close_publishes_what_a_short_write_wrote() {
    let e = engine();
    ctl(&e, ROOT, "frame close");
    let s = create(&e, ROOT, "s");
    let (r, w) = (open_reader(&e, s), open_writer(&e, s));
    assert_eq!(write(&e, w, b"head "), Ok(5));
    // A write(2) of 2000 bytes stops after 1000: those were written.
    assert_eq!(write_part(&e, w, &[b'a'; 1000], 5, Some(2000)), Ok(1000));
    // A close by another process while the write(2) goes on leaves the message for later.
    assert_eq!(e.flush(w, CLOSER, OWNER, || false, |_| Some(1)), Ok(()));
    expect_errno(&e, r, Errno::EAGAIN);
    // Once the writer is out of it, a close publishes what arrived.
    assert_eq!(e.flush(w, CLOSER, OWNER, || false, |_| Some(2)), Ok(()));
    expect_read(&e, r, 4096, &[&b"head "[..], &[b'a'; 1000]].concat());
    // So does the writer's own close, and a dying writer's publishes nothing.
    assert_eq!(write_part(&e, w, &[b'b'; 1000], 0, Some(2000)), Ok(1000));
    assert_eq!(e.flush(w, 1, OWNER, || false, |_| Some(1)), Ok(()));
    expect_read(&e, r, 4096, &[b'b'; 1000]);
    assert_eq!(write_part(&e, w, &[b'c'; 1000], 0, Some(2000)), Ok(1000));
    assert_eq!(e.flush(w, 1, OWNER, || true, |_| Some(1)), Ok(()));
    expect_errno(&e, r, Errno::EAGAIN);
    assert_eq!(e.usage().memory_used, 0);
}

#[test]
fn a_non_blocking_write_one_message_admitted_with_a_reader_is_kept_when_it_leaves() {
    let e = engine();
    ctl(&e, ROOT, "write one");
    let s = create(&e, ROOT, "s");
    let (r, w) = (open_reader(&e, s), open_writer(&e, s));
    let written = |data: &[u8], offset: u64| {
        let slot: WriteSlot = Arc::new(Mutex::new(None));
        let target = slot.clone();
        let request = WriteRequest { data, writer: 1, offset, nonblock: true, pid: 0, uid: 0, gid: 0 };
        let ticket = e.write(
            w,
            &request,
            || Some(2000),
            |_| Some(1),
            Box::new(move |r| *target.lock().unwrap() = Some(r)),
        );
        assert_eq!(ticket, None, "a non-blocking write does not block");
        write_outcome(&slot)
    };
    assert_eq!(written(&[b'a'; 1000], 0), Some(Ok(())));
    e.release(r);
    assert_eq!(written(&[b'b'; 1000], 1000), Some(Ok(())));
    let r = open_reader(&e, s);
    expect_read(&e, r, 4096, &[&[b'a'; 1000][..], &[b'b'; 1000]].concat());
    expect_errno(&e, r, Errno::EAGAIN);
}
