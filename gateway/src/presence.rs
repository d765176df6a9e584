//! Presence: every few seconds this node writes its connection count and connected users to
//! Redis with a TTL (key scheme in `herald_core::keys`), so the api's `connection-stats` is right
//! across nodes and forgets a node that died.

use crate::hub::Hub;
use fred::prelude::*;
use herald_core::keys::{Keys, PRESENCE_TTL_SECS};
use std::sync::Arc;
use std::time::Duration;

pub async fn report(client: &Client, keys: &Keys, node: &str, hub: &Hub) -> Result<(), Error> {
    let (connections, users) = hub.presence();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let expires = now_ms + (PRESENCE_TTL_SECS as i64) * 1000;
    let users_key = keys.presence_node_users(node);
    let staging = format!("{users_key}:next");
    let _: () = client.del(&staging).await?;
    for chunk in users.chunks(1_000) {
        let _: () = client.sadd(&staging, chunk.to_vec()).await?;
    }
    if users.is_empty() {
        let _: () = client.del(&users_key).await?;
    } else {
        let _: () = client.rename(&staging, &users_key).await?;
        let _: () = client
            .expire(&users_key, PRESENCE_TTL_SECS as i64, None)
            .await?;
    }
    let node_key = keys.presence_node(node);
    let _: () = client
        .hset(
            &node_key,
            [
                ("connections", connections as i64),
                ("users", users.len() as i64),
            ],
        )
        .await?;
    let _: () = client
        .expire(&node_key, PRESENCE_TTL_SECS as i64, None)
        .await?;
    let _: () = client
        .zadd(
            keys.presence_nodes(),
            None,
            None,
            false,
            false,
            (expires as f64, node),
        )
        .await?;
    let _: () = client
        .zremrangebyscore(keys.presence_nodes(), f64::NEG_INFINITY, now_ms as f64)
        .await?;
    Ok(())
}

/// Reports forever, every `interval`.
pub async fn run(client: Client, keys: Keys, node: String, hub: Arc<Hub>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    loop {
        tick.tick().await;
        if let Err(e) = report(&client, &keys, &node, &hub).await {
            tracing::warn!(cause = %e, "presence report failed");
        }
    }
}

/// Removes this node's report (on shutdown).
pub async fn withdraw(client: &Client, keys: &Keys, node: &str) -> Result<(), Error> {
    let _: () = client.zrem(keys.presence_nodes(), node).await?;
    let _: () = client
        .del(vec![
            keys.presence_node(node),
            keys.presence_node_users(node),
        ])
        .await?;
    Ok(())
}
