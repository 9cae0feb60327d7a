//! The scenarios, and the machinery they share: [`Budget`] (how long each kind of run may
//! take, full or --quick) and [`run_stream`], which starts reader processes on a stream,
//! waits until they are ready, starts the writers and gathers what everyone measured.

pub mod blocked;
pub mod durable;
pub mod fanout;
pub mod latency;
pub mod memory;
pub mod nats;
pub mod queues;
pub mod startup;
pub mod throughput;
pub mod writers;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::hist::Histogram;
use crate::procs::Proc;
use crate::results::Cell;
use crate::systems::{Plumbing, System};
use crate::worker::Stop;

/// How much each run may take.
#[derive(Clone, Debug)]
pub struct Budget {
    pub quick: bool,
    /// How long a writer (or a ceiling reader) runs flat out.
    pub run: Duration,
    /// At most this many payload bytes per writer in a throughput run.
    pub bytes: u64,
    /// Deliveries (messages × readers) per fan-out run.
    pub deliveries: u64,
    /// How long a paced (fixed-rate) run lasts.
    pub paced: Duration,
    /// Ping-pong round trips measured.
    pub pings: u64,
    /// Readers in the blocked-readers scenario.
    pub blocked_readers: usize,
    /// Messages retained in the memory scenario.
    pub retained: u64,
    /// 100-byte messages in the store whose start-up is timed.
    pub startup_messages: u64,
    /// Bytes of history retained in one disk stream.
    pub history_bytes: u64,
    /// Consumers killed with a message in flight, each timed until another reads it.
    pub redeliveries: u64,
    /// How long readers may keep draining after the writers stopped.
    pub grace: Duration,
    /// Flat-out runs are repeated this many times; each cell keeps its best.
    pub rounds: usize,
    /// Only these systems (all if empty).
    pub systems: Vec<System>,
}

impl Budget {
    pub fn new(quick: bool) -> Budget {
        if quick {
            Budget {
                quick,
                run: Duration::from_millis(250),
                bytes: 64 << 20,
                deliveries: 40_000,
                paced: Duration::from_millis(300),
                pings: 200,
                blocked_readers: 1_000,
                retained: 100_000,
                startup_messages: 1_000_000,
                history_bytes: 512 << 20,
                redeliveries: 10,
                grace: Duration::from_secs(5),
                rounds: 1,
                systems: Vec::new(),
            }
        } else {
            Budget {
                quick,
                run: Duration::from_secs(2),
                bytes: 1 << 30,
                deliveries: 1_000_000,
                paced: Duration::from_secs(5),
                pings: 3_000,
                blocked_readers: 10_000,
                retained: 1_000_000,
                startup_messages: 10_000_000,
                history_bytes: 4 << 30,
                redeliveries: 100,
                grace: Duration::from_secs(12),
                rounds: 2,
                systems: Vec::new(),
            }
        }
    }
}

impl Budget {
    pub fn includes(&self, system: System) -> bool {
        self.systems.is_empty() || self.systems.contains(&system)
    }
}

/// Measures `systems` × `columns` cells with `one(system, column)`: column by column, so
/// that the systems compared in one column are measured close together in time, and
/// `rounds` times over, keeping each cell's best by `better(new, old)`.
pub fn measure_grid<T>(
    budget: &Budget,
    systems: &[System],
    columns: usize,
    rounds: usize,
    mut one: impl FnMut(System, usize) -> Cell<T>,
    better: impl Fn(&T, &T) -> bool,
) -> Vec<(System, Vec<Cell<T>>)> {
    let systems: Vec<System> = systems.iter().copied().filter(|&s| budget.includes(s)).collect();
    // Row-major: cell (row, column) is at row * columns + column.
    let mut cells: Vec<Option<Cell<T>>> = (0..systems.len() * columns).map(|_| None).collect();
    for _ in 0..rounds.max(1) {
        for column in 0..columns {
            for (row, &system) in systems.iter().enumerate() {
                let new = one(system, column);
                let slot = &mut cells[row * columns + column];
                let keep_old = match (&*slot, &new) {
                    (None, _) => false,
                    (Some(Ok(old)), Ok(new)) => !better(new, old),
                    (Some(Ok(_)), Err(_)) => true,
                    (Some(Err(_)), _) => false,
                };
                if !keep_old {
                    *slot = Some(new);
                }
            }
        }
    }
    let mut cells = cells.into_iter().map(|c| c.expect("every cell was measured"));
    systems.into_iter().map(|system| (system, cells.by_ref().take(columns).collect())).collect()
}

