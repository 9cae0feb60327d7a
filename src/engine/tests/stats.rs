//! A stream's numbers (`Engine::stream_stats`): readers, backlog, messages, bytes; none for
//! other nodes.

use super::*;

#[test]
fn a_streams_numbers_follow_its_readers_and_history() {
    let e = engine();
    ctl(&e, ROOT, "replay all");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"one\n", b"two\n"]);
    let stats = e.stream_stats(s).unwrap();
    assert_eq!(
        (stats.readers, stats.backlog, stats.messages, stats.bytes),
        (0, 0, 2, 8),
        "no readers, no backlog"
    );
    let fast = open_reader(&e, s);
    let slow = open_reader(&e, s);
    publish(&e, s, &[b"three\n"]);
    expect_read(&e, fast, 4096, b"one\n");
    expect_read(&e, fast, 4096, b"two\n");
    let stats = e.stream_stats(s).unwrap();
    assert_eq!(
        (stats.readers, stats.backlog, stats.messages, stats.bytes),
        (2, 3, 3, 14),
        "the slowest reader's"
    );
    expect_read(&e, slow, 4096, b"one\n");
    assert_eq!(e.stream_stats(s).unwrap().backlog, 2);
    e.release(slow);
    let stats = e.stream_stats(s).unwrap();
    assert_eq!((stats.readers, stats.backlog), (1, 1), "the fast reader is now the slowest");
    assert_eq!((stats.in_flight, stats.redelivered, stats.dead), (0, 0, 0), "a fan-out stream is no queue");
}

#[test]
fn a_reader_behind_dropped_history_counts_only_what_is_retained() {
    let e = engine();
    ctl(&e, ROOT, "depth 2");
    let s = create(&e, ROOT, "s");
    let _reader = open_reader(&e, s);
    publish(&e, s, &[b"1", b"2", b"3", b"4"]);
    let stats = e.stream_stats(s).unwrap();
    assert_eq!((stats.messages, stats.backlog), (2, 2));
}

#[test]
fn groups_ctl_and_order_have_no_numbers() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    for ino in [g, ctl_ino(&e, g), order_ino(&e, g)] {
        assert_eq!(e.stream_stats(ino), Err(Errno::ENODATA), "inode {ino:#x}");
    }
    assert_eq!(e.stream_stats(g + 1000), Err(Errno::ENOENT), "a node that does not exist");
}
