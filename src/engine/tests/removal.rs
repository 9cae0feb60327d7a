//! Removal and rename: readers drain, replies after the tree lock.

use super::*;

#[test]
fn unlink_lets_readers_drain_then_read_end_of_file() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let r = open_reader(&e, s);
    let idle = open_reader(&e, s);
    let parked = open_reader(&e, s);
    let w = open_writer(&e, s);
    write(&e, w, b"one").unwrap();
    write(&e, w, b"two").unwrap();
    expect_read(&e, parked, 100, b"one");
    expect_read(&e, parked, 100, b"two");
    let (slot, ticket) = start_read(&e, parked, 100, ReadMode::Block);
    assert!(ticket.is_some());
    let polling = open_reader(&e, s); // replay off: it starts after "two"
    let (told, poller) = poll_counter();
    assert_eq!(e.poll(polling, Some(poller)), Ok(false));

    e.unlink(ROOT, b"s").unwrap();
    assert_eq!(taken(&slot), Some(Ok(Vec::new())), "a parked reader is released with EOF");
    assert_eq!(told.load(Ordering::SeqCst), 1, "a poller is told: EOF is readable");
    assert_eq!(e.poll(polling, None), Ok(true));
    expect_read(&e, polling, 100, b"");
    e.release(polling);
    assert_eq!(e.lookup(ROOT, b"s").map(|a| a.ino), Err(Errno::ENOENT));
    assert_eq!(names(&e, ROOT), [".", "..", "ctl", "order"]);

    expect_read(&e, r, 100, b"one");
    expect_read(&e, r, 100, b"two");
    expect_read(&e, r, 100, b"");
    expect_read(&e, r, 100, b"");
    assert_eq!(read_mode(&e, r, 100, ReadMode::Block), Ok(Vec::new()), "EOF does not park");
    let _ = idle;
    // Writing to the removed stream fails.
    assert_eq!(write(&e, w, b"three"), Err(Errno::EPIPE));
    expect_read(&e, idle, 100, b"one");
    expect_read(&e, idle, 100, b"two");
    expect_read(&e, idle, 100, b"");

    // Removing a stream and then releasing its handles returns its memory.
    for fh in [r, idle, parked, w] {
        e.release(fh);
    }
    assert_eq!(e.usage().memory_used, 0);
}

#[test]
fn unlink_after_a_parked_or_polling_reader_went_away() {
    let e = engine();
    for polling in [false, true] {
        let s = create(&e, ROOT, "s");
        let gone = open_reader(&e, s);
        let staying = open_reader(&e, s);
        if polling {
            assert_eq!(e.poll(gone, Some(Arc::new(|| {}))), Ok(false));
        } else {
            let (slot, ticket) = start_read(&e, gone, 100, ReadMode::Block);
            assert!(ticket.is_some());
            e.release(gone);
            assert_eq!(taken(&slot), Some(Ok(Vec::new())), "release ends a parked read");
        }
        e.release(gone);
        let (slot, _) = start_read(&e, staying, 100, ReadMode::Block);
        e.unlink(ROOT, b"s").unwrap();
        assert_eq!(taken(&slot), Some(Ok(Vec::new())));
        e.release(staying);
    }
    // The same for order, when its group goes.
    let g = mkdir(&e, ROOT, "g");
    let order = open_reader(&e, order_ino(&e, g));
    let (_slot, ticket) = start_read(&e, order, 100, ReadMode::Block);
    assert!(ticket.is_some());
    e.release(order);
    e.rmdir(ROOT, b"g").unwrap();
    assert_eq!(e.lookup(ROOT, b"g").map(|a| a.ino), Err(Errno::ENOENT));
}

