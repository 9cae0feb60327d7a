//! The tree as the catalogue keeps it: a node's [`NodeRecord`], the changes an operation
//! made (taken by the engine after it, to save), and the tree rebuilt from saved records,
//! its streams wired to their followers again (`follow.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::{Body, GroupNode, Ino, Kind, Link, Meta, Node, ROOT, Tree};
use crate::engine::channel::Channel;
use crate::engine::config::GroupConfig;
use crate::engine::ctl;
use crate::engine::errno::Result;
use crate::engine::memory::Memory;
use crate::engine::presets::Presets;
use crate::engine::stream::{Group, Stream, policy_of};
use crate::storage::catalogue::{Name, NodeBody, NodeRecord};
use crate::storage::{LogId, LogKind, Store, SyncPolicy};

/// What operations changed since the engine last took it.
#[derive(Debug, Default)]
pub struct Changes {
    /// The new state of every node changed (and still in the namespace).
    pub saved: Vec<NodeRecord>,
    /// Nodes gone from the namespace.
    pub removed: Vec<Ino>,
    /// Logs of nodes dropped for good, for the store to delete.
    pub purged: Vec<LogId>,
    /// Whether the save must be on stable storage before the operation returns.
    pub durable: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.saved.is_empty() && self.removed.is_empty() && self.purged.is_empty()
    }
}

/// What operations changed since the engine last took it: nodes to save, nodes gone from
/// the namespace, logs of nodes dropped for good.
#[derive(Default)]
pub(super) struct Tracked {
    changed: HashSet<Ino>,
    removed: Vec<Ino>,
    purged: Vec<LogId>,
}

fn name_of(link: &Link) -> Name {
    Name { parent: link.parent, name: link.name.clone(), entry: link.entry }
}

impl Tree {
    /// Tracks changes from now on (the namespace is saved), the root's first.
    pub fn track_changes(&mut self) {
        self.tracked = Some(Tracked::default());
        self.mark(ROOT);
    }

    /// `ino` changed (its attributes, names or configuration).
    pub(super) fn mark(&mut self, ino: Ino) {
        if let Some(tracked) = &mut self.tracked {
            tracked.changed.insert(ino);
        }
    }

    /// `ino` left the namespace.
    pub(super) fn mark_removed(&mut self, ino: Ino) {
        if let Some(tracked) = &mut self.tracked {
            tracked.removed.push(ino);
        }
    }

    /// The node of log `id` was dropped for good.
    pub(super) fn mark_purged(&mut self, id: LogId) {
        match &mut self.tracked {
            Some(tracked) => tracked.purged.push(id),
            // Nothing is saved, so nothing has to be before the log goes.
            None => self.store.remove_log(id),
        }
    }

    /// Takes what changed since the last call (nothing unless changes are tracked).
    pub fn take_changes(&mut self) -> Changes {
        let Some(tracked) = self.tracked.as_mut().map(std::mem::take) else { return Changes::default() };
        let mut changed: Vec<Ino> = tracked.changed.into_iter().collect();
        changed.sort_unstable();
        Changes { removed: tracked.removed, purged: tracked.purged, ..self.changes_of(changed) }
    }

    /// The records of nodes `changed`, to be saved.
    pub fn changes_of(&self, changed: impl IntoIterator<Item = Ino>) -> Changes {
        let changed: Vec<Ino> = changed.into_iter().collect();
        let durable = changed.iter().any(|&ino| self.syncs_always(ino));
        let saved = changed.into_iter().filter_map(|ino| self.record(ino)).collect();
        Changes { saved, durable, ..Changes::default() }
    }

    /// Whether `ino`'s group (itself, for a group) says `sync always`: a change of it must be
    /// on stable storage before the operation returns.
    fn syncs_always(&self, ino: Ino) -> bool {
        let Some(node) = self.nodes.get(&ino) else { return false };
        let group = if node.is_group() { ino } else { node.home.parent };
        self.group(group).is_ok_and(|group| group.shared.state.lock().config.sync == SyncPolicy::Always)
    }

    /// The record of a node in the namespace (None if it is not, or is removed).
    fn record(&self, ino: Ino) -> Option<NodeRecord> {
        let node = self.nodes.get(&ino).filter(|node| !node.removed)?;
        let meta = &node.meta;
        let mut mtime = meta.mtime;
        let body = match &node.body {
            Body::Group(group) => {
                NodeBody::Group { config: ctl::render_config(&group.shared.state.lock().config) }
            }
            Body::Stream(stream) => {
                mtime = stream.state.lock().channel.modified();
                NodeBody::Stream
            }
            Body::Symlink(target) => NodeBody::Symlink { target: target.to_vec() },
            Body::Plain { kind: Kind::Fifo, .. } => NodeBody::Fifo,
            Body::Plain { kind: Kind::Socket, .. } => NodeBody::Socket,
            Body::Plain { kind: Kind::CharDevice, rdev } => NodeBody::CharDevice { rdev: *rdev },
            Body::Plain { kind: Kind::BlockDevice, rdev } => NodeBody::BlockDevice { rdev: *rdev },
            Body::Plain { kind, .. } => unreachable!("a {kind:?} is no plain node"),
        };
        let names = std::iter::once(&node.home).chain(self.more_names.get(&ino).into_iter().flatten());
        Some(NodeRecord {
            ino,
            body,
            perm: meta.perm,
            uid: meta.uid,
            gid: meta.gid,
            atime: meta.atime,
            mtime,
            ctime: meta.ctime,
            names: names.map(name_of).collect(),
        })
    }

