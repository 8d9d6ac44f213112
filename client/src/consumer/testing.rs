//! Batches as a fetch answer holds them, for the consumer's tests.

use bytes::Bytes;
use steme_protocol::batch::patch_header;
use steme_protocol::{Assertion, BatchBuilder, SignedAssertion, SigningKey, Value};

/// Assertion number `i`, signed.
pub(super) fn signed(i: u64) -> SignedAssertion {
    Assertion {
        subject: format!("urn:test:{i}"),
        predicate: "p".into(),
        object: Value::Integer(i as i64),
        source: "test".into(),
        confidence: None,
        supersedes: None,
        issued_at: 1_700_000_000_000 + i,
    }
    .sign(&SigningKey::from_bytes(&[5; 32]))
    .unwrap()
}

/// One batch of assertions `numbers`, stamped at `base_offset` (HLC `1000 + base_offset`).
pub(super) fn batch_bytes(base_offset: u64, numbers: std::ops::Range<u64>) -> Vec<u8> {
    let mut b = BatchBuilder::default();
    for i in numbers {
        b.push(&signed(i));
    }
    let mut bytes = b.finish().to_vec();
    patch_header(&mut bytes, base_offset, 1000 + base_offset, 1);
    bytes
}

/// Two stamped batches, offsets 10..13 and 13..15, as a fetch response holds them.
pub(crate) fn fetched() -> Bytes {
    Bytes::from([batch_bytes(10, 0..3), batch_bytes(13, 3..5)].concat())
}
