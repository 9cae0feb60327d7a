//! Scenario 7c: start-up of a disk store. A store is filled through a disk-backed mount
//! with 10,000,000 messages of 100 bytes (1 GB; 1,000,000 with --quick) in a few groups
//! (`sync never`, `replay all`), one writer process per group, and unmounted. Then it is
//! mounted again, timed from starting `mqfs STORE DIR` until `ls DIR` answers: first with its
//! files in the page cache, then (after `sync` and `echo 3 > /proc/sys/vm/drop_caches`) cold.

use std::path::Path;
use std::time::{Duration, Instant};

use super::{Budget, fields, number};
use crate::procs::Proc;
use crate::report::fmt_rate;
use crate::results::{Cell, Startup};
use crate::systems::Env;
use crate::systems::mqfs::MqfsMount;

pub const GROUPS: usize = 4;
pub const SIZE: usize = 100;
const STOP_WAIT: Duration = Duration::from_secs(120);

pub fn run(env: &Env, budget: &Budget) -> Cell<Startup> {
    let store = env.work.join("s7c-store");
    let result = std::fs::create_dir_all(&store)
        .map_err(|e| format!("{}: {e}", store.display()))
        .and_then(|()| measure(env, budget, &store));
    let _ = std::fs::remove_dir_all(&store);
    match &result {
        Ok(s) => eprintln!(
            "[start-up] {} messages filled in {:.1} s ({} msg/s); mount until ls answers: {:.0} ms warm, {}",
            s.messages,
            s.fill_seconds,
            fmt_rate(s.messages as f64 / s.fill_seconds),
            s.warm_ms,
            match &s.cold_ms {
                Ok(ms) => format!("{ms:.0} ms cold"),
                Err(e) => format!("cold {e}"),
            }
        ),
        Err(e) => eprintln!("[start-up] {e}"),
    }
    result
}

fn mount(env: &Env, store: &Path) -> Result<MqfsMount, String> {
    MqfsMount::start(&env.mqfs_bin, &env.work, "s7c-mqfs", &env.mqfs_options, Some(store))
}

fn measure(env: &Env, budget: &Budget, store: &Path) -> Cell<Startup> {
    let messages = budget.startup_messages / GROUPS as u64 * GROUPS as u64;
    let fill_seconds = fill(env, store, messages)?;
    let store_bytes = du(store);

    let (warm_ms, recovered) = timed_mount(env, store)?;
    let cold_ms = drop_page_cache().and_then(|()| timed_mount(env, store).map(|(ms, _)| ms));
    let caveat = match recovered {
        Some(n) if n != messages => {
            Some(format!("after the remount the groups' ctl count {n} of {messages} messages"))
        }
        _ => None,
    };
    Ok(Startup {
        messages,
        message_size: SIZE,
        groups: GROUPS,
        fill_seconds,
        store_bytes,
        warm_ms,
        cold_ms,
        recovered,
        caveat,
    })
}

/// Writes `messages` in all into one stream of each group, a writer process per group, and
/// unmounts; returns the seconds from the first write to the last.
fn fill(env: &Env, store: &Path, messages: u64) -> Result<f64, String> {
    let mqfs = mount(env, store)?;
    let mut writers = Vec::new();
    for g in 0..GROUPS {
        let group = mqfs.group(&format!("g{g}"), "sync never\nreplay all\n")?;
        let stream = group.join("s");
        std::fs::File::create(&stream).map_err(|e| format!("{}: {e}", stream.display()))?;
        let args = vec![
            "write".to_string(),
            format!("endpoint=file:{}", stream.display()),
            format!("size={SIZE}"),
            format!("count={}", messages / GROUPS as u64),
            format!("id={g}"),
            "end=0".to_string(),
        ];
        writers.push(Proc::worker(&format!("fill writer {g}"), &args)?);
    }
    let (mut first, mut last) = (u64::MAX, 0);
    let by = Instant::now() + Duration::from_secs(1800);
    for writer in &mut writers {
        let f = fields(&writer.expect_line("result", by)?);
        first = first.min(number(&f, "start"));
        last = last.max(number(&f, "end"));
        let _ = writer.wait(Instant::now() + Duration::from_secs(5));
    }
    mqfs.stop(STOP_WAIT).map_err(|e| format!("unmounting the filled store: {e}"))?;
    let seconds = last.saturating_sub(first) as f64 / 1e9;
    eprintln!("[start-up] filled with {messages} messages in {seconds:.1} s");
    Ok(seconds)
}

/// Mounts the store, timing it from the start of mqfs until listing the root answers;
/// returns the milliseconds and the messages the groups' ctl count, and unmounts.
fn timed_mount(env: &Env, store: &Path) -> Result<(f64, Option<u64>), String> {
    let started = Instant::now();
    let mqfs = mount(env, store)?;
    let listed: Vec<String> = std::fs::read_dir(mqfs.root())
        .map_err(|e| format!("ls: {e}"))?
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let missing = (0..GROUPS).map(|g| format!("g{g}")).filter(|g| !listed.contains(g)).count();
    if missing > 0 {
        return Err(format!("the remounted store lacks {missing} of its {GROUPS} groups"));
    }
    let counts: Option<Vec<u64>> =
        (0..GROUPS).map(|g| mqfs.counter(&mqfs.root().join(format!("g{g}")), "messages")).collect();
    mqfs.stop(STOP_WAIT).map_err(|e| format!("unmounting: {e}"))?;
    Ok((ms, counts.map(|c| c.iter().sum())))
}

/// Writes dirty pages back, then drops the page cache (needs root).
fn drop_page_cache() -> Result<(), String> {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", "3\n")
        .map_err(|e| format!("not measured: cannot drop the page cache ({e})"))
}

/// Bytes the files under `dir` occupy on disk.
fn du(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => du(&entry.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}
