//! The email outbox. Jobs are written by the api in the notification's own transaction; here
//! they are claimed (`FOR UPDATE SKIP LOCKED`, with a lease so a dead worker's jobs return to
//! the queue), checked against the user's preferences and "seen" state, and sent one at a time,
//! each marked right after its send: a worker killed mid-batch re-sends at most the one message
//! that was in flight. Every function takes `now`, so tests drive time.
//!
//! A job that can never be sent is a dead letter: `failed` at once, with its
//! [`FailReason`] in `failure_reason`, and the pass goes on with the others. That covers an
//! address or display name the mailer refuses (`herald_core::mailbox`, the parser the api
//! validated it with), a message that cannot be rendered, and a panic anywhere in one job's
//! handling (caught per job, so the process lives on). A job is attempted at most
//! `max_attempts` times, whatever ended the earlier attempts (a crash too).

use crate::compose::compose;
use crate::mailer::{Mailer, SendError};
use crate::metrics::Metrics;
use crate::render::{self, Item, Renderer};
use chrono::{DateTime, Duration as Span, DurationRound, Utc};
use futures::FutureExt as _;
use lettre::Message;
use lettre::message::Mailbox;
use sqlx::PgPool;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
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

/// Why a job was given up on: `email_jobs.failure_reason` and the `reason` label of
/// `herald_worker_emails_failed_total` (docs/metrics.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// The SMTP server answered 5xx.
    Permanent,
    /// `max_attempts` attempts ended in transient failures, or without an outcome.
    AttemptsExhausted,
    /// The address or display name cannot be written in a `To:` header.
    BadAddress,
    /// The templates or lettre could not make a message of it.
    Unrenderable,
    /// Handling the job panicked.
    Panic,
}

impl FailReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Permanent => "permanent",
            FailReason::AttemptsExhausted => "attempts_exhausted",
            FailReason::BadAddress => "bad_address",
            FailReason::Unrenderable => "unrenderable",
            FailReason::Panic => "panic",
        }
    }
}

/// A job that cannot be sent, ever: why, and the details kept in `last_error`.
#[derive(Debug)]
struct DeadLetter {
    reason: FailReason,
    why: String,
}

impl DeadLetter {
    fn unrenderable(e: impl std::fmt::Display) -> Self {
        DeadLetter {
            reason: FailReason::Unrenderable,
            why: format!("cannot render the message: {e}"),
        }
    }
}

