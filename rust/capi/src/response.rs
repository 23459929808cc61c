//! Response heads for C servers: the framing and keep-alive rules of `h1p::response`.

use std::ffi::{c_char, c_int};

use h1p::response::{BodySize, Framing, Request, ResponseHead};

use crate::{polyphony_h1p_header, set_last_error};

/// The request answered is HEAD: the head a GET would get, and no body follows.
pub const POLYPHONY_H1P_REQUEST_HEAD: c_int = 1;
/// The request is HTTP/1.0: no chunked coding.
pub const POLYPHONY_H1P_REQUEST_HTTP10: c_int = 2;
/// The connection may go on after this exchange (the request's keep-alive, and the server's).
pub const POLYPHONY_H1P_REQUEST_REUSABLE: c_int = 4;

/// What follows the head: nothing.
pub const POLYPHONY_H1P_FRAMING_EMPTY: c_int = 0;
/// Exactly `*content_length` bytes (send no more).
pub const POLYPHONY_H1P_FRAMING_LENGTH: c_int = 1;
/// Chunks: `<hex size>\r\n<bytes>\r\n` each, then `0\r\n\r\n`.
pub const POLYPHONY_H1P_FRAMING_CHUNKED: c_int = 2;
/// The bytes as the caller framed them (it gave a Transfer-Encoding).
pub const POLYPHONY_H1P_FRAMING_AS_GIVEN: c_int = 3;
/// Bytes until the connection closes.
pub const POLYPHONY_H1P_FRAMING_UNTIL_CLOSE: c_int = 4;

/// Builds the head of a response with `status` and the `num_headers` fields of `headers` into
/// `buf`: a Content-Length for `body_size` bytes (-1: unknown; chunked, or until close for
/// HTTP/1.0) unless the fields frame the body, and the Connection field the outcome needs.
/// `request` holds POLYPHONY_H1P_REQUEST_ flags.
///
/// Returns the head's length. When that is more than `buf_len`, nothing is written: call again
/// with a buffer that large. Otherwise `*framing` (a POLYPHONY_H1P_FRAMING_ constant),
/// `*content_length` (with POLYPHONY_H1P_FRAMING_LENGTH) and `*keep_alive` (1 if the
/// connection serves another request after this response) are set. Returns -1 for a response
/// that cannot be sent (`polyphony_h1p_last_error()` says why): a status outside 100-999, or a
/// 1xx other than 101 with Upgrade; a field name that is no token, a value with a control
/// character (CR, LF, NUL...);
/// a Content-Length that is invalid, repeated, with a Transfer-Encoding, or more than
/// `body_size`.
///
/// # Safety
/// `headers` must be readable for `num_headers` elements (each name and value for its length),
/// `buf` writable for `buf_len` bytes, and the out-params writable.
#[no_mangle]
pub unsafe extern "C" fn polyphony_h1p_response_head(
    status: c_int,
    headers: *const polyphony_h1p_header,
    num_headers: usize,
    body_size: i64,
    request: c_int,
    buf: *mut c_char,
    buf_len: usize,
    framing: *mut c_int,
    content_length: *mut u64,
    keep_alive: *mut c_int,
) -> i64 {
    if (headers.is_null() && num_headers > 0)
        || (buf.is_null() && buf_len > 0)
        || framing.is_null()
        || content_length.is_null()
        || keep_alive.is_null()
    {
        set_last_error("NULL argument".into());
        return -1;
    }
    let built = u16::try_from(status)
        .map_err(|_| h1p::Error::InvalidStatus)
        .and_then(ResponseHead::new)
        .and_then(|mut head| {
            for i in 0..num_headers {
                // SAFETY: the caller guarantees `num_headers` readable elements, each pointing
                // to readable bytes of its length.
                let (name, value) = unsafe {
                    let field = &*headers.add(i);
                    (
                        bytes(field.name, field.name_len),
                        bytes(field.value, field.value_len),
                    )
                };
                head.field(name, value)?;
            }
            let size = u64::try_from(body_size).map_or(BodySize::Unknown, BodySize::Known);
            let request = Request {
                head: request & POLYPHONY_H1P_REQUEST_HEAD != 0,
                http10: request & POLYPHONY_H1P_REQUEST_HTTP10 != 0,
                reusable: request & POLYPHONY_H1P_REQUEST_REUSABLE != 0,
            };
            head.finish(size, request)
        });
    let done = match built {
        Ok(done) => done,
        Err(e) => {
            set_last_error(e.to_string());
            return -1;
        }
    };
    if done.bytes.len() <= buf_len {
        let (kind, length) = match done.framing {
            Framing::Empty => (POLYPHONY_H1P_FRAMING_EMPTY, 0),
            Framing::Length(n) => (POLYPHONY_H1P_FRAMING_LENGTH, n),
            Framing::Chunked => (POLYPHONY_H1P_FRAMING_CHUNKED, 0),
            Framing::AsGiven => (POLYPHONY_H1P_FRAMING_AS_GIVEN, 0),
            Framing::UntilClose => (POLYPHONY_H1P_FRAMING_UNTIL_CLOSE, 0),
        };
        // SAFETY: checked non-NULL (or `buf_len` is 0 and nothing is copied); the caller
        // guarantees `buf_len` writable bytes and writable out-params.
        unsafe {
            std::ptr::copy_nonoverlapping(done.bytes.as_ptr(), buf.cast(), done.bytes.len());
            *framing = kind;
            *content_length = length;
            *keep_alive = c_int::from(done.keep_alive);
        }
    }
    i64::try_from(done.bytes.len()).unwrap_or(i64::MAX)
}

/// # Safety
/// `ptr` must be readable for `len` bytes (or `len` 0).
unsafe fn bytes<'a>(ptr: *const c_char, len: usize) -> &'a [u8] {
    if len == 0 || ptr.is_null() {
        return &[];
    }
    // SAFETY: as the function's contract says.
    unsafe { std::slice::from_raw_parts(ptr.cast(), len) }
}
