//! A Rack response written to an HTTP/1 client, whatever its body: the one writer behind
//! `H1P::Parser#respond` and Tipi's keep-alive loop. Framing and the keep-alive decision are
//! `h1p::response`'s; this file reads the Rack triple and moves the bytes.
//!
//! Bodies, in the order they are tried:
//! - an Array (or what `to_ary` returns, when it returns an Array: Rails's bodies answer nil,
//!   meaning "iterate me"): all at hand, sent with the head in one write;
//! - a body answering `to_path` with a Content-Length from the app: the file goes to the socket
//!   through splice (through TLS by pieces);
//! - anything else: iterated with `each`, each piece sent as it comes (chunked, or as the app
//!   framed it, or until the connection closes for HTTP/1.0), the head with the first piece.
//!
//! Nothing is sent before the head is known to be valid: a response the app got wrong (its
//! status, a field, a nil body) or whose body raises before its first piece is answered with a
//! 500 in its place, and the error raised to the caller, who logs it and ends the connection.

use std::io::Read as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use h1p::response::{BodyFramer, BodySize, Finished, Framing, Request, ResponseHead};
use magnus::rb_sys::AsRawValue;
use magnus::value::{LazyId, ReprValue};
use magnus::{Error, ExceptionClass, RArray, RHash, RString, Ruby, Value};

use super::response::{add_field, status_code, text, trailer_section, write_counted, write_out};
use crate::ruby_api::backend::Awaited;
use crate::ruby_api::io::Relay;
use crate::ruby_api::transport::Transport;

/// How a response ended.
pub(crate) struct Outcome {
    /// Whether the connection serves another request.
    pub(crate) keep_alive: bool,
    /// Bytes written, head included.
    pub(crate) bytes: u64,
    /// The app took the socket (Rack's partial hijack): it is the app's now.
    pub(crate) hijacked: bool,
}

static EACH: LazyId = LazyId::new("each");
static TO_ARY: LazyId = LazyId::new("to_ary");
static TO_PATH: LazyId = LazyId::new("to_path");
static TRAILERS: LazyId = LazyId::new("trailers");
static CLOSE: LazyId = LazyId::new("close");
static CALL: LazyId = LazyId::new("call");

const INTERNAL_ERROR: &[u8] = b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\
Content-Length: 22\r\nConnection: close\r\n\r\nInternal Server Error\n";

/// Where a response goes: the client's transport, and the count of bytes the kernel took so
/// far, which a server's sweeper watches to cut a client that stopped reading.
#[derive(Clone)]
pub(crate) struct Sink {
    transport: Transport,
    progress: Arc<AtomicU64>,
}

impl Sink {
    /// The caller holds the transport's object for as long as the response is written (a
    /// body's `each` keeping the block is checked by `Stream::over`).
    pub(crate) fn new(transport: Transport, progress: Arc<AtomicU64>) -> Self {
        Self {
            transport,
            progress,
        }
    }

    fn io(&self) -> Value {
        self.transport.object()
    }

    fn write(&self, ruby: &Ruby, data: Vec<u8>) -> Result<(), Error> {
        write_counted(ruby, &self.transport, data, &self.progress)
    }
}

/// Writes the response `[status, headers, body]` to `sink` for `request`, then closes the body
/// (Rack's contract) however that went. On an error (see the module's doc) the connection must
/// end; a 500 was sent if nothing else had been.
pub(crate) fn respond(
    ruby: &Ruby,
    sink: &Sink,
    request: Request,
    status: Value,
    headers: Value,
    body: Value,
) -> Result<Outcome, Error> {
    let mut sent = 0u64;
    let result = write(ruby, sink, request, (status, headers, body), &mut sent);
    let closed = close(body);
    let outcome = result.and_then(|outcome| closed.map(|()| outcome));
    if outcome.is_err() && sent == 0 {
        // Nothing reached the client: it gets an answer, not a reset. (A failed write here
        // changes nothing: the caller ends the connection.)
        let _ = write_out(ruby, sink.io(), INTERNAL_ERROR.to_vec(), None);
    }
    outcome
}

