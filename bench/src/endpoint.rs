//! Where a worker reads or writes, and how: an [`Endpoint`] names a stream of one system
//! (it travels to worker processes as one argument, `kind:where`), and opens as a
//! [`Source`] for readers or a [`Sink`] for writers. A reader template may contain `{i}`,
//! replaced by the reader's number (tee gives each reader its own FIFO).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::PathBuf;

use crate::systems::{msgfs, nats, redis, tail};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A file on a FUSE mount (mqfs or the ceiling): one write(2) per message, read(2) as is.
    File(PathBuf),
    /// A named pipe, opened O_RDWR on both sides so that opening never waits for the peer.
    Fifo(PathBuf),
    /// A file on tmpfs: writers append, readers follow it with inotify.
    Tail(PathBuf),
    /// A tmpfs directory with one file per message, readers woken by inotify.
    Dir(PathBuf),
    /// A Redis pub/sub channel on a loopback server.
    Redis { addr: String, channel: String },
    /// A Redis stream written with XADD (write only).
    RedisStream { addr: String, key: String },
    /// A NATS JetStream subject (of the stream of that name), published with
    /// acknowledgements, read through an ordered consumer.
    Jetstream { addr: String, subject: String },
    /// A core NATS subject: published without acknowledgement, read through a subscription.
    Nats { addr: String, subject: String },
}

/// Reads the bytes of a stream of messages.
pub trait Source: Send {
    /// Like read(2): some bytes, blocking until there are any; 0 at end of stream.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// Publishes messages.
pub trait Sink: Send {
    fn send(&mut self, message: &[u8]) -> io::Result<()>;
}

impl Endpoint {
    pub fn to_arg(&self) -> String {
        match self {
            Endpoint::File(p) => format!("file:{}", p.display()),
            Endpoint::Fifo(p) => format!("fifo:{}", p.display()),
            Endpoint::Tail(p) => format!("tail:{}", p.display()),
            Endpoint::Dir(p) => format!("dir:{}", p.display()),
            Endpoint::Redis { addr, channel } => format!("redis:{addr}/{channel}"),
            Endpoint::RedisStream { addr, key } => format!("xadd:{addr}/{key}"),
            Endpoint::Jetstream { addr, subject } => format!("jetstream:{addr}/{subject}"),
            Endpoint::Nats { addr, subject } => format!("nats:{addr}/{subject}"),
        }
    }

    pub fn parse(text: &str) -> Result<Endpoint, String> {
        let (kind, rest) = text.split_once(':').ok_or_else(|| format!("bad endpoint {text}"))?;
        let path = PathBuf::from(rest);
        Ok(match kind {
            "file" => Endpoint::File(path),
            "fifo" => Endpoint::Fifo(path),
            "tail" => Endpoint::Tail(path),
            "dir" => Endpoint::Dir(path),
            "redis" | "xadd" | "jetstream" | "nats" => {
                let (addr, name) = rest.split_once('/').ok_or_else(|| format!("bad endpoint {text}"))?;
                let (addr, name) = (addr.to_string(), name.to_string());
                match kind {
                    "redis" => Endpoint::Redis { addr, channel: name },
                    "xadd" => Endpoint::RedisStream { addr, key: name },
                    "jetstream" => Endpoint::Jetstream { addr, subject: name },
                    _ => Endpoint::Nats { addr, subject: name },
                }
            }
            _ => return Err(format!("bad endpoint kind {kind}")),
        })
    }

    /// The file a `File` endpoint names.
    pub fn file(&self) -> Option<&std::path::Path> {
        match self {
            Endpoint::File(path) => Some(path),
            _ => None,
        }
    }

    /// The stack a reader thread of this endpoint needs: 64 KiB (10,000 readers run as
    /// threads), but for a NATS client, whose connection runs on the reader's thread.
    pub fn reader_stack(&self) -> usize {
        match self {
            Endpoint::Jetstream { .. } | Endpoint::Nats { .. } => 2 << 20,
            _ => 64 << 10,
        }
    }

