//! Scenario 8 (issue 14): work queues and request/reply, on a `deliver one` group of the
//! in-memory mount.
//!
//! - Work queue: one producer flat out, four competing consumers, 64 B: jobs per second from
//!   the first write to the last delivery, every job read exactly once; beside it, in the
//!   same run and mount, the 1→1 fan-out rate the goal compares it with.
//! - Request/reply: one client in a loop against one server, 64 B each way, through a svc
//!   stream (the request and its reply on one read-write descriptor each side), through
//!   Redis as the message switch does it (LPUSH onto the service's list, BRPOP of the
//!   client's reply list) and through a Unix stream socket (the kernel's floor): round trips
//!   per second, p50/p99.
//! - Redelivery: a consumer holds a message in flight and is killed (SIGKILL); the time from
//!   the kill to another consumer's read returning that message, p99.
//!
//! On an mqfs without `deliver one` (its ctl refuses it) every figure is "not measured"; on
//! one that accepts it but does not hand each message to one reader, the runs fail with what
//! went wrong (a job read twice, a client reading its own request, no redelivery in 10 s),
//! each bounded by a deadline.

use std::io::Write;
use std::time::{Duration, Instant};

use super::{Budget, StreamRun, run_stream, throughput};
use crate::clock::now_ns;
use crate::hist::Histogram;
use crate::procs::Proc;
use crate::queue_workers::Rpc;
use crate::report::{fmt_rate, fmt_us, progress};
use crate::results::{Cell, Latency, Queues, RoundTrips, Throughput};
use crate::systems::{Env, Lab, System, redis};
use crate::worker::Stop;

pub const SIZE: usize = 64;
pub const CONSUMERS: usize = 4;
/// The request/reply transports, in the report's order.
pub const TRANSPORTS: [&str; 3] = ["mqfs svc stream", "Redis LPUSH + BRPOP", "Unix socket"];
/// How long a consumer may take to get a killed consumer's message.
const REDELIVERY_DEADLINE: Duration = Duration::from_secs(10);

pub fn run(env: &Env, budget: &Budget) -> Queues {
    let mut lab = Lab::new(env, "s8", "");
    let (mut work, mut fanout) = (None::<Cell<Throughput>>, None::<Cell<Throughput>>);
    let better = |new: &Cell<Throughput>, old: &Option<Cell<Throughput>>| match (new, old) {
        (_, None) | (Ok(_), Some(Err(_))) => true,
        (Ok(new), Some(Ok(old))) => new.msgs_per_s > old.msgs_per_s,
        (Err(_), Some(_)) => false,
    };
    // Alternated, so that the two rates the goal compares are measured close together.
    for _ in 0..budget.rounds.max(1) {
        let cell = work_queue(&mut lab, budget);
        progress("work queue", System::Mqfs, "1→4 consumers", &cell, |t| {
            format!("{} jobs/s", fmt_rate(t.msgs_per_s))
        });
        if better(&cell, &work) {
            work = Some(cell);
        }
        let cell = throughput::one(&mut lab, System::Mqfs, SIZE, budget);
        progress("work queue", System::Mqfs, "1→1 fan-out", &cell, |t| {
            format!("{} msg/s", fmt_rate(t.msgs_per_s))
        });
        if better(&cell, &fanout) {
            fanout = Some(cell);
        }
    }
    let rpc = TRANSPORTS
        .iter()
        .map(|&name| {
            let cell = round_trips(&mut lab, name, budget);
            match &cell {
                Ok(r) => eprintln!(
                    "[request/reply] {name}: {} round trips/s, p50 {} p99 {}",
                    fmt_rate(r.per_s),
                    fmt_us(r.latency.p50),
                    fmt_us(r.latency.p99)
                ),
                Err(e) => eprintln!("[request/reply] {name}: {e}"),
            }
            (name, cell)
        })
        .collect();
    let redelivery = redelivery(&mut lab, budget);
    progress("redelivery", System::Mqfs, "after a kill", &redelivery, |l| {
        format!("p50 {} p99 {}", fmt_us(l.p50), fmt_us(l.p99))
    });
    Queues {
        work: work.expect("at least one round"),
        fanout: fanout.expect("at least one round"),
        rpc,
        redelivery,
    }
}

/// One producer, `CONSUMERS` competing consumers: each job must be read exactly once.
fn work_queue(lab: &mut Lab, budget: &Budget) -> Cell<Throughput> {
    let plumbing = lab.plumb_queue(SIZE)?;
    let run = StreamRun {
        readers: CONSUMERS,
        writers: 1,
        size: SIZE,
        count: (budget.bytes / SIZE as u64).max(100),
        duration: budget.run,
        rate: 0,
        stop: Stop::Queue,
        // One END for each consumer, which stops at the first it reads.
        ends: CONSUMERS as u64,
        deadline: budget.run + budget.grace,
    };
    let outcome = run_stream(&plumbing, &run, &mut |_| Ok(()))?;
    if let Some(error) = outcome.errors.first() {
        return Err(error.clone());
    }
    if outcome.messages > outcome.sent {
        return Err(format!(
            "{} jobs were read {} times in all: not one reader each (is `deliver one` a queue?)",
            outcome.sent, outcome.messages
        ));
    }
    let mut caveats = Vec::new();
    if outcome.messages < outcome.sent {
        let share = outcome.messages as f64 / outcome.sent.max(1) as f64;
        caveats.push(format!("{:.0}% of the jobs read by the deadline", share * 100.0));
    }
    if outcome.order_errors > 0 {
        caveats.push(format!("{} jobs out of order within a consumer", outcome.order_errors));
    }
    Ok(Throughput {
        msgs_per_s: outcome.deliveries_per_s(),
        bytes_per_s: outcome.bytes_per_s(),
        caveat: (!caveats.is_empty()).then(|| caveats.join("; ")),
    })
}

