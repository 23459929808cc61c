//! The message head: start line and header fields, parsed incrementally.
//!
//! [`HeadParser::parse`] is given the whole buffered message so far, from its first byte. It
//! validates each complete line once and remembers where it stopped, so a head that arrives a
//! byte at a time costs linear time; a partial line is checked against the limits at once, so
//! an endless line is refused without waiting for its end. The parsed head holds [`Span`]s
//! into that buffer: nothing is copied or allocated (the field list keeps its capacity from one
//! message to the next).

use memchr::memchr;

use crate::names::{self, known};
use crate::scan::{eq_ignore_case, find_name_end, find_special, is_ows, is_tchar};
use crate::{Error, Limit, Limits, Mode};

/// Empty lines accepted before a start line (RFC 9112 2.2 asks for at least one).
const MAX_LEADING_EMPTY_LINES: u32 = 8;
/// Whitespace allowed around a field value on top of the value limit.
const OWS_SLACK: usize = 256;

/// A byte range of the buffer given to [`HeadParser::parse`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    fn new(start: usize, end: usize) -> Self {
        // Offsets fit in u32: a head is bounded by the limits, far below 4 GiB.
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The bytes this span covers in `buf`, the buffer the head was parsed from.
    #[inline]
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }

    #[inline]
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// The protocol version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
    /// `HTTP/1` with no minor version, treated as HTTP/1.0.
    Http1,
}

impl Version {
    /// Lower-cased, as H1P reports it.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "http/1.0",
            Version::Http11 => "http/1.1",
            Version::Http1 => "http/1",
        }
    }
}

/// A header field: name and value (without surrounding whitespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: Span,
    pub value: Span,
    /// The name's position in [`names::KNOWN`], when it is one of those.
    pub known: Option<u8>,
}

/// How the body of a message is framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// No body (or an empty one).
    None,
    Length(u64),
    Chunked,
    /// A response body that ends when the connection closes.
    UntilClose,
    /// The head is well-formed but its body cannot be read safely: reading it is this error,
    /// and the connection must be closed after the message.
    Invalid(Error),
}

/// A parsed message head.
#[derive(Debug, Clone)]
pub struct Head {
    /// Requests: the method, as sent (H1P upper-cases it).
    pub method: Span,
    /// Requests: the request target.
    pub target: Span,
    pub version: Version,
    /// Responses: the status code.
    pub status: u16,
    /// Responses: the status message (reason phrase).
    pub reason: Span,
    pub fields: Vec<Field>,
    pub body: Body,
    /// Whether the connection may carry another message after this one.
    pub keep_alive: bool,
    /// Whether the message has an Upgrade field (h2c, WebSocket).
    pub upgrade: bool,
    /// Bytes of the head, from the start of the buffer to the end of the empty line.
    pub len: usize,
}

impl Head {
    fn new() -> Self {
        Head {
            method: Span::default(),
            target: Span::default(),
            version: Version::Http11,
            status: 0,
            reason: Span::default(),
            fields: Vec::with_capacity(16),
            body: Body::None,
            keep_alive: true,
            upgrade: false,
            len: 0,
        }
    }
}

/// What the fields say about framing, gathered while they are parsed.
#[derive(Default)]
struct Framing {
    content_length: Option<u64>,
    transfer_encoding: bool,
    chunked: u32,
    last_is_chunked: bool,
    other_coding: bool,
    close: bool,
    keep_alive: bool,
    upgrade: bool,
}

/// Parses message heads; one per connection, reused from message to message.
pub struct HeadParser {
    mode: Mode,
    limits: Limits,
    /// Start of the next line to parse.
    pos: usize,
    /// Bytes after `pos` already searched for a line feed.
    scanned: usize,
    started: bool,
    empty_lines: u32,
    done: bool,
    framing: Framing,
    head: Head,
}

impl HeadParser {
    pub fn new(mode: Mode, limits: Limits) -> Self {
        HeadParser {
            mode,
            limits,
            pos: 0,
            scanned: 0,
            started: false,
            empty_lines: 0,
            done: false,
            framing: Framing::default(),
            head: Head::new(),
        }
    }

