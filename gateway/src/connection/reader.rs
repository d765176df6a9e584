//! Client → server: one frame at a time, read once its first byte is there. Frames are checked
//! (masking, control frames, close codes, UTF-8), fragments reassembled under the size cap,
//! messages rate-limited, and text commands acted on; replies are written at once.

use super::commands::{self, Command};
use super::frames::{self, Assembler, Message};
use super::{CloseCode, Connection, Context, Ending, Outbound, Outbox};
use crate::api_client::MarkRead;
use bytes::Bytes;
use fastwebsockets::OpCode;
use herald_core::wire::ServerMessage;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// Once a frame has begun to arrive, how long the rest may take. The connection sends nothing
/// while it waits, so a client that starts a frame and stalls holds up only itself, and only
/// this long.
const FRAME_WAIT: Duration = Duration::from_secs(10);

/// The reading side's state.
pub(super) struct Reader {
    assembler: Assembler,
    bucket: Bucket,
    /// When the client was last heard from (any frame).
    pub heard: Instant,
}

impl Reader {
    pub fn new(ctx: &Context) -> Self {
        Self {
            assembler: Assembler::new(ctx.max_message_bytes),
            bucket: Bucket::new(ctx.max_messages_per_sec),
            heard: Instant::now(),
        }
    }
}

/// What a message is answered with, at once.
enum Reply {
    Pong(Vec<u8>),
    Text(Bytes),
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Reads the frame whose first byte has arrived and acts on it; `Some` when the connection
    /// ends because of it.
    pub(super) async fn read_frame(&mut self) -> Option<Ending> {
        // Boxed: the frame read's future exists only while a frame arrives.
        let frame = match tokio::time::timeout(FRAME_WAIT, Box::pin(self.ws.read_frame())).await {
            Ok(Ok(f)) => f,
            Ok(Err(e)) => {
                return Some(match frames::close_code_for(&e) {
                    Some(code) => Ending::Violation(code),
                    None => Ending::Gone,
                });
            }
            Err(_) => return Some(Ending::Violation(CloseCode::PolicyViolation)),
        };
        let mut frame = frame;
        self.reader.heard = Instant::now();
        if !frames::is_masked(&mut frame) {
            return Some(Ending::Violation(CloseCode::ProtocolError));
        }
        let message = match self
            .reader
            .assembler
            .push(frame.fin, frame.opcode, &frame.payload)
        {
            Ok(Some(m)) => m,
            Ok(None) => return None,
            Err(v) => return Some(Ending::Violation(v.0)),
        };
        drop(frame);
        let reply = match message {
            // Control frames count against the message rate too: past it a ping gets no pong
            // (answering a flood would make the gateway send one frame per frame received).
            Message::Ping(_) if !self.reader.bucket.take() => {
                self.ctx
                    .metrics
                    .dropped
                    .with_label_values(&["rate_limited"])
                    .inc();
                None
            }
            Message::Ping(payload) => Some(Reply::Pong(payload)),
            Message::Pong => {
                let _ = self.reader.bucket.take();
                None
            }
            Message::Close(code) => return Some(Ending::ClientClosed(code)),
            Message::Binary => Some(error_text("binary messages are not supported")),
            Message::Text(_) if !self.reader.bucket.take() => {
                Some(error_text("too many messages: slow down"))
            }
            Message::Text(t) => self.command(&t),
        };
        let written = match reply {
            None => return None,
            Some(Reply::Pong(p)) => self.write_pong(&p).await,
            Some(Reply::Text(bytes)) => self.write_now(&bytes).await,
        };
        written.err()
    }

    /// After our close frame: reads until the client's (true) or anything else ends the stream.
    pub(super) async fn await_close(&mut self) -> bool {
        loop {
            match self.ws.read_frame().await {
                Ok(f) if f.opcode == OpCode::Close => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    /// Acts on one text command; returns the immediate reply, if any.
    fn command(&mut self, text: &str) -> Option<Reply> {
        let (kind, notification) = match commands::parse(text) {
            Command::Ping => return Some(Reply::Text(Bytes::from_static(b"pong"))),
            Command::MarkRead(n) => ("mark_read", n),
            Command::Ack(n) => ("ack", n),
            Command::Auth(fresh) => return Some(Reply::Text(self.refresh(fresh))),
            Command::Invalid(why) => return Some(error_text(why)),
            Command::Unknown => return Some(error_text("unknown command")),
        };
        spawn_api_call(
            self.ctx.clone(),
            self.queue.clone(),
            self.grant.token.clone(),
            kind,
            notification,
        );
        None
    }

    /// `auth:<jwt>`: the fresh token's grant replaces the connection's (same user only); the
    /// answer is `token_refreshed`, sent after the channels of dropped roles were left.
    fn refresh(&mut self, fresh: &str) -> Bytes {
        let ctx = &self.ctx;
        let answer = match ctx.verifier.verify(fresh) {
            Ok(claims) => match self.grant.refresh(ctx, self.id, fresh, claims) {
                Ok(exp) => ServerMessage::TokenRefreshed { exp },
                Err(e) => error(&e.to_string()),
            },
            Err(e) => {
                ctx.metrics.auth_failure(e.reason());
                error(&format!("token refused: {e}"))
            }
        };
        Bytes::from(answer.to_json())
    }
}

/// `mark_read` and `ack` go to the api in a task of their own; only a failure is answered (an
/// `error` frame through the queue), success shows as the `marked_read` event.
fn spawn_api_call(
    ctx: Arc<Context>,
    queue: Outbox,
    token: String,
    kind: &'static str,
    notification: uuid::Uuid,
) {
    tokio::spawn(async move {
        let done = if kind == "ack" {
            ctx.api.mark_seen(&token, notification).await
        } else {
            ctx.api.mark_read(&token, notification).await
        };
        let answer = match done {
            MarkRead::Done => return,
            MarkRead::NotFound => "Notification not found",
            MarkRead::Failed(why) => {
                tracing::warn!(cause = %why, command = kind, "the api call failed");
                "could not record that, try again"
            }
        };
        let _ = queue.try_push(Outbound::frame(super::Delivery {
            bytes: Bytes::from(error(answer).to_json()),
            seq: None,
        }));
    });
}

fn error(message: &str) -> ServerMessage {
    ServerMessage::Error {
        message: message.to_owned(),
    }
}

fn error_text(message: &str) -> Reply {
    Reply::Text(Bytes::from(error(message).to_json()))
}

/// Allows `rate` messages per second with bursts of `2 × rate`.
struct Bucket {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Self {
        let rate = f64::from(rate.max(1));
        Self {
            rate,
            tokens: rate * 2.0,
            at: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate)
            .min(self.rate * 2.0);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}
