//! The api's Prometheus metrics, named `herald_api_<what>_<unit>` (see docs/metrics.md). Label
//! values come from small fixed sets (route templates, status codes, reasons), never user ids.

use herald_core::metrics::{counter, counter_vec, gauge, histogram_vec, registry};
use prometheus::{HistogramVec, IntCounter, IntCounterVec, IntGauge, Registry};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    auth_failures: IntCounterVec,
    pub notifications_created: IntCounterVec,
    pub events_published: IntCounter,
    pub redis_publish_errors: IntCounter,
    pub redis_stalls: IntCounter,
    pub relay_published: IntCounter,
    pub relay_position: IntGauge,
    pub changes_dropped: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let http_requests = counter_vec(
            "herald_api_http_requests_total",
            "HTTP requests answered, by route template, method and status code.",
            &["route", "method", "status"],
        );
        let http_duration = histogram_vec(
            "herald_api_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            &["route"],
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ],
        );
        let auth_failures = counter_vec(
            "herald_api_auth_failures_total",
            "Requests refused for their token, by reason.",
            &["reason"],
        );
        let notifications_created = counter_vec(
            "herald_api_notifications_created_total",
            "Notifications committed, by audience kind (users, roles, broadcast).",
            &["audience"],
        );
        let events_published = counter(
            "herald_api_events_published_total",
            "Live events published to Redis.",
        );
        let redis_publish_errors = counter(
            "herald_api_redis_publish_errors_total",
            "Failed attempts to publish to Redis (each is retried or reported).",
        );
        let redis_stalls = counter(
            "herald_api_redis_stalls_total",
            "Times a Redis publish went unanswered on a connection that said it was up, and the connection was replaced.",
        );
        let relay_published = counter(
            "herald_api_relay_published_total",
            "Notifications the relay has published to Redis.",
        );
        let relay_position = gauge(
            "herald_api_relay_position",
            "Position (seq) of the last notification the relay published.",
        );
        let changes_dropped = counter(
            "herald_api_change_messages_dropped_total",
            "Read/delete change messages dropped because the publish queue was full.",
        );
        let registry = registry(vec![
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
            Box::new(auth_failures.clone()),
            Box::new(notifications_created.clone()),
            Box::new(events_published.clone()),
            Box::new(redis_publish_errors.clone()),
            Box::new(redis_stalls.clone()),
            Box::new(relay_published.clone()),
            Box::new(relay_position.clone()),
            Box::new(changes_dropped.clone()),
        ]);
        Self {
            registry,
            http_requests,
            http_duration,
            auth_failures,
            notifications_created,
            events_published,
            redis_publish_errors,
            redis_stalls,
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
        herald_core::metrics::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