/// What an app returned instead of `[status, headers, body]`: a 500 is sent, and the error
/// returned to be raised.
pub(crate) fn not_a_response(ruby: &Ruby, io: Value, response: Value) -> Error {
    let _ = write_out(ruby, io, INTERNAL_ERROR.to_vec(), None);
    invalid(format!(
        "the app returned {}, not [status, headers, body]",
        response.inspect()
    ))
}

/// An `H1P::InvalidResponse`: the app's response cannot be sent as it is.
fn invalid(message: String) -> Error {
    Error::new(invalid_class(), message)
}

fn invalid_class() -> ExceptionClass {
    Ruby::get()
        .expect("called from Ruby")
        .get_inner(&super::errors::INVALID_RESPONSE)
}

fn write(
    ruby: &Ruby,
    sink: &Sink,
    request: Request,
    (status, headers, body): (Value, Value, Value),
    sent: &mut u64,
) -> Result<Outcome, Error> {
    let code = status_code(status)
        .filter(|code| (100..=999).contains(code))
        .ok_or_else(|| invalid(format!("invalid status {}", status.inspect())))?;
    let headers = RHash::from_value(headers)
        .ok_or_else(|| invalid(format!("the headers are {}, not a Hash", headers.inspect())))?;
    if body.is_nil() {
        return Err(invalid("the body is nil".to_owned()));
    }
    let mut head = ResponseHead::new(code).map_err(|e| invalid(e.to_string()))?;
    let mut hijack = None;
    headers.foreach(|key: Value, value: Value| {
        // Rack's `rack.*` keys speak to the server, never to the client.
        // SAFETY: compared at once, with no Ruby call in between.
        let rack = RString::from_value(key).map(|k| unsafe { k.as_slice() }.starts_with(b"rack."));
        match rack {
            Some(true) => {
                // SAFETY: as above.
                if unsafe { RString::from_value(key).expect("a String").as_slice() }
                    == b"rack.hijack"
                {
                    hijack = Some(value);
                }
            }
            _ => add_field(&mut head, key, value, true, invalid_class())?,
        }
        Ok(magnus::r_hash::ForEach::Continue)
    })?;
    if let Some(callback) = hijack {
        // Rack's partial hijack: the head as given, then the socket is the callback's.
        let bytes = head.as_given();
        *sent += bytes.len() as u64;
        sink.write(ruby, bytes)?;
        callback.funcall::<_, _, Value>(*CALL, (sink.io(),))?;
        return Ok(Outcome {
            keep_alive: false,
            bytes: *sent,
            hijacked: true,
        });
    }
    if let Some(parts) = whole(ruby, body)? {
        return write_whole(ruby, sink, head, request, parts, sent);
    }
    let done = head
        .finish(BodySize::Unknown, request)
        .map_err(|e| invalid(e.to_string()))?;
    let keep_alive = done.keep_alive;
    if done.framing == Framing::Empty {
        *sent += done.bytes.len() as u64;
        sink.write(ruby, done.bytes)?;
        return Ok(Outcome {
            keep_alive,
            bytes: *sent,
            hijacked: false,
        });
    }
    let path = match done.framing {
        Framing::Length(_) if body.respond_to(*TO_PATH, false)? => {
            Some(text(body.funcall::<_, _, Value>(*TO_PATH, ())?)?)
        }
        _ => None,
    };
    let kept = match path {
        Some(path) => send_file(ruby, sink, done, &path, sent)?,
        None => stream(ruby, sink, done, body, sent)?,
    };
    Ok(Outcome {
        keep_alive: keep_alive && kept,
        bytes: *sent,
        hijacked: false,
    })
}

