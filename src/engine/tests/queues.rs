//! `deliver one`: work queues through the engine's operations. Each message to one reader,
//! acknowledged by the reader's next read or close; a killed reader's message handed to
//! another (FLUSH of a dying process), one not acknowledged within `ackwait` too (the timer
//! thread); `maxdeliver` failures moved to `NAME.dead`; the numbers and delivery counts.

use std::time::Instant;

use super::*;

/// A queue group `jobs` in the root with stream `q`.
fn queue_group(e: &Engine, settings: &str) -> (Ino, Ino) {
    let group = mkdir(e, ROOT, "jobs");
    ctl(e, group, &format!("deliver one\n{settings}"));
    (group, create(e, group, "q"))
}

/// Waits (up to a deadline) until `slot` holds a result.
fn wait_for(slot: &Slot) -> Read {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(read) = taken(slot) {
            return read;
        }
        assert!(Instant::now() < deadline, "no read completed in time");
        thread::yield_now();
    }
}

#[test]
fn competing_readers_get_each_message_once_and_a_dying_readers_goes_to_another() {
    let e = engine();
    let (_, q) = queue_group(&e, "");
    publish(&e, q, &[b"one", b"two", b"three"]);
    let (a, b) = (open_reader(&e, q), open_reader(&e, q));
    expect_read(&e, a, 100, b"one");
    expect_read(&e, b, 100, b"two");
    // A close by a live process sharing the descriptor acknowledges nothing, gives nothing back.
    assert_eq!(e.flush(a, CLOSER, OWNER, || false, |_| None), Ok(()));
    expect_read(&e, b, 100, b"three");
    let (waiting, _) = start_read(&e, b, 100, ReadMode::Block);
    assert!(is_pending(&waiting), "b acknowledged three; nothing left");
    // a's process was killed: "one" goes to b, first in line, as a redelivery.
    assert_eq!(e.flush(a, CLOSER, OWNER, || true, |_| None), Ok(()));
    assert_eq!(taken(&waiting), Some(Ok(b"one".to_vec())));
    let delivery = e.stamp(b).unwrap().expect("b got one");
    assert_eq!((delivery.seq, delivery.deliveries), (0, 2));
    let stats = e.stream_stats(q).unwrap();
    assert_eq!(stats, Stats { readers: 2, backlog: 0, in_flight: 1, redelivered: 1, dead: 0, ..stats });
    e.release(a);
    e.release(b);
    assert_eq!(e.stream_stats(q).unwrap().in_flight, 0, "b's close acknowledged one");
    assert_eq!(size(&e, q), 0, "nothing acknowledged is kept");
}

#[test]
fn a_message_failing_maxdeliver_times_moves_to_its_dead_stream() {
    let e = engine();
    let (group, q) = queue_group(&e, "maxdeliver 2\n");
    e.setattr(q, SetAttr { perm: Some(0o640), uid: Some(7), gid: Some(8), ..SetAttr::default() }).unwrap();
    publish(&e, q, &[b"poison"]);
    for _ in 0..2 {
        let fh = open_reader(&e, q);
        expect_read(&e, fh, 100, b"poison");
        assert_eq!(e.flush(fh, CLOSER, OWNER, || true, |_| None), Ok(()));
        e.release(fh);
    }
    let dead = e.lookup(group, b"q.dead").expect("made on first use");
    assert_eq!((dead.perm, dead.uid, dead.gid), (0o640, 7, 8), "the stream's owner and mode");
    assert_eq!(e.stream_stats(q).unwrap().dead, 1);
    assert_eq!(size(&e, q), 0);
    let fh = open_reader(&e, q);
    expect_errno(&e, fh, Errno::EAGAIN);
    // The dead stream is a queue too, whose failures stay in it.
    for round in 0..3 {
        let fh = open_reader(&e, dead.ino);
        expect_read(&e, fh, 100, b"poison");
        assert_eq!(e.stamp(fh).unwrap().map(|d| d.deliveries), Some(round + 1));
        assert_eq!(e.flush(fh, CLOSER, OWNER, || true, |_| None), Ok(()));
        e.release(fh);
    }
    assert_eq!(e.lookup(group, b"q.dead.dead"), Err(Errno::ENOENT));
}

