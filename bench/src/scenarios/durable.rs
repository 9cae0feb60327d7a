//! Scenario 7b: durable writes. Writers flat out into one queue or log (one Redis stream,
//! one JetStream subject, one mqfs group with a stream per writer: the kernel lets one
//! write(2) at a time into a file, so writers of one stream could never share a sync),
//! 64-byte messages, no readers: messages per second acknowledged, with 1 writer and with 8
//! (each its own process and open file or connection). mqfs on a disk-backed mount with `sync
//! always` (write(2) returns after fdatasync) and, for reference, `sync never`; Redis
//! appending to a stream with XADD under `appendfsync always` and `everysec`; NATS
//! JetStream's file store, each publish waiting for its acknowledgement.
//!
//! Each system's stream is warmed up once (8 writers for 1.5 s, 0.5 s with --quick) and
//! then every run writes to it. Each run starts after sync(2), so that its fsyncs do not write back what earlier runs left
//! dirty. The writers start together (a common CLOCK_MONOTONIC instant) and write for the
//! same time; the rate is everything they sent over that time.

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{Budget, measure_grid};
use crate::clock::now_ns;
use crate::endpoint::Endpoint;
use crate::procs::Proc;
use crate::report::{fmt_rate, progress};
use crate::results::{Cell, Grid, Throughput};
use crate::systems::{Env, Lab, Plumbing, System};

pub const WRITERS: [usize; 2] = [1, 8];
pub const SIZE: usize = 64;
pub const SYSTEMS: [System; 5] =
    [System::MqfsAlways, System::RedisAlways, System::RedisEverysec, System::Jetstream, System::MqfsDisk];

pub fn run(env: &Env, budget: &Budget) -> Grid<Throughput> {
    let mut lab = Lab::new(env, "s7b", "");
    let mut streams: Vec<(System, Plumbing)> = Vec::new();
    let mut grid = Grid::new(WRITERS.iter().map(|&n| writers_label(n)).collect());
    grid.rows = measure_grid(
        budget,
        &SYSTEMS,
        WRITERS.len(),
        budget.rounds,
        |system, column| {
            let writers = WRITERS[column];
            let cell = stream(&mut lab, &mut streams, system, budget)
                .and_then(|plumbing| one(plumbing, writers, budget));
            progress("durable", system, &writers_label(writers), &cell, |t| {
                format!("{} msg/s", fmt_rate(t.msgs_per_s))
            });
            cell
        },
        |new, old| new.msgs_per_s > old.msgs_per_s,
    );
    grid
}

fn writers_label(n: usize) -> String {
    format!("{n} writer{}", if n == 1 { "" } else { "s" })
}

/// The stream of `system` every run writes to, made and warmed up on first use, so that
/// first-use costs (files created, a stream's first segment) are not measured: a queue in use
/// is not fresh.
fn stream<'p>(
    lab: &mut Lab,
    streams: &'p mut Vec<(System, Plumbing)>,
    system: System,
    budget: &Budget,
) -> Result<&'p Plumbing, String> {
    let index = match streams.iter().position(|(s, _)| *s == system) {
        Some(index) => index,
        None => {
            let plumbing = lab.plumb(system, 0, SIZE)?;
            write_together(&plumbing, WRITERS[WRITERS.len() - 1], warm_up(budget))?;
            streams.push((system, plumbing));
            streams.len() - 1
        }
    };
    Ok(&streams[index].1)
}

/// How long 8 writers warm a stream up.
pub fn warm_up(budget: &Budget) -> Duration {
    Duration::from_millis(if budget.quick { 500 } else { 1500 })
}

fn one(plumbing: &Plumbing, writers: usize, budget: &Budget) -> Cell<Throughput> {
    // Write back what earlier runs left dirty, so that this run's fsyncs flush only its own.
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    let sent = write_together(plumbing, writers, budget.run)?;
    let rate = sent as f64 / budget.run.as_secs_f64();
    if sent == 0 {
        return Err("nothing was acknowledged".into());
    }
    Ok(Throughput { msgs_per_s: rate, bytes_per_s: rate * SIZE as f64, caveat: None })
}

/// Where writer `id` writes: on a mount, its own stream beside `endpoint` (made on first
/// use); elsewhere `endpoint` itself.
fn writer_endpoint(endpoint: &Endpoint, id: usize) -> Result<Endpoint, String> {
    let Endpoint::File(path) = endpoint else { return Ok(endpoint.clone()) };
    let own = PathBuf::from(format!("{}-{id}", path.display()));
    if !own.exists() {
        File::create(&own).map_err(|e| format!("create {}: {e}", own.display()))?;
    }
    Ok(Endpoint::File(own))
}

/// `writers` writer processes write to `plumbing.writer` over the same `duration`; returns
/// how many messages they sent (each write returned, or was acknowledged) in all.
fn write_together(plumbing: &Plumbing, writers: usize, duration: Duration) -> Result<u64, String> {
    // Time to start the processes and open their files or connections.
    let start_ns = now_ns() + 300_000_000 + writers as u64 * 20_000_000;
    let mut procs = Vec::new();
    for id in 0..writers {
        let args = vec![
            "write".to_string(),
            format!("endpoint={}", writer_endpoint(&plumbing.writer, id)?.to_arg()),
            format!("size={SIZE}"),
            format!("duration_ms={}", duration.as_millis()),
            format!("start_ns={start_ns}"),
            format!("id={id}"),
            "end=0".to_string(),
        ];
        procs.push(Proc::worker(&format!("durable writer {id}"), &args)?);
    }
    let by = Instant::now() + duration + Duration::from_secs(30);
    let mut sent = 0;
    for proc in &mut procs {
        let line = proc.expect_line("result", by)?;
        let start: u64 = super::number(&super::fields(&line), "start");
        if start > start_ns + 100_000_000 {
            return Err("a writer started late: the machine is too busy for this measurement".into());
        }
        sent += super::number(&super::fields(&line), "sent");
        let _ = proc.wait(Instant::now() + Duration::from_secs(5));
    }
    Ok(sent)
}
