//! The operations endpoints every service answers: `/healthz` (the process is up), `/readyz`
//! (its dependencies answer) and `/metrics` (Prometheus text).

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::time::Duration;

/// How long a dependency may take to answer a readiness check.
pub const READY_WITHIN: Duration = Duration::from_secs(1);

/// `/healthz`: the process is up.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

/// `/readyz` from the outcome of each check: 200 when all passed, else 503; the body names
/// each dependency with `ok` or `unavailable`.
pub fn readiness(checks: &[(&str, bool)]) -> Response {
    let status = if checks.iter().all(|(_, ok)| *ok) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body: serde_json::Map<String, serde_json::Value> = checks
        .iter()
        .map(|(name, ok)| {
            let word = if *ok { "ok" } else { "unavailable" };
            ((*name).to_owned(), word.into())
        })
        .collect();
    (status, Json(body)).into_response()
}

/// Whether Postgres answers `SELECT 1` within [`READY_WITHIN`].
pub async fn postgres_answers(pool: &sqlx::PgPool) -> bool {
    tokio::time::timeout(READY_WITHIN, sqlx::query("SELECT 1").execute(pool))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// `/metrics`: `text` (the Prometheus text exposition) with its content type.
pub fn metrics(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
