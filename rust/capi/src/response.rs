//! Response heads for C servers: the framing and keep-alive rules of `h1p::response`.

use std::ffi::{c_char, c_int};

use h1p::response::{BodySize, Framing, Request, ResponseHead};

use crate::parse::polyphony_h1p_header;
use crate::status::{boundary, non_null, polyphony_result, Failure};

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

/// What `polyphony_h1p_response_head` built.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct polyphony_h1p_response_info {
    /// Bytes of the head; with `POLYPHONY_RESULT_BUFFER_TOO_SMALL`, the bytes it needs.
    pub head_len: usize,
    /// What follows the head: a POLYPHONY_H1P_FRAMING_ constant.
    pub framing: c_int,
    /// With POLYPHONY_H1P_FRAMING_LENGTH: the body's length.
    pub content_length: u64,
    /// 1 if the connection serves another request after this response.
    pub keep_alive: c_int,
}

/// Builds the head of a response with `status` and the `num_headers` fields of `headers` into
/// `buf`: a Content-Length for `body_size` bytes (-1: unknown; chunked, or until close for
/// HTTP/1.0) unless the fields frame the body, and the Connection field the outcome needs.
/// `request` holds POLYPHONY_H1P_REQUEST_ flags. Nothing is kept: the fields are copied.
///
/// Returns `POLYPHONY_RESULT_OK`, `*info` filled in; `POLYPHONY_RESULT_BUFFER_TOO_SMALL` when
/// the head needs more than `buf_len` bytes: only `info->head_len` is written (call again with
/// that much room); or `POLYPHONY_RESULT_INVALID_RESPONSE` for a response that cannot be sent:
/// a status outside 100-999, or a 1xx other than 101 with Upgrade; a field name that is no
/// token, a value with a control character (CR, LF, NUL...); a Content-Length that is invalid,
/// repeated, with a Transfer-Encoding, or more than `body_size`.
///
/// # Safety
/// `headers` must be readable for `num_headers` elements (each name and value for its length;
/// NULL if `num_headers` is 0), `buf` writable for `buf_len` bytes (NULL if 0), `info`
/// writable.
#[no_mangle]
pub unsafe extern "C" fn polyphony_h1p_response_head(
    status: c_int,
    headers: *const polyphony_h1p_header,
    num_headers: usize,
    body_size: i64,
    request: c_int,
    buf: *mut c_char,
    buf_len: usize,
    info: *mut polyphony_h1p_response_info,
) -> polyphony_result {
    boundary(|| {
        if num_headers > 0 {
            non_null(headers, "headers")?;
        }
        if buf_len > 0 {
            non_null(buf, "buf")?;
        }
        non_null(info, "info")?;
        let built = u16::try_from(status)
            .map_err(|_| h1p::Error::InvalidStatus)
            .and_then(ResponseHead::new)
            .and_then(|mut head| {
                for i in 0..num_headers {
                    // SAFETY: the caller guarantees `num_headers` readable elements, each
                    // pointing to readable bytes of its length.
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
            })
            .map_err(|e| Failure::new(polyphony_result::InvalidResponse, e.to_string()))?;
        let head_len = built.bytes.len();
        if head_len > buf_len {
            // SAFETY: checked non-NULL; writable per the contract.
            unsafe { (*info).head_len = head_len };
            return Ok(polyphony_result::BufferTooSmall);
        }
        let (framing, content_length) = match built.framing {
            Framing::Empty => (POLYPHONY_H1P_FRAMING_EMPTY, 0),
            Framing::Length(n) => (POLYPHONY_H1P_FRAMING_LENGTH, n),
            Framing::Chunked => (POLYPHONY_H1P_FRAMING_CHUNKED, 0),
            Framing::AsGiven => (POLYPHONY_H1P_FRAMING_AS_GIVEN, 0),
            Framing::UntilClose => (POLYPHONY_H1P_FRAMING_UNTIL_CLOSE, 0),
        };
        // SAFETY: `head_len <= buf_len`, and `buf` is writable for `buf_len` bytes (checked
        // non-NULL when that is not 0); `info` checked non-NULL, writable per the contract.
        unsafe {
            std::ptr::copy_nonoverlapping(built.bytes.as_ptr(), buf.cast(), head_len);
            info.write(polyphony_h1p_response_info {
                head_len,
                framing,
                content_length,
                keep_alive: c_int::from(built.keep_alive),
            });
        }
        Ok(polyphony_result::Ok)
    })
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
