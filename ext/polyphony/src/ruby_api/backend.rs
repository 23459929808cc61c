//! `Polyphony::Backend`: one per Ruby thread. It owns the run queue of fibers, the timers and
//! the kernel driver, and does every context switch.
//!
//! A fiber that waits calls [`Backend::switch`]: the next runnable fiber gets control through
//! `rb_fiber_transfer`. When no fiber is runnable the backend waits in the kernel with the GVL
//! released until a timer is due, an operation completes or another thread wakes it.
//!
//! A spun fiber is started by a *launcher*: a helper fiber that `resume`s it, because Ruby
//! returns a fiber's stack to its pool the moment a `resume`d fiber ends, whereas a fiber
//! entered by `transfer` keeps its stack until the GC collects the Fiber object. The launched
//! fiber switches by `transfer` like any other; when its block ends, control returns to its
//! launcher, which goes back to the backend's pool of idle launchers and picks the next fiber.
//! (Measured: 100,000 fibers, 10,000 alive at a time, cost 6.2 s with stacks left to the GC.)
//!
//! A fiber started otherwise returns to the thread's root fiber (Ruby's rule for transferred
//! fibers) with [`FIBER_DONE`]; the root fiber, which is always parked in `switch`, then simply
//! picks the next runnable fiber.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use magnus::rb_sys::AsRawValue;
use magnus::typed_data::{DataTypeFunctions, Obj};
use magnus::value::{LazyId, ReprValue, Value};
use magnus::{function, gc, method, prelude::*, Error, Exception, RHash, RModule, Ruby, Symbol};
use polyphony_runtime::op::{Attempt, Op, PollAdd};
use polyphony_runtime::{Chain, Completion, Driver, Kind, OpId, TimerHeap, TimerKey, Waker};
use rb_sys::VALUE;
use std::collections::{HashMap, HashSet, VecDeque};

use crate::helpers::fiber::{self, QNIL};
use crate::helpers::nogvl::without_gvl;
use crate::helpers::runqueue::{RunQueue, Runnable};

/// How long a fiber may run without a switch (its reads finding their bytes ready, the work
/// on them done) before its next read gives way to the other fibers first: see
/// [`Backend::before_read`].
const TURN: Duration = Duration::from_millis(10);

/// How many switches may pass between two looks at timers and completions while fibers keep
/// the run queue busy: the bound on how long busy fibers can starve I/O and timers.
const POLL_EVERY_SWITCHES: u64 = 64;

/// How long an idle read must have waited before a crowd of them gets it interrupted: see
/// `Sched::idle_limit`. A keep-alive client busy sending its requests answers within it.
const CROWD_AGE: Duration = Duration::from_millis(1);

/// Launchers (busy or idle) a backend may have; see the module docs. Each holds a fiber stack,
/// that is two of the process's `vm.max_map_count` memory mappings, for as long as it lives:
/// capped so that launchers never take more than an eighth of the default 65,530. Past the
/// cap, fibers are started by `transfer` and their stacks wait for the GC.
const MAX_LAUNCHERS: usize = 4096;

/// Stack memory a fiber started without a launcher holds until the GC collects it, as far as
/// the GC should know: the GC does not count fiber stacks, and counting this much per such
/// fiber makes collections keep pace, so they do not run out of mappings.
const UNLAUNCHED_FIBER_STACK_BYTES: isize = 16 * 1024;

/// What a finished fiber's block returns; see the module docs.
static FIBER_DONE: AtomicU64 = AtomicU64::new(0);
/// What a fiber waiting on a kernel operation is resumed with when the operation completes.
static OP_DONE: AtomicU64 = AtomicU64::new(0);
/// What a waiting fiber is woken with to run its interjections (`Fiber#interject`); it then
/// goes on waiting.
static INTERJECTED: AtomicU64 = AtomicU64::new(0);
/// Bumped whenever a backend is freed or the process forks: cached pointers are re-checked.
static EPOCH: AtomicU64 = AtomicU64::new(1);
/// Bumped in the child after `fork`: a backend from before belongs to the parent's ring.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

/// (thread, backend, epoch) of the last lookup. Only the thread holding the GVL reads or
/// writes it, so a plain cell is enough (and cheaper than a thread-local in a shared library).
struct CurrentCache(Cell<(VALUE, *const Backend, u64)>);
// SAFETY: only accessed with the GVL held, which serialises every access.
unsafe impl Sync for CurrentCache {}
static CURRENT: CurrentCache = CurrentCache(Cell::new((0, std::ptr::null(), 0)));

#[derive(magnus::TypedData)]
#[magnus(class = "Polyphony::Backend", free_immediately, mark, size)]
pub(crate) struct Backend {
    /// INVARIANT: never borrowed across a call into Ruby, so the GC's `mark` can always read it.
    sched: RefCell<Sched>,
    /// `None` once abandoned after a fork.
    driver: RefCell<Option<Driver>>,
    waker: Arc<Waker>,
    /// Fibers scheduled from other threads, moved to the run queue by this thread's next poll.
    inbox: Mutex<Vec<(VALUE, VALUE)>>,
    /// Operations reported complete by the last wait (not in `sched`: the wait runs without
    /// the GVL, while another thread's GC may mark this backend).
    completed: RefCell<Vec<u64>>,
    /// Whether the thread's root fiber has fibers alive or a timeout pending, so that its stock
    /// blocking calls must wait cooperatively (lib/ keeps it: `Polyphony.__root_cooperative__`).
    /// The native wrappers of those calls look here first and cost nothing more when it is
    /// false.
    root_cooperative: Cell<bool>,
    /// The switch count and the time when [`Backend::before_read`] first saw it: the start of
    /// the running fiber's turn, as far as it knows (no clock is read on a switch).
    turn: Cell<(u64, Instant)>,
    /// The root fiber in `suspend`, resumed when the thread has no work left. INVARIANT: a
    /// thread's root fiber, kept alive by its thread.
    idle_waiter: Cell<Option<VALUE>>,
    /// The fiber the backend was made in: the thread's root fiber (Polyphony makes a thread's
    /// backend there: at require, at the first spin, after fork in the forking fiber), which
    /// signals are raised in.
    root: VALUE,
    fork_generation: u64,
    /// Blocks given to `Fiber#interject`, with the fiber each is for, in order. A fiber runs
    /// its own the next time it is resumed, and goes on waiting if that is all it was woken
    /// for. (Kept apart from the run queue, where a completion could replace the wake-up.)
    interjections: RefCell<Vec<(VALUE, VALUE)>>,
    /// `Thread#on_idle`: called before the thread waits in the kernel with nothing to run.
    idle_proc: Cell<Option<VALUE>>,
    /// `Thread#idle_gc_period=`: when idle, a GC runs if this long has passed since the last.
    idle_gc_period: Cell<Option<Duration>>,
    last_idle_gc: Cell<Instant>,
    /// While the idle hooks run: a hook that waits after all does not run them again inside.
    in_idle_hooks: Cell<bool>,
}

