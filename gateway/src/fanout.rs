//! Redis → connections. One subscriber connection per node:
//! - the message task reads every published frame and hands it to the hub, which queues the
//!   same bytes for each matching connection without ever waiting on a client;
//! - the subscription task turns the hub's dirty channels into batched SUBSCRIBE/UNSUBSCRIBE;
//! - the reconnect task restores every subscription after Redis comes back and tells clients to
//!   refetch, since messages published meanwhile were missed (as it does when the receive buffer
//!   overflows).

use crate::hub::{Delivery, Hub};
use crate::metrics::Metrics;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::Message;
use herald_core::wire::ServerMessage;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// Channels per SUBSCRIBE / UNSUBSCRIBE command.
const CHUNK: usize = 1_000;
/// Messages taken from the receive buffer at once at most.
const RECEIVE_BATCH: usize = 256;

/// A subscriber with a large receive buffer, reconnecting forever; connects in the background.
pub fn subscriber(url: &str) -> anyhow::Result<SubscriberClient> {
    let mut config = fred::prelude::Config::from_url(url)?;
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

/// A plain client for presence reports.
pub fn client(url: &str) -> anyhow::Result<Client> {
    let mut config = fred::prelude::Config::from_url(url)?;
    config.fail_fast = false;
    let client = Builder::from_config(config)
        .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(2))
        .with_connection_config(|c| c.connection_timeout = Duration::from_secs(2))
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
        .build()?;
    Ok(client)
}

#[derive(Deserialize)]
struct Peek {
    notification: PeekNotification,
}

#[derive(Deserialize)]
struct PeekNotification {
    seq: i64,
    created_at: DateTime<Utc>,
}

/// Wraps a frame from Redis; for `new_notification` it reads the position (to drop
/// duplicates per connection) and records how long the notification took to get here.
pub fn delivery(bytes: Bytes, metrics: &Metrics) -> Delivery {
    let mut seq = None;
    if bytes.starts_with(br#"{"type":"new_notification""#)
        && let Ok(p) = serde_json::from_slice::<Peek>(&bytes)
    {
        seq = Some(p.notification.seq);
        let age = Utc::now() - p.notification.created_at;
        if let Ok(age) = age.to_std() {
            metrics.latency.observe(age.as_secs_f64());
        }
    }
    Delivery { bytes, seq }
}

fn refetch(reason: &str) -> Delivery {
    Delivery {
        bytes: Bytes::from(
            ServerMessage::Refetch {
                reason: reason.to_owned(),
            }
            .to_json(),
        ),
        seq: None,
    }
}

/// Hands received messages to the hub in arrival order, one run per stretch of consecutive
/// messages on the same channel (reordering across channels could make a connection that hears
/// several of them drop a notification as already seen).
fn deliver_pending(hub: &Hub, metrics: &Metrics, pending: &mut Vec<Message>) {
    metrics.redis_messages.inc_by(pending.len() as u64);
    let mut run: Vec<Delivery> = Vec::new();
    let mut drained = pending.drain(..).peekable();
    while let Some(msg) = drained.next() {
        if let Some(bytes) = msg.value.into_bytes() {
            run.push(delivery(bytes, metrics));
        }
        let same_next = drained.peek().is_some_and(|n| n.channel == msg.channel);
        if !same_next && !run.is_empty() {
            let out = hub.deliver_run(&msg.channel, std::mem::take(&mut run).into());
            if out.slow > 0 {
                metrics
                    .dropped
                    .with_label_values(&["slow_client"])
                    .inc_by(out.slow as u64);
                metrics.slow_closes.inc_by(out.slow as u64);
            }
        }
    }
}

/// Starts the three tasks; they run until the client quits.
pub fn start(
    sub: SubscriberClient,
    hub: Arc<Hub>,
    metrics: Metrics,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut messages = sub.message_rx();
    let mut reconnects = sub.reconnect_rx();
    let _connection = sub.connect();

    let (h, m) = (hub.clone(), metrics.clone());
    let receive = tokio::spawn(async move {
        let mut pending: Vec<Message> = Vec::with_capacity(RECEIVE_BATCH);
        loop {
            let first = messages.recv().await;
            let lagged = match first {
                Ok(msg) => {
                    pending.push(msg);
                    // Whatever else has arrived goes out with it: consecutive frames for one
                    // channel reach each member as one run, which its writer sends in one write.
                    loop {
                        if pending.len() == RECEIVE_BATCH {
                            break None;
                        }
                        match messages.try_recv() {
                            Ok(msg) => pending.push(msg),
                            Err(TryRecvError::Lagged(n)) => break Some(n),
                            Err(_) => break None,
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => Some(n),
                Err(RecvError::Closed) => break,
            };
            deliver_pending(&h, &m, &mut pending);
            if let Some(n) = lagged {
                tracing::warn!(
                    missed = n,
                    "Redis receive buffer overflowed; clients must refetch"
                );
                h.deliver_all(&refetch("messages were missed"));
            }
        }
    });

    let (h, s) = (hub.clone(), sub.clone());
    let subscriptions = tokio::spawn(async move {
        loop {
            h.dirty.notified().await;
            loop {
                let (subscribe, unsubscribe) = h.take_dirty();
                if subscribe.is_empty() && unsubscribe.is_empty() {
                    break;
                }
                for chunk in subscribe.chunks(CHUNK) {
                    if let Err(e) = s.subscribe(chunk.to_vec()).await {
                        // Marked anyway: the reconnect task restores every marked channel.
                        tracing::warn!(cause = %e, "SUBSCRIBE failed");
                    }
                }
                for chunk in unsubscribe.chunks(CHUNK) {
                    if let Err(e) = s.unsubscribe(chunk.to_vec()).await {
                        tracing::warn!(cause = %e, "UNSUBSCRIBE failed");
                    }
                }
                h.mark_subscribed(&subscribe);
            }
        }
    });

    let (h, s, m) = (hub, sub, metrics);
    let restore = tokio::spawn(async move {
        let mut first = true;
        // Lagged only means several reconnects were reported at once: restore once for them.
        while let Ok(_) | Err(RecvError::Lagged(_)) = reconnects.recv().await {
            let channels = h.subscribed_channels();
            for chunk in channels.chunks(CHUNK) {
                if let Err(e) = s.subscribe(chunk.to_vec()).await {
                    tracing::warn!(cause = %e, "re-SUBSCRIBE failed");
                }
            }
            if !first {
                m.redis_reconnects.inc();
                tracing::info!(
                    channels = channels.len(),
                    "Redis subscription restored; clients told to refetch"
                );
                h.deliver_all(&refetch("subscription interrupted"));
            }
            first = false;
        }
    });
    vec![receive, subscriptions, restore]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_carry_their_position_and_other_frames_do_not() {
        let m = Metrics::new();
        let n = Bytes::from_static(br#"{"type":"new_notification","notification":{"id":"x","seq":42,"created_at":"2026-01-01T00:00:00Z","title":"t"}}"#);
        assert_eq!(delivery(n, &m).seq, Some(42));
        let e = Bytes::from_static(br#"{"type":"event","event":"new_ticket","data":{"seq":1}}"#);
        assert_eq!(delivery(e, &m).seq, None);
    }
}
