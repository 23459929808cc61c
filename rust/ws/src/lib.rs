//! WebSocket (RFC 6455) without I/O: the caller feeds the bytes it read to a [`Decoder`] and
//! takes whole messages out; [`encode`] appends a frame to a buffer the caller writes. No
//! extension is negotiated here (permessage-deflate is not offered), so any RSV bit is an error.
//!
//! ```
//! use polyphony_ws::{encode, Decoder, Limits, Message, OpCode, Role};
//!
//! let mut wire = Vec::new();
//! encode(OpCode::Text, b"hello", Some([1, 2, 3, 4]), &mut wire); // a client's frame
//! let mut server = Decoder::new(Role::Server, Limits::default());
//! server.feed(&wire);
//! assert_eq!(server.next_message().unwrap(), Some(Message::Text("hello".into())));
//! assert_eq!(server.next_message().unwrap(), None); // wants more bytes
//! ```

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::fmt;

/// The GUID RFC 6455 appends to the client's key before hashing it.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(key);
    context.update(GUID);
    BASE64.encode(context.finish())
}

/// Whether a `Sec-WebSocket-Key` is what RFC 6455 asks for: 16 bytes in base64.
pub fn valid_key(key: &[u8]) -> bool {
    key.len() == 24 && BASE64.decode(key).is_ok_and(|bytes| bytes.len() == 16)
}

/// Which end this is: a server reads masked frames and writes plain ones; a client the reverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// What a peer may send before it is refused with close code 1009.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A whole message, all its fragments together (default 16 MiB).
    pub max_message: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 16 << 20,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn is_control(self) -> bool {
        self as u8 >= 0x8
    }
}

/// A Close frame's status code and reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: u16,
    pub reason: String,
}

/// A whole message (fragments joined) or a control frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// The peer closes; `None` when its Close frame had no status code (1005 to the app).
    Close(Option<CloseFrame>),
}

/// Close codes this crate gives or reports.
pub mod code {
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Reported for a Close frame without a code; never sent.
    pub const NO_STATUS: u16 = 1005;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const TOO_BIG: u16 = 1009;
}

/// The peer broke the protocol: close with `code` (1002, 1007 or 1009) and stop reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    pub code: u16,
    pub reason: &'static str,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (close code {})", self.reason, self.code)
    }
}

impl std::error::Error for ProtocolError {}

fn protocol(reason: &'static str) -> ProtocolError {
    ProtocolError {
        code: code::PROTOCOL_ERROR,
        reason,
    }
}

fn invalid_utf8() -> ProtocolError {
    ProtocolError {
        code: code::INVALID_PAYLOAD,
        reason: "text is not valid UTF-8",
    }
}

/// Whether a peer may send `code` in a Close frame (RFC 6455 7.4, and the IANA registry).
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A fragmented message on its way.
struct Partial {
    text: bool,
    payload: Vec<u8>,
    /// How much of a text payload is known to be valid UTF-8 (fragments are checked as they
    /// come, so bad text fails at once, not after the whole message).
    checked: usize,
}

/// Frames in, messages out. After a Close frame or an error it returns nothing more.
pub struct Decoder {
    role: Role,
    limits: Limits,
    buf: Vec<u8>,
    start: usize,
    partial: Option<Partial>,
    done: bool,
}

/// A frame's head: what the first 2-14 bytes say.
struct Head {
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    len: usize,
    /// Bytes the head took.
    size: usize,
}

impl Decoder {
    pub fn new(role: Role, limits: Limits) -> Self {
        Decoder {
            role,
            limits,
            buf: Vec::new(),
            start: 0,
            partial: None,
            done: false,
        }
    }

