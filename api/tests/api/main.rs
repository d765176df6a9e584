//! Integration tests of the api against real Postgres and Redis: one test binary, one module
//! per area. Every test gets a fresh database and its own Redis prefix.

mod auth;
mod bad_input;
mod counts;
mod edges;
mod faults;
mod helpers;
mod inbox;
mod ordering;
mod publish;
