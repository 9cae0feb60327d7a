//! mqfs: message streams as files. A directory is a group of streams, a file is a stream,
//! every write is a message fanned out to every reader.
//!
//! The library's layers: `engine` holds the semantics and knows nothing of FUSE; `fuse` maps
//! kernel requests onto it; `tools` is the library side of `mq-cat`, `mq-pin`, `mq-stamp`, `mq-call`,
//! `mq-serve` and `mqfs-stat`. Beside them, `ioctl` (the stamp ioctl's number and layout, which the
//! glue answers and `mq-stamp` asks), `logger` (where log lines go; the FUSE glue taps it), `mountinfo` (the mount table) and//! `completions` (the commands' shell completion scripts). The commands are in `src/bin/`: `mqfs/` (parse, check, mount,
//! daemonize, serve), `mq-cat.rs`, `mq-pin.rs`, `mq-stamp.rs`, `mq-call.rs`, `mq-serve.rs`, `mqfs-stat.rs`.

pub mod completions;
pub mod engine;
pub mod fuse;
pub mod ioctl;
pub mod logger;
pub mod mountinfo;
pub mod nats;
pub mod storage;
pub mod tools;
