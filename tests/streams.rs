//! Streams on a real mount: writing (one write(2) = one message, binary-safe, big writes
//! reassembled, max_message, O_TRUNC appends), reading (fan-out to concurrent readers,
//! message-mode split reads, coalescing, blocking and O_NONBLOCK), replay off/last/all,
//! depth (by count and by bytes, ENOBUFS for a slow reader), the memory ceiling (ENOSPC
//! until `clear`) and many readers blocked at once without starving the FUSE workers.

mod common;

use common::{Mount, Proc, blocked_in_syscall, run_ok, sh, wait_until};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);
const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Opens `path` for reading without blocking: reads on an empty stream fail EAGAIN.
fn open_nonblocking(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} O_RDONLY|O_NONBLOCK: {e}", path.display()))
}

/// Opens `path` for reading, blocking.
fn open_blocking(path: &Path) -> File {
    File::open(path).unwrap_or_else(|e| panic!("open {} O_RDONLY: {e}", path.display()))
}

fn open_writer(path: &Path) -> File {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} O_WRONLY: {e}", path.display()))
}

/// One read(2) with a buffer of `size` bytes.
fn read_once(file: &mut File, size: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size];
    let n = file.read(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// One write(2) that must take all of `data`.
fn write_once(file: &mut File, data: &[u8]) {
    let n = file.write(data).unwrap_or_else(|e| panic!("write of {} bytes: {e}", data.len()));
    assert_eq!(n, data.len(), "short write");
}

/// Opens `path`, writes `data` with one write(2), closes.
fn write_message(path: &Path, data: &[u8]) {
    write_once(&mut open_writer(path), data);
}

/// Reads a non-blocking reader message by message (64 KiB buffer) until EAGAIN.
fn drain(file: &mut File) -> Vec<Vec<u8>> {
    let mut messages = Vec::new();
    loop {
        match read_once(file, 64 * KIB) {
            Ok(m) if m.is_empty() => panic!("unexpected end of file after {messages:?}"),
            Ok(m) => messages.push(m),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return messages,
            Err(e) => panic!("read failed after {messages:?}: {e}"),
        }
    }
}

/// What a fresh non-blocking reader of `path` gets right away.
fn late_reader_sees(path: &Path) -> Vec<Vec<u8>> {
    drain(&mut open_nonblocking(path))
}

fn msgs(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|s| s.as_bytes().to_vec()).collect()
}

/// `len` bytes of a pattern that depends on `seed`, so misplaced parts show.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Runs one blocking read(2) of `size` bytes on another thread, into a buffer that starts
/// `skew` bytes past a page boundary (the kernel cuts a read into requests at page
/// boundaries, so with `skew` 0 a message of 1 MiB fills its first request exactly).
/// Panics if it does not return within `deadline` (a read that should not block, but does).
fn read_with_deadline(file: File, size: usize, skew: usize, deadline: Duration) -> (File, Vec<u8>) {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut file = file;
        let mut buf = vec![0u8; size + 2 * PAGE];
        let start = buf.as_ptr().align_offset(PAGE) + skew;
        let result = file.read(&mut buf[start..start + size]).map(|n| buf[start..start + n].to_vec());
        let _ = tx.send((file, result));
    });
    match rx.recv_timeout(deadline) {
        Ok((file, Ok(data))) => (file, data),
        Ok((_, Err(e))) => panic!("read(2) of {size} bytes failed: {e}"),
        Err(_) => panic!("read(2) of {size} bytes did not return within {deadline:?}"),
    }
}

/// The payload bytes the group of `path` retains (`# bytes` in its ctl): in these tests, the
/// bytes of the one stream `path`. (A stream read as a stream has no size: `stat` says 0.)
fn retained(path: &Path) -> u64 {
    let ctl = path.with_file_name("ctl");
    let text = fs::read_to_string(&ctl).unwrap_or_else(|e| panic!("read {}: {e}", ctl.display()));
    let bytes = text.lines().find_map(|l| l.strip_prefix("# bytes "));
    bytes.and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("no `# bytes` in {text:?}"))
}

/// The daemon still serves and none of its threads panicked (a worker that panics after
/// replying goes unnoticed by the request that made it panic).
fn assert_healthy(m: &Mount) {
    let log = m.log();
    assert!(!log.contains("panicked"), "the daemon panicked; log:\n{log}");
    fs::read_dir(&m.path).expect("the mount still answers");
}

fn wait_blocked_in_read(pid: u32, what: &str) {
    wait_until(what, T, || blocked_in_syscall(pid, libc::SYS_read));
}

