//! The chunked transfer coding (RFC 9112 7.1), decoded without copying.
//!
//! Strict where smuggling lives: every line ends in CRLF (a bare LF or CR is an error, also
//! inside an extension), the size is hex digits only and must fit in 64 bits, and chunk data
//! must be followed by CRLF. Trailer fields are validated like header fields and kept (owned:
//! they are rare, and come after the data the caller was handed).

use std::ops::Range;

use memchr::memchr;

use crate::head::field;
use crate::scan::{find_special, is_ows};
use crate::{Error, Limit, Limits};

/// Longest chunk-size line (size and extensions) accepted.
pub const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data,
    DataEnd,
    Trailers,
    Done,
}

/// One step of decoding: `consumed` bytes of the input were used; `data` is the part of
/// them that is body data. Nothing consumed and not `done`: more input is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub consumed: usize,
    pub data: Option<Range<usize>>,
    pub done: bool,
}

impl Step {
    fn more() -> Self {
        Step {
            consumed: 0,
            data: None,
            done: false,
        }
    }

    fn skip(consumed: usize) -> Self {
        Step {
            consumed,
            data: None,
            done: false,
        }
    }
}

/// Decodes one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    remaining: u64,
    total: u64,
    trailers: Vec<(Vec<u8>, Vec<u8>)>,
    limits: Limits,
}

impl ChunkedDecoder {
    pub fn new(limits: Limits) -> Self {
        ChunkedDecoder {
            state: State::Size,
            remaining: 0,
            total: 0,
            trailers: Vec::new(),
            limits,
        }
    }

    /// Whether the last chunk and the trailers have been consumed.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The trailer fields read so far (all of them once [`Self::is_done`]) as (name, value),
    /// names lower-cased, values trimmed, in arrival order.
    pub fn trailers(&self) -> &[(Vec<u8>, Vec<u8>)] {
        &self.trailers
    }

    /// Takes the trailer fields out (see [`Self::trailers`]).
    pub fn take_trailers(&mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
        std::mem::take(&mut self.trailers)
    }

    /// Decodes from the start of `input` (bytes not consumed by earlier steps).
    pub fn decode(&mut self, input: &[u8]) -> Result<Step, Error> {
        match self.state {
            State::Done => Ok(Step {
                consumed: 0,
                data: None,
                done: true,
            }),
            State::Size => self.size_line(input),
            State::Data => {
                let n = input
                    .len()
                    .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                if n == 0 {
                    return Ok(Step::more());
                }
                self.remaining -= n as u64;
                if self.remaining == 0 {
                    self.state = State::DataEnd;
                }
                Ok(Step {
                    consumed: n,
                    data: Some(0..n),
                    done: false,
                })
            }
            State::DataEnd => match input {
                [b'\r', b'\n', ..] => {
                    self.state = State::Size;
                    Ok(Step::skip(2))
                }
                [] | [b'\r'] => Ok(Step::more()),
                _ => Err(Error::InvalidChunkEnd),
            },
            State::Trailers => self.trailer_line(input),
        }
    }

    fn size_line(&mut self, input: &[u8]) -> Result<Step, Error> {
        let Some(nl) = memchr(b'\n', input) else {
            if input.len() > MAX_CHUNK_LINE {
                return Err(too_large(Limit::ChunkLine, MAX_CHUNK_LINE as u64));
            }
            return Ok(Step::more());
        };
        if nl > MAX_CHUNK_LINE {
            return Err(too_large(Limit::ChunkLine, MAX_CHUNK_LINE as u64));
        }
        let line = &input[..nl];
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let Some(line) = line.strip_suffix(b"\r") else {
            return Err(if digits < line.len() && line[digits..].contains(&b';') {
                Error::InvalidChunkExtension
            } else {
                Error::InvalidChunkSize
            });
        };
        if digits == 0 {
            return Err(Error::InvalidChunkSize);
        }
        let significant = &line[..digits];
        let significant = &significant[significant.iter().take_while(|&&b| b == b'0').count()..];
        if significant.len() > 16 {
            return Err(Error::ChunkSizeOverflow);
        }
        let size = significant
            .iter()
            .fold(0u64, |n, &d| n << 4 | u64::from(hex_value(d)));
        extension(&line[digits..])?;
        if size == 0 {
            self.state = State::Trailers;
        } else {
            self.total = self
                .total
                .checked_add(size)
                .ok_or(Error::ChunkSizeOverflow)?;
            if let Some(max) = self.limits.max_body {
                if self.total > max {
                    return Err(too_large(Limit::Body, max));
                }
            }
            self.remaining = size;
            self.state = State::Data;
        }
        Ok(Step::skip(nl + 1))
    }

