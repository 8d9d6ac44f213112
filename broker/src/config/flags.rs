//! The command line: one flag, with its `STEME_*` environment variable, per setting of
//! [`Config`] (the TOML file's keys, `-` for `_`), overriding the file and the defaults.
//! Lists (`--peer`, `--superuser`, `--quota`) repeat, or take commas in their variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{AuthMode, Authorization, Config, FlushMode, Peer, QuotaLimits};

/// Flags (and their `STEME_*` environment variables) that override the file and defaults.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// TOML file with any of the settings below (flags and env win over it). A commented
    /// sample listing every setting: `broker/steme.toml`.
    #[arg(long, env = "STEME_CONFIG")]
    pub config: Option<PathBuf>,
    /// This broker's id, unique in the cluster.
    #[arg(long, env = "STEME_NODE_ID")]
    pub node_id: Option<u64>,
    /// Address to listen on for clients (the client plane).
    #[arg(long, env = "STEME_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Address to advertise to clients (default: the bound address).
    #[arg(long, env = "STEME_ADVERTISED_ADDR")]
    pub advertised_addr: Option<String>,
    /// Address to listen on for other brokers (the peer plane; every connection
    /// authenticated with the cluster secret). Needed with `--peer`.
    #[arg(long, env = "STEME_PEER_LISTEN")]
    pub peer_listen: Option<SocketAddr>,
    /// Peer-plane address to advertise to other brokers (default: the bound address).
    #[arg(long, env = "STEME_PEER_ADVERTISED_ADDR")]
    pub peer_advertised_addr: Option<String>,
    /// File holding the cluster secret (at least 32 bytes; e.g. `openssl rand -hex 32`),
    /// the same on every broker. Needed with `--peer` or `--peer-listen`.
    #[arg(long, env = "STEME_CLUSTER_SECRET_FILE")]
    pub cluster_secret_file: Option<PathBuf>,
    /// Address of the admin HTTP listener: `/metrics` (Prometheus), `/healthz`, `/readyz`
    /// (off by default; not authenticated, so bind it where only operators reach).
    #[arg(long, env = "STEME_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Directory for partition logs and metadata.
    #[arg(long, env = "STEME_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Another broker, `ID=ADDR`, by its peer-plane address (repeatable).
    #[arg(
        long = "peer",
        value_name = "ID=ADDR",
        env = "STEME_PEERS",
        value_delimiter = ','
    )]
    pub peers: Vec<Peer>,
    /// Client connections open at once, in all.
    #[arg(long, env = "STEME_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// The largest frame a client or peer may send, length prefix included, in bytes.
    #[arg(long, env = "STEME_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Requests one connection may have in flight before the broker stops reading it.
    #[arg(long, env = "STEME_MAX_INFLIGHT_PER_CONNECTION")]
    pub max_inflight_per_connection: Option<usize>,
    /// Partitions of a topic created without a count.
    #[arg(long, env = "STEME_DEFAULT_PARTITIONS")]
    pub default_partitions: Option<u32>,
    /// Size of a partition log's segments, in bytes (topics may override it).
    #[arg(long, env = "STEME_SEGMENT_BYTES")]
    pub segment_bytes: Option<u64>,
    /// Bytes a partition keeps before its oldest segments go (topics may override it).
    #[arg(long, env = "STEME_RETENTION_BYTES")]
    pub retention_bytes: Option<u64>,
    /// How long a partition keeps records, in ms (topics may override it).
    #[arg(long, env = "STEME_RETENTION_MS")]
    pub retention_ms: Option<u64>,
    /// Flush policy: `always` (fsync before acknowledging, group commit) or `interval`.
    #[arg(long, env = "STEME_FLUSH")]
    pub flush: Option<FlushMode>,
    /// With `--flush interval`: how often logs are synced, in ms.
    #[arg(long, env = "STEME_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// How far ahead of this broker's clock a producer's causality token may be, in ms.
    #[arg(long, env = "STEME_MAX_CLOCK_SKEW_MS")]
    pub max_clock_skew_ms: Option<u64>,
    /// Raft heartbeat interval, in milliseconds.
    #[arg(long, env = "STEME_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Raft election timeout range, in milliseconds: `MIN..MAX` (the file's
    /// `election_timeout_min_ms` and `election_timeout_max_ms`).
    #[arg(long, env = "STEME_ELECTION_TIMEOUT_MS", value_name = "MIN..MAX", value_parser = parse_range)]
    pub election_timeout_ms: Option<(u64, u64)>,
    /// Verify record signatures on produce: `true` or `false` (topics may turn it off).
    #[arg(long, env = "STEME_VERIFY_SIGNATURES", value_name = "true|false")]
    pub verify_signatures: Option<bool>,
    /// How often each partition checks its retention limits, in ms.
    #[arg(long, env = "STEME_RETENTION_CHECK_MS")]
    pub retention_check_ms: Option<u64>,
    /// How often leadership goes back to caught-up preferred replicas, in ms (0: never).
    #[arg(long, env = "STEME_LEADER_REBALANCE_MS")]
    pub leader_rebalance_ms: Option<u64>,
    /// Partitions of the internal `__groups` topic (consumer groups), made on first use.
    #[arg(long, env = "STEME_GROUP_PARTITIONS")]
    pub group_partitions: Option<u32>,
    /// How fast the scrubber re-verifies the logs, in bytes per second (0: off).
    #[arg(long, env = "STEME_SCRUB_BYTES_PER_SEC")]
    pub scrub_bytes_per_sec: Option<u64>,
    /// How fast a leader copies to the replicas moves add, in bytes per second (0: no limit).
    #[arg(long, env = "STEME_REASSIGN_BYTES_PER_SEC")]
    pub reassign_bytes_per_sec: Option<u64>,
    /// The least time between two scrub passes over one replica's log, in ms.
    #[arg(long, env = "STEME_SCRUB_INTERVAL_MS")]
    pub scrub_interval_ms: Option<u64>,
    /// The most partition replicas placed on any one broker.
    #[arg(long, env = "STEME_MAX_PARTITIONS_PER_BROKER")]
    pub max_partitions_per_broker: Option<u32>,
    /// Close a client connection idle (nothing in flight, nothing received) this long, in ms.
    #[arg(long, env = "STEME_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Close a connection whose frame has not arrived whole this long after its first
    /// byte, in ms.
    #[arg(long, env = "STEME_FRAME_TIMEOUT_MS")]
    pub frame_timeout_ms: Option<u64>,
    /// Client connections one IP address may hold at once.
    #[arg(long, env = "STEME_MAX_CONNECTIONS_PER_IP")]
    pub max_connections_per_ip: Option<usize>,
    /// TLS on the client listener: its certificate chain (PEM), with --tls-key. Plaintext
    /// clients are then refused.
    #[arg(long, env = "STEME_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "STEME_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Accept client certificates signed by the CA certificates in this PEM file.
    #[arg(long, env = "STEME_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Client authentication: `off` (the default), `optional` or `required` (a client
    /// certificate, or a key proven with `steme --auth-key FILE`).
    #[arg(long, env = "STEME_AUTH")]
    pub auth: Option<AuthMode>,
    /// `on`: deny every client request no ACL allows (`steme acl add`), but a superuser's.
    /// `off` (the default): allow everything.
    #[arg(long, env = "STEME_AUTHORIZATION", value_name = "on|off")]
    pub authorization: Option<Authorization>,
    /// A principal allowed everything whatever the ACLs, e.g. `cert:ops` (repeatable).
    #[arg(
        long = "superuser",
        value_name = "PRINCIPAL",
        env = "STEME_SUPERUSERS",
        value_delimiter = ','
    )]
    pub superusers: Vec<String>,
    /// Default produce quota per principal, in record bytes per second.
    #[arg(long, env = "STEME_QUOTA_PRODUCE_BYTES_PER_SEC")]
    pub quota_produce_bytes_per_sec: Option<u64>,
    /// Default fetch quota per principal, in record bytes per second.
    #[arg(long, env = "STEME_QUOTA_FETCH_BYTES_PER_SEC")]
    pub quota_fetch_bytes_per_sec: Option<u64>,
    /// Default number of connections one principal may hold.
    #[arg(long, env = "STEME_QUOTA_CONNECTIONS")]
    pub quota_connections: Option<u32>,
    /// One principal's limit, `PRINCIPAL/LIMIT=VALUE` with LIMIT one of
    /// `produce_bytes_per_sec`, `fetch_bytes_per_sec`, `connections` (repeatable; the
    /// file's `[quotas."PRINCIPAL"]`).
    #[arg(
        long = "quota",
        value_name = "PRINCIPAL/LIMIT=VALUE",
        env = "STEME_QUOTAS",
        value_delimiter = ',',
        value_parser = parse_quota
    )]
    pub quotas: Vec<(String, QuotaLimits)>,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("`{s}` is not MIN..MAX"))?;
    let num = |v: &str| v.trim().parse::<u64>().map_err(|e| format!("`{v}`: {e}"));
    Ok((num(a)?, num(b)?))
}

