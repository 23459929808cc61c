use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::{attempt_socket_first, attempt_when_ready, Attempt, Completion, Op};

/// Writes a buffer (once: a short write is reported, not retried).
pub struct Write {
    fd: RawFd,
    buf: Vec<u8>,
    offset: u64,
}

impl Write {
    /// Writes `buf`; `offset` as in [`super::Read::new`].
    pub fn new(fd: RawFd, buf: Vec<u8>, offset: u64) -> Self {
        Self { fd, buf, offset }
    }
}

impl Op for Write {
    type Output = (io::Result<usize>, Vec<u8>);

    fn entry(&mut self) -> squeue::Entry {
        opcode::Write::new(types::Fd(self.fd), self.buf.as_ptr(), self.buf.len() as u32)
            .offset(self.offset)
            .build()
    }

    fn attempt(&mut self) -> Attempt {
        let (fd, offset) = (self.fd, self.offset);
        let (ptr, len) = (self.buf.as_ptr().cast::<libc::c_void>(), self.buf.len());
        let write = || {
            // SAFETY: `ptr` points to the `len` initialised bytes of the buffer.
            unsafe {
                if offset == u64::MAX {
                    libc::write(fd, ptr, len)
                } else {
                    libc::pwrite(fd, ptr, len, offset as libc::off_t)
                }
            }
        };
        if offset != u64::MAX {
            return attempt_when_ready(fd, libc::POLLOUT as u32, write);
        }
        // MSG_NOSIGNAL: a closed peer is EPIPE, as io_uring's write reports it, not SIGPIPE.
        // SAFETY: as above.
        let send = || unsafe { libc::send(fd, ptr, len, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
        attempt_socket_first(fd, libc::POLLOUT as u32, send, write)
    }

    fn expected(&self) -> Option<usize> {
        Some(self.buf.len())
    }

    fn complete(self, completion: Completion) -> Self::Output {
        (completion.io_result().map(|n| n as usize), self.buf)
    }
}
