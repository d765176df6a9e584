//! Everything the api sends to Redis, the fan-out bus gateways subscribe to.
//!
//! - [`Bus`]: a pooled, auto-reconnecting Redis client that publishes one payload to many
//!   channels in pipelined batches.
//! - [`run_relay`]: publishes committed notifications in position order. It reads Postgres, not
//!   an in-memory queue, so a notification committed while Redis was down (or by an api process
//!   that died right after committing) is published when Redis is back: nothing acknowledged is
//!   dropped. One relay runs at a time across all api processes (a session advisory lock).
//! - [`ChangeQueue`]: read / all-read / deleted changes, published in order by one task so a
//!   slow Redis never delays the HTTP answer.

use crate::domain::Audience;
use crate::inbox;
use crate::state::AppState;
use fred::bytes_utils::Str;
use fred::prelude::*;
use herald_core::keys::Keys;
use herald_core::wire::{Notification, ServerMessage};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Session advisory lock held by the one api process that runs the relay.
pub const RELAY_LOCK: i64 = 0x6865_7261_6c64_0002;
/// Notifications the relay reads per query.
const RELAY_BATCH: i64 = 200;
/// The relay's read: up to `$2` notifications after position `$1`, in position order, each
/// with its personal recipients and the horizon (ARCHITECTURE.md, "Ordering").
pub(crate) const RELAY_READ: &str = "
SELECT n.id, n.seq, n.type, n.priority, n.title, n.message, n.action_url, n.data,
       n.triggered_by_name, n.created_at, false AS is_read, n.audience, n.roles,
       CASE WHEN n.audience = 'users'
            THEN ARRAY(SELECT e.user_id FROM inbox_entries e
                        WHERE e.notification_id = n.id AND e.deleted_at IS NULL)
            ELSE '{}'::text[] END AS users,
       h.horizon
  FROM notifications n, (SELECT herald_position_horizon() AS horizon) h
 WHERE n.seq > $1
 ORDER BY n.seq
 LIMIT $2";

/// How often a busy relay stores its cursor (it always does when it goes idle).
const CURSOR_EVERY: Duration = Duration::from_millis(200);
/// The first wait for a horizon that holds back committed notifications.
const HELD_BACK_FIRST_WAIT: Duration = Duration::from_millis(1);
/// Publishes sent per pipeline round trip.
const PIPELINE_CHUNK: usize = 1_000;
/// Change messages waiting for Redis before new ones are dropped (and counted).
const CHANGE_QUEUE: usize = 10_000;

/// Publishes to the channels of Herald's Redis scheme.
#[derive(Clone)]
pub struct Bus {
    pub client: Client,
    pub keys: Keys,
}

impl Bus {
    /// The channels an audience listens on.
    pub fn channels(&self, audience: &Audience) -> Vec<String> {
        match audience {
            Audience::Users(users) => users
                .iter()
                .map(|u| self.keys.user_channel(&u.id))
                .collect(),
            Audience::Roles(roles) => roles.iter().map(|r| self.keys.role_channel(r)).collect(),
            Audience::Broadcast => vec![self.keys.broadcast_channel()],
        }
    }

    /// Sends the same payload to every channel, pipelined. Fails if Redis does not take all.
    pub async fn publish(&self, channels: &[String], payload: &str) -> Result<(), Error> {
        let payload = Str::from(payload);
        let each: Vec<(Str, Str)> = channels
            .iter()
            .map(|c| (Str::from(c.as_str()), payload.clone()))
            .collect();
        self.pipelined(each).await
    }

    /// Sends each payload to its channels, in order, pipelined. Fails if Redis does not take
    /// all.
    pub async fn publish_each(&self, messages: &[(Vec<String>, String)]) -> Result<(), Error> {
        let mut each = Vec::new();
        for (channels, payload) in messages {
            let payload = Str::from(payload.as_str());
            each.extend(
                channels
                    .iter()
                    .map(|c| (Str::from(c.as_str()), payload.clone())),
            );
        }
        self.pipelined(each).await
    }

    async fn pipelined(&self, each: Vec<(Str, Str)>) -> Result<(), Error> {
        for chunk in each.chunks(PIPELINE_CHUNK) {
            let pipeline = self.client.pipeline();
            for (channel, payload) in chunk {
                let _: () = pipeline.publish(channel.clone(), payload.clone()).await?;
            }
            let _: Vec<i64> = pipeline.all().await?;
        }
        Ok(())
    }
}

/// Publishes per-user change frames in order, off the request path.
#[derive(Clone)]
pub struct ChangeQueue {
    tx: mpsc::Sender<(String, String)>,
}

