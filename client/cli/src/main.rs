//! `steme`: the operator CLI of a Steme cluster.
//!
//! - `args`: the command line (clap derive) and its value parsers; `args_admin`: those of
//!   the commands that move replicas.
//! - `keys`: `keygen` and reading key files.
//! - `topic`: `topic create|list|describe|delete`.
//! - `produce`: JSON lines in, signed and pipelined, one ack line out per input line.
//! - `sign`: JSON lines in, one signed JSON line out per input line, offline.
//! - `consume`: one JSON line per record (alone, or as a member of a consumer group).
//! - `group`: `group list|describe|reset|delete`.
//! - `replay`: raw batches of an offset range to a file.
//! - `replay_inspect`: reads a replay file back offline, recomputing ids and checking
//!   signatures.
//! - `time`: HLC stamps to RFC 3339 and back (`--from time:…`, `"time"` in JSON).
//! - `output`: `--json` results of commands that change something.
//! - `bench`: produce, consume and end-to-end benchmarks.
//! - `cluster`: `cluster status`, every broker's view of every replica.
//! - `health`: `cluster health`, the cluster's state as one exit code.
//! - `decommission`: `cluster decommission`, retiring a broker and waiting until it is
//!   removed.
//! - `rebalance`: `cluster rebalance`, the planner that spreads replicas and preferred
//!   leaders evenly, and the command that sends its moves.
//! - `partition`: `partition reassign`, moving one partition to other brokers.
//! - `watch`: reading the metadata until a move or a decommission is done.
//!
//! Every command that prints takes `--json` (one JSON object per result, or JSON lines for
//! streams; snake_case keys). Errors are one line on stderr (`steme: error: ...`, causes
//! joined with `: `) and exit status 1; usage errors are clap's, with status 2.

mod acl;
mod add_partitions;
mod args;
mod args_admin;
mod bench;
mod bench_group;
mod cluster;
mod consume;
mod decommission;
mod group;
mod health;
mod keys;
mod output;
mod partition;
mod produce;
mod rebalance;
mod replay;
mod replay_inspect;
mod sign;
use steme_client::json::time;
mod topic;
mod watch;

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("STEME_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("steme: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        // `steme consume ... | head`: the reader went away, which is not our failure.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("steme: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The client settings every command connects with (TLS from the global flags).
static CLIENT: std::sync::OnceLock<steme_client::ClientConfig> = std::sync::OnceLock::new();

pub fn client_config() -> steme_client::ClientConfig {
    CLIENT.get().cloned().unwrap_or_default()
}

pub fn producer_config() -> steme_client::ProducerConfig {
    steme_client::ProducerConfig {
        client: client_config(),
        ..steme_client::ProducerConfig::default()
    }
}

pub fn consumer_config() -> steme_client::ConsumerConfig {
    steme_client::ConsumerConfig {
        client: client_config(),
        ..steme_client::ConsumerConfig::default()
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let bootstrap = cli.bootstrap.join(",");
    let mut config = steme_client::ClientConfig::default();
    if cli.tls_ca.is_some() || cli.tls_cert.is_some() {
        let ca = cli
            .tls_ca
            .as_deref()
            .context("--tls-cert needs --tls-ca (the CA that signed the broker's certificate)")?;
        let tls = steme_client::ClientTls::from_pem_files(
            ca,
            cli.tls_cert.as_deref().zip(cli.tls_key.as_deref()),
        )?;
        config.connection.tls = Some(tls);
    }
    if let Some(path) = &cli.auth_key {
        let key = keys::read_key(path)?;
        config.connection.auth_key = Some(steme_client::connection::AuthKey(key));
    }
    let _ = CLIENT.set(config);
    match cli.command {
        Command::Keygen(a) if a.json => output::keygen_json(&a),
        Command::Keygen(a) => keys::keygen(&a),
        Command::Topic(cmd) => topic::run(&bootstrap, cmd).await,
        Command::Produce(a) => produce::run(&bootstrap, a).await,
        Command::Sign(a) => sign::run(&a),
        Command::Consume(a) => consume::run(&bootstrap, a).await,
        Command::Replay(a) => replay::run(&bootstrap, a).await,
        Command::ReplayInspect(a) => replay_inspect::run(&a),
        Command::Bench(cmd) => bench::run(&bootstrap, cmd).await,
        Command::Cluster(cmd) => cluster::run(&bootstrap, cmd).await,
        Command::Partition(cmd) => partition::run(&bootstrap, cmd).await,
        Command::Group(cmd) => group::run(&bootstrap, cmd).await,
        Command::Acl(cmd) => acl::run(&bootstrap, cmd).await,
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
