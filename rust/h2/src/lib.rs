//! HTTP/2 for Polyphony, sans-IO: the `h2` crate (hyper's HTTP/2: framing, HPACK, flow control)
//! fed with the bytes a connection received and drained of the bytes to send. No async runtime:
//! h2's futures are polled whenever something happened (bytes came in, the app answered), which
//! is when they can make progress, so a no-op waker does. The runtime moves the bytes; a fiber
//! per stream runs the app.

mod pipe;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use h2::server::{Connection, Handshake, SendResponse};
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri};

use pipe::Pipe;
pub use pipe::OUTBOX_LIMIT;

/// What the server's limits set in its SETTINGS.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_concurrent_streams: u32,
    pub max_header_list_size: u32,
    /// Per stream: what a client may send that the app has not read yet.
    pub initial_window_size: u32,
    /// The same for all the connection's streams together: the most request body a connection
    /// holds unread.
    pub initial_connection_window_size: u32,
    /// RFC 8441's extended CONNECT (a WebSocket over a stream): announced in SETTINGS, and a
    /// request's `:protocol` comes with its event.
    pub connect_protocol: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_concurrent_streams: 128,
            max_header_list_size: 64 * 1024,
            initial_window_size: 1 << 20,
            initial_connection_window_size: 2 << 20,
            connect_protocol: false,
        }
    }
}

/// What happened on the connection, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A request's head, as h2 parsed it (moved here, not copied). `end_stream`: it has no
    /// body.
    Request {
        stream: u32,
        method: Method,
        /// :scheme, :authority and :path (with the query).
        uri: Uri,
        /// Field names lower-case, in arrival order per name.
        headers: HeaderMap,
        /// An extended CONNECT's `:protocol` ("websocket").
        protocol: Option<String>,
        end_stream: bool,
    },
    /// A piece of a request body; `end_stream` with the last one (which may be empty).
    Data {
        stream: u32,
        data: Bytes,
        end_stream: bool,
    },
    /// A request's trailer fields, after its last piece of body and before the `Data` event
    /// that ends it.
    Trailers { stream: u32, headers: HeaderMap },
    /// The client reset the stream: its answer is not wanted.
    Reset { stream: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP/2: {}", self.0)
    }
}

impl std::error::Error for Error {}

fn h2_error(e: h2::Error) -> Error {
    Error(e.to_string())
}

enum State {
    Handshaking(Pin<Box<Handshake<Pipe, Bytes>>>),
    Open(Box<Connection<Pipe, Bytes>>),
    Closed,
}

struct Stream {
    respond: Option<SendResponse<Bytes>>,
    body: Option<RecvStream>,
    /// The request body's flow control, kept after its end: its window opens as the app reads.
    flow: Option<h2::FlowControl>,
    /// Body bytes received that the app has not read yet (their window stays closed).
    unread: usize,
    /// Whether the app has given any of the body's window back (`release`). (h2 tells the
    /// client of what was given back only once there is enough of it: until then, what h2
    /// counts as the room left is more than the client knows it has.)
    released: bool,
    /// A refused body (`refuse_body`) whose rest is taken and thrown away as it comes, within
    /// the window the client has left, so that a client whose upload is nearly done ends it
    /// cleanly; when the window runs out first, the stream is reset. (Debian 12's curl reports
    /// an upload cut by RST_STREAM(NO_ERROR) after a complete answer as a failure, error 92:
    /// 69 times in 200 for a 5,000-byte body over a 1,000-byte limit.)
    discard: bool,
    send: Option<SendStream<Bytes>>,
}

/// The server side of one HTTP/2 connection (after the client's preface, which it reads).
pub struct Server {
    pipe: Pipe,
    state: State,
    streams: HashMap<u32, Stream>,
    events: VecDeque<Event>,
    /// After `Upgrade: h2c`: stream 1's HEADERS frame, to be put behind the client's preface
    /// and first SETTINGS frame, and the bytes held until those are complete.
    upgrade: Option<(Vec<u8>, Vec<u8>)>,
    /// The peer flooded the connection with PING or SETTINGS frames: it got GOAWAY
    /// ENHANCE_YOUR_CALM, and what it sends is no longer read.
    flooded: bool,
}

/// Unread bytes fed past which the caller should stop reading from the socket until h2 has
/// caught up (see [`Server::backlogged`]).
const UNREAD_LIMIT: usize = 64 * 1024;

