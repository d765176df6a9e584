//! Creating notifications in Postgres: one row per notification (stored once, whatever the
//! audience), one inbox entry per personal recipient, an idempotency record, and a position
//! taken from the creating transaction's id (ARCHITECTURE.md, "Ordering").
//!
//! Writers never take turns: positions need no lock. [`Batcher`] still stores the requests that
//! arrive while a transaction is being written together in the next one (one WAL flush and four
//! statements for the whole batch), because a transaction per request costs Postgres several
//! times more CPU than a row does.

use crate::domain::{Audience, Channel, NewNotification};
use crate::error::ApiError;
use herald_core::wire::Notification;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, mpsc, oneshot};
use uuid::Uuid;

/// Notifications one transaction may create: their positions share its transaction id and
/// differ in the low 16 bits (ARCHITECTURE.md, "Ordering").
pub const MAX_PER_TRANSACTION: usize = 1 << 16;

/// The answer to a publish (201), also replayed verbatim to idempotent retries.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Created {
    pub id: Uuid,
    /// `users`, `roles` or `broadcast`.
    pub audience: String,
    /// Personal recipients stored (0 for role and broadcast audiences).
    pub recipient_count: usize,
    pub notification: Notification,
}

/// Stores `n` in a transaction of its own. A retry carrying an idempotency key already used by
/// this publisher returns the first answer (and `false`: nothing new was created).
pub async fn create(
    pool: &PgPool,
    publisher: &str,
    n: &NewNotification,
    raw_request: &serde_json::Value,
) -> Result<(Created, bool), ApiError> {
    let mut tx = pool.begin().await?;
    if let Some(key) = &n.idempotency_key {
        let fresh: Option<bool> = sqlx::query_scalar(
            "INSERT INTO publish_requests (publisher, idempotency_key, request)
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING true",
        )
        .bind(publisher)
        .bind(key)
        .bind(raw_request)
        .fetch_optional(&mut *tx)
        .await?;
        if fresh.is_none() {
            // The first request with this key has committed (the insert above waited for it).
            let (request, response): (serde_json::Value, Option<serde_json::Value>) =
                sqlx::query_as(
                    "SELECT request, response FROM publish_requests
                      WHERE publisher = $1 AND idempotency_key = $2",
                )
                .bind(publisher)
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
            if &request != raw_request {
                return Err(ApiError::invalid(
                    "idempotency_key",
                    "this key was already used with a different request",
                ));
            }
            let response = response.ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!("idempotency record without a response"))
            })?;
            let created = serde_json::from_value(response)
                .map_err(|e| ApiError::Internal(anyhow::Error::new(e)))?;
            return Ok((created, false));
        }
    }

    let created = store(&mut tx, &[(publisher, n)])
        .await?
        .pop()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("stored nothing")))?;
    if let Some(key) = &n.idempotency_key {
        let response = serde_json::to_value(&created)
            .map_err(|e| ApiError::Internal(anyhow::Error::new(e)))?;
        sqlx::query(
            "UPDATE publish_requests SET response = $3 WHERE publisher = $1 AND idempotency_key = $2",
        )
        .bind(publisher)
        .bind(key)
        .bind(response)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok((created, true))
}

/// The smallest position a transaction starting now could be given.
const NEXT_POSITION: &str = "(pg_snapshot_xmax(pg_current_snapshot())::text::bigint << 16)
                             + (SELECT origin FROM position_origin)";

/// Moves the position scheme past every stored position if it is not already (stored positions
/// above it come from a logical restore into a younger Postgres cluster, whose transaction ids
/// start low again). Run at start-up; `true` when it moved.
pub async fn keep_positions_ahead(pool: &PgPool) -> Result<bool, sqlx::Error> {
    let behind =
        format!("SELECT coalesce((SELECT max(seq) FROM notifications), -1) >= {NEXT_POSITION}");
    if !sqlx::query_scalar::<_, bool>(sqlx::AssertSqlSafe(behind.clone()))
        .fetch_one(pool)
        .await?
    {
        return Ok(false);
    }
    let mut tx = pool.begin().await?;
    // No notification is written while the origin moves, and none is in flight.
    sqlx::query("LOCK TABLE notifications IN SHARE MODE")
        .execute(&mut *tx)
        .await?;
    let moved = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE position_origin
            SET origin = (SELECT max(seq) FROM notifications) + 1
                         - (pg_snapshot_xmax(pg_current_snapshot())::text::bigint << 16)
          WHERE ({behind})"
    )))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(moved > 0)
}

