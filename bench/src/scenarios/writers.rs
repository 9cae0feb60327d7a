//! Scenario 4: eight writers into one stream, four readers, 64-byte messages: messages and
//! deliveries per second, and whether every reader saw each writer's messages complete and
//! in order (repeated in full mode, best kept). The ceiling row is the bound its request rate sets: eight writers and four
//! readers flat out, (writes + reads) ÷ 5 requests per message.

use super::{Budget, StreamRun, measure_grid, run_ceiling, run_stream};
use crate::report::{fmt_rate, progress};
use crate::results::{Cell, Grid, ManyWriters};
use crate::systems::{Env, Lab, System};
use crate::worker::Stop;

pub const WRITERS: usize = 8;
pub const READERS: usize = 4;
const SIZE: usize = 64;
const SYSTEMS: [System; 5] = [System::Ceiling, System::Mqfs, System::FifoTee, System::Tail, System::Redis];

pub fn run(env: &Env, budget: &Budget) -> Grid<ManyWriters> {
    let mut lab = Lab::new(env, "s4", "");
    let mut grid = Grid::new(vec![format!("{WRITERS} writers → {READERS} readers")]);
    grid.rows = measure_grid(
        budget,
        &SYSTEMS,
        1,
        budget.rounds,
        |system, _| {
            let cell = one(&mut lab, system, budget);
            progress("8→4", system, "64 B", &cell, |w| match w.order_errors {
                Some(errors) => {
                    format!("{} msg/s, {errors} out of order, {} missing", fmt_rate(w.msgs_per_s), w.missing)
                }
                None => format!("{} msg/s", fmt_rate(w.msgs_per_s)),
            });
            cell
        },
        |new, old| new.msgs_per_s > old.msgs_per_s,
    );
    grid
}

fn one(lab: &mut Lab, system: System, budget: &Budget) -> Cell<ManyWriters> {
    let plumbing = lab.plumb(system, READERS, SIZE)?;
    if system == System::Ceiling {
        let rates = run_ceiling(&plumbing, READERS, WRITERS, SIZE, budget.run)?;
        let messages = (rates.reads + rates.writes) / (1 + READERS) as f64;
        return Ok(ManyWriters {
            msgs_per_s: messages,
            deliveries_per_s: messages * READERS as f64,
            order_errors: None,
            missing: 0,
            caveat: None,
        });
    }
    let run = StreamRun {
        readers: READERS,
        writers: WRITERS,
        size: SIZE,
        count: (budget.deliveries / (WRITERS * READERS) as u64).max(20),
        duration: budget.run,
        rate: 0,
        stop: Stop::End,
        ends: 1,
        deadline: budget.run + budget.grace,
    };
    let outcome = run_stream(&plumbing, &run, &mut |_| Ok(()))?;
    Ok(ManyWriters {
        msgs_per_s: outcome.deliveries_per_s() / READERS as f64,
        deliveries_per_s: outcome.deliveries_per_s(),
        order_errors: Some(outcome.order_errors),
        missing: outcome.missing(),
        caveat: outcome.caveat(),
    })
}
