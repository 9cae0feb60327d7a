//! The commit journal `DIR/journal` (docs/store-format.md, "The commit journal"): every
//! record a `sync always` log syncs is also written here, so that one fdatasync of this one
//! file makes a round of writes durable however many logs they went to; the segment files
//! are synced lazily. The file is preallocated (written with zeros and synced when made),
//! so that its fdatasyncs carry no metadata, and reused in laps: an entry is framed with
//! the lap it belongs to, and before a lap starts over at the front every segment file the
//! last lap covered is synced (a checkpoint), so that the entries it overwrites are no
//! longer needed. At open the entries of the current lap are read back for recovery to
//! replay what the segment files lack.

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;

use super::files::{DataFile, FileLayer};
use super::segment::{self, RECORD_HEADER};
use crate::storage::{LogId, LogKind};

pub const NAME: &str = "journal";
/// The journal's size unless the file is larger already, or the file system small (it
/// takes at most an eighth of the space free when it is made).
pub const JOURNAL_BYTES: u64 = 16 << 20;
const MAGIC: [u8; 8] = *b"MQFSJRNL";
const VERSION: u32 = 1;
/// Magic, version, lap, checksum.
const HEADER: usize = 8 + 4 + 8 + 4;
/// Entries start past the header's block, so that no entry write touches the header.
const DATA_START: u64 = 4096;
/// Checksum, record length, lap, node, position, kind, reserved.
pub const ENTRY_HEADER: u64 = 4 + 4 + 8 + 8 + 8 + 4 + 4;

/// A record of a log, as the journal keeps it.
pub struct Entry {
    pub seq: u64,
    /// Where the message's first byte is in its log.
    pub position: u64,
    /// The segment record: its header, then the payload.
    pub record: Vec<u8>,
}

/// A record on its way into the journal.
pub struct Record<'a> {
    pub log: LogId,
    pub position: u64,
    /// The record's header as its segment file has it.
    pub header: [u8; RECORD_HEADER as usize],
    pub payload: &'a [u8],
    /// The segment file that holds the record: synced before its entry is overwritten.
    pub file: &'a Arc<DataFile>,
}

struct Lap {
    number: u64,
    /// Where the next entry goes.
    offset: u64,
    /// The segment files this lap holds records of.
    files: Vec<Arc<DataFile>>,
    /// The logs it holds records of.
    logs: HashSet<LogId>,
}

/// A store's commit journal, open.
pub struct Journal {
    file: DataFile,
    layer: Arc<dyn FileLayer>,
    capacity: u64,
    lap: Mutex<Lap>,
    /// Entry bytes ever written, in every lap: what a sync request waits for.
    written: AtomicU64,
    /// `written` as it was when the last fdatasync (or checkpoint) that made it durable began.
    synced: AtomicU64,
}

impl Journal {
    /// Opens (or makes) the journal of store `dir`, `capacity` bytes unless the file is
    /// larger or the file system has less than eight times that free, and reads back the
    /// entries of its current lap, oldest first. Nothing is written to it before
    /// [`Journal::start`], which is called once they were replayed.
    pub fn open(
        dir: &Path,
        layer: &Arc<dyn FileLayer>,
        capacity: u64,
    ) -> io::Result<(Journal, Vec<(LogId, Entry)>)> {
        let path = dir.join(NAME);
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        let len = file.metadata()?.len();
        let mut bytes = vec![0; len as usize];
        file.read_exact_at(&mut bytes, 0)?;
        let (number, entries) = match header_lap(&bytes) {
            Some(lap) => (lap, read_entries(&bytes, lap)),
            None => (0, Vec::new()),
        };
        let stat = nix::sys::statvfs::fstatvfs(&file).map_err(io::Error::from)?;
        let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
        let capacity = (capacity.min(free / 8) & !(DATA_START - 1)).max(len).max(DATA_START * 2);
        let journal = Journal {
            file: DataFile::new(file, path, layer.clone()),
            layer: layer.clone(),
            capacity,
            lap: Mutex::new(Lap { number, offset: DATA_START, files: Vec::new(), logs: HashSet::new() }),
            written: AtomicU64::new(0),
            synced: AtomicU64::new(0),
        };
        Ok((journal, entries))
    }

    /// Starts a new lap once what the last one held is durable elsewhere: fills the file to
    /// its capacity with zeros if it is shorter (a new journal), and writes the new lap's
    /// header, synced.
    pub fn start(&self, dir: &Path) -> io::Result<()> {
        let len = self.file.file.metadata()?.len();
        if len < self.capacity {
            let zeros = vec![0; 1 << 20];
            let mut at = len;
            while at < self.capacity {
                let n = zeros.len().min((self.capacity - at) as usize);
                self.file.write_at(&[&zeros[..n]], at)?;
                at += n as u64;
            }
            self.file.sync()?;
            self.layer.sync_dir(dir)?;
        }
        let mut lap = self.lap.lock();
        self.begin_lap(&mut lap)
    }

    fn begin_lap(&self, lap: &mut Lap) -> io::Result<()> {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        lap.number = (lap.number + 1).max(now.as_nanos() as u64);
        lap.offset = DATA_START;
        self.file.write_at(&[&encode_header(lap.number)], 0)?;
        self.file.sync()
    }

