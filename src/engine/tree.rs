//! The namespace: groups (directories) and streams (files), their names, inode numbers,
//! owners and modes.
//!
//! Every group has two reserved entries, `ctl` and `order`. They are not nodes of their
//! own: their inode numbers are the group's with a marker bit set, and their attributes
//! derive from the group's.
//!
//! Removing and moving streams owes replies (end-of-file to readers of a removed stream,
//! writes a move releases): those operations return them as [`Wakeups`], for the engine to
//! send once it has released the tree's lock.
//!
//! A removed node stays, out of every group, while the kernel still knows its inode (it
//! counts the lookups it was answered with, and forgets them later): a program that holds it
//! open or as its working directory can still stat it and change its owner, mode and times.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::channel::{Channel, Wakeups};
use super::config::{DataMode, GroupConfig};
use super::errno::{Errno, Result};
use super::memory::Memory;
use super::presets::Presets;
use super::stream::{Group, Stream};

pub type Ino = u64;

pub const ROOT: Ino = 1;
const CTL_BIT: Ino = 1 << 62;
const ORDER_BIT: Ino = 1 << 61;
pub const CTL: &[u8] = b"ctl";
pub const ORDER: &[u8] = b"order";
pub const NAME_MAX: usize = 255;

/// Where readdir's cookies place `ctl` and `order`: after every child's (an inode number plus
/// 2, and inode numbers never reach the marker bits).
const CTL_POSITION: u64 = 1 << 62;

/// What an inode number names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Special {
    /// A group or stream node.
    Node(Ino),
    /// The `ctl` file of the group.
    Ctl(Ino),
    /// The `order` meta-stream of the group.
    Order(Ino),
}

impl Special {
    /// The node an inode number belongs to: itself, or the group of its `ctl` or `order`.
    pub fn node(ino: Ino) -> Ino {
        ino & !(CTL_BIT | ORDER_BIT)
    }

    pub fn of(ino: Ino) -> Special {
        if ino & CTL_BIT != 0 {
            Special::Ctl(ino & !CTL_BIT)
        } else if ino & ORDER_BIT != 0 {
            Special::Order(ino & !ORDER_BIT)
        } else {
            Special::Node(ino)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Directory,
    File,
}

/// What `stat` gives as the size of a stream or `order`. A static reader reads the history
/// as a file whose offsets count from the first byte ever written (dropped history leaves
/// them where they were), so its size is every byte ever written. Read as a stream, it has no size, as a pipe has
/// none: the kernel answers FIONREAD with the size minus the file position, and a stream's
/// position never moves, so any other size would always claim unread data (GNU `cat -A`
/// then never flushes its output). The retained bytes show in `ctl` as `# bytes`.
pub fn file_size(channel: &Channel, config: &GroupConfig) -> u64 {
    match config.data {
        DataMode::Static => channel.span().1,
        DataMode::Message | DataMode::Coalesce => 0,
    }
}

/// The attributes `stat` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size: u64,
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

/// Who asks: the owner of what they create.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub perm: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

struct Meta {
    perm: u16,
    uid: u32,
    gid: u32,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
}

impl Meta {
    fn new(perm: u16, caller: Caller) -> Meta {
        let now = SystemTime::now();
        Meta { perm: perm & 0o7777, uid: caller.uid, gid: caller.gid, atime: now, mtime: now, ctime: now }
    }
}

pub struct GroupNode {
    pub children: BTreeMap<Vec<u8>, Ino>,
    /// The same children by inode number, which is their order of creation: readdir's cookies
    /// are these numbers, so removals during a listing shift nothing.
    listing: BTreeSet<Ino>,
    pub shared: Arc<Group>,
    subgroups: u32,
}

pub enum Body {
    /// Boxed: streams, the many, then take no room for a group's maps.
    Group(Box<GroupNode>),
    Stream(Arc<Stream>),
}

pub struct Node {
    parent: Ino,
    name: Vec<u8>,
    meta: Meta,
    pub body: Body,
    /// Lookups the kernel was answered with and has not forgotten (also those of a group's
    /// `ctl` and `order`).
    known: AtomicU64,
    /// Removed from its group, kept only while the kernel knows it.
    removed: bool,
}

impl GroupNode {
    fn new(shared: Arc<Group>) -> GroupNode {
        GroupNode { children: BTreeMap::new(), listing: BTreeSet::new(), shared, subgroups: 0 }
    }

    fn hook(&mut self, name: &[u8], ino: Ino, is_group: bool) {
        self.children.insert(name.to_vec(), ino);
        self.listing.insert(ino);
        self.subgroups += is_group as u32;
    }

    fn unhook(&mut self, name: &[u8], ino: Ino, is_group: bool) {
        self.children.remove(name);
        self.listing.remove(&ino);
        self.subgroups -= is_group as u32;
    }
}

impl Node {
    fn new(parent: Ino, name: &[u8], meta: Meta, body: Body) -> Node {
        Node { parent, name: name.to_vec(), meta, body, known: AtomicU64::new(0), removed: false }
    }
}

pub struct Tree {
    nodes: HashMap<Ino, Node>,
    next_ino: Ino,
    memory: Arc<Memory>,
    /// What groups created at given paths start with (see `presets.rs`).
    pub presets: Presets,
}

/// A directory entry as readdir lists it, and the cookie that resumes the listing after it.
pub struct Entry<'a> {
    pub ino: Ino,
    pub kind: Kind,
    pub name: &'a [u8],
    pub next: u64,
}

fn is_reserved(name: &[u8]) -> bool {
    name == CTL || name == ORDER
}

fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX { Err(Errno::ENAMETOOLONG) } else { Ok(()) }
}

