//! The FUSE glue: kernel requests in, engine operations, replies out.
//!
//! Nothing here decides semantics. It translates types, opens stream files with
//! FOPEN_DIRECT_IO | FOPEN_STREAM (no page cache; each read and write reaches the engine with
//! its own size), tells the engine who sent each write request and how large the write(2) a
//! first request starts is, hands reads to the engine with a callback that owns the reply (so
//! a blocked read holds no worker thread), and registers parked reads and writes for signals
//! to end. What fuser 0.18 and the protocol do not tell it is made up for in `workarounds/`.

mod workarounds;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use fuser::{
    FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, IoctlFlags, KernelConfig,
    LockOwner, OpenAccMode, OpenFlags, PollEvents, PollFlags, PollNotifier, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen, ReplyPoll,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::engine::{self, Attr, Caller, Engine, Entry, Kind, OpenKind, ReadMode, SetAttr, WriteRequest};
use crate::ioctl::{MQ_IOC_STAMP, MqStamp, STAMP_SIZE, STAMP_VERSION};
use workarounds::interrupts::Interrupts;
use workarounds::write_size::{self, WriteSize};
use workarounds::{dispatch_trace, killed_writer};

/// Names may be cached briefly (every change goes through this mount); attributes not at
/// all, since a stream's size and mtime change with every message.
const ENTRY_TTL: Duration = Duration::from_secs(1);
const ATTR_TTL: Duration = Duration::ZERO;
const PAGE: usize = 4096;
/// The extended attributes of a stream that show its numbers (`Engine::stream_stats`): this
/// prefix and a number's name, its value the number in decimal. They are all a node has: any
/// other name is ENODATA, and setxattr and removexattr stay unimplemented (EOPNOTSUPP).
const STATS_XATTR: &[u8] = b"user.mq.";

pub struct MqFs {
    engine: Arc<Engine>,
    interrupts: Arc<Interrupts>,
    write_size: WriteSize,
}

impl MqFs {
    /// The engine behind it.
    pub fn engine(&self) -> Arc<Engine> {
        self.engine.clone()
    }

    pub fn new(engine: Arc<Engine>) -> MqFs {
        let interrupts = Interrupts::new(engine.clone());
        MqFs { engine, interrupts, write_size: WriteSize::new() }
    }

    /// The signal watcher, to be started once the process has its final threads.
    pub fn interrupts(&self) -> Arc<Interrupts> {
        self.interrupts.clone()
    }
}

/// Runs a request handler so that a panic in it (a bug) fails that request, which fuser
/// answers with EIO when the unwinding drops its reply, instead of killing a worker thread.
/// Its return also ends the request's dispatch, which an interrupt of it waits for.
fn guard(op: &str, handler: impl FnOnce()) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(handler));
    dispatch_trace::end();
    if let Err(panic) = result {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        log::error!("bug: a {op} request panicked ({what}); it failed with EIO, serving goes on");
    }
}

fn errno(error: engine::Errno) -> fuser::Errno {
    fuser::Errno::from_i32(error.0)
}

/// The engine's `call_id`: the system call writer (thread) `writer` is in now.
fn call_id(writer: u64) -> Option<u64> {
    write_size::call_id(u32::try_from(writer).ok()?)
}

fn caller(req: &Request) -> Caller {
    Caller { uid: req.uid(), gid: req.gid() }
}

fn file_attr(attr: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(attr.ino),
        size: attr.size,
        blocks: attr.size.div_ceil(512),
        atime: attr.atime,
        mtime: attr.mtime,
        ctime: attr.ctime,
        crtime: attr.ctime,
        kind: file_type(attr.kind),
        perm: attr.perm,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: attr.rdev,
        blksize: PAGE as u32,
        flags: 0,
    }
}

fn file_type(kind: Kind) -> FileType {
    match kind {
        Kind::Directory => FileType::Directory,
        Kind::File => FileType::RegularFile,
        Kind::Symlink => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
    }
}

/// The node kind a mknod(2) mode asks for; the kernel passes no other.
fn node_kind(mode: u32) -> Option<Kind> {
    match mode & libc::S_IFMT {
        libc::S_IFREG => Some(Kind::File),
        libc::S_IFIFO => Some(Kind::Fifo),
        libc::S_IFSOCK => Some(Kind::Socket),
        libc::S_IFCHR => Some(Kind::CharDevice),
        libc::S_IFBLK => Some(Kind::BlockDevice),
        _ => None,
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

fn reply_entry(reply: ReplyEntry, result: engine::Result<Attr>) {
    match result {
        // Names are cached, attributes not: ctl and order derive theirs from the group.
        Ok(attr) => reply.entry_with_ttls(&ATTR_TTL, &ENTRY_TTL, &file_attr(&attr), Generation(0)),
        Err(e) => reply.error(errno(e)),
    }
}

fn reply_empty(reply: ReplyEmpty, result: engine::Result<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(e)),
    }
}

