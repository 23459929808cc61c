//! An eventfd that ends a driver's blocking wait from any thread.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Wakes the [`crate::Driver`] it came from. `Send + Sync`; cheap to call from an unblock
/// function or another thread.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub(crate) fn new() -> io::Result<Self> {
        let fd = syscall!(eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK))?;
        // SAFETY: eventfd just returned this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { fd })
    }

    /// Makes the driver's current or next wait return.
    pub fn wake(&self) {
        let one: u64 = 1;
        // A full counter (EAGAIN) already means "wake up"; nothing else can fail here.
        let _ = syscall!(write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8));
    }

    /// Resets the counter after a wake-up has been seen.
    pub(crate) fn drain(&self) {
        let mut count: u64 = 0;
        let _ = syscall!(read(
            self.fd.as_raw_fd(),
            (&mut count as *mut u64).cast(),
            8
        ));
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
