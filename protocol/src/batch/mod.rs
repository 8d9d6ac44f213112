//! Record batches: the one format used on the wire, in the Raft log and on disk (D4).
//!
//! A batch is a fixed 48-byte little-endian header followed by `record_count` records:
//!
//! ```text
//! byte  0        4        8        12     14     16               24               32               40       44      48
//!       +--------+--------+--------+------+------+----------------+----------------+----------------+--------+-------+----------
//!       | magic  | length | crc    | ver  | attr | base_offset    | base_hlc       | leader_id      | count  | rsvd  | records…
//!       | u32    | u32    | u32    | u16  | u16  | u64            | u64            | u64            | u32    | u32   |
//!       +--------+--------+--------+------+------+----------------+----------------+----------------+--------+-------+----------
//!                                  \______________________ covered by crc (byte 12 .. length) ______________________________/
//! ```
//!
//! - `magic` is `"STMB"` (bytes `53 54 4d 42`), `ver` is [`BATCH_VERSION`].
//! - `length` is the whole batch in bytes, header included.
//! - `crc` is CRC-32 (IEEE, `crc32fast`) of every byte after the crc field.
//! - `base_offset` is the offset of the first record. Producers send 0; the log store sets it
//!   from the log prefix (D2). `base_hlc` is the HLC (NTP64) of the first record; record *i*
//!   has offset `base_offset + i` and HLC `base_hlc + i` (D6). `leader_id` is the broker that
//!   stamped the batch. The broker patches these three with [`patch_header`] and never
//!   rewrites records.
//! - `attr` is [`Attributes`]; `rsvd` must be zero.
//!
//! Each record is:
//!
//! ```text
//! byte  0        4                    68
//!       +--------+--------------------+------------------------------------------+
//!       | len    | signature          | assertion (canonical encoding, len - 64) |
//!       | u32    | [u8; 64]           | starts with version u8, signer key [u8;32] |
//!       +--------+--------------------+------------------------------------------+
//! ```
//!
//! `len` counts the bytes after itself. The signer's public key is at a fixed position
//! inside the canonical assertion (see [`crate::assertion`]), so a record's key, signature
//! and assertion bytes are all plain slices of the batch.

use bytes::{BufMut, Bytes, BytesMut};

use crate::assertion::{SIGNER_RANGE, SignedAssertion};

mod patch;

pub use patch::{patch_base_offset, patch_header, reseal};

/// `"STMB"` read as a little-endian u32.
pub const BATCH_MAGIC: u32 = u32::from_le_bytes(*b"STMB");
/// The batch format version this crate writes and reads.
pub const BATCH_VERSION: u16 = 1;

// Header field offsets, each derived from the one before it.
/// Byte offset of the magic number ([`BATCH_MAGIC`]).
pub const MAGIC_OFFSET: usize = 0;
/// Byte offset of the batch length (u32, the whole batch, header included).
pub const LENGTH_OFFSET: usize = MAGIC_OFFSET + size_of::<u32>();
/// Byte offset of the CRC32C of everything from [`CRC_START`] on.
pub const CRC_OFFSET: usize = LENGTH_OFFSET + size_of::<u32>();
/// Byte offset of the format version (u16).
pub const VERSION_OFFSET: usize = CRC_OFFSET + size_of::<u32>();
/// Byte offset of the attribute bits (u16, see [`Attributes`]).
pub const ATTRIBUTES_OFFSET: usize = VERSION_OFFSET + size_of::<u16>();
/// Byte offset of the first record's log offset (u64, stamped by the leader).
pub const BASE_OFFSET_OFFSET: usize = ATTRIBUTES_OFFSET + size_of::<u16>();
/// Byte offset of the first record's HLC (u64, NTP64, stamped by the leader).
pub const BASE_HLC_OFFSET: usize = BASE_OFFSET_OFFSET + size_of::<u64>();
/// Byte offset of the id of the leader that stamped the batch (u64).
pub const LEADER_ID_OFFSET: usize = BASE_HLC_OFFSET + size_of::<u64>();
/// Byte offset of the record count (u32).
pub const RECORD_COUNT_OFFSET: usize = LEADER_ID_OFFSET + size_of::<u64>();
/// Byte offset of four reserved bytes (zero).
pub const RESERVED_OFFSET: usize = RECORD_COUNT_OFFSET + size_of::<u32>();
/// Size of the fixed header; the first record starts here.
pub const HEADER_LEN: usize = RESERVED_OFFSET + size_of::<u32>();
/// The CRC covers everything from here to the end of the batch.
pub const CRC_START: usize = CRC_OFFSET + size_of::<u32>();