    /// The endpoint of reader number `i` of a template.
    pub fn nth(&self, i: usize) -> Endpoint {
        let text = self.to_arg().replace("{i}", &i.to_string());
        Endpoint::parse(&text).expect("a template stays parseable")
    }

    pub fn open_source(&self) -> io::Result<Box<dyn Source>> {
        Ok(match self {
            Endpoint::File(path) => Box::new(FileSource(File::open(path)?)),
            Endpoint::Fifo(path) => {
                Box::new(FileSource(OpenOptions::new().read(true).write(true).open(path)?))
            }
            Endpoint::Tail(path) => Box::new(tail::TailSource::open(path)?),
            Endpoint::Dir(path) => Box::new(msgfs::DirSource::open(path)?),
            Endpoint::Redis { addr, channel } => Box::new(redis::Subscriber::open(addr, channel)?),
            Endpoint::Jetstream { addr, subject } => Box::new(nats::Subscriber::jetstream(addr, subject)?),
            Endpoint::Nats { addr, subject } => Box::new(nats::Subscriber::core(addr, subject)?),
            Endpoint::RedisStream { .. } => {
                return Err(io::Error::other("the bench only writes to this endpoint"));
            }
        })
    }

    /// A sink for writer number `writer`.
    pub fn open_sink(&self, writer: u32) -> io::Result<Box<dyn Sink>> {
        Ok(match self {
            Endpoint::File(path) => {
                Box::new(FileSink { file: OpenOptions::new().write(true).open(path)?, one_call: true })
            }
            Endpoint::Fifo(path) => Box::new(FileSink {
                file: OpenOptions::new().read(true).write(true).open(path)?,
                one_call: false,
            }),
            Endpoint::Tail(path) => {
                Box::new(FileSink { file: OpenOptions::new().append(true).open(path)?, one_call: true })
            }
            Endpoint::Dir(path) => Box::new(msgfs::DirSink::open(path, writer)?),
            Endpoint::Redis { addr, channel } => Box::new(redis::Publisher::publish(addr, channel)?),
            Endpoint::RedisStream { addr, key } => Box::new(redis::Publisher::append(addr, key)?),
            Endpoint::Jetstream { addr, subject } => Box::new(nats::Publisher::jetstream(addr, subject)?),
            Endpoint::Nats { addr, subject } => Box::new(nats::Publisher::core(addr, subject)?),
        })
    }
}

struct FileSource(File);

impl Source for FileSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                result => return result,
            }
        }
    }
}

struct FileSink {
    file: File,
    /// The message must go in a single write(2) (on mqfs a write is a message).
    one_call: bool,
}

impl Sink for FileSink {
    fn send(&mut self, message: &[u8]) -> io::Result<()> {
        if !self.one_call {
            return self.file.write_all(message);
        }
        let written = self.file.write(message)?;
        if written != message.len() {
            return Err(io::Error::other(format!("short write: {written} of {}", message.len())));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_round_trip_and_instantiate() {
        for text in [
            "file:/m/s",
            "fifo:/d/out.{i}",
            "tail:/t/f",
            "dir:/t/d",
            "redis:127.0.0.1:6379/ch{i}",
            "xadd:127.0.0.1:1/k",
            "jetstream:127.0.0.1:2/s",
            "nats:127.0.0.1:3/s",
        ] {
            assert_eq!(Endpoint::parse(text).unwrap().to_arg(), text);
        }
        let template = Endpoint::parse("fifo:/d/out.{i}").unwrap();
        assert_eq!(template.nth(7), Endpoint::Fifo("/d/out.7".into()));
        let redis = Endpoint::parse("redis:127.0.0.1:6379/c").unwrap();
        assert_eq!(redis, Endpoint::Redis { addr: "127.0.0.1:6379".into(), channel: "c".into() });
    }
}
