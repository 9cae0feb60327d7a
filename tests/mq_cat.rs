//! `mq-cat GROUP STREAM...` on real mounts: concurrent writers to several streams read back
//! in exactly their commit order (also messages over 1 MiB, binary, without newlines, and a
//! subset of the streams), shell writers in separate processes read back as `order` lists
//! them, following live writes until every named stream is removed, `--no-follow` stopping
//! at the end of the retained history, exact order when `depth` dropped part of the
//! streams' and `order`'s history, Ctrl-C, a closed standard output, and the errors and
//! exit statuses of a Unix tool.

mod common;

use common::{Mount, Proc, TempDir, proc_syscall, run_ok, sh, wait_until};
use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

const MQ_CAT: &str = env!("CARGO_BIN_EXE_mq-cat");
const T: Duration = Duration::from_secs(20);

/// A group `g` with `replay all` in a fresh mount (whose own default is `replay off`).
fn group(m: &Mount) -> std::path::PathBuf {
    let g = m.join("g");
    fs::create_dir(&g).unwrap();
    fs::write(g.join("ctl"), "replay all\n").unwrap();
    g
}

/// Runs `mq-cat ARGS` to completion; returns (status, stdout, stderr).
fn mq_cat(args: &[&str], cwd: &Path) -> (std::process::ExitStatus, Vec<u8>, String) {
    let mut p = Proc::spawn(Command::new(MQ_CAT).args(args).current_dir(cwd));
    let status = p.wait_exit(T).unwrap_or_else(|| panic!("mq-cat {args:?} did not finish within {T:?}"));
    (status, p.output(), String::from_utf8_lossy(&p.stderr_output()).into_owned())
}

/// The message a writer publishes as number `seq` of the global sequence: mostly short
/// lines, sometimes without a newline, with binary bytes, or over 1 MiB (the kernel's
/// largest write request), so that only whole messages in order give the right bytes.
fn message(seq: usize, stream: &str) -> Vec<u8> {
    match seq % 37 {
        5 => format!("{seq} {stream} no newline").into_bytes(),
        11 => {
            let mut m = format!("{seq} {stream} binary:").into_bytes();
            m.extend_from_slice(&[0, 255, b'\n', 0, 1, 2, b'\r']);
            m
        }
        23 if seq < 150 => {
            let mut m = format!("{seq} {stream} big ").into_bytes();
            m.extend((0..(1 << 20) + 4321).map(|i| b'a' + (i % 26) as u8));
            m.push(b'\n');
            m
        }
        _ => format!("{seq} {stream}\n").into_bytes(),
    }
}

