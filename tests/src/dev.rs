//! `steme-broker dev-cluster` (the README's first command) as a real process: started on a
//! data directory with kernel-chosen ports, killed and reaped on drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::binaries;

/// How long `dev-cluster` may take to print that it is up.
const UP_WITHIN: Duration = Duration::from_secs(30);

/// A running `steme-broker dev-cluster`.
#[derive(Debug)]
pub struct DevCluster {
    child: Option<Child>,
    /// Each broker's admin listener, as printed.
    admin: Vec<std::net::SocketAddr>,
}

impl DevCluster {
    /// Starts `dev-cluster --nodes <nodes> --base-port 0` with its data in `dir`, and waits
    /// for its "dev cluster of N up; bootstrap: LIST" line. Returns it and the list.
    /// Blocks the calling thread (≤ 30 s).
    pub fn start(dir: &Path, nodes: u32) -> anyhow::Result<(DevCluster, String)> {
        let mut child = Command::new(binaries::broker()?)
            .arg("--data-dir")
            .arg(dir)
            .args([
                "dev-cluster",
                "--nodes",
                &nodes.to_string(),
                "--base-port",
                "0",
            ])
            .env("STEME_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start dev-cluster")?;
        let stdout = child.stdout.take().context("stdout is piped")?;
        let mut cluster = DevCluster {
            child: Some(child),
            admin: Vec::new(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let up = format!("dev cluster of {nodes} up; bootstrap: ");
        std::thread::spawn(move || {
            let mut admin = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .split(" admin on http://")
                    .nth(1)
                    .and_then(|rest| rest.split(' ').next())
                    .and_then(|a| a.parse().ok())
                {
                    admin.push(addr);
                }
                if let Some(list) = line.strip_prefix(&up) {
                    let _ = tx.send((list.to_owned(), std::mem::take(&mut admin)));
                }
            }
        });
        let (bootstrap, admin) = rx
            .recv_timeout(UP_WITHIN)
            .context("dev-cluster did not come up")?;
        cluster.admin = admin;
        Ok((cluster, bootstrap))
    }

    /// Each broker's admin listener (`/metrics`, `/healthz`, `/readyz`), as printed.
    pub fn admin_addrs(&self) -> &[std::net::SocketAddr] {
        &self.admin
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM and waits up to `timeout` for it to exit (killed past it: an error).
    pub fn terminate(self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.stop(libc::SIGTERM, timeout).map(|(status, _)| status)
    }

    /// Sends `signal` (SIGTERM, or SIGINT as ctrl-c does) and waits up to `timeout` for the
    /// process to exit: its status and how long it took (killed past it: an error).
    pub fn stop(
        mut self,
        signal: libc::c_int,
        timeout: Duration,
    ) -> anyhow::Result<(ExitStatus, Duration)> {
        let mut child = self.child.take().context("already stopped")?;
        let pid = libc::pid_t::try_from(child.id())?;
        let sent = Instant::now();
        // SAFETY: `kill` has no memory-safety preconditions; `pid` is our own child, not
        // yet reaped (we hold its `Child`), so the id cannot have been reused.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(pid, signal);
        }
        let deadline = sent + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok((status, sent.elapsed()));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("dev-cluster did not stop within {timeout:?} of signal {signal}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for DevCluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
