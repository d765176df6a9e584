//! The gateway's HTTP surface, as an axum router: `/api/notifications/ws` (checks, then the
//! WebSocket upgrade), `/healthz`, `/readyz`, `/metrics`, and `/socket.io/` (socketioxide, behind
//! the Origin and drain checks and tower-http's CORS). Every refusal happens before an upgrade,
//! as a JSON `{"detail": ...}` with the right status, and never echoes the token.

use crate::connection::{self, Context, Session, Since};
use crate::fanout;
use crate::hub::Refusal;
use crate::socketio::SocketIoState;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, ORIGIN};
use axum::http::{Method, StatusCode, Version};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use fred::clients::SubscriberClient;
use fred::prelude::ClientLike;
use herald_core::origins::AllowedOrigins;
use hyper_util::rt::TokioIo;
use serde_json::json;
use socketioxide::layer::SocketIoLayer;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tower_http::cors::{AllowOrigin, CorsLayer};
use uuid::Uuid;

pub const WS_PATH: &str = "/api/notifications/ws";

/// What the HTTP handlers share.
pub struct Shared {
    pub ctx: Arc<Context>,
    pub subscriber: SubscriberClient,
    /// Whether the subscription works end to end (probes come back).
    pub bus: Arc<fanout::BusHealth>,
    pub draining: Arc<AtomicBool>,
    pub origins: AllowedOrigins,
    /// When each refused origin was last logged.
    refused_origins: Mutex<HashMap<String, Instant>>,
    pub socketio: Arc<SocketIoState>,
}

/// A refused origin is logged at most this often (a misconfigured frontend retries constantly).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(60);
/// Most distinct refused origins remembered for that; beyond, new ones go unlogged until
/// entries age out (a client can send any number of made-up origins).
const REFUSAL_LOG_ORIGINS: usize = 1024;

impl Shared {
    pub fn new(
        ctx: Arc<Context>,
        subscriber: SubscriberClient,
        bus: Arc<fanout::BusHealth>,
        draining: Arc<AtomicBool>,
        origins: AllowedOrigins,
        socketio: Arc<SocketIoState>,
    ) -> Self {
        Self {
            ctx,
            subscriber,
            bus,
            draining,
            origins,
            refused_origins: Mutex::new(HashMap::new()),
            socketio,
        }
    }

    /// Checks a browser `Origin` header against the allowed list (requests without one are
    /// allowed: only browsers are at risk). A refusal is counted, and logged at warn once per
    /// origin per minute with the reason, so "403" in a browser can be explained from the log.
    pub fn check_origin(&self, origin: Option<&str>, path: &'static str) -> bool {
        let Some(origin) = origin else { return true };
        if self.origins.allows(origin) {
            return true;
        }
        self.ctx
            .metrics
            .handshake_refusals
            .with_label_values(&["origin"])
            .inc();
        let origin: String = origin.chars().take(200).collect();
        let now = Instant::now();
        let mut seen = self.refused_origins.lock().expect("origin log lock");
        if seen.len() >= REFUSAL_LOG_ORIGINS {
            seen.retain(|_, at| now.duration_since(*at) < REFUSAL_LOG_EVERY);
        }
        let due = seen
            .get(&origin)
            .is_none_or(|at| now.duration_since(*at) >= REFUSAL_LOG_EVERY);
        if due && seen.len() < REFUSAL_LOG_ORIGINS {
            tracing::warn!(
                origin = ?origin,
                path,
                allowed = ?self.origins.as_slice(),
                "refused a browser origin: it is neither the public origin nor in CORS_ALLOWED_ORIGINS (logged once a minute per origin)"
            );
            seen.insert(origin, now);
        }
        false
    }

    fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// The whole HTTP surface. Socket.IO requests are taken by socketioxide's layer before routing
/// (one layer for the process: it holds the Engine.IO session table that polling requests on
/// different TCP connections share).
pub fn router(shared: Arc<Shared>, socketio: SocketIoLayer) -> Router {
    let origins = shared.origins.clone();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            origin.to_str().is_ok_and(|o| origins.allows(o))
        }))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([CONTENT_TYPE, AUTHORIZATION]);
    Router::new()
        .route(WS_PATH, any(upgrade))
        .route("/healthz", get(herald_service::ops::healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(|| async { detail(StatusCode::NOT_FOUND, "Not Found") })
        .method_not_allowed_fallback(|| async {
            detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        })
        .layer(socketio)
        .layer(cors)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            socketio_gate,
        ))
        .with_state(shared)
}

