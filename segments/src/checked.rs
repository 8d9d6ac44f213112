//! Checked walks: every frame whose bytes are served (to a consumer, a follower, the
//! apply loop or a repairing replica) is checked first — its header CRC, its payload CRC
//! or its whole batch (CRC and record framing), and its index and offset against the
//! frame before it. The first frame that fails becomes a [`Damage`]; it is never served
//! and never skipped in silence.
//!
//! Checking as bytes are served (rather than verifying a segment once and remembering)
//! also catches damage that appears after the check — a page re-read from a failing disk —
//! and costs one CRC pass over bytes that are about to be copied to a socket anyway.
//!
//! A walk only touches bytes below both the segment's logical end and the file's current
//! length: a file shortened underneath us is reported as damage, not read past its end
//! (which would be SIGBUS).

use crate::LogReader;
use crate::damage::Damage;
use crate::format::{FrameDamage, FrameHeader};
use crate::segment::{FrameView, Segment};

/// A checked walk over one segment's frames from a known frame boundary.
pub(crate) struct Walk<'a> {
    seg: &'a Segment,
    /// The bytes the walk may touch.
    used: &'a [u8],
    pos: usize,
    /// Index and offset the frame at `pos` must carry (unknown right after a hole).
    index: Option<u64>,
    offset: Option<u64>,
    done: bool,
}

impl<'a> Walk<'a> {
    /// From the frame boundary at or before the batch holding `offset`.
    pub fn at_offset(seg: &'a Segment, offset: u64) -> Walk<'a> {
        Walk::from_point(seg, seg.scan_point(|e| e.offset <= offset))
    }

    /// From the frame boundary at or before Raft index `index`.
    pub fn at_index(seg: &'a Segment, index: u64) -> Walk<'a> {
        Walk::from_point(seg, seg.scan_point(|e| e.index <= index))
    }

    fn from_point(seg: &'a Segment, (pos, index, offset): (usize, u64, u64)) -> Walk<'a> {
        let file_len = std::fs::metadata(seg.log_path()).map_or(u64::MAX, |m| m.len());
        let end = seg.summary.size.min(file_len).min(seg.data.len() as u64) as usize;
        Walk {
            seg,
            used: &seg.data[..end],
            pos,
            index: Some(index),
            offset: Some(offset),
            done: false,
        }
    }

    /// The damage that starts at the current position.
    fn damage(&self, reason: String) -> Damage {
        let (pos, index, offset) = match (self.index, self.offset) {
            (Some(i), Some(o)) => (self.pos as u64, i, o),
            // Just past a hole, where the frame's place is unknown: from the sparse entry
            // at or before it (the range then covers a few intact frames too).
            _ => {
                let at = self.pos as u64;
                let (p, i, o) = self.seg.scan_point(|e| e.position <= at);
                (p as u64, i, o)
            }
        };
        let mut d = Damage::at(self.seg, pos, index, offset, reason);
        if (self.used.len() as u64) < self.seg.summary.size {
            // The file was shortened: everything from here to the segment's end is gone.
            let s = &self.seg.summary;
            d.positions.end = s.size;
            d.indexes.end = s.last_index.wrapping_add(1).max(d.indexes.start);
            d.offsets.end = s.end_offset.max(d.offsets.start);
        }
        d
    }
}

impl Iterator for Walk<'_> {
    type Item = Result<FrameView, Damage>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let after_hole = self.seg.skip_holes(self.pos);
        if after_hole != self.pos {
            self.pos = after_hole;
            self.index = None;
            self.offset = None;
        }
        if self.pos as u64 >= self.seg.summary.size {
            return None;
        }
        let result = match FrameHeader::check_stored(&self.used[self.pos.min(self.used.len())..]) {
            Err(FrameDamage::End) if self.used.len() <= self.pos => Err(format!(
                "the segment file ends at byte {} (shortened underneath?)",
                self.used.len()
            )),
            Err(d) => Err(d.to_string()),
            Ok((h, batch)) => {
                if self.index.is_some_and(|i| i != h.index) {
                    Err(format!(
                        "index {} where {} was due",
                        h.index,
                        self.index.unwrap_or_default()
                    ))
                } else if let (Some(b), Some(o)) = (batch, self.offset)
                    && b.base_offset != o
                {
                    Err(format!(
                        "batch base offset {} where {o} was due",
                        b.base_offset
                    ))
                } else {
                    Ok(FrameView {
                        pos: self.pos,
                        header: h,
                        batch,
                    })
                }
            }
        };
        match result {
            Ok(f) => {
                self.pos = f.next();
                self.index = Some(f.header.index + 1);
                if let Some(b) = f.batch {
                    self.offset = Some(b.end_offset());
                }
                Some(Ok(f))
            }
            Err(reason) => {
                self.done = true;
                Some(Err(self.damage(reason)))
            }
        }
    }
}

/// One step of a scrub ([`LogReader::scrub`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrubbed {
    /// Where the next step starts: past what this one verified, or the log start again
    /// once it reached the end (a full pass).
    pub next_index: u64,
    /// Bytes of frames verified.
    pub bytes: u64,
    /// Whether this step reached the end of the log.
    pub reached_end: bool,
    /// Damage it found (now recorded, so reads fail on it and a repair can start).
    pub found: Option<Damage>,
}

impl LogReader {
    /// Verifies about `max_bytes` of frames from Raft index `from` on (wrapping to the log
    /// start once past the end), as reads would: CRCs, batches, indexes and offsets, and
    /// the file's length. Known damaged ranges are jumped over; new damage is recorded.
    /// A background scrubber calls this in small steps at a bounded rate, so damage in
    /// data no one reads is found (and repaired) before the other copies are lost too.
    pub fn scrub(&self, from: u64, max_bytes: u64) -> Scrubbed {
        let st = self.shared.read();
        let (first, next) = (st.start_index(), st.next_index());
        let mut index = if (first..next).contains(&from) {
            from
        } else {
            first
        };
        let mut bytes = 0u64;
        let mut found = None;
        'segments: while index < next && bytes < max_bytes {
            let Some(seg) = st.segment_for_index(index) else {
                break;
            };
            for step in Walk::at_index(seg, index) {
                match step {
                    Ok(f) if f.header.index < index => {}
                    Ok(f) => {
                        bytes += (f.next() - f.pos) as u64;
                        index = f.header.index + 1;
                        if bytes >= max_bytes {
                            break 'segments;
                        }
                    }
                    Err(d) => {
                        index = d.indexes.end.max(index + 1);
                        found = Some(d);
                        break 'segments;
                    }
                }
            }
            // The walk ended: at the segment's end (or jumping a hole that ends it).
            index = index.max(seg.summary.last_index.wrapping_add(1));
        }
        drop(st);
        if let Some(d) = &found {
            self.shared.register(d.clone());
        }
        let reached_end = index >= next;
        Scrubbed {
            next_index: if reached_end { first } else { index },
            bytes,
            reached_end,
            found,
        }
    }
}
