//! The README's secure deployment, run as it is written: the block between its
//! `secure-deployment` markers, with bash, in a fresh directory, on a free loopback port.
//! openssl makes the certificates; the broker runs with TLS, required authentication and
//! authorization; the operator (a client certificate, superuser) creates a topic with a
//! signer allow-list and grants a key producer `produce`; the producer produces over TLS,
//! and is denied what it was not granted.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, ensure};
use steme_tests::{binaries, readme_block, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_secure_deployment_runs_as_written() -> anyhow::Result<()> {
    let script = readme_block("secure-deployment", "sh")?;
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut path =
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).collect::<Vec<_>>();
    for bin in [binaries::broker()?, binaries::cli()?] {
        path.insert(
            0,
            bin.parent().context("a binary in a directory")?.to_owned(),
        );
    }
    let mut cmd = tokio::process::Command::new("bash");
    // The broker started in the background is stopped however the script ends.
    cmd.arg("-c")
        .arg(format!("trap 'kill $(jobs -p) 2>/dev/null' EXIT\n{script}"))
        .current_dir(dir.path())
        .env("PATH", std::env::join_paths(path)?)
        .env("STEME_LISTEN", &addr)
        .env("STEME_BOOTSTRAP", &addr)
        .env("STEME_DATA_DIR", dir.path().join("data"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = within(Duration::from_secs(120), async { Ok(cmd.output().await?) }).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let public = std::fs::read_to_string(dir.path().join("producer.key"))
        .context("steme keygen wrote no producer.key")?;
    ensure!(!public.trim().is_empty());
    // The producer's record was acknowledged ...
    ensure!(
        stdout.contains("\"duplicate\":false"),
        "no acknowledgement:\n{stdout}\n{stderr}"
    );
    // ... the ACL was listed ...
    ensure!(
        stdout
            .lines()
            .any(|l| l.starts_with("key:") && l.contains("topic:facts") && l.ends_with("produce")),
        "no ACL listed:\n{stdout}"
    );
    // ... and reading back was denied, naming the producer's key principal.
    ensure!(
        stderr.contains("authorization denied: key:")
            && stderr.contains("may not consume from topic:facts"),
        "no denial:\n{stderr}"
    );
    ensure!(!out.status.success(), "the denied consume exited 0");
    Ok(())
}
