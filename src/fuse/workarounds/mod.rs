//! What the glue does because fuser 0.18 or the FUSE protocol does not tell it something it
//! needs. Each file is named for what it works around; the last column says what would let
//! it go.
//!
//! | file | the gap it works around | what it does | could go when |
//! |---|---|---|---|
//! | `interrupts.rs` | fuser 0.18 answers FUSE_INTERRUPT with ENOSYS itself and tells the file system nothing | keeps parked reads and blocked writes by FUSE unique id and caller thread, for the two below to answer with EINTR | fuser passes interrupts on: a registry by unique id stays, the caller threads go |
//! | `dispatch_trace.rs` | the same; and once the kernel gets ENOSYS for a pending request it sends no more interrupts | reads fuser's dispatch log (the logger's tap) and answers an interrupted request before fuser's ENOSYS, so interrupts keep coming | fuser passes interrupts on (with it go `logger::set_tap` and `guard`'s `dispatch_trace::end`) |
//! | `signal_watch.rs` | interrupts lost all the same (fuser's ENOSYS reached a pending request) | a thread that reads the callers' pending signals in `/proc/<tid>/status` and answers a signalled or vanished caller's request | fuser passes interrupts on: the kernel then never stops sending them |
//! | `write_size.rs` | FUSE_WRITE does not say how long the write(2) is that the kernel cut into requests of `max_pages` | a request shorter than `max_pages` is whole; a longer one reads the caller's write system call in `/proc/<tid>/syscall` (a writev's iovecs with `process_vm_readv`) | FUSE_WRITE carries the system call's total (or marks its last request) |
//! | `killed_writer.rs` | FLUSH does not say whether the closing process was killed | reads the exit code in `/proc/<tid>/stat` of a thread that has dropped its memory, for `frame close` to publish nothing | FLUSH says that the close is a killed process's exit |
//! | `proc.rs` | — | what the others read in `/proc`: a thread's state and process from `status`; `ProcPath`, `read_small`, `parse_hex`, `parse_dec` | the last of the others goes |
//!
//! `testing.rs` holds the unit tests' helpers.

pub mod dispatch_trace;
pub mod interrupts;
pub mod killed_writer;
mod proc;
mod signal_watch;
#[cfg(test)]
mod testing;
pub mod write_size;
