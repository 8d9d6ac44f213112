//! The Ed25519 batch equation with one term per signer key.
//!
//! Batch verification checks, for random 128-bit `z_i`,
//!
//! ```text
//! [-Σ z_i·s_i] B + Σ [z_i] R_i + Σ [z_i·k_i] A_i = 0,    k_i = SHA-512(R_i ‖ A_i ‖ M_i)
//! ```
//!
//! as one variable-time multiscalar multiplication. `ed25519_dalek::verify_batch` gives
//! every signature its own `A_i` term: `2n + 1` points for `n` signatures. The records of a
//! produce request are mostly signed by one key, and the `A` terms of one key add up to a
//! single term `[Σ z_i·k_i] A`: `n + 1 + keys` points, which cuts the multiplication, the
//! bulk of the cost, nearly in half. For a key in the prime-order subgroup (every honestly
//! made key) the sum is the same group element, so the equation accepts exactly what the
//! per-signature form accepts for the same `z_i`.
//!
//! Like `verify_batch` the check is cofactorless and needs canonical `s`; it can only say
//! "all valid" or "some signature is bad": [`super::BatchVerifier`] then searches the batch
//! to name the bad record. Like every cofactorless batch check, it accepts a signature
//! with a small-order component (in `R`, or in a key `is_weak` lets through because it is
//! not itself of small order) that `verify_strict` refuses, about one time in eight;
//! scalars are reduced mod ℓ, so for such a key the summed and per-signature forms differ
//! by a small-order point, and each accepts with those odds. Only the key's owner can make
//! such signatures.
//!
//! The `z_i` are read from BLAKE3 keyed with a per-process random key, over every
//! signature's `k_i` and `s_i`: chosen after the signatures are fixed, and unknown to
//! whoever chose them (without the key an attacker cannot even grind offline).

use std::sync::OnceLock;

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha512};

/// Buffers for [`Equation::holds`], reused from batch to batch.
#[derive(Default)]
pub(super) struct Equation {
    scalars: Vec<Scalar>,
    points: Vec<EdwardsPoint>,
    /// Per signature: `k_i`, `s_i` and the index of its key in `keys`.
    k: Vec<Scalar>,
    s: Vec<Scalar>,
    key_of: Vec<usize>,
    /// The batch's distinct signer keys, and the sum of `z_i·k_i` for each.
    keys: Vec<VerifyingKey>,
    key_terms: Vec<Scalar>,
}

impl Equation {
    /// Whether the batch equation holds for `batch`: each signature with the message it
    /// signs (a record's 32-byte id) and its signer's key. False for any `s` that is not
    /// canonical or `R` that is not a point, as single verification refuses those too.
    pub(super) fn holds<'a>(
        &mut self,
        batch: impl IntoIterator<Item = (&'a [u8; 32], &'a [u8; 64], &'a VerifyingKey)>,
    ) -> bool {
        self.scalars.clear();
        self.points.clear();
        self.k.clear();
        self.s.clear();
        self.key_of.clear();
        self.keys.clear();
        // Slot 0 is B's coefficient, filled in last.
        self.scalars.push(Scalar::ZERO);
        self.points.push(ED25519_BASEPOINT_POINT);
        let mut transcript = blake3::Hasher::new_keyed(z_key());
        for (message, signature, key) in batch {
            let (r, s) = signature.split_at(32);
            let s: [u8; 32] = s.try_into().unwrap_or([0xff; 32]);
            let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s)) else {
                return false;
            };
            let Some(r_point) = CompressedEdwardsY::from_slice(r)
                .ok()
                .and_then(|c| c.decompress())
            else {
                return false;
            };
            // Records of one request mostly share a signer: compare with the last first.
            let known = match self.keys.last() {
                Some(last) if last.as_bytes() == key.as_bytes() => Some(self.keys.len() - 1),
                _ => self
                    .keys
                    .iter()
                    .position(|k| k.as_bytes() == key.as_bytes()),
            };
            let key_index = known.unwrap_or_else(|| {
                self.keys.push(*key);
                self.keys.len() - 1
            });
            let mut h = Sha512::new();
            h.update(r);
            h.update(key.as_bytes());
            h.update(message);
            let wide: [u8; 64] = h.finalize().into();
            transcript.update(&wide);
            transcript.update(signature);
            self.k.push(Scalar::from_bytes_mod_order_wide(&wide));
            self.s.push(s);
            self.key_of.push(key_index);
            self.points.push(r_point);
        }
        transcript.update(&(self.k.len() as u64).to_le_bytes());
        let mut zs = transcript.finalize_xof();
        self.key_terms.clear();
        self.key_terms.resize(self.keys.len(), Scalar::ZERO);
        let mut b_coefficient = Scalar::ZERO;
        for ((k, s), &key) in self.k.iter().zip(&self.s).zip(&self.key_of) {
            let mut z = [0u8; 16];
            zs.fill(&mut z);
            let z = Scalar::from(u128::from_le_bytes(z));
            b_coefficient += z * s;
            self.key_terms[key] += z * k;
            self.scalars.push(z);
        }
        self.scalars[0] = -b_coefficient;
        self.scalars.extend_from_slice(&self.key_terms);
        self.points
            .extend(self.keys.iter().map(VerifyingKey::to_edwards));
        EdwardsPoint::vartime_multiscalar_mul(&self.scalars, &self.points).is_identity()
    }
}

/// The key the `z_i` are derived with: random per process (all zero only if the OS has no
/// randomness to give, which leaves the `z_i` bound to the whole batch, as
/// `ed25519_dalek::verify_batch` derives them).
fn z_key() -> &'static [u8; 32] {
    static KEY: OnceLock<[u8; 32]> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut key = [0u8; 32];
        if getrandom::fill(&mut key).is_err() {
            key = [0; 32];
        }
        key
    })
}