#[test]
fn ackwait_hands_a_message_not_acknowledged_in_time_to_another_reader() {
    let e = engine();
    let (_, q) = queue_group(&e, "ackwait 50ms\n");
    let (stopped, other) = (open_reader(&e, q), open_reader(&e, q));
    publish(&e, q, &[b"job"]);
    expect_read(&e, stopped, 100, b"job");
    let (slot, ticket) = start_read(&e, other, 100, ReadMode::Block);
    assert!(ticket.is_some(), "nothing for the other reader yet");
    assert_eq!(wait_for(&slot), Ok(b"job".to_vec()), "the timer gave it to the other reader");
    assert_eq!(e.stamp(other).unwrap().map(|d| d.deliveries), Some(2));
    // The stopped reader goes on: its acknowledgement comes late and counts once.
    expect_errno(&e, stopped, Errno::EAGAIN);
    assert_eq!(e.stream_stats(q).unwrap().in_flight, 0);
}

#[test]
fn ackwait_and_maxdeliver_together_bury_a_message_nobody_acknowledges() {
    let e = engine();
    let (group, q) = queue_group(&e, "ackwait 20ms\nmaxdeliver 1\n");
    let fh = open_reader(&e, q);
    publish(&e, q, &[b"stuck"]);
    expect_read(&e, fh, 100, b"stuck");
    let deadline = Instant::now() + Duration::from_secs(10);
    while e.stream_stats(q).unwrap().dead == 0 {
        assert!(Instant::now() < deadline, "never moved on");
        thread::yield_now();
    }
    let dead = e.lookup(group, b"q.dead").expect("made on first use").ino;
    let reader = open_reader(&e, dead);
    expect_read(&e, reader, 100, b"stuck");
}

#[test]
fn a_queue_keeps_messages_for_a_later_reader_and_fan_out_readers_count_one_delivery() {
    let e = engine();
    let (group, q) = queue_group(&e, "");
    publish(&e, q, &[b"early"]);
    assert_eq!(e.stream_stats(q).unwrap().backlog, 1);
    let fh = open_reader(&e, q);
    expect_read(&e, fh, 100, b"early");
    e.release(fh);
    ctl(&e, group, "deliver all\n");
    let fan = open_reader(&e, q);
    assert_eq!(e.stamp(fan), Ok(None));
    publish(&e, q, &[b"x", b"y"]);
    expect_read(&e, fan, 100, b"x");
    let delivery = e.stamp(fan).unwrap().expect("read x");
    assert_eq!((delivery.seq, delivery.deliveries), (1, 1));
    let stats = e.stream_stats(q).unwrap();
    assert_eq!(
        stats,
        Stats { readers: 1, backlog: 1, messages: stats.messages, bytes: stats.bytes, ..Stats::default() }
    );
}

fn open_rw(e: &Engine, ino: Ino) -> u64 {
    e.open(ino, true, true, OWNER).expect("open read-write").0
}

#[test]
fn a_reply_goes_to_the_requesting_descriptor_alone() {
    let e = engine();
    let (_, svc) = queue_group(&e, "");
    let (client, other, server) = (open_rw(&e, svc), open_rw(&e, svc), open_rw(&e, svc));
    assert_eq!(write(&e, client, b"now?"), Ok(4));
    assert_eq!(write(&e, other, b"date?"), Ok(5));
    // The clients read replies now: nothing yet, and not each other's requests.
    expect_errno(&e, client, Errno::EAGAIN);
    let (waiting, _) = start_read(&e, other, 100, ReadMode::Block);
    expect_read(&e, server, 100, b"now?");
    assert_eq!(write(&e, server, b"12:00"), Ok(5));
    expect_read(&e, server, 100, b"date?");
    assert_eq!(write(&e, server, b"1 Dec"), Ok(5));
    assert_eq!(taken(&waiting), Some(Ok(b"1 Dec".to_vec())));
    expect_read(&e, client, 2, b"12");
    expect_read(&e, client, 100, b":00");
    assert_eq!(size(&e, svc), 5, "date? in flight (now? acknowledged): the replies are not in the log");
    // Its reply read, the client reads requests again: none left (the server took both).
    expect_errno(&e, client, Errno::EAGAIN);
    assert_eq!(e.stream_stats(svc).unwrap().in_flight, 1, "date? until the server's next read");
}

