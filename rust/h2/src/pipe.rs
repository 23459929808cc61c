//! The transport h2 sees: bytes fed in by the caller, bytes written out kept for the caller.
//! Reading what is not there yet is Pending (the caller polls again after feeding more).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Default)]
struct Buffers {
    inbox: Vec<u8>,
    /// How much of `inbox` h2 has read.
    read: usize,
    outbox: Vec<u8>,
    eof: bool,
}

/// Both ends share the buffers: h2 owns one clone, the server the other. (A mutex only to be
/// `Send`: a connection lives on its fiber's thread, so it is never contended.)
#[derive(Default, Clone)]
pub(crate) struct Pipe(Arc<Mutex<Buffers>>);

impl Pipe {
    fn buffers(&self) -> MutexGuard<'_, Buffers> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes from the transport; none means it ended.
    pub(crate) fn feed(&self, bytes: &[u8]) {
        let mut buffers = self.buffers();
        if bytes.is_empty() {
            buffers.eof = true;
            return;
        }
        let read = buffers.read;
        buffers.inbox.drain(..read);
        buffers.read = 0;
        buffers.inbox.extend_from_slice(bytes);
    }

    pub(crate) fn drain(&self, out: &mut Vec<u8>) {
        out.append(&mut self.buffers().outbox);
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
        self.buffers().outbox.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
