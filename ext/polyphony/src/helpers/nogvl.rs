//! Blocking in the kernel with the GVL released.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{fence, Ordering};

use magnus::rb_sys::protect;
use polyphony_runtime::Waker;

use super::fiber::QNIL;

/// Runs `func` without the GVL. Ruby's unblock function (called for `Thread#raise`,
/// `Thread#kill`, signals, shutdown) wakes `waker`, which must end whatever `func` blocks on.
///
/// If an interrupt is already pending, `func` is not called at all. Pending interrupts are
/// not run here: the caller runs them (`rb_thread_check_ints`) once it holds no borrow, since
/// a trap handler may call back into the backend.
///
/// Ruby checks for interrupts (RB_NOGVL_INTR_FAIL) a few instructions before it installs the
/// unblock function; a signal that lands in between sets the interrupt flag but finds no unblock
/// function to call, and `func` would then wait for good with a trap handler pending. So the
/// flag is looked at once more here, where the unblock function is in place: a signal before
/// this look is seen by it, one after it wakes `waker`.
pub(crate) fn without_gvl<F: FnOnce()>(waker: &Waker, func: F) {
    struct Call<F> {
        func: Option<F>,
        thread: rb_sys::VALUE,
        panicked: bool,
    }

    unsafe extern "C" fn trampoline<F: FnOnce()>(data: *mut c_void) -> *mut c_void {
        // SAFETY: `data` is the `Call<F>` below, alive for the whole blocking region.
        let call = unsafe { &mut *(data as *mut Call<F>) };
        // Orders the unblock function's installation before the flag's read, against a signal
        // handler running on another OS thread.
        fence(Ordering::SeqCst);
        // SAFETY: `thread` is the calling Ruby thread, referenced from this machine stack (which
        // the GC scans, so it stays put); rb_thread_interrupted only reads its interrupt flag and
        // mask, which is what the unblock protocol has signal handlers write without the GVL.
        if unsafe { rb_sys::rb_thread_interrupted(call.thread) } != 0 {
            return std::ptr::null_mut();
        }
        if let Some(func) = call.func.take() {
            call.panicked = catch_unwind(AssertUnwindSafe(func)).is_err();
        }
        std::ptr::null_mut()
    }

    unsafe extern "C" fn unblock(data: *mut c_void) {
        // SAFETY: `data` is the `&Waker` below, alive for the whole blocking region.
        unsafe { &*(data as *const Waker) }.wake();
    }

    let mut call = Call {
        func: Some(func),
        // SAFETY: called with the GVL held, as every caller of without_gvl is.
        thread: unsafe { rb_sys::rb_thread_current() },
        panicked: false,
    };
    // Without RB_NOGVL_INTR_FAIL's interrupt check nothing here can raise.
    let _ = protect(|| {
        // SAFETY: both pointers outlive the call; the trampoline catches panics so none unwinds
        // into Ruby, and the unblock function only writes to an eventfd, which is
        // async-signal-safe: so Ruby need not start a helper thread to call it (and then join
        // that thread, which under a Fiber scheduler would re-enter the scheduler).
        unsafe {
            rb_sys::rb_nogvl(
                Some(trampoline::<F>),
                &mut call as *mut Call<F> as *mut c_void,
                Some(unblock),
                waker as *const Waker as *mut c_void,
                (rb_sys::RB_NOGVL_UBF_ASYNC_SAFE | rb_sys::RB_NOGVL_INTR_FAIL) as _,
            );
        }
        QNIL
    });
    if call.panicked {
        // The driver panicked: nothing sane can follow.
        std::process::abort();
    }
}
