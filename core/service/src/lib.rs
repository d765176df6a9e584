//! Plumbing Herald's services share, so each service's start-up reads as what it does rather
//! than how it connects: [`postgres`] (the pool's settings, the migrations and the statistics
//! that keep plans good), [`redis`] (clients that reconnect and replace stalled connections),
//! [`shutdown`] (Ctrl-C or SIGTERM) and [`ops`] (`/healthz`, `/readyz`, `/metrics`).
//!
//! **Invariant:** nothing here knows a service's own types: the api, the gateway and the worker
//! depend on this crate, never the other way round.

pub mod ops;
pub mod postgres;
pub mod redis;
pub mod shutdown;
