//! What the scenarios measured, in the shape the report reads: one [`Grid`] per table
//! (systems × a parameter such as message size or reader count), each cell a measurement or
//! the reason there is none ("not installed", "not measured: ..." when the mqfs under test
//! lacks what a scenario needs, an error).

use crate::hist::Histogram;
use crate::systems::System;

pub type Cell<T> = Result<T, String>;

/// A reason for a missing figure that is not a failure of the bench or of mqfs.
pub fn excused(reason: &str) -> bool {
    reason.starts_with("not installed") || reason.starts_with("not measured")
}

#[derive(Debug)]
pub struct Grid<T> {
    pub columns: Vec<String>,
    pub rows: Vec<(System, Vec<Cell<T>>)>,
}

impl<T> Grid<T> {
    pub fn new(columns: Vec<String>) -> Grid<T> {
        Grid { columns, rows: Vec::new() }
    }

    pub fn cell(&self, system: System, column: usize) -> Option<&Cell<T>> {
        self.rows.iter().find(|(s, _)| *s == system).and_then(|(_, cells)| cells.get(column))
    }

    /// The measurement, if there is one.
    pub fn get(&self, system: System, column: usize) -> Option<&T> {
        self.cell(system, column).and_then(|c| c.as_ref().ok())
    }

    /// "system column: error" for every cell that failed (not for [`excused`] ones).
    pub fn errors(&self, scenario: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (system, cells) in &self.rows {
            for (column, cell) in cells.iter().enumerate() {
                if let Err(e) = cell
                    && !excused(e)
                {
                    out.push(format!("{scenario}: {} {}: {e}", system.label(), self.columns[column]));
                }
            }
        }
        out
    }

    pub fn systems(&self) -> impl Iterator<Item = System> + '_ {
        self.rows.iter().map(|(s, _)| *s)
    }
}

/// Scenario 1 (for the ceiling: its write+read pair rate).
#[derive(Clone, Debug)]
pub struct Throughput {
    pub msgs_per_s: f64,
    pub bytes_per_s: f64,
    pub caveat: Option<String>,
}

/// Scenario 2, flat out (for the ceiling: reads per second with as many readers).
#[derive(Clone, Debug)]
pub struct Fanout {
    pub deliveries_per_s: f64,
    /// Messages per read(2) (None for the ceiling, which carries none).
    pub per_read: Option<f64>,
    pub caveat: Option<String>,
}

/// Latency quantiles in microseconds.
#[derive(Clone, Debug)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub samples: u64,
    pub caveat: Option<String>,
}

impl Latency {
    pub fn from_hist(hist: &Histogram, caveat: Option<String>) -> Cell<Latency> {
        if hist.count() == 0 {
            return Err(caveat.unwrap_or_else(|| "no samples".into()));
        }
        let us = |ns: u64| ns as f64 / 1e3;
        Ok(Latency {
            p50: us(hist.quantile(0.5)),
            p99: us(hist.quantile(0.99)),
            p999: us(hist.quantile(0.999)),
            max: us(hist.max()),
            samples: hist.count(),
            caveat,
        })
    }
}

/// Scenario 4 (for the ceiling: the bound its request rate sets).
#[derive(Clone, Debug)]
pub struct ManyWriters {
    pub msgs_per_s: f64,
    pub deliveries_per_s: f64,
    /// None for the ceiling, which carries no messages.
    pub order_errors: Option<u64>,
    pub missing: u64,
    pub caveat: Option<String>,
}

/// Scenario 5.
#[derive(Clone, Debug)]
pub struct Blocked {
    pub readers: usize,
    pub received: u64,
    /// From the write to the last reader's read returning.
    pub all_ms: f64,
    pub p50_ms: f64,
    /// The serving process while the readers wait (mqfs, tee, redis-server).
    pub rss: Option<u64>,
    pub threads: Option<u64>,
    /// Share of one core the serving process used while nothing was written.
    pub idle_cpu: Option<f64>,
    pub caveat: Option<String>,
}

/// Scenario 6.
#[derive(Clone, Debug)]
pub struct Memory {
    pub messages: u64,
    pub message_size: usize,
    pub retained: Option<u64>,
    pub rss_before: u64,
    pub rss_after: u64,
    pub rss_peak: Option<u64>,
    /// Anonymous resident memory (RssAnon) holding the history: not file pages.
    pub rss_anon: Option<u64>,
    pub write_per_s: f64,
    pub replay_per_s: Option<f64>,
    /// From the late reader's first message to its last.
    pub replay_seconds: f64,
    pub caveat: Option<String>,
}

impl Memory {
    pub fn payload(&self) -> u64 {
        self.messages * self.message_size as u64
    }
}

/// Start-up of a disk store: how long mounting it takes until `ls` answers.
#[derive(Clone, Debug)]
pub struct Startup {
    pub messages: u64,
    pub message_size: usize,
    pub groups: usize,
    /// Filling the store through a mount, writers in parallel.
    pub fill_seconds: f64,
    /// What the store directory holds on disk after the fill.
    pub store_bytes: u64,
    /// Files in the page cache: from starting mqfs to `ls` answering.
    pub warm_ms: f64,
    /// After dropping the page cache, or why not.
    pub cold_ms: Cell<f64>,
    /// Messages the remounted groups' ctl counts.
    pub recovered: Option<u64>,
    pub caveat: Option<String>,
}

