//! Stamping a batch's header (offset, HLC, broker) and updating its CRC without reading the
//! records again.
//!
//! CRC-32 is linear: for a header `H` followed by `m` bytes of records `R`,
//! `crc(H ‖ R) = shift(crc(H), m) ⊕ crc(R)`, where `shift` appends `m` zero bytes to a CRC
//! state (a multiplication by x^8m modulo the polynomial, logarithmic in `m`). So replacing
//! `H` by `H'` changes the CRC by `shift(crc(H) ⊕ crc(H'), m)`, whatever `R` holds. The
//! broker stamps each batch twice (the leader's HLC, then each replica's base offset): with
//! this, neither stamp costs a pass over the records, and the one pass that checks a batch
//! is the only one on each side.
//!
//! The update corrects the stored CRC by the header's change only. A batch whose stored CRC
//! did not match its bytes still does not after a patch (the mismatch is carried over
//! exactly), so a patch never turns damaged bytes into a batch that passes [`validate`].
//!
//! [`validate`]: super::validate

use super::{BASE_HLC_OFFSET, BASE_OFFSET_OFFSET, CRC_OFFSET, CRC_START, LEADER_ID_OFFSET, le_u32};

/// The header bytes a patch may change, from the start of the CRC's coverage: everything up
/// to the end of `leader_id`.
const PATCHED_END: usize = LEADER_ID_OFFSET + size_of::<u64>();

/// Sets `base_offset` and `base_hlc` (and the stamping broker) in place and updates the CRC
/// by the header's change. Records are not touched. `batch` must be at least a header long
/// (a validated or built batch).
pub fn patch_header(batch: &mut [u8], base_offset: u64, base_hlc: u64, leader_id: u64) {
    rewrite_header(batch, |b| {
        b[BASE_OFFSET_OFFSET..BASE_OFFSET_OFFSET + 8].copy_from_slice(&base_offset.to_le_bytes());
        b[BASE_HLC_OFFSET..BASE_HLC_OFFSET + 8].copy_from_slice(&base_hlc.to_le_bytes());
        b[LEADER_ID_OFFSET..LEADER_ID_OFFSET + 8].copy_from_slice(&leader_id.to_le_bytes());
    });
}

/// Sets only `base_offset` and updates the CRC (what the log store does on append, D2).
pub fn patch_base_offset(batch: &mut [u8], base_offset: u64) {
    rewrite_header(batch, |b| {
        b[BASE_OFFSET_OFFSET..BASE_OFFSET_OFFSET + 8].copy_from_slice(&base_offset.to_le_bytes());
    });
}

/// Recomputes the CRC over the whole batch, whatever it held: for bytes changed on purpose
/// past the header (a test's tampered record). Patches never need it.
pub fn reseal(batch: &mut [u8]) {
    let crc = super::compute_crc(batch);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Applies `edit` to the bytes `CRC_START..PATCHED_END` and corrects the stored CRC by
/// their change, in time independent of the batch's length.
fn rewrite_header(batch: &mut [u8], edit: impl FnOnce(&mut [u8])) {
    let before = crc32fast::hash(&batch[CRC_START..PATCHED_END]);
    edit(batch);
    let after = crc32fast::hash(&batch[CRC_START..PATCHED_END]);
    let rest = (batch.len() - PATCHED_END) as u64;
    let stored = le_u32(batch, CRC_OFFSET);
    let crc = stored ^ append_zeros(before ^ after, rest);
    batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
}

/// `x · x^(8·len)` modulo the CRC polynomial: a CRC difference carried past `len` bytes.
fn append_zeros(x: u32, len: u64) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial_len(x, 0);
    h.combine(&crc32fast::Hasher::new_with_initial_len(0, len));
    h.finalize()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::{
        BatchBuilder, BatchError, RECORD_COUNT_OFFSET, compute_crc, validate, validate_framing,
    };
    use super::*;

    /// A built batch of `n` records of `size` bytes each (content varies with `seed`).
    fn built(n: usize, size: usize, seed: u8) -> Vec<u8> {
        let mut b = BatchBuilder::with_capacity(n * (size + 70));
        for i in 0..n {
            let body: Vec<u8> = (0..size)
                .map(|j| seed.wrapping_add((i * 31 + j) as u8))
                .collect();
            b.push_raw(&body, &[seed; 64]);
        }
        b.finish().to_vec()
    }

    #[test]
    fn framing_validation_skips_the_crc_and_nothing_else() {
        let mut b = built(3, 100, 1);
        b[200] ^= 1;
        assert!(matches!(validate(&b), Err(BatchError::CrcMismatch { .. })));
        assert_eq!(validate_framing(&b).unwrap().record_count, 3);
        b[RECORD_COUNT_OFFSET] = 4;
        assert!(matches!(
            validate_framing(&b),
            Err(BatchError::CountMismatch { .. })
        ));
        assert!(validate_framing(&b[..b.len() - 1]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The updated CRC is exactly the CRC computed afresh, for any batch length.
        #[test]
        fn a_patched_crc_equals_a_fresh_one(
            n in 1usize..40,
            size in 40usize..700,
            seed in any::<u8>(),
            offset in any::<u64>(),
            hlc in any::<u64>(),
            leader in any::<u64>(),
            later in any::<u64>(),
        ) {
            let mut b = built(n, size, seed);
            patch_header(&mut b, offset, hlc, leader);
            prop_assert_eq!(le_u32(&b, CRC_OFFSET), compute_crc(&b));
            prop_assert!(validate(&b).is_ok());
            patch_base_offset(&mut b, later);
            prop_assert_eq!(le_u32(&b, CRC_OFFSET), compute_crc(&b));
            prop_assert_eq!(validate(&b).unwrap().base_offset, later);
        }

        /// A damaged batch stays damaged through any patch: the mismatch is carried over.
        #[test]
        fn a_patch_never_launders_damage(
            n in 1usize..10,
            pos in 48usize..2000,
            bit in 0u8..8,
            offset in any::<u64>(),
            hlc in any::<u64>(),
        ) {
            let mut b = built(n, 100, 7);
            let pos = 48 + pos % (b.len() - 48);
            b[pos] ^= 1 << bit;
            let mismatch = le_u32(&b, CRC_OFFSET) ^ compute_crc(&b);
            prop_assert_ne!(mismatch, 0);
            patch_header(&mut b, offset, hlc, 3);
            patch_base_offset(&mut b, offset ^ 1);
            prop_assert_eq!(le_u32(&b, CRC_OFFSET) ^ compute_crc(&b), mismatch);
            prop_assert!(validate(&b).is_err());
        }
    }
}
