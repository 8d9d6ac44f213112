//! Little-endian primitives shared by every message: a bounds-checked [`Reader`] over
//! [`Bytes`] and the `put_*` helpers that write the same shapes.
//!
//! Shapes used throughout the message layouts:
//!
//! ```text
//! u8 | u16 | u32 | u64 | i64 | f64          fixed width, little-endian
//! string  = u16 length, UTF-8 bytes          (names: topics, groups, members)
//! bytes32 = u32 length, bytes                (opaque payloads, record batches)
//! [T]     = u32 count, count x T             (count is checked against what remains)
//! opt<T>  = u8 0 | u8 1, T
//! ```
//!
//! The reader never allocates more than the frame it reads from: lengths and counts are
//! checked against the bytes that remain before anything is reserved, and byte fields are
//! returned as zero-copy slices of the frame.
//!
//! # Decode budget
//!
//! Checking counts against the bytes that remain bounds the *number* of elements, not the
//! memory they take once decoded: an empty `string` is 2 bytes on the wire and a 24-byte
//! `String` in memory, so a 16 MiB frame of empty names would decode to ~200 MB. Each
//! [`Reader`] therefore carries a budget, [`DecodeLimit::budget_for`] the length of its
//! input, and every allocation the reader makes for a decoder is charged to it *before* it
//! is made:
//!
//! - [`Reader::vec`] charges `count × size_of::<T>()` (the `Vec`'s buffer);
//! - [`Reader::string`] charges the string's length (its heap buffer);
//! - [`Reader::bytes`] and [`Reader::slice`] charge nothing: they share the input.
//!
//! The structs holding these (a `String`'s 24 bytes inside a `Vec<String>`) are inside the
//! buffer the `Vec` charged, and the one top-level value a decode returns is covered by the
//! limit's `slack`. So what a decode returns, heap included, never exceeds the budget of the
//! bytes it came from, for every message, by construction: a decoder that only reads
//! through a [`Reader`] cannot allocate around it. Past the budget, decoding stops with
//! [`DecodeError::BudgetExceeded`], naming what was being decoded, how many, and the limit.

use bytes::{BufMut, Bytes};

/// Why a byte sequence could not be decoded. Every variant names the byte position
/// (relative to the start of the buffer being decoded) where decoding stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The buffer ended before a field did.
    #[error("unexpected end of input at byte {offset}: need {need} bytes, have {have}")]
    UnexpectedEof {
        /// Byte position, from the start of the buffer, where decoding stopped.
        offset: usize,
        /// Bytes needed.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// A count or length field promises more than the buffer can hold.
    #[error("length field at byte {offset} says {len}, but only {remaining} bytes remain")]
    LengthOverrun {
        /// Byte position, from the start of the buffer, where decoding stopped.
        offset: usize,
        /// The length found.
        len: u64,
        /// Bytes left.
        remaining: usize,
    },
    /// A string field is not UTF-8.
    #[error("field at byte {offset} is not valid UTF-8")]
    /// A string field is not UTF-8.
    InvalidUtf8 {
        /// Byte position, from the start of the buffer, where decoding stopped.
        offset: usize,
    },
    /// An enum tag or flag has a value this version does not know.
    #[error("invalid {what} tag {tag} at byte {offset}")]
    InvalidTag {
        /// What was being decoded.
        what: &'static str,
        /// The tag found.
        tag: u64,
        /// Byte position, from the start of the buffer, where decoding stopped.
        offset: usize,
    },
    /// A field holds a value outside its domain (e.g. a NaN float).
    #[error("invalid {what} at byte {offset}")]
    /// A field holds a value outside its domain (e.g. a NaN float).
    InvalidValue {
        /// What was being decoded.
        what: &'static str,
        /// Byte position, from the start of the buffer, where decoding stopped.
        offset: usize,
    },
    /// Bytes were left over after the last field.
    #[error("{extra} trailing bytes after the last field at byte {offset}")]
    /// Bytes were left over after the last field.
    TrailingBytes {
        /// Byte position, from the start of the buffer, where decoding stopped.
        offset: usize,
        /// Bytes left over.
        extra: usize,
    },
    /// Decoding would take more memory than this input may decode to (see [`DecodeLimit`]).
    #[error(
        "{count} {what} at byte {offset} would take {need} bytes of memory, past the decode \
         budget of {limit} bytes for this input ({used} already used)"
    )]
    BudgetExceeded {
        /// What was being decoded.
        what: &'static str,
        /// How many were declared.
        count: u64,
        /// Byte position, from the start of the buffer, where decoding stopped.
        offset: usize,
        /// Bytes needed.
        need: u64,
        /// Bytes of the budget already used.
        used: usize,
        /// The budget for this input.
        limit: usize,
    },
    /// A name that cannot be empty is empty, or a name is longer than it may be.
    #[error("{what} at byte {offset} is {len} bytes; it must be 1 to {max}")]
    InvalidName {
        /// What was being decoded.
        what: &'static str,
        /// Byte position, from the start of the buffer, where decoding stopped.
        offset: usize,
        /// The length found.
        len: usize,
        /// The longest allowed.
        max: usize,
    },
}

