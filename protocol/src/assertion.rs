//! Signed, content-addressed assertions (D5): the model, its canonical encoding, ids,
//! signing and (batch) verification, and the JSON form.
//!
//! # Canonical encoding, version 1
//!
//! One byte sequence per assertion and signer; all integers little-endian:
//!
//! ```text
//! byte 0      1                33           41      42
//!      +------+----------------+------------+-------+------------------+------------------+
//!      | ver  | signer         | issued_at  | flags | confidence?      | supersedes?      |
//!      | u8=1 | [u8; 32]       | u64 ms     | u8    | f64 (flag bit 0) | [u8;32] (bit 1)  |
//!      +------+----------------+------------+-------+------------------+------------------+
//!      then  subject   : u16 length, UTF-8 (non-empty)
//!            predicate : u16 length, UTF-8 (non-empty)
//!            object    : u8 tag, value
//!                          0 text    u32 length, UTF-8
//!                          1 integer i64
//!                          2 float   f64 (finite; IEEE-754 bits as stored)
//!                          3 boolean u8 0|1
//!                          4 bytes   u32 length, bytes
//!                          5 ref     u16 length, UTF-8 subject (non-empty)
//!            source    : u16 length, UTF-8
//! ```
//!
//! - `issued_at` is the producer's clock, milliseconds since the Unix epoch.
//! - `flags` bits other than 0 and 1 must be zero; `confidence` is finite and within
//!   `0.0..=1.0` (`-0.0` refused so that one value has one encoding).
//! - The decoder refuses anything the encoder would not produce (unknown tags, trailing
//!   bytes, bad UTF-8, out-of-range values), so `encode(decode(b)) == b` for every accepted
//!   `b`: the id of an accepted assertion is stable.
//!
//! `id = BLAKE3(canonical bytes)`, which covers every field but the signature — the signer's
//! key included. The signature is Ed25519 over the 32 id bytes.

use std::fmt;

use bytes::{BufMut, Bytes};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::wire::{DecodeError, Reader};

pub const ASSERTION_VERSION: u8 = 1;
/// Byte range of the signer's public key inside the canonical encoding.
pub const SIGNER_RANGE: std::ops::Range<usize> = 1..33;
const ISSUED_AT_OFFSET: usize = SIGNER_RANGE.end;
const FLAGS_OFFSET: usize = ISSUED_AT_OFFSET + size_of::<u64>();
const FIXED_PREFIX_LEN: usize = FLAGS_OFFSET + 1;
const FLAG_CONFIDENCE: u8 = 1 << 0;
const FLAG_SUPERSEDES: u8 = 1 << 1;
/// The largest canonical assertion accepted, so that one record can never approach the
/// frame limit on its own.
pub const MAX_ASSERTION_LEN: usize = 1 << 20;
/// How many signatures go into one batch-verification call. Smaller chunks make the
/// fallback that names a bad record cheaper; 64 already gets most of the batch speed-up.
pub const VERIFY_CHUNK: usize = 64;

/// The BLAKE3 content id of an assertion.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssertionId(pub [u8; 32]);

impl AssertionId {
    /// The id of canonical assertion bytes.
    pub fn of(canonical: &[u8]) -> AssertionId {
        AssertionId(*blake3::hash(canonical).as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<AssertionId, hex::FromHexError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(AssertionId(out))
    }
}

impl fmt::Debug for AssertionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AssertionId({})", self.to_hex())
    }
}

impl fmt::Display for AssertionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Hex strings in JSON for fixed-size byte arrays (ids, keys, signatures).
mod hex_array {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer, const N: usize>(v: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let mut out = [0u8; N];
        hex::decode_to_slice(s.as_bytes(), &mut out).map_err(D::Error::custom)?;
        Ok(out)
    }
}

impl Serialize for AssertionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        hex_array::serialize(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for AssertionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        hex_array::deserialize(d).map(AssertionId)
    }
}

