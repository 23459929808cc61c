//! `H1P.send_response`, `H1P.send_chunked_response` and `H1P.send_body_chunk`, and what every
//! response writer shares: Ruby field values turned into checked fields, and bytes written.
//!
//! The head and its framing are the `h1p` crate's (`h1p::response`): names must be tokens and
//! values must not hold CR, LF or NUL; anything else is an `H1P::Error`, never a split response.

use h1p::response::{BodyFramer, BodySize, Framing, Request, ResponseHead, Trailers};
use magnus::value::ReprValue;
use magnus::{
    function, prelude::*, Error, Integer, RArray, RHash, RModule, RString, Ruby, Symbol, Value,
};

use super::errors::error;
use crate::ruby_api::backend::Awaited;
use crate::ruby_api::transport::Transport;

/// A Ruby String, Symbol or anything else as its `to_s` bytes.
pub(crate) fn text(value: Value) -> Result<Vec<u8>, Error> {
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

/// A field refused by `h1p::response`, as the message of an exception of `class`.
pub(crate) fn field_error(
    class: magnus::ExceptionClass,
    e: &h1p::Error,
    name: &[u8],
    key: Value,
) -> Error {
    let message = match e {
        h1p::Error::InvalidHeaderName => format!("invalid header name {}", key.inspect()),
        h1p::Error::InvalidHeaderValue => format!(
            "header {} has CR, LF or NUL or another control character in its value",
            String::from_utf8_lossy(name)
        ),
        other => other.to_string(),
    };
    Error::new(class, message)
}

/// Where a field's value goes: a head or a trailer section.
pub(crate) trait FieldSink {
    fn add(&mut self, name: &[u8], value: &[u8]) -> Result<(), h1p::Error>;
}

impl FieldSink for ResponseHead {
    fn add(&mut self, name: &[u8], value: &[u8]) -> Result<(), h1p::Error> {
        self.field(name, value)
    }
}

impl FieldSink for Trailers {
    fn add(&mut self, name: &[u8], value: &[u8]) -> Result<(), h1p::Error> {
        self.field(name, value)
    }
}

/// Adds the field `key` to `sink` (an Array value: one field per element). With `split_lines`,
/// a String value's "\n"-separated lines are fields of their own (Rack's convention). Errors
/// are exceptions of `class`.
pub(crate) fn add_field(
    sink: &mut impl FieldSink,
    key: Value,
    value: Value,
    split_lines: bool,
    class: magnus::ExceptionClass,
) -> Result<(), Error> {
    if let (Some(name), Some(string)) = (RString::from_value(key), RString::from_value(value)) {
        // The common case, a String and a String: read in place, nothing copied.
        // SAFETY: no Ruby code runs while the slices are in use (an error's message is
        // formatted from them before the exception is made).
        let (name, bytes) = unsafe { (name.as_slice(), string.as_slice()) };
        return add_lines(sink, name, bytes, split_lines)
            .map_err(|e| field_error(class, &e, name, key));
    }
    let name = text(key)?;
    let values = match RArray::from_value(value) {
        Some(values) => values
            .into_iter()
            .map(text)
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![text(value)?],
    };
    values
        .iter()
        .try_for_each(|value| add_lines(sink, &name, value, split_lines))
        .map_err(|e| field_error(class, &e, &name, key))
}

fn add_lines(
    sink: &mut impl FieldSink,
    name: &[u8],
    value: &[u8],
    split_lines: bool,
) -> Result<(), h1p::Error> {
    if !split_lines {
        return sink.add(name, value);
    }
    value
        .split(|&b| b == b'\n')
        .try_for_each(|line| sink.add(name, line))
}

/// The status as a number: an Integer, or a String or Symbol starting with three digits.
pub(crate) fn status_code(status: Value) -> Option<u16> {
    match magnus::Fixnum::from_value(status) {
        // The common case, with no String made.
        Some(status) => u16::try_from(status.to_i64()).ok(),
        None if RString::from_value(status).is_some() || Symbol::from_value(status).is_some() => {
            let text = text(status).ok()?;
            let digits = text.trim_ascii();
            (digits.len() >= 3 && digits[..3].iter().all(u8::is_ascii_digit))
                .then(|| u16::from(digits[0] - b'0') * 100 + u16::from(digits[1] - b'0') * 10)
                .map(|n| n + u16::from(digits[2] - b'0'))
                .filter(|_| digits.len() == 3 || digits[3] == b' ')
        }
        None => None,
    }
}

/// The head of H1P's headers hash (`':status'`, nil for 200, and fields), framed for a body of
/// `size` (chunked for an unknown one) unless the caller gave framing fields; `None` for a
/// size means the caller sends the body after the head as its fields say (Content-Length: 0
/// when they say nothing). A 1xx head is sent as given: an interim response.
fn build_head(headers: RHash, size: Option<BodySize>) -> Result<h1p::response::Finished, Error> {
    let status_value: Value = headers.aref(":status")?;
    let status = if status_value.is_nil() {
        200
    } else {
        status_code(status_value)
            .ok_or_else(|| error(format!("invalid :status {}", status_value.inspect())))?
    };
    let mut head = ResponseHead::new(status)
        .map_err(|_| error(format!("invalid :status {}", status_value.inspect())))?;
    add_fields(&mut head, headers)?;
    if (100..200).contains(&status) {
        return Ok(h1p::response::Finished {
            bytes: head.as_given(),
            framing: Framing::Empty,
            keep_alive: true,
        });
    }
    let size = match size {
        Some(size) => size,
        None if head.is_framed() => BodySize::Unknown,
        None => BodySize::Known(0),
    };
    // H1P's own API frames what it is given and leaves the connection to its caller.
    let request = Request {
        head: false,
        http10: false,
        reusable: true,
    };
    head.finish(size, request).map_err(|e| error(e.to_string()))
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
    let mut done = build_head(headers, body.map(|b| BodySize::Known(b.len() as u64)))?;
    let Some(mut body) = body.filter(|b| !b.is_empty() && done.framing != Framing::Empty) else {
        return write_out(ruby, io, done.bytes, None);
    };
    if let Framing::Length(n) = done.framing {
        if (n as usize) < body.len() {
            // More than its Content-Length: what was announced (the head says close).
            // SAFETY: copied at once, with no Ruby call in between.
            body = ruby.str_from_slice(&unsafe { body.as_slice() }[..n as usize]);
        }
    }
    if body.len() <= COALESCE_MAX {
        // A small body goes in the same buffer as the head: one write(2). Ruby writes the
        // Strings of `write(a, b)` one at a time under a Fiber scheduler, and a response in
        // two segments meets Nagle's algorithm and the client's delayed ACK: 40 ms.
        // SAFETY: the bytes are copied at once, before any Ruby code runs.
        done.bytes.extend_from_slice(unsafe { body.as_slice() });
        return write_out(ruby, io, done.bytes, None);
    }
    write_out(ruby, io, done.bytes, Some(body))
}

/// `H1P.send_head(io, headers)`: the status line and fields exactly as given (checked, with
/// nothing added): the head of a body whose framing the caller sees to, such as one that ends
/// with the connection. Returns the bytes written.
fn send_head(ruby: &Ruby, io: Value, headers: RHash) -> Result<Value, Error> {
    let status_value: Value = headers.aref(":status")?;
    let status = if status_value.is_nil() {
        Some(200)
    } else {
        status_code(status_value)
    };
    let mut head = status
        .and_then(|status| ResponseHead::new(status).ok())
        .ok_or_else(|| error(format!("invalid :status {}", status_value.inspect())))?;
    add_fields(&mut head, headers)?;
    write_out(ruby, io, head.as_given(), None)
}

/// Adds the fields of H1P's headers hash (pseudo-fields such as `':status'` left out).
fn add_fields(head: &mut ResponseHead, headers: RHash) -> Result<(), Error> {
    let class = Ruby::get()
        .expect("called from Ruby")
        .get_inner(&super::errors::ERROR);
    headers.foreach(|key: Value, value: Value| {
        // SAFETY: the first byte is read at once, with no Ruby call in between.
        let pseudo = RString::from_value(key)
            .is_some_and(|k| unsafe { k.as_slice() }.first() == Some(&b':'));
        if !pseudo {
            add_field(head, key, value, false, class)?;
        }
        Ok(magnus::r_hash::ForEach::Continue)
    })
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
    let transport = Transport::of(io)?;
    let total = head.len() + body.map_or(0, |b| b.len());
    let written = match body {
        Some(body) => transport.write_with_body(ruby, head, body)?,
        None => transport.write(ruby, head, |_| {})?,
    };
    match written {
        Awaited::Done(()) => Ok(ruby.integer_from_u64(total as u64).as_value()),
        Awaited::Interrupted(_) => Err(error("the response write was interrupted")),
    }
}

/// Writes `data` to `transport`, adding to `progress` the bytes as the kernel takes them (a
/// server's sweeper tells a client that stopped reading by it).
pub(crate) fn write_counted(
    ruby: &Ruby,
    transport: &Transport,
    data: Vec<u8>,
    progress: &std::sync::atomic::AtomicU64,
) -> Result<(), Error> {
    let written = transport.write(ruby, data, |n| {
        progress.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    })?;
    match written {
        Awaited::Done(()) => Ok(()),
        Awaited::Interrupted(_) => Err(error("the response write was interrupted")),
    }
}

/// The largest body copied behind its head to be written in one call.
pub(crate) const COALESCE_MAX: usize = 64 * 1024;

/// `H1P.send_chunked_response(io, headers) { next_chunk }`: the block is called until it
/// returns nil; each String it returns is sent as a chunk. Returns the bytes written.
fn send_chunked_response(ruby: &Ruby, io: Value, headers: RHash) -> Result<u64, Error> {
    let done = build_head(headers, Some(BodySize::Unknown))?;
    let written: Integer = Integer::try_convert(write_out(ruby, io, done.bytes, None)?)?;
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
            let last = trailer_section(trailers, ruby.get_inner(&super::errors::ERROR))?;
            Integer::try_convert(write_out(ruby, io, last.finish(), None)?)?.to_u64()
        }
        Some(_) => Err(error("trailers go with the last chunk (nil)")),
        None => write_chunk(ruby, io, chunk),
    }
}

