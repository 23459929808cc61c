//! A connection's transport, resolved once per connection: where H1P's parser reads and the
//! response writers write. An IO goes through the backend with no Ruby method call (while
//! Ruby's own buffers for it are empty), a `Polyphony::TLS::Socket` through its session (which
//! the socket hands over by its declared `__transport__`), anything else through its own
//! `readpartial` and `write`.

use magnus::rb_sys::{AsRawValue, FromRawValue};
use magnus::value::{LazyId, ReprValue};
use magnus::{Error, RArray, RString, Ruby, TryConvert, Value};
use polyphony_runtime::op::{PollAdd, Read};
use rb_sys::VALUE;

use super::backend::{io_error, Awaited, Backend, IdleRead};
use super::h1p::parser::is_canceled;
use super::io::{attempt_or_await_read, write_all_with};
use super::tls::TlsSession;
use crate::helpers::io;

/// A connection's transport (see the module's doc). It holds its objects as raw VALUEs (so
/// that it is `Send`, as wrapped Rust data must be): the owner keeps the object alive (and
/// marked), and with it a TLS socket's session.
#[derive(Clone, Copy)]
pub(crate) enum Transport {
    /// An IO.
    Io(VALUE),
    /// A TLS socket: its session (a `Polyphony::TLS::Session`) and descriptor.
    Tls {
        socket: VALUE,
        session: VALUE,
        fd: i32,
    },
    /// Anything else answering `readpartial` and `write`.
    Other(VALUE),
}

static TRANSPORT: LazyId = LazyId::new("__transport__");
static WRITE: LazyId = LazyId::new("write");

impl Transport {
    /// How `object` is read and written.
    pub(crate) fn of(object: Value) -> Result<Self, Error> {
        let raw = object.as_raw();
        if io::is_io(raw) {
            return Ok(Transport::Io(raw));
        }
        if object.respond_to(*TRANSPORT, false)? {
            // `[session, fd]`, or nil while the socket holds bytes of its own (read past a line
            // by `gets`): those are the socket's to give, through `readpartial`.
            let answer: Value = object.funcall(*TRANSPORT, ())?;
            if let Some(pair) = RArray::from_value(answer).filter(|a| a.len() == 2) {
                let session: Value = pair.entry(0)?;
                let _: &TlsSession = TryConvert::try_convert(session)?; // (checked once)
                return Ok(Transport::Tls {
                    socket: raw,
                    session: session.as_raw(),
                    fd: pair.entry(1)?,
                });
            }
        }
        Ok(Transport::Other(raw))
    }

