//! The `hls-face` binary: `serve` (default) runs the web app; logging and signals live here.

use anyhow::Context;
use clap::{Parser, Subcommand};
use server::config::Config;
use server::RunningServer;
use std::path::PathBuf;
use tracing_subscriber::EnvFilter;

/// Live webcam face detection streamed back as HLS.
#[derive(Parser)]
#[command(name = "hls-face", version, about)]
struct Cli {
    /// Settings file (default: ./Leptos.toml; env HLS_FACE_CONFIG).
    #[arg(long, global = true, env = "HLS_FACE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the web app (the default).
    Serve,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("server=info,hls_face=info,tower_http=info")),
        )
        .init();
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref()).context("loading settings")?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let server = RunningServer::start(config)
        .await
        .context("starting the server")?;
    tracing::info!("listening on http://{}", server.addr);
    let shutdown = server.shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: ending sessions");
        shutdown.cancel();
    });
    server.wait().await.context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
