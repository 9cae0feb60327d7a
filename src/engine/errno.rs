//! Errors as the engine reports them: POSIX errno values, the language of the file API.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

pub type Result<T> = std::result::Result<T, Errno>;

impl Errno {
    pub const EPERM: Errno = Errno(libc::EPERM);
    pub const ENOENT: Errno = Errno(libc::ENOENT);
    pub const EINTR: Errno = Errno(libc::EINTR);
    pub const EBADF: Errno = Errno(libc::EBADF);
    pub const EAGAIN: Errno = Errno(libc::EAGAIN);
    pub const EEXIST: Errno = Errno(libc::EEXIST);
    pub const ENOTDIR: Errno = Errno(libc::ENOTDIR);
    pub const EISDIR: Errno = Errno(libc::EISDIR);
    pub const EINVAL: Errno = Errno(libc::EINVAL);
    pub const EFBIG: Errno = Errno(libc::EFBIG);
    pub const ENOSPC: Errno = Errno(libc::ENOSPC);
    pub const EIO: Errno = Errno(libc::EIO);
    pub const EPIPE: Errno = Errno(libc::EPIPE);
    pub const ENAMETOOLONG: Errno = Errno(libc::ENAMETOOLONG);
    pub const ENOTEMPTY: Errno = Errno(libc::ENOTEMPTY);
    /// The file cannot be read through the page cache (a memory mapping, sendfile): mmap(2)'s
    /// word for a file that cannot be mapped.
    pub const ENODEV: Errno = Errno(libc::ENODEV);
    /// A reader fell behind and messages it had not read were dropped (as netlink reports
    /// an overrun receive queue).
    pub const ENOBUFS: Errno = Errno(libc::ENOBUFS);
    /// No such extended attribute (getxattr of a name the node does not have).
    pub const ENODATA: Errno = Errno(libc::ENODATA);
    /// A setting a shared mount cannot keep across mounts (`upstream.rs`).
    pub const EOPNOTSUPP: Errno = Errno(libc::EOPNOTSUPP);
    /// A shared mount's upstream is out of reach: nothing was sent.
    pub const ENOTCONN: Errno = Errno(libc::ENOTCONN);
    /// A shared mount's upstream did not answer in time.
    pub const ETIMEDOUT: Errno = Errno(libc::ETIMEDOUT);
    /// A message larger than the upstream takes.
    pub const EMSGSIZE: Errno = Errno(libc::EMSGSIZE);
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", std::io::Error::from_raw_os_error(self.0))
    }
}