    /// A TLS socket's session.
    fn session(session: VALUE) -> Result<&'static TlsSession, Error> {
        // SAFETY: the socket holds the session, and the owner the socket (see the type's doc).
        TryConvert::try_convert(unsafe { Value::from_raw(session) })
    }

    /// The object it was resolved from.
    pub(crate) fn object(&self) -> Value {
        let (Transport::Io(raw) | Transport::Tls { socket: raw, .. } | Transport::Other(raw)) =
            *self;
        // SAFETY: the owner keeps the object alive (see the type's doc).
        unsafe { Value::from_raw(raw) }
    }

    /// The descriptor of an IO with nothing in Ruby's read buffer, on a thread with a backend:
    /// what the backend may read (and splice from).
    pub(crate) fn readable_fd(&self) -> Option<i32> {
        let Transport::Io(raw) = *self else {
            return None;
        };
        Backend::existing()?;
        let fptr = io::open_fptr(raw)?;
        // SAFETY: `open_fptr` hands out the live rb_io_t of an open IO; the GVL is held.
        unsafe { (rb_sys::rb_io_read_pending(fptr) == 0).then_some((*fptr).fd) }
    }

    /// The descriptor of an IO with nothing in Ruby's write buffer (so bytes written around it
    /// keep their order), on a thread with a backend: what the backend may write (and splice
    /// to).
    pub(crate) fn writable_fd(&self) -> Option<i32> {
        let Transport::Io(raw) = *self else {
            return None;
        };
        Backend::existing()?;
        let fptr = io::open_fptr(raw)?;
        // SAFETY: `open_fptr` hands out the live rb_io_t of an open IO; the GVL is held.
        unsafe { ((*fptr).wbuf.len == 0).then_some((*fptr).fd) }
    }

    /// Appends at most `max` bytes to `buf` with no Ruby method call; the count (0 at the end),
    /// `Interrupted` when the fiber was resumed otherwise, or None when this transport is read
    /// the Ruby way (`readpartial`). `spare` is the buffer the backend reads into, kept from
    /// one read to the next. An idle read (of the first bytes of a message) may be interrupted
    /// by the backend's `park_idle`: it then fails with ECANCELED, nothing lost.
    pub(crate) fn read(
        &self,
        buf: &mut Vec<u8>,
        max: usize,
        spare: &mut Vec<u8>,
        idle: IdleRead,
    ) -> Result<Option<Awaited<usize>>, Error> {
        match *self {
            Transport::Io(_) => {
                let (Some(backend), Some(fd)) = (Backend::existing(), self.readable_fd()) else {
                    return Ok(None);
                };
                let mut data = std::mem::take(spare);
                data.clear();
                data.reserve(max);
                let read = Read::new(fd, data, u64::MAX);
                let awaited = backend.await_idle_op(fd, read, idle)?;
                match awaited {
                    // Into an empty buffer (the usual case: each read of a head or body begins
                    // with the last one consumed), the bytes are not copied: the read's buffer
                    // becomes the caller's.
                    Awaited::Done((Ok(n), data)) if buf.is_empty() => {
                        *spare = std::mem::replace(buf, data);
                        Ok(Some(Awaited::Done(n)))
                    }
                    Awaited::Done((Ok(n), data)) => {
                        buf.extend_from_slice(&data);
                        *spare = data;
                        Ok(Some(Awaited::Done(n)))
                    }
                    // Not readable this way (a directory, a mode the kernel refuses).
                    Awaited::Done((Err(e), _)) if e.raw_os_error() == Some(libc::EINVAL) => {
                        Ok(None)
                    }
                    Awaited::Done((Err(e), _)) => Err(io_error(&e)),
                    Awaited::Interrupted(value) => Ok(Some(Awaited::Interrupted(value))),
                }
            }
            Transport::Tls { session, fd, .. } => {
                let read = Self::session(session)?.read_with(
                    fd,
                    max,
                    |data| {
                        buf.extend_from_slice(data);
                        data.len()
                    },
                    idle,
                )?;
                Ok(Some(match read {
                    Ok(n) => Awaited::Done(n),
                    Err(value) => Awaited::Interrupted(value.as_raw()),
                }))
            }
            Transport::Other(_) => Ok(None),
        }
    }

    /// Writes all of `data`, telling `progress` the bytes as the kernel takes them (all at
    /// once for a Ruby `write`); `Interrupted` when the fiber was resumed otherwise.
    pub(crate) fn write(
        &self,
        ruby: &Ruby,
        data: Vec<u8>,
        mut progress: impl FnMut(usize),
    ) -> Result<Awaited<()>, Error> {
        match *self {
            Transport::Tls { session, fd, .. } => {
                match Self::session(session)?.write_bytes(fd, &data)? {
                    Ok(()) => {
                        progress(data.len());
                        Ok(Awaited::Done(()))
                    }
                    Err(value) => Ok(Awaited::Interrupted(value.as_raw())),
                }
            }
            _ => match self.writable_fd() {
                Some(fd) => write_all_with(fd, data, progress),
                None => {
                    let len = data.len();
                    let _: Value = self
                        .object()
                        .funcall(*WRITE, (ruby.str_from_slice(&data),))?;
                    progress(len);
                    Ok(Awaited::Done(()))
                }
            },
        }
    }

    /// Writes `head` then `body` (a String kept for Ruby's own `write(head, body)`, a writev);
    /// through the backend they go out together.
    pub(crate) fn write_with_body(
        &self,
        ruby: &Ruby,
        mut head: Vec<u8>,
        body: RString,
    ) -> Result<Awaited<()>, Error> {
        if matches!(self, Transport::Other(_)) || self.writable_fd().is_none() && !self.is_tls() {
            let _: Value = self
                .object()
                .funcall(*WRITE, (ruby.str_from_slice(&head), body))?;
            return Ok(Awaited::Done(()));
        }
        // SAFETY: the bytes are copied at once, before any Ruby code runs.
        head.extend_from_slice(unsafe { body.as_slice() });
        self.write(ruby, head, |_| {})
    }

    fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls { .. })
    }
}

