//! The event-loop engine under Polyphony's fibers: it knows nothing of Ruby or HTTP.
//!
//! - [`Driver`] submits I/O operations to the kernel (io_uring, or epoll where io_uring is
//!   missing or refused) and reports their completions.
//!   Every operation owns its buffers and file descriptors until the kernel is done with them,
//!   also after the caller has given up on it ([`Driver::cancel`]).
//! - [`TimerHeap`] keeps deadlines with O(log n) insert and O(1) cancel, so a sleeping fiber
//!   costs no system call of its own.
//! - [`Waker`] lets another thread (or a signal's unblock function) end a blocking wait.
//!
//! The Ruby binding drives these from one thread per backend; the C ABI will drive them too.
#![warn(missing_docs, unreachable_pub)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

/// Calls a libc function and turns a `-1` return into the thread's `errno` as an error.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        #[allow(unused_unsafe)]
        // SAFETY: callers pass arguments that satisfy the libc function's contract.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

mod driver;
mod timer;
mod waker;

pub use driver::op;
pub use driver::{Chain, Completion, Driver, Kind, OpId};
pub use timer::{TimerHeap, TimerKey};
pub use waker::Waker;