struct Sched {
    runqueue: RunQueue,
    timers: TimerHeap<(VALUE, VALUE)>,
    switches: u64,
    /// Idle launcher fibers, each parked in [`Backend::park_launcher`].
    launchers: Vec<VALUE>,
    /// The fiber (and its first value) that the launcher being switched to must start.
    launch: Option<(VALUE, VALUE)>,
    /// Launchers alive, busy or idle.
    launcher_count: usize,
    /// The fiber waiting on each kernel operation, and the descriptor it works on, by
    /// operation id.
    waiting: HashMap<u64, (VALUE, i32)>,
    /// Reads of the first bytes of a connection's next request (H1P's parser with idle
    /// parking), by operation id; and those the last `park_idle` saw: still there at the
    /// next, they are interrupted.
    idle_reads: HashSet<u64>,
    idle_seen: HashSet<u64>,
    /// The idle reads in the order they began, with when (entries of reads since done are
    /// skipped, and swept now and then): the oldest are the first parked when too many wait.
    idle_order: VecDeque<(u64, Instant)>,
    /// How many idle reads may wait with their fibers while the thread has nothing else to
    /// do; beyond it, those waiting longer than [`CROWD_AGE`] are interrupted there and then,
    /// oldest first, rather than at the next `park_idle`. And once twice as many wait, or as
    /// many spun fibers are alive, a new idle read does not wait at all (see
    /// [`Sched::idle_flooded`]). None: no bound (the default).
    ///
    /// Ruby keeps a fiber stack it has touched for good, and each spun fiber alive holds two
    /// (its launcher's): so the most fibers ever alive at once, not how many are alive now,
    /// is what the stacks cost.
    idle_limit: Option<usize>,
    /// How many idle reads were interrupted so (for `Polyphony.__stats__`).
    idle_thinned: u64,
    /// The polls of parked connections, by operation id: the `Polyphony::Parking` each
    /// belongs to, and its token. Their completions wake the parking, not a fiber.
    parked: HashMap<u64, (VALUE, VALUE)>,
}

impl Backend {
    fn new() -> Result<Self, Error> {
        let driver = new_driver()?;
        Ok(Self {
            sched: RefCell::new(Sched {
                runqueue: RunQueue::new(is_exception),
                timers: TimerHeap::new(),
                switches: 0,
                launchers: Vec::new(),
                launch: None,
                launcher_count: 0,
                waiting: HashMap::new(),
                idle_reads: HashSet::new(),
                idle_seen: HashSet::new(),
                idle_order: VecDeque::new(),
                idle_limit: None,
                idle_thinned: 0,
                parked: HashMap::new(),
            }),
            waker: driver.waker(),
            driver: RefCell::new(Some(driver)),
            inbox: Mutex::new(Vec::new()),
            completed: RefCell::new(Vec::new()),
            root_cooperative: Cell::new(false),
            turn: Cell::new((0, Instant::now())),
            idle_waiter: Cell::new(None),
            root: fiber::current(),
            fork_generation: FORK_GENERATION.load(Ordering::Acquire),
            interjections: RefCell::new(Vec::new()),
            idle_proc: Cell::new(None),
            idle_gc_period: Cell::new(None),
            last_idle_gc: Cell::new(Instant::now()),
            in_idle_hooks: Cell::new(false),
        })
    }

    /// See the field.
    pub(crate) fn root_cooperative(&self) -> bool {
        self.root_cooperative.get()
    }

