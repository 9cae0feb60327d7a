//! Recovery of one log directory at open: every segment is read in large chunks and every
//! record checked. A torn tail (a bad or partial record with no valid record after it, in
//! its file or any later one: writes cut short by a crash, which may have reached a new
//! segment file before the end of the one it follows was on disk) is cut off, later
//! segment files with it. A bad record that a crash cannot explain (a valid record follows
//! it) is damage: the log ends just before it, and the bytes from there and every later
//! segment file are moved to the store's `damaged/` directory under their own names, with
//! an error line. A bad record the commit journal holds is torn, whatever follows it (the
//! segment files of a `sync always` log are synced lazily, so the kernel may have written
//! back a later page and not an earlier one): the journal's records are then replayed
//! into the log from there (`replay`).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::files::{DataFile, FileLayer};
use super::head::Head;
use super::journal::Entry;
use super::log::{DiskLog, Segment};
use super::segment::{self, FILE_HEADER, FileHeader, Frame, RECORD_HEADER};

/// Bytes read at a time.
const CHUNK: usize = 8 << 20;
/// How far past a bad record recovery looks for a valid one.
const LOOK_AHEAD: u64 = 64 << 20;

/// What recovery made of a log directory.
pub struct Recovered {
    pub segments: VecDeque<Segment>,
    pub head: Head,
    /// Bytes of torn tails cut off.
    pub cut: u64,
    /// One line for each damaged place found (file, offset, what is wrong).
    pub damaged: Vec<String>,
}

/// The records of one segment file that check, and the first bad one.
struct Scan {
    offsets: Vec<u32>,
    /// Where the checked records end.
    end: u64,
    bad: Option<&'static str>,
}

/// Recovers the log in `dir`; damage goes to `quarantine` (created when needed). `journaled`
/// says whether the journal holds message `seq` of the log.
pub fn recover(
    dir: &Path,
    quarantine: &Path,
    layer: &Arc<dyn FileLayer>,
    journaled: &dyn Fn(u64) -> bool,
) -> io::Result<Recovered> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(base) = entry.file_name().to_str().and_then(segment::parse_name) {
            names.push((base, entry.path()));
        }
    }
    names.sort();
    let mut recovered = Recovered {
        segments: VecDeque::new(),
        head: Head { first: 0, next: 0, end: 0 },
        cut: 0,
        damaged: Vec::new(),
    };
    for (k, (base, path)) in names.iter().enumerate() {
        let later = &names[k + 1..];
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        let mut header = [0; FILE_HEADER as usize];
        let header = match len >= FILE_HEADER {
            true => file.read_exact_at(&mut header, 0).map(|()| FileHeader::decode(&header))?,
            false => None,
        };
        let expected = recovered.segments.back().map(|s| (s.next_seq(), s.end_position()));
        let file = Arc::new(DataFile::new(file, path.clone(), layer.clone()));
        // A file out of place is damage whatever follows; a bad record or header may be torn.
        let (segment, bad, out_of_place) = match header {
            None => (None, Some((0, "its file header is not a sound mqfs segment header")), false),
            Some(h) if h.base != *base || expected.is_some_and(|e| e != (h.base, h.start)) => {
                (None, Some((0, "it does not follow the segment before it")), true)
            }
            Some(h) => {
                let scan = scan(&file.file, len, h.base)?;
                let bad = scan.bad.map(|why| (scan.end, why));
                (
                    Some(Segment {
                        base: h.base,
                        start: h.start,
                        file: file.clone(),
                        len: scan.end,
                        offsets: scan.offsets,
                    }),
                    bad,
                    false,
                )
            }
        };
        let Some((at, why)) = bad else {
            keep(&mut recovered.segments, segment);
            continue;
        };
        let seq = segment.as_ref().map_or(expected.map_or(*base, |e| e.0), |s| s.next_seq());
        // Where the journal takes over, whatever is wrong here: its records are put back.
        if !journaled(seq) && (out_of_place || valid_record_in(&file.file, at, len, later, seq)?) {
            let moved = move_damage(&file, at, len, later, quarantine, layer)?;
            log::error!(
                "{}: damaged record at offset {at} ({why}): the log ends before it; {moved} moved to {}",
                path.display(),
                quarantine.display()
            );
            recovered.damaged.push(format!("{} at offset {at}: {why}", path.display()));
        } else {
            // A torn tail: cut, with whatever later files hold (nothing valid).
            match segment {
                None => remove(path),
                Some(_) => file.set_len(at)?,
            }
            recovered.cut += len - at + cut_files(later)?;
        }
        keep(&mut recovered.segments, segment);
        break;
    }
    recovered.head = reconcile(&mut recovered.segments, Head::read(dir));
    Ok(recovered)
}

