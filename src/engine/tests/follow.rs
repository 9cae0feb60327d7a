//! Durable subscriptions (`follow parent`): a following group gets a copy of every message
//! of its parent's streams in its own stream of the same name, made for it when the stream
//! or the following begins; chains of followers; what unwires a copy; the copies' cost.
//! (Stamps, failing appends and `sync always` copies are in `storage.rs`, restored wiring
//! in `catalogue.rs`.)

use std::sync::mpsc;

use super::*;

fn child(e: &Engine, group: Ino, name: &str) -> Ino {
    e.lookup(group, name.as_bytes()).unwrap_or_else(|errno| panic!("no {name}: {errno}")).ino
}

/// Reads every message `fh` has now, then EAGAIN.
fn read_all(e: &Engine, fh: u64) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        match read_now(e, fh, 65536) {
            Ok(bytes) => got.push(String::from_utf8(bytes).unwrap()),
            Err(Errno::EAGAIN) => return got,
            Err(errno) => panic!("reading fh {fh}: {errno}"),
        }
    }
}

/// A group `news` with stream `s`, every group replaying all (so that copies are kept for
/// readers that open later, as a fan-out stream keeps them).
fn news(e: &Engine) -> (Ino, Ino) {
    ctl(e, ROOT, "replay all");
    let news = mkdir(e, ROOT, "news");
    (news, create(e, news, "s"))
}

fn follower(e: &Engine, parent: Ino, name: &str) -> Ino {
    let group = mkdir(e, parent, name);
    ctl(e, group, "follow parent");
    group
}

#[test]
fn each_follower_reads_its_own_copy_of_every_message_from_when_it_followed() {
    let e = engine();
    let (news, s) = news(&e);
    publish(&e, s, &[b"before"]);
    let alice = follower(&e, news, "alice");
    let alice_s = child(&e, alice, "s");
    let source = open_reader(&e, s);
    let alice_order = open_reader(&e, order_ino(&e, alice));
    publish(&e, s, &[b"one", b"two"]);
    let bob = follower(&e, news, "bob");
    publish(&e, s, &[b"three"]);
    assert_eq!(read_all(&e, source), ["before", "one", "two", "three"]);
    // Each recipient at its own pace, each from when it followed: history is not copied.
    let bob_s = open_reader(&e, child(&e, bob, "s"));
    assert_eq!(read_all(&e, bob_s), ["three"]);
    let alice_s = open_reader(&e, alice_s);
    assert_eq!(read_all(&e, alice_s), ["one", "two", "three"]);
    assert_eq!(read_all(&e, alice_order), ["s\n", "s\n", "s\n"], "copies are the follower's writes");
    // A stream made in the followed group is made in each follower, and copied.
    let t = create(&e, news, "t");
    publish(&e, t, &[b"new"]);
    for group in [alice, bob] {
        assert_eq!(read_all(&e, open_reader(&e, child(&e, group, "t"))), ["new"]);
    }
    // The follower's streams are its own: written there, they reach no one else.
    publish(&e, child(&e, alice, "t"), &[b"alice's"]);
    assert_eq!(read_all(&e, open_reader(&e, t)), ["new"]);
}

#[test]
fn copies_are_made_with_the_owner_and_mode_of_their_stream() {
    let e = engine();
    let (news, _) = news(&e);
    let owner = Caller { uid: 1000, gid: 100 };
    e.create(news, b"private", 0o600, owner).unwrap();
    let alice = follower(&e, news, "alice");
    e.create(news, b"later", 0o640, owner).unwrap();
    for (name, perm) in [("private", 0o600), ("later", 0o640)] {
        let attr = e.getattr(child(&e, alice, name)).unwrap();
        assert_eq!((attr.kind, attr.perm, attr.uid, attr.gid), (Kind::File, perm, 1000, 100), "{name}");
    }
}

