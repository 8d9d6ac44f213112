//! Broker configuration: command-line flags, then `STEME_*` environment variables, then an
//! optional TOML file, then embedded defaults that just work on one machine
//! (listen on `127.0.0.1:9092`, data under `./steme-data`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// A peer broker: `ID=ADDR`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
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
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub node_id: u64,
    pub listen: SocketAddr,
    /// The address other brokers and clients should use (defaults to the bound address).
    pub advertised_addr: Option<String>,
    pub data_dir: PathBuf,
    pub peers: Vec<Peer>,
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: 1,
            listen: "127.0.0.1:9092".parse().expect("valid"),
            advertised_addr: None,
            data_dir: PathBuf::from("./steme-data"),
            peers: Vec::new(),
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
}

/// Flags (and their `STEME_*` environment variables) that override the file and defaults.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// TOML file with any of the settings below (flags and env win over it).
    #[arg(long, env = "STEME_CONFIG")]
    pub config: Option<PathBuf>,
    /// This broker's id, unique in the cluster.
    #[arg(long, env = "STEME_NODE_ID")]
    pub node_id: Option<u64>,
    /// Address to listen on for clients and brokers.
    #[arg(long, env = "STEME_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address to advertise to clients and peers (default: the bound address).
    #[arg(long, env = "STEME_ADVERTISED_ADDR")]
    pub advertised_addr: Option<String>,
    /// Directory for partition logs and metadata.
    #[arg(long, env = "STEME_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A peer broker, `ID=ADDR` (repeatable).
    #[arg(long = "peer", value_name = "ID=ADDR")]
    pub peers: Vec<Peer>,
    /// Flush policy: `always` (fsync before acknowledging, group commit) or `interval`.
    #[arg(long, env = "STEME_FLUSH")]
    pub flush: Option<FlushMode>,
    /// Raft heartbeat interval, in milliseconds.
    #[arg(long, env = "STEME_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Raft election timeout range, in milliseconds: `MIN..MAX`.
    #[arg(long, env = "STEME_ELECTION_TIMEOUT_MS", value_name = "MIN..MAX", value_parser = parse_range)]
    pub election_timeout_ms: Option<(u64, u64)>,
    /// How often leadership goes back to caught-up preferred replicas, in ms (0: never).
    #[arg(long, env = "STEME_LEADER_REBALANCE_MS")]
    pub leader_rebalance_ms: Option<u64>,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("`{s}` is not MIN..MAX"))?;
    let num = |v: &str| v.trim().parse::<u64>().map_err(|e| format!("`{v}`: {e}"));
    Ok((num(a)?, num(b)?))
}

impl Config {
    /// Builds the configuration: defaults, then the TOML file if given, then overrides.
    pub fn load(o: &Overrides) -> Result<Config, ConfigError> {
        let mut c = match &o.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = o.node_id {
            c.node_id = v;
        }
        if let Some(v) = o.listen {
            c.listen = v;
        }
        if let Some(v) = &o.advertised_addr {
            c.advertised_addr = Some(v.clone());
        }
        if let Some(v) = &o.data_dir {
            c.data_dir = v.clone();
        }
        if !o.peers.is_empty() {
            c.peers = o.peers.clone();
        }
        if let Some(v) = o.flush {
            c.flush = v;
        }
        if let Some(v) = o.heartbeat_interval_ms {
            c.heartbeat_interval_ms = v;
        }
        if let Some((min, max)) = o.election_timeout_ms {
            c.election_timeout_min_ms = min;
            c.election_timeout_max_ms = max;
        }
        if let Some(v) = o.leader_rebalance_ms {
            c.leader_rebalance_ms = v;
        }
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

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.node_id == 0 {
            return bad("node_id must be at least 1".into());
        }
        if self.max_frame_bytes < 1024 {
            return bad("max_frame_bytes must be at least 1024".into());
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
        Ok(())
    }

    pub fn max_clock_skew(&self) -> Duration {
        Duration::from_millis(self.max_clock_skew_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_local() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(c.data_dir, PathBuf::from("./steme-data"));
    }

    #[test]
    fn file_then_flags_override() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("steme.toml");
        std::fs::write(
            &path,
            "node_id = 3\nlisten = \"127.0.0.1:7000\"\nflush = \"interval\"\n\
             [[peers]]\nid = 1\naddr = \"127.0.0.1:7001\"\n",
        )
        .unwrap();
        let o = Overrides {
            config: Some(path),
            listen: Some("127.0.0.1:7100".parse().unwrap()),
            ..Overrides::default()
        };
        let c = Config::load(&o).unwrap();
        assert_eq!(c.node_id, 3);
        assert_eq!(c.listen.port(), 7100);
        assert_eq!(c.flush, FlushMode::Interval);
        assert_eq!(
            c.peers,
            vec![Peer {
                id: 1,
                addr: "127.0.0.1:7001".into()
            }]
        );
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "nodeid = 3\n").unwrap();
        assert!(matches!(
            Config::from_file(&path),
            Err(ConfigError::Parse { .. })
        ));
        let o = Overrides {
            node_id: Some(0),
            ..Overrides::default()
        };
        assert!(matches!(Config::load(&o), Err(ConfigError::Invalid(_))));
        assert!("7".parse::<Peer>().is_err());
        assert_eq!(
            "2=127.0.0.1:9".parse::<Peer>().unwrap(),
            Peer {
                id: 2,
                addr: "127.0.0.1:9".into()
            }
        );
    }
}
