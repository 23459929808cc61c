//! `Polyphony::WebSocket::Codec`: RFC 6455 frames over `polyphony-ws`, fed with the bytes the
//! socket gave; frames to send are handed back as Strings (lib/polyphony/websocket.rb moves
//! the bytes, so it works over a plain socket or a TLS one alike).

use std::cell::RefCell;

use magnus::value::ReprValue;
use magnus::{function, method, prelude::*, Error, RModule, RString, Ruby, Value};
use polyphony_ws::{Decoder, Limits, Message, OpCode, Role};

#[magnus::wrap(class = "Polyphony::WebSocket::Codec", free_immediately, size)]
struct Codec {
    decoder: RefCell<Decoder>,
    /// A client masks what it sends.
    client: bool,
}

impl Codec {
    /// `new(client, max_message)`.
    fn new(client: bool, max_message: usize) -> Self {
        let role = if client { Role::Client } else { Role::Server };
        Codec {
            decoder: RefCell::new(Decoder::new(role, Limits { max_message })),
            client,
        }
    }

    fn decoder(&self) -> Result<std::cell::RefMut<'_, Decoder>, Error> {
        self.decoder.try_borrow_mut().map_err(|_| {
            let ruby = Ruby::get().expect("called from Ruby");
            Error::new(ruby.exception_runtime_error(), "codec used re-entrantly")
        })
    }

    /// Bytes read from the peer.
    fn feed(&self, bytes: RString) -> Result<(), Error> {
        // SAFETY: copied by the decoder at once, with no Ruby call in between.
        self.decoder()?.feed(unsafe { bytes.as_slice() });
        Ok(())
    }

    /// Gives back the memory of what was read and consumed (see `Decoder::release`).
    fn release(&self) -> Result<(), Error> {
        self.decoder()?.release();
        Ok(())
    }

    /// The next message: a String (UTF-8 for text, binary for binary), `[:ping, data]`,
    /// `[:pong, data]`, `[:close, code, reason]`, `[:error, code, reason]` when the peer broke
    /// the protocol, or nil when more bytes are needed.
    fn next(ruby: &Ruby, rb_self: &Self) -> Result<Value, Error> {
        let message = rb_self.decoder()?.next_message();
        let tagged = |tag: &str, rest: &[Value]| -> Value {
            let array = ruby.ary_new_capa(1 + rest.len());
            let _ = array.push(ruby.to_symbol(tag));
            for value in rest {
                let _ = array.push(*value);
            }
            array.as_value()
        };
        Ok(match message {
            Ok(None) => ruby.qnil().as_value(),
            Ok(Some(Message::Text(text))) => ruby.str_new(&text).as_value(),
            Ok(Some(Message::Binary(bytes))) => ruby.str_from_slice(&bytes).as_value(),
            Ok(Some(Message::Ping(data))) => {
                tagged("ping", &[ruby.str_from_slice(&data).as_value()])
            }
            Ok(Some(Message::Pong(data))) => {
                tagged("pong", &[ruby.str_from_slice(&data).as_value()])
            }
            Ok(Some(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map_or((polyphony_ws::code::NO_STATUS, String::new()), |f| {
                        (f.code, f.reason)
                    });
                tagged(
                    "close",
                    &[
                        ruby.integer_from_u64(code.into()).as_value(),
                        ruby.str_new(&reason).as_value(),
                    ],
                )
            }
            Err(e) => tagged(
                "error",
                &[
                    ruby.integer_from_u64(e.code.into()).as_value(),
                    ruby.str_new(e.reason).as_value(),
                ],
            ),
        })
    }

    /// A frame carrying `data`: opcode 1 (text: `data` must be UTF-8), 2, 9 or 10.
    fn frame(ruby: &Ruby, rb_self: &Self, opcode: u8, data: RString) -> Result<RString, Error> {
        let opcode = match opcode {
            1 => OpCode::Text,
            2 => OpCode::Binary,
            9 => OpCode::Ping,
            10 => OpCode::Pong,
            _ => return Err(Error::new(ruby.exception_arg_error(), "bad opcode")),
        };
        // SAFETY: read before any Ruby call.
        let bytes = unsafe { data.as_slice() };
        if opcode == OpCode::Text && std::str::from_utf8(bytes).is_err() {
            return Err(Error::new(
                ruby.exception_arg_error(),
                "a text message must be valid UTF-8 (send binary data as an ASCII-8BIT String)",
            ));
        }
        if matches!(opcode, OpCode::Ping | OpCode::Pong) && bytes.len() > 125 {
            return Err(Error::new(
                ruby.exception_arg_error(),
                "ping and pong data is at most 125 bytes",
            ));
        }
        let mut out = Vec::new();
        polyphony_ws::encode(opcode, bytes, rb_self.mask(), &mut out);
        Ok(ruby.str_from_slice(&out))
    }

    /// A Close frame with `code` and `reason` (cut to 123 bytes).
    fn close_frame(ruby: &Ruby, rb_self: &Self, code: u16, reason: String) -> RString {
        let mut out = Vec::new();
        polyphony_ws::encode_close(code, &reason, rb_self.mask(), &mut out);
        ruby.str_from_slice(&out)
    }

    fn mask(&self) -> Option<[u8; 4]> {
        self.client.then(|| {
            let mut key = [0u8; 4];
            // SAFETY: getrandom writes at most 4 bytes into the 4-byte array.
            let n = unsafe { libc::getrandom(key.as_mut_ptr().cast(), 4, 0) };
            if n != 4 {
                key = std::process::id().to_ne_bytes(); // never in practice; still masked
            }
            key
        })
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`, or nil when the key is not 16 bytes in
/// base64.
fn accept_key(ruby: &Ruby, key: RString) -> Value {
    // SAFETY: read before any Ruby call.
    let key = unsafe { key.as_slice() };
    if !polyphony_ws::valid_key(key) {
        return ruby.qnil().as_value();
    }
    ruby.str_new(&polyphony_ws::accept_key(key)).as_value()
}

pub(crate) fn init(ruby: &Ruby, polyphony: RModule) -> Result<(), Error> {
    let websocket = polyphony.define_class("WebSocket", ruby.class_object())?;
    websocket.define_singleton_method("accept_key", function!(accept_key, 1))?;
    let class = websocket.define_class("Codec", ruby.class_object())?;
    class.define_singleton_method("new", function!(Codec::new, 2))?;
    class.define_method("feed", method!(Codec::feed, 1))?;
    class.define_method("release", method!(Codec::release, 0))?;
    class.define_method("next", method!(Codec::next, 0))?;
    class.define_method("frame", method!(Codec::frame, 2))?;
    class.define_method("close_frame", method!(Codec::close_frame, 2))?;
    Ok(())
}
