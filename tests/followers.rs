//! Following a stream with everyday tools, on a real mount (docs/semantics.md, "Following a
//! stream with everyday tools").
//!
//! `data static` streams: `tail -f` prints the last lines and then every new one, `tail -n0 -f`
//! only new ones, `tail -c +1 -f` the history and then new ones; `tail -F` follows a stream
//! removed and created again; `head -n 3` prints three lines and nothing on stderr; `grep` and
//! `jq --unbuffered` read the history and end, and follow behind `tail -f`; `less +F` under
//! tmux shows the history and then new lines. With `depth 5` and a writer that outruns it,
//! `tail -f` prints only whole lines that were written, in order, and no "file truncated".
//! Message streams: `tail -f`, `tail -F` and `tail -n0 -f` stay blocked in read(2) printing
//! nothing, `tail -c +1 -f` fails "Illegal seek", `head -n 3` prints its lines and a seek
//! warning; the documented replacements (`cat`, `grep --line-buffered`, `sed 3q`,
//! `jq --unbuffered`, `less +F`) each print what was written as it comes.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Mount, Proc, blocked_in_syscall, run_ok, run_sh, sh, wait_until};

/// Liveness deadline for things that should happen promptly (not a contract bound).
const T: Duration = Duration::from_secs(10);

/// `tail` on FUSE polls once a second and looks a followed name up again after five
/// unchanged polls: what it takes to notice a stream replaced.
const TAIL_F_RENAME: Duration = Duration::from_secs(20);

fn lines(range: std::ops::RangeInclusive<u32>, word: &str) -> String {
    range.map(|i| format!("{word} {i}\n")).collect()
}

/// A mount whose root group is read as files (`data static`) and keeps its history.
fn static_mount() -> Mount {
    let m = Mount::with_options("replay=all,data=static");
    run_ok("for i in $(seq 1 30); do echo \"old $i\" >> s; done", &m.path);
    m
}

fn spawn_sh(script: &str, m: &Mount) -> Proc {
    sh(script, &m.path)
}

// ---------------------------------------------------------------------------
// data static
// ---------------------------------------------------------------------------

#[test]
fn tail_f_on_a_static_stream_with_depth_prints_whole_lines_in_order_while_a_writer_outruns_it() {
    let m = Mount::with_options("replay=all,data=static,depth=5");
    run_ok("touch s", &m.path);
    let tail = spawn_sh("exec tail -f s", &m);
    wait_until("tail -f to wait", T, || blocked_in_syscall(tail.pid(), libc::SYS_clock_nanosleep));
    // Lines of three lengths, so that a shifted offset would land inside one. Each batch
    // outruns tail (which reads once a second) by far more than depth keeps, and tail reads
    // the end of each before the next: it goes on from where it was, every time.
    let (batches, batch) = (6, 500);
    let total = batches * batch;
    let pad = |n: u32| ["a", "bbb", "ccccccc"][n as usize % 3];
    for first in (1..=total).step_by(batch as usize) {
        let last = first + batch - 1;
        let writer = format!(
            "i={first}; while [ $i -le {last} ]; do case $((i % 3)) in 0) p=a;; 1) p=bbb;; *) p=ccccccc;; esac; \
             echo \"line $i $p\"; i=$((i+1)); done >> s"
        );
        run_ok(&writer, &m.path);
        tail.wait_output_contains(format!("line {last} {}\n", pad(last)).as_bytes(), T);
    }
    let out = String::from_utf8(tail.output()).expect("tail printed text");
    let mut last = 0;
    for line in out.lines() {
        let n: u32 = line
            .strip_prefix("line ")
            .and_then(|rest| rest.split_once(' '))
            .filter(|(n, p)| n.parse::<u32>().is_ok_and(|n| *p == pad(n)))
            .and_then(|(n, _)| n.parse().ok())
            .unwrap_or_else(|| panic!("a line that was not written: {line:?}"));
        assert!(n > last && n <= total, "line {n} after line {last}");
        last = n;
    }
    assert!(out.ends_with('\n'), "a torn last line: {out:?}");
    assert!(out.lines().count() < total as usize, "the writer never outran tail: the test shows nothing");
    assert_eq!(String::from_utf8_lossy(&tail.stderr_output()), "", "tail complained");
    // Offsets never moved: the size is every byte written, and the end is where tail is.
    let size: usize = run_ok("stat -c %s s", &m.path).trim().parse().unwrap();
    assert_eq!(size, (1..=total).map(|n| format!("line {n} {}\n", pad(n)).len()).sum::<usize>());
}

