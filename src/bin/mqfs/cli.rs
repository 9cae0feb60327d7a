//! The command line, in its two forms:
//!
//! - `mqfs [SOURCE] MOUNTPOINT [-f] [-d] [-o OPT,...]`, also what mount.fuse3 runs for
//!   `mount -t fuse.mqfs` (`mqfs SOURCE DIR -o OPTS`);
//! - as `mount.mqfs` or `mount.fuse.mqfs` (links to the binary), what mount(8) runs for
//!   `mount -t mqfs`: `mount.mqfs SOURCE DIR [-sfnvrw] [-N NS] [-o OPTS] [-t TYPE]`, where
//!   `-f` means *fake* (check everything, mount nothing) and `-s` *sloppy* (ignore unknown
//!   options).

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, ValueHint};
use mqfs::engine::config::SETTINGS;

const EXAMPLES: &str = "\
Examples:
  mqfs /n/mq                          mount in the background (logs go to syslog)
  mqfs none /n/mq -f -o replay=all    stay in the foreground, logging to stderr
  mqfs /var/lib/mqfs /n/mq            a store directory: the namespace outlives the mount
  mqfs nats://10.0.0.1:4222 /n/mq     a tree shared with every host mounting these NATS
                                      JetStream servers (docs/nats.md)
  mqfs /n/mq -o config=/etc/mqfs.toml,log=/var/log/mqfs.log
  mount -t fuse.mqfs none /n/mq -o allow_other,replay=all
                                      the same through mount(8); fstab type fuse.mqfs
  umount /n/mq                        unmount; the daemon exits

Options (-o, comma-separated; they override the config file):
{settings}
                          (the root group's ctl settings; new groups copy their parent's)
  memory=SIZE             ceiling on retained history (default: a quarter of RAM)
  max_message=SIZE        largest message one write may publish (default 64M, at most 4G - 1)
  threads=N               FUSE worker threads (default: one per core, at least 2)
  config=FILE             read limits, defaults and presets from a TOML file
  log=FILE                log there instead of syslog (or stderr with -f)
  debug                   log debugging detail (also RUST_LOG=debug)
  prefix=NAME             nats:// only: what its streams are named after (default mqfs)
  nats_timeout=DURATION   nats:// only: how long a write waits for JetStream (default 10s)
  replicas=N              nats:// only: servers keeping each stream (default 3 if 3+ named)
  allow_other, allow_root, default_permissions, ro, noexec, uid=N, gid=N, fsname=NAME
mount(8) options that mean nothing to mqfs (defaults, rw, nofail, _netdev, noauto, x-*, ...)
are ignored; any other option is an error naming it. See mqfs(1) and mqfs(5).";

#[derive(Parser, Debug)]
#[command(name = "mqfs", version, about = "Message streams as files: mount an mqfs file system.")]
#[command(
    override_usage = "mqfs [SOURCE] MOUNTPOINT [-f] [-d] [-o OPT[,OPT...]]\n       mqfs --completions SHELL"
)]
pub struct Cli {
    /// An optional source, `none` (in memory), a store directory or `nats://HOST:PORT[,...]`,
    /// then the mount point.
    #[arg(
        value_name = "[SOURCE] MOUNTPOINT",
        num_args = 1..=2,
        required_unless_present = "completions",
        value_hint = ValueHint::DirPath
    )]
    paths: Vec<PathBuf>,
    /// Stay in the foreground and log to stderr.
    #[arg(short = 'f')]
    foreground: bool,
    /// Log debugging detail and stay in the foreground (-o debug only logs more).
    #[arg(short = 'd')]
    debug: bool,
    /// Mount options, comma-separated (may be repeated).
    #[arg(short = 'o', value_name = "OPT[,OPT...]")]
    options: Vec<String>,
    /// Print a completion script for SHELL (bash, zsh, fish, ...) and exit.
    #[arg(long, value_name = "SHELL")]
    completions: Option<clap_complete::Shell>,
}

/// What to do, whichever form the command line took.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Invocation {
    pub source: Option<String>,
    /// A directory, or `/dev/fd/N` when mount.fuse3 mounted already (`drop_privileges`).
    pub mountpoint: PathBuf,
    pub foreground: bool,
    pub debug: bool,
    pub options: Vec<String>,
    /// mount(8)'s -s: ignore options mqfs does not know.
    pub sloppy: bool,
    /// mount(8)'s -f: check everything but mount nothing.
    pub fake: bool,
    /// mount(8)'s -N: the mount namespace to mount in (a pid or a path).
    pub namespace: Option<String>,
}

/// Whether the program was called as mqfs's mount(8) helper, `mount.mqfs`.
pub fn is_helper(argv0: &std::ffi::OsStr) -> bool {
    std::path::Path::new(argv0).file_name().unwrap_or_default() == "mount.mqfs"
}

/// Whether the program was called as `mount.fuse.mqfs`, what mount(8) runs for
/// `mount -t fuse.mqfs`: it checks, then runs mount.fuse3.
pub fn is_fuse3_front(argv0: &std::ffi::OsStr) -> bool {
    std::path::Path::new(argv0).file_name().unwrap_or_default() == "mount.fuse.mqfs"
}

pub enum Parsed {
    Mount(Invocation),
    /// Print this completion script and exit.
    Completions(String),
}

/// Parses `mqfs ...` (clap prints help, version and usage errors itself and exits).
/// The clap command, its help closing with the examples and every option, the ctl
/// settings' spelled as `config::SETTINGS` spells them.
fn command() -> clap::Command {
    let settings: Vec<String> =
        SETTINGS.iter().map(|setting| format!("{}={}", setting.name, setting.usage())).collect();
    let lines: Vec<String> = settings.chunks(3).map(|row| format!("  {}", row.join("   "))).collect();
    Cli::command().after_help(EXAMPLES.replace("{settings}", &lines.join("\n")))
}

