//! What every request shares: who callers are, the limits, the metrics, the optional
//! signing key, and the stop signal.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use steme_client::connection::AuthKey;
use steme_client::{ClientConfig, ClientTls, Cluster, SigningKey};
use tokio::sync::watch;

use crate::args::Args;
use crate::identity::Identity;
use crate::metrics::Metrics;
use crate::principals::Callers;

/// The request limits (GATEWAY.md, "Limits").
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_records: usize,
    pub request_timeout: Duration,
}

/// The gateway's shared state.
pub struct Gateway {
    pub callers: Callers,
    pub limits: Limits,
    pub metrics: Metrics,
    /// `--sign-with`: signs posted records that come unsigned.
    pub signer: Option<SigningKey>,
    /// The gateway's own view of the cluster, for `/healthz`.
    pub health: Cluster,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("callers", &self.callers)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds the state from the command line: reads every key, certificate and the
    /// principals file, so that a bad one stops the start with its reason.
    pub fn from_args(args: &Args) -> anyhow::Result<Arc<Gateway>> {
        let limits = Limits {
            max_body_bytes: usize::try_from(args.max_body_bytes)?,
            max_records: usize::try_from(args.max_records)?,
            request_timeout: Duration::from_millis(args.request_timeout_ms),
        };
        let mut own = ClientConfig::default();
        own.connection.client_name = "steme-gateway".into();
        own.request_timeout = limits.request_timeout;
        if let Some(ca) = &args.broker_tls_ca {
            let cert = args
                .broker_tls_cert
                .as_deref()
                .zip(args.broker_tls_key.as_deref());
            own.connection.tls = Some(
                ClientTls::from_pem_files(ca, cert).context("cannot set up TLS to the brokers")?,
            );
        }
        if let Some(path) = &args.broker_auth_key {
            let key = steme_client::keys::load_signing_key(path)
                .context("cannot read --broker-auth-key")?;
            own.connection.auth_key = Some(AuthKey(key));
        }
        let buffer = usize::try_from(args.buffer_bytes)?;
        let make = |name: &str, client: ClientConfig| -> anyhow::Result<Identity> {
            Ok(Identity::new(
                name,
                &args.bootstrap,
                client,
                buffer,
                limits.request_timeout,
            )?)
        };
        let callers = match &args.principals {
            None => Callers::Open(Arc::new(make("gateway", own.clone())?)),
            Some(path) => Callers::load(
                path,
                &own,
                args.broker_tls_ca.as_deref(),
                args.tls_client_ca.is_some(),
                &make,
            )?,
        };
        let signer = match &args.sign_with {
            None => None,
            Some(path) => Some(
                steme_client::keys::load_signing_key(path).context("cannot read --sign-with")?,
            ),
        };
        let health = Cluster::lazy(&args.bootstrap, own)?;
        Ok(Arc::new(Gateway {
            callers,
            limits,
            metrics: Metrics::new(),
            signer,
            health,
            stop: watch::channel(false).0,
        }))
    }

    /// Changes once the gateway stops: streams end.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Tells streams to end (so that their connections can close when the server drains).
    pub fn end_streams(&self) {
        self.stop.send_replace(true);
    }

    /// Sends what the producers hold and closes them.
    pub async fn close(&self) {
        for identity in self.callers.identities() {
            identity.close().await;
        }
    }
}
