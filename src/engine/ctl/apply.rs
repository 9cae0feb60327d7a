//! Applying ctl to a group: a write's commands change the group's configuration and every
//! one of its streams' (or clear their history) all at once, or a refused write's reason is
//! kept for its writer; a read renders the group's configuration and status.

use crate::engine::channel::Channel;
use crate::engine::config::GroupConfig;
use crate::engine::delivery::Wakeups;
use crate::engine::errno::Result;
use crate::engine::handle::{Admission, CtlFile, Step};
use crate::engine::stream::{most_cost, move_history, policy_of};
use crate::engine::tree::Tree;
use crate::engine::{CTL_MAX, Engine, Errno, Ino, Op, WriteRequest, ctl};
use crate::storage::{LogId, LogKind};

impl Engine {
    /// The text of a group's ctl, its configuration and status, and why `uid`'s last ctl
    /// write to it was refused, if it was (the comment that ends the text).
    pub(in crate::engine) fn ctl_text(
        &self,
        tree: &Tree,
        group: Ino,
        uid: u32,
    ) -> Result<(Vec<u8>, Option<String>)> {
        let node = tree.group(group)?;
        let mut status = ctl::Status { groups: tree.subgroups(group)?, ..ctl::Status::default() };
        for (_, stream) in tree.streams(group)? {
            let state = stream.state.lock();
            status.streams += 1;
            status.readers += state.channel.readers();
            status.messages += state.channel.messages();
            status.bytes += state.channel.bytes();
        }
        let state = node.shared.state.lock();
        Ok((ctl::render(&state.config, &status).into_bytes(), state.ctl_errors.get(&uid).cloned()))
    }

    /// One WRITE request to a ctl file: assembled like a message, so that a ctl write(2)
    /// applies whole or not at all, then parsed and applied. A refused write fails with
    /// EINVAL, and its reason is logged and told to the writer where it is: this file's
    /// reads, and its user's next opens of the group's ctl, end with it as a comment. The
    /// user's next ctl write to the group replaces or clears it.
    pub(in crate::engine) fn ctl_request(
        &self,
        ctl: &CtlFile,
        request: &WriteRequest,
        size_of_call: impl FnOnce() -> Option<u64>,
        call_id: impl Fn(u64) -> Option<u64>,
    ) -> Result<()> {
        let CtlFile { group, uid, error, writing, .. } = ctl;
        let mut shared_text = None;
        let admission =
            Admission { would_wait: || false, cost: most_cost, max_message: CTL_MAX, memory: &self.memory };
        let parsed = match writing.take(request, size_of_call, call_id, admission) {
            Ok(Step::Message(text, _reservation)) => {
                let parsed = ctl::parse(text.as_slice()).map_err(|error| error.to_string());
                if self.upstream.is_some() {
                    shared_text = Some(text.into_vec());
                }
                parsed
            }
            Ok(Step::More) => return Ok(()),
            Err(Errno::EFBIG) => Err(format!("a write(2) longer than {CTL_MAX} bytes is refused")),
            Err(errno) => return Err(errno),
        };
        let commands = match parsed {
            Ok(commands) => commands,
            Err(reason) => return Err(self.ctl_refuse(ctl, &reason, Errno::EINVAL)),
        };
        let Some(text) = shared_text else {
            *error.lock() = None;
            return self.ctl_commit(*group, *uid, commands);
        };
        // Shared with other mounts: a setting that cannot hold across them is refused
        // here, and the rest is applied as every mount applies it.
        let mut config = self.tree.read().group(*group)?.shared.state.lock().config;
        for command in &commands {
            command.configure(&mut config);
        }
        if let Some(reason) = self.refused(&config) {
            return Err(self.ctl_refuse(ctl, &reason, Errno::EOPNOTSUPP));
        }
        *error.lock() = None;
        self.change(Op::Ctl { group: *group, uid: *uid, text }).map(drop)
    }

    /// Refuses a ctl write for `reason`: logged, and kept for its user's next reads of ctl.
    fn ctl_refuse(&self, ctl: &CtlFile, reason: &str, errno: Errno) -> Errno {
        let CtlFile { group, uid, error, .. } = ctl;
        log::warn!("ctl of group {group}: {reason}");
        let comment = ctl::error_comment(reason);
        *error.lock() = Some(comment.clone());
        if let Ok(node) = self.tree.read().group(*group) {
            node.shared.state.lock().ctl_errors.insert(*uid, comment);
        }
        errno
    }

    /// Applies parsed ctl `commands` by `uid` to a group and saves its new configuration.
    pub(in crate::engine) fn ctl_commit(
        &self,
        group: Ino,
        uid: u32,
        commands: Vec<ctl::Command>,
    ) -> Result<()> {
        let tree = self.tree.read();
        tree.group(group)?.shared.state.lock().ctl_errors.remove(&uid);
        if commands.iter().any(|command| matches!(command, ctl::Command::Set { setting: "follow", .. })) {
            // Following or not changes the namespace (`tree/follow.rs`).
            drop(tree);
            let mut tree = self.tree.write();
            let followed = tree.follows(group);
            let owed = Self::ctl_apply(&tree, group, commands);
            if owed.is_ok() {
                tree.follow_set(group, followed);
            }
            self.save_changes(tree);
            drop(owed?);
            return Ok(());
        }
        let owed = Self::ctl_apply(&tree, group, commands);
        // The queue is taken before the record is made: records join it in the order of the
        // states they show.
        let queued = self.saving.as_ref().map(|saving| {
            let mut queue = saving.queue();
            queue.add(tree.changes_of([group]));
            queue
        });
        drop((queued, tree));
        if let Some(saving) = &self.saving {
            saving.save();
        }
        drop(owed?);
        Ok(())
    }

    /// Applies the commands of a ctl write to a group, its streams and its `order`; returns
    /// the writes the new retention released, to be answered once the tree is released.
    pub(in crate::engine) fn ctl_apply(
        tree: &Tree,
        group: Ino,
        commands: Vec<ctl::Command>,
    ) -> Result<Wakeups> {
        let node = tree.group(group)?;
        let mut group_state = node.shared.state.lock();
        let mut config = group_state.config;
        let mut clear = false;
        for command in commands {
            clear |= !command.configure(&mut config);
        }
        let old = std::mem::replace(&mut group_state.config, config);
        let order_id = LogId { node: group, kind: LogKind::Order };
        let mut wakeups = Self::reconfigure(tree, &mut group_state.order, order_id, &old, &config, clear);
        for (ino, stream) in tree.streams(group)? {
            let mut state = stream.state.lock();
            let old = std::mem::replace(&mut state.config, config);
            state.follow_deliver();
            state.place_acks(tree.store(), ino);
            let id = LogId { node: ino, kind: LogKind::Stream };
            wakeups.merge(Self::reconfigure(tree, &mut state.channel, id, &old, &config, clear));
        }
        Ok(wakeups)
    }

    /// Brings one channel of a group from configuration `old` to `new`: its history cleared,
    /// moved to where the group now keeps it, synced as it now says, trimmed to its depth.
    fn reconfigure(
        tree: &Tree,
        channel: &mut Channel,
        id: LogId,
        old: &GroupConfig,
        new: &GroupConfig,
        clear: bool,
    ) -> Wakeups {
        if clear {
            channel.clear();
        }
        if old.store != new.store {
            move_history(channel, tree.store(), id, old.store, new);
        }
        if old.sync != new.sync {
            channel.log_mut().set_policy(policy_of(id, new.sync));
        }
        channel.retain(new)
    }
}
