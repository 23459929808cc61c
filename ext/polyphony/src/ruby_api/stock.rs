//! The wrappers that make stock blocking methods (`IO#read`, `Queue#pop`, `Thread#join`...)
//! cooperative in a thread's root fiber (a blocking fiber for Ruby, which then calls no Fiber
//! scheduler). lib/polyphony/extensions/root_fiber.rb names the methods and
//! `Polyphony.__cooperative_methods__` defines them here, in modules it prepends.
//!
//! They are C functions for two reasons. Code that never spins a fiber must pay close to
//! nothing: the wrapper asks the thread's backend one flag and calls the stock method. And
//! `IO#gets` sets `$_` in the frame of the nearest Ruby method, which for a Ruby wrapper would
//! be the wrapper itself.

use magnus::rb_sys::{protect, AsRawValue, FromRawValue};
use magnus::value::{LazyId, ReprValue};
use magnus::{function, method, prelude::*, Error, RArray, RModule, Ruby, Symbol, Value};

use super::backend::Backend;

static DELEGATE_P: LazyId = LazyId::new("delegate?");
static DELEGATE_CALL: LazyId = LazyId::new("delegate_call");

fn cooperative(ruby: &Ruby, receiver: Value, args: &[Value]) -> Result<Value, Error> {
    // SAFETY: the GVL is held, in the frame of the C method Ruby called.
    let keywords = unsafe { rb_sys::rb_keyword_given_p() } != 0;
    if must_delegate(ruby, receiver)? {
        return delegate(ruby, receiver, args, keywords);
    }
    let result = protect(|| {
        // SAFETY: the GVL is held and this runs in the method frame of the C function Ruby
        // called (rb_protect pushes no frame), which is what rb_call_super_kw looks up (it
        // passes the block on too); `Value` is a transparent VALUE, and `args` outlives the call.
        unsafe {
            rb_sys::rb_call_super_kw(
                args.len() as std::ffi::c_int,
                args.as_ptr().cast(),
                std::ffi::c_int::from(keywords),
            )
        }
    })?;
    // SAFETY: the value came from Ruby just now.
    Ok(unsafe { Value::from_raw(result) })
}

/// Whether the call must be handed to a helper fiber: in a root fiber that has fibers to let
/// run, for anything but a File (disk reads and writes do not wait for a peer).
fn must_delegate(ruby: &Ruby, receiver: Value) -> Result<bool, Error> {
    // SAFETY: the GVL is held.
    if unsafe { rb_sys::rb_fiber_scheduler_current() } != ruby.qnil().as_raw() {
        return Ok(false); // a non-blocking fiber: the scheduler makes the stock call cooperative
    }
    if !Backend::existing().is_some_and(Backend::root_cooperative) {
        return Ok(false);
    }
    if receiver.class().as_raw() == ruby.class_file().as_raw() {
        return Ok(false);
    }
    root_fiber(ruby)?.funcall(*DELEGATE_P, ())
}

fn delegate(ruby: &Ruby, receiver: Value, args: &[Value], keywords: bool) -> Result<Value, Error> {
    // SAFETY: the GVL is held, in the frame of the C method Ruby called.
    let id = unsafe { rb_sys::rb_frame_this_func() };
    // SAFETY: as above; symbols made from IDs are never freed.
    let name = unsafe { Value::from_raw(rb_sys::rb_id2sym(id)) };
    // SAFETY: the GVL is held, in the frame of the C method Ruby called.
    let block = if unsafe { rb_sys::rb_block_given_p() } != 0 {
        // SAFETY: as above, and a block was given.
        unsafe { Value::from_raw(rb_sys::rb_block_proc()) }
    } else {
        ruby.qnil().as_value()
    };
    let call_args = (
        receiver,
        name,
        ruby.ary_new_from_values(args),
        keywords,
        block,
    );
    let result: Value = root_fiber(ruby)?.funcall(*DELEGATE_CALL, call_args)?;
    // SAFETY: the GVL is held; rb_intern takes NUL-terminated names.
    let sets_line = unsafe {
        id == rb_sys::rb_intern(c"gets".as_ptr()) || id == rb_sys::rb_intern(c"readline".as_ptr())
    };
    if sets_line {
        // SAFETY: the GVL is held; the line is set in the nearest Ruby frame, our caller's.
        unsafe { rb_sys::rb_lastline_set(result.as_raw()) };
    }
    Ok(result)
}

fn root_fiber(ruby: &Ruby) -> Result<RModule, Error> {
    ruby.define_module("Polyphony")?.const_get("RootFiber")
}

/// Defines each of `names` in `module` as the cooperative wrapper of the stock method.
fn define(module: RModule, names: RArray) -> Result<RModule, Error> {
    for name in names.into_iter() {
        let name = Symbol::try_convert(name)?;
        module.define_method(name, method!(cooperative, -1))?;
    }
    Ok(module)
}

pub(crate) fn init(_ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    polyphony.define_singleton_method("__cooperative_methods__", function!(define, 2))
}
