//! End-to-end tests of the gateway with the real api, Postgres, Redis and nginx. Every test
//! gets a fresh database and its own Redis prefix.

mod bad_input;
mod close_codes;
mod delivery;
mod faults;
mod grants;
mod helpers;
mod resume;
mod socketio;
mod timing;
