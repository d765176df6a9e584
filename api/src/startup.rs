//! Builds the api from its [`Config`]: Postgres pool and migrations, Redis bus, token verifier,
//! relay task, router and middleware. [`App::build`] takes an already-bound listener so tests can
//! bind port 0; [`App::run_until_stopped`] serves until the shutdown future completes.

use crate::config::Config;
use crate::cors;
use crate::error::ApiError;
use crate::fanout::{self, Bus, ChangeQueue};
use crate::metrics::Metrics;
use crate::publishing::{Batcher, Deadlines};
use crate::routes;
use crate::state::{AppState, Shared};
use anyhow::Context as _;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use fred::prelude::ClientLike as _;
use herald_core::keys::Keys;
use herald_service::postgres;
use herald_service::redis::WhileDown;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub struct App {
    listener: TcpListener,
    router: Router,
    state: AppState,
}

impl App {
    /// Connects to Postgres (running migrations) and Redis, and prepares the router.
    pub async fn build(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        let verifier = config.jwt.verifier().context("JWT configuration")?;
        let origins = Arc::new(config.origins().context("CORS_ALLOWED_ORIGINS")?);
        // Plans are Postgres' own choice, custom or generic: every hot query's plans are
        // checked (`plans` tests) and statistics keep up (`herald_service::postgres`).
        let pool = postgres::connect(
            config.database_url.expose(),
            config.db_pool_size,
            config.db_acquire_timeout(),
            // A transaction left open holds back every reader of "everything after"
            // (ARCHITECTURE.md, "Ordering"): one whose client stalled is ended.
            &[("idle_in_transaction_session_timeout", "5s")],
        )
        .await?;
        postgres::migrate(&pool).await?;
        if crate::publishing::keep_positions_ahead(&pool)
            .await
            .context("checking notification positions")?
        {
            tracing::warn!(
                "stored positions were ahead of this cluster's transaction ids (a logical restore?): new positions now follow them"
            );
        }
        let redis = herald_service::redis::client(
            config.redis_url.expose(),
            Duration::from_secs(1),
            WhileDown::Fail,
        )
        .context("REDIS_URL")?;
        // Not awaited: the api starts (and answers 503 where Redis is needed) while Redis is
        // down.
        let _connection_task = redis.connect();
        let bus = Bus {
            client: redis,
            keys: Keys::new(config.redis_prefix.clone()),
        };
        let metrics = Metrics::new();
        let changes = ChangeQueue::start(bus.clone(), metrics.clone());
        let state = Arc::new(Shared {
            batcher: Batcher::start(
                pool.clone(),
                Deadlines {
                    acquire: config.db_acquire_timeout(),
                    request: config.request_timeout(),
                },
            ),
            pool,
            bus,
            changes,
            verifier,
            metrics,
            relay_wake: Notify::new(),
            relay_poll: Duration::from_millis(config.relay_poll_ms),
            relay_published: std::sync::atomic::AtomicI64::new(0),
            max_data_bytes: config.max_data_bytes,
            link_origins: origins
                .with(&config.link_origins)
                .context("HERALD_LINK_ORIGINS")?,
            request_timeout: config.request_timeout(),
            dev_token_secret: config.jwt.secret.clone().filter(|_| config.dev_tokens),
        });
        if config.dev_tokens {
            tracing::warn!(
                "HERALD_DEV_TOKENS is on: /api/dev/token mints tokens for anyone (development only)"
            );
        }
        let router = routes::router()
            .layer(DefaultBodyLimit::max(config.max_body_bytes))
            .layer(middleware::from_fn_with_state(state.clone(), observe))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(
                TraceLayer::new_for_http().make_span_with(|req: &Request| {
                    // The path only: a query string could carry a token.
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                }),
            )
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(cors::layer(&origins))
            .layer(middleware::from_fn_with_state(origins, cors::refuse_foreign))
            .with_state(state.clone());
        Ok(Self {
            listener,
            router,
            state,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` completes, then finishes in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let relay = tokio::spawn(fanout::run_relay(self.state.clone()));
        let statistics = tokio::spawn(postgres::keep_statistics_current(self.state.pool.clone()));
        let result = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await;
        relay.abort();
        statistics.abort();
        self.state.pool.close().await;
        result
    }
}

/// Records every request in the metrics (by route template, never the raw path) and bounds how
/// long one may take: past the timeout the client gets a 503 instead of a hang.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = match tokio::time::timeout(state.request_timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::Unavailable("the service").into_response(),
    };
    state.metrics.observe_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    herald_service::shutdown::signal().await;
    tracing::info!("shutting down");
}
