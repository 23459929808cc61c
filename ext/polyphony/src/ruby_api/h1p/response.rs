//! `H1P.send_response`, `H1P.send_chunked_response` and `H1P.send_body_chunk`.
//!
//! The head is built in Rust and written with the body in one `write(head, body)` call (a
//! writev on a real IO). Header names must be tokens and values must not hold CR, LF or NUL:
//! anything else is an `H1P::Error`, never a split response.

use magnus::value::ReprValue;
use magnus::{
    function, prelude::*, Error, Integer, RArray, RHash, RModule, RString, Ruby, Symbol, Value,
};

use magnus::rb_sys::AsRawValue;

use super::error;
use crate::helpers::io;
use crate::ruby_api::backend::{Awaited, Backend};
use crate::ruby_api::io::write_all;

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// A Ruby String, Symbol or anything else as its `to_s` bytes.
fn text(value: Value) -> Result<Vec<u8>, Error> {
    let string = match RString::from_value(value) {
        Some(s) => s,
        None => match Symbol::from_value(value) {
            Some(sym) => return Ok(sym.name()?.as_bytes().to_vec()),
            None => value.funcall::<_, _, RString>("to_s", ())?,
        },
    };
    // SAFETY: copied at once, with no Ruby call in between.
    Ok(unsafe { string.as_slice() }.to_vec())
}

/// Whether a Connection field's value has the `close` token (any case, among others).
fn says_close(value: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|token| h1p::eq_ignore_case(token.trim_ascii(), b"close"))
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn is_token(name: &[u8]) -> bool {
    !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

struct HeadInfo {
    head: Vec<u8>,
}

/// The status as a number (an Integer, or a String starting with three digits).
fn status_code(status_value: Value) -> Result<u16, Error> {
    if status_value.is_nil() {
        return Ok(200);
    }
    let status = match magnus::Fixnum::from_value(status_value) {
        // The common case, with no String made.
        Some(status) => u16::try_from(status.to_i64()).ok(),
        None => String::from_utf8_lossy(&text(status_value)?)
            .trim()
            .get(..3)
            .and_then(|digits| digits.parse::<u16>().ok()),
    };
    status
        .filter(|s| (100..=999).contains(s))
        .ok_or_else(|| error(format!("invalid :status {}", status_value.inspect())))
}

/// A response head being built: the status line, then fields.
struct Head {
    head: Vec<u8>,
    status: u16,
    has_length: bool,
    has_encoding: bool,
    has_connection: bool,
    /// A Connection field among them says "close".
    asks_close: bool,
}

impl Head {
    fn new(status: u16) -> Self {
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(&mut head, status.into());
        head.push(b' ');
        head.extend_from_slice(reason(status).as_bytes());
        head.extend_from_slice(b"\r\n");
        Self::starting_with(head, status)
    }

    /// A chunked body's end: the last chunk, then trailer fields (added as a head's are).
    fn last_chunk() -> Self {
        // (The status is not sent; 200 has a body, so nothing is left out.)
        Self::starting_with(b"0\r\n".to_vec(), 200)
    }

    fn starting_with(head: Vec<u8>, status: u16) -> Self {
        Self {
            head,
            status,
            has_length: false,
            has_encoding: false,
            has_connection: false,
            asks_close: false,
        }
    }

    /// Adds the field `key` (an Array value: one field per element). With `split_lines`, a
    /// String value's "\n"-separated lines are fields of their own (Rack's convention);
    /// otherwise CR, LF or NUL in a value is an error.
    fn field(&mut self, key: Value, value: Value, split_lines: bool) -> Result<(), Error> {
        if let (Some(name), Some(value)) = (RString::from_value(key), RString::from_value(value)) {
            // The common case, a String and a String: read in place, nothing copied.
            // SAFETY: no Ruby code runs while the slices are in use (an error's message is
            // formatted from them before the exception is made).
            let (name, value) = unsafe { (name.as_slice(), value.as_slice()) };
            self.name(key, name)?;
            return self.value(name, value, split_lines);
        }
        let name = text(key)?;
        self.name(key, &name)?;
        match RArray::from_value(value) {
            Some(values) => {
                for value in values.into_iter() {
                    self.line(&name, &text(value)?)?;
                }
                Ok(())
            }
            None => self.value(&name, &text(value)?, split_lines),
        }
    }

    /// Checks a field name and notes the framing fields among them.
    fn name(&mut self, key: Value, name: &[u8]) -> Result<(), Error> {
        if !is_token(name) {
            return Err(error(format!("invalid header name {}", key.inspect())));
        }
        self.has_length |= h1p::eq_ignore_case(name, b"content-length");
        self.has_encoding |= h1p::eq_ignore_case(name, b"transfer-encoding");
        self.has_connection |= h1p::eq_ignore_case(name, b"connection");
        Ok(())
    }

    fn value(&mut self, name: &[u8], value: &[u8], split_lines: bool) -> Result<(), Error> {
        if !split_lines {
            return self.line(name, value);
        }
        value
            .split(|&b| b == b'\n')
            .try_for_each(|line| self.line(name, line))
    }

    fn line(&mut self, name: &[u8], value: &[u8]) -> Result<(), Error> {
        if value.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(error(format!(
                "header {} has CR, LF or NUL in its value",
                String::from_utf8_lossy(name)
            )));
        }
        if h1p::eq_ignore_case(name, b"connection") {
            self.asks_close |= says_close(value);
        }
        self.head.extend_from_slice(name);
        self.head.extend_from_slice(b": ");
        self.head.extend_from_slice(value);
        self.head.extend_from_slice(b"\r\n");
        Ok(())
    }

    fn bodiless(&self) -> bool {
        matches!(self.status, 100..=199 | 204 | 304)
    }

    /// Adds `Transfer-Encoding: chunked` or a Content-Length for `body_len` unless the caller
    /// gave framing fields, then the blank line.
    fn finish(mut self, body_len: Option<usize>, chunked: bool) -> HeadInfo {
        if chunked && !self.has_encoding {
            self.head
                .extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        } else if !chunked && !self.has_length && !self.has_encoding && !self.bodiless() {
            self.head.extend_from_slice(b"Content-Length: ");
            push_decimal(&mut self.head, body_len.unwrap_or(0));
            self.head.extend_from_slice(b"\r\n");
        }
        self.head.extend_from_slice(b"\r\n");
        HeadInfo { head: self.head }
    }
}

