//! ctl: reading the configuration and status, writing it all or nothing, clear.

use super::*;

#[test]
fn ctl_reads_configuration_and_status() {
    let e = engine();
    let text = ctl_read(&e, ROOT);
    for line in ["data message\n", "replay off\n", "depth 0\n"] {
        assert!(text.contains(line), "{line:?} missing from {text:?}");
    }
    assert!(text.lines().any(|line| line.starts_with("# ")), "{text}");
    assert_eq!(status(&text, "streams"), 0);
    assert_eq!(status(&text, "readers"), 0);
    assert_eq!(status(&text, "messages"), 0);
    assert_eq!(status(&text, "bytes"), 0);

    let g = mkdir(&e, ROOT, "g");
    ctl(&e, g, "replay all");
    let a = create(&e, g, "a");
    let b = create(&e, g, "b");
    mkdir(&e, g, "sub");
    let sub_stream = create(&e, e.lookup(g, b"sub").unwrap().ino, "c");
    let _readers = [open_reader(&e, a), open_reader(&e, a), open_reader(&e, b)];
    let _elsewhere = open_reader(&e, sub_stream);
    publish(&e, a, &[b"abc", b"12345"]);
    publish(&e, b, &[b"de"]);
    publish(&e, sub_stream, &[b"not counted here"]);
    let text = ctl_read(&e, g);
    assert_eq!(status(&text, "streams"), 2, "{text}");
    assert_eq!(status(&text, "groups"), 1, "{text}");
    assert_eq!(status(&text, "readers"), 3, "{text}");
    assert_eq!(status(&text, "messages"), 3, "{text}");
    assert_eq!(status(&text, "bytes"), 10, "{text}");

    // An open ctl reads by offset, as a file.
    let (fh, _) = e.open(ctl_ino(&e, g), true, false, OWNER).unwrap();
    let whole = text.as_bytes();
    let (slot, _) = start_read(&e, fh, 5, ReadMode::Block);
    assert_eq!(taken(&slot), Some(Ok(whole[..5].to_vec())));
    let tail = Arc::new(Mutex::new(None));
    let target = tail.clone();
    e.read(fh, 5, 4096, ReadMode::Block, Box::new(move |r| *target.lock().unwrap() = Some(r)));
    assert_eq!(
        tail.lock().unwrap().take().map(|r| r.map(|bytes| bytes.to_vec())),
        Some(Ok(whole[5..].to_vec()))
    );
    e.release(fh);
}

#[test]
fn writing_back_what_ctl_reads_changes_nothing() {
    let e = engine();
    ctl(&e, ROOT, "data coalesce\nreplay last\ndepth 64K");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"kept"]);
    let before = ctl_read(&e, ROOT);
    assert!(before.contains("depth 64K\n"), "{before}");
    ctl(&e, ROOT, &before);
    assert_eq!(ctl_read(&e, ROOT), before);
    assert_eq!(size(&e, s), 4, "history untouched");
    let r = open_reader(&e, s);
    expect_read(&e, r, 100, b"kept");
}

#[test]
fn a_bad_ctl_write_is_refused_whole() {
    let e = engine();
    let before = ctl_read(&e, ROOT);
    for bad in [
        "frobnicate",
        "replay sometimes",
        "data stream",
        "depth -1",
        "depth 12Q",
        "depth",
        "clear now",
        "replay all\ndepth 5\ndata coalesce\nbogus line",
        "replay all\ndepth five",
    ] {
        assert_eq!(ctl_write(&e, ROOT, bad), Err(Errno::EINVAL), "{bad:?}");
        let after = ctl_read(&e, ROOT);
        let error = after.strip_prefix(&before).unwrap_or_else(|| panic!("{bad:?} changed something"));
        assert!(error.starts_with("# error: line ") && error.lines().count() == 1, "{error:?}");
    }
    // A refused write that includes `clear` clears nothing.
    ctl(&e, ROOT, "replay all");
    let s = create(&e, ROOT, "s");
    publish(&e, s, &[b"keep me"]);
    assert_eq!(ctl_write(&e, ROOT, "clear\nnonsense"), Err(Errno::EINVAL));
    assert_eq!(size(&e, s), 7);
    // Comments and blank lines are fine.
    ctl(&e, ROOT, "\n# a comment\n  \ndepth 2\n");
    assert!(ctl_read(&e, ROOT).contains("depth 2\n"));
}

