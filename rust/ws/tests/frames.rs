use polyphony_ws::{
    code, encode, encode_close, encode_frame, CloseFrame, Decoder, Limits, Message, OpCode, Role,
};

const MASK: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

fn server() -> Decoder {
    Decoder::new(Role::Server, Limits::default())
}

/// Everything the decoder gives for `wire`, fed in pieces of `step` bytes.
fn decode(decoder: &mut Decoder, wire: &[u8], step: usize) -> Result<Vec<Message>, u16> {
    let mut out = Vec::new();
    for piece in wire.chunks(step) {
        decoder.feed(piece);
        while let Some(message) = decoder.next_message().map_err(|e| e.code)? {
            out.push(message);
        }
    }
    Ok(out)
}

fn client_frame(opcode: OpCode, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    encode_frame(opcode, fin, payload, MASK, &mut wire);
    wire
}

#[test]
fn rfc_6455_examples_decode() {
    // 5.7: a single-frame masked text message "Hello", and an unmasked one for a client.
    let masked = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    assert_eq!(
        decode(&mut server(), &masked, 100),
        Ok(vec![Message::Text("Hello".into())])
    );
    let plain = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let mut client = Decoder::new(Role::Client, Limits::default());
    assert_eq!(
        decode(&mut client, &plain, 1),
        Ok(vec![Message::Text("Hello".into())])
    );
    // A fragmented unmasked text message: "Hel" then "lo".
    let fragmented = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    let mut client = Decoder::new(Role::Client, Limits::default());
    assert_eq!(
        decode(&mut client, &fragmented, 2),
        Ok(vec![Message::Text("Hello".into())])
    );
    // Our encoder writes exactly the RFC's bytes.
    let mut wire = Vec::new();
    encode(OpCode::Text, b"Hello", MASK, &mut wire);
    assert_eq!(wire, masked);
}

#[test]
fn every_length_form_round_trips_in_any_pieces() {
    for len in [0, 1, 125, 126, 127, 65_535, 65_536, 300_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut wire = Vec::new();
        encode(OpCode::Binary, &payload, MASK, &mut wire);
        for step in [1, 7, 4096, wire.len().max(1)] {
            if len > 70_000 && step < 4096 {
                continue;
            }
            let got = decode(&mut server(), &wire, step).expect("valid");
            assert_eq!(
                got,
                vec![Message::Binary(payload.clone())],
                "len {len} step {step}"
            );
        }
    }
}

#[test]
fn fragments_join_and_control_frames_come_between_them() {
    let mut wire = client_frame(OpCode::Text, false, "héllo ".as_bytes());
    wire.extend(client_frame(OpCode::Ping, true, b"are you there"));
    // A two-byte character cut between fragments is fine.
    let world = "wörld".as_bytes();
    wire.extend(client_frame(OpCode::Continuation, false, &world[..2]));
    wire.extend(client_frame(OpCode::Continuation, true, &world[2..]));
    wire.extend(client_frame(OpCode::Pong, true, b""));
    let got = decode(&mut server(), &wire, 3).expect("valid");
    assert_eq!(
        got,
        vec![
            Message::Ping(b"are you there".to_vec()),
            Message::Text("héllo wörld".into()),
            Message::Pong(Vec::new()),
        ]
    );
}

#[test]
fn close_frames_and_nothing_after_them() {
    let mut wire = Vec::new();
    encode_close(1001, "bye", MASK, &mut wire);
    encode(OpCode::Text, b"ignored", MASK, &mut wire);
    assert_eq!(
        decode(&mut server(), &wire, 5),
        Ok(vec![Message::Close(Some(CloseFrame {
            code: 1001,
            reason: "bye".into()
        }))])
    );
    let empty = client_frame(OpCode::Close, true, b"");
    assert_eq!(
        decode(&mut server(), &empty, 1),
        Ok(vec![Message::Close(None)])
    );
    // A long reason is cut at a character boundary to fit a control frame.
    let mut long = Vec::new();
    encode_close(1000, &"é".repeat(100), None, &mut long);
    let mut client = Decoder::new(Role::Client, Limits::default());
    let got = decode(&mut client, &long, 1000);
    let Ok([Message::Close(Some(frame))]) = got.as_deref() else {
        panic!("one close frame expected, got {got:?}");
    };
    assert_eq!(frame.reason, "é".repeat(61));
}