    /// Whether `size` bytes of records fit in one lap.
    pub fn takes(&self, size: u64) -> bool {
        size <= (self.capacity - DATA_START) / 4
    }

    /// Writes `records` (at most what [`Journal::takes`]) as one batch, starting a new lap
    /// first if they do not fit in this one; returns what [`Journal::is_synced`] must reach
    /// for them to be durable.
    pub fn write(&self, records: &[Record<'_>]) -> io::Result<u64> {
        let size: u64 = records.iter().map(|r| ENTRY_HEADER + RECORD_HEADER + r.payload.len() as u64).sum();
        let mut lap = self.lap.lock();
        if lap.offset + size > self.capacity {
            self.checkpoint(&mut lap)?;
        }
        let mut batch = Vec::with_capacity(size as usize);
        for record in records {
            encode_entry(&mut batch, lap.number, record);
            if record.file.lap.swap(lap.number, Ordering::AcqRel) != lap.number {
                lap.files.push(record.file.clone());
                lap.logs.insert(record.log);
            }
        }
        self.file.write_at(&[&batch], lap.offset)?;
        lap.offset += size;
        // Counted once written, under the lock: a sync that loads it covers these bytes.
        Ok(self.written.fetch_add(size, Ordering::AcqRel) + size)
    }

    /// Syncs the segment files the lap covered, then starts the next lap: every entry
    /// written so far is durable in its segment file.
    fn checkpoint(&self, lap: &mut Lap) -> io::Result<()> {
        let written = self.written.load(Ordering::Acquire);
        for file in &lap.files {
            file.sync()?;
        }
        lap.files.clear();
        lap.logs.clear();
        self.begin_lap(lap)?;
        self.synced.fetch_max(written, Ordering::AcqRel);
        Ok(())
    }

    /// Log `id` is gone: a log made with its number starts at message 0 again, and must
    /// not be given its records at the next recovery, so a lap that holds some ends now.
    pub fn forget(&self, id: LogId) -> io::Result<()> {
        let mut lap = self.lap.lock();
        match lap.logs.contains(&id) {
            true => self.checkpoint(&mut lap),
            false => Ok(()),
        }
    }

    pub fn is_synced(&self, target: u64) -> bool {
        self.synced.load(Ordering::Acquire) >= target
    }

    /// fdatasyncs the journal unless every entry written is durable already.
    pub fn sync(&self) -> io::Result<()> {
        let written = self.written.load(Ordering::Acquire);
        if self.is_synced(written) {
            return Ok(());
        }
        self.layer.sync_data(&self.file.file, &self.file.path)?;
        self.synced.fetch_max(written, Ordering::AcqRel);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.file.path
    }
}

fn encode_header(lap: u64) -> [u8; HEADER] {
    let mut out = [0; HEADER];
    out[0..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..20].copy_from_slice(&lap.to_le_bytes());
    let crc = crc32c::crc32c(&out[..20]);
    out[20..24].copy_from_slice(&crc.to_le_bytes());
    out
}

/// The lap a journal's header names, if the header is sound.
fn header_lap(bytes: &[u8]) -> Option<u64> {
    let header = bytes.get(..HEADER)?;
    let sound = header[0..8] == MAGIC
        && u32_at(header, 8) == VERSION
        && u32_at(header, 20) == crc32c::crc32c(&header[..20]);
    sound.then(|| u64_at(header, 12))
}

fn encode_entry(out: &mut Vec<u8>, lap: u64, record: &Record<'_>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(RECORD_HEADER as u32 + record.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&lap.to_le_bytes());
    out.extend_from_slice(&record.log.node.to_le_bytes());
    out.extend_from_slice(&record.position.to_le_bytes());
    out.extend_from_slice(&kind_code(record.log.kind).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&record.header);
    out.extend_from_slice(record.payload);
    let crc = crc32c::crc32c(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// The entries of lap `lap` from the front of the journal, up to the first that is not
/// one of them (torn, never written, or left from an earlier lap).
fn read_entries(bytes: &[u8], lap: u64) -> Vec<(LogId, Entry)> {
    let mut entries = Vec::new();
    let mut at = DATA_START as usize;
    while let Some(header) = bytes.get(at..at + ENTRY_HEADER as usize) {
        let len = u32_at(header, 4) as usize;
        let Some(whole) = bytes.get(at..at + ENTRY_HEADER as usize + len) else { break };
        let kind = KINDS.get(u32_at(header, 32) as usize);
        let Some(&kind) =
            kind.filter(|_| u32_at(header, 0) == crc32c::crc32c(&whole[4..]) && u64_at(header, 8) == lap)
        else {
            break;
        };
        let record = &whole[ENTRY_HEADER as usize..];
        let Some(frame) = record.get(..RECORD_HEADER as usize).and_then(segment::Frame::of) else { break };
        if segment::check_record(record, frame.seq).is_none() {
            break;
        }
        let log = LogId { node: u64_at(header, 16), kind };
        entries.push((log, Entry { seq: frame.seq, position: u64_at(header, 24), record: record.to_vec() }));
        at += whole.len();
    }
    entries
}

/// What an entry's kind field holds: a log kind's index here.
const KINDS: [LogKind; 3] = [LogKind::Stream, LogKind::Order, LogKind::Acks];

fn kind_code(kind: LogKind) -> u32 {
    KINDS.iter().position(|&k| k == kind).expect("every kind is listed") as u32
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}