/// Runs `work`, turning a panic inside it into `Err(message)`: one job's panic must not end the
/// worker. The job's state is only what Postgres holds, so nothing half-changed survives it.
pub async fn isolate<T>(work: impl Future<Output = T>) -> Result<T, String> {
    AssertUnwindSafe(work)
        .catch_unwind()
        .await
        .map_err(|panic| panic_message(panic.as_ref()))
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

impl Job {
    /// The recipient's mailbox, by the rules the api checked it with.
    fn mailbox(&self) -> Result<Mailbox, DeadLetter> {
        herald_core::mailbox::mailbox(&self.email, self.name.as_deref()).map_err(|e| DeadLetter {
            reason: FailReason::BadAddress,
            why: format!("recipient {}: {e}", e.field()),
        })
    }
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
                    AND attempts < $6
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
        .bind(self.max_attempts)
        .fetch_all(&self.pool)
        .await
    }

    /// Gives up on due jobs that already had `max_attempts` attempts. Each attempt is counted
    /// when the job is claimed, and one whose attempt never recorded an outcome (the worker
    /// died, or was killed by the job itself) comes back when its lease ends: without this it
    /// would be claimed again and again, its attempts growing past the maximum.
    async fn give_up_exhausted(&self, now: DateTime<Utc>, out: &mut Pass) -> anyhow::Result<()> {
        let given_up = sqlx::query(
            "UPDATE email_jobs
                SET status = 'failed', failure_reason = 'attempts_exhausted', locked_until = NULL,
                    last_error = format('gave up after %s attempts: %s', attempts,
                        coalesce(last_error, 'no attempt recorded an outcome'))
              WHERE status = 'pending' AND not_before <= $1
                AND (locked_until IS NULL OR locked_until < $1) AND attempts >= $2",
        )
        .bind(now)
        .bind(self.max_attempts)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if given_up > 0 {
            tracing::warn!(jobs = given_up, "gave up on email jobs: attempts exhausted");
            self.metrics
                .failed
                .with_label_values(&[FailReason::AttemptsExhausted.as_str()])
                .inc_by(given_up);
            out.failed += given_up as u32;
        }
        Ok(())
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

    /// Marks jobs this worker holds, and that are still pending, as dead letters.
    async fn fail(
        &self,
        ids: &[i64],
        reason: FailReason,
        why: &str,
        out: &mut Pass,
    ) -> anyhow::Result<()> {
        let failed = sqlx::query(
            "UPDATE email_jobs SET status = 'failed', failure_reason = $2, last_error = $3,
                    locked_until = NULL
              WHERE id = ANY($1) AND locked_by = $4 AND status = 'pending'",
        )
        .bind(ids)
        .bind(reason.as_str())
        .bind(why)
        .bind(&self.worker_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        tracing::warn!(jobs = ?ids, reason = reason.as_str(), cause = why, "email given up");
        self.metrics
            .failed
            .with_label_values(&[reason.as_str()])
            .inc_by(failed);
        out.failed += 1;
        Ok(())
    }

    /// One single notification's message, or why there can never be one.
    fn single_message(&self, job: &Job) -> Result<Message, DeadLetter> {
        let to = job.mailbox()?;
        let content = self
            .renderer
            .single(&self.item(job))
            .map_err(DeadLetter::unrenderable)?;
        let id = format!("<{}.{}@herald>", job.notification_id, job.id);
        compose(&self.from, to, id, self.renderer.preferences_url(), content)
            .map_err(DeadLetter::unrenderable)
    }

    /// One pass: jobs out of attempts are given up, then individual due jobs, then due digests.
    /// Stops early (giving jobs back) when `stopping` is set. A job that panics is a dead letter;
    /// an error (Postgres) ends the pass, and the jobs it held return when their lease ends.
    pub async fn pass(&self, now: DateTime<Utc>) -> anyhow::Result<Pass> {
        let mut out = Pass::default();
        self.give_up_exhausted(now, &mut out).await?;
        let ids = self.claim(now, None).await?;
        let jobs = self.load(&ids).await?;
        for (i, job) in jobs.iter().enumerate() {
            if self.stopping.load(Ordering::SeqCst) {
                let rest: Vec<i64> = jobs[i..].iter().map(|j| j.id).collect();
                self.later(&rest, now, None, None, true).await?;
                return Ok(out);
            }
            match isolate(self.one(job, now, &mut out)).await {
                Ok(done) => done?,
                Err(panic) => {
                    tracing::error!(job = job.id, cause = %panic, "email job panicked");
                    let why = format!("panic: {panic}");
                    self.fail(&[job.id], FailReason::Panic, &why, &mut out)
                        .await?;
                }
            }
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
        let message = match self.single_message(job) {
            Ok(message) => message,
            Err(dead) => return self.fail(&[job.id], dead.reason, &dead.why, out).await,
        };
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
                self.fail(ids, FailReason::Permanent, &why, out).await?;
            }
            Err(SendError::Transient(why)) if attempts >= self.max_attempts => {
                let why = format!("gave up after {attempts} attempts: {why}");
                self.fail(ids, FailReason::AttemptsExhausted, &why, out)
                    .await?;
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
            match isolate(self.digest(&ids, now, out)).await {
                Ok(done) => done?,
                Err(panic) => {
                    tracing::error!(jobs = ?ids, cause = %panic, "email digest panicked");
                    let why = format!("panic: {panic}");
                    self.fail(&ids, FailReason::Panic, &why, out).await?;
                }
            }
        }
        Ok(())
    }

    /// One user's digest from the jobs claimed for it. A job whose own address is bad is a dead
    /// letter; the others go in one message to the address of the latest good one.
    async fn digest(&self, ids: &[i64], now: DateTime<Utc>, out: &mut Pass) -> anyhow::Result<()> {
        let jobs = self.load(ids).await?;
        let mut include = Vec::new();
        let mut to = None;
        for job in &jobs {
            if let Some(reason) = skip_reason(job) {
                self.skip(job, reason, now, out).await?;
                continue;
            }
            match job.mailbox() {
                Ok(mailbox) => {
                    to = Some(mailbox);
                    include.push(job);
                }
                Err(dead) => self.fail(&[job.id], dead.reason, &dead.why, out).await?,
            }
        }
        let Some(to) = to else { return Ok(()) };
        let ids: Vec<i64> = include.iter().map(|j| j.id).collect();
        let items: Vec<Item> = include.iter().map(|j| self.item(j)).collect();
        let id = format!("<digest.{}.{}@herald>", include[0].id, include.len());
        let message = self
            .renderer
            .digest(&items)
            .map_err(DeadLetter::unrenderable)
            .and_then(|content| {
                compose(&self.from, to, id, self.renderer.preferences_url(), content)
                    .map_err(DeadLetter::unrenderable)
            });
        let message = match message {
            Ok(message) => message,
            Err(dead) => return self.fail(&ids, dead.reason, &dead.why, out).await,
        };
        let attempts = include.iter().map(|j| j.attempts).max().unwrap_or(1);
        let result = self.mailer.send(message).await;
        if result.is_ok() {
            out.digests += 1;
        }
        self.settle(&ids, attempts, result, now, out).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_inside_isolate_is_an_error_with_its_message_and_the_caller_goes_on() {
        // What lettre did with an unchecked name: formatting the mailbox panics.
        let unchecked = Mailbox::new(Some("Ann\r\nX".into()), "a@b.test".parse().unwrap());
        let lettre = isolate(async { unchecked.to_string() }).await;
        assert!(
            lettre
                .unwrap_err()
                .contains("a Display implementation returned an error"),
            "the panic's message"
        );
        let formatted = isolate(async { panic!("job {} exploded", 7) }).await;
        assert_eq!(formatted, Err::<(), _>("job 7 exploded".to_owned()));
        assert_eq!(isolate(async { 41 + 1 }).await, Ok(42));
    }

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
