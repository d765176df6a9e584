//! Request extractors: the caller's verified identity ([`User`], [`Publisher`]) and JSON bodies
//! whose errors name the field that is wrong ([`JsonBody`]).

use crate::error::{ApiError, FieldError};
use crate::state::AppState;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use bytes::Bytes;
use herald_core::auth::{AuthError, Claims};
use serde::de::DeserializeOwned;

/// The caller of an inbox endpoint, from `Authorization: Bearer <jwt>`.
#[derive(Debug, Clone)]
pub struct User(pub Claims);

/// The caller of a publish endpoint: a verified token whose `scope` contains `publish`.
#[derive(Debug, Clone)]
pub struct Publisher(pub Claims);

fn bearer(parts: &Parts) -> Result<&str, AuthError> {
    let value = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Malformed)?;
    herald_core::auth::bearer_token(value)
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        bearer(parts)
            .and_then(|token| state.verifier.verify(token))
            .map(User)
            .map_err(|err| {
                state.metrics.auth_failure(err.reason());
                ApiError::Unauthorized(err)
            })
    }
}

impl FromRequestParts<AppState> for Publisher {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let User(claims) = User::from_request_parts(parts, state).await?;
        if claims.has_scope("publish") {
            Ok(Publisher(claims))
        } else {
            state.metrics.auth_failure("missing_scope");
            Err(ApiError::Forbidden(
                "this call needs a token whose scope includes 'publish'",
            ))
        }
    }
}

/// A JSON body parsed into `T`. Unlike axum's `Json`, every failure is a 422 (413 when too large,
/// 415 when the Content-Type is not JSON)
/// in the `{"detail": [{"loc", "msg", "type"}]}` shape, naming the field: malformed JSON, a wrong
/// type, a missing field. The raw JSON value is kept for idempotency comparisons.
pub struct JsonBody<T> {
    pub value: T,
    pub raw: serde_json::Value,
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if !is_json(&req) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::TooLarge)?;
        parse_json(&bytes)
    }
}

/// Does the request say its body is JSON (`application/json` or `application/<x>+json`,
/// any parameters)?
fn is_json(req: &Request) -> bool {
    let Some(value) = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, sub)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (sub.eq_ignore_ascii_case("json") || sub.to_ascii_lowercase().ends_with("+json"))
}

/// The path of the first string (key or value) holding a NUL character, if any.
fn nul_at(v: &serde_json::Value, path: &str) -> Option<String> {
    let here = |key: &dyn std::fmt::Display| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match v {
        serde_json::Value::String(s) => s.contains('\0').then(|| path.to_owned()),
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_at(item, &here(&i))),
        serde_json::Value::Object(map) => map.iter().find_map(|(k, item)| {
            if k.contains('\0') {
                Some(here(&k.escape_debug()))
            } else {
                nul_at(item, &here(k))
            }
        }),
        _ => None,
    }
}

/// Parses a JSON document into `T`, naming the failing field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<JsonBody<T>, ApiError> {
    let raw: serde_json::Value = serde_json::from_slice(bytes).map_err(|err| {
        ApiError::Invalid(vec![FieldError {
            loc: vec!["body".to_owned()],
            msg: format!("malformed JSON: {err}"),
            kind: "json_invalid",
        }])
    })?;
    if let Some(field) = nul_at(&raw, "") {
        return Err(ApiError::invalid(
            &field,
            "must not contain the NUL character (\\u0000): Postgres cannot store it",
        ));
    }
    let value = serde_path_to_error::deserialize(&raw).map_err(|err| {
        let path = err.path().to_string();
        let field = if path == "." { "" } else { path.as_str() };
        let mut fe = FieldError::body(field, err.inner().to_string());
        fe.kind = "type_error";
        ApiError::Invalid(vec![fe])
    })?;
    Ok(JsonBody { value, raw })
}
