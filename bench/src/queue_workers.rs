//! The worker roles of the queue scenarios (issue 14), beside `worker`'s:
//!
//! - `rpc-serve`: answers requests on an [`Rpc`] service, each with its own bytes marked
//!   REPLY, until killed (a Unix socket server: until its client hangs up).
//! - `rpc-call`: `warmup + count` round trips in a loop, one request in flight; prints the
//!   round trips' histogram and the seconds the measured ones took.
//! - `hold`: reads one message of a stream and keeps it in flight (reads nothing more) until
//!   killed.
//! - `await`: reads one message of a stream; prints when its read returned.
//!
//! Like `worker`'s, each prints `ready` once its endpoints are open, then `result ...`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use crate::clock::now_ns;
use crate::hist::Histogram;
use crate::message::{FLAG_REPLY, HEADER_LEN, Header};
use crate::systems::redis::Lists;

/// A request/reply service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rpc {
    /// A stream of a `deliver one` group: requests and replies on one read-write descriptor.
    File(PathBuf),
    /// A Redis list the servers BRPOP; each client's replies come on a list of its own.
    Redis { addr: String, key: String },
    /// A Unix stream socket: one client, ping-pong.
    Unix(PathBuf),
}

impl Rpc {
    pub fn to_arg(&self) -> String {
        match self {
            Rpc::File(path) => format!("file:{}", path.display()),
            Rpc::Redis { addr, key } => format!("redis:{addr}/{key}"),
            Rpc::Unix(path) => format!("unix:{}", path.display()),
        }
    }

    pub fn parse(text: &str) -> Result<Rpc, String> {
        let bad = || format!("bad service {text}");
        let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
        Ok(match kind {
            "file" => Rpc::File(rest.into()),
            "unix" => Rpc::Unix(rest.into()),
            "redis" => {
                let (addr, key) = rest.split_once('/').ok_or_else(bad)?;
                Rpc::Redis { addr: addr.into(), key: key.into() }
            }
            _ => return Err(bad()),
        })
    }
}

/// The client side: one request out, its reply in.
enum Caller {
    File(File),
    Redis { lists: Lists, key: Vec<u8>, reply_key: Vec<u8>, request: Vec<u8> },
    Unix(UnixStream),
}

impl Caller {
    fn open(rpc: &Rpc) -> io::Result<Caller> {
        Ok(match rpc {
            Rpc::File(path) => Caller::File(OpenOptions::new().read(true).write(true).open(path)?),
            Rpc::Redis { addr, key } => Caller::Redis {
                lists: Lists::open(addr)?,
                key: key.clone().into_bytes(),
                reply_key: format!("{key}:reply:{}", std::process::id()).into_bytes(),
                request: Vec::new(),
            },
            Rpc::Unix(path) => Caller::Unix(UnixStream::connect(path)?),
        })
    }

    /// Sends `request`; the reply lands in `reply`.
    fn call(&mut self, request: &[u8], reply: &mut Vec<u8>) -> io::Result<()> {
        match self {
            Caller::File(file) => {
                if file.write(request)? != request.len() {
                    return Err(io::Error::other("short write"));
                }
                reply.resize(request.len().max(64 * 1024), 0);
                let n = file.read(reply)?;
                reply.truncate(n);
            }
            Caller::Redis { lists, key, reply_key, request: framed } => {
                // The request names the list its reply goes to: KEY, a space, the payload.
                framed.clear();
                framed.extend_from_slice(reply_key);
                framed.push(b' ');
                framed.extend_from_slice(request);
                lists.lpush(key, framed)?;
                lists.brpop(reply_key, reply)?;
            }
            Caller::Unix(socket) => {
                socket.write_all(request)?;
                reply.resize(request.len(), 0);
                socket.read_exact(reply)?;
            }
        }
        Ok(())
    }
}

/// A request turned into its reply.
fn mark_reply(message: &mut [u8]) -> &[u8] {
    if message.len() >= HEADER_LEN {
        let mut header = Header::read_from(message);
        header.flags |= FLAG_REPLY;
        header.write_to(message);
    }
    message
}

