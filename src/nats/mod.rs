//! A mount backed by NATS JetStream (`mqfs nats://HOST:PORT[,...] MOUNTPOINT`): the engine's
//! [`Upstream`] for a tree shared by every mount of the same servers and prefix, on any
//! host. Its namespace changes go through one stream (`namespace.rs`), each group is a
//! stream with a subject per file (`groups.rs`, `names.rs`), and each mount commits what
//! those streams hold to its own in-memory engine, which serves its readers. docs/nats.md
//! has the mapping and what a NATS-backed mount refuses.
//!
//! Nothing here runs for other mounts: the runtime and the connection are made by
//! [`Nats::start`], after the daemon forked.

mod follow;
mod groups;
mod names;
mod namespace;
mod publish;
mod queues;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::{Client, ConnectOptions, Event, jetstream};
use parking_lot::Mutex;
use tokio::runtime::Runtime;
use tokio::sync::{oneshot, watch};

use names::Names;
pub use names::check_prefix;

use crate::engine::config::{DataMode, WriteMode};
use crate::engine::{
    Attr, Engine, Errno, GroupConfig, Ino, Op, Outgoing, ROOT, Result, Settle, Upstream, WriteCallback,
};
use crate::storage::{Placement, SyncPolicy};

/// What a NATS-backed mount is given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `HOST:PORT` of each server.
    pub servers: Vec<String>,
    /// What the mount's streams are named after: mounts with the same one share a tree.
    pub prefix: String,
    /// How long a write or a namespace change waits for JetStream's answer.
    pub timeout: Duration,
    /// How many servers keep each stream.
    pub replicas: usize,
}

/// The prefix when none is given.
pub const DEFAULT_PREFIX: &str = "mqfs";
/// How long an ending mount waits to hand back what it holds.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a write waits for JetStream by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Options {
    /// The options of SOURCE `nats://HOST:PORT[,HOST:PORT...]`, if it is one; each stream
    /// is kept by three servers if three or more are named, else by one.
    pub fn from_source(source: &str) -> Option<std::result::Result<Options, String>> {
        let list = source.strip_prefix("nats://")?;
        let servers: Vec<String> =
            list.split(',').map(|s| s.trim_start_matches("nats://").to_string()).collect();
        if servers.iter().any(|server| !server.contains(':') || server.starts_with(':')) {
            return Some(Err(format!("SOURCE {source}: each server is HOST:PORT")));
        }
        let replicas = if servers.len() >= 3 { 3 } else { 1 };
        Some(Ok(Options { servers, prefix: DEFAULT_PREFIX.into(), timeout: DEFAULT_TIMEOUT, replicas }))
    }
}

/// Why a group cannot have `config` on a NATS-backed mount, if it cannot.
pub fn refuses(config: &GroupConfig) -> Option<String> {
    let reason = if config.write != WriteMode::NonBlock {
        "a write cannot wait for readers on other hosts (write one, write all)"
    } else if config.data == DataMode::Static {
        "data static offsets count bytes a mount may not have (history dropped before it started)"
    } else if config.store == Placement::Disk || config.sync != SyncPolicy::Never {
        "history is kept by JetStream: store and sync are its own (replicas, its fsync)"
    } else {
        return None;
    };
    Some(format!("not on a NATS-backed mount: {reason}"))
}

pub struct Nats {
    options: Options,
    names: Names,
    /// This mount's name among all: the first part of its changes' identities.
    mount: String,
    next_op: AtomicU64,
    runtime: OnceLock<Runtime>,
    link: OnceLock<Arc<Link>>,
}

/// What the runtime's tasks share: the connection, the engine, how far each stream is
/// applied here.
pub(crate) struct Link {
    client: Client,
    js: jetstream::Context,
    names: Names,
    replicas: usize,
    timeout: Duration,
    engine: Weak<Engine>,
    /// The last namespace change applied here.
    namespace_applied: watch::Sender<u64>,
    /// Changes at every reconnection: the streams' readers start again.
    reconnected: watch::Receiver<u64>,
    /// Changes issued here, by identity, until applied: their callers wait.
    waiting: Mutex<HashMap<String, oneshot::Sender<Result<Option<Attr>>>>>,
    /// This mount's name among all (see `Nats::mount`).
    mount: String,
    groups: groups::Groups,
    queues: queues::Queues,
}

impl Nats {
    pub fn new(options: Options) -> Nats {
        let names = Names::new(&options.prefix);
        Nats {
            options,
            names,
            mount: mount_name(),
            next_op: AtomicU64::new(1),
            runtime: OnceLock::new(),
            link: OnceLock::new(),
        }
    }

