//! A message's way through JetStream: the headers that carry its stamp from the writer's
//! mount to every other, and what a publish error means as an errno.

use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use async_nats::jetstream::context::{Context, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::stream::Config;
use tokio::time::Instant;

use crate::engine::{Errno, Origin, Outgoing};
use crate::storage::Stamp;

const PID: &str = "Mq-Pid";
const UID: &str = "Mq-Uid";
const GID: &str = "Mq-Gid";
/// When it was written, in nanoseconds since the epoch.
const TIME: &str = "Mq-Time";
/// The namespace change its writer's mount had applied last: a mount commits the message
/// once it has applied that change too, so the file it is for exists there.
pub const NAMESPACE: &str = "Mq-Ns";

/// A request's: where its reply goes, `MOUNT.FILE.READER` (the mount's name, and the
/// descriptor there that wrote it).
const REPLY: &str = "Mq-Reply";
/// A reply's: the descriptor it is for on the mount it is sent to, `FILE.READER`.
pub const TO: &str = "Mq-To";

/// The headers of a message written now by `message`'s writer, after namespace change `ns`,
/// on mount `mount`.
pub fn headers(message: &Outgoing, ns: u64, mount: &str) -> HeaderMap {
    let time = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let mut headers = HeaderMap::new();
    headers.insert(PID, message.pid.to_string().as_str());
    headers.insert(UID, message.uid.to_string().as_str());
    headers.insert(GID, message.gid.to_string().as_str());
    headers.insert(TIME, time.as_nanos().to_string().as_str());
    headers.insert(NAMESPACE, ns.to_string().as_str());
    if let Some(reader) = message.reply_to {
        headers.insert(REPLY, format!("{mount}.{}.{reader}", message.stream).as_str());
    }
    headers
}

/// Where a request's reply goes, seen from mount `mount`: one of its own descriptors, or
/// another mount's.
pub fn origin(headers: Option<&HeaderMap>, mount: &str) -> Option<Origin> {
    let address = headers?.get(REPLY)?.as_str();
    let (from, descriptor) = address.split_once('.')?;
    if from != mount {
        return Some(Origin::Away(address.into()));
    }
    descriptor.split_once('.')?.1.parse().ok().map(Origin::Here)
}

/// The mount a reply goes to, and the headers that name the descriptor there.
pub fn reply_to(address: &str) -> Option<(&str, HeaderMap)> {
    let (mount, descriptor) = address.split_once('.')?;
    let mut headers = HeaderMap::new();
    headers.insert(TO, descriptor);
    Some((mount, headers))
}

/// The descriptor a reply is for: its file and reader.
pub fn reply_for(headers: Option<&HeaderMap>) -> Option<(u64, u64)> {
    let (file, reader) = headers?.get(TO)?.as_str().split_once('.')?;
    Some((file.parse().ok()?, reader.parse().ok()?))
}

/// A header's number (0 if it is missing or not a number: a message published by another
/// client than mqfs).
pub fn number(headers: Option<&HeaderMap>, name: &str) -> u64 {
    headers.and_then(|headers| headers.get(name)).and_then(|value| value.as_str().parse().ok()).unwrap_or(0)
}

/// The stamp of the message with sequence number `seq` in its group's stream: its place
/// in the group's order is that number's.
pub fn stamp_of(headers: Option<&HeaderMap>, seq: u64) -> Stamp {
    let nanos = number(headers, TIME);
    Stamp {
        time: SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos),
        group_seq: seq.saturating_sub(1),
        pid: number(headers, PID) as u32,
        uid: number(headers, UID) as u32,
        gid: number(headers, GID) as u32,
    }
}

/// Publishes `message` to a stream and returns JetStream's acknowledgement. While the stream
/// answers "no responders" (a cluster electing its leader, or a stream whose making failed),
/// it makes the stream from what `missing` gives and publishes again, with the same message
/// id (so JetStream keeps one copy), until `deadline`: then ETIMEDOUT. `missing` is asked
/// only then: the stream's configuration, or why there is no stream to make (ENOENT: its
/// group was removed).
pub async fn acknowledged(
    js: &Context,
    subject: String,
    message: PublishMessage,
    deadline: Instant,
    missing: impl Fn() -> Result<Config, Errno>,
) -> Result<PublishAck, Errno> {
    let mut backoff = Duration::from_millis(20);
    loop {
        let outcome = match js.send_publish(subject.clone(), message.clone()).await {
            Ok(ack) => ack.await,
            Err(error) => Err(error),
        };
        match outcome {
            Ok(ack) => return Ok(ack),
            Err(error) if error.kind() == PublishErrorKind::StreamNotFound => {
                let config = missing()?;
                if Instant::now() + backoff >= deadline {
                    return Err(Errno::ETIMEDOUT);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
                let _ = js.get_or_create_stream(config).await;
            }
            Err(error) => return Err(errno_of(&error)),
        }
    }
}

/// The errno a write fails with when JetStream refused or did not answer its publish.
pub fn errno_of(error: &PublishError) -> Errno {
    match error.kind() {
        PublishErrorKind::MaxPayloadExceeded => Errno::EMSGSIZE,
        PublishErrorKind::TimedOut => Errno::ETIMEDOUT,
        PublishErrorKind::BrokenPipe => Errno::ENOTCONN,
        // A publish on condition (the namespace's first change): another came first.
        PublishErrorKind::WrongLastSequence => Errno::EEXIST,
        _ => Errno::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_goes_through_the_headers() {
        let message =
            Outgoing { stream: 5, message: Vec::new(), pid: 41, uid: 1000, gid: 100, reply_to: None };
        let headers = headers(&message, 9, "m1");
        let stamp = stamp_of(Some(&headers), 12);
        assert_eq!((stamp.pid, stamp.uid, stamp.gid, stamp.group_seq), (41, 1000, 100, 11));
        let age = SystemTime::now().duration_since(stamp.time).unwrap();
        assert!(age < Duration::from_secs(60), "{age:?}");
        assert_eq!(number(Some(&headers), NAMESPACE), 9);
    }

    #[test]
    fn a_request_names_its_descriptor_and_its_reply_finds_it() {
        let message = Outgoing { stream: 5, message: Vec::new(), pid: 1, uid: 0, gid: 0, reply_to: Some(3) };
        let headers = headers(&message, 0, "m1");
        assert_eq!(origin(Some(&headers), "m1"), Some(Origin::Here(3)));
        let Some(Origin::Away(address)) = origin(Some(&headers), "m2") else { panic!("from another mount") };
        let (mount, to) = reply_to(&address).unwrap();
        assert_eq!((mount, reply_for(Some(&to))), ("m1", Some((5, 3))));
        let plain = Outgoing { reply_to: None, ..message };
        assert_eq!(origin(Some(&super::headers(&plain, 0, "m1")), "m2"), None);
    }

    #[test]
    fn a_foreign_message_has_an_empty_stamp() {
        let stamp = stamp_of(None, 1);
        assert_eq!(stamp, Stamp::default());
    }
}
