//! The disk store: a store directory of checksummed segment files, one directory per log,
//! locked while open and recovered when opened (docs/store-format.md, "Logs").
//!
//! `DIR/format` says what the directory is; `DIR/lock` is held (flock) while a daemon has
//! the store open; `DIR/logs/<node>` and `DIR/logs/<node>.order` hold each log's segments;
//! `DIR/journal` is the commit journal of `sync always` logs; `DIR/damaged/` receives what
//! recovery could not explain.
//!
//! [`DiskStore::open`] locks and recovers the directory (the logs, then what the journal
//! holds that they lack) and says what it found (a [`RecoveryReport`], one log line); the
//! store then hands out each log once, and syncs with one thread for all of them
//! (`syncer`). Under `sync always` the caller waits for each write with [`Log::sync`]:
//! concurrent waits share one fdatasync of the journal.

pub mod catalogue;
mod files;
mod head;
mod journal;
mod lock;
mod log;
mod recovery;
mod segment;
mod syncer;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use self::files::{FileLayer, Os};
use self::head::Head;
use self::journal::{Entry, Journal};
use self::lock::StoreLock;
use self::log::DiskLog;
use self::log::Place;
use self::syncer::Syncer;
use crate::engine::Errno;
use crate::storage::memory::MemoryLog;
use crate::storage::{Log, LogId, LogKind, Placement, Store, SyncPolicy};

/// The segment size limit of `DiskStore::open`.
pub const SEGMENT_BYTES: u64 = 16 << 20;
/// What `DIR/format` holds: the magic and the format's version.
const FORMAT: &str = "mqfs store\nversion 2\n";
/// Version 1, from before the journal: read as a version 2 store whose journal is empty,
/// and upgraded when opened.
const FORMAT_1: &str = "mqfs store\nversion 1\n";

/// Why a store directory cannot be opened.
#[derive(Debug)]
pub enum OpenError {
    /// Another process (or another open in this one) has the store.
    InUse {
        dir: PathBuf,
        pid: String,
    },
    NotAStore {
        dir: PathBuf,
        why: String,
    },
    Io {
        path: PathBuf,
        error: io::Error,
    },
}

impl OpenError {
    fn io(path: &Path, error: io::Error) -> OpenError {
        OpenError::Io { path: path.to_path_buf(), error }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::InUse { dir, pid } if pid.is_empty() => {
                write!(f, "store {} is in use by another process", dir.display())
            }
            OpenError::InUse { dir, pid } => write!(f, "store {} is in use by process {pid}", dir.display()),
            OpenError::NotAStore { dir, why } => write!(f, "{} is not an mqfs store: {why}", dir.display()),
            OpenError::Io { path, error } => write!(f, "cannot open the store: {}: {error}", path.display()),
        }
    }
}

impl std::error::Error for OpenError {}

