//! The worker's Prometheus metrics, `herald_worker_<what>_<unit>` (see docs/metrics.md).

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

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
        let registry = Registry::new();
        let sent = IntCounter::new(
            "herald_worker_emails_sent_total",
            "Email jobs delivered to the SMTP server (or written as .eml).",
        )
        .expect("metric");
        let failed = IntCounterVec::new(
            Opts::new(
                "herald_worker_emails_failed_total",
                "Email jobs given up on, by reason (permanent, attempts_exhausted).",
            ),
            &["reason"],
        )
        .expect("metric");
        let retried = IntCounter::new(
            "herald_worker_emails_retried_total",
            "Transient send failures scheduled for a retry.",
        )
        .expect("metric");
        let skipped = IntCounterVec::new(
            Opts::new(
                "herald_worker_emails_skipped_total",
                "Email jobs not sent, by reason (email_off, muted, seen).",
            ),
            &["reason"],
        )
        .expect("metric");
        let cleanup_deleted = IntCounterVec::new(
            Opts::new(
                "herald_worker_cleanup_rows_deleted_total",
                "Rows deleted by retention, by rule (hard_limit, read, idempotency).",
            ),
            &["rule"],
        )
        .expect("metric");
        let cleanup_last_run = IntGauge::new(
            "herald_worker_cleanup_last_run_timestamp_seconds",
            "When this worker last completed a cleanup run (unix time).",
        )
        .expect("metric");
        let pending = IntGauge::new(
            "herald_worker_email_jobs_pending",
            "Email jobs waiting (all workers), as of the last look.",
        )
        .expect("metric");
        for c in [
            Box::new(sent.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failed.clone()),
            Box::new(retried.clone()),
            Box::new(skipped.clone()),
            Box::new(cleanup_deleted.clone()),
            Box::new(cleanup_last_run.clone()),
            Box::new(pending.clone()),
        ] {
            registry.register(c).expect("unique metric names");
        }
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
