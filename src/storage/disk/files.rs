//! The file layer: every write, truncation and sync the disk store makes goes through a
//! [`FileLayer`], so that tests can put a simulated disk ([`sim`]) underneath that forgets
//! what was never synced. Reads go straight to the files: they see what the page cache
//! holds either way.

use std::fs::File;
use std::io::{self, IoSlice};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::engine::Errno;

/// The operations that change what a file holds or make it durable.
pub trait FileLayer: Send + Sync {
    /// Writes all of `bufs`, one after the other, at `offset`.
    fn write_at(&self, file: &File, path: &Path, bufs: &[&[u8]], offset: u64) -> io::Result<()>;
    fn set_len(&self, file: &File, path: &Path, len: u64) -> io::Result<()>;
    /// fdatasync(2).
    fn sync_data(&self, file: &File, path: &Path) -> io::Result<()>;
    /// fsync(2) of a directory, so that the names created in it are durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
}

/// The real thing: system calls.
pub struct Os;

impl FileLayer for Os {
    fn write_at(&self, file: &File, _: &Path, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut done = 0;
        while done < total {
            // Skip what was written already, then hand the rest to one pwritev.
            let mut skip = done;
            let mut slices = Vec::with_capacity(bufs.len());
            for buf in bufs {
                if skip >= buf.len() {
                    skip -= buf.len();
                } else {
                    slices.push(IoSlice::new(&buf[skip..]));
                    skip = 0;
                }
            }
            match nix::sys::uio::pwritev(file, &slices, (offset + done as u64) as i64) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => done += n,
                Err(nix::Error::EINTR) => {}
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        Ok(())
    }

    fn set_len(&self, file: &File, _: &Path, len: u64) -> io::Result<()> {
        file.set_len(len)
    }

    fn sync_data(&self, file: &File, _: &Path) -> io::Result<()> {
        file.sync_data()
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

/// An open file of the store with the counters the syncer needs: how many writes it has
/// had and how many of them are known to be on stable storage.
pub struct DataFile {
    pub file: File,
    pub path: PathBuf,
    layer: Arc<dyn FileLayer>,
    /// Writes (and truncations) made so far.
    written: AtomicU64,
    /// `written` as it was when the last successful fdatasync began.
    synced: AtomicU64,
    /// A timed sync of this file is queued (`SyncPolicy::Interval`).
    pub timed: AtomicBool,
    /// The last lap of the commit journal that holds records of this file (`journal`).
    pub lap: AtomicU64,
}

impl DataFile {
    pub fn new(file: File, path: PathBuf, layer: Arc<dyn FileLayer>) -> DataFile {
        DataFile {
            file,
            path,
            layer,
            written: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            timed: AtomicBool::new(false),
            lap: AtomicU64::new(0),
        }
    }

    // A change is counted once it is made (whether or not it worked: a refused write may
    // leave part of its bytes): a sync that loaded the count before then may not cover it.
    pub fn write_at(&self, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        let written = self.layer.write_at(&self.file, &self.path, bufs, offset);
        self.written.fetch_add(1, Ordering::AcqRel);
        written
    }

    pub fn set_len(&self, len: u64) -> io::Result<()> {
        let done = self.layer.set_len(&self.file, &self.path, len);
        self.written.fetch_add(1, Ordering::AcqRel);
        done
    }

    /// Counts a change made outside the layer: a name created in a directory.
    pub fn touched(&self) {
        self.written.fetch_add(1, Ordering::AcqRel);
    }

    /// Reads exactly `buf.len()` bytes at `offset` (EIO if the file is shorter).
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    /// Whether some write is not known to be on stable storage.
    pub fn is_dirty(&self) -> bool {
        self.synced.load(Ordering::Acquire) < self.written.load(Ordering::Acquire)
    }

    /// fdatasyncs the file unless every write is known durable already.
    pub fn sync(&self) -> io::Result<()> {
        let written = self.written.load(Ordering::Acquire);
        if self.synced.load(Ordering::Acquire) >= written {
            return Ok(());
        }
        self.layer.sync_data(&self.file, &self.path)?;
        self.synced.fetch_max(written, Ordering::AcqRel);
        Ok(())
    }
}

/// The errno of an I/O error (EIO when it has none).
pub fn errno(error: &io::Error) -> Errno {
    Errno(error.raw_os_error().unwrap_or(libc::EIO))
}

#[cfg(test)]
pub mod sim;
