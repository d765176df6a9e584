//! Reads what gateways report about their connections (see `herald_core::keys` for the key
//! scheme) to answer `connection-stats` across every live gateway.

use fred::prelude::*;
use herald_core::keys::Keys;
use std::collections::HashSet;

/// The seeds' `connection-stats` answer, across all gateways.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ConnectionStats {
    /// Distinct users with at least one open connection.
    pub active_users: usize,
    /// Open connections (tabs) on every live gateway.
    pub total_connections: u64,
    /// Whether the calling user has an open connection.
    pub user_online: bool,
}

pub async fn connection_stats(
    client: &Client,
    keys: &Keys,
    user_id: &str,
) -> Result<ConnectionStats, Error> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    // Gateways whose last report has not expired.
    let nodes: Vec<String> = client
        .zrangebyscore(keys.presence_nodes(), now_ms as f64, "+inf", false, None)
        .await?;
    let mut total_connections = 0u64;
    let mut users: HashSet<String> = HashSet::new();
    let mut user_online = false;
    for node in &nodes {
        let connections: Option<u64> = client.hget(keys.presence_node(node), "connections").await?;
        total_connections += connections.unwrap_or(0);
        let members: Vec<String> = client.smembers(keys.presence_node_users(node)).await?;
        user_online |= members.iter().any(|m| m == user_id);
        users.extend(members);
    }
    Ok(ConnectionStats {
        active_users: users.len(),
        total_connections,
        user_online,
    })
}
