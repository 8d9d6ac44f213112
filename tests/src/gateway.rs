//! A `steme-gateway` process on a loopback ephemeral port, and the HTTP it is spoken to with.
//!
//! - [`GatewayProcess`]: started like a broker ([`crate::process`]): it prints
//!   `steme-gateway listening on <addr>` on stdout once it serves, which is awaited (with a
//!   timeout) to learn the port; its stderr goes to `gateway.log` in its own temporary
//!   directory, whose tail is printed if a test panics while it is up and is added to a
//!   failing test's error by [`GatewayProcess::explain`]. Dropping it kills and reaps it.
//! - The HTTP client of [`crate::web`] (re-exported here): [`request`], [`post`], [`get`],
//!   [`EventStream`], [`curl`].
//! - [`GatewaySetup`]: 3 brokers, a topic of [`PARTITIONS`] partitions with 3 replicas,
//!   and gateways in front of them; [`post_until_stored`] posts as a careful client does.
//! - [`Principal`]: a caller of a gateway run with `--principals`: its bearer token, its
//!   broker key, its entry in the principals file.
//! - The JSON the gateway speaks: bodies of signed assertions ([`json_array`],
//!   [`json_lines`]), acks read back as [`steme_client::json::AckLine`], records read back
//!   into the [`SignedAssertion`] they carry ([`signed_of_record`]).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use hyper::{Method, StatusCode};
use steme_client::json::AckLine;
use steme_client::keys::{Existing, save_signing_key};
use steme_client::{
    Ack, Admin, Assertion, ClientConfig, SignedAssertion, SigningKey, TopicOptions,
};
use steme_protocol::messages::authenticate::key_principal;
use steme_protocol::partition_for;

pub use crate::web::*;

use crate::cluster::{Cluster, ClusterOptions};
use crate::workload::{assertions, key, sign_all};
use crate::{binaries, eventually, unique};

/// How long the gateway may take to print its "listening on" line.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Partitions of a [`GatewaySetup`]'s topic.
pub const PARTITIONS: u32 = 3;

/// One gateway process and the directory holding its log.
#[derive(Debug)]
pub struct GatewayProcess {
    dir: Option<tempfile::TempDir>,
    child: Option<Child>,
    addr: SocketAddr,
}

