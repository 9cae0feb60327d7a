//! What `mq-stamp` prints: the stamp of the message a descriptor's last read returned bytes
//! of (`MQ_IOC_STAMP`, see `crate::ioctl`), as one line of `key=value` words, and which
//! descriptor a FILE argument names.

use std::ffi::OsStr;
use std::os::fd::RawFd;

use crate::ioctl::MqStamp;

/// The stamp as `mq-stamp` prints it: `seq=.. group_seq=.. time=RFC3339 pid=.. uid=..
/// gid=.. deliveries=..` (the time in UTC, to the nanosecond).
pub fn line(stamp: &MqStamp) -> String {
    format!(
        "seq={} group_seq={} time={} pid={} uid={} gid={} deliveries={}",
        stamp.seq,
        stamp.group_seq,
        rfc3339(stamp.time),
        stamp.pid,
        stamp.uid,
        stamp.gid,
        stamp.deliveries
    )
}

/// Nanoseconds since the epoch as an RFC 3339 time in UTC: `2026-12-01T13:30:00.123456789Z`.
pub fn rfc3339(nanos: u64) -> String {
    let seconds = (nanos / 1_000_000_000) as libc::time_t;
    // SAFETY: gmtime_r writes only into `tm`, which we own; strftime writes at most
    // buf.len() bytes and the format is NUL-terminated.
    let date = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::gmtime_r(&seconds, &mut tm);
        let mut buf = [0u8; 32];
        let n = libc::strftime(buf.as_mut_ptr().cast(), buf.len(), c"%Y-%m-%dT%H:%M:%S".as_ptr(), &tm);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    format!("{date}.{:09}Z", nanos % 1_000_000_000)
}

/// The descriptor FILE names: `-` standard input, `/dev/fd/N` or `/proc/self/fd/N`
/// descriptor N. A path opened anew would be a new open file, which has read nothing: None.
pub fn descriptor(file: &OsStr) -> Option<RawFd> {
    if file == "-" {
        return Some(0);
    }
    let text = file.to_str()?;
    let number = text.strip_prefix("/dev/fd/").or_else(|| text.strip_prefix("/proc/self/fd/"))?;
    number.parse().ok().filter(|fd: &RawFd| *fd >= 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_one_line_of_words() {
        let stamp = MqStamp {
            version: 1,
            deliveries: 2,
            seq: 41,
            group_seq: 99,
            time: 1_700_000_000_000_000_042,
            pid: 123,
            uid: 1000,
            gid: 100,
            reserved: 0,
        };
        assert_eq!(
            line(&stamp),
            "seq=41 group_seq=99 time=2023-11-14T22:13:20.000000042Z pid=123 uid=1000 gid=100 deliveries=2"
        );
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn file_names_a_descriptor_already_open() {
        assert_eq!(descriptor(OsStr::new("-")), Some(0));
        assert_eq!(descriptor(OsStr::new("/dev/fd/3")), Some(3));
        assert_eq!(descriptor(OsStr::new("/proc/self/fd/12")), Some(12));
        assert_eq!(descriptor(OsStr::new("/n/mq/q/jobs")), None);
        assert_eq!(descriptor(OsStr::new("/dev/fd/x")), None);
    }
}