/// The object of an assertion: a typed value.
///
/// In JSON, text, integers, floats and booleans are plain JSON values (`"x"`, `5`, `5.0`,
/// `true`); bytes and references are tagged: `{"bytes": "<hex>"}`, `{"ref": "<subject>"}`.
/// The tagged form `{"text": ..}`, `{"integer": ..}`, `{"float": ..}`, `{"boolean": ..}` is
/// also accepted on input.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Bytes(Vec<u8>),
    Ref(String),
}

impl Value {
    fn tag(&self) -> u8 {
        match self {
            Value::Text(_) => 0,
            Value::Integer(_) => 1,
            Value::Float(_) => 2,
            Value::Boolean(_) => 3,
            Value::Bytes(_) => 4,
            Value::Ref(_) => 5,
        }
    }
}

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Value::Text(t) => s.serialize_str(t),
            Value::Integer(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Boolean(b) => s.serialize_bool(*b),
            Value::Bytes(b) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("bytes", &hex::encode(b))?;
                m.end()
            }
            Value::Ref(r) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("ref", r)?;
                m.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Value;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number, boolean, {\"bytes\": hex} or {\"ref\": subject}")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
                Ok(Value::Text(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Integer(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
                i64::try_from(v)
                    .map(Value::Integer)
                    .map_err(|_| E::custom("integer object out of i64 range"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
                Ok(Value::Float(v))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Boolean(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Value, A::Error> {
                use serde::de::Error;
                let key: String = map
                    .next_key()?
                    .ok_or_else(|| A::Error::custom("empty object value"))?;
                let value = match key.as_str() {
                    "text" => Value::Text(map.next_value()?),
                    "integer" => Value::Integer(map.next_value()?),
                    "float" => Value::Float(map.next_value()?),
                    "boolean" => Value::Boolean(map.next_value()?),
                    "ref" => Value::Ref(map.next_value()?),
                    "bytes" => {
                        let h: String = map.next_value()?;
                        Value::Bytes(hex::decode(h).map_err(A::Error::custom)?)
                    }
                    other => {
                        return Err(A::Error::unknown_variant(
                            other,
                            &["text", "integer", "float", "boolean", "bytes", "ref"],
                        ));
                    }
                };
                if map.next_key::<String>()?.is_some() {
                    return Err(A::Error::custom("object value has more than one key"));
                }
                Ok(value)
            }
        }
        d.deserialize_any(V)
    }
}

/// The fields of an assertion that its producer chooses. Signing adds the signer's key and
/// the signature (see [`Assertion::sign`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assertion {
    pub subject: String,
    pub predicate: String,
    pub object: Value,
    /// Who or what asserts it (a person, a system, a document).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// The id of the assertion this one replaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supersedes: Option<AssertionId>,
    /// The producer's clock when it made the assertion, ms since the Unix epoch.
    #[serde(default)]
    pub issued_at: u64,
}

/// Why an assertion cannot be encoded, decoded or verified.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AssertionError {
    #[error("{field} must not be empty")]
    Empty { field: &'static str },
    #[error("{field} is {len} bytes, more than the {max} allowed")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field} must be a finite number{extra}")]
    BadNumber {
        field: &'static str,
        extra: &'static str,
    },
    #[error("malformed canonical assertion: {0}")]
    Decode(#[from] DecodeError),
    #[error("unsupported assertion version {0}")]
    Version(u8),
    #[error("the signer's public key is not a valid Ed25519 point")]
    BadKey,
    #[error("the signer's public key is weak (small order) and is refused")]
    WeakKey,
    #[error("signature does not verify")]
    BadSignature,
}

impl Assertion {
    /// Checks the rules the canonical encoding enforces.
    pub fn validate(&self) -> Result<(), AssertionError> {
        check_name("subject", &self.subject, true)?;
        check_name("predicate", &self.predicate, true)?;
        check_name("source", &self.source, false)?;
        match &self.object {
            Value::Float(f) if !f.is_finite() => {
                return Err(AssertionError::BadNumber {
                    field: "object",
                    extra: "",
                });
            }
            Value::Ref(r) => check_name("object ref", r, true)?,
            _ => {}
        }
        if let Some(c) = self.confidence {
            check_confidence(c)?;
        }
        Ok(())
    }

    /// The canonical bytes of this assertion as signed by `signer`.
    pub fn canonical_bytes(&self, signer: &[u8; 32]) -> Result<Vec<u8>, AssertionError> {
        self.validate()?;
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_into(signer, &mut out);
        if out.len() > MAX_ASSERTION_LEN {
            return Err(AssertionError::TooLong {
                field: "assertion",
                len: out.len(),
                max: MAX_ASSERTION_LEN,
            });
        }
        Ok(out)
    }

    fn encoded_len(&self) -> usize {
        let object = match &self.object {
            Value::Text(t) => 4 + t.len(),
            Value::Bytes(b) => 4 + b.len(),
            Value::Ref(r) => 2 + r.len(),
            Value::Boolean(_) => 1,
            Value::Integer(_) | Value::Float(_) => 8,
        };
        FIXED_PREFIX_LEN
            + self.confidence.map_or(0, |_| 8)
            + self.supersedes.map_or(0, |_| 32)
            + 2
            + self.subject.len()
            + 2
            + self.predicate.len()
            + 1
            + object
            + 2
            + self.source.len()
    }

    fn encode_into(&self, signer: &[u8; 32], out: &mut Vec<u8>) {
        out.put_u8(ASSERTION_VERSION);
        out.put_slice(signer);
        out.put_u64_le(self.issued_at);
        let flags = if self.confidence.is_some() {
            FLAG_CONFIDENCE
        } else {
            0
        } | if self.supersedes.is_some() {
            FLAG_SUPERSEDES
        } else {
            0
        };
        out.put_u8(flags);
        if let Some(c) = self.confidence {
            out.put_f64_le(c);
        }
        if let Some(s) = &self.supersedes {
            out.put_slice(&s.0);
        }
        put_name(out, &self.subject);
        put_name(out, &self.predicate);
        out.put_u8(self.object.tag());
        match &self.object {
            Value::Text(t) => crate::wire::put_bytes(out, t.as_bytes()),
            Value::Integer(i) => out.put_i64_le(*i),
            Value::Float(f) => out.put_f64_le(*f),
            Value::Boolean(b) => out.put_u8(u8::from(*b)),
            Value::Bytes(b) => crate::wire::put_bytes(out, b),
            Value::Ref(r) => put_name(out, r),
        }
        put_name(out, &self.source);
    }

    /// Signs the assertion: sets the signer to `key`'s public key, encodes, hashes and signs
    /// the id.
    pub fn sign(&self, key: &SigningKey) -> Result<SignedAssertion, AssertionError> {
        let signer = key.verifying_key().to_bytes();
        let canonical = Bytes::from(self.canonical_bytes(&signer)?);
        let id = AssertionId::of(&canonical);
        let signature = key.sign(&id.0).to_bytes();
        Ok(SignedAssertion {
            assertion: self.clone(),
            signer,
            signature,
            id,
            canonical,
        })
    }

    /// Decodes canonical bytes into the assertion and its signer, refusing any byte sequence
    /// the encoder would not have produced.
    pub fn decode(canonical: &[u8]) -> Result<(Assertion, [u8; 32]), AssertionError> {
        if canonical.len() > MAX_ASSERTION_LEN {
            return Err(AssertionError::TooLong {
                field: "assertion",
                len: canonical.len(),
                max: MAX_ASSERTION_LEN,
            });
        }
        let mut r = Reader::new(Bytes::copy_from_slice(canonical));
        let version = r.u8()?;
        if version != ASSERTION_VERSION {
            return Err(AssertionError::Version(version));
        }
        let signer = r.bytes32_fixed()?;
        let issued_at = r.u64()?;
        let flags_at = r.position();
        let flags = r.u8()?;
        if flags & !(FLAG_CONFIDENCE | FLAG_SUPERSEDES) != 0 {
            return Err(DecodeError::InvalidTag {
                what: "assertion flags",
                tag: flags.into(),
                offset: flags_at,
            }
            .into());
        }
        let confidence = if flags & FLAG_CONFIDENCE != 0 {
            Some(f64::from_bits(r.u64()?))
        } else {
            None
        };
        let supersedes = if flags & FLAG_SUPERSEDES != 0 {
            Some(AssertionId(r.bytes32_fixed()?))
        } else {
            None
        };
        let subject = r.string()?;
        let predicate = r.string()?;
        let tag_at = r.position();
        let object = match r.u8()? {
            0 => {
                let at = r.position();
                let b = r.bytes()?;
                Value::Text(
                    String::from_utf8(b.to_vec())
                        .map_err(|_| DecodeError::InvalidUtf8 { offset: at + 4 })?,
                )
            }
            1 => Value::Integer(r.i64()?),
            2 => Value::Float(f64::from_bits(r.u64()?)),
            3 => Value::Boolean(r.bool()?),
            4 => Value::Bytes(r.bytes()?.to_vec()),
            5 => Value::Ref(r.string()?),
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "object",
                    tag: tag.into(),
                    offset: tag_at,
                }
                .into());
            }
        };
        let source = r.string()?;
        r.finish()?;
        let a = Assertion {
            subject,
            predicate,
            object,
            source,
            confidence,
            supersedes,
            issued_at,
        };
        a.validate()?;
        Ok((a, signer))
    }
}

