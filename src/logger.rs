//! Where log lines go: stderr in the foreground, syslog (the journal) once daemonized.
//!
//! The level comes from `-d`/`-o debug` or RUST_LOG (error, warn, info, debug, trace);
//! info by default. fuser's own messages are shown only when debugging: at other levels
//! they are noise about calls mqfs does not implement or an unmount already done.

use std::ffi::CString;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Logger {
    level: LevelFilter,
    syslog: AtomicBool,
}

static LOGGER: std::sync::OnceLock<Logger> = std::sync::OnceLock::new();

/// Installs the logger, writing to stderr.
pub fn init(debug: bool) {
    let level = if debug {
        LevelFilter::Debug
    } else {
        std::env::var("RUST_LOG").ok().and_then(|v| v.parse().ok()).unwrap_or(LevelFilter::Info)
    };
    let logger = LOGGER.get_or_init(|| Logger { level, syslog: AtomicBool::new(false) });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// From now on, log to syslog under the name `mqfs`.
pub fn to_syslog() {
    static IDENT: &std::ffi::CStr = c"mqfs";
    // SAFETY: IDENT is a static NUL-terminated string, as openlog requires.
    unsafe { libc::openlog(IDENT.as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
    if let Some(logger) = LOGGER.get() {
        logger.syslog.store(true, Ordering::Relaxed);
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
        if self.syslog.load(Ordering::Relaxed) {
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
        } else {
            let _ = writeln!(std::io::stderr(), "mqfs: {}: {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}
