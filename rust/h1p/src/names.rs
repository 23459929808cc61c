//! Common field names, known by their position in [`KNOWN`]: the head parser tells them as it
//! checks a name (a known name is valid, so its bytes need no other check), and its callers
//! use the position to find what they made once for the name (an interned string, a Rack key)
//! and to tell repeated fields apart without comparing bytes.

use std::sync::OnceLock;

/// Lower-case field names common enough to be known by position. At most 128 (a bit each in
/// a `u128`), each at most 32 bytes.
pub const KNOWN: &[&str] = &[
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

/// The position of `name` (lower-case) in [`KNOWN`], at compile time.
const fn position(name: &str) -> u8 {
    let mut i = 0;
    while i < KNOWN.len() {
        let known = KNOWN[i].as_bytes();
        let name = name.as_bytes();
        if known.len() == name.len() {
            let mut j = 0;
            while j < known.len() && known[j] == name[j] {
                j += 1;
            }
            if j == known.len() {
                return i as u8;
            }
        }
        i += 1;
    }
    panic!("not a known name");
}

pub const CONNECTION: u8 = position("connection");
pub const CONTENT_LENGTH: u8 = position("content-length");
pub const COOKIE: u8 = position("cookie");
pub const HOST: u8 = position("host");
pub const TRANSFER_ENCODING: u8 = position("transfer-encoding");
pub const UPGRADE: u8 = position("upgrade");

const _: () = assert!(KNOWN.len() <= 128);

/// The longest name in KNOWN, and then some.
const LONGEST: usize = 32;
const WORDS: usize = LONGEST / 8;

/// A name of KNOWN as 8-byte words, zero-padded, with a mask of its letters' case bit: a
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

/// KNOWN by the length and the first letter of the name: a lookup compares the one name
/// (rarely two) of that length and initial. (Cheaper than lower-casing the name and hashing
/// it, or comparing byte by byte.)
static BUCKETS: OnceLock<Vec<Vec<Candidate>>> = OnceLock::new();

fn bucket(len: usize, first: u8) -> usize {
    len * 32 + usize::from(first & 31) // a letter's code in either case, and the digits
}

/// The position in [`KNOWN`] of a field name, in any case.
#[inline]
pub fn known(name: &[u8]) -> Option<u8> {
    let &first = name.first()?;
    if name.len() > LONGEST {
        return None;
    }
    let candidates = &buckets()[bucket(name.len(), first)];
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
        .map(|c| c.index)
}

fn buckets() -> &'static [Vec<Candidate>] {
    BUCKETS.get_or_init(|| {
        let mut buckets: Vec<Vec<Candidate>> = Vec::new();
        buckets.resize_with(bucket(LONGEST + 1, 0), Vec::new);
        for (i, name) in KNOWN.iter().enumerate() {
            assert!(name.len() <= LONGEST);
            buckets[bucket(name.len(), name.as_bytes()[0])].push(Candidate::new(i, name));
        }
        buckets
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_known_name_in_any_case_and_nothing_near_it() {
        for (i, name) in KNOWN.iter().enumerate() {
            assert_eq!(known(name.as_bytes()), Some(i as u8), "{name}");
            assert_eq!(
                known(name.to_uppercase().as_bytes()),
                Some(i as u8),
                "{name}"
            );
            assert!(name.bytes().all(crate::scan::is_tchar), "{name}");
            let mut near = name.as_bytes().to_vec();
            // A dash turned into CR (CR | 0x20 is '-'), a letter into a non-letter.
            for (j, b) in name.bytes().enumerate() {
                near[j] = if b == b'-' { b'\r' } else { b ^ 0x40 };
                assert_eq!(known(&near), None, "{near:?}");
                near[j] = b;
            }
            near.push(b'x');
            assert_eq!(known(&near), None);
        }
        assert_eq!(known(b""), None);
        assert_eq!(known(&[b'a'; 100]), None);
    }

    #[test]
    fn positions_name_their_fields() {
        assert_eq!(KNOWN[usize::from(CONTENT_LENGTH)], "content-length");
        assert_eq!(KNOWN[usize::from(TRANSFER_ENCODING)], "transfer-encoding");
        assert_eq!(KNOWN[usize::from(HOST)], "host");
    }
}
