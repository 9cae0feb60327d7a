//! Shared by the load, fault and hostile-input tests: running the checking writers and
//! readers of `mqcheck.py` (see its docstring for the message format and the checks), reading
//! their JSON summaries, ctl counts, the daemon's memory, and the `MQFS_SOAK` switch.

#![allow(dead_code)]

use crate::common::{Mount, Proc};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub const SCRIPT: &str = include_str!("mqcheck.py");

/// Whether `MQFS_SOAK` asks for the long versions (set and not "0").
pub fn soak() -> bool {
    std::env::var_os("MQFS_SOAK").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `ci` normally, `soak` under `MQFS_SOAK=1`.
pub fn sized<T>(ci: T, soak_size: T) -> T {
    if soak() { soak_size } else { ci }
}

/// A python3 that starts quickly and that other users may run (the pyenv shim under /root
/// costs a bash script per start and is private to root).
pub fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" }
}

/// Starts `mqcheck.py ROLE ARGS...` in `cwd`, stdin piped.
pub fn mqcheck(role: &str, args: &[String], cwd: &Path) -> Proc {
    Proc::spawn_piped_stdin(
        Command::new(python()).arg("-c").arg(SCRIPT).arg(role).args(args).current_dir(cwd),
    )
}

/// `["--k", "v", ...]` from pairs.
pub fn opts(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs.iter().flat_map(|(k, v)| [format!("--{k}"), v.to_string()]).collect()
}

pub fn join(items: impl IntoIterator<Item = impl ToString>) -> String {
    items.into_iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Waits for `p` to exit within `timeout`; asserts it succeeded and printed a JSON line with
/// `"ok": true`, and returns that line.
pub fn finish(p: &mut Proc, what: &str, timeout: Duration) -> String {
    let status = p.wait_exit(timeout);
    let out = text(&p.output());
    let err = text(&p.stderr_output());
    let status = status
        .unwrap_or_else(|| panic!("{what} did not finish within {timeout:?}\nstdout: {out}\nstderr: {err}"));
    assert!(
        status.success() && out.contains("\"ok\": true"),
        "{what} failed ({status}):\nstdout: {out}\nstderr: {err}"
    );
    out.lines().last().unwrap_or_default().to_string()
}

/// The number after `"key": ` in a JSON line.
pub fn json_u64(line: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\": ");
    let start = line.find(&pat).unwrap_or_else(|| panic!("no {key} in {line}")) + pat.len();
    let digits: String = line[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("{key} is not a number in {line}"))
}

/// The value of the `# key N` line of a ctl file.
pub fn ctl_count(ctl: &Path, key: &str) -> u64 {
    let content = std::fs::read_to_string(ctl).unwrap_or_else(|e| panic!("read {}: {e}", ctl.display()));
    let prefix = format!("# {key} ");
    content
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{} has no {prefix:?} line: {content:?}", ctl.display()))
        .trim()
        .parse()
        .unwrap()
}

/// A field of /proc/PID/status in KiB (e.g. "VmRSS").
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The daemon still answers and its log shows no panic and no contained handler panic.
pub fn assert_healthy(m: &Mount) {
    let log = m.log();
    assert!(!log.contains("panicked") && !log.contains("bug:"), "the daemon panicked; log:\n{log}");
    std::fs::read_dir(&m.path).expect("the mount still answers");
}

/// A command running `program args...` as `uid`/`gid` with exactly the supplementary `groups`.
pub fn as_user(uid: u32, gid: u32, groups: &[u32], program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.arg(format!("--reuid={uid}")).arg(format!("--regid={gid}"));
    if groups.is_empty() {
        c.arg("--clear-groups");
    } else {
        c.arg(format!("--groups={}", join(groups)));
    }
    c.arg(program);
    c
}
