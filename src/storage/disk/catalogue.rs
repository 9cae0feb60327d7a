//! The disk store's catalogue: the journal `DIR/catalogue`, a header then one framed
//! [`Entry`] per change (save a node, forget one), appended as the namespace changes and
//! replayed at open. A record cut short at the end (a crash mid-append) is cut off with a
//! warning; a bad one before the end is damage, an error naming the file and offset. Once
//! the journal holds about twice as many entries as there are live nodes it is rewritten
//! whole: to a temporary file, synced, renamed over the journal, the directory synced.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::storage::catalogue::{Entry, Framed, NodeRecord};
use crate::storage::{Catalogue, Errno};

/// The journal's first bytes: a magic and the format version.
const MAGIC: &[u8; 8] = b"MQFSCATL";
const VERSION: u32 = 1;
const HEADER: u64 = 12;
/// Entries a journal may hold beyond twice its live nodes before it is compacted, so that
/// a small namespace is not rewritten on every change.
const SLACK: u64 = 64;

pub struct DiskCatalogue {
    path: PathBuf,
    journal: Mutex<Journal>,
}

struct Journal {
    file: File,
    /// Where the next entry goes: the journal's length.
    len: u64,
    /// Entries the journal holds.
    entries: u64,
    live: HashMap<u64, NodeRecord>,
}

fn header() -> Vec<u8> {
    [&MAGIC[..], &VERSION.to_le_bytes()].concat()
}

fn errno(error: &io::Error) -> Errno {
    crate::engine::Errno(error.raw_os_error().unwrap_or(libc::EIO))
}

impl DiskCatalogue {
    /// Opens (or creates) the catalogue of the store directory `dir` and replays it.
    pub fn open(dir: &Path) -> io::Result<DiskCatalogue> {
        let path = dir.join("catalogue");
        if !path.exists() {
            write_whole(&path, &HashMap::new())?;
        }
        let shown = path.display().to_string();
        let bytes = std::fs::read(&path)?;
        let invalid = |what: String| io::Error::new(ErrorKind::InvalidData, format!("{shown}: {what}"));
        if bytes.get(..MAGIC.len()) != Some(MAGIC) {
            return Err(invalid("not an mqfs catalogue (bad magic)".into()));
        }
        let version =
            bytes.get(8..HEADER as usize).map(|v| u32::from_le_bytes(v.try_into().expect("4 bytes")));
        if version != Some(VERSION) {
            return Err(invalid(format!("catalogue format version {version:?}; this mqfs reads {VERSION}")));
        }
        let mut live = HashMap::new();
        let (mut at, mut entries) = (HEADER as usize, 0);
        while at < bytes.len() {
            let rest = &bytes[at..];
            match Entry::decode(rest) {
                Framed::Entry(entry, len) => {
                    apply(&mut live, entry);
                    entries += 1;
                    at += len;
                }
                Framed::Bad(reason) if !is_tail(rest) => {
                    return Err(invalid(format!("{reason} at offset {at}: the catalogue is damaged")));
                }
                Framed::Incomplete | Framed::Bad(_) => break,
            }
        }
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        if at < bytes.len() {
            log::warn!(
                "{shown}: cut {} bytes of a record torn at offset {at} (an interrupted save)",
                bytes.len() - at
            );
            file.set_len(at as u64)?;
            file.sync_all()?;
        }
        let journal = Journal { file, len: at as u64, entries, live };
        Ok(DiskCatalogue { path, journal: Mutex::new(journal) })
    }
}

/// Whether a frame that does not read is the journal's torn end: it claims to reach the end
/// (an append cut short), or only zeros follow (space allocated, never written).
fn is_tail(rest: &[u8]) -> bool {
    let claimed =
        rest.get(..4).map_or(0, |len| u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize);
    claimed.saturating_add(crate::storage::catalogue::FRAME_HEADER) >= rest.len()
        || rest.iter().all(|&b| b == 0)
}

fn apply(live: &mut HashMap<u64, NodeRecord>, entry: Entry) {
    match entry {
        Entry::Save(record) => {
            live.insert(record.ino, record);
        }
        Entry::Remove(ino) => {
            live.remove(&ino);
        }
    }
}

