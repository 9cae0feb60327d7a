//! `mq-stamp [FILE]`: print who wrote the message last read on standard input (or on the
//! descriptor FILE names) and when (see mq-stamp(1), `mqfs::tools::stamp`).

use std::ffi::OsString;
use std::os::fd::BorrowedFd;
use std::process::ExitCode;

use clap::Parser;

use mqfs::ioctl::MqStamp;
use mqfs::tools::{stamp, sys};

#[derive(Parser)]
#[command(
    name = "mq-stamp",
    version,
    about = "Print the stamp (writer, time, numbers) of the mqfs message last read",
    override_usage = "mq-stamp [FILE]\n       mq-stamp --completions SHELL",
    long_about = "Print the stamp of the message whose bytes the last read(2) on standard input \
                  (or on FILE, an open descriptor named /dev/fd/N) returned: its number in its \
                  stream, its number in its group, when it was written, the pid, uid and gid of \
                  the process that wrote it, and how many times it was delivered, as one line: \
                  seq=N group_seq=N time=RFC3339 pid=N uid=N gid=N deliveries=N. mq-stamp shares \
                  the open file with the shell, so it can follow `read` in a loop.",
    after_help = "Example:\n  while read job; do echo \"$job from $(mq-stamp)\"; done < /n/mq/q/jobs\n\n\
                  Exit status: 0 on success, 1 if nothing was read on the descriptor yet or it is \
                  not an mqfs stream, 2 on usage errors."
)]
struct Args {
    /// Print a completion script for SHELL (bash, zsh, fish, ...) and exit
    #[arg(long, value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,
    /// The descriptor to ask: - (standard input, the default) or /dev/fd/N
    file: Option<OsString>,
}

fn main() -> ExitCode {
    sys::default_sigpipe();
    let args: Args = mqfs::completions::parse_or_print(|args: &Args| args.completions);
    let file = args.file.unwrap_or_else(|| OsString::from("-"));
    let Some(fd) = stamp::descriptor(&file) else {
        eprintln!(
            "mq-stamp: {}: not an open descriptor (give - or /dev/fd/N: a file opened anew has read nothing)",
            file.to_string_lossy()
        );
        return ExitCode::from(2);
    };
    // SAFETY: the descriptor is only borrowed for the call; if it is not open the ioctl
    // fails with EBADF.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    match MqStamp::of(borrowed) {
        Ok(found) => {
            println!("{}", stamp::line(&found));
            ExitCode::SUCCESS
        }
        Err(e) => {
            let why = match e.raw_os_error() {
                Some(libc::ENODATA) => "no message has been read on it yet".to_string(),
                Some(libc::ENOTTY) => "not an mqfs stream".to_string(),
                _ => sys::strerror(&e),
            };
            eprintln!("mq-stamp: {}: {why}", file.to_string_lossy());
            ExitCode::FAILURE
        }
    }
}
