//! `Polyphony::HTTP2::Server`: one HTTP/2 connection's server side over `h2p`, fed with the
//! bytes the socket gave and drained of those to send (the caller moves them, so it works
//! over a plain socket or a TLS one alike).

use std::cell::RefCell;

use bytes::Bytes;
use h2p::{Event, Server, Settings};
use http::HeaderMap;
use magnus::r_hash::ForEach;
use magnus::value::{Lazy, ReprValue};
use magnus::{
    function, method, prelude::*, Error, ExceptionClass, RArray, RHash, RModule, RString, Ruby,
    Value,
};

static ERROR: Lazy<ExceptionClass> =
    Lazy::new(|ruby| crate::helpers::consts::polyphony_const(ruby, "HTTP2", "Error"));

fn h2_error(e: h2p::Error) -> Error {
    let ruby = Ruby::get().expect("called from Ruby");
    Error::new(ruby.get_inner(&ERROR), e.to_string())
}

#[magnus::wrap(class = "Polyphony::HTTP2::Server", free_immediately, size)]
struct Http2Server(RefCell<Server>);

/// `[[name, value], ...]` (names and values Strings) as fields.
fn fields(array: RArray) -> Result<HeaderMap, Error> {
    let mut map = HeaderMap::new();
    for pair in array.into_iter() {
        let pair = RArray::try_convert(pair)?;
        let name: RString = pair.entry(0)?;
        let value: RString = pair.entry(1)?;
        // SAFETY: both read and copied at once, with no Ruby call in between.
        let result = h2p::append_field(&mut map, unsafe { name.as_slice() }, unsafe {
            value.as_slice()
        });
        result.map_err(h2_error)?;
    }
    Ok(map)
}

/// A request's head the way H1P::Parser#parse_headers gives it (for Tipi-native handlers).
fn h1p_headers(
    ruby: &Ruby,
    method: &http::Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    protocol: Option<&str>,
) -> Result<RHash, Error> {
    let hash = ruby.hash_new();
    hash.aset(":method", method.as_str())?;
    hash.aset(":path", uri.path_and_query().map_or("/", |p| p.as_str()))?;
    hash.aset(":protocol", "h2")?;
    hash.aset(":scheme", uri.scheme_str().unwrap_or("http"))?;
    if let Some(authority) = uri.authority() {
        hash.aset(":authority", authority.as_str())?;
    }
    if let Some(protocol) = protocol {
        hash.aset(":connect_protocol", protocol)?;
    }
    let fields = headers
        .iter()
        .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()));
    super::h1p::hash::add_fields(ruby, hash, fields)?;
    Ok(hash)
}

impl Http2Server {
    /// `new(max_concurrent_streams, max_header_list_size)`.
    /// `new(max_concurrent_streams, max_header_list_size, connect_protocol)`: the last allows
    /// RFC 8441's extended CONNECT (WebSocket over a stream).
    fn new(max_concurrent_streams: u32, max_header_list_size: u32, connect_protocol: bool) -> Self {
        let settings = Settings {
            max_concurrent_streams,
            max_header_list_size,
            connect_protocol,
            ..Settings::default()
        };
        Self(RefCell::new(Server::new(&settings)))
    }

