//! The event loop for C: `polyphony_loop_*` drive the runtime's driver (io_uring, or epoll)
//! from C. Operations own their buffers (a read's buffer, a copy of a write's data) until they
//! complete, also after a cancel, so a C caller never has to keep a buffer alive for the kernel.
//!
//! Two styles: start an operation and collect completions with `polyphony_loop_wait` and
//! `polyphony_loop_take`; or start it with a callback (`polyphony_loop_submit_*`) and let
//! `polyphony_loop_run` call it, until `polyphony_loop_stop` or no callback is left.

use std::collections::{HashMap, VecDeque};
use std::ffi::{c_int, c_void};
use std::os::fd::IntoRawFd;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use polyphony_runtime::op::{Accept, Connect, Op, PollAdd, Read, Write};
use polyphony_runtime::{Driver, Kind, OpId, Waker};

use crate::status::{boundary, boundary_void, non_null, polyphony_result, Failure, Outcome};

/// io_uring when the kernel offers it, else epoll.
pub const POLYPHONY_LOOP_AUTO: c_int = 0;
/// io_uring only.
pub const POLYPHONY_LOOP_IO_URING: c_int = 1;
/// epoll only.
pub const POLYPHONY_LOOP_EPOLL: c_int = 2;

/// How an operation ended.
#[repr(C)]
pub struct polyphony_completion {
    /// The operation's id, as its start gave it.
    pub id: u64,
    /// `POLYPHONY_RESULT_OK`, or `POLYPHONY_RESULT_SYSTEM_ERROR` when the operation failed.
    pub result: polyphony_result,
    /// With `POLYPHONY_RESULT_SYSTEM_ERROR`: the errno (ECONNRESET, ECANCELED...); else 0.
    pub error: c_int,
    /// A read's or write's byte count (0 for a read: the end of the input); an accept's new
    /// descriptor (non-blocking, close-on-exec, now the caller's); a poll's ready events; 0 for
    /// a connect or a timeout.
    pub value: u64,
    /// A read's bytes (`value` of them), else NULL; owned by the loop (see where it comes from
    /// for how long they stay).
    pub data: *const c_void,
}

/// Called when an operation started with it completes, from `polyphony_loop_run`. The
/// completion, and a read's bytes, are valid during the call only. It may start operations,
/// cancel others, and call `polyphony_loop_stop`; it must not free the loop.
pub type polyphony_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, completion: *const polyphony_completion)>;

type Callback = unsafe extern "C" fn(*mut c_void, *const polyphony_completion);

#[derive(Clone, Copy)]
enum OpKind {
    Read,
    Write,
    Accept,
    Poll,
    Connect,
    /// A timeout: a read of the timerfd (closed when the op ends).
    Timer(i32),
}

/// An event loop: made by `polyphony_loop_new`, freed by `polyphony_loop_free`; used by one
/// thread (wake it from another with a `polyphony_waker`).
pub struct polyphony_loop {
    driver: Driver,
    kinds: HashMap<u64, OpKind>,
    completed: VecDeque<u64>,
    callbacks: HashMap<u64, (Callback, usize)>,
    /// The bytes of the read `polyphony_loop_take` gave last.
    taken: Vec<u8>,
    stopped: bool,
}

/// Wakes a loop's wait from any thread: made by `polyphony_loop_waker`, freed by
/// `polyphony_waker_free`; it may outlive its loop (waking nothing then).
pub struct polyphony_waker {
    waker: Arc<Waker>,
}

/// The loop behind a pointer from C.
///
/// # Safety
/// `event_loop`, if not NULL, must be a live loop not otherwise borrowed.
unsafe fn live<'a>(event_loop: *mut polyphony_loop) -> Result<&'a mut polyphony_loop, Failure> {
    non_null(event_loop, "event_loop")?;
    // SAFETY: checked non-NULL; live per the contract.
    Ok(unsafe { &mut *event_loop })
}

/// Writes `value` to `out` when it is not NULL.
///
/// # Safety
/// `out`, if not NULL, must be writable.
unsafe fn give<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: per the contract.
        unsafe { out.write(value) };
    }
}

impl polyphony_loop {
    fn start<O: Op>(&mut self, op: O, kind: OpKind) -> Result<u64, Failure> {
        let id = self
            .driver
            .submit(op)
            .map_err(|e| Failure::system("starting the operation", &e))?
            .to_bits();
        self.kinds.insert(id, kind);
        Ok(id)
    }