/// The client's connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl Server {
    pub fn new(settings: &Settings) -> Self {
        let pipe = Pipe::default();
        let mut builder = h2::server::Builder::new();
        builder
            .max_concurrent_streams(settings.max_concurrent_streams)
            .max_header_list_size(settings.max_header_list_size)
            .initial_window_size(settings.initial_window_size)
            .initial_connection_window_size(settings.initial_connection_window_size);
        if settings.connect_protocol {
            builder.enable_connect_protocol();
        }
        let handshake = builder.handshake(pipe.clone());
        Self {
            pipe,
            state: State::Handshaking(Box::pin(handshake)),
            streams: HashMap::new(),
            events: VecDeque::new(),
            upgrade: None,
            flooded: false,
        }
    }

    /// A connection upgraded from HTTP/1.1 (`Upgrade: h2c`, RFC 7540 3.2): the upgrading
    /// request becomes stream 1, half-closed (its body, if any, came over HTTP/1.1), and gets
    /// its answer on the new connection. Call before the first `receive`.
    pub fn upgrade(
        &mut self,
        method: &str,
        path: &str,
        authority: Option<&str>,
    ) -> Result<(), Error> {
        let mut block = Vec::new();
        let mut field = |name: &str, value: &str| {
            // A literal field without indexing and with a literal name: the client's HPACK
            // state is left as it is.
            block.push(0);
            hpack_string(&mut block, name.as_bytes());
            hpack_string(&mut block, value.as_bytes());
        };
        field(":method", method);
        field(":scheme", "http");
        field(":path", path);
        if let Some(authority) = authority {
            field(":authority", authority);
        }
        if block.len() > 16_384 {
            return Err(Error("the upgrading request's head is too large".into()));
        }
        let mut frame = Vec::with_capacity(9 + block.len());
        frame.extend_from_slice(&(block.len() as u32).to_be_bytes()[1..]);
        frame.push(0x1); // HEADERS
        frame.push(0x1 | 0x4); // END_STREAM | END_HEADERS
        frame.extend_from_slice(&1u32.to_be_bytes());
        frame.extend_from_slice(&block);
        self.upgrade = Some((frame, Vec::new()));
        Ok(())
    }

    /// Takes bytes from the transport (none: it ended) and handles what they complete.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if self.flooded {
            return self.poll(); // (what a flooding peer sends is dropped)
        }
        if let Some((frame, held)) = self.upgrade.as_mut() {
            held.extend_from_slice(bytes);
            // Stream 1 goes in after the preface and the SETTINGS frame that must follow it.
            let settings_end = (held.len() >= PREFACE.len() + 9).then(|| {
                let head = &held[PREFACE.len()..];
                PREFACE.len()
                    + 9
                    + (usize::from(head[0]) << 16
                        | usize::from(head[1]) << 8
                        | usize::from(head[2]))
            });
            match settings_end {
                Some(end) if held.len() >= end => {
                    let mut flooded = self.pipe.feed(&held[..end]);
                    flooded |= self.pipe.feed(frame);
                    if held.len() > end {
                        flooded |= self.pipe.feed(&held[end..]); // (nothing fed means the end)
                    }
                    self.upgrade = None;
                    self.flooded = flooded;
                }
                _ if bytes.is_empty() => {
                    // The client ended before its preface was whole: h2 says what is wrong.
                    self.pipe.feed(held);
                    self.upgrade = None;
                    self.pipe.feed(b"");
                }
                _ => return Ok(()),
            }
        } else {
            self.flooded = self.pipe.feed(bytes);
        }
        if self.flooded {
            if let State::Open(conn) = &mut self.state {
                conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
            }
        }
        self.poll()
    }

    /// Whether the caller should stop reading from the socket for now: h2 has not read what
    /// was fed (it waits to write, because the bytes to send have not been taken), or those
    /// bytes are over their limit. Taking them (`outgoing`) lets h2 go on.
    pub fn backlogged(&self) -> bool {
        self.pipe.unread() > UNREAD_LIMIT || self.pipe.unsent() >= pipe::OUTBOX_LIMIT
    }

    /// Whether the peer flooded the connection (see the field).
    pub fn flooded(&self) -> bool {
        self.flooded
    }

    /// How many bytes of `stream`'s response body may be sent now, asking for `wanted`: what
    /// the stream's and the connection's windows allow, and h2 will not hold beyond that. 0:
    /// wait until the peer opens a window (the connection is polled as bytes come in).
    pub fn send_capacity(&mut self, stream: u32, wanted: usize) -> Result<usize, Error> {
        let send =
            self.stream(stream)?.send.as_mut().ok_or_else(|| {
                Error(format!("stream {stream} has no response head, or it ended"))
            })?;
        if send.capacity() < wanted {
            send.reserve_capacity(wanted);
        }
        Ok(send.capacity().min(wanted))
    }

    /// The app has read `count` more bytes of `stream`'s request body: the peer may send as
    /// many more (WINDOW_UPDATE goes out with the next `outgoing`).
    pub fn release(&mut self, stream: u32, count: usize) {
        let Some(entry) = self.streams.get_mut(&stream) else {
            return; // (gone: h2 opened its window when it forgot it)
        };
        let count = count.min(entry.unread);
        if let Some(flow) = entry.flow.as_mut() {
            if flow.release_capacity(count).is_ok() {
                entry.unread -= count;
                entry.released |= count > 0;
            }
        }
    }

    /// Stops taking `stream`'s request body (it is over the server's limit): if the app read
    /// none of it, what the client still sends within its window is thrown away
    /// (`Stream::discard`); past it, or at once if the app read some, h2 resets the rest
    /// (RST_STREAM) once the stream is answered.
    pub fn refuse_body(&mut self, stream: u32) {
        if let Some(entry) = self.streams.get_mut(&stream) {
            let room = entry
                .flow
                .as_ref()
                .map_or(0, h2::FlowControl::available_capacity);
            if entry.body.is_some() && room > 0 && !entry.released {
                // Its rest is thrown away as it comes (`Stream::discard`); the window is not
                // opened again. (Only while the client's room is known: once some was given
                // back, the client may already be waiting for a WINDOW_UPDATE h2 never sends,
                // and the stream would wait for ever.)
                entry.discard = true;
                return;
            }
            entry.body = None;
            entry.flow = None;
            entry.unread = 0;
            if entry.respond.is_none() && entry.send.is_none() {
                self.streams.remove(&stream);
            }
        }
    }

    /// The next event, if any.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Appends what is to be sent to `out`: the frames of every answer given since the last
    /// call (h2 writes them when the connection is polled: once per batch, not per answer).
    /// (Polling also reads the frames h2 held back while these bytes waited: their events are
    /// ready after the call.)
    pub fn outgoing(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        let result = self.poll();
        self.pipe.drain(out);
        result
    }

    /// Whether the connection is over (closed by the client, or after a GOAWAY and its last
    /// stream).
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Answers `stream` with its head; `end_stream` when there is no body.
    /// (`headers`: see [`header_map`].)
    pub fn respond(
        &mut self,
        stream: u32,
        status: u16,
        headers: HeaderMap,
        end_stream: bool,
    ) -> Result<(), Error> {
        let entry = self.stream(stream)?;
        let mut respond = entry
            .respond
            .take()
            .ok_or_else(|| Error(format!("stream {stream} was answered already")))?;
        let status = StatusCode::from_u16(status).map_err(|e| Error(e.to_string()))?;
        let mut response = Response::builder()
            .status(status)
            .body(())
            .map_err(|e| Error(e.to_string()))?;
        *response.headers_mut() = headers;
        let send = respond
            .send_response(response, end_stream)
            .map_err(h2_error)?;
        if end_stream {
            self.finish(stream);
        } else {
            self.stream(stream)?.send = Some(send);
        }
        Ok(()) // sent by the next `outgoing`
    }

    /// Sends a piece of `stream`'s body (h2 holds what flow control does not let out yet).
    pub fn send_data(&mut self, stream: u32, data: Bytes, end_stream: bool) -> Result<(), Error> {
        let send =
            self.stream(stream)?.send.as_mut().ok_or_else(|| {
                Error(format!("stream {stream} has no response head, or it ended"))
            })?;
        send.send_data(data, end_stream).map_err(h2_error)?;
        if end_stream {
            self.finish(stream);
        }
        Ok(()) // sent by the next `outgoing`
    }

    /// Ends `stream`'s body with trailer fields.
    pub fn send_trailers(&mut self, stream: u32, map: HeaderMap) -> Result<(), Error> {
        let send =
            self.stream(stream)?.send.as_mut().ok_or_else(|| {
                Error(format!("stream {stream} has no response head, or it ended"))
            })?;
        send.send_trailers(map).map_err(h2_error)?;
        self.finish(stream);
        Ok(()) // sent by the next `outgoing`
    }

    /// Resets `stream` (the app failed, or gave up on it).
    pub fn reset(&mut self, stream: u32) -> Result<(), Error> {
        if let Some(mut entry) = self.streams.remove(&stream) {
            if let Some(send) = entry.send.as_mut() {
                send.send_reset(h2::Reason::INTERNAL_ERROR);
            } else if let Some(respond) = entry.respond.as_mut() {
                respond.send_reset(h2::Reason::INTERNAL_ERROR);
            }
        }
        Ok(()) // sent by the next `outgoing`
    }

    /// Starts a graceful shutdown: GOAWAY, streams in flight finish, no new ones.
    pub fn graceful_shutdown(&mut self) -> Result<(), Error> {
        if let State::Open(conn) = &mut self.state {
            conn.graceful_shutdown();
        }
        self.poll()
    }

    fn stream(&mut self, stream: u32) -> Result<&mut Stream, Error> {
        self.streams
            .get_mut(&stream)
            .ok_or_else(|| Error(format!("no stream {stream}")))
    }

    /// Forgets a stream whose answer is complete (its body was read or reset).
    fn finish(&mut self, stream: u32) {
        if let Some(entry) = self.streams.get_mut(&stream) {
            entry.respond = None;
            entry.send = None;
            if entry.body.is_none() {
                self.streams.remove(&stream);
            }
        }
    }

    /// Drives the connection (the handshake, frames in and out) until it waits for bytes;
    /// new streams become events. Whether anything happened.
    fn poll_connection(&mut self, cx: &mut Context<'_>) -> Result<bool, Error> {
        let mut any = false;
        loop {
            let mut progress = false;
            match &mut self.state {
                State::Handshaking(handshake) => match handshake.as_mut().poll(cx) {
                    Poll::Ready(Ok(conn)) => {
                        self.state = State::Open(Box::new(conn));
                        progress = true;
                    }
                    Poll::Ready(Err(e)) => {
                        self.state = State::Closed;
                        return Err(Error(format!(
                            "no HTTP/2 connection preface from the client ({e})"
                        )));
                    }
                    Poll::Pending => return Ok(any),
                },
                State::Open(conn) => match conn.poll_accept(cx) {
                    Poll::Ready(Some(Ok((request, respond)))) => {
                        let stream = respond.stream_id().as_u32();
                        let (head, mut body) = request.into_parts();
                        let mut respond = respond;
                        if !well_formed(&head) {
                            // Malformed (RFC 9113 8.1.1): a stream error, the connection goes
                            // on.
                            respond.send_reset(h2::Reason::PROTOCOL_ERROR);
                            any = true;
                            continue;
                        }
                        let end_stream = body.is_end_stream();
                        let flow = (!end_stream).then(|| body.flow_control().clone());
                        let protocol = head
                            .extensions
                            .get::<h2::ext::Protocol>()
                            .map(|p| p.as_str().to_string());
                        self.events.push_back(Event::Request {
                            stream,
                            method: head.method,
                            uri: head.uri,
                            headers: head.headers,
                            protocol,
                            end_stream,
                        });
                        self.streams.insert(
                            stream,
                            Stream {
                                respond: Some(respond),
                                body: (!end_stream).then_some(body),
                                flow,
                                unread: 0,
                                released: false,
                                discard: false,
                                send: None,
                            },
                        );
                        progress = true;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        self.state = State::Closed;
                        return Err(h2_error(e));
                    }
                    Poll::Ready(None) => {
                        self.state = State::Closed;
                        return Ok(any);
                    }
                    Poll::Pending => {}
                },
                State::Closed => return Ok(any),
            }
            if !progress {
                return Ok(any);
            }
            any = true;
        }
    }

    /// Drives h2 as far as the bytes at hand allow: the handshake, new streams, request bodies,
    /// and the frames to send.
    fn poll(&mut self) -> Result<(), Error> {
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let mut progress = self.poll_connection(&mut cx)?;
            progress |= self.poll_bodies(&mut cx);
            if !progress {
                return Ok(());
            }
        }
    }

    /// Request body pieces that arrived, as events. Their window stays closed until the app has
    /// read them (`release`): what a client may send ahead of the app is the window.
    fn poll_bodies(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        let mut done = Vec::new();
        for (&id, stream) in self.streams.iter_mut() {
            let reset = match (stream.respond.as_mut(), stream.send.as_mut()) {
                (Some(respond), _) => respond.poll_reset(cx).is_ready(),
                (None, Some(send)) => send.poll_reset(cx).is_ready(),
                (None, None) => false,
            };
            if reset {
                self.events.push_back(Event::Reset { stream: id });
                done.push(id);
                progress = true;
                continue;
            }
            let Some(body) = stream.body.as_mut() else {
                continue;
            };
            loop {
                match body.poll_data(cx) {
                    Poll::Ready(Some(Ok(_))) if stream.discard => {
                        // A refused body: thrown away; reset once the window is used up
                        // before its end.
                        let room = stream
                            .flow
                            .as_ref()
                            .map_or(0, h2::FlowControl::available_capacity);
                        if body.is_end_stream() || room <= 0 {
                            stream.body = None;
                            stream.flow = None;
                            break;
                        }
                    }
                    Poll::Ready(None) if stream.discard => {
                        stream.body = None;
                        break;
                    }
                    Poll::Ready(Some(Ok(data))) => {
                        // The window opens again as the app reads (`release`).
                        stream.unread += data.len();
                        let end_stream = body.is_end_stream();
                        self.events.push_back(Event::Data {
                            stream: id,
                            data,
                            end_stream,
                        });
                        progress = true;
                        if end_stream {
                            stream.body = None;
                            break;
                        }
                    }
                    Poll::Ready(None) => {
                        // The body is over; trailer fields, if any, came with its end.
                        if let Poll::Ready(Ok(Some(headers))) = body.poll_trailers(cx) {
                            if !headers.values().all(well_formed_value) {
                                // Malformed trailer fields: the stream is reset, as for a head.
                                if let Some(respond) = stream.respond.as_mut() {
                                    respond.send_reset(h2::Reason::PROTOCOL_ERROR);
                                } else if let Some(send) = stream.send.as_mut() {
                                    send.send_reset(h2::Reason::PROTOCOL_ERROR);
                                }
                                self.events.push_back(Event::Reset { stream: id });
                                done.push(id);
                                progress = true;
                                break;
                            }
                            self.events.push_back(Event::Trailers {
                                stream: id,
                                headers,
                            });
                        }
                        self.events.push_back(Event::Data {
                            stream: id,
                            data: Bytes::new(),
                            end_stream: true,
                        });
                        stream.body = None;
                        progress = true;
                        break;
                    }
                    Poll::Ready(Some(Err(_))) => {
                        self.events.push_back(Event::Reset { stream: id });
                        done.push(id);
                        progress = true;
                        break;
                    }
                    Poll::Pending => break,
                }
            }
            if stream.body.is_none() && stream.respond.is_none() && stream.send.is_none() {
                done.push(id);
            }
        }
        for id in done {
            self.streams.remove(&id);
        }
        progress
    }
}

