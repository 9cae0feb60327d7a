//! The store's `lock` file: an exclusive flock held for as long as the store is open, with
//! the holder's pid written in it so that a second opener can say who has it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use super::OpenError;

/// Held, not read: dropping it unlocks.
pub struct StoreLock {
    _held: Flock<File>,
}

impl StoreLock {
    pub fn take(dir: &Path) -> Result<StoreLock, OpenError> {
        let path = dir.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| OpenError::io(&path, e))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, nix::Error::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(OpenError::InUse { dir: dir.to_path_buf(), pid: pid.trim().to_string() });
            }
            Err((_, e)) => return Err(OpenError::io(&path, e.into())),
        };
        let written = lock
            .set_len(0)
            .and_then(|()| lock.rewind())
            .and_then(|()| writeln!(lock, "{}", std::process::id()));
        written.map_err(|e| OpenError::io(&path, e))?;
        Ok(StoreLock { _held: lock })
    }
}
