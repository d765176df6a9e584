//! The browser side, served by the api with no build step: the client library (`/herald.js`,
//! `/herald.d.ts`) and the demo page (`/`, `/demo.js`, `/demo.css`), embedded in the binary.
//! Also `GET /api/dev/token`, which mints tokens for the demo page, ONLY when
//! `HERALD_DEV_TOKENS` is on (the local stack); otherwise it does not exist (404).

use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use herald_core::auth::valid_role;
use std::collections::HashMap;

const INDEX: &str = include_str!("../../../web/index.html");
const DEMO_JS: &str = include_str!("../../../web/demo.js");
const DEMO_CSS: &str = include_str!("../../../web/demo.css");
const HERALD_JS: &str = include_str!("../../../web/herald.js");
const HERALD_TS: &str = include_str!("../../../web/herald.d.ts");

pub fn router() -> Router<AppState> {
    let file = |body: &'static str, kind: &'static str| {
        get(move || async move { ([(CONTENT_TYPE, kind), (CACHE_CONTROL, "no-cache")], body) })
    };
    Router::new()
        .route("/", file(INDEX, "text/html; charset=utf-8"))
        .route("/demo.js", file(DEMO_JS, "text/javascript; charset=utf-8"))
        .route("/demo.css", file(DEMO_CSS, "text/css; charset=utf-8"))
        .route(
            "/herald.js",
            file(HERALD_JS, "text/javascript; charset=utf-8"),
        )
        .route(
            "/herald.d.ts",
            file(HERALD_TS, "application/typescript; charset=utf-8"),
        )
        .route("/api/dev/token", get(dev_token))
}

/// `GET /api/dev/token?sub=alice[&roles=a,b][&scope=publish]` → `{"token": "..."}`, valid one
/// hour, signed with HERALD_JWT_SECRET. Development only.
async fn dev_token(
    State(state): State<AppState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    let Some(secret) = &state.dev_token_secret else {
        return Err(ApiError::NotFound);
    };
    let sub = q
        .get("sub")
        .map(|s| s.trim())
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .ok_or_else(|| {
            ApiError::Invalid(vec![crate::error::FieldError::query(
                "sub",
                "1 to 128 characters",
            )])
        })?;
    let roles: Vec<String> = q
        .get("roles")
        .map(|r| {
            r.split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if !roles.iter().all(|r| valid_role(r)) {
        return Err(ApiError::Invalid(vec![crate::error::FieldError::query(
            "roles",
            "letters, digits, '_', '-', '.'",
        )]));
    }
    let token = herald_core::auth::mint_hs256(
        secret,
        &herald_core::auth::TokenClaims::new(sub, roles, q.get("scope").map(String::as_str), 3600),
    );
    Ok(Json(serde_json::json!({ "token": token })))
}
