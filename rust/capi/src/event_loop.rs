//! The event loop for C: `polyphony_loop_*` drive the runtime's driver (io_uring, or epoll)
//! from C. Operations own their buffers (a read's buffer, a copy of a write's data) until they
//! complete, also after a cancel, so a C caller never has to keep a buffer alive for the kernel.
//!
//! Two styles: submit an op and collect completions with `polyphony_loop_wait` and
//! `polyphony_loop_take`; or submit it with a completion callback (`polyphony_loop_submit_*`)
//! and let `polyphony_loop_run` call it, until `polyphony_loop_stop` or nothing is left.
//! A panic inside the library is caught at the boundary and becomes an error code.

use std::collections::{HashMap, VecDeque};
use std::ffi::{c_int, c_void};
use std::os::fd::IntoRawFd;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use polyphony_runtime::op::{Accept, Connect, PollAdd, Read, Write};
use polyphony_runtime::{Driver, Kind, OpId, Waker};

/// io_uring when the kernel offers it, else epoll.
pub const POLYPHONY_LOOP_AUTO: c_int = 0;
/// io_uring only.
pub const POLYPHONY_LOOP_IO_URING: c_int = 1;
/// epoll only.
pub const POLYPHONY_LOOP_EPOLL: c_int = 2;

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

/// Called when an op submitted with a callback completes: `result` is a count, descriptor or
/// events when non-negative, -errno otherwise; for a read, `data` points to the bytes read
/// (valid during the call only), else it is NULL.
pub type polyphony_callback =
    Option<unsafe extern "C" fn(userdata: *mut c_void, result: isize, data: *const c_void)>;

/// An event loop; not thread-safe (wake it from another thread with a `polyphony_waker`).
pub struct polyphony_loop {
    driver: Driver,
    kinds: HashMap<u64, OpKind>,
    completed: VecDeque<u64>,
    callbacks: HashMap<
        u64,
        (
            unsafe extern "C" fn(*mut c_void, isize, *const c_void),
            usize,
        ),
    >,
    stopped: bool,
}

/// Wakes a loop's wait from any thread.
pub struct polyphony_waker {
    waker: Arc<Waker>,
}

/// A new loop of `kind` (POLYPHONY_LOOP_AUTO, _IO_URING or _EPOLL); NULL if it cannot be had.
#[no_mangle]
pub extern "C" fn polyphony_loop_new(kind: c_int) -> *mut polyphony_loop {
    let driver = match kind {
        POLYPHONY_LOOP_AUTO => Driver::new(256),
        POLYPHONY_LOOP_IO_URING => Driver::with_kind(Kind::IoUring, 256),
        POLYPHONY_LOOP_EPOLL => Driver::with_kind(Kind::Epoll, 256),
        _ => return ptr::null_mut(),
    };
    match driver {
        Ok(driver) => Box::into_raw(Box::new(polyphony_loop {
            driver,
            kinds: HashMap::new(),
            completed: VecDeque::new(),
            callbacks: HashMap::new(),
            stopped: false,
        })),
        Err(_) => ptr::null_mut(),
    }
}

/// POLYPHONY_LOOP_IO_URING or POLYPHONY_LOOP_EPOLL.
///
/// # Safety
/// `event_loop` must be a live loop.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_kind(event_loop: *const polyphony_loop) -> c_int {
    // SAFETY: per the contract.
    match unsafe { (*event_loop).driver.kind() } {
        Kind::IoUring => POLYPHONY_LOOP_IO_URING,
        Kind::Epoll => POLYPHONY_LOOP_EPOLL,
    }
}

/// Frees a loop; operations still in flight are cancelled first (NULL is ignored).
///
/// # Safety
/// `event_loop` must come from `polyphony_loop_new` and not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_free(event_loop: *mut polyphony_loop) {
    if !event_loop.is_null() {
        // SAFETY: per the contract, it came from `Box::into_raw` and is freed once.
        drop(unsafe { Box::from_raw(event_loop) });
    }
}

