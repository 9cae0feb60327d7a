//! Scenario 6: memory. mqfs mounted with `replay=all` retains every message: one writer
//! writes 1,000,000 messages of 100 bytes, then mqfs's resident memory is compared with the
//! payload. A late reader then replays the whole history (message mode, one read each).
//!
//! Scenario 7d: history on disk, the same measurement on a disk-backed mount (`sync never`,
//! `replay all`) with 4 GB of 64 KiB messages in one stream (512 MB with --quick): the
//! daemon's resident memory must not grow with the history, and the late reader reads it
//! back from the files.

use std::time::{Duration, Instant};

use super::{Budget, RunOutcome, collect_readers, start_readers};
use crate::procs::{self, Proc};
use crate::report::{fmt_bytes, fmt_rate};
use crate::results::{Cell, Memory};
use crate::systems::{Env, Lab, System};
use crate::worker::Stop;

pub const SIZE: usize = 100;
/// The disk history's message size.
pub const HISTORY_SIZE: usize = 64 << 10;

pub fn run(env: &Env, budget: &Budget) -> Cell<Memory> {
    let mut lab = Lab::new(env, "s6", "replay=all");
    let deadline = Duration::from_secs(if budget.quick { 30 } else { 120 });
    let result = retain(&mut lab, System::Mqfs, SIZE, budget.retained, deadline);
    show("memory", &result);
    result
}

pub fn history(env: &Env, budget: &Budget) -> Cell<Memory> {
    let mut lab = Lab::new(env, "s7d", "");
    let messages = budget.history_bytes / HISTORY_SIZE as u64;
    let result = retain(&mut lab, System::MqfsDisk, HISTORY_SIZE, messages, Duration::from_secs(300));
    show("history", &result);
    result
}

fn show(scenario: &str, result: &Cell<Memory>) {
    match result {
        Ok(m) => eprintln!(
            "[{scenario}] {} messages of {}: RSS {} → {} ({:.2}× payload), write {} msg/s, replay {} msg/s",
            m.messages,
            fmt_bytes(m.message_size as f64),
            fmt_bytes(m.rss_before as f64),
            fmt_bytes(m.rss_after as f64),
            m.rss_after as f64 / m.payload() as f64,
            fmt_rate(m.write_per_s),
            m.replay_per_s.map(fmt_rate).unwrap_or_default()
        ),
        Err(e) => eprintln!("[{scenario}] {e}"),
    }
}

/// One writer writes `messages` of `size` bytes into a fresh stream of `system` that keeps
/// them all; then the server's memory is sampled and a late reader replays everything.
fn retain(lab: &mut Lab, system: System, size: usize, messages: u64, deadline: Duration) -> Cell<Memory> {
    let plumbing = lab.plumb(system, 1, size)?;
    let pid = plumbing.server.ok_or("no server process")?;
    let rss_before = procs::rss(pid).ok_or("cannot read mqfs's RSS")?;
    let mut writer = Proc::worker(
        "writer",
        &[
            "write".into(),
            format!("endpoint={}", plumbing.writer.to_arg()),
            format!("size={size}"),
            format!("count={messages}"),
            "end=0".into(),
        ],
    )?;
    let line = writer.expect_line("result", Instant::now() + Duration::from_secs(600))?;
    let _ = writer.wait(Instant::now() + Duration::from_secs(5));
    let field = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
            .unwrap_or(0)
    };
    let (sent, start, end) = (field("sent"), field("start"), field("end"));
    let rss_after = procs::rss(pid).ok_or("cannot read mqfs's RSS")?;
    let rss_anon = procs::status_field(pid, "RssAnon");
    let group = match &plumbing.writer {
        crate::endpoint::Endpoint::File(path) => path.parent().map(|p| p.to_path_buf()),
        _ => None,
    };
    let mqfs = match system {
        System::MqfsDisk => lab.mqfs_disk()?,
        _ => lab.mqfs()?,
    };
    let retained = group.and_then(|g| mqfs.counter(&g, "messages"));

    // A late reader replays the whole history.
    let mut reader = start_readers(&plumbing, 1, size, 1, Stop::Count(sent), deadline)?;
    let mut replay = RunOutcome { readers: 1, sent, ..RunOutcome::default() };
    collect_readers(&mut reader, deadline, &mut replay)?;
    let rss_peak = procs::status_field(pid, "VmHWM");
    let replay_seconds = replay.last.saturating_sub(replay.first) as f64 / 1e9;
    let replay_per_s =
        (replay.messages > 1 && replay_seconds > 0.0).then(|| replay.messages as f64 / replay_seconds);
    let mut caveat = replay.caveat().map(|c| format!("replay: {c}"));
    if replay.order_errors > 0 {
        caveat = Some(format!("replay: {} messages out of order", replay.order_errors));
    }
    Ok(Memory {
        messages: sent,
        message_size: size,
        retained,
        rss_before,
        rss_after,
        rss_peak,
        rss_anon,
        write_per_s: sent as f64 / (end.saturating_sub(start) as f64 / 1e9).max(1e-9),
        replay_per_s,
        replay_seconds,
        caveat,
    })
}
