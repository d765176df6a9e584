//! The api's Prometheus metrics, named `herald_api_<what>_<unit>` (see docs/metrics.md). Label
//! values come from small fixed sets (route templates, status codes, reasons), never user ids.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    auth_failures: IntCounterVec,
    pub notifications_created: IntCounterVec,
    pub events_published: IntCounter,
    pub redis_publish_errors: IntCounter,
    pub relay_published: IntCounter,
    pub relay_position: IntGauge,
    pub changes_dropped: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "herald_api_http_requests_total",
                "HTTP requests answered, by route template, method and status code.",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "herald_api_http_request_duration_seconds",
                "Time to answer an HTTP request, by route template.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "herald_api_auth_failures_total",
                "Requests refused for their token, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let notifications_created = IntCounterVec::new(
            Opts::new(
                "herald_api_notifications_created_total",
                "Notifications committed, by audience kind (users, roles, broadcast).",
            ),
            &["audience"],
        )
        .expect("valid metric");
        let events_published = IntCounter::new(
            "herald_api_events_published_total",
            "Live events published to Redis.",
        )
        .expect("valid metric");
        let redis_publish_errors = IntCounter::new(
            "herald_api_redis_publish_errors_total",
            "Failed attempts to publish to Redis (each is retried or reported).",
        )
        .expect("valid metric");
        let relay_published = IntCounter::new(
            "herald_api_relay_published_total",
            "Notifications the relay has published to Redis.",
        )
        .expect("valid metric");
        let relay_position = IntGauge::new(
            "herald_api_relay_position",
            "Position (seq) of the last notification the relay published.",
        )
        .expect("valid metric");
        let changes_dropped = IntCounter::new(
            "herald_api_change_messages_dropped_total",
            "Read/delete change messages dropped because the publish queue was full.",
        )
        .expect("valid metric");
        for c in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_duration.clone()),
            Box::new(auth_failures.clone()),
            Box::new(notifications_created.clone()),
            Box::new(events_published.clone()),
            Box::new(redis_publish_errors.clone()),
            Box::new(relay_published.clone()),
            Box::new(relay_position.clone()),
            Box::new(changes_dropped.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Self {
            registry,
            http_requests,
            http_duration,
            auth_failures,
            notifications_created,
            events_published,
            redis_publish_errors,
            relay_published,
            relay_position,
            changes_dropped,
        }
    }

    pub fn auth_failure(&self, reason: &str) {
        self.auth_failures.with_label_values(&[reason]).inc();
    }

    pub fn observe_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.http_requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[route])
            .observe(seconds);
    }

    /// The text exposition format for `/metrics`.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("encoding metrics to a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
