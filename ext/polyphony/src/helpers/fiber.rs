//! Raw fiber switching. Everything here runs on the hot path of every context switch.

use magnus::rb_sys::protect;
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
