//! The gateway from another language: tests/python/test_gateway.py (Python signing with
//! examples/python/steme_sign.py, posting and reading over HTTP) run against a real
//! `steme-gateway` in front of a real 3-broker cluster, with a key file written here.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, ensure};
use steme_client::keys::{Existing, save_signing_key};
use steme_tests::gateway::GatewaySetup;
use steme_tests::workload::key;

/// How long the Python test may run.
const PYTHON_TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_test_gateway_passes_against_a_real_gateway() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("tests/python/test_gateway.py");
    ensure!(script.is_file(), "{} does not exist", script.display());
    let s = GatewaySetup::plain(1).await?;
    let dir = tempfile::tempdir()?;
    let key_file = dir.path().join("python.key");
    save_signing_key(&key_file, &key(71), Existing::Refuse)?;

    let mut cmd = tokio::process::Command::new("python3");
    cmd.arg(&script)
        .arg("--gateway")
        .arg(s.gateways[0].url())
        .arg("--key")
        .arg(&key_file)
        .args(["--topic", &s.topic])
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().context("cannot start python3")?;
    let out = tokio::time::timeout(PYTHON_TIMEOUT, child.wait_with_output())
        .await
        .with_context(|| format!("test_gateway.py did not finish within {PYTHON_TIMEOUT:?}"))?
        .context("cannot wait for python3")?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprintln!("test_gateway.py stdout:\n{stdout}\nstderr:\n{stderr}");
    s.explain(if out.status.success() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "test_gateway.py failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
            out.status
        ))
    })
}