#[test]
fn rmdir_removes_only_empty_groups() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    create(&e, g, "s");
    assert_eq!(e.rmdir(ROOT, b"g"), Err(Errno::ENOTEMPTY));
    let h = mkdir(&e, ROOT, "h");
    mkdir(&e, h, "sub");
    assert_eq!(e.rmdir(ROOT, b"h"), Err(Errno::ENOTEMPTY));
    assert!(e.lookup(ROOT, b"g").is_ok() && e.lookup(ROOT, b"h").is_ok());

    e.unlink(g, b"s").unwrap();
    e.rmdir(ROOT, b"g").unwrap();
    e.rmdir(h, b"sub").unwrap();
    e.rmdir(ROOT, b"h").unwrap();
    // Gone from the tree; served with no links until the kernel forgets it.
    assert_eq!(e.getattr(g).map(|a| a.nlink), Ok(0));
    e.forget(g, u64::MAX);
    assert_eq!(e.getattr(g).map(|a| a.ino), Err(Errno::ENOENT));
    assert_eq!(names(&e, ROOT), [".", "..", "ctl", "order"]);
    // Streams are not groups, nor the other way round.
    let s = create(&e, ROOT, "s");
    assert_eq!(e.rmdir(ROOT, b"s"), Err(Errno::ENOTDIR));
    mkdir(&e, ROOT, "d");
    assert_eq!(e.unlink(ROOT, b"d"), Err(Errno::EISDIR));
    assert_eq!(e.lookup(ROOT, b"s").unwrap().ino, s);
}

#[test]
fn rename_moves_a_stream_with_its_history_and_readers() {
    let e = engine();
    ctl(&e, ROOT, "replay all");
    let g1 = mkdir(&e, ROOT, "g1");
    let g2 = mkdir(&e, ROOT, "g2");
    let s = create(&e, g1, "s");
    let early = open_reader(&e, s);
    let w = open_writer(&e, s);
    write(&e, w, b"old").unwrap();
    let order1 = open_reader(&e, order_ino(&e, g1));
    let order2 = open_reader(&e, order_ino(&e, g2));
    expect_read(&e, order1, 100, b"s\n");

    e.rename(g1, b"s", g2, b"t", false).unwrap();
    assert_eq!(e.lookup(g1, b"s").map(|a| a.ino), Err(Errno::ENOENT));
    let moved = e.lookup(g2, b"t").unwrap();
    assert_eq!(moved.ino, s);
    assert_eq!(size(&e, s), 3);
    let fresh = open_reader(&e, s);
    expect_read(&e, fresh, 100, b"old");

    // Writes through a handle opened before the move land in the moved stream.
    write(&e, w, b"new").unwrap();
    expect_read(&e, early, 100, b"old");
    expect_read(&e, early, 100, b"new");
    expect_read(&e, fresh, 100, b"new");
    expect_read(&e, order2, 100, b"t\n");
    expect_errno(&e, order1, Errno::EAGAIN);

    // It now follows its new group's configuration.
    ctl(&e, g2, "depth 1");
    assert_eq!(size(&e, s), 3);
    ctl(&e, g1, "depth 0\nclear");
    assert_eq!(size(&e, s), 3, "the old group's clear no longer reaches it");
    ctl(&e, g2, "clear");
    assert_eq!(size(&e, s), 0);
}

#[test]
fn rename_of_a_group_within_itself_is_refused() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    let sub = mkdir(&e, g, "sub");
    let deeper = mkdir(&e, sub, "deeper");
    assert_eq!(e.rename(ROOT, b"g", g, b"x", false), Err(Errno::EINVAL));
    assert_eq!(e.rename(ROOT, b"g", sub, b"x", false), Err(Errno::EINVAL));
    assert_eq!(e.rename(ROOT, b"g", deeper, b"g", false), Err(Errno::EINVAL));
    assert_eq!(e.lookup(ROOT, b"g").unwrap().ino, g);
    assert_eq!(names(&e, sub), [".", "..", "deeper", "ctl", "order"]);
    // Moving a group elsewhere (and back up) is fine.
    e.rename(sub, b"deeper", ROOT, b"up", false).unwrap();
    assert_eq!(e.lookup(ROOT, b"up").unwrap().ino, deeper);
    e.rename(ROOT, b"g", deeper, b"g", false).unwrap();
    assert_eq!(e.lookup(deeper, b"g").unwrap().ino, g);
    assert_eq!(e.lookup(g, b"sub").unwrap().ino, sub);
}