/// The body's parts when they are all at hand: an Array, or what `to_ary` gives (nil from
/// Rails: "iterate me"). Parts that are not Strings are converted with `to_s`.
fn whole(ruby: &Ruby, body: Value) -> Result<Option<RArray>, Error> {
    let parts = match RArray::from_value(body) {
        Some(parts) => parts,
        None if body.respond_to(*TO_ARY, false)? => {
            match RArray::from_value(body.funcall::<_, _, Value>(*TO_ARY, ())?) {
                Some(parts) => parts,
                None => return Ok(None),
            }
        }
        None => return Ok(None),
    };
    if parts
        .into_iter()
        .all(|part| RString::from_value(part).is_some())
    {
        return Ok(Some(parts));
    }
    let strings = ruby.ary_new_capa(parts.len());
    for part in parts.into_iter() {
        strings.push(ruby.str_from_slice(&text(part)?))?;
    }
    Ok(Some(strings))
}

fn write_whole(
    ruby: &Ruby,
    sink: &Sink,
    head: ResponseHead,
    request: Request,
    parts: RArray,
    sent: &mut u64,
) -> Result<Outcome, Error> {
    let total: u64 = parts
        .into_iter()
        .filter_map(RString::from_value)
        .map(|part| part.len() as u64)
        .sum();
    let done = head
        .finish(BodySize::Known(total), request)
        .map_err(|e| invalid(e.to_string()))?;
    let mut bytes = done.bytes;
    if let Framing::Length(n) = done.framing {
        let mut left = n.min(total) as usize;
        bytes.reserve(left);
        for part in parts.into_iter().filter_map(RString::from_value) {
            // SAFETY: copied at once; no Ruby code has run since the lengths were summed.
            let part = unsafe { part.as_slice() };
            let take = left.min(part.len());
            bytes.extend_from_slice(&part[..take]);
            left -= take;
        }
    }
    *sent += bytes.len() as u64;
    sink.write(ruby, bytes)?;
    if total > 0 && matches!(done.framing, Framing::Length(n) if n < total) {
        return Err(invalid(format!(
            "the body ({total} bytes) is longer than its Content-Length ({}): the rest was not sent",
            match done.framing {
                Framing::Length(n) => n,
                _ => 0,
            }
        )));
    }
    Ok(Outcome {
        keep_alive: done.keep_alive,
        bytes: *sent,
        hijacked: false,
    })
}

/// A file's bytes after the head, as many as the Content-Length says. Returns whether the
/// connection can go on (the file had them all).
fn send_file(
    ruby: &Ruby,
    sink: &Sink,
    done: Finished,
    path: &[u8],
    sent: &mut u64,
) -> Result<bool, Error> {
    let Framing::Length(length) = done.framing else {
        unreachable!("send_file is called for a Content-Length")
    };
    let path =
        std::path::Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(path));
    let mut file = std::fs::File::open(path).map_err(|e| crate::ruby_api::backend::io_error(&e))?;
    *sent += done.bytes.len() as u64;
    sink.write(ruby, done.bytes)?;
    let moved = match sink.transport.writable_fd() {
        Some(fd) => {
            use std::os::fd::AsRawFd;
            let progress = |n: usize| {
                sink.progress.fetch_add(n as u64, Relaxed);
            };
            match Relay::new()?.pump_with(file.as_raw_fd(), fd, Some(length), progress)? {
                Awaited::Done(n) => n,
                Awaited::Interrupted(_) => {
                    return Err(super::errors::error("the file's write was interrupted"))
                }
            }
        }
        None => {
            // Through TLS (or any IO's write), by pieces.
            let mut moved = 0u64;
            let mut buf = vec![0; 64 * 1024];
            while moved < length {
                let want = buf.len().min((length - moved) as usize);
                let n = file
                    .read(&mut buf[..want])
                    .map_err(|e| crate::ruby_api::backend::io_error(&e))?;
                if n == 0 {
                    break;
                }
                sink.write(ruby, buf[..n].to_vec())?;
                moved += n as u64;
            }
            moved
        }
    };
    *sent += moved;
    if moved < length {
        return Err(invalid(format!(
            "Content-Length says {length} bytes, the file {} has {moved}",
            path.display()
        )));
    }
    Ok(true)
}

