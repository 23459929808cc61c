//! Raw fiber switching. Everything here runs on the hot path of every context switch.

use magnus::error::ErrorType;
use magnus::rb_sys::{protect, AsRawValue};
use magnus::Error;
use rb_sys::{ruby_special_consts, VALUE};

/// The running fiber.
pub(crate) fn current() -> VALUE {
    // SAFETY: called with the GVL held, on a Ruby thread.
    unsafe { rb_sys::rb_fiber_current() }
}

/// Whether `fiber` has not finished.
pub(crate) fn is_alive(fiber: VALUE) -> bool {
    // SAFETY: `fiber` is a live fiber object (kept alive by whoever holds it).
    unsafe { rb_sys::rb_fiber_alive_p(fiber) == ruby_special_consts::RUBY_Qtrue as VALUE }
}

/// Transfers control to `fiber` with `value`; returns what this fiber is resumed with.
///
/// Wrapped in `rb_protect`: a `Fiber#raise` or `Thread#raise` aimed at this fiber while it is
/// parked here unwinds to this call and comes back as an `Err` instead of a longjmp through Rust.
pub(crate) fn transfer(fiber: VALUE, value: VALUE) -> Result<VALUE, Error> {
    let args = [fiber, value];
    protect(|| {
        // SAFETY: `args` outlives the call; `fiber` is alive (checked when it was scheduled)
        // and the GVL is held.
        unsafe { rb_sys::rb_fiber_transfer(args[0], 1, &args[1]) }
    })
}

/// Resumes `fiber` (one that has never run, or one that called `Fiber.yield`) with `value`;
/// returns what it yields or returns. Wrapped in `rb_protect` like [`transfer`].
pub(crate) fn resume(fiber: VALUE, value: VALUE) -> Result<VALUE, Error> {
    let args = [fiber, value];
    protect(|| {
        // SAFETY: `args` outlives the call; `fiber` is alive and resumable (the caller checks)
        // and the GVL is held.
        unsafe { rb_sys::rb_fiber_resume(args[0], 1, &args[1]) }
    })
}

/// Raises `FiberError` with `message` in `fiber`, which is suspended in `Fiber.yield`.
pub(crate) fn raise_fiber_error(fiber: VALUE, message: &std::ffi::CStr) -> Result<VALUE, Error> {
    protect(|| {
        // SAFETY: the GVL is held; `message` is NUL-terminated; `fiber` is suspended in
        // `Fiber.yield`, so Ruby's `rb_fiber_raise` resumes it (Polyphony's `Fiber#raise`,
        // which schedules instead, is not involved).
        unsafe {
            let class = rb_sys::rb_path2class(c"FiberError".as_ptr());
            let exc = rb_sys::rb_exc_new_cstr(class, message.as_ptr());
            rb_sys::rb_fiber_raise(fiber, 1, &exc)
        }
    })
}

/// Continues unwinding with `error` (an exception or a non-local exit such as `Thread#kill`)
/// from a function that Ruby called.
///
/// # Safety
/// This longjmps: no value that needs dropping may be alive in the caller's frames.
pub(crate) unsafe fn reraise(error: Error) -> ! {
    match error.error_type() {
        // SAFETY: the tag came from `rb_protect`; per this function's contract.
        ErrorType::Jump(tag) => unsafe { rb_sys::rb_jump_tag(*tag as std::ffi::c_int) },
        _ => {
            let exc = error.value().map_or(QNIL, |v| v.as_raw());
            // SAFETY: per this function's contract; `exc` is the exception Ruby raised.
            unsafe { rb_sys::rb_exc_raise(exc) }
        }
    }
}

/// Whether `value` is an Exception instance (checked cheaply for immediates first).
pub(crate) fn is_exception(value: VALUE) -> bool {
    if value & (ruby_special_consts::RUBY_IMMEDIATE_MASK as VALUE) != 0
        || value == ruby_special_consts::RUBY_Qnil as VALUE
        || value == ruby_special_consts::RUBY_Qfalse as VALUE
    {
        return false;
    }
    // SAFETY: `value` is a heap object (immediates were excluded above) and the GVL is held.
    unsafe {
        rb_sys::rb_obj_is_kind_of(value, rb_sys::rb_eException)
            == ruby_special_consts::RUBY_Qtrue as VALUE
    }
}

pub(crate) const QNIL: VALUE = ruby_special_consts::RUBY_Qnil as VALUE;