// ---------------------------------------------------------------------------
// Fan-out
// ---------------------------------------------------------------------------

#[test]
fn every_reader_gets_every_message_of_concurrent_writers() {
    let m = Mount::new();
    fs::write(m.join("s"), b"").unwrap();
    let readers: Vec<Proc> =
        (0..8).map(|_| Proc::spawn(Command::new("cat").arg("s").current_dir(&m.path))).collect();
    for r in &readers {
        wait_blocked_in_read(r.pid(), "cat reader to block in read");
    }

    let mut w1 = sh("for i in $(seq 1 200); do echo m$i >> s; done", &m.path);
    let mut w2 = sh("for i in $(seq 1 200); do echo n$i >> s; done", &m.path);
    for w in [&mut w1, &mut w2] {
        let status = w.wait_exit(Duration::from_secs(30)).expect("writer finishes");
        assert!(status.success(), "writer failed: {:?}", String::from_utf8_lossy(&w.stderr_output()));
    }

    let expect_m: Vec<String> = (1..=200).map(|i| format!("m{i}")).collect();
    let expect_n: Vec<String> = (1..=200).map(|i| format!("n{i}")).collect();
    let total: usize = expect_m.iter().chain(&expect_n).map(|l| l.len() + 1).sum();
    for (index, r) in readers.iter().enumerate() {
        let out = r.wait_output_len(total, T);
        assert_eq!(out.len(), total, "reader {index} got more than was written");
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 400, "reader {index}");
        let got_m: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with('m')).collect();
        let got_n: Vec<&str> = lines.iter().copied().filter(|l| l.starts_with('n')).collect();
        assert_eq!(got_m, expect_m, "reader {index}: first writer's lines, in order, once each");
        assert_eq!(got_n, expect_n, "reader {index}: second writer's lines, in order, once each");
    }
    assert_healthy(&m);
}

// ---------------------------------------------------------------------------
// Writing: message boundaries, binary data, big messages, limits
// ---------------------------------------------------------------------------

#[test]
fn each_write_is_one_message() {
    let m = Mount::new();
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let mut reader = open_nonblocking(&s);
    let mut writer = open_writer(&s);
    for text in ["first\n", "second, no newline", "third\nwith two lines\n"] {
        write_once(&mut writer, text.as_bytes());
    }
    for text in ["first\n", "second, no newline", "third\nwith two lines\n"] {
        assert_eq!(read_once(&mut reader, 64 * KIB).unwrap(), text.as_bytes());
    }
    let err = read_once(&mut reader, 64 * KIB).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
    assert_healthy(&m);
}

#[test]
fn messages_are_binary_safe() {
    let m = Mount::new();
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let mut reader = open_nonblocking(&s);
    let all_bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    write_message(&s, &all_bytes);
    write_message(&s, b"\0");
    write_message(&s, b"\n\n\0\n");
    assert_eq!(read_once(&mut reader, 64 * KIB).unwrap(), all_bytes);
    assert_eq!(read_once(&mut reader, 64 * KIB).unwrap(), b"\0");
    assert_eq!(read_once(&mut reader, 64 * KIB).unwrap(), b"\n\n\0\n");
    assert_healthy(&m);
}

#[test]
fn a_big_unaligned_write_is_one_message() {
    let m = Mount::new();
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let mut reader = open_blocking(&s);
    let len = 3 * MIB + 123;
    let buffer = pattern(len + 1, 7);
    // From an odd address: the kernel cuts the write into requests at page boundaries.
    let message = &buffer[1..];
    write_message(&s, message);
    write_message(&s, message);
    write_message(&s, b"after");

    // Once into a page-aligned buffer, once into an odd address.
    for skew in [0, 1] {
        let (r, got) = read_with_deadline(reader, 4 * MIB, skew, T);
        reader = r;
        assert_eq!(got.len(), len, "one read(2) returns the whole reassembled message (skew {skew})");
        assert!(got == message, "content differs from what was written (skew {skew})");
    }
    let (_, got) = read_with_deadline(reader, 4 * MIB, 0, T);
    assert_eq!(got, b"after");
    assert_healthy(&m);
}

