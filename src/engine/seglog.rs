//! The segmented message log: a stream's retained history.
//!
//! Messages are appended back to back into segments (one contiguous buffer each) with a
//! 4-byte end offset per message, so a retained message costs its payload plus 4 bytes and
//! no heap allocation of its own. Messages are numbered by a sequence number that never
//! repeats within a log. History is dropped from the front one message at a time, but memory
//! is returned a whole segment at once, when its last message goes. Persistence will store
//! segments as its unit, so everything outside this file sees only `append`, `get`,
//! `pop_front` and the counters.

use std::collections::VecDeque;

/// A segment is sealed once it holds this many payload bytes; a larger message gets a
/// segment of exactly its own size.
const SEGMENT_BYTES: usize = 64 * 1024;

/// The largest message the index can hold: its end offset is 4 bytes (4 GiB - 1).
pub const MAX_MESSAGE: u64 = u32::MAX as u64;

/// A message larger than `MAX_MESSAGE`: refused, nothing appended.
#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge;

struct Segment {
    /// Sequence number of the segment's first message (dropped or not).
    base: u64,
    /// Position of `data[0]` in the stream of all bytes ever appended to the log.
    start: u64,
    data: Vec<u8>,
    /// `ends[i]` is the end offset in `data` of message `base + i`.
    ends: Vec<u32>,
}

impl Segment {
    fn message(&self, index: usize) -> &[u8] {
        let start = if index == 0 { 0 } else { self.ends[index - 1] as usize };
        &self.data[start..self.ends[index] as usize]
    }

    fn next_seq(&self) -> u64 {
        self.base + self.ends.len() as u64
    }

    fn has_room_for(&self, len: usize) -> bool {
        self.data.len() + len <= SEGMENT_BYTES
    }
}

/// The capacity a buffer of `capacity` gets to hold `needed` items: doubled, but not past
/// the segment size unless `needed` itself is larger.
fn grown(capacity: usize, needed: usize) -> usize {
    if needed <= capacity {
        return capacity;
    }
    (capacity * 2).max(needed).min(SEGMENT_BYTES.max(needed))
}

/// An append-only sequence of messages, trimmed from the front.
#[derive(Default)]
pub struct SegLog {
    segments: VecDeque<Segment>,
    /// Sequence number of the oldest retained message.
    first: u64,
    /// Sequence number the next appended message will get.
    next: u64,
    /// Retained payload bytes.
    bytes: u64,
    /// Bytes of segment memory allocated (capacity), for the memory ceiling.
    allocated: u64,
    /// Payload bytes ever appended: the position where the next message starts.
    appended: u64,
}

impl SegLog {
    /// Appends one message and returns its sequence number; one larger than `MAX_MESSAGE`
    /// is refused and changes nothing.
    pub fn append(&mut self, message: &[u8]) -> Result<u64, TooLarge> {
        if message.len() as u64 > MAX_MESSAGE {
            return Err(TooLarge);
        }
        let fits = self.segments.back().is_some_and(|s| s.has_room_for(message.len()));
        if !fits {
            let capacity = if message.len() >= SEGMENT_BYTES { message.len() } else { 0 };
            let data = Vec::with_capacity(capacity);
            // Charged here: `before` below is taken after this allocation.
            self.allocated += data.capacity() as u64;
            self.segments.push_back(Segment {
                base: self.next,
                start: self.appended,
                data,
                ends: Vec::new(),
            });
        }
        let segment = self.segments.back_mut().expect("a segment was just ensured");
        let before = (segment.data.capacity() + segment.ends.capacity() * 4) as u64;
        // Grow by our own rule, never past the segment size, so that `growth` can tell
        // beforehand what an append will allocate.
        let data_capacity = grown(segment.data.capacity(), segment.data.len() + message.len());
        segment.data.reserve_exact(data_capacity - segment.data.len());
        let ends_capacity = grown(segment.ends.capacity(), segment.ends.len() + 1);
        segment.ends.reserve_exact(ends_capacity - segment.ends.len());
        segment.data.extend_from_slice(message);
        // A segment holds either messages of up to SEGMENT_BYTES together or one larger one.
        segment.ends.push(u32::try_from(segment.data.len()).expect("checked against MAX_MESSAGE"));
        let after = (segment.data.capacity() + segment.ends.capacity() * 4) as u64;
        self.allocated += after - before;
        self.bytes += message.len() as u64;
        self.appended += message.len() as u64;
        let seq = self.next;
        self.next += 1;
        Ok(seq)
    }

