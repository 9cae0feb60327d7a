//! The disk log: one channel's history in segment files. In memory it keeps, per segment,
//! the open file and one 4-byte file offset per message, and a small cache of the newest
//! messages, so that readers right behind the writer never touch the files; older messages
//! are read back with pread and their checksum checked.
//!
//! Dropping messages from the front is logical until a whole segment is dropped, which
//! deletes its file. The first retained seq is saved in the `head` file when a segment goes,
//! at once on `clear`, and when the log is dropped; after a crash a few messages dropped
//! since the last save may come back, and the engine's retention trims them again.
//!
//! A `sync always` log's sync writes the records appended since its last sync to the
//! store's commit journal (`journal`) and waits for the journal alone; its segment files
//! are synced when the journal's lap ends, or when the log is closed.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::path::PathBuf;
use std::sync::Arc;

use super::files::{DataFile, FileLayer, errno};
use super::head::Head;
use super::journal::{self, Journal};
use super::segment::{self, FILE_HEADER, FileHeader, RECORD_HEADER, RecordHeader};
use super::syncer::{SyncHandle, Wait};
use crate::engine::Errno;
use crate::storage::{Bytes, Extent, Log, LogId, Message, Stamp, SyncCallback, SyncPolicy};

/// The newest messages kept in memory, in payload bytes (a larger message is not kept).
pub const CACHE_BYTES: usize = 256 * 1024;

/// One segment file and the offsets of its records.
pub struct Segment {
    pub base: u64,
    /// Position of the segment's first payload byte.
    pub start: u64,
    pub file: Arc<DataFile>,
    /// Bytes of the file in use (header and records).
    pub len: u64,
    /// File offset of each record, message `base + i` at `offsets[i]`.
    pub offsets: Vec<u32>,
}

impl Segment {
    pub fn count(&self) -> u64 {
        self.offsets.len() as u64
    }

    pub fn next_seq(&self) -> u64 {
        self.base + self.count()
    }

    fn record_end(&self, index: usize) -> u64 {
        self.offsets.get(index + 1).map_or(self.len, |&o| o as u64)
    }

    fn payload_len(&self, index: usize) -> usize {
        (self.record_end(index) - self.offsets[index] as u64 - RECORD_HEADER) as usize
    }

    /// Position of message `base + index` (of the end, for `index == count`).
    fn position(&self, index: usize) -> u64 {
        let offset = self.offsets.get(index).map_or(self.len, |&o| o as u64);
        self.start + offset - FILE_HEADER - RECORD_HEADER * index as u64
    }

    /// Position where the segment's last message ends.
    pub fn end_position(&self) -> u64 {
        self.position(self.offsets.len())
    }

