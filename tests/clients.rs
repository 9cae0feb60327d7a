//! Real clients' event loops on a real mount, each receiving several messages written one at
//! a time, every one within a deadline: edge-triggered epoll used directly (Python's
//! `select.epoll` with `EPOLLET`), a tokio `AsyncFd` reader, a Go reader (`os.Open` + `Read`,
//! which waits in Go's runtime poller, edge-triggered too) and Python asyncio's `add_reader`.
//!
//! An edge-triggered waiter that has read to `EAGAIN` is woken again only by a notification:
//! each message has to send one, however readable the descriptor already was.
//!
//! Then every recipe of docs/clients.md, run as the guide shows it (each code block follows a
//! `<!-- recipe: NAME -->` marker; the tokio one is tests/clients/asyncfd.rs, compared with the
//! guide's text), and the pitfalls the guide describes, shown on real clients.

mod common;

use common::{Mount, Proc, poll_until, proc_state, wait_until};
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

/// Whether `tool` runs (`tool ARG`). If not and this is not CI, `test` is skipped with a message
/// past the harness's capture; under CI=true, where `.ci/run` installs `package`, it fails.
fn tool_present(tool: &str, arg: &str, package: &str, test: &str) -> bool {
    match Command::new(tool).arg(arg).output() {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "`{tool}` is not installed: .ci/run installs {package}"
            );
            // Straight to stderr, past the test harness's capture: a skip must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "{test} skipped: `{tool}` is not installed (apt-get install {package}); under CI=true this fails"
            );
            false
        }
        Err(e) => panic!("cannot run {tool}: {e}"),
    }
}

/// Builds the Go program `source` as `name` under the test's temporary directory.
fn go_build(name: &str, source: &Path) -> PathBuf {
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let binary = out_dir.join(name);
    let out = Command::new("go")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GOCACHE", out_dir.join("go-cache"))
        .args(["build", "-o"])
        .arg(&binary)
        .arg(source)
        .output()
        .expect("run go build");
    assert!(out.status.success(), "go build failed: {}", String::from_utf8_lossy(&out.stderr));
    binary
}

#[test]
fn go_reader_in_the_runtime_poller_gets_each_message() {
    if !tool_present("go", "version", "golang-go", "go_reader_in_the_runtime_poller_gets_each_message") {
        return;
    }
    let reader = go_build("go-reader", Path::new("tests/clients/go/reader.go"));
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

// ---------------------------------------------------------------------------
// docs/clients.md: every recipe, run as the guide shows it
// ---------------------------------------------------------------------------

#[path = "clients/asyncfd.rs"]
mod asyncfd;

/// Bound within which a client that waits wrongly must show it has not received a message
/// (a negative check: the message was written, and the client is known to be waiting).
const QUIET: Duration = Duration::from_secs(2);

/// The code block of docs/clients.md that follows `<!-- recipe: NAME -->`.
fn recipe(name: &str) -> String {
    let guide = include_str!("../docs/clients.md");
    let marker = format!("<!-- recipe: {name} -->\n");
    let start = guide.find(&marker).unwrap_or_else(|| panic!("docs/clients.md has no recipe {name}"));
    let block = &guide[start + marker.len()..];
    let body = &block[block.find('\n').expect("a code fence") + 1..];
    body[..body.find("```").expect("a closing fence")].to_string()
}

/// A mount holding group `chat` with the given streams; and its root.
fn chat(streams: &[&str]) -> (Mount, PathBuf) {
    let m = Mount::new();
    std::fs::create_dir(m.join("chat")).expect("mkdir chat");
    for s in streams {
        File::create(m.join("chat").join(s)).expect("create stream");
    }
    let root = m.path.clone();
    (m, root)
}

/// Writes `message` to `path` with one write(2).
fn post(path: &Path, message: &str) {
    let mut f = OpenOptions::new().append(true).open(path).expect("open stream for writing");
    assert_eq!(f.write(message.as_bytes()).expect("write message"), message.len());
}

fn fd_target(pid: u32, fd: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()
}

/// How many descriptors on `path` process `pid` holds.
fn opened_by(pid: u32, path: &Path) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    fds.flatten()
        .filter(|fd| fd_target(pid, &fd.file_name().to_string_lossy()).as_deref() == Some(path))
        .count()
}