    /// The completion of `id` and, for a read, its bytes; None while it runs.
    fn take(&mut self, id: u64) -> Result<Option<(polyphony_completion, Vec<u8>)>, Failure> {
        let kind = self.kinds.get(&id).copied().ok_or_else(|| {
            Failure::new(
                polyphony_result::InvalidArgument,
                format!("no operation {id} in this loop (taken, cancelled, or never started)"),
            )
        })?;
        let op = OpId::from_bits(id);
        if self.driver.completion(op).is_none() {
            return Ok(None);
        }
        self.kinds.remove(&id);
        let lost = || std::io::Error::from_raw_os_error(libc::EIO);
        let driver = &mut self.driver;
        let (outcome, bytes) = match kind {
            OpKind::Read => match driver.take::<Read>(op) {
                Some((outcome, bytes)) => (outcome.map(|n| n as u64), bytes),
                None => (Err(lost()), Vec::new()),
            },
            OpKind::Write => (
                driver
                    .take::<Write>(op)
                    .map_or_else(|| Err(lost()), |(n, _)| n.map(|n| n as u64)),
                Vec::new(),
            ),
            OpKind::Accept => (
                driver
                    .take::<Accept>(op)
                    .unwrap_or_else(|| Err(lost()))
                    .map(|fd| fd.into_raw_fd() as u64),
                Vec::new(),
            ),
            OpKind::Poll => (
                driver
                    .take::<PollAdd>(op)
                    .unwrap_or_else(|| Err(lost()))
                    .map(u64::from),
                Vec::new(),
            ),
            OpKind::Connect => (
                driver
                    .take::<Connect>(op)
                    .unwrap_or_else(|| Err(lost()))
                    .map(|()| 0),
                Vec::new(),
            ),
            OpKind::Timer(timerfd) => {
                let outcome = driver
                    .take::<Read>(op)
                    .map_or_else(|| Err(lost()), |(n, _)| n.map(|_| 0));
                // SAFETY: the timerfd is ours, closed once, now that its read has ended.
                unsafe { libc::close(timerfd) };
                (outcome, Vec::new())
            }
        };
        let completion = match outcome {
            Ok(value) => polyphony_completion {
                id,
                result: polyphony_result::Ok,
                error: 0,
                value,
                data: ptr::null(),
            },
            Err(e) => polyphony_completion {
                id,
                result: polyphony_result::SystemError,
                error: e.raw_os_error().unwrap_or(libc::EIO),
                value: 0,
                data: ptr::null(),
            },
        };
        let is_read = matches!(kind, OpKind::Read) && completion.result == polyphony_result::Ok;
        Ok(Some((completion, if is_read { bytes } else { Vec::new() })))
    }

    /// Waits for completions (`timeout` None: no limit) and queues them.
    fn wait(&mut self, timeout: Option<Duration>) -> Result<(), Failure> {
        let completed = &mut self.completed;
        self.driver
            .wait(timeout, |id| completed.push_back(id.to_bits()))
            .map_err(|e| Failure::system("waiting for completions", &e))
    }
}

/// Makes a loop of `kind` (POLYPHONY_LOOP_AUTO, _IO_URING or _EPOLL) and stores it in `*out`.
///
/// Returns `POLYPHONY_RESULT_OK`; `POLYPHONY_RESULT_INVALID_ARGUMENT` for an unknown kind;
/// `POLYPHONY_RESULT_UNSUPPORTED` for io_uring where the kernel has none or refuses it;
/// `POLYPHONY_RESULT_SYSTEM_ERROR` (out of descriptors or memory...).
///
/// # Safety
/// `out` must be writable.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_new(
    kind: c_int,
    out: *mut *mut polyphony_loop,
) -> polyphony_result {
    boundary(|| {
        non_null(out, "out")?;
        let driver = match kind {
            POLYPHONY_LOOP_AUTO => Driver::new(256),
            POLYPHONY_LOOP_IO_URING => Driver::with_kind(Kind::IoUring, 256),
            POLYPHONY_LOOP_EPOLL => Driver::with_kind(Kind::Epoll, 256),
            _ => {
                return Err(Failure::new(
                    polyphony_result::InvalidArgument,
                    format!("unknown loop kind {kind}"),
                ))
            }
        };
        let driver = driver.map_err(|e| {
            let mut failure = Failure::system("making the event loop", &e);
            if kind == POLYPHONY_LOOP_IO_URING && e.raw_os_error() == Some(libc::EPERM) {
                failure.status = polyphony_result::Unsupported;
            }
            failure
        })?;
        let made = Box::new(polyphony_loop {
            driver,
            kinds: HashMap::new(),
            completed: VecDeque::new(),
            callbacks: HashMap::new(),
            taken: Vec::new(),
            stopped: false,
        });
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { out.write(Box::into_raw(made)) };
        Ok(polyphony_result::Ok)
    })
}

