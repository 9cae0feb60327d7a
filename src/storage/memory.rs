//! The memory store: every log is a [`MemoryLog`], a segmented message log in the daemon's
//! memory; nothing survives the daemon. Its catalogue ([`MemoryCatalogue`]) saves nothing.
//!
//! Messages are appended back to back into segments (one contiguous buffer each) with a
//! 4-byte end offset and a 12-byte stamp per message (its group number and time as offsets
//! from the segment's first message's, and which of the segment's writers wrote it), so a
//! retained message costs its payload plus 16 bytes and no heap allocation of its own. A
//! message of [`SEGMENT_BYTES`] or more gets a segment of its own, a shared buffer that
//! readers are handed slices of without a copy (an assembled message becomes one as it is).
//! Messages are numbered by a sequence number that never repeats within a log. History is
//! dropped from the front one message at a time, but memory is returned a whole segment at
//! once, when its last message goes. A segment's index grows by doubling while it fills and
//! gives back what it does not use when it is sealed.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::catalogue::NodeRecord;
use super::{
    Bytes, Catalogue, Errno, Extent, Log, LogId, Message, Placement, Stamp, Store, SyncCallback, SyncPolicy,
};

/// A segment is sealed once it holds this many payload bytes; a larger message gets a
/// segment of exactly its own size.
pub const SEGMENT_BYTES: usize = 64 * 1024;

/// A segment is sealed once it holds this many messages, which bounds its index's growth
/// (and its writers' table, indexed by 16 bits).
const SEGMENT_MESSAGES: usize = 4096;

/// The largest message the index can hold: its end offset is 4 bytes (4 GiB - 1).
pub const MAX_MESSAGE: u64 = u32::MAX as u64;

/// A message's stamp within its segment: its group number's offset from the segment's
/// first message's; its time's offset in nanoseconds (48 bits, 78 hours) and the index of
/// its writer in the segment's table (16 bits). A stamp that does not fit (the clock went
/// back, the stream moved to another group, a segment older than 78 hours) opens a new
/// segment.
type Packed = [u32; 3];

/// A writer as a segment's table holds it: pid, uid, gid.
type Writer = [u32; 3];

/// What a retained message costs besides its payload: its end offset and its stamp; and
/// a writer in a segment's table.
const END_BYTES: usize = 4;
const STAMP_BYTES: usize = std::mem::size_of::<Packed>();
const WRITER_BYTES: usize = std::mem::size_of::<Writer>();
const ENTRY_BYTES: usize = END_BYTES + STAMP_BYTES;

/// The time offsets a packed stamp holds: 48 bits of nanoseconds.
const TIME_BITS: u32 = 48;

fn nanos(time: SystemTime) -> u64 {
    let time = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(time.as_nanos()).unwrap_or(u64::MAX)
}

/// A segment's payload: small messages back to back, or one large message, shared.
enum Data {
    Small(Vec<u8>),
    Large(Arc<Vec<u8>>),
}

impl Data {
    fn bytes(&self) -> &[u8] {
        match self {
            Data::Small(data) => data,
            Data::Large(data) => data,
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Data::Small(data) => data.capacity(),
            Data::Large(data) => data.capacity(),
        }
    }
}

struct Segment {
    /// Sequence number of the segment's first message (dropped or not).
    base: u64,
    /// Position of the segment's first byte in the stream of all bytes ever appended.
    start: u64,
    data: Data,
    /// `ends[i]` is the end offset in `data` of message `base + i`.
    ends: Vec<u32>,
    /// `stamps[i]` is its stamp, packed (grown as `ends` is).
    stamps: Vec<Packed>,
    /// The group number and time (nanoseconds since the epoch) of the segment's first
    /// message, which its stamps are offsets from.
    origin: (u64, u64),
    /// The writers of its messages, each once, in the order they first wrote.
    writers: Vec<Writer>,
}

impl Segment {
    fn new(base: u64, start: u64, data: Data, stamp: &Stamp) -> Segment {
        let origin = (stamp.group_seq, nanos(stamp.time));
        Segment { base, start, data, ends: Vec::new(), stamps: Vec::new(), origin, writers: Vec::new() }
    }

    fn range(&self, index: usize) -> std::ops::Range<usize> {
        let start = if index == 0 { 0 } else { self.ends[index - 1] as usize };
        start..self.ends[index] as usize
    }

    fn next_seq(&self) -> u64 {
        self.base + self.ends.len() as u64
    }

