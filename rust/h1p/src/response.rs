//! Response heads and the framing of their bodies: the one place where a server decides
//! between Content-Length, chunked and no body at all (RFC 9112 6.1-6.3, RFC 9110 6.4.1), and
//! whether the connection goes on after the response (RFC 9112 9.3, 9.6). Sans-IO: it checks
//! the fields an app gives and hands back bytes.
//!
//! ```
//! use h1p::response::{BodySize, Framing, Request, ResponseHead};
//!
//! let mut head = ResponseHead::new(200).unwrap();
//! head.field(b"Content-Type", b"text/plain").unwrap();
//! let request = Request { head: false, http10: false, reusable: true };
//! let done = head.finish(BodySize::Known(2), request).unwrap();
//! assert_eq!(done.framing, Framing::Length(2));
//! assert!(done.keep_alive);
//! assert_eq!(
//!     done.bytes,
//!     b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n"
//! );
//! ```

use crate::scan::{eq_ignore_case, is_tchar};
use crate::Error;

/// What a response needs to know of the request it answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request {
    /// A HEAD request: the head a GET would get, and no body.
    pub head: bool,
    /// An HTTP/1.0 client: no chunked coding, and a kept connection says `Connection:
    /// keep-alive`.
    pub http10: bool,
    /// Whether the connection may serve another request after this one, as far as the client
    /// (its version and Connection field) and the server (not stopping, not still reading the
    /// request's body) are concerned. The response may still end it.
    pub reusable: bool,
}

/// How much body the caller has for the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodySize {
    /// All of it is at hand (an Array of Strings): this many bytes.
    Known(u64),
    /// It comes as it is produced (a stream).
    Unknown,
}

/// How the bytes that follow the head are delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Nothing follows: 1xx, 204, 304, and every answer to HEAD.
    Empty,
    /// Exactly this many bytes follow (the caller's surplus is dropped, see [`BodyFramer`]).
    Length(u64),
    /// The body is sent chunked by [`BodyFramer`].
    Chunked,
    /// The app gave a Transfer-Encoding and frames the body itself (Rack::Chunked): its bytes
    /// are sent as they come.
    AsGiven,
    /// The body ends when the connection does (an HTTP/1.0 client and no known length).
    UntilClose,
}

/// A response head being built: the status line, then the fields, checked as they come.
#[derive(Debug)]
pub struct ResponseHead {
    fields: Fields,
    status: u16,
}

/// A finished head: its bytes, how the body follows it, and whether the connection goes on.
#[derive(Debug)]
pub struct Finished {
    pub bytes: Vec<u8>,
    pub framing: Framing,
    pub keep_alive: bool,
}

impl ResponseHead {
    /// A head with the status line for `status`: three digits, 100 to 999.
    pub fn new(status: u16) -> Result<Self, Error> {
        if !(100..=999).contains(&status) {
            return Err(Error::InvalidStatus);
        }
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(b"HTTP/1.1 ");
        push_decimal(&mut buf, status.into());
        buf.push(b' ');
        buf.extend_from_slice(reason(status).as_bytes());
        buf.extend_from_slice(b"\r\n");
        Ok(Self {
            fields: Fields::new(buf),
            status,
        })
    }

    /// Adds one field. The name must be a token (RFC 9110 5.1) and the value must hold no
    /// control character (CR, LF, NUL...): anything else could split the response or be
    /// refused by the client, so it is an error, never repaired.
    pub fn field(&mut self, name: &[u8], value: &[u8]) -> Result<(), Error> {
        self.fields.add(name, value)
    }

    /// Whether the fields given so far frame the body (Content-Length, Transfer-Encoding).
    pub fn is_framed(&self) -> bool {
        self.fields.length.is_some() || self.fields.encoding
    }

    /// The head as given, with nothing added: for a response whose bytes after the head are
    /// the app's (Rack's partial hijack).
    pub fn as_given(mut self) -> Vec<u8> {
        self.fields.buf.extend_from_slice(b"\r\n");
        self.fields.buf
    }

