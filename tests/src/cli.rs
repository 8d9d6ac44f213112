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

/// A long-running `steme` command (a consumer group member, say) whose stdout and stderr go
/// to files, read while it runs. Killed on drop.
#[derive(Debug)]
pub struct CliProcess {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl CliProcess {
    /// Starts `steme --bootstrap <bootstrap> <args>` (with `STEME_LOG=info`).
    pub fn start(bootstrap: &str, args: &[&str]) -> anyhow::Result<CliProcess> {
        let bin = binaries::cli()?;
        let dir = tempfile::Builder::new()
            .prefix("steme-cli-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let out = std::fs::File::create(dir.path().join("stdout"))?;
        let err = std::fs::File::create(dir.path().join("stderr"))?;
        let mut cmd = std::process::Command::new(&bin);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("STEME_") {
                cmd.env_remove(key);
            }
        }
        let child = cmd
            .arg("--bootstrap")
            .arg(bootstrap)
            .args(args)
            .env("STEME_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(CliProcess { child, dir })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The complete lines printed so far.
    pub fn lines(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.path().join("stdout")).unwrap_or_default();
        let complete = text.rfind('\n').map_or("", |end| &text[..end]);
        complete.lines().map(str::to_owned).collect()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    /// Sends `signal` (SIGKILL, SIGTERM, SIGSTOP, ...).
    pub fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let pid = libc::pid_t::try_from(self.child.id()).context("pid out of range")?;
        // SAFETY: `kill` has no memory-safety preconditions; `pid` is our own child, not yet
        // reaped (we hold its `Child`), so the id cannot have been reused.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid, signal) };
        anyhow::ensure!(
            rc == 0,
            "cannot signal steme: {}",
            std::io::Error::last_os_error()
        );
        Ok(())
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "steme did not exit within {timeout:?}; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for CliProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
