//! `IO#gets` and `IO#readline` for a thread's root fiber (`Polyphony::LineMethods`, which
//! lib/polyphony/extensions/root_fiber.rb prepends to IO). Like the other root-fiber wrappers
//! they hand the call to a helper fiber while the root fiber has fibers to let run, but they
//! are C functions: the stock methods set `$_` in the frame of the nearest Ruby method, which
//! for a Ruby wrapper would be the wrapper itself, so the caller would never see it.

use magnus::rb_sys::{protect, AsRawValue};
use magnus::value::{LazyId, ReprValue};
use magnus::{method, prelude::*, Error, RModule, Ruby, Value};

static DELEGATE_P: LazyId = LazyId::new("delegate?");
static DELEGATE_LINE: LazyId = LazyId::new("delegate_line");

fn gets(ruby: &Ruby, rb_self: Value, args: &[Value]) -> Result<Value, Error> {
    line(ruby, rb_self, args, "gets")
}

fn readline(ruby: &Ruby, rb_self: Value, args: &[Value]) -> Result<Value, Error> {
    line(ruby, rb_self, args, "readline")
}

fn line(ruby: &Ruby, io: Value, args: &[Value], name: &str) -> Result<Value, Error> {
    // A File is exempt, as from the other wrappers: disk reads do not wait for a peer.
    if io.class().as_raw() != ruby.class_file().as_raw() {
        let root_fiber: RModule = ruby.define_module("Polyphony")?.const_get("RootFiber")?;
        if root_fiber.funcall::<_, _, bool>(*DELEGATE_P, ())? {
            let args = ruby.ary_new_from_values(args);
            let line: Value =
                root_fiber.funcall(*DELEGATE_LINE, (io, ruby.to_symbol(name), args))?;
            // SAFETY: the GVL is held; the line is set in the nearest Ruby frame, our caller's.
            unsafe { rb_sys::rb_lastline_set(line.as_raw()) };
            return Ok(line);
        }
    }
    let raw: Vec<_> = args.iter().map(|arg| arg.as_raw()).collect();
    let line = protect(|| {
        // SAFETY: the GVL is held and this runs in the method frame of the C function Ruby
        // called (rb_protect pushes no frame), which is what rb_call_super looks up; `raw`
        // outlives the call.
        unsafe { rb_sys::rb_call_super(raw.len() as std::ffi::c_int, raw.as_ptr()) }
    })?;
    // SAFETY: the value came from Ruby just now.
    Ok(unsafe { magnus::rb_sys::FromRawValue::from_raw(line) })
}

pub(crate) fn init(_ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    let lines = polyphony.define_module("LineMethods")?;
    lines.define_method("gets", method!(gets, -1))?;
    lines.define_method("readline", method!(readline, -1))?;
    Ok(())
}