#[test]
fn a_reply_to_a_closed_requester_is_dropped_and_the_write_succeeds() {
    let e = engine();
    let (_, svc) = queue_group(&e, "");
    let (client, server) = (open_rw(&e, svc), open_rw(&e, svc));
    assert_eq!(write(&e, client, b"ping"), Ok(4));
    e.release(client);
    expect_read(&e, server, 100, b"ping");
    assert_eq!(write(&e, server, b"pong"), Ok(4));
    let late = open_rw(&e, svc);
    expect_errno(&e, late, Errno::EAGAIN);
    // A write-only requester gets no reply: the server's write is a new message.
    let writer = open_writer(&e, svc);
    assert_eq!(write(&e, writer, b"anon"), Ok(4));
    expect_read(&e, server, 100, b"anon");
    assert_eq!(write(&e, server, b"answer"), Ok(6));
    expect_read(&e, late, 100, b"answer");
}

#[test]
fn a_request_whose_server_dies_is_answered_by_another() {
    let e = engine();
    let (_, svc) = queue_group(&e, "");
    let (client, dying, server) = (open_rw(&e, svc), open_rw(&e, svc), open_rw(&e, svc));
    assert_eq!(write(&e, client, b"job"), Ok(3));
    expect_read(&e, dying, 100, b"job");
    assert_eq!(e.flush(dying, CLOSER, OWNER, || true, |_| None), Ok(()));
    e.release(dying);
    expect_read(&e, server, 100, b"job");
    assert_eq!(write(&e, server, b"done"), Ok(4));
    expect_read(&e, client, 100, b"done");
}

#[test]
fn a_wedged_servers_late_reply_still_reaches_its_requester() {
    let e = engine();
    let (_, svc) = queue_group(&e, "ackwait 20ms\n");
    let (client, wedged, server) = (open_rw(&e, svc), open_rw(&e, svc), open_rw(&e, svc));
    assert_eq!(write(&e, client, b"req"), Ok(3));
    expect_read(&e, wedged, 100, b"req");
    let (slot, _) = start_read(&e, server, 100, ReadMode::Block);
    assert_eq!(wait_for(&slot), Ok(b"req".to_vec()), "handed to the other server after ackwait");
    assert_eq!(write(&e, server, b"first"), Ok(5));
    expect_errno(&e, server, Errno::EAGAIN);
    assert_eq!(write(&e, wedged, b"late"), Ok(4));
    expect_read(&e, client, 100, b"first");
    expect_read(&e, client, 100, b"late");
    assert_eq!(size(&e, svc), 0, "the late reply is no new request");
}

#[test]
fn a_queued_reply_is_charged_to_the_memory_ceiling_until_read() {
    let e = engine_with(Limits { max_message: MIB, memory: 512 << 10 });
    let (_, svc) = queue_group(&e, "");
    let (client, server) = (open_rw(&e, svc), open_rw(&e, svc));
    assert_eq!(write(&e, client, b"req"), Ok(3));
    expect_read(&e, server, 100, b"req");
    let before = e.usage().memory_used;
    assert_eq!(write(&e, server, &vec![b'x'; 600 << 10]), Err(Errno::ENOSPC), "more than the ceiling");
    assert_eq!(write(&e, server, &[b'y'; 1000]), Ok(1000));
    assert_eq!(e.usage().memory_used, before + 1000);
    expect_read(&e, client, 2000, &[b'y'; 1000]);
    assert_eq!(e.usage().memory_used, before, "released once read");
}

#[test]
fn a_stream_renamed_out_of_a_queue_group_fans_out_from_its_oldest_unacknowledged_message() {
    let e = engine();
    let (group, q) = queue_group(&e, "");
    let fanout = mkdir(&e, ROOT, "fan");
    publish(&e, q, &[b"a", b"b"]);
    let fh = open_reader(&e, q);
    expect_read(&e, fh, 100, b"a");
    e.rename(group, b"q", fanout, b"q", false).unwrap();
    assert_eq!(e.stream_stats(q).unwrap().in_flight, 0, "no longer a queue");
    let other = open_reader(&e, q);
    expect_read(&e, fh, 100, b"a");
    expect_read(&e, fh, 100, b"b");
    expect_errno(&e, other, Errno::EAGAIN);
    e.rename(fanout, b"q", group, b"q", false).unwrap();
    publish(&e, q, &[b"c"]);
    expect_read(&e, other, 100, b"c");
    expect_errno(&e, fh, Errno::EAGAIN);
}