/// Inserts `items` (publisher, notification): the notifications, each taking its position in
/// its INSERT, then the inbox entries of their personal recipients and their email jobs, and
/// counts all of them (ARCHITECTURE.md, "Counts and pages"). Call it once per transaction, with
/// fewer than [`MAX_PER_TRANSACTION`] items: the positions it hands out are unique only then.
/// Public for the ordering tests, which commit and abort around it.
pub async fn store(
    conn: &mut PgConnection,
    items: &[(&str, &NewNotification)],
) -> Result<Vec<Created>, sqlx::Error> {
    let ids: Vec<Uuid> = items.iter().map(|_| Uuid::now_v7()).collect();
    let rows: Vec<serde_json::Value> = ids
        .iter()
        .zip(items)
        .map(|(id, (publisher, n))| {
            let roles: &[String] = match &n.audience {
                Audience::Roles(r) => r,
                _ => &[],
            };
            let channels: Vec<&str> = n.channels.iter().map(|c| c.as_str()).collect();
            serde_json::json!({
                "id": id, "audience": n.audience.kind(), "roles": roles, "type": n.kind,
                "priority": n.priority.as_str(), "title": n.title, "message": n.message,
                "action_url": n.action_url, "data": n.data,
                "triggered_by_name": n.triggered_by_name, "channels": channels,
                "publisher": publisher,
            })
        })
        .collect();
    // The notifications, each taking its position from this transaction's id (ARCHITECTURE.md,
    // "Ordering"): one INSERT of notifications per transaction, so the index in it tells them
    // apart. No lock: readers of "everything after" wait for the horizon instead. Role and
    // broadcast ones are counted by audience in the same statement (rows in key order, so two
    // transactions never wait for each other's counters in a cycle).
    let positions: Vec<(Uuid, i64, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "WITH created AS (
             INSERT INTO notifications (id, seq, audience, roles, type, priority, title, message,
                                        action_url, data, triggered_by_name, channels, publisher)
             SELECT id, (pg_current_xact_id()::text::bigint << 16)
                        + (SELECT origin FROM position_origin) + ord - 1,
                    audience, ARRAY(SELECT jsonb_array_elements_text(roles)), type, priority,
                    title, message, action_url, data, triggered_by_name,
                    ARRAY(SELECT jsonb_array_elements_text(channels)), publisher
               FROM ROWS FROM (jsonb_to_recordset($1) AS (id uuid, audience text, roles jsonb,
                    type text, priority text, title text, message text, action_url text,
                    data jsonb, triggered_by_name text, channels jsonb, publisher text))
                    WITH ORDINALITY AS t(id, audience, roles, type, priority, title, message,
                    action_url, data, triggered_by_name, channels, publisher, ord)
             RETURNING id, seq, created_at, audience, roles, type, priority
         ), counted AS (
             INSERT INTO shared_counts AS c (roles, type, priority, total)
             SELECT roles, type, priority, count(*) FROM created WHERE audience <> 'users'
              GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
             ON CONFLICT (roles, type, priority) DO UPDATE SET total = c.total + excluded.total
         )
         SELECT id, seq, created_at FROM created",
    )
    .bind(serde_json::Value::Array(rows))
    .fetch_all(&mut *conn)
    .await?;
    let position = |id: &Uuid| {
        positions
            .iter()
            .find(|(p, _, _)| p == id)
            .ok_or(sqlx::Error::RowNotFound)
    };

    // Inbox entries of every personal recipient, and the email outbox: one job per personal
    // recipient with an address, in this transaction, so a committed notification always has its
    // emails queued (and a rolled-back one never does).
    let mut inbox = Columns::default();
    let mut mail = Columns::default();
    for (id, (_, n)) in ids.iter().zip(items) {
        let Audience::Users(recipients) = &n.audience else {
            continue;
        };
        let seq = position(id)?.1;
        let emailed = n.channels.contains(&Channel::Email);
        for r in recipients {
            inbox.push(*id, seq, r, n);
            if emailed && r.email.is_some() {
                mail.push(*id, seq, r, n);
            }
        }
    }
    if !inbox.users.is_empty() {
        // The entries, and the recipients' counts in key order (see above).
        sqlx::query(
            "WITH entries AS (
                 INSERT INTO inbox_entries (user_id, notification_id, email, name, personal_seq)
                 SELECT u, n, e, nm, s
                   FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::bigint[])
                        AS t(u, n, e, nm, s)
             )
             INSERT INTO personal_counts AS c (user_id, type, priority, total, unread)
             SELECT u, ty, pr, count(*), count(*)
               FROM unnest($1::text[], $6::text[], $7::text[]) AS t(u, ty, pr)
              GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
             ON CONFLICT (user_id, type, priority)
             DO UPDATE SET total = c.total + excluded.total, unread = c.unread + excluded.unread",
        )
        .bind(&inbox.users)
        .bind(&inbox.notifications)
        .bind(&inbox.emails)
        .bind(&inbox.names)
        .bind(&inbox.positions)
        .bind(&inbox.types)
        .bind(&inbox.priorities)
        .execute(&mut *conn)
        .await?;
    }
    if !mail.users.is_empty() {
        sqlx::query(
            "INSERT INTO email_jobs (notification_id, user_id, email, name, not_before, require_unseen)
             SELECT n, u, e, nm, now() + make_interval(mins => d), r
               FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::int[], $6::bool[])
                    AS t(u, n, e, nm, d, r)",
        )
        .bind(&mail.users)
        .bind(&mail.notifications)
        .bind(&mail.emails)
        .bind(&mail.names)
        .bind(&mail.delay_minutes)
        .bind(&mail.require_unseen)
        .execute(&mut *conn)
        .await?;
    }

    let mut created = Vec::with_capacity(items.len());
    for (id, (_, n)) in ids.iter().zip(items) {
        let (_, seq, created_at) = position(id)?;
        created.push(Created {
            id: *id,
            audience: n.audience.kind().to_owned(),
            recipient_count: match &n.audience {
                Audience::Users(r) => r.len(),
                _ => 0,
            },
            notification: Notification {
                id: *id,
                kind: n.kind.clone(),
                priority: n.priority,
                title: n.title.clone(),
                message: n.message.clone(),
                action_url: n.action_url.clone(),
                data: n.data.clone(),
                triggered_by_name: n.triggered_by_name.clone(),
                created_at: *created_at,
                is_read: false,
                seq: *seq,
            },
        });
    }
    Ok(created)
}

