//! `order`: the order of writes across a group's streams.

use super::*;

#[test]
fn order_names_the_stream_of_each_write() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    let a = create(&e, g, "a");
    let b = create(&e, g, "b");
    let order = open_reader(&e, order_ino(&e, g));
    let ra = open_reader(&e, a);
    let rb = open_reader(&e, b);
    publish(&e, a, &[b"a1"]);
    publish(&e, b, &[b"b1"]);
    publish(&e, a, &[b"a2"]);

    let mut history = Vec::new();
    let mut lines = Vec::new();
    loop {
        match read_now(&e, order, 4096) {
            Ok(line) => {
                let stream = match line.as_slice() {
                    b"a\n" => ra,
                    b"b\n" => rb,
                    other => panic!("unexpected order line {:?}", String::from_utf8_lossy(other)),
                };
                lines.push(line);
                history.push(read_now(&e, stream, 4096).unwrap());
            }
            Err(errno) => {
                assert_eq!(errno, Errno::EAGAIN);
                break;
            }
        }
    }
    assert_eq!(lines, [b"a\n".to_vec(), b"b\n".to_vec(), b"a\n".to_vec()]);
    assert_eq!(history, [b"a1".to_vec(), b"b1".to_vec(), b"a2".to_vec()]);
    assert_eq!(size(&e, order_ino(&e, g)), 0, "order lines read under replay off are gone");
}

#[test]
fn order_is_per_group() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    let sub = mkdir(&e, g, "sub");
    let a = create(&e, g, "a");
    let c = create(&e, sub, "c");
    let root_order = open_reader(&e, order_ino(&e, ROOT));
    let g_order = open_reader(&e, order_ino(&e, g));
    let sub_order = open_reader(&e, order_ino(&e, sub));
    publish(&e, c, &[b"deep"]);
    publish(&e, a, &[b"shallow"]);
    expect_read(&e, g_order, 100, b"a\n");
    expect_errno(&e, g_order, Errno::EAGAIN);
    expect_read(&e, sub_order, 100, b"c\n");
    expect_errno(&e, sub_order, Errno::EAGAIN);
    expect_errno(&e, root_order, Errno::EAGAIN);
}

#[test]
fn order_cannot_be_opened_for_writing() {
    let e = engine();
    let g = mkdir(&e, ROOT, "g");
    for group in [ROOT, g] {
        let order = order_ino(&e, group);
        assert_eq!(e.open(order, false, true, OWNER).map(|o| o.1), Err(Errno::EPERM));
        assert_eq!(e.open(order, true, true, OWNER).map(|o| o.1), Err(Errno::EPERM));
        assert_eq!(e.open(order, true, false, OWNER).map(|o| o.1), Ok(OpenKind::Stream));
    }
}

#[test]
fn order_agrees_with_streams_under_concurrent_writers() {
    const THREADS: usize = 4;
    const MESSAGES: usize = 500;
    let e = Arc::new(engine());
    ctl(&e, ROOT, "replay all");
    let g = mkdir(&e, ROOT, "g");
    let streams: Vec<Ino> = (0..THREADS).map(|t| create(&e, g, &format!("s{t}"))).collect();

    let writers: Vec<_> = streams
        .iter()
        .enumerate()
        .map(|(t, &s)| {
            let e = e.clone();
            thread::spawn(move || {
                let fh = open_writer(&e, s);
                for n in 0..MESSAGES {
                    let message = format!("{t}:{n}");
                    assert_eq!(write(&e, fh, message.as_bytes()), Ok(message.len()));
                }
                e.release(fh);
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }

    let order = open_reader(&e, order_ino(&e, g));
    let readers: Vec<u64> = streams.iter().map(|&s| open_reader(&e, s)).collect();
    let mut next = [0usize; THREADS];
    let mut switches = 0;
    let mut previous = usize::MAX;
    for _ in 0..THREADS * MESSAGES {
        let line = read_now(&e, order, 100).expect("an order line per message");
        let name = String::from_utf8(line).unwrap();
        let t: usize = name.strip_prefix('s').and_then(|n| n.strip_suffix('\n')).unwrap().parse().unwrap();
        let message = read_now(&e, readers[t], 100).expect("the stream has the message order names");
        assert_eq!(message, format!("{t}:{}", next[t]).into_bytes());
        next[t] += 1;
        if t != previous {
            switches += 1;
            previous = t;
        }
    }
    expect_errno(&e, order, Errno::EAGAIN);
    for &r in &readers {
        expect_errno(&e, r, Errno::EAGAIN);
    }
    assert_eq!(next, [MESSAGES; THREADS]);
    assert!(switches >= THREADS, "every stream appears in order");
}
