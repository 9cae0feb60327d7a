//! Symbolic links, hard links, FIFOs, sockets, device nodes and setgid groups in the tree.

use super::*;

fn link(e: &Engine, ino: Ino, parent: Ino, name: &str) -> Result<Attr> {
    e.link(ino, parent, name.as_bytes())
}

#[test]
fn a_hard_link_names_the_same_stream_and_nlink_counts_names() {
    let e = engine();
    let (g, h) = (mkdir(&e, ROOT, "g"), mkdir(&e, ROOT, "h"));
    let a = create(&e, g, "a");
    let reader = open_reader(&e, a);
    assert_eq!(link(&e, a, h, "b").map(|attr| (attr.ino, attr.nlink)), Ok((a, 2)));
    assert_eq!(e.lookup(h, b"b").unwrap().ino, a);
    publish(&e, e.lookup(h, b"b").unwrap().ino, &[b"via b"]);
    expect_read(&e, reader, 100, b"via b");
    // Removing one name keeps the stream and its reader.
    e.unlink(g, b"a").unwrap();
    assert_eq!(e.getattr(a).unwrap().nlink, 1);
    assert_eq!(e.lookup(g, b"a").map(|attr| attr.ino), Err(Errno::ENOENT));
    expect_errno(&e, reader, Errno::EAGAIN);
    // The last one closes it: end-of-file.
    e.unlink(h, b"b").unwrap();
    expect_read(&e, reader, 100, b"");
    assert_eq!(e.getattr(a).unwrap().nlink, 0);
}

#[test]
fn a_stream_belongs_to_the_group_of_its_oldest_name() {
    let e = engine();
    let (g, h) = (mkdir(&e, ROOT, "g"), mkdir(&e, ROOT, "h"));
    ctl(&e, h, "replay all\n");
    let s = create(&e, g, "s");
    link(&e, s, h, "t").unwrap();
    let (g_order, h_order) = (open_reader(&e, order_ino(&e, g)), open_reader(&e, order_ino(&e, h)));
    publish(&e, s, &[b"1"]);
    expect_read(&e, g_order, 100, b"s\n");
    expect_errno(&e, h_order, Errno::EAGAIN);
    assert_eq!((status(&ctl_read(&e, g), "streams"), status(&ctl_read(&e, h), "streams")), (1, 0));
    // Renaming the other name moves only the name.
    e.rename(h, b"t", h, b"u", false).unwrap();
    publish(&e, s, &[b"2"]);
    expect_read(&e, g_order, 100, b"s\n");
    // With its home name gone, h is its home: h's order and configuration (replay all).
    e.unlink(g, b"s").unwrap();
    publish(&e, s, &[b"3"]);
    expect_read(&e, h_order, 100, b"u\n");
    expect_errno(&e, g_order, Errno::EAGAIN);
    assert_eq!((status(&ctl_read(&e, g), "streams"), status(&ctl_read(&e, h), "streams")), (0, 1));
    // Kept under h's replay all, since it was written there (under g's replay off, the
    // earlier ones were not).
    let late = open_reader(&e, s);
    expect_read(&e, late, 100, b"3");
}

#[test]
fn two_names_in_one_group_list_twice_with_cookies_of_their_own() {
    let e = engine();
    let a = create(&e, ROOT, "a");
    create(&e, ROOT, "b");
    link(&e, a, ROOT, "c").unwrap();
    assert_eq!(names(&e, ROOT), [".", "..", "a", "b", "c", "ctl", "order"]);
    let first = listing_from(&e, ROOT, 0, 3);
    assert_eq!(first[2].ino, a);
    let rest = listing_from(&e, ROOT, first[2].next, 2);
    assert_eq!(rest.iter().map(|l| l.name.as_slice()).collect::<Vec<_>>(), [&b"b"[..], b"c"]);
    assert_eq!(rest[1].ino, a);
    // Renaming onto another name of the same stream changes nothing.
    e.rename(ROOT, b"a", ROOT, b"c", false).unwrap();
    assert_eq!(names(&e, ROOT), [".", "..", "a", "b", "c", "ctl", "order"]);
}