/// Per-recipient rows of a batch, as column arrays for `unnest`.
#[derive(Default)]
struct Columns {
    users: Vec<String>,
    notifications: Vec<Uuid>,
    positions: Vec<i64>,
    types: Vec<String>,
    priorities: Vec<&'static str>,
    emails: Vec<Option<String>>,
    names: Vec<Option<String>>,
    delay_minutes: Vec<i32>,
    require_unseen: Vec<bool>,
}

impl Columns {
    fn push(&mut self, id: Uuid, seq: i64, r: &crate::domain::Recipient, n: &NewNotification) {
        self.users.push(r.id.clone());
        self.notifications.push(id);
        self.positions.push(seq);
        self.types.push(n.kind.clone());
        self.priorities.push(n.priority.as_str());
        self.emails.push(r.email.clone());
        self.names.push(r.name.clone());
        self.delay_minutes
            .push(i32::try_from(n.email_if_unseen_minutes.unwrap_or(0)).unwrap_or(0));
        self.require_unseen
            .push(n.email_if_unseen_minutes.is_some());
    }
}

/// Notifications taken into one transaction at most.
const BATCH_MAX: usize = 128;
const _: () = assert!(BATCH_MAX < MAX_PER_TRANSACTION);
/// Transactions being written at once.
const WRITERS: usize = 2;
/// Kept between the end of a publish's own wait and the api's request timeout, so the caller,
/// not the timeout layer, decides and a commit is never cut off by it.
const ANSWER_MARGIN: Duration = Duration::from_millis(500);

/// How long after the acquire timeout a transaction that has a connection may take to begin
/// its commit: a Postgres that answers nothing for longer is treated as unreachable (503).
const WRITE_GRACE: Duration = Duration::from_millis(400);

/// Where a queued notification stands. The caller and the writer move it on with
/// compare-and-swap, so exactly one of "the caller gave up" and "the writer commits it" happens.
mod stage {
    /// In the queue, or in a transaction still waiting for a connection.
    pub const WAITING: u8 = 0;
    /// Written in an open transaction that has not started to commit.
    pub const STARTED: u8 = 1;
    /// Its transaction is committing: the caller waits for the outcome.
    pub const COMMITTING: u8 = 2;
    /// The caller gave up (timeout, or the client went away): it must not be stored.
    pub const ABANDONED: u8 = 3;
}

