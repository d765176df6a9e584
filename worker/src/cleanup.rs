//! Retention: read notifications older than N days and all notifications older than M days are
//! deleted in bounded batches, by one worker at a time (a session advisory lock), never taking a
//! notification that still has an unsent email job. Old idempotency records go too.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// Session advisory lock held by the one worker cleaning up.
pub const CLEANUP_LOCK: i64 = 0x6865_7261_6c64_0003;

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub read_days: u32,
    pub all_days: u32,
    pub batch: i64,
}

/// Rows deleted by one run.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    pub past_hard_limit: u64,
    pub read: u64,
    pub idempotency_records: u64,
}

/// Runs one cleanup, or returns `None` when another worker is cleaning up right now.
pub async fn run(
    pool: &PgPool,
    now: DateTime<Utc>,
    r: Retention,
) -> Result<Option<Report>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mine: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(CLEANUP_LOCK)
        .fetch_one(&mut *conn)
        .await?;
    if !mine {
        return Ok(None);
    }
    let result = batches(&mut conn, now, r).await;
    let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(CLEANUP_LOCK)
        .execute(&mut *conn)
        .await;
    result.map(Some)
}

/// Deletes the notifications `$1` and takes them out of the inbox counters in the same
/// statement (ARCHITECTURE.md, "Counts and pages"); the statement's one row is how many went.
/// Run after [`forget_all`] locked them. Their entries are locked too, so a read or delete of
/// an existing entry committed meanwhile is counted once.
const FORGET: &str = "WITH gone AS (
             DELETE FROM notifications WHERE id = ANY($1)
             RETURNING id, audience, roles, type, priority
         ), entries AS (
             SELECT e.user_id, e.is_read, e.deleted_at IS NOT NULL AS deleted,
                    g.audience, g.roles, g.type, g.priority
               FROM inbox_entries e JOIN gone g ON g.id = e.notification_id
                FOR UPDATE OF e
         ), personal AS (
             UPDATE personal_counts c SET total = c.total - d.total, unread = c.unread - d.unread
               FROM (SELECT user_id, type, priority, count(*) AS total,
                            count(*) FILTER (WHERE NOT is_read) AS unread
                       FROM entries WHERE audience = 'users' AND NOT deleted
                      GROUP BY 1, 2, 3) d
              WHERE c.user_id = d.user_id AND c.type = d.type AND c.priority = d.priority
         ), shared AS (
             UPDATE shared_counts c SET total = c.total - d.total
               FROM (SELECT roles, type, priority, count(*) AS total FROM gone
                      WHERE audience <> 'users' GROUP BY 1, 2, 3) d
              WHERE c.roles = d.roles AND c.type = d.type AND c.priority = d.priority
         ), marks AS (
             UPDATE shared_marks m SET read = m.read - d.read, deleted = m.deleted - d.deleted
               FROM (SELECT user_id, roles, type, priority,
                            count(*) FILTER (WHERE is_read AND NOT deleted) AS read,
                            count(*) FILTER (WHERE deleted) AS deleted
                       FROM entries WHERE audience <> 'users' GROUP BY 1, 2, 3, 4) d
              WHERE m.user_id = d.user_id AND m.roles = d.roles AND m.type = d.type
                AND m.priority = d.priority
         )
         SELECT count(*) FROM gone";

/// Forgets what `pick` selects (with `$1` now, `$2` days, `$3` the batch size), a batch at a
/// time, each in a transaction of its own: the picked notifications are locked first (a
/// concurrent read or delete that creates an entry waits for that lock in its foreign-key
/// check, then fails), and [`FORGET`] runs as a second statement, whose fresh snapshot sees every
/// entry committed before the lock. In one statement, an entry committed between its snapshot
/// and the delete would go by cascade without being subtracted.
async fn forget_all(
    conn: &mut sqlx::PgConnection,
    pick: &str,
    now: DateTime<Utc>,
    days: i32,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let ids: Vec<uuid::Uuid> =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("{pick} FOR UPDATE OF n")))
                .bind(now)
                .bind(days)
                .bind(batch)
                .fetch_all(&mut *tx)
                .await?;
        let n: i64 = if ids.is_empty() {
            0
        } else {
            sqlx::query_scalar(FORGET)
                .bind(&ids)
                .fetch_one(&mut *tx)
                .await?
        };
        tx.commit().await?;
        total += n as u64;
        if (ids.len() as i64) < batch {
            return Ok(total);
        }
    }
}

/// Runs `sql` (which answers how many rows it removed) until it removes fewer than `batch`.
async fn repeat(
    conn: &mut sqlx::PgConnection,
    sql: &str,
    now: DateTime<Utc>,
    days: i32,
    batch: i64,
) -> Result<u64, sqlx::Error> {
    let mut total = 0;
    loop {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(now)
            .bind(days)
            .bind(batch)
            .fetch_one(&mut *conn)
            .await?;
        let n = n as u64;
        total += n;
        if n < batch as u64 {
            return Ok(total);
        }
    }
}

async fn batches(
    conn: &mut sqlx::PgConnection,
    now: DateTime<Utc>,
    r: Retention,
) -> Result<Report, sqlx::Error> {
    let past_hard_limit = forget_all(
        conn,
        "SELECT n.id FROM notifications n
              WHERE n.created_at < $1 - make_interval(days => $2)
                AND NOT EXISTS (SELECT 1 FROM email_jobs j WHERE j.notification_id = n.id AND j.status = 'pending')
              LIMIT $3",
        now,
        r.all_days as i32,
        r.batch,
    )
    .await?;
    // "Read" is per user: a personal notification goes once every recipient has read (or
    // deleted) it. Role and broadcast notifications have no complete reader list; they go at the
    // hard limit.
    let read = forget_all(
        conn,
        "SELECT n.id FROM notifications n
              WHERE n.created_at < $1 - make_interval(days => $2) AND n.audience = 'users'
                AND NOT EXISTS (SELECT 1 FROM inbox_entries e
                                 WHERE e.notification_id = n.id AND NOT e.is_read AND e.deleted_at IS NULL)
                AND NOT EXISTS (SELECT 1 FROM email_jobs j WHERE j.notification_id = n.id AND j.status = 'pending')
              LIMIT $3",
        now,
        r.read_days as i32,
        r.batch,
    )
    .await?;
    let idempotency_records = repeat(
        conn,
        "WITH gone AS (
             DELETE FROM publish_requests WHERE ctid IN (
                 SELECT ctid FROM publish_requests
                  WHERE created_at < $1 - make_interval(days => $2) LIMIT $3)
             RETURNING 1)
         SELECT count(*) FROM gone",
        now,
        1,
        r.batch,
    )
    .await?;
    Ok(Report {
        past_hard_limit,
        read,
        idempotency_records,
    })
}