fn submit<O: polyphony_runtime::op::Op>(
    event_loop: *mut polyphony_loop,
    op: O,
    kind: OpKind,
) -> u64 {
    if event_loop.is_null() {
        return 0;
    }
    // SAFETY: non-NULL; the caller guarantees a live loop, used from one thread.
    let event_loop = unsafe { &mut *event_loop };
    match event_loop.driver.submit(op) {
        Ok(id) => {
            event_loop.kinds.insert(id.to_bits(), kind);
            id.to_bits()
        }
        Err(_) => 0,
    }
}

/// Reads up to `capacity` bytes from `fd` into a buffer the loop owns. Returns the op's id,
/// or 0 on failure. Get the bytes with `polyphony_loop_take`.
///
/// # Safety
/// `event_loop` must be a live loop.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_read(
    event_loop: *mut polyphony_loop,
    fd: c_int,
    capacity: usize,
) -> u64 {
    submit(
        event_loop,
        Read::new(fd, Vec::with_capacity(capacity.max(1)), u64::MAX),
        OpKind::Read,
    )
}

/// Writes a copy of `data[0..len]` to `fd` (once: the result may be a short count).
///
/// # Safety
/// `event_loop` must be a live loop; `data` readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_write(
    event_loop: *mut polyphony_loop,
    fd: c_int,
    data: *const c_void,
    len: usize,
) -> u64 {
    if data.is_null() && len > 0 {
        return 0;
    }
    let bytes = if len == 0 {
        Vec::new()
    } else {
        // SAFETY: the caller guarantees `len` readable bytes; they are copied at once.
        unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len) }.to_vec()
    };
    submit(event_loop, Write::new(fd, bytes, u64::MAX), OpKind::Write)
}

/// Accepts a connection on listening socket `fd`; the result is the new descriptor
/// (non-blocking, close-on-exec), which the caller then owns.
///
/// # Safety
/// `event_loop` must be a live loop.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_accept(event_loop: *mut polyphony_loop, fd: c_int) -> u64 {
    submit(event_loop, Accept::new(fd), OpKind::Accept)
}

/// Waits until `fd` is ready for `events` (POLLIN, POLLOUT...); the result is the ready events.
///
/// # Safety
/// `event_loop` must be a live loop.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_poll(
    event_loop: *mut polyphony_loop,
    fd: c_int,
    events: u32,
) -> u64 {
    submit(event_loop, PollAdd::new(fd, events), OpKind::Poll)
}

/// Starts what was submitted and waits at most `timeout_ms` milliseconds (-1: no limit; 0: do
/// not block) for completions. Writes up to `capacity` completed ids to `done` and returns how
/// many (more stay queued for the next call), or -errno.
///
/// # Safety
/// `event_loop` must be a live loop; `done` writable for `capacity` ids.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_wait(
    event_loop: *mut polyphony_loop,
    timeout_ms: c_int,
    done: *mut u64,
    capacity: usize,
) -> c_int {
    if event_loop.is_null() || (done.is_null() && capacity > 0) {
        return -libc::EINVAL;
    }
    // SAFETY: non-NULL; the caller guarantees a live loop.
    let event_loop = unsafe { &mut *event_loop };
    if event_loop.completed.is_empty() {
        let timeout = u64::try_from(timeout_ms).ok().map(Duration::from_millis);
        let completed = &mut event_loop.completed;
        if let Err(e) = event_loop
            .driver
            .wait(timeout, |id| completed.push_back(id.to_bits()))
        {
            return -e.raw_os_error().unwrap_or(libc::EIO);
        }
    }
    let n = capacity.min(event_loop.completed.len());
    for i in 0..n {
        let id = event_loop.completed.pop_front().expect("counted");
        // SAFETY: `i < capacity`, writable per the contract.
        unsafe { done.add(i).write(id) };
    }
    n as c_int
}

