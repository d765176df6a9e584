//! A user's inbox in Postgres: what they can see, and the changes they can make (read, all
//! read, delete). What a user sees is their personal notifications plus the role and broadcast
//! notifications their token's roles reach, each with the user's own read/deleted state.
//!
//! Reads cost the same whatever the inbox holds (ARCHITECTURE.md, "Counts and pages"): a page
//! is the newest (or, after a position, the oldest) rows of two index ranges, personal entries
//! by position and shared notifications by position, merged; counts come from per-user and
//! per-audience counters, which every change here keeps exact in the statement that makes it.

use chrono::{DateTime, Utc};
use herald_core::auth::Claims;
use herald_core::wire::{Notification, Priority};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::Duration;
use uuid::Uuid;

/// The columns of a [`Row`] from `notifications n`; each query adds `is_read`.
const COLUMNS: &str = "n.id, n.seq, n.type, n.priority, n.title, n.message, n.action_url, \
                       n.data, n.triggered_by_name, n.created_at";

/// A page of what user `$1` with roles `$2` sees, newest first: `$3` unread only, `$4` type or
/// NULL, `$5` priority or NULL; `{LIMIT}` rows after `{OFFSET}` skipped. Each half reads at most
/// `{PERSONAL}` / `{SHARED}` rows of one index, newest first (unread personal ones from an index
/// of their own): the page's end, or fewer when the counters say fewer match, so neither half
/// reads past its last match. The numbers are written into the text ([`list_sql`]), not bound:
/// with a LIMIT it cannot see, the planner prices a generic plan for a tenth of the table and
/// re-plans every request (≈ 0.7 ms each, measured); with them, it caches the plan.
pub(crate) const LIST: &str = "
WITH personal AS (
    SELECT e.notification_id AS id, e.personal_seq AS seq, e.is_read
      FROM inbox_entries e JOIN notifications n ON n.id = e.notification_id
     WHERE NOT $3 AND e.user_id = $1 AND e.deleted_at IS NULL AND e.personal_seq IS NOT NULL
       AND ($4::text IS NULL OR n.type = $4) AND ($5::text IS NULL OR n.priority = $5)
     ORDER BY e.personal_seq DESC LIMIT {PERSONAL}
), personal_unread AS (
    SELECT e.notification_id AS id, e.personal_seq AS seq, e.is_read
      FROM inbox_entries e JOIN notifications n ON n.id = e.notification_id
     WHERE $3 AND e.user_id = $1 AND e.deleted_at IS NULL AND e.personal_seq IS NOT NULL
       AND NOT e.is_read
       AND ($4::text IS NULL OR n.type = $4) AND ($5::text IS NULL OR n.priority = $5)
     ORDER BY e.personal_seq DESC LIMIT {PERSONAL}
), shared AS (
    SELECT n.id, n.seq, coalesce(e.is_read, false) AS is_read
      FROM notifications n
      LEFT JOIN inbox_entries e ON e.user_id = $1 AND e.notification_id = n.id
     WHERE n.audience <> 'users' AND (n.audience = 'broadcast' OR n.roles && $2::text[])
       AND e.deleted_at IS NULL AND NOT (coalesce(e.is_read, false) AND $3)
       AND ($4::text IS NULL OR n.type = $4) AND ($5::text IS NULL OR n.priority = $5)
     ORDER BY n.seq DESC LIMIT {SHARED}
), page AS (
    SELECT * FROM personal UNION ALL SELECT * FROM personal_unread
    UNION ALL SELECT * FROM shared
     ORDER BY seq DESC LIMIT {LIMIT} OFFSET {OFFSET}
)
SELECT {COLUMNS}, p.is_read, h.horizon
  FROM page p JOIN notifications n ON n.id = p.id,
       (SELECT herald_position_horizon() AS horizon) h
 ORDER BY p.seq DESC";

