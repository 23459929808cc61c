//! A Hash made with room for its entries. Ruby grows a new Hash's table as it fills, and one
//! of more than 8 entries starts as a small table that is then replaced (two frees and a
//! copy); Ruby 3.2 and later export `rb_hash_new_capa` to size it once, 3.1 the same function
//! as `rb_hash_new_with_size`. Looked up at run time, so one build loads on every Ruby.

use std::ffi::CStr;
use std::sync::OnceLock;

use rb_sys::VALUE;

type NewWithCapacity = unsafe extern "C" fn(capacity: libc::c_long) -> VALUE;

static NEW_WITH_CAPACITY: OnceLock<Option<NewWithCapacity>> = OnceLock::new();

fn lookup() -> Option<NewWithCapacity> {
    const NAMES: [&CStr; 2] = [c"rb_hash_new_capa", c"rb_hash_new_with_size"];
    NAMES.iter().find_map(|name| {
        // SAFETY: a lookup in the symbols already loaded (libruby's among them).
        let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        // SAFETY: both functions take a word-sized count and return a new Hash
        // (`long` in 3.2's, `st_index_t`, an unsigned word, in 3.1's; counts are small).
        (!symbol.is_null())
            .then(|| unsafe { std::mem::transmute::<*mut libc::c_void, NewWithCapacity>(symbol) })
    })
}

/// A new empty Hash with room for `capacity` entries. The GVL must be held.
pub(crate) fn with_capacity(capacity: usize) -> VALUE {
    match NEW_WITH_CAPACITY.get_or_init(lookup) {
        // SAFETY: the GVL is held (the caller's duty); the function was found above.
        Some(new) => unsafe { new(capacity as libc::c_long) },
        // SAFETY: as above.
        None => unsafe { rb_sys::rb_hash_new() },
    }
}
