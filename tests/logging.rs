//! Logging, on a real mount: a flood of refused writes leaves a few lines in `-o log=FILE`,
//! and one that says how many like them were suppressed; `-o debug` still shows fuser's trace
//! of every request, interrupts included, and is not rate-limited.

mod common;

use common::{Mount, Proc, TempDir, proc_state, wait_until};
use std::fs;
use std::io::Write;
use std::process::Command;
use std::time::Duration;

const KIB: usize = 1024;
const REFUSED: usize = 10_000;

/// The count a summary line gives: `… (M more like this suppressed in the last 5 s)`.
fn suppressed(line: &str) -> Option<usize> {
    let (_, tail) = line.rsplit_once(" (")?;
    tail.strip_suffix(" more like this suppressed in the last 5 s)")?.parse().ok()
}

#[test]
fn ten_thousand_refused_writes_leave_a_few_lines_that_count_the_rest() {
    let logs = TempDir::new();
    let log = logs.join("mqfs.log");
    let m = Mount::with_options(&format!("memory=1M,max_message=1M,replay=all,log={}", log.display()));
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    let mut writer = fs::OpenOptions::new().write(true).open(&s).expect("open for writing");
    let message = vec![7u8; 64 * KIB];
    let mut fitted = 0;
    while writer.write(&message).is_ok() {
        fitted += 1;
        assert!(fitted < 64, "64 writes of 64 KiB all fit under memory=1M");
    }
    let mut refused = 1;
    while refused < REFUSED {
        let error = writer.write(&message).expect_err("the mount is full");
        assert_eq!(error.raw_os_error(), Some(libc::ENOSPC), "{error}");
        refused += 1;
    }

    let read = || fs::read_to_string(&log).unwrap_or_default();
    wait_until("the log to say how many lines were suppressed", Duration::from_secs(20), || {
        read().lines().filter_map(suppressed).sum::<usize>() + shown(&read()) == REFUSED
    });
    let text = read();
    let lines = text.lines().filter(|l| l.contains("No space left on device")).count();
    assert!(lines <= 12, "{lines} lines about refused writes:\n{text}");
    assert!(text.lines().any(|l| suppressed(l).is_some()), "no summary line:\n{text}");
}

/// Lines about a refused write, summaries left out.
fn shown(text: &str) -> usize {
    text.lines().filter(|l| l.contains("No space left on device") && suppressed(l).is_none()).count()
}

#[test]
fn debug_shows_every_request_and_interrupt_unlimited() {
    let m = Mount::with_options("debug");
    let s = m.join("s");
    fs::write(&s, b"").unwrap();
    for _ in 0..30 {
        fs::metadata(&s).expect("stat");
    }
    let mut cat = Proc::spawn(Command::new("cat").arg(&s));
    wait_until("cat to block", Duration::from_secs(10), || {
        proc_state(cat.pid()) == Some('S') && m.log().contains(" READ ")
    });
    cat.signal(libc::SIGINT);
    assert!(cat.wait_exit(Duration::from_secs(10)).is_some(), "SIGINT ended cat");
    wait_until("the interrupt in the debug log", Duration::from_secs(10), || {
        m.log().contains("INTERRUPT unique RequestId(")
    });
    let getattrs = m.log().lines().filter(|l| l.contains(" GETATTR ")).count();
    assert!(getattrs >= 30, "{getattrs} GETATTR lines for 30 stats: debug lines are not limited");
}