pub fn parse(args: Vec<OsString>) -> Parsed {
    let matches = command().get_matches_from(args);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(shell) = cli.completions {
        return Parsed::Completions(completions(shell));
    }
    let mut paths = cli.paths.into_iter();
    let (source, mountpoint) = match (paths.next(), paths.next()) {
        (Some(source), Some(mountpoint)) => (Some(source.to_string_lossy().into_owned()), mountpoint),
        (Some(mountpoint), None) => (None, mountpoint),
        _ => unreachable!("clap requires a mount point"),
    };
    Parsed::Mount(Invocation {
        source,
        mountpoint,
        foreground: cli.foreground || cli.debug,
        debug: cli.debug,
        options: cli.options,
        ..Invocation::default()
    })
}

/// The completion script for `shell`, generated from the clap definition.
pub fn completions(shell: clap_complete::Shell) -> String {
    mqfs::completions::script(shell, command())
}

/// Parses a mount helper's arguments (after argv[0]):
/// `SOURCE DIR [-sfnvrw] [-N NS] [-o OPTS] [-t TYPE]`.
pub fn parse_helper(args: &[OsString]) -> Result<Invocation, String> {
    const USAGE: &str = "usage: mount.mqfs SOURCE DIR [-sfnvrw] [-N NAMESPACE] [-o OPT[,OPT...]]";
    let mut inv = Invocation::default();
    let mut positional = Vec::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        let mut value = |flag: char| {
            args.next()
                .map(|v| v.to_string_lossy().into_owned())
                .ok_or(format!("-{flag} needs a value; {USAGE}"))
        };
        match text.strip_prefix('-') {
            Some("o") => inv.options.push(value('o')?),
            Some("N") => inv.namespace = Some(value('N')?),
            Some("t") => {
                let fstype = value('t')?;
                if !matches!(fstype.as_str(), "mqfs" | "fuse.mqfs") {
                    return Err(format!("file system type {fstype:?} is not mqfs"));
                }
            }
            Some(flags) if !flags.is_empty() => {
                for flag in flags.chars() {
                    match flag {
                        's' => inv.sloppy = true,
                        'f' => inv.fake = true,
                        'r' => inv.options.push("ro".into()),
                        // No mtab to skip, nothing more to say, read-write is the default.
                        'n' | 'v' | 'w' => {}
                        _ => return Err(format!("unknown flag -{flag}; {USAGE}")),
                    }
                }
            }
            _ => positional.push(arg.clone()),
        }
    }
    match <[OsString; 2]>::try_from(positional) {
        Ok([source, dir]) => {
            inv.source = Some(source.to_string_lossy().into_owned());
            inv.mountpoint = dir.into();
        }
        Err(_) => return Err(USAGE.into()),
    }
    Ok(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn mount(args: &[&str]) -> Invocation {
        match parse(os(args)) {
            Parsed::Mount(inv) => inv,
            Parsed::Completions(_) => panic!("not a mount"),
        }
    }

    #[test]
    fn the_command_takes_an_optional_source() {
        let inv = mount(&["mqfs", "/n/mq"]);
        assert_eq!((inv.source, inv.mountpoint), (None, PathBuf::from("/n/mq")));
        // What mount.fuse3 runs.
        let inv = mount(&["mqfs", "none", "/n/mq", "-o", "rw,replay=all,dev,suid"]);
        assert_eq!(inv.source.as_deref(), Some("none"));
        assert_eq!(inv.mountpoint, PathBuf::from("/n/mq"));
        assert_eq!(inv.options, ["rw,replay=all,dev,suid"]);
        assert!(!inv.foreground && !inv.fake);
    }

    #[test]
    fn dash_d_implies_the_foreground() {
        let inv = mount(&["mqfs", "/n/mq", "-d"]);
        assert!(inv.foreground && inv.debug);
        let inv = mount(&["mqfs", "/n/mq", "-o", "debug"]);
        assert!(!inv.foreground && !inv.debug, "-o debug only logs more");
    }

    #[test]
    fn helper_arguments_as_mount_passes_them() {
        let inv = parse_helper(&os(&["none", "/n/mq", "-o", "rw,replay=all"])).unwrap();
        assert_eq!(inv.source.as_deref(), Some("none"));
        assert_eq!(inv.mountpoint, PathBuf::from("/n/mq"));
        assert_eq!(inv.options, ["rw,replay=all"]);
        assert!(!inv.foreground && !inv.fake && !inv.sloppy);

        let inv =
            parse_helper(&os(&["none", "/n/mq", "-sfnv", "-N", "42", "-r", "-t", "fuse.mqfs"])).unwrap();
        assert!(inv.fake && inv.sloppy && !inv.foreground, "-f is fake, not foreground");
        assert_eq!(inv.namespace.as_deref(), Some("42"));
        assert_eq!(inv.options, ["ro"]);

        for bad in [
            &["/n/mq"][..],
            &["a", "b", "c"],
            &["a", "b", "-x"],
            &["a", "b", "-o"],
            &["a", "b", "-t", "ext4"],
        ] {
            assert!(parse_helper(&os(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn helper_names() {
        assert!(is_helper("/sbin/mount.mqfs".as_ref()));
        assert!(is_fuse3_front("/sbin/mount.fuse.mqfs".as_ref()) && !is_helper("mount.fuse.mqfs".as_ref()));
        assert!(!is_helper("/usr/local/bin/mqfs".as_ref()) && !is_fuse3_front("mqfs".as_ref()));
    }

    #[test]
    fn completions_know_the_options() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let script = completions(shell);
            assert!(script.contains("mqfs") && script.contains("completions"), "{shell}: {script}");
        }
    }
}
