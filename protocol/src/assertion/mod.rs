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
use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::{Deserialize, Serialize};

use crate::wire::{DecodeError, Reader};

mod batch;
mod builder;
mod verify;
pub use builder::AssertionBuilder;
pub use verify::{BatchVerifier, VerifyError, dalek_verify_batch, verify_batch, verify_one};

/// The canonical encoding's version byte.
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
/// How many signatures go into one batch-verification call. Past about 95 signatures
/// (190 points) curve25519-dalek's multiscalar multiplication switches from Straus to
/// Pippenger, whose cost per point keeps falling as points are added. On this project's
/// 2-core bench machine one core batch-verifies, with one term per signer key
/// ([`batch`]), ~123k signatures/s in calls of 128, ~144k in calls of 256 and ~157k in
/// calls of 512 (the textbook equation: ~91k, ~93k, ~101k); signed produce at RF=3 gained
/// 7 % from 256 to 512. A failing call is searched by halves for its bad record, so a
/// forged request costs a few times a good one to refuse, whatever the chunk.
pub const VERIFY_CHUNK: usize = 512;

/// The BLAKE3 content id of an assertion.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AssertionId(pub [u8; 32]);

/// A hasher for maps keyed by [`AssertionId`]: an id is BLAKE3 output, already uniform, so
/// its first eight bytes are the hash (no SipHash pass per lookup). Not for keys an
/// attacker chooses freely: an id is the hash of content, so choosing ids means finding
/// BLAKE3 preimages.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // The array's bytes (after its length, which `write_usize` ignores).
        if let Some(first) = bytes.first_chunk::<8>() {
            self.0 = u64::from_le_bytes(*first);
        }
    }

    fn write_usize(&mut self, _len: usize) {}
}

/// The `BuildHasher` of [`IdHasher`].
pub type IdHashing = std::hash::BuildHasherDefault<IdHasher>;

impl AssertionId {
    /// The id of canonical assertion bytes.
    pub fn of(canonical: &[u8]) -> AssertionId {
        AssertionId(*blake3::hash(canonical).as_bytes())
    }

    /// The 32 id bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The id as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits.
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
    /// UTF-8 text.
    Text(String),
    /// A signed 64-bit integer.
    Integer(i64),
    /// A finite 64-bit float.
    Float(f64),
    /// A boolean.
    Boolean(bool),
    /// Raw bytes (hex in JSON).
    Bytes(Vec<u8>),
    /// A reference to another subject.
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
    /// What the assertion is about (a URN, say); not empty.
    pub subject: String,
    /// The property asserted; not empty.
    pub predicate: String,
    /// The value asserted.
    pub object: Value,
    /// Who or what asserts it (a person, a system, a document).
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// How sure the source is, within `0.0..=1.0`.
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
    /// A field that must not be empty is empty.
    Empty {
        /// Which field.
        field: &'static str,
    },
    /// A required field was never given (see [`AssertionBuilder::build`]).
    #[error("{field} is required")]
    Missing {
        /// Which field.
        field: &'static str,
    },
    #[error("{field} is {len} bytes, more than the {max} allowed")]
    /// A field or the whole encoding is longer than allowed.
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    #[error("{field} must be a finite number{extra}")]
    /// A number is not finite, or out of its range.
    BadNumber {
        /// Which field.
        field: &'static str,
        /// What else is required of it (a range), if anything.
        extra: &'static str,
    },
    #[error("malformed canonical assertion: {0}")]
    /// The canonical bytes do not decode.
    Decode(#[from] DecodeError),
    #[error("unsupported assertion version {0}")]
    /// The canonical bytes have a version this crate does not read.
    Version(u8),
    #[error("the signer's public key is not a valid Ed25519 point")]
    /// The signer key is not a valid Ed25519 point.
    BadKey,
    #[error("the signer's public key is weak (small order) and is refused")]
    /// The signer key is weak (small order).
    WeakKey,
    #[error("signature does not verify")]
    /// The signature does not verify.
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

    /// Puts together an assertion signed elsewhere: encodes the fields as signed by
    /// `signer` and hashes them. Does not verify the signature (see
    /// [`verify`](Self::verify)).
    pub fn new(
        assertion: Assertion,
        signer: [u8; 32],
        signature: [u8; 64],
    ) -> Result<Self, AssertionError> {
        let canonical = Bytes::from(assertion.canonical_bytes(&signer)?);
        Ok(SignedAssertion {
            id: AssertionId::of(&canonical),
            assertion,
            signer,
            signature,
            canonical,
        })
    }

    /// The assertion's fields.
    pub fn assertion(&self) -> &Assertion {
        &self.assertion
    }

    /// The signer's public key.
    pub fn signer(&self) -> &[u8; 32] {
        &self.signer
    }

    /// The Ed25519 signature over the id.
    pub fn signature(&self) -> Signature {
        Signature::from_bytes(&self.signature)
    }

    /// The content id (BLAKE3 of the canonical bytes).
    pub fn id(&self) -> AssertionId {
        self.id
    }

    /// The canonical bytes, as signed.
    pub fn canonical(&self) -> &[u8] {
        &self.canonical
    }

    /// Verifies the signature over the id (strict: weak keys and non-canonical signatures
    /// are refused).
    pub fn verify(&self) -> Result<(), AssertionError> {
        verify_one(&self.canonical, &self.signature)
    }
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
        let signed =
            SignedAssertion::new(j.assertion, j.signer, j.signature).map_err(D::Error::custom)?;
        if signed.id != j.id {
            return Err(D::Error::custom(format!(
                "id {} does not match the fields (they hash to {})",
                j.id, signed.id
            )));
        }
        Ok(signed)
    }
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod batch_tests;
