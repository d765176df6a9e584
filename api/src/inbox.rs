//! A user's inbox in Postgres: what they can see, and the changes they can make (read, all
//! read, delete). What a user sees is their personal notifications plus the role and broadcast
//! notifications their token's roles reach, each with the user's own read/deleted state.

use chrono::{DateTime, Utc};
use herald_core::auth::Claims;
use herald_core::wire::{Notification, Priority};
use sqlx::PgPool;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Every notification user `$1` with roles `$2` can see and has not deleted, with their read
/// state. Personal ones come through `inbox_entries`; shared ones are scanned by audience.
macro_rules! visible {
    () => {
        "WITH visible AS (
            SELECT n.id, n.seq, n.type, n.priority, n.title, n.message, n.action_url, n.data,
                   n.triggered_by_name, n.created_at, e.is_read
              FROM inbox_entries e
              JOIN notifications n ON n.id = e.notification_id
             WHERE e.user_id = $1 AND e.deleted_at IS NULL AND n.audience = 'users'
                   AND n.seq IS NOT NULL
            UNION ALL
            SELECT n.id, n.seq, n.type, n.priority, n.title, n.message, n.action_url, n.data,
                   n.triggered_by_name, n.created_at, coalesce(e.is_read, false)
              FROM notifications n
              LEFT JOIN inbox_entries e ON e.notification_id = n.id AND e.user_id = $1
             WHERE n.audience <> 'users' AND n.seq IS NOT NULL
                   AND (n.audience = 'broadcast' OR n.roles && $2::text[])
                   AND e.deleted_at IS NULL
        ) "
    };
}

const COLUMNS: &str = "id, seq, type, priority, title, message, action_url, data, \
                       triggered_by_name, created_at, is_read";

#[derive(sqlx::FromRow)]
pub(crate) struct Row {
    id: Uuid,
    pub(crate) seq: i64,
    #[sqlx(rename = "type")]
    kind: String,
    priority: String,
    title: String,
    message: String,
    action_url: Option<String>,
    data: serde_json::Value,
    triggered_by_name: Option<String>,
    created_at: DateTime<Utc>,
    is_read: bool,
}

impl From<Row> for Notification {
    fn from(r: Row) -> Self {
        Notification {
            id: r.id,
            kind: r.kind,
            // The table's CHECK constraint admits only the four names.
            priority: Priority::parse(&r.priority).unwrap_or(Priority::Medium),
            title: r.title,
            message: r.message,
            action_url: r.action_url,
            data: r.data,
            triggered_by_name: r.triggered_by_name,
            created_at: r.created_at,
            is_read: r.is_read,
            seq: r.seq,
        }
    }
}

/// Filters and paging of the inbox list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub skip: i64,
    pub limit: i64,
    pub unread_only: bool,
    pub kind: Option<String>,
    pub priority: Option<Priority>,
}

pub struct Page {
    pub notifications: Vec<Notification>,
    /// How many match the filters (for paging).
    pub total: i64,
    /// How many of all the user's notifications are unread (ignores the filters).
    pub unread_count: i64,
}

/// Newest first.
pub async fn list(pool: &PgPool, user: &Claims, q: &ListQuery) -> Result<Page, sqlx::Error> {
    const FILTER: &str = "($3::bool = false OR NOT is_read) AND ($4::text IS NULL OR type = $4) \
                          AND ($5::text IS NULL OR priority = $5)";
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{} SELECT {COLUMNS} FROM visible WHERE {FILTER} ORDER BY seq DESC LIMIT $6 OFFSET $7",
        visible!()
    )))
    .bind(&user.sub)
    .bind(&user.roles)
    .bind(q.unread_only)
    .bind(&q.kind)
    .bind(q.priority.map(Priority::as_str))
    .bind(q.limit)
    .bind(q.skip)
    .fetch_all(pool)
    .await?;
    let (total, unread_count): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{} SELECT count(*) FILTER (WHERE {FILTER}), count(*) FILTER (WHERE NOT is_read) \
         FROM visible",
        visible!()
    )))
    .bind(&user.sub)
    .bind(&user.roles)
    .bind(q.unread_only)
    .bind(&q.kind)
    .bind(q.priority.map(Priority::as_str))
    .fetch_one(pool)
    .await?;
    Ok(Page {
        notifications: rows.into_iter().map(Notification::from).collect(),
        total,
        unread_count,
    })
}

