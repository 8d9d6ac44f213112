//! Split markers: the entry an old partition's leader writes into its log when its topic
//! grows (`metadata::split`). Its place in the log is the split point: records before it
//! were checked against the old partition count, records after it against the new one.
//!
//! A marker is a normal Raft entry whose bytes are `"STMS" | epoch u64` (little-endian).
//! A record batch starts with `"STMB"`, so the two never mix up. The log stores a marker
//! as a control entry: it takes no offset, and fetches never return it.

use bytes::{BufMut, Bytes, BytesMut};

const MAGIC: &[u8; 4] = b"STMS";
const LEN: usize = MAGIC.len() + size_of::<u64>();

/// The marker of map epoch `epoch`.
pub fn encode(epoch: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(LEN);
    b.put_slice(MAGIC);
    b.put_u64_le(epoch);
    b.freeze()
}

/// Whether `bytes` are a marker (of any shape: a malformed one is still not a batch).
pub fn is_marker(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

/// The epoch of a well-formed marker.
pub fn decode(bytes: &[u8]) -> Option<u64> {
    if bytes.len() != LEN || !is_marker(bytes) {
        return None;
    }
    let mut epoch = [0u8; 8];
    epoch.copy_from_slice(&bytes[MAGIC.len()..]);
    Some(u64::from_le_bytes(epoch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_roundtrip_and_never_look_like_batches() {
        assert_eq!(decode(&encode(7)), Some(7));
        assert!(!is_marker(b"STMB\0\0\0\0"));
        assert_eq!(decode(b"STMS\x01"), None);
        let mut long = encode(1).to_vec();
        long.push(0);
        assert_eq!(decode(&long), None);
    }
}
