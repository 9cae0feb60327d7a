//! Reading a JetStream stream in order, each message once, across disconnections: an
//! ordered consumer (ephemeral, no acknowledgements: JetStream's way of replaying a stream
//! to one reader) from a start, made again from just past the last message passed on after
//! any error, and at once after a reconnection (a restarted server has lost it, and the
//! client would notice only after missing several heartbeats). The messages go into a bounded channel, so a slow applier holds the reading
//! back rather than the memory growing.

use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::{self, Context};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Where reading a stream starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// Its first retained message.
    All,
    /// The last message of each subject.
    LastPerSubject,
    /// The next message stored after this sequence number.
    After(u64),
}

/// A message and its sequence number in its stream.
pub struct Delivery {
    pub message: jetstream::Message,
    pub seq: u64,
}

/// How many messages wait for their applier at most.
const QUEUE: usize = 1024;

/// How long after a failure the consumer is made again, at most.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Reads stream `name` from `start` on into the returned channel, until it is dropped;
/// `connections` changes at each reconnection.
pub fn follow(
    js: Context,
    name: String,
    start: Start,
    mut connections: watch::Receiver<u64>,
) -> (mpsc::Receiver<Delivery>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(QUEUE);
    let task = tokio::spawn(async move {
        let mut last = match start {
            Start::After(seq) => Some(seq),
            Start::All | Start::LastPerSubject => None,
        };
        let mut backoff = Duration::from_millis(50);
        loop {
            let policy = match (last, start) {
                (Some(seq), _) => DeliverPolicy::ByStartSequence { start_sequence: seq + 1 },
                (None, Start::LastPerSubject) => DeliverPolicy::LastPerSubject,
                (None, _) => DeliverPolicy::All,
            };
            connections.mark_unchanged();
            tokio::select! {
                outcome = read(&js, &name, policy, &tx, &mut last) => match outcome {
                    Ok(()) => return, // nobody reads any more
                    Err(error) => log::warn!("reading {name}: {error}; reading on from the next message"),
                },
                changed = connections.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    backoff = Duration::from_millis(50);
                    continue;
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    });
    (rx, task)
}

/// One ordered consumer's messages into `tx`, past `last`; Ok once `tx` is closed.
async fn read(
    js: &Context,
    name: &str,
    deliver_policy: DeliverPolicy,
    tx: &mpsc::Sender<Delivery>,
    last: &mut Option<u64>,
) -> Result<(), String> {
    let stream = js.get_stream(name).await.map_err(|e| e.to_string())?;
    let config = OrderedConfig { deliver_policy, ..OrderedConfig::default() };
    let consumer = stream.create_consumer(config).await.map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| e.to_string())?;
        let seq = message.info().map_err(|e| e.to_string())?.stream_sequence;
        if last.is_some_and(|last| seq <= last) {
            continue; // passed on before the consumer was made again
        }
        *last = Some(seq);
        if tx.send(Delivery { message, seq }).await.is_err() {
            return Ok(());
        }
    }
    Err("the consumer ended".into())
}