/// The result of completed op `id`, which is then forgotten: a count, descriptor or ready
/// events when non-negative, -errno otherwise (-EAGAIN: not complete yet). For a read, up to
/// `buf_capacity` of the bytes read are copied to `buf` (a read's result is the byte count).
///
/// # Safety
/// `event_loop` must be a live loop; `buf` writable for `buf_capacity` bytes (or NULL).
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_take(
    event_loop: *mut polyphony_loop,
    id: u64,
    buf: *mut c_void,
    buf_capacity: usize,
) -> isize {
    if event_loop.is_null() {
        return -(libc::EINVAL as isize);
    }
    // SAFETY: non-NULL; the caller guarantees a live loop.
    let event_loop = unsafe { &mut *event_loop };
    let Some(kind) = event_loop.kinds.get(&id).copied() else {
        return -(libc::EINVAL as isize);
    };
    let op = OpId::from_bits(id);
    if event_loop.driver.completion(op).is_none() {
        return -(libc::EAGAIN as isize);
    }
    event_loop.kinds.remove(&id);
    let errno = |e: std::io::Error| -(e.raw_os_error().unwrap_or(libc::EIO) as isize);
    let driver = &mut event_loop.driver;
    match kind {
        OpKind::Read => match driver.take::<Read>(op) {
            Some((Ok(n), data)) => {
                let copied = n.min(buf_capacity);
                if copied > 0 && !buf.is_null() {
                    // SAFETY: `buf` is writable for `buf_capacity >= copied` bytes.
                    unsafe { ptr::copy_nonoverlapping(data.as_ptr(), buf.cast::<u8>(), copied) };
                }
                n as isize
            }
            Some((Err(e), _)) => errno(e),
            None => -(libc::EIO as isize),
        },
        OpKind::Write => match driver.take::<Write>(op) {
            Some((Ok(n), _)) => n as isize,
            Some((Err(e), _)) => errno(e),
            None => -(libc::EIO as isize),
        },
        OpKind::Accept => match driver.take::<Accept>(op) {
            Some(Ok(fd)) => fd.into_raw_fd() as isize,
            Some(Err(e)) => errno(e),
            None => -(libc::EIO as isize),
        },
        OpKind::Poll => match driver.take::<PollAdd>(op) {
            Some(Ok(events)) => events as isize,
            Some(Err(e)) => errno(e),
            None => -(libc::EIO as isize),
        },
        OpKind::Connect => match driver.take::<Connect>(op) {
            Some(Ok(())) => 0,
            Some(Err(e)) => errno(e),
            None => -(libc::EIO as isize),
        },
        OpKind::Timer(timerfd) => {
            let result = match driver.take::<Read>(op) {
                Some((Ok(_), _)) => 0,
                Some((Err(e), _)) => errno(e),
                None => -(libc::EIO as isize),
            };
            // SAFETY: the timerfd is ours, closed once, now that its read has ended.
            unsafe { libc::close(timerfd) };
            result
        }
    }
}

/// Gives op `id` up: its buffers stay with the loop until the kernel lets go; a connection a
/// cancelled accept got is closed. Returns 0, or -errno.
///
/// # Safety
/// `event_loop` must be a live loop.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_cancel(event_loop: *mut polyphony_loop, id: u64) -> c_int {
    if event_loop.is_null() {
        return -libc::EINVAL;
    }
    // SAFETY: non-NULL; the caller guarantees a live loop.
    let event_loop = unsafe { &mut *event_loop };
    let kind = event_loop.kinds.remove(&id);
    event_loop.completed.retain(|c| *c != id);
    event_loop.callbacks.remove(&id);
    let cancelled = event_loop.driver.cancel(OpId::from_bits(id));
    if let Some(OpKind::Timer(timerfd)) = kind {
        // The read, if still in the kernel, holds its own reference to the file.
        // SAFETY: the timerfd is ours and closed once.
        unsafe { libc::close(timerfd) };
    }
    match cancelled {
        Ok(()) => 0,
        Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
    }
}

