//! `Polyphony::TLS`: server and client contexts over `polyphony-tls`, and the session a
//! `Polyphony::TLS::Socket` (lib/polyphony/tls.rb) drives. The ciphertext moves through the
//! backend like any socket's bytes: a fiber waiting for it lets the others run.

use std::cell::{Cell, RefCell};
use std::sync::Arc;

use magnus::value::{Lazy, ReprValue};
use magnus::{function, method, prelude::*, Error, ExceptionClass, RModule, RString, Ruby, Value};
use polyphony_runtime::op::Read as ReadOp;
use polyphony_tls::{CertStore, Read, Session};

use super::backend::{io_error, Awaited, IdleRead};
use super::io::{attempt_or_await_idle, string_of, val, write_all};

/// Ciphertext is read in pieces of this size: a whole TLS record (16 KiB and its overhead).
const RECORD: usize = 17 * 1024;

static ERROR: Lazy<ExceptionClass> = Lazy::new(|ruby| error_class(ruby, "Error"));
static HANDSHAKE_ERROR: Lazy<ExceptionClass> =
    Lazy::new(|ruby| error_class(ruby, "HandshakeError"));
static UNKNOWN_SERVER_NAME: Lazy<ExceptionClass> =
    Lazy::new(|ruby| error_class(ruby, "UnknownServerName"));
static CERTIFICATE_ERROR: Lazy<ExceptionClass> =
    Lazy::new(|ruby| error_class(ruby, "CertificateError"));

fn error_class(ruby: &Ruby, name: &str) -> ExceptionClass {
    crate::helpers::consts::polyphony_const(ruby, "TLS", name)
}

fn tls_error(e: polyphony_tls::Error) -> Error {
    let ruby = Ruby::get().expect("called from Ruby");
    let class = match e {
        polyphony_tls::Error::Handshake(_) => &HANDSHAKE_ERROR,
        polyphony_tls::Error::UnknownServerName(_) => &UNKNOWN_SERVER_NAME,
        polyphony_tls::Error::Certificate(_) => &CERTIFICATE_ERROR,
        _ => &ERROR,
    };
    Error::new(ruby.get_inner(class), e.to_string())
}

/// `Polyphony::TLS::ServerContext`: certificates (picked by SNI, changeable while serving) and
/// the ALPN protocols a server offers.
#[magnus::wrap(class = "Polyphony::TLS::ServerContext", free_immediately, size)]
struct ServerContext {
    store: Arc<CertStore>,
    config: Arc<rustls::ServerConfig>,
}

fn strings(values: &[String]) -> Vec<&str> {
    values.iter().map(String::as_str).collect()
}

impl ServerContext {
    fn new(alpn: Vec<String>) -> Result<Self, Error> {
        let store = Arc::new(CertStore::new());
        let config =
            polyphony_tls::server_config(store.clone(), &strings(&alpn)).map_err(tls_error)?;
        Ok(Self { store, config })
    }

    /// Adds a certificate chain and key (PEM) for the names the certificate carries; with
    /// `fallback`, it also serves clients whose name no certificate covers. The names.
    fn add_certificate(
        &self,
        chain: RString,
        key: RString,
        fallback: bool,
    ) -> Result<Vec<String>, Error> {
        // SAFETY: both Strings are live and not changed while the slices are read.
        let key =
            unsafe { polyphony_tls::certified_key_from_pem(chain.as_slice(), key.as_slice()) }
                .map_err(tls_error)?;
        let key = Arc::new(key);
        let names = polyphony_tls::certificate_names(&key).map_err(tls_error)?;
        if names.is_empty() && !fallback {
            return Err(tls_error(polyphony_tls::Error::Certificate(
                "the certificate names no DNS host (subject alternative names)".into(),
            )));
        }
        self.store.insert(&names, key.clone());
        if fallback {
            self.store.set_fallback(Some(key));
        }
        Ok(names)
    }

    /// Serves the TLS-ALPN-01 certificate for `name` (the SHA-256 digest of the key
    /// authorization), or withdraws it (nil).
    fn set_challenge(&self, name: String, digest: Option<RString>) -> Result<(), Error> {
        let key = match digest {
            // SAFETY: the String is live and not changed while the slice is read.
            Some(digest) => Some(Arc::new(
                polyphony_tls::alpn_challenge_key(&name, unsafe { digest.as_slice() })
                    .map_err(tls_error)?,
            )),
            None => None,
        };
        self.store.set_challenge(&name, key);
        Ok(())
    }

