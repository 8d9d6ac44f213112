//! Fetch: read record batches from one partition, long-polling for new data.
//!
//! Request:
//!
//! ```text
//! +----------------+---------------+------------+---------------+-----------------+
//! | topic: string  | partition u32 | offset u64 | max_bytes u32 | max_wait_ms u32 |
//! +----------------+---------------+------------+---------------+-----------------+
//! ```
//!
//! The broker answers as soon as a committed record at or after `offset` exists, or after
//! `max_wait_ms` with no records. It returns whole batches starting with the one that holds
//! `offset` (so the first batch may begin before it), up to about `max_bytes` (at least one
//! batch is returned if one is available), and none beyond the high watermark.
//!
//! Response (after the error code):
//!
//! ```text
//! +-----------------+--------------------+----------------------+-------------------------+
//! | throttle_ms u32 | high_watermark u64 | log_start_offset u64 | records: bytes32        |
//! |                 |                    |                      | (concatenated batches)  |
//! +-----------------+--------------------+----------------------+-------------------------+
//! ```
//!
//! `throttle_ms` (version 1) is non-zero when the principal is over its fetch quota: the
//! broker holds the connection's next request back that long, and a client waits as long
//! before it sends another (Kafka's `throttle_time_ms`).
//!
//! `records` is sent as the log stores it, with no re-encoding: the broker writes
//! [`FetchResponse::encode_ok_head`] (the error code `None` and every field before the
//! record bytes) and then the segment bytes straight to the socket.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::ErrorCode;
use crate::messages::Body;
use crate::wire::{DecodeError, Reader, put_string};

#[derive(Debug, Clone, PartialEq, Eq)]
/// Reads a partition from an offset: whole batches, up to `max_bytes`, waiting up to `max_wait_ms` for data.
pub struct FetchRequest {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: u32,
    /// The offset.
    pub offset: u64,
    /// Stop adding batches past this many bytes (at least one batch is returned).
    pub max_bytes: u32,
    /// How long to wait for data when there is none.
    pub max_wait_ms: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// Record batches from the offset asked for, and where the log stands.
pub struct FetchResponse {
    /// How long the client should wait before its next request (quota), in ms.
    pub throttle_ms: u32,
    /// The offset after the last committed record.
    pub high_watermark: u64,
    /// The first offset the log still holds.
    pub log_start_offset: u64,
    /// Concatenated record batches; split them with [`crate::RecordBatch::split_all`].
    pub records: Bytes,
}

impl FetchResponse {
    /// Bytes of [`encode_ok_head`](Self::encode_ok_head): error code, throttle, high
    /// watermark, log start offset, records length.
    pub const OK_HEAD_LEN: usize = 2 + 4 + 8 + 8 + 4;

    /// The whole head of a successful response body — the error code `None`, then
    /// everything before the record bytes — for records held as several slices (one per
    /// segment batch) that add up to `records_len` bytes. The slices follow it as they are.
    pub fn encode_ok_head(
        throttle_ms: u32,
        high_watermark: u64,
        log_start_offset: u64,
        records_len: usize,
        buf: &mut BytesMut,
    ) {
        buf.put_u16_le(ErrorCode::None as u16);
        Self::encode_head_parts(
            throttle_ms,
            high_watermark,
            log_start_offset,
            records_len,
            buf,
        );
    }

    /// Everything before the record bytes, including their length prefix, so that the
    /// records can be written to the socket from the segment without a copy.
    pub fn encode_head(&self, buf: &mut BytesMut) {
        Self::encode_head_parts(
            self.throttle_ms,
            self.high_watermark,
            self.log_start_offset,
            self.records.len(),
            buf,
        );
    }

