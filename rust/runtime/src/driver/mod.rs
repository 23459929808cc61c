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
//!
//! Today the only backend is io_uring; the epoll backend meets the same contract.

pub mod op;

use std::any::Any;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use slab::Slab;

use crate::waker::Waker;
use op::Op;

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

/// user_data of the waker's poll; never a slab id (slab ids have a generation below 2^31).
const WAKE_TAG: u64 = u64::MAX;
/// user_data of cancel requests, whose own completions carry nothing we need.
const CANCEL_TAG: u64 = u64::MAX - 1;

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

enum State {
    /// Submitted; the kernel owns the op's resources.
    InFlight,
    /// Completed; waiting for the owner to take it.
    Done(Completion),
    /// Given up by its owner; freed when its completion arrives.
    Orphaned,
}

struct Slot {
    generation: u32,
    state: State,
    op: Box<dyn ErasedOp>,
}

/// An io_uring instance and the operations it holds.
pub struct Driver {
    ring: IoUring,
    ops: Slab<Slot>,
    next_generation: u32,
    waker: Arc<Waker>,
    waker_armed: bool,
}

impl Driver {
    /// Sets up a ring with room for `entries` submissions at a time.
    pub fn new(entries: u32) -> io::Result<Self> {
        let ring = IoUring::builder().setup_clamp().build(entries)?;
        Ok(Self {
            ring,
            ops: Slab::new(),
            next_generation: 0,
            waker: Arc::new(Waker::new()?),
            waker_armed: false,
        })
    }

    /// A handle that ends the current or next [`Driver::wait`] from any thread.
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// How many operations the driver holds, taken-not-yet and orphaned included.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the driver holds no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Submits `op` (queued; the kernel sees it at the next [`Driver::wait`]).
    pub fn submit<O: Op>(&mut self, op: O) -> io::Result<OpId> {
        // Box first: the entry's pointers must point into the op where it will stay.
        let mut op: Box<dyn ErasedOp> = Box::new(op);
        let entry = op.entry();
        self.next_generation = (self.next_generation + 1) & 0x7fff_ffff;
        let generation = self.next_generation;
        let slot = self.ops.insert(Slot {
            generation,
            state: State::InFlight,
            op,
        });
        let id = OpId(((generation as u64) << 32) | slot as u64);
        if let Err(err) = self.push(entry.user_data(id.0)) {
            self.ops.remove(slot);
            return Err(err);
        }
        Ok(id)
    }

    /// The completion of `id` if it has arrived and has not been taken.
    pub fn completion(&self, id: OpId) -> Option<Completion> {
        match self.slot(id)?.state {
            State::Done(completion) => Some(completion),
            _ => None,
        }
    }

    /// Hands back a completed operation's output, or `None` if it is not complete (or `id` is
    /// stale, or names an operation of another type).
    pub fn take<O: Op>(&mut self, id: OpId) -> Option<O::Output> {
        let completion = self.completion(id)?;
        if !self.slot(id)?.op.as_any().is::<O>() {
            return None;
        }
        let slot = self.ops.remove(id.slot());
        let op = slot.op.into_any().downcast::<O>().ok()?;
        Some(op.complete(completion))
    }

    /// Gives `id` up: see the module's contract, point 4.
    pub fn cancel(&mut self, id: OpId) -> io::Result<()> {
        let Some(slot) = self.slot_mut(id) else {
            return Ok(());
        };
        match slot.state {
            State::Done(completion) => {
                let slot = self.ops.remove(id.slot());
                slot.op.orphan(completion);
                Ok(())
            }
            State::InFlight => {
                slot.state = State::Orphaned;
                self.push(opcode::AsyncCancel::new(id.0).build().user_data(CANCEL_TAG))
            }
            State::Orphaned => Ok(()),
        }
    }