/// What h2 lets through that RFC 9113 calls malformed: a request without `:path` (other than
/// a CONNECT), and field values with leading or trailing whitespace (8.2.1).
fn well_formed(head: &http::request::Parts) -> bool {
    if head.method != Method::CONNECT && head.uri.path_and_query().is_none() {
        return false;
    }
    head.headers.values().all(well_formed_value)
}

/// A field value neither starting nor ending with whitespace (RFC 9113 8.2.1).
fn well_formed_value(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    let edge = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    !edge(bytes.first()) && !edge(bytes.last())
}

/// An HPACK string literal, not Huffman-coded: its length as a 7-bit-prefix integer, then it.
fn hpack_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut len = bytes.len();
    if len < 127 {
        out.push(len as u8);
    } else {
        out.push(127);
        len -= 127;
        while len >= 128 {
            out.push((len % 128) as u8 | 0x80);
            len /= 128;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(bytes);
}

/// Fields HTTP/2 forbids (RFC 9113 8.2.2): a response carrying HTTP/1's connection handling
/// has them dropped, not refused.
const CONNECTION_SPECIFIC: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// Response fields for [`Server::respond`]: names in any case (HTTP/2 sends them lower-case),
/// HTTP/1's connection-specific fields dropped. Errors name a bad name or value.
pub fn header_map<'a>(
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) -> Result<HeaderMap, Error> {
    let mut map = HeaderMap::new();
    for (name, value) in fields {
        append_field(&mut map, name, value)?;
    }
    Ok(map)
}

