//! Redis → connections. One subscriber connection per node:
//! - the message task reads every published frame and hands it to the hub, which queues the
//!   same bytes for each matching connection without ever waiting on a client;
//! - the subscription task turns the hub's dirty channels into batched SUBSCRIBE/UNSUBSCRIBE;
//! - the reconnect task restores every subscription after Redis comes back and tells clients to
//!   refetch, since messages published meanwhile were missed (as it does when the receive buffer
//!   overflows);
//! - the probe task proves the subscription is alive end to end: it publishes a probe on this
//!   node's own channel every second and expects it back through the subscriber. A connection
//!   can stall without closing (a proxy, a NAT, a paused VM) and fred then still reports
//!   "connected"; when no probe has come back for the stall bound, the node is not ready, the
//!   subscriber is forced onto a fresh connection, and the restore task resubscribes and tells
//!   every client to refetch, exactly as after a disconnect.

use crate::connection::Delivery;
use crate::hub::Hub;
use crate::liveness::LastHeard;
use crate::metrics::Metrics;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::Message;
use herald_core::wire::ServerMessage;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

/// Channels per SUBSCRIBE / UNSUBSCRIBE command.
const CHUNK: usize = 1_000;
/// Messages taken from the receive buffer at once at most.
const RECEIVE_BATCH: usize = 256;

/// How often the probe task publishes a probe.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Whether the subscription is known to work end to end (see the module docs).
pub struct BusHealth {
    channel: String,
    /// When a probe last came back (or probing started, or the connection came back).
    heard: LastHeard,
    stalled: AtomicBool,
    stall_after: Duration,
}

impl BusHealth {
    pub fn new(channel: String, stall_after: Duration) -> Arc<Self> {
        Arc::new(Self {
            channel,
            heard: LastHeard::default(),
            stalled: AtomicBool::new(false),
            stall_after,
        })
    }

    /// A probe came back: the subscription works.
    fn heard(&self) {
        self.heard.touch();
        self.stalled.store(false, Ordering::Relaxed);
    }

    /// True from a detected stall until a probe comes back.
    pub fn stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }
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
fn deliver_pending(hub: &Hub, metrics: &Metrics, health: &BusHealth, pending: &mut Vec<Message>) {
    metrics.redis_messages.inc_by(pending.len() as u64);
    let mut run: Vec<Delivery> = Vec::new();
    let mut drained = pending.drain(..).peekable();
    while let Some(msg) = drained.next() {
        if msg.channel == health.channel.as_str() {
            health.heard();
            continue;
        }
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

/// Starts the four tasks; they run until the client quits. Probes are published with
/// `publisher` (another connection).
pub fn start(
    sub: SubscriberClient,
    publisher: Client,
    hub: Arc<Hub>,
    metrics: Metrics,
    health: Arc<BusHealth>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut messages = sub.message_rx();
    let mut reconnects = sub.reconnect_rx();
    let _connection = sub.connect();

    let (h, m, health_r) = (hub.clone(), metrics.clone(), health.clone());
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
            deliver_pending(&h, &m, &health_r, &mut pending);
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

    let (h, s, m, probe_channel) = (hub, sub.clone(), metrics.clone(), health.channel.clone());
    let restore = tokio::spawn(async move {
        let mut first = true;
        // Lagged only means several reconnects were reported at once: restore once for them.
        while let Ok(_) | Err(RecvError::Lagged(_)) = reconnects.recv().await {
            let mut channels = h.subscribed_channels();
            channels.push(probe_channel.clone());
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
    let probe = tokio::spawn(probe(sub, publisher, metrics, health));
    vec![receive, subscriptions, restore, probe]
}

/// Publishes a probe every [`PROBE_EVERY`] and declares a stall when none has come back for
/// the stall bound while the subscriber says it is connected (a Redis that is down closes the
/// connection: that is the reconnect logic's business, not a stall).
async fn probe(sub: SubscriberClient, publisher: Client, metrics: Metrics, health: Arc<BusHealth>) {
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut subscribed = false;
    loop {
        tick.tick().await;
        if !subscribed {
            subscribed = sub.subscribe(health.channel.clone()).await.is_ok();
            // Counted from the moment the probe channel is live.
            health.heard();
            continue;
        }
        // Its failure is not checked: if the publishing connection stalled too, no probe comes
        // back either, and both connections are replaced below (fred's `unresponsive` check
        // skips pub/sub commands, so it would not notice).
        let _ = tokio::time::timeout(
            PROBE_EVERY,
            publisher.publish::<i64, _, _>(health.channel.as_str(), "probe"),
        )
        .await;
        if !sub.is_connected() {
            // Disconnected, not stalled: the reconnect policy and the restore task handle it,
            // and the silence is counted again from when it is back (a stall already detected
            // stays until a probe comes back).
            health.heard.touch();
            continue;
        }
        let silent = health.heard.silent_for();
        if silent < health.stall_after {
            continue;
        }
        if !health.stalled.swap(true, Ordering::Relaxed) {
            metrics.redis_stalls.inc();
            tracing::warn!(
                silent_ms = silent.as_millis() as u64,
                "the Redis subscription stalled (probes not coming back): reconnecting"
            );
        }
        // Either connection may be the stalled one: both start afresh (again after another
        // stall bound, if probes still do not come back).
        health.heard.touch();
        let (a, b) = tokio::join!(sub.force_reconnection(), publisher.force_reconnection());
        if let Err(e) = a.and(b) {
            tracing::warn!(cause = %e, "forcing the Redis connections to reconnect failed");
        }
    }
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
