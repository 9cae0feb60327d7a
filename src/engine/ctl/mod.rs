//! A group's `ctl` file: the language it speaks ([`language`]: the commands it accepts, the
//! text it reads as) and how a write is applied to the group and a read rendered from it
//! ([`apply`]).

mod apply;
mod language;

pub use language::{Command, CtlError, Status, error_comment, parse, render, render_config};
