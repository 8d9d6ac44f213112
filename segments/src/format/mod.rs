//! Byte layouts of every file the log writes. `segments/FORMAT.md` draws them; every field
//! offset here is derived from the one before it. All integers are fixed-width
//! little-endian; nothing on disk is a `usize`.

use steme_protocol::batch::{BatchHeader, HEADER_LEN as BATCH_HEADER_LEN};

// ---------------------------------------------------------------------------------------
// Little-endian helpers that never panic: callers check lengths first.

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

pub(crate) fn put_u16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

pub const FORMAT_VERSION: u16 = 2;

/// Which file a decoder was reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    SegmentHeader,
    Index,
    Ids,
    Meta,
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileKind::SegmentHeader => "segment header",
            FileKind::Index => "index file",
            FileKind::Ids => "ids file",
            FileKind::Meta => "meta file",
        })
    }
}

/// Why bytes are not a valid header, index, ids or meta file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error("{0} is short")]
    Short(FileKind),
    #[error("{0}: bad magic, version or reserved bits")]
    BadMagic(FileKind),
    #[error("{0}: crc mismatch")]
    Crc(FileKind),
    #[error("{0}: {1}")]
    Inconsistent(FileKind, &'static str),
}

// ---------------------------------------------------------------------------------------
// Segment header: the first bytes of every `.log` file.

pub const SEGMENT_MAGIC: u32 = u32::from_le_bytes(*b"STMS");
const SH_MAGIC: usize = 0;
const SH_VERSION: usize = SH_MAGIC + size_of::<u32>();
const SH_RESERVED: usize = SH_VERSION + size_of::<u16>();
const SH_BASE_OFFSET: usize = SH_RESERVED + size_of::<u16>();
const SH_BASE_INDEX: usize = SH_BASE_OFFSET + size_of::<u64>();
const SH_CREATED_MS: usize = SH_BASE_INDEX + size_of::<u64>();
const SH_CRC: usize = SH_CREATED_MS + size_of::<u64>();
const SH_PAD: usize = SH_CRC + size_of::<u32>();
/// Length of the fixed header (written once, covered by its CRC).
pub const FIXED_HEADER_LEN: usize = SH_PAD + size_of::<u32>();
const _: () = assert!(FIXED_HEADER_LEN == 40);

mod durable;
#[cfg(test)]
use durable::{DP_CRC, DP_END_OFFSET, DP_LAST_TERM, DP_NEXT_INDEX, DP_POSITION, DP_SEGMENT};
pub use durable::{DURABLE_MAGIC, DURABLE_SLOT_LEN, DURABLE_SLOT_POS, DurablePoint};

/// Length of the segment header (fixed header and durable-point slot); the first frame
/// starts here.
pub const SEGMENT_HEADER_LEN: usize = DURABLE_SLOT_POS + DURABLE_SLOT_LEN;
const _: () = assert!(SEGMENT_HEADER_LEN == 96);

/// The fixed facts of a segment, written once when it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Offset of the first record in the segment (the log end offset when it was created).
    pub base_offset: u64,
    /// Raft index of the first entry in the segment.
    pub base_index: u64,
    /// Wall-clock creation time, for rolling by age.
    pub created_ms: u64,
}

impl SegmentHeader {
    /// The fixed header followed by an empty durable-point slot.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        put_u32(&mut b, SH_MAGIC, SEGMENT_MAGIC);
        put_u16(&mut b, SH_VERSION, FORMAT_VERSION);
        put_u64(&mut b, SH_BASE_OFFSET, self.base_offset);
        put_u64(&mut b, SH_BASE_INDEX, self.base_index);
        put_u64(&mut b, SH_CREATED_MS, self.created_ms);
        let crc = crc32fast::hash(&b[..SH_CRC]);
        put_u32(&mut b, SH_CRC, crc);
        b
    }

    pub fn decode(b: &[u8]) -> Result<SegmentHeader, FormatError> {
        if b.len() < FIXED_HEADER_LEN {
            return Err(FormatError::Short(FileKind::SegmentHeader));
        }
        if u32_at(b, SH_MAGIC) != SEGMENT_MAGIC {
            return Err(FormatError::BadMagic(FileKind::SegmentHeader));
        }
        if u16_at(b, SH_VERSION) != FORMAT_VERSION {
            return Err(FormatError::BadMagic(FileKind::SegmentHeader));
        }
        if crc32fast::hash(&b[..SH_CRC]) != u32_at(b, SH_CRC) || u32_at(b, SH_PAD) != 0 {
            return Err(FormatError::Crc(FileKind::SegmentHeader));
        }
        Ok(SegmentHeader {
            base_offset: u64_at(b, SH_BASE_OFFSET),
            base_index: u64_at(b, SH_BASE_INDEX),
            created_ms: u64_at(b, SH_CREATED_MS),
        })
    }
}

