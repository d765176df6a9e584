//! Herald's gateway: the WebSocket edge. It authenticates clients with JWT, subscribes to Redis
//! for exactly the users and roles it has connected, and writes each published frame to every
//! matching connection. It holds no state that matters after a restart and never opens a
//! database connection: resume reads and `mark_read` go through the api.
//!
//! # Layout
//! - [`config`]: the typed configuration, from the environment.
//! - [`startup`]: builds the gateway, accept loop, drain on shutdown.
//! - [`http`]: handshake checks (origin, token, limits) and the upgrade; health and metrics.
//! - [`session`]: one connection: reader and writer tasks, commands, resume, heartbeat, expiry.
//! - [`commands`]: client text commands parsed into a type (fuzzed).
//! - [`frames`]: client frame checks and reassembly under a size cap; close codes.
//! - [`shared_io`]: the socket shared by reader, writer and the lingering close.
//! - [`writer`]: a write half that sends queued frames in one write and holds no idle buffer.
//! - [`hub`]: which connections want which channels; batched subscription changes; delivery.
//! - [`queue`]: a connection's outbound queue, bounded and empty-handed while idle.
//! - [`fanout`]: the Redis subscriber tasks.
//! - [`socketio`]: Socket.IO namespaces (`/user`, `/<role>`) bridged onto the hub.
//! - [`liveness`]: when a client or the Redis subscription was last heard from.
//! - [`presence`]: connection counts and online users reported to Redis.
//! - [`api_client`]: the calls to the api.
//! - [`metrics`].

#![forbid(unsafe_code)]

pub mod api_client;
pub mod commands;
pub mod config;
pub mod fanout;
pub mod frames;
pub mod http;
pub mod hub;
pub mod liveness;
pub mod metrics;
pub mod presence;
pub mod queue;
pub mod session;
pub mod shared_io;
pub mod socketio;
pub mod startup;
pub mod writer;
