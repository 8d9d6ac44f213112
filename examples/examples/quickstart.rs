//! Quickstart: produce a few signed assertions — one superseding another — and read them
//! back.
//!
//! ```sh
//! cargo run --release -p steme-broker                      # terminal 1: a broker with defaults
//! cargo run -p steme-examples --example quickstart         # terminal 2
//! ```
//!
//! It connects to `STEME_BOOTSTRAP` (default `127.0.0.1:9092`), creates the topic
//! `quickstart` (4 partitions) if it is missing, signs four assertions with a fresh
//! Ed25519 key, produces them, then reads them back with signatures verified. Run it
//! twice: the second run's assertions are new facts, since their signer differs.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let bootstrap = steme_examples::bootstrap();
    let mut out = std::io::stdout();
    match steme_examples::quickstart(&bootstrap, "quickstart", &mut out).await {
        Ok(report) => {
            println!(
                "done: {} assertions produced to {:?} and read back",
                report.produced.len(),
                report.topic
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("quickstart: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