#[test]
fn tail_n_prints_all_a_static_stream_retains_when_it_retains_fewer_lines_than_asked() {
    // 12,000 messages of which depth keeps 5: tail reads back through 120 KB of dropped head.
    let m = Mount::with_options("replay=all,data=static,depth=5");
    run_ok("i=1; while [ $i -le 12000 ]; do echo \"line $i\"; i=$((i+1)); done >> s", &m.path);
    let retained = lines(11996..=12000, "line");
    assert_eq!(run_ok("tail -n 20 s", &m.path), retained);
    assert_eq!(run_ok("tail -n 3 s", &m.path), lines(11998..=12000, "line"));
    assert_eq!(run_ok("cat s; head -n 3 s", &m.path), retained.clone() + &lines(11996..=11998, "line"));
    let tail = spawn_sh("exec tail -f s", &m);
    tail.wait_output_contains(b"line 12000\n", T);
    run_ok("echo line 12001 >> s", &m.path);
    tail.wait_output_contains(b"line 12001\n", T);
    assert_eq!(String::from_utf8_lossy(&tail.output()), lines(11996..=12001, "line"));
}

#[test]
fn tail_follows_a_static_stream_from_its_last_lines_from_now_and_from_its_start() {
    let m = static_mount();
    let last10 = spawn_sh("exec tail -f s", &m);
    let now = spawn_sh("exec tail -n0 -f s", &m);
    let all = spawn_sh("exec tail -c +1 -f s", &m);
    last10.wait_output_contains(b"old 30\n", T);
    all.wait_output_contains(b"old 30\n", T);
    wait_until("tail -n0 -f to wait", T, || blocked_in_syscall(now.pid(), libc::SYS_clock_nanosleep));
    run_ok("echo new 1 >> s; echo new 2 >> s", &m.path);
    for tail in [&last10, &now, &all] {
        tail.wait_output_contains(b"new 2\n", T);
        assert_eq!(String::from_utf8_lossy(&tail.stderr_output()), "");
    }
    assert_eq!(String::from_utf8_lossy(&last10.output()), lines(21..=30, "old") + &lines(1..=2, "new"));
    assert_eq!(String::from_utf8_lossy(&now.output()), lines(1..=2, "new"));
    assert_eq!(String::from_utf8_lossy(&all.output()), lines(1..=30, "old") + &lines(1..=2, "new"));
}

#[test]
fn tail_capital_f_follows_a_static_stream_removed_and_created_again() {
    let m = static_mount();
    let tail = spawn_sh("exec tail -F s", &m);
    tail.wait_output_contains(b"old 30\n", T);
    run_ok("echo new 1 >> s", &m.path);
    tail.wait_output_contains(b"new 1\n", T);
    run_ok("rm s && echo again >> s", &m.path);
    tail.wait_output_contains(b"again\n", TAIL_F_RENAME);
    run_ok("echo more >> s", &m.path);
    tail.wait_output_contains(b"more\n", T);
    assert_eq!(String::from_utf8_lossy(&tail.output()), lines(21..=30, "old") + "new 1\nagain\nmore\n");
    let stderr = String::from_utf8_lossy(&tail.stderr_output()).into_owned();
    assert!(stderr.contains("has been replaced") || stderr.contains("has appeared"), "{stderr}");
}

#[test]
fn head_grep_and_jq_read_a_static_streams_history_and_end_or_follow_behind_tail() {
    let m = static_mount();
    let head = run_sh("head -n 3 s", &m.path, T);
    assert!(head.status.success(), "{head:?}");
    assert_eq!(String::from_utf8_lossy(&head.stdout), lines(1..=3, "old"));
    assert_eq!(String::from_utf8_lossy(&head.stderr), "", "head warned");
    assert_eq!(run_ok("grep -c old s", &m.path), "30\n");
    run_ok("mkdir j && for i in 1 2 3; do echo \"{\\\"n\\\":$i}\" >> j/s; done", &m.path);
    assert_eq!(run_ok("jq --unbuffered -c .n j/s", &m.path), "1\n2\n3\n");
    // Following: tail -f behind a filter that does not hold its output back.
    // (Whether tail opens before or after the new lines, they are among its last ten.)
    let grep = spawn_sh("tail -f s | grep --line-buffered new", &m);
    let jq = spawn_sh("tail -f j/s | jq --unbuffered -c .n", &m);
    jq.wait_output_contains(b"3\n", T);
    run_ok("echo new >> s; echo other >> s; echo '{\"n\":4}' >> j/s", &m.path);
    grep.wait_output_contains(b"new\n", T);
    jq.wait_output_contains(b"4\n", T);
    assert_eq!(String::from_utf8_lossy(&grep.output()), "new\n");
    assert_eq!(String::from_utf8_lossy(&jq.output()), "1\n2\n3\n4\n");
}

/// A tmux server of its own, killed on drop.
struct Tmux(String);

impl Tmux {
    fn start(command: &str, m: &Mount) -> Tmux {
        static SERVERS: AtomicUsize = AtomicUsize::new(0);
        let n = SERVERS.fetch_add(1, Ordering::Relaxed);
        let tmux = Tmux(format!("mqfs-followers-{}-{n}", std::process::id()));
        let status = Command::new("tmux")
            .args(["-L", &tmux.0, "new-session", "-d", "-x", "80", "-y", "40", command])
            .current_dir(&m.path)
            .env("LESS", "")
            .status()
            .expect("run tmux");
        assert!(status.success(), "tmux new-session: {status}");
        tmux
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux").args(["-L", &self.0, "capture-pane", "-p"]).output().expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, text: &str) {
        wait_until(&format!("{text:?} on the screen"), T, || self.screen().contains(text));
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.0, "kill-server"]).stderr(Stdio::null()).status();
    }
}