/// Where a resume starts: the position of notification `id`, if this user can see it (or saw
/// it and deleted it since). `None` means "cannot replay from there".
pub async fn position_of(
    pool: &PgPool,
    user: &Claims,
    id: Uuid,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT n.seq FROM notifications n
          WHERE n.id = $3 AND n.seq IS NOT NULL AND (
                n.audience = 'broadcast'
             OR (n.audience = 'roles' AND n.roles && $2::text[])
             OR (n.audience = 'users' AND EXISTS (
                    SELECT 1 FROM inbox_entries e WHERE e.notification_id = n.id AND e.user_id = $1)))",
    )
    .bind(&user.sub)
    .bind(&user.roles)
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Everything after position `after`, oldest first, at most `limit`; the flag says whether
/// more follow. Only positions below the horizon are returned (ARCHITECTURE.md, "Ordering"), so
/// paging with the last returned position never misses nor repeats a notification. Committed
/// ones held back by the horizon count as "more"; when nothing but those would be returned, the
/// read is repeated for up to [`HELD_BACK_PATIENCE`] (waits doubling from 1 ms) before answering,
/// so a client paging until no more follow neither spins nor stops early.
pub async fn after(
    pool: &PgPool,
    user: &Claims,
    after: i64,
    limit: i64,
) -> Result<(Vec<Notification>, bool), sqlx::Error> {
    #[derive(sqlx::FromRow)]
    struct Positioned {
        #[sqlx(flatten)]
        row: Row,
        horizon: i64,
    }
    let give_up_at = tokio::time::Instant::now() + HELD_BACK_PATIENCE;
    let mut wait = std::time::Duration::from_millis(1);
    loop {
        let rows: Vec<Positioned> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{} SELECT {COLUMNS}, h.horizon FROM visible, (SELECT herald_position_horizon() AS horizon) h
                WHERE seq > $3 ORDER BY seq ASC LIMIT $4",
            visible!()
        )))
        .bind(&user.sub)
        .bind(&user.roles)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?;
        let fetched = rows.len();
        let mut ready: Vec<Row> = rows
            .into_iter()
            .take_while(|r| r.row.seq < r.horizon)
            .map(|r| r.row)
            .collect();
        let held_back = ready.len() < fetched;
        if !ready.is_empty() || !held_back || tokio::time::Instant::now() >= give_up_at {
            let more = held_back || ready.len() as i64 > limit;
            ready.truncate(limit as usize);
            return Ok((ready.into_iter().map(Notification::from).collect(), more));
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_millis(64));
    }
}

/// How long a read of "everything after" waits for the horizon to pass notifications that are
/// committed but held back, before answering with none and "more follow".
const HELD_BACK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

/// One notification as this user sees it.
pub async fn get(
    pool: &PgPool,
    user: &Claims,
    id: Uuid,
) -> Result<Option<Notification>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{} SELECT {COLUMNS} FROM visible WHERE id = $3",
        visible!()
    )))
    .bind(&user.sub)
    .bind(&user.roles)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(Notification::from))
}

pub struct Stats {
    pub total_count: i64,
    pub unread_count: i64,
    pub by_type: BTreeMap<String, i64>,
    pub by_priority: BTreeMap<String, i64>,
}

pub async fn stats(pool: &PgPool, user: &Claims) -> Result<Stats, sqlx::Error> {
    let groups: Vec<(String, String, bool, i64)> = sqlx::query_as(concat!(
        visible!(),
        "SELECT type, priority, is_read, count(*) FROM visible GROUP BY 1, 2, 3"
    ))
    .bind(&user.sub)
    .bind(&user.roles)
    .fetch_all(pool)
    .await?;
    let mut stats = Stats {
        total_count: 0,
        unread_count: 0,
        by_type: BTreeMap::new(),
        by_priority: BTreeMap::new(),
    };
    for (kind, priority, is_read, n) in groups {
        stats.total_count += n;
        if !is_read {
            stats.unread_count += n;
        }
        *stats.by_type.entry(kind).or_default() += n;
        *stats.by_priority.entry(priority).or_default() += n;
    }
    Ok(stats)
}

