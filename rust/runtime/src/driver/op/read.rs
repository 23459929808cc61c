use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::{attempt_socket_first, attempt_when_ready, Attempt, Completion, Op};

/// Reads into the spare capacity of a buffer.
pub struct Read {
    fd: RawFd,
    buf: Vec<u8>,
    offset: u64,
}

impl Read {
    /// Reads up to `buf.capacity() - buf.len()` bytes, appended to `buf`. `offset` is a file
    /// position, or `u64::MAX` for the descriptor's current position (pipes, sockets).
    pub fn new(fd: RawFd, buf: Vec<u8>, offset: u64) -> Self {
        Self { fd, buf, offset }
    }
}

impl Op for Read {
    type Output = (io::Result<usize>, Vec<u8>);

    fn entry(&mut self) -> squeue::Entry {
        let spare = self.buf.spare_capacity_mut();
        opcode::Read::new(
            types::Fd(self.fd),
            spare.as_mut_ptr().cast(),
            spare.len() as u32,
        )
        .offset(self.offset)
        .build()
    }

    fn attempt(&mut self) -> Attempt {
        let (fd, offset) = (self.fd, self.offset);
        let spare = self.buf.spare_capacity_mut();
        let (ptr, len) = (spare.as_mut_ptr().cast::<libc::c_void>(), spare.len());
        let read = || {
            // SAFETY: `ptr` points to `len` writable bytes of the buffer's spare capacity.
            unsafe {
                if offset == u64::MAX {
                    libc::read(fd, ptr, len)
                } else {
                    libc::pread(fd, ptr, len, offset as libc::off_t)
                }
            }
        };
        if offset != u64::MAX {
            return attempt_when_ready(fd, libc::POLLIN as u32, read);
        }
        // SAFETY: as above; recv(2) writes at most `len` bytes.
        let recv = || unsafe { libc::recv(fd, ptr, len, libc::MSG_DONTWAIT) };
        attempt_socket_first(fd, libc::POLLIN as u32, recv, read)
    }

    fn complete(mut self, completion: Completion) -> Self::Output {
        let result = completion.io_result().map(|n| n as usize);
        if let Ok(n) = result {
            let len = self.buf.len() + n;
            assert!(
                len <= self.buf.capacity(),
                "kernel reported more bytes than it was given"
            );
            // SAFETY: the kernel initialised `n` bytes of the spare capacity (checked above).
            unsafe { self.buf.set_len(len) };
        }
        (result, self.buf)
    }
}