/// The last chunk with the fields of `trailers`; errors are exceptions of `class`.
pub(crate) fn trailer_section(
    trailers: RHash,
    class: magnus::ExceptionClass,
) -> Result<Trailers, Error> {
    let mut last = Trailers::new();
    trailers.foreach(|key: Value, value: Value| {
        add_field(&mut last, key, value, false, class)?;
        Ok(magnus::r_hash::ForEach::Continue)
    })?;
    Ok(last)
}

fn write_chunk(ruby: &Ruby, io: Value, chunk: Option<RString>) -> Result<u64, Error> {
    let mut framer = BodyFramer::new(Framing::Chunked);
    let data = match chunk {
        None => framer.finish(None).map_err(|e| error(e.to_string()))?,
        Some(chunk) => {
            // SAFETY: the bytes are copied at once, before any Ruby code runs.
            let bytes = unsafe { chunk.as_slice() };
            let piece = framer.piece(bytes.len());
            let mut data = Vec::with_capacity(bytes.len() + 20);
            data.extend_from_slice(piece.prefix());
            data.extend_from_slice(&bytes[..piece.take]);
            data.extend_from_slice(piece.suffix);
            data
        }
    };
    Integer::try_convert(write_out(ruby, io, data, None)?)?.to_u64()
}

pub(crate) fn init(_ruby: &Ruby, h1p: RModule) -> Result<(), Error> {
    h1p.define_singleton_method("send_response", function!(send_response, -1))?;
    h1p.define_singleton_method("send_head", function!(send_head, 2))?;
    h1p.define_singleton_method("send_chunked_response", function!(send_chunked_response, 2))?;
    h1p.define_singleton_method("send_body_chunk", function!(send_body_chunk, -1))?;
    Ok(())
}