/// One run: readers on a stream, then writers.
#[derive(Clone, Debug)]
pub struct StreamRun {
    pub readers: usize,
    pub writers: usize,
    pub size: usize,
    /// Messages per writer at most.
    pub count: u64,
    /// How long each writer writes at most (zero: no limit).
    pub duration: Duration,
    /// Messages per second per writer (zero: as fast as it can).
    pub rate: u64,
    pub stop: Stop,
    /// END messages each writer sends once done: 1 for fan-out (every reader gets it), one
    /// per reader for a queue (each goes to one reader, which then stops), or none.
    pub ends: u64,
    /// How long readers may read, from when they are ready.
    pub deadline: Duration,
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct RunOutcome {
    pub readers: usize,
    /// Messages the writers sent (all writers).
    pub sent: u64,
    /// When the first writer started sending.
    pub write_start: u64,
    pub write_end: u64,
    /// Deliveries: messages received, summed over readers.
    pub messages: u64,
    /// read(2) calls (or the system's own receive calls) that returned data.
    pub reads: u64,
    pub bytes: u64,
    /// The first and the last delivery.
    pub first: u64,
    pub last: u64,
    pub order_errors: u64,
    /// Readers that had not finished at their deadline.
    pub incomplete: u64,
    pub hist: Histogram,
    pub errors: Vec<String>,
}

impl RunOutcome {
    /// From the first send to the last delivery.
    pub fn seconds(&self) -> f64 {
        (self.last.saturating_sub(self.write_start)) as f64 / 1e9
    }

    pub fn deliveries_per_s(&self) -> f64 {
        if self.seconds() > 0.0 { self.messages as f64 / self.seconds() } else { 0.0 }
    }

    pub fn bytes_per_s(&self) -> f64 {
        if self.seconds() > 0.0 { self.bytes as f64 / self.seconds() } else { 0.0 }
    }

    /// Messages per read(2): above 1 where a read returns several (byte streams, coalesce).
    pub fn per_read(&self) -> f64 {
        self.messages as f64 / self.reads.max(1) as f64
    }

    /// Deliveries that did not happen (lost, or still pending at the deadline).
    pub fn missing(&self) -> u64 {
        (self.sent * self.readers as u64).saturating_sub(self.messages)
    }

