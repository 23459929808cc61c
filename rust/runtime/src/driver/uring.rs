//! The io_uring backend of [`super::Driver`]: operations are submission entries; the kernel
//! does them and reports completions.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring, Probe};
use slab::Slab;

use super::{Completion, ErasedOp, Op, OpId};
use crate::waker::Waker;

/// user_data of the waker's poll; never a slab id (slab ids have a generation below 2^31).
const WAKE_TAG: u64 = u64::MAX;
/// user_data of cancel requests, whose own completions carry nothing we need.
const CANCEL_TAG: u64 = u64::MAX - 1;
/// user_data of the timeout that ends a wait at the earliest timer's deadline.
const TIMER_TAG: u64 = u64::MAX - 2;

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
pub(crate) struct UringDriver {
    ring: IoUring,
    ops: Slab<Slot>,
    next_generation: u32,
    waker: Arc<Waker>,
    waker_armed: bool,
    /// When the timeout op in flight fires, if one is: waits for a later deadline need no
    /// timeout of their own (a timeout per wait costs the kernel a timer each time, and a
    /// server waits once per request).
    timer_armed: Option<Instant>,
    /// The timeout op's duration (the kernel copies it at submission; kept here all the same).
    timer_ts: Box<types::Timespec>,
}

impl UringDriver {
    /// Sets up a ring with room for `entries` submissions at a time, if the kernel offers
    /// io_uring with every opcode the ops use.
    pub(crate) fn new(entries: u32) -> io::Result<Self> {
        // Cooperative task running (Linux 5.19+): a completion that arrives while the thread
        // runs Ruby code no longer interrupts it (an IPI, then a trip through the kernel); it
        // waits for the thread's next system call, and IORING_SQ_TASKRUN tells `wait` to make
        // one. With `bench/http.sh`'s keep-alive load that cut the system time per request by
        // about a tenth. Older kernels refuse the flags: a plain ring then.
        let ring = IoUring::builder()
            .setup_clamp()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .build(entries)
            .or_else(|err| match err.raw_os_error() {
                Some(libc::EINVAL) => IoUring::builder().setup_clamp().build(entries),
                _ => Err(err),
            })?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        let needed = [
            opcode::Read::CODE,
            opcode::Write::CODE,
            opcode::Accept::CODE,
            opcode::PollAdd::CODE,
            opcode::AsyncCancel::CODE,
            opcode::Timeout::CODE,
        ];
        if let Some(missing) = needed.iter().find(|code| !probe.is_supported(**code)) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("io_uring lacks opcode {missing}"),
            ));
        }
        Ok(Self {
            ring,
            ops: Slab::new(),
            next_generation: 0,
            waker: Arc::new(Waker::new()?),
            waker_armed: false,
            timer_armed: None,
            timer_ts: Box::new(types::Timespec::new()),
        })
    }

    /// A handle that ends the current or next [`Driver::wait`] from any thread.
    pub(crate) fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    /// How many operations the driver holds, taken-not-yet and orphaned included.
    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    /// Submits `op` (queued; the kernel sees it at the next [`Driver::wait`]).
    pub(crate) fn submit<O: Op>(&mut self, op: O) -> io::Result<OpId> {
        // Box first: the entry's pointers must point into the op where it will stay.
        let (id, entry) = self.insert(Box::new(op));
        if let Err(err) = self.push(entry.user_data(id.0)) {
            self.ops.remove(id.slot());
            return Err(err);
        }
        Ok(id)
    }

    pub(crate) fn submit_chain(&mut self, ops: Vec<Box<dyn ErasedOp>>) -> io::Result<Vec<OpId>> {
        // A link must not straddle two submissions: make room for the whole chain first.
        let capacity = self.ring.submission().capacity();
        if ops.len() > capacity {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a chain of {} ops does not fit a ring of {capacity}",
                    ops.len()
                ),
            ));
        }
        while capacity - self.ring.submission().len() < ops.len() {
            self.ring.submit()?;
        }
        let last = ops.len() - 1;
        let mut ids = Vec::with_capacity(ops.len());
        for (i, op) in ops.into_iter().enumerate() {
            let (id, entry) = self.insert(op);
            let mut entry = entry.user_data(id.0);
            if i < last {
                entry = entry.flags(squeue::Flags::IO_LINK);
            }
            self.push(entry)?;
            ids.push(id);
        }
        Ok(ids)
    }

    /// Stores `op` in flight; returns its id and its submission entry. The op is boxed first:
    /// the entry's pointers must point into the op where it will stay.
    fn insert(&mut self, mut op: Box<dyn ErasedOp>) -> (OpId, squeue::Entry) {
        let entry = op.entry();
        self.next_generation = (self.next_generation + 1) & 0x7fff_ffff;
        let generation = self.next_generation;
        let slot = self.ops.insert(Slot {
            generation,
            state: State::InFlight,
            op,
        });
        (OpId(((generation as u64) << 32) | slot as u64), entry)
    }

    /// The completion of `id` if it has arrived and has not been taken.
    pub(crate) fn completion(&self, id: OpId) -> Option<Completion> {
        match self.slot(id)?.state {
            State::Done(completion) => Some(completion),
            _ => None,
        }
    }

    /// Hands back a completed operation's output, or `None` if it is not complete (or `id` is
    /// stale, or names an operation of another type).
    pub(crate) fn take<O: Op>(&mut self, id: OpId) -> Option<O::Output> {
        let completion = self.completion(id)?;
        if !self.slot(id)?.op.as_any().is::<O>() {
            return None;
        }
        let slot = self.ops.remove(id.slot());
        let op = slot.op.into_any().downcast::<O>().ok()?;
        Some(op.complete(completion))
    }

    /// Gives `id` up: see the module's contract, point 4.
    pub(crate) fn interrupt(&mut self, id: OpId) -> io::Result<()> {
        if !matches!(self.slot_mut(id).map(|s| &s.state), Some(State::InFlight)) {
            return Ok(());
        }
        // The op stays in flight: its own completion (ECANCELED, or what it did first) is
        // reported as any other.
        self.push(opcode::AsyncCancel::new(id.0).build().user_data(CANCEL_TAG))?;
        self.ring.submit().map(drop)
    }

    pub(crate) fn cancel(&mut self, id: OpId) -> io::Result<()> {
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
                self.push(opcode::AsyncCancel::new(id.0).build().user_data(CANCEL_TAG))?;
                // At once, not at the next wait: an op in flight holds its file open, so a
                // socket closed after a timed-out read would not be closed (no FIN) while
                // the thread does something else, such as block.
                self.ring.submit().map(drop)
            }
            State::Orphaned => Ok(()),
        }
    }

    /// Submits what is queued, waits as the contract says (`Some(Duration::ZERO)`: do not block)
    /// and calls `on_complete` for each operation that completed.
    pub(crate) fn wait(
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
            // Nothing to submit, no completion waiting for the thread to enter the kernel, and
            // not allowed to block: reading the queue needs no syscall.
            Some(d)
                if d.is_zero()
                    && self.ring.submission().is_empty()
                    && !self.ring.submission().taskrun() =>
            {
                Ok(0)
            }
            // `submit` enters with GETEVENTS when IORING_SQ_TASKRUN is set.
            Some(d) if d.is_zero() => self.ring.submit(),
            Some(d) if self.ring.completion().is_empty() => {
                let deadline = Instant::now() + d;
                // A timeout in flight that fires no later than this deadline wakes us in time
                // (perhaps early: the caller then looks at its clock and waits again).
                if self.timer_armed.is_none_or(|armed| armed > deadline) {
                    *self.timer_ts = types::Timespec::from(d);
                    let timeout = opcode::Timeout::new(&*self.timer_ts)
                        .build()
                        .user_data(TIMER_TAG);
                    self.push(timeout)?;
                    self.timer_armed = Some(deadline);
                }
                self.ring.submit_and_wait(1)
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
    pub(crate) fn abandon(mut self) {
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
                // The next wait arms another if a timer is still pending (a timeout that
                // fires early, for a deadline since moved, costs one spare wake-up).
                TIMER_TAG => self.timer_armed = None,
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

impl Drop for UringDriver {
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
