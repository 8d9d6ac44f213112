//! A cluster of `steme-broker` processes on loopback, for replication and fault tests.
//!
//! Each broker listens on two ports picked from the kernel's ephemeral range when the
//! cluster starts and keeps them across restarts: one for clients, and its peer plane (its
//! peers know it by that address), authenticated with a cluster secret written for the
//! cluster. With `proxied`, every broker reaches every other's peer plane through its own
//! [`Proxy`] (one per ordered pair), so a test can cut a broker off from the others while
//! clients still reach it directly — a network partition between brokers.
//!
//! The checks read every replica directly (any replica serves fetches below its own high
//! watermark) and compare a digest of each partition's records — offset, HLC, assertion and
//! signature bytes — over the range all replicas have committed.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use steme_client::connection::{Connection, ConnectionConfig};
use steme_protocol::RecordBatch;
use steme_protocol::messages::describe_topic::{DescribeTopicRequest, PartitionDescription};
use steme_protocol::messages::fetch::FetchRequest;
use steme_protocol::messages::metadata::MetadataRequest;

use crate::process::{BrokerOptions, BrokerProcess, PeerPlane};
use crate::proxy::Proxy;

/// How long one request to one broker may take in the checks.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// How a cluster is started.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: u64,
    /// The first broker's id; the others follow it (1 unless a test needs room below).
    pub first_id: u64,
    /// Route broker-to-broker traffic through cuttable proxies.
    pub proxied: bool,
    pub broker: BrokerOptions,
}

impl ClusterOptions {
    /// `nodes` brokers with timeouts short enough for tests yet safe on a loaded 2-core
    /// machine, and no preferred-leader rebalancing (tests choose when leaders move).
    pub fn new(nodes: u64) -> ClusterOptions {
        ClusterOptions {
            nodes,
            first_id: 1,
            proxied: false,
            broker: BrokerOptions {
                config_toml: Some(
                    "heartbeat_interval_ms = 100\n\
                     election_timeout_min_ms = 800\n\
                     election_timeout_max_ms = 1600\n\
                     leader_rebalance_ms = 0\n"
                        .into(),
                ),
                args: Vec::new(),
            },
        }
    }
}

/// Running brokers `first_id..first_id + nodes`, and any added since.
#[derive(Debug)]
pub struct Cluster {
    brokers: Vec<BrokerProcess>,
    /// Holds the cluster secret file.
    secret_dir: tempfile::TempDir,
    /// `(from, to)` → the proxy `from` reaches `to` through.
    proxies: BTreeMap<(u64, u64), Proxy>,
    /// How brokers are started (for brokers added later).
    options: BrokerOptions,
    /// Each broker's peer-plane address.
    peer_addrs: BTreeMap<u64, SocketAddr>,
}

/// `n` distinct ports the kernel just handed out and released (all held until each is
/// picked, so no two are the same).
fn free_ports(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let held = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").context("cannot pick a port"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(held
        .iter()
        .map(TcpListener::local_addr)
        .collect::<Result<_, _>>()?)
}

impl Cluster {
    pub async fn start(opts: ClusterOptions) -> anyhow::Result<Cluster> {
        let n = opts.nodes;
        let first = opts.first_id.max(1);
        let ids = first..first + n;
        let mut ports = free_ports(2 * n as usize)?;
        let peer_addrs = ports.split_off(n as usize);
        let addrs = ports;
        let addr = |id: u64| addrs[(id - first) as usize];
        let peer_addr = |id: u64| peer_addrs[(id - first) as usize];
        let secret_dir = tempfile::Builder::new()
            .prefix("steme-secret-")
            .tempdir()
            .context("cannot create the secret's directory")?;
        let secret_file = secret_dir.path().join("cluster.secret");
        let secret = blake3::hash(crate::unique("e2e-cluster-secret").as_bytes()).to_hex();
        std::fs::write(&secret_file, format!("{secret}\n"))
            .context("cannot write the cluster secret")?;
        let mut proxies = BTreeMap::new();
        if opts.proxied {
            for from in ids.clone() {
                for to in ids.clone().filter(|&t| t != from) {
                    proxies.insert((from, to), Proxy::start(peer_addr(to)).await?);
                }
            }
        }
        let mut brokers = Vec::new();
        for id in ids.clone() {
            let peers = ids
                .clone()
                .filter(|&p| p != id)
                .map(|p| {
                    let via = proxies.get(&(id, p)).map_or(peer_addr(p), Proxy::addr);
                    (p, via.to_string())
                })
                .collect();
            let options = opts.broker.clone();
            let plane = PeerPlane {
                listen: peer_addr(id),
                secret_file: secret_file.clone(),
            };
            let b = tokio::task::block_in_place(|| {
                BrokerProcess::start_member(id, Some(addr(id)), Some(plane), peers, options)
            })?;
            brokers.push(b);
        }
        Ok(Cluster {
            brokers,
            secret_dir,
            proxies,
            options: opts.broker,
            peer_addrs: ids.map(|id| (id, peer_addr(id))).collect(),
        })
    }

