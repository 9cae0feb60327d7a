//! Saving the namespace to the mount's catalogue. The changes an operation made are queued
//! while it still holds the tree's lock, so the queue has them in the order they were made;
//! they are saved once the lock is released, and whoever saves takes everything queued by
//! then (one write, one sync, for all of them). A slow save (a sync, a compaction) so holds
//! no lock that namespace operations need. A save that fails is logged and kept for the
//! next: the namespace in memory stays as it is.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard, RwLockWriteGuard};

use super::Ino;
use super::tree::{Changes, Tree};
use crate::storage::catalogue::NodeRecord;
use crate::storage::{Catalogue, LogId, Store};

pub(super) struct Saving {
    catalogue: Box<dyn Catalogue>,
    queue: Mutex<Pending>,
    /// Held while saving, so that saves are made one at a time, in the queue's order.
    saver: Mutex<()>,
    /// Where a purged node's log is deleted from, once the catalogue no longer has it.
    store: Arc<dyn Store>,
}

/// What the catalogue was not given yet: the last state of each node (None: it is gone),
/// the logs to delete once it has been, and whether a change asked to be durable.
#[derive(Default)]
pub(super) struct Pending {
    nodes: BTreeMap<Ino, Option<NodeRecord>>,
    logs: Vec<LogId>,
    durable: bool,
}

impl Pending {
    pub(super) fn add(&mut self, changes: Changes) {
        for record in changes.saved {
            self.nodes.insert(record.ino, Some(record));
        }
        for ino in changes.removed {
            self.nodes.insert(ino, None);
        }
        self.logs.extend(changes.purged);
        self.durable |= changes.durable;
    }
}

/// Saves what the operation that holds `tree` changed, after releasing the tree (nothing
/// without `saving`).
pub(super) fn save_changes(saving: Option<&Saving>, mut tree: RwLockWriteGuard<Tree>) {
    let Some(saving) = saving else { return };
    let changes = tree.take_changes();
    if changes.is_empty() {
        return;
    }
    saving.queue().add(changes);
    drop(tree);
    saving.save();
}

impl Saving {
    pub(super) fn new(catalogue: Box<dyn Catalogue>, store: Arc<dyn Store>) -> Saving {
        Saving { catalogue, queue: Mutex::default(), saver: Mutex::new(()), store }
    }

    /// The queue, to add to under the tree's lock.
    pub(super) fn queue(&self) -> MutexGuard<'_, Pending> {
        self.queue.lock()
    }

    /// Saves everything queued, then has the logs of purged nodes deleted. Returns once
    /// what was queued before the call is saved (or failed to be).
    pub(super) fn save(&self) {
        let _saver = self.saver.lock();
        let Pending { nodes, logs, durable } = std::mem::take(&mut *self.queue.lock());
        if nodes.is_empty() && logs.is_empty() {
            return; // a save before this one took it
        }
        let (mut changed, mut removed) = (Vec::new(), Vec::new());
        for (ino, record) in nodes {
            match record {
                Some(record) => changed.push(record),
                None => removed.push(ino),
            }
        }
        if let Err(errno) = self.catalogue.save(&changed, &removed, durable) {
            log::error!("cannot save the namespace ({errno}); trying again with the next change");
            // What was queued since is newer.
            let mut queue = self.queue.lock();
            for record in changed {
                queue.nodes.entry(record.ino).or_insert(Some(record));
            }
            for ino in removed {
                queue.nodes.entry(ino).or_insert(None);
            }
            queue.logs.extend(logs);
            queue.durable |= durable;
            return;
        }
        for id in logs {
            self.store.remove_log(id);
        }
    }
}