    /// Adds the framing fields the body needs unless the app gave them (Content-Length for a
    /// known size, else chunked, or nothing for HTTP/1.0, whose body then ends with the
    /// connection), the Connection field the outcome needs, and the blank line.
    ///
    /// Errors, all the app's: a 1xx status other than 101 with an Upgrade field as the final
    /// response; an invalid Content-Length, or one with a Transfer-Encoding; a known body
    /// shorter than its Content-Length (a longer one is cut to it, and the connection ends).
    pub fn finish(mut self, size: BodySize, request: Request) -> Result<Finished, Error> {
        let fields = &mut self.fields;
        if (100..200).contains(&self.status) && !(self.status == 101 && fields.upgrade) {
            return Err(Error::InformationalFinal);
        }
        if fields.length.is_some() && fields.encoding {
            return Err(Error::ContentLengthWithTransferEncoding);
        }
        if fields.repeated_length {
            return Err(Error::RepeatedContentLength);
        }
        let declared = match fields.length {
            Some(value) => Some(content_length(value, &fields.buf)?),
            None => None,
        };
        let mut framing = if is_bodiless(self.status) {
            Framing::Empty
        } else if fields.encoding {
            Framing::AsGiven
        } else if let Some(declared) = declared {
            if let BodySize::Known(size) = size {
                if size < declared && !request.head {
                    return Err(Error::ContentLengthMismatch {
                        declared,
                        actual: size,
                    });
                }
            }
            Framing::Length(declared)
        } else if let BodySize::Known(size) = size {
            fields.push(b"Content-Length", |buf| push_decimal(buf, size));
            Framing::Length(size)
        } else if request.http10 {
            Framing::UntilClose
        } else {
            fields.push(b"Transfer-Encoding", |buf| {
                buf.extend_from_slice(b"chunked")
            });
            Framing::Chunked
        };
        let surplus = matches!((size, declared), (BodySize::Known(s), Some(d)) if s > d);
        let keep_alive = self.status != 101
            && request.reusable
            && !fields.close
            && !surplus
            && framing != Framing::UntilClose
            && (framing != Framing::AsGiven || fields.ends_chunked);
        if self.status != 101 {
            if !keep_alive && !fields.close {
                fields.push(b"Connection", |buf| buf.extend_from_slice(b"close"));
            } else if keep_alive && request.http10 && !fields.connection {
                fields.push(b"Connection", |buf| buf.extend_from_slice(b"keep-alive"));
            }
        }
        if request.head {
            framing = Framing::Empty;
        }
        let mut bytes = std::mem::take(&mut fields.buf);
        bytes.extend_from_slice(b"\r\n");
        Ok(Finished {
            bytes,
            framing,
            keep_alive,
        })
    }
}

/// The end of a chunked body: the last chunk, then trailer fields (RFC 9112 7.1.2).
#[derive(Debug)]
pub struct Trailers {
    fields: Fields,
}

impl Default for Trailers {
    fn default() -> Self {
        Self::new()
    }
}

impl Trailers {
    pub fn new() -> Self {
        Self {
            fields: Fields::new(b"0\r\n".to_vec()),
        }
    }

    /// Adds a trailer field, checked as a head's are; a field that frames the message
    /// (Content-Length, Transfer-Encoding) is refused.
    pub fn field(&mut self, name: &[u8], value: &[u8]) -> Result<(), Error> {
        if eq_ignore_case(name, b"content-length") || eq_ignore_case(name, b"transfer-encoding") {
            return Err(Error::FramingTrailer);
        }
        self.fields.add(name, value)
    }

    /// The last chunk, the fields and the blank line.
    pub fn finish(mut self) -> Vec<u8> {
        self.fields.buf.extend_from_slice(b"\r\n");
        self.fields.buf
    }
}

/// Frames a body's pieces as [`Framing`] says, and tells when the body broke its framing.
#[derive(Debug, Clone)]
pub struct BodyFramer {
    framing: Framing,
    /// Bytes still due under `Framing::Length`.
    left: u64,
    /// The app gave more than its Content-Length: the rest was dropped.
    surplus: bool,
}

/// How one piece of a body goes on the wire: `prefix`, the first `take` bytes of the piece,
/// then `suffix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    prefix: [u8; 18],
    prefix_len: u8,
    pub take: usize,
    pub suffix: &'static [u8],
}

impl Piece {
    pub fn prefix(&self) -> &[u8] {
        &self.prefix[..self.prefix_len as usize]
    }
}

impl BodyFramer {
    pub fn new(framing: Framing) -> Self {
        let left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        Self {
            framing,
            left,
            surplus: false,
        }
    }

    /// How a piece of `len` bytes is sent. An empty piece sends nothing (a chunk of size 0
    /// would end the body).
    pub fn piece(&mut self, len: usize) -> Piece {
        let mut piece = Piece {
            prefix: [0; 18],
            prefix_len: 0,
            take: 0,
            suffix: b"",
        };
        match self.framing {
            Framing::Empty => {}
            Framing::Length(_) => {
                piece.take = usize::try_from(self.left).map_or(len, |left| len.min(left));
                self.left -= piece.take as u64;
                self.surplus |= piece.take < len;
            }
            Framing::AsGiven | Framing::UntilClose => piece.take = len,
            Framing::Chunked if len == 0 => {}
            Framing::Chunked => {
                let mut size = Vec::with_capacity(18);
                push_hex(&mut size, len);
                size.extend_from_slice(b"\r\n");
                piece.prefix[..size.len()].copy_from_slice(&size);
                piece.prefix_len = size.len() as u8;
                piece.take = len;
                piece.suffix = b"\r\n";
            }
        }
        piece
    }

