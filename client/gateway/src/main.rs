//! `steme-gateway`: a stateless HTTP gateway to a Steme cluster (see GATEWAY.md).

use clap::Parser;

mod args;

fn main() -> anyhow::Result<()> {
    let _args = args::Args::parse();
    Ok(())
}
