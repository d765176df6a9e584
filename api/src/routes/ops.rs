//! Operations endpoints: liveness, readiness (Postgres and Redis reachable), Prometheus
//! metrics, and the OpenAPI document.

use crate::state::AppState;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use fred::prelude::*;
use herald_service::ops;
use utoipa::OpenApi;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi))
}

/// Postgres and Redis both answer within a second.
async fn readyz(State(state): State<AppState>) -> Response {
    let db = ops::postgres_answers(&state.pool).await;
    let redis = tokio::time::timeout(ops::READY_WITHIN, state.bus.client.ping::<String>(None))
        .await
        .is_ok_and(|r| r.is_ok());
    ops::readiness(&[("database", db), ("redis", redis)])
}

async fn metrics(State(state): State<AppState>) -> Response {
    ops::metrics(state.metrics.render())
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::ApiDoc::openapi())
}