    /// The last head parsed (complete only after `parse` returned it).
    #[inline]
    pub fn head(&self) -> &Head {
        &self.head
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    #[inline]
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Gets ready for the next message (whose bytes start a new buffer).
    pub fn reset(&mut self) {
        self.pos = 0;
        self.scanned = 0;
        self.started = false;
        self.empty_lines = 0;
        self.done = false;
        self.framing = Framing::default();
        self.head.fields.clear();
        self.head.status = 0;
        self.head.len = 0;
    }

    /// Frees the memory kept for the next head's fields (a connection that will wait long
    /// for its next message); the next parse allocates it again.
    pub fn release_memory(&mut self) {
        self.head.fields = Vec::new();
    }

    /// Whether some of a head has been seen (beyond leading empty lines).
    pub fn in_progress(&self) -> bool {
        self.started || self.scanned > 0
    }

    /// Parses as much of `buf` (the message so far, from its first byte; it may only grow
    /// between calls) as is complete. `Ok(None)`: more bytes are needed.
    pub fn parse(&mut self, buf: &[u8]) -> Result<Option<&Head>, Error> {
        if self.done {
            return Ok(Some(&self.head));
        }
        loop {
            if self.started {
                match &buf[self.pos..] {
                    [b'\n', ..] => self.pos += 1,
                    [b'\r', b'\n', ..] => self.pos += 2,
                    [] | [b'\r'] => return self.more_needed(buf),
                    _ => match self.field_line(buf)? {
                        Some(next) => {
                            self.pos = next;
                            continue;
                        }
                        None => return self.more_needed(buf),
                    },
                }
                if self.pos > self.limits.head {
                    return Err(too_large(Limit::Head, self.limits.head));
                }
                self.finish()?;
                self.head.len = self.pos;
                self.done = true;
                return Ok(Some(&self.head));
            }
            let rest = &buf[self.pos..];
            let Some(found) = memchr(b'\n', &rest[self.scanned..]) else {
                self.scanned = rest.len();
                self.check_partial(rest)?;
                return self.more_needed(buf);
            };
            let nl = self.scanned + found;
            self.scanned = 0;
            let start = self.pos;
            self.pos += nl + 1;
            let line = match rest[..nl].split_last() {
                Some((b'\r', line)) => line,
                _ => &rest[..nl],
            };
            if line.is_empty() {
                self.empty_lines += 1;
                if self.empty_lines > MAX_LEADING_EMPTY_LINES {
                    return Err(self.start_line_error());
                }
                continue;
            }
            let parsed = match self.mode {
                Mode::Server => self.request_line(line, start, true),
                Mode::Client => self.status_line(line, start),
            };
            parsed.map_err(|e| bare_cr_first(e, line))?;
            self.started = true;
        }
    }

    /// `Ok(None)` while the head so far is within its limit.
    fn more_needed(&self, buf: &[u8]) -> Result<Option<&Head>, Error> {
        if buf.len() > self.limits.head {
            return Err(too_large(Limit::Head, self.limits.head));
        }
        Ok(None)
    }

    fn start_line_error(&self) -> Error {
        match self.mode {
            Mode::Server => Error::InvalidMethod,
            Mode::Client => Error::InvalidProtocol,
        }
    }

    /// Refuses a partial line that is already too long.
    fn check_partial(&mut self, line: &[u8]) -> Result<(), Error> {
        // A CR at the end may be the first half of a CRLF.
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match self.mode {
            Mode::Server => self.request_line(line, self.pos, false),
            // "HTTP/1.1 200 " and the message.
            Mode::Client if line.len() > self.limits.status_message.saturating_add(32) => {
                Err(too_large(Limit::StatusMessage, self.limits.status_message))
            }
            Mode::Client => Ok(()),
        }
    }

    /// `method SP+ target SP+ protocol`; with `complete` false, checks a partial line only
    /// for what it can already tell (bad bytes, limits).
    fn request_line(&mut self, line: &[u8], offset: usize, complete: bool) -> Result<(), Error> {
        let l = &self.limits;
        let mut i = 0;
        while i < line.len() && line[i] != b' ' {
            if !is_tchar(line[i]) {
                return Err(Error::InvalidMethod);
            }
            i += 1;
            if i > l.method {
                return Err(too_large(Limit::Method, l.method));
            }
        }
        if i == line.len() {
            return if complete {
                Err(Error::InvalidMethod)
            } else {
                Ok(())
            };
        }
        if i == 0 {
            return Err(Error::InvalidMethod);
        }
        let method = Span::new(offset, offset + i);
        while i < line.len() && line[i] == b' ' {
            i += 1;
        }
        let target_start = i;
        let target_end = find_special(line, i, 0x21).unwrap_or(line.len());
        if target_end - target_start > l.target {
            return Err(too_large(Limit::Target, l.target));
        }
        if target_end == line.len() {
            return match (complete, target_start == target_end) {
                (false, _) => Ok(()),
                (true, true) => Err(Error::InvalidTarget),
                (true, false) => Err(Error::MissingProtocol),
            };
        }
        if line[target_end] != b' ' {
            return Err(if line[target_end] == b'\r' {
                Error::BareCr
            } else {
                Error::InvalidTarget
            });
        }
        if target_start == target_end {
            return Err(Error::InvalidTarget);
        }
        i = target_end;
        while i < line.len() && line[i] == b' ' {
            i += 1;
        }
        if !complete {
            return Ok(());
        }
        if i == line.len() {
            return Err(Error::MissingProtocol);
        }
        self.head.version = version(&line[i..])?;
        self.head.method = method;
        self.head.target = Span::new(offset + target_start, offset + target_end);
        Ok(())
    }

    /// `protocol SP+ 3DIGIT [SP reason]`.
    fn status_line(&mut self, line: &[u8], offset: usize) -> Result<(), Error> {
        let sp = memchr(b' ', line).ok_or(Error::InvalidStatus)?;
        self.head.version = version(&line[..sp])?;
        let mut i = sp;
        while i < line.len() && line[i] == b' ' {
            i += 1;
        }
        let digits = &line[i..line.len().min(i + 3)];
        if digits.len() != 3 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(Error::InvalidStatus);
        }
        self.head.status = digits.iter().fold(0, |n, d| n * 10 + u16::from(d - b'0'));
        i += 3;
        let reason_start = match line.get(i) {
            None => i,
            Some(b' ') => i + 1,
            Some(_) => return Err(Error::InvalidStatus),
        };
        let reason = &line[reason_start.min(line.len())..];
        if reason.len() > self.limits.status_message {
            return Err(too_large(Limit::StatusMessage, self.limits.status_message));
        }
        check_text(reason, Error::InvalidStatusMessage)?;
        let start = offset + reason_start.min(line.len());
        self.head.reason = Span::new(start, start + reason.len());
        Ok(())
    }

