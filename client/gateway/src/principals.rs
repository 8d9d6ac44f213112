//! Who a caller is (`--principals`): a bearer token or a verified client certificate's CN
//! names a principal, and the principal names the credentials its requests reach the
//! brokers with. The brokers' ACLs, quotas and signer allow-lists then apply to those
//! credentials, so an HTTP caller can do no more than its principal.
//!
//! Tokens are kept only as their BLAKE3 hash: the file holds no secret a reader could
//! replay, and a token is found by hashing what the caller sent.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use serde::Deserialize;
use steme_client::ClientConfig;

use crate::error::HttpError;
use crate::identity::Identity;
use crate::server::ConnInfo;
use crate::state::Gateway;

/// One `[[principal]]` of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    token_blake3: Option<String>,
    cert_cn: Option<String>,
    broker_key: Option<PathBuf>,
    broker_cert: Option<PathBuf>,
    broker_cert_key: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    principal: Vec<Entry>,
}

/// How callers are told apart.
#[derive(Debug)]
pub enum Callers {
    /// No `--principals`: every caller shares the gateway's own broker identity.
    Open(Arc<Identity>),
    /// Each caller must name a principal.
    Mapped {
        by_token: HashMap<[u8; 32], Arc<Identity>>,
        by_cn: HashMap<String, Arc<Identity>>,
    },
}

/// What a principal's identity is made from: the gateway's own client settings with the
/// principal's broker credentials in place of the gateway's.
pub type MakeIdentity<'a> = dyn Fn(&str, ClientConfig) -> anyhow::Result<Identity> + 'a;

impl Callers {
    /// Reads a principals file; paths in it are relative to its directory.
    pub fn load(
        path: &Path,
        base: &ClientConfig,
        broker_ca: Option<&Path>,
        client_certs: bool,
        make: &MakeIdentity<'_>,
    ) -> anyhow::Result<Callers> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the principals file {}", path.display()))?;
        let file: File = toml::from_str(&text)
            .with_context(|| format!("the principals file {} is not valid", path.display()))?;
        if file.principal.is_empty() {
            bail!("the principals file {} names no principal", path.display());
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut by_token = HashMap::new();
        let mut by_cn = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for e in file.principal {
            let what = format!("principal {:?} in {}", e.name, path.display());
            if e.name.is_empty() || !names.insert(e.name.clone()) {
                bail!("{what}: names must be given and unique");
            }
            if e.token_blake3.is_none() && e.cert_cn.is_none() {
                bail!("{what}: give token_blake3, cert_cn or both");
            }
            if e.cert_cn.is_some() && !client_certs {
                bail!("{what}: cert_cn needs --tls-client-ca (client certificates)");
            }
            let client =
                broker_credentials(&e, dir, base, broker_ca).with_context(|| what.clone())?;
            let identity = Arc::new(make(&e.name, client).with_context(|| what.clone())?);
            if let Some(hash) = &e.token_blake3 {
                let mut raw = [0u8; 32];
                hex::decode_to_slice(hash, &mut raw)
                    .with_context(|| format!("{what}: token_blake3 is not 64 hex digits"))?;
                if by_token.insert(raw, identity.clone()).is_some() {
                    bail!("{what}: another principal has the same token");
                }
            }
            if let Some(cn) = &e.cert_cn
                && (cn.is_empty() || by_cn.insert(cn.clone(), identity.clone()).is_some())
            {
                bail!("{what}: cert_cn must be non-empty and unique");
            }
        }
        Ok(Callers::Mapped { by_token, by_cn })
    }

    /// Every identity, once each.
    pub fn identities(&self) -> Vec<Arc<Identity>> {
        match self {
            Callers::Open(i) => vec![i.clone()],
            Callers::Mapped { by_token, by_cn } => {
                let mut out: Vec<Arc<Identity>> = Vec::new();
                for i in by_token.values().chain(by_cn.values()) {
                    if !out.iter().any(|o| Arc::ptr_eq(o, i)) {
                        out.push(i.clone());
                    }
                }
                out
            }
        }
    }

    /// The identity a request speaks as, or 401.
    fn resolve(
        &self,
        authorization: Option<&HeaderValue>,
        conn: Option<&ConnInfo>,
    ) -> Result<Arc<Identity>, HttpError> {
        let (by_token, by_cn) = match self {
            Callers::Open(identity) => return Ok(identity.clone()),
            Callers::Mapped { by_token, by_cn } => (by_token, by_cn),
        };
        let unauthorized = |message: &str| {
            HttpError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                message.to_owned(),
            )
        };
        if let Some(value) = authorization {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .ok_or_else(|| unauthorized("the Authorization header is not \"Bearer TOKEN\""))?;
            let hash = *blake3::hash(token.as_bytes()).as_bytes();
            return by_token
                .get(&hash)
                .cloned()
                .ok_or_else(|| unauthorized("the bearer token names no principal"));
        }
        if let Some(cn) = conn.and_then(|c| c.cert_cn.as_deref()) {
            return by_cn
                .get(cn)
                .cloned()
                .ok_or_else(|| unauthorized("the client certificate's CN names no principal"));
        }
        Err(unauthorized(
            "this gateway needs a principal: send Authorization: Bearer TOKEN, or a client certificate",
        ))
    }
}

/// The credentials of `e`, in place of the gateway's own: a key (`key:<hex>`) or a client
/// certificate for broker TLS (`cert:CN`); neither keeps the gateway's own.
fn broker_credentials(
    e: &Entry,
    dir: &Path,
    base: &ClientConfig,
    broker_ca: Option<&Path>,
) -> anyhow::Result<ClientConfig> {
    let mut client = base.clone();
    match (&e.broker_key, &e.broker_cert, &e.broker_cert_key) {
        (None, None, None) => {}
        (Some(key), None, None) => {
            let key = steme_client::keys::load_signing_key(&dir.join(key))?;
            client.connection.auth_key = Some(steme_client::connection::AuthKey(key));
        }
        (None, Some(cert), Some(key)) => {
            let ca = broker_ca.context("broker_cert needs TLS to the brokers (--broker-tls-ca)")?;
            let tls = steme_client::ClientTls::from_pem_files(
                ca,
                Some((&dir.join(cert), &dir.join(key))),
            )?;
            client.connection.tls = Some(tls);
            client.connection.auth_key = None;
        }
        _ => bail!("give broker_key, or broker_cert with broker_cert_key, or neither"),
    }
    Ok(client)
}

/// The identity the request speaks to the brokers as.
pub struct Caller(pub Arc<Identity>);

impl FromRequestParts<Arc<Gateway>> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        gateway: &Arc<Gateway>,
    ) -> Result<Caller, HttpError> {
        let conn = parts.extensions.get::<ConnInfo>();
        gateway
            .callers
            .resolve(parts.headers.get(AUTHORIZATION), conn)
            .map(Caller)
    }
}