pub fn serve(rpc: &Rpc, size: usize) -> Result<(), String> {
    let fail = |e: io::Error| format!("{}: {e}", rpc.to_arg());
    match rpc {
        Rpc::File(path) => {
            let mut file = OpenOptions::new().read(true).write(true).open(path).map_err(fail)?;
            crate::worker::say("ready");
            let mut buf = vec![0u8; size.max(64 * 1024)];
            loop {
                let n = file.read(&mut buf).map_err(fail)?;
                if n == 0 {
                    return Err("the service's stream was removed".into());
                }
                file.write(mark_reply(&mut buf[..n])).map_err(fail)?;
            }
        }
        Rpc::Redis { addr, key } => {
            let mut lists = Lists::open(addr).map_err(fail)?;
            crate::worker::say("ready");
            let mut request = Vec::new();
            loop {
                lists.brpop(key.as_bytes(), &mut request).map_err(fail)?;
                let space =
                    request.iter().position(|&b| b == b' ').ok_or("a request without its reply list")?;
                let (reply_key, payload) = request.split_at_mut(space);
                lists.lpush(reply_key, mark_reply(&mut payload[1..])).map_err(fail)?;
            }
        }
        Rpc::Unix(path) => {
            let listener = UnixListener::bind(path).map_err(fail)?;
            crate::worker::say("ready");
            let (mut socket, _) = listener.accept().map_err(fail)?;
            let mut buf = vec![0u8; size];
            loop {
                match socket.read_exact(&mut buf) {
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    result => result.map_err(fail)?,
                }
                socket.write_all(mark_reply(&mut buf)).map_err(fail)?;
            }
        }
    }
}

pub fn call(rpc: &Rpc, size: usize, warmup: u64, count: u64) -> Result<(), String> {
    if size < HEADER_LEN {
        return Err(format!("messages must be at least {HEADER_LEN} bytes"));
    }
    let mut caller = Caller::open(rpc).map_err(|e| format!("{}: {e}", rpc.to_arg()))?;
    crate::worker::say("ready");
    let mut request = vec![b'x'; size];
    let mut reply = Vec::new();
    let mut hist = Histogram::default();
    let mut started = now_ns();
    for i in 0..warmup + count {
        if i == warmup {
            started = now_ns();
        }
        let sent_ns = now_ns();
        Header { sent_ns, seq: i, writer: 0, flags: 0 }.write_to(&mut request);
        caller.call(&request, &mut reply).map_err(|e| format!("round trip {i}: {e}"))?;
        let now = now_ns();
        let answer = (reply.len() >= HEADER_LEN).then(|| Header::read_from(&reply));
        if !answer.is_some_and(|h| h.seq == i && h.flags & FLAG_REPLY != 0) {
            return Err(format!("round trip {i}: the reply is not this request's"));
        }
        if i >= warmup {
            hist.record(now - sent_ns);
        }
    }
    let seconds = (now_ns() - started) as f64 / 1e9;
    crate::worker::say(&format!("result seconds={seconds} hist={}", hist.encode()));
    Ok(())
}

/// `hold`: takes one message of `stream` and keeps it in flight until killed.
pub fn hold(stream: &Path) -> Result<(), String> {
    let mut file = File::open(stream).map_err(|e| format!("{}: {e}", stream.display()))?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = file.read(&mut buf).map_err(|e| format!("{}: {e}", stream.display()))?;
    crate::worker::say(&format!("got {n}"));
    // Wait for the kill (or the end of standard input): a next read would acknowledge it.
    let _ = io::stdin().read(&mut [0u8; 1]);
    Ok(())
}

/// `await`: reads one message of `stream` and says when the read returned.
pub fn await_one(stream: &Path) -> Result<(), String> {
    let mut file = File::open(stream).map_err(|e| format!("{}: {e}", stream.display()))?;
    crate::worker::say("ready");
    let mut buf = vec![0u8; 64 * 1024];
    let n = file.read(&mut buf).map_err(|e| format!("{}: {e}", stream.display()))?;
    crate::worker::say(&format!("result at={} bytes={n}", now_ns()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_round_trip_through_their_argument() {
        for text in ["file:/m/svc/s", "redis:127.0.0.1:6379/svc1", "unix:/tmp/s.sock"] {
            assert_eq!(Rpc::parse(text).unwrap().to_arg(), text);
        }
        assert_eq!(
            Rpc::parse("redis:127.0.0.1:6379/k"),
            Ok(Rpc::Redis { addr: "127.0.0.1:6379".into(), key: "k".into() })
        );
        assert!(Rpc::parse("tcp:x").is_err());
    }

    #[test]
    fn a_reply_is_its_request_marked() {
        let mut message = [0u8; 64];
        Header { sent_ns: 5, seq: 9, writer: 0, flags: 0 }.write_to(&mut message);
        let reply = Header::read_from(mark_reply(&mut message));
        assert_eq!(reply, Header { sent_ns: 5, seq: 9, writer: 0, flags: FLAG_REPLY });
    }
}