    /// Message `index`: a slice of a large segment, a copy out of a small one.
    fn message(&self, index: usize) -> Bytes {
        let range = self.range(index);
        match &self.data {
            Data::Large(data) => Bytes::shared(data, range),
            Data::Small(data) => Bytes::from(data[range].to_vec()),
        }
    }

    fn has_room_for(&self, len: usize) -> bool {
        match &self.data {
            Data::Small(data) => {
                len < SEGMENT_BYTES && data.len() + len <= SEGMENT_BYTES && self.ends.len() < SEGMENT_MESSAGES
            }
            Data::Large(_) => false,
        }
    }

    /// `stamp` packed for this segment, if it fits (see [`Packed`]); a writer not yet in
    /// the table gets the next index.
    fn pack(&self, stamp: &Stamp) -> Option<Packed> {
        let seq = u32::try_from(stamp.group_seq.checked_sub(self.origin.0)?).ok()?;
        let time = nanos(stamp.time).checked_sub(self.origin.1).filter(|time| time >> TIME_BITS == 0)?;
        let writer = [stamp.pid, stamp.uid, stamp.gid];
        let who = self.writers.iter().rposition(|w| *w == writer).unwrap_or(self.writers.len());
        Some([seq, time as u32, (time >> 32) as u32 | (who as u32) << 16])
    }

    fn unpack(&self, packed: &Packed) -> Stamp {
        let time = u64::from(packed[1]) | (u64::from(packed[2] & 0xffff) << 32);
        let [pid, uid, gid] = self.writers[(packed[2] >> 16) as usize];
        Stamp {
            time: SystemTime::UNIX_EPOCH + Duration::from_nanos(self.origin.1 + time),
            group_seq: self.origin.0 + u64::from(packed[0]),
            pid,
            uid,
            gid,
        }
    }

    /// Heap bytes the segment holds.
    fn allocated(&self) -> u64 {
        (self.data.capacity()
            + self.ends.capacity() * END_BYTES
            + self.stamps.capacity() * STAMP_BYTES
            + self.writers.capacity() * WRITER_BYTES) as u64
    }

    /// The most bytes indexing one more message can allocate: its entry, and a writer.
    fn index_growth(&self) -> usize {
        let entries =
            grown(self.ends.capacity(), self.ends.len() + 1, SEGMENT_MESSAGES) - self.ends.capacity();
        let writers = grown(self.writers.capacity(), self.writers.len() + 1, SEGMENT_MESSAGES)
            - self.writers.capacity();
        entries * ENTRY_BYTES + writers * WRITER_BYTES
    }

    /// Indexes a message ending at `end` with its packed stamp (and its writer, if new).
    fn index(&mut self, end: u32, packed: Packed, stamp: &Stamp) {
        let capacity = grown(self.ends.capacity(), self.ends.len() + 1, SEGMENT_MESSAGES);
        self.ends.reserve_exact(capacity - self.ends.len());
        self.ends.push(end);
        self.stamps.reserve_exact(capacity - self.stamps.len());
        self.stamps.push(packed);
        if (packed[2] >> 16) as usize == self.writers.len() {
            let capacity = grown(self.writers.capacity(), self.writers.len() + 1, SEGMENT_MESSAGES);
            self.writers.reserve_exact(capacity - self.writers.len());
            self.writers.push([stamp.pid, stamp.uid, stamp.gid]);
        }
    }
}

/// The capacity a buffer of `capacity` gets to hold `needed` items: doubled, but not past
/// `cap` unless `needed` itself is larger.
fn grown(capacity: usize, needed: usize, cap: usize) -> usize {
    if needed <= capacity {
        return capacity;
    }
    (capacity * 2).max(needed).min(cap.max(needed))
}

/// One channel's history in memory.
#[derive(Default)]
pub struct MemoryLog {
    segments: VecDeque<Segment>,
    extent: Extent,
    /// Bytes of segment memory allocated (capacity), for the memory ceiling.
    allocated: u64,
}

impl MemoryLog {
    /// The most appending a message of `len` bytes can allocate to any memory log, whatever
    /// it holds then: a large message gets a segment of its own size, one entry and one
    /// writer; a small one at worst doubles the last segment's buffer (to at most the
    /// segment size), its index and its writers (to at most `SEGMENT_MESSAGES` entries).
    pub fn most_growth(len: usize) -> u64 {
        if len >= SEGMENT_BYTES {
            (len + ENTRY_BYTES + WRITER_BYTES) as u64
        } else {
            (SEGMENT_BYTES + SEGMENT_MESSAGES / 2 * (ENTRY_BYTES + WRITER_BYTES)) as u64
        }
    }