/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Per-record framing: the length prefix, then the signature.
pub const RECORD_LEN_SIZE: usize = size_of::<u32>();
/// Offset of a record's signature from the start of the record.
pub const RECORD_SIGNATURE_OFFSET: usize = RECORD_LEN_SIZE;
/// Offset of a record's canonical assertion from the start of the record.
pub const RECORD_ASSERTION_OFFSET: usize = RECORD_SIGNATURE_OFFSET + SIGNATURE_LEN;
/// The smallest valid record: a signature and an assertion at least as long as its fixed
/// prefix (version and signer key).
pub const MIN_RECORD_LEN: usize = RECORD_ASSERTION_OFFSET + SIGNER_RANGE.end;

const _: () = assert!(HEADER_LEN == 48);

/// Batch attribute bits. None are defined yet in version 1; unknown bits are refused so
/// that a future writer cannot be silently misread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attributes(u16);

impl Attributes {
    /// The bits this version defines (none).
    pub const KNOWN: u16 = 0;

    /// The raw bits.
    pub fn bits(self) -> u16 {
        self.0
    }
}

/// Why a buffer is not a valid record batch. Every variant names the byte position, relative
/// to the start of the batch, where the problem was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    #[error("batch too short at byte {offset}: need {need} bytes, have {have}")]
    /// The buffer ends before the batch does.
    Short {
        /// Byte position, from the start of the batch, where it was found.
        offset: usize,
        /// Bytes needed.
        need: usize,
        /// Bytes there.
        have: usize,
    },
    #[error("bad batch magic {found:#010x} at byte {offset}")]
    /// The magic number is not [`BATCH_MAGIC`].
    BadMagic {
        /// Byte position, from the start of the batch, where it was found.
        offset: usize,
        /// The value found.
        found: u32,
    },
    #[error("unsupported batch version {found} at byte {offset}")]
    /// The version is not [`BATCH_VERSION`].
    BadVersion {
        /// Byte position, from the start of the batch, where it was found.
        offset: usize,
        /// The value found.
        found: u16,
    },
    #[error("batch length field at byte {offset} says {declared} but the buffer holds {actual}")]
    /// The length field disagrees with the buffer.
    LengthMismatch {
        /// Byte position, from the start of the batch, where it was found.
        offset: usize,
        /// What the batch says.
        declared: u32,
        /// What the buffer holds.
        actual: usize,
    },
    #[error(
        "batch crc mismatch (stored {stored:#010x}, computed {computed:#010x}) at byte {offset}"
    )]
    /// The stored CRC is not the CRC of the batch.
    CrcMismatch {
        /// Byte position, from the start of the batch, where it was found.
        offset: usize,
        /// The CRC in the header.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    #[error("unknown batch attribute bits {bits:#06x} at byte {offset}")]
    /// Attribute bits this version does not define are set.
    BadAttributes {
        /// Byte position, from the start of the batch, where it was found.
        offset: usize,
        /// The attribute bits found.
        bits: u16,
    },
    #[error("record {index} at byte {offset} overruns the batch (length {len})")]
    /// A record's length prefix runs past the end of the batch.
    RecordOverrun {
        /// The record's index in the batch.
        index: u32,
        /// Byte position, from the start of the batch, where it was found.
        offset: usize,
        /// The record's length prefix.
        len: u32,
    },
    #[error("record {index} at byte {offset} is too short ({len} bytes)")]
    /// A record is shorter than a signature and the smallest assertion.
    RecordTooShort {
        /// The record's index in the batch.
        index: u32,
        /// Byte position, from the start of the batch, where it was found.
        offset: usize,
        /// The record's length prefix.
        len: u32,
    },
    #[error("batch declares {declared} records but holds {found} (at byte {offset})")]
    /// The record count disagrees with the records found.
    CountMismatch {
        /// Byte position, from the start of the batch, where it was found.
        offset: usize,
        /// What the batch says.
        declared: u32,
        /// The value found.
        found: u32,
    },
    #[error("batch is empty: a batch carries at least one record")]
    /// The batch holds no record.
    Empty,
}

/// The decoded fixed header of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Bytes of the whole batch, header included.
    pub length: u32,
    /// CRC32C of the bytes from [`CRC_START`] to the end.
    pub crc: u32,
    /// Attribute bits.
    pub attributes: Attributes,
    /// Log offset of the first record.
    pub base_offset: u64,
    /// HLC (NTP64) of the first record; record `i` has `base_hlc + i`.
    pub base_hlc: u64,
    /// The leader that stamped the batch.
    pub leader_id: u64,
    /// How many records follow.
    pub record_count: u32,
}

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