    /// Parses the field line at `self.pos`, in one pass that also finds its end; returns
    /// where the next line starts, or `None` if the line is not complete yet.
    fn field_line(&mut self, buf: &[u8]) -> Result<Option<usize>, Error> {
        let offset = self.pos;
        let line = &buf[offset..];
        let limits = &self.limits;
        let Some((name_len, known)) = field_name(line, limits)? else {
            return Ok(None);
        };
        let mut i = name_len + 1;
        while i < line.len() && is_ows(line[i]) {
            i += 1;
        }
        let value_start = i;
        let (mut value_end, next) = loop {
            let Some(p) = find_special(line, i, 0x20) else {
                if line.len() - value_start > limits.header_value.saturating_add(OWS_SLACK) {
                    return Err(too_large(Limit::HeaderValue, limits.header_value));
                }
                return Ok(None);
            };
            match (line[p], line.get(p + 1)) {
                (b'\t', _) => i = p + 1,
                (b'\n', _) => break (p, p + 1),
                (b'\r', Some(b'\n')) => break (p, p + 2),
                (b'\r', None) => return Ok(None),
                (b'\r', _) => return Err(Error::BareCr),
                _ => return Err(Error::InvalidHeaderValue),
            }
        };
        while value_end > value_start && is_ows(line[value_end - 1]) {
            value_end -= 1;
        }
        if value_end - value_start > limits.header_value {
            return Err(too_large(Limit::HeaderValue, limits.header_value));
        }
        if self.head.fields.len() == limits.headers {
            return Err(too_large(Limit::HeaderCount, limits.headers));
        }
        self.head.fields.push(Field {
            name: Span::new(offset, offset + name_len),
            value: Span::new(offset + value_start, offset + value_end),
            known,
        });
        if let Some(known) = known {
            self.framing.note(known, &line[value_start..value_end])?;
        }
        Ok(Some(offset + next))
    }