/// Request/reply round trips, one client in a loop against one server.
#[derive(Clone, Debug)]
pub struct RoundTrips {
    pub per_s: f64,
    pub latency: Latency,
}

/// Work queues, request/reply and redelivery (issue 14).
#[derive(Debug)]
pub struct Queues {
    /// 1 producer → 4 competing consumers, 64 B: jobs per second.
    pub work: Cell<Throughput>,
    /// 1 → 1 fan-out, 64 B, on the same mount, measured beside it.
    pub fanout: Cell<Throughput>,
    /// Round trips through each transport: (its name, what it did).
    pub rpc: Vec<(&'static str, Cell<RoundTrips>)>,
    /// From a consumer's kill to its message in flight read by another consumer.
    pub redelivery: Cell<Latency>,
}

impl Queues {
    fn errors(&self) -> Vec<String> {
        let mut cells: Vec<(String, Option<&String>)> = vec![
            ("work queue".into(), self.work.as_ref().err()),
            ("work queue's fan-out".into(), self.fanout.as_ref().err()),
            ("redelivery".into(), self.redelivery.as_ref().err()),
        ];
        cells.extend(
            self.rpc.iter().map(|(name, cell)| (format!("request/reply {name}"), cell.as_ref().err())),
        );
        cells
            .into_iter()
            .filter_map(|(name, e)| e.filter(|e| !excused(e)).map(|e| format!("{name}: {e}")))
            .collect()
    }
}

/// Across two mounts of one nats-server, beside async-nats (issue 15).
#[derive(Debug)]
pub struct Nats {
    /// Deliveries per second flat out, 1→1 and 1→10.
    pub rates: Grid<Fanout>,
    /// At 1000 messages per second, 1 and 10 readers.
    pub latency: Grid<Latency>,
}

#[derive(Debug, Default)]
pub struct Results {
    pub throughput: Option<Grid<Throughput>>,
    /// 1→1 at 64 B with 1, 2 and 4 FUSE worker threads (mqfs and the ceiling).
    pub threads: Option<Grid<Throughput>>,
    pub fanout: Option<Grid<Fanout>>,
    pub paced: Option<Grid<Latency>>,
    pub pingpong: Option<Grid<Latency>>,
    pub writers: Option<Grid<ManyWriters>>,
    pub blocked: Option<Grid<Blocked>>,
    pub memory: Option<Cell<Memory>>,
    /// Durable writes, 1 and 8 writers (issue 13).
    pub durable: Option<Grid<Throughput>>,
    pub startup: Option<Cell<Startup>>,
    /// A disk stream retaining gigabytes of 64 KiB messages.
    pub history: Option<Cell<Memory>>,
    /// Work queues, request/reply and redelivery (issue 14).
    pub queues: Option<Queues>,
    /// mqfs on NATS beside async-nats (issue 15).
    pub nats: Option<Nats>,
    /// (scenario, seconds it took)
    pub timings: Vec<(String, f64)>,
    /// Scenarios that panicked.
    pub panics: Vec<String>,
}

impl Results {
    /// Every measurement that failed: the harness or mqfs is broken somewhere.
    pub fn errors(&self) -> Vec<String> {
        let mut out: Vec<String> = self.panics.iter().map(|p| format!("{p}: panicked")).collect();
        if let Some(g) = &self.throughput {
            out.extend(g.errors("1→1"));
        }
        if let Some(g) = &self.threads {
            out.extend(g.errors("threads"));
        }
        if let Some(g) = &self.fanout {
            out.extend(g.errors("fan-out"));
        }
        if let Some(g) = &self.paced {
            out.extend(g.errors("paced"));
        }
        if let Some(g) = &self.pingpong {
            out.extend(g.errors("ping-pong"));
        }
        if let Some(g) = &self.writers {
            out.extend(g.errors("many writers"));
        }
        if let Some(g) = &self.blocked {
            out.extend(g.errors("blocked readers"));
        }
        if let Some(g) = &self.durable {
            out.extend(g.errors("durable writes"));
        }
        if let Some(q) = &self.queues {
            out.extend(q.errors());
        }
        if let Some(n) = &self.nats {
            out.extend(n.rates.errors("nats rate"));
            out.extend(n.latency.errors("nats latency"));
        }
        for (name, cell) in [
            ("memory", self.memory.as_ref().map(|c| c.as_ref().err())),
            ("start-up", self.startup.as_ref().map(|c| c.as_ref().err())),
            ("history", self.history.as_ref().map(|c| c.as_ref().err())),
        ] {
            if let Some(Some(e)) = cell
                && !excused(e)
            {
                out.push(format!("{name}: {e}"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_not_measured_or_not_installed_are_not_failures() {
        let mut grid: Grid<Throughput> = Grid::new(vec!["64 B".into()]);
        grid.rows = vec![
            (System::MqfsDisk, vec![Err("not measured: this mqfs has no disk store".into())]),
            (System::Jetstream, vec![Err("not installed (no nats-server 2.10 or later)".into())]),
            (System::RedisAlways, vec![Err("connection refused".into())]),
        ];
        assert_eq!(grid.errors("durable"), vec!["durable: Redis AOF always 64 B: connection refused"]);
        let results = Results {
            startup: Some(Err("not measured: this mqfs has no disk store".into())),
            history: Some(Err("writer: exited before saying 'result'".into())),
            ..Results::default()
        };
        assert_eq!(results.errors(), vec!["history: writer: exited before saying 'result'"]);
    }
}
