//! Broker configuration: command-line flags, then `STEME_*` environment variables, then an
//! optional TOML file, then embedded defaults that just work on one machine
//! (listen on `127.0.0.1:9092`, data under `./steme-data`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use security::{AuthMode, Authorization, QuotaLimits};

use crate::topic_config::{
    MAX_RETENTION_BYTES, MAX_RETENTION_MS, MAX_SEGMENT_BYTES, MIN_RETENTION_BYTES,
    MIN_RETENTION_MS, MIN_SEGMENT_BYTES,
};

/// Bounds of the numeric settings, checked by [`Config::validate`].
pub mod bounds {
    use std::ops::RangeInclusive;

    /// One frame, length prefix included: 1 KiB to 1 GiB.
    pub const MAX_FRAME_BYTES: RangeInclusive<u64> = 1 << 10..=1 << 30;
    pub const MAX_CONNECTIONS: RangeInclusive<u64> = 1..=1 << 20;
    pub const MAX_CONNECTIONS_PER_IP: RangeInclusive<u64> = 1..=1 << 20;
    pub const MAX_INFLIGHT_PER_CONNECTION: RangeInclusive<u64> = 1..=1 << 16;
    /// Matches the most partitions one CreateTopic may ask for.
    pub const DEFAULT_PARTITIONS: RangeInclusive<u64> = 1..=10_000;
    pub const GROUP_PARTITIONS: RangeInclusive<u64> = 1..=1_000;
    pub const MAX_PARTITIONS_PER_BROKER: RangeInclusive<u64> = 1..=1 << 20;
    pub const FLUSH_INTERVAL_MS: RangeInclusive<u64> = 1..=60_000;
    pub const MAX_CLOCK_SKEW_MS: RangeInclusive<u64> = 0..=24 * 60 * 60 * 1_000;
    pub const HEARTBEAT_INTERVAL_MS: RangeInclusive<u64> = 10..=60_000;
    pub const ELECTION_TIMEOUT_MS: RangeInclusive<u64> = 20..=600_000;
    pub const RETENTION_CHECK_MS: RangeInclusive<u64> = 10..=24 * 60 * 60 * 1_000;
    /// 0 turns leader rebalancing off.
    pub const LEADER_REBALANCE_MS: RangeInclusive<u64> = 0..=24 * 60 * 60 * 1_000;
    /// The scrubber's rate: 0 (off) to 4 GiB/s.
    pub const SCRUB_BYTES_PER_SEC: RangeInclusive<u64> = 0..=4 << 30;
    pub const REASSIGN_BYTES_PER_SEC: RangeInclusive<u64> = 0..=16 << 30;
    /// The least time between the starts of two scrub passes over a replica: 0 to 30 days.
    pub const SCRUB_INTERVAL_MS: RangeInclusive<u64> = 0..=30 * 24 * 60 * 60 * 1_000;
    pub const IDLE_TIMEOUT_MS: RangeInclusive<u64> = 1..=7 * 24 * 60 * 60 * 1_000;
    pub const FRAME_TIMEOUT_MS: RangeInclusive<u64> = 1..=60 * 60 * 1_000;
}

/// A peer broker: `ID=ADDR`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Peer {
    pub id: u64,
    pub addr: String,
}

impl FromStr for Peer {
    type Err = String;

    fn from_str(s: &str) -> Result<Peer, String> {
        let (id, addr) = s
            .split_once('=')
            .ok_or_else(|| format!("peer `{s}` is not ID=ADDR"))?;
        let id = id
            .trim()
            .parse()
            .map_err(|e| format!("peer id `{id}`: {e}"))?;
        if addr.trim().is_empty() {
            return Err(format!("peer `{s}` has no address"));
        }
        Ok(Peer {
            id,
            addr: addr.trim().to_owned(),
        })
    }
}

/// When the partition logs fsync (group commit; see `steme_segments`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum FlushMode {
    /// Every append is flushed before it is acknowledged, one fsync covering every append
    /// queued behind it (group commit). The default.
    #[default]
    Always,
    /// Flush on a timer (`flush_interval_ms`); acknowledged data may be lost on power failure
    /// within that window (like Kafka's defaults).
    Interval,
}

impl FromStr for FlushMode {
    type Err = String;

