//! Builds the worker from its [`Config`]: Postgres pool (running the api's migrations, so the
//! worker can start first), mailer, templates; then loops: email passes every poll interval,
//! cleanup every cleanup interval, `/metrics` and `/healthz` on the side. On shutdown it finishes
//! the message in flight and gives its other claimed jobs back.

use crate::cleanup::{self, Retention};
use crate::config::Config;
use crate::jobs::{self, Outbox};
use crate::mailer::Mailer;
use crate::metrics::Metrics;
use crate::render::Renderer;
use anyhow::Context as _;
use axum::Router;
use axum::routing::get;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;

pub struct Worker {
    pub outbox: Arc<Outbox>,
    retention: Retention,
    poll: Duration,
    cleanup_every: Duration,
}

impl Worker {
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let pool = herald_service::postgres::connect(
            config.database_url.expose(),
            4,
            Duration::from_secs(5),
            &[],
        )
        .await?;
        herald_service::postgres::migrate(&pool).await?;
        let worker_id = config.worker_id.clone().unwrap_or_else(|| {
            format!("worker-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
        });
        let outbox = Outbox {
            pool,
            mailer: Mailer::new(config).context("SMTP configuration")?,
            renderer: Renderer::new(config.templates_dir.as_deref(), &config.public_url)
                .context("email templates")?,
            metrics: Metrics::new(),
            worker_id,
            from: config
                .smtp_from
                .parse()
                .context("SMTP_FROM is not an email address")?,
            batch: config.batch,
            lease_secs: config.lease_secs as i64,
            max_attempts: config.max_attempts,
            retry_base_secs: config.retry_base_secs,
            stopping: Arc::new(AtomicBool::new(false)),
        };
        Ok(Self {
            outbox: Arc::new(outbox),
            retention: Retention {
                read_days: config.retention_read_days,
                all_days: config.retention_all_days,
                batch: config.cleanup_batch,
            },
            poll: Duration::from_millis(config.poll_ms.max(10)),
            cleanup_every: Duration::from_secs(config.cleanup_interval_secs.max(1)),
        })
    }

    /// Runs until `shutdown` completes, serving `/metrics` and `/healthz` on `listener`.
    pub async fn run_until_stopped(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let metrics = self.outbox.metrics.clone();
        let pool = self.outbox.pool.clone();
        let ops = Router::new()
            .route("/healthz", get(herald_service::ops::healthz))
            .route(
                "/readyz",
                get(move || {
                    let pool = pool.clone();
                    async move {
                        let db = herald_service::ops::postgres_answers(&pool).await;
                        herald_service::ops::readiness(&[("database", db)])
                    }
                }),
            )
            .route(
                "/metrics",
                get(move || {
                    let m = metrics.clone();
                    async move { herald_service::ops::metrics(m.render()) }
                }),
            );
        let ops = tokio::spawn(async move { axum::serve(listener, ops).await });

        let stopping = self.outbox.stopping.clone();
        tokio::spawn(async move {
            shutdown.await;
            stopping.store(true, Ordering::SeqCst);
        });
        let mut poll = tokio::time::interval(self.poll);
        let mut cleanup = tokio::time::interval(self.cleanup_every);
        while !self.outbox.stopping.load(Ordering::SeqCst) {
            tokio::select! {
                _ = poll.tick() => {
                    // A panic outside any one job's handling (those are dead letters) ends this
                    // pass, never the loop.
                    match jobs::isolate(self.outbox.pass(chrono::Utc::now())).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::warn!(cause = ?e, "email pass failed"),
                        Err(panic) => tracing::error!(cause = %panic, "email pass panicked"),
                    }
                    if let Ok(n) = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM email_jobs WHERE status = 'pending'")
                        .fetch_one(&self.outbox.pool).await {
                        self.outbox.metrics.pending.set(n);
                    }
                }
                _ = cleanup.tick() => self.cleanup_once().await,
            }
        }
        ops.abort();
        self.outbox.pool.close().await;
        Ok(())
    }

    async fn cleanup_once(&self) {
        match cleanup::run(&self.outbox.pool, chrono::Utc::now(), self.retention).await {
            Ok(Some(r)) => {
                let m = &self.outbox.metrics;
                m.cleanup_deleted
                    .with_label_values(&["hard_limit"])
                    .inc_by(r.past_hard_limit);
                m.cleanup_deleted
                    .with_label_values(&["read"])
                    .inc_by(r.read);
                m.cleanup_deleted
                    .with_label_values(&["idempotency"])
                    .inc_by(r.idempotency_records);
                m.cleanup_last_run.set(chrono::Utc::now().timestamp());
                tracing::info!(
                    hard_limit = r.past_hard_limit,
                    read = r.read,
                    "cleanup done"
                );
            }
            Ok(None) => tracing::debug!("another worker is cleaning up"),
            Err(e) => tracing::warn!(cause = %e, "cleanup failed"),
        }
    }
}
