//! `mq-pin`: detachable program sessions kept in mqfs groups (see mq-pin(1),
//! `mqfs::tools::pin`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Parser};

use mqfs::tools::pin::{self, Create, Failure, State};
use mqfs::tools::{sys, term};

#[derive(Parser)]
#[command(
    name = "mq-pin",
    version,
    about = "Keep programs running in sessions that viewers attach to and detach from",
    override_usage = "mq-pin [-m DIR] [--no-pty] -c NAME [COMMAND [ARG...]]\n       \
                      mq-pin [-m DIR] [-e KEY] -a NAME\n       \
                      mq-pin [-m DIR] [--no-pty] [-e KEY] NAME [COMMAND [ARG...]]\n       \
                      mq-pin [-m DIR] -w NAME [TEXT...]\n       \
                      mq-pin [-m DIR] -l\n       \
                      mq-pin [-m DIR] -k NAME\n       \
                      mq-pin --completions SHELL",
    after_help = "A session is a group of an mqfs mount (streams 0: input, 1: output, 2: errors, \
                  note: requests, status). Ctrl-\\ detaches a viewer (-e to change). Sessions live \
                  in -m DIR, else $MQ_PIN_DIR, else $XDG_RUNTIME_DIR/mq-pin, else \
                  /run/user/UID/mq-pin if /run/user/UID exists, else /tmp/mq-pin-UID; mq-pin \
                  mounts mqfs there if nothing is mounted, and unmounts it when -k removes the \
                  last session.\n\nExamples:\n  \
                  mq-pin -c shell              # start your shell in session \"shell\", detached\n  \
                  mq-pin -a shell              # attach (from as many terminals as you like)\n  \
                  mq-pin shell                 # attach, creating the session first if needed\n  \
                  mq-pin -w shell 'make test'  # type a line into it\n  \
                  mq-pin -l                    # list sessions",
    group(ArgGroup::new("mode").args(["create", "attach", "write", "list", "kill", "supervise"]))
)]
struct Args {
    /// Create session NAME running COMMAND (default: your shell), detached
    #[arg(short = 'c', value_name = "NAME")]
    create: Option<OsString>,
    /// Attach to session NAME: its history, then live; what you type goes to the program
    #[arg(short = 'a', value_name = "NAME")]
    attach: Option<OsString>,
    /// Write TEXT and a newline (or standard input) to the program's input
    #[arg(short = 'w', value_name = "NAME")]
    write: Option<OsString>,
    /// List sessions: NAME, then running PID, exited STATUS, or lost
    #[arg(short = 'l')]
    list: bool,
    /// End the program of session NAME (hangup, then kill) and remove the session
    #[arg(short = 'k', value_name = "NAME")]
    kill: Option<OsString>,
    /// Where sessions live (an mqfs mount point; mounted if nothing is)
    #[arg(short = 'm', value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Run the program with plain files, not on a pseudo-terminal
    #[arg(long = "no-pty")]
    no_pty: bool,
    /// The detach key: ^X for a control key, or none
    #[arg(short = 'e', value_name = "KEY", default_value = "^\\")]
    escape: String,
    /// Print a completion script for SHELL (bash, zsh, fish, ...) and exit
    #[arg(long, value_name = "SHELL", exclusive = true)]
    completions: Option<clap_complete::Shell>,
    #[arg(long, hide = true, value_name = "NAME")]
    supervise: Option<OsString>,
    #[arg(long, hide = true, default_value_t = 24)]
    rows: u16,
    #[arg(long, hide = true, default_value_t = 80)]
    cols: u16,
    /// COMMAND and its arguments (-c, or NAME), or TEXT (-w)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    args: Vec<OsString>,
}

fn usage(message: &str) -> ExitCode {
    eprintln!("mq-pin: {message}\nTry 'mq-pin --help' for more information.");
    ExitCode::from(2)
}

fn fail(f: Failure) -> ExitCode {
    eprintln!("mq-pin: {}", f.message);
    ExitCode::from(f.status)
}

fn main() -> ExitCode {
    let args: Args = mqfs::completions::parse_or_print(|args: &Args| args.completions);
    let dir = args.dir.clone().unwrap_or_else(pin::default_dir);
    if let Some(name) = &args.supervise {
        return ExitCode::from(pin::supervise(&dir, name, &args.args, !args.no_pty, args.rows, args.cols));
    }
    // SIGPIPE stays ignored (as Rust sets it): a viewer whose output goes away must still
    // put its terminal back, so it sees EPIPE and ends normally.
    let key = match term::parse_key(&args.escape) {
        Ok(key) => key,
        Err(e) => return usage(&e),
    };
    let no_args =
        |what: &str| (!args.args.is_empty()).then(|| usage(&format!("{what} takes no other arguments")));
    if args.list {
        if let Some(code) = no_args("-l") {
            return code;
        }
        return match pin::list(&dir) {
            Ok(lines) => {
                let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
                match sys::write_all(std::io::stdout(), text.as_bytes()) {
                    Err(e) if !sys::is(&e, libc::EPIPE) => {
                        eprintln!("mq-pin: write error: {}", sys::strerror(&e));
                        ExitCode::FAILURE
                    }
                    _ => ExitCode::SUCCESS,
                }
            }
            Err(f) => fail(f),
        };
    }
    if let Some(name) = &args.kill {
        if let Some(code) = no_args("-k") {
            return code;
        }
        return pin::kill(&dir, name).map_or_else(fail, |()| ExitCode::SUCCESS);
    }
    if let Some(name) = &args.write {
        return pin::write(&dir, name, &args.args).map_or_else(fail, |()| ExitCode::SUCCESS);
    }
    if let Some(name) = &args.attach {
        if let Some(code) = no_args("-a") {
            return code;
        }
        return pin::attach(&dir, name, key).map_or_else(fail, ExitCode::from);
    }
    let create = |name: &OsString, command: &[OsString]| {
        pin::create(&Create {
            dir: dir.clone(),
            name: name.clone(),
            command: command.to_vec(),
            pty: !args.no_pty,
        })
    };
    if let Some(name) = &args.create {
        return create(name, &args.args).map_or_else(fail, |()| ExitCode::SUCCESS);
    }
    // mq-pin NAME [COMMAND...]: attach, creating the session first unless its program runs.
    let Some((name, command)) = args.args.split_first() else {
        return usage("which session? (-c NAME, -a NAME, NAME, -w NAME, -l or -k NAME)");
    };
    if let Err(f) = pin::check_name(name) {
        return fail(f);
    }
    let running = pin::is_mounted(&dir)
        && matches!(pin::state(&dir.join(name)), Ok(State::Running { .. } | State::Starting));
    if !running && let Err(f) = create(name, command) {
        return fail(f);
    }
    pin::attach(&dir, name, key).map_or_else(fail, ExitCode::from)
}