/// Stores the loop's kind, POLYPHONY_LOOP_IO_URING or POLYPHONY_LOOP_EPOLL, in `*kind`.
///
/// # Safety
/// `event_loop` must be a live loop; `kind` writable.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_kind(
    event_loop: *mut polyphony_loop,
    kind: *mut c_int,
) -> polyphony_result {
    boundary(|| {
        // SAFETY: per this function's contract.
        let event_loop = unsafe { live(event_loop)? };
        non_null(kind, "kind")?;
        let value = match event_loop.driver.kind() {
            Kind::IoUring => POLYPHONY_LOOP_IO_URING,
            Kind::Epoll => POLYPHONY_LOOP_EPOLL,
        };
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { kind.write(value) };
        Ok(polyphony_result::Ok)
    })
}

/// Frees a loop; operations still in flight are cancelled first, their buffers kept until the
/// kernel lets go (NULL is ignored).
///
/// # Safety
/// `event_loop` must come from `polyphony_loop_new` and not be used afterwards, nor be running
/// (`polyphony_loop_run`).
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_free(event_loop: *mut polyphony_loop) {
    boundary_void(|| {
        if !event_loop.is_null() {
            // SAFETY: per the contract, it came from `Box::into_raw` and is freed once.
            drop(unsafe { Box::from_raw(event_loop) });
        }
    })
}

/// Starts `op` on the loop with an optional callback, and gives its id.
///
/// # Safety
/// `event_loop` must be a live loop; `id`, if not NULL, writable.
unsafe fn start<O: Op>(
    event_loop: *mut polyphony_loop,
    make: impl FnOnce() -> Result<(O, OpKind), Failure>,
    callback: Option<(Callback, *mut c_void)>,
    id: *mut u64,
) -> Outcome {
    // SAFETY: per this function's contract.
    let event_loop = unsafe { live(event_loop)? };
    let (op, kind) = make()?;
    let started = event_loop.start(op, kind)?;
    if let Some((callback, userdata)) = callback {
        event_loop
            .callbacks
            .insert(started, (callback, userdata as usize));
    }
    // SAFETY: per this function's contract.
    unsafe { give(id, started) };
    Ok(polyphony_result::Ok)
}

fn read_op(fd: c_int, capacity: usize) -> Result<(Read, OpKind), Failure> {
    Ok((
        Read::new(fd, Vec::with_capacity(capacity.max(1)), u64::MAX),
        OpKind::Read,
    ))
}

/// # Safety
/// `data` must be readable for `len` bytes (NULL if 0).
unsafe fn write_op(fd: c_int, data: *const c_void, len: usize) -> Result<(Write, OpKind), Failure> {
    let bytes = if len == 0 {
        Vec::new()
    } else {
        non_null(data, "data")?;
        // SAFETY: the caller guarantees `len` readable bytes; they are copied at once.
        unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }.to_vec()
    };
    Ok((Write::new(fd, bytes, u64::MAX), OpKind::Write))
}

/// # Safety
/// `addr` must be readable for `len` bytes.
unsafe fn connect_op(
    fd: c_int,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
) -> Result<(Connect, OpKind), Failure> {
    non_null(addr, "addr")?;
    // SAFETY: the caller guarantees `len` readable bytes at `addr`; they are copied.
    Ok((unsafe { Connect::new(fd, addr, len) }, OpKind::Connect))
}

fn timeout_op(milliseconds: u64) -> Result<(Read, OpKind), Failure> {
    // SAFETY: plain timerfd calls on a descriptor we create and own.
    let timerfd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
        )
    };
    if timerfd < 0 {
        let error = std::io::Error::last_os_error();
        return Err(Failure::system("timerfd_create", &error));
    }
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: (milliseconds / 1000).min(i64::MAX as u64) as libc::time_t,
            // A zero it_value disarms a timer: wait at least a nanosecond.
            tv_nsec: ((milliseconds % 1000) * 1_000_000).max(1) as libc::c_long,
        },
    };
    // SAFETY: `spec` is valid; `timerfd` is ours.
    unsafe { libc::timerfd_settime(timerfd, 0, &spec, ptr::null_mut()) };
    Ok((
        Read::new(timerfd, Vec::with_capacity(8), u64::MAX),
        OpKind::Timer(timerfd),
    ))
}

