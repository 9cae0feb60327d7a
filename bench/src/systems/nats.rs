//! NATS JetStream: Debian's nats-server started with `-js` on 127.0.0.1 (a free port, its
//! file store in a directory of the run), and the NATS client protocol spoken by hand over
//! TCP as Redis's is: a stream per bench stream (file storage) created through the
//! JetStream API, and publishers that wait for each message's JetStream acknowledgement.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::endpoint::Sink;
use crate::procs::Proc;

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
        super::await_server("nats-server", &addr, &log, |addr| Client::connect(addr).is_ok())?;
        Ok(NatsServer { proc, addr })
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Creates a JetStream stream `name` (file storage, keeping everything) for subject `name`.
    pub fn create_stream(&self, name: &str) -> Result<(), String> {
        let config = format!(
            r#"{{"name":"{name}","subjects":["{name}"],"storage":"file","retention":"limits","discard":"old","num_replicas":1}}"#
        );
        let mut client = Client::connect(&self.addr).map_err(|e| format!("nats: {e}"))?;
        let reply = client
            .request(&format!("$JS.API.STREAM.CREATE.{name}"), config.as_bytes())
            .map_err(|e| format!("nats: create stream {name}: {e}"))?;
        let reply = String::from_utf8_lossy(&reply);
        if reply.contains("\"error\"") {
            return Err(format!("nats: create stream {name}: {reply}"));
        }
        Ok(())
    }
}

/// A connection with its own reply subject, subscribed: one request in flight at a time.
struct Client {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    line: String,
    command: Vec<u8>,
    inbox: String,
}

/// Numbers the connections of this process, for their inboxes.
static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

impl Client {
    fn connect(addr: &str) -> io::Result<Client> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let inbox =
            format!("_INBOX.bench.{}.{}", std::process::id(), CONNECTIONS.fetch_add(1, Ordering::Relaxed));
        let mut client = Client {
            reader: BufReader::new(stream.try_clone()?),
            stream,
            line: String::new(),
            command: Vec::new(),
            inbox,
        };
        client.next_line()?;
        if !client.line.starts_with("INFO ") {
            return Err(io::Error::other(format!("expected INFO, got {:?}", client.line.trim())));
        }
        let connect = r#"{"verbose":false,"pedantic":false,"lang":"mqfs-bench","version":"0","protocol":1,"headers":false}"#;
        let subscribe = format!("CONNECT {connect}\r\nSUB {} 1\r\nPING\r\n", client.inbox);
        client.stream.write_all(subscribe.as_bytes())?;
        loop {
            client.next_line()?;
            match client.line.trim_end() {
                "PONG" => return Ok(client),
                line if line.starts_with("-ERR") => return Err(io::Error::other(line.to_string())),
                _ => {}
            }
        }
    }

    fn next_line(&mut self) -> io::Result<()> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "nats-server closed the connection"));
        }
        Ok(())
    }

    /// Publishes `payload` to `subject` with the inbox as reply subject; returns the reply.
    fn request(&mut self, subject: &str, payload: &[u8]) -> io::Result<Vec<u8>> {
        self.command.clear();
        self.command
            .extend_from_slice(format!("PUB {subject} {} {}\r\n", self.inbox, payload.len()).as_bytes());
        self.command.extend_from_slice(payload);
        self.command.extend_from_slice(b"\r\n");
        self.stream.write_all(&self.command)?;
        loop {
            self.next_line()?;
            let line = self.line.trim_end();
            if line == "PING" {
                self.stream.write_all(b"PONG\r\n")?;
            } else if line.starts_with("-ERR") {
                return Err(io::Error::other(line.to_string()));
            } else if let Some(rest) = line.strip_prefix("MSG ") {
                // MSG <subject> <sid> [reply-to] <bytes>
                let len: usize = rest
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| io::Error::other(format!("bad MSG line {line:?}")))?;
                let mut reply = vec![0; len + 2];
                self.reader.read_exact(&mut reply)?;
                reply.truncate(len);
                return Ok(reply);
            }
        }
    }
}

/// Publishes to a JetStream subject and waits for the stream's acknowledgement.
pub struct Publisher {
    client: Client,
    subject: String,
}

impl Publisher {
    pub fn open(addr: &str, subject: &str) -> io::Result<Publisher> {
        Ok(Publisher { client: Client::connect(addr)?, subject: subject.to_string() })
    }
}

impl Sink for Publisher {
    fn send(&mut self, message: &[u8]) -> io::Result<()> {
        let ack = self.client.request(&self.subject, message)?;
        if ack.windows(6).any(|w| w == b"\"seq\":") {
            Ok(())
        } else {
            Err(io::Error::other(format!("not acknowledged: {}", String::from_utf8_lossy(&ack))))
        }
    }
}
