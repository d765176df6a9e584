//! One WebSocket connection, served by one task from the upgrade to the last byte.
//!
//! The task waits on four things at once: a request to close (the hub's slow-consumer kick, the
//! drain), its queue of frames to send, the socket becoming readable, and one timer (the next
//! heartbeat, the idle timeout or the token's expiry, whichever comes first). fastwebsockets'
//! `read_frame` is not cancel-safe, so the task never waits in it: it waits for the first byte
//! of a frame ([`socket::Socket::readable`]) and only then reads the frame, in a future that
//! lives on the heap while that frame arrives. So an idle connection is one small task, no read
//! buffer, no write buffer and an empty queue.
//!
//! - [`reader`]: a frame from the client: checks, reassembly, rate limit, commands.
//! - [`writer`]: greeting and replay, batches from the queue, heartbeats, the close frame.
//! - [`queue`]: what the connection is sent and the queue it waits in; what the hub shares.
//! - [`socket`]: readiness without a buffer, coalesced writes, the lingering close.
//! - [`close`]: every close code the gateway sends.
//! - [`frames`], [`commands`]: the client's frames and text commands, checked and parsed.
//!
//! Protocol (docs/websocket.md): text `ping` → `pong`; `mark_read:<id>` → persisted through the
//! api, then `marked_read` reaches every tab through Redis; `ack:<id>` → the notification counts
//! as seen (email-if-unseen); `auth:<jwt>` → a fresh token for the same user (the connection then
//! outlives the old token's expiry). Anything else → an `error` frame.

pub mod close;
pub mod commands;
pub mod frames;
mod grant;
pub mod queue;
mod reader;
pub mod socket;
mod writer;

pub use close::CloseCode;
pub use queue::{ConnShared, Delivery, Full, Outbound, Outbox, Queue};

use crate::api_client::ApiClient;
use crate::hub::{Admission, ConnId, Hub};
use crate::metrics::Metrics;
use fastwebsockets::{Role, WebSocket};
use grant::Grant;
use herald_core::auth::{Claims, Verifier};
use herald_core::keys::Keys;
use reader::Reader;
use socket::Socket;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio::time::Instant;
use uuid::Uuid;

/// How long a close frame may wait for a client that is not reading (a slow client cut at its
/// queue bound gets its 4000 if it reads again within this time).
pub const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// After our close frame, how long the client has to answer with its own.
const CLOSE_REPLY_WAIT: Duration = Duration::from_secs(1);
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

/// How a connection is ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// We close with this code and wait briefly for the client's answer.
    Close(CloseCode),
    /// The client broke the protocol: close with this code, expect nothing back.
    Violation(CloseCode),
    /// The client sent a close frame (with this code): echo it.
    ClientClosed(Option<u16>),
    /// The connection dropped.
    Gone,
}

/// One connection's state, owned by its task.
struct Connection<S> {
    ws: WebSocket<Socket<S>>,
    ctx: Arc<Context>,
    id: ConnId,
    shared: Arc<ConnShared>,
    queue: Outbox,
    grant: Grant,
    reader: Reader,
    /// Position of the last notification written (duplicates from resume are dropped).
    last_seq: i64,
    /// Its place on this node, given back when it ends.
    admission: Admission,
}

/// Serves one upgraded connection (`io`, after the handshake) until it ends. Not an `async fn`:
/// the setup happens here, so the future every connection keeps holds the connection's state
/// once, not also the arguments it was built from.
pub fn serve<S>(
    io: S,
    session: Session,
    admission: Admission,
    ctx: Arc<Context>,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut ws = WebSocket::after_handshake(Socket::new(io), Role::Server);
    ws.set_auto_pong(false);
    ws.set_auto_close(false);
    // fastwebsockets checks size per frame (`len >= max`); the assembler checks the total.
    ws.set_max_message_size(ctx.max_message_bytes + 1);
    // Every frame goes through the socket's coalescing buffer, never fastwebsockets' own.
    ws.set_writev(true);
    ws.set_writev_threshold(0);

    let channels = session.claims.channels(&ctx.keys);
    let queue = Queue::new(ctx.outbound_queue);
    let shared = Arc::new(ConnShared::default());
    let (id, ready) = ctx.hub.join(&channels, queue.clone(), shared.clone());
    drop(channels);
    ctx.metrics.connections.inc();

    let conn = Connection {
        ws,
        reader: Reader::new(&ctx),
        ctx,
        id,
        shared,
        queue,
        grant: Grant::new(session.token, session.claims),
        last_seq: i64::MIN,
        admission,
    };
    conn.life(ready, session.since)
}