    /// A new segment whose first message is stamped `stamp`, charged. The last one is
    /// sealed: its index, grown by doubling, gives back what it will not use.
    fn open_segment(&mut self, data: Data, stamp: &Stamp) -> &mut Segment {
        if let Some(last) = self.segments.back_mut() {
            let before = last.allocated();
            last.ends.shrink_to_fit();
            last.stamps.shrink_to_fit();
            last.writers.shrink_to_fit();
            self.allocated -= before - last.allocated();
        }
        let segment = Segment::new(self.extent.next, self.extent.appended, data, stamp);
        self.allocated += segment.allocated();
        self.segments.push_back(segment);
        self.segments.back_mut().expect("a segment was just pushed")
    }

    /// Where message `seq` is, if it is retained.
    fn locate(&self, seq: u64) -> Option<(&Segment, usize)> {
        if seq < self.extent.first || seq >= self.extent.next {
            return None;
        }
        // Segments are few and ordered by base: binary search by the last base <= seq.
        let index = self.segments.partition_point(|s| s.base <= seq) - 1;
        let segment = &self.segments[index];
        Some((segment, (seq - segment.base) as usize))
    }
}

impl Log for MemoryLog {
    fn extent(&self) -> Extent {
        self.extent
    }

    fn append(&mut self, message: Message<'_>, stamp: &Stamp) -> Result<u64, Errno> {
        let len = message.len();
        if len as u64 > MAX_MESSAGE {
            return Err(Errno::EFBIG);
        }
        let end = u32::try_from(len).expect("checked against MAX_MESSAGE");
        // The first message of a segment is its stamps' origin, and its first writer.
        const FIRST: Packed = [0; 3];
        if len >= SEGMENT_BYTES {
            // A segment of its own: the assembled buffer as it is, or an exact copy.
            let mut data = match message {
                Message::Owned(data) => data,
                Message::Borrowed(bytes) => bytes.to_vec(),
            };
            data.shrink_to_fit();
            let segment = self.open_segment(Data::Large(Arc::new(data)), stamp);
            segment.index(end, FIRST, stamp);
            self.allocated += (ENTRY_BYTES + WRITER_BYTES) as u64;
        } else {
            let packed =
                match self.segments.back().filter(|s| s.has_room_for(len)).and_then(|s| s.pack(stamp)) {
                    Some(packed) => packed,
                    None => {
                        self.open_segment(Data::Small(Vec::new()), stamp);
                        FIRST
                    }
                };
            let segment = self.segments.back_mut().expect("a segment was just ensured");
            let before = segment.allocated();
            let Data::Small(data) = &mut segment.data else { unreachable!("has room: small") };
            // Grow by our own rule, never past the segment size, so that `growth` can tell
            // beforehand what an append will allocate.
            data.reserve_exact(grown(data.capacity(), data.len() + len, SEGMENT_BYTES) - data.len());
            data.extend_from_slice(message.as_slice());
            let end = u32::try_from(data.len()).expect("a segment is smaller than MAX_MESSAGE");
            segment.index(end, packed, stamp);
            self.allocated += segment.allocated() - before;
        }
        self.extent.bytes += len as u64;
        self.extent.appended += len as u64;
        let seq = self.extent.next;
        self.extent.next += 1;
        Ok(seq)
    }

    fn unappend(&mut self) {
        let Some(segment) = self.segments.back_mut() else { return };
        if segment.next_seq() != self.extent.next || self.extent.next == self.extent.first {
            return; // the last message was skipped or dropped: nothing to take back
        }
        let range = segment.range(segment.ends.len() - 1);
        segment.ends.pop();
        // A writer it added stays in the table, unused: the next message may well be its.
        segment.stamps.pop();
        if let Data::Small(data) = &mut segment.data {
            data.truncate(range.start);
        }
        if segment.ends.is_empty() {
            let segment = self.segments.pop_back().expect("the last segment exists");
            self.allocated -= segment.allocated();
        }
        self.extent.bytes -= range.len() as u64;
        self.extent.appended -= range.len() as u64;
        self.extent.next -= 1;
    }