    /// Reads record `index` back whole, checking it.
    fn read(&self, index: usize) -> Result<(Bytes, Stamp), Errno> {
        let offset = self.offsets[index] as u64;
        let mut record = vec![0; (self.record_end(index) - offset) as usize];
        let seq = self.base + index as u64;
        let checked = match self.file.read_exact_at(&mut record, offset) {
            Ok(()) => {
                segment::check_record(&record, seq).ok_or_else(|| "its checksum does not match".to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        let header = checked.map_err(|why| {
            log::error!(
                "{}: cannot read message {seq} back at offset {offset}: {why}",
                self.file.path.display()
            );
            Errno::EIO
        })?;
        let buffer = Arc::new(record);
        Ok((Bytes::shared(&buffer, RECORD_HEADER as usize..buffer.len()), header.stamp))
    }
}

/// How many offsets a full index grows by: it doubles, from 16.
fn index_step(offsets: &[u32]) -> usize {
    offsets.len().max(16)
}

struct Cached {
    seq: u64,
    bytes: Bytes,
    stamp: Stamp,
}

/// Where a log's files are and how it reaches the disk.
pub struct Place {
    pub id: LogId,
    pub dir: PathBuf,
    pub layer: Arc<dyn FileLayer>,
    pub syncer: SyncHandle,
    pub journal: Arc<Journal>,
    /// A segment is sealed once it would grow past this many bytes.
    pub segment_bytes: u64,
}

pub struct DiskLog {
    place: Place,
    /// The log's directory, synced when segment files are created in it.
    dir: Arc<DataFile>,
    policy: SyncPolicy,
    segments: VecDeque<Segment>,
    extent: Extent,
    cache: VecDeque<Cached>,
    cache_bytes: usize,
    /// The first message no sync has been asked for yet.
    unsynced: Cell<u64>,
    /// What the journal must reach for the messages this log wrote to it to be durable.
    journaled: Cell<u64>,
    /// The last sync asked for went to the segment files, not the journal.
    direct: Cell<bool>,
}

impl DiskLog {
    /// The log in `place.dir` with the segments recovered from it.
    pub fn new(place: Place, segments: VecDeque<Segment>, head: Head) -> std::io::Result<DiskLog> {
        let dir = std::fs::File::open(&place.dir)?;
        let dir = Arc::new(DataFile::new(dir, place.dir.clone(), place.layer.clone()));
        let retained = match segments.iter().find(|s| s.next_seq() > head.first) {
            Some(s) => head.end - s.position((head.first - s.base) as usize),
            None => 0,
        };
        Ok(DiskLog {
            place,
            dir,
            policy: SyncPolicy::Never,
            segments,
            extent: Extent { first: head.first, next: head.next, bytes: retained, appended: head.end },
            cache: VecDeque::new(),
            cache_bytes: 0,
            unsynced: Cell::new(head.next),
            journaled: Cell::new(0),
            direct: Cell::new(false),
        })
    }

    /// Starts an empty log with no segment at message `seq`, at `position` (replaying a
    /// journal whose records begin past what the segments and head tell).
    pub fn restart_at(&mut self, seq: u64, position: u64) {
        debug_assert!(self.segments.is_empty(), "only a log without segments restarts");
        self.extent = Extent { first: seq, next: seq, bytes: 0, appended: position };
        self.unsynced.set(seq);
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Syncs every file not known to be durable, in the caller's thread.
    pub fn sync_now(&self) -> std::io::Result<()> {
        self.dirty_files().iter().try_for_each(|f| f.sync())
    }

    /// Writes the messages appended since the last sync to the journal; what the journal
    /// must reach then. None if they cannot go there (not all in the cache, or too large):
    /// the segment files are synced instead.
    fn journal(&self) -> Option<u64> {
        let (from, next) = (self.unsynced.get(), self.extent.next);
        if from == next {
            return Some(self.journaled.get());
        }
        let oldest = self.cache.front().filter(|c| c.seq <= from)?.seq;
        let tail = &self.cache.range((from - oldest) as usize..);
        if tail.len() as u64 != next - from {
            return None; // a message skipped, never stored
        }
        let size: u64 =
            tail.clone().map(|c| journal::ENTRY_HEADER + RECORD_HEADER + c.bytes.len() as u64).sum();
        if !self.place.journal.takes(size) {
            return None;
        }
        let records: Vec<journal::Record<'_>> = tail
            .clone()
            .map(|cached| {
                let (segment, index) = self.locate(cached.seq);
                let len = cached.bytes.len() as u32;
                journal::Record {
                    log: self.place.id,
                    position: segment.position(index),
                    header: RecordHeader { len, seq: cached.seq, stamp: cached.stamp }.encode(&cached.bytes),
                    payload: &cached.bytes,
                    file: &segment.file,
                }
            })
            .collect();
        match self.place.journal.write(&records) {
            Ok(to) => {
                self.journaled.set(to);
                Some(to)
            }
            Err(e) => {
                log::warn!(
                    "{}: cannot write to the journal, syncing the log's files: {e}",
                    self.place.journal.path().display()
                );
                None
            }
        }
    }

    fn head(&self) -> Head {
        Head { first: self.extent.first, next: self.extent.next, end: self.extent.appended }
    }

    fn save_head(&self) -> Option<Arc<DataFile>> {
        self.head()
            .write(&self.place.dir, &self.place.layer)
            .inspect_err(|e| log::warn!("{}: cannot save the log's head: {e}", self.place.dir.display()))
            .ok()
    }

    fn remove_file(segment: &Segment) {
        if let Err(e) = std::fs::remove_file(&segment.file.path) {
            log::warn!("{}: cannot delete a dropped segment: {e}", segment.file.path.display());
        }
    }

    /// The segment holding message `seq` (retained) and its index there.
    fn locate(&self, seq: u64) -> (&Segment, usize) {
        let index = self.segments.partition_point(|s| s.base <= seq) - 1;
        let segment = &self.segments[index];
        (segment, (seq - segment.base) as usize)
    }

    fn read(&self, seq: u64) -> Result<Option<(Bytes, Stamp)>, Errno> {
        if seq < self.extent.first || seq >= self.extent.next {
            return Ok(None);
        }
        if let Some(oldest) = self.cache.front().filter(|c| c.seq <= seq) {
            let cached = &self.cache[(seq - oldest.seq) as usize];
            return Ok(Some((cached.bytes.clone(), cached.stamp)));
        }
        let (segment, index) = self.locate(seq);
        segment.read(index).map(Some)
    }

    /// A new segment for message `self.extent.next`, its header written.
    fn open_segment(&mut self) -> Result<(), Errno> {
        let path = self.place.dir.join(segment::file_name(self.extent.next));
        let created = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path);
        let file = created.map_err(|e| self.refused(&path, &e))?;
        let file = Arc::new(DataFile::new(file, path, self.place.layer.clone()));
        let header = FileHeader { base: self.extent.next, start: self.extent.appended }.encode();
        let mut written = file.write_at(&[&header], 0);
        self.dir.touched();
        match self.policy {
            // The header and the name durable now: the journal's records need the file.
            SyncPolicy::Always if written.is_ok() => written = file.sync().and_then(|()| self.dir.sync()),
            SyncPolicy::Interval(within) => self.place.syncer.sync_within(&self.dir, within),
            _ => {}
        }
        if let Err(e) = written {
            let _ = std::fs::remove_file(&file.path);
            return Err(self.refused(&file.path, &e));
        }
        // The sealed segment's index grows no more: give back what doubling reserved.
        if let Some(sealed) = self.segments.back_mut() {
            sealed.offsets.shrink_to_fit();
        }
        let segment = Segment {
            base: self.extent.next,
            start: self.extent.appended,
            file,
            len: FILE_HEADER,
            offsets: Vec::new(),
        };
        self.segments.push_back(segment);
        Ok(())
    }

    fn refused(&self, path: &std::path::Path, error: &std::io::Error) -> Errno {
        log::warn!("{}: a write was refused: {error}", path.display());
        errno(error)
    }

    fn drop_cached_before(&mut self, seq: u64) {
        while self.cache.front().is_some_and(|c| c.seq < seq) {
            let cached = self.cache.pop_front().expect("checked");
            self.cache_bytes -= cached.bytes.len();
        }
    }

    fn dirty_files(&self) -> Vec<Arc<DataFile>> {
        let files = self.segments.iter().map(|s| &s.file).chain([&self.dir]);
        files.filter(|f| f.is_dirty()).cloned().collect()
    }
}

impl Log for DiskLog {
    fn extent(&self) -> Extent {
        self.extent
    }

    fn append(&mut self, message: Message<'_>, stamp: &Stamp) -> Result<u64, Errno> {
        let len = u32::try_from(message.len()).map_err(|_| Errno::EFBIG)?;
        let record = RECORD_HEADER + len as u64;
        let segment_bytes = self.place.segment_bytes;
        if self.segments.back().is_none_or(|s| s.len + record > segment_bytes) {
            self.open_segment()?;
        }
        let seq = self.extent.next;
        let header = RecordHeader { len, seq, stamp: *stamp }.encode(message.as_slice());
        let segment = self.segments.back_mut().expect("a segment was just ensured");
        if let Err(e) = segment.file.write_at(&[&header, message.as_slice()], segment.len) {
            let truncated = segment.file.set_len(segment.len);
            let path = segment.file.path.clone();
            if segment.offsets.is_empty() {
                let _ = std::fs::remove_file(&path);
                self.segments.pop_back();
            } else if let Err(t) = truncated {
                log::error!("{}: cannot truncate a refused write away: {t}", path.display());
            }
            return Err(self.refused(&path, &e));
        }
        if segment.offsets.len() == segment.offsets.capacity() {
            segment.offsets.reserve_exact(index_step(&segment.offsets));
        }
        segment
            .offsets
            .push(u32::try_from(segment.len).expect("segments stay below 4 GiB but for one message"));
        segment.len += record;
        if let SyncPolicy::Interval(within) = self.policy {
            self.place.syncer.sync_within(&segment.file, within);
        }
        if message.len() <= CACHE_BYTES {
            let bytes = match message {
                Message::Owned(bytes) => Bytes::from(bytes),
                Message::Borrowed(bytes) => Bytes::from(bytes.to_vec()),
            };
            self.cache_bytes += bytes.len();
            self.cache.push_back(Cached { seq, bytes, stamp: *stamp });
            while self.cache_bytes > CACHE_BYTES {
                let oldest = self.cache.pop_front().expect("the cache holds bytes");
                self.cache_bytes -= oldest.bytes.len();
            }
        } else {
            self.drop_cached_before(seq + 1);
        }
        self.extent.next += 1;
        self.extent.bytes += len as u64;
        self.extent.appended += len as u64;
        Ok(seq)
    }

    fn unappend(&mut self) {
        let Some(segment) = self.segments.back_mut() else { return };
        let Some(&offset) = segment.offsets.last() else { return };
        let len = segment.payload_len(segment.offsets.len() - 1);
        segment.offsets.pop();
        segment.len = offset as u64;
        if segment.offsets.is_empty() {
            DiskLog::remove_file(segment);
            self.segments.pop_back();
        } else if let Err(e) = segment.file.set_len(offset as u64) {
            log::error!("{}: cannot take back the last record: {e}", segment.file.path.display());
        }
        self.extent.next -= 1;
        self.unsynced.set(self.unsynced.get().min(self.extent.next));
        if self.cache.back().is_some_and(|c| c.seq == self.extent.next) {
            let cached = self.cache.pop_back().expect("checked");
            self.cache_bytes -= cached.bytes.len();
        }
        self.extent.bytes -= len as u64;
        self.extent.appended -= len as u64;
        self.extent.first = self.extent.first.min(self.extent.next);
    }

    fn get(&self, seq: u64) -> Result<Option<Bytes>, Errno> {
        Ok(self.read(seq)?.map(|(bytes, _)| bytes))
    }

    fn stamp(&self, seq: u64) -> Result<Option<Stamp>, Errno> {
        Ok(self.read(seq)?.map(|(_, stamp)| stamp))
    }

    fn get_stamped(&self, seq: u64) -> Result<Option<(Bytes, Stamp)>, Errno> {
        self.read(seq)
    }

    fn read_at(&self, position: u64, size: usize, out: &mut Vec<u8>) -> Result<(), Errno> {
        debug_assert!(position >= self.start(), "bytes before the oldest retained one were dropped");
        let end = self.extent.appended.min(position.saturating_add(size as u64));
        if position >= end {
            return Ok(());
        }
        let index = self.segments.partition_point(|s| s.start <= position) - 1;
        let segment = &self.segments[index];
        // The last message of the segment starting at or before `position`.
        let (mut low, mut high) = (0, segment.offsets.len());
        while low < high {
            let middle = (low + high) / 2;
            if segment.position(middle) <= position { low = middle + 1 } else { high = middle }
        }
        let at = low - 1;
        let mut seq = segment.base + at as u64;
        let mut position = position;
        let mut message_start = segment.position(at);
        while position < end {
            let (bytes, _) = self.read(seq)?.expect("positions before the end are retained");
            let from = (position - message_start) as usize;
            let to = bytes.len().min((end - message_start) as usize);
            out.extend_from_slice(&bytes[from.min(to)..to]);
            position = position.max(message_start + to as u64);
            message_start += bytes.len() as u64;
            seq += 1;
        }
        Ok(())
    }

    fn pop_front(&mut self) -> Option<usize> {
        if self.is_empty() {
            return None;
        }
        let front = self.segments.front().expect("a retained message has a segment");
        let len = front.payload_len((self.extent.first - front.base) as usize);
        let emptied = front.next_seq() <= self.extent.first + 1;
        self.extent.first += 1;
        self.extent.bytes -= len as u64;
        self.drop_cached_before(self.extent.first);
        if emptied {
            let segment = self.segments.pop_front().expect("checked");
            DiskLog::remove_file(&segment);
            self.save_head();
        }
        Some(len)
    }

    fn skip(&mut self, len: usize) {
        debug_assert!(self.is_empty(), "only an empty log can skip a message");
        self.extent.skip(len);
    }

    fn clear(&mut self) {
        self.extent.clear();
        self.cache.clear();
        self.cache_bytes = 0;
        for segment in std::mem::take(&mut self.segments) {
            DiskLog::remove_file(&segment);
        }
        self.save_head();
    }

    fn allocated(&self) -> u64 {
        let index: usize = self.segments.iter().map(|s| s.offsets.capacity() * 4).sum();
        (self.cache_bytes + index) as u64
    }

    fn growth(&self, len: usize) -> u64 {
        let cached = if len <= CACHE_BYTES { len } else { 0 };
        let record = RECORD_HEADER + len as u64;
        let index = match self.segments.back().filter(|s| s.len + record <= self.place.segment_bytes) {
            Some(s) if s.offsets.len() < s.offsets.capacity() => 0,
            Some(s) => index_step(&s.offsets),
            None => index_step(&[]),
        };
        (cached + index * 4) as u64
    }

    fn sync(&self, done: SyncCallback) {
        let journaled = match self.policy {
            SyncPolicy::Always if !self.direct.get() || self.unsynced.get() < self.extent.next => {
                self.journal()
            }
            _ => None,
        };
        self.unsynced.set(self.extent.next);
        self.direct.set(journaled.is_none());
        let wait = match journaled {
            // The segment files wait for the journal's lap to end; a new segment's
            // directory was synced when it was made.
            Some(to) => Wait {
                files: self.dirty_files().into_iter().filter(|f| Arc::ptr_eq(f, &self.dir)).collect(),
                journal: Some((self.place.journal.clone(), to)),
            },
            None => Wait { files: self.dirty_files(), journal: None },
        };
        self.place.syncer.sync(wait, done);
    }

    fn close(&mut self, done: SyncCallback) {
        let mut files = self.dirty_files();
        files.extend(self.save_head());
        self.place.syncer.sync(Wait { files, journal: None }, done);
    }

    fn set_policy(&mut self, policy: SyncPolicy) {
        self.policy = policy;
    }
}

impl Drop for DiskLog {
    fn drop(&mut self) {
        if !self.place.dir.exists() {
            return; // removed with its channel
        }
        let mut files = self.dirty_files();
        files.extend(self.save_head());
        self.place.syncer.sync(Wait { files, journal: None }, Box::new(|_| {}));
    }
}