    fn from_str(s: &str) -> Result<FlushMode, String> {
        match s {
            "always" => Ok(FlushMode::Always),
            "interval" => Ok(FlushMode::Interval),
            other => Err(format!("flush mode `{other}`: expected always or interval")),
        }
    }
}

/// The broker's settings, every field with a default.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node_id: u64,
    pub listen: SocketAddr,
    /// The address other brokers and clients should use (defaults to the bound address).
    pub advertised_addr: Option<String>,
    pub data_dir: PathBuf,
    /// The other brokers, by their peer-plane addresses.
    pub peers: Vec<Peer>,
    /// Where this broker listens for other brokers (the peer plane, D8). Needed by a
    /// cluster member; optional for a single broker.
    pub peer_listen: Option<SocketAddr>,
    /// The peer-plane address other brokers should use (defaults to the bound one).
    pub peer_advertised_addr: Option<String>,
    /// The file holding the cluster secret every broker shares; peer connections prove it.
    pub cluster_secret_file: Option<PathBuf>,
    /// Where the admin HTTP listener serves `/metrics`, `/healthz` and `/readyz` (off when
    /// unset). It is not authenticated: bind it to an address only operators reach.
    pub admin_listen: Option<SocketAddr>,
    pub max_connections: usize,
    pub max_frame_bytes: usize,
    /// Requests a connection may have in flight before the broker stops reading from it.
    pub max_inflight_per_connection: usize,
    pub default_partitions: u32,
    pub segment_bytes: u64,
    pub retention_bytes: Option<u64>,
    pub retention_ms: Option<u64>,
    pub flush: FlushMode,
    pub flush_interval_ms: u64,
    /// How far ahead of this broker's clock a producer's causality token may be.
    pub max_clock_skew_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Verify signatures on produce (topics may turn it off with `verify.signatures=false`).
    pub verify_signatures: bool,
    /// How often each partition checks its retention limits.
    pub retention_check_ms: u64,
    /// How often a leader hands leadership back to a partition's preferred replica once it
    /// has caught up (0: never).
    pub leader_rebalance_ms: u64,
    /// Partitions of the internal `__groups` topic (consumer groups), made on first use.
    pub group_partitions: u32,
    /// How fast the background scrubber re-verifies every hosted replica's log, in bytes
    /// per second across all of them (0: off). Damage it finds is repaired from replicas.
    pub scrub_bytes_per_sec: u64,
    /// How fast a partition leader copies to the replicas a move adds, in bytes per second
    /// across all its moves (0: unthrottled). Clients' traffic and the other replicas are
    /// never throttled.
    pub reassign_bytes_per_sec: u64,
    /// The least time between the starts of two scrub passes over one replica's log, in
    /// ms: a pass re-reads everything, so passes are spread out (damage that reads reach
    /// is caught as they read it).
    pub scrub_interval_ms: u64,
    /// The most partition replicas the metadata places on any one broker; a CreateTopic
    /// that would exceed it on some broker is refused.
    pub max_partitions_per_broker: u32,
    /// A client connection with no request in flight that has received nothing for this
    /// long is closed.
    pub idle_timeout_ms: u64,
    /// A frame must arrive whole within this long of its first byte, or the connection is
    /// closed (a slow sender cannot hold a frame buffer open).
    pub frame_timeout_ms: u64,
    /// Client connections one IP address may hold at once.
    pub max_connections_per_ip: usize,
    /// The client listener's TLS certificate chain (PEM); with `tls_key`, the listener
    /// speaks TLS only.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) whose client certificates the listener accepts.
    pub tls_client_ca: Option<PathBuf>,
    /// Whether client connections must authenticate.
    pub auth: AuthMode,
    /// Whether ACLs are enforced.
    pub authorization: Authorization,
    /// Principals allowed everything (but writing internal topics), whatever the ACLs.
    pub superusers: Vec<String>,
    /// Each principal's limits, unless `quotas` names it.
    pub quota_defaults: QuotaLimits,
    /// Per-principal limits (`[quotas."key:…"]`); an unset limit falls back to the default.
    pub quotas: std::collections::BTreeMap<String, QuotaLimits>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: 1,
            listen: "127.0.0.1:9092".parse().expect("valid"),
            advertised_addr: None,
            data_dir: PathBuf::from("./steme-data"),
            peers: Vec::new(),
            peer_listen: None,
            peer_advertised_addr: None,
            cluster_secret_file: None,
            admin_listen: None,
            max_connections: 1024,
            max_frame_bytes: steme_protocol::frame::DEFAULT_MAX_FRAME,
            max_inflight_per_connection: 128,
            default_partitions: 4,
            segment_bytes: 256 << 20,
            retention_bytes: None,
            retention_ms: None,
            flush: FlushMode::Always,
            flush_interval_ms: 5,
            max_clock_skew_ms: 2_000,
            heartbeat_interval_ms: 250,
            election_timeout_min_ms: 1_000,
            election_timeout_max_ms: 2_000,
            verify_signatures: true,
            retention_check_ms: 30_000,
            leader_rebalance_ms: 10_000,
            group_partitions: 8,
            max_partitions_per_broker: 4096,
            scrub_bytes_per_sec: 32 << 20,
            reassign_bytes_per_sec: 100 << 20,
            scrub_interval_ms: 60 * 60 * 1_000,
            idle_timeout_ms: 600_000,
            frame_timeout_ms: 30_000,
            max_connections_per_ip: 256,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            auth: AuthMode::Off,
            authorization: Authorization::Off,
            superusers: Vec::new(),
            quota_defaults: QuotaLimits::default(),
            quotas: Default::default(),
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    #[error("invalid configuration: {setting} = {value} is out of range {min}..={max}")]
    OutOfRange {
        setting: &'static str,
        value: u64,
        min: u64,
        max: u64,
    },
}

