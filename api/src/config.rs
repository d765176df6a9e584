//! The api's configuration: one typed struct read from the environment (or flags), with a
//! documented default for everything that has a sensible one. Secrets are [`Secret`]s.

use herald_core::auth::JwtArgs;
use herald_core::origins::{AllowedOrigins, OriginArgs, OriginError};
use herald_core::secret::Secret;
use std::net::SocketAddr;
use std::time::Duration;

/// Defaults, shared by the flag definitions and [`Config::new`].
pub mod defaults {
    pub const LISTEN: &str = "127.0.0.1:8001";
    pub const DATABASE_URL: &str = "postgres://herald:herald@127.0.0.1:5432/herald";
    pub const REDIS_PREFIX: &str = "herald";
    pub const PUBLIC_URL: &str = "http://127.0.0.1:8000";
    pub const DB_POOL_SIZE: u32 = 16;
    pub const DB_ACQUIRE_TIMEOUT_MS: u64 = 2_000;
    pub const REQUEST_TIMEOUT_MS: u64 = 10_000;
    pub const MAX_DATA_BYTES: usize = 16 * 1024;
    pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
    pub const RELAY_POLL_MS: u64 = 250;
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long = "listen", env = "HERALD_API_ADDR", default_value = defaults::LISTEN)]
    pub listen: SocketAddr,

    /// Postgres URL (the source of truth). Migrations run at start-up.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, default_value = defaults::DATABASE_URL)]
    pub database_url: Secret,

    /// Most Postgres connections this process opens.
    #[arg(long, env = "HERALD_DB_POOL_SIZE", default_value_t = defaults::DB_POOL_SIZE)]
    pub db_pool_size: u32,

    /// How long a request waits for a Postgres connection before answering 503.
    #[arg(long, env = "HERALD_DB_ACQUIRE_TIMEOUT_MS", default_value_t = defaults::DB_ACQUIRE_TIMEOUT_MS)]
    pub db_acquire_timeout_ms: u64,

    /// Redis URL (the fan-out bus).
    #[arg(
        long,
        env = "REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: Secret,

    /// Prefix of every Redis channel and key, so several stacks can share one Redis.
    #[arg(long, env = "REDIS_PREFIX", default_value = defaults::REDIS_PREFIX)]
    pub redis_prefix: String,

    #[command(flatten)]
    pub jwt: JwtArgs,

    /// The public origin users reach Herald at (links in emails, the demo page); always an
    /// allowed browser origin.
    #[arg(long, env = "HERALD_PUBLIC_URL", default_value = defaults::PUBLIC_URL)]
    pub public_url: String,

    #[command(flatten)]
    pub cors: OriginArgs,

    /// More origins an absolute `action_url` may point at, comma separated (besides the public
    /// origin and CORS_ALLOWED_ORIGINS), e.g. the host application's own site.
    #[arg(long, env = "HERALD_LINK_ORIGINS", value_delimiter = ',')]
    pub link_origins: Vec<String>,

    /// A request that takes longer than this is answered 503.
    #[arg(long, env = "HERALD_REQUEST_TIMEOUT_MS", default_value_t = defaults::REQUEST_TIMEOUT_MS)]
    pub request_timeout_ms: u64,

    /// Largest accepted `data` object of a notification or event, in bytes of JSON.
    #[arg(long, env = "HERALD_MAX_DATA_BYTES", default_value_t = defaults::MAX_DATA_BYTES)]
    pub max_data_bytes: usize,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "HERALD_MAX_BODY_BYTES", default_value_t = defaults::MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// DEVELOPMENT ONLY: serve `GET /api/dev/token`, which mints any token for anyone (the demo
    /// page uses it). Never turn this on where real users are.
    #[arg(long, env = "HERALD_DEV_TOKENS", default_value_t = false)]
    pub dev_tokens: bool,

    /// How often the relay looks for unpublished notifications without being woken.
    #[arg(long, env = "HERALD_RELAY_POLL_MS", default_value_t = defaults::RELAY_POLL_MS)]
    pub relay_poll_ms: u64,
}

impl Config {
    /// A configuration with every default, for tests and embedding.
    pub fn new(database_url: &str, redis_url: &str, jwt_secret: &str) -> Self {
        Self {
            listen: defaults::LISTEN.parse().expect("valid default address"),
            database_url: Secret::new(database_url),
            db_pool_size: defaults::DB_POOL_SIZE,
            db_acquire_timeout_ms: defaults::DB_ACQUIRE_TIMEOUT_MS,
            redis_url: Secret::new(redis_url),
            redis_prefix: defaults::REDIS_PREFIX.to_owned(),
            jwt: JwtArgs::with_secret(jwt_secret),
            public_url: defaults::PUBLIC_URL.to_owned(),
            cors: OriginArgs::default(),
            link_origins: Vec::new(),
            request_timeout_ms: defaults::REQUEST_TIMEOUT_MS,
            max_data_bytes: defaults::MAX_DATA_BYTES,
            max_body_bytes: defaults::MAX_BODY_BYTES,
            relay_poll_ms: defaults::RELAY_POLL_MS,
            dev_tokens: false,
        }
    }

    /// The browser origins allowed to call the api: the public URL's and CORS_ALLOWED_ORIGINS.
    pub fn origins(&self) -> Result<AllowedOrigins, OriginError> {
        AllowedOrigins::parse(&self.cors.allowed_origins, &self.public_url)
    }

    pub fn db_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.db_acquire_timeout_ms)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}
