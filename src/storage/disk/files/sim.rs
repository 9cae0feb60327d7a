//! A simulated disk for tests: files are real (what the page cache would show), but the
//! layer remembers, per file, what was last fdatasynced, and the writes not synced since
//! in the order they were made, so that [`SimDisk::power_loss`] can put every file back to
//! its durable state plus a random prefix of those writes (the last one torn), or
//! ([`SimDisk::power_loss_reordered`]) a random choice of them, some torn, as the
//! kernel's writeback in any order leaves a file. It can also refuse writes (ENOSPC) and
//! counts fdatasyncs, which take as long as it is told. Directory entries are not
//! simulated: a created file stays (a file made again under a tracked name is tracked
//! afresh).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use super::{FileLayer, Os};

enum Change {
    Write { offset: u64, bytes: Vec<u8> },
    SetLen(u64),
}

impl Change {
    fn apply(&self, content: &mut Vec<u8>) {
        match self {
            Change::Write { offset, bytes } => {
                let end = *offset as usize + bytes.len();
                if content.len() < end {
                    content.resize(end, 0);
                }
                content[*offset as usize..end].copy_from_slice(bytes);
            }
            Change::SetLen(len) => content.resize(*len as usize, 0),
        }
    }
}

#[derive(Default)]
struct State {
    /// What each file touched through the layer holds on stable storage.
    durable: HashMap<PathBuf, Vec<u8>>,
    /// The file each tracked path named (inode number and birth time: a number is reused
    /// at once): a file made again under the name starts afresh.
    inodes: HashMap<PathBuf, (u64, Option<std::time::SystemTime>)>,
    /// Changes not synced yet, oldest first.
    pending: Vec<(PathBuf, Change)>,
    /// Writes fail with this errno (after writing half their bytes).
    refuse: Option<i32>,
    /// After a power loss nothing reaches the files any more.
    dead: bool,
}

#[derive(Default)]
pub struct SimDisk {
    state: Mutex<State>,
    syncs: AtomicU64,
    /// How long an fdatasync takes (a real disk's flush is not free).
    latency: Duration,
}

impl SimDisk {
    /// A disk whose fdatasyncs take `latency` each.
    pub fn slow(latency: Duration) -> SimDisk {
        SimDisk { latency, ..SimDisk::default() }
    }

    /// From now on writes fail with `errno` (None: they work again).
    pub fn refuse_writes(&self, errno: Option<i32>) {
        self.state.lock().refuse = errno;
    }

    /// fdatasyncs made so far.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::SeqCst)
    }

    /// The power goes: each file is put back to what was synced plus a prefix of the
    /// writes since, chosen by `seed` (the last kept write torn at a random length; seed 0
    /// keeps none), and the layer refuses everything from now on.
    pub fn power_loss(&self, seed: u64) {
        let mut state = self.state.lock();
        state.dead = true;
        let mut random = Random(seed | 1);
        let pending = std::mem::take(&mut state.pending);
        let keep = if seed == 0 { 0 } else { random.below(pending.len() as u64 + 1) as usize };
        for (path, change) in &pending[..keep] {
            change.apply(state.durable.get_mut(path).expect("tracked"));
        }
        if let Some((path, Change::Write { offset, bytes })) = pending.get(keep).filter(|_| seed != 0) {
            let torn = random.below(bytes.len() as u64 + 1) as usize;
            let change = Change::Write { offset: *offset, bytes: bytes[..torn].to_vec() };
            change.apply(state.durable.get_mut(path).expect("tracked"));
        }
        Self::restore(&state);
    }

    /// The power goes after the kernel wrote back a random choice of the writes not synced
    /// (chosen by `seed`), in any order, some of them torn: a file may keep a later write
    /// and lose an earlier one.
    pub fn power_loss_reordered(&self, seed: u64) {
        let mut state = self.state.lock();
        state.dead = true;
        let mut random = Random(seed | 1);
        for (path, change) in std::mem::take(&mut state.pending) {
            let durable = state.durable.get_mut(&path).expect("tracked");
            match (random.below(4), change) {
                (0, Change::Write { offset, bytes }) => {
                    let torn = random.below(bytes.len() as u64 + 1) as usize;
                    Change::Write { offset, bytes: bytes[..torn].to_vec() }.apply(durable);
                }
                (1, _) => {}
                (_, change) => change.apply(durable),
            }
        }
        Self::restore(&state);
    }

    fn restore(state: &State) {
        for (path, content) in &state.durable {
            if path.exists() {
                std::fs::write(path, content).expect("restore a simulated file");
            }
        }
    }

    fn track(state: &mut State, file: &File, path: &Path) -> io::Result<()> {
        let metadata = file.metadata()?;
        let inode = (std::os::unix::fs::MetadataExt::ino(&metadata), metadata.created().ok());
        if state.inodes.insert(path.to_path_buf(), inode) != Some(inode) {
            state.pending.retain(|(changed, _)| changed != path);
            let mut durable = vec![0; metadata.len() as usize];
            file.read_exact_at(&mut durable, 0)?;
            state.durable.insert(path.to_path_buf(), durable);
        }
        Ok(())
    }

    fn write(&self, file: &File, path: &Path, offset: u64, mut bytes: Vec<u8>) -> io::Result<()> {
        let mut state = self.state.lock();
        if state.dead {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let refused = state.refuse;
        if refused.is_some() {
            // A disk filling up takes the first half and refuses the rest.
            bytes.truncate(bytes.len() / 2);
        }
        Self::track(&mut state, file, path)?;
        Os.write_at(file, path, &[&bytes], offset)?;
        state.pending.push((path.to_path_buf(), Change::Write { offset, bytes }));
        refused.map_or(Ok(()), |errno| Err(io::Error::from_raw_os_error(errno)))
    }
}

impl FileLayer for SimDisk {
    fn write_at(&self, file: &File, path: &Path, bufs: &[&[u8]], offset: u64) -> io::Result<()> {
        self.write(file, path, offset, bufs.concat())
    }

    fn set_len(&self, file: &File, path: &Path, len: u64) -> io::Result<()> {
        let mut state = self.state.lock();
        if state.dead {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        // Not refused even when writes are: truncating back after a refused write frees space.
        Self::track(&mut state, file, path)?;
        file.set_len(len)?;
        state.pending.push((path.to_path_buf(), Change::SetLen(len)));
        Ok(())
    }

    fn sync_data(&self, _: &File, path: &Path) -> io::Result<()> {
        // Outside the lock: writes go on meanwhile (and may be caught by this sync).
        std::thread::sleep(self.latency);
        let mut state = self.state.lock();
        if state.dead {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.syncs.fetch_add(1, Ordering::SeqCst);
        let State { durable, pending, .. } = &mut *state;
        pending.retain(|(changed, change)| {
            let mine = changed == path;
            if mine {
                change.apply(durable.get_mut(path).expect("tracked"));
            }
            !mine
        });
        Ok(())
    }

    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        Ok(())
    }
}

/// xorshift64: enough randomness to pick torn prefixes, reproducible from a seed.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