/// `PRINCIPAL/LIMIT=VALUE` as the one limit it sets.
fn parse_quota(s: &str) -> Result<(String, QuotaLimits), String> {
    let (who, setting) = s
        .rsplit_once('/')
        .ok_or_else(|| format!("quota `{s}` is not PRINCIPAL/LIMIT=VALUE"))?;
    let (limit, value) = setting
        .split_once('=')
        .ok_or_else(|| format!("quota `{s}` is not PRINCIPAL/LIMIT=VALUE"))?;
    let value: u64 = value
        .trim()
        .parse()
        .map_err(|e| format!("quota `{s}`: {e}"))?;
    let mut q = QuotaLimits::default();
    match limit.trim() {
        "produce_bytes_per_sec" => q.produce_bytes_per_sec = Some(value),
        "fetch_bytes_per_sec" => q.fetch_bytes_per_sec = Some(value),
        "connections" => {
            q.connections = Some(u32::try_from(value).map_err(|e| format!("quota `{s}`: {e}"))?);
        }
        other => {
            return Err(format!(
                "quota `{s}`: unknown limit `{other}` (produce_bytes_per_sec, \
                 fetch_bytes_per_sec or connections)"
            ));
        }
    }
    Ok((who.trim().to_owned(), q))
}

/// `Some(value)` overrides.
fn set<T: Clone>(field: &mut T, value: &Option<T>) {
    if let Some(v) = value {
        *field = v.clone();
    }
}