#[test]
fn a_follower_of_a_follower_gets_the_copies_of_the_copies() {
    let e = engine();
    let (news, s) = news(&e);
    let alice = follower(&e, news, "alice");
    // A subgroup is configured as its parent is: it follows it.
    let inbox = mkdir(&e, alice, "inbox");
    assert_eq!(names(&e, inbox), [".", "..", "s", "ctl", "order"]);
    let (alice_s, inbox_s) = (child(&e, alice, "s"), child(&e, inbox, "s"));
    let readers = [open_reader(&e, s), open_reader(&e, alice_s), open_reader(&e, inbox_s)];
    publish(&e, s, &[b"all three"]);
    publish(&e, alice_s, &[b"alice down"]);
    publish(&e, inbox_s, &[b"inbox only"]);
    let got: Vec<Vec<String>> = readers.iter().map(|&fh| read_all(&e, fh)).collect();
    assert_eq!(got[0], ["all three"]);
    assert_eq!(got[1], ["all three", "alice down"]);
    assert_eq!(got[2], ["all three", "alice down", "inbox only"]);
}

#[test]
fn removing_renaming_or_no_longer_following_unwires_a_copy() {
    let e = engine();
    let (news, s) = news(&e);
    let t = create(&e, news, "t");
    let alice = follower(&e, news, "alice");
    // A removed copy stays removed; its stream is written as before.
    e.unlink(alice, b"s").unwrap();
    publish(&e, s, &[b"m"]);
    assert!(e.lookup(alice, b"s").is_err(), "not made again");
    // A copy renamed is no longer a copy; the name left is not filled again either.
    let alice_t = child(&e, alice, "t");
    e.rename(alice, b"t", alice, b"kept", false).unwrap();
    let kept = open_reader(&e, alice_t);
    publish(&e, t, &[b"after the rename"]);
    assert_eq!(read_all(&e, kept), Vec::<String>::new());
    assert!(e.lookup(alice, b"t").is_err());
    // A stream renamed in the followed group is a new stream there: its copy is made.
    e.rename(news, b"t", news, b"u", false).unwrap();
    let alice_u = open_reader(&e, child(&e, alice, "u"));
    publish(&e, t, &[b"as u"]);
    assert_eq!(read_all(&e, alice_u), ["as u"]);
    // Moved out of the followed group, it is copied no more.
    e.rename(news, b"u", ROOT, b"u", false).unwrap();
    publish(&e, t, &[b"moved out"]);
    assert_eq!(read_all(&e, alice_u), Vec::<String>::new());
    // No longer following: nothing is copied, no stream is made; following again makes
    // the missing ones, and copies from then on.
    ctl(&e, alice, "follow none");
    create(&e, news, "v");
    publish(&e, s, &[b"unfollowed"]);
    assert_eq!(names(&e, alice), [".", "..", "kept", "u", "ctl", "order"]);
    ctl(&e, alice, "follow parent");
    assert_eq!(names(&e, alice), [".", "..", "kept", "u", "s", "v", "ctl", "order"]);
    publish(&e, s, &[b"followed again"]);
    assert_eq!(read_all(&e, open_reader(&e, child(&e, alice, "s"))), ["followed again"]);
    // A following group moved under another parent follows that one.
    e.rename(news, b"alice", ROOT, b"alice", false).unwrap();
    publish(&e, s, &[b"left behind"]);
    assert_eq!(read_all(&e, alice_u), Vec::<String>::new());
    publish(&e, t, &[b"from the root"]);
    assert_eq!(read_all(&e, alice_u), ["from the root"]);
    assert_eq!(read_all(&e, open_reader(&e, child(&e, alice, "s"))), ["followed again"]);
}

#[test]
fn the_root_follows_nothing() {
    let e = engine();
    ctl(&e, ROOT, "follow parent\nreplay all");
    let s = create(&e, ROOT, "s");
    let reader = open_reader(&e, s);
    publish(&e, s, &[b"once"]);
    assert_eq!(read_all(&e, reader), ["once"]);
}

#[test]
fn a_write_of_several_requests_reserves_the_cost_of_its_copies() {
    let e = engine();
    let (news, s) = news(&e);
    follower(&e, news, "alice");
    follower(&e, news, "bob");
    let w = open_writer(&e, s);
    let before = e.usage().memory_used;
    let total = 3 * 4096;
    assert_eq!(write_part(&e, w, &[b'x'; 4096], 0, Some(total)), Ok(4096));
    assert_eq!(e.usage().memory_used - before, 3 * stream::most_cost(total as usize));
    assert_eq!(write_part(&e, w, &[b'x'; 8192], 4096, None), Ok(8192));
    let alice_s = open_reader(&e, child(&e, child(&e, news, "alice"), "s"));
    assert_eq!(read_now(&e, alice_s, 1 << 20).map(|m| m.len()), Ok(total as usize));
}