/// How many descriptors on `path` the processes of process group `pgid` hold.
fn opened_by_group(pgid: u32, path: &Path) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        // "PID (COMM) S PPID PGRP ...": the fields after the last ')'.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..].split_whitespace().collect();
        if fields.get(2) != Some(&pgid.to_string().as_str()) {
            continue;
        }
        count += opened_by(pid, path);
    }
    count
}

/// Waits until `client`'s process group holds every one of `paths` open: from then on, every
/// message written reaches it.
fn wait_open(client: &Proc, paths: &[PathBuf]) {
    for path in paths {
        wait_until(&format!("{} opened by pid {}", path.display(), client.pid()), T, || {
            opened_by_group(client.pid(), path) > 0
        });
    }
}

/// The threads of `pid` blocked in read(2) on one of `paths`, by path.
fn threads_reading(pid: u32, paths: &[PathBuf]) -> Vec<PathBuf> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return vec![] };
    tasks
        .flatten()
        .filter_map(|task| {
            let text = std::fs::read_to_string(task.path().join("syscall")).ok()?;
            let mut it = text.split_whitespace();
            (it.next()?.parse::<libc::c_long>().ok()? == libc::SYS_read).then_some(())?;
            let fd = u64::from_str_radix(it.next()?.strip_prefix("0x")?, 16).ok()?;
            fd_target(pid, &fd.to_string()).filter(|target| paths.contains(target))
        })
        .collect()
}

fn python_in(root: &Path, code: &str) -> Command {
    let mut cmd = Command::new("python3");
    // The recipes say what buffering they need; the caller's environment must not choose it.
    cmd.arg("-c").arg(code).current_dir(root).env_remove("PYTHONUNBUFFERED");
    cmd
}

fn text(client: &Proc) -> String {
    String::from_utf8_lossy(&client.output()).into_owned()
}

#[test]
fn python_selectors_recipe_gets_each_stream_s_messages() {
    let (_m, root) = chat(&["alice", "bob"]);
    let (alice, bob) = (root.join("chat/alice"), root.join("chat/bob"));
    let py = Proc::spawn(&mut python_in(&root, &recipe("python-selectors")));
    wait_open(&py, &[alice.clone(), bob.clone()]);
    post(&alice, "hi from alice\n");
    py.wait_output_contains(b"chat/alice hi from alice\n", T);
    post(&bob, "hi from bob\n");
    py.wait_output_contains(b"chat/bob hi from bob\n", T);
    post(&alice, "bye\n");
    py.wait_output_contains(b"chat/alice bye\n", T);
    assert_eq!(text(&py), "chat/alice hi from alice\nchat/bob hi from bob\nchat/alice bye\n");
}

#[test]
fn python_asyncio_recipe_gets_each_stream_s_messages() {
    let (_m, root) = chat(&["alice", "bob"]);
    let (alice, bob) = (root.join("chat/alice"), root.join("chat/bob"));
    let py = Proc::spawn(&mut python_in(&root, &recipe("python-asyncio")));
    wait_open(&py, &[alice.clone(), bob.clone()]);
    post(&bob, "one\n");
    py.wait_output_contains(b"chat/bob one\n", T);
    post(&alice, "two\n");
    py.wait_output_contains(b"chat/alice two\n", T);
    assert_eq!(text(&py), "chat/bob one\nchat/alice two\n");
}

#[test]
fn python_buffered_read_n_waits_for_n_bytes() {
    let (_m, root) = chat(&["alice"]);
    let alice = root.join("chat/alice");
    let code = r#"print(open("chat/alice", "rb").read(100), flush=True)"#;
    let py = Proc::spawn(&mut python_in(&root, code));
    wait_until("python blocked reading chat/alice", T, || {
        !threads_reading(py.pid(), std::slice::from_ref(&alice)).is_empty()
    });
    post(&alice, "hello\n");
    assert!(!poll_until(QUIET, || !py.output().is_empty()), "read(100) returned before 100 bytes");
    post(&alice, &"x".repeat(94));
    py.wait_output_contains(format!("b'hello\\n{}'\n", "x".repeat(94)).as_bytes(), T);
}

