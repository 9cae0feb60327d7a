//! A shared engine (`Engine::shared`) against a fake upstream that records what the engine
//! hands it and answers as the test says: namespace changes ordered upstream and applied alike
//! by every mount, ctl settings the upstream refuses, writes published upstream and received
//! back by `deliver_remote`, `deliver one` fed on demand and settled upstream, request/reply.

use std::collections::VecDeque;
use std::sync::{OnceLock, Weak};

use super::*;

/// Why the fake refuses a configuration: it cannot have a write wait for readers.
const REFUSAL: &str = "writes cannot wait here";

/// An upstream that orders each change as it comes (applying it to its engine and to any
/// peers), keeps what is published until the test answers it, and records the rest.
#[derive(Default)]
struct Fake {
    engine: OnceLock<Weak<Engine>>,
    /// Other mounts' engines, which apply every change too (not theirs: `mine` false).
    peers: Mutex<Vec<Arc<Engine>>>,
    ops: Mutex<Vec<Op>>,
    /// What each application gave: the inode it made, or why it failed; this mount's, and
    /// the peers'.
    outcomes: Mutex<Vec<Result<Option<Ino>>>>,
    peer_outcomes: Mutex<Vec<Result<Option<Ino>>>>,
    published: Mutex<Vec<Outgoing>>,
    /// The callbacks of what was published or replied, oldest first, until answered.
    pending: Mutex<VecDeque<WriteCallback>>,
    replies: Mutex<Vec<(Arc<str>, Vec<u8>)>>,
    wanted: Mutex<Vec<Ino>>,
    /// The groups a reader opened a file of, in order.
    read: Mutex<Vec<Ino>>,
    settled: Arc<Mutex<Vec<(Ino, Stamp, Settled)>>>,
}

impl Fake {
    fn engine(&self) -> Arc<Engine> {
        self.engine.get().and_then(Weak::upgrade).expect("the engine is alive")
    }

    fn ops(&self) -> Vec<Op> {
        self.ops.lock().unwrap().clone()
    }

    fn take_published(&self) -> Vec<Outgoing> {
        std::mem::take(&mut *self.published.lock().unwrap())
    }

    /// Answers the oldest publication or reply not answered yet.
    fn answer(&self, outcome: Result<()>) {
        let done = self.pending.lock().unwrap().pop_front().expect("something to answer");
        done(outcome);
    }

    fn settled(&self) -> Vec<(Ino, Stamp, Settled)> {
        self.settled.lock().unwrap().clone()
    }

    fn wanted(&self) -> Vec<Ino> {
        self.wanted.lock().unwrap().clone()
    }
}

impl Upstream for Fake {
    fn submit(&self, op: Op) -> Result<Option<Attr>> {
        self.ops.lock().unwrap().push(op.clone());
        for peer in self.peers.lock().unwrap().iter() {
            let outcome = peer.apply(&op, false).map(|attr| attr.map(|attr| attr.ino));
            self.peer_outcomes.lock().unwrap().push(outcome);
        }
        let outcome = self.engine().apply(&op, true);
        self.outcomes.lock().unwrap().push(outcome.map(|attr| attr.map(|attr| attr.ino)));
        outcome
    }

    fn publish(&self, message: Outgoing, done: Option<WriteCallback>) {
        self.published.lock().unwrap().push(message);
        self.pending.lock().unwrap().extend(done);
    }

    fn reply(&self, to: Arc<str>, message: Vec<u8>, done: Option<WriteCallback>) {
        self.replies.lock().unwrap().push((to, message));
        self.pending.lock().unwrap().extend(done);
    }

    fn wants(&self, stream: Ino) {
        self.wanted.lock().unwrap().push(stream);
    }

    fn reading(&self, group: Ino) {
        self.read.lock().unwrap().push(group);
    }

    fn settler(&self, stream: Ino) -> Settle {
        let settled = self.settled.clone();
        Arc::new(move |stamp, how| settled.lock().unwrap().push((stream, stamp, how)))
    }

    fn refuses(&self, config: &GroupConfig) -> Option<String> {
        (config.write != config::WriteMode::NonBlock).then(|| REFUSAL.to_string())
    }
}

