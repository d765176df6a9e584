//! The `herald-gateway` binary: serves WebSocket clients until SIGTERM/Ctrl-C, then drains.

use anyhow::Context as _;
use clap::Parser;
use herald_gateway::config::Config;
use herald_gateway::startup::Gateway;

/// Herald's WebSocket gateway.
#[derive(Parser)]
#[command(name = "herald-gateway", version)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Cli::parse().config;
    herald_core::telemetry::init("info");
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let gateway = Gateway::build(config, listener).await?;
    tracing::info!(addr = %gateway.local_addr()?, node = gateway.node_id(), "herald-gateway listening");
    gateway
        .run_until_stopped(async {
            herald_service::shutdown::signal().await;
            tracing::info!("shutting down: draining");
        })
        .await?;
    Ok(())
}