#[test]
fn a_read_bigger_than_the_message_returns_just_that_message() {
    let m = Mount::new();
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let reader = open_blocking(&s);
    let message = pattern(MIB, 3);
    write_message(&s, &message);
    // The message fills the read's first request exactly and nothing follows: the next
    // request of this read(2) must end it, not block.
    let (reader, got) = read_with_deadline(reader, 8 * MIB, 0, T);
    assert_eq!(got.len(), message.len());
    assert!(got == message, "content differs");

    // With more messages queued, the read still stops at the end of the first one.
    let second = pattern(MIB, 4);
    write_message(&s, &second);
    write_message(&s, b"third");
    let (reader, got) = read_with_deadline(reader, 8 * MIB, 0, T);
    assert_eq!(got.len(), second.len());
    assert!(got == second, "content differs");
    let (_, got) = read_with_deadline(reader, 8 * MIB, 0, T);
    assert_eq!(got, b"third");
    assert_healthy(&m);
}

#[test]
fn writev_of_several_buffers_is_one_message() {
    let m = Mount::new();
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let reader = open_blocking(&s);
    let sizes = [MIB - 7, 13, 700_001, 4096, 868_761];
    assert_eq!(sizes.iter().sum::<usize>(), 5 * MIB / 2);
    let parts: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| pattern(n, 100 + i as u32)).collect();
    let iov: Vec<libc::iovec> = parts
        .iter()
        .map(|p| libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() })
        .collect();
    let writer = open_writer(&s);
    // SAFETY: every iovec describes a live, initialised Vec for the duration of the call.
    let n = unsafe { libc::writev(writer.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int) };
    assert_eq!(n, 5 * MIB as isize / 2, "writev: {}", io::Error::last_os_error());
    drop(writer);

    let (_, got) = read_with_deadline(reader, 4 * MIB, 0, T);
    let expected = parts.concat();
    assert_eq!(got.len(), expected.len(), "one read(2) returns the whole writev");
    assert!(got == expected, "content differs");
    assert_healthy(&m);
}

#[test]
fn max_message_refuses_bigger_writes_with_efbig() {
    let m = Mount::with_options("max_message=1M");
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let mut reader = open_nonblocking(&s);
    let mut writer = open_writer(&s);

    let err = writer.write(&pattern(2 * MIB, 1)).expect_err("a 2 MiB write must fail");
    assert_eq!(err.raw_os_error(), Some(libc::EFBIG), "{err}");
    assert!(err.to_string().contains("File too large"), "{err}");
    let err = read_once(&mut reader, 4 * MIB).expect_err("nothing was published");
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
    assert_eq!(retained(&s), 0);

    let ok = pattern(512 * KIB, 2);
    write_once(&mut writer, &ok);
    let got = read_once(&mut reader, 4 * MIB).unwrap();
    assert!(got == ok, "512 KiB message: got {} bytes", got.len());
    let err = read_once(&mut reader, 4 * MIB).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
    assert_healthy(&m);
}