/// Writes a journal of `live` to `path` through a temporary file renamed over it, each
/// synced, so that a crash leaves the old journal or the new one.
fn write_whole(path: &Path, live: &HashMap<u64, NodeRecord>) -> io::Result<File> {
    let temporary = path.with_extension("new");
    let mut bytes = header();
    for record in live.values() {
        Entry::Save(record.clone()).encode(&mut bytes);
    }
    let written = (|| {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&temporary)?;
        file.write_all_at(&bytes, 0)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()?;
        Ok(file)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

impl Journal {
    fn compact(&mut self, path: &Path) {
        match write_whole(path, &self.live) {
            Ok(file) => {
                self.len = file.metadata().map_or(self.len, |meta| meta.len());
                self.file = file;
                self.entries = self.live.len() as u64;
            }
            // The journal as it is still holds everything: compacting can wait.
            Err(error) => log::warn!("{}: cannot compact: {error}", path.display()),
        }
    }
}

impl Catalogue for DiskCatalogue {
    fn load(&self) -> Result<Vec<NodeRecord>, Errno> {
        Ok(self.journal.lock().live.values().cloned().collect())
    }

    fn save(&self, changed: &[NodeRecord], removed: &[u64], durable: bool) -> Result<(), Errno> {
        let entries: Vec<Entry> = changed
            .iter()
            .cloned()
            .map(Entry::Save)
            .chain(removed.iter().copied().map(Entry::Remove))
            .collect();
        let mut bytes = Vec::new();
        for entry in &entries {
            entry.encode(&mut bytes);
        }
        let mut journal = self.journal.lock();
        if let Err(error) = journal.file.write_all_at(&bytes, journal.len) {
            // What was written of it would be a torn record in the middle once more follow.
            let _ = journal.file.set_len(journal.len);
            log::error!("{}: cannot save: {error}", self.path.display());
            return Err(errno(&error));
        }
        journal.len += bytes.len() as u64;
        journal.entries += entries.len() as u64;
        for entry in entries {
            apply(&mut journal.live, entry);
        }
        if durable && let Err(error) = journal.file.sync_data() {
            log::error!("{}: cannot sync: {error}", self.path.display());
            return Err(errno(&error));
        }
        if journal.entries > 2 * journal.live.len() as u64 + SLACK {
            journal.compact(&self.path);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::storage::catalogue::{Name, NodeBody};

    fn record(ino: u64, perm: u16) -> NodeRecord {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 5);
        NodeRecord {
            ino,
            body: NodeBody::Stream,
            perm,
            uid: 1,
            gid: 2,
            atime: now,
            mtime: now,
            ctime: now,
            names: vec![Name { parent: 1, name: format!("s{ino}").into_bytes(), entry: ino }],
        }
    }

    fn sorted(catalogue: &DiskCatalogue) -> Vec<NodeRecord> {
        let mut records = catalogue.load().unwrap();
        records.sort_by_key(|r| r.ino);
        records
    }

    fn journal(dir: &Path) -> PathBuf {
        dir.join("catalogue")
    }

    fn store() -> tempdir::Dir {
        tempdir::Dir::new()
    }

    /// A directory of its own under the system's temporary directory, removed afterwards.
    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);

        impl Dir {
            pub fn new() -> Dir {
                static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path = std::env::temp_dir().join(format!("mqfs-catalogue-{}-{n}", std::process::id()));
                let _ = std::fs::remove_dir_all(&path);
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
        }

        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn what_was_saved_is_loaded_after_reopening() {
        let dir = store();
        let catalogue = DiskCatalogue::open(&dir.0).unwrap();
        assert_eq!(catalogue.load().unwrap(), Vec::new());
        catalogue.save(&[record(2, 0o600), record(3, 0o644), record(4, 0o640)], &[], false).unwrap();
        catalogue.save(&[record(3, 0o444)], &[4], false).unwrap();
        drop(catalogue);
        let reopened = DiskCatalogue::open(&dir.0).unwrap();
        assert_eq!(sorted(&reopened), [record(2, 0o600), record(3, 0o444)]);
    }

    #[test]
    fn a_torn_last_record_is_cut_and_the_rest_kept() {
        let dir = store();
        let catalogue = DiskCatalogue::open(&dir.0).unwrap();
        catalogue.save(&[record(2, 0o600)], &[], false).unwrap();
        let whole = std::fs::metadata(journal(&dir.0)).unwrap().len();
        catalogue.save(&[record(3, 0o600)], &[], false).unwrap();
        drop(catalogue);
        let bytes = std::fs::read(journal(&dir.0)).unwrap();
        for cut in [whole as usize + 3, bytes.len() - 1] {
            std::fs::write(journal(&dir.0), &bytes[..cut]).unwrap();
            let reopened = DiskCatalogue::open(&dir.0).unwrap();
            assert_eq!(sorted(&reopened).iter().map(|r| r.ino).collect::<Vec<_>>(), [2]);
            assert_eq!(std::fs::metadata(journal(&dir.0)).unwrap().len(), whole, "cut at {cut}");
            // What is saved next follows the cut, readable.
            reopened.save(&[record(5, 0o600)], &[], false).unwrap();
            drop(reopened);
            let again = DiskCatalogue::open(&dir.0).unwrap();
            assert_eq!(sorted(&again).iter().map(|r| r.ino).collect::<Vec<_>>(), [2, 5]);
        }
    }

    #[test]
    fn zeros_after_the_last_record_are_a_torn_tail() {
        let dir = store();
        let catalogue = DiskCatalogue::open(&dir.0).unwrap();
        catalogue.save(&[record(2, 0o600)], &[], false).unwrap();
        drop(catalogue);
        let mut bytes = std::fs::read(journal(&dir.0)).unwrap();
        let whole = bytes.len() as u64;
        bytes.extend_from_slice(&[0; 100]);
        std::fs::write(journal(&dir.0), &bytes).unwrap();
        let reopened = DiskCatalogue::open(&dir.0).unwrap();
        assert_eq!(reopened.load().unwrap().len(), 1);
        assert_eq!(std::fs::metadata(journal(&dir.0)).unwrap().len(), whole);
    }

    #[test]
    fn a_bad_record_in_the_middle_is_an_error_naming_file_and_offset() {
        let dir = store();
        let catalogue = DiskCatalogue::open(&dir.0).unwrap();
        catalogue.save(&[record(2, 0o600)], &[], false).unwrap();
        let second = std::fs::metadata(journal(&dir.0)).unwrap().len();
        catalogue.save(&[record(3, 0o600)], &[], false).unwrap();
        catalogue.save(&[record(4, 0o600)], &[], false).unwrap();
        drop(catalogue);
        let mut bytes = std::fs::read(journal(&dir.0)).unwrap();
        bytes[second as usize + 20] ^= 1;
        std::fs::write(journal(&dir.0), &bytes).unwrap();
        let error = DiskCatalogue::open(&dir.0).err().expect("damage is an error");
        let text = error.to_string();
        assert!(text.contains(&journal(&dir.0).display().to_string()), "{text}");
        assert!(text.contains(&format!("offset {second}")), "{text}");
        // Nothing was cut: the damage stays for the user to see.
        assert_eq!(std::fs::read(journal(&dir.0)).unwrap(), bytes);
    }

    #[test]
    fn a_file_that_is_no_catalogue_is_refused() {
        let dir = store();
        std::fs::write(journal(&dir.0), b"hello, world").unwrap();
        let error = DiskCatalogue::open(&dir.0).err().expect("not a catalogue");
        assert!(error.to_string().contains("bad magic"), "{error}");
    }

    #[test]
    fn a_journal_past_twice_its_live_records_is_compacted() {
        let dir = store();
        let catalogue = DiskCatalogue::open(&dir.0).unwrap();
        catalogue.save(&[record(2, 0o600), record(3, 0o600)], &[], false).unwrap();
        let mut longest = 0;
        for round in 0..2 * SLACK {
            catalogue.save(&[record(2, 0o600 + round as u16 % 8)], &[], false).unwrap();
            longest = longest.max(std::fs::metadata(journal(&dir.0)).unwrap().len());
        }
        let len = std::fs::metadata(journal(&dir.0)).unwrap().len();
        let mut one = Vec::new();
        Entry::Save(record(2, 0o600)).encode(&mut one);
        assert!(longest <= HEADER + (2 * 2 + SLACK + 1) * one.len() as u64, "{longest}: never compacted");
        assert!(len < longest, "the journal shrank");
        assert!(!journal(&dir.0).with_extension("new").exists(), "the temporary file is gone");
        let expected = sorted(&catalogue);
        drop(catalogue);
        assert_eq!(sorted(&DiskCatalogue::open(&dir.0).unwrap()), expected);
    }

    #[test]
    fn only_a_durable_save_syncs_and_a_failed_one_changes_nothing() {
        let dir = store();
        let catalogue = DiskCatalogue::open(&dir.0).unwrap();
        catalogue.save(&[record(2, 0o600)], &[], true).unwrap();
        // /dev/null takes every write and refuses every sync.
        catalogue.journal.lock().file = OpenOptions::new().write(true).open("/dev/null").unwrap();
        catalogue.save(&[record(3, 0o600)], &[], false).unwrap();
        assert_eq!(catalogue.save(&[record(4, 0o600)], &[], true), Err(Errno::EINVAL));
        // /dev/full refuses writes as a full store does: the save fails, nothing is kept.
        let before = catalogue.journal.lock().len;
        catalogue.journal.lock().file = OpenOptions::new().write(true).open("/dev/full").unwrap();
        assert_eq!(catalogue.save(&[record(5, 0o600)], &[], false), Err(Errno::ENOSPC));
        assert_eq!(catalogue.journal.lock().len, before);
        assert!(sorted(&catalogue).iter().all(|r| r.ino != 5), "a failed save changes nothing");
    }
}
