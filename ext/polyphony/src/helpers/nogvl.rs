//! Blocking in the kernel with the GVL released.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};

use magnus::rb_sys::protect;
use magnus::Error;
use polyphony_runtime::Waker;

use super::fiber::QNIL;

/// Runs `func` without the GVL. Ruby's unblock function (called for `Thread#raise`,
/// `Thread#kill`, signals, shutdown) wakes `waker`, which must end whatever `func` blocks on.
///
/// Ruby checks its pending interrupts after `func` returns and may raise then (a trap handler,
/// `Thread#raise`): that comes back as `Err`, after `func` has run to completion.
pub(crate) fn without_gvl<F: FnOnce()>(waker: &Waker, func: F) -> Result<(), Error> {
    struct Call<F> {
        func: Option<F>,
        panicked: bool,
    }

    unsafe extern "C" fn trampoline<F: FnOnce()>(data: *mut c_void) -> *mut c_void {
        // SAFETY: `data` is the `Call<F>` below, alive for the whole blocking region.
        let call = unsafe { &mut *(data as *mut Call<F>) };
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
        panicked: false,
    };
    let result = protect(|| {
        // SAFETY: both pointers outlive the call; the trampoline catches panics so none unwinds
        // into Ruby, and the unblock function only writes to an eventfd.
        unsafe {
            rb_sys::rb_thread_call_without_gvl(
                Some(trampoline::<F>),
                &mut call as *mut Call<F> as *mut c_void,
                Some(unblock),
                waker as *const Waker as *mut c_void,
            );
        }
        QNIL
    });
    if call.panicked {
        return Err(Error::new(
            magnus::Ruby::get()
                .expect("called from Ruby")
                .exception_fatal(),
            "polyphony: the event loop panicked while waiting",
        ));
    }
    result.map(|_| ())
}