// ---------------------------------------------------------------------------------------
// Entry frame: a fixed header, then the payload (a record batch as-is, or control bytes).

pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"STMF");
const FH_MAGIC: usize = 0;
const FH_PAYLOAD_LEN: usize = FH_MAGIC + size_of::<u32>();
const FH_INDEX: usize = FH_PAYLOAD_LEN + size_of::<u32>();
const FH_TERM: usize = FH_INDEX + size_of::<u64>();
const FH_KIND: usize = FH_TERM + size_of::<u64>();
const FH_RESERVED: usize = FH_KIND + size_of::<u8>();
const FH_CRC: usize = FH_RESERVED + 3;
/// Length of a frame header; the payload starts here.
pub const FRAME_HEADER_LEN: usize = FH_CRC + size_of::<u32>();
const _: () = assert!(FRAME_HEADER_LEN == 32);

/// What an entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A record batch: takes `record_count` offsets.
    Batch,
    /// Opaque control bytes (Raft membership, blank entries): takes no offset.
    Control,
}

impl EntryKind {
    fn code(self) -> u8 {
        match self {
            EntryKind::Batch => 1,
            EntryKind::Control => 2,
        }
    }

    fn from_code(c: u8) -> Option<EntryKind> {
        match c {
            1 => Some(EntryKind::Batch),
            2 => Some(EntryKind::Control),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub payload_len: u32,
    pub index: u64,
    pub term: u64,
    pub kind: EntryKind,
}

/// Why the bytes at a position are not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameDamage {
    /// All-zero header: the clean end of the written data.
    End,
    Short {
        need: u64,
        have: u64,
    },
    BadMagic(u32),
    BadHeaderCrc,
    BadKind(u8),
    PayloadCrc,
    Batch(steme_protocol::BatchError),
}

impl std::fmt::Display for FrameDamage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameDamage::End => write!(f, "end of data"),
            FrameDamage::Short { need, have } => {
                write!(f, "torn frame: need {need} bytes, have {have}")
            }
            FrameDamage::BadMagic(m) => write!(f, "bad frame magic {m:#010x}"),
            FrameDamage::BadHeaderCrc => write!(f, "frame header crc mismatch"),
            FrameDamage::BadKind(k) => write!(f, "unknown entry kind {k}"),
            FrameDamage::PayloadCrc => write!(f, "control payload crc mismatch"),
            FrameDamage::Batch(e) => write!(f, "bad record batch: {e}"),
        }
    }
}

