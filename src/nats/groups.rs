//! Each group's JetStream stream (`<PREFIX>_g<INO>`, a subject per file) and this mount's
//! one subscription to it, from the first time a reader opens one of the group's files
//! here: an ordered consumer whose messages are committed to the mount's own streams in the
//! stream's order, and fanned out to its readers from there. A mount that only writes to a
//! group does not subscribe to it. Kept in step with the namespace after every change: the
//! mount that issued it makes, limits or removes the group's stream (so that it is done
//! once), and every mount drops its subscription to a removed group.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::stream::{Config, StorageType};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::Link;
use super::follow::{Delivery, Start, follow};
use super::names::Names;
use super::publish;
use crate::engine::config::{Depth, Replay};
use crate::engine::{Engine, Errno, GroupConfig, Ino, Via};

/// The groups this mount knows and those it follows.
#[derive(Default)]
pub struct Groups {
    /// Every group, with the depth its stream's limits were last known to have.
    known: Mutex<HashMap<Ino, Depth>>,
    /// The groups a reader opened a file of here: their subscriptions.
    feeds: Mutex<HashMap<Ino, Feed>>,
    /// Held while subscribing, so that two readers opening at once make one subscription.
    subscribing: tokio::sync::Mutex<()>,
    /// Where the changes to groups' streams go, to be made in order (see `reconcile`).
    admin: OnceLock<mpsc::UnboundedSender<Admin>>,
}

/// One group's subscription.
struct Feed {
    tasks: [JoinHandle<()>; 2],
    received: Arc<Received>,
}

/// How far a group's messages are committed here, and the writes from here waiting for
/// theirs (a write(2) returns once its message can be read on its own mount).
#[derive(Default)]
pub struct Received {
    state: Mutex<Committed>,
}

/// The last message committed, and the writes waiting for later ones, by message.
#[derive(Default)]
struct Committed {
    up_to: u64,
    waiting: BTreeMap<u64, Vec<oneshot::Sender<()>>>,
}

impl Received {
    /// Everything up to `seq` is committed.
    fn up_to(&self, seq: u64) {
        let mut state = self.state.lock();
        state.up_to = state.up_to.max(seq);
        let later = state.waiting.split_off(&(seq.saturating_add(1)));
        let due = std::mem::replace(&mut state.waiting, later);
        drop(state);
        for waiter in due.into_values().flatten() {
            let _ = waiter.send(());
        }
    }

