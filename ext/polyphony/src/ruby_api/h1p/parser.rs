//! `H1P::Parser`: the pull parser over a Ruby source.
//!
//! A source is a block or callable returning a String (nil at the end), or anything answering
//! `readpartial` (an IO, a socket, a StringIO). Bytes are copied once, into the parser's
//! buffer; the header hash is built straight from spans of it.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use h1p::pull::{Message, Parser, PullError, Source};
use h1p::{Limits, Mode, Version};
use magnus::rb_sys::AsRawValue;
use magnus::typed_data::{DataTypeFunctions, Obj};
use magnus::value::{Lazy, LazyId, ReprValue};
use magnus::{
    function, gc, method, prelude::*, Error, RArray, RHash, RModule, RString, Ruby, Symbol,
    TryConvert, Value,
};
use rb_sys::VALUE;

use super::errors::{error, ERROR};
use super::hash::{build_hash, fields_hash};
use super::rack_response::{self, Outcome};
use crate::ruby_api::backend::{Awaited, Backend, IdleRead};
use crate::ruby_api::io::{is_pipe, splice_kernel, Relay};
use crate::ruby_api::transport::Transport;
use polyphony_runtime::op::Splice;

/// The source object is held as a raw VALUE (marked by the parser object) so that the
/// parser is `Send`, as wrapped Rust data must be.
#[derive(Clone, Copy)]
enum Kind {
    /// A block or an object answering `call`.
    Call(VALUE),
    /// An IO, a TLS socket, or an object answering `readpartial`: its transport, resolved
    /// when the parser is made or renewed.
    Stream(Transport),
}

impl Kind {
    fn object(self) -> Value {
        match self {
            // SAFETY: the parser object marks (and pins) the source, so it is alive.
            Kind::Call(raw) => unsafe { magnus::rb_sys::FromRawValue::from_raw(raw) },
            Kind::Stream(transport) => transport.object(),
        }
    }
}

struct RubySource {
    pub(crate) kind: Kind,
    /// The buffer the backend reads into, kept from one read to the next (an interrupted read
    /// leaves it to the kernel, and the next read makes another).
    spare: Vec<u8>,
    /// Whether the next read is of a message's first bytes, which may be parked (see
    /// `H1PParser::idle_parking`).
    idle: IdleRead,
    /// The last read was parked: the connection waits without its fiber now.
    parked: bool,
}

impl RubySource {
    fn new(kind: Kind) -> Self {
        Self {
            kind,
            spare: Vec::new(),
            idle: IdleRead::No,
            parked: false,
        }
    }
}

impl Source for RubySource {
    type Error = Error;

