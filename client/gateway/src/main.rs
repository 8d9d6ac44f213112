//! `steme-gateway`: a stateless HTTP gateway to a Steme cluster (see GATEWAY.md).
//!
//! ```sh
//! steme-gateway --listen 127.0.0.1:8080 --bootstrap 127.0.0.1:9092,127.0.0.1:9093
//! ```
//!
//! Once it serves, it prints `steme-gateway listening on ADDR` on stdout; logs go to stderr
//! (`STEME_LOG=debug` for more). SIGTERM or ctrl-c stops it: streams end, requests under
//! way finish (10 s at most), and what the producers hold is sent.

use clap::Parser;
use tracing_subscriber::EnvFilter;

mod args;
mod error;
mod identity;
mod metrics;
mod principals;
mod routes;
mod server;
mod state;
mod tls;

use args::{Args, Command};
use state::Gateway;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("STEME_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(Command::Token) = args.command {
        return token();
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let gateway = Gateway::from_args(&args)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::acceptor(cert, key, args.tls_client_ca.as_deref())?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("steme-gateway listening on {addr}");
    tracing::info!(%addr, tls = tls.is_some(), bootstrap = %args.bootstrap, "serving");
    let app = routes::router(gateway.clone());
    let stopping = gateway.clone();
    let stop = async move {
        stop_signal().await;
        tracing::info!("stopping: streams end, requests under way finish");
        stopping.end_streams();
    };
    server::serve(
        listener,
        app,
        tls,
        usize::try_from(args.max_connections)?,
        stop,
    )
    .await;
    gateway.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM or ctrl-c.
async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; ctrl-c still stops");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// `steme-gateway token`: a random bearer token and the line that names it in a
/// principals file.
fn token() -> anyhow::Result<()> {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let token = hex::encode(raw);
    println!("token = {token}");
    println!(
        "token_blake3 = \"{}\"",
        hex::encode(blake3::hash(token.as_bytes()).as_bytes())
    );
    Ok(())
}
