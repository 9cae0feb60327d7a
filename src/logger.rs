//! Where log lines go: stderr in the foreground; once daemonized, syslog (the journal under
//! systemd) under the name `mqfs`, or the file given with `-o log=FILE`.
//!
//! The level comes from `-d`/`-o debug` (debug) or RUST_LOG (error, warn, info, debug,
//! trace); info by default. fuser's own messages are shown only when debugging: at other
//! levels they are noise about calls mqfs does not implement or an unmount already done.
//! Lines above debug are rate-limited per call site ([`limit`]), so that a flood of refused
//! writes cannot fill a disk. A tap ([`set_tap`]) sees fuser's records before any filter:
//! the FUSE glue reads fuser's dispatch trace there.

mod limit;

use std::fs::File;
use std::io::Write;

use std::fmt::Display;
use std::sync::OnceLock;
use std::time::Instant;

use log::{Level, LevelFilter, Log, Metadata, Record};
use nix::syslog::{self, Facility, LogFlags, Severity};
use parking_lot::Mutex;

use limit::Limiter;

enum Target {
    Stderr,
    Syslog,
    File(File),
}

struct Logger {
    level: LevelFilter,
    target: Mutex<Target>,
    limiter: Mutex<Limiter>,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sees each of fuser's records first; true hides it (below debug level).
type Tap = fn(&Record<'_>) -> bool;
static TAP: OnceLock<Tap> = OnceLock::new();
/// The thread that writes the summaries of suppressed lines once their interval is over.
static SUMMARIES: OnceLock<()> = OnceLock::new();

/// The level `-d`/`-o debug` or RUST_LOG ask for.
pub fn level(debug: bool) -> LevelFilter {
    if debug {
        LevelFilter::Debug
    } else {
        std::env::var("RUST_LOG").ok().and_then(|v| v.parse().ok()).unwrap_or(LevelFilter::Info)
    }
}

/// Installs the logger, writing to stderr.
pub fn init(debug: bool) {
    let level = level(debug);
    let logger = LOGGER.get_or_init(|| Logger {
        level,
        target: Mutex::new(Target::Stderr),
        limiter: Mutex::default(),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
    // A panic is a bug: say so where the logs go (a daemon's stderr is /dev/null).
    std::panic::set_hook(Box::new(|info| log::error!("{info}")));
}

/// From now on, `tap` sees fuser's records, its debug trace included, whatever the level.
pub fn set_tap(tap: Tap) {
    if TAP.set(tap).is_ok() {
        log::set_max_level(log::max_level().max(LevelFilter::Debug));
    }
}

/// From now on, log to syslog under the name `mqfs`.
pub fn to_syslog() {
    let _ = syslog::openlog(Some(c"mqfs"), LogFlags::LOG_PID, Facility::LOG_DAEMON);
    set_target(Target::Syslog);
}

/// From now on, append to `file` (opened by the caller, so that an unusable path is an
/// error before the mount).
pub fn to_file(file: File) {
    set_target(Target::File(file));
}

fn set_target(target: Target) {
    if let Some(logger) = LOGGER.get() {
        *logger.target.lock() = target;
    }
}

/// Opens a log file for appending, creating it (mode 0640) if needed.
pub fn open_file(path: &std::path::Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().append(true).create(true).mode(0o640).open(path)
}

/// Local time as `2024-05-01 12:00:00`.
fn timestamp() -> String {
    // SAFETY: time and localtime_r write only into the values we own; strftime writes at
    // most buf.len() bytes and the format is NUL-terminated.
    unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        let mut buf = [0u8; 32];
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), c"%Y-%m-%d %H:%M:%S".as_ptr(), &tm);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Logger {
    fn write(&self, level: Level, text: &dyn Display) {
        let mut target = self.target.lock();
        match &mut *target {
            Target::Syslog => {
                let severity = match level {
                    Level::Error => Severity::LOG_ERR,
                    Level::Warn => Severity::LOG_WARNING,
                    Level::Info => Severity::LOG_INFO,
                    Level::Debug | Level::Trace => Severity::LOG_DEBUG,
                };
                let _ = syslog::syslog(severity, &text.to_string().replace('\0', " "));
            }
            Target::File(file) => {
                let line = format!(
                    "{} mqfs[{}]: {}: {}\n",
                    timestamp(),
                    std::process::id(),
                    level.as_str().to_lowercase(),
                    text
                );
                // One write(2) per line, so lines of concurrent writers do not interleave.
                let _ = file.write_all(line.as_bytes());
            }
            Target::Stderr => {
                let _ = writeln!(std::io::stderr(), "mqfs: {level}: {text}");
            }
        }
    }

    /// Writes the record unless its call site has had its share of lines for now.
    fn write_limited(&self, record: &Record<'_>) {
        let (Some(file), Some(line)) = (record.file_static(), record.line()) else {
            return self.write(record.level(), record.args());
        };
        let (show, summary) = {
            let mut limiter = self.limiter.lock();
            let admitted =
                limiter.admit((file, line), record.level(), Instant::now(), || record.args().to_string());
            if !admitted.0 && SUMMARIES.get().is_none() {
                start_summaries();
            }
            admitted
        };
        if let Some(summary) = summary {
            self.write(summary.level, &summary.text);
        }
        if show {
            self.write(record.level(), record.args());
        }
    }
}

/// Starts the thread that writes the summaries of windows gone quiet.
fn start_summaries() {
    SUMMARIES.get_or_init(|| {
        let spawned = std::thread::Builder::new().name("mqfs-log".into()).spawn(|| {
            loop {
                std::thread::sleep(limit::INTERVAL / 5);
                let Some(logger) = LOGGER.get() else { continue };
                let due = logger.limiter.lock().due(Instant::now());
                for summary in due {
                    logger.write(summary.level, &summary.text);
                }
            }
        });
        if let Err(e) = spawned {
            eprintln!("mqfs: cannot start the log thread ({e}): summaries of suppressed lines come late");
        }
    });
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        let limit = if metadata.target().starts_with("fuser") && self.level < LevelFilter::Debug {
            LevelFilter::Error
        } else {
            self.level
        };
        metadata.level() <= limit
    }

    fn log(&self, record: &Record<'_>) {
        if record.target().starts_with("fuser")
            && let Some(tap) = TAP.get()
            && tap(record)
            && self.level < LevelFilter::Debug
        {
            return;
        }
        if !self.enabled(record.metadata()) {
            return;
        }
        if record.level() <= Level::Info {
            self.write_limited(record);
        } else {
            self.write(record.level(), record.args());
        }
    }

    fn flush(&self) {}
}