/// A name a stream or group may be given: also no newline, which would make `order` (a
/// name and a newline per write) ambiguous.
fn check_new_name(name: &[u8]) -> Result<()> {
    check_name(name)?;
    if name.contains(&b'\n') {
        log::warn!("refused the name {:?}: names cannot hold a newline", String::from_utf8_lossy(name));
        return Err(Errno::EINVAL);
    }
    Ok(())
}

fn kind_of(body: &Body) -> Kind {
    match body {
        Body::Group(_) => Kind::Directory,
        Body::Stream(_) => Kind::File,
    }
}

impl Tree {
    pub fn new(root_config: GroupConfig, owner: Caller, perm: u16, memory: Arc<Memory>) -> Tree {
        let body = Body::Group(Box::new(GroupNode::new(Group::new(root_config, memory.clone()))));
        let root = Node::new(ROOT, b"", Meta::new(perm, owner), body);
        Tree { nodes: HashMap::from([(ROOT, root)]), next_ino: ROOT + 1, memory, presets: Presets::default() }
    }

    pub fn node(&self, ino: Ino) -> Result<&Node> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    pub fn group(&self, ino: Ino) -> Result<&GroupNode> {
        match &self.node(ino)?.body {
            Body::Group(group) => Ok(group),
            Body::Stream(_) => Err(Errno::ENOTDIR),
        }
    }

    /// A group that is still in the tree: names can be looked up and created in it.
    fn live_group(&self, ino: Ino) -> Result<&GroupNode> {
        if self.node(ino)?.removed { Err(Errno::ENOENT) } else { self.group(ino) }
    }

    fn group_mut(&mut self, ino: Ino) -> Result<&mut GroupNode> {
        match &mut self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?.body {
            Body::Group(group) => Ok(group),
            Body::Stream(_) => Err(Errno::ENOTDIR),
        }
    }

    pub fn stream(&self, ino: Ino) -> Result<&Arc<Stream>> {
        match &self.node(ino)?.body {
            Body::Stream(stream) => Ok(stream),
            Body::Group(_) => Err(Errno::EISDIR),
        }
    }

    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Ino> {
        // A name that could never exist is too long, not missing (as local file systems say).
        check_name(name)?;
        let group = self.live_group(parent)?;
        match name {
            CTL => Ok(parent | CTL_BIT),
            ORDER => Ok(parent | ORDER_BIT),
            _ => group.children.get(name).copied().ok_or(Errno::ENOENT),
        }
    }