    /// Submits what is queued, waits as the contract says (`Some(Duration::ZERO)`: do not block)
    /// and calls `on_complete` for each operation that completed.
    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
        mut on_complete: impl FnMut(OpId),
    ) -> io::Result<()> {
        if !self.waker_armed {
            let poll = opcode::PollAdd::new(types::Fd(self.waker.as_raw_fd()), libc::POLLIN as _)
                .multi(true)
                .build()
                .user_data(WAKE_TAG);
            self.push(poll)?;
            self.waker_armed = true;
        }
        let submitted = match timeout {
            // Nothing to submit and not allowed to block: reading the queue needs no syscall.
            Some(d) if d.is_zero() && self.ring.submission().is_empty() => Ok(0),
            Some(d) if d.is_zero() => self.ring.submit(),
            Some(d) if self.ring.completion().is_empty() => {
                let ts = types::Timespec::from(d);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None if self.ring.completion().is_empty() => self.ring.submit_and_wait(1),
            _ => self.ring.submit(),
        };
        match submitted {
            Ok(_) => {}
            Err(err) => match err.raw_os_error() {
                // Timed out, interrupted by a signal, or the completion queue is full: all fine,
                // we reap what is there and the caller looks at its clocks and signals.
                Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY) => {}
                _ => return Err(err),
            },
        }
        self.reap(&mut on_complete);
        Ok(())
    }

    /// Lets go of everything without telling the kernel: for a child process after `fork`,
    /// whose inherited ring is still the parent's. The parent's operations are not ours to cancel.
    pub fn abandon(mut self) {
        std::mem::forget(std::mem::take(&mut self.ops));
    }

    fn reap(&mut self, on_complete: &mut impl FnMut(OpId)) {
        // Collect first: handling a completion may push a new submission.
        let cqes: Vec<cqueue::Entry> = self.ring.completion().collect();
        for cqe in cqes {
            let completion = Completion {
                result: cqe.result(),
                flags: cqe.flags(),
            };
            match cqe.user_data() {
                WAKE_TAG => {
                    self.waker.drain();
                    if !cqueue::more(completion.flags) {
                        self.waker_armed = false;
                    }
                }
                CANCEL_TAG => {}
                bits => {
                    let id = OpId(bits);
                    let Some(slot) = self.slot_mut(id) else {
                        continue;
                    };
                    match slot.state {
                        State::InFlight => {
                            slot.state = State::Done(completion);
                            on_complete(id);
                        }
                        State::Orphaned => {
                            let slot = self.ops.remove(id.slot());
                            slot.op.orphan(completion);
                        }
                        State::Done(_) => {}
                    }
                }
            }
        }
    }

    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry we push points only into an op boxed in `self.ops` (or into
            // nothing), and that box stays there until the entry's completion is reaped.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn slot(&self, id: OpId) -> Option<&Slot> {
        self.ops
            .get(id.slot())
            .filter(|s| s.generation as u64 == id.0 >> 32)
    }

    fn slot_mut(&mut self, id: OpId) -> Option<&mut Slot> {
        self.ops
            .get_mut(id.slot())
            .filter(|s| s.generation as u64 == id.0 >> 32)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Operations still in flight may point into their buffers: cancel them all and wait for
        // the kernel to let go before the buffers are freed.
        let ids: Vec<OpId> = self
            .ops
            .iter()
            .map(|(slot, s)| OpId(((s.generation as u64) << 32) | slot as u64))
            .collect();
        for id in ids {
            let _ = self.cancel(id);
        }
        let mut rounds = 0;
        while self
            .ops
            .iter()
            .any(|(_, s)| matches!(s.state, State::Orphaned))
            && rounds < 1000
        {
            if self.wait(Some(Duration::from_millis(10)), |_| {}).is_err() {
                break;
            }
            rounds += 1;
        }
        // Anything the kernel still holds after that is leaked rather than freed under it.
        for (_, slot) in std::mem::take(&mut self.ops) {
            if matches!(slot.state, State::Orphaned) {
                std::mem::forget(slot);
            }
        }
    }
}

/// An [`Op`] with its type erased, as the slab stores it.
trait ErasedOp: Send {
    fn entry(&mut self) -> squeue::Entry;
    fn orphan(self: Box<Self>, completion: Completion);
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
}

impl<O: Op> ErasedOp for O {
    fn entry(&mut self) -> squeue::Entry {
        Op::entry(self)
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