fn check_name(field: &'static str, s: &str, non_empty: bool) -> Result<(), AssertionError> {
    if non_empty && s.is_empty() {
        return Err(AssertionError::Empty { field });
    }
    if s.len() > u16::MAX as usize {
        return Err(AssertionError::TooLong {
            field,
            len: s.len(),
            max: u16::MAX as usize,
        });
    }
    Ok(())
}

fn check_confidence(c: f64) -> Result<(), AssertionError> {
    if !(0.0..=1.0).contains(&c) || c.to_bits() == (-0.0f64).to_bits() {
        return Err(AssertionError::BadNumber {
            field: "confidence",
            extra: " in 0.0..=1.0",
        });
    }
    Ok(())
}

fn put_name(out: &mut Vec<u8>, s: &str) {
    out.put_u16_le(s.len() as u16);
    out.put_slice(s.as_bytes());
}

/// The subject of canonical assertion bytes, sliced without decoding the rest. Used by the
/// broker to check a record's partition (D7) on the hot path.
pub fn subject_of(canonical: &[u8]) -> Result<&str, DecodeError> {
    let eof = |offset: usize, need: usize| DecodeError::UnexpectedEof {
        offset,
        need,
        have: canonical.len().saturating_sub(offset),
    };
    let flags = *canonical
        .get(FLAGS_OFFSET)
        .ok_or_else(|| eof(FLAGS_OFFSET, 1))?;
    let mut pos = FIXED_PREFIX_LEN;
    if flags & FLAG_CONFIDENCE != 0 {
        pos += 8;
    }
    if flags & FLAG_SUPERSEDES != 0 {
        pos += 32;
    }
    let len_bytes = canonical.get(pos..pos + 2).ok_or_else(|| eof(pos, 2))?;
    let len = u16::from_le_bytes([len_bytes[0], len_bytes[1]]) as usize;
    let start = pos + 2;
    let raw = canonical
        .get(start..start + len)
        .ok_or_else(|| eof(start, len))?;
    std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8 { offset: start })
}