/// A shared engine and its fake upstream.
fn shared_engine() -> (Arc<Engine>, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let limits = Limits { max_message: MIB, memory: 64 * MIB };
    let e = Arc::new(Engine::shared(GroupConfig::default(), OWNER, limits, fake.clone()).expect("shared"));
    assert!(fake.engine.set(Arc::downgrade(&e)).is_ok(), "set once");
    (e, fake)
}

/// A stamp as an upstream gives it, told apart by `n`.
fn remote_stamp(n: u32) -> Stamp {
    Stamp {
        time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + u64::from(n)),
        group_seq: 40 + u64::from(n),
        pid: 100 + n,
        uid: 200 + n,
        gid: 300 + n,
    }
}

/// Starts a write(2) of `data` whole by process `pid` of user `uid` and group `gid`.
fn write_as(e: &Engine, fh: u64, data: &[u8], (pid, uid, gid): (u32, u32, u32)) -> WriteSlot {
    let slot: WriteSlot = Arc::new(Mutex::new(None));
    let target = slot.clone();
    let request = WriteRequest { data, writer: 1, offset: 0, nonblock: false, pid, uid, gid };
    let ticket = e.write(
        fh,
        &request,
        || Some(data.len() as u64),
        |_| Some(1),
        Box::new(move |result| assert!(target.lock().unwrap().replace(result).is_none(), "completed twice")),
    );
    assert_eq!(ticket, None, "a shared write is answered by its upstream, not blocked here");
    slot
}

fn open_read_write(e: &Engine, ino: Ino) -> u64 {
    e.open(ino, true, true, OWNER).expect("open for reading and writing").0
}

/// A node as two mounts must agree on it: its path, inode number, kind and permissions.
type Node = (String, Ino, Kind, u16);

/// Every node under `group`, depth first.
fn shape(e: &Engine, group: Ino, path: &str, into: &mut Vec<Node>) {
    for entry in listing(e, group) {
        let name = String::from_utf8(entry.name).unwrap();
        if name == "." || name == ".." {
            continue;
        }
        let path = format!("{path}/{name}");
        into.push((path.clone(), entry.ino, entry.kind, e.getattr(entry.ino).expect("listed").perm));
        if entry.kind == Kind::Directory {
            shape(e, entry.ino, &path, into);
        }
    }
}

/// The whole tree and every group's configuration.
fn tree_and_groups(e: &Engine) -> (Vec<Node>, Vec<(Ino, GroupConfig)>) {
    let mut nodes = Vec::new();
    shape(e, ROOT, "", &mut nodes);
    let mut groups = e.groups();
    groups.sort_by_key(|&(ino, _)| ino);
    (nodes, groups)
}

