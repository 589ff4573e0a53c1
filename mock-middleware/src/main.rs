//! Command line of mock-middleware.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "mock-middleware",
    version,
    about = "OX-faithful push receiver with fake APNs/FCM"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the middleware: http-notify receiver, client API and admin listener.
    Serve {
        /// Directory with *.properties, users.yml and mailapp-config.yml.
        #[arg(long)]
        config_dir: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    match Cli::parse().cmd {
        Cmd::Serve { config_dir } => {
            let settings = match mock_middleware::config::Settings::load(&config_dir) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("mock-middleware: {e}");
                    std::process::exit(2);
                }
            };
            let running = mock_middleware::server::start(settings)
                .await
                .context("startup failed")?;
            tokio::signal::ctrl_c()
                .await
                .context("waiting for Ctrl-C")?;
            running.shutdown().await;
        }
    }
    Ok(())
}