#[test]
fn o_trunc_appends_and_deletes_nothing() {
    let m = Mount::with_options("replay=all");
    let s = m.join("s");
    run_ok("echo one > s; echo two > s; : > s; truncate -s 0 s", &m.path);
    assert_eq!(retained(&s), 8);
    assert_eq!(late_reader_sees(&s), msgs(&["one\n", "two\n"]));
    let cat = run_ok("timeout 1 cat s; test $? = 124", &m.path);
    assert_eq!(cat, "one\ntwo\n");
    assert_healthy(&m);
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

#[test]
fn a_small_buffer_gets_a_message_in_parts() {
    let m = Mount::new();
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let mut reader = open_nonblocking(&s);
    let big = pattern(10_000, 9);
    write_message(&s, &big);
    write_message(&s, b"next");
    let mut parts = Vec::new();
    for _ in 0..3 {
        parts.push(read_once(&mut reader, 4096).unwrap());
    }
    let lens: Vec<usize> = parts.iter().map(Vec::len).collect();
    assert_eq!(lens, [4096, 4096, 1808]);
    assert!(parts.concat() == big, "parts do not make up the message");
    assert_eq!(read_once(&mut reader, 4096).unwrap(), b"next");
    assert_healthy(&m);
}

#[test]
fn dd_with_a_tiny_block_size_reads_one_message_in_pieces() {
    let m = Mount::with_options("replay=all");
    run_ok("printf abcdefgh >> s; printf XYZ >> s", &m.path);
    let out = run_ok("dd if=s bs=3 count=3 status=none", &m.path);
    // abc, def, gh: the third read ends with the message and does not run into XYZ.
    assert_eq!(out, "abcdefgh");
    let out = run_ok("dd if=s bs=3 count=4 status=none", &m.path);
    assert_eq!(out, "abcdefghXYZ");
    assert_healthy(&m);
}

#[test]
fn data_coalesce_returns_several_messages_in_one_read() {
    let m = Mount::new();
    run_ok("echo data coalesce > ctl", &m.path);
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let mut reader = open_nonblocking(&s);
    for text in ["one\n", "two\n", "three\n"] {
        write_message(&s, text.as_bytes());
    }
    assert_eq!(read_once(&mut reader, 64 * KIB).unwrap(), b"one\ntwo\nthree\n");
    // And a small buffer cuts across message boundaries.
    for text in ["abc", "def"] {
        write_message(&s, text.as_bytes());
    }
    assert_eq!(read_once(&mut reader, 4).unwrap(), b"abcd");
    assert_eq!(read_once(&mut reader, 4).unwrap(), b"ef");
    assert_healthy(&m);
}

#[test]
fn an_empty_stream_blocks_or_says_eagain() {
    let m = Mount::new();
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let err = read_once(&mut open_nonblocking(&s), 64 * KIB).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");

    let cat = Proc::spawn(Command::new("cat").arg(&s));
    wait_blocked_in_read(cat.pid(), "cat to block in read on the empty stream");
    assert_eq!(cat.output(), b"", "nothing to read yet");
    write_message(&s, b"hello\n");
    cat.wait_output_contains(b"hello\n", T);
    assert_eq!(cat.output(), b"hello\n");
    wait_blocked_in_read(cat.pid(), "cat to block again for the next message");
    assert_healthy(&m);
}

/// What `cat OPTION` prints of a regular file holding `data`.
fn cat_of_a_file(option: &str, data: &[u8]) -> Vec<u8> {
    let dir = common::TempDir::new();
    let file = dir.join("f");
    fs::write(&file, data).unwrap();
    let out = Command::new("cat").arg(option).arg(&file).output().expect("run cat");
    assert!(out.status.success(), "cat {option}: {out:?}");
    out.stdout
}

/// GNU cat with an option asks FIONREAD before each read and flushes its output only when
/// that says nothing is left; the kernel answers it with the file's size (minus a position
/// that never moves on a stream). A stream has no size, so each option prints at once.
#[test]
fn cat_with_any_option_prints_a_streams_history_at_once() {
    let m = Mount::with_options("replay=all");
    let history: &[&[u8]] = &[b"one\n", b"\ttwo \x01\n", b"\n", b"\n", b"three"];
    fs::write(m.join("s"), b"").unwrap();
    for message in history {
        write_message(&m.join("s"), message);
    }
    let options = ["-A", "-b", "-e", "-E", "-n", "-s", "-t", "-T", "-v"];
    let cats: Vec<Proc> = options
        .iter()
        .map(|option| {
            Proc::spawn(Command::new("timeout").args(["20", "cat", option, "s"]).current_dir(&m.path))
        })
        .collect();
    for (option, cat) in options.iter().zip(&cats) {
        let expected = cat_of_a_file(option, &history.concat());
        let got = cat.wait_output_len(expected.len(), T);
        assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(&expected), "cat {option}");
    }
    assert_healthy(&m);
}

/// Nothing writes `order` through the mount, so the kernel's size of it stays 0 and a cat
/// with options prints each entry as it comes, also of a writer that keeps its descriptor.
#[test]
fn cat_with_options_follows_order_as_messages_come() {
    let m = Mount::with_options("replay=all");
    run_ok("echo x >> a", &m.path);
    let cat = Proc::spawn(Command::new("timeout").args(["20", "cat", "-n", "order"]).current_dir(&m.path));
    cat.wait_output_contains(b"     1\ta\n", T);
    fs::write(m.join("b"), b"").unwrap();
    let mut writer = open_writer(&m.join("b"));
    for line in 2..6 {
        write_once(&mut writer, b"y\n");
        cat.wait_output_contains(format!("     {line}\tb\n").as_bytes(), T);
    }
    assert_healthy(&m);
}

/// A private mapping of a stream: the kernel maps it without asking mqfs and pages it in
/// through the page cache. Such a read would move the reader's cursor, so mqfs refuses it
/// (ENODEV): the page-in fails (EFAULT for a system call given the mapping, SIGBUS for a
/// load) and the message is still the reader's next read. sendfile(2) from a stream reads
/// through the page cache too, and fails the same way. A static stream maps its history.
const MAP_AND_TOUCH: &str = r#"
import ctypes, mmap, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.write.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
libc.write.restype = ctypes.c_ssize_t
r = os.open(sys.argv[1], os.O_RDONLY | os.O_NONBLOCK)
w = os.open(sys.argv[1], os.O_WRONLY)
shared = libc.mmap(None, 4096, mmap.PROT_READ, mmap.MAP_SHARED, r, 0)
print("shared:", os.strerror(ctypes.get_errno()) if shared == ctypes.c_void_p(-1).value else "mapped")
p = libc.mmap(None, 4096, mmap.PROT_READ, mmap.MAP_PRIVATE, r, 0)
assert p != ctypes.c_void_p(-1).value, os.strerror(ctypes.get_errno())
# Written after the last stat or open, so the kernel's cached size covers the message and
# the page-in asks mqfs (under size 0 it would fail in the kernel without asking).
os.write(w, b"hello\n")
_, pipe = os.pipe()
n = libc.write(pipe, p, 6)
print("page-in:", os.strerror(ctypes.get_errno()) if n < 0 else ctypes.string_at(p, n))
try:
    print("sendfile:", os.sendfile(pipe, r, None, 100))
