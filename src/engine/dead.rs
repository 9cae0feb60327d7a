//! Dead messages: a queue's message that failed `maxdeliver` deliveries moves to the stream
//! `NAME.dead` beside its stream (made on first use, with the stream's owner and mode), as a
//! new message by the same writer. The move is made outside every lock but the tree's,
//! which making the stream needs.

use std::sync::{Arc, Weak};

use parking_lot::RwLock;

use super::Ino;
use super::channel::Dead;
use super::saving::{Saving, save_changes};
use super::stream::Author;
use super::tree::Tree;
use crate::storage::Message;

/// Where dead messages go: the mount's namespace, held weakly (by the ackwait timer's
/// thread, which outlives no engine).
#[derive(Clone)]
pub(super) struct Graveyard {
    pub(super) tree: Weak<RwLock<Tree>>,
    pub(super) saving: Option<Arc<Saving>>,
}

impl Graveyard {
    /// Publishes `dead`, taken out of stream `ino`'s queue, to its stream of dead messages.
    /// If that cannot be made (a name too long, a removed group), they are logged and lost.
    pub(super) fn bury(&self, ino: Ino, dead: Vec<Dead>) {
        if dead.is_empty() {
            return;
        }
        let Some(tree) = self.tree.upgrade() else { return };
        let made = {
            let mut tree = tree.write();
            let made = tree.dead_stream(ino).and_then(|dead| tree.stream(dead).cloned());
            save_changes(self.saving.as_deref(), tree);
            made
        };
        let stream = match made {
            Ok(stream) => stream,
            Err(errno) => {
                log::error!("stream {ino}: {} dead messages lost: no stream for them ({errno})", dead.len());
                return;
            }
        };
        for Dead { message, stamp } in dead {
            let author = stamp.map_or_else(Author::default, |s| Author {
                pid: s.pid,
                uid: s.uid,
                gid: s.gid,
                reader: None,
            });
            if let Err(errno) = stream.publish(Message::Borrowed(&message), author, None, None) {
                log::error!("stream {ino}: a dead message of {} bytes lost: {errno}", message.len());
            }
        }
    }
}
