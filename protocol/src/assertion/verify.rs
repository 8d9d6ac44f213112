//! Verifying signed records: one at a time, or a batch at once (Ed25519 batch verification,
//! with a fallback that names the first bad record).

use ed25519_dalek::{Signature, VerifyingKey};

use super::batch::Equation;
use super::{AssertionError, AssertionId, SIGNER_RANGE, VERIFY_CHUNK};
use crate::wire::DecodeError;

/// Verifies one record: canonical assertion bytes and the signature over their id.
pub fn verify_one(canonical: &[u8], signature: &[u8; 64]) -> Result<(), AssertionError> {
    let key = verifying_key(canonical)?;
    let id = AssertionId::of(canonical);
    key.verify_strict(&id.0, &Signature::from_bytes(signature))
        .map_err(|_| AssertionError::BadSignature)
}

fn verifying_key(canonical: &[u8]) -> Result<VerifyingKey, AssertionError> {
    let raw: &[u8; 32] = canonical
        .get(SIGNER_RANGE)
        .and_then(|s| s.try_into().ok())
        .ok_or(AssertionError::Decode(DecodeError::UnexpectedEof {
            offset: SIGNER_RANGE.start,
            need: 32,
            have: canonical.len().saturating_sub(SIGNER_RANGE.start),
        }))?;
    let key = VerifyingKey::from_bytes(raw).map_err(|_| AssertionError::BadKey)?;
    if key.is_weak() {
        return Err(AssertionError::WeakKey);
    }
    Ok(key)
}

/// A record that failed verification, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("record {index}: {reason}")]
pub struct VerifyError {
    /// Index of the first bad record in the slice given to [`verify_batch`].
    pub index: usize,
    /// Why it failed.
    pub reason: AssertionError,
}

/// Reusable buffers for [`verify_batch`], so verifying a stream of batches allocates once.
#[derive(Default)]
pub struct BatchVerifier {
    ids: Vec<[u8; 32]>,
    keys: Vec<VerifyingKey>,
    signers: Signers,
    equation: Equation,
}

/// The signer keys seen last, decoded: decompressing a key and checking that it is not
/// weak cost two field inversions, as much as a third of a batch-verified signature, and
/// the records of a request mostly share a few signers. Looked up by the key's exact 32
/// bytes, so a hit is the same point the bytes would decode to.
#[derive(Default)]
struct Signers {
    recent: Vec<([u8; 32], VerifyingKey)>,
    next: usize,
}

/// Signer keys a verifier keeps decoded.
const SIGNERS_KEPT: usize = 8;

impl Signers {
    fn key(&mut self, canonical: &[u8]) -> Result<VerifyingKey, AssertionError> {
        let Some(raw) = canonical
            .get(SIGNER_RANGE)
            .and_then(|b| <&[u8; 32]>::try_from(b).ok())
        else {
            return verifying_key(canonical); // too short: the error says so
        };
        if let Some((_, key)) = self.recent.iter().find(|(b, _)| b == raw) {
            return Ok(*key);
        }
        let key = verifying_key(canonical)?;
        let entry = (*raw, key);
        if self.recent.len() < SIGNERS_KEPT {
            self.recent.push(entry);
        } else {
            self.recent[self.next] = entry;
            self.next = (self.next + 1) % SIGNERS_KEPT;
        }
        Ok(key)
    }
}

impl BatchVerifier {
    /// Verifies every `(canonical assertion, signature)` with Ed25519 batch verification
    /// (one term per signer key: see [`super::batch`]), in chunks of [`VERIFY_CHUNK`]. A
    /// weak or invalid key is refused before the batch equation (naming an earlier bad
    /// record of its chunk if there is one); when a chunk fails, it is searched by halves
    /// to name its first bad record.
    pub fn verify<'a>(
        &mut self,
        records: impl IntoIterator<Item = (&'a [u8], &'a [u8; 64])>,
    ) -> Result<(), VerifyError> {
        self.ids.clear();
        let mut chunk: Vec<(&[u8], &[u8; 64])> = Vec::with_capacity(VERIFY_CHUNK);
        let mut base = 0;
        for rec in records {
            chunk.push(rec);
            if chunk.len() == VERIFY_CHUNK {
                self.verify_chunk(base, &chunk)?;
                base += chunk.len();
                chunk.clear();
            }
        }
        if !chunk.is_empty() {
            self.verify_chunk(base, &chunk)?;
        }
        Ok(())
    }

    fn verify_chunk(
        &mut self,
        base: usize,
        chunk: &[(&[u8], &[u8; 64])],
    ) -> Result<(), VerifyError> {
        self.keys.clear();
        let first_id = self.ids.len();
        for (i, (canonical, _)) in chunk.iter().enumerate() {
            let key = match self.signers.key(canonical) {
                Ok(key) => key,
                // Refused before any curve arithmetic; unless an earlier record is bad too,
                // and then that one is named.
                Err(reason) => {
                    return Err(first_bad(base, &chunk[..i]).unwrap_or(VerifyError {
                        index: base + i,
                        reason,
                    }));
                }
            };
            self.keys.push(key);
            self.ids.push(*AssertionId::of(canonical).as_bytes());
        }
        let ids = &self.ids[first_id..];
        if self.equation.holds(terms(ids, chunk, &self.keys)) {
            return Ok(());
        }
        if let Some(bad) = first_bad_by_halves(&mut self.equation, ids, chunk, &self.keys) {
            return Err(VerifyError {
                index: base + bad.index,
                reason: bad.reason,
            });
        }
        // The batch equation failed but every signature verifies on its own: this happens
        // only for adversarial signatures with small-order components. Refuse the chunk.
        Err(VerifyError {
            index: base,
            reason: AssertionError::BadSignature,
        })
    }
}