    /// The bytes of memory appending a message of `len` bytes would allocate.
    pub fn growth(&self, len: usize) -> u64 {
        let (data, ends) = match self.segments.back().filter(|s| s.has_room_for(len)) {
            Some(s) => (
                grown(s.data.capacity(), s.data.len() + len) - s.data.capacity(),
                grown(s.ends.capacity(), s.ends.len() + 1) - s.ends.capacity(),
            ),
            None => (len, 1),
        };
        (data + ends * 4) as u64
    }

    /// The most appending a message of `len` bytes can allocate, whatever the log holds
    /// then: a large message gets a segment of its own size and one end offset; a small one
    /// at worst doubles the last segment's buffer (to at most the segment size) and its
    /// offsets (to at most one per byte of the segment).
    pub fn most_growth(len: usize) -> u64 {
        if len >= SEGMENT_BYTES { len as u64 + 4 } else { (SEGMENT_BYTES + SEGMENT_BYTES / 2 * 4) as u64 }
    }

    /// The message with sequence number `seq`, if it is retained.
    pub fn get(&self, seq: u64) -> Option<&[u8]> {
        if seq < self.first || seq >= self.next {
            return None;
        }
        // Segments are few and ordered by base: binary search by the last base <= seq.
        let index = self.segments.partition_point(|s| s.base <= seq) - 1;
        let segment = &self.segments[index];
        Some(segment.message((seq - segment.base) as usize))
    }

    /// Appends to `out` up to `size` bytes of the history read as one file, from `position`
    /// counted from the first byte ever appended (so a position names the same byte for
    /// good, whatever is dropped later). Nothing at or past the end; `position` must not be
    /// before `start`.
    pub fn read_at(&self, position: u64, size: usize, out: &mut Vec<u8>) {
        debug_assert!(position >= self.start(), "bytes before the oldest retained one were dropped");
        let mut position = position;
        let end = self.appended.min(position.saturating_add(size as u64));
        out.reserve(end.saturating_sub(position) as usize);
        let mut index = self.segments.partition_point(|s| s.start <= position).saturating_sub(1);
        while position < end {
            let segment = &self.segments[index];
            let from = (position - segment.start) as usize;
            let to = ((end - segment.start) as usize).min(segment.data.len());
            out.extend_from_slice(&segment.data[from..to]);
            position += (to - from) as u64;
            index += 1;
        }
    }

    /// Position of the oldest retained byte: every byte before it was dropped.
    pub fn start(&self) -> u64 {
        self.appended - self.bytes
    }

    /// Payload bytes ever appended: the position where the next message starts.
    pub fn end(&self) -> u64 {
        self.appended
    }

    /// Drops the oldest retained message; returns its length, or None if the log is empty.
    pub fn pop_front(&mut self) -> Option<usize> {
        let len = self.get(self.first)?.len();
        self.first += 1;
        self.bytes -= len as u64;
        if self.segments.front().is_some_and(|s| s.next_seq() <= self.first) {
            let segment = self.segments.pop_front().expect("front segment exists");
            self.allocated -= (segment.data.capacity() + segment.ends.capacity() * 4) as u64;
        }
        Some(len)
    }

    /// Counts a message that nobody will read as appended and dropped, storing nothing.
    pub fn skip(&mut self, len: usize) {
        debug_assert!(self.is_empty(), "only an empty log can skip a message");
        self.appended += len as u64;
        self.next += 1;
        self.first = self.next;
    }

    /// Drops every retained message.
    pub fn clear(&mut self) {
        self.first = self.next;
        self.bytes = 0;
        self.segments.clear();
        self.allocated = 0;
    }

    /// Sequence number of the oldest retained message (== `next_seq` when empty).
    pub fn first_seq(&self) -> u64 {
        self.first
    }

    /// Sequence number the next message will get.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// Number of retained messages.
    pub fn len(&self) -> u64 {
        self.next - self.first
    }

    pub fn is_empty(&self) -> bool {
        self.first == self.next
    }

