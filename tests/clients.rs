//! Real clients' event loops on a real mount, each receiving several messages written one at
//! a time, every one within a deadline: edge-triggered epoll used directly (Python's
//! `select.epoll` with `EPOLLET`), a tokio `AsyncFd` reader, a Go reader (`os.Open` + `Read`,
//! which waits in Go's runtime poller, edge-triggered too) and Python asyncio's `add_reader`.
//!
//! An edge-triggered waiter that has read to `EAGAIN` is woken again only by a notification:
//! each message has to send one, however readable the descriptor already was.

mod common;

use common::{Mount, Proc, proc_state};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// Liveness deadline for one message to reach its reader (not a contract bound). The clients'
/// own waits are bounded by 8 s, so a missing wake-up shows as their TIMEOUT.
const T: Duration = Duration::from_secs(10);

/// Messages each client receives.
const MESSAGES: usize = 4;

/// A stream `s` on a fresh mount, and a descriptor writing to it.
fn stream() -> (Mount, PathBuf, File) {
    let m = Mount::new();
    let s = m.join("s");
    let writer = File::create(&s).expect("create stream");
    (m, s, writer)
}

fn message(i: usize) -> String {
    format!("msg-{i}")
}

/// Writes message `i` with one write(2).
fn send(writer: &mut File, i: usize) {
    let msg = message(i);
    assert_eq!(writer.write(msg.as_bytes()).expect("write message"), msg.len());
}

/// Writes the messages one at a time, each only once `client` printed the one before, and
/// checks that `client` prints every one (as `GOT msg-I`) within the deadline, then exits 0.
fn feed(client: &mut Proc, writer: &mut File, what: &str) {
    client.wait_output_contains(b"READY\n", T);
    let mut expected = String::from("READY\n");
    for i in 0..MESSAGES {
        send(writer, i);
        expected.push_str(&format!("GOT {}\n", message(i)));
        client.wait_output_contains(expected.as_bytes(), T);
    }
    let status = client.wait_exit(T).unwrap_or_else(|| {
        panic!("{what} (pid {}) did not exit (state {:?})", client.pid(), proc_state(client.pid()))
    });
    let out = String::from_utf8_lossy(&client.output()).into_owned();
    let err = String::from_utf8_lossy(&client.stderr_output()).into_owned();
    assert!(status.success(), "{what} ended with {status}; stdout {out:?} stderr {err:?}");
    assert_eq!(out, expected, "{what}: stderr {err:?}");
}

fn python(script: &str, path: &Path) -> Proc {
    Proc::spawn(Command::new("python3").arg("-c").arg(script).arg(path).arg(MESSAGES.to_string()))
}

#[test]
fn edge_triggered_epoll_is_woken_by_every_message() {
    let (_m, s, mut writer) = stream();
    // Reads to EAGAIN after every wake-up, as edge-triggered users must.
    let script = r#"
import os, select, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
want = int(sys.argv[2])
ep = select.epoll()
ep.register(fd, select.EPOLLIN | select.EPOLLET)
def drain():
    got = []
    while True:
        try:
            got.append(os.read(fd, 4096).decode())
        except BlockingIOError:
            return got
print("READY", *drain(), flush=True)
got = 0
while got < want:
    if not ep.poll(8):
        print("TIMEOUT", flush=True)
        sys.exit(2)
    for message in drain():
        print("GOT", message, flush=True)
        got += 1
"#;
    let mut py = python(script, &s);
    feed(&mut py, &mut writer, "python epoll EPOLLET");
}

#[test]
fn tokio_asyncfd_reader_gets_each_message_as_it_is_written() {
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;

    let (_m, s, mut writer) = stream();
    let file = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&s).unwrap();
    let (got, received) = mpsc::channel::<Result<String, String>>();
    // The reader, as a tokio program writes it: wait for readiness, read until WouldBlock.
    let reader = thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            // SAFETY: the File owns its descriptor, which stays open as long as the AsyncFd.
            let fd = unsafe { AsyncFd::register_with_interest(file, Interest::READABLE) }
                .expect("register with tokio");
            let mut buf = vec![0; 4096];
            for _ in 0..MESSAGES {
                let result = loop {
                    let Ok(ready) = tokio::time::timeout(Duration::from_secs(8), fd.readable()).await else {
                        break Err("timed out waiting for readiness".to_string());
                    };
                    let mut guard = ready.expect("readable");
                    match guard.try_io(|file| file.get_ref().read(&mut buf)) {
                        Ok(Ok(n)) => break Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
                        Ok(Err(e)) => break Err(e.to_string()),
                        Err(_would_block) => continue,
                    }
                };
                let failed = result.is_err();
                if got.send(result).is_err() || failed {
                    return;
                }
            }
        })
    });
    for i in 0..MESSAGES {
        send(&mut writer, i);
        let result = received.recv_timeout(T).unwrap_or_else(|_| panic!("message {i} never arrived"));
        assert_eq!(result, Ok(message(i)), "message {i}");
    }
    reader.join().expect("the tokio reader ended");
}

/// Builds tests/clients/go/reader.go; None if there is no `go` and this is not CI, where the
/// test is skipped with a message (under CI=true, `.ci/run` installs Go, so a missing `go`
/// fails the test).
fn go_reader() -> Option<PathBuf> {
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let binary = out_dir.join("go-reader");
    let built = Command::new("go")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GOCACHE", out_dir.join("go-cache"))
        .args(["build", "-o"])
        .arg(&binary)
        .arg("tests/clients/go/reader.go")
        .output();
    match built {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "`go` is not installed: .ci/run installs golang-go"
            );
            // Straight to stderr, past the test harness's capture: a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "go_reader_in_the_runtime_poller_gets_each_message skipped: `go` is not installed \
                 (apt-get install golang-go); under CI=true this fails"
            );
            None
        }
        Err(e) => panic!("cannot run go build: {e}"),
        Ok(out) => {
            assert!(out.status.success(), "go build failed: {}", String::from_utf8_lossy(&out.stderr));
            Some(binary)
        }
    }
}

#[test]
fn go_reader_in_the_runtime_poller_gets_each_message() {
    let Some(reader) = go_reader() else { return };
    let (_m, s, mut writer) = stream();
    let mut go = Proc::spawn(Command::new(reader).arg(&s).arg(MESSAGES.to_string()));
    feed(&mut go, &mut writer, "go reader");
}

/// asyncio's selector is level-triggered epoll: the counterpart of the edge-triggered clients.
#[test]
fn asyncio_add_reader_gets_each_message() {
    let (_m, s, mut writer) = stream();
    let script = r#"
import asyncio, os, sys
async def main(path, want):
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()
    def on_readable():
        while True:
            try:
                queue.put_nowait(os.read(fd, 4096).decode())
            except BlockingIOError:
                return
    loop.add_reader(fd, on_readable)
    print("READY", flush=True)
    for _ in range(want):
        try:
            message = await asyncio.wait_for(queue.get(), 8)
        except asyncio.TimeoutError:
            print("TIMEOUT", flush=True)
            sys.exit(2)
        print("GOT", message, flush=True)
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"#;
    let mut py = python(script, &s);
    feed(&mut py, &mut writer, "python asyncio");
}