except OSError as e:
    print("sendfile:", e.strerror)
print("read:", os.read(r, 100))
"#;

#[test]
fn a_private_mapping_of_a_stream_reads_nothing_and_takes_no_message() {
    let m = Mount::new();
    fs::write(m.join("s"), b"").unwrap();
    let out = Command::new("python3").arg("-c").arg(MAP_AND_TOUCH).arg("s").current_dir(&m.path).output();
    let out = out.expect("run python3");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "shared: No such device\npage-in: Bad address\nsendfile: No such device\nread: b'hello\\n'\n"
    );
    assert!(m.log().contains("page cache (mmap) refused: No such device"), "{}", m.log());

    // A static stream reads by offset: a private mapping shows its history. (A new one: `s`'s
    // first bytes, read above, were dropped, and the dropped head of a static file is gone.)
    run_ok("echo data static > ctl; echo replay all > ctl; echo history >> t", &m.path);
    let script = "import mmap, sys; f = open(sys.argv[1], 'rb'); \
                  print(mmap.mmap(f.fileno(), 8, mmap.MAP_PRIVATE, mmap.PROT_READ)[:])";
    let out = Command::new("python3").args(["-c", script, "t"]).current_dir(&m.path).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "b'history\\n'\n", "{out:?}");
    assert_healthy(&m);
}

// ---------------------------------------------------------------------------
// Replay
// ---------------------------------------------------------------------------

#[test]
fn replay_decides_what_a_late_reader_gets_first() {
    let m = Mount::new();
    for mode in ["off", "last", "all"] {
        run_ok(&format!("mkdir {mode} && echo replay {mode} > {mode}/ctl"), &m.path);
        run_ok("for i in 1 2 3; do echo m$i >> s; done", &m.join(mode));
    }
    let expected: [(&str, &[&str]); 3] =
        [("off", &[]), ("last", &["m3\n"]), ("all", &["m1\n", "m2\n", "m3\n"])];
    for (mode, history) in expected {
        let s = m.join(mode).join("s");
        let mut reader = open_nonblocking(&s);
        assert_eq!(drain(&mut reader), msgs(history), "replay {mode}: late reader's first messages");
        write_message(&s, b"m4\n");
        assert_eq!(drain(&mut reader), msgs(&["m4\n"]), "replay {mode}: then new messages");
    }
    assert_healthy(&m);
}

// ---------------------------------------------------------------------------
// Depth
// ---------------------------------------------------------------------------

#[test]
fn depth_bounds_the_history_in_messages() {
    let m = Mount::with_options("replay=all");
    run_ok("echo depth 3 > ctl; for i in 0 1 2 3 4 5 6 7 8 9; do echo m$i >> s; done", &m.path);
    let s = m.join("s");
    assert_eq!(late_reader_sees(&s), msgs(&["m7\n", "m8\n", "m9\n"]));
    assert_eq!(retained(&s), 9);
    assert_healthy(&m);
}

#[test]
fn depth_bounds_the_history_in_bytes() {
    let m = Mount::with_options("replay=all");
    run_ok("echo depth 10B > ctl; printf aaaa >> s; printf bbbb >> s; printf cccc >> s", &m.path);
    let s = m.join("s");
    assert_eq!(late_reader_sees(&s), msgs(&["bbbb", "cccc"]));
    assert_eq!(retained(&s), 8);
    run_ok("printf 0123456789 >> s", &m.path);
    assert_eq!(late_reader_sees(&s), msgs(&["0123456789"]));
    assert_eq!(retained(&s), 10);
    assert_healthy(&m);
}

