//! One section per scenario: its explanation, its table(s) with absolute figures and ratios,
//! and its plot.

use std::fmt::Write;

use super::format::{fmt_bytes, fmt_rate, fmt_us, percent, times};
use super::image;
use super::table::{Notes, cells_row, or_dash, ratio, ratio_row, ratio_rows, show, table};
use crate::results::{Blocked, Cell, Fanout, Grid, Latency, ManyWriters, Memory, Throughput};
use crate::scenarios::{latency, throughput, writers};
use crate::systems::System;

pub fn section_throughput(out: &mut String, grid: &Grid<Throughput>, images: &[String]) {
    out.push_str(
        "## 1. One writer, one reader\n\nMessages per second and bytes per second, one writer flat out, one \
         reader. The ceiling's figure is its write+read pair rate: (writes + reads) per second ÷ 2. **mqfs disk** \
         is the same run on a disk-backed mount (`mqfs STORE DIR`), its group `sync never` and `replay all`: every \
         message goes to the store's files.\n\n",
    );
    let mut notes = Notes::default();
    let mut header = vec!["system".to_string()];
    header.extend(grid.columns.iter().cloned());
    let mut rows = Vec::new();
    for (system, cells) in &grid.rows {
        let row = cells_row(system.label(), cells, &grid.columns, &mut notes, |t| {
            format!("{} msg/s<br>{}/s", fmt_rate(t.msgs_per_s), fmt_bytes(t.bytes_per_s))
        });
        rows.push(row);
    }
    table(out, &header, &rows);
    notes.render(out);
    out.push_str("mqfs relative to the others (above 1 means mqfs is faster):\n\n");
    let rate = |t: &Throughput| t.msgs_per_s;
    let mut ratios = vec![ratio_row(
        "mqfs ÷ ceiling pair rate".into(),
        grid,
        System::Mqfs,
        System::Ceiling,
        rate,
        percent,
    )];
    if grid.systems().any(|s| s == System::MqfsDisk) {
        let label = "mqfs disk (sync never) ÷ mqfs in memory".into();
        ratios.push(ratio_row(label, grid, System::MqfsDisk, System::Mqfs, rate, percent));
    }
    let peers = [System::Fifo, System::Tail, System::Msgfs, System::Redis];
    ratios.extend(ratio_rows(grid, System::Mqfs, &peers, |t| t.bytes_per_s));
    let mut header = vec!["ratio".to_string()];
    header.extend(grid.columns.iter().cloned());
    table(out, &header, &ratios);
    image(out, images, "throughput.svg", "bytes per second against message size");
}

