//! The library side of the extra commands shipped with mqfs: `mq-cat` (read several streams of
//! a group in the order they were written), `mq-pin` (detachable program sessions kept in a
//! group) and `mq-stamp` (who wrote the message just read). The binaries in `src/bin/` only parse their command lines and call into here.
//!
//! `sys` wraps the few system calls they need, `ordered` is the ordered multi-stream reader
//! both use, `term` holds the terminal and pseudo-terminal helpers, `pin` the session manager, `stamp`
//! what `mq-stamp` prints.

pub mod ordered;
pub mod pin;
pub mod stamp;
pub mod sys;
pub mod term;
