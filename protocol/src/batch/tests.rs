//! Tests of record batches: building, viewing, validating, patching headers.

use super::*;
use crate::assertion::tests::sample_signed;

fn sample_batch(n: usize) -> Bytes {
    let mut b = BatchBuilder::default();
    for i in 0..n {
        b.push(&sample_signed(i as u64));
    }
    b.finish()
}

#[test]
fn roundtrip_builder_and_view() {
    let bytes = sample_batch(5);
    let batch = RecordBatch::new(bytes).unwrap();
    assert_eq!(batch.record_count(), 5);
    let recs: Vec<_> = batch.records().collect();
    assert_eq!(recs.len(), 5);
    for (i, r) in recs.iter().enumerate() {
        let expect = sample_signed(i as u64);
        assert_eq!(r.assertion, expect.canonical());
        assert_eq!(r.signature, &expect.signature().to_bytes());
        assert_eq!(r.signer(), expect.signer());
        assert_eq!(r.id(), expect.id());
    }
}

#[test]
fn patch_sets_offsets_and_keeps_records() {
    let bytes = sample_batch(3);
    let mut buf = bytes.to_vec();
    patch_header(&mut buf, 1000, 77, 3);
    assert_eq!(&buf[HEADER_LEN..], &bytes[HEADER_LEN..]);
    let batch = RecordBatch::new(Bytes::from(buf)).unwrap();
    assert_eq!(batch.base_offset(), 1000);
    assert_eq!(batch.header().leader_id, 3);
    let r: Vec<_> = batch.records().map(|r| (r.offset, r.hlc)).collect();
    assert_eq!(r, vec![(1000, 77), (1001, 78), (1002, 79)]);
    let mut again = batch.as_bytes().to_vec();
    patch_base_offset(&mut again, 5);
    assert_eq!(validate(&again).unwrap().base_offset, 5);
}

#[test]
fn rejects_bad_magic_short_and_crc() {
    let bytes = sample_batch(2);
    assert!(matches!(
        validate(&bytes[..10]),
        Err(BatchError::Short { .. })
    ));
    let mut b = bytes.to_vec();
    b[0] ^= 1;
    assert!(matches!(
        validate(&b),
        Err(BatchError::BadMagic { offset: 0, .. })
    ));
    let mut b = bytes.to_vec();
    let last = b.len() - 1;
    b[last] ^= 0x40;
    assert!(matches!(
        validate(&b),
        Err(BatchError::CrcMismatch { offset: 8, .. })
    ));
    assert!(matches!(
        validate(&bytes[..bytes.len() - 1]),
        Err(BatchError::LengthMismatch { .. })
    ));
}

fn with_fixed_crc(mut b: Vec<u8>) -> Vec<u8> {
    let crc = compute_crc(&b);
    b[CRC_OFFSET..CRC_START].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn rejects_count_mismatch_and_overrun_even_with_good_crc() {
    let bytes = sample_batch(2);
    let mut b = bytes.to_vec();
    b[RECORD_COUNT_OFFSET] = 3;
    let b = with_fixed_crc(b);
    assert!(matches!(
        validate(&b),
        Err(BatchError::CountMismatch {
            declared: 3,
            found: 2,
            ..
        })
    ));
    let mut b = bytes.to_vec();
    b[RECORD_COUNT_OFFSET] = 1;
    assert!(matches!(
        validate(&with_fixed_crc(b)),
        Err(BatchError::CountMismatch { declared: 1, .. })
    ));
    let mut b = bytes.to_vec();
    b[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        validate(&with_fixed_crc(b)),
        Err(BatchError::RecordOverrun {
            index: 0,
            offset: HEADER_LEN,
            ..
        })
    ));
    let mut b = bytes.to_vec();
    b[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&3u32.to_le_bytes());
    assert!(matches!(
        validate(&with_fixed_crc(b)),
        Err(BatchError::RecordTooShort { index: 0, .. })
    ));
}

#[test]
fn split_all_stops_at_partial_tail() {
    let a = sample_batch(2);
    let b = sample_batch(3);
    let mut all = a.to_vec();
    all.extend_from_slice(&b);
    all.extend_from_slice(&a[..20]);
    let all = Bytes::from(all);
    let got: Vec<_> = RecordBatch::split_all(&all)
        .map(|r| r.unwrap().record_count())
        .collect();
    assert_eq!(got, vec![2, 3]);
}

#[test]
fn header_offsets_match_diagram() {
    assert_eq!(
        (
            LENGTH_OFFSET,
            CRC_OFFSET,
            VERSION_OFFSET,
            ATTRIBUTES_OFFSET,
            BASE_OFFSET_OFFSET,
            BASE_HLC_OFFSET,
            LEADER_ID_OFFSET,
            RECORD_COUNT_OFFSET,
            RESERVED_OFFSET
        ),
        (4, 8, 12, 14, 16, 24, 32, 40, 44)
    );
}