fn with_callback(
    event_loop: *mut polyphony_loop,
    id: u64,
    callback: polyphony_callback,
    userdata: *mut c_void,
) -> u64 {
    match (id, callback) {
        (0, _) => 0,
        (id, Some(callback)) => {
            // SAFETY: `id` non-zero means `event_loop` was a live loop (checked by `submit`).
            unsafe {
                (*event_loop)
                    .callbacks
                    .insert(id, (callback, userdata as usize))
            };
            id
        }
        (id, None) => id,
    }
}

/// `polyphony_loop_read` with a callback (called with the bytes read).
///
/// # Safety
/// `event_loop` must be a live loop; `callback` is called with `userdata` from
/// `polyphony_loop_run`.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_submit_read(
    event_loop: *mut polyphony_loop,
    fd: c_int,
    capacity: usize,
    callback: polyphony_callback,
    userdata: *mut c_void,
) -> u64 {
    // SAFETY: per the contract.
    let id = unsafe { polyphony_loop_read(event_loop, fd, capacity) };
    with_callback(event_loop, id, callback, userdata)
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
) -> u64 {
    // SAFETY: per the contract.
    let id = unsafe { polyphony_loop_write(event_loop, fd, data, len) };
    with_callback(event_loop, id, callback, userdata)
}

/// `polyphony_loop_accept` with a callback (called with the new descriptor).
///
/// # Safety
/// As `polyphony_loop_submit_read`.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_submit_accept(
    event_loop: *mut polyphony_loop,
    fd: c_int,
    callback: polyphony_callback,
    userdata: *mut c_void,
) -> u64 {
    // SAFETY: per the contract.
    let id = unsafe { polyphony_loop_accept(event_loop, fd) };
    with_callback(event_loop, id, callback, userdata)
}

/// Connects non-blocking socket `fd` to the `len` bytes of address at `addr` (copied); the
/// callback gets 0 or -errno.
///
/// # Safety
/// As `polyphony_loop_submit_read`; `addr` readable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_submit_connect(
    event_loop: *mut polyphony_loop,
    fd: c_int,
    addr: *const libc::sockaddr,
    len: libc::socklen_t,
    callback: polyphony_callback,
    userdata: *mut c_void,
) -> u64 {
    if addr.is_null() {
        return 0;
    }
    // SAFETY: the caller guarantees `len` readable bytes at `addr`.
    let op = unsafe { Connect::new(fd, addr, len) };
    let id = submit(event_loop, op, OpKind::Connect);
    with_callback(event_loop, id, callback, userdata)
}

/// Calls back (with 0) after `milliseconds`.
///
/// # Safety
/// As `polyphony_loop_submit_read`.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_submit_timeout(
    event_loop: *mut polyphony_loop,
    milliseconds: u64,
    callback: polyphony_callback,
    userdata: *mut c_void,
) -> u64 {
    // SAFETY: plain timerfd calls on a descriptor we create and own.
    let timerfd = unsafe {
        libc::timerfd_create(
            libc::CLOCK_MONOTONIC,
            libc::TFD_CLOEXEC | libc::TFD_NONBLOCK,
        )
    };
    if timerfd < 0 {
        return 0;
    }
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: (milliseconds / 1000) as libc::time_t,
            // A zero it_value disarms a timer: wait at least a nanosecond.
            tv_nsec: ((milliseconds % 1000) * 1_000_000).max(1) as libc::c_long,
        },
    };
    // SAFETY: `spec` is valid; `timerfd` is ours.
    unsafe { libc::timerfd_settime(timerfd, 0, &spec, ptr::null_mut()) };
    let id = submit(
        event_loop,
        Read::new(timerfd, Vec::with_capacity(8), u64::MAX),
        OpKind::Timer(timerfd),
    );
    if id == 0 {
        // SAFETY: the timerfd is ours and unused.
        unsafe { libc::close(timerfd) };
    }
    with_callback(event_loop, id, callback, userdata)
}