#[test]
fn a_whole_file_message_reserves_the_cost_of_its_copies_too() {
    let e = engine();
    let (news, s) = news(&e);
    ctl(&e, news, "frame close");
    follower(&e, news, "alice");
    follower(&e, news, "bob");
    let w = open_writer(&e, s);
    let before = e.usage().memory_used;
    assert_eq!(write(&e, w, b"whole"), Ok(5));
    assert_eq!(e.usage().memory_used - before, 3 * stream::most_cost(5));
    e.flush(w, CLOSER, OWNER, || false, |_| None).unwrap();
    e.release(w);
    let alice_s = open_reader(&e, child(&e, child(&e, news, "alice"), "s"));
    assert_eq!(read_all(&e, alice_s), ["whole"]);
}

#[test]
fn writers_along_a_chain_and_namespace_changes_do_not_deadlock() {
    let e = Arc::new(engine());
    let (news, s) = news(&e);
    let alice = follower(&e, news, "alice");
    let inbox = mkdir(&e, alice, "inbox");
    let streams = [s, child(&e, alice, "s"), child(&e, inbox, "s")];
    let (done, finished) = mpsc::channel();
    for ino in streams {
        let (e, done) = (e.clone(), done.clone());
        thread::spawn(move || {
            for _ in 0..10_000 {
                publish(&e, ino, &[b"m"]);
            }
            done.send(()).unwrap();
        });
    }
    let (e2, done2) = (e.clone(), done);
    thread::spawn(move || {
        for _ in 0..1000 {
            ctl(&e2, alice, "follow none");
            ctl(&e2, alice, "follow parent");
            // The chain's end moves up, before alice among news's followers, and back.
            e2.rename(alice, b"inbox", news, b"a", false).unwrap();
            e2.rename(news, b"a", alice, b"inbox", false).unwrap();
        }
        done2.send(()).unwrap();
    });
    for _ in 0..4 {
        finished.recv_timeout(Duration::from_secs(60)).expect("every thread finished: no deadlock");
    }
}

#[test]
fn writes_racing_renames_of_their_stream_reach_every_recipient() {
    let e = Arc::new(engine());
    let (news, s) = news(&e);
    let alice = follower(&e, news, "alice");
    const WRITES: usize = 20_000;
    let writer = {
        let e = e.clone();
        thread::spawn(move || {
            let fh = open_writer(&e, s);
            for _ in 0..WRITES {
                assert_eq!(write(&e, fh, b"m"), Ok(1));
            }
            e.release(fh);
        })
    };
    // The stream goes back and forth between two names while it is written.
    let mut renames = 0;
    while !writer.is_finished() {
        let (from, to): (&[u8], &[u8]) = if renames % 2 == 0 { (b"s", b"t") } else { (b"t", b"s") };
        e.rename(news, from, news, to, false).unwrap();
        renames += 1;
    }
    writer.join().unwrap();
    assert!(renames > 10, "the renames overlapped the writes: {renames}");
    let copies: usize =
        ["s", "t"].iter().map(|name| read_all(&e, open_reader(&e, child(&e, alice, name))).len()).sum();
    assert_eq!(
        copies, WRITES,
        "every write reached the recipient, under one name or the other ({renames} renames)"
    );
}

#[test]
fn a_stream_moved_up_into_the_group_its_group_follows_gets_a_copy_there() {
    let e = engine();
    let (news, _) = news(&e);
    let alice = follower(&e, news, "alice");
    let x = create(&e, alice, "x");
    // Its name in alice was its own: the copy is made once it has left.
    e.rename(alice, b"x", news, b"x", false).unwrap();
    let copy = open_reader(&e, child(&e, alice, "x"));
    publish(&e, x, &[b"up"]);
    assert_eq!(read_all(&e, copy), ["up"]);
}