impl FrameHeader {
    /// Total bytes of the frame on disk.
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_LEN as u64 + u64::from(self.payload_len)
    }

    /// Encodes the header. The CRC covers the header bytes before it and, for control
    /// entries, the payload (a batch carries its own CRC).
    pub fn encode(&self, payload: &[u8]) -> [u8; FRAME_HEADER_LEN] {
        let mut b = [0u8; FRAME_HEADER_LEN];
        put_u32(&mut b, FH_MAGIC, FRAME_MAGIC);
        put_u32(&mut b, FH_PAYLOAD_LEN, self.payload_len);
        put_u64(&mut b, FH_INDEX, self.index);
        put_u64(&mut b, FH_TERM, self.term);
        b[FH_KIND] = self.kind.code();
        let crc = frame_crc(&b, self.kind, payload);
        put_u32(&mut b, FH_CRC, crc);
        b
    }

    /// Reads a header without checking its CRC: for bytes below a segment's logical end,
    /// which were validated when written or recovered.
    pub fn peek(b: &[u8]) -> Option<FrameHeader> {
        if b.len() < FRAME_HEADER_LEN || u32_at(b, FH_MAGIC) != FRAME_MAGIC {
            return None;
        }
        Some(FrameHeader {
            payload_len: u32_at(b, FH_PAYLOAD_LEN),
            index: u64_at(b, FH_INDEX),
            term: u64_at(b, FH_TERM),
            kind: EntryKind::from_code(b[FH_KIND])?,
        })
    }

    /// Fully checks the frame that starts at `b[0]` (header, payload CRC or batch
    /// validation) and returns its header and, for a batch, the batch header.
    pub fn check(b: &[u8]) -> Result<(FrameHeader, Option<BatchHeader>), FrameDamage> {
        Self::check_with(b, true)
    }

    /// [`FrameHeader::check`] for bytes the log wrote and is about to serve: the same
    /// header checks and the batch's length and CRC, without walking its records again
    /// (their framing was validated before they were written, and the CRC covers every
    /// byte of them). About a third cheaper on the fetch path.
    pub fn check_stored(b: &[u8]) -> Result<(FrameHeader, Option<BatchHeader>), FrameDamage> {
        Self::check_with(b, false)
    }

    fn check_with(
        b: &[u8],
        walk_records: bool,
    ) -> Result<(FrameHeader, Option<BatchHeader>), FrameDamage> {
        if b.len() < FRAME_HEADER_LEN {
            if b.iter().all(|&x| x == 0) {
                return Err(FrameDamage::End);
            }
            return Err(FrameDamage::Short {
                need: FRAME_HEADER_LEN as u64,
                have: b.len() as u64,
            });
        }
        let head = &b[..FRAME_HEADER_LEN];
        let magic = u32_at(head, FH_MAGIC);
        if magic != FRAME_MAGIC {
            if head.iter().all(|&x| x == 0) {
                return Err(FrameDamage::End);
            }
            return Err(FrameDamage::BadMagic(magic));
        }
        let code = head[FH_KIND];
        let kind = EntryKind::from_code(code).ok_or(FrameDamage::BadKind(code))?;
        if head[FH_RESERVED..FH_CRC].iter().any(|&x| x != 0) {
            return Err(FrameDamage::BadHeaderCrc);
        }
        let h = FrameHeader {
            payload_len: u32_at(head, FH_PAYLOAD_LEN),
            index: u64_at(head, FH_INDEX),
            term: u64_at(head, FH_TERM),
            kind,
        };
        let have = (b.len() - FRAME_HEADER_LEN) as u64;
        let stored = u32_at(head, FH_CRC);
        if kind == EntryKind::Batch && frame_crc(head, kind, &[]) != stored {
            return Err(FrameDamage::BadHeaderCrc);
        }
        if u64::from(h.payload_len) > have {
            return Err(FrameDamage::Short {
                need: h.frame_len(),
                have: b.len() as u64,
            });
        }
        let payload = &b[FRAME_HEADER_LEN..FRAME_HEADER_LEN + h.payload_len as usize];
        match kind {
            EntryKind::Control => {
                if frame_crc(head, kind, payload) != stored {
                    return Err(FrameDamage::PayloadCrc);
                }
                Ok((h, None))
            }
            EntryKind::Batch if walk_records => {
                let bh = steme_protocol::batch::validate(payload).map_err(FrameDamage::Batch)?;
                Ok((h, Some(bh)))
            }
            EntryKind::Batch => {
                let bh = BatchHeader::parse(payload).map_err(FrameDamage::Batch)?;
                if bh.length as usize != payload.len() {
                    return Err(FrameDamage::Batch(
                        steme_protocol::BatchError::LengthMismatch {
                            offset: 4,
                            declared: bh.length,
                            actual: payload.len(),
                        },
                    ));
                }
                let computed = steme_protocol::batch::compute_crc(payload);
                if computed != bh.crc {
                    return Err(FrameDamage::Batch(
                        steme_protocol::BatchError::CrcMismatch {
                            offset: 8,
                            stored: bh.crc,
                            computed,
                        },
                    ));
                }
                Ok((h, Some(bh)))
            }
        }
    }
}

