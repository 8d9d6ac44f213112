//! Client authentication (D11): who a connection is.
//!
//! A connection's principal is `cert:<CN>` when it presented a client certificate at the
//! TLS handshake (`--tls-client-ca`), or `key:<hex>` once it has proven an Ed25519 key
//! (AuthChallenge, then Authenticate: see `steme_protocol::messages::authenticate`).
//! Under `--auth required`, every request other than the handshake and authentication is
//! refused without a principal, and the connection closed: an unauthenticated client
//! learns why and gets nothing else.
//!
//! The reader loop asks [`Session::screen`] about each request before it is handled, in
//! order, so a client cannot race requests past its own authentication.

use std::sync::Arc;

use steme_protocol::messages::Request;
use steme_protocol::messages::authenticate::AuthChallengeResponse;
use steme_protocol::{ApiError, ErrorCode};

use crate::config::AuthMode;
use crate::reply::Reply;

/// One connection's authentication state.
#[derive(Debug)]
pub struct Session {
    mode: AuthMode,
    /// The challenge last handed out, good for one attempt.
    nonce: Option<[u8; 32]>,
    principal: Option<Arc<str>>,
}

/// What the reader loop does with a request.
pub enum Screened {
    /// Handle it as usual.
    Pass,
    /// Answer it with this (authentication itself).
    Answer(Reply),
    /// Answer it with this error and close the connection.
    Refuse(ApiError),
}

impl Session {
    /// A session of a connection that presented `cert_principal` at the TLS handshake.
    pub fn new(mode: AuthMode, cert_principal: Option<String>) -> Session {
        Session {
            mode,
            nonce: None,
            principal: cert_principal.map(Arc::from),
        }
    }

    /// Who the connection is, once known.
    pub fn principal(&self) -> Option<Arc<str>> {
        self.principal.clone()
    }

    pub fn screen(&mut self, req: &Request) -> Screened {
        match req {
            Request::ApiVersions(_) => Screened::Pass,
            // One principal per connection: a key minted per request must not buy a fresh
            // quota (or a fresh identity) on a live connection.
            Request::AuthChallenge(_) | Request::Authenticate(_) if self.principal.is_some() => {
                Screened::Refuse(failed(format!(
                    "this connection is already authenticated as {}; a connection has one \
                     principal",
                    self.principal.as_deref().unwrap_or_default()
                )))
            }
            Request::AuthChallenge(_) => {
                let mut nonce = [0u8; 32];
                if let Err(e) = getrandom::fill(&mut nonce) {
                    return Screened::Refuse(ApiError::other(
                        ErrorCode::Internal,
                        format!("no randomness for a challenge: {e}"),
                    ));
                }
                self.nonce = Some(nonce);
                Screened::Answer(Reply::ok(AuthChallengeResponse { nonce }))
            }
            Request::Authenticate(proof) => {
                let Some(nonce) = self.nonce.take() else {
                    return Screened::Refuse(failed(
                        "no challenge to answer: send AuthChallenge first".into(),
                    ));
                };
                match proof.verify(&nonce) {
                    Ok(principal) => {
                        tracing::debug!(%principal, "authenticated");
                        self.principal = Some(Arc::from(principal.as_str()));
                        Screened::Answer(Reply::ok(
                            steme_protocol::messages::authenticate::AuthenticateResponse {
                                principal,
                            },
                        ))
                    }
                    Err(why) => {
                        tracing::info!(%why, "authentication failed");
                        Screened::Refuse(failed(why))
                    }
                }
            }
            _ if self.mode == AuthMode::Required && self.principal.is_none() => {
                Screened::Refuse(ApiError::other(
                    ErrorCode::AuthenticationRequired,
                    "this broker requires authentication (--auth required): present a client \
                     certificate over TLS, or prove a key (steme --auth-key FILE)",
                ))
            }
            _ => Screened::Pass,
        }
    }
}

fn failed(message: String) -> ApiError {
    ApiError::other(
        ErrorCode::AuthenticationFailed,
        format!("authentication failed: {message}"),
    )
}

/// The principal of a client certificate (DER): `cert:<CN>` of its subject, if it has one.
pub fn cert_principal(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?;
    (!cn.is_empty()).then(|| format!("cert:{cn}"))
}
