//! What every handler shares: the database pool, the notification batcher, the Redis bus and
//! change queue, the token verifier, metrics and the limits read from the configuration. Built by
//! [`crate::startup`], used by [`crate::routes`] and the extractors; kept apart so neither of those
//! imports the other for it.

use crate::fanout::{Bus, ChangeQueue};
use crate::metrics::Metrics;
use crate::publishing::Batcher;
use herald_core::auth::Verifier;
use herald_core::origins::AllowedOrigins;
use herald_core::wire::ServerMessage;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Shared by every handler.
pub type AppState = Arc<Shared>;

pub struct Shared {
    pub pool: PgPool,
    /// Stores notifications without an idempotency key, many per transaction under load.
    pub batcher: Batcher,
    pub bus: Bus,
    pub changes: ChangeQueue,
    pub verifier: Verifier,
    pub metrics: Metrics,
    /// Poked after every commit that created a notification.
    pub relay_wake: Notify,
    pub relay_poll: Duration,
    /// The last position this process's relay published (0 before it led). Its stored cursor
    /// may lag behind by up to 200 ms: when the relay takes the lead again after losing its
    /// connection, it goes on from here rather than publish that stretch twice.
    pub relay_published: std::sync::atomic::AtomicI64,
    pub max_data_bytes: usize,
    /// Origins an absolute `action_url` may point at.
    pub link_origins: AllowedOrigins,
    pub request_timeout: Duration,
    /// Set only when HERALD_DEV_TOKENS is on (and the secret is HS256).
    pub dev_token_secret: Option<herald_core::secret::Secret>,
}

impl Shared {
    /// Tells every open tab of `user_id` about a change (after it committed).
    pub fn announce(&self, user_id: &str, message: &ServerMessage) {
        self.changes
            .send(&self.bus.keys, user_id, message, &self.metrics);
    }
}