/// The service of transport `name`, fresh (and the queue a svc stream is, kept while used).
fn service(lab: &mut Lab, name: &str) -> Result<(Rpc, Option<crate::systems::Plumbing>), String> {
    Ok(match name {
        "mqfs svc stream" => {
            let plumbing = lab.plumb_queue(SIZE)?;
            let path = plumbing.writer.file().ok_or("a queue is a file")?.to_path_buf();
            (Rpc::File(path), Some(plumbing))
        }
        "Redis LPUSH + BRPOP" => {
            let addr = lab.redis(redis::Persistence::None)?.addr.clone();
            (Rpc::Redis { addr, key: format!("svc{}", now_ns()) }, None)
        }
        // In the run's directory, which goes at the end.
        _ => (Rpc::Unix(lab.env.work.join(format!("s8-{}.sock", now_ns()))), None),
    })
}

/// One client's round trips against one server.
fn round_trips(lab: &mut Lab, name: &str, budget: &Budget) -> Cell<RoundTrips> {
    let (rpc, _plumbing) = service(lab, name)?;
    let size = format!("size={SIZE}");
    let service = format!("service={}", rpc.to_arg());
    let server = Proc::worker("rpc server", &["rpc-serve".into(), service.clone(), size.clone()])?;
    server.expect_line("ready", Instant::now() + Duration::from_secs(30))?;
    let warmup = (budget.pings / 10).min(100);
    let count = budget.pings * 10;
    let client = Proc::worker(
        "rpc client",
        &["rpc-call".into(), service, size, format!("warmup={warmup}"), format!("count={count}")],
    )?;
    // Generous: 1 ms a round trip would be slow for every transport here.
    let by = Instant::now() + Duration::from_secs(30) + Duration::from_millis(warmup + count);
    let line = client.expect_line("result", by)?;
    let field = |key: &str| line.split_whitespace().find_map(|kv| kv.strip_prefix(key)).unwrap_or("");
    let seconds: f64 = field("seconds=").parse().map_err(|_| format!("bad result {line:?}"))?;
    let latency = Latency::from_hist(&Histogram::decode(field("hist="))?, None)?;
    Ok(RoundTrips { per_s: count as f64 / seconds.max(1e-9), latency })
}

/// Kills a consumer holding a message, `budget.redeliveries` times: the time until another
/// consumer reads it.
fn redelivery(lab: &mut Lab, budget: &Budget) -> Cell<Latency> {
    let plumbing = lab.plumb_queue(SIZE)?;
    let stream = plumbing.writer.file().ok_or("a queue is a file")?;
    let stream_arg = format!("stream={}", stream.display());
    let mut hist = Histogram::default();
    let mut writer = std::fs::OpenOptions::new()
        .write(true)
        .open(stream)
        .map_err(|e| format!("{}: {e}", stream.display()))?;
    for round in 0..budget.redeliveries {
        let holder = Proc::worker("holding consumer", &["hold".into(), stream_arg.clone()])?;
        let message = [b'j'; SIZE];
        writer.write(&message).map_err(|e| format!("round {round}: write: {e}"))?;
        holder
            .expect_line("got", Instant::now() + REDELIVERY_DEADLINE)
            .map_err(|e| format!("round {round}: the consumer got no message ({e})"))?;
        let mut other = Proc::worker("other consumer", &["await".into(), stream_arg.clone()])?;
        other.expect_line("ready", Instant::now() + Duration::from_secs(30))?;
        // It reads nothing yet (the one message is in flight): wait until its read waits.
        let parked = Instant::now() + Duration::from_secs(10);
        while !in_read(other.pid()) {
            if Instant::now() > parked {
                return Err(format!("round {round}: the other consumer did not block in read(2)"));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let killed = now_ns();
        holder.signal(libc::SIGKILL);
        let line = other.expect_line("result", Instant::now() + REDELIVERY_DEADLINE).map_err(|e| {
            format!("round {round}: no redelivery within {REDELIVERY_DEADLINE:?} of the holder's kill ({e})")
        })?;
        let at: u64 = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("at="))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("bad result {line:?}"))?;
        hist.record(at.saturating_sub(killed));
        let _ = other.wait(Instant::now() + Duration::from_secs(5));
    }
    Latency::from_hist(&hist, None)
}

/// Whether process `pid`'s main thread is in read(2) now.
fn in_read(pid: u32) -> bool {
    let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    syscall.split_whitespace().next() == Some(&libc::SYS_read.to_string())
}
