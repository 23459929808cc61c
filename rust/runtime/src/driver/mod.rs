//! The kernel-facing half of the runtime.
//!
//! # The contract every backend meets
//!
//! 1. [`Driver::submit`] takes an operation by value. From then on the operation (its buffers,
//!    its file descriptors) belongs to the driver until the kernel reports its completion.
//! 2. [`Driver::wait`] blocks at most until the timeout, until an operation completes, or until
//!    the [`Waker`] is woken, and reports the ids of completed operations. It never touches the
//!    caller's language runtime, so it may run with Ruby's GVL released.
//! 3. [`Driver::take`] hands a completed operation's result and buffers back, once.
//! 4. [`Driver::cancel`] gives an operation up. If the kernel still holds it, a cancel request is
//!    submitted and the operation stays parked in the driver until its final completion arrives;
//!    then [`Op::orphan`] releases what the kernel produced (an accepted descriptor is closed).
//!    Buffers are never freed while the kernel may still write to them.
//! 5. [`Driver::interrupt`] asks for an operation to end early without giving it up: it
//!    completes as usual, with `-ECANCELED` unless it completed first, in which case its result
//!    stands (a read's bytes are not lost).
//!
//! Two backends meet it: io_uring ([`Kind::IoUring`]), where the kernel does the operations,
//! and epoll ([`Kind::Epoll`]), where the driver does them with non-blocking system calls when
//! epoll says their descriptor is ready. With epoll nothing is ever in the kernel's hands, so a
//! cancelled operation is released at once.

mod epoll;
pub mod op;
mod uring;

use std::any::Any;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use io_uring::squeue;

use crate::waker::Waker;
use op::{Attempt, Op};

/// Identifies a submitted operation until it is taken or cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpId(u64);

impl OpId {
    /// The id as one integer, for callers that hand it to another language.
    pub fn to_bits(self) -> u64 {
        self.0
    }

    /// Rebuilds an id made by [`OpId::to_bits`].
    pub fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    fn slot(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }
}

/// What the kernel reported for one operation.
#[derive(Clone, Copy, Debug)]
pub struct Completion {
    /// The raw result: a count or descriptor when non-negative, `-errno` otherwise.
    pub result: i32,
    /// The CQE flags (`IORING_CQE_F_*`).
    pub flags: u32,
}

impl Completion {
    /// The result as `io::Result`.
    pub fn io_result(&self) -> io::Result<u32> {
        if self.result < 0 {
            Err(io::Error::from_raw_os_error(-self.result))
        } else {
            Ok(self.result as u32)
        }
    }
}

/// Which kernel interface a [`Driver`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// io_uring: the kernel performs the operations.
    IoUring,
    /// epoll: the driver performs them when their descriptors are ready.
    Epoll,
}

impl Kind {
    /// `"io_uring"` or `"epoll"`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::IoUring => "io_uring",
            Kind::Epoll => "epoll",
        }
    }
}

/// Operations that run in order, each only after the one before it succeeded: io_uring links
/// them in one submission; epoll starts each when the one before completes. When one fails
/// (or, on io_uring, a read or write comes up short), the rest complete with `-ECANCELED`.
#[derive(Default)]
pub struct Chain {
    ops: Vec<Box<dyn ErasedOp>>,
}

impl Chain {
    /// An empty chain.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `op`.
    pub fn push<O: Op>(&mut self, op: O) -> &mut Self {
        self.ops.push(Box::new(op));
        self
    }

    /// How many ops the chain holds.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the chain holds no op.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

enum Inner {
    Uring(uring::UringDriver),
    Epoll(epoll::EpollDriver),
}

/// Submits operations to the kernel and reports their completions; see the module docs.
pub struct Driver(Inner);

macro_rules! delegate {
    ($self:ident, $d:ident => $e:expr) => {
        match &$self.0 {
            Inner::Uring($d) => $e,
            Inner::Epoll($d) => $e,
        }
    };
    (mut $self:ident, $d:ident => $e:expr) => {
        match &mut $self.0 {
            Inner::Uring($d) => $e,
            Inner::Epoll($d) => $e,
        }
    };
}

impl Driver {
    /// io_uring if the kernel offers it (with every opcode the ops use), else epoll.
    /// `entries`: io_uring's submission queue size.
    pub fn new(entries: u32) -> io::Result<Self> {
        Self::with_kind(Kind::IoUring, entries).or_else(|_| Self::with_kind(Kind::Epoll, entries))
    }

