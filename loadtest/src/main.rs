//! `herald-loadtest`: bounded load scenarios against a running Herald stack. Every scenario
//! mints its own tokens (HERALD_JWT_SECRET), stops by itself, and prints a table plus one JSON
//! line per result (prefixed `RESULT `) for scripts.
//!
//! # Layout
//! - [`stats`]: percentiles over recorded latencies.
//! - [`publish`]: the `publish` scenario (api → Postgres write latency and fan-out throughput).
//! - [`gateway`]: `hold`, `fanout` and `targeted` against a gateway.
//! - [`clients`]: many raw or Socket.IO connections over several source addresses; /proc.
//! - [`spread`]: `fanout --processes`, one audience over several generator processes.
//! - [`smoke`]: every scenario, small, asserting completion and no loss.

mod clients;
mod gateway;
mod inbox;
mod publish;
mod smoke;
mod spread;
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
    /// Inbox reads (first page, unread page, stats) for a user who sees `--size` notifications.
    Inbox(inbox::Args),
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
        /// Events published at once (concurrent requests) per round.
        #[arg(long, default_value_t = 1)]
        burst: usize,
        /// Generator processes sharing the connections (a process here holds ~19.9k sockets);
        /// above 1, each child gets its own source addresses.
        #[arg(long, default_value_t = 1)]
        processes: usize,
    },
    /// One share of a `fanout --processes` run (started by it, not by hand).
    #[command(hide = true)]
    FanoutPart(spread::Part),
    /// Per-user notifications through the api at a fixed rate: publish-to-receive latency.
    Targeted {
        #[command(flatten)]
        target: gateway::Target,
        #[arg(long, default_value_t = 1_000)]
        rate: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Stored notifications, or live events (what the Socket.IO peers offer).
        #[arg(long, value_enum, default_value = "notifications")]
        via: gateway::Via,
    },
    /// One client stops reading while events of 15 KB keep coming: it is cut off, others lose
    /// nothing.
    SlowClient {
        #[command(flatten)]
        target: gateway::Target,
        #[arg(long, default_value_t = 1_200)]
        events: usize,
    },
    /// Kill a gateway: time until every client is back (through nginx) and resumed, and loss.
    ReconnectStorm {
        /// nginx in front of the gateways.
        #[arg(long, default_value = "127.0.0.1:8000")]
        entry: std::net::SocketAddr,
        /// The gateway process to SIGKILL.
        #[arg(long)]
        kill_pid: u32,
        #[arg(long, default_value_t = 1_000)]
        clients: usize,
        #[arg(long, default_value_t = 4)]
        sources: u8,
    },
    /// Every scenario, small, asserting completion and no loss (the test command runs this).
    Smoke(smoke::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (api, secret) = (cli.api.as_str(), &cli.secret);
    match cli.scenario {
        Scenario::Publish(args) => publish::run(api, secret, args).await,
        Scenario::Inbox(args) => inbox::run(api, secret, args).await.map(|_| ()),
        Scenario::Hold { target, hold_secs } => {
            gateway::print("hold", &gateway::hold(secret, &target, hold_secs).await?);
            Ok(())
        }
        Scenario::Fanout {
            target,
            rounds,
            burst,
            processes,
        } => {
            let report = if processes > 1 {
                spread::fanout(api, secret, &target, rounds, burst, processes).await?
            } else {
                gateway::fanout(api, secret, &target, rounds, burst).await?
            };
            gateway::print("fanout", &report);
            Ok(())
        }
        Scenario::FanoutPart(part) => spread::part(secret, part).await,
        Scenario::Targeted {
            target,
            rate,
            seconds,
            via,
        } => {
            gateway::print(
                "targeted",
                &gateway::targeted(api, secret, &target, rate, seconds, via).await?,
            );
            Ok(())
        }
        Scenario::SlowClient { target, events } => {
            gateway::print(
                "slow-client",
                &gateway::slow_client(api, secret, &target, events).await?,
            );
            Ok(())
        }
        Scenario::ReconnectStorm {
            entry,
            kill_pid,
            clients,
            sources,
        } => {
            gateway::print(
                "reconnect-storm",
                &gateway::reconnect_storm(api, secret, entry, kill_pid, clients, sources).await?,
            );
            Ok(())
        }
        Scenario::Smoke(args) => {
            if smoke::run(api, secret, args).await? {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
    }
}
