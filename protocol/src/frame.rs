//! Frames (D8): every request and response, client and inter-broker, travels as one frame.
//!
//! ```text
//! byte 0          4         6           8                12
//!      +----------+---------+-----------+----------------+-----------------------+
//!      | length   | api_key | api_ver   | correlation_id | body (length - 8)     |
//!      | u32      | u16     | u16       | u32            |                       |
//!      +----------+---------+-----------+----------------+-----------------------+
//! ```
//!
//! `length` counts the bytes after itself. A response echoes its request's api key, version
//! and correlation id; requests are pipelined and responses matched by correlation id.
//! The length prefix is checked against the maximum frame size before any buffer is
//! reserved, and a buffer shorter than one whole frame is `Ok(None)`, not an error.

use bytes::{Buf, Bytes, BytesMut};

/// Bytes of the length prefix (u32, the frame's length after it).
pub const LENGTH_SIZE: usize = size_of::<u32>();
/// Byte offset of the API key (u16).
pub const API_KEY_OFFSET: usize = LENGTH_SIZE;
/// Byte offset of the API version (u16).
pub const API_VERSION_OFFSET: usize = API_KEY_OFFSET + size_of::<u16>();
/// Byte offset of the correlation id (u32).
pub const CORRELATION_ID_OFFSET: usize = API_VERSION_OFFSET + size_of::<u16>();
/// Bytes before the body, the length prefix included.
pub const FRAME_HEADER_LEN: usize = CORRELATION_ID_OFFSET + size_of::<u32>();
/// The smallest value the length prefix may hold (a header with an empty body).
pub const MIN_LENGTH: usize = FRAME_HEADER_LEN - LENGTH_SIZE;
/// Default hard limit on one frame, length prefix included: 16 MiB.
pub const DEFAULT_MAX_FRAME: usize = 16 << 20;

/// The fixed fields of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// Which request (see [`crate::messages::ApiKey`]).
    pub api_key: u16,
    /// The version of that request's layout.
    pub api_version: u16,
    /// Chosen by the client; the answer carries it back.
    pub correlation_id: u32,
}

/// One frame with its body as a zero-copy slice of the receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The fixed fields.
    pub header: FrameHeader,
    /// The body, a zero-copy slice of the receive buffer.
    pub body: Bytes,
}

/// Why the byte stream cannot be framed. After any of these the connection cannot be
/// trusted to be at a frame boundary and is closed (after an error frame where possible).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {max}")]
    /// The length prefix is larger than the limit.
    TooLarge {
        /// The length found, prefix included.
        size: u64,
        /// The largest frame accepted.
        max: u64,
    },
    #[error("frame length {length} is shorter than the {MIN_LENGTH}-byte header")]
    /// The length prefix is shorter than a header.
    TooShort {
        /// The length prefix found.
        length: u32,
    },
}

impl FrameHeader {
    /// Writes the 12-byte frame head for a body of `body_len` bytes.
    pub fn encode_head(&self, body_len: usize) -> [u8; FRAME_HEADER_LEN] {
        let length = u32::try_from(MIN_LENGTH + body_len).expect("frames are bounded");
        let mut out = [0u8; FRAME_HEADER_LEN];
        out[..API_KEY_OFFSET].copy_from_slice(&length.to_le_bytes());
        out[API_KEY_OFFSET..API_VERSION_OFFSET].copy_from_slice(&self.api_key.to_le_bytes());
        out[API_VERSION_OFFSET..CORRELATION_ID_OFFSET]
            .copy_from_slice(&self.api_version.to_le_bytes());
        out[CORRELATION_ID_OFFSET..].copy_from_slice(&self.correlation_id.to_le_bytes());
        out
    }
}

impl Frame {
    /// Total encoded size, length prefix included.
    pub fn encoded_len(&self) -> usize {
        FRAME_HEADER_LEN + self.body.len()
    }

    /// Appends the frame (length prefix, header, body) to `dst`.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        dst.extend_from_slice(&self.header.encode_head(self.body.len()));
        dst.extend_from_slice(&self.body);
    }
}

/// Reads the length prefix at the front of `src` and checks it, without consuming
/// anything. `Ok(None)` until four bytes have arrived.
pub fn check_prefix(src: &[u8], max_frame: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = src.get(..LENGTH_SIZE) else {
        return Ok(None);
    };
    let length = u32::from_le_bytes(prefix.try_into().expect("4 bytes"));
    let total = LENGTH_SIZE as u64 + u64::from(length);
    if total > max_frame as u64 {
        return Err(FrameError::TooLarge {
            size: total,
            max: max_frame as u64,
        });
    }
    if (length as usize) < MIN_LENGTH {
        return Err(FrameError::TooShort { length });
    }
    Ok(Some(total as usize))
}

/// Takes one whole frame off the front of `src`, or `Ok(None)` if it has not all arrived
/// (in which case `src` is reserved up to the frame's size — which the limit bounds — so the
/// next read can complete it).
pub fn decode_frame(src: &mut BytesMut, max_frame: usize) -> Result<Option<Frame>, FrameError> {
    let Some(total) = check_prefix(src, max_frame)? else {
        return Ok(None);
    };
    if src.len() < total {
        src.reserve(total - src.len());
        return Ok(None);
    }
    let mut frame = src.split_to(total);
    frame.advance(LENGTH_SIZE);
    let api_key = frame.get_u16_le();
    let api_version = frame.get_u16_le();
    let correlation_id = frame.get_u32_le();
    Ok(Some(Frame {
        header: FrameHeader {
            api_key,
            api_version,
            correlation_id,
        },
        body: frame.freeze(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Frame {
        Frame {
            header: FrameHeader {
                api_key: 5,
                api_version: 1,
                correlation_id: 0xdead_beef,
            },
            body: Bytes::from_static(b"hello body"),
        }
    }

    #[test]
    fn roundtrip_frame() {
        let mut buf = BytesMut::new();
        sample().encode(&mut buf);
        sample().encode(&mut buf);
        assert_eq!(buf.len(), 2 * (FRAME_HEADER_LEN + 10));
        assert_eq!(decode_frame(&mut buf, 1024).unwrap(), Some(sample()));
        assert_eq!(decode_frame(&mut buf, 1024).unwrap(), Some(sample()));
        assert!(buf.is_empty());
    }

    #[test]
    fn truncated_frame_is_none_at_every_length() {
        let mut full = BytesMut::new();
        sample().encode(&mut full);
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            assert_eq!(decode_frame(&mut part, 1024).unwrap(), None, "cut at {cut}");
            assert_eq!(part.len(), cut, "nothing consumed");
        }
    }

    #[test]
    fn rejects_oversized_prefix_before_reserving() {
        let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
        let cap = buf.capacity();
        assert_eq!(
            decode_frame(&mut buf, DEFAULT_MAX_FRAME),
            Err(FrameError::TooLarge {
                size: u64::from(u32::MAX) + 4,
                max: DEFAULT_MAX_FRAME as u64
            })
        );
        assert_eq!(buf.capacity(), cap);
    }

    #[test]
    fn rejects_length_shorter_than_header() {
        let mut buf = BytesMut::from(&3u32.to_le_bytes()[..]);
        assert_eq!(
            decode_frame(&mut buf, 1024),
            Err(FrameError::TooShort { length: 3 })
        );
    }
}
