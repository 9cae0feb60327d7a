//! The report's part for issue 15: mqfs across two mounts of one nats-server beside a plain
//! async-nats client through the same server, with the ratios of the same run; and its goals.

use std::fmt::Write;

use super::format::{fmt_rate, fmt_us, percent, times};
use super::sections::latency_cell;
use super::table::{Notes, cells_row, ratio_row, table};
use super::{Goal, image};
use crate::results::{Grid, Nats};
use crate::scenarios::nats::{RATE, READERS};
use crate::systems::System;

const PEERS: [System; 2] = [System::Jetstream, System::NatsCore];

pub fn section_nats(out: &mut String, n: &Nats, images: &[String]) {
    let _ = write!(
        out,
        "## 9. Across NATS mounts\n\nTwo mqfs mounts, A and B, of one nats-server that the bench starts with \
         JetStream (`mqfs nats://127.0.0.1:PORT DIR -f -o prefix=bench_s9` twice): one writer on mount A, 1 or \
         10 readers of the same stream on mount B, each its own process with its own open file; 64-byte \
         messages. Beside it, through the same server, a plain async-nats client: **NATS JetStream**, a stream \
         with file storage, each publish waiting for its acknowledgement, one ordered pull consumer per reader \
         (new messages only; mqfs's mount follows each group with the same kind); **NATS core**, publishes not acknowledged, one subscription per reader.\n\n\
         **The fair comparison is NATS JetStream.** mqfs's write(2) returns once JetStream acknowledged the \
         message (and mount A applied it), so a writer has one message in flight, as that publisher does; its \
         readers get every message of the stream in order, as an ordered consumer does. Core NATS stores and \
         acknowledges nothing: the floor under any NATS path, shown for scale. Mount B reads one consumer per \
         group and fans it out to its readers; the raw client has the server deliver to a consumer per \
         reader.\n\n"
    );
    let mut notes = Notes::default();
    out.push_str(
        "Flat out, deliveries (messages × readers) per second until the last reader has every message; then \
         mqfs's rate over the peer's (above 100% means mqfs is faster):\n\n",
    );
    let mut rows = grid_rows(&n.rates, &mut notes, |f| fmt_rate(f.deliveries_per_s));
    for peer in PEERS {
        let label = format!("{} ÷ {}", System::MqfsNats.label(), peer.label());
        rows.push(ratio_row(label, &n.rates, System::MqfsNats, peer, |f| f.deliveries_per_s, percent));
    }
    table(out, &header("deliveries/s", &n.rates), &rows);
    let _ = write!(
        out,
        "At {RATE} messages per second, p50 / p99 of the time from just before the write (or publish) to a \
         reader's read returning, over all readers' deliveries; then mqfs's p99 over the peer's (below 1 means \
         mqfs is faster):\n\n"
    );
    let mut rows = grid_rows(&n.latency, &mut notes, latency_cell);
    for peer in PEERS {
        let label = format!("{} p99 ÷ {} p99", System::MqfsNats.label(), peer.label());
        rows.push(ratio_row(label, &n.latency, System::MqfsNats, peer, |l| l.p99, times));
    }
    table(out, &header("latency", &n.latency), &rows);
    notes.render(out);
    image(out, images, "nats-rate.svg", "deliveries per second across NATS mounts and through async-nats");
    image(out, images, "nats-latency.svg", "p99 latency across NATS mounts and through async-nats");
}

fn header<T>(first: &str, grid: &Grid<T>) -> Vec<String> {
    std::iter::once(first.to_string()).chain(grid.columns.iter().cloned()).collect()
}

fn grid_rows<T: super::table::Caveat>(
    grid: &Grid<T>,
    notes: &mut Notes,
    text: impl Fn(&T) -> String,
) -> Vec<Vec<String>> {
    grid.rows
        .iter()
        .map(|(system, cells)| cells_row(system.label(), cells, &grid.columns, notes, &text))
        .collect()
}

