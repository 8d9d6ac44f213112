//! The durable-point slot of a segment file (bytes 40..96, drawn in `segments/FORMAT.md`):
//! the last point of the log known synced, rewritten in place with each group commit.

use super::{FIXED_HEADER_LEN, put_u32, put_u64, u32_at, u64_at};

// The durable-point slot follows the fixed header. It is rewritten in place (one `pwrite`)
// by every group commit, so it is covered by the same `fdatasync` as the data.
pub const DURABLE_MAGIC: u32 = u32::from_le_bytes(*b"STMD");
/// Byte position of the durable-point slot in a segment file.
pub const DURABLE_SLOT_POS: usize = FIXED_HEADER_LEN;
pub(crate) const DP_MAGIC: usize = 0;
pub(crate) const DP_RESERVED: usize = DP_MAGIC + size_of::<u32>();
pub(crate) const DP_SEGMENT: usize = DP_RESERVED + size_of::<u32>();
pub(crate) const DP_POSITION: usize = DP_SEGMENT + size_of::<u64>();
pub(crate) const DP_NEXT_INDEX: usize = DP_POSITION + size_of::<u64>();
pub(crate) const DP_LAST_TERM: usize = DP_NEXT_INDEX + size_of::<u64>();
pub(crate) const DP_END_OFFSET: usize = DP_LAST_TERM + size_of::<u64>();
pub(crate) const DP_CRC: usize = DP_END_OFFSET + size_of::<u64>();
pub(crate) const DP_PAD: usize = DP_CRC + size_of::<u32>();
/// Length of the durable-point slot.
pub const DURABLE_SLOT_LEN: usize = DP_PAD + size_of::<u32>();
const _: () = assert!(DURABLE_SLOT_LEN == 56);

/// A point of the log known durable: every entry before it had been fsynced when it was
/// recorded. Damage found below the recorded point on open is corruption (repaired, never
/// cut); only bytes past it can be a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct DurablePoint {
    /// Base offset of the segment holding the point (compared first: segments are ordered
    /// by base offset).
    pub segment: u64,
    /// Byte position in that segment where the durable data ends (a frame boundary).
    pub position: u64,
    /// One past the last durable Raft index.
    pub next_index: u64,
    /// Term of the last durable entry (0 if none).
    pub last_term: u64,
    /// The log end offset at the point.
    pub end_offset: u64,
}

impl DurablePoint {
    pub fn encode(&self) -> [u8; DURABLE_SLOT_LEN] {
        let mut b = [0u8; DURABLE_SLOT_LEN];
        put_u32(&mut b, DP_MAGIC, DURABLE_MAGIC);
        put_u64(&mut b, DP_SEGMENT, self.segment);
        put_u64(&mut b, DP_POSITION, self.position);
        put_u64(&mut b, DP_NEXT_INDEX, self.next_index);
        put_u64(&mut b, DP_LAST_TERM, self.last_term);
        put_u64(&mut b, DP_END_OFFSET, self.end_offset);
        let crc = crc32fast::hash(&b[..DP_CRC]);
        put_u32(&mut b, DP_CRC, crc);
        b
    }

    /// The point in a slot; `None` for a slot never written (all zeros) or damaged.
    pub fn decode(b: &[u8]) -> Option<DurablePoint> {
        let b = b.get(..DURABLE_SLOT_LEN)?;
        let ok = u32_at(b, DP_MAGIC) == DURABLE_MAGIC
            && crc32fast::hash(&b[..DP_CRC]) == u32_at(b, DP_CRC)
            && u32_at(b, DP_RESERVED) == 0
            && u32_at(b, DP_PAD) == 0;
        ok.then(|| DurablePoint {
            segment: u64_at(b, DP_SEGMENT),
            position: u64_at(b, DP_POSITION),
            next_index: u64_at(b, DP_NEXT_INDEX),
            last_term: u64_at(b, DP_LAST_TERM),
            end_offset: u64_at(b, DP_END_OFFSET),
        })
    }
}