/// What recovery found when the store was opened.
#[derive(Debug, Default)]
pub struct RecoveryReport {
    pub dir: PathBuf,
    pub logs: u64,
    pub messages: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Bytes of torn tails cut off.
    pub cut: u64,
    /// Messages written back to their logs from the journal.
    pub replayed: u64,
    /// Each damaged place (file and offset), its bytes moved under `DIR/damaged/`.
    pub damaged: Vec<String>,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "store {}: {} logs, {} messages, {} bytes recovered in {:.3} s",
            self.dir.display(),
            self.logs,
            self.messages,
            self.bytes,
            self.seconds
        )?;
        if self.cut > 0 {
            write!(f, "; {} bytes of torn tails cut", self.cut)?;
        }
        if self.replayed > 0 {
            write!(f, "; {} messages replayed from the journal", self.replayed)?;
        }
        if !self.damaged.is_empty() {
            write!(
                f,
                "; DAMAGE moved to {}: {}",
                self.dir.join("damaged").display(),
                self.damaged.join("; ")
            )?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Logs {
    /// Recovered logs nobody has asked for yet.
    recovered: HashMap<LogId, DiskLog>,
    handed: HashSet<LogId>,
}

/// A store directory, open and locked.
pub struct DiskStore {
    // Dropped in this order: the logs queue their last syncs, the syncer makes them, the
    // lock goes last.
    logs: Mutex<Logs>,
    syncer: Syncer,
    journal: Arc<Journal>,
    dir: PathBuf,
    layer: Arc<dyn FileLayer>,
    segment_bytes: u64,
    _lock: StoreLock,
}

impl DiskStore {
    /// Opens (creating it if `dir` is missing or empty) and locks the store in `dir`, and
    /// recovers every log in it.
    pub fn open(dir: &Path) -> Result<(DiskStore, RecoveryReport), OpenError> {
        DiskStore::open_on(dir, Arc::new(Os), SEGMENT_BYTES, journal::JOURNAL_BYTES)
    }

    /// `open` over the file layer `layer`, sealing segments at `segment_bytes`, with a
    /// journal of `journal_bytes`.
    fn open_on(
        dir: &Path,
        layer: Arc<dyn FileLayer>,
        segment_bytes: u64,
        journal_bytes: u64,
    ) -> Result<(DiskStore, RecoveryReport), OpenError> {
        let began = Instant::now();
        std::fs::create_dir_all(dir).map_err(|e| OpenError::io(dir, e))?;
        let format = dir.join("format");
        let fresh = !format.exists();
        if fresh && std::fs::read_dir(dir).map_err(|e| OpenError::io(dir, e))?.next().is_some() {
            let why = "it has no format file and is not empty".to_string();
            return Err(OpenError::NotAStore { dir: dir.to_path_buf(), why });
        }
        let lock = StoreLock::take(dir)?;
        if fresh {
            let logs = dir.join("logs");
            let made = std::fs::create_dir_all(&logs)
                .and_then(|()| layer.sync_dir(dir))
                .and_then(|()| write_format(dir, &*layer));
            made.map_err(|e| OpenError::io(&format, e))?;
        }
        let found = std::fs::read_to_string(&format).map_err(|e| OpenError::io(&format, e))?;
        if found != FORMAT && found != FORMAT_1 {
            let why =
                format!("{} says {found:?}, this mqfs reads {FORMAT:?} and {FORMAT_1:?}", format.display());
            return Err(OpenError::NotAStore { dir: dir.to_path_buf(), why });
        }
        let journal_path = dir.join(journal::NAME);
        let (journal, entries) =
            Journal::open(dir, &layer, journal_bytes).map_err(|e| OpenError::io(&journal_path, e))?;
        let mut store = DiskStore {
            logs: Mutex::default(),
            syncer: Syncer::new(),
            journal: Arc::new(journal),
            dir: dir.to_path_buf(),
            layer,
            segment_bytes,
            _lock: lock,
        };
        let mut report = RecoveryReport { dir: dir.to_path_buf(), ..RecoveryReport::default() };
        store.recover_logs(entries, &mut report)?;
        // What the journal held is in the logs' files now, synced: a new lap may overwrite it.
        store.journal.start(dir).map_err(|e| OpenError::io(&journal_path, e))?;
        if found == FORMAT_1 {
            write_format(dir, &*store.layer).map_err(|e| OpenError::io(&format, e))?;
        }
        report.seconds = began.elapsed().as_secs_f64();
        Ok((store, report))
    }

    fn recover_logs(
        &mut self,
        entries: Vec<(LogId, Entry)>,
        report: &mut RecoveryReport,
    ) -> Result<(), OpenError> {
        let mut journaled: HashMap<LogId, Vec<Entry>> = HashMap::new();
        for (id, entry) in entries {
            journaled.entry(id).or_default().push(entry);
        }
        let logs = self.dir.join("logs");
        for entry in std::fs::read_dir(&logs).map_err(|e| OpenError::io(&logs, e))? {
            let entry = entry.map_err(|e| OpenError::io(&logs, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let Some(id) = parse_log_name(&name).filter(|_| is_dir) else {
                ::log::warn!("{}: not a log directory, left alone", entry.path().display());
                continue;
            };
            let quarantine = self.dir.join("damaged").join(&name);
            let entries = journaled.remove(&id).unwrap_or_default();
            let holds = |seq: u64| entries.binary_search_by_key(&seq, |e| e.seq).is_ok();
            let recovered = recovery::recover(&entry.path(), &quarantine, &self.layer, &holds)
                .map_err(|e| OpenError::io(&entry.path(), e))?;
            let mut log = DiskLog::new(self.place(id), recovered.segments, recovered.head)
                .map_err(|e| OpenError::io(&entry.path(), e))?;
            match recovery::replay(&mut log, &entries) {
                Ok(replayed) => report.replayed += replayed,
                Err(why) => {
                    ::log::error!("{}: {why}: the log ends before it", entry.path().display());
                    report.damaged.push(format!("{} (journal): {why}", entry.path().display()));
                }
            }
            log.sync_now().map_err(|e| OpenError::io(&entry.path(), e))?;
            report.logs += 1;
            report.messages += log.len();
            report.bytes += log.bytes();
            report.cut += recovered.cut;
            report.damaged.extend(recovered.damaged);
            self.logs.get_mut().recovered.insert(id, log);
        }
        Ok(())
    }

    fn log_dir(&self, id: LogId) -> PathBuf {
        let name = match id.kind {
            LogKind::Stream => id.node.to_string(),
            LogKind::Order => format!("{}.order", id.node),
            LogKind::Acks => format!("{}.acks", id.node),
        };
        self.dir.join("logs").join(name)
    }

    fn place(&self, id: LogId) -> Place {
        Place {
            id,
            dir: self.log_dir(id),
            layer: self.layer.clone(),
            syncer: self.syncer.handle(),
            journal: self.journal.clone(),
            segment_bytes: self.segment_bytes,
        }
    }
}

fn parse_log_name(name: &str) -> Option<LogId> {
    let (node, kind) = match (name.strip_suffix(".order"), name.strip_suffix(".acks")) {
        (Some(node), _) => (node, LogKind::Order),
        (_, Some(node)) => (node, LogKind::Acks),
        _ => (name, LogKind::Stream),
    };
    let canonical = node.bytes().all(|b| b.is_ascii_digit()) && !node.starts_with('0') || node == "0";
    Some(LogId { node: node.parse().ok().filter(|_| canonical)?, kind })
}

/// Writes `DIR/format` whole or not at all (a temporary file renamed), durably.
fn write_format(dir: &Path, layer: &dyn FileLayer) -> io::Result<()> {
    let temporary = dir.join("format.new");
    let file = std::fs::File::create(&temporary)?;
    layer.write_at(&file, &temporary, &[FORMAT.as_bytes()], 0)?;
    layer.sync_data(&file, &temporary)?;
    std::fs::rename(&temporary, dir.join("format"))?;
    layer.sync_dir(dir)
}

impl Store for DiskStore {
    fn log(&self, id: LogId, placement: Placement, policy: SyncPolicy) -> Result<Box<dyn Log>, Errno> {
        if placement == Placement::Memory {
            // A memory group's messages do not survive it: files left from when it was on
            // disk (a crash before they were removed) go.
            if self.logs.lock().recovered.contains_key(&id) {
                self.remove_log(id);
            }
            return Ok(Box::new(MemoryLog::default()));
        }
        {
            let mut logs = self.logs.lock();
            if let Some(mut log) = logs.recovered.remove(&id) {
                logs.handed.insert(id);
                log.set_policy(policy);
                return Ok(Box::new(log));
            }
            if !logs.handed.insert(id) {
                return Err(Errno(libc::EBUSY));
            }
        }
        // Not under the lock: it may sync a directory.
        let made = self.new_log(id, policy);
        if made.is_err() {
            self.logs.lock().handed.remove(&id);
        }
        made
    }

    fn start(&self) -> io::Result<()> {
        self.syncer.start()
    }

    fn set_aside_unclaimed(&self) {
        let unclaimed: Vec<LogId> = {
            let mut logs = self.logs.lock();
            let ids: Vec<LogId> = logs.recovered.keys().copied().collect();
            // Dropped first: a log writes its head when it goes.
            ids.iter().for_each(|id| drop(logs.recovered.remove(id)));
            ids
        };
        for id in unclaimed {
            let dir = self.log_dir(id);
            let aside = self.dir.join("damaged").join(dir.file_name().expect("a log has a name"));
            let moved = std::fs::create_dir_all(self.dir.join("damaged"))
                .and_then(|()| std::fs::rename(&dir, &aside));
            match moved {
                Ok(()) => ::log::warn!(
                    "{}: no node of the catalogue has this log (a crash between the two): moved to {}",
                    dir.display(),
                    aside.display()
                ),
                Err(e) => ::log::error!("{}: an unclaimed log cannot be set aside: {e}", dir.display()),
            }
        }
    }

    fn remove_log(&self, id: LogId) {
        let mut logs = self.logs.lock();
        logs.recovered.remove(&id);
        logs.handed.remove(&id);
        let dir = self.log_dir(id);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                ::log::warn!("{}: cannot delete the log: {e}", dir.display());
            }
            _ => {}
        }
        if let Err(e) = self.journal.forget(id) {
            ::log::error!("{}: cannot end the journal's lap: {e}", self.journal.path().display());
        }
    }
}

impl DiskStore {
    fn new_log(&self, id: LogId, policy: SyncPolicy) -> Result<Box<dyn Log>, Errno> {
        let place = self.place(id);
        let dir = place.dir.clone();
        let fail = |e: io::Error| {
            ::log::warn!("{}: cannot make the log's directory: {e}", dir.display());
            files::errno(&e)
        };
        std::fs::create_dir_all(&dir).map_err(fail)?;
        if policy == SyncPolicy::Always {
            self.layer.sync_dir(&self.dir.join("logs")).map_err(fail)?;
        }
        let mut log =
            DiskLog::new(place, Default::default(), Head { first: 0, next: 0, end: 0 }).map_err(fail)?;
        log.set_policy(policy);
        Ok(Box::new(log))
    }
}
