//! Redis: Debian's redis-server started on 127.0.0.1 (a free port, no output-buffer limit for
//! subscribers so none is dropped), without persistence for pub/sub or with its append-only
//! file for durable writes, and RESP spoken by hand over TCP: PUBLISH waiting for each reply,
//! SUBSCRIBE and a push-message parser, and XADD (a Redis stream keeps what it is sent; the
//! AOF makes it durable) waiting for each reply, and LPUSH/BRPOP for request/reply.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::endpoint::{Sink, Source};
use crate::procs::Proc;

/// How a server keeps what it is sent: pub/sub only, or an append-only file fsynced
/// `always` (before each reply) or `everysec`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    None,
    AofAlways,
    AofEverysec,
}

pub struct RedisServer {
    proc: Proc,
    pub addr: String,
}

impl RedisServer {
    pub fn start(bin: &Path, dir: &Path, persistence: Persistence) -> Result<RedisServer, String> {
        let port = super::free_port()?;
        let mut command = Command::new(bin);
        command
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--protected-mode", "yes"])
            .args(["--save", "", "--daemonize", "no", "--loglevel", "warning"])
            .args(match persistence {
                Persistence::None => ["--appendonly", "no", "--appendfsync", "no"],
                Persistence::AofAlways => ["--appendonly", "yes", "--appendfsync", "always"],
                Persistence::AofEverysec => ["--appendonly", "yes", "--appendfsync", "everysec"],
            })
            .args(["--client-output-buffer-limit", "pubsub 0 0 0", "--maxclients", "10100"])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let proc = Proc::spawn("redis-server", command, false, libc::SIGTERM)?;
        let addr = format!("127.0.0.1:{port}");
        super::await_server("redis-server", &addr, &dir.join("redis.log"), |addr| ping(addr).is_ok())?;
        Ok(RedisServer { proc, addr })
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

fn connect(addr: &str) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn ping(addr: &str) -> io::Result<()> {
    let mut stream = connect(addr)?;
    stream.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    if reply.starts_with("+PONG") { Ok(()) } else { Err(io::Error::other(reply)) }
}

fn bulk(out: &mut Vec<u8>, item: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", item.len()).as_bytes());
    out.extend_from_slice(item);
    out.extend_from_slice(b"\r\n");
}

/// Reads RESP lines and bulk strings from a connection.
struct Resp {
    reader: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl Resp {
    fn new(stream: TcpStream) -> Resp {
        Resp { reader: BufReader::with_capacity(256 * 1024, stream), line: Vec::new() }
    }

    /// The next line without CRLF.
    fn line(&mut self) -> io::Result<&[u8]> {
        self.line.clear();
        if self.reader.read_until(b'\n', &mut self.line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "redis closed the connection"));
        }
        let end = self.line.len().saturating_sub(2);
        Ok(&self.line[..end])
    }

    /// A line `<marker><number>`.
    fn number(&mut self, marker: u8) -> io::Result<usize> {
        let line = self.line()?;
        let text = line.strip_prefix(&[marker]).ok_or_else(|| {
            io::Error::other(format!("unexpected reply {:?}", String::from_utf8_lossy(line)))
        })?;
        std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| io::Error::other("bad number"))
    }

    fn skip(&mut self, n: usize) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.reader).take(n as u64), &mut io::sink())?;
        if copied != n as u64 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "redis closed the connection"));
        }
        Ok(())
    }
}

/// A command whose last argument is the message, sent for each message, waiting for its
/// reply: `PUBLISH CHANNEL MESSAGE` (an integer reply) or `XADD KEY * d MESSAGE` (the new
/// entry's id, a bulk string).
pub struct Publisher {
    stream: TcpStream,
    replies: Resp,
    command: Vec<u8>,
    prefix: Vec<u8>,
    /// The reply's type marker: b':' or b'$'.
    reply: u8,
}

impl Publisher {
    pub fn publish(addr: &str, channel: &str) -> io::Result<Publisher> {
        Publisher::open(addr, &[b"PUBLISH", channel.as_bytes()], b':')
    }

    pub fn append(addr: &str, key: &str) -> io::Result<Publisher> {
        Publisher::open(addr, &[b"XADD", key.as_bytes(), b"*", b"d"], b'$')
    }