/// How much memory one decode may produce from `n` input bytes: `per_input_byte × n +
/// slack`. See the module docs for what is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimit {
    /// Bytes of memory each input byte may decode to.
    pub per_input_byte: usize,
    /// Covers the top-level value and lets small inputs decode whatever their shape.
    pub slack: usize,
}

impl DecodeLimit {
    /// Requests, which any client may send: decoded memory stays within 4× the body plus
    /// 4 KiB. Lists of elements that are smaller on the wire than a quarter of their
    /// in-memory size (names of one to five bytes, say) are refused past a few hundred.
    pub const REQUEST: DecodeLimit = DecodeLimit {
        per_input_byte: 4,
        slack: 4096,
    };

    /// Everything else ([`Reader::new`]): responses, which come from the broker a client
    /// chose, and the broker's own stored and peer formats. Looser because some valid
    /// encodings are that dense (a produce response spends one byte per appended record,
    /// which decodes to a 24-byte `Option<Existing>`), but still a bound.
    pub const DEFAULT: DecodeLimit = DecodeLimit {
        per_input_byte: 32,
        slack: 4096,
    };

    /// The memory a decode of `input_len` bytes may produce.
    pub fn budget_for(self, input_len: usize) -> usize {
        input_len
            .saturating_mul(self.per_input_byte)
            .saturating_add(self.slack)
    }
}

/// A cursor over a [`Bytes`] buffer. Byte fields come out as slices of the same
/// allocation, so decoding a fetch response does not copy its record batches.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
    pos: usize,
    /// Bytes of memory this reader's decode may still produce.
    limit: usize,
    /// Bytes charged so far.
    used: usize,
}

impl Reader {
    /// A reader with the [`DecodeLimit::DEFAULT`] budget.
    pub fn new(buf: Bytes) -> Self {
        Reader::with_limit(buf, DecodeLimit::DEFAULT)
    }

    /// A reader whose decode may produce at most `limit.budget_for(buf.len())` bytes.
    pub fn with_limit(buf: Bytes, limit: DecodeLimit) -> Self {
        let limit = limit.budget_for(buf.len());
        Reader {
            buf,
            pos: 0,
            limit,
            used: 0,
        }
    }

    /// Bytes of memory charged to the decode budget so far.
    pub fn charged(&self) -> usize {
        self.used
    }

    /// The decode budget: the most [`Reader::charged`] may reach.
    pub fn budget(&self) -> usize {
        self.limit
    }

    /// Charges `count` items of `size` bytes each (`what`, for the error) to the decode
    /// budget, before the caller allocates them. Decoders that allocate outside
    /// [`Reader::vec`] and [`Reader::string`] call this first.
    pub fn charge(
        &mut self,
        what: &'static str,
        count: u64,
        size: usize,
    ) -> Result<(), DecodeError> {
        let need = count.saturating_mul(size as u64);
        let left = (self.limit - self.used) as u64;
        if need > left {
            return Err(DecodeError::BudgetExceeded {
                what,
                count,
                offset: self.pos,
                need,
                used: self.used,
                limit: self.limit,
            });
        }
        self.used += need as usize;
        Ok(())
    }

