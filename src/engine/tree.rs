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
//!
//! Besides groups and streams the tree holds symbolic links (their target), and FIFOs,
//! sockets and device nodes (their type and device number: the kernel serves their I/O).
//! Anything but a group may have several names (hard links), in any groups. A stream's home
//! is its oldest remaining name: that group's configuration applies to it and its `order`
//! records its writes under that name; its other names are just names.
//!
//! A group that follows its parent (`follow parent`) receives a copy of each of its
//! parent's messages; [`follow`] keeps the streams' lists of where a write is copied in step
//! with the namespace.
//!
//! Every change to what the catalogue keeps marks the nodes it changed or removed, which the
//! engine takes after the operation and saves ([`saved`]: the records, and the tree rebuilt
//! from them at mount).

mod follow;
mod saved;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::channel::{Channel, Wakeups};
use super::config::{DataMode, GroupConfig};
use super::errno::{Errno, Result};
use super::memory::Memory;
use super::presets::Presets;
use super::stream::{DEAD_SUFFIX, Group, Stream, move_history, policy_of};
use super::upstream::{Uplink, Upstream};
use crate::storage::{Log, LogId, LogKind, Store};

pub use saved::Changes;
use saved::Tracked;

pub type Ino = u64;

pub const ROOT: Ino = 1;
const CTL_BIT: Ino = 1 << 62;
const ORDER_BIT: Ino = 1 << 61;
pub const CTL: &[u8] = b"ctl";
pub const ORDER: &[u8] = b"order";
pub const NAME_MAX: usize = 255;
/// The longest symbolic link target (Linux's PATH_MAX, its terminating NUL excluded).
pub const TARGET_MAX: usize = 4095;

/// Where readdir's cookies place `ctl` and `order`: after every child's (an entry number plus
/// 2, and entry numbers, drawn from the inode numbers, never reach the marker bits).
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    Directory,
    File,
    Symlink,
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
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
    /// The device number of a device node (0 for anything else).
    pub rdev: u32,
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
}

/// Who asks: the owner of what they create.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    fn new(perm: u16, owner: Caller) -> Meta {
        let now = SystemTime::now();
        Meta { perm: perm & 0o7777, uid: owner.uid, gid: owner.gid, atime: now, mtime: now, ctime: now }
    }
}

pub struct GroupNode {
    pub children: BTreeMap<Vec<u8>, Ino>,
    /// The same children by entry number, which is their order of creation: readdir's
    /// cookies are these numbers, so removals during a listing shift nothing. A node's first
    /// name has its inode number as its entry number, each further name (a hard link) a
    /// number of its own, which `linked` maps to the inode number.
    listing: BTreeSet<u64>,
    linked: HashMap<u64, Ino>,
    pub shared: Arc<Group>,
    subgroups: u32,
}

pub enum Body {
    /// Boxed: streams, the many, then take no room for a group's maps.
    Group(Box<GroupNode>),
    Stream(Arc<Stream>),
    /// A symbolic link's target: any bytes; the kernel resolves it. Boxed as a group's maps
    /// are, so that a node's body stays two words.
    Symlink(Box<Vec<u8>>),
    /// A FIFO, socket or device node: the kernel serves its I/O; the tree keeps its type
    /// and device number.
    Plain {
        kind: Kind,
        rdev: u32,
    },
}

/// One name of a node: where it is, and its place in that group's listing.
struct Link {
    parent: Ino,
    name: Vec<u8>,
    entry: u64,
}

pub struct Node {
    /// The oldest name (a stream's home); after removal, the last one it had. Further names
    /// are in `Tree::more_names`.
    home: Link,
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
        GroupNode {
            children: BTreeMap::new(),
            listing: BTreeSet::new(),
            linked: HashMap::new(),
            shared,
            subgroups: 0,
        }
    }

    fn hook(&mut self, name: &[u8], entry: u64, ino: Ino, is_group: bool) {
        self.children.insert(name.to_vec(), ino);
        self.listing.insert(entry);
        if entry != ino {
            self.linked.insert(entry, ino);
        }
        self.subgroups += is_group as u32;
    }

    /// The inode number of the entry numbered `entry`.
    fn ino_at(&self, entry: u64) -> Ino {
        self.linked.get(&entry).copied().unwrap_or(entry)
    }

    fn unhook(&mut self, name: &[u8], entry: u64, is_group: bool) {
        self.children.remove(name);
        self.listing.remove(&entry);
        self.linked.remove(&entry);
        self.subgroups -= is_group as u32;
    }
}