    pub fn attr(&self, ino: Ino) -> Result<Attr> {
        match Special::of(ino) {
            Special::Node(ino) => {
                let node = self.node(ino)?;
                let meta = &node.meta;
                let (kind, size, links, mtime) = match &node.body {
                    Body::Group(group) => (Kind::Directory, 0, 2 + group.subgroups, meta.mtime),
                    Body::Stream(stream) => {
                        let state = stream.state.lock();
                        (Kind::File, file_size(&state.channel, &state.config), 1, state.channel.modified())
                    }
                };
                let nlink = if node.removed { 0 } else { links };
                Ok(Attr {
                    ino,
                    kind,
                    size,
                    perm: meta.perm,
                    nlink,
                    uid: meta.uid,
                    gid: meta.gid,
                    atime: meta.atime,
                    mtime,
                    ctime: meta.ctime.max(mtime),
                })
            }
            // ctl is writable by whoever may write the group directory; order by nobody.
            Special::Ctl(group) => self.reserved_attr(ino, group, 0o666, 0),
            Special::Order(group) => {
                let size = {
                    let state = self.group(group)?.shared.state.lock();
                    file_size(&state.order, &state.config)
                };
                self.reserved_attr(ino, group, 0o444, size)
            }
        }
    }

    fn reserved_attr(&self, ino: Ino, group: Ino, mask: u16, size: u64) -> Result<Attr> {
        let mut attr = self.attr(group)?;
        attr.ino = ino;
        attr.kind = Kind::File;
        attr.perm &= mask;
        attr.nlink = attr.nlink.min(1);
        attr.size = size;
        Ok(attr)
    }

    /// The setuid bit, and the setgid bit of a group-executable file, of stream `ino`: what
    /// a write by a process without CAP_FSETID clears, as on other Linux file systems.
    pub fn setid_bits(&self, ino: Ino) -> u16 {
        let Special::Node(ino) = Special::of(ino) else { return 0 };
        let Some(node) = self.nodes.get(&ino) else { return 0 };
        let perm = node.meta.perm;
        let setgid = if perm & 0o010 != 0 { 0o2000 } else { 0 };
        perm & (0o4000 | setgid)
    }