#[test]
fn protocol_violations_get_their_close_codes() {
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "unmasked client frame",
            {
                let mut w = Vec::new();
                encode(OpCode::Text, b"hi", None, &mut w);
                w
            },
            code::PROTOCOL_ERROR,
        ),
        (
            "RSV1 set",
            {
                let mut w = client_frame(OpCode::Text, true, b"hi");
                w[0] |= 0x40;
                w
            },
            code::PROTOCOL_ERROR,
        ),
        (
            "reserved opcode 3",
            {
                let mut w = client_frame(OpCode::Text, true, b"hi");
                w[0] = 0x83;
                w
            },
            code::PROTOCOL_ERROR,
        ),
        (
            "ping of 126 bytes",
            client_frame(OpCode::Ping, true, &[0; 126]),
            code::PROTOCOL_ERROR,
        ),
        (
            "fragmented ping",
            client_frame(OpCode::Ping, false, b"x"),
            code::PROTOCOL_ERROR,
        ),
        (
            "continuation first",
            client_frame(OpCode::Continuation, true, b"x"),
            code::PROTOCOL_ERROR,
        ),
        (
            "text inside a fragmented message",
            {
                let mut w = client_frame(OpCode::Binary, false, b"x");
                w.extend(client_frame(OpCode::Text, true, b"y"));
                w
            },
            code::PROTOCOL_ERROR,
        ),
        (
            "close with one byte",
            client_frame(OpCode::Close, true, &[3]),
            code::PROTOCOL_ERROR,
        ),
        (
            "close code 1005",
            client_frame(OpCode::Close, true, &1005u16.to_be_bytes()),
            code::PROTOCOL_ERROR,
        ),
        (
            "close code 999",
            client_frame(OpCode::Close, true, &999u16.to_be_bytes()),
            code::PROTOCOL_ERROR,
        ),
        (
            "close reason not UTF-8",
            client_frame(OpCode::Close, true, &[3, 232, 0xff]),
            code::INVALID_PAYLOAD,
        ),
        (
            "text not UTF-8",
            client_frame(OpCode::Text, true, &[0xc3, 0x28]),
            code::INVALID_PAYLOAD,
        ),
        (
            "text ending in half a character",
            client_frame(OpCode::Text, true, &[b'a', 0xc3]),
            code::INVALID_PAYLOAD,
        ),
        (
            "64-bit length with its top bit set",
            {
                let mut w = vec![0x82, 0xff];
                w.extend(u64::MAX.to_be_bytes());
                w.extend([1, 2, 3, 4]);
                w
            },
            code::PROTOCOL_ERROR,
        ),
    ];
    for (what, wire, expected) in cases {
        assert_eq!(
            decode(&mut server(), &wire, 1).err(),
            Some(expected),
            "{what}"
        );
        // After an error the decoder gives nothing more.
        let mut decoder = server();
        let _ = decode(&mut decoder, &wire, wire.len());
        decoder.feed(&client_frame(OpCode::Text, true, b"later"));
        assert_eq!(decoder.next_message(), Ok(None), "{what}");
    }
}

#[test]
fn bad_text_fails_in_its_first_fragment() {
    let mut decoder = server();
    decoder.feed(&client_frame(OpCode::Text, false, &[b'o', b'k', 0xff]));
    assert_eq!(
        decoder.next_message().map_err(|e| e.code),
        Err(code::INVALID_PAYLOAD)
    );
}

#[test]
fn a_message_over_the_limit_is_refused_from_its_head() {
    let limits = Limits { max_message: 1000 };
    // Only the head of a 1 MB frame has arrived: refused before the payload is buffered.
    let mut decoder = Decoder::new(Role::Server, limits);
    let wire = client_frame(OpCode::Binary, true, &vec![0; 1 << 20]);
    decoder.feed(&wire[..14]);
    assert_eq!(
        decoder.next_message().map_err(|e| e.code),
        Err(code::TOO_BIG)
    );
    // Fragments count together.
    let mut decoder = Decoder::new(Role::Server, limits);
    let mut wire = client_frame(OpCode::Text, false, &[b'a'; 600]);
    wire.extend(client_frame(OpCode::Continuation, true, &[b'a'; 600]));
    assert_eq!(decode(&mut decoder, &wire, 100).err(), Some(code::TOO_BIG));
    // Exactly the limit is fine.
    let mut decoder = Decoder::new(Role::Server, limits);
    let wire = client_frame(OpCode::Binary, true, &[1; 1000]);
    assert_eq!(decode(&mut decoder, &wire, 333).map(|m| m.len()), Ok(1));
}

#[test]
fn release_keeps_a_pending_frame_and_forgets_a_consumed_one() {
    let mut decoder = server();
    let wire = client_frame(OpCode::Binary, true, &[7; 100_000]);
    // Half a frame: released, it is still whole once the rest comes.
    decoder.feed(&wire[..50_000]);
    assert!(decoder.next_message().unwrap().is_none());
    decoder.release();
    decoder.feed(&wire[50_000..]);
    assert_eq!(
        decoder.next_message().unwrap(),
        Some(Message::Binary(vec![7; 100_000]))
    );
    // All consumed: released, the next message decodes as usual.
    decoder.release();
    decoder.feed(&client_frame(OpCode::Text, true, b"next"));
    assert_eq!(
        decoder.next_message().unwrap(),
        Some(Message::Text("next".into()))
    );
}