    /// The calling thread's backend, created on first use.
    pub(crate) fn current() -> Result<&'static Backend, Error> {
        Self::lookup(true).map(|b| b.expect("created when missing"))
    }

    /// The calling thread's backend if it has one (a thread that runs Polyphony fibers).
    pub(crate) fn existing() -> Option<&'static Backend> {
        Self::lookup(false).ok().flatten()
    }

    fn lookup(create: bool) -> Result<Option<&'static Backend>, Error> {
        // SAFETY: called with the GVL held, on a Ruby thread.
        let thread = unsafe { rb_sys::rb_thread_current() };
        let epoch = EPOCH.load(Ordering::Acquire);
        let (cached_thread, ptr, cached_epoch) = CURRENT.0.get();
        if cached_thread == thread && cached_epoch == epoch {
            // SAFETY: the pointer was taken from the Backend held by this thread's ivar; a
            // freed backend bumps EPOCH, so an unchanged epoch means it is still alive.
            return Ok(Some(unsafe { &*ptr }));
        }
        let Some(obj) = Self::for_thread(thread, create)? else {
            return Ok(None);
        };
        let ptr: *const Backend = std::ops::Deref::deref(&obj);
        CURRENT.0.set((thread, ptr, epoch));
        // SAFETY: as above; the thread keeps `obj` referenced.
        Ok(Some(unsafe { &*ptr }))
    }

    /// The backend object of `thread`, optionally created.
    fn for_thread(thread: VALUE, create: bool) -> Result<Option<Obj<Backend>>, Error> {
        let id = backend_ivar();
        // SAFETY: `thread` is a Thread object and the GVL is held.
        let raw = unsafe { rb_sys::rb_ivar_get(thread, id) };
        // SAFETY: `raw` came from Ruby just now.
        let value: Value = unsafe { magnus::rb_sys::FromRawValue::from_raw(raw) };
        // (nil first: converting it would look the class up, which `require 'h1p'` alone
        // does not define.)
        let obj = if value.is_nil() {
            None
        } else {
            Obj::<Backend>::try_convert(value).ok()
        };
        if let Some(obj) = obj {
            if obj.fork_generation == FORK_GENERATION.load(Ordering::Acquire) {
                return Ok(Some(obj));
            }
        }
        if !create {
            return Ok(None);
        }
        let ruby = Ruby::get().expect("called from Ruby");
        let obj = ruby.obj_wrap(Backend::new()?);
        // SAFETY: as above; the ivar keeps the backend alive as long as the thread.
        unsafe { rb_sys::rb_ivar_set(thread, id, obj.as_value().as_raw()) };
        // The thread's first use of Polyphony (it may be a wait in its root fiber, before any
        // spin): the fiber learns its thread, so that wakers in other threads can reach it.
        static BACKEND_MADE: LazyId = LazyId::new("__backend_made__");
        // SAFETY: the GVL is held; rb_fiber_current returns a live fiber.
        let fiber: Value =
            unsafe { magnus::rb_sys::FromRawValue::from_raw(rb_sys::rb_fiber_current()) };
        let _: Value = fiber.funcall(*BACKEND_MADE, ())?;
        Ok(Some(obj))
    }

    /// Queues `fiber`, which belongs to this backend's thread, the calling one.
    fn schedule(&self, fiber: VALUE, value: VALUE, prioritize: bool) {
        if fiber::is_alive(fiber) {
            self.sched
                .borrow_mut()
                .runqueue
                .push(fiber, value, prioritize);
        }
    }

    /// Called before a read that may find its bytes ready. When the calling fiber has run for
    /// TURN without a switch (counted from the first such call since the last switch), it
    /// first lets the others run (as `snooze`): a peer that keeps its
    /// socket full (a WebSocket flood, each read bringing thousands of messages to handle)
    /// cannot keep the thread's other connections waiting. (Before the read, not after it: an
    /// exception met while waiting loses nothing.) The value the fiber was scheduled with
    /// meanwhile, if any.
    pub(crate) fn before_read(&self) -> Result<Option<VALUE>, Error> {
        let switches = self.sched.borrow().switches;
        let now = Instant::now();
        let (seen, since) = self.turn.get();
        if seen != switches {
            self.turn.set((switches, now));
            return Ok(None);
        }
        if now.duration_since(since) < TURN {
            return Ok(None);
        }
        // What became ready meanwhile (a connection to accept, another client's bytes, a
        // timer) runs first; the run queue alone might not look at the kernel for a while.
        self.poll(false)?;
        let current = fiber::current();
        self.sched.borrow_mut().runqueue.push(current, QNIL, false);
        let resumed = self.switch(current)?;
        Ok((resumed != QNIL).then_some(resumed))
    }

    /// Queues `fiber` (of this thread) to be resumed with nil.
    pub(crate) fn wake(&self, fiber: VALUE) {
        self.schedule(fiber, QNIL, false);
    }

    /// Queues `fiber` from another thread: through the inbox, and wakes this backend's thread.
    fn schedule_remote(&self, fiber: VALUE, value: VALUE) {
        self.inbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((fiber, value));
        self.waker.wake();
    }

    /// Parks `current` (the running fiber) and runs others until something schedules it again;
    /// returns the value it was scheduled with, or raises it if it is an exception.
    fn switch(&self, current: VALUE) -> Result<VALUE, Error> {
        let done = FIBER_DONE.load(Ordering::Relaxed) as VALUE;
        loop {
            let (next, value, fresh) = self.next_runnable()?;
            let resumed = if next == current {
                value
            } else if fresh {
                self.launch(next, value)?
            } else if fiber::is_alive(next) {
                fiber::transfer(next, value)?
            } else {
                // Scheduled while its block was ending.
                continue;
            };
            if resumed == done {
                continue;
            }
            if !self.interjections.borrow().is_empty() {
                self.run_interjections(current)?;
            }
            if resumed == INTERJECTED.load(Ordering::Relaxed) as VALUE {
                continue;
            }
            return raise_if_exception(resumed);
        }
    }

    /// Queues `block` to run in `fiber` (of this thread, not the running one) at its current
    /// wait; wakes the fiber for it unless it is runnable already (then it runs the block when
    /// it resumes, whatever it was woken with).
    fn interject(&self, fiber: VALUE, block: VALUE) {
        self.interjections.borrow_mut().push((fiber, block));
        let mut sched = self.sched.borrow_mut();
        if !sched.runqueue.contains(fiber) {
            let interjected = INTERJECTED.load(Ordering::Relaxed) as VALUE;
            sched.runqueue.push(fiber, interjected, true);
        }
    }

    /// Calls the interjections queued for `current`, oldest first. An exception one raises
    /// ends the wait (the remaining ones stay queued for the next resume).
    fn run_interjections(&self, current: VALUE) -> Result<(), Error> {
        static CALL: LazyId = LazyId::new("call");
        loop {
            let block = {
                let mut queued = self.interjections.borrow_mut();
                let Some(at) = queued.iter().position(|(fiber, _)| *fiber == current) else {
                    return Ok(());
                };
                queued.remove(at).1
            };
            let _: Value = val(block).funcall(*CALL, ())?;
        }
    }

    /// `Thread#on_idle` and `Thread#idle_gc_period=`, called when the thread is about to wait
    /// in the kernel with nothing runnable.
    fn run_idle_hooks(&self) -> Result<(), Error> {
        if let Some(period) = self.idle_gc_period.get() {
            let now = Instant::now();
            if now.duration_since(self.last_idle_gc.get()) >= period {
                // SAFETY: the GVL is held and no borrow of the backend is (the GC marks it).
                unsafe { rb_sys::rb_gc_start() };
                self.last_idle_gc.set(Instant::now());
            }
        }
        if let Some(block) = self.idle_proc.get() {
            static CALL: LazyId = LazyId::new("call");
            let _: Value = val(block).funcall(*CALL, ())?;
        }
        Ok(())
    }

    /// Parks `current` (a thread's root fiber) like [`Backend::switch`]; it is also resumed,
    /// with nil, when the thread has no work left: nothing runnable, no timer, no operation in
    /// flight, nothing from other threads.
    fn suspend(&self, current: VALUE) -> Result<VALUE, Error> {
        let outer = self.idle_waiter.replace(Some(current));
        let resumed = self.switch(current);
        self.idle_waiter.set(outer);
        resumed
    }

    /// Starts `fiber` through an idle launcher (a new one if none is idle and the cap allows,
    /// else directly); returns what the calling fiber is later resumed with, like `transfer`.
    fn launch(&self, fiber: VALUE, value: VALUE) -> Result<VALUE, Error> {
        let (idle, may_create) = {
            let mut sched = self.sched.borrow_mut();
            let idle = sched.launchers.pop();
            let may_create = idle.is_none() && sched.launcher_count < MAX_LAUNCHERS;
            if may_create {
                sched.launcher_count += 1;
            }
            (idle, may_create)
        };
        // Not under the borrow: making a fiber allocates, and the GC then marks the backend.
        let launcher = idle.or_else(|| {
            // SAFETY: the GVL is held; `launcher_main` has the signature Ruby calls.
            may_create.then(|| unsafe { rb_sys::rb_fiber_new(Some(launcher_main), QNIL) })
        });
        let Some(launcher) = launcher else {
            // SAFETY: the GVL is held; this only adjusts the GC's malloc accounting.
            unsafe { rb_sys::rb_gc_adjust_memory_usage(UNLAUNCHED_FIBER_STACK_BYTES as _) };
            return fiber::transfer(fiber, value);
        };
        self.sched.borrow_mut().launch = Some((fiber, value));
        fiber::transfer(launcher, QNIL)
    }

    /// A launcher is about to end.
    fn retire_launcher(&self) {
        let mut sched = self.sched.borrow_mut();
        sched.launcher_count = sched.launcher_count.saturating_sub(1);
    }

    /// Called by a launcher whose fiber has ended: finds it the next fiber to start. Runs the
    /// fibers that are runnable meanwhile, parked in the pool. Returns false when the launcher
    /// should end instead (a pool inherited across a fork may be over the cap).
    fn park_launcher(&self, launcher: VALUE) -> Result<bool, Error> {
        if self.sched.borrow().launchers.len() >= MAX_LAUNCHERS {
            return Ok(false);
        }
        let (next, value) = loop {
            let (next, value, fresh) = self.next_runnable()?;
            if fresh {
                self.sched.borrow_mut().launch = Some((next, value));
                return Ok(true);
            }
            if fiber::is_alive(next) {
                break (next, value);
            }
        };
        self.sched.borrow_mut().launchers.push(launcher);
        // Until some fiber's `launch` picks this launcher (and sets `launch`).
        fiber::transfer(next, value)?;
        Ok(true)
    }

    fn next_runnable(&self) -> Result<Runnable, Error> {
        loop {
            if let Some(waiter) = self.idle_waiter.get() {
                if self.idle() {
                    self.idle_waiter.set(None);
                    self.sched.borrow_mut().runqueue.push(waiter, QNIL, false);
                }
            }
            let due_for_poll = {
                let mut sched = self.sched.borrow_mut();
                sched.switches += 1;
                if !sched.runqueue.is_empty() && sched.switches % POLL_EVERY_SWITCHES != 0 {
                    if let Some(next) = sched.runqueue.pop() {
                        return Ok(next);
                    }
                }
                sched.runqueue.is_empty()
            };
            // Busy or idle, look at the clock and the kernel; block only when idle.
            self.poll(due_for_poll)?;
            if let Some(next) = self.sched.borrow_mut().runqueue.pop() {
                return Ok(next);
            }
        }
    }

    /// Nothing runnable, no timer, no operation in flight, nothing in the inbox.
    fn idle(&self) -> bool {
        let sched = self.sched.borrow();
        sched.runqueue.is_empty()
            && sched.timers.is_empty()
            && sched.waiting.is_empty()
            && sched.parked.is_empty()
            && self.inbox.lock().map_or(true, |inbox| inbox.is_empty())
    }

    /// Fires due timers, reaps completions and the inbox; waits in the kernel (GVL released)
    /// when `block` and nothing became runnable.
    fn poll(&self, block: bool) -> Result<(), Error> {
        let hooked = self.idle_proc.get().is_some() || self.idle_gc_period.get().is_some();
        if block && hooked && !self.in_idle_hooks.replace(true) {
            let ran = self.run_idle_hooks();
            self.in_idle_hooks.set(false);
            ran?;
        }
        let now = Instant::now();
        let (timeout, crowded) = {
            let mut sched = self.sched.borrow_mut();
            sched.fire_timers(now);
            self.drain_inbox(&mut sched);
            if !block || !sched.runqueue.is_empty() {
                (Some(Duration::ZERO), Vec::new())
            } else {
                // Nothing else to do: a crowd of connections waiting with their fibers for
                // their clients' next requests is thinned (see `Sched::idle_limit`).
                let (crowded, again) = sched.crowded_idle_reads(now);
                let deadline = match (sched.timers.next_deadline(), again) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                (deadline.map(|d| d.saturating_duration_since(now)), crowded)
            }
        };
        let mut failure = None;
        let blocked = {
            let mut driver = self.driver.borrow_mut();
            let Some(driver) = driver.as_mut() else {
                return Err(forked_error());
            };
            for id in crowded {
                let _ = driver.interrupt(OpId::from_bits(id));
            }
            let mut completed = self.completed.borrow_mut();
            let mut record = |id: OpId| completed.push(id.to_bits());
            if timeout == Some(Duration::ZERO) {
                failure = driver.wait(timeout, &mut record).err();
                false
            } else {
                without_gvl(&self.waker, || {
                    failure = driver.wait(timeout, &mut record).err()
                });
                true
            }
        };
        let mut completed = self.completed.borrow_mut();
        let mut sched = self.sched.borrow_mut();
        let done = OP_DONE.load(Ordering::Relaxed) as VALUE;
        let mut woken = Vec::new();
        for id in completed.drain(..) {
            if let Some((fiber, _)) = sched.waiting.remove(&id) {
                sched.runqueue.push(fiber, done, false);
            } else if let Some((parking, token)) = sched.parked.remove(&id) {
                woken.push((id, parking, token));
            }
        }
        drop(completed);
        sched.fire_timers(Instant::now());
        self.drain_inbox(&mut sched);
        drop(sched);
        for (id, parking, token) in woken {
            if let Some(driver) = self.driver.borrow_mut().as_mut() {
                let _ = driver.take::<PollAdd>(OpId::from_bits(id));
            }
            if let Some(waiter) = super::parking::woken(parking, token) {
                self.schedule(waiter, QNIL, false);
            }
        }
        if let Some(err) = failure {
            let ruby = Ruby::get().expect("called from Ruby");
            return Err(Error::new(
                ruby.exception_io_error(),
                format!("polyphony: {err}"),
            ));
        }
        if blocked {
            // Trap handlers, Thread#raise and Thread#kill that ended the wait run now, with no
            // borrow held: a handler may itself switch fibers or do I/O.
            if let Err(error) = check_interrupts() {
                return self.raise_signal_in_root(error);
            }
        }
        Ok(())
    }

    /// A signal (Ctrl-C's Interrupt, SIGTERM's SignalException) that came while a fiber other
    /// than the root one waited in the kernel is the root fiber's, as in Polyphony: it is raised
    /// there (which ends the program unless rescued), not in the fiber that happened to wait.
    fn raise_signal_in_root(&self, error: Error) -> Result<(), Error> {
        let Some(exception) = error.value() else {
            return Err(error);
        };
        let exception = exception.as_raw();
        // SAFETY: the GVL is held; `exception` is a live exception object.
        let signal = unsafe { rb_sys::rb_obj_is_kind_of(exception, rb_sys::rb_eSignal) }
            == rb_sys::Qtrue as VALUE;
        if !signal || self.root == fiber::current() || !fiber::is_alive(self.root) {
            return Err(error);
        }
        self.sched
            .borrow_mut()
            .runqueue
            .push(self.root, exception, true);
        Ok(())
    }

    fn drain_inbox(&self, sched: &mut Sched) {
        let mut inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        for (fiber, value) in inbox.drain(..) {
            if fiber::is_alive(fiber) {
                sched.runqueue.push(fiber, value, false);
            }
        }
    }

    /// Submits `op` (working on `fd`) and parks the calling fiber until it completes. If the fiber is resumed
    /// otherwise first (an exception, a timeout, `schedule` with a value), the operation is
    /// cancelled (its buffers stay with the driver until the kernel lets go; a descriptor it
    /// produced is closed) and the exception is raised or the value handed back.
    pub(crate) fn await_op<O: Op>(&self, fd: i32, op: O) -> Result<Awaited<O::Output>, Error> {
        self.await_idle_op(fd, op, IdleRead::No)
    }

    /// [`Backend::await_op`], for the read of the first bytes of a connection's next request
    /// unless `idle` is `No`: [`Backend::park_idle`] interrupts it (ECANCELED, nothing lost)
    /// once it has waited long enough, so that the connection can wait without its fiber.
    pub(crate) fn await_idle_op<O: Op>(
        &self,
        fd: i32,
        mut op: O,
        idle: IdleRead,
    ) -> Result<Awaited<O::Output>, Error> {
        if idle != IdleRead::No && self.sched.borrow().idle_flooded() {
            // Too many wait so already: done now if it can be, else interrupted at once. (The
            // fiber still gives way after its turn, as a read that waits would switch.)
            if let Some(value) = self.before_read()? {
                return Ok(Awaited::Interrupted(value));
            }
            let result = match op.attempt() {
                Attempt::Done(result) => result,
                Attempt::Wait { .. } => {
                    self.sched.borrow_mut().idle_thinned += 1;
                    -libc::ECANCELED
                }
            };
            return Ok(Awaited::Done(op.complete(Completion { result, flags: 0 })));
        }
        let current = fiber::current();
        let id = {
            let mut driver = self.driver.borrow_mut();
            let driver = driver.as_mut().ok_or_else(forked_error)?;
            driver.submit(op).map_err(|e| io_error(&e))?
        };
        {
            let mut sched = self.sched.borrow_mut();
            sched.waiting.insert(id.to_bits(), (current, fd));
            if idle != IdleRead::No {
                sched.add_idle_read(id.to_bits(), idle == IdleRead::Soon);
            }
        }
        let resumed = self.switch(current);
        if idle != IdleRead::No {
            self.sched.borrow_mut().idle_reads.remove(&id.to_bits());
        }
        let done = OP_DONE.load(Ordering::Relaxed) as VALUE;
        if matches!(resumed, Ok(v) if v == done) {
            let output = self
                .driver
                .borrow_mut()
                .as_mut()
                .and_then(|d| d.take::<O>(id));
            if let Some(output) = output {
                return Ok(Awaited::Done(output));
            }
        }
        self.sched.borrow_mut().waiting.remove(&id.to_bits());
        if let Some(driver) = self.driver.borrow_mut().as_mut() {
            let _ = driver.cancel(id);
        }
        resumed.map(Awaited::Interrupted)
    }

    /// Submits `chain` and parks the calling fiber until its last op completes (so have all
    /// the others). Interrupted first, it cancels them all. The ids, to take each op's output.
    pub(crate) fn await_chain(&self, fd: i32, chain: Chain) -> Result<Awaited<Vec<OpId>>, Error> {
        let current = fiber::current();
        let ids = {
            let mut driver = self.driver.borrow_mut();
            let driver = driver.as_mut().ok_or_else(forked_error)?;
            driver.submit_chain(chain).map_err(|e| io_error(&e))?
        };
        let Some(last) = ids.last().copied() else {
            return Ok(Awaited::Done(ids));
        };
        self.sched
            .borrow_mut()
            .waiting
            .insert(last.to_bits(), (current, fd));
        let resumed = self.switch(current);
        let done = OP_DONE.load(Ordering::Relaxed) as VALUE;
        let complete = self
            .driver
            .borrow()
            .as_ref()
            .is_some_and(|d| ids.iter().all(|id| d.completion(*id).is_some()));
        if matches!(resumed, Ok(v) if v == done) && complete {
            return Ok(Awaited::Done(ids));
        }
        self.sched.borrow_mut().waiting.remove(&last.to_bits());
        if let Some(driver) = self.driver.borrow_mut().as_mut() {
            for id in &ids {
                let _ = driver.cancel(*id);
            }
        }
        resumed.map(Awaited::Interrupted)
    }

    /// Interrupts the idle reads (see [`Backend::await_idle_op`]) that the last call saw
    /// already: each has waited at least the time between two calls. Returns how many idle
    /// reads it found: those it interrupted, and those the next call will if they still wait.
    pub(crate) fn park_idle(&self) -> usize {
        let found = self.sched.borrow().idle_reads.len();
        let due: Vec<u64> = {
            let mut sched = self.sched.borrow_mut();
            let sched = &mut *sched;
            let due: Vec<u64> = sched
                .idle_reads
                .intersection(&sched.idle_seen)
                .copied()
                .collect();
            for id in &due {
                sched.idle_reads.remove(id);
            }
            sched.idle_seen.clone_from(&sched.idle_reads);
            due
        };
        if let Some(driver) = self.driver.borrow_mut().as_mut() {
            for id in &due {
                let _ = driver.interrupt(OpId::from_bits(*id));
            }
        }
        found
    }

    /// Starts waiting, for `parking`, until `fd` is readable (or closed by the peer): the
    /// completion hands `token` to the parking instead of waking a fiber. The op's id.
    pub(crate) fn submit_parked(
        &self,
        fd: i32,
        parking: VALUE,
        token: VALUE,
    ) -> Result<u64, Error> {
        let events = (libc::POLLIN | libc::POLLRDHUP) as u32;
        let id = {
            let mut driver = self.driver.borrow_mut();
            let driver = driver.as_mut().ok_or_else(forked_error)?;
            driver
                .submit(PollAdd::new(fd, events))
                .map_err(|e| io_error(&e))?
                .to_bits()
        };
        self.sched.borrow_mut().parked.insert(id, (parking, token));
        Ok(id)
    }

    /// Gives a parked connection's poll up (a poll loses nothing).
    pub(crate) fn cancel_parked(&self, id: u64) {
        if self.sched.borrow_mut().parked.remove(&id).is_some() {
            if let Some(driver) = self.driver.borrow_mut().as_mut() {
                let _ = driver.cancel(OpId::from_bits(id));
            }
        }
    }

    /// Parks the calling fiber until something schedules it; the value it was scheduled with
    /// (an exception is raised).
    pub(crate) fn suspend_current(&self) -> Result<VALUE, Error> {
        self.switch(fiber::current())
    }

    /// Takes a completed op's output (after `await_chain`).
    pub(crate) fn take<O: Op>(&self, id: OpId) -> Option<O::Output> {
        self.driver.borrow_mut().as_mut()?.take::<O>(id)
    }

    /// Raises IOError in every fiber waiting on an operation on `fd` (about to be closed):
    /// a closed descriptor would never complete them. Their operations are cancelled as
    /// they unwind.
    pub(crate) fn interrupt_waiters(&self, fd: i32) -> bool {
        let waiters: Vec<(u64, VALUE)> = {
            let mut sched = self.sched.borrow_mut();
            let ids: Vec<u64> = sched
                .waiting
                .iter()
                .filter(|(_, (_, waiting_fd))| *waiting_fd == fd)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| sched.waiting.remove(&id).map(|(fiber, _)| (id, fiber)))
                .collect()
        };
        let interrupted = !waiters.is_empty();
        for (id, fiber) in waiters {
            // Cancelled now, while `fd` still names the same file (epoll forgets it by number).
            if let Some(driver) = self.driver.borrow_mut().as_mut() {
                let _ = driver.cancel(OpId::from_bits(id));
            }
            // A fiber already scheduled (being stopped, say) keeps what it was scheduled with.
            if self.sched.borrow().runqueue.contains(fiber) {
                continue;
            }
            // SAFETY: the GVL is held; the class and message are valid.
            let exc = unsafe {
                rb_sys::rb_exc_new_cstr(
                    rb_sys::rb_eIOError,
                    c"stream closed in another fiber".as_ptr(),
                )
            };
            self.sched.borrow_mut().runqueue.push(fiber, exc, true);
        }
        interrupted
    }

    fn add_timer(&self, secs: f64, fiber: VALUE, value: VALUE) -> Result<TimerKey, Error> {
        let deadline = Instant::now() + duration(secs)?;
        Ok(self
            .sched
            .borrow_mut()
            .timers
            .insert(deadline, (fiber, value)))
    }
}

