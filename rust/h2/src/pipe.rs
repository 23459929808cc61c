//! The transport h2 sees: bytes fed in by the caller, bytes written out kept for the caller.
//! Reading what is not there yet is Pending (the caller polls again after feeding more).
//! Writing when [`OUTBOX_LIMIT`] bytes wait for the caller is Pending too: h2 then stops
//! reading frames (it makes sure it can write before it reads), so a peer that does not read
//! what it asked for (PING and SETTINGS acknowledgements, responses) stops being heard, and the
//! caller stops feeding once [`Pipe::unread`] grows.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes waiting for the caller past which h2's writes wait.
pub const OUTBOX_LIMIT: usize = 256 * 1024;

/// PING and SETTINGS frames (each owed an acknowledgement) a peer may send at once, and how
/// many more per second: past that, the connection is flooded.
const CONTROL_BURST: f64 = 1000.0;
const CONTROL_PER_SECOND: f64 = 100.0;

#[derive(Default)]
struct Buffers {
    inbox: Vec<u8>,
    /// How much of `inbox` h2 has read.
    read: usize,
    outbox: Vec<u8>,
    eof: bool,
    scan: FrameScan,
}

/// Follows the frame headers in the bytes the peer sends, to count the frames that each cost
/// an acknowledgement: a token bucket of [`CONTROL_BURST`] refilled at [`CONTROL_PER_SECOND`].
struct FrameScan {
    /// Bytes of the client's connection preface still to skip.
    preface: usize,
    /// Bytes of the current frame's payload still to skip.
    payload: usize,
    header: Vec<u8>,
    tokens: f64,
    refilled: std::time::Instant,
    flooded: bool,
}

impl Default for FrameScan {
    fn default() -> Self {
        Self {
            preface: 24,
            payload: 0,
            header: Vec::with_capacity(9),
            tokens: CONTROL_BURST,
            refilled: std::time::Instant::now(),
            flooded: false,
        }
    }
}

impl FrameScan {
    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && !self.flooded {
            if self.preface > 0 {
                let n = self.preface.min(bytes.len());
                self.preface -= n;
                bytes = &bytes[n..];
            } else if self.payload > 0 {
                let n = self.payload.min(bytes.len());
                self.payload -= n;
                bytes = &bytes[n..];
            } else {
                let n = (9 - self.header.len()).min(bytes.len());
                self.header.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                if self.header.len() == 9 {
                    let h = &self.header;
                    self.payload =
                        usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                    let (kind, flags) = (h[3], h[4]);
                    // PING (6) and SETTINGS (4) without ACK (0x1) are each owed an answer.
                    if (kind == 4 || kind == 6) && flags & 1 == 0 {
                        self.take_token();
                    }
                    self.header.clear();
                }
            }
        }
    }

    fn take_token(&mut self) {
        let now = std::time::Instant::now();
        let refill = now.duration_since(self.refilled).as_secs_f64() * CONTROL_PER_SECOND;
        self.tokens = (self.tokens + refill).min(CONTROL_BURST);
        self.refilled = now;
        self.tokens -= 1.0;
        if self.tokens < 0.0 {
            self.flooded = true;
        }
    }
}

/// Both ends share the buffers: h2 owns one clone, the server the other. (A mutex only to be
/// `Send`: a connection lives on its fiber's thread, so it is never contended.)
#[derive(Default, Clone)]
pub(crate) struct Pipe(Arc<Mutex<Buffers>>);

impl Pipe {
    fn buffers(&self) -> MutexGuard<'_, Buffers> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes from the transport; none means it ended. Whether the peer has flooded the
    /// connection with frames that each want an acknowledgement.
    pub(crate) fn feed(&self, bytes: &[u8]) -> bool {
        let mut buffers = self.buffers();
        if bytes.is_empty() {
            buffers.eof = true;
            return buffers.scan.flooded;
        }
        buffers.scan.scan(bytes);
        let read = buffers.read;
        buffers.inbox.drain(..read);
        buffers.read = 0;
        buffers.inbox.extend_from_slice(bytes);
        buffers.scan.flooded
    }

    pub(crate) fn drain(&self, out: &mut Vec<u8>) {
        out.append(&mut self.buffers().outbox);
    }

    /// Bytes fed that h2 has not read yet.
    pub(crate) fn unread(&self) -> usize {
        let buffers = self.buffers();
        buffers.inbox.len() - buffers.read
    }

    /// Bytes h2 wrote that the caller has not taken yet.
    pub(crate) fn unsent(&self) -> usize {
        self.buffers().outbox.len()
    }
}

impl AsyncRead for Pipe {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut buffers = self.buffers();
        let available = &buffers.inbox[buffers.read..];
        if available.is_empty() {
            return if buffers.eof {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            };
        }
        let n = available.len().min(buf.remaining());
        buf.put_slice(&available[..n]);
        buffers.read += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut buffers = self.buffers();
        if buffers.outbox.len() >= OUTBOX_LIMIT {
            return Poll::Pending; // (polled again once the caller has drained the outbox)
        }
        buffers.outbox.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
