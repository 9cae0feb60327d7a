//! The `mqfs` command: parse the command line (or a mount helper's arguments), mount, then
//! serve in the background (or in the foreground with -f) until unmounted or told to stop.
//! As `mount.fuse.mqfs` it only checks, then runs mount.fuse3, which runs `mqfs`.
//!
//! `cli` parses the command line, `options` and `config_file` turn `-o` and the TOML file
//! into `Settings`, `store` reads SOURCE and opens the store it names, `daemon` detaches,
//! stops on signals and watches the mount table; `run` below is the sequence: check, open
//! the store and build the engine, mount, detach, start, serve.

mod cli;
mod config_file;
mod daemon;
mod options;
mod store;

use std::ffi::OsString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use fuser::{Config, MountOption, Session, SessionACL};
use nix::unistd::{getgid, getuid};

use mqfs::engine::{Caller, Engine, Limits, delivery};
use mqfs::fuse::MqFs;
use mqfs::logger;
use mqfs::nats::Nats;
use mqfs::storage::memory::MemoryStore;
use mqfs::storage::{Placement, Store};
use mqfs::tools::sys::strerror;

use cli::{Invocation, Parsed};
use options::Settings;
use store::Source;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let result = if args.first().is_some_and(|a| cli::is_fuse3_front(a)) {
        cli::parse_helper(&args[1..]).map_err(Failure::from).and_then(check_then_mount_fuse3)
    } else if args.first().is_some_and(|a| cli::is_helper(a)) {
        cli::parse_helper(&args[1..]).map_err(Failure::from).and_then(run)
    } else {
        match cli::parse(args) {
            Parsed::Mount(invocation) => run(invocation),
            Parsed::Completions(script) => {
                print!("{script}");
                return ExitCode::SUCCESS;
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure { message, code }) => {
            eprintln!("mqfs: {message}");
            ExitCode::from(code)
        }
    }
}

/// Why mqfs stops before serving, and its exit status: 2 for a command line that cannot
/// be right (a bad SOURCE), 1 for the rest.
struct Failure {
    message: String,
    code: u8,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure { message, code: 1 }
    }
}

impl From<&str> for Failure {
    fn from(message: &str) -> Failure {
        Failure::from(message.to_string())
    }
}

/// Where the file system goes.
enum Target {
    /// mqfs mounts it on this directory (canonical path).
    Dir(PathBuf),
    /// mount.fuse3 mounted it already (`-o drop_privileges`) and passed `/dev/fuse` open
    /// as this descriptor.
    Fd(OwnedFd),
}

/// Reads the settings: the config file first (`config=`), then every -o option over it.
fn settings(invocation: &Invocation, source: &Source) -> Result<Settings, String> {
    let options = options::split(&invocation.options);
    let mut settings = Settings::default();
    if let Source::Disk(_) = source {
        // A disk mount's groups keep their history on disk unless told otherwise.
        settings.root.store = Placement::Disk;
    }
    if let Some(path) = options::config_path(&options) {
        config_file::load(&path, &mut settings)?;
    }
    let mut ignored = Vec::new();
    for option in options {
        if !settings.apply_one(option)? {
            if !invocation.sloppy {
                return Err(format!("unknown mount option {option:?}"));
            }
            ignored.push(option);
        }
    }
    if !ignored.is_empty() {
        eprintln!("mqfs: warning: ignoring unknown mount options (sloppy mount): {}", ignored.join(","));
    }
    settings.debug |= invocation.debug;
    Ok(settings)
}

/// What a mount was checked to need, before anything is mounted.
struct Checked {
    settings: Settings,
    limits: Limits,
    source: Source,
    target: Target,
    log: Option<std::fs::File>,
}

/// mount.fuse3 mounts with only the options it is given: without default_permissions the
/// kernel would check no permission at all.
const DROP_PRIVILEGES_NEEDS: &str = "with drop_privileges, mount.fuse3 mounts for mqfs: add \
                                     default_permissions to the options (mqfs relies on the \
                                     kernel's permission checks)";

