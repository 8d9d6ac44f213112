//! Tail: follow every partition of a topic, verifying each record's signature, and print
//! records as they arrive. Ctrl-c stops it.
//!
//! ```sh
//! cargo run -p steme-examples --example tail -- --topic facts              # new records only
//! cargo run -p steme-examples --example tail -- --topic facts --from earliest
//! ```
//!
//! The broker is `STEME_BOOTSTRAP` (default `127.0.0.1:9092`). Each line shows
//! `partition@offset`, the HLC, the start of the record's id, then the assertion.

use std::process::ExitCode;

use anyhow::{Context, bail};
use steme_client::Position;

fn args() -> anyhow::Result<(String, Position)> {
    let (mut topic, mut from) = ("facts".to_owned(), Position::Latest);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--topic" => topic = it.next().context("--topic needs a name")?,
            "--from" => {
                from = match it.next().as_deref() {
                    Some("earliest") => Position::Earliest,
                    Some("latest") => Position::Latest,
                    other => bail!("--from takes earliest or latest, not {other:?}"),
                }
            }
            "-h" | "--help" => {
                println!("usage: tail [--topic NAME] [--from earliest|latest]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok((topic, from))
}

async fn run() -> anyhow::Result<()> {
    let (topic, from) = args()?;
    let bootstrap = steme_examples::bootstrap();
    eprintln!("tailing {topic:?} at {bootstrap} from {from:?}; ctrl-c to stop");
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let mut out = std::io::stdout();
    let n = steme_examples::tail(&bootstrap, &topic, from, None, &mut out, stop).await?;
    eprintln!("\n{n} records");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tail: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