#[test]
fn python_read1_recipe_returns_each_message() {
    let (_m, root) = chat(&["alice"]);
    let alice = root.join("chat/alice");
    let py = Proc::spawn(&mut python_in(&root, &recipe("python-read1")));
    let reading = || !threads_reading(py.pid(), std::slice::from_ref(&alice)).is_empty();
    // Each step's file is opened once the previous one printed, and reads at once.
    wait_until("read1 waiting", T, reading);
    post(&alice, "first\n");
    py.wait_output_contains(b"first\n", T);
    wait_until("buffering=0 read waiting", T, reading);
    post(&alice, "second\n");
    py.wait_output_contains(b"first\nsecond\n", T);
    wait_until("line iteration waiting", T, reading);
    post(&alice, "l1\nl2\n");
    py.wait_output_contains(b"line: l2\n", T);
    post(&alice, "l3\n");
    py.wait_output_contains(b"line: l3\n", T);
    assert_eq!(text(&py), "first\nsecond\nline: l1\nline: l2\nline: l3\n");
}

/// The messages a writer made, as a reader open on `path` before it ran receives them.
fn messages_of(root: &Path, path: &Path, writer: &str) -> Vec<String> {
    let mut reader = OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).unwrap();
    let out = common::run_sh(writer, root, T);
    assert!(out.status.success(), "{writer}: {}", String::from_utf8_lossy(&out.stderr));
    let mut messages = Vec::new();
    let mut buf = vec![0; 65536];
    loop {
        match reader.read(&mut buf) {
            Ok(n) => messages.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return messages,
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// docs/clients.md's table: how many messages each way of printing makes.
#[test]
fn python_print_forms_make_the_messages_the_guide_counts() {
    let (_m, root) = chat(&["alice"]);
    let alice = root.join("chat/alice");
    let script = root.parent().unwrap().join("writer.py");
    std::fs::write(&script, recipe("python-print")).unwrap();
    let run = |python: &str| {
        let writer = format!("env -u PYTHONUNBUFFERED {python} >> chat/alice");
        messages_of(&root, &alice, &writer)
    };
    let each = ["chat: one\n", "chat: two\n", "chat: three\n"];
    assert_eq!(run(&format!("python3 {}", script.display())), each, "the recipe");
    assert_eq!(
        run(r#"python3 -c 'print("chat:", "one"); print("chat:", "two")'"#),
        ["chat: one\nchat: two\n"],
        "no flush"
    );
    let pieces: Vec<&str> = ["one", "two", "three"].iter().flat_map(|w| ["chat:", " ", w, "\n"]).collect();
    assert_eq!(run(&format!("python3 -u {}", script.display())), pieces, "python3 -u");
    assert_eq!(
        run(&format!("PYTHONUNBUFFERED=1 python3 {}", script.display())),
        pieces,
        "PYTHONUNBUFFERED=1"
    );
    assert_eq!(
        run(
            r#"python3 -u -c 'import sys; sys.stdout.write("chat: one\n"); sys.stdout.write("chat: two\n")'"#
        ),
        ["chat: one\n", "chat: two\n"],
        "sys.stdout.write"
    );
    assert_eq!(
        run(
            r#"python3 -c 'f = open("chat/alice", "a", buffering=1); print("chat:", "one", file=f); print("a\nb", "c", file=f)'"#
        ),
        ["chat: one\n", "a\nb", " c\n"],
        "line-buffered file"
    );
}

#[test]
fn rust_asyncfd_recipe_is_the_tested_code_and_gets_each_message() {
    assert_eq!(
        recipe("rust-asyncfd"),
        include_str!("clients/asyncfd.rs"),
        "docs/clients.md vs tests/clients/asyncfd.rs"
    );
    let (_m, root) = chat(&["alice"]);
    let alice = root.join("chat/alice");
    let (got, received) = mpsc::channel::<String>();
    let path = alice.to_str().unwrap().to_string();
    let reader = thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime
            .block_on(asyncfd::follow(&path, |m| got.send(String::from_utf8_lossy(m).into_owned()).unwrap()))
    });
    wait_until("the tokio reader opened chat/alice", T, || opened_by(std::process::id(), &alice) > 0);
    for m in ["one\n", "two\n", "three\n"] {
        post(&alice, m);
        assert_eq!(received.recv_timeout(T).expect("message"), m);
    }
    std::fs::remove_file(&alice).unwrap();
    let (done, finished) = mpsc::channel();
    thread::spawn(move || done.send(reader.join()).unwrap());
    let result = finished.recv_timeout(T).expect("follow returns once the stream is removed");
    result.expect("the reader thread").expect("follow");
}

/// A tokio::fs::File read of the next message (tokio's `io-util` is not a dependency here:
/// this is what `AsyncReadExt::read` does).
async fn tokio_fs_read(path: PathBuf) -> String {
    use tokio::io::{AsyncRead, ReadBuf};
    let mut file = tokio::fs::File::open(path).await.expect("open");
    let mut buf = [0; 4096];
    let mut buf = ReadBuf::new(&mut buf);
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut file).poll_read(cx, &mut buf)).await.expect("read");
    String::from_utf8_lossy(buf.filled()).into_owned()
}

