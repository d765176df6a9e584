//! HTTP routes. Each area exposes `router()`; [`router`] merges them under one state.
//!
//! # Layout
//! - [`inbox`]: a user's own notifications (`/api/notifications...`), the seeds' contract.
//! - [`publish`]: host application → Herald (`POST /api/notifications`, `POST /api/events`).
//! - [`preferences`]: `GET/PUT /api/notifications/preferences`.
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`, `/api/openapi.json`.
//! - [`web`]: the browser client, the demo page, development tokens.

pub mod inbox;
pub mod ops;
pub mod preferences;
pub mod publish;
pub mod web;

use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;

/// Every route, with JSON 404 and 405 answers for the rest.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(inbox::router())
        .merge(publish::router())
        .merge(preferences::router())
        .merge(ops::router())
        .merge(web::router())
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
}
