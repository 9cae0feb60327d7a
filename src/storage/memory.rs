//! The memory store: every log is a [`MemoryLog`], a segmented message log in the daemon's
//! memory; nothing survives the daemon. Its catalogue ([`MemoryCatalogue`]) saves nothing.
//!
//! Messages are appended back to back into segments (one contiguous buffer each) with a
//! 4-byte end offset per message and, in a stamped log (one that may move to a disk store),
//! its stamp, so a retained message costs its payload plus 4 bytes (32 stamped) and no heap
//! allocation of its own. A message of
//! [`SEGMENT_BYTES`] or more gets a segment of its own, a shared buffer that readers are
//! handed slices of without a copy (an assembled message becomes one as it is). Messages are
//! numbered by a sequence number that never repeats within a log. History is dropped from the
//! front one message at a time, but memory is returned a whole segment at once, when its last
//! message goes.

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

/// A segment is sealed once it holds this many messages, which bounds its index's growth.
const SEGMENT_MESSAGES: usize = 4096;

/// The largest message the index can hold: its end offset is 4 bytes (4 GiB - 1).
pub const MAX_MESSAGE: u64 = u32::MAX as u64;

/// A stamp as a stamped log keeps it: nanoseconds since the epoch and the group sequence
/// number (two words each), pid, uid, gid.
type Packed = [u32; 7];

/// What a retained message costs besides its payload: its end offset, and in a stamped log
/// its stamp.
const END_BYTES: usize = 4;
pub const STAMP_BYTES: usize = std::mem::size_of::<Packed>();

fn pack(stamp: &Stamp) -> Packed {
    let time = stamp.time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let time = u64::try_from(time.as_nanos()).unwrap_or(u64::MAX);
    let seq = stamp.group_seq;
    [time as u32, (time >> 32) as u32, seq as u32, (seq >> 32) as u32, stamp.pid, stamp.uid, stamp.gid]
}

fn unpack(packed: &Packed) -> Stamp {
    let word = |low: u32, high: u32| u64::from(low) | (u64::from(high) << 32);
    Stamp {
        time: SystemTime::UNIX_EPOCH + Duration::from_nanos(word(packed[0], packed[1])),
        group_seq: word(packed[2], packed[3]),
        pid: packed[4],
        uid: packed[5],
        gid: packed[6],
    }
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
    /// `stamps[i]` is its stamp, in a stamped log (else empty; grown as `ends` is).
    stamps: Vec<Packed>,
}

impl Segment {
    fn range(&self, index: usize) -> std::ops::Range<usize> {
        let start = if index == 0 { 0 } else { self.ends[index - 1] as usize };
        start..self.ends[index] as usize
    }

    fn next_seq(&self) -> u64 {
        self.base + self.ends.len() as u64
    }

    fn has_room_for(&self, len: usize) -> bool {
        match &self.data {
            Data::Small(data) => {
                len < SEGMENT_BYTES && data.len() + len <= SEGMENT_BYTES && self.ends.len() < SEGMENT_MESSAGES
            }
            Data::Large(_) => false,
        }
    }

    /// Heap bytes the segment holds.
    fn allocated(&self) -> u64 {
        (self.data.capacity() + self.ends.capacity() * END_BYTES + self.stamps.capacity() * STAMP_BYTES)
            as u64
    }