/// Answers getxattr or listxattr with `value`: its size if the caller asked (`size` 0),
/// else the value if it fits (ERANGE if not).
fn reply_xattr(reply: ReplyXattr, size: u32, value: engine::Result<Vec<u8>>) {
    match value {
        Ok(value) if size == 0 => reply.size(value.len() as u32),
        Ok(value) if value.len() > size as usize => reply.error(fuser::Errno::ERANGE),
        Ok(value) => reply.data(&value),
        Err(e) => reply.error(errno(e)),
    }
}

fn open_flags(kind: OpenKind) -> FopenFlags {
    match kind {
        OpenKind::Stream => FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_STREAM,
        OpenKind::Ctl | OpenKind::Static => FopenFlags::FOPEN_DIRECT_IO,
    }
}

fn access(flags: OpenFlags) -> (bool, bool) {
    match flags.acc_mode() {
        OpenAccMode::O_RDONLY => (true, false),
        OpenAccMode::O_WRONLY => (false, true),
        OpenAccMode::O_RDWR => (true, true),
    }
}

impl Filesystem for MqFs {
    fn init(&mut self, _req: &Request, _config: &mut KernelConfig) -> std::io::Result<()> {
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        guard("lookup", || {
            reply_entry(reply, self.engine.lookup(parent.0, name.as_bytes()));
        })
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        guard("forget", || self.engine.forget(ino.0, nlookup))
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        guard("getattr", || match self.engine.getattr(ino.0) {
            Ok(attr) => reply.attr(&ATTR_TTL, &file_attr(&attr)),
            Err(e) => reply.error(errno(e)),
        })
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        _size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        guard("setattr", || {
            // A size change (O_TRUNC, truncate) is accepted and deletes nothing: history goes
            // only by the group's rules or `clear`.
            let change = SetAttr {
                perm: mode.map(|m| (m & 0o7777) as u16),
                uid,
                gid,
                atime: atime.map(time),
                mtime: mtime.map(time),
            };
            match self.engine.setattr(ino.0, change) {
                Ok(attr) => reply.attr(&ATTR_TTL, &file_attr(&attr)),
                Err(e) => reply.error(errno(e)),
            }
        })
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        guard("mknod", || {
            // The kernel checks CAP_MKNOD for devices, and refuses to open them on a nodev
            // mount (those mqfs makes itself are): it serves FIFOs, sockets and devices itself.
            let Some(kind) = node_kind(mode) else { return reply.error(fuser::Errno::EINVAL) };
            let perm = (mode & !umask & 0o7777) as u16;
            reply_entry(reply, self.engine.mknod(parent.0, name.as_bytes(), kind, perm, rdev, caller(req)));
        })
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        guard("symlink", || {
            let target = target.as_os_str().as_bytes();
            reply_entry(reply, self.engine.symlink(parent.0, link_name.as_bytes(), target, caller(req)));
        })
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        guard("readlink", || match self.engine.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno(e)),
        })
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        guard("link", || {
            reply_entry(reply, self.engine.link(ino.0, newparent.0, newname.as_bytes()));
        })
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        guard("mkdir", || {
            let perm = (mode & !umask & 0o7777) as u16;
            reply_entry(reply, self.engine.mkdir(parent.0, name.as_bytes(), perm, caller(req)));
        })
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        guard("unlink", || {
            reply_empty(reply, self.engine.unlink(parent.0, name.as_bytes()));
        })
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        guard("rmdir", || {
            reply_empty(reply, self.engine.rmdir(parent.0, name.as_bytes()));
        })
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        guard("rename", || {
            if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
                return reply.error(fuser::Errno::EINVAL);
            }
            let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
            let result =
                self.engine.rename(parent.0, name.as_bytes(), newparent.0, newname.as_bytes(), no_replace);
            reply_empty(reply, result);
        })
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        guard("open", || {
            let (read, write) = access(flags);
            match self.engine.open(ino.0, read, write, caller(req)) {
                Ok((fh, kind)) => reply.opened(FileHandle(fh), open_flags(kind)),
                Err(e) => reply.error(errno(e)),
            }
        })
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        guard("create", || {
            let perm = (mode & !umask & 0o7777) as u16;
            let (read, write) = access(OpenFlags(flags));
            let created = self.engine.create(parent.0, name.as_bytes(), perm, caller(req)).and_then(|attr| {
                // If it cannot be opened, the kernel is not told of it.
                let opened = self.engine.open(attr.ino, read, write, caller(req));
                opened.inspect_err(|_| self.engine.forget(attr.ino, 1)).map(|open| (attr, open))
            });
            match created {
                Ok((attr, (fh, kind))) => reply.created(
                    &ENTRY_TTL,
                    &file_attr(&attr),
                    Generation(0),
                    FileHandle(fh),
                    open_flags(kind),
                ),
                Err(e) => reply.error(errno(e)),
            }
        })
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        guard("read", || {
            // A read(2) of a direct-I/O file names its caller's lock owner; a READ without
            // one fills the page cache: for a private mmap(2) (which the kernel grants on
            // such files without asking), sendfile/splice or readahead. It must not move a
            // reader's cursor.
            if lock_owner.is_none() {
                return match self.engine.read_pages(fh.0, offset, size) {
                    Ok(data) => reply.data(&data),
                    Err(e) => {
                        log::info!("pid {}: a read for the page cache (mmap) refused: {e}", req.pid());
                        reply.error(errno(e))
                    }
                };
            }
            let mode = if offset > 0 {
                ReadMode::Continuation
            } else if flags.0 & libc::O_NONBLOCK != 0 {
                ReadMode::NonBlock
            } else {
                ReadMode::Block
            };
            let done = Arc::new(AtomicBool::new(false));
            let completed = done.clone();
            let callback = Box::new(move |result: engine::ReadResult| {
                match result {
                    Ok(data) => reply.data(&data),
                    Err(e) => reply.error(errno(e)),
                }
                completed.store(true, Ordering::Release);
            });
            if let Some(ticket) = self.engine.read(fh.0, offset, size, mode, callback) {
                self.interrupts.watch(req.unique().0, ticket, req.pid(), fh.0, done);
            }
        })
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        guard("write", || {
            // The kernel asks this of a writer without CAP_FSETID.
            if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
                self.engine.clear_setid(ino.0);
            }
            let (len, pid) = (data.len(), req.pid());
            let done = Arc::new(AtomicBool::new(false));
            let completed = done.clone();
            let callback = Box::new(move |result: engine::Result<()>| {
                match result {
                    Ok(()) => reply.written(len as u32),
                    // A non-blocking writer's flow control, not a fault.
                    Err(e @ engine::Errno::EAGAIN) => {
                        log::debug!("write of {len} bytes by pid {pid}: {e}");
                        reply.error(errno(e))
                    }
                    Err(e) => {
                        log::warn!("write of {len} bytes by pid {pid}: {e}");
                        reply.error(errno(e))
                    }
                }
                completed.store(true, Ordering::Release);
            });
            let nonblock = flags.0 & libc::O_NONBLOCK != 0;
            let (uid, gid) = (req.uid(), req.gid());
            let request = WriteRequest { data, writer: pid.into(), offset, nonblock, pid, uid, gid };
            let size_of_call = || self.write_size.of_call(len, pid);
            if let Some(ticket) = self.engine.write(fh.0, &request, size_of_call, call_id, callback) {
                self.interrupts.watch(req.unique().0, ticket, pid, fh.0, done);
            }
        })
    }

    fn flush(&self, req: &Request, _ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        guard("flush", || {
            // A process killed while writing a `frame close` message must not publish half of
            // it: its files are closed as it dies, with its exit code already set.
            let dying = || killed_writer::killed_by_signal(req.pid());
            let caller = Caller { uid: req.uid(), gid: req.gid() };
            reply_empty(reply, self.engine.flush(fh.0, req.pid().into(), caller, dying, call_id));
        })
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        guard("release", || {
            self.engine.release(fh.0);
            reply.ok();
        })
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        guard("fsync", || {
            // Replied once the stream's log and its group's `order` synced (at once in memory).
            self.engine.fsync(fh.0, Box::new(move |result| reply_empty(reply, result)));
        })
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        guard("opendir", || match self.engine.getattr(ino.0) {
            // Nothing to keep: readdir's cookies resume in the live group.
            Ok(attr) if attr.kind == Kind::Directory => reply.opened(FileHandle(0), FopenFlags::empty()),
            Ok(_) => reply.error(fuser::Errno::ENOTDIR),
            Err(e) => reply.error(errno(e)),
        })
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        guard("readdir", || {
            let listed = self.engine.readdir(ino.0, offset, |entry: Entry| {
                reply.add(
                    INodeNo(entry.ino),
                    entry.next,
                    file_type(entry.kind),
                    OsStr::from_bytes(entry.name),
                )
            });
            match listed {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(e)),
            }
        })
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        guard("statfs", || {
            let usage = self.engine.usage();
            let block = PAGE as u64;
            let blocks = usage.memory_limit / block;
            let free = usage.memory_limit.saturating_sub(usage.memory_used) / block;
            // Inodes are not a limited resource: report plenty free.
            let files = usage.nodes + u32::MAX as u64;
            reply.statfs(blocks, free, free, files, files - usage.nodes, PAGE as u32, 255, PAGE as u32);
        })
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        guard("getxattr", || {
            let field = name.as_bytes().strip_prefix(STATS_XATTR).ok_or(engine::Errno::ENODATA);
            let value = field.and_then(|field| {
                let stats = self.engine.stream_stats(ino.0)?;
                let (_, number) = stats
                    .named()
                    .into_iter()
                    .find(|(name, _)| name.as_bytes() == field)
                    .ok_or(engine::Errno::ENODATA)?;
                Ok(number.to_string().into_bytes())
            });
            reply_xattr(reply, size, value);
        })
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        guard("listxattr", || {
            let names = match self.engine.stream_stats(ino.0) {
                Ok(stats) => Ok(stats
                    .named()
                    .iter()
                    .flat_map(|(name, _)| [STATS_XATTR, name.as_bytes(), b"\0"].concat())
                    .collect()),
                Err(engine::Errno::ENODATA) => Ok(Vec::new()),
                Err(e) => Err(e),
            };
            reply_xattr(reply, size, names);
        })
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        guard("access", || {
            // Permissions are checked by the kernel (default_permissions).
            reply.ok();
        })
    }

    /// `MQ_IOC_STAMP` (see `crate::ioctl`); any other command is not ours (ENOTTY). The
    /// kernel sends a FUSE file system only restricted ioctls, and copies out the size the
    /// command encodes.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        flags: IoctlFlags,
        cmd: u32,
        _in_data: &[u8],
        out_size: u32,
        reply: ReplyIoctl,
    ) {
        guard("ioctl", || {
            if cmd != MQ_IOC_STAMP || flags.contains(IoctlFlags::FUSE_IOCTL_DIR) {
                return reply.error(fuser::Errno::ENOTTY);
            }
            if (out_size as usize) < STAMP_SIZE {
                return reply.error(fuser::Errno::EINVAL);
            }
            match self.engine.stamp(fh.0) {
                Ok(Some(received)) => {
                    let time = received.stamp.time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
                    let stamp = MqStamp {
                        version: STAMP_VERSION,
                        deliveries: received.deliveries,
                        seq: received.seq,
                        group_seq: received.stamp.group_seq,
                        time: u64::try_from(time.as_nanos()).unwrap_or(u64::MAX),
                        pid: received.stamp.pid,
                        uid: received.stamp.uid,
                        gid: received.stamp.gid,
                        reserved: 0,
                    };
                    reply.ioctl(0, &stamp.to_bytes());
                }
                Ok(None) => reply.error(fuser::Errno::ENODATA),
                Err(e) => reply.error(errno(e)),
            }
        })
    }

    fn poll(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        ph: PollNotifier,
        events: PollEvents,
        flags: PollFlags,
        reply: ReplyPoll,
    ) {
        guard("poll", || {
            // The kernel asks for notification while anyone waits on the file, and polls again
            // after every wake-up, which arms the engine's poller anew.
            let poller = flags.contains(PollFlags::FUSE_POLL_SCHEDULE_NOTIFY).then(|| {
                Arc::new(move || {
                    if let Err(e) = ph.clone().notify() {
                        log::debug!("poll notification: {e}");
                    }
                }) as engine::PollCallback
            });
            match self.engine.poll(fh.0, poller) {
                Ok(readable) => {
                    let mut ready = PollEvents::POLLOUT | PollEvents::POLLWRNORM;
                    if readable {
                        ready |= PollEvents::POLLIN | PollEvents::POLLRDNORM;
                    }
                    reply.poll(ready & (events | PollEvents::POLLERR | PollEvents::POLLHUP));
                }
                Err(e) => reply.error(errno(e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Drops like a fuser reply: its drop is what answers the kernel with EIO.
    struct Reply(Arc<AtomicBool>);

    impl Drop for Reply {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_panicking_handler_is_contained_and_its_reply_dropped() {
        let answered = Arc::new(AtomicBool::new(false));
        let reply = Reply(answered.clone());
        super::guard("test", move || {
            let _reply = reply;
            panic!("a bug");
        });
        assert!(answered.load(Ordering::SeqCst), "the reply was dropped, so the request got an answer");
    }
}
