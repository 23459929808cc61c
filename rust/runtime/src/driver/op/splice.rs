use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::{ready_now, Attempt, Completion, Op};

/// Moves up to `len` bytes from `fd_in` to `fd_out` inside the kernel (`splice(2)`: one of the
/// two must be a pipe), or duplicates them from one pipe to another without consuming them
/// (`tee(2)`). Reports the byte count, 0 at end of input.
pub struct Splice {
    fd_in: RawFd,
    fd_out: RawFd,
    len: u32,
    tee: bool,
}

impl Splice {
    /// `splice(2)` of up to `len` bytes.
    pub fn new(fd_in: RawFd, fd_out: RawFd, len: u32) -> Self {
        Self {
            fd_in,
            fd_out,
            len,
            tee: false,
        }
    }

    /// `tee(2)` of up to `len` bytes: both descriptors are pipes.
    pub fn tee(fd_in: RawFd, fd_out: RawFd, len: u32) -> Self {
        Self {
            fd_in,
            fd_out,
            len,
            tee: true,
        }
    }
}

impl Op for Splice {
    type Output = io::Result<usize>;

    fn entry(&mut self) -> squeue::Entry {
        let (fd_in, fd_out) = (types::Fd(self.fd_in), types::Fd(self.fd_out));
        if self.tee {
            opcode::Tee::new(fd_in, fd_out, self.len).build()
        } else {
            opcode::Splice::new(fd_in, -1, fd_out, -1, self.len).build()
        }
    }

    fn attempt(&mut self) -> Attempt {
        // Both ends must be ready: the input readable, the output writable.
        for (fd, events) in [(self.fd_out, libc::POLLOUT), (self.fd_in, libc::POLLIN)] {
            match ready_now(fd, events as u32) {
                0 => {
                    return Attempt::Wait {
                        fd,
                        events: events as u32,
                    }
                }
                n if n < 0 => return Attempt::Done(n),
                _ => {}
            }
        }
        loop {
            let flags = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;
            let len = self.len as usize;
            // SAFETY: plain descriptors and NULL offsets (no buffer of ours is involved).
            let n = unsafe {
                if self.tee {
                    libc::tee(self.fd_in, self.fd_out, len, flags)
                } else {
                    let null = std::ptr::null_mut();
                    libc::splice(self.fd_in, null, self.fd_out, null, len, flags)
                }
            };
            if n >= 0 {
                return Attempt::Done(i32::try_from(n).unwrap_or(i32::MAX));
            }
            match io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO)
            {
                libc::EINTR => continue,
                libc::EAGAIN => {
                    return Attempt::Wait {
                        fd: self.fd_in,
                        events: libc::POLLIN as u32,
                    }
                }
                errno => return Attempt::Done(-errno),
            }
        }
    }

    fn complete(self, completion: Completion) -> Self::Output {
        completion.io_result().map(|n| n as usize)
    }
}
