//! The `tokio_util::codec` adapter over [`crate::frame`].

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::frame::{DEFAULT_MAX_FRAME, Frame, FrameError, decode_frame};

/// Frames in, frames out, with a hard size limit checked before anything is buffered.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame: usize,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec {
            max_frame: DEFAULT_MAX_FRAME,
        }
    }
}

impl FrameCodec {
    /// A codec that refuses frames larger than `max_frame` bytes (length prefix included).
    pub fn new(max_frame: usize) -> Self {
        FrameCodec { max_frame }
    }

    /// The largest frame accepted, length prefix included.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }
}

/// Errors of the codec: framing errors, or the transport's I/O errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    #[error(transparent)]
    /// The stream cannot be framed.
    Frame(#[from] FrameError),
    #[error("i/o error: {0}")]
    /// The transport failed.
    Io(#[from] std::io::Error),
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        Ok(decode_frame(src, self.max_frame)?)
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = CodecError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        if frame.encoded_len() > self.max_frame {
            return Err(FrameError::TooLarge {
                size: frame.encoded_len() as u64,
                max: self.max_frame as u64,
            }
            .into());
        }
        frame.encode(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameHeader;
    use bytes::Bytes;

    #[test]
    fn roundtrip_through_codec_byte_by_byte() {
        let frame = Frame {
            header: FrameHeader {
                api_key: 6,
                api_version: 0,
                correlation_id: 42,
            },
            body: Bytes::from_static(b"xyz"),
        };
        let mut codec = FrameCodec::new(64);
        let mut wire = BytesMut::new();
        codec.encode(frame.clone(), &mut wire).unwrap();
        let mut src = BytesMut::new();
        let mut out = None;
        for b in wire.iter() {
            assert!(out.is_none());
            src.extend_from_slice(&[*b]);
            out = codec.decode(&mut src).unwrap();
        }
        assert_eq!(out, Some(frame));
    }

    #[test]
    fn rejects_encoding_oversized_frame() {
        let frame = Frame {
            header: FrameHeader {
                api_key: 6,
                api_version: 0,
                correlation_id: 42,
            },
            body: Bytes::from(vec![0u8; 100]),
        };
        let mut codec = FrameCodec::new(64);
        assert!(codec.encode(frame, &mut BytesMut::new()).is_err());
    }
}