#[test]
fn namespace_changes_are_ordered_upstream_and_every_mount_applies_them_alike() {
    let (e, fake) = shared_engine();
    let (peer, _) = shared_engine();
    fake.peers.lock().unwrap().push(peer.clone());
    let g = mkdir(&e, ROOT, "g");
    let s = create(&e, g, "s");
    let sub = mkdir(&e, g, "sub");
    e.rename(g, b"s", sub, b"t", false).expect("rename");
    create(&e, g, "gone");
    e.unlink(g, b"gone").expect("unlink");
    let perm = SetAttr { perm: Some(0o600), ..SetAttr::default() };
    e.setattr(s, perm).expect("chmod");
    ctl(&e, sub, "depth 3\n");
    mkdir(&e, ROOT, "empty");
    e.rmdir(ROOT, b"empty").expect("rmdir");
    assert_eq!(e.mkdir(ROOT, b"g", 0o755, OWNER).map(|attr| attr.ino), Err(Errno::EEXIST));
    let name = |name: &str| name.as_bytes().to_vec();
    let file = |parent, n: &str| Op::Mknod {
        parent,
        name: name(n),
        kind: Kind::File,
        perm: 0o644,
        rdev: 0,
        caller: OWNER,
    };
    let dir = |parent, n: &str| Op::Mkdir { parent, name: name(n), perm: 0o755, caller: OWNER };
    assert_eq!(
        fake.ops(),
        [
            dir(ROOT, "g"),
            file(g, "s"),
            dir(g, "sub"),
            Op::Rename { parent: g, name: name("s"), to: sub, to_name: name("t"), no_replace: false },
            file(g, "gone"),
            Op::Unlink { parent: g, name: name("gone") },
            Op::Setattr { ino: s, change: perm },
            Op::Ctl { group: sub, uid: OWNER.uid, text: name("depth 3\n") },
            dir(ROOT, "empty"),
            Op::Rmdir { parent: ROOT, name: name("empty") },
            dir(ROOT, "g"),
        ]
    );
    let outcomes = fake.outcomes.lock().unwrap().clone();
    assert_eq!(outcomes.last(), Some(&Err(Errno::EEXIST)));
    assert_eq!(*fake.peer_outcomes.lock().unwrap(), outcomes, "the same inodes made, the same refusal");
    let (nodes, groups) = tree_and_groups(&e);
    assert!(nodes.contains(&("/g/sub/t".to_string(), s, Kind::File, 0o600)), "{nodes:?}");
    assert!(!nodes.iter().any(|(path, ..)| path == "/g/gone" || path == "/empty"), "{nodes:?}");
    assert_eq!(
        groups.iter().find(|(ino, _)| *ino == sub).map(|(_, c)| c.depth),
        Some(config::Depth::Messages(3))
    );
    assert_eq!(tree_and_groups(&peer), (nodes, groups), "the peer's tree is the same");
}

#[test]
fn a_setting_the_upstream_refuses_fails_whole_and_is_told_on_the_next_read_of_ctl() {
    let (e, fake) = shared_engine();
    let clean = ctl_read(&e, ROOT);
    let configs = e.groups();
    assert_eq!(ctl_write(&e, ROOT, "depth 4\nwrite one\n"), Err(Errno::EOPNOTSUPP));
    assert_eq!(fake.ops(), [], "nothing submitted");
    assert_eq!(e.groups(), configs, "not even the depth");
    assert_eq!(ctl_read(&e, ROOT), format!("{clean}# error: {REFUSAL}\n"));
    // What the upstream accepts goes upstream, and the refusal is told no more.
    ctl(&e, ROOT, "depth 4\n");
    assert_eq!(fake.ops(), [Op::Ctl { group: ROOT, uid: OWNER.uid, text: b"depth 4\n".to_vec() }]);
    let text = ctl_read(&e, ROOT);
    assert!(!text.contains("# error"), "{text}");
    assert_eq!(e.groups()[0].1.depth, config::Depth::Messages(4));
}

#[test]
fn a_write_is_published_upstream_and_read_only_once_delivered_back() {
    let (e, fake) = shared_engine();
    let g = mkdir(&e, ROOT, "g");
    let s = create(&e, g, "s");
    let readers = [open_reader(&e, s), open_reader(&e, s)];
    let order = open_reader(&e, order_ino(&e, g));
    let w = open_writer(&e, s);
    // Each open for reading, of a stream or `order`, asks for the group's messages; the
    // writer's does not.
    assert_eq!(*fake.read.lock().unwrap(), [g, g, g]);
    let slot = write_as(&e, w, b"hello", (42, 7, 8));
    assert_eq!(write_outcome(&slot), None, "answered by the upstream's callback");
    let sent = fake.take_published();
    assert_eq!(sent.len(), 1);
    let Outgoing { stream, message, pid, uid, gid, reply_to } = &sent[0];
    assert_eq!(
        (*stream, message.as_slice(), *pid, *uid, *gid, *reply_to),
        (s, &b"hello"[..], 42, 7, 8, None)
    );
    for fh in readers {
        expect_errno(&e, fh, Errno::EAGAIN);
    }
    expect_errno(&e, order, Errno::EAGAIN);
    assert_eq!(size(&e, s), 0, "nothing appended here");
    let stamp = Stamp { pid: 42, uid: 7, gid: 8, ..remote_stamp(1) };
    e.deliver_remote(s, b"hello".to_vec(), stamp, None, Via::Group).expect("delivered");
    fake.answer(Ok(()));
    assert_eq!(write_outcome(&slot), Some(Ok(())));
    for fh in readers {
        expect_read(&e, fh, 100, b"hello");
        assert_eq!(e.stamp(fh).unwrap().map(|received| received.stamp), Some(stamp));
        expect_errno(&e, fh, Errno::EAGAIN);
    }
    expect_read(&e, order, 100, b"s\n");
    // The upstream could not publish it: the write fails with its errno, nothing is read.
    let slot = write_as(&e, w, b"lost", (42, 7, 8));
    assert_eq!(fake.take_published().len(), 1);
    fake.answer(Err(Errno::ETIMEDOUT));
    assert_eq!(write_outcome(&slot), Some(Err(Errno::ETIMEDOUT)));
    for fh in readers {
        expect_errno(&e, fh, Errno::EAGAIN);
    }
}

