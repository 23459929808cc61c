//! The epoll backend of [`super::Driver`]: an operation is tried with a non-blocking system
//! call; if its descriptor is not ready, the driver watches it with epoll (level-triggered,
//! one registration per descriptor for all the operations waiting on it) and tries again when
//! epoll says it is ready. Nothing is ever in the kernel's hands, so cancelling releases an
//! operation at once.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use slab::Slab;

use super::op::Attempt;
use super::{Completion, ErasedOp, Op, OpId};
use crate::waker::Waker;

/// epoll token of the waker (descriptors are tokens otherwise, and are never this large).
const WAKE_TOKEN: u64 = u64::MAX;

enum State {
    /// Submitted, not tried yet.
    Fresh,
    /// In a chain, waiting for the op before it.
    Held,
    /// Watching `fd` for `events`.
    Waiting {
        fd: RawFd,
        events: u32,
    },
    Done(Completion),
}

struct Slot {
    generation: u32,
    state: State,
    op: Box<dyn ErasedOp>,
}

/// The operations waiting on one descriptor, and what epoll watches it for now.
#[derive(Default)]
struct Interest {
    ops: Vec<OpId>,
    registered: u32,
}

pub(crate) struct EpollDriver {
    epfd: OwnedFd,
    ops: Slab<Slot>,
    next_generation: u32,
    waker: Arc<Waker>,
    fresh: Vec<OpId>,
    interest: HashMap<RawFd, Interest>,
    events: Vec<libc::epoll_event>,
    /// The op that follows each chained op.
    next_in_chain: HashMap<u64, OpId>,
}

