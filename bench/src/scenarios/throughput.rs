//! Scenario 1: one writer, one reader, messages of 64 B to 1 MiB written as fast as the
//! writer can: messages and bytes per second from the first write to the last delivery.
//! mqfs runs in memory and, the same way, on a disk-backed mount (`sync never`).
//! Flat-out runs are repeated (full mode) and the best kept. The ceiling runs a writer and
//! a reader side by side and reports its write+read pair rate
//! (requests per second ÷ 2), the most a FUSE file system can deliver one message for one
//! write and one read.

use super::{Budget, StreamRun, measure_grid, run_ceiling, run_stream};
use crate::report::{fmt_bytes, fmt_rate, progress, size_label};
use crate::results::{Cell, Grid, Throughput};
use crate::systems::{Env, Lab, System};
use crate::worker::Stop;

pub const SIZES: [usize; 4] = [64, 4 << 10, 64 << 10, 1 << 20];
/// FUSE worker threads tried by [`threads`] (mqfs's default is 4).
pub const THREADS: [usize; 3] = [1, 2, 4];
const SYSTEMS: [System; 7] = [
    System::Ceiling,
    System::Mqfs,
    System::MqfsDisk,
    System::Fifo,
    System::Tail,
    System::Msgfs,
    System::Redis,
];

pub fn run(env: &Env, budget: &Budget) -> Grid<Throughput> {
    let mut lab = Lab::new(env, "s1", "");
    let mut grid = Grid::new(SIZES.iter().map(|&s| size_label(s)).collect());
    grid.rows = measure_grid(
        budget,
        &SYSTEMS,
        SIZES.len(),
        budget.rounds,
        |system, column| {
            let size = SIZES[column];
            let cell = one(&mut lab, system, size, budget);
            progress("1→1", system, &size_label(size), &cell, |t| {
                format!("{} msg/s, {}/s", fmt_rate(t.msgs_per_s), fmt_bytes(t.bytes_per_s))
            });
            cell
        },
        |new, old| new.msgs_per_s > old.msgs_per_s,
    );
    grid
}

/// One 1→1 run of `size`-byte messages on `system` (the ceiling: its pair rate).
pub fn one(lab: &mut Lab, system: System, size: usize, budget: &Budget) -> Cell<Throughput> {
    let plumbing = lab.plumb(system, 1, size)?;
    if system == System::Ceiling {
        let rates = run_ceiling(&plumbing, 1, 1, size, budget.run)?;
        let pair = (rates.reads + rates.writes) / 2.0;
        return Ok(Throughput { msgs_per_s: pair, bytes_per_s: pair * size as f64, caveat: None });
    }
    let run = StreamRun {
        readers: 1,
        writers: 1,
        size,
        count: (budget.bytes / size as u64).max(100),
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
    Ok(Throughput {
        msgs_per_s: outcome.deliveries_per_s(),
        bytes_per_s: outcome.bytes_per_s(),
        caveat: outcome.caveat(),
    })
}

/// 1→1 at 64 B for mqfs (`-o threads=N`) and the ceiling (N workers) with each of
/// [`THREADS`]: how much the number of FUSE worker threads matters on this machine.
pub fn threads(env: &Env, budget: &Budget) -> Grid<Throughput> {
    let mut labs: Vec<Lab> = THREADS.iter().map(|&n| Lab::with_threads(env, &format!("s1t{n}"), n)).collect();
    let mut grid =
        Grid::new(THREADS.iter().map(|n| format!("{n} thread{}", if *n == 1 { "" } else { "s" })).collect());
    grid.rows = measure_grid(
        budget,
        &[System::Ceiling, System::Mqfs],
        THREADS.len(),
        budget.rounds,
        |system, column| {
            let cell = one(&mut labs[column], system, 64, budget);
            progress("threads", system, &grid_label(THREADS[column]), &cell, |t| {
                format!("{} msg/s", fmt_rate(t.msgs_per_s))
            });
            cell
        },
        |new, old| new.msgs_per_s > old.msgs_per_s,
    );
    grid
}

fn grid_label(threads: usize) -> String {
    format!("threads={threads}")
}
