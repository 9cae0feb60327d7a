//! Mount options (`-o a,b=c`): the FUSE spellings mount(8) passes, and mqfs's own settings.
//!
//! A configuration file (`-o config=FILE`) is read first; every other `-o` option then
//! overrides what the file said (see `config_file.rs` in the binary).

use std::path::PathBuf;
use std::time::Duration;

use mqfs::engine::Limits;
use mqfs::engine::config::{self, GroupConfig, parse_duration, parse_size};
use mqfs::engine::ctl::Command;
use mqfs::engine::presets::Presets;
use mqfs::storage::memory;
use nix::unistd::{SysconfVar, sysconf};

/// Everything a mount is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The root group's initial configuration (new groups copy their parent's).
    pub root: GroupConfig,
    /// What groups created at given paths start with instead.
    pub presets: Presets,
    /// Ceiling on all retained history, in bytes; a quarter of physical memory if unset.
    pub memory: Option<u64>,
    /// The largest message one write may publish; 64M (or the memory ceiling) if unset.
    pub max_message: Option<u64>,
    /// FUSE worker threads.
    pub threads: usize,
    pub allow_other: bool,
    pub allow_root: bool,
    pub read_only: bool,
    pub noexec: bool,
    /// Whether `default_permissions` was among the options (it is always in force when mqfs
    /// mounts; it matters when mount.fuse3 mounted for it, see `drop_privileges`).
    pub default_permissions: bool,
    /// Owner of the root group; the mounting user by default.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// The source shown in /proc/mounts; the SOURCE argument, or `mqfs`, if unset.
    pub fsname: Option<String>,
    pub debug: bool,
    /// Where the daemon logs instead of syslog (or stderr in the foreground).
    pub log: Option<PathBuf>,
    /// The configuration file the settings started from.
    pub config: Option<PathBuf>,
    /// A NATS-backed mount's: what its streams are named after, how long a write waits for
    /// JetStream, how many servers keep each stream.
    pub prefix: Option<String>,
    pub nats_timeout: Option<Duration>,
    pub replicas: Option<usize>,
}

/// Options mount(8), mount.fuse3 and fstab pass that mean nothing to mqfs.
const IGNORED: &[&str] = &[
    "defaults",
    "rw",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "diratime",
    "nodiratime",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "nofail",
    "_netdev",
    "async",
    "silent",
    "loud",
];

/// How the value of each mount-wide option that takes one is written, for the error that
/// says it is missing (`-o memory` alone); the ctl settings' come from `config::SETTINGS`.
const VALUE_FORMS: &[(&str, &str)] = &[
    ("memory", "SIZE"),
    ("max_message", "SIZE"),
    ("threads", "N"),
    ("uid", "N"),
    ("gid", "N"),
    ("fsname", "NAME"),
    ("log", "FILE"),
    ("config", "FILE"),
    ("prefix", "NAME"),
    ("nats_timeout", "DURATION"),
    ("replicas", "N"),
];

/// The error for a known option given without its value, if `key` is one that takes a value.
fn needs_value(key: &str) -> Option<String> {
    let form = match config::setting(key) {
        Some(setting) => setting.usage(),
        None => VALUE_FORMS.iter().find(|(k, _)| *k == key)?.1.to_string(),
    };
    Some(format!("mount option {key} needs a value ({key}={form})"))
}

/// The largest message by default.
const DEFAULT_MAX_MESSAGE: u64 = 64 << 20;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            root: GroupConfig::default(),
            presets: Presets::default(),
            memory: None,
            max_message: None,
            threads: default_threads(),
            allow_other: false,
            allow_root: false,
            read_only: false,
            noexec: false,
            default_permissions: false,
            uid: None,
            gid: None,
            fsname: None,
            debug: false,
            log: None,
            config: None,
            prefix: None,
            nats_timeout: None,
            replicas: None,
        }
    }
}

/// One FUSE worker per core (at least 2). More only add context switches: a blocked reader
/// or writer holds no worker, and each kernel request wakes one (measured in
/// docs/benchmarks.md: 4 threads on 2 cores did a fifth of 2 threads' messages per second).
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 64)
}

/// A quarter of physical memory.
fn default_memory_ceiling() -> u64 {
    let value = |var| sysconf(var).ok().flatten().and_then(|n| u64::try_from(n).ok()).filter(|&n| n > 0);
    match (value(SysconfVar::_PHYS_PAGES), value(SysconfVar::PAGE_SIZE)) {
        (Some(pages), Some(page)) => pages * page / 4,
        _ => 1 << 30,
    }
}

/// The options of `-o` lists, one per item, in order: split at commas, blanks trimmed.
pub fn split(lists: &[String]) -> Vec<&str> {
    lists.iter().flat_map(|l| l.split(',')).map(str::trim).filter(|o| !o.is_empty()).collect()
}

/// The file named by the last `config=` option, if any.
pub fn config_path(options: &[&str]) -> Option<PathBuf> {
    options.iter().rev().find_map(|o| o.strip_prefix("config=")).map(PathBuf::from)
}