impl GatewayProcess {
    /// Starts `steme-gateway --listen 127.0.0.1:0 --bootstrap <bootstrap> <extra_args>` and
    /// waits for its "listening on" line. Blocks the calling thread until then (call it from
    /// `tokio::task::block_in_place` on a multi-thread runtime).
    pub fn start(bootstrap: &str, extra_args: &[&str]) -> anyhow::Result<GatewayProcess> {
        let bin = binaries::gateway()?;
        let dir = tempfile::Builder::new()
            .prefix("steme-gateway-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let log_path = dir.path().join("gateway.log");
        let log = std::fs::File::create(&log_path).context("cannot create gateway.log")?;
        let mut cmd = Command::new(&bin);
        // Settings come from the flags only, whatever the caller's environment says.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("STEME_") {
                cmd.env_remove(key);
            }
        }
        cmd.args(["--listen", "127.0.0.1:0", "--bootstrap", bootstrap])
            .args(extra_args)
            .env("STEME_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        // A thread reports the "listening on" line, then drains stdout so that the gateway
        // never blocks on a full pipe.
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains(" listening on ")
                    && let Some(t) = tx.take()
                {
                    let _ = t.send(line);
                }
            }
        });
        let started = Instant::now();
        let mut gateway = GatewayProcess {
            dir: Some(dir),
            child: Some(child),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let status = gateway.child.as_mut().map(Child::try_wait);
                let _ = gateway.kill9();
                bail!(
                    "the gateway did not print its address within {START_TIMEOUT:?} ({e}; exit status {status:?}); log tail:\n{}",
                    gateway.log_tail(30)
                );
            }
        };
        gateway.addr = line
            .rsplit(' ')
            .next()
            .and_then(|a| a.trim_start_matches("http://").parse().ok())
            .with_context(|| format!("no address in the gateway's line {line:?}"))?;
        eprintln!(
            "[harness] gateway pid {} listening on {} after {:?}",
            gateway.pid().unwrap_or(0),
            gateway.addr,
            started.elapsed()
        );
        Ok(gateway)
    }

    /// The address it serves HTTP on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .expect("dir lives as long as self")
            .path()
            .join("gateway.log")
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the log shows a panic.
    pub fn log_shows_panic(&self) -> bool {
        std::fs::read_to_string(self.log_path()).is_ok_and(|l| l.contains("panicked"))
    }

    /// `result`, with this gateway's log tail added to an error.
    pub fn explain<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        result.with_context(|| {
            format!(
                "gateway {} log tail ({}):\n{}",
                self.addr,
                self.log_path().display(),
                self.log_tail(30)
            )
        })
    }

    /// Sends SIGTERM and waits up to `timeout` for the process to exit; returns its status.
    /// Past the timeout the process is killed and this is an error.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("the gateway is not running")?;
        let pid = libc::pid_t::try_from(child.id()).context("a pid")?;
        // SAFETY: kill(2) on our own child, which is not reaped yet.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        if rc != 0 {
            let _ = child.kill();
            let _ = child.wait();
            bail!("cannot send SIGTERM to the gateway");
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().context("cannot wait for the gateway")? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!(
            "the gateway did not exit within {timeout:?} of SIGTERM; log tail:\n{}",
            self.log_tail(30)
        )
    }

    /// Kills the process with SIGKILL and reaps it.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("cannot kill the gateway")?;
            child.wait().context("cannot reap the gateway")?;
        }
        Ok(())
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let running = self.child.is_some();
        let _ = self.kill9();
        if std::thread::panicking() && running {
            eprintln!(
                "[harness] gateway log tail ({}):\n{}",
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

/// Signed assertions as one JSON array, as `POST …/assertions` takes them.
pub fn json_array(records: &[SignedAssertion]) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec(records)?)
}

/// Signed assertions as JSON lines.
pub fn json_lines(records: &[SignedAssertion]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    for r in records {
        serde_json::to_writer(&mut out, r)?;
        out.push(b'\n');
    }
    Ok(out)
}

/// The acks of a 200 answer to a post: a JSON array if `array`, else JSON lines.
pub fn acks_of(reply: &Reply, array: bool) -> anyhow::Result<Vec<AckLine>> {
    ensure!(reply.status == StatusCode::OK, "the post failed: {reply}");
    let values = if array {
        match reply.json()? {
            serde_json::Value::Array(v) => v,
            other => bail!("expected a JSON array of acks, got {other}"),
        }
    } else {
        reply.json_lines()?
    };
    values
        .into_iter()
        .map(|v| serde_json::from_value(v.clone()).with_context(|| format!("not an ack: {v}")))
        .collect()
}

/// An ack as the client library's [`Ack`].
pub fn ack_of(line: &AckLine) -> Ack {
    Ack {
        id: line.id,
        partition: line.partition,
        offset: line.offset,
        hlc: line.stamp.hlc,
        duplicate: line.duplicate,
    }
}

/// The place fields a record line adds to a signed assertion.
pub const PLACE_FIELDS: [&str; 5] = ["partition", "offset", "hlc", "time", "logical"];

/// The signed assertion a record line carries (its place fields removed); deserializing
/// re-encodes the fields and checks the id.
pub fn signed_of_record(record: &serde_json::Value) -> anyhow::Result<SignedAssertion> {
    let mut v = record.clone();
    let map = v
        .as_object_mut()
        .with_context(|| format!("a record is not an object: {record}"))?;
    for f in PLACE_FIELDS {
        map.remove(f);
    }
    serde_json::from_value(v).with_context(|| format!("not a signed assertion: {record}"))
}

