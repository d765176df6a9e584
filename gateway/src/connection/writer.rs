//! Server → client: the greeting and what a resuming client missed, batches from the queue (one
//! `write` per batch, duplicates of replayed notifications dropped by position), heartbeats,
//! replies, and the close frame.

use super::socket::Socket;
use super::{CLOSE_WAIT, CloseCode, Connection, Delivery, Ending, Outbound, Since};
use crate::api_client::ReplayError;
use fastwebsockets::{Frame, OpCode, Payload, WebSocket, WebSocketError};
use herald_core::wire::{Notification, ServerMessage};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

/// Items taken from the queue per flush at most.
const BATCH: usize = 64;
/// How long one flush may stall on a client that does not read before it is dropped.
const WRITE_STALL: Duration = Duration::from_secs(10);
/// How long a new connection waits for its Redis subscriptions.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(5);

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Subscribe first, then greet (so anything published after the greeting arrives), then
    /// send what was missed, then de-duplicate against live frames by position.
    pub(super) async fn open(
        &mut self,
        ready: Vec<oneshot::Receiver<()>>,
        since: Option<Since>,
    ) -> Result<(), Ending> {
        let subscribed = tokio::time::timeout(SUBSCRIBE_WAIT, async {
            for r in ready {
                let _ = r.await;
            }
        })
        .await
        .is_ok();
        let greeting = ServerMessage::ConnectionEstablished {
            message: "Connected to notification service".to_owned(),
            user_id: self.grant.claims.sub.clone(),
        };
        self.write_now(greeting.to_json().as_bytes()).await?;
        let mut refetch = (!subscribed).then_some("subscription not ready");
        match since {
            None => {}
            Some(Since::Invalid) => refetch = Some("since is not a notification id"),
            Some(Since::Id(id)) => {
                let ctx = self.ctx.clone();
                match ctx.api.replay(&self.grant.token, id, ctx.replay_max).await {
                    Ok(missed) => {
                        for n in missed {
                            self.write(&replayed(n)).await.map_err(gone)?;
                        }
                    }
                    Err(ReplayError::Unknown) => {
                        refetch = Some("cannot resume from that notification");
                    }
                    Err(ReplayError::TooMany) => refetch = Some("too many missed notifications"),
                    Err(ReplayError::Unavailable(why)) => {
                        tracing::warn!(cause = %why, "resume read failed");
                        refetch = Some("could not replay missed notifications");
                    }
                }
            }
        }
        if let Some(reason) = refetch {
            let frame = ServerMessage::Refetch {
                reason: reason.to_owned(),
            };
            self.write(&Delivery {
                bytes: frame.to_json().into(),
                seq: None,
            })
            .await
            .map_err(gone)?;
        }
        self.flush().await.map_err(gone)
    }

    /// Writes `first` and whatever else is queued (up to [`BATCH`] items), then flushes them in
    /// one write. A client that stops reading blocks the flush; its queue then fills and the hub
    /// kicks it, which ends the connection at once, not after [`WRITE_STALL`].
    pub(super) async fn write_batch(&mut self, first: Outbound) -> Result<(), Ending> {
        let mut next = Some(first);
        let (mut n, mut delivered, mut duplicates) = (0, 0, 0);
        while let Some(out) = next.take() {
            let mut failed = false;
            for d in out.deliveries() {
                match self.write(d).await {
                    Ok(true) => delivered += 1,
                    Ok(false) => duplicates += 1,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            self.shared.written(out.counted());
            if failed {
                return Err(Ending::Gone);
            }
            n += 1;
            if n < BATCH {
                next = self.queue.try_pop();
            }
        }
        // One update per batch: a shared counter touched per frame by every connection costs
        // more than the frame.
        let metrics = &self.ctx.metrics;
        metrics.delivered.inc_by(delivered);
        if duplicates > 0 {
            metrics
                .dropped
                .with_label_values(&["duplicate"])
                .inc_by(duplicates);
        }
        let flushed = tokio::select! {
            r = flush(&mut self.ws) => r.is_ok(),
            _ = self.shared.kicked.notified() => false,
        };
        if flushed {
            return Ok(());
        }
        // What is already buffered goes first (a frame may be half written), then the close
        // frame: a client that reads again within CLOSE_WAIT learns why.
        Err(Ending::Close(self.shared.kick_code().unwrap_or_else(
            || {
                self.shared.kick(CloseCode::SlowConsumer);
                metrics.slow_closes.inc();
                CloseCode::SlowConsumer
            },
        )))
    }

    /// Writes a frame unless it is a notification already delivered (by position); `Ok(false)`
    /// when skipped as a duplicate. Nothing leaves before [`Connection::flush`].
    async fn write(&mut self, d: &Delivery) -> Result<bool, WebSocketError> {
        if let Some(seq) = d.seq {
            if seq <= self.last_seq {
                return Ok(false);
            }
            self.last_seq = seq;
        }
        self.ws
            .write_frame(Frame::text(Payload::Borrowed(&d.bytes)))
            .await?;
        Ok(true)
    }

    /// A text frame, sent now.
    pub(super) async fn write_now(&mut self, text: &[u8]) -> Result<(), Ending> {
        self.send_now(Frame::text(Payload::Borrowed(text))).await
    }

    pub(super) async fn write_pong(&mut self, payload: &[u8]) -> Result<(), Ending> {
        self.send_now(Frame::pong(Payload::Borrowed(payload))).await
    }

    /// A heartbeat: the client's pong (or any frame) shows it is still there.
    pub(super) async fn ping(&mut self) -> Result<(), Ending> {
        let ping = Frame::new(true, OpCode::Ping, None, Payload::Borrowed(b""));
        self.send_now(ping).await
    }

    /// Writes one frame and flushes it, behind whatever was already buffered.
    async fn send_now(&mut self, frame: Frame<'_>) -> Result<(), Ending> {
        self.ws.write_frame(frame).await.map_err(gone)?;
        self.flush().await.map_err(gone)
    }

    async fn flush(&mut self) -> Result<(), WebSocketError> {
        flush(&mut self.ws).await
    }

    /// Writes the close frame after whatever is still buffered, waiting at most [`CLOSE_WAIT`]
    /// for a client that is not reading.
    pub(super) async fn close_with(&mut self, code: CloseCode) -> Result<(), WebSocketError> {
        let ws = &mut self.ws;
        tokio::time::timeout(CLOSE_WAIT, async {
            ws.write_frame(Frame::close(code.code(), code.reason().as_bytes()))
                .await?;
            ws.flush().await
        })
        .await
        .unwrap_or(Err(WebSocketError::ConnectionClosed))
    }
}

/// Flushes pending frames; a client that does not read for [`WRITE_STALL`] is given up on.
async fn flush<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocket<Socket<S>>,
) -> Result<(), WebSocketError> {
    match tokio::time::timeout(WRITE_STALL, ws.flush()).await {
        Ok(r) => r,
        Err(_) => Err(WebSocketError::ConnectionClosed),
    }
}

fn gone(_: WebSocketError) -> Ending {
    Ending::Gone
}

fn replayed(n: Notification) -> Delivery {
    let seq = n.seq;
    Delivery {
        bytes: ServerMessage::NewNotification { notification: n }
            .to_json()
            .into(),
        seq: Some(seq),
    }
}
