//! A log's `head` file: where its history starts and where it ends (first retained seq,
//! next seq, end position), for what the segment files cannot tell: messages dropped from
//! the front of a segment that is kept, and messages counted by `skip` or dropped by
//! `clear`, which leave no record.

use std::fs::OpenOptions;
use std::path::Path;
use std::sync::Arc;

use super::files::{DataFile, FileLayer};

const MAGIC: [u8; 8] = *b"MQFSHEAD";
const LEN: usize = 8 + 8 + 8 + 8 + 4;
pub const NAME: &str = "head";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub first: u64,
    pub next: u64,
    pub end: u64,
}

impl Head {
    fn encode(&self) -> [u8; LEN] {
        let mut out = [0; LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..16].copy_from_slice(&self.first.to_le_bytes());
        out[16..24].copy_from_slice(&self.next.to_le_bytes());
        out[24..32].copy_from_slice(&self.end.to_le_bytes());
        let crc = crc32c::crc32c(&out[..32]);
        out[32..].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// The head saved in log directory `dir`, if there is a sound one (a torn or missing
    /// head leaves the segment files to tell).
    pub fn read(dir: &Path) -> Option<Head> {
        let bytes = std::fs::read(dir.join(NAME)).ok()?;
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        let sound = bytes.len() == LEN
            && bytes[..8] == MAGIC
            && crc32c::crc32c(&bytes[..32]).to_le_bytes() == bytes[32..];
        sound.then(|| Head { first: word(8), next: word(16), end: word(24) })
    }

    /// Saves the head in `dir`; the file is returned to be synced when it matters.
    pub fn write(&self, dir: &Path, layer: &Arc<dyn FileLayer>) -> std::io::Result<Arc<DataFile>> {
        let path = dir.join(NAME);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        let file = DataFile::new(file, path, layer.clone());
        file.write_at(&[&self.encode()], 0)?;
        Ok(Arc::new(file))
    }
}
