//! Load with invariants: W writer processes × R reader processes × G groups on one mount, every
//! message sequence-numbered and checksummed (tests/mqcheck/mqcheck.py). Every reader checks,
//! per writer, that nothing was lost, nothing duplicated, the order kept and the bytes intact;
//! in message mode also that no read spans two messages and that small buffers get big
//! messages in parts (sizes from 20 bytes to 1.6 MB straddle 1500-byte, 4K and 64K buffers and
//! the kernel's 1 MiB request). A checker per group reads `order` next to one cursor per
//! stream and checks that `order` names the stream of every message, in the order each writer
//! wrote them across streams, and nothing more. A coalesce group is read with buffers of
//! every size, and by late readers that, once the writers are done, must get full buffers
//! until the backlog is drained. Afterwards, with every message read, the groups retain
//! nothing (replay off), and removing the streams ends every reader with end-of-file.
//!
//! CI runs 4 writers × 8 readers × 2 groups plus a coalesce group, 500 messages a writer.
//! `MQFS_SOAK=1` runs the 8 × 32 × 4 with 1000 messages a writer.

mod common;
mod mqcheck;

use common::{Mount, Proc, wait_until};
use mqcheck::{assert_healthy, ctl_count, finish, join, json_u64, mqcheck, opts, sized, soak};
use std::time::Duration;

struct Sizes {
    writers: u32,
    readers: u32,
    groups: u32,
    count: u32,
}

const STREAMS: u32 = 2;

/// The readers' buffers: 64K fits most messages, 4K and 1500 bytes split many, 2 MiB holds
/// even the messages the kernel passes on in several requests.
const BUFFERS: [u32; 4] = [65536, 4096, 1500, 2 << 20];

struct Group {
    dir: String,
    coalesce: bool,
    writer_ids: Vec<u32>,
    readers: Vec<Proc>,
    order: Proc,
}

/// `mqcheck.py reader` arguments for stream `index` of `dir`.
fn reader_args(dir: &str, index: u32, buf: u32, writers: &str, count: &str) -> Vec<String> {
    opts(&[
        ("path", &format!("{dir}/s{index}")),
        ("index", &index.to_string()),
        ("streams-count", &STREAMS.to_string()),
        ("buf", &buf.to_string()),
        ("writers", writers),
        ("count", count),
    ])
}

#[test]
fn writers_readers_and_groups_lose_duplicate_reorder_and_alter_nothing() {
    let sizes = sized(
        Sizes { writers: 4, readers: 8, groups: 2, count: 500 },
        Sizes { writers: 8, readers: 32, groups: 4, count: 1000 },
    );
    let deadline = sized(Duration::from_secs(300), Duration::from_secs(3600));
    let m = Mount::new();
    let count = sizes.count.to_string();
    let stream_names: Vec<String> = (0..STREAMS).map(|i| format!("s{i}")).collect();

    // Message-mode groups g0.., then the coalesce group gc.
    let mut groups = Vec::new();
    for g in 0..=sizes.groups {
        let coalesce = g == sizes.groups;
        let dir = if coalesce { "gc".to_string() } else { format!("g{g}") };
        std::fs::create_dir(m.join(&dir)).unwrap();
        if coalesce {
            std::fs::write(m.join(format!("{dir}/ctl")), "data coalesce\n").unwrap();
        }
        for name in &stream_names {
            std::fs::write(m.join(format!("{dir}/{name}")), b"").unwrap();
        }
        // Writer ids are unique across the mount.
        let writer_ids: Vec<u32> = (0..sizes.writers).map(|w| g * 100 + w).collect();
        let writers = join(&writer_ids);
        let mut flags = vec!["--big".to_string()];
        if coalesce {
            flags.push("--coalesce".into());
        }
        let mut readers: Vec<Proc> = (0..sizes.readers)
            .map(|r| {
                let buf = BUFFERS[(r / STREAMS) as usize % BUFFERS.len()];
                let mut a = reader_args(&dir, r % STREAMS, buf, &writers, &count);
                a.extend(flags.iter().cloned());
                mqcheck("reader", &a, &m.path)
            })
            .collect();
        if coalesce {
            // Late readers: their cursors start now, they read once the writers are done.
            for index in 0..STREAMS {
                let buf = if index == 0 { 4096 } else { 65536 };
                let mut a = reader_args(&dir, index, buf, &writers, &count);
                a.extend(flags.iter().cloned());
                a.extend(["--wait-go".into(), "--full-reads".into()]);
                readers.push(mqcheck("reader", &a, &m.path));
            }
        }
        let mut a = opts(&[("group", &dir), ("streams", &join(&stream_names)), ("writers", &writers)]);
        a.extend(opts(&[("count", &count)]));
        a.extend(flags.iter().cloned());
        let order = mqcheck("order", &a, &m.path);
        groups.push(Group { dir, coalesce, writer_ids, readers, order });
    }

    // Every reader has its cursor before the first write (replay off).
    for g in &groups {
        let expect = g.readers.len() as u64 + u64::from(STREAMS);
        let ctl = m.join(format!("{}/ctl", g.dir));
        wait_until(&format!("{expect} readers open in {}", g.dir), deadline, || {
            ctl_count(&ctl, "readers") == expect
        });
    }

    let mut writers = Vec::new();
    for g in &groups {
        let paths = join(stream_names.iter().map(|n| format!("{}/{n}", g.dir)));
        for &w in &g.writer_ids {
            let mut a = opts(&[("id", &w.to_string()), ("count", &count), ("streams", &paths)]);
            a.push("--big".into());
            writers.push((format!("writer {w} of {}", g.dir), mqcheck("writer", &a, &m.path)));
        }
    }
    for (what, w) in &mut writers {
        let line = finish(w, what, deadline);
        assert_eq!(json_u64(&line, "written"), u64::from(sizes.count), "{what}: {line}");
    }

    // The writers are done: the late readers drain their backlog; the order checkers make
    // sure that nothing more is in `order`.
    for g in &mut groups {
        for late in g.readers.iter_mut().skip(sizes.readers as usize) {
            late.write_stdin(b"go\n");
        }
        g.order.close_stdin();
        let line = finish(&mut g.order, &format!("order checker of {}", g.dir), deadline);
        assert_eq!(json_u64(&line, "entries"), u64::from(sizes.writers * sizes.count), "{line}");
    }
    // Once every cursor has passed every message, nothing is retained (replay off).
    for g in &groups {
        let ctl = m.join(format!("{}/ctl", g.dir));
        wait_until(&format!("{} to retain nothing once everything is read", g.dir), deadline, || {
            ctl_count(&ctl, "messages") == 0 && ctl_count(&ctl, "bytes") == 0
        });
    }

    // Removing the streams ends every reader (end-of-file), which then reports.
    let per_stream = u64::from(sizes.writers * sizes.count / STREAMS);
    for g in &mut groups {
        for name in &stream_names {
            std::fs::remove_file(m.join(format!("{}/{name}", g.dir))).unwrap();
        }
        for (i, r) in g.readers.iter_mut().enumerate() {
            r.close_stdin();
            let what = format!("reader {i} of {}", g.dir);
            let line = finish(r, &what, deadline);
            if soak() {
                eprintln!("{what}: {line}");
            }
            assert_eq!(json_u64(&line, "messages"), per_stream, "{what}: {line}");
            // Every stream gets messages over 1 MiB: buffers below that got them in parts.
            if !g.coalesce && json_u64(&line, "buf") < 1 << 20 {
                assert!(json_u64(&line, "split_reads") > 0, "{what}: no split read: {line}");
            }
        }
    }
    assert_healthy(&m);
}