impl Config {
    /// Builds the configuration: defaults, then the TOML file if given, then overrides.
    pub fn load(o: &Overrides) -> Result<Config, ConfigError> {
        let mut c = match &o.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        o.apply(&mut c);
        c.validate()?;
        Ok(c)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    /// Checks every numeric setting against its [`bounds`] (the topic-level ones against
    /// the topic setting bounds) and the relations between settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.node_id == 0 {
            return bad("node_id must be at least 1".into());
        }
        let widen = |v: usize| v as u64;
        let checks: [(&'static str, u64, std::ops::RangeInclusive<u64>); 22] = [
            (
                "max_frame_bytes",
                widen(self.max_frame_bytes),
                bounds::MAX_FRAME_BYTES,
            ),
            (
                "max_connections",
                widen(self.max_connections),
                bounds::MAX_CONNECTIONS,
            ),
            (
                "max_connections_per_ip",
                widen(self.max_connections_per_ip),
                bounds::MAX_CONNECTIONS_PER_IP,
            ),
            (
                "max_inflight_per_connection",
                widen(self.max_inflight_per_connection),
                bounds::MAX_INFLIGHT_PER_CONNECTION,
            ),
            (
                "default_partitions",
                self.default_partitions.into(),
                bounds::DEFAULT_PARTITIONS,
            ),
            (
                "group_partitions",
                self.group_partitions.into(),
                bounds::GROUP_PARTITIONS,
            ),
            (
                "max_partitions_per_broker",
                self.max_partitions_per_broker.into(),
                bounds::MAX_PARTITIONS_PER_BROKER,
            ),
            (
                "segment_bytes",
                self.segment_bytes,
                MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES,
            ),
            (
                "retention_bytes",
                self.retention_bytes.unwrap_or(MIN_RETENTION_BYTES),
                MIN_RETENTION_BYTES..=MAX_RETENTION_BYTES,
            ),
            (
                "retention_ms",
                self.retention_ms.unwrap_or(MIN_RETENTION_MS),
                MIN_RETENTION_MS..=MAX_RETENTION_MS,
            ),
            (
                "flush_interval_ms",
                self.flush_interval_ms,
                bounds::FLUSH_INTERVAL_MS,
            ),
            (
                "max_clock_skew_ms",
                self.max_clock_skew_ms,
                bounds::MAX_CLOCK_SKEW_MS,
            ),
            (
                "heartbeat_interval_ms",
                self.heartbeat_interval_ms,
                bounds::HEARTBEAT_INTERVAL_MS,
            ),
            (
                "election_timeout_min_ms",
                self.election_timeout_min_ms,
                bounds::ELECTION_TIMEOUT_MS,
            ),
            (
                "election_timeout_max_ms",
                self.election_timeout_max_ms,
                bounds::ELECTION_TIMEOUT_MS,
            ),
            (
                "retention_check_ms",
                self.retention_check_ms,
                bounds::RETENTION_CHECK_MS,
            ),
            (
                "leader_rebalance_ms",
                self.leader_rebalance_ms,
                bounds::LEADER_REBALANCE_MS,
            ),
            (
                "scrub_bytes_per_sec",
                self.scrub_bytes_per_sec,
                bounds::SCRUB_BYTES_PER_SEC,
            ),
            (
                "reassign_bytes_per_sec",
                self.reassign_bytes_per_sec,
                bounds::REASSIGN_BYTES_PER_SEC,
            ),
            (
                "scrub_interval_ms",
                self.scrub_interval_ms,
                bounds::SCRUB_INTERVAL_MS,
            ),
            (
                "idle_timeout_ms",
                self.idle_timeout_ms,
                bounds::IDLE_TIMEOUT_MS,
            ),
            (
                "frame_timeout_ms",
                self.frame_timeout_ms,
                bounds::FRAME_TIMEOUT_MS,
            ),
        ];
        for (setting, value, range) in checks {
            if !range.contains(&value) {
                return Err(ConfigError::OutOfRange {
                    setting,
                    value,
                    min: *range.start(),
                    max: *range.end(),
                });
            }
        }
        if self.election_timeout_min_ms <= self.heartbeat_interval_ms
            || self.election_timeout_max_ms <= self.election_timeout_min_ms
        {
            return bad(
                "need heartbeat_interval_ms < election_timeout_min_ms < election_timeout_max_ms"
                    .into(),
            );
        }
        if self.peers.iter().any(|p| p.id == self.node_id) {
            return bad(format!(
                "--peer lists this broker's own id {}",
                self.node_id
            ));
        }
        // A cluster member talks to its peers only on the peer plane, authenticated (D8).
        if !self.peers.is_empty() && self.peer_listen.is_none() {
            return bad(
                "--peer needs --peer-listen: brokers reach each other only on the peer plane, \
                 never on the client listener"
                    .into(),
            );
        }
        if (!self.peers.is_empty() || self.peer_listen.is_some())
            && self.cluster_secret_file.is_none()
        {
            return bad(
                "the peer plane (--peer, --peer-listen) needs peer credentials: \
                 --cluster-secret-file FILE (or STEME_CLUSTER_SECRET_FILE) with the secret \
                 every broker shares (e.g. `openssl rand -hex 32 > FILE`)"
                    .into(),
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("--tls-cert and --tls-key go together".into());
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            return bad("--tls-client-ca needs TLS: --tls-cert and --tls-key".into());
        }
        if self.peer_listen.is_some_and(|p| p == self.listen) {
            return bad("--peer-listen must differ from --listen".into());
        }
        if self
            .admin_listen
            .is_some_and(|a| a.port() != 0 && (a == self.listen || Some(a) == self.peer_listen))
        {
            return bad("--admin-listen must differ from --listen and --peer-listen".into());
        }
        security::validate(&self.superusers, &self.quota_defaults, &self.quotas).or_else(bad)?;
        Ok(())
    }

    /// The settings as a TOML file would give them; unset optional settings follow as
    /// comments (what `steme-broker --print-config` prints).
    pub fn to_toml(&self) -> Result<String, ConfigError> {
        let invalid = |e: &dyn std::fmt::Display| ConfigError::Invalid(e.to_string());
        let mut out = toml::to_string(self).map_err(|e| invalid(&e))?;
        let all = serde_json::to_value(self).map_err(|e| invalid(&e))?;
        let unset: Vec<&String> = all
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| v.is_null())
            .map(|(k, _)| k)
            .collect();
        if !unset.is_empty() {
            out.push_str("\n# Not set:\n");
            for key in unset {
                out.push_str(&format!("# {key} =\n"));
            }
        }
        Ok(out)
    }

    /// Every setting's name, as the TOML file spells it.
    pub fn keys() -> Vec<String> {
        serde_json::to_value(Config::default())
            .ok()
            .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
            .unwrap_or_default()
    }

    pub fn max_clock_skew(&self) -> Duration {
        Duration::from_millis(self.max_clock_skew_ms)
    }
}

mod flags;
mod security;
#[cfg(test)]
mod tests;

pub use flags::Overrides;