impl Sched {
    /// Counts operation `id` as an idle read (see [`Backend::await_idle_op`]), already seen
    /// by `park_idle` if `soon`.
    fn add_idle_read(&mut self, id: u64, soon: bool) {
        self.idle_reads.insert(id);
        if soon {
            self.idle_seen.insert(id);
        }
        if self.idle_limit.is_some() {
            // (Entries of reads done stay until they reach the front, or until they outnumber
            // twice the reads that wait, and 64: then they go all at once.)
            if self.idle_order.len() > 2 * self.idle_reads.len() + 64 {
                let reads = &self.idle_reads;
                self.idle_order.retain(|(id, _)| reads.contains(id));
            }
            self.idle_order.push_back((id, Instant::now()));
        }
    }

    /// Whether as many idle reads wait, or as many spun fibers are alive, as twice
    /// `idle_limit`: then one more idle read is not let wait. A flood of connections, each
    /// sending a request and then pausing, would otherwise hold a fiber each while the thread,
    /// busy serving the others, finds no time to thin them. (Fibers whose reads completed
    /// still count as idle reads until they run: hence the count of fibers too.)
    fn idle_flooded(&self) -> bool {
        self.idle_limit.is_some_and(|limit| {
            // (Saturating: launchers inherited across a fork are not counted.)
            let busy = self.launcher_count.saturating_sub(self.launchers.len());
            self.idle_reads.len().max(busy) >= 2 * limit
        })
    }