/// Everything mqfs checks before it mounts: the options (and config file), the log file, the
/// mount point; enters the mount namespace of `-N`.
fn check(invocation: &Invocation) -> Result<Checked, Failure> {
    let source =
        store::source(invocation.source.as_deref()).map_err(|message| Failure { message, code: 2 })?;
    let settings = settings(invocation, &source)?;
    let source = store::configured(source, &settings)?;
    let limits = settings.limits()?;
    logger::init(settings.debug);
    if let Some(ns) = &invocation.namespace {
        daemon::enter_namespace(ns)?;
    }
    let target = match fd_target(&invocation.mountpoint)? {
        Some(_) if !settings.default_permissions => {
            return Err(format!("{DROP_PRIVILEGES_NEEDS}; unmount the unserved mount first").into());
        }
        Some(fd) => Target::Fd(fd),
        None => Target::Dir(check_mountpoint(&invocation.mountpoint)?),
    };
    let log = match &settings.log {
        Some(path) => Some(logger::open_file(path).map_err(|e| format!("log file {}: {e}", path.display()))?),
        None => None,
    };
    Ok(Checked { settings, limits, source, target, log })
}

/// The options only mount.fuse3 handles (it runs the file system without privileges, or as
/// another user): mqfs never sees them when mount.fuse3 runs it.
fn is_mount_fuse3_option(option: &str) -> bool {
    option == "drop_privileges" || option.starts_with("setuid=")
}

/// As `mount.fuse.mqfs`, which mount(8) runs for `mount -t fuse.mqfs`: checks everything
/// mqfs checks, then hands the mount over to mount.fuse3 unchanged. With `drop_privileges`
/// mount.fuse3 mounts before it runs mqfs, and an error of mqfs then would leave that mount
/// unserved; checked first, nothing is mounted.
fn check_then_mount_fuse3(invocation: Invocation) -> Result<(), Failure> {
    let options = options::split(&invocation.options);
    let (fuse3, mqfs): (Vec<&str>, Vec<&str>) = options.into_iter().partition(|o| is_mount_fuse3_option(o));
    let checked = check(&Invocation { options: vec![mqfs.join(",")], ..invocation.clone() })?;
    if fuse3.contains(&"drop_privileges") && !checked.settings.default_permissions {
        return Err(DROP_PRIVILEGES_NEEDS.into());
    }
    // The store is not opened here but by the mqfs mount.fuse3 runs: a lock taken here would
    // pass to mount.fuse3 and refuse that mqfs.
    if invocation.fake {
        return Ok(());
    }
    // What a sloppy mount ignored stays out: mqfs, run by mount.fuse3, would refuse it.
    let known = |o: &&str| !invocation.sloppy || Settings::default().apply_one(o) != Ok(false);
    let passed: Vec<&str> = mqfs.into_iter().filter(known).chain(fuse3).collect();
    let helper = ["/sbin/mount.fuse3", "/usr/sbin/mount.fuse3", "/sbin/mount.fuse", "/usr/sbin/mount.fuse"]
        .into_iter()
        .find(|path| Path::new(path).exists())
        .ok_or("mount -t fuse.mqfs needs mount.fuse3 (Debian package fuse3); mount -t mqfs does not")?;
    let mut command = std::process::Command::new(helper);
    command.arg(invocation.source.as_deref().unwrap_or("none")).arg(&invocation.mountpoint);
    command.args(["-t", "fuse.mqfs"]);
    if !passed.is_empty() {
        command.arg("-o").arg(passed.join(","));
    }
    Err(format!("{helper}: {}", command.exec()).into())
}