impl<S> Connection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    /// Greeting, the connection's life, goodbye, and a clean end of the socket. The one-off
    /// steps are boxed: their futures must not size every connection's.
    async fn life(mut self, ready: Vec<oneshot::Receiver<()>>, since: Option<Since>) {
        let end = match Box::pin(self.open(ready, since)).await {
            Ok(()) => self.run().await,
            Err(end) => end,
        };
        let complete = Box::pin(self.finish(end)).await;
        let ctx = &self.ctx;
        ctx.hub.leave(self.id, &self.grant.channels(&ctx.keys));
        ctx.metrics.connections.dec();
        let Connection { ws, admission, .. } = self;
        drop(admission);
        Box::pin(ws.into_inner().linger(complete, LINGER)).await;
    }

    /// The connection's life after the greeting: whatever comes first, until it ends.
    async fn run(&mut self) -> Ending {
        let mut next_ping = Instant::now() + self.ctx.ping_interval;
        let timer = tokio::time::sleep_until(self.next_deadline(next_ping));
        tokio::pin!(timer);
        loop {
            let buffered = self.ws.is_read_buffered();
            let event = tokio::select! {
                biased;
                _ = self.shared.kicked.notified() => Event::Kicked,
                first = self.queue.pop() => Event::Queued(first),
                r = self.ws.get_mut().readable(), if !buffered => Event::Readable(r.is_ok()),
                _ = std::future::ready(()), if buffered => Event::Readable(true),
                _ = &mut timer => Event::Timer,
            };
            // Each piece of work is boxed: it exists while it runs, and the future every idle
            // connection keeps holds only what waiting needs (one allocation per batch costs
            // far less than the write it goes with).
            let ended = match event {
                Event::Kicked => Some(Ending::Close(
                    self.shared.kick_code().unwrap_or(CloseCode::Normal),
                )),
                Event::Queued(first) => Box::pin(self.write_batch(first)).await.err(),
                Event::Readable(false) => Some(Ending::Gone),
                Event::Readable(true) => Box::pin(self.read_frame()).await,
                Event::Timer => Box::pin(self.on_timer(&mut next_ping)).await.err(),
            };
            if let Some(end) = ended {
                return end;
            }
            // A frame may have refreshed the grant (an earlier expiry), a timer may have fired.
            let next = self.next_deadline(next_ping);
            if next != timer.deadline() {
                timer.as_mut().reset(next);
            }
        }
    }

    /// The earliest of: the next heartbeat, the idle timeout, the token's expiry.
    fn next_deadline(&self, next_ping: Instant) -> Instant {
        next_ping
            .min(self.reader.heard + self.ctx.idle_timeout)
            .min(self.grant.deadline)
    }

    /// The timer fired: expiry, idle timeout or heartbeat, in that order.
    async fn on_timer(&mut self, next_ping: &mut Instant) -> Result<(), Ending> {
        let now = Instant::now();
        if self.grant.deadline <= now {
            return Err(Ending::Close(CloseCode::TokenExpired));
        }
        // Checked when it could first be true, not at the next ping: a client silent for the
        // idle timeout is dropped then (± nothing), well before a proxy's own read timeout.
        if now.duration_since(self.reader.heard) >= self.ctx.idle_timeout {
            return Err(Ending::Close(CloseCode::Idle));
        }
        if *next_ping <= now {
            while *next_ping <= now {
                *next_ping += self.ctx.ping_interval;
            }
            self.ping().await?;
        }
        Ok(())
    }

    /// Says goodbye according to how the connection ends; true when both close frames were
    /// exchanged (the socket may then be shut down at once).
    async fn finish(&mut self, end: Ending) -> bool {
        match end {
            Ending::ClientClosed(code) => {
                let code = code.map_or(CloseCode::Normal, CloseCode::Echo);
                self.close_with(code).await.is_ok()
            }
            Ending::Violation(code) => {
                let _ = self.close_with(code).await;
                false
            }
            Ending::Gone => {
                let _ = self.close_with(CloseCode::Normal).await;
                false
            }
            Ending::Close(code) => {
                if self.close_with(code).await.is_err() {
                    return false;
                }
                // Boxed: a frame read lives only while one is read.
                tokio::time::timeout(CLOSE_REPLY_WAIT, Box::pin(self.await_close()))
                    .await
                    .unwrap_or(false)
            }
        }
    }
}

/// What woke a connection.
enum Event {
    Kicked,
    Queued(Outbound),
    /// The socket has something to read (`false`: it failed).
    Readable(bool),
    Timer,
}
