use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, squeue, types};

use super::{attempt_when_ready, Attempt, Completion, Op};

/// Accepts one connection; the new descriptor is non-blocking and close-on-exec.
pub struct Accept {
    fd: RawFd,
}

impl Accept {
    /// Accepts on the listening socket `fd`.
    pub fn new(fd: RawFd) -> Self {
        Self { fd }
    }
}

impl Op for Accept {
    type Output = io::Result<OwnedFd>;

    fn entry(&mut self) -> squeue::Entry {
        opcode::Accept::new(
            types::Fd(self.fd),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
        .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
        .build()
    }

    fn attempt(&mut self) -> Attempt {
        let fd = self.fd;
        attempt_when_ready(fd, libc::POLLIN as u32, || {
            let flags = libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
            // SAFETY: NULL address arguments are allowed; the new descriptor is ours.
            unsafe { libc::accept4(fd, std::ptr::null_mut(), std::ptr::null_mut(), flags) as isize }
        })
    }

    fn complete(self, completion: Completion) -> Self::Output {
        // SAFETY: a non-negative accept result is a new descriptor nobody else owns.
        completion
            .io_result()
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
    }

    fn orphan(self, completion: Completion) {
        // Dropping the descriptor closes it: a cancelled accept must not leak a connection.
        drop(self.complete(completion));
    }
}