/// Starts a timeout: a read of a timerfd armed for `milliseconds`.
///
/// # Safety
/// As `start`.
unsafe fn start_timeout(
    event_loop: *mut polyphony_loop,
    milliseconds: u64,
    callback: Option<(Callback, *mut c_void)>,
    id: *mut u64,
) -> Outcome {
    // SAFETY: per this function's contract; checked before the timerfd is made.
    unsafe { live(event_loop)? };
    let (op, kind) = timeout_op(milliseconds)?;
    // SAFETY: per this function's contract.
    let outcome = unsafe { start(event_loop, || Ok((op, kind)), callback, id) };
    if let (Err(_), OpKind::Timer(timerfd)) = (&outcome, kind) {
        // SAFETY: the timerfd is ours, and the op that would have read it never started.
        unsafe { libc::close(timerfd) };
    }
    outcome
}

/// The callback of a `polyphony_loop_submit_*`, refused when NULL.
fn required(
    callback: polyphony_callback,
    userdata: *mut c_void,
) -> Result<Option<(Callback, *mut c_void)>, Failure> {
    let callback = callback.ok_or_else(|| Failure::null("the callback"))?;
    Ok(Some((callback, userdata)))
}

/// Starts a read of up to `capacity` bytes from `fd` into a buffer the loop owns, and stores
/// its id in `*id`. Its completion gives the bytes.
///
/// Every `polyphony_loop_` operation start returns `POLYPHONY_RESULT_OK`;
/// `POLYPHONY_RESULT_NULL_ARGUMENT`; or `POLYPHONY_RESULT_SYSTEM_ERROR` if the loop could not
/// take it. A failed operation is reported in its completion, not here.
///
/// # Safety
/// `event_loop` must be a live loop; `id` writable.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_read(
    event_loop: *mut polyphony_loop,
    fd: c_int,
    capacity: usize,
    id: *mut u64,
) -> polyphony_result {
    boundary(|| {
        non_null(id, "id")?;
        // SAFETY: per this function's contract.
        unsafe { start(event_loop, || read_op(fd, capacity), None, id) }
    })
}

/// Starts a write of a copy of `data[0..len]` to `fd` (once: the count may be short), and
/// stores its id in `*id`.
///
/// # Safety
/// `event_loop` must be a live loop; `data` readable for `len` bytes (NULL if 0); `id`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_write(
    event_loop: *mut polyphony_loop,
    fd: c_int,
    data: *const c_void,
    len: usize,
    id: *mut u64,
) -> polyphony_result {
    boundary(|| {
        non_null(id, "id")?;
        // SAFETY: per this function's contract.
        unsafe { start(event_loop, || write_op(fd, data, len), None, id) }
    })
}

/// Starts accepting a connection on listening socket `fd`, and stores its id in `*id`.
///
/// # Safety
/// `event_loop` must be a live loop; `id` writable.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_accept(
    event_loop: *mut polyphony_loop,
    fd: c_int,
    id: *mut u64,
) -> polyphony_result {
    boundary(|| {
        non_null(id, "id")?;
        let make = || Ok((Accept::new(fd), OpKind::Accept));
        // SAFETY: per this function's contract.
        unsafe { start(event_loop, make, None, id) }
    })
}

/// Starts waiting until `fd` is ready for `events` (POLLIN, POLLOUT...), and stores its id in
/// `*id`.
///
/// # Safety
/// `event_loop` must be a live loop; `id` writable.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_poll(
    event_loop: *mut polyphony_loop,
    fd: c_int,
    events: u32,
    id: *mut u64,
) -> polyphony_result {
    boundary(|| {
        non_null(id, "id")?;
        let make = || Ok((PollAdd::new(fd, events), OpKind::Poll));
        // SAFETY: per this function's contract.
        unsafe { start(event_loop, make, None, id) }
    })
}