    /// A note for a table cell when the run was not clean.
    pub fn caveat(&self) -> Option<String> {
        if let Some(error) = self.errors.first() {
            return Some(format!("error: {error}"));
        }
        if self.incomplete > 0 || self.missing() > 0 {
            let share = self.messages as f64 / (self.sent * self.readers as u64).max(1) as f64;
            return Some(format!("{:.0}% delivered by the deadline", share * 100.0));
        }
        None
    }
}

fn fields(line: &str) -> HashMap<String, String> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn number(fields: &HashMap<String, String>, key: &str) -> u64 {
    fields.get(key).and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// Splits `readers` over at most 10 processes: (first reader index, threads) each.
pub fn layout(readers: usize) -> Vec<(usize, usize)> {
    let processes = readers.clamp(1, 10);
    let mut out = Vec::new();
    let mut first = 0;
    for p in 0..processes {
        let threads = readers / processes + usize::from(p < readers % processes);
        out.push((first, threads));
        first += threads;
    }
    out
}

/// Starts reader processes on `plumbing.reader` and waits until all say they are ready.
pub fn start_readers(
    plumbing: &Plumbing,
    readers: usize,
    size: usize,
    writers: usize,
    stop: Stop,
    deadline: Duration,
) -> Result<Vec<Proc>, String> {
    let mut procs = Vec::new();
    for (first, threads) in layout(readers) {
        let args = vec![
            "read".to_string(),
            format!("endpoint={}", plumbing.reader.to_arg()),
            format!("first={first}"),
            format!("threads={threads}"),
            format!("size={size}"),
            format!("buf={}", plumbing.read_buf),
            format!("writers={writers}"),
            format!("stop={}", stop.to_arg()),
            format!("deadline_ms={}", deadline.as_millis()),
        ];
        procs.push(Proc::worker(&format!("reader {first}+{threads}"), &args)?);
    }
    let ready_by = Instant::now() + Duration::from_secs(120);
    for proc in &procs {
        proc.expect_line("ready", ready_by)?;
    }
    Ok(procs)
}

/// Gathers the `result` lines of reader processes into `outcome`.
pub fn collect_readers(
    procs: &mut [Proc],
    deadline: Duration,
    outcome: &mut RunOutcome,
) -> Result<(), String> {
    let by = Instant::now() + deadline + Duration::from_secs(10);
    for proc in procs.iter() {
        let line = proc.expect_line("result", by)?;
        let f = fields(&line);
        outcome.messages += number(&f, "messages");
        outcome.reads += number(&f, "reads");
        outcome.bytes += number(&f, "bytes");
        let first = number(&f, "first");
        if first != 0 && (outcome.first == 0 || first < outcome.first) {
            outcome.first = first;
        }
        outcome.last = outcome.last.max(number(&f, "last"));
        outcome.order_errors += number(&f, "order_errors");
        outcome.incomplete += number(&f, "incomplete");
        if let Some(error) = f.get("error").filter(|e| !e.is_empty()) {
            outcome.errors.push(error.replace('_', " "));
        }
        outcome.hist.merge(&Histogram::decode(f.get("hist").map(String::as_str).unwrap_or(""))?);
    }
    // Reader processes wait until every result is in (see worker::read), then exit.
    for proc in procs.iter_mut() {
        proc.release();
    }
    for proc in procs.iter_mut() {
        let _ = proc.wait(Instant::now() + Duration::from_secs(5));
    }
    Ok(())
}

/// Runs readers then writers on one stream. `before_write` runs once every reader is
/// ready (the blocked-readers scenario samples the server there).
pub fn run_stream(
    plumbing: &Plumbing,
    run: &StreamRun,
    before_write: &mut dyn FnMut(&[Proc]) -> Result<(), String>,
) -> Result<RunOutcome, String> {
    let mut readers = start_readers(plumbing, run.readers, run.size, run.writers, run.stop, run.deadline)?;
    before_write(&readers)?;
    let mut writers = Vec::new();
    for id in 0..run.writers {
        let args = vec![
            "write".to_string(),
            format!("endpoint={}", plumbing.writer.to_arg()),
            format!("size={}", run.size),
            format!("count={}", run.count),
            format!("duration_ms={}", run.duration.as_millis()),
            format!("rate={}", run.rate),
            format!("id={id}"),
            format!("end={}", run.ends),
        ];
        writers.push(Proc::worker(&format!("writer {id}"), &args)?);
    }
    let mut outcome = RunOutcome { readers: run.readers, write_start: u64::MAX, ..RunOutcome::default() };
    let write_by = Instant::now() + run.deadline + Duration::from_secs(30);
    for writer in &mut writers {
        let line = writer.expect_line("result", write_by)?;
        let f = fields(&line);
        outcome.sent += number(&f, "sent");
        outcome.write_start = outcome.write_start.min(number(&f, "start"));
        outcome.write_end = outcome.write_end.max(number(&f, "end"));
        let _ = writer.wait(Instant::now() + Duration::from_secs(5));
    }
    collect_readers(&mut readers, run.deadline, &mut outcome)?;
    Ok(outcome)
}

/// What the ceiling does flat out: read(2)s and write(2)s per second.
#[derive(Clone, Copy, Debug, Default)]
pub struct CeilingRates {
    pub reads: f64,
    pub writes: f64,
}

/// `readers` readers and `writers` writers on the ceiling's file, all for `duration`.
pub fn run_ceiling(
    plumbing: &Plumbing,
    readers: usize,
    writers: usize,
    size: usize,
    duration: Duration,
) -> Result<CeilingRates, String> {
    let seconds = duration.as_secs_f64();
    let mut reader_procs = if readers > 0 {
        start_readers(plumbing, readers, size, 1, Stop::Time(duration), duration + Duration::from_secs(10))?
    } else {
        Vec::new()
    };
    let mut writer_procs = Vec::new();
    for id in 0..writers {
        let args = vec![
            "write".to_string(),
            format!("endpoint={}", plumbing.writer.to_arg()),
            format!("size={size}"),
            format!("duration_ms={}", duration.as_millis()),
            format!("id={id}"),
            "end=0".to_string(),
        ];
        writer_procs.push(Proc::worker(&format!("ceiling writer {id}"), &args)?);
    }
    let mut rates = CeilingRates::default();
    let by = Instant::now() + duration + Duration::from_secs(30);
    for writer in &mut writer_procs {
        let f = fields(&writer.expect_line("result", by)?);
        let elapsed = (number(&f, "end").saturating_sub(number(&f, "start"))) as f64 / 1e9;
        rates.writes += number(&f, "sent") as f64 / elapsed.max(seconds * 0.5);
    }
    let mut outcome = RunOutcome::default();
    collect_readers(&mut reader_procs, duration, &mut outcome)?;
    if let Some(error) = outcome.errors.first() {
        return Err(error.clone());
    }
    rates.reads = outcome.messages as f64 / seconds;
    Ok(rates)
}
