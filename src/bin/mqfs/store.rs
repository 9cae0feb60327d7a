//! The SOURCE argument: where the mount's namespace and history live. `none` (or no
//! SOURCE) keeps them in memory; an existing directory is a disk store, opened (locked and
//! recovered) before the mount, so that its errors reach the command line and mount(8).

use std::path::PathBuf;
use std::sync::Arc;

use mqfs::nats;

use crate::options::Settings;
use mqfs::storage::disk::DiskStore;
use mqfs::storage::disk::catalogue::DiskCatalogue;
use mqfs::storage::{Catalogue, Store};

/// What SOURCE says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Memory,
    /// A store directory (canonical path: the daemon leaves its working directory).
    Disk(PathBuf),
    /// NATS JetStream servers, shared with every mount of the same servers and prefix.
    Nats(nats::Options),
}

/// Why a SOURCE is refused.
pub const NEITHER: &str = "SOURCE: neither \"none\", nats://HOST:PORT nor an existing directory";

/// Reads SOURCE.
pub fn source(source: Option<&str>) -> Result<Source, String> {
    match source {
        None | Some("none") => Ok(Source::Memory),
        Some(url) if url.starts_with("nats://") => {
            nats::Options::from_source(url).expect("a nats:// source").map(Source::Nats)
        }
        Some(path) => match std::fs::canonicalize(path) {
            Ok(dir) if dir.is_dir() => Ok(Source::Disk(dir)),
            _ => Err(format!("{NEITHER}: {path}")),
        },
    }
}

/// SOURCE with what the options say of it: a NATS-backed mount's prefix, timeout and
/// replicas (refused for any other), and the settings it refuses.
pub fn configured(source: Source, settings: &Settings) -> Result<Source, String> {
    let Source::Nats(mut options) = source else {
        if settings.prefix.is_some() || settings.nats_timeout.is_some() || settings.replicas.is_some() {
            return Err("mount options prefix, nats_timeout and replicas need a nats:// SOURCE".into());
        }
        return Ok(source);
    };
    if let Some(reason) = nats::refuses(&settings.root) {
        return Err(reason);
    }
    if !settings.presets.is_empty() {
        return Err(
            "presets are not for a NATS-backed mount: each mount would make groups its own way".into()
        );
    }
    options.prefix = settings.prefix.clone().unwrap_or(options.prefix);
    options.timeout = settings.nats_timeout.unwrap_or(options.timeout);
    options.replicas = settings.replicas.unwrap_or(options.replicas);
    Ok(Source::Nats(options))
}

/// A disk store, open: its logs and its catalogue.
pub struct Opened {
    pub store: Arc<dyn Store>,
    pub catalogue: Box<dyn Catalogue>,
}

/// Opens the store SOURCE names (none in memory): its logs, locked and recovered (the log
/// says what was found), and the catalogue the engine restores from and saves to.
pub fn open(source: &Source) -> Result<Option<Opened>, String> {
    match source {
        Source::Memory | Source::Nats(_) => Ok(None),
        Source::Disk(dir) => {
            // First: it takes the store's lock.
            let (store, report) = DiskStore::open(dir).map_err(|e| e.to_string())?;
            log::info!("{report}");
            let catalogue = DiskCatalogue::open(dir).map_err(|e| format!("store {}: {e}", dir.display()))?;
            Ok(Some(Opened { store: Arc::new(store), catalogue: Box::new(catalogue) }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_or_nothing_is_memory_a_directory_is_a_disk_store() {
        assert_eq!(source(None), Ok(Source::Memory));
        assert_eq!(source(Some("none")), Ok(Source::Memory));
        let dir = std::env::temp_dir().canonicalize().unwrap();
        assert_eq!(source(dir.to_str()), Ok(Source::Disk(dir)));
    }

    #[test]
    fn anything_else_is_refused_naming_it() {
        for bad in ["mqfs", "/nonexistent/store", "/etc/hostname", ""] {
            assert_eq!(source(Some(bad)), Err(format!("{NEITHER}: {bad}")));
        }
    }
}