    fn finish(&mut self) -> Result<(), Error> {
        let f = &self.framing;
        let head = &mut self.head;
        let http11 = head.version == Version::Http11;
        head.body = match self.mode {
            Mode::Server if f.transfer_encoding => {
                if !http11 {
                    return Err(Error::TransferEncodingInHttp10);
                }
                if f.content_length.is_some() {
                    return Err(Error::ContentLengthWithTransferEncoding);
                }
                if f.chunked == 1 && f.last_is_chunked && !f.other_coding {
                    Body::Chunked
                } else {
                    Body::Invalid(Error::UnsupportedTransferEncoding)
                }
            }
            Mode::Server => match f.content_length {
                None | Some(0) => Body::None,
                Some(n) => match self.limits.max_body {
                    Some(max) if n > max => Body::Invalid(too_large(Limit::Body, max as usize)),
                    _ => Body::Length(n),
                },
            },
            Mode::Client if matches!(head.status, 100..=199 | 204 | 304) => Body::None,
            Mode::Client if f.transfer_encoding && f.last_is_chunked => Body::Chunked,
            Mode::Client if f.transfer_encoding => Body::UntilClose,
            Mode::Client => match f.content_length {
                None => Body::UntilClose,
                Some(0) => Body::None,
                Some(n) => Body::Length(n),
            },
        };
        let persistent = if http11 {
            !f.close
        } else {
            f.keep_alive && !f.close
        };
        let conflicting = f.transfer_encoding && f.content_length.is_some();
        head.upgrade = f.upgrade;
        head.keep_alive =
            persistent && !conflicting && !matches!(head.body, Body::Invalid(_) | Body::UntilClose);
        Ok(())
    }
}

impl Framing {
    /// Notes a field whose name is known (those that frame a message all are).
    #[inline]
    fn note(&mut self, known: u8, value: &[u8]) -> Result<(), Error> {
        match known {
            names::CONTENT_LENGTH => {
                if self.content_length.is_some() {
                    return Err(Error::RepeatedContentLength);
                }
                self.content_length = Some(content_length(value)?);
            }
            names::TRANSFER_ENCODING => {
                self.transfer_encoding = true;
                for coding in list(value) {
                    let chunked = eq_ignore_case(coding, b"chunked");
                    self.chunked += u32::from(chunked);
                    self.other_coding |= !chunked;
                    self.last_is_chunked = chunked;
                }
            }
            names::CONNECTION => {
                for option in list(value) {
                    self.close |= eq_ignore_case(option, b"close");
                    self.keep_alive |= eq_ignore_case(option, b"keep-alive");
                }
            }
            names::UPGRADE => self.upgrade = true,
            _ => {}
        }
        Ok(())
    }
}

/// The field name at the start of `line` (followed by its colon), with its position in
/// [`names::KNOWN`] if it is known; `None` if `line` ends first.
#[inline]
fn field_name(line: &[u8], limits: &Limits) -> Result<Option<(usize, Option<u8>)>, Error> {
    // Most names are known ones: found by where they end and a compare, which also validates
    // them. Anything else takes the byte-by-byte way, which tells what is wrong.
    if let Some(end) = find_name_end(line) {
        if line[end] == b':' && end <= limits.header_name {
            if let Some(i) = known(&line[..end]) {
                return Ok(Some((end, Some(i))));
            }
        }
    }
    // (A valid name found here is no known one: the same colon ended it above, and the
    // lookup said no.)
    Ok(checked_field_name(line, limits)?.map(|len| (len, None)))
}

