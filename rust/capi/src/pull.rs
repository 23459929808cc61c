//! The pull parser: reads through a C callback, one message after another, and gives each
//! head, then its body piece by piece, then its trailer fields.

use std::ffi::{c_char, c_int, c_void};

use h1p::pull::{Parser, PullError, Source};
use h1p::{Limits, Mode};

use crate::parse::{
    parse_failure, polyphony_h1p_header, polyphony_h1p_message, slots, write_fields,
};
use crate::status::{boundary, boundary_void, non_null, polyphony_result, Failure, Outcome};

/// Parse a requests' stream (a server).
pub const POLYPHONY_H1P_SERVER: c_int = 0;
/// Parse a responses' stream (a client).
pub const POLYPHONY_H1P_CLIENT: c_int = 1;

/// Reads at most `capacity` bytes into `buf`; returns how many, 0 at the end of the input, or
/// a negative value on error (the parser's call then returns `POLYPHONY_RESULT_READ_ERROR`,
/// the message giving the value).
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

/// A pull parser: made by `polyphony_h1p_parser_new`, freed by `polyphony_h1p_parser_free`;
/// used by one thread at a time.
pub struct polyphony_h1p_parser {
    inner: Parser<CSource>,
}

/// A pull parser's limits. A message over one is refused with `POLYPHONY_RESULT_TOO_LARGE`,
/// the message naming the limit. 0 in a field means its default: H1P's, which
/// `polyphony_h1p_limits_default` fills in (shown in parentheses).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct polyphony_h1p_limits {
    /// Bytes of a request's method (16).
    pub method: usize,
    /// Bytes of a request's target (4096).
    pub target: usize,
    /// Bytes of a response's status message (256).
    pub status_message: usize,
    /// Bytes of a field name (128).
    pub header_name: usize,
    /// Bytes of a field value (2048).
    pub header_value: usize,
    /// Fields in a head, and in a trailer section (256).
    pub headers: usize,
    /// Bytes of the whole head (65536).
    pub head: usize,
    /// Bytes of a body (0: no limit).
    pub max_body: u64,
}

/// Fills `limits` with H1P's defaults.
///
/// Returns `POLYPHONY_RESULT_OK`, or `POLYPHONY_RESULT_NULL_ARGUMENT`.
///
/// # Safety
/// `limits` must be writable.
#[no_mangle]
pub unsafe extern "C" fn polyphony_h1p_limits_default(
    limits: *mut polyphony_h1p_limits,
) -> polyphony_result {
    boundary(|| {
        non_null(limits, "limits")?;
        let defaults = Limits::default();
        let filled = polyphony_h1p_limits {
            method: defaults.method,
            target: defaults.target,
            status_message: defaults.status_message,
            header_name: defaults.header_name,
            header_value: defaults.header_value,
            headers: defaults.headers,
            head: defaults.head,
            max_body: defaults.max_body.unwrap_or(0),
        };
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { limits.write(filled) };
        Ok(polyphony_result::Ok)
    })
}

/// H1P's limits from C's: a field left at 0 keeps the default.
fn limits_from(limits: &polyphony_h1p_limits) -> Limits {
    let defaults = Limits::default();
    let or = |value: usize, default: usize| if value == 0 { default } else { value };
    Limits {
        method: or(limits.method, defaults.method),
        target: or(limits.target, defaults.target),
        status_message: or(limits.status_message, defaults.status_message),
        header_name: or(limits.header_name, defaults.header_name),
        header_value: or(limits.header_value, defaults.header_value),
        headers: or(limits.headers, defaults.headers),
        head: or(limits.head, defaults.head),
        max_body: (limits.max_body != 0)
            .then_some(limits.max_body)
            .or(defaults.max_body),
    }
}

