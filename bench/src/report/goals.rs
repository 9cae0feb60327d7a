//! The goals of issues 7, 13, 14 (those in `queues`) and 15 (in `nats`), each with what this run measured and whether it is met.

use super::format::{fmt_bytes, fmt_rate, fmt_us, percent, times};
use super::{Context, Goal};
use crate::results::{Cell, Results};
use crate::scenarios::{durable, fanout};
use crate::systems::System;

pub fn goals(ctx: &Context, results: &Results) -> Vec<Goal> {
    let mut goals = Vec::new();
    let unmeasured = |goal: &str| Goal { goal: goal.into(), measured: "—".into(), met: None };

    let goal = "1→1, 64 B, message mode: ≥ 90% of the ceiling's write+read pair rate";
    goals.push(
        match results
            .throughput
            .as_ref()
            .and_then(|g| Some((g.get(System::Mqfs, 0)?, g.get(System::Ceiling, 0)?)))
        {
            Some((mine, ceiling)) => {
                let r = mine.msgs_per_s / ceiling.msgs_per_s;
                Goal {
                    goal: goal.into(),
                    measured: format!(
                        "{} ({} vs {} pairs/s)",
                        percent(r),
                        fmt_rate(mine.msgs_per_s),
                        fmt_rate(ceiling.msgs_per_s)
                    ),
                    met: Some(r >= 0.9),
                }
            }
            None => unmeasured(goal),
        },
    );

    for (col, readers) in [(0usize, "1→1"), (1, "1→10")] {
        let goal = format!("latency at 1000 msg/s, {readers}: mqfs p99 below inotify tail, msgfs and Redis");
        let Some(grid) = &results.paced else {
            goals.push(unmeasured(&goal));
            continue;
        };
        let Some(mine) = grid.get(System::Mqfs, col) else {
            goals.push(unmeasured(&goal));
            continue;
        };
        let mut parts = vec![format!("mqfs {}", fmt_us(mine.p99))];
        let mut met = true;
        for peer in [System::Tail, System::Msgfs, System::Redis] {
            match grid.get(peer, col) {
                Some(p) => {
                    parts.push(format!("{} {}", peer.label(), fmt_us(p.p99)));
                    met &= mine.p99 < p.p99;
                }
                None => parts.push(format!("{} not measured", peer.label())),
            }
        }
        goals.push(Goal { goal, measured: parts.join("; "), met: Some(met) });
    }

    let goal = "1 MiB messages: ≥ 1.2× FIFO throughput";
    goals.push(
        match results
            .throughput
            .as_ref()
            .and_then(|g| Some((g.get(System::Mqfs, 3)?, g.get(System::Fifo, 3)?)))
        {
            Some((mine, fifo)) => {
                let r = mine.bytes_per_s / fifo.bytes_per_s;
                Goal {
                    goal: goal.into(),
                    measured: format!(
                        "{} ({}/s vs {}/s)",
                        times(r),
                        fmt_bytes(mine.bytes_per_s),
                        fmt_bytes(fifo.bytes_per_s)
                    ),
                    met: Some(r >= 1.2),
                }
            }
            None => unmeasured(goal),
        },
    );

    let goal = "fan-out to 100 readers: ≥ 80% of the ceiling's read rate with 100 readers";
    goals.push(
        match results
            .fanout
            .as_ref()
            .and_then(|g| Some((g.get(System::Mqfs, 2)?, g.get(System::Ceiling, 2)?)))
        {
            Some((mine, ceiling)) => {
                let r = mine.deliveries_per_s / ceiling.deliveries_per_s;
                Goal {
                    goal: goal.into(),
                    measured: format!(
                        "{} ({} vs {} reads/s)",
                        percent(r),
                        fmt_rate(mine.deliveries_per_s),
                        fmt_rate(ceiling.deliveries_per_s)
                    ),
                    met: Some(r >= 0.8),
                }
            }
            None => unmeasured(goal),
        },
    );

    let goal = "coalesce, 64 KiB reads: more deliveries/s than inotify tail with as many readers";
    goals.push(match &results.fanout {
        Some(grid) => {
            let mut parts = Vec::new();
            let mut met = true;
            let mut any = false;
            for (col, n) in fanout::READERS.iter().enumerate() {
                if let (Some(c), Some(t)) = (grid.get(System::MqfsCoalesce, col), grid.get(System::Tail, col))
                {
                    any = true;
                    let r = c.deliveries_per_s / t.deliveries_per_s;
                    met &= r > 1.0;
                    parts.push(format!("N={n}: {}", times(r)));
                }
            }
            if any {
                Goal { goal: goal.into(), measured: parts.join(", "), met: Some(met) }
            } else {
                unmeasured(goal)
            }
        }
        None => unmeasured(goal),
    });

    let blocked = results.blocked.as_ref().and_then(|g| g.get(System::Mqfs, 0));
    let readers = ctx.budget.blocked_readers;
    let scale =
        if readers == 10_000 { String::new() } else { format!(" (measured with {readers} in --quick)") };
    let goal = format!("10,000 blocked readers all receive within 100 ms{scale}");
    goals.push(match blocked {
        Some(b) => Goal {
            goal,
            measured: format!("{:.1} ms, {} of {} received", b.all_ms, b.received, b.readers),
            met: Some(b.all_ms < 100.0 && b.received == b.readers as u64),
        },
        None => unmeasured(&goal),
    });
    let goal = format!("10,000 blocked readers: mqfs RSS < 200 MB{scale}");
    goals.push(match blocked.and_then(|b| b.rss) {
        Some(rss) => Goal { goal, measured: fmt_bytes(rss as f64), met: Some(rss < 200_000_000) },
        None => unmeasured(&goal),
    });
    let goal = format!("10,000 blocked readers: mqfs < 64 threads{scale}");
    goals.push(match blocked.and_then(|b| b.threads) {
        Some(t) => Goal { goal, measured: t.to_string(), met: Some(t < 64) },
        None => unmeasured(&goal),
    });

    let retained = ctx.budget.retained;
    let scale =
        if retained == 1_000_000 { String::new() } else { format!(" (measured with {retained} in --quick)") };
    let goal = format!("1,000,000 retained 100-byte messages (replay all): RSS ≤ 1.3× payload{scale}");
    goals.push(match &results.memory {
        Some(Ok(m)) => {
            let r = m.rss_after as f64 / m.payload() as f64;
            Goal {
                goal,
                measured: format!(
                    "{:.2}× ({} for {} of payload)",
                    r,
                    fmt_bytes(m.rss_after as f64),
                    fmt_bytes(m.payload() as f64)
                ),
                met: Some(r <= 1.3),
            }
        }
        _ => unmeasured(&goal),
    });
    disk_goals(ctx, results, &mut goals);
    goals.extend(super::queues::goals(results.queues.as_ref()));
    goals.extend(super::nats::goals(results.nats.as_ref()));
    goals
}

