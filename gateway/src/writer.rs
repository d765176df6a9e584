//! A write half that coalesces: frames written between two flushes leave in one `write` call.
//!
//! fastwebsockets writes each frame with its own syscall; we measured ~7 µs of CPU per
//! small write here, so queued frames for one connection must leave together. Unlike tokio's
//! `BufWriter`, this buffer is allocated only while frames are pending and released after a large
//! flush, so an idle connection holds no write buffer at all.

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::AsyncWrite;

/// Above this many buffered bytes a write first flushes what is pending.
const HIGH_WATER: usize = 64 * 1024;
/// After a flush, a buffer that grew beyond this is freed rather than kept.
const KEEP: usize = 4 * 1024;

pub struct Coalescing<W> {
    inner: W,
    buf: Vec<u8>,
    sent: usize,
}

impl<W: AsyncWrite + Unpin> Coalescing<W> {
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buf: Vec::new(),
            sent: 0,
        }
    }

    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.sent < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        self.sent = 0;
        if self.buf.capacity() > KEEP {
            self.buf = Vec::new();
        } else {
            self.buf.clear();
        }
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Coalescing<W> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.buf.len() >= HIGH_WATER {
            ready!(self.poll_drain(cx))?;
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if self.buf.len() >= HIGH_WATER {
            ready!(self.poll_drain(cx))?;
        }
        let mut n = 0;
        for b in bufs {
            self.buf.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn frames_leave_together_on_flush_and_the_buffer_is_released() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = Coalescing::new(a);
        w.write_all(b"one").await.unwrap();
        w.write_all(&[b'x'; 10_000]).await.unwrap();
        assert_eq!(w.buf.len(), 10_003, "nothing leaves before the flush");
        w.flush().await.unwrap();
        assert_eq!(
            w.buf.capacity(),
            0,
            "a large buffer is freed after the flush"
        );
        let mut got = vec![0u8; 10_003];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got[..3], b"one");
    }
}
