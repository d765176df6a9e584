//! The email outbox. Jobs are written by the api in the notification's own transaction; here
//! they are claimed (`FOR UPDATE SKIP LOCKED`, with a lease so a dead worker's jobs return to
//! the queue), checked against the user's preferences and "seen" state, and sent one at a time,
//! each marked right after its send: a worker killed mid-batch re-sends at most the one message
//! that was in flight. Every function takes `now`, so tests drive time.

use crate::mailer::{ListUnsubscribe, Mailer, SendError};
use crate::metrics::Metrics;
use crate::render::{self, Item, Renderer};
use chrono::{DateTime, Duration as Span, DurationRound, Utc};
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use uuid::Uuid;

/// Longest retry delay.
const MAX_BACKOFF_SECS: u64 = 3_600;

pub struct Outbox {
    pub pool: PgPool,
    pub mailer: Mailer,
    pub renderer: Renderer,
    pub metrics: Metrics,
    pub worker_id: String,
    pub from: Mailbox,
    pub batch: i64,
    pub lease_secs: i64,
    pub max_attempts: i32,
    pub retry_base_secs: u64,
    /// Set on shutdown: stop between messages and give claimed jobs back.
    pub stopping: Arc<AtomicBool>,
}

#[derive(Debug, sqlx::FromRow)]
struct Job {
    id: i64,
    notification_id: Uuid,
    email: String,
    name: Option<String>,
    attempts: i32,
    require_unseen: bool,
    #[sqlx(rename = "type")]
    kind: String,
    priority: String,
    title: String,
    message: String,
    action_url: Option<String>,
    triggered_by_name: Option<String>,
    seen: bool,
    email_enabled: bool,
    digest_pref: String,
    muted_types: Vec<String>,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub sent: u32,
    pub failed: u32,
    pub retried: u32,
    pub skipped: u32,
    pub deferred: u32,
    pub digests: u32,
}

const LOAD: &str = "SELECT j.id, j.notification_id, j.email, j.name, j.attempts, j.require_unseen,
        n.type, n.priority, n.title, n.message, n.action_url, n.triggered_by_name,
        coalesce(e.seen_at IS NOT NULL OR e.is_read OR e.deleted_at IS NOT NULL, false) AS seen,
        coalesce(p.email_enabled, true) AS email_enabled,
        coalesce(p.digest, 'off') AS digest_pref,
        coalesce(p.muted_types, '{}') AS muted_types
   FROM email_jobs j
   JOIN notifications n ON n.id = j.notification_id
   LEFT JOIN inbox_entries e ON e.notification_id = j.notification_id AND e.user_id = j.user_id
   LEFT JOIN preferences p ON p.user_id = j.user_id
  WHERE j.id = ANY($1)
  ORDER BY j.not_before, j.id";

/// Why a job must not be sent, read from the user's preferences and the notification's state at
/// send time (the metric label); `None` when it should go.
fn skip_reason(job: &Job) -> Option<&'static str> {
    if !job.email_enabled {
        Some("email_off")
    } else if job.muted_types.contains(&job.kind) {
        Some("muted")
    } else if job.require_unseen && job.seen {
        Some("seen")
    } else {
        None
    }
}

/// The end of the digest period that `now` falls in.
pub fn period_end(now: DateTime<Utc>, digest: &str) -> DateTime<Utc> {
    let span = if digest == "daily" {
        Span::days(1)
    } else {
        Span::hours(1)
    };
    now.duration_trunc(span).unwrap_or(now) + span
}

impl Outbox {
    /// Retry delay after `attempts` attempts: exponential, capped, with equal jitter.
    fn backoff(&self, attempts: i32) -> Span {
        let exp = attempts.clamp(1, 20) as u32 - 1;
        let full = self
            .retry_base_secs
            .saturating_mul(1u64 << exp)
            .min(MAX_BACKOFF_SECS) as f64;
        Span::milliseconds((full * (0.5 + fastrand::f64() * 0.5) * 1000.0) as i64)
    }

