use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::{Completion, Op};

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

    fn complete(self, completion: Completion) -> Self::Output {
        (completion.io_result().map(|n| n as usize), self.buf)
    }
}
