//! Replay modes, depth, the memory ceiling: what a log keeps.

use super::*;

#[test]
fn replay_off_shows_a_new_reader_only_later_messages() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let early = open_reader(&e, s);
    publish(&e, s, &[b"before 1", b"before 2"]);
    let r = open_reader(&e, s);
    expect_errno(&e, r, Errno::EAGAIN);
    publish(&e, s, &[b"after"]);
    expect_read(&e, r, 100, b"after");
    expect_errno(&e, r, Errno::EAGAIN);
    // The earlier reader still has everything.
    expect_read(&e, early, 100, b"before 1");
    expect_read(&e, early, 100, b"before 2");
    expect_read(&e, early, 100, b"after");
}

#[test]
fn replay_last_shows_the_most_recent_message_then_new_ones() {
    let e = engine();
    ctl(&e, ROOT, "replay last");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"one", b"two", b"three"]);
    assert_eq!(size(&e, s), 5, "only the last message is retained");
    let r = open_reader(&e, s);
    expect_read(&e, r, 100, b"three");
    expect_errno(&e, r, Errno::EAGAIN);
    publish(&e, s, &[b"four"]);
    expect_read(&e, r, 100, b"four");
    let r2 = open_reader(&e, s);
    expect_read(&e, r2, 100, b"four");
    expect_errno(&e, r2, Errno::EAGAIN);

    // Older messages kept for a slow reader are not replayed to a new one.
    let slow = open_reader(&e, s);
    publish(&e, s, &[b"five", b"six", b"seven"]);
    assert_eq!(size(&e, s), 16, "the slow reader still needs four..seven");
    let r3 = open_reader(&e, s);
    expect_read(&e, r3, 100, b"seven");
    expect_errno(&e, r3, Errno::EAGAIN);
    expect_read(&e, slow, 100, b"four");
}

#[test]
fn replay_all_shows_every_retained_message() {
    let e = engine();
    ctl(&e, ROOT, "replay all");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"one", b"two", b"three"]);
    assert_eq!(size(&e, s), 11);
    for _ in 0..2 {
        let r = open_reader(&e, s);
        expect_read(&e, r, 100, b"one");
        expect_read(&e, r, 100, b"two");
        expect_read(&e, r, 100, b"three");
        expect_errno(&e, r, Errno::EAGAIN);
    }
    assert_eq!(size(&e, s), 11, "reading does not consume under replay all");
    // The `on` spelling of mq(4) means all.
    let g = mkdir(&e, ROOT, "g");
    ctl(&e, g, "replay off");
    ctl(&e, g, "replay on");
    assert!(ctl_read(&e, g).contains("replay all\n"));
}

#[test]
fn depth_in_messages_keeps_the_newest() {
    let e = engine();
    ctl(&e, ROOT, "replay all\ndepth 3");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"m1", b"m2", b"m3", b"m4", b"m5"]);
    assert_eq!(size(&e, s), 6, "three 2-byte messages");
    let r = open_reader(&e, s);
    expect_read(&e, r, 100, b"m3");
    expect_read(&e, r, 100, b"m4");
    expect_read(&e, r, 100, b"m5");
    expect_errno(&e, r, Errno::EAGAIN);

    // Lowering the depth trims what is already there.
    ctl(&e, ROOT, "depth 1");
    assert_eq!(size(&e, s), 2);
    let r = open_reader(&e, s);
    expect_read(&e, r, 100, b"m5");
    expect_errno(&e, r, Errno::EAGAIN);
}

#[test]
fn depth_in_bytes_bounds_retained_payload() {
    let e = engine();
    ctl(&e, ROOT, "replay all\ndepth 10B");
    assert!(ctl_read(&e, ROOT).contains("depth 10B\n"));
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"aaaa", b"bbbb", b"cccc"]);
    assert_eq!(size(&e, s), 8);
    let r = open_reader(&e, s);
    expect_read(&e, r, 100, b"bbbb");
    expect_read(&e, r, 100, b"cccc");
    expect_errno(&e, r, Errno::EAGAIN);
    publish(&e, s, &[b"dd"]);
    assert_eq!(size(&e, s), 10, "exactly the depth fits");
    publish(&e, s, &[b"e"]);
    assert_eq!(size(&e, s), 7, "cccc, dd, e");
    let r = open_reader(&e, s);
    expect_read(&e, r, 100, b"cccc");
}

