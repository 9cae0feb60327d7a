//! Where log lines go: stderr in the foreground; once daemonized, syslog (the journal under
//! systemd) under the name `mqfs`, or the file given with `-o log=FILE`.
//!
//! The level comes from `-d`/`-o debug` (debug) or RUST_LOG (error, warn, info, debug,
//! trace); info by default. fuser's own messages are shown only when debugging: at other
//! levels they are noise about calls mqfs does not implement or an unmount already done.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;

use log::{Level, LevelFilter, Log, Metadata, Record};
use parking_lot::Mutex;

enum Target {
    Stderr,
    Syslog,
    File(File),
}

struct Logger {
    level: LevelFilter,
    target: Mutex<Target>,
}

static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

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
    let logger = LOGGER.get_or_init(|| Logger { level, target: Mutex::new(Target::Stderr) });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
    // A panic is a bug: say so where the logs go (a daemon's stderr is /dev/null).
    std::panic::set_hook(Box::new(|info| log::error!("{info}")));
}

/// From now on, log to syslog under the name `mqfs`.
pub fn to_syslog() {
    static IDENT: &std::ffi::CStr = c"mqfs";
    // SAFETY: IDENT is a static NUL-terminated string, as openlog requires.
    unsafe { libc::openlog(IDENT.as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
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
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut target = self.target.lock();
        match &mut *target {
            Target::Syslog => {
                let priority = match record.level() {
                    Level::Error => libc::LOG_ERR,
                    Level::Warn => libc::LOG_WARNING,
                    Level::Info => libc::LOG_INFO,
                    Level::Debug | Level::Trace => libc::LOG_DEBUG,
                };
                let text = format!("{}", record.args()).replace('\0', " ");
                if let Ok(text) = CString::new(text) {
                    // SAFETY: both strings are NUL-terminated; "%s" consumes exactly one.
                    unsafe { libc::syslog(priority, c"%s".as_ptr(), text.as_ptr()) };
                }
            }
            Target::File(file) => {
                let line = format!(
                    "{} mqfs[{}]: {}: {}\n",
                    timestamp(),
                    std::process::id(),
                    record.level().as_str().to_lowercase(),
                    record.args()
                );
                // One write(2) per line, so lines of concurrent writers do not interleave.
                let _ = file.write_all(line.as_bytes());
            }
            Target::Stderr => {
                let _ = writeln!(std::io::stderr(), "mqfs: {}: {}", record.level(), record.args());
            }
        }
    }

    fn flush(&self) {}
}
