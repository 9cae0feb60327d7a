//! Scenario 3: ping-pong between two processes over two streams at a low rate (one round
//! trip every millisecond, 64-byte messages): round-trip time p50/p99/p99.9. The ceiling
//! row is one process doing write(2) then read(2) on the ceiling's file at the same pace:
//! two FUSE round trips with nobody to wake, the floor under any FUSE ping-pong.

use std::time::{Duration, Instant};

use super::{Budget, measure_grid};
use crate::hist::Histogram;
use crate::procs::Proc;
use crate::report::{fmt_us, progress};
use crate::results::{Cell, Grid, Latency};
use crate::systems::{Env, Lab, System};

pub const INTERVAL_US: u64 = 1000;
pub const SIZE: usize = 64;
const SYSTEMS: [System; 6] =
    [System::Ceiling, System::Mqfs, System::Fifo, System::Tail, System::Msgfs, System::Redis];

pub fn run(env: &Env, budget: &Budget) -> Grid<Latency> {
    let mut lab = Lab::new(env, "s3", "");
    let mut grid = Grid::new(vec!["round trip".into()]);
    grid.rows = measure_grid(
        budget,
        &SYSTEMS,
        1,
        1,
        |system, _| {
            let cell = one(&mut lab, system, budget);
            progress("ping-pong", system, "RTT", &cell, |l| {
                format!("p50 {} p99 {} p99.9 {}", fmt_us(l.p50), fmt_us(l.p99), fmt_us(l.p999))
            });
            cell
        },
        |_, _| false,
    );
    grid
}

fn one(lab: &mut Lab, system: System, budget: &Budget) -> Cell<Latency> {
    let there = lab.plumb(system, 1, SIZE)?;
    let back = lab.plumb(system, 1, SIZE)?;
    let warmup = (budget.pings / 10).min(50);
    let total = warmup + budget.pings;
    let ping_args = |input: &str, output: &str, check: bool| -> Vec<String> {
        vec![
            "ping".into(),
            format!("in={input}"),
            format!("out={output}"),
            format!("size={SIZE}"),
            format!("count={}", budget.pings),
            format!("warmup={warmup}"),
            format!("interval_us={INTERVAL_US}"),
            format!("check={}", u8::from(check)),
        ]
    };
    let by = Instant::now() + Duration::from_micros(total * INTERVAL_US) + Duration::from_secs(30);
    if system == System::Ceiling {
        let ping = Proc::worker("ping", &ping_args(&there.reader.to_arg(), &there.writer.to_arg(), false))?;
        return result(&ping, by);
    }
    let mut pong = Proc::worker(
        "pong",
        &[
            "pong".into(),
            format!("in={}", there.reader.nth(0).to_arg()),
            format!("out={}", back.writer.to_arg()),
            format!("size={SIZE}"),
            format!("count={total}"),
        ],
    )?;
    pong.expect_line("ready", Instant::now() + Duration::from_secs(30))?;
    let ping = Proc::worker("ping", &ping_args(&back.reader.nth(0).to_arg(), &there.writer.to_arg(), true))?;
    let latency = result(&ping, by);
    // Pong ends by itself after the last round; a kill would race its last requests.
    let _ = pong.wait(Instant::now() + Duration::from_secs(5));
    latency
}

fn result(ping: &Proc, by: Instant) -> Cell<Latency> {
    let line = ping.expect_line("result", by)?;
    let hist = line.split_whitespace().find_map(|kv| kv.strip_prefix("hist=")).unwrap_or("");
    Latency::from_hist(&Histogram::decode(hist)?, None)
}