#[test]
fn links_to_groups_ctl_order_or_removed_nodes_and_onto_taken_names_are_refused() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    let s = create(&e, g, "s");
    assert_eq!(link(&e, g, ROOT, "g2").map(|_| ()), Err(Errno::EPERM));
    assert_eq!(link(&e, ctl_ino(&e, g), ROOT, "c").map(|_| ()), Err(Errno::EPERM));
    assert_eq!(link(&e, order_ino(&e, g), ROOT, "o").map(|_| ()), Err(Errno::EPERM));
    assert_eq!(link(&e, s, g, "ctl").map(|_| ()), Err(Errno::EEXIST));
    assert_eq!(link(&e, s, g, "s").map(|_| ()), Err(Errno::EEXIST));
    assert_eq!(link(&e, s, g, "x\ny").map(|_| ()), Err(Errno::EINVAL));
    e.unlink(g, b"s").unwrap();
    assert_eq!(link(&e, s, g, "back").map(|_| ()), Err(Errno::ENOENT));
}

#[test]
fn symlinks_keep_their_target_and_special_nodes_their_kind() {
    let e = engine();
    let owner = Caller { uid: 7, gid: 8 };
    let l = e.symlink(ROOT, b"al", b"alice", owner).unwrap();
    assert_eq!((l.kind, l.size, l.perm, l.uid, l.gid, l.nlink), (Kind::Symlink, 5, 0o777, 7, 8, 1));
    assert_eq!(e.readlink(l.ino).as_deref(), Ok(&b"alice"[..]));
    let long = vec![b'x'; 4096];
    assert_eq!(e.symlink(ROOT, b"long", &long[..4095], owner).map(|a| a.size), Ok(4095));
    assert_eq!(e.symlink(ROOT, b"longer", &long, owner).map(|_| ()), Err(Errno::ENAMETOOLONG));
    let s = create(&e, ROOT, "s");
    assert_eq!(e.readlink(s), Err(Errno::EINVAL));
    // Only a device keeps a device number.
    for (name, kind, rdev) in [
        ("f", Kind::Fifo, 0),
        ("k", Kind::Socket, 0),
        ("c", Kind::CharDevice, 0x0103),
        ("b", Kind::BlockDevice, 0x0103),
    ] {
        let attr = e.mknod(ROOT, name.as_bytes(), kind, 0o640, 0x0103, owner).unwrap();
        assert_eq!((attr.kind, attr.rdev, attr.perm, attr.size), (kind, rdev, 0o640, 0));
        assert_eq!(
            e.open(attr.ino, true, false, OWNER).map(|_| ()),
            Err(Errno::EINVAL),
            "the kernel serves {name}"
        );
        assert_eq!(listing(&e, ROOT).iter().find(|l| l.name == name.as_bytes()).unwrap().kind, kind);
    }
    // A symlink or FIFO may have several names too; none counts as a stream or group.
    assert_eq!(link(&e, l.ino, ROOT, "al2").map(|a| a.nlink), Ok(2));
    let text = ctl_read(&e, ROOT);
    assert_eq!((status(&text, "streams"), status(&text, "groups")), (1, 0));
}

#[test]
fn a_setgid_group_gives_new_entries_its_gid_and_subgroups_its_bit() {
    let e = engine();
    let team = mkdir(&e, ROOT, "team");
    e.setattr(team, SetAttr { perm: Some(0o2775), gid: Some(50), ..SetAttr::default() }).unwrap();
    let caller = Caller { uid: 1000, gid: 100 };
    let s = e.create(team, b"s", 0o644, caller).unwrap();
    let d = e.mkdir(team, b"d", 0o755, caller).unwrap();
    let l = e.symlink(team, b"l", b"s", caller).unwrap();
    let f = e.mknod(team, b"f", Kind::Fifo, 0o600, 0, caller).unwrap();
    assert_eq!((s.uid, s.gid, s.perm), (1000, 50, 0o644));
    assert_eq!((d.uid, d.gid, d.perm), (1000, 50, 0o2755));
    assert_eq!((l.gid, f.gid), (50, 50));
    let deeper = e.mkdir(d.ino, b"deeper", 0o700, caller).unwrap();
    assert_eq!((deeper.gid, deeper.perm), (50, 0o2700));
    let plain = e.mkdir(ROOT, b"plain", 0o755, caller).unwrap();
    assert_eq!((plain.gid, plain.perm), (100, 0o755));
}
