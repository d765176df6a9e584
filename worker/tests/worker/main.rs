//! Worker tests against a real SMTP server (aiosmtpd) and real Postgres, with the real api
//! writing the notifications and their email jobs. Time is passed in, so retries, leases, digests
//! and email-if-unseen are exact.

mod addressing;
mod cleanup;
mod dead_letters;
mod email;
mod helpers;
mod preferences;
