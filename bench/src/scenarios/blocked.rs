//! Scenario 5: 10,000 readers (10 processes × 1000 threads, each with its own open file)
//! blocked on one stream. Once every reader thread sleeps in the kernel, the serving process
//! (mqfs, tee, redis-server) is sampled: resident memory, threads, and CPU used while nothing
//! happens. Then one 64-byte message is written: the time until the last reader has it.

use std::time::{Duration, Instant};

use super::{Budget, StreamRun, measure_grid, run_stream};
use crate::procs::{self, Proc};
use crate::report::{fmt_bytes, progress};
use crate::results::{Blocked, Cell, Grid};
use crate::systems::{Env, Lab, System};
use crate::worker::Stop;

const SIZE: usize = 64;
const SYSTEMS: [System; 5] = [System::Mqfs, System::FifoTee, System::Tail, System::Msgfs, System::Redis];

pub fn run(env: &Env, budget: &Budget) -> Grid<Blocked> {
    let mut grid = Grid::new(vec![format!("{} blocked readers", budget.blocked_readers)]);
    let mut fresh = 0;
    grid.rows = measure_grid(
        budget,
        &SYSTEMS,
        1,
        1,
        |system, _| {
            // A fresh mqfs (and redis-server) for each, so that memory is this scenario's alone.
            fresh += 1;
            let mut lab = Lab::new(env, &format!("s5{fresh}"), "");
            let cell = one(&mut lab, system, budget);
            progress("blocked", system, &budget.blocked_readers.to_string(), &cell, |b| {
                format!(
                    "all in {:.1} ms, server RSS {}, threads {:?}",
                    b.all_ms,
                    b.rss.map(|r| fmt_bytes(r as f64)).unwrap_or_default(),
                    b.threads
                )
            });
            cell
        },
        |_, _| false,
    );
    grid
}

/// Waits until every task of every reader process sleeps in the kernel.
fn wait_asleep(procs: &[Proc], deadline: Instant) -> Result<(), String> {
    loop {
        let asleep = procs.iter().all(|p| {
            let (asleep, all) = procs::sleeping_tasks(p.pid());
            all > 1 && asleep == all
        });
        if asleep {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("readers did not all block in time".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn one(lab: &mut Lab, system: System, budget: &Budget) -> Cell<Blocked> {
    let readers = budget.blocked_readers;
    let plumbing = lab.plumb(system, readers, SIZE)?;
    let window = if budget.quick { Duration::from_millis(300) } else { Duration::from_secs(1) };
    let mut sample = (None, None, None);
    let run = StreamRun {
        readers,
        writers: 1,
        size: SIZE,
        count: 1,
        duration: Duration::ZERO,
        rate: 0,
        stop: Stop::Count(1),
        ends: 0,
        deadline: Duration::from_secs(30),
    };
    let server = plumbing.server;
    let outcome = run_stream(&plumbing, &run, &mut |procs| {
        wait_asleep(procs, Instant::now() + Duration::from_secs(60))?;
        if let Some(pid) = server {
            let cpu_before = procs::cpu_seconds(pid);
            std::thread::sleep(window);
            let cpu_after = procs::cpu_seconds(pid);
            let idle_cpu = cpu_before.zip(cpu_after).map(|(a, b)| (b - a) / window.as_secs_f64());
            sample = (procs::rss(pid), procs::threads(pid), idle_cpu);
        }
        Ok(())
    })?;
    if outcome.messages == 0 {
        return Err(outcome.caveat().unwrap_or_else(|| "nothing delivered".into()));
    }
    Ok(Blocked {
        readers,
        received: outcome.messages,
        all_ms: outcome.hist.max() as f64 / 1e6,
        p50_ms: outcome.hist.quantile(0.5) as f64 / 1e6,
        rss: sample.0,
        threads: sample.1,
        idle_cpu: sample.2,
        caveat: outcome.caveat(),
    })
}
