//! The namespace: groups, streams, reserved names, listings, removed nodes, metadata.

use super::*;

#[test]
fn root_lists_dot_entries_first_and_ctl_order_last() {
    let e = engine();
    assert_eq!(names(&e, ROOT), [".", "..", "ctl", "order"]);
    create(&e, ROOT, "zeta");
    mkdir(&e, ROOT, "alpha");
    create(&e, ROOT, "mid");
    assert_eq!(names(&e, ROOT), [".", "..", "zeta", "alpha", "mid", "ctl", "order"], "in creation order");

    let entries = listing(&e, ROOT);
    assert_eq!(entries[0].ino, ROOT);
    assert_eq!(entries[3].kind, Kind::Directory, "alpha is a group");
    assert_eq!(entries[4].kind, Kind::File, "mid is a stream");
    assert_eq!(entries[5].ino, ctl_ino(&e, ROOT));
    assert_eq!(entries[6].ino, order_ino(&e, ROOT));
    assert_eq!(entries[5].kind, Kind::File);
    assert_eq!(entries[6].kind, Kind::File);
    for entry in &entries[2..] {
        let looked_up = e.lookup(ROOT, &entry.name).unwrap();
        assert_eq!(looked_up.ino, entry.ino);
        assert_eq!(looked_up.kind, entry.kind);
    }
}

#[test]
fn mkdir_copies_the_parents_configuration() {
    let e = engine();
    ctl(&e, ROOT, "data coalesce\nreplay all\ndepth 7\n");
    let child = mkdir(&e, ROOT, "child");
    let text = ctl_read(&e, child);
    assert!(text.contains("data coalesce\n"), "{text}");
    assert!(text.contains("replay all\n"), "{text}");
    assert!(text.contains("depth 7\n"), "{text}");

    // A copy, not a link: changing the child leaves the parent alone, and vice versa.
    ctl(&e, child, "replay last");
    assert!(ctl_read(&e, ROOT).contains("replay all\n"));
    ctl(&e, ROOT, "depth 0");
    assert!(ctl_read(&e, child).contains("depth 7\n"));

    // The grandchild copies the child as it is now.
    let grandchild = mkdir(&e, child, "grandchild");
    let text = ctl_read(&e, grandchild);
    assert!(text.contains("replay last\n") && text.contains("depth 7\n"), "{text}");

    // And the configuration governs streams created there: replay all keeps history.
    let s = create(&e, grandchild, "s");
    publish(&e, s, &[b"one", b"two", b"three"]);
    let r = open_reader(&e, s);
    // replay last: only the most recent.
    expect_read(&e, r, 100, b"three");
}

#[test]
fn reserved_names_cannot_be_created() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    for parent in [ROOT, g] {
        for name in [b"ctl".as_slice(), b"order"] {
            assert_eq!(e.create(parent, name, 0o644, OWNER).map(|a| a.ino), Err(Errno::EEXIST));
            assert_eq!(e.mkdir(parent, name, 0o755, OWNER).map(|a| a.ino), Err(Errno::EEXIST));
        }
    }
    // Ordinary duplicates are EEXIST too.
    create(&e, g, "s");
    assert_eq!(e.create(g, b"s", 0o644, OWNER).map(|a| a.ino), Err(Errno::EEXIST));
    assert_eq!(e.mkdir(g, b"s", 0o755, OWNER).map(|a| a.ino), Err(Errno::EEXIST));
    assert_eq!(names(&e, g), [".", "..", "s", "ctl", "order"]);
}

#[test]
fn unlinking_ctl_or_order_is_refused_unless_the_group_is_empty() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    let s = create(&e, g, "s");
    for name in [b"ctl".as_slice(), b"order"] {
        assert_eq!(e.unlink(g, name), Err(Errno::EPERM));
    }
    // A group holding only a subgroup is not empty either.
    let h = mkdir(&e, ROOT, "h");
    mkdir(&e, h, "sub");
    assert_eq!(e.unlink(h, b"ctl"), Err(Errno::EPERM));

    // Empty the group: now removing them is accepted and changes nothing.
    let _ = s;
    e.unlink(g, b"s").unwrap();
    let ctl_before = ctl_ino(&e, g);
    for name in [b"ctl".as_slice(), b"order"] {
        assert_eq!(e.unlink(g, name), Ok(()));
    }
    assert_eq!(ctl_ino(&e, g), ctl_before);
    assert!(e.lookup(g, b"order").is_ok());
    assert_eq!(names(&e, g), [".", "..", "ctl", "order"]);
    // ctl still works.
    ctl(&e, g, "replay all");
    assert!(ctl_read(&e, g).contains("replay all\n"));
    // And the group can now be removed (the `rm -r` sequence).
    e.rmdir(ROOT, b"g").unwrap();
    assert_eq!(e.lookup(ROOT, b"g").map(|a| a.ino), Err(Errno::ENOENT));
}

