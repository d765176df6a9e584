//! One WebSocket connection: a reader task (client → server: commands, pings, close) and the
//! writer (server → client: greeting, replay, live frames, heartbeat, close), which runs in the
//! connection's own task; they own the two halves of the socket. fastwebsockets' `read_frame` is
//! not cancel-safe, so the reader never sits in a `select!`; everything that must interrupt a
//! connection goes through the writer (the reader too asks it, with a kick), which closes the
//! socket and so ends the reader.
//!
//! Protocol (docs/websocket.md): text `ping` → `pong`; `mark_read:<id>` → persisted through the api, then
//! `marked_read` reaches every tab through Redis; `ack:<id>` → the notification counts as seen
//! (email-if-unseen); `auth:<jwt>` → a fresh token for the same user (the connection then
//! outlives the old token's expiry). Anything else → an `error` frame.

use crate::api_client::{ApiClient, MarkRead, ReplayError};
use crate::commands::{self, Command};
use crate::frames::{self, Assembler, Message};
use crate::hub::{Admission, ConnId, ConnShared, Delivery, Hub, Outbound, Outbox, close};
use crate::liveness::LastHeard;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::shared_io::SharedIo;
use crate::writer::Coalescing;
use bytes::Bytes;
use fastwebsockets::{Frame, Payload, WebSocket, WebSocketError, WebSocketRead, WebSocketWrite};
use herald_core::auth::{Claims, RefreshError, Verifier, until_exp};
use herald_core::keys::Keys;
use herald_core::wire::{Notification, ServerMessage};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use uuid::Uuid;

/// Frames written per flush at most.
const BATCH: usize = 64;
/// How long one flush may stall on a client that does not read before it is dropped.
const WRITE_STALL: Duration = Duration::from_secs(10);
/// How long a new connection waits for its Redis subscriptions.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(5);
/// How long a close frame may wait for a client that is not reading (a slow client cut at its
/// queue bound gets its 4000 if it reads again within this time).
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// After the close frames, how long the socket is drained before it is closed (so it ends with
/// FIN, not RST, and the close frame is not thrown away on the way).
pub const LINGER: Duration = Duration::from_secs(2);

/// What every connection on this node shares.
pub struct Context {
    pub hub: Arc<Hub>,
    pub keys: Keys,
    pub api: ApiClient,
    pub verifier: Verifier,
    pub metrics: Metrics,
    pub max_message_bytes: usize,
    pub max_messages_per_sec: u32,
    pub outbound_queue: usize,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub replay_max: usize,
}

/// Where a resuming client says it left off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    Id(Uuid),
    /// `since` was given but is not a notification id.
    Invalid,
}

/// A verified client, ready to be served.
pub struct Session {
    pub claims: Claims,
    pub token: String,
    pub since: Option<Since>,
}

/// What the connection's current token grants (user, roles, expiry; its channels follow from
/// it). An `auth:<jwt>` refresh replaces all of it at once.
struct Grant {
    token: String,
    claims: Claims,
    /// When the token expires, on tokio's clock (so paused-time tests see the same deadline
    /// the code does).
    deadline: Instant,
}

struct GrantState(Mutex<Grant>);

