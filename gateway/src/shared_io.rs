//! The upgraded socket, shared by a connection's reader, its writer and the closing handshake.
//!
//! fastwebsockets' split halves cannot be given back, yet after they are done the socket still
//! has a job: a TCP socket closed with unread bytes in its receive buffer sends RST instead of
//! FIN, and the kernel then throws away what it had not sent yet, our close frame included.
//! Behind nginx the browser sees 1006 instead of 1009 or 4000. So the connection keeps a third
//! handle ([`SharedIo`]) and ends with [`SharedIo::linger`]: shut down writing once the close
//! handshake is complete, read and discard what the peer still sends, then close.
//!
//! Like `tokio::io::split`, each half locks the socket only for the duration of one poll; the
//! read and write directions register separate wakers, so the halves never wait on each other.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// A handle on the socket; clone it for each user.
pub struct SharedIo<S> {
    inner: Arc<Mutex<S>>,
}

impl<S> Clone for SharedIo<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> SharedIo<S> {
    pub fn new(io: S) -> Self {
        Self {
            inner: Arc::new(Mutex::new(io)),
        }
    }

    fn io(&self) -> MutexGuard<'_, S> {
        self.inner.lock().expect("socket lock")
    }

    /// Ends the connection without losing what was written: when the close handshake is
    /// `complete` (both close frames exchanged) writing is shut down first (FIN), so a proxy
    /// sees the end at once; then whatever the peer still sends is read and discarded until it
    /// closes its side or `within` passes. Dropping the last handle then closes with an empty
    /// receive buffer: FIN, never RST.
    pub async fn linger(self, complete: bool, within: Duration) {
        let mut io = self;
        let _ = tokio::time::timeout(within, async {
            if complete {
                let _ = std::future::poll_fn(|cx| Pin::new(&mut *io.io()).poll_shutdown(cx)).await;
            }
            // On the heap, and only now: an array here would sit in every connection's future.
            let mut sink = vec![0u8; 1024];
            while let Ok(n) = io.read(&mut sink).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SharedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut io = self.inner.lock().expect("socket lock");
        Pin::new(&mut *io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SharedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut io = self.inner.lock().expect("socket lock");
        Pin::new(&mut *io).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let mut io = self.inner.lock().expect("socket lock");
        Pin::new(&mut *io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.lock().expect("socket lock").is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut io = self.inner.lock().expect("socket lock");
        Pin::new(&mut *io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut io = self.inner.lock().expect("socket lock");
        Pin::new(&mut *io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn linger_shuts_down_writing_and_drains_what_the_peer_still_sends() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let io = SharedIo::new(ours);
        let mut writer = io.clone();
        writer.write_all(b"close").await.unwrap();
        let peer = tokio::spawn(async move {
            let mut got = Vec::new();
            // 4 KiB through a 64-byte pipe: only possible if the other side keeps reading.
            theirs.write_all(&[7u8; 4096]).await.unwrap();
            theirs.read_to_end(&mut got).await.unwrap();
            theirs.shutdown().await.unwrap();
            got
        });
        drop(writer);
        io.linger(true, Duration::from_secs(5)).await;
        assert_eq!(peer.await.unwrap(), b"close", "EOF after what was written");
    }
}
