//! `steme-tests`: tier-3 tests — real `steme-broker` processes on loopback ephemeral ports,
//! killed with SIGKILL, stopped with SIGTERM and restarted on their data directories, driven
//! through the `steme-client` library and the `steme` CLI. The tests are in `tests/*.rs`;
//! this library is their harness.
//!
//! - [`binaries`]: finds (and first builds) the `steme-broker` and `steme` executables.
//! - [`process`]: [`BrokerProcess`], one broker process with its own temporary data
//!   directory: start, kill -9, SIGTERM, restart; killed and reaped on drop.
//! - [`workload`]: signed assertions to produce; reading a topic back and checking it
//!   (offsets, HLC order, acks present at their offsets).
//! - [`cli`]: runs the `steme` CLI with a timeout.
//! - [`http`]: a plain GET for the admin listener, and reading Prometheus samples.
//! - [`cluster`]: several brokers on fixed loopback ports, their peer planes authenticated
//!   with a shared secret and optionally linked through cuttable [`proxy`] connections;
//!   replica-by-replica digests of a partition.
//! - [`peer`]: speaking Raft to a broker as a peer (or an attacker) would: an authenticated
//!   peer-plane session with any id and secret, or frames on the client port.
//!
//! Run them with `cargo test -p steme-tests` (the broker and CLI binaries are built on the
//! way). `STEME_E2E_KEEP=1` keeps each broker's directory and log for a post-mortem.
#![deny(unsafe_code)]

pub mod binaries;
pub mod cli;
pub mod cluster;
pub mod dev;
pub mod gateway;
pub mod http;
pub mod peer;
pub mod pki;
pub mod process;
pub mod proxy;
pub mod web;
pub mod workload;

pub use process::{BrokerOptions, BrokerProcess};

/// A name unique to this test process and call, for topics and subjects.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `test` and fails it if it takes longer than `limit` (so a hang is a failure with a
/// message, not a stuck CI job).
pub async fn within<T>(
    limit: std::time::Duration,
    test: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::time::timeout(limit, test)
        .await
        .map_err(|_| anyhow::anyhow!("the test did not finish within {limit:?}"))?
}

/// Polls `check` every 200 ms until it holds, for at most `limit`; fails naming `what`.
pub async fn eventually<F, Fut>(
    limit: std::time::Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = std::time::Instant::now() + limit;
    loop {
        if check().await? {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "not within {limit:?}: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The fenced block of the README between `<!-- NAME:begin -->` and `<!-- NAME:end -->`,
/// without its ```` ```FENCE ```` lines: what a README test runs or compares as written.
pub fn readme_block(name: &str, fence: &str) -> anyhow::Result<String> {
    use anyhow::Context;
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))?;
    let (_, rest) = readme
        .split_once(&format!("<!-- {name}:begin -->"))
        .with_context(|| format!("no {name} block in the README"))?;
    let (block, _) = rest
        .split_once(&format!("<!-- {name}:end -->"))
        .with_context(|| format!("the {name} block has no end"))?;
    let body = block
        .trim()
        .strip_prefix(&format!("```{fence}"))
        .and_then(|s| s.strip_suffix("```"))
        .with_context(|| format!("the {name} block is not one ```{fence} fence"))?;
    Ok(body.trim_start_matches('\n').to_owned())
}