    /// Connects, makes the namespace stream if it is new, applies every change it holds to
    /// `engine`, and returns once the engine has the shared tree (its groups are followed as
    /// readers open their files: `Upstream::reading`).
    pub fn start(&self, engine: &Arc<Engine>) -> std::result::Result<(), String> {
        // One worker: a write's publish, the connection's socket and the acknowledgement then
        // meet on one thread (measured: 3 context switches a write with two workers, 2 with
        // one; one mount's writes 7.8 k/s → 9.5 k/s). Applying a namespace change, which
        // may take locks a while, steps aside (`block_in_place`).
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("mqfs-nats")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the NATS client's threads: {e}"))?;
        let _entered = runtime.enter(); // the client's parts are made in its context
        let servers = self.options.servers.join(",");
        let connections = watch::Sender::new(0u64);
        let reconnected = connections.subscribe();
        let connecting = ConnectOptions::new()
            .name(format!("mqfs {}", self.mount))
            .connection_timeout(self.options.timeout)
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(100 * attempts as u64).min(Duration::from_secs(1))
            })
            .event_callback(move |event| {
                if let Event::Connected = event {
                    connections.send_modify(|n| *n += 1);
                }
                async move { log::info!("nats: {event}") }
            })
            .connect(self.options.servers.clone());
        let client =
            runtime.block_on(connecting).map_err(|e| format!("nats://{servers}: cannot connect: {e}"))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(self.options.timeout);
        let link = Arc::new(Link {
            client,
            js,
            names: self.names.clone(),
            replicas: self.options.replicas,
            timeout: self.options.timeout,
            engine: Arc::downgrade(engine),
            namespace_applied: watch::Sender::new(0),
            reconnected,
            waiting: Mutex::default(),
            mount: self.mount.clone(),
            groups: groups::Groups::default(),
            queues: queues::Queues::default(),
        });
        let root = engine.groups().into_iter().find(|(ino, _)| *ino == ROOT).map(|(_, config)| config);
        runtime.block_on(namespace::start(&link, root.unwrap_or_default()))?;
        let replies = runtime.block_on(link.client.subscribe(self.names.reply_subject(&self.mount)));
        let replies = replies.map_err(|e| format!("cannot subscribe to this mount's replies: {e}"))?;
        runtime.spawn(receive_replies(link.clone(), replies));
        let _ = self.link.set(link);
        let _ = self.runtime.set(runtime);
        Ok(())
    }

    /// The connection, if it is up now: ENOTCONN (logged) if not, as nothing can be sent.
    fn connected(&self) -> Result<(&Arc<Link>, &Runtime)> {
        let (Some(link), Some(runtime)) = (self.link.get(), self.runtime.get()) else {
            return Err(Errno::ENOTCONN);
        };
        if link.client.connection_state() != State::Connected {
            log::warn!("nats://{}: not connected: refused a change", self.options.servers.join(","));
            return Err(Errno::ENOTCONN);
        }
        Ok((link, runtime))
    }
}

