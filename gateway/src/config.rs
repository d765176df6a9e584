//! The gateway's configuration: one typed struct from the environment (or flags), every limit
//! with a documented default.

use herald_core::auth::JwtArgs;
use herald_core::origins::{AllowedOrigins, OriginArgs, OriginError};
use herald_core::secret::Secret;
use std::net::SocketAddr;
use std::time::Duration;

/// Defaults, shared by the flag definitions and [`Config::new`].
pub mod defaults {
    pub const LISTEN: &str = "127.0.0.1:8011";
    pub const API_URL: &str = "http://127.0.0.1:8001";
    pub const PUBLIC_URL: &str = "http://127.0.0.1:8000";
    pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;
    pub const MAX_MESSAGES_PER_SEC: u32 = 20;
    pub const MAX_CONNECTIONS_PER_USER: usize = 32;
    pub const MAX_CONNECTIONS: usize = 19_000;
    pub const OUTBOUND_QUEUE: usize = 256;
    pub const MAX_POLLING_BYTES: u64 = 64 * 1024;
    pub const PING_INTERVAL_SECS: u64 = 25;
    pub const IDLE_TIMEOUT_SECS: u64 = 60;
    pub const REPLAY_MAX: usize = 1_000;
    pub const DRAIN_SECS: u64 = 10;
    pub const PRESENCE_INTERVAL_SECS: u64 = 10;
    pub const BUS_STALL_SECS: u64 = 3;
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address the gateway listens on (WebSocket, /healthz, /readyz, /metrics).
    #[arg(long = "listen", env = "HERALD_GATEWAY_ADDR", default_value = defaults::LISTEN)]
    pub listen: SocketAddr,

    /// This node's name in presence reports; default: `gw-<listen port>-<random>`.
    #[arg(long, env = "HERALD_NODE_ID")]
    pub node_id: Option<String>,

    /// Redis URL (the fan-out bus).
    #[arg(
        long,
        env = "REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: Secret,

    /// Prefix of every Redis channel and key (must match the api's).
    #[arg(long, env = "REDIS_PREFIX", default_value = "herald")]
    pub redis_prefix: String,

    /// Where the gateway reaches the api (resume reads, mark_read).
    #[arg(long, env = "HERALD_API_URL", default_value = defaults::API_URL)]
    pub api_url: String,

    #[command(flatten)]
    pub jwt: JwtArgs,

    #[command(flatten)]
    pub cors: OriginArgs,

    /// The public origin (always an allowed browser origin).
    #[arg(long, env = "HERALD_PUBLIC_URL", default_value = defaults::PUBLIC_URL)]
    pub public_url: String,

    /// Largest client message (also the total of a fragmented one), in bytes; larger → 1009.
    #[arg(long, env = "HERALD_WS_MAX_MESSAGE_BYTES", default_value_t = defaults::MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Client messages per second per connection (bursts of twice that); beyond → an error
    /// message, and the message is ignored.
    #[arg(long, env = "HERALD_WS_MAX_MESSAGES_PER_SEC", default_value_t = defaults::MAX_MESSAGES_PER_SEC)]
    pub max_messages_per_sec: u32,

    /// Open connections one user may hold on this node; beyond → 429 at the handshake.
    #[arg(long, env = "HERALD_WS_MAX_CONNECTIONS_PER_USER", default_value_t = defaults::MAX_CONNECTIONS_PER_USER)]
    pub max_connections_per_user: usize,

    /// Open connections on this node; beyond → 503 at the handshake.
    #[arg(long, env = "HERALD_WS_MAX_CONNECTIONS", default_value_t = defaults::MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Largest Socket.IO long-polling request body, in bytes; larger → 413 and the session ends.
    #[arg(long, env = "HERALD_SIO_MAX_POLLING_BYTES", default_value_t = defaults::MAX_POLLING_BYTES)]
    pub max_polling_bytes: u64,

    /// Frames waiting for one slow client; when full the client is closed with 4000
    /// ("reconnect and resume").
    #[arg(long, env = "HERALD_WS_OUTBOUND_QUEUE", default_value_t = defaults::OUTBOUND_QUEUE)]
    pub outbound_queue: usize,

    /// Seconds between server pings.
    #[arg(long, env = "HERALD_WS_PING_INTERVAL_SECS", default_value_t = defaults::PING_INTERVAL_SECS)]
    pub ping_interval_secs: u64,

    /// A client silent this long (no frame, no pong) is dropped. Keep below nginx's
    /// proxy_read_timeout (75 s).
    #[arg(long, env = "HERALD_WS_IDLE_TIMEOUT_SECS", default_value_t = defaults::IDLE_TIMEOUT_SECS)]
    pub idle_timeout_secs: u64,

    /// Most notifications replayed on resume; more → a `refetch` message instead.
    #[arg(long, env = "HERALD_WS_REPLAY_MAX", default_value_t = defaults::REPLAY_MAX)]
    pub replay_max: usize,

    /// Seconds over which a draining gateway closes its clients (1012).
    #[arg(long, env = "HERALD_DRAIN_SECS", default_value_t = defaults::DRAIN_SECS)]
    pub drain_secs: u64,

    /// Seconds without a bus probe coming back (one is published every second) after which the
    /// Redis subscription counts as stalled: /readyz 503, a fresh connection, clients told to
    /// refetch. At least 2.
    #[arg(long, env = "HERALD_BUS_STALL_SECS", default_value_t = defaults::BUS_STALL_SECS)]
    pub bus_stall_secs: u64,

    /// Seconds between presence reports to Redis.
    #[arg(long, env = "HERALD_PRESENCE_INTERVAL_SECS", default_value_t = defaults::PRESENCE_INTERVAL_SECS)]
    pub presence_interval_secs: u64,
}

impl Config {
    /// Every default, for tests and embedding.
    pub fn new(redis_url: &str, api_url: &str, jwt_secret: &str) -> Self {
        Self {
            listen: defaults::LISTEN.parse().expect("valid default address"),
            node_id: None,
            redis_url: Secret::new(redis_url),
            redis_prefix: "herald".to_owned(),
            api_url: api_url.to_owned(),
            jwt: JwtArgs::with_secret(jwt_secret),
            cors: OriginArgs::default(),
            public_url: defaults::PUBLIC_URL.to_owned(),
            max_message_bytes: defaults::MAX_MESSAGE_BYTES,
            max_messages_per_sec: defaults::MAX_MESSAGES_PER_SEC,
            max_connections_per_user: defaults::MAX_CONNECTIONS_PER_USER,
            max_connections: defaults::MAX_CONNECTIONS,
            max_polling_bytes: defaults::MAX_POLLING_BYTES,
            outbound_queue: defaults::OUTBOUND_QUEUE,
            ping_interval_secs: defaults::PING_INTERVAL_SECS,
            idle_timeout_secs: defaults::IDLE_TIMEOUT_SECS,
            replay_max: defaults::REPLAY_MAX,
            drain_secs: defaults::DRAIN_SECS,
            presence_interval_secs: defaults::PRESENCE_INTERVAL_SECS,
            bus_stall_secs: defaults::BUS_STALL_SECS,
        }
    }

    /// The allowed browser origins: the public URL's and CORS_ALLOWED_ORIGINS.
    pub fn origins(&self) -> Result<AllowedOrigins, OriginError> {
        AllowedOrigins::parse(&self.cors.allowed_origins, &self.public_url)
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}