#[test]
fn rename_over_a_stream_replaces_it() {
    let e = engine();
    ctl(&e, ROOT, "replay all");
    let a = create(&e, ROOT, "a");
    let b = create(&e, ROOT, "b");
    publish(&e, a, &[b"from a"]);
    publish(&e, b, &[b"from b"]);
    let old_b = open_reader(&e, b);

    assert_eq!(e.rename(ROOT, b"a", ROOT, b"b", true), Err(Errno::EEXIST));
    assert_eq!(e.lookup(ROOT, b"b").unwrap().ino, b);

    e.rename(ROOT, b"a", ROOT, b"b", false).unwrap();
    assert_eq!(e.lookup(ROOT, b"a").map(|x| x.ino), Err(Errno::ENOENT));
    assert_eq!(e.lookup(ROOT, b"b").unwrap().ino, a);
    assert_eq!(e.getattr(b).map(|x| x.nlink), Ok(0), "the replaced stream is no longer linked");
    e.forget(b, u64::MAX);
    assert_eq!(e.getattr(b).map(|x| x.ino), Err(Errno::ENOENT));
    assert_eq!(names(&e, ROOT), [".", "..", "b", "ctl", "order"]);
    let r = open_reader(&e, a);
    expect_read(&e, r, 100, b"from a");
    expect_errno(&e, r, Errno::EAGAIN);
    // The replaced stream's reader drains it and reads EOF.
    expect_read(&e, old_b, 100, b"from b");
    expect_read(&e, old_b, 100, b"");
    // Writes through the new name reach the moved stream and name it in order.
    let order = open_reader(&e, order_ino(&e, ROOT));
    let order_before = size(&e, order_ino(&e, ROOT));
    publish(&e, a, &[b"again"]);
    expect_read(&e, r, 100, b"again");
    assert_eq!(size(&e, order_ino(&e, ROOT)), order_before + 2);
    let _ = order;
}

/// Whether each callback found the tree's lock free, as one that needs the tree would.
type TreeFree = Arc<Mutex<Vec<bool>>>;

/// A callback that notes in `free` whether the tree could be read when it ran.
fn noting_tree_free<T>(e: &Arc<Engine>, free: &TreeFree) -> Box<dyn FnOnce(T) + Send> {
    let (e, free) = (e.clone(), free.clone());
    Box::new(move |_| {
        let readable = e.tree.try_read().is_some();
        free.lock().unwrap().push(readable);
    })
}

#[test]
fn replies_owed_by_removal_and_rename_are_sent_after_the_tree_lock_is_released() {
    let e = Arc::new(engine());
    let free = TreeFree::default();
    let park = |fh: u64| {
        let ticket = e.read(fh, 0, 100, ReadMode::Block, noting_tree_free(&e, &free));
        assert!(ticket.is_some(), "the read parked");
    };
    let all_free = |expected: usize, what: &str| {
        let seen = std::mem::take(&mut *free.lock().unwrap());
        assert_eq!(seen.len(), expected, "{what}: replies sent");
        assert!(
            seen.iter().all(|&f| f),
            "{what}: {} of {expected} replies sent under the tree's lock",
            seen.iter().filter(|&&f| !f).count()
        );
    };

    // unlink: more parked reads than the delivery helpers' threshold, so that some replies
    // go out from the helper threads.
    let s = create(&e, ROOT, "s");
    let readers: Vec<u64> = (0..100).map(|_| open_reader(&e, s)).collect();
    readers.iter().for_each(|&fh| park(fh));
    e.unlink(ROOT, b"s").unwrap();
    all_free(100, "unlink");

    // rmdir: the group's order readers get end-of-file.
    let g = mkdir(&e, ROOT, "g");
    park(open_reader(&e, order_ino(&e, g)));
    e.rmdir(ROOT, b"g").unwrap();
    all_free(1, "rmdir");

    // rename over a stream: the replaced stream's readers get end-of-file.
    create(&e, ROOT, "a");
    let b = create(&e, ROOT, "b");
    park(open_reader(&e, b));
    e.rename(ROOT, b"a", ROOT, b"b", false).unwrap();
    all_free(1, "rename over b");

    // rename into a group whose depth drops the message a blocked writer waits on.
    let (one, shallow) = (mkdir(&e, ROOT, "one"), mkdir(&e, ROOT, "shallow"));
    ctl(&e, one, "write one");
    ctl(&e, shallow, "depth 1");
    let m = create(&e, one, "m");
    let (w1, w2) = (open_writer(&e, m), open_writer(&e, m));
    let first =
        WriteRequest { data: b"first", writer: 1, offset: 0, nonblock: false, pid: 0, uid: 0, gid: 0 };
    assert!(e.write(w1, &first, || Some(5), |_| Some(1), noting_tree_free(&e, &free)).is_some());
    let (second, ticket) = start_write(&e, w2, b"second", false);
    assert!(ticket.is_some());
    e.rename(one, b"m", shallow, b"m", false).unwrap();
    all_free(1, "rename into a shallower group");
    assert_eq!(write_outcome(&second), None, "the kept message's writer still waits");
}