    fn open(addr: &str, arguments: &[&[u8]], reply: u8) -> io::Result<Publisher> {
        let stream = connect(addr)?;
        let mut prefix = format!("*{}\r\n", arguments.len() + 1).into_bytes();
        for argument in arguments {
            bulk(&mut prefix, argument);
        }
        Ok(Publisher { replies: Resp::new(stream.try_clone()?), stream, command: Vec::new(), prefix, reply })
    }
}

impl Sink for Publisher {
    fn send(&mut self, message: &[u8]) -> io::Result<()> {
        self.command.clear();
        self.command.extend_from_slice(&self.prefix);
        bulk(&mut self.command, message);
        self.stream.write_all(&self.command)?;
        let n = self.replies.number(self.reply)?;
        if self.reply == b'$' {
            self.replies.skip(n + 2)?;
        }
        Ok(())
    }
}

pub struct Subscriber {
    resp: Resp,
    /// The part of a message larger than the caller's buffer still to be returned.
    rest: Vec<u8>,
    rest_at: usize,
}

impl Subscriber {
    pub fn open(addr: &str, channel: &str) -> io::Result<Subscriber> {
        let mut stream = connect(addr)?;
        let mut command = b"*2\r\n".to_vec();
        bulk(&mut command, b"SUBSCRIBE");
        bulk(&mut command, channel.as_bytes());
        stream.write_all(&command)?;
        let mut resp = Resp::new(stream);
        // *3, $9 subscribe, $n channel, :count
        resp.number(b'*')?;
        for _ in 0..2 {
            let len = resp.number(b'$')?;
            resp.skip(len + 2)?;
        }
        resp.number(b':')?;
        Ok(Subscriber { resp, rest: Vec::new(), rest_at: 0 })
    }
}

impl Source for Subscriber {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.rest_at < self.rest.len() {
            let n = buf.len().min(self.rest.len() - self.rest_at);
            buf[..n].copy_from_slice(&self.rest[self.rest_at..self.rest_at + n]);
            self.rest_at += n;
            return Ok(n);
        }
        // *3, $7 message, $n channel, $len payload
        self.resp.number(b'*')?;
        for _ in 0..2 {
            let len = self.resp.number(b'$')?;
            self.resp.skip(len + 2)?;
        }
        let len = self.resp.number(b'$')?;
        if len <= buf.len() {
            self.resp.reader.read_exact(&mut buf[..len])?;
            self.resp.skip(2)?;
            return Ok(len);
        }
        self.rest.resize(len, 0);
        self.resp.reader.read_exact(&mut self.rest)?;
        self.resp.skip(2)?;
        buf.copy_from_slice(&self.rest[..buf.len()]);
        self.rest_at = buf.len();
        Ok(buf.len())
    }
}

/// List commands on one connection, for the message switch's RPC pattern over Redis: a
/// client LPUSHes a request (naming its own reply list) onto the service's list, a server
/// BRPOPs it and LPUSHes the reply onto the client's list, which the client BRPOPs.
pub struct Lists {
    stream: TcpStream,
    replies: Resp,
    command: Vec<u8>,
}

impl Lists {
    pub fn open(addr: &str) -> io::Result<Lists> {
        let stream = connect(addr)?;
        Ok(Lists { replies: Resp::new(stream.try_clone()?), stream, command: Vec::new() })
    }

    fn send(&mut self, arguments: &[&[u8]]) -> io::Result<()> {
        self.command.clear();
        self.command.extend_from_slice(format!("*{}\r\n", arguments.len()).as_bytes());
        for argument in arguments {
            bulk(&mut self.command, argument);
        }
        self.stream.write_all(&self.command)
    }

    /// LPUSH `key` `value`, waiting for the reply (the list's new length).
    pub fn lpush(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.send(&[b"LPUSH", key, value])?;
        self.replies.number(b':').map(drop)
    }

    /// BRPOP `key` 0: waits for the oldest value of the list and puts it in `value`.
    pub fn brpop(&mut self, key: &[u8], value: &mut Vec<u8>) -> io::Result<()> {
        self.send(&[b"BRPOP", key, b"0"])?;
        // *2, $n key, $len value
        self.replies.number(b'*')?;
        let len = self.replies.number(b'$')?;
        self.replies.skip(len + 2)?;
        let len = self.replies.number(b'$')?;
        value.resize(len, 0);
        self.replies.reader.read_exact(value)?;
        self.replies.skip(2)
    }
}