/// Starts connecting non-blocking socket `fd` to the `len` bytes of address at `addr`
/// (copied), and stores its id in `*id`.
///
/// # Safety
/// `event_loop` must be a live loop; `addr` readable for `len` bytes; `id` writable.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_connect(
    event_loop: *mut polyphony_loop,
    fd: c_int,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
    id: *mut u64,
) -> polyphony_result {
    boundary(|| {
        non_null(id, "id")?;
        // SAFETY: per this function's contract.
        unsafe { start(event_loop, || connect_op(fd, addr, len), None, id) }
    })
}

/// Starts a timeout of `milliseconds`, and stores its id in `*id`.
///
/// # Safety
/// `event_loop` must be a live loop; `id` writable.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_timeout(
    event_loop: *mut polyphony_loop,
    milliseconds: u64,
    id: *mut u64,
) -> polyphony_result {
    boundary(|| {
        non_null(id, "id")?;
        // SAFETY: per this function's contract.
        unsafe { start_timeout(event_loop, milliseconds, None, id) }
    })
}

/// Waits at most `timeout_ms` milliseconds (-1: no limit; 0: do not block) for completions,
/// unless some are already waiting to be reported, and reports up to `capacity` of them:
/// their ids in `done`, how many in `*count` (more stay queued for the next call; 0 when the
/// time ran out or a waker woke the loop). Get each one's completion with
/// `polyphony_loop_take`.
///
/// Returns `POLYPHONY_RESULT_OK`, or `POLYPHONY_RESULT_SYSTEM_ERROR`.
///
/// # Safety
/// `event_loop` must be a live loop; `done` writable for `capacity` ids (NULL if 0); `count`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_wait(
    event_loop: *mut polyphony_loop,
    timeout_ms: c_int,
    done: *mut u64,
    capacity: usize,
    count: *mut usize,
) -> polyphony_result {
    boundary(|| {
        // SAFETY: per this function's contract.
        let event_loop = unsafe { live(event_loop)? };
        if capacity > 0 {
            non_null(done, "done")?;
        }
        non_null(count, "count")?;
        if event_loop.completed.is_empty() {
            event_loop.wait(u64::try_from(timeout_ms).ok().map(Duration::from_millis))?;
        }
        let n = capacity.min(event_loop.completed.len());
        for (i, id) in event_loop.completed.drain(..n).enumerate() {
            // SAFETY: `i < capacity`, writable per the contract.
            unsafe { done.add(i).write(id) };
        }
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { count.write(n) };
        Ok(polyphony_result::Ok)
    })
}

/// Fills `*completion` with how operation `id` ended; the loop then forgets it. A read's bytes
/// (`completion->data`) stay valid until the next `polyphony_loop_take` on this loop, or its
/// free.
///
/// Returns `POLYPHONY_RESULT_OK`; `POLYPHONY_RESULT_INCOMPLETE` while the operation runs
/// (nothing written); `POLYPHONY_RESULT_INVALID_ARGUMENT` for an id the loop does not know
/// (taken already, cancelled, or never started).
///
/// # Safety
/// `event_loop` must be a live loop; `completion` writable.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_take(
    event_loop: *mut polyphony_loop,
    id: u64,
    completion: *mut polyphony_completion,
) -> polyphony_result {
    boundary(|| {
        // SAFETY: per this function's contract.
        let event_loop = unsafe { live(event_loop)? };
        non_null(completion, "completion")?;
        let Some((mut ended, bytes)) = event_loop.take(id)? else {
            return Ok(polyphony_result::Incomplete);
        };
        event_loop.callbacks.remove(&id);
        event_loop.completed.retain(|c| *c != id);
        event_loop.taken = bytes;
        if !event_loop.taken.is_empty() {
            ended.data = event_loop.taken.as_ptr().cast();
        }
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { completion.write(ended) };
        Ok(polyphony_result::Ok)
    })
}

