//! Mount options (`-o a,b=c`): the FUSE spellings mount(8) passes, and mqfs's own settings.

use crate::engine::Limits;
use crate::engine::config::{DataMode, Depth, GroupConfig, Replay, parse_size};

/// Everything a mount is configured with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The root group's initial configuration (new groups copy their parent's).
    pub root: GroupConfig,
    pub limits: Limits,
    /// FUSE worker threads.
    pub threads: usize,
    pub allow_other: bool,
    pub allow_root: bool,
    pub read_only: bool,
    /// Owner of the root group; the mounting user by default.
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub fsname: String,
    pub debug: bool,
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
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "strictatime",
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
    "default_permissions",
];

impl Default for Settings {
    fn default() -> Self {
        Settings {
            root: GroupConfig::default(),
            limits: Limits { max_message: 64 << 20, memory: default_memory_ceiling() },
            threads: 4,
            allow_other: false,
            allow_root: false,
            read_only: false,
            uid: None,
            gid: None,
            fsname: "mqfs".into(),
            debug: false,
        }
    }
}

/// A quarter of physical memory.
fn default_memory_ceiling() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    if pages > 0 && page > 0 { pages as u64 * page as u64 / 4 } else { 1 << 30 }
}

impl Settings {
    /// Applies one comma-separated option list on top of the current settings.
    pub fn apply(&mut self, list: &str) -> Result<(), String> {
        for option in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            self.apply_one(option)?;
        }
        if self.limits.max_message > self.limits.memory {
            return Err(format!(
                "max_message ({}) is larger than the memory ceiling ({})",
                self.limits.max_message, self.limits.memory
            ));
        }
        Ok(())
    }

    fn apply_one(&mut self, option: &str) -> Result<(), String> {
        let (key, value) = match option.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (option, None),
        };
        let bad = |what: &str| format!("bad value for mount option {key}: {what}");
        let need = || value.ok_or_else(|| format!("mount option {key} needs a value ({key}=...)"));
        match key {
            "allow_other" => self.allow_other = true,
            "allow_root" => self.allow_root = true,
            "ro" => self.read_only = true,
            "debug" => self.debug = true,
            "data" => self.root.data = DataMode::parse(need()?).ok_or_else(|| bad("message or coalesce"))?,
            "replay" => self.root.replay = Replay::parse(need()?).ok_or_else(|| bad("off, last or all"))?,
            "depth" => self.root.depth = Depth::parse(need()?).ok_or_else(|| bad("a count or a size"))?,
            "memory" => {
                self.limits.memory =
                    parse_size(need()?).filter(|&n| n > 0).ok_or_else(|| bad("a size such as 512M"))?;
                // No message can be larger than all the memory history may take.
                self.limits.max_message = self.limits.max_message.min(self.limits.memory);
            }
            "max_message" => {
                self.limits.max_message =
                    parse_size(need()?).filter(|&n| n > 0).ok_or_else(|| bad("a size such as 16M"))?
            }
            "threads" => {
                self.threads =
                    need()?.parse().ok().filter(|n| (1..=64).contains(n)).ok_or_else(|| bad("1 to 64"))?
            }
            "uid" => self.uid = Some(need()?.parse().map_err(|_| bad("a numeric user id"))?),
            "gid" => self.gid = Some(need()?.parse().map_err(|_| bad("a numeric group id"))?),
            "fsname" => self.fsname = need()?.to_string(),
            "subtype" if value == Some("mqfs") => {}
            _ if IGNORED.contains(&key) && value.is_none() => {}
            _ if key.starts_with("x-") || key == "comment" => {}
            _ => return Err(format!("unknown mount option {option:?}")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqfs_options_set_the_root_group_and_limits() {
        let mut settings = Settings::default();
        settings
            .apply("replay=all,data=coalesce,depth=64K,memory=1G,max_message=2M,threads=2,allow_other")
            .unwrap();
        assert_eq!(settings.root.replay, Replay::All);
        assert_eq!(settings.root.data, DataMode::Coalesce);
        assert_eq!(settings.root.depth, Depth::Bytes(64 << 10));
        assert_eq!(settings.limits, Limits { max_message: 2 << 20, memory: 1 << 30 });
        assert_eq!(settings.threads, 2);
        assert!(settings.allow_other);
    }

    #[test]
    fn options_from_mount_and_fstab_are_accepted() {
        let mut settings = Settings::default();
        settings.apply("rw,defaults,nofail,_netdev,x-systemd.automount,noauto,user,dev,suid").unwrap();
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
        ] {
            let error = Settings::default().apply(list).unwrap_err();
            assert!(error.contains(named), "{list}: {error}");
        }
        let error = Settings::default().apply("memory=1M,max_message=2M").unwrap_err();
        assert!(error.contains("max_message"), "{error}");
        let mut settings = Settings::default();
        settings.apply("memory=1M").unwrap();
        assert_eq!(settings.limits.max_message, 1 << 20, "a small ceiling lowers the default");
    }
}
