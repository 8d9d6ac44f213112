//! Producer: sign assertions and produce them pipelined, printing one JSON ack per line.
//!
//! ```sh
//! # N generated assertions:
//! cargo run -p steme-examples --example producer -- --topic facts --count 10000
//! # or JSON lines on stdin (the `steme produce` format):
//! echo '{"subject":"urn:person:ada","predicate":"born","object":1815,"source":"wiki"}' \
//!   | cargo run -p steme-examples --example producer -- --topic facts
//! ```
//!
//! The broker is `STEME_BOOTSTRAP` (default `127.0.0.1:9092`); the topic is created with 4
//! partitions if missing. Assertions are signed with the key in `--key FILE` (a key file as
//! `steme keygen` writes it, read with `steme_client::keys::load_signing_key`), or with a
//! fresh key each run. A summary goes to stderr.

use std::io::BufRead;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use steme_client::{Admin, ClientConfig, Producer, ProducerConfig};
use steme_examples::{
    bootstrap, ensure_topic, explain, generated, parse_line, produce_lines, random_key,
};

struct Args {
    topic: String,
    count: Option<usize>,
    key: Option<std::path::PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut out = Args {
        topic: "facts".into(),
        count: None,
        key: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--topic" => out.topic = it.next().context("--topic needs a name")?,
            "--key" => out.key = Some(it.next().context("--key needs a file")?.into()),
            "--count" => {
                out.count = Some(
                    it.next()
                        .context("--count needs a number")?
                        .parse()
                        .context("--count needs a number")?,
                )
            }
            "-h" | "--help" => {
                println!(
                    "usage: producer [--topic NAME] [--count N] [--key FILE]   (no --count: JSON lines on stdin)"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(out)
}

async fn run() -> anyhow::Result<()> {
    let args = args()?;
    let bootstrap = bootstrap();
    let admin = Admin::connect(&bootstrap, ClientConfig::default())
        .await
        .map_err(|e| explain(&bootstrap, e))?;
    ensure_topic(&admin, &args.topic, 4).await?;
    let producer = Producer::connect(&bootstrap, &args.topic, ProducerConfig::default()).await?;
    let key = match &args.key {
        Some(path) => steme_client::keys::load_signing_key(path)?,
        None => random_key()?,
    };
    let started = Instant::now();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let (new, dup) = match args.count {
        Some(n) => {
            let run = format!("{}", steme_examples::now_ms());
            let input = generated(n, &run).into_iter().map(Ok);
            produce_lines(&producer, &key, input, &mut out).await?
        }
        None => {
            // Blank lines are skipped; anything else must parse.
            let stdin = std::io::stdin().lock();
            let input = stdin
                .lines()
                .filter(|l| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
                .map(|l| parse_line(&l?));
            produce_lines(&producer, &key, input, &mut out).await?
        }
    };
    producer.close().await?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{new} new, {dup} duplicate in {secs:.2}s ({:.0} records/s)",
        (new + dup) as f64 / secs.max(1e-9)
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("producer: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
