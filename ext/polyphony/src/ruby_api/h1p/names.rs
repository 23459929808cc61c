//! Frozen strings made once: hash keys (`":method"`, the known header names of
//! `h1p::names`), methods and protocols. A request's hash then allocates only what is specific
//! to it.

use std::sync::OnceLock;

use magnus::{Error, Ruby};
use rb_sys::VALUE;

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

pub(crate) struct Names {
    /// `h1p::names::KNOWN`'s interned strings, in the same order.
    headers: Vec<VALUE>,
    /// METHODS' interned strings, in the same order.
    methods: Vec<VALUE>,
    pub method: VALUE,
    pub path: VALUE,
    pub protocol: VALUE,
    pub rx: VALUE,
    pub status: VALUE,
    pub status_message: VALUE,
    pub http10: VALUE,
    pub http11: VALUE,
    pub http1: VALUE,
}

static NAMES: OnceLock<Names> = OnceLock::new();

pub(crate) fn names() -> &'static Names {
    NAMES.get().expect("H1P names are made at init")
}

/// An interned ("fstring") UTF-8 string: a Hash takes it as a key as it is, with no lookup
/// in Ruby's table of frozen strings.
pub(crate) fn frozen(_ruby: &Ruby, s: &str) -> VALUE {
    // SAFETY: the GVL is held; `s` is valid for `len` bytes; the encoding index is UTF-8's.
    let value = unsafe {
        rb_sys::rb_enc_interned_str(s.as_ptr().cast(), s.len() as _, rb_sys::rb_utf8_encoding())
    };
    // SAFETY: `value` is a live String; registering keeps it (and its address) forever.
    unsafe { rb_sys::rb_gc_register_mark_object(value) };
    value
}

impl Names {
    /// The interned string of the known name at `index` (a position in `h1p::names::KNOWN`).
    #[inline]
    pub fn known(&self, index: u8) -> VALUE {
        self.headers[usize::from(index)]
    }

    /// The interned string for an upper-case method, if it is a common one.
    pub fn method(&self, upper: &[u8]) -> Option<VALUE> {
        METHODS
            .iter()
            .position(|m| m.as_bytes() == upper)
            .map(|i| self.methods[i])
    }
}

pub(crate) fn init(ruby: &Ruby) -> Result<(), Error> {
    if NAMES.get().is_some() {
        return Ok(());
    }
    let names = Names {
        headers: h1p::names::KNOWN.iter().map(|h| frozen(ruby, h)).collect(),
        methods: METHODS.iter().map(|m| frozen(ruby, m)).collect(),
        method: frozen(ruby, ":method"),
        path: frozen(ruby, ":path"),
        protocol: frozen(ruby, ":protocol"),
        rx: frozen(ruby, ":rx"),
        status: frozen(ruby, ":status"),
        status_message: frozen(ruby, ":status_message"),
        http10: frozen(ruby, "http/1.0"),
        http11: frozen(ruby, "http/1.1"),
        http1: frozen(ruby, "http/1"),
    };
    let _ = NAMES.set(names);
    Ok(())
}
