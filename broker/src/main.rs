//! `steme-broker`: runs one Steme broker.
//!
//! With no flags it listens on `127.0.0.1:9092` and keeps its data under `./steme-data`.
//! Settings come from flags, `STEME_*` environment variables, an optional TOML file
//! (`--config`), then defaults. SIGTERM or ctrl-c shuts it down cleanly: in-flight requests
//! finish, logs are flushed.

use std::process::ExitCode;

use clap::Parser;
use steme_broker::broker::Broker;
use steme_broker::config::{Config, Overrides};
use tokio::net::TcpListener;

#[derive(Debug, Parser)]
#[command(name = "steme-broker", version, about = "Run a Steme broker")]
struct Cli {
    #[command(flatten)]
    overrides: Overrides,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STEME_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::load(&cli.overrides)?;
    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
    let bound = listener.local_addr()?;
    let advertised = cfg
        .advertised_addr
        .clone()
        .unwrap_or_else(|| bound.to_string());
    tracing::info!(node_id = cfg.node_id, listen = %bound, data_dir = %cfg.data_dir.display(), "starting");
    let broker = Broker::start(cfg, advertised).await?;
    // Printed on stdout so scripts and tests can find the port when listening on :0.
    println!("steme-broker {} listening on {bound}", broker.node_id());
    steme_broker::server::run(listener, broker, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "no SIGTERM handler; ctrl-c only");
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown requested");
}