/// Mounts and serves: check, build the engine, mount, detach, start the threads, serve.
fn run(invocation: Invocation) -> Result<(), Failure> {
    let Checked { settings, limits, source, target, log } = check(&invocation)?;
    if invocation.fake {
        // mount -f: everything is checked, nothing is mounted.
        return Ok(());
    }
    if let Some(file) = log {
        logger::to_file(file);
    }
    let (fs, start_engine) = build_engine(&settings, limits, &source)?;
    let engine = fs.engine();
    daemon::before_exit(move || engine.close());
    let interrupts = fs.interrupts();
    let start_threads = || {
        interrupts.start().map_err(|e| format!("cannot start: {e}"))?;
        start_engine()
    };
    let mounted = mount(fs, target, &settings, &invocation)?;
    let reporter = if invocation.foreground { None } else { Some(daemon::detach(mounted.dir.as_deref())?) };
    if reporter.is_some() && settings.log.is_none() {
        logger::to_syslog();
    }
    // From here on, an error must undo the mount and reach the parent (in the background).
    if let Err(message) = start(&mounted, start_threads) {
        if let Some(dir) = &mounted.dir {
            daemon::detach_mount(dir);
        }
        match reporter {
            Some(reporter) => {
                reporter.failed(&message);
                daemon::exit(1);
            }
            None => return Err(message.into()),
        }
    }
    serve(mounted, reporter)
}

/// What starts an engine's own threads once the daemon forked (a disk store's syncer, a
/// NATS-backed mount's connection and the tree it shares).
type StartEngine = Box<dyn FnOnce() -> Result<(), String>>;

/// The engine the settings describe on the store `source` names (its saved namespace
/// restored), behind the FUSE glue.
fn build_engine(settings: &Settings, limits: Limits, source: &Source) -> Result<(MqFs, StartEngine), String> {
    let (uid, gid) = (getuid().as_raw(), getgid().as_raw());
    let owner = Caller { uid: settings.uid.unwrap_or(uid), gid: settings.gid.unwrap_or(gid) };
    if let Source::Nats(options) = source {
        let nats = Arc::new(Nats::new(options.clone()));
        let engine = Arc::new(
            Engine::shared(settings.root, owner, limits, nats.clone())
                .map_err(|e| format!("cannot open the root's order log: {e}"))?,
        );
        let shared = engine.clone();
        return Ok((MqFs::new(engine), Box::new(move || nats.start(&shared))));
    }
    let (engine, store) = match store::open(source)? {
        Some(store::Opened { store, catalogue }) => {
            (Engine::with_catalogue(settings.root, owner, limits, store.clone(), catalogue)?, store)
        }
        None => {
            let store: Arc<dyn Store> = Arc::new(MemoryStore);
            let engine = Engine::new(settings.root, owner, limits, store.clone())
                .map_err(|e| format!("cannot open the root's order log: {e}"))?;
            (engine, store)
        }
    };
    let engine = Arc::new(engine);
    engine.set_presets(settings.presets.clone());
    Ok((MqFs::new(engine), Box::new(move || store.start().map_err(|e| format!("cannot start: {e}")))))
}

/// A file system mounted (or handed over by mount.fuse3), not served yet.
struct Mounted {
    session: Session<MqFs>,
    /// The mount point, if mqfs mounted it itself (and so detaches it on a stop).
    dir: Option<PathBuf>,
    /// How the log names it.
    shown: String,
}

/// Mounts `fs` on the target (or takes over the mount behind the descriptor).
fn mount(fs: MqFs, target: Target, settings: &Settings, invocation: &Invocation) -> Result<Mounted, String> {
    let fsname = settings.fsname.clone().or(invocation.source.clone()).unwrap_or_else(|| "mqfs".into());
    let config = fuse_config(settings, fsname);
    let (session, dir) = match target {
        Target::Dir(dir) => {
            let session = Session::new(fs, &dir, &config)
                .map_err(|e| format!("cannot mount on {}: {e}", dir.display()))?;
            (session, Some(dir))
        }
        Target::Fd(fd) => {
            let session = Session::from_fd(fs, fd, config.acl, config)
                .map_err(|e| format!("cannot serve {}: {e}", invocation.mountpoint.display()))?;
            (session, None)
        }
    };
    let shown = dir.as_deref().unwrap_or(&invocation.mountpoint).display().to_string();
    Ok(Mounted { session, dir, shown })
}

