//! The connection's socket, as the WebSocket layer sees it. Three jobs, each about holding no
//! memory while a connection is idle:
//!
//! - **Readiness without a buffer.** fastwebsockets' `read_frame` is not cancel-safe, so the
//!   connection cannot wait in it beside its queue and timers. It waits in [`Socket::readable`]
//!   instead: a one-byte read kept in the socket (not in the future), handed back by the next read.
//!   Only then is a frame read, by a future that exists while that frame arrives.
//! - **Coalesced writes.** fastwebsockets writes each frame with its own syscall; we measured ~7 µs
//!   of CPU per small write here, so frames queued for one connection leave together at the next
//!   flush. Unlike tokio's `BufWriter` the buffer exists only while frames are pending.
//! - **A clean end.** A TCP socket closed with unread bytes sends RST instead of FIN, and the
//!   kernel then throws away what it had not sent yet, our close frame included: behind nginx the
//!   browser would see 1006 instead of 1009 or 4000. [`Socket::linger`] shuts down writing once the
//!   close handshake is complete, reads and discards what the peer still sends, then closes.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Above this many buffered bytes a write first flushes what is pending.
const HIGH_WATER: usize = 64 * 1024;

pub struct Socket<S> {
    io: S,
    /// The byte [`Socket::readable`] read ahead, not yet handed to a reader.
    peeked: Option<u8>,
    /// Set once a readiness read saw the end of the stream.
    eof: bool,
    out: Vec<u8>,
    sent: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Socket<S> {
    pub fn new(io: S) -> Self {
        Self {
            io,
            peeked: None,
            eof: false,
            out: Vec::new(),
            sent: 0,
        }
    }

    /// Waits until a read would return something (data, the end of the stream, or an error)
    /// without holding a buffer while waiting. Cancel-safe: what it reads stays in the socket.
    pub async fn readable(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_readable(cx)).await
    }

    fn poll_readable(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.peeked.is_some() || self.eof {
            return Poll::Ready(Ok(()));
        }
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf))?;
        match buf.filled() {
            [b] => self.peeked = Some(*b),
            _ => self.eof = true,
        }
        Poll::Ready(Ok(()))
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.out.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        // Freed, not kept: an idle connection holds no write buffer (one allocation per flush
        // costs far less than the write it goes with).
        self.sent = 0;
        self.out = Vec::new();
        Poll::Ready(Ok(()))
    }

    /// Ends the connection without losing what was written: when the close handshake is
    /// `complete` (both close frames exchanged) writing is shut down first (FIN), so a proxy
    /// sees the end at once; then whatever the peer still sends is read and discarded until it
    /// closes its side or `within` passes. Dropping the socket then closes it with an empty
    /// receive buffer: FIN, never RST.
    pub async fn linger(mut self, complete: bool, within: Duration) {
        let _ = tokio::time::timeout(within, async {
            if complete {
                let _ = self.shutdown().await;
            }
            // On the heap, and only now: an array here would sit in every connection's future.
            let mut sink = vec![0u8; 1024];
            while let Ok(n) = self.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Socket<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.eof {
            return Poll::Ready(Ok(()));
        }
        if let Some(b) = self.peeked {
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            buf.put_slice(&[b]);
            self.peeked = None;
            // Whatever else has arrived comes along, if it is there now (an error shows again
            // at the next read).
            let _ = Pin::new(&mut self.io).poll_read(cx, buf);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Socket<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.out.len() >= HIGH_WATER {
            ready!(self.poll_drain(cx))?;
        }
        self.out.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.out.len() >= HIGH_WATER {
            ready!(self.poll_drain(cx))?;
        }
        let mut n = 0;
        for b in bufs {
            self.out.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_leave_together_on_flush_and_the_buffer_is_released() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = Socket::new(a);
        w.write_all(b"one").await.unwrap();
        w.write_all(&[b'x'; 10_000]).await.unwrap();
        assert_eq!(w.out.len(), 10_003, "nothing leaves before the flush");
        w.flush().await.unwrap();
        assert_eq!(
            w.out.capacity(),
            0,
            "a large buffer is freed after the flush"
        );
        let mut got = vec![0u8; 10_003];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..3], b"one");
    }

    #[tokio::test]
    async fn readiness_is_cancel_safe_and_loses_no_byte() {
        let (a, mut b) = tokio::io::duplex(64);
        let mut s = Socket::new(a);
        // Cancelled while nothing has arrived: nothing is lost or invented.
        assert!(
            tokio::time::timeout(Duration::from_millis(10), s.readable())
                .await
                .is_err()
        );
        b.write_all(b"hello").await.unwrap();
        s.readable().await.unwrap();
        s.readable().await.unwrap();
        let mut got = [0u8; 5];
        s.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        drop(b);
        s.readable().await.unwrap();
        assert_eq!(s.read(&mut got).await.unwrap(), 0, "the end is seen");
    }

    #[tokio::test]
    async fn linger_shuts_down_writing_and_drains_what_the_peer_still_sends() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut s = Socket::new(ours);
        s.write_all(b"close").await.unwrap();
        let peer = tokio::spawn(async move {
            let mut got = Vec::new();
            // 4 KiB through a 64-byte pipe: only possible if the other side keeps reading.
            theirs.write_all(&[7u8; 4096]).await.unwrap();
            theirs.read_to_end(&mut got).await.unwrap();
            theirs.shutdown().await.unwrap();
            got
        });
        s.linger(true, Duration::from_secs(5)).await;
        assert_eq!(peer.await.unwrap(), b"close", "EOF after what was written");
    }
}
