//! The report's part for issue 14: the work queue beside fan-out, request/reply round trips
//! beside Redis and a Unix socket, redelivery after a kill; and their goals.

use std::fmt::Write;

use super::Goal;
use super::format::{fmt_rate, fmt_us, percent};
use super::table::{Notes, show, table};
use crate::results::{Queues, RoundTrips, Throughput};
use crate::scenarios::queues::{CONSUMERS, SIZE};

pub fn section_queues(out: &mut String, q: &Queues) {
    let _ = write!(
        out,
        "## 8. Work queues and request/reply\n\nA `deliver one` group of the in-memory mount, {SIZE}-byte \
         messages. **Work queue**: one producer flat out, {CONSUMERS} competing consumers (each job read by \
         exactly one), jobs per second from the first write to the last delivery; beside it, measured \
         alternately on the same mount, one writer and one reader of a fan-out stream.\n\n"
    );
    let mut notes = Notes::default();
    let rate = |t: &Throughput| format!("{}/s", fmt_rate(t.msgs_per_s));
    let work = show(Some(&q.work), || format!("work queue 1→{CONSUMERS}"), &mut notes, rate);
    let fanout = show(Some(&q.fanout), || "fan-out 1→1".into(), &mut notes, rate);
    let ratio = match (&q.work, &q.fanout) {
        (Ok(w), Ok(f)) if f.msgs_per_s > 0.0 => percent(w.msgs_per_s / f.msgs_per_s),
        _ => "—".into(),
    };
    let header: Vec<String> =
        [format!("work queue 1→{CONSUMERS}, jobs"), "fan-out 1→1, messages".into(), "queue ÷ fan-out".into()]
            .into();
    table(out, &header, &[vec![work, fanout, ratio]]);

    out.push_str(
        "**Request/reply**: one client in a loop against one server, the server answering each request with its \
         own bytes. Through mqfs, a request and its reply travel on one read-write descriptor at each end (the \
         client's `exec 3<>svc/s`); through Redis as the message switch does it (LPUSH onto the service's list, \
         the server's BRPOP, its LPUSH onto the client's own reply list, the client's BRPOP: two round trips to \
         Redis each way); through a Unix stream socket, the kernel's floor for a local ping-pong.\n\n",
    );
    let header: Vec<String> =
        ["transport", "round trips/s", "p50", "p99", "p99.9", "samples"].map(String::from).into();
    let mut rows = Vec::new();
    for (name, cell) in &q.rpc {
        let mut row = vec![name.to_string()];
        match cell {
            Ok(RoundTrips { per_s, latency }) => row.extend([
                fmt_rate(*per_s),
                fmt_us(latency.p50),
                fmt_us(latency.p99),
                fmt_us(latency.p999),
                latency.samples.to_string(),
            ]),
            Err(_) => {
                row.push(show(Some(cell), || name.to_string(), &mut notes, |r| fmt_rate(r.per_s)));
                row.extend(std::iter::repeat_n("—".to_string(), 4));
            }
        }
        rows.push(row);
    }
    table(out, &header, &rows);

    out.push_str(
        "**Redelivery**: a consumer reads a message and keeps it in flight; another consumer's read is waiting; \
         the first is killed (SIGKILL). The time from the kill to the other's read returning the message, over \
         the rounds:\n\n",
    );
    let cell = show(
        Some(&q.redelivery),
        || "redelivery".into(),
        &mut notes,
        |l| format!("{} / {} / {}", fmt_us(l.p50), fmt_us(l.p99), fmt_us(l.max)),
    );
    let rounds = q.redelivery.as_ref().map_or_else(|_| "—".into(), |l| l.samples.to_string());
    table(out, &["kill → read elsewhere, p50 / p99 / max".into(), "rounds".into()], &[vec![cell, rounds]]);
    notes.render(out);
}

/// Issue 14's goals.
pub fn goals(q: Option<&Queues>) -> Vec<Goal> {
    let judged = |goal: &str, measured: Result<(String, bool), String>| match measured {
        Ok((measured, met)) => Goal { goal: goal.into(), measured, met: Some(met) },
        Err(reason) => Goal { goal: goal.into(), measured: reason, met: None },
    };
    let dash = || "—".to_string();
    let goal = format!(
        "work queue 1→{CONSUMERS} consumers, {SIZE} B: jobs/s ≥ 80% of the 1→1 fan-out rate (same run)"
    );
    let work = q.ok_or_else(dash).and_then(|q| match (&q.work, &q.fanout) {
        (Ok(w), Ok(f)) => {
            let r = w.msgs_per_s / f.msgs_per_s;
            Ok((
                format!("{} ({} vs {} msg/s)", percent(r), fmt_rate(w.msgs_per_s), fmt_rate(f.msgs_per_s)),
                r >= 0.8,
            ))
        }
        (Err(e), _) | (_, Err(e)) => Err(e.clone()),
    });
    let mut goals = vec![judged(&goal, work)];

    let goal = "request/reply through a svc stream: p99 below Redis LPUSH + BRPOP";
    let rpc = q.ok_or_else(dash).and_then(|q| {
        let p99 = |i: usize| {
            q.rpc
                .get(i)
                .ok_or_else(dash)
                .and_then(|(_, c)| c.as_ref().map(|r| r.latency.p99).map_err(Clone::clone))
        };
        let (mine, redis) = (p99(0)?, p99(1)?);
        Ok((format!("mqfs {} vs Redis {}", fmt_us(mine), fmt_us(redis)), mine < redis))
    });
    goals.push(judged(goal, rpc));

    let goal = "redelivery after a consumer is killed: p99 under 100 ms";
    let redelivery = q.ok_or_else(dash).and_then(|q| {
        let l = q.redelivery.as_ref().map_err(Clone::clone)?;
        Ok((format!("p99 {} over {} kills", fmt_us(l.p99), l.samples), l.p99 < 100_000.0))
    });
    goals.push(judged(goal, redelivery));
    goals
}
