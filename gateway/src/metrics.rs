//! The gateway's Prometheus metrics, `herald_gateway_<what>_<unit>` (see docs/metrics.md).

use herald_core::metrics::{counter, counter_vec, gauge, registry};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Registry};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub connections: IntGauge,
    pub delivered: IntCounter,
    pub dropped: IntCounterVec,
    pub slow_closes: IntCounter,
    pub auth_failures: IntCounterVec,
    pub handshake_refusals: IntCounterVec,
    pub redis_reconnects: IntCounter,
    pub redis_stalls: IntCounter,
    pub redis_messages: IntCounter,
    pub latency: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let connections = gauge(
            "herald_gateway_connections",
            "Open WebSocket and Socket.IO connections on this node.",
        );
        let delivered = counter(
            "herald_gateway_messages_delivered_total",
            "Frames queued for a client connection (or a Socket.IO room).",
        );
        let dropped = counter_vec(
            "herald_gateway_messages_dropped_total",
            "Frames not delivered, by reason (duplicate, slow_client, socketio_queue_full).",
            &["reason"],
        );
        let slow_closes = counter(
            "herald_gateway_slow_client_closes_total",
            "Clients closed because their outbound queue was full.",
        );
        let auth_failures = counter_vec(
            "herald_gateway_auth_failures_total",
            "Handshakes and token refreshes refused for their token, by reason.",
            &["reason"],
        );
        let handshake_refusals = counter_vec(
            "herald_gateway_handshake_refusals_total",
            "Handshakes refused before upgrading, by reason (origin, node_full, user_full, role).",
            &["reason"],
        );
        let redis_reconnects = counter(
            "herald_gateway_redis_reconnects_total",
            "Times the Redis subscription was re-established.",
        );
        let redis_stalls = counter(
            "herald_gateway_redis_stalls_total",
            "Times the Redis subscription was found stalled (probes not coming back) and rebuilt.",
        );
        let redis_messages = counter(
            "herald_gateway_redis_messages_total",
            "Messages received from Redis.",
        );
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "herald_gateway_publish_to_write_seconds",
                "From a notification's creation (api) to its frame being queued for a client here.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
        )
        .expect("valid metric");
        let registry = registry(vec![
            Box::new(connections.clone()),
            Box::new(delivered.clone()),
            Box::new(dropped.clone()),
            Box::new(slow_closes.clone()),
            Box::new(auth_failures.clone()),
            Box::new(handshake_refusals.clone()),
            Box::new(redis_reconnects.clone()),
            Box::new(redis_stalls.clone()),
            Box::new(redis_messages.clone()),
            Box::new(latency.clone()),
        ]);
        Self {
            registry,
            connections,
            delivered,
            dropped,
            slow_closes,
            auth_failures,
            handshake_refusals,
            redis_reconnects,
            redis_stalls,
            redis_messages,
            latency,
        }
    }

    /// A refused token, by the reason's fixed label (`AuthError::reason`).
    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures.with_label_values(&[reason]).inc();
    }

    pub fn render(&self) -> String {
        herald_core::metrics::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
