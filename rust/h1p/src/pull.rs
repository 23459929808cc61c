//! The blocking pull parser: reads from a [`Source`] as it needs bytes, one message after
//! another on the same connection (keep-alive and pipelining: bytes of the next message read
//! with this one stay buffered).

use crate::{Body, ChunkedDecoder, Error, Head, HeadParser, Limits, Mode, Span};

/// Bytes asked of the source per read.
pub const READ_SIZE: usize = 16 * 1024;
/// Consumed bytes kept at the front of the buffer before it is compacted.
const COMPACT_AFTER: usize = 64 * 1024;

/// Where the bytes come from.
pub trait Source {
    type Error;

    /// Appends at most `max` bytes to `buf`; returns how many, 0 at the end of the input.
    fn read(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<usize, Self::Error>;
}

/// A parse error, the source's own error, or a call out of order.
#[derive(Debug)]
pub enum PullError<E> {
    Parse(Error),
    Source(E),
    Misuse(&'static str),
}

impl<E> From<Error> for PullError<E> {
    fn from(error: Error) -> Self {
        PullError::Parse(error)
    }
}

enum State {
    /// No message yet.
    Idle,
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Invalid(Error),
    /// The current message's body has been read.
    Complete,
    /// An error ended parsing: the connection cannot be trusted any more.
    Failed(Error),
}

/// Parses messages from a [`Source`].
pub struct Parser<S> {
    source: S,
    head: HeadParser,
    buf: Vec<u8>,
    /// Start of the bytes not consumed yet (the current head while it is parsed).
    start: usize,
    /// Where the last parsed head begins in `buf`; valid until the next call.
    head_start: usize,
    state: State,
    eof: bool,
    /// The current message's trailer fields, once its chunked body has been read.
    trailers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A parsed head and the bytes its spans point into.
pub struct Message<'a> {
    pub head: &'a Head,
    pub bytes: &'a [u8],
}

impl<'a> Message<'a> {
    #[inline]
    pub fn get(&self, span: Span) -> &'a [u8] {
        span.of(self.bytes)
    }

    /// Every field as (name, value), in arrival order.
    #[inline]
    pub fn fields(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + '_ {
        self.head
            .fields
            .iter()
            .map(|f| (f.name.of(self.bytes), f.value.of(self.bytes)))
    }
}

impl<S: Source> Parser<S> {
    pub fn new(source: S, mode: Mode, limits: Limits) -> Self {
        Parser {
            source,
            head: HeadParser::new(mode, limits),
            // (A source's read reserves what it needs: a parser that never reads costs no
            // buffer, and one whose source hands over its own read buffer, no second one.)
            buf: Vec::new(),
            start: 0,
            head_start: 0,
            state: State::Idle,
            eof: false,
            trailers: Vec::new(),
        }
    }

    #[inline]
    pub fn mode(&self) -> Mode {
        self.head.mode()
    }

    /// Starts over on another source (a server's next connection) as a new parser with the
    /// same mode and limits would, keeping only the memory of its buffer (at most one read's
    /// worth: a long pipeline or body may have grown it); returns the old source.
    pub fn restart(&mut self, source: S) -> S {
        self.head.reset();
        self.buf.clear();
        self.buf.shrink_to(READ_SIZE);
        self.start = 0;
        self.head_start = 0;
        self.state = State::Idle;
        self.eof = false;
        self.trailers.clear();
        std::mem::replace(&mut self.source, source)
    }

    pub fn source(&self) -> &S {
        &self.source
    }

    pub fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// Parses the next message's head; `None` at a clean end of input between messages. The
    /// unread body of the previous message, if any, is skipped first.
    pub fn parse_headers(&mut self) -> Result<Option<Message<'_>>, PullError<S::Error>> {
        match &self.state {
            State::Failed(error) => return Err(PullError::Parse(error.clone())),
            State::Idle | State::Complete => {}
            _ => while self.read_body_chunk(false)?.is_some() {},
        }
        self.head.reset();
        self.trailers.clear();
        loop {
            if self.start == self.buf.len() && !self.eof {
                // Nothing buffered: nothing to parse before a read.
                self.fill()?;
                continue;
            }
            match self.head.parse(&self.buf[self.start..]) {
                Ok(Some(head)) => {
                    let (len, body) = (head.len, head.body.clone());
                    self.head_start = self.start;
                    self.start += len;
                    self.state = match body {
                        Body::None => State::Complete,
                        Body::Length(n) => State::Length(n),
                        Body::Chunked => State::Chunked(ChunkedDecoder::new(*self.head.limits())),
                        Body::UntilClose => State::UntilClose,
                        Body::Invalid(error) => State::Invalid(error),
                    };
                    return Ok(Some(self.message()));
                }
                Ok(None) if self.eof => {
                    if self.head.in_progress() {
                        return Err(self.fail(Error::IncompleteHead));
                    }
                    self.state = State::Idle;
                    return Ok(None);
                }
                Ok(None) => self.fill()?,
                Err(error) => return Err(self.fail(error)),
            }
        }
    }