fn frame_crc(head: &[u8], kind: EntryKind, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&head[..FH_CRC]);
    if kind == EntryKind::Control {
        h.update(payload);
    }
    h.finalize()
}

/// The batch header of a trusted batch payload (offsets and HLC), without CRC checks.
pub(crate) fn peek_batch(payload: &[u8]) -> Option<BatchHeader> {
    if payload.len() < BATCH_HEADER_LEN {
        return None;
    }
    BatchHeader::parse(payload).ok()
}

// ---------------------------------------------------------------------------------------
// Sparse index entries (`.index` file body, and the active segment's in-memory index).

const SE_INDEX: usize = 0;
const SE_OFFSET: usize = SE_INDEX + size_of::<u64>();
const SE_POSITION: usize = SE_OFFSET + size_of::<u64>();
const SE_HLC_FLOOR: usize = SE_POSITION + size_of::<u64>();
/// One sparse index entry.
pub const SPARSE_ENTRY_LEN: usize = SE_HLC_FLOOR + size_of::<u64>();
const _: () = assert!(SPARSE_ENTRY_LEN == 32);

/// A point in a segment every `index_interval_bytes`: the frame at `position` has Raft
/// index `index`, its records (if any) start at `offset`, and every batch before it in the
/// segment has HLC below... at most `hlc_floor` (the running maximum; 0 if none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SparseEntry {
    pub index: u64,
    pub offset: u64,
    pub position: u64,
    pub hlc_floor: u64,
}

impl SparseEntry {
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut b = [0u8; SPARSE_ENTRY_LEN];
        put_u64(&mut b, SE_INDEX, self.index);
        put_u64(&mut b, SE_OFFSET, self.offset);
        put_u64(&mut b, SE_POSITION, self.position);
        put_u64(&mut b, SE_HLC_FLOOR, self.hlc_floor);
        out.extend_from_slice(&b);
    }

    /// Entry `i` of a table of encoded entries; the caller keeps `i` in range.
    pub fn at(table: &[u8], i: usize) -> SparseEntry {
        let b = &table[i * SPARSE_ENTRY_LEN..(i + 1) * SPARSE_ENTRY_LEN];
        SparseEntry {
            index: u64_at(b, SE_INDEX),
            offset: u64_at(b, SE_OFFSET),
            position: u64_at(b, SE_POSITION),
            hlc_floor: u64_at(b, SE_HLC_FLOOR),
        }
    }
}

// ---------------------------------------------------------------------------------------
// `.index` footer: the sealed segment's summary, read on open without touching the log.

pub const INDEX_MAGIC: u32 = u32::from_le_bytes(*b"STMX");
const IF_MAGIC: usize = 0;
const IF_VERSION: usize = IF_MAGIC + size_of::<u32>();
const IF_RESERVED: usize = IF_VERSION + size_of::<u16>();
const IF_ENTRY_COUNT: usize = IF_RESERVED + size_of::<u16>();
const IF_BASE_OFFSET: usize = IF_ENTRY_COUNT + size_of::<u64>();
const IF_BASE_INDEX: usize = IF_BASE_OFFSET + size_of::<u64>();
const IF_LAST_INDEX: usize = IF_BASE_INDEX + size_of::<u64>();
const IF_LAST_TERM: usize = IF_LAST_INDEX + size_of::<u64>();
const IF_END_OFFSET: usize = IF_LAST_TERM + size_of::<u64>();
const IF_SIZE: usize = IF_END_OFFSET + size_of::<u64>();
const IF_MAX_HLC: usize = IF_SIZE + size_of::<u64>();
const IF_CREATED_MS: usize = IF_MAX_HLC + size_of::<u64>();
const IF_LAST_APPEND_MS: usize = IF_CREATED_MS + size_of::<u64>();
const IF_ENTRIES_CRC: usize = IF_LAST_APPEND_MS + size_of::<u64>();
const IF_CRC: usize = IF_ENTRIES_CRC + size_of::<u32>();
pub const INDEX_FOOTER_LEN: usize = IF_CRC + size_of::<u32>();
const _: () = assert!(INDEX_FOOTER_LEN == 96);

