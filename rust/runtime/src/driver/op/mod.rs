//! One kernel operation per file. An op owns what the kernel touches (buffers, descriptors it
//! creates) and says what to do with it when the result arrives, or arrives for nobody. Each op
//! can be run both ways: as an io_uring submission ([`Op::entry`]) and as a non-blocking system
//! call retried when epoll reports readiness ([`Op::attempt`]).

mod accept;
mod connect;
mod poll;
mod read;
mod splice;
mod write;

use std::os::fd::RawFd;

use io_uring::squeue;

pub use accept::Accept;
pub use connect::Connect;
pub use poll::PollAdd;
pub use read::Read;
pub use splice::Splice;
pub use write::Write;

use super::Completion;

/// A kernel operation and the resources it holds while in flight.
pub trait Op: Send + 'static {
    /// What the owner gets back: usually the result and the buffers.
    type Output;

    /// The submission. Called once the op is boxed in the driver, so pointers into `self`'s
    /// buffers stay valid until the completion arrives.
    fn entry(&mut self) -> squeue::Entry;

    /// Tries the operation now, without blocking (the epoll backend).
    fn attempt(&mut self) -> Attempt;

    /// The result that counts as complete, for an op that can come up short (a write: its
    /// length). A chain stops after a short result, as io_uring's links do.
    fn expected(&self) -> Option<usize> {
        None
    }

    /// Turns the completion into the owner's output.
    fn complete(self, completion: Completion) -> Self::Output;

    /// Releases what the kernel produced for an owner that gave up. Buffers are dropped after.
    fn orphan(self, _completion: Completion)
    where
        Self: Sized,
    {
    }
}

/// What an [`Op::attempt`] came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// Finished: a count or descriptor when non-negative, `-errno` otherwise (as io_uring
    /// reports it).
    Done(i32),
    /// Not possible yet: try again when `fd` is ready for `events` (poll bits).
    Wait {
        /// The descriptor to watch.
        fd: RawFd,
        /// `libc::POLLIN`, `libc::POLLOUT`...
        events: u32,
    },
}

/// Whether `fd` is ready for `events` right now: the ready events (0 if none), or `-errno`.
pub(crate) fn ready_now(fd: RawFd, events: u32) -> i32 {
    if fd < 0 {
        return -libc::EBADF; // poll(2) would just ignore it
    }
    let mut pollfd = libc::pollfd {
        fd,
        events: events as i16,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut pollfd, 1, 0) };
        match n {
            0 => return 0,
            // Not an open descriptor: io_uring says EBADF, so do we.
            n if n > 0 && pollfd.revents & libc::POLLNVAL != 0 => return -libc::EBADF,
            n if n > 0 => return i32::from(pollfd.revents as u16),
            _ => {
                let errno = std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO);
                if errno != libc::EINTR {
                    return -errno;
                }
            }
        }
    }
}

/// Like [`attempt_when_ready`], but first with `socket_call` (a `recv`/`send` with
/// MSG_DONTWAIT, which never blocks whatever the descriptor's mode): on a socket, one system
/// call instead of a poll and a call. `socket_call` failing with ENOTSOCK (a pipe, a file)
/// falls back to the poll.
pub(crate) fn attempt_socket_first(
    fd: RawFd,
    events: u32,
    socket_call: impl FnMut() -> isize,
    call: impl FnMut() -> isize,
) -> Attempt {
    match attempt_now(fd, events, socket_call) {
        Attempt::Done(n) if n == -libc::ENOTSOCK => attempt_when_ready(fd, events, call),
        attempt => attempt,
    }
}

/// Runs a non-blocking system call once `fd` is ready for `events`: polling first keeps a
/// descriptor in blocking mode from blocking the thread. `call` returns -1 with errno set on
/// failure; EAGAIN means "wait again".
pub(crate) fn attempt_when_ready(fd: RawFd, events: u32, call: impl FnMut() -> isize) -> Attempt {
    match ready_now(fd, events) {
        0 => Attempt::Wait { fd, events },
        n if n < 0 => Attempt::Done(n),
        _ => attempt_now(fd, events, call),
    }
}

/// Runs `call` (again when a signal interrupts it): its result, or -errno, or Wait on EAGAIN.
fn attempt_now(fd: RawFd, events: u32, mut call: impl FnMut() -> isize) -> Attempt {
    loop {
        let n = call();
        if n >= 0 {
            return Attempt::Done(i32::try_from(n).unwrap_or(i32::MAX));
        }
        match std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO)
        {
            libc::EINTR => continue,
            libc::EAGAIN => return Attempt::Wait { fd, events },
            errno => return Attempt::Done(-errno),
        }
    }
}
