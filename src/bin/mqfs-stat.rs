//! `mqfs-stat [PATH...]`: the numbers of every stream of mqfs groups (see mqfs-stat(1),
//! `mqfs::tools::stat`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use mqfs::tools::{stat, sys};

#[derive(Parser)]
#[command(
    name = "mqfs-stat",
    version,
    about = "List mqfs groups and streams with their readers, backlog and queue counts",
    override_usage = "mqfs-stat [PATH...]\n       mqfs-stat --completions SHELL",
    long_about = "For each PATH (a group of a mounted mqfs, with every group below it, or a \
                  stream), and without one for every mqfs mounted, print a table: a line per \
                  stream and one per group (the sums over its own streams) with READERS (open \
                  read descriptors), BACKLOG (messages not yet read: by the slowest reader, or \
                  queued in a `deliver one` stream), INFLIGHT (handed to a reader, not yet \
                  acknowledged), REDELIVERED (deliveries that were redeliveries), DEAD (moved to \
                  NAME.dead), MESSAGES and BYTES (retained). They are the stream's extended \
                  attributes user.mq.readers, user.mq.backlog, user.mq.inflight, \
                  user.mq.redelivered, user.mq.dead, user.mq.messages and user.mq.bytes; a - \
                  stands for one the mounted mqfs does not give.",
    after_help = "Examples:\n  mqfs-stat               # every mqfs mounted\n  \
                  mqfs-stat /n/mq/svc     # one group and those below it\n\n\
                  Exit status: 0, 1 if a PATH (or a stream in it) could not be read, 2 on usage errors."
)]
struct Args {
    /// Print a completion script for SHELL (bash, zsh, fish, ...) and exit
    #[arg(long, value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,
    /// Groups or streams (default: the mount points of every mqfs)
    paths: Vec<PathBuf>,
}

fn main() -> ExitCode {
    sys::default_sigpipe();
    let args: Args = mqfs::completions::parse_or_print(|args: &Args| args.completions);
    let paths = if args.paths.is_empty() {
        match mqfs::mountinfo::read() {
            Ok(mounts) => {
                mounts.into_iter().filter(|m| m.fs_type == "fuse.mqfs").map(|m| m.mount_point).collect()
            }
            Err(e) => {
                eprintln!("mqfs-stat: /proc/self/mountinfo: {}", sys::strerror(&e));
                return ExitCode::FAILURE;
            }
        }
    } else {
        args.paths
    };
    let mut rows = Vec::new();
    let mut status = ExitCode::SUCCESS;
    for path in &paths {
        let (found, problems) = stat::rows(path);
        rows.extend(found);
        for (path, error) in problems {
            eprintln!("mqfs-stat: {}: {}", path.display(), sys::strerror(&error));
            status = ExitCode::FAILURE;
        }
    }
    if let Err(e) = sys::write_all(std::io::stdout(), stat::table(&rows).as_bytes()) {
        eprintln!("mqfs-stat: write error: {}", sys::strerror(&e));
        return ExitCode::FAILURE;
    }
    status
}