    fn covers(&self, name: String) -> bool {
        self.store.covers(&name)
    }

    fn session(&self) -> Result<TlsSession, Error> {
        Ok(TlsSession::new(
            Session::server(self.config.clone()).map_err(tls_error)?,
        ))
    }
}

/// The certificate store of a ServerContext (nil: none).
pub(crate) fn store_of(context: Value) -> Result<Option<Arc<CertStore>>, Error> {
    if context.is_nil() {
        return Ok(None);
    }
    let context = <&ServerContext>::try_convert(context)?;
    Ok(Some(context.store.clone()))
}

/// `Polyphony::TLS::ClientContext`: the CA certificates a client trusts, its ALPN offer.
#[magnus::wrap(class = "Polyphony::TLS::ClientContext", free_immediately, size)]
struct ClientContext {
    config: Arc<rustls::ClientConfig>,
}

impl ClientContext {
    fn new(roots: RString, alpn: Vec<String>) -> Result<Self, Error> {
        // SAFETY: the String is live and not changed while the slice is read.
        let config = polyphony_tls::client_config(unsafe { roots.as_slice() }, &strings(&alpn))
            .map_err(tls_error)?;
        Ok(Self { config })
    }

    fn session(&self, server_name: String) -> Result<TlsSession, Error> {
        Ok(TlsSession::new(
            Session::client(self.config.clone(), &server_name).map_err(tls_error)?,
        ))
    }
}

/// A self-signed certificate and its key for `names` (PEM): [certificate, key].
/// `Polyphony::TLS.ticket_secret`: the secret every session ticket key of this server derives
/// from (32 bytes), to hand to the next image of the server at a restart.
fn ticket_secret(ruby: &Ruby) -> RString {
    ruby.str_from_slice(&polyphony_tls::tickets::secret())
}

/// `Polyphony::TLS.ticket_secret = bytes`: sets it before any server context is made (so that
/// tickets issued before a restart stay good); false when one is in use already.
fn set_ticket_secret(secret: RString) -> Result<bool, Error> {
    // SAFETY: copied at once.
    let bytes: [u8; 32] = unsafe { secret.as_slice() }.try_into().map_err(|_| {
        let ruby = Ruby::get().expect("called from Ruby");
        Error::new(ruby.exception_arg_error(), "a ticket secret is 32 bytes")
    })?;
    Ok(polyphony_tls::tickets::set_secret(bytes))
}

fn self_signed(names: Vec<String>) -> Result<(String, String), Error> {
    polyphony_tls::self_signed(&names).map_err(tls_error)
}

/// `Polyphony::TLS.peek_server_name(bytes)`: the SNI of the ClientHello at the start of
/// `bytes` (nil when it names none or is no ClientHello), or false when more bytes are needed.
fn peek_server_name(ruby: &Ruby, bytes: RString) -> Value {
    // SAFETY: the String is live and not changed while the slice is read.
    match polyphony_tls::peek_client_hello(unsafe { bytes.as_slice() }) {
        polyphony_tls::ClientHello::Incomplete => ruby.qfalse().as_value(),
        polyphony_tls::ClientHello::Complete(Some(name)) => ruby.str_new(&name).as_value(),
        _ => ruby.qnil().as_value(),
    }
}

/// `Polyphony::TLS::Session`: one connection's TLS state. Its methods take the socket's fd and
/// move the ciphertext through the backend. Writes from several fibers go out in order: while
/// one fiber flushes, the others' records join its queue.
#[magnus::wrap(class = "Polyphony::TLS::Session", free_immediately, size)]
pub(crate) struct TlsSession {
    inner: RefCell<Session>,
    outbox: RefCell<Vec<u8>>,
    flushing: Cell<bool>,
    read_buffer: Cell<Vec<u8>>,
}

/// What came of waiting for I/O: done, or the fiber was resumed with a value first.
pub(crate) type Step<T> = Result<Result<T, Value>, Error>;

