//! Segment files: their names, their header, and the layout of the records in them
//! (docs/store-format.md, "Logs"), with the checksum that guards each.

use std::time::{Duration, SystemTime};

use crate::storage::Stamp;

/// The first bytes of every segment file.
pub const MAGIC: [u8; 8] = *b"MQFSLOG\0";
pub const VERSION: u32 = 1;
/// Magic, version, base sequence number, start position, checksum.
pub const FILE_HEADER: u64 = 8 + 4 + 8 + 8 + 4;
/// Checksum, length, seq, group seq, time, pid, uid, gid, flags.
pub const RECORD_HEADER: u64 = 48;

/// The file name of the segment whose first message is `base`.
pub fn file_name(base: u64) -> String {
    format!("{base:020}.log")
}

/// The base sequence number a segment file name gives, if it is one.
pub fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What a segment file's header says: its first message's sequence number and position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileHeader {
    pub base: u64,
    pub start: u64,
}

impl FileHeader {
    pub fn encode(&self) -> [u8; FILE_HEADER as usize] {
        let mut out = [0; FILE_HEADER as usize];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&VERSION.to_le_bytes());
        out[12..20].copy_from_slice(&self.base.to_le_bytes());
        out[20..28].copy_from_slice(&self.start.to_le_bytes());
        let crc = crc32c::crc32c(&out[..28]);
        out[28..32].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// The header in `bytes`, if its magic, version and checksum are right.
    pub fn decode(bytes: &[u8]) -> Option<FileHeader> {
        let bytes = bytes.get(..FILE_HEADER as usize)?;
        if bytes[0..8] != MAGIC
            || u32_at(bytes, 8) != VERSION
            || u32_at(bytes, 28) != crc32c::crc32c(&bytes[..28])
        {
            return None;
        }
        Some(FileHeader { base: u64_at(bytes, 12), start: u64_at(bytes, 20) })
    }
}

/// A record's header, its checksum aside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub len: u32,
    pub seq: u64,
    pub stamp: Stamp,
}

impl RecordHeader {
    /// The header's bytes, with the checksum over them and `payload`.
    pub fn encode(&self, payload: &[u8]) -> [u8; RECORD_HEADER as usize] {
        let mut out = [0; RECORD_HEADER as usize];
        let time = self.stamp.time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        out[4..8].copy_from_slice(&self.len.to_le_bytes());
        out[8..16].copy_from_slice(&self.seq.to_le_bytes());
        out[16..24].copy_from_slice(&self.stamp.group_seq.to_le_bytes());
        out[24..32].copy_from_slice(&(time.as_nanos() as u64).to_le_bytes());
        out[32..36].copy_from_slice(&self.stamp.pid.to_le_bytes());
        out[36..40].copy_from_slice(&self.stamp.uid.to_le_bytes());
        out[40..44].copy_from_slice(&self.stamp.gid.to_le_bytes());
        // out[44..48]: flags, none defined.
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out[4..]), payload);
        out[0..4].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// The header in `bytes` (at least `RECORD_HEADER` long) and the checksum it records,
    /// or None if its flags are not 0.
    pub fn decode(bytes: &[u8]) -> Option<(RecordHeader, u32)> {
        let frame = Frame::of(bytes)?;
        let stamp = Stamp {
            time: SystemTime::UNIX_EPOCH + Duration::from_nanos(u64_at(bytes, 24)),
            group_seq: u64_at(bytes, 16),
            pid: u32_at(bytes, 32),
            uid: u32_at(bytes, 36),
            gid: u32_at(bytes, 40),
        };
        Some((RecordHeader { len: frame.len, seq: frame.seq, stamp }, frame.crc))
    }
}

/// What recovery needs of a record header: its checksum, length and sequence number.
#[derive(Clone, Copy)]
pub struct Frame {
    pub crc: u32,
    pub len: u32,
    pub seq: u64,
}

impl Frame {
    /// The frame of the header in `bytes` (at least `RECORD_HEADER` long), or None if its
    /// flags are not 0.
    pub fn of(bytes: &[u8]) -> Option<Frame> {
        let frame = Frame { crc: u32_at(bytes, 0), len: u32_at(bytes, 4), seq: u64_at(bytes, 8) };
        (u32_at(bytes, 44) == 0).then_some(frame)
    }

    /// Header and payload bytes.
    pub fn size(&self) -> u64 {
        RECORD_HEADER + self.len as u64
    }
}

/// The checksum of `record` (header and payload, or the header alone to go on with `more`
/// over the payload in pieces).
pub fn record_crc(record: &[u8]) -> u32 {
    crc32c::crc32c(&record[4..])
}

/// `crc` carried on over `payload`.
pub fn more(crc: u32, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, payload)
}

/// A whole record read back (header and payload), if its checksum and sequence number are
/// right: its header.
pub fn check_record(record: &[u8], seq: u64) -> Option<RecordHeader> {
    let (header, crc) = RecordHeader::decode(record.get(..RECORD_HEADER as usize)?)?;
    let whole = header.seq == seq && record.len() as u64 == RECORD_HEADER + header.len as u64;
    (whole && record_crc(record) == crc).then_some(header)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_base_and_parse_back() {
        assert_eq!(file_name(42), "00000000000000000042.log");
        assert_eq!(parse_name(&file_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_name("42.log"), None);
        assert_eq!(parse_name("0000000000000000004x.log"), None);
    }

    #[test]
    fn a_flipped_bit_anywhere_in_a_record_fails_its_check() {
        let stamp = Stamp {
            time: SystemTime::UNIX_EPOCH + Duration::from_nanos(7),
            group_seq: 3,
            pid: 1,
            uid: 2,
            gid: 4,
        };
        let header = RecordHeader { len: 5, seq: 9, stamp };
        let mut record = header.encode(b"hello").to_vec();
        record.extend_from_slice(b"hello");
        assert_eq!(check_record(&record, 9), Some(header));
        assert_eq!(check_record(&record, 10), None, "wrong sequence number");
        for bit in 0..record.len() * 8 {
            let mut bad = record.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(check_record(&bad, 9), None, "bit {bit}");
        }
        let file = FileHeader { base: 9, start: 100 };
        assert_eq!(FileHeader::decode(&file.encode()), Some(file));
        let mut bad = file.encode();
        bad[13] ^= 1;
        assert_eq!(FileHeader::decode(&bad), None);
    }
}