    /// The idle reads to interrupt now because more than `idle_limit` wait (see the field):
    /// they are no longer counted as idle reads. Also when to look again, if some are too
    /// young yet.
    fn crowded_idle_reads(&mut self, now: Instant) -> (Vec<u64>, Option<Instant>) {
        let mut due = Vec::new();
        let Some(limit) = self.idle_limit else {
            return (due, None);
        };
        while self.idle_reads.len() > limit {
            let Some(&(id, since)) = self.idle_order.front() else {
                break;
            };
            if !self.idle_reads.contains(&id) {
                self.idle_order.pop_front();
                continue;
            }
            let ripe = since + CROWD_AGE;
            if ripe > now {
                return (due, Some(ripe));
            }
            self.idle_order.pop_front();
            self.idle_reads.remove(&id);
            self.idle_seen.remove(&id);
            self.idle_thinned += 1;
            due.push(id);
        }
        (due, None)
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some((fiber, value)) = self.timers.pop_expired(now) {
            if fiber::is_alive(fiber) {
                self.runqueue.push(fiber, value, false);
            }
        }
    }
}

impl DataTypeFunctions for Backend {
    fn mark(&self, _marker: &gc::Marker) {
        let sched = self.sched.borrow();
        let inbox = self.inbox.lock().unwrap_or_else(|e| e.into_inner());
        let timers = sched.timers.payloads().flat_map(|(f, v)| [*f, *v]);
        let queued = inbox.iter().flat_map(|(f, v)| [*f, *v]);
        let launch = sched.launch.iter().flat_map(|(f, v)| [*f, *v]);
        let waiting = sched.waiting.values().map(|(fiber, _)| *fiber);
        let parked = sched.parked.values().flat_map(|(p, t)| [*p, *t]);
        let waiting = waiting.chain(parked);
        let launchers = sched.launchers.iter().copied().chain([self.root]);
        let held = sched.runqueue.values().chain(timers).chain(queued);
        let interjections = self.interjections.borrow();
        let interjected = interjections.iter().flat_map(|(f, b)| [*f, *b]);
        let hooks = self.idle_proc.get().into_iter();
        let held = held.chain(interjected).chain(hooks);
        for value in held.chain(launch).chain(launchers).chain(waiting) {
            // SAFETY: called by the GC on values we hold. `rb_gc_mark` pins them: the run
            // queue is keyed by the fiber's address, so fibers must not move.
            unsafe { rb_sys::rb_gc_mark(value) };
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        EPOCH.fetch_add(1, Ordering::AcqRel);
        if self.fork_generation != FORK_GENERATION.load(Ordering::Acquire) {
            if let Some(driver) = self.driver.get_mut().take() {
                driver.abandon();
            }
        }
    }
}

/// Runs Ruby's pending interrupts (signal handlers, `Thread#raise`, `Thread#kill`).
fn check_interrupts() -> Result<(), Error> {
    magnus::rb_sys::protect(|| {
        // SAFETY: the GVL is held; exceptions and jumps are caught by `protect`.
        unsafe { rb_sys::rb_thread_check_ints() };
        QNIL
    })
    .map(drop)
}

fn backend_ivar() -> rb_sys::ID {
    static ID: AtomicU64 = AtomicU64::new(0);
    match ID.load(Ordering::Relaxed) {
        0 => {
            // A name without `@`: a hidden instance variable, invisible to Ruby code.
            // SAFETY: the GVL is held; the string is NUL-terminated.
            let id = unsafe { rb_sys::rb_intern(c"__polyphony_backend__".as_ptr()) };
            ID.store(id as u64, Ordering::Relaxed);
            id
        }
        id => id as rb_sys::ID,
    }
}

/// The kernel interface: `POLYPHONY_BACKEND=io_uring|epoll` forces one; otherwise io_uring
/// when the kernel offers it (with every opcode the ops use), else epoll.
fn new_driver() -> Result<Driver, Error> {
    let ruby = Ruby::get().expect("called from Ruby");
    let fail = |message: String| Error::new(ruby.exception_runtime_error(), message);
    let choice = std::env::var("POLYPHONY_BACKEND").unwrap_or_default();
    let driver = match choice.as_str() {
        "" => Driver::new(256),
        "io_uring" => Driver::with_kind(Kind::IoUring, 256),
        "epoll" => Driver::with_kind(Kind::Epoll, 256),
        other => {
            return Err(fail(format!(
                "POLYPHONY_BACKEND must be io_uring or epoll, not {other:?}"
            )))
        }
    };
    driver.map_err(|e| {
        let what = if choice.is_empty() {
            "io_uring or epoll"
        } else {
            choice.as_str()
        };
        fail(format!("polyphony: cannot set up {what}: {e}"))
    })
}

fn duration(secs: f64) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(secs).map_err(|_| {
        let ruby = Ruby::get().expect("called from Ruby");
        Error::new(
            ruby.exception_arg_error(),
            format!("time interval must be a finite, non-negative number of seconds, got {secs}"),
        )
    })
}