/// What user `$1` with roles `$2` sees after position `$3`, oldest first, at most `$4` rows,
/// each with the horizon (ARCHITECTURE.md, "Ordering").
pub(crate) const AFTER: &str = "
WITH personal AS (
    SELECT e.notification_id AS id, e.personal_seq AS seq, e.is_read
      FROM inbox_entries e
     WHERE e.user_id = $1 AND e.deleted_at IS NULL AND e.personal_seq > $3
     ORDER BY e.personal_seq LIMIT $4
), shared AS (
    SELECT n.id, n.seq, coalesce(e.is_read, false) AS is_read
      FROM notifications n
      LEFT JOIN inbox_entries e ON e.user_id = $1 AND e.notification_id = n.id
     WHERE n.audience <> 'users' AND n.seq > $3
       AND (n.audience = 'broadcast' OR n.roles && $2::text[]) AND e.deleted_at IS NULL
     ORDER BY n.seq LIMIT $4
), page AS (
    SELECT * FROM personal UNION ALL SELECT * FROM shared ORDER BY seq LIMIT $4
)
SELECT {COLUMNS}, p.is_read, h.horizon
  FROM page p JOIN notifications n ON n.id = p.id,
       (SELECT herald_position_horizon() AS horizon) h
 ORDER BY p.seq";

/// Notification `$3` as user `$1` with roles `$2` sees it, if they do.
pub(crate) const GET: &str = "
SELECT {COLUMNS}, coalesce(e.is_read, false) AS is_read
  FROM notifications n
  LEFT JOIN inbox_entries e ON e.user_id = $1 AND e.notification_id = n.id
 WHERE n.id = $3 AND e.deleted_at IS NULL
   AND CASE n.audience WHEN 'users' THEN e.user_id IS NOT NULL
                       WHEN 'broadcast' THEN true
                       ELSE n.roles && $2::text[] END";

/// What user `$1` with roles `$2` sees, counted by type, priority and kind (`shared`: role or
/// broadcast): their personal counters, plus the counters of every audience that reaches them
/// less their own marks.
pub(crate) const COUNTS: &str = "
SELECT type, priority, shared, sum(total)::bigint AS total, sum(unread)::bigint AS unread FROM (
    SELECT type, priority, false AS shared, total, unread FROM personal_counts WHERE user_id = $1
    UNION ALL
    SELECT c.type, c.priority, true, c.total - coalesce(m.deleted, 0),
           c.total - coalesce(m.deleted, 0) - coalesce(m.read, 0)
      FROM shared_counts c
      LEFT JOIN shared_marks m
             ON m.user_id = $1 AND m.roles = c.roles AND m.type = c.type AND m.priority = c.priority
     WHERE c.roles = '{}' OR c.roles && $2::text[]
) counted
 GROUP BY type, priority, shared
HAVING sum(total) > 0";

/// User `$1` reads notification `$2`: its entry and, if it changed, the counters.
const MARK_READ: &str = "
WITH target AS (
    SELECT audience, roles, type, priority FROM notifications WHERE id = $2
), changed AS (
    INSERT INTO inbox_entries AS e (user_id, notification_id, is_read, read_at)
    SELECT $1, $2, true, now() FROM target
    ON CONFLICT (user_id, notification_id)
    DO UPDATE SET is_read = true, read_at = coalesce(e.read_at, now())
          WHERE NOT e.is_read AND e.deleted_at IS NULL
    RETURNING 1
), personal AS (
    UPDATE personal_counts c SET unread = c.unread - 1
      FROM target t
     WHERE t.audience = 'users' AND EXISTS (SELECT FROM changed)
       AND c.user_id = $1 AND c.type = t.type AND c.priority = t.priority
)
INSERT INTO shared_marks AS m (user_id, roles, type, priority, read, deleted)
SELECT $1, t.roles, t.type, t.priority, 1, 0
  FROM target t
 WHERE t.audience <> 'users' AND EXISTS (SELECT FROM changed)
ON CONFLICT (user_id, roles, type, priority) DO UPDATE SET read = m.read + 1";

/// User `$1` deletes notification `$2` from their inbox: its entry and, if it changed, the
/// counters.
const DELETE: &str = "
WITH target AS (
    SELECT audience, roles, type, priority FROM notifications WHERE id = $2
), changed AS (
    INSERT INTO inbox_entries AS e (user_id, notification_id, deleted_at)
    SELECT $1, $2, now() FROM target
    ON CONFLICT (user_id, notification_id) DO UPDATE SET deleted_at = now()
          WHERE e.deleted_at IS NULL
    RETURNING e.is_read
), personal AS (
    UPDATE personal_counts c
       SET total = c.total - 1, unread = c.unread - (NOT ch.is_read)::int
      FROM target t, changed ch
     WHERE t.audience = 'users'
       AND c.user_id = $1 AND c.type = t.type AND c.priority = t.priority
)
INSERT INTO shared_marks AS m (user_id, roles, type, priority, read, deleted)
SELECT $1, t.roles, t.type, t.priority, -(ch.is_read::int), 1
  FROM target t, changed ch
 WHERE t.audience <> 'users'
