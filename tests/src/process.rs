//! A `steme-broker` process on a loopback ephemeral port, with its own data directory.
//!
//! The broker prints `steme-broker <id> listening on <addr>` on stdout once it serves; the
//! harness waits for that line (with a timeout) to learn the port. Its stderr (the
//! `tracing` log) goes to `broker.log` next to the data directory, and its last lines are
//! printed if a test panics while the broker is up, or if it fails to start.
//!
//! Starting blocks the calling thread until the line arrives (≤ [`START_TIMEOUT`], about
//! 0.1 s in practice); tests use a multi-thread runtime, so this only delays the caller.
//!
//! The process can be killed with SIGKILL ([`BrokerProcess::kill9`]), stopped with SIGTERM
//! ([`BrokerProcess::terminate`]) and started again on the same data directory
//! ([`BrokerProcess::restart`]; it gets a new port). Dropping the handle kills and reaps the
//! process and removes the directory (set `STEME_E2E_KEEP=1` to keep it; `STEME_E2E_LOG` sets
//! the brokers' `STEME_LOG`, `info,openraft=error` by default).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::binaries;

/// How long a broker may take to print its "listening on" line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Broker settings beyond the ones every test passes (node id, listen, data dir).
#[derive(Debug, Clone, Default)]
pub struct BrokerOptions {
    /// Written to `broker.toml` and passed as `--config` (flags still win).
    pub config_toml: Option<String>,
    /// Extra command-line arguments.
    pub args: Vec<String>,
}

impl BrokerOptions {
    /// Quick leader elections (as the in-process broker tests use), so that a restarted
    /// broker serves sooner.
    pub fn fast_elections() -> BrokerOptions {
        BrokerOptions {
            config_toml: Some(
                "heartbeat_interval_ms = 50\n\
                 election_timeout_min_ms = 150\n\
                 election_timeout_max_ms = 300\n"
                    .into(),
            ),
            args: Vec::new(),
        }
    }
}

/// A cluster member's peer plane: the fixed address it listens on for other brokers, and
/// the cluster secret file every member shares.
#[derive(Debug, Clone)]
pub struct PeerPlane {
    pub listen: SocketAddr,
    pub secret_file: PathBuf,
}

/// One broker process and the directory it keeps its data in.
#[derive(Debug)]
pub struct BrokerProcess {
    node_id: u64,
    options: BrokerOptions,
    /// A fixed address to listen on (cluster members keep theirs across restarts, since
    /// their peers know it); `None` for an ephemeral port each start.
    listen: Option<SocketAddr>,
    /// `--peer-listen` and `--cluster-secret-file`, for a cluster member.
    peer_plane: Option<PeerPlane>,
    /// `--peer ID=ADDR` arguments (the other brokers' peer-plane addresses).
    peers: Vec<(u64, String)>,
    /// Holds `data/`, `broker.log` and `broker.toml`; removed on drop.
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    addr: SocketAddr,
    /// The admin listener's address, if the broker printed one (`--admin-listen`).
    admin_addr: Option<SocketAddr>,
    /// How many times the process has been started (for the log).
    starts: u32,
}

impl BrokerProcess {
    /// Starts broker 1 with the broker's default settings in a fresh directory.
    pub fn start() -> anyhow::Result<BrokerProcess> {
        BrokerProcess::start_with(BrokerOptions::default())
    }

    pub fn start_with(options: BrokerOptions) -> anyhow::Result<BrokerProcess> {
        BrokerProcess::start_member(1, None, None, Vec::new(), options)
    }

