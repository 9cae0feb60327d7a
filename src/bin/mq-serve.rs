//! `mq-serve [-j N] STREAM -- COMMAND [ARGS...]`: answer the requests of a stream of a
//! `deliver one` group with a command's output (see mq-serve(1), `mqfs::tools::rpc::serve`).

use std::ffi::OsString;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use mqfs::tools::rpc::serve::{self, Serve};

#[derive(Parser)]
#[command(
    name = "mq-serve",
    version,
    about = "Answer requests sent through an mqfs stream with a command's output",
    override_usage = "mq-serve [-j N] STREAM -- COMMAND [ARG...]\n       mq-serve --completions SHELL",
    long_about = "Open STREAM (a stream of a `deliver one` group of a mounted mqfs, created if \
                  missing) for reading and writing, N times, and on each descriptor loop: read \
                  a request, run COMMAND with the request on its standard input, write what it \
                  printed as the reply on that descriptor (an empty line if it printed nothing). \
                  A command that fails or cannot run is logged with the request's number and \
                  its output is still the reply; serving goes on.",
    after_help = "Examples:\n  mq-serve /n/mq/svc/echo -- cat                    # echo each request back\n  \
                  mq-serve -j 4 /n/mq/svc/wc -- sh -c 'wc -c'       # four at once\n\n\
                  SIGINT or SIGTERM: stop reading requests, finish those in progress, exit 0; a \
                  second one abandons them (mqfs hands them to another server).\n\n\
                  Exit status: 0 when stopped, 1 on errors (the stream removed), 2 on usage errors."
)]
struct Args {
    /// Serve N requests at once (N descriptors, N commands)
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value = "1")]
    jobs: NonZeroUsize,
    /// Print a completion script for SHELL (bash, zsh, fish, ...) and exit
    #[arg(long, value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,
    /// The service's stream
    #[arg(required_unless_present = "completions")]
    stream: Option<PathBuf>,
    /// The command run for each request, and its arguments
    #[arg(last = true, required_unless_present = "completions", value_name = "COMMAND")]
    command: Vec<OsString>,
}

fn main() -> ExitCode {
    // SIGPIPE stays ignored (as Rust sets it): a command that does not read its request is
    // no reason to die.
    let args: Args = mqfs::completions::parse_or_print(|args: &Args| args.completions);
    let stream = args.stream.clone().expect("clap requires STREAM");
    match serve::serve(&Serve { stream, workers: args.jobs.get(), command: args.command }) {
        Ok(status) => ExitCode::from(status),
        Err(message) => {
            eprintln!("mq-serve: {message}");
            ExitCode::FAILURE
        }
    }
}