#[test]
fn concurrent_writers_are_read_back_in_exactly_their_write_order() {
    const TOTAL: usize = 400;
    let names = ["a", "b", "c", "d"];
    let m = Mount::new();
    let g = group(&m);
    // Four threads race for a lock, each writing its next message to its own stream while
    // holding it: the lock's order is the commit order, and it is recorded here.
    let next = Arc::new(Mutex::new(Vec::<(usize, &'static str)>::new()));
    let writers: Vec<_> = names
        .iter()
        .map(|&name| {
            let (next, path) = (next.clone(), g.join(name));
            thread::spawn(move || {
                let mut file = OpenOptions::new().create(true).append(true).open(&path).unwrap();
                loop {
                    let mut log = next.lock().unwrap();
                    let seq = log.len();
                    if seq >= TOTAL {
                        return;
                    }
                    let data = message(seq, name);
                    let n = file.write(&data).unwrap();
                    assert_eq!(n, data.len(), "one write, one message");
                    log.push((seq, name));
                    drop(log);
                    thread::yield_now();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let log = next.lock().unwrap().clone();
    let switches = log.windows(2).filter(|w| w[0].1 != w[1].1).count();
    assert!(switches > 20, "the writers interleave ({switches} switches)");

    let expected = |wanted: &[&str]| -> Vec<u8> {
        log.iter().filter(|(_, s)| wanted.contains(s)).flat_map(|&(seq, s)| message(seq, s)).collect()
    };
    let (status, out, err) = mq_cat(&["--no-follow", "g", "a", "b", "c", "d"], &m.path);
    assert!(status.success() && err.is_empty(), "{status:?} {err}");
    assert_eq!(out.len(), expected(&names).len());
    assert!(out == expected(&names), "mq-cat's output is not the commit order");

    // Some of the streams, named in another order: still write order, the others left out.
    let (status, out, err) = mq_cat(&["-n", "g", "d", "b"], &m.path);
    assert!(status.success() && err.is_empty(), "{status:?} {err}");
    assert!(out == expected(&["b", "d"]), "subset: {} bytes", out.len());
}

#[test]
fn shell_writers_in_separate_processes_come_out_as_order_lists_them() {
    let m = Mount::new();
    let g = group(&m);
    let mut writers: Vec<Proc> = ["x", "y", "z"]
        .iter()
        .map(|s| sh(&format!("for i in $(seq 1 150); do echo {s} $i >> {s}; done"), &g))
        .collect();
    for w in &mut writers {
        let status = w.wait_exit(Duration::from_secs(60)).expect("writer finishes");
        assert!(status.success(), "{}", String::from_utf8_lossy(&w.stderr_output()));
    }
    let (status, out, err) = mq_cat(&["-n", ".", "x", "y", "z"], &g);
    assert!(status.success() && err.is_empty(), "{status:?} {err}");
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<(&str, u32)> = out
        .lines()
        .map(|l| {
            let (s, i) = l.split_once(' ').unwrap();
            (s, i.parse().unwrap())
        })
        .collect();
    assert_eq!(lines.len(), 450, "{out}");
    // Every stream's own messages in their order...
    for s in ["x", "y", "z"] {
        let mine: Vec<u32> = lines.iter().filter(|l| l.0 == s).map(|l| l.1).collect();
        assert_eq!(mine, (1..=150).collect::<Vec<_>>(), "{s}");
    }
    // ...interleaved as order recorded the commits.
    let mut order = Vec::new();
    let mut reader =
        OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(g.join("order")).unwrap();
    let mut buf = [0u8; 512];
    while let Ok(n) = reader.read(&mut buf) {
        order.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_string());
    }
    let names: Vec<&str> = lines.iter().map(|l| l.0).collect();
    assert_eq!(names, order);
    assert!(names.windows(2).filter(|w| w[0] != w[1]).count() > 3, "the writers ran concurrently");
}

#[test]
fn what_depth_left_of_each_stream_and_of_order_comes_out_in_exactly_its_write_order() {
    let m = Mount::new();
    let g = group(&m);
    fs::write(g.join("ctl"), "depth 40\n").unwrap();
    // One writer, so the write order is known: streams written unevenly, so that depth drops
    // a different part of each stream's history and of order's.
    let names = ["a", "b", "c", "skipped"];
    let mut files: Vec<fs::File> =
        names.iter().map(|n| OpenOptions::new().create(true).append(true).open(g.join(n)).unwrap()).collect();
    let mut written: Vec<(usize, String)> = Vec::new();
    for seq in 0..300 {
        let stream = [0, 0, 1, 0, 2, 3, 0, 1][seq % 8];
        let message = format!("{seq} {}\n", names[stream]);
        files[stream].write_all(message.as_bytes()).unwrap();
        written.push((stream, message));
    }
    // Each stream keeps its newest 40 messages.
    let kept: Vec<&str> = (0..3)
        .flat_map(|s| {
            let mine: Vec<&(usize, String)> = written.iter().filter(|w| w.0 == s).collect();
            mine[mine.len().saturating_sub(40)..].to_vec()
        })
        .map(|w| w.1.as_str())
        .collect();
    let want: String = written.iter().map(|w| w.1.as_str()).filter(|m| kept.contains(m)).collect();
    let (status, out, err) = mq_cat(&["-n", ".", "a", "b", "c"], &g);
    assert!(status.success() && err.is_empty(), "{status:?} {err}");
    assert_eq!(String::from_utf8(out).unwrap(), want);
    // Following, live writes go on after it in order.
    let mut cat = Proc::spawn(Command::new(MQ_CAT).args([".", "a", "b"]).current_dir(&g));
    let history: String = want.lines().filter(|l| !l.ends_with(" c")).map(|l| format!("{l}\n")).collect();
    assert_eq!(String::from_utf8(cat.wait_output_len(history.len(), T)).unwrap(), history);
    let tail: String = (300..310).map(|seq| format!("{seq} {}\n", names[seq % 2])).collect();
    let want = history + &tail;
    for seq in 300..310 {
        files[seq % 2].write_all(format!("{seq} {}\n", names[seq % 2]).as_bytes()).unwrap();
    }
    let got = cat.wait_output_len(want.len(), T);
    assert_eq!(String::from_utf8(got).unwrap(), want);
    fs::remove_file(g.join("a")).unwrap();
    fs::remove_file(g.join("b")).unwrap();
    assert!(cat.wait_exit(T).expect("mq-cat ends once its streams are gone").success());
}

#[test]
fn following_prints_live_messages_until_every_named_stream_is_removed() {
    let m = Mount::new();
    let g = group(&m);
    run_ok("echo a1 >> a; echo b1 >> b; echo other >> c; echo a2 >> a", &g);
    let mut cat = Proc::spawn(Command::new(MQ_CAT).args(["g", "a", "b"]).current_dir(&m.path));
    cat.wait_output_contains(b"a1\nb1\na2\n", T);
    run_ok("echo b2 >> b; echo c2 >> c; echo a3 >> a", &g);
    cat.wait_output_contains(b"a1\nb1\na2\nb2\na3\n", T);
    // Removing one stream leaves the other followed.
    run_ok("rm a", &g);
    run_ok("echo b3 >> b", &g);
    cat.wait_output_contains(b"b3\n", T);
    assert!(!cat.has_exited(), "mq-cat ended with one named stream left");
    run_ok("echo b4 >> b; rm b", &g);
    let status = cat.wait_exit(T).expect("mq-cat ends once every named stream is removed");
    assert!(status.success(), "{status:?}");
    assert_eq!(String::from_utf8(cat.output()).unwrap(), "a1\nb1\na2\nb2\na3\nb3\nb4\n");
    assert!(cat.stderr_output().is_empty());
}

#[test]
fn no_follow_stops_at_the_end_of_the_retained_history() {
    let m = Mount::new();
    let g = group(&m);
    run_ok("touch a b", &g);
    let (status, out, err) = mq_cat(&["-n", "g", "a", "b"], &m.path);
    assert!(status.success() && out.is_empty() && err.is_empty(), "{status:?} {out:?} {err}");
    run_ok("echo 1 >> b; echo 2 >> a", &g);
    let (status, out, _) = mq_cat(&["--follow", "--no-follow", "g", "a", "b"], &m.path);
    assert!(status.success());
    assert_eq!(out, b"1\n2\n");
    // Both streams are still there: a follower would still be running.
    assert!(g.join("a").exists() && g.join("b").exists());
}

#[test]
fn ctrl_c_ends_a_follower() {
    let m = Mount::new();
    let g = group(&m);
    run_ok("echo x >> a", &g);
    let mut cat = Proc::spawn(Command::new(MQ_CAT).args(["g", "a"]).current_dir(&m.path));
    cat.wait_output_contains(b"x\n", T);
    let pid = cat.pid();
    wait_until(
        "mq-cat waits in poll",
        T,
        || matches!(proc_syscall(pid), Some(n) if n == libc::SYS_poll || n == libc::SYS_ppoll),
    );
    cat.signal(libc::SIGINT);
    let status = cat.wait_exit(T).expect("mq-cat ends on SIGINT");
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
}

#[test]
fn a_closed_standard_output_ends_it_quietly() {
    let m = Mount::new();
    let g = group(&m);
    // More than a pipe holds, so that mq-cat is still writing when head is gone.
    let mut f = OpenOptions::new().create(true).append(true).open(g.join("a")).unwrap();
    for i in 0..2000 {
        f.write_all(format!("{i:0>1000}\n").as_bytes()).unwrap();
    }
    let tmp = TempDir::new();
    let script = format!(
        "{MQ_CAT} g a 2>{err} | head -c 5; echo; echo \"status ${{PIPESTATUS[0]}}\"",
        err = tmp.join("err").display()
    );
    let mut bash = Proc::spawn(Command::new("bash").arg("-c").arg(script).current_dir(&m.path));
    let exited = bash.wait_exit(T).expect("mq-cat ends once its reader is gone");
    assert!(exited.success());
    let text = String::from_utf8(bash.output()).unwrap();
    assert!(text.starts_with("00000\n"), "{text}");
    let status: i32 = text.lines().last().unwrap().strip_prefix("status ").unwrap().parse().unwrap();
    assert!(status == 141 || status == 0, "killed by SIGPIPE or exited quietly: {status}");
    assert_eq!(fs::read_to_string(tmp.join("err")).unwrap(), "", "nothing on stderr");
}

#[test]
fn errors_and_exit_statuses_are_a_unix_tools() {
    let m = Mount::new();
    let g = group(&m);
    run_ok("echo x >> a; mkdir sub", &g);
    let cases: &[(&[&str], i32, &str)] = &[
        (&["nope", "a"], 1, "mq-cat: nope: No such file or directory\n"),
        (&["g", "a", "missing"], 1, "mq-cat: g/missing: No such file or directory\n"),
        (&["g", "sub"], 1, "mq-cat: g/sub: Is a directory\n"),
        (&["g", "order"], 1, "mq-cat: g/order: not a stream\n"),
        (&["g/a", "a"], 1, "mq-cat: g/a: Not a directory\n"),
        (&["g", "sub/x"], 2, "mq-cat: sub/x: not a stream name (streams are named within GROUP)\n"),
    ];
    for (args, code, message) in cases {
        let (status, out, err) = mq_cat(args, &m.path);
        assert_eq!(status.code(), Some(*code), "mq-cat {args:?}: {err}");
        assert_eq!(err, *message, "mq-cat {args:?}");
        assert!(out.is_empty());
    }
    // Usage errors: exit status 2.
    for args in [&[][..], &["g"][..], &["--bogus", "g", "a"][..]] {
        let (status, _, err) = mq_cat(args, &m.path);
        assert_eq!(status.code(), Some(2), "mq-cat {args:?}: {err}");
        assert!(err.contains("Usage"), "{err}");
    }
    // A group that does not keep message boundaries cannot be read message by message.
    run_ok("mkdir h && echo data coalesce > h/ctl && echo y >> h/s", &m.path);
    let (status, _, err) = mq_cat(&["h", "s"], &m.path);
    assert_eq!(status.code(), Some(1));
    assert!(err.starts_with("mq-cat: h: data coalesce"), "{err}");
    // --help and --version succeed.
    let (status, out, _) = mq_cat(&["--help"], &m.path);
    assert!(status.success() && String::from_utf8_lossy(&out).contains("--no-follow"));
    let (status, out, _) = mq_cat(&["--version"], &m.path);
    assert!(status.success());
    assert_eq!(String::from_utf8_lossy(&out).trim(), format!("mq-cat {}", env!("CARGO_PKG_VERSION")));
}