    fn get(&self, seq: u64) -> Result<Option<Bytes>, Errno> {
        Ok(self.locate(seq).map(|(segment, index)| segment.message(index)))
    }

    fn stamp(&self, seq: u64) -> Result<Option<Stamp>, Errno> {
        Ok(self.locate(seq).map(|(segment, index)| segment.unpack(&segment.stamps[index])))
    }

    fn get_stamped(&self, seq: u64) -> Result<Option<(Bytes, Stamp)>, Errno> {
        Ok(self
            .locate(seq)
            .map(|(segment, index)| (segment.message(index), segment.unpack(&segment.stamps[index]))))
    }

    fn read_at(&self, position: u64, size: usize, out: &mut Vec<u8>) -> Result<(), Errno> {
        debug_assert!(position >= self.start(), "bytes before the oldest retained one were dropped");
        let mut position = position;
        let end = self.extent.appended.min(position.saturating_add(size as u64));
        out.reserve(end.saturating_sub(position) as usize);
        let mut index = self.segments.partition_point(|s| s.start <= position).saturating_sub(1);
        while position < end {
            let segment = &self.segments[index];
            let data = segment.data.bytes();
            let from = (position - segment.start) as usize;
            let to = ((end - segment.start) as usize).min(data.len());
            out.extend_from_slice(&data[from..to]);
            position += (to - from) as u64;
            index += 1;
        }
        Ok(())
    }

    fn pop_front(&mut self) -> Option<usize> {
        let (segment, index) = self.locate(self.extent.first)?;
        let len = segment.range(index).len();
        self.extent.first += 1;
        self.extent.bytes -= len as u64;
        if self.segments.front().is_some_and(|s| s.next_seq() <= self.extent.first) {
            let segment = self.segments.pop_front().expect("front segment exists");
            self.allocated -= segment.allocated();
        }
        Some(len)
    }

    fn skip(&mut self, len: usize) {
        debug_assert!(self.is_empty(), "only an empty log can skip a message");
        self.extent.skip(len);
    }

    fn clear(&mut self) {
        self.extent.clear();
        self.segments.clear();
        self.allocated = 0;
    }

    fn allocated(&self) -> u64 {
        self.allocated
    }

    /// At most what the append allocates: in the last segment, or in a new one if the
    /// message's stamp does not fit the last (which is known only once it is stamped).
    fn growth(&self, len: usize) -> u64 {
        let new_segment = len + ENTRY_BYTES + WRITER_BYTES;
        let in_last = match self.segments.back().filter(|s| s.has_room_for(len)) {
            Some(segment @ Segment { data: Data::Small(data), .. }) => {
                grown(data.capacity(), data.len() + len, SEGMENT_BYTES) - data.capacity()
                    + segment.index_growth()
            }
            _ => 0,
        };
        in_last.max(new_segment) as u64
    }

    fn sync(&self, done: SyncCallback) {
        done(Ok(()));
    }

    fn set_policy(&mut self, _policy: SyncPolicy) {}
}

/// The store of a memory mount: every log is a new [`MemoryLog`], whatever its placement.
pub struct MemoryStore;

impl Store for MemoryStore {
    fn log(&self, _id: LogId, _placement: Placement, _policy: SyncPolicy) -> Result<Box<dyn Log>, Errno> {
        Ok(Box::new(MemoryLog::default()))
    }

    fn remove_log(&self, _id: LogId) {}
}

/// The catalogue of a memory mount: nothing to load, nothing kept.
pub struct MemoryCatalogue;

impl Catalogue for MemoryCatalogue {
    fn load(&self) -> Result<Vec<NodeRecord>, Errno> {
        Ok(Vec::new())
    }

    fn save(&self, _changed: &[NodeRecord], _removed: &[u64], _durable: bool) -> Result<(), Errno> {
        Ok(())
    }
}

/// Bytes that cost no memory, only address space: an untouched anonymous mapping, for tests
/// of messages of 4 GiB and more.
#[cfg(test)]
pub struct Untouched {
    ptr: *mut libc::c_void,
    len: usize,
}