/// The batch equation's terms for `chunk`, whose ids and keys are `ids` and `keys`.
fn terms<'a>(
    ids: &'a [[u8; 32]],
    chunk: &'a [(&[u8], &'a [u8; 64])],
    keys: &'a [VerifyingKey],
) -> impl Iterator<Item = (&'a [u8; 32], &'a [u8; 64], &'a VerifyingKey)> {
    ids.iter()
        .zip(chunk.iter().map(|(_, sig)| *sig))
        .zip(keys)
        .map(|((id, sig), key)| (id, sig, key))
}

/// Below this many records, a failed range is verified one record at a time.
const SINGLE_BELOW: usize = 16;

/// The first bad record of a chunk whose batch equation failed, found by halves: a half
/// that holds as a batch is cleared at a fifth of the cost of verifying it record by
/// record. Refusing a chunk whose last record is forged costs about 3× verifying a good
/// one, against about 6× one record at a time (`protocol_bench`). Ranges of fewer than
/// [`SINGLE_BELOW`] records are verified one by one. `None` if no record fails on its own
/// (adversarial small-order components).
fn first_bad_by_halves(
    equation: &mut Equation,
    ids: &[[u8; 32]],
    chunk: &[(&[u8], &[u8; 64])],
    keys: &[VerifyingKey],
) -> Option<VerifyError> {
    if chunk.len() < SINGLE_BELOW {
        return first_bad(0, chunk);
    }
    let mid = chunk.len() / 2;
    for (lo, hi) in [(0, mid), (mid, chunk.len())] {
        let (ids, part, keys) = (&ids[lo..hi], &chunk[lo..hi], &keys[lo..hi]);
        if equation.holds(terms(ids, part, keys)) {
            continue;
        }
        if let Some(bad) = first_bad_by_halves(equation, ids, part, keys) {
            return Some(VerifyError {
                index: lo + bad.index,
                reason: bad.reason,
            });
        }
    }
    None
}

/// The first record of `records` (at `base` in the whole batch) that fails on its own.
fn first_bad(base: usize, records: &[(&[u8], &[u8; 64])]) -> Option<VerifyError> {
    records
        .iter()
        .enumerate()
        .find_map(|(i, (canonical, sig))| {
            verify_one(canonical, sig).err().map(|reason| VerifyError {
                index: base + i,
                reason,
            })
        })
}

impl BatchVerifier {
    /// The content ids of the records of the last successful [`verify`](Self::verify), in
    /// order: computed once, for verification, and reused by the caller (dedup).
    pub fn ids(&self) -> impl ExactSizeIterator<Item = AssertionId> + '_ {
        self.ids.iter().map(|id| AssertionId(*id))
    }
}

/// Whether every record verifies by `ed25519_dalek::verify_batch` in one call: the
/// textbook batch equation, one term per signature. The benches measure this machine's
/// verification ceiling with it (in calls of [`VERIFY_CHUNK`]), and tests check that
/// [`BatchVerifier`] agrees with it.
pub fn dalek_verify_batch<'a>(records: impl IntoIterator<Item = (&'a [u8], &'a [u8; 64])>) -> bool {
    let mut signers = Signers::default();
    let (mut ids, mut keys, mut sigs) = (Vec::new(), Vec::new(), Vec::new());
    for (canonical, sig) in records {
        let Ok(key) = signers.key(canonical) else {
            return false;
        };
        keys.push(key);
        ids.push(*AssertionId::of(canonical).as_bytes());
        sigs.push(Signature::from_bytes(sig));
    }
    let messages: Vec<&[u8]> = ids.iter().map(|id| &id[..]).collect();
    ed25519_dalek::verify_batch(&messages, &sigs, &keys).is_ok()
}

/// Convenience wrapper over [`BatchVerifier::verify`].
pub fn verify_batch<'a>(
    records: impl IntoIterator<Item = (&'a [u8], &'a [u8; 64])>,
) -> Result<(), VerifyError> {
    BatchVerifier::default().verify(records)
}