/// What the block given to the body's `each` needs, shared with it.
struct Stream {
    sink: Sink,
    framer: BodyFramer,
    /// The head, until it goes out with the first piece.
    head: Option<Vec<u8>>,
    sent: u64,
    /// `each` has returned: a block the body kept writes nothing more.
    over: bool,
}

/// Iterates the body, each piece framed and sent as it comes; then its end (with the body's
/// `trailers`, Rack 3's convention, when chunked). Returns whether the connection can go on.
fn stream(
    ruby: &Ruby,
    sink: &Sink,
    done: Finished,
    body: Value,
    sent: &mut u64,
) -> Result<bool, Error> {
    let state = Arc::new(Mutex::new(Stream {
        sink: sink.clone(),
        framer: BodyFramer::new(done.framing),
        head: Some(done.bytes),
        sent: 0,
        over: false,
    }));
    let shared = Arc::clone(&state);
    let block = ruby.proc_from_fn(move |ruby, args, _| -> Result<(), Error> {
        let mut stream = shared.lock().expect("one fiber at a time");
        if stream.over {
            return Err(super::errors::error(
                "the body was iterated after its response ended",
            ));
        }
        let piece = args
            .first()
            .copied()
            .unwrap_or_else(|| ruby.qnil().as_value());
        let bytes = match RString::from_value(piece) {
            // SAFETY: copied at once, with no Ruby call in between.
            Some(piece) => unsafe { piece.as_slice() }.to_vec(),
            None => text(piece)?,
        };
        let framed = stream.framer.piece(bytes.len());
        let mut data = stream.head.take().unwrap_or_default();
        data.extend_from_slice(framed.prefix());
        data.extend_from_slice(&bytes[..framed.take]);
        data.extend_from_slice(framed.suffix);
        if data.is_empty() {
            return Ok(());
        }
        stream.sent += data.len() as u64;
        let sink = stream.sink.clone();
        drop(stream); // (the write may switch fibers)
        sink.write(ruby, data)
    });
    let iterated = body.funcall_with_block::<_, _, Value>(*EACH, (), block);
    let mut stream = state.lock().expect("one fiber at a time");
    stream.over = true;
    *sent += stream.sent;
    iterated?;
    let trailers = match done.framing {
        Framing::Chunked if body.respond_to(*TRAILERS, false)? => {
            match RHash::from_value(body.funcall::<_, _, Value>(*TRAILERS, ())?) {
                Some(fields) if !fields.is_empty() => {
                    Some(trailer_section(fields, invalid_class())?)
                }
                _ => None,
            }
        }
        _ => None,
    };
    let end = stream.framer.finish(trailers);
    let mut data = stream.head.take().unwrap_or_default();
    let kept = stream.framer.keeps_connection();
    drop(stream);
    let failure = match end {
        Ok(end) => {
            data.extend_from_slice(&end);
            None
        }
        Err(e) => Some(invalid(e.to_string())),
    };
    if !data.is_empty() {
        *sent += data.len() as u64;
        sink.write(ruby, data)?;
    }
    match (failure, done.framing) {
        (Some(error), _) => Err(error),
        (None, Framing::Length(n)) if !kept => Err(invalid(format!(
            "the body is longer than its Content-Length ({n}): the rest was not sent"
        ))),
        (None, _) => Ok(kept),
    }
}

/// Rack's contract: a body that answers `close` is closed (a plain Array has no call for it).
fn close(body: Value) -> Result<(), Error> {
    // SAFETY: the GVL is held; `body` is a live object and rb_cArray is set once Ruby runs.
    let plain_array =
        unsafe { rb_sys::rb_obj_class(body.as_raw()) } == unsafe { rb_sys::rb_cArray };
    if !plain_array && !body.is_nil() && body.respond_to(*CLOSE, false)? {
        body.funcall::<_, _, Value>(*CLOSE, ())?;
    }
    Ok(())
}