#[test]
fn replay_off_drops_a_message_once_every_reader_has_it() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    // With no reader at all nothing is kept.
    publish(&e, s, &[b"nobody"]);
    assert_eq!(size(&e, s), 0);

    let r1 = open_reader(&e, s);
    let r2 = open_reader(&e, s);
    publish(&e, s, &[b"abc", b"defg"]);
    assert_eq!(size(&e, s), 7);
    expect_read(&e, r1, 100, b"abc");
    expect_read(&e, r1, 100, b"defg");
    assert_eq!(size(&e, s), 7, "r2 still needs both");
    expect_read(&e, r2, 100, b"abc");
    assert_eq!(size(&e, s), 4, "only defg is still needed");
    expect_read(&e, r2, 2, b"de");
    assert_eq!(size(&e, s), 4, "a partly read message is still needed");
    expect_read(&e, r2, 2, b"fg");
    assert_eq!(size(&e, s), 0);
}

#[test]
fn a_reader_overrun_by_depth_gets_one_enobufs_then_the_oldest_retained() {
    let e = engine();
    ctl(&e, ROOT, "depth 3");
    let s = create(&e, ROOT, "s");
    let slow = open_reader(&e, s);
    let fast = open_reader(&e, s);
    let w = open_writer(&e, s);
    for i in 0..10 {
        write(&e, w, format!("m{i}").as_bytes()).unwrap();
        expect_read(&e, fast, 100, format!("m{i}").as_bytes());
    }
    assert_eq!(size(&e, s), 6, "depth keeps three for the slow reader");
    expect_errno(&e, slow, Errno::ENOBUFS);
    expect_read(&e, slow, 100, b"m7");
    expect_read(&e, slow, 100, b"m8");
    expect_read(&e, slow, 100, b"m9");
    expect_errno(&e, slow, Errno::EAGAIN);

    // Overrun in the middle of a message: the same, once.
    write(&e, w, b"partial message").unwrap();
    expect_read(&e, slow, 7, b"partial");
    for i in 0..5 {
        write(&e, w, format!("n{i}").as_bytes()).unwrap();
    }
    expect_errno(&e, slow, Errno::ENOBUFS);
    expect_read(&e, slow, 100, b"n2");
    expect_read(&e, slow, 100, b"n3");
    expect_read(&e, slow, 100, b"n4");
    expect_errno(&e, slow, Errno::EAGAIN);
}

#[test]
fn the_memory_ceiling_refuses_writes_until_memory_is_freed() {
    let limit = 64 << 10;
    let e = engine_with(Limits { max_message: MIB, memory: limit });
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let w = open_writer(&e, s);
    let message = |i: usize| vec![(i % 251) as u8; 1000];

    let mut written = 0;
    let refused = loop {
        assert!(written < 1000, "the ceiling never refused a write");
        match write(&e, w, &message(written)) {
            Ok(_) => written += 1,
            Err(errno) => break errno,
        }
        let usage = e.usage();
        assert!(
            usage.memory_used <= usage.memory_limit,
            "{} bytes used over a ceiling of {} after {written} messages",
            usage.memory_used,
            usage.memory_limit
        );
    };
    assert_eq!(refused, Errno::ENOSPC);
    assert!(written >= 30, "only {written} KB-sized messages fit in 64 KiB");
    assert_eq!(size(&e, s), written as u64 * 1000, "the refused write published nothing");
    // Still refused, whole or in parts.
    assert_eq!(write(&e, w, &message(0)), Err(Errno::ENOSPC));
    assert_eq!(write_part(&e, w, &message(0), 0, Some(2000)), Err(Errno::ENOSPC));

    // Readers still get everything retained.
    for i in 0..written {
        expect_read(&e, r, 4096, &message(i));
    }
    expect_errno(&e, r, Errno::EAGAIN);
    // Read under replay off, it is all freed, and writes succeed again.
    assert_eq!(size(&e, s), 0);
    assert_eq!(e.usage().memory_used, 0);
    assert_eq!(write(&e, w, b"room again"), Ok(10));
    expect_read(&e, r, 100, b"room again");

    // Filled again under replay all, `clear` frees it.
    ctl(&e, ROOT, "replay all");
    let mut filled = false;
    for i in 0..1000 {
        if write(&e, w, &message(i)) == Err(Errno::ENOSPC) {
            filled = true;
            break;
        }
        // `order` keeps its lines too now, and they count against the same ceiling.
        assert!(e.usage().memory_used <= limit, "{} used after {i} more", e.usage().memory_used);
    }
    assert!(filled);
    assert!(size(&e, order_ino(&e, ROOT)) > 0);
    ctl(&e, ROOT, "clear");
    assert_eq!(size(&e, s), 0);
    assert_eq!(e.usage().memory_used, 0);
    assert_eq!(write(&e, w, b"after clear"), Ok(11));
}
