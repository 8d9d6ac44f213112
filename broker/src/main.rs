//! `steme-broker`: runs one Steme broker, or (`dev-cluster`) a local cluster of several.
//!
//! With no flags it listens on `127.0.0.1:9092` and keeps its data under `./steme-data`.
//! A cluster member also listens for other brokers on its peer plane (`--peer-listen`),
//! authenticated with the cluster secret (`--cluster-secret-file`).
//! `steme-broker dev-cluster --nodes 3` runs three brokers in one process, for clients on
//! `127.0.0.1:9092..9094`, with data under `./steme-data/node-<id>`, each knowing the others'
//! peer planes (free loopback ports) and sharing a secret made in `./steme-data/cluster.secret`.
//! One process per data directory: a broker (or a dev cluster) refuses to start on a data
//! directory another process has locked, and names that process's pid.
//! Settings come from flags, `STEME_*` environment variables, an optional TOML file
//! (`--config`; `broker/steme.toml` is a commented sample), then defaults;
//! `--print-config` prints the result. SIGTERM or ctrl-c shuts it down cleanly, within
//! moments: in-flight requests finish, long polls answer, logs are flushed.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use steme_broker::config::{Config, Overrides, Peer};
use steme_broker::data_dir::DataDirLock;
use steme_broker::node::{Advertised, Broker};
use steme_broker::peer;
use steme_broker::peer::auth::ClusterSecret;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

#[derive(Debug, Parser)]
#[command(name = "steme-broker", version, about = "Run a Steme broker")]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Print the effective configuration (defaults, file, environment and flags, as TOML)
    /// and exit.
    #[arg(long)]
    print_config: bool,
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
        /// The first broker's admin HTTP port (`/metrics`, `/healthz`, `/readyz`); the
        /// others follow it (0: ephemeral ports, printed; the default with `--base-port 0`).
        #[arg(long, default_value_t = 9644)]
        admin_base_port: u16,
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
    let outcome = runtime.block_on(run(cli));
    let stopping = std::time::Instant::now();
    // Every log is flushed by now; do not wait long for stray blocking tasks.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    tracing::debug!(took = ?stopping.elapsed(), "runtime stopped");
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(Sub::DevCluster {
        nodes,
        base_port,
        admin_base_port,
    }) = cli.command
    {
        let admin_base_port = if base_port == 0 { 0 } else { admin_base_port };
        return dev_cluster(&cli.overrides, nodes, base_port, admin_base_port).await;
    }
    let cfg = Config::load(&cli.overrides)?;
    if cli.print_config {
        print!("{}", cfg.to_toml()?);
        return Ok(());
    }
    let client = bind(cfg.listen).await?;
    let peer = match cfg.peer_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let admin = match cfg.admin_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    tracing::info!(node_id = cfg.node_id, listen = %cfg.listen, peer_listen = ?cfg.peer_listen, data_dir = %cfg.data_dir.display(), "starting");
    let broker = start(cfg, &client, peer.as_ref(), admin.as_ref()).await?;
    serve(
        broker,
        Planes {
            client,
            peer,
            admin,
        },
        shutdown_signal(),
    )
    .await
}

/// A broker's bound listeners.
struct Planes {
    client: TcpListener,
    peer: Option<TcpListener>,
    admin: Option<TcpListener>,
}

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}

/// Starts a broker whose planes are bound, and prints where they are (on stdout, so
/// scripts and tests find ports bound as `:0`; the client line last).
async fn start(
    cfg: Config,
    client: &TcpListener,
    peer: Option<&TcpListener>,
    admin: Option<&TcpListener>,
) -> anyhow::Result<Arc<Broker>> {
    let client_addr = client.local_addr()?;
    let peer_addr = peer.map(TcpListener::local_addr).transpose()?;
    let advertised = Advertised {
        client: cfg
            .advertised_addr
            .clone()
            .unwrap_or_else(|| client_addr.to_string()),
        peer: cfg
            .peer_advertised_addr
            .clone()
            .or_else(|| peer_addr.map(|a| a.to_string())),
    };
    let broker = Broker::start(cfg, advertised).await?;
    let id = broker.node_id();
    if let Some(p) = peer_addr {
        println!("steme-broker {id} peer plane on {p}");
    }
    if let Some(a) = admin.map(TcpListener::local_addr).transpose()? {
        println!("steme-broker {id} admin on http://{a} (/metrics, /healthz, /readyz)");
    }
    println!("steme-broker {id} listening on {client_addr}");
    Ok(broker)
}

