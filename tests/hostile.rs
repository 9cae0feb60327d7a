//! Hostile input: the ctl language fuzzed against a model of its grammar (random, mutated and
//! binary writes: each either applies exactly what the model says or fails EINVAL leaving ctl,
//! history included, unchanged; a ctl write the kernel cuts into several requests is refused
//! whole); names with every byte but '/' and NUL, at and over NAME_MAX, groups nested 1000
//! deep; 100,000 streams in a group (a million under MQFS_SOAK) listed, counted and measured;
//! a directory listed while its entries are removed; zero-length, maximal, oversized (1 GiB)
//! and unreadable-buffer writes (a short write(2) is never glued to the writer's next one on a
//! `data static` file, its reservation goes at the next close of a descriptor of the file, and
//! under `frame close` its bytes are what the close publishes); reads with 0- to 3-byte buffers; every way to create, write,
//! rename or remove ctl and order, renames into a group's own subtree; and a long random
//! sequence of file operations from another process, after which the daemon still serves,
//! never answered EIO (what a contained panic gives), and returns every byte of memory once
//! everything is removed.

mod common;
mod mqcheck;

use common::{Mount, Proc, run_sh, wait_until};
use mqcheck::{assert_healthy, ctl_count, python, sized, status_kib, text};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn errno_of<T>(r: io::Result<T>) -> Option<i32> {
    r.err().map(|e| e.raw_os_error().unwrap_or(-1))
}

fn errname(e: Option<i32>) -> String {
    match e {
        None => "ok".into(),
        Some(n) => {
            let names = [
                (libc::EPERM, "EPERM"),
                (libc::ENOENT, "ENOENT"),
                (libc::EIO, "EIO"),
                (libc::EBADF, "EBADF"),
                (libc::EAGAIN, "EAGAIN"),
                (libc::EACCES, "EACCES"),
                (libc::EFAULT, "EFAULT"),
                (libc::EBUSY, "EBUSY"),
                (libc::EEXIST, "EEXIST"),
                (libc::EXDEV, "EXDEV"),
                (libc::ENOTDIR, "ENOTDIR"),
                (libc::EISDIR, "EISDIR"),
                (libc::EINVAL, "EINVAL"),
                (libc::EFBIG, "EFBIG"),
                (libc::ENOSPC, "ENOSPC"),
                (libc::ENAMETOOLONG, "ENAMETOOLONG"),
                (libc::ENOTEMPTY, "ENOTEMPTY"),
                (libc::ENOSYS, "ENOSYS"),
                (libc::EPIPE, "EPIPE"),
            ];
            names.iter().find(|(v, _)| *v == n).map(|(_, s)| s.to_string()).unwrap_or(format!("errno {n}"))
        }
    }
}

