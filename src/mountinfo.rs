//! The mount table as the kernel shows it in /proc/self/mountinfo, one [`MountInfo`] a line,
//! with the octal escapes of its fields (`\040` for a space) undone. The `mqfs` daemon finds
//! its mount and notices it gone here, `mq-pin` finds the mounts it made, the tests what is
//! mounted where.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// One mount: a line `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE
/// SUPEROPTS`, the fields that name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The mount's id; a later mount has a higher one.
    pub id: u64,
    /// `MAJ:MIN` of the mounted file system.
    pub dev: String,
    pub mount_point: PathBuf,
    /// `fuse.mqfs` for an mqfs.
    pub fs_type: String,
    /// What the mount was made from (mqfs's `fsname`), lossily as text.
    pub source: String,
}

/// The mounts of this process's mount namespace, in the table's order (a mount made later on
/// the same point comes later).
pub fn read() -> io::Result<Vec<MountInfo>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?).collect())
}

/// The mounts `text` (the contents of a mountinfo file) lists.
pub fn parse(text: &str) -> impl Iterator<Item = MountInfo> + '_ {
    text.lines().filter_map(parse_line)
}

fn parse_line(line: &str) -> Option<MountInfo> {
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields.iter().position(|f| *f == "-")?;
    Some(MountInfo {
        id: fields.first()?.parse().ok()?,
        dev: fields.get(2)?.to_string(),
        mount_point: OsStr::from_bytes(&unescape(fields.get(4)?)).into(),
        fs_type: fields.get(sep + 1)?.to_string(),
        source: String::from_utf8_lossy(&unescape(fields.get(sep + 2).copied().unwrap_or(""))).into_owned(),
    })
}

/// Undoes the octal escapes (`\040` for a space, `\134` for a backslash) of a field.
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |acc, c| acc.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn fields_are_unescaped() {
        assert_eq!(unescape(r"/tmp/a\040b\134c"), b"/tmp/a b\\c");
        assert_eq!(unescape(r"/x\04"), b"/x\\04");
    }

    #[test]
    fn a_line_names_its_mount() {
        let line = r"36 35 0:52 / /n/a\040b rw,nosuid shared:1 master:2 - fuse.mqfs mq\040pin rw,user_id=0";
        let mount = parse(line).next().unwrap();
        assert_eq!(mount.id, 36);
        assert_eq!(mount.dev, "0:52");
        assert_eq!(mount.mount_point, PathBuf::from("/n/a b"));
        assert_eq!((mount.fs_type.as_str(), mount.source.as_str()), ("fuse.mqfs", "mq pin"));
        assert_eq!(parse("garbage\n").count(), 0);
    }

    #[test]
    fn the_root_is_mounted() {
        assert!(read().unwrap().iter().any(|m| m.mount_point == Path::new("/")));
    }
}