/// What is known about a segment without reading its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    pub base_offset: u64,
    pub base_index: u64,
    /// Index of the last entry; `base_index - 1` (wrapping) when the segment is empty —
    /// see [`SegmentSummary::is_empty`].
    pub last_index: u64,
    /// Term of the last entry; 0 when empty.
    pub last_term: u64,
    pub end_offset: u64,
    /// Logical end: bytes used, segment header included.
    pub size: u64,
    /// Largest HLC of any record in the segment; 0 when it has none.
    pub max_hlc: u64,
    pub created_ms: u64,
    pub last_append_ms: u64,
}

impl SegmentSummary {
    pub fn is_empty(&self) -> bool {
        self.last_index.wrapping_add(1) == self.base_index
    }

    /// Identifies the segment's content for its `.ids` file: the end offset in the low
    /// half, a CRC of (end offset, size, last index, last term) in the high half. Entries
    /// rewritten after a truncation come from a later term, so they change it.
    pub fn fingerprint(&self) -> u64 {
        let mut h = crc32fast::Hasher::new();
        for v in [self.end_offset, self.size, self.last_index, self.last_term] {
            h.update(&v.to_le_bytes());
        }
        (u64::from(h.finalize()) << 32) | (self.end_offset & 0xffff_ffff)
    }
}

/// Encodes a whole `.index` file: the sparse entries, then the footer.
pub fn encode_index_file(entries: &[u8], s: &SegmentSummary) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() + INDEX_FOOTER_LEN);
    out.extend_from_slice(entries);
    let mut f = [0u8; INDEX_FOOTER_LEN];
    put_u32(&mut f, IF_MAGIC, INDEX_MAGIC);
    put_u16(&mut f, IF_VERSION, FORMAT_VERSION);
    put_u64(
        &mut f,
        IF_ENTRY_COUNT,
        (entries.len() / SPARSE_ENTRY_LEN) as u64,
    );
    put_u64(&mut f, IF_BASE_OFFSET, s.base_offset);
    put_u64(&mut f, IF_BASE_INDEX, s.base_index);
    put_u64(&mut f, IF_LAST_INDEX, s.last_index);
    put_u64(&mut f, IF_LAST_TERM, s.last_term);
    put_u64(&mut f, IF_END_OFFSET, s.end_offset);
    put_u64(&mut f, IF_SIZE, s.size);
    put_u64(&mut f, IF_MAX_HLC, s.max_hlc);
    put_u64(&mut f, IF_CREATED_MS, s.created_ms);
    put_u64(&mut f, IF_LAST_APPEND_MS, s.last_append_ms);
    put_u32(&mut f, IF_ENTRIES_CRC, crc32fast::hash(entries));
    let crc = crc32fast::hash(&f[..IF_CRC]);
    put_u32(&mut f, IF_CRC, crc);
    out.extend_from_slice(&f);
    out
}

/// Decodes the footer of an `.index` file of `file_len` bytes whose last
/// [`INDEX_FOOTER_LEN`] bytes are `footer`. Returns the summary, the entry count and the
/// CRC the entries must have.
pub fn decode_index_footer(
    footer: &[u8],
    file_len: u64,
) -> Result<(SegmentSummary, u64, u32), FormatError> {
    if footer.len() != INDEX_FOOTER_LEN || file_len < INDEX_FOOTER_LEN as u64 {
        return Err(FormatError::Short(FileKind::Index));
    }
    if u32_at(footer, IF_MAGIC) != INDEX_MAGIC || u16_at(footer, IF_VERSION) != FORMAT_VERSION {
        return Err(FormatError::BadMagic(FileKind::Index));
    }
    if crc32fast::hash(&footer[..IF_CRC]) != u32_at(footer, IF_CRC) {
        return Err(FormatError::Crc(FileKind::Index));
    }
    let count = u64_at(footer, IF_ENTRY_COUNT);
    if count.checked_mul(SPARSE_ENTRY_LEN as u64) != Some(file_len - INDEX_FOOTER_LEN as u64) {
        return Err(FormatError::Inconsistent(
            FileKind::Index,
            "entry count does not match the file length",
        ));
    }
    Ok((
        SegmentSummary {
            base_offset: u64_at(footer, IF_BASE_OFFSET),
            base_index: u64_at(footer, IF_BASE_INDEX),
            last_index: u64_at(footer, IF_LAST_INDEX),
            last_term: u64_at(footer, IF_LAST_TERM),
            end_offset: u64_at(footer, IF_END_OFFSET),
            size: u64_at(footer, IF_SIZE),
            max_hlc: u64_at(footer, IF_MAX_HLC),
            created_ms: u64_at(footer, IF_CREATED_MS),
            last_append_ms: u64_at(footer, IF_LAST_APPEND_MS),
        },
        count,
        u32_at(footer, IF_ENTRIES_CRC),
    ))
}

