//! Herald's api: the REST service that validates, writes to Postgres (the source of truth) and
//! publishes to Redis (the fan-out bus). It is the only writer and the only publisher.
//!
//! # Layout
//! - [`config`]: the typed configuration, from the environment.
//! - [`startup`]: builds the app from a config and a bound listener; shutdown.
//! - [`state`]: what every handler shares.
//! - [`routes`]: HTTP handlers, one module per area.
//! - [`cors`]: cross-origin answers for the allowed browser origins, nothing for the others.
//! - [`extract`]: the caller's verified identity and JSON bodies with field-named errors.
//! - [`domain`]: publish requests validated into trusted types.
//! - [`inbox`]: reading and changing a user's inbox in Postgres.
//! - [`publishing`]: creating notifications in Postgres, with their positions, idempotently.
//! - [`fanout`]: Redis: the bus, the ordered relay, the change queue.
//! - [`presence`]: connection stats from what gateways report to Redis.
//! - [`metrics`], [`error`], [`openapi`].
//! - [`testing`]: support for the integration tests of every service (not used at run time).

#![forbid(unsafe_code)]

pub mod config;
pub mod cors;
pub mod domain;
pub mod error;
pub mod extract;
pub mod fanout;
pub mod inbox;
pub mod metrics;
pub mod openapi;
#[cfg(test)]
mod plans;
pub mod presence;
pub mod publishing;
pub mod routes;
pub mod startup;
pub mod state;
pub mod testing;
