//! `herald-loadtest`: bounded load scenarios against a running Herald stack. Every scenario
//! mints its own tokens (HERALD_JWT_SECRET), stops by itself, and prints a table plus one JSON
//! line per result (prefixed `RESULT `) for scripts.
//!
//! # Layout
//! - [`stats`]: percentiles over recorded latencies.
//! - [`publish`]: the `publish` scenario (api → Postgres write latency and fan-out throughput).
//! - [`gateway`]: `hold`, `fanout` and `targeted` against a gateway.
//! - [`clients`]: many WebSocket connections over several source addresses; /proc readings.

mod clients;
mod gateway;
mod publish;
mod stats;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "herald-loadtest",
    version,
    about = "Bounded load scenarios against Herald"
)]
struct Cli {
    /// Base URL of the api (or of nginx in front of it).
    #[arg(
        long,
        env = "HERALD_API_URL",
        default_value = "http://127.0.0.1:8001",
        global = true
    )]
    api: String,
    /// Secret the stack verifies tokens with.
    #[arg(
        long,
        env = "HERALD_JWT_SECRET",
        hide_env_values = true,
        default_value = "herald-dev-secret-change-me",
        global = true
    )]
    secret: herald_core::secret::Secret,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Publish latency of single-recipient notifications, then fan-out insert throughput of
    /// large-recipient notifications.
    Publish(publish::Args),
    /// Idle connections: connect rate and gateway RSS per connection.
    Hold {
        #[command(flatten)]
        target: gateway::Target,
        /// Seconds to hold the connections before measuring.
        #[arg(long, default_value_t = 5)]
        hold_secs: u64,
    },
    /// One event to a role held by every connection: last-recipient latency, deliveries per
    /// second of gateway CPU.
    Fanout {
        #[command(flatten)]
        target: gateway::Target,
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
    /// Per-user notifications through the api at a fixed rate: publish-to-receive latency.
    Targeted {
        #[command(flatten)]
        target: gateway::Target,
        #[arg(long, default_value_t = 1_000)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.scenario {
        Scenario::Publish(args) => publish::run(&cli.api, &cli.secret, args).await,
        Scenario::Hold { target, hold_secs } => gateway::hold(&cli.secret, target, hold_secs).await,
        Scenario::Fanout { target, rounds } => {
            gateway::fanout(&cli.api, &cli.secret, target, rounds).await
        }
        Scenario::Targeted {
            target,
            rate,
            seconds,
        } => gateway::targeted(&cli.api, &cli.secret, target, rate, seconds).await,
    }
}