    fn message(&self) -> Message<'_> {
        Message {
            head: self.head_ref(),
            bytes: &self.buf[self.head_start..],
        }
    }

    fn head_ref(&self) -> &Head {
        self.head.head()
    }

    /// The next piece of the current message's body; `None` at its end. With
    /// `buffered_only`, only bytes already read are returned (`None` when there are none).
    pub fn read_body_chunk(
        &mut self,
        buffered_only: bool,
    ) -> Result<Option<&[u8]>, PullError<S::Error>> {
        loop {
            let available = self.buf.len() - self.start;
            match &mut self.state {
                State::Idle => {
                    return Err(PullError::Misuse("no message: call parse_headers first"))
                }
                State::Failed(error) => return Err(PullError::Parse(error.clone())),
                State::Invalid(error) => {
                    let error = error.clone();
                    return Err(self.fail(error));
                }
                State::Complete => return Ok(None),
                State::Length(remaining) if available > 0 => {
                    let n = available.min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        self.state = State::Complete;
                    }
                    return Ok(Some(self.take(n)));
                }
                State::Length(remaining) => {
                    let missing = *remaining;
                    if buffered_only {
                        return Ok(None);
                    }
                    if self.eof {
                        return Err(self.fail(Error::IncompleteBody {
                            missing: Some(missing),
                        }));
                    }
                }
                State::Chunked(decoder) => {
                    let step = match decoder.decode(&self.buf[self.start..]) {
                        Ok(step) => step,
                        Err(error) => return Err(self.fail(error)),
                    };
                    if step.done {
                        self.start += step.consumed;
                        self.trailers = decoder.take_trailers();
                        self.state = State::Complete;
                        return Ok(None);
                    }
                    if let Some(range) = step.data {
                        let from = self.start + range.start;
                        self.start += step.consumed;
                        return Ok(Some(&self.buf[from..from + range.len()]));
                    }
                    if step.consumed > 0 {
                        self.start += step.consumed;
                        continue;
                    }
                    if buffered_only {
                        return Ok(None);
                    }
                    if self.eof {
                        return Err(self.fail(Error::IncompleteBody { missing: None }));
                    }
                }
                State::UntilClose if available > 0 => return Ok(Some(self.take(available))),
                State::UntilClose if self.eof => {
                    self.state = State::Complete;
                    return Ok(None);
                }
                State::UntilClose if buffered_only => return Ok(None),
                State::UntilClose => {}
            }
            self.fill()?;
        }
    }

    /// For a Content-Length body not read yet: the body bytes already buffered (at most the
    /// body's length) and how many more the caller must move from the source itself (with
    /// splice(2), say). The body then counts as read. `None` for any other framing or once
    /// some of the body was read: read it with [`Parser::read_body_chunk`].
    pub fn take_body_for_splice(&mut self) -> Option<(&[u8], u64)> {
        let State::Length(remaining) = self.state else {
            return None;
        };
        let buffered =
            (self.buf.len() - self.start).min(usize::try_from(remaining).unwrap_or(usize::MAX));
        self.state = State::Complete;
        Some((self.take(buffered), remaining - buffered as u64))
    }

    /// Ends parsing with `error` (a caller that moved body bytes itself and came short).
    pub fn fail_with(&mut self, error: Error) {
        self.state = State::Failed(error);
    }

    /// The whole body of the current message; `None` when it has none (or an empty one).
    pub fn read_body(&mut self) -> Result<Option<Vec<u8>>, PullError<S::Error>> {
        let mut body: Option<Vec<u8>> = None;
        while let Some(chunk) = self.read_body_chunk(false)? {
            body.get_or_insert_with(Vec::new).extend_from_slice(chunk);
        }
        Ok(body.filter(|b| !b.is_empty()))
    }

    /// The current message's trailer fields (a chunked body's), once its body has been read
    /// to the end: (name lower-cased, value), in arrival order. Empty before, and for a
    /// message without any.
    pub fn trailers(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.trailers
    }

    /// Whether the current message has been read to its end.
    pub fn is_complete(&self) -> bool {
        matches!(self.state, State::Complete)
    }

    /// Whether the connection may carry another message (false after any error).
    pub fn keep_alive(&self) -> bool {
        !matches!(self.state, State::Failed(_) | State::Idle) && self.head_ref().keep_alive
    }

    /// Bytes read from the source and not consumed yet.
    /// Frees the buffer and the memory kept for the next head, at rest (see `at_rest`): a
    /// connection that will wait long for its next message. Reading allocates them again.
    pub fn release_memory(&mut self) {
        if self.at_rest() {
            self.buf = Vec::new();
            self.start = 0;
            self.head.release_memory();
            self.trailers = Vec::new();
        }
    }

    /// Between messages with nothing of the next one buffered: what it reads next is the
    /// first bytes of a message (or the end of the input).
    pub fn at_rest(&self) -> bool {
        matches!(self.state, State::Idle | State::Complete) && self.start == self.buf.len()
    }

    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let from = self.start;
        self.start += n;
        &self.buf[from..from + n]
    }

    fn fail<E>(&mut self, error: Error) -> PullError<E> {
        self.state = State::Failed(error.clone());
        PullError::Parse(error)
    }

    /// Reads more bytes, first dropping consumed ones if they pile up.
    fn fill(&mut self) -> Result<(), PullError<S::Error>> {
        // Bytes before `start` are consumed (a head being parsed starts at `start`: its
        // parser's positions are relative to it, so moving it is fine).
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start >= COMPACT_AFTER {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let n = self
            .source
            .read(&mut self.buf, READ_SIZE)
            .map_err(PullError::Source)?;
        if n == 0 {
            self.eof = true;
        }
        Ok(())
    }
}
