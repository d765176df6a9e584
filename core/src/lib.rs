//! Herald's shared library: what two or more services must agree on, and nothing else.
//!
//! It performs no I/O of its own: no sockets, no database, no Redis connection. Services use it
//! to speak the same wire format, name the same Redis channels and keys, verify tokens the same
//! way and log the same way.
//!
//! # Layout
//! - [`wire`]: the notification and the JSON frames that travel to clients (and through Redis).
//! - [`keys`]: Redis channel and key names, all under one configurable prefix.
//! - [`auth`]: JWT verification (HS256 secret or a pinned public-key algorithm) and dev minting.
//! - [`origins`]: the browser origins allowed to call the api and open connections.
//! - [`mailbox`]: email recipients (address and display name), checked with lettre's parser.
//! - [`secret`]: a string wrapper that never prints its value.
//! - [`metrics`]: Prometheus constructors, registry and text exposition.
//! - [`telemetry`]: tracing subscriber set-up shared by every binary.

#![forbid(unsafe_code)]

pub mod auth;
pub mod keys;
pub mod mailbox;
pub mod metrics;
pub mod origins;
pub mod secret;
pub mod telemetry;
pub mod wire;