impl GrantState {
    fn new(token: String, claims: Claims) -> Self {
        let deadline = Instant::now() + until_exp(claims.exp);
        Self(Mutex::new(Grant {
            token,
            claims,
            deadline,
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Grant> {
        self.0.lock().expect("grant lock")
    }

    fn current(&self) -> String {
        self.lock().token.clone()
    }

    fn deadline(&self) -> Instant {
        self.lock().deadline
    }

    fn channels(&self, keys: &Keys) -> Vec<String> {
        self.lock().claims.channels(keys)
    }

    /// Replaces the grant with a fresh token's (same user only): channels of roles it no longer
    /// carries are left before this returns, new ones joined.
    fn refresh(
        &self,
        ctx: &Context,
        id: ConnId,
        token: &str,
        fresh: Claims,
    ) -> Result<u64, RefreshError> {
        let mut grant = self.lock();
        let claims = grant.claims.refresh(fresh)?;
        // Not awaited: a role joined now is live once subscribed, like at the handshake.
        let _ready = ctx.hub.regrant(
            id,
            &grant.claims.channels(&ctx.keys),
            &claims.channels(&ctx.keys),
        );
        let exp = claims.exp;
        *grant = Grant {
            token: token.to_owned(),
            deadline: Instant::now() + until_exp(exp),
            claims,
        };
        Ok(exp)
    }
}

fn text(message: &ServerMessage) -> Delivery {
    Delivery {
        bytes: Bytes::from(message.to_json()),
        seq: None,
    }
}

fn error_frame(message: &str) -> Delivery {
    text(&ServerMessage::Error {
        message: message.to_owned(),
    })
}

/// Serves one upgraded connection until it ends.
pub async fn serve<S>(
    mut ws: WebSocket<S>,
    session: Session,
    admission: Admission,
    ctx: Arc<Context>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    ws.set_auto_pong(false);
    ws.set_auto_close(false);
    // fastwebsockets checks size per frame (`len >= max`); the assembler checks the total.
    ws.set_max_message_size(ctx.max_message_bytes + 1);
    ws.set_writev(true);
    ws.set_writev_threshold(0);
    let socket = std::cell::OnceCell::new();
    let (read, write) = ws.split(|s| {
        let io = SharedIo::new(s);
        let _ = socket.set(io.clone());
        (io.clone(), Coalescing::new(io))
    });
    let socket = socket.into_inner().expect("split hands over the socket");

    let channels = session.claims.channels(&ctx.keys);
    let tx = Queue::new(ctx.outbound_queue);
    let rx = tx.clone();
    let shared = Arc::new(ConnShared::default());
    let (id, ready) = ctx.hub.join(&channels, tx.clone(), shared.clone());
    ctx.metrics.connections.inc();

    let user = session.claims.sub.clone();
    let token = Arc::new(GrantState::new(session.token, session.claims));
    let liveness = Arc::new(LastHeard::default());

    // The reader is a task of its own (fastwebsockets' read_frame is not cancel-safe, so it never
    // sits in a select!); the writer runs here, in the connection's task, and ends the
    // connection: when the reader ends it asks the writer to say goodbye (a kick).
    let mut reader = tokio::spawn(read_loop(
        read,
        tx,
        ctx.clone(),
        token.clone(),
        liveness.clone(),
        shared.clone(),
        id,
    ));
    write_loop(
        write,
        rx,
        ready,
        ctx.clone(),
        shared,
        token.clone(),
        liveness,
        user,
        session.since,
    )
    .await;
    // Give the client a moment to answer our close (or see what ended the reader), then stop
    // reading. Whether both close frames were exchanged decides how the socket is closed.
    let complete = match tokio::time::timeout(Duration::from_secs(1), &mut reader).await {
        Ok(Ok(ReadEnd::Closed(_))) => true,
        Ok(_) => false,
        Err(_) => {
            reader.abort();
            false
        }
    };
    ctx.hub.leave(id, &token.channels(&ctx.keys));
    ctx.metrics.connections.dec();
    drop(admission);
    socket.linger(complete, LINGER).await;
}

enum ReadEnd {
    /// The client sent a close frame (with this code).
    Closed(Option<u16>),
    /// The client broke the protocol; close with this code.
    Violation(u16),
    /// The connection dropped, or the writer is gone.
    Gone,
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

/// The reader task: reads until the client closes, goes away or breaks the protocol, then asks
/// the writer to close with the matching code.
async fn read_loop<S>(
    ws: WebSocketRead<SharedIo<S>>,
    tx: Outbox,
    ctx: Arc<Context>,
    token: Arc<GrantState>,
    liveness: Arc<LastHeard>,
    shared: Arc<ConnShared>,
    id: ConnId,
) -> ReadEnd
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let end = read_frames(ws, tx, ctx, token, liveness, id).await;
    shared.kick(match end {
        ReadEnd::Violation(code) => code,
        ReadEnd::Closed(code) => code.unwrap_or(1000),
        ReadEnd::Gone => 1000,
    });
    end
}

async fn read_frames<S>(
    mut ws: WebSocketRead<SharedIo<S>>,
    tx: Outbox,
    ctx: Arc<Context>,
    token: Arc<GrantState>,
    liveness: Arc<LastHeard>,
    id: ConnId,
) -> ReadEnd
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut assembler = Assembler::new(ctx.max_message_bytes);
    let mut bucket = Bucket::new(ctx.max_messages_per_sec);
    // Automatic pong and close are off, so fastwebsockets never needs to send anything itself.
    let mut obligated = |_: Frame<'static>| async { Ok::<(), WebSocketError>(()) };
    loop {
        let mut frame = match ws.read_frame(&mut obligated).await {
            Ok(f) => f,
            Err(e) => {
                return match frames::close_code_for(&e) {
                    Some(code) => ReadEnd::Violation(code),
                    None => ReadEnd::Gone,
                };
            }
        };
        liveness.touch();
        if !frames::is_masked(&mut frame) {
            return ReadEnd::Violation(frames::code::PROTOCOL_ERROR);
        }
        let message = match assembler.push(frame.fin, frame.opcode, &frame.payload) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(v) => return ReadEnd::Violation(v.0),
        };
        let reply = match message {
            // Control frames count against the message rate too: past it a ping gets no pong
            // (answering a flood would make the gateway send one frame per frame received).
            Message::Ping(_) if !bucket.take() => {
                ctx.metrics
                    .dropped
                    .with_label_values(&["rate_limited"])
                    .inc();
                None
            }
            Message::Ping(payload) => Some(Outbound::Pong(payload.into())),
            Message::Pong => {
                let _ = bucket.take();
                None
            }
            Message::Close(code) => return ReadEnd::Closed(code),
            Message::Binary => Some(Outbound::frame(error_frame(
                "binary messages are not supported",
            ))),
            Message::Text(t) if !bucket.take() => {
                let _ = t;
                Some(Outbound::frame(error_frame("too many messages: slow down")))
            }
            Message::Text(t) => command(&t, &ctx, &token, id, &tx),
        };
        if let Some(out) = reply {
            tx.push(out).await;
        }
    }
}

/// Acts on one text command; returns the immediate reply, if any.
fn command(
    text: &str,
    ctx: &Arc<Context>,
    token: &Arc<GrantState>,
    id: ConnId,
    tx: &Outbox,
) -> Option<Outbound> {
    let (kind, notification) = match commands::parse(text) {
        Command::Ping => {
            return Some(Outbound::frame(Delivery {
                bytes: Bytes::from_static(b"pong"),
                seq: None,
            }));
        }
        Command::MarkRead(n) => ("mark_read", n),
        Command::Ack(n) => ("ack", n),
        Command::Auth(fresh) => return Some(Outbound::frame(refresh(ctx, token, id, fresh))),
        Command::Invalid(why) => return Some(Outbound::frame(error_frame(why))),
        Command::Unknown => return Some(Outbound::frame(error_frame("unknown command"))),
    };
    let (ctx, tx) = (ctx.clone(), tx.clone());
    let current = token.current();
    tokio::spawn(async move {
        let done = if kind == "ack" {
            ctx.api.mark_seen(&current, notification).await
        } else {
            ctx.api.mark_read(&current, notification).await
        };
        let answer = match done {
            MarkRead::Done => return,
            MarkRead::NotFound => "Notification not found".to_owned(),
            MarkRead::Failed(why) => {
                tracing::warn!(cause = %why, command = kind, "the api call failed");
                "could not record that, try again".to_owned()
            }
        };
        let _ = tx.try_push(Outbound::frame(error_frame(&answer)));
    });
    None
}

/// `auth:<jwt>`: the fresh token's grant replaces the connection's (same user only); the answer
/// is `token_refreshed`, sent after the channels of dropped roles were left.
fn refresh(ctx: &Context, token: &GrantState, id: ConnId, fresh: &str) -> Delivery {
    match ctx.verifier.verify(fresh) {
        Ok(claims) => match token.refresh(ctx, id, fresh, claims) {
            Ok(exp) => text(&ServerMessage::TokenRefreshed { exp }),
            Err(e) => error_frame(&e.to_string()),
        },
        Err(e) => {
            ctx.metrics.auth_failure(e.reason());
            error_frame(&format!("token refused: {e}"))
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_loop<S>(
    mut ws: WebSocketWrite<Coalescing<SharedIo<S>>>,
    rx: Outbox,
    ready: Vec<tokio::sync::oneshot::Receiver<()>>,
    ctx: Arc<Context>,
    shared: Arc<ConnShared>,
    token: Arc<GrantState>,
    liveness: Arc<LastHeard>,
    user: String,
    since: Option<Since>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Subscribe first, then greet (so anything published after the greeting arrives), then
    // read what was missed, then de-duplicate against live frames by position.
    let subscribed = tokio::time::timeout(SUBSCRIBE_WAIT, async {
        for r in ready {
            let _ = r.await;
        }
    })
    .await
    .is_ok();
    let greeting = ServerMessage::ConnectionEstablished {
        message: "Connected to notification service".to_owned(),
        user_id: user,
    };
    if send_now(&mut ws, &text(&greeting)).await.is_err() {
        return;
    }
    let mut last_seq = i64::MIN;
    let mut refetch = (!subscribed).then_some("subscription not ready");
    match since {
        None => {}
        Some(Since::Invalid) => refetch = Some("since is not a notification id"),
        Some(Since::Id(id)) => {
            let current = token.current();
            // Boxed: a rare, large future would otherwise size every connection's state.
            match Box::pin(ctx.api.replay(&current, id, ctx.replay_max)).await {
                Ok(missed) => {
                    for n in missed {
                        if write(&mut ws, &replayed(n), &mut last_seq).await.is_err() {
                            return;
                        }
                    }
                }
                Err(ReplayError::Unknown) => refetch = Some("cannot resume from that notification"),
                Err(ReplayError::TooMany) => refetch = Some("too many missed notifications"),
                Err(ReplayError::Unavailable(why)) => {
                    tracing::warn!(cause = %why, "resume read failed");
                    refetch = Some("could not replay missed notifications");
                }
            }
        }
    }
    if let Some(reason) = refetch {
        let frame = text(&ServerMessage::Refetch {
            reason: reason.to_owned(),
        });
        if write(&mut ws, &frame, &mut last_seq).await.is_err() {
            return;
        }
    }
    if flush(&mut ws).await.is_err() {
        return;
    }

    let mut ping = tokio::time::interval_at(Instant::now() + ctx.ping_interval, ctx.ping_interval);
    // Checked when it could first be true, not at the next ping: a client silent for the idle
    // timeout is dropped then (± nothing), well before a proxy's own read timeout.
    let idle = tokio::time::sleep(ctx.idle_timeout.saturating_sub(liveness.silent_for()));
    tokio::pin!(idle);
    let expiry = tokio::time::sleep_until(token.deadline());
    tokio::pin!(expiry);
    loop {
        tokio::select! {
            biased;
            _ = shared.kicked.notified() => {
                let code = shared.kick_code().unwrap_or(1000);
                let _ = close_with(&mut ws, code).await;
                return;
            }
            first = rx.pop() => {
                let mut next = Some(first);
                let (mut n, mut delivered) = (0, 0);
                while let Some(out) = next.take() {
                    match out {
                        Outbound::Frame(d) => {
                            if write_counted(&mut ws, &d, &mut last_seq, &mut delivered, &ctx.metrics).await.is_err() {
                                return;
                            }
                        }
                        Outbound::Run(run) => {
                            for d in run.iter() {
                                if write_counted(&mut ws, d, &mut last_seq, &mut delivered, &ctx.metrics).await.is_err() {
                                    return;
                                }
                            }
                            shared.written(run.len());
                        }
                        Outbound::Pong(p) => {
                            if ws.write_frame(Frame::pong(Payload::Borrowed(&p))).await.is_err() {
                                return;
                            }
                        }
                    }
                    n += 1;
                    if n < BATCH {
                        next = rx.try_pop();
                    }
                }
                // One update per batch: a shared counter touched per frame by every writer
                // thread costs more than the frame.
                ctx.metrics.delivered.inc_by(delivered);
                // A client that stops reading blocks this flush; its queue then fills and the hub
                // kicks it, which must end the connection now, not after the stall timeout.
                let flushed = tokio::select! {
                    r = flush(&mut ws) => r.is_ok(),
                    _ = shared.kicked.notified() => false,
                };
                if !flushed {
                    let code = shared.kick_code().unwrap_or_else(|| {
                        shared.kick(close::SLOW_CONSUMER);
                        ctx.metrics.slow_closes.inc();
                        close::SLOW_CONSUMER
                    });
                    // What is already buffered goes first (a frame may be half written), then
                    // the close frame: a client that reads again within CLOSE_WAIT learns why.
                    let _ = close_with(&mut ws, code).await;
                    return;
                }
            }
            _ = &mut idle => {
                let silent = liveness.silent_for();
                if silent >= ctx.idle_timeout {
                    let _ = close_with(&mut ws, close::IDLE).await;
                    return;
                }
                idle.as_mut().reset(Instant::now() + (ctx.idle_timeout - silent));
            }
            _ = ping.tick() => {
                if ws.write_frame(Frame::new(true, fastwebsockets::OpCode::Ping, None, Payload::Borrowed(b""))).await.is_err()
                    || flush(&mut ws).await.is_err()
                {
                    return;
                }
            }
            _ = &mut expiry => {
                let deadline = token.deadline();
                if deadline > Instant::now() {
                    expiry.as_mut().reset(deadline);
                } else {
                    let _ = close_with(&mut ws, close::TOKEN_EXPIRED).await;
                    return;
                }
            }
        }
    }
}

fn replayed(n: Notification) -> Delivery {
    let seq = n.seq;
    let mut d = text(&ServerMessage::NewNotification { notification: n });
    d.seq = Some(seq);
    d
}

/// Writes a frame unless it is a notification already delivered (by position); `Ok(false)`
/// when skipped as a duplicate.
async fn write<W: AsyncWrite + Unpin>(
    ws: &mut WebSocketWrite<W>,
    d: &Delivery,
    last_seq: &mut i64,
) -> Result<bool, WebSocketError> {
    if let Some(seq) = d.seq {
        if seq <= *last_seq {
            return Ok(false);
        }
        *last_seq = seq;
    }
    ws.write_frame(Frame::text(Payload::Borrowed(&d.bytes)))
        .await?;
    Ok(true)
}

/// [`write`], counting what was written in `delivered` and a duplicate in the metrics.
async fn write_counted<W: AsyncWrite + Unpin>(
    ws: &mut WebSocketWrite<W>,
    d: &Delivery,
    last_seq: &mut i64,
    delivered: &mut u64,
    metrics: &Metrics,
) -> Result<(), WebSocketError> {
    if write(ws, d, last_seq).await? {
        *delivered += 1;
    } else {
        metrics.dropped.with_label_values(&["duplicate"]).inc();
    }
    Ok(())
}

async fn send_now<W: AsyncWrite + Unpin>(
    ws: &mut WebSocketWrite<W>,
    d: &Delivery,
) -> Result<(), WebSocketError> {
    ws.write_frame(Frame::text(Payload::Borrowed(&d.bytes)))
        .await?;
    flush(ws).await
}

/// Flushes pending frames; a client that does not read for [`WRITE_STALL`] is given up on.
async fn flush<W: AsyncWrite + Unpin>(ws: &mut WebSocketWrite<W>) -> Result<(), WebSocketError> {
    match tokio::time::timeout(WRITE_STALL, ws.flush()).await {
        Ok(r) => r,
        Err(_) => Err(WebSocketError::ConnectionClosed),
    }
}

fn reason(code: u16) -> &'static [u8] {
    match code {
        close::SLOW_CONSUMER => b"slow consumer: reconnect with since to resume",
        close::TOKEN_EXPIRED => b"token expired",
        close::SERVICE_RESTART => b"service restart: reconnect",
        close::IDLE => b"idle timeout",
        frames::code::TOO_BIG => b"message too big",
        frames::code::PROTOCOL_ERROR => b"protocol error",
        frames::code::INVALID_PAYLOAD => b"invalid UTF-8",
        _ => b"",
    }
}

/// Writes the close frame after whatever is still buffered, waiting at most [`CLOSE_WAIT`] for
/// a client that is not reading.
async fn close_with<W: AsyncWrite + Unpin>(
    ws: &mut WebSocketWrite<W>,
    code: u16,
) -> Result<(), WebSocketError> {
    tokio::time::timeout(CLOSE_WAIT, async {
        ws.write_frame(Frame::close(code, reason(code))).await?;
        ws.flush().await
    })
    .await
    .unwrap_or(Err(WebSocketError::ConnectionClosed))
}