#[test]
fn a_slow_reader_past_depth_gets_enobufs_once_then_the_newest() {
    let m = Mount::new();
    run_ok("echo depth 5 > ctl", &m.path);
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let mut slow = open_nonblocking(&s);
    let mut writer = open_writer(&s);
    for i in 0..10 {
        write_once(&mut writer, format!("m{i}\n").as_bytes());
    }
    // Only the slow reader's backlog is kept, and only 5 deep.
    assert_eq!(retained(&s), 15);
    let err = read_once(&mut slow, 64 * KIB).expect_err("the reader lost messages");
    assert_eq!(err.raw_os_error(), Some(libc::ENOBUFS), "{err}");
    assert_eq!(drain(&mut slow), msgs(&["m5\n", "m6\n", "m7\n", "m8\n", "m9\n"]));
    assert_eq!(retained(&s), 0, "read by every reader: nothing retained");
    assert_healthy(&m);
}

#[test]
fn replay_off_without_readers_retains_nothing() {
    let m = Mount::new();
    run_ok("for i in 1 2 3; do echo m$i >> s; done", &m.path);
    let s = m.join("s");
    assert_eq!(retained(&s), 0);
    assert!(run_ok("cat ctl", &m.path).contains("# messages 0\n# bytes 0\n"));
    assert_eq!(late_reader_sees(&s), Vec::<Vec<u8>>::new());
    assert_healthy(&m);
}

// ---------------------------------------------------------------------------
// Memory ceiling
// ---------------------------------------------------------------------------

#[test]
fn the_memory_ceiling_refuses_writes_with_enospc_until_clear() {
    // max_message may not exceed the memory ceiling, so it is lowered with it.
    let m = Mount::with_options("memory=1M,max_message=1M,replay=all");
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let mut writer = open_writer(&s);
    let mut written = Vec::new();
    let error = loop {
        assert!(written.len() < 64, "64 writes of 64 KiB all fit under memory=1M");
        let message = vec![written.len() as u8; 64 * KIB];
        match writer.write(&message) {
            Ok(n) => {
                assert_eq!(n, message.len());
                written.push(message);
            }
            Err(e) => break e,
        }
    };
    assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "{error}");
    assert!(written.len() >= 8, "only {} messages of 64 KiB fit in 1 MiB", written.len());

    // The history is intact and readable.
    assert!(late_reader_sees(&s) == written, "history after ENOSPC differs");
    assert_eq!(retained(&s), (written.len() * 64 * KIB) as u64);
    // Still full.
    let err = writer.write(&[1u8; 64 * KIB]).expect_err("still full");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");

    run_ok("echo clear > ctl", &m.path);
    assert_eq!(retained(&s), 0);
    for _ in 0..written.len() {
        write_once(&mut writer, &[2u8; 64 * KIB]);
    }
    assert_eq!(run_ok("LC_ALL=C ls", &m.path), "ctl\norder\ns\n");
    assert_healthy(&m);
}

// ---------------------------------------------------------------------------
// Many readers
// ---------------------------------------------------------------------------

const MANY_READERS: &str = r#"
import os, sys, threading
path, n = sys.argv[1], int(sys.argv[2])
fds = [os.open(path, os.O_RDONLY) for _ in range(n)]
results = [None] * n
def read(i):
    try:
        results[i] = os.read(fds[i], 65536)
    except OSError as e:
        results[i] = repr(e).encode()
threads = [threading.Thread(target=read, args=(i,)) for i in range(n)]
for t in threads:
    t.start()
print("started", flush=True)
for t in threads:
    t.join()
print(sum(1 for r in results if r == b"wake\n"), flush=True)
print(sorted(set(results)), flush=True)
"#;

/// How many threads of `pid` are asleep in read(2).
fn threads_in_read(pid: u32) -> usize {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .filter_map(|t| t.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&tid| blocked_in_syscall(tid, libc::SYS_read))
        .count()
}

#[test]
fn two_hundred_blocked_readers_do_not_stall_the_mount() {
    let m = Mount::new();
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let mut py = Proc::spawn(
        Command::new("python3").arg("-c").arg(MANY_READERS).arg(&s).arg("200").current_dir(&m.path),
    );
    py.wait_output_contains(b"started\n", T);
    wait_until("200 python threads blocked in read", Duration::from_secs(20), || {
        threads_in_read(py.pid()) == 200
    });

    // With 200 reads parked (and 4 FUSE workers), everything else still works.
    fs::write(m.join("t"), b"").unwrap();
    let mut t_reader = open_nonblocking(&m.join("t"));
    let out = run_ok(
        "mkdir g && touch g/x && LC_ALL=C ls && LC_ALL=C ls g && echo hi >> t && echo there >> t",
        &m.path,
    );
    assert_eq!(out, "ctl\ng\norder\ns\nt\nctl\norder\nx\n");
    assert_eq!(drain(&mut t_reader), msgs(&["hi\n", "there\n"]));
    let ctl = run_ok("cat ctl", &m.path);
    assert!(ctl.contains("# readers 201\n"), "200 readers of s and 1 of t:\n{ctl}");
    assert_eq!(threads_in_read(py.pid()), 200, "the readers are still parked");

    write_message(&s, b"wake\n");
    let status = py.wait_exit(T).expect("every reader returns");
    let out = String::from_utf8_lossy(&py.output()).into_owned();
    assert!(status.success(), "{out}\n{}", String::from_utf8_lossy(&py.stderr_output()));
    assert_eq!(out, "started\n200\n[b'wake\\n']\n");
    assert_healthy(&m);
}

