//! The catalogue's record of one node, what the tree needs to rebuild it after a remount,
//! and its binary encoding: an [`Entry`] (save a node, forget one) framed with its length
//! and a CRC-32C, so that a store can tell a record cut short from a damaged one. The
//! layout is in docs/store-format.md ("Catalogue").

use std::time::{Duration, SystemTime};

/// One name of a node: the group it is in, the name, and its place in that group's listing
/// (its entry number, which readdir's cookies are made of).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Name {
    pub parent: u64,
    pub name: Vec<u8>,
    pub entry: u64,
}

/// What a node is, with what only that kind has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeBody {
    /// A group, with its configuration as the text `ctl` renders (settings only): a new
    /// setting needs no change of format, and an old record lacks it, taking the default.
    Group {
        config: String,
    },
    Stream,
    Symlink {
        target: Vec<u8>,
    },
    Fifo,
    Socket,
    CharDevice {
        rdev: u32,
    },
    BlockDevice {
        rdev: u32,
    },
}

/// One node of the namespace as saved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    pub ino: u64,
    pub body: NodeBody,
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    /// A stream's as last saved: its messages move it without a save, so its log has the
    /// later one.
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    /// Every name, the home (oldest) first; the root has one, in itself, named "".
    pub names: Vec<Name>,
}

/// One change a catalogue journal records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// The node's state from now on.
    Save(NodeRecord),
    /// The node is gone.
    Remove(u64),
}

/// A frame's header: the payload's length and its CRC-32C, both little-endian `u32`.
pub const FRAME_HEADER: usize = 8;
/// The longest payload a frame may have: a longer length is damage, not a record (the
/// longest real one, a node with many hard links, is far shorter).
pub const PAYLOAD_MAX: usize = 64 << 20;

const SAVE: u8 = 1;
const REMOVE: u8 = 2;

const GROUP: u8 = 1;
const STREAM: u8 = 2;
const SYMLINK: u8 = 3;
const FIFO: u8 = 4;
const SOCKET: u8 = 5;
const CHAR_DEVICE: u8 = 6;
const BLOCK_DEVICE: u8 = 7;

/// What the bytes at a frame's start hold.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// A whole entry, and how many bytes its frame took.
    Entry(Entry, usize),
    /// The bytes end inside the frame: a record cut short (or nothing at all).
    Incomplete,
    /// Not a record: why.
    Bad(String),
}

impl Entry {
    /// Appends the entry's frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER]);
        match self {
            Entry::Save(record) => {
                out.push(SAVE);
                record.encode(out);
            }
            Entry::Remove(ino) => {
                out.push(REMOVE);
                out.extend_from_slice(&ino.to_le_bytes());
            }
        }
        let payload = &out[start + FRAME_HEADER..];
        let (len, crc) = (payload.len() as u32, crc32c::crc32c(payload));
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4..start + FRAME_HEADER].copy_from_slice(&crc.to_le_bytes());
    }

    /// Reads the frame at the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Framed {
        let Some(header) = bytes.get(..FRAME_HEADER) else { return Framed::Incomplete };
        let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
        if len > PAYLOAD_MAX {
            return Framed::Bad(format!("a record length of {len} bytes"));
        }
        let Some(payload) = bytes.get(FRAME_HEADER..FRAME_HEADER + len) else { return Framed::Incomplete };
        if crc32c::crc32c(payload) != crc {
            return Framed::Bad("checksum mismatch".into());
        }
        let mut reader = Reader(payload);
        let entry = match reader.u8() {
            Some(SAVE) => NodeRecord::decode(&mut reader).map(Entry::Save),
            Some(REMOVE) => reader.u64().map(Entry::Remove),
            _ => None,
        };
        match entry {
            Some(entry) if reader.0.is_empty() => Framed::Entry(entry, FRAME_HEADER + len),
            _ => Framed::Bad("a malformed record".into()),
        }
    }
}

