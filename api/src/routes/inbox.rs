//! The inbox endpoints (docs/api.md), field for field as the performance-management seed serves
//! them, plus `?after=<id>`: everything after a notification, oldest first (for resume).

use crate::error::{ApiError, FieldError};
use crate::extract::User;
use crate::inbox::{self, ListQuery};
use crate::presence::{self, ConnectionStats};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use herald_core::wire::{Notification, Priority, ServerMessage};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

pub const DEFAULT_LIMIT: i64 = 20;
pub const MAX_LIMIT: i64 = 100;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/notifications", get(list))
        .route("/api/notifications/stats", get(stats))
        .route("/api/notifications/mark-all-read", put(mark_all_read))
        .route("/api/notifications/connection-stats", get(connection_stats))
        .route("/api/notifications/{id}/read", put(mark_read))
        .route("/api/notifications/{id}/seen", put(mark_seen))
        .route("/api/notifications/{id}", delete(remove))
}

/// `GET /api/notifications` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NotificationList {
    pub notifications: Vec<Notification>,
    pub total: i64,
    pub unread_count: i64,
    pub page: i64,
    pub per_page: i64,
    /// Only with `after`: more notifications follow the last one returned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub has_more: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsAnswer {
    pub total_count: i64,
    pub unread_count: i64,
    pub by_type: BTreeMap<String, i64>,
    pub by_priority: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageAnswer {
    pub message: String,
}

fn parse_int(
    q: &HashMap<String, String>,
    name: &str,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, FieldError> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                FieldError::query(name, format!("must be a whole number from {min} to {max}"))
            }),
    }
}

/// Longest query parameter value accepted, in characters.
const MAX_QUERY_CHARS: usize = 200;

/// What every query parameter must be, whatever it is for: bounded, and free of control
/// characters (Postgres cannot store NUL; none belongs in a filter).
fn edge_checks(q: &HashMap<String, String>) -> Vec<FieldError> {
    let mut problems: Vec<FieldError> = q
        .iter()
        .filter(|(k, v)| {
            k.chars().chain(v.chars()).any(char::is_control) || v.chars().count() > MAX_QUERY_CHARS
        })
        .map(|(k, _)| {
            FieldError::query(
                &k.escape_debug().to_string(),
                format!("must be at most {MAX_QUERY_CHARS} characters without control characters"),
            )
        })
        .collect();
    problems.sort_by(|a, b| a.loc.cmp(&b.loc));
    problems
}

fn parse_bool(q: &HashMap<String, String>, name: &str) -> Result<bool, FieldError> {
    match q.get(name).map(|s| s.to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Ok(false),
        Some(_) => Err(FieldError::query(name, "must be true or false")),
    }
}

/// Reads a notification id from the path; a malformed one is a 422 naming it.
pub fn parse_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::Invalid(vec![FieldError {
            loc: vec!["path".into(), "notification_id".into()],
            msg: "must be a UUID".into(),
            kind: "uuid_parsing",
        }])
    })
}

#[utoipa::path(get, path = "/api/notifications", tag = "inbox",
    params(
        ("skip" = Option<i64>, Query, description = "How many to skip (default 0)"),
        ("limit" = Option<i64>, Query, description = "Page size, 1..100 (default 20)"),
        ("unread_only" = Option<bool>, Query, description = "Only unread ones"),
        ("notification_type" = Option<String>, Query, description = "Only this type"),
        ("priority" = Option<String>, Query, description = "Only this priority"),
        ("after" = Option<String>, Query, description = "Resume: everything after this notification id, oldest first; 410 when that position cannot be replayed"),
    ),
    responses((status = 200, body = NotificationList), (status = 401), (status = 410), (status = 422)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    User(user): User,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<NotificationList>, ApiError> {
    let mut problems = edge_checks(&q);
    let take = |r: Result<i64, FieldError>, problems: &mut Vec<FieldError>| {
        r.unwrap_or_else(|e| {
            problems.push(e);
            0
        })
    };
    let skip = take(
        parse_int(&q, "skip", 0, 0, i64::from(i32::MAX)),
        &mut problems,
    );
    let limit = take(
        parse_int(&q, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT),
        &mut problems,
    );
    let unread_only = parse_bool(&q, "unread_only").unwrap_or_else(|e| {
        problems.push(e);
        false
    });
    let priority = match q.get("priority") {
        None => None,
        Some(p) => {
            let parsed = Priority::parse(p);
            if parsed.is_none() {
                problems.push(FieldError::query(
                    "priority",
                    "must be one of low, medium, high, urgent",
                ));
            }
            parsed
        }
    };
    if let Some(kind) = q.get("notification_type")
        && !crate::domain::valid_type(kind)
    {
        problems.push(FieldError::query(
            "notification_type",
            "must be snake_case, 1 to 64 characters",
        ));
    }
    let after = match q.get("after") {
        None => None,
        Some(a) => match Uuid::parse_str(a) {
            Ok(id) => Some(id),
            Err(_) => {
                problems.push(FieldError::query(
                    "after",
                    "must be a notification id (UUID)",
                ));
                None
            }
        },
    };
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems));
    }

    if let Some(after_id) = after {
        let position = inbox::position_of(&state.pool, &user, after_id)
            .await?
            .ok_or(ApiError::Gone(
                "cannot resume after that notification: refetch the inbox",
            ))?;
        let (notifications, more) = inbox::after(&state.pool, &user, position, limit).await?;
        let total = notifications.len() as i64;
        let unread_count = notifications.iter().filter(|n| !n.is_read).count() as i64;
        return Ok(Json(NotificationList {
            notifications,
            total,
            unread_count,
            page: 1,
            per_page: limit,
            has_more: Some(more),
        }));
    }

    let query = ListQuery {
        skip,
        limit,
        unread_only,
        kind: q.get("notification_type").cloned(),
        priority,
    };
    let page = inbox::list(&state.pool, &user, &query).await?;
    Ok(Json(NotificationList {
        notifications: page.notifications,
        total: page.total,
        unread_count: page.unread_count,
        page: skip / limit + 1,
        per_page: limit,
        has_more: None,
    }))
}