    /// Claims up to `batch` due jobs (digest ones only when `digest_user` is given, for that user).
    async fn claim(
        &self,
        now: DateTime<Utc>,
        digest_user: Option<&str>,
    ) -> Result<Vec<i64>, sqlx::Error> {
        sqlx::query_scalar(
            "WITH due AS (
                 SELECT id FROM email_jobs
                  WHERE status = 'pending' AND not_before <= $1
                    AND (locked_until IS NULL OR locked_until < $1)
                    AND digest = ($5::text IS NOT NULL) AND ($5::text IS NULL OR user_id = $5)
                  ORDER BY not_before, id
                  LIMIT $2
                  FOR UPDATE SKIP LOCKED)
             UPDATE email_jobs j
                SET locked_until = $1 + make_interval(secs => $3), locked_by = $4,
                    attempts = j.attempts + 1
               FROM due WHERE j.id = due.id
             RETURNING j.id",
        )
        .bind(now)
        .bind(if digest_user.is_some() {
            10_000
        } else {
            self.batch
        })
        .bind(self.lease_secs as f64)
        .bind(&self.worker_id)
        .bind(digest_user)
        .fetch_all(&self.pool)
        .await
    }

    /// Claims due jobs without processing them (what a worker that dies right after claiming
    /// leaves behind); for tests of the lease.
    pub async fn claim_only(&self, now: DateTime<Utc>) -> Result<usize, sqlx::Error> {
        Ok(self.claim(now, None).await?.len())
    }

    async fn load(&self, ids: &[i64]) -> Result<Vec<Job>, sqlx::Error> {
        sqlx::query_as(LOAD).bind(ids).fetch_all(&self.pool).await
    }

    /// Records the outcome of a job this worker holds.
    async fn finish(
        &self,
        ids: &[i64],
        status: &str,
        error: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE email_jobs SET status = $2, last_error = $3, locked_until = NULL,
                    sent_at = CASE WHEN $2 = 'sent' THEN $4 ELSE sent_at END
              WHERE id = ANY($1) AND locked_by = $5",
        )
        .bind(ids)
        .bind(status)
        .bind(error)
        .bind(now)
        .bind(&self.worker_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Puts jobs back for later (retry, digest) without counting this as an attempt when
    /// `refund` (nothing was tried).
    async fn later(
        &self,
        ids: &[i64],
        at: DateTime<Utc>,
        digest: Option<bool>,
        error: Option<&str>,
        refund: bool,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE email_jobs SET not_before = $2, locked_until = NULL, last_error = coalesce($4, last_error),
                    digest = coalesce($3, digest), attempts = attempts - CASE WHEN $5 THEN 1 ELSE 0 END
              WHERE id = ANY($1) AND locked_by = $6",
        )
        .bind(ids)
        .bind(at)
        .bind(digest)
        .bind(error)
        .bind(refund)
        .bind(&self.worker_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn item(&self, job: &Job) -> Item {
        Item {
            kind: job.kind.clone(),
            priority: job.priority.clone(),
            title: job.title.clone(),
            message: job.message.clone(),
            triggered_by_name: job.triggered_by_name.clone(),
            link: render::link(self.renderer.public_url(), job.action_url.as_deref()),
        }
    }

    fn message(
        &self,
        to: &Job,
        message_id: String,
        content: render::Rendered,
    ) -> anyhow::Result<Message> {
        let to_box = Mailbox::new(to.name.clone(), to.email.parse()?);
        Ok(Message::builder()
            .from(self.from.clone())
            .to(to_box)
            .subject(content.subject)
            .message_id(Some(message_id))
            .header(ListUnsubscribe(self.renderer.preferences_url()))
            .multipart(MultiPart::alternative_plain_html(
                content.text,
                content.html,
            ))?)
    }

    /// One pass: individual due jobs, then due digests. Stops early (giving jobs back) when
    /// `stopping` is set.
    pub async fn pass(&self, now: DateTime<Utc>) -> anyhow::Result<Pass> {
        let mut out = Pass::default();
        let ids = self.claim(now, None).await?;
        let jobs = self.load(&ids).await?;
        for (i, job) in jobs.iter().enumerate() {
            if self.stopping.load(Ordering::SeqCst) {
                let rest: Vec<i64> = jobs[i..].iter().map(|j| j.id).collect();
                self.later(&rest, now, None, None, true).await?;
                return Ok(out);
            }
            self.one(job, now, &mut out).await?;
        }
        self.digests(now, &mut out).await?;
        Ok(out)
    }

    async fn skip(
        &self,
        job: &Job,
        reason: &'static str,
        now: DateTime<Utc>,
        out: &mut Pass,
    ) -> anyhow::Result<()> {
        self.finish(&[job.id], "skipped", Some(reason), now).await?;
        self.metrics.skipped.with_label_values(&[reason]).inc();
        out.skipped += 1;
        Ok(())
    }

    async fn one(&self, job: &Job, now: DateTime<Utc>, out: &mut Pass) -> anyhow::Result<()> {
        if let Some(reason) = skip_reason(job) {
            return self.skip(job, reason, now, out).await;
        }
        if job.digest_pref != "off" && job.priority != "urgent" {
            self.later(
                &[job.id],
                period_end(now, &job.digest_pref),
                Some(true),
                None,
                true,
            )
            .await?;
            out.deferred += 1;
            return Ok(());
        }
        let content = self.renderer.single(&self.item(job))?;
        let id = format!("<{}.{}@herald>", job.notification_id, job.id);
        let message = self.message(job, id, content)?;
        let result = self.mailer.send(message).await;
        self.settle(&[job.id], job.attempts, result, now, out).await
    }

    async fn settle(
        &self,
        ids: &[i64],
        attempts: i32,
        result: Result<(), SendError>,
        now: DateTime<Utc>,
        out: &mut Pass,
    ) -> anyhow::Result<()> {
        match result {
            Ok(()) => {
                self.finish(ids, "sent", None, now).await?;
                self.metrics.sent.inc_by(ids.len() as u64);
                out.sent += 1;
            }
            Err(SendError::Permanent(why)) => {
                self.finish(ids, "failed", Some(&why), now).await?;
                self.metrics.failed.with_label_values(&["permanent"]).inc();
                out.failed += 1;
            }
            Err(SendError::Transient(why)) if attempts >= self.max_attempts => {
                let why = format!("gave up after {attempts} attempts: {why}");
                self.finish(ids, "failed", Some(&why), now).await?;
                self.metrics
                    .failed
                    .with_label_values(&["attempts_exhausted"])
                    .inc();
                out.failed += 1;
            }
            Err(SendError::Transient(why)) => {
                self.later(ids, now + self.backoff(attempts), None, Some(&why), false)
                    .await?;
                self.metrics.retried.inc();
                out.retried += 1;
            }
        }
        Ok(())
    }

    /// Sends each user whose digest period ended one message with all their pending items.
    async fn digests(&self, now: DateTime<Utc>, out: &mut Pass) -> anyhow::Result<()> {
        let users: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT user_id FROM email_jobs
              WHERE status = 'pending' AND digest AND not_before <= $1
                AND (locked_until IS NULL OR locked_until < $1)
              LIMIT 100",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        for user in users {
            if self.stopping.load(Ordering::SeqCst) {
                break;
            }
            let ids = self.claim(now, Some(&user)).await?;
            let jobs = self.load(&ids).await?;
            let mut include = Vec::new();
            for job in &jobs {
                match skip_reason(job) {
                    Some(reason) => self.skip(job, reason, now, out).await?,
                    None => include.push(job),
                }
            }
            let Some(last) = include.last() else { continue };
            let items: Vec<Item> = include.iter().map(|j| self.item(j)).collect();
            let content = self.renderer.digest(&items)?;
            let id = format!("<digest.{}.{}@herald>", include[0].id, include.len());
            let message = self.message(last, id, content)?;
            let ids: Vec<i64> = include.iter().map(|j| j.id).collect();
            let attempts = include.iter().map(|j| j.attempts).max().unwrap_or(1);
            let result = self.mailer.send(message).await;
            if result.is_ok() {
                out.digests += 1;
            }
            self.settle(&ids, attempts, result, now, out).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_periods_end_on_the_hour_and_at_midnight() {
        let t: DateTime<Utc> = "2026-11-24T10:17:05Z".parse().unwrap();
        assert_eq!(
            period_end(t, "hourly").to_rfc3339(),
            "2026-11-24T11:00:00+00:00"
        );
        assert_eq!(
            period_end(t, "daily").to_rfc3339(),
            "2026-11-25T00:00:00+00:00"
        );
    }
}