/// Builds the status line and fields of H1P's headers hash (`':status'` and fields); adds
/// `Transfer-Encoding: chunked` or a Content-Length for `body_len` unless the caller gave
/// framing fields.
fn build_head(headers: RHash, body_len: Option<usize>, chunked: bool) -> Result<HeadInfo, Error> {
    let mut head = Head::new(status_code(headers.aref(":status")?)?);
    headers.foreach(|key: Value, value: Value| {
        // SAFETY: the first byte is read at once, with no Ruby call in between.
        let pseudo = RString::from_value(key)
            .is_some_and(|k| unsafe { k.as_slice() }.first() == Some(&b':'));
        if pseudo {
            return Ok(magnus::r_hash::ForEach::Continue);
        }
        head.field(key, value, false)?;
        Ok(magnus::r_hash::ForEach::Continue)
    })?;
    Ok(head.finish(body_len, chunked))
}

/// `H1P.send_rack_response(io, status, headers, body, head_request, connection)`: a Rack
/// response whose body is an Array, written in one go: its Strings joined behind the head
/// (none for HEAD, 1xx, 204, 304), "\n"-joined header values as repeated fields, a
/// Content-Length unless the app gave one, and `connection` ("close", "keep-alive") as the
/// Connection field unless the app gave one. Returns the bytes written, or nil (nothing
/// written) when the body is not an Array of Strings or the fields hold `rack.hijack`.
fn send_rack_response(ruby: &Ruby, args: &[Value]) -> Result<Value, Error> {
    let [io, status, headers, body, head_request, connection] = args else {
        return Err(Error::new(
            ruby.exception_arg_error(),
            "wrong number of arguments (expected 6)",
        ));
    };
    let framing = Framing::Given(Some(*connection).filter(|c| !c.is_nil()));
    match write_rack(
        ruby,
        *io,
        *status,
        *headers,
        *body,
        head_request.to_bool(),
        framing,
    )? {
        Some((written, _)) => Ok(written),
        None => Ok(ruby.qnil().as_value()),
    }
}

