//! Scenario 6: memory. mqfs mounted with `replay=all` retains every message: one writer
//! writes 1,000,000 messages of 100 bytes, then mqfs's resident memory is compared with the
//! payload. A late reader then replays the whole history (message mode, one read each).

use std::time::{Duration, Instant};

use super::{Budget, RunOutcome, collect_readers, start_readers};
use crate::procs::{self, Proc};
use crate::report::{fmt_bytes, fmt_rate};
use crate::results::{Cell, Memory};
use crate::systems::{Env, Lab, System};
use crate::worker::Stop;

pub const SIZE: usize = 100;

pub fn run(env: &Env, budget: &Budget) -> Cell<Memory> {
    let result = measure(env, budget);
    match &result {
        Ok(m) => eprintln!(
            "[memory] {} messages: RSS {} → {} ({:.2}× payload), write {} msg/s, replay {} msg/s",
            m.messages,
            fmt_bytes(m.rss_before as f64),
            fmt_bytes(m.rss_after as f64),
            m.rss_after as f64 / m.payload() as f64,
            fmt_rate(m.write_per_s),
            m.replay_per_s.map(fmt_rate).unwrap_or_default()
        ),
        Err(e) => eprintln!("[memory] {e}"),
    }
    result
}

fn measure(env: &Env, budget: &Budget) -> Cell<Memory> {
    let mut lab = Lab::new(env, "s6", "replay=all");
    let plumbing = lab.plumb(System::Mqfs, 1, SIZE)?;
    let mqfs = lab.mqfs()?;
    let pid = mqfs.pid();
    let rss_before = procs::rss(pid).ok_or("cannot read mqfs's RSS")?;
    let messages = budget.retained;
    let mut writer = Proc::worker(
        "writer",
        &[
            "write".into(),
            format!("endpoint={}", plumbing.writer.to_arg()),
            format!("size={SIZE}"),
            format!("count={messages}"),
            "end=0".into(),
        ],
    )?;
    let line = writer.expect_line("result", Instant::now() + Duration::from_secs(300))?;
    let _ = writer.wait(Instant::now() + Duration::from_secs(5));
    let field = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
            .unwrap_or(0)
    };
    let (sent, start, end) = (field("sent"), field("start"), field("end"));
    let rss_after = procs::rss(pid).ok_or("cannot read mqfs's RSS")?;
    let rss_peak = procs::status_field(pid, "VmHWM");
    let group = match &plumbing.writer {
        crate::endpoint::Endpoint::File(path) => path.parent().map(|p| p.to_path_buf()),
        _ => None,
    };
    let retained = group.and_then(|g| mqfs.counter(&g, "messages"));

    // A late reader replays the whole history.
    let deadline = Duration::from_secs(if budget.quick { 30 } else { 120 });
    let mut reader = start_readers(&plumbing, 1, SIZE, 1, Stop::Count(sent), deadline)?;
    let mut replay = RunOutcome { readers: 1, sent, ..RunOutcome::default() };
    collect_readers(&mut reader, deadline, &mut replay)?;
    let replay_seconds = replay.last.saturating_sub(replay.first) as f64 / 1e9;
    let replay_per_s =
        (replay.messages > 1 && replay_seconds > 0.0).then(|| replay.messages as f64 / replay_seconds);
    let mut caveat = replay.caveat().map(|c| format!("replay: {c}"));
    if replay.order_errors > 0 {
        caveat = Some(format!("replay: {} messages out of order", replay.order_errors));
    }
    Ok(Memory {
        messages: sent,
        message_size: SIZE,
        retained,
        rss_before,
        rss_after,
        rss_peak,
        write_per_s: sent as f64 / (end.saturating_sub(start) as f64 / 1e9).max(1e-9),
        replay_per_s,
        caveat,
    })
}
