//! Ruby IO objects seen from Rust.

use rb_sys::{rb_io_t, ruby_value_type, VALUE};

/// Whether `value` is an IO of any class (file, pipe, socket). A look at the object's type
/// bits: `rb_obj_is_kind_of(value, rb_cIO)` walks the class's ancestors instead (for a
/// TCPSocket, five classes and the modules mixed in), and a server asks once per read.
pub(crate) fn is_io(value: VALUE) -> bool {
    // SAFETY: the GVL is held; RB_TYPE_P answers immediates without reading memory and
    // reads only the header of a heap object.
    unsafe { rb_sys::RB_TYPE_P(value, ruby_value_type::RUBY_T_FILE) }
}

/// The `rb_io_t` of `value` when it is an IO that is initialized and not closed.
pub(crate) fn open_fptr(value: VALUE) -> Option<*mut rb_io_t> {
    if !is_io(value) {
        return None;
    }
    // SAFETY: every T_FILE object is an RFile; `fptr` is NULL only for an IO never
    // initialized, and otherwise points to the IO's rb_io_t, alive as long as the IO.
    unsafe {
        let fptr = (*(value as *const rb_sys::RFile)).fptr;
        (!fptr.is_null() && (*fptr).fd >= 0).then_some(fptr)
    }
}