#[cfg(test)]
impl Untouched {
    pub fn new(len: usize) -> Untouched {
        // SAFETY: a fresh private anonymous mapping, only ever read through `bytes`.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap of {len} bytes");
        Untouched { ptr, len }
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes (zero pages) until dropped.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

#[cfg(test)]
impl Drop for Untouched {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped; no slice of it outlives `self`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(log: &mut MemoryLog, message: &[u8]) -> Result<u64, Errno> {
        log.append(Message::Borrowed(message), &Stamp::default())
    }

    fn get(log: &MemoryLog, seq: u64) -> Option<Vec<u8>> {
        log.get(seq).expect("a memory log reads back").map(|bytes| bytes.to_vec())
    }

    #[test]
    fn no_append_grows_past_its_bound() {
        let mut log = MemoryLog::default();
        for len in [1, 1, 3, 700, 1, 40_000, 1, SEGMENT_BYTES, 1, 2 * SEGMENT_BYTES, 5]
            .into_iter()
            .chain(std::iter::repeat_n(1, 70_000))
        {
            let before = log.allocated();
            append(&mut log, &vec![7u8; len]).expect("a small message fits the index");
            assert!(log.allocated() - before <= MemoryLog::most_growth(len), "a message of {len} bytes");
        }
    }

    #[test]
    fn append_and_get_round_trip_binary_messages() {
        let mut log = MemoryLog::default();
        let messages: Vec<Vec<u8>> =
            (0..1000u32).map(|i| (0..(i % 300)).map(|b| (b ^ i) as u8).collect()).collect();
        for (i, m) in messages.iter().enumerate() {
            assert_eq!(append(&mut log, m), Ok(i as u64));
        }
        for (i, m) in messages.iter().enumerate() {
            assert_eq!(get(&log, i as u64), Some(m.clone()));
        }
        assert_eq!(get(&log, 1000), None);
        assert_eq!(log.len(), 1000);
        assert_eq!(log.bytes(), messages.iter().map(|m| m.len() as u64).sum::<u64>());
    }

    #[test]
    fn small_messages_share_segments() {
        let mut log = MemoryLog::default();
        for _ in 0..10_000 {
            append(&mut log, &[7u8; 100]).unwrap();
        }
        // 1 MB of payload in 64 KiB segments: about 16 segments, not 10,000 allocations.
        assert!(log.segments.len() <= 17, "{} segments", log.segments.len());
        // Each message costs its payload and 16 bytes of index and stamp, and a segment's
        // buffers grow by doubling.
        let overhead = log.allocated() as f64 / (log.bytes() + 10_000 * ENTRY_BYTES as u64) as f64;
        assert!(overhead < 1.15, "allocated/(payload + index) = {overhead}");
    }

    #[test]
    fn large_message_gets_its_own_exact_segment() {
        let mut log = MemoryLog::default();
        append(&mut log, b"small").unwrap();
        let big = vec![1u8; 3 * SEGMENT_BYTES + 5];
        let seq = append(&mut log, &big).unwrap();
        append(&mut log, b"after").unwrap();
        assert_eq!(get(&log, seq).unwrap(), big.as_slice());
        assert_eq!(get(&log, seq + 1).unwrap(), b"after");
        assert_eq!(log.segments.len(), 3);
        assert!(log.allocated() >= log.bytes(), "the big segment is charged");
        while log.pop_front().is_some() {}
        assert_eq!(log.allocated(), 0);
    }

    #[test]
    fn pop_front_frees_whole_segments_only() {
        let mut log = MemoryLog::default();
        let chunk = vec![0u8; SEGMENT_BYTES / 4];
        for _ in 0..8 {
            append(&mut log, &chunk).unwrap();
        }
        assert_eq!(log.segments.len(), 2);
        for _ in 0..3 {
            log.pop_front();
        }
        assert_eq!(log.segments.len(), 2, "a partly read segment stays");
        log.pop_front();
        assert_eq!(log.segments.len(), 1, "the emptied segment is freed");
        assert_eq!(log.first_seq(), 4);
        assert_eq!(get(&log, 3), None);
        assert_eq!(get(&log, 4).unwrap().len(), chunk.len());
    }

    #[test]
    fn zero_length_messages_are_messages() {
        let mut log = MemoryLog::default();
        append(&mut log, b"").unwrap();
        append(&mut log, b"").unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(get(&log, 1), Some(Vec::new()));
        assert_eq!(log.pop_front(), Some(0));
        assert_eq!(log.pop_front(), Some(0));
        assert_eq!(log.pop_front(), None);
        assert!(log.is_empty());
        assert_eq!(log.allocated(), 0);
    }

    fn read(log: &MemoryLog, position: u64, size: usize) -> Vec<u8> {
        let mut out = b"kept".to_vec();
        log.read_at(position, size, &mut out).expect("a memory log reads back");
        assert_eq!(&out[..4], b"kept", "read_at appends");
        out.split_off(4)
    }

    #[test]
    fn read_at_reads_by_positions_that_dropping_history_does_not_move() {
        let mut log = MemoryLog::default();
        let mut all = Vec::new();
        for i in 0..3000u32 {
            let message = format!("line {i}\n").repeat(1 + (i % 7) as usize).into_bytes();
            append(&mut log, &message).unwrap();
            all.extend_from_slice(&message);
        }
        append(&mut log, &vec![b'x'; SEGMENT_BYTES + 10]).unwrap();
        all.extend(std::iter::repeat_n(b'x', SEGMENT_BYTES + 10));
        let mut dropped = 0;
        for _ in 0..1000 {
            dropped += log.pop_front().unwrap();
        }
        assert_eq!((log.start(), log.end()), (dropped as u64, all.len() as u64));
        assert_eq!(log.bytes(), (all.len() - dropped) as u64);
        for (offset, size) in [
            (dropped, 10),
            (dropped + 5, 70_000),
            (100_000, 200_000),
            (all.len() - 3, 10),
            (dropped, all.len()),
        ] {
            let want = &all[offset..(offset + size).min(all.len())];
            assert_eq!(read(&log, offset as u64, size), want, "at {offset}+{size}");
        }
        assert!(read(&log, all.len() as u64, 10).is_empty());
        assert!(read(&log, all.len() as u64 + 5, 10).is_empty());
        // Emptied, the log still counts every byte: its start is its end.
        log.clear();
        assert_eq!((log.start(), log.end()), (all.len() as u64, all.len() as u64));
        log.skip(7);
        assert_eq!((log.start(), log.end()), (all.len() as u64 + 7, all.len() as u64 + 7));
        append(&mut log, b"next").unwrap();
        assert_eq!(read(&log, all.len() as u64 + 7, 10), b"next");
    }

    #[test]
    fn a_message_the_index_cannot_hold_is_refused_and_changes_nothing() {
        let mut log = MemoryLog::default();
        append(&mut log, b"before").unwrap();
        let huge = Untouched::new(MAX_MESSAGE as usize + 1);
        assert_eq!(append(&mut log, huge.bytes()), Err(Errno::EFBIG));
        assert_eq!((log.len(), log.bytes(), log.next_seq()), (1, 6, 1), "nothing was appended");
        assert_eq!(append(&mut log, b"after"), Ok(1));
        assert_eq!(get(&log, 1), Some(b"after".to_vec()));
    }

    #[test]
    fn a_large_message_is_shared_not_copied() {
        let mut log = MemoryLog::default();
        let assembled = vec![3u8; SEGMENT_BYTES];
        let at = assembled.as_ptr();
        let seq = log.append(Message::Owned(assembled), &Stamp::default()).unwrap();
        let first = log.get(seq).unwrap().unwrap();
        let second = log.get(seq).unwrap().unwrap();
        assert_eq!(first.as_ptr(), at, "the assembled buffer is the segment");
        assert_eq!(second.as_ptr(), at, "every reader gets the same bytes");
        append(&mut log, b"small").unwrap();
        assert_eq!(log.get(seq + 1).unwrap().unwrap(), b"small"[..]);
    }

    #[test]
    fn stamps_round_trip() {
        let mut log = MemoryLog::default();
        let time = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let stamps: Vec<Stamp> = (0..3)
            .map(|i| Stamp { time, group_seq: 10 + i, pid: 7, uid: 1000, gid: 100 + i as u32 })
            .collect();
        for (stamp, message) in stamps.iter().zip([&b"a"[..], &[0; SEGMENT_BYTES], b"c"]) {
            log.append(Message::Borrowed(message), stamp).unwrap();
        }
        for (seq, stamp) in stamps.iter().enumerate() {
            assert_eq!(log.stamp(seq as u64), Ok(Some(*stamp)));
            let (bytes, with) = log.get_stamped(seq as u64).unwrap().expect("retained");
            assert_eq!((bytes.to_vec(), with), (get(&log, seq as u64).unwrap(), *stamp));
        }
        assert_eq!(log.stamp(3), Ok(None));
        assert!(log.get_stamped(3).unwrap().is_none());
    }

    #[test]
    fn unappend_takes_back_exactly_the_last_message() {
        let mut log = MemoryLog::default();
        append(&mut log, b"kept").unwrap();
        let before = (log.next_seq(), log.bytes(), log.end(), log.allocated());
        for message in [&b"small"[..], &[1; SEGMENT_BYTES + 1]] {
            append(&mut log, message).unwrap();
            log.unappend();
            assert_eq!((log.next_seq(), log.bytes(), log.end()), (before.0, before.1, before.2));
            assert_eq!(get(&log, 1), None);
        }
        assert!(
            log.allocated() <= before.3 + MemoryLog::most_growth(5),
            "a small unappend may keep capacity"
        );
        assert_eq!(append(&mut log, b"next"), Ok(1));
        assert_eq!(get(&log, 1), Some(b"next".to_vec()));
        assert_eq!(get(&log, 0), Some(b"kept".to_vec()));
    }

    #[test]
    fn growth_tells_the_most_an_append_allocates() {
        let mut log = MemoryLog::default();
        let late = SystemTime::now();
        for (i, len) in [1, 5, 700, 40_000, 30_000, SEGMENT_BYTES, 3, 0, 0, 100, 7, 9].into_iter().enumerate()
        {
            // A new writer, and a time the last segment's stamps cannot reach, now and then.
            let time = if i % 4 == 3 { late } else { SystemTime::UNIX_EPOCH };
            let stamp = Stamp { time, pid: i as u32 % 3, ..Stamp::default() };
            let (predicted, before) = (log.growth(len), log.allocated());
            log.append(Message::Borrowed(&vec![1; len]), &stamp).unwrap();
            let took = log.allocated() - before;
            assert!(took <= predicted, "a message of {len} bytes took {took}, not at most {predicted}");
            assert!(predicted <= took.max((len + ENTRY_BYTES + WRITER_BYTES) as u64), "{len}: {predicted}");
        }
    }

    #[test]
    fn every_message_keeps_its_stamp_whoever_wrote_it_and_whenever() {
        let mut log = MemoryLog::default();
        let now = SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789);
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let mut stamps = Vec::new();
        for i in 0..10_000u64 {
            let time = match i % 5 {
                0 => now + Duration::from_nanos(i),
                1 => now - Duration::from_nanos(i), // the clock went back
                2 => now + hours(100),              // past what an offset holds
                _ => now + Duration::from_micros(i),
            };
            let group_seq = match i % 7 {
                3 => i + (1 << 33), // farther than an offset reaches
                4 => 5,             // moved to another group
                _ => i,
            };
            let (pid, uid, gid) = ((i % 13) as u32 + 100, (i % 2) as u32 + 1000, (i % 3) as u32);
            stamps.push(Stamp { time, group_seq, pid, uid, gid });
        }
        for (i, stamp) in stamps.iter().enumerate() {
            let len = if i % 1000 == 999 { SEGMENT_BYTES + 1 } else { i % 50 };
            log.append(Message::Borrowed(&vec![1; len]), stamp).unwrap();
        }
        for _ in 0..3000 {
            log.pop_front();
        }
        for (seq, stamp) in stamps.iter().enumerate() {
            let want = if seq < 3000 { None } else { Some(*stamp) };
            assert_eq!(log.stamp(seq as u64), Ok(want), "message {seq}");
        }
    }

    #[test]
    fn a_stamp_costs_twelve_bytes_whatever_its_writers() {
        for writers in [1u32, 20] {
            let mut log = MemoryLog::default();
            let now = SystemTime::now();
            for i in 0..SEGMENT_MESSAGES as u32 {
                let stamp =
                    Stamp { time: now, group_seq: u64::from(i) * 3, pid: i % writers, uid: 1, gid: 2 };
                log.append(Message::Borrowed(&[0; 8]), &stamp).unwrap();
            }
            assert_eq!(log.segments.len(), 1, "{writers} writers");
            let segment = &log.segments[0];
            let index = segment.ends.capacity() * END_BYTES + segment.stamps.capacity() * STAMP_BYTES;
            assert_eq!(index, SEGMENT_MESSAGES * 16);
            assert_eq!(segment.writers.len(), writers as usize);
        }
    }

    #[test]
    fn clear_keeps_numbering() {
        let mut log = MemoryLog::default();
        append(&mut log, b"a").unwrap();
        append(&mut log, b"b").unwrap();
        log.clear();
        assert!(log.is_empty());
        assert_eq!(append(&mut log, b"c"), Ok(2));
        assert_eq!(log.first_seq(), 2);
    }
}