impl ChangeQueue {
    /// Starts the publishing task; it lives as long as a sender does.
    pub fn start(bus: Bus, metrics: crate::metrics::Metrics) -> Self {
        let (tx, mut rx) = mpsc::channel::<(String, String)>(CHANGE_QUEUE);
        tokio::spawn(async move {
            while let Some((channel, payload)) = rx.recv().await {
                let mut backoff = Duration::from_millis(50);
                while let Err(err) = bus.publish(std::slice::from_ref(&channel), &payload).await {
                    metrics.redis_publish_errors.inc();
                    tracing::warn!(cause = %err, "publishing a change failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        });
        Self { tx }
    }

    /// Queues `message` for `user_id`'s channel; when the queue is full the message is dropped
    /// and counted (tabs catch up when they next load the inbox).
    pub fn send(
        &self,
        keys: &Keys,
        user_id: &str,
        message: &ServerMessage,
        metrics: &crate::metrics::Metrics,
    ) {
        if self
            .tx
            .try_send((keys.user_channel(user_id), message.to_json()))
            .is_err()
        {
            metrics.changes_dropped.inc();
        }
    }
}

#[derive(sqlx::FromRow)]
struct RelayRow {
    #[sqlx(flatten)]
    row: inbox::Row,
    audience: String,
    roles: Vec<String>,
    users: Vec<String>,
    /// Positions from here on may still be overtaken (ARCHITECTURE.md, "Ordering").
    horizon: i64,
}

/// Runs the relay forever: wait to become the one relay, then publish every committed
/// notification past the stored cursor, in position order, retrying Redis until it accepts.
pub async fn run_relay(state: AppState) {
    loop {
        if let Err(err) = lead(&state).await {
            tracing::warn!(cause = %err, "relay stopped; retrying in 1 s");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn lead(state: &AppState) -> Result<(), sqlx::Error> {
    // A connection of its own: the session lock lives exactly as long as it does.
    let mut conn = state.pool.acquire().await?.detach();
    // The cursor is only a bookmark: one lost in a crash republishes a batch, which gateways
    // drop by position. So its updates need not wait for a WAL flush on the relay's path.
    sqlx::query("SET synchronous_commit = off")
        .execute(&mut conn)
        .await?;
    loop {
        let leader: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK)
            .fetch_one(&mut conn)
            .await?;
        if leader {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let stored_cursor: i64 = sqlx::query_scalar("SELECT last_seq FROM relay_cursor WHERE id = 1")
        .fetch_one(&mut conn)
        .await?;
    // Past what this process published already (its stored cursor lags by up to CURSOR_EVERY);
    // another process that led meanwhile has stored a cursor beyond it.
    let mut cursor = stored_cursor.max(state.relay_published.load(Ordering::SeqCst));
    tracing::info!(cursor, "relay running");
    let (mut stored, mut stored_at) = (stored_cursor, Instant::now());
    // How long to wait for a horizon that holds back committed notifications: doubled up to
    // the poll interval while it stays put (a slow transaction anywhere in the cluster).
    let mut held_back_wait = HELD_BACK_FIRST_WAIT;
    loop {
        let mut held_back;
        loop {
            let batch: Vec<RelayRow> = sqlx::query_as(RELAY_READ)
                .bind(cursor)
                .bind(RELAY_BATCH)
                .fetch_all(&mut conn)
                .await?;
            let read = batch.len();
            // Only what is below the horizon: a committed notification above it may still be
            // overtaken by a smaller position of a transaction that is running.
            let ready: Vec<RelayRow> = batch
                .into_iter()
                .take_while(|item| item.row.seq < item.horizon)
                .collect();
            held_back = ready.len() < read;
            if let Some(last) = ready.last() {
                cursor = last.row.seq;
                publish_until_accepted(state, ready).await;
                state.relay_published.store(cursor, Ordering::SeqCst);
                state.metrics.relay_position.set(cursor);
                // The stored cursor is a bookmark (see above): written at most every
                // CURSOR_EVERY while busy, and when the relay goes idle.
                if stored_at.elapsed() >= CURSOR_EVERY {
                    store_cursor(&mut conn, cursor).await?;
                    (stored, stored_at) = (cursor, Instant::now());
                }
            }
            if held_back || (read as i64) < RELAY_BATCH {
                break;
            }
        }
        let wait = if held_back {
            let wait = held_back_wait;
            held_back_wait = (held_back_wait * 2).min(state.relay_poll);
            wait
        } else {
            held_back_wait = HELD_BACK_FIRST_WAIT;
            state.relay_poll
        };
        tokio::select! {
            _ = state.relay_wake.notified() => {}
            _ = tokio::time::sleep(wait) => {
                if stored != cursor {
                    store_cursor(&mut conn, cursor).await?;
                    (stored, stored_at) = (cursor, Instant::now());
                }
            }
        }
    }
}

async fn store_cursor(conn: &mut sqlx::PgConnection, cursor: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE relay_cursor SET last_seq = $1 WHERE id = 1")
        .bind(cursor)
        .execute(conn)
        .await
        .map(|_| ())
}

/// Publishes `items` in order, in one pipeline, retrying until Redis accepts all of them (a
/// retry may publish some twice: gateways drop positions they already delivered).
async fn publish_until_accepted(state: &AppState, items: Vec<RelayRow>) {
    let keys = &state.bus.keys;
    let messages: Vec<(Vec<String>, String)> = items
        .into_iter()
        .map(|item| {
            let channels: Vec<String> = match item.audience.as_str() {
                "users" => item.users.iter().map(|u| keys.user_channel(u)).collect(),
                "roles" => item.roles.iter().map(|r| keys.role_channel(r)).collect(),
                _ => vec![keys.broadcast_channel()],
            };
            let frame = ServerMessage::NewNotification {
                notification: Notification::from(item.row),
            }
            .to_json();
            (channels, frame)
        })
        .collect();
    let mut backoff = Duration::from_millis(50);
    while let Err(err) = state.bus.publish_each(&messages).await {
        state.metrics.redis_publish_errors.inc();
        tracing::warn!(cause = %err, "relay could not publish; retrying");
        // Unanswered although "connected": the connection may have stalled without closing,
        // and fred's own unresponsive check skips pub/sub commands. Start a fresh one.
        if *err.kind() == fred::error::ErrorKind::Timeout && state.bus.client.is_connected() {
            state.metrics.redis_stalls.inc();
            if let Err(e) = state.bus.client.force_reconnection().await {
                tracing::warn!(cause = %e, "forcing the Redis connection to reconnect failed");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    state.metrics.relay_published.inc_by(messages.len() as u64);
}
