//! Builds a gateway from its [`Config`] and a bound listener, serves until the shutdown future
//! completes, then drains: stop accepting, close every client with 1012 spread over the drain
//! window (no thundering herd on the other nodes), withdraw presence.

use crate::api_client::ApiClient;
use crate::config::Config;
use crate::connection::{CloseCode, Context};
use crate::fanout;
use crate::http::{self, Shared};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::presence;
use crate::socketio::SocketIoState;
use anyhow::Context as _;
use fred::prelude::{Client, ClientLike};
use herald_core::keys::Keys;
use herald_service::redis::WhileDown;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use socketioxide::SocketIo;
use socketioxide::layer::SocketIoLayer;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

pub struct Gateway {
    listener: TcpListener,
    shared: Arc<Shared>,
    socketio_layer: SocketIoLayer,
    presence_client: Client,
    node: String,
    drain: Duration,
    presence_interval: Duration,
}

impl Gateway {
    pub async fn build(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        let verifier = config.jwt.verifier().context("JWT configuration")?;
        let addr = listener.local_addr()?;
        let node = config.node_id.clone().unwrap_or_else(|| {
            format!(
                "gw-{}-{}",
                addr.port(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            )
        });
        let metrics = Metrics::new();
        let hub = Hub::new(config.max_connections_per_user, config.max_connections);
        let keys = Keys::new(config.redis_prefix.clone());
        let probe_channel = keys.probe_channel(&node);
        let draining = Arc::new(AtomicBool::new(false));
        let (socketio_layer, io) = SocketIo::builder()
            .max_payload(config.max_polling_bytes)
            .max_buffer_size(config.outbound_queue)
            .ws_max_message_size(config.max_message_bytes.max(64 * 1024))
            .ws_max_frame_size(config.max_message_bytes.max(64 * 1024))
            // 4 KiB by default, zero-filled and so resident in every idle socket; it grows when
            // a larger frame arrives.
            .ws_read_buffer_size(512)
            .connect_timeout(Duration::from_secs(10))
            .build_layer();
        let socketio = SocketIoState::install(
            io,
            hub.clone(),
            keys.clone(),
            verifier.clone(),
            metrics.clone(),
            draining.clone(),
        )?;
        let ctx = Arc::new(Context {
            hub: hub.clone(),
            keys,
            api: ApiClient::new(&config.api_url),
            verifier,
            metrics: metrics.clone(),
            max_message_bytes: config.max_message_bytes,
            max_messages_per_sec: config.max_messages_per_sec,
            outbound_queue: config.outbound_queue,
            ping_interval: config.ping_interval(),
            idle_timeout: config.idle_timeout(),
            replay_max: config.replay_max,
        });
        let subscriber =
            herald_service::redis::subscriber(config.redis_url.expose()).context("REDIS_URL")?;
        // Presence reports and probes: a command unanswered for 3 s replaces the connection.
        let presence_client = herald_service::redis::client(
            config.redis_url.expose(),
            Duration::from_secs(1),
            WhileDown::Wait,
        )?;
        let _presence_connection = presence_client.connect();
        let bus = fanout::BusHealth::new(
            probe_channel,
            Duration::from_secs(config.bus_stall_secs.max(2)),
        );
        fanout::start(
            subscriber.clone(),
            presence_client.clone(),
            hub,
            metrics,
            bus.clone(),
        );
        Ok(Self {
            listener,
            shared: Arc::new(Shared::new(
                ctx,
                subscriber,
                bus,
                draining,
                config.origins().context("CORS_ALLOWED_ORIGINS")?,
                socketio,
            )),
            socketio_layer,
            presence_client,
            node,
            drain: Duration::from_secs(config.drain_secs),
            presence_interval: Duration::from_secs(config.presence_interval_secs.max(1)),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn node_id(&self) -> &str {
        &self.node
    }

    /// Serves until `shutdown` completes, then drains.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let keys = self.shared.ctx.keys.clone();
        let presence = tokio::spawn(presence::run(
            self.presence_client.clone(),
            keys.clone(),
            self.node.clone(),
            self.shared.ctx.hub.clone(),
            self.presence_interval,
        ));
        // HTTP/1.1 only: WebSocket upgrades and Engine.IO polling are HTTP/1.1, and nginx speaks
        // it to upstreams. hyper's own HTTP/1 connection (not hyper-util's auto-detecting one)
        // hands the upgraded socket back as the TcpStream it is, see `http::upgrade`.
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10));
        let builder = Arc::new(builder);
        let app = http::router(self.shared.clone(), self.socketio_layer.clone());
        tokio::pin!(shutdown);
        loop {
            let (tcp, _) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(cause = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let (builder, app) = (builder.clone(), app.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| app.clone().oneshot(req));
                if let Err(e) = builder
                    .serve_connection(TokioIo::new(tcp), service)
                    .with_upgrades()
                    .await
                {
                    tracing::debug!(cause = %e, "connection ended with an error");
                }
            });
        }
        drop(self.listener);
        self.shared.draining.store(true, Ordering::SeqCst);
        drain(&self.shared.ctx.hub, self.drain).await;
        // Socket.IO clients are closed at once (socketioxide has no per-socket transport close);
        // their clients reconnect with their own backoff.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.shared.socketio.io.close()).await;
        presence.abort();
        let _ = presence::withdraw(&self.presence_client, &keys, &self.node).await;
        let _ = self.shared.subscriber.quit().await;
        let _ = self.presence_client.quit().await;
        Ok(())
    }
}

/// Closes every connection with 1012, spread evenly over `window`, then waits (bounded) for
/// them to finish.
async fn drain(hub: &Hub, window: Duration) {
    let conns = hub.connection_handles();
    tracing::info!(
        connections = conns.len(),
        window_secs = window.as_secs(),
        "draining"
    );
    let ticks = (window.as_millis() / 50).max(1) as usize;
    let per_tick = conns.len().div_ceil(ticks).max(1);
    for chunk in conns.chunks(per_tick) {
        for c in chunk {
            c.kick(CloseCode::ServiceRestart);
        }
        if chunk.len() == per_tick {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while hub.connections() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