/// A goal that could not be judged, with the reason when there is one.
fn not_judged(goal: String, reason: Option<&String>) -> Goal {
    Goal { goal, measured: reason.cloned().unwrap_or_else(|| "—".into()), met: None }
}

fn reason<T>(cell: Option<&Cell<T>>) -> Option<&String> {
    cell.and_then(|c| c.as_ref().err())
}

/// Issue 13: the disk store, and message bytes shared instead of copied.
fn disk_goals(ctx: &Context, results: &Results, goals: &mut Vec<Goal>) {
    let throughput = results.throughput.as_ref();
    for (col, size) in [(0, "64 B"), (1, "4 KiB")] {
        let goal = format!("disk `sync never`, 1→1, {size}: ≥ 90% of the in-memory mount's rate");
        let cells = throughput.map(|g| (g.cell(System::MqfsDisk, col), g.get(System::Mqfs, col)));
        goals.push(match cells {
            Some((Some(Ok(disk)), Some(memory))) => {
                let r = disk.msgs_per_s / memory.msgs_per_s;
                Goal {
                    goal,
                    measured: format!(
                        "{} ({} vs {} msg/s)",
                        percent(r),
                        fmt_rate(disk.msgs_per_s),
                        fmt_rate(memory.msgs_per_s)
                    ),
                    met: Some(r >= 0.9),
                }
            }
            Some((cell, _)) => not_judged(goal, reason(cell)),
            None => not_judged(goal, None),
        });
    }

    let grid = results.durable.as_ref();
    for (col, writers) in durable::WRITERS.iter().enumerate() {
        let goal = format!(
            "`sync always`, {writers} writer{}: ahead of Redis `appendfsync always` with as many clients",
            if *writers == 1 { "" } else { "s" }
        );
        let cells = grid.map(|g| (g.cell(System::MqfsAlways, col), g.cell(System::RedisAlways, col)));
        goals.push(match cells {
            Some((Some(Ok(mine)), Some(Ok(redis)))) => Goal {
                goal,
                measured: format!(
                    "{} ({} vs {} msg/s)",
                    times(mine.msgs_per_s / redis.msgs_per_s),
                    fmt_rate(mine.msgs_per_s),
                    fmt_rate(redis.msgs_per_s)
                ),
                met: Some(mine.msgs_per_s > redis.msgs_per_s),
            },
            Some((Some(Err(e)), _) | (_, Some(Err(e)))) => not_judged(goal, Some(e)),
            _ => not_judged(goal, None),
        });
    }
    let goal =
        "`sync always`: 8 writers reach several (≥ 3) times one writer's rate (group commit)".to_string();
    goals.push(match grid.map(|g| (g.cell(System::MqfsAlways, 0), g.cell(System::MqfsAlways, 1))) {
        Some((Some(Ok(one)), Some(Ok(eight)))) => {
            let r = eight.msgs_per_s / one.msgs_per_s;
            Goal {
                goal,
                measured: format!(
                    "{} ({} vs {} msg/s)",
                    times(r),
                    fmt_rate(eight.msgs_per_s),
                    fmt_rate(one.msgs_per_s)
                ),
                met: Some(r >= 3.0),
            }
        }
        Some((cell, _)) => not_judged(goal, reason(cell)),
        None => not_judged(goal, None),
    });

    let messages = ctx.budget.startup_messages;
    let scale = if messages == 10_000_000 {
        String::new()
    } else {
        format!(" (measured with {messages} messages in --quick)")
    };
    let goal = format!("start-up of a 1 GB store (10,000,000 × 100 B), page cache: < 2 s{scale}");
    goals.push(match &results.startup {
        Some(Ok(s)) => Goal {
            goal,
            measured: format!(
                "{:.0} ms; cold {}",
                s.warm_ms,
                match &s.cold_ms {
                    Ok(ms) => format!("{ms:.0} ms"),
                    Err(e) => e.clone(),
                }
            ),
            met: Some(s.warm_ms < 2000.0 && s.caveat.is_none()),
        },
        cell => not_judged(goal, reason(cell.as_ref())),
    });

    let bytes = ctx.budget.history_bytes;
    let scale = if bytes == 4 << 30 {
        String::new()
    } else {
        format!(" (measured with {} in --quick)", fmt_bytes(bytes as f64))
    };
    let goal = format!("4 GB of history in one disk stream: daemon RSS < 100 MB, read back intact{scale}");
    goals.push(match &results.history {
        Some(Ok(m)) => Goal {
            goal,
            measured: format!(
                "{} RSS; replayed in {:.1} s{}",
                fmt_bytes(m.rss_after as f64),
                m.replay_seconds,
                m.caveat.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
            ),
            met: Some(m.rss_after < 100_000_000 && m.caveat.is_none()),
        },
        cell => not_judged(goal, reason(cell.as_ref())),
    });

    for (col, size) in [(2, "64 KiB"), (3, "1 MiB")] {
        let goal = format!("in memory, 1→1, {size}: ≥ 85% of the ceiling's pair rate");
        goals.push(
            match throughput.and_then(|g| Some((g.get(System::Mqfs, col)?, g.get(System::Ceiling, col)?))) {
                Some((mine, ceiling)) => {
                    let r = mine.msgs_per_s / ceiling.msgs_per_s;
                    Goal {
                        goal,
                        measured: format!(
                            "{} ({} vs {} pairs/s)",
                            percent(r),
                            fmt_rate(mine.msgs_per_s),
                            fmt_rate(ceiling.msgs_per_s)
                        ),
                        met: Some(r >= 0.85),
                    }
                }
                None => not_judged(goal, None),
            },
        );
    }
}
