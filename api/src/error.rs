//! The api's one error type. Every handler returns `Result<_, ApiError>`; each variant names
//! its status code, and the body is always JSON `{"detail": ...}` (FastAPI's shape, which the
//! seeds' clients already parse). Internal details are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_core::auth::AuthError;
use serde::Serialize;

/// One reason a request body was refused: where (`loc`, e.g. `["body", "priority"]`), why
/// (`msg`) and a short machine-readable `type`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    pub loc: Vec<String>,
    pub msg: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

impl FieldError {
    /// An error at `body.<field>` (`field` may be a dotted path).
    pub fn body(field: &str, msg: impl Into<String>) -> Self {
        let mut loc = vec!["body".to_owned()];
        loc.extend(
            field
                .split('.')
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
        Self {
            loc,
            msg: msg.into(),
            kind: "value_error",
        }
    }

    pub fn query(field: &str, msg: impl Into<String>) -> Self {
        Self {
            loc: vec!["query".to_owned(), field.to_owned()],
            msg: msg.into(),
            kind: "value_error",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: no token, or a token that does not verify.
    #[error("{0}")]
    Unauthorized(AuthError),
    /// 403: a valid token without the scope the call needs.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404: no such notification for this user (also when it is someone else's).
    #[error("Notification not found")]
    NotFound,
    /// 404: no route serves this path.
    #[error("Not Found")]
    NoRoute,
    /// 405: the path exists, but not for this method.
    #[error("Method Not Allowed")]
    MethodNotAllowed,
    /// 410: a resume position Herald cannot replay from; the client must refetch over REST.
    #[error("{0}")]
    Gone(&'static str),
    /// 413: the request body is larger than the configured limit.
    #[error("request body is too large")]
    TooLarge,
    /// 415: a body that is not `application/json`.
    #[error("the body must be JSON: send Content-Type: application/json")]
    UnsupportedMediaType,
    /// 422: invalid input, with every field that is wrong and why.
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    /// 503: a dependency (Postgres, Redis) is down or too slow; nothing was changed.
    #[error("{0} is unavailable, try again")]
    Unavailable(&'static str),
    /// 500: a bug or an unexpected failure; details go to the log only.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn invalid(field: &str, msg: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError::body(field, msg)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if database_unreachable(&err) {
            tracing::warn!(cause = %err, "database unavailable");
            ApiError::Unavailable("database")
        } else {
            ApiError::Internal(anyhow::Error::new(err).context("database query failed"))
        }
    }
}

/// Is this error "Postgres is down or unreachable" (503) rather than a bug (500)?
pub fn database_unreachable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            // 08: connection exception; 57P01-03: shutdown / cannot connect now; 53300: too
            // many connections.
            c.starts_with("08") || c.starts_with("57P0") || c == "53300"
        }),
        _ => false,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::Invalid(errors) => serde_json::json!({ "detail": errors }),
            ApiError::Internal(err) => {
                tracing::error!(cause = ?err, "request failed");
                serde_json::json!({ "detail": "Internal server error" })
            }
            other => serde_json::json!({ "detail": other.to_string() }),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
