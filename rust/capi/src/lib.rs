//! The C ABI of Polyphony's Rust core: the H1P parser, zero-copy (one call per request head,
//! like picohttpparser's `phr_parse_request`) and pull (a parser that reads through a
//! callback, one message after another). `include/polyphony.h` is generated from this file
//! by cbindgen.
//!
//! Every function checks its pointers for NULL; pointers into a buffer stay valid as long as
//! the buffer (zero-copy calls) or until the next call on the same parser (pull parser).

// C names for C types, as the header shows them.
#![allow(non_camel_case_types)]

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr;

use h1p::pull::{Parser, PullError, Source};
use h1p::{Body, Head, HeadParser, Limits, Mode, Version};

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

/// Parse a requests' stream (a server).
pub const POLYPHONY_H1P_SERVER: c_int = 0;
/// Parse a responses' stream (a client).
pub const POLYPHONY_H1P_CLIENT: c_int = 1;

/// A message head from the pull parser.
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
}

thread_local! {
    static HEADS: RefCell<[Option<HeadParser>; 2]> = const { RefCell::new([None, None]) };
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: String) {
    let message = CString::new(message).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = message);
}

/// The message of the last error of `polyphony_h1p_parse_request` or
/// `polyphony_h1p_parse_response` on this thread ("" if none). Valid until the next call.
#[no_mangle]
pub extern "C" fn polyphony_h1p_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

fn minor(version: Version) -> c_int {
    match version {
        Version::Http11 => 1,
        Version::Http10 | Version::Http1 => 0,
    }
}

/// Parses one head of `mode` from `bytes` with this thread's reusable parser (no allocation
/// once warm), then hands it to `fill`. Returns the head's length, -2 or -1.
fn parse_head(
    mode: Mode,
    bytes: &[u8],
    max_headers: usize,
    fill: impl FnOnce(&Head, &[u8]),
) -> c_int {
    HEADS.with(|heads| {
        let mut heads = heads.borrow_mut();
        let slot = &mut heads[mode as usize];
        let limits = Limits {
            headers: max_headers.min(Limits::default().headers),
            ..Limits::default()
        };
        let parser = match slot {
            Some(parser) if *parser.limits() == limits => parser,
            _ => slot.insert(HeadParser::new(mode, limits)),
        };
        parser.reset();
        match parser.parse(bytes) {
            Ok(Some(head)) => {
                fill(head, bytes);
                c_int::try_from(head.len).unwrap_or(-1)
            }
            Ok(None) => -2,
            Err(e) => {
                set_last_error(e.to_string());
                -1
            }
        }
    })
}

/// # Safety
/// `headers` must point to `capacity` writable elements.
unsafe fn write_headers(
    head: &Head,
    bytes: &[u8],
    headers: *mut polyphony_h1p_header,
    capacity: usize,
) -> usize {
    for (i, field) in head.fields.iter().take(capacity).enumerate() {
        let (name, value) = (field.name.of(bytes), field.value.of(bytes));
        let header = polyphony_h1p_header {
            name: name.as_ptr().cast(),
            name_len: name.len(),
            value: value.as_ptr().cast(),
            value_len: value.len(),
        };
        // SAFETY: `i < capacity`, which the caller guarantees is writable.
        unsafe { headers.add(i).write(header) };
    }
    head.fields.len().min(capacity)
}

/// Parses the request head at the start of `buf[0..len]`, without copying: `method`, `path`
/// and the headers point into `buf`. On entry `*num_headers` is the capacity of `headers`;
/// on return, the number of fields. `last_len` (the length of a previous incomplete attempt)
/// is accepted for picohttpparser compatibility; the head is parsed from the start.
///
/// Returns the length of the head in bytes, -2 if it is incomplete, or -1 if it is invalid
/// (`polyphony_h1p_last_error()` says why; more fields than `*num_headers` is an error).
///
/// # Safety
/// `buf` must be readable for `len` bytes; every other pointer must be valid for writing,
/// `headers` for `*num_headers` elements.
#[no_mangle]
pub unsafe extern "C" fn polyphony_h1p_parse_request(
    buf: *const c_char,
    len: usize,
    method: *mut *const c_char,
    method_len: *mut usize,
    path: *mut *const c_char,
    path_len: *mut usize,
    minor_version: *mut c_int,
    headers: *mut polyphony_h1p_header,
    num_headers: *mut usize,
    last_len: usize,
) -> c_int {
    let _ = last_len;
    let pointers = [
        method.cast::<c_void>(),
        method_len.cast(),
        path.cast(),
        path_len.cast(),
    ];
    if buf.is_null()
        || minor_version.is_null()
        || headers.is_null()
        || num_headers.is_null()
        || pointers.iter().any(|p| p.is_null())
    {
        set_last_error("NULL argument".into());
        return -1;
    }
    // SAFETY: checked non-NULL; the caller guarantees `len` readable bytes and writable outputs.
    unsafe {
        let bytes = std::slice::from_raw_parts(buf.cast::<u8>(), len);
        let capacity = *num_headers;
        parse_head(Mode::Server, bytes, capacity, |head, bytes| {
            let (m, p) = (head.method.of(bytes), head.target.of(bytes));
            *method = m.as_ptr().cast();
            *method_len = m.len();
            *path = p.as_ptr().cast();
            *path_len = p.len();
            *minor_version = minor(head.version);
            *num_headers = write_headers(head, bytes, headers, capacity);
        })
    }
}

