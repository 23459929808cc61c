//! Shared by the targets: parses every message of `data`, fed in pieces whose sizes come from
//! the first byte, through the pull parser, and checks what must always hold.

use std::convert::Infallible;

use h1p::pull::{Parser, Source};
use h1p::{Limits, Mode};

struct Pieces<'a> {
    data: &'a [u8],
    piece: usize,
}

impl Source for Pieces<'_> {
    type Error = Infallible;

    fn read(&mut self, buf: &mut Vec<u8>, max: usize) -> Result<usize, Infallible> {
        let n = max.min(self.piece).min(self.data.len());
        buf.extend_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// What a parser made of its input: each message's fields and body size, then how it ended.
type Outcome = (Vec<(Vec<(Vec<u8>, Vec<u8>)>, usize)>, Option<String>);

pub fn parse_all(data: &[u8], mode: Mode) {
    let Some((&first, data)) = data.split_first() else { return };
    let piece = usize::from(first % 16) + 1;
    let mut parser = Parser::new(Pieces { data, piece }, mode, Limits::default());
    check_messages(&mut parser, data);
    // Started over on the second half (as Tipi's renewed connections do), wherever the first
    // pass stopped, the parser makes of it exactly what a new one does.
    let rest = &data[data.len() / 2..];
    parser.restart(Pieces { data: rest, piece });
    let mut fresh = Parser::new(Pieces { data: rest, piece }, mode, Limits::default());
    assert_eq!(outcome(&mut parser), outcome(&mut fresh));
}

fn outcome(parser: &mut Parser<Pieces<'_>>) -> Outcome {
    let mut messages = Vec::new();
    loop {
        let fields = match parser.parse_headers() {
            Ok(Some(message)) => message.fields().map(|(n, v)| (n.to_vec(), v.to_vec())).collect(),
            Ok(None) => return (messages, None),
            Err(e) => return (messages, Some(format!("{e:?}"))),
        };
        let mut body = 0;
        loop {
            match parser.read_body_chunk(false) {
                Ok(Some(chunk)) => body += chunk.len(),
                Ok(None) => break,
                Err(e) => return (messages, Some(format!("{e:?}"))),
            }
        }
        messages.push((fields, body));
    }
}

fn check_messages(parser: &mut Parser<Pieces<'_>>, data: &[u8]) {
    let mut consumed_messages = 0;
    while let Ok(Some(message)) = parser.parse_headers() {
        assert!(message.head.len <= data.len());
        // A field's known position is the lookup's, whichever way its name was checked.
        for field in &message.head.fields {
            assert_eq!(field.known, h1p::names::known(message.get(field.name)));
        }
        let upgrade = message.fields().any(|(name, _)| h1p::eq_ignore_case(name, b"upgrade"));
        assert_eq!(message.head.upgrade, upgrade);
        for (name, value) in message.fields() {
            assert!(!name.is_empty() && name.len() <= 128 && value.len() <= 2048);
            assert!(!value.contains(&b'\r') && !value.contains(&b'\n') && !value.contains(&0));
        }
        let mut body = 0;
        loop {
            match parser.read_body_chunk(false) {
                Ok(Some(chunk)) => body += chunk.len(),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(body <= data.len());
        assert!(parser.trailers().len() <= Limits::default().headers);
        for (name, value) in parser.trailers() {
            assert!(!name.is_empty() && name.len() <= 128 && value.len() <= 2048);
            assert!(!name.iter().any(u8::is_ascii_uppercase));
            assert!(!value.contains(&b'\r') && !value.contains(&b'\n') && !value.contains(&0));
        }
        consumed_messages += 1;
        assert!(consumed_messages <= data.len());
    }
}