/// `field_name` byte by byte.
fn checked_field_name(line: &[u8], limits: &Limits) -> Result<Option<usize>, Error> {
    if is_ows(line[0]) {
        return Err(Error::ObsFold);
    }
    let mut i = 0;
    while i < line.len() && is_tchar(line[i]) {
        i += 1;
    }
    if i > limits.header_name {
        return Err(too_large(Limit::HeaderName, limits.header_name));
    }
    match line.get(i) {
        Some(b':') if i > 0 => Ok(Some(i)),
        None => Ok(None),
        Some(b' ' | b'\t') if i > 0 => Err(Error::WhitespaceBeforeColon),
        Some(b'\r') if i + 1 < line.len() || i == 0 => Err(Error::BareCr),
        Some(b'\r') => Ok(None),
        _ => Err(Error::InvalidHeaderName),
    }
}

/// Validates a complete field line (no line ending); returns the name's length and the
/// value's range (trimmed).
pub(crate) fn field(line: &[u8], limits: &Limits) -> Result<(usize, usize, usize), Error> {
    let name_len = match checked_field_name(line, limits)? {
        Some(n) => n,
        None if line.last() == Some(&b'\r') => return Err(Error::BareCr),
        None => return Err(Error::InvalidHeaderName),
    };
    let mut i = name_len + 1;
    while i < line.len() && is_ows(line[i]) {
        i += 1;
    }
    let mut end = line.len();
    while end > i && is_ows(line[end - 1]) {
        end -= 1;
    }
    if end - i > limits.header_value {
        return Err(too_large(Limit::HeaderValue, limits.header_value));
    }
    check_text(&line[i..end], Error::InvalidHeaderValue)?;
    Ok((name_len, i, end))
}

/// Field values and reason phrases: HTAB, SP, visible ASCII and obs-text; a CR is a bare CR.
fn check_text(bytes: &[u8], invalid: Error) -> Result<(), Error> {
    let mut from = 0;
    while let Some(p) = find_special(bytes, from, 0x20) {
        match bytes[p] {
            b'\t' => from = p + 1,
            b'\r' => return Err(Error::BareCr),
            _ => return Err(invalid),
        }
    }
    Ok(())
}

/// `HTTP/1.1`, `HTTP/1.0` or `HTTP/1`, in any case.
fn version(bytes: &[u8]) -> Result<Version, Error> {
    if bytes.len() < 6 || !eq_ignore_case(&bytes[..6], b"http/1") {
        return Err(Error::InvalidProtocol);
    }
    match &bytes[6..] {
        b"" => Ok(Version::Http1),
        b".1" => Ok(Version::Http11),
        b".0" => Ok(Version::Http10),
        _ => Err(Error::InvalidProtocol),
    }
}

/// `1*DIGIT` that fits in 64 bits.
fn content_length(value: &[u8]) -> Result<u64, Error> {
    if value.is_empty() {
        return Err(Error::InvalidContentLength);
    }
    value.iter().try_fold(0u64, |n, &d| {
        if !d.is_ascii_digit() {
            return Err(Error::InvalidContentLength);
        }
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(Error::InvalidContentLength)
    })
}

/// The elements of a comma-separated list, trimmed, empty ones skipped.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').filter_map(|element| {
        let start = element.iter().position(|&b| !is_ows(b))?;
        let end = element.iter().rposition(|&b| !is_ows(b))? + 1;
        Some(&element[start..end])
    })
}

fn too_large(limit: Limit, max: usize) -> Error {
    Error::TooLarge {
        limit,
        max: max as u64,
    }
}

/// A start line with a CR in it is reported as a bare CR, whatever else that broke.
fn bare_cr_first(error: Error, line: &[u8]) -> Error {
    match error {
        Error::TooLarge { .. } => error,
        _ if memchr(b'\r', line).is_some() => Error::BareCr,
        _ => error,
    }
}
