//! Produce: append one record batch to one partition.
//!
//! Request:
//!
//! ```text
//! +----------------+---------------+-------+-----------+----------------+--------------------+
//! | topic: string  | partition u32 | acks  | timeout   | causality      | batch: bytes32     |
//! |                |               | u8    | u32 ms    | opt<u64 HLC>   | (one record batch) |
//! +----------------+---------------+-------+-----------+----------------+--------------------+
//! acks: 1 = leader (answered once the leader has it durably), 2 = all (committed by a quorum)
//! ```
//!
//! Response (after the error code):
//!
//! ```text
//! +----------------+--------------+------------------------------------------------------+
//! | base_offset u64| base_hlc u64 | records: [ existing ]                                |
//! +----------------+--------------+------------------------------------------------------+
//! | throttle_ms u32|
//! +----------------+
//! ```
//!
//! `throttle_ms` (version 1) is non-zero when the principal is over its produce quota: the
//! broker holds the connection's next request back that long, and a client waits as long
//! before it sends another (Kafka's `throttle_time_ms`).
//!
//! ```text
//! existing = 0                                   appended
//!          | 1 offset u64 | hlc u64              a duplicate, already in this partition
//!          | 2 offset u64 | hlc u64 | partition u32   a duplicate in an older partition of
//!                                                the subject (stored before its topic grew)
//! ```
//!
//! One entry per record of the request's batch, in order: absent for a record that was
//! appended, present for a duplicate (its content id was already in the log), naming where
//! it already is. Appended records take consecutive offsets and HLCs from `base_offset` and
//! `base_hlc`, in request order.

use bytes::{BufMut, Bytes, BytesMut};

use crate::messages::Body;
use crate::wire::{DecodeError, Reader, put_bytes, put_count, put_option, put_string};

/// How much of the cluster must have a batch before the producer is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum Acks {
    /// The leader has appended and flushed it (may be lost if the leader dies before a
    /// quorum has it).
    Leader = 1,
    /// A quorum has it durably and the leader has applied it (the default).
    #[default]
    All = 2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Appends a batch of signed records to one partition.
pub struct ProduceRequest {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// How many replicas must have the batch before the answer.
    pub acks: Acks,
    /// How long the broker may take.
    pub timeout_ms: u32,
    /// The highest HLC the producer has seen; the leader stamps the batch after it (D6).
    pub causality: Option<u64>,
    /// One record batch as built by [`crate::BatchBuilder`].
    pub batch: Bytes,
}

/// Where an already-present record lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Existing {
    /// The record's offset.
    pub offset: u64,
    /// The record's HLC (NTP64).
    pub hlc: u64,
    /// The partition it is in, when not the one produced to: a record of a subject that
    /// moved when its topic grew, stored before in the subject's old partition.
    pub partition: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Where a produced batch landed: offsets and HLCs follow from the base, duplicates aside.
pub struct ProduceResponse {
    /// The offset of the batch's first record.
    pub base_offset: u64,
    /// The HLC of the batch's first record.
    pub base_hlc: u64,
    /// Per record of the request batch: `Some` if it was a duplicate.
    pub duplicates: Vec<Option<Existing>>,
    /// How long the client should wait before its next request (quota), in ms.
    pub throttle_ms: u32,
}

/// The outcome for one record of a produce request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordAck {
    /// The record's offset.
    pub offset: u64,
    /// The record's HLC (NTP64).
    pub hlc: u64,
    /// The record was already in the log: `offset` and `hlc` are where it is.
    pub duplicate: bool,
    /// For a duplicate in another partition (see [`Existing::partition`]): that partition.
    pub partition: Option<u32>,
}

impl ProduceResponse {
    /// Offsets and HLCs per record, in request order.
    pub fn record_acks(&self) -> impl Iterator<Item = RecordAck> + '_ {
        let mut next = 0u64;
        self.duplicates.iter().map(move |d| match d {
            Some(e) => RecordAck {
                offset: e.offset,
                hlc: e.hlc,
                duplicate: true,
                partition: e.partition,
            },
            None => {
                let ack = RecordAck {
                    offset: self.base_offset + next,
                    hlc: self.base_hlc + next,
                    duplicate: false,
                    partition: None,
                };
                next += 1;
                ack
            }
        })
    }
}