// ---------------------------------------------------------------------------------------
// `.ids` file: a Bloom filter, then (id prefix, relative offset) pairs sorted by prefix.

pub const IDS_MAGIC: u32 = u32::from_le_bytes(*b"STMI");
const IH_MAGIC: usize = 0;
const IH_VERSION: usize = IH_MAGIC + size_of::<u32>();
const IH_HASHES: usize = IH_VERSION + size_of::<u16>();
const IH_COUNT: usize = IH_HASHES + size_of::<u16>();
const IH_BLOOM_WORDS: usize = IH_COUNT + size_of::<u64>();
const IH_BASE_OFFSET: usize = IH_BLOOM_WORDS + size_of::<u64>();
const IH_FINGERPRINT: usize = IH_BASE_OFFSET + size_of::<u64>();
pub const IDS_HEADER_LEN: usize = IH_FINGERPRINT + size_of::<u64>();
const _: () = assert!(IDS_HEADER_LEN == 40);
const IE_PREFIX: usize = 0;
const IE_REL_OFFSET: usize = IE_PREFIX + size_of::<u64>();
/// One id entry: the first 8 bytes of the id (as a little-endian u64) and the record's
/// offset relative to the segment's base offset.
pub const ID_ENTRY_LEN: usize = IE_REL_OFFSET + size_of::<u32>();
const _: () = assert!(ID_ENTRY_LEN == 12);
/// Bloom filter bits per id and hash count (about 1 % false positives).
pub const BLOOM_BITS_PER_ID: u64 = 10;
pub const BLOOM_HASHES: u16 = 7;

/// The id prefix used as the sort key.
pub fn id_prefix(id: &[u8; 32]) -> u64 {
    u64_at(id, 0)
}

/// The two 64-bit hashes from which the filter's probes are derived (Kirsch–Mitzenmacher).
/// Ids are BLAKE3 output, so the prefix already is uniform; the second hash is a mix of it.
/// Deriving both from the prefix lets the filter be built from what the active segment
/// keeps in memory (prefixes only).
fn bloom_hashes(prefix: u64) -> (u64, u64) {
    let mut z = prefix.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (prefix, (z ^ (z >> 31)) | 1)
}