#[test]
fn renaming_ctl_or_order_is_refused() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    create(&e, g, "s");
    for reserved in [b"ctl".as_slice(), b"order"] {
        assert_eq!(e.rename(g, reserved, g, b"other", false), Err(Errno::EPERM));
        assert_eq!(e.rename(g, reserved, ROOT, b"other", false), Err(Errno::EPERM));
        assert_eq!(e.rename(g, b"s", g, reserved, false), Err(Errno::EPERM));
        assert_eq!(e.rename(ROOT, b"g", ROOT, reserved, false), Err(Errno::EPERM));
    }
    assert!(e.lookup(g, b"s").is_ok(), "the stream stayed where it was");
    assert!(e.lookup(ROOT, b"g").is_ok());
    assert_eq!(names(&e, g), [".", "..", "s", "ctl", "order"]);
}

#[test]
fn names_longer_than_255_bytes_are_refused() {
    let e = engine();
    let long = vec![b'x'; 256];
    let max = vec![b'y'; 255];
    assert_eq!(e.create(ROOT, &long, 0o644, OWNER).map(|a| a.ino), Err(Errno::ENAMETOOLONG));
    assert_eq!(e.mkdir(ROOT, &long, 0o755, OWNER).map(|a| a.ino), Err(Errno::ENAMETOOLONG));
    assert_eq!(names(&e, ROOT).len(), 4, "nothing was created");

    let s = e.create(ROOT, &max, 0o644, OWNER).unwrap().ino;
    assert_eq!(e.lookup(ROOT, &max).unwrap().ino, s);
    let g = e.mkdir(ROOT, &max[..254], 0o755, OWNER).unwrap().ino;
    assert_eq!(e.lookup(ROOT, &max[..254]).unwrap().kind, Kind::Directory);

    // Renaming to a too-long name is refused and leaves the stream in place.
    assert_eq!(e.rename(ROOT, &max, g, &long, false), Err(Errno::ENAMETOOLONG));
    assert_eq!(e.lookup(ROOT, &max).unwrap().ino, s);
    e.rename(ROOT, &max, g, &max, false).unwrap();
    assert_eq!(e.lookup(g, &max).unwrap().ino, s);
}

#[test]
fn groups_nest() {
    let e = engine();
    let a = mkdir(&e, ROOT, "a");
    let b = mkdir(&e, a, "b");
    let c = mkdir(&e, b, "c");
    let s = create(&e, c, "deep");
    assert_eq!(e.lookup(ROOT, b"a").unwrap().ino, a);
    assert_eq!(e.lookup(a, b"b").unwrap().ino, b);
    assert_eq!(e.lookup(b, b"c").unwrap().ino, c);
    assert_eq!(e.lookup(c, b"deep").unwrap().ino, s);
    assert_eq!(e.lookup(a, b"deep").map(|a| a.ino), Err(Errno::ENOENT));
    assert_eq!(names(&e, b), [".", "..", "c", "ctl", "order"]);
    let entries = listing(&e, c);
    assert_eq!(entries[1].ino, b, "`..` of c is b");
    assert_eq!(e.getattr(a).unwrap().kind, Kind::Directory);
    // Each nested group has its own ctl and order.
    let ctls = [ROOT, a, b, c].map(|g| ctl_ino(&e, g));
    for i in 0..ctls.len() {
        for j in i + 1..ctls.len() {
            assert_ne!(ctls[i], ctls[j]);
        }
    }
    // A stream is not a group.
    assert_eq!(e.create(s, b"x", 0o644, OWNER).map(|a| a.ino), Err(Errno::ENOTDIR));
    // Data flows at depth.
    let r = open_reader(&e, s);
    publish(&e, s, &[b"down here"]);
    expect_read(&e, r, 100, b"down here");
}

