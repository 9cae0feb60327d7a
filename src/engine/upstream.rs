//! A mount that shares its tree with other mounts through an upstream (`src/nats/` is one:
//! NATS JetStream). The engine stays what it is on its own, with one change of route:
//!
//! - A namespace change (mkdir, create, rename, chmod, a ctl write, ...) is an [`Op`]. On its
//!   own the engine applies it at once; shared, it hands it upstream, which orders it among
//!   every mount's changes and has every mount apply it ([`Engine::apply`]) in that order, the
//!   issuing one included, whose system call returns the outcome of its own application. So
//!   every mount makes the same nodes with the same inode numbers and refuses the same
//!   changes (the second of two `mkdir`s of one name fails with EEXIST on every mount).
//! - A write goes upstream instead of into the stream's log ([`Upstream::publish`]); every
//!   mount, the writer's included, receives the upstream's messages in its order and commits
//!   them to its own logs ([`Engine::deliver_remote`]), which fan them out to its readers.
//!
//! Reads, lookups and listings never leave the mount.

use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::channel::{Origin, ReaderId, Settle, WriteCallback};
use super::config::{Follow, GroupConfig};
use super::errno::{Errno, Result};
use super::tree::{Attr, Caller, Ino, Kind, SetAttr, Tree};
use super::{Engine, ctl};
use crate::storage::{Message, Stamp};

/// One namespace change, as every mount applies it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Mkdir {
        parent: Ino,
        name: Vec<u8>,
        perm: u16,
        caller: Caller,
    },
    Mknod {
        parent: Ino,
        name: Vec<u8>,
        kind: Kind,
        perm: u16,
        rdev: u32,
        caller: Caller,
    },
    Symlink {
        parent: Ino,
        name: Vec<u8>,
        target: Vec<u8>,
        caller: Caller,
    },
    Link {
        ino: Ino,
        parent: Ino,
        name: Vec<u8>,
    },
    Unlink {
        parent: Ino,
        name: Vec<u8>,
    },
    Rmdir {
        parent: Ino,
        name: Vec<u8>,
    },
    Rename {
        parent: Ino,
        name: Vec<u8>,
        to: Ino,
        to_name: Vec<u8>,
        no_replace: bool,
    },
    Setattr {
        ino: Ino,
        change: SetAttr,
    },
    /// A ctl write by `uid`: its text, parsed again where it is applied.
    Ctl {
        group: Ino,
        uid: u32,
        text: Vec<u8>,
    },
}

/// A message on its way upstream: to which stream, from whom.
pub struct Outgoing {
    pub stream: Ino,
    pub message: Vec<u8>,
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    /// A request's: the reader of the descriptor that wrote it, which its reply goes to.
    pub reply_to: Option<ReaderId>,
}

/// Where a shared mount's namespace changes and messages go.
pub trait Upstream: Send + Sync {
    /// Orders `op` among every mount's changes and returns once this mount applied it, with
    /// what its application gave (ENOTCONN, ETIMEDOUT: the upstream could not order it).
    fn submit(&self, op: Op) -> Result<Option<Attr>>;
    /// Publishes a message; `done` (if any) is called once the upstream stored it and this
    /// mount received it, or with why not (then it was not published, but for ETIMEDOUT:
    /// the upstream did not answer, so whether it stored it is unknown).
    fn publish(&self, message: Outgoing, done: Option<WriteCallback>);
    /// Sends a reply to a request from another mount, to the address the request came with
    /// (`Origin::Away`).
    fn reply(&self, to: Arc<str>, message: Vec<u8>, done: Option<WriteCallback>);
    /// A reader opens a file (a stream or `order`) of `group`: the upstream is to deliver
    /// the group's messages here from now on (as its `replay` says for history), before the
    /// open returns, if it does not yet.
    fn reading(&self, group: Ino);
    /// A reader of `deliver one` stream `stream` waits: the upstream is to deliver a
    /// message for it (`Engine::deliver_remote`), if it has one, and on until none waits.
    fn wants(&self, stream: Ino);
    /// What stream `stream`'s queue tells of each message the upstream gave it (acknowledged,
    /// or to be handed to another reader).
    fn settler(&self, stream: Ino) -> Settle;
    /// The mount ends: what is owed upstream is sent (messages given to this mount that
    /// no reader here took go back), for a little while at most.
    fn close(&self) {}
    /// Why a group cannot have `config` on this upstream, if it cannot (a setting that does
    /// not hold across mounts): the write setting it fails with EOPNOTSUPP.
    fn refuses(&self, config: &GroupConfig) -> Option<String>;
}

/// How an upstream's message reached this mount: with every message of its group, or as
/// the one a `deliver one` stream's reader asked for (`Upstream::wants`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    Group,
    Queue,
}

/// A stream's way upstream: what its writes are published to.
#[derive(Clone)]
pub struct Uplink {
    pub upstream: Arc<dyn Upstream>,
    pub ino: Ino,
}