    fn server(&self) -> Result<std::cell::RefMut<'_, Server>, Error> {
        self.0
            .try_borrow_mut()
            .map_err(|_| h2_error(h2p::Error("called re-entrantly".into())))
    }

    /// After `Upgrade: h2c`: the upgrading request becomes stream 1 (its body came over
    /// HTTP/1.1); call before the first `receive`.
    fn upgrade(
        &self,
        method: String,
        path: String,
        authority: Option<String>,
    ) -> Result<(), Error> {
        let result = self.server()?.upgrade(&method, &path, authority.as_deref());
        result.map_err(h2_error)
    }

    /// Bytes from the socket ("" when it ended).
    fn receive(&self, bytes: RString) -> Result<(), Error> {
        // SAFETY: copied by the server at once.
        let result = self.server()?.receive(unsafe { bytes.as_slice() });
        result.map_err(h2_error)
    }

    /// `next_event(base, array)`: the next event, written into `array` (emptied first; one
    /// Array per connection, not one per event), which is returned, or nil when there is none:
    /// `[:request, stream, env, end_stream]` (env: a Rack env on a copy of
    /// `base`), `[:data, stream, bytes, end_stream]`, `[:trailers, stream, {name => value or
    /// [values]}]` (before the `:data` that ends the stream), `[:reset, stream]`, or nil.
    /// With `base` nil, a request comes as H1P's headers instead: `{':method', ':path',
    /// ':scheme', ':authority', ':protocol' => 'h2', ':connect_protocol' (extended CONNECT's
    /// `:protocol`), name => value or [values]}`.
    fn next_event(
        ruby: &Ruby,
        rb_self: &Self,
        base: Option<RHash>,
        array: RArray,
    ) -> Result<Value, Error> {
        let event = rb_self.server()?.next_event();
        array.clear()?;
        match event {
            None => return Ok(ruby.qnil().as_value()),
            Some(Event::Request {
                stream,
                method,
                uri,
                headers,
                protocol,
                end_stream,
            }) => {
                let path = uri.path_and_query().map_or("/", |p| p.as_str());
                let authority = uri.authority().map(|a| a.as_str());
                let env = match base {
                    Some(base) => super::h1p::rack::build_h2_env(
                        ruby,
                        base,
                        method.as_str(),
                        path,
                        authority,
                        headers
                            .iter()
                            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes())),
                    )?,
                    None => h1p_headers(ruby, &method, &uri, &headers, protocol.as_deref())?,
                };
                array.push(ruby.to_symbol("request"))?;
                array.push(stream)?;
                array.push(env)?;
                array.push(end_stream)?;
            }
            Some(Event::Data {
                stream,
                data,
                end_stream,
            }) => {
                array.push(ruby.to_symbol("data"))?;
                array.push(stream)?;
                array.push(ruby.str_from_slice(&data))?;
                array.push(end_stream)?;
            }
            Some(Event::Trailers { stream, headers }) => {
                array.push(ruby.to_symbol("trailers"))?;
                array.push(stream)?;
                let fields = headers
                    .iter()
                    .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()));
                array.push(super::h1p::hash::fields_hash(ruby, fields)?)?;
            }
            Some(Event::Reset { stream }) => {
                array.push(ruby.to_symbol("reset"))?;
                array.push(stream)?;
            }
        }
        Ok(array.as_value())
    }

    /// Answers `stream` with a Rack response's status and headers (names lower-cased, values
    /// split at "\n", rack.* entries skipped). `body`: an Array of Strings, sent whole (the
    /// stream ends); true: no body (the stream ends); false: the body follows (`send_data`).
    fn respond_rack(
        &self,
        stream: u32,
        status: u16,
        headers: RHash,
        body: Value,
    ) -> Result<(), Error> {
        let mut fields = HeaderMap::new();
        headers.foreach(|name: RString, value: Value| {
            let mut add = |value: RString| -> Result<(), Error> {
                // SAFETY: both read and copied at once, with no Ruby call in between.
                let (name, value) = unsafe { (name.as_slice(), value.as_slice()) };
                if name.starts_with(b"rack.") {
                    return Ok(());
                }
                for line in value.split(|&b| b == b'\n') {
                    h2p::append_field(&mut fields, name, line).map_err(h2_error)?;
                }
                Ok(())
            };
            if let Some(values) = RArray::from_value(value) {
                for value in values.into_iter() {
                    add(value.funcall("to_s", ())?)?;
                }
            } else {
                add(RString::from_value(value).map_or_else(|| value.funcall("to_s", ()), Ok)?)?;
            }
            Ok(ForEach::Continue)
        })?;
        let data = match RArray::from_value(body) {
            Some(parts) => {
                let mut data = Vec::new();
                for part in parts.into_iter() {
                    let part = RString::try_convert(part)?;
                    // SAFETY: copied at once, with no Ruby call in between.
                    data.extend_from_slice(unsafe { part.as_slice() });
                }
                Some(data)
            }
            None => None,
        };
        let end_without_body = data.is_none() && body.to_bool();
        let mut server = self.server()?;
        let result = server
            .respond(stream, status, fields, end_without_body)
            .and_then(|()| match data {
                Some(data) => server.send_data(stream, Bytes::from(data), true),
                None => Ok(()),
            });
        result.map_err(h2_error)
    }

    fn send_data(&self, stream: u32, data: RString, end_stream: bool) -> Result<(), Error> {
        // SAFETY: copied at once, with no Ruby call in between.
        let data = Bytes::copy_from_slice(unsafe { data.as_slice() });
        let result = self.server()?.send_data(stream, data, end_stream);
        result.map_err(h2_error)
    }

    fn send_trailers(&self, stream: u32, trailers: RArray) -> Result<(), Error> {
        let trailers = fields(trailers)?;
        let result = self.server()?.send_trailers(stream, trailers);
        result.map_err(h2_error)
    }

    fn reset(&self, stream: u32) -> Result<(), Error> {
        let result = self.server()?.reset(stream);
        result.map_err(h2_error)
    }

    fn graceful_shutdown(&self) -> Result<(), Error> {
        let result = self.server()?.graceful_shutdown();
        result.map_err(h2_error)
    }

    /// The bytes to send now ("" when none).
    fn outgoing(ruby: &Ruby, rb_self: &Self) -> Result<RString, Error> {
        let mut out = Vec::new();
        let result = rb_self.server()?.outgoing(&mut out);
        result.map_err(h2_error)?;
        Ok(ruby.str_from_slice(&out))
    }

    /// `flush_to(io)`: writes the bytes to send now to `io` (through the backend, with no Ruby
    /// String or `IO#write` on the way); returns how many (0 when there were none). The
    /// connection is not borrowed while the write waits: streams go on meanwhile.
    fn flush_to(ruby: &Ruby, rb_self: &Self, io: Value) -> Result<Value, Error> {
        let mut out = Vec::new();
        let result = rb_self.server()?.outgoing(&mut out);
        result.map_err(h2_error)?;
        if out.is_empty() {
            return Ok(ruby.integer_from_u64(0).as_value());
        }
        super::h1p::response::write_out(ruby, io, out, None)
    }

    fn is_closed(&self) -> Result<bool, Error> {
        Ok(self.server()?.is_closed())
    }

    /// Whether to stop reading from the socket until the bytes to send are taken (see
    /// `h2p::Server::backlogged`).
    fn is_backlogged(&self) -> Result<bool, Error> {
        Ok(self.server()?.backlogged())
    }

    /// Whether the peer flooded the connection with PING or SETTINGS frames (it got GOAWAY
    /// ENHANCE_YOUR_CALM).
    fn is_flooded(&self) -> Result<bool, Error> {
        Ok(self.server()?.flooded())
    }

    /// `send_capacity(stream, wanted)`: how many bytes of the body may be sent now (0: wait).
    fn send_capacity(&self, stream: u32, wanted: usize) -> Result<usize, Error> {
        let result = self.server()?.send_capacity(stream, wanted);
        result.map_err(h2_error)
    }

    /// `release(stream, count)`: the app read `count` more bytes of the request body.
    fn release(&self, stream: u32, count: usize) -> Result<(), Error> {
        self.server()?.release(stream, count);
        Ok(())
    }

    /// `refuse_body(stream)`: the request body is over the limit; take no more of it.
    fn refuse_body(&self, stream: u32) -> Result<(), Error> {
        self.server()?.refuse_body(stream);
        Ok(())
    }
}

