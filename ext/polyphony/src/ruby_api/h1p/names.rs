//! Frozen strings made once: hash keys (`":method"`, common header names), methods and
//! protocols. A request's hash then allocates only what is specific to it.

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
    /// HEADERS' interned strings, in the same order.
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

/// The longest name in HEADERS, and then some.
const LONGEST: usize = 32;
const WORDS: usize = LONGEST / 8;

/// A name of HEADERS as 8-byte words, zero-padded, with a mask of its letters' case bit: a
/// name matches when each of its words, with the case bits set, is the candidate's word.
/// (Exact for any bytes: setting bit 5 turns only a letter's upper case into the letter, and
/// is not done where the candidate has no letter.)
struct Candidate {
    lower: [u64; WORDS],
    letters: [u64; WORDS],
    index: u8,
}

impl Candidate {
    fn new(index: usize, name: &str) -> Self {
        let mut lower = [0u8; LONGEST];
        lower[..name.len()].copy_from_slice(name.as_bytes());
        let mut letters = [0u8; LONGEST];
        for (bit, &b) in letters.iter_mut().zip(name.as_bytes()) {
            *bit = if b.is_ascii_lowercase() { 0x20 } else { 0 };
        }
        Candidate {
            lower: words(&lower),
            letters: words(&letters),
            index: index as u8,
        }
    }
}

fn words(bytes: &[u8; LONGEST]) -> [u64; WORDS] {
    std::array::from_fn(|i| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
        u64::from_le_bytes(word)
    })
}

/// HEADERS by the length and the first letter of the name: a lookup compares the one name
/// (rarely two) of that length and initial. (Cheaper than lower-casing the name and hashing
/// it, or comparing byte by byte.)
static BUCKETS: OnceLock<Vec<Vec<Candidate>>> = OnceLock::new();

fn bucket(len: usize, first: u8) -> usize {
    len * 32 + usize::from(first & 31) // a letter's code in either case, and the digits
}

/// The position in HEADERS of a field name, in any case.
pub(crate) fn header_index(name: &[u8]) -> Option<usize> {
    let &first = name.first()?;
    if name.len() > LONGEST {
        return None;
    }
    let buckets = BUCKETS.get_or_init(|| {
        assert!(HEADERS.len() <= 256);
        let mut buckets: Vec<Vec<Candidate>> = Vec::new();
        buckets.resize_with(bucket(LONGEST + 1, 0), Vec::new);
        for (i, name) in HEADERS.iter().enumerate() {
            assert!(name.len() <= LONGEST);
            buckets[bucket(name.len(), name.as_bytes()[0])].push(Candidate::new(i, name));
        }
        buckets
    });
    let candidates = &buckets[bucket(name.len(), first)];
    if candidates.is_empty() {
        return None;
    }
    let used = name.len().div_ceil(8);
    let mut padded = [0u8; LONGEST];
    padded[..name.len()].copy_from_slice(name);
    let name = words(&padded);
    candidates
        .iter()
        .find(|c| (0..used).all(|i| name[i] | c.letters[i] == c.lower[i]))
        .map(|c| usize::from(c.index))
}

impl Names {
    /// The interned lower-case string for a header name (in any case), if it is a common one.
    pub fn header(&self, name: &[u8]) -> Option<VALUE> {
        header_index(name).map(|i| self.headers[i])
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
        headers: HEADERS.iter().map(|h| frozen(ruby, h)).collect(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_common_name_in_any_case_and_nothing_near_it() {
        for (i, name) in HEADERS.iter().enumerate() {
            assert_eq!(header_index(name.as_bytes()), Some(i), "{name}");
            assert_eq!(
                header_index(name.to_uppercase().as_bytes()),
                Some(i),
                "{name}"
            );
            let mut near = name.as_bytes().to_vec();
            // A dash turned into CR (CR | 0x20 is '-'), a letter into a non-letter.
            for (j, b) in name.bytes().enumerate() {
                near[j] = if b == b'-' { b'\r' } else { b ^ 0x40 };
                assert_eq!(header_index(&near), None, "{near:?}");
                near[j] = b;
            }
            near.push(b'x');
            assert_eq!(header_index(&near), None);
        }
        assert_eq!(header_index(b""), None);
        assert_eq!(header_index(&[b'a'; 100]), None);
    }
}