/// An assertion with its signer, signature, id and canonical bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedAssertion {
    assertion: Assertion,
    signer: [u8; 32],
    signature: [u8; 64],
    id: AssertionId,
    canonical: Bytes,
}

impl SignedAssertion {
    /// Rebuilds a signed assertion from a record's canonical bytes and signature. Decodes
    /// and hashes; does not verify the signature (see [`verify`](Self::verify)).
    pub fn from_record(canonical: &[u8], signature: &[u8; 64]) -> Result<Self, AssertionError> {
        let (assertion, signer) = Assertion::decode(canonical)?;
        Ok(SignedAssertion {
            assertion,
            signer,
            signature: *signature,
            id: AssertionId::of(canonical),
            canonical: Bytes::copy_from_slice(canonical),
        })
    }

    pub fn assertion(&self) -> &Assertion {
        &self.assertion
    }

    pub fn signer(&self) -> &[u8; 32] {
        &self.signer
    }

    pub fn signature(&self) -> Signature {
        Signature::from_bytes(&self.signature)
    }

    pub fn id(&self) -> AssertionId {
        self.id
    }

    pub fn canonical(&self) -> &[u8] {
        &self.canonical
    }

    /// Verifies the signature over the id (strict: weak keys and non-canonical signatures
    /// are refused).
    pub fn verify(&self) -> Result<(), AssertionError> {
        verify_one(&self.canonical, &self.signature)
    }
}

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
    pub reason: AssertionError,
}