impl Node {
    fn new(home: Link, meta: Meta, body: Body) -> Node {
        Node { home, meta, body, known: AtomicU64::new(0), removed: false }
    }

    fn is_group(&self) -> bool {
        matches!(self.body, Body::Group(_))
    }
}

pub struct Tree {
    nodes: HashMap<Ino, Node>,
    /// The further names (hard links) of the nodes that have them, oldest first: few do, so
    /// a node keeps only its first.
    more_names: HashMap<Ino, Vec<Link>>,
    /// The next inode number; a hard link's entry number is drawn from it too.
    next_ino: Ino,
    memory: Arc<Memory>,
    /// Where the channels' logs come from.
    store: Arc<dyn Store>,
    /// What groups created at given paths start with (see `presets.rs`).
    pub presets: Presets,
    /// Where a shared mount's streams publish their writes (`upstream.rs`).
    pub upstream: Option<Arc<dyn Upstream>>,
    /// What changed since the engine last took it, once it tracks changes (a mount whose
    /// namespace is saved; see `saved.rs`).
    tracked: Option<Tracked>,
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

/// A new channel's log: a stream's or a group's `order`, kept where and as the group's
/// configuration says.
fn log_of(store: &dyn Store, node: Ino, kind: LogKind, config: &GroupConfig) -> Result<Box<dyn Log>> {
    let id = LogId { node, kind };
    store.log(id, config.store, policy_of(id, config.sync))
}

fn kind_of(body: &Body) -> Kind {
    match body {
        Body::Group(_) => Kind::Directory,
        Body::Stream(_) => Kind::File,
        Body::Symlink(_) => Kind::Symlink,
        Body::Plain { kind, .. } => *kind,
    }
}

impl Tree {
    /// A tree of only the root group, whose channels' logs come from `store` (the root's
    /// `order` fails to open: that errno).
    pub fn new(
        root_config: GroupConfig,
        owner: Caller,
        perm: u16,
        memory: Arc<Memory>,
        store: Arc<dyn Store>,
    ) -> Result<Tree> {
        let order = log_of(&*store, ROOT, LogKind::Order, &root_config)?;
        let body = Body::Group(Box::new(GroupNode::new(Group::new(root_config, order, memory.clone()))));
        let root =
            Node::new(Link { parent: ROOT, name: Vec::new(), entry: ROOT }, Meta::new(perm, owner), body);
        Ok(Tree {
            nodes: HashMap::from([(ROOT, root)]),
            more_names: HashMap::new(),
            next_ino: ROOT + 1,
            memory,
            store,
            presets: Presets::default(),
            upstream: None,
            tracked: None,
        })
    }

    /// The group a node's home name is in (a stream's group).
    pub fn home_group(&self, ino: Ino) -> Result<Ino> {
        Ok(self.node(ino)?.home.parent)
    }

    /// The store the channels' logs come from.
    pub fn store(&self) -> &dyn Store {
        &*self.store
    }

