//! Scenario 2: one writer, N readers (1, 10, 100, 1000) of 64-byte messages.
//!
//! - Flat out (repeated in full mode, best kept): the writer sends (deliveries budget ÷ N) messages as fast as it can; the
//!   result is deliveries (messages × readers) per second until the last reader has all.
//!   The ceiling's figure is its read rate with N readers reading flat out.
//! - Paced: the writer sends at a fixed rate (1000/s up to 100 readers, 100/s for 1000) and
//!   readers record each delivery's latency: p50/p99/p99.9.

use super::{Budget, StreamRun, measure_grid, run_ceiling, run_stream};
use crate::report::{fmt_rate, fmt_us, progress};
use crate::results::{Cell, Fanout, Grid, Latency};
use crate::systems::{Env, Lab, System};
use crate::worker::Stop;

pub const READERS: [usize; 4] = [1, 10, 100, 1000];
/// (readers, messages per second) of the paced runs.
pub const PACED: [(usize, u64); 4] = [(1, 1000), (10, 1000), (100, 1000), (1000, 100)];
const SIZE: usize = 64;
const SATURATION_SYSTEMS: [System; 7] = [
    System::Ceiling,
    System::Mqfs,
    System::MqfsCoalesce,
    System::FifoTee,
    System::Tail,
    System::Msgfs,
    System::Redis,
];
const PACED_SYSTEMS: [System; 6] =
    [System::Mqfs, System::MqfsCoalesce, System::FifoTee, System::Tail, System::Msgfs, System::Redis];

pub fn paced_label(readers: usize, rate: u64) -> String {
    format!("{readers} reader{} @ {rate}/s", if readers == 1 { "" } else { "s" })
}

pub fn saturation(env: &Env, budget: &Budget) -> Grid<Fanout> {
    let mut lab = Lab::new(env, "s2", "");
    let mut grid = Grid::new(READERS.iter().map(|n| format!("N = {n}")).collect());
    grid.rows = measure_grid(
        budget,
        &SATURATION_SYSTEMS,
        READERS.len(),
        budget.rounds,
        |system, column| {
            let readers = READERS[column];
            let cell = flat_out(&mut lab, system, readers, budget);
            progress("fan-out", system, &format!("N={readers}"), &cell, |f| {
                format!(
                    "{} deliveries/s, {:.1} per read",
                    fmt_rate(f.deliveries_per_s),
                    f.per_read.unwrap_or(1.0)
                )
            });
            cell
        },
        |new, old| new.deliveries_per_s > old.deliveries_per_s,
    );
    grid
}

pub fn flat_out(lab: &mut Lab, system: System, readers: usize, budget: &Budget) -> Cell<Fanout> {
    let plumbing = lab.plumb(system, readers, SIZE)?;
    if system == System::Ceiling {
        let rates = run_ceiling(&plumbing, readers, 0, SIZE, budget.run)?;
        return Ok(Fanout { deliveries_per_s: rates.reads, per_read: None, caveat: None });
    }
    let run = StreamRun {
        readers,
        writers: 1,
        size: SIZE,
        count: (budget.deliveries / readers as u64).max(20),
        duration: budget.run,
        rate: 0,
        stop: Stop::End,
        ends: 1,
        deadline: budget.run + budget.grace,
    };
    let outcome = run_stream(&plumbing, &run, &mut |_| Ok(()))?;
    if outcome.messages == 0 {
        return Err(outcome.caveat().unwrap_or_else(|| "nothing delivered".into()));
    }
    Ok(Fanout {
        deliveries_per_s: outcome.deliveries_per_s(),
        per_read: Some(outcome.per_read()),
        caveat: outcome.caveat(),
    })
}

pub fn paced(env: &Env, budget: &Budget) -> Grid<Latency> {
    let mut lab = Lab::new(env, "s2p", "");
    let mut grid = Grid::new(PACED.iter().map(|&(n, rate)| paced_label(n, rate)).collect());
    grid.rows = measure_grid(
        budget,
        &PACED_SYSTEMS,
        PACED.len(),
        1,
        |system, column| {
            let (readers, rate) = PACED[column];
            let cell = at_rate(&mut lab, system, readers, rate, budget);
            progress("paced", system, &paced_label(readers, rate), &cell, |l| {
                format!("p50 {} p99 {}", fmt_us(l.p50), fmt_us(l.p99))
            });
            cell
        },
        |_, _| false,
    );
    grid
}

pub fn at_rate(lab: &mut Lab, system: System, readers: usize, rate: u64, budget: &Budget) -> Cell<Latency> {
    let plumbing = lab.plumb(system, readers, SIZE)?;
    let count = (rate as f64 * budget.paced.as_secs_f64()).ceil() as u64;
    let run = StreamRun {
        readers,
        writers: 1,
        size: SIZE,
        count,
        duration: std::time::Duration::ZERO,
        rate,
        stop: Stop::End,
        ends: 1,
        deadline: budget.paced + budget.grace,
    };
    let outcome = run_stream(&plumbing, &run, &mut |_| Ok(()))?;
    Latency::from_hist(&outcome.hist, outcome.caveat())
}