    /// Retained payload bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Heap bytes held by the log's segments.
    pub fn allocated(&self) -> u64 {
        self.allocated
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

    #[test]
    fn no_append_grows_past_its_bound() {
        let mut log = SegLog::default();
        for len in [1, 1, 3, 700, 1, 40_000, 1, SEGMENT_BYTES, 1, 2 * SEGMENT_BYTES, 5]
            .into_iter()
            .chain(std::iter::repeat_n(1, 70_000))
        {
            let before = log.allocated();
            log.append(&vec![7u8; len]).expect("a small message fits the index");
            assert!(log.allocated() - before <= SegLog::most_growth(len), "a message of {len} bytes");
        }
    }

    #[test]
    fn append_and_get_round_trip_binary_messages() {
        let mut log = SegLog::default();
        let messages: Vec<Vec<u8>> =
            (0..1000u32).map(|i| (0..(i % 300)).map(|b| (b ^ i) as u8).collect()).collect();
        for (i, m) in messages.iter().enumerate() {
            assert_eq!(log.append(m), Ok(i as u64));
        }
        for (i, m) in messages.iter().enumerate() {
            assert_eq!(log.get(i as u64), Some(m.as_slice()));
        }
        assert_eq!(log.get(1000), None);
        assert_eq!(log.len(), 1000);
        assert_eq!(log.bytes(), messages.iter().map(|m| m.len() as u64).sum::<u64>());
    }

    #[test]
    fn small_messages_share_segments() {
        let mut log = SegLog::default();
        for _ in 0..10_000 {
            log.append(&[7u8; 100]).unwrap();
        }
        // 1 MB of payload in 64 KiB segments: about 16 segments, not 10,000 allocations.
        assert!(log.segments.len() <= 17, "{} segments", log.segments.len());
        let overhead = log.allocated() as f64 / log.bytes() as f64;
        assert!(overhead < 1.3, "allocated/payload = {overhead}");
    }

    #[test]
    fn large_message_gets_its_own_exact_segment() {
        let mut log = SegLog::default();
        log.append(b"small").unwrap();
        let big = vec![1u8; 3 * SEGMENT_BYTES + 5];
        let seq = log.append(&big).unwrap();
        log.append(b"after").unwrap();
        assert_eq!(log.get(seq).unwrap(), big.as_slice());
        assert_eq!(log.get(seq + 1).unwrap(), b"after");
        assert_eq!(log.segments.len(), 3);
        assert!(log.allocated() >= log.bytes(), "the big segment is charged");
        while log.pop_front().is_some() {}
        assert_eq!(log.allocated(), 0);
    }

    #[test]
    fn pop_front_frees_whole_segments_only() {
        let mut log = SegLog::default();
        let chunk = vec![0u8; SEGMENT_BYTES / 4];
        for _ in 0..8 {
            log.append(&chunk).unwrap();
        }
        assert_eq!(log.segments.len(), 2);
        for _ in 0..3 {
            log.pop_front();
        }
        assert_eq!(log.segments.len(), 2, "a partly read segment stays");
        log.pop_front();
        assert_eq!(log.segments.len(), 1, "the emptied segment is freed");
        assert_eq!(log.first_seq(), 4);
        assert_eq!(log.get(3), None);
        assert_eq!(log.get(4).unwrap().len(), chunk.len());
    }

    #[test]
    fn zero_length_messages_are_messages() {
        let mut log = SegLog::default();
        log.append(b"").unwrap();
        log.append(b"").unwrap();
        assert_eq!(log.len(), 2);
        assert_eq!(log.get(1), Some(&b""[..]));
        assert_eq!(log.pop_front(), Some(0));
        assert_eq!(log.pop_front(), Some(0));
        assert_eq!(log.pop_front(), None);
        assert!(log.is_empty());
        assert_eq!(log.allocated(), 0);
    }

    fn read(log: &SegLog, position: u64, size: usize) -> Vec<u8> {
        let mut out = b"kept".to_vec();
        log.read_at(position, size, &mut out);
        assert_eq!(&out[..4], b"kept", "read_at appends");
        out.split_off(4)
    }

    #[test]
    fn read_at_reads_by_positions_that_dropping_history_does_not_move() {
        let mut log = SegLog::default();
        let mut all = Vec::new();
        for i in 0..3000u32 {
            let message = format!("line {i}\n").repeat(1 + (i % 7) as usize).into_bytes();
            log.append(&message).unwrap();
            all.extend_from_slice(&message);
        }
        log.append(&vec![b'x'; SEGMENT_BYTES + 10]).unwrap();
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
        log.append(b"next").unwrap();
        assert_eq!(read(&log, all.len() as u64 + 7, 10), b"next");
    }

    #[test]
    fn a_message_the_index_cannot_hold_is_refused_and_changes_nothing() {
        let mut log = SegLog::default();
        log.append(b"before").unwrap();
        let huge = Untouched::new(MAX_MESSAGE as usize + 1);
        assert_eq!(log.append(huge.bytes()), Err(TooLarge));
        assert_eq!((log.len(), log.bytes(), log.next_seq()), (1, 6, 1), "nothing was appended");
        assert_eq!(log.append(b"after"), Ok(1));
        assert_eq!(log.get(1), Some(&b"after"[..]));
    }

    #[test]
    fn clear_keeps_numbering() {
        let mut log = SegLog::default();
        log.append(b"a").unwrap();
        log.append(b"b").unwrap();
        log.clear();
        assert!(log.is_empty());
        assert_eq!(log.append(b"c"), Ok(2));
        assert_eq!(log.first_seq(), 2);
    }
}
