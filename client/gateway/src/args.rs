//! The command line: every flag also as a `STEME_GATEWAY_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// A stateless HTTP gateway to a Steme cluster (see GATEWAY.md).
#[derive(Debug, Parser)]
#[command(name = "steme-gateway", version, about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The address to serve HTTP (or HTTPS, with --tls-cert) on.
    #[arg(long, env = "STEME_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Brokers to bootstrap from: host:port[,host:port...].
    #[arg(
        long,
        env = "STEME_GATEWAY_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,
    /// The largest request body accepted, in bytes.
    #[arg(long, env = "STEME_GATEWAY_MAX_BODY_BYTES", default_value_t = 16 << 20,
          value_parser = clap::value_parser!(u64).range(1024..=(1 << 30)))]
    pub max_body_bytes: u64,
    /// The most records in one post, and in one read.
    #[arg(long, env = "STEME_GATEWAY_MAX_RECORDS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_records: u64,
    /// How long a request may take before it is answered 504.
    #[arg(long, env = "STEME_GATEWAY_REQUEST_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub request_timeout_ms: u64,
    /// Connections served at once; further ones wait to be accepted.
    #[arg(long, env = "STEME_GATEWAY_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// Bytes of posted records waiting for their acks, per principal; past it posts are
    /// answered 429.
    #[arg(long, env = "STEME_GATEWAY_BUFFER_BYTES", default_value_t = 64 << 20,
          value_parser = clap::value_parser!(u64).range(1 << 20..=(1 << 32)))]
    pub buffer_bytes: u64,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, env = "STEME_GATEWAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "STEME_GATEWAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Ask HTTPS callers for a client certificate signed by this CA (PEM), and verify it.
    #[arg(long, env = "STEME_GATEWAY_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Who may call, and the credentials each caller's requests reach the brokers with
    /// (TOML; see GATEWAY.md). Without it every caller shares the gateway's own identity.
    #[arg(long, env = "STEME_GATEWAY_PRINCIPALS")]
    pub principals: Option<PathBuf>,
    /// The CA (PEM) that signed the brokers' certificates: speak TLS to the brokers.
    #[arg(long, env = "STEME_GATEWAY_BROKER_TLS_CA")]
    pub broker_tls_ca: Option<PathBuf>,
    /// The gateway's own client certificate (PEM) for broker TLS; needs --broker-tls-key.
    #[arg(long, env = "STEME_GATEWAY_BROKER_TLS_CERT", requires_all = ["broker_tls_key", "broker_tls_ca"])]
    pub broker_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --broker-tls-cert.
    #[arg(
        long,
        env = "STEME_GATEWAY_BROKER_TLS_KEY",
        requires = "broker_tls_cert"
    )]
    pub broker_tls_key: Option<PathBuf>,
    /// The gateway's own key file: it authenticates to the brokers as key:<public hex>.
    #[arg(long, env = "STEME_GATEWAY_BROKER_AUTH_KEY")]
    pub broker_auth_key: Option<PathBuf>,
    /// Sign posted records that come unsigned with this key (a trust decision: see
    /// GATEWAY.md). Off by default.
    #[arg(long, env = "STEME_GATEWAY_SIGN_WITH")]
    pub sign_with: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Makes a bearer token: prints the token, and the `token_blake3` line for
    /// --principals.
    Token,
}