impl Body for ProduceRequest {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.topic);
        buf.put_u32_le(self.partition);
        buf.put_u8(self.acks as u8);
        buf.put_u32_le(self.timeout_ms);
        put_option(buf, self.causality.as_ref(), |b, h| b.put_u64_le(*h));
        put_bytes(buf, &self.batch);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let topic = r.string()?;
        let partition = r.u32()?;
        let at = r.position();
        let acks = match r.u8()? {
            1 => Acks::Leader,
            2 => Acks::All,
            tag => {
                return Err(DecodeError::InvalidTag {
                    what: "acks",
                    tag: tag.into(),
                    offset: at,
                });
            }
        };
        Ok(ProduceRequest {
            topic,
            partition,
            acks,
            timeout_ms: r.u32()?,
            causality: r.option(Reader::u64)?,
            batch: r.bytes()?,
        })
    }
}

impl Body for ProduceResponse {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_u64_le(self.base_offset);
        buf.put_u64_le(self.base_hlc);
        put_count(buf, self.duplicates.len());
        for d in &self.duplicates {
            match d {
                None => buf.put_u8(0),
                Some(e) => {
                    buf.put_u8(if e.partition.is_some() { 2 } else { 1 });
                    buf.put_u64_le(e.offset);
                    buf.put_u64_le(e.hlc);
                    if let Some(p) = e.partition {
                        buf.put_u32_le(p);
                    }
                }
            }
        }
        buf.put_u32_le(self.throttle_ms);
    }

    fn throttle_ms(&self) -> u32 {
        self.throttle_ms
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(ProduceResponse {
            base_offset: r.u64()?,
            base_hlc: r.u64()?,
            duplicates: r.vec_of("record acks", 1, |r| {
                let at = r.position();
                let tag = r.u8()?;
                if tag == 0 {
                    return Ok(None);
                }
                let (offset, hlc) = (r.u64()?, r.u64()?);
                let partition = match tag {
                    1 => None,
                    2 => Some(r.u32()?),
                    tag => {
                        return Err(DecodeError::InvalidTag {
                            what: "record ack",
                            tag: tag.into(),
                            offset: at,
                        });
                    }
                };
                Ok(Some(Existing {
                    offset,
                    hlc,
                    partition,
                }))
            })?,
            throttle_ms: r.u32()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::roundtrip;

    #[test]
    fn roundtrip_request() {
        roundtrip(&ProduceRequest {
            topic: "facts".into(),
            partition: 3,
            acks: Acks::All,
            timeout_ms: 30_000,
            causality: Some(123),
            batch: Bytes::from_static(b"batch bytes"),
        });
        roundtrip(&ProduceRequest {
            topic: String::new(),
            partition: 0,
            acks: Acks::Leader,
            timeout_ms: 0,
            causality: None,
            batch: Bytes::new(),
        });
    }

    #[test]
    fn roundtrip_response() {
        roundtrip(&ProduceResponse {
            base_offset: 100,
            base_hlc: 5000,
            throttle_ms: 0,
            duplicates: vec![
                None,
                Some(Existing {
                    offset: 7,
                    hlc: 70,
                    partition: None,
                }),
                Some(Existing {
                    offset: 9,
                    hlc: 90,
                    partition: Some(2),
                }),
                None,
            ],
        });
    }

    #[test]
    fn record_acks_skip_duplicates_when_numbering() {
        let resp = ProduceResponse {
            base_offset: 100,
            base_hlc: 5000,
            throttle_ms: 0,
            duplicates: vec![
                None,
                Some(Existing {
                    offset: 7,
                    hlc: 70,
                    partition: None,
                }),
                None,
            ],
        };
        let acks: Vec<_> = resp
            .record_acks()
            .map(|a| (a.offset, a.hlc, a.duplicate))
            .collect();
        assert_eq!(
            acks,
            vec![(100, 5000, false), (7, 70, true), (101, 5001, false)]
        );
    }

    #[test]
    fn rejects_unknown_acks() {
        let mut buf = BytesMut::new();
        ProduceRequest {
            topic: "t".into(),
            partition: 0,
            acks: Acks::All,
            timeout_ms: 1,
            causality: None,
            batch: Bytes::new(),
        }
        .encode(&mut buf);
        buf[2 + 1 + 4] = 9;
        let err = ProduceRequest::decode(&mut Reader::new(buf.freeze())).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::InvalidTag {
                what: "acks",
                offset: 7,
                ..
            }
        ));
    }
}
