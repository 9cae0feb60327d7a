//! The systems measured, the machine-wide environment they run in ([`Env`]: the mqfs
//! binary, redis-server and nats-server if there are, a scratch directory on a disk file
//! system for stores and a private tmpfs, raised limits), and the [`Lab`] that sets systems
//! up for one scenario and takes them down: [`Lab::plumb`] gives the endpoints of a fresh
//! stream on any system.

pub mod ceiling;
pub mod debian;
pub mod fifo;
pub mod fuse_mount;
pub mod mqfs;
pub mod msgfs;
pub mod nats;
pub mod redis;
pub mod tail;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cleanup::{self, Item, Registration, Sysctl};
use crate::endpoint::Endpoint;
use crate::procs::Proc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum System {
    Ceiling,
    Mqfs,
    MqfsCoalesce,
    Fifo,
    FifoTee,
    Tail,
    Msgfs,
    Redis,
    /// A disk-backed mount, its groups `sync never`.
    MqfsDisk,
    /// A disk-backed mount, its groups `sync always`.
    MqfsAlways,
    /// XADD into a Redis stream, `appendonly yes`, `appendfsync always`.
    RedisAlways,
    /// The same with `appendfsync everysec`.
    RedisEverysec,
    /// NATS JetStream, file storage, publishes acknowledged (async-nats); read through an
    /// ordered consumer per reader.
    Jetstream,
    /// Two mqfs mounts of one NATS server: written on one, read on the other.
    MqfsNats,
    /// Core NATS pub/sub (async-nats), no persistence, publishes not acknowledged.
    NatsCore,
}

impl System {
    pub fn label(self) -> &'static str {
        match self {
            System::Ceiling => "FUSE ceiling",
            System::Mqfs => "mqfs",
            System::MqfsCoalesce => "mqfs coalesce",
            System::Fifo => "FIFO",
            System::FifoTee => "FIFO + tee",
            System::Tail => "inotify tail",
            System::Msgfs => "msgfs",
            System::Redis => "Redis pub/sub",
            System::MqfsDisk => "mqfs disk, sync never",
            System::MqfsAlways => "mqfs disk, sync always",
            System::RedisAlways => "Redis AOF always",
            System::RedisEverysec => "Redis AOF everysec",
            System::Jetstream => "NATS JetStream",
            System::MqfsNats => "mqfs on NATS",
            System::NatsCore => "NATS core",
        }
    }

    /// The name `--systems` takes.
    pub fn key(self) -> &'static str {
        match self {
            System::Ceiling => "ceiling",
            System::Mqfs => "mqfs",
            System::MqfsCoalesce => "mqfs-coalesce",
            System::Fifo => "fifo",
            System::FifoTee => "fifo-tee",
            System::Tail => "tail",
            System::Msgfs => "msgfs",
            System::Redis => "redis",
            System::MqfsDisk => "mqfs-disk",
            System::MqfsAlways => "mqfs-always",
            System::RedisAlways => "redis-always",
            System::RedisEverysec => "redis-everysec",
            System::Jetstream => "jetstream",
            System::MqfsNats => "mqfs-nats",
            System::NatsCore => "nats-core",
        }
    }

    pub const ALL: [System; 15] = [
        System::Ceiling,
        System::Mqfs,
        System::MqfsCoalesce,
        System::Fifo,
        System::FifoTee,
        System::Tail,
        System::Msgfs,
        System::Redis,
        System::MqfsDisk,
        System::MqfsAlways,
        System::RedisAlways,
        System::RedisEverysec,
        System::Jetstream,
        System::MqfsNats,
        System::NatsCore,
    ];

    pub fn color(self) -> &'static str {
        match self {
            System::Ceiling => "#7f7f7f",
            System::Mqfs => "#d62728",
            System::MqfsCoalesce => "#ff7f0e",
            System::Fifo => "#1f77b4",
            System::FifoTee => "#17becf",
            System::Tail => "#2ca02c",
            System::Msgfs => "#9467bd",
            System::Redis => "#8c564b",
            System::MqfsDisk => "#e377c2",
            System::MqfsAlways => "#bcbd22",
            System::RedisAlways => "#5e3c33",
            System::RedisEverysec => "#c49c94",
            System::Jetstream => "#393b79",
            System::MqfsNats => "#ad494a",
            System::NatsCore => "#6b6ecf",
        }
    }
}