/// Whether a read is of the first bytes of a connection's next request, which
/// [`Backend::park_idle`] may interrupt: at its second look (`Yes`), or at its first (`Soon`:
/// a connection that was parked before, whose client is likely to pause again).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdleRead {
    No,
    Yes,
    Soon,
}

/// The outcome of [`Backend::await_op`].
pub(crate) enum Awaited<T> {
    Done(T),
    /// The fiber was scheduled with this value before the operation completed.
    Interrupted(VALUE),
}

/// An `io::Error` as the matching `Errno::E*` exception.
pub(crate) fn io_error(error: &std::io::Error) -> Error {
    let errno = error.raw_os_error().unwrap_or(libc::EIO);
    // SAFETY: the GVL is held; a NULL message is allowed.
    let exc = unsafe { rb_sys::rb_syserr_new(errno, std::ptr::null()) };
    // SAFETY: `rb_syserr_new` returns an Exception instance.
    let exc: Value = unsafe { magnus::rb_sys::FromRawValue::from_raw(exc) };
    Exception::from_value(exc).expect("an exception").into()
}

fn forked_error() -> Error {
    let ruby = Ruby::get().expect("called from Ruby");
    Error::new(
        ruby.exception_runtime_error(),
        "polyphony: backend used after fork",
    )
}

fn raw(value: Value) -> VALUE {
    value.as_raw()
}

fn val(raw: VALUE) -> Value {
    // SAFETY: every VALUE we hand back came from Ruby and is kept alive by the caller or by us.
    unsafe { magnus::rb_sys::FromRawValue::from_raw(raw) }
}

// ---- Ruby-facing functions: thin wrappers over the calling thread's backend ----

/// What a parked fiber was resumed with, or the exception it was resumed with as an error.
fn raise_if_exception(resumed: VALUE) -> Result<VALUE, Error> {
    if fiber::is_exception(resumed) {
        // SAFETY: `resumed` is an Exception instance (checked) from Ruby.
        let exc: Value = unsafe { magnus::rb_sys::FromRawValue::from_raw(resumed) };
        return Err(Exception::from_value(exc).expect("checked above").into());
    }
    Ok(resumed)
}

