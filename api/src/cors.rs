//! Cross-origin requests: the seeds' frontends live on their own origins (`:3000`, `:3001`,
//! `:5173`) and call the api with `Authorization: Bearer`, which makes every call a CORS request
//! with a preflight. tower-http's [`CorsLayer`] answers them for the allowed origins (the public
//! origin and `CORS_ALLOWED_ORIGINS`, the list the gateway checks too); [`refuse_foreign`] makes
//! sure any other browser origin gets no CORS header at all, and a JSON 403 to its preflight.
//!
//! No credentials mode: Herald authenticates with bearer tokens, never cookies.

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::header::{
    AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, ORIGIN, RETRY_AFTER, VARY,
};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use herald_core::origins::AllowedOrigins;
use std::sync::Arc;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// How long a browser may cache a preflight answer.
pub const PREFLIGHT_MAX_AGE: Duration = Duration::from_secs(600);

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Answers preflights and adds `Access-Control-Allow-Origin` (with `Vary: Origin`) for the
/// allowed origins only.
pub fn layer(origins: &AllowedOrigins) -> CorsLayer {
    let list = origins
        .as_slice()
        .iter()
        .map(|o| HeaderValue::from_str(o).expect("a normalised origin is a valid header value"));
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(list))
        .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
        .allow_headers([AUTHORIZATION, CONTENT_TYPE, REQUEST_ID])
        .expose_headers([REQUEST_ID, RETRY_AFTER])
        .max_age(PREFLIGHT_MAX_AGE)
}

/// Runs outside [`layer`]: a request from a browser origin that is not allowed is served as if
/// CORS did not exist (the browser then withholds the answer from the page), and its preflight is
/// refused with a JSON 403 that says why.
pub async fn refuse_foreign(
    State(origins): State<Arc<AllowedOrigins>>,
    req: Request,
    next: Next,
) -> Response {
    let foreign = req
        .headers()
        .get(ORIGIN)
        .is_some_and(|o| !o.to_str().is_ok_and(|o| origins.allows(o)));
    if !foreign {
        return next.run(req).await;
    }
    if req.method() == Method::OPTIONS {
        let mut response = ApiError::Forbidden(
            "origin not allowed: add it to CORS_ALLOWED_ORIGINS (docs/operations.md)",
        )
        .into_response();
        response
            .headers_mut()
            .insert(VARY, HeaderValue::from_static("origin"));
        return response;
    }
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    let cors: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for name in cors {
        headers.remove(name);
    }
    response
}
