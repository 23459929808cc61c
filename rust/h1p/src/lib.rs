//! HTTP/1 parsing without I/O: requests and responses, chunked bodies, hard limits.
//!
//! - [`HeadParser`] parses a message head incrementally into [`Span`]s of the caller's buffer.
//! - [`ChunkedDecoder`] decodes a chunked body in place.
//! - [`pull::Parser`] puts the two together over a [`pull::Source`] that the caller implements
//!   (a socket read, a Ruby callback, a C callback): the blocking API H1P offers.
//!
//! Strict where request smuggling lives (RFC 9112 and the published attacks): Content-Length
//! with Transfer-Encoding, a repeated or malformed Content-Length, a Transfer-Encoding other
//! than a single final `chunked`, lengths and chunk sizes that overflow, NUL and other control
//! bytes, a bare CR, whitespace before a field's colon and obsolete line folding are all
//! errors, never silently repaired. Lenient where H1P is: runs of spaces in the request line,
//! any case of `HTTP`, `HTTP/1` with no minor version, raw UTF-8 in the target, LF alone as a
//! line ending in the head, and a few empty lines before a request.

mod chunked;
mod error;
mod head;
pub mod names;
pub mod pull;
pub mod response;
mod scan;
pub mod target;

pub use chunked::{ChunkedDecoder, Step, MAX_CHUNK_LINE};
pub use error::{Error, Limit};
pub use head::{Body, Field, Head, HeadParser, Span, Version};
pub use scan::eq_ignore_case;

/// Which side of the connection is parsed: requests (a server) or responses (a client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Server,
    Client,
}

/// Hard limits; exceeding one is an [`Error::TooLarge`] that names it. The defaults are H1P's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub method: usize,
    pub target: usize,
    pub status_message: usize,
    pub header_name: usize,
    pub header_value: usize,
    /// Header fields per message (trailer fields are counted separately, with the same limit).
    pub headers: usize,
    /// Largest body accepted, if any limit.
    pub max_body: Option<u64>,
    /// The whole head: start line, fields and line ends (trailers are counted apart, with the
    /// same limit).
    pub head: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            method: 16,
            target: 4096,
            status_message: 256,
            header_name: 128,
            header_value: 2048,
            headers: 256,
            max_body: None,
            head: 64 * 1024,
        }
    }
}