impl NodeRecord {
    fn encode(&self, out: &mut Vec<u8>) {
        let (kind, rdev, bytes): (u8, u32, &[u8]) = match &self.body {
            NodeBody::Group { config } => (GROUP, 0, config.as_bytes()),
            NodeBody::Stream => (STREAM, 0, &[]),
            NodeBody::Symlink { target } => (SYMLINK, 0, target),
            NodeBody::Fifo => (FIFO, 0, &[]),
            NodeBody::Socket => (SOCKET, 0, &[]),
            NodeBody::CharDevice { rdev } => (CHAR_DEVICE, *rdev, &[]),
            NodeBody::BlockDevice { rdev } => (BLOCK_DEVICE, *rdev, &[]),
        };
        out.extend_from_slice(&self.ino.to_le_bytes());
        out.push(kind);
        out.extend_from_slice(&self.perm.to_le_bytes());
        out.extend_from_slice(&self.uid.to_le_bytes());
        out.extend_from_slice(&self.gid.to_le_bytes());
        for time in [self.atime, self.mtime, self.ctime] {
            let (secs, nanos) = split_time(time);
            out.extend_from_slice(&secs.to_le_bytes());
            out.extend_from_slice(&nanos.to_le_bytes());
        }
        out.extend_from_slice(&rdev.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
        out.extend_from_slice(&(self.names.len() as u32).to_le_bytes());
        for name in &self.names {
            out.extend_from_slice(&name.parent.to_le_bytes());
            out.extend_from_slice(&name.entry.to_le_bytes());
            out.extend_from_slice(&(name.name.len() as u16).to_le_bytes());
            out.extend_from_slice(&name.name);
        }
    }

    fn decode(reader: &mut Reader) -> Option<NodeRecord> {
        let ino = reader.u64()?;
        let kind = reader.u8()?;
        let perm = u16::from_le_bytes(reader.array()?);
        let (uid, gid) = (reader.u32()?, reader.u32()?);
        let mut times = [SystemTime::UNIX_EPOCH; 3];
        for time in &mut times {
            *time = join_time(reader.u64()? as i64, reader.u32()?)?;
        }
        let rdev = reader.u32()?;
        let len = reader.u32()? as usize;
        let bytes = reader.take(len)?.to_vec();
        let body = match kind {
            GROUP => NodeBody::Group { config: String::from_utf8(bytes).ok()? },
            SYMLINK => NodeBody::Symlink { target: bytes },
            _ if !bytes.is_empty() => return None,
            STREAM => NodeBody::Stream,
            FIFO => NodeBody::Fifo,
            SOCKET => NodeBody::Socket,
            CHAR_DEVICE => NodeBody::CharDevice { rdev },
            BLOCK_DEVICE => NodeBody::BlockDevice { rdev },
            _ => return None,
        };
        let count = reader.u32()?;
        let mut names = Vec::new();
        for _ in 0..count {
            let (parent, entry) = (reader.u64()?, reader.u64()?);
            let len = u16::from_le_bytes(reader.array()?) as usize;
            names.push(Name { parent, name: reader.take(len)?.to_vec(), entry });
        }
        let [atime, mtime, ctime] = times;
        Some(NodeRecord { ino, body, perm, uid, gid, atime, mtime, ctime, names })
    }
}

/// Seconds since the epoch (negative before it) and nanoseconds past them.
fn split_time(time: SystemTime) -> (i64, u32) {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => (after.as_secs() as i64, after.subsec_nanos()),
        Err(before) => {
            let before = before.duration();
            match before.subsec_nanos() {
                0 => (-(before.as_secs() as i64), 0),
                nanos => (-(before.as_secs() as i64) - 1, 1_000_000_000 - nanos),
            }
        }
    }
}

fn join_time(secs: i64, nanos: u32) -> Option<SystemTime> {
    if nanos >= 1_000_000_000 {
        return None;
    }
    let epoch = SystemTime::UNIX_EPOCH;
    if secs >= 0 {
        epoch.checked_add(Duration::new(secs as u64, nanos))
    } else {
        epoch
            .checked_sub(Duration::from_secs(secs.unsigned_abs()))?
            .checked_add(Duration::from_nanos(nanos.into()))
    }
}

