#![no_main]
//! Builds a response from arbitrary fields and body pieces: whatever the builder accepts, H1P's
//! own client parser must read back as the same fields and the body the framer let through, with
//! nothing left over (a response that parses otherwise is a split or desync).

use std::convert::Infallible;

use h1p::pull::{Parser, Source};
use h1p::response::{BodyFramer, BodySize, Framing, Request, ResponseHead};
use h1p::{Limits, Mode};

struct Bytes(Option<Vec<u8>>);

impl Source for Bytes {
    type Error = Infallible;

    fn read(&mut self, buf: &mut Vec<u8>, _max: usize) -> Result<usize, Infallible> {
        let data = self.0.take().unwrap_or_default();
        buf.extend_from_slice(&data);
        Ok(data.len())
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let [a, b, flags, rest @ ..] = data else {
        return;
    };
    let status = u16::from_le_bytes([*a, *b]) % 1100;
    let request = Request {
        head: false,
        http10: flags & 1 != 0,
        reusable: flags & 2 != 0,
    };
    let known = flags & 4 != 0;
    // Lines of "name\0value"; then, after an empty line, body pieces split on '\n'.
    let mut parts = rest.split(|&b| b == b'\n');
    let Ok(mut head) = ResponseHead::new(status) else {
        return;
    };
    let mut fields = Vec::new();
    for line in parts.by_ref() {
        if line.is_empty() {
            break;
        }
        let mut split = line.splitn(2, |&b| b == 0);
        let (name, value) = (
            split.next().unwrap_or_default(),
            split.next().unwrap_or_default(),
        );
        if head.field(name, value).is_err() {
            return;
        }
        fields.push((name.to_ascii_lowercase(), value.trim_ascii().to_vec()));
    }
    let pieces: Vec<&[u8]> = parts.collect();
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    let size = if known {
        BodySize::Known(total as u64)
    } else {
        BodySize::Unknown
    };
    let Ok(done) = head.finish(size, request) else {
        return;
    };
    let mut wire = done.bytes;
    let mut framer = BodyFramer::new(done.framing);
    let mut sent = Vec::new();
    for piece in &pieces {
        let framed = framer.piece(piece.len());
        wire.extend_from_slice(framed.prefix());
        wire.extend_from_slice(&piece[..framed.take]);
        wire.extend_from_slice(framed.suffix);
        sent.extend_from_slice(&piece[..framed.take]);
    }
    let Ok(end) = framer.finish(None) else { return };
    wire.extend_from_slice(&end);
    if matches!(done.framing, Framing::AsGiven) || (status != 101 && status < 200) {
        return; // the app's own framing; 1xx never gets here
    }
    // (The builder has no limits of its own: the reader here has none either.)
    let limits = Limits {
        head: usize::MAX,
        header_name: usize::MAX,
        header_value: usize::MAX,
        headers: usize::MAX,
        ..Limits::default()
    };
    let mut parser = Parser::new(Bytes(Some(wire)), Mode::Client, limits);
    let Ok(Some(message)) = parser.parse_headers() else {
        panic!("a built response does not parse");
    };
    let parsed: Vec<_> = message
        .fields()
        .map(|(n, v)| (n.to_ascii_lowercase(), v.to_vec()))
        .collect();
    assert_eq!(&parsed[..fields.len()], &fields[..]);
    if status == 101 || matches!(status, 204 | 304) {
        return;
    }
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = parser.read_body_chunk(false) {
        body.extend_from_slice(chunk);
    }
    assert_eq!(body, sent);
    if done.keep_alive {
        assert!(parser.buffered().is_empty(), "bytes after the response");
    }
});