/// Runs the loop: calls the callbacks of ops as they complete, until `polyphony_loop_stop` is
/// called (from a callback) or no op with a callback is left. Returns 0, or -errno (a failed
/// wait, or -EFAULT if the library panicked).
///
/// # Safety
/// `event_loop` must be a live loop; the callbacks' contracts are the caller's.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_run(event_loop: *mut polyphony_loop) -> c_int {
    if event_loop.is_null() {
        return -libc::EINVAL;
    }
    // SAFETY: non-NULL; the caller guarantees a live loop.
    unsafe { (*event_loop).stopped = false };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loop {
        // SAFETY: the loop stays alive for the whole run; callbacks may submit (re-borrowing).
        let this = unsafe { &mut *event_loop };
        if this.stopped || this.callbacks.is_empty() {
            return 0;
        }
        let mut done = [0u64; 64];
        // SAFETY: `done` is writable for its length.
        let n = unsafe { polyphony_loop_wait(event_loop, -1, done.as_mut_ptr(), done.len()) };
        if n < 0 {
            return n;
        }
        for &id in &done[..n as usize] {
            // SAFETY: as above.
            let this = unsafe { &mut *event_loop };
            let Some((callback, userdata)) = this.callbacks.remove(&id) else {
                continue;
            };
            let mut buf = match this.kinds.get(&id) {
                Some(OpKind::Read) => vec![0u8; 1 << 16],
                _ => Vec::new(),
            };
            // SAFETY: `buf` is writable for its length.
            let result =
                unsafe { polyphony_loop_take(event_loop, id, buf.as_mut_ptr().cast(), buf.len()) };
            let data = if buf.is_empty() {
                ptr::null()
            } else {
                buf.as_ptr().cast()
            };
            // SAFETY: the caller's callback, with the userdata it gave.
            unsafe { callback(userdata as *mut c_void, result, data) };
        }
    }));
    outcome.unwrap_or(-libc::EFAULT)
}

/// Makes `polyphony_loop_run` return after the callbacks of this round.
///
/// # Safety
/// `event_loop` must be a live loop.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_stop(event_loop: *mut polyphony_loop) {
    if !event_loop.is_null() {
        // SAFETY: non-NULL; the caller guarantees a live loop.
        unsafe { (*event_loop).stopped = true };
    }
}

/// A handle that ends the loop's current or next wait, usable from any thread. Free it with
/// `polyphony_waker_free`.
///
/// # Safety
/// `event_loop` must be a live loop.
#[no_mangle]
pub unsafe extern "C" fn polyphony_loop_waker(
    event_loop: *const polyphony_loop,
) -> *mut polyphony_waker {
    if event_loop.is_null() {
        return ptr::null_mut();
    }
    // SAFETY: non-NULL; the caller guarantees a live loop.
    let waker = unsafe { (*event_loop).driver.waker() };
    Box::into_raw(Box::new(polyphony_waker { waker }))
}

/// Wakes the loop (from any thread).
///
/// # Safety
/// `waker` must be a live waker.
#[no_mangle]
pub unsafe extern "C" fn polyphony_waker_wake(waker: *const polyphony_waker) {
    if !waker.is_null() {
        // SAFETY: non-NULL; the caller guarantees a live waker.
        unsafe { (*waker).waker.wake() };
    }
}

/// Frees a waker (NULL is ignored).
///
/// # Safety
/// `waker` must come from `polyphony_loop_waker` and not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn polyphony_waker_free(waker: *mut polyphony_waker) {
    if !waker.is_null() {
        // SAFETY: per the contract, it came from `Box::into_raw` and is freed once.
        drop(unsafe { Box::from_raw(waker) });
    }
}