    fn trailer_line(&mut self, input: &[u8]) -> Result<Step, Error> {
        // (Saturating: a caller may set a limit to usize::MAX, meaning none.)
        let max_line = self
            .limits
            .header_name
            .saturating_add(self.limits.header_value)
            .saturating_add(260);
        let Some(nl) = memchr(b'\n', input) else {
            if input.len() > max_line {
                return Err(too_large(
                    Limit::HeaderValue,
                    self.limits.header_value as u64,
                ));
            }
            return Ok(Step::more());
        };
        let Some(line) = input[..nl].strip_suffix(b"\r") else {
            return Err(Error::BareCr);
        };
        if line.is_empty() {
            self.state = State::Done;
            return Ok(Step {
                consumed: nl + 1,
                data: None,
                done: true,
            });
        }
        let (name_len, value_start, value_end) = field(line, &self.limits)?;
        if self.trailers.len() == self.limits.headers {
            return Err(too_large(Limit::HeaderCount, self.limits.headers as u64));
        }
        self.trailers.push((
            line[..name_len].to_ascii_lowercase(),
            line[value_start..value_end].to_vec(),
        ));
        Ok(Step::skip(nl + 1))
    }
}

/// `*( BWS ";" BWS ext-name [ BWS "=" BWS ext-value ] )`: checked for bytes that have no place
/// in a line (CTLs, CR), not parsed further: we give extensions no meaning.
fn extension(rest: &[u8]) -> Result<(), Error> {
    let start = rest.iter().take_while(|&&b| is_ows(b)).count();
    match rest.get(start) {
        None if start == 0 => return Ok(()),
        Some(b';') => {}
        _ => return Err(Error::InvalidChunkSize),
    }
    let mut from = start;
    while let Some(p) = find_special(rest, from, 0x20) {
        if rest[p] != b'\t' {
            return Err(Error::InvalidChunkExtension);
        }
        from = p + 1;
    }
    Ok(())
}

fn hex_value(d: u8) -> u8 {
    match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        _ => d - b'A' + 10,
    }
}

fn too_large(limit: Limit, max: u64) -> Error {
    Error::TooLarge { limit, max }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize), Error> {
        let mut decoder = ChunkedDecoder::new(Limits::default());
        let mut body = Vec::new();
        let mut pos = 0;
        loop {
            let step = decoder.decode(&input[pos..])?;
            if let Some(range) = step.data {
                body.extend_from_slice(&input[pos + range.start..pos + range.end]);
            }
            pos += step.consumed;
            if step.done {
                return Ok((body, pos));
            }
            if step.consumed == 0 {
                return Err(Error::IncompleteBody { missing: None });
            }
        }
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let input = b"4\r\nabcd\r\nA;x=\"y\"\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
        assert_eq!(
            decode_all(input),
            Ok((b"abcd0123456789".to_vec(), input.len() - 4))
        );
    }

    #[test]
    fn keeps_trailer_fields_lower_cased_and_trimmed() {
        let mut decoder = ChunkedDecoder::new(Limits::default());
        let input = b"0\r\nX-Sum:  12 \r\nServer-Timing: a\r\nx-sum: 13\r\n\r\n";
        let mut pos = 0;
        while !decoder.is_done() {
            pos += decoder.decode(&input[pos..]).unwrap().consumed;
        }
        let fields: Vec<(&[u8], &[u8])> = decoder
            .trailers()
            .iter()
            .map(|(n, v)| (&n[..], &v[..]))
            .collect();
        assert_eq!(
            fields,
            [
                (&b"x-sum"[..], &b"12"[..]),
                (b"server-timing", b"a"),
                (b"x-sum", b"13")
            ]
        );
        assert_eq!(decoder.take_trailers().len(), 3);
        assert!(decoder.trailers().is_empty());
    }

    #[test]
    fn trailer_fields_count_against_the_header_limit() {
        let limits = Limits {
            headers: 2,
            ..Limits::default()
        };
        let mut decoder = ChunkedDecoder::new(limits);
        let input = b"0\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n";
        let mut pos = 0;
        let error = loop {
            match decoder.decode(&input[pos..]) {
                Ok(step) => pos += step.consumed,
                Err(error) => break error,
            }
        };
        assert_eq!(
            error,
            Error::TooLarge {
                limit: Limit::HeaderCount,
                max: 2
            }
        );
    }

    #[test]
    fn refuses_what_smuggling_uses() {
        let cases: &[(&[u8], Error)] = &[
            (b"3\nabc\r\n0\r\n\r\n", Error::InvalidChunkSize),
            (b"3;x\nabc\r\n0\r\n\r\n", Error::InvalidChunkExtension),
            (b"3;x\rabc\r\n0\r\n\r\n", Error::InvalidChunkExtension),
            (b"0x3\r\nabc\r\n0\r\n\r\n", Error::InvalidChunkSize),
            (b"-3\r\nabc\r\n0\r\n\r\n", Error::InvalidChunkSize),
            (b"3\r\nabcd\r\n0\r\n\r\n", Error::InvalidChunkEnd),
            (b"10000000000000003\r\nabc", Error::ChunkSizeOverflow),
            (b"0\r\nX-A : 1\r\n\r\n", Error::WhitespaceBeforeColon),
        ];
        for (input, error) in cases {
            assert_eq!(
                decode_all(input).unwrap_err(),
                *error,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn sixteen_significant_digits_fit() {
        let mut decoder = ChunkedDecoder::new(Limits::default());
        let step = decoder.decode(b"0000ffffffffffffffff\r\n").unwrap();
        assert_eq!(step.consumed, 22);
        assert_eq!(decoder.remaining, u64::MAX);
    }
}