impl TlsSession {
    fn new(session: Session) -> Self {
        Self {
            inner: RefCell::new(session),
            outbox: RefCell::new(Vec::new()),
            flushing: Cell::new(false),
            read_buffer: Cell::new(Vec::new()),
        }
    }

    /// Moves the session's ciphertext to the outbox and sends the outbox (unless another fiber
    /// is sending it: then it goes out after that fiber's bytes).
    fn flush(&self, fd: i32) -> Step<()> {
        self.inner
            .borrow_mut()
            .outgoing(&mut self.outbox.borrow_mut());
        if self.flushing.get() {
            return Ok(Ok(()));
        }
        self.flushing.set(true);
        let result = self.send_outbox(fd);
        self.flushing.set(false);
        result
    }

    fn send_outbox(&self, fd: i32) -> Step<()> {
        loop {
            let data = std::mem::take(&mut *self.outbox.borrow_mut());
            if data.is_empty() {
                return Ok(Ok(()));
            }
            if let Awaited::Interrupted(value) = write_all(fd, data)? {
                return Ok(Err(val(value)));
            }
        }
    }

    /// Reads ciphertext and feeds it to the session (an empty read: the transport ended). On
    /// a TLS error, the alert for the peer is sent before the error is raised.
    fn receive(&self, fd: i32, idle: IdleRead) -> Step<()> {
        let op = ReadOp::new(fd, Vec::with_capacity(RECORD), u64::MAX);
        let data = match attempt_or_await_idle(fd, op, idle)? {
            Awaited::Done((Ok(_), data)) => data,
            Awaited::Done((Err(e), _)) => return Err(io_error(&e)),
            Awaited::Interrupted(value) => return Ok(Err(val(value))),
        };
        let received = self.inner.borrow_mut().receive(&data);
        if let Err(e) = received {
            let _ = self.flush(fd);
            return Err(tls_error(e));
        }
        Ok(Ok(()))
    }

    /// Completes the handshake. Returns nil (or the value the fiber was resumed with).
    fn handshake(&self, fd: i32) -> Result<Value, Error> {
        let ruby = Ruby::get().expect("called from Ruby");
        loop {
            if let Err(value) = self.flush(fd)? {
                return Ok(value);
            }
            let session = self.inner.borrow();
            if !session.is_handshaking() {
                return Ok(ruby.qnil().as_value());
            }
            if !session.wants_read() {
                return Err(tls_error(polyphony_tls::Error::Handshake(
                    "the handshake stalled".into(),
                )));
            }
            drop(session);
            if let Err(value) = self.receive(fd, IdleRead::No)? {
                return Ok(value);
            }
        }
    }

    /// Decrypts at most `max` bytes (reading ciphertext as needed) into the session's own
    /// buffer, zeroed once for its life (a record's worth: more is never decrypted at once),
    /// and hands them to `take` (empty at the end); or the value the fiber was resumed with.
    /// The first read of ciphertext is `idle` (see `Transport::read`): parked, it fails with
    /// ECANCELED, and the buffer goes until the next read.
    pub(crate) fn read_with<T>(
        &self,
        fd: i32,
        max: usize,
        take: impl FnOnce(&[u8]) -> T,
        idle: IdleRead,
    ) -> Step<T> {
        let mut out = self.read_buffer.take();
        out.resize(RECORD, 0);
        let read = self.read_plain(fd, &mut out[..max.clamp(1, RECORD)], idle);
        let result = match read {
            Ok(Ok(n)) => Ok(Ok(take(&out[..n]))),
            Ok(Err(value)) => Ok(Err(value)),
            Err(e) => Err(e),
        };
        if idle == IdleRead::No || result.is_ok() {
            self.read_buffer.replace(out);
        }
        result
    }

    fn read_plain(&self, fd: i32, out: &mut [u8], mut idle: IdleRead) -> Step<usize> {
        loop {
            let read = self.inner.borrow_mut().read(out).map_err(tls_error)?;
            match read {
                Read::Data(n) => return Ok(Ok(n)),
                Read::Eof => return Ok(Ok(0)),
                Read::WouldBlock => {
                    // The session may owe the peer something first (a key update, tickets).
                    if let Err(value) = self.flush(fd)? {
                        return Ok(Err(value));
                    }
                    let received = self.receive(fd, idle)?;
                    idle = IdleRead::No;
                    if let Err(value) = received {
                        return Ok(Err(value));
                    }
                }
            }
        }
    }