impl EpollDriver {
    pub(crate) fn new() -> io::Result<Self> {
        let epfd = syscall!(epoll_create1(libc::EPOLL_CLOEXEC))?;
        // SAFETY: epoll_create1 just returned this descriptor and nothing else owns it.
        let epfd = unsafe { OwnedFd::from_raw_fd(epfd) };
        let waker = Arc::new(Waker::new()?);
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: WAKE_TOKEN,
        };
        syscall!(epoll_ctl(
            epfd.as_raw_fd(),
            libc::EPOLL_CTL_ADD,
            waker.as_raw_fd(),
            &mut event
        ))?;
        Ok(Self {
            epfd,
            ops: Slab::new(),
            next_generation: 0,
            waker,
            fresh: Vec::new(),
            interest: HashMap::new(),
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
            next_in_chain: HashMap::new(),
        })
    }

    pub(crate) fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }

    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    pub(crate) fn submit<O: Op>(&mut self, op: O) -> io::Result<OpId> {
        let id = self.insert(Box::new(op), State::Fresh);
        self.fresh.push(id);
        Ok(id)
    }

    fn insert(&mut self, op: Box<dyn ErasedOp>, state: State) -> OpId {
        self.next_generation = (self.next_generation + 1) & 0x7fff_ffff;
        let generation = self.next_generation;
        let slot = self.ops.insert(Slot {
            generation,
            state,
            op,
        });
        OpId(((generation as u64) << 32) | slot as u64)
    }

    pub(crate) fn submit_chain(&mut self, ops: Vec<Box<dyn ErasedOp>>) -> io::Result<Vec<OpId>> {
        let mut ids: Vec<OpId> = Vec::with_capacity(ops.len());
        for (i, op) in ops.into_iter().enumerate() {
            let id = self.insert(op, if i == 0 { State::Fresh } else { State::Held });
            if let Some(previous) = ids.last() {
                self.next_in_chain.insert(previous.0, id);
            }
            ids.push(id);
        }
        self.fresh.push(ids[0]);
        Ok(ids)
    }

    /// `id` of a chain completed with `result`: start the next op, or, after a failure,
    /// complete the rest with ECANCELED.
    fn advance_chain(&mut self, id: OpId, result: i32, on_complete: &mut impl FnMut(OpId)) {
        let Some(next) = self.next_in_chain.remove(&id.0) else {
            return;
        };
        let expected = self.slot(id).and_then(|s| s.op.expected());
        let short = expected.is_some_and(|e| (result as usize) < e);
        if result >= 0 && !short {
            self.attempt(next, on_complete);
            return;
        }
        let mut cancelled = Some(next);
        while let Some(op) = cancelled {
            if let Some(slot) = self.slot_mut(op) {
                slot.state = State::Done(Completion {
                    result: -libc::ECANCELED,
                    flags: 0,
                });
                on_complete(op);
            }
            cancelled = self.next_in_chain.remove(&op.0);
        }
    }

    pub(crate) fn completion(&self, id: OpId) -> Option<Completion> {
        match self.slot(id)?.state {
            State::Done(completion) => Some(completion),
            _ => None,
        }
    }

    pub(crate) fn take<O: Op>(&mut self, id: OpId) -> Option<O::Output> {
        let completion = self.completion(id)?;
        if !self.slot(id)?.op.as_any().is::<O>() {
            return None;
        }
        let slot = self.ops.remove(id.slot());
        let op = slot.op.into_any().downcast::<O>().ok()?;
        Some(op.complete(completion))
    }

    pub(crate) fn interrupt(&mut self, id: OpId) -> io::Result<()> {
        let Some(slot) = self.slot_mut(id) else {
            return Ok(());
        };
        let canceled = State::Done(Completion {
            result: -libc::ECANCELED,
            flags: 0,
        });
        // Tried once first: io_uring's kernel does a ready operation at once, and the cancel
        // finds it done; here it was not tried yet (a wait tries what was submitted), or not
        // since epoll last said its descriptor was not ready. The op ends here either way,
        // reported by the next wait as the refused ones are.
        let waiting_on = match slot.state {
            State::Fresh => None,
            State::Waiting { fd, .. } => Some(fd),
            State::Held | State::Done(_) => return Ok(()),
        };
        slot.state = match slot.op.attempt() {
            Attempt::Done(result) => State::Done(Completion { result, flags: 0 }),
            Attempt::Wait { .. } => canceled,
        };
        if let Some(fd) = waiting_on {
            if let Some(interest) = self.interest.get_mut(&fd) {
                interest.ops.retain(|o| *o != id);
            }
            self.update(fd);
            self.fresh.push(id);
        }
        Ok(())
    }

    pub(crate) fn cancel(&mut self, id: OpId) -> io::Result<()> {
        let Some(slot) = self.slot(id) else {
            return Ok(());
        };
        match slot.state {
            State::Held => {}
            State::Fresh => self.fresh.retain(|f| *f != id),
            State::Waiting { fd, .. } => {
                if let Some(interest) = self.interest.get_mut(&fd) {
                    interest.ops.retain(|o| *o != id);
                }
                self.update(fd);
            }
            State::Done(_) => {}
        }
        let slot = self.ops.remove(id.slot());
        if let State::Done(completion) = slot.state {
            slot.op.orphan(completion);
        }
        // The rest of its chain goes too.
        if let Some(next) = self.next_in_chain.remove(&id.0) {
            self.cancel(next)?;
        }
        Ok(())
    }

    pub(crate) fn wait(
        &mut self,
        timeout: Option<Duration>,
        mut on_complete: impl FnMut(OpId),
    ) -> io::Result<()> {
        let mut completed = 0;
        for id in std::mem::take(&mut self.fresh) {
            completed += usize::from(self.attempt(id, &mut on_complete));
        }
        let timeout_ms = match timeout {
            _ if completed > 0 => 0,
            None => -1,
            // Rounded up: waking early would spin.
            Some(d) => i32::try_from(d.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
        };
        let capacity = self.events.len() as i32;
        // SAFETY: `events` has room for `capacity` entries.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                self.events.as_mut_ptr(),
                capacity,
                timeout_ms,
            )
        };
        let n = match usize::try_from(n) {
            Ok(n) => n,
            // A signal: the caller looks at its signals and clocks.
            Err(_) if io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) => 0,
            Err(_) => return Err(io::Error::last_os_error()),
        };
        let ready: Vec<(u64, u32)> = self.events[..n].iter().map(|e| (e.u64, e.events)).collect();
        for (token, events) in ready {
            if token == WAKE_TOKEN {
                self.waker.drain();
                continue;
            }
            let fd = token as RawFd;
            let waiting = self
                .interest
                .get(&fd)
                .map(|i| i.ops.clone())
                .unwrap_or_default();
            for id in waiting {
                let wanted = match self.slot(id).map(|s| &s.state) {
                    Some(State::Waiting { events: wanted, .. }) => *wanted,
                    _ => continue,
                };
                let errors = (libc::EPOLLERR | libc::EPOLLHUP) as u32;
                if events & (wanted | errors) != 0 {
                    if let Some(interest) = self.interest.get_mut(&fd) {
                        interest.ops.retain(|o| *o != id);
                    }
                    self.attempt(id, &mut on_complete);
                }
            }
            self.update(fd);
        }
        Ok(())
    }

    /// Lets go of everything without touching the epoll set, which a forked child shares
    /// with its parent.
    pub(crate) fn abandon(mut self) {
        std::mem::forget(std::mem::take(&mut self.ops));
        self.interest.clear();
    }

    /// Tries `id`; returns whether it completed (and was reported).
    fn attempt(&mut self, id: OpId, on_complete: &mut impl FnMut(OpId)) -> bool {
        let Some(slot) = self.slot_mut(id) else {
            return false;
        };
        if let State::Done(completion) = slot.state {
            // Failed by `update` (epoll refused its descriptor): report it now.
            on_complete(id);
            self.advance_chain(id, completion.result, on_complete);
            return true;
        }
        match slot.op.attempt() {
            Attempt::Done(result) => {
                slot.state = State::Done(Completion { result, flags: 0 });
                on_complete(id);
                self.advance_chain(id, result, on_complete);
                true
            }
            Attempt::Wait { fd, events } => {
                slot.state = State::Waiting { fd, events };
                self.interest.entry(fd).or_default().ops.push(id);
                self.update(fd);
                false
            }
        }
    }

    /// Makes epoll watch `fd` for what its waiting operations need (or not at all).
    fn update(&mut self, fd: RawFd) {
        let Some(interest) = self.interest.get(&fd) else {
            return;
        };
        let wanted = interest
            .ops
            .iter()
            .filter_map(|id| match self.slot(*id).map(|s| &s.state) {
                Some(State::Waiting { events, .. }) => Some(*events),
                _ => None,
            })
            .fold(0, |all, e| all | e);
        let registered = interest.registered;
        if wanted == registered {
            if wanted == 0 {
                self.interest.remove(&fd);
            }
            return;
        }
        let epfd = self.epfd.as_raw_fd();
        let ctl = |op| {
            let mut event = libc::epoll_event {
                events: wanted,
                u64: fd as u64,
            };
            syscall!(epoll_ctl(epfd, op, fd, &mut event))
        };
        let result = if wanted == 0 {
            // The descriptor may be closed already (epoll then forgot it): nothing to undo.
            let _ = ctl(libc::EPOLL_CTL_DEL);
            self.interest.remove(&fd);
            return;
        } else if registered == 0 {
            ctl(libc::EPOLL_CTL_ADD).or_else(|e| match e.raw_os_error() {
                Some(libc::EEXIST) => ctl(libc::EPOLL_CTL_MOD),
                _ => Err(e),
            })
        } else {
            // A descriptor closed and reopened under the same number is unknown to epoll.
            ctl(libc::EPOLL_CTL_MOD).or_else(|e| match e.raw_os_error() {
                Some(libc::ENOENT) => ctl(libc::EPOLL_CTL_ADD),
                _ => Err(e),
            })
        };
        match result {
            Ok(_) => {
                if let Some(interest) = self.interest.get_mut(&fd) {
                    interest.registered = wanted;
                }
            }
            Err(err) => {
                // epoll refuses this descriptor (EPERM: a regular file, always ready; EBADF:
                // closed): the waiting operations end with that error.
                let errno = err.raw_os_error().unwrap_or(libc::EIO);
                let ids = self.interest.remove(&fd).map(|i| i.ops).unwrap_or_default();
                for id in ids {
                    if let Some(slot) = self.slot_mut(id) {
                        slot.state = State::Done(Completion {
                            result: -errno,
                            flags: 0,
                        });
                        self.fresh.push(id); // reported at the next wait
                    }
                }
            }
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
