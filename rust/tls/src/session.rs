//! One TLS connection, fed with the ciphertext its transport received and drained of the
//! ciphertext to send. The runtime moves the bytes; this moves none.

use std::io::{ErrorKind, Read as _, Write as _};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use crate::Error;

/// What a read of plaintext found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// This many bytes were copied out.
    Data(usize),
    /// Nothing until more ciphertext arrives.
    WouldBlock,
    /// The peer closed (with close_notify, or its transport ended).
    Eof,
}

pub struct Session {
    conn: Connection,
    /// Ciphertext received that rustls has not taken yet (its plaintext buffer was full).
    inbox: Vec<u8>,
    /// The transport reached its end.
    transport_eof: bool,
    /// Whether any bytes came from the peer yet.
    received: bool,
    /// A plain HTTP request came instead of a ClientHello: the answer is an HTTP 400, as
    /// nginx gives, not a TLS alert the client cannot read. Or a ClientHello asked for a name
    /// no certificate serves: the answer is alert 112 (see [`UNRECOGNIZED_NAME`]).
    plain_http: Option<&'static [u8]>,
}

/// A fatal `unrecognized_name` alert (112, RFC 6066 3) as a plaintext record: what a client
/// asking for a name the server has no certificate for gets. (rustls itself sends
/// `access_denied`, which tells the client nothing about the name.)
const UNRECOGNIZED_NAME: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 112];

/// What a server answers a plain HTTP request sent to its HTTPS port.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
Content-Length: 49\r\nConnection: close\r\n\r\nThis port speaks HTTPS: use an https:// address.\n";

/// Whether `bytes` start like an HTTP/1 request line ("GET /", "POST /"...): an upper-case
/// method and a space. A TLS record starts with a content type byte (22 for a handshake).
fn looks_like_http(bytes: &[u8]) -> bool {
    let method = bytes.iter().take_while(|b| b.is_ascii_uppercase()).count();
    (3..=7).contains(&method) && bytes.get(method) == Some(&b' ')
}

impl Session {
    pub fn server(config: Arc<ServerConfig>) -> Result<Self, Error> {
        let conn = ServerConnection::new(config).map_err(|e| Error::Config(e.to_string()))?;
        Ok(Self::wrap(conn.into()))
    }