fn rb_suspend() -> Result<Value, Error> {
    Backend::current()?.suspend(fiber::current()).map(val)
}

fn rb_switch() -> Result<Value, Error> {
    Backend::current()?.switch(fiber::current()).map(val)
}

fn rb_schedule(fiber: Value, value: Value, prioritize: bool) -> Result<Value, Error> {
    Backend::current()?.schedule(raw(fiber), raw(value), prioritize);
    Ok(fiber)
}

/// Tells the calling thread's backend whether its root fiber must wait cooperatively.
fn rb_root_cooperative(cooperative: bool) -> Result<bool, Error> {
    Backend::current()?.root_cooperative.set(cooperative);
    Ok(cooperative)
}

/// Schedules a newly spun fiber; a launcher starts it (see the module docs).
fn rb_spawn(fiber: Value) -> Result<Value, Error> {
    let backend = Backend::current()?;
    backend
        .sched
        .borrow_mut()
        .runqueue
        .push_fresh(raw(fiber), QNIL);
    Ok(fiber)
}

/// The body of a launcher fiber: starts the fiber in `Sched::launch` with `resume`, and when
/// it ends, parks until the next one. Errors that reach a launcher (a fiber's block let an
/// exception out, a signal or `Thread#kill` arrived while it waited in the kernel) end the
/// launcher with them, which Ruby delivers to the thread's root fiber.
unsafe extern "C" fn launcher_main(
    _first: VALUE,
    _data: VALUE,
    _argc: std::ffi::c_int,
    _argv: *const VALUE,
    _block: VALUE,
) -> VALUE {
    match run_launcher() {
        Ok(()) => FIBER_DONE.load(Ordering::Relaxed) as VALUE,
        // SAFETY: `run_launcher` has returned, so nothing that needs dropping is alive here.
        Err(error) => unsafe { fiber::reraise(error) },
    }
}

fn run_launcher() -> Result<(), Error> {
    loop {
        let backend = Backend::current()?;
        let Some((started, value)) = backend.sched.borrow_mut().launch.take() else {
            return Ok(());
        };
        let ended = run_to_end(started, value);
        // After a fork in this fiber the child has a new backend: park in that one.
        let backend = Backend::current()?;
        match ended.and_then(|()| backend.park_launcher(fiber::current())) {
            Ok(true) => {}
            outcome => {
                backend.retire_launcher();
                return outcome.map(drop);
            }
        }
    }
}

/// Resumes `fiber` until its block has ended.
fn run_to_end(fiber: VALUE, value: VALUE) -> Result<(), Error> {
    fiber::resume(fiber, value)?;
    // A fiber that calls `Fiber.yield` comes back here alive: it was not resumed by its caller,
    // so it gets the error plain Ruby gives for a transferred fiber.
    while fiber::is_alive(fiber) {
        fiber::raise_fiber_error(fiber, c"attempt to yield on a not resumed fiber")?;
    }
    Ok(())
}

fn rb_snooze() -> Result<Value, Error> {
    let backend = Backend::current()?;
    let current = fiber::current();
    backend
        .sched
        .borrow_mut()
        .runqueue
        .push(current, QNIL, false);
    backend.switch(current).map(val)
}

fn rb_sleep(secs: f64) -> Result<Value, Error> {
    let backend = Backend::current()?;
    let current = fiber::current();
    let key = backend.add_timer(secs, current, QNIL)?;
    let result = backend.switch(current);
    backend.sched.borrow_mut().timers.remove(key);
    result.map(val)
}

fn rb_runnable(fiber: Value) -> Result<bool, Error> {
    Ok(Backend::current()?
        .sched
        .borrow()
        .runqueue
        .contains(raw(fiber)))
}

fn rb_timer_add(secs: f64, fiber: Value, value: Value) -> Result<u64, Error> {
    Ok(Backend::current()?
        .add_timer(secs, raw(fiber), raw(value))?
        .to_bits())
}

fn rb_timer_cancel(key: u64) -> Result<bool, Error> {
    let backend = Backend::current()?;
    let removed = backend
        .sched
        .borrow_mut()
        .timers
        .remove(TimerKey::from_bits(key));
    Ok(removed.is_some())
}

fn rb_timer_reset(key: u64, secs: f64) -> Result<Option<u64>, Error> {
    let backend = Backend::current()?;
    let deadline = Instant::now() + duration(secs)?;
    let mut sched = backend.sched.borrow_mut();
    Ok(sched
        .timers
        .reset(TimerKey::from_bits(key), deadline)
        .map(TimerKey::to_bits))
}

fn rb_stats(ruby: &Ruby) -> Result<RHash, Error> {
    let backend = Backend::current()?;
    let (runqueue, timers, switches) = {
        let s = backend.sched.borrow();
        (s.runqueue.len(), s.timers.len(), s.switches)
    };
    let ops = backend.driver.borrow().as_ref().map_or(0, |d| d.len());
    let hash = ruby.hash_new();
    hash.aset(ruby.to_symbol("runqueue_size"), runqueue)?;
    hash.aset(ruby.to_symbol("timers"), timers)?;
    hash.aset(ruby.to_symbol("ops"), ops)?;
    hash.aset(ruby.to_symbol("switches"), switches)?;
    let (launchers, idle_launchers, parked, idle_reads, waiting, idle_thinned) = {
        let s = backend.sched.borrow();
        (
            s.launcher_count,
            s.launchers.len(),
            s.parked.len(),
            s.idle_reads.len(),
            s.waiting.len(),
            s.idle_thinned,
        )
    };
    hash.aset(ruby.to_symbol("launchers"), launchers)?;
    hash.aset(ruby.to_symbol("idle_launchers"), idle_launchers)?;
    hash.aset(ruby.to_symbol("parked"), parked)?;
    hash.aset(ruby.to_symbol("idle_reads"), idle_reads)?;
    hash.aset(ruby.to_symbol("waiting"), waiting)?;
    hash.aset(ruby.to_symbol("idle_thinned"), idle_thinned)?;
    Ok(hash)
}

/// `:io_uring` or `:epoll`: the calling thread's backend's kernel interface.
fn rb_backend_kind(ruby: &Ruby) -> Result<Symbol, Error> {
    let backend = Backend::current()?;
    let kind = backend
        .driver
        .borrow()
        .as_ref()
        .map_or(Kind::IoUring, |d| d.kind());
    Ok(ruby.to_symbol(kind.name()))
}

/// `Polyphony.__interject__(fiber, block)`: see [`Backend::interject`].
fn rb_interject(fiber: Value, block: Value) -> Result<Value, Error> {
    Backend::current()?.interject(raw(fiber), raw(block));
    Ok(fiber)
}

/// `Backend#idle_proc=`: the block to call before waiting idle (nil for none).
fn rb_set_idle_proc(rb_self: &Backend, block: Option<Value>) -> Option<Value> {
    rb_self.idle_proc.set(block.map(raw));
    block
}

/// `Backend#idle_gc_period=`: seconds between GCs run when idle (nil or 0: none).
fn rb_set_idle_gc_period(rb_self: &Backend, secs: Option<f64>) -> Result<Option<f64>, Error> {
    let period = match secs {
        Some(s) if s > 0.0 => Some(duration(s)?),
        _ => None,
    };
    rb_self.idle_gc_period.set(period);
    Ok(secs)
}

