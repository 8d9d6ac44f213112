//! TLS on the client listener (D11): rustls with the ring provider, the certificate and key
//! from PEM files, and optionally the CAs whose client certificates are accepted.
//!
//! With TLS configured the listener speaks nothing else. A connection whose first byte is
//! not a TLS handshake record is a plaintext client: it is told so in a plaintext error
//! frame (so `steme` without `--tls-ca` says why) and closed.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use crate::config::Config;

/// The first byte of every TLS record that opens a handshake (ContentType handshake).
pub const HANDSHAKE_RECORD: u8 = 0x16;

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let found: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?;
    match found.is_empty() {
        true => Err(format!("no certificate in {}", path.display())),
        false => Ok(found),
    }
}

/// The acceptor for the client listener, or `None` without TLS settings.
pub fn acceptor(cfg: &Config) -> Result<Option<TlsAcceptor>, String> {
    let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) else {
        return Ok(None);
    };
    let chain = certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the private key in {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match &cfg.tls_client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| format!("bad CA certificate in {}: {e}", ca.display()))?;
            }
            // Accepted, not demanded: whether a client must authenticate is `--auth`'s call.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("client CA {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("certificate {} with its key: {e}", cert.display()))?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}
