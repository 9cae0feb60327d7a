//! Presets: the configuration groups created at given paths start with.
//!
//! A new group starts with a copy of its parent's configuration; then every preset whose
//! path matches the new group's path (relative to the mount root) applies its ctl commands,
//! in the order the presets were added, so a later preset wins over an earlier one. A
//! preset's path matches the group at that path and every group below it; a `*` component
//! matches any one name. Presets apply when a group is created, not when one is renamed.

use super::config::GroupConfig;
use super::ctl::Command;

#[derive(Clone, Debug, PartialEq, Eq)]
struct Preset {
    pattern: Vec<Vec<u8>>,
    commands: Vec<Command>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Presets {
    presets: Vec<Preset>,
}

impl Presets {
    /// Adds a preset for the groups at `path` (`logs`, `logs/web`, `users/*/inbox`; leading
    /// and trailing slashes are ignored) and below. Fails on an empty path, a `.`/`..`
    /// component, or a `clear` among the commands.
    pub fn add(&mut self, path: &str, commands: Vec<Command>) -> Result<(), String> {
        let pattern: Vec<Vec<u8>> =
            path.split('/').filter(|c| !c.is_empty()).map(|c| c.as_bytes().to_vec()).collect();
        if pattern.is_empty() {
            return Err("a preset path names groups below the mount root, such as \"logs\"".into());
        }
        if pattern.iter().any(|c| c == b"." || c == b"..") {
            return Err(format!("a preset path may not contain . or .. ({path:?})"));
        }
        if commands.contains(&Command::Clear) {
            return Err("a preset sets configuration; clear is not one".into());
        }
        self.presets.push(Preset { pattern, commands });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.presets.is_empty()
    }

    /// The configuration a group created at `path` starts with, given its parent's.
    pub fn apply(&self, path: &[&[u8]], parent: GroupConfig) -> GroupConfig {
        let mut config = parent;
        for preset in &self.presets {
            let matches = preset.pattern.len() <= path.len()
                && preset.pattern.iter().zip(path).all(|(want, name)| want == b"*" || want == name);
            if matches {
                for command in &preset.commands {
                    command.configure(&mut config);
                }
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::{DataMode, Depth, Replay};

    /// The command setting `name` to `value`.
    fn set(name: &str, value: &str) -> Command {
        Command::set(name, value).expect("a setting").expect("a value of it")
    }

    fn path(p: &str) -> Vec<&[u8]> {
        p.split('/').map(str::as_bytes).collect()
    }

    #[test]
    fn a_preset_applies_at_and_below_its_path_on_top_of_the_parent() {
        let mut presets = Presets::default();
        presets.add("/logs/", vec![set("replay", "all"), set("depth", "64M")]).unwrap();
        let parent = GroupConfig { data: DataMode::Coalesce, ..GroupConfig::default() };
        let want = GroupConfig { replay: Replay::All, depth: Depth::Bytes(64 << 20), ..parent };
        assert_eq!(presets.apply(&path("logs"), parent), want);
        assert_eq!(presets.apply(&path("logs/web/x"), parent), want);
        assert_eq!(presets.apply(&path("logsx"), parent), parent);
        assert_eq!(presets.apply(&path("var/logs"), parent), parent);
    }

    #[test]
    fn wildcards_match_one_name_and_later_presets_win() {
        let mut presets = Presets::default();
        presets.add("users", vec![set("replay", "last")]).unwrap();
        presets.add("users/*/inbox", vec![set("replay", "all")]).unwrap();
        let base = GroupConfig::default();
        assert_eq!(presets.apply(&path("users/ann"), base).replay, Replay::Last);
        assert_eq!(presets.apply(&path("users/ann/inbox"), base).replay, Replay::All);
        assert_eq!(presets.apply(&path("users/ann/outbox"), base).replay, Replay::Last);
    }

    #[test]
    fn mkdir_applies_presets_to_the_copy_of_the_parent() {
        use crate::engine::memory::Memory;
        use crate::engine::tree::{Caller, ROOT, Tree};
        let root = GroupConfig { data: DataMode::Coalesce, ..GroupConfig::default() };
        let memory = std::sync::Arc::new(Memory::new(1 << 20));
        let store = std::sync::Arc::new(crate::storage::memory::MemoryStore);
        let mut tree = Tree::new(root, Caller { uid: 0, gid: 0 }, 0o755, memory, store).unwrap();
        tree.presets.add("logs", vec![set("replay", "all")]).unwrap();
        let config = |tree: &Tree, ino| tree.group(ino).unwrap().shared.state.lock().config;
        let caller = Caller { uid: 0, gid: 0 };
        let logs = tree.mkdir(ROOT, b"logs", 0o755, caller).unwrap();
        let web = tree.mkdir(logs, b"web", 0o755, caller).unwrap();
        let other = tree.mkdir(ROOT, b"other", 0o755, caller).unwrap();
        let want = GroupConfig { replay: Replay::All, ..root };
        assert_eq!((config(&tree, logs), config(&tree, web), config(&tree, other)), (want, want, root));
    }

    #[test]
    fn bad_presets_are_refused() {
        let mut presets = Presets::default();
        assert!(presets.add("/", vec![]).is_err());
        assert!(presets.add("a/../b", vec![]).is_err());
        assert!(presets.add("a", vec![Command::Clear]).is_err());
        assert!(presets.is_empty());
    }
}
