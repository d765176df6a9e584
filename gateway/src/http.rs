//! The gateway's HTTP surface: `/api/notifications/ws` (checks, then the WebSocket upgrade),
//! `/healthz`, `/readyz`, `/metrics`. Every refusal happens before the upgrade, as a JSON
//! `{"detail": ...}` with the right status, and never echoes the token.

use crate::hub::Refusal;
use crate::session::{self, Session, Since};
use crate::startup::Shared;
use bytes::Bytes;
use fred::prelude::ClientLike;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, ORIGIN};
use hyper::{Request, Response, StatusCode, Version};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use uuid::Uuid;

pub const WS_PATH: &str = "/api/notifications/ws";

pub type Body = Full<Bytes>;

fn json(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a valid response")
}

fn detail(status: StatusCode, message: &str) -> Response<Body> {
    json(status, serde_json::json!({ "detail": message }))
}

/// Every request: `/socket.io/` goes to socketioxide behind Origin, drain and CORS checks;
/// everything else to [`handle`] (through the Socket.IO layer, which passes it on).
pub async fn gate<S, B>(
    req: Request<Incoming>,
    app: &S,
    shared: &Arc<Shared>,
) -> Result<Response<B>, Infallible>
where
    S: hyper::service::Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
    B: Default,
{
    if !req.uri().path().starts_with("/socket.io") {
        return app.call(req).await;
    }
    let empty = |status: StatusCode| {
        let mut r = Response::new(B::default());
        *r.status_mut() = status;
        r
    };
    let origin = req
        .headers()
        .get(ORIGIN)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if !shared.check_origin(origin.as_deref(), "/socket.io/") {
        return Ok(empty(StatusCode::FORBIDDEN));
    }
    let new_session = !req.uri().query().is_some_and(|q| q.contains("sid="));
    if new_session && shared.draining.load(Ordering::SeqCst) {
        return Ok(empty(StatusCode::SERVICE_UNAVAILABLE));
    }
    let preflight = req.method() == hyper::Method::OPTIONS;
    let mut response = if preflight {
        empty(StatusCode::NO_CONTENT)
    } else {
        app.call(req).await?
    };
    if let Some(o) = origin
        && let Ok(value) = hyper::header::HeaderValue::from_str(&o)
    {
        let h = response.headers_mut();
        h.insert(hyper::header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        h.append(
            hyper::header::VARY,
            hyper::header::HeaderValue::from_static("origin"),
        );
        h.insert(
            hyper::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            hyper::header::HeaderValue::from_static("true"),
        );
        if preflight {
            h.insert(
                hyper::header::ACCESS_CONTROL_ALLOW_METHODS,
                hyper::header::HeaderValue::from_static("GET, POST, OPTIONS"),
            );
            h.insert(
                hyper::header::ACCESS_CONTROL_ALLOW_HEADERS,
                hyper::header::HeaderValue::from_static("content-type, authorization"),
            );
        }
    }
    Ok(response)
}

pub async fn handle(
    mut req: Request<Incoming>,
    app: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    let response = match req.uri().path() {
        WS_PATH => upgrade(&mut req, &app),
        "/healthz" => json(StatusCode::OK, serde_json::json!({"status": "ok"})),
        "/readyz" => {
            let redis = app.subscriber.is_connected() && !app.bus.stalled();
            let draining = app.draining.load(Ordering::SeqCst);
            let status = if redis && !draining {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json(
                status,
                serde_json::json!({"redis": if redis {"ok"} else {"unavailable"}, "draining": draining}),
            )
        }
        "/metrics" => Response::builder()
            .header(CONTENT_TYPE, "text/plain; version=0.0.4")
            .body(Full::new(Bytes::from(app.ctx.metrics.render())))
            .expect("a valid response"),
        _ => detail(StatusCode::NOT_FOUND, "Not Found"),
    };
    Ok(response)
}

fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn upgrade(req: &mut Request<Incoming>, app: &Arc<Shared>) -> Response<Body> {
    let metrics = &app.ctx.metrics;
    if req.version() != Version::HTTP_11 || !fastwebsockets::upgrade::is_upgrade_request(req) {
        return detail(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks WebSocket only",
        );
    }
    if app.draining.load(Ordering::SeqCst) {
        return detail(
            StatusCode::SERVICE_UNAVAILABLE,
            "this gateway is restarting: reconnect",
        );
    }
    let origin = req
        .headers()
        .get(ORIGIN)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if !app.check_origin(origin.as_deref(), WS_PATH) {
        return detail(StatusCode::FORBIDDEN, "origin not allowed");
    }
    let token = query_param(req, "token").or_else(|| {
        req.headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| herald_core::auth::bearer_token(v).ok())
            .map(str::to_owned)
    });
    let token = token.unwrap_or_default();
    let claims = match app.ctx.verifier.verify(&token) {
        Ok(c) => c,
        Err(e) => {
            metrics.auth_failure(e.reason());
            return detail(StatusCode::UNAUTHORIZED, &e.to_string());
        }
    };
    let since = query_param(req, "since").map(|s| match Uuid::parse_str(&s) {
        Ok(id) => Since::Id(id),
        Err(_) => Since::Invalid,
    });
    let admission = match app.ctx.hub.admit(&claims.sub) {
        Ok(a) => a,
        Err(Refusal::NodeFull) => {
            metrics
                .handshake_refusals
                .with_label_values(&["node_full"])
                .inc();
            return detail(
                StatusCode::SERVICE_UNAVAILABLE,
                "this gateway is full: try again",
            );
        }
        Err(Refusal::UserFull) => {
            metrics
                .handshake_refusals
                .with_label_values(&["user_full"])
                .inc();
            return detail(
                StatusCode::TOO_MANY_REQUESTS,
                "too many connections for this user",
            );
        }
    };
    let (response, upgraded) = match fastwebsockets::upgrade::upgrade(req) {
        Ok(pair) => pair,
        Err(e) => {
            return detail(
                StatusCode::BAD_REQUEST,
                &format!("bad WebSocket handshake: {e}"),
            );
        }
    };
    let ctx = app.ctx.clone();
    let session = Session {
        claims,
        token,
        since,
    };
    tokio::spawn(async move {
        match upgraded.await {
            Ok(ws) => session::serve(ws, session, admission, ctx).await,
            Err(e) => tracing::debug!(cause = %e, "upgrade did not complete"),
        }
    });
    response.map(|_| Full::default())
}
