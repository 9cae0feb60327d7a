//! The SOURCE argument: where the mount's namespace and history live. `none` (or no
//! SOURCE) keeps them in memory; an existing directory is a disk store, opened (locked and
//! recovered) before the mount, so that its errors reach the command line and mount(8).

use std::path::PathBuf;

use mqfs::storage::Catalogue;
use mqfs::storage::disk::catalogue::DiskCatalogue;

/// What SOURCE says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Memory,
    /// A store directory (canonical path: the daemon leaves its working directory).
    Disk(PathBuf),
}

/// Why a SOURCE is refused.
pub const NEITHER: &str = "SOURCE: neither \"none\" nor an existing directory";

/// Reads SOURCE.
pub fn source(source: Option<&str>) -> Result<Source, String> {
    match source {
        None | Some("none") => Ok(Source::Memory),
        Some(path) => match std::fs::canonicalize(path) {
            Ok(dir) if dir.is_dir() => Ok(Source::Disk(dir)),
            _ => Err(format!("{NEITHER}: {path}")),
        },
    }
}

/// Opens the store SOURCE names: the catalogue the engine restores from and saves to (none
/// in memory).
pub fn open(source: &Source) -> Result<Option<Box<dyn Catalogue>>, String> {
    match source {
        Source::Memory => Ok(None),
        Source::Disk(dir) => {
            // integrator: open the store first, which takes DIR/lock (its OpenError line is
            // the error, exit 1), and log its RecoveryReport at INFO:
            // `let (store, report) = DiskStore::open(dir).map_err(|e| e.to_string())?;`
            let catalogue = DiskCatalogue::open(dir).map_err(|e| format!("store {}: {e}", dir.display()))?;
            Ok(Some(Box::new(catalogue)))
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