/// Serves both planes (and the admin listener) until `shutdown`: the client plane drains
/// and stops the broker, then the peer plane and the admin listener close (peers'
/// replication keeps flowing while clients drain).
async fn serve(
    broker: Arc<Broker>,
    planes: Planes,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let Planes {
        client,
        peer,
        admin,
    } = planes;
    let (admin_stop, admin_stopped) = oneshot::channel::<()>();
    let admin_task = admin.map(|listener| {
        tokio::spawn(steme_broker::admin::run(listener, broker.clone(), async {
            let _ = admin_stopped.await;
        }))
    });
    let (peer_stop, peer_stopped) = oneshot::channel::<()>();
    let peer_task = match (peer, broker.cluster_secret().cloned()) {
        (Some(listener), Some(secret)) => Some(tokio::spawn(peer::listener::run(
            listener,
            broker.clone(),
            secret,
            broker.config().max_frame_bytes,
            async {
                let _ = peer_stopped.await;
            },
        ))),
        (Some(_), None) => anyhow::bail!("--peer-listen needs --cluster-secret-file"),
        (None, _) => None,
    };
    let served = steme_broker::server::run(client, broker, shutdown).await;
    let _ = peer_stop.send(());
    let _ = admin_stop.send(());
    if let Some(t) = peer_task {
        t.await??;
    }
    if let Some(t) = admin_task {
        t.await??;
    }
    Ok(served?)
}

async fn dev_cluster(
    overrides: &Overrides,
    nodes: u64,
    base_port: u16,
    admin_base_port: u16,
) -> anyhow::Result<()> {
    anyhow::ensure!((1..=64).contains(&nodes), "--nodes must be 1 to 64");
    let base = Config::load(overrides)?;
    // The brokers authenticate each other with a secret kept in the data directory, made
    // on first start (or the one given).
    std::fs::create_dir_all(&base.data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", base.data_dir.display()))?;
    // A second dev-cluster on this directory stops here, before it binds a port or touches
    // the secret; each broker also locks its own `node-<id>` directory.
    let _base_lock = DataDirLock::acquire(&base.data_dir)?;
    let secret_file = match &base.cluster_secret_file {
        Some(f) => f.clone(),
        None => {
            let f = base.data_dir.join("cluster.secret");
            ClusterSecret::load_or_generate(&f)?;
            f
        }
    };
    // Bind every listener first, so that each broker knows every address. Clients use
    // consecutive ports; the peer planes take any free loopback ports.
    let port = |base: u16, i: u64| -> anyhow::Result<u16> {
        if base == 0 {
            return Ok(0);
        }
        base.checked_add(i as u16)
            .ok_or_else(|| anyhow::anyhow!("port {base} + {i} is out of range"))
    };
    let mut planes = Vec::new();
    for i in 0..nodes {
        let ip = base.listen.ip();
        planes.push(Planes {
            client: bind(SocketAddr::new(ip, port(base_port, i)?)).await?,
            peer: Some(bind(SocketAddr::new(ip, 0)).await?),
            admin: Some(bind(SocketAddr::new(ip, port(admin_base_port, i)?)).await?),
        });
    }
    let peer_addrs: Vec<SocketAddr> = planes
        .iter()
        .filter_map(|p| p.peer.as_ref().map(TcpListener::local_addr))
        .collect::<Result<_, _>>()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = Vec::new();
    let mut bootstrap = Vec::new();
    for (i, planes) in planes.into_iter().enumerate() {
        let id = i as u64 + 1;
        let cfg = Config {
            node_id: id,
            listen: planes.client.local_addr()?,
            admin_listen: planes
                .admin
                .as_ref()
                .map(TcpListener::local_addr)
                .transpose()?,
            advertised_addr: None,
            peer_listen: Some(peer_addrs[i]),
            peer_advertised_addr: None,
            cluster_secret_file: Some(secret_file.clone()),
            data_dir: base.data_dir.join(format!("node-{id}")),
            peers: (0..nodes as usize)
                .filter(|&j| j != i)
                .map(|j| Peer {
                    id: j as u64 + 1,
                    addr: peer_addrs[j].to_string(),
                })
                .collect(),
            ..base.clone()
        };
        bootstrap.push(planes.client.local_addr()?.to_string());
        let broker = start(
            cfg,
            &planes.client,
            planes.peer.as_ref(),
            planes.admin.as_ref(),
        )
        .await?;
        let mut stop = stop_rx.clone();
        servers.push(tokio::spawn(serve(broker, planes, async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }
    println!(
        "dev cluster of {nodes} up; bootstrap: {}",
        bootstrap.join(",")
    );
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