struct Job {
    publisher: String,
    notification: NewNotification,
    stage: Arc<AtomicU8>,
    /// The latest moment a connection may still be found for it (arrival + acquire timeout).
    acquire_by: Instant,
    reply: oneshot::Sender<Result<Created, ApiError>>,
}

impl Job {
    fn advance(&self, from: u8, to: u8) -> bool {
        self.stage
            .compare_exchange(from, to, AtomicOrdering::SeqCst, AtomicOrdering::SeqCst)
            .is_ok()
    }
}

/// Gives the job up when the caller's future is dropped (the timeout layer, a client that went
/// away) unless its transaction is already committing.
struct GiveUp(Arc<AtomicU8>);

impl GiveUp {
    /// Abandons the job if it is still at `from`; true when it is now abandoned.
    fn from(&self, from: u8) -> bool {
        self.0
            .compare_exchange(
                from,
                stage::ABANDONED,
                AtomicOrdering::SeqCst,
                AtomicOrdering::SeqCst,
            )
            .is_ok()
    }
}

impl Drop for GiveUp {
    fn drop(&mut self) {
        let _ = self.from(stage::WAITING) || self.from(stage::STARTED);
    }
}

/// How long a publish may wait for Postgres.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    /// For a connection (the pool's acquire timeout): past it, 503 and nothing stored.
    pub acquire: Duration,
    /// For the whole request (the api's request timeout).
    pub request: Duration,
}

/// Stores notifications without an idempotency key in shared transactions (see the module
/// docs). A request is answered only after the transaction holding it committed; a request
/// answered 503 (or abandoned by its client) is never stored: see `docs/api.md`.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Job>,
    deadlines: Deadlines,
}

impl Batcher {
    /// Starts the writer tasks on `pool`.
    pub fn start(pool: PgPool, deadlines: Deadlines) -> Self {
        let (queue, rx) = mpsc::channel::<Job>(4 * BATCH_MAX);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WRITERS {
            let (pool, rx) = (pool.clone(), rx.clone());
            tokio::spawn(async move {
                let mut jobs = Vec::with_capacity(BATCH_MAX);
                loop {
                    {
                        let mut rx = rx.lock().await;
                        if rx.recv_many(&mut jobs, BATCH_MAX).await == 0 {
                            return;
                        }
                    }
                    write_batch(&pool, std::mem::take(&mut jobs)).await;
                }
            });
        }
        Self { queue, deadlines }
    }

    /// Stores `n` for `publisher`; answers once it is committed. A 503 comes within the acquire
    /// timeout when no connection is to be had, and means nothing was stored.
    pub async fn create(&self, publisher: &str, n: NewNotification) -> Result<Created, ApiError> {
        let arrived = Instant::now();
        let stage = Arc::new(AtomicU8::new(stage::WAITING));
        let give_up = GiveUp(stage.clone());
        let (reply, mut answer) = oneshot::channel();
        let job = Job {
            publisher: publisher.to_owned(),
            notification: n,
            stage,
            acquire_by: arrived + self.deadlines.acquire,
            reply,
        };
        let unavailable = || ApiError::Unavailable("database");
        self.queue.send(job).await.map_err(|_| unavailable())?;
        // A connection must be found within the acquire timeout, and the commit must begin
        // before the request deadline; otherwise the caller gives up (503) and the job is never
        // stored. Once its transaction is committing, the outcome decides the answer.
        let phases = [
            (stage::WAITING, arrived + self.deadlines.acquire),
            (
                stage::STARTED,
                arrived
                    + (self.deadlines.acquire + WRITE_GRACE)
                        .min(self.deadlines.request.saturating_sub(ANSWER_MARGIN)),
            ),
        ];
        for (stage, until) in phases {
            match tokio::time::timeout_at(until.into(), &mut answer).await {
                Ok(answered) => return answered.map_err(|_| unavailable())?,
                Err(_) if give_up.from(stage) => return Err(unavailable()),
                Err(_) => {}
            }
        }
        answer.await.map_err(|_| unavailable())?
    }
}