fn detail(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "detail": message }))).into_response()
}

fn origin_of(req: &Request) -> Option<String> {
    req.headers()
        .get(ORIGIN)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Before socketioxide: a browser origin not allowed gets 403, a new session on a draining
/// gateway 503 (its client retries another one through nginx). Other paths pass.
async fn socketio_gate(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/socket.io") {
        return next.run(req).await;
    }
    if !shared.check_origin(origin_of(&req).as_deref(), "/socket.io/") {
        return StatusCode::FORBIDDEN.into_response();
    }
    let new_session = !req.uri().query().is_some_and(|q| q.contains("sid="));
    if new_session && shared.is_draining() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    next.run(detached(req)).await
}

/// The request with its head copied out of hyper's read buffer. engineioxide keeps a socket's
/// request head for the socket's life; hyper's header values, URI and axum's copy of the URI
/// point into the buffer the request was read into (8 KiB or more), which would then live as long
/// as the socket: 7 KB of every idle Socket.IO socket (heaptrack, 5,000 sockets).
fn detached(req: Request) -> Request {
    let (mut head, body) = req.into_parts();
    head.extensions.remove::<axum::extract::OriginalUri>();
    if let Ok(uri) = head.uri.to_string().parse() {
        head.uri = uri;
    }
    for value in head.headers.values_mut() {
        if let Ok(mut copy) = axum::http::HeaderValue::from_bytes(value.as_bytes()) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
    }
    Request::from_parts(head, body)
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let redis = shared.subscriber.is_connected() && !shared.bus.stalled();
    let draining = shared.is_draining();
    let status = if redis && !draining {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({"redis": if redis {"ok"} else {"unavailable"}, "draining": draining});
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    herald_service::ops::metrics(shared.ctx.metrics.render())
}

fn query_param(req: &Request, name: &str) -> Option<String> {
    let q = req.uri().query()?;
    form_urlencoded::parse(q.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// `/api/notifications/ws`: protocol, drain, origin, token and admission checks, then the
/// upgrade; the connection is served in a task of its own.
async fn upgrade(State(app): State<Arc<Shared>>, mut req: Request) -> Response {
    let metrics = &app.ctx.metrics;
    if req.version() != Version::HTTP_11 || !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return detail(
            StatusCode::UPGRADE_REQUIRED,
            "this endpoint speaks WebSocket only",
        );
    }
    if app.is_draining() {
        return detail(
            StatusCode::SERVICE_UNAVAILABLE,
            "this gateway is restarting: reconnect",
        );
    }
    if !app.check_origin(origin_of(&req).as_deref(), WS_PATH) {
        return detail(StatusCode::FORBIDDEN, "origin not allowed");
    }
    let token = query_param(&req, "token").or_else(|| {
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
    let since = query_param(&req, "since").map(|s| match Uuid::parse_str(&s) {
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
    let (response, upgraded) = match fastwebsockets::upgrade::upgrade(&mut req) {
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
        let upgraded = match upgraded.await {
            Ok(ws) => ws.into_inner().into_inner(),
            Err(e) => {
                tracing::debug!(cause = %e, "upgrade did not complete");
                return;
            }
        };
        // The socket itself, not hyper's boxed wrapper around it: that wrapper keeps what hyper
        // read past the request, and with it hyper's whole read buffer, for the connection's life.
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            // A client must wait for our 101 before it sends frames (RFC 6455 §4.1).
            Ok(parts) if parts.read_buf.is_empty() => {
                // Dropped before serving: even empty, it shares hyper's 8 KiB read buffer.
                let hyper::upgrade::Parts { io, read_buf, .. } = parts;
                drop(read_buf);
                // A task of its own: this one's future also holds the upgrade and the
                // arguments, which the connection's long life must not carry.
                tokio::spawn(connection::serve(io.into_inner(), session, admission, ctx));
            }
            Ok(_) => tracing::debug!("a client sent frames before the handshake completed"),
            Err(_) => tracing::error!("an upgraded connection is not a TCP stream"),
        }
    });
    response.map(|_| Body::empty())
}
