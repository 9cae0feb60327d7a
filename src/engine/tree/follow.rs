//! Durable subscriptions: where a write is copied, as the namespace decides it.
//!
//! A group configured `follow parent` (not the root) receives a copy of every message of its
//! parent's streams, in its own stream of the same name: a stream whose home is there. Each
//! stream keeps the list of streams a write to it is copied into (`StreamState::followers`):
//! those of its followers, each followed by its own followers' and so on, parents before
//! children, which is the order a write locks them in. So the write path never looks at the
//! tree; the namespace operations keep the lists in step, under the tree's lock:
//!
//! - a stream that gets a home (made, or moved by its home name) is made, with the same
//!   owner and mode, in every following group that has nothing of its name yet, and wired;
//! - a group that begins to follow (made or moved under a parent while configured so, or
//!   `follow parent` written to its ctl) gets a stream for each of its parent's streams it
//!   has no name for, and is wired; history from before is not copied;
//! - a group about to move, or a stream being removed, is first unwired, and a group that
//!   stops following is unwired;
//! - a stream about to move by its home name is no longer copied into, keeps its own list
//!   (less what it replaces) while it moves, and gets its new list under its lock together
//!   with its new group (`Tree::rehome`): a write committed during the move is copied as it
//!   was before, one after it as it is after, and none is lost between.
//!
//! Unwiring before a move or removal, while the tree is still as it was, keeps every list
//! true to the tree: setting a list waits for the write holding it, so no list names a
//! stream or group anywhere but where it is, nor a removed stream; and a stream's list always
//! matches the group it is locked with. Every write therefore
//! locks down the tree (a group, its stream, then the groups below that follow and their
//! streams, in the one order all lists share), and a chain of followers cannot deadlock with
//! its parts' own writers. Wiring the new place after a move only adds to lists.

use super::{Body, Caller, Ino, ROOT, Tree};
use crate::engine::config::Follow;
use crate::engine::stream::Follower;

/// No node: nothing is left out of the lists made.
const NONE: Ino = 0;

impl Tree {
    /// The parent `group` follows, if it follows: a group in the tree other than the root,
    /// configured `follow parent`.
    fn followed(&self, group: Ino) -> Option<Ino> {
        let node = self.nodes.get(&group).filter(|node| !node.removed && group != ROOT)?;
        let Body::Group(group_node) = &node.body else { return None };
        (group_node.shared.state.lock().config.follow == Follow::Parent).then_some(node.home.parent)
    }

    /// The subgroups of `group` that follow it, by name, other than `except`.
    fn followers(&self, group: Ino, except: Ino) -> Vec<Ino> {
        let Ok(node) = self.group(group) else { return Vec::new() };
        if node.subgroups == 0 {
            return Vec::new();
        }
        let followers = node.children.values().filter(|&&child| child != except);
        followers.copied().filter(|&child| self.followed(child) == Some(group)).collect()
    }

    /// The stream whose home is `name` in `group`.
    fn homed_stream(&self, group: Ino, name: &[u8]) -> Option<Ino> {
        let ino = *self.group(group).ok()?.children.get(name)?;
        let node = &self.nodes[&ino];
        let homed =
            matches!(node.body, Body::Stream(_)) && node.home.parent == group && node.home.name == name;
        homed.then_some(ino)
    }

    /// The streams a write to stream `ino` is copied into, parents before children, as if
    /// `except` (a stream or group) were not there.
    fn followers_of(&self, ino: Ino, except: Ino) -> Vec<Follower> {
        let home = &self.nodes[&ino].home;
        let mut list = Vec::new();
        for group in self.followers(home.parent, except) {
            let Some(copy) = self.homed_stream(group, &home.name).filter(|&copy| copy != except) else {
                continue;
            };
            let (Ok(stream), Ok(node)) = (self.stream(copy), self.group(group)) else { continue };
            list.push(Follower { group: node.shared.clone(), stream: stream.clone() });
            list.extend(self.followers_of(copy, except));
        }
        list
    }

    /// Sets the list of stream `ino`.
    fn wire(&self, ino: Ino, except: Ino) {
        if let Ok(stream) = self.stream(ino) {
            let list = self.followers_of(ino, except);
            stream.state.lock().followers = list;
        }
    }

    /// Sets the lists of the streams a write into `name` in `group` is copied from: the
    /// parent's stream of that name if `group` follows, the grandparent's if the parent
    /// follows too, and so on.
    fn wire_sources(&self, mut group: Ino, name: &[u8], except: Ino) {
        while let Some(parent) = self.followed(group) {
            let Some(source) = self.homed_stream(parent, name) else { return };
            self.wire(source, except);
            group = parent;
        }
    }

    /// Stream `ino` got its home: its copies are made where missing, and it and the streams
    /// it is copied from are wired.
    pub(super) fn stream_arrived(&mut self, ino: Ino) {
        if self.stream(ino).is_err() {
            return;
        }
        let node = &self.nodes[&ino];
        let (group, name) = (node.home.parent, node.home.name.clone());
        let (perm, owner) = (node.meta.perm, Caller { uid: node.meta.uid, gid: node.meta.gid });
        for follower in self.followers(group, NONE) {
            self.make_copy(follower, &name, perm, owner);
        }
        self.wire(ino, NONE);
        self.wire_sources(group, &name, NONE);
    }

