//! The `herald-worker` binary: email passes and cleanup until SIGTERM/Ctrl-C.

use anyhow::Context as _;
use clap::Parser;
use herald_worker::config::Config;
use herald_worker::startup::Worker;

/// Herald's worker: email, digests, email-if-unseen, retention cleanup.
#[derive(Parser)]
#[command(name = "herald-worker", version)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Cli::parse().config;
    herald_core::telemetry::init("info,sqlx=warn");
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let worker = Worker::build(&config).await?;
    tracing::info!(addr = %listener.local_addr()?, worker = %worker.outbox.worker_id, smtp = config.smtp_host.is_some(), "herald-worker running");
    worker
        .run_until_stopped(listener, async {
            herald_service::shutdown::signal().await;
            tracing::info!("shutting down: finishing the message in flight");
        })
        .await
}