    /// Adds bytes read from the peer.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.done {
            return;
        }
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Gives the input buffer's memory back when nothing is left in it (a connection going
    /// idle): a large message read earlier does not stay reserved.
    pub fn release(&mut self) {
        if self.start >= self.buf.len() {
            self.buf = Vec::new();
            self.start = 0;
        }
    }

    /// The next message, `Ok(None)` when more bytes are needed (or after the Close frame).
    pub fn next_message(&mut self) -> Result<Option<Message>, ProtocolError> {
        while !self.done {
            let Some(head) = self.head()? else {
                return Ok(None);
            };
            if self.buf.len() - self.start < head.size + head.len {
                return Ok(None);
            }
            let from = self.start + head.size;
            self.start = from + head.len;
            let message = self.frame(&head, from).inspect_err(|_| self.fail())?;
            if message.is_some() {
                return Ok(message);
            }
        }
        Ok(None)
    }

    fn fail(&mut self) {
        self.done = true;
        self.buf = Vec::new();
        self.start = 0;
        self.partial = None;
    }

    /// Parses the head of the next frame, if all of it is here, and checks it.
    fn head(&mut self) -> Result<Option<Head>, ProtocolError> {
        let bytes = &self.buf[self.start..];
        if bytes.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (bytes[0], bytes[1]);
        let head = (|| {
            if b0 & 0x70 != 0 {
                return Err(protocol("reserved bits set with no extension negotiated"));
            }
            let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(protocol("reserved opcode"))?;
            let fin = b0 & 0x80 != 0;
            let masked = b1 & 0x80 != 0;
            match (self.role, masked) {
                (Role::Server, false) => return Err(protocol("a client's frame is not masked")),
                (Role::Client, true) => return Err(protocol("a server's frame is masked")),
                _ => {}
            }
            let (len, mut size) = match b1 & 0x7F {
                126 if bytes.len() >= 4 => (u64::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
                127 if bytes.len() >= 10 => {
                    let len = u64::from_be_bytes(bytes[2..10].try_into().expect("8 bytes"));
                    if len >> 63 != 0 {
                        return Err(protocol("frame length has its top bit set"));
                    }
                    (len, 10)
                }
                126 | 127 => return Ok(None),
                n => (u64::from(n), 2),
            };
            if opcode.is_control() && (len > 125 || !fin) {
                return Err(protocol(
                    "control frame fragmented or longer than 125 bytes",
                ));
            }
            let so_far = self.partial.as_ref().map_or(0, |p| p.payload.len()) as u64;
            if so_far.saturating_add(len) > self.limits.max_message as u64 {
                return Err(ProtocolError {
                    code: code::TOO_BIG,
                    reason: "message larger than the limit",
                });
            }
            let mask = if masked {
                let Some(key) = bytes.get(size..size + 4) else {
                    return Ok(None);
                };
                size += 4;
                Some(key.try_into().expect("4 bytes"))
            } else {
                None
            };
            Ok(Some(Head {
                fin,
                opcode,
                mask,
                len: len as usize,
                size,
            }))
        })();
        head.inspect_err(|_| self.fail())
    }

    /// Acts on a whole frame whose payload starts at `from`: a message when one is complete.
    fn frame(&mut self, head: &Head, from: usize) -> Result<Option<Message>, ProtocolError> {
        let payload = &mut self.buf[from..from + head.len];
        if let Some(mask) = head.mask {
            unmask(payload, mask, 0);
        }
        let payload = &self.buf[from..from + head.len];
        match head.opcode {
            OpCode::Ping => Ok(Some(Message::Ping(payload.to_vec()))),
            OpCode::Pong => Ok(Some(Message::Pong(payload.to_vec()))),
            OpCode::Close => {
                let close = close_frame(payload)?;
                self.fail(); // nothing after a Close frame is read
                Ok(Some(Message::Close(close)))
            }
            OpCode::Text | OpCode::Binary => {
                if self.partial.is_some() {
                    return Err(protocol("a new message began before the last one ended"));
                }
                let text = head.opcode == OpCode::Text;
                if head.fin {
                    return Ok(Some(whole(text, payload.to_vec())?));
                }
                let mut partial = Partial {
                    text,
                    payload: payload.to_vec(),
                    checked: 0,
                };
                check_fragment(&mut partial)?;
                self.partial = Some(partial);
                Ok(None)
            }
            OpCode::Continuation => {
                let Some(partial) = self.partial.as_mut() else {
                    return Err(protocol("a continuation frame with no message begun"));
                };
                partial.payload.extend_from_slice(payload);
                if !head.fin {
                    check_fragment(partial)?;
                    return Ok(None);
                }
                let partial = self.partial.take().expect("checked above");
                Ok(Some(whole(partial.text, partial.payload)?))
            }
        }
    }
}