#[utoipa::path(get, path = "/api/notifications/stats", tag = "inbox",
    responses((status = 200, body = StatsAnswer), (status = 401)), security(("bearer" = [])))]
pub async fn stats(
    State(state): State<AppState>,
    User(user): User,
) -> Result<Json<StatsAnswer>, ApiError> {
    let s = inbox::stats(&state.pool, &user).await?;
    Ok(Json(StatsAnswer {
        total_count: s.total_count,
        unread_count: s.unread_count,
        by_type: s.by_type,
        by_priority: s.by_priority,
    }))
}

#[utoipa::path(put, path = "/api/notifications/{id}/read", tag = "inbox",
    params(("id" = String, Path, description = "Notification id")),
    responses((status = 200, body = Notification), (status = 401), (status = 404), (status = 422)),
    security(("bearer" = [])))]
pub async fn mark_read(
    State(state): State<AppState>,
    User(user): User,
    Path(id): Path<String>,
) -> Result<Json<Notification>, ApiError> {
    let id = parse_id(&id)?;
    let n = inbox::mark_read(&state.pool, &user, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    state.announce(
        &user.sub,
        &ServerMessage::MarkedRead {
            notification_id: id,
        },
    );
    Ok(Json(n))
}

#[utoipa::path(put, path = "/api/notifications/{id}/seen", tag = "inbox",
    params(("id" = String, Path, description = "Notification id")),
    responses((status = 200, body = MessageAnswer), (status = 401), (status = 404), (status = 422)),
    security(("bearer" = [])))]
/// A tab displayed the notification: it counts as seen for email-if-unseen.
pub async fn mark_seen(
    State(state): State<AppState>,
    User(user): User,
    Path(id): Path<String>,
) -> Result<Json<MessageAnswer>, ApiError> {
    let id = parse_id(&id)?;
    if !inbox::mark_seen(&state.pool, &user, id).await? {
        return Err(ApiError::NotFound);
    }
    Ok(Json(MessageAnswer {
        message: "Notification marked as seen".to_owned(),
    }))
}

#[utoipa::path(put, path = "/api/notifications/mark-all-read", tag = "inbox",
    responses((status = 200, body = MessageAnswer), (status = 401)), security(("bearer" = [])))]
pub async fn mark_all_read(
    State(state): State<AppState>,
    User(user): User,
) -> Result<Json<MessageAnswer>, ApiError> {
    let count = inbox::mark_all_read(&state.pool, &user).await?;
    state.announce(&user.sub, &ServerMessage::MarkedAllRead { count });
    Ok(Json(MessageAnswer {
        message: format!("{count} notifications marked as read"),
    }))
}

#[utoipa::path(delete, path = "/api/notifications/{id}", tag = "inbox",
    params(("id" = String, Path, description = "Notification id")),
    responses((status = 200, body = MessageAnswer), (status = 401), (status = 404), (status = 422)),
    security(("bearer" = [])))]
pub async fn remove(
    State(state): State<AppState>,
    User(user): User,
    Path(id): Path<String>,
) -> Result<Json<MessageAnswer>, ApiError> {
    let id = parse_id(&id)?;
    if !inbox::delete(&state.pool, &user, id).await? {
        return Err(ApiError::NotFound);
    }
    state.announce(
        &user.sub,
        &ServerMessage::NotificationDeleted {
            notification_id: id,
        },
    );
    Ok(Json(MessageAnswer {
        message: "Notification deleted successfully".to_owned(),
    }))
}

#[utoipa::path(get, path = "/api/notifications/connection-stats", tag = "inbox",
    responses((status = 200, body = ConnectionStats), (status = 401), (status = 503)),
    security(("bearer" = [])))]
pub async fn connection_stats(
    State(state): State<AppState>,
    User(user): User,
) -> Result<Json<ConnectionStats>, ApiError> {
    presence::connection_stats(&state.bus.client, &state.bus.keys, &user.sub)
        .await
        .map(Json)
        .map_err(|err| {
            tracing::warn!(cause = %err, "reading presence from Redis failed");
            ApiError::Unavailable("redis")
        })
}
