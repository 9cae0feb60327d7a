//! The namespace as a JetStream stream of changes (`<PREFIX>_ns`): every mount publishes
//! its namespace changes there and applies everyone's in the stream's order, from the first
//! (a mount starting replays the whole stream before it serves). A change's issuer waits
//! for its own application, which gives its system call's outcome.
//!
//! Why a stream of changes rather than a key-value bucket of nodes: a bucket keeps each key
//! alone, but a namespace change is not one key (a rename takes a name from one group and
//! gives it in another; two mounts creating one name must not both succeed). Applied in one
//! order everywhere, changes need no conflict resolution: every mount makes the same nodes
//! with the same inode numbers and refuses the same changes.

use std::sync::Arc;

use async_nats::jetstream::message::PublishMessage as Publish;
use async_nats::jetstream::stream::{Config, StorageType};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::Link;
use super::follow::{Delivery, Start, follow};
use super::{groups, publish};
use crate::engine::{Errno, GroupConfig, Op, ROOT, ctl};

/// How long one try to make the namespace stream may take.
const TRY: std::time::Duration = std::time::Duration::from_secs(1);

/// The header naming a change's issuer and number: its issuer waits for it by that.
const ID: &str = "Mq-Op";

/// A change as stored: TOML, so that `nats stream view` shows it readably.
#[derive(Serialize, Deserialize)]
struct Record {
    op: Op,
}

pub fn encode(op: &Op) -> Vec<u8> {
    toml::to_string(&Record { op: op.clone() }).expect("an Op is TOML").into_bytes()
}

pub fn decode(bytes: &[u8]) -> Result<Op, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    toml::from_str::<Record>(text).map(|record| record.op).map_err(|e| e.to_string())
}

/// Makes the namespace stream if there is none (the first mount's root configuration its
/// first change), then applies every change stored so far, and returns once applied; later
/// changes are applied as they come.
pub async fn start(link: &Arc<Link>, root: GroupConfig) -> Result<(), String> {
    let name = link.names.namespace_stream();
    let config = stream_config(link);
    let cannot = |e: &dyn std::fmt::Display| format!("namespace stream {name}: {e}");
    // A new cluster may not take it at once (no meta leader yet, or one busy making the same
    // stream for another mount starting): again, until the timeout.
    // (Seen: a create of an R3 stream two mounts made at once timing out.) Each try is given
    // a second, which JetStream takes far less than when it answers at all.
    let deadline = tokio::time::Instant::now() + link.timeout;
    let mut stream = loop {
        let making = tokio::time::timeout(TRY, link.js.get_or_create_stream(config.clone())).await;
        match making.map_err(|_| "no answer".to_string()).and_then(|made| made.map_err(|e| e.to_string())) {
            Ok(stream) => break stream,
            Err(e) if tokio::time::Instant::now() < deadline => log::info!("{}; again", cannot(&e)),
            Err(e) => return Err(cannot(&e)),
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    if stream.info().await.map_err(|e| cannot(&e))?.state.last_sequence == 0 {
        // Only the first: a mount starting at the same time may have made it.
        let text = ctl::render_config(&root).into_bytes();
        let op = Op::Ctl { group: ROOT, uid: 0, text };
        let first = Publish::build().payload(encode(&op).into()).expected_last_sequence(0);
        let subject = link.names.namespace_subject();
        match publish::acknowledged(&link.js, subject, first, deadline, || Ok(config.clone())).await {
            // EEXIST: another mount's first change came first.
            Ok(_) | Err(Errno::EEXIST) => {}
            Err(errno) => return Err(cannot(&errno)),
        }
    }
    let last = stream.info().await.map_err(|e| cannot(&e))?.state.last_sequence;
    // Both run for as long as the mount: the changes are read and applied until it ends.
    let (deliveries, _reading) = follow(
        link.js.clone(),
        name.clone(),
        link.names.namespace_subject(),
        Start::All,
        link.reconnected.clone(),
    );
    tokio::spawn(apply(link.clone(), deliveries, last));
    let mut applied = link.namespace_applied.subscribe();
    let replayed = tokio::time::timeout(link.timeout * 6, applied.wait_for(|&seq| seq >= last));
    match replayed.await {
        Ok(Ok(_)) => Ok(()),
        _ => Err(format!("namespace stream {name}: not replayed within {:?}", link.timeout * 6)),
    }
}

/// The namespace stream: one subject, kept by `replicas` servers.
pub fn stream_config(link: &Link) -> Config {
    Config {
        name: link.names.namespace_stream(),
        subjects: vec![link.names.namespace_subject()],
        storage: StorageType::File,
        num_replicas: link.replicas,
        ..Config::default()
    }
}

/// Applies changes in order; from change `live` on (the last stored when the mount
/// started) also keeps each group's stream and subscription in step.
async fn apply(link: Arc<Link>, mut deliveries: mpsc::Receiver<Delivery>, live: u64) {
    while let Some(Delivery { message, seq }) = deliveries.recv().await {
        let Some(engine) = link.engine.upgrade() else { return };
        let id =
            message.headers.as_ref().and_then(|headers| headers.get(ID)).map(|id| id.as_str().to_string());
        let waiter = id.and_then(|id| link.waiting.lock().remove(&id));
        let outcome = match decode(&message.payload) {
            Ok(op) => tokio::task::block_in_place(|| engine.apply(&op, waiter.is_some())),
            Err(error) => {
                log::error!("namespace change {seq} is not one mqfs reads ({error}): skipped");
                Err(Errno::EIO)
            }
        };
        if seq >= live {
            groups::reconcile(&link, &engine, waiter.is_some());
        }
        link.namespace_applied.send_replace(seq);
        if let Some(waiter) = waiter {
            let _ = waiter.send(outcome);
        }
    }
}

/// The headers of a change issued here as `id`.
pub fn headers(id: &str) -> async_nats::HeaderMap {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(ID, id);
    headers
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::engine::{Caller, Kind, SetAttr};

    #[test]
    fn every_change_reads_back_as_written() {
        let caller = Caller { uid: 1000, gid: 100 };
        let when = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123);
        let ops = [
            Op::Mkdir { parent: 1, name: b"chat".to_vec(), perm: 0o755, caller },
            Op::Mknod {
                parent: 2,
                name: b"\xffodd\tname".to_vec(),
                kind: Kind::File,
                perm: 0o644,
                rdev: 0,
                caller,
            },
            Op::Symlink { parent: 2, name: b"l".to_vec(), target: b"../x".to_vec(), caller },
            Op::Link { ino: 3, parent: 1, name: b"again".to_vec() },
            Op::Unlink { parent: 2, name: b"x".to_vec() },
            Op::Rmdir { parent: 1, name: b"chat".to_vec() },
            Op::Rename { parent: 1, name: b"a".to_vec(), to: 2, to_name: b"b".to_vec(), no_replace: true },
            Op::Setattr {
                ino: 3,
                change: SetAttr { perm: Some(0o600), mtime: Some(when), ..SetAttr::default() },
            },
            Op::Ctl { group: 1, uid: 0, text: b"depth 3\nreplay all\n".to_vec() },
        ];
        for op in ops {
            assert_eq!(decode(&encode(&op)), Ok(op));
        }
    }

    #[test]
    fn a_record_that_is_no_change_is_an_error() {
        assert!(decode(b"op = 3").is_err());
        assert!(decode(b"\xff").is_err());
    }
}