/// Where a Rack response's Connection field comes from (an app's own one always wins).
pub(crate) enum Framing {
    /// The caller's value ("close", "keep-alive"), if any.
    Given(Option<Value>),
    /// Decided here: "close" unless the connection is `reusable` and the app's fields do not
    /// ask to close it; "keep-alive" for an `http10` client whose connection goes on.
    Decide { reusable: bool, http10: bool },
}

/// Writes a Rack response whose body is an Array of Strings (see `H1P.send_rack_response`).
/// Returns the bytes written (an Integer) and whether the connection goes on (always true
/// with `Framing::Given`), or None (nothing written) for any other body, or a partial hijack
/// (a `rack.hijack` field).
pub(crate) fn write_rack(
    ruby: &Ruby,
    io: Value,
    status: Value,
    headers: Value,
    body: Value,
    head_request: bool,
    framing: Framing,
) -> Result<Option<(Value, bool)>, Error> {
    // An Array of Strings; anything else (an Array holding objects that convert to Strings
    // too) takes the Ruby path.
    let Some(parts) = RArray::from_value(body).filter(|parts| {
        parts
            .into_iter()
            .all(|part| RString::from_value(part).is_some())
    }) else {
        return Ok(None);
    };
    let mut head = Head::new(status_code(status)?);
    let mut hijack = false;
    RHash::try_convert(headers)?.foreach(|key: Value, value: Value| {
        // A partial hijack (the app writes the body to the socket) is the caller's to do.
        // SAFETY: compared at once, with no Ruby call in between.
        hijack =
            RString::from_value(key).is_some_and(|k| unsafe { k.as_slice() } == b"rack.hijack");
        if hijack {
            return Ok(magnus::r_hash::ForEach::Stop);
        }
        head.field(key, value, true)?;
        Ok(magnus::r_hash::ForEach::Continue)
    })?;
    if hijack {
        return Ok(None);
    }
    let keep_alive = match framing {
        Framing::Given(connection) => {
            if let Some(connection) = connection.filter(|_| !head.has_connection) {
                match RString::from_value(connection) {
                    // SAFETY: copied at once, with no Ruby call in between.
                    Some(value) => head.line(b"Connection", unsafe { value.as_slice() })?,
                    None => head.line(b"Connection", &text(connection)?)?,
                }
            }
            true
        }
        Framing::Decide { reusable, http10 } => {
            let keep_alive = reusable && !head.asks_close;
            if !head.has_connection {
                if !keep_alive {
                    head.line(b"Connection", b"close")?;
                } else if http10 {
                    head.line(b"Connection", b"keep-alive")?;
                }
            }
            keep_alive
        }
    };
    let bodiless = head.bodiless();
    // Counted for HEAD too: its Content-Length is the one a GET would get (not 0).
    let mut body_len = 0;
    if !bodiless {
        for part in parts.into_iter().filter_map(RString::from_value) {
            body_len += part.len();
        }
    }
    let mut info = head.finish((!bodiless).then_some(body_len), false);
    if !head_request && !bodiless {
        info.head.reserve(body_len);
        for part in parts.into_iter().filter_map(RString::from_value) {
            // SAFETY: copied at once; no Ruby code has run since the lengths were summed.
            info.head.extend_from_slice(unsafe { part.as_slice() });
        }
    }
    Ok(Some((write_out(ruby, io, info.head, None)?, keep_alive)))
}