/// A queue group `jobs` in the root with stream `q`, on a shared engine.
fn shared_queue(e: &Engine) -> Ino {
    let group = mkdir(e, ROOT, "jobs");
    ctl(e, group, "deliver one\n");
    create(e, group, "q")
}

#[test]
fn a_shared_queue_asks_for_what_its_readers_wait_for_and_settles_upstream() {
    let (e, fake) = shared_engine();
    let q = shared_queue(&e);
    // One reader holds half a message: it waits for nothing, even polling.
    let half = open_reader(&e, q);
    let (slot, ticket) = start_read(&e, half, 3, ReadMode::Block);
    assert!(ticket.is_some());
    assert_eq!(fake.wanted(), [q], "a parked read asks the upstream");
    assert_eq!(e.queue_demand(q), Some(1));
    // With every message of its group, a queue's message is not this mount's to hand out.
    e.deliver_remote(q, b"fanned".to_vec(), remote_stamp(9), None, Via::Group).expect("skipped");
    assert!(is_pending(&slot), "a queue takes no message through its group");
    e.deliver_remote(q, b"abcdef".to_vec(), remote_stamp(1), None, Via::Queue).expect("delivered");
    assert_eq!(taken(&slot), Some(Ok(b"abc".to_vec())));
    let (_, poller) = poll_counter();
    assert_eq!(e.poll(half, Some(poller)), Ok(true));
    assert_eq!(e.queue_demand(q), Some(0), "holding an unread part");
    // One waits for the reply to its request, not for a request.
    let client = open_read_write(&e, q);
    let request = write_as(&e, client, b"request", (1, 0, 0));
    fake.answer(Ok(()));
    assert_eq!(write_outcome(&request), Some(Ok(())));
    let (_, ticket) = start_read(&e, client, 100, ReadMode::Block);
    assert!(ticket.is_some());
    assert_eq!(e.queue_demand(q), Some(0), "in the reply role");
    // Two wait for messages.
    let (a, b) = (open_reader(&e, q), open_reader(&e, q));
    let (a_slot, _) = start_read(&e, a, 100, ReadMode::Block);
    let (b_slot, _) = start_read(&e, b, 100, ReadMode::Block);
    assert_eq!(e.queue_demand(q), Some(2));
    assert!(fake.wanted().iter().all(|&ino| ino == q));
    e.deliver_remote(q, b"job".to_vec(), remote_stamp(2), None, Via::Queue).expect("delivered");
    let (taker, idle, idle_slot) = match (taken(&a_slot), taken(&b_slot)) {
        (Some(read), None) => {
            assert_eq!(read, Ok(b"job".to_vec()));
            (a, b, b_slot)
        }
        (None, Some(read)) => {
            assert_eq!(read, Ok(b"job".to_vec()));
            (b, a, a_slot)
        }
        other => panic!("one reader gets it: {other:?}"),
    };
    assert_eq!(e.queue_demand(q), Some(1), "the other still waits");
    assert_eq!(fake.settled(), []);
    // The next read acknowledges it, upstream, by its stamp.
    let (again, _) = start_read(&e, taker, 100, ReadMode::Block);
    assert_eq!(fake.settled(), [(q, remote_stamp(2), Settled::Acked)]);
    assert_eq!(e.queue_demand(q), Some(2));
    // A reader killed holding one: it fails upstream, and no local reader gets it.
    e.deliver_remote(q, b"dropped".to_vec(), remote_stamp(3), None, Via::Queue).expect("delivered");
    let (read, holder, still_waiting) = match (taken(&again), taken(&idle_slot)) {
        (Some(read), None) => (read, taker, idle_slot),
        (None, Some(read)) => (read, idle, again),
        other => panic!("one reader gets it: {other:?}"),
    };
    assert_eq!(read, Ok(b"dropped".to_vec()));
    assert_eq!(e.stream_stats(q).unwrap().in_flight, 2, "half's and the holder's");
    assert_eq!(e.flush(holder, CLOSER, OWNER, || true, |_| None), Ok(()));
    assert_eq!(fake.settled()[1..], [(q, remote_stamp(3), Settled::Failed)]);
    assert_eq!(e.stream_stats(q).unwrap().in_flight, 1, "half's only");
    assert!(is_pending(&still_waiting), "the upstream's to redeliver, not this queue's");
    expect_errno(&e, holder, Errno::EAGAIN);
    assert_eq!(e.queue_demand(q), Some(1), "asked for again");
    assert_eq!(fake.settled().len(), 2);
}