    /// Starts one more broker, with the next id, that joins the running cluster: its
    /// `--peer` list names every broker started so far, and it holds the cluster secret.
    /// Not for proxied clusters.
    pub fn add_broker(&mut self) -> anyhow::Result<u64> {
        let id = self.ids().max().unwrap_or(0) + 1;
        self.add_broker_as(id)
    }

    /// As [`Self::add_broker`], with id `id` (unused so far).
    pub fn add_broker_as(&mut self, id: u64) -> anyhow::Result<u64> {
        ensure!(self.proxies.is_empty(), "a proxied cluster cannot grow");
        ensure!(self.ids().all(|b| b != id), "broker {id} exists");
        let ports = free_ports(2)?;
        let peers = self
            .peer_addrs
            .iter()
            .map(|(p, addr)| (*p, addr.to_string()))
            .collect();
        let plane = PeerPlane {
            listen: ports[1],
            secret_file: self.secret_file(),
        };
        let options = self.options.clone();
        let b = tokio::task::block_in_place(|| {
            BrokerProcess::start_member(id, Some(ports[0]), Some(plane), peers, options)
        })?;
        self.peer_addrs.insert(id, ports[1]);
        self.brokers.push(b);
        Ok(id)
    }

    /// The cluster secret file every broker was started with.
    pub fn secret_file(&self) -> std::path::PathBuf {
        self.secret_dir.path().join("cluster.secret")
    }