/// Starts the daemon's threads — only now, after the fork: they would not survive it. The
/// stop signals are blocked first, so that only the stop handler takes them.
fn start(mounted: &Mounted, start_threads: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    daemon::block_stop_signals();
    let cannot = |e: std::io::Error| format!("cannot start: {e}");
    start_threads()?;
    delivery::start();
    daemon::spawn_stop_handler(mounted.dir.clone()).map_err(cannot)?;
    if let Some(dir) = &mounted.dir {
        let dev = daemon::mount_device(dir).ok_or(format!("{} is not in the mount table", dir.display()))?;
        daemon::spawn_mount_watcher(dev, dir.clone()).map_err(cannot)?;
    }
    Ok(())
}

/// Serves until the file system is unmounted, then exits (without unwinding: the session was
/// unmounted already).
fn serve(mounted: Mounted, reporter: Option<daemon::Reporter>) -> ! {
    let Mounted { session, shown, .. } = mounted;
    log::info!("serving {shown}");
    daemon::notify("READY=1");
    if let Some(reporter) = reporter {
        reporter.ready();
    }
    let result = session.run();
    log::info!("unmounted {shown}; exiting");
    daemon::exit(match result {
        Ok(()) => 0,
        Err(e) => {
            log::error!("session ended: {e}");
            1
        }
    })
}

fn fuse_config(settings: &Settings, fsname: String) -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(fsname),
        MountOption::CUSTOM("subtype=mqfs".into()),
        MountOption::DefaultPermissions,
    ];
    if settings.read_only {
        config.mount_options.push(MountOption::RO);
    }
    if settings.noexec {
        config.mount_options.push(MountOption::NoExec);
    }
    config.acl = if settings.allow_other {
        SessionACL::All
    } else if settings.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(settings.threads);
    config
}

/// `/dev/fd/N` naming an open /dev/fuse: what mount.fuse3 passes with `drop_privileges`.
fn fd_target(path: &Path) -> Result<Option<OwnedFd>, String> {
    let Some(n) = path.to_str().and_then(|p| p.strip_prefix("/dev/fd/")) else {
        return Ok(None);
    };
    let fd: libc::c_int = n.parse().map_err(|_| format!("{}: not a descriptor", path.display()))?;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let fuse_dev = libc::makedev(10, 229);
    if !meta.file_type().is_char_device() || meta.rdev() != fuse_dev {
        return Err(format!("{} is not /dev/fuse", path.display()));
    }
    // SAFETY: the descriptor is open (metadata succeeded), was handed to us, and nothing
    // else in this process owns it.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The mount point must be an existing directory that nothing is mounted on yet. mqfs creates
/// none (mount(8) does not either): a missing one gets mount(8)'s words and the remedy.
fn check_mountpoint(path: &Path) -> Result<PathBuf, String> {
    let shown = path.display();
    let failed = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => {
            format!("mount point {shown} does not exist (create it with mkdir -p)")
        }
        _ => format!("mount point {shown}: {}", strerror(&e)),
    };
    let path = path.canonicalize().map_err(failed)?;
    let meta = std::fs::metadata(&path).map_err(failed)?;
    if !meta.is_dir() {
        return Err(format!("mount point {shown}: Not a directory"));
    }
    let parent_dev = path.parent().and_then(|p| std::fs::metadata(p).ok()).map(|m| m.dev());
    if parent_dev != Some(meta.dev()) || daemon::mount_device(&path).is_some() {
        return Err(format!("mount point {shown} is busy: something is mounted there already"));
    }
    match std::fs::metadata("/dev/fuse") {
        Ok(meta) if meta.file_type().is_char_device() => {}
        Ok(_) => return Err("/dev/fuse is not the FUSE device".into()),
        Err(_) => return Err("/dev/fuse is missing: load the fuse module (modprobe fuse)".into()),
    }
    Ok(path)
}