    /// Indexes a message ending at `end`, its index grown to `capacity` entries.
    fn index(&mut self, end: u32, stamp: Option<&Stamp>, capacity: usize) {
        self.ends.reserve_exact(capacity - self.ends.len());
        self.ends.push(end);
        if let Some(stamp) = stamp {
            self.stamps.reserve_exact(capacity - self.stamps.len());
            self.stamps.push(pack(stamp));
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
pub struct MemoryLog {
    /// Whether messages keep their stamps (a log that may move to a disk store).
    stamped: bool,
    segments: VecDeque<Segment>,
    extent: Extent,
    /// Bytes of segment memory allocated (capacity), for the memory ceiling.
    allocated: u64,
}

impl Default for MemoryLog {
    /// A log that keeps its messages' stamps.
    fn default() -> Self {
        MemoryLog { stamped: true, ..MemoryLog::unstamped() }
    }
}

impl MemoryLog {
    /// A log that keeps no stamps, as on a memory mount, where nothing can read them: its
    /// messages cost their payload and an end offset (`stamp` answers None).
    pub fn unstamped() -> Self {
        MemoryLog { stamped: false, segments: VecDeque::new(), extent: Extent::default(), allocated: 0 }
    }

    /// The most appending a message of `len` bytes can allocate to any memory log, whatever
    /// it holds then: a large message gets a segment of its own size and one entry; a small
    /// one at worst doubles the last segment's buffer (to at most the segment size) and its
    /// index (to at most `SEGMENT_MESSAGES` entries).
    pub fn most_growth(len: usize) -> u64 {
        let entry = END_BYTES + STAMP_BYTES;
        if len >= SEGMENT_BYTES {
            (len + entry) as u64
        } else {
            (SEGMENT_BYTES + SEGMENT_MESSAGES / 2 * entry) as u64
        }
    }

    /// What one message's index entry costs in this log.
    fn entry_bytes(&self) -> usize {
        END_BYTES + if self.stamped { STAMP_BYTES } else { 0 }
    }

    /// A new segment for a message of `len` bytes, charged.
    fn open_segment(&mut self, data: Data) -> &mut Segment {
        let segment = Segment {
            base: self.extent.next,
            start: self.extent.appended,
            data,
            ends: Vec::new(),
            stamps: Vec::new(),
        };
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
        if len >= SEGMENT_BYTES {
            // A segment of its own: the assembled buffer as it is, or an exact copy.
            let mut data = match message {
                Message::Owned(data) => data,
                Message::Borrowed(bytes) => bytes.to_vec(),
            };
            data.shrink_to_fit();
            let stamp = self.stamped.then_some(stamp);
            let segment = self.open_segment(Data::Large(Arc::new(data)));
            segment.index(end, stamp, 1);
            self.allocated += self.entry_bytes() as u64;
        } else {
            if !self.segments.back().is_some_and(|s| s.has_room_for(len)) {
                self.open_segment(Data::Small(Vec::new()));
            }
            let stamp = self.stamped.then_some(stamp);
            let segment = self.segments.back_mut().expect("a segment was just ensured");
            let before = segment.allocated();
            let Data::Small(data) = &mut segment.data else { unreachable!("has room: small") };
            // Grow by our own rule, never past the segment size, so that `growth` can tell
            // beforehand what an append will allocate.
            data.reserve_exact(grown(data.capacity(), data.len() + len, SEGMENT_BYTES) - data.len());
            data.extend_from_slice(message.as_slice());
            let end = u32::try_from(data.len()).expect("a segment is smaller than MAX_MESSAGE");
            let capacity = grown(segment.ends.capacity(), segment.ends.len() + 1, SEGMENT_MESSAGES);
            segment.index(end, stamp, capacity);
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
        let Some((segment, index)) = self.locate(seq) else { return Ok(None) };
        let range = segment.range(index);
        Ok(Some(match &segment.data {
            Data::Large(data) => Bytes::shared(data, range),
            Data::Small(data) => Bytes::from(data[range].to_vec()),
        }))
    }

    fn stamp(&self, seq: u64) -> Result<Option<Stamp>, Errno> {
        Ok(self.locate(seq).and_then(|(segment, index)| segment.stamps.get(index)).map(unpack))
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

    fn growth(&self, len: usize) -> u64 {
        let (data, entries) = match self.segments.back().filter(|s| s.has_room_for(len)) {
            Some(Segment { data: Data::Small(data), ends, .. }) => (
                grown(data.capacity(), data.len() + len, SEGMENT_BYTES) - data.capacity(),
                grown(ends.capacity(), ends.len() + 1, SEGMENT_MESSAGES) - ends.capacity(),
            ),
            _ => (len, 1),
        };
        (data + entries * self.entry_bytes()) as u64
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
        Ok(Box::new(MemoryLog::unstamped()))
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
        let mut log = MemoryLog::unstamped();
        for _ in 0..10_000 {
            append(&mut log, &[7u8; 100]).unwrap();
        }
        // 1 MB of payload in 64 KiB segments: about 16 segments, not 10,000 allocations.
        assert!(log.segments.len() <= 17, "{} segments", log.segments.len());
        let overhead = log.allocated() as f64 / log.bytes() as f64;
        assert!(overhead < 1.3, "allocated/payload = {overhead}");
        // A stamped log pays a stamp per message besides.
        let mut stamped = MemoryLog::default();
        for _ in 0..10_000 {
            append(&mut stamped, &[7u8; 100]).unwrap();
        }
        let extra = stamped.allocated() - log.allocated();
        assert!(extra >= 10_000 * STAMP_BYTES as u64 && extra < 10_000 * 2 * STAMP_BYTES as u64, "{extra}");
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
        }
        assert_eq!(log.stamp(3), Ok(None));
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
    fn growth_tells_what_an_append_allocates() {
        for mut log in [MemoryLog::default(), MemoryLog::unstamped()] {
            for len in [1, 5, 700, 40_000, 30_000, SEGMENT_BYTES, 3, 0, 0, 100] {
                let (predicted, before) = (log.growth(len), log.allocated());
                append(&mut log, &vec![1; len]).unwrap();
                assert_eq!(log.allocated() - before, predicted, "a message of {len} bytes");
            }
        }
    }

    #[test]
    fn an_unstamped_log_keeps_no_stamps() {
        let mut log = MemoryLog::unstamped();
        append(&mut log, b"m").unwrap();
        assert_eq!(log.stamp(0), Ok(None));
        assert_eq!(get(&log, 0), Some(b"m".to_vec()));
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