/// Parses the response head at the start of `buf[0..len]`, without copying; as
/// `polyphony_h1p_parse_request`, with the status code and message instead.
///
/// # Safety
/// As `polyphony_h1p_parse_request`.
#[no_mangle]
pub unsafe extern "C" fn polyphony_h1p_parse_response(
    buf: *const c_char,
    len: usize,
    minor_version: *mut c_int,
    status: *mut c_int,
    message: *mut *const c_char,
    message_len: *mut usize,
    headers: *mut polyphony_h1p_header,
    num_headers: *mut usize,
) -> c_int {
    let pointers = [
        minor_version.cast::<c_void>(),
        status.cast(),
        message.cast(),
        message_len.cast(),
    ];
    if buf.is_null()
        || headers.is_null()
        || num_headers.is_null()
        || pointers.iter().any(|p| p.is_null())
    {
        set_last_error("NULL argument".into());
        return -1;
    }
    // SAFETY: checked non-NULL; the caller guarantees `len` readable bytes and writable outputs.
    unsafe {
        let bytes = std::slice::from_raw_parts(buf.cast::<u8>(), len);
        let capacity = *num_headers;
        parse_head(Mode::Client, bytes, capacity, |head, bytes| {
            let reason = head.reason.of(bytes);
            *minor_version = minor(head.version);
            *status = c_int::from(head.status);
            *message = reason.as_ptr().cast();
            *message_len = reason.len();
            *num_headers = write_headers(head, bytes, headers, capacity);
        })
    }
}

/// Reads at most `capacity` bytes into `buf`; returns how many, 0 at the end of the input, or
/// a negative value on error (the parser then fails with "read error").
pub type polyphony_h1p_read_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, buf: *mut c_char, capacity: usize) -> isize>;

struct CSource {
    read: unsafe extern "C" fn(*mut c_void, *mut c_char, usize) -> isize,
    ctx: *mut c_void,
    scratch: Box<[u8]>,
}

impl Source for CSource {
    type Error = isize;

    fn read(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<usize, isize> {
        let capacity = max.min(self.scratch.len());
        // SAFETY: `scratch` is writable for `capacity` bytes; the callback's contract is to
        // write at most that many and return the count.
        let n = unsafe { (self.read)(self.ctx, self.scratch.as_mut_ptr().cast(), capacity) };
        let n = usize::try_from(n).map_err(|_| n)?;
        buf.extend_from_slice(&self.scratch[..n.min(capacity)]);
        Ok(n.min(capacity))
    }
}

/// A pull parser: reads through a callback, one message after another.
pub struct polyphony_h1p_parser {
    inner: Parser<CSource>,
    error: CString,
}

/// A parser of requests (`POLYPHONY_H1P_SERVER`) or responses (`POLYPHONY_H1P_CLIENT`) that
/// reads with `read(ctx, ...)`. Returns NULL if `read` is NULL or `mode` is unknown. Free it
/// with `polyphony_h1p_parser_free`.
#[no_mangle]
pub extern "C" fn polyphony_h1p_parser_new(
    mode: c_int,
    read: polyphony_h1p_read_fn,
    ctx: *mut c_void,
) -> *mut polyphony_h1p_parser {
    let mode = match mode {
        POLYPHONY_H1P_SERVER => Mode::Server,
        POLYPHONY_H1P_CLIENT => Mode::Client,
        _ => return ptr::null_mut(),
    };
    let Some(read) = read else {
        return ptr::null_mut();
    };
    let source = CSource {
        read,
        ctx,
        scratch: vec![0; h1p::pull::READ_SIZE].into_boxed_slice(),
    };
    Box::into_raw(Box::new(polyphony_h1p_parser {
        inner: Parser::new(source, mode, Limits::default()),
        error: CString::default(),
    }))
}

/// Frees a parser (NULL is ignored).
///
/// # Safety
/// `parser` must come from `polyphony_h1p_parser_new` and not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn polyphony_h1p_parser_free(parser: *mut polyphony_h1p_parser) {
    if !parser.is_null() {
        // SAFETY: per the contract, `parser` came from `Box::into_raw` and is freed once.
        drop(unsafe { Box::from_raw(parser) });
    }
}