#[test]
fn a_listing_resumes_after_its_cookie_whatever_was_removed_meanwhile() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    for i in 0..100 {
        create(&e, g, &format!("s{i}"));
    }
    // Read in batches of 7, removing everything listed before reading on, as `rm -r` does.
    let mut offset = 0;
    let mut seen = Vec::new();
    loop {
        let batch = listing_from(&e, g, offset, 7);
        let Some(last) = batch.last() else { break };
        offset = last.next;
        for entry in &batch {
            let name = String::from_utf8(entry.name.clone()).unwrap();
            if name.starts_with('s') {
                e.unlink(g, &entry.name).unwrap();
            }
            seen.push(name);
        }
    }
    let expect: Vec<String> = [".", ".."]
        .into_iter()
        .map(String::from)
        .chain((0..100).map(|i| format!("s{i}")))
        .chain(["ctl", "order"].map(String::from))
        .collect();
    assert_eq!(seen, expect, "every entry once, in creation order, ctl and order last");
    assert_eq!(names(&e, g), [".", "..", "ctl", "order"]);
    // A listing resumed from any cookie starts right after that entry.
    let a = create(&e, g, "a");
    create(&e, g, "b");
    let from_a = listing_from(&e, g, listing(&e, g)[2].next, 1);
    assert_eq!((listing(&e, g)[2].ino, from_a[0].name.as_slice()), (a, b"b".as_slice()));
}

#[test]
fn a_removed_node_the_kernel_knows_keeps_its_metadata_with_no_links() {
    let e = engine();
    let caller = Caller { uid: 1000, gid: 100 };
    let g = e.mkdir(ROOT, b"g", 0o750, caller).unwrap().ino;
    let s = e.create(g, b"s", 0o640, caller).unwrap().ino;
    e.lookup(g, b"s").unwrap(); // the kernel looks it up again: it now holds two lookups
    let w = open_writer(&e, s);
    e.unlink(g, b"s").unwrap();
    let attr = e.getattr(s).unwrap();
    assert_eq!((attr.nlink, attr.perm, attr.uid, attr.gid), (0, 0o640, 1000, 100));
    let changed = e.setattr(s, SetAttr { perm: Some(0o600), uid: Some(7), ..SetAttr::default() }).unwrap();
    assert_eq!((changed.nlink, changed.perm, changed.uid, changed.gid), (0, 0o600, 7, 100));
    assert_eq!(write(&e, w, b"x"), Err(Errno::EPIPE), "writing to it still fails");

    e.rmdir(ROOT, b"g").unwrap();
    let attr = e.getattr(g).unwrap();
    assert_eq!((attr.kind, attr.nlink, attr.perm, attr.uid), (Kind::Directory, 0, 0o750, 1000));
    assert_eq!(e.setattr(g, SetAttr { gid: Some(5), ..SetAttr::default() }).unwrap().gid, 5);
    assert_eq!(names(&e, g), [".", ".."], "a removed group lists only itself and its parent");
    assert_eq!(e.create(g, b"new", 0o644, OWNER).map(|a| a.ino), Err(Errno::ENOENT));
    assert_eq!(e.mkdir(g, b"new", 0o755, OWNER).map(|a| a.ino), Err(Errno::ENOENT));
    assert_eq!(e.lookup(g, b"ctl").map(|a| a.ino), Err(Errno::ENOENT));
    assert_eq!(e.rename(ROOT, b"x", g, b"y", false), Err(Errno::ENOENT));
    let moved = create(&e, ROOT, "m");
    assert_eq!(e.rename(ROOT, b"m", g, b"m", false), Err(Errno::ENOENT));
    assert_eq!(e.lookup(ROOT, b"m").unwrap().ino, moved);

    // Once the kernel has forgotten every lookup of it, it is gone; a lookup it still holds
    // keeps it.
    e.release(w);
    e.forget(s, 1);
    assert_eq!(e.getattr(s).unwrap().nlink, 0, "one lookup of it is still held");
    e.forget(s, 1);
    assert_eq!(e.getattr(s).map(|a| a.ino), Err(Errno::ENOENT));
    e.forget(g, u64::MAX);
    assert_eq!(e.getattr(g).map(|a| a.ino), Err(Errno::ENOENT));
    assert_eq!(e.usage().nodes, 2, "the root and m");
}