    /// Rebuilds the tree `records` describe (the root among them). A group's configuration
    /// is its saved ctl text applied over `defaults` (what a setting newer than the record
    /// takes). `channel` gives the channel of log `id` with what the store holds of it.
    pub fn restore(
        records: Vec<NodeRecord>,
        defaults: GroupConfig,
        memory: Arc<Memory>,
        store: Arc<dyn Store>,
    ) -> std::result::Result<Tree, String> {
        let channel = |id: LogId, config: &GroupConfig| -> Result<Channel> {
            Ok(Channel::new(store.log(id, config.store, policy_of(id, config.sync))?, memory.clone()))
        };
        let mut tree = Tree {
            nodes: HashMap::with_capacity(records.len()),
            more_names: HashMap::new(),
            next_ino: ROOT + 1,
            memory: memory.clone(),
            store: store.clone(),
            presets: Presets::default(),
            upstream: None,
            tracked: None,
        };
        let (groups, others): (Vec<NodeRecord>, Vec<NodeRecord>) =
            records.into_iter().partition(|record| matches!(record.body, NodeBody::Group { .. }));
        if !groups.iter().any(|record| record.ino == ROOT) {
            return Err("catalogue: no root group".into());
        }
        let mut names = Vec::new();
        // Groups first: a stream takes its home group's configuration and `order`.
        for record in groups.into_iter().chain(others) {
            let ino = record.ino;
            let fail = |what: String| format!("catalogue: node {ino}: {what}");
            let Some((home, more)) = record.names.split_first() else { return Err(fail("no name".into())) };
            let log = |kind| LogId { node: ino, kind };
            let body = match record.body {
                NodeBody::Group { config: text } => {
                    let mut config = defaults;
                    for command in
                        ctl::parse(text.as_bytes()).map_err(|e| fail(format!("configuration {e}")))?
                    {
                        command.configure(&mut config);
                    }
                    let order =
                        channel(log(LogKind::Order), &config).map_err(|e| fail(format!("order: {e}")))?;
                    Body::Group(Box::new(GroupNode::new(Group::with_order(config, order))))
                }
                NodeBody::Stream => {
                    let group = tree.group(home.parent).map_err(|_| fail("its home is no group".into()))?;
                    let group = group.shared.clone();
                    let config = group.state.lock().config;
                    let mut log =
                        channel(log(LogKind::Stream), &config).map_err(|e| fail(format!("log: {e}")))?;
                    // Saved at the last namespace change; a message since moved it on.
                    log.set_modified(log.last_written().map_or(record.mtime, |last| last.max(record.mtime)));
                    let stream = Stream::with_channel(group, config, &home.name, log);
                    stream.state.lock().place_acks(&*store, ino);
                    Body::Stream(stream)
                }
                NodeBody::Symlink { target } => Body::Symlink(Box::new(target)),
                NodeBody::Fifo => Body::Plain { kind: Kind::Fifo, rdev: 0 },
                NodeBody::Socket => Body::Plain { kind: Kind::Socket, rdev: 0 },
                NodeBody::CharDevice { rdev } => Body::Plain { kind: Kind::CharDevice, rdev },
                NodeBody::BlockDevice { rdev } => Body::Plain { kind: Kind::BlockDevice, rdev },
            };
            if matches!(body, Body::Group(_)) && !more.is_empty() {
                return Err(fail("a group with more than one name".into()));
            }
            let link = |name: &Name| Link { parent: name.parent, name: name.name.clone(), entry: name.entry };
            let meta = Meta {
                perm: record.perm,
                uid: record.uid,
                gid: record.gid,
                atime: record.atime,
                mtime: record.mtime,
                ctime: record.ctime,
            };
            tree.next_ino = record
                .names
                .iter()
                .map(|name| name.entry)
                .chain([ino])
                .fold(tree.next_ino, |next, n| next.max(n + 1));
            if tree.nodes.insert(ino, Node::new(link(home), meta, body)).is_some() {
                return Err(fail("saved twice".into()));
            }
            if !more.is_empty() {
                tree.more_names.insert(ino, more.iter().map(link).collect());
            }
            names.extend(record.names.into_iter().filter(|_| ino != ROOT).map(|name| (ino, name)));
        }
        for (ino, name) in names {
            let is_group = tree.nodes[&ino].is_group();
            let fail = |what: &str| {
                format!("catalogue: node {ino}: {what} {:?}", String::from_utf8_lossy(&name.name))
            };
            let group = tree.group_mut(name.parent).map_err(|_| fail("named in no group as"))?;
            if group.children.contains_key(&name.name) || group.listing.contains(&name.entry) {
                return Err(fail("a name taken twice:"));
            }
            group.hook(&name.name, name.entry, ino, is_group);
        }
        tree.check_rooted()?;
        tree.wire_all();
        Ok(tree)
    }

    /// Whether every group leads up to the root: saved parents could make a loop of groups
    /// out of reach, which the tree's walks up (`path`, `is_within`) would never leave.
    fn check_rooted(&self) -> std::result::Result<(), String> {
        let groups = self.nodes.values().filter(|node| node.is_group()).count();
        for (&ino, node) in self.nodes.iter().filter(|(_, node)| node.is_group()) {
            let mut at = ino;
            for _ in 0..=groups {
                if at == ROOT {
                    break;
                }
                at = self.nodes[&at].home.parent;
            }
            if at != ROOT {
                let name = String::from_utf8_lossy(&node.home.name);
                return Err(format!("catalogue: node {ino}: the group {name:?} is not under the root"));
            }
        }
        Ok(())
    }
}