    /// Makes stream `name` in following group `group`, unless the name is taken there (by
    /// a copy made before, which is then wired, or by something else, which is not).
    fn make_copy(&mut self, group: Ino, name: &[u8], perm: u16, owner: Caller) {
        let Ok(node) = self.group(group) else { return };
        let path = |tree: &Tree| {
            String::from_utf8_lossy(&[&tree.path(group)[..], &[name]].concat().join(&b'/')).into_owned()
        };
        match node.children.get(name) {
            Some(&taken) if self.homed_stream(group, name) != Some(taken) => {
                log::info!("/{}: not a stream of this group: it gets no copies", path(self));
            }
            Some(_) => {}
            None => {
                if let Err(errno) = self.create(group, name, perm, owner) {
                    log::warn!("/{}: cannot be made to receive copies: {errno}", path(self));
                }
            }
        }
    }

    /// Stream `ino` is about to move by its home name, replacing `replaced` (or nothing):
    /// nothing is copied into it any more, and its own list leaves out what it replaces but
    /// is kept otherwise (its followers stay where they are), so a write committed while it
    /// moves is copied as before. Then the new home's copies are made ([`Tree::copies_for`]),
    /// the new list comes with the new group (`Tree::rehome`) and what copies into it is
    /// wired ([`Tree::stream_moved`]).
    pub(super) fn stream_moving(&self, ino: Ino, replaced: Option<Ino>) {
        let home = &self.nodes[&ino].home;
        self.wire_sources(home.parent, &home.name, ino);
        self.wire(ino, replaced.unwrap_or(NONE));
    }

    /// Makes the copies stream `ino` has (or, before a move, will have) as `name` in `group`,
    /// where they are missing. Made before a move, they do not wire it: it is still in its old
    /// group.
    pub(super) fn copies_for(&mut self, ino: Ino, group: Ino, name: &[u8]) {
        let meta = &self.nodes[&ino].meta;
        let (perm, owner) = (meta.perm, Caller { uid: meta.uid, gid: meta.gid });
        for follower in self.followers(group, NONE) {
            self.make_copy(follower, name, perm, owner);
        }
    }

    /// Stream `ino` moved ([`Tree::stream_moving`]) and was rehomed: a copy that could not be
    /// made before (its name was the stream's own: a copy moving up into the group it
    /// followed) is made now, and the streams copied into it are wired.
    pub(super) fn stream_moved(&mut self, ino: Ino) {
        let home = &self.nodes[&ino].home;
        let (group, name) = (home.parent, home.name.clone());
        self.copies_for(ino, group, &name);
        self.wire_sources(group, &name, NONE);
    }

    /// The list stream `ino`'s writes are copied by, from where it is now.
    pub(super) fn followers_list(&self, ino: Ino) -> Vec<Follower> {
        self.followers_of(ino, NONE)
    }

    /// Stream `ino`'s home is about to go: it is copied nowhere, nor copied into.
    pub(super) fn stream_leaving(&self, ino: Ino) {
        let Ok(stream) = self.stream(ino) else { return };
        stream.state.lock().followers = Vec::new();
        let home = &self.nodes[&ino].home;
        self.wire_sources(home.parent, &home.name, ino);
    }

    /// Group `group` came under a parent, or was told to follow it: if it follows, it gets a
    /// stream for each of its parent's streams it has no name for, and is wired.
    pub(super) fn group_arrived(&mut self, group: Ino) {
        let Some(parent) = self.followed(group) else { return };
        let Ok(sources) = self.streams(parent) else { return };
        for (source, _) in sources {
            let name = self.nodes[&source].home.name.clone();
            let meta = &self.nodes[&source].meta;
            let (perm, owner) = (meta.perm, Caller { uid: meta.uid, gid: meta.gid });
            self.make_copy(group, &name, perm, owner);
            self.wire_sources(group, &name, NONE);
        }
    }

    /// Group `group` is about to move, or no longer follows: its parent's streams, and those
    /// they are copied from, are wired without it.
    pub(super) fn unfollow(&self, group: Ino) {
        let parent = self.nodes[&group].home.parent;
        for (ino, _) in self.streams(parent).unwrap_or_default() {
            self.wire(ino, group);
            let home = &self.nodes[&ino].home;
            self.wire_sources(home.parent, &home.name, group);
        }
    }

    /// Group `group`'s `follow` was set (by ctl), when it `followed` its parent or not.
    pub fn follow_set(&mut self, group: Ino, followed: bool) {
        self.mark(group);
        match (followed, self.follows(group)) {
            (false, true) => self.group_arrived(group),
            (true, false) => self.unfollow(group),
            _ => {}
        }
    }

    /// Whether `group` follows its parent now.
    pub fn follows(&self, group: Ino) -> bool {
        self.followed(group).is_some()
    }

    /// Wires every stream (a restored tree: its follower streams are there already).
    pub(super) fn wire_all(&self) {
        for ino in self.stream_inos() {
            self.wire(ino, NONE);
        }
    }
}