#[test]
fn a_node_the_kernel_does_not_know_goes_at_once() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    e.forget(s, 1);
    assert_eq!(e.getattr(s).unwrap().nlink, 1, "forgetting a linked node keeps it");
    e.unlink(ROOT, b"s").unwrap();
    assert_eq!(e.getattr(s).map(|a| a.ino), Err(Errno::ENOENT));
}

#[test]
fn names_with_a_newline_are_refused() {
    let e = engine();
    create(&e, ROOT, "a");
    assert_eq!(e.create(ROOT, b"a\nb", 0o644, OWNER).map(|a| a.ino), Err(Errno::EINVAL));
    assert_eq!(e.mkdir(ROOT, b"\n", 0o755, OWNER).map(|a| a.ino), Err(Errno::EINVAL));
    assert_eq!(e.rename(ROOT, b"a", ROOT, b"a\n", false), Err(Errno::EINVAL));
    assert_eq!(e.lookup(ROOT, b"a\nb").map(|a| a.ino), Err(Errno::ENOENT), "no such name can exist");
    assert_eq!(names(&e, ROOT), [".", "..", "a", "ctl", "order"]);
}

#[test]
fn create_and_mkdir_take_owner_and_mode_from_the_caller() {
    let e = engine();
    let caller = Caller { uid: 1000, gid: 100 };
    let s = e.create(ROOT, b"s", 0o640, caller).unwrap();
    assert_eq!((s.kind, s.perm, s.uid, s.gid, s.size), (Kind::File, 0o640, 1000, 100, 0));
    let g = e.mkdir(ROOT, b"g", 0o750, Caller { uid: 7, gid: 8 }).unwrap();
    assert_eq!((g.kind, g.perm, g.uid, g.gid), (Kind::Directory, 0o750, 7, 8));
    assert_eq!(e.getattr(s.ino).unwrap().perm, 0o640);
    assert_eq!(e.lookup(ROOT, b"g").unwrap().uid, 7);
}

#[test]
fn setattr_changes_mode_and_owner() {
    let e = engine();
    let s = create(&e, ROOT, "s");
    let g = mkdir(&e, ROOT, "g");
    let changed = e.setattr(s, SetAttr { perm: Some(0o600), ..SetAttr::default() }).unwrap();
    assert_eq!(changed.perm, 0o600);
    let changed = e.setattr(s, SetAttr { uid: Some(42), gid: Some(43), ..SetAttr::default() }).unwrap();
    assert_eq!((changed.perm, changed.uid, changed.gid), (0o600, 42, 43));
    let attr = e.getattr(s).unwrap();
    assert_eq!((attr.perm, attr.uid, attr.gid), (0o600, 42, 43));

    e.setattr(g, SetAttr { perm: Some(0o700), gid: Some(5), ..SetAttr::default() }).unwrap();
    let attr = e.getattr(g).unwrap();
    assert_eq!((attr.kind, attr.perm, attr.uid, attr.gid), (Kind::Directory, 0o700, 0, 5));
}

#[test]
fn a_static_streams_size_is_its_retained_bytes_and_mtime_follows_writes() {
    let e = engine();
    ctl(&e, ROOT, "replay all\ndata static");
    let s = create(&e, ROOT, "s");
    assert_eq!(e.getattr(s).unwrap().size, 0);
    // Set the mtime into the past (as `touch -d` does): it sticks until the next message.
    let past = SystemTime::UNIX_EPOCH + Duration::from_secs(946_684_800);
    let change = SetAttr { mtime: Some(past), ..SetAttr::default() };
    assert_eq!(e.setattr(s, change).unwrap().mtime, past);
    assert_eq!(e.getattr(s).unwrap().mtime, past);
    let before_write = SystemTime::now();
    publish(&e, s, &[b"12345", b"678"]);
    let after = e.getattr(s).unwrap();
    assert_eq!(after.size, 8);
    assert!(after.mtime >= before_write, "a message sets mtime to its time: {:?}", after.mtime);
    publish(&e, s, &[b"9"]);
    let later = e.getattr(s).unwrap();
    assert_eq!(later.size, 9);
    assert!(later.mtime >= after.mtime);
    assert_eq!(e.lookup(ROOT, b"s").unwrap().size, 9);
}