/// Where history starts and ends, from the segments and the saved head; the segments it
/// drops are deleted.
fn reconcile(segments: &mut VecDeque<Segment>, saved: Option<Head>) -> Head {
    let saved = saved.filter(|h| h.first <= h.next);
    let Some(last) = segments.back() else {
        return saved.unwrap_or(Head { first: 0, next: 0, end: 0 });
    };
    let scanned = Head { first: segments[0].base, next: last.next_seq(), end: last.end_position() };
    let head = match saved {
        // Everything in the files was dropped (popped, cleared, skipped past).
        Some(h) if h.first >= scanned.next => h,
        Some(h) => Head { first: h.first.max(scanned.first), ..scanned },
        None => scanned,
    };
    while segments.front().is_some_and(|s| s.next_seq() <= head.first) {
        remove(&segments.pop_front().expect("checked").file.path);
    }
    head
}

/// Keeps a recovered segment that holds records; deletes one left with its header only.
fn keep(segments: &mut VecDeque<Segment>, segment: Option<Segment>) {
    match segment {
        Some(segment) if !segment.offsets.is_empty() => segments.push_back(segment),
        Some(segment) if segment.file.path.exists() => remove(&segment.file.path),
        _ => {}
    }
}

/// Whether a valid record (numbered `seq` or later) follows offset `from` of `file` (of
/// `len` bytes), or is in one of the `later` files.
fn valid_record_in(file: &File, from: u64, len: u64, later: &[(u64, PathBuf)], seq: u64) -> io::Result<bool> {
    if valid_record_after(file, from, len, seq)? {
        return Ok(true);
    }
    for (_, path) in later {
        let file = File::open(path)?;
        if valid_record_after(&file, 0, file.metadata()?.len(), seq)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Deletes `files`; says how many bytes they held.
fn cut_files(files: &[(u64, PathBuf)]) -> io::Result<u64> {
    let mut bytes = 0;
    for (_, path) in files {
        bytes += std::fs::metadata(path)?.len();
        remove(path);
    }
    Ok(bytes)
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path) {
        log::warn!("{}: cannot delete: {e}", path.display());
    }
}

/// Checks the records of a segment file of `len` bytes whose first message is `base`.
fn scan(file: &File, len: u64, base: u64) -> io::Result<Scan> {
    let mut chunk = Chunk { buffer: vec![0; CHUNK.min(len as usize)], start: 0, len: 0 };
    let mut offsets = Vec::new();
    let mut offset = FILE_HEADER;
    let bad = loop {
        if offset == len {
            break None;
        }
        if offset + RECORD_HEADER > len {
            break Some("a partial record header");
        }
        if offset > u32::MAX as u64 {
            break Some("the segment is larger than a segment can be");
        }
        let bytes = chunk.at(file, offset, RECORD_HEADER, len)?;
        let Some(frame) = Frame::of(bytes) else { break Some("unknown record flags") };
        let record = frame.size();
        if frame.seq != base + offsets.len() as u64 {
            break Some("a record out of sequence");
        }
        if offset + record > len {
            break Some("a partial record");
        }
        if chunk.crc(file, offset, record, len)? != frame.crc {
            break Some("a record whose checksum does not match");
        }
        offsets.push(offset as u32);
        offset += record;
    };
    offsets.shrink_to_fit();
    Ok(Scan { offsets, end: offset, bad })
}

/// A window of a file read in one go.
struct Chunk {
    buffer: Vec<u8>,
    /// File offset of `buffer[0]`.
    start: u64,
    len: usize,
}

impl Chunk {
    /// `size` bytes at `offset` (size at most the chunk), reading a new window if needed.
    fn at(&mut self, file: &File, offset: u64, size: u64, file_len: u64) -> io::Result<&[u8]> {
        if offset < self.start || offset + size > self.start + self.len as u64 {
            self.len = self.buffer.len().min((file_len - offset) as usize);
            file.read_exact_at(&mut self.buffer[..self.len], offset)?;
            self.start = offset;
        }
        let from = (offset - self.start) as usize;
        Ok(&self.buffer[from..from + size as usize])
    }

    /// The checksum of the `size`-byte record at `offset`, read in pieces if it is larger
    /// than the chunk.
    fn crc(&mut self, file: &File, offset: u64, size: u64, file_len: u64) -> io::Result<u32> {
        if size <= self.buffer.len() as u64 {
            return Ok(segment::record_crc(self.at(file, offset, size, file_len)?));
        }
        let mut crc = segment::record_crc(self.at(file, offset, RECORD_HEADER, file_len)?);
        let mut at = offset + RECORD_HEADER;
        while at < offset + size {
            let piece = (self.buffer.len() as u64).min(offset + size - at);
            crc = segment::more(crc, self.at(file, at, piece, file_len)?);
            at += piece;
        }
        Ok(crc)
    }
}

/// Whether a record that checks (numbered `seq` or later) starts anywhere in the file
/// after `from` (looking at most `LOOK_AHEAD` bytes on).
fn valid_record_after(file: &File, from: u64, len: u64, seq: u64) -> io::Result<bool> {
    let mut rest = vec![0; len.min(from + LOOK_AHEAD).saturating_sub(from) as usize];
    file.read_exact_at(&mut rest, from)?;
    let most = seq + rest.len() as u64 / RECORD_HEADER;
    for at in 1..rest.len() {
        let bytes = &rest[at..];
        if bytes.len() < RECORD_HEADER as usize {
            break;
        }
        let Some(frame) = Frame::of(bytes) else { continue };
        let plausible = (seq..=most).contains(&frame.seq) && frame.size() <= bytes.len() as u64;
        if plausible && segment::check_record(&bytes[..frame.size() as usize], frame.seq).is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Moves the bytes of `file` from `at` and the later segment files to `quarantine`; says
/// what was moved.
fn move_damage(
    file: &DataFile,
    at: u64,
    len: u64,
    later: &[(u64, PathBuf)],
    quarantine: &Path,
    layer: &Arc<dyn FileLayer>,
) -> io::Result<String> {
    std::fs::create_dir_all(quarantine)?;
    let name = file.path.file_name().expect("a segment file has a name");
    if at <= FILE_HEADER {
        std::fs::rename(&file.path, free_name(quarantine, name))?;
    } else {
        let mut bytes = vec![0; (len - at) as usize];
        file.read_exact_at(&mut bytes, at)?;
        let path = free_name(quarantine, name);
        let copy = DataFile::new(File::create(&path)?, path, layer.clone());
        copy.write_at(&[&bytes], 0)?;
        copy.sync()?;
        file.set_len(at)?;
        file.sync()?;
    }
    for (_, path) in later {
        std::fs::rename(path, free_name(quarantine, path.file_name().expect("named")))?;
    }
    Ok(format!("{} bytes and {} later segment files", len - at, later.len()))
}

/// `dir/name`, or `dir/name.N` for the first N that is not taken.
fn free_name(dir: &Path, name: &std::ffi::OsStr) -> PathBuf {
    let path = dir.join(name);
    (1..)
        .map(|n| if n == 1 { path.clone() } else { dir.join(format!("{}.{n}", name.to_string_lossy())) })
        .find(|p| !p.exists())
        .expect("some name is free")
}

/// Appends to `log` the journal's records of it that its files lack (`entries` in the
/// order they were journaled, so by sequence number); says how many, or why it stopped.
pub fn replay(log: &mut DiskLog, entries: &[Entry]) -> Result<u64, String> {
    use crate::storage::{Log, Message};
    let mut replayed = 0;
    for entry in entries {
        if entry.seq < log.next_seq() {
            continue; // in the files already
        }
        if entry.seq > log.next_seq() && log.segment_count() == 0 {
            // What the files told was dropped since (or never made durable in them).
            log.restart_at(entry.seq, entry.position);
        }
        if (entry.seq, entry.position) != (log.next_seq(), log.end()) {
            return Err(format!(
                "the journal's message {} at position {} cannot follow message {} ending at {}",
                entry.seq,
                entry.position,
                log.next_seq(),
                log.end()
            ));
        }
        let (header, _) = segment::RecordHeader::decode(&entry.record).expect("checked when read");
        let payload = &entry.record[RECORD_HEADER as usize..];
        log.append(Message::Borrowed(payload), &header.stamp)
            .map_err(|e| format!("message {} cannot be written back: {e}", entry.seq))?;
        replayed += 1;
    }
    Ok(replayed)
}