ON CONFLICT (user_id, roles, type, priority)
DO UPDATE SET read = m.read + excluded.read, deleted = m.deleted + 1";

/// User `$1` with roles `$2` reads everything they see: the entries that change, the marks
/// created for shared notifications never marked before, and the counters; counts the changes.
const MARK_ALL_READ: &str = "
WITH updated AS (
    UPDATE inbox_entries e SET is_read = true, read_at = now()
      FROM notifications n
     WHERE e.user_id = $1 AND n.id = e.notification_id AND NOT e.is_read
       AND e.deleted_at IS NULL
       AND (n.audience IN ('users', 'broadcast') OR n.roles && $2::text[])
    RETURNING n.audience, n.roles, n.type, n.priority
), inserted AS (
    INSERT INTO inbox_entries (user_id, notification_id, is_read, read_at)
    SELECT $1, n.id, true, now()
      FROM notifications n
     WHERE n.audience <> 'users' AND (n.audience = 'broadcast' OR n.roles && $2::text[])
       AND NOT EXISTS (SELECT 1 FROM inbox_entries e
                        WHERE e.notification_id = n.id AND e.user_id = $1)
    ON CONFLICT (user_id, notification_id) DO NOTHING
    RETURNING notification_id
), changes AS (
    SELECT audience, roles, type, priority FROM updated
    UNION ALL
    SELECT n.audience, n.roles, n.type, n.priority
      FROM inserted i JOIN notifications n ON n.id = i.notification_id
), personal AS (
    UPDATE personal_counts c SET unread = c.unread - g.n
      FROM (SELECT type, priority, count(*) AS n FROM changes
             WHERE audience = 'users' GROUP BY 1, 2) g
     WHERE c.user_id = $1 AND c.type = g.type AND c.priority = g.priority
), shared AS (
    INSERT INTO shared_marks AS m (user_id, roles, type, priority, read, deleted)
    SELECT $1, roles, type, priority, count(*), 0 FROM changes
     WHERE audience <> 'users'
     GROUP BY 2, 3, 4 ORDER BY 2, 3, 4
    ON CONFLICT (user_id, roles, type, priority) DO UPDATE SET read = m.read + excluded.read
)
SELECT count(*) FROM changes";

/// Expands `{COLUMNS}` in a query text.
pub(crate) fn sql(template: &str) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(template.replace("{COLUMNS}", COLUMNS))
}

/// [`LIST`] for a page of `limit` after `skip`, when `personal` and `shared` notifications
/// match. Only integers go into the text.
pub(crate) fn list_sql(limit: i64, skip: i64, personal: i64, shared: i64) -> String {
    let end = limit.saturating_add(skip);
    sql(LIST)
        .0
        .replace("{PERSONAL}", &end.min(personal).max(0).to_string())
        .replace("{SHARED}", &end.min(shared).max(0).to_string())
        .replace("{LIMIT}", &limit.to_string())
        .replace("{OFFSET}", &skip.to_string())
}

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

/// What a user sees, counted by type, priority and kind: (total, unread).
#[derive(sqlx::FromRow)]
struct Count {
    #[sqlx(rename = "type")]
    kind: String,
    priority: String,
    shared: bool,
    total: i64,
    unread: i64,
}

async fn counts(conn: impl sqlx::PgExecutor<'_>, user: &Claims) -> Result<Vec<Count>, sqlx::Error> {
    sqlx::query_as(COUNTS)
        .bind(&user.sub)
        .bind(&user.roles)
        .fetch_all(conn)
        .await
}

