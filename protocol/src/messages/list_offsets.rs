//! ListOffsets: find an offset in one partition — the first, the end, or the first record
//! at or after an HLC time — so that a consumer knows where to start fetching.
//!
//! Request:
//!
//! ```text
//! +---------------+---------------+-----------------------+
//! | topic: string | partition u32 | spec: u8 tag, payload |
//! +---------------+---------------+-----------------------+
//! spec: 0 = earliest                (no payload)
//!       1 = latest                  (no payload)
//!       2 = at or after an HLC time  u64 HLC (NTP64)
//! ```
//!
//! Response (after the error code):
//!
//! ```text
//! +------------+---------------+--------------------+----------------------+
//! | offset u64 | hlc: opt<u64> | high_watermark u64 | log_start_offset u64 |
//! +------------+---------------+--------------------+----------------------+
//! ```
//!
//! `earliest` is the log start offset and `latest` the high watermark (the offset the next
//! record will take). `at or after` is the first offset whose record has an HLC at or after
//! the time (HLC grows with offset within a partition, D6), or the high watermark if there is
//! none. `hlc` is the HLC of the record at `offset` when one exists below the high watermark,
//! so it is absent for `latest` and for a time past the last record.

use bytes::{BufMut, BytesMut};

use crate::messages::Body;
use crate::wire::{DecodeError, Reader, put_option, put_string};

/// Which offset to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark.
    Latest,
    /// The first offset whose record's HLC is at or after this one.
    AtOrAfterHlc(u64),
}

impl OffsetSpec {
    const EARLIEST: u8 = 0;
    const LATEST: u8 = 1;
    const AT_OR_AFTER_HLC: u8 = 2;

    fn encode(&self, buf: &mut BytesMut) {
        match self {
            OffsetSpec::Earliest => buf.put_u8(Self::EARLIEST),
            OffsetSpec::Latest => buf.put_u8(Self::LATEST),
            OffsetSpec::AtOrAfterHlc(hlc) => {
                buf.put_u8(Self::AT_OR_AFTER_HLC);
                buf.put_u64_le(*hlc);
            }
        }
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let at = r.position();
        match r.u8()? {
            Self::EARLIEST => Ok(OffsetSpec::Earliest),
            Self::LATEST => Ok(OffsetSpec::Latest),
            Self::AT_OR_AFTER_HLC => Ok(OffsetSpec::AtOrAfterHlc(r.u64()?)),
            tag => Err(DecodeError::InvalidTag {
                what: "offset spec",
                tag: tag.into(),
                offset: at,
            }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Asks where a partition's log stands, or which offset a time maps to.
pub struct ListOffsetsRequest {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// What to look up.
    pub spec: OffsetSpec,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// The offset asked for, and where the log stands.
pub struct ListOffsetsResponse {
    /// The offset.
    pub offset: u64,
    /// The HLC of the record at `offset`, if there is one below the high watermark.
    pub hlc: Option<u64>,
    /// The offset after the last committed record.
    pub high_watermark: u64,
    /// The first offset the log still holds.
    pub log_start_offset: u64,
}

impl Body for ListOffsetsRequest {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.topic);
        buf.put_u32_le(self.partition);
        self.spec.encode(buf);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ListOffsetsRequest {
            topic: r.string()?,
            partition: r.u32()?,
            spec: OffsetSpec::decode(r)?,
        })
    }
}

impl Body for ListOffsetsResponse {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u64_le(self.offset);
        put_option(buf, self.hlc.as_ref(), |b, h| b.put_u64_le(*h));
        buf.put_u64_le(self.high_watermark);
        buf.put_u64_le(self.log_start_offset);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ListOffsetsResponse {
            offset: r.u64()?,
            hlc: r.option(Reader::u64)?,
            high_watermark: r.u64()?,
            log_start_offset: r.u64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::roundtrip;

    #[test]
    fn roundtrip_request() {
        for spec in [
            OffsetSpec::Earliest,
            OffsetSpec::Latest,
            OffsetSpec::AtOrAfterHlc(0x1234_5678_9abc_def0),
        ] {
            roundtrip(&ListOffsetsRequest {
                topic: "facts".into(),
                partition: 7,
                spec,
            });
        }
    }

    #[test]
    fn roundtrip_response() {
        roundtrip(&ListOffsetsResponse {
            offset: 42,
            hlc: Some(9000),
            high_watermark: 100,
            log_start_offset: 10,
        });
        roundtrip(&ListOffsetsResponse {
            offset: 100,
            hlc: None,
            high_watermark: 100,
            log_start_offset: 10,
        });
    }

    #[test]
    fn truncated_hlc_payload() {
        let mut buf = BytesMut::new();
        ListOffsetsRequest {
            topic: "t".into(),
            partition: 0,
            spec: OffsetSpec::AtOrAfterHlc(5),
        }
        .encode(&mut buf);
        buf.truncate(buf.len() - 1);
        let err = ListOffsetsRequest::decode(&mut Reader::new(buf.freeze())).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::UnexpectedEof {
                offset: 8,
                need: 8,
                have: 7
            }
        ));
    }

    #[test]
    fn rejects_unknown_offset_spec() {
        let mut buf = BytesMut::new();
        ListOffsetsRequest {
            topic: "t".into(),
            partition: 0,
            spec: OffsetSpec::Latest,
        }
        .encode(&mut buf);
        buf[2 + 1 + 4] = 3;
        let err = ListOffsetsRequest::decode(&mut Reader::new(buf.freeze())).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::InvalidTag {
                what: "offset spec",
                tag: 3,
                offset: 7,
            }
        ));
    }
}
