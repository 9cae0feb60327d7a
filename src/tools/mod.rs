//! The library side of the extra commands shipped with mqfs: `mq-cat` (read several streams of
//! a group in the order they were written), `mq-pin` (detachable program sessions kept in a
//! group), `mq-stamp` (who wrote the message just read), `mq-call` and `mq-serve`
//! (request/reply through a `deliver one` stream) and `mqfs-stat` (every stream's numbers). The
//! binaries in `src/bin/` only parse their command lines and call into here.
//!
//! `sys` wraps the few system calls they need, `ordered` is the ordered multi-stream reader
//! mq-cat and mq-pin use, `term` holds the terminal and pseudo-terminal helpers, `pin` the
//! session manager, `stamp` what `mq-stamp` prints, `rpc` the client and the server, `stat` the
//! numbers' table.

pub mod ordered;
pub mod pin;
pub mod rpc;
pub mod stamp;
pub mod stat;
pub mod sys;
pub mod term;
