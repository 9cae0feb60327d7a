//! Section 7, the disk store (issue 13): durable writes beside Redis's append-only file and
//! NATS JetStream, the start-up of a filled store, and a long history held on disk.

use std::fmt::Write;

use super::format::{fmt_bytes, fmt_rate, percent, times};
use super::image;
use super::sections::memory_table;
use super::table::{Notes, cells_row, or_dash, ratio, ratio_rows, table};
use crate::results::{Cell, Memory, Results, Startup};
use crate::scenarios::{durable, memory};
use crate::systems::System;

pub fn section_disk(out: &mut String, results: &Results, images: &[String]) {
    out.push_str(
        "## 7. The disk store\n\n`mqfs STORE DIR` mounts a disk-backed mqfs whose groups keep their history in \
         STORE's files; a group's `sync` setting says when a write is durable (`never`: in the files once write(2) \
         returns, on stable storage when the kernel writes it back; `always`: write(2) returns after fdatasync, \
         concurrent writers sharing one). The stores of every system here are in one directory of the run (see the \
         notes under the machine table for its file system). One writer, one reader on the disk mount with `sync \
         never` is in [section 1](#1-one-writer-one-reader)'s table, beside the in-memory mount.\n\n",
    );
    if let Some(grid) = &results.durable {
        section_durable(out, grid, images);
    }
    if let Some(cell) = &results.startup {
        section_startup(out, cell);
    }
    if let Some(cell) = &results.history {
        section_history(out, cell);
    }
}

fn section_durable(
    out: &mut String,
    grid: &crate::results::Grid<crate::results::Throughput>,
    images: &[String],
) {
    let _ = write!(
        out,
        "### Durable writes\n\nWriters flat out into one queue or log, {} B messages, no readers: messages per \
         second whose write returned (or was acknowledged), all writers together, over the same window (they \
         start together). Several producers of one queue or log write to one place: one mqfs group (its \
         `sync always`, `replay all`) with a stream per writer (the kernel lets one write(2) at a time into a \
         file, so writers of one stream could never share a sync; `order` keeps the group's one sequence), one \
         Redis stream (XADD, waiting for each reply; `appendonly yes`), one JetStream stream with file storage \
         (each publish waits for its acknowledgement). Each writer is its own \
         process with its own open file or connection.\n\n\
         - **mqfs disk, sync always**: acknowledged = on stable storage (fdatasync before write(2) returns).\n\
         - **Redis AOF always**: `appendfsync always`, acknowledged after the AOF is fsynced.\n\
         - **Redis AOF everysec**: the AOF is fsynced once a second; a power loss can lose the last second.\n\
         - **NATS JetStream**: nats-server, run with its defaults, writes each message to its files before \
         acknowledging it but fsyncs only periodically (`sync_interval`, 2 minutes by default; `always` would \
         fsync every write): a power loss can lose acknowledged messages, as with `sync never`.\n\
         - **mqfs disk, sync never**: for reference, what the same writes cost when only the kernel decides when they \
         reach the disk.\n\n\
         Rates bound by fsync follow the disk's flush latency, which on this virtual machine varies several-fold from \
         one second to the next (other work shares the disk): compare the systems of one column, measured close \
         together, and prefer a full run's best-of-rounds to --quick.\n\n",
        durable::SIZE
    );
    let mut notes = Notes::default();
    let mut header = vec!["messages/s".to_string()];
    header.extend(grid.columns.iter().cloned());
    header.push(format!("{} ÷ {}", grid.columns[1], grid.columns[0]));
    let mut rows = Vec::new();
    for (system, cells) in &grid.rows {
        let mut row = cells_row(system.label(), cells, &grid.columns, &mut notes, |t| fmt_rate(t.msgs_per_s));
        let scaling =
            ratio(grid.get(*system, 1).map(|t| t.msgs_per_s), grid.get(*system, 0).map(|t| t.msgs_per_s));
        row.push(or_dash(scaling.map(times)));
        rows.push(row);
    }
    table(out, &header, &rows);
    notes.render(out);
    let peers = [System::RedisAlways, System::RedisEverysec, System::Jetstream];
    let ratios = ratio_rows(grid, System::MqfsAlways, &peers, |t| t.msgs_per_s);
    if !ratios.is_empty() {
        out.push_str("mqfs `sync always` relative to the others (above 1 means mqfs is faster):\n\n");
        let mut header = vec!["ratio".to_string()];
        header.extend(grid.columns.iter().cloned());
        table(out, &header, &ratios);
    }
    image(out, images, "durable.svg", "durable writes per second with 1 and 8 writers");
}

fn section_startup(out: &mut String, cell: &Cell<Startup>) {
    out.push_str("### Start-up of a store\n\n");
    let s = match cell {
        Ok(s) => s,
        Err(e) => return why_not(out, e),
    };
    let _ = write!(
        out,
        "A store is filled through a disk-backed mount: {} groups (`sync never`, `replay all`), one stream each, one \
         writer process per group writing {} B messages flat out; then it is unmounted. Start-up is the time from \
         starting `mqfs STORE DIR` until `ls DIR` answers: first with the store's files in the page cache, then cold, \
         after `sync` and `echo 3 > /proc/sys/vm/drop_caches` (which also evicts the mqfs binary).\n\n",
        s.groups, s.message_size
    );
    let payload = s.messages as f64 * s.message_size as f64;
    let mut rows = vec![
        vec!["messages".into(), format!("{} ({} of payload)", s.messages, fmt_bytes(payload))],
        vec![
            "fill".into(),
            format!(
                "{:.1} s ({} msg/s, {} writers)",
                s.fill_seconds,
                fmt_rate(s.messages as f64 / s.fill_seconds),
                s.groups
            ),
        ],
        vec!["store on disk".into(), fmt_bytes(s.store_bytes as f64)],
        vec!["start-up, page cache".into(), format!("**{:.0} ms**", s.warm_ms)],
        vec![
            "start-up, cold".into(),
            match &s.cold_ms {
                Ok(ms) => format!("**{ms:.0} ms**"),
                Err(e) => e.clone(),
            },
        ],
        vec![
            "messages the groups' ctl count after the remount".into(),
            or_dash(s.recovered.map(|n| n.to_string())),
        ],
    ];
    if let Some(caveat) = &s.caveat {
        rows.push(vec!["note".into(), caveat.clone()]);
    }
    table(out, &["".into(), "".into()], &rows);
}

fn section_history(out: &mut String, cell: &Cell<Memory>) {
    out.push_str("### History on disk\n\n");
    let m = match cell {
        Ok(m) => m,
        Err(e) => return why_not(out, e),
    };
    let _ = write!(
        out,
        "One writer writes {} of {} messages into one stream of a disk-backed mount (`sync never`, `replay all`), \
         which retains them all; the daemon's resident memory is sampled (VmRSS) once they are written. A late \
         `replay all` reader then reads the whole history back from the files, in message mode ({} per read).\n\n",
        fmt_bytes(m.payload() as f64),
        crate::report::size_label(memory::HISTORY_SIZE),
        crate::report::size_label(memory::HISTORY_SIZE)
    );
    memory_table(out, m);
    let _ = writeln!(
        out,
        "RSS holding the history is {} of its payload.\n",
        percent(m.rss_after as f64 / m.payload() as f64)
    );
}

/// A scenario without figures: why.
fn why_not(out: &mut String, reason: &str) {
    match reason.strip_prefix("not measured: ") {
        Some(reason) => {
            let _ = writeln!(out, "Not measured: {reason}\n");
        }
        None => {
            let _ = writeln!(out, "**Failed**: {reason}\n");
        }
    }
}
