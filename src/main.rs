//! The `mqfs` command: parse the command line, mount, then serve in the background (or in
//! the foreground with -f) until unmounted or told to stop.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use fuser::{Config, MountOption, Session, SessionACL};

use mqfs::engine::{Caller, Engine};
use mqfs::fuse::MqFs;
use mqfs::logger;
use mqfs::options::Settings;

const EXAMPLES: &str = "\
Examples:
  mqfs /n/mq                          mount in the background
  mqfs none /n/mq -f -o replay=all    stay in the foreground; new groups replay history
  mount -t fuse.mqfs none /n/mq       the same through mount(8)
  umount /n/mq                        unmount; the daemon exits

Options (-o, comma-separated):
  data=message|coalesce   replay=off|last|all   depth=N|SIZE   (the root group's ctl settings)
  memory=SIZE             ceiling on retained history (default: a quarter of RAM)
  max_message=SIZE        largest message one write may publish (default 64M)
  threads=N               FUSE worker threads (default 4)
  allow_other, allow_root, ro, uid=N, gid=N, fsname=NAME, debug";

#[derive(Parser)]
#[command(name = "mqfs", version, about = "Message streams as files: mount an mqfs file system.")]
#[command(after_help = EXAMPLES)]
struct Cli {
    /// An optional source (ignored: the store is in memory), then the mount point.
    #[arg(value_name = "[SOURCE] MOUNTPOINT", num_args = 1..=2, required = true)]
    paths: Vec<PathBuf>,
    /// Stay in the foreground and log to stderr.
    #[arg(short = 'f')]
    foreground: bool,
    /// Log debugging detail (implies -f).
    #[arg(short = 'd')]
    debug: bool,
    /// Mount options, comma-separated.
    #[arg(short = 'o', value_name = "OPT[,OPT...]")]
    options: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mqfs: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let mut settings = Settings::default();
    for list in &cli.options {
        settings.apply(list)?;
    }
    settings.debug |= cli.debug;
    let foreground = cli.foreground || settings.debug;
    logger::init(settings.debug);
    let mountpoint = cli.paths.last().expect("clap requires a mount point");
    let mountpoint = check_mountpoint(mountpoint)?;

    // SAFETY: getuid and getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let owner = Caller { uid: settings.uid.unwrap_or(uid), gid: settings.gid.unwrap_or(gid) };
    let engine = Arc::new(Engine::new(settings.root, owner, settings.limits));
    let fs = MqFs::new(engine);
    let interrupts = fs.interrupts();
    let session = Session::new(fs, &mountpoint, &fuse_config(&settings))
        .map_err(|e| format!("cannot mount on {}: {e}", mountpoint.display()))?;

    if !foreground {
        daemonize()?;
        logger::to_syslog();
    }
    // Threads start only now, after the fork: they would not survive it.
    block_stop_signals();
    interrupts.spawn_watcher().map_err(|e| format!("cannot start: {e}"))?;
    spawn_stop_handler(mountpoint.clone()).map_err(|e| format!("cannot start: {e}"))?;
    log::info!("serving {}", mountpoint.display());
    let result = session.run();
    log::info!("unmounted {}", mountpoint.display());
    // Exit without unwinding: the session was unmounted already.
    std::process::exit(match result {
        Ok(()) => 0,
        Err(e) => {
            log::error!("session ended: {e}");
            1
        }
    })
}

fn fuse_config(settings: &Settings) -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName(settings.fsname.clone()),
        MountOption::CUSTOM("subtype=mqfs".into()),
        MountOption::DefaultPermissions,
    ];
    if settings.read_only {
        config.mount_options.push(MountOption::RO);
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

/// The mount point must be an existing directory that nothing is mounted on yet.
fn check_mountpoint(path: &Path) -> Result<PathBuf, String> {
    let shown = path.display();
    let path = path.canonicalize().map_err(|e| format!("mount point {shown}: {e}"))?;
    let meta = std::fs::metadata(&path).map_err(|e| format!("mount point {shown}: {e}"))?;
    if !meta.is_dir() {
        return Err(format!("mount point {shown}: Not a directory"));
    }
    if let Some(parent) = path.parent() {
        let parent_meta = std::fs::metadata(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        if parent_meta.dev() != meta.dev() {
            return Err(format!("mount point {shown} is busy: something is mounted there already"));
        }
    }
    if !Path::new("/dev/fuse").exists() {
        return Err("/dev/fuse is missing: load the fuse module (modprobe fuse)".into());
    }
    Ok(path)
}

/// Leaves the parent (which exits 0: the mount is ready) and serves from a detached child.
fn daemonize() -> Result<(), String> {
    // SAFETY: no other thread exists yet, so the child starts in a consistent state.
    match unsafe { libc::fork() } {
        -1 => return Err(format!("fork: {}", std::io::Error::last_os_error())),
        0 => {}
        // The parent must not drop the session: that would unmount it.
        _ => std::process::exit(0),
    }
    // SAFETY: plain system calls on descriptors this process owns.
    unsafe {
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
            if null > 2 {
                libc::close(null);
            }
        }
    }
    let _ = std::env::set_current_dir("/");
    Ok(())
}

const STOP_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

fn stop_signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in STOP_SIGNALS {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Blocks the stop signals in this thread and so in every thread started after it; the
/// stop handler takes them with sigwait.
fn block_stop_signals() {
    let set = stop_signal_set();
    // SAFETY: set is initialised; a null old-set pointer is allowed.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// On SIGINT, SIGTERM or SIGHUP: detach the mount and exit. Open files then fail with
/// ENOTCONN and blocked readers return.
fn spawn_stop_handler(mountpoint: PathBuf) -> std::io::Result<()> {
    std::thread::Builder::new().name("mqfs-stop".into()).spawn(move || {
        let set = stop_signal_set();
        let mut signal = 0;
        // SAFETY: set is initialised and blocked in every thread.
        unsafe { libc::sigwait(&set, &mut signal) };
        log::info!("signal {signal}: unmounting {}", mountpoint.display());
        if let Ok(path) = std::ffi::CString::new(mountpoint.as_os_str().as_encoded_bytes()) {
            // SAFETY: path is a valid NUL-terminated string.
            if unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) } != 0 {
                log::warn!("unmount {}: {}", mountpoint.display(), std::io::Error::last_os_error());
            }
        }
        std::process::exit(0);
    })?;
    Ok(())
}
