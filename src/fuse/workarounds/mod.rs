//! What mqfs does because fuser 0.18 or the FUSE protocol does not tell it something:
//! interrupts (`interrupts.rs`, `dispatch_trace.rs`) and what `/proc` says about a caller
//! (`proc.rs`).

pub mod dispatch_trace;
pub mod interrupts;
pub mod proc;