fn open_nonblocking(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

/// Reads messages until EAGAIN, each read with `buf` bytes.
fn drain(file: &mut File, buf: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut b = vec![0u8; buf];
    loop {
        match file.read(&mut b) {
            Ok(0) => panic!("unexpected end-of-file"),
            Ok(n) => out.push(b[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return out,
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn write_once(path: &Path, data: &[u8]) -> io::Result<usize> {
    OpenOptions::new().write(true).open(path)?.write(data)
}

fn path_of(dir: &Path, name: &[u8]) -> PathBuf {
    dir.join(OsStr::from_bytes(name))
}

// ---------------------------------------------------------------------------
// The ctl language, fuzzed
// ---------------------------------------------------------------------------

/// xorshift64*: a seeded generator, so a failing case can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// The configuration as ctl prints it (its first five lines).
#[derive(Clone, Debug, PartialEq)]
struct Config {
    data: String,
    replay: String,
    depth: String,
    write: String,
    frame: String,
}

impl Config {
    fn render(&self) -> String {
        format!(
            "data {}\nreplay {}\ndepth {}\nwrite {}\nframe {}\n",
            self.data, self.replay, self.depth, self.write, self.frame
        )
    }
}

/// `depth` as the grammar defines it: a count, or a count with a unit B/K/M/G (either case,
/// binary multiples); 0 means unlimited. Returns how ctl prints it.
fn model_depth(word: &str) -> Option<String> {
    let at = word.find(|c: char| !c.is_ascii_digit()).unwrap_or(word.len());
    let (digits, unit) = word.split_at(at);
    let n: u64 = digits.parse().ok()?;
    let mult: u64 = match unit {
        "" => return Some(n.to_string()),
        "B" | "b" => 1,
        "K" | "k" => 1 << 10,
        "M" | "m" => 1 << 20,
        "G" | "g" => 1 << 30,
        _ => return None,
    };
    let bytes = n.checked_mul(mult)?;
    Some(match [(1u64 << 30, "G"), (1 << 20, "M"), (1 << 10, "K")].iter().find(|(s, _)| bytes % s == 0) {
        _ if bytes == 0 => "0".to_string(),
        Some((s, u)) => format!("{}{u}", bytes / s),
        None => format!("{bytes}B"),
    })
}

/// The model of a ctl write (docs/semantics.md, "ctl"): UTF-8 text, one command per line,
/// blank and `#` lines ignored, all or nothing. Returns the new configuration and whether
/// `clear` was among the commands, or None if the write must fail EINVAL.
fn model_apply(config: &Config, text: &[u8]) -> Option<(Config, bool)> {
    let text = std::str::from_utf8(text).ok()?;
    let mut c = config.clone();
    let mut clear = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["data", m @ ("message" | "coalesce" | "static")] => c.data = m.to_string(),
            ["replay", m @ ("off" | "last" | "all")] => c.replay = m.to_string(),
            ["replay", "on"] => c.replay = "all".into(),
            ["depth", d] => c.depth = model_depth(d)?,
            ["write", m @ ("nonblock" | "one" | "all")] => c.write = m.to_string(),
            ["frame", m @ ("write" | "close")] => c.frame = m.to_string(),
            ["clear"] => clear = true,
            _ => return None,
        }
    }
    Some((c, clear))
}

const WORDS: &[&str] = &[
    "data",
    "replay",
    "depth",
    "write",
    "frame",
    "clear",
    "message",
    "coalesce",
    "static",
    "off",
    "last",
    "all",
    "on",
    "nonblock",
    "one",
    "close",
    "0",
    "1",
    "7",
    "64K",
    "16M",
    "1G",
    "10B",
    "3k",
    "2m",
    "5g",
    "12b",
    "-1",
    "+3",
    "1.5",
    "0x10",
    "1T",
    "18446744073709551615",
    "18446744073709551616",
    "17179869184G",
    "99999999999999999999999",
    "DATA",
    "Replay",
    "ALL",
    "clear!",
    "#",
    "##",
    "",
    "\u{e9}",
    "\u{1F600}",
];

const SPACES: &[&str] = &[" ", "  ", "\t", " \t ", "\u{b}", "\u{c}", "\r", "\u{a0}", "\u{2003}", "\u{85}"];

fn valid_line(rng: &mut Rng) -> String {
    match rng.below(6) {
        0 => format!("data {}", rng.pick(&["message", "coalesce", "static"])),
        1 => format!("replay {}", rng.pick(&["off", "last", "all", "on"])),
        2 => format!("depth {}", rng.pick(&["0", "1", "3", "100", "64K", "1M", "10B", "2g", "0K"])),
        3 => format!("write {}", rng.pick(&["nonblock", "one", "all"])),
        4 => format!("frame {}", rng.pick(&["write", "close"])),
        _ => "clear".into(),
    }
}

fn random_line(rng: &mut Rng) -> String {
    match rng.below(10) {
        0..=3 => valid_line(rng),
        4 => format!("# {}", rng.pick(WORDS)),
        5 => String::new(),
        6 => {
            // Valid words, random arity and spacing.
            let n = rng.below(4);
            let mut s = String::new();
            if rng.chance(30) {
                s += rng.pick(SPACES);
            }
            for i in 0..n {
                if i > 0 {
                    s += rng.pick(SPACES);
                }
                s += rng.pick(WORDS);
            }
            if rng.chance(30) {
                s += rng.pick(SPACES);
            }
            s
        }
        7 => {
            let mut l = valid_line(rng);
            l = l.replace(' ', rng.pick(SPACES));
            l
        }
        8 => format!("{} {}", rng.pick(&["data", "replay", "depth", "write", "frame"]), rng.pick(WORDS)),
        _ => "x".repeat(rng.below(300)),
    }
}

fn random_ctl_write(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        // Lines of text.
        0..=5 => {
            let n = 1 + rng.below(5);
            let sep = if rng.chance(20) { "\r\n" } else { "\n" };
            let mut s = (0..n).map(|_| random_line(rng)).collect::<Vec<_>>().join(sep);
            if rng.chance(80) {
                s += sep;
            }
            s.into_bytes()
        }
        // A mutated valid write: bytes flipped, inserted or removed.
        6 | 7 => {
            let mut b = format!("{}\n{}\n", valid_line(rng), valid_line(rng)).into_bytes();
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(b.len());
                match rng.below(3) {
                    0 => b[i] ^= 1 << rng.below(8),
                    1 => b.insert(i, rng.next() as u8),
                    _ => {
                        b.remove(i);
                    }
                }
                if b.is_empty() {
                    break;
                }
            }
            b
        }
        // Random bytes (NUL, invalid UTF-8).
        8 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        // A long line.
        _ => {
            let mut s = valid_line(rng);
            s += &" ".repeat(rng.below(100_000));
            if rng.chance(50) {
                s += "junk";
            }
            s.push('\n');
            s.into_bytes()
        }
    }
}

/// Writes `data` to `ctl` in one write(2); returns the errno if it failed.
fn ctl_write(ctl: &Path, data: &[u8]) -> Option<i32> {
    let mut f = OpenOptions::new().write(true).open(ctl).unwrap();
    match f.write(data) {
        Ok(n) => {
            assert_eq!(n, data.len(), "short ctl write");
            None
        }
        Err(e) => Some(e.raw_os_error().unwrap_or(-1)),
    }
}

#[test]
fn fuzzed_ctl_writes_apply_what_the_grammar_says_or_fail_einval_changing_nothing() {
    let cases = sized(3000, 200_000);
    let m = Mount::new();
    fs::create_dir(m.join("g")).unwrap();
    let ctl = m.join("g/ctl");
    for s in ["a", "b"] {
        fs::write(m.join(format!("g/{s}")), b"").unwrap();
    }
    // A reader on each stream keeps the history (replay off retains unread messages).
    let _readers: Vec<File> =
        ["a", "b"].iter().map(|s| File::open(m.join(format!("g/{s}"))).unwrap()).collect();
    let mut config = Config {
        data: "message".into(),
        replay: "off".into(),
        depth: "0".into(),
        write: "nonblock".into(),
        frame: "write".into(),
    };
    let seed =
        std::env::var("MQFS_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x9E37_79B9_7F4A_7C15);
    let mut rng = Rng(seed);
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..cases {
        // Some history to clear or keep (frame close publishes at the close).
        // (O_NONBLOCK: should the fuzz set `write one`, the write still returns at once.)
        let mut w =
            OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(m.join("g/a")).unwrap();
        w.write_all(format!("message {case}\n").as_bytes()).unwrap();
        drop(w);
        let before = fs::read_to_string(&ctl).unwrap();
        assert!(before.starts_with(&config.render()), "case {case}: ctl {before:?} is not {config:?}");
        let input = random_ctl_write(&mut rng);
        let result = ctl_write(&ctl, &input);
        let after = fs::read_to_string(&ctl).unwrap();
        let shown = String::from_utf8_lossy(&input[..input.len().min(200)]).into_owned();
        match (model_apply(&config, &input), result) {
            (Some((next, clear)), None) => {
                accepted += 1;
                assert!(
                    after.starts_with(&next.render()),
                    "case {case} (seed {seed}): {shown:?} accepted, ctl is\n{after}\nexpected\n{}",
                    next.render()
                );
                // (An empty write never reaches mqfs: the kernel does not pass it on.)
                let told = after.contains("# error: ");
                assert!(
                    input.is_empty() || !told,
                    "case {case}: {shown:?} accepted, an error stays:\n{after}"
                );
                if clear {
                    assert!(
                        after.contains("# messages 0\n# bytes 0\n"),
                        "case {case}: {shown:?} cleared:\n{after}"
                    );
                }
                config = next;
            }
            (None, Some(libc::EINVAL)) => {
                refused += 1;
                // ctl reads the same, and ends with why this write was refused.
                let settings = |text: &str| -> Vec<String> {
                    text.lines().filter(|l| !l.starts_with("# error: ")).map(str::to_string).collect()
                };
                assert_eq!(
                    settings(&after),
                    settings(&before),
                    "case {case} (seed {seed}): {shown:?} refused but ctl changed"
                );
                assert!(
                    after.lines().last().is_some_and(|l| l.starts_with("# error: ")),
                    "case {case}: {shown:?} refused, and ctl does not say why:\n{after}"
                );
            }
            (model, result) => panic!(
                "case {case} (seed {seed}): {shown:?} ({} bytes): the model says {}, the write gave {}",
                input.len(),
                if model.is_some() { "valid" } else { "EINVAL" },
                errname(result)
            ),
        }
    }
    assert!(accepted > cases / 10 && refused > cases / 10, "accepted {accepted}, refused {refused}");
    assert_healthy(&m);
}

#[test]
fn a_ctl_write_the_kernel_cuts_into_several_requests_is_refused_whole() {
    let m = Mount::new();
    let before = fs::read_to_string(m.join("ctl")).unwrap();
    // Valid commands, 2 MiB of comments, then a bad line: the kernel passes this write(2) on
    // in several requests, but it is one ctl write: all of it fails, nothing applies.
    let mut text = b"replay last\ndepth 5\n".to_vec();
    while text.len() < 2 << 20 {
        text.extend_from_slice(b"# a comment to make the write longer than one request\n");
    }
    text.extend_from_slice(b"bogus\n");
    assert_eq!(errname(ctl_write(&m.join("ctl"), &text)), "EINVAL");
    let told = "# error: a write(2) longer than 1048576 bytes is refused\n";
    assert_eq!(fs::read_to_string(m.join("ctl")).unwrap(), format!("{before}{told}"));
    // The same without the bad line is refused too: a ctl write holds at most 1 MiB.
    text.truncate(text.len() - b"bogus\n".len());
    assert_eq!(errname(ctl_write(&m.join("ctl"), &text)), "EINVAL");
    assert_eq!(fs::read_to_string(m.join("ctl")).unwrap(), format!("{before}{told}"));
    // A ctl write up to 1 MiB works.
    text.truncate(512 << 10);
    let end = text.iter().rposition(|&b| b == b'\n').unwrap() + 1;
    text.truncate(end);
    assert_eq!(errname(ctl_write(&m.join("ctl"), &text)), "ok");
    assert!(fs::read_to_string(m.join("ctl")).unwrap().starts_with("data message\nreplay last\ndepth 5\n"));
    assert_healthy(&m);
}

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

#[test]
fn names_take_every_byte_but_slash_and_newline_up_to_255_bytes() {
    let m = Mount::with_options("replay=all");
    fs::create_dir(m.join("g")).unwrap();
    let g = m.join("g");
    // Every byte but NUL, '/' and newline alone (but "."), then all of them in long names.
    let odd: Vec<u8> = (1..=255u8).filter(|&b| b != b'/' && b != b'\n').collect();
    let mut names: Vec<Vec<u8>> = odd.iter().filter(|&&b| b != b'.').map(|&b| vec![b]).collect();
    for chunk in odd.chunks(100) {
        names.push([b"x".as_slice(), chunk].concat());
        names.push([chunk, b"\r".as_slice()].concat());
    }
    names.push(b"..x".to_vec());
    names.push(b"ctl ".to_vec());
    names.push(b"order\t".to_vec());
    names.push("\u{e9}".repeat(127).into_bytes().into_iter().chain([b'z']).collect()); // 255 bytes
    names.push(vec![0xff; 255]);
    for name in &names {
        let p = path_of(&g, name);
        fs::write(&p, b"").unwrap_or_else(|e| panic!("create {name:?}: {e}"));
        assert_eq!(write_once(&p, name).unwrap(), name.len(), "write to {name:?}");
    }
    // readdir lists each name once, in the order created, then ctl and order.
    let mut listed: Vec<Vec<u8>> =
        fs::read_dir(&g).unwrap().map(|e| e.unwrap().file_name().as_bytes().to_vec()).collect();
    assert_eq!(listed.len(), names.len() + 2);
    assert_eq!(&listed[listed.len() - 2..], [b"ctl".to_vec(), b"order".to_vec()]);
    listed.truncate(names.len());
    assert!(listed == names, "readdir differs from what was created");
    // Each stream holds its own name as its one message; stat works on each.
    for name in &names {
        let p = path_of(&g, name);
        assert!(fs::metadata(&p).unwrap().is_file(), "{name:?}");
        assert_eq!(drain(&mut open_nonblocking(&p), 1024), std::slice::from_ref(name), "{name:?}");
    }
    // order records each name and a newline, in write order: one line per write.
    let order: Vec<u8> = drain(&mut open_nonblocking(&g.join("order")), 4096).concat();
    let expect: Vec<u8> = names.iter().flat_map(|n| n.iter().copied().chain([b'\n'])).collect();
    assert!(order == expect, "order differs");

    // A newline anywhere in a name is refused, however the name is made; a lookup finds
    // nothing. (Else `order` could not tell streams a, b and "a\nb" apart.)
    for name in [b"a\nb".as_slice(), b"\n", b"x\n", b"\nctl"] {
        let p = path_of(&g, name);
        assert_eq!(errname(errno_of(File::create(&p))), "EINVAL", "create {name:?}");
        assert_eq!(errname(errno_of(fs::create_dir(&p))), "EINVAL", "mkdir {name:?}");
        assert_eq!(errname(errno_of(fs::rename(path_of(&g, b"x"), &p))), "EINVAL", "rename to {name:?}");
        assert_eq!(errname(errno_of(fs::metadata(&p))), "ENOENT", "stat {name:?}");
    }

    // 256 bytes is too long, however the name is made or used.
    let long = |c: u8| vec![c; 256];
    let too_long = path_of(&g, &long(b'n'));
    assert_eq!(errname(errno_of(File::create(&too_long))), "ENAMETOOLONG");
    assert_eq!(errname(errno_of(fs::create_dir(&too_long))), "ENAMETOOLONG");
    assert_eq!(errname(errno_of(fs::rename(g.join("a"), &too_long))), "ENAMETOOLONG");
    let multibyte = path_of(&g, &"\u{e9}".repeat(128).into_bytes());
    assert_eq!(errname(errno_of(File::create(&multibyte))), "ENAMETOOLONG");
    assert_eq!(errname(errno_of(fs::metadata(&too_long))), "ENAMETOOLONG");
    assert_eq!(fs::read_dir(&g).unwrap().count(), names.len() + 2);
    // Everything goes with rm -r.
    let out = run_sh("rm -r g", &m.path, T);
    assert!(out.status.success(), "rm -r: {}", text(&out.stderr));
    assert_healthy(&m);
}

/// Creates a chain of `depth` groups named `d` from the mount root (relative paths, so no path
/// gets near PATH_MAX), writes a stream at the bottom, checks what it inherited and that the
/// bottom group cannot be moved into itself, then removes it all.
const DEEP: &str = r#"
import os, sys
depth = int(sys.argv[1])
for i in range(depth):
    os.mkdir("d")
    os.chdir("d")
with open("s", "wb", buffering=0) as f:
    f.write(b"at the bottom\n")
ctl = open("ctl").read()
fd = os.open("s", os.O_RDONLY | os.O_NONBLOCK)
print(os.read(fd, 100), ctl.split("\n")[1], flush=True)
# Moving the top group into the bottom one: EINVAL.
bottom = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
for i in range(depth):
    os.chdir("..")
try:
    os.rename("d", "x", dst_dir_fd=bottom)
    print("rename into own subtree: ok")
except OSError as e:
    print("rename into own subtree:", e.strerror)
"#;

#[test]
fn groups_nest_a_thousand_deep() {
    let depth = sized(1000, 5000);
    let m = Mount::with_options("replay=all");
    let mut p =
        Proc::spawn(Command::new(python()).arg("-c").arg(DEEP).arg(depth.to_string()).current_dir(&m.path));
    let status = p.wait_exit(Duration::from_secs(120)).expect("deep nesting finishes");
    let out = text(&p.output());
    assert!(status.success(), "{out}{}", text(&p.stderr_output()));
    assert_eq!(out, "b'at the bottom\\n' replay all\nrename into own subtree: Invalid argument\n");
    let out = run_sh("rm -r d && ls", &m.path, Duration::from_secs(120));
    assert!(out.status.success(), "rm -r: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ctl\norder\n");
    assert_healthy(&m);
}

// ---------------------------------------------------------------------------
// Many streams
// ---------------------------------------------------------------------------

const CREATE_MANY: &str = r#"
import os, sys
n = int(sys.argv[1])
for i in range(n):
    os.mknod(f"big/s{i}")
print("created", flush=True)
"#;

#[test]
fn a_hundred_thousand_streams_in_a_group() {
    let n: u64 = sized(100_000, 1_000_000);
    let m = Mount::new();
    fs::create_dir(m.join("big")).unwrap();
    let pid = m.pid();
    let before = status_kib(pid, "VmRSS");
    let mut p = Proc::spawn(
        Command::new(python()).arg("-c").arg(CREATE_MANY).arg(n.to_string()).current_dir(&m.path),
    );
    let status =
        p.wait_exit(Duration::from_secs(if n > 100_000 { 3600 } else { 300 })).expect("creation finishes");
    assert!(status.success(), "{}", text(&p.stderr_output()));
    let per_stream = (status_kib(pid, "VmRSS").saturating_sub(before)) * 1024 / n;
    eprintln!("{n} streams: {per_stream} bytes of daemon memory each");
    // An empty stream is a name, an inode and an empty log: well under 2 KiB.
    assert!(per_stream < 2048, "{per_stream} bytes per empty stream");

    assert_eq!(ctl_count(&m.join("big/ctl"), "streams"), n);
    let out = run_sh("ls big | wc -l", &m.path, Duration::from_secs(if n > 100_000 { 3600 } else { 120 }));
    assert_eq!(text(&out.stdout).trim(), (n + 2).to_string(), "{}", text(&out.stderr));
    // Any of them works as a stream.
    let last = m.join(format!("big/s{}", n - 1));
    let mut r = open_nonblocking(&last);
    assert_eq!(write_once(&last, b"one of many\n").unwrap(), 12);
    assert_eq!(drain(&mut r, 100), [b"one of many\n".to_vec()]);
    drop(r);
    if mqcheck::soak() {
        // (rm -r reads a directory 100,000 entries at a time, removing as it goes.)
        let out = run_sh("rm -r big && ls", &m.path, Duration::from_secs(3600));
        assert!(out.status.success(), "rm -r of {n} streams: {}", text(&out.stderr));
    }
    assert_healthy(&m);
}

/// Opens `n` listings of a directory, reads `k` entries of each, then closes them all when
/// told (a line on stdin), saying where it is at each step.
const MANY_LISTINGS: &str = r#"
import os, sys
d, n, k = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
listings = []
for i in range(n):
    it = os.scandir(d)
    read = sum(1 for _, _ in zip(range(k), it))
    assert read == k, read
    listings.append(it)
print("open", flush=True)
sys.stdin.readline()
for it in listings:
    it.close()
print("closed", flush=True)
sys.stdin.readline()
"#;

#[test]
fn many_open_listings_of_a_big_group_cost_the_daemon_nothing() {
    let (streams, listings) = (50_000, 200);
    let m = Mount::new();
    fs::create_dir(m.join("big")).unwrap();
    let mut p = Proc::spawn(
        Command::new(python()).arg("-c").arg(CREATE_MANY).arg(streams.to_string()).current_dir(&m.path),
    );
    assert!(p.wait_exit(Duration::from_secs(300)).expect("creation finishes").success());
    let pid = m.pid();
    let before = status_kib(pid, "VmRSS");
    // Each listing read partway: an open directory holds nothing in the daemon.
    let mut lister = Proc::spawn_piped_stdin(
        Command::new(python())
            .arg("-c")
            .arg(MANY_LISTINGS)
            .args(["big", &listings.to_string(), "5000"])
            .current_dir(&m.path),
    );
    lister.wait_output_contains(b"open\n", Duration::from_secs(300));
    let open = status_kib(pid, "VmRSS");
    lister.write_stdin(b"\n");
    lister.wait_output_contains(b"closed\n", T);
    let closed = status_kib(pid, "VmRSS");
    lister.close_stdin();
    assert!(lister.wait_exit(T).expect("the lister exits").success(), "{}", text(&lister.stderr_output()));
    eprintln!("daemon VmRSS: {before} KiB, {open} KiB with {listings} listings open, {closed} KiB closed");
    assert!(open < before + 64 * 1024, "{listings} open listings took {} KiB", open - before);
    assert!(closed < before + 64 * 1024, "after closing: {} KiB more", closed - before);
    assert_healthy(&m);
}

/// Lists a directory and removes each entry as soon as it is listed, as `rm -r` does with a
/// large directory (the listing goes on in batches, so removals happen between them).
const LIST_WHILE_REMOVING: &str = r#"
import os, sys
seen = []
with os.scandir(sys.argv[1]) as it:
    for entry in it:
        if entry.name not in ("ctl", "order"):
            seen.append(entry.name)
            os.unlink(entry.path)
print(len(seen), len(set(seen)), len(os.listdir(sys.argv[1])) - 2)
"#;

#[test]
fn a_listing_while_entries_are_removed_misses_none() {
    let m = Mount::new();
    fs::create_dir(m.join("g")).unwrap();
    let n = 2000;
    for i in 0..n {
        fs::write(m.join(format!("g/s{i:04}")), b"").unwrap();
    }
    // POSIX: an entry neither added nor removed since the listing began is returned exactly
    // once. Here each batch is removed before the next is read: every entry is listed (and
    // removed), none is left.
    let mut p =
        Proc::spawn(Command::new(python()).arg("-c").arg(LIST_WHILE_REMOVING).arg("g").current_dir(&m.path));
    let status = p.wait_exit(T).expect("listing finishes");
    assert!(status.success(), "{}", text(&p.stderr_output()));
    assert_eq!(text(&p.output()).trim(), format!("{n} {n} 0"), "listed, distinct, left over");
    assert_healthy(&m);
}

// ---------------------------------------------------------------------------
// Writes: empty, maximal, oversized, unreadable
// ---------------------------------------------------------------------------

/// An anonymous mapping of `len` bytes (never touched: it costs no memory).
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> Mapping {
        // SAFETY: a fresh private anonymous mapping; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(ptr, libc::MAP_FAILED, "mmap {len}");
        Mapping { ptr, len }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping what `new` mapped.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

/// write(2) of `len` bytes at `ptr` to `file`: the byte count, or the errno.
fn raw_write(file: &File, ptr: *const libc::c_void, len: usize) -> Result<usize, String> {
    use std::os::fd::AsRawFd;
    // SAFETY: the kernel checks the buffer; a bad one gives EFAULT, never a write here.
    let n = unsafe { libc::write(file.as_raw_fd(), ptr, len) };
    if n < 0 { Err(errname(io::Error::last_os_error().raw_os_error())) } else { Ok(n as usize) }
}

#[test]
fn empty_maximal_oversized_and_unreadable_writes() {
    const MAX: usize = 4 << 20;
    let m = Mount::with_options(&format!("max_message={MAX}"));
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let mut reader = open_nonblocking(&s);
    let mut order = open_nonblocking(&m.join("order"));
    let writer = OpenOptions::new().write(true).open(&s).unwrap();

    // Zero-length writes, plain and vectored, publish nothing.
    assert_eq!(raw_write(&writer, b"x".as_ptr().cast(), 0), Ok(0));
    let empty = [io::IoSlice::new(b""), io::IoSlice::new(b"")];
    assert_eq!((&writer).write_vectored(&empty).unwrap(), 0);
    assert!(drain(&mut reader, 100).is_empty() && drain(&mut order, 100).is_empty());

    // Exactly the largest message: one message, read whole by one read(2).
    let big: Vec<u8> = (0..MAX).map(|i| (i % 251) as u8).collect();
    assert_eq!(raw_write(&writer, big.as_ptr().cast(), MAX), Ok(MAX));
    let got = drain(&mut reader, 2 * MAX);
    assert!(
        got.len() == 1 && got[0] == big,
        "{} reads of {:?} bytes",
        got.len(),
        got.iter().map(Vec::len).collect::<Vec<_>>()
    );

    // One byte more, or 1 GiB: EFBIG, nothing published, and the daemon does not take in
    // the gigabyte.
    let rss = status_kib(m.pid(), "VmRSS");
    let mut bigger = big.clone();
    bigger.push(0);
    assert_eq!(raw_write(&writer, bigger.as_ptr().cast(), MAX + 1), Err("EFBIG".into()));
    let gib = Mapping::new(1 << 30);
    assert_eq!(raw_write(&writer, gib.ptr, gib.len), Err("EFBIG".into()));
    let grown = status_kib(m.pid(), "VmRSS").saturating_sub(rss);
    assert!(grown < 16 << 10, "the daemon grew by {grown} KiB refusing oversized writes");

    // A buffer the kernel cannot read: EFAULT, nothing published.
    assert_eq!(raw_write(&writer, std::ptr::null(), 100), Err("EFAULT".into()));
    // Readable for its first MiB only: the kernel passes that much on, then fails; the part
    // that arrived is never published as a message.
    let half = Mapping::new(2 << 20);
    // SAFETY: the first MiB of our own mapping, writable; then the second made unreadable.
    unsafe {
        std::ptr::write_bytes(half.ptr.cast::<u8>(), b'h', 1 << 20);
        assert_eq!(libc::mprotect(half.ptr.byte_add(1 << 20), 1 << 20, libc::PROT_NONE), 0);
    }
    let r = raw_write(&writer, half.ptr, 2 << 20);
    assert!(r == Ok(1 << 20) || r == Err("EFAULT".into()), "half-readable write: {r:?}");
    assert!(drain(&mut reader, 2 * MAX).is_empty(), "part of a write was published");
    // The next write on the same descriptor is a message of its own.
    assert_eq!(raw_write(&writer, b"next\n".as_ptr().cast(), 5), Ok(5));
    assert_eq!(drain(&mut reader, 2 * MAX), [b"next\n".to_vec()]);
    let entries = drain(&mut order, 100);
    assert_eq!(entries, [b"s\n".to_vec(), b"s\n".to_vec()], "order: the maximal message and the last");
    assert_eq!(ctl_count(&m.join("ctl"), "readers"), 1);
    assert_healthy(&m);
}

/// write(2) of `total` bytes of `byte` to `file` from a buffer of which only the first
/// `readable` bytes can be read (the rest is on a PROT_NONE page): the kernel passes those
/// on and the write(2) returns short, or fails with EFAULT.
fn short_write(file: &File, byte: u8, readable: usize, total: usize) -> Result<usize, String> {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
    let (head, tail) = (readable.next_multiple_of(page), (total - readable).next_multiple_of(page));
    let pages = Mapping::new(head + tail);
    // SAFETY: the first `head` bytes of our own mapping, writable; then the rest made
    // unreadable.
    let start = unsafe {
        std::ptr::write_bytes(pages.ptr.cast::<u8>(), byte, head);
        assert_eq!(libc::mprotect(pages.ptr.byte_add(head), tail, libc::PROT_NONE), 0);
        pages.ptr.byte_add(head - readable)
    };
    raw_write(file, start, total)
}

/// Asserts that `got` is `want`, telling a mismatch by its runs of equal bytes.
fn assert_bytes(got: &[u8], want: &[u8], what: &str) {
    let runs = |bytes: &[u8]| {
        bytes
            .chunk_by(|a, b| a == b)
            .map(|run| format!("{}x{:?}", run.len(), run[0] as char))
            .collect::<Vec<_>>()
    };
    assert!(got == want, "{what}: got {:?}, want {:?}", runs(got), runs(want));
}

#[test]
fn a_short_write_is_never_glued_to_the_next_write() {
    let m = Mount::new();
    fs::create_dir(m.join("g")).unwrap();
    fs::write(m.join("g/ctl"), b"data static\nreplay all\n").unwrap();
    let s = m.join("g/s");
    fs::write(&s, b"").unwrap();
    let writer = OpenOptions::new().write(true).open(&s).unwrap();
    // 1000 of 2000 bytes arrive; the file position moves on by what was written, so the next
    // write(2) starts where this one stopped, and fits in what it misses.
    let r = short_write(&writer, b'a', 1000, 2000);
    assert!(r == Ok(1000) || r == Err("EFAULT".into()), "half-readable write: {r:?}");
    assert_eq!(raw_write(&writer, [b'b'; 1000].as_ptr().cast(), 1000), Ok(1000));
    assert_bytes(&fs::read(&s).unwrap(), &[b'b'; 1000], "the next write(2) is a message of its own");
    // A smaller next write(2) is published too, not swallowed by the short one.
    let r = short_write(&writer, b'a', 1000, 2000);
    assert!(r == Ok(1000) || r == Err("EFAULT".into()), "half-readable write: {r:?}");
    assert_eq!(raw_write(&writer, b"cc\n".as_ptr().cast(), 3), Ok(3));
    assert_bytes(&fs::read(&s).unwrap(), &[&[b'b'; 1000][..], b"cc\n"].concat(), "the smaller one too");
    assert_eq!(ctl_count(&m.join("g/ctl"), "messages"), 2);
    assert_healthy(&m);
}

/// The bytes of memory the mount counts as used (`df`).
fn used(m: &Mount) -> u64 {
    let path = std::ffi::CString::new(m.path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path and a statvfs to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut st) }, 0);
    (st.f_blocks - st.f_bfree) * st.f_frsize
}

#[test]
fn a_short_write_holds_no_memory_once_a_descriptor_of_its_file_is_closed() {
    let m = Mount::new();
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let mut reader = open_nonblocking(&s);
    let writer = OpenOptions::new().write(true).open(&s).unwrap();
    assert_eq!(used(&m), 0);
    // 1 MiB of a 2 MiB write(2) arrives; what the rest would cost stays reserved...
    assert_eq!(short_write(&writer, b'a', 1 << 20, 2 << 20), Ok(1 << 20));
    assert!(used(&m) >= 2 << 20, "the write(2) was admitted whole: {} bytes", used(&m));
    // ...until a descriptor of the file closes (here a copy of the writer's; a killed
    // writer's death closes its own): the short write is over, nothing of it published.
    drop(writer.try_clone().unwrap());
    assert_eq!(used(&m), 0, "the short write's reservation is released at the close");
    assert!(drain(&mut reader, 4 << 20).is_empty(), "part of a write was published");
    assert_eq!(raw_write(&writer, b"next\n".as_ptr().cast(), 5), Ok(5));
    assert_eq!(drain(&mut reader, 4 << 20), [b"next\n".to_vec()]);
    assert_healthy(&m);
}

#[test]
fn under_frame_close_a_close_after_a_short_write_publishes_what_arrived() {
    let m = Mount::new();
    fs::create_dir(m.join("g")).unwrap();
    fs::write(m.join("g/ctl"), b"frame close\n").unwrap();
    let s = m.join("g/s");
    fs::write(&s, b"").unwrap();
    let mut reader = open_nonblocking(&s);
    let writer = OpenOptions::new().write(true).open(&s).unwrap();
    assert_eq!(raw_write(&writer, b"head ".as_ptr().cast(), 5), Ok(5));
    let r = short_write(&writer, b'a', 1000, 2000);
    assert_eq!(r, Ok(1000), "the kernel passes on the readable part");
    drop(writer);
    let messages = drain(&mut reader, 1 << 16);
    assert_eq!(messages.len(), 1, "one message at the close");
    assert_bytes(&messages[0], &[&b"head "[..], &[b'a'; 1000]].concat(), "what the close published");
    assert_healthy(&m);
}

// ---------------------------------------------------------------------------
// Tiny buffers
// ---------------------------------------------------------------------------

/// The sizes of the reads with a `buf`-byte buffer until EAGAIN, and their bytes.
fn read_sizes(file: &mut File, buf: usize) -> (Vec<usize>, Vec<u8>) {
    let reads = drain(file, buf);
    (reads.iter().map(Vec::len).collect(), reads.concat())
}

#[test]
fn reads_with_tiny_buffers_cut_messages_exactly() {
    let m = Mount::new();
    fs::create_dir(m.join("c")).unwrap();
    fs::write(m.join("c/ctl"), "data coalesce\n").unwrap();
    for s in ["s", "c/s"] {
        fs::write(m.join(s), b"").unwrap();
    }
    let mut one = open_nonblocking(&m.join("s"));
    let mut three = open_nonblocking(&m.join("s"));
    let mut zero = open_nonblocking(&m.join("s"));
    let mut order = open_nonblocking(&m.join("order"));
    let mut coalesce = open_nonblocking(&m.join("c/s"));
    let messages: [&[u8]; 4] = [b"hello\n", b"ab", b"0123456789", b"z"];
    for msg in messages {
        assert_eq!(write_once(&m.join("s"), msg).unwrap(), msg.len());
        assert_eq!(write_once(&m.join("c/s"), msg).unwrap(), msg.len());
    }
    let all = messages.concat();

    // A 0-byte read returns 0 and takes nothing.
    assert_eq!(zero.read(&mut []).unwrap(), 0);
    assert_eq!(drain(&mut zero, 100), messages.map(<[u8]>::to_vec));
    // 1-byte reads: every byte, in order.
    assert_eq!(read_sizes(&mut one, 1), (vec![1; all.len()], all.clone()));
    // 3-byte reads in message mode never cross a message boundary...
    assert_eq!(read_sizes(&mut three, 3), (vec![3, 3, 2, 3, 3, 3, 1, 1], all.clone()));
    // ...and in coalesce mode always fill the buffer while bytes remain.
    assert_eq!(read_sizes(&mut coalesce, 3), (vec![3, 3, 3, 3, 3, 3, 1], all.clone()));
    // order, one byte at a time.
    assert_eq!(read_sizes(&mut order, 1).1, b"s\ns\ns\ns\n");
    // ctl, one byte at a time, reads as it does at once.
    let mut ctl = File::open(m.join("ctl")).unwrap();
    let mut bytes = Vec::new();
    let mut b = [0u8; 1];
    while ctl.read(&mut b).unwrap() == 1 {
        bytes.push(b[0]);
    }
    assert_eq!(text(&bytes), fs::read_to_string(m.join("ctl")).unwrap());
    assert_healthy(&m);
}

// ---------------------------------------------------------------------------
// Reserved names and hostile renames
// ---------------------------------------------------------------------------

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> Option<i32> {
    let from = std::ffi::CString::new(from.as_os_str().as_bytes()).unwrap();
    let to = std::ffi::CString::new(to.as_os_str().as_bytes()).unwrap();
    // SAFETY: two NUL-terminated paths.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), flags) };
    (rc != 0).then(|| io::Error::last_os_error().raw_os_error().unwrap_or(-1))
}

fn open_with(path: &Path, write: bool, read: bool, flags: i32) -> Option<i32> {
    errno_of(OpenOptions::new().read(read).write(write).custom_flags(flags).mode(0o644).open(path))
}

#[test]
fn ctl_and_order_resist_every_way_of_writing_replacing_or_moving_them() {
    let m = Mount::with_options("replay=all");
    run_sh("mkdir -p g/a/b/c h && echo kept >> g/s && echo kept >> h/t", &m.path, T);
    let before = run_sh("find . | sort && cat g/ctl h/ctl", &m.path, T).stdout;
    let p = |rel: &str| m.join(rel);
    let mknod = |rel: &str, mode: libc::mode_t| {
        let c = std::ffi::CString::new(p(rel).as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        let rc = unsafe { libc::mknod(c.as_ptr(), mode, 0) };
        (rc != 0).then(|| io::Error::last_os_error().raw_os_error().unwrap_or(-1))
    };
    let cases: Vec<(&str, Option<i32>, &str)> = vec![
        ("open order O_WRONLY", open_with(&p("g/order"), true, false, 0), "EPERM"),
        ("open order O_RDWR", open_with(&p("g/order"), true, true, 0), "EPERM"),
        ("open order O_WRONLY|O_CREAT", open_with(&p("g/order"), true, false, libc::O_CREAT), "EPERM"),
        ("open order O_WRONLY|O_TRUNC", open_with(&p("g/order"), true, false, libc::O_TRUNC), "EPERM"),
        (
            "create order O_EXCL",
            open_with(&p("g/order"), true, false, libc::O_CREAT | libc::O_EXCL),
            "EEXIST",
        ),
        ("create ctl O_EXCL", open_with(&p("g/ctl"), true, false, libc::O_CREAT | libc::O_EXCL), "EEXIST"),
        ("mkdir ctl", errno_of(fs::create_dir(p("g/ctl"))), "EEXIST"),
        ("mknod order", mknod("g/order", libc::S_IFREG | 0o644), "EEXIST"),
        ("symlink ctl", errno_of(std::os::unix::fs::symlink("s", p("g/ctl"))), "EEXIST"),
        ("link s to ctl", errno_of(fs::hard_link(p("g/s"), p("g/ctl"))), "EEXIST"),
        ("link ctl to x", errno_of(fs::hard_link(p("g/ctl"), p("g/x"))), "EPERM"),
        ("link order to x", errno_of(fs::hard_link(p("g/order"), p("g/x"))), "EPERM"),
        ("link a group", errno_of(fs::hard_link(p("g/a"), p("g/x"))), "EPERM"),
        ("rename ctl away", errno_of(fs::rename(p("g/ctl"), p("g/x"))), "EPERM"),
        ("rename order into h", errno_of(fs::rename(p("g/order"), p("h/x"))), "EPERM"),
        ("rename s onto ctl", errno_of(fs::rename(p("g/s"), p("g/ctl"))), "EPERM"),
        ("rename s onto another group's order", errno_of(fs::rename(p("g/s"), p("h/order"))), "EPERM"),
        ("rename ctl onto ctl", errno_of(fs::rename(p("g/ctl"), p("h/ctl"))), "EPERM"),
        ("rename group onto ctl", errno_of(fs::rename(p("g/a"), p("h/ctl"))), "ENOTDIR"),
        ("rename group into itself", errno_of(fs::rename(p("g"), p("g/x"))), "EINVAL"),
        ("rename group 4 deep into itself", errno_of(fs::rename(p("g/a"), p("g/a/b/c/x"))), "EINVAL"),
        ("rename group over a non-empty group", errno_of(fs::rename(p("h"), p("g/a"))), "ENOTEMPTY"),
        ("rename stream over a group", errno_of(fs::rename(p("g/s"), p("g/a"))), "EISDIR"),
        ("rename group over a stream", errno_of(fs::rename(p("g/a"), p("g/s"))), "ENOTDIR"),
        ("RENAME_EXCHANGE", renameat2(&p("g/s"), &p("h/t"), libc::RENAME_EXCHANGE), "EINVAL"),
        ("RENAME_NOREPLACE onto a stream", renameat2(&p("g/s"), &p("h/t"), libc::RENAME_NOREPLACE), "EEXIST"),
        ("RENAME_WHITEOUT", renameat2(&p("g/s"), &p("g/w"), libc::RENAME_WHITEOUT), "EINVAL"),
        ("rename the mount root", errno_of(fs::rename(&m.path, p("g/root"))), "EXDEV"),
        ("rmdir ctl", errno_of(fs::remove_dir(p("g/ctl"))), "ENOTDIR"),
        ("unlink ctl of a non-empty group", errno_of(fs::remove_file(p("g/ctl"))), "EPERM"),
        ("unlink a group", errno_of(fs::remove_file(p("g/a"))), "EISDIR"),
        ("open a group for writing", open_with(&p("g"), true, false, 0), "EISDIR"),
        (
            "chmod ctl",
            errno_of(fs::set_permissions(p("g/ctl"), std::os::unix::fs::PermissionsExt::from_mode(0o666))),
            "EPERM",
        ),
        ("truncate ctl", errno_of(OpenOptions::new().write(true).truncate(true).open(p("g/ctl"))), "ok"),
        ("rename a stream onto itself", errno_of(fs::rename(p("g/s"), p("g/s"))), "ok"),
    ];
    let wrong: Vec<String> = cases
        .iter()
        .filter(|(_, got, want)| errname(*got) != *want)
        .map(|(what, got, want)| format!("{what}: {} (expected {want})", errname(*got)))
        .collect();
    assert!(wrong.is_empty(), "unexpected outcomes:\n{}", wrong.join("\n"));
    // Nothing moved, nothing changed.
    assert_eq!(text(&run_sh("find . | sort && cat g/ctl h/ctl", &m.path, T).stdout), text(&before));
    assert_eq!(drain(&mut open_nonblocking(&p("g/s")), 100), [b"kept\n".to_vec()]);
    assert_healthy(&m);
}

// ---------------------------------------------------------------------------
// A hostile sequence
// ---------------------------------------------------------------------------

/// Random file operations, every descriptor O_NONBLOCK (so nothing waits for a reader or a
/// message): opens with random flags, writes of 0 bytes to 3 MiB, reads with buffers of 0
/// bytes to 3 MiB, seeks, truncates, fsync, poll, mkdir/rmdir/unlink/rename/link/symlink/
/// mknod of random names (reserved, odd, too long), chmod, utime, ctl writes (good and bad)
/// and listings. Prints how often each outcome happened as "name count" lines.
const HOSTILE: &str = r#"
import errno, os, random, select, sys
seed, n = int(sys.argv[1]), int(sys.argv[2])
r = random.Random(seed)
names = [b"a", b"b", b"g", b"g/a", b"g/h", b"g/h/a", b"g/ctl", b"g/order", b"ctl", b"order", b"h",
         b"h/x", b"\xff\x01", b"x\ny", b"n" * 255, b"n" * 256, b"g/h/ctl", b"g/h/order", b".", b"g/.."]
ctl_texts = [b"replay all\n", b"replay off\n", b"replay last\n", b"depth 3\n", b"depth 1K\n",
             b"depth 0\n", b"data coalesce\n", b"data message\n", b"data static\n", b"write one\n",
             b"write all\n", b"write nonblock\n", b"frame close\n", b"frame write\n", b"clear\n",
             b"bogus\n", b"depth 99999999999999999999G\n", b"\xff\xfe\n", b""]
sizes = [0, 1, 7, 4096, 70000, 1 << 20, (1 << 20) + 1, 3 << 20]
fds = []
counts = {}
def count(name):
    counts[name] = counts.get(name, 0) + 1
def path():
    return r.choice(names)
for i in range(n):
    op = r.randrange(20)
    try:
        if op <= 3 or not fds:
            acc = r.choice([os.O_RDONLY, os.O_WRONLY, os.O_RDWR])
            flags = acc | os.O_NONBLOCK
            for f in (os.O_CREAT, os.O_EXCL, os.O_TRUNC, os.O_APPEND, os.O_DIRECTORY):
                if r.random() < 0.2:
                    flags |= f
            fds.append(os.open(path(), flags, r.choice([0o644, 0o600, 0o000, 0o777])))
            if len(fds) > 48:
                os.close(fds.pop(r.randrange(len(fds))))
        elif op <= 6:
            os.write(r.choice(fds), os.urandom(r.choice(sizes)))
        elif op <= 9:
            os.read(r.choice(fds), r.choice(sizes))
        elif op == 10:
            fd = fds.pop(r.randrange(len(fds)))
            os.close(fd)
        elif op == 11:
            os.mkdir(path())
        elif op == 12:
            r.choice([os.rmdir, os.unlink])(path())
        elif op == 13:
            os.rename(path(), path())
        elif op == 14:
            fd = os.open(r.choice([b"ctl", b"g/ctl", b"g/h/ctl"]), os.O_WRONLY | os.O_NONBLOCK)
            try:
                os.write(fd, r.choice(ctl_texts))
            finally:
                os.close(fd)
        elif op == 15:
            fd = r.choice(fds)
            r.choice([
                lambda: os.lseek(fd, r.randrange(-10, 1 << 21), r.choice([0, 1, 2])),
                lambda: os.ftruncate(fd, r.choice([0, 5, 1 << 30])),
                lambda: os.fsync(fd),
                lambda: select.select([fd], [fd], [fd], 0),
                lambda: os.fstat(fd),
            ])()
        elif op == 16:
            r.choice([
                lambda: os.chmod(path(), r.choice([0o644, 0o000, 0o7777, 0o755])),
                lambda: os.utime(path(), (r.randrange(1 << 31), r.randrange(1 << 31))),
                lambda: os.truncate(path(), r.choice([0, 3])),
                lambda: os.stat(path()),
            ])()
        elif op == 17:
            r.choice([
                lambda: os.link(path(), path()),
                lambda: os.symlink(b"a", path()),
                lambda: os.mknod(path(), r.choice([0o100644, 0o010644, 0o140644, 0o020644])),
            ])()
        elif op == 18:
            os.listdir(r.choice([b".", b"g", b"g/h", b"h"]))
        else:
            fd = r.choice(fds)
            os.read(fd, 0)
            os.write(fd, b"")
        count("ok")
    except OSError as e:
        count(errno.errorcode.get(e.errno, str(e.errno)))
for name, c in sorted(counts.items()):
    print(name, c)
"#;

#[test]
fn a_hostile_sequence_leaves_the_daemon_serving_and_frees_everything() {
    let ops = sized(5000, 50_000);
    let m = Mount::new();
    for seed in 0..sized(2, 10) {
        let mut p = Proc::spawn(
            Command::new(python())
                .arg("-c")
                .arg(HOSTILE)
                .arg(seed.to_string())
                .arg(ops.to_string())
                .current_dir(&m.path),
        );
        let status = p.wait_exit(Duration::from_secs(300)).expect("the sequence finishes: nothing hangs");
        let out = text(&p.output());
        assert!(status.success(), "seed {seed}: {out}{}", text(&p.stderr_output()));
        eprintln!("seed {seed}: {}", out.replace('\n', ", "));
        let count = |name: &str| {
            out.lines().find_map(|l| l.strip_prefix(&format!("{name} "))?.parse::<u64>().ok()).unwrap_or(0)
        };
        // EIO is what a failed (panicked) request gets; nothing here may cause one.
        assert_eq!(count("EIO"), 0, "seed {seed}: EIO:\n{out}");
        assert!(count("ok") > ops as u64 / 10, "seed {seed}: too few operations succeeded:\n{out}");
        assert_healthy(&m);
    }
    // Still serving: a fresh group works as documented.
    let out = run_sh(
        "mkdir fresh && echo replay all > fresh/ctl && echo one >> fresh/s && echo two >> fresh/s && \
         timeout 5 head -c 8 fresh/s && timeout 5 head -c 4 fresh/order",
        &m.path,
        T,
    );
    assert_eq!(text(&out.stdout), "one\ntwo\ns\ns\n", "{}", text(&out.stderr));
    // Removing everything returns every byte charged to the memory ceiling, once the root's
    // `order`, which no removal ends, is cleared (under `replay last` or `all` it keeps entries).
    let out = run_sh(
        "find . -mindepth 1 -maxdepth 1 ! -name ctl ! -name order -exec rm -rf {} + && echo clear > ctl && ls",
        &m.path,
        T,
    );
    assert_eq!(text(&out.stdout), "ctl\norder\n", "{}", text(&out.stderr));
    wait_until("df to show the whole ceiling free", T, || {
        let c = std::ffi::CString::new(m.path.as_os_str().as_bytes()).unwrap();
        // SAFETY: statvfs fills the zeroed struct.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        (unsafe { libc::statvfs(c.as_ptr(), &mut st) }) == 0 && st.f_bfree == st.f_blocks
    });
    assert_healthy(&m);
}

#[test]
fn a_ctl_write_applies_whole_or_not_at_all_whatever_its_offset() {
    let m = Mount::new();
    // Written at offset 1 (after a first write), unaligned so that the kernel sends it in
    // two requests: the first alone would parse; the last line is bad.
    let script = r#"
import os, errno
w = os.open("ctl", os.O_WRONLY)
os.write(w, b"\n")
def attempt(text):
    try:
        return os.write(w, text)
    except OSError as e:
        return errno.errorcode[e.errno]
pad = b"\n" * ((1 << 20) - 100)
print(attempt(b"depth 5\n" + pad + b"bogus\n"))
print(attempt(b"depth 6\n" + b"\n" * (3 << 20)))
print(open("ctl").read().split("\n")[2])
print(attempt(b"depth 7\n" + pad))
print(open("ctl").read().split("\n")[2])
"#;
    let out = Command::new("python3").arg("-c").arg(script).current_dir(&m.path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = format!("EINVAL\nEINVAL\ndepth 0\n{}\ndepth 7", (1 << 20) - 92);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
    assert_healthy(&m);
}