    /// Byte position of the next field.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes {
                offset: self.pos,
                extra,
            }),
        }
    }

    fn take(&mut self, need: usize) -> Result<&[u8], DecodeError> {
        let have = self.remaining();
        if need > have {
            return Err(DecodeError::UnexpectedEof {
                offset: self.pos,
                need,
                have,
            });
        }
        let start = self.pos;
        self.pos += need;
        Ok(&self.buf[start..start + need])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads a `u8`.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a little-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }

    /// Reads a little-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }

    /// Reads a little-endian `i64`.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        self.array().map(i64::from_le_bytes)
    }

    /// Reads 32 bytes as they are (a key, an id).
    pub fn bytes32_fixed(&mut self) -> Result<[u8; 32], DecodeError> {
        self.array()
    }

    /// Reads 64 bytes as they are (a signature).
    pub fn bytes64_fixed(&mut self) -> Result<[u8; 64], DecodeError> {
        self.array()
    }

    /// A boolean stored as one byte, 0 or 1; anything else is refused.
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        let offset = self.pos;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::InvalidTag {
                what: "bool",
                tag: tag.into(),
                offset,
            }),
        }
    }

    /// `n` raw bytes as a zero-copy slice.
    pub fn slice(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let start = self.pos;
        self.take(n)?;
        Ok(self.buf.slice(start..start + n))
    }

    fn checked_len(&mut self, len: u64, at: usize) -> Result<usize, DecodeError> {
        let remaining = self.remaining();
        match usize::try_from(len) {
            Ok(n) if n <= remaining => Ok(n),
            _ => Err(DecodeError::LengthOverrun {
                offset: at,
                len,
                remaining,
            }),
        }
    }

    /// `string`: u16 length, then UTF-8.
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let at = self.pos;
        let len = self.u16()?;
        let len = self.checked_len(len.into(), at)?;
        self.charge("string bytes", len as u64, 1)?;
        let start = self.pos;
        let raw = self.take(len)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8 { offset: start })
    }

    /// A `string` that names something and so is 1 to `max` bytes (`what`, for the error).
    pub fn name(&mut self, what: &'static str, max: usize) -> Result<String, DecodeError> {
        let at = self.pos;
        let s = self.string()?;
        if s.is_empty() || s.len() > max {
            return Err(DecodeError::InvalidName {
                what,
                offset: at,
                len: s.len(),
                max,
            });
        }
        Ok(s)
    }

    /// A topic name: 1 to [`crate::MAX_TOPIC_NAME_LEN`] bytes.
    pub fn topic_name(&mut self) -> Result<String, DecodeError> {
        self.name("topic name", crate::MAX_TOPIC_NAME_LEN)
    }

    /// `bytes32`: u32 length, then the bytes, as a zero-copy slice.
    pub fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let at = self.pos;
        let len = self.u32()?;
        let len = self.checked_len(len.into(), at)?;
        self.slice(len)
    }

    /// `[T]`: u32 count, then the elements. `min_size` is the fewest bytes one element can
    /// take; the count is checked against it, and the `Vec`'s buffer against the decode
    /// budget, before anything is reserved.
    pub fn vec<T>(
        &mut self,
        min_size: usize,
        item: impl FnMut(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        self.vec_of(std::any::type_name::<T>(), min_size, item)
    }

    /// [`Reader::vec`], naming the elements (`what`) for the errors.
    pub fn vec_of<T>(
        &mut self,
        what: &'static str,
        min_size: usize,
        mut item: impl FnMut(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let at = self.pos;
        let count = u64::from(self.u32()?);
        let bound = self.remaining() / min_size.max(1);
        if count > bound as u64 {
            return Err(DecodeError::LengthOverrun {
                offset: at,
                len: count,
                remaining: self.remaining(),
            });
        }
        self.charge(what, count, size_of::<T>())?;
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            out.push(item(self)?);
        }
        Ok(out)
    }

    /// `opt<T>`: a one-byte presence flag, then T if present.
    pub fn option<T>(
        &mut self,
        item: impl FnOnce(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        if self.bool()? {
            item(self).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Writes a `string`. Names longer than `u16::MAX` bytes are a programming error on the
/// encoding side; callers validate names (see [`crate::MAX_NAME_LEN`]) before they get here.
pub fn put_string(buf: &mut impl BufMut, s: &str) {
    let len = u16::try_from(s.len()).expect("names are validated to fit a u16 length");
    buf.put_u16_le(len);
    buf.put_slice(s.as_bytes());
}

/// Writes a `bytes32`.
pub fn put_bytes(buf: &mut impl BufMut, b: &[u8]) {
    let len = u32::try_from(b.len()).expect("payloads are bounded by the frame limit");
    buf.put_u32_le(len);
    buf.put_slice(b);
}

/// Writes the count of a `[T]`.
pub fn put_count(buf: &mut impl BufMut, n: usize) {
    let n = u32::try_from(n).expect("collections are bounded by the frame limit");
    buf.put_u32_le(n);
}

/// Writes a boolean as one byte, 0 or 1.
pub fn put_bool(buf: &mut impl BufMut, b: bool) {
    buf.put_u8(u8::from(b));
}

/// Writes an `opt<T>`.
pub fn put_option<B: BufMut, T>(buf: &mut B, v: Option<&T>, item: impl FnOnce(&mut B, &T)) {
    match v {
        Some(v) => {
            buf.put_u8(1);
            item(buf, v);
        }
        None => buf.put_u8(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_field_names_position() {
        let mut r = Reader::new(Bytes::from_static(&[1, 2, 3]));
        assert_eq!(r.u16(), Ok(0x0201));
        assert_eq!(
            r.u32(),
            Err(DecodeError::UnexpectedEof {
                offset: 2,
                need: 4,
                have: 1
            })
        );
    }

    #[test]
    fn rejects_count_larger_than_buffer() {
        let mut buf = Vec::new();
        put_count(&mut buf, 1_000_000_000);
        let mut r = Reader::new(Bytes::from(buf));
        let err = r.vec(8, Reader::u64).unwrap_err();
        assert!(matches!(err, DecodeError::LengthOverrun { offset: 0, .. }));
    }

    /// `count` empty `string`s after their count, as a request body would hold them.
    fn empty_strings(count: u32) -> Bytes {
        let mut buf = Vec::new();
        put_count(&mut buf, count as usize);
        buf.resize(buf.len() + 2 * count as usize, 0);
        Bytes::from(buf)
    }

    #[test]
    fn rejects_array_past_decode_budget_before_reserving() {
        // 1000 empty strings: 2 004 bytes on the wire, 24 000 bytes of `String`s.
        let body = empty_strings(1000);
        let budget = DecodeLimit::REQUEST.budget_for(body.len());
        let mut r = Reader::with_limit(body, DecodeLimit::REQUEST);
        let err = r.vec_of("names", 2, Reader::string).unwrap_err();
        assert_eq!(
            err,
            DecodeError::BudgetExceeded {
                what: "names",
                count: 1000,
                offset: 4,
                need: 1000 * size_of::<String>() as u64,
                used: 0,
                limit: budget,
            }
        );
        assert_eq!(
            r.charged(),
            0,
            "nothing was charged, so nothing was reserved"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("1000 names") && msg.contains(&budget.to_string()),
            "{msg}"
        );
    }

    #[test]
    fn default_limit_decodes_what_request_limit_refuses() {
        let mut r = Reader::new(empty_strings(1000));
        assert_eq!(r.vec(2, Reader::string).unwrap().len(), 1000);
        r.finish().unwrap();
    }

    #[test]
    fn charges_vec_buffers_and_string_bytes_but_not_shared_bytes() {
        let mut buf = Vec::new();
        put_count(&mut buf, 2);
        put_string(&mut buf, "abc");
        put_string(&mut buf, "de");
        put_bytes(&mut buf, &[7; 100]);
        let mut r = Reader::new(Bytes::from(buf));
        r.vec(2, Reader::string).unwrap();
        assert_eq!(r.charged(), 2 * size_of::<String>() + 5);
        r.bytes().unwrap();
        assert_eq!(r.charged(), 2 * size_of::<String>() + 5);
    }

    #[test]
    fn rejects_empty_and_overlong_names() {
        let mut buf = Vec::new();
        put_string(&mut buf, "");
        let mut r = Reader::new(Bytes::from(buf));
        assert_eq!(
            r.topic_name(),
            Err(DecodeError::InvalidName {
                what: "topic name",
                offset: 0,
                len: 0,
                max: crate::MAX_TOPIC_NAME_LEN
            })
        );
        let mut buf = Vec::new();
        put_string(&mut buf, &"x".repeat(250));
        put_string(&mut buf, &"x".repeat(249));
        let mut r = Reader::new(Bytes::from(buf));
        assert!(matches!(
            r.topic_name(),
            Err(DecodeError::InvalidName { len: 250, .. })
        ));
        let mut r = Reader::new(r.buf.slice(2 + 250..));
        assert_eq!(r.topic_name().unwrap().len(), 249);
    }

    #[test]
    fn rejects_bad_utf8_and_bool() {
        let mut r = Reader::new(Bytes::from_static(&[2, 0, 0xff, 0xfe]));
        assert_eq!(r.string(), Err(DecodeError::InvalidUtf8 { offset: 2 }));
        let mut r = Reader::new(Bytes::from_static(&[7]));
        assert!(matches!(r.bool(), Err(DecodeError::InvalidTag { .. })));
    }

    #[test]
    fn roundtrip_shapes() {
        let mut buf = Vec::new();
        put_string(&mut buf, "topic");
        put_bytes(&mut buf, b"payload");
        put_option(&mut buf, Some(&9u64), |b, v| b.put_u64_le(*v));
        put_option::<_, u64>(&mut buf, None, |b, v| b.put_u64_le(*v));
        let mut r = Reader::new(Bytes::from(buf));
        assert_eq!(r.string().unwrap(), "topic");
        assert_eq!(&r.bytes().unwrap()[..], b"payload");
        assert_eq!(r.option(Reader::u64).unwrap(), Some(9));
        assert_eq!(r.option(Reader::u64).unwrap(), None);
        r.finish().unwrap();
    }
}