pub fn section_threads(out: &mut String, grid: &Grid<Throughput>) {
    out.push_str(&format!(
        "### FUSE worker threads\n\nOne writer, one reader, 64 B, with N FUSE worker threads in mqfs (`-o threads=N`) \
         and in the ceiling. mqfs's default is one per core (at least 2): here {}.\n\n",
        crate::systems::ceiling::default_threads()
    ));
    let mut notes = Notes::default();
    let mut header = vec!["messages/s".to_string()];
    header.extend(grid.columns.iter().cloned());
    let mut rows = Vec::new();
    for (system, cells) in &grid.rows {
        let label = if *system == System::Ceiling { "FUSE ceiling (pair rate)" } else { system.label() };
        let row = cells_row(label, cells, &grid.columns, &mut notes, |t| fmt_rate(t.msgs_per_s));
        rows.push(row);
    }
    rows.push(ratio_row(
        "mqfs ÷ ceiling".into(),
        grid,
        System::Mqfs,
        System::Ceiling,
        |t| t.msgs_per_s,
        percent,
    ));
    table(out, &header, &rows);
    notes.render(out);
    let default = throughput::THREADS.iter().position(|&n| n == crate::systems::ceiling::default_threads());
    let best = (0..grid.columns.len())
        .filter_map(|col| Some((col, grid.get(System::Mqfs, col)?.msgs_per_s)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    if let (Some(default), Some((best, rate))) = (default, best)
        && let Some(at_default) = grid.get(System::Mqfs, default)
        && best != default
    {
        let _ = writeln!(
            out,
            "mqfs does best here with {}: {} messages/s, {} what the default {} threads give. Every thread waits \
             on /dev/fuse, and each request wakes one; with more threads than cores the wake-ups become context \
             switches (see the ceiling row: the same holds for a file system that does nothing). Until this run \
             mqfs defaulted to 4 threads; on this 2-core machine that gave a fifth of 2 threads' rate, so the \
             default became one per core.\n",
            grid.columns[best],
            fmt_rate(rate),
            times(rate / at_default.msgs_per_s),
            crate::systems::ceiling::default_threads()
        );
    }
}

pub fn section_fanout(out: &mut String, grid: &Grid<Fanout>, images: &[String]) {
    out.push_str(
        "## 2. Fan-out\n\n### Flat out\n\nOne writer, N readers, 64-byte messages: deliveries (messages × \
         readers) per second until the last reader has every message. The ceiling's figure is its read rate \
         with N readers reading flat out: the most deliveries a FUSE file system can make when each delivery \
         is one read. With one reader that is a single process's round trips one after another, while a \
         writer and a reader overlap theirs on the two cores: there a system can pass it.\n\n",
    );
    let mut notes = Notes::default();
    let mut header = vec!["system".to_string()];
    header.extend(grid.columns.iter().cloned());
    let mut rows = Vec::new();
    for (system, cells) in &grid.rows {
        let row =
            cells_row(system.label(), cells, &grid.columns, &mut notes, |f| fmt_rate(f.deliveries_per_s));
        rows.push(row);
    }
    table(out, &header, &rows);
    notes.render(out);
    out.push_str("Ratios:\n\n");
    let mut ratios = Vec::new();
    for mine in [System::Mqfs, System::MqfsCoalesce] {
        let label = format!("{} ÷ ceiling reads", mine.label());
        ratios.push(ratio_row(label, grid, mine, System::Ceiling, |f| f.deliveries_per_s, percent));
    }
    let peers = [System::FifoTee, System::Tail, System::Msgfs, System::Redis];
    ratios.extend(ratio_rows(grid, System::Mqfs, &peers, |f| f.deliveries_per_s));
    ratios.extend(ratio_rows(grid, System::MqfsCoalesce, &peers, |f| f.deliveries_per_s));
    let mut header = vec!["ratio".to_string()];
    header.extend(grid.columns.iter().cloned());
    table(out, &header, &ratios);
    let per_read: Vec<Vec<String>> = [System::MqfsCoalesce, System::FifoTee, System::Tail]
        .iter()
        .filter(|&&s| grid.systems().any(|g| g == s))
        .map(|&system| {
            let mut row = vec![system.label().to_string()];
            for col in 0..grid.columns.len() {
                row.push(or_dash(grid.get(system, col).and_then(|f| f.per_read).map(|p| format!("{p:.1}"))));
            }
            row
        })
        .collect();
    if !per_read.is_empty() {
        out.push_str(
            "Messages per read(2) for the readers that may get several at once (everything else gets exactly one): a \
             reader that keeps up gets one message per read whatever its buffer, so coalescing pays only when readers \
             fall behind.\n\n",
        );
        let mut header = vec!["messages per read".to_string()];
        header.extend(grid.columns.iter().cloned());
        table(out, &header, &per_read);
    }
    image(out, images, "fanout.svg", "deliveries per second against readers");
}

pub fn latency_cell(l: &Latency) -> String {
    format!("{} / {}", fmt_us(l.p50), fmt_us(l.p99))
}

pub fn section_paced(out: &mut String, grid: &Grid<Latency>, images: &[String]) {
    out.push_str(
        "### Latency at a fixed rate\n\nThe writer sends 64-byte messages at a fixed rate; each cell is p50 / p99 \
         of the time from just before write(2) to a reader's read returning, over all readers' deliveries.\n\n",
    );
    let mut notes = Notes::default();
    let mut header = vec!["system".to_string()];
    header.extend(grid.columns.iter().cloned());
    let mut rows = Vec::new();
    for (system, cells) in &grid.rows {
        let row = cells_row(system.label(), cells, &grid.columns, &mut notes, latency_cell);
        rows.push(row);
    }
    table(out, &header, &rows);
    notes.render(out);
    out.push_str("p99 of the peer ÷ p99 of mqfs (above 1 means mqfs is faster):\n\n");
    let mut ratios = Vec::new();
    for peer in [System::FifoTee, System::Tail, System::Msgfs, System::Redis] {
        if !grid.systems().any(|s| s == peer) {
            continue;
        }
        ratios.push(ratio_row(
            format!("{} ÷ mqfs", peer.label()),
            grid,
            peer,
            System::Mqfs,
            |l| l.p99,
            times,
        ));
    }
    let mut header = vec!["p99 ratio".to_string()];
    header.extend(grid.columns.iter().cloned());
    table(out, &header, &ratios);
    image(out, images, "latency.svg", "p99 delivery latency at a fixed rate");
}

pub fn section_pingpong(out: &mut String, grid: &Grid<Latency>, images: &[String]) {
    let _ = write!(
        out,
        "## 3. Ping-pong latency\n\nTwo processes, two streams, one {}-byte message in flight, a round trip every \
         {} µs: the round-trip time (ping's write to ping's read of the answer). The ceiling row is one process \
         doing write(2) then read(2) on the ceiling's file at the same pace: two FUSE round trips with nobody to \
         wake, the floor under a FUSE ping-pong (which takes two writes, two reads and two wake-ups).\n\n",
        latency::SIZE,
        latency::INTERVAL_US
    );
    let mut notes = Notes::default();
    let header: Vec<String> = ["system", "p50", "p99", "p99.9", "max", "round trips", "p99 ÷ mqfs p99"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mqfs_p99 = grid.get(System::Mqfs, 0).map(|l| l.p99);
    let mut rows = Vec::new();
    for (system, cells) in &grid.rows {
        let cell = cells.first();
        let mut row = vec![system.label().to_string()];
        match cell {
            Some(Ok(l)) => {
                row.extend([
                    fmt_us(l.p50),
                    fmt_us(l.p99),
                    fmt_us(l.p999),
                    fmt_us(l.max),
                    l.samples.to_string(),
                ]);
                let compared = if *system == System::Ceiling { None } else { ratio(Some(l.p99), mqfs_p99) };
                row.push(or_dash(compared.map(times)));
            }
            _ => {
                row.push(show(cell, || system.label().to_string(), &mut notes, latency_cell));
                row.extend(std::iter::repeat_n("—".to_string(), 5));
            }
        }
        rows.push(row);
    }
    table(out, &header, &rows);
    notes.render(out);
    image(out, images, "pingpong.svg", "ping-pong round-trip time");
}

pub fn section_writers(out: &mut String, grid: &Grid<ManyWriters>) {
    let _ = write!(
        out,
        "## 4. Many writers\n\n{} writers flat out into one stream, {} readers, 64-byte messages. \"Order held\" \
         means every reader got every writer's messages complete and in that writer's order. The ceiling row is \
         the bound its request rate sets: (writes + reads) per second ÷ {} requests per message.\n\n",
        writers::WRITERS,
        writers::READERS,
        writers::READERS + 1
    );
    let mut notes = Notes::default();
    let header: Vec<String> = ["system", "messages/s", "deliveries/s", "order held", "mqfs ÷ system"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mqfs = grid.get(System::Mqfs, 0).map(|w| w.msgs_per_s);
    let mut rows = Vec::new();
    for (system, cells) in &grid.rows {
        let cell = cells.first();
        let mut row = vec![system.label().to_string()];
        row.push(show(cell, || system.label().to_string(), &mut notes, |w| fmt_rate(w.msgs_per_s)));
        match cell {
            Some(Ok(w)) => {
                row.push(fmt_rate(w.deliveries_per_s));
                row.push(match w.order_errors {
                    None => "—".into(),
                    Some(0) if w.missing == 0 => "yes".into(),
                    Some(errors) => format!("**no**: {errors} out of order, {} missing", w.missing),
                });
                row.push(if *system == System::Mqfs {
                    "—".into()
                } else {
                    or_dash(ratio(mqfs, Some(w.msgs_per_s)).map(times))
                });
            }
            _ => row.extend(std::iter::repeat_n("—".to_string(), 3)),
        }
        rows.push(row);
    }
    table(out, &header, &rows);
    notes.render(out);
}

pub fn section_blocked(out: &mut String, grid: &Grid<Blocked>) {
    let readers =
        grid.rows.iter().find_map(|(_, c)| c.first()?.as_ref().ok().map(|b| b.readers)).unwrap_or(0);
    let _ = write!(
        out,
        "## 5. Blocked readers\n\n{readers} readers (threads with 64 KiB stacks in 10 processes, each with its own open \
         file or connection) block on one stream. Once every reader thread sleeps in the kernel, the process serving \
         them is sampled (resident memory, threads, CPU over a quiet second); then one 64-byte message is written. \
         \"All received\" is the time from the write to the last reader's read returning.\n\n"
    );
    let mut notes = Notes::default();
    let header: Vec<String> = [
        "system",
        "received",
        "all received",
        "median reader",
        "server",
        "server RSS",
        "server threads",
        "server CPU while idle",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut rows = Vec::new();
    for (system, cells) in &grid.rows {
        let cell = cells.first();
        let server = match system {
            System::Mqfs => "mqfs",
            System::FifoTee => "tee",
            System::Redis => "redis-server",
            _ => "(kernel only)",
        };
        let mut row = vec![system.label().to_string()];
        match cell {
            Some(Ok(b)) => {
                row.push(show(
                    cell,
                    || system.label().to_string(),
                    &mut notes,
                    |b| format!("{} / {}", b.received, b.readers),
                ));
                row.push(format!("{:.1} ms", b.all_ms));
                row.push(format!("{:.1} ms", b.p50_ms));
                row.push(server.into());
                row.push(or_dash(b.rss.map(|r| fmt_bytes(r as f64))));
                row.push(or_dash(b.threads.map(|t| t.to_string())));
                row.push(or_dash(b.idle_cpu.map(|c| format!("{:.1}% of a core", c * 100.0))));
            }
            _ => {
                row.push(show(cell, || system.label().to_string(), &mut notes, |b| b.received.to_string()));
                row.extend(std::iter::repeat_n("—".to_string(), 6));
            }
        }
        rows.push(row);
    }
    table(out, &header, &rows);
    notes.render(out);
    let kernel_only: Vec<String> = [System::Tail, System::Msgfs]
        .iter()
        .filter_map(|&s| Some(format!("{} {:.0} ms", s.label(), grid.get(s, 0)?.all_ms)))
        .collect();
    if !kernel_only.is_empty() {
        let _ = writeln!(
            out,
            "The peers with no server at all ({}) show what waking {readers} threads costs on this machine by itself: \
             each reader is a thread the scheduler has to run on one of 2 cores before its read(2) can return.\n",
            kernel_only.join(", ")
        );
    }
}

pub fn section_memory(out: &mut String, cell: &Cell<Memory>) {
    out.push_str("## 6. Memory\n\n");
    let m = match cell {
        Ok(m) => m,
        Err(e) => {
            let _ = writeln!(out, "Not measured: {e}\n");
            return;
        }
    };
    let _ = write!(
        out,
        "mqfs mounted with `-o replay=all`; one writer writes {} messages of {} bytes into one stream, which \
         retains them all. Resident memory of the mqfs process (VmRSS) before and after, against the payload. A \
         late reader then replays the whole history in message mode (one read per message).\n\n",
        m.messages, m.message_size
    );
    memory_table(out, m);
}

/// The figures of a retained history: payload, the server's memory, write and replay rates.
pub fn memory_table(out: &mut String, m: &Memory) {
    let payload = m.payload() as f64;
    let mut rows = vec![
        vec![
            "messages written / retained (ctl)".into(),
            format!("{} / {}", m.messages, or_dash(m.retained.map(|r| r.to_string()))),
        ],
        vec!["payload".into(), fmt_bytes(payload)],
        vec!["mqfs RSS before writing".into(), fmt_bytes(m.rss_before as f64)],
        vec![
            "mqfs RSS holding the history".into(),
            format!("{} = **{:.2}× payload**", fmt_bytes(m.rss_after as f64), m.rss_after as f64 / payload),
        ],
        vec![
            "of which anonymous (RssAnon, not file pages)".into(),
            or_dash(m.rss_anon.map(|a| fmt_bytes(a as f64))),
        ],
        vec![
            "growth of RSS".into(),
            format!(
                "{} = {:.2}× payload",
                fmt_bytes(m.rss_after.saturating_sub(m.rss_before) as f64),
                m.rss_after.saturating_sub(m.rss_before) as f64 / payload
            ),
        ],
        vec![
            "mqfs peak RSS (VmHWM, replay included)".into(),
            or_dash(m.rss_peak.map(|p| fmt_bytes(p as f64))),
        ],
        vec![
            "write rate".into(),
            format!(
                "{} msg/s, {}/s",
                fmt_rate(m.write_per_s),
                fmt_bytes(m.write_per_s * m.message_size as f64)
            ),
        ],
        vec![
            "replay rate of a late reader".into(),
            or_dash(
                m.replay_per_s
                    .map(|r| format!("{} msg/s, {}/s", fmt_rate(r), fmt_bytes(r * m.message_size as f64))),
            ),
        ],
        vec!["replay time, first message to last".into(), format!("{:.2} s", m.replay_seconds)],
    ];
    if let Some(caveat) = &m.caveat {
        rows.push(vec!["note".into(), caveat.clone()]);
    }
    table(out, &["".into(), "".into()], &rows);
}
