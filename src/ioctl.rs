//! The ioctl an mqfs stream descriptor answers, shared by the file system and the tools:
//! `MQ_IOC_STAMP`, the stamp of the message the descriptor's last read returned bytes of
//! (sender identity, see docs/semantics.md). A FUSE file system gets only restricted ioctls,
//! whose argument the kernel copies by the size the command encodes, so the answer is a
//! fixed structure, [`MqStamp`].

use std::time::{Duration, SystemTime};

/// The layout [`MqStamp::version`] names; a later one may only add fields at the end.
pub const STAMP_VERSION: u32 = 1;

/// `MQ_IOC_STAMP`'s answer, as C declares it:
///
/// ```c
/// struct mq_stamp {
///     uint32_t version;     /* 1 */
///     uint32_t deliveries;  /* 1: first delivery; more: a redelivery */
///     uint64_t seq;         /* the message's number in its stream */
///     uint64_t group_seq;   /* its number among all writes to its group (order's) */
///     uint64_t time;        /* when it was committed: nanoseconds since the epoch */
///     uint32_t pid, uid, gid; /* who wrote it */
///     uint32_t reserved;    /* 0 */
/// };
/// #define MQ_IOC_STAMP _IOR('M', 1, struct mq_stamp)
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MqStamp {
    pub version: u32,
    pub deliveries: u32,
    pub seq: u64,
    pub group_seq: u64,
    pub time: u64,
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    pub reserved: u32,
}

/// The structure's size, which the command number encodes.
pub const STAMP_SIZE: usize = std::mem::size_of::<MqStamp>();

/// The command number of `MQ_IOC_STAMP`: `_IOR('M', 1, struct mq_stamp)`.
pub const MQ_IOC_STAMP: u32 = nix::request_code_read!(b'M', 1, STAMP_SIZE) as u32;

nix::ioctl_read!(mq_ioc_stamp, b'M', 1, MqStamp);

impl MqStamp {
    /// The bytes the kernel copies out to the caller (native byte order, as C reads them).
    pub fn to_bytes(&self) -> [u8; STAMP_SIZE] {
        let mut out = [0u8; STAMP_SIZE];
        let fields: [&[u8]; 9] = [
            &self.version.to_ne_bytes(),
            &self.deliveries.to_ne_bytes(),
            &self.seq.to_ne_bytes(),
            &self.group_seq.to_ne_bytes(),
            &self.time.to_ne_bytes(),
            &self.pid.to_ne_bytes(),
            &self.uid.to_ne_bytes(),
            &self.gid.to_ne_bytes(),
            &self.reserved.to_ne_bytes(),
        ];
        let mut at = 0;
        for field in fields {
            out[at..at + field.len()].copy_from_slice(field);
            at += field.len();
        }
        out
    }

    /// When the message was committed.
    pub fn system_time(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(self.time)
    }

    /// Asks descriptor `fd` (an open mqfs stream or `order`) for the stamp of the message
    /// its last read returned bytes of. ENODATA: it has read none (or reads no messages);
    /// ENOTTY: not an mqfs stream.
    pub fn of(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<MqStamp> {
        use std::os::fd::AsRawFd;
        let mut stamp = MqStamp::default();
        // SAFETY: the kernel writes at most STAMP_SIZE bytes, the size the command encodes,
        // into `stamp`, which is that large and lives across the call.
        unsafe { mq_ioc_stamp(fd.as_raw_fd(), &mut stamp) }.map_err(std::io::Error::from)?;
        Ok(stamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_what_c_declares() {
        assert_eq!(STAMP_SIZE, 48);
        assert_eq!(std::mem::offset_of!(MqStamp, seq), 8);
        assert_eq!(std::mem::offset_of!(MqStamp, pid), 32);
        // _IOR: read direction, the size, the type letter and the number (as x86 and ARM
        // encode them; a few architectures place the direction bits elsewhere).
        #[cfg(any(
            target_arch = "x86_64",
            target_arch = "x86",
            target_arch = "aarch64",
            target_arch = "arm"
        ))]
        assert_eq!(MQ_IOC_STAMP, 0x8030_4d01);
        let stamp = MqStamp {
            version: 1,
            deliveries: 2,
            seq: 3,
            group_seq: 4,
            time: 5,
            pid: 6,
            uid: 7,
            gid: 8,
            reserved: 0,
        };
        let bytes = stamp.to_bytes();
        assert_eq!(bytes[8..16], 3u64.to_ne_bytes());
        assert_eq!(bytes[36..40], 7u32.to_ne_bytes());
    }
}
