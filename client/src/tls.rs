//! TLS to the broker's client listener (rustls, ring provider): the CA certificates to
//! trust and, optionally, a client certificate to present.
//!
//! [`ClientTls`] is built once from PEM files and shared by every connection of a client
//! (`ConnectionConfig::tls`). The server name checked against the broker's certificate is
//! the host of the address dialled: an IP address (the certificate needs it as an IP SAN)
//! or a DNS name.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Why TLS settings could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read {what} from {path}: {reason}")]
    /// A certificate or key file could not be read or parsed.
    Pem {
        /// What was being read (a certificate, a key…).
        what: &'static str,
        /// The file.
        path: String,
        /// Why it could not be read.
        reason: String,
    },
    #[error("invalid TLS settings: {0}")]
    /// The settings do not make a valid TLS configuration.
    Invalid(String),
}

/// What a client trusts and presents; cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field(
                "client_cert",
                &self.config.client_auth_cert_resolver.has_certs(),
            )
            .finish()
    }
}

/// The certificates in a PEM file (at least one).
pub fn read_certs(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = |reason: String| TlsError::Pem {
        what,
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem("no certificate in it".into()));
    }
    Ok(certs)
}

/// The private key in a PEM file.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Pem {
        what: "a private key",
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The crypto provider every Steme TLS config uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ClientTls {
    /// Trusts the CA certificates in `ca` (PEM); presents `cert` with `key` (PEM) if given.
    pub fn from_pem_files(
        ca: &Path,
        cert_and_key: Option<(&Path, &Path)>,
    ) -> Result<ClientTls, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs(ca, "CA certificates")? {
            roots.add(cert).map_err(|e| {
                TlsError::Invalid(format!("CA certificate in {}: {e}", ca.display()))
            })?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Invalid(e.to_string()))?
            .with_root_certificates(roots);
        let config = match cert_and_key {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => builder
                .with_client_auth_cert(read_certs(cert, "a client certificate")?, read_key(key)?)
                .map_err(|e| {
                    TlsError::Invalid(format!("client certificate {}: {e}", cert.display()))
                })?,
        };
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }

    /// Wraps a connected socket to `addr` in TLS (the handshake is done on return).
    pub(crate) async fn connect(
        &self,
        addr: &str,
        stream: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let host = host_of(addr);
        let name = ServerName::try_from(host.to_owned()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{host} is not a name TLS can check: {e}"),
            )
        })?;
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, stream)
            .await
    }
}

/// The host part of `host:port` (brackets of an IPv6 address removed).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_addresses() {
        assert_eq!(host_of("127.0.0.1:9092"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9092"), "::1");
        assert_eq!(host_of("broker-1.example:9092"), "broker-1.example");
    }
}
