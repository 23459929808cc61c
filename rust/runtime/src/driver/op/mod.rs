//! One kernel operation per file. An op owns what the kernel touches (buffers, descriptors it
//! creates) and says what to do with it when the result arrives, or arrives for nobody.

mod accept;
mod poll;
mod read;
mod write;

use io_uring::squeue;

pub use accept::Accept;
pub use poll::PollAdd;
pub use read::Read;
pub use write::Write;

use super::Completion;

/// A kernel operation and the resources it holds while in flight.
pub trait Op: Send + 'static {
    /// What the owner gets back: usually the result and the buffers.
    type Output;

    /// The submission. Called once the op is boxed in the driver, so pointers into `self`'s
    /// buffers stay valid until the completion arrives.
    fn entry(&mut self) -> squeue::Entry;

    /// Turns the completion into the owner's output.
    fn complete(self, completion: Completion) -> Self::Output;

    /// Releases what the kernel produced for an owner that gave up. Buffers are dropped after.
    fn orphan(self, _completion: Completion)
    where
        Self: Sized,
    {
    }
}