/// Encodes a whole `.ids` file from `(id prefix, relative offset)` pairs in any order.
/// `fingerprint` ([`SegmentSummary::fingerprint`]) ties the file to the exact segment
/// content it indexes.
pub fn encode_ids_file(base_offset: u64, fingerprint: u64, ids: &mut [(u64, u32)]) -> Vec<u8> {
    ids.sort_unstable();
    let count = ids.len() as u64;
    let words = (count * BLOOM_BITS_PER_ID).div_ceil(64).max(1);
    let bits = words * 64;
    let mut bloom = vec![0u64; words as usize];
    for &(prefix, _) in ids.iter() {
        let (h1, h2) = bloom_hashes(prefix);
        for i in 0..u64::from(BLOOM_HASHES) {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % bits;
            bloom[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }
    let total = IDS_HEADER_LEN + bloom.len() * 8 + ids.len() * ID_ENTRY_LEN + 4;
    let mut out = Vec::with_capacity(total);
    let mut h = [0u8; IDS_HEADER_LEN];
    put_u32(&mut h, IH_MAGIC, IDS_MAGIC);
    put_u16(&mut h, IH_VERSION, FORMAT_VERSION);
    put_u16(&mut h, IH_HASHES, BLOOM_HASHES);
    put_u64(&mut h, IH_COUNT, count);
    put_u64(&mut h, IH_BLOOM_WORDS, words);
    put_u64(&mut h, IH_BASE_OFFSET, base_offset);
    put_u64(&mut h, IH_FINGERPRINT, fingerprint);
    out.extend_from_slice(&h);
    for w in &bloom {
        out.extend_from_slice(&w.to_le_bytes());
    }
    for (prefix, rel) in ids.iter() {
        out.extend_from_slice(&prefix.to_le_bytes());
        out.extend_from_slice(&rel.to_le_bytes());
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A checked view of an `.ids` file.
#[derive(Debug, Clone)]
pub struct IdTable {
    bytes: bytes::Bytes,
    hashes: u16,
    words: u64,
    count: u64,
    entries_at: usize,
}

impl IdTable {
    /// Checks magic, lengths and the CRC of the whole file.
    pub fn parse(
        bytes: bytes::Bytes,
        base_offset: u64,
        fingerprint: u64,
    ) -> Result<IdTable, FormatError> {
        let b = &bytes[..];
        if b.len() < IDS_HEADER_LEN + 4 {
            return Err(FormatError::Short(FileKind::Ids));
        }
        if u32_at(b, IH_MAGIC) != IDS_MAGIC || u16_at(b, IH_VERSION) != FORMAT_VERSION {
            return Err(FormatError::BadMagic(FileKind::Ids));
        }
        if u64_at(b, IH_BASE_OFFSET) != base_offset || u64_at(b, IH_FINGERPRINT) != fingerprint {
            return Err(FormatError::Inconsistent(
                FileKind::Ids,
                "belongs to another segment",
            ));
        }
        let hashes = u16_at(b, IH_HASHES);
        let count = u64_at(b, IH_COUNT);
        let words = u64_at(b, IH_BLOOM_WORDS);
        let expect = words
            .checked_mul(8)
            .and_then(|x| x.checked_add(count.checked_mul(ID_ENTRY_LEN as u64)?))
            .and_then(|x| x.checked_add(IDS_HEADER_LEN as u64 + 4));
        if expect != Some(b.len() as u64) || words == 0 {
            return Err(FormatError::Inconsistent(
                FileKind::Ids,
                "length does not match its header",
            ));
        }
        let body = b.len() - 4;
        if crc32fast::hash(&b[..body]) != u32_at(b, body) {
            return Err(FormatError::Crc(FileKind::Ids));
        }
        Ok(IdTable {
            entries_at: IDS_HEADER_LEN + words as usize * 8,
            bytes,
            hashes,
            words,
            count,
        })
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn may_contain(&self, prefix: u64) -> bool {
        let bits = self.words * 64;
        let (h1, h2) = bloom_hashes(prefix);
        (0..u64::from(self.hashes)).all(|i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % bits;
            let word = u64_at(&self.bytes, IDS_HEADER_LEN + (bit / 64) as usize * 8);
            word & (1 << (bit % 64)) != 0
        })
    }

    fn prefix_at(&self, i: usize) -> u64 {
        u64_at(&self.bytes, self.entries_at + i * ID_ENTRY_LEN + IE_PREFIX)
    }

    /// Relative offsets of every entry with id prefix `p`, ascending. Usually empty (the
    /// filter answers) or one.
    pub fn candidates(&self, p: u64, out: &mut Vec<u32>) {
        if !self.may_contain(p) {
            return;
        }
        let n = self.count as usize;
        let (mut lo, mut hi) = (0usize, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.prefix_at(mid) < p {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let mut i = lo;
        while i < n && self.prefix_at(i) == p {
            out.push(u32_at(
                &self.bytes,
                self.entries_at + i * ID_ENTRY_LEN + IE_REL_OFFSET,
            ));
            i += 1;
        }
    }

    /// Every `(prefix, relative offset)` entry, for loading the active segment's map.
    pub fn entries(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        (0..self.count as usize).map(move |i| {
            let at = self.entries_at + i * ID_ENTRY_LEN;
            (
                u64_at(&self.bytes, at),
                u32_at(&self.bytes, at + IE_REL_OFFSET),
            )
        })
    }
}

mod meta;
pub use meta::{Checkpoint, MetaFile};

#[cfg(test)]
mod tests;