#[test]
fn a_refused_ctl_write_is_told_to_its_writer_on_its_next_reads_of_ctl() {
    let e = engine();
    let other = Caller { uid: 1000, gid: 1000 };
    let open_ctl = |caller, read, write| e.open(ctl_ino(&e, ROOT), read, write, caller).unwrap().0;
    let read_all = |fh| String::from_utf8(read_static(&e, fh, 0, 65536).unwrap()).unwrap();
    let clean = ctl_read(&e, ROOT);
    assert_eq!(ctl_write(&e, ROOT, "depth 3\nbogus\n"), Err(Errno::EINVAL));
    let told = format!("{clean}# error: line 2: unknown command \"bogus\"\n");
    assert_eq!(ctl_read(&e, ROOT), told, "the writer's next open");
    assert_eq!(ctl_read(&e, ROOT), told, "and every one until its next ctl write");
    // Another user's reads do not show it.
    let theirs = open_ctl(other, true, false);
    assert_eq!(read_all(theirs), clean);
    // What ctl printed, error included, writes back: the error line is a comment.
    ctl(&e, ROOT, &told);
    assert_eq!(ctl_read(&e, ROOT), clean, "a successful write clears the writer's error");
    // Through a file open for reading and writing, the same file's reads end with it too.
    let both = open_ctl(other, true, true);
    assert_eq!(read_all(both), clean);
    assert_eq!(write(&e, both, b"replay never\n"), Err(Errno::EINVAL));
    let reason = "# error: line 1: replay takes off, last or all, not \"never\"\n";
    assert_eq!(read_all(both), format!("{clean}{reason}"));
    // Refusals through one file replace its comment: they cannot grow it.
    for _ in 0..1000 {
        assert_eq!(write(&e, both, b"replay never\n"), Err(Errno::EINVAL));
    }
    assert_eq!(read_all(both), format!("{clean}{reason}"), "one comment, however many refusals");
    assert_eq!(write(&e, both, b"replay off\n"), Ok(11));
    assert_eq!(read_all(both), clean, "an applied write clears the file's comment too");
    assert_eq!(write(&e, both, b"replay never\n"), Err(Errno::EINVAL));
    assert_eq!(ctl_read(&e, ROOT), clean, "the owner did nothing wrong");
    let again = open_ctl(other, true, false);
    assert_eq!(read_all(again), format!("{clean}{reason}"), "the other user's next open");
    // A write too long to apply is refused the same way.
    let huge = "#".repeat(CTL_MAX as usize + 1);
    assert_eq!(ctl_write(&e, ROOT, &huge), Err(Errno::EINVAL));
    assert!(ctl_read(&e, ROOT).ends_with("# error: a write(2) longer than 1048576 bytes is refused\n"));
    for fh in [theirs, both, again] {
        e.release(fh);
    }
}

#[test]
fn clear_empties_every_stream_of_the_group_only() {
    let e = engine();
    ctl(&e, ROOT, "replay all");
    let g = mkdir(&e, ROOT, "g");
    let a = create(&e, g, "a");
    let b = create(&e, g, "b");
    let sub = mkdir(&e, g, "sub");
    let c = create(&e, sub, "c");
    let outside = create(&e, ROOT, "outside");
    for s in [a, b, c, outside] {
        publish(&e, s, &[b"history", b"more"]);
    }
    let caught_up = open_reader(&e, a);
    expect_read(&e, caught_up, 100, b"history");
    expect_read(&e, caught_up, 100, b"more");

    ctl(&e, g, "clear");
    assert_eq!(size(&e, a), 0);
    assert_eq!(size(&e, b), 0);
    assert_eq!(size(&e, order_ino(&e, g)), 0, "order is history too");
    assert_eq!(size(&e, c), 11, "a subgroup's streams are not the group's");
    assert_eq!(size(&e, outside), 11);
    let text = ctl_read(&e, g);
    assert_eq!(status(&text, "messages"), 0, "{text}");
    assert_eq!(status(&text, "bytes"), 0, "{text}");
    assert!(text.contains("replay all\n"), "clear keeps the configuration");

    let r = open_reader(&e, b);
    expect_errno(&e, r, Errno::EAGAIN);
    // The streams go on: new messages reach old and new readers.
    publish(&e, a, &[b"fresh"]);
    expect_read(&e, caught_up, 100, b"fresh");
    let r = open_reader(&e, a);
    expect_read(&e, r, 100, b"fresh");
    expect_errno(&e, r, Errno::EAGAIN);
}
