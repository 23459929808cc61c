//! Zero-copy parsing: one call per message head, like picohttpparser's `phr_parse_request`;
//! what it gives points into the caller's bytes.

use std::cell::RefCell;
use std::ffi::{c_char, c_int};

use h1p::{Body, Head, HeadParser, Limits, Mode, Version};

use crate::status::{boundary, non_null, polyphony_result, Failure};

/// A header field: pointers into the parsed bytes, not NUL-terminated.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct polyphony_h1p_header {
    pub name: *const c_char,
    pub name_len: usize,
    pub value: *const c_char,
    pub value_len: usize,
}

/// No body.
pub const POLYPHONY_H1P_BODY_NONE: c_int = 0;
/// A body of `content_length` bytes.
pub const POLYPHONY_H1P_BODY_LENGTH: c_int = 1;
/// A chunked body.
pub const POLYPHONY_H1P_BODY_CHUNKED: c_int = 2;
/// A response body that ends when the connection closes.
pub const POLYPHONY_H1P_BODY_UNTIL_CLOSE: c_int = 3;
/// A body that cannot be read safely: reading it fails; close the connection.
pub const POLYPHONY_H1P_BODY_INVALID: c_int = 4;

/// A message head. Its pointers point into the bytes parsed: the caller's buffer (zero-copy
/// parsing), or the pull parser's, valid until its next call.
#[repr(C)]
pub struct polyphony_h1p_message {
    /// Requests: the method, as sent.
    pub method: *const c_char,
    pub method_len: usize,
    /// Requests: the request target.
    pub path: *const c_char,
    pub path_len: usize,
    /// 1 for HTTP/1.1, 0 for HTTP/1.0 (and `HTTP/1`).
    pub minor_version: c_int,
    /// Responses: the status code.
    pub status: c_int,
    /// Responses: the status message.
    pub reason: *const c_char,
    pub reason_len: usize,
    /// One of the POLYPHONY_H1P_BODY_ constants.
    pub body: c_int,
    /// With POLYPHONY_H1P_BODY_LENGTH: the length.
    pub content_length: u64,
    /// 1 if the connection may carry another message after this one.
    pub keep_alive: c_int,
    /// Bytes of the head, up to the end of its empty line: where the body starts.
    pub head_len: usize,
}

impl polyphony_h1p_message {
    /// The message of `head`, whose spans are into `bytes`.
    pub(crate) fn of(head: &Head, bytes: &[u8]) -> Self {
        let (body, content_length) = match &head.body {
            Body::None => (POLYPHONY_H1P_BODY_NONE, 0),
            Body::Length(n) => (POLYPHONY_H1P_BODY_LENGTH, *n),
            Body::Chunked => (POLYPHONY_H1P_BODY_CHUNKED, 0),
            Body::UntilClose => (POLYPHONY_H1P_BODY_UNTIL_CLOSE, 0),
            Body::Invalid(_) => (POLYPHONY_H1P_BODY_INVALID, 0),
        };
        let (m, p, r) = (
            head.method.of(bytes),
            head.target.of(bytes),
            head.reason.of(bytes),
        );
        polyphony_h1p_message {
            method: m.as_ptr().cast(),
            method_len: m.len(),
            path: p.as_ptr().cast(),
            path_len: p.len(),
            minor_version: match head.version {
                Version::Http11 => 1,
                Version::Http10 | Version::Http1 => 0,
            },
            status: c_int::from(head.status),
            reason: r.as_ptr().cast(),
            reason_len: r.len(),
            body,
            content_length,
            keep_alive: c_int::from(head.keep_alive),
            head_len: head.len,
        }
    }
}

/// The status of a parse error.
pub(crate) fn parse_failure(error: h1p::Error) -> Failure {
    let status = match error {
        h1p::Error::TooLarge { .. } => polyphony_result::TooLarge,
        h1p::Error::IncompleteHead | h1p::Error::IncompleteBody { .. } => {
            polyphony_result::Truncated
        }
        _ => polyphony_result::InvalidMessage,
    };
    Failure::new(status, error.to_string())
}

/// Writes at most `capacity` of the `count` fields into `headers`; returns how many.
///
/// # Safety
/// `headers` must point to `capacity` writable elements.
pub(crate) unsafe fn write_fields<'a>(
    fields: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    headers: *mut polyphony_h1p_header,
    capacity: usize,
) -> usize {
    let mut written = 0;
    for (name, value) in fields.take(capacity) {
        let header = polyphony_h1p_header {
            name: name.as_ptr().cast(),
            name_len: name.len(),
            value: value.as_ptr().cast(),
            value_len: value.len(),
        };
        // SAFETY: `written < capacity`, which the caller guarantees is writable.
        unsafe { headers.add(written).write(header) };
        written += 1;
    }
    written
}