impl Settings {
    /// Applies one option (`key` or `key=value`). Returns whether mqfs knows it; a known
    /// option with a bad value is an error.
    pub fn apply_one(&mut self, option: &str) -> Result<bool, String> {
        let (key, value) = match option.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (option, None),
        };
        let bad = |what: &str| format!("bad value for mount option {key}: {what}");
        let need = || {
            value.ok_or_else(|| {
                needs_value(key).unwrap_or_else(|| format!("mount option {key} needs a value"))
            })
        };
        let file = |name: &str| match name {
            "" => Err(format!("mount option {key} needs a file name")),
            name => Ok(PathBuf::from(name)),
        };
        let flag = |set: &mut bool| match value {
            None => {
                *set = true;
                Ok(())
            }
            Some(_) => Err(format!("mount option {key} takes no value")),
        };
        match key {
            "allow_other" => flag(&mut self.allow_other)?,
            "allow_root" => flag(&mut self.allow_root)?,
            "default_permissions" => flag(&mut self.default_permissions)?,
            "ro" => flag(&mut self.read_only)?,
            "noexec" => flag(&mut self.noexec)?,
            "debug" => flag(&mut self.debug)?,
            "memory" => {
                self.memory =
                    Some(parse_size(need()?).filter(|&n| n > 0).ok_or_else(|| bad("a size such as 512M"))?)
            }
            "max_message" => {
                self.max_message = Some(parse_max_message(need()?).ok_or_else(|| bad(MAX_MESSAGE_VALUES))?)
            }
            "threads" => self.threads = parse_threads(need()?).ok_or_else(|| bad("1 to 64"))?,
            "uid" => self.uid = Some(need()?.parse().map_err(|_| bad("a numeric user id"))?),
            "gid" => self.gid = Some(need()?.parse().map_err(|_| bad("a numeric group id"))?),
            "fsname" => self.fsname = Some(need()?.to_string()),
            "log" => self.log = Some(file(need()?)?),
            "config" => self.config = Some(file(need()?)?),
            "prefix" => {
                let prefix = need()?;
                mqfs::nats::check_prefix(prefix).map_err(|reason| bad(&reason))?;
                self.prefix = Some(prefix.to_string());
            }
            "nats_timeout" => {
                let timeout = parse_duration(need()?).filter(|t| !t.is_zero());
                self.nats_timeout = Some(timeout.ok_or_else(|| bad("a duration such as 10s or 500ms"))?);
            }
            "replicas" => {
                let replicas = need()?.parse().ok().filter(|n| (1..=5).contains(n));
                self.replicas = Some(replicas.ok_or_else(|| bad("1 to 5"))?);
            }
            "subtype" if value == Some("mqfs") => {}
            "remount" => return Err("remount is not supported: unmount and mount again".into()),
            _ if IGNORED.contains(&key) && value.is_none() => {}
            _ if key.starts_with("x-") || key == "comment" => {}
            _ => match value.map(|value| ctl_setting(key, value)) {
                // data=, replay=, depth=, ...: the root group's ctl settings.
                Some(Some(Ok(command))) => {
                    command.configure(&mut self.root);
                }
                Some(Some(Err(reason))) => return Err(bad(&reason)),
                None => return needs_value(key).map_or(Ok(false), Err),
                Some(None) => return Ok(false),
            },
        }
        Ok(true)
    }

    /// The limits the engine enforces: the memory ceiling (a quarter of RAM by default) and
    /// the largest message (64M by default, never more than the ceiling).
    pub fn limits(&self) -> Result<Limits, String> {
        let memory = self.memory.unwrap_or_else(default_memory_ceiling);
        let max_message = match self.max_message {
            Some(max) if max > memory => {
                return Err(format!(
                    "max_message ({max}) is larger than the memory ceiling ({memory}); \
                     raise memory= or lower max_message="
                ));
            }
            Some(max) => max,
            // No message can be larger than all the memory history may take.
            None => DEFAULT_MAX_MESSAGE.min(memory),
        };
        Ok(Limits { max_message, memory })
    }
}

/// `key=value` read as the ctl command `key value` (`replay=all`, `depth=64M`), if `key` is a
/// ctl setting; the error says what the setting takes.
pub fn ctl_setting(key: &str, value: &str) -> Option<Result<Command, String>> {
    Command::set(key, value)
}

/// What `max_message` takes, as its errors say.
pub const MAX_MESSAGE_VALUES: &str = "a size such as 16M, at most 4294967295 bytes (4G - 1)";

/// A largest message: a size from 1 byte to the largest message a stream's log can index.
pub fn parse_max_message(word: &str) -> Option<u64> {
    parse_size(word).filter(|n| (1..=memory::MAX_MESSAGE).contains(n))
}