    /// Whether any broker's log shows a panic.
    pub fn any_panic(&self) -> Option<u64> {
        self.brokers
            .iter()
            .find(|b| b.log_shows_panic())
            .map(BrokerProcess::node_id)
    }

    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.brokers.iter().map(BrokerProcess::node_id)
    }

    pub fn broker(&self, id: u64) -> &BrokerProcess {
        self.brokers
            .iter()
            .find(|b| b.node_id() == id)
            .unwrap_or_else(|| panic!("no broker {id} in this cluster"))
    }

    pub fn broker_mut(&mut self, id: u64) -> &mut BrokerProcess {
        self.brokers
            .iter_mut()
            .find(|b| b.node_id() == id)
            .unwrap_or_else(|| panic!("no broker {id} in this cluster"))
    }

    /// The running brokers' addresses, comma-separated (a client bootstrap list).
    pub fn bootstrap(&self) -> String {
        self.bootstrap_except(0)
    }

    /// As [`bootstrap`](Self::bootstrap), leaving out broker `id`.
    pub fn bootstrap_except(&self, id: u64) -> String {
        self.brokers
            .iter()
            .filter(|b| b.is_running() && b.node_id() != id)
            .map(BrokerProcess::bootstrap)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Restarts broker `id` (after a kill or SIGTERM) on its address.
    pub fn restart(&mut self, id: u64) -> anyhow::Result<()> {
        let b = self.broker_mut(id);
        tokio::task::block_in_place(|| b.restart())
    }

    /// Cuts broker `id` off from every other broker (clients still reach it).
    pub fn isolate(&self, id: u64) {
        for ((from, to), p) in &self.proxies {
            if *from == id || *to == id {
                p.cut();
            }
        }
    }

    pub fn heal(&self) {
        for p in self.proxies.values() {
            p.heal();
        }
    }

    /// What broker `id` says the leaders of `topic`'s partitions are.
    pub async fn leaders_seen_by(&self, id: u64, topic: &str) -> anyhow::Result<Vec<Option<u64>>> {
        let conn = connect(&self.broker(id).bootstrap()).await?;
        let meta = conn
            .call(
                &MetadataRequest {
                    topics: Some(vec![topic.to_owned()]),
                },
                RPC_TIMEOUT,
            )
            .await?;
        let t = meta
            .topics
            .into_iter()
            .find(|t| t.name == topic)
            .with_context(|| format!("broker {id} does not know topic {topic}"))?;
        Ok(t.partitions.into_iter().map(|p| p.leader).collect())
    }

    /// Waits until a running broker other than `not` leads partition `partition` of
    /// `topic`, as every running broker reports; returns it.
    pub async fn wait_for_leader(
        &self,
        topic: &str,
        partition: u32,
        not: Option<u64>,
        timeout: Duration,
    ) -> anyhow::Result<u64> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut seen = Vec::new();
            for b in self.brokers.iter().filter(|b| b.is_running()) {
                let l = self
                    .leaders_seen_by(b.node_id(), topic)
                    .await
                    .ok()
                    .and_then(|ls| ls.get(partition as usize).copied().flatten());
                seen.push(l);
            }
            if let Some(Some(l)) = seen.first()
                && seen.iter().all(|s| *s == Some(*l))
                && Some(*l) != not
                && self.broker(*l).is_running()
            {
                return Ok(*l);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("no agreed leader for {topic}/{partition} within {timeout:?}: {seen:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until every running replica of `topic`/`partition` has the same high watermark
    /// and the leader has committed its whole log (they have converged); returns it.
    pub async fn wait_converged(
        &self,
        topic: &str,
        partition: u32,
        timeout: Duration,
    ) -> anyhow::Result<u64> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut seen = Vec::new();
            for b in self.replicas_running(topic, partition).await? {
                let d = describe_replica(&b.bootstrap(), topic, partition)
                    .await
                    .ok();
                seen.push((b.node_id(), d));
            }
            let hwms: Vec<Option<u64>> = seen
                .iter()
                .map(|(_, d)| d.as_ref().map(|d| d.high_watermark))
                .collect();
            let leader_done = seen.iter().any(|(id, d)| {
                d.as_ref()
                    .is_some_and(|d| d.leader == Some(*id) && d.high_watermark == d.log_end_offset)
            });
            if let Some(Some(h)) = hwms.first()
                && leader_done
                && hwms.iter().all(|x| *x == Some(*h))
            {
                return Ok(*h);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!(
                    "replicas of {topic}/{partition} did not converge within {timeout:?}: {seen:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Checks that every running replica of every partition holds the same records, byte for
    /// byte, after they converge; returns the high watermarks.
    /// The running brokers the metadata places `topic`/`partition` on (all running
    /// brokers, if the metadata cannot be read).
    async fn replicas_running(
        &self,
        topic: &str,
        partition: u32,
    ) -> anyhow::Result<Vec<&BrokerProcess>> {
        let running = self.brokers.iter().filter(|b| b.is_running());
        let mut placed = None;
        for b in running.clone() {
            let Ok(conn) = connect(&b.bootstrap()).await else {
                continue;
            };
            let req = MetadataRequest {
                topics: Some(vec![topic.to_owned()]),
            };
            if let Ok(m) = conn.call(&req, RPC_TIMEOUT).await {
                placed = m
                    .topic(topic)
                    .and_then(|t| t.partitions.get(partition as usize))
                    .map(|p| p.replicas.clone());
                break;
            }
        }
        Ok(running
            .filter(|b| placed.as_ref().is_none_or(|r| r.contains(&b.node_id())))
            .collect())
    }

    pub async fn check_replicas_identical(
        &self,
        topic: &str,
        partitions: u32,
        timeout: Duration,
    ) -> anyhow::Result<Vec<u64>> {
        let mut hwms = Vec::new();
        for p in 0..partitions {
            let hwm = self.wait_converged(topic, p, timeout).await?;
            // Compare what every replica still holds (retention may have moved log starts).
            let replicas = self.replicas_running(topic, p).await?;
            let mut from = 0;
            for b in &replicas {
                from = from.max(
                    describe_replica(&b.bootstrap(), topic, p)
                        .await?
                        .log_start_offset,
                );
            }
            let mut digests = Vec::new();
            let deadline = tokio::time::Instant::now() + timeout;
            for b in &replicas {
                // A replica with a damaged range answers CorruptData (it never serves the
                // damage) until it has repaired it from another replica.
                let d = loop {
                    match replica_digest(&b.bootstrap(), topic, p, from, hwm).await {
                        Ok(d) => break d,
                        Err(e)
                            if format!("{e:#}").contains("damaged")
                                && tokio::time::Instant::now() < deadline =>
                        {
                            tokio::time::sleep(Duration::from_millis(250)).await;
                        }
                        Err(e) => return Err(e),
                    }
                };
                digests.push((b.node_id(), d));
            }
            let first = &digests[0].1;
            ensure!(
                digests.iter().all(|(_, d)| d == first),
                "replicas of {topic}/{p} differ in offsets {from}..{hwm}: {digests:?}"
            );
            hwms.push(hwm);
        }
        Ok(hwms)
    }
}

async fn connect(addr: &str) -> anyhow::Result<Connection> {
    Connection::connect(addr, &ConnectionConfig::default())
        .await
        .with_context(|| format!("cannot connect to {addr}"))
}

async fn fetch_at(
    conn: &Connection,
    topic: &str,
    partition: u32,
    offset: u64,
) -> anyhow::Result<steme_protocol::messages::fetch::FetchResponse> {
    Ok(conn
        .call(
            &FetchRequest {
                topic: topic.to_owned(),
                partition,
                offset,
                max_bytes: 4 << 20,
                max_wait_ms: 0,
            },
            RPC_TIMEOUT,
        )
        .await?)
}

/// One replica of `topic`/`partition` as the broker at `addr` describes it.
pub async fn describe_replica(
    addr: &str,
    topic: &str,
    partition: u32,
) -> anyhow::Result<PartitionDescription> {
    let conn = connect(addr).await?;
    let d = conn
        .call(
            &DescribeTopicRequest {
                name: topic.to_owned(),
            },
            RPC_TIMEOUT,
        )
        .await?;
    d.partitions
        .into_iter()
        .find(|p| p.partition == partition)
        .with_context(|| format!("{addr} does not host {topic}/{partition}"))
}

/// A BLAKE3 digest of one replica's records `[from, upto)`: each record's offset, HLC,
/// assertion bytes and signature, read from that broker alone.
pub async fn replica_digest(
    addr: &str,
    topic: &str,
    partition: u32,
    from: u64,
    upto: u64,
) -> anyhow::Result<String> {
    let conn = connect(addr).await?;
    let mut hasher = blake3::Hasher::new();
    let mut offset = from;
    while offset < upto {
        let resp = fetch_at(&conn, topic, partition, offset).await?;
        let mut progressed = false;
        for batch in RecordBatch::split_all(&resp.records) {
            let batch = batch
                .map_err(|(at, e)| anyhow::anyhow!("{addr}: corrupt batch at byte {at}: {e}"))?;
            for r in batch.records() {
                let at = batch.base_offset() + u64::from(r.index);
                if at < offset || at >= upto {
                    continue;
                }
                ensure!(at == offset, "{addr}: offset {at} follows {offset}");
                hasher.update(&at.to_le_bytes());
                hasher.update(&(batch.base_hlc() + u64::from(r.index)).to_le_bytes());
                hasher.update(r.assertion);
                hasher.update(r.signature);
                offset += 1;
                progressed = true;
            }
        }
        ensure!(
            progressed,
            "{addr}: no records at offset {offset} below {upto}"
        );
    }
    Ok(hasher.finalize().to_hex().to_string())
}