/// The header slots' capacity, after checking the pointers (`headers` may be NULL only with a
/// capacity of 0).
///
/// # Safety
/// `num_headers`, if not NULL, must be readable.
pub(crate) unsafe fn slots(
    headers: *const polyphony_h1p_header,
    num_headers: *const usize,
) -> Result<usize, Failure> {
    non_null(num_headers, "num_headers")?;
    // SAFETY: checked non-NULL; readable per the contract.
    let capacity = unsafe { *num_headers };
    if capacity > 0 {
        non_null(headers, "headers")?;
    }
    Ok(capacity)
}

thread_local! {
    static HEADS: RefCell<[Option<HeadParser>; 2]> = const { RefCell::new([None, None]) };
}

/// Parses one head of `mode` at the start of `buf[..len]` with this thread's reusable parser
/// (no allocation once warm) into `message` and the header slots.
///
/// # Safety
/// As `polyphony_h1p_parse_request`.
unsafe fn parse_head(
    mode: Mode,
    buf: *const c_char,
    len: usize,
    message: *mut polyphony_h1p_message,
    headers: *mut polyphony_h1p_header,
    num_headers: *mut usize,
) -> Result<polyphony_result, Failure> {
    if len > 0 {
        non_null(buf, "buf")?;
    }
    non_null(message, "message")?;
    // SAFETY: per this function's contract.
    let capacity = unsafe { slots(headers, num_headers)? };
    let bytes = if len == 0 {
        &[][..]
    } else {
        // SAFETY: checked non-NULL; the caller guarantees `len` readable bytes.
        unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), len) }
    };
    HEADS.with(|heads| {
        let mut heads = heads.borrow_mut();
        let slot = &mut heads[mode as usize];
        let limits = Limits {
            headers: capacity.min(Limits::default().headers),
            ..Limits::default()
        };
        let parser = match slot {
            Some(parser) if *parser.limits() == limits => parser,
            _ => slot.insert(HeadParser::new(mode, limits)),
        };
        parser.reset();
        match parser.parse(bytes) {
            Ok(Some(head)) => {
                let fields = head
                    .fields
                    .iter()
                    .map(|f| (f.name.of(bytes), f.value.of(bytes)));
                // SAFETY: checked non-NULL, writable per the contract; `headers` holds
                // `capacity` slots.
                unsafe {
                    message.write(polyphony_h1p_message::of(head, bytes));
                    *num_headers = write_fields(fields, headers, capacity);
                }
                Ok(polyphony_result::Ok)
            }
            Ok(None) => Ok(polyphony_result::Incomplete),
            Err(e) => Err(parse_failure(e)),
        }
    })
}

/// Parses the request head at the start of `buf[0..len]`, without copying: the pointers it
/// gives point into `buf`. On entry `*num_headers` is the number of slots in `headers`; on
/// success, the number of fields written there. `message->head_len` is where the body starts.
///
/// Returns `POLYPHONY_RESULT_OK`; `POLYPHONY_RESULT_INCOMPLETE` when the head does not end in
/// the bytes given (call again with more, from the start; nothing is written);
/// `POLYPHONY_RESULT_INVALID_MESSAGE`; or `POLYPHONY_RESULT_TOO_LARGE`, for a part over H1P's
/// limits or more fields than slots.
///
/// # Safety
/// `buf` must be readable for `len` bytes; `message` and `num_headers` writable; `headers`
/// writable for `*num_headers` elements. `buf` may be NULL if `len` is 0, `headers` if
/// `*num_headers` is 0.
#[no_mangle]
pub unsafe extern "C" fn polyphony_h1p_parse_request(
    buf: *const c_char,
    len: usize,
    message: *mut polyphony_h1p_message,
    headers: *mut polyphony_h1p_header,
    num_headers: *mut usize,
) -> polyphony_result {
    // SAFETY: per this function's contract.
    boundary(|| unsafe { parse_head(Mode::Server, buf, len, message, headers, num_headers) })
}

/// Parses the response head at the start of `buf[0..len]`, without copying: as
/// `polyphony_h1p_parse_request`, with `message->status` and `message->reason` set instead of
/// the method and path.
///
/// # Safety
/// As `polyphony_h1p_parse_request`.
#[no_mangle]
pub unsafe extern "C" fn polyphony_h1p_parse_response(
    buf: *const c_char,
    len: usize,
    message: *mut polyphony_h1p_message,
    headers: *mut polyphony_h1p_header,
    num_headers: *mut usize,
) -> polyphony_result {
    // SAFETY: per this function's contract.
    boundary(|| unsafe { parse_head(Mode::Client, buf, len, message, headers, num_headers) })
}