/// Makes a parser of requests (`POLYPHONY_H1P_SERVER`) or responses (`POLYPHONY_H1P_CLIENT`)
/// that reads with `read(ctx, ...)`, under `limits` (NULL: H1P's defaults), and stores it in
/// `*parser`. `ctx` is handed to `read` and never touched by the library; `limits` is copied.
///
/// Returns `POLYPHONY_RESULT_OK`; `POLYPHONY_RESULT_NULL_ARGUMENT` for a NULL `read` or
/// `parser`; `POLYPHONY_RESULT_INVALID_ARGUMENT` for an unknown mode.
///
/// # Safety
/// `parser` must be writable; `limits`, if not NULL, readable; `read` must follow
/// `polyphony_h1p_read_fn`'s contract for as long as the parser lives.
#[no_mangle]
pub unsafe extern "C" fn polyphony_h1p_parser_new(
    mode: c_int,
    read: polyphony_h1p_read_fn,
    ctx: *mut c_void,
    limits: *const polyphony_h1p_limits,
    parser: *mut *mut polyphony_h1p_parser,
) -> polyphony_result {
    boundary(|| {
        non_null(parser, "parser")?;
        let mode = match mode {
            POLYPHONY_H1P_SERVER => Mode::Server,
            POLYPHONY_H1P_CLIENT => Mode::Client,
            _ => {
                return Err(Failure::new(
                    polyphony_result::InvalidArgument,
                    format!("unknown parser mode {mode}"),
                ))
            }
        };
        let read = read.ok_or_else(|| Failure::null("the read callback"))?;
        // SAFETY: per this function's contract.
        let limits = unsafe { limits.as_ref() }.map_or_else(Limits::default, limits_from);
        let source = CSource {
            read,
            ctx,
            scratch: vec![0; h1p::pull::READ_SIZE].into_boxed_slice(),
        };
        let made = Box::new(polyphony_h1p_parser {
            inner: Parser::new(source, mode, limits),
        });
        // SAFETY: checked non-NULL; writable per the contract.
        unsafe { parser.write(Box::into_raw(made)) };
        Ok(polyphony_result::Ok)
    })
}

/// Frees a parser (NULL is ignored).
///
/// # Safety
/// `parser` must come from `polyphony_h1p_parser_new` and not be used afterwards.
#[no_mangle]
pub unsafe extern "C" fn polyphony_h1p_parser_free(parser: *mut polyphony_h1p_parser) {
    boundary_void(|| {
        if !parser.is_null() {
            // SAFETY: per the contract, `parser` came from `Box::into_raw` and is freed once.
            drop(unsafe { Box::from_raw(parser) });
        }
    })
}

fn pull_failure(error: PullError<isize>) -> Failure {
    match error {
        PullError::Parse(e) => parse_failure(e),
        PullError::Source(n) => Failure::new(
            polyphony_result::ReadError,
            format!("the read callback failed ({n})"),
        ),
        PullError::Misuse(m) => Failure::new(polyphony_result::InvalidState, m),
    }
}

/// The parser behind a pointer from C.
///
/// # Safety
/// `parser`, if not NULL, must be a live parser not otherwise borrowed.
unsafe fn live<'a>(parser: *mut polyphony_h1p_parser) -> Result<&'a mut Parser<CSource>, Failure> {
    non_null(parser, "parser")?;
    // SAFETY: checked non-NULL; live per the contract.
    Ok(unsafe { &mut (*parser).inner })
}

/// Reads the next message head (skipping what is left of the previous body) into `message`
/// and `headers`. On entry `*num_headers` is the number of slots in `headers`; on success, the
/// number of fields written there. The pointers stay valid until the next call on this parser.
///
/// Returns `POLYPHONY_RESULT_OK`; `POLYPHONY_RESULT_END` at a clean end of the input, between
/// messages; or a failure: `POLYPHONY_RESULT_INVALID_MESSAGE`, `..._TOO_LARGE` (also for more
/// fields than slots), `..._TRUNCATED` (the input ended inside the head), `..._READ_ERROR`.
///
/// # Safety
/// `parser` must be a live parser; `message` and `num_headers` writable; `headers` writable for
/// `*num_headers` elements (it may be NULL if that is 0).
#[no_mangle]
pub unsafe extern "C" fn polyphony_h1p_parser_parse_headers(
    parser: *mut polyphony_h1p_parser,
    message: *mut polyphony_h1p_message,
    headers: *mut polyphony_h1p_header,
    num_headers: *mut usize,
) -> polyphony_result {
    boundary(|| {
        // SAFETY: per this function's contract.
        let parser = unsafe { live(parser)? };
        non_null(message, "message")?;
        // SAFETY: per this function's contract.
        let capacity = unsafe { slots(headers, num_headers)? };
        let Some(parsed) = parser.parse_headers().map_err(pull_failure)? else {
            return Ok(polyphony_result::End);
        };
        let head = parsed.head;
        if head.fields.len() > capacity {
            return Err(parse_failure(h1p::Error::TooLarge {
                limit: h1p::Limit::HeaderCount,
                max: capacity as u64,
            }));
        }
        let fields = head
            .fields
            .iter()
            .map(|f| (f.name.of(parsed.bytes), f.value.of(parsed.bytes)));
        // SAFETY: checked non-NULL and writable per the contract; `headers` has `capacity`
        // elements and `head.fields.len() <= capacity`.
        unsafe {
            message.write(polyphony_h1p_message::of(head, parsed.bytes));
            *num_headers = write_fields(fields, headers, capacity);
        }
        Ok(polyphony_result::Ok)
    })
}

