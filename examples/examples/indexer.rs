//! Indexer: a consumer-group member that builds a subject index (subject → ids of its
//! current assertions, superseded ones removed) in redb, committing offsets only once its
//! writes are durable. Run several with the same group and directory: they split the
//! partitions; stop or kill one and the others take its partitions over.
//!
//! ```sh
//! cargo run -p steme-examples --example indexer -- --topic facts --group indexers --dir ./index --follow
//! cargo run -p steme-examples --example indexer -- --dir ./index --dump      # print the index
//! ```
//!
//! The broker is `STEME_BOOTSTRAP` (default `127.0.0.1:9092`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use steme_examples::indexer::{IndexerConfig, read_index, run_indexer};

#[derive(Debug, Parser)]
#[command(about = "Build a subject index of a topic in redb, as a consumer group member")]
struct Args {
    #[arg(long, default_value = "facts")]
    topic: String,
    #[arg(long, default_value = "indexers")]
    group: String,
    /// Directory of the partition databases (shared by the copies on this machine).
    #[arg(long, default_value = "./steme-index")]
    dir: PathBuf,
    /// Keep running (ctrl-c stops); otherwise stop after --idle-ms without records.
    #[arg(long)]
    follow: bool,
    #[arg(long, default_value_t = 3_000)]
    idle_ms: u64,
    #[arg(long, default_value_t = 10_000)]
    session_timeout_ms: u64,
    /// Static membership: a stable name for this copy.
    #[arg(long)]
    instance_id: Option<String>,
    /// Print the index in the directory (subject, then its ids) and exit.
    #[arg(long)]
    dump: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = async {
        if args.dump {
            for (subject, ids) in read_index(&args.dir)? {
                println!(
                    "{subject}\t{}",
                    ids.into_iter().collect::<Vec<_>>().join(",")
                );
            }
            return Ok(());
        }
        let cfg = IndexerConfig {
            bootstrap: steme_examples::bootstrap(),
            topic: args.topic,
            group: args.group,
            dir: args.dir,
            follow: args.follow,
            idle: Duration::from_millis(args.idle_ms),
            session_timeout: Duration::from_millis(args.session_timeout_ms),
            instance_id: args.instance_id,
        };
        // Ctrl-c: commit, leave the group (the partitions move at once), exit.
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let n = run_indexer(cfg, stop).await?;
        eprintln!("indexer: applied {n} records");
        anyhow::Ok(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("indexer: {e:#}");
            ExitCode::FAILURE
        }
    }
}
