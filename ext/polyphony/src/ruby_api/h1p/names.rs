//! Frozen strings made once: hash keys (`":method"`, common header names), methods and
//! protocols. A request's hash then allocates only what is specific to it.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use magnus::{Error, Ruby};
use rb_sys::VALUE;

/// Lower-case header names common enough to intern.
pub(crate) const HEADERS: &[&str] = &[
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "access-control-request-headers",
    "access-control-request-method",
    "authorization",
    "cache-control",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "cookie",
    "date",
    "dnt",
    "expect",
    "forwarded",
    "host",
    "http2-settings",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "keep-alive",
    "last-modified",
    "location",
    "origin",
    "pragma",
    "priority",
    "range",
    "referer",
    "sec-ch-ua",
    "sec-ch-ua-mobile",
    "sec-ch-ua-platform",
    "sec-fetch-dest",
    "sec-fetch-mode",
    "sec-fetch-site",
    "sec-fetch-user",
    "sec-websocket-extensions",
    "sec-websocket-key",
    "sec-websocket-protocol",
    "sec-websocket-version",
    "server",
    "set-cookie",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "upgrade-insecure-requests",
    "user-agent",
    "vary",
    "via",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "x-request-id",
    "x-requested-with",
    "etag",
    "expires",
    "server-timing",
    "strict-transport-security",
    "content-disposition",
];

const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];

pub(crate) struct Names {
    headers: Table,
    methods: Table,
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

/// FNV-1a: names are short, and SipHash costs more than the rest of a lookup.
#[derive(Default)]
pub(crate) struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type Table = HashMap<&'static [u8], VALUE, BuildHasherDefault<Fnv>>;

impl Names {
    /// The interned string for a lower-case header name, if it is a common one.
    pub fn header(&self, lower: &[u8]) -> Option<VALUE> {
        self.headers.get(lower).copied()
    }

    /// The interned string for an upper-case method, if it is a common one.
    pub fn method(&self, upper: &[u8]) -> Option<VALUE> {
        self.methods.get(upper).copied()
    }
}

pub(crate) fn init(ruby: &Ruby) -> Result<(), Error> {
    if NAMES.get().is_some() {
        return Ok(());
    }
    let names = Names {
        headers: HEADERS
            .iter()
            .map(|h| (h.as_bytes(), frozen(ruby, h)))
            .collect(),
        methods: METHODS
            .iter()
            .map(|m| (m.as_bytes(), frozen(ruby, m)))
            .collect(),
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