    /// [`encode_head`](Self::encode_head) for records held as several slices (one per
    /// segment batch) that add up to `records_len` bytes.
    pub fn encode_head_parts(
        throttle_ms: u32,
        high_watermark: u64,
        log_start_offset: u64,
        records_len: usize,
        buf: &mut BytesMut,
    ) {
        buf.put_u32_le(throttle_ms);
        buf.put_u64_le(high_watermark);
        buf.put_u64_le(log_start_offset);
        let len = u32::try_from(records_len).expect("bounded by max_bytes");
        buf.put_u32_le(len);
    }
}

impl Body for FetchRequest {
    fn encode(&self, buf: &mut BytesMut) {
        put_string(buf, &self.topic);
        buf.put_u32_le(self.partition);
        buf.put_u64_le(self.offset);
        buf.put_u32_le(self.max_bytes);
        buf.put_u32_le(self.max_wait_ms);
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(FetchRequest {
            topic: r.string()?,
            partition: r.u32()?,
            offset: r.u64()?,
            max_bytes: r.u32()?,
            max_wait_ms: r.u32()?,
        })
    }
}

impl Body for FetchResponse {
    fn encode(&self, buf: &mut BytesMut) {
        self.encode_head(buf);
        buf.put_slice(&self.records);
    }

    fn throttle_ms(&self) -> u32 {
        self.throttle_ms
    }

    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(FetchResponse {
            throttle_ms: r.u32()?,
            high_watermark: r.u64()?,
            log_start_offset: r.u64()?,
            records: r.bytes()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::testing::roundtrip;

    #[test]
    fn roundtrip_request() {
        roundtrip(&FetchRequest {
            topic: "facts".into(),
            partition: 2,
            offset: u64::MAX,
            max_bytes: 1 << 20,
            max_wait_ms: 500,
        });
    }

    #[test]
    fn roundtrip_response() {
        roundtrip(&FetchResponse {
            throttle_ms: 0,
            high_watermark: 10,
            log_start_offset: 2,
            records: Bytes::from_static(&[1, 2, 3, 4]),
        });
    }

    #[test]
    fn roundtrip_ok_head_and_record_slices_decode_as_a_response() {
        let slices = [Bytes::from_static(&[1, 2, 3]), Bytes::from_static(&[4, 5])];
        let len = slices.iter().map(Bytes::len).sum();
        let mut body = BytesMut::new();
        FetchResponse::encode_ok_head(0, 42, 7, len, &mut body);
        assert_eq!(body.len(), FetchResponse::OK_HEAD_LEN);
        for s in &slices {
            body.extend_from_slice(s);
        }
        let decoded = crate::messages::decode_response::<FetchResponse>(body.freeze())
            .expect("well formed")
            .expect("not an error");
        assert_eq!(
            decoded,
            FetchResponse {
                throttle_ms: 0,
                high_watermark: 42,
                log_start_offset: 7,
                records: Bytes::from_static(&[1, 2, 3, 4, 5]),
            }
        );
    }

    #[test]
    fn decoded_records_borrow_the_frame() {
        let resp = FetchResponse {
            throttle_ms: 0,
            high_watermark: 1,
            log_start_offset: 0,
            records: Bytes::from(vec![9u8; 4096]),
        };
        let mut buf = BytesMut::new();
        resp.encode(&mut buf);
        let frame = buf.freeze();
        let back = FetchResponse::decode(&mut Reader::new(frame.clone())).unwrap();
        let base = frame.as_ptr() as usize;
        let rec = back.records.as_ptr() as usize;
        assert!(
            rec >= base && rec < base + frame.len(),
            "records not copied"
        );
    }

    #[test]
    fn rejects_records_length_beyond_frame() {
        let mut buf = BytesMut::new();
        buf.put_u32_le(0);
        buf.put_u64_le(1);
        buf.put_u64_le(0);
        buf.put_u32_le(u32::MAX);
        let err = FetchResponse::decode(&mut Reader::new(buf.freeze())).unwrap_err();
        assert!(matches!(err, DecodeError::LengthOverrun { offset: 20, .. }));
    }
}
