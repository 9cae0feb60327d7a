//! Shell completion scripts (`--completions SHELL`) of the commands mqfs ships — `mqfs`,
//! `mq-cat`, `mq-pin`, `mq-stamp`, `mq-call`, `mq-serve`, `mqfs-stat` — generated from their clap
//! definitions, so they never go stale.
use std::io::Write;

use clap::{Command, Parser};
use clap_complete::Shell;

/// A tool's arguments as clap parses them; when they ask for a completion script
/// (`completions` reads `--completions SHELL` from them) it is printed instead, and the
/// process exits with status 0.
pub fn parse_or_print<A: Parser>(completions: impl FnOnce(&A) -> Option<Shell>) -> A {
    let args = A::parse();
    if let Some(shell) = completions(&args) {
        print!("{}", script(shell, A::command()));
        // Exiting skips the buffers' destructors: flush what was printed first.
        let _ = std::io::stdout().flush();
        std::process::exit(0);
    }
    args
}

/// The completion script for `shell` of the command `command` defines.
pub fn script(shell: Shell, mut command: Command) -> String {
    let name = command.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut out);
    String::from_utf8(out).expect("completion scripts are text")
}