impl Engine {
    /// Applies a namespace change: on its own, as the operation's call; shared, as the
    /// upstream orders it (`mine`: this mount issued it, so the kernel learns of the node it
    /// makes as after a lookup).
    pub fn apply(&self, op: &Op, mine: bool) -> Result<Option<Attr>> {
        let make = |make: &dyn Fn(&mut Tree) -> Result<Ino>| self.made(make, mine).map(Some);
        match op.clone() {
            Op::Mkdir { parent, name, perm, caller } => make(&|tree| tree.mkdir(parent, &name, perm, caller)),
            Op::Mknod { parent, name, kind, perm, rdev, caller } => {
                make(&|tree| tree.mknod(parent, &name, kind, perm, rdev, caller))
            }
            Op::Symlink { parent, name, target, caller } => {
                make(&|tree| tree.symlink(parent, &name, &target, caller))
            }
            Op::Link { ino, parent, name } => make(&|tree| tree.link(ino, parent, &name)),
            Op::Unlink { parent, name } => self.change_tree(|tree| tree.unlink(parent, &name)).map(|()| None),
            Op::Rmdir { parent, name } => self.change_tree(|tree| tree.rmdir(parent, &name)).map(|()| None),
            Op::Rename { parent, name, to, to_name, no_replace } => {
                self.change_tree(|tree| tree.rename(parent, &name, to, &to_name, no_replace)).map(|()| None)
            }
            Op::Setattr { ino, change } => {
                let mut tree = self.tree.write();
                let attr = tree.setattr(ino, change)?;
                self.save_changes(tree);
                Ok(Some(attr))
            }
            Op::Ctl { group, uid, text } => {
                let commands = ctl::parse(&text).map_err(|_| Errno::EINVAL)?;
                self.ctl_commit(group, uid, commands).map(|()| None)
            }
        }
    }

    /// Orders a namespace change: upstream if the mount is shared, else applied at once.
    pub(super) fn change(&self, op: Op) -> Result<Option<Attr>> {
        match &self.upstream {
            Some(upstream) => upstream.submit(op),
            None => self.apply(&op, true),
        }
    }

    /// Commits a message the upstream delivered to stream `ino` (gone here: ENOENT), with the
    /// stamp its writer's mount gave it and its place in the group's order. A request carries
    /// where its reply goes (`origin`). Through its group (`Via::Group`) a shared queue's
    /// message is not this mount's: it comes through the queue's own delivery, if at all.
    pub fn deliver_remote(
        &self,
        ino: Ino,
        message: Vec<u8>,
        stamp: Stamp,
        origin: Option<Origin>,
        via: Via,
    ) -> Result<()> {
        let stream = self.tree.read().stream(ino)?.clone();
        if via == Via::Group && stream.is_shared_queue() {
            return Ok(());
        }
        stream.deliver_remote(Message::Owned(message), stamp, origin)
    }

    /// A reply from another mount to the request reader `client` of stream `ino` wrote
    /// (dropped if it closed).
    pub fn deliver_reply(&self, ino: Ino, client: ReaderId, message: &[u8]) -> Result<()> {
        let stream = self.tree.read().stream(ino)?.clone();
        let mut state = stream.state.lock();
        let config = state.config;
        let wakeups = state.channel.queue_reply(client, message, &config)?;
        drop(state);
        drop(wakeups);
        Ok(())
    }

    /// The group stream `ino` is in (its home's).
    pub fn group_of(&self, ino: Ino) -> Result<Ino> {
        self.tree.read().home_group(ino)
    }

    /// How many messages the readers of queue `ino` wait for beyond those it has (None: no
    /// such stream).
    pub fn queue_demand(&self, ino: Ino) -> Option<usize> {
        let stream = self.tree.read().stream(ino).ok()?.clone();
        Some(stream.state.lock().channel.queue_demand())
    }

    /// The groups whose messages reach group `group`'s streams here: itself, and while a
    /// group follows its parent (`follow parent`), that parent; with their configurations.
    pub fn sources(&self, group: Ino) -> Vec<(Ino, GroupConfig)> {
        let tree = self.tree.read();
        let mut sources = Vec::new();
        let mut ino = group;
        while let Ok(node) = tree.group(ino) {
            let config = node.shared.state.lock().config;
            sources.push((ino, config));
            match tree.home_group(ino) {
                Ok(parent) if config.follow == Follow::Parent && parent != ino => ino = parent,
                _ => break,
            }
        }
        sources
    }

    /// Every group and its configuration, for an upstream to keep what it holds of each in
    /// step (its streams' limits, its subscriptions).
    pub fn groups(&self) -> Vec<(Ino, GroupConfig)> {
        let tree = self.tree.read();
        let config = |ino| tree.group(ino).ok().map(|node| (ino, node.shared.state.lock().config));
        tree.groups().into_iter().filter_map(config).collect()
    }

    /// Whether the mount is shared, and why it refuses `config` if it does.
    pub(super) fn refused(&self, config: &GroupConfig) -> Option<String> {
        self.upstream.as_ref()?.refuses(config)
    }
}
