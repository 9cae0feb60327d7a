//! `mq-call [-t SECONDS] STREAM [REQUEST...]`: send a request on a stream of a `deliver one`
//! group and print its reply (see mq-call(1), `mqfs::tools::rpc::call`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use mqfs::tools::rpc::call;
use mqfs::tools::sys;

#[derive(Parser)]
#[command(
    name = "mq-call",
    version,
    about = "Send a request through an mqfs stream and print the reply",
    override_usage = "mq-call [-t SECONDS] STREAM [REQUEST...]\n       mq-call --completions SHELL",
    long_about = "Open STREAM (a stream of a `deliver one` group of a mounted mqfs, created if \
                  missing) for reading and writing, write the request as one message (the \
                  REQUEST arguments joined by spaces and a newline, or all of standard input), \
                  then read one message from the same descriptor, the reply, and print it. \
                  Servers (mq-serve) read requests from the same stream and write each reply on \
                  the descriptor the request came from, which mqfs hands to this caller only.",
    after_help = "Examples:\n  mq-call /n/mq/svc/time now        # request \"now\\n\", print the reply\n  \
                  date | mq-call -t 5 /n/mq/svc/log  # the request from standard input, 5 s at most\n\n\
                  Exit status: 0 once the reply is printed, 1 on errors, 2 on usage errors, 124 \
                  if -t passed without a reply."
)]
struct Args {
    /// Give up after SECONDS (a decimal number) without a reply: say so, exit 124
    #[arg(short = 't', long = "timeout", value_name = "SECONDS", value_parser = parse_seconds)]
    timeout: Option<Duration>,
    /// Print a completion script for SHELL (bash, zsh, fish, ...) and exit
    #[arg(long, value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,
    /// The service's stream
    #[arg(required_unless_present = "completions")]
    stream: Option<PathBuf>,
    /// The request's words (default: standard input)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    request: Vec<OsString>,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds > 0.0 && seconds.is_finite() => Ok(Duration::from_secs_f64(seconds)),
        _ => Err(format!("{text:?} is not a positive number of seconds")),
    }
}

fn main() -> ExitCode {
    sys::default_sigpipe();
    let args: Args = mqfs::completions::parse_or_print(|args: &Args| args.completions);
    let stream = args.stream.clone().expect("clap requires STREAM");
    let outcome = call::request(&args.request).and_then(|request| {
        if let Some(limit) = args.timeout {
            call::give_up_after(limit, &stream);
        }
        call::call(&stream, &request)
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("mq-call: {}", failure.message);
            ExitCode::from(failure.status)
        }
    }
}
