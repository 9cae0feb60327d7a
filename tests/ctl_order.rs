//! A group's `ctl` and `order` files on a real mount: what ctl reads (configuration and
//! status counts), writing commands (and `cat ctl > file; cat file > ctl` round trips),
//! bad input rejected whole with EINVAL and its reason told by the next read of ctl, `clear`; `order` recording the commit order of
//! the group's writes so that readers can reproduce the exact global sequence, ignoring
//! subgroups, refusing writers, and following the group's replay mode.

mod common;

use common::{Mount, Proc, TempDir, blocked_in_syscall, run_ok, run_sh, sh, wait_until};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

const T: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn open_nonblocking(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .unwrap_or_else(|e| panic!("open {} O_RDONLY|O_NONBLOCK: {e}", path.display()))
}

/// One read(2) of at most 64 KiB: one message in message mode.
fn read_message(file: &mut File) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 64 << 10];
    let n = file.read(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// Reads a non-blocking reader message by message until EAGAIN.
fn drain(file: &mut File) -> Vec<String> {
    let mut messages = Vec::new();
    loop {
        match read_message(file) {
            Ok(m) if m.is_empty() => panic!("unexpected end of file after {messages:?}"),
            Ok(m) => messages.push(String::from_utf8(m).expect("test messages are text")),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return messages,
            Err(e) => panic!("read failed after {messages:?}: {e}"),
        }
    }
}

/// What a fresh non-blocking reader of `path` gets right away.
fn late_reader_sees(path: &Path) -> Vec<String> {
    drain(&mut open_nonblocking(path))
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn ctl(dir: &Path) -> String {
    fs::read_to_string(dir.join("ctl")).unwrap_or_else(|e| panic!("read {}/ctl: {e}", dir.display()))
}

/// The configuration lines of a ctl text (everything but the status comments).
fn config_of(ctl: &str) -> String {
    ctl.lines().filter(|l| !l.starts_with('#')).map(|l| format!("{l}\n")).collect()
}

fn status_text(streams: u64, groups: u64, readers: u64, messages: u64, bytes: u64) -> String {
    format!(
        "# streams {streams}\n# groups {groups}\n# readers {readers}\n# messages {messages}\n# bytes {bytes}\n"
    )
}

/// The daemon still serves and none of its threads panicked.
fn assert_healthy(m: &Mount) {
    let log = m.log();
    assert!(!log.contains("panicked"), "the daemon panicked; log:\n{log}");
    fs::read_dir(&m.path).expect("the mount still answers");
}

// ---------------------------------------------------------------------------
// ctl: reading
// ---------------------------------------------------------------------------

#[test]
fn ctl_shows_the_default_config_and_counts() {
    let m = Mount::new();
    assert_eq!(
        ctl(&m.path),
        format!(
            "data message\nreplay off\ndepth 0\nwrite nonblock\nframe write\nstore memory\nsync never\ndeliver all\nackwait 0\nmaxdeliver 0\nfollow none\n{}",
            status_text(0, 0, 0, 0, 0)
        )
    );

    run_ok("touch a b && mkdir sub && touch sub/x", &m.path);
    let cat = Proc::spawn(Command::new("cat").arg("a").current_dir(&m.path));
    wait_until("cat to block reading a", T, || blocked_in_syscall(cat.pid(), libc::SYS_read));
    assert_eq!(
        ctl(&m.path),
        format!(
            "data message\nreplay off\ndepth 0\nwrite nonblock\nframe write\nstore memory\nsync never\ndeliver all\nackwait 0\nmaxdeliver 0\nfollow none\n{}",
            status_text(2, 1, 1, 0, 0)
        )
    );
    assert_eq!(run_ok("cat ctl", &m.path), ctl(&m.path), "cat and read(2) agree");

    // Under replay all, messages and bytes count what the group's own streams retain.
    run_ok("echo replay all > ctl && echo replay all > sub/ctl", &m.path);
    run_ok("echo x >> a && echo hello >> b && echo yy >> a && echo not-counted >> sub/x", &m.path);
    cat.wait_output_len(5, T);
    assert_eq!(
        ctl(&m.path),
        format!(
            "data message\nreplay all\ndepth 0\nwrite nonblock\nframe write\nstore memory\nsync never\ndeliver all\nackwait 0\nmaxdeliver 0\nfollow none\n{}",
            status_text(2, 1, 1, 3, 11)
        )
    );
    assert_eq!(
        ctl(&m.join("sub")),
        format!(
            "data message\nreplay all\ndepth 0\nwrite nonblock\nframe write\nstore memory\nsync never\ndeliver all\nackwait 0\nmaxdeliver 0\nfollow none\n{}",
            status_text(1, 0, 0, 1, 12)
        )
    );

    drop(cat);
    wait_until("the reader count to drop", T, || ctl(&m.path).contains("# readers 0\n"));
    assert_healthy(&m);
}

// ---------------------------------------------------------------------------
// ctl: writing
// ---------------------------------------------------------------------------

#[test]
fn ctl_commands_take_effect() {
    let m = Mount::new();
    run_ok("echo replay all > ctl", &m.path);
    assert_eq!(
        config_of(&ctl(&m.path)),
        "data message\nreplay all\ndepth 0\nwrite nonblock\nframe write\nstore memory\nsync never\ndeliver all\nackwait 0\nmaxdeliver 0\nfollow none\n"
    );
    run_ok("printf 'data coalesce\\ndepth 64K\\n' > ctl", &m.path);
    assert_eq!(
        config_of(&ctl(&m.path)),
        "data coalesce\nreplay all\ndepth 64K\nwrite nonblock\nframe write\nstore memory\nsync never\ndeliver all\nackwait 0\nmaxdeliver 0\nfollow none\n"
    );
    // `on` is mq(4)'s spelling of all; comments and blank lines are ignored.
    run_ok("printf '# a comment\\n\\nreplay off\\n  replay on  \\ndepth 10B\\n' > ctl", &m.path);
    assert_eq!(
        config_of(&ctl(&m.path)),
        "data coalesce\nreplay all\ndepth 10B\nwrite nonblock\nframe write\nstore memory\nsync never\ndeliver all\nackwait 0\nmaxdeliver 0\nfollow none\n"
    );
    // And the configuration is not just displayed: replay all keeps history.
    run_ok("echo one >> s", &m.path);
    assert_eq!(late_reader_sees(&m.join("s")), strings(&["one\n"]));
    assert_healthy(&m);
}

#[test]
fn saved_ctl_text_restores_the_config() {
    let m = Mount::new();
    let tmp = TempDir::new();
    let saved = tmp.join("x");
    run_ok("printf 'replay last\\ndepth 7\\n' > ctl", &m.path);
    run_ok(&format!("cat ctl > {}", saved.display()), &m.path);
    run_ok("printf 'data coalesce\\nreplay all\\ndepth 16M\\n' > ctl", &m.path);
    assert_eq!(
        config_of(&ctl(&m.path)),
        "data coalesce\nreplay all\ndepth 16M\nwrite nonblock\nframe write\nstore memory\nsync never\ndeliver all\nackwait 0\nmaxdeliver 0\nfollow none\n"
    );
    run_ok(&format!("cat {} > ctl", saved.display()), &m.path);
    assert_eq!(
        config_of(&ctl(&m.path)),
        "data message\nreplay last\ndepth 7\nwrite nonblock\nframe write\nstore memory\nsync never\ndeliver all\nackwait 0\nmaxdeliver 0\nfollow none\n"
    );
    // Written back onto itself, ctl stays as it is.
    run_ok("cat ctl > ctl", &m.path);
    assert_eq!(
        config_of(&ctl(&m.path)),
        "data message\nreplay last\ndepth 7\nwrite nonblock\nframe write\nstore memory\nsync never\ndeliver all\nackwait 0\nmaxdeliver 0\nfollow none\n"
    );
    assert_healthy(&m);
}

#[test]
fn a_refused_ctl_write_says_why_on_the_next_read_of_ctl_and_saved_text_still_restores() {
    let m = Mount::new();
    let out = run_sh("/bin/echo bogus > ctl", &m.path, T);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Invalid argument"), "{out:?}");
    let text = ctl(&m.path);
    assert!(text.ends_with("# bytes 0\n# error: line 1: unknown command \"bogus\"\n"), "{text}");
    // A descriptor open for reading and writing says it too: its latest refusal replaces the
    // one it had at open (one comment, however many refusals).
    let script = "import os\nfd = os.open('ctl', os.O_RDWR)\ntry:\n    os.write(fd, b'depth 2\\nreplay sometimes\\n')\n\
                  except OSError as e:\n    print(e.strerror)\nprint(os.pread(fd, 65536, 0).decode(), end='')";
    let out = run_sh(&format!("python3 -c \"{script}\""), &m.path, T);
    let read = String::from_utf8_lossy(&out.stdout);
    let latest = "# bytes 0\n# error: line 2: replay takes off, last or all, not \"sometimes\"\n";
    assert!(read.starts_with("Invalid argument\ndata message\n") && read.ends_with(latest), "{out:?}");
    // What ctl printed, error line and all, writes back; a write that works clears it.
    let tmp = TempDir::new();
    let saved = tmp.join("saved");
    run_ok(&format!("cat ctl > {0}; echo depth 9 > ctl; cat {0} > ctl", saved.display()), &m.path);
    let text = ctl(&m.path);
    assert!(text.starts_with("data message\nreplay off\ndepth 0\n") && !text.contains("# error"), "{text}");
    assert_healthy(&m);
}

#[test]
fn bad_ctl_input_fails_whole_with_einval() {
    let m = Mount::new();
    run_ok("printf 'replay last\\ndepth 7\\n' > ctl", &m.path);
    let before = ctl(&m.path);
    // dash's builtins report any write error as "I/O error"; coreutils and bash name it.
    let cases = [
        ("/bin/echo frobnicate > ctl", "frobnicate"),
        ("/bin/echo replay sometimes > ctl", "sometimes"),
        ("/usr/bin/printf 'replay all\\nbogus\\n' > ctl", "bogus"),
        ("echo depth -5 > ctl", "-5"),
        ("printf 'data coalesce\\nclear now\\n' > ctl", "clear"),
    ];
    for (script, named) in cases {
        let out: Output = run_sh(script, &m.path, T);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{script:?} succeeded");
        if !script.starts_with("echo") && !script.starts_with("printf") {
            assert!(stderr.contains("Invalid argument"), "{script:?}: stderr {stderr:?}");
        }
        // What ctl reads next ends with why, as a comment.
        let after = ctl(&m.path);
        let told = after.strip_prefix(&before).unwrap_or_else(|| panic!("{script:?} changed ctl: {after}"));
        assert!(told.starts_with("# error: line ") && told.contains(named), "{script:?}: {told:?}");
        let log = m.log();
        assert!(
            log.lines().any(|l| l.contains("ctl") && l.contains(named)),
            "no log line names {named:?} for {script:?}; log:\n{log}"
        );
    }
    let out = run_sh("bash -c 'echo replay sometimes > ctl'", &m.path, T);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Invalid argument"), "{out:?}");
    assert!(ctl(&m.path).starts_with(&before));

    // The daemon keeps serving, and good commands still work.
    run_ok("echo replay all > ctl && echo hi >> s", &m.path);
    assert_eq!(late_reader_sees(&m.join("s")), strings(&["hi\n"]));
    assert_healthy(&m);
}

#[test]
fn clear_empties_the_group_and_only_it() {
    let m = Mount::with_options("replay=all");
    run_ok("mkdir g h && echo a1 >> g/a && echo a2 >> g/a && echo b1 >> g/b && echo c1 >> h/c", &m.path);
    let g = m.join("g");
    assert_eq!(late_reader_sees(&g.join("a")), strings(&["a1\n", "a2\n"]));
    assert_eq!(late_reader_sees(&g.join("order")), strings(&["a\n", "a\n", "b\n"]));

    run_ok("echo clear > g/ctl", &m.path);
    for s in ["a", "b"] {
        assert_eq!(late_reader_sees(&g.join(s)), Vec::<String>::new(), "g/{s} after clear");
        assert_eq!(fs::metadata(g.join(s)).unwrap().len(), 0, "size of g/{s}");
    }
    assert_eq!(late_reader_sees(&g.join("order")), Vec::<String>::new(), "g/order after clear");
    // (Not `# readers`: the kernel reports a closed file to the daemon asynchronously.)
    let text = ctl(&g);
    assert!(text.contains("# streams 2\n") && text.ends_with("# messages 0\n# bytes 0\n"), "{text}");
    assert_eq!(
        config_of(&ctl(&g)),
        "data message\nreplay all\ndepth 0\nwrite nonblock\nframe write\nstore memory\nsync never\ndeliver all\nackwait 0\nmaxdeliver 0\nfollow none\n",
        "clear is not a setting"
    );
    // Another group keeps its history.
    assert_eq!(late_reader_sees(&m.join("h/c")), strings(&["c1\n"]));
    assert!(ctl(&m.join("h")).ends_with("# messages 1\n# bytes 3\n"));
    // New messages are kept again.
    run_ok("echo a3 >> g/a", &m.path);
    assert_eq!(late_reader_sees(&g.join("a")), strings(&["a3\n"]));
    assert_eq!(late_reader_sees(&g.join("order")), strings(&["a\n"]));
    assert_healthy(&m);
}

// Non-owners writing ctl: covered with permissions in tests/tree.rs.

// ---------------------------------------------------------------------------
// order
// ---------------------------------------------------------------------------

/// Replays a group from its `order`: for every entry, the next message of the stream it
/// names (each stream opened once, read one message at a time). Panics if a named stream
/// has no message for its entry.
fn replay_by_order(group: &Path) -> Vec<(String, String)> {
    let entries = late_reader_sees(&group.join("order"));
    let mut streams: std::collections::HashMap<String, File> = std::collections::HashMap::new();
    let mut sequence = Vec::new();
    for entry in entries {
        let name = entry.strip_suffix('\n').unwrap_or_else(|| panic!("order entry {entry:?}")).to_string();
        let file = streams.entry(name.clone()).or_insert_with(|| open_nonblocking(&group.join(&name)));
        let message =
            read_message(file).unwrap_or_else(|e| panic!("{name}: no message for its order entry: {e}"));
        sequence.push((name, String::from_utf8(message).unwrap()));
    }
    for (name, file) in &mut streams {
        let rest = drain(file);
        assert!(rest.is_empty(), "{name} has messages order does not list: {rest:?}");
    }
    sequence
}

#[test]
fn order_reconstructs_concurrent_shell_writers() {
    let m = Mount::with_options("replay=all");
    let g = m.join("g");
    fs::create_dir(&g).unwrap();
    let mut writers: Vec<Proc> = ["a", "b", "c", "d"]
        .iter()
        .map(|s| sh(&format!("for i in $(seq 1 100); do echo {s}$i >> {s}; done"), &g))
        .collect();
    for w in &mut writers {
        let status = w.wait_exit(Duration::from_secs(30)).expect("writer finishes");
        assert!(status.success(), "{:?}", String::from_utf8_lossy(&w.stderr_output()));
    }

    let sequence = replay_by_order(&g);
    assert_eq!(sequence.len(), 400);
    for s in ["a", "b", "c", "d"] {
        let from_order: Vec<String> =
            sequence.iter().filter(|(n, _)| n == s).map(|(_, m)| m.clone()).collect();
        let expected: Vec<String> = (1..=100).map(|i| format!("{s}{i}\n")).collect();
        assert_eq!(from_order, expected, "{s}'s messages through order: every one, in its order");
        assert_eq!(late_reader_sees(&g.join(s)), expected, "{s}'s own history");
    }
    // Each entry named the stream whose message it was.
    for (name, message) in &sequence {
        assert!(message.starts_with(name.as_str()), "{name}: {message:?}");
    }
    assert_healthy(&m);
}

#[test]
fn order_reproduces_the_exact_commit_order() {
    const EACH: usize = 100;
    let names: [&'static str; 4] = ["a", "b", "c", "d"];
    let m = Mount::with_options("replay=all");
    let g = m.join("g");
    fs::create_dir(&g).unwrap();

    // A shuffled schedule of whose turn each global sequence number is (EACH per stream):
    // four threads write concurrently, but one at a time in the schedule's order, and
    // write(2) returns only once committed, so commit order is 0, 1, 2, ...
    let mut schedule: Vec<usize> = (0..names.len() * EACH).map(|i| i % names.len()).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in (1..schedule.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        schedule.swap(i, (x % (i as u64 + 1)) as usize);
    }
    let switches = schedule.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(switches > 100, "the schedule interleaves the streams");
    let schedule = Arc::new(schedule);
    let turn = Arc::new((Mutex::new(0usize), Condvar::new()));
    let threads: Vec<_> = names
        .iter()
        .enumerate()
        .map(|(me, &name)| {
            let path = g.join(name);
            let (schedule, turn) = (schedule.clone(), turn.clone());
            thread::spawn(move || {
                let mut file = OpenOptions::new().create(true).append(true).open(&path).unwrap();
                let (lock, cv) = &*turn;
                let mut next = lock.lock().unwrap();
                loop {
                    while *next < schedule.len() && schedule[*next] != me {
                        next = cv.wait(next).unwrap();
                    }
                    if *next >= schedule.len() {
                        return Ok(());
                    }
                    let text = format!("{}\n", *next);
                    let written = file.write(text.as_bytes());
                    if !matches!(written, Ok(n) if n == text.len()) {
                        // Stop everyone rather than leave them waiting for this turn.
                        *next = usize::MAX;
                        cv.notify_all();
                        return Err(format!("{name}: write of {text:?}: {written:?}"));
                    }
                    *next += 1;
                    cv.notify_all();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer thread").unwrap();
    }

    let sequence = replay_by_order(&g);
    let numbers: Vec<usize> = sequence.iter().map(|(_, m)| m.trim_end().parse().unwrap()).collect();
    assert_eq!(numbers, (0..names.len() * EACH).collect::<Vec<_>>(), "order gives back the commit order");
    for ((name, _), &owner) in sequence.iter().zip(schedule.iter()) {
        assert_eq!(name, names[owner]);
    }
    assert_healthy(&m);
}

#[test]
fn order_lists_only_the_groups_own_streams() {
    let m = Mount::with_options("replay=all");
    run_ok(
        "mkdir sub && echo 1 >> a && echo 2 >> sub/x && echo 3 >> b && echo 4 >> sub/x && echo 5 >> a",
        &m.path,
    );
    assert_eq!(late_reader_sees(&m.join("order")), strings(&["a\n", "b\n", "a\n"]));
    assert_eq!(late_reader_sees(&m.join("sub/order")), strings(&["x\n", "x\n"]));
    assert_healthy(&m);
}

#[test]
fn order_cannot_be_written_even_by_root() {
    let m = Mount::new();
    run_ok("touch a", &m.path);
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this test runs as root");
    for options in [OpenOptions::new().write(true).clone(), OpenOptions::new().read(true).write(true).clone()]
    {
        let err = options.open(m.join("order")).expect_err("order opened for writing");
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    }
    let out = run_sh("echo a >> order", &m.path, T);
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"), "{out:?}");
    assert_eq!(fs::metadata(m.join("order")).unwrap().len(), 0);
    assert_healthy(&m);
}

#[test]
fn order_under_replay_off_shows_only_later_writes() {
    let m = Mount::new();
    run_ok("echo 1 >> a && echo 2 >> b", &m.path);
    let mut order = open_nonblocking(&m.join("order"));
    assert_eq!(drain(&mut order), Vec::<String>::new(), "earlier writes are not replayed");
    run_ok("echo 3 >> b && echo 4 >> a", &m.path);
    assert_eq!(drain(&mut order), strings(&["b\n", "a\n"]));
    // A blocking reader of order waits for the next write.
    let cat = Proc::spawn(Command::new("cat").arg("order").current_dir(&m.path));
    wait_until("cat to block reading order", T, || blocked_in_syscall(cat.pid(), libc::SYS_read));
    run_ok("echo 5 >> a", &m.path);
    cat.wait_output_contains(b"a\n", T);
    assert_eq!(cat.output(), b"a\n");
    assert_eq!(drain(&mut order), strings(&["a\n"]));
    assert_healthy(&m);
}