/// Issue 15's goals: against async-nats JetStream through the same server, same run.
pub fn goals(n: Option<&Nats>) -> Vec<Goal> {
    let mut goals = Vec::new();
    for (col, readers) in READERS.iter().enumerate() {
        let goal = format!("NATS, 1→{readers} across two mounts: ≥ 70% of async-nats JetStream's rate");
        goals.push(judge(goal, n.map(|n| &n.rates), col, |mine, raw| {
            let r = mine.deliveries_per_s / raw.deliveries_per_s;
            let measured = format!(
                "{} ({} vs {} deliveries/s)",
                percent(r),
                fmt_rate(mine.deliveries_per_s),
                fmt_rate(raw.deliveries_per_s)
            );
            (measured, r >= 0.7)
        }));
    }
    for (col, readers) in READERS.iter().enumerate() {
        let goal = format!(
            "NATS, {readers} reader{} at {RATE} msg/s: p99 within 2× async-nats JetStream's",
            if *readers == 1 { "" } else { "s" }
        );
        goals.push(judge(goal, n.map(|n| &n.latency), col, |mine, raw| {
            let r = mine.p99 / raw.p99;
            (format!("{} ({} vs {})", times(r), fmt_us(mine.p99), fmt_us(raw.p99)), r <= 2.0)
        }));
    }
    goals
}

/// The goal judged on mqfs's and async-nats JetStream's cells of column `col`, or why it
/// could not be.
fn judge<T>(
    goal: String,
    grid: Option<&Grid<T>>,
    col: usize,
    met: impl Fn(&T, &T) -> (String, bool),
) -> Goal {
    let cell = |system| grid.and_then(|g| g.cell(system, col));
    match (cell(System::MqfsNats), cell(System::Jetstream)) {
        (Some(Ok(mine)), Some(Ok(raw))) => {
            let (measured, met) = met(mine, raw);
            Goal { goal, measured, met: Some(met) }
        }
        (Some(Err(e)), _) | (_, Some(Err(e))) => Goal { goal, measured: e.clone(), met: None },
        _ => Goal { goal, measured: "—".into(), met: None },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{Cell, Fanout, Latency};

    fn rate(deliveries_per_s: f64) -> Cell<Fanout> {
        Ok(Fanout { deliveries_per_s, per_read: Some(1.0), caveat: None })
    }

    fn p99(p99: f64) -> Cell<Latency> {
        Ok(Latency { p50: p99 / 2.0, p99, p999: p99, max: p99, samples: 100, caveat: None })
    }

    #[test]
    fn goals_hold_mqfs_against_jetstream_column_by_column() {
        let mut rates = Grid::new(vec!["1→1".into(), "1→10".into()]);
        rates.rows = vec![
            (System::MqfsNats, vec![rate(7_000.0), rate(6_000.0)]),
            (System::Jetstream, vec![rate(10_000.0), rate(10_000.0)]),
            (System::NatsCore, vec![rate(1e6), rate(1e6)]),
        ];
        let mut latency = Grid::new(vec!["1".into(), "10".into()]);
        latency.rows = vec![
            (System::MqfsNats, vec![p99(800.0), Err("not measured: no NATS mount".into())]),
            (System::Jetstream, vec![p99(400.0), p99(400.0)]),
        ];
        let goals = goals(Some(&Nats { rates, latency }));
        let met: Vec<Option<bool>> = goals.iter().map(|g| g.met).collect();
        assert_eq!(met, [Some(true), Some(false), Some(true), None]);
        assert_eq!(goals[1].measured, "60% (6.00 k vs 10.0 k deliveries/s)");
        assert_eq!(goals[2].measured, "2.00× (800 µs vs 400 µs)");
        assert_eq!(goals[3].measured, "not measured: no NATS mount");
        assert!(super::goals(None).iter().all(|g| g.met.is_none()));
    }
}