/// Adds one field to `map` as [`header_map`] does.
pub fn append_field(map: &mut HeaderMap, name: &[u8], value: &[u8]) -> Result<(), Error> {
    let name = HeaderName::from_bytes(name).map_err(|_| {
        Error(format!(
            "invalid header name {:?}",
            String::from_utf8_lossy(name)
        ))
    })?;
    if CONNECTION_SPECIFIC.contains(&name.as_str()) {
        return Ok(());
    }
    let value = HeaderValue::from_bytes(value)
        .map_err(|_| Error(format!("header {name} has CR, LF or NUL in its value")))?;
    map.append(name, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use h2::client::{self, SendRequest};
    use http::{Method, Request};

    type ClientConnection = Pin<Box<client::Connection<Pipe, Bytes>>>;

    /// An h2 client over an in-memory pipe, its bytes shuttled to and from the server.
    struct Client {
        io: Pipe,
        conn: Option<ClientConnection>,
        send: Option<SendRequest<Bytes>>,
    }

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    impl Client {
        fn connect(server: &mut Server) -> Self {
            let io = Pipe::default();
            let mut handshake = Box::pin(client::handshake(io.clone()));
            let mut client = Client {
                io,
                conn: None,
                send: None,
            };
            for _ in 0..20 {
                if let Poll::Ready(result) = handshake.as_mut().poll(&mut cx()) {
                    let (send, conn) = result.unwrap();
                    client.send = Some(send);
                    client.conn = Some(Box::pin(conn));
                    break;
                }
                client.pump(server);
            }
            client.pump(server);
            client
        }

        /// Moves bytes both ways until neither side has more to say.
        fn pump(&mut self, server: &mut Server) {
            for _ in 0..50 {
                if let Some(conn) = self.conn.as_mut() {
                    let _ = conn.as_mut().poll(&mut cx());
                }
                let mut to_server = Vec::new();
                self.io.drain(&mut to_server);
                if !to_server.is_empty() {
                    server.receive(&to_server).unwrap();
                }
                let mut to_client = Vec::new();
                server.outgoing(&mut to_client).unwrap();
                if !to_client.is_empty() {
                    self.io.feed(&to_client);
                }
                if to_server.is_empty() && to_client.is_empty() {
                    return;
                }
            }
            panic!("the connection never settled");
        }

        fn request(
            &mut self,
            method: Method,
            path: &str,
            body: Option<&[&str]>,
        ) -> (client::ResponseFuture, u32) {
            let request = Request::builder()
                .method(method)
                .uri(format!("https://example.test{path}"))
                .header("x-test", "yes")
                .body(())
                .unwrap();
            let send = self.send.as_mut().unwrap();
            let (response, mut stream) = send.send_request(request, body.is_none()).unwrap();
            if let Some(parts) = body {
                for (i, part) in parts.iter().enumerate() {
                    stream
                        .send_data(Bytes::from(part.to_string()), i + 1 == parts.len())
                        .unwrap();
                }
            }
            let id = response.stream_id().as_u32();
            (response, id)
        }

        /// The head of a POST to /upload, its body to follow on the stream handed back.
        fn upload(&mut self) -> (client::ResponseFuture, SendStream<Bytes>) {
            let request = Request::builder()
                .method(Method::POST)
                .uri("https://example.test/upload")
                .body(())
                .unwrap();
            let send = self.send.as_mut().unwrap();
            send.send_request(request, false).unwrap()
        }

        fn response(
            &mut self,
            server: &mut Server,
            mut response: client::ResponseFuture,
        ) -> (u16, String) {
            self.pump(server);
            let Poll::Ready(response) = Pin::new(&mut response).poll(&mut cx()) else {
                panic!("no response yet");
            };
            let (head, mut body) = response.unwrap().into_parts();
            let mut text = String::new();
            loop {
                self.pump(server);
                match body.poll_data(&mut cx()) {
                    Poll::Ready(Some(chunk)) => {
                        text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap())
                    }
                    Poll::Ready(None) => break,
                    Poll::Pending => panic!("the body did not end"),
                }
            }
            (head.status.as_u16(), text)
        }
    }

    fn events(server: &mut Server) -> Vec<Event> {
        std::iter::from_fn(|| server.next_event()).collect()
    }

    #[test]
    fn serves_a_request_and_its_answer() {
        let mut server = Server::new(&Settings::default());
        let mut client = Client::connect(&mut server);
        let (response, id) = client.request(Method::GET, "/hello?x=1", None);
        client.pump(&mut server);
        assert_eq!(
            events(&mut server),
            [Event::Request {
                stream: id,
                method: Method::GET,
                uri: "https://example.test/hello?x=1".parse().unwrap(),
                headers: header_map([(&b"x-test"[..], &b"yes"[..])]).unwrap(),
                protocol: None,
                end_stream: true,
            }]
        );
        let fields = [
            (&b"Content-Type"[..], &b"text/plain"[..]),
            (b"connection", b"close"), // HTTP/1's: dropped
        ];
        let map = header_map(fields).unwrap();
        assert_eq!(map.len(), 1);
        server.respond(id, 200, map, false).unwrap();
        server
            .send_data(id, Bytes::from_static(b"hello"), true)
            .unwrap();
        assert_eq!(
            client.response(&mut server, response),
            (200, "hello".to_string())
        );
    }

    #[test]
    fn multiplexes_streams_with_bodies_answered_in_any_order() {
        let mut server = Server::new(&Settings::default());
        let mut client = Client::connect(&mut server);
        let (first, a) = client.request(Method::POST, "/a", Some(&["one ", "two"]));
        let (second, b) = client.request(Method::POST, "/b", Some(&["three"]));
        client.pump(&mut server);
        let mut bodies: HashMap<u32, String> = HashMap::new();
        for event in events(&mut server) {
            if let Event::Data { stream, data, .. } = event {
                bodies
                    .entry(stream)
                    .or_default()
                    .push_str(std::str::from_utf8(&data).unwrap());
            }
        }
        assert_eq!(bodies[&a], "one two");
        assert_eq!(bodies[&b], "three");
        // The second first; the first's body ends with trailers.
        server.respond(b, 201, HeaderMap::new(), false).unwrap();
        server.send_data(b, Bytes::from_static(b"B"), true).unwrap();
        server.respond(a, 202, HeaderMap::new(), false).unwrap();
        server
            .send_data(a, Bytes::from_static(b"A"), false)
            .unwrap();
        server
            .send_trailers(a, header_map([(&b"x-checksum"[..], &b"1"[..])]).unwrap())
            .unwrap();
        assert_eq!(client.response(&mut server, second), (201, "B".to_string()));
        assert_eq!(client.response(&mut server, first), (202, "A".to_string()));
    }

    #[test]
    fn request_trailers_come_between_the_body_and_its_end() {
        let mut server = Server::new(&Settings::default());
        let mut client = Client::connect(&mut server);
        let (_response, mut stream) = client.upload();
        stream
            .send_data(Bytes::from_static(b"body"), false)
            .unwrap();
        let trailers = header_map([(&b"x-checksum"[..], &b"42"[..])]).unwrap();
        stream.send_trailers(trailers.clone()).unwrap();
        client.pump(&mut server);
        let id = stream.stream_id().as_u32();
        let tail: Vec<Event> = events(&mut server).into_iter().skip(1).collect();
        assert_eq!(
            tail,
            [
                Event::Data {
                    stream: id,
                    data: Bytes::from_static(b"body"),
                    end_stream: false
                },
                Event::Trailers {
                    stream: id,
                    headers: trailers
                },
                Event::Data {
                    stream: id,
                    data: Bytes::new(),
                    end_stream: true
                },
            ]
        );
    }

    #[test]
    fn a_reset_from_the_client_is_an_event() {
        let mut server = Server::new(&Settings::default());
        let mut client = Client::connect(&mut server);
        let (response, id) = client.request(Method::GET, "/slow", None);
        client.pump(&mut server);
        let _ = events(&mut server);
        drop(response); // an h2 client resets a stream whose response it drops
        client.pump(&mut server);
        assert_eq!(events(&mut server), [Event::Reset { stream: id }]);
        assert!(server.respond(id, 200, HeaderMap::new(), true).is_err());
    }

    #[test]
    fn a_bad_preface_is_an_error() {
        let mut server = Server::new(&Settings::default());
        let error = server
            .receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("HTTP/2: no HTTP/2 connection preface from the client"),
            "{error}"
        );
        assert!(server.is_closed());
    }

    #[test]
    fn a_graceful_shutdown_lets_the_open_stream_finish() {
        let mut server = Server::new(&Settings::default());
        let mut client = Client::connect(&mut server);
        let (response, id) = client.request(Method::GET, "/last", None);
        client.pump(&mut server);
        let _ = events(&mut server);
        server.graceful_shutdown().unwrap();
        client.pump(&mut server);
        server.respond(id, 200, HeaderMap::new(), false).unwrap();
        server
            .send_data(id, Bytes::from_static(b"done"), true)
            .unwrap();
        assert_eq!(
            client.response(&mut server, response),
            (200, "done".to_string())
        );
        client.pump(&mut server);
        assert!(server.is_closed());
    }

    #[test]
    fn an_upgraded_request_is_stream_1_answered_after_the_clients_preface() {
        let mut server = Server::new(&Settings::default());
        server
            .upgrade(
                "POST",
                &format!("/up?{}", "q".repeat(300)),
                Some("example.test"),
            )
            .unwrap();
        // The client's preface and an empty SETTINGS frame, in two pieces: held until whole.
        let mut wire = PREFACE.to_vec();
        wire.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
        server.receive(&wire[..30]).unwrap();
        assert_eq!(server.next_event(), None);
        server.receive(&wire[30..]).unwrap();
        let Some(Event::Request {
            stream,
            method,
            uri,
            end_stream,
            ..
        }) = server.next_event()
        else {
            panic!("stream 1's request expected");
        };
        assert_eq!(
            (
                stream,
                method.as_str(),
                uri.path_and_query().map(|p| p.as_str().len()),
                uri.authority().map(|a| a.as_str()),
                end_stream
            ),
            (1, "POST", Some(304), Some("example.test"), true)
        );
        server.respond(1, 200, HeaderMap::new(), true).unwrap();
        let mut out = Vec::new();
        server.outgoing(&mut out).unwrap();
        // Somewhere after the server's SETTINGS: a HEADERS frame (type 1) on stream 1.
        let mut at = 0;
        let mut headers_on_1 = false;
        while at + 9 <= out.len() {
            let len = usize::from(out[at]) << 16
                | usize::from(out[at + 1]) << 8
                | usize::from(out[at + 2]);
            headers_on_1 |= out[at + 3] == 0x1 && out[at + 5..at + 9] == [0, 0, 0, 1];
            at += 9 + len;
        }
        assert!(headers_on_1, "no HEADERS on stream 1 in {out:?}");
    }

    /// A frame's bytes: its 9-byte header, then `payload`.
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// The error code of the GOAWAY frame in `out`, if there is one.
    fn goaway_code(out: &[u8]) -> Option<u32> {
        let mut at = 0;
        while at + 9 <= out.len() {
            let len = usize::from(out[at]) << 16
                | usize::from(out[at + 1]) << 8
                | usize::from(out[at + 2]);
            if out[at + 3] == 0x7 {
                return Some(u32::from_be_bytes(
                    out[at + 13..at + 17].try_into().unwrap(),
                ));
            }
            at += 9 + len;
        }
        None
    }

    #[test]
    fn a_ping_flood_gets_goaway_enhance_your_calm() {
        let mut server = Server::new(&Settings::default());
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, 0, b""));
        server.receive(&bytes).unwrap();
        for i in 0..1500u64 {
            server.receive(&frame(0x6, 0, 0, &i.to_be_bytes())).unwrap();
            if server.flooded() {
                break;
            }
        }
        assert!(server.flooded());
        let mut out = Vec::new();
        let _ = server.outgoing(&mut out);
        assert_eq!(goaway_code(&out), Some(0xb)); // ENHANCE_YOUR_CALM
    }

    #[test]
    fn a_few_pings_are_answered() {
        let mut server = Server::new(&Settings::default());
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(0x4, 0, 0, b""));
        for i in 0..500u64 {
            bytes.extend(frame(0x6, 0, 0, &i.to_be_bytes()));
        }
        server.receive(&bytes).unwrap();
        assert!(!server.flooded());
        let mut out = Vec::new();
        server.outgoing(&mut out).unwrap();
        assert_eq!(goaway_code(&out), None);
    }

    #[test]
    fn a_request_bodys_window_opens_as_the_app_reads() {
        let settings = Settings {
            initial_window_size: 16_384,
            initial_connection_window_size: 65_535,
            ..Settings::default()
        };
        let mut server = Server::new(&settings);
        let mut client = Client::connect(&mut server);
        let body = "b".repeat(40_000);
        let (_response, id) = client.request(Method::POST, "/upload", Some(&[body.as_str()]));
        client.pump(&mut server);
        let received = |server: &mut Server| -> usize {
            events(server)
                .iter()
                .map(|e| match e {
                    Event::Data { data, .. } => data.len(),
                    _ => 0,
                })
                .sum()
        };
        assert_eq!(received(&mut server), 16_384); // the window, and no more
        client.pump(&mut server);
        assert_eq!(received(&mut server), 0);
        server.release(id, 16_384);
        client.pump(&mut server);
        assert_eq!(received(&mut server), 16_384);
        server.release(id, 16_384);
        client.pump(&mut server);
        assert_eq!(received(&mut server), 40_000 - 2 * 16_384);
    }

    /// A POST whose head the server refuses (`refuse_body`, then a complete 413) before any
    /// of its body came; the client then sends `size` bytes of body in 16 KB pieces, as far
    /// as its windows let it. Whether the server reset the stream, and the answer's status.
    fn refused_upload(size: usize) -> (Option<h2::Reason>, u16) {
        let mut server = Server::new(&Settings::default());
        let mut client = Client::connect(&mut server);
        let (mut response, mut upload) = client.upload();
        let id = response.stream_id().as_u32();
        client.pump(&mut server);
        events(&mut server);
        server.refuse_body(id);
        server.respond(id, 413, HeaderMap::new(), true).unwrap();
        client.pump(&mut server);
        let mut left = size;
        while left > 0 {
            let piece = left.min(16_384);
            left -= piece;
            upload.reserve_capacity(piece);
            let _ = upload.poll_capacity(&mut cx());
            if upload
                .send_data(Bytes::from(vec![b'x'; piece]), left == 0)
                .is_err()
            {
                break; // (reset)
            }
            client.pump(&mut server);
        }
        client.pump(&mut server);
        assert!(
            events(&mut server).is_empty(),
            "a refused body's bytes are not handed on"
        );
        let reset = match upload.poll_reset(&mut cx()) {
            Poll::Ready(Ok(reason)) => Some(reason),
            _ => None,
        };
        let Poll::Ready(Ok(head)) = Pin::new(&mut response).poll(&mut cx()) else {
            panic!("no response");
        };
        (reset, head.status().as_u16())
    }

    #[test]
    fn the_rest_of_a_small_refused_body_is_taken_and_thrown_away() {
        // The client's upload ends cleanly: some clients (curl 7.88) report an upload cut
        // after a complete answer as a failure.
        assert_eq!(refused_upload(5_000), (None, 413));
        assert_eq!(refused_upload(600_000), (None, 413));
    }

    #[test]
    fn a_body_refused_after_the_app_read_some_is_reset_at_once() {
        let mut server = Server::new(&Settings::default());
        let mut client = Client::connect(&mut server);
        let (mut response, mut upload) = client.upload();
        let id = response.stream_id().as_u32();
        upload.reserve_capacity(100_000);
        let _ = upload.poll_capacity(&mut cx());
        upload
            .send_data(Bytes::from(vec![b'x'; 100_000]), false)
            .unwrap();
        client.pump(&mut server);
        events(&mut server);
        server.release(id, 50_000); // (less than h2 tells the client of)
        server.refuse_body(id);
        server.respond(id, 413, HeaderMap::new(), true).unwrap();
        client.pump(&mut server);
        assert!(matches!(
            upload.poll_reset(&mut cx()),
            Poll::Ready(Ok(h2::Reason::NO_ERROR))
        ));
        assert!(matches!(
            Pin::new(&mut response).poll(&mut cx()),
            Poll::Ready(Ok(_))
        ));
    }

    #[test]
    fn a_refused_body_is_reset_once_it_used_up_its_window() {
        // (The stream's window is the default settings' 1 MB.)
        assert_eq!(refused_upload(4 << 20), (Some(h2::Reason::NO_ERROR), 413));
    }

    #[test]
    fn a_response_is_sent_no_faster_than_the_clients_window() {
        let mut server = Server::new(&Settings::default());
        let mut client = Client::connect(&mut server);
        let (_response, id) = client.request(Method::GET, "/big", None);
        client.pump(&mut server);
        events(&mut server);
        server.respond(id, 200, HeaderMap::new(), false).unwrap();
        // The client's windows are RFC 9113's initial 65,535 bytes, and it reads nothing.
        let allowed = server.send_capacity(id, 1 << 20).unwrap();
        assert_eq!(allowed, 65_535);
        let piece = Bytes::from(vec![b'x'; allowed]);
        server.send_data(id, piece, false).unwrap();
        client.pump(&mut server);
        assert_eq!(server.send_capacity(id, 1 << 20).unwrap(), 0);
    }

    #[test]
    fn unsent_bytes_over_the_limit_stop_reading_until_taken() {
        let mut server = Server::new(&Settings::default());
        let mut bytes = PREFACE.to_vec();
        // The client's windows: 16 MiB for the stream and the connection.
        bytes.extend(frame(0x4, 0, 0, &[0, 4, 1, 0, 0, 0]));
        bytes.extend(frame(0x8, 0, 0, &(16u32 << 20).to_be_bytes()));
        let mut encoder = Vec::new();
        // HEADERS for GET / (static table: :method GET, :scheme http, :path /), no :authority.
        encoder.extend_from_slice(&[0x82, 0x86, 0x84]);
        bytes.extend(frame(0x1, 0x4 | 0x1, 1, &encoder));
        server.receive(&bytes).unwrap();
        events(&mut server);
        server.respond(1, 200, HeaderMap::new(), false).unwrap();
        let allowed = server.send_capacity(1, 1 << 20).unwrap();
        assert!(allowed >= 300_000, "capacity {allowed}");
        server
            .send_data(1, Bytes::from(vec![b'x'; allowed]), false)
            .unwrap();
        // Bytes come in but nobody takes what h2 writes: it stops at the outbox's limit, and
        // the caller is told to stop reading.
        server.receive(&frame(0x6, 0, 0, &[0; 8])).unwrap();
        assert!(server.backlogged());
        let mut out = Vec::new();
        server.outgoing(&mut out).unwrap();
        assert!(out.len() >= OUTBOX_LIMIT);
        while !out.is_empty() {
            out.clear();
            server.outgoing(&mut out).unwrap();
        }
        assert!(!server.backlogged());
    }
}
