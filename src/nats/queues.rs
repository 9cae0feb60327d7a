//! `deliver one` across mounts. Each queue file is a durable pull consumer with explicit
//! acknowledgements (`<PREFIX>_q<FILE>`, filtered to the file's subject), shared by every
//! mount: a mount pulls messages only for readers of its own that wait for one, commits
//! each to its stream (whose queue hands it to such a reader), and tells JetStream what
//! became of it: acknowledged when its reader acknowledged it, handed back at once (a nak)
//! when its reader was killed. So each message goes to one reader on one mount, and one not
//! acknowledged within `ackwait` is JetStream's to redeliver, to any mount; after
//! `maxdeliver` deliveries JetStream stops delivering it.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::AckKind;
use async_nats::jetstream::Message;
use async_nats::jetstream::consumer::pull::Config;
use async_nats::jetstream::consumer::{AckPolicy, Consumer, DeliverPolicy};
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::Link;
use super::publish;
use crate::engine::{Engine, GroupConfig, Ino, Settle, Settled, Via};

/// How long a pull waits for a message before it asks again.
const PULL_EXPIRES: Duration = Duration::from_secs(1);
/// `ackwait 0` means for ever; JetStream needs a time: a day.
const FOR_EVER: Duration = Duration::from_secs(24 * 3600);

/// The queues this mount pulls from.
#[derive(Default)]
pub struct Queues {
    pullers: Mutex<HashMap<Ino, Arc<Puller>>>,
}

/// One queue's pulling: woken when a reader waits; the messages pulled and not settled, by
/// their sequence number in the group's stream.
#[derive(Default)]
struct Puller {
    wake: Notify,
    unsettled: Mutex<HashMap<u64, Message>>,
}

impl Queues {
    /// A reader of queue `file` waits: its puller (started on first use) pulls.
    pub fn wants(&self, link: &Arc<Link>, runtime: &tokio::runtime::Handle, file: Ino) {
        let mut pullers = self.pullers.lock();
        let puller = pullers.entry(file).or_insert_with(|| {
            let puller = Arc::new(Puller::default());
            runtime.spawn(pull(Arc::downgrade(link), file, puller.clone()));
            puller
        });
        puller.wake.notify_one();
    }

    /// What queue `file` tells of the messages it was given.
    pub fn settler(link: &Arc<Link>, runtime: tokio::runtime::Handle, file: Ino) -> Settle {
        let link = Arc::downgrade(link);
        Arc::new(move |stamp, settled| {
            let Some(link) = link.upgrade() else { return };
            let puller = link.queues.pullers.lock().get(&file).cloned();
            let Some(message) = puller.and_then(|p| p.unsettled.lock().remove(&(stamp.group_seq + 1))) else {
                return;
            };
            let kind = match settled {
                Settled::Acked => AckKind::Ack,
                Settled::Failed => AckKind::Nak(None),
            };
            runtime.spawn(async move {
                if let Err(error) = message.ack_with(kind).await {
                    log::warn!("queue {file}: JetStream was not told of a message ({kind:?}): {error}");
                }
            });
        })
    }
}

impl Queues {
    /// The mount ends: every message pulled here and not acknowledged goes back at once.
    pub async fn hand_back(&self) {
        let pullers: Vec<Arc<Puller>> = self.pullers.lock().values().cloned().collect();
        for puller in pullers {
            let unsettled: Vec<Message> =
                puller.unsettled.lock().drain().map(|(_, message)| message).collect();
            for message in unsettled {
                if let Err(error) = message.ack_with(AckKind::Nak(None)).await {
                    log::warn!(
                        "a queue message pulled here is not handed back ({error}): JetStream redelivers it after ackwait"
                    );
                }
            }
        }
    }
}

/// Pulls messages of queue `file` for as long as its readers here wait for more than it
/// has, until the stream is gone.
async fn pull(link: Weak<Link>, file: Ino, puller: Arc<Puller>) {
    let mut backoff = Duration::from_millis(50);
    let mut consumer = None;
    loop {
        let Some(link) = link.upgrade() else { return };
        let Some(engine) = link.engine.upgrade() else { return };
        let Some(demand) = engine.queue_demand(file) else { return };
        if demand == 0 {
            drop((link, engine));
            puller.wake.notified().await;
            continue;
        }
        let pulled = match &consumer {
            Some(consumer) => fetch(consumer, demand, &link, file, &puller).await,
            None => match durable(&link, &engine, file).await {
                Ok(made) => {
                    consumer = Some(made);
                    continue;
                }
                Err(error) => Err(error),
            },
        };
        match pulled {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(error) => {
                log::warn!("queue {file}: cannot pull: {error}");
                consumer = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// Pulls up to `demand` messages and commits them here.
async fn fetch(
    consumer: &Consumer<Config>,
    demand: usize,
    link: &Link,
    file: Ino,
    puller: &Puller,
) -> Result<(), String> {
    let Some(engine) = link.engine.upgrade() else { return Ok(()) };
    let mount = &link.mount;
    let batch = consumer.fetch().max_messages(demand).expires(PULL_EXPIRES);
    let mut messages = batch.messages().await.map_err(|e| e.to_string())?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| e.to_string())?;
        let seq = message.info().map_err(|e| e.to_string())?.stream_sequence;
        let stamp = publish::stamp_of(message.headers.as_ref(), seq);
        let payload = message.payload.to_vec();
        let origin = publish::origin(message.headers.as_ref(), mount);
        puller.unsettled.lock().insert(seq, message);
        if let Err(errno) = engine.deliver_remote(file, payload, stamp, origin, Via::Queue) {
            log::warn!("queue {file}: message {seq} not kept here ({errno}): handed back");
            let handed_back = puller.unsettled.lock().remove(&seq);
            if let Some(message) = handed_back {
                message.ack_with(AckKind::Nak(None)).await.map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

/// The durable consumer of queue `file`, made if it is new, as its group's `ackwait` and
/// `maxdeliver` say.
async fn durable(link: &Link, engine: &Engine, file: Ino) -> Result<Consumer<Config>, String> {
    let group = engine.group_of(file).map_err(|e| e.to_string())?;
    let config =
        engine.groups().into_iter().find(|(ino, _)| *ino == group).map(|(_, c)| c).unwrap_or_default();
    let stream = link.js.get_stream(link.names.group_stream(group)).await.map_err(|e| e.to_string())?;
    let name = link.names.queue_consumer(file);
    stream
        .get_or_create_consumer(&name, consumer_config(link, group, file, &config))
        .await
        .map_err(|e| e.to_string())
}

fn consumer_config(link: &Link, group: Ino, file: Ino, config: &GroupConfig) -> Config {
    Config {
        durable_name: Some(link.names.queue_consumer(file)),
        filter_subject: link.names.file_subject(group, file),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: if config.ackwait.is_zero() { FOR_EVER } else { config.ackwait },
        max_deliver: if config.maxdeliver == 0 {
            -1
        } else {
            i64::try_from(config.maxdeliver).unwrap_or(i64::MAX)
        },
        num_replicas: link.replicas,
        ..Config::default()
    }
}
