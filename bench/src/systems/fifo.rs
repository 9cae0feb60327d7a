//! Kernel FIFOs: a named pipe between one writer and one reader, and for fan-out, GNU
//! `tee` copying one FIFO into N FIFOs, one per reader.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::procs::Proc;

pub fn make(path: &Path) -> Result<(), String> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: mkfifo reads a NUL-terminated path we own.
    if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
        return Err(format!("mkfifo {}: {}", path.display(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Starts `tee -p OUT...` reading the FIFO `input`. Its stdin is opened O_RDWR, so neither it
/// nor the writer waits for the other; tee waits in open(2) until each reader has opened its
/// output FIFO.
pub fn tee(input: &Path, outputs: &[PathBuf]) -> Result<Proc, String> {
    let stdin = OpenOptions::new()
        .read(true)
        .write(true)
        .open(input)
        .map_err(|e| format!("{}: {e}", input.display()))?;
    let mut command = Command::new("tee");
    command.arg("-p").args(outputs).stdin(stdin).stdout(Stdio::null());
    Proc::spawn("tee", command, false, libc::SIGKILL)
}