// ---------------------------------------------------------------------------
// One write(2), one message: O_APPEND, writev, static descriptors, the ceiling
// ---------------------------------------------------------------------------

/// Python run with the stream as argv[1]; `lens(r)` drains a non-blocking reader `r` and
/// gives the lengths of the messages it read, `content(r)` the messages themselves.
fn python(script: &str, stream: &Path, cwd: &Path) -> String {
    const PRELUDE: &str = r#"
import os, sys, errno
s = sys.argv[1]
def content(r):
    out = []
    while True:
        try:
            m = os.read(r, 64 << 20)
        except BlockingIOError:
            return out
        out.append(m)
def lens(r):
    return [len(m) for m in content(r)]
def reader():
    return os.open(s, os.O_RDONLY | os.O_NONBLOCK)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(format!("{PRELUDE}\n{script}"))
        .arg(stream)
        .current_dir(cwd)
        .output()
        .expect("run python3");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn an_o_append_write_after_history_is_one_message() {
    let m = Mount::new();
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let got = python(
        "r = reader()\nopen(s, 'ab').write(b'x')\nopen(s, 'ab').write(b'y' * (3 << 20))\n\
         ms = content(r)\nprint([len(m) for m in ms], ms[-1] == b'y' * (3 << 20))\n\
         try:\n  os.pwrite(os.open(s, os.O_WRONLY), b'p', 0)\nexcept OSError as e:\n  print(errno.errorcode[e.errno])",
        &s,
        &m.path,
    );
    assert_eq!(got, "[1, 3145728] True\nESPIPE", "and a stream has no offsets to pwrite at");
    assert_healthy(&m);
}

#[test]
fn dd_oflag_append_and_shell_append_of_big_writes_are_one_message_each() {
    let m = Mount::new();
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let mut r = open_nonblocking(&s);
    write_message(&s, b"history");
    run_ok(
        "head -c 4194304 /dev/zero | dd of=s oflag=append conv=notrunc bs=4M iflag=fullblock 2>/dev/null",
        &m.path,
    );
    run_ok("dd if=/dev/zero bs=3M count=1 iflag=fullblock 2>/dev/null >> s", &m.path);
    let mut lens = Vec::new();
    loop {
        match read_once(&mut r, 8 * MIB) {
            Ok(m) => lens.push(m.len()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(lens, [7, 4 * MIB, 3 * MIB]);
    assert_healthy(&m);
}

#[test]
fn a_data_static_descriptors_large_writes_and_pwrites_are_one_message_each() {
    let m = Mount::with_options("replay=all,data=static");
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    python(
        "w = os.open(s, os.O_WRONLY)\nos.write(w, b'a')\nos.write(w, b'b' * (2 << 20))\n\
         os.pwrite(w, b'c' * (2 << 20), 12345)\nos.close(w)",
        &s,
        &m.path,
    );
    run_ok("echo data message > ctl", &m.path);
    assert_eq!(python("print(lens(reader()))", &s, &m.path), "[1, 2097152, 2097152]");
    assert_healthy(&m);
}

#[test]
fn writev_of_many_small_iovecs_is_one_message() {
    let m = Mount::new();
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let got = python(
        "r = reader()\nw = os.open(s, os.O_WRONLY)\n\
         print(os.writev(w, [b'a' * 10] * 300), os.writev(w, [bytes([i % 251]) * 100 for i in range(1024)]))\n\
         ms = content(r)\nprint([len(m) for m in ms], ms[1] == b''.join(bytes([i % 251]) * 100 for i in range(1024)))",
        &s,
        &m.path,
    );
    assert_eq!(got, "3000 102400\n[3000, 102400] True");
    assert_healthy(&m);
}

#[test]
fn a_write_that_does_not_fit_fails_whole_with_enospc() {
    let m = Mount::with_options("memory=64M,max_message=64M,replay=all");
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    // One message leaves just over 2 MiB free: room for a 2 MiB payload, not for its index
    // entry and `order` line too. A 2 MiB write must fail whole with ENOSPC, never with a
    // short count, which a writer retries, publishing the remainder as a message of its own.
    let got = python(
        "w = os.open(s, os.O_WRONLY)\nfill = (64 << 20) - (2 << 20) - 12\nassert os.write(w, b'f' * fill) == fill\n\
         big = b'g' * (2 << 20)\n\
         try:\n  n = os.write(w, big)\n  print('wrote', n)\n  os.write(w, big[n:])\nexcept OSError as e:\n  print(errno.errorcode[e.errno])\n\
         print(lens(reader()) == [fill])",
        &s,
        &m.path,
    );
    assert_eq!(got, "ENOSPC\nTrue", "nothing of the 2 MiB write is published");
    assert_healthy(&m);
}

/// The daemon's peak resident memory (VmHWM), in bytes.
fn peak_rss(m: &Mount) -> usize {
    let status = fs::read_to_string(format!("/proc/{}/status", m.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * KIB
}

#[test]
fn frame_close_buffers_count_against_the_ceiling() {
    let m = Mount::with_options("memory=64M,max_message=64M,frame=close");
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    // 20 descriptors each try to hold 60 MiB; all but one get ENOSPC.
    let got = python(
        "fds = [os.open(s, os.O_WRONLY) for _ in range(20)]\nchunk = b'z' * (4 << 20)\nfull = 0\n\
         for fd in fds:\n  try:\n    for _ in range(15):\n      assert os.write(fd, chunk) == len(chunk)\n    full += 1\n  except OSError as e:\n    assert e.errno == errno.ENOSPC, e\n\
         print(full)\n\
         [os.close(fd) for fd in fds]",
        &s,
        &m.path,
    );
    assert_eq!(got, "1", "one 60 MiB message fits under 64M");
    let peak = peak_rss(&m);
    eprintln!("the daemon peaked at {} MiB", peak / MIB);
    assert!(peak < 256 * MIB, "the daemon peaked at {} MiB", peak / MIB);
    assert_healthy(&m);
}

#[test]
fn concurrent_big_writes_count_against_the_ceiling() {
    // 16 streams (writes to one inode are serialised by the kernel), retained history
    // (replay all): one message of 60 MiB fits under 64M, so one write succeeds and every
    // other fails whole, on its first request; none is admitted and then
    // refused at its end, which the kernel would turn into a short count.
    let m = Mount::with_options("memory=64M,max_message=64M,replay=all");
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let got = python(
        "import threading\nbig = b'w' * (60 << 20)\nresults = []\n\
         def write(i):\n  fd = os.open(f'{s}{i}', os.O_WRONLY | os.O_CREAT)\n  try:\n    results.append(os.write(fd, big) == len(big))\n  except OSError as e:\n    results.append(errno.errorcode[e.errno])\n  os.close(fd)\n\
         ts = [threading.Thread(target=write, args=(i,)) for i in range(16)]\n[t.start() for t in ts]\n[t.join() for t in ts]\n\
         print(sorted(map(str, results)), sum((lens(os.open(f'{s}{i}', os.O_RDONLY | os.O_NONBLOCK)) for i in range(16)), []))",
        &s,
        &m.path,
    );
    let expected = format!("[{}'True'] [62914560]", "'ENOSPC', ".repeat(15));
    assert_eq!(got, expected, "each write whole or ENOSPC, never a short count");
    let peak = peak_rss(&m);
    eprintln!("the daemon peaked at {} MiB", peak / MIB);
    assert!(peak < 256 * MIB, "the daemon peaked at {} MiB", peak / MIB);
    assert_healthy(&m);
}

#[test]
fn sendfile_into_a_stream_publishes_one_message_per_pipe_buffer() {
    // Documented behaviour: sendfile/splice/copy_file_range reach the stream as writes of
    // at most 64 KiB (a pipe's worth), each a message; together they are the file, in order.
    let m = Mount::new();
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let got = python(
        "import shutil, tempfile\ndata = os.urandom(300000)\nsrc = tempfile.NamedTemporaryFile()\nsrc.write(data)\nsrc.flush()\n\
         r = reader()\nshutil.copyfile(src.name, s)\nms = content(r)\n\
         print(len(ms) > 1, max(map(len, ms)) <= 65536, b''.join(ms) == data)",
        &s,
        &m.path,
    );
    assert_eq!(got, "True True True");
    assert_healthy(&m);
}
