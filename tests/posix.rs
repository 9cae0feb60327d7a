//! pjdfstest (the Rust port of the POSIX file-system suite, crates.io 0.2.2) on a real mount,
//! with tests/pjdfstest/mqfs.toml: every test passes but those it lists as expected failures,
//! each with the rule of docs/semantics.md it follows from, and the count of passes never
//! drops below the floor docs/guarantees.md reports. `.ci/run` installs pjdfstest; without
//! it (and not under CI=true) the test is skipped.

mod common;

use common::users::users;
use common::{Mount, Proc};
use std::io::Write;
use std::process::Command;
use std::time::Duration;

/// Passes out of 398 (tmpfs here: 380 with the same configuration and a noexec mount).
const FLOOR: u32 = 370;

/// The suite takes a few seconds; a test that hangs must not hold CI.
const T: Duration = Duration::from_secs(300);

/// A user's primary group, by name (pjdfstest checks the user is in it).
fn group_of(user: &str) -> String {
    let out = Command::new("id").arg("-gn").arg(user).output().unwrap();
    assert!(out.status.success(), "no user {user}");
    String::from_utf8_lossy(&out.stdout).trim().into()
}

/// The numbers of pjdfstest's last line, "Summary: F failed, S skipped, P passed, E expected
/// failures, N total", by word.
fn summary(output: &str, word: &str) -> u32 {
    let line =
        output.lines().find_map(|l| l.strip_prefix("Summary: ")).expect("pjdfstest printed no summary");
    let part = line.split(", ").find(|part| part.split_once(' ').is_some_and(|(_, w)| w.starts_with(word)));
    part.and_then(|p| p.split(' ').next()?.parse().ok()).unwrap_or_else(|| panic!("no {word} in {line:?}"))
}

/// Whether pjdfstest 0.2.2 is installed. Without it the test is skipped with a message,
/// except under CI=true, where `.ci/run` installs it and its absence fails the test.
fn pjdfstest_installed() -> bool {
    let out = Command::new("pjdfstest").arg("--version").output();
    if out.is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "pjdfstest 0.2.2") {
        return true;
    }
    let install = "cargo install pjdfstest --version 0.2.2 --locked";
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "pjdfstest 0.2.2 is not installed: .ci/run runs `{install}`"
    );
    // Straight to stderr, past the test harness's capture: a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "pjdfstest_passes_all_but_the_failures_the_stream_rules_explain skipped: pjdfstest 0.2.2 is not \
         installed ({install}); under CI=true this fails"
    );
    false
}

#[test]
fn pjdfstest_passes_all_but_the_failures_the_stream_rules_explain() {
    if !pjdfstest_installed() {
        return;
    }
    users(); // creates mqfs_t1
    let m = Mount::with_options("allow_other,noexec");
    let config = m.path.with_extension("pjdfstest.toml");
    let base =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pjdfstest/mqfs.toml")).unwrap();
    let auth = format!(
        "\n[dummy_auth]\nentries = [[\"mqfs_t1\", \"{}\"], [\"nobody\", \"{}\"]]\n",
        group_of("mqfs_t1"),
        group_of("nobody")
    );
    std::fs::write(&config, base + &auth).unwrap();
    let mut run = Proc::spawn(Command::new("pjdfstest").arg("-c").arg(&config).arg("-p").arg(&m.path));
    let status = run.wait_exit(T).expect("pjdfstest finishes");
    let output = String::from_utf8_lossy(&run.output()).into_owned();
    let failures: Vec<&str> =
        output.lines().filter(|l| l.contains("FAILED") || l.contains("UNEXPECTEDLY")).collect();
    assert!(
        status.success(),
        "pjdfstest: {status:?}; unexpected outcomes:\n{}\n{}",
        failures.join("\n"),
        String::from_utf8_lossy(&run.stderr_output())
    );
    let passed = summary(&output, "passed");
    assert!(passed >= FLOOR, "{passed} passed, fewer than the floor of {FLOOR}");
    println!("pjdfstest on mqfs: {passed} of {} passed", summary(&output, "total"));
}
