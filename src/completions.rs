//! Shell completion scripts (`--completions SHELL`) of the commands mqfs ships — `mqfs`,
//! `mq-cat`, `mq-pin`, `mq-stamp`, `mq-call`, `mq-serve`, `mqfs-stat` — generated from their clap
//! definitions, so they never go stale.
use clap::Command;
use clap_complete::Shell;

/// The completion script for `shell` of the command `command` defines.
pub fn script(shell: Shell, mut command: Command) -> String {
    let name = command.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut out);
    String::from_utf8(out).expect("completion scripts are text")
}
