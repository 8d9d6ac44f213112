//! `steme-broker`: runs one Steme broker, or (`dev-cluster`) a local cluster of several.
//!
//! With no flags it listens on `127.0.0.1:9092` and keeps its data under `./steme-data`.
//! `steme-broker dev-cluster --nodes 3` runs three brokers in one process on
//! `127.0.0.1:9092..9094`, with data under `./steme-data/node-<id>`, each knowing the others.
//! Settings come from flags, `STEME_*` environment variables, an optional TOML file
//! (`--config`), then defaults. SIGTERM or ctrl-c shuts it down cleanly: in-flight requests
//! finish, logs are flushed.

use std::process::ExitCode;

use std::net::SocketAddr;

use clap::{Parser, Subcommand};
use steme_broker::config::{Config, Overrides, Peer};
use steme_broker::node::Broker;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(name = "steme-broker", version, about = "Run a Steme broker")]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Debug, Subcommand)]
enum Sub {
    /// Run a local cluster in this process: N brokers on consecutive loopback ports, each
    /// with its own data directory under the data dir (`node-<id>`).
    DevCluster {
        /// How many brokers.
        #[arg(long, default_value_t = 3)]
        nodes: u64,
        /// The first broker's port; the others follow it (0: ephemeral ports, printed).
        #[arg(long, default_value_t = 9092)]
        base_port: u16,
    },
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
    if let Some(Sub::DevCluster { nodes, base_port }) = cli.command {
        return dev_cluster(&cli.overrides, nodes, base_port).await;
    }
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

async fn dev_cluster(overrides: &Overrides, nodes: u64, base_port: u16) -> anyhow::Result<()> {
    anyhow::ensure!((1..=64).contains(&nodes), "--nodes must be 1 to 64");
    let base = Config::load(overrides)?;
    // Bind every listener first, so that each broker knows every address.
    let mut listeners = Vec::new();
    for i in 0..nodes {
        let port = if base_port == 0 {
            0
        } else {
            base_port
                .checked_add(i as u16)
                .ok_or_else(|| anyhow::anyhow!("port {base_port} + {i} is out of range"))?
        };
        let addr = SocketAddr::new(base.listen.ip(), port);
        let l = TcpListener::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
        listeners.push(l);
    }
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<Result<_, _>>()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let id = i as u64 + 1;
        let cfg = Config {
            node_id: id,
            listen: addrs[i],
            advertised_addr: None,
            data_dir: base.data_dir.join(format!("node-{id}")),
            peers: (0..nodes as usize)
                .filter(|&j| j != i)
                .map(|j| Peer {
                    id: j as u64 + 1,
                    addr: addrs[j].to_string(),
                })
                .collect(),
            ..base.clone()
        };
        let broker = Broker::start(cfg, addrs[i].to_string()).await?;
        println!("steme-broker {id} listening on {}", addrs[i]);
        let mut stop = stop_rx.clone();
        servers.push(tokio::spawn(steme_broker::server::run(
            listener,
            broker,
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        )));
    }
    let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    println!("dev cluster of {nodes} up; bootstrap: {}", list.join(","));
    shutdown_signal().await;
    let _ = stop_tx.send(true);
    for s in servers {
        s.await??;
    }
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
