//! mqfs: message streams as files. A directory is a group of streams, a file is a stream,
//! every write is a message fanned out to every reader.
//!
//! `engine` holds the semantics and knows nothing of FUSE; `fuse` maps kernel requests onto
//! it; `options` turns mount options into settings; `completions` writes the commands' shell
//! completion scripts; the binary in `main.rs` is the CLI.

pub mod completions;
pub mod engine;
pub mod fuse;
pub mod logger;
pub mod options;
pub mod tools;