/// Newest first. The counts and the page are read in one snapshot (the page's per-half limits
/// come from the counts), and the page holds nothing above the horizon: any id it shows is a
/// safe `since`/`after` cursor (ARCHITECTURE.md, "Ordering"). Newer rows held back by a running
/// transaction are waited for like in [`after`], then left out.
pub async fn list(pool: &PgPool, user: &Claims, q: &ListQuery) -> Result<Page, sqlx::Error> {
    let priority = q.priority.map(Priority::as_str);
    let mut patience = Patience::new();
    loop {
        let mut tx = pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        let (mut unread_count, mut personal, mut shared) = (0, 0, 0);
        for c in counts(&mut *tx, user).await? {
            unread_count += c.unread;
            if q.kind.as_ref().is_none_or(|k| *k == c.kind)
                && priority.is_none_or(|p| p == c.priority)
            {
                let matching = if q.unread_only { c.unread } else { c.total };
                *(if c.shared { &mut shared } else { &mut personal }) += matching;
            }
        }
        let text = list_sql(q.limit, q.skip, personal, shared);
        let rows: Vec<Positioned> = sqlx::query_as(sqlx::AssertSqlSafe(text))
            .bind(&user.sub)
            .bind(&user.roles)
            .bind(q.unread_only)
            .bind(&q.kind)
            .bind(priority)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let held_back = rows.iter().any(|r| r.row.seq >= r.horizon);
        if !held_back || !patience.wait().await {
            return Ok(Page {
                notifications: rows
                    .into_iter()
                    .filter(|r| r.row.seq < r.horizon)
                    .map(|r| Notification::from(r.row))
                    .collect(),
                total: personal + shared,
                unread_count,
            });
        }
    }
}

/// A row with the horizon it was read under.
#[derive(sqlx::FromRow)]
struct Positioned {
    #[sqlx(flatten)]
    row: Row,
    horizon: i64,
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
          WHERE n.id = $3 AND (
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
    let mut patience = Patience::new();
    loop {
        let rows: Vec<Positioned> = sqlx::query_as(sql(AFTER))
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
        if !ready.is_empty() || !held_back || !patience.wait().await {
            let more = held_back || ready.len() as i64 > limit;
            ready.truncate(limit as usize);
            return Ok((ready.into_iter().map(Notification::from).collect(), more));
        }
    }
}

/// How long a read waits for the horizon to pass notifications that are committed but held
/// back, before answering without them.
const HELD_BACK_PATIENCE: Duration = Duration::from_secs(2);

/// The waits of a read repeated while the horizon holds rows back: 1 ms, doubling up to 64 ms,
/// for [`HELD_BACK_PATIENCE`] in all.
struct Patience {
    give_up_at: tokio::time::Instant,
    next: Duration,
}

impl Patience {
    fn new() -> Self {
        Self {
            give_up_at: tokio::time::Instant::now() + HELD_BACK_PATIENCE,
            next: Duration::from_millis(1),
        }
    }

    /// Waits before the next try; `false` (without waiting) once patience ran out.
    async fn wait(&mut self) -> bool {
        if tokio::time::Instant::now() >= self.give_up_at {
            return false;
        }
        tokio::time::sleep(self.next).await;
        self.next = (self.next * 2).min(Duration::from_millis(64));
        true
    }
}

/// One notification as this user sees it.
pub async fn get(
    pool: &PgPool,
    user: &Claims,
    id: Uuid,
) -> Result<Option<Notification>, sqlx::Error> {
    let row: Option<Row> = sqlx::query_as(sql(GET))
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
    let mut stats = Stats {
        total_count: 0,
        unread_count: 0,
        by_type: BTreeMap::new(),
        by_priority: BTreeMap::new(),
    };
    for c in counts(pool, user).await? {
        stats.total_count += c.total;
        stats.unread_count += c.unread;
        *stats.by_type.entry(c.kind).or_default() += c.total;
        *stats.by_priority.entry(c.priority).or_default() += c.total;
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
        sqlx::query(MARK_READ)
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
    let changed: i64 = sqlx::query_scalar(MARK_ALL_READ)
        .bind(&user.sub)
        .bind(&user.roles)
        .fetch_one(pool)
        .await?;
    Ok(changed as u64)
}

/// Deletes one notification from this user's inbox (others keep theirs); `false` if they
/// cannot see it.
pub async fn delete(pool: &PgPool, user: &Claims, id: Uuid) -> Result<bool, sqlx::Error> {
    if get(pool, user, id).await?.is_none() {
        return Ok(false);
    }
    sqlx::query(DELETE)
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