/// What every scenario shares: binaries, a scratch directory and a private tmpfs.
pub struct Env {
    pub mqfs_bin: PathBuf,
    /// Extra `-o` options for every mqfs mount (`--mqfs-options`), empty by default.
    pub mqfs_options: String,
    pub redis_bin: Result<PathBuf, String>,
    pub nats_bin: Result<PathBuf, String>,
    /// In the system's temporary directory: mqfs's stores, Redis's AOF and JetStream's files
    /// all live here, on one file system.
    pub work: PathBuf,
    pub tmpfs: PathBuf,
    /// Things a reader of the report should know about the setup (limits raised, ...).
    pub notes: Vec<String>,
    _sysctls: Vec<Sysctl>,
    _tmpfs_registration: Registration,
    _work_registration: Registration,
}

impl Env {
    pub fn prepare(
        mqfs_bin: PathBuf,
        mqfs_options: String,
        redis_bin: Result<PathBuf, String>,
        nats_bin: Result<PathBuf, String>,
    ) -> Result<Env, String> {
        let work = std::env::temp_dir().join(format!("mqfs-bench-{}", std::process::id()));
        std::fs::create_dir(&work).map_err(|e| format!("{}: {e}", work.display()))?;
        let work_registration = cleanup::register(Item::Dir(work.clone()));
        let tmpfs = work.join("tmpfs");
        std::fs::create_dir(&tmpfs).map_err(|e| format!("{}: {e}", tmpfs.display()))?;
        let tmpfs_registration = cleanup::register(Item::Mount(tmpfs.clone()));
        mount_tmpfs(&tmpfs)?;
        let mut notes = vec![format!(
            "stores (mqfs disk, Redis AOF, JetStream) in {}, on {}",
            work.display(),
            file_system(&work)
        )];
        raise_open_files();
        let mut sysctls = Vec::new();
        // One inotify instance per tail or msgfs reader, up to 10,000 of them.
        match Sysctl::raise_to("/proc/sys/fs/inotify/max_user_instances", 20_000) {
            Ok(Some(sysctl)) => {
                notes.push(
                    "fs.inotify.max_user_instances raised to 20000 for the run (one per tail/msgfs reader)"
                        .into(),
                );
                sysctls.push(sysctl);
            }
            Ok(None) => {}
            Err(e) => notes.push(format!(
                "could not raise the inotify instance limit ({e}): many-reader tail and msgfs runs may fail"
            )),
        }
        Ok(Env {
            mqfs_bin,
            mqfs_options,
            redis_bin,
            nats_bin,
            work,
            tmpfs,
            notes,
            _sysctls: sysctls,
            _tmpfs_registration: tmpfs_registration,
            _work_registration: work_registration,
        })
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        cleanup::detach(&self.tmpfs);
        if !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .contains(&*self.work.to_string_lossy())
        {
            let _ = std::fs::remove_dir_all(&self.work);
        }
    }
}

