use io_uring::{opcode, squeue, types};
use std::io;
use std::os::fd::RawFd;

use super::{ready_now, Attempt, Completion, Op};

/// Waits until a descriptor is ready (one shot).
pub struct PollAdd {
    fd: RawFd,
    events: u32,
}

impl PollAdd {
    /// Waits for any of `events` (`libc::POLLIN`, `libc::POLLOUT` ...).
    pub fn new(fd: RawFd, events: u32) -> Self {
        Self { fd, events }
    }
}

impl Op for PollAdd {
    /// The events that are ready.
    type Output = io::Result<u32>;

    fn entry(&mut self) -> squeue::Entry {
        opcode::PollAdd::new(types::Fd(self.fd), self.events).build()
    }

    fn attempt(&mut self) -> Attempt {
        match ready_now(self.fd, self.events) {
            0 => Attempt::Wait {
                fd: self.fd,
                events: self.events,
            },
            n => Attempt::Done(n),
        }
    }

    fn complete(self, completion: Completion) -> Self::Output {
        completion.io_result()
    }
}