#[test]
fn less_plus_f_follows_static_and_message_streams() {
    let m = static_mount();
    run_ok("mkdir msg && echo data message > msg/ctl && echo replay off > msg/ctl && touch msg/s", &m.path);
    let on_static = Tmux::start("less +F s", &m);
    let on_message = Tmux::start("less +F msg/s", &m);
    on_static.wait_for("old 30");
    on_static.wait_for("Waiting for data");
    wait_until("less to open msg/s", T, || run_ok("cat msg/ctl", &m.path).contains("# readers 1\n"));
    run_ok("echo new 1 >> s; echo live 1 >> msg/s", &m.path);
    on_static.wait_for("new 1");
    on_message.wait_for("live 1");
}

// ---------------------------------------------------------------------------
// Message streams
// ---------------------------------------------------------------------------

/// A mount with a message stream `s` that keeps no history.
fn message_mount() -> Mount {
    let m = Mount::new();
    run_ok("touch s", &m.path);
    m
}

#[test]
fn on_a_message_stream_tail_waits_for_an_end_that_never_comes_and_head_warns() {
    let m = message_mount();
    let tails: Vec<Proc> =
        ["exec tail -f s", "exec tail -F s", "exec tail -n0 -f s"].iter().map(|t| spawn_sh(t, &m)).collect();
    let cat = spawn_sh("exec cat s", &m);
    for p in tails.iter().chain([&cat]) {
        wait_until("the reader to block in read", T, || blocked_in_syscall(p.pid(), libc::SYS_read));
    }
    run_ok("echo hello >> s", &m.path);
    cat.wait_output_contains(b"hello\n", T);
    // tail reads a stream it cannot seek as a pipe, to an end of file before printing: its
    // read(2) blocks for ever and it prints nothing.
    for tail in &tails {
        wait_until("tail to block in read again", T, || blocked_in_syscall(tail.pid(), libc::SYS_read));
        assert_eq!(tail.output(), b"", "tail printed");
    }
    let out = run_sh("tail -c +1 -f s", &m.path, T);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Illegal seek"), "{out:?}");
    // head prints its lines, then cannot seek back to just after them.
    let mut head = spawn_sh("exec head -n 3 s", &m);
    wait_until("head to block in read", T, || blocked_in_syscall(head.pid(), libc::SYS_read));
    run_ok("for i in 1 2 3 4; do echo \"line $i\" >> s; done", &m.path);
    let status = head.wait_exit(T).expect("head -n 3 exits after three lines");
    assert!(status.success(), "{status}");
    assert_eq!(String::from_utf8_lossy(&head.output()), lines(1..=3, "line"));
    let stderr = String::from_utf8_lossy(&head.stderr_output()).into_owned();
    assert!(stderr.contains("cannot seek to relative offset 0: Illegal seek"), "{stderr}");
}

#[test]
fn on_a_message_stream_the_documented_replacements_follow() {
    let m = message_mount();
    run_ok("mkdir j && touch j/s", &m.path);
    let cat = spawn_sh("exec cat s", &m);
    let grep = spawn_sh("exec grep --line-buffered line s", &m);
    let piped = spawn_sh("cat s | grep --line-buffered line", &m);
    let mut sed = spawn_sh("exec sed 3q s", &m);
    let jq = spawn_sh("exec jq --unbuffered -c .n j/s", &m);
    // Every reader has opened its stream: four of s, one of j/s.
    wait_until("four readers of s and one of j/s", T, || {
        run_ok("cat ctl", &m.path).contains("# readers 4\n")
            && run_ok("cat j/ctl", &m.path).contains("# readers 1\n")
    });
    run_ok(
        "for i in 1 2 3 4; do echo \"line $i\" >> s; echo noise >> s; echo \"{\\\"n\\\":$i}\" >> j/s; done",
        &m.path,
    );
    let want = lines(1..=4, "line");
    for p in [&grep, &piped] {
        p.wait_output_contains(b"line 4\n", T);
        assert_eq!(String::from_utf8_lossy(&p.output()), want);
    }
    cat.wait_output_contains(b"line 4\nnoise\n", T);
    jq.wait_output_contains(b"4\n", T);
    assert_eq!(String::from_utf8_lossy(&jq.output()), "1\n2\n3\n4\n");
    let status = sed.wait_exit(T).expect("sed 3q exits after three lines");
    assert!(status.success(), "{status}");
    assert_eq!(String::from_utf8_lossy(&sed.output()), "line 1\nnoise\nline 2\n");
    assert_eq!(sed.stderr_output(), b"");
}