    pub fn node(&self, ino: Ino) -> Result<&Node> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    pub fn group(&self, ino: Ino) -> Result<&GroupNode> {
        match &self.node(ino)?.body {
            Body::Group(group) => Ok(group),
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// A group that is still in the tree: names can be looked up and created in it.
    fn live_group(&self, ino: Ino) -> Result<&GroupNode> {
        if self.node(ino)?.removed { Err(Errno::ENOENT) } else { self.group(ino) }
    }

    fn group_mut(&mut self, ino: Ino) -> Result<&mut GroupNode> {
        match &mut self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?.body {
            Body::Group(group) => Ok(group),
            _ => Err(Errno::ENOTDIR),
        }
    }

    pub fn stream(&self, ino: Ino) -> Result<&Arc<Stream>> {
        match &self.node(ino)?.body {
            Body::Stream(stream) => Ok(stream),
            Body::Group(_) => Err(Errno::EISDIR),
            // The kernel follows symbolic links and serves FIFOs, sockets and devices itself.
            Body::Symlink(_) | Body::Plain { .. } => Err(Errno::EINVAL),
        }
    }

    /// A symbolic link's target.
    pub fn readlink(&self, ino: Ino) -> Result<&[u8]> {
        match &self.node(Special::node(ino))?.body {
            Body::Symlink(target) if Special::of(ino) == Special::Node(ino) => Ok(target),
            _ => Err(Errno::EINVAL),
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
                let names = 1 + self.more_names.get(&ino).map_or(0, Vec::len) as u32;
                let (size, links, rdev, mtime) = match &node.body {
                    Body::Group(group) => (0, 2 + group.subgroups, 0, meta.mtime),
                    Body::Stream(stream) => {
                        let state = stream.state.lock();
                        (file_size(&state.channel, &state.config), names, 0, state.channel.modified())
                    }
                    Body::Symlink(target) => (target.len() as u64, names, 0, meta.mtime),
                    Body::Plain { rdev, .. } => (0, names, *rdev, meta.mtime),
                };
                let nlink = if node.removed { 0 } else { links };
                Ok(Attr {
                    ino,
                    kind: kind_of(&node.body),
                    size,
                    perm: meta.perm,
                    nlink,
                    uid: meta.uid,
                    gid: meta.gid,
                    rdev,
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
            self.mark(ino);
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
                _ => meta.mtime = mtime,
            }
        }
        meta.ctime = SystemTime::now();
        self.mark(node_ino);
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
        self.check_free(parent, name)?;
        let order = log_of(&*self.store, self.next_ino, LogKind::Order, &config)?;
        let shared = Group::new(config, order, self.memory.clone());
        let ino = self.insert(parent, name, perm, caller, Body::Group(Box::new(GroupNode::new(shared))))?;
        self.group_arrived(ino);
        Ok(ino)
    }

    /// Creates a symbolic link to `target` under `parent`.
    pub fn symlink(&mut self, parent: Ino, name: &[u8], target: &[u8], caller: Caller) -> Result<Ino> {
        if target.len() > TARGET_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        self.insert(parent, name, 0o777, caller, Body::Symlink(Box::new(target.to_vec())))
    }

    /// Creates a node of `kind` under `parent`: a stream for a regular file, else a FIFO,
    /// socket or device node with device number `rdev`.
    pub fn mknod(
        &mut self,
        parent: Ino,
        name: &[u8],
        kind: Kind,
        perm: u16,
        rdev: u32,
        caller: Caller,
    ) -> Result<Ino> {
        match kind {
            Kind::File => self.create(parent, name, perm, caller),
            Kind::Fifo | Kind::Socket | Kind::CharDevice | Kind::BlockDevice => {
                let rdev = if matches!(kind, Kind::CharDevice | Kind::BlockDevice) { rdev } else { 0 };
                self.insert(parent, name, perm, caller, Body::Plain { kind, rdev })
            }
            Kind::Directory | Kind::Symlink => Err(Errno::EINVAL),
        }
    }

    /// Gives `ino` another name, `name` in `parent`. Groups, `ctl` and `order` cannot have
    /// more than one (`EPERM`), nor can a removed node gain one (`ENOENT`).
    pub fn link(&mut self, ino: Ino, parent: Ino, name: &[u8]) -> Result<Ino> {
        let Special::Node(ino) = Special::of(ino) else { return Err(Errno::EPERM) };
        let node = self.node(ino)?;
        if node.is_group() {
            return Err(Errno::EPERM);
        }
        if node.removed {
            return Err(Errno::ENOENT);
        }
        self.check_free(parent, name)?;
        let entry = self.next_ino;
        self.next_ino += 1;
        self.group_mut(parent)?.hook(name, entry, ino, false);
        self.more_names.entry(ino).or_default().push(Link { parent, name: name.to_vec(), entry });
        self.nodes.get_mut(&ino).expect("node looked up above").meta.ctime = SystemTime::now();
        self.mark(ino);
        self.touch(parent);
        Ok(ino)
    }

    /// Every stream, by inode number.
    pub fn stream_inos(&self) -> Vec<Ino> {
        let streams =
            self.nodes.iter().filter(|(_, node)| matches!(node.body, Body::Stream(_)) && !node.removed);
        streams.map(|(&ino, _)| ino).collect()
    }

    /// Every group, by inode number.
    pub fn groups(&self) -> Vec<Ino> {
        self.nodes.iter().filter(|(_, node)| node.is_group() && !node.removed).map(|(&ino, _)| ino).collect()
    }

    /// The names leading from the root to `ino`.
    pub fn path(&self, mut ino: Ino) -> Vec<&[u8]> {
        let mut path = Vec::new();
        while let Some(node) = self.nodes.get(&ino).filter(|_| ino != ROOT) {
            path.push(node.home.name.as_slice());
            ino = node.home.parent;
        }
        path.reverse();
        path
    }

    /// Creates a stream under `parent`.
    pub fn create(&mut self, parent: Ino, name: &[u8], perm: u16, caller: Caller) -> Result<Ino> {
        let group = self.live_group(parent)?.shared.clone();
        let config = group.state.lock().config;
        self.check_free(parent, name)?;
        let log = log_of(&*self.store, self.next_ino, LogKind::Stream, &config)?;
        let uplink = self.upstream.clone().map(|upstream| Uplink { upstream, ino: self.next_ino });
        let stream = Stream::new(group, config, name, log, self.memory.clone(), uplink);
        stream.state.lock().place_acks(&*self.store, self.next_ino);
        let ino = self.insert(parent, name, perm, caller, Body::Stream(stream))?;
        self.stream_arrived(ino);
        Ok(ino)
    }

    /// The stream of dead messages beside stream `ino`: `NAME.dead` in its home group, made
    /// on first use with the stream's owner and mode.
    pub fn dead_stream(&mut self, ino: Ino) -> Result<Ino> {
        let node = self.node(ino)?;
        let (parent, name) = (node.home.parent, [&node.home.name[..], DEAD_SUFFIX].concat());
        let (perm, owner) = (node.meta.perm, Caller { uid: node.meta.uid, gid: node.meta.gid });
        match self.lookup(parent, &name) {
            Err(Errno::ENOENT) => self.create(parent, &name, perm, owner),
            found => found,
        }
    }

    /// Whether `name` may be given to something new in `parent`.
    fn check_free(&self, parent: Ino, name: &[u8]) -> Result<()> {
        check_new_name(name)?;
        if is_reserved(name) || self.live_group(parent)?.children.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }

    /// Adds a node under `parent`, owned by the caller, or, in a setgid group, by the caller
    /// and the group's gid, a subgroup then being setgid too (as on Linux file systems).
    fn insert(&mut self, parent: Ino, name: &[u8], mut perm: u16, caller: Caller, body: Body) -> Result<Ino> {
        self.check_free(parent, name)?;
        let is_group = matches!(body, Body::Group(_));
        let mut owner = caller;
        let parent_meta = &self.node(parent)?.meta;
        if parent_meta.perm & 0o2000 != 0 {
            owner.gid = parent_meta.gid;
            if is_group {
                perm |= 0o2000;
            }
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let home = Link { parent, name: name.to_vec(), entry: ino };
        self.nodes.insert(ino, Node::new(home, Meta::new(perm, owner), body));
        self.group_mut(parent)?.hook(name, ino, ino, is_group);
        self.mark(ino);
        self.touch(parent);
        Ok(ino)
    }

    /// Removes a name of anything but a group. Removing a stream's last name closes it: its
    /// readers get what is left of their backlog, then end-of-file (when the returned
    /// wake-ups run).
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
        if self.node(ino)?.is_group() {
            return Err(Errno::EISDIR);
        }
        Ok(self.remove_name(ino, parent, name))
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
        Ok(self.remove_name(ino, parent, name))
    }

    /// Moves `name` in `parent` to `new_name` in `new_parent`, replacing what is there
    /// (unless `no_replace`). A stream moved by its home name takes its history and open
    /// readers along into the new group. The returned wake-ups end the replaced stream's
    /// reads and complete the writes the new group's depth releases.
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
        let moving_group = self.node(ino)?.is_group();
        if moving_group && self.is_within(new_parent, ino) {
            return Err(Errno::EINVAL);
        }
        let mut wakeups = Wakeups::default();
        let target = self.lookup(new_parent, new_name).ok();
        if target == Some(ino) {
            return Ok(wakeups);
        }
        if let Some(target) = target {
            if no_replace {
                return Err(Errno::EEXIST);
            }
            match (&self.node(target)?.body, moving_group) {
                (Body::Group(_), false) => return Err(Errno::EISDIR),
                (Body::Group(group), true) if !group.children.is_empty() => {
                    return Err(Errno::ENOTEMPTY);
                }
                (Body::Group(_), true) => {}
                (_, true) => return Err(Errno::ENOTDIR),
                (_, false) => {}
            }
        }
        // Nothing fails from here on. What moves by its home is unwired first, while the
        // tree is as its lists say (`follow`).
        let node = &self.nodes[&ino];
        let is_home = node.home.parent == parent && node.home.name == name;
        if is_home && moving_group && self.follows(ino) {
            self.unfollow(ino);
        } else if is_home && !moving_group {
            self.stream_moving(ino, target);
        }
        if let Some(target) = target {
            wakeups = self.remove_name(target, new_parent, new_name);
        }
        if is_home && !moving_group {
            self.copies_for(ino, new_parent, new_name);
        }
        // Unhook from the old place, hook into the new one: both groups were looked up above.
        let node = self.nodes.get_mut(&ino).expect("node looked up above");
        node.meta.ctime = SystemTime::now();
        let link = std::iter::once(&mut node.home)
            .chain(self.more_names.get_mut(&ino).into_iter().flatten())
            .find(|link| link.parent == parent && link.name == name)
            .expect("the name was looked up above");
        link.parent = new_parent;
        link.name = new_name.to_vec();
        let entry = link.entry;
        self.group_mut(parent).expect("the old parent was looked up above").unhook(name, entry, moving_group);
        let new = self.group_mut(new_parent).expect("the new parent was looked up above");
        new.hook(new_name, entry, ino, moving_group);
        if is_home && moving_group {
            self.group_arrived(ino);
        } else if is_home {
            wakeups.merge(self.rehome(ino));
            self.stream_moved(ino);
        }
        self.mark(ino);
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
        if entry(0, ino, Kind::Directory, b".") || entry(1, node.home.parent, Kind::Directory, b"..") {
            return Ok(());
        }
        for &number in group.listing.range(offset.saturating_sub(2)..) {
            let child = group.ino_at(number);
            let kind = kind_of(&self.nodes[&child].body);
            if entry(number + 2, child, kind, self.name_at(child, number)) {
                return Ok(());
            }
        }
        if !node.removed {
            let _ = entry(CTL_POSITION, ino | CTL_BIT, Kind::File, CTL)
                || entry(CTL_POSITION + 1, ino | ORDER_BIT, Kind::File, ORDER);
        }
        Ok(())
    }

    /// The streams whose home is a group, those its configuration applies to, with their
    /// inode numbers.
    pub fn streams(&self, ino: Ino) -> Result<Vec<(Ino, Arc<Stream>)>> {
        let group = self.group(ino)?;
        Ok(group
            .listing
            .iter()
            .filter_map(|&entry| {
                let child = group.ino_at(entry);
                match &self.nodes[&child] {
                    Node { body: Body::Stream(stream), home, .. } if home.entry == entry => {
                        Some((child, stream.clone()))
                    }
                    _ => None,
                }
            })
            .collect())
    }

    /// How many subgroups a group has.
    pub fn subgroups(&self, ino: Ino) -> Result<u64> {
        Ok(self.group(ino)?.subgroups.into())
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
            ino = self.nodes[&ino].home.parent;
        }
    }

    /// Removes the name `name` in `parent` of `ino`. With other names left, a stream whose
    /// home it was moves to the oldest of them (its group's configuration and `order`).
    /// Without, the node is detached.
    fn remove_name(&mut self, ino: Ino, parent: Ino, name: &[u8]) -> Wakeups {
        let home = &self.nodes[&ino].home;
        if home.parent == parent && home.name == name {
            self.stream_leaving(ino);
        }
        let Some(others) = self.more_names.get_mut(&ino) else { return self.detach(ino) };
        let node = self.nodes.get_mut(&ino).expect("a named node exists");
        node.meta.ctime = SystemTime::now();
        let is_home = node.home.parent == parent && node.home.name == name;
        let gone = if is_home {
            std::mem::replace(&mut node.home, others.remove(0))
        } else {
            let at = others.iter().position(|link| link.parent == parent && link.name == name);
            others.remove(at.expect("the name is one of the node's"))
        };
        if others.is_empty() {
            self.more_names.remove(&ino);
        }
        self.group_mut(parent).expect("a name's parent is a group").unhook(name, gone.entry, false);
        self.mark(ino);
        self.touch(parent);
        if !is_home {
            return Wakeups::default();
        }
        let wakeups = self.rehome(ino);
        self.stream_arrived(ino);
        wakeups
    }

    /// The name of `ino` that its group lists at `entry`.
    fn name_at(&self, ino: Ino, entry: u64) -> &[u8] {
        let home = &self.nodes[&ino].home;
        let mut names = std::iter::once(home).chain(self.more_names.get(&ino).into_iter().flatten());
        &names.find(|link| link.entry == entry).expect("a listed entry is one of its node's names").name
    }

    /// Puts a stream in step with its home name: its group, configuration and `order` line.
    fn rehome(&self, ino: Ino) -> Wakeups {
        let node = &self.nodes[&ino];
        let Body::Stream(stream) = &node.body else { return Wakeups::default() };
        let group = self.group(node.home.parent).expect("a home is a group").shared.clone();
        let config = group.state.lock().config;
        // The copies of its new home, set with its new group: a write sees both or neither.
        let followers = self.followers_list(ino);
        let mut state = stream.state.lock();
        state.followers = followers;
        if state.config.store != config.store {
            let id = LogId { node: ino, kind: LogKind::Stream };
            let from = state.config.store;
            move_history(&mut state.channel, &*self.store, id, from, &config);
        }
        let wakeups = state.rehome(group, config, &node.home.name);
        state.place_acks(&*self.store, ino);
        wakeups
    }

    /// Takes a node's last name out of its group; a stream is closed, a group's `order`
    /// too. The node is kept while the kernel knows it. Returns the end-of-file replies its
    /// readers are owed.
    fn detach(&mut self, ino: Ino) -> Wakeups {
        let node = self.nodes.get_mut(&ino).expect("detached node exists");
        node.removed = true;
        let (parent, name, entry) = (node.home.parent, node.home.name.clone(), node.home.entry);
        let wakeups = match &node.body {
            Body::Group(group) => group.shared.state.lock().order.close(),
            Body::Stream(stream) => stream.state.lock().channel.close(),
            Body::Symlink(_) | Body::Plain { .. } => Wakeups::default(),
        };
        let is_group = node.is_group();
        self.group_mut(parent).expect("a node's parent is a group").unhook(&name, entry, is_group);
        self.mark_removed(ino);
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

    /// Drops a removed node that the kernel no longer knows, and its channel's log.
    pub fn purge(&mut self, ino: Ino) {
        let ino = Special::node(ino);
        if self.nodes.get(&ino).is_some_and(|n| n.removed && n.known.load(Ordering::Relaxed) == 0) {
            let node = self.nodes.remove(&ino).expect("the node was found above");
            match node.body {
                Body::Group(_) => self.mark_purged(LogId { node: ino, kind: LogKind::Order }),
                Body::Stream(stream) => {
                    self.mark_purged(LogId { node: ino, kind: LogKind::Stream });
                    if stream.state.lock().channel.has_ack_log() {
                        self.mark_purged(LogId { node: ino, kind: LogKind::Acks });
                    }
                }
                Body::Symlink(_) | Body::Plain { .. } => {}
            }
        }
    }

    fn touch(&mut self, ino: Ino) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            let now = SystemTime::now();
            node.meta.mtime = now;
            node.meta.ctime = now;
            self.mark(ino);
        }
    }
}