    /// Clears `bits` of `ino`'s mode (and updates its ctime).
    pub fn clear_mode_bits(&mut self, ino: Ino, bits: u16) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.meta.perm &= !bits;
            node.meta.ctime = SystemTime::now();
        }
    }

    pub fn setattr(&mut self, ino: Ino, change: SetAttr) -> Result<Attr> {
        let Special::Node(node_ino) = Special::of(ino) else {
            // ctl and order take their owner and mode from their group: change the group
            // instead. Times are accepted and ignored, so `touch ctl` succeeds.
            if change.perm.is_some() || change.uid.is_some() || change.gid.is_some() {
                return Err(Errno::EPERM);
            }
            return self.attr(ino);
        };
        let node = self.nodes.get_mut(&node_ino).ok_or(Errno::ENOENT)?;
        let meta = &mut node.meta;
        if let Some(perm) = change.perm {
            meta.perm = perm & 0o7777;
        }
        if let Some(uid) = change.uid {
            meta.uid = uid;
        }
        if let Some(gid) = change.gid {
            meta.gid = gid;
        }
        if let Some(atime) = change.atime {
            meta.atime = atime;
        }
        if let Some(mtime) = change.mtime {
            match &node.body {
                // A stream's mtime is its last message's, unless set since.
                Body::Stream(stream) => stream.state.lock().channel.set_modified(mtime),
                Body::Group(_) => meta.mtime = mtime,
            }
        }
        meta.ctime = SystemTime::now();
        self.attr(ino)
    }

    /// Creates a group under `parent`, configured as its parent is.
    pub fn mkdir(&mut self, parent: Ino, name: &[u8], perm: u16, caller: Caller) -> Result<Ino> {
        let mut config = self.live_group(parent)?.shared.state.lock().config;
        if !self.presets.is_empty() {
            let mut path = self.path(parent);
            path.push(name);
            config = self.presets.apply(&path, config);
        }
        let shared = Group::new(config, self.memory.clone());
        self.insert(parent, name, perm, caller, Body::Group(Box::new(GroupNode::new(shared))))
    }

    /// The names leading from the root to `ino`.
    fn path(&self, mut ino: Ino) -> Vec<&[u8]> {
        let mut path = Vec::new();
        while let Some(node) = self.nodes.get(&ino).filter(|_| ino != ROOT) {
            path.push(node.name.as_slice());
            ino = node.parent;
        }
        path.reverse();
        path
    }

    /// Creates a stream under `parent`.
    pub fn create(&mut self, parent: Ino, name: &[u8], perm: u16, caller: Caller) -> Result<Ino> {
        let group = self.live_group(parent)?.shared.clone();
        let config = group.state.lock().config;
        let stream = Stream::new(group, config, name, self.memory.clone());
        self.insert(parent, name, perm, caller, Body::Stream(stream))
    }

    fn insert(&mut self, parent: Ino, name: &[u8], perm: u16, caller: Caller, body: Body) -> Result<Ino> {
        check_new_name(name)?;
        if is_reserved(name) || self.live_group(parent)?.children.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let is_group = matches!(body, Body::Group(_));
        self.nodes.insert(ino, Node::new(parent, name, Meta::new(perm, caller), body));
        self.group_mut(parent)?.hook(name, ino, is_group);
        self.touch(parent);
        Ok(ino)
    }

    /// Removes a stream. Its readers get what is left of their backlog, then end-of-file
    /// (when the returned wake-ups run).
    pub fn unlink(&mut self, parent: Ino, name: &[u8]) -> Result<Wakeups> {
        if is_reserved(name) {
            // Reserved entries last as long as their group. In an empty group removing them
            // is accepted and does nothing, so that `rm -r` (which removes every entry it
            // lists before the directory itself) completes quietly.
            return if self.group(parent)?.children.is_empty() {
                Ok(Wakeups::default())
            } else {
                Err(Errno::EPERM)
            };
        }
        let ino = self.lookup(parent, name)?;
        self.stream(ino)?;
        Ok(self.detach(ino))
    }

    /// Removes an empty group; readers of its `order` get end-of-file (when the returned
    /// wake-ups run).
    pub fn rmdir(&mut self, parent: Ino, name: &[u8]) -> Result<Wakeups> {
        if is_reserved(name) {
            return Err(Errno::ENOTDIR);
        }
        let ino = self.lookup(parent, name)?;
        if !self.group(ino)?.children.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        Ok(self.detach(ino))
    }

    /// Moves `name` in `parent` to `new_name` in `new_parent`, replacing what is there
    /// (unless `no_replace`). History and open readers move along. The returned wake-ups
    /// end the replaced stream's reads and complete the writes the new group's depth
    /// releases.
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        no_replace: bool,
    ) -> Result<Wakeups> {
        if is_reserved(name) || is_reserved(new_name) {
            return Err(Errno::EPERM);
        }
        check_new_name(new_name)?;
        let ino = self.lookup(parent, name)?;
        self.live_group(new_parent)?;
        let moving_group = matches!(self.node(ino)?.body, Body::Group(_));
        if moving_group && self.is_within(new_parent, ino) {
            return Err(Errno::EINVAL);
        }
        let mut wakeups = Wakeups::default();
        if let Ok(target) = self.lookup(new_parent, new_name) {
            if target == ino {
                return Ok(wakeups);
            }
            if no_replace {
                return Err(Errno::EEXIST);
            }
            match (&self.node(target)?.body, moving_group) {
                (Body::Group(_), false) => return Err(Errno::EISDIR),
                (Body::Stream(_), true) => return Err(Errno::ENOTDIR),
                (Body::Group(group), true) if !group.children.is_empty() => {
                    return Err(Errno::ENOTEMPTY);
                }
                _ => {}
            }
            wakeups = self.detach(target);
        }
        // Unhook from the old place, hook into the new one: both groups were looked up
        // above, so nothing fails from here on.
        self.group_mut(parent).expect("the old parent was looked up above").unhook(name, ino, moving_group);
        let new = self.group_mut(new_parent).expect("the new parent was looked up above");
        new.hook(new_name, ino, moving_group);
        let new_shared = new.shared.clone();
        let node = self.nodes.get_mut(&ino).expect("node looked up above");
        node.parent = new_parent;
        node.name = new_name.to_vec();
        node.meta.ctime = SystemTime::now();
        if let Body::Stream(stream) = &node.body {
            let config = new_shared.state.lock().config;
            wakeups.merge(stream.state.lock().rehome(new_shared, config, new_name));
        }
        self.touch(parent);
        self.touch(new_parent);
        Ok(wakeups)
    }

    /// Lists a group from cookie `offset` on (0: from the start), handing each entry to `add`
    /// until it returns true (its buffer is full). The order: `.`, `..`, the streams and
    /// subgroups in the order they were created, then `ctl` and `order` (last, so that `rm -r`
    /// reaches them when the group is already empty). An entry's cookie is its place in that
    /// order, so entries removed meanwhile shift nothing and an open listing holds nothing; a
    /// removed group lists only `.` and `..`.
    pub fn readdir(&self, ino: Ino, offset: u64, mut add: impl FnMut(Entry) -> bool) -> Result<()> {
        let group = self.group(ino)?;
        let node = self.node(ino)?;
        let mut entry = |position: u64, ino: Ino, kind: Kind, name: &[u8]| {
            position >= offset && add(Entry { ino, kind, name, next: position + 1 })
        };
        if entry(0, ino, Kind::Directory, b".") || entry(1, node.parent, Kind::Directory, b"..") {
            return Ok(());
        }
        for &child in group.listing.range(offset.saturating_sub(2)..) {
            let child_node = &self.nodes[&child];
            if entry(child + 2, child, kind_of(&child_node.body), &child_node.name) {
                return Ok(());
            }
        }
        if !node.removed {
            let _ = entry(CTL_POSITION, ino | CTL_BIT, Kind::File, CTL)
                || entry(CTL_POSITION + 1, ino | ORDER_BIT, Kind::File, ORDER);
        }
        Ok(())
    }

    /// The streams directly in a group.
    pub fn streams(&self, ino: Ino) -> Result<Vec<Arc<Stream>>> {
        let group = self.group(ino)?;
        Ok(group
            .children
            .values()
            .filter_map(|child| match &self.nodes[child].body {
                Body::Stream(stream) => Some(stream.clone()),
                Body::Group(_) => None,
            })
            .collect())
    }

    pub fn node_count(&self) -> u64 {
        self.nodes.len() as u64
    }

    /// Whether `ino` is `ancestor` or below it.
    fn is_within(&self, mut ino: Ino, ancestor: Ino) -> bool {
        loop {
            if ino == ancestor {
                return true;
            }
            if ino == ROOT {
                return false;
            }
            ino = self.nodes[&ino].parent;
        }
    }

    /// Takes a node out of its group; a stream is closed, a group's `order` too. The node is
    /// kept while the kernel knows it. Returns the end-of-file replies its readers are owed.
    fn detach(&mut self, ino: Ino) -> Wakeups {
        let node = self.nodes.get_mut(&ino).expect("detached node exists");
        node.removed = true;
        let (parent, name) = (node.parent, node.name.clone());
        let wakeups = match &node.body {
            Body::Group(group) => group.shared.state.lock().order.close(),
            Body::Stream(stream) => stream.state.lock().channel.close(),
        };
        let is_group = matches!(node.body, Body::Group(_));
        self.group_mut(parent).expect("a node's parent is a group").unhook(&name, ino, is_group);
        self.purge(ino);
        self.touch(parent);
        wakeups
    }

    /// The kernel was answered with `ino` (a lookup, create or mkdir): it knows it until it
    /// forgets it.
    pub fn remember(&self, ino: Ino) {
        if let Some(node) = self.nodes.get(&Special::node(ino)) {
            node.known.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The kernel forgot `lookups` of the lookups of `ino`. Returns whether it was the last
    /// of a removed node, which `purge` then drops.
    pub fn forget(&self, ino: Ino, lookups: u64) -> bool {
        let Some(node) = self.nodes.get(&Special::node(ino)) else { return false };
        let before = node
            .known
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| Some(n.saturating_sub(lookups)));
        node.removed && before.unwrap_or_default() <= lookups
    }

    /// Drops a removed node that the kernel no longer knows.
    pub fn purge(&mut self, ino: Ino) {
        let ino = Special::node(ino);
        if self.nodes.get(&ino).is_some_and(|n| n.removed && n.known.load(Ordering::Relaxed) == 0) {
            self.nodes.remove(&ino);
        }
    }

    fn touch(&mut self, ino: Ino) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            let now = SystemTime::now();
            node.meta.mtime = now;
            node.meta.ctime = now;
        }
    }
}