/// Gives operation `id` up: it is never reported, its buffers stay with the loop until the
/// kernel lets go, and a connection a cancelled accept got is closed.
///
/// Returns `POLYPHONY_RESULT_OK`; `POLYPHONY_RESULT_INVALID_ARGUMENT` for an id the loop does
/// not know; `POLYPHONY_RESULT_SYSTEM_ERROR`.
///
/// # Safety
/// `event_loop` must be a live loop.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_cancel(
    event_loop: *mut polyphony_loop,
    id: u64,
) -> polyphony_result {
    boundary(|| {
        // SAFETY: per this function's contract.
        let event_loop = unsafe { live(event_loop)? };
        let Some(kind) = event_loop.kinds.remove(&id) else {
            return Err(Failure::new(
                polyphony_result::InvalidArgument,
                format!("no operation {id} in this loop (taken, cancelled, or never started)"),
            ));
        };
        event_loop.completed.retain(|c| *c != id);
        event_loop.callbacks.remove(&id);
        let cancelled = event_loop.driver.cancel(OpId::from_bits(id));
        if let OpKind::Timer(timerfd) = kind {
            // The read, if still in the kernel, holds its own reference to the file.
            // SAFETY: the timerfd is ours and closed once.
            unsafe { libc::close(timerfd) };
        }
        cancelled.map_err(|e| Failure::system("cancelling the operation", &e))?;
        Ok(polyphony_result::Ok)
    })
}

/// `polyphony_loop_read` with a callback, called from `polyphony_loop_run` with the bytes
/// read. The id is stored in `*id` unless that is NULL.
///
/// Every `polyphony_loop_submit_` refuses a NULL callback (`POLYPHONY_RESULT_NULL_ARGUMENT`,
/// nothing started).
///
/// # Safety
/// `event_loop` must be a live loop; `id`, if not NULL, writable; `callback` is called with
/// `userdata`, which the library never touches.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_submit_read(
    event_loop: *mut polyphony_loop,
    fd: c_int,
    capacity: usize,
    callback: polyphony_callback,
    userdata: *mut c_void,
    id: *mut u64,
) -> polyphony_result {
    boundary(|| {
        let callback = required(callback, userdata)?;
        // SAFETY: per this function's contract.
        unsafe { start(event_loop, || read_op(fd, capacity), callback, id) }
    })
}

/// `polyphony_loop_write` with a callback.
///
/// # Safety
/// As `polyphony_loop_write` and `polyphony_loop_submit_read`.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_submit_write(
    event_loop: *mut polyphony_loop,
    fd: c_int,
    data: *const c_void,
    len: usize,
    callback: polyphony_callback,
    userdata: *mut c_void,
    id: *mut u64,
) -> polyphony_result {
    boundary(|| {
        let callback = required(callback, userdata)?;
        // SAFETY: per this function's contract.
        unsafe { start(event_loop, || write_op(fd, data, len), callback, id) }
    })
}

/// `polyphony_loop_accept` with a callback.
///
/// # Safety
/// As `polyphony_loop_submit_read`.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_submit_accept(
    event_loop: *mut polyphony_loop,
    fd: c_int,
    callback: polyphony_callback,
    userdata: *mut c_void,
    id: *mut u64,
) -> polyphony_result {
    boundary(|| {
        let callback = required(callback, userdata)?;
        let make = || Ok((Accept::new(fd), OpKind::Accept));
        // SAFETY: per this function's contract.
        unsafe { start(event_loop, make, callback, id) }
    })
}

/// `polyphony_loop_poll` with a callback.
///
/// # Safety
/// As `polyphony_loop_submit_read`.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_submit_poll(
    event_loop: *mut polyphony_loop,
    fd: c_int,
    events: u32,
    callback: polyphony_callback,
    userdata: *mut c_void,
    id: *mut u64,
) -> polyphony_result {
    boundary(|| {
        let callback = required(callback, userdata)?;
        let make = || Ok((PollAdd::new(fd, events), OpKind::Poll));
        // SAFETY: per this function's contract.
        unsafe { start(event_loop, make, callback, id) }
    })
}

/// `polyphony_loop_connect` with a callback.
///
/// # Safety
/// As `polyphony_loop_connect` and `polyphony_loop_submit_read`.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_submit_connect(
    event_loop: *mut polyphony_loop,
    fd: c_int,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
    callback: polyphony_callback,
    userdata: *mut c_void,
    id: *mut u64,
) -> polyphony_result {
    boundary(|| {
        let callback = required(callback, userdata)?;
        // SAFETY: per this function's contract.
        unsafe { start(event_loop, || connect_op(fd, addr, len), callback, id) }
    })
}

/// `polyphony_loop_timeout` with a callback.
///
/// # Safety
/// As `polyphony_loop_submit_read`.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_submit_timeout(
    event_loop: *mut polyphony_loop,
    milliseconds: u64,
    callback: polyphony_callback,
    userdata: *mut c_void,
    id: *mut u64,
) -> polyphony_result {
    boundary(|| {
        let callback = required(callback, userdata)?;
        // SAFETY: per this function's contract.
        unsafe { start_timeout(event_loop, milliseconds, callback, id) }
    })
}