impl Upstream for Nats {
    fn submit(&self, op: Op) -> Result<Option<Attr>> {
        let (link, runtime) = self.connected()?;
        let id = format!("{}-{}", self.mount, self.next_op.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        link.waiting.lock().insert(id.clone(), tx);
        let change = Publish::build()
            .payload(namespace::encode(&op).into())
            .headers(namespace::headers(&id))
            .message_id(&id);
        let outcome = runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + self.options.timeout;
            let ordered = async {
                let subject = self.names.namespace_subject();
                let missing = || Ok(namespace::stream_config(link));
                publish::acknowledged(&link.js, subject, change, deadline, missing).await?;
                rx.await.map_err(|_| Errno::EIO)?
            };
            tokio::time::timeout_at(deadline, ordered).await.unwrap_or(Err(Errno::ETIMEDOUT))
        });
        link.waiting.lock().remove(&id);
        if let Err(errno) = outcome {
            log::warn!("namespace change {id}: {errno}");
        }
        outcome
    }

    fn publish(&self, message: Outgoing, done: Option<WriteCallback>) {
        let (link, runtime) = match self.connected() {
            Ok(connected) => connected,
            Err(errno) => return answer(done, Err(errno)),
        };
        let Some(engine) = link.engine.upgrade() else { return answer(done, Err(Errno::ENOTCONN)) };
        let group = match engine.group_of(message.stream) {
            Ok(group) => group,
            Err(errno) => return answer(done, Err(errno)),
        };
        let subject = self.names.file_subject(group, message.stream);
        let headers = publish::headers(&message, *link.namespace_applied.borrow(), &self.mount);
        let id = format!("{}-{}", self.mount, self.next_op.fetch_add(1, Ordering::Relaxed));
        let link = link.clone();
        runtime.spawn(async move {
            let sent = Publish::build().payload(message.message.into()).headers(headers).message_id(id);
            let deadline = tokio::time::Instant::now() + link.timeout;
            // The group's stream to make, if the file is still in the group.
            let missing = || {
                let engine = link.engine.upgrade().ok_or(Errno::ENOENT)?;
                if engine.group_of(message.stream) != Ok(group) {
                    return Err(Errno::ENOENT);
                }
                let (_, config) = *engine.sources(group).first().ok_or(Errno::ENOENT)?;
                Ok(groups::stream_config(&link, group, &config))
            };
            let outcome = async {
                let ack = publish::acknowledged(&link.js, subject, sent, deadline, missing).await?;
                link.groups.received(group, ack.sequence, link.timeout).await;
                Ok(())
            };
            let outcome = outcome.await;
            if let Err(errno) = outcome {
                log::warn!("a write to file {} was not published: {errno}", message.stream);
            }
            answer(done, outcome);
        });
    }

    fn reply(&self, to: Arc<str>, message: Vec<u8>, done: Option<WriteCallback>) {
        let (link, runtime) = match self.connected() {
            Ok(connected) => connected,
            Err(errno) => return answer(done, Err(errno)),
        };
        let Some((mount, headers)) = publish::reply_to(&to) else { return answer(done, Err(Errno::EIO)) };
        let subject = self.names.reply_subject(mount);
        let client = link.client.clone();
        runtime.spawn(async move {
            // Not stored: lost with its requester's mount, as the requester's wait would be.
            let sent = client.publish_with_headers(subject, headers, message.into()).await;
            answer(done, sent.map_err(|_| Errno::ENOTCONN));
        });
    }

    fn reading(&self, group: Ino) {
        let Ok((link, runtime)) = self.connected() else { return };
        let Some(engine) = link.engine.upgrade() else { return };
        // (The timer is made in the runtime: this is a FUSE worker thread.)
        let subscribing =
            async { tokio::time::timeout(self.options.timeout, groups::read(link, &engine, group)).await };
        match runtime.block_on(subscribing) {
            Ok(Ok(())) => {}
            Ok(Err(error)) => log::warn!("a reader opened, but its messages cannot come here: {error}"),
            Err(_) => log::warn!("group {group}: no subscription within {:?}", self.options.timeout),
        }
    }

    fn wants(&self, stream: Ino) {
        if let (Some(link), Some(runtime)) = (self.link.get(), self.runtime.get()) {
            link.queues.wants(link, runtime.handle(), stream);
        }
    }

    fn settler(&self, stream: Ino) -> Settle {
        match (self.link.get(), self.runtime.get()) {
            (Some(link), Some(runtime)) => queues::Queues::settler(link, runtime.handle().clone(), stream),
            _ => Arc::new(|_, _| {}),
        }
    }

    fn close(&self) {
        let (Some(link), Some(runtime)) = (self.link.get(), self.runtime.get()) else { return };
        let owed = async {
            link.queues.hand_back().await;
            let _ = link.client.flush().await;
        };
        if runtime.block_on(async { tokio::time::timeout(CLOSE_TIMEOUT, owed).await }).is_err() {
            log::warn!("the servers did not take what this mount owed them within {CLOSE_TIMEOUT:?}");
        }
    }

    fn refuses(&self, config: &GroupConfig) -> Option<String> {
        refuses(config)
    }
}

/// Gives a write its outcome, if anyone waits for it.
fn answer(done: Option<WriteCallback>, outcome: Result<()>) {
    if let Some(done) = done {
        done(outcome)
    }
}

/// Hands the replies other mounts send to this mount's requesters.
async fn receive_replies(link: Arc<Link>, mut replies: async_nats::Subscriber) {
    use futures_util::StreamExt;
    while let Some(reply) = replies.next().await {
        let Some(engine) = link.engine.upgrade() else { return };
        let Some((file, reader)) = publish::reply_for(reply.headers.as_ref()) else { continue };
        if let Err(errno) = engine.deliver_reply(file, reader, &reply.payload) {
            log::info!("a reply to a request on file {file} is dropped: {errno}");
        }
    }
}

/// A name for this mount no other has: random.
fn mount_name() -> String {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into the buffer.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    let random = if n == bytes.len() as isize {
        u64::from_le_bytes(bytes)
    } else {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        now.as_nanos() as u64 ^ u64::from(std::process::id()) << 32
    };
    format!("{random:016x}")
}