/// Reads little-endian fields off the front of a payload.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(len)?;
        self.0 = rest;
        Some(taken)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).map(|bytes| bytes.try_into().expect("N bytes"))
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[byte]| byte)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(secs: i64, nanos: u32) -> SystemTime {
        join_time(secs, nanos).unwrap()
    }

    fn record(ino: u64, body: NodeBody) -> NodeRecord {
        NodeRecord {
            ino,
            body,
            perm: 0o2755,
            uid: 1000,
            gid: 100,
            atime: time(1_700_000_000, 123_456_789),
            mtime: time(-1, 1),
            ctime: time(0, 0),
            names: vec![
                Name { parent: 1, name: b"home".to_vec(), entry: ino },
                Name { parent: 7, name: b"link \xff".to_vec(), entry: 40 },
            ],
        }
    }

    fn every_kind() -> Vec<NodeRecord> {
        vec![
            record(2, NodeBody::Group { config: "data message\nreplay all\n".into() }),
            record(3, NodeBody::Stream),
            record(4, NodeBody::Symlink { target: b"../some/where".to_vec() }),
            record(5, NodeBody::Fifo),
            record(6, NodeBody::Socket),
            record(7, NodeBody::CharDevice { rdev: 0x0103 }),
            record(8, NodeBody::BlockDevice { rdev: 0x0801 }),
        ]
    }

    fn framed(entry: &Entry) -> Vec<u8> {
        let mut bytes = Vec::new();
        entry.encode(&mut bytes);
        bytes
    }

    #[test]
    fn every_kind_of_record_decodes_to_itself() {
        let mut entries: Vec<Entry> = every_kind().into_iter().map(Entry::Save).collect();
        entries.push(Entry::Remove(u64::MAX));
        for entry in entries {
            let bytes = framed(&entry);
            assert_eq!(Entry::decode(&bytes), Framed::Entry(entry.clone(), bytes.len()));
            // Followed by more, it still reads exactly its own frame.
            let mut longer = bytes.clone();
            longer.extend_from_slice(b"next");
            assert_eq!(Entry::decode(&longer), Framed::Entry(entry, bytes.len()));
        }
    }

    #[test]
    fn times_before_the_epoch_keep_their_nanoseconds() {
        for (secs, nanos) in [(-1, 1), (-1_000, 999_999_999), (-5, 0), (0, 0), (5, 7)] {
            assert_eq!(split_time(time(secs, nanos)), (secs, nanos));
        }
    }

    #[test]
    fn a_frame_cut_short_is_incomplete() {
        let bytes = framed(&Entry::Save(every_kind().remove(0)));
        for len in [0, 3, FRAME_HEADER, bytes.len() - 1] {
            assert_eq!(Entry::decode(&bytes[..len]), Framed::Incomplete, "{len} bytes");
        }
    }

    #[test]
    fn a_changed_byte_or_absurd_length_is_bad() {
        let bytes = framed(&Entry::Save(every_kind().remove(1)));
        for at in [4, FRAME_HEADER, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x10;
            assert!(matches!(Entry::decode(&damaged), Framed::Bad(_)), "byte {at} changed");
        }
        let mut long = bytes;
        long[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(Entry::decode(&long), Framed::Bad(reason) if reason.contains("length")));
    }

    #[test]
    fn a_well_checksummed_payload_of_the_wrong_shape_is_bad() {
        for payload in [&[9u8][..], &[REMOVE, 1, 2], &[SAVE], &[]] {
            let mut bytes = (payload.len() as u32).to_le_bytes().to_vec();
            bytes.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
            bytes.extend_from_slice(payload);
            assert_eq!(Entry::decode(&bytes), Framed::Bad("a malformed record".into()), "{payload:?}");
        }
    }
}