/// Runs the loop: calls the callbacks of operations as they complete, until
/// `polyphony_loop_stop` is called (from a callback: the run returns after that round's
/// callbacks) or no operation with a callback is left. Completions of operations without a
/// callback stay queued for `polyphony_loop_wait`.
///
/// Returns `POLYPHONY_RESULT_OK`, or `POLYPHONY_RESULT_SYSTEM_ERROR` (a failed wait).
///
/// # Safety
/// `event_loop` must be a live loop, not already running; the callbacks' contracts are the
/// caller's.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_run(event_loop: *mut polyphony_loop) -> polyphony_result {
    boundary(|| {
        // SAFETY: per this function's contract.
        unsafe { live(event_loop)? }.stopped = false;
        loop {
            // SAFETY: the loop stays alive for the whole run; each borrow ends before a
            // callback, which may start or cancel operations (re-borrowing).
            let this = unsafe { &mut *event_loop };
            if this.stopped || this.callbacks.is_empty() {
                return Ok(polyphony_result::Ok);
            }
            let callbacks = &this.callbacks;
            let ready: Vec<u64> = this
                .completed
                .iter()
                .copied()
                .filter(|id| callbacks.contains_key(id))
                .collect();
            if ready.is_empty() {
                this.wait(None)?;
                continue;
            }
            this.completed.retain(|id| !ready.contains(id));
            for id in ready {
                // SAFETY: as above.
                let this = unsafe { &mut *event_loop };
                // A callback of this round may have cancelled it.
                let Some((callback, userdata)) = this.callbacks.remove(&id) else {
                    continue;
                };
                let Some((mut ended, bytes)) = this.take(id)? else {
                    continue;
                };
                if !bytes.is_empty() {
                    ended.data = bytes.as_ptr().cast();
                }
                // SAFETY: the caller's callback, with the userdata it gave; `ended` and `bytes`
                // live until it returns.
                unsafe { callback(userdata as *mut c_void, &ended) };
            }
        }
    })
}

/// Makes `polyphony_loop_run` return after the callbacks of this round.
///
/// Returns `POLYPHONY_RESULT_OK`, or `POLYPHONY_RESULT_NULL_ARGUMENT`.
///
/// # Safety
/// `event_loop` must be a live loop.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_stop(event_loop: *mut polyphony_loop) -> polyphony_result {
    boundary(|| {
        // SAFETY: per this function's contract.
        unsafe { live(event_loop)? }.stopped = true;
        Ok(polyphony_result::Ok)
    })
}

/// Makes a waker that ends the loop's current or next wait, from any thread, and stores it
/// in `*waker`.
///
/// # Safety
/// `event_loop` must be a live loop; `waker` writable.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_waker(
    event_loop: *mut polyphony_loop,
    waker: *mut *mut polyphony_waker,
) -> polyphony_result {
    boundary(|| {
        // SAFETY: per this function's contract.
        let event_loop = unsafe { live(event_loop)? };
        non_null(waker, "waker")?;
        let made = Box::new(polyphony_waker {
            waker: event_loop.driver.waker(),
        });
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { waker.write(Box::into_raw(made)) };
        Ok(polyphony_result::Ok)
    })
}

/// Wakes the loop (from any thread).
///
/// Returns `POLYPHONY_RESULT_OK`, or `POLYPHONY_RESULT_NULL_ARGUMENT`.
///
/// # Safety
/// `waker` must be a live waker.
#[no_mangle]
pub unsafe extern "C" fn polyphony_waker_wake(waker: *const polyphony_waker) -> polyphony_result {
    boundary(|| {
        non_null(waker, "waker")?;
        // SAFETY: checked non-NULL; live per the contract.
        unsafe { (*waker).waker.wake() };
        Ok(polyphony_result::Ok)
    })
}

/// Frees a waker (NULL is ignored).
///
/// # Safety
/// `waker` must come from `polyphony_loop_waker` and not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn polyphony_waker_free(waker: *mut polyphony_waker) {
    boundary_void(|| {
        if !waker.is_null() {
            // SAFETY: per the contract, it came from `Box::into_raw` and is freed once.
            drop(unsafe { Box::from_raw(waker) });
        }
    })
}