/// Every record of `topic`/`partition` the gateway at `addr` serves, from `earliest` to the
/// high watermark, by `GET …/records` pages of `page` records (at most 10,000 pages).
pub async fn read_partition(
    addr: SocketAddr,
    topic: &str,
    partition: u32,
    page: u64,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    let mut from = "earliest".to_owned();
    for _ in 0..10_000 {
        let path =
            format!("/v1/topics/{topic}/partitions/{partition}/records?from={from}&max={page}");
        let reply = get(addr, &path, &[]).await?.expect(StatusCode::OK)?;
        let next = reply.header_u64("steme-next-offset")?;
        let hwm = reply.header_u64("steme-high-watermark")?;
        out.extend(reply.json_lines()?);
        if next >= hwm {
            return Ok(out);
        }
        from = next.to_string();
    }
    bail!("{topic}/{partition}: not read to its end in 10,000 pages")
}

/// A 3-broker cluster, a topic of [`PARTITIONS`] partitions with 3 replicas each, and
/// gateways in front of it.
pub struct GatewaySetup {
    pub cluster: Cluster,
    pub topic: String,
    pub gateways: Vec<GatewayProcess>,
}

impl GatewaySetup {
    /// Brokers with `broker_args`, the topic created through `admin` (the credentials it
    /// needs), then one gateway per entry of `gateways`, each with those extra arguments.
    pub async fn start(
        broker_args: &[&str],
        admin: ClientConfig,
        gateways: &[&[&str]],
    ) -> anyhow::Result<GatewaySetup> {
        let mut options = ClusterOptions::new(3);
        options.broker.args = broker_args.iter().map(|a| a.to_string()).collect();
        let cluster = Cluster::start(options).await?;
        let topic = unique("gw");
        let admin = Admin::connect(&cluster.bootstrap(), admin).await?;
        let topic_options = TopicOptions {
            replication_factor: 3,
            ..TopicOptions::default()
        };
        admin
            .create_topic(&topic, PARTITIONS, topic_options)
            .await
            .with_context(|| format!("cannot create {topic}"))?;
        // Right after the start, a describe may find no broker registered yet: not yet.
        eventually(START_TIMEOUT, "every partition has a leader", || async {
            Ok(admin.describe_topic(&topic).await.is_ok_and(|d| {
                d.partitions.len() == PARTITIONS as usize
                    && d.partitions.iter().all(|p| p.leader.is_some())
            }))
        })
        .await?;
        let bootstrap = cluster.bootstrap();
        let gateways = tokio::task::block_in_place(|| {
            gateways
                .iter()
                .map(|args| GatewayProcess::start(&bootstrap, args))
                .collect::<anyhow::Result<Vec<_>>>()
        })?;
        Ok(GatewaySetup {
            cluster,
            topic,
            gateways,
        })
    }

    /// 3 brokers with the default settings and `n` gateways without extra arguments.
    pub async fn plain(n: usize) -> anyhow::Result<GatewaySetup> {
        GatewaySetup::start(&[], ClientConfig::default(), &vec![&[][..]; n]).await
    }

    pub fn gw(&self, i: usize) -> SocketAddr {
        self.gateways[i].addr()
    }

    /// `/v1/topics/<topic><rest>`.
    pub fn path(&self, rest: &str) -> String {
        format!("/v1/topics/{}{rest}", self.topic)
    }

    pub fn records_path(&self, partition: u32, query: &str) -> String {
        self.path(&format!("/partitions/{partition}/records?{query}"))
    }

    /// `result`, with every gateway's log tail added to an error.
    pub fn explain<T>(&self, mut result: anyhow::Result<T>) -> anyhow::Result<T> {
        for g in &self.gateways {
            result = g.explain(result);
        }
        if let Some(g) = self.gateways.iter().find(|g| g.log_shows_panic()) {
            result = result.and_then(|_| bail!("gateway {} panicked", g.addr()));
        }
        result
    }
}

/// `count` signed assertions of about `size` bytes whose subjects all map to `partition`.
pub fn signed_for(
    run: &str,
    partition: u32,
    count: usize,
    size: usize,
) -> anyhow::Result<Vec<SignedAssertion>> {
    let picked: Vec<Assertion> = assertions(run, count * PARTITIONS as usize * 8, size)
        .into_iter()
        .filter(|a| partition_for(&a.subject, PARTITIONS) == partition)
        .take(count)
        .collect();
    ensure!(picked.len() == count, "too few subjects for {partition}");
    sign_all(&picked, &key(7))
}