impl BatchHeader {
    /// Reads the header fields and checks magic, version, attributes and the reserved word.
    /// Does not check the length against a buffer or the CRC; see [`validate`].
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Short {
                offset: 0,
                need: HEADER_LEN,
                have: buf.len(),
            });
        }
        let magic = le_u32(buf, MAGIC_OFFSET);
        if magic != BATCH_MAGIC {
            return Err(BatchError::BadMagic {
                offset: MAGIC_OFFSET,
                found: magic,
            });
        }
        let version = le_u16(buf, VERSION_OFFSET);
        if version != BATCH_VERSION {
            return Err(BatchError::BadVersion {
                offset: VERSION_OFFSET,
                found: version,
            });
        }
        let attributes = le_u16(buf, ATTRIBUTES_OFFSET);
        if attributes & !Attributes::KNOWN != 0 || le_u32(buf, RESERVED_OFFSET) != 0 {
            return Err(BatchError::BadAttributes {
                offset: ATTRIBUTES_OFFSET,
                bits: attributes,
            });
        }
        Ok(BatchHeader {
            length: le_u32(buf, LENGTH_OFFSET),
            crc: le_u32(buf, CRC_OFFSET),
            attributes: Attributes(attributes),
            base_offset: le_u64(buf, BASE_OFFSET_OFFSET),
            base_hlc: le_u64(buf, BASE_HLC_OFFSET),
            leader_id: le_u64(buf, LEADER_ID_OFFSET),
            record_count: le_u32(buf, RECORD_COUNT_OFFSET),
        })
    }

    /// Offset one past the last record (`base_offset + record_count`).
    pub fn end_offset(&self) -> u64 {
        self.base_offset + u64::from(self.record_count)
    }

    /// HLC of the last record.
    pub fn last_hlc(&self) -> u64 {
        self.base_hlc + u64::from(self.record_count.saturating_sub(1))
    }
}

/// Reads just the length field of a batch that starts at `buf[0]`, so a reader can find
/// where the next batch begins without validating this one. `None` if the header is short.
pub fn peek_length(buf: &[u8]) -> Option<u32> {
    (buf.len() >= HEADER_LEN).then(|| le_u32(buf, LENGTH_OFFSET))
}

/// CRC of everything after the crc field.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32fast::hash(&batch[CRC_START..])
}

/// Checks one complete batch occupying all of `buf`: header, length, CRC, and that the
/// records exactly fill the batch and match the declared count. Never panics.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    check(buf, true)
}

/// [`validate`] without the CRC: for a batch whose CRC its holder has just checked (the
/// broker's own copy of a producer's batch). Header, length and record framing are
/// checked; a wrong CRC is left for readers to find, and [`patch_header`] keeps it wrong.
pub fn validate_framing(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    check(buf, false)
}

fn check(buf: &[u8], crc: bool) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(buf)?;
    if header.length as usize != buf.len() {
        return Err(BatchError::LengthMismatch {
            offset: LENGTH_OFFSET,
            declared: header.length,
            actual: buf.len(),
        });
    }
    if crc {
        let computed = compute_crc(buf);
        if computed != header.crc {
            return Err(BatchError::CrcMismatch {
                offset: CRC_OFFSET,
                stored: header.crc,
                computed,
            });
        }
    }
    let found = check_records(buf, header.record_count)?;
    if found == 0 {
        return Err(BatchError::Empty);
    }
    Ok(header)
}

/// Walks the record framing and returns how many records there are.
fn check_records(buf: &[u8], declared: u32) -> Result<u32, BatchError> {
    let mut pos = HEADER_LEN;
    let mut index = 0u32;
    while pos < buf.len() {
        if index == declared {
            return Err(BatchError::CountMismatch {
                offset: pos,
                declared,
                found: index.saturating_add(1),
            });
        }
        if buf.len() - pos < RECORD_LEN_SIZE {
            return Err(BatchError::RecordOverrun {
                index,
                offset: pos,
                len: 0,
            });
        }
        let len = le_u32(buf, pos);
        let total = RECORD_LEN_SIZE as u64 + u64::from(len);
        if total > (buf.len() - pos) as u64 {
            return Err(BatchError::RecordOverrun {
                index,
                offset: pos,
                len,
            });
        }
        if (len as usize) < MIN_RECORD_LEN - RECORD_LEN_SIZE {
            return Err(BatchError::RecordTooShort {
                index,
                offset: pos,
                len,
            });
        }
        pos += total as usize;
        index += 1;
    }
    if index != declared {
        return Err(BatchError::CountMismatch {
            offset: pos,
            declared,
            found: index,
        });
    }
    Ok(index)
}