/// `Polyphony.__read_idle__(io, max)`: at most `max` bytes from `io` (a socket or a Polyphony
/// TLS socket), read as the first bytes of a message that may be long in coming: the backend's
/// `park_idle` may interrupt the wait once it has lasted a while, and then `:idle` is returned
/// (nothing read, nothing lost) so that the caller can wait without its fiber. Otherwise a
/// String, nil at the end of the stream, false when `io` is not read this way (its owner reads
/// it with `readpartial`), or the value the fiber was scheduled with meanwhile.
///
/// A socket is waited for by a poll, then read at once: no buffer is held while it waits (a
/// read in the kernel would hold one per waiting connection), and the one it is read into is
/// the thread's, kept from one read to the next.
pub(crate) fn read_idle(ruby: &Ruby, io: Value, max: usize) -> Result<Value, Error> {
    let transport = Transport::of(io)?;
    if let (Transport::Io(_), Some(fd)) = (transport, transport.readable_fd()) {
        return read_idle_socket(ruby, fd, max.max(1));
    }
    let mut buf = Vec::new();
    let mut spare = Vec::new();
    match transport.read(&mut buf, max.max(1), &mut spare, IdleRead::Yes) {
        Ok(Some(Awaited::Done(0))) => Ok(ruby.qnil().as_value()),
        Ok(Some(Awaited::Done(_))) => Ok(ruby.str_from_slice(&buf).as_value()),
        // SAFETY: a value the fiber was scheduled with, live on the run queue until now.
        Ok(Some(Awaited::Interrupted(value))) => Ok(unsafe { Value::from_raw(value) }),
        Ok(None) => Ok(ruby.qfalse().as_value()),
        Err(e) if is_canceled(&e) => Ok(ruby.to_symbol("idle").as_value()),
        Err(e) => Err(e),
    }
}

thread_local! {
    /// The buffer `read_idle_socket` reads into (used only between two switches).
    static IDLE_READ_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// See [`read_idle`]: a poll, interruptible by `park_idle`, then a non-blocking receive.
fn read_idle_socket(ruby: &Ruby, fd: i32, max: usize) -> Result<Value, Error> {
    let events = (libc::POLLIN | libc::POLLRDHUP) as u32;
    loop {
        match attempt_or_await_read(fd, PollAdd::new(fd, events), IdleRead::Yes)? {
            Awaited::Done(Ok(_)) => {}
            Awaited::Done(Err(e)) if e.raw_os_error() == Some(libc::ECANCELED) => {
                return Ok(ruby.to_symbol("idle").as_value());
            }
            Awaited::Done(Err(e)) => return Err(io_error(&e)),
            // SAFETY: a value the fiber was scheduled with, live on the run queue until now.
            Awaited::Interrupted(value) => return Ok(unsafe { Value::from_raw(value) }),
        }
        // (Taken out while in use: a Ruby error raised by making the String leaves the slot
        // empty, not borrowed.)
        let mut buf = IDLE_READ_BUFFER.take();
        buf.resize(max.max(buf.len()), 0);
        // SAFETY: `buf` has at least `max` writable bytes, and lives through the call.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), max, libc::MSG_DONTWAIT) };
        let received = if n < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(ruby.str_from_slice(&buf[..n as usize]))
        };
        IDLE_READ_BUFFER.set(buf);
        match received {
            Ok(data) if data.is_empty() => return Ok(ruby.qnil().as_value()),
            Ok(data) => return Ok(data.as_value()),
            // Taken by another reader since the poll, or a signal: wait again.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EINTR)) => continue,
            // Not a socket: read the IO's own way.
            Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
                return Ok(ruby.qfalse().as_value())
            }
            Err(e) => return Err(io_error(&e)),
        }
    }
}
