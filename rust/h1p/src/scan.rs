//! Byte classes and fast scans. On x86_64, lines are checked 16 bytes at a time with SSE2
//! (through `safe_arch`, so this crate has no `unsafe`): most bytes of a target or a header
//! value are ordinary, and a block with none of the special bytes is skipped whole.

/// `tchar` of RFC 9110 5.6.2: the bytes of methods and field names.
static TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// Whether `bytes` is `lower` (lower-case ASCII: a field name, a token) in any case. Cheaper
/// than `eq_ignore_ascii_case`, which lower-cases both sides: a byte of `bytes` matches when
/// it is the byte of `lower`, or that letter's upper case.
#[inline]
pub fn eq_ignore_case(bytes: &[u8], lower: &[u8]) -> bool {
    bytes.len() == lower.len()
        && bytes
            .iter()
            .zip(lower)
            .all(|(&a, &b)| a == b || (a | 0x20 == b && b.is_ascii_lowercase()))
}

#[inline(always)]
fn special(b: u8, n: u8) -> bool {
    b < n || b == 0x7f
}

/// The index of the first byte of `bytes[from..]` that `stop` takes. On x86_64, 16 bytes at a
/// time first: `stop_16` marks them in a mask, a bit each (the same bytes as `stop`).
#[inline(always)]
fn find_first(
    bytes: &[u8],
    from: usize,
    #[cfg(target_arch = "x86_64")] stop_16: impl Fn(safe_arch::m128i) -> i32,
    stop: impl Fn(u8) -> bool,
) -> Option<usize> {
    let mut i = from;
    #[cfg(target_arch = "x86_64")]
    for block in bytes[from..].chunks_exact(16) {
        let mask = stop_16(safe_arch::load_unaligned_m128i(
            block.try_into().expect("16 bytes"),
        ));
        if mask != 0 {
            return Some(i + mask.trailing_zeros() as usize);
        }
        i += 16;
    }
    bytes[i..].iter().position(|&b| stop(b)).map(|p| i + p)
}

/// The index of the first byte in `bytes[from..]` that is below `n` (1 to 128) or DEL.
#[inline]
pub(crate) fn find_special(bytes: &[u8], from: usize, n: u8) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use safe_arch::{
            bitor_m128i, cmp_eq_mask_i8_m128i, max_u8_m128i, move_mask_i8_m128i, set_splat_i8_m128i,
        };
        // x < n  <=>  max(x, n - 1) == n - 1 (unsigned).
        let below = set_splat_i8_m128i((n - 1) as i8);
        let del = set_splat_i8_m128i(0x7f);
        let stop_16 = |x| {
            let low = cmp_eq_mask_i8_m128i(max_u8_m128i(x, below), below);
            move_mask_i8_m128i(bitor_m128i(low, cmp_eq_mask_i8_m128i(x, del)))
        };
        find_first(bytes, from, stop_16, |b| special(b, n))
    }
    #[cfg(not(target_arch = "x86_64"))]
    find_first(bytes, from, |b| special(b, n))
}

/// The index of the first byte in `bytes` that cannot be inside a field name and is where a
/// name ends or fails: a colon, a control byte, SP, DEL or a byte above 0x7f. (The visible
/// bytes before it may still be separators, which are no `tchar`s.)
#[inline]
pub(crate) fn find_name_end(bytes: &[u8]) -> Option<usize> {
    let stop = |b: u8| b == b':' || !(0x21..=0x7e).contains(&b);
    #[cfg(target_arch = "x86_64")]
    {
        use safe_arch::{
            bitor_m128i, cmp_eq_mask_i8_m128i, cmp_gt_mask_i8_m128i, cmp_lt_mask_i8_m128i,
            move_mask_i8_m128i, set_splat_i8_m128i,
        };
        // As signed bytes, those above 0x7f are negative: below '!' as the controls are.
        let bang = set_splat_i8_m128i(0x21);
        let tilde = set_splat_i8_m128i(0x7e);
        let colon = set_splat_i8_m128i(b':' as i8);
        let stop_16 = |x| {
            let outside = bitor_m128i(
                cmp_lt_mask_i8_m128i(x, bang),
                cmp_gt_mask_i8_m128i(x, tilde),
            );
            move_mask_i8_m128i(bitor_m128i(outside, cmp_eq_mask_i8_m128i(x, colon)))
        };
        find_first(bytes, 0, stop_16, stop)
    }
    #[cfg(not(target_arch = "x86_64"))]
    find_first(bytes, 0, stop)
}

/// Optional whitespace of RFC 9110 5.6.3.
#[inline]
pub(crate) fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_special_byte() {
        let line = b"abcdefghijklmnop\tqrs";
        assert_eq!(find_special(line, 0, 0x20), Some(16));
        assert_eq!(find_special(line, 17, 0x20), None);
        assert_eq!(find_special(b"0123456789\x7f", 0, 0x20), Some(10));
        assert_eq!(
            find_special("caf\u{e9} au lait".as_bytes(), 0, 0x21),
            Some(5)
        );
        assert_eq!(find_special(b"", 0, 0x20), None);
        for pos in 0..20 {
            let mut v = vec![b'a'; 20];
            v[pos] = b'\r';
            assert_eq!(find_special(&v, 0, 0x20), Some(pos));
        }
    }

    #[test]
    fn finds_where_a_name_ends() {
        assert_eq!(find_name_end(b"Host: x"), Some(4));
        assert_eq!(find_name_end(b"accept-language: en"), Some(15));
        assert_eq!(find_name_end(b"a-rather-long-field-name-indeed"), None);
        assert_eq!(find_name_end(b""), None);
        for bad in [0u8, b' ', b'\t', b'\r', 0x7f, 0x80, 0xff, b':'] {
            for pos in 0..40 {
                let mut v = vec![b'a'; 40];
                v[pos] = bad;
                assert_eq!(find_name_end(&v), Some(pos), "{bad} at {pos}");
            }
        }
        // Separators are visible: they are left to the name's check.
        assert_eq!(find_name_end(b"(comment):"), Some(9));
    }

    #[test]
    fn eq_ignore_case_matches_either_case_and_nothing_else() {
        assert!(eq_ignore_case(b"Content-Length", b"content-length"));
        assert!(eq_ignore_case(b"CONNECTION", b"connection"));
        assert!(!eq_ignore_case(b"connectioN ", b"connection"));
        // '-' | 0x20 is '-', and CR | 0x20 is '-' too: only the byte itself matches a non-letter.
        assert!(!eq_ignore_case(b"content\rlength", b"content-length"));
        assert!(!eq_ignore_case(b"\x10", b"0")); // DLE | 0x20 is '0'
        assert!(!eq_ignore_case(b"[", b"{"));
        assert!(!eq_ignore_case(b"hosts", b"host"));
    }

    #[test]
    fn tchars() {
        assert!(is_tchar(b'G') && is_tchar(b'-') && is_tchar(b'~'));
        assert!(!is_tchar(b'(') && !is_tchar(b':') && !is_tchar(b' ') && !is_tchar(0xc3));
    }
}