pub(crate) fn init(ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    let http2 = polyphony.define_module("HTTP2")?;
    // Bytes waiting to be sent past which h2 stops writing (until they are taken).
    http2.const_set("OUTBOX_LIMIT", h2p::OUTBOX_LIMIT)?;
    http2.define_error("Error", ruby.exception_standard_error())?;
    let class = http2.define_class("Server", ruby.class_object())?;
    class.define_singleton_method("new", function!(Http2Server::new, 3))?;
    class.define_method("upgrade", method!(Http2Server::upgrade, 3))?;
    class.define_method("receive", method!(Http2Server::receive, 1))?;
    class.define_method("next_event", method!(Http2Server::next_event, 2))?;
    class.define_method("respond_rack", method!(Http2Server::respond_rack, 4))?;
    class.define_method("send_data", method!(Http2Server::send_data, 3))?;
    class.define_method("send_trailers", method!(Http2Server::send_trailers, 2))?;
    class.define_method("reset", method!(Http2Server::reset, 1))?;
    class.define_method(
        "graceful_shutdown",
        method!(Http2Server::graceful_shutdown, 0),
    )?;
    class.define_method("outgoing", method!(Http2Server::outgoing, 0))?;
    class.define_method("flush_to", method!(Http2Server::flush_to, 1))?;
    class.define_method("closed?", method!(Http2Server::is_closed, 0))?;
    class.define_method("backlogged?", method!(Http2Server::is_backlogged, 0))?;
    class.define_method("flooded?", method!(Http2Server::is_flooded, 0))?;
    class.define_method("send_capacity", method!(Http2Server::send_capacity, 2))?;
    class.define_method("release", method!(Http2Server::release, 2))?;
    class.define_method("refuse_body", method!(Http2Server::refuse_body, 1))?;
    Ok(())
}
