//! The worker's configuration, from the environment with documented defaults.

use herald_core::secret::Secret;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SmtpTls {
    /// Plain SMTP (a local relay or a mail catcher).
    None,
    /// STARTTLS on the plain port (usually 587).
    Starttls,
    /// TLS from the first byte (usually 465).
    Tls,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Postgres URL (the same database as the api).
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://herald:herald@127.0.0.1:5432/herald"
    )]
    pub database_url: Secret,

    /// Address of /metrics and /healthz.
    #[arg(
        long = "listen",
        env = "HERALD_WORKER_ADDR",
        default_value = "127.0.0.1:8021"
    )]
    pub listen: SocketAddr,

    /// This worker's name (in job leases and logs); default `worker-<random>`.
    #[arg(long, env = "HERALD_WORKER_ID")]
    pub worker_id: Option<String>,

    /// SMTP server; when unset, emails are written as .eml files to HERALD_MAIL_DIR.
    #[arg(long, env = "SMTP_HOST")]
    pub smtp_host: Option<String>,

    /// SMTP port (default 25 for none, 587 for starttls, 465 for tls).
    #[arg(long, env = "SMTP_PORT")]
    pub smtp_port: Option<u16>,

    #[arg(long, env = "SMTP_USERNAME")]
    pub smtp_username: Option<String>,

    #[arg(long, env = "SMTP_PASSWORD", hide_env_values = true)]
    pub smtp_password: Option<Secret>,

    #[arg(long, env = "SMTP_TLS", value_enum, default_value = "none")]
    pub smtp_tls: SmtpTls,

    /// Sender address, e.g. `Herald <notifications@example.com>`.
    #[arg(long, env = "SMTP_FROM", default_value = "Herald <herald@localhost>")]
    pub smtp_from: String,

    /// Where .eml files go when no SMTP_HOST is set.
    #[arg(long, env = "HERALD_MAIL_DIR", default_value = ".run/mail")]
    pub mail_dir: PathBuf,

    /// Optional folder of per-type templates: `<type>.subject`, `<type>.txt`, `<type>.html`.
    #[arg(long, env = "HERALD_EMAIL_TEMPLATES")]
    pub templates_dir: Option<PathBuf>,

    /// The public origin: links in emails are resolved against it.
    #[arg(
        long,
        env = "HERALD_PUBLIC_URL",
        default_value = "http://127.0.0.1:8000"
    )]
    pub public_url: String,

    /// Seconds between looks for due jobs.
    #[arg(long, env = "HERALD_WORKER_POLL_MS", default_value_t = 500)]
    pub poll_ms: u64,

    /// Jobs claimed at once.
    #[arg(long, env = "HERALD_WORKER_BATCH", default_value_t = 50)]
    pub batch: i64,

    /// How long a claim lasts: a worker that dies leaves its jobs to others after this.
    #[arg(long, env = "HERALD_WORKER_LEASE_SECS", default_value_t = 60)]
    pub lease_secs: u64,

    /// Attempts before a transient failure becomes a recorded failure.
    #[arg(long, env = "HERALD_EMAIL_MAX_ATTEMPTS", default_value_t = 8)]
    pub max_attempts: i32,

    /// First retry delay; doubles each attempt (with full jitter), capped at one hour.
    #[arg(long, env = "HERALD_EMAIL_RETRY_BASE_SECS", default_value_t = 30)]
    pub retry_base_secs: u64,

    /// Read notifications older than this many days are deleted.
    #[arg(long, env = "HERALD_RETENTION_READ_DAYS", default_value_t = 30)]
    pub retention_read_days: u32,

    /// All notifications older than this many days are deleted.
    #[arg(long, env = "HERALD_RETENTION_ALL_DAYS", default_value_t = 180)]
    pub retention_all_days: u32,

    /// Rows deleted per cleanup batch.
    #[arg(long, env = "HERALD_CLEANUP_BATCH", default_value_t = 1_000)]
    pub cleanup_batch: i64,

    /// Seconds between cleanup runs.
    #[arg(long, env = "HERALD_CLEANUP_INTERVAL_SECS", default_value_t = 3_600)]
    pub cleanup_interval_secs: u64,
}

impl Config {
    /// Every default, .eml output to `mail_dir`; for tests and embedding.
    pub fn new(database_url: &str, mail_dir: PathBuf) -> Self {
        Self {
            database_url: Secret::new(database_url),
            listen: "127.0.0.1:0".parse().expect("valid address"),
            worker_id: None,
            smtp_host: None,
            smtp_port: None,
            smtp_username: None,
            smtp_password: None,
            smtp_tls: SmtpTls::None,
            smtp_from: "Herald <herald@localhost>".to_owned(),
            mail_dir,
            templates_dir: None,
            public_url: "http://127.0.0.1:8000".to_owned(),
            poll_ms: 500,
            batch: 50,
            lease_secs: 60,
            max_attempts: 8,
            retry_base_secs: 30,
            retention_read_days: 30,
            retention_all_days: 180,
            cleanup_batch: 1_000,
            cleanup_interval_secs: 3_600,
        }
    }

    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }
}