/// `H1P.connection_close?(headers)`: whether response fields (a Hash, as a Rack app gives
/// them) carry `Connection: close`, in any case.
fn connection_close(headers: RHash) -> Result<bool, Error> {
    let mut close = false;
    headers.foreach(|key: Value, value: Value| {
        let Some(name) = RString::from_value(key) else {
            return Ok(magnus::r_hash::ForEach::Continue);
        };
        // SAFETY: read at once, with no Ruby call in between.
        if !unsafe { name.as_slice() }.eq_ignore_ascii_case(b"connection") {
            return Ok(magnus::r_hash::ForEach::Continue);
        }
        if let Some(value) = RString::from_value(value) {
            // SAFETY: read at once, with no Ruby call in between.
            let value = unsafe { value.as_slice() };
            close = says_close(value);
        }
        Ok(magnus::r_hash::ForEach::Stop)
    })?;
    Ok(close)
}

/// `H1P.send_response(io, headers, body = nil)`: returns the bytes written.
fn send_response(ruby: &Ruby, args: &[Value]) -> Result<Value, Error> {
    let (io, headers, body) = match args {
        [io, headers] => (*io, *headers, None),
        [io, headers, body] => (*io, *headers, Some(*body).filter(|b| !b.is_nil())),
        _ => {
            return Err(Error::new(
                ruby.exception_arg_error(),
                "wrong number of arguments (expected 2..3)",
            ))
        }
    };
    let headers = RHash::try_convert(headers)?;
    let body = body.map(RString::try_convert).transpose()?;
    let mut info = build_head(headers, body.map(|b| b.len()), false)?;
    match body {
        // A small body goes in the same buffer as the head: one write(2). Ruby writes the
        // Strings of `write(a, b)` one at a time under a Fiber scheduler, and a response in
        // two segments meets Nagle's algorithm and the client's delayed ACK: 40 ms.
        Some(body) if !body.is_empty() && body.len() <= COALESCE_MAX => {
            // SAFETY: the bytes are copied at once, before any Ruby code runs.
            info.head.extend_from_slice(unsafe { body.as_slice() });
            write_out(ruby, io, info.head, None)
        }
        Some(body) if !body.is_empty() => write_out(ruby, io, info.head, Some(body)),
        _ => write_out(ruby, io, info.head, None),
    }
}

/// Writes `head` (then `body`) to `io` and returns the byte count: through the backend with
/// no Ruby method call when `io` is an IO with nothing in Ruby's write buffer, or a
/// Polyphony::TLS::Socket; otherwise with `io.write`.
pub(crate) fn write_out(
    ruby: &Ruby,
    io: Value,
    head: Vec<u8>,
    body: Option<RString>,
) -> Result<Value, Error> {
    let head = match write_fast(io, head, body)? {
        Ok(written) => return Ok(ruby.integer_from_u64(written as u64).as_value()),
        Err(head) => head,
    };
    match body {
        Some(body) => io.funcall("write", (ruby.str_from_slice(&head), body)),
        None => io.funcall("write", (ruby.str_from_slice(&head),)),
    }
}

/// Writes through the backend when it can; otherwise hands `head` back.
fn write_fast(
    io: Value,
    head: Vec<u8>,
    body: Option<RString>,
) -> Result<Result<usize, Vec<u8>>, Error> {
    let Some(fd) = plain_io_fd(io) else {
        if body.is_none() {
            if let Some(written) = crate::ruby_api::tls::write_for_writer(io, &head)? {
                return Ok(Ok(written));
            }
        }
        return Ok(Err(head));
    };
    let mut data = head;
    if let Some(body) = body {
        // SAFETY: the bytes are copied at once, before any Ruby code runs.
        data.extend_from_slice(unsafe { body.as_slice() });
    }
    let total = data.len();
    match write_all(fd, data)? {
        Awaited::Done(()) => Ok(Ok(total)),
        Awaited::Interrupted(_) => Err(error("the response write was interrupted")),
    }
}