/// Reusable buffers for [`verify_batch`], so verifying a stream of batches allocates once.
#[derive(Default)]
pub struct BatchVerifier {
    ids: Vec<[u8; 32]>,
    keys: Vec<VerifyingKey>,
    sigs: Vec<Signature>,
}

impl BatchVerifier {
    /// Verifies every `(canonical assertion, signature)` with Ed25519 batch verification,
    /// in chunks of [`VERIFY_CHUNK`]. Weak or invalid keys are refused before any curve
    /// arithmetic; when a chunk fails, its records are checked one by one to name the first
    /// bad one.
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
        self.sigs.clear();
        let first_id = self.ids.len();
        for (i, (canonical, sig)) in chunk.iter().enumerate() {
            let key = verifying_key(canonical).map_err(|reason| VerifyError {
                index: base + i,
                reason,
            })?;
            self.keys.push(key);
            self.ids.push(*AssertionId::of(canonical).as_bytes());
            self.sigs.push(Signature::from_bytes(sig));
        }
        let messages: Vec<&[u8]> = self.ids[first_id..].iter().map(|id| &id[..]).collect();
        if ed25519_dalek::verify_batch(&messages, &self.sigs, &self.keys).is_ok() {
            return Ok(());
        }
        for (i, (canonical, sig)) in chunk.iter().enumerate() {
            verify_one(canonical, sig).map_err(|reason| VerifyError {
                index: base + i,
                reason,
            })?;
        }
        // The batch equation failed but every signature verifies on its own: this happens
        // only for adversarial signatures with small-order components. Refuse the chunk.
        Err(VerifyError {
            index: base,
            reason: AssertionError::BadSignature,
        })
    }
}

impl BatchVerifier {
    /// The content ids of the records of the last successful [`verify`](Self::verify), in
    /// order: computed once, for verification, and reused by the caller (dedup).
    pub fn ids(&self) -> impl ExactSizeIterator<Item = AssertionId> + '_ {
        self.ids.iter().map(|id| AssertionId(*id))
    }
}

/// Convenience wrapper over [`BatchVerifier::verify`].
pub fn verify_batch<'a>(
    records: impl IntoIterator<Item = (&'a [u8], &'a [u8; 64])>,
) -> Result<(), VerifyError> {
    BatchVerifier::default().verify(records)
}

/// The JSON form of a signed assertion: the assertion's fields plus `id`, `signer` and
/// `signature` in hex. Reading it back re-encodes the fields and checks the id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedJson {
    id: AssertionId,
    #[serde(flatten)]
    assertion: Assertion,
    #[serde(with = "hex_array")]
    signer: [u8; 32],
    #[serde(with = "hex_array")]
    signature: [u8; 64],
}

