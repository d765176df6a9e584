//! Herald's worker: sends the emails notifications ask for (SMTP, or `.eml` files when no SMTP
//! server is configured), gathers digests, honours email-if-unseen, and deletes old
//! notifications. Several workers may run side by side without double work.
//!
//! # Layout
//! - [`config`]: the typed configuration, from the environment.
//! - [`startup`]: builds the worker; the run loop; shutdown.
//! - [`jobs`]: the email outbox: claim, check, send, retry, digests, dead letters.
//! - [`compose`]: a `lettre::Message` from a recipient's mailbox and rendered content.
//! - [`mailer`]: lettre transports and failure classes.
//! - [`render`]: subject, text and HTML from templates.
//! - [`cleanup`] — retention.
//! - [`metrics`].

#![forbid(unsafe_code)]

pub mod cleanup;
pub mod compose;
pub mod config;
pub mod jobs;
pub mod mailer;
pub mod metrics;
pub mod render;
pub mod startup;
