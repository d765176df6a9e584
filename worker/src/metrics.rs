//! The worker's Prometheus metrics, `herald_worker_<what>_<unit>` (see docs/metrics.md).

use herald_core::metrics::{counter, counter_vec, gauge, registry};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Registry};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub sent: IntCounter,
    pub failed: IntCounterVec,
    pub retried: IntCounter,
    pub skipped: IntCounterVec,
    pub cleanup_deleted: IntCounterVec,
    pub cleanup_last_run: IntGauge,
    pub pending: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let sent = counter(
            "herald_worker_emails_sent_total",
            "Email jobs delivered to the SMTP server (or written as .eml).",
        );
        let failed = counter_vec(
            "herald_worker_emails_failed_total",
            "Email jobs given up on (dead letters), by reason (permanent, attempts_exhausted, bad_address, unrenderable, panic).",
            &["reason"],
        );
        let retried = counter(
            "herald_worker_emails_retried_total",
            "Transient send failures scheduled for a retry.",
        );
        let skipped = counter_vec(
            "herald_worker_emails_skipped_total",
            "Email jobs not sent, by reason (email_off, muted, seen).",
            &["reason"],
        );
        let cleanup_deleted = counter_vec(
            "herald_worker_cleanup_rows_deleted_total",
            "Rows deleted by retention, by rule (hard_limit, read, idempotency).",
            &["rule"],
        );
        let cleanup_last_run = gauge(
            "herald_worker_cleanup_last_run_timestamp_seconds",
            "When this worker last completed a cleanup run (unix time).",
        );
        let pending = gauge(
            "herald_worker_email_jobs_pending",
            "Email jobs waiting (all workers), as of the last look.",
        );
        let registry = registry(vec![
            Box::new(sent.clone()),
            Box::new(failed.clone()),
            Box::new(retried.clone()),
            Box::new(skipped.clone()),
            Box::new(cleanup_deleted.clone()),
            Box::new(cleanup_last_run.clone()),
            Box::new(pending.clone()),
        ]);
        Self {
            registry,
            sent,
            failed,
            retried,
            skipped,
            cleanup_deleted,
            cleanup_last_run,
            pending,
        }
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