    /// What tells that message `seq` is committed, if it is not yet.
    fn wait(&self, seq: u64) -> Option<oneshot::Receiver<()>> {
        let mut state = self.state.lock();
        if state.up_to >= seq {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        state.waiting.entry(seq).or_default().push(tx);
        Some(rx)
    }
}

impl Groups {
    /// Waits (up to `timeout`) until message `seq` of `group` is committed here.
    pub async fn received(&self, group: Ino, seq: u64, timeout: Duration) {
        let waiting = self.feeds.lock().get(&group).and_then(|feed| feed.received.wait(seq));
        if let Some(rx) = waiting
            && tokio::time::timeout(timeout, rx).await.is_err()
        {
            log::info!("message {seq} of group {group} is stored but not received here after {timeout:?}");
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
        // Its waiting writes were stored: they are answered.
        self.received.up_to(u64::MAX);
    }
}

/// Brings the streams and subscriptions in line with the groups the engine has; `mine`:
/// after a change this mount issued, which also makes, limits or removes the streams.
pub fn reconcile(link: &Arc<Link>, engine: &Engine, mine: bool) {
    let groups: HashMap<Ino, GroupConfig> = engine.groups().into_iter().collect();
    let (new, changed, gone) = {
        let mut known = link.groups.known.lock();
        let new: Vec<_> = groups.iter().filter(|(ino, _)| !known.contains_key(ino)).collect();
        let changed: Vec<_> = groups
            .iter()
            .filter(|(ino, config)| known.get(ino).is_some_and(|&d| d != config.depth))
            .collect();
        let gone: Vec<Ino> = known.keys().filter(|ino| !groups.contains_key(ino)).copied().collect();
        for (ino, config) in new.iter().chain(&changed) {
            known.insert(**ino, config.depth);
        }
        for ino in &gone {
            known.remove(ino);
        }
        (new, changed, gone)
    };
    for ino in &gone {
        drop(link.groups.feeds.lock().remove(ino));
    }
    if !mine {
        return;
    }
    // Not waited for, so that the changes that follow are not held up by JetStream's answers
    // (a write or a subscription that finds no stream makes it: `publish::acknowledged`),
    // but made in the order of the changes, by one task.
    let admin = link.groups.admin.get_or_init(|| {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(administer(link.js.clone(), rx));
        tx
    });
    for ino in gone {
        let _ = admin.send(Admin::Remove(link.names.group_stream(ino)));
    }
    for (&ino, config) in new {
        let _ = admin.send(Admin::Make(stream_config(link, ino, config)));
    }
    for (&ino, config) in changed {
        let _ = admin.send(Admin::Limit(stream_config(link, ino, config)));
    }
}

/// A change to a group's stream that this mount's namespace change asks for.
pub enum Admin {
    Make(Config),
    Limit(Config),
    Remove(String),
}

/// Makes the changes to groups' streams, in order.
async fn administer(js: jetstream::Context, mut changes: mpsc::UnboundedReceiver<Admin>) {
    while let Some(change) = changes.recv().await {
        let (what, name, outcome) = match change {
            Admin::Make(config) => (
                "make",
                config.name.clone(),
                js.get_or_create_stream(config).await.map(drop).map_err(|e| e.to_string()),
            ),
            Admin::Limit(config) => (
                "limit",
                config.name.clone(),
                js.update_stream(config).await.map(drop).map_err(|e| e.to_string()),
            ),
            Admin::Remove(name) => {
                ("remove", name.clone(), js.delete_stream(&name).await.map(drop).map_err(|e| e.to_string()))
            }
        };
        if let Err(error) = outcome {
            log::error!("cannot {what} stream {name}: {error}");
        }
    }
}

/// A reader opens a file of `group` here: follow the group from now on (and the groups it
/// receives copies from, `follow parent`), if this mount does not yet.
pub async fn read(link: &Arc<Link>, engine: &Engine, group: Ino) -> Result<(), String> {
    let _one_at_a_time = link.groups.subscribing.lock().await;
    for (ino, config) in engine.sources(group) {
        if link.groups.feeds.lock().contains_key(&ino) {
            continue;
        }
        let feed = subscribe(link, ino, &config).await.map_err(|e| format!("group {ino}: {e}"))?;
        link.groups.feeds.lock().insert(ino, feed);
    }
    Ok(())
}

/// The stream of group `ino` configured as `config` says: a subject per file, its depth as
/// a limit per subject (or, in bytes, on the stream).
pub fn stream_config(link: &Link, ino: Ino, config: &GroupConfig) -> Config {
    let limit = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let (max_messages_per_subject, max_bytes) = match config.depth {
        Depth::Unlimited => (-1, -1),
        Depth::Messages(n) => (limit(n), -1),
        // JetStream limits bytes per stream, not per subject: the whole group's.
        Depth::Bytes(n) => (-1, limit(n)),
    };
    Config {
        name: link.names.group_stream(ino),
        subjects: vec![link.names.group_subjects(ino)],
        storage: StorageType::File,
        num_replicas: link.replicas,
        max_messages_per_subject,
        max_bytes,
        ..Config::default()
    }
}

/// Makes (or finds) a group's stream and follows it from where its `replay` says a mount
/// starting now needs it: all its history, each file's last message, or what comes next.
async fn subscribe(link: &Arc<Link>, ino: Ino, config: &GroupConfig) -> Result<Feed, String> {
    let mut stream =
        link.js.get_or_create_stream(stream_config(link, ino, config)).await.map_err(|e| e.to_string())?;
    let last = stream.info().await.map_err(|e| e.to_string())?.state.last_sequence;
    let start = match config.replay {
        Replay::All => Start::All,
        Replay::Last => Start::LastPerSubject,
        Replay::Off => Start::After(last),
    };
    let received = Arc::new(Received::default());
    received.up_to(if start == Start::After(last) { last } else { 0 });
    let (deliveries, reader) = follow(
        link.js.clone(),
        link.names.group_stream(ino),
        link.names.group_subjects(ino),
        start,
        link.reconnected.clone(),
    );
    let applier = tokio::spawn(commit(link.clone(), deliveries, received.clone()));
    Ok(Feed { tasks: [reader, applier], received })
}

/// Commits a group's messages to this mount's streams, each once the namespace change its
/// writer had made last is applied here too.
async fn commit(link: Arc<Link>, mut deliveries: mpsc::Receiver<Delivery>, received: Arc<Received>) {
    let mut applied = link.namespace_applied.subscribe();
    while let Some(Delivery { message, seq }) = deliveries.recv().await {
        let headers = message.headers.as_ref();
        let needs = publish::number(headers, publish::NAMESPACE);
        if applied.wait_for(|&seq| seq >= needs).await.is_err() {
            return;
        }
        let Some(engine) = link.engine.upgrade() else { return };
        // (A queue's messages come through its own consumer, `queues.rs`.)
        if let Some(file) = Names::file_of(&message.subject) {
            let stamp = publish::stamp_of(headers, seq);
            let origin = publish::origin(headers, &link.mount);
            match engine.deliver_remote(file, message.payload.to_vec(), stamp, origin, Via::Group) {
                Ok(()) | Err(Errno::ENOENT) => {} // a file removed since
                Err(errno) => log::warn!("message {seq} of {}: not kept here: {errno}", message.subject),
            }
        }
        received.up_to(seq);
    }
}
