//! Whether a thread closing a file is exiting because a signal killed it. FLUSH, which the
//! kernel sends on every close(2), does not say; a `frame close` message must not be
//! published by a writer killed while writing it, and its exit code, set before its files
//! are closed, tells.

use super::proc::{ProcPath, STATUS_BUF_INITIAL, read_small};

/// Whether thread `tid` is exiting because a signal killed it (its exit code, set before
/// the kernel closes its files, names a signal). A process that exits normally, or one
/// that is not exiting, is not dying; neither is a task that cannot be read.
pub fn killed_by_signal(tid: u32) -> bool {
    // `stat` must not be read for a thread that is not exiting: execve closes O_CLOEXEC
    // descriptors (so this FLUSH) while holding the lock reading `stat` takes
    // (exec_update_lock), and the read would wait for the exec that waits for us. An
    // exiting thread has dropped its memory (exit_mm) before closing its files
    // (exit_files); `status`, which takes no such lock, lists `VmSize` only while it has any.
    if has_memory(tid) {
        return false;
    }
    let mut buf = [0u8; 1024];
    let Ok(len) = read_small(&ProcPath::new(tid, "stat"), &mut buf) else { return false };
    exit_signal_from_stat(buf.get(..len).unwrap_or_default()).is_some_and(|signal| signal != 0)
}

/// The signal number in the exit code (field 52) of a `/proc/<tid>/stat` line. The command
/// name (field 2) may hold spaces and parentheses: fields are counted after its last `)`.
fn exit_signal_from_stat(data: &[u8]) -> Option<i64> {
    let after_name = data.get(data.iter().rposition(|&b| b == b')')? + 1..)?;
    let field = after_name.split(|b| b.is_ascii_whitespace()).filter(|t| !t.is_empty()).nth(52 - 3)?;
    let code: i64 = std::str::from_utf8(field).ok()?.parse().ok()?;
    Some(code & 0x7f)
}

/// Whether `/proc/<tid>/status` shows an address space (a `VmSize` line); false if the
/// thread is gone or the file cannot be read.
fn has_memory(tid: u32) -> bool {
    let mut buf = vec![0u8; 4 * STATUS_BUF_INITIAL];
    let Ok(len) = read_small(&ProcPath::new(tid, "status"), &mut buf) else { return false };
    buf.get(..len).unwrap_or_default().windows(8).any(|w| w == b"\nVmSize:")
}

#[cfg(test)]
mod tests {
    #[test]
    fn exit_signal_is_read_from_field_52_after_the_name() {
        let fields_after_name: Vec<String> = (3..=52).map(|n| n.to_string()).collect();
        let line = |name: &str, code: &str| {
            let mut fields = fields_after_name.clone();
            fields[52 - 3] = code.to_string();
            format!("1234 ({name}) {}\n", fields.join(" "))
        };
        assert_eq!(super::exit_signal_from_stat(line("cat", "9").as_bytes()), Some(9));
        assert_eq!(super::exit_signal_from_stat(line("a) b (c", "256").as_bytes()), Some(0));
        assert_eq!(super::exit_signal_from_stat(line("sh", "0").as_bytes()), Some(0));
        assert_eq!(super::exit_signal_from_stat(b"1234 (x) S 1 2"), None);
        assert!(!super::killed_by_signal(std::process::id()), "this test is alive");
    }
}
