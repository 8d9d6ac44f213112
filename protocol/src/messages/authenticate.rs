//! Authentication by key: a client proves it holds an Ed25519 key — the one `steme keygen`
//! writes, often the key it signs assertions with — by signing a challenge, and the
//! connection's principal becomes `key:<hex public key>`.
//!
//! AuthChallenge request: empty. Response (after the error code):
//!
//! ```text
//! +-----------------+
//! | nonce [u8; 32]  |
//! +-----------------+
//! ```
//!
//! Authenticate request, then response (after the error code):
//!
//! ```text
//! +----------------------+---------------------+     +-------------------+
//! | public_key [u8; 32]  | signature [u8; 64]  |     | principal string  |
//! +----------------------+---------------------+     +-------------------+
//! ```
//!
//! The signature is over [`auth_message`]`(nonce)`: a context string that no assertion
//! signature can produce, then the nonce of the connection's last AuthChallenge. A nonce is
//! fresh for each connection and good for one attempt, so a proof cannot be replayed on
//! another connection. A bad proof is answered `AuthenticationFailed` and the connection is
//! closed. (A client certificate authenticates at the TLS handshake as `cert:<CN>` with no
//! request at all.)

use bytes::{BufMut, BytesMut};

use crate::messages::Body;
use crate::wire::{DecodeError, Reader, put_string};

/// What a key signs to authenticate.
pub fn auth_message(nonce: &[u8; 32]) -> Vec<u8> {
    let mut m = b"steme authenticate v1\0".to_vec();
    m.extend_from_slice(nonce);
    m
}

/// The principal of a public key: `key:<hex>`.
pub fn key_principal(public_key: &[u8; 32]) -> String {
    format!("key:{}", hex::encode(public_key))
}

impl AuthenticateRequest {
    /// `key`'s proof for `nonce`.
    pub fn sign(key: &ed25519_dalek::SigningKey, nonce: &[u8; 32]) -> AuthenticateRequest {
        use ed25519_dalek::Signer;
        AuthenticateRequest {
            public_key: key.verifying_key().to_bytes(),
            signature: key.sign(&auth_message(nonce)).to_bytes(),
        }
    }

    /// Checks the proof against `nonce`; the principal it proves, or why not.
    pub fn verify(&self, nonce: &[u8; 32]) -> Result<String, String> {
        let principal = key_principal(&self.public_key);
        let key = ed25519_dalek::VerifyingKey::from_bytes(&self.public_key)
            .map_err(|e| format!("{principal} is not a valid Ed25519 key: {e}"))?;
        key.verify_strict(
            &auth_message(nonce),
            &ed25519_dalek::Signature::from_bytes(&self.signature),
        )
        .map_err(|_| {
            format!("the proof for {principal} does not verify against this connection's challenge")
        })?;
        Ok(principal)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Asks for a nonce to sign (key authentication).
pub struct AuthChallengeRequest {}

#[derive(Debug, Clone, PartialEq, Eq)]
/// A fresh nonce for this connection.
pub struct AuthChallengeResponse {
    /// 32 random bytes to sign.
    pub nonce: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Proves the connection holds a key: its public key and its signature over the nonce.
pub struct AuthenticateRequest {
    /// The Ed25519 public key.
    pub public_key: [u8; 32],
    /// The signature over the nonce.
    pub signature: [u8; 64],
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// The connection is authenticated.
pub struct AuthenticateResponse {
    /// The connection's principal, `key:<hex>`.
    pub principal: String,
}

impl Body for AuthChallengeRequest {
    fn encode(&self, _: &mut BytesMut) {}

    fn decode(_: &mut Reader) -> Result<Self, DecodeError> {
        Ok(AuthChallengeRequest {})
    }
}

impl Body for AuthChallengeResponse {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(&self.nonce);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(AuthChallengeResponse {
            nonce: r.bytes32_fixed()?,
        })
    }
}

impl Body for AuthenticateRequest {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_slice(&self.public_key);
        buf.put_slice(&self.signature);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(AuthenticateRequest {
            public_key: r.bytes32_fixed()?,
            signature: r.bytes64_fixed()?,
        })
    }
}

impl Body for AuthenticateResponse {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.principal);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(AuthenticateResponse {
            principal: r.string()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::roundtrip;

    #[test]
    fn a_proof_verifies_for_its_nonce_only() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let proof = AuthenticateRequest::sign(&key, &[1; 32]);
        let principal = proof.verify(&[1; 32]).expect("verifies");
        assert_eq!(principal, key_principal(&key.verifying_key().to_bytes()));
        assert!(proof.verify(&[2; 32]).is_err(), "another nonce");
        let mut forged = proof.clone();
        forged.public_key = ed25519_dalek::SigningKey::from_bytes(&[6; 32])
            .verifying_key()
            .to_bytes();
        assert!(forged.verify(&[1; 32]).is_err(), "another key");
    }

    #[test]
    fn roundtrips() {
        roundtrip(&AuthChallengeRequest {});
        roundtrip(&AuthChallengeResponse { nonce: [7; 32] });
        roundtrip(&AuthenticateRequest {
            public_key: [1; 32],
            signature: [2; 64],
        });
        roundtrip(&AuthenticateResponse {
            principal: "key:0101".into(),
        });
    }
}