fn rb_backend_for(thread: Value) -> Result<Option<Obj<Backend>>, Error> {
    Backend::for_thread(raw(thread), false)
}

fn rb_current_backend() -> Result<Option<Obj<Backend>>, Error> {
    // SAFETY: the GVL is held.
    Backend::for_thread(unsafe { rb_sys::rb_thread_current() }, true)
}

/// `Backend#schedule(fiber, value = nil, prioritize = false)`: from any thread.
fn rb_backend_schedule(rb_self: &Backend, args: &[Value]) -> Result<Value, Error> {
    type Optional = (Option<Value>, Option<bool>);
    let args = magnus::scan_args::scan_args::<(Value,), Optional, (), (), (), ()>(args)?;
    let (fiber,) = args.required;
    let (value, prioritize) = args.optional;
    let value = value.map_or(QNIL, raw);
    // SAFETY: the GVL is held.
    let caller = Backend::for_thread(unsafe { rb_sys::rb_thread_current() }, false)?;
    if caller.is_some_and(|own| std::ptr::eq(&*own, rb_self)) {
        rb_self.schedule(raw(fiber), value, prioritize.unwrap_or(false));
    } else {
        // Dead fibers are dropped by the owning thread: only it may ask about its fibers.
        rb_self.schedule_remote(raw(fiber), value);
    }
    Ok(fiber)
}

/// Whether `value` is an exception (to raise in the fiber it wakes).
fn is_exception(value: VALUE) -> bool {
    // SAFETY: the GVL is held (the run queue is only used with it); `value` is a live object.
    unsafe { rb_sys::rb_obj_is_kind_of(value, rb_sys::rb_eException) == rb_sys::Qtrue as VALUE }
}

extern "C" fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::AcqRel);
    EPOCH.fetch_add(1, Ordering::AcqRel);
}

/// `Polyphony.__give_way__`: lets the other fibers run first when the calling one has run for
/// a turn without a switch (see [`Backend::before_read`]), for a loop that handles much work
/// per read; nil, or the value the fiber was scheduled with meanwhile.
fn rb_give_way() -> Result<Option<Value>, Error> {
    Ok(Backend::current()?.before_read()?.map(val))
}

/// `Polyphony.__park_idle__`: interrupts the idle reads of connections that waited since the
/// last call (see [`Backend::park_idle`]); how many idle reads it found.
fn rb_park_idle() -> Result<usize, Error> {
    Ok(Backend::current()?.park_idle())
}

/// `Polyphony.__idle_limit__ = count`: how many idle reads of this thread's connections may
/// wait with their fibers while it has nothing else to do (nil: no bound); see
/// `Sched::idle_limit`.
fn rb_set_idle_limit(ruby: &Ruby, limit: Option<usize>) -> Result<Option<usize>, Error> {
    if limit == Some(0) {
        return Err(Error::new(
            ruby.exception_arg_error(),
            "the idle limit must be positive (nil: no limit)",
        ));
    }
    let backend = Backend::current()?;
    let mut sched = backend.sched.borrow_mut();
    sched.idle_limit = limit;
    if limit.is_none() {
        sched.idle_order = VecDeque::new();
    }
    Ok(limit)
}

/// `Polyphony.__malloc_trim__`: gives the C heap's free memory back to the system (after many
/// connections closed, say); whether any was.
fn rb_malloc_trim() -> bool {
    // SAFETY: glibc's malloc_trim takes no pointer and is safe to call at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

pub(crate) fn init(ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    static ATFORK: Once = Once::new();
    ATFORK.call_once(|| {
        // SAFETY: registering a handler that only bumps two atomics is async-signal-safe.
        unsafe { libc_atfork(after_fork_in_child) };
    });

    let done: Value = ruby.eval("Object.new.freeze")?;
    gc::register_mark_object(done);
    FIBER_DONE.store(raw(done) as u64, Ordering::Relaxed);
    polyphony.const_set("FIBER_DONE", done)?;
    let op_done: Value = ruby.eval("Object.new.freeze")?;
    gc::register_mark_object(op_done);
    OP_DONE.store(raw(op_done) as u64, Ordering::Relaxed);
    let interjected: Value = ruby.eval("Object.new.freeze")?;
    gc::register_mark_object(interjected);
    INTERJECTED.store(raw(interjected) as u64, Ordering::Relaxed);

    let class = polyphony.define_class("Backend", ruby.class_object())?;
    class.undef_default_alloc_func();
    class.define_method("schedule", method!(rb_backend_schedule, -1))?;
    class.define_method("idle_proc=", method!(rb_set_idle_proc, 1))?;
    class.define_method("idle_gc_period=", method!(rb_set_idle_gc_period, 1))?;
    polyphony.define_singleton_method("__interject__", function!(rb_interject, 2))?;

    polyphony.define_singleton_method("__switch__", function!(rb_switch, 0))?;
    polyphony.define_singleton_method("__suspend__", function!(rb_suspend, 0))?;
    polyphony.define_singleton_method("__schedule__", function!(rb_schedule, 3))?;
    polyphony.define_singleton_method("__spawn__", function!(rb_spawn, 1))?;
    polyphony.define_singleton_method("__snooze__", function!(rb_snooze, 0))?;
    // `snooze` itself is native (a private method on Object, as Kernel's are): one Ruby
    // method call less on the hottest path.
    ruby.class_object()
        .define_private_method("snooze", method!(|_rb_self: Value| rb_snooze(), 0))?;
    polyphony.define_singleton_method("__sleep__", function!(rb_sleep, 1))?;
    polyphony.define_singleton_method("__runnable__", function!(rb_runnable, 1))?;
    polyphony.define_singleton_method("__timer_add__", function!(rb_timer_add, 3))?;
    polyphony.define_singleton_method("__timer_cancel__", function!(rb_timer_cancel, 1))?;
    polyphony.define_singleton_method("__timer_reset__", function!(rb_timer_reset, 2))?;
    polyphony.define_singleton_method("__stats__", function!(rb_stats, 0))?;
    polyphony.define_singleton_method("__park_idle__", function!(rb_park_idle, 0))?;
    polyphony.define_singleton_method("__give_way__", function!(rb_give_way, 0))?;
    polyphony.define_singleton_method("__malloc_trim__", function!(rb_malloc_trim, 0))?;
    polyphony.define_singleton_method("__idle_limit__=", function!(rb_set_idle_limit, 1))?;
    polyphony.define_singleton_method("__root_cooperative__", function!(rb_root_cooperative, 1))?;
    polyphony.define_singleton_method("backend_for", function!(rb_backend_for, 1))?;
    polyphony.define_singleton_method("backend", function!(rb_current_backend, 0))?;
    polyphony.define_singleton_method("backend_kind", function!(rb_backend_kind, 0))?;
    Ok(())
}

extern "C" {
    fn pthread_atfork(
        prepare: Option<extern "C" fn()>,
        parent: Option<extern "C" fn()>,
        child: Option<extern "C" fn()>,
    ) -> std::ffi::c_int;
}

/// # Safety
/// `child` must be safe to run in a freshly forked child (no locks, no allocation).
unsafe fn libc_atfork(child: extern "C" fn()) {
    // SAFETY: per this function's contract.
    unsafe { pthread_atfork(None, None, Some(child)) };
}