/// Marks one notification read for this user; `None` if they cannot see it.
pub async fn mark_read(
    pool: &PgPool,
    user: &Claims,
    id: Uuid,
) -> Result<Option<Notification>, sqlx::Error> {
    let Some(mut n) = get(pool, user, id).await? else {
        return Ok(None);
    };
    if !n.is_read {
        sqlx::query(
            "INSERT INTO inbox_entries (user_id, notification_id, is_read, read_at)
             VALUES ($1, $2, true, now())
             ON CONFLICT (user_id, notification_id)
             DO UPDATE SET is_read = true, read_at = coalesce(inbox_entries.read_at, now())",
        )
        .bind(&user.sub)
        .bind(id)
        .execute(pool)
        .await?;
        n.is_read = true;
    }
    Ok(Some(n))
}

/// Records that one of this user's tabs displayed the notification (for email-if-unseen);
/// `false` if they cannot see it.
pub async fn mark_seen(pool: &PgPool, user: &Claims, id: Uuid) -> Result<bool, sqlx::Error> {
    if get(pool, user, id).await?.is_none() {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO inbox_entries (user_id, notification_id, seen_at) VALUES ($1, $2, now())
         ON CONFLICT (user_id, notification_id)
         DO UPDATE SET seen_at = coalesce(inbox_entries.seen_at, now())",
    )
    .bind(&user.sub)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(true)
}

/// Marks everything this user can see as read; returns how many changed.
pub async fn mark_all_read(pool: &PgPool, user: &Claims) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE inbox_entries e SET is_read = true, read_at = now()
           FROM notifications n
          WHERE e.user_id = $1 AND n.id = e.notification_id AND NOT e.is_read
                AND e.deleted_at IS NULL AND n.seq IS NOT NULL
                AND (n.audience IN ('users', 'broadcast') OR n.roles && $2::text[])",
    )
    .bind(&user.sub)
    .bind(&user.roles)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let inserted = sqlx::query(
        "INSERT INTO inbox_entries (user_id, notification_id, is_read, read_at)
         SELECT $1, n.id, true, now()
           FROM notifications n
          WHERE n.audience <> 'users' AND n.seq IS NOT NULL
                AND (n.audience = 'broadcast' OR n.roles && $2::text[])
                AND NOT EXISTS (SELECT 1 FROM inbox_entries e
                                 WHERE e.notification_id = n.id AND e.user_id = $1)
         ON CONFLICT (user_id, notification_id) DO NOTHING",
    )
    .bind(&user.sub)
    .bind(&user.roles)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(updated + inserted)
}

/// Deletes one notification from this user's inbox (others keep theirs); `false` if they
/// cannot see it.
pub async fn delete(pool: &PgPool, user: &Claims, id: Uuid) -> Result<bool, sqlx::Error> {
    if get(pool, user, id).await?.is_none() {
        return Ok(false);
    }
    sqlx::query(
        "INSERT INTO inbox_entries (user_id, notification_id, deleted_at)
         VALUES ($1, $2, now())
         ON CONFLICT (user_id, notification_id) DO UPDATE SET deleted_at = now()",
    )
    .bind(&user.sub)
    .bind(id)
    .execute(pool)
    .await?;
    Ok(true)
}

/// A user's notification preferences.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Preferences {
    pub email_enabled: bool,
    /// `off`, `hourly` or `daily`.
    pub digest: String,
    pub muted_types: Vec<String>,
}

impl Default for Preferences {
    fn default() -> Self {
        Self {
            email_enabled: true,
            digest: "off".to_owned(),
            muted_types: Vec::new(),
        }
    }
}

pub async fn preferences(pool: &PgPool, user_id: &str) -> Result<Preferences, sqlx::Error> {
    let row: Option<Preferences> = sqlx::query_as(
        "SELECT email_enabled, digest, muted_types FROM preferences WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.unwrap_or_default())
}

pub async fn save_preferences(
    pool: &PgPool,
    user_id: &str,
    p: &Preferences,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO preferences (user_id, email_enabled, digest, muted_types, updated_at)
         VALUES ($1, $2, $3, $4, now())
         ON CONFLICT (user_id) DO UPDATE SET email_enabled = $2, digest = $3, muted_types = $4,
                                             updated_at = now()",
    )
    .bind(user_id)
    .bind(p.email_enabled)
    .bind(&p.digest)
    .bind(&p.muted_types)
    .execute(pool)
    .await?;
    Ok(())
}
