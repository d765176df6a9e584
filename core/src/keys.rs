//! Redis channel and key names. Every name starts with one prefix (`REDIS_PREFIX`, default
//! `herald`) so several stacks, or several tests, can share one Redis without seeing each other.
//!
//! Channels (PUBLISH by the api, SUBSCRIBE by gateways; payload = the exact client frame, see
//! [`crate::wire`]):
//! - `{prefix}:user:{user_id}` — notifications and read/delete changes for one user;
//! - `{prefix}:role:{role}` — notifications and events for every holder of a role;
//! - `{prefix}:broadcast` — notifications and events for everyone.
//!
//! Presence (written by each gateway, read by the api's `connection-stats`):
//! - `{prefix}:presence:nodes` — sorted set, member = node id, score = unix ms when the node's
//!   report expires; readers ignore members whose score is in the past;
//! - `{prefix}:presence:node:{node}` — hash `{connections, users}`, with a TTL;
//! - `{prefix}:presence:node:{node}:users` — set of user ids connected to that node, with a TTL.

/// Builds every Redis name Herald uses, under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

/// How long a gateway's presence report stays valid without a refresh.
pub const PRESENCE_TTL_SECS: u64 = 30;

impl Keys {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn user_channel(&self, user_id: &str) -> String {
        format!("{}:user:{user_id}", self.prefix)
    }

    pub fn role_channel(&self, role: &str) -> String {
        format!("{}:role:{role}", self.prefix)
    }

    pub fn broadcast_channel(&self) -> String {
        format!("{}:broadcast", self.prefix)
    }

    /// A gateway's own channel for its bus-liveness probes (it publishes there and expects each
    /// probe back through its subscriber).
    pub fn probe_channel(&self, node: &str) -> String {
        format!("{}:probe:{node}", self.prefix)
    }

    pub fn presence_nodes(&self) -> String {
        format!("{}:presence:nodes", self.prefix)
    }

    pub fn presence_node(&self, node: &str) -> String {
        format!("{}:presence:node:{node}", self.prefix)
    }

    pub fn presence_node_users(&self, node: &str) -> String {
        format!("{}:presence:node:{node}:users", self.prefix)
    }
}

impl Default for Keys {
    fn default() -> Self {
        Self::new("herald")
    }
}

#[cfg(test)]
mod tests {
    use super::Keys;

    #[test]
    fn every_name_carries_the_prefix() {
        let k = Keys::new("t1");
        assert_eq!(k.user_channel("u-1"), "t1:user:u-1");
        assert_eq!(k.role_channel("admin"), "t1:role:admin");
        assert_eq!(k.broadcast_channel(), "t1:broadcast");
        assert_eq!(k.presence_nodes(), "t1:presence:nodes");
        assert_eq!(k.presence_node_users("n"), "t1:presence:node:n:users");
    }
}