#[test]
fn tokio_fs_file_ties_a_blocking_thread_per_quiet_stream() {
    let (_m, root) = chat(&["alice", "bob"]);
    let (alice, bob) = (root.join("chat/alice"), root.join("chat/bob"));
    let quiet = [alice.clone(), bob.clone()];
    let runtime =
        tokio::runtime::Builder::new_current_thread().max_blocking_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let alice_read = tokio::spawn(tokio_fs_read(alice.clone()));
        let bob_read = tokio::spawn(tokio_fs_read(bob.clone()));
        let start = std::time::Instant::now();
        while threads_reading(std::process::id(), &quiet).len() < 2 {
            assert!(start.elapsed() < T, "two pool threads never blocked reading");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Both pool threads wait on quiet streams: any other tokio::fs call waits behind them.
        let stat = tokio::spawn(tokio::fs::metadata(root.join("chat")));
        tokio::time::sleep(QUIET).await;
        assert!(!stat.is_finished(), "tokio::fs::metadata ran while the pool was taken");
        post(&bob, "wake\n");
        assert_eq!(tokio::time::timeout(T, bob_read).await.expect("bob's read").unwrap(), "wake\n");
        tokio::time::timeout(T, stat).await.expect("metadata once a thread is free").unwrap().unwrap();
        drop(alice_read); // dropping the task does not end its read
    });
    // Dropping the runtime waits for the read still blocked on alice.
    let (done, dropped) = mpsc::channel();
    thread::spawn(move || {
        drop(runtime);
        done.send(()).unwrap();
    });
    assert!(dropped.recv_timeout(QUIET).is_err(), "the runtime was dropped with a read on a quiet stream");
    post(&alice, "bye\n");
    dropped.recv_timeout(T).expect("the runtime drops once the read returns");
}

/// Builds the Go recipe `name` of docs/clients.md.
fn go_recipe(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("recipe-{name}-source"));
    std::fs::create_dir_all(&dir).unwrap();
    let source = dir.join("main.go");
    std::fs::write(&source, recipe(name)).unwrap();
    go_build(&format!("recipe-{name}"), &source)
}

#[test]
fn go_read_recipe_gets_each_message() {
    if !tool_present("go", "version", "golang-go", "go_read_recipe_gets_each_message") {
        return;
    }
    let binary = go_recipe("go-read");
    let (_m, root) = chat(&["alice"]);
    let alice = root.join("chat/alice");
    let go = Proc::spawn(Command::new(binary).current_dir(&root));
    wait_open(&go, std::slice::from_ref(&alice));
    post(&alice, "one\n");
    go.wait_output_contains(b"message: one\n", T);
    post(&alice, "two\n");
    go.wait_output_contains(b"message: one\nmessage: two\n", T);
}

#[test]
fn go_lines_recipe_gets_each_line() {
    if !tool_present("go", "version", "golang-go", "go_lines_recipe_gets_each_line") {
        return;
    }
    let binary = go_recipe("go-lines");
    let (_m, root) = chat(&["alice"]);
    let alice = root.join("chat/alice");
    let go = Proc::spawn(Command::new(binary).current_dir(&root));
    wait_open(&go, std::slice::from_ref(&alice));
    post(&alice, "one\ntwo\n");
    go.wait_output_contains(b"line: one\nline: two\n", T);
    post(&alice, "three\n");
    go.wait_output_contains(b"line: one\nline: two\nline: three\n", T);
}

/// Added to the Node recipes: a timer ticking, and an `fs` call for each line of input.
const NODE_PROBE: &str = "
setInterval(() => process.stdout.write('tick\\n'), 50);
process.stdin.on('data', () => require('fs').stat('chat', () => process.stdout.write('stat\\n')));
";