/// The descriptor of `io` when it is an open IO whose Ruby write buffer is empty (so bytes
/// written around it keep their order), and a backend runs on this thread.
fn plain_io_fd(io: Value) -> Option<i32> {
    Backend::existing()?;
    let fptr = io::open_fptr(io.as_raw())?;
    // SAFETY: `open_fptr` hands out the live rb_io_t of an open IO; the GVL is held.
    unsafe { ((*fptr).wbuf.len == 0).then_some((*fptr).fd) }
}

/// The largest body copied behind its head to be written in one call.
const COALESCE_MAX: usize = 64 * 1024;

/// `H1P.send_chunked_response(io, headers) { next_chunk }`: the block is called until it
/// returns nil; each String it returns is sent as a chunk. Returns the bytes written.
fn send_chunked_response(ruby: &Ruby, io: Value, headers: RHash) -> Result<u64, Error> {
    let info = build_head(headers, None, true)?;
    let written: Integer = Integer::try_convert(write_out(ruby, io, info.head, None)?)?;
    let mut total = written.to_u64()?;
    let block = ruby.block_proc()?;
    loop {
        let chunk: Value = block.call(())?;
        if chunk.is_nil() {
            break;
        }
        let chunk = RString::try_convert(chunk)?;
        if chunk.is_empty() {
            continue;
        }
        total += write_chunk(ruby, io, Some(chunk))?;
    }
    Ok(total + write_chunk(ruby, io, None)?)
}

/// `H1P.send_body_chunk(io, chunk)`: one chunk; nil (or "") sends the last chunk.
/// `H1P.send_body_chunk(io, nil, trailers)`: the last chunk with trailer fields (a Hash, as
/// for the head: Array values are repeated fields, CR, LF or NUL in a value an error).
fn send_body_chunk(ruby: &Ruby, args: &[Value]) -> Result<u64, Error> {
    let args =
        magnus::scan_args::scan_args::<(Value, Option<RString>), (Option<RHash>,), (), (), (), ()>(
            args,
        )?;
    let (io, chunk) = args.required;
    let (trailers,) = args.optional;
    let chunk = chunk.filter(|c| !c.is_empty());
    match trailers {
        Some(trailers) if chunk.is_none() => {
            let mut last = Head::last_chunk();
            trailers.foreach(|key: Value, value: Value| {
                last.field(key, value, false)?;
                Ok(magnus::r_hash::ForEach::Continue)
            })?;
            if last.has_length || last.has_encoding {
                return Err(error(
                    "a trailer field cannot frame the message (Content-Length, Transfer-Encoding)",
                ));
            }
            last.head.extend_from_slice(b"\r\n");
            Integer::try_convert(write_out(ruby, io, last.head, None)?)?.to_u64()
        }
        Some(_) => Err(error("trailers go with the last chunk (nil)")),
        None => write_chunk(ruby, io, chunk),
    }
}

fn write_chunk(ruby: &Ruby, io: Value, chunk: Option<RString>) -> Result<u64, Error> {
    let data = match chunk {
        None => b"0\r\n\r\n".to_vec(),
        Some(chunk) => {
            // SAFETY: the bytes are copied at once, before any Ruby code runs.
            let bytes = unsafe { chunk.as_slice() };
            let mut data = format!("{:x}\r\n", bytes.len()).into_bytes();
            data.extend_from_slice(bytes);
            data.extend_from_slice(b"\r\n");
            data
        }
    };
    Integer::try_convert(write_out(ruby, io, data, None)?)?.to_u64()
}

pub(crate) fn init(_ruby: &Ruby, h1p: RModule) -> Result<(), Error> {
    h1p.define_singleton_method("send_response", function!(send_response, -1))?;
    h1p.define_singleton_method("send_rack_response", function!(send_rack_response, -1))?;
    h1p.define_singleton_method("connection_close?", function!(connection_close, 1))?;
    h1p.define_singleton_method("send_chunked_response", function!(send_chunked_response, 2))?;
    h1p.define_singleton_method("send_body_chunk", function!(send_body_chunk, -1))?;
    Ok(())
}
