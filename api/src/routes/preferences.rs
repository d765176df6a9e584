//! `GET/PUT /api/notifications/preferences`: email on/off, digest period, muted types. PUT
//! takes any subset of the fields and keeps the others.

use crate::error::ApiError;
use crate::extract::{JsonBody, User};
use crate::inbox::{self, Preferences};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/notifications/preferences",
        get(read_preferences).put(update_preferences),
    )
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PreferencesUpdate {
    pub email_enabled: Option<bool>,
    /// `off`, `hourly` or `daily`.
    pub digest: Option<String>,
    pub muted_types: Option<Vec<String>>,
}

#[utoipa::path(get, path = "/api/notifications/preferences", tag = "inbox",
    responses((status = 200, body = Preferences), (status = 401)), security(("bearer" = [])))]
pub async fn read_preferences(
    State(state): State<AppState>,
    User(user): User,
) -> Result<Json<Preferences>, ApiError> {
    Ok(Json(inbox::preferences(&state.pool, &user.sub).await?))
}

#[utoipa::path(put, path = "/api/notifications/preferences", tag = "inbox",
    request_body = PreferencesUpdate,
    responses((status = 200, body = Preferences), (status = 401), (status = 422)),
    security(("bearer" = [])))]
pub async fn update_preferences(
    State(state): State<AppState>,
    User(user): User,
    body: JsonBody<PreferencesUpdate>,
) -> Result<Json<Preferences>, ApiError> {
    let update = body.value;
    let mut prefs = inbox::preferences(&state.pool, &user.sub).await?;
    if let Some(digest) = update.digest {
        if !matches!(digest.as_str(), "off" | "hourly" | "daily") {
            return Err(ApiError::invalid("digest", "must be off, hourly or daily"));
        }
        prefs.digest = digest;
    }
    if let Some(muted) = update.muted_types {
        if muted.len() > 200 || muted.iter().any(|t| t.is_empty() || t.len() > 64) {
            return Err(ApiError::invalid(
                "muted_types",
                "at most 200 types of 1 to 64 characters",
            ));
        }
        prefs.muted_types = muted;
    }
    if let Some(on) = update.email_enabled {
        prefs.email_enabled = on;
    }
    inbox::save_preferences(&state.pool, &user.sub, &prefs).await?;
    Ok(Json(prefs))
}
