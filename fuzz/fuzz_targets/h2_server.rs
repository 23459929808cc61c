//! Bytes from an HTTP/2 client, arbitrary ones in arbitrary pieces, to the server side
//! (rust/h2: h2 behind the byte pipe and the frame counting that spots floods): errors are fine,
//! panics are not, and what waits to be sent never grows past the outbox's limit by more than a
//! frame's worth while nobody takes it.

#![no_main]

use h2p::{Server, Settings, OUTBOX_LIMIT};
use libfuzzer_sys::fuzz_target;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fuzz_target!(|data: &[u8]| {
    // The first byte picks the piece size; the preface goes first, or h2 stops at once.
    let step = usize::from(data.first().copied().unwrap_or(1)).max(1);
    let mut server = Server::new(&Settings::default());
    let mut wire = PREFACE.to_vec();
    wire.extend_from_slice(data);
    let mut out = Vec::new();
    for (i, piece) in wire.chunks(step).enumerate() {
        if server.receive(piece).is_err() {
            break;
        }
        while server.next_event().is_some() {}
        // Every other piece, the bytes to send are taken; otherwise they pile up to the limit.
        if i % 2 == 0 {
            out.clear();
            if server.outgoing(&mut out).is_err() {
                break;
            }
            assert!(out.len() <= OUTBOX_LIMIT + (1 << 20), "{} bytes at once", out.len());
        }
    }
});