#[test]
fn a_request_waits_for_its_reply_from_upstream_and_a_remote_requests_reply_goes_back() {
    let (e, fake) = shared_engine();
    let q = shared_queue(&e);
    // A request from here: published with its reader, which then reads the reply.
    let client = open_read_write(&e, q);
    let request = write_as(&e, client, b"question", (1, 0, 0));
    let sent = fake.take_published();
    let reader = sent[0].reply_to.expect("a request names its reader");
    assert_eq!((sent[0].stream, sent[0].message.as_slice()), (q, &b"question"[..]));
    fake.answer(Ok(()));
    assert_eq!(write_outcome(&request), Some(Ok(())));
    let (reply, ticket) = start_read(&e, client, 100, ReadMode::Block);
    assert!(ticket.is_some());
    e.deliver_remote(q, b"another request".to_vec(), remote_stamp(1), None, Via::Queue).expect("delivered");
    assert!(is_pending(&reply), "in the reply role, not given requests");
    e.deliver_reply(q, reader, b"answer").expect("a reply");
    assert_eq!(taken(&reply), Some(Ok(b"answer".to_vec())));
    // A request from another mount: the reply goes to its address, not published.
    let worker = open_read_write(&e, q);
    e.deliver_remote(
        q,
        b"remote".to_vec(),
        remote_stamp(2),
        Some(Origin::Away("inbox.7".into())),
        Via::Queue,
    )
    .expect("delivered");
    expect_read(&e, worker, 100, b"another request");
    expect_read(&e, worker, 100, b"remote");
    let answered = write_as(&e, worker, b"done remotely", (1, 0, 0));
    assert!(fake.take_published().is_empty());
    assert_eq!(*fake.replies.lock().unwrap(), [(Arc::from("inbox.7"), b"done remotely".to_vec())]);
    fake.answer(Ok(()));
    assert_eq!(write_outcome(&answered), Some(Ok(())));
    // This mount's own request, delivered back: its reply is queued here.
    let request = write_as(&e, client, b"mine", (1, 0, 0));
    let sent = fake.take_published();
    fake.answer(Ok(()));
    assert_eq!(write_outcome(&request), Some(Ok(())));
    e.deliver_remote(
        q,
        b"mine".to_vec(),
        remote_stamp(3),
        Some(Origin::Here(sent[0].reply_to.unwrap())),
        Via::Queue,
    )
    .expect("delivered");
    expect_read(&e, worker, 100, b"mine");
    let answered = write_as(&e, worker, b"done here", (1, 0, 0));
    assert_eq!(write_outcome(&answered), Some(Ok(())), "answered at once");
    assert!(fake.take_published().is_empty() && fake.replies.lock().unwrap().len() == 1);
    expect_read(&e, client, 100, b"done here");
}