impl Serialize for SignedAssertion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SignedJson {
            id: self.id,
            assertion: self.assertion.clone(),
            signer: self.signer,
            signature: self.signature,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for SignedAssertion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let j = SignedJson::deserialize(d)?;
        let canonical = Bytes::from(
            j.assertion
                .canonical_bytes(&j.signer)
                .map_err(D::Error::custom)?,
        );
        let id = AssertionId::of(&canonical);
        if id != j.id {
            return Err(D::Error::custom(format!(
                "id {} does not match the fields (they hash to {id})",
                j.id
            )));
        }
        Ok(SignedAssertion {
            assertion: j.assertion,
            signer: j.signer,
            signature: j.signature,
            id,
            canonical,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    pub(crate) fn sample(i: u64) -> Assertion {
        Assertion {
            subject: format!("urn:steme:subject:{i}"),
            predicate: "schema:name".into(),
            object: Value::Text(format!("Thing number {i}")),
            source: "test".into(),
            confidence: None,
            supersedes: None,
            issued_at: 1_700_000_000_000 + i,
        }
    }

    pub(crate) fn sample_signed(i: u64) -> SignedAssertion {
        sample(i).sign(&key(7)).unwrap()
    }

    #[test]
    fn same_fields_same_signer_same_id() {
        let a = sample_signed(1);
        let b = sample(1).sign(&key(7)).unwrap();
        assert_eq!(a.id(), b.id());
        let c = sample(1).sign(&key(8)).unwrap();
        assert_ne!(a.id(), c.id(), "the signer's key is part of the id");
    }

    #[test]
    fn roundtrip_canonical_all_value_kinds() {
        let objects = [
            Value::Text("héllo".into()),
            Value::Integer(-42),
            Value::Float(-0.0),
            Value::Boolean(true),
            Value::Bytes(vec![0, 1, 255]),
            Value::Ref("urn:x".into()),
        ];
        for object in objects {
            let mut a = sample(3);
            a.object = object;
            a.confidence = Some(0.25);
            a.supersedes = Some(AssertionId([9; 32]));
            let s = a.sign(&key(1)).unwrap();
            let (back, signer) = Assertion::decode(s.canonical()).unwrap();
            assert_eq!(back, a);
            assert_eq!(&signer, s.signer());
            assert_eq!(subject_of(s.canonical()).unwrap(), a.subject);
            s.verify().unwrap();
        }
    }

    #[test]
    fn rejects_non_canonical_bytes() {
        let s = sample_signed(1);
        let mut b = s.canonical().to_vec();
        b.push(0);
        assert!(matches!(
            Assertion::decode(&b),
            Err(AssertionError::Decode(DecodeError::TrailingBytes { .. }))
        ));
        let mut b = s.canonical().to_vec();
        b[FLAGS_OFFSET] = 0x80;
        assert!(Assertion::decode(&b).is_err());
        let mut b = s.canonical().to_vec();
        b[0] = 2;
        assert_eq!(Assertion::decode(&b), Err(AssertionError::Version(2)));
    }

    #[test]
    fn rejects_bad_values() {
        let mut a = sample(1);
        a.object = Value::Float(f64::NAN);
        assert!(a.sign(&key(1)).is_err());
        let mut a = sample(1);
        a.confidence = Some(1.5);
        assert!(a.sign(&key(1)).is_err());
        let mut a = sample(1);
        a.subject.clear();
        assert_eq!(
            a.sign(&key(1)),
            Err(AssertionError::Empty { field: "subject" })
        );
    }

    #[test]
    fn tampered_signature_or_field_fails_verification() {
        let s = sample_signed(2);
        let mut sig = s.signature().to_bytes();
        sig[0] ^= 1;
        assert!(verify_one(s.canonical(), &sig).is_err());
        let mut c = s.canonical().to_vec();
        let last = c.len() - 1;
        c[last] ^= 1;
        assert!(verify_one(&c, &s.signature().to_bytes()).is_err());
    }

    #[test]
    fn batch_verify_names_first_bad_record() {
        let signed: Vec<_> = (0..150).map(sample_signed).collect();
        let sigs: Vec<[u8; 64]> = signed.iter().map(|s| s.signature().to_bytes()).collect();
        let mut v = BatchVerifier::default();
        let ok = v.verify(signed.iter().zip(&sigs).map(|(s, g)| (s.canonical(), g)));
        assert_eq!(ok, Ok(()));
        let ids: Vec<AssertionId> = v.ids().collect();
        assert_eq!(ids, signed.iter().map(|s| s.id()).collect::<Vec<_>>());
        let mut bad = sigs.clone();
        bad[97][5] ^= 0x10;
        bad[120][5] ^= 0x10;
        let err =
            verify_batch(signed.iter().zip(&bad).map(|(s, g)| (s.canonical(), g))).unwrap_err();
        assert_eq!(err.index, 97);
    }

    #[test]
    fn batch_verify_refuses_weak_key_up_front() {
        // The identity point (compressed y = 1) has small order.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let a = sample(1);
        let canonical = a.canonical_bytes(&weak).unwrap();
        let sig = [0u8; 64];
        let good = sample_signed(2);
        let good_sig = good.signature().to_bytes();
        let err =
            verify_batch([(good.canonical(), &good_sig), (&canonical[..], &sig)]).unwrap_err();
        assert_eq!(err.index, 1);
        assert_eq!(err.reason, AssertionError::WeakKey);
    }

    #[test]
    fn json_roundtrips_exactly() {
        let mut a = sample(5);
        a.object = Value::Float(1.0);
        a.confidence = Some(0.1);
        a.supersedes = Some(sample_signed(4).id());
        let s = a.sign(&key(3)).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        let back: SignedAssertion = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        for object in [
            Value::Bytes(vec![1, 2]),
            Value::Ref("r".into()),
            Value::Integer(i64::MIN),
            Value::Boolean(false),
        ] {
            let j = serde_json::to_string(&object).unwrap();
            assert_eq!(serde_json::from_str::<Value>(&j).unwrap(), object);
        }
        let tampered = json.replace("urn:steme:subject:5", "urn:steme:subject:6");
        assert!(serde_json::from_str::<SignedAssertion>(&tampered).is_err());
    }

    #[test]
    fn json_accepts_plain_and_tagged_objects() {
        let a: Assertion = serde_json::from_str(
            r#"{"subject":"s","predicate":"p","object":{"integer":3},"source":"x"}"#,
        )
        .unwrap();
        assert_eq!(a.object, Value::Integer(3));
        let a: Assertion =
            serde_json::from_str(r#"{"subject":"s","predicate":"p","object":2.5,"source":"x"}"#)
                .unwrap();
        assert_eq!(a.object, Value::Float(2.5));
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            ".{0,40}".prop_map(Value::Text),
            any::<i64>().prop_map(Value::Integer),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::Float),
            any::<bool>().prop_map(Value::Boolean),
            prop::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
            ".{1,20}".prop_map(Value::Ref),
        ]
    }

    fn assertion() -> impl Strategy<Value = Assertion> {
        (
            ".{1,30}",
            ".{1,30}",
            value(),
            ".{0,20}",
            prop::option::of(0.0f64..=1.0),
            prop::option::of(any::<[u8; 32]>()),
            any::<u64>(),
        )
            .prop_map(
                |(subject, predicate, object, source, confidence, supersedes, issued_at)| {
                    Assertion {
                        subject,
                        predicate,
                        object,
                        source,
                        confidence,
                        supersedes: supersedes.map(AssertionId),
                        issued_at,
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// decode(encode(a)) == a, the JSON form round-trips, and the subject slice agrees.
        #[test]
        fn canonical_and_json_roundtrip(a in assertion(), signer in any::<[u8; 32]>()) {
            let bytes = a.canonical_bytes(&signer).unwrap();
            let (back, s) = Assertion::decode(&bytes).unwrap();
            prop_assert_eq!(&back, &a);
            prop_assert_eq!(s, signer);
            prop_assert_eq!(subject_of(&bytes).unwrap(), a.subject.as_str());
            let json = serde_json::to_string(&a).unwrap();
            let from_json: Assertion = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(from_json.canonical_bytes(&signer).unwrap(), bytes);
        }
    }
}
