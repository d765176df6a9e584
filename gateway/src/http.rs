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

pub async fn handle(
    mut req: Request<Incoming>,
    app: Arc<Shared>,
) -> Result<Response<Body>, Infallible> {
    let response = match req.uri().path() {
        WS_PATH => upgrade(&mut req, &app),
        "/healthz" => json(StatusCode::OK, serde_json::json!({"status": "ok"})),
        "/readyz" => {
            let redis = app.subscriber.is_connected();
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
    if let Some(origin) = req.headers().get(ORIGIN) {
        let allowed = origin
            .to_str()
            .is_ok_and(|o| app.origins.iter().any(|a| a == o.trim_end_matches('/')));
        if !allowed {
            metrics
                .handshake_refusals
                .with_label_values(&["origin"])
                .inc();
            return detail(StatusCode::FORBIDDEN, "origin not allowed");
        }
    }
    let token = query_param(req, "token").or_else(|| {
        req.headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(|t| t.trim().to_owned())
    });
    let token = token.unwrap_or_default();
    let claims = match app.ctx.verifier.verify(&token) {
        Ok(c) => c,
        Err(e) => {
            metrics.auth_failures.with_label_values(&[e.reason()]).inc();
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