/// A validated record batch: a zero-copy view over its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordBatch {
    header: BatchHeader,
    bytes: Bytes,
}

impl RecordBatch {
    /// Validates `bytes` as exactly one batch.
    pub fn new(bytes: Bytes) -> Result<RecordBatch, BatchError> {
        let header = validate(&bytes)?;
        Ok(RecordBatch { header, bytes })
    }

    /// Splits a buffer of concatenated batches (a fetch response, a segment read) into
    /// validated batches. A batch cut short at the end of the buffer is not an error — a byte
    /// budget may end mid-batch — and is returned as `Ok` of what came before it; any other
    /// damage is an error with the position of the batch in the buffer.
    pub fn split_all(buf: &Bytes) -> BatchIter {
        BatchIter {
            buf: buf.clone(),
            pos: 0,
        }
    }

    /// The decoded fixed header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The offset of the first record.
    pub fn base_offset(&self) -> u64 {
        self.header.base_offset
    }

    /// The HLC of the first record (the others follow it by one each).
    pub fn base_hlc(&self) -> u64 {
        self.header.base_hlc
    }

    /// How many records the batch holds.
    pub fn record_count(&self) -> u32 {
        self.header.record_count
    }

    /// The offset after the last record.
    pub fn end_offset(&self) -> u64 {
        self.header.end_offset()
    }

    /// The whole batch, header included.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The whole batch, header included, by value.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Iterates the records without allocating.
    pub fn records(&self) -> Records<'_> {
        Records {
            buf: &self.bytes,
            pos: HEADER_LEN,
            index: 0,
            base_offset: self.header.base_offset,
            base_hlc: self.header.base_hlc,
        }
    }
}

/// Iterator over concatenated batches; see [`RecordBatch::split_all`].
#[derive(Debug, Clone)]
pub struct BatchIter {
    buf: Bytes,
    pos: usize,
}

impl Iterator for BatchIter {
    type Item = Result<RecordBatch, (usize, BatchError)>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = &self.buf[self.pos..];
        let len = peek_length(rest)? as usize;
        if len > rest.len() {
            return None;
        }
        let at = self.pos;
        if len < HEADER_LEN {
            self.pos = self.buf.len();
            return Some(Err((
                at,
                BatchError::LengthMismatch {
                    offset: LENGTH_OFFSET,
                    declared: len as u32,
                    actual: rest.len(),
                },
            )));
        }
        self.pos += len;
        Some(RecordBatch::new(self.buf.slice(at..at + len)).map_err(|e| {
            self.pos = self.buf.len();
            (at, e)
        }))
    }
}

/// One record inside a batch, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Position of the record in its batch, from 0.
    pub index: u32,
    /// `base_offset + index`.
    pub offset: u64,
    /// `base_hlc + index`.
    pub hlc: u64,
    /// The signature over the assertion's id.
    pub signature: &'a [u8; SIGNATURE_LEN],
    /// The canonical assertion bytes (the id is their BLAKE3 hash).
    pub assertion: &'a [u8],
}

impl<'a> RecordRef<'a> {
    /// The signer's Ed25519 public key, sliced from the assertion.
    pub fn signer(&self) -> &'a [u8; 32] {
        self.assertion[SIGNER_RANGE]
            .try_into()
            .expect("validated records hold the fixed assertion prefix")
    }

    /// The content id: BLAKE3 of the canonical assertion bytes.
    pub fn id(&self) -> crate::AssertionId {
        crate::AssertionId::of(self.assertion)
    }
}

/// Iterator over the records of a [`RecordBatch`].
#[derive(Debug, Clone)]
pub struct Records<'a> {
    buf: &'a [u8],
    pos: usize,
    index: u32,
    base_offset: u64,
    base_hlc: u64,
}

impl<'a> Iterator for Records<'a> {
    type Item = RecordRef<'a>;

    fn next(&mut self) -> Option<RecordRef<'a>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        // The batch was validated on construction, so the framing is known to be sound.
        let len = le_u32(self.buf, self.pos) as usize;
        let start = self.pos + RECORD_LEN_SIZE;
        let end = start + len;
        let record = &self.buf[self.pos..end];
        self.pos = end;
        let index = self.index;
        self.index += 1;
        Some(RecordRef {
            index,
            offset: self.base_offset + u64::from(index),
            hlc: self.base_hlc + u64::from(index),
            signature: record[RECORD_SIGNATURE_OFFSET..RECORD_ASSERTION_OFFSET]
                .try_into()
                .expect("slice is SIGNATURE_LEN long"),
            assertion: &record[RECORD_ASSERTION_OFFSET..],
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.buf.len() > self.pos) as usize;
        (left, None)
    }
}

