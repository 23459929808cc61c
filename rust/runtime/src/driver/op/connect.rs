use std::io;
use std::os::fd::RawFd;

use io_uring::{opcode, squeue, types};

use super::{ready_now, Attempt, Completion, Op};

/// Connects a (non-blocking) socket to an address, which the op owns until it completes.
pub struct Connect {
    fd: RawFd,
    addr: Box<libc::sockaddr_storage>,
    len: libc::socklen_t,
    /// epoll: connect(2) was called and answered EINPROGRESS; what is left is its outcome.
    started: bool,
}

impl Connect {
    /// Connects `fd` to the `len` bytes of address at `addr` (copied).
    ///
    /// # Safety
    /// `addr` must be readable for `len` bytes, at most `size_of::<sockaddr_storage>()`.
    pub unsafe fn new(fd: RawFd, addr: *const libc::sockaddr, len: libc::socklen_t) -> Self {
        // SAFETY: all-zero is a valid sockaddr_storage.
        let mut storage: Box<libc::sockaddr_storage> = Box::new(unsafe { std::mem::zeroed() });
        let len = len.min(std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t);
        // SAFETY: per this function's contract; the destination holds `len` bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                addr.cast::<u8>(),
                (&mut *storage as *mut libc::sockaddr_storage).cast::<u8>(),
                len as usize,
            )
        };
        Self {
            fd,
            addr: storage,
            len,
            started: false,
        }
    }
}

impl Op for Connect {
    type Output = io::Result<()>;

    fn entry(&mut self) -> squeue::Entry {
        let addr = (&*self.addr as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
        opcode::Connect::new(types::Fd(self.fd), addr, self.len).build()
    }

    fn attempt(&mut self) -> Attempt {
        if !self.started {
            self.started = true;
            let addr = (&*self.addr as *const libc::sockaddr_storage).cast::<libc::sockaddr>();
            // SAFETY: `addr` points to `len` bytes the op owns.
            if unsafe { libc::connect(self.fd, addr, self.len) } == 0 {
                return Attempt::Done(0);
            }
            return match io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO)
            {
                libc::EINPROGRESS | libc::EAGAIN | libc::EINTR => Attempt::Wait {
                    fd: self.fd,
                    events: libc::POLLOUT as u32,
                },
                errno => Attempt::Done(-errno),
            };
        }
        match ready_now(self.fd, libc::POLLOUT as u32) {
            0 => Attempt::Wait {
                fd: self.fd,
                events: libc::POLLOUT as u32,
            },
            n if n < 0 => Attempt::Done(n),
            _ => {
                let mut error: libc::c_int = 0;
                let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                // SAFETY: `error` and `len` are writable and sized as SO_ERROR needs.
                let got = unsafe {
                    libc::getsockopt(
                        self.fd,
                        libc::SOL_SOCKET,
                        libc::SO_ERROR,
                        (&mut error as *mut libc::c_int).cast(),
                        &mut len,
                    )
                };
                if got != 0 {
                    return Attempt::Done(
                        -io::Error::last_os_error()
                            .raw_os_error()
                            .unwrap_or(libc::EIO),
                    );
                }
                Attempt::Done(-error)
            }
        }
    }

    fn complete(self, completion: Completion) -> Self::Output {
        completion.io_result().map(drop)
    }
}