/// `Some(value)` overrides an optional setting.
fn set_some<T: Clone>(field: &mut Option<T>, value: &Option<T>) {
    if value.is_some() {
        field.clone_from(value);
    }
}

impl Overrides {
    /// Applies every flag given to `c`.
    pub(super) fn apply(&self, c: &mut Config) {
        let o = self;
        set(&mut c.node_id, &o.node_id);
        set(&mut c.listen, &o.listen);
        set_some(&mut c.advertised_addr, &o.advertised_addr);
        set(&mut c.data_dir, &o.data_dir);
        if !o.peers.is_empty() {
            c.peers = o.peers.clone();
        }
        set_some(&mut c.peer_listen, &o.peer_listen);
        set_some(&mut c.peer_advertised_addr, &o.peer_advertised_addr);
        set_some(&mut c.cluster_secret_file, &o.cluster_secret_file);
        set_some(&mut c.admin_listen, &o.admin_listen);
        set(&mut c.max_connections, &o.max_connections);
        set(&mut c.max_frame_bytes, &o.max_frame_bytes);
        set(
            &mut c.max_inflight_per_connection,
            &o.max_inflight_per_connection,
        );
        set(&mut c.default_partitions, &o.default_partitions);
        set(&mut c.segment_bytes, &o.segment_bytes);
        set_some(&mut c.retention_bytes, &o.retention_bytes);
        set_some(&mut c.retention_ms, &o.retention_ms);
        set(&mut c.flush, &o.flush);
        set(&mut c.flush_interval_ms, &o.flush_interval_ms);
        set(&mut c.max_clock_skew_ms, &o.max_clock_skew_ms);
        set(&mut c.heartbeat_interval_ms, &o.heartbeat_interval_ms);
        if let Some((min, max)) = o.election_timeout_ms {
            c.election_timeout_min_ms = min;
            c.election_timeout_max_ms = max;
        }
        set(&mut c.verify_signatures, &o.verify_signatures);
        set(&mut c.retention_check_ms, &o.retention_check_ms);
        set(&mut c.leader_rebalance_ms, &o.leader_rebalance_ms);
        set(&mut c.group_partitions, &o.group_partitions);
        set(&mut c.scrub_bytes_per_sec, &o.scrub_bytes_per_sec);
        set(&mut c.reassign_bytes_per_sec, &o.reassign_bytes_per_sec);
        set(&mut c.scrub_interval_ms, &o.scrub_interval_ms);
        set(
            &mut c.max_partitions_per_broker,
            &o.max_partitions_per_broker,
        );
        set(&mut c.idle_timeout_ms, &o.idle_timeout_ms);
        set(&mut c.frame_timeout_ms, &o.frame_timeout_ms);
        set(&mut c.max_connections_per_ip, &o.max_connections_per_ip);
        set_some(&mut c.tls_cert, &o.tls_cert);
        set_some(&mut c.tls_key, &o.tls_key);
        set_some(&mut c.tls_client_ca, &o.tls_client_ca);
        set(&mut c.auth, &o.auth);
        set(&mut c.authorization, &o.authorization);
        if !o.superusers.is_empty() {
            c.superusers = o.superusers.clone();
        }
        let q = &mut c.quota_defaults;
        set_some(&mut q.produce_bytes_per_sec, &o.quota_produce_bytes_per_sec);
        set_some(&mut q.fetch_bytes_per_sec, &o.quota_fetch_bytes_per_sec);
        set_some(&mut q.connections, &o.quota_connections);
        for (who, limit) in &o.quotas {
            let merged = c.quotas.entry(who.clone()).or_default();
            set_some(
                &mut merged.produce_bytes_per_sec,
                &limit.produce_bytes_per_sec,
            );
            set_some(&mut merged.fetch_bytes_per_sec, &limit.fetch_bytes_per_sec);
            set_some(&mut merged.connections, &limit.connections);
        }
    }
}