/// Builds a batch on the client side: push signed records, then [`finish`](Self::finish).
/// The header's base offset and HLC are left zero for the broker to set.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: BytesMut,
    count: u32,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::with_capacity(16 * 1024)
    }
}

impl BatchBuilder {
    /// An empty batch whose buffer starts with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = BytesMut::with_capacity(bytes.max(HEADER_LEN));
        buf.put_bytes(0, HEADER_LEN);
        BatchBuilder { buf, count: 0 }
    }

    /// Appends a signed assertion.
    pub fn push(&mut self, assertion: &SignedAssertion) {
        self.push_raw(assertion.canonical(), &assertion.signature().to_bytes());
    }

    /// Appends a record from its canonical assertion bytes and signature.
    pub fn push_raw(&mut self, canonical: &[u8], signature: &[u8; SIGNATURE_LEN]) {
        let len = u32::try_from(SIGNATURE_LEN + canonical.len()).expect("assertion fits u32");
        self.buf.reserve(RECORD_LEN_SIZE + len as usize);
        self.buf.put_u32_le(len);
        self.buf.put_slice(signature);
        self.buf.put_slice(canonical);
        self.count += 1;
    }

    /// How many records have been pushed.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// Whether no record has been pushed.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes the batch will take, header included.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Writes the header and returns the finished batch.
    pub fn finish(mut self) -> Bytes {
        let length = u32::try_from(self.buf.len()).expect("batch fits u32");
        let h = &mut self.buf[..HEADER_LEN];
        h[MAGIC_OFFSET..LENGTH_OFFSET].copy_from_slice(&BATCH_MAGIC.to_le_bytes());
        h[LENGTH_OFFSET..CRC_OFFSET].copy_from_slice(&length.to_le_bytes());
        h[VERSION_OFFSET..ATTRIBUTES_OFFSET].copy_from_slice(&BATCH_VERSION.to_le_bytes());
        h[RECORD_COUNT_OFFSET..RESERVED_OFFSET].copy_from_slice(&self.count.to_le_bytes());
        let crc = compute_crc(&self.buf);
        self.buf[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_le_bytes());
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any records, however sized, come back out of the view exactly as pushed, and
        /// patching the header never changes them.
        #[test]
        fn builder_view_roundtrip(
            records in prop::collection::vec(
                (prop::collection::vec(any::<u8>(), SIGNER_RANGE.end..400), any::<[u8; 32]>()),
                1..40,
            ),
            base_offset in any::<u64>().prop_map(|o| o >> 1),
            base_hlc in any::<u64>().prop_map(|h| h >> 1),
        ) {
            let mut b = BatchBuilder::with_capacity(64);
            let sigs: Vec<[u8; 64]> = records
                .iter()
                .map(|(_, half)| {
                    let mut s = [0u8; 64];
                    s[..32].copy_from_slice(half);
                    s
                })
                .collect();
            for ((assertion, _), sig) in records.iter().zip(&sigs) {
                b.push_raw(assertion, sig);
            }
            let mut bytes = b.finish().to_vec();
            patch_header(&mut bytes, base_offset, base_hlc, 9);
            let batch = RecordBatch::new(Bytes::from(bytes)).unwrap();
            prop_assert_eq!(batch.record_count() as usize, records.len());
            for (i, r) in batch.records().enumerate() {
                prop_assert_eq!(r.assertion, &records[i].0[..]);
                prop_assert_eq!(r.signature, &sigs[i]);
                prop_assert_eq!(r.offset, base_offset + i as u64);
                prop_assert_eq!(r.hlc, base_hlc + i as u64);
            }
        }

        /// Any single flipped bit after the magic is caught (by the CRC or a header check).
        #[test]
        fn any_bit_flip_is_rejected(pos in 0usize..4000, bit in 0u8..8) {
            let mut b = BatchBuilder::default();
            for i in 0..4 {
                b.push(&sample_signed_cached(i));
            }
            let mut bytes = b.finish().to_vec();
            let pos = pos % bytes.len();
            bytes[pos] ^= 1 << bit;
            prop_assert!(validate(&bytes).is_err());
        }
    }

    fn sample_signed_cached(i: u64) -> SignedAssertion {
        use std::sync::OnceLock;
        static CACHE: OnceLock<Vec<SignedAssertion>> = OnceLock::new();
        CACHE.get_or_init(|| (0..4).map(crate::assertion::tests::sample_signed).collect())
            [i as usize]
            .clone()
    }
}
