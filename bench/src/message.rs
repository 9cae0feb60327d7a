//! The 24-byte header every benchmark message starts with: when it was sent
//! (CLOCK_MONOTONIC ns), its sequence number within its writer, the writer's number and flags
//! (END closes a writer's run, REPLY marks a server's answer). The rest of a message is filler up to the message size.

pub const HEADER_LEN: usize = 24;
/// The writer is done: readers count ENDs to know when every writer has finished.
pub const FLAG_END: u32 = 1;
/// A request/reply server's answer: the request's own bytes with this flag, so that a client
/// cannot take its own request, read back, for the reply.
pub const FLAG_REPLY: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub sent_ns: u64,
    pub seq: u64,
    pub writer: u32,
    pub flags: u32,
}

impl Header {
    pub fn write_to(&self, buf: &mut [u8]) {
        buf[0..8].copy_from_slice(&self.sent_ns.to_le_bytes());
        buf[8..16].copy_from_slice(&self.seq.to_le_bytes());
        buf[16..20].copy_from_slice(&self.writer.to_le_bytes());
        buf[20..24].copy_from_slice(&self.flags.to_le_bytes());
    }

    pub fn read_from(buf: &[u8]) -> Header {
        let u64_at = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
        let u32_at = |at: usize| u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
        Header { sent_ns: u64_at(0), seq: u64_at(8), writer: u32_at(16), flags: u32_at(20) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let header = Header { sent_ns: 123_456_789, seq: 42, writer: 7, flags: FLAG_END };
        let mut buf = [0u8; 64];
        header.write_to(&mut buf);
        assert_eq!(Header::read_from(&buf), header);
    }
}
