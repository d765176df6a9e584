//! Creating notifications in Postgres: one row per notification (stored once, whatever the
//! audience), one inbox entry per personal recipient, an idempotency record, and a position
//! handed out in commit order.

use crate::domain::{Audience, Channel, NewNotification};
use crate::error::ApiError;
use herald_core::wire::Notification;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Transaction-level advisory lock held from the moment a notification takes its position until
/// its transaction commits, so positions become visible in increasing order.
pub const ORDER_LOCK: i64 = 0x6865_7261_6c64_0001;

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

/// Stores `n`. A retry carrying an idempotency key already used by this publisher returns the
/// first answer (and `false`: nothing new was created).
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

    let id = Uuid::now_v7();
    let roles: Vec<String> = match &n.audience {
        Audience::Roles(r) => r.clone(),
        _ => Vec::new(),
    };
    let channels: Vec<&str> = n.channels.iter().map(|c| c.as_str()).collect();
    sqlx::query(
        "INSERT INTO notifications (id, audience, roles, type, priority, title, message,
                                    action_url, data, triggered_by_name, channels, publisher)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(id)
    .bind(n.audience.kind())
    .bind(&roles)
    .bind(&n.kind)
    .bind(n.priority.as_str())
    .bind(&n.title)
    .bind(&n.message)
    .bind(&n.action_url)
    .bind(&n.data)
    .bind(&n.triggered_by_name)
    .bind(&channels)
    .bind(publisher)
    .execute(&mut *tx)
    .await?;

    let mut recipient_count = 0;
    if let Audience::Users(recipients) = &n.audience {
        recipient_count = recipients.len();
        let ids: Vec<&str> = recipients.iter().map(|r| r.id.as_str()).collect();
        let emails: Vec<Option<&str>> = recipients.iter().map(|r| r.email.as_deref()).collect();
        let names: Vec<Option<&str>> = recipients.iter().map(|r| r.name.as_deref()).collect();
        sqlx::query(
            "INSERT INTO inbox_entries (user_id, notification_id, email, name)
             SELECT u, $1, e, nm FROM unnest($2::text[], $3::text[], $4::text[]) AS t(u, e, nm)",
        )
        .bind(id)
        .bind(&ids)
        .bind(&emails)
        .bind(&names)
        .execute(&mut *tx)
        .await?;
    }

    // The email outbox: one job per personal recipient with an address, in this transaction, so
    // a committed notification always has its emails queued (and a rolled-back one never does).
    if n.channels.contains(&Channel::Email)
        && let Audience::Users(recipients) = &n.audience
    {
        let with_email: Vec<&crate::domain::Recipient> =
            recipients.iter().filter(|r| r.email.is_some()).collect();
        if !with_email.is_empty() {
            let ids: Vec<&str> = with_email.iter().map(|r| r.id.as_str()).collect();
            let emails: Vec<&str> = with_email
                .iter()
                .filter_map(|r| r.email.as_deref())
                .collect();
            let names: Vec<Option<&str>> = with_email.iter().map(|r| r.name.as_deref()).collect();
            let delay_minutes = i32::try_from(n.email_if_unseen_minutes.unwrap_or(0)).unwrap_or(0);
            sqlx::query(
                "INSERT INTO email_jobs (notification_id, user_id, email, name, not_before, require_unseen)
                 SELECT $1, u, e, nm, now() + make_interval(mins => $5), $6
                   FROM unnest($2::text[], $3::text[], $4::text[]) AS t(u, e, nm)",
            )
            .bind(id)
            .bind(&ids)
            .bind(&emails)
            .bind(&names)
            .bind(delay_minutes)
            .bind(n.email_if_unseen_minutes.is_some())
            .execute(&mut *tx)
            .await?;
        }
    }

    // Take the position last, so the lock is held only for one row update and the commit.
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ORDER_LOCK)
        .execute(&mut *tx)
        .await?;
    let (seq, created_at): (i64, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "UPDATE notifications SET seq = nextval('notification_position')
          WHERE id = $1 RETURNING seq, created_at",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;

    let created = Created {
        id,
        audience: n.audience.kind().to_owned(),
        recipient_count,
        notification: Notification {
            id,
            kind: n.kind.clone(),
            priority: n.priority,
            title: n.title.clone(),
            message: n.message.clone(),
            action_url: n.action_url.clone(),
            data: n.data.clone(),
            triggered_by_name: n.triggered_by_name.clone(),
            created_at,
            is_read: false,
            seq,
        },
    };
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