/// A worker thread count: 1 to 64.
pub fn parse_threads(word: &str) -> Option<usize> {
    word.parse().ok().filter(|n| (1..=64).contains(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqfs::engine::config::{DataMode, Depth, Replay};

    impl Settings {
        /// Applies one comma-separated option list, as `main` does with `-o`: an unknown
        /// option is an error that names it.
        fn apply(&mut self, list: &str) -> Result<(), String> {
            for option in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
                if !self.apply_one(option)? {
                    return Err(format!("unknown mount option {option:?}"));
                }
            }
            Ok(())
        }
    }

    #[test]
    fn mqfs_options_set_the_root_group_and_limits() {
        let mut settings = Settings::default();
        settings
            .apply("replay=all,data=coalesce,depth=64K,memory=1G,max_message=2M,threads=2,allow_other")
            .unwrap();
        assert_eq!(settings.root.replay, Replay::All);
        assert_eq!(settings.root.data, DataMode::Coalesce);
        assert_eq!(settings.root.depth, Depth::Bytes(64 << 10));
        assert_eq!(settings.limits(), Ok(Limits { max_message: 2 << 20, memory: 1 << 30 }));
        assert_eq!(settings.threads, 2);
        assert!(settings.allow_other);
        settings.apply("log=/var/log/mqfs.log,config=/etc/mqfs.toml,fsname=bus,noexec").unwrap();
        assert_eq!(settings.log, Some(PathBuf::from("/var/log/mqfs.log")));
        assert_eq!(settings.config, Some(PathBuf::from("/etc/mqfs.toml")));
        assert_eq!(settings.fsname.as_deref(), Some("bus"));
        assert!(settings.noexec);
    }

    #[test]
    fn options_from_mount_and_fstab_are_accepted() {
        let mut settings = Settings::default();
        settings
            .apply("rw,defaults,nofail,_netdev,x-systemd.automount,x-systemd.requires=a.service,noauto,user")
            .unwrap();
        settings.apply("dev,suid,nodev,nosuid,relatime,subtype=mqfs,comment=x").unwrap();
        assert_eq!(settings, Settings::default());
    }

    #[test]
    fn unknown_or_bad_options_are_named() {
        for (list, named) in [
            ("frobnicate", "frobnicate"),
            ("replay=sometimes", "replay"),
            ("depth", "depth"),
            ("threads=0", "threads"),
            ("memory=lots", "memory"),
            ("rw=1", "rw=1"),
            ("allow_other=yes", "allow_other"),
            ("log=", "log"),
            ("remount", "remount"),
            ("subtype=sshfs", "subtype"),
            ("clear=1", "clear"),
            ("replay=all x", "replay"),
            ("replay=", "replay"),
        ] {
            let error = Settings::default().apply(list).unwrap_err();
            assert!(error.contains(named), "{list}: {error}");
        }
    }

    #[test]
    fn a_valued_option_without_its_value_says_so() {
        let settings = config::SETTINGS.iter().map(|s| (s.name.to_string(), s.usage()));
        let forms: Vec<(String, String)> =
            settings.chain(VALUE_FORMS.iter().map(|(k, f)| (k.to_string(), f.to_string()))).collect();
        assert!(forms.iter().any(|(key, form)| key == "replay" && form == "off|last|all"));
        for (key, form) in &forms {
            let error = Settings::default().apply(key).unwrap_err();
            assert_eq!(error, format!("mount option {key} needs a value ({key}={form})"));
        }
        // Every form shown is one the option takes.
        for (key, form) in &forms {
            for alternative in form.split('|') {
                let value = match alternative {
                    "N" => "2",
                    "SIZE" => "1M",
                    "NAME" => "bus",
                    "FILE" => "/dev/null",
                    "DURATION" => "100ms",
                    word => word,
                };
                let option = format!("{key}={value}");
                assert_eq!(Settings::default().apply_one(&option), Ok(true), "{option}");
            }
        }
    }

    #[test]
    fn max_message_is_checked_against_the_ceiling_whatever_the_order() {
        for list in ["memory=1M,max_message=2M", "max_message=2M,memory=1M"] {
            let mut settings = Settings::default();
            settings.apply(list).unwrap();
            let error = settings.limits().unwrap_err();
            assert!(error.contains("max_message"), "{error}");
        }
        let mut settings = Settings::default();
        settings.apply("memory=1M").unwrap();
        assert_eq!(settings.limits().unwrap().max_message, 1 << 20, "a small ceiling lowers the default");
    }

    #[test]
    fn max_message_is_at_most_what_a_log_can_index() {
        let mut settings = Settings::default();
        settings.apply("memory=8G,max_message=4294967295").unwrap();
        assert_eq!(settings.limits().unwrap().max_message, u32::MAX as u64);
        for value in ["4G", "5G", "4294967296", "0"] {
            let error = Settings::default().apply(&format!("memory=8G,max_message={value}")).unwrap_err();
            assert!(error.contains("max_message") && error.contains("4G - 1"), "{value}: {error}");
        }
    }

    #[test]
    fn the_last_config_option_names_the_file() {
        let lists = vec!["rw,config=/a.toml".to_string(), " replay=all , config=/b.toml,".to_string()];
        let options = split(&lists);
        assert_eq!(options, ["rw", "config=/a.toml", "replay=all", "config=/b.toml"]);
        assert_eq!(config_path(&options), Some(PathBuf::from("/b.toml")));
        assert_eq!(config_path(&["rw"]), None);
    }
}
