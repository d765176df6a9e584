//! The gateway's Prometheus metrics, `herald_gateway_<what>_<unit>` (see docs/metrics.md).

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

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
    pub redis_messages: IntCounter,
    pub latency: Histogram,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let connections = IntGauge::new(
            "herald_gateway_connections",
            "Open WebSocket connections on this node.",
        )
        .expect("metric");
        let delivered = IntCounter::new(
            "herald_gateway_messages_delivered_total",
            "Frames queued for a client connection.",
        )
        .expect("metric");
        let dropped = IntCounterVec::new(
            Opts::new(
                "herald_gateway_messages_dropped_total",
                "Frames not delivered, by reason (duplicate, slow_client).",
            ),
            &["reason"],
        )
        .expect("metric");
        let slow_closes = IntCounter::new(
            "herald_gateway_slow_client_closes_total",
            "Clients closed because their outbound queue was full.",
        )
        .expect("metric");
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "herald_gateway_auth_failures_total",
                "Handshakes and token refreshes refused for their token, by reason.",
            ),
            &["reason"],
        )
        .expect("metric");
        let handshake_refusals = IntCounterVec::new(
            Opts::new(
                "herald_gateway_handshake_refusals_total",
                "Handshakes refused before upgrading, by reason (origin, node_full, user_full).",
            ),
            &["reason"],
        )
        .expect("metric");
        let redis_reconnects = IntCounter::new(
            "herald_gateway_redis_reconnects_total",
            "Times the Redis subscription was re-established.",
        )
        .expect("metric");
        let redis_messages = IntCounter::new(
            "herald_gateway_redis_messages_total",
            "Messages received from Redis.",
        )
        .expect("metric");
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "herald_gateway_publish_to_write_seconds",
                "From a notification's creation (api) to its frame being queued for a client here.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
        )
        .expect("metric");
        for c in [
            Box::new(connections.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(delivered.clone()),
            Box::new(dropped.clone()),
            Box::new(slow_closes.clone()),
            Box::new(auth_failures.clone()),
            Box::new(handshake_refusals.clone()),
            Box::new(redis_reconnects.clone()),
            Box::new(redis_messages.clone()),
            Box::new(latency.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
        Self {
            registry,
            connections,
            delivered,
            dropped,
            slow_closes,
            auth_failures,
            handshake_refusals,
            redis_reconnects,
            redis_messages,
            latency,
        }
    }

    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding to a Vec");
        String::from_utf8(out).expect("UTF-8 text format")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