    /// At most `len` bytes of plaintext (into `buffer` when given); nil at the end.
    fn read(&self, fd: i32, len: usize, buffer: Option<RString>) -> Result<Value, Error> {
        let ruby = Ruby::get().expect("called from Ruby");
        let read = self.read_with(
            fd,
            len,
            |data| {
                if data.is_empty() {
                    ruby.qnil().as_value()
                } else {
                    string_of(&ruby, data, buffer)
                }
            },
            IdleRead::No,
        )?;
        Ok(read.unwrap_or_else(|value| value))
    }

    /// Encrypts and sends `data`; the byte count.
    fn write(&self, fd: i32, data: RString) -> Result<Value, Error> {
        let ruby = Ruby::get().expect("called from Ruby");
        // SAFETY: the String is live; the session copies the bytes at once.
        let written = unsafe { self.write_bytes(fd, data.as_slice()) }?;
        if let Err(value) = written {
            return Ok(value);
        }
        Ok(ruby.integer_from_u64(data.len() as u64).as_value())
    }

    pub(crate) fn write_bytes(&self, fd: i32, data: &[u8]) -> Step<()> {
        self.inner.borrow_mut().write(data).map_err(tls_error)?;
        self.flush(fd)
    }

    /// Sends close_notify (a peer already gone is no error).
    fn close(&self, fd: i32) -> Result<(), Error> {
        self.inner.borrow_mut().close();
        let _ = self.flush(fd);
        Ok(())
    }

    fn alpn_protocol(&self) -> Option<String> {
        self.inner
            .borrow()
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }

    fn server_name(&self) -> Option<String> {
        self.inner.borrow().server_name().map(str::to_string)
    }

    fn protocol_version(&self) -> Option<String> {
        self.inner.borrow().protocol_version()
    }

    fn is_handshaking(&self) -> bool {
        self.inner.borrow().is_handshaking()
    }
}

pub(crate) fn init(ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    let tls = polyphony.define_module("TLS")?;
    let base = tls.define_error("Error", ruby.exception_standard_error())?;
    let handshake = tls.define_error("HandshakeError", base)?;
    tls.define_error("UnknownServerName", handshake)?;
    tls.define_error("CertificateError", base)?;
    tls.define_singleton_method("self_signed", function!(self_signed, 1))?;
    tls.define_singleton_method("ticket_secret", function!(ticket_secret, 0))?;
    tls.define_singleton_method("ticket_secret=", function!(set_ticket_secret, 1))?;
    tls.define_singleton_method("__peek_server_name__", function!(peek_server_name, 1))?;

    let class = tls.define_class("ServerContext", ruby.class_object())?;
    class.define_singleton_method("new", function!(ServerContext::new, 1))?;
    class.define_method(
        "add_certificate",
        method!(ServerContext::add_certificate, 3),
    )?;
    class.define_method("set_challenge", method!(ServerContext::set_challenge, 2))?;
    class.define_method("covers?", method!(ServerContext::covers, 1))?;
    class.define_method("session", method!(ServerContext::session, 0))?;

    let class = tls.define_class("ClientContext", ruby.class_object())?;
    class.define_singleton_method("new", function!(ClientContext::new, 2))?;
    class.define_method("session", method!(ClientContext::session, 1))?;

    let class = tls.define_class("Session", ruby.class_object())?;
    class.define_method("__handshake__", method!(TlsSession::handshake, 1))?;
    class.define_method("__read__", method!(TlsSession::read, 3))?;
    class.define_method("__write__", method!(TlsSession::write, 2))?;
    class.define_method("__close__", method!(TlsSession::close, 1))?;
    class.define_method("alpn_protocol", method!(TlsSession::alpn_protocol, 0))?;
    class.define_method("server_name", method!(TlsSession::server_name, 0))?;
    class.define_method("protocol_version", method!(TlsSession::protocol_version, 0))?;
    class.define_method("handshaking?", method!(TlsSession::is_handshaking, 0))?;
    Ok(())
}
