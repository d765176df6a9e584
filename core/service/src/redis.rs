//! Redis clients as Herald's services use them: reconnecting forever with backoff, and never
//! trusting a connection that stopped answering (a proxy, a NAT or a paused VM can stall one
//! without closing it, and it keeps reporting "connected").

use fred::prelude::*;
use std::time::Duration;

/// How a client treats commands while it is disconnected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhileDown {
    /// Fail at once (the api answers 503 rather than wait).
    Fail,
    /// Queue them until the connection is back (the gateway's presence reports).
    Wait,
}

/// A client whose commands wait at most `timeout` for an answer, and whose connection is
/// replaced when a command went unanswered for 3 × `timeout`. Not connected yet: call
/// `connect()` (or `init()`) on it.
pub fn client(url: &str, timeout: Duration, while_down: WhileDown) -> anyhow::Result<Client> {
    let mut config = Config::from_url(url)?;
    config.fail_fast = while_down == WhileDown::Fail;
    let client = Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = timeout;
            c.internal_command_timeout = timeout;
            c.unresponsive = fred::types::config::UnresponsiveConfig {
                max_timeout: Some(timeout * 3),
                interval: timeout / 2,
            };
        })
        .with_performance_config(|p| p.default_command_timeout = timeout)
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
        .build()?;
    Ok(client)
}

/// A subscriber with a receive buffer of 65,536 messages, reconnecting forever; not connected
/// yet. (fred's unresponsive check skips pub/sub; the gateway proves its subscription alive
/// with probes of its own.)
pub fn subscriber(url: &str) -> anyhow::Result<fred::clients::SubscriberClient> {
    let mut config = Config::from_url(url)?;
    config.fail_fast = false;
    let client = Builder::from_config(config)
        .with_performance_config(|p| {
            p.broadcast_channel_capacity = 65_536;
            p.default_command_timeout = Duration::from_secs(5);
        })
        .with_connection_config(|c| c.connection_timeout = Duration::from_secs(2))
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
        .build_subscriber_client()?;
    Ok(client)
}