/// Stores `jobs` in one transaction and answers each. Jobs whose callers gave up are left out.
/// If the database is unreachable, every job is answered 503 at once; if Postgres refused the
/// batch for another reason, each is tried alone, so one notification Postgres refuses cannot
/// fail the others.
async fn write_batch(pool: &PgPool, mut jobs: Vec<Job>) {
    jobs.retain(|j| j.stage.load(AtomicOrdering::SeqCst) != stage::ABANDONED);
    let Some(acquire_by) = jobs.iter().map(|j| j.acquire_by).max() else {
        return;
    };
    let mut conn = match tokio::time::timeout_at(acquire_by.into(), pool.acquire()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return answer_all(jobs, || failure(&e)),
        Err(_) => return answer_all(jobs, || ApiError::Unavailable("database")),
    };
    // Taken: a caller still waiting now waits for the commit (until its request deadline).
    jobs.retain(|j| j.advance(stage::WAITING, stage::STARTED));
    match store_batch(pool, &mut conn, &mut jobs).await {
        Ok(()) => {}
        Err(e) if crate::error::database_unreachable(&e) || jobs.len() == 1 => {
            answer_all(jobs, || failure(&e));
        }
        Err(e) => {
            tracing::debug!(cause = %e, jobs = jobs.len(), "a batch failed; storing each alone");
            for job in jobs {
                let mut alone = vec![job];
                if let Err(e) = store_batch(pool, &mut conn, &mut alone).await {
                    answer_all(alone, || failure(&e));
                }
            }
        }
    }
}

/// The answer for a job Postgres did not store: 503 when it is unreachable, else a 500.
fn failure(e: &sqlx::Error) -> ApiError {
    if crate::error::database_unreachable(e) {
        ApiError::Unavailable("database")
    } else {
        ApiError::Internal(anyhow::anyhow!("storing a notification failed: {e}"))
    }
}

fn answer_all(jobs: Vec<Job>, err: impl Fn() -> ApiError) {
    for job in jobs {
        let _ = job.reply.send(Err(err()));
    }
}

/// Writes `jobs` (all STARTED) in one transaction on `conn` and commits it, answering each. Jobs
/// whose callers gave up in the meantime are dropped before the commit: the transaction is then
/// rolled back and written again without them. On error nothing is answered and `jobs` is
/// unchanged (the caller decides); abandoned jobs are removed from it.
async fn store_batch(
    pool: &PgPool,
    conn: &mut PgConnection,
    jobs: &mut Vec<Job>,
) -> Result<(), sqlx::Error> {
    loop {
        jobs.retain(|j| j.stage.load(AtomicOrdering::SeqCst) != stage::ABANDONED);
        if jobs.is_empty() {
            return Ok(());
        }
        let items: Vec<(&str, &NewNotification)> = jobs
            .iter()
            .map(|j| (j.publisher.as_str(), &j.notification))
            .collect();
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let created = store(&mut tx, &items).await?;
        // The point of no return: each caller still there is told to wait for the commit.
        let all_there = jobs
            .iter()
            .all(|j| j.advance(stage::STARTED, stage::COMMITTING));
        if !all_there {
            // Someone gave up after its rows were written: write the batch again without it.
            // Those already moved to COMMITTING go back to STARTED for the next round.
            for j in jobs.iter() {
                j.advance(stage::COMMITTING, stage::STARTED);
            }
            tx.rollback().await?;
            continue;
        }
        if let Err(e) = tx.commit().await {
            // The commit may have reached Postgres before the connection broke: find out,
            // rather than answer 503 for something stored.
            let ids: Vec<Uuid> = created.iter().map(|c| c.id).collect();
            if !committed_after_all(pool, &ids).await {
                return Err(e);
            }
        }
        for (job, c) in std::mem::take(jobs).into_iter().zip(created) {
            let _ = job.reply.send(Ok(c));
        }
        return Ok(());
    }
}

/// After a failed COMMIT: are these notifications stored? Asked on another connection for up to
/// [`VERIFY_FOR`]; `false` when they are not, or when Postgres could not be asked (then the
/// outcome is unknown and logged: a publisher that must not duplicate uses an idempotency key).
async fn committed_after_all(pool: &PgPool, ids: &[Uuid]) -> bool {
    let deadline = Instant::now() + VERIFY_FOR;
    while Instant::now() < deadline {
        let found: Result<i64, _> =
            sqlx::query_scalar("SELECT count(*) FROM notifications WHERE id = ANY($1)")
                .bind(ids)
                .fetch_one(pool)
                .await;
        match found {
            Ok(n) => return n > 0,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    tracing::error!(
        notifications = ids.len(),
        "a COMMIT failed and Postgres could not be asked whether it took effect: answered 503"
    );
    false
}

/// How long [`committed_after_all`] keeps asking.
const VERIFY_FOR: Duration = Duration::from_secs(3);
