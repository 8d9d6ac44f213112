//! Running the `steme` CLI as a child process.

use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncWriteExt;

use crate::binaries;

/// What a finished `steme` command left behind.
#[derive(Debug)]
pub struct CliOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// The output, if the command succeeded; otherwise an error quoting its stderr.
    pub fn success(self) -> anyhow::Result<CliOutput> {
        anyhow::ensure!(
            self.status.success(),
            "steme failed ({}): {}",
            self.status,
            self.stderr.trim()
        );
        Ok(self)
    }
}

/// Runs `steme --bootstrap <bootstrap> <args>` with `stdin` as its input; it must finish
/// within `timeout` (it is killed otherwise).
pub async fn steme(
    bootstrap: &str,
    args: &[&str],
    stdin: &str,
    timeout: Duration,
) -> anyhow::Result<CliOutput> {
    let bin = binaries::cli()?;
    let mut cmd = tokio::process::Command::new(&bin);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("STEME_") {
            cmd.env_remove(key);
        }
    }
    cmd.arg("--bootstrap")
        .arg(bootstrap)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let mut input = child.stdin.take().expect("stdin is piped");
    let text = stdin.to_owned();
    // Written from a task so that a command that does not read stdin cannot block us.
    let writer = tokio::spawn(async move {
        let _ = input.write_all(text.as_bytes()).await;
        let _ = input.shutdown().await;
    });
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .with_context(|| format!("steme {args:?} did not finish within {timeout:?}"))?
        .context("cannot wait for steme")?;
    let _ = writer.await;
    Ok(CliOutput {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