fn node(root: &Path, name: &str) -> Proc {
    let script = recipe(name) + NODE_PROBE;
    Proc::spawn_piped_stdin(Command::new("node").arg("-e").arg(script).current_dir(root))
}

fn ticks(client: &Proc) -> usize {
    text(client).matches("tick\n").count()
}

#[test]
fn node_create_read_stream_starves_with_four_quiet_streams() {
    if !tool_present("node", "--version", "nodejs", "node_create_read_stream_starves_with_four_quiet_streams")
    {
        return;
    }
    let names = ["a", "b", "c", "d", "e"];
    let (_m, root) = chat(&names);
    let paths: Vec<PathBuf> = names.iter().map(|n| root.join("chat").join(n)).collect();
    let mut node = node(&root, "node-starves");
    wait_until("libuv's four pool threads blocked reading", T, || {
        threads_reading(node.pid(), &paths).len() == 4
    });
    let reading = threads_reading(node.pid(), &paths);
    let starved = paths.iter().find(|p| !reading.contains(p)).unwrap();
    let starved_name = starved.file_name().unwrap().to_string_lossy().into_owned();
    post(starved, "late\n");
    node.write_stdin(b"stat\n");
    let before = ticks(&node);
    wait_until("timers keep running", T, || ticks(&node) >= before + 5);
    let late = format!("{starved_name}: late\n");
    assert!(
        !poll_until(QUIET, || text(&node).contains(&late) || text(&node).contains("stat\n")),
        "the fifth stream or fs.stat progressed: {}",
        text(&node)
    );
    // A message to a stream holding a thread frees it, and the queue moves.
    let woken = &reading[0];
    post(woken, "wake\n");
    node.wait_output_contains(
        format!("{}: wake\n", woken.file_name().unwrap().to_string_lossy()).as_bytes(),
        T,
    );
    node.wait_output_contains(late.as_bytes(), T);
    node.wait_output_contains(b"stat\n", T);
    node.close_stdin();
}

#[test]
fn node_cat_recipe_serves_quiet_streams_and_a_live_one() {
    if !tool_present("node", "--version", "nodejs", "node_cat_recipe_serves_quiet_streams_and_a_live_one") {
        return;
    }
    let names = ["a", "b", "c", "d", "e", "live"];
    let (_m, root) = chat(&names);
    let paths: Vec<PathBuf> = names.iter().map(|n| root.join("chat").join(n)).collect();
    let mut node = node(&root, "node-cat");
    wait_open(&node, &paths);
    for i in 0..3 {
        post(&paths[5], &format!("m{i}\n"));
        node.wait_output_contains(format!("live: m{i}\n").as_bytes(), T);
    }
    node.write_stdin(b"stat\n");
    node.wait_output_contains(b"stat\n", T);
    post(&paths[0], "quiet no more\n");
    node.wait_output_contains(b"a: quiet no more\n", T);
    node.close_stdin();
}

/// What each pipeline of the shell-filters recipe prints for the lines "an error here" and
/// "second error line".
const FILTERED: [&str; 7] = [
    "an error here\nsecond error line\n",
    "AN ERROR HERE\nSECOND ERROR LINE\n",
    "error\nerror\n",
    "an ERROR here\nsecond ERROR line\n",
    "error\nerror\n",
    "an error here\nsecond error line\n",
    "an ERROR here\nsecond ERROR line\n",
];

/// Runs each of `pipelines` on stream chat/alice; returns them with the stream's path.
fn filters(root: &Path, pipelines: &[String]) -> Vec<Proc> {
    let alice = root.join("chat/alice");
    let procs: Vec<Proc> = pipelines.iter().map(|p| common::sh(p, root)).collect();
    for p in &procs {
        wait_open(p, std::slice::from_ref(&alice));
    }
    procs
}

#[test]
fn shell_filters_recipe_passes_each_line_on() {
    if !tool_present("mawk", "-Wversion", "mawk", "shell_filters_recipe_passes_each_line_on") {
        return;
    }
    let (_m, root) = chat(&["alice"]);
    let alice = root.join("chat/alice");
    let pipelines: Vec<String> = recipe("shell-filters").lines().map(String::from).collect();
    assert_eq!(pipelines.len(), FILTERED.len());
    let procs = filters(&root, &pipelines);
    for (i, line) in ["an error here\n", "second error line\n"].iter().enumerate() {
        post(&alice, line);
        for ((p, want), pipeline) in procs.iter().zip(FILTERED).zip(&pipelines) {
            let want: String = want.split_inclusive('\n').take(i + 1).collect();
            wait_until(&format!("{pipeline} printed {want:?}"), T, || text(p) == want);
        }
    }
}