/// Checks that `acks` answer `records` one by one, in order: same id, the subject's
/// partition, `duplicate` as given (if given); and that no two name the same place.
pub fn check_acks(
    records: &[SignedAssertion],
    acks: &[AckLine],
    duplicate: Option<bool>,
) -> anyhow::Result<()> {
    let (n, m) = (acks.len(), records.len());
    ensure!(n == m, "{n} acks for {m} records");
    let mut places = HashSet::new();
    for (i, (r, a)) in records.iter().zip(acks).enumerate() {
        let (id, p) = (r.id(), partition_for(&r.assertion().subject, PARTITIONS));
        ensure!(
            a.id == id && a.partition == p,
            "#{i}: {a:?}, not {id} in {p}"
        );
        ensure!(duplicate.is_none_or(|d| d == a.duplicate), "#{i}: {a:?}");
        ensure!(
            places.insert((a.partition, a.offset)),
            "#{i} repeats a place"
        );
    }
    Ok(())
}

/// The answers to a post that say "try again": 429, 503, 504.
pub const RETRIED: [StatusCode; 3] = [
    StatusCode::TOO_MANY_REQUESTS,
    StatusCode::SERVICE_UNAVAILABLE,
    StatusCode::GATEWAY_TIMEOUT,
];

/// Posts a JSON array `body` until it is answered 200, again after a [`RETRIED`] answer
/// (each a JSON error; waiting as `Retry-After` says, at most 2 s) or none within
/// [`REQUEST_TIMEOUT`] (safe: stored records come back as duplicates); at most `attempts`
/// times. Returns the acks and how many answers were not 200.
pub async fn post_until_stored(
    addr: SocketAddr,
    path: &str,
    body: &[u8],
    attempts: u32,
) -> anyhow::Result<(Vec<AckLine>, u32)> {
    let mut last = String::new();
    for attempt in 0..attempts {
        let headers = [("content-type", "application/json")];
        let sent = request(
            addr,
            Method::POST,
            path,
            &headers,
            body.to_vec(),
            REQUEST_TIMEOUT,
        );
        match sent.await {
            Ok(r) if r.status == StatusCode::OK => return Ok((acks_of(&r, true)?, attempt)),
            Ok(r) if RETRIED.contains(&r.status) => {
                r.error()?;
                let wait = r.header_u64("retry-after").unwrap_or(0).clamp(0, 2);
                last = r.to_string();
                tokio::time::sleep(Duration::from_millis(200 + 1000 * wait)).await;
            }
            Ok(r) => bail!("POST {path} refused: {r}"),
            Err(e) => {
                last = format!("{e:#}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    bail!("POST {path}: not stored after {attempts} attempts; last: {last}")
}

/// A principal of the gateway: its bearer token, and its broker key in a key file.
pub struct Principal {
    pub name: &'static str,
    pub token: String,
    pub key: SigningKey,
}

impl Principal {
    pub fn new(name: &'static str, seed: u8) -> Principal {
        Principal {
            name,
            token: unique(&format!("{name}-token")),
            key: key(seed),
        }
    }

    pub fn broker_principal(&self) -> String {
        key_principal(&self.key.verifying_key().to_bytes())
    }

    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// Its `[[principal]]` entry, its key saved in `dir`.
    pub fn entry(&self, dir: &std::path::Path) -> anyhow::Result<String> {
        let file = dir.join(format!("{}.key", self.name));
        save_signing_key(&file, &self.key, Existing::Refuse)?;
        Ok(format!(
            "[[principal]]\nname = \"{}\"\ntoken_blake3 = \"{}\"\nbroker_key = \"{}\"\n\n",
            self.name,
            blake3::hash(self.token.as_bytes()).to_hex(),
            file.display()
        ))
    }
}
