//! What can be wrong with a message. Every error says what was wrong; a limit error names the
//! limit and its value.

use std::fmt;

/// The limits of [`crate::Limits`], named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Method,
    Target,
    StatusMessage,
    HeaderName,
    HeaderValue,
    HeaderCount,
    Body,
    ChunkLine,
    /// The whole head: start line and fields.
    Head,
}

impl Limit {
    /// The limit's name, as a user configures it.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Method => "method length",
            Limit::Target => "target length",
            Limit::StatusMessage => "status message length",
            Limit::HeaderName => "header name length",
            Limit::HeaderValue => "header value length",
            Limit::HeaderCount => "header count",
            Limit::Body => "body size",
            Limit::ChunkLine => "chunk size line length",
            Limit::Head => "head size",
        }
    }
}

/// A malformed or refused message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A limit was exceeded.
    TooLarge {
        limit: Limit,
        max: u64,
    },
    InvalidMethod,
    InvalidTarget,
    MissingProtocol,
    InvalidProtocol,
    InvalidStatus,
    InvalidStatusMessage,
    InvalidHeaderName,
    InvalidHeaderValue,
    /// Whitespace between a field name and its colon (RFC 9112 5.1).
    WhitespaceBeforeColon,
    /// A line that starts with whitespace: obsolete line folding (RFC 9112 5.2).
    ObsFold,
    /// A CR not followed by LF.
    BareCr,
    InvalidContentLength,
    RepeatedContentLength,
    /// Both Content-Length and Transfer-Encoding (RFC 9112 6.1: a smuggling vector).
    ContentLengthWithTransferEncoding,
    TransferEncodingInHttp10,
    /// A request's Transfer-Encoding that is not exactly `chunked` once, last.
    UnsupportedTransferEncoding,
    InvalidChunkSize,
    ChunkSizeOverflow,
    InvalidChunkExtension,
    /// Chunk data not followed by CRLF.
    InvalidChunkEnd,
    /// The input ended inside the message head.
    IncompleteHead,
    /// The input ended inside the body; `missing` bytes were still expected when known.
    IncompleteBody {
        missing: Option<u64>,
    },
    /// A response (the app's) whose final status is 1xx, other than 101 with an Upgrade field.
    InformationalFinal,
    /// A response (the app's) whose body is shorter than its Content-Length.
    ContentLengthMismatch {
        declared: u64,
        actual: u64,
    },
    /// A trailer field that would frame the message (Content-Length, Transfer-Encoding).
    FramingTrailer,
    /// An HTTP/1.1 request without a Host field (RFC 9112 3.2).
    MissingHost,
    /// A request with more than one Host field.
    RepeatedHost,
    /// A Host field whose value is no authority (`host[:port]`).
    InvalidHost,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooLarge { limit, max } => {
                write!(f, "{} exceeds the limit of {max}", limit.name())
            }
            Error::InvalidMethod => f.write_str("invalid method"),
            Error::InvalidTarget => f.write_str("invalid request target"),
            Error::MissingProtocol => f.write_str("missing protocol in request line"),
            Error::InvalidProtocol => {
                f.write_str("invalid protocol (expected HTTP/1.0 or HTTP/1.1)")
            }
            Error::InvalidStatus => f.write_str("invalid status code (expected 3 digits)"),
            Error::InvalidStatusMessage => f.write_str("invalid status message"),
            Error::InvalidHeaderName => f.write_str("invalid header name"),
            Error::InvalidHeaderValue => f.write_str("invalid character in header value"),
            Error::WhitespaceBeforeColon => f.write_str("whitespace between header name and colon"),
            Error::ObsFold => {
                f.write_str("obsolete line folding (a header line starting with whitespace)")
            }
            Error::BareCr => f.write_str("CR not followed by LF"),
            Error::InvalidContentLength => f.write_str("invalid Content-Length"),
            Error::RepeatedContentLength => f.write_str("repeated Content-Length"),
            Error::ContentLengthWithTransferEncoding => {
                f.write_str("both Content-Length and Transfer-Encoding")
            }
            Error::TransferEncodingInHttp10 => {
                f.write_str("Transfer-Encoding in an HTTP/1.0 request")
            }
            Error::UnsupportedTransferEncoding => f.write_str(
                "unsupported Transfer-Encoding (only a single, final chunked is accepted)",
            ),
            Error::InvalidChunkSize => f.write_str("invalid chunk size"),
            Error::ChunkSizeOverflow => f.write_str("chunk size does not fit in 64 bits"),
            Error::InvalidChunkExtension => f.write_str("invalid chunk extension"),
            Error::InvalidChunkEnd => f.write_str("chunk data not followed by CRLF"),
            Error::IncompleteHead => f.write_str("connection closed inside the message head"),
            Error::IncompleteBody { missing: Some(n) } => {
                write!(f, "connection closed inside the body ({n} bytes missing)")
            }
            Error::IncompleteBody { missing: None } => {
                f.write_str("connection closed inside the body")
            }
            Error::InformationalFinal => {
                f.write_str("a 1xx status (other than 101 with Upgrade) as a final response")
            }
            Error::ContentLengthMismatch { declared, actual } => {
                write!(
                    f,
                    "Content-Length says {declared} bytes, the body has {actual}"
                )
            }
            Error::MissingHost => f.write_str("missing Host header (required in HTTP/1.1)"),
            Error::RepeatedHost => f.write_str("more than one Host header"),
            Error::InvalidHost => f.write_str("invalid Host header"),
            Error::FramingTrailer => f.write_str(
                "a trailer field cannot frame the message (Content-Length, Transfer-Encoding)",
            ),
        }
    }
}

impl std::error::Error for Error {}