    fn read(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<usize, Error> {
        let ruby = Ruby::get().expect("called from Ruby");
        if let Kind::Stream(transport) = self.kind {
            // The fast paths: an IO read by the backend (other fibers run meanwhile), a TLS
            // socket's session; no Ruby method call, no String.
            let idle = std::mem::replace(&mut self.idle, IdleRead::No);
            match transport.read(buf, max, &mut self.spare, idle) {
                Ok(Some(Awaited::Done(n))) => return Ok(n),
                Err(e) if idle != IdleRead::No && is_canceled(&e) => {
                    // Parked (see `park_idle`): nothing was read, and nothing is buffered. The
                    // buffers go, to be made again when the client sends its next request.
                    self.parked = true;
                    *buf = Vec::new();
                    self.spare = Vec::new();
                    return Err(e);
                }
                Err(e) => return Err(e),
                Ok(Some(Awaited::Interrupted(_))) => {
                    return Err(error("the parser's read was interrupted"))
                }
                Ok(None) => {}
            }
        }
        let object = self.kind.object();
        let chunk: Value = match self.kind {
            // An empty String is no end (nil is): the callable is asked again.
            Kind::Call(_) => loop {
                let chunk: Value = object.funcall(*CALL, ())?;
                if RString::from_value(chunk).is_none_or(|s| !s.is_empty()) {
                    break chunk;
                }
            },
            Kind::Stream(_) => match object.funcall(*READPARTIAL, (max,)) {
                Ok(chunk) => chunk,
                Err(e) if e.is_kind_of(ruby.exception_eof_error()) => ruby.qnil().as_value(),
                Err(e) => return Err(e),
            },
        };
        if chunk.is_nil() {
            return Ok(0);
        }
        let chunk = RString::try_convert(chunk).map_err(|_| {
            error(format!(
                "the parser's source must return a String or nil, not {}",
                unsafe_class_name(chunk)
            ))
        })?;
        // SAFETY: the slice is copied before any other Ruby call, so the GC cannot move or
        // free the string's bytes meanwhile.
        let bytes = unsafe { chunk.as_slice() };
        buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }
}

/// Whether `error` is Errno::ECANCELED: how an idle read ends when it is parked.
pub(crate) fn is_canceled(error: &Error) -> bool {
    error.value().is_some_and(|exception| {
        let errno: Option<i32> = exception.funcall("errno", ()).ok();
        errno == Some(libc::ECANCELED)
    })
}

fn unsafe_class_name(value: Value) -> String {
    // SAFETY: the class of a live object is a live class.
    unsafe { value.classname() }.into_owned()
}

static CALL: LazyId = LazyId::new("call");
static READPARTIAL: LazyId = LazyId::new("readpartial");

#[derive(magnus::TypedData)]
#[magnus(class = "H1P::Parser", free_immediately, mark, size)]
pub(crate) struct H1PParser {
    inner: RefCell<Parser<RubySource>>,
    /// The source object, for the GC (the source holds it too).
    source: Cell<VALUE>,
    /// The last request head's method and version, as its response needs them.
    request: Cell<RequestFacts>,
    /// Reads of a head begun since the parser was made (a number for the server's sweeper).
    reads: Cell<i64>,
    /// The read of a head under way (its number), or 0 between them.
    reading: Cell<i64>,
    /// Heads parsed since the parser was made or renewed.
    heads: Cell<u64>,
    /// The read under way began after a request, with nothing of the next one buffered.
    between: Cell<bool>,
    /// Bytes written by the last `respond`.
    sent: Cell<u64>,
    /// Bytes the kernel took of the response being written, for `__writing__`.
    progress: Arc<AtomicU64>,
    /// A response is being written.
    writing: Cell<bool>,
    /// `parse_headers` checks a request's Host as a server must (`check_host: true`).
    check_host: bool,
    /// Reads of a next request's first bytes may be parked (`__idle_parking__ = true`, Tipi's
    /// connections): the parse then ends with `:idle`, and the connection can wait for its
    /// client without a fiber (see `Polyphony::Parking`).
    idle_parking: Cell<bool>,
    /// Heads to read before a parked connection's waits are parked at the usual pace again:
    /// 2 when it is parked (the request that wakes it, and one more), so that a client that
    /// pauses again is parked again sooner (`IdleRead::Soon`).
    soon: Cell<u8>,
}

impl DataTypeFunctions for H1PParser {
    fn mark(&self, _marker: &gc::Marker) {
        // SAFETY: called by the GC; `rb_gc_mark` also pins it, so the raw VALUE stays valid.
        unsafe { rb_sys::rb_gc_mark(self.source.get()) };
    }
}

/// `H1P::Parser.new(io = nil, mode = :server, **limits) { next_chunk }`.
fn parser_new(ruby: &Ruby, args: &[Value]) -> Result<Obj<H1PParser>, Error> {
    let (args, options) = match args.split_last() {
        Some((last, rest)) if RHash::from_value(*last).is_some() => {
            (rest, RHash::from_value(*last))
        }
        _ => (args, None),
    };
    let (source, mode) = if ruby.block_given() {
        let block = ruby.block_proc()?.as_raw();
        match args {
            [] => (Kind::Call(block), Mode::Server),
            [mode] => (Kind::Call(block), parse_mode(*mode)?),
            _ => {
                return Err(Error::new(
                    ruby.exception_arg_error(),
                    "with a block, give only the mode",
                ))
            }
        }
    } else {
        let (io, mode) = match args {
            [io] => (*io, Mode::Server),
            [io, mode] => (*io, parse_mode(*mode)?),
            _ => {
                return Err(Error::new(
                    ruby.exception_arg_error(),
                    format!(
                        "wrong number of arguments (given {}, expected 1..2, or a block)",
                        args.len()
                    ),
                ))
            }
        };
        (io_kind(ruby, io)?, mode)
    };
    let check_host = match options {
        Some(options) => options
            .get(ruby.to_symbol("check_host"))
            .is_some_and(|v| v.to_bool()),
        None => false,
    };
    let limits = limits(ruby, options)?;
    let held = source.object().as_raw();
    let parser = Parser::new(RubySource::new(source), mode, limits);
    Ok(ruby.obj_wrap(H1PParser {
        inner: RefCell::new(parser),
        source: Cell::new(held),
        request: Cell::new(RequestFacts::default()),
        reads: Cell::new(0),
        reading: Cell::new(0),
        heads: Cell::new(0),
        between: Cell::new(false),
        sent: Cell::new(0),
        progress: Arc::new(AtomicU64::new(0)),
        writing: Cell::new(false),
        check_host,
        idle_parking: Cell::new(false),
        soon: Cell::new(NEW_CONNECTION_SOON),
    }))
}

/// How a source object given to `new` (not a block) is read.
fn io_kind(ruby: &Ruby, io: Value) -> Result<Kind, Error> {
    // (The IDs are interned once: interning a name costs more than the rest of `new`.)
    if io.respond_to(*READPARTIAL, false)? {
        Ok(Kind::Stream(Transport::of(io)?))
    } else if io.respond_to(*CALL, false)? {
        Ok(Kind::Call(io.as_raw()))
    } else {
        Err(Error::new(
            ruby.exception_type_error(),
            format!(
                "H1P::Parser needs an IO, something answering readpartial or call, or a block; got {}",
                unsafe_class_name(io)
            ),
        ))
    }
}

/// `parser.__renew__(io)`, for Tipi's connections that serve one socket after another: the
/// parser starts over on `io` as `H1P::Parser.new(io)` with the same mode and limits would,
/// keeping only its buffers' memory (a new parser costs about as much as a keep-alive
/// request's parse).
fn renew(ruby: &Ruby, rb_self: &H1PParser, io: Value) -> Result<(), Error> {
    let kind = io_kind(ruby, io)?;
    rb_self.with(|parser| {
        let old = parser.restart(RubySource::new(kind));
        let mut spare = old.spare;
        spare.shrink_to(h1p::pull::READ_SIZE); // (see Parser::restart)
        parser.source_mut().spare = spare;
        Ok(())
    })?;
    rb_self.source.set(io.as_raw());
    rb_self.request.set(RequestFacts::default());
    rb_self.heads.set(0);
    rb_self.soon.set(NEW_CONNECTION_SOON);
    Ok(())
}

/// `parser.__retire__`: the parser of a connection that ended, kept for a next one
/// (`__renew__`), frees its buffers meanwhile (what it had buffered is dropped).
fn retire(rb_self: &H1PParser) -> Result<(), Error> {
    rb_self.with(|parser| {
        let kind = parser.source().kind;
        parser.restart(RubySource::new(kind));
        parser.release_memory();
        Ok(())
    })
}

fn parse_mode(mode: Value) -> Result<Mode, Error> {
    let ruby = Ruby::get().expect("called from Ruby");
    let name = Symbol::from_value(mode)
        .map(|s| s.name().map(|n| n.into_owned()))
        .transpose()?
        .or_else(|| RString::from_value(mode).and_then(|s| s.to_string().ok()));
    match name.as_deref() {
        Some("server") => Ok(Mode::Server),
        Some("client") => Ok(Mode::Client),
        _ => Err(Error::new(
            ruby.exception_arg_error(),
            format!("mode must be :server or :client, not {}", mode.inspect()),
        )),
    }
}

/// Limits from keyword options: `max_method`, `max_target`, `max_status_message`,
/// `max_header_name`, `max_header_value`, `max_headers`, `max_head`, `max_body` (and
/// `check_host`, which is no limit).
fn limits(ruby: &Ruby, options: Option<RHash>) -> Result<Limits, Error> {
    let mut limits = Limits::default();
    let Some(options) = options else {
        return Ok(limits);
    };
    let mut unknown = Vec::new();
    options.foreach(|key: Symbol, value: Value| {
        let name = key.name()?;
        let number = || -> Result<usize, Error> { usize::try_convert(value) };
        match name.as_ref() {
            "max_method" => limits.method = number()?,
            "max_target" => limits.target = number()?,
            "max_status_message" => limits.status_message = number()?,
            "max_header_name" => limits.header_name = number()?,
            "max_header_value" => limits.header_value = number()?,
            "max_headers" => limits.headers = number()?,
            "max_head" => limits.head = number()?,
            "check_host" => {} // (not a limit: see parser_new)
            "max_body" => {
                limits.max_body = if value.is_nil() {
                    None
                } else {
                    Some(u64::try_convert(value)?)
                }
            }
            other => unknown.push(other.to_owned()),
        }
        Ok(magnus::r_hash::ForEach::Continue)
    })?;
    if !unknown.is_empty() {
        return Err(Error::new(
            ruby.exception_arg_error(),
            format!("unknown H1P::Parser option(s): {}", unknown.join(", ")),
        ));
    }
    Ok(limits)
}

impl H1PParser {
    /// Whether a read from its source is under way, so that nothing else can use it now: a
    /// fiber an app left running reads a body on while its connection answers. Such a parser
    /// cannot go on to a next request.
    fn in_use(&self) -> bool {
        self.inner.try_borrow_mut().is_err()
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Parser<RubySource>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut parser = self
            .inner
            .try_borrow_mut()
            .map_err(|_| error("H1P::Parser called from its own source"))?;
        f(&mut parser)
    }
}

fn convert<E: Into<Error>>(e: PullError<E>) -> Error {
    match e {
        PullError::Parse(e) => super::errors::parse_error(&e),
        PullError::Source(e) => e.into(),
        PullError::Misuse(m) => error(m),
    }
}

/// What a response needs to know of the request it answers.
#[derive(Clone, Copy, Default)]
pub(crate) struct RequestFacts {
    /// A HEAD request: the response has no body (but the framing a GET would get).
    pub(crate) head: bool,
    /// HTTP/1.0 (or `HTTP/1`): a kept-alive connection says so in a Connection field.
    pub(crate) http10: bool,
    /// An Upgrade field (h2c, WebSocket): the server decides what to do with it.
    pub(crate) upgrade: bool,
}

impl RequestFacts {
    fn of(message: &Message<'_>) -> Self {
        Self {
            head: message.get(message.head.method) == b"HEAD",
            http10: message.head.version != Version::Http11,
            upgrade: message.head.upgrade,
        }
    }
}

/// `H1PParser::soon` of a new connection (or a parser just made): its wait after the first
/// request is parked soon too, so that a burst of connections does not hold a fiber each for
/// long.
const NEW_CONNECTION_SOON: u8 = 2;

/// How a read of the next head ended.
enum Next<T> {
    Message(T),
    /// A clean end of the input, between messages.
    End,
    /// Parked: the client sent nothing for a while (see `H1PParser::idle_parking`).
    Idle,
}

impl H1PParser {
    /// `reading_head`'s outcome, with a parked read told apart from a failure.
    fn next_head<T>(&self, f: impl FnOnce() -> Result<Option<T>, Error>) -> Result<Next<T>, Error> {
        match self.reading_head(f) {
            Ok(Some(message)) => {
                self.soon.set(self.soon.get().saturating_sub(1));
                Ok(Next::Message(message))
            }
            Ok(None) => Ok(Next::End),
            Err(e) => {
                let parked = self.inner.try_borrow_mut().is_ok_and(|mut p| {
                    let parked = std::mem::take(&mut p.source_mut().parked);
                    if parked {
                        p.release_memory();
                    }
                    parked
                });
                if parked {
                    // The request that wakes it, then the next wait is parked soon.
                    self.soon.set(2);
                    Ok(Next::Idle)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Runs `f`, a read of the next head, numbered for `__reading__` while it is under way.
    fn reading_head<T>(
        &self,
        f: impl FnOnce() -> Result<Option<T>, Error>,
    ) -> Result<Option<T>, Error> {
        let read = self.reads.get() + 1;
        self.reads.set(read);
        self.reading.set(read);
        let empty = self
            .inner
            .try_borrow()
            .is_ok_and(|parser| parser.buffered().is_empty());
        self.between.set(empty && self.heads.get() > 0);
        if self.idle_parking.get() {
            if let Ok(mut parser) = self.inner.try_borrow_mut() {
                // A connection parked before is parked sooner: its client pauses, and a
                // pause on a fiber holds the fiber's stack.
                parser.source_mut().idle = match (parser.at_rest(), self.soon.get()) {
                    (false, _) => IdleRead::No,
                    (true, 0) => IdleRead::Yes,
                    (true, _) => IdleRead::Soon,
                };
            }
        }
        let result = f();
        self.between.set(false);
        self.reading.set(0);
        if let Ok(Some(_)) = result {
            self.heads.set(self.heads.get() + 1);
        }
        result
    }
}

/// `parse_headers`: the next head as a Hash; nil at a clean end between messages; `:idle` when
/// the read was parked (only with `__idle_parking__`).
fn parse_headers(ruby: &Ruby, rb_self: &H1PParser) -> Result<Value, Error> {
    let next = rb_self.next_head(|| {
        rb_self.with(|parser| {
            let mode = parser.mode();
            match parser.parse_headers().map_err(convert)? {
                None => Ok(None),
                Some(message) => {
                    rb_self.request.set(RequestFacts::of(&message));
                    if rb_self.check_host && mode == Mode::Server {
                        h1p::target::request_target(&message)
                            .map_err(|e| super::errors::parse_error(&e))?;
                    }
                    build_hash(ruby, &message, mode).map(Some)
                }
            }
        })
    })?;
    Ok(next_value(ruby, next))
}

/// `parser.__idle_parking__ = true`: see `H1PParser::idle_parking`.
fn set_idle_parking(rb_self: &H1PParser, on: bool) {
    rb_self.idle_parking.set(on);
}

/// A `Next` as Ruby sees it: the message, nil, or `:idle`.
fn next_value<T: ReprValue>(ruby: &Ruby, next: Next<T>) -> Value {
    match next {
        Next::Message(message) => message.as_value(),
        Next::End => ruby.qnil().as_value(),
        Next::Idle => ruby.to_symbol("idle").as_value(),
    }
}

/// `parser.parse_rack_env(base)`: the next request as a Rack env: a copy of `base` (the
/// connection's constant entries: SERVER_NAME and SERVER_PORT of the listener, REMOTE_ADDR,
/// rack.*) with REQUEST_METHOD, PATH_INFO, QUERY_STRING, SERVER_PROTOCOL, CONTENT_TYPE,
/// CONTENT_LENGTH and HTTP_* added (repeated fields joined with ", ", cookies with "; "),
/// SERVER_NAME taken from Host, and SERVER_PORT from Host (else "80") when `base` has none.
/// nil at a clean end between requests. As a server must (RFC 9112 3.2), an HTTP/1.1 request
/// without Host, a repeated Host or an invalid one is an `H1P::Error`; an absolute-form
/// target's authority stands for Host, and `OPTIONS *` has an empty PATH_INFO.
/// nil at a clean end between requests, `:idle` when the read was parked (only with
/// `__idle_parking__`).
fn parse_rack_env(ruby: &Ruby, rb_self: &H1PParser, base: RHash) -> Result<Value, Error> {
    Ok(next_value(ruby, next_rack_env(ruby, rb_self, base)?))
}

fn next_rack_env(ruby: &Ruby, rb_self: &H1PParser, base: RHash) -> Result<Next<RHash>, Error> {
    rb_self.next_head(|| {
        rb_self.with(|parser| {
            if parser.mode() != Mode::Server {
                return Err(error("parse_rack_env parses requests (a :server parser)"));
            }
            match parser.parse_headers().map_err(convert)? {
                None => Ok(None),
                Some(message) => {
                    rb_self.request.set(RequestFacts::of(&message));
                    super::rack::build_env(ruby, &message, base).map(Some)
                }
            }
        })
    })
}

fn read_body(ruby: &Ruby, rb_self: &H1PParser) -> Result<Option<RString>, Error> {
    rb_self.with(|parser| {
        let mut body: Option<RString> = None;
        while let Some(chunk) = parser.read_body_chunk(false).map_err(convert)? {
            match body {
                Some(body) => body.cat(chunk),
                None => body = Some(ruby.str_from_slice(chunk)),
            }
        }
        Ok(body.filter(|b| !b.is_empty()))
    })
}

fn read_body_chunk(
    ruby: &Ruby,
    rb_self: &H1PParser,
    args: &[Value],
) -> Result<Option<RString>, Error> {
    let buffered_only = match args {
        [] => false,
        [flag] => flag.to_bool(),
        _ => {
            return Err(Error::new(
                ruby.exception_arg_error(),
                "wrong number of arguments (expected 0..1)",
            ))
        }
    };
    rb_self.with(|parser| {
        let chunk = parser.read_body_chunk(buffered_only).map_err(convert)?;
        Ok(chunk.map(|c| ruby.str_from_slice(c)))
    })
}

/// Writes the rest of the body to `io` (with `write`); returns the bytes written.
/// Moves the rest of the body into `io`. On a Polyphony thread, with an IO source and an IO
/// destination and a Content-Length body, the bytes go through splice(2) in the backend
/// (through a pipe of our own when neither end is one); otherwise chunk by chunk with `write`.
/// Returns the byte count.
fn splice_body_to(ruby: &Ruby, rb_self: &H1PParser, io: Value) -> Result<u64, Error> {
    if let Some(total) = splice_body_in_kernel(ruby, rb_self, io)? {
        return Ok(total);
    }
    let mut total = 0u64;
    loop {
        let chunk = rb_self.with(|parser| {
            Ok(parser
                .read_body_chunk(false)
                .map_err(convert)?
                .map(|c| ruby.str_from_slice(c)))
        })?;
        let Some(chunk) = chunk else { return Ok(total) };
        total += chunk.len() as u64;
        let _: Value = io.funcall("write", (chunk,))?;
    }
}

/// The kernel path of `splice_body_to`; `None` when it does not apply.
fn splice_body_in_kernel(
    ruby: &Ruby,
    rb_self: &H1PParser,
    dest: Value,
) -> Result<Option<u64>, Error> {
    let source = match rb_self.with(|p| Ok(p.source().kind))? {
        Kind::Stream(transport) => transport,
        Kind::Call(_) => return Ok(None),
    };
    let (Some(src_fd), Some(dest_fd)) = (source.readable_fd(), Transport::of(dest)?.writable_fd())
    else {
        return Ok(None);
    };
    if Backend::existing().is_none() {
        return Ok(None);
    }
    let taken = rb_self.with(|p| {
        Ok(p.take_body_for_splice()
            .map(|(buffered, remaining)| (ruby.str_from_slice(buffered), remaining)))
    })?;
    let Some((buffered, remaining)) = taken else {
        return Ok(None);
    };
    let mut total = buffered.len() as u64;
    if !buffered.is_empty() {
        let _: Value = dest.funcall("write", (buffered,))?;
    }
    let _: Value = dest.funcall("flush", ())?;
    let moved = if is_pipe(src_fd) || is_pipe(dest_fd) {
        let mut moved = 0u64;
        while moved < remaining {
            let n = splice(src_fd, dest_fd, (remaining - moved).min(1 << 20) as u32)?;
            if n == 0 {
                break;
            }
            moved += n as u64;
        }
        moved
    } else {
        match Relay::new()?.pump(src_fd, dest_fd, Some(remaining))? {
            Awaited::Done(n) => n,
            Awaited::Interrupted(_) => {
                return Err(super::errors::error("splice_body_to was interrupted"))
            }
        }
    };
    total += moved;
    if moved < remaining {
        let error = h1p::Error::IncompleteBody {
            missing: Some(remaining - moved),
        };
        rb_self.with(|p| {
            p.fail_with(error.clone());
            Ok(())
        })?;
        return Err(super::errors::parse_error(&error));
    }
    Ok(Some(total))
}

fn splice(fd_in: i32, fd_out: i32, len: u32) -> Result<usize, Error> {
    match splice_kernel(Splice::new(fd_in, fd_out, len))? {
        Awaited::Done(n) => Ok(n),
        Awaited::Interrupted(_) => Err(super::errors::error("splice_body_to was interrupted")),
    }
}

fn is_complete(rb_self: &H1PParser) -> Result<bool, Error> {
    rb_self.with(|parser| Ok(parser.is_complete()))
}

/// `parser.buffered`: the bytes read from the source and not consumed (after an error, those
/// of the message that failed, from its start): for a server that hands the connection to
/// another protocol.
fn buffered(ruby: &Ruby, rb_self: &H1PParser) -> Result<RString, Error> {
    rb_self.with(|parser| Ok(ruby.str_from_slice(parser.buffered())))
}

/// `parser.trailers`: the current message's trailer fields once its chunked body has been read
/// to the end, as `{name => value}` (names lower-cased, a repeated field's values an Array in
/// arrival order); nil before that, and for a message that had none.
fn trailers(ruby: &Ruby, rb_self: &H1PParser) -> Result<Option<RHash>, Error> {
    rb_self.with(|parser| {
        if parser.trailers().is_empty() {
            return Ok(None);
        }
        fields_hash(
            ruby,
            parser.trailers().iter().map(|(n, v)| (&n[..], &v[..])),
        )
        .map(Some)
    })
}

fn is_keep_alive(rb_self: &H1PParser) -> Result<bool, Error> {
    rb_self.with(|parser| Ok(parser.keep_alive()))
}

/// `parser.__in_use__`: see [`H1PParser::in_use`] (Tipi asks before it answers).
fn is_in_use(rb_self: &H1PParser) -> bool {
    rb_self.in_use()
}

/// `parser.__reading__`: the number of the read of a head under way (it changes with each
/// request), or nil between them: Tipi's sweeper cuts a connection it finds on the same read
/// for longer than its timeout.
fn reading(rb_self: &H1PParser) -> Option<i64> {
    Some(rb_self.reading.get()).filter(|&n| n != 0)
}

/// `parser.__idle__`: whether it waits for a next request of which nothing has come yet, after
/// at least one (a new connection's first request is on its way: not idle).
fn is_idle(rb_self: &H1PParser) -> bool {
    rb_self.reading.get() != 0 && rb_self.between.get()
}

/// `parser.__heads__`: the heads parsed since the parser was made (or renewed).
fn heads(rb_self: &H1PParser) -> u64 {
    rb_self.heads.get()
}

/// `parser.__writing__`: while `respond` writes, the bytes the kernel took so far (a number
/// that stays the same while the client reads nothing); nil otherwise. Tipi's sweeper cuts a
/// connection it finds at the same count for longer than its timeout.
fn writing(rb_self: &H1PParser) -> Option<u64> {
    rb_self
        .writing
        .get()
        .then(|| rb_self.progress.load(Relaxed))
}

/// `parser.bytes_sent`: the bytes the last `respond` wrote, head included.
fn bytes_sent(rb_self: &H1PParser) -> u64 {
    rb_self.sent.get()
}

/// `parser.respond(io, status, headers, body, closing = false)`: answers the last request with
/// a Rack response, whatever its body (see `rack_response`), with the framing and Connection
/// field the request and the response call for (`closing`: the server stops, so the connection
/// ends after it). Returns whether the connection goes on, or nil when the app took the socket
/// (a partial hijack). Raises when the connection must end (an `H1P::InvalidResponse` for a
/// response the app got wrong, answered with a 500 when nothing else was sent).
fn respond(ruby: &Ruby, rb_self: &H1PParser, args: &[Value]) -> Result<Option<bool>, Error> {
    let (io, status, headers, body, closing) = match args {
        [io, status, headers, body] => (*io, *status, *headers, *body, false),
        [io, status, headers, body, closing] => (*io, *status, *headers, *body, closing.to_bool()),
        _ => {
            return Err(Error::new(
                ruby.exception_arg_error(),
                "wrong number of arguments (expected 4..5)",
            ))
        }
    };
    let outcome = answer(ruby, rb_self, io, (status, headers, body), closing)?;
    Ok((!outcome.hijacked).then_some(outcome.keep_alive))
}

/// Writes the last request's answer (see `respond`).
fn answer(
    ruby: &Ruby,
    rb_self: &H1PParser,
    io: Value,
    (status, headers, body): (Value, Value, Value),
    closing: bool,
) -> Result<Outcome, Error> {
    let facts = rb_self.request.get();
    // A parser in use (a fiber the app left reads the body on) cannot go on to a next request:
    // the response is still sent, and the connection ends after it.
    let reusable =
        !closing && !rb_self.in_use() && rb_self.with(|parser| Ok(parser.keep_alive()))?;
    let request = h1p::response::Request {
        head: facts.head,
        http10: facts.http10,
        reusable,
    };
    rb_self.sent.set(0);
    rb_self.writing.set(true);
    // The parser's own transport when `io` is its source (Tipi's case), else `io`'s.
    // (A parser in use is read by another fiber: its source cannot be looked at now.)
    let source = rb_self.inner.try_borrow().ok().map(|p| p.source().kind);
    let transport = match source {
        Some(Kind::Stream(transport)) if transport.object().as_raw() == io.as_raw() => transport,
        _ => Transport::of(io)?,
    };
    let sink = rack_response::Sink::new(transport, Arc::clone(&rb_self.progress));
    let result = rack_response::respond(ruby, &sink, request, status, headers, body);
    rb_self.writing.set(false);
    if let Ok(outcome) = &result {
        rb_self.sent.set(outcome.bytes);
    }
    result
}

pub(crate) fn init(ruby: &Ruby, h1p: RModule) -> Result<(), Error> {
    let _ = ruby.get_inner(&ERROR);
    let class = h1p.define_class("Parser", ruby.class_object())?;
    class.undef_default_alloc_func();
    class.define_singleton_method("new", function!(parser_new, -1))?;
    class.define_method("parse_headers", method!(parse_headers, 0))?;
    class.define_method("__idle_parking__=", method!(set_idle_parking, 1))?;
    class.define_method("__retire__", method!(retire, 0))?;
    class.define_method("__renew__", method!(renew, 1))?;
    class.define_method("parse_rack_env", method!(parse_rack_env, 1))?;
    class.define_method("read_body", method!(read_body, 0))?;
    class.define_method("read_body_chunk", method!(read_body_chunk, -1))?;
    class.define_method("splice_body_to", method!(splice_body_to, 1))?;
    class.define_method("complete?", method!(is_complete, 0))?;
    class.define_method("keep_alive?", method!(is_keep_alive, 0))?;
    class.define_method("__in_use__", method!(is_in_use, 0))?;
    class.define_method("__reading__", method!(reading, 0))?;
    class.define_method("__idle__", method!(is_idle, 0))?;
    class.define_method("__heads__", method!(heads, 0))?;
    class.define_method("__writing__", method!(writing, 0))?;
    class.define_method("respond", method!(respond, -1))?;
    class.define_method("bytes_sent", method!(bytes_sent, 0))?;
    class.define_method("serve_rack", method!(serve_rack, -1))?;
    class.define_method("buffered", method!(buffered, 0))?;
    class.define_method("trailers", method!(trailers, 0))?;
    Ok(())
}

static CALL_APP: LazyId = LazyId::new("call_app");
/// Rack's key for the socket a full hijack took (`env['rack.hijack']` sets it).
static HIJACK_IO: Lazy<RString> = Lazy::new(|ruby| {
    let key = ruby.str_new("rack.hijack_io");
    key.freeze();
    key
});
static FINISHED: LazyId = LazyId::new("finished");
static STOPPING: LazyId = LazyId::new("stopping?");

/// `parser.serve_rack(connection, io, base, owner, log)`: Tipi's keep-alive loop for the
/// common request, with no Ruby between requests but the app's call. Each request without a
/// body or an Upgrade field is parsed into a copy of `base` and answered as `respond` does,
/// until the connection ends (false), the client closes it between requests (nil), or a
/// request needs the connection's Ruby path: that request's env is returned, unanswered.
///
/// It talks to `connection` through its declared methods: `call_app(env)` gives the app's
/// response (false when it was answered already, or cut), and with `log`,
/// `finished(env, status, bytes, seconds)` follows each response. An app that took the socket
/// (Rack's full hijack) left it in the env as `rack.hijack_io`: the loop ends there.
/// `owner` (a Tipi::Server, or nil) is asked `stopping?` before each response.
fn serve_rack(ruby: &Ruby, rb_self: &H1PParser, args: &[Value]) -> Result<Value, Error> {
    let [connection, io, base, owner, log] = args else {
        return Err(Error::new(
            ruby.exception_arg_error(),
            "wrong number of arguments (expected 5)",
        ));
    };
    let base = RHash::try_convert(*base)?;
    let log = log.to_bool();
    loop {
        let env = match next_rack_env(ruby, rb_self, base)? {
            Next::Message(env) => env,
            Next::End => return Ok(ruby.qnil().as_value()),
            Next::Idle => return Ok(ruby.to_symbol("idle").as_value()),
        };
        let facts = rb_self.request.get();
        if facts.upgrade || !rb_self.with(|parser| Ok(parser.is_complete()))? {
            return Ok(env.as_value());
        }
        let started = log.then(std::time::Instant::now);
        let response: Value = connection.funcall(*CALL_APP, (env,))?;
        if response.as_raw() == ruby.qfalse().as_raw() {
            return Ok(ruby.qfalse().as_value()); // answered already, or cut (call_app says)
        }
        let triple = RArray::from_value(response).filter(|r| r.len() == 3);
        let status = match triple {
            Some(triple) => triple.entry::<Value>(0)?,
            None => ruby.qnil().as_value(),
        };
        // (Rack's full hijack leaves the socket in the env: no call to ask.)
        let hijacked = env.get(ruby.get_inner(&HIJACK_IO)).is_some();
        let outcome = if hijacked {
            None
        } else {
            let stopping =
                !owner.is_nil() && owner.funcall::<_, _, Value>(*STOPPING, ())?.to_bool();
            let Some(triple) = triple else {
                return Err(rack_response::not_a_response(ruby, *io, response));
            };
            let parts = (status, triple.entry(1)?, triple.entry(2)?);
            Some(answer(ruby, rb_self, *io, parts, stopping)?)
        };
        if let Some(started) = started {
            let seconds = started.elapsed().as_secs_f64();
            let bytes = outcome.as_ref().map_or(0, |o| o.bytes);
            connection.funcall::<_, _, Value>(*FINISHED, (env, status, bytes, seconds))?;
        }
        match outcome {
            Some(outcome) if outcome.keep_alive && !outcome.hijacked => {}
            _ => return Ok(ruby.qfalse().as_value()),
        }
    }
}