    /// A client session that verifies the server's certificate for `server_name`.
    pub fn client(config: Arc<ClientConfig>, server_name: &str) -> Result<Self, Error> {
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|_| Error::Config(format!("invalid server name {server_name:?}")))?;
        let conn = ClientConnection::new(config, name).map_err(|e| Error::Config(e.to_string()))?;
        Ok(Self::wrap(conn.into()))
    }

    fn wrap(mut conn: Connection) -> Self {
        // A write is encrypted whole and drained by the caller at once: what is buffered is
        // bounded by what the caller writes, not by a limit that would split the write.
        conn.set_buffer_limit(None);
        Self {
            conn,
            inbox: Vec::new(),
            transport_eof: false,
            received: false,
            plain_http: None,
        }
    }

    /// Takes ciphertext from the transport; an empty slice means the transport ended. On an
    /// error, an alert for the peer may wait in [`Session::outgoing`].
    pub fn receive(&mut self, ciphertext: &[u8]) -> Result<(), Error> {
        if ciphertext.is_empty() {
            self.transport_eof = true;
            // Tells rustls the peer is gone; it then reports an unclean end to readers.
            let _ = self.conn.read_tls(&mut &[][..]);
            if self.conn.is_handshaking() {
                return Err(Error::Handshake(
                    "the peer closed the connection during the handshake".into(),
                ));
            }
            return Ok(());
        }
        let first = !std::mem::replace(&mut self.received, true);
        if first && matches!(self.conn, Connection::Server(_)) && looks_like_http(ciphertext) {
            self.plain_http = Some(PLAIN_HTTP_ANSWER);
            return Err(Error::Handshake(
                "a plain HTTP request came to the HTTPS port".into(),
            ));
        }
        self.inbox.extend_from_slice(ciphertext);
        self.pump()
    }

    /// Hands rustls as much of the inbox as it takes, processing each record.
    fn pump(&mut self) -> Result<(), Error> {
        let mut taken = 0;
        let result = loop {
            if taken == self.inbox.len() {
                break Ok(());
            }
            match self.conn.read_tls(&mut &self.inbox[taken..]) {
                Ok(0) => break Ok(()),
                Ok(n) => taken += n,
                // Its plaintext buffer is full: the rest waits for a reader.
                Err(_) => break Ok(()),
            }
            if let Err(e) = self.conn.process_new_packets() {
                break Err(self.error(e));
            }
        };
        self.inbox.drain(..taken);
        if matches!(result, Err(Error::UnknownServerName(_))) {
            // rustls queued access_denied, the only thing it sent: alert 112 goes instead.
            let mut dropped = Vec::new();
            while self.conn.wants_write() && self.conn.write_tls(&mut dropped).is_ok() {}
            self.plain_http = Some(UNRECOGNIZED_NAME);
        }
        result
    }

    fn error(&self, error: rustls::Error) -> Error {
        let server_name = match &self.conn {
            Connection::Server(conn) => conn.server_name().map(str::to_string),
            Connection::Client(_) => None,
        };
        match error {
            rustls::Error::General(message) if message.contains("no server certificate") => {
                Error::UnknownServerName(server_name)
            }
            e if self.conn.is_handshaking() => Error::Handshake(e.to_string()),
            e => Error::Protocol(e.to_string()),
        }
    }

    /// Copies decrypted bytes into `out`.
    pub fn read(&mut self, out: &mut [u8]) -> Result<Read, Error> {
        if !self.inbox.is_empty() {
            self.pump()?;
        }
        match self.conn.reader().read(out) {
            Ok(0) => Ok(Read::Eof),
            Ok(n) => Ok(Read::Data(n)),
            Err(e) if e.kind() == ErrorKind::WouldBlock && !self.transport_eof => {
                Ok(Read::WouldBlock)
            }
            // An end with no close_notify: most servers take it as the end of the stream.
            Err(_) => Ok(Read::Eof),
        }
    }

    /// Encrypts `plaintext` for sending (buffered until the handshake is done).
    pub fn write(&mut self, plaintext: &[u8]) -> Result<(), Error> {
        self.conn
            .writer()
            .write_all(plaintext)
            .map_err(|e| Error::Protocol(e.to_string()))
    }

    /// Appends the ciphertext waiting to be sent to `out` (after a plain HTTP request, the
    /// plain HTTP answer).
    pub fn outgoing(&mut self, out: &mut Vec<u8>) {
        if let Some(answer) = self.plain_http.take() {
            out.extend_from_slice(answer);
            return;
        }
        while self.conn.wants_write() {
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }

    /// Whether the session needs ciphertext from the peer to make progress.
    pub fn wants_read(&self) -> bool {
        !self.transport_eof && self.conn.wants_read()
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The protocol ALPN chose (`h2`, `http/1.1`, `acme-tls/1`), once the handshake is done.
    pub fn alpn_protocol(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The host name the client asked for (server side).
    pub fn server_name(&self) -> Option<&str> {
        match &self.conn {
            Connection::Server(conn) => conn.server_name(),
            Connection::Client(_) => None,
        }
    }

    /// Whether the handshake resumed an earlier session (no key exchange, no signature).
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// The negotiated protocol version, e.g. "TLSv1_3".
    pub fn protocol_version(&self) -> Option<String> {
        self.conn.protocol_version().map(|v| format!("{v:?}"))
    }

    /// Queues close_notify: the peer learns the stream ended here, not by a cut.
    pub fn close(&mut self) {
        self.conn.send_close_notify();
    }
}