fn failure(parser: &mut polyphony_h1p_parser, error: PullError<isize>) -> c_int {
    let message = match error {
        PullError::Parse(e) => e.to_string(),
        PullError::Source(n) => format!("read error ({n})"),
        PullError::Misuse(m) => m.to_owned(),
    };
    parser.error = CString::new(message).unwrap_or_default();
    -1
}

/// Parses the next message head (skipping the rest of the previous body). On entry
/// `*num_headers` is the capacity of `headers`; on return, the number of fields. Pointers
/// stay valid until the next call on this parser.
///
/// Returns 1 when a head was parsed, 0 at a clean end of input between messages, -1 on error
/// (`polyphony_h1p_parser_error` says why).
///
/// # Safety
/// `parser` must be a live parser; `message` and `num_headers` writable; `headers` writable
/// for `*num_headers` elements.
#[no_mangle]
pub unsafe extern "C" fn polyphony_h1p_parser_parse_headers(
    parser: *mut polyphony_h1p_parser,
    message: *mut polyphony_h1p_message,
    headers: *mut polyphony_h1p_header,
    num_headers: *mut usize,
) -> c_int {
    if parser.is_null() || message.is_null() || headers.is_null() || num_headers.is_null() {
        return -1;
    }
    // SAFETY: checked non-NULL; the caller guarantees a live parser and writable outputs.
    let (parser, capacity) = unsafe { (&mut *parser, *num_headers) };
    let parsed = match parser.inner.parse_headers() {
        Ok(None) => return 0,
        Ok(Some(parsed)) => parsed,
        Err(e) => return failure(parser, e),
    };
    let head = parsed.head;
    if head.fields.len() > capacity {
        let error = PullError::Parse(h1p::Error::TooLarge {
            limit: h1p::Limit::HeaderCount,
            max: capacity as u64,
        });
        return failure(parser, error);
    }
    let (body, content_length) = match &head.body {
        Body::None => (POLYPHONY_H1P_BODY_NONE, 0),
        Body::Length(n) => (POLYPHONY_H1P_BODY_LENGTH, *n),
        Body::Chunked => (POLYPHONY_H1P_BODY_CHUNKED, 0),
        Body::UntilClose => (POLYPHONY_H1P_BODY_UNTIL_CLOSE, 0),
        Body::Invalid(_) => (POLYPHONY_H1P_BODY_INVALID, 0),
    };
    let (m, p, r) = (
        parsed.get(head.method),
        parsed.get(head.target),
        parsed.get(head.reason),
    );
    let out = polyphony_h1p_message {
        method: m.as_ptr().cast(),
        method_len: m.len(),
        path: p.as_ptr().cast(),
        path_len: p.len(),
        minor_version: minor(head.version),
        status: c_int::from(head.status),
        reason: r.as_ptr().cast(),
        reason_len: r.len(),
        body,
        content_length,
        keep_alive: c_int::from(head.keep_alive),
    };
    // SAFETY: checked non-NULL and writable per the contract; `headers` has `capacity`
    // elements and `head.fields.len() <= capacity`.
    unsafe {
        message.write(out);
        *num_headers = write_headers(head, parsed.bytes, headers, capacity);
    }
    1
}

/// The next piece of the current message's body: sets `*data` and returns its length; 0 at
/// the end of the body; -1 on error. The bytes stay valid until the next call.
///
/// # Safety
/// `parser` must be a live parser and `data` writable.
#[no_mangle]
pub unsafe extern "C" fn polyphony_h1p_parser_read_body_chunk(
    parser: *mut polyphony_h1p_parser,
    data: *mut *const c_char,
) -> isize {
    if parser.is_null() || data.is_null() {
        return -1;
    }
    // SAFETY: checked non-NULL; the caller guarantees a live parser.
    let parser = unsafe { &mut *parser };
    match parser.inner.read_body_chunk(false) {
        Ok(Some(chunk)) => {
            // SAFETY: checked non-NULL, writable per the contract.
            unsafe { *data = chunk.as_ptr().cast() };
            isize::try_from(chunk.len()).unwrap_or(isize::MAX)
        }
        Ok(None) => 0,
        Err(e) => failure(parser, e) as isize,
    }
}

/// Why the parser's last call failed ("" if it did not). Valid until the next call.
///
/// # Safety
/// `parser` must be a live parser.
#[no_mangle]
pub unsafe extern "C" fn polyphony_h1p_parser_error(
    parser: *const polyphony_h1p_parser,
) -> *const c_char {
    if parser.is_null() {
        return c"NULL parser".as_ptr();
    }
    // SAFETY: checked non-NULL; the caller guarantees a live parser.
    unsafe { (*parser).error.as_ptr() }
}
