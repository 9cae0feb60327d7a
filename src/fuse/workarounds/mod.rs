//! What mqfs does because fuser 0.18 or the FUSE protocol does not tell it something:
//! interrupts (`interrupts.rs`, `dispatch_trace.rs`), the size of a write(2)
//! (`write_size.rs`), whether a closing writer was killed (`killed_writer.rs`), all reading
//! `/proc` through `proc.rs`.

pub mod dispatch_trace;
pub mod interrupts;
pub mod killed_writer;
mod proc;
mod signal_watch;
#[cfg(test)]
mod testing;
pub mod write_size;