    /// Starts broker `node_id` of a cluster, listening for clients on `listen` (or an
    /// ephemeral port) and for brokers on its `peer_plane`, and knowing its `peers`.
    pub fn start_member(
        node_id: u64,
        listen: Option<SocketAddr>,
        peer_plane: Option<PeerPlane>,
        peers: Vec<(u64, String)>,
        options: BrokerOptions,
    ) -> anyhow::Result<BrokerProcess> {
        let dir = tempfile::Builder::new()
            .prefix("steme-e2e-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        std::fs::create_dir(dir.path().join("data")).context("cannot create the data dir")?;
        if let Some(toml) = &options.config_toml {
            std::fs::write(dir.path().join("broker.toml"), toml)
                .context("cannot write broker.toml")?;
        }
        let mut broker = BrokerProcess {
            node_id,
            options,
            listen,
            peer_plane,
            peers,
            dir: Some(dir),
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: None,
            starts: 0,
        };
        broker.spawn()?;
        Ok(broker)
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Sends a signal to the running process (SIGSTOP, SIGCONT, ...).
    pub fn signal(&self, signal: libc::c_int) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("the broker is not running")?;
        let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
        // SAFETY: `kill` has no memory-safety preconditions; `pid` is our own child, not yet
        // reaped (we hold its `Child`), so the id cannot have been reused.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid, signal) };
        if rc != 0 {
            bail!(
                "cannot signal the broker: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// The address the broker listens on (changes on restart unless it is fixed).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The peer-plane address, for a cluster member.
    /// The admin listener's address (`/metrics`, `/healthz`, `/readyz`), if the broker
    /// was started with `--admin-listen`.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_plane.as_ref().map(|p| p.listen)
    }

    /// Whether the log shows a panic (a broker must never panic, whatever it is sent).
    pub fn log_shows_panic(&self) -> bool {
        std::fs::read_to_string(self.log_path()).is_ok_and(|l| l.contains("panicked"))
    }

    /// The address as a bootstrap string for the client library and the CLI.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn root(&self) -> &Path {
        self.dir.as_ref().expect("dir lives as long as self").path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root().join("data")
    }

    pub fn log_path(&self) -> PathBuf {
        self.root().join("broker.log")
    }

    /// The last `lines` lines of the broker's log (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Kills the process with SIGKILL (no chance to flush anything) and reaps it.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("cannot kill the broker")?;
            child.wait().context("cannot reap the broker")?;
        }
        Ok(())
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit; returns its status.
    /// Past the timeout the process is killed and this is an error.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        if let Err(e) = self.signal(libc::SIGTERM) {
            let _ = self.kill9();
            return Err(e.context("cannot send SIGTERM"));
        }
        let mut child = self.child.take().context("the broker is not running")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().context("cannot wait for the broker")? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the broker did not exit within {timeout:?} of SIGTERM; log tail:\n{}",
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the broker again on the same data directory (on a new ephemeral port), after
    /// [`kill9`](Self::kill9) or [`terminate`](Self::terminate).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("the broker is still running; kill or terminate it first");
        }
        self.spawn()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = binaries::broker()?;
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("cannot open broker.log")?;
        let mut cmd = Command::new(&bin);
        // Settings come from the flags below only, whatever the caller's environment says.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("STEME_") {
                cmd.env_remove(key);
            }
        }
        let listen = self
            .listen
            .map_or_else(|| "127.0.0.1:0".to_owned(), |a| a.to_string());
        cmd.arg("--node-id")
            .arg(self.node_id.to_string())
            .args(["--listen", &listen, "--data-dir"])
            .arg(self.data_dir())
            .args(&self.options.args)
            .env(
                "STEME_LOG",
                std::env::var("STEME_E2E_LOG").unwrap_or_else(|_| "info,openraft=error".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        for (id, addr) in &self.peers {
            cmd.arg("--peer").arg(format!("{id}={addr}"));
        }
        if let Some(p) = &self.peer_plane {
            cmd.arg("--peer-listen")
                .arg(p.listen.to_string())
                .arg("--cluster-secret-file")
                .arg(&p.secret_file);
        }
        if self.options.config_toml.is_some() {
            cmd.arg("--config").arg(self.root().join("broker.toml"));
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");

        // A thread reads stdout: it reports the admin line (printed first, if any) and the
        // "listening on" line, then keeps draining so that the broker never blocks on a
        // full pipe.
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let last = line.contains(" listening on ");
                if (last || line.contains(" admin on "))
                    && let Some(t) = &tx
                {
                    let _ = t.send(line);
                }
                if last {
                    tx = None;
                }
            }
        });
        let started = Instant::now();
        let mut admin = None;
        let line = loop {
            match rx.recv_timeout(START_TIMEOUT.saturating_sub(started.elapsed())) {
                Ok(line) if line.contains(" admin on http://") => {
                    admin = line
                        .split("http://")
                        .nth(1)
                        .and_then(|rest| rest.split(' ').next())
                        .and_then(|a| a.parse::<SocketAddr>().ok());
                }
                Ok(line) => break Ok(line),
                Err(e) => break Err(e),
            }
        };
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                let status = child.try_wait().ok().flatten();
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "broker did not print its address within {START_TIMEOUT:?} ({e}; exit status {status:?}); log tail:\n{}",
                    self.log_tail(30)
                );
            }
        };
        let addr = line
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .with_context(|| format!("no address in the broker's line {line:?}"))?;
        eprintln!(
            "[harness] broker {} (start #{}) pid {} listening on {addr} after {:?}",
            self.node_id,
            self.starts,
            child.id(),
            started.elapsed()
        );
        self.addr = addr;
        self.admin_addr = admin;
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let running = self.child.is_some();
        let _ = self.kill9();
        if std::thread::panicking() && running {
            eprintln!(
                "[harness] broker log tail ({}):\n{}",
                self.log_path().display(),
                self.log_tail(40)
            );
        }
        if std::env::var_os("STEME_E2E_KEEP").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("[harness] keeping {}", dir.keep().display());
        }
    }
}