#[test]
fn shell_filters_without_line_buffering_hold_output_until_end_of_file() {
    if !tool_present(
        "mawk",
        "-Wversion",
        "mawk",
        "shell_filters_without_line_buffering_hold_output_until_end_of_file",
    ) {
        return;
    }
    let (_m, root) = chat(&["alice"]);
    let alice = root.join("chat/alice");
    let pipelines: Vec<String> = [
        "cat chat/alice | grep error",
        "cat chat/alice | tr a-z A-Z",
        "cat chat/alice | cut -d' ' -f2",
        "cat chat/alice | sed 's/error/ERROR/'",
        "cat chat/alice | stdbuf -oL mawk '{ print $2 }'",
    ]
    .map(String::from)
    .to_vec();
    let mut procs = filters(&root, &pipelines);
    post(&alice, "an error here\n");
    post(&alice, "second error line\n");
    assert!(
        !poll_until(QUIET, || procs.iter().any(|p| !p.output().is_empty())),
        "a filter wrote before its buffer filled: {:?}",
        procs.iter().map(text).collect::<Vec<_>>()
    );
    // The stream's removal ends `cat`, then each filter, which writes what it held.
    std::fs::remove_file(&alice).unwrap();
    for ((p, want), pipeline) in procs.iter_mut().zip(FILTERED[..5].iter()).zip(&pipelines) {
        assert!(p.wait_exit(T).is_some_and(|s| s.success()), "{pipeline} did not end");
        assert_eq!(text(p), *want, "{pipeline}");
    }
}

#[test]
fn a_block_buffered_filter_writes_4_kib_at_a_time() {
    let (_m, root) = chat(&["alice"]);
    let alice = root.join("chat/alice");
    let procs = filters(&root, &["cat chat/alice | grep error".to_string()]);
    let line = "an error line, padded to forty-seven bytes ...\n";
    assert_eq!(line.len(), 47);
    for _ in 0..100 {
        post(&alice, line);
    }
    let out = procs[0].wait_output_len(4096, T);
    assert!(!poll_until(Duration::from_millis(500), || procs[0].output().len() > 4096));
    assert_eq!(out, line.repeat(100).as_bytes()[..4096], "the first 4 KiB, as one block");
}

/// The number of inotify watches `pid` holds.
fn inotify_watches(pid: u32) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return 0 };
    fds.flatten()
        .filter_map(|fd| std::fs::read_to_string(fd.path()).ok())
        .map(|info| info.lines().filter(|l| l.starts_with("inotify wd:")).count())
        .sum()
}

#[test]
fn python_inotify_recipe_sees_stream_events_and_none_on_order() {
    let (_m, root) = chat(&["alice"]);
    let alice = root.join("chat/alice");
    let py = Proc::spawn(&mut python_in(&root, &recipe("python-inotify")));
    wait_until("two inotify watches", T, || inotify_watches(py.pid()) == 2);
    let mut expected = String::new();
    let mut expect = |line: &str| {
        expected.push_str(line);
        expected.push('\n');
        py.wait_output_contains(expected.as_bytes(), T);
    };
    drop(File::create(root.join("chat/carol")).unwrap());
    expect("chat CREATE carol");
    expect("chat CLOSE_WRITE carol");
    let mut w = OpenOptions::new().append(true).open(&alice).unwrap();
    for m in ["one\n", "two\n"] {
        // Each waited for: the kernel merges an event identical to the last one unread.
        w.write_all(m.as_bytes()).unwrap();
        expect("chat MODIFY alice");
    }
    drop(w);
    expect("chat CLOSE_WRITE alice");
    std::fs::rename(root.join("chat/carol"), root.join("chat/dave")).unwrap();
    expect("chat MOVED_FROM carol");
    expect("chat MOVED_TO dave");
    std::fs::remove_file(root.join("chat/dave")).unwrap();
    expect("chat DELETE dave");
    // `order` recorded both messages, and its watch reported nothing before the later events.
    assert!(!text(&py).contains("chat/order"), "{}", text(&py));
}