    /// A driver of the given kind, or the reason it cannot be had.
    pub fn with_kind(kind: Kind, entries: u32) -> io::Result<Self> {
        Ok(Driver(match kind {
            Kind::IoUring => Inner::Uring(uring::UringDriver::new(entries)?),
            Kind::Epoll => Inner::Epoll(epoll::EpollDriver::new()?),
        }))
    }

    /// The kernel interface in use.
    pub fn kind(&self) -> Kind {
        match self.0 {
            Inner::Uring(_) => Kind::IoUring,
            Inner::Epoll(_) => Kind::Epoll,
        }
    }

    /// A handle that ends the current or next [`Driver::wait`] from any thread.
    pub fn waker(&self) -> Arc<Waker> {
        delegate!(self, d => d.waker())
    }

    /// How many operations the driver holds, taken-not-yet and orphaned included.
    pub fn len(&self) -> usize {
        delegate!(self, d => d.len())
    }

    /// Whether the driver holds no operation.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Submits `op` (started at the next [`Driver::wait`]).
    pub fn submit<O: Op>(&mut self, op: O) -> io::Result<OpId> {
        delegate!(mut self, d => d.submit(op))
    }

    /// Submits `chain`; returns the ids of its ops, in order.
    pub fn submit_chain(&mut self, chain: Chain) -> io::Result<Vec<OpId>> {
        if chain.is_empty() {
            return Ok(Vec::new());
        }
        delegate!(mut self, d => d.submit_chain(chain.ops))
    }

    /// The completion of `id` if it has arrived and has not been taken.
    pub fn completion(&self, id: OpId) -> Option<Completion> {
        delegate!(self, d => d.completion(id))
    }

    /// Hands back a completed operation's output, or `None` if it is not complete (or `id` is
    /// stale, or names an operation of another type).
    pub fn take<O: Op>(&mut self, id: OpId) -> Option<O::Output> {
        delegate!(mut self, d => d.take::<O>(id))
    }

    /// Ends `id` early, losing nothing: see the module's contract, point 5. An operation that
    /// is done, unknown, or waiting in a chain is left as it is.
    pub fn interrupt(&mut self, id: OpId) -> io::Result<()> {
        delegate!(mut self, d => d.interrupt(id))
    }

    /// Gives `id` up: see the module's contract, point 4.
    pub fn cancel(&mut self, id: OpId) -> io::Result<()> {
        delegate!(mut self, d => d.cancel(id))
    }

    /// Starts what was submitted, waits as the contract says (`Some(Duration::ZERO)`: do not
    /// block) and calls `on_complete` for each operation that completed.
    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
        on_complete: impl FnMut(OpId),
    ) -> io::Result<()> {
        delegate!(mut self, d => d.wait(timeout, on_complete))
    }

    /// Lets go of everything without telling the kernel: for a child process after `fork`,
    /// whose inherited ring or epoll set is still the parent's.
    pub fn abandon(self) {
        match self.0 {
            Inner::Uring(d) => d.abandon(),
            Inner::Epoll(d) => d.abandon(),
        }
    }
}

/// An [`Op`] with its type erased, as the slab stores it.
pub(crate) trait ErasedOp: Send {
    fn entry(&mut self) -> squeue::Entry;
    fn attempt(&mut self) -> Attempt;
    fn expected(&self) -> Option<usize>;
    fn orphan(self: Box<Self>, completion: Completion);
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<O: Op> ErasedOp for O {
    fn entry(&mut self) -> squeue::Entry {
        Op::entry(self)
    }

    fn attempt(&mut self) -> Attempt {
        Op::attempt(self)
    }

    fn expected(&self) -> Option<usize> {
        Op::expected(self)
    }

    fn orphan(self: Box<Self>, completion: Completion) {
        Op::orphan(*self, completion)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }
}