/// Checks the UTF-8 of a text message's fragments received so far: a character may still be
/// cut at the end.
fn check_fragment(partial: &mut Partial) -> Result<(), ProtocolError> {
    if !partial.text {
        return Ok(());
    }
    match std::str::from_utf8(&partial.payload[partial.checked..]) {
        Ok(_) => partial.checked = partial.payload.len(),
        Err(e) if e.error_len().is_none() => partial.checked += e.valid_up_to(),
        Err(_) => return Err(invalid_utf8()),
    }
    Ok(())
}

fn whole(text: bool, payload: Vec<u8>) -> Result<Message, ProtocolError> {
    if !text {
        return Ok(Message::Binary(payload));
    }
    String::from_utf8(payload)
        .map(Message::Text)
        .map_err(|_| invalid_utf8())
}

fn close_frame(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(protocol("close frame with a 1-byte payload")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !valid_close_code(code) {
                return Err(protocol("close frame with an invalid status code"));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError {
                code: code::INVALID_PAYLOAD,
                reason: "close reason is not valid UTF-8",
            })?;
            Ok(Some(CloseFrame {
                code,
                reason: reason.to_owned(),
            }))
        }
    }
}

/// XORs `bytes` with the masking key, `offset` being the position of `bytes[0]` in the payload.
fn unmask(bytes: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut key = mask;
    key.rotate_left(offset % 4);
    let word = u32::from_ne_bytes(key);
    let mut chunks = bytes.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let value = u32::from_ne_bytes((&*chunk).try_into().expect("4 bytes")) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key) {
        *byte ^= k;
    }
}

/// Appends one final frame carrying `payload` to `out`, masked with `mask` (a client's frames
/// must be masked, a server's must not).
pub fn encode(opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    encode_frame(opcode, true, payload, mask, out)
}

/// Appends one frame to `out`; `fin: false` sends a fragment (`OpCode::Continuation` follows).
pub fn encode_frame(
    opcode: OpCode,
    fin: bool,
    payload: &[u8],
    mask: Option<[u8; 4]>,
    out: &mut Vec<u8>,
) {
    let len = payload.len();
    out.reserve(14 + len);
    out.push(u8::from(fin) << 7 | opcode as u8);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match len {
        0..=125 => out.push(mask_bit | len as u8),
        126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    let start = out.len();
    if let Some(mask) = mask {
        out.extend_from_slice(&mask);
    }
    out.extend_from_slice(payload);
    if let Some(mask) = mask {
        unmask(&mut out[start + 4..], mask, 0);
    }
}

/// Appends a Close frame; the reason is cut to fit a control frame (123 bytes, at a character
/// boundary).
pub fn encode_close(code: u16, reason: &str, mask: Option<[u8; 4]>, out: &mut Vec<u8>) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode(OpCode::Close, &payload, mask, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_is_rfc_6455s_example() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert!(valid_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!valid_key(b"dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!valid_key(b"not base64 at all!!!!!!!"));
    }

    #[test]
    fn unmask_at_any_offset_is_its_own_inverse() {
        let data: Vec<u8> = (0..=255).collect();
        for offset in 0..4 {
            let mut bytes = data.clone();
            unmask(&mut bytes, [1, 2, 3, 4], offset);
            for (i, b) in bytes.iter().enumerate() {
                assert_eq!(*b, data[i] ^ [1, 2, 3, 4][(i + offset) % 4]);
            }
        }
    }
}
