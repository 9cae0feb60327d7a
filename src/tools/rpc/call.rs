//! `mq-call`: send one request and wait for its reply.

use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use super::{Endpoint, Received};
use crate::tools::sys;

/// The exit status of a call that timed out, as timeout(1) exits.
pub const TIMED_OUT: i32 = 124;

/// How a call failed: what to print after `mq-call: `, and the exit status.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub status: u8,
}

/// The request the command line gives: the arguments joined by spaces and a newline, or (no
/// arguments) all of standard input. A message cannot be empty.
pub fn request(args: &[OsString]) -> Result<Vec<u8>, Failure> {
    let request = if args.is_empty() {
        let mut all = Vec::new();
        io::stdin()
            .lock()
            .read_to_end(&mut all)
            .map_err(|e| Failure { message: format!("standard input: {}", sys::strerror(&e)), status: 1 })?;
        all
    } else {
        let mut line = args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>().join(&b' ');
        line.push(b'\n');
        line
    };
    if request.is_empty() {
        return Err(Failure {
            message: "the request is empty (standard input had nothing)".into(),
            status: 2,
        });
    }
    Ok(request)
}

/// Gives up on the call once `limit` has passed, wherever it waits (opening, writing the
/// request, reading the reply): says so and exits with `TIMED_OUT`.
pub fn give_up_after(limit: Duration, stream: &Path) {
    let stream = stream.display().to_string();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("mq-call: {stream}: no reply within {} s", limit.as_secs_f64());
        std::process::exit(TIMED_OUT);
    });
}

/// Sends `request` on `stream` and writes its reply to standard output.
pub fn call(stream: &Path, request: &[u8]) -> Result<(), Failure> {
    let fail =
        |e: io::Error| Failure { message: format!("{}: {}", stream.display(), sys::strerror(&e)), status: 1 };
    let mut endpoint = Endpoint::open(stream).map_err(fail)?;
    endpoint.send(request).map_err(fail)?;
    let reply = match endpoint.receive(None).map_err(fail)? {
        Received::Message(reply) => reply,
        // (Never Stopped: there is no stop descriptor.)
        Received::Removed | Received::Stopped => {
            return Err(Failure {
                message: format!("{}: the stream was removed before the reply came", stream.display()),
                status: 1,
            });
        }
    };
    match sys::write_all(io::stdout(), reply) {
        Err(e) if !sys::is(&e, libc::EPIPE) => {
            Err(Failure { message: format!("write error: {}", sys::strerror(&e)), status: 1 })
        }
        _ => Ok(()),
    }
}
