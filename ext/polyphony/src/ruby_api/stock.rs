//! The wrappers that make stock blocking methods (`IO#read`, `Queue#pop`, `Thread#join`...)
//! cooperative in a thread's root fiber (a blocking fiber for Ruby, which then calls no Fiber
//! scheduler). lib/polyphony/extensions/root_fiber.rb names the methods and
//! `Polyphony.__cooperative_methods__` defines them here, in modules it prepends.
//!
//! They are plain C functions for two reasons. Code with no fiber alive beside the root fiber
//! must pay close to nothing: the wrapper asks the thread's backend one flag and calls the stock
//! method. And `IO#gets` sets `$_` in the frame of the nearest Ruby method, which for a Ruby
//! wrapper would be the wrapper itself.
//!
//! No Rust value with a destructor is alive while they call Ruby (`rb_call_super_kw`,
//! `rb_funcallv`): an exception unwinds through their frame with a longjmp, as through any C
//! method's.

use std::ffi::c_int;

use magnus::rb_sys::AsRawValue;
use magnus::{function, prelude::*, Error, RArray, RModule, Ruby, Symbol};
use rb_sys::VALUE;

use super::backend::Backend;

/// The wrapper: the stock method, or, in a blocking fiber while the thread's root fiber has
/// fibers alive (or a timeout pending), `Polyphony::RootFiber.delegate_call`, which hands the
/// call to a helper fiber.
unsafe extern "C" fn cooperative(argc: c_int, argv: *const VALUE, receiver: VALUE) -> VALUE {
    // SAFETY: Ruby calls this as a method (GVL held, in the method's frame), with `argc`
    // arguments at `argv`.
    unsafe {
        let keywords = rb_sys::rb_keyword_given_p();
        if !must_delegate(receiver) {
            return rb_sys::rb_call_super_kw(argc, argv, keywords);
        }
        let id = rb_sys::rb_frame_this_func();
        let block = if rb_sys::rb_block_given_p() != 0 {
            rb_sys::rb_block_proc()
        } else {
            rb_sys::Qnil as VALUE
        };
        let call = [
            receiver,
            rb_sys::rb_id2sym(id),
            rb_sys::rb_ary_new_from_values(argc as _, argv),
            if keywords != 0 {
                rb_sys::Qtrue
            } else {
                rb_sys::Qfalse
            } as VALUE,
            block,
        ];
        let root_fiber = rb_sys::rb_path2class(c"Polyphony::RootFiber".as_ptr());
        let delegate_call = rb_sys::rb_intern(c"delegate_call".as_ptr());
        let result = rb_sys::rb_funcallv(
            root_fiber,
            delegate_call,
            call.len() as c_int,
            call.as_ptr(),
        );
        if id == rb_sys::rb_intern(c"gets".as_ptr())
            || id == rb_sys::rb_intern(c"readline".as_ptr())
        {
            rb_sys::rb_lastline_set(result); // in the nearest Ruby frame: our caller's
        }
        result
    }
}

/// Whether the call must be handed to a helper fiber: in a blocking fiber (a non-blocking one
/// has the scheduler make the stock call cooperative), while the thread's root fiber must wait
/// cooperatively, for anything but a File (disk reads and writes do not wait for a peer).
/// Nothing here calls Ruby code.
///
/// # Safety
/// The GVL is held; `receiver` is a live object.
unsafe fn must_delegate(receiver: VALUE) -> bool {
    // SAFETY: per this function's contract.
    unsafe {
        rb_sys::rb_fiber_scheduler_current() == rb_sys::Qnil as VALUE
            && Backend::existing().is_some_and(Backend::root_cooperative)
            && rb_sys::rb_obj_class(receiver) != rb_sys::rb_cFile
    }
}

/// A C method taking (argc, argv, self): what `rb_define_method` takes for arity -1.
type Variadic = unsafe extern "C" fn(c_int, *const VALUE, VALUE) -> VALUE;

/// Defines `name` in `module` as `function`, with arity -1.
fn define_variadic(module: RModule, name: &std::ffi::CStr, function: Variadic) {
    // SAFETY: the GVL is held; `module` is a module and `name` NUL-terminated; `function`
    // takes (argc, argv, self), as arity -1 asks, so Ruby calls it with the right arguments.
    unsafe {
        rb_sys::rb_define_method(
            module.as_raw(),
            name.as_ptr(),
            Some(std::mem::transmute::<
                Variadic,
                unsafe extern "C" fn() -> VALUE,
            >(function)),
            -1,
        )
    };
}

/// Defines each of `names` in `module` as the cooperative wrapper of the stock method.
fn define(ruby: &Ruby, module: RModule, names: RArray) -> Result<RModule, Error> {
    for name in names.into_iter() {
        let name = Symbol::try_convert(name)?.name()?.into_owned();
        let name = std::ffi::CString::new(name)
            .map_err(|e| Error::new(ruby.exception_arg_error(), e.to_string()))?;
        define_variadic(module, &name, cooperative);
    }
    Ok(module)
}

/// `IO#read` taking Polyphony's third argument, the position in the buffer where the data goes
/// (`Polyphony.__read_at__` does that); with fewer arguments, the stock method, at the cost of
/// one C call.
unsafe extern "C" fn read_at_position(argc: c_int, argv: *const VALUE, receiver: VALUE) -> VALUE {
    // SAFETY: Ruby calls this as a method (GVL held, in the method's frame), with `argc`
    // arguments at `argv`.
    unsafe {
        if argc != 3 {
            return rb_sys::rb_call_super_kw(argc, argv, rb_sys::rb_keyword_given_p());
        }
        let args = std::slice::from_raw_parts(argv, 3);
        let call = [receiver, args[0], args[1], args[2]];
        let polyphony = rb_sys::rb_path2class(c"Polyphony".as_ptr());
        let read_at = rb_sys::rb_intern(c"__read_at__".as_ptr());
        rb_sys::rb_funcallv(polyphony, read_at, call.len() as c_int, call.as_ptr())
    }
}

/// Defines `read` in `module` as [`read_at_position`].
fn define_read_at(module: RModule) -> Result<RModule, Error> {
    define_variadic(module, c"read", read_at_position);
    Ok(module)
}

pub(crate) fn init(_ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    polyphony.define_singleton_method("__cooperative_methods__", function!(define, 2))?;
    polyphony.define_singleton_method("__read_at_position__", function!(define_read_at, 1))
}