/// The next piece of the current message's body: sets `*data` and `*len` to it. The bytes stay
/// valid until the next call on this parser.
///
/// Returns `POLYPHONY_RESULT_OK` with a piece (never empty); `POLYPHONY_RESULT_END` once the
/// body has been read (`*len` is then 0); or a failure: `..._TRUNCATED` (the input ended inside
/// the body), `..._INVALID_MESSAGE` (bad chunked coding), `..._TOO_LARGE` (over `max_body`),
/// `..._READ_ERROR`, `..._INVALID_STATE` (no head read yet, or after a failure).
///
/// # Safety
/// `parser` must be a live parser; `data` and `len` writable.
#[no_mangle]
pub unsafe extern "C" fn polyphony_h1p_parser_read_body_chunk(
    parser: *mut polyphony_h1p_parser,
    data: *mut *const c_char,
    len: *mut usize,
) -> polyphony_result {
    boundary(|| {
        // SAFETY: per this function's contract.
        let parser = unsafe { live(parser)? };
        non_null(data, "data")?;
        non_null(len, "len")?;
        let chunk = parser.read_body_chunk(false).map_err(pull_failure)?;
        let (pointer, length, status) = match chunk {
            Some(chunk) => (chunk.as_ptr().cast(), chunk.len(), polyphony_result::Ok),
            None => (std::ptr::null(), 0, polyphony_result::End),
        };
        // SAFETY: checked non-NULL, writable per the contract.
        unsafe {
            *data = pointer;
            *len = length;
        }
        Ok(status)
    })
}

/// The current message's trailer fields (a chunked body's), names lower-cased, once its body
/// has been read to the end; none before. On entry `*num_headers` is the number of slots in
/// `headers`; on success, the number of fields written. They stay valid until the next
/// `polyphony_h1p_parser_parse_headers`.
///
/// Returns `POLYPHONY_RESULT_OK`; `POLYPHONY_RESULT_TOO_LARGE` if there are more fields than
/// slots (`*num_headers` is then set to how many there are, and nothing is written).
///
/// # Safety
/// `parser` must be a live parser; `num_headers` writable; `headers` writable for
/// `*num_headers` elements (it may be NULL if that is 0).
#[no_mangle]
pub unsafe extern "C" fn polyphony_h1p_parser_trailers(
    parser: *mut polyphony_h1p_parser,
    headers: *mut polyphony_h1p_header,
    num_headers: *mut usize,
) -> polyphony_result {
    boundary(|| -> Outcome {
        // SAFETY: per this function's contract.
        let parser = unsafe { live(parser)? };
        // SAFETY: per this function's contract.
        let capacity = unsafe { slots(headers, num_headers)? };
        let trailers = parser.trailers();
        if trailers.len() > capacity {
            // SAFETY: checked non-NULL, writable per the contract.
            unsafe { *num_headers = trailers.len() };
            return Err(Failure::new(
                polyphony_result::TooLarge,
                format!("{} trailer fields, {capacity} slots", trailers.len()),
            ));
        }
        let fields = trailers.iter().map(|(n, v)| (&n[..], &v[..]));
        // SAFETY: `headers` holds `capacity` writable elements, and `num_headers` is writable,
        // per the contract.
        unsafe { *num_headers = write_fields(fields, headers, capacity) };
        Ok(polyphony_result::Ok)
    })
}
