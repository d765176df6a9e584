//! The `herald-api` binary: `herald-api` serves; `herald-api mint-token` prints a dev token.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use herald_api::config::Config;
use herald_api::startup::{App, shutdown_signal};
use herald_core::auth::{TokenClaims, mint_hs256};
use herald_core::secret::Secret;

/// Herald's REST api: publish notifications and events, read and change the inbox.
#[derive(Parser)]
#[command(name = "herald-api", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Print an HS256 token signed with HERALD_JWT_SECRET (for local use and scripts).
    MintToken(MintArgs),
}

#[derive(clap::Args)]
struct MintArgs {
    /// User id (`sub`).
    #[arg(long)]
    sub: String,
    /// Comma-separated roles, e.g. `admin,agent`.
    #[arg(long, value_delimiter = ',')]
    roles: Vec<String>,
    /// Space-separated scopes; `publish` allows publishing for anyone.
    #[arg(long)]
    scope: Option<String>,
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    email: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl_secs: u64,
    /// Signing secret.
    #[arg(long, env = "HERALD_JWT_SECRET", hide_env_values = true)]
    secret: Secret,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::MintToken(args)) = cli.command {
        let mut claims =
            TokenClaims::new(args.sub, args.roles, args.scope.as_deref(), args.ttl_secs);
        claims.name = args.name;
        claims.email = args.email;
        println!("{}", mint_hs256(&args.secret, &claims));
        return Ok(());
    }
    herald_core::telemetry::init("info,sqlx=warn");
    let config = cli.config;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let app = App::build(config, listener).await?;
    tracing::info!(addr = %app.local_addr()?, "herald-api listening");
    app.run_until_stopped(shutdown_signal()).await?;
    Ok(())
}
