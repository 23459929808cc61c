//! WebSocket frames from a peer, arbitrary bytes in arbitrary pieces, to a server's and a
//! client's decoder: errors are fine, panics are not; whatever decodes re-encodes to frames that
//! decode to the same messages.

#![no_main]

use libfuzzer_sys::fuzz_target;
use polyphony_ws::{encode, encode_close, Decoder, Limits, Message, OpCode, Role};

fn messages(role: Role, wire: &[u8], step: usize) -> Vec<Message> {
    let mut decoder = Decoder::new(role, Limits { max_message: 1 << 16 });
    let mut out = Vec::new();
    for piece in wire.chunks(step) {
        decoder.feed(piece);
        while let Ok(Some(message)) = decoder.next_message() {
            out.push(message);
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the piece size: frames split anywhere must not matter.
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    for role in [Role::Server, Role::Client] {
        let got = messages(role, data, step);
        assert_eq!(got, messages(role, data, data.len().max(1)));
        // Re-encoded as the peer would send them, they decode the same.
        let mask = (role == Role::Server).then_some([9, 8, 7, 6]);
        let mut wire = Vec::new();
        for message in &got {
            match message {
                Message::Text(t) => encode(OpCode::Text, t.as_bytes(), mask, &mut wire),
                Message::Binary(b) => encode(OpCode::Binary, b, mask, &mut wire),
                Message::Ping(b) => encode(OpCode::Ping, b, mask, &mut wire),
                Message::Pong(b) => encode(OpCode::Pong, b, mask, &mut wire),
                Message::Close(Some(c)) => encode_close(c.code, &c.reason, mask, &mut wire),
                Message::Close(None) => encode(OpCode::Close, b"", mask, &mut wire),
            }
        }
        assert_eq!(messages(role, &wire, 3), got);
    }
});