    /// The bytes that end the body (the last chunk, with `trailers` if any), or the error of a
    /// body that ended before its Content-Length: the connection must end, since the client
    /// waits for bytes that will never come.
    pub fn finish(&self, trailers: Option<Trailers>) -> Result<Vec<u8>, Error> {
        match self.framing {
            Framing::Chunked => Ok(trailers.unwrap_or_default().finish()),
            Framing::Length(declared) if self.left > 0 => Err(Error::ContentLengthMismatch {
                declared,
                actual: declared - self.left,
            }),
            _ => Ok(Vec::new()),
        }
    }

    /// Whether the body, as sent so far, keeps the connection usable: not when the app gave
    /// more than its Content-Length (what it meant is unknown), nor when its end is the
    /// connection's.
    pub fn keeps_connection(&self) -> bool {
        !self.surplus && self.framing != Framing::UntilClose
    }
}

/// The fields of a head or a trailer section, and what they say about framing.
#[derive(Debug)]
struct Fields {
    buf: Vec<u8>,
    /// Where the value of the (first) Content-Length field is in `buf`.
    length: Option<(usize, usize)>,
    /// Two Content-Length fields with different values.
    repeated_length: bool,
    encoding: bool,
    /// The last Transfer-Encoding's last coding is chunked.
    ends_chunked: bool,
    connection: bool,
    close: bool,
    upgrade: bool,
}

impl Fields {
    fn new(buf: Vec<u8>) -> Self {
        Self {
            buf,
            length: None,
            repeated_length: false,
            encoding: false,
            ends_chunked: false,
            connection: false,
            close: false,
            upgrade: false,
        }
    }

    fn add(&mut self, name: &[u8], value: &[u8]) -> Result<(), Error> {
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(Error::InvalidHeaderName);
        }
        if !is_field_value(value) {
            return Err(Error::InvalidHeaderValue);
        }
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(b": ");
        let start = self.buf.len();
        self.buf.extend_from_slice(value);
        let end = self.buf.len();
        self.buf.extend_from_slice(b"\r\n");
        match name.len() {
            7 if eq_ignore_case(name, b"upgrade") => self.upgrade = true,
            10 if eq_ignore_case(name, b"connection") => {
                self.connection = true;
                self.close |= list(value).any(|token| eq_ignore_case(token, b"close"));
            }
            14 if eq_ignore_case(name, b"content-length") => match self.length {
                Some((s, e)) => self.repeated_length |= self.buf[s..e] != self.buf[start..end],
                None => self.length = Some((start, end)),
            },
            17 if eq_ignore_case(name, b"transfer-encoding") => {
                self.encoding = true;
                self.ends_chunked = list(value)
                    .last()
                    .is_some_and(|coding| eq_ignore_case(coding, b"chunked"));
            }
            _ => {}
        }
        Ok(())
    }

    /// Appends a field of the server's own (a valid name, a value `write` makes valid).
    fn push(&mut self, name: &[u8], write: impl FnOnce(&mut Vec<u8>)) {
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(b": ");
        write(&mut self.buf);
        self.buf.extend_from_slice(b"\r\n");
    }
}

/// The Content-Length an app gave: digits only, at most 19 of them, and a repeated field only
/// with the same value.
fn content_length((start, end): (usize, usize), buf: &[u8]) -> Result<u64, Error> {
    let digits = buf[start..end].trim_ascii();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Error::InvalidContentLength);
    }
    Ok(digits
        .iter()
        .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')))
}

/// A field value a response may carry (RFC 9110 5.5): visible bytes, spaces, tabs and
/// obs-text; no control character (CR, LF and NUL end a line or a C string, and a client may
/// refuse the others, as H1P's parser does).
fn is_field_value(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

/// Whether a response with this status has no body (RFC 9110 6.4.1).
fn is_bodiless(status: u16) -> bool {
    matches!(status, 100..=199 | 204 | 304)
}

/// The elements of a comma-separated list, trimmed.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
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

fn push_hex(out: &mut Vec<u8>, n: usize) {
    let digits = (usize::BITS - n.leading_zeros()).div_ceil(4).max(1);
    for shift in (0..digits).rev() {
        out.push(b"0123456789abcdef"[(n >> (shift * 4)) & 0xf]);
    }
}

/// The reason phrase of a status (RFC 9110 15), empty for one it does not name.
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        423 => "Locked",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        511 => "Network Authentication Required",
        _ => "",
    }
}