fn mount_tmpfs(path: &Path) -> Result<(), String> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: mount(2) with NUL-terminated strings we own.
    let rc = unsafe {
        libc::mount(
            c"tmpfs".as_ptr(),
            c_path.as_ptr(),
            c"tmpfs".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            c"mode=0700".as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(format!("mount tmpfs on {}: {}", path.display(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A loopback port nobody listens on, for a server of the run.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

/// Waits up to 10 s until `ready(addr)`; else fails with the server's log.
fn await_server(name: &str, addr: &str, log: &Path, ready: impl Fn(&str) -> bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ready(addr) {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{name} did not answer on {addr}: {}", log.trim()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Waits up to `wait` until `path` exists (made on another mount of the same tree).
fn appears(path: &Path, wait: Duration) -> Result<(), String> {
    let deadline = Instant::now() + wait;
    while !path.exists() {
        if Instant::now() > deadline {
            return Err(format!("{} did not show within {wait:?}", path.display()));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// "ext4 (/dev/vda)": the file system holding `path`, as findmnt names it.
fn file_system(path: &Path) -> String {
    let out =
        std::process::Command::new("findmnt").args(["-n", "-o", "FSTYPE,SOURCE", "-T"]).arg(path).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    match text.split_whitespace().collect::<Vec<_>>()[..] {
        [fstype, source] => format!("{fstype} ({source})"),
        _ => "a file system findmnt could not name".into(),
    }
}

/// Lifts the soft limit on open files to the hard one (tee into 10,000 FIFOs needs it).
fn raise_open_files() {
    // SAFETY: getrlimit/setrlimit on a struct we own.
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The endpoints of one fresh stream on one system, and what to undo after the run.
pub struct Plumbing {
    pub writer: Endpoint,
    /// May contain `{i}`: reader i's endpoint.
    pub reader: Endpoint,
    /// The read(2) buffer readers use.
    pub read_buf: usize,
    /// The process serving the stream (mqfs, tee, redis-server), if there is one.
    pub server: Option<u32>,
    helper: Option<Proc>,
    remove: Vec<PathBuf>,
}

impl Drop for Plumbing {
    fn drop(&mut self) {
        drop(self.helper.take());
        for path in &self.remove {
            let _ = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
        }
    }
}

/// Byte-stream readers read with this buffer (as cat would), or the message size if larger.
pub const STREAM_BUF: usize = 64 * 1024;

/// The systems of one scenario, started on first use and stopped on drop (mqfs's log, if it
/// said anything, goes to stderr then).
pub struct Lab<'e> {
    pub env: &'e Env,
    tag: String,
    mqfs_options: String,
    /// FUSE worker threads of the ceiling (mqfs's come from its options).
    ceiling_threads: usize,
    mqfs: Option<mqfs::MqfsMount>,
    /// A disk-backed mount, or why there is none.
    mqfs_disk: Option<Result<mqfs::MqfsMount, String>>,
    ceiling: Option<ceiling::CeilingMount>,
    redis: Vec<(redis::Persistence, redis::RedisServer)>,
    nats: Option<nats::NatsServer>,
    /// Mounts A and B of that server (one tree), or why there are none.
    mqfs_nats: Option<Result<(mqfs::MqfsMount, mqfs::MqfsMount), String>>,
    next: usize,
}

impl<'e> Lab<'e> {
    pub fn new(env: &'e Env, tag: &str, mqfs_options: &str) -> Lab<'e> {
        Lab {
            env,
            tag: tag.to_string(),
            mqfs_options: [env.mqfs_options.as_str(), mqfs_options]
                .iter()
                .filter(|o| !o.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(","),
            ceiling_threads: ceiling::default_threads(),
            mqfs: None,
            mqfs_disk: None,
            ceiling: None,
            redis: Vec::new(),
            nats: None,
            mqfs_nats: None,
            next: 0,
        }
    }

    /// A lab whose mqfs and ceiling both run `threads` FUSE worker threads.
    pub fn with_threads(env: &'e Env, tag: &str, threads: usize) -> Lab<'e> {
        let mut lab = Lab::new(env, tag, &format!("threads={threads}"));
        lab.ceiling_threads = threads;
        lab
    }

    pub fn mqfs(&mut self) -> Result<&mqfs::MqfsMount, String> {
        if self.mqfs.is_none() {
            let name = format!("{}-mqfs", self.tag);
            self.mqfs = Some(mqfs::MqfsMount::start(
                &self.env.mqfs_bin,
                &self.env.work,
                &name,
                &self.mqfs_options,
                None,
            )?);
        }
        Ok(self.mqfs.as_ref().expect("just started"))
    }

    /// The disk-backed mount, its store in a fresh directory of the run; tried once.
    pub fn mqfs_disk(&mut self) -> Result<&mqfs::MqfsMount, String> {
        if self.mqfs_disk.is_none() {
            let store = self.env.work.join(format!("{}-store", self.tag));
            let mount = std::fs::create_dir_all(&store)
                .map_err(|e| format!("{}: {e}", store.display()))
                .and_then(|()| {
                    let name = format!("{}-mqfs-disk", self.tag);
                    mqfs::MqfsMount::start(
                        &self.env.mqfs_bin,
                        &self.env.work,
                        &name,
                        &self.mqfs_options,
                        Some(&store),
                    )
                });
            self.mqfs_disk = Some(mount);
        }
        self.mqfs_disk.as_ref().expect("just tried").as_ref().map_err(String::clone)
    }

    fn ceiling(&mut self) -> Result<&ceiling::CeilingMount, String> {
        if self.ceiling.is_none() {
            let name = format!("{}-ceiling", self.tag);
            self.ceiling = Some(ceiling::CeilingMount::start(&self.env.work, &name, self.ceiling_threads)?);
        }
        Ok(self.ceiling.as_ref().expect("just started"))
    }

    pub fn redis(&mut self, persistence: redis::Persistence) -> Result<&redis::RedisServer, String> {
        let index = match self.redis.iter().position(|(p, _)| *p == persistence) {
            Some(index) => index,
            None => {
                let bin = self.env.redis_bin.clone()?;
                let dir = self.env.work.join(format!("{}-redis-{}", self.tag, self.redis.len()));
                std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                self.redis.push((persistence, redis::RedisServer::start(&bin, &dir, persistence)?));
                self.redis.len() - 1
            }
        };
        Ok(&self.redis[index].1)
    }

    fn nats(&mut self) -> Result<&nats::NatsServer, String> {
        if self.nats.is_none() {
            let bin = self.env.nats_bin.clone()?;
            let dir = self.env.work.join(format!("{}-nats", self.tag));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            self.nats = Some(nats::NatsServer::start(&bin, &dir)?);
        }
        Ok(self.nats.as_ref().expect("just started"))
    }

    /// Mounts A and B of the lab's nats-server, both `-o prefix=bench_TAG`: one tree. Tried
    /// once; an mqfs that takes `nats://` for a store directory has no NATS mount: "not measured".
    fn mqfs_nats(&mut self) -> Result<&(mqfs::MqfsMount, mqfs::MqfsMount), String> {
        if self.mqfs_nats.is_none() {
            let mounts = self.nats().map(|server| format!("nats://{}", server.addr)).and_then(|url| {
                let options = [self.mqfs_options.clone(), format!("prefix=bench_{}", self.tag)]
                    .into_iter()
                    .filter(|o| !o.is_empty())
                    .collect::<Vec<_>>()
                    .join(",");
                let mount = |side: &str| {
                    let name = format!("{}-mqfs-nats-{side}", self.tag);
                    mqfs::MqfsMount::start_nats(&self.env.mqfs_bin, &self.env.work, &name, &options, &url)
                };
                Ok((mount("a")?, mount("b")?))
            });
            self.mqfs_nats = Some(mounts);
        }
        self.mqfs_nats.as_ref().expect("just tried").as_ref().map_err(String::clone)
    }

    /// A fresh stream of a `deliver one` group (a queue: each message to one reader) on the
    /// in-memory mqfs. An mqfs whose ctl refuses `deliver one` has no queues: "not measured".
    pub fn plumb_queue(&mut self, size: usize) -> Result<Plumbing, String> {
        self.next += 1;
        let name = format!("q{}", self.next);
        let mqfs = self.mqfs()?;
        let dir = mqfs.group("queue", "deliver one\n").map_err(|e| {
            format!("not measured: this mqfs has no work queues (its ctl refused `deliver one`: {e})")
        })?;
        let stream = dir.join(&name);
        std::fs::File::create(&stream).map_err(|e| format!("{}: {e}", stream.display()))?;
        let endpoint = Endpoint::File(stream.clone());
        Ok(Plumbing {
            writer: endpoint.clone(),
            reader: endpoint,
            read_buf: size,
            server: Some(mqfs.pid()),
            helper: None,
            remove: vec![stream],
        })
    }

    /// A fresh stream on `system` for `readers` readers of `size`-byte messages.
    pub fn plumb(&mut self, system: System, readers: usize, size: usize) -> Result<Plumbing, String> {
        self.next += 1;
        let name = format!("s{}", self.next);
        let stream_buf = STREAM_BUF.max(size);
        let plain = |writer: Endpoint, reader: Endpoint, read_buf, server, remove| Plumbing {
            writer,
            reader,
            read_buf,
            server,
            helper: None,
            remove,
        };
        Ok(match system {
            System::Ceiling => {
                let file = self.ceiling()?.file();
                plain(Endpoint::File(file.clone()), Endpoint::File(file), size, None, vec![])
            }
            System::Mqfs | System::MqfsCoalesce | System::MqfsDisk | System::MqfsAlways => {
                // Disk groups keep their history (`replay all`), as the durable peers do.
                let (group, ctl, read_buf) = match system {
                    System::Mqfs => ("message", "", size),
                    System::MqfsCoalesce => ("coalesce", "data coalesce\n", stream_buf),
                    System::MqfsDisk => ("never", "sync never\nreplay all\n", size),
                    _ => ("always", "sync always\nreplay all\n", size),
                };
                let mqfs = match system {
                    System::MqfsDisk | System::MqfsAlways => self.mqfs_disk()?,
                    _ => self.mqfs()?,
                };
                let dir = mqfs.group(group, ctl)?;
                let stream = dir.join(&name);
                std::fs::File::create(&stream).map_err(|e| format!("{}: {e}", stream.display()))?;
                let pid = mqfs.pid();
                plain(
                    Endpoint::File(stream.clone()),
                    Endpoint::File(stream.clone()),
                    read_buf,
                    Some(pid),
                    vec![stream],
                )
            }
            System::Fifo => {
                if readers != 1 {
                    return Err("a FIFO has one reader".into());
                }
                let path = self.env.work.join(format!("{}-{name}.fifo", self.tag));
                fifo::make(&path)?;
                plain(
                    Endpoint::Fifo(path.clone()),
                    Endpoint::Fifo(path.clone()),
                    stream_buf,
                    None,
                    vec![path],
                )
            }
            System::FifoTee => {
                let base = self.env.work.join(format!("{}-{name}", self.tag));
                let input = base.with_extension("in");
                fifo::make(&input)?;
                let mut remove = vec![input.clone()];
                let outputs: Vec<PathBuf> =
                    (0..readers).map(|i| base.with_extension(format!("out{i}"))).collect();
                for output in &outputs {
                    fifo::make(output)?;
                    remove.push(output.clone());
                }
                let tee = fifo::tee(&input, &outputs)?;
                let template = base.with_extension("out{i}");
                Plumbing {
                    writer: Endpoint::Fifo(input),
                    reader: Endpoint::Fifo(template),
                    read_buf: stream_buf,
                    server: Some(tee.pid()),
                    helper: Some(tee),
                    remove,
                }
            }
            System::Tail => {
                let path = self.env.tmpfs.join(format!("{}-{name}.log", self.tag));
                std::fs::File::create(&path).map_err(|e| format!("{}: {e}", path.display()))?;
                plain(
                    Endpoint::Tail(path.clone()),
                    Endpoint::Tail(path.clone()),
                    stream_buf,
                    None,
                    vec![path],
                )
            }
            System::Msgfs => {
                let dir = self.env.tmpfs.join(format!("{}-{name}.d", self.tag));
                std::fs::create_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
                plain(Endpoint::Dir(dir.clone()), Endpoint::Dir(dir.clone()), size, None, vec![dir])
            }
            System::Redis | System::RedisAlways | System::RedisEverysec => {
                let server = self.redis(match system {
                    System::Redis => redis::Persistence::None,
                    System::RedisAlways => redis::Persistence::AofAlways,
                    _ => redis::Persistence::AofEverysec,
                })?;
                let addr = server.addr.clone();
                let endpoint = match system {
                    System::Redis => Endpoint::Redis { addr, channel: name },
                    _ => Endpoint::RedisStream { addr, key: name },
                };
                let pid = server.pid();
                plain(endpoint.clone(), endpoint, size, Some(pid), vec![])
            }
            System::Jetstream | System::NatsCore => {
                let server = self.nats()?;
                let addr = server.addr.clone();
                let endpoint = if system == System::Jetstream {
                    server.create_stream(&name)?;
                    Endpoint::Jetstream { addr, subject: name }
                } else {
                    Endpoint::Nats { addr, subject: name }
                };
                let pid = server.pid();
                plain(endpoint.clone(), endpoint, size, Some(pid), vec![])
            }
            System::MqfsNats => {
                let (a, b) = self.mqfs_nats()?;
                let stream = a.group("nats", "")?.join(&name);
                std::fs::File::create(&stream).map_err(|e| format!("{}: {e}", stream.display()))?;
                let there = b.root().join("nats").join(&name);
                appears(&there, Duration::from_secs(10))?;
                Plumbing {
                    writer: Endpoint::File(stream.clone()),
                    reader: Endpoint::File(there),
                    read_buf: size,
                    server: Some(b.pid()),
                    helper: None,
                    remove: vec![stream],
                }
            }
        })
    }
}

impl Drop for Lab<'_> {
    fn drop(&mut self) {
        let (a, b) = match self.mqfs_nats.take() {
            Some(Ok((a, b))) => (Some(a), Some(b)),
            _ => (None, None),
        };
        // Before the lab's fields drop: the NATS mounts unmount while their server still runs.
        for mqfs in [self.mqfs.take(), self.mqfs_disk.take().and_then(Result::ok), a, b].into_iter().flatten()
        {
            mqfs.stop_and_show_log(&self.tag);
        }
    }
}
