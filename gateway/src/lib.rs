//! Herald's gateway: the WebSocket edge. It authenticates clients with JWT, subscribes to Redis
//! for exactly the users and roles it has connected, and writes each published frame to every
//! matching connection. It holds no state that matters after a restart and never opens a
//! database connection: resume reads and `mark_read` go through the api.
//!
//! # Layout
//! - [`config`]: the typed configuration, from the environment.
//! - [`startup`]: builds the gateway, accept loop, drain on shutdown.
//! - [`http`]: the axum router: handshake checks (origin, token, limits) and the upgrade;
//!   Socket.IO's gate and CORS; health and metrics.
//! - [`connection`]: one WebSocket connection in one task: reader, writer, its queue and the
//!   state the hub shares with it, the close codes, frame checks and commands.
//! - [`hub`]: which connections want which channels; batched subscription changes; delivery.
//! - [`fanout`]: the Redis subscriber tasks.
//! - [`socketio`]: Socket.IO namespaces (`/user`, `/<role>`) bridged onto the hub.
//! - [`liveness`]: when the Redis subscription was last heard from.
//! - [`presence`]: connection counts and online users reported to Redis.
//! - [`api_client`]: the calls to the api.
//! - [`metrics`].

#![forbid(unsafe_code)]

pub mod api_client;
pub mod config;
pub mod connection;
pub mod fanout;
pub mod http;
pub mod hub;
pub mod liveness;
pub mod metrics;
pub mod presence;
pub mod socketio;
pub mod startup;
