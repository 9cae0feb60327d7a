//! `mq-cat GROUP STREAM...`: print the messages of some streams of a group in the order they
//! were written, following the group's `order` (see mq-cat(1), `mqfs::tools::ordered`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use mqfs::tools::ordered::{Item, Ordered};
use mqfs::tools::sys;

#[derive(Parser)]
#[command(
    name = "mq-cat",
    version,
    about = "Print messages of streams of an mqfs group in the order they were written",
    override_usage = "mq-cat [-f | -n] GROUP STREAM...\n       mq-cat --completions SHELL",
    long_about = "Print the messages of the named streams of GROUP, raw, in the order they were \
                  written, as the group's `order` file records it. By default mq-cat follows: \
                  after the retained history it waits for new messages, until every named stream \
                  has been removed. Meant for groups with `replay all` (every reader starts with \
                  the whole history) or for following live writes.",
    after_help = "Examples:\n  mq-cat /n/mq/rc 1 2          # a session's output and errors, in order, then live\n  \
                  mq-cat -n /n/mq/chat alice bob # the retained history only\n\n\
                  Exit status: 0 at the end, 1 on errors (or if messages were dropped before they \
                  could be read), 2 on usage errors."
)]
struct Args {
    /// Wait for new messages after the retained history, until every named stream is removed
    /// (the default)
    #[arg(short = 'f', long, overrides_with = "no_follow")]
    follow: bool,
    /// Stop at the end of the retained history (what `order` holds when it gets there)
    #[arg(short = 'n', long = "no-follow", overrides_with = "follow")]
    no_follow: bool,
    /// Print a completion script for SHELL (bash, zsh, fish, ...) and exit
    #[arg(long, value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,
    /// The group (a directory of a mounted mqfs)
    #[arg(required_unless_present = "completions")]
    group: Option<PathBuf>,
    /// Names of streams of GROUP
    #[arg(required_unless_present = "completions")]
    streams: Vec<OsString>,
}

fn main() -> ExitCode {
    sys::default_sigpipe();
    let args: Args = mqfs::completions::parse_or_print(|args: &Args| args.completions);
    let group = args.group.clone().expect("clap requires GROUP");
    for name in &args.streams {
        let bytes = name.as_encoded_bytes();
        if bytes.is_empty() || bytes.contains(&b'/') || name == "." || name == ".." {
            eprintln!(
                "mq-cat: {}: not a stream name (streams are named within GROUP)",
                name.to_string_lossy()
            );
            return ExitCode::from(2);
        }
    }
    let follow = !args.no_follow;
    let mut reader = match Ordered::open(&group, &args.streams, follow) {
        Ok(reader) => reader,
        Err(e) => {
            eprintln!("mq-cat: {}: {}", e.path.display(), sys::strerror(&e.error));
            return ExitCode::FAILURE;
        }
    };
    let mut status = ExitCode::SUCCESS;
    loop {
        match reader.next_item() {
            Ok(Some(Item::Message(_, data))) => {
                if let Err(e) = sys::write_all(std::io::stdout(), data) {
                    if sys::is(&e, libc::EPIPE) {
                        return status;
                    }
                    eprintln!("mq-cat: write error: {}", sys::strerror(&e));
                    return ExitCode::FAILURE;
                }
            }
            Ok(Some(Item::Lost(i))) => {
                let path = group.join(reader.name(i));
                eprintln!(
                    "mq-cat: {}: messages were dropped before they could be read (No buffer space available)",
                    path.display()
                );
                status = ExitCode::FAILURE;
            }
            Ok(None) => return status,
            Err(e) => {
                eprintln!("mq-cat: {}: {}", group.display(), sys::strerror(&e));
                return ExitCode::FAILURE;
            }
        }
    }
}
