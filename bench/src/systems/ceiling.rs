//! The FUSE ceiling: a fuser file system with one file that answers every request at once
//! and does nothing else. A write is acknowledged whole; a read gets as many bytes as it
//! asked for (zeros), as if one message of exactly that size were always waiting. It runs in
//! its own process, mounted and threaded like mqfs (four workers, direct I/O, stream files),
//! so its request rate is the most any FUSE file system can do on this machine.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    AccessFlags, Config, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, MountOption, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyWrite, Request, Session, SessionACL, WriteFlags,
};

use super::fuse_mount::FuseMount;
use crate::procs;

const ROOT: u64 = 1;
const FILE: u64 = 2;
const FILE_NAME: &str = "s";
/// Worker threads, as mqfs has by default: one per core, at least 2.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 64)
}
const ZEROS: usize = 4 << 20;

struct Ceiling {
    zeros: Vec<u8>,
}

fn attr(ino: u64) -> FileAttr {
    let directory = ino == ROOT;
    FileAttr {
        ino: INodeNo(ino),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: if directory { FileType::Directory } else { FileType::RegularFile },
        perm: if directory { 0o755 } else { 0o666 },
        nlink: if directory { 2 } else { 1 },
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl Filesystem for Ceiling {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent.0 == ROOT && name == FILE_NAME {
            reply.entry_with_ttls(&Duration::ZERO, &Duration::from_secs(1), &attr(FILE), Generation(0));
        } else {
            reply.error(fuser::Errno::ENOENT);
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match ino.0 {
            ROOT | FILE => reply.attr(&Duration::ZERO, &attr(ino.0)),
            _ => reply.error(fuser::Errno::ENOENT),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_STREAM);
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        reply.data(&self.zeros[..(size as usize).min(ZEROS)]);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.written(data.len() as u32);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        if ino.0 != ROOT {
            return reply.error(fuser::Errno::ENOTDIR);
        }
        let entries = [
            (ROOT, FileType::Directory, "."),
            (ROOT, FileType::Directory, ".."),
            (FILE, FileType::RegularFile, FILE_NAME),
        ];
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), i as u64 + 1, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }
}

/// `mqfs-bench __ceiling MOUNTPOINT [THREADS]`: serves until SIGTERM/SIGINT, which detach
/// the mount.
pub fn serve_main(args: &[String]) -> ! {
    let Some(mountpoint) = args.first() else {
        eprintln!("usage: mqfs-bench __ceiling MOUNTPOINT [THREADS]");
        std::process::exit(2);
    };
    let threads = args.get(1).and_then(|t| t.parse().ok()).unwrap_or_else(default_threads);
    let mountpoint = Path::new(mountpoint).to_path_buf();
    // SAFETY: signal-set manipulation on a set we own, before any thread exists.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("mqfs-ceiling".into()),
        MountOption::CUSTOM("subtype=mqfs-ceiling".into()),
        MountOption::DefaultPermissions,
    ];
    config.acl = SessionACL::Owner;
    config.n_threads = Some(threads);
    let session = match Session::new(Ceiling { zeros: vec![0; ZEROS] }, &mountpoint, &config) {
        Ok(session) => session,
        Err(e) => {
            eprintln!("ceiling: cannot mount {}: {e}", mountpoint.display());
            std::process::exit(1);
        }
    };
    let stop_at = mountpoint.clone();
    std::thread::spawn(move || {
        let mut signal = 0;
        // SAFETY: waiting for signals blocked in every thread.
        unsafe { libc::sigwait(&set, &mut signal) };
        crate::cleanup::detach(&stop_at);
        std::process::exit(0);
    });
    let code = match session.run() {
        Ok(()) => 0,
        Err(_) => 1,
    };
    std::process::exit(code);
}

pub struct CeilingMount {
    mount: FuseMount,
}

impl CeilingMount {
    pub fn start(work: &Path, name: &str, threads: usize) -> Result<CeilingMount, String> {
        let mountpoint = work.join(name);
        std::fs::create_dir(&mountpoint).map_err(|e| format!("{}: {e}", mountpoint.display()))?;
        let mut command = Command::new(procs::self_exe());
        command.arg("__ceiling").arg(&mountpoint).arg(threads.to_string());
        let log = work.join(format!("{name}.log"));
        Ok(CeilingMount { mount: FuseMount::start("ceiling", command, &mountpoint, &log)? })
    }

    /// The one file: every name in a scenario maps to it.
    pub fn file(&self) -> std::path::PathBuf {
        self.mount.path().join(FILE_NAME)
    }
}
